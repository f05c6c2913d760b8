//! Server connections: non-blocking connect, startup and authentication against
//! PostgreSQL, and the small pieces around them (goodbye, cancel).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::{Interest, Token};

use super::{server_token, Server, ServerState, Worker};
use crate::auth::md5::{md5_password_hash, md5_salted_response};
use crate::auth::scram::{ScramClient, ScramCredential};
use crate::config::ServerTlsMode;
use crate::net::tls::{HandshakeProgress, TlsStream};
use crate::net::{self, ServerAddr};
use crate::params::{self, ParamSet};
use crate::pool::{ConnRef, Pool, ScramKeys, ServerConn, ServerCredential};
use crate::protocol::{self, auth_code, backend, Reader};

/// Login progress of one server connection.
#[derive(Default)]
pub struct Login {
    /// ParameterStatus values received during login.
    pub params: Vec<(String, String)>,
    scram: Option<Box<ScramClient>>,
    /// The SCRAM login used cached keys; a failure must drop them.
    used_cached_keys: bool,
}

/// The settings a fresh (or freshly reset) server has: the reported ones from login.
pub fn login_params(reported: &[(String, String)]) -> ParamSet {
    let mut set = ParamSet::default();
    for (name, value) in reported {
        let lower = name.to_ascii_lowercase();
        if params::is_reported(&lower) {
            set.set(&lower, value);
        }
    }
    set
}

/// Sends a CancelRequest to PostgreSQL on a short-lived thread: the connect and write are
/// blocking and must not run on a reactor.
/// Sends a CancelRequest on a connection of its own, from a short-lived thread, then
/// calls `delivered` once PostgreSQL has closed that connection: it has signalled the
/// backend by then (or the attempt failed), so a later request cannot be hit by it.
pub fn send_cancel(
    addr: ServerAddr,
    pid: u32,
    key: u32,
    delivered: impl FnOnce() + Send + 'static,
) {
    let mut packet = Vec::with_capacity(16);
    protocol::cancel_request(&mut packet, pid, key);
    let spawned = std::thread::Builder::new()
        .name("cancel".into())
        .spawn(move || {
            let timeout = std::time::Duration::from_secs(5);
            fn deliver(mut s: impl Read + Write, packet: &[u8]) -> std::io::Result<()> {
                s.write_all(packet)?;
                // PostgreSQL answers nothing; it closes once the backend is signalled.
                let mut sink = [0u8; 64];
                while s.read(&mut sink)? > 0 {}
                Ok(())
            }
            let result = match &addr {
                ServerAddr::Tcp(addrs) => match addrs.first() {
                    Some(a) => std::net::TcpStream::connect_timeout(a, timeout).and_then(|s| {
                        s.set_read_timeout(Some(timeout))?;
                        deliver(s, &packet)
                    }),
                    None => Ok(()),
                },
                ServerAddr::Unix(path) => {
                    std::os::unix::net::UnixStream::connect(path).and_then(|s| {
                        s.set_read_timeout(Some(timeout))?;
                        deliver(s, &packet)
                    })
                }
            };
            if let Err(e) = result {
                log::warn!("cancel request to {addr} failed: {e}");
            }
            delivered();
        });
    if let Err(e) = spawned {
        log::warn!("cannot start cancel thread: {e}");
    }
}

