//! auth_query in server_user mode: users that `[users]` does not list are
//! looked up in PostgreSQL (md5 hashes and SCRAM verifiers alike), share the
//! pool of `server_user`, and are refused exactly like a wrong password when
//! the lookup finds nothing usable. Also the cache (single flight, refetch
//! after a changed password, its rate limit, negative entries, TTL), an
//! executor whose PostgreSQL is down, `[users]` precedence and hba.
//!
//! Lookups are counted with a SECURITY DEFINER function that logs every call
//! in a table of its own ([`LookupLog`]), so the query's user needs no
//! superuser and each test counts only its own lookups.

use crate::harness::*;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The name of the pooler database that has the auth_query in most tests.
pub(crate) const AQ: &str = "aq";

/// `s` as an SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A login role with this password, stored as `encryption` ("md5" or
/// "scram-sha-256"); `options` are more CREATE ROLE options.
pub(crate) fn role(prefix: &str, encryption: &str, password: &str, options: &str) -> String {
    let name = unique(prefix);
    cluster().sql(
        "postgres",
        &format!(
            "SET password_encryption = '{encryption}';
             CREATE ROLE {name} LOGIN PASSWORD {} {options}",
            lit(password)
        ),
    );
    name
}

pub(crate) fn alter_password(name: &str, encryption: &str, password: &str) {
    cluster().sql(
        "postgres",
        &format!(
            "SET password_encryption = '{encryption}';
             ALTER ROLE {name} PASSWORD {}",
            lit(password)
        ),
    );
}

/// Who runs the query and whose pool the looked-up users share. Both
/// passwords equal the role names (`new_role`'s convention).
pub(crate) struct Roles {
    pub(crate) auth: String,
    pub(crate) server: String,
}

impl Roles {
    /// An unprivileged query user: enough for [`LookupLog`]'s function.
    pub(crate) fn new() -> Roles {
        let cl = cluster();
        Roles {
            auth: cl.new_role("aq_auth"),
            server: cl.new_role("aq_srv"),
        }
    }

    /// A superuser query user: the default query reads pg_authid, which
    /// only superusers may.
    fn superuser() -> Roles {
        let auth = unique("aq_su");
        cluster().sql(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256';
                 CREATE ROLE {auth} SUPERUSER LOGIN PASSWORD '{auth}'"
            ),
        );
        Roles {
            auth,
            server: cluster().new_role("aq_srv"),
        }
    }

    /// `[databases.DB.auth_query]` running `query` (None: the default one)
    /// as `self.auth`, server_user mode; `extra` is more `key = value` lines.
    pub(crate) fn section(&self, db: &str, query: Option<&str>, extra: &str) -> String {
        let query = query
            .map(|q| format!("query = {q:?}\n"))
            .unwrap_or_default();
        format!(
            "[databases.{db}.auth_query]\n{query}user = {:?}\npassword = {:?}\n\
             server_user = {:?}\nserver_password = {:?}\n{extra}\n",
            self.auth, self.auth, self.server, self.server
        )
    }

    /// `cfg` plus database `db` (PostgreSQL's `postgres`) with this auth_query.
    fn add(&self, cfg: Cfg, db: &str, query: Option<&str>, extra: &str) -> Cfg {
        cfg.db(db, "postgres", "")
            .extra(&self.section(db, query, extra))
    }
}

/// md5 so that both md5-hashed and SCRAM-stored roles can log in.
pub(crate) fn base() -> Cfg {
    Cfg::transaction().auth("md5")
}

/// A lookup function that counts its calls: `public.FUNC(name)` inserts the
/// name it was given into `public.FUNC_calls` and returns that role's
/// (rolname, rolpassword) like the default query (LOGIN roles, NULL once
/// VALID UNTIL has passed). SECURITY DEFINER, owned by the superuser, so
/// the query's user may run it without reading pg_authid itself.
pub(crate) struct LookupLog {
    pub(crate) func: String,
    pub(crate) table: String,
}

