//! Guardrails: query_timeout, result row and byte limits, statement rules, read-only
//! pools and per-address connection limits, against the real PostgreSQL.

use crate::harness::*;
use std::time::{Duration, Instant};

fn code(m: &Msg) -> String {
    m.fields().get(&b'C').cloned().unwrap_or_default()
}

fn message(m: &Msg) -> String {
    m.fields().get(&b'M').cloned().unwrap_or_default()
}

/// The one ErrorResponse among `msgs` (and that there is exactly one).
fn only_error(msgs: &[Msg], ctx: &str) -> Msg {
    let errors: Vec<&Msg> = msgs.iter().filter(|m| m.tag == b'E').collect();
    assert_eq!(errors.len(), 1, "{}{ctx}", show_msgs(msgs));
    errors[0].clone()
}

fn rows(msgs: &[Msg]) -> usize {
    msgs.iter().filter(|m| m.tag == b'D').count()
}

fn status(msgs: &[Msg]) -> u8 {
    msgs.last().map(|m| m.body[0]).unwrap_or(0)
}

fn raw_pid(r: &mut Raw) -> String {
    Raw::values(&r.query("SELECT pg_backend_pid()"))
        .pop()
        .unwrap_or_default()
}

fn extended(r: &mut Raw, sql: &str, max_rows: i32) -> Vec<Msg> {
    let mut batch = msg::parse("", sql);
    batch.extend(msg::bind("", "", &[]));
    batch.extend(msg::execute_max("", max_rows));
    batch.extend(msg::sync());
    r.send(&batch);
    r.until_ready().expect("reply to the extended batch")
}

#[test]
fn query_timeout_cancels_with_57014_and_the_session_goes_on() {
    for mode in ["session", "transaction"] {
        let p = Pooler::start(
            &Cfg::new()
                .mode(mode)
                .pool_size(1)
                .auth("trust")
                .set("query_timeout", "1s"),
        );
        let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
        let pid = raw_pid(&mut r);
        let t0 = Instant::now();
        let reply = r.query("SELECT pg_sleep(30)");
        let took = t0.elapsed();
        let e = only_error(&reply, &p.ctx());
        assert_eq!(code(&e), "57014", "{mode}{}", p.ctx());
        assert_eq!(
            message(&e),
            "canceling statement due to the pooler's query_timeout (1s)",
            "{mode}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{mode}: cancelled after {took:?}{}",
            p.ctx()
        );
        assert_eq!(Raw::values(&r.query("SELECT 'after'")), ["after"], "{mode}");
        assert_eq!(raw_pid(&mut r), pid, "{mode}: the server was not reused");
        // A query shorter than the limit is left alone; the extended protocol too.
        assert_eq!(rows(&extended(&mut r, "SELECT pg_sleep(0.2)", 0)), 1);
        let e = only_error(&extended(&mut r, "SELECT pg_sleep(30)", 0), &p.ctx());
        assert_eq!(code(&e), "57014", "{mode}: extended");
        assert_eq!(raw_pid(&mut r), pid, "{mode}");
    }
}

#[test]
fn query_timeout_is_overridden_per_database_and_user() {
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .db("app", "app", "query_timeout = \"500ms\"")
            .user_with(MD5_USER, &cluster().md5_hash, "query_timeout = 0"),
    );
    let mut plain = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    assert_eq!(
        rows(&plain.query("SELECT pg_sleep(0.8)")),
        1,
        "no global limit"
    );
    let mut app = Raw::login(p.port, TRUST_USER, "app", None, &[]).unwrap();
    let e = only_error(&app.query("SELECT pg_sleep(0.8)"), &p.ctx());
    assert!(message(&e).contains("query_timeout (500ms)"), "{e}");
    let mut exempt = Raw::login(p.port, MD5_USER, "app", None, &[]).unwrap();
    assert_eq!(
        rows(&exempt.query("SELECT pg_sleep(0.8)")),
        1,
        "user override"
    );
}

