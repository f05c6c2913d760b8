//! auth_query in passthrough mode (no server_user): every looked-up user
//! gets a pool of its own, made on its first login, and the pooler logs in
//! to PostgreSQL as that user without knowing its password: an md5 hash
//! answers PostgreSQL's md5 challenge itself, a SCRAM verifier is served
//! with the ClientKey recovered from the client's own SCRAM login.
//!
//! PostgreSQL's pg_hba.conf demands scram-sha-256 of the members of
//! `pt_scram` and md5 of those of `pt_md5` (see `start_cluster`), so a pooler
//! that did not really authenticate as the role would be refused. Also the
//! reloads that retire those pools (auth_query changed or removed, a static
//! user of the same name, server_user added), the one that must not, idle
//! pools collected, a password changed under a warm pool, and
//! max_dynamic_pools.

use crate::auth_query::{
    alter_password, assert_refused, assert_whoami, base, first_reply, role, LookupLog, Roles, AQ,
};
use crate::harness::*;
use md5::{Digest, Md5};
use std::time::{Duration, Instant};

/// What a client of a retired dynamic pool is told as it is disconnected.
const RETIRED: &str = "this user's pool was removed by a configuration reload; reconnect";

/// A role stored as SCRAM that PostgreSQL admits with SCRAM only.
fn scram_role(prefix: &str, password: &str) -> String {
    role(prefix, "scram-sha-256", password, "IN ROLE pt_scram")
}

/// A role stored as an md5 hash that PostgreSQL admits with md5.
fn md5_role(prefix: &str, password: &str) -> String {
    role(prefix, "md5", password, "IN ROLE pt_md5")
}

/// `[databases.DB.auth_query]` in passthrough mode: run by `roles.auth`
/// (the counting `log`'s function), no server_user; `extra` is more lines.
fn section(roles: &Roles, log: &LookupLog, db: &str, extra: &str) -> String {
    format!(
        "[databases.{db}.auth_query]\nquery = {:?}\nuser = {:?}\npassword = {:?}\n{extra}\n",
        log.query(),
        roles.auth,
        roles.auth
    )
}

/// `cfg` plus database [`AQ`] (PostgreSQL's `postgres`) without an auth_query.
fn with_db(cfg: Cfg) -> Cfg {
    cfg.db(AQ, "postgres", "")
}

/// `cfg` plus database [`AQ`] in passthrough mode.
fn passthrough(cfg: Cfg, roles: &Roles, log: &LookupLog, extra: &str) -> Cfg {
    with_db(cfg).extra(&section(roles, log, AQ, extra))
}

/// Logs in with the raw client, answering an md5 challenge (or trust);
/// returns the ErrorResponse if the login is refused. The raw client reads
/// the FATAL a retired client is sent, which the postgres crate may hide.
fn md5_login(port: u16, user: &str, password: &str, db: &str) -> Result<Raw, Msg> {
    let mut r = Raw::connect(port);
    r.send(&msg::startup(&[("user", user), ("database", db)]));
    loop {
        let m = r.read_msg().expect("read during login");
        match m.tag {
            b'R' => match m.int(0) {
                0 => {}
                5 => {
                    let inner = format!("{:x}", Md5::digest(format!("{password}{user}")));
                    let mut salted = inner.into_bytes();
                    salted.extend_from_slice(&m.body[4..8]);
                    r.send(&msg::password(&format!("md5{:x}", Md5::digest(&salted))));
                }
                code => panic!("expected an md5 challenge, got auth request {code}"),
            },
            b'K' => r.key = Some((m.int(0), m.int(4))),
            b'E' => return Err(m),
            b'Z' => return Ok(r),
            b'S' | b'N' => {}
            other => panic!("unexpected message {:?} during login", other as char),
        }
    }
}

/// An md5 client of the dynamic pool of `user`, checked to run as `user`.
#[track_caller]
fn md5_client(p: &Pooler, user: &str, password: &str) -> Raw {
    let mut r = md5_login(p.port, user, password, AQ)
        .unwrap_or_else(|e| panic!("md5 login as {user}: {e}{}", p.ctx()));
    let msgs = r.query("SELECT current_user");
    assert_eq!(
        Raw::values(&msgs),
        [user],
        "{}{}",
        show_msgs(&msgs),
        p.ctx()
    );
    r
}

