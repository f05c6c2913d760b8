//! The relay: simple and multi-statement queries, errors and recovery,
//! transactions in both modes, session state, server parameters, COPY,
//! LISTEN/NOTIFY and notices.

use crate::harness::*;
use postgres::fallible_iterator::FallibleIterator;
use postgres::SimpleQueryMessage;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const MODES: [&str; 2] = ["session", "transaction"];

fn row_values(msgs: &[SimpleQueryMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .collect()
}

fn command_completes(msgs: &[SimpleQueryMessage]) -> usize {
    msgs.iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count()
}

#[test]
fn psql_simple_queries_in_both_modes() {
    for mode in MODES {
        let p = Pooler::start(&Cfg::new().mode(mode));
        let out = p.psql(USER, "postgres", "SELECT 1 + 1");
        assert!(out.status.success(), "{mode}: {}{}", show(&out), p.ctx());
        assert_eq!(text(&out.stdout), "2\n", "{mode}{}", p.ctx());
        let out = p.psql(USER, "app", "SELECT current_database(), current_user");
        assert!(out.status.success(), "{mode}: {}{}", show(&out), p.ctx());
        assert_eq!(text(&out.stdout), "app|plain_user\n", "{mode}{}", p.ctx());
        // psql 15 prints the result of every statement of a -c string.
        let out = p.psql(USER, "postgres", "SELECT 1; SELECT 2; SELECT 'three'");
        assert!(out.status.success(), "{mode}: {}{}", show(&out), p.ctx());
        assert_eq!(text(&out.stdout), "1\n2\nthree\n", "{mode}{}", p.ctx());
    }
}

/// Several statements in one Query message: every result reaches the
/// client, one ReadyForQuery ends it, and an error in the middle stops the
/// rest without breaking the connection.
#[test]
fn multi_statement_query_and_error_in_the_middle() {
    for mode in MODES {
        let p = Pooler::start(&Cfg::new().mode(mode).pool_size(1));
        let mut c = p.client();
        let msgs = c.simple_query("SELECT 1; SELECT 2").unwrap();
        assert_eq!(row_values(&msgs), ["1", "2"], "{mode}{}", p.ctx());
        assert_eq!(command_completes(&msgs), 2, "{mode}{}", p.ctx());

        let t = cluster().new_table("multi", "id int");
        let r = c.simple_query(&format!(
            "INSERT INTO {t} VALUES (1); SELECT 1/0; INSERT INTO {t} VALUES (2)"
        ));
        assert_sqlstate(&r, "22012", &p.ctx());
        // The implicit transaction of the failed string rolled back whole.
        assert_eq!(
            cluster().count("postgres", &format!("SELECT count(*) FROM {t}")),
            0
        );
        assert_eq!(
            p.one(&mut c, "SELECT 'after'"),
            "after",
            "{mode}{}",
            p.ctx()
        );
        // The next client of that server finds it clean (in session mode
        // it only gets the server once this client has gone).
        drop(c);
        let mut other = p.client();
        assert_eq!(
            p.one(&mut other, "SELECT now() = statement_timestamp()"),
            "t",
            "{mode}: the server was handed over inside a transaction{}",
            p.ctx()
        );
    }
}

#[test]
fn error_then_recovery_on_the_same_connection() {
    for mode in MODES {
        let p = Pooler::start(&Cfg::new().mode(mode));
        let mut c = p.client();
        assert_sqlstate(&c.simple_query("SELECT 1/0"), "22012", &p.ctx());
        assert_eq!(p.one(&mut c, "SELECT 42"), "42", "{mode}{}", p.ctx());
        assert_sqlstate(&c.simple_query("SELEC 1"), "42601", &p.ctx());
        // The extended protocol after an error, and an error inside it.
        let r = c.query_one("SELECT $1::int + 1", &[&41i32]).unwrap();
        assert_eq!(r.get::<_, i32>(0), 42, "{mode}{}", p.ctx());
        assert_sqlstate(
            &c.query_one("SELECT 10 / $1::int", &[&0i32]),
            "22012",
            &p.ctx(),
        );
        let r = c.query_one("SELECT 10 / $1::int", &[&5i32]).unwrap();
        assert_eq!(r.get::<_, i32>(0), 2, "{mode}{}", p.ctx());
        assert_sqlstate(
            &c.simple_query("SELECT * FROM no_such_table_here"),
            "42P01",
            &p.ctx(),
        );
        assert_eq!(p.one(&mut c, "SELECT 'ok'"), "ok", "{mode}{}", p.ctx());
    }
}

#[test]
fn transactions_commit_and_rollback_in_both_modes() {
    for mode in MODES {
        let p = Pooler::start(&Cfg::new().mode(mode).pool_size(2));
        let t = cluster().new_table("txn", "id int");
        let mut c = p.client();
        c.batch_execute(&format!("BEGIN; INSERT INTO {t} VALUES (1)"))
            .unwrap();
        c.batch_execute("ROLLBACK").unwrap();
        c.batch_execute("BEGIN").unwrap();
        c.batch_execute(&format!("INSERT INTO {t} VALUES (2)"))
            .unwrap();
        // Not visible to others before COMMIT.
        assert_eq!(
            cluster().count("postgres", &format!("SELECT count(*) FROM {t}")),
            0,
            "{mode}{}",
            p.ctx()
        );
        c.batch_execute("COMMIT").unwrap();
        assert_eq!(
            cluster().sql(
                "postgres",
                &format!("SELECT string_agg(id::text, ',') FROM {t}")
            ),
            "2",
            "{mode}{}",
            p.ctx()
        );
        // The postgres crate's own transaction API (extended protocol).
        let mut tx = c.transaction().unwrap();
        tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[&3i32])
            .unwrap();
        tx.rollback().unwrap();
        let mut tx = c.transaction().unwrap();
        tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[&4i32])
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(
            cluster().sql(
                "postgres",
                &format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM {t}")
            ),
            "2,4",
            "{mode}{}",
            p.ctx()
        );
    }
}

