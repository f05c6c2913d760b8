//! From TOML text to a validated [`Config`], in three passes: toml's own syntax
//! check; every key against the settings table (collecting all errors and
//! reporting the one earliest in the file); then checks across keys.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::locate::KeyLines;
use super::password::PasswordKind;
use super::settings::{self, parse_value, type_name, Section, SettingValue};
use super::{
    AddrLimits, AuthQueryConfig, AuthType, ClientLimits, ClientTlsMode, Config, ConfigError,
    DatabaseConfig, LimitOverrides, MetricsConfig, PoolMode, PoolerConfig, ServerTlsMode,
    TlsConfig, UserConfig,
};
use crate::guard::StatementRules;
use crate::net::cidr::Cidr;

/// The database name clients use for the admin console.
pub const ADMIN_DATABASE: &str = "pooler";

pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let document = text
        .parse::<toml::Table>()
        .map_err(|error| syntax_error(&error, text, file))?;
    let mut reader = Reader {
        file,
        lines: KeyLines::scan(text),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let sections = reader.read_document(&document);
    reader.check_trusted_addrs(&sections.pooler);
    reader.earliest_error()?;
    let config = build(file, &sections).map_err(|message| ConfigError {
        file: file.to_path_buf(),
        line: None,
        key: None,
        message: format!("internal error: {message}"),
    })?;
    reader.check_across_keys(&config);
    reader.earliest_error()?;
    let mut config = config;
    reader
        .warnings
        .sort_by_key(|w| w.line.unwrap_or(usize::MAX));
    config.warnings = reader.warnings;
    Ok(config)
}

fn syntax_error(error: &toml::de::Error, text: &str, file: &Path) -> ConfigError {
    let position = error.span().map(|span| {
        let before = text.as_bytes().get(..span.start).unwrap_or(text.as_bytes());
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |newline| newline + 1);
        let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
            .chars()
            .count()
            + 1;
        (line, column)
    });
    // toml's messages may span lines ("invalid inline table\nexpected `}`").
    let message: Vec<&str> = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let message = message.join("; ");
    ConfigError {
        file: file.to_path_buf(),
        line: position.map(|(line, _)| line),
        key: None,
        message: match position {
            Some((_, column)) => format!("invalid TOML at column {column}: {message}"),
            None => format!("invalid TOML: {message}"),
        },
    }
}

/// The keys given in one table, checked against the settings of its section.
struct Values {
    section: Section,
    given: BTreeMap<&'static str, SettingValue>,
}

impl Values {
    fn new(section: Section) -> Values {
        Values {
            section,
            given: BTreeMap::new(),
        }
    }

    /// The given value, else the table's default, else `None`.
    fn value(&self, name: &str) -> Result<Option<SettingValue>, String> {
        if let Some(value) = self.given.get(name) {
            return Ok(Some(value.clone()));
        }
        settings::find(self.section, name)
            .ok_or_else(|| format!("{} {name} is not declared", self.section.header()))?
            .default_value()
    }

    fn optional<T: FromSetting>(&self, name: &str) -> Result<Option<T>, String> {
        match self.value(name)? {
            None => Ok(None),
            Some(value) => T::from_setting(value)
                .map(Some)
                .ok_or_else(|| format!("{} {name} does not fit its field", self.section.header())),
        }
    }

    fn required<T: FromSetting>(&self, name: &str) -> Result<T, String> {
        self.optional(name)?
            .ok_or_else(|| format!("{} {name} has no default", self.section.header()))
    }
}

trait FromSetting: Sized {
    fn from_setting(value: SettingValue) -> Option<Self>;
}

macro_rules! from_int_setting {
    ($($int:ty),+) => {$(
        impl FromSetting for $int {
            fn from_setting(value: SettingValue) -> Option<Self> {
                match value {
                    SettingValue::Int(n) => <$int>::try_from(n).ok(),
                    _ => None,
                }
            }
        }
    )+};
}
from_int_setting!(u16, u32, u64, usize);

