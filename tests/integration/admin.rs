//! The admin console (database `pooler`, alias `pgbouncer`) and the
//! Prometheus `/metrics` endpoint: who may log in and run what, the columns
//! of every SHOW command and their values in a known situation (a pool of
//! one server, one client holding it, one waiting, one idle), the control
//! commands (PAUSE/RESUME, DISABLE/ENABLE, KILL, RECONNECT/WAIT_CLOSE,
//! RELOAD, SET, SHUTDOWN), and the metrics a scrape serves.

use crate::auth_query::{base, role, LookupLog, Roles, AQ};
use crate::harness::*;
use postgres::SimpleQueryMessage;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// The console's database name, and PgBouncer's, which is an alias.
const CONSOLE: &str = "pooler";
const ALIAS: &str = "pgbouncer";

/// Admin user (every command) and stats user (SHOW only) of [`admin_cfg`].
const ADMIN: &str = SCRAM_USER;
const ADMIN_PW: &str = SCRAM_PW;
const STATS: &str = PLAIN_USER;
const STATS_PW: &str = PLAIN_PW;

/// `cfg` with scram_user in admin_users and plain_user in stats_users.
fn with_console_users(cfg: Cfg) -> Cfg {
    cfg.set_raw("admin_users", &format!("[{ADMIN:?}]"))
        .set_raw("stats_users", &format!("[{STATS:?}]"))
}

/// The default test config (SCRAM, transaction mode) with the console users.
fn admin_cfg() -> Cfg {
    with_console_users(Cfg::new())
}

/// An admin session on the console.
fn console(p: &Pooler) -> Client {
    p.connect(ADMIN, Some(ADMIN_PW), CONSOLE)
}

// ---------------------------------------------------------------------------
// Result sets
// ---------------------------------------------------------------------------

/// One SHOW answer: column names and text values (None for NULL).
#[derive(Debug, Default)]
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Table {
    fn from_messages(msgs: Vec<SimpleQueryMessage>) -> Table {
        let mut t = Table::default();
        for m in msgs {
            match m {
                SimpleQueryMessage::RowDescription(cols) if t.columns.is_empty() => {
                    t.columns = cols.iter().map(|c| c.name().to_string()).collect();
                }
                SimpleQueryMessage::Row(r) => {
                    if t.columns.is_empty() {
                        t.columns = r.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    t.rows
                        .push((0..r.len()).map(|i| r.get(i).map(String::from)).collect());
                }
                _ => {}
            }
        }
        t
    }

    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name:?} in {:?}", self.columns))
    }

    /// The value of `name` in row `row`.
    fn get(&self, row: usize, name: &str) -> Option<&str> {
        self.rows[row][self.col(name)].as_deref()
    }

    /// The value of `name` in row `row`, which must be a non-NULL integer.
    #[track_caller]
    fn int(&self, row: usize, name: &str) -> i64 {
        let v = self.get(row, name);
        v.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name} of row {row} is {v:?}, not an integer\n{self}"))
    }

    /// Indexes of the rows whose columns have these values.
    fn find(&self, wanted: &[(&str, &str)]) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| wanted.iter().all(|(k, v)| self.get(i, k) == Some(v)))
            .collect()
    }

    /// The one row with these values.
    #[track_caller]
    fn one(&self, wanted: &[(&str, &str)]) -> usize {
        match self.find(wanted)[..] {
            [i] => i,
            ref found => panic!("{} rows with {wanted:?}, expected one\n{self}", found.len()),
        }
    }

    /// Column `name` of every row.
    fn column(&self, name: &str) -> Vec<Option<String>> {
        let i = self.col(name);
        self.rows.iter().map(|r| r[i].clone()).collect()
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.columns.join("|"))?;
        for r in &self.rows {
            let cells: Vec<&str> = r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
            writeln!(f, "{}", cells.join("|"))?;
        }
        Ok(())
    }
}

fn try_show(c: &mut Client, sql: &str) -> Result<Table, postgres::Error> {
    c.simple_query(sql).map(Table::from_messages)
}

/// Runs `sql` on the console; panics with the pooler's log on an error.
#[track_caller]
fn show(p: &Pooler, c: &mut Client, sql: &str) -> Table {
    try_show(c, sql).unwrap_or_else(|e| panic!("{sql}: {e:?}{}", p.ctx()))
}

/// Runs a console command that returns no rows.
#[track_caller]
fn command(p: &Pooler, c: &mut Client, sql: &str) {
    if let Err(e) = c.simple_query(sql) {
        panic!("{sql}: {e:?}{}", p.ctx());
    }
}

/// The SHOW CONFIG row of `key`: (value, default, changeable).
#[track_caller]
fn config_row(p: &Pooler, c: &mut Client, key: &str) -> (String, String, String) {
    let t = show(p, c, "SHOW CONFIG");
    let i = t.one(&[("key", key)]);
    let v = |name: &str| t.get(i, name).unwrap_or("NULL").to_string();
    (v("value"), v("default"), v("changeable"))
}

/// Polls SHOW `what` until `ok` holds; panics with the last table and the log.
#[track_caller]
fn show_until(
    p: &Pooler,
    c: &mut Client,
    sql: &str,
    what: &str,
    mut ok: impl FnMut(&Table) -> bool,
) -> Table {
    let mut last = Table::default();
    let done = poll(Duration::from_secs(5), || {
        last = show(p, c, sql);
        ok(&last).then_some(())
    });
    if done.is_none() {
        panic!("{sql}: never {what}:\n{last}{}", p.ctx());
    }
    last
}

/// `psql -A -F '|' -c SQL` with the header line (the harness's psql drops it).
fn psql_with_header(port: u16, user: &str, password: &str, db: &str, sql: &str) -> Output {
    let mut c = Command::new("psql");
    c.args([
        "-X",
        "-A",
        "-F",
        "|",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
    ])
    .args(["-p", &port.to_string(), "-U", user, "-d", db, "-c", sql]);
    for var in ["PGOPTIONS", "PGAPPNAME", "PGSERVICE", "PGHOST", "PGPORT"] {
        c.env_remove(var);
    }
    c.env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGPASSFILE", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run psql")
}

/// A spawned client's query: its result, and the client back.
type Pending =
    std::sync::mpsc::Receiver<(Client, Result<Vec<SimpleQueryMessage>, postgres::Error>)>;

/// Runs `sql` on `c` in a thread.
fn in_thread(mut c: Client, sql: &str) -> Pending {
    let sql = sql.to_string();
    spawn(move || {
        let r = c.simple_query(&sql);
        (c, r)
    })
}

/// Asserts that the spawned query is still running after `d`.
#[track_caller]
fn assert_blocked(p: &Pooler, rx: &Pending, d: Duration, what: &str) {
    match rx.recv_timeout(d) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok((_, r)) => panic!("{what} finished early: {r:?}{}", p.ctx()),
        Err(e) => panic!("{what}: {e}{}", p.ctx()),
    }
}

/// Waits for the spawned query, which must succeed.
#[track_caller]
fn finished(p: &Pooler, rx: Pending, what: &str) -> (Client, Vec<SimpleQueryMessage>) {
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok((c, Ok(msgs))) => (c, msgs),
        Ok((_, Err(e))) => panic!("{what} failed: {e:?}{}", p.ctx()),
        Err(_) => panic!("{what} still blocked after 10 s{}", p.ctx()),
    }
}

