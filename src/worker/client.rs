//! Client login: startup packet, authentication per `auth_type`, the welcome messages.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::{AuthPhase, ClientState, Worker, WorkerMsg};
use crate::auth::auth_query::{AuthQuery, FetchResult, Lookup, Refetch, Secret};
use crate::auth::hba::{self, HbaMethod};
use crate::auth::md5::{md5_password_hash, md5_verify};
use crate::auth::random::fill_random;
use crate::auth::scram::{ChannelBinding, ScramSecret, ScramServer, MECHANISM, MECHANISM_PLUS};
use crate::config::AuthType;
use crate::config::ClientTlsMode;
use crate::control::AdminRole;
use crate::guard::addr::AddrRefusal;
use crate::guard::Guardrail;
use crate::net::tls::{self, HandshakeProgress, TlsStream};
use crate::net::Stream;
use crate::params;
use crate::pool::{ConnRef, PoolOrigin, ServerCredential};
use crate::protocol::{self, auth_code, sqlstate, Reader, Severity, StartupPacket};
use crate::snapshot::{Login, UserAuth};

/// A failed password answer kept while the secret is refetched (the password
/// may have changed in PostgreSQL), to be checked again against the new one
/// without asking the client twice. A SCRAM proof cannot be kept: it is bound
/// to the old verifier's salt.
pub enum Recheck {
    Md5 { salt: [u8; 4], response: Vec<u8> },
    Cleartext(String),
}

/// A verifier for users that do not exist, so a wrong user name costs the same exchange
/// as a wrong password and reveals nothing (PostgreSQL does the same).
fn mock_secret() -> &'static ScramSecret {
    static MOCK: OnceLock<ScramSecret> = OnceLock::new();
    MOCK.get_or_init(|| {
        let mut pw = [0u8; 24];
        fill_random(&mut pw);
        let mut salt = [0u8; 16];
        fill_random(&mut salt);
        ScramSecret::from_password(&format!("{pw:?}"), &salt, 4096)
    })
}

