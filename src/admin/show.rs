//! What each SHOW command answers: its columns, and a typed row struct per
//! live-state command whose [`ShowRow::to_row`] fills those columns in order.
//!
//! Column names and order are PgBouncer 1.25's (`src/admin.c`, `src/stats.c`)
//! so that dashboards and exporters written for PgBouncer read ours; our own
//! columns come after all of PgBouncer's. PgBouncer columns for features the
//! pooler does not have are sent with a fixed value rather than dropped:
//! `replication` is `none`, `load_balance_hosts` NULL, `reserve_pool_size` 0
//! (there is no reserve pool), `max_client_connections` and
//! `max_user_client_connections` 0 (PgBouncer's "no limit").
//!
//! CONFIG, VERSION and HELP need no live state and are built here in full.

use std::time::{Duration, SystemTime};

use crate::config::{Config, DatabaseConfig, PoolMode, UserConfig};

use super::parse::{ShowTarget, CONTROL_COMMANDS};
use super::result::{Column, ResultSet, Value};

/// A row struct of one SHOW command.
pub trait ShowRow {
    /// The columns `to_row` fills, in order.
    const COLUMNS: &'static [Column];
    fn to_row(&self) -> Vec<Value>;
}

/// A ResultSet of `R`'s columns with one row per item.
pub fn result_of<'a, R: ShowRow + 'a>(rows: impl IntoIterator<Item = &'a R>) -> ResultSet {
    ResultSet {
        columns: R::COLUMNS.to_vec(),
        rows: rows.into_iter().map(ShowRow::to_row).collect(),
    }
}

impl ShowTarget {
    /// The columns of this SHOW command's answer.
    pub fn columns(self) -> &'static [Column] {
        match self {
            ShowTarget::Help => HELP_COLUMNS,
            ShowTarget::Version => VERSION_COLUMNS,
            ShowTarget::Config => CONFIG_COLUMNS,
            ShowTarget::Databases => DatabaseRow::COLUMNS,
            ShowTarget::Pools => PoolRow::COLUMNS,
            ShowTarget::Clients => ClientRow::COLUMNS,
            ShowTarget::Servers => ServerRow::COLUMNS,
            ShowTarget::Stats => StatsRow::COLUMNS,
            ShowTarget::Users => UserRow::COLUMNS,
            ShowTarget::Lists => LISTS_COLUMNS,
            ShowTarget::AuthQueryCache => AuthQueryCacheRow::COLUMNS,
            ShowTarget::AuthQueryExecutors => AuthQueryExecutorRow::COLUMNS,
        }
    }
}

/// Where a pool's or user's credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `[users.NAME]` (or a database's forced `user`).
    Config,
    /// A database's `auth_query`.
    AuthQuery,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::AuthQuery => "auth_query",
        }
    }
}

use Column as C;

// ---------------------------------------------------------------- SHOW POOLS

/// One (database, user) pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    pub cl_active: u64,
    pub cl_waiting: u64,
    pub cl_active_cancel_req: u64,
    pub cl_waiting_cancel_req: u64,
    pub sv_active: u64,
    pub sv_active_cancel: u64,
    pub sv_being_canceled: u64,
    pub sv_idle: u64,
    pub sv_used: u64,
    pub sv_tested: u64,
    pub sv_login: u64,
    /// How long the oldest waiting client has waited; sent as `maxwait`
    /// (seconds) and `maxwait_us` (the microsecond part).
    pub maxwait: Duration,
    pub pool_mode: PoolMode,
    pub source: Source,
    /// An auth_query passthrough pool, made on first login and dropped when
    /// idle (`dynamic_pool_idle_timeout`). Sent as 0/1.
    pub dynamic: bool,
    pub created_at: SystemTime,
    /// When a server of the pool was last handed to a client; NULL if never.
    pub last_used: Option<SystemTime>,
}

impl ShowRow for PoolRow {
    const COLUMNS: &'static [Column] = &[
        C::text("database"),
        C::text("user"),
        C::int8("cl_active"),
        C::int8("cl_waiting"),
        C::int8("cl_active_cancel_req"),
        C::int8("cl_waiting_cancel_req"),
        C::int8("sv_active"),
        C::int8("sv_active_cancel"),
        C::int8("sv_being_canceled"),
        C::int8("sv_idle"),
        C::int8("sv_used"),
        C::int8("sv_tested"),
        C::int8("sv_login"),
        C::int8("maxwait"),
        C::int8("maxwait_us"),
        C::text("pool_mode"),
        C::text("load_balance_hosts"),
        // ours
        C::text("source"),
        C::int8("dynamic"),
        C::timestamp("created_at"),
        C::timestamp("last_used"),
    ];

    fn to_row(&self) -> Vec<Value> {
        vec![
            Value::text(&self.database),
            Value::text(&self.user),
            Value::uint(self.cl_active),
            Value::uint(self.cl_waiting),
            Value::uint(self.cl_active_cancel_req),
            Value::uint(self.cl_waiting_cancel_req),
            Value::uint(self.sv_active),
            Value::uint(self.sv_active_cancel),
            Value::uint(self.sv_being_canceled),
            Value::uint(self.sv_idle),
            Value::uint(self.sv_used),
            Value::uint(self.sv_tested),
            Value::uint(self.sv_login),
            Value::secs(self.maxwait),
            Value::uint(u64::from(self.maxwait.subsec_micros())),
            Value::text(self.pool_mode.as_str()),
            Value::Null,
            Value::text(self.source.as_str()),
            Value::bool(self.dynamic),
            Value::time(self.created_at),
            Value::opt_time(self.last_used),
        ]
    }
}

