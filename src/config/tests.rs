use super::*;

const SCRAM_SECRET: &str = "SCRAM-SHA-256$4096:5Ksb4xvYr4OwrXdkWmk6Sg==$b9FETFy8NwaqbR/iIwqwk2u1VBH16yn5qozO1OFTQtU=:iY/S2q1WjvKMvcqk2+332skiuLfURvRNdSnlOBu+x1Q=";

/// DESIGN.md's config contract, with its `SCRAM-SHA-256$4096:...` placeholder
/// replaced by a well-formed secret (the placeholder itself is rejected).
fn design_example() -> String {
    r#"[pooler]
listen_addr = "127.0.0.1"        # or "*", or a list: ["127.0.0.1", "::1"]
listen_port = 6432
unix_socket_dir = "/tmp"         # "" = no unix socket
workers = 0                      # 0 = one per core
auth_type = "scram-sha-256"      # scram-sha-256 | md5 | plain | trust | hba
hba_file = ""                    # used when auth_type = "hba"
admin_users = []                 # may run every admin command
stats_users = []                 # may run SHOW commands
pool_mode = "transaction"        # session | transaction (default for databases)
default_pool_size = 20
min_pool_size = 0
max_client_conn = 1000
max_db_connections = 0           # 0 = no limit
max_user_connections = 0
max_prepared_statements = 200    # per server; 0 = no prepared statement tracking
server_reset_query = "DISCARD ALL"
server_connect_timeout = "5s"
query_wait_timeout = "120s"
client_idle_timeout = 0          # 0 = off
idle_transaction_timeout = 0
server_idle_timeout = "10m"
server_lifetime = "1h"
log_level = "info"

[tls]                            # its own issue
client_tls_mode = "disable"      # disable | allow | prefer | require | verify-ca | verify-full
client_tls_cert_file = ""
client_tls_key_file = ""
client_tls_ca_file = ""
server_tls_mode = "disable"      # disable | prefer | require | verify-ca | verify-full
server_tls_ca_file = ""

[metrics]                        # its own issue
listen = ""                      # e.g. "127.0.0.1:9127"; "" = off

[databases.app]                  # clients connect to database "app"
host = "127.0.0.1"
port = 5432
dbname = "app"                   # default: the section name
pool_mode = "transaction"        # overrides [pooler]
pool_size = 20
min_pool_size = 0
max_db_connections = 0

[databases.app.auth_query]       # its own issue
query = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin"
user = "pooler_auth"             # who runs the query
password = "secret"
dbname = ""                      # default: the database's dbname
pool_size = 2                    # executor connections
server_user = ""                 # set: all auth_query users share this user's pool
server_password = ""             # unset: passthrough, one pool per user
default_pool_size = 5            # per-user pools in passthrough mode
cache_ttl = "1h"
cache_failure_ttl = "30s"
min_interval = "1s"              # at most one refetch per user per interval

[users.alice]
password = "SCRAM-SHA-256$4096:..."   # or "md5<hex>", or a plain password
pool_mode = "session"                 # optional overrides
pool_size = 10
max_user_connections = 0
"#
    .replace("SCRAM-SHA-256$4096:...", SCRAM_SECRET)
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/pooler/pooler.conf"))
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("accepted:\n{text}\nas {config:?}"),
        Err(error) => error,
    }
}

#[track_caller]
fn assert_error(text: &str, line: usize, key: &str, message_part: &str) {
    let error = parse_err(text);
    assert_eq!(error.line, Some(line), "{error}");
    assert_eq!(error.key.as_deref(), Some(key), "{error}");
    assert!(error.message.contains(message_part), "{error}");
}

/// Parses `text`, which must be accepted with exactly one warning like this.
#[track_caller]
fn assert_warning(text: &str, line: usize, key: &str, message_part: &str) {
    let config = parse(text).unwrap_or_else(|error| panic!("refused:\n{text}\n{error}"));
    let [warning] = config.warnings.as_slice() else {
        panic!("expected one warning, got {:?}", config.warnings);
    };
    assert_eq!(warning.line, Some(line), "{warning}");
    assert_eq!(warning.key.as_deref(), Some(key), "{warning}");
    assert!(warning.message.contains(message_part), "{warning}");
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn design_example_parses() {
    let config = parse(&design_example()).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.path, Path::new("/etc/pooler/pooler.conf"));
    assert_eq!(config.pooler.listen_addr, ["127.0.0.1"]);
    assert_eq!(config.pooler.workers, cores());
    let app = &config.databases["app"];
    assert_eq!(app.name, "app");
    assert_eq!(app.dbname, "app");
    assert_eq!(app.pool_mode, Some(PoolMode::Transaction));
    assert_eq!(app.pool_size, Some(20));
    assert_eq!(app.user, None);
    let auth_query = app
        .auth_query
        .as_ref()
        .unwrap_or_else(|| panic!("no auth_query"));
    assert_eq!(
        auth_query,
        &AuthQueryConfig {
            query: DEFAULT_AUTH_QUERY.to_string(),
            user: "pooler_auth".to_string(),
            password: "secret".to_string(),
            dbname: "app".to_string(),
            pool_size: 2,
            server_user: None,
            server_password: None,
            default_pool_size: 5,
            cache_ttl: Duration::from_secs(3600),
            cache_failure_ttl: Duration::from_secs(30),
            min_interval: Duration::from_secs(1),
            max_dynamic_pools: 1000,
        }
    );
    let alice = &config.users["alice"];
    assert_eq!(alice.password, SCRAM_SECRET);
    assert_eq!(alice.password_kind(), PasswordKind::ScramSha256);
    assert_eq!(alice.pool_mode, Some(PoolMode::Session));
    assert_eq!(alice.pool_size, Some(10));
    assert_eq!(alice.max_user_connections, Some(0));
    // The example spells out every default, so it equals an empty file.
    let defaults = parse("").unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.pooler, defaults.pooler);
    assert_eq!(config.tls, defaults.tls);
    assert_eq!(config.metrics, defaults.metrics);
}

