//! A config snapshot with everything the workers need precomputed off the reactor: host
//! names resolved, SCRAM verifiers derived from plain passwords. Built by the main thread
//! at start and at each reload, handed to workers whole as an `Arc`.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::auth_query::Secret;
use crate::auth::auth_query::{AuthCache, AuthQuery, CacheSettings, Executor, ExecutorConfig};
use crate::auth::hba::HbaRules;
use crate::auth::md5::{is_md5_hash, md5_password_hash};
use crate::auth::random::fill_random;
use crate::auth::scram::ScramSecret;
use crate::config::{AuthType, ClientTlsMode, ServerTlsMode};
use crate::config::{ClientLimits, Config};
use crate::guard::StatementRules;
use crate::net::tls::{self, ServerTls};
use crate::net::ServerAddr;
use crate::pool::{PoolKey, PoolOrigin, PoolSpec, PoolState, ServerCredential, ServerTarget};

/// Iterations for verifiers the pooler derives from plain passwords; PostgreSQL's default.
const SCRAM_ITERATIONS: u32 = 4096;

/// What a client's password can be checked against.
#[derive(Clone)]
pub struct UserAuth {
    pub scram: Option<ScramSecret>,
    pub md5: Option<String>,
    pub plain: Option<String>,
}

pub struct Snapshot {
    pub config: Arc<Config>,
    /// Client-facing TLS, loaded from the files at build time (so a reload picks up new
    /// certificates); None when client_tls_mode is disable.
    pub client_tls: Option<ServerTls>,
    /// TLS towards PostgreSQL; None when server_tls_mode is disable.
    pub server_tls: Option<Arc<rustls::ClientConfig>>,
    /// The hba rules when auth_type is "hba", read at build time like the certificates.
    pub hba: Option<Arc<HbaRules>>,
    pub users: HashMap<String, UserAuth>,
    pub server_addrs: HashMap<String, ServerAddr>,
    /// Per database with an auth_query: its executor and cache.
    pub auth_queries: HashMap<String, Arc<AuthQuery>>,
    /// Per database whose deny or allow list is not empty.
    pub statement_rules: HashMap<String, Arc<StatementRules>>,
}

/// How a client proved who it is, which decides the pool it joins.
#[derive(Clone, Copy)]
pub enum Login<'a> {
    /// A `[users]` entry (or no check at all, for trust).
    Static,
    /// The database's auth_query found this secret.
    AuthQuery(&'a Secret),
}

impl UserAuth {
    pub fn from_secret(secret: &Secret) -> UserAuth {
        match secret {
            Secret::Md5(hash) => UserAuth {
                scram: None,
                md5: Some(hash.clone()),
                plain: None,
            },
            Secret::Scram(verifier) => UserAuth {
                scram: Some(verifier.clone()),
                md5: None,
                plain: None,
            },
        }
    }

    pub fn from_password(user: &str, password: &str) -> UserAuth {
        if let Some(secret) = ScramSecret::parse(password) {
            return UserAuth {
                scram: Some(secret),
                md5: None,
                plain: None,
            };
        }
        if is_md5_hash(password) {
            return UserAuth {
                scram: None,
                md5: Some(password.to_ascii_lowercase()),
                plain: None,
            };
        }
        let mut salt = [0u8; 16];
        fill_random(&mut salt);
        UserAuth {
            scram: Some(ScramSecret::from_password(
                password,
                &salt,
                SCRAM_ITERATIONS,
            )),
            md5: Some(md5_password_hash(user, password)),
            plain: Some(password.to_owned()),
        }
    }
}

fn credential_of(password: &str) -> ServerCredential {
    if password.is_empty() {
        ServerCredential::None
    } else if let Some(secret) = ScramSecret::parse(password) {
        ServerCredential::ScramSecret(secret)
    } else if is_md5_hash(password) {
        ServerCredential::Md5Hash(password.to_ascii_lowercase())
    } else {
        ServerCredential::Plain(password.to_owned())
    }
}