/// One row limit run per pool mode and protocol: the error after at most the limit,
/// the next query fine, and the same backend (the server was drained, not closed).
#[test]
fn max_result_rows_stops_a_million_rows_with_54000() {
    const BIG: &str = "SELECT generate_series(1, 1000000)";
    for mode in ["session", "transaction"] {
        let p = Pooler::start(
            &Cfg::new()
                .mode(mode)
                .pool_size(1)
                .auth("trust")
                .set("max_result_rows", 1000),
        );
        let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
        let pid = raw_pid(&mut r);
        for (protocol, reply) in [
            ("simple", r.query(BIG)),
            ("extended", extended(&mut r, BIG, 0)),
            (
                "extended, Execute of 5000 rows",
                extended(&mut r, BIG, 5000),
            ),
        ] {
            let ctx = format!("{mode}, {protocol}{}", p.ctx());
            let e = only_error(&reply, &ctx);
            assert_eq!(code(&e), "54000", "{ctx}");
            assert_eq!(
                message(&e),
                "query result exceeded the pooler's max_result_rows (1000 rows)",
                "{ctx}"
            );
            assert!(rows(&reply) <= 1000, "{} rows: {ctx}", rows(&reply));
            assert_eq!(reply.last().map(|m| m.tag), Some(b'Z'), "{ctx}");
            assert_eq!(status(&reply), b'I', "{ctx}");
            assert_eq!(Raw::values(&r.query("SELECT 'next'")), ["next"], "{ctx}");
            assert_eq!(raw_pid(&mut r), pid, "server not reused: {ctx}");
        }
        // Smaller results pass whole; Executes of a portal count together.
        assert_eq!(rows(&r.query("SELECT generate_series(1, 1000)")), 1000);
        let mut batch = msg::parse("", "SELECT generate_series(1, 1500)");
        batch.extend(msg::bind("p", "", &[]));
        for _ in 0..3 {
            batch.extend(msg::execute_max("p", 600));
        }
        batch.extend(msg::sync());
        r.send(&batch);
        let reply = r.until_ready().unwrap();
        assert_eq!(code(&only_error(&reply, &p.ctx())), "54000", "{mode}");
        assert_eq!(
            rows(&reply),
            1000,
            "{mode}: 600 + 400 of the second Execute"
        );

        // In a transaction block the transaction is failed, as after any error.
        r.query("BEGIN");
        let reply = r.query(BIG);
        assert_eq!(code(&only_error(&reply, &p.ctx())), "54000");
        assert_eq!(status(&reply), b'E', "{mode}: {}", show_msgs(&reply));
        let e = only_error(&r.query("SELECT 1"), &p.ctx());
        assert_eq!(code(&e), "25P02", "{mode}");
        r.query("ROLLBACK");
        assert_eq!(raw_pid(&mut r), pid, "{mode}");
    }
}

/// A statement that finished before the cancel landed still leaves a transaction
/// block failed: the pooler fails it itself.
#[test]
fn result_limit_fails_a_transaction_even_when_the_statement_finished() {
    let p = Pooler::start(&Cfg::session().auth("trust").set("max_result_rows", 10));
    let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    r.query("BEGIN");
    // 11 small rows arrive in one packet: the statement is over before any cancel.
    let reply = r.query("SELECT generate_series(1, 11)");
    assert_eq!(code(&only_error(&reply, &p.ctx())), "54000");
    assert_eq!(rows(&reply), 10);
    assert_eq!(status(&reply), b'E', "{}", show_msgs(&reply));
    assert_eq!(code(&only_error(&r.query("SELECT 1"), &p.ctx())), "25P02");
    let reply = r.query("COMMIT");
    assert_eq!(status(&reply), b'I');
    assert_eq!(Raw::values(&r.query("SELECT 'fine'")), ["fine"]);
}