impl Worker {
    pub(super) fn client_startup(&mut self, cref: ConnRef) {
        loop {
            let Some(c) = client_at!(self, cref) else {
                return;
            };
            let parsed = protocol::parse_startup(c.inbuf.pending());
            let (packet, len) = match parsed {
                Ok(None) => return,
                Ok(Some(x)) => x,
                Err(e) => {
                    self.fail_client(
                        cref,
                        Severity::Fatal,
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!("invalid startup packet: {e}"),
                    );
                    return;
                }
            };
            c.inbuf.consume(len);
            match packet {
                StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                    if !c.inbuf.is_empty() {
                        self.fail_client(
                            cref,
                            Severity::Fatal,
                            sqlstate::PROTOCOL_VIOLATION,
                            "received unencrypted data after SSL request",
                        );
                        return;
                    }
                    let tls = match (&packet, &self.snap.client_tls, &c.stream, &c.tls) {
                        (StartupPacket::SslRequest, Some(t), Stream::Tcp(_), None) => {
                            Some(t.config.clone())
                        }
                        _ => None,
                    };
                    let Some(config) = tls else {
                        // No TLS here (disabled, unix socket, or GSSAPI): 'N' tells
                        // libpq to go on in plaintext.
                        c.outbuf.extend(&mut self.bufs, b"N");
                        self.flush_client(cref);
                        continue;
                    };
                    c.outbuf.extend(&mut self.bufs, b"S");
                    self.flush_client(cref);
                    let Some(c) = client_at!(self, cref) else {
                        return;
                    };
                    if !c.outbuf.is_empty() {
                        self.close_client(cref, "cannot send the SSLRequest answer");
                        return;
                    }
                    match TlsStream::accept(config) {
                        Ok(t) => {
                            c.tls = Some(Box::new(t));
                            c.state = ClientState::TlsHandshake;
                            c.readable = true;
                            // The handshake's output may wait for writability.
                            self.watch_client_writes(cref);
                        }
                        Err(e) => {
                            self.close_client(cref, &format!("TLS setup failed: {e}"));
                        }
                    }
                    return;
                }
                StartupPacket::Cancel { pid, key } => {
                    self.route_cancel(pid, key);
                    self.close_client(cref, "cancel request");
                    return;
                }
                StartupPacket::UnsupportedVersion(v) => {
                    self.fail_client(
                        cref,
                        Severity::Fatal,
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        &format!(
                            "unsupported frontend protocol {}.{}: server supports 3.0 to 3.0",
                            v >> 16,
                            v & 0xffff
                        ),
                    );
                    return;
                }
                StartupPacket::Startup { minor, params } => {
                    self.client_login(cref, minor, params);
                    return;
                }
            }
        }
    }

    /// Moves a client's TLS handshake on. Returns whether to keep reading (it finished,
    /// and the StartupMessage may already be decrypted and waiting).
    pub(super) fn client_handshake(&mut self, cref: ConnRef) -> bool {
        let Some(c) = client_at!(self, cref) else {
            return false;
        };
        let Some(tls) = c.tls.as_deref_mut() else {
            return false;
        };
        match tls.handshake_step(&mut c.stream) {
            Ok(HandshakeProgress::Done) => {
                self.shared
                    .control
                    .counters
                    .tls_handshakes
                    .fetch_add(1, Ordering::Relaxed);
                c.state = ClientState::Startup;
                c.readable = true;
                true
            }
            Ok(HandshakeProgress::InProgress) => {
                c.readable = false;
                false
            }
            Err(e) => {
                log::info!("client {} from {}: TLS handshake failed: {e}", c.id, c.peer);
                self.close_client(cref, "TLS handshake failed");
                false
            }
        }
    }

    fn route_cancel(&mut self, pid: u32, key: u32) {
        let target = self.shared.lock_cancels().get(&(pid, key)).copied();
        match target {
            Some((worker, cref)) if worker == self.id => self.cancel_client(cref),
            Some((worker, cref)) => self
                .shared
                .send_to(worker, WorkerMsg::Cancel { client: cref }),
            None => log::debug!("cancel request matches no client; dropped"),
        }
    }

    fn client_login(&mut self, cref: ConnRef, minor: u16, startup: Vec<(String, String)>) {
        let max_clients = self.snap.config.pooler.max_client_conn as usize;
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        c.counted = true;
        let n = self.shared.clients.fetch_add(1, Ordering::Relaxed) + 1;
        c.over_limit = n > max_clients;
        let get = |k: &str| {
            startup
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        };
        let user = get("user").unwrap_or_default();
        let database = get("database")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| user.clone());
        c.user = user.clone();
        c.database = database.clone();
        c.params = params::startup_settings(&startup);
        let unknown_options: Vec<&str> = startup
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.as_str())
            .collect();
        if minor > 0 || !unknown_options.is_empty() {
            self.scratch.clear();
            protocol::negotiate_protocol_version(&mut self.scratch, 0, &unknown_options);
            c.outbuf.extend(&mut self.bufs, &self.scratch);
        }
        if c.over_limit {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            );
            return;
        }
        let addr_limits = &self.snap.config.pooler.addr_limits;
        if !addr_limits.is_off() {
            let peer = match &c.stream {
                Stream::Tcp(s) => s.peer_addr().ok().map(|a| a.ip()),
                Stream::Unix(_) => None,
            };
            if let Some(ip) = peer {
                match self
                    .shared
                    .addr_limiter
                    .admit(ip, addr_limits, Instant::now())
                {
                    Ok(counted) => c.addr_counted = counted.then_some(ip),
                    Err(refusal) => {
                        log::info!("client {} refused: {refusal}", c.id);
                        let which = match refusal {
                            AddrRefusal::TooMany { .. } => Guardrail::MaxClientConnPerAddr,
                            AddrRefusal::TooFast { .. } => Guardrail::ConnectRatePerAddr,
                        };
                        self.shared.control.counters.guardrail(which, 1);
                        self.fail_client(
                            cref,
                            Severity::Fatal,
                            sqlstate::TOO_MANY_CONNECTIONS,
                            &refusal.to_string(),
                        );
                        return;
                    }
                }
            }
        }
        // A drain serves the clients it accepted (a successor on the same
        // port takes the new ones); only a stop refuses them.
        if self.shutdown == Some(super::ShutdownMode::Now) {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::CANNOT_CONNECT_NOW,
                "the pooler is shutting down",
            );
            return;
        }
        if user.is_empty() {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            );
            return;
        }
        if let Err(message) = self.check_client_tls(cref, &user) {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::INVALID_AUTHORIZATION,
                &message,
            );
            return;
        }
        if crate::admin::is_admin_database(&self.snap.config.pooler, &database) {
            self.admin_login(cref, &database, &user);
            return;
        }
        if self.shared.control.is_disabled(&database) {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                &format!("database \"{database}\" does not allow connections (DISABLE)"),
            );
            return;
        }
        if !self.snap.config.databases.contains_key(&database) {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::INVALID_CATALOG_NAME,
                &format!("database \"{database}\" does not exist"),
            );
            return;
        }
        // With hba, the rules decide before any lookup (database, user,
        // address, TLS), so a rejected client costs PostgreSQL nothing.
        let method = match self.auth_method(cref, &database, &user) {
            Ok(m) => m,
            Err(message) => {
                self.fail_client(
                    cref,
                    Severity::Fatal,
                    sqlstate::INVALID_AUTHORIZATION,
                    &message,
                );
                return;
            }
        };
        if let Some(auth_query) = self.snap.auth_query_for(&database, &user).cloned() {
            self.look_up(cref, &auth_query, method);
            return;
        }
        let auth = self.snap.users.get(&user).cloned();
        self.begin_auth(cref, method, auth);
    }

    /// The console admits `admin_users` and `stats_users`, authenticated like
    /// any static user (and by hba rules naming the console's database).
    fn admin_login(&mut self, cref: ConnRef, database: &str, user: &str) {
        let p = &self.snap.config.pooler;
        let role = if p.admin_users.iter().any(|u| u == user) {
            AdminRole::Admin
        } else if p.stats_users.iter().any(|u| u == user) {
            AdminRole::Stats
        } else {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::INVALID_AUTHORIZATION,
                &format!("user \"{user}\" is not allowed to use the admin console"),
            );
            return;
        };
        let method = match self.auth_method(cref, database, user) {
            Ok(m) => m,
            Err(message) => {
                self.fail_client(
                    cref,
                    Severity::Fatal,
                    sqlstate::INVALID_AUTHORIZATION,
                    &message,
                );
                return;
            }
        };
        if let Some(c) = client_at!(self, cref) {
            c.admin = Some(role);
        }
        let auth = self.snap.users.get(user).cloned();
        self.begin_auth(cref, method, auth);
    }

    /// Asks the database's auth_query cache for the user's secret; a miss
    /// parks the client until the executor answers ([`Worker::lookup_done`]).
    fn look_up(&mut self, cref: ConnRef, auth_query: &Arc<AuthQuery>, method: HbaMethod) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        let user = c.user.clone();
        let outcome = auth_query
            .cache()
            .lookup(&user, (self.id, cref), Instant::now());
        match outcome {
            Lookup::Hit(secret) => self.begin_auth_fetched(cref, method, Some(secret)),
            Lookup::Unknown => self.begin_auth_fetched(cref, method, None),
            Lookup::Wait => self.await_lookup(cref, method, None),
            Lookup::Fetch => {
                self.await_lookup(cref, method, None);
                self.fetch(auth_query, &user);
            }
        }
    }

    fn await_lookup(&mut self, cref: ConnRef, method: HbaMethod, recheck: Option<Recheck>) {
        if let Some(c) = client_at!(self, cref) {
            c.state = ClientState::AuthQuery;
            c.login().auth = AuthPhase::Lookup { method, recheck };
            c.wait_started = Instant::now();
        }
    }

    /// Starts the query; its answer goes to every login the cache queued.
    fn fetch(&self, auth_query: &Arc<AuthQuery>, user: &str) {
        let deadline = Instant::now() + self.snap.config.pooler.server_connect_timeout;
        let (shared, runtime, name) = (self.shared.clone(), auth_query.clone(), user.to_owned());
        auth_query.executor.lookup(user, deadline, move |result| {
            match &result {
                FetchResult::Unusable(why) => log::warn!(
                    "auth_query for database {}: user {name:?}: {why}; logins fail as with a wrong password",
                    runtime.database
                ),
                FetchResult::Error(e) => log::error!(
                    "auth_query for database {}: looking up user {name:?} failed: {e}",
                    runtime.database
                ),
                FetchResult::Found(_) | FetchResult::NoSuchUser => {}
            }
            let waiters = runtime.cache().complete(&name, &result, Instant::now());
            for (worker, client) in waiters {
                let result = result.clone();
                shared.send_to(worker, WorkerMsg::AuthQueryDone { client, result });
            }
        });
    }

    pub(super) fn lookup_done(&mut self, cref: ConnRef, result: FetchResult) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        if c.state != ClientState::AuthQuery {
            return;
        }
        let AuthPhase::Lookup { method, recheck } =
            std::mem::replace(&mut c.login().auth, AuthPhase::None)
        else {
            return;
        };
        let user = c.user.clone();
        match (result, recheck) {
            (FetchResult::Error(e), _) => self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::CONNECTION_FAILURE,
                &format!("auth_query: could not look up user \"{user}\": {e}"),
            ),
            (FetchResult::Found(secret), Some(recheck)) => {
                let ok = recheck_passes(&user, &secret, &recheck);
                c.login().fetched = Some(secret);
                self.recheck_result(cref, ok);
            }
            (FetchResult::Found(secret), None) => {
                self.begin_auth_fetched(cref, method, Some(secret))
            }
            (FetchResult::NoSuchUser | FetchResult::Unusable(_), Some(_)) => {
                self.recheck_result(cref, false)
            }
            (FetchResult::NoSuchUser | FetchResult::Unusable(_), None) => {
                self.begin_auth_fetched(cref, method, None)
            }
        }
    }

    fn recheck_result(&mut self, cref: ConnRef, ok: bool) {
        if ok {
            self.login_ok(cref);
        } else {
            self.refuse_password(cref);
        }
    }

    /// [`Worker::begin_auth`] with a secret from auth_query (`None`: the user
    /// does not exist, or has no usable password).
    fn begin_auth_fetched(
        &mut self,
        cref: ConnRef,
        method: HbaMethod,
        secret: Option<Arc<Secret>>,
    ) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        let auth = secret.as_deref().map(UserAuth::from_secret);
        c.login().fetched = secret;
        self.begin_auth(cref, method, auth);
    }

    /// Starts the exchange `method` asks for, against the user's secrets (`None`: an
    /// unknown user, who goes through the same exchange and fails at its end).
    pub(super) fn begin_auth(&mut self, cref: ConnRef, method: HbaMethod, auth: Option<UserAuth>) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        let user = c.user.clone();
        c.login().secrets = auth.clone().map(Box::new);
        c.state = ClientState::Auth;
        c.login().method = method.as_str();
        c.auth_source = match method {
            HbaMethod::Trust => "trust",
            HbaMethod::Cert => "cert",
            _ if c.login().fetched.is_some() => "auth_query",
            _ => "config",
        };
        self.scratch.clear();
        match method {
            HbaMethod::Trust | HbaMethod::Cert => {
                let cn = c
                    .tls
                    .as_ref()
                    .and_then(|t| tls::peer_cert_common_name(&t.conn));
                let refusal = if auth.is_none() {
                    Some(format!("role \"{user}\" does not exist"))
                } else if method == HbaMethod::Cert && cn.as_deref() != Some(user.as_str()) {
                    Some(format!(
                        "certificate authentication failed for user \"{user}\""
                    ))
                } else {
                    None
                };
                match refusal {
                    Some(message) => self.fail_client(
                        cref,
                        Severity::Fatal,
                        sqlstate::INVALID_AUTHORIZATION,
                        &message,
                    ),
                    None => self.login_ok(cref),
                }
                return;
            }
            HbaMethod::Reject => {
                // auth_method turns reject lines into errors; nothing reaches here.
                self.close_client(cref, "rejected");
                return;
            }
            HbaMethod::Password => {
                c.login().auth = AuthPhase::Cleartext;
                protocol::auth_request(&mut self.scratch, auth_code::CLEARTEXT, &[]);
            }
            // md5 lets users whose verifier is SCRAM in with SCRAM, as PostgreSQL does.
            HbaMethod::Md5 if auth.as_ref().is_none_or(|a| a.md5.is_some()) => {
                let mut salt = [0u8; 4];
                fill_random(&mut salt);
                c.login().auth = AuthPhase::Md5 { salt };
                protocol::auth_request(&mut self.scratch, auth_code::MD5, &salt);
            }
            HbaMethod::Md5 | HbaMethod::ScramSha256 => {
                let secret = auth
                    .and_then(|a| a.scram)
                    .unwrap_or_else(|| mock_secret().clone());
                let plus = match (&c.tls, &self.snap.client_tls) {
                    (Some(_), Some(t)) => t.end_point_hash.clone(),
                    _ => None,
                };
                let offered = match plus {
                    Some(_) => ChannelBinding::OfferedNotSelected.mechanisms(),
                    None => ChannelBinding::NotOffered.mechanisms(),
                };
                protocol::auth_sasl_mechanisms(&mut self.scratch, offered);
                c.login().auth = AuthPhase::ScramFirst {
                    secret: Box::new(secret),
                    plus,
                };
            }
        }
        c.outbuf.extend(&mut self.bufs, &self.scratch);
        self.flush_client(cref);
        // A client may have pipelined its password already.
        self.client_auth(cref);
    }

    /// How this client must authenticate: `auth_type`, or with "hba" the first matching
    /// rule. Err is the refusal for a reject line or no matching line.
    fn auth_method(
        &mut self,
        cref: ConnRef,
        database: &str,
        user: &str,
    ) -> Result<HbaMethod, String> {
        let rules = self.snap.hba.clone();
        let Some(c) = client_at!(self, cref) else {
            return Err("client gone".into());
        };
        Ok(match self.snap.config.pooler.auth_type {
            AuthType::Trust => HbaMethod::Trust,
            AuthType::Plain => HbaMethod::Password,
            AuthType::Md5 => HbaMethod::Md5,
            AuthType::ScramSha256 => HbaMethod::ScramSha256,
            AuthType::Hba => {
                let (peer, local) = match &c.stream {
                    Stream::Tcp(s) => (
                        s.peer_addr().ok().map(|a| a.ip()),
                        s.local_addr().ok().map(|a| a.ip()),
                    ),
                    Stream::Unix(_) => (None, None),
                };
                let tls = c.tls.is_some();
                let local: Vec<_> = local.into_iter().collect();
                let rule = rules
                    .as_ref()
                    .and_then(|r| r.find(peer, tls, database, user, &local));
                match rule.map(|r| r.method) {
                    None => return Err(hba::no_entry_message(peer, tls, database, user)),
                    Some(HbaMethod::Reject) => {
                        return Err(hba::reject_message(peer, tls, database, user))
                    }
                    Some(m) => m,
                }
            }
        })
    }

    /// client_tls_mode require and verify-*: TCP clients must use TLS (unix sockets are
    /// local and exempt); verify-full also wants the certificate's CN to be the user.
    fn check_client_tls(&mut self, cref: ConnRef, user: &str) -> Result<(), String> {
        let mode = self.snap.config.tls.client_tls_mode;
        let Some(c) = client_at!(self, cref) else {
            return Ok(());
        };
        let tcp = matches!(c.stream, Stream::Tcp(_));
        let required = matches!(
            mode,
            ClientTlsMode::Require | ClientTlsMode::VerifyCa | ClientTlsMode::VerifyFull
        );
        match &c.tls {
            None if tcp && required => {
                Err("TLS required: connect with sslmode=require or stronger".into())
            }
            Some(t) if mode == ClientTlsMode::VerifyFull => {
                match tls::peer_cert_common_name(&t.conn) {
                    Some(cn) if cn == user => Ok(()),
                    Some(_) => Err(format!(
                        "certificate validation (clientcert=verify-full) failed for user \"{user}\": CN mismatch"
                    )),
                    None => Err(format!(
                        "certificate validation (clientcert=verify-full) failed for user \"{user}\": no certificate"
                    )),
                }
            }
            _ => Ok(()),
        }
    }

    /// A password check failed. With a secret from auth_query the password
    /// may have changed in PostgreSQL: the cache decides whether to refetch,
    /// and an md5 or cleartext answer is checked again against the new
    /// secret.
    fn password_failed(&mut self, cref: ConnRef, recheck: Option<Recheck>) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        let (Some(checked), Some(auth_query)) = (
            c.login().fetched.clone(),
            self.snap.auth_queries.get(&c.database).cloned(),
        ) else {
            self.refuse_password(cref);
            return;
        };
        let user = c.user.clone();
        let outcome =
            auth_query
                .cache()
                .password_failed(&user, &checked, (self.id, cref), Instant::now());
        match (outcome, recheck) {
            (Refetch::Fetch, Some(recheck)) => {
                self.await_lookup(cref, HbaMethod::Reject, Some(recheck));
                self.fetch(&auth_query, &user);
            }
            (Refetch::Fetch, None) => {
                self.fetch(&auth_query, &user);
                self.refuse_password(cref);
            }
            (Refetch::Wait, Some(recheck)) => {
                self.await_lookup(cref, HbaMethod::Reject, Some(recheck))
            }
            (Refetch::Newer(secret), Some(recheck)) => {
                let ok = recheck_passes(&user, &secret, &recheck);
                if let Some(c) = client_at!(self, cref) {
                    c.login().fetched = Some(secret);
                }
                self.recheck_result(cref, ok);
            }
            (Refetch::Wait | Refetch::Newer(_) | Refetch::Deny, _) => self.refuse_password(cref),
        }
    }

    fn refuse_password(&mut self, cref: ConnRef) {
        if let Some(c) = client_at!(self, cref) {
            self.shared.control.counters.auth(c.login().method, false);
        }
        let user = client_at!(self, cref)
            .map(|c| c.user.clone())
            .unwrap_or_default();
        log::info!("password authentication failed for user \"{user}\"");
        self.fail_client(
            cref,
            Severity::Fatal,
            sqlstate::INVALID_PASSWORD,
            &format!("password authentication failed for user \"{user}\""),
        );
    }

    /// The client's next whole message, taken from its input, for the states
    /// that read messages one at a time (authentication, the admin console).
    /// None: not all here yet, or the client was failed for a bad header or a
    /// message longer than `max_len` (`what` names it in the error).
    pub(super) fn take_message(
        &mut self,
        cref: ConnRef,
        max_len: usize,
        what: &str,
    ) -> Option<(u8, Vec<u8>)> {
        let c = client_at!(self, cref)?;
        let (tag, len) = match protocol::parse_header(c.inbuf.pending()) {
            Ok(Some(h)) => h,
            Ok(None) => return None,
            Err(e) => {
                let message = format!("invalid {what}: {e}");
                self.fail_client(
                    cref,
                    Severity::Fatal,
                    sqlstate::PROTOCOL_VIOLATION,
                    &message,
                );
                return None;
            }
        };
        if len > max_len {
            let message = format!("{what} too long");
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::PROTOCOL_VIOLATION,
                &message,
            );
            return None;
        }
        if c.inbuf.len() < len {
            c.inbuf.reserve_message(&mut self.bufs, len);
            return None;
        }
        let body = c.inbuf.pending()[5..len].to_vec();
        c.inbuf.consume(len);
        Some((tag, body))
    }

    pub(super) fn client_auth(&mut self, cref: ConnRef) {
        let Some((tag, body)) = self.take_message(cref, 64 * 1024, "authentication message") else {
            return;
        };
        if tag != protocol::frontend::PASSWORD {
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::PROTOCOL_VIOLATION,
                &format!(
                    "expected password response, got message type {}",
                    char::from(tag).escape_default()
                ),
            );
            return;
        }
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        let phase = std::mem::replace(&mut c.login().auth, AuthPhase::None);
        let auth = c.login().secrets.as_deref().cloned();
        let user = c.user.clone();
        match phase {
            AuthPhase::None | AuthPhase::Lookup { .. } => {
                self.fail_client(
                    cref,
                    Severity::Fatal,
                    sqlstate::PROTOCOL_VIOLATION,
                    "unexpected password message",
                );
            }
            AuthPhase::Cleartext => {
                let password = Reader::new(&body).cstr().unwrap_or_default().to_owned();
                let ok = auth.is_some_and(|a| verify_plain(&user, &a, &password));
                if ok {
                    self.login_ok(cref);
                } else {
                    self.password_failed(cref, Some(Recheck::Cleartext(password)));
                }
            }
            AuthPhase::Md5 { salt } => {
                let response = Reader::new(&body).cstr_bytes().unwrap_or_default();
                let ok = auth
                    .and_then(|a| a.md5)
                    .is_some_and(|h| md5_verify(&h, salt, response));
                if ok {
                    self.login_ok(cref);
                } else {
                    let response = response.to_vec();
                    self.password_failed(cref, Some(Recheck::Md5 { salt, response }));
                }
            }
            AuthPhase::ScramFirst { secret, plus } => {
                let mut r = Reader::new(&body);
                let mechanism = r.cstr().unwrap_or_default();
                let binding = match (mechanism, plus) {
                    (MECHANISM, None) => Some(ChannelBinding::NotOffered),
                    (MECHANISM, Some(_)) => Some(ChannelBinding::OfferedNotSelected),
                    (MECHANISM_PLUS, Some(hash)) => Some(ChannelBinding::TlsServerEndPoint(hash)),
                    _ => None,
                };
                let Some(binding) = binding else {
                    self.fail_client(
                        cref,
                        Severity::Fatal,
                        sqlstate::PROTOCOL_VIOLATION,
                        "client selected an invalid SASL authentication mechanism",
                    );
                    return;
                };
                let mut server = Box::new(ScramServer::new_with_channel_binding(*secret, binding));
                let data_len = r.i32().unwrap_or(-1);
                let data = r.remaining();
                if data_len < 0 || data_len as usize != data.len() {
                    self.fail_client(
                        cref,
                        Severity::Fatal,
                        sqlstate::PROTOCOL_VIOLATION,
                        "malformed SASLInitialResponse",
                    );
                    return;
                }
                match server.server_first(data) {
                    Ok(first) => {
                        self.scratch.clear();
                        protocol::auth_request(&mut self.scratch, auth_code::SASL_CONTINUE, &first);
                        let Some(c) = client_at!(self, cref) else {
                            return;
                        };
                        c.outbuf.extend(&mut self.bufs, &self.scratch);
                        c.login().auth = AuthPhase::ScramFinal(server);
                        self.flush_client(cref);
                        self.client_auth(cref);
                    }
                    Err(e) => self.fail_client(
                        cref,
                        Severity::Fatal,
                        e.sqlstate(),
                        &format!("SCRAM exchange failed: {e}"),
                    ),
                }
            }
            AuthPhase::ScramFinal(mut server) => match server.server_final(&body) {
                Ok((last, client_key)) => {
                    let Some(auth) = auth else {
                        self.password_failed(cref, None);
                        return;
                    };
                    self.scratch.clear();
                    protocol::auth_request(&mut self.scratch, auth_code::SASL_FINAL, &last);
                    let Some(c) = client_at!(self, cref) else {
                        return;
                    };
                    c.outbuf.extend(&mut self.bufs, &self.scratch);
                    c.login().scram_keys = auth.scram.map(|s| (client_key, s.server_key));
                    self.login_ok(cref);
                }
                Err(crate::auth::scram::ScramError::WrongProof) => self.password_failed(cref, None),
                Err(e) => self.fail_client(
                    cref,
                    Severity::Fatal,
                    e.sqlstate(),
                    &format!("SCRAM exchange failed: {e}"),
                ),
            },
        }
    }

    /// Authentication succeeded: join the pool and greet the client.
    fn login_ok(&mut self, cref: ConnRef) {
        let snap = self.snap.clone();
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        // Taken, not borrowed: the exchange is over and an idle client keeps none of it.
        let done = c.login.take().unwrap_or_default();
        self.shared.control.counters.auth(done.method, true);
        if c.admin.is_some() {
            self.admin_welcome(cref);
            return;
        }
        let login = match &done.fetched {
            Some(secret) => Login::AuthQuery(secret),
            None => Login::Static,
        };
        let Some((key, spec)) = snap.pool_for(&c.database, &c.user, login) else {
            let db = c.database.clone();
            self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::INVALID_CATALOG_NAME,
                &format!("database \"{db}\" does not exist"),
            );
            return;
        };
        let passthrough = key.user == c.user;
        let pool = match spec.origin {
            PoolOrigin::Dynamic { .. } => {
                let max = snap
                    .auth_queries
                    .get(&c.database)
                    .map_or(u32::MAX, |a| a.config.max_dynamic_pools);
                let credential = spec.target.credential.clone();
                let Some(pool) = self
                    .shared
                    .registry
                    .get_or_create_dynamic(key, || spec, max)
                else {
                    let db = c.database.clone();
                    log::warn!(
                        "database {db}: max_dynamic_pools ({max}) reached; refusing user {:?}",
                        c.user
                    );
                    self.fail_client(
                        cref,
                        Severity::Fatal,
                        sqlstate::TOO_MANY_CONNECTIONS,
                        &format!("too many per-user pools for database \"{db}\" (max_dynamic_pools = {max})"),
                    );
                    return;
                };
                // A refetch may have brought a new secret: new server logins
                // use it; open servers stay, PostgreSQL keeps their sessions.
                pool.adopt_credential(credential);
                pool
            }
            _ => self.shared.registry.get_or_create(key, || spec),
        };
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        {
            let mut st = pool.lock();
            c.mode = st.settings.pool_mode;
            if let (true, ServerCredential::ScramSecret(_), None, Some((ck, sk))) = (
                passthrough,
                &st.target.credential,
                &st.scram_keys,
                done.scram_keys,
            ) {
                st.scram_keys = Some(crate::pool::ScramKeys {
                    salt: Vec::new(),
                    iterations: 0,
                    client_key: ck,
                    server_key: sk,
                });
            }
        }
        let mut key_bytes = [0u8; 8];
        fill_random(&mut key_bytes);
        let cancel = (
            u32::from_be_bytes([key_bytes[0], key_bytes[1], key_bytes[2], key_bytes[3]])
                & 0x7fff_ffff,
            u32::from_be_bytes([key_bytes[4], key_bytes[5], key_bytes[6], key_bytes[7]]),
        );
        c.cancel_key = Some(cancel);
        c.pool = Some(pool.clone());
        (c.limits, c.rules) = self.snap.guardrails(&c.database, &c.user);
        log::debug!(
            "client {} {}@{} from {} logged in",
            c.id,
            c.user,
            c.database,
            c.peer
        );
        self.shared.lock_cancels().insert(cancel, (self.id, cref));
        self.scratch.clear();
        protocol::auth_request(&mut self.scratch, auth_code::OK, &[]);
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        c.outbuf.extend(&mut self.bufs, &self.scratch);
        let defaults = pool.lock().default_params.clone();
        match defaults {
            Some(d) => {
                self.send_welcome(cref, &d);
                if let Some(c) = client_at!(self, cref) {
                    c.state = ClientState::Idle;
                    if !c.inbuf.is_empty() {
                        self.client_idle_input(cref);
                    }
                }
            }
            None => {
                c.state = ClientState::WaitingLogin;
                self.flush_client(cref);
                self.request_server(cref);
            }
        }
    }

    /// ParameterStatus for every server parameter (with the client's own values where it
    /// set them), BackendKeyData with the pooler's key, ReadyForQuery.
    pub(super) fn send_welcome(&mut self, cref: ConnRef, defaults: &Arc<Vec<(String, String)>>) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        self.scratch.clear();
        for (name, value) in defaults.iter() {
            let lower = name.to_ascii_lowercase();
            let shown = if params::is_reported(&lower) {
                match c.params.get(&lower) {
                    Some(v) => v.to_owned(),
                    None => {
                        c.params.set(&lower, value);
                        value.clone()
                    }
                }
            } else {
                value.clone()
            };
            protocol::parameter_status(&mut self.scratch, name, &shown);
        }
        if let Some(pool) = &c.pool {
            let own = std::mem::take(&mut c.params);
            c.params = own.share(&mut pool.lock().client_params, SHARED_PARAM_SETS);
        }
        let (pid, key) = c.cancel_key.unwrap_or((0, 0));
        protocol::backend_key_data(&mut self.scratch, pid, key);
        protocol::ready_for_query(&mut self.scratch, b'I');
        c.outbuf.extend(&mut self.bufs, &self.scratch);
        self.flush_client(cref);
    }
}

/// Distinct client settings sets a pool keeps for sharing: one per kind of client
/// (application, driver) is the common case.
const SHARED_PARAM_SETS: usize = 8;

fn recheck_passes(user: &str, secret: &Secret, recheck: &Recheck) -> bool {
    let auth = UserAuth::from_secret(secret);
    match recheck {
        Recheck::Md5 { salt, response } => {
            auth.md5.is_some_and(|h| md5_verify(&h, *salt, response))
        }
        Recheck::Cleartext(password) => verify_plain(user, &auth, password),
    }
}

fn verify_plain(user: &str, auth: &UserAuth, password: &str) -> bool {
    if let Some(p) = &auth.plain {
        return crate::auth::ct_eq(p.as_bytes(), password.as_bytes());
    }
    if let Some(hash) = &auth.md5 {
        let derived = md5_password_hash(user, password);
        return crate::auth::ct_eq(derived.as_bytes(), hash.as_bytes());
    }
    if let Some(secret) = &auth.scram {
        let derived = ScramSecret::from_password(password, &secret.salt, secret.iterations);
        return crate::auth::ct_eq(&derived.stored_key, &secret.stored_key);
    }
    false
}
