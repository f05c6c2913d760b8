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
    /// `Duration::ZERO` = off.
    pub client_idle_timeout: Duration,
    /// `Duration::ZERO` = off.
    pub idle_transaction_timeout: Duration,
    /// `Duration::ZERO` = off.
    pub server_idle_timeout: Duration,
    /// `Duration::ZERO` = off.
    pub server_lifetime: Duration,
    /// One of [`settings::LOG_LEVELS`].
    pub log_level: String,
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
    /// `[databases.NAME.auth_query]`: its keys are checked against the settings
    /// table, but it is kept raw for the auth_query module to read.
    pub auth_query: Option<toml::Table>,
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
        let auth_query = self.auth_query.as_ref().map(|table| {
            let mut shown = table.clone();
            for secret in ["password", "server_password"] {
                if let Some(value) = shown.get_mut(secret) {
                    *value = toml::Value::String(REDACTED.to_string());
                }
            }
            shown
        });
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
            .field("auth_query", &auth_query)
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

    /// Effective pool settings for (database, user): user overrides >
    /// database overrides > `[pooler]` defaults. `None` when the database is
    /// unknown. `min_pool_size` is capped at the pool size, as a user may
    /// lower the pool size below what the database keeps warm.
    pub fn pool_settings(&self, database: &str, user: &str) -> Option<PoolSettings> {
        let database = self.databases.get(database)?;
        let user = self.users.get(user);
        let defaults = &self.pooler;
        let pool_size = user
            .and_then(|user| user.pool_size)
            .or(database.pool_size)
            .unwrap_or(defaults.default_pool_size);
        Some(PoolSettings {
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
        })
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
            (Section::Pooler, "client_idle_timeout") => Some(Dur(p.client_idle_timeout)),
            (Section::Pooler, "idle_transaction_timeout") => Some(Dur(p.idle_transaction_timeout)),
            (Section::Pooler, "server_idle_timeout") => Some(Dur(p.server_idle_timeout)),
            (Section::Pooler, "server_lifetime") => Some(Dur(p.server_lifetime)),
            (Section::Pooler, "log_level") => text(&p.log_level),
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