#[test]
fn max_result_bytes_stops_wide_rows_and_copy_out() {
    let p = Pooler::start(
        &Cfg::transaction()
            .pool_size(1)
            .auth("trust")
            .set("max_result_bytes", 100_000),
    );
    let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    let pid = raw_pid(&mut r);
    let reply = r.query("SELECT repeat('x', 10000) FROM generate_series(1, 1000)");
    let e = only_error(&reply, &p.ctx());
    assert_eq!(code(&e), "54000");
    assert_eq!(
        message(&e),
        "query result exceeded the pooler's max_result_bytes (100000 bytes)"
    );
    assert!(rows(&reply) <= 10, "{} rows", rows(&reply));

    let reply = r.query("COPY (SELECT repeat('y', 1000) FROM generate_series(1, 10000)) TO STDOUT");
    let copied: usize = reply
        .iter()
        .filter(|m| m.tag == b'd')
        .map(|m| m.body.len())
        .sum();
    assert_eq!(
        reply.first().map(|m| m.tag),
        Some(b'H'),
        "{}",
        show_msgs(&reply)
    );
    assert!(copied <= 100_000, "{copied} bytes of COPY data passed");
    assert_eq!(code(&only_error(&reply, &p.ctx())), "54000");
    assert_eq!(Raw::values(&r.query("SELECT 'next'")), ["next"]);
    assert_eq!(raw_pid(&mut r), pid);

    // psql reports it like any error during COPY.
    let out = p.psql(
        TRUST_USER,
        "postgres",
        "COPY (SELECT repeat('y', 1000) FROM generate_series(1, 10000)) TO STDOUT",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("max_result_bytes"),
        "{}",
        show(&out)
    );
}

#[test]
fn deny_list_refuses_statements_with_42501_before_postgresql() {
    let c = cluster();
    let victim = c.new_db("guard_victim");
    let table = c.new_table("guard_t", "n int");
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .set_raw(
                "deny_statements",
                r#"["ALTER SYSTEM", "DROP DATABASE", "COPY ... PROGRAM", "LOAD"]"#,
            )
            .db("app", "app", "deny_statements = []"),
    );
    let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    let refused = [
        (
            "/* hi */ alter  SYSTEM set work_mem = '1MB'",
            "ALTER SYSTEM",
        ),
        (
            &format!("-- x\n  DrOp\n DaTaBaSe {victim}") as &str,
            "DROP DATABASE",
        ),
        (
            &format!("COPY {table} TO PROGRAM 'true'"),
            "COPY ... PROGRAM",
        ),
        (
            &format!("INSERT INTO {table} VALUES (1); LOAD 'auto_explain'"),
            "LOAD",
        ),
        ("((LOAD 'x'))", "LOAD"),
    ];
    for (sql, entry) in refused {
        let reply = r.query(sql);
        let e = only_error(&reply, &p.ctx());
        assert_eq!(code(&e), "42501", "{sql}: {e}");
        assert_eq!(
            message(&e),
            format!("statement refused by the pooler's deny_statements: \"{entry}\""),
            "{sql}"
        );
        assert_eq!(status(&reply), b'I');
    }
    assert_eq!(
        c.count(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{victim}'")
        ),
        1
    );
    assert_eq!(
        c.count("postgres", &format!("SELECT count(*) FROM {table}")),
        0,
        "the multi-statement query ran in part"
    );
    // Keywords inside literals, identifiers and comments are not statements.
    let ok = r.query("SELECT 'ALTER SYSTEM', $x$DROP DATABASE$x$, \"load\" FROM (SELECT 1 AS \"load\") s -- LOAD");
    assert_eq!(rows(&ok), 1, "{}", show_msgs(&ok));

    // The extended protocol (Parse), and a transaction block left failed.
    let mut client = p.connect(TRUST_USER, None, "postgres");
    let e = client
        .prepare("ALTER SYSTEM SET work_mem = '1MB'")
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    client.batch_execute("BEGIN").unwrap();
    let e = client.batch_execute("LOAD 'auto_explain'").unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let e = client.query("SELECT 1", &[]).unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"), "{e}");
    client.batch_execute("ROLLBACK").unwrap();
    assert_eq!(one(&mut client, "SELECT 'ok'"), "ok");

    // A database's own list replaces [pooler]'s.
    let mut app = Raw::login(p.port, TRUST_USER, "app", None, &[]).unwrap();
    let e = only_error(&app.query("LOAD 'nonexistent_library'"), &p.ctx());
    assert!(
        message(&e).contains("nonexistent_library") && !message(&e).contains("pooler"),
        "PostgreSQL's own error expected: {e}"
    );
}