/// In transaction mode a client inside a transaction keeps its server for
/// every statement, while another client's statements go to the other one.
#[test]
fn transaction_mode_keeps_the_server_for_the_whole_transaction() {
    let p = Pooler::start(&Cfg::transaction().pool_size(2));
    let mut a = p.client();
    let mut b = p.client();
    a.batch_execute("BEGIN").unwrap();
    let pid_a = p.backend(&mut a);
    for _ in 0..20 {
        assert_eq!(
            p.backend(&mut a),
            pid_a,
            "server changed mid-transaction{}",
            p.ctx()
        );
        assert_ne!(
            p.backend(&mut b),
            pid_a,
            "another client got a server inside someone's transaction{}",
            p.ctx()
        );
    }
    a.batch_execute("COMMIT").unwrap();
}

/// Transaction mode with one server: two clients take turns on the same
/// backend, and a client in an open transaction makes the other wait.
#[test]
fn transaction_mode_two_clients_share_one_backend() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1));
    let mut a = p.client();
    let mut b = p.client();
    let pid_a = p.backend(&mut a);
    let pid_b = p.backend(&mut b);
    assert_eq!(pid_a, pid_b, "pool_size 1 but two backends{}", p.ctx());
    for i in 0..10 {
        assert_eq!(p.one(&mut a, &format!("SELECT {i}")), i.to_string());
        assert_eq!(
            p.one(&mut b, &format!("SELECT {i} * 2")),
            (i * 2).to_string()
        );
    }

    a.batch_execute("BEGIN").unwrap();
    let waiting = spawn(move || {
        let r = backend_pid(&mut b);
        (r, b)
    });
    // Cannot observe the queue from outside: give the query time to run.
    assert!(
        waiting.recv_timeout(Duration::from_millis(400)).is_err(),
        "a client ran a query while another held the only server in a transaction{}",
        p.ctx()
    );
    assert_eq!(p.one(&mut a, "SELECT 'still mine'"), "still mine");
    a.batch_execute("COMMIT").unwrap();
    let (pid, _b) = waiting
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("waiter not served after COMMIT{}", p.ctx()));
    assert_eq!(pid, pid_a, "{}", p.ctx());
}