#[test]
fn the_design_placeholder_secret_is_rejected_where_it_stands() {
    let text = design_example().replace(SCRAM_SECRET, "SCRAM-SHA-256$4096:...");
    let line = text
        .lines()
        .position(|l| l.starts_with("password = \"SCRAM"))
        .map(|index| index + 1);
    let error = parse_err(&text);
    assert_eq!(error.line, line);
    assert_eq!(error.key.as_deref(), Some("users.alice.password"));
}

#[test]
fn an_empty_file_gives_the_contract_defaults() {
    let config = parse("").unwrap_or_else(|error| panic!("{error}"));
    let p = &config.pooler;
    assert_eq!(p.listen_addr, ["127.0.0.1"]);
    assert_eq!(p.listen_port, 6432);
    assert_eq!(p.unix_socket_dir, "/tmp");
    assert_eq!(p.workers, cores());
    assert!(p.workers >= 1);
    assert_eq!(p.auth_type, AuthType::ScramSha256);
    assert_eq!(p.hba_file, "");
    assert!(p.admin_users.is_empty() && p.stats_users.is_empty());
    assert_eq!(p.pool_mode, PoolMode::Transaction);
    assert_eq!(p.default_pool_size, 20);
    assert_eq!(p.min_pool_size, 0);
    assert_eq!(p.max_client_conn, 1000);
    assert_eq!(p.max_db_connections, 0);
    assert_eq!(p.max_user_connections, 0);
    assert_eq!(p.max_prepared_statements, 200);
    assert_eq!(p.server_reset_query, "DISCARD ALL");
    assert_eq!(p.server_connect_timeout, Duration::from_secs(5));
    assert_eq!(p.query_wait_timeout, Duration::from_secs(120));
    assert_eq!(p.client_idle_timeout, Duration::ZERO);
    assert_eq!(p.idle_transaction_timeout, Duration::ZERO);
    assert_eq!(p.server_idle_timeout, Duration::from_secs(600));
    assert_eq!(p.server_lifetime, Duration::from_secs(3600));
    assert_eq!(p.log_level, "info");
    assert_eq!(config.tls.client_tls_mode, ClientTlsMode::Disable);
    assert_eq!(config.tls.server_tls_mode, ServerTlsMode::Disable);
    assert_eq!(config.tls.client_tls_cert_file, "");
    assert_eq!(config.metrics.listen, "");
    assert!(config.databases.is_empty() && config.users.is_empty());
}

#[test]
fn database_defaults_and_value_shapes() {
    let config = parse(concat!(
        "[pooler]\n",
        "listen_addr = [\"127.0.0.1\", \"::1\", \"*\", \"db.example\"]\n",
        "workers = 3\n",
        "admin_users = \"root\"\n",
        "client_idle_timeout = 30\n",
        "server_lifetime = \"0\"\n",
        "query_wait_timeout = \"250ms\"\n",
        "[databases.main]\n",
        "[databases.sock]\n",
        "host = \"/var/run/postgresql\"\n",
        "user = \"app_owner\"\n",
        "password = \"md54a0a68b43b6cd5cf266fa02f196e2371\"\n",
        "[users.\"weird name\"]\n",
        "password = \"hunter2\"\n",
    ))
    .unwrap_or_else(|error| panic!("{error}"));
    let p = &config.pooler;
    assert_eq!(p.listen_addr, ["127.0.0.1", "::1", "*", "db.example"]);
    assert_eq!(p.workers, 3);
    assert_eq!(p.admin_users, ["root"]);
    assert_eq!(p.client_idle_timeout, Duration::from_secs(30));
    assert_eq!(p.server_lifetime, Duration::ZERO);
    assert_eq!(p.query_wait_timeout, Duration::from_millis(250));
    let main = &config.databases["main"];
    assert_eq!(
        (main.host.as_str(), main.port, main.dbname.as_str()),
        ("127.0.0.1", 5432, "main")
    );
    assert_eq!(
        (main.pool_mode, main.pool_size, main.auth_query.as_ref()),
        (None, None, None)
    );
    let sock = &config.databases["sock"];
    assert_eq!(sock.host, "/var/run/postgresql");
    assert_eq!(sock.user.as_deref(), Some("app_owner"));
    assert_eq!(
        config.users["weird name"].password_kind(),
        PasswordKind::Plain
    );
}

