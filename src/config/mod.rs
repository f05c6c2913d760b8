//! `pooler.conf`: the TOML schema, defaults, validation with `file:line`
//! errors, effective pool settings and `SHOW CONFIG` rows.
//!
//! Every key is declared once in [`settings::SETTINGS`]; the parser takes
//! defaults from there, and `SHOW CONFIG` and the reload diff list from there.
//! A [`Config`] is an immutable snapshot: a reload builds a new one, and only a
//! fully valid file ever becomes one.

mod duration;
mod locate;
mod parse;
mod password;
pub mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use duration::{format_duration, parse_duration};
pub use parse::ADMIN_DATABASE;
pub use password::PasswordKind;
pub use settings::{Kind, Section, Setting, SettingValue, SETTINGS};

/// Declares a config enum together with its spelling in the file, so the
/// settings table and the parser share one list of names.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every value as written in `pooler.conf`.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// When a server connection goes back to its pool.
    PoolMode {
        /// When the client disconnects.
        Session = "session",
        /// After each transaction.
        Transaction = "transaction",
    }
);

named_enum!(
    /// How clients prove who they are.
    AuthType {
        ScramSha256 = "scram-sha-256",
        Md5 = "md5",
        /// Cleartext password from the client, checked against any stored form.
        Plain = "plain",
        Trust = "trust",
        /// Per connection, from `hba_file`.
        Hba = "hba",
    }
);

named_enum!(
    /// TLS between clients and the pooler.
    ClientTlsMode {
        Disable = "disable",
        Allow = "allow",
        Prefer = "prefer",
        Require = "require",
        VerifyCa = "verify-ca",
        VerifyFull = "verify-full",
    }
);

named_enum!(
    /// TLS between the pooler and PostgreSQL.
    ServerTlsMode {
        Disable = "disable",
        Prefer = "prefer",
        Require = "require",
        VerifyCa = "verify-ca",
        VerifyFull = "verify-full",
    }
);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    pub pooler: PoolerConfig,
    pub tls: TlsConfig,
    pub metrics: MetricsConfig,
    pub databases: BTreeMap<String, DatabaseConfig>,
    pub users: BTreeMap<String, UserConfig>,
    /// Unknown keys, ignored: the daemon logs them, `--check` prints them.
    pub warnings: Vec<ConfigError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolerConfig {
    /// Addresses or `"*"`; empty means no TCP listener.
    pub listen_addr: Vec<String>,
    pub listen_port: u16,
    /// `""` = no unix socket.
    pub unix_socket_dir: String,
    /// Already resolved: `0` in the file becomes the number of cores.
    pub workers: usize,
    pub auth_type: AuthType,
    pub hba_file: String,
    pub admin_users: Vec<String>,
    pub stats_users: Vec<String>,
    /// Names besides `pooler` that reach the admin console.
    pub admin_aliases: Vec<String>,
    pub pool_mode: PoolMode,
    pub default_pool_size: u32,
    pub min_pool_size: u32,
    pub max_client_conn: u32,
    /// 0 = no limit.
    pub max_db_connections: u32,
    /// 0 = no limit.
    pub max_user_connections: u32,
    /// 0 = no prepared statement tracking.
    pub max_prepared_statements: u32,
    /// `""` = none.
    pub server_reset_query: String,
    /// Never zero.
    pub server_connect_timeout: Duration,
    /// Never zero.
    pub query_wait_timeout: Duration,
    /// Never zero.
    pub client_login_timeout: Duration,
    /// `Duration::ZERO` = off.
    pub client_write_timeout: Duration,
    /// `Duration::ZERO` = off.
    pub client_idle_timeout: Duration,
    /// `Duration::ZERO` = off.
    pub idle_transaction_timeout: Duration,
    /// `Duration::ZERO` = off.
    pub server_idle_timeout: Duration,
    /// `Duration::ZERO` = off.
    pub server_lifetime: Duration,
    /// `Duration::ZERO` = idle passthrough pools are never dropped.
    pub dynamic_pool_idle_timeout: Duration,
    /// One of [`settings::LOG_LEVELS`].
    pub log_level: String,
    /// Defaults of the per-client guardrails; databases and users override them.
    pub limits: ClientLimits,
    /// Statement rule entries, validated by [`crate::guard::StatementRules::new`].
    pub deny_statements: Vec<String>,
    pub allow_statements: Vec<String>,
    pub read_only: bool,
    pub addr_limits: AddrLimits,
}