// ------------------------------------------------------ SHOW CLIENTS, SERVERS

/// The columns SHOW CLIENTS and SHOW SERVERS share (PgBouncer's socket row).
const SOCKET_COLUMNS: [Column; 21] = [
    C::text("type"),
    C::text("user"),
    C::text("database"),
    C::text("replication"),
    C::text("state"),
    C::text("addr"),
    C::int8("port"),
    C::text("local_addr"),
    C::int8("local_port"),
    C::timestamp("connect_time"),
    C::timestamp("request_time"),
    C::int8("wait"),
    C::int8("wait_us"),
    C::int8("close_needed"),
    C::text("ptr"),
    C::text("link"),
    C::int8("remote_pid"),
    C::text("tls"),
    C::text("application_name"),
    C::int8("prepared_statements"),
    C::int8("id"),
];

/// `SOCKET_COLUMNS` followed by `extra`; `N` must be 21 + `M` (a smaller `N`
/// fails to compile, a larger one leaves nameless columns, which a test
/// rejects).
const fn socket_columns_and<const N: usize, const M: usize>(extra: [Column; M]) -> [Column; N] {
    let mut out = [C::text(""); N];
    let mut i = 0;
    while i < SOCKET_COLUMNS.len() {
        out[i] = SOCKET_COLUMNS[i];
        i += 1;
    }
    let mut j = 0;
    while j < M {
        out[i + j] = extra[j];
        j += 1;
    }
    out
}

const CLIENT_COLUMNS: [Column; 23] =
    socket_columns_and([C::text("auth_source"), C::int8("server_id")]);
const SERVER_COLUMNS: [Column; 22] = socket_columns_and([C::int8("client_id")]);

/// `ptr` of client `id`: PgBouncer prints object addresses, which are unique
/// across clients and servers; ours are ids with a letter for the kind, so a
/// client's `link` is the `ptr` of its server and the other way round.
pub fn client_ptr(id: u64) -> String {
    format!("c{id}")
}

/// `ptr` of server `id`; see [`client_ptr`].
pub fn server_ptr(id: u64) -> String {
    format!("s{id}")
}

/// One client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub user: String,
    pub database: String,
    /// PgBouncer's: `active`, `idle`, `waiting`, `active_cancel_req`,
    /// `waiting_cancel_req` (and `login` for clients still logging in).
    pub state: &'static str,
    /// IP address, or `unix`.
    pub addr: String,
    /// 0 for unix sockets.
    pub port: u16,
    pub local_addr: String,
    pub local_port: u16,
    pub connect_time: SystemTime,
    /// The client's latest request.
    pub request_time: SystemTime,
    /// How long it has been waiting for a server (zero when not waiting);
    /// sent as `wait` (seconds) and `wait_us` (the microsecond part).
    pub wait: Duration,
    /// Process id of a unix-socket peer, else 0.
    pub remote_pid: u32,
    /// TLS version and cipher, `""` without TLS.
    pub tls: String,
    pub application_name: String,
    pub prepared_statements: u64,
    /// Also makes `ptr` (see [`client_ptr`]).
    pub id: u64,
    /// How the client's password was checked: [`Source::as_str`] names, or
    /// NULL (`None`) when no stored password was involved (trust, or not
    /// logged in yet).
    pub auth_source: &'static str,
    /// The linked server; makes `link`.
    pub server_id: Option<u64>,
}

impl ShowRow for ClientRow {
    const COLUMNS: &'static [Column] = &CLIENT_COLUMNS;

    fn to_row(&self) -> Vec<Value> {
        vec![
            Value::text("C"),
            Value::text(&self.user),
            Value::text(&self.database),
            Value::text("none"),
            Value::text(self.state),
            Value::text(&self.addr),
            Value::Int(self.port.into()),
            Value::text(&self.local_addr),
            Value::Int(self.local_port.into()),
            Value::time(self.connect_time),
            Value::time(self.request_time),
            Value::secs(self.wait),
            Value::uint(u64::from(self.wait.subsec_micros())),
            Value::Int(0), // close_needed: not used for clients
            Value::text(client_ptr(self.id)),
            Value::text(self.server_id.map(server_ptr).unwrap_or_default()),
            Value::Int(self.remote_pid.into()),
            Value::text(&self.tls),
            Value::text(&self.application_name),
            Value::uint(self.prepared_statements),
            Value::uint(self.id),
            Value::text(self.auth_source),
            self.server_id.map_or(Value::Null, Value::uint),
        ]
    }
}

/// One server connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    /// The user the pooler logged in to PostgreSQL as.
    pub user: String,
    pub database: String,
    /// PgBouncer's: `active`, `idle`, `used`, `tested`, `new` (logging in),
    /// `active_cancel`, `being_canceled`.
    pub state: &'static str,
    pub addr: String,
    pub port: u16,
    pub local_addr: String,
    pub local_port: u16,
    pub connect_time: SystemTime,
    pub request_time: SystemTime,
    /// To be closed when released (reload or RECONNECT changed its settings).
    pub close_needed: bool,
    /// PostgreSQL's backend PID from BackendKeyData; sent as `remote_pid`,
    /// which is what PgBouncer puts there for servers.
    pub backend_pid: u32,
    pub tls: String,
    /// The linked client's, `""` when unlinked.
    pub application_name: String,
    /// Statements prepared on this server by the pooler.
    pub prepared_statements: u64,
    /// Also makes `ptr` (see [`server_ptr`]).
    pub id: u64,
    /// The linked client; makes `link`.
    pub client_id: Option<u64>,
}