impl LookupLog {
    /// `delay`: seconds each call sleeps, to hold a lookup in flight.
    pub(crate) fn new(roles: &Roles, delay: f64) -> LookupLog {
        let func = unique("aq_lookup");
        let table = format!("{func}_calls");
        cluster().sql(
            "postgres",
            &format!(
                "CREATE TABLE public.{table} (name text);
                 CREATE FUNCTION public.{func}(u text)
                 RETURNS TABLE (usename name, passwd text)
                 LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $f$
                 BEGIN
                     INSERT INTO public.{table} VALUES (u);
                     PERFORM pg_sleep({delay});
                     RETURN QUERY
                         SELECT a.rolname,
                                CASE WHEN a.rolvaliduntil < now() THEN NULL
                                     ELSE a.rolpassword END
                         FROM pg_catalog.pg_authid a
                         WHERE a.rolname = u AND a.rolcanlogin;
                 END
                 $f$;
                 REVOKE ALL ON FUNCTION public.{func}(text) FROM PUBLIC;
                 GRANT EXECUTE ON FUNCTION public.{func}(text) TO {};",
                roles.auth
            ),
        );
        LookupLog { func, table }
    }

    /// Schema-qualified: the executor's search_path is pg_catalog only.
    pub(crate) fn query(&self) -> String {
        format!("SELECT * FROM public.{}($1)", self.func)
    }

    /// Lookups of `name` so far.
    pub(crate) fn of(&self, name: &str) -> i64 {
        cluster().count(
            "postgres",
            &format!(
                "SELECT count(*) FROM public.{} WHERE name = {}",
                self.table,
                lit(name)
            ),
        )
    }

    fn total(&self) -> i64 {
        cluster().count(
            "postgres",
            &format!("SELECT count(*) FROM public.{}", self.table),
        )
    }

    /// Waits (briefly) for the lookups of `name` to reach `want`, then
    /// asserts they are exactly `want`: a refetch may still be committing
    /// when the login it was for has already been answered.
    #[track_caller]
    pub(crate) fn expect(&self, p: &Pooler, name: &str, want: i64, what: &str) {
        let _ = poll(Duration::from_secs(5), || {
            (self.of(name) >= want).then_some(())
        });
        assert_eq!(self.of(name), want, "lookups of {name} {what}{}", p.ctx());
    }
}

/// Asserts the login was refused as a wrong password is: 28P01 and
/// PostgreSQL's message, nothing that tells whether `user` exists.
#[track_caller]
pub(crate) fn assert_refused(p: &Pooler, r: &Result<Client, postgres::Error>, user: &str) {
    assert_sqlstate(r, "28P01", &p.ctx());
    assert_eq!(
        db_message(r.as_ref().err().unwrap()).as_deref(),
        Some(format!("password authentication failed for user \"{user}\"").as_str()),
        "{}",
        p.ctx()
    );
}

#[track_caller]
pub(crate) fn assert_whoami(p: &Pooler, user: &str, password: &str, db: &str, want: &str) {
    let mut c = p
        .try_connect(user, Some(password), db)
        .unwrap_or_else(|e| panic!("login as {user} to {db}: {e:?}{}", p.ctx()));
    assert_eq!(p.one(&mut c, "SELECT current_user"), want, "{}", p.ctx());
}

/// The first message the pooler sends after a startup packet.
pub(crate) fn first_reply(port: u16, user: &str, db: &str) -> Msg {
    let mut r = Raw::connect(port);
    r.send(&msg::startup(&[("user", user), ("database", db)]));
    r.read_msg().expect("a reply to the startup packet")
}

fn postgres_log() -> PathBuf {
    cluster().root.join("pg").join("postgres.log")
}

/// The default query with a superuser: a SCRAM-stored and an md5-stored
/// role log in with their own exchange, through psql and the postgres
/// crate, and every query runs as server_user on server_user's pool.
#[test]
fn scram_and_md5_roles_log_in_as_server_user() {
    let roles = Roles::superuser();
    let scram = role("aq_scram", "scram-sha-256", "scram secret", "");
    let md5 = role("aq_md5", "md5", "md5 secret", "");
    let p = Pooler::start(&roles.add(base(), AQ, None, ""));

    // Like PostgreSQL under md5: a SCRAM verifier can only serve SCRAM.
    let m = first_reply(p.port, &scram, AQ);
    assert_eq!(
        (m.tag, m.int(0)),
        (b'R', 10),
        "expected AuthenticationSASL, got {m}{}",
        p.ctx()
    );
    let m = first_reply(p.port, &md5, AQ);
    assert_eq!(
        (m.tag, m.int(0)),
        (b'R', 5),
        "expected AuthenticationMD5Password, got {m}{}",
        p.ctx()
    );

    let mut held = Vec::new();
    for (user, pw) in [(&scram, "scram secret"), (&md5, "md5 secret")] {
        let out = psql(p.port, user, AQ, Some(pw), "SELECT current_user");
        assert!(out.status.success(), "{user}: {}{}", show(&out), p.ctx());
        assert_eq!(text(&out.stdout).trim(), roles.server, "{}", p.ctx());
        assert_whoami(&p, user, pw, AQ, &roles.server);
        let mut c = p.connect(user, Some(pw), AQ);
        c.batch_execute("BEGIN").unwrap();
        assert_eq!(p.one(&mut c, "SELECT current_user"), roles.server);
        held.push(c);
    }
    // Two transactions at once: two backends at least (of a pool of 4),
    // server_user's; none ever logged in as the clients' own roles.
    let servers = cluster().backends_of(&roles.server);
    assert!((2..=4).contains(&servers), "{servers} backends{}", p.ctx());
    for user in [&scram, &md5] {
        assert_eq!(cluster().backends_of(user), 0, "{}", p.ctx());
    }
    for c in &mut held {
        c.batch_execute("COMMIT").unwrap();
    }
    // Static users on the other databases are untouched.
    assert_whoami(&p, SCRAM_USER, SCRAM_PW, "app", SCRAM_USER);
}