impl FromSetting for bool {
    fn from_setting(value: SettingValue) -> Option<Self> {
        match value {
            SettingValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}

macro_rules! from_named_setting {
    ($($named:ty),+) => {$(
        impl FromSetting for $named {
            fn from_setting(value: SettingValue) -> Option<Self> {
                match value {
                    SettingValue::Str(name) => <$named>::from_name(&name),
                    _ => None,
                }
            }
        }
    )+};
}
from_named_setting!(PoolMode, AuthType, ClientTlsMode, ServerTlsMode);

impl FromSetting for String {
    fn from_setting(value: SettingValue) -> Option<Self> {
        match value {
            SettingValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl FromSetting for Duration {
    fn from_setting(value: SettingValue) -> Option<Self> {
        match value {
            SettingValue::Duration(d) => Some(d),
            _ => None,
        }
    }
}

impl FromSetting for Vec<String> {
    fn from_setting(value: SettingValue) -> Option<Self> {
        match value {
            SettingValue::List(list) => Some(list),
            _ => None,
        }
    }
}

/// What the file says, section by section, before it becomes a `Config`.
struct Sections {
    pooler: Values,
    tls: Values,
    metrics: Values,
    databases: Vec<(String, Values)>,
    /// `[databases.NAME.auth_query]` by database name.
    auth_queries: BTreeMap<String, Values>,
    users: Vec<(String, Values)>,
}

struct Reader<'a> {
    file: &'a Path,
    lines: KeyLines,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Reader<'_> {
    fn warn(&mut self, path: &[&str], message: impl Into<String>) {
        self.warnings.push(ConfigError {
            file: self.file.to_path_buf(),
            line: self.lines.line_of(path),
            key: (!path.is_empty()).then(|| dotted_key(path)),
            message: message.into(),
        });
    }

    fn report(&mut self, path: &[&str], message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line: self.lines.line_of(path),
            key: (!path.is_empty()).then(|| dotted_key(path)),
            message: message.into(),
        });
    }

    /// Reports the error that comes first in the file, as a person fixing the
    /// file top to bottom would want.
    fn earliest_error(&mut self) -> Result<(), ConfigError> {
        self.errors
            .sort_by_key(|error| error.line.unwrap_or(usize::MAX));
        match self.errors.drain(..).next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn read_document(&mut self, document: &toml::Table) -> Sections {
        let mut sections = Sections {
            pooler: Values::new(Section::Pooler),
            tls: Values::new(Section::Tls),
            metrics: Values::new(Section::Metrics),
            databases: Vec::new(),
            auth_queries: BTreeMap::new(),
            users: Vec::new(),
        };
        for (name, value) in document {
            let section = match name.as_str() {
                "pooler" => Some(Section::Pooler),
                "tls" => Some(Section::Tls),
                "metrics" => Some(Section::Metrics),
                "databases" => {
                    sections.databases = self.read_named(Section::Database, name, value);
                    sections.auth_queries = self.read_auth_queries(name, &sections.databases);
                    continue;
                }
                "users" => {
                    sections.users = self.read_named(Section::User, name, value);
                    continue;
                }
                _ => None,
            };
            match (section, value) {
                (Some(section), toml::Value::Table(table)) => {
                    let values = self.read_table(section, &[name], table);
                    match section {
                        Section::Tls => sections.tls = values,
                        Section::Metrics => sections.metrics = values,
                        _ => sections.pooler = values,
                    }
                }
                (Some(_), other) => self.report(
                    &[name],
                    format!("expected a table [{name}], found {}", type_name(other)),
                ),
                (None, toml::Value::Table(_)) => self.report(
                    &[name],
                    "unknown section; expected [pooler], [tls], [metrics], [databases.NAME] or [users.NAME]",
                ),
                (None, _) if settings::find(Section::Pooler, name).is_some() => self.report(
                    &[name],
                    "key outside of any section; move it under [pooler]",
                ),
                (None, _) => self.report(&[name], "unknown key outside of any section"),
            }
        }
        sections
    }

    /// `[databases.NAME]` or `[users.NAME]`: a table of tables.
    fn read_named(
        &mut self,
        section: Section,
        group: &str,
        value: &toml::Value,
    ) -> Vec<(String, Values)> {
        let toml::Value::Table(entries) = value else {
            self.report(
                &[group],
                format!(
                    "expected tables {}, found {}",
                    section.header(),
                    type_name(value)
                ),
            );
            return Vec::new();
        };
        let mut named = Vec::new();
        for (name, entry) in entries {
            let path = [group, name.as_str()];
            if name.is_empty() || name.contains('\0') {
                self.report(&path, "names must be non-empty and without NUL characters");
                continue;
            }
            if section == Section::Database && name == ADMIN_DATABASE {
                self.report(
                    &path,
                    format!(
                        "\"{ADMIN_DATABASE}\" is the admin console's database; choose another name"
                    ),
                );
                continue;
            }
            match entry {
                toml::Value::Table(table) => {
                    let values = self.read_table(section, &path, table);
                    named.push((name.clone(), values));
                }
                other => self.report(
                    &path,
                    format!(
                        "expected a table {}, found {}",
                        section.header(),
                        type_name(other)
                    ),
                ),
            }
        }
        named
    }

    /// The `auth_query` sub-tables of `[databases.NAME]`, checked against
    /// their own section's settings.
    fn read_auth_queries(
        &mut self,
        group: &str,
        databases: &[(String, Values)],
    ) -> BTreeMap<String, Values> {
        let mut auth_queries = BTreeMap::new();
        for (name, values) in databases {
            if let Some(SettingValue::Table(table)) = values.given.get("auth_query") {
                let path = [group, name.as_str(), "auth_query"];
                let auth_query = self.read_table(Section::AuthQuery, &path, table);
                auth_queries.insert(name.clone(), auth_query);
            }
        }
        auth_queries
    }

    fn read_table(&mut self, section: Section, path: &[&str], table: &toml::Table) -> Values {
        let mut values = Values::new(section);
        for (key, value) in table {
            let key_path = [path, &[key.as_str()]].concat();
            let Some(setting) = settings::find(section, key) else {
                // A warning, as PgBouncer gives: a key from a newer
                // version, or a typo the message names, should not stop a
                // pooler that is otherwise configured.
                self.warn(&key_path, unknown_key_message(section, key));
                continue;
            };
            match parse_value(&setting.kind, value) {
                Ok(parsed) => {
                    values.given.insert(setting.name, parsed);
                }
                Err(message) => self.report(&key_path, message),
            }
        }
        values
    }

    fn check_across_keys(&mut self, config: &Config) {
        self.check_listeners(&config.pooler);
        self.check_pool_sizes(config);
        self.check_auth(config);
        self.check_auth_queries(config);
        self.check_tls(&config.tls);
        self.check_guardrails(config);
    }

    /// Before `build`, which can only drop an entry it cannot parse.
    fn check_trusted_addrs(&mut self, pooler: &Values) {
        let Some(SettingValue::List(entries)) = pooler.given.get("trusted_addrs") else {
            return;
        };
        for entry in entries.clone() {
            if let Err(message) = Cidr::parse(&entry) {
                self.report(&["pooler", "trusted_addrs"], message);
            }
        }
    }

    /// Each list where it is written: a database inheriting `[pooler]`'s lists adds
    /// nothing to check.
    fn check_guardrails(&mut self, config: &Config) {
        let p = &config.pooler;
        let mut lists: Vec<(Vec<String>, &[String], &[String])> = vec![(
            vec!["pooler".to_string()],
            &p.deny_statements,
            &p.allow_statements,
        )];
        for d in config.databases.values() {
            if d.deny_statements.is_none() && d.allow_statements.is_none() {
                continue;
            }
            let (deny, allow) = config.statement_lists(d);
            lists.push((vec!["databases".to_string(), d.name.clone()], deny, allow));
        }
        let mut errors = Vec::new();
        for (mut key, deny, allow) in lists {
            if let Err(e) = StatementRules::new(deny, allow) {
                key.push(e.list.config_name().to_string());
                let message = format!("entry {} {:?}: {}", e.index + 1, e.entry, e.reason);
                errors.push((key, message));
            }
        }
        for (key, message) in errors {
            let key: Vec<&str> = key.iter().map(String::as_str).collect();
            self.report(&key, message);
        }
    }

    fn check_listeners(&mut self, pooler: &PoolerConfig) {
        for address in &pooler.listen_addr {
            if !is_listen_address(address) {
                self.report(
                    &["pooler", "listen_addr"],
                    format!("{address:?} is not an IP address, a host name or \"*\""),
                );
            }
        }
        if pooler.listen_addr.is_empty() && pooler.unix_socket_dir.is_empty() {
            self.report(
                &["pooler", "listen_addr"],
                "no listen_addr and no unix_socket_dir: nothing to listen on",
            );
        }
    }

    fn check_pool_sizes(&mut self, config: &Config) {
        let pooler = &config.pooler;
        if pooler.min_pool_size > pooler.default_pool_size {
            self.report(
                &["pooler", "min_pool_size"],
                format!(
                    "min_pool_size = {} is above default_pool_size = {}",
                    pooler.min_pool_size, pooler.default_pool_size
                ),
            );
        }
        for database in config.databases.values() {
            let pool_size = database.pool_size.unwrap_or(pooler.default_pool_size);
            let min_pool_size = database.min_pool_size.unwrap_or(pooler.min_pool_size);
            if min_pool_size <= pool_size {
                continue;
            }
            let (key, message) = if database.min_pool_size.is_some() {
                (
                    "min_pool_size",
                    format!("min_pool_size = {min_pool_size} is above the pool size {pool_size}"),
                )
            } else {
                (
                    "pool_size",
                    format!(
                        "pool_size = {pool_size} is below [pooler] min_pool_size = {min_pool_size}"
                    ),
                )
            };
            self.report(&["databases", &database.name, key], message);
        }
    }

    fn check_auth(&mut self, config: &Config) {
        let auth_type = config.pooler.auth_type;
        if auth_type == AuthType::Hba && config.pooler.hba_file.is_empty() {
            self.report(
                &["pooler", "auth_type"],
                "auth_type = \"hba\" needs hba_file",
            );
        }
        let any_auth_query = config
            .databases
            .values()
            .any(|database| database.auth_query.is_some());
        for user in config.users.values() {
            let path = ["users", user.name.as_str(), "password"];
            match PasswordKind::of(&user.password) {
                Err(message) => self.report(&path, message),
                Ok(PasswordKind::Empty)
                    if !any_auth_query
                        && matches!(
                            auth_type,
                            AuthType::ScramSha256 | AuthType::Md5 | AuthType::Plain
                        ) =>
                {
                    self.report(
                        &path,
                        format!("no password, so this user cannot log in with auth_type = \"{auth_type}\""),
                    );
                }
                Ok(PasswordKind::Md5) if auth_type == AuthType::ScramSha256 => self.report(
                    &path,
                    "an md5 hash cannot check a SCRAM login; store the SCRAM secret or the plain password",
                ),
                Ok(_) => {}
            }
        }
        for database in config.databases.values() {
            if database.host.is_empty() {
                self.report(&["databases", &database.name, "host"], "must not be empty");
            }
            let Some(password) = &database.password else {
                continue;
            };
            let path = ["databases", database.name.as_str(), "password"];
            if database.user.is_none() {
                self.report(&path, "password is for `user`, which is not set");
            } else if let Err(message) = PasswordKind::of(password) {
                self.report(&path, message);
            }
        }
    }

    fn check_auth_queries(&mut self, config: &Config) {
        for database in config.databases.values() {
            if let Some(auth_query) = &database.auth_query {
                self.check_auth_query(database, auth_query);
            }
        }
    }

    fn check_auth_query(&mut self, database: &DatabaseConfig, auth_query: &AuthQueryConfig) {
        let name = database.name.as_str();
        let path = |key| ["databases", name, "auth_query", key];
        if auth_query.user.is_empty() {
            self.report(
                &path("user"),
                "required: the PostgreSQL user that runs the query",
            );
        }
        if let Err(message) = check_query_parameters(&auth_query.query) {
            self.report(&path("query"), message);
        }
        match PasswordKind::of(&auth_query.password) {
            Err(message) => self.report(&path("password"), message),
            Ok(kind @ (PasswordKind::ScramSha256 | PasswordKind::Md5)) => self.report(
                &path("password"),
                format!(
                    "{} cannot log in the query's user; write the plain password",
                    if kind == PasswordKind::Md5 {
                        "an md5 hash"
                    } else {
                        "a SCRAM secret"
                    }
                ),
            ),
            Ok(_) => {}
        }
        match (&auth_query.server_user, &auth_query.server_password) {
            (Some(_), None) => self.report(
                &path("server_user"),
                "server_user needs server_password; set both, or neither for one pool per user",
            ),
            (None, Some(_)) => self.report(
                &path("server_password"),
                "server_password is for server_user, which is not set",
            ),
            (Some(_), Some(password)) => {
                if let Err(message) = PasswordKind::of(password) {
                    self.report(&path("server_password"), message);
                }
            }
            (None, None) => {}
        }
        if let (Some(forced), Some(_)) = (&database.user, &auth_query.server_user) {
            self.report(
                &path("server_user"),
                format!(
                    "databases.{name}.user = {forced:?} already makes every client share one pool; set only one of them"
                ),
            );
        }
    }

    fn check_tls(&mut self, tls: &TlsConfig) {
        let mode_path = ["tls", "client_tls_mode"];
        if tls.client_tls_mode != ClientTlsMode::Disable {
            for (name, file) in [
                ("client_tls_cert_file", &tls.client_tls_cert_file),
                ("client_tls_key_file", &tls.client_tls_key_file),
            ] {
                if file.is_empty() {
                    self.report(
                        &mode_path,
                        format!("client_tls_mode = \"{}\" needs {name}", tls.client_tls_mode),
                    );
                }
            }
        }
        if matches!(
            tls.client_tls_mode,
            ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull
        ) && tls.client_tls_ca_file.is_empty()
        {
            self.report(
                &mode_path,
                format!(
                    "client_tls_mode = \"{}\" needs client_tls_ca_file",
                    tls.client_tls_mode
                ),
            );
        }
        if matches!(
            tls.server_tls_mode,
            ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull
        ) && tls.server_tls_ca_file.is_empty()
        {
            self.report(
                &["tls", "server_tls_mode"],
                format!(
                    "server_tls_mode = \"{}\" needs server_tls_ca_file",
                    tls.server_tls_mode
                ),
            );
        }
        if tls.server_tls_cert_file.is_empty() != tls.server_tls_key_file.is_empty() {
            self.report(
                &["tls", "server_tls_cert_file"],
                "server_tls_cert_file and server_tls_key_file go together".to_string(),
            );
        }
    }
}

fn build(file: &Path, sections: &Sections) -> Result<Config, String> {
    let p = &sections.pooler;
    let configured_workers: usize = p.required("workers")?;
    let workers = if configured_workers == 0 {
        std::thread::available_parallelism().map_or(1, |cores| cores.get())
    } else {
        configured_workers
    };
    let pooler = PoolerConfig {
        listen_addr: p.required("listen_addr")?,
        listen_port: p.required("listen_port")?,
        unix_socket_dir: p.required("unix_socket_dir")?,
        workers,
        auth_type: p.required("auth_type")?,
        hba_file: p.required("hba_file")?,
        admin_users: p.required("admin_users")?,
        stats_users: p.required("stats_users")?,
        admin_aliases: p.required("admin_aliases")?,
        pool_mode: p.required("pool_mode")?,
        default_pool_size: p.required("default_pool_size")?,
        min_pool_size: p.required("min_pool_size")?,
        max_client_conn: p.required("max_client_conn")?,
        max_db_connections: p.required("max_db_connections")?,
        max_user_connections: p.required("max_user_connections")?,
        max_prepared_statements: p.required("max_prepared_statements")?,
        server_reset_query: p.required("server_reset_query")?,
        server_connect_timeout: p.required("server_connect_timeout")?,
        query_wait_timeout: p.required("query_wait_timeout")?,
        client_login_timeout: p.required("client_login_timeout")?,
        client_write_timeout: p.required("client_write_timeout")?,
        client_idle_timeout: p.required("client_idle_timeout")?,
        idle_transaction_timeout: p.required("idle_transaction_timeout")?,
        server_idle_timeout: p.required("server_idle_timeout")?,
        server_lifetime: p.required("server_lifetime")?,
        dynamic_pool_idle_timeout: p.required("dynamic_pool_idle_timeout")?,
        log_level: p.required("log_level")?,
        limits: ClientLimits {
            query_timeout: p.required("query_timeout")?,
            max_result_rows: p.required("max_result_rows")?,
            max_result_bytes: p.required("max_result_bytes")?,
        },
        deny_statements: p.required("deny_statements")?,
        allow_statements: p.required("allow_statements")?,
        read_only: p.required("read_only")?,
        addr_limits: AddrLimits {
            max_client_conn_per_addr: p.required("max_client_conn_per_addr")?,
            connect_rate_per_addr: p.required("connect_rate_per_addr")?,
            connect_burst_per_addr: p.required("connect_burst_per_addr")?,
            // Entries were checked by check_guardrails, with their line; one that still
            // fails to parse here is dropped rather than trusted.
            trusted_addrs: p
                .required::<Vec<String>>("trusted_addrs")?
                .iter()
                .filter_map(|text| Cidr::parse(text).ok())
                .collect(),
        },
    };
    let t = &sections.tls;
    let tls = TlsConfig {
        client_tls_mode: t.required("client_tls_mode")?,
        client_tls_cert_file: t.required("client_tls_cert_file")?,
        client_tls_key_file: t.required("client_tls_key_file")?,
        client_tls_ca_file: t.required("client_tls_ca_file")?,
        server_tls_mode: t.required("server_tls_mode")?,
        server_tls_ca_file: t.required("server_tls_ca_file")?,
        server_tls_cert_file: t.required("server_tls_cert_file")?,
        server_tls_key_file: t.required("server_tls_key_file")?,
    };
    let metrics = MetricsConfig {
        listen: sections.metrics.required("listen")?,
    };
    let mut databases = BTreeMap::new();
    for (name, d) in &sections.databases {
        let dbname: String = d.optional("dbname")?.unwrap_or_else(|| name.clone());
        let auth_query = sections
            .auth_queries
            .get(name)
            .map(|a| build_auth_query(a, &dbname))
            .transpose()?;
        let database = DatabaseConfig {
            name: name.clone(),
            host: d.required("host")?,
            port: d.required("port")?,
            dbname,
            user: d.optional("user")?,
            password: d.optional("password")?,
            pool_mode: d.optional("pool_mode")?,
            pool_size: d.optional("pool_size")?,
            min_pool_size: d.optional("min_pool_size")?,
            max_db_connections: d.optional("max_db_connections")?,
            overrides: limit_overrides(d)?,
            deny_statements: d.optional("deny_statements")?,
            allow_statements: d.optional("allow_statements")?,
            auth_query,
        };
        databases.insert(name.clone(), database);
    }
    let mut users = BTreeMap::new();
    for (name, u) in &sections.users {
        let user = UserConfig {
            name: name.clone(),
            password: u.required("password")?,
            pool_mode: u.optional("pool_mode")?,
            pool_size: u.optional("pool_size")?,
            max_user_connections: u.optional("max_user_connections")?,
            overrides: limit_overrides(u)?,
        };
        users.insert(name.clone(), user);
    }
    Ok(Config {
        path: file.to_path_buf(),
        pooler,
        tls,
        metrics,
        databases,
        users,
        warnings: Vec::new(),
    })
}

/// A database's or user's overrides of the per-client guardrails (same keys in both).
fn limit_overrides(v: &Values) -> Result<LimitOverrides, String> {
    Ok(LimitOverrides {
        query_timeout: v.optional("query_timeout")?,
        max_result_rows: v.optional("max_result_rows")?,
        max_result_bytes: v.optional("max_result_bytes")?,
        read_only: v.optional("read_only")?,
    })
}

fn build_auth_query(a: &Values, database_dbname: &str) -> Result<AuthQueryConfig, String> {
    // "" is how the file says "unset" for these strings; see the settings table.
    let set = |text: String| (!text.is_empty()).then_some(text);
    Ok(AuthQueryConfig {
        query: a.required("query")?,
        // Missing is reported by check_auth_query, with its line.
        user: a.optional("user")?.unwrap_or_default(),
        password: a.required("password")?,
        dbname: set(a.required("dbname")?).unwrap_or_else(|| database_dbname.to_string()),
        pool_size: a.required("pool_size")?,
        server_user: set(a.required("server_user")?),
        server_password: set(a.required("server_password")?),
        default_pool_size: a.required("default_pool_size")?,
        cache_ttl: a.required("cache_ttl")?,
        cache_failure_ttl: a.required("cache_failure_ttl")?,
        min_interval: a.required("min_interval")?,
        max_dynamic_pools: a.required("max_dynamic_pools")?,
    })
}

/// The executor binds exactly one parameter, the client's user name, so the
/// query must use `$1` and no other `$N`; anything else would fail on every
/// login instead of once, here.
fn check_query_parameters(query: &str) -> Result<(), String> {
    let mut uses_first = false;
    for after_dollar in query.split('$').skip(1) {
        // `$$` and `$tag$` quotes have no digits and are not parameters.
        let number: String = after_dollar
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        match number.parse::<u64>() {
            Err(_) if number.is_empty() => {}
            Ok(1) => uses_first = true,
            _ => {
                return Err(format!(
                    "uses ${number}, but the query gets one parameter: the user name as $1"
                ))
            }
        }
    }
    if uses_first {
        Ok(())
    } else {
        Err("does not use $1, the user name to look up; the user name is never pasted into the query".to_string())
    }
}

/// `*`, an IP address, or a host name (resolved when the listener starts).
fn is_listen_address(address: &str) -> bool {
    address == "*"
        || address.parse::<IpAddr>().is_ok()
        || (address.len() <= 253
            && address.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

fn unknown_key_message(section: Section, key: &str) -> String {
    let by_spelling = settings::in_section(section)
        .map(|setting| (edit_distance(key, setting.name), setting.name))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, name)| name);
    // "port" for listen_port, "reset_query" for server_reset_query.
    let by_part = || {
        settings::in_section(section)
            .map(|setting| setting.name)
            .find(|name| key.len() >= 4 && name.contains(key))
    };
    match by_spelling.or_else(by_part) {
        Some(name) => format!("unknown key in {}; did you mean {name}?", section.header()),
        None => {
            let names: Vec<&str> = settings::in_section(section)
                .map(|setting| setting.name)
                .collect();
            format!(
                "unknown key in {}; known keys: {}",
                section.header(),
                names.join(", ")
            )
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            let deletion = previous[j + 1] + 1;
            let insertion = current[j] + 1;
            current.push(substitution.min(deletion).min(insertion));
        }
        previous = current;
    }
    previous[b.len()]
}

/// `databases.app.port`, quoting parts that are not bare TOML keys:
/// `users."weird name".password`.
pub fn dotted_key(path: &[&str]) -> String {
    let parts: Vec<String> = path
        .iter()
        .map(|part| {
            let bare = !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if bare {
                part.to_string()
            } else {
                format!("{part:?}")
            }
        })
        .collect();
    parts.join(".")
}
