//! The one settings table: every key of `pooler.conf`, declared once.
//!
//! Parsing defaults, `SHOW CONFIG`, the reload diff and the documentation
//! check all read [`SETTINGS`], so adding a key means adding one row here (and
//! reading it where it is used).
//!
//! # The `default` convention
//!
//! `default` is the TOML text that could stand on the right of `key = ` in
//! `pooler.conf`: `6432`, `"transaction"`, `"5s"`, `0`, `[]`, `""`. It is parsed
//! by the same code as a value from the file, so a default can never be of a
//! different shape than what a user may write. An empty `default` (no text at
//! all, not `""`) means the key has no value of its own when absent: a
//! database or user override that inherits from `[pooler]`, or a value derived
//! from elsewhere (a database's `dbname` defaults to its section name).

use std::fmt;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use super::duration::{duration_from_seconds, format_duration, parse_duration};
use super::{AuthType, ClientTlsMode, PoolMode, ServerTlsMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// `[pooler]`
    Pooler,
    /// `[tls]`
    Tls,
    /// `[metrics]`
    Metrics,
    /// `[databases.NAME]`
    Database,
    /// `[databases.NAME.auth_query]`
    AuthQuery,
    /// `[users.NAME]`
    User,
}

impl Section {
    /// The section as written in `pooler.conf`, with `NAME` standing for the
    /// per-database or per-user part.
    pub fn header(self) -> &'static str {
        match self {
            Section::Pooler => "[pooler]",
            Section::Tls => "[tls]",
            Section::Metrics => "[metrics]",
            Section::Database => "[databases.NAME]",
            Section::AuthQuery => "[databases.NAME.auth_query]",
            Section::User => "[users.NAME]",
        }
    }

    /// Sections with exactly one instance, whose keys `SHOW CONFIG` lists.
    pub fn is_global(self) -> bool {
        matches!(self, Section::Pooler | Section::Tls | Section::Metrics)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TOML integer within `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A TCP port, 1..=65535.
    Port,
    Str,
    Bool,
    /// `"250ms"`, `"5s"`, `"10m"`, `"1h"` or an integer of seconds, at most 30
    /// days. `allow_zero: false` for timeouts where zero could only mean a
    /// mistake (and would not mean "off").
    Duration {
        allow_zero: bool,
    },
    /// A list of strings; a single string is a list of one, `""` an empty list.
    StrList,
    /// A string, one of these.
    Enum(&'static [&'static str]),
    /// `"host:port"` to listen on, or `""` for off.
    ListenSocket,
    /// A sub-table whose keys are declared in their own [`Section`].
    Table,
}

impl Kind {
    /// Short description for error messages and docs.
    pub fn describe(&self) -> String {
        match self {
            Kind::Int { min, max } => format!("an integer from {min} to {max}"),
            Kind::Port => "a port number from 1 to 65535".to_string(),
            Kind::Str => "a string".to_string(),
            Kind::Bool => "true or false".to_string(),
            Kind::Duration { allow_zero: true } => {
                "a duration such as \"250ms\", \"5s\", \"10m\", \"1h\", or 0".to_string()
            }
            Kind::Duration { allow_zero: false } => {
                "a duration above zero such as \"250ms\", \"5s\", \"10m\", \"1h\"".to_string()
            }
            Kind::StrList => "a string or a list of strings".to_string(),
            Kind::Enum(names) => format!("one of {}", quoted_list(names)),
            Kind::ListenSocket => "\"host:port\", or \"\" for off".to_string(),
            Kind::Table => "a table".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub section: Section,
    pub name: &'static str,
    pub kind: Kind,
    /// TOML text of the default; empty when there is none (see the module doc).
    pub default: &'static str,
    /// Whether SIGHUP applies a change; otherwise a restart is needed.
    pub reload: bool,
    pub doc: &'static str,
}

/// A validated value of one setting, before it is moved into the typed config.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    Int(i64),
    Str(String),
    Bool(bool),
    Duration(Duration),
    List(Vec<String>),
    Table(toml::Table),
}

/// Renders values for people (`SHOW CONFIG`): strings unquoted, durations in
/// their largest exact unit, lists joined with commas.
impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingValue::Int(n) => write!(f, "{n}"),
            SettingValue::Str(s) => f.write_str(s),
            SettingValue::Bool(b) => write!(f, "{b}"),
            SettingValue::Duration(d) => f.write_str(&format_duration(*d)),
            SettingValue::List(items) => f.write_str(&items.join(",")),
            SettingValue::Table(table) => {
                let keys: Vec<&str> = table.keys().map(String::as_str).collect();
                write!(f, "{{{}}}", keys.join(","))
            }
        }
    }
}

const POOL_SIZE_MAX: i64 = 100_000;
const CONNECTIONS_MAX: i64 = 1_000_000;
/// Rows or bytes of one result: 2^50, far beyond anything a client could hold.
const RESULT_MAX: i64 = 1 << 50;
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

const fn setting(
    section: Section,
    name: &'static str,
    kind: Kind,
    default: &'static str,
    reload: bool,
    doc: &'static str,
) -> Setting {
    Setting {
        section,
        name,
        kind,
        default,
        reload,
        doc,
    }
}

use Section::{AuthQuery, Database, Metrics, Pooler, Tls, User};

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}

const DURATION_OR_OFF: Kind = Kind::Duration { allow_zero: true };
const DURATION_ABOVE_ZERO: Kind = Kind::Duration { allow_zero: false };

#[rustfmt::skip]
pub static SETTINGS: &[Setting] = &[
    // [pooler]
    setting(Pooler, "listen_addr", Kind::StrList, "\"127.0.0.1\"", false,
        "TCP addresses to listen on: an address, \"*\" for all, a list, or \"\" for none"),
    setting(Pooler, "listen_port", Kind::Port, "6432", false,
        "TCP port to listen on"),
    setting(Pooler, "unix_socket_dir", Kind::Str, "\"/tmp\"", false,
        "directory for the unix socket .s.PGSQL.<port>; \"\" = no unix socket"),
    setting(Pooler, "workers", int(0, 1024), "0", false,
        "reactor threads; 0 = one per core"),
    setting(Pooler, "auth_type", Kind::Enum(AuthType::NAMES), "\"scram-sha-256\"", true,
        "how clients authenticate"),
    setting(Pooler, "hba_file", Kind::Str, "\"\"", true,
        "pg_hba.conf-style file, used when auth_type = \"hba\""),
    setting(Pooler, "admin_users", Kind::StrList, "[]", true,
        "users that may run every admin console command"),
    setting(Pooler, "stats_users", Kind::StrList, "[]", true,
        "users that may run the admin console's SHOW commands"),
    setting(Pooler, "admin_aliases", Kind::StrList, "[\"pgbouncer\"]", true,
        "more names of the admin console's database, for tools that hard-code PgBouncer's"),
    setting(Pooler, "pool_mode", Kind::Enum(PoolMode::NAMES), "\"transaction\"", true,
        "when a server is returned to the pool, unless a database or user overrides it"),
    setting(Pooler, "default_pool_size", int(1, POOL_SIZE_MAX), "20", true,
        "server connections per (database, user) pool, unless overridden"),
    setting(Pooler, "min_pool_size", int(0, POOL_SIZE_MAX), "0", true,
        "server connections kept open per pool even when idle"),
    setting(Pooler, "max_client_conn", int(1, CONNECTIONS_MAX), "1000", true,
        "client connections allowed at once"),
    setting(Pooler, "max_db_connections", int(0, CONNECTIONS_MAX), "0", true,
        "server connections per database across its pools; 0 = no limit"),
    setting(Pooler, "max_user_connections", int(0, CONNECTIONS_MAX), "0", true,
        "server connections per user across its pools; 0 = no limit"),
    setting(Pooler, "max_prepared_statements", int(0, 100_000), "200", true,
        "prepared statements tracked per server in transaction mode; 0 = no tracking"),
    setting(Pooler, "server_reset_query", Kind::Str, "\"DISCARD ALL\"", true,
        "run on a server before another client gets it in session mode; \"\" = none"),
    setting(Pooler, "server_connect_timeout", DURATION_ABOVE_ZERO, "\"5s\"", true,
        "how long connecting and logging in to PostgreSQL may take"),
    setting(Pooler, "query_wait_timeout", DURATION_ABOVE_ZERO, "\"120s\"", true,
        "how long a client may wait for a server before it is disconnected"),
    setting(Pooler, "client_login_timeout", DURATION_ABOVE_ZERO, "\"60s\"", true,
        "close clients that have not logged in (startup, TLS, authentication) this long after connecting"),
    setting(Pooler, "client_write_timeout", DURATION_OR_OFF, "\"5m\"", true,
        "close clients that read nothing of what the pooler has to send this long, and their server; 0 = off"),
    setting(Pooler, "client_idle_timeout", DURATION_OR_OFF, "0", true,
        "close clients idle outside a transaction this long; 0 = off"),
    setting(Pooler, "idle_transaction_timeout", DURATION_OR_OFF, "0", true,
        "close clients idle inside a transaction this long; 0 = off"),
    setting(Pooler, "server_idle_timeout", DURATION_OR_OFF, "\"10m\"", true,
        "close pooled servers idle this long, above min_pool_size; 0 = off"),
    setting(Pooler, "server_lifetime", DURATION_OR_OFF, "\"1h\"", true,
        "close servers this old when they are next released; 0 = off"),
    setting(Pooler, "dynamic_pool_idle_timeout", DURATION_OR_OFF, "\"10m\"", true,
        "drop auth_query passthrough pools without clients or servers this long; 0 = never"),
    setting(Pooler, "log_level", Kind::Enum(LOG_LEVELS), "\"info\"", true,
        "least severe log level written"),
    // Guardrails; query_timeout to read_only may be overridden per database and user.
    setting(Pooler, "query_timeout", DURATION_OR_OFF, "0", true,
        "cancel a query running longer than this (57014); 0 = off"),
    setting(Pooler, "max_result_rows", int(0, RESULT_MAX), "0", true,
        "end a result with 54000 once it passes this many rows; 0 = off"),
    setting(Pooler, "max_result_bytes", int(0, RESULT_MAX), "0", true,
        "end a result with 54000 once its rows or COPY data pass this many bytes; 0 = off"),
    setting(Pooler, "deny_statements", Kind::StrList, "[]", true,
        "statements refused with 42501 by their leading keywords, e.g. \"ALTER SYSTEM\", \"COPY ... PROGRAM\""),
    setting(Pooler, "allow_statements", Kind::StrList, "[]", true,
        "when not empty, only statements whose leading keywords match an entry pass"),
    setting(Pooler, "read_only", Kind::Bool, "false", true,
        "server connections run with default_transaction_read_only = on"),
    setting(Pooler, "max_client_conn_per_addr", int(0, CONNECTIONS_MAX), "0", true,
        "client connections allowed at once from one address; 0 = no limit"),
    setting(Pooler, "connect_rate_per_addr", int(0, CONNECTIONS_MAX), "0", true,
        "new client connections per second from one address; 0 = no limit"),
    setting(Pooler, "connect_burst_per_addr", int(1, CONNECTIONS_MAX), "10", true,
        "new client connections one address may open at once beyond connect_rate_per_addr"),
    setting(Pooler, "trusted_addrs", Kind::StrList, "[]", true,
        "client addresses or CIDR ranges exempt from the per-address limits"),
    // [tls]
    setting(Tls, "client_tls_mode", Kind::Enum(ClientTlsMode::NAMES), "\"disable\"", true,
        "TLS towards clients"),
    setting(Tls, "client_tls_cert_file", Kind::Str, "\"\"", true,
        "PEM certificate chain shown to clients"),
    setting(Tls, "client_tls_key_file", Kind::Str, "\"\"", true,
        "PEM private key of client_tls_cert_file"),
    setting(Tls, "client_tls_ca_file", Kind::Str, "\"\"", true,
        "PEM CA certificates that client certificates are verified against"),
    setting(Tls, "server_tls_mode", Kind::Enum(ServerTlsMode::NAMES), "\"disable\"", true,
        "TLS towards PostgreSQL"),
    setting(Tls, "server_tls_ca_file", Kind::Str, "\"\"", true,
        "PEM CA certificates that PostgreSQL's certificate is verified against"),
    setting(Tls, "server_tls_cert_file", Kind::Str, "\"\"", true,
        "PEM client certificate the pooler presents to PostgreSQL (for its cert auth)"),
    setting(Tls, "server_tls_key_file", Kind::Str, "\"\"", true,
        "PEM private key of server_tls_cert_file"),
    // [metrics]
    // Not reloadable although the brief's rule would make it so: like listen_addr
    // it is a socket bound at start-up.
    setting(Metrics, "listen", Kind::ListenSocket, "\"\"", false,
        "\"host:port\" serving Prometheus /metrics; \"\" = off"),
    // [databases.NAME]
    setting(Database, "host", Kind::Str, "\"127.0.0.1\"", true,
        "PostgreSQL host; a value starting with / is a unix socket directory"),
    setting(Database, "port", Kind::Port, "5432", true,
        "PostgreSQL port"),
    setting(Database, "dbname", Kind::Str, "", true,
        "database name on PostgreSQL; default: the section name"),
    setting(Database, "user", Kind::Str, "", true,
        "log in to PostgreSQL as this user instead of the client's user"),
    setting(Database, "password", Kind::Str, "", true,
        "password of `user`"),
    setting(Database, "pool_mode", Kind::Enum(PoolMode::NAMES), "", true,
        "overrides [pooler] pool_mode"),
    setting(Database, "pool_size", int(1, POOL_SIZE_MAX), "", true,
        "overrides [pooler] default_pool_size"),
    setting(Database, "min_pool_size", int(0, POOL_SIZE_MAX), "", true,
        "overrides [pooler] min_pool_size"),
    setting(Database, "max_db_connections", int(0, CONNECTIONS_MAX), "", true,
        "overrides [pooler] max_db_connections; 0 = no limit"),
    setting(Database, "query_timeout", DURATION_OR_OFF, "", true,
        "overrides [pooler] query_timeout; 0 = off"),
    setting(Database, "max_result_rows", int(0, RESULT_MAX), "", true,
        "overrides [pooler] max_result_rows; 0 = off"),
    setting(Database, "max_result_bytes", int(0, RESULT_MAX), "", true,
        "overrides [pooler] max_result_bytes; 0 = off"),
    setting(Database, "deny_statements", Kind::StrList, "", true,
        "replaces [pooler] deny_statements for this database"),
    setting(Database, "allow_statements", Kind::StrList, "", true,
        "replaces [pooler] allow_statements for this database"),
    setting(Database, "read_only", Kind::Bool, "", true,
        "overrides [pooler] read_only"),
    setting(Database, "auth_query", Kind::Table, "", true,
        "look up unknown users' passwords in this database"),
    // [databases.NAME.auth_query]
    setting(AuthQuery, "query", Kind::Str,
        "\"SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin\"",
        true, "returns (user name, password or NULL) for the user name $1; must use $1"),
    setting(AuthQuery, "user", Kind::Str, "", true,
        "who runs the query; required"),
    setting(AuthQuery, "password", Kind::Str, "\"\"", true,
        "plain password of the query's user"),
    setting(AuthQuery, "dbname", Kind::Str, "\"\"", true,
        "database the query runs in; \"\" = the database's dbname"),
    setting(AuthQuery, "pool_size", int(1, 100), "2", true,
        "connections of the query executor"),
    setting(AuthQuery, "server_user", Kind::Str, "\"\"", true,
        "set: all auth_query users share this user's pool; \"\" = one pool per user"),
    setting(AuthQuery, "server_password", Kind::Str, "\"\"", true,
        "password of server_user; set exactly when server_user is"),
    setting(AuthQuery, "default_pool_size", int(1, POOL_SIZE_MAX), "5", true,
        "pool size of per-user pools when server_user is not set"),
    setting(AuthQuery, "cache_ttl", DURATION_ABOVE_ZERO, "\"1h\"", true,
        "how long a fetched password is trusted"),
    setting(AuthQuery, "cache_failure_ttl", DURATION_OR_OFF, "\"30s\"", true,
        "how long a failed lookup is remembered; 0 = not at all"),
    setting(AuthQuery, "min_interval", DURATION_OR_OFF, "\"1s\"", true,
        "at most one refetch per user per interval; 0 = no limit"),
    setting(AuthQuery, "max_dynamic_pools", int(1, CONNECTIONS_MAX), "1000", true,
        "most per-user pools in passthrough mode; further users are refused with 53300"),
    // [users.NAME]
    setting(User, "password", Kind::Str, "\"\"", true,
        "\"SCRAM-SHA-256$...\", \"md5<32 hex>\", or a plain password; \"\" only with trust"),
    setting(User, "pool_mode", Kind::Enum(PoolMode::NAMES), "", true,
        "overrides the database's and [pooler] pool_mode"),
    setting(User, "pool_size", int(1, POOL_SIZE_MAX), "", true,
        "overrides the database's pool_size for this user's pools"),
    setting(User, "max_user_connections", int(0, CONNECTIONS_MAX), "", true,
        "overrides [pooler] max_user_connections; 0 = no limit"),
    setting(User, "query_timeout", DURATION_OR_OFF, "", true,
        "overrides the database's and [pooler] query_timeout; 0 = off"),
    setting(User, "max_result_rows", int(0, RESULT_MAX), "", true,
        "overrides the database's and [pooler] max_result_rows; 0 = off"),
    setting(User, "max_result_bytes", int(0, RESULT_MAX), "", true,
        "overrides the database's and [pooler] max_result_bytes; 0 = off"),
    setting(User, "read_only", Kind::Bool, "", true,
        "overrides the database's and [pooler] read_only"),
];

/// The declaration of `name` in `section`, if there is one.
pub fn find(section: Section, name: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|setting| setting.section == section && setting.name == name)
}

pub fn in_section(section: Section) -> impl Iterator<Item = &'static Setting> {
    SETTINGS
        .iter()
        .filter(move |setting| setting.section == section)
}

/// Parsed defaults, in the order of [`SETTINGS`]: a config load needs all of
/// them, and parsing each default text again on every load is wasted work.
fn parsed_defaults() -> &'static [Result<Option<SettingValue>, String>] {
    static PARSED: OnceLock<Vec<Result<Option<SettingValue>, String>>> = OnceLock::new();
    PARSED.get_or_init(|| SETTINGS.iter().map(Setting::parse_default).collect())
}

impl Setting {
    /// The default, parsed as if it had been written in the file; `Ok(None)`
    /// when the setting has no default of its own.
    pub fn default_value(&self) -> Result<Option<SettingValue>, String> {
        let index = SETTINGS
            .iter()
            .position(|setting| setting.section == self.section && setting.name == self.name);
        match index.and_then(|index| parsed_defaults().get(index)) {
            Some(parsed) => parsed.clone(),
            None => self.parse_default(),
        }
    }

    fn parse_default(&self) -> Result<Option<SettingValue>, String> {
        if self.default.is_empty() {
            return Ok(None);
        }
        let table = format!("value = {}", self.default)
            .parse::<toml::Table>()
            .map_err(|error| format!("default {:?}: {}", self.default, error.message()))?;
        let value = table
            .get("value")
            .ok_or_else(|| format!("default {:?} is not a value", self.default))?;
        parse_value(&self.kind, value).map(Some)
    }

    /// What `SHOW CONFIG` calls this setting: bare for `[pooler]`, prefixed
    /// with the section for the others so that e.g. `metrics.listen` is clear.
    pub fn display_name(&self) -> String {
        match self.section {
            Section::Pooler => self.name.to_string(),
            Section::Tls => format!("tls.{}", self.name),
            Section::Metrics => format!("metrics.{}", self.name),
            Section::Database => format!("databases.NAME.{}", self.name),
            Section::AuthQuery => format!("databases.NAME.auth_query.{}", self.name),
            Section::User => format!("users.NAME.{}", self.name),
        }
    }
}

/// Checks a TOML value against `kind`. The error is a message without the key:
/// the caller knows where the value came from.
pub fn parse_value(kind: &Kind, value: &toml::Value) -> Result<SettingValue, String> {
    let wrong_type = || format!("expected {}, found {}", kind.describe(), type_name(value));
    match (kind, value) {
        (Kind::Int { min, max }, toml::Value::Integer(n)) => {
            if (*min..=*max).contains(n) {
                Ok(SettingValue::Int(*n))
            } else {
                Err(format!("{n} is out of range: expected {}", kind.describe()))
            }
        }
        (Kind::Port, toml::Value::Integer(n)) => {
            if (1..=65535).contains(n) {
                Ok(SettingValue::Int(*n))
            } else {
                Err(format!("{n} is not a port: expected {}", kind.describe()))
            }
        }
        (Kind::Str, toml::Value::String(s)) => Ok(SettingValue::Str(checked_string(s)?)),
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(SettingValue::Bool(*b)),
        (Kind::Duration { allow_zero }, toml::Value::String(s)) => {
            checked_duration(parse_duration(s)?, *allow_zero)
        }
        (Kind::Duration { allow_zero }, toml::Value::Integer(seconds)) => {
            checked_duration(duration_from_seconds(*seconds)?, *allow_zero)
        }
        (Kind::StrList, toml::Value::String(s)) => {
            let item = checked_string(s)?;
            Ok(SettingValue::List(if item.is_empty() {
                Vec::new()
            } else {
                vec![item]
            }))
        }
        (Kind::StrList, toml::Value::Array(items)) => {
            let mut list = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                match item {
                    toml::Value::String(s) if s.is_empty() => {
                        return Err(format!("entry {} of the list is empty", index + 1))
                    }
                    toml::Value::String(s) => list.push(checked_string(s)?),
                    other => {
                        return Err(format!(
                            "entry {} of the list is {}; expected a string",
                            index + 1,
                            type_name(other)
                        ))
                    }
                }
            }
            Ok(SettingValue::List(list))
        }
        (Kind::Enum(names), toml::Value::String(s)) => {
            if names.contains(&s.as_str()) {
                Ok(SettingValue::Str(s.clone()))
            } else {
                Err(format!("{s:?} is not {}", kind.describe()))
            }
        }
        (Kind::ListenSocket, toml::Value::String(s)) => {
            if !s.is_empty() {
                check_listen_socket(s)?;
            }
            Ok(SettingValue::Str(s.clone()))
        }
        (Kind::Table, toml::Value::Table(table)) => Ok(SettingValue::Table(table.clone())),
        _ => Err(wrong_type()),
    }
}

fn checked_string(s: &str) -> Result<String, String> {
    // A NUL cannot travel in a PostgreSQL startup packet or a file path.
    if s.contains('\0') {
        return Err("contains a NUL character".to_string());
    }
    Ok(s.to_string())
}

fn checked_duration(duration: Duration, allow_zero: bool) -> Result<SettingValue, String> {
    if duration.is_zero() && !allow_zero {
        return Err("must be more than 0".to_string());
    }
    Ok(SettingValue::Duration(duration))
}

fn check_listen_socket(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || format!("{s:?} is not \"host:port\" (write IPv6 as \"[::1]:9127\")");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    match port.parse::<u16>() {
        Ok(port) if port > 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

pub fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

pub fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("{name:?}")).collect();
    quoted.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_default_parses_with_its_own_kind() {
        for setting in SETTINGS {
            let parsed = setting.parse_default();
            assert!(
                parsed.is_ok(),
                "{} default {:?}: {:?}",
                setting.display_name(),
                setting.default,
                parsed
            );
        }
    }

    #[test]
    fn names_are_unique_within_a_section() {
        let mut seen = HashSet::new();
        for setting in SETTINGS {
            assert!(
                seen.insert((setting.section, setting.name)),
                "{} declared twice",
                setting.display_name()
            );
            assert!(!setting.doc.is_empty(), "{} has no doc", setting.name);
        }
    }

    #[test]
    fn only_sockets_and_threads_need_a_restart() {
        let restart: Vec<String> = SETTINGS
            .iter()
            .filter(|setting| !setting.reload)
            .map(Setting::display_name)
            .collect();
        assert_eq!(
            restart,
            [
                "listen_addr",
                "listen_port",
                "unix_socket_dir",
                "workers",
                "metrics.listen"
            ]
        );
    }

    #[test]
    fn defaults_are_those_of_the_config_contract() {
        let default_of = |section, name| {
            find(section, name)
                .and_then(|setting| setting.default_value().ok().flatten())
                .map(|value| value.to_string())
        };
        for (name, expected) in [
            ("listen_addr", "127.0.0.1"),
            ("listen_port", "6432"),
            ("unix_socket_dir", "/tmp"),
            ("workers", "0"),
            ("auth_type", "scram-sha-256"),
            ("pool_mode", "transaction"),
            ("default_pool_size", "20"),
            ("min_pool_size", "0"),
            ("max_client_conn", "1000"),
            ("max_prepared_statements", "200"),
            ("server_reset_query", "DISCARD ALL"),
            ("server_connect_timeout", "5s"),
            ("query_wait_timeout", "2m"),
            ("client_idle_timeout", "0"),
            ("idle_transaction_timeout", "0"),
            ("server_idle_timeout", "10m"),
            ("server_lifetime", "1h"),
            ("dynamic_pool_idle_timeout", "10m"),
            ("log_level", "info"),
        ] {
            assert_eq!(
                default_of(Pooler, name).as_deref(),
                Some(expected),
                "{name}"
            );
        }
        assert_eq!(
            default_of(Tls, "client_tls_mode").as_deref(),
            Some("disable")
        );
        assert_eq!(
            default_of(Tls, "server_tls_mode").as_deref(),
            Some("disable")
        );
        assert_eq!(default_of(Metrics, "listen").as_deref(), Some(""));
        assert_eq!(default_of(Database, "port").as_deref(), Some("5432"));
        assert_eq!(default_of(Database, "pool_size"), None);
    }

    #[test]
    fn values_are_checked_against_their_kind() {
        let port = Kind::Port;
        assert!(parse_value(&port, &toml::Value::Integer(0)).is_err());
        assert!(parse_value(&port, &toml::Value::Integer(65536)).is_err());
        assert!(parse_value(&port, &toml::Value::String("5432".into())).is_err());
        let list = Kind::StrList;
        assert_eq!(
            parse_value(&list, &toml::Value::String(String::new())),
            Ok(SettingValue::List(vec![]))
        );
        assert!(parse_value(&list, &toml::Value::Array(vec![toml::Value::Integer(1)])).is_err());
        let socket = Kind::ListenSocket;
        for good in ["127.0.0.1:9127", "[::1]:9127", "localhost:9127", ""] {
            assert!(
                parse_value(&socket, &toml::Value::String(good.into())).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "127.0.0.1",
            ":9127",
            "host:0",
            "host:99999",
            "::1:9127",
            "a b:1",
        ] {
            assert!(
                parse_value(&socket, &toml::Value::String(bad.into())).is_err(),
                "{bad}"
            );
        }
        let timeout = DURATION_ABOVE_ZERO;
        assert!(parse_value(&timeout, &toml::Value::Integer(0)).is_err());
        assert!(parse_value(&timeout, &toml::Value::Float(1.5)).is_err());
        assert!(parse_value(&Kind::Str, &toml::Value::String("a\0b".into())).is_err());
    }
}