impl Snapshot {
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, String> {
        let mut server_addrs = HashMap::new();
        for (name, db) in &config.databases {
            let addr = if db.host.starts_with('/') {
                ServerAddr::Unix(PathBuf::from(&db.host).join(format!(".s.PGSQL.{}", db.port)))
            } else {
                let addrs: Vec<_> = (db.host.as_str(), db.port)
                    .to_socket_addrs()
                    .map_err(|e| format!("database {name}: cannot resolve host {}: {e}", db.host))?
                    .collect();
                ServerAddr::Tcp(addrs)
            };
            server_addrs.insert(name.clone(), addr);
        }
        let mut users = HashMap::new();
        for (name, user) in &config.users {
            // Keep the verifier derived last time when the password is unchanged, so a
            // reload does not change the salt clients' cached SCRAM proofs rely on.
            let reused = previous.and_then(|p| {
                let old = p.config.users.get(name)?;
                (old.password == user.password)
                    .then(|| p.users.get(name).cloned())
                    .flatten()
            });
            let auth = reused.unwrap_or_else(|| UserAuth::from_password(name, &user.password));
            users.insert(name.clone(), auth);
        }
        let client_tls = client_tls_of(&config)?;
        let server_tls = server_tls_of(&config)?;
        let hba = match config.pooler.auth_type {
            AuthType::Hba => Some(Arc::new(
                HbaRules::load(&relative_to_config(&config, &config.pooler.hba_file))
                    .map_err(|e| e.to_string())?,
            )),
            _ => None,
        };
        let mut statement_rules = HashMap::new();
        for (name, db) in &config.databases {
            let (deny, allow) = config.statement_lists(db);
            // The config loader validated every list; an error here is a bug, not input.
            let rules =
                StatementRules::new(deny, allow).map_err(|e| format!("database {name}: {e}"))?;
            if !rules.is_empty() {
                statement_rules.insert(name.clone(), Arc::new(rules));
            }
        }
        // Last: it starts executor threads, which a config failing any check above
        // would only have to stop again.
        let auth_queries = auth_queries_of(&config, previous)?;
        Ok(Snapshot {
            client_tls,
            server_tls,
            hba,
            config: Arc::new(config),
            users,
            server_addrs,
            auth_queries,
            statement_rules,
        })
    }

    /// The guardrails of a client of `database` logged in as `user`.
    pub fn guardrails(
        &self,
        database: &str,
        user: &str,
    ) -> (ClientLimits, Option<Arc<StatementRules>>) {
        (
            self.config
                .client_limits(database, user)
                .unwrap_or_default(),
            self.statement_rules.get(database).cloned(),
        )
    }

    /// The database's auth_query when it decides about `user`: the database
    /// has one and `[users]` holds no password for that name (static users
    /// win; an entry with overrides only does not make a user static).
    pub fn auth_query_for(&self, database: &str, user: &str) -> Option<&Arc<AuthQuery>> {
        let static_user = self
            .config
            .users
            .get(user)
            .is_some_and(|u| !u.password.is_empty());
        if static_user {
            return None;
        }
        self.auth_queries.get(database)
    }

    /// The pool a client of (database, user) uses, and how to build it.
    pub fn pool_for(
        &self,
        database: &str,
        client_user: &str,
        login: Login<'_>,
    ) -> Option<(PoolKey, PoolSpec)> {
        let db = self.config.databases.get(database)?;
        let auth_query = match login {
            Login::AuthQuery(secret) => db.auth_query.as_ref().map(|a| (a, secret)),
            Login::Static => None,
        };
        let (server_user, credential, origin) = match (&db.user, auth_query) {
            (Some(forced), _) => {
                let password = db
                    .password
                    .clone()
                    .or_else(|| self.config.users.get(forced).map(|u| u.password.clone()))
                    .unwrap_or_default();
                (forced.clone(), credential_of(&password), PoolOrigin::Config)
            }
            (None, Some((a, secret))) => match (&a.server_user, &a.server_password) {
                (Some(user), Some(password)) => (
                    user.clone(),
                    credential_of(password),
                    PoolOrigin::SharedAuthQuery,
                ),
                _ => (
                    client_user.to_owned(),
                    credential_of_secret(secret),
                    PoolOrigin::Dynamic {
                        auth_query: self.auth_queries.get(database)?.id,
                    },
                ),
            },
            (None, None) => {
                let password = self
                    .config
                    .users
                    .get(client_user)
                    .map(|u| u.password.as_str())
                    .unwrap_or("");
                (
                    client_user.to_owned(),
                    credential_of(password),
                    PoolOrigin::Config,
                )
            }
        };
        let via_auth_query = origin != PoolOrigin::Config;
        let settings = self
            .config
            .effective_pool(database, client_user, via_auth_query)?;
        let key = PoolKey {
            database: database.to_owned(),
            user: server_user.clone(),
        };
        Some((
            key,
            self.spec(database, server_user, credential, origin, settings)?,
        ))
    }

    fn spec(
        &self,
        database: &str,
        server_user: String,
        credential: ServerCredential,
        origin: PoolOrigin,
        settings: crate::config::PoolSettings,
    ) -> Option<PoolSpec> {
        let db = self.config.databases.get(database)?;
        let p = &self.config.pooler;
        Some(PoolSpec {
            origin,
            target: ServerTarget {
                addr: self.server_addrs.get(database)?.clone(),
                host: db.host.clone(),
                dbname: db.dbname.clone(),
                user: server_user,
                credential,
            },
            settings,
            server_lifetime: p.server_lifetime,
            server_idle_timeout: p.server_idle_timeout,
        })
    }