/// Limits on what one client's queries may take, as in effect for a client: user
/// overrides > database overrides > `[pooler]`. Zero is off throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientLimits {
    pub query_timeout: Duration,
    pub max_result_rows: u64,
    pub max_result_bytes: u64,
}

/// A database's or user's overrides of [`ClientLimits`] and `read_only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitOverrides {
    pub query_timeout: Option<Duration>,
    pub max_result_rows: Option<u64>,
    pub max_result_bytes: Option<u64>,
    pub read_only: Option<bool>,
}

/// Per client address, checked when a client's StartupMessage arrives. Zero is off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddrLimits {
    pub max_client_conn_per_addr: u32,
    /// New connections per second.
    pub connect_rate_per_addr: u32,
    pub connect_burst_per_addr: u32,
    /// Exempt from the limits above; unix socket clients always are.
    pub trusted_addrs: Vec<crate::net::cidr::Cidr>,
}

impl AddrLimits {
    pub fn is_off(&self) -> bool {
        self.max_client_conn_per_addr == 0 && self.connect_rate_per_addr == 0
    }
}

/// `[tls]`, validated: enabling TLS towards clients requires a certificate and
/// key, and a verify mode requires its CA file.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub client_tls_mode: ClientTlsMode,
    pub client_tls_cert_file: String,
    pub client_tls_key_file: String,
    pub client_tls_ca_file: String,
    pub server_tls_mode: ServerTlsMode,
    pub server_tls_ca_file: String,
    pub server_tls_cert_file: String,
    pub server_tls_key_file: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// `"host:port"`, or `""` for off.
    pub listen: String,
}

#[derive(Clone, PartialEq)]
pub struct DatabaseConfig {
    /// The section name: what clients connect to.
    pub name: String,
    /// A value starting with `/` is a unix socket directory.
    pub host: String,
    pub port: u16,
    pub dbname: String,
    /// Log in to PostgreSQL as this user instead of the client's user.
    pub user: Option<String>,
    /// Password of `user`; never set without `user`.
    pub password: Option<String>,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<u32>,
    pub min_pool_size: Option<u32>,
    pub max_db_connections: Option<u32>,
    pub overrides: LimitOverrides,
    /// Replace `[pooler]`'s lists when set.
    pub deny_statements: Option<Vec<String>>,
    pub allow_statements: Option<Vec<String>>,
    /// `[databases.NAME.auth_query]`: look up users that `[users]` does not
    /// list (or lists without a password) in PostgreSQL.
    pub auth_query: Option<AuthQueryConfig>,
}

/// `[databases.NAME.auth_query]`, validated: `user` is set, `query` has its
/// `$1`, `server_user` and `server_password` come together.
#[derive(Clone, PartialEq)]
pub struct AuthQueryConfig {
    /// Parameterized with the client's user name as `$1`, never interpolated.
    pub query: String,
    /// Who runs the query; never empty.
    pub user: String,
    /// Plain text: the executor's PostgreSQL client cannot log in with a hash.
    pub password: String,
    /// Already resolved: `""` in the file becomes the database's `dbname`.
    pub dbname: String,
    /// Executor connections, at least 1.
    pub pool_size: u32,
    /// `Some`: every auth_query user shares one pool logged in as this user.
    /// `None` (also for `""` in the file): passthrough, one pool per user.
    pub server_user: Option<String>,
    /// Set exactly when `server_user` is; may be a SCRAM secret or md5 hash.
    pub server_password: Option<String>,
    /// Pool size of each per-user pool in passthrough mode, at least 1.
    pub default_pool_size: u32,
    /// Above zero.
    pub cache_ttl: Duration,
    /// `Duration::ZERO` = unknown users are not remembered.
    pub cache_failure_ttl: Duration,
    /// `Duration::ZERO` = no limit on refetches after a failed password check.
    pub min_interval: Duration,
    /// Per-user pools in passthrough mode, at least 1.
    pub max_dynamic_pools: u32,
}