/// A wrong password and a user PostgreSQL does not know get the same
/// error, so a client cannot probe for role names.
#[test]
fn wrong_password_and_unknown_user_look_alike() {
    let roles = Roles::superuser();
    let scram = role("aq_scram", "scram-sha-256", "right", "");
    let md5 = role("aq_md5", "md5", "right", "");
    let unknown = unique("aq_nobody");
    let p = Pooler::start(&roles.add(base(), AQ, None, ""));

    let shape = |user: &str| -> (Option<String>, String, String) {
        let r = p.try_connect(user, Some("wrong"), AQ);
        assert_refused(&p, &r, user);
        let e = r.err().unwrap();
        let db = e.as_db_error().unwrap();
        (
            sqlstate(&e),
            db.severity().to_string(),
            db.message().replace(user, "NAME"),
        )
    };
    let want = shape(&unknown);
    assert_eq!(shape(&scram), want, "{}", p.ctx());
    assert_eq!(shape(&md5), want, "{}", p.ctx());

    // libpq's words too, names aside.
    let psql_error = |user: &str| {
        let out = psql(p.port, user, AQ, Some("wrong"), "SELECT 1");
        assert!(!out.status.success(), "{user}: {}{}", show(&out), p.ctx());
        let port = p.port.to_string();
        text(&out.stderr)
            .replace(user, "NAME")
            .replace(&port, "PORT")
    };
    let want = psql_error(&unknown);
    assert!(
        want.contains("password authentication failed for user \"NAME\""),
        "{want}{}",
        p.ctx()
    );
    assert_eq!(psql_error(&scram), want, "{}", p.ctx());
    assert_eq!(psql_error(&md5), want, "{}", p.ctx());
}

/// The user name is the query's $1, never pasted into it: names shaped
/// like SQL injection reach the function intact, find nothing, and cause
/// no SQL error in PostgreSQL.
///
/// PostgreSQL's own log (`log_min_messages = warning` writes every ERROR
/// with its STATEMENT) is the error count here: it is shared with the
/// parallel tests, so only lines naming this test's function or marker
/// count. pg_stat_database's xact_rollback would count their errors too.
#[test]
fn injection_shaped_names_are_data_not_sql() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let p = Pooler::start(&roles.add(base(), AQ, Some(&log.query()), ""));
    let marker = unique("inj");
    let names = [
        format!("{marker}' OR '1'='1"),
        format!("{marker}'); DROP TABLE public.{}; --", log.table),
        format!("{marker}\" OR \"1\"=\"1"),
    ];
    let pg_log = postgres_log();
    let offset = fs::metadata(&pg_log)
        .map(|m| m.len() as usize)
        .unwrap_or_else(|e| panic!("{}: {e}", pg_log.display()));

    for name in &names {
        let r = p.try_connect(name, Some("x"), AQ);
        assert_refused(&p, &r, name);
        // Found nothing, so nothing to log in with, password or not.
        let out = psql(p.port, name, AQ, Some("' OR '1'='1"), "SELECT 1");
        assert!(!out.status.success(), "{name}: {}{}", show(&out), p.ctx());
        // Exactly one call, with exactly this name: the negative entry
        // answered the second login.
        assert_eq!(log.of(name), 1, "lookups of {name:?}{}", p.ctx());
    }
    // The table the second name tried to drop still counts.
    assert_eq!(log.total(), names.len() as i64, "{}", p.ctx());

    let written = fs::read(&pg_log).unwrap_or_default();
    let new = text(&written[offset.min(written.len())..]);
    let errors: Vec<&str> = new
        .lines()
        .filter(|l| l.contains(&marker) || l.contains(&log.func))
        .collect();
    assert!(
        errors.is_empty(),
        "PostgreSQL logged errors for the lookups:\n{}{}",
        errors.join("\n"),
        p.ctx()
    );
}

