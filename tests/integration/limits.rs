//! Limits, timeouts and cancellation.

use crate::harness::*;
use std::time::{Duration, Instant};

#[test]
fn max_client_conn_refuses_the_next_client_with_53300() {
    let p = Pooler::start(&Cfg::new().set("max_client_conn", 2));
    let c1 = p.client();
    let mut c2 = p.client();
    let r = p.try_connect(USER, Some(PW), "postgres");
    assert_sqlstate(&r, "53300", &p.ctx());
    assert_eq!(
        db_message(r.as_ref().err().unwrap()).as_deref(),
        Some("sorry, too many clients already"),
        "{}",
        p.ctx()
    );
    assert_eq!(p.one(&mut c2, "SELECT 'still here'"), "still here");
    drop(c1);
    let again = poll(Duration::from_secs(5), || {
        p.try_connect(USER, Some(PW), "postgres").ok()
    });
    assert!(again.is_some(), "a freed slot was not reused{}", p.ctx());
}

#[test]
fn query_wait_timeout_fails_the_waiter() {
    let p = Pooler::start(
        &Cfg::transaction()
            .pool_size(1)
            .auth("trust")
            .set("query_wait_timeout", "1s"),
    );
    let mut holder = p.client();
    holder.batch_execute("BEGIN").unwrap();
    let t0 = Instant::now();
    let e = raw_error(p.port, USER, "postgres", "SELECT 1")
        .unwrap_or_else(|e| panic!("waiter: {e}{}", p.ctx()));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "failed after {waited:?}, want ~1 s{}",
        p.ctx()
    );
    let message = e.fields().get(&b'M').cloned().unwrap_or_default();
    assert!(
        message.contains("query_wait_timeout"),
        "error {e} does not name the timeout{}",
        p.ctx()
    );
    holder.batch_execute("COMMIT").unwrap();

    // A wait shorter than the timeout is just a wait.
    let mut waiter = p.client();
    holder.batch_execute("BEGIN").unwrap();
    let rx = spawn(move || try_one(&mut waiter, "SELECT 'served'"));
    std::thread::sleep(Duration::from_millis(300));
    holder.batch_execute("COMMIT").unwrap();
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("waiter finished");
    assert_eq!(r.unwrap_or_else(|e| panic!("{e:?}{}", p.ctx())), "served");
}

/// An idle client is disconnected after client_idle_timeout; a busy one
/// is not, however long it stays.
#[test]
fn client_idle_timeout_disconnects_idle_clients_only() {
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .set("client_idle_timeout", "1s"),
    );
    let mut idle = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
    assert_eq!(Raw::values(&idle.query("SELECT 1")), ["1"]);
    let t0 = Instant::now();
    let closed = spawn(move || idle.until_eof(Duration::from_secs(6)).map(|_| t0.elapsed()));

    let mut busy = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        assert_eq!(
            Raw::values(&busy.query("SELECT 'busy'")),
            ["busy"],
            "{}",
            p.ctx()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = closed
        .recv_timeout(Duration::from_secs(8))
        .expect("idle reader finished")
        .unwrap_or_else(|e| panic!("idle client still connected: {e}{}", p.ctx()));
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(4),
        "idle client closed after {after:?}, want ~1 s{}",
        p.ctx()
    );
}