impl AuthQueryConfig {
    /// The user whose pool a client authenticated by this auth_query joins:
    /// `server_user` when set, else the client's own.
    pub fn pool_user<'a>(&'a self, client_user: &'a str) -> &'a str {
        self.server_user.as_deref().unwrap_or(client_user)
    }
}

#[derive(Clone, PartialEq)]
pub struct UserConfig {
    pub name: String,
    /// `"SCRAM-SHA-256$..."`, `"md5<32 hex>"`, plain text, or `""`; see
    /// [`UserConfig::password_kind`].
    pub password: String,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<u32>,
    pub max_user_connections: Option<u32>,
    pub overrides: LimitOverrides,
}

impl UserConfig {
    pub fn password_kind(&self) -> PasswordKind {
        // Malformed SCRAM secrets were rejected at load; Plain is only a fallback.
        PasswordKind::of(&self.password).unwrap_or(PasswordKind::Plain)
    }
}

const REDACTED: &str = "<redacted>";

/// Keeps passwords out of `{:?}`, which ends up in log lines.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .field("pool_mode", &self.pool_mode)
            .field("pool_size", &self.pool_size)
            .field("min_pool_size", &self.min_pool_size)
            .field("max_db_connections", &self.max_db_connections)
            .field("overrides", &self.overrides)
            .field("deny_statements", &self.deny_statements)
            .field("allow_statements", &self.allow_statements)
            .field("auth_query", &self.auth_query)
            .finish()
    }
}

/// Keeps passwords out of `{:?}`, which ends up in log lines.
impl fmt::Debug for AuthQueryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthQueryConfig")
            .field("query", &self.query)
            .field("user", &self.user)
            .field("password", &REDACTED)
            .field("dbname", &self.dbname)
            .field("pool_size", &self.pool_size)
            .field("server_user", &self.server_user)
            .field(
                "server_password",
                &self.server_password.as_ref().map(|_| REDACTED),
            )
            .field("default_pool_size", &self.default_pool_size)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_failure_ttl", &self.cache_failure_ttl)
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &self.password_kind())
            .field("pool_mode", &self.pool_mode)
            .field("pool_size", &self.pool_size)
            .field("max_user_connections", &self.max_user_connections)
            .field("overrides", &self.overrides)
            .finish()
    }
}

/// Effective pool settings of one (database, user) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub pool_mode: PoolMode,
    pub pool_size: u32,
    pub min_pool_size: u32,
    /// 0 = no limit.
    pub max_db_connections: u32,
    /// 0 = no limit.
    pub max_user_connections: u32,
    /// Server connections run with default_transaction_read_only = on.
    pub read_only: bool,
}