/// 50 clients logging in at once as one uncached user: one query. The
/// function sleeps so that they all arrive while it is in flight.
#[test]
fn concurrent_first_logins_share_one_lookup() {
    const CLIENTS: usize = 50;
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.5);
    let user = role("aq_many", "md5", "many", "");
    let p = Pooler::start(&roles.add(base(), AQ, Some(&log.query()), ""));

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let port = p.port;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (barrier, user) = (barrier.clone(), user.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut c = connect(port, &user, Some("many"), AQ)?;
                try_one(&mut c, "SELECT current_user")
            })
        })
        .collect();
    for t in threads {
        match t.join().expect("client thread") {
            Ok(who) => assert_eq!(who, roles.server, "{}", p.ctx()),
            Err(e) => panic!("concurrent login as {user}: {e:?}{}", p.ctx()),
        }
    }
    assert_eq!(log.of(&user), 1, "{}", p.ctx());
}

/// ALTER ROLE ... PASSWORD in PostgreSQL while the old secret is cached.
/// md5: the pooler refetches on the failed check and re-verifies the same
/// response, so the new password works at once. SCRAM: the client's proof
/// was computed with the old salt, so that one login fails, the refetch
/// replaces the verifier, and the next login works. Either way the old
/// password is refused afterwards.
#[test]
fn changed_password_is_refetched_after_a_failed_check() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let md5 = role("aq_md5", "md5", "old", "");
    let scram = role("aq_scram", "scram-sha-256", "old", "");
    // No rate limit: every failed check may refetch.
    let p = Pooler::start(&roles.add(base(), AQ, Some(&log.query()), "min_interval = \"0s\""));

    assert_whoami(&p, &md5, "old", AQ, &roles.server);
    log.expect(&p, &md5, 1, "after the first login");
    alter_password(&md5, "md5", "new");
    assert_whoami(&p, &md5, "new", AQ, &roles.server);
    log.expect(&p, &md5, 2, "after the first login with the new password");
    let r = p.try_connect(&md5, Some("old"), AQ);
    assert_refused(&p, &r, &md5);
    log.expect(&p, &md5, 3, "after the old password was tried");

    assert_whoami(&p, &scram, "old", AQ, &roles.server);
    log.expect(&p, &scram, 1, "after the first login");
    alter_password(&scram, "scram-sha-256", "new");
    let r = p.try_connect(&scram, Some("new"), AQ);
    assert_refused(&p, &r, &scram);
    log.expect(&p, &scram, 2, "after the proof against the old salt failed");
    // A cache hit on the refetched verifier.
    assert_whoami(&p, &scram, "new", AQ, &roles.server);
    log.expect(&p, &scram, 2, "after logging in with the new password");
    let r = p.try_connect(&scram, Some("old"), AQ);
    assert_refused(&p, &r, &scram);
    log.expect(&p, &scram, 3, "after the old password was tried");
}

/// A burst of wrong passwords refetches at most once per min_interval, and
/// once the interval has passed a changed password is picked up.
#[test]
fn failed_checks_refetch_at_most_once_per_min_interval() {
    const INTERVAL: Duration = Duration::from_secs(2);
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = role("aq_burst", "md5", "right", "");
    let p = Pooler::start(&roles.add(base(), AQ, Some(&log.query()), "min_interval = \"2s\""));

    let t0 = Instant::now();
    assert_whoami(&p, &user, "right", AQ, &roles.server);
    for _ in 0..20 {
        let r = p.try_connect(&user, Some("wrong"), AQ);
        assert_refused(&p, &r, &user);
    }
    let elapsed = t0.elapsed();
    // The first fetch starts the interval; a refetch may follow each full
    // interval since. A burst this short allows at most one.
    let most = 1 + (elapsed.as_millis() / INTERVAL.as_millis()) as i64;
    let after_burst = log.of(&user);
    assert!(
        (1..=most.max(2)).contains(&after_burst),
        "{after_burst} lookups for 1 login and 20 wrong passwords in {elapsed:?}{}",
        p.ctx()
    );

    // Refused (without a lookup) until the interval allows the refetch
    // that finds the new hash.
    alter_password(&user, "md5", "changed");
    let mut refused = 0;
    let client = poll(INTERVAL + Duration::from_secs(3), || {
        match p.try_connect(&user, Some("changed"), AQ) {
            Ok(c) => Some(c),
            Err(e) => {
                assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}{}", p.ctx());
                refused += 1;
                None
            }
        }
    });
    let mut c = client.unwrap_or_else(|| {
        panic!(
            "the new password never worked ({refused} refusals){}",
            p.ctx()
        )
    });
    assert_eq!(p.one(&mut c, "SELECT current_user"), roles.server);
    assert_eq!(log.of(&user), after_burst + 1, "{}", p.ctx());
}