// ---------------------------------------------------------------------------
// Column lists (PgBouncer 1.25's first, ours after)
// ---------------------------------------------------------------------------

const POOLS_COLUMNS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
    "source",
    "dynamic",
    "created_at",
    "last_used",
];

const SOCKET_COLUMNS: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];

const STATS_COLUMNS: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
];

const DATABASES_COLUMNS: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "server_lifetime",
    "pool_mode",
    "load_balance_hosts",
    "max_connections",
    "current_connections",
    "max_client_connections",
    "current_client_connections",
    "paused",
    "disabled",
    "auth_query",
];

const USERS_COLUMNS: &[&str] = &[
    "name",
    "pool_size",
    "reserve_pool_size",
    "pool_mode",
    "max_user_connections",
    "current_connections",
    "max_user_client_connections",
    "current_client_connections",
    "source",
];

const LISTS_ROWS: &[&str] = &[
    "databases",
    "users",
    "peers",
    "pools",
    "peer_pools",
    "free_clients",
    "used_clients",
    "login_clients",
    "free_servers",
    "used_servers",
    "dns_names",
    "dns_zones",
    "dns_queries",
    "dns_pending",
];

const AUTH_QUERY_CACHE_COLUMNS: &[&str] = &[
    "database",
    "username",
    "password_type",
    "cached_at",
    "expires_in",
    "is_negative",
    "last_refetch",
];

const AUTH_QUERY_EXECUTORS_COLUMNS: &[&str] = &[
    "database",
    "user",
    "dbname",
    "pool_size",
    "active",
    "status",
];

fn with(base: &[&str], extra: &[&str]) -> Vec<String> {
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// Every SHOW command and its columns.
fn show_columns() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("HELP", with(&["command"], &[])),
        ("VERSION", with(&["version"], &[])),
        (
            "CONFIG",
            with(&["key", "value", "default", "changeable"], &[]),
        ),
        ("DATABASES", with(DATABASES_COLUMNS, &[])),
        ("POOLS", with(POOLS_COLUMNS, &[])),
        (
            "CLIENTS",
            with(SOCKET_COLUMNS, &["auth_source", "server_id"]),
        ),
        ("SERVERS", with(SOCKET_COLUMNS, &["client_id"])),
        ("STATS", with(STATS_COLUMNS, &[])),
        ("USERS", with(USERS_COLUMNS, &[])),
        ("LISTS", with(&["list", "items"], &[])),
        ("AUTH_QUERY_CACHE", with(AUTH_QUERY_CACHE_COLUMNS, &[])),
        (
            "AUTH_QUERY_EXECUTORS",
            with(AUTH_QUERY_EXECUTORS_COLUMNS, &[]),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Login and rights
// ---------------------------------------------------------------------------

/// admin_users run everything, stats_users only SHOW (42501 for the rest,
/// and nothing of a mixed query runs), anyone else is refused at login
/// with 28000, a wrong password is refused as anywhere else, and the
/// `pgbouncer` alias is the same console.
#[test]
fn console_login_and_rights() {
    let cl = cluster();
    let outsider = cl.new_role("adm_outsider");
    let p = Pooler::start(&admin_cfg().user(&outsider, &outsider));

    for db in [CONSOLE, ALIAS] {
        let mut admin = p.connect(ADMIN, Some(ADMIN_PW), db);
        let t = show(&p, &mut admin, "SHOW VERSION");
        assert_eq!(t.rows.len(), 1, "{db}: {t}{}", p.ctx());
        command(&p, &mut admin, "PAUSE");
        command(&p, &mut admin, "RESUME");

        let mut stats = p.connect(STATS, Some(STATS_PW), db);
        let t = show(&p, &mut stats, "SHOW POOLS");
        assert_eq!(t.columns, with(POOLS_COLUMNS, &[]), "{}", p.ctx());
        for sql in [
            "PAUSE",
            "RESUME",
            "RELOAD",
            "KILL app",
            "DISABLE app",
            "RECONNECT",
            "SET default_pool_size = 5",
            "SHUTDOWN",
            // All or nothing: the SHOW before the PAUSE does not run either.
            "SHOW VERSION; PAUSE app",
        ] {
            let r = stats.simple_query(sql);
            assert_sqlstate(
                &r,
                "42501",
                &format!("\n{db}: stats user ran {sql}{}", p.ctx()),
            );
        }
        // Still usable, and nothing was paused, disabled or changed.
        let t = show(&p, &mut stats, "SHOW DATABASES");
        for (name, paused, disabled) in t
            .column("name")
            .into_iter()
            .zip(t.column("paused"))
            .zip(t.column("disabled"))
            .map(|((n, p), d)| (n, p, d))
        {
            assert_eq!(
                (paused.as_deref(), disabled.as_deref()),
                (Some("0"), Some("0")),
                "{name:?}\n{t}{}",
                p.ctx()
            );
        }
        assert_eq!(
            config_row(&p, &mut stats, "default_pool_size").0,
            "4",
            "{}",
            p.ctx()
        );

        // In [users], able to log in to app, not listed for the console.
        let r = p.try_connect(&outsider, Some(&outsider), db);
        assert_sqlstate(&r, "28000", &p.ctx());
        let r = p.try_connect("nobody_at_all", Some("x"), db);
        assert_sqlstate(&r, "28000", &p.ctx());
        let r = p.try_connect(ADMIN, Some("wrong"), db);
        assert_sqlstate(&r, "28P01", &p.ctx());
    }
    let mut c = p.connect(&outsider, Some(&outsider), "app");
    assert_eq!(p.one(&mut c, "SELECT current_user"), outsider);

    // psql, through the alias.
    let out = psql_with_header(p.port, STATS, STATS_PW, ALIAS, "SHOW VERSION");
    assert!(out.status.success(), "{}{}", show_out(&out), p.ctx());
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"version"), "{stdout}{}", p.ctx());
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("pooler ")),
        "{stdout}{}",
        p.ctx()
    );
    let out = psql_with_header(p.port, STATS, STATS_PW, CONSOLE, "PAUSE");
    assert!(!out.status.success(), "{}{}", show_out(&out), p.ctx());
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}{}",
        show_out(&out),
        p.ctx()
    );
}

fn show_out(out: &Output) -> String {
    crate::harness::show(out)
}