/// One row of the admin console's `SHOW CONFIG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRow {
    pub key: String,
    pub value: String,
    pub default: String,
    /// Whether a reload (SIGHUP) applies a change; otherwise it needs a restart.
    pub changeable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// Dotted path, e.g. `pooler.listen_port` or `databases.app.port`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates `path`. Blocking: call it off the reactor threads.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read: {error}"),
        })?;
        Config::parse(&text, path)
    }

    /// Validates `text` as the contents of `path` (used only in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse::parse(text, path)
    }

    /// Settings of the pool that logs in to PostgreSQL as `user` for
    /// `database`, whose clients are static users: user overrides >
    /// database overrides > `[pooler]` defaults. `None` when the database is
    /// unknown. `min_pool_size` is capped at the pool size, as a user may
    /// lower the pool size below what the database keeps warm.
    ///
    /// `user` names the pool, not the client: for a database with a forced
    /// `user`, pass that user (or use [`Config::effective_pool`]).
    pub fn pool_settings(&self, database: &str, user: &str) -> Option<PoolSettings> {
        let database = self.databases.get(database)?;
        let pool_size = database.pool_size.unwrap_or(self.pooler.default_pool_size);
        Some(self.settings_of(database, self.users.get(user), pool_size))
    }

    /// The user the pool of a client logged in as `client_user` connects as:
    /// the database's forced `user`, else (for a client authenticated through
    /// the database's auth_query) its `server_user`, else the client's own
    /// name. Load rejects a database with both a forced `user` and a
    /// `server_user`, so the order between those two never matters. `None`
    /// when the database is unknown.
    pub fn pool_user<'a>(
        &'a self,
        database: &str,
        client_user: &'a str,
        via_auth_query: bool,
    ) -> Option<&'a str> {
        let database = self.databases.get(database)?;
        let auth_query = database.auth_query.as_ref().filter(|_| via_auth_query);
        Some(match (&database.user, auth_query) {
            (Some(forced), _) => forced,
            (None, Some(auth_query)) => auth_query.pool_user(client_user),
            (None, None) => client_user,
        })
    }

    /// Effective settings of the pool a client logged in as `client_user`
    /// uses: the one place that combines `[pooler]` defaults, database
    /// overrides, user overrides and auth_query. `via_auth_query` says the
    /// client was authenticated by the database's auth_query rather than by
    /// `[users]`; it is ignored when the database has no auth_query (e.g. it
    /// was removed by a reload since), and the client is then treated as
    /// static. `None` when the database is unknown.
    ///
    /// The pool's user is [`Config::pool_user`]. Then, in order:
    ///
    /// 1. A shared pool (the database's forced `user`, or auth_query's
    ///    `server_user`): exactly [`Config::pool_settings`] for that user, so
    ///    `[users.<that user>]` overrides apply to the whole shared pool and
    ///    the client's own `[users]` entry, if any, does not.
    /// 2. Passthrough (auth_query without `server_user`), one pool per
    ///    client user: as `pool_settings`, except that the pool size falls
    ///    back to auth_query's `default_pool_size` instead of the database's
    ///    `pool_size` and `[pooler] default_pool_size`; a `[users.<client>]`
    ///    entry (which may hold only overrides, no password) still wins.
    /// 3. A static user: [`Config::pool_settings`] for the client's user.
    pub fn effective_pool(
        &self,
        database: &str,
        client_user: &str,
        via_auth_query: bool,
    ) -> Option<PoolSettings> {
        let pool_user = self.pool_user(database, client_user, via_auth_query)?;
        let db = self.databases.get(database)?;
        match db.auth_query.as_ref() {
            Some(auth_query)
                if via_auth_query && db.user.is_none() && auth_query.server_user.is_none() =>
            {
                Some(self.settings_of(db, self.users.get(pool_user), auth_query.default_pool_size))
            }
            _ => self.pool_settings(database, pool_user),
        }
    }

    /// `pool_size_default` is what the pool size is when `user` does not
    /// override it; everything else inherits user > database > `[pooler]`.
    fn settings_of(
        &self,
        database: &DatabaseConfig,
        user: Option<&UserConfig>,
        pool_size_default: u32,
    ) -> PoolSettings {
        let defaults = &self.pooler;
        let pool_size = user
            .and_then(|user| user.pool_size)
            .unwrap_or(pool_size_default);
        PoolSettings {
            pool_mode: user
                .and_then(|user| user.pool_mode)
                .or(database.pool_mode)
                .unwrap_or(defaults.pool_mode),
            pool_size,
            min_pool_size: database
                .min_pool_size
                .unwrap_or(defaults.min_pool_size)
                .min(pool_size),
            max_db_connections: database
                .max_db_connections
                .unwrap_or(defaults.max_db_connections),
            max_user_connections: user
                .and_then(|user| user.max_user_connections)
                .unwrap_or(defaults.max_user_connections),
            read_only: user
                .and_then(|user| user.overrides.read_only)
                .or(database.overrides.read_only)
                .unwrap_or(defaults.read_only),
        }
    }

    /// The guardrails of a client logged in as `client_user` to `database`: the client's
    /// own `[users]` entry > the database > `[pooler]`, whatever pool it shares (a limit
    /// is on the client's queries, unlike `read_only`, which is on the pool's servers).
    /// `None` when the database is unknown.
    pub fn client_limits(&self, database: &str, client_user: &str) -> Option<ClientLimits> {
        let db = &self.databases.get(database)?.overrides;
        let user = self
            .users
            .get(client_user)
            .map(|u| u.overrides)
            .unwrap_or_default();
        let defaults = &self.pooler.limits;
        Some(ClientLimits {
            query_timeout: user
                .query_timeout
                .or(db.query_timeout)
                .unwrap_or(defaults.query_timeout),
            max_result_rows: user
                .max_result_rows
                .or(db.max_result_rows)
                .unwrap_or(defaults.max_result_rows),
            max_result_bytes: user
                .max_result_bytes
                .or(db.max_result_bytes)
                .unwrap_or(defaults.max_result_bytes),
        })
    }

    /// The deny and allow lists in effect for `database` (its own, else `[pooler]`'s).
    pub fn statement_lists<'a>(
        &'a self,
        database: &'a DatabaseConfig,
    ) -> (&'a [String], &'a [String]) {
        let p = &self.pooler;
        (
            database
                .deny_statements
                .as_deref()
                .unwrap_or(&p.deny_statements),
            database
                .allow_statements
                .as_deref()
                .unwrap_or(&p.allow_statements),
        )
    }

    /// Rows for `SHOW CONFIG`: every key of `[pooler]`, `[tls]` and
    /// `[metrics]` in table order. Values and defaults are rendered alike
    /// (strings unquoted, durations in their largest exact unit, lists joined
    /// with commas) so that an unchanged value reads the same as its default;
    /// `workers` shows the resolved count.
    pub fn show_rows(&self) -> Vec<ConfigRow> {
        SETTINGS
            .iter()
            .filter(|setting| setting.section.is_global())
            .map(|setting| ConfigRow {
                key: setting.display_name(),
                value: self.shown_value(setting),
                default: match setting.default_value() {
                    Ok(Some(value)) => value.to_string(),
                    _ => String::new(),
                },
                changeable: setting.reload,
            })
            .collect()
    }

    /// Keys (as in `SHOW CONFIG`) whose change from `self` to `newer` a reload
    /// cannot apply; the caller keeps running with the old values for those
    /// and says a restart is needed.
    pub fn restart_needed_for(&self, newer: &Config) -> Vec<String> {
        SETTINGS
            .iter()
            .filter(|setting| setting.section.is_global() && !setting.reload)
            .filter(|setting| self.shown_value(setting) != newer.shown_value(setting))
            .map(Setting::display_name)
            .collect()
    }

    fn shown_value(&self, setting: &Setting) -> String {
        self.global_value(setting)
            .map(|value| value.to_string())
            .unwrap_or_default()
    }

    /// The current value of a `[pooler]`, `[tls]` or `[metrics]` setting.
    fn global_value(&self, setting: &Setting) -> Option<SettingValue> {
        use SettingValue::{Duration as Dur, Int, List, Str};
        let p = &self.pooler;
        let tls = &self.tls;
        let text = |s: &str| Some(Str(s.to_string()));
        let int = |n: u64| Some(Int(i64::try_from(n).unwrap_or(i64::MAX)));
        match (setting.section, setting.name) {
            (Section::Pooler, "listen_addr") => Some(List(p.listen_addr.clone())),
            (Section::Pooler, "listen_port") => int(p.listen_port.into()),
            (Section::Pooler, "unix_socket_dir") => text(&p.unix_socket_dir),
            (Section::Pooler, "workers") => int(p.workers as u64),
            (Section::Pooler, "auth_type") => text(p.auth_type.as_str()),
            (Section::Pooler, "hba_file") => text(&p.hba_file),
            (Section::Pooler, "admin_users") => Some(List(p.admin_users.clone())),
            (Section::Pooler, "stats_users") => Some(List(p.stats_users.clone())),
            (Section::Pooler, "admin_aliases") => Some(List(p.admin_aliases.clone())),
            (Section::Pooler, "pool_mode") => text(p.pool_mode.as_str()),
            (Section::Pooler, "default_pool_size") => int(p.default_pool_size.into()),
            (Section::Pooler, "min_pool_size") => int(p.min_pool_size.into()),
            (Section::Pooler, "max_client_conn") => int(p.max_client_conn.into()),
            (Section::Pooler, "max_db_connections") => int(p.max_db_connections.into()),
            (Section::Pooler, "max_user_connections") => int(p.max_user_connections.into()),
            (Section::Pooler, "max_prepared_statements") => int(p.max_prepared_statements.into()),
            (Section::Pooler, "server_reset_query") => text(&p.server_reset_query),
            (Section::Pooler, "server_connect_timeout") => Some(Dur(p.server_connect_timeout)),
            (Section::Pooler, "query_wait_timeout") => Some(Dur(p.query_wait_timeout)),
            (Section::Pooler, "client_login_timeout") => Some(Dur(p.client_login_timeout)),
            (Section::Pooler, "client_write_timeout") => Some(Dur(p.client_write_timeout)),
            (Section::Pooler, "client_idle_timeout") => Some(Dur(p.client_idle_timeout)),
            (Section::Pooler, "idle_transaction_timeout") => Some(Dur(p.idle_transaction_timeout)),
            (Section::Pooler, "server_idle_timeout") => Some(Dur(p.server_idle_timeout)),
            (Section::Pooler, "server_lifetime") => Some(Dur(p.server_lifetime)),
            (Section::Pooler, "dynamic_pool_idle_timeout") => {
                Some(Dur(p.dynamic_pool_idle_timeout))
            }
            (Section::Pooler, "log_level") => text(&p.log_level),
            (Section::Pooler, "query_timeout") => Some(Dur(p.limits.query_timeout)),
            (Section::Pooler, "max_result_rows") => int(p.limits.max_result_rows),
            (Section::Pooler, "max_result_bytes") => int(p.limits.max_result_bytes),
            (Section::Pooler, "deny_statements") => Some(List(p.deny_statements.clone())),
            (Section::Pooler, "allow_statements") => Some(List(p.allow_statements.clone())),
            (Section::Pooler, "read_only") => Some(SettingValue::Bool(p.read_only)),
            (Section::Pooler, "max_client_conn_per_addr") => {
                int(p.addr_limits.max_client_conn_per_addr.into())
            }
            (Section::Pooler, "connect_rate_per_addr") => {
                int(p.addr_limits.connect_rate_per_addr.into())
            }
            (Section::Pooler, "connect_burst_per_addr") => {
                int(p.addr_limits.connect_burst_per_addr.into())
            }
            (Section::Pooler, "trusted_addrs") => Some(List(
                p.addr_limits
                    .trusted_addrs
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            )),
            (Section::Tls, "client_tls_mode") => text(tls.client_tls_mode.as_str()),
            (Section::Tls, "client_tls_cert_file") => text(&tls.client_tls_cert_file),
            (Section::Tls, "client_tls_key_file") => text(&tls.client_tls_key_file),
            (Section::Tls, "client_tls_ca_file") => text(&tls.client_tls_ca_file),
            (Section::Tls, "server_tls_mode") => text(tls.server_tls_mode.as_str()),
            (Section::Tls, "server_tls_ca_file") => text(&tls.server_tls_ca_file),
            (Section::Tls, "server_tls_cert_file") => text(&tls.server_tls_cert_file),
            (Section::Tls, "server_tls_key_file") => text(&tls.server_tls_key_file),
            (Section::Metrics, "listen") => text(&self.metrics.listen),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