/// An idle server stays registered with the worker that released it: clients on
/// either worker (twelve clients: the kernel spreads them over both workers' listeners,
/// all on one would be a 1 in 2048 chance) take turns on the one
/// backend, and when PostgreSQL ends that idle session the pooler notices on its own:
/// the next query of every client succeeds, on a new backend.
#[test]
fn a_parked_server_moves_between_workers_and_its_death_is_noticed() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1));
    let mut clients: Vec<Client> = (0..12).map(|_| p.client()).collect();
    let first = p.backend(&mut clients[0]);
    for _ in 0..3 {
        for c in clients.iter_mut() {
            assert_eq!(
                p.backend(c),
                first,
                "pool_size 1 but another backend{}",
                p.ctx()
            );
        }
    }
    assert!(
        p.log().contains("moves from worker"),
        "twelve clients, yet the server never changed workers{}",
        p.ctx()
    );
    cluster().sql("postgres", &format!("SELECT pg_terminate_backend({first})"));
    let gone = poll(Duration::from_secs(5), || {
        p.log()
            .contains("closed while idle; discarding")
            .then_some(())
    });
    assert!(
        gone.is_some(),
        "the idle server's end went unnoticed{}",
        p.ctx()
    );
    let second = p.backend(&mut clients[11]);
    assert_ne!(second, first);
    for c in clients.iter_mut() {
        assert_eq!(p.backend(c), second, "{}", p.ctx());
    }
}

/// Session mode: what a client SETs stays with it, on one backend.
#[test]
fn session_mode_state_persists_for_the_client() {
    let p = Pooler::start(&Cfg::session().pool_size(2));
    let mut a = p.client();
    let mut b = p.client();
    a.batch_execute("SET work_mem = '7MB'").unwrap();
    a.batch_execute("PREPARE sess_stmt AS SELECT 7").unwrap();
    let pid_a = p.backend(&mut a);
    for _ in 0..5 {
        assert_eq!(p.one(&mut b, "SHOW work_mem"), "4MB", "{}", p.ctx());
        assert_eq!(p.one(&mut a, "SHOW work_mem"), "7MB", "{}", p.ctx());
        assert_eq!(p.one(&mut a, "EXECUTE sess_stmt"), "7", "{}", p.ctx());
        assert_eq!(p.backend(&mut a), pid_a, "{}", p.ctx());
    }
}

/// Session mode runs server_reset_query before the next client gets the
/// same backend: temp tables, SETs and prepared statements are gone.
#[test]
fn session_mode_resets_the_server_between_clients() {
    let p = Pooler::start(&Cfg::session().pool_size(1));
    let tmp = unique("tmp_reset");
    let mut a = p.client();
    a.batch_execute(&format!(
        "CREATE TEMP TABLE {tmp} (x int); SET work_mem = '9MB'; PREPARE reset_stmt AS SELECT 1"
    ))
    .unwrap();
    let pid_a = p.backend(&mut a);
    drop(a);

    let mut b = p.client();
    assert_eq!(
        p.backend(&mut b),
        pid_a,
        "the pool of one reopened its server{}",
        p.ctx()
    );
    assert_eq!(
        one(
            &mut b,
            &format!("SELECT count(*) FROM pg_class WHERE relname = '{tmp}'")
        ),
        "0",
        "temp table survived{}",
        p.ctx()
    );
    assert_eq!(p.one(&mut b, "SHOW work_mem"), "4MB", "{}", p.ctx());
    assert_eq!(
        p.one(&mut b, "SELECT count(*) FROM pg_prepared_statements"),
        "0",
        "{}",
        p.ctx()
    );
}

