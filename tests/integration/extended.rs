//! The extended protocol in transaction mode: pgbench's three query modes,
//! named prepared statements that follow their client across servers,
//! pipelines and Flush.

use crate::harness::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn pgbench_number(stdout: &str, prefix: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.starts_with(prefix))?;
    line[prefix.len()..]
        .split_whitespace()
        .next()?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// pgbench -S with 8 clients on a pool of 4 in transaction mode: no failed
/// transaction, and never more than 4 backends for the pool although two
/// workers serve the clients.
fn pgbench_through_pooler(query_mode: &str) {
    let role = cluster().new_role("bench");
    let p = Pooler::start(
        &Cfg::transaction()
            .pool_size(4)
            .set("log_level", "info")
            .user(&role, &role),
    );
    let max_seen = Arc::new(Mutex::new(0i64));
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let seen = max_seen.clone();
    let sampler_role = role.clone();
    let sampler = std::thread::spawn(move || {
        while stop_rx.recv_timeout(Duration::from_millis(200)).is_err() {
            let n = cluster().backends_of(&sampler_role);
            let mut m = seen.lock().unwrap();
            *m = (*m).max(n);
        }
    });
    let out = pgbench_as(
        p.port,
        &role,
        Some(&role),
        &[
            "-n", "-S", "-T", "3", "-c", "8", "-j", "2", "-M", query_mode, "bench",
        ],
    );
    let _ = stop_tx.send(());
    sampler.join().unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench -M {query_mode}: {}{}",
        show(&out),
        p.ctx()
    );
    let processed = pgbench_number(&stdout, "number of transactions actually processed:")
        .unwrap_or_else(|| panic!("no processed count: {}", show(&out)));
    assert!(processed > 0, "{}", show(&out));
    assert_eq!(
        pgbench_number(&stdout, "number of failed transactions:"),
        Some(0),
        "{}{}",
        show(&out),
        p.ctx()
    );
    let max = *max_seen.lock().unwrap();
    assert!(
        (1..=4).contains(&max),
        "pool_size 4 but up to {max} backends of the pool were seen{}",
        p.ctx()
    );
}

#[test]
fn pgbench_select_only_simple() {
    pgbench_through_pooler("simple");
}

#[test]
fn pgbench_select_only_extended() {
    pgbench_through_pooler("extended");
}

#[test]
fn pgbench_select_only_prepared() {
    pgbench_through_pooler("prepared");
}

/// The postgres crate names statements s0, s1, ... per connection, so two
/// clients' statements share names with different SQL. With the servers
/// held in turn by other clients, each statement must run on both servers.
#[test]
fn named_prepared_statements_follow_the_client_to_another_server() {
    let p = Pooler::start(&Cfg::transaction().pool_size(2));
    let mut a = p.client();
    let mut b = p.client();
    let mut h1 = p.client();
    let mut h2 = p.client();
    let sa = a
        .prepare("SELECT pg_backend_pid(), $1::int + 1")
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()));
    let sb = b
        .prepare("SELECT pg_backend_pid(), $1::text || '!'")
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()));
    let mut pids_a = HashSet::new();
    let mut pids_b = HashSet::new();
    let mut run = |a: &mut Client, b: &mut Client, i: i32| -> (i32, i32) {
        let r = a
            .query_one(&sa, &[&i])
            .unwrap_or_else(|e| panic!("A's statement: {e:?}{}", p.ctx()));
        assert_eq!(r.get::<_, i32>(1), i + 1, "{}", p.ctx());
        let pa = r.get::<_, i32>(0);
        let r = b
            .query_one(&sb, &[&format!("b{i}")])
            .unwrap_or_else(|e| panic!("B's statement: {e:?}{}", p.ctx()));
        assert_eq!(r.get::<_, String>(1), format!("b{i}!"), "{}", p.ctx());
        pids_a.insert(pa);
        pids_b.insert(r.get::<_, i32>(0));
        (pa, r.get::<_, i32>(0))
    };
    for i in 0..4 {
        h1.batch_execute("BEGIN").unwrap();
        let p1 = p.backend(&mut h1);
        let (pa, pb) = run(&mut a, &mut b, i);
        assert!(
            pa != p1 && pb != p1,
            "ran on a server held by another transaction"
        );
        h2.batch_execute("BEGIN").unwrap();
        let p2 = p.backend(&mut h2);
        assert_ne!(p1, p2);
        h1.batch_execute("COMMIT").unwrap();
        let (pa, pb) = run(&mut a, &mut b, i + 100);
        assert_eq!(
            (pa, pb),
            (p1, p1),
            "the only idle server was {p1}{}",
            p.ctx()
        );
        h2.batch_execute("COMMIT").unwrap();
    }
    assert_eq!(pids_a.len(), 2, "{}", p.ctx());
    assert_eq!(pids_b.len(), 2, "{}", p.ctx());

    // Close (the crate sends it when a Statement is dropped), then new
    // statements under new names, many times over.
    drop(sa);
    for k in 0..30 {
        let s = a.prepare(&format!("SELECT $1::int * {k}")).unwrap();
        let r = a.query_one(&s, &[&3i32]).unwrap();
        assert_eq!(r.get::<_, i32>(0), 3 * k, "{}", p.ctx());
    }
    let r = b.query_one(&sb, &[&"last"]).unwrap();
    assert_eq!(r.get::<_, String>(1), "last!");
}