/// Every SHOW command answers with its documented columns (PgBouncer's
/// first) over the postgres crate and psql; unknown commands and syntax
/// errors are 42601 naming the command, and the session goes on; the
/// extended protocol is refused with FATAL 0A000.
#[test]
fn console_show_columns_and_errors() {
    // Plain (cleartext) auth, so that the raw client below can log in.
    let p = Pooler::start(&admin_cfg().auth("plain"));
    // Plain auth cannot give the pooler scram_user's SCRAM keys for the
    // server login; plain_user's password is in the config.
    let mut warm = p.connect(PLAIN_USER, Some(PLAIN_PW), "app");
    p.one(&mut warm, "SELECT 1");
    let mut c = console(&p);

    for (name, columns) in show_columns() {
        let sql = format!("SHOW {name}");
        let t = show(&p, &mut c, &sql);
        assert_eq!(t.columns, columns, "{sql}{}", p.ctx());
        // Case-insensitive, with a semicolon as psql sends it.
        let t = show(&p, &mut c, &format!("show {};", name.to_lowercase()));
        assert_eq!(t.columns, columns, "{sql} in lower case{}", p.ctx());
    }
    // psql reads the same header.
    for (name, columns) in show_columns() {
        let sql = format!("SHOW {name}");
        let out = psql_with_header(p.port, ADMIN, ADMIN_PW, CONSOLE, &sql);
        assert!(out.status.success(), "{sql}: {}{}", show_out(&out), p.ctx());
        let stdout = text(&out.stdout);
        let header = stdout.lines().next().unwrap_or_default();
        assert_eq!(header, columns.join("|"), "{sql}: {stdout}{}", p.ctx());
    }

    // VERSION and HELP.
    let t = show(&p, &mut c, "SHOW VERSION");
    assert_eq!(t.rows.len(), 1, "{t}");
    let version = t.get(0, "version").unwrap_or_default();
    assert!(version.starts_with("pooler "), "{version}{}", p.ctx());
    let help: Vec<String> = show(&p, &mut c, "SHOW HELP")
        .column("command")
        .into_iter()
        .flatten()
        .collect();
    for (name, _) in show_columns() {
        assert!(
            help.contains(&format!("SHOW {name}")),
            "SHOW {name} not in {help:?}"
        );
    }
    for cmd in [
        "RELOAD",
        "PAUSE [db]",
        "RESUME [db]",
        "DISABLE db",
        "ENABLE db",
        "KILL db",
        "RECONNECT [db]",
        "WAIT_CLOSE [db]",
        "SHUTDOWN",
    ] {
        assert!(help.iter().any(|l| l == cmd), "{cmd} not in {help:?}");
    }
    // Several statements in one query: every answer.
    let msgs = c.simple_query("SHOW VERSION; SHOW LISTS").unwrap();
    let completes = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 2, "{}", p.ctx());

    // Errors: 42601, naming what was wrong; the session stays usable.
    for (sql, named) in [
        ("FROBNICATE", "FROBNICATE"),
        ("frobnicate now", "frobnicate"),
        ("SHOW NOTHING_HERE", "NOTHING_HERE"),
        ("SELECT 1", "SELECT"),
        ("KILL", "KILL"),
        ("SHOW VERSION; BOGUS", "BOGUS"),
    ] {
        let r = c.simple_query(sql);
        assert_sqlstate(&r, "42601", &format!("\n{sql}{}", p.ctx()));
        let message = db_message(r.as_ref().err().unwrap()).unwrap_or_default();
        assert!(
            message.contains(named),
            "{sql}: {message:?} does not name {named}{}",
            p.ctx()
        );
        assert_eq!(
            show(&p, &mut c, "SHOW VERSION").rows.len(),
            1,
            "after {sql}{}",
            p.ctx()
        );
    }
    let r = c.simple_query("SET no_such_setting = 1");
    assert_sqlstate(&r, "42704", &p.ctx());

    // The extended protocol: FATAL 0A000 (seen raw: the postgres crate may
    // report only the closed connection).
    let mut raw = Raw::login(p.port, ADMIN, CONSOLE, Some(ADMIN_PW), &[])
        .unwrap_or_else(|e| panic!("raw console login: {e}{}", p.ctx()));
    let mut bytes = msg::parse("", "SHOW POOLS");
    bytes.extend(msg::bind("", "", &[]));
    bytes.extend(msg::execute(""));
    bytes.extend(msg::sync());
    raw.send(&bytes);
    let msgs = raw
        .until_eof(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the console kept the connection open: {e}{}", p.ctx()));
    let err = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("no error for Parse: {}{}", show_msgs(&msgs), p.ctx()));
    assert_eq!(err.sqlstate().as_deref(), Some("0A000"), "{err}{}", p.ctx());
    assert_eq!(
        err.fields().get(&b'V').map(String::as_str),
        Some("FATAL"),
        "{err}{}",
        p.ctx()
    );
    // Through the driver: an error, whatever it says.
    let mut d = console(&p);
    assert!(d.query("SHOW POOLS", &[]).is_err(), "{}", p.ctx());
    // The first console session is unaffected.
    assert_eq!(show(&p, &mut c, "SHOW VERSION").rows.len(), 1);
}

// ---------------------------------------------------------------------------
// SHOW against a known situation
// ---------------------------------------------------------------------------