impl ShowRow for ServerRow {
    const COLUMNS: &'static [Column] = &SERVER_COLUMNS;

    fn to_row(&self) -> Vec<Value> {
        vec![
            Value::text("S"),
            Value::text(&self.user),
            Value::text(&self.database),
            Value::text("none"),
            Value::text(self.state),
            Value::text(&self.addr),
            Value::Int(self.port.into()),
            Value::text(&self.local_addr),
            Value::Int(self.local_port.into()),
            Value::time(self.connect_time),
            Value::time(self.request_time),
            Value::Int(0), // wait: not used for servers
            Value::Int(0), // wait_us
            Value::bool(self.close_needed),
            Value::text(server_ptr(self.id)),
            Value::text(self.client_id.map(client_ptr).unwrap_or_default()),
            Value::Int(self.backend_pid.into()),
            Value::text(&self.tls),
            Value::text(&self.application_name),
            Value::uint(self.prepared_statements),
            Value::uint(self.id),
            self.client_id.map_or(Value::Null, Value::uint),
        ]
    }
}

// ---------------------------------------------------------------- SHOW STATS

/// One set of SHOW STATS figures: the totals since start, or the per-second
/// averages (and per-transaction/query mean durations) of the last period.
/// Times are microseconds, byte counts bytes, as in PgBouncer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsCounters {
    pub server_assignment_count: u64,
    pub xact_count: u64,
    pub query_count: u64,
    /// Bytes received from clients (`total_received` / `avg_recv`).
    pub received: u64,
    /// Bytes sent to clients.
    pub sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub wait_time_us: u64,
    pub client_parse_count: u64,
    pub server_parse_count: u64,
    pub bind_count: u64,
}

/// One database's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    pub database: String,
    pub total: StatsCounters,
    pub avg: StatsCounters,
}

impl ShowRow for StatsRow {
    const COLUMNS: &'static [Column] = &[
        C::text("database"),
        C::int8("total_server_assignment_count"),
        C::int8("total_xact_count"),
        C::int8("total_query_count"),
        C::int8("total_received"),
        C::int8("total_sent"),
        C::int8("total_xact_time"),
        C::int8("total_query_time"),
        C::int8("total_wait_time"),
        C::int8("total_client_parse_count"),
        C::int8("total_server_parse_count"),
        C::int8("total_bind_count"),
        C::int8("avg_server_assignment_count"),
        C::int8("avg_xact_count"),
        C::int8("avg_query_count"),
        C::int8("avg_recv"),
        C::int8("avg_sent"),
        C::int8("avg_xact_time"),
        C::int8("avg_query_time"),
        C::int8("avg_wait_time"),
        C::int8("avg_client_parse_count"),
        C::int8("avg_server_parse_count"),
        C::int8("avg_bind_count"),
    ];

    fn to_row(&self) -> Vec<Value> {
        let mut row = Vec::with_capacity(Self::COLUMNS.len());
        row.push(Value::text(&self.database));
        for c in [&self.total, &self.avg] {
            row.extend(
                [
                    c.server_assignment_count,
                    c.xact_count,
                    c.query_count,
                    c.received,
                    c.sent,
                    c.xact_time_us,
                    c.query_time_us,
                    c.wait_time_us,
                    c.client_parse_count,
                    c.server_parse_count,
                    c.bind_count,
                ]
                .map(Value::uint),
            );
        }
        row
    }
}

// ------------------------------------------------------------ SHOW DATABASES

/// One `[databases.NAME]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRow {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// The database name on PostgreSQL (`dbname`).
    pub database: String,
    pub force_user: Option<String>,
    pub pool_size: u32,
    pub min_pool_size: u32,
    /// Sent in whole seconds.
    pub server_lifetime: Duration,
    /// The database's override; NULL when `[pooler]`'s applies.
    pub pool_mode: Option<PoolMode>,
    /// `max_db_connections` in effect; 0 = no limit.
    pub max_connections: u32,
    /// Server connections to this database now.
    pub current_connections: u64,
    /// Client connections to this database now.
    pub current_client_connections: u64,
    pub paused: bool,
    pub disabled: bool,
    /// Whether the database has an `auth_query` section.
    pub auth_query: bool,
}

impl DatabaseRow {
    /// The row as the config describes it; the live fields
    /// (`current_connections`, `current_client_connections`, `paused`,
    /// `disabled`) are zero and false for the caller to fill in.
    pub fn from_config(config: &Config, db: &DatabaseConfig) -> DatabaseRow {
        let defaults = &config.pooler;
        let pool_size = db.pool_size.unwrap_or(defaults.default_pool_size);
        DatabaseRow {
            name: db.name.clone(),
            host: db.host.clone(),
            port: db.port,
            database: db.dbname.clone(),
            force_user: db.user.clone(),
            pool_size,
            min_pool_size: db
                .min_pool_size
                .unwrap_or(defaults.min_pool_size)
                .min(pool_size),
            server_lifetime: defaults.server_lifetime,
            pool_mode: db.pool_mode,
            max_connections: db.max_db_connections.unwrap_or(defaults.max_db_connections),
            current_connections: 0,
            current_client_connections: 0,
            paused: false,
            disabled: false,
            auth_query: db.auth_query.is_some(),
        }
    }
}

