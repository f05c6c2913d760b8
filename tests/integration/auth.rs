//! The client handshake: auth_type scram-sha-256, md5, plain and trust,
//! the errors PostgreSQL would give, SSLRequest/GSSENCRequest, protocol
//! versions, and every kind of listener.

use crate::harness::*;
use std::time::Duration;

/// The first message the pooler sends after a startup packet.
fn first_auth_request(port: u16, user: &str, db: &str) -> Msg {
    let mut r = Raw::connect(port);
    r.send(&msg::startup(&[("user", user), ("database", db)]));
    r.read_msg().expect("a reply to the startup packet")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[track_caller]
fn assert_psql_ok(p: &Pooler, out: &std::process::Output, want: &str) {
    assert!(out.status.success(), "{}{}", show(out), p.ctx());
    assert_eq!(text(&out.stdout).trim(), want, "{}{}", show(out), p.ctx());
}

/// scram_user's password in the config is the verifier PostgreSQL stored:
/// the pooler can only log in to PostgreSQL with the ClientKey it learns
/// from the client's SCRAM proof.
#[test]
fn scram_with_verifier_logs_in_clients_and_servers() {
    let p = Pooler::start(&Cfg::transaction().pool_size(2));
    let m = first_auth_request(p.port, SCRAM_USER, "postgres");
    assert_eq!(
        (m.tag, m.int(0)),
        (b'R', 10),
        "expected AuthenticationSASL, got {m}{}",
        p.ctx()
    );
    assert!(contains(&m.body, b"SCRAM-SHA-256\0"), "{m}");

    for _ in 0..2 {
        let out = psql(
            p.port,
            SCRAM_USER,
            "postgres",
            Some(SCRAM_PW),
            "SELECT current_user",
        );
        assert_psql_ok(&p, &out, SCRAM_USER);
    }
    // Two servers opened while two clients hold transactions.
    let mut a = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    let mut b = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    a.batch_execute("BEGIN").unwrap();
    b.batch_execute("BEGIN").unwrap();
    assert_ne!(p.backend(&mut a), p.backend(&mut b), "{}", p.ctx());
    a.batch_execute("COMMIT").unwrap();
    b.batch_execute("COMMIT").unwrap();

    let out = pgbench(
        p.port,
        SCRAM_USER,
        &[
            "-n", "-S", "-t", "50", "-c", "4", "-j", "2", "-M", "extended", "bench",
        ],
    );
    assert!(out.status.success(), "{}{}", show(&out), p.ctx());
    assert!(
        text(&out.stdout).contains("number of failed transactions: 0"),
        "{}{}",
        show(&out),
        p.ctx()
    );
}

#[test]
fn scram_with_plain_password() {
    let p = Pooler::start(&Cfg::new());
    let m = first_auth_request(p.port, PLAIN_USER, "postgres");
    assert_eq!(
        (m.tag, m.int(0)),
        (b'R', 10),
        "expected AuthenticationSASL, got {m}{}",
        p.ctx()
    );
    let out = psql(
        p.port,
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
        "SELECT current_user",
    );
    assert_psql_ok(&p, &out, PLAIN_USER);
    let mut c = p.client();
    assert_eq!(p.one(&mut c, "SELECT current_user"), PLAIN_USER);
}

#[test]
fn md5_auth_type() {
    let p = Pooler::start(&Cfg::new().auth("md5"));
    let m = first_auth_request(p.port, MD5_USER, "postgres");
    assert_eq!(
        (m.tag, m.int(0)),
        (b'R', 5),
        "expected AuthenticationMD5Password, got {m}{}",
        p.ctx()
    );
    assert_eq!(m.body.len(), 8, "md5 request carries a 4-byte salt");
    let out = psql(
        p.port,
        MD5_USER,
        "postgres",
        Some(MD5_PW),
        "SELECT current_user",
    );
    assert_psql_ok(&p, &out, MD5_USER);
    // A plain password in the config serves md5 clients too.
    let out = psql(
        p.port,
        PLAIN_USER,
        "app",
        Some(PLAIN_PW),
        "SELECT current_user",
    );
    assert_psql_ok(&p, &out, PLAIN_USER);
    let r = p.try_connect(MD5_USER, Some("wrong"), "postgres");
    assert_sqlstate(&r, "28P01", &p.ctx());
    let mut c = p.connect(MD5_USER, Some(MD5_PW), "app");
    assert_eq!(p.one(&mut c, "SELECT current_database()"), "app");
}

#[test]
fn plain_auth_type() {
    let p = Pooler::start(&Cfg::new().auth("plain"));
    let m = first_auth_request(p.port, PLAIN_USER, "postgres");
    assert_eq!(
        (m.tag, m.int(0)),
        (b'R', 3),
        "expected AuthenticationCleartextPassword, got {m}{}",
        p.ctx()
    );
    let mut r = Raw::login(p.port, PLAIN_USER, "postgres", Some(PLAIN_PW), &[])
        .unwrap_or_else(|e| panic!("{e}{}", p.ctx()));
    assert_eq!(Raw::values(&r.query("SELECT current_user")), [PLAIN_USER]);
    let e = Raw::login(p.port, PLAIN_USER, "postgres", Some("wrong"), &[])
        .err()
        .unwrap_or_else(|| panic!("wrong password accepted{}", p.ctx()));
    assert_eq!(e.sqlstate().as_deref(), Some("28P01"), "{e}");
    let out = psql(
        p.port,
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
        "SELECT current_user",
    );
    assert_psql_ok(&p, &out, PLAIN_USER);
}

#[test]
fn trust_auth_type() {
    let p = Pooler::start(&Cfg::new().auth("trust"));
    let m = first_auth_request(p.port, TRUST_USER, "postgres");
    assert_eq!(
        (m.tag, m.int(0)),
        (b'R', 0),
        "expected AuthenticationOk, got {m}{}",
        p.ctx()
    );
    let out = psql(p.port, TRUST_USER, "postgres", None, "SELECT current_user");
    assert_psql_ok(&p, &out, TRUST_USER);
    // The client gives no password; the pooler logs in with the configured one.
    let out = psql(p.port, PLAIN_USER, "postgres", None, "SELECT current_user");
    assert_psql_ok(&p, &out, PLAIN_USER);
}

#[test]
fn wrong_password_is_28p01_as_postgres_words_it() {
    let p = Pooler::start(&Cfg::new());
    for user in [PLAIN_USER, SCRAM_USER] {
        let r = p.try_connect(user, Some("definitely wrong"), "postgres");
        assert_sqlstate(&r, "28P01", &p.ctx());
        assert_eq!(
            db_message(r.as_ref().err().unwrap()).as_deref(),
            Some(format!("password authentication failed for user \"{user}\"").as_str()),
            "{}",
            p.ctx()
        );
        let out = psql(
            p.port,
            user,
            "postgres",
            Some("definitely wrong"),
            "SELECT 1",
        );
        assert!(!out.status.success(), "{}", show(&out));
        assert!(
            text(&out.stderr).contains(&format!(
                "password authentication failed for user \"{user}\""
            )),
            "{}{}",
            show(&out),
            p.ctx()
        );
    }
    let mut c = p.connect(PLAIN_USER, Some(PLAIN_PW), "postgres");
    assert_eq!(p.one(&mut c, "SELECT 1"), "1");
}

#[test]
fn unknown_user_is_28p01() {
    let p = Pooler::start(&Cfg::new());
    let r = p.try_connect("nobody_here", Some("whatever"), "postgres");
    assert_sqlstate(&r, "28P01", &p.ctx());
    assert_eq!(
        db_message(r.as_ref().err().unwrap()).as_deref(),
        Some("password authentication failed for user \"nobody_here\""),
        "{}",
        p.ctx()
    );
}

#[test]
fn unknown_database_is_3d000() {
    let p = Pooler::start(&Cfg::new());
    let r = p.try_connect(PLAIN_USER, Some(PLAIN_PW), "nosuchdb");
    assert_sqlstate(&r, "3D000", &p.ctx());
    assert_eq!(
        db_message(r.as_ref().err().unwrap()).as_deref(),
        Some("database \"nosuchdb\" does not exist"),
        "{}",
        p.ctx()
    );
    let out = psql(p.port, PLAIN_USER, "nosuchdb", Some(PLAIN_PW), "SELECT 1");
    assert!(
        text(&out.stderr).contains("database \"nosuchdb\" does not exist"),
        "{}{}",
        show(&out),
        p.ctx()
    );
}

/// Protocol 2.0 is gone: the pooler answers with an error, not silence.
#[test]
fn startup_with_protocol_2_is_refused_with_an_error() {
    let p = Pooler::start(&Cfg::new());
    let mut r = Raw::connect(p.port);
    r.send(&msg::startup_version(
        0x0002_0000,
        &[("user", PLAIN_USER), ("database", "postgres")],
    ));
    let first = r
        .read_byte()
        .unwrap_or_else(|e| panic!("no reply to a 2.0 startup: {e}{}", p.ctx()));
    assert_eq!(first, b'E', "{}", p.ctx());
    // The pooler is unharmed.
    let out = p.psql(PLAIN_USER, "postgres", "SELECT 1");
    assert_psql_ok(&p, &out, "1");
}

/// SSLRequest and GSSENCRequest get 'N', after which the same connection
/// goes on with a normal startup (libpq's prefer modes do exactly this).
#[test]
fn ssl_and_gssenc_requests_are_answered_n() {
    let p = Pooler::start(&Cfg::new().auth("trust"));
    for (what, preludes) in [
        ("SSLRequest", vec![msg::ssl_request()]),
        ("GSSENCRequest", vec![msg::gssenc_request()]),
        (
            "GSSENCRequest then SSLRequest",
            vec![msg::gssenc_request(), msg::ssl_request()],
        ),
    ] {
        let mut r = Raw::connect(p.port);
        for pre in preludes {
            r.send(&pre);
            let b = r
                .read_byte()
                .unwrap_or_else(|e| panic!("{what}: no answer: {e}{}", p.ctx()));
            assert_eq!(b, b'N', "{what}{}", p.ctx());
        }
        r.send(&msg::startup(&[
            ("user", PLAIN_USER),
            ("database", "postgres"),
        ]));
        let msgs = r
            .until_ready()
            .unwrap_or_else(|e| panic!("{what}: startup after 'N': {e}{}", p.ctx()));
        assert_eq!(
            (msgs[0].tag, msgs[0].int(0)),
            (b'R', 0),
            "{what}: {}",
            show_msgs(&msgs)
        );
        assert_eq!(
            Raw::values(&r.query("SELECT 'plain text'")),
            ["plain text"],
            "{what}"
        );
    }
    let out = psql_with(
        p.port,
        PLAIN_USER,
        "postgres",
        None,
        "SELECT 'fell back'",
        &[("PGSSLMODE", "prefer")],
    );
    assert_psql_ok(&p, &out, "fell back");
}

#[test]
fn listens_on_the_unix_socket() {
    let p = Pooler::start(&Cfg::new());
    let sock = p.unix_socket();
    assert!(
        poll(Duration::from_secs(5), || sock.exists().then_some(())).is_some(),
        "no socket at {}{}",
        sock.display(),
        p.ctx()
    );
    let out = psql_unix(
        &p.socket_dir,
        p.port,
        PLAIN_USER,
        "app",
        Some(PLAIN_PW),
        "SELECT current_database()",
    );
    assert_psql_ok(&p, &out, "app");
    let mut c = postgres::Config::new()
        .host_path(&p.socket_dir)
        .port(p.port)
        .user(SCRAM_USER)
        .password(SCRAM_PW)
        .dbname("postgres")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("{e:?}{}", p.ctx()));
    assert_eq!(p.one(&mut c, "SELECT current_user"), SCRAM_USER);
}