/// A client idle inside BEGIN is disconnected after
/// idle_transaction_timeout; its work is rolled back and the server is not
/// handed over inside that transaction. Clients idle outside a
/// transaction are left alone.
#[test]
fn idle_transaction_timeout_disconnects_and_cleans_up() {
    let p = Pooler::start(
        &Cfg::transaction()
            .pool_size(1)
            .auth("trust")
            .set("idle_transaction_timeout", "1s"),
    );
    let t = cluster().new_table("idle_tx", "id int");
    let mut outside = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
    let mut a = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
    let reply = a.query(&format!("BEGIN; INSERT INTO {t} VALUES (1)"));
    assert_eq!(
        reply.last().map(|m| m.body.clone()),
        Some(b"T".to_vec()),
        "{}",
        show_msgs(&reply)
    );
    let t0 = Instant::now();
    a.until_eof(Duration::from_secs(6))
        .unwrap_or_else(|e| panic!("client idle in transaction not closed: {e}{}", p.ctx()));
    let after = t0.elapsed();
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(4),
        "closed after {after:?}, want ~1 s{}",
        p.ctx()
    );
    let mut next = p.connect(USER, None, "postgres");
    assert_eq!(
        p.one(&mut next, "SELECT now() = statement_timestamp()"),
        "t",
        "{}",
        p.ctx()
    );
    assert_eq!(
        p.one(&mut next, &format!("SELECT count(*) FROM {t}")),
        "0",
        "{}",
        p.ctx()
    );
    assert_eq!(
        Raw::values(&outside.query("SELECT 'not in a transaction'")),
        ["not in a transaction"],
        "{}",
        p.ctx()
    );
}

/// Connect + login to a server that never answers fails every waiting
/// client within server_connect_timeout, with an ErrorResponse.
fn server_connect_fails_promptly(server_port: u16, what: &str) {
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .set("server_connect_timeout", "1s")
            .db_at("nowhere", "127.0.0.1", server_port, "postgres", ""),
    );
    let port = p.port;
    let t0 = Instant::now();
    let waiters: Vec<_> = (0..3)
        .map(|_| spawn(move || raw_error(port, USER, "nowhere", "SELECT 1")))
        .collect();
    for w in waiters {
        let e = w
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{what}: a client hung{}", p.ctx()))
            .unwrap_or_else(|e| panic!("{what}: {e}{}", p.ctx()));
        assert_eq!(
            e.sqlstate().as_deref(),
            Some("08006"),
            "{what}: {e}{}",
            p.ctx()
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "{what}: took {:?}{}",
        t0.elapsed(),
        p.ctx()
    );
    // The other databases of the same pooler are unaffected (trust_user:
    // no SCRAM round to PostgreSQL that a loaded machine could push past
    // the 1 s timeout).
    let mut c = p.connect(TRUST_USER, None, "postgres");
    assert_eq!(p.one(&mut c, "SELECT 'fine'"), "fine");
}

#[test]
fn server_connect_timeout_on_a_silent_server() {
    let silent = SilentServer::start();
    server_connect_fails_promptly(silent.port, "accepts but never answers");
}

#[test]
fn server_connect_timeout_on_a_hanging_connect() {
    let hole = BlackHole::start();
    assert!(
        hole.hangs(),
        "fixture: connect() to a full accept queue did not hang"
    );
    server_connect_fails_promptly(hole.port, "connect() hangs");
}

#[test]
fn server_refusing_connections_gives_08006() {
    server_connect_fails_promptly(closed_port(), "connection refused");
}

/// Idle servers are kept after their client leaves, and closed after
/// server_idle_timeout.
#[test]
fn server_idle_timeout_closes_idle_servers() {
    let role = cluster().new_role("idle_srv");
    let p = Pooler::start(
        &Cfg::transaction()
            .user(&role, &role)
            .set("server_idle_timeout", "2s"),
    );
    let mut c = p.connect(&role, Some(&role), "postgres");
    assert_eq!(p.one(&mut c, "SELECT 1"), "1");
    drop(c);
    let t0 = Instant::now();
    assert_eq!(
        cluster().backends_of(&role),
        1,
        "the server was not kept in the pool{}",
        p.ctx()
    );
    let gone = poll(Duration::from_secs(8), || {
        (cluster().backends_of(&role) == 0).then(|| t0.elapsed())
    });
    let after = gone.unwrap_or_else(|| panic!("idle server never closed{}", p.ctx()));
    assert!(
        after >= Duration::from_millis(1000),
        "closed after {after:?}, want ~2 s{}",
        p.ctx()
    );
}

