//! The admin console's commands and the /metrics endpoint, run off the reactors.
//!
//! A worker that receives a console query hands it to a short-lived thread
//! here and parks the client; the thread gathers what it needs (every worker
//! describes its connections through its inbox, pools and caches are read
//! under their own short locks), may wait (PAUSE waits for transactions to
//! finish), and sends the finished reply bytes back to the worker. Console
//! commands are rare, so a thread each is simpler than a queue, and a PAUSE
//! that waits never holds up a RESUME from another session.
//!
//! /metrics is served by one thread of its own with blocking std sockets:
//! scrapes are rare and small, and a slow scraper must not reach a reactor.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::admin::{
    self, AdminCommand, AdminError, AuthQueryCacheRow, AuthQueryExecutorRow, ClientRow,
    DatabaseRow, Lists, PoolRow, ServerRow, ShowTarget, Source, StatsCounters, StatsRow, UserRow,
};
use crate::auth::auth_query::EntryKind;
use crate::config::settings::{Section, SettingValue};
use crate::guard::Guardrail;
use crate::metrics::{Exposition, HistogramSnapshot, Kind};
use crate::pool::{ConnRef, Pool, PoolOrigin};
use crate::protocol;
use crate::worker::{ServerInfo, Shared, WorkerMsg, WorkerReport};

/// Who is asking: `admin_users` may run everything, `stats_users` only SHOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    Admin,
    Stats,
}

/// PAUSE and DISABLE, read by workers on every request and login: an atomic
/// says whether any is set, so the common case costs no lock.
#[derive(Default)]
pub struct ControlState {
    any_paused: AtomicBool,
    paused: Mutex<Paused>,
    any_disabled: AtomicBool,
    disabled: Mutex<HashSet<String>>,
    /// Counters the console and /metrics read.
    pub counters: Counters,
}

#[derive(Default)]
struct Paused {
    all: bool,
    databases: HashSet<String>,
}

/// Process-wide event counters (relaxed atomics; none is on the per-query path).
#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub rejected_too_many: AtomicU64,
    pub rejected_login: AtomicU64,
    pub tls_handshakes: AtomicU64,
    /// Logins by (method, "success" | "failure").
    auth: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// ErrorResponses the pooler itself sent, by SQLSTATE class.
    errors: Mutex<HashMap<String, u64>>,
    /// Times each guardrail acted, indexed like [`Guardrail::ALL`].
    guardrails: [AtomicU64; Guardrail::ALL.len()],
}

impl Counters {
    pub fn auth(&self, method: &'static str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        *self
            .auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method, result))
            .or_default() += 1;
    }

    pub fn guardrail(&self, which: Guardrail, times: u32) {
        self.guardrails[which as usize].fetch_add(u64::from(times), Ordering::Relaxed);
    }

    pub fn error(&self, sqlstate: &str) {
        let class = sqlstate.get(..2).unwrap_or("??").to_owned();
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(class)
            .or_default() += 1;
    }
}

impl ControlState {
    pub fn is_paused(&self, database: &str) -> bool {
        if !self.any_paused.load(Ordering::Acquire) {
            return false;
        }
        let p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        p.all || p.databases.contains(database)
    }

    pub fn is_disabled(&self, database: &str) -> bool {
        self.any_disabled.load(Ordering::Acquire)
            && self
                .disabled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(database)
    }

    fn set_paused(&self, database: Option<&str>, on: bool) {
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        match (database, on) {
            (None, true) => p.all = true,
            (None, false) => {
                p.all = false;
                p.databases.clear();
            }
            (Some(db), true) => {
                p.databases.insert(db.to_owned());
            }
            (Some(db), false) => {
                p.databases.remove(db);
            }
        }
        self.any_paused
            .store(p.all || !p.databases.is_empty(), Ordering::Release);
    }

    fn set_disabled(&self, database: &str, on: bool) {
        let mut d = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        if on {
            d.insert(database.to_owned());
        } else {
            d.remove(database);
        }
        self.any_disabled.store(!d.is_empty(), Ordering::Release);
    }
}