#[test]
fn listens_on_ipv4_and_ipv6_loopback() {
    let p = Pooler::start(&Cfg::new().set_raw("listen_addr", r#"["127.0.0.1", "::1"]"#));
    let out = psql_host(
        "::1",
        p.port,
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
        "SELECT inet_client_addr()",
    );
    assert!(out.status.success(), "{}{}", show(&out), p.ctx());
    let out = psql_host(
        "127.0.0.1",
        p.port,
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
        "SELECT 4",
    );
    assert_psql_ok(&p, &out, "4");
}

#[test]
fn listens_on_ipv6_only() {
    let p = Pooler::start(&Cfg::new().set("listen_addr", "::1").probe(ipv6_loopback()));
    let out = psql_host(
        "::1",
        p.port,
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
        "SELECT 6",
    );
    assert_psql_ok(&p, &out, "6");
}

#[test]
fn listens_on_star() {
    let p = Pooler::start(&Cfg::new().set("listen_addr", "*"));
    let out = psql(
        p.port,
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
        "SELECT 'star'",
    );
    assert_psql_ok(&p, &out, "star");
}

/// In transaction mode a client has no one backend: the key it gets must
/// be the pooler's, not some PostgreSQL backend's.
#[test]
fn backend_key_data_is_the_poolers_own() {
    let p = Pooler::start(&Cfg::transaction().auth("trust"));
    let mut r = Raw::login(p.port, PLAIN_USER, "postgres", None, &[])
        .unwrap_or_else(|e| panic!("{e}{}", p.ctx()));
    let (pid, _) = r
        .key
        .unwrap_or_else(|| panic!("no BackendKeyData{}", p.ctx()));
    let real: i32 = Raw::values(&r.query("SELECT pg_backend_pid()"))[0]
        .parse()
        .unwrap();
    assert_ne!(
        pid,
        real,
        "the client was given the backend's own key{}",
        p.ctx()
    );
}

/// At trace level, through SCRAM, md5 and cleartext logins, right and wrong passwords,
/// no password, hash or verifier key reaches the log (checked by `Pooler`'s drop, as
/// after every test; here the log is as talkative as it gets).
#[test]
fn secrets_never_reach_the_log_even_at_trace() {
    for auth_type in ["scram-sha-256", "md5", "plain"] {
        let p = Pooler::start(
            &Cfg::new()
                .auth(auth_type)
                .set("log_level", "trace")
                .env("RUST_LOG", "trace"),
        );
        for (user, pw) in [
            (SCRAM_USER, SCRAM_PW),
            (MD5_USER, MD5_PW),
            (PLAIN_USER, PLAIN_PW),
        ] {
            // Some pairs cannot log in (SCRAM against a stored md5 hash); the
            // attempt is what matters here.
            if let Ok(mut c) = p.try_connect(user, Some(pw), "app") {
                assert_eq!(one(&mut c, "SELECT 1"), "1");
            }
            let wrong = p.try_connect(user, Some("not-the-password"), "app");
            assert!(wrong.is_err(), "{auth_type} {user}");
        }
        let log = std::fs::read_to_string(p.socket_dir.join("pooler.log")).unwrap_or_default();
        assert!(log.contains("TRACE"), "not at trace level{}", p.ctx());
        assert_eq!(leaked_secret(&log), None, "{auth_type}{}", p.ctx());
    }
}