impl Worker {
    /// Opens one server for `pool`; capacity was reserved by the caller.
    pub(super) fn launch_server(&mut self, pool: Arc<Pool>) {
        let addr = pool.lock().target.addr.clone();
        let stream = match net::connect(&addr) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "pool {}@{}: cannot connect to {addr}: {e}",
                    pool.key.user,
                    pool.key.database
                );
                let waiters = pool.connect_failed();
                self.fail_waiters(waiters, &format!("{addr}: {e}"), None);
                return;
            }
        };
        let now = Instant::now();
        let generation = self.next_gen();
        let entry = self.servers.vacant_entry();
        let index = entry.key();
        let pool_generation = pool.lock().generation;
        let conn = Box::new(ServerConn {
            id: self
                .shared
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            stream,
            tls: None,
            backend_pid: 0,
            backend_key: 0,
            params: ParamSet::default(),
            reset_params: ParamSet::default(),
            prepared: Default::default(),
            prepared_tick: 0,
            created: now,
            last_used: now,
            generation: pool_generation,
            parked_on: None,
        });
        let deadline = now + self.snap.config.pooler.server_connect_timeout;
        let mut s = Server::new(
            generation,
            conn,
            pool,
            ServerState::Connecting,
            Some(deadline),
        );
        let id = s.conn.id;
        let tok: Token = server_token(id);
        if let Err(e) = self.poll.registry().register(
            &mut s.conn.stream,
            tok,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            let pool = s.pool.clone();
            drop(s);
            let waiters = pool.connect_failed();
            self.fail_waiters(waiters, &format!("cannot register socket: {e}"), None);
            return;
        }
        entry.insert(s);
        self.server_slots.insert(id, ConnRef { index, generation });
    }

    /// Writability while connecting: the connect finished, one way or the other.
    pub(super) fn server_connected(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        match s.conn.stream.take_error() {
            Ok(Some(e)) | Err(e) => {
                let reason = format!("{}: {e}", s.pool.lock().target.addr);
                self.server_login_failed(sref, &reason, None);
                return;
            }
            Ok(None) => {}
        }
        if !s.conn.stream.is_connected() {
            return;
        }
        let wants_tls = self.snap.server_tls.is_some()
            && matches!(s.pool.lock().target.addr, ServerAddr::Tcp(_));
        if wants_tls {
            self.scratch.clear();
            protocol::begin(&mut self.scratch, 0)
                .i32(protocol::SSL_REQUEST_CODE as i32)
                .finish();
            s.outbuf.extend(&mut self.bufs, &self.scratch);
            s.state = ServerState::SslRequest;
            self.flush_server(sref);
            self.drive_server(sref);
        } else {
            self.send_startup(sref);
        }
    }

    fn send_startup(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        let (user, dbname, read_only) = {
            let st = s.pool.lock();
            (
                st.target.user.clone(),
                st.target.dbname.clone(),
                st.settings.read_only,
            )
        };
        self.scratch.clear();
        let mut startup = vec![("user", user.as_str()), ("database", dbname.as_str())];
        if read_only {
            startup.push(("default_transaction_read_only", "on"));
        }
        protocol::startup_message(&mut self.scratch, &startup);
        s.outbuf.extend(&mut self.bufs, &self.scratch);
        s.state = ServerState::Login;
        self.flush_server(sref);
        self.drive_server(sref);
    }

    /// PostgreSQL's one-byte answer to SSLRequest: 'S' starts the handshake, 'N' means
    /// no TLS, which only server_tls_mode = prefer accepts.
    pub(super) fn server_ssl_answer(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        let Some(&answer) = s.inbuf.pending().first() else {
            return;
        };
        s.inbuf.consume(1);
        let mode = self.snap.config.tls.server_tls_mode;
        let config = self.snap.server_tls.clone();
        match (answer, config) {
            (b'S', Some(config)) => {
                let host = s.pool.lock().target.host.clone();
                match TlsStream::connect(config, &host) {
                    Ok(t) => {
                        s.conn.tls = Some(Box::new(t));
                        s.state = ServerState::TlsHandshake;
                        s.readable = true;
                        self.drive_server(sref);
                    }
                    Err(e) => self.server_login_failed(sref, &format!("TLS setup: {e}"), None),
                }
            }
            (b'N', _) if mode == ServerTlsMode::Prefer => self.send_startup(sref),
            (b'N', _) => self.server_login_failed(
                sref,
                &format!("server does not support TLS, and server_tls_mode is {mode}"),
                None,
            ),
            (other, _) => self.server_login_failed(
                sref,
                &format!(
                    "unexpected answer {:?} to SSLRequest",
                    char::from(other).escape_default().to_string()
                ),
                None,
            ),
        }
    }

    /// Moves the TLS handshake with PostgreSQL on; returns whether to go on reading.
    pub(super) fn server_handshake(&mut self, sref: ConnRef) -> bool {
        let Some(s) = server_at!(self, sref) else {
            return false;
        };
        let Some(t) = s.conn.tls.as_deref_mut() else {
            return false;
        };
        match t.handshake_step(&mut s.conn.stream) {
            Ok(HandshakeProgress::Done) => {
                s.readable = true;
                self.send_startup(sref);
                false
            }
            Ok(HandshakeProgress::InProgress) => {
                s.readable = false;
                false
            }
            Err(e) => {
                self.server_login_failed(
                    sref,
                    &format!("TLS handshake with server failed: {e}"),
                    None,
                );
                false
            }
        }
    }

    /// Connect or login failed: tell waiters (with PostgreSQL's own error when there is
    /// one) and forget the server.
    pub(super) fn server_login_failed(
        &mut self,
        sref: ConnRef,
        reason: &str,
        error: Option<Vec<u8>>,
    ) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        let pool = s.pool.clone();
        let dynamic = {
            let mut st = pool.lock();
            if s.login.used_cached_keys {
                st.scram_keys = None;
            }
            matches!(st.origin, crate::pool::PoolOrigin::Dynamic { .. })
        };
        if dynamic {
            // The user logs in to PostgreSQL with what auth_query returned;
            // if that changed in PostgreSQL since, the next login must fetch
            // it again rather than be let in with the stale one.
            if let Some(auth_query) = self.snap.auth_queries.get(&pool.key.database) {
                auth_query.cache().invalidate(&pool.key.user);
            }
        }
        log::warn!(
            "pool {}@{}: server login failed: {reason}",
            pool.key.user,
            pool.key.database
        );
        self.detach_server_any(sref);
        let waiters = pool.connect_failed();
        self.fail_waiters(waiters, reason, error);
    }

    pub(super) fn server_login_input(&mut self, sref: ConnRef) {
        loop {
            let Some(s) = server_at!(self, sref) else {
                return;
            };
            let (tag, len) = match protocol::parse_header(s.inbuf.pending()) {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => {
                    self.server_login_failed(sref, &format!("invalid message: {e}"), None);
                    return;
                }
            };
            if s.inbuf.len() < len {
                s.inbuf.reserve_message(&mut self.bufs, len);
                return;
            }
            let msg = s.inbuf.pending()[..len].to_vec();
            s.inbuf.consume(len);
            let body = &msg[5..];
            match tag {
                backend::AUTHENTICATION => {
                    if let Err(reason) = self.server_auth_step(sref, body) {
                        self.server_login_failed(sref, &reason, None);
                        return;
                    }
                }
                backend::PARAMETER_STATUS => {
                    let mut r = Reader::new(body);
                    if let (Ok(n), Ok(v)) = (r.cstr(), r.cstr()) {
                        s.login.params.push((n.to_owned(), v.to_owned()));
                    }
                }
                backend::BACKEND_KEY_DATA => {
                    let mut r = Reader::new(body);
                    s.conn.backend_pid = r.i32().unwrap_or(0) as u32;
                    s.conn.backend_key = r.i32().unwrap_or(0) as u32;
                }
                backend::ERROR_RESPONSE => {
                    let fields = protocol::parse_error_fields(body);
                    let reason = format!("{}: {}", fields.code, fields.message);
                    self.server_login_failed(sref, &reason, Some(msg));
                    return;
                }
                backend::READY_FOR_QUERY => {
                    let reported = login_params(&s.login.params);
                    s.conn.params = reported.clone();
                    s.conn.reset_params = reported;
                    s.state = ServerState::Linked;
                    s.deadline = None;
                    s.login.scram = None;
                    let pool = s.pool.clone();
                    log::debug!(
                        "server {} for {}@{} ready (backend pid {})",
                        s.conn.id,
                        pool.key.user,
                        pool.key.database,
                        s.conn.backend_pid
                    );
                    pool.connect_done(&s.login.params);
                    self.release_server(sref);
                    return;
                }
                _ => {}
            }
        }
    }

    fn server_auth_step(&mut self, sref: ConnRef, body: &[u8]) -> Result<(), String> {
        let Some(s) = server_at!(self, sref) else {
            return Ok(());
        };
        let mut r = Reader::new(body);
        let code = r.i32().map_err(|e| e.to_string())?;
        let (user, credential, cached) = {
            let st = s.pool.lock();
            (
                st.target.user.clone(),
                st.target.credential.clone(),
                st.scram_keys.clone(),
            )
        };
        self.scratch.clear();
        match code {
            auth_code::OK => return Ok(()),
            auth_code::CLEARTEXT => match credential {
                ServerCredential::Plain(pw) => {
                    protocol::password_message(&mut self.scratch, pw.as_bytes())
                }
                _ => {
                    return Err(format!(
                        "server asks for a cleartext password for \"{user}\" but the pooler has no plain password"
                    ))
                }
            },
            auth_code::MD5 => {
                let salt = r.bytes(4).map_err(|e| e.to_string())?;
                let salt = [salt[0], salt[1], salt[2], salt[3]];
                let hash = match credential {
                    ServerCredential::Plain(pw) => md5_password_hash(&user, &pw),
                    ServerCredential::Md5Hash(h) => h,
                    _ => {
                        return Err(format!(
                            "server asks for md5 for \"{user}\" but the pooler has no password or md5 hash"
                        ))
                    }
                };
                let response = md5_salted_response(&hash, salt);
                protocol::password_message(&mut self.scratch, response.as_bytes());
            }
            auth_code::SASL => {
                let mut offered = false;
                while let Ok(m) = r.cstr() {
                    if m.is_empty() {
                        break;
                    }
                    offered |= m == "SCRAM-SHA-256";
                }
                if !offered {
                    return Err("server offers no SASL mechanism the pooler supports".into());
                }
                let (cred, used_cached) = match (cached, credential) {
                    (Some(k), _) => (
                        ScramCredential::Keys {
                            client_key: k.client_key,
                            server_key: k.server_key,
                        },
                        true,
                    ),
                    (None, ServerCredential::Plain(pw)) => (ScramCredential::Password(pw), false),
                    (None, ServerCredential::ScramSecret(_)) => {
                        return Err(format!(
                            "no SCRAM key for \"{user}\" yet: a client must log in with SCRAM first"
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "server asks for SCRAM for \"{user}\" but the pooler has no password"
                        ))
                    }
                };
                let client = ScramClient::new(cred);
                protocol::sasl_initial_response(
                    &mut self.scratch,
                    "SCRAM-SHA-256",
                    &client.client_first(),
                );
                s.login.scram = Some(Box::new(client));
                s.login.used_cached_keys = used_cached;
            }
            auth_code::SASL_CONTINUE => {
                let client = s
                    .login
                    .scram
                    .as_mut()
                    .ok_or("unexpected SASL continue from server")?;
                let reply = client
                    .client_final(r.remaining())
                    .map_err(|e| format!("SCRAM with server failed: {e}"))?;
                protocol::sasl_response(&mut self.scratch, &reply);
            }
            auth_code::SASL_FINAL => {
                let client = s
                    .login
                    .scram
                    .as_ref()
                    .ok_or("unexpected SASL final from server")?;
                client
                    .verify_server_final(r.remaining())
                    .map_err(|e| format!("SCRAM with server failed: {e}"))?;
                if !s.login.used_cached_keys {
                    if let Some((client_key, server_key, salt, iterations)) =
                        client.derived_keys()
                    {
                        s.pool.lock().scram_keys = Some(ScramKeys {
                            salt,
                            iterations,
                            client_key,
                            server_key,
                        });
                    }
                }
                return Ok(());
            }
            other => return Err(format!("server asks for unsupported authentication {other}")),
        }
        let Some(s) = server_at!(self, sref) else {
            return Ok(());
        };
        s.outbuf.extend(&mut self.bufs, &self.scratch);
        self.flush_server(sref);
        Ok(())
    }
}