/// Runs one console query on a thread of its own; the reply goes back to the
/// client's worker as `WorkerMsg::AdminReply`.
pub fn run_query(
    shared: Arc<Shared>,
    worker: usize,
    client: ConnRef,
    sql: String,
    role: AdminRole,
) {
    let spawned = std::thread::Builder::new().name("admin".into()).spawn({
        let shared = shared.clone();
        move || {
            let (bytes, after) = answer(&shared, &sql, role);
            shared.send_to(worker, WorkerMsg::AdminReply { client, bytes });
            if let Some(after) = after {
                after();
            }
        }
    });
    if let Err(e) = spawned {
        let mut bytes = Vec::new();
        admin::write_error(
            &mut bytes,
            &AdminError {
                code: "53000",
                message: format!("cannot start the admin command: {e}"),
            },
        );
        protocol::ready_for_query(&mut bytes, b'I');
        shared.send_to(worker, WorkerMsg::AdminReply { client, bytes });
    }
}

type After = Box<dyn FnOnce() + Send>;

/// The reply bytes (ending in ReadyForQuery) and what to do once they are sent.
fn answer(shared: &Shared, sql: &str, role: AdminRole) -> (Vec<u8>, Option<After>) {
    let mut out = Vec::new();
    let mut after = None;
    match admin::parse(sql) {
        Err(e) => admin::write_error(&mut out, &e),
        Ok(commands) if commands.is_empty() => admin::write_empty_query(&mut out),
        Ok(commands) => {
            let denied = (role == AdminRole::Stats)
                .then(|| commands.iter().find(|c| admin::requires_admin(c)))
                .flatten();
            if let Some(cmd) = denied {
                admin::write_error(&mut out, &AdminError::permission_denied(cmd));
            } else {
                for cmd in &commands {
                    log::info!("admin console: {cmd}");
                    match run(shared, cmd, &mut out) {
                        Ok(a) => after = a.or(after),
                        Err(e) => {
                            admin::write_error(&mut out, &e);
                            break;
                        }
                    }
                }
            }
        }
    }
    protocol::ready_for_query(&mut out, b'I');
    (out, after)
}

fn failed(message: impl Into<String>) -> AdminError {
    AdminError {
        code: "XX000",
        message: message.into(),
    }
}