/// A transaction-mode pool of one server: a client holding it (BEGIN), a
/// client waiting for it, an idle client. SHOW POOLS, CLIENTS and SERVERS
/// say exactly that, and link the holder to its server, whose remote_pid
/// is the holder's pg_backend_pid().
#[test]
fn show_pools_clients_servers_in_a_known_situation() {
    let p = Pooler::start(&admin_cfg().pool_size(1));
    let mut admin = console(&p);
    let mut clients: Vec<Client> = (0..3)
        .map(|_| p.connect(SCRAM_USER, Some(SCRAM_PW), "app"))
        .collect();
    for c in &mut clients {
        p.one(c, "SELECT 1");
    }
    let waiter = clients.pop().unwrap();
    let mut idle = clients.pop().unwrap();
    let mut holder = clients.pop().unwrap();
    holder.batch_execute("BEGIN").unwrap();
    let pid = p.backend(&mut holder);
    let pending = in_thread(waiter, "SELECT 'released'");

    let key = [("database", "app"), ("user", SCRAM_USER)];
    let pools = show_until(&p, &mut admin, "SHOW POOLS", "cl_waiting 1", |t| {
        t.find(&key)
            .first()
            .is_some_and(|&i| t.int(i, "cl_waiting") == 1)
    });
    let i = pools.one(&key);
    let ctx = format!("\n{pools}{}", p.ctx());
    assert_eq!(pools.int(i, "cl_active"), 2, "{ctx}");
    assert_eq!(pools.int(i, "cl_waiting"), 1, "{ctx}");
    assert_eq!(pools.int(i, "sv_active"), 1, "{ctx}");
    assert_eq!(pools.int(i, "sv_idle"), 0, "{ctx}");
    assert_eq!(pools.int(i, "sv_login"), 0, "{ctx}");
    let waited_us = pools.int(i, "maxwait") * 1_000_000 + pools.int(i, "maxwait_us");
    assert!(waited_us > 0, "maxwait of a waiting client{ctx}");
    assert_eq!(pools.get(i, "pool_mode"), Some("transaction"), "{ctx}");
    assert_eq!(pools.get(i, "source"), Some("config"), "{ctx}");
    assert_eq!(pools.get(i, "dynamic"), Some("0"), "{ctx}");
    assert!(pools.get(i, "created_at").is_some(), "{ctx}");
    assert!(pools.get(i, "last_used").is_some(), "{ctx}");
    // The console itself has no pool.
    assert!(pools.find(&[("database", CONSOLE)]).is_empty(), "{ctx}");

    let cl = show(&p, &mut admin, "SHOW CLIENTS");
    let ctx = format!("\n{cl}{}", p.ctx());
    let app = cl.find(&key);
    assert_eq!(app.len(), 3, "{ctx}");
    let mut states: Vec<&str> = app.iter().map(|&i| cl.get(i, "state").unwrap()).collect();
    states.sort();
    assert_eq!(states, ["active", "active", "waiting"], "{ctx}");
    for &i in &app {
        assert_eq!(cl.get(i, "type"), Some("C"), "{ctx}");
        assert_eq!(cl.get(i, "addr"), Some("127.0.0.1"), "{ctx}");
        assert_eq!(cl.get(i, "local_port"), Some(&*p.port.to_string()), "{ctx}");
        assert_eq!(cl.get(i, "auth_source"), Some("config"), "{ctx}");
        assert_eq!(
            cl.get(i, "ptr").map(String::from),
            Some(format!("c{}", cl.int(i, "id"))),
            "{ctx}"
        );
    }
    let waiting = cl.one(&[("database", "app"), ("state", "waiting")]);
    assert!(
        cl.int(waiting, "wait") * 1_000_000 + cl.int(waiting, "wait_us") > 0,
        "{ctx}"
    );
    let linked: Vec<usize> = app
        .iter()
        .copied()
        .filter(|&i| !cl.get(i, "link").unwrap_or("").is_empty())
        .collect();
    assert_eq!(linked.len(), 1, "one client holds the server{ctx}");
    let holder_row = linked[0];
    assert_eq!(cl.get(holder_row, "state"), Some("active"), "{ctx}");
    let me = cl.one(&[("database", CONSOLE)]);
    assert_eq!(cl.get(me, "user"), Some(ADMIN), "{ctx}");
    assert_eq!(cl.get(me, "state"), Some("active"), "{ctx}");

    let sv = show(&p, &mut admin, "SHOW SERVERS");
    let ctx = format!("\n{sv}\n{cl}{}", p.ctx());
    let app_servers = sv.find(&key);
    assert_eq!(app_servers.len(), 1, "a pool of one{ctx}");
    let s = app_servers[0];
    assert_eq!(sv.get(s, "type"), Some("S"), "{ctx}");
    assert_eq!(sv.get(s, "state"), Some("active"), "{ctx}");
    assert_eq!(sv.int(s, "remote_pid"), i64::from(pid), "{ctx}");
    assert_eq!(sv.get(s, "addr"), Some("127.0.0.1"), "{ctx}");
    assert_eq!(sv.int(s, "port"), i64::from(cluster().port), "{ctx}");
    assert_eq!(sv.get(s, "close_needed"), Some("0"), "{ctx}");
    assert_eq!(sv.get(s, "link"), cl.get(holder_row, "ptr"), "{ctx}");
    assert_eq!(cl.get(holder_row, "link"), sv.get(s, "ptr"), "{ctx}");
    assert_eq!(sv.get(s, "client_id"), cl.get(holder_row, "id"), "{ctx}");
    assert_eq!(cl.get(holder_row, "server_id"), sv.get(s, "id"), "{ctx}");

    // The holder commits: the waiter gets the server, then it goes idle.
    holder.batch_execute("COMMIT").unwrap();
    let (_waiter, msgs) = finished(&p, pending, "the waiting client's query");
    assert!(
        msgs.iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("released"))),
        "{}",
        p.ctx()
    );
    p.one(&mut idle, "SELECT 1");
    let pools = show_until(&p, &mut admin, "SHOW POOLS", "idle again", |t| {
        t.find(&key).first().is_some_and(|&i| {
            t.int(i, "cl_waiting") == 0 && t.int(i, "sv_active") == 0 && t.int(i, "sv_idle") == 1
        })
    });
    assert_eq!(
        pools.int(pools.one(&key), "cl_active"),
        3,
        "\n{pools}{}",
        p.ctx()
    );
    let sv = show(&p, &mut admin, "SHOW SERVERS");
    let s = sv.one(&key);
    assert_eq!(sv.get(s, "state"), Some("idle"), "\n{sv}{}", p.ctx());
    assert_eq!(sv.get(s, "link"), Some(""), "\n{sv}{}", p.ctx());
    assert_eq!(sv.get(s, "client_id"), None, "\n{sv}{}", p.ctx());
}

/// SHOW STATS totals grow with the queries and transactions run; SHOW
/// DATABASES, USERS, LISTS and CONFIG describe the configuration.
#[test]
fn show_stats_databases_users_lists_config() {
    const N: i64 = 10;
    let p = Pooler::start(&admin_cfg());
    let mut admin = console(&p);
    let mut c = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    p.one(&mut c, "SELECT 1");

    let app_stats = |t: &Table| -> [i64; 4] {
        t.find(&[("database", "app")]).first().map_or([0; 4], |&i| {
            [
                t.int(i, "total_xact_count"),
                t.int(i, "total_query_count"),
                t.int(i, "total_received"),
                t.int(i, "total_sent"),
            ]
        })
    };
    let before = app_stats(&show(&p, &mut admin, "SHOW STATS"));
    for i in 0..N {
        assert_eq!(p.one(&mut c, &format!("SELECT {i}")), i.to_string());
    }
    let t = show_until(&p, &mut admin, "SHOW STATS", "counted the queries", |t| {
        let now = app_stats(t);
        now[0] >= before[0] + N && now[1] >= before[1] + N
    });
    let after = app_stats(&t);
    let ctx = format!("\nbefore {before:?}\n{t}{}", p.ctx());
    assert!(after[0] >= before[0] + N, "total_xact_count{ctx}");
    assert!(after[1] >= before[1] + N, "total_query_count{ctx}");
    assert!(after[2] > before[2], "total_received{ctx}");
    assert!(after[3] > before[3], "total_sent{ctx}");
    let i = t.one(&[("database", "app")]);
    assert!(t.int(i, "total_server_assignment_count") >= N, "{ctx}");
    assert!(t.int(i, "total_query_time") > 0, "{ctx}");
    assert!(t.int(i, "total_xact_time") > 0, "{ctx}");

    // DATABASES: the three configured ones, as configured.
    let t = show(&p, &mut admin, "SHOW DATABASES");
    let ctx = format!("\n{t}{}", p.ctx());
    let mut names: Vec<String> = t.column("name").into_iter().flatten().collect();
    names.sort();
    assert_eq!(names, ["app", "bench", "postgres"], "{ctx}");
    let i = t.one(&[("name", "app")]);
    assert_eq!(t.get(i, "host"), Some("127.0.0.1"), "{ctx}");
    assert_eq!(t.int(i, "port"), i64::from(cluster().port), "{ctx}");
    assert_eq!(t.get(i, "database"), Some("app"), "{ctx}");
    assert_eq!(t.get(i, "force_user"), None, "{ctx}");
    assert_eq!(t.int(i, "pool_size"), 4, "{ctx}");
    assert_eq!(t.int(i, "current_connections"), 1, "{ctx}");
    assert_eq!(t.int(i, "current_client_connections"), 1, "{ctx}");
    assert_eq!(t.int(i, "paused"), 0, "{ctx}");
    assert_eq!(t.int(i, "disabled"), 0, "{ctx}");
    assert_eq!(t.int(i, "auth_query"), 0, "{ctx}");

    // USERS: the static users.
    let t = show(&p, &mut admin, "SHOW USERS");
    let ctx = format!("\n{t}{}", p.ctx());
    for user in [SCRAM_USER, PLAIN_USER] {
        let i = t.one(&[("name", user)]);
        assert_eq!(t.get(i, "source"), Some("config"), "{ctx}");
    }
    let i = t.one(&[("name", SCRAM_USER)]);
    // The app client and this console session.
    assert_eq!(t.int(i, "current_client_connections"), 2, "{ctx}");
    assert_eq!(t.int(i, "current_connections"), 1, "{ctx}");

    // LISTS: PgBouncer's rows, in order.
    let t = show(&p, &mut admin, "SHOW LISTS");
    let ctx = format!("\n{t}{}", p.ctx());
    let lists: Vec<String> = t.column("list").into_iter().flatten().collect();
    assert_eq!(lists, LISTS_ROWS, "{ctx}");
    let item = |name: &str| t.int(t.one(&[("list", name)]), "items");
    assert_eq!(item("databases"), 3, "{ctx}");
    assert!(item("users") >= 2, "{ctx}");
    assert_eq!(item("pools"), 1, "{ctx}");
    assert_eq!(item("used_clients"), 2, "{ctx}");
    assert_eq!(item("login_clients"), 0, "{ctx}");
    assert_eq!(item("used_servers"), 1, "{ctx}");

    // CONFIG: values, defaults, and whether a reload may change them.
    assert_eq!(
        config_row(&p, &mut admin, "default_pool_size"),
        ("4".into(), "20".into(), "yes".into()),
        "{}",
        p.ctx()
    );
    assert_eq!(
        config_row(&p, &mut admin, "listen_port"),
        (p.port.to_string(), "6432".into(), "no".into()),
        "{}",
        p.ctx()
    );
    assert_eq!(
        config_row(&p, &mut admin, "admin_users").0,
        ADMIN,
        "{}",
        p.ctx()
    );
    assert_eq!(
        config_row(&p, &mut admin, "pool_mode").0,
        "transaction",
        "{}",
        p.ctx()
    );
}