/// The default query refuses a role whose VALID UNTIL has passed (its
/// password comes back NULL) and a NOLOGIN role (no row), exactly like a
/// wrong password.
#[test]
fn expired_and_nologin_roles_are_refused() {
    let roles = Roles::superuser();
    let expired = role("aq_expired", "md5", "pw", "VALID UNTIL '2000-01-01'");
    let nologin = role("aq_nologin", "scram-sha-256", "pw", "");
    cluster().sql("postgres", &format!("ALTER ROLE {nologin} NOLOGIN"));
    let fine = role("aq_fine", "md5", "pw", "VALID UNTIL 'infinity'");
    let p = Pooler::start(&roles.add(base(), AQ, None, ""));

    for user in [&expired, &nologin] {
        let r = p.try_connect(user, Some("pw"), AQ);
        assert_refused(&p, &r, user);
    }
    assert_whoami(&p, &fine, "pw", AQ, &roles.server);
}

/// A lookup whose PostgreSQL refuses connections or never answers fails
/// the login with 08006 within server_connect_timeout, and the workers
/// keep serving everyone else meanwhile.
#[test]
fn unreachable_executor_fails_the_login_promptly() {
    let roles = Roles::new();
    let silent = SilentServer::start();
    let cfg = base()
        .set("server_connect_timeout", "1s")
        .db_at("down", "127.0.0.1", closed_port(), "postgres", "")
        .extra(&roles.section("down", None, ""))
        .db_at("hung", "127.0.0.1", silent.port, "postgres", "")
        .extra(&roles.section("hung", None, ""));
    let p = Pooler::start(&cfg);

    let port = p.port;
    let pending: Vec<_> = ["down", "down", "hung", "hung"]
        .into_iter()
        .map(|db| {
            let user = unique("aq_anyone");
            let rx = spawn(move || {
                let t0 = Instant::now();
                let r = connect(port, &user, Some("pw"), db);
                (r.map(|_| ()), t0.elapsed())
            });
            (db, rx)
        })
        .collect();
    // Static users on a healthy database, while those lookups hang.
    for _ in 0..3 {
        assert_whoami(&p, SCRAM_USER, SCRAM_PW, "app", SCRAM_USER);
    }
    for (db, rx) in pending {
        let (r, took) = rx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("login to {db} still hanging after 15 s{}", p.ctx()));
        assert_sqlstate(&r, "08006", &p.ctx());
        let message = db_message(r.as_ref().err().unwrap()).unwrap_or_default();
        let lower = message.to_lowercase();
        assert!(
            lower.contains("auth_query") || lower.contains("lookup"),
            "{db}: {message:?} does not name the lookup{}",
            p.ctx()
        );
        assert!(
            took < Duration::from_secs(5),
            "{db}: refused after {took:?}, server_connect_timeout is 1 s{}",
            p.ctx()
        );
    }
    assert_whoami(&p, MD5_USER, MD5_PW, "app", MD5_USER);
}

/// A user in `[users]` is never looked up, even on a database with an
/// auth_query, and its configured password is the one that counts.
#[test]
fn users_section_wins_over_auth_query() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = role("aq_static", "scram-sha-256", "configured", "");
    let cfg = roles
        .add(base(), AQ, Some(&log.query()), "")
        .user(&user, "configured");
    let p = Pooler::start(&cfg);
    // Logged in as itself (a static user's own pool), which leaves a
    // server in the pool for after the change below.
    assert_whoami(&p, &user, "configured", AQ, &user);

    // PostgreSQL now holds another password; the pooler still checks
    // clients against its own.
    alter_password(&user, "scram-sha-256", "in postgres");
    let r = p.try_connect(&user, Some("in postgres"), AQ);
    assert_refused(&p, &r, &user);
    assert_whoami(&p, &user, "configured", AQ, &user);
    assert_eq!(log.of(&user), 0, "{}", p.ctx());
}