impl ShowRow for DatabaseRow {
    const COLUMNS: &'static [Column] = &[
        C::text("name"),
        C::text("host"),
        C::int8("port"),
        C::text("database"),
        C::text("force_user"),
        C::int8("pool_size"),
        C::int8("min_pool_size"),
        C::int8("reserve_pool_size"),
        C::int8("server_lifetime"),
        C::text("pool_mode"),
        C::text("load_balance_hosts"),
        C::int8("max_connections"),
        C::int8("current_connections"),
        C::int8("max_client_connections"),
        C::int8("current_client_connections"),
        C::int8("paused"),
        C::int8("disabled"),
        // ours
        C::int8("auth_query"),
    ];

    fn to_row(&self) -> Vec<Value> {
        vec![
            Value::text(&self.name),
            Value::text(&self.host),
            Value::Int(self.port.into()),
            Value::text(&self.database),
            Value::opt_text(self.force_user.as_deref()),
            Value::Int(self.pool_size.into()),
            Value::Int(self.min_pool_size.into()),
            Value::Int(0), // reserve_pool_size: no reserve pool
            Value::secs(self.server_lifetime),
            Value::opt_text(self.pool_mode.map(PoolMode::as_str)),
            Value::Null, // load_balance_hosts
            Value::Int(self.max_connections.into()),
            Value::uint(self.current_connections),
            Value::Int(0), // max_client_connections: no limit
            Value::uint(self.current_client_connections),
            Value::bool(self.paused),
            Value::bool(self.disabled),
            Value::bool(self.auth_query),
        ]
    }
}

// ---------------------------------------------------------------- SHOW USERS

/// One user: a `[users.NAME]` entry, or (source `auth_query`) a user known
/// from an auth_query lookup, if the caller lists those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    /// The user's override; NULL when not set.
    pub pool_size: Option<u32>,
    /// The user's override; NULL when not set.
    pub pool_mode: Option<PoolMode>,
    /// `max_user_connections` in effect; 0 = no limit.
    pub max_user_connections: u32,
    /// Server connections of this user now.
    pub current_connections: u64,
    /// Client connections of this user now.
    pub current_client_connections: u64,
    pub source: Source,
}

impl UserRow {
    /// The row as the config describes it; the connection counts are zero
    /// for the caller to fill in.
    pub fn from_config(config: &Config, user: &UserConfig) -> UserRow {
        UserRow {
            name: user.name.clone(),
            pool_size: user.pool_size,
            pool_mode: user.pool_mode,
            max_user_connections: user
                .max_user_connections
                .unwrap_or(config.pooler.max_user_connections),
            current_connections: 0,
            current_client_connections: 0,
            source: Source::Config,
        }
    }
}

impl ShowRow for UserRow {
    const COLUMNS: &'static [Column] = &[
        C::text("name"),
        C::int8("pool_size"),
        C::int8("reserve_pool_size"),
        C::text("pool_mode"),
        C::int8("max_user_connections"),
        C::int8("current_connections"),
        C::int8("max_user_client_connections"),
        C::int8("current_client_connections"),
        // ours
        C::text("source"),
    ];

    fn to_row(&self) -> Vec<Value> {
        vec![
            Value::text(&self.name),
            self.pool_size.map_or(Value::Null, |n| Value::Int(n.into())),
            Value::Null, // reserve_pool_size: no reserve pool
            Value::opt_text(self.pool_mode.map(PoolMode::as_str)),
            Value::Int(self.max_user_connections.into()),
            Value::uint(self.current_connections),
            Value::Int(0), // max_user_client_connections: no limit
            Value::uint(self.current_client_connections),
            Value::text(self.source.as_str()),
        ]
    }
}

// ---------------------------------------------------------------- SHOW LISTS

pub const LISTS_COLUMNS: &[Column] = &[C::text("list"), C::int8("items")];

/// The counts SHOW LISTS reports, one row each. PgBouncer's `peers`,
/// `peer_pools` and `dns_*` rows are sent as 0: the pooler has no peering and
/// no DNS cache of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lists {
    pub databases: u64,
    pub users: u64,
    pub pools: u64,
    /// Allocated client slots not in use (slab capacity minus length).
    pub free_clients: u64,
    pub used_clients: u64,
    pub login_clients: u64,
    pub free_servers: u64,
    pub used_servers: u64,
}

impl Lists {
    pub fn to_result(&self) -> ResultSet {
        let rows = [
            ("databases", self.databases),
            ("users", self.users),
            ("peers", 0),
            ("pools", self.pools),
            ("peer_pools", 0),
            ("free_clients", self.free_clients),
            ("used_clients", self.used_clients),
            ("login_clients", self.login_clients),
            ("free_servers", self.free_servers),
            ("used_servers", self.used_servers),
            ("dns_names", 0),
            ("dns_zones", 0),
            ("dns_queries", 0),
            ("dns_pending", 0),
        ];
        ResultSet {
            columns: LISTS_COLUMNS.to_vec(),
            rows: rows
                .into_iter()
                .map(|(list, items)| vec![Value::text(list), Value::uint(items)])
                .collect(),
        }
    }
}

// ------------------------------------------------------ SHOW AUTH_QUERY_CACHE