// ---------------------------------------------------------------------------
// Control commands
// ---------------------------------------------------------------------------

/// PAUSE app returns only once app's transactions have finished, then
/// holds app's queries (other databases go on) until RESUME app; a bare
/// PAUSE holds every database until a bare RESUME.
#[test]
fn pause_waits_for_transactions_and_resume_releases() {
    let p = Pooler::start(&admin_cfg().pool_size(2));
    let mut admin = console(&p);
    let mut holder = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    let mut other = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    let mut elsewhere = p.connect(SCRAM_USER, Some(SCRAM_PW), "postgres");
    for c in [&mut holder, &mut other, &mut elsewhere] {
        p.one(c, "SELECT 1");
    }
    holder.batch_execute("BEGIN").unwrap();
    p.one(&mut holder, "SELECT 1");

    let pausing = in_thread(console(&p), "PAUSE app");
    assert_blocked(
        &p,
        &pausing,
        Duration::from_millis(700),
        "PAUSE app with a transaction open",
    );
    let t = show(&p, &mut admin, "SHOW DATABASES");
    assert_eq!(
        t.int(t.one(&[("name", "app")]), "paused"),
        1,
        "\n{t}{}",
        p.ctx()
    );
    assert_eq!(
        t.int(t.one(&[("name", "postgres")]), "paused"),
        0,
        "\n{t}{}",
        p.ctx()
    );
    // The open transaction finishes normally.
    assert_eq!(p.one(&mut holder, "SELECT 'inside'"), "inside");
    holder.batch_execute("COMMIT").unwrap();
    let t0 = Instant::now();
    let (_pauser, _) = finished(&p, pausing, "PAUSE app after COMMIT");
    assert!(t0.elapsed() < Duration::from_secs(3), "{}", p.ctx());

    // Paused: app's next query waits, postgres's does not.
    let held = in_thread(other, "SELECT 'resumed'");
    assert_eq!(p.one(&mut elsewhere, "SELECT 'elsewhere'"), "elsewhere");
    assert_blocked(
        &p,
        &held,
        Duration::from_millis(700),
        "a query on paused app",
    );
    let key = [("database", "app"), ("user", SCRAM_USER)];
    show_until(&p, &mut admin, "SHOW POOLS", "a waiting client", |t| {
        t.find(&key)
            .first()
            .is_some_and(|&i| t.int(i, "cl_waiting") == 1)
    });
    command(&p, &mut admin, "RESUME app");
    let (other, msgs) = finished(&p, held, "the held query after RESUME");
    assert!(
        msgs.iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("resumed"))),
        "{}",
        p.ctx()
    );
    let t = show(&p, &mut admin, "SHOW DATABASES");
    assert_eq!(
        t.int(t.one(&[("name", "app")]), "paused"),
        0,
        "\n{t}{}",
        p.ctx()
    );

    // Bare PAUSE: every database, at once when nothing is in a transaction.
    let t0 = Instant::now();
    command(&p, &mut admin, "PAUSE");
    assert!(t0.elapsed() < Duration::from_secs(3), "{}", p.ctx());
    let held_app = in_thread(other, "SELECT 1");
    let held_pg = in_thread(elsewhere, "SELECT 1");
    assert_blocked(&p, &held_app, Duration::from_millis(500), "app under PAUSE");
    assert_blocked(
        &p,
        &held_pg,
        Duration::from_millis(100),
        "postgres under PAUSE",
    );
    let t = show(&p, &mut admin, "SHOW DATABASES");
    for paused in t.column("paused") {
        assert_eq!(paused.as_deref(), Some("1"), "\n{t}{}", p.ctx());
    }
    command(&p, &mut admin, "RESUME");
    finished(&p, held_app, "app after RESUME");
    finished(&p, held_pg, "postgres after RESUME");
}

/// DISABLE app refuses new logins to app with 55000 (others go on);
/// ENABLE app allows them again.
#[test]
fn disable_refuses_logins_and_enable_allows_them() {
    let p = Pooler::start(&admin_cfg());
    let mut admin = console(&p);
    let mut before = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    p.one(&mut before, "SELECT 1");

    command(&p, &mut admin, "DISABLE app");
    let t = show(&p, &mut admin, "SHOW DATABASES");
    assert_eq!(
        t.int(t.one(&[("name", "app")]), "disabled"),
        1,
        "\n{t}{}",
        p.ctx()
    );
    let r = p.try_connect(SCRAM_USER, Some(SCRAM_PW), "app");
    assert_sqlstate(&r, "55000", &p.ctx());
    let r = p.try_connect(PLAIN_USER, Some(PLAIN_PW), "app");
    assert_sqlstate(&r, "55000", &p.ctx());
    let mut pg = p.connect(SCRAM_USER, Some(SCRAM_PW), "postgres");
    assert_eq!(p.one(&mut pg, "SELECT 'other db'"), "other db");
    // The console is not a database DISABLE touches.
    let mut second = console(&p);
    show(&p, &mut second, "SHOW VERSION");
    assert!(
        admin.simple_query("DISABLE no_such_db").is_err(),
        "{}",
        p.ctx()
    );

    command(&p, &mut admin, "ENABLE app");
    let t = show(&p, &mut admin, "SHOW DATABASES");
    assert_eq!(
        t.int(t.one(&[("name", "app")]), "disabled"),
        0,
        "\n{t}{}",
        p.ctx()
    );
    let mut after = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    assert_eq!(p.one(&mut after, "SELECT 'enabled'"), "enabled");
}