fn run(
    shared: &Shared,
    cmd: &AdminCommand,
    out: &mut Vec<u8>,
) -> Result<Option<After>, AdminError> {
    let snap = shared.snapshot();
    if let Some(db) = cmd.database() {
        if !snap.config.databases.contains_key(db) {
            return Err(AdminError {
                code: "3D000",
                message: format!("database \"{db}\" does not exist"),
            });
        }
    }
    match cmd {
        AdminCommand::Show(target) => {
            let rs = show(shared, *target);
            admin::write_result(out, &rs, cmd.tag());
            return Ok(None);
        }
        AdminCommand::Reload => {
            crate::daemon::reload(shared, &snap.config.path, None).map_err(failed)?;
        }
        AdminCommand::Set { key, value } => {
            let (setting, value) = admin::resolve_set(key, value)?;
            if !matches!(
                setting.section,
                Section::Pooler | Section::Tls | Section::Metrics
            ) {
                return Err(failed(format!("SET cannot change {key}")));
            }
            crate::daemon::reload(shared, &snap.config.path, Some((setting, toml_of(value))))
                .map_err(|e| AdminError {
                    code: "22023",
                    message: e,
                })?;
        }
        AdminCommand::Pause(db) => {
            shared.control.set_paused(db.as_deref(), true);
            // Linked clients finish their transactions; new ones are held.
            while linked_servers(shared, db.as_deref()) > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        AdminCommand::Resume(db) => {
            shared.control.set_paused(db.as_deref(), false);
            shared.broadcast(|| WorkerMsg::Resume);
        }
        AdminCommand::Disable(db) => shared.control.set_disabled(db, true),
        AdminCommand::Enable(db) => shared.control.set_disabled(db, false),
        AdminCommand::Kill(db) => {
            shared.broadcast(|| WorkerMsg::Kill(db.clone()));
            for pool in pools_of(shared, Some(db)) {
                for conn in pool.take_all_idle() {
                    conn.terminate();
                }
            }
        }
        AdminCommand::Reconnect(db) => {
            for pool in pools_of(shared, db.as_deref()) {
                pool.retire_servers();
            }
        }
        AdminCommand::WaitClose(db) => loop {
            let reports = gather(shared);
            let open = reports
                .iter()
                .flat_map(|r| &r.servers)
                .filter(|s| db.as_deref().is_none_or(|d| s.database == d))
                .any(|s| s.close_needed);
            let idle = pools_of(shared, db.as_deref()).iter().any(|p| {
                p.with_idle(|st, idle| idle.iter().any(|s| s.generation != st.generation))
            });
            if !open && !idle {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        },
        AdminCommand::Shutdown => {
            admin::write_command_ok(out, cmd.tag());
            // After the reply is on its way: SIGTERM is the daemon's own stop.
            return Ok(Some(Box::new(|| {
                std::thread::sleep(Duration::from_millis(50));
                // SAFETY: kill on our own pid with a valid signal number.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                }
            })));
        }
    }
    admin::write_command_ok(out, cmd.tag());
    Ok(None)
}

fn toml_of(value: SettingValue) -> toml::Value {
    match value {
        SettingValue::Int(i) => toml::Value::Integer(i),
        SettingValue::Str(s) => toml::Value::String(s),
        SettingValue::Bool(b) => toml::Value::Boolean(b),
        SettingValue::Duration(d) => toml::Value::String(crate::config::format_duration(d)),
        SettingValue::List(l) => {
            toml::Value::Array(l.into_iter().map(toml::Value::String).collect())
        }
        SettingValue::Table(t) => toml::Value::Table(t),
    }
}

fn pools_of(shared: &Shared, db: Option<&str>) -> Vec<Arc<Pool>> {
    shared
        .registry
        .all()
        .into_iter()
        .filter(|p| db.is_none_or(|d| p.key.database == d))
        .collect()
}

fn linked_servers(shared: &Shared, db: Option<&str>) -> usize {
    gather(shared)
        .iter()
        .flat_map(|r| &r.servers)
        .filter(|s| s.state == "active" && db.is_none_or(|d| s.database == d))
        .count()
}

/// Every worker's description of its connections; a worker that does not
/// answer within a second (stuck, or gone at shutdown) is left out.
pub fn gather(shared: &Shared) -> Vec<WorkerReport> {
    let n = shared.workers.get().map_or(0, Vec::len);
    let (tx, rx) = sync_channel(n.max(1));
    shared.broadcast(|| WorkerMsg::Report(tx.clone()));
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
    }
    out
}

fn wall(t: Instant) -> SystemTime {
    crate::worker::wall(t, Instant::now(), SystemTime::now())
}

fn source_of(origin: PoolOrigin) -> Source {
    match origin {
        PoolOrigin::Config => Source::Config,
        PoolOrigin::SharedAuthQuery | PoolOrigin::Dynamic { .. } => Source::AuthQuery,
    }
}

/// One pool's figures for SHOW POOLS and /metrics.
struct PoolView {
    pool: Arc<Pool>,
    row: PoolRow,
}

fn pool_views(shared: &Shared, reports: &[WorkerReport]) -> Vec<PoolView> {
    let mut pools: Vec<PoolView> = shared
        .registry
        .all()
        .into_iter()
        .map(|pool| {
            let row = pool.with_idle(|st, idle| PoolRow {
                database: pool.key.database.clone(),
                user: pool.key.user.clone(),
                cl_active: 0,
                cl_waiting: 0,
                cl_active_cancel_req: 0,
                cl_waiting_cancel_req: 0,
                sv_active: 0,
                sv_active_cancel: 0,
                sv_being_canceled: 0,
                sv_idle: idle.len() as u64,
                sv_used: 0,
                sv_tested: 0,
                sv_login: 0,
                maxwait: Duration::ZERO,
                pool_mode: st.settings.pool_mode,
                source: source_of(st.origin),
                dynamic: matches!(st.origin, PoolOrigin::Dynamic { .. }),
                created_at: wall(st.created_at),
                last_used: (st.last_used > st.created_at).then(|| wall(st.last_used)),
            });
            PoolView { pool, row }
        })
        .collect();
    pools.sort_by(|a, b| (&a.row.database, &a.row.user).cmp(&(&b.row.database, &b.row.user)));
    let index: HashMap<(String, String), usize> = pools
        .iter()
        .enumerate()
        .map(|(i, v)| ((v.row.database.clone(), v.row.user.clone()), i))
        .collect();
    for r in reports {
        for c in &r.clients {
            let Some(user) = &c.pool_user else { continue };
            let Some(&i) = index.get(&(c.database.clone(), user.clone())) else {
                continue;
            };
            let row = &mut pools[i].row;
            match c.state {
                "waiting" => {
                    row.cl_waiting += 1;
                    row.maxwait = row.maxwait.max(c.wait);
                }
                "active" => row.cl_active += 1,
                _ => {}
            }
        }
        for s in &r.servers {
            let Some(&i) = index.get(&(s.database.clone(), s.user.clone())) else {
                continue;
            };
            let row = &mut pools[i].row;
            match s.state {
                "active" => row.sv_active += 1,
                "used" => row.sv_used += 1,
                _ => row.sv_login += 1,
            }
        }
    }
    pools
}

fn idle_server_rows(shared: &Shared) -> Vec<ServerRow> {
    let mut rows = Vec::new();
    for pool in shared.registry.all() {
        pool.with_idle(|st, idle| {
            for s in idle {
                let info = crate::worker::describe_idle(s, &pool.key, st.generation);
                rows.push(server_row(&info, "idle"));
            }
        });
    }
    rows
}

fn server_row(s: &ServerInfo, state: &'static str) -> ServerRow {
    ServerRow {
        user: s.user.clone(),
        database: s.database.clone(),
        state,
        addr: s.addr.clone(),
        port: s.port,
        local_addr: s.local_addr.clone(),
        local_port: s.local_port,
        connect_time: s.connect_time,
        request_time: s.request_time,
        close_needed: s.close_needed,
        backend_pid: s.backend_pid,
        tls: if s.tls { "TLS".into() } else { String::new() },
        application_name: String::new(),
        prepared_statements: s.prepared_statements as u64,
        id: s.id,
        client_id: s.client_id,
    }
}

fn stats_totals(shared: &Shared) -> HashMap<String, StatsCounters> {
    let mut out: HashMap<String, StatsCounters> = HashMap::new();
    for pool in shared.registry.all() {
        let s = &pool.stats;
        let t = out.entry(pool.key.database.clone()).or_default();
        let wait = s.wait_time.snapshot();
        t.server_assignment_count += wait.count();
        t.xact_count += s.xact_count.load(Ordering::Relaxed);
        t.query_count += s.query_count.load(Ordering::Relaxed);
        t.received += s.received.load(Ordering::Relaxed);
        t.sent += s.sent.load(Ordering::Relaxed);
        t.xact_time_us += s.xact_time.snapshot().sum_micros();
        t.query_time_us += s.query_time.snapshot().sum_micros();
        t.wait_time_us += wait.sum_micros();
    }
    out
}

/// SHOW STATS averages cover the time since the previous period began; a
/// period is at least this long, so two SHOWs a moment apart still agree.
const STATS_PERIOD: Duration = Duration::from_secs(15);

fn stats_rows(shared: &Shared) -> Vec<StatsRow> {
    static PERIOD: Mutex<Option<(Instant, HashMap<String, StatsCounters>)>> = Mutex::new(None);
    let now = Instant::now();
    let totals = stats_totals(shared);
    let mut period = PERIOD.lock().unwrap_or_else(|e| e.into_inner());
    let (start, base) = period.get_or_insert_with(|| (now, HashMap::new())).clone();
    if now.duration_since(start) >= STATS_PERIOD {
        *period = Some((now, totals.clone()));
    }
    let secs = now.duration_since(start).as_secs_f64().max(1.0);
    let mut rows: Vec<StatsRow> = totals
        .into_iter()
        .map(|(database, total)| {
            let b = base.get(&database).copied().unwrap_or_default();
            let d = |x: u64, y: u64| x.saturating_sub(y);
            let per_sec = |x: u64| (x as f64 / secs) as u64;
            let per = |x: u64, n: u64| x.checked_div(n).unwrap_or(0);
            let xacts = d(total.xact_count, b.xact_count);
            let queries = d(total.query_count, b.query_count);
            let assignments = d(total.server_assignment_count, b.server_assignment_count);
            let avg = StatsCounters {
                server_assignment_count: per_sec(assignments),
                xact_count: per_sec(xacts),
                query_count: per_sec(queries),
                received: per_sec(d(total.received, b.received)),
                sent: per_sec(d(total.sent, b.sent)),
                xact_time_us: per(d(total.xact_time_us, b.xact_time_us), xacts),
                query_time_us: per(d(total.query_time_us, b.query_time_us), queries),
                wait_time_us: per(d(total.wait_time_us, b.wait_time_us), assignments),
                ..StatsCounters::default()
            };
            StatsRow {
                database,
                total,
                avg,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.database.cmp(&b.database));
    rows
}

fn show(shared: &Shared, target: ShowTarget) -> admin::ResultSet {
    let snap = shared.snapshot();
    let config = &snap.config;
    match target {
        ShowTarget::Help => admin::show_help(),
        ShowTarget::Version => admin::show_version(),
        ShowTarget::Config => admin::show_config(config),
        ShowTarget::Pools => {
            let reports = gather(shared);
            let views = pool_views(shared, &reports);
            admin::result_of(views.iter().map(|v| &v.row))
        }
        ShowTarget::Clients => {
            let reports = gather(shared);
            let mut rows: Vec<ClientRow> = reports
                .iter()
                .flat_map(|r| &r.clients)
                .map(|c| ClientRow {
                    user: c.user.clone(),
                    database: c.database.clone(),
                    state: c.state,
                    addr: c.addr.clone(),
                    port: c.port,
                    local_addr: c.local_addr.clone(),
                    local_port: c.local_port,
                    connect_time: c.connect_time,
                    request_time: c.request_time,
                    wait: c.wait,
                    remote_pid: c.remote_pid,
                    tls: if c.tls { "TLS".into() } else { String::new() },
                    application_name: c.application_name.clone(),
                    prepared_statements: c.prepared_statements as u64,
                    id: c.id,
                    auth_source: c.auth_source,
                    server_id: c.server_id,
                })
                .collect();
            rows.sort_by_key(|r| r.id);
            admin::result_of(&rows)
        }
        ShowTarget::Servers => {
            let reports = gather(shared);
            let mut rows: Vec<ServerRow> = reports
                .iter()
                .flat_map(|r| &r.servers)
                .map(|s| server_row(s, s.state))
                .collect();
            rows.extend(idle_server_rows(shared));
            rows.sort_by_key(|r| r.id);
            admin::result_of(&rows)
        }
        ShowTarget::Stats => admin::result_of(&stats_rows(shared)),
        ShowTarget::Databases => {
            let reports = gather(shared);
            let mut clients: HashMap<&str, u64> = HashMap::new();
            for c in reports.iter().flat_map(|r| &r.clients) {
                *clients.entry(c.database.as_str()).or_default() += 1;
            }
            let mut servers: HashMap<String, u64> = HashMap::new();
            for pool in shared.registry.all() {
                *servers.entry(pool.key.database.clone()).or_default() +=
                    u64::from(pool.counts().1);
            }
            let mut rows: Vec<DatabaseRow> = config
                .databases
                .values()
                .map(|db| {
                    let mut row = DatabaseRow::from_config(config, db);
                    row.current_connections = servers.get(&db.name).copied().unwrap_or(0);
                    row.current_client_connections =
                        clients.get(db.name.as_str()).copied().unwrap_or(0);
                    row.paused = shared.control.is_paused(&db.name);
                    row.disabled = shared.control.is_disabled(&db.name);
                    row
                })
                .collect();
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            admin::result_of(&rows)
        }
        ShowTarget::Users => {
            let mut servers: HashMap<String, u64> = HashMap::new();
            let mut dynamic: HashSet<String> = HashSet::new();
            for pool in shared.registry.all() {
                let (_, total, _) = pool.counts();
                *servers.entry(pool.key.user.clone()).or_default() += u64::from(total);
                if matches!(pool.lock().origin, PoolOrigin::Dynamic { .. }) {
                    dynamic.insert(pool.key.user.clone());
                }
            }
            let reports = gather(shared);
            let mut clients: HashMap<&str, u64> = HashMap::new();
            for c in reports.iter().flat_map(|r| &r.clients) {
                *clients.entry(c.user.as_str()).or_default() += 1;
            }
            let mut rows: Vec<UserRow> = config
                .users
                .values()
                .map(|u| UserRow::from_config(config, u))
                .collect();
            for name in dynamic {
                if !config.users.contains_key(&name) {
                    rows.push(UserRow {
                        name,
                        pool_size: None,
                        pool_mode: None,
                        max_user_connections: config.pooler.max_user_connections,
                        current_connections: 0,
                        current_client_connections: 0,
                        source: Source::AuthQuery,
                    });
                }
            }
            for row in &mut rows {
                row.current_connections = servers.get(&row.name).copied().unwrap_or(0);
                row.current_client_connections =
                    clients.get(row.name.as_str()).copied().unwrap_or(0);
            }
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            admin::result_of(&rows)
        }
        ShowTarget::Lists => {
            let reports = gather(shared);
            let clients: Vec<_> = reports.iter().flat_map(|r| &r.clients).collect();
            let pools = shared.registry.all();
            let servers: u64 = pools.iter().map(|p| u64::from(p.counts().1)).sum();
            let users: HashSet<&str> = config
                .users
                .keys()
                .map(String::as_str)
                .chain(pools.iter().map(|p| p.key.user.as_str()))
                .collect();
            Lists {
                databases: config.databases.len() as u64,
                users: users.len() as u64,
                pools: pools.len() as u64,
                free_clients: 0,
                used_clients: clients.iter().filter(|c| c.state != "login").count() as u64,
                login_clients: clients.iter().filter(|c| c.state == "login").count() as u64,
                free_servers: 0,
                used_servers: servers,
            }
            .to_result()
        }
        ShowTarget::AuthQueryCache => {
            let now = Instant::now();
            let mut rows = Vec::new();
            for (database, aq) in &snap.auth_queries {
                for e in aq.cache().entries() {
                    rows.push(AuthQueryCacheRow {
                        database: database.clone(),
                        username: e.user,
                        password_type: match e.kind {
                            EntryKind::Md5 => Some("md5"),
                            EntryKind::Scram => Some("scram-sha-256"),
                            EntryKind::Unknown | EntryKind::Pending => None,
                        },
                        cached_at: e.fetched_at.map(wall),
                        expires_in: e.expires_at.map(|t| t.saturating_duration_since(now)),
                        is_negative: e.kind == EntryKind::Unknown,
                        last_refetch: Some(wall(e.last_fetch)),
                    });
                }
            }
            rows.sort_by(|a, b| (&a.database, &a.username).cmp(&(&b.database, &b.username)));
            admin::result_of(&rows)
        }
        ShowTarget::AuthQueryExecutors => {
            let mut rows: Vec<AuthQueryExecutorRow> = snap
                .auth_queries
                .iter()
                .map(|(database, aq)| {
                    let c = aq.executor.config();
                    let stats = aq.executor.stats();
                    let last_error = stats
                        .last_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    AuthQueryExecutorRow {
                        database: database.clone(),
                        user: c.user.clone(),
                        dbname: c.dbname.clone(),
                        pool_size: c.pool_size,
                        active: stats.active.load(Ordering::Relaxed) as u64,
                        status: match last_error {
                            None => "ok".into(),
                            Some(e) => format!("last error: {e}"),
                        },
                    }
                })
                .collect();
            rows.sort_by(|a, b| a.database.cmp(&b.database));
            admin::result_of(&rows)
        }
    }
}

// ---------------------------------------------------------------- /metrics

/// Serves `[metrics] listen` until the process exits.
pub fn serve_metrics(shared: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(s) => serve_connection(&shared, s),
            Err(e) => {
                log::warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve_connection(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let (reply, consumed, keep_alive) = match crate::metrics::parse_request(&buf) {
            crate::metrics::Parse::Incomplete => {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            }
            crate::metrics::Parse::Bad(reason) => {
                let _ = stream.write_all(&crate::metrics::bad_request(reason));
                return;
            }
            crate::metrics::Parse::Request {
                method,
                path,
                keep_alive,
                consumed,
            } => (
                crate::metrics::respond(method, path, keep_alive, || render_metrics(shared)),
                consumed,
                keep_alive,
            ),
        };
        if stream.write_all(&reply).is_err() || !keep_alive {
            return;
        }
        buf.drain(..consumed.min(buf.len()));
    }
}

/// A metric family: name, help, and how to read its value from `T`.
type Reading<T, V> = (&'static str, &'static str, fn(&T) -> V);

pub fn render_metrics(shared: &Shared) -> String {
    let snap = shared.snapshot();
    let reports = gather(shared);
    let views = pool_views(shared, &reports);
    let mut e = Exposition::with_capacity(16 * 1024);
    let labels = |v: &PoolView| {
        [
            ("database", v.row.database.clone()),
            ("user", v.row.user.clone()),
        ]
    };

    {
        let mut f = e.family(
            "pooler_clients",
            "Client connections by pool and state.",
            Kind::Gauge,
        );
        for v in &views {
            let [db, user] = labels(v);
            for (state, n) in [("active", v.row.cl_active), ("waiting", v.row.cl_waiting)] {
                f.sample(&[(db.0, &db.1), (user.0, &user.1), ("state", state)], n);
            }
        }
    }
    {
        let login = reports
            .iter()
            .flat_map(|r| &r.clients)
            .filter(|c| c.state == "login")
            .count();
        e.gauge(
            "pooler_clients_login",
            "Client connections still starting up or authenticating.",
            &[(&[][..], login as u64)],
        );
    }
    {
        let mut f = e.family(
            "pooler_servers",
            "Server connections by pool and state.",
            Kind::Gauge,
        );
        for v in &views {
            let [db, user] = labels(v);
            for (state, n) in [
                ("active", v.row.sv_active),
                ("idle", v.row.sv_idle),
                ("used", v.row.sv_used),
                ("login", v.row.sv_login),
            ] {
                f.sample(&[(db.0, &db.1), (user.0, &user.1), ("state", state)], n);
            }
        }
    }
    {
        let mut f = e.family(
            "pooler_pool_maxwait_seconds",
            "How long the oldest waiting client of the pool has waited.",
            Kind::Gauge,
        );
        for v in &views {
            let [db, user] = labels(v);
            f.sample(
                &[(db.0, &db.1), (user.0, &user.1)],
                v.row.maxwait.as_secs_f64(),
            );
        }
    }
    let counter_families: [Reading<crate::pool::PoolStats, u64>; 4] = [
        (
            "pooler_transactions_total",
            "Transactions relayed (ReadyForQuery back to idle).",
            |s| s.xact_count.load(Ordering::Relaxed),
        ),
        (
            "pooler_queries_total",
            "Queries relayed (ReadyForQuery answers).",
            |s| s.query_count.load(Ordering::Relaxed),
        ),
        (
            "pooler_received_bytes_total",
            "Bytes received from clients.",
            |s| s.received.load(Ordering::Relaxed),
        ),
        ("pooler_sent_bytes_total", "Bytes sent to clients.", |s| {
            s.sent.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, read) in counter_families {
        let mut f = e.family(name, help, Kind::Counter);
        for v in &views {
            let [db, user] = labels(v);
            f.sample(&[(db.0, &db.1), (user.0, &user.1)], read(&v.pool.stats));
        }
    }
    let histograms: [Reading<crate::pool::PoolStats, HistogramSnapshot>; 3] = [
        (
            "pooler_transaction_duration_seconds",
            "Transaction durations as seen by the pooler.",
            |s| s.xact_time.snapshot(),
        ),
        (
            "pooler_query_duration_seconds",
            "Query durations as seen by the pooler.",
            |s| s.query_time.snapshot(),
        ),
        (
            "pooler_wait_duration_seconds",
            "Time clients waited for a server connection.",
            |s| s.wait_time.snapshot(),
        ),
    ];
    for (name, help, read) in histograms {
        let mut f = e.family(name, help, Kind::Histogram);
        for v in &views {
            let [db, user] = labels(v);
            f.histogram(&[(db.0, &db.1), (user.0, &user.1)], &read(&v.pool.stats));
        }
    }
    let c = &shared.control.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    e.counter(
        "pooler_connections_accepted_total",
        "Client connections accepted.",
        &[(&[][..], load(&c.accepted))],
    );
    e.counter(
        "pooler_connections_rejected_total",
        "Client connections refused, by reason.",
        &[
            (
                &[("reason", "too_many_clients")][..],
                load(&c.rejected_too_many),
            ),
            (&[("reason", "login")][..], load(&c.rejected_login)),
        ],
    );
    {
        let mut f = e.family(
            "pooler_guardrail_events_total",
            "Times a guardrail acted: a query cancelled, a result stopped, a statement or connection refused.",
            Kind::Counter,
        );
        for g in Guardrail::ALL {
            f.sample(
                &[("guardrail", g.as_str())],
                load(&c.guardrails[g as usize]),
            );
        }
    }
    e.counter(
        "pooler_tls_handshakes_total",
        "Completed client TLS handshakes.",
        &[(&[][..], load(&c.tls_handshakes))],
    );
    {
        let auth = c.auth.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut rows: Vec<_> = auth.into_iter().collect();
        rows.sort();
        let mut f = e.family(
            "pooler_auth_total",
            "Client authentications by method and result.",
            Kind::Counter,
        );
        for ((method, result), n) in rows {
            f.sample(&[("method", method), ("result", result)], n);
        }
    }
    {
        let errors = c.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut classes: Vec<_> = errors.into_iter().collect();
        classes.sort();
        let mut f = e.family(
            "pooler_errors_total",
            "ErrorResponses the pooler sent itself, by SQLSTATE class.",
            Kind::Counter,
        );
        for (class, n) in &classes {
            f.sample(&[("class", class)], *n);
        }
    }
    // auth_query
    let mut aq: Vec<_> = snap.auth_queries.iter().collect();
    aq.sort_by(|a, b| a.0.cmp(b.0));
    let cache_counters: [Reading<crate::auth::auth_query::CacheStats, u64>; 4] = [
        (
            "pooler_auth_query_cache_hits_total",
            "Logins answered from the auth_query cache (negative entries included).",
            |s| s.hits + s.negative_hits,
        ),
        (
            "pooler_auth_query_cache_misses_total",
            "Logins that started a lookup.",
            |s| s.fetches,
        ),
        (
            "pooler_auth_query_cache_refetches_total",
            "Lookups started by a failed password check.",
            |s| s.refetches,
        ),
        (
            "pooler_auth_query_cache_rate_limited_total",
            "Refetches refused by min_interval.",
            |s| s.denied,
        ),
    ];
    for (name, help, read) in cache_counters {
        let mut f = e.family(name, help, Kind::Counter);
        for (db, a) in &aq {
            f.sample(&[("database", db)], read(&a.cache().stats()));
        }
    }
    {
        let mut f = e.family(
            "pooler_auth_query_executor_active_connections",
            "Executor lookups in progress.",
            Kind::Gauge,
        );
        for (db, a) in &aq {
            f.sample(
                &[("database", db)],
                a.executor.stats().active.load(Ordering::Relaxed) as u64,
            );
        }
    }
    {
        let mut f = e.family(
            "pooler_auth_query_executor_errors_total",
            "Lookups that failed (PostgreSQL unreachable, timeout, bad query).",
            Kind::Counter,
        );
        for (db, a) in &aq {
            f.sample(
                &[("database", db)],
                a.executor.stats().errors.load(Ordering::Relaxed),
            );
        }
    }
    {
        let mut dynamic: HashMap<&str, u64> =
            snap.auth_queries.keys().map(|k| (k.as_str(), 0)).collect();
        for v in &views {
            if v.row.dynamic {
                *dynamic.entry(v.row.database.as_str()).or_default() += 1;
            }
        }
        let mut rows: Vec<_> = dynamic.into_iter().collect();
        rows.sort();
        let mut f = e.family(
            "pooler_auth_query_dynamic_pools",
            "Per-user passthrough pools.",
            Kind::Gauge,
        );
        for (db, n) in rows {
            f.sample(&[("database", db)], n);
        }
    }
    let counts = shared.registry.dynamic_counts();
    for (name, help, created) in [
        (
            "pooler_auth_query_dynamic_pools_created_total",
            "Per-user passthrough pools created.",
            true,
        ),
        (
            "pooler_auth_query_dynamic_pools_destroyed_total",
            "Per-user passthrough pools dropped (idle, or retired by a reload).",
            false,
        ),
    ] {
        let mut f = e.family(name, help, Kind::Counter);
        for (db, _) in &aq {
            let (c, d) = counts.get(db.as_str()).copied().unwrap_or_default();
            f.sample(&[("database", db)], if created { c } else { d });
        }
    }
    e.into_string()
}