/// One user in a database's auth_query cache (ours; PgBouncer has no such
/// command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthQueryCacheRow {
    pub database: String,
    pub username: String,
    /// `scram-sha-256` or `md5`; NULL (`None`) for a negative entry or a
    /// fetch still in flight.
    pub password_type: Option<&'static str>,
    /// When the entry was fetched; NULL if it has not been yet.
    pub cached_at: Option<SystemTime>,
    /// Until the entry expires, in whole seconds; NULL when nothing is cached.
    pub expires_in: Option<Duration>,
    /// The user is known not to exist (or have no password). Sent as 0/1.
    pub is_negative: bool,
    /// When a refetch (after a failed password check) last started.
    pub last_refetch: Option<SystemTime>,
}

impl ShowRow for AuthQueryCacheRow {
    const COLUMNS: &'static [Column] = &[
        C::text("database"),
        C::text("username"),
        C::text("password_type"),
        C::timestamp("cached_at"),
        C::int8("expires_in"),
        C::int8("is_negative"),
        C::timestamp("last_refetch"),
    ];

    fn to_row(&self) -> Vec<Value> {
        vec![
            Value::text(&self.database),
            Value::text(&self.username),
            Value::opt_text(self.password_type),
            Value::opt_time(self.cached_at),
            self.expires_in.map_or(Value::Null, Value::secs),
            Value::bool(self.is_negative),
            Value::opt_time(self.last_refetch),
        ]
    }
}

// -------------------------------------------------- SHOW AUTH_QUERY_EXECUTORS

/// One database's auth_query executor (ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthQueryExecutorRow {
    /// The pooler database (`[databases.NAME]`).
    pub database: String,
    /// Who runs the query.
    pub user: String,
    /// Where it runs.
    pub dbname: String,
    pub pool_size: u32,
    /// Lookups taken by a thread and not answered yet.
    pub active: u64,
    /// e.g. `ok`, or the latest error.
    pub status: String,
}

impl ShowRow for AuthQueryExecutorRow {
    const COLUMNS: &'static [Column] = &[
        C::text("database"),
        C::text("user"),
        C::text("dbname"),
        C::int8("pool_size"),
        C::int8("active"),
        C::text("status"),
    ];

    fn to_row(&self) -> Vec<Value> {
        vec![
            Value::text(&self.database),
            Value::text(&self.user),
            Value::text(&self.dbname),
            Value::Int(self.pool_size.into()),
            Value::uint(self.active),
            Value::text(&self.status),
        ]
    }
}

// --------------------------------------------------------------- SHOW CONFIG

pub const CONFIG_COLUMNS: &[Column] = &[
    C::text("key"),
    C::text("value"),
    C::text("default"),
    C::text("changeable"),
];

/// Shown instead of a secret that is set.
pub const REDACTED: &str = "***";

/// Whether a setting holds a password (`password`, `server_password`, ...).
fn is_secret(key: &str) -> bool {
    let name = key.rsplit('.').next().unwrap_or(key);
    name == "password" || name.ends_with("_password")
}

/// SHOW CONFIG: one row per key of `[pooler]` (bare names), `[tls]` and
/// `[metrics]` (`tls.client_tls_mode`, `metrics.listen`), in the settings
/// table's order, from [`Config::show_rows`]. Per-database and per-user keys
/// are SHOW DATABASES' and SHOW USERS' business. `changeable` is `yes` when a
/// reload (or SET) applies a change. A secret, should a global one ever be
/// added, shows as `***` when set.
pub fn show_config(config: &Config) -> ResultSet {
    let rows = config
        .show_rows()
        .into_iter()
        .map(|row| {
            let value = redact(&row.key, row.value);
            let default = redact(&row.key, row.default);
            vec![
                Value::Text(row.key),
                Value::Text(value),
                Value::Text(default),
                Value::text(if row.changeable { "yes" } else { "no" }),
            ]
        })
        .collect();
    ResultSet {
        columns: CONFIG_COLUMNS.to_vec(),
        rows,
    }
}

/// `value`, or [`REDACTED`] when `key` is a secret and `value` is set.
fn redact(key: &str, value: String) -> String {
    if is_secret(key) && !value.is_empty() {
        REDACTED.to_string()
    } else {
        value
    }
}

// -------------------------------------------------------------- SHOW VERSION

pub const VERSION_COLUMNS: &[Column] = &[C::text("version")];

/// `pooler <version>`, like PgBouncer's `PgBouncer 1.25.0`.
pub fn version_string() -> String {
    format!("pooler {}", env!("CARGO_PKG_VERSION"))
}

pub fn show_version() -> ResultSet {
    ResultSet {
        columns: VERSION_COLUMNS.to_vec(),
        rows: vec![vec![Value::text(version_string())]],
    }
}

// ----------------------------------------------------------------- SHOW HELP

pub const HELP_COLUMNS: &[Column] = &[C::text("command")];