/// A server older than server_lifetime is replaced, but never in the
/// middle of a transaction.
#[test]
fn server_lifetime_replaces_old_servers_between_transactions() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1).set("server_lifetime", "1s"));
    let mut c = p.client();
    let first = p.backend(&mut c);
    c.batch_execute("BEGIN").unwrap();
    c.batch_execute("SELECT pg_sleep(1.3)").unwrap();
    assert_eq!(
        p.backend(&mut c),
        first,
        "server replaced mid-transaction{}",
        p.ctx()
    );
    c.batch_execute("COMMIT").unwrap();
    let newer = poll(Duration::from_secs(6), || {
        let pid = p.backend(&mut c);
        (pid != first).then_some(pid)
    });
    assert!(
        newer.is_some(),
        "backend {first} outlived server_lifetime{}",
        p.ctx()
    );
    let closed = poll(Duration::from_secs(5), || {
        (cluster().count(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {first}"),
        ) == 0)
            .then_some(())
    });
    assert!(
        closed.is_some(),
        "old backend {first} still connected{}",
        p.ctx()
    );
}

/// min_pool_size keeps that many servers open for the pool, and refills
/// it when PostgreSQL drops them.
#[test]
fn min_pool_size_keeps_servers_warm() {
    let role = cluster().new_role("warm");
    let p = Pooler::start(&Cfg::transaction().user(&role, &role).db(
        "warm",
        "postgres",
        "min_pool_size = 2\npool_size = 4",
    ));
    // A pool may only exist once a client has used it.
    if poll(Duration::from_secs(2), || {
        (cluster().backends_of(&role) == 2).then_some(())
    })
    .is_none()
    {
        let mut c = p.connect(&role, Some(&role), "warm");
        assert_eq!(p.one(&mut c, "SELECT 1"), "1");
    }
    let warm = poll(Duration::from_secs(5), || {
        (cluster().backends_of(&role) == 2).then_some(())
    });
    assert!(
        warm.is_some(),
        "{} backends, want 2{}",
        cluster().backends_of(&role),
        p.ctx()
    );
    let old = cluster().sql(
        "postgres",
        &format!(
            "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE usename = '{role}'"
        ),
    );
    cluster().sql(
        "postgres",
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"),
    );
    let refilled = poll(Duration::from_secs(6), || {
        let n = cluster().count(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' \
                 AND pid NOT IN ({old})"
            ),
        );
        let old_left = cluster().count(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid IN ({old})"),
        );
        (n == 2 && old_left == 0).then_some(())
    });
    assert!(refilled.is_some(), "pool not refilled to 2{}", p.ctx());
    let mut c = p.connect(&role, Some(&role), "warm");
    assert_eq!(p.one(&mut c, "SELECT 'usable'"), "usable", "{}", p.ctx());
    assert!(cluster().backends_of(&role) <= 4);
}

/// Waits until PostgreSQL shows a query containing `marker` running.
fn wait_running(p: &Pooler, marker: &str) {
    assert!(
        is_running(marker),
        "query {marker} never started{}",
        p.ctx()
    );
}

fn is_running(marker: &str) -> bool {
    poll(Duration::from_secs(5), || {
        (cluster().count(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
            ),
        ) == 1)
            .then_some(())
    })
    .is_some()
}

#[test]
fn cancel_stops_a_running_query_in_both_modes() {
    for mode in ["session", "transaction"] {
        let p = Pooler::start(&Cfg::new().mode(mode).pool_size(2));
        let mut c = p.client();
        let token = c.cancel_token();
        let marker = unique("cancel_me");
        let sql = format!("SELECT pg_sleep(60) /* {marker} */");
        let rx = spawn(move || {
            let r = c.simple_query(&sql).map(|_| ());
            (r, Instant::now(), c)
        });
        wait_running(&p, &marker);
        let t0 = Instant::now();
        token
            .cancel_query(NoTls)
            .unwrap_or_else(|e| panic!("{mode}: sending the cancel: {e:?}{}", p.ctx()));
        let (r, ended, mut c) = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{mode}: query not cancelled{}", p.ctx()));
        assert_sqlstate(&r, "57014", &p.ctx());
        assert!(
            ended.duration_since(t0) < Duration::from_secs(2),
            "{mode}{}",
            p.ctx()
        );
        assert_eq!(
            p.one(&mut c, "SELECT 'after cancel'"),
            "after cancel",
            "{mode}{}",
            p.ctx()
        );
    }
}