/// KILL app closes app's clients (their next query fails) and its servers
/// in PostgreSQL, busy and idle, right away; other databases and new
/// logins to app are unaffected.
#[test]
fn kill_disconnects_clients_and_servers() {
    let cl = cluster();
    let user = cl.new_role("adm_kill");
    let p = Pooler::start(&admin_cfg().pool_size(2).user(&user, &user));
    let mut admin = console(&p);
    let mut busy = p.connect(&user, Some(&user), "app");
    let mut idle = p.connect(&user, Some(&user), "app");
    let mut pg = p.connect(&user, Some(&user), "postgres");
    p.one(&mut pg, "SELECT 1");
    busy.batch_execute("BEGIN").unwrap();
    p.one(&mut busy, "SELECT 1");
    // A second server for app, idle in the pool once this returns.
    p.one(&mut idle, "SELECT 1");
    let backends = |db: &str| {
        cl.count(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}' \
                 AND datname = '{db}'"
            ),
        )
    };
    assert_eq!(backends("app"), 2, "{}", p.ctx());

    command(&p, &mut admin, "KILL app");
    let gone = poll(Duration::from_secs(5), || {
        (backends("app") == 0).then_some(())
    });
    assert!(
        gone.is_some(),
        "{} backends of app after KILL{}",
        backends("app"),
        p.ctx()
    );
    assert!(try_one(&mut busy, "SELECT 1").is_err(), "{}", p.ctx());
    assert!(try_one(&mut idle, "SELECT 1").is_err(), "{}", p.ctx());
    let t = show(&p, &mut admin, "SHOW CLIENTS");
    assert!(
        t.find(&[("database", "app")]).is_empty(),
        "\n{t}{}",
        p.ctx()
    );

    assert_eq!(p.one(&mut pg, "SELECT 'other db'"), "other db");
    assert_eq!(backends("postgres"), 1, "{}", p.ctx());
    let mut again = p.connect(&user, Some(&user), "app");
    assert_eq!(p.one(&mut again, "SELECT 'after kill'"), "after kill");
}

/// RECONNECT app marks app's servers close_needed; one in a transaction
/// serves it to the end and is then replaced; WAIT_CLOSE app returns only
/// once no old server remains. A bare RECONNECT and WAIT_CLOSE replace an
/// idle server too. (plain_user: the pooler has its password, so new
/// server logins need nothing from the client; scram_user's case is
/// `reconnect_keeps_scram_verifier_users_served`.)
#[test]
fn reconnect_and_wait_close() {
    let cl = cluster();
    let p = Pooler::start(&admin_cfg().pool_size(1));
    let mut admin = console(&p);
    let mut c = p.connect(PLAIN_USER, Some(PLAIN_PW), "app");
    let first = p.backend(&mut c);
    c.batch_execute("BEGIN").unwrap();
    assert_eq!(p.backend(&mut c), first, "a pool of one{}", p.ctx());

    command(&p, &mut admin, "RECONNECT app");
    let key = [("database", "app"), ("user", PLAIN_USER)];
    let t = show(&p, &mut admin, "SHOW SERVERS");
    let s = t.one(&key);
    assert_eq!(t.int(s, "remote_pid"), i64::from(first), "\n{t}{}", p.ctx());
    assert_eq!(t.get(s, "close_needed"), Some("1"), "\n{t}{}", p.ctx());

    let waiting = in_thread(console(&p), "WAIT_CLOSE app");
    assert_blocked(
        &p,
        &waiting,
        Duration::from_millis(700),
        "WAIT_CLOSE app with the old server in a transaction",
    );
    // The transaction goes on on its server.
    assert_eq!(p.backend(&mut c), first, "{}", p.ctx());
    c.batch_execute("COMMIT").unwrap();
    finished(&p, waiting, "WAIT_CLOSE app after COMMIT");
    let alive = |pid: i32| {
        cl.count(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
        )
    };
    let closed = poll(Duration::from_secs(5), || (alive(first) == 0).then_some(()));
    assert!(closed.is_some(), "backend {first} still open{}", p.ctx());
    let mut second = first;
    for _ in 0..5 {
        second = p.backend(&mut c);
        if second != first {
            break;
        }
    }
    assert_ne!(second, first, "the old server still serves{}", p.ctx());
    let t = show(&p, &mut admin, "SHOW SERVERS");
    let s = t.one(&key);
    assert_eq!(t.get(s, "close_needed"), Some("0"), "\n{t}{}", p.ctx());

    // Idle now: a bare RECONNECT, and WAIT_CLOSE returns once it is gone.
    let t0 = Instant::now();
    command(&p, &mut admin, "RECONNECT");
    command(&p, &mut admin, "WAIT_CLOSE");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "WAIT_CLOSE took {:?}{}",
        t0.elapsed(),
        p.ctx()
    );
    let t = show(&p, &mut admin, "SHOW SERVERS");
    assert!(
        t.column("close_needed")
            .iter()
            .all(|v| v.as_deref() == Some("0")),
        "old servers after WAIT_CLOSE:\n{t}{}",
        p.ctx()
    );
    let third = p.backend(&mut c);
    assert_ne!(third, second, "{}", p.ctx());
    assert_eq!(alive(second), 0, "{}", p.ctx());
}

/// RECONNECT must not strand clients whose server logins reuse the SCRAM
/// keys of their own login (a user whose config holds only a SCRAM
/// verifier): a client logged in before the RECONNECT gets a new server
/// for its next transaction, not an error.
#[test]
fn reconnect_keeps_scram_verifier_users_served() {
    let cl = cluster();
    let p = Pooler::start(&admin_cfg().pool_size(1));
    let mut admin = console(&p);
    let mut c = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    let first = p.backend(&mut c);
    command(&p, &mut admin, "RECONNECT app");
    command(&p, &mut admin, "WAIT_CLOSE app");
    let alive = cl.count(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {first}"),
    );
    assert_eq!(alive, 0, "backend {first} survived WAIT_CLOSE{}", p.ctx());
    let second = p.backend(&mut c);
    assert_ne!(second, first, "{}", p.ctx());
}