/// One row per command. PgBouncer answers SHOW HELP with a NOTICE whose
/// DETAIL lists the commands; many drivers drop notices or hand them to a
/// callback nobody set, and psql prints them out of band. A result set reads
/// the same in every client and needs nothing from the integrator beyond what
/// every other SHOW needs.
pub fn show_help() -> ResultSet {
    let show = ShowTarget::ALL
        .iter()
        .map(|target| format!("SHOW {}", target.name()));
    let control = CONTROL_COMMANDS
        .iter()
        .map(|(_, usage)| (*usage).to_string());
    ResultSet {
        columns: HELP_COLUMNS.to_vec(),
        rows: show.chain(control).map(|c| vec![Value::Text(c)]).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::admin::parse;
    use crate::config::settings::{self, Section};

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("test.conf")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn names(columns: &[Column]) -> Vec<&'static str> {
        columns.iter().map(|c| c.name).collect()
    }

    fn pool_row() -> PoolRow {
        PoolRow {
            database: "app".into(),
            user: "alice".into(),
            cl_active: 1,
            cl_waiting: 2,
            cl_active_cancel_req: 3,
            cl_waiting_cancel_req: 4,
            sv_active: 5,
            sv_active_cancel: 6,
            sv_being_canceled: 7,
            sv_idle: 8,
            sv_used: 9,
            sv_tested: 10,
            sv_login: 11,
            maxwait: Duration::from_micros(2_000_123),
            pool_mode: PoolMode::Transaction,
            source: Source::AuthQuery,
            dynamic: true,
            created_at: at(0),
            last_used: None,
        }
    }

    fn client_row() -> ClientRow {
        ClientRow {
            user: "alice".into(),
            database: "app".into(),
            state: "active",
            addr: "127.0.0.1".into(),
            port: 50_000,
            local_addr: "127.0.0.1".into(),
            local_port: 6432,
            connect_time: at(60),
            request_time: at(120),
            wait: Duration::from_micros(1_500_000),
            remote_pid: 0,
            tls: String::new(),
            application_name: "psql".into(),
            prepared_statements: 3,
            id: 7,
            auth_source: "config",
            server_id: Some(9),
        }
    }

    fn server_row() -> ServerRow {
        ServerRow {
            user: "alice".into(),
            database: "app".into(),
            state: "idle",
            addr: "10.0.0.5".into(),
            port: 5432,
            local_addr: "10.0.0.1".into(),
            local_port: 40_000,
            connect_time: at(0),
            request_time: at(1),
            close_needed: true,
            backend_pid: 4242,
            tls: "TLSv1.3".into(),
            application_name: String::new(),
            prepared_statements: 2,
            id: 9,
            client_id: None,
        }
    }

    /// Every row struct fills exactly its columns, and each SHOW target's
    /// columns are unique by name.
    #[test]
    fn rows_match_their_columns() {
        let db_config = config("[databases.app]\n");
        let db = DatabaseRow::from_config(&db_config, &db_config.databases["app"]);
        let widths = [
            (pool_row().to_row().len(), PoolRow::COLUMNS.len()),
            (client_row().to_row().len(), ClientRow::COLUMNS.len()),
            (server_row().to_row().len(), ServerRow::COLUMNS.len()),
            (
                StatsRow {
                    database: "app".into(),
                    total: StatsCounters::default(),
                    avg: StatsCounters::default(),
                }
                .to_row()
                .len(),
                StatsRow::COLUMNS.len(),
            ),
            (db.to_row().len(), DatabaseRow::COLUMNS.len()),
            (
                UserRow {
                    name: "u".into(),
                    pool_size: None,
                    pool_mode: None,
                    max_user_connections: 0,
                    current_connections: 0,
                    current_client_connections: 0,
                    source: Source::Config,
                }
                .to_row()
                .len(),
                UserRow::COLUMNS.len(),
            ),
            (
                AuthQueryCacheRow {
                    database: "app".into(),
                    username: "u".into(),
                    password_type: None,
                    cached_at: None,
                    expires_in: None,
                    is_negative: true,
                    last_refetch: None,
                }
                .to_row()
                .len(),
                AuthQueryCacheRow::COLUMNS.len(),
            ),
            (
                AuthQueryExecutorRow {
                    database: "app".into(),
                    user: "auth".into(),
                    dbname: "app".into(),
                    pool_size: 2,
                    active: 0,
                    status: "ok".into(),
                }
                .to_row()
                .len(),
                AuthQueryExecutorRow::COLUMNS.len(),
            ),
        ];
        for (index, (row, columns)) in widths.into_iter().enumerate() {
            assert_eq!(row, columns, "row struct #{index}");
        }
        for &target in ShowTarget::ALL {
            let mut seen = std::collections::HashSet::new();
            for column in target.columns() {
                assert!(!column.name.is_empty(), "{target:?}");
                assert!(seen.insert(column.name), "{target:?}: {}", column.name);
            }
        }
    }

    #[test]
    fn pgbouncer_columns_come_first() {
        assert_eq!(
            names(PoolRow::COLUMNS),
            [
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
                "last_used"
            ]
        );
        let socket = [
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
        assert_eq!(names(ClientRow::COLUMNS)[..21], socket);
        assert_eq!(
            names(ClientRow::COLUMNS)[21..],
            ["auth_source", "server_id"]
        );
        assert_eq!(names(ServerRow::COLUMNS)[..21], socket);
        assert_eq!(names(ServerRow::COLUMNS)[21..], ["client_id"]);
        assert_eq!(
            names(DatabaseRow::COLUMNS),
            [
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
                "auth_query"
            ]
        );
        assert_eq!(names(StatsRow::COLUMNS).len(), 23);
        assert_eq!(names(StatsRow::COLUMNS)[1], "total_server_assignment_count");
        assert_eq!(names(StatsRow::COLUMNS)[22], "avg_bind_count");
        assert_eq!(
            names(UserRow::COLUMNS),
            [
                "name",
                "pool_size",
                "reserve_pool_size",
                "pool_mode",
                "max_user_connections",
                "current_connections",
                "max_user_client_connections",
                "current_client_connections",
                "source"
            ]
        );
        assert_eq!(
            names(CONFIG_COLUMNS),
            ["key", "value", "default", "changeable"]
        );
    }

    #[test]
    fn pool_row_values() {
        let rs = result_of([pool_row()].iter());
        assert_eq!(rs.get(0, "maxwait"), Some(&Value::Int(2)));
        assert_eq!(rs.get(0, "maxwait_us"), Some(&Value::Int(123)));
        assert_eq!(rs.get(0, "sv_login"), Some(&Value::Int(11)));
        assert_eq!(rs.get(0, "pool_mode"), Some(&Value::text("transaction")));
        assert_eq!(rs.get(0, "load_balance_hosts"), Some(&Value::Null));
        assert_eq!(rs.get(0, "source"), Some(&Value::text("auth_query")));
        assert_eq!(rs.get(0, "dynamic"), Some(&Value::Int(1)));
        assert_eq!(
            rs.get(0, "created_at"),
            Some(&Value::text("1970-01-01 00:00:00 UTC"))
        );
        assert_eq!(rs.get(0, "last_used"), Some(&Value::Null));
    }

    #[test]
    fn client_and_server_rows_link_to_each_other() {
        let clients = result_of([client_row()].iter());
        let servers = result_of([server_row()].iter());
        assert_eq!(clients.get(0, "type"), Some(&Value::text("C")));
        assert_eq!(servers.get(0, "type"), Some(&Value::text("S")));
        assert_eq!(clients.get(0, "link"), servers.get(0, "ptr"));
        assert_eq!(clients.get(0, "ptr"), Some(&Value::text("c7")));
        assert_eq!(servers.get(0, "link"), Some(&Value::text("")));
        assert_eq!(clients.get(0, "wait"), Some(&Value::Int(1)));
        assert_eq!(clients.get(0, "wait_us"), Some(&Value::Int(500_000)));
        assert_eq!(clients.get(0, "replication"), Some(&Value::text("none")));
        assert_eq!(clients.get(0, "auth_source"), Some(&Value::text("config")));
        assert_eq!(clients.get(0, "server_id"), Some(&Value::Int(9)));
        assert_eq!(servers.get(0, "remote_pid"), Some(&Value::Int(4242)));
        assert_eq!(servers.get(0, "close_needed"), Some(&Value::Int(1)));
        assert_eq!(servers.get(0, "client_id"), Some(&Value::Null));
        assert_eq!(
            servers.get(0, "request_time"),
            Some(&Value::text("1970-01-01 00:00:01 UTC"))
        );
    }

    #[test]
    fn stats_totals_then_averages() {
        let row = StatsRow {
            database: "app".into(),
            total: StatsCounters {
                server_assignment_count: 1,
                xact_count: 2,
                query_count: 3,
                received: 4,
                sent: 5,
                xact_time_us: 6,
                query_time_us: 7,
                wait_time_us: 8,
                client_parse_count: 9,
                server_parse_count: 10,
                bind_count: 11,
            },
            avg: StatsCounters {
                query_time_us: 77,
                ..StatsCounters::default()
            },
        };
        let rs = result_of([row].iter());
        assert_eq!(
            rs.get(0, "total_server_assignment_count"),
            Some(&Value::Int(1))
        );
        assert_eq!(rs.get(0, "total_received"), Some(&Value::Int(4)));
        assert_eq!(rs.get(0, "total_bind_count"), Some(&Value::Int(11)));
        assert_eq!(rs.get(0, "avg_query_time"), Some(&Value::Int(77)));
        assert_eq!(rs.get(0, "avg_recv"), Some(&Value::Int(0)));
    }

    #[test]
    fn database_and_user_rows_from_config() {
        let config = config(
            "[pooler]\ndefault_pool_size = 7\nmin_pool_size = 5\nmax_user_connections = 4\n\
             auth_type = \"md5\"\n\
             [databases.app]\nhost = \"db1\"\nport = 5433\nuser = \"owner\"\npassword = \"pw\"\n\
             pool_mode = \"session\"\n\
             [databases.other]\ndbname = \"real\"\npool_size = 30\nmax_db_connections = 50\n\
             [users.bob]\npassword = \"pw\"\npool_size = 3\n\
             [users.eve]\npassword = \"pw\"\nmax_user_connections = 8\n",
        );
        let app = DatabaseRow::from_config(&config, &config.databases["app"]);
        assert_eq!(
            (app.host.as_str(), app.port, app.database.as_str()),
            ("db1", 5433, "app")
        );
        assert_eq!(app.force_user.as_deref(), Some("owner"));
        assert_eq!((app.pool_size, app.min_pool_size), (7, 5));
        assert_eq!(app.pool_mode, Some(PoolMode::Session));
        assert_eq!(app.server_lifetime, Duration::from_secs(3600));
        let rs = result_of([app].iter());
        assert_eq!(rs.get(0, "server_lifetime"), Some(&Value::Int(3600)));
        assert_eq!(rs.get(0, "pool_mode"), Some(&Value::text("session")));
        assert_eq!(rs.get(0, "auth_query"), Some(&Value::Int(0)));

        let other = DatabaseRow::from_config(&config, &config.databases["other"]);
        assert_eq!(other.database, "real");
        assert_eq!((other.pool_size, other.min_pool_size), (30, 5));
        assert_eq!(other.max_connections, 50);
        let rs = result_of([other].iter());
        assert_eq!(rs.get(0, "force_user"), Some(&Value::Null));
        assert_eq!(rs.get(0, "pool_mode"), Some(&Value::Null));

        let bob = UserRow::from_config(&config, &config.users["bob"]);
        let eve = UserRow::from_config(&config, &config.users["eve"]);
        assert_eq!((bob.pool_size, bob.max_user_connections), (Some(3), 4));
        assert_eq!((eve.pool_size, eve.max_user_connections), (None, 8));
        let rs = result_of([bob, eve].iter());
        assert_eq!(rs.get(0, "pool_size"), Some(&Value::Int(3)));
        assert_eq!(rs.get(1, "pool_size"), Some(&Value::Null));
        assert_eq!(rs.get(1, "source"), Some(&Value::text("config")));
    }

    #[test]
    fn lists_rows() {
        let rs = Lists {
            databases: 2,
            pools: 3,
            used_clients: 5,
            ..Lists::default()
        }
        .to_result();
        let listed: Vec<(String, i64)> = rs
            .rows
            .iter()
            .map(|row| match row.as_slice() {
                [Value::Text(name), Value::Int(n)] => (name.clone(), *n),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(listed.len(), 14);
        assert!(listed.contains(&("databases".into(), 2)));
        assert!(listed.contains(&("pools".into(), 3)));
        assert!(listed.contains(&("used_clients".into(), 5)));
        assert!(listed.contains(&("dns_pending".into(), 0)));
    }

    #[test]
    fn auth_query_rows() {
        let rs = result_of(
            [AuthQueryCacheRow {
                database: "app".into(),
                username: "u".into(),
                password_type: Some("scram-sha-256"),
                cached_at: Some(at(10)),
                expires_in: Some(Duration::from_millis(59_900)),
                is_negative: false,
                last_refetch: None,
            }]
            .iter(),
        );
        assert_eq!(rs.get(0, "expires_in"), Some(&Value::Int(59)));
        assert_eq!(rs.get(0, "is_negative"), Some(&Value::Int(0)));
        assert_eq!(
            rs.get(0, "password_type"),
            Some(&Value::text("scram-sha-256"))
        );
        assert_eq!(rs.get(0, "last_refetch"), Some(&Value::Null));
    }

    #[test]
    fn show_config_lists_every_global_key() {
        let config = config("[pooler]\nlisten_port = 7000\nadmin_users = [\"a\", \"b\"]\n");
        let rs = show_config(&config);
        assert_eq!(
            names(&rs.columns),
            ["key", "value", "default", "changeable"]
        );
        let key_of = |row: &Vec<Value>| match row.first() {
            Some(Value::Text(key)) => key.clone(),
            other => panic!("{other:?}"),
        };
        let keys: Vec<String> = rs.rows.iter().map(key_of).collect();
        for setting in settings::in_section(Section::Pooler) {
            assert!(keys.iter().any(|k| k == setting.name), "{}", setting.name);
        }
        for setting in global_settings() {
            assert!(keys.contains(&setting.display_name()), "{}", setting.name);
        }
        assert!(keys.iter().any(|k| k == "tls.client_tls_mode"));
        assert!(keys.iter().any(|k| k == "metrics.listen"));
        assert!(!keys.iter().any(|k| k.contains("NAME")), "{keys:?}");
        assert_eq!(keys.len(), global_settings().count());

        let row = |key: &str| {
            let index = keys
                .iter()
                .position(|k| k == key)
                .unwrap_or_else(|| panic!("{key}"));
            rs.rows[index].clone()
        };
        assert_eq!(
            row("listen_port"),
            [
                Value::text("listen_port"),
                Value::text("7000"),
                Value::text("6432"),
                Value::text("no")
            ]
        );
        assert_eq!(row("admin_users")[1], Value::text("a,b"));
        assert_eq!(row("admin_users")[3], Value::text("yes"));
        assert_eq!(row("query_wait_timeout")[1], Value::text("2m"));
        for r in &rs.rows {
            assert!(matches!(&r[3], Value::Text(c) if c == "yes" || c == "no"));
        }
    }

    fn global_settings() -> impl Iterator<Item = &'static settings::Setting> {
        settings::SETTINGS.iter().filter(|s| s.section.is_global())
    }

    #[test]
    fn secrets_are_redacted() {
        for key in [
            "password",
            "server_password",
            "databases.NAME.auth_query.password",
            "tls.key_password",
        ] {
            assert!(is_secret(key), "{key}");
            assert_eq!(redact(key, "hunter2".into()), REDACTED);
            assert_eq!(redact(key, String::new()), "");
        }
        for key in ["passwords_file_mode", "listen_port", "auth_type"] {
            assert!(!is_secret(key), "{key}");
            assert_eq!(redact(key, "x".into()), "x");
        }
    }

    #[test]
    fn version_and_help() {
        let rs = show_version();
        assert_eq!(names(&rs.columns), ["version"]);
        assert_eq!(
            rs.rows,
            [[Value::text(format!("pooler {}", env!("CARGO_PKG_VERSION")))]]
        );

        let help = show_help();
        assert_eq!(names(&help.columns), ["command"]);
        let lines: Vec<String> = help
            .rows
            .iter()
            .map(|row| match row.as_slice() {
                [Value::Text(line)] => line.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        for &target in ShowTarget::ALL {
            assert!(lines.contains(&format!("SHOW {}", target.name())));
        }
        // Every line names a command the parser accepts (after filling in
        // the placeholders).
        for line in &lines {
            let sql = line
                .replace("[db]", "app")
                .replace(" db", " app")
                .replace("key = value", "log_level = debug");
            assert!(
                parse::parse(&sql).is_ok(),
                "{line}: {:?}",
                parse::parse(&sql)
            );
        }
        assert_eq!(lines.len(), ShowTarget::ALL.len() + CONTROL_COMMANDS.len());
    }
}