/// Asserts that `r`, idle between transactions, is sent FATAL 57P01 with
/// the retired pool's message and disconnected, without asking anything.
#[track_caller]
fn assert_retired(p: &Pooler, r: &mut Raw) {
    let msgs = r
        .until_eof(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("client of a retired pool still connected: {e}{}", p.ctx()));
    let error = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("closed without an error: {}{}", show_msgs(&msgs), p.ctx()));
    let fields = error.fields();
    assert_eq!(
        (
            fields.get(&b'S').map(String::as_str),
            fields.get(&b'C').map(String::as_str),
            fields.get(&b'M').map(String::as_str),
        ),
        (Some("FATAL"), Some("57P01"), Some(RETIRED)),
        "{error}{}",
        p.ctx()
    );
}

/// Rewrites the config, sends SIGHUP and waits for the pooler to log that
/// it took the new one.
#[track_caller]
fn reload(p: &Pooler, cfg: &Cfg) {
    let offset = p.log_len();
    p.rewrite(cfg);
    p.reload();
    let done = poll(Duration::from_secs(5), || {
        p.log_since(offset)
            .contains("configuration reloaded")
            .then_some(())
    });
    assert!(done.is_some(), "reload not applied{}", p.ctx());
}

/// PostgreSQL's role of backend `pid` ("" if there is none).
fn usename_of(pid: i32) -> String {
    cluster().sql(
        "postgres",
        &format!("SELECT usename FROM pg_stat_activity WHERE pid = {pid}"),
    )
}

/// Pids of the backends of `user`.
fn pids_of(user: &str) -> Vec<i32> {
    cluster()
        .sql(
            "postgres",
            &format!(
                "SELECT pid FROM pg_stat_activity WHERE usename = '{user}' \
                 AND backend_type = 'client backend'"
            ),
        )
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Terminates every backend of `user` and waits for them to be gone.
#[track_caller]
fn terminate_backends(p: &Pooler, user: &str) {
    cluster().sql(
        "postgres",
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}'"),
    );
    let gone = poll(Duration::from_secs(5), || {
        (cluster().backends_of(user) == 0).then_some(())
    });
    assert!(gone.is_some(), "backends of {user} survived{}", p.ctx());
}

/// A SCRAM-stored and an md5-stored role log in through psql and the
/// postgres crate and run as themselves; with a transaction open in each,
/// PostgreSQL shows one backend per role (two pools), each logged in as
/// that role under pg_hba's scram-sha-256 and md5 lines respectively.
#[test]
fn scram_and_md5_roles_run_as_themselves_on_pools_of_their_own() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let scram = scram_role("pt_scram", "scram secret");
    let md5 = md5_role("pt_md5", "md5 secret");
    let p = Pooler::start(&passthrough(base(), &roles, &log, ""));

    // pg_hba.conf holds: an md5 hash cannot log in to a pt_scram member,
    // even with the right password.
    let hash_only = role("pt_hash_only", "md5", "pw", "IN ROLE pt_scram");
    let direct = connect(cluster().port, &hash_only, Some("pw"), "postgres");
    assert_sqlstate(
        &direct,
        "28P01",
        " (pg_hba.conf: scram-sha-256 for +pt_scram)",
    );
    for (user, pw) in [(&scram, "scram secret"), (&md5, "md5 secret")] {
        connect(cluster().port, user, Some(pw), "postgres")
            .unwrap_or_else(|e| panic!("direct login as {user}: {e:?}"));
    }

    // auth_type md5, yet SCRAM for the SCRAM-stored role: the pooler needs
    // its ClientKey to log in to PostgreSQL.
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
        assert_eq!(text(&out.stdout).trim(), user.as_str(), "{}", p.ctx());
        assert_whoami(&p, user, pw, AQ, user);
        let mut c = p.connect(user, Some(pw), AQ);
        c.batch_execute("BEGIN").unwrap();
        assert_eq!(p.one(&mut c, "SELECT current_user"), *user);
        let pid = p.backend(&mut c);
        assert_eq!(usename_of(pid), *user, "backend {pid}{}", p.ctx());
        held.push(c);
    }
    for user in [&scram, &md5] {
        let n = cluster().backends_of(user);
        // default_pool_size 5; one client at a time but psql's, ours, ...
        assert!((1..=5).contains(&n), "{n} backends of {user}{}", p.ctx());
        log.expect(&p, user, 1, "after five logins");
    }
    assert_eq!(cluster().backends_of(&roles.server), 0, "{}", p.ctx());
    for c in &mut held {
        c.batch_execute("COMMIT").unwrap();
    }
    // Static users on the other databases are untouched.
    assert_whoami(&p, SCRAM_USER, SCRAM_PW, "app", SCRAM_USER);
}