/// RELOAD re-reads the file before it answers; SET changes a setting a
/// reload may change and refuses one that needs a restart (55P02), an
/// unknown one (42704) and a bad value (22023); a broken file is refused
/// and the running configuration kept.
#[test]
fn reload_and_set() {
    let cfg = admin_cfg();
    let p = Pooler::start(&cfg);
    let mut admin = console(&p);
    assert_eq!(config_row(&p, &mut admin, "default_pool_size").0, "4");

    p.rewrite(&cfg.clone().pool_size(9).set("query_wait_timeout", "7s"));
    command(&p, &mut admin, "RELOAD");
    assert_eq!(
        config_row(&p, &mut admin, "default_pool_size").0,
        "9",
        "{}",
        p.ctx()
    );
    assert_eq!(
        config_row(&p, &mut admin, "query_wait_timeout").0,
        "7s",
        "{}",
        p.ctx()
    );
    let t = show(&p, &mut admin, "SHOW DATABASES");
    assert_eq!(t.int(t.one(&[("name", "app")]), "pool_size"), 9, "\n{t}");

    command(&p, &mut admin, "SET default_pool_size = 7");
    assert_eq!(
        config_row(&p, &mut admin, "default_pool_size").0,
        "7",
        "{}",
        p.ctx()
    );
    command(&p, &mut admin, "SET default_pool_size TO '6'");
    assert_eq!(
        config_row(&p, &mut admin, "default_pool_size").0,
        "6",
        "{}",
        p.ctx()
    );

    for (sql, code) in [
        ("SET listen_port = 1", "55P02"),
        ("SET no_such_setting = 1", "42704"),
        ("SET default_pool_size = 0", "22023"),
        ("SET default_pool_size = many", "22023"),
    ] {
        let r = admin.simple_query(sql);
        assert_sqlstate(&r, code, &format!("\n{sql}{}", p.ctx()));
    }
    let (port, _, changeable) = config_row(&p, &mut admin, "listen_port");
    assert_eq!(
        (port, changeable),
        (p.port.to_string(), "no".to_string()),
        "{}",
        p.ctx()
    );
    assert_eq!(config_row(&p, &mut admin, "default_pool_size").0, "6");

    // A file that does not parse: RELOAD fails, nothing changes.
    p.rewrite_config("[pooler\nthis is not toml\n");
    assert!(admin.simple_query("RELOAD").is_err(), "{}", p.ctx());
    assert_eq!(
        config_row(&p, &mut admin, "default_pool_size").0,
        "6",
        "{}",
        p.ctx()
    );
    let mut c = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    assert_eq!(p.one(&mut c, "SELECT 'still serving'"), "still serving");
}

/// SHUTDOWN answers, then the pooler exits (cleanly) and refuses logins.
#[test]
fn shutdown_stops_the_pooler() {
    let mut p = Pooler::start(&admin_cfg());
    let mut c = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    p.one(&mut c, "SELECT 1");
    let mut stats = p.connect(STATS, Some(STATS_PW), CONSOLE);
    assert_sqlstate(&stats.simple_query("SHUTDOWN"), "42501", &p.ctx());
    assert!(p.is_running());

    let mut admin = console(&p);
    let r = admin.simple_query("SHUTDOWN");
    assert!(r.is_ok(), "SHUTDOWN: {r:?}{}", p.ctx());
    let status = p
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after SHUTDOWN{}", p.ctx()));
    assert!(status.success(), "exit status {status}{}", p.ctx());
    assert!(try_one(&mut c, "SELECT 1").is_err());
    assert!(login_refused(p.port));
}

// ---------------------------------------------------------------------------
// /metrics
// ---------------------------------------------------------------------------

struct HttpReply {
    status: u16,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: String,
    raw: String,
}

impl HttpReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `request` in one piece and reads the reply to EOF.
fn http(port: u16, request: &[u8]) -> HttpReply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("send the request");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A reset after the whole reply is still the whole reply.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the HTTP reply: {e}; so far {:?}", text(&buf)),
        }
    }
    let raw = text(&buf);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of the head in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpReply {
        status,
        headers,
        body: body.to_string(),
        raw: raw.clone(),
    }
}

fn http_request(method: &str, path: &str, port: u16) -> HttpReply {
    http(
        port,
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// A scrape that must succeed, be 0.0.4 text and pass the strict validator.
#[track_caller]
fn scrape(p: &Pooler, port: u16) -> String {
    let r = http_request("GET", "/metrics", port);
    assert_eq!(r.status, 200, "{}{}", r.raw, p.ctx());
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "content-type {ct:?}{}",
        p.ctx()
    );
    if let Some(len) = r.header("content-length") {
        assert_eq!(len, r.body.len().to_string(), "{}", p.ctx());
    }
    if let Err(e) = pooler::metrics::validate(&r.body) {
        panic!("invalid exposition: {e}\n{}{}", r.body, p.ctx());
    }
    r.body
}

/// Parses `name{labels}` of a sample line into the name and its labels.
fn parse_series(series: &str) -> Option<(String, Vec<(String, String)>)> {
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_string(), Vec::new()));
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        match chars.peek() {
            Some('}') => break,
            Some(',') => {
                chars.next();
                continue;
            }
            None => return None,
            _ => {}
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.push((key, value));
    }
    labels.sort();
    Some((name.to_string(), labels))
}

/// The value of sample `name` with exactly these labels.
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .find_map(|line| {
            // A value, maybe a timestamp after it; label values here have no spaces.
            let (series, rest) = match line.find('}') {
                Some(i) => (&line[..=i], &line[i + 1..]),
                None => line.split_once(' ')?,
            };
            let (n, l) = parse_series(series)?;
            (n == name && l == want)
                .then(|| rest.split_whitespace().next()?.parse().ok())
                .flatten()
        })
}