/// auth_type = "hba": a trust line admits a user the lookup finds, without
/// a password, and still refuses names it does not find; a reject line
/// refuses before any lookup.
#[test]
fn hba_trust_needs_a_found_user_and_reject_skips_the_lookup() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let found = role("aq_found", "scram-sha-256", "never typed", "");
    let rejected = role("aq_rejected", "md5", "pw", "");
    let unknown = unique("aq_nobody");
    let dir = TempDir::new("aq_hba");
    let hba = dir.path().join("pg_hba.conf");
    fs::write(
        &hba,
        "host aq_trust all 127.0.0.1/32 trust\n\
         host aq_reject all 127.0.0.1/32 reject\n\
         host all all 127.0.0.1/32 md5\n",
    )
    .unwrap();
    let query = log.query();
    let cfg = roles.add(base(), "aq_trust", Some(&query), "");
    let cfg = roles
        .add(cfg, "aq_reject", Some(&query), "")
        .auth("hba")
        .set("hba_file", hba.to_str().unwrap());
    let p = Pooler::start(&cfg);

    let out = psql(p.port, &found, "aq_trust", None, "SELECT current_user");
    assert!(out.status.success(), "{}{}", show(&out), p.ctx());
    assert_eq!(text(&out.stdout).trim(), roles.server, "{}", p.ctx());
    assert_eq!(log.of(&found), 1, "{}", p.ctx());

    let r = p.try_connect(&unknown, None, "aq_trust");
    let e = r
        .as_ref()
        .err()
        .unwrap_or_else(|| panic!("trust admitted an unknown user{}", p.ctx()));
    let state = sqlstate(e).unwrap_or_default();
    assert!(
        state.starts_with("28"),
        "unknown user under trust: {e:?}{}",
        p.ctx()
    );
    let out = psql(p.port, &unknown, "aq_trust", None, "SELECT 1");
    assert!(!out.status.success(), "{}{}", show(&out), p.ctx());
    assert_eq!(log.of(&unknown), 1, "{}", p.ctx());

    let r = p.try_connect(&rejected, Some("pw"), "aq_reject");
    assert_sqlstate(&r, "28000", &p.ctx());
    let message = db_message(r.as_ref().err().unwrap()).unwrap_or_default();
    assert!(
        message.starts_with("pg_hba.conf rejects connection"),
        "{message}{}",
        p.ctx()
    );
    assert_eq!(log.of(&rejected), 0, "{}", p.ctx());
}

/// An unknown user is remembered for cache_failure_ttl, a found one for
/// cache_ttl, after which the next login looks it up again.
#[test]
fn negative_entries_and_cache_ttl() {
    const TTL: Duration = Duration::from_secs(1);
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = role("aq_ttl", "md5", "pw", "");
    let unknown = unique("aq_nobody");
    let p = Pooler::start(&roles.add(
        base(),
        AQ,
        Some(&log.query()),
        "cache_ttl = \"1s\"\ncache_failure_ttl = \"30s\"",
    ));

    for _ in 0..2 {
        let r = p.try_connect(&unknown, Some("pw"), AQ);
        assert_refused(&p, &r, &unknown);
    }
    assert_eq!(log.of(&unknown), 1, "{}", p.ctx());

    let t0 = Instant::now();
    assert_whoami(&p, &user, "pw", AQ, &roles.server);
    assert_whoami(&p, &user, "pw", AQ, &roles.server);
    // Only a claim about the cache if the second login came within the TTL.
    if t0.elapsed() < TTL {
        assert_eq!(log.of(&user), 1, "{}", p.ctx());
    }
    // Logins within the TTL are hits; the first one after it fetches again.
    let refetched = poll(TTL + Duration::from_secs(2), || {
        assert_whoami(&p, &user, "pw", AQ, &roles.server);
        (log.of(&user) >= 2).then_some(())
    });
    assert!(
        refetched.is_some(),
        "no lookup after cache_ttl expired{}",
        p.ctx()
    );
    assert_eq!(log.of(&user), 2, "{}", p.ctx());
}