/// Startup parameters and tracked SETs follow each client onto the one
/// shared backend in transaction mode.
#[test]
fn parameters_follow_the_client_in_transaction_mode() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1));
    let mut a = p
        .config(USER, Some(PW), "postgres")
        .application_name("app_a")
        .options("-c search_path=schema_a")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()));
    let mut b = p
        .config(USER, Some(PW), "postgres")
        .application_name("app_b")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()));
    assert_eq!(p.backend(&mut a), p.backend(&mut b), "{}", p.ctx());
    for _ in 0..3 {
        assert_eq!(
            p.one(&mut a, "SHOW application_name"),
            "app_a",
            "{}",
            p.ctx()
        );
        assert_eq!(
            p.one(&mut b, "SHOW application_name"),
            "app_b",
            "{}",
            p.ctx()
        );
        assert_eq!(p.one(&mut a, "SHOW search_path"), "schema_a", "{}", p.ctx());
        assert_eq!(
            p.one(&mut b, "SHOW search_path"),
            "\"$user\", public",
            "{}",
            p.ctx()
        );
    }

    let tz = cluster().timezone.clone();
    a.batch_execute("SET DateStyle = 'German'").unwrap();
    assert_eq!(p.one(&mut b, "SHOW DateStyle"), "ISO, MDY", "{}", p.ctx());
    assert_eq!(
        p.one(&mut a, "SHOW DateStyle"),
        "German, DMY",
        "{}",
        p.ctx()
    );
    a.batch_execute("SET TimeZone = 'Asia/Tokyo'").unwrap();
    assert_eq!(p.one(&mut b, "SHOW TimeZone"), tz, "{}", p.ctx());
    assert_eq!(p.one(&mut a, "SHOW TimeZone"), "Asia/Tokyo", "{}", p.ctx());
    a.batch_execute("SET IntervalStyle = 'postgres_verbose'")
        .unwrap();
    assert_eq!(
        p.one(&mut b, "SHOW IntervalStyle"),
        "postgres",
        "{}",
        p.ctx()
    );
    assert_eq!(
        p.one(&mut a, "SHOW IntervalStyle"),
        "postgres_verbose",
        "{}",
        p.ctx()
    );
    b.batch_execute("SET application_name = 'app_b2'").unwrap();
    assert_eq!(
        p.one(&mut a, "SHOW application_name"),
        "app_a",
        "{}",
        p.ctx()
    );
    assert_eq!(
        p.one(&mut b, "SHOW application_name"),
        "app_b2",
        "{}",
        p.ctx()
    );
    assert_eq!(
        p.one(&mut a, "SELECT '2024-03-01'::date::text"),
        "01.03.2024",
        "{}",
        p.ctx()
    );
    assert_eq!(
        p.one(&mut b, "SELECT '2024-03-01'::date::text"),
        "2024-03-01",
        "{}",
        p.ctx()
    );
}

/// libpq's PGOPTIONS and PGAPPNAME reach whichever server psql lands on.
#[test]
fn psql_startup_options_are_honoured() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1));
    // search_path is not a reported parameter in PostgreSQL 15, so only
    // startup values (not SETs) can be tracked: set it at startup.
    let mut other = p
        .config(USER, Some(PW), "postgres")
        .options("-c search_path=other_schema")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()));
    assert_eq!(
        p.one(&mut other, "SHOW search_path"),
        "other_schema",
        "{}",
        p.ctx()
    );
    let out = psql_with(
        p.port,
        USER,
        "postgres",
        Some(PW),
        "SHOW search_path; SHOW application_name",
        &[
            ("PGOPTIONS", "-c search_path=myschema"),
            ("PGAPPNAME", "psql_app"),
        ],
    );
    assert!(out.status.success(), "{}{}", show(&out), p.ctx());
    assert_eq!(text(&out.stdout), "myschema\npsql_app\n", "{}", p.ctx());
    assert_eq!(
        p.one(&mut other, "SHOW search_path"),
        "other_schema",
        "{}",
        p.ctx()
    );
}

/// Parameters a raw client sends at startup (as JDBC does with
/// extra_float_digits) hold on the shared server, and every ParameterStatus
/// it receives agrees with its own settings.
#[test]
fn raw_startup_parameters_and_parameter_status_stay_consistent() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1).auth("trust"));
    let mut a = Raw::login(
        p.port,
        USER,
        "postgres",
        None,
        &[("application_name", "raw_a"), ("extra_float_digits", "2")],
    )
    .unwrap_or_else(|e| panic!("login: {e}{}", p.ctx()));
    assert_eq!(
        a.params.get("application_name").map(String::as_str),
        Some("raw_a")
    );
    let mut b = p
        .config(USER, None, "postgres")
        .application_name("app_b")
        .options("-c extra_float_digits=0")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()));
    for _ in 0..3 {
        let reply = a.query("SHOW extra_float_digits");
        assert_eq!(
            Raw::values(&reply),
            ["2"],
            "{}{}",
            show_msgs(&reply),
            p.ctx()
        );
        let reply = a.query("SHOW application_name");
        assert_eq!(
            Raw::values(&reply),
            ["raw_a"],
            "{}{}",
            show_msgs(&reply),
            p.ctx()
        );
        for m in reply.iter().filter(|m| m.tag == b'S') {
            let parts: Vec<&[u8]> = m.body.split(|&b| b == 0).collect();
            if parts[0] == b"application_name" {
                assert_eq!(text(parts[1]), "raw_a", "{}", p.ctx());
            }
        }
        assert_eq!(
            p.one(&mut b, "SHOW application_name"),
            "app_b",
            "{}",
            p.ctx()
        );
        assert_eq!(p.one(&mut b, "SHOW extra_float_digits"), "0", "{}", p.ctx());
    }
}