/// A raw CancelRequest with the key the pooler gave, over TCP and the unix
/// socket, several times (the cancel connection may land on any worker).
#[test]
fn raw_cancel_request_reaches_the_linked_server() {
    let p = Pooler::start(&Cfg::transaction().auth("trust"));
    let mut r = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
    let (pid, key) = r
        .key
        .unwrap_or_else(|| panic!("no BackendKeyData{}", p.ctx()));
    for round in 0..4 {
        let marker = unique("raw_cancel");
        r.send(&msg::query(&format!("SELECT pg_sleep(60) /* {marker} */")));
        if !is_running(&marker) {
            // Rare in CI and never alone: show what the client got, to tell
            // a query that ended early from one that never reached PostgreSQL.
            let got = r.until_eof(Duration::from_millis(500));
            panic!(
                "round {round}: query {marker} never started; client got {got:?}{}",
                p.ctx()
            );
        }
        if round == 3 {
            send_cancel_unix(&p.unix_socket(), pid, key);
        } else {
            send_cancel(p.port, pid, key);
        }
        let msgs = r
            .until_ready()
            .unwrap_or_else(|e| panic!("round {round}: not cancelled: {e}{}", p.ctx()));
        assert_eq!(
            msgs.iter().find_map(|m| m.sqlstate()).as_deref(),
            Some("57014"),
            "round {round}: {}{}",
            show_msgs(&msgs),
            p.ctx()
        );
    }
    assert_eq!(Raw::values(&r.query("SELECT 'alive'")), ["alive"]);
}

#[test]
fn cancel_with_a_wrong_key_is_ignored() {
    let p = Pooler::start(&Cfg::transaction().auth("trust"));
    let mut r = Raw::login(p.port, USER, "postgres", None, &[]).unwrap();
    let (pid, key) = r
        .key
        .unwrap_or_else(|| panic!("no BackendKeyData{}", p.ctx()));
    let marker = unique("not_cancelled");
    r.send(&msg::query(&format!(
        "SELECT 'done' FROM pg_sleep(1) /* {marker} */"
    )));
    wait_running(&p, &marker);
    send_cancel(p.port, pid, key.wrapping_add(1));
    send_cancel(p.port, pid.wrapping_add(1), key);
    let msgs = r.until_ready().unwrap();
    assert_eq!(
        Raw::values(&msgs),
        ["done"],
        "{}{}",
        show_msgs(&msgs),
        p.ctx()
    );
}