#[test]
fn allow_list_passes_only_listed_statements() {
    let p = Pooler::start(&Cfg::session().auth("trust").db(
        "app",
        "app",
        r#"allow_statements = ["SELECT", "SHOW", "BEGIN", "ROLLBACK"]"#,
    ));
    let mut r = Raw::login(p.port, TRUST_USER, "app", None, &[]).unwrap();
    assert_eq!(Raw::values(&r.query("select 'a'")), ["a"]);
    assert_eq!(rows(&r.query("WITH x AS (SELECT 1) SELECT * FROM x")), 1);
    let e = only_error(&r.query("CREATE TEMP TABLE t (n int)"), &p.ctx());
    assert_eq!(code(&e), "42501");
    assert_eq!(
        message(&e),
        "statement refused by the pooler's allow_statements: \"CREATE TEMP TABLE T\" is not allowed"
    );
    let e = only_error(&extended(&mut r, "SET work_mem = '1MB'", 0), &p.ctx());
    assert_eq!(code(&e), "42501", "Parse: {e}");
    assert_eq!(Raw::values(&r.query("SHOW work_mem")).len(), 1);
}

#[test]
fn read_only_pools_refuse_writes_with_25006() {
    let table = cluster().new_table("ro_t", "n int");
    let p = Pooler::start(
        &Cfg::session()
            .pool_size(1)
            .auth("trust")
            .set("server_reset_query", "")
            .db("app", "postgres", "read_only = true"),
    );
    let mut c = p.connect(TRUST_USER, None, "app");
    let e = c
        .batch_execute(&format!("INSERT INTO {table} VALUES (1)"))
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("25006"), "{e}");
    assert_eq!(one(&mut c, "SHOW default_transaction_read_only"), "on");
    // The writable database of the same cluster is not affected.
    let mut w = p.connect(TRUST_USER, None, "postgres");
    w.batch_execute(&format!("INSERT INTO {table} VALUES (1)"))
        .unwrap();

    // A client may turn it off for itself; its server is not handed on like that.
    let pid = backend_pid(&mut c);
    c.batch_execute("SET default_transaction_read_only = off")
        .unwrap();
    c.batch_execute(&format!("INSERT INTO {table} VALUES (2)"))
        .unwrap();
    drop(c);
    let mut next = p.connect(TRUST_USER, None, "app");
    assert_eq!(one(&mut next, "SHOW default_transaction_read_only"), "on");
    assert_ne!(
        backend_pid(&mut next),
        pid,
        "the writable server was reused"
    );
}

#[test]
fn per_address_connection_limit_and_rate_limit_return_53300() {
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .set("max_client_conn_per_addr", 2),
    );
    let a = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    let _b = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    let e = Raw::login(p.port, TRUST_USER, "postgres", None, &[])
        .err()
        .expect("refused");
    assert_eq!(code(&e), "53300");
    assert_eq!(
        message(&e),
        "too many connections from 127.0.0.1 (max_client_conn_per_addr = 2)"
    );
    drop(a);
    let again = poll(Duration::from_secs(5), || {
        Raw::login(p.port, TRUST_USER, "postgres", None, &[]).ok()
    });
    assert!(again.is_some(), "a freed slot was not reused{}", p.ctx());
    // Unix socket clients are exempt.
    let out = psql_unix(
        &p.socket_dir,
        p.port,
        TRUST_USER,
        "postgres",
        None,
        "SELECT 1",
    );
    assert!(out.status.success(), "{}", show(&out));

    // Rate: a burst of 3, then 2 per second; trusted addresses are exempt.
    p.rewrite(
        &Cfg::transaction()
            .auth("trust")
            .set("connect_rate_per_addr", 2)
            .set("connect_burst_per_addr", 3),
    );
    p.reload();
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = None;
    for _ in 0..4 {
        if let Err(e) = Raw::login(p.port, TRUST_USER, "postgres", None, &[]) {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("the 4th quick login is over the burst");
    assert_eq!(code(&e), "53300");
    assert_eq!(
        message(&e),
        "connection rate from 127.0.0.1 is above connect_rate_per_addr = 2/s (burst 3)"
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        Raw::login(p.port, TRUST_USER, "postgres", None, &[]).is_ok(),
        "the bucket refills at the rate{}",
        p.ctx()
    );
    p.rewrite(
        &Cfg::transaction()
            .auth("trust")
            .set("connect_rate_per_addr", 2)
            .set("connect_burst_per_addr", 3)
            .set_raw("trusted_addrs", r#"["127.0.0.0/8"]"#),
    );
    p.reload();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..10 {
        assert!(
            Raw::login(p.port, TRUST_USER, "postgres", None, &[]).is_ok(),
            "trusted login {i} refused{}",
            p.ctx()
        );
    }
}