fn copy_payload(rows: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for i in 0..rows {
        // Varied widths and some multibyte text, no characters COPY escapes.
        let pad = "x".repeat(i % 97);
        writeln!(
            data,
            "{i}\tr\u{e9}sum\u{e9}-\u{6f22}-{i:08x}-{pad}\t{}",
            i * 7
        )
        .unwrap();
    }
    data
}

/// COPY FROM STDIN and COPY TO STDOUT through the extended protocol (the
/// postgres crate), ~1 MB each way, byte-identical, while another client
/// queues for the only server.
#[test]
fn copy_in_and_out_roundtrip_is_byte_identical() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1));
    let t = cluster().new_table("copy_rt", "id int, payload text, n bigint");
    let data = copy_payload(15_000);
    assert!(data.len() > 1_000_000);

    let port = p.port;
    let busy = spawn(move || -> Result<usize, String> {
        let mut c = connect(port, USER, Some(PW), "postgres").map_err(|e| format!("{e:?}"))?;
        for i in 0..50 {
            let v = try_one(&mut c, &format!("SELECT {i}")).map_err(|e| format!("{e:?}"))?;
            if v != i.to_string() {
                return Err(format!("SELECT {i} returned {v}"));
            }
        }
        Ok(50)
    });

    let mut c = p.client();
    let mut w = c.copy_in(&format!("COPY {t} FROM STDIN")).unwrap();
    for chunk in data.chunks(7_919) {
        w.write_all(chunk).unwrap();
    }
    let n = w
        .finish()
        .unwrap_or_else(|e| panic!("COPY FROM: {e:?}{}", p.ctx()));
    assert_eq!(n, 15_000);

    let mut out = Vec::new();
    c.copy_out(&format!("COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT"))
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("COPY TO: {e:?}{}", p.ctx()));
    assert!(
        out == data,
        "COPY TO output differs from COPY FROM input ({} vs {} bytes){}",
        out.len(),
        data.len(),
        p.ctx()
    );
    assert_eq!(p.one(&mut c, "SELECT 'after copy'"), "after copy");
    busy.recv_timeout(Duration::from_secs(20))
        .expect("the concurrent client finished")
        .unwrap_or_else(|e| panic!("concurrent client: {e}{}", p.ctx()));
}

/// The same through psql's simple-protocol COPY.
#[test]
fn psql_copy_in_and_out_roundtrip_is_byte_identical() {
    for mode in MODES {
        let p = Pooler::start(&Cfg::new().mode(mode));
        let t = cluster().new_table("copy_psql", "id int, payload text, n bigint");
        let data = copy_payload(15_000);
        let out = psql_stdin(
            p.port,
            USER,
            "postgres",
            Some(PW),
            &format!("COPY {t} FROM STDIN"),
            &data,
        );
        assert!(out.status.success(), "{mode}: {}{}", show(&out), p.ctx());
        let out = psql(
            p.port,
            USER,
            "postgres",
            Some(PW),
            &format!("COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT"),
        );
        assert!(out.status.success(), "{mode}: {}{}", show(&out), p.ctx());
        assert!(
            out.stdout == data,
            "{mode}: COPY TO output differs ({} vs {} bytes){}",
            out.stdout.len(),
            data.len(),
            p.ctx()
        );
    }
}