/// Clients on their own threads, each with statements whose names collide
/// with the others', hammering a small pool.
fn prepared_statement_threads(pool_size: u32, clients: usize, iterations: i32) {
    let p = Pooler::start(&Cfg::transaction().pool_size(pool_size));
    let port = p.port;
    let handles: Vec<_> = (0..clients)
        .map(|t| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut c =
                    connect(port, USER, Some(PW), "postgres").map_err(|e| format!("{e:?}"))?;
                let t = t as i32;
                let add = c
                    .prepare(&format!("SELECT $1::int + {t}"))
                    .map_err(|e| format!("{e:?}"))?;
                let mul = c
                    .prepare(&format!("SELECT $1::int * {}", t + 2))
                    .map_err(|e| format!("{e:?}"))?;
                let txt = c
                    .prepare(&format!("SELECT $1::text || '-{t}'"))
                    .map_err(|e| format!("{e:?}"))?;
                for i in 0..iterations {
                    let (got, want) = match (i + t) % 4 {
                        0 => {
                            let r = c.query_one(&add, &[&i]).map_err(|e| format!("{e:?}"))?;
                            (r.get::<_, i32>(0).to_string(), (i + t).to_string())
                        }
                        1 => {
                            let r = c.query_one(&mul, &[&i]).map_err(|e| format!("{e:?}"))?;
                            (r.get::<_, i32>(0).to_string(), (i * (t + 2)).to_string())
                        }
                        2 => {
                            let r = c
                                .query_one(&txt, &[&i.to_string()])
                                .map_err(|e| format!("{e:?}"))?;
                            (r.get::<_, String>(0), format!("{i}-{t}"))
                        }
                        _ => {
                            // A short-lived statement: Parse, Bind, Close.
                            let s = c
                                .prepare(&format!("SELECT $1::int - {t}"))
                                .map_err(|e| format!("{e:?}"))?;
                            let r = c.query_one(&s, &[&i]).map_err(|e| format!("{e:?}"))?;
                            (r.get::<_, i32>(0).to_string(), (i - t).to_string())
                        }
                    };
                    if got != want {
                        return Err(format!("client {t} iteration {i}: got {got}, want {want}"));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .unwrap()
            .unwrap_or_else(|e| panic!("pool_size {pool_size}: {e}{}", p.ctx()));
    }
}

#[test]
fn prepared_statements_two_clients_pool_of_one() {
    prepared_statement_threads(1, 2, 200);
}

#[test]
fn prepared_statements_two_clients_pool_of_two() {
    prepared_statement_threads(2, 2, 200);
}

#[test]
fn prepared_statements_four_clients_pool_of_two() {
    prepared_statement_threads(2, 4, 150);
}

/// With max_prepared_statements = 3, a client using 6 statements on the
/// one server keeps working while the server never holds more than 3.
#[test]
fn prepared_statement_cache_is_bounded_per_server() {
    let p = Pooler::start(
        &Cfg::transaction()
            .pool_size(1)
            .set("max_prepared_statements", 3),
    );
    let mut c = p.client();
    let stmts: Vec<_> = (0..6)
        .map(|k| c.prepare(&format!("SELECT $1::int + {k}")).unwrap())
        .collect();
    for round in 0..5 {
        for (k, s) in stmts.iter().enumerate() {
            let r = c
                .query_one(s, &[&round])
                .unwrap_or_else(|e| panic!("statement {k}: {e:?}{}", p.ctx()));
            assert_eq!(r.get::<_, i32>(0), round + k as i32, "{}", p.ctx());
        }
        let n: i64 = p
            .one(&mut c, "SELECT count(*) FROM pg_prepared_statements")
            .parse()
            .unwrap();
        assert!(
            n <= 3,
            "the server holds {n} prepared statements{}",
            p.ctx()
        );
    }
}

fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// Raw frontends choose the same statement name with different SQL; each
/// gets its own, through Bind, Describe, Close and re-Parse.
fn same_name_different_sql(pool_size: u32) {
    let p = Pooler::start(&Cfg::transaction().pool_size(pool_size).auth("trust"));
    let login = || {
        Raw::login(p.port, USER, "postgres", None, &[])
            .unwrap_or_else(|e| panic!("login: {e}{}", p.ctx()))
    };
    let mut a = login();
    let mut b = login();
    let exec = |r: &mut Raw, stmt: &str, arg: &str| -> Vec<Msg> {
        let mut pkt = msg::bind("", stmt, &[arg]);
        pkt.extend(msg::execute(""));
        pkt.extend(msg::sync());
        r.send(&pkt);
        r.until_ready().unwrap_or_else(|e| panic!("{e}{}", p.ctx()))
    };
    let parse = |r: &mut Raw, name: &str, sql: &str| -> Vec<Msg> {
        let mut pkt = msg::parse(name, sql);
        pkt.extend(msg::sync());
        r.send(&pkt);
        r.until_ready().unwrap_or_else(|e| panic!("{e}{}", p.ctx()))
    };

    let m = parse(&mut a, "stmt", "SELECT 'A:' || $1::text");
    assert_eq!(tags(&m), "1Z", "{}{}", show_msgs(&m), p.ctx());
    let m = parse(&mut b, "stmt", "SELECT 'B:' || $1::text");
    assert_eq!(tags(&m), "1Z", "{}{}", show_msgs(&m), p.ctx());
    for i in 0..5 {
        let m = exec(&mut a, "stmt", &format!("x{i}"));
        assert_eq!(tags(&m), "2DCZ", "{}{}", show_msgs(&m), p.ctx());
        assert_eq!(Raw::values(&m), [format!("A:x{i}")], "{}", p.ctx());
        let m = exec(&mut b, "stmt", &format!("y{i}"));
        assert_eq!(
            Raw::values(&m),
            [format!("B:y{i}")],
            "{}{}",
            show_msgs(&m),
            p.ctx()
        );
    }

    let mut pkt = msg::describe_statement("stmt");
    pkt.extend(msg::sync());
    a.send(&pkt);
    let m = a.until_ready().unwrap();
    assert_eq!(tags(&m), "tTZ", "{}{}", show_msgs(&m), p.ctx());

    // Close, then the name is free for new SQL; B's statement is untouched.
    let mut pkt = msg::close_statement("stmt");
    pkt.extend(msg::sync());
    a.send(&pkt);
    let m = a.until_ready().unwrap();
    assert_eq!(tags(&m), "3Z", "{}{}", show_msgs(&m), p.ctx());
    let mut pkt = msg::parse("stmt", "SELECT 'A2:' || $1::text");
    pkt.extend(msg::bind("", "stmt", &["z"]));
    pkt.extend(msg::execute(""));
    pkt.extend(msg::sync());
    a.send(&pkt);
    let m = a.until_ready().unwrap();
    assert_eq!(tags(&m), "12DCZ", "{}{}", show_msgs(&m), p.ctx());
    assert_eq!(Raw::values(&m), ["A2:z"], "{}", p.ctx());
    let m = exec(&mut b, "stmt", "w");
    assert_eq!(Raw::values(&m), ["B:w"], "{}{}", show_msgs(&m), p.ctx());

    // Close of a name never prepared is answered, as PostgreSQL does.
    let mut pkt = msg::close_statement("never_prepared");
    pkt.extend(msg::sync());
    a.send(&pkt);
    let m = a.until_ready().unwrap();
    assert_eq!(tags(&m), "3Z", "{}{}", show_msgs(&m), p.ctx());

    // Bind to an unknown statement fails like PostgreSQL, and then works.
    let m = exec(&mut a, "no_such_stmt", "v");
    assert_eq!(
        m[0].sqlstate().as_deref(),
        Some("26000"),
        "{}{}",
        show_msgs(&m),
        p.ctx()
    );
    assert_eq!(m.last().unwrap().tag, b'Z');
    let m = exec(&mut a, "stmt", "again");
    assert_eq!(
        Raw::values(&m),
        ["A2:again"],
        "{}{}",
        show_msgs(&m),
        p.ctx()
    );
}

#[test]
fn raw_same_statement_name_two_clients_pool_of_one() {
    same_name_different_sql(1);
}

#[test]
fn raw_same_statement_name_two_clients_pool_of_two() {
    same_name_different_sql(2);
}

/// Many messages and several Syncs in one packet, and Flush without Sync.
#[test]
fn pipelined_extended_protocol() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1).auth("trust"));
    let mut a = Raw::login(p.port, USER, "postgres", None, &[])
        .unwrap_or_else(|e| panic!("login: {e}{}", p.ctx()));
    let mut other = p.connect(USER, None, "postgres");

    let mut pkt = Vec::new();
    for i in 0..3 {
        pkt.extend(msg::parse("", &format!("SELECT {i} + $1::int")));
        pkt.extend(msg::bind("", "", &["10"]));
        pkt.extend(msg::execute(""));
        pkt.extend(msg::sync());
    }
    pkt.extend(msg::parse("piped", "SELECT $1::int * 2"));
    for i in 0..3 {
        pkt.extend(msg::bind("", "piped", &[&i.to_string()]));
        pkt.extend(msg::execute(""));
    }
    pkt.extend(msg::sync());
    a.send(&pkt);
    let mut all = Vec::new();
    for _ in 0..4 {
        all.extend(a.until_ready().unwrap_or_else(|e| panic!("{e}{}", p.ctx())));
        // The other client of the pool of one is served once the
        // pipeline has drained, not stuck behind it.
        assert_eq!(p.one(&mut other, "SELECT 'other'"), "other");
    }
    assert_eq!(
        Raw::values(&all),
        ["10", "11", "12", "0", "2", "4"],
        "{}{}",
        show_msgs(&all),
        p.ctx()
    );

    // Flush: the replies come before any Sync.
    let mut pkt = msg::parse("flushed", "SELECT $1::int + 5");
    pkt.extend(msg::describe_statement("flushed"));
    pkt.extend(msg::flush());
    a.send(&pkt);
    let mut got = String::new();
    for _ in 0..3 {
        let m = a
            .read_msg()
            .unwrap_or_else(|e| panic!("no reply to Flush: {e}{}", p.ctx()));
        got.push(m.tag as char);
    }
    assert_eq!(got, "1tT", "{}", p.ctx());
    let mut pkt = msg::bind("", "flushed", &["1"]);
    pkt.extend(msg::execute(""));
    pkt.extend(msg::sync());
    a.send(&pkt);
    let m = a.until_ready().unwrap();
    assert_eq!(Raw::values(&m), ["6"], "{}{}", show_msgs(&m), p.ctx());
}