/// Session mode: each client of a SCRAM role keeps a server of its own,
/// logged in as that role.
#[test]
fn session_mode_scram_role_keeps_its_own_servers() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = scram_role("pt_session", "pw");
    let p = Pooler::start(&passthrough(Cfg::session(), &roles, &log, ""));

    let out = psql(p.port, &user, AQ, Some("pw"), "SELECT current_user");
    assert!(out.status.success(), "{}{}", show(&out), p.ctx());
    assert_eq!(text(&out.stdout).trim(), user, "{}", p.ctx());
    let mut a = p.connect(&user, Some("pw"), AQ);
    let mut b = p.connect(&user, Some("pw"), AQ);
    let (pa, pb) = (p.backend(&mut a), p.backend(&mut b));
    assert_ne!(pa, pb, "{}", p.ctx());
    for (c, pid) in [(&mut a, pa), (&mut b, pb)] {
        assert_eq!(p.one(c, "SELECT current_user"), user);
        assert_eq!(p.backend(c), pid, "session moved to another server");
        assert_eq!(usename_of(pid), user, "{}", p.ctx());
    }
    log.expect(&p, &user, 1, "after three logins");
}

/// A reload removing the database's auth_query retires its dynamic pools:
/// an idle client is disconnected at once with 57P01, one inside a
/// transaction commits it and is closed after, and the user (not in
/// [users]) can no longer log in.
#[test]
fn reload_removing_auth_query_retires_the_dynamic_pool() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = md5_role("pt_gone", "pw");
    let p = Pooler::start(&passthrough(base(), &roles, &log, ""));
    let t = cluster().new_table("pt_gone", "id int");

    let mut idle = md5_client(&p, &user, "pw");
    let mut tx = p.connect(&user, Some("pw"), AQ);
    tx.batch_execute(&format!("BEGIN; INSERT INTO {t} VALUES (1)"))
        .unwrap();
    assert_eq!(p.one(&mut tx, "SELECT current_user"), user);
    let mut keep = p.client();

    reload(&p, &with_db(base()));
    assert_retired(&p, &mut idle);

    tx.batch_execute(&format!("INSERT INTO {t} VALUES (2)"))
        .unwrap_or_else(|e| panic!("transaction cut short by reload: {e:?}{}", p.ctx()));
    tx.batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("COMMIT after reload: {e:?}{}", p.ctx()));
    assert_eq!(
        cluster().count("postgres", &format!("SELECT count(*) FROM {t}")),
        2
    );
    let closed = poll(Duration::from_secs(3), || {
        try_one(&mut tx, "SELECT 1").is_err().then_some(())
    });
    assert!(
        closed.is_some(),
        "client of a retired pool kept working after its transaction{}",
        p.ctx()
    );

    let r = p.try_connect(&user, Some("pw"), AQ);
    assert_refused(&p, &r, &user);
    assert_eq!(p.one(&mut keep, "SELECT 'unaffected'"), "unaffected");
}

/// A static user added by reload with the name of a dynamic pool retires
/// that pool, and from then on the configured password is the one that
/// counts. PostgreSQL's password is changed first so the two differ: the
/// cached secret (cache_ttl and min_interval 1h) refuses the new password
/// until the static entry takes over, and then the old one is refused.
#[test]
fn reload_adding_a_static_user_of_the_same_name_wins() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = md5_role("pt_static", "a");
    let cfg = passthrough(
        base(),
        &roles,
        &log,
        "min_interval = \"1h\"\ncache_ttl = \"1h\"",
    );
    let p = Pooler::start(&cfg);

    let mut idle = md5_client(&p, &user, "a");
    log.expect(&p, &user, 1, "after the first login");
    alter_password(&user, "md5", "b");
    // The cache still holds 'a' and may not refetch for an hour.
    let r = p.try_connect(&user, Some("b"), AQ);
    assert_refused(&p, &r, &user);
    log.expect(&p, &user, 1, "after a failed check within min_interval");

    reload(&p, &cfg.clone().user(&user, "b"));
    assert_retired(&p, &mut idle);
    let static_login = poll(Duration::from_secs(5), || {
        p.try_connect(&user, Some("b"), AQ).ok()
    });
    let mut c =
        static_login.unwrap_or_else(|| panic!("the static password never worked{}", p.ctx()));
    assert_eq!(p.one(&mut c, "SELECT current_user"), user);
    let r = p.try_connect(&user, Some("a"), AQ);
    assert_refused(&p, &r, &user);
    // A static user is never looked up.
    assert_eq!(log.of(&user), 1, "{}", p.ctx());
}