/// CopyFail from the client and a server-side error in the middle of COPY
/// data both leave the client's connection and the pool usable.
#[test]
fn copy_fail_and_copy_error_leave_the_connection_usable() {
    for mode in MODES {
        let p = Pooler::start(&Cfg::new().mode(mode).pool_size(1));
        let t = cluster().new_table("copy_fail", "id int");
        let mut c = p.client();
        {
            let mut w = c.copy_in(&format!("COPY {t} FROM STDIN")).unwrap();
            w.write_all(b"1\n2\n3\n").unwrap();
            w.flush().unwrap();
            // Dropping the writer without finish() sends CopyFail.
        }
        assert_eq!(
            p.one(&mut c, "SELECT 'after CopyFail'"),
            "after CopyFail",
            "{mode}{}",
            p.ctx()
        );

        let mut w = c.copy_in(&format!("COPY {t} FROM STDIN")).unwrap();
        let mut bad = Vec::new();
        for i in 0..2000 {
            writeln!(bad, "{i}").unwrap();
        }
        bad.extend_from_slice(b"not a number\n");
        for i in 0..2000 {
            writeln!(bad, "{i}").unwrap();
        }
        let r = w
            .write_all(&bad)
            .map_err(|e| e.to_string())
            .and_then(|_| w.finish().map(|_| ()).map_err(|e| format!("{e:?}")));
        assert!(r.is_err(), "{mode}: bad COPY data was accepted{}", p.ctx());
        assert!(
            r.as_ref().unwrap_err().contains("22P02"),
            "{mode}: expected invalid_text_representation, got {r:?}{}",
            p.ctx()
        );
        assert_eq!(
            p.one(&mut c, "SELECT 'after error'"),
            "after error",
            "{mode}{}",
            p.ctx()
        );
        assert_eq!(
            cluster().count("postgres", &format!("SELECT count(*) FROM {t}")),
            0,
            "{mode}"
        );
        drop(c);
        let mut other = p.client();
        assert_eq!(
            p.one(&mut other, "SELECT now() = statement_timestamp()"),
            "t",
            "{mode}{}",
            p.ctx()
        );
    }
}

fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// COPY through the extended protocol the way tokio-postgres does it:
/// Bind/Execute/Sync, then CopyData/CopyDone (or CopyFail) and another
/// Sync. PostgreSQL ignores a Sync that arrives in copy-in mode, so two
/// Syncs bring one ReadyForQuery; the pooler must not wait for a second.
#[test]
fn raw_extended_copy_with_sync_inside_copy_mode() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1).auth("trust"));
    let t = cluster().new_table("copy_sync", "id int");
    let mut a = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
    for (round, finish) in [(0, msg::copy_done()), (1, msg::copy_fail("client gave up"))] {
        let mut pkt = msg::parse("", &format!("COPY {t} FROM STDIN"));
        pkt.extend(msg::bind("", "", &[]));
        pkt.extend(msg::execute(""));
        pkt.extend(msg::sync());
        a.send(&pkt);
        let mut got = String::new();
        for _ in 0..3 {
            let m = a
                .read_msg()
                .unwrap_or_else(|e| panic!("round {round}: {e}{}", p.ctx()));
            got.push(m.tag as char);
        }
        assert_eq!(got, "12G", "round {round}{}", p.ctx());
        let mut pkt = msg::copy_data(b"1\n2\n");
        pkt.extend(msg::copy_data(b"3\n"));
        pkt.extend(finish);
        pkt.extend(msg::sync());
        a.send(&pkt);
        let reply = a
            .until_ready()
            .unwrap_or_else(|e| panic!("round {round}: {e}{}", p.ctx()));
        let want = if round == 0 { "CZ" } else { "EZ" };
        assert_eq!(
            tags(&reply),
            want,
            "round {round}: {}{}",
            show_msgs(&reply),
            p.ctx()
        );
        assert_eq!(
            Raw::values(&a.query("SELECT 'next'")),
            ["next"],
            "round {round}{}",
            p.ctx()
        );
        let mut other = p.client();
        assert_eq!(p.one(&mut other, &format!("SELECT count(*) FROM {t}")), "3");
    }
}

#[test]
fn listen_notify_in_session_mode() {
    let p = Pooler::start(&Cfg::session());
    let chan = unique("chan");
    let mut a = p.client();
    a.batch_execute(&format!("LISTEN {chan}")).unwrap();
    let mut b = p.client();
    b.batch_execute(&format!("NOTIFY {chan}, 'hi'")).unwrap();
    let n = a
        .notifications()
        .timeout_iter(Duration::from_secs(5))
        .next()
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()))
        .unwrap_or_else(|| panic!("no notification within 5 s{}", p.ctx()));
    assert_eq!(
        (n.channel(), n.payload()),
        (chan.as_str(), "hi"),
        "{}",
        p.ctx()
    );

    // From a session that does not go through the pooler, while A is idle.
    cluster().sql("postgres", &format!("NOTIFY {chan}, 'direct'"));
    let n = a
        .notifications()
        .timeout_iter(Duration::from_secs(5))
        .next()
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()))
        .unwrap_or_else(|| panic!("no direct notification within 5 s{}", p.ctx()));
    assert_eq!(n.payload(), "direct", "{}", p.ctx());
    assert_eq!(p.one(&mut a, "SELECT 'still usable'"), "still usable");
}