/// A cancel for a client waiting for a server ends its wait with 57014,
/// and its queued query never runs.
#[test]
fn cancel_of_a_waiting_client_drops_its_query() {
    let p = Pooler::start(&Cfg::transaction().pool_size(1));
    let t = cluster().new_table("cancel_wait", "id int");
    let mut holder = p.client();
    let mut waiter = p.client();
    let token = waiter.cancel_token();
    holder.batch_execute("BEGIN").unwrap();
    let insert = format!("INSERT INTO {t} VALUES (1)");
    let rx = spawn(move || {
        let r = waiter.simple_query(&insert).map(|_| ());
        (r, waiter)
    });
    // Nothing outside the pooler shows the queue: give the query time to
    // reach it, and check it is still waiting.
    let rx = match rx.recv_timeout(Duration::from_millis(300)) {
        Err(_) => rx,
        Ok(_) => panic!("the waiter ran while the only server was held{}", p.ctx()),
    };
    let t0 = Instant::now();
    token.cancel_query(NoTls).unwrap();
    let (r, mut waiter) = rx
        .recv_timeout(Duration::from_secs(3))
        .unwrap_or_else(|_| panic!("the waiting client was not cancelled{}", p.ctx()));
    assert_sqlstate(&r, "57014", &p.ctx());
    assert!(t0.elapsed() < Duration::from_secs(2), "{}", p.ctx());
    holder.batch_execute("COMMIT").unwrap();
    // Had the query stayed queued, it would run before this one.
    assert_eq!(
        p.one(&mut holder, &format!("SELECT count(*) FROM {t}")),
        "0",
        "{}",
        p.ctx()
    );
    assert_eq!(
        p.one(&mut waiter, &format!("SELECT count(*) FROM {t}")),
        "0",
        "{}",
        p.ctx()
    );
    assert_eq!(
        cluster().count("postgres", &format!("SELECT count(*) FROM {t}")),
        0
    );
    waiter
        .batch_execute(&format!("INSERT INTO {t} VALUES (2)"))
        .unwrap();
    assert_eq!(
        cluster().count("postgres", &format!("SELECT count(*) FROM {t}")),
        1
    );
}

/// psql's Ctrl-C (SIGINT to psql: libpq sends a CancelRequest) stops the
/// running query within a second.
#[test]
fn psql_ctrl_c_cancels_the_query() {
    for mode in ["session", "transaction"] {
        let p = Pooler::start(&Cfg::new().mode(mode));
        let marker = unique("psql_ctrl_c");
        let mut child = std::process::Command::new("psql")
            .args(["-X", "-h", "127.0.0.1", "-p", &p.port.to_string()])
            .args(["-U", USER, "-d", "postgres", "-c"])
            .arg(format!("SELECT pg_sleep(60) /* {marker} */"))
            .env("PGPASSWORD", PW)
            .env("PGSSLMODE", "disable")
            .env("PGGSSENCMODE", "disable")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run psql");
        wait_running(&p, &marker);
        let t0 = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let exited = poll(Duration::from_secs(5), || child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            exited.is_some(),
            "{mode}: psql still waiting 5 s after Ctrl-C{}",
            p.ctx()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{mode}: took {:?}{}",
            t0.elapsed(),
            p.ctx()
        );
        assert!(
            text(&out.stderr).contains("canceling statement due to user request"),
            "{mode}: {}{}",
            show(&out),
            p.ctx()
        );
    }
}

/// pool_size counts server connections for the whole process: six
/// clients, spread over both workers, all asking for a server at once get
/// exactly two.
#[test]
fn pool_size_holds_across_workers() {
    let role = cluster().new_role("across");
    let p = Pooler::start(
        &Cfg::transaction()
            .pool_size(2)
            .auth("trust")
            .user(&role, &role)
            .set("query_wait_timeout", "1s"),
    );
    let mut clients: Vec<Raw> = (0..6)
        .map(|_| {
            Raw::login(p.port, &role, "postgres", None, &[])
                .unwrap_or_else(|e| panic!("login: {e}{}", p.ctx()))
        })
        .collect();
    for c in clients.iter_mut() {
        c.send(&msg::query("BEGIN; SELECT pg_backend_pid()"));
    }
    let mut pids = Vec::new();
    let mut failed = 0;
    for c in clients.iter_mut() {
        c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let msgs = c
            .until_ready_or_eof()
            .unwrap_or_else(|e| panic!("no reply within 5 s: {e}{}", p.ctx()));
        if msgs.iter().any(|m| m.tag == b'E') || msgs.is_empty() {
            failed += 1;
        } else {
            pids.push(Raw::values(&msgs)[0].clone());
        }
    }
    pids.sort();
    pids.dedup();
    assert_eq!(
        (pids.len(), failed),
        (2, 4),
        "want 2 transactions on 2 backends and 4 timed out{}",
        p.ctx()
    );
    assert_eq!(cluster().backends_of(&role), 2, "{}", p.ctx());
}