/// A reload adding server_user switches the database to the shared pool:
/// the dynamic pool's idle client is disconnected, the cache starts empty
/// (the next login is looked up again), and queries run as server_user.
#[test]
fn reload_adding_server_user_switches_to_the_shared_pool() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = md5_role("pt_mode", "pw");
    let p = Pooler::start(&passthrough(base(), &roles, &log, ""));

    let mut idle = md5_client(&p, &user, "pw");
    log.expect(&p, &user, 1, "after the first login");

    let shared = with_db(base()).extra(&roles.section(AQ, Some(&log.query()), ""));
    reload(&p, &shared);
    assert_retired(&p, &mut idle);
    let switched = poll(Duration::from_secs(5), || {
        let mut c = p.try_connect(&user, Some("pw"), AQ).ok()?;
        (try_one(&mut c, "SELECT current_user").ok()? == roles.server).then_some(())
    });
    assert!(
        switched.is_some(),
        "logins of {user} never ran as {}{}",
        roles.server,
        p.ctx()
    );
    log.expect(&p, &user, 2, "after the mode change cleared the cache");
    assert_whoami(&p, &user, "pw", AQ, &roles.server);
    log.expect(&p, &user, 2, "after a second login in server_user mode");
    assert_eq!(cluster().backends_of(&user), 0, "{}", p.ctx());
}

/// A dynamic pool without clients or servers for dynamic_pool_idle_timeout
/// is dropped (and logged); the next login makes it again, with a SCRAM
/// ClientKey of its own.
#[test]
fn idle_dynamic_pool_is_collected_and_recreated() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = scram_role("pt_idle", "pw");
    let cfg = base()
        .set("dynamic_pool_idle_timeout", "1s")
        .set("server_idle_timeout", "1s");
    let p = Pooler::start(&passthrough(cfg, &roles, &log, ""));

    assert_whoami(&p, &user, "pw", AQ, &user);
    let t0 = Instant::now();
    let needle = format!("dropped idle dynamic pool {user}@{AQ}");
    let dropped = poll(Duration::from_secs(10), || {
        p.log_since(0).contains(&needle).then_some(())
    });
    assert!(
        dropped.is_some(),
        "no {needle:?} after {:?}{}",
        t0.elapsed(),
        p.ctx()
    );
    assert_eq!(cluster().backends_of(&user), 0, "{}", p.ctx());

    let offset = p.log_len();
    assert_whoami(&p, &user, "pw", AQ, &user);
    assert!(cluster().backends_of(&user) >= 1, "{}", p.ctx());
    assert!(
        !p.log_since(offset).contains(&needle),
        "the recreated pool was dropped at once{}",
        p.ctx()
    );
}

/// ALTER ROLE ... PASSWORD (md5) while the user's pool holds a server: the
/// new password works at once (refetch, same response checked again), the
/// open server stays, a new server logs in with the new hash, and the old
/// password is refused.
#[test]
fn changed_md5_password_under_a_warm_pool() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = md5_role("pt_pw_md5", "old");
    let p = Pooler::start(&passthrough(base(), &roles, &log, "min_interval = \"0s\""));

    assert_whoami(&p, &user, "old", AQ, &user);
    let warm = pids_of(&user);
    assert!(!warm.is_empty(), "no server kept warm{}", p.ctx());
    alter_password(&user, "md5", "new");

    let mut c = p
        .try_connect(&user, Some("new"), AQ)
        .unwrap_or_else(|e| panic!("login with the new password: {e:?}{}", p.ctx()));
    assert_eq!(p.one(&mut c, "SELECT current_user"), user);
    let pid = p.backend(&mut c);
    assert!(
        warm.contains(&pid),
        "ran on {pid}, not on a warm server {warm:?}{}",
        p.ctx()
    );
    log.expect(&p, &user, 2, "after the refetch");
    drop(c);

    new_server_logs_in(&p, &user, "new", &warm);
    let r = p.try_connect(&user, Some("old"), AQ);
    assert_refused(&p, &r, &user);
}

