//! What a worker tells the admin console and /metrics about its clients and
//! servers. Workers own their connections, so a reader asks every worker
//! through its inbox and merges the answers; nothing on the relay path
//! writes to shared state for the sake of reporting.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant, SystemTime};

use super::{ClientState, ServerState, Worker};
use crate::net::Stream;
use crate::pool::{PoolKey, ServerConn};

#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub database: String,
    pub user: String,
    /// The user of the pool it joined (server_user in shared auth_query pools).
    pub pool_user: Option<String>,
    /// Logged in to the admin console.
    pub admin: bool,
    /// PgBouncer's names: active (logged in, idle or linked), waiting, login.
    pub state: &'static str,
    pub addr: String,
    pub port: u16,
    pub local_addr: String,
    pub local_port: u16,
    pub connect_time: SystemTime,
    pub request_time: SystemTime,
    /// How long it has been waiting for a server, when it is.
    pub wait: Duration,
    pub tls: bool,
    pub auth_source: &'static str,
    pub server_id: Option<u64>,
    pub application_name: String,
    pub prepared_statements: usize,
    /// The pooler-issued BackendKeyData pid.
    pub remote_pid: u32,
}

#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub id: u64,
    pub database: String,
    pub user: String,
    /// PgBouncer's names: active (linked), login, used (resetting).
    pub state: &'static str,
    pub addr: String,
    pub port: u16,
    pub local_addr: String,
    pub local_port: u16,
    pub connect_time: SystemTime,
    pub request_time: SystemTime,
    pub backend_pid: u32,
    pub tls: bool,
    pub prepared_statements: usize,
    pub client_id: Option<u64>,
    /// Logged in under settings a reload or RECONNECT has since replaced.
    pub close_needed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    pub clients: Vec<ClientInfo>,
    pub servers: Vec<ServerInfo>,
}

/// The wall-clock time of an `Instant` in the past.
pub fn wall(t: Instant, now: Instant, now_wall: SystemTime) -> SystemTime {
    now_wall
        .checked_sub(now.saturating_duration_since(t))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn split_addr(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port.parse().unwrap_or(0),
        ),
        None => (addr.to_owned(), 0),
    }
}

fn local_of(stream: &Stream) -> (String, u16) {
    match stream {
        Stream::Tcp(s) => s
            .local_addr()
            .map(|a| (a.ip().to_string(), a.port()))
            .unwrap_or_default(),
        Stream::Unix(_) => ("unix".to_owned(), 0),
    }
}

fn peer_of(stream: &Stream) -> (String, u16) {
    match stream {
        Stream::Tcp(s) => s
            .peer_addr()
            .map(|a| (a.ip().to_string(), a.port()))
            .unwrap_or_default(),
        Stream::Unix(_) => ("unix".to_owned(), 0),
    }
}

/// An idle server, which waits in its pool and belongs to no worker.
pub fn describe_idle(s: &ServerConn, key: &PoolKey, pool_generation: u64) -> ServerInfo {
    let (now, now_wall) = (Instant::now(), SystemTime::now());
    let (addr, port) = peer_of(&s.stream);
    let (local_addr, local_port) = local_of(&s.stream);
    ServerInfo {
        id: s.id,
        database: key.database.clone(),
        user: key.user.clone(),
        state: "idle",
        addr,
        port,
        local_addr,
        local_port,
        connect_time: wall(s.created, now, now_wall),
        request_time: wall(s.last_used, now, now_wall),
        backend_pid: s.backend_pid,
        tls: s.tls.is_some(),
        prepared_statements: s.prepared.len(),
        client_id: None,
        close_needed: s.generation != pool_generation,
    }
}

impl Worker {
    pub(super) fn send_report(&self, reply: SyncSender<WorkerReport>) {
        let _ = reply.send(self.report());
    }

    fn report(&self) -> WorkerReport {
        let (now, now_wall) = (Instant::now(), SystemTime::now());
        let mut out = WorkerReport::default();
        for (_, c) in self.clients.iter() {
            let state = match c.state {
                ClientState::Startup
                | ClientState::TlsHandshake
                | ClientState::Auth
                | ClientState::AuthQuery => "login",
                ClientState::WaitingLogin | ClientState::Waiting => "waiting",
                ClientState::Idle
                | ClientState::Linked
                | ClientState::Admin
                | ClientState::AdminBusy => "active",
            };
            let (addr, port) = split_addr(&c.peer);
            let (local_addr, local_port) = local_of(&c.stream);
            let waiting = matches!(c.state, ClientState::Waiting | ClientState::WaitingLogin);
            let server_id = c
                .server
                .and_then(|s| {
                    self.servers
                        .get(s.index)
                        .filter(|x| x.generation == s.generation)
                })
                .map(|s| s.conn.id);
            out.clients.push(ClientInfo {
                id: c.id,
                database: c.database.clone(),
                user: c.user.clone(),
                pool_user: c.pool.as_ref().map(|p| p.key.user.clone()),
                admin: c.admin.is_some(),
                state,
                addr,
                port,
                local_addr,
                local_port,
                connect_time: wall(c.connected_at, now, now_wall),
                request_time: wall(c.last_activity, now, now_wall),
                wait: if waiting {
                    now.saturating_duration_since(c.wait_started)
                } else {
                    Duration::ZERO
                },
                tls: c.tls.is_some(),
                auth_source: c.auth_source,
                server_id,
                application_name: c.params.get("application_name").unwrap_or("").to_owned(),
                prepared_statements: c.statements.len(),
                remote_pid: c.cancel_key.map_or(0, |k| k.0),
            });
        }
        for (_, s) in self.servers.iter() {
            let state = match s.state {
                ServerState::Connecting
                | ServerState::SslRequest
                | ServerState::TlsHandshake
                | ServerState::Login => "login",
                ServerState::Linked => "active",
                ServerState::Resetting => "used",
            };
            let (addr, port) = peer_of(&s.conn.stream);
            let (local_addr, local_port) = local_of(&s.conn.stream);
            let client_id = s
                .client
                .and_then(|c| {
                    self.clients
                        .get(c.index)
                        .filter(|x| x.generation == c.generation)
                })
                .map(|c| c.id);
            let close_needed = s.conn.generation != s.pool.lock().generation;
            out.servers.push(ServerInfo {
                id: s.conn.id,
                database: s.pool.key.database.clone(),
                user: s.pool.key.user.clone(),
                state,
                addr,
                port,
                local_addr,
                local_port,
                connect_time: wall(s.conn.created, now, now_wall),
                request_time: wall(s.conn.last_used, now, now_wall),
                backend_pid: s.conn.backend_pid,
                tls: s.conn.tls.is_some(),
                prepared_statements: s.conn.prepared.len(),
                client_id,
                close_needed,
            });
        }
        out
    }
}