#[test]
fn notices_pass_through() {
    for mode in MODES {
        let p = Pooler::start(&Cfg::new().mode(mode));
        let out = p.psql(
            USER,
            "postgres",
            "DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$",
        );
        assert!(out.status.success(), "{mode}: {}{}", show(&out), p.ctx());
        assert!(
            text(&out.stderr).contains("NOTICE:  hello from plpgsql"),
            "{mode}: notice lost: {}{}",
            show(&out),
            p.ctx()
        );
    }
}

/// An error inside a transaction keeps the client on its server (the
/// transaction is failed, not over) until ROLLBACK; meanwhile the other
/// client of a pool of one waits.
#[test]
fn error_inside_transaction_keeps_the_server_until_rollback() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1));
    let mut a = p.client();
    let mut b = p.client();
    a.batch_execute("BEGIN").unwrap();
    let pid = p.backend(&mut a);
    assert_sqlstate(&a.simple_query("SELECT 1/0"), "22012", &p.ctx());
    let waiting = spawn(move || {
        let r = backend_pid(&mut b);
        (r, b)
    });
    assert!(
        waiting.recv_timeout(Duration::from_millis(400)).is_err(),
        "another client got the server of a failed transaction{}",
        p.ctx()
    );
    // Still on the same server, still in the failed transaction.
    assert_sqlstate(&a.simple_query("SELECT 1"), "25P02", &p.ctx());
    a.batch_execute("ROLLBACK").unwrap();
    let (pid_b, _b) = waiting
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("waiter not served after ROLLBACK{}", p.ctx()));
    assert_eq!(pid_b, pid, "{}", p.ctx());
    assert_eq!(p.one(&mut a, "SELECT 'recovered'"), "recovered");
}

/// A client that disconnects in an open or failed transaction, mid-COPY or
/// mid-result must not hand a dirty server to the next client.
#[test]
fn disconnect_in_unclean_state_never_leaks_the_server_state() {
    for mode in MODES {
        let p = Pooler::start(&Cfg::new().mode(mode).pool_size(1).auth("trust"));
        let t = cluster().new_table("dirty", "id int");
        let check = |what: &str| {
            let mut next = connect(p.port, USER, None, "postgres")
                .unwrap_or_else(|e| panic!("{mode}/{what}: {e:?}{}", p.ctx()));
            assert_eq!(
                try_one(&mut next, "SELECT now() = statement_timestamp()")
                    .unwrap_or_else(|e| panic!("{mode}/{what}: {e:?}{}", p.ctx())),
                "t",
                "{mode}/{what}: next client landed inside a transaction{}",
                p.ctx()
            );
            assert_eq!(
                p.one(&mut next, &format!("SELECT count(*) FROM {t}")),
                "0",
                "{mode}/{what}: abandoned work was committed{}",
                p.ctx()
            );
        };

        let mut a = p.client();
        a.batch_execute(&format!("BEGIN; INSERT INTO {t} VALUES (1)"))
            .unwrap();
        drop(a);
        check("open transaction");

        let mut a = p.client();
        a.batch_execute(&format!("BEGIN; INSERT INTO {t} VALUES (1)"))
            .unwrap();
        assert!(a.simple_query("SELECT 1/0").is_err());
        drop(a);
        check("failed transaction");

        let mut raw = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
        raw.send(&msg::query(&format!("COPY {t} FROM STDIN")));
        let m = raw.read_msg().unwrap();
        assert_eq!(
            m.tag,
            b'G',
            "{mode}: expected CopyInResponse, got {m}{}",
            p.ctx()
        );
        raw.send(&[b'd', 0, 0, 0, 6, b'1', b'\n']);
        drop(raw);
        check("mid-COPY");

        let mut raw = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
        raw.send(&msg::query(
            "SELECT g, repeat('x', 100) FROM generate_series(1, 3000000) g",
        ));
        let m = raw.read_msg().unwrap();
        assert_eq!(
            m.tag,
            b'T',
            "{mode}: expected RowDescription, got {m}{}",
            p.ctx()
        );
        drop(raw);
        let t0 = Instant::now();
        check("mid-result");
        assert!(t0.elapsed() < Duration::from_secs(10), "{mode}");
    }
}