/// The same with SCRAM: the first login with the new password fails (its
/// proof is bound to the old salt) and refetches, the next one works; the
/// open server stays, a new server logs in with the new ClientKey, and the
/// old password is refused.
#[test]
fn changed_scram_password_under_a_warm_pool() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = scram_role("pt_pw_scram", "old");
    let p = Pooler::start(&passthrough(base(), &roles, &log, "min_interval = \"0s\""));

    assert_whoami(&p, &user, "old", AQ, &user);
    let warm = pids_of(&user);
    assert!(!warm.is_empty(), "no server kept warm{}", p.ctx());
    alter_password(&user, "scram-sha-256", "new");

    let r = p.try_connect(&user, Some("new"), AQ);
    assert_refused(&p, &r, &user);
    log.expect(&p, &user, 2, "after the proof against the old salt failed");
    let mut c = p
        .try_connect(&user, Some("new"), AQ)
        .unwrap_or_else(|e| panic!("second login with the new password: {e:?}{}", p.ctx()));
    assert_eq!(p.one(&mut c, "SELECT current_user"), user);
    let pid = p.backend(&mut c);
    assert!(
        warm.contains(&pid),
        "ran on {pid}, not on a warm server {warm:?}{}",
        p.ctx()
    );
    drop(c);

    new_server_logs_in(&p, &user, "new", &warm);
    let r = p.try_connect(&user, Some("old"), AQ);
    assert_refused(&p, &r, &user);
}

/// Terminates the servers of `user`, then a fresh client's query needs a
/// new server login, which must succeed as `user`.
#[track_caller]
fn new_server_logs_in(p: &Pooler, user: &str, password: &str, old: &[i32]) {
    terminate_backends(p, user);
    let mut c = p.connect(user, Some(password), AQ);
    let who = try_one(&mut c, "SELECT current_user")
        .unwrap_or_else(|e| panic!("query after the servers were terminated: {e:?}{}", p.ctx()));
    assert_eq!(who, user, "{}", p.ctx());
    let pid = p.backend(&mut c);
    assert!(!old.contains(&pid), "{pid} was terminated{}", p.ctx());
    assert_eq!(usename_of(pid), user, "{}", p.ctx());
}

/// max_dynamic_pools = 2: a third user is refused with 53300 naming the
/// limit, while the first two keep logging in.
#[test]
fn max_dynamic_pools_refuses_a_further_user() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let first = scram_role("pt_max", "pw");
    let second = md5_role("pt_max", "pw");
    let third = md5_role("pt_max", "pw");
    let p = Pooler::start(&passthrough(base(), &roles, &log, "max_dynamic_pools = 2"));

    assert_whoami(&p, &first, "pw", AQ, &first);
    assert_whoami(&p, &second, "pw", AQ, &second);
    let r = p.try_connect(&third, Some("pw"), AQ);
    assert_sqlstate(&r, "53300", &p.ctx());
    let message = db_message(r.as_ref().err().unwrap()).unwrap_or_default();
    assert!(
        message.contains("max_dynamic_pools"),
        "{message:?}{}",
        p.ctx()
    );
    assert_eq!(cluster().backends_of(&third), 0, "{}", p.ctx());
    assert_whoami(&p, &first, "pw", AQ, &first);
    assert_whoami(&p, &second, "pw", AQ, &second);
}

/// A reload that leaves the auth_query alone (an unrelated [pooler] key
/// changed) keeps the dynamic pool, its session and its cache: the client
/// stays on the same PostgreSQL backend and a new login is not looked up.
#[test]
fn reload_with_unchanged_auth_query_keeps_dynamic_pools() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = scram_role("pt_keep", "pw");
    let cfg = passthrough(Cfg::session().auth("md5"), &roles, &log, "");
    let p = Pooler::start(&cfg);

    let mut c = p.connect(&user, Some("pw"), AQ);
    assert_eq!(p.one(&mut c, "SELECT current_user"), user);
    let pid = p.backend(&mut c);

    reload(&p, &cfg.clone().set("client_idle_timeout", "1h"));
    // The workers apply the reload just after the log line: keep asking
    // for a while, any retirement would show as an error.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(500) {
        let now = try_one(&mut c, "SELECT pg_backend_pid()")
            .unwrap_or_else(|e| panic!("client dropped by the reload: {e:?}{}", p.ctx()));
        assert_eq!(now, pid.to_string(), "session moved{}", p.ctx());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(usename_of(pid), user, "{}", p.ctx());
    assert_whoami(&p, &user, "pw", AQ, &user);
    assert_eq!(log.of(&user), 1, "the reload cleared the cache{}", p.ctx());
}