    /// How an existing pool looks under this snapshot; None when its
    /// definition is gone (clients finish, servers close at release).
    pub fn spec_under(&self, key: &PoolKey, current: &PoolState) -> Option<PoolSpec> {
        let db = self.config.databases.get(&key.database)?;
        match current.origin {
            PoolOrigin::Config => {
                let (new_key, spec) = self.pool_for(&key.database, &key.user, Login::Static)?;
                let forced = db.user.is_some();
                let listed = self.config.users.contains_key(&key.user);
                (new_key == *key && (forced || listed)).then_some(spec)
            }
            PoolOrigin::SharedAuthQuery => {
                let a = db.auth_query.as_ref().filter(|_| db.user.is_none())?;
                let (user, password) = a.server_user.as_ref().zip(a.server_password.as_ref())?;
                if *user != key.user {
                    return None;
                }
                let settings = self.config.effective_pool(&key.database, user, true)?;
                let credential = credential_of(password);
                self.spec(
                    &key.database,
                    user.clone(),
                    credential,
                    current.origin,
                    settings,
                )
            }
            PoolOrigin::Dynamic { auth_query } => {
                // Made under a runtime a reload has replaced (the auth_query
                // config changed or went), or its user became static: gone.
                let runtime = self.auth_query_for(&key.database, &key.user)?;
                if runtime.id != auth_query || db.user.is_some() {
                    return None;
                }
                let settings = self.config.effective_pool(&key.database, &key.user, true)?;
                // The credential came from the lookup, not the config.
                let credential = current.target.credential.clone();
                self.spec(
                    &key.database,
                    key.user.clone(),
                    credential,
                    current.origin,
                    settings,
                )
            }
        }
    }
}

fn credential_of_secret(secret: &Secret) -> ServerCredential {
    match secret {
        Secret::Md5(hash) => ServerCredential::Md5Hash(hash.clone()),
        Secret::Scram(verifier) => ServerCredential::ScramSecret(verifier.clone()),
    }
}

/// An executor and cache per database with an auth_query; a database whose
/// auth_query and address did not change keeps the ones it had, so a reload
/// neither forgets the cache nor reconnects the executor.
fn auth_queries_of(
    config: &Config,
    previous: Option<&Snapshot>,
) -> Result<HashMap<String, Arc<AuthQuery>>, String> {
    let timeout = config.pooler.server_connect_timeout;
    let mut out = HashMap::new();
    for (name, db) in &config.databases {
        let Some(a) = &db.auth_query else { continue };
        let executor_config = ExecutorConfig {
            host: db.host.clone(),
            port: db.port,
            dbname: a.dbname.clone(),
            user: a.user.clone(),
            password: a.password.clone(),
            query: a.query.clone(),
            pool_size: a.pool_size,
            timeout,
        };
        let settings = CacheSettings::from_config(a, timeout);
        let kept = previous
            .and_then(|p| p.auth_queries.get(name))
            .filter(|old| old.config == *a && *old.executor.config() == executor_config);
        let runtime = match kept {
            Some(old) => {
                old.cache().set_settings(settings);
                old.clone()
            }
            None => Arc::new(AuthQuery {
                id: AuthQuery::next_id(),
                database: name.clone(),
                config: a.clone(),
                executor: Executor::start(name, executor_config).map_err(|e| {
                    format!("database {name}: cannot start the auth_query executor: {e}")
                })?,
                cache: std::sync::Mutex::new(AuthCache::new(settings)),
            }),
        };
        out.insert(name.clone(), runtime);
    }
    Ok(out)
}

fn client_tls_of(config: &Config) -> Result<Option<ServerTls>, String> {
    let t = &config.tls;
    if t.client_tls_mode == ClientTlsMode::Disable {
        return Ok(None);
    }
    let verify = matches!(
        t.client_tls_mode,
        ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull
    );
    let ca =
        (!t.client_tls_ca_file.is_empty()).then(|| std::path::Path::new(&t.client_tls_ca_file));
    tls::server_tls(
        std::path::Path::new(&t.client_tls_cert_file),
        std::path::Path::new(&t.client_tls_key_file),
        ca,
        verify,
    )
    .map(Some)
    .map_err(|e| format!("[tls] client TLS: {e}"))
}

/// Files named in the config are relative to the config file's directory, so a config
/// and its certificates or hba file can move together.
pub fn relative_to_config(config: &Config, file: &str) -> PathBuf {
    let path = PathBuf::from(file);
    match config.path.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

fn server_tls_of(config: &Config) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    let t = &config.tls;
    let verify = match t.server_tls_mode {
        ServerTlsMode::Disable => return Ok(None),
        ServerTlsMode::Prefer | ServerTlsMode::Require => tls::ServerVerify::None,
        ServerTlsMode::VerifyCa => tls::ServerVerify::Ca,
        ServerTlsMode::VerifyFull => tls::ServerVerify::Full,
    };
    let ca = (!t.server_tls_ca_file.is_empty())
        .then(|| relative_to_config(config, &t.server_tls_ca_file));
    let cert = (!t.server_tls_cert_file.is_empty()).then(|| {
        (
            relative_to_config(config, &t.server_tls_cert_file),
            relative_to_config(config, &t.server_tls_key_file),
        )
    });
    tls::client_config(
        ca.as_deref(),
        verify,
        cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .map(Some)
    .map_err(|e| format!("[tls] server TLS: {e}"))
}