#[track_caller]
fn must_sample(p: &Pooler, body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(body, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{body}{}", p.ctx()))
}

fn metrics_section(port: u16) -> String {
    format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n")
}

/// Waits for the metrics listener (it may come up after the pooler's own).
fn wait_metrics(p: &Pooler, port: u16) {
    let up = poll(Duration::from_secs(5), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(
        up.is_some(),
        "nothing listens on metrics port {port}{}",
        p.ctx()
    );
}

/// GET /metrics: 200, text format 0.0.4, valid exposition; the pool's query,
/// transaction and byte counters grow with traffic. Other paths are 404,
/// other methods 405, HEAD has no body, garbage is 400.
#[test]
fn metrics_endpoint_serves_valid_growing_counters() {
    const N: f64 = 5.0;
    let mport = free_port();
    let p = Pooler::start(&admin_cfg().extra(&metrics_section(mport)));
    wait_metrics(&p, mport);
    let empty = scrape(&p, mport);
    assert!(
        empty.contains("# TYPE pooler_queries_total counter"),
        "{empty}{}",
        p.ctx()
    );

    let mut c = p.connect(SCRAM_USER, Some(SCRAM_PW), "app");
    for _ in 0..3 {
        p.one(&mut c, "SELECT 1");
    }
    let pool = [("database", "app"), ("user", SCRAM_USER)];
    let families = [
        "pooler_queries_total",
        "pooler_transactions_total",
        "pooler_received_bytes_total",
        "pooler_sent_bytes_total",
    ];
    let read = |body: &str| -> Vec<f64> {
        families
            .iter()
            .map(|f| must_sample(&p, body, f, &pool))
            .collect()
    };
    let first = scrape(&p, mport);
    let before = read(&first);
    assert!(
        before[0] >= 3.0 && before[1] >= 3.0,
        "{before:?}{}",
        p.ctx()
    );
    for i in 0..N as i64 {
        p.one(&mut c, &format!("SELECT {i}"));
    }
    let mut body = String::new();
    let grown = poll(Duration::from_secs(5), || {
        body = scrape(&p, mport);
        let now = read(&body);
        (now[0] >= before[0] + N && now[1] >= before[1] + N).then_some(now)
    });
    let after = grown.unwrap_or_else(|| {
        panic!(
            "counters did not grow by {N}: before {before:?}\n{body}{}",
            p.ctx()
        )
    });
    assert!(after[2] > before[2], "received bytes {before:?} {after:?}");
    assert!(after[3] > before[3], "sent bytes {before:?} {after:?}");
    let idle = must_sample(
        &p,
        &body,
        "pooler_servers",
        &[("database", "app"), ("user", SCRAM_USER), ("state", "idle")],
    );
    assert_eq!(idle, 1.0, "{body}{}", p.ctx());
    let active = must_sample(
        &p,
        &body,
        "pooler_clients",
        &[
            ("database", "app"),
            ("user", SCRAM_USER),
            ("state", "active"),
        ],
    );
    assert_eq!(active, 1.0, "{body}{}", p.ctx());
    assert!(must_sample(&p, &body, "pooler_connections_accepted_total", &[]) >= 1.0);
    assert!(
        must_sample(&p, &body, "pooler_query_duration_seconds_count", &pool) >= before[0] + N,
        "{body}"
    );

    let r = http_request("GET", "/nope", mport);
    assert_eq!(r.status, 404, "{}{}", r.raw, p.ctx());
    let r = http_request("POST", "/metrics", mport);
    assert_eq!(r.status, 405, "{}{}", r.raw, p.ctx());
    let allow = r.header("allow").unwrap_or_default();
    assert!(allow.contains("GET"), "Allow: {allow:?}{}", p.ctx());
    let r = http_request("HEAD", "/metrics", mport);
    assert_eq!(r.status, 200, "{}{}", r.raw, p.ctx());
    assert!(r.body.is_empty(), "HEAD with a body{}", p.ctx());
    let r = http(mport, b"GARBAGE\r\n\r\n");
    assert_eq!(r.status, 400, "{}{}", r.raw, p.ctx());
    let r = http(mport, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert_eq!(r.status, 400, "{}{}", r.raw, p.ctx());
    // HTTP/1.1 without Host.
    let r = http(mport, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "{}{}", r.raw, p.ctx());
    // Still serving after all that.
    scrape(&p, mport);
}

/// auth_query: a looked-up user logging in twice (a miss, then a hit) and
/// an unknown one (a negative entry) show in SHOW AUTH_QUERY_CACHE and in
/// the cache metrics; SHOW AUTH_QUERY_EXECUTORS reports the executor ok.
#[test]
fn auth_query_cache_and_executors_in_console_and_metrics() {
    let roles = Roles::new();
    let log = LookupLog::new(&roles, 0.0);
    let user = role("adm_aq", "md5", "pw", "");
    let unknown = unique("adm_aq_nobody");
    let mport = free_port();
    let cfg = with_console_users(base())
        .db(AQ, "postgres", "")
        .extra(&roles.section(AQ, Some(&log.query()), ""))
        .extra(&metrics_section(mport));
    let p = Pooler::start(&cfg);
    wait_metrics(&p, mport);

    for _ in 0..2 {
        let mut c = p.connect(&user, Some("pw"), AQ);
        assert_eq!(p.one(&mut c, "SELECT current_user"), roles.server);
    }
    assert_eq!(log.of(&user), 1, "the second login was a hit{}", p.ctx());
    let r = p.try_connect(&unknown, Some("pw"), AQ);
    assert_sqlstate(&r, "28P01", &p.ctx());

    let mut admin = console(&p);
    let t = show(&p, &mut admin, "SHOW AUTH_QUERY_CACHE");
    let ctx = format!("\n{t}{}", p.ctx());
    assert_eq!(t.columns, with(AUTH_QUERY_CACHE_COLUMNS, &[]), "{ctx}");
    let i = t.one(&[("database", AQ), ("username", &user)]);
    assert_eq!(t.get(i, "password_type"), Some("md5"), "{ctx}");
    assert_eq!(t.get(i, "is_negative"), Some("0"), "{ctx}");
    assert!(t.get(i, "cached_at").is_some(), "{ctx}");
    assert!(t.int(i, "expires_in") > 0, "{ctx}");
    let i = t.one(&[("database", AQ), ("username", &unknown)]);
    assert_eq!(t.get(i, "is_negative"), Some("1"), "{ctx}");
    assert_eq!(t.get(i, "password_type"), None, "{ctx}");

    let t = show(&p, &mut admin, "SHOW AUTH_QUERY_EXECUTORS");
    let ctx = format!("\n{t}{}", p.ctx());
    assert_eq!(t.rows.len(), 1, "{ctx}");
    let i = t.one(&[("database", AQ)]);
    assert_eq!(t.get(i, "user"), Some(roles.auth.as_str()), "{ctx}");
    assert_eq!(t.get(i, "dbname"), Some("postgres"), "{ctx}");
    assert_eq!(t.get(i, "status"), Some("ok"), "{ctx}");
    assert!(t.int(i, "pool_size") >= 1, "{ctx}");

    let t = show(&p, &mut admin, "SHOW DATABASES");
    assert_eq!(t.int(t.one(&[("name", AQ)]), "auth_query"), 1, "\n{t}");
    let t = show(&p, &mut admin, "SHOW POOLS");
    let i = t.one(&[("database", AQ), ("user", &roles.server)]);
    assert_eq!(t.get(i, "source"), Some("auth_query"), "\n{t}{}", p.ctx());
    let t = show(&p, &mut admin, "SHOW CLIENTS");
    assert!(t.find(&[("database", AQ)]).is_empty(), "\n{t}{}", p.ctx());

    let body = scrape(&p, mport);
    let db = [("database", AQ)];
    let hits = must_sample(&p, &body, "pooler_auth_query_cache_hits_total", &db);
    let misses = must_sample(&p, &body, "pooler_auth_query_cache_misses_total", &db);
    assert!(hits >= 1.0, "hits {hits}\n{body}{}", p.ctx());
    assert!(misses >= 2.0, "misses {misses}\n{body}{}", p.ctx());
    let errors = must_sample(&p, &body, "pooler_auth_query_executor_errors_total", &db);
    assert_eq!(errors, 0.0, "{body}{}", p.ctx());
}

/// Every guardrail that acts is counted in pooler_guardrail_events_total.
#[test]
fn guardrail_events_are_counted_in_metrics() {
    let mport = free_port();
    let p = Pooler::start(
        &Cfg::transaction()
            .auth("trust")
            .set("query_timeout", "500ms")
            .set("max_result_rows", 5)
            .set("max_client_conn_per_addr", 3)
            .set_raw("deny_statements", r#"["LOAD"]"#)
            .extra(&metrics_section(mport)),
    );
    wait_metrics(&p, mport);
    let mut r = Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap();
    for sql in [
        "LOAD 'x'",
        "SELECT generate_series(1, 100)",
        "SELECT pg_sleep(5)",
    ] {
        let reply = r.query(sql);
        assert!(
            reply.iter().any(|m| m.tag == b'E'),
            "{sql}: {}",
            show_msgs(&reply)
        );
    }
    let _more = [
        Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap(),
        Raw::login(p.port, TRUST_USER, "postgres", None, &[]).unwrap(),
    ];
    assert!(Raw::login(p.port, TRUST_USER, "postgres", None, &[]).is_err());
    let body = scrape(&p, mport);
    let name = "pooler_guardrail_events_total";
    for (guardrail, want) in [
        ("statement_refused", 1.0),
        ("max_result_rows", 1.0),
        ("query_timeout", 1.0),
        ("max_client_conn_per_addr", 1.0),
        ("max_result_bytes", 0.0),
        ("connect_rate_per_addr", 0.0),
    ] {
        assert_eq!(
            must_sample(&p, &body, name, &[("guardrail", guardrail)]),
            want,
            "{guardrail}"
        );
    }
}