#[test]
fn an_empty_listen_addr_means_unix_socket_only() {
    let config = parse("[pooler]\nlisten_addr = \"\"\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(config.pooler.listen_addr.is_empty());
    assert_error(
        "[pooler]\nlisten_addr = []\nunix_socket_dir = \"\"\n",
        2,
        "pooler.listen_addr",
        "nothing to listen on",
    );
}

#[test]
fn a_bad_duration_names_its_line_and_key() {
    let text = "# pooler.conf\n[pooler]\nlisten_port = 6432\n\nworkers = 2\n\nserver_idle_timeout = \"10 minutes\"\nlog_level = \"info\"\n";
    assert_error(text, 7, "pooler.server_idle_timeout", "10 minutes");
    assert_error(
        "[pooler]\nserver_lifetime = -1\n",
        2,
        "pooler.server_lifetime",
        "negative",
    );
    assert_error(
        "[pooler]\nserver_lifetime = \"31d\"\n",
        2,
        "pooler.server_lifetime",
        "unit",
    );
    assert_error(
        "[pooler]\nserver_lifetime = \"721h\"\n",
        2,
        "pooler.server_lifetime",
        "30 days",
    );
    assert_error(
        "[pooler]\nserver_lifetime = 1.5\n",
        2,
        "pooler.server_lifetime",
        "float",
    );
    assert_error(
        "[pooler]\n\nserver_connect_timeout = 0\n",
        3,
        "pooler.server_connect_timeout",
        "more than 0",
    );
}

#[test]
fn unknown_sections_are_rejected_and_unknown_keys_warned_with_their_line() {
    assert_warning(
        "[pooler]\nlisten_prot = 1\n",
        2,
        "pooler.listen_prot",
        "did you mean listen_port",
    );
    assert_error(
        "[pooler]\n\n[poolr]\nx = 1\n",
        3,
        "poolr",
        "unknown section",
    );
    assert_error(
        "listen_port = 1\n",
        1,
        "listen_port",
        "move it under [pooler]",
    );
    assert_warning(
        "[tls]\nmode = 1\n",
        2,
        "tls.mode",
        "did you mean client_tls_mode",
    );
    assert_warning(
        "[tls]\nciphers = 1\n",
        2,
        "tls.ciphers",
        "known keys: client_tls_mode,",
    );
    assert_warning(
        "[pooler]\nport = 1\n",
        2,
        "pooler.port",
        "did you mean listen_port",
    );
    assert_warning(
        "[metrics]\n\nlisten = \"\"\nport = 1\n",
        4,
        "metrics.port",
        "unknown key",
    );
    assert_warning(
        "[databases.app]\nhost = \"h\"\nusername = \"u\"\n",
        3,
        "databases.app.username",
        "unknown key",
    );
    assert_warning(
        "[databases.app]\n[databases.app.auth_query]\nuser = \"u\"\nttl = \"1s\"\n",
        4,
        "databases.app.auth_query.ttl",
        "unknown key in [databases.NAME.auth_query]",
    );
    assert_warning(
        "[users.bob]\npassword = \"x\"\npool = 1\n",
        3,
        "users.bob.pool",
        "unknown key",
    );
    assert_warning(
        "[users.\"weird name\"]\npassword = \"x\"\nbad = 1\n",
        3,
        "users.\"weird name\".bad",
        "unknown key",
    );
}

#[test]
fn wrong_types_ranges_and_enum_values_name_their_line() {
    assert_error(
        "[pooler]\nlisten_port = \"6432\"\n",
        2,
        "pooler.listen_port",
        "found a string",
    );
    assert_error(
        "[pooler]\nlisten_port = 0\n",
        2,
        "pooler.listen_port",
        "not a port",
    );
    assert_error(
        "[pooler]\nlisten_port = 65536\n",
        2,
        "pooler.listen_port",
        "not a port",
    );
    assert_error(
        "[pooler]\ndefault_pool_size = 0\n",
        2,
        "pooler.default_pool_size",
        "out of range",
    );
    assert_error(
        "[pooler]\nworkers = -1\n",
        2,
        "pooler.workers",
        "out of range",
    );
    assert_error(
        "[pooler]\npool_mode = \"statement\"\n",
        2,
        "pooler.pool_mode",
        "\"session\" | \"transaction\"",
    );
    assert_error(
        "[pooler]\nauth_type = \"scram\"\n",
        2,
        "pooler.auth_type",
        "one of",
    );
    assert_error(
        "[pooler]\nlog_level = \"verbose\"\n",
        2,
        "pooler.log_level",
        "one of",
    );
    assert_error(
        "[pooler]\nadmin_users = [\"a\", 1]\n",
        2,
        "pooler.admin_users",
        "entry 2",
    );
    assert_error(
        "[pooler]\nlisten_addr = [\"bad address!\"]\n",
        2,
        "pooler.listen_addr",
        "not an IP",
    );
    assert_error(
        "[tls]\nserver_tls_mode = \"allow\"\n",
        2,
        "tls.server_tls_mode",
        "one of",
    );
    assert_error(
        "[metrics]\nlisten = \"9127\"\n",
        2,
        "metrics.listen",
        "host:port",
    );
    assert_error(
        "[databases.app]\nport = 70000\n",
        2,
        "databases.app.port",
        "not a port",
    );
    assert_error(
        "[databases.app]\npool_mode = 1\n",
        2,
        "databases.app.pool_mode",
        "found an integer",
    );
    assert_error(
        "[databases.app]\nhost = \"\"\n",
        2,
        "databases.app.host",
        "empty",
    );
    assert_error(
        "[databases.app]\n[databases.app.auth_query]\ncache_ttl = \"soon\"\n",
        3,
        "databases.app.auth_query.cache_ttl",
        "soon",
    );
    assert_error(
        "[users.bob]\npassword = 5\n",
        2,
        "users.bob.password",
        "found an integer",
    );
    assert_error(
        "[users.bob]\npassword = \"x\"\npool_size = 0\n",
        3,
        "users.bob.pool_size",
        "out of range",
    );
    assert_error(
        "[pooler]\nx = 1\n[users]\nbob = 1\n",
        4,
        "users.bob",
        "expected a table",
    );
    assert_error(
        "[users]\nbob = 1\n",
        2,
        "users.bob",
        "expected a table [users.NAME]",
    );
    assert_error("databases = 1\n", 1, "databases", "found an integer");
    assert_error("pooler = [1]\n", 1, "pooler", "expected a table [pooler]");
    assert_error(
        "[databases.pooler]\n",
        1,
        "databases.pooler",
        "admin console",
    );
    assert_error("[databases.\"\"]\n", 1, "databases.\"\"", "non-empty");
}

#[test]
fn of_several_errors_the_first_in_the_file_is_reported() {
    let text = "[pooler]\nworkers = \"x\"\nauth_type = \"nope\"\n";
    assert_error(text, 2, "pooler.workers", "found a string");
    let text = "[users.zed]\nbad = 1\n[databases.aaa]\nport = 0\n[databases.bbb]\nport = -1\n";
    assert_error(text, 4, "databases.aaa.port", "not a port");
}

#[test]
fn inline_tables_and_dotted_keys_point_at_their_line() {
    assert_error(
        "[databases]\napp = { host = \"h\", port = 0 }\n",
        2,
        "databases.app.port",
        "not a port",
    );
    assert_error(
        "[databases]\n\napp = { host = \"h\", auth_query = { query = 1 } }\n",
        3,
        "databases.app.auth_query.query",
        "found an integer",
    );
    assert_error(
        "[databases]\n\nother.port = 1\napp.pool_size = -3\n",
        4,
        "databases.app.pool_size",
        "out of range",
    );
    assert_warning(
        "users = { bob = { password = \"pw\", nope = 1 } }\n",
        1,
        "users.bob.nope",
        "unknown key",
    );
}

#[test]
fn toml_syntax_errors_carry_their_line() {
    let error = parse_err("[pooler]\nlisten_port = 6432\nworkers = = 2\n");
    assert_eq!(error.line, Some(3), "{error}");
    assert_eq!(error.key, None);
    assert!(
        error.message.starts_with("invalid TOML at column"),
        "{error}"
    );
    let error = parse_err("[pooler]\nworkers = 1\nworkers = 2\n");
    assert_eq!(error.line, Some(3), "{error}");
    assert!(error.message.contains("duplicate"), "{error}");
    let error = parse_err("[pooler\n");
    assert_eq!(error.line, Some(1), "{error}");
    let error = parse_err("[databases]\n\napp = { host = \"h\",\n port = 1 }\n");
    assert_eq!(error.line, Some(3), "{error}");
    assert!(!error.to_string().contains('\n'), "{error}");
}

#[test]
fn keys_that_depend_on_each_other_are_checked() {
    assert_error(
        "[pooler]\ndefault_pool_size = 5\nmin_pool_size = 6\n",
        3,
        "pooler.min_pool_size",
        "above default_pool_size",
    );
    assert_error(
        "[pooler]\nmin_pool_size = 5\n[databases.app]\npool_size = 4\n",
        4,
        "databases.app.pool_size",
        "below [pooler] min_pool_size",
    );
    assert_error(
        "[databases.app]\npool_size = 4\nmin_pool_size = 5\n",
        3,
        "databases.app.min_pool_size",
        "above the pool size",
    );
    assert_error(
        "[pooler]\nauth_type = \"hba\"\n",
        2,
        "pooler.auth_type",
        "needs hba_file",
    );
    assert!(parse("[pooler]\nauth_type = \"hba\"\nhba_file = \"/etc/pooler/hba\"\n").is_ok());
    assert_error(
        "[databases.app]\npassword = \"x\"\n",
        2,
        "databases.app.password",
        "`user`, which is not set",
    );
    assert_error(
        "[databases.app]\nuser = \"u\"\npassword = \"SCRAM-SHA-256$x\"\n",
        3,
        "databases.app.password",
        "malformed SCRAM secret",
    );
}

#[test]
fn passwords_must_suit_the_auth_type() {
    assert_error(
        "[users.bob]\npool_size = 3\n",
        1,
        "users.bob.password",
        "cannot log in",
    );
    assert_error(
        "[users.bob]\npassword = \"\"\n",
        2,
        "users.bob.password",
        "cannot log in",
    );
    assert!(parse("[pooler]\nauth_type = \"trust\"\n[users.bob]\npool_size = 3\n").is_ok());
    assert!(parse("[pooler]\nauth_type = \"hba\"\nhba_file = \"h\"\n[users.bob]\n").is_ok());
    // With auth_query, a [users] entry may carry only overrides.
    let overrides_only = "[databases.app.auth_query]\nuser = \"a\"\n[users.bob]\npool_size = 3\n";
    assert!(parse(overrides_only).is_ok());
    assert!(parse(&format!("[pooler]\nauth_type = \"md5\"\n{overrides_only}")).is_ok());
    assert!(parse(&format!(
        "[pooler]\nauth_type = \"plain\"\n{overrides_only}"
    ))
    .is_ok());
    let md5 = "[users.bob]\npassword = \"md54a0a68b43b6cd5cf266fa02f196e2371\"\n";
    assert_error(
        md5,
        2,
        "users.bob.password",
        "md5 hash cannot check a SCRAM login",
    );
    assert!(parse(&format!("[pooler]\nauth_type = \"md5\"\n{md5}")).is_ok());
    assert!(parse(&format!("[pooler]\nauth_type = \"plain\"\n{md5}")).is_ok());
    assert!(parse(&format!("[users.bob]\npassword = \"{SCRAM_SECRET}\"\n")).is_ok());
    assert_error(
        "[users.bob]\npassword = \"SCRAM-SHA-256$4096:abc$def\"\n",
        2,
        "users.bob.password",
        "malformed SCRAM secret",
    );
}

#[test]
fn tls_modes_need_their_files() {
    assert_error(
        "[tls]\nclient_tls_mode = \"require\"\nclient_tls_cert_file = \"c.pem\"\n",
        2,
        "tls.client_tls_mode",
        "needs client_tls_key_file",
    );
    assert_error(
        "[tls]\nclient_tls_mode = \"verify-ca\"\nclient_tls_cert_file = \"c\"\nclient_tls_key_file = \"k\"\n",
        2,
        "tls.client_tls_mode",
        "needs client_tls_ca_file",
    );
    assert_error(
        "[tls]\n\nserver_tls_mode = \"verify-full\"\n",
        3,
        "tls.server_tls_mode",
        "needs server_tls_ca_file",
    );
    let config = parse(concat!(
        "[tls]\nclient_tls_mode = \"prefer\"\nclient_tls_cert_file = \"c\"\nclient_tls_key_file = \"k\"\n",
        "server_tls_mode = \"require\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.tls.client_tls_mode, ClientTlsMode::Prefer);
    assert_eq!(config.tls.server_tls_mode, ServerTlsMode::Require);
}

#[test]
fn pool_settings_take_user_then_database_then_pooler_values() {
    let config = parse(concat!(
        "[pooler]\npool_mode = \"transaction\"\ndefault_pool_size = 20\nmin_pool_size = 2\n",
        "max_db_connections = 100\nmax_user_connections = 50\n",
        "[databases.plain]\n",
        "[databases.tuned]\npool_mode = \"session\"\npool_size = 8\nmin_pool_size = 4\nmax_db_connections = 30\n",
        "[users.alice]\npassword = \"a\"\npool_mode = \"transaction\"\npool_size = 3\nmax_user_connections = 5\n",
        "[users.bob]\npassword = \"b\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let settings = |database, user| config.pool_settings(database, user);
    let pooler_only = PoolSettings {
        pool_mode: PoolMode::Transaction,
        pool_size: 20,
        min_pool_size: 2,
        max_db_connections: 100,
        max_user_connections: 50,
        read_only: false,
    };
    assert_eq!(settings("plain", "bob"), Some(pooler_only));
    assert_eq!(settings("plain", "unlisted"), Some(pooler_only));
    assert_eq!(
        settings("tuned", "bob"),
        Some(PoolSettings {
            pool_mode: PoolMode::Session,
            pool_size: 8,
            min_pool_size: 4,
            max_db_connections: 30,
            max_user_connections: 50,
            read_only: false,
        })
    );
    assert_eq!(
        settings("tuned", "alice"),
        Some(PoolSettings {
            pool_mode: PoolMode::Transaction,
            pool_size: 3,
            min_pool_size: 3,
            max_db_connections: 30,
            max_user_connections: 5,
            read_only: false,
        })
    );
    assert_eq!(settings("plain", "alice").map(|s| s.pool_size), Some(3));
    assert_eq!(settings("missing", "alice"), None);
    assert_eq!(settings("pooler", "alice"), None);
}

#[test]
fn show_rows_cover_every_global_setting() {
    let config = parse("[pooler]\nlisten_addr = [\"127.0.0.1\", \"::1\"]\nworkers = 4\nquery_wait_timeout = 90\n[metrics]\nlisten = \"127.0.0.1:9127\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = config.show_rows();
    let globals: Vec<_> = SETTINGS
        .iter()
        .filter(|setting| {
            matches!(
                setting.section,
                Section::Pooler | Section::Tls | Section::Metrics
            )
        })
        .collect();
    assert_eq!(rows.len(), globals.len());
    for (row, setting) in rows.iter().zip(&globals) {
        assert_eq!(row.key, setting.display_name());
        assert_eq!(row.changeable, setting.reload);
    }
    let row = |key: &str| {
        rows.iter()
            .find(|row| row.key == key)
            .map(|row| (row.value.as_str(), row.default.as_str(), row.changeable))
    };
    assert_eq!(
        row("listen_addr"),
        Some(("127.0.0.1,::1", "127.0.0.1", false))
    );
    assert_eq!(row("workers"), Some(("4", "0", false)));
    assert_eq!(row("query_wait_timeout"), Some(("90s", "2m", true)));
    assert_eq!(row("server_lifetime"), Some(("1h", "1h", true)));
    assert_eq!(row("client_idle_timeout"), Some(("0", "0", true)));
    assert_eq!(
        row("server_reset_query"),
        Some(("DISCARD ALL", "DISCARD ALL", true))
    );
    assert_eq!(
        row("auth_type"),
        Some(("scram-sha-256", "scram-sha-256", true))
    );
    assert_eq!(row("admin_users"), Some(("", "", true)));
    assert_eq!(
        row("tls.client_tls_mode"),
        Some(("disable", "disable", true))
    );
    assert_eq!(row("metrics.listen"), Some(("127.0.0.1:9127", "", false)));
    // An untouched file shows every value equal to its default, but workers.
    let defaults = parse("").unwrap_or_else(|e| panic!("{e}"));
    for row in defaults.show_rows() {
        if row.key != "workers" {
            assert_eq!(row.value, row.default, "{}", row.key);
        }
    }
}

#[test]
fn restart_is_needed_only_for_sockets_and_threads() {
    let old = parse("[pooler]\nworkers = 2\n").unwrap_or_else(|e| panic!("{e}"));
    let same = parse("[pooler]\nworkers = 2\nlog_level = \"debug\"\ndefault_pool_size = 3\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(old.restart_needed_for(&same).is_empty());
    let moved =
        parse("[pooler]\nworkers = 3\nlisten_port = 7000\n[metrics]\nlisten = \"127.0.0.1:1\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        old.restart_needed_for(&moved),
        ["listen_port", "workers", "metrics.listen"]
    );
}

#[test]
fn errors_display_as_file_line_key_message() {
    let error = parse_err("[pooler]\nlisten_port = 0\n");
    assert_eq!(
        error.to_string(),
        "/etc/pooler/pooler.conf:2: pooler.listen_port: 0 is not a port: expected a port number from 1 to 65535"
    );
    let error = ConfigError {
        file: PathBuf::from("p.conf"),
        line: None,
        key: None,
        message: "cannot read".into(),
    };
    assert_eq!(error.to_string(), "p.conf: cannot read");
    let missing = Config::load(Path::new("/nonexistent/pooler.conf"));
    assert!(matches!(missing, Err(ConfigError { line: None, .. })));
}

#[test]
fn load_reads_the_file() {
    let path = std::env::temp_dir().join(format!("pooler-config-test-{}.conf", std::process::id()));
    let written = std::fs::write(&path, "[pooler]\nlisten_port = 7432\n");
    assert!(written.is_ok());
    let loaded = Config::load(&path);
    let _ = std::fs::remove_file(&path);
    let config = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.pooler.listen_port, 7432);
    assert_eq!(config.path, path);
}

#[test]
fn debug_output_hides_passwords() {
    let config = parse(&format!(
        "{}\n[databases.owned]\nuser = \"owner\"\npassword = \"db-secret-1\"\n[users.carol]\npassword = \"user-secret-2\"\n[databases.shared.auth_query]\nuser = \"looker\"\npassword = \"aq-secret-3\"\nserver_user = \"app_owner\"\nserver_password = \"aq-secret-4\"\n",
        design_example()
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?}");
    for secret in [
        "db-secret-1",
        "user-secret-2",
        "\"secret\"",
        SCRAM_SECRET,
        "aq-secret-3",
        "aq-secret-4",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
    assert!(shown.contains("pooler_auth") && shown.contains("app_owner"));
    let shared = config.databases["shared"].auth_query.as_ref();
    let shown = format!("{shared:?}");
    assert!(
        shown.contains("server_password: Some(\"<redacted>\")"),
        "{shown}"
    );
    assert!(!shown.contains("aq-secret"), "{shown}");
}

#[test]
fn enum_names_round_trip() {
    for name in PoolMode::NAMES {
        assert_eq!(PoolMode::from_name(name).map(PoolMode::as_str), Some(*name));
    }
    for name in AuthType::NAMES {
        assert_eq!(
            AuthType::from_name(name).map(|a| a.to_string()).as_deref(),
            Some(*name)
        );
    }
    for name in ClientTlsMode::NAMES {
        assert_eq!(
            ClientTlsMode::from_name(name).map(ClientTlsMode::as_str),
            Some(*name)
        );
    }
    for name in ServerTlsMode::NAMES {
        assert_eq!(
            ServerTlsMode::from_name(name).map(ServerTlsMode::as_str),
            Some(*name)
        );
    }
    assert_eq!(AuthType::from_name("SCRAM-SHA-256"), None);
}

#[test]
fn no_input_makes_it_panic() {
    let example = design_example();
    // Every fourth byte keeps this quick in debug builds; toml's parse dominates.
    let cut_points = (0..=example.len()).step_by(4).chain(
        example
            .match_indices(['\n', '"', '[', '='])
            .flat_map(|(i, _)| [i, i + 1]),
    );
    for cut in cut_points.filter(|&i| example.is_char_boundary(i)) {
        let _ = parse(&example[..cut]);
    }
    let lines: Vec<&str> = example.lines().collect();
    let replacements = [
        "",
        "[",
        "]",
        "x = ",
        "= 1",
        "[databases.\"\"]",
        "[users.'']",
        "[[pooler]]",
        "listen_port = 9999999999",
        "workers = 1e3",
        "server_lifetime = \"\\u0000\"",
        "pool_size = {}",
        "a = { b = [ { c = 1 } ] }",
        "\"\"\" = 1",
        "listen_addr = [[\"a\"]]",
        "[databases.app.auth_query.deeper]",
        "x = 1979-05-27T07:32:00Z",
    ];
    for index in 0..lines.len() {
        for replacement in replacements {
            let mut mutated = lines.clone();
            mutated[index] = replacement;
            let _ = parse(&mutated.join("\n"));
        }
    }
}

const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin";

fn auth_query_of(config: &Config, database: &str) -> AuthQueryConfig {
    match config
        .databases
        .get(database)
        .and_then(|d| d.auth_query.clone())
    {
        Some(auth_query) => auth_query,
        None => panic!("no auth_query in {database}"),
    }
}

#[test]
fn auth_query_defaults_come_from_the_settings_table() {
    let config = parse("[databases.app]\ndbname = \"app_db\"\n[databases.app.auth_query]\nuser = \"pooler_auth\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let auth_query = auth_query_of(&config, "app");
    assert_eq!(auth_query.query, DEFAULT_AUTH_QUERY);
    assert_eq!(auth_query.user, "pooler_auth");
    assert_eq!(auth_query.password, "");
    // "" resolves to the database's dbname, not to its section name.
    assert_eq!(auth_query.dbname, "app_db");
    assert_eq!(auth_query.pool_size, 2);
    assert_eq!(auth_query.server_user, None);
    assert_eq!(auth_query.server_password, None);
    assert_eq!(auth_query.default_pool_size, 5);
    assert_eq!(auth_query.cache_ttl, Duration::from_secs(3600));
    assert_eq!(auth_query.cache_failure_ttl, Duration::from_secs(30));
    assert_eq!(auth_query.min_interval, Duration::from_secs(1));
    let query = settings::find(Section::AuthQuery, "query")
        .and_then(|setting| setting.default_value().ok().flatten());
    assert_eq!(
        query,
        Some(SettingValue::Str(DEFAULT_AUTH_QUERY.to_string()))
    );
    assert_eq!(config.databases["app"].dbname, "app_db");
}

#[test]
fn auth_query_values_take_their_types() {
    let config = parse(concat!(
        "[databases]\n",
        "app = { dbname = \"app_db\", auth_query = { user = \"u\", dbname = \"auth_db\", pool_size = 4,",
        " server_user = \"owner\", server_password = \"md54a0a68b43b6cd5cf266fa02f196e2371\",",
        " default_pool_size = 9, cache_ttl = 90, cache_failure_ttl = 0, min_interval = \"250ms\",",
        " query = \"SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1\" } }\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let auth_query = auth_query_of(&config, "app");
    assert_eq!(auth_query.dbname, "auth_db");
    assert_eq!(auth_query.pool_size, 4);
    assert_eq!(auth_query.server_user.as_deref(), Some("owner"));
    assert_eq!(
        auth_query.server_password.as_deref(),
        Some("md54a0a68b43b6cd5cf266fa02f196e2371")
    );
    assert_eq!(auth_query.default_pool_size, 9);
    assert_eq!(auth_query.cache_ttl, Duration::from_secs(90));
    assert_eq!(auth_query.cache_failure_ttl, Duration::ZERO);
    assert_eq!(auth_query.min_interval, Duration::from_millis(250));
    assert_eq!(auth_query.pool_user("bob"), "owner");
    // Empty strings mean unset, so this is passthrough.
    let config = parse("[databases.app.auth_query]\nuser = \"u\"\nserver_user = \"\"\nserver_password = \"\"\nmin_interval = 0\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let auth_query = auth_query_of(&config, "app");
    assert_eq!(
        (auth_query.server_user, auth_query.server_password),
        (None, None)
    );
    assert_eq!(auth_query.min_interval, Duration::ZERO);
    assert_eq!(auth_query_of(&config, "app").pool_user("bob"), "bob");
}

#[test]
fn auth_query_errors_name_their_line_and_key() {
    let head = "[pooler]\nlisten_port = 6432\n\n[databases.app]\nhost = \"h\"\n\n[databases.app.auth_query]\n";
    // Lines 1..=7 are `head`; the first key below it is on line 8.
    let with = |body: &str| format!("{head}user = \"pooler_auth\"\n{body}");
    let key = |name: &str| format!("databases.app.auth_query.{name}");
    assert_error(
        &with("pool_size = 0\n"),
        9,
        &key("pool_size"),
        "out of range",
    );
    assert_error(
        &with("pool_size = 101\n"),
        9,
        &key("pool_size"),
        "out of range",
    );
    assert_error(
        &with("default_pool_size = 0\n"),
        9,
        &key("default_pool_size"),
        "out of range",
    );
    assert_error(
        &with("cache_ttl = 0\n"),
        9,
        &key("cache_ttl"),
        "more than 0",
    );
    assert_error(
        &with("cache_ttl = \"0ms\"\n"),
        9,
        &key("cache_ttl"),
        "more than 0",
    );
    assert_error(
        &with("cache_ttl = \"721h\"\n"),
        9,
        &key("cache_ttl"),
        "30 days",
    );
    assert_error(
        &with("\ncache_failure_ttl = -1\n"),
        10,
        &key("cache_failure_ttl"),
        "negative",
    );
    assert_error(
        &with("min_interval = \"1 second\"\n"),
        9,
        &key("min_interval"),
        "1 second",
    );
    assert_error(
        &with("min_interval = 2592001\n"),
        9,
        &key("min_interval"),
        "30 days",
    );
    assert_error(
        &with("query = \"SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname = 'x'\"\n"),
        9,
        &key("query"),
        "does not use $1",
    );
    assert_error(
        &with("query = \"SELECT $1, rolpassword FROM pg_catalog.pg_authid WHERE rolname = $2\"\n"),
        9,
        &key("query"),
        "uses $2",
    );
    assert_error(
        &with("query = \"SELECT a, b FROM t WHERE c = $10\"\n"),
        9,
        &key("query"),
        "uses $10",
    );
    assert!(parse(&with(
        "query = \"SELECT a, b FROM t WHERE c = $1 AND d = $$x$$\"\n"
    ))
    .is_ok());
    // Missing: the error points at the table that lacks it.
    assert_error(head, 7, &key("user"), "required");
    assert_error(
        &format!("{head}password = \"p\"\n"),
        7,
        &key("user"),
        "required",
    );
    assert_error(
        &format!("{head}\nuser = \"\"\n"),
        9,
        &key("user"),
        "required",
    );
    assert_error(
        &with("server_user = \"owner\"\n"),
        9,
        &key("server_user"),
        "needs server_password",
    );
    assert_error(
        &with("server_user = \"owner\"\nserver_password = \"\"\n"),
        9,
        &key("server_user"),
        "needs server_password",
    );
    assert_error(
        &with("server_user = \"\"\nserver_password = \"pw\"\n"),
        10,
        &key("server_password"),
        "server_user, which is not set",
    );
    assert_error(
        &with("server_user = \"owner\"\nserver_password = \"SCRAM-SHA-256$x\"\n"),
        10,
        &key("server_password"),
        "malformed SCRAM secret",
    );
    assert!(parse(&with(&format!(
        "server_user = \"owner\"\nserver_password = \"{SCRAM_SECRET}\"\n"
    )))
    .is_ok());
    assert_error(
        &with("password = \"md54a0a68b43b6cd5cf266fa02f196e2371\"\n"),
        9,
        &key("password"),
        "plain password",
    );
    assert_error(
        &with(&format!("password = \"{SCRAM_SECRET}\"\n")),
        9,
        &key("password"),
        "plain password",
    );
    assert_error(
        "[databases.app]\nuser = \"forced\"\n[databases.app.auth_query]\nuser = \"a\"\nserver_user = \"owner\"\nserver_password = \"pw\"\n",
        5,
        "databases.app.auth_query.server_user",
        "set only one of them",
    );
    assert_error(
        "[databases]\n\napp = { auth_query = { user = \"a\", pool_size = 0 } }\n",
        3,
        "databases.app.auth_query.pool_size",
        "out of range",
    );
    assert_error(
        "[databases]\n\napp = { auth_query = { pool_size = 1 } }\n",
        3,
        "databases.app.auth_query.user",
        "required",
    );
    assert_error(
        "[databases.app]\nauth_query = \"yes\"\n",
        2,
        "databases.app.auth_query",
        "expected a table",
    );
    let error = parse_err(&with("pool_size = 0\n"));
    assert_eq!(
        error.to_string(),
        "/etc/pooler/pooler.conf:9: databases.app.auth_query.pool_size: 0 is out of range: expected an integer from 1 to 100"
    );
}

#[test]
fn effective_pools_of_passthrough_and_server_user_modes() {
    let config = parse(concat!(
        "[pooler]\ndefault_pool_size = 20\nmin_pool_size = 2\nmax_user_connections = 50\n",
        "[databases.pass]\npool_size = 8\npool_mode = \"session\"\n",
        "[databases.pass.auth_query]\nuser = \"a\"\ndefault_pool_size = 3\n",
        "[databases.shared]\npool_size = 12\n",
        "[databases.shared.auth_query]\nuser = \"a\"\nserver_user = \"owner\"\nserver_password = \"pw\"\n",
        "[databases.forced]\nuser = \"forced\"\n",
        "[databases.forced.auth_query]\nuser = \"a\"\n",
        "[databases.static]\n",
        "[users.owner]\npool_size = 30\nmax_user_connections = 7\n",
        "[users.tuned]\npool_size = 4\npool_mode = \"transaction\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let effective = |database, user, via| config.effective_pool(database, user, via);
    let pool_user = |database, user, via| config.pool_user(database, user, via);

    // Passthrough: one pool per client user, sized by auth_query's default.
    assert_eq!(pool_user("pass", "bob", true), Some("bob"));
    assert_eq!(
        effective("pass", "bob", true),
        Some(PoolSettings {
            pool_mode: PoolMode::Session,
            pool_size: 3,
            min_pool_size: 2,
            max_db_connections: 0,
            max_user_connections: 50,
            read_only: false,
        })
    );
    // An overrides-only [users] entry still wins in passthrough.
    let tuned = effective("pass", "tuned", true);
    assert_eq!(
        tuned.map(|s| (s.pool_mode, s.pool_size)),
        Some((PoolMode::Transaction, 4))
    );
    // The same client as a static user gets the database's pool size.
    assert_eq!(
        effective("pass", "bob", false).map(|s| s.pool_size),
        Some(8)
    );
    assert_eq!(
        effective("pass", "bob", false),
        config.pool_settings("pass", "bob")
    );

    // server_user: every auth_query client shares owner's pool, whose own
    // [users.owner] overrides apply; the client's entry does not.
    assert_eq!(pool_user("shared", "bob", true), Some("owner"));
    assert_eq!(pool_user("shared", "bob", false), Some("bob"));
    let owner_pool = PoolSettings {
        pool_mode: PoolMode::Transaction,
        pool_size: 30,
        min_pool_size: 2,
        max_db_connections: 0,
        max_user_connections: 7,
        read_only: false,
    };
    assert_eq!(effective("shared", "bob", true), Some(owner_pool));
    assert_eq!(effective("shared", "tuned", true), Some(owner_pool));
    assert_eq!(config.pool_settings("shared", "owner"), Some(owner_pool));
    // Without [users.owner], the shared pool takes the database's size.
    let plain_owner = parse(concat!(
        "[databases.shared]\npool_size = 12\n",
        "[databases.shared.auth_query]\nuser = \"a\"\nserver_user = \"owner\"\nserver_password = \"pw\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let shared = plain_owner.effective_pool("shared", "bob", true);
    assert_eq!(shared.map(|s| s.pool_size), Some(12));
    let no_db_size = parse("[databases.shared.auth_query]\nuser = \"a\"\nserver_user = \"o\"\nserver_password = \"pw\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let shared = no_db_size.effective_pool("shared", "bob", true);
    assert_eq!(shared.map(|s| s.pool_size), Some(20));

    // A forced database user makes one shared pool whatever the login path.
    assert_eq!(pool_user("forced", "bob", true), Some("forced"));
    assert_eq!(
        effective("forced", "bob", true).map(|s| s.pool_size),
        Some(20)
    );

    // No auth_query (or a reload removed it): the client counts as static.
    assert_eq!(
        effective("static", "bob", true),
        config.pool_settings("static", "bob")
    );
    assert_eq!(pool_user("static", "bob", true), Some("bob"));
    assert_eq!(effective("missing", "bob", true), None);
    assert_eq!(pool_user("missing", "bob", true), None);
}

#[test]
fn auth_query_changes_reload_without_restart() {
    let old = parse("[databases.app.auth_query]\nuser = \"a\"\n").unwrap_or_else(|e| panic!("{e}"));
    let new = parse(
        "[databases.app.auth_query]\nuser = \"b\"\ncache_ttl = \"5m\"\ndefault_pool_size = 7\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(old.databases["app"], new.databases["app"]);
    assert!(old.restart_needed_for(&new).is_empty());
    assert!(SETTINGS
        .iter()
        .filter(|setting| setting.section == Section::AuthQuery)
        .all(|setting| setting.reload));
    assert!(old
        .show_rows()
        .iter()
        .all(|row| !row.key.contains("auth_query")));
}

/// Section header text, as the docs write it, of a settings section.
fn doc_section(header: &str) -> Option<Section> {
    let name = header.trim().trim_start_matches('[').trim_end_matches(']');
    Some(match name {
        "pooler" => Section::Pooler,
        "tls" => Section::Tls,
        "metrics" => Section::Metrics,
        _ if name.starts_with("databases.") && name.ends_with(".auth_query") => Section::AuthQuery,
        _ if name.starts_with("databases.") => Section::Database,
        _ if name.starts_with("users.") => Section::User,
        _ => return None,
    })
}

/// The keys a file can set (a sub-table such as `auth_query` is a section of
/// its own in the docs, not a key).
fn table_keys() -> std::collections::BTreeSet<(String, String)> {
    SETTINGS
        .iter()
        .filter(|s| !matches!(s.kind, settings::Kind::Table))
        .map(|s| (s.section.header().to_string(), s.name.to_string()))
        .collect()
}

#[track_caller]
fn assert_same_keys(found: &std::collections::BTreeSet<(String, String)>, what: &str) {
    let table = table_keys();
    let missing: Vec<_> = table.difference(found).collect();
    let unknown: Vec<_> = found.difference(&table).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "{what}: keys the parser accepts but it lacks: {missing:?}; keys it has that the parser does not accept: {unknown:?}"
    );
}

/// Every key the parser accepts is in pooler.conf.5, under its section, and
/// the page documents no other key.
#[test]
fn man_page_documents_exactly_the_parsers_keys() {
    let page = include_str!("../../man/pooler.conf.5");
    let mut section = None;
    let mut documented = std::collections::BTreeSet::new();
    let mut after_tp = false;
    for line in page.lines() {
        if let Some(header) = line.strip_prefix(".SH ") {
            section = doc_section(header);
        } else if let (true, Some(key), Some(s)) = (after_tp, line.strip_prefix(".B "), section) {
            documented.insert((s.header().to_string(), key.trim().to_string()));
        }
        after_tp = line == ".TP";
    }
    assert_same_keys(&documented, "man/pooler.conf.5");
}

/// Every key the parser accepts appears in pooler.conf.sample (set or
/// commented out) under its section, and the sample has no other key.
#[test]
fn sample_config_shows_exactly_the_parsers_keys() {
    let sample = include_str!("../../pooler.conf.sample");
    let mut section = None;
    let mut shown = std::collections::BTreeSet::new();
    for line in sample.lines() {
        let text = line.trim_start_matches('#').trim();
        if text.starts_with('[') && text.ends_with(']') {
            section = doc_section(text);
            continue;
        }
        let Some((key, _)) = text.split_once(" = ") else {
            continue;
        };
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if let (true, Some(s)) = (is_key, section) {
            shown.insert((s.header().to_string(), key.to_string()));
        }
    }
    assert_same_keys(&shown, "pooler.conf.sample");
}
