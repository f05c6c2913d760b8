//! A worker: one thread, one mio reactor, a slab of clients and a slab of servers.
//!
//! Sockets are registered once for read and write, edge-triggered; what the kernel said
//! is kept in `readable` flags, cleared on WouldBlock or on a short read of a plain
//! socket (the buffer had room for more, so the socket was empty; a later arrival
//! raises a new edge, and a peer's shutdown is read through to the EOF). That saves the
//! read that would only say WouldBlock: about one syscall in eight per transaction.
//! Each socket gets a bounded number of reads per turn so one busy client cannot starve
//! the rest (the rest of its input is picked up from `deferred` on the next turn).
//!
//! Clients stay on the worker that accepted them. A server belongs to one worker while it
//! is linked or logging in; idle servers live unregistered in the global pool (see
//! `pool`). A released server goes to the first waiter on its own worker, and to the
//! queue's head on another worker (through that worker's inbox: two epoll_ctl calls, a
//! channel message, a wake-up) only when the head has waited more than
//! `pool::HANDOFF_PATIENCE`. Links are `ConnRef`s (slab index + generation), never
//! pointers.

/// The client behind a ConnRef, borrowing only the client slab (so the worker's other
/// fields stay usable alongside it).
macro_rules! client_at {
    ($w:ident, $r:expr) => {{
        let r: ConnRef = $r;
        $w.clients
            .get_mut(r.index)
            .filter(|c| c.generation == r.generation)
    }};
}

/// The server behind a ConnRef, borrowing only the server slab.
macro_rules! server_at {
    ($w:ident, $r:expr) => {{
        let r: ConnRef = $r;
        $w.servers
            .get_mut(r.index)
            .filter(|s| s.generation == r.generation)
    }};
}

mod admin;
mod buf;
mod client;
#[doc(hidden)]
pub mod fuzz;
pub mod relay;
mod report;
mod server;

pub use report::{describe_idle, wall, ClientInfo, ServerInfo, WorkerReport};

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::config::PoolMode;
use crate::net::tls::TlsStream;
use crate::net::{Io, Listener, Stream};
use crate::params::ParamSet;
use crate::pool::{ConnRef, Pool, Registry, ServerConn, Waiter};
use crate::protocol::{self, sqlstate, Severity};
use crate::snapshot::Snapshot;
use buf::{Buf, BufPool, ReadOutcome};
use relay::{Statement, Tracker};

const KIND_LISTENER: usize = 0;
const KIND_CLIENT: usize = 1;
const KIND_SERVER: usize = 2;
const WAKER_TOKEN: Token = Token(usize::MAX);
/// Reads per socket per loop turn before yielding to other sockets.
const READS_PER_TURN: usize = 16;
/// A client sending more than this while waiting for a server is paused.
const WAITING_INPUT_LIMIT: usize = 256 * 1024;
/// How often a worker looks at its timers (login, idle and query timeouts, drains) when
/// no socket wakes it sooner.
const TICK: Duration = Duration::from_millis(100);
/// How often a worker frees the spare relay buffers a whole interval did not use.
const BUF_TRIM_EVERY: Duration = Duration::from_secs(2);
/// Spare trackers a worker keeps: enough for the servers one worker links at once in
/// a busy transaction-mode pool, small enough not to matter when idle.
const SPARE_TRACKERS: usize = 64;
/// A cancel thread that never reports (it could not even start) stops holding its
/// server after this long.
const CANCEL_DELIVERY_LIMIT: Duration = Duration::from_secs(10);
/// Fails the transaction block a result-limit abort left intact (the statement finished
/// before the cancel landed): an unknown literal's cast fails in parse analysis.
const FAIL_TRANSACTION_SQL: &str =
    "SELECT 'transaction failed by the pooler after a result limit'::pg_catalog.int4";
/// During a drain, how long a client that logged in after it began may stay
/// idle before its first request.
const DRAIN_IDLE_LOGIN: Duration = Duration::from_secs(5);
/// How long a drained client is left open after its last response (see close_drained).
const DRAIN_GRACE: Duration = Duration::from_millis(300);

fn token(kind: usize, index: usize, generation: u32) -> Token {
    Token(((generation as usize) << 32) | (index << 2) | kind)
}

/// Servers are registered under their id, not their slab slot: an idle server parked in
/// the pool keeps its registration, and the slot it gets when taken back can differ.
fn server_token(id: u64) -> Token {
    Token(((id as usize) << 2) | KIND_SERVER)
}

fn split_token(t: Token) -> (usize, usize, u32) {
    (t.0 & 3, (t.0 >> 2) & 0x3fff_ffff, (t.0 >> 32) as u32)
}

/// Messages into a worker's inbox (always followed by a wake of its Waker).
pub enum WorkerMsg {
    Reload(Arc<Snapshot>),
    /// A server released on another worker for one of our waiting clients.
    ServerAssigned {
        client: ConnRef,
        server: Box<ServerConn>,
        pool: Arc<Pool>,
    },
    /// A waiting client's pool could not open a server: send it this ErrorResponse.
    FailWaiter {
        client: ConnRef,
        error: Arc<Vec<u8>>,
    },
    Cancel {
        client: ConnRef,
    },
    /// The pooler's own CancelRequest for this server (a guardrail) was delivered.
    CancelDelivered {
        server: ConnRef,
    },
    /// Open one server for this pool (capacity already reserved).
    Launch(Arc<Pool>),
    /// The answer to an admin console query of one of our clients.
    AdminReply {
        client: ConnRef,
        bytes: Vec<u8>,
    },
    /// RESUME: clients held by PAUSE ask for servers again.
    Resume,
    /// KILL db: close its clients and servers now.
    Kill(String),
    /// Describe every client and server of this worker (admin console, metrics).
    Report(std::sync::mpsc::SyncSender<WorkerReport>),
    /// The auth_query lookup a client of ours was waiting for answered.
    AuthQueryDone {
        client: ConnRef,
        result: crate::auth::auth_query::FetchResult,
    },
    Shutdown(ShutdownMode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// SIGINT: stop accepting, let linked clients finish their transaction.
    Drain,
    /// SIGTERM: close everything now.
    Now,
}

pub struct WorkerHandle {
    tx: Sender<WorkerMsg>,
    waker: Arc<Waker>,
    /// The worker's poll, for another worker taking a server parked there.
    registry: mio::Registry,
}

impl WorkerHandle {
    pub fn send(&self, msg: WorkerMsg) {
        if self.tx.send(msg).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// State every worker reads; small and named.
pub struct Shared {
    pub snapshot: RwLock<Arc<Snapshot>>,
    pub registry: Registry,
    /// Pooler-issued cancel keys → the client they belong to.
    pub cancels: Mutex<HashMap<(u32, u32), (usize, ConnRef)>>,
    pub workers: OnceLock<Vec<WorkerHandle>>,
    pub clients: AtomicUsize,
    pub next_id: AtomicU64,
    pub draining: AtomicBool,
    /// Workers still running their loop; the main thread exits when it reaches zero.
    pub running: AtomicUsize,
    /// PAUSE / DISABLE state and event counters.
    pub control: crate::control::ControlState,
    /// Per client address connection counts and rate buckets.
    pub addr_limiter: crate::guard::addr::AddrLimiter,
}

impl Shared {
    pub fn new(snapshot: Arc<Snapshot>) -> Shared {
        Shared {
            snapshot: RwLock::new(snapshot),
            registry: Registry::default(),
            cancels: Mutex::new(HashMap::new()),
            workers: OnceLock::new(),
            clients: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            control: crate::control::ControlState::default(),
            addr_limiter: Default::default(),
        }
    }

    pub fn send_to(&self, worker: usize, msg: WorkerMsg) {
        if let Some(w) = self.workers.get().and_then(|ws| ws.get(worker)) {
            w.send(msg);
        }
    }

    pub fn broadcast(&self, make: impl Fn() -> WorkerMsg) {
        if let Some(ws) = self.workers.get() {
            for w in ws {
                w.send(make());
            }
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock_cancels(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u32), (usize, ConnRef)>> {
        self.cancels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Reading StartupMessage (after optional SSLRequest / GSSENCRequest).
    Startup,
    /// Answered 'S' to SSLRequest; the TLS handshake runs before the StartupMessage.
    TlsHandshake,
    /// Password or SASL exchange in progress.
    Auth,
    /// Waiting for the database's auth_query to look the user up (before the
    /// exchange, or to re-check a password after a refetch).
    AuthQuery,
    /// Logged in to the admin console, between commands.
    Admin,
    /// An admin command is running on a helper thread; input waits.
    AdminBusy,
    /// Authenticated, waiting for a first server to learn the parameters to report.
    WaitingLogin,
    /// Logged in, no server.
    Idle,
    /// Has a request, queued in its pool.
    Waiting,
    Linked,
}

#[derive(Default)]
pub enum AuthPhase {
    #[default]
    None,
    Cleartext,
    Md5 {
        salt: [u8; 4],
    },
    /// AuthenticationSASL sent; `plus` holds our certificate's tls-server-end-point data
    /// when SCRAM-SHA-256-PLUS was offered too.
    ScramFirst {
        secret: Box<crate::auth::scram::ScramSecret>,
        plus: Option<Vec<u8>>,
    },
    ScramFinal(Box<crate::auth::scram::ScramServer>),
    /// In `ClientState::AuthQuery`: the method to run once the secret is
    /// known, or the answer to re-check against a refetched secret.
    Lookup {
        method: crate::auth::hba::HbaMethod,
        recheck: Option<client::Recheck>,
    },
}

#[derive(Default)]
pub struct LoginState {
    auth: AuthPhase,
    /// Client SCRAM login left its ClientKey for SCRAM passthrough to PostgreSQL.
    scram_keys: Option<([u8; 32], [u8; 32])>,
    /// What the password is checked against, set when authentication starts (from
    /// [users], or later from an auth_query lookup).
    secrets: Option<Box<crate::snapshot::UserAuth>>,
    /// The auth_query secret `secrets` came from, to refetch against and to
    /// pick the client's pool.
    fetched: Option<Arc<crate::auth::auth_query::Secret>>,
    /// The authentication method it was asked for (hba names), for /metrics.
    method: &'static str,
}

pub struct Client {
    generation: u32,
    id: u64,
    stream: Stream,
    peer: String,
    state: ClientState,
    inbuf: Buf,
    outbuf: Buf,
    readable: bool,
    /// The peer shut its side: read on to the EOF instead of trusting a short read.
    peer_closed: bool,
    /// Counted in `Shared::clients` (a real login attempt, not a cancel connection).
    counted: bool,
    over_limit: bool,
    /// Has asked for a server since logging in.
    requested: bool,
    /// Registered for writability too: only once a write has found the socket full,
    /// since a fresh registration for it reports writable at once, a wake-up for
    /// nothing on every connection.
    write_interest: bool,
    database: String,
    user: String,
    pool: Option<Arc<Pool>>,
    mode: PoolMode,
    server: Option<ConnRef>,
    params: ParamSet,
    cancel_key: Option<(u32, u32)>,
    statements: HashMap<String, Arc<Statement>>,
    fwd_remaining: usize,
    /// Bytes of a cancelled request still to be dropped as they arrive.
    discard_remaining: usize,
    connected_at: Instant,
    last_activity: Instant,
    wait_started: Instant,
    /// State of the login exchange, dropped once the client has joined its pool: an
    /// idle client should cost little.
    login: Option<Box<LoginState>>,
    /// How it authenticated, for the admin console: config, auth_query, trust, cert.
    auth_source: &'static str,
    /// Connected to the admin console, with these rights.
    admin: Option<crate::control::AdminRole>,
    /// Draining: close at this time unless the client sends a request first.
    drain_at: Option<Instant>,
    /// Why it is being drained when not for shutdown (a reload retired its pool).
    retired_because: Option<&'static str>,
    tls: Option<Box<TlsStream<rustls::ServerConnection>>>,
    /// Since when output has been waiting for a client that reads none of it.
    write_stalled_since: Option<Instant>,
    /// Guardrails in effect, set at login and by each reload.
    limits: crate::config::ClientLimits,
    rules: Option<Arc<crate::guard::StatementRules>>,
    /// Counted by the per-address limits under this address.
    addr_counted: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Connecting,
    /// Sent SSLRequest, waiting for PostgreSQL's one-byte answer.
    SslRequest,
    TlsHandshake,
    Login,
    Linked,
    /// Running server_reset_query after its session-mode client left.
    Resetting,
}

pub struct Server {
    generation: u32,
    conn: Box<ServerConn>,
    pool: Arc<Pool>,
    state: ServerState,
    inbuf: Buf,
    outbuf: Buf,
    readable: bool,
    /// The peer shut its side: read on to the EOF instead of trusting a short read.
    peer_closed: bool,
    writable: bool,
    client: Option<ConnRef>,
    tracker: Tracker,
    status: u8,
    fwd_remaining: usize,
    fwd_to_client: bool,
    /// The pooler's settings sync is running; client messages wait behind it.
    hold_client: bool,
    deadline: Option<Instant>,
    login: server::Login,
    /// When the client's current request / transaction began, for the
    /// query and transaction time statistics.
    query_started: Option<Instant>,
    xact_started: Option<Instant>,
    guard: relay::ResultGuard,
    /// When the pooler's own CancelRequest for this server went out, until it is
    /// delivered: the server must not take a new request (which the late cancel could
    /// hit), so it is neither released nor fed client input until then.
    cancel_sent: Option<Instant>,
}

impl Server {
    fn count_queries(&mut self, ev: &relay::ServerEvents, now: Instant) {
        let stats = &self.pool.stats;
        let busy = !self.tracker.is_empty();
        stats
            .query_count
            .fetch_add(u64::from(ev.queries), Ordering::Relaxed);
        if let Some(t) = self.query_started.take() {
            stats.query_time.observe(now.saturating_duration_since(t));
        }
        if busy {
            self.query_started = Some(now);
        }
        if ev.xacts > 0 {
            stats
                .xact_count
                .fetch_add(u64::from(ev.xacts), Ordering::Relaxed);
            if let Some(t) = self.xact_started.take() {
                stats.xact_time.observe(now.saturating_duration_since(t));
            }
            if busy {
                self.xact_started = Some(now);
            }
        }
    }

    fn new(
        generation: u32,
        conn: Box<ServerConn>,
        pool: Arc<Pool>,
        state: ServerState,
        deadline: Option<Instant>,
    ) -> Server {
        let connected = state != ServerState::Connecting;
        Server {
            generation,
            conn,
            pool,
            state,
            inbuf: Buf::default(),
            outbuf: Buf::default(),
            // Registering an edge-triggered socket that already holds data reports it at
            // once, so a server taken from the pool starts not-readable: no read that
            // would only say WouldBlock.
            readable: false,
            peer_closed: false,
            writable: connected,
            client: None,
            tracker: Tracker::default(),
            status: b'I',
            fwd_remaining: 0,
            fwd_to_client: false,
            hold_client: false,
            deadline,
            login: server::Login::default(),
            query_started: None,
            xact_started: None,
            guard: relay::ResultGuard::default(),
            cancel_sent: None,
        }
    }

    fn relay_side(&mut self) -> relay::ServerSide<'_> {
        relay::ServerSide {
            inbuf: &mut self.inbuf,
            outbuf: &mut self.outbuf,
            fwd_remaining: &mut self.fwd_remaining,
            fwd_to_client: &mut self.fwd_to_client,
            tracker: &mut self.tracker,
            status: &mut self.status,
            params: &mut self.conn.params,
            prepared: &mut self.conn.prepared,
            prepared_tick: &mut self.conn.prepared_tick,
            guard: &mut self.guard,
        }
    }
}

impl Client {
    fn login(&mut self) -> &mut LoginState {
        self.login.get_or_insert_with(Default::default)
    }

    fn relay_side(&mut self) -> relay::ClientSide<'_> {
        relay::ClientSide {
            inbuf: &mut self.inbuf,
            outbuf: &mut self.outbuf,
            fwd_remaining: &mut self.fwd_remaining,
            statements: &mut self.statements,
            params: &mut self.params,
            rules: self.rules.as_deref(),
            limits: self.limits,
        }
    }
}

/// Server ids come from the pooler's own counter, never from a peer, so the maps keyed
/// by them need no flood-resistant hash: SipHash over them was a tenth of the relay's
/// own instructions per transaction (callgrind). One multiply spreads the counter's
/// values over the table.
#[derive(Default, Clone, Copy)]
struct ServerIdHasher(u64);

impl std::hash::Hasher for ServerIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type ServerIdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<ServerIdHasher>>;

pub struct Worker {
    id: usize,
    poll: Poll,
    shared: Arc<Shared>,
    snap: Arc<Snapshot>,
    listeners: Vec<Option<Listener>>,
    inbox: Receiver<WorkerMsg>,
    clients: Slab<Client>,
    servers: Slab<Server>,
    /// Servers in `servers` by id (what their poll token carries).
    server_slots: ServerIdMap<ConnRef>,
    /// Idle servers in their pool whose sockets are still registered here, by id.
    parked: ServerIdMap<std::sync::Weak<Pool>>,
    /// Trackers of servers that left this worker, kept for their queue's capacity: a
    /// transaction-mode server is adopted and released once per transaction, and a new
    /// tracker's first request would allocate.
    spare_trackers: Vec<Tracker>,
    next_generation: u32,
    bufs: BufPool,
    scratch: Vec<u8>,
    message: Vec<u8>,
    deferred_clients: Vec<ConnRef>,
    deferred_servers: Vec<ConnRef>,
    shutdown: Option<ShutdownMode>,
    /// When this loop round began: one clock read per round serves the timestamps a
    /// transaction takes (activity, waits, query times), as PgBouncer's cached time does.
    now: Instant,
    last_tick: Instant,
    bufs_trimmed_at: Instant,
    /// Clients PAUSE holds, to ask for servers again at RESUME.
    held: Vec<ConnRef>,
}

impl Worker {
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        listeners: Vec<Listener>,
    ) -> std::io::Result<(Worker, WorkerHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let registry = poll.registry().try_clone()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut ls = Vec::new();
        for (i, mut l) in listeners.into_iter().enumerate() {
            poll.registry()
                .register(&mut l, token(KIND_LISTENER, i, 0), Interest::READABLE)?;
            ls.push(Some(l));
        }
        let snap = shared.snapshot();
        Ok((
            Worker {
                id,
                poll,
                shared,
                snap,
                listeners: ls,
                inbox: rx,
                clients: Slab::new(),
                servers: Slab::new(),
                server_slots: ServerIdMap::default(),
                parked: ServerIdMap::default(),
                spare_trackers: Vec::new(),
                next_generation: 1,
                bufs: BufPool::default(),
                scratch: Vec::new(),
                message: Vec::new(),
                deferred_clients: Vec::new(),
                deferred_servers: Vec::new(),
                shutdown: None,
                now: Instant::now(),
                last_tick: Instant::now(),
                bufs_trimmed_at: Instant::now(),
                held: Vec::new(),
            },
            WorkerHandle {
                tx,
                waker,
                registry,
            },
        ))
    }

    fn next_gen(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        self.next_generation
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.deferred_clients.is_empty() && self.deferred_servers.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::error!("worker {}: poll failed: {e}", self.id);
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            self.now = Instant::now();
            for ev in events.iter() {
                if ev.token() == WAKER_TOKEN {
                    self.drain_inbox();
                    continue;
                }
                let (kind, index, generation) = split_token(ev.token());
                match kind {
                    KIND_LISTENER => self.accept(index),
                    KIND_CLIENT => {
                        let cref = ConnRef { index, generation };
                        let Some(c) = client_at!(self, cref) else {
                            continue;
                        };
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            c.readable = true;
                        }
                        if ev.is_read_closed() || ev.is_error() {
                            c.peer_closed = true;
                        }
                        if ev.is_writable() {
                            if c.state == ClientState::TlsHandshake {
                                c.readable = true;
                            }
                            self.flush_client(cref);
                        }
                        self.drive_client(cref);
                    }
                    KIND_SERVER => {
                        let id = (ev.token().0 >> 2) as u64;
                        let Some(&sref) = self.server_slots.get(&id) else {
                            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                                self.parked_server_spoke(id);
                            }
                            continue;
                        };
                        let Some(s) = server_at!(self, sref) else {
                            continue;
                        };
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            s.readable = true;
                        }
                        if ev.is_read_closed() || ev.is_error() {
                            s.peer_closed = true;
                        }
                        if ev.is_writable() {
                            s.writable = true;
                            self.server_writable(sref);
                        }
                        self.drive_server(sref);
                    }
                    _ => {}
                }
            }
            let dc = std::mem::take(&mut self.deferred_clients);
            for cref in dc {
                self.drive_client(cref);
            }
            let ds = std::mem::take(&mut self.deferred_servers);
            for sref in ds {
                self.drive_server(sref);
            }
            let now = self.now;
            if now.duration_since(self.last_tick) >= TICK {
                self.last_tick = now;
                self.check_timers(now);
                if now.duration_since(self.bufs_trimmed_at) >= BUF_TRIM_EVERY {
                    self.bufs_trimmed_at = now;
                    self.bufs.trim();
                    self.forget_stale_parked();
                }
            }
            if self.shutdown.is_some() && self.clients.is_empty() && self.servers.is_empty() {
                break;
            }
        }
        self.shared.running.fetch_sub(1, Ordering::AcqRel);
        log::debug!("worker {} stopped", self.id);
    }

    fn accept(&mut self, li: usize) {
        loop {
            let Some(Some(listener)) = self.listeners.get(li) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: log and try again on the next readiness event.
                    log::warn!("accept failed: {e}");
                    return;
                }
            };
            let generation = self.next_gen();
            let now = Instant::now();
            self.shared
                .control
                .counters
                .accepted
                .fetch_add(1, Ordering::Relaxed);
            let entry = self.clients.vacant_entry();
            let index = entry.key();
            let mut client = Client {
                generation,
                id: self.shared.next_id.fetch_add(1, Ordering::Relaxed),
                stream,
                peer,
                state: ClientState::Startup,
                inbuf: Buf::default(),
                outbuf: Buf::default(),
                readable: false,
                peer_closed: false,
                counted: false,
                over_limit: false,
                requested: false,
                write_interest: false,
                database: String::new(),
                user: String::new(),
                pool: None,
                mode: PoolMode::Session,
                server: None,
                params: ParamSet::default(),
                cancel_key: None,
                statements: HashMap::new(),
                fwd_remaining: 0,
                discard_remaining: 0,
                connected_at: now,
                last_activity: now,
                wait_started: now,
                login: None,
                drain_at: None,
                retired_because: None,
                tls: None,
                auth_source: "",
                admin: None,
                write_stalled_since: None,
                limits: Default::default(),
                rules: None,
                addr_counted: None,
            };
            if let Err(e) = self.poll.registry().register(
                &mut client.stream,
                token(KIND_CLIENT, index, generation),
                Interest::READABLE,
            ) {
                log::warn!("cannot register client: {e}");
                continue;
            }
            entry.insert(client);
            // Its first bytes are usually in already (TCP_DEFER_ACCEPT): read them in
            // this round of the loop rather than after another epoll_wait.
            if matches!(self.listeners.get(li), Some(Some(Listener::Tcp(_)))) {
                if let Some(c) = self.clients.get_mut(index) {
                    c.readable = true;
                }
                self.deferred_clients.push(ConnRef { index, generation });
            }
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                WorkerMsg::Reload(snap) => self.apply_reload(snap),
                WorkerMsg::ServerAssigned {
                    client,
                    server,
                    pool,
                } => self.adopt_server(server, pool, Some(client)),
                WorkerMsg::FailWaiter { client, error } => {
                    let waiting = client_at!(self, client).is_some_and(|c| {
                        matches!(c.state, ClientState::Waiting | ClientState::WaitingLogin)
                    });
                    if waiting {
                        self.fail_client_raw(client, &error);
                    }
                }
                WorkerMsg::Cancel { client } => self.cancel_client(client),
                WorkerMsg::CancelDelivered { server } => self.cancel_delivered(server),
                WorkerMsg::Launch(pool) => self.launch_server(pool),
                WorkerMsg::AuthQueryDone { client, result } => self.lookup_done(client, result),
                WorkerMsg::Report(reply) => self.send_report(reply),
                WorkerMsg::AdminReply { client, bytes } => self.admin_reply(client, bytes),
                WorkerMsg::Resume => self.resume_held(),
                WorkerMsg::Kill(db) => self.kill_database(&db),
                WorkerMsg::Shutdown(mode) => self.begin_shutdown(mode),
            }
        }
    }

    fn apply_reload(&mut self, snap: Arc<Snapshot>) {
        self.snap = snap;
        for (_, c) in self.clients.iter_mut() {
            if c.pool.is_some() {
                (c.limits, c.rules) = self.snap.guardrails(&c.database, &c.user);
            }
        }
        // Clients whose database or pool a reload removed finish their
        // transaction, then go (at release); those between transactions go now.
        let retired: Vec<(ConnRef, &'static str)> = self
            .clients
            .iter()
            .filter_map(|(i, c)| {
                let reason = Self::retired(&self.snap, c)?;
                let between_transactions = match c.state {
                    ClientState::Idle => true,
                    ClientState::Linked => c
                        .server
                        .and_then(|sref| {
                            self.servers
                                .get(sref.index)
                                .filter(|s| s.generation == sref.generation)
                        })
                        .is_some_and(|s| {
                            s.tracker.is_empty()
                                && s.status == b'I'
                                && !s.hold_client
                                && c.inbuf.is_empty()
                        }),
                    _ => false,
                };
                between_transactions.then_some((
                    ConnRef {
                        index: i,
                        generation: c.generation,
                    },
                    reason,
                ))
            })
            .collect();
        for (cref, reason) in retired {
            self.fail_client(cref, Severity::Fatal, sqlstate::ADMIN_SHUTDOWN, reason);
        }
    }

    /// Why a logged-in client may not stay: a reload removed its database or
    /// its pool (an auth_query change, a user now static, a mode change).
    fn retired(snap: &Snapshot, c: &Client) -> Option<&'static str> {
        if c.database.is_empty() {
            return None;
        }
        if !snap.config.databases.contains_key(&c.database) {
            return Some("database removed from the pooler configuration");
        }
        let removed = c.pool.as_ref().is_some_and(|p| p.is_removed());
        removed.then_some("this user's pool was removed by a configuration reload; reconnect")
    }

    fn begin_shutdown(&mut self, mode: ShutdownMode) {
        if self.shutdown.is_none() && mode == ShutdownMode::Drain {
            // Connections the kernel already queued on our listeners would be
            // reset when they close: take them and serve them, so a new pooler
            // on the same port (SO_REUSEPORT) can take over without a refusal.
            for li in 0..self.listeners.len() {
                self.accept(li);
            }
        }
        self.shutdown = Some(match (self.shutdown, mode) {
            (Some(ShutdownMode::Now), _) => ShutdownMode::Now,
            _ => mode,
        });
        for l in self.listeners.iter_mut() {
            if let Some(mut l) = l.take() {
                let _ = self.poll.registry().deregister(&mut l);
            }
        }
        let refs: Vec<ConnRef> = self
            .clients
            .iter()
            .map(|(i, c)| ConnRef {
                index: i,
                generation: c.generation,
            })
            .collect();
        for cref in refs {
            let Some(c) = client_at!(self, cref) else {
                continue;
            };
            // Linked clients finish their transaction; clients still logging
            // in or waiting for a server get one transaction; idle ones go, but
            // one that has only just logged in is about to send its first request
            // (pgbench -C across a takeover): the drain timer gives it
            // DRAIN_IDLE_LOGIN, as for a login during the drain.
            let just_logged_in = c.state == ClientState::Idle && !c.requested;
            let busy = just_logged_in
                || !matches!(
                    c.state,
                    ClientState::Idle | ClientState::Admin | ClientState::AdminBusy
                );
            if mode == ShutdownMode::Now || !busy {
                self.fail_client(
                    cref,
                    Severity::Fatal,
                    sqlstate::ADMIN_SHUTDOWN,
                    "terminating connection due to pooler shutdown",
                );
            } else {
                self.close_if_drained(cref);
            }
        }
        if mode == ShutdownMode::Now {
            let srefs: Vec<ConnRef> = self
                .servers
                .iter()
                .map(|(i, s)| ConnRef {
                    index: i,
                    generation: s.generation,
                })
                .collect();
            for sref in srefs {
                self.close_server(sref, "pooler shutdown");
            }
        }
    }

    /// During a drain, a linked client whose server is idle between transactions goes now.
    fn close_if_drained(&mut self, cref: ConnRef) {
        if self.shutdown.is_none() {
            return;
        }
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        let Some(sref) = c.server else { return };
        let idle = server_at!(self, sref)
            .is_some_and(|s| s.tracker.is_empty() && s.status == b'I' && !s.hold_client);
        if idle {
            self.close_drained(cref);
        }
    }

    /// A client whose last transaction just ended during a drain is closed a moment
    /// later, not at once: a close (or a FATAL) right behind the ReadyForQuery of a
    /// request that succeeded is reported by some drivers (tokio-postgres) as that
    /// request's failure. A new request in the meantime gets FATAL 57P01 instead.
    /// As [`Worker::close_drained`], for a client a reload retired: it hears why.
    fn retire_after_grace(&mut self, cref: ConnRef, reason: &'static str) {
        if let Some(c) = client_at!(self, cref) {
            c.retired_because = Some(reason);
        }
        self.close_drained(cref);
    }

    fn close_drained(&mut self, cref: ConnRef) {
        if let Some(c) = client_at!(self, cref) {
            c.drain_at.get_or_insert(Instant::now() + DRAIN_GRACE);
        }
        self.flush_client(cref);
    }

    // ---- client I/O -------------------------------------------------------------

    fn client_wants_input(c: &Client) -> bool {
        match c.state {
            ClientState::Waiting
            | ClientState::WaitingLogin
            | ClientState::AuthQuery
            | ClientState::AdminBusy => c.inbuf.len() < WAITING_INPUT_LIMIT,
            _ => true,
        }
    }

    fn drive_client(&mut self, cref: ConnRef) {
        for _ in 0..READS_PER_TURN {
            let Some(c) = client_at!(self, cref) else {
                return;
            };
            if !Self::client_wants_input(c) {
                return;
            }
            if !c.readable {
                // Nothing new in the socket, but input held back by back-pressure (or
                // behind a cancel) may be ready to move now.
                if !c.inbuf.is_empty() && c.state != ClientState::TlsHandshake {
                    self.process_client(cref);
                }
                return;
            }
            if let Some(sref) = c.server {
                if server_at!(self, sref).is_some_and(|s| {
                    s.outbuf.len() > relay::HIGH_WATER || s.hold_client || s.cancel_sent.is_some()
                }) {
                    return;
                }
            }
            let Some(c) = client_at!(self, cref) else {
                return;
            };
            if c.state == ClientState::TlsHandshake {
                if !self.client_handshake(cref) {
                    return;
                }
                continue;
            }
            let mut io = Io {
                sock: &mut c.stream,
                tls: c.tls.as_deref_mut(),
            };
            let before = c.inbuf.len();
            let outcome = c.inbuf.read_from(&mut self.bufs, &mut io);
            match outcome {
                Ok(ReadOutcome::Data { short }) => {
                    c.last_activity = self.now;
                    if let Some(pool) = &c.pool {
                        let n = c.inbuf.len().saturating_sub(before) as u64;
                        pool.stats.received.fetch_add(n, Ordering::Relaxed);
                    }
                    let drained = short && c.tls.is_none() && !c.peer_closed;
                    if drained {
                        c.readable = false;
                    }
                    self.process_client(cref);
                    if drained {
                        if let Some(c) = client_at!(self, cref) {
                            c.inbuf.release_if_empty(&mut self.bufs);
                        }
                        return;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => {
                    c.readable = false;
                    if !c.inbuf.is_empty() {
                        self.process_client(cref);
                    }
                    if let Some(c) = client_at!(self, cref) {
                        c.inbuf.release_if_empty(&mut self.bufs);
                    }
                    return;
                }
                Ok(ReadOutcome::Eof) => {
                    self.close_client(cref, "client closed the connection");
                    return;
                }
                Err(e) => {
                    self.close_client(cref, &format!("client read error: {e}"));
                    return;
                }
            }
        }
        self.deferred_clients.push(cref);
    }

    fn flush_client(&mut self, cref: ConnRef) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        let tls_pending = c.tls.as_ref().is_some_and(|t| t.wants_write());
        if c.outbuf.is_empty() && !tls_pending {
            return;
        }
        let mut io = Io {
            sock: &mut c.stream,
            tls: c.tls.as_deref_mut(),
        };
        let before = c.outbuf.len();
        let written = c.outbuf.write_to(&mut io).and_then(|all| {
            // TLS records rustls still holds go out now or on the next writable event.
            match io.flush() {
                Ok(()) => Ok(all),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            }
        });
        let sent = before.saturating_sub(c.outbuf.len());
        if let Some(pool) = &c.pool {
            pool.stats.sent.fetch_add(sent as u64, Ordering::Relaxed);
        }
        if c.outbuf.is_empty() {
            c.write_stalled_since = None;
        } else if sent > 0 || c.write_stalled_since.is_none() {
            c.write_stalled_since = Some(Instant::now());
        }
        // The first time the socket is full: from now on, hear when it drains.
        let watch = !c.write_interest
            && (!c.outbuf.is_empty() || c.tls.as_ref().is_some_and(|t| t.wants_write()));
        match written {
            Ok(_) => {
                let drained = c.outbuf.len() <= relay::HIGH_WATER / 2;
                c.outbuf.release_if_empty(&mut self.bufs);
                // The linked server may have stopped for back-pressure: resume it.
                if drained {
                    if let Some(sref) = c.server {
                        if server_at!(self, sref).is_some_and(|s| !s.inbuf.is_empty() || s.readable)
                        {
                            self.deferred_servers.push(sref);
                        }
                    }
                }
            }
            Err(e) => {
                self.close_client(cref, &format!("client write error: {e}"));
                return;
            }
        }
        if watch {
            self.watch_client_writes(cref);
        }
    }

    /// Adds writability to what the poll reports for a client.
    fn watch_client_writes(&mut self, cref: ConnRef) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        if c.write_interest {
            return;
        }
        c.write_interest = true;
        if let Err(e) = self.poll.registry().reregister(
            &mut c.stream,
            token(KIND_CLIENT, cref.index, cref.generation),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.close_client(cref, &format!("cannot watch client socket: {e}"));
        }
    }

    fn process_client(&mut self, cref: ConnRef) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        if c.discard_remaining > 0 {
            let n = c.discard_remaining.min(c.inbuf.len());
            c.inbuf.consume(n);
            c.discard_remaining -= n;
        }
        if c.drain_at.is_some() && !c.inbuf.is_empty() {
            let reason = c
                .retired_because
                .unwrap_or("terminating connection due to pooler shutdown");
            self.fail_client(cref, Severity::Fatal, sqlstate::ADMIN_SHUTDOWN, reason);
            return;
        }
        match c.state {
            ClientState::Startup => self.client_startup(cref),
            ClientState::TlsHandshake => {}
            ClientState::Auth => self.client_auth(cref),
            ClientState::WaitingLogin
            | ClientState::Waiting
            | ClientState::AuthQuery
            | ClientState::AdminBusy => {}
            ClientState::Admin => self.admin_input(cref),
            ClientState::Idle => self.client_idle_input(cref),
            ClientState::Linked => self.relay_client(cref),
        }
    }

    /// Input from a logged-in client without a server: Terminate, or a request that
    /// needs one.
    fn client_idle_input(&mut self, cref: ConnRef) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        match protocol::parse_header(c.inbuf.pending()) {
            Ok(None) => {}
            Ok(Some((protocol::frontend::TERMINATE, _))) => {
                self.close_client(cref, "client terminated");
            }
            Ok(Some(_)) => {
                c.requested = true;
                self.request_server(cref);
            }
            Err(e) => self.fail_client(
                cref,
                Severity::Fatal,
                sqlstate::PROTOCOL_VIOLATION,
                &format!("invalid frontend message: {e}"),
            ),
        }
    }

    /// Checks a server out for the client, or queues it.
    fn request_server(&mut self, cref: ConnRef) {
        let worker = self.id;
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        let Some(pool) = c.pool.clone() else {
            self.close_client(cref, "client without pool");
            return;
        };
        if c.state != ClientState::WaitingLogin {
            c.state = ClientState::Waiting;
        }
        c.wait_started = self.now;
        if self.shared.control.is_paused(&c.database) {
            self.held.push(cref);
            return;
        }
        loop {
            let waiter = Waiter {
                worker,
                client: cref,
            };
            match pool.checkout(waiter, self.now) {
                crate::pool::Checkout::Server(conn) => {
                    // One parked here would have been reported by the poll already.
                    if conn.parked_on != Some(worker) && !conn.stream.is_quiet() {
                        log::info!("server {} closed while idle; discarding", conn.id);
                        drop(conn);
                        if pool.server_closed() {
                            self.launch_server(pool.clone());
                        }
                        continue;
                    }
                    self.adopt_server(conn, pool, Some(cref));
                    return;
                }
                crate::pool::Checkout::Wait { launch } => {
                    if launch {
                        self.launch_server(pool);
                    }
                    return;
                }
            }
        }
    }

    fn relay_client(&mut self, cref: ConnRef) {
        let Some(sref) = client_at!(self, cref).and_then(|c| c.server) else {
            return;
        };
        let track = client_at!(self, cref).is_some_and(|c| c.mode == PoolMode::Transaction)
            && self.snap.config.pooler.max_prepared_statements > 0;
        let max_prepared = self.snap.config.pooler.max_prepared_statements as usize;
        let (Some(c), Some(s)) = (
            self.clients
                .get_mut(cref.index)
                .filter(|c| c.generation == cref.generation),
            self.servers
                .get_mut(sref.index)
                .filter(|s| s.generation == sref.generation),
        ) else {
            return;
        };
        let mut ctx = relay::Ctx {
            bufs: &mut self.bufs,
            scratch: &mut self.scratch,
            message: &mut self.message,
            track_statements: track,
            max_prepared,
            refused: 0,
        };
        let hold = s.hold_client || s.cancel_sent.is_some();
        let was_idle = s.tracker.is_empty();
        let mut cs = c.relay_side();
        let mut ss = s.relay_side();
        let result = relay::client_to_server(&mut cs, &mut ss, &mut ctx, hold);
        if ctx.refused > 0 {
            let refused = crate::guard::Guardrail::StatementRefused;
            self.shared.control.counters.guardrail(refused, ctx.refused);
        }
        if was_idle && !s.tracker.is_empty() {
            let now = self.now;
            s.query_started = Some(now);
            s.xact_started.get_or_insert(now);
        }
        match result {
            Ok(relay::ClientFlow::Idle) => {}
            Ok(relay::ClientFlow::Terminate) => {
                self.flush_server(sref);
                self.close_client(cref, "client terminated");
                return;
            }
            Err(e) => {
                self.fail_client(
                    cref,
                    Severity::Fatal,
                    sqlstate::PROTOCOL_VIOLATION,
                    &format!("invalid frontend message: {e}"),
                );
                return;
            }
        }
        self.flush_server(sref);
        self.flush_client(cref);
    }

    // ---- server I/O -------------------------------------------------------------

    fn drive_server(&mut self, sref: ConnRef) {
        for _ in 0..READS_PER_TURN {
            let Some(s) = server_at!(self, sref) else {
                return;
            };
            if s.state == ServerState::Connecting {
                return;
            }
            if !s.readable {
                if !s.inbuf.is_empty() && s.state != ServerState::TlsHandshake {
                    self.process_server(sref);
                }
                return;
            }
            if let Some(cref) = s.client {
                let full =
                    client_at!(self, cref).is_some_and(|c| c.outbuf.len() > relay::HIGH_WATER);
                if full {
                    return;
                }
            }
            let Some(s) = server_at!(self, sref) else {
                return;
            };
            if s.state == ServerState::TlsHandshake {
                if !self.server_handshake(sref) {
                    return;
                }
                continue;
            }
            let mut io = s.conn.io();
            match s.inbuf.read_from(&mut self.bufs, &mut io) {
                Ok(ReadOutcome::Data { short }) => {
                    let drained = short && s.conn.tls.is_none() && !s.peer_closed;
                    if drained {
                        s.readable = false;
                    }
                    self.process_server(sref);
                    if drained {
                        if let Some(s) = server_at!(self, sref) {
                            s.inbuf.release_if_empty(&mut self.bufs);
                        }
                        return;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => {
                    s.readable = false;
                    // Input held back by back-pressure still needs relaying.
                    if !s.inbuf.is_empty() {
                        self.process_server(sref);
                    }
                    if let Some(s) = server_at!(self, sref) {
                        s.inbuf.release_if_empty(&mut self.bufs);
                    }
                    return;
                }
                Ok(ReadOutcome::Eof) => {
                    self.server_lost(sref, "server closed the connection");
                    return;
                }
                Err(e) => {
                    self.server_lost(sref, &format!("server read error: {e}"));
                    return;
                }
            }
        }
        self.deferred_servers.push(sref);
    }

    fn flush_server(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        let tls_pending = s.conn.tls.as_ref().is_some_and(|t| t.wants_write());
        if (s.outbuf.is_empty() && !tls_pending) || !s.writable {
            return;
        }
        let mut io = s.conn.io();
        let written = s.outbuf.write_to(&mut io).and_then(|all| match io.flush() {
            Ok(()) => Ok(all),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        });
        match written {
            Ok(all) => {
                if !all {
                    s.writable = false;
                }
                let resume = s.outbuf.len() <= relay::HIGH_WATER / 2;
                s.outbuf.release_if_empty(&mut self.bufs);
                if resume {
                    if let Some(cref) = s.client {
                        if client_at!(self, cref).is_some_and(|c| !c.inbuf.is_empty() || c.readable)
                        {
                            self.deferred_clients.push(cref);
                        }
                    }
                }
            }
            Err(e) => self.server_lost(sref, &format!("server write error: {e}")),
        }
    }

    fn server_writable(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        match s.state {
            ServerState::Connecting => self.server_connected(sref),
            ServerState::TlsHandshake => s.readable = true,
            _ => self.flush_server(sref),
        }
    }

    fn process_server(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        match s.state {
            ServerState::Connecting | ServerState::TlsHandshake => {}
            ServerState::SslRequest => self.server_ssl_answer(sref),
            ServerState::Login => self.server_login_input(sref),
            ServerState::Linked | ServerState::Resetting => self.relay_server(sref),
        }
    }

    fn relay_server(&mut self, sref: ConnRef) {
        let track = self.snap.config.pooler.max_prepared_statements > 0;
        let max_prepared = self.snap.config.pooler.max_prepared_statements as usize;
        let Some(s) = self
            .servers
            .get_mut(sref.index)
            .filter(|s| s.generation == sref.generation)
        else {
            return;
        };
        let cref = s.client;
        let client = cref.and_then(|r| {
            self.clients
                .get_mut(r.index)
                .filter(|c| c.generation == r.generation)
        });
        let mut ctx = relay::Ctx {
            bufs: &mut self.bufs,
            scratch: &mut self.scratch,
            message: &mut self.message,
            track_statements: track,
            max_prepared,
            refused: 0,
        };
        let mut ss = s.relay_side();
        let result = match client {
            Some(c) => relay::server_to_client(&mut ss, Some(&mut c.relay_side()), &mut ctx),
            None => relay::server_to_client(&mut ss, None, &mut ctx),
        };
        let ev = match result {
            Ok(ev) => ev,
            Err(e) => {
                self.server_lost(sref, &format!("invalid message from server: {e}"));
                return;
            }
        };
        if let Some(cref) = cref {
            self.flush_client(cref);
        }
        self.after_server_events(sref, ev);
    }

    fn after_server_events(&mut self, sref: ConnRef, ev: relay::ServerEvents) {
        log::trace!("server {sref:?} events {ev:?}");
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        if s.state == ServerState::Resetting {
            if ev.internal_done {
                // What the session and the reset reported, before it is replaced by
                // the login-time settings the reset is trusted to have restored.
                let writable = s.conn.params.get("default_transaction_read_only") != Some("on")
                    && s.pool.lock().settings.read_only;
                if ev.internal_error.is_some() || s.status != b'I' {
                    self.close_server(sref, "server_reset_query failed");
                } else if writable {
                    self.close_server(
                        sref,
                        "read_only pool: default_transaction_read_only is off after server_reset_query",
                    );
                } else {
                    s.conn.prepared.clear();
                    s.conn.params = s.conn.reset_params.clone();
                    self.release_server(sref);
                }
            }
            return;
        }
        if ev.queries > 0 {
            s.count_queries(&ev, self.now);
        }
        let cref = s.client;
        if let Some(which) = ev.limit_hit {
            self.shared.control.counters.guardrail(which, 1);
            self.guard_cancel(sref);
        }
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        if ev.fail_transaction {
            self.scratch.clear();
            protocol::query(&mut self.scratch, FAIL_TRANSACTION_SQL);
            s.outbuf.extend(&mut self.bufs, &self.scratch);
            s.tracker.push(relay::Pending::Internal);
            s.hold_client = true;
            self.flush_server(sref);
            return;
        }
        if ev.internal_done && s.guard.abort.is_some() {
            // The pooler failed the transaction after a result limit: now the client
            // hears of the limit, with the transaction failed as PostgreSQL leaves it.
            s.hold_client = false;
            let error = s.guard.abort.take().map(|a| a.error).unwrap_or_default();
            let status = s.status;
            if let Some(c) = cref.and_then(|cref| client_at!(self, cref)) {
                self.scratch.clear();
                self.scratch.extend_from_slice(&error);
                protocol::ready_for_query(&mut self.scratch, status);
                c.outbuf.extend(&mut self.bufs, &self.scratch);
            }
            if let Some(cref) = cref {
                self.flush_client(cref);
                self.relay_client(cref);
                self.deferred_clients.push(cref);
            }
            self.maybe_release(sref);
            return;
        }
        if ev.internal_done {
            s.hold_client = false;
            if let Some(err) = ev.internal_error {
                // The client's own startup settings were refused by PostgreSQL: as
                // PostgreSQL would, refuse the session.
                if let Some(cref) = cref {
                    self.fail_client(cref, Severity::Fatal, &err.code, &err.message);
                }
                return;
            }
            if let Some(cref) = cref {
                if let (Some(c), Some(s)) = (client_at!(self, cref), server_at!(self, sref)) {
                    crate::params::apply_sync(&c.params, &mut s.conn.params);
                }
                self.relay_client(cref);
                // Input the client sent while held back is still in the socket.
                self.deferred_clients.push(cref);
            }
        }
        if ev.fatal {
            // The server said FATAL: it is going away; the client saw the error.
            if let Some(cref) = cref {
                self.close_client_keep_server(cref);
            }
            self.close_server(sref, "server sent FATAL");
            return;
        }
        self.maybe_release(sref);
    }

    /// Transaction mode: the server goes back at ReadyForQuery 'I' with nothing in flight.
    fn maybe_release(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        if s.state != ServerState::Linked
            || !s.tracker.is_empty()
            || s.status != b'I'
            || s.hold_client
            || s.cancel_sent.is_some()
            || s.fwd_remaining > 0
            || !s.inbuf.is_empty()
            || !s.outbuf.is_empty()
        {
            return;
        }
        let Some(cref) = s.client else { return };
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        // Input still buffered here is a message the relay waits to see whole (a Parse
        // it renames, a Query the statement rules check): the server stays until it is
        // complete and sent. Releasing now would only make the client ask again at once.
        if c.fwd_remaining > 0 || !c.inbuf.is_empty() {
            return;
        }
        if c.mode == PoolMode::Session {
            if self.shutdown.is_some() {
                self.close_if_drained(cref);
            } else if let Some(reason) = Self::retired(&self.snap, c) {
                self.retire_after_grace(cref, reason);
            }
            return;
        }
        c.server = None;
        c.state = ClientState::Idle;
        if let Some(s) = server_at!(self, sref) {
            s.client = None;
        }
        self.release_server(sref);
        if self.shutdown.is_some() {
            self.close_drained(cref);
            return;
        }
        let retired = self
            .clients
            .get(cref.index)
            .filter(|c| c.generation == cref.generation)
            .and_then(|c| Self::retired(&self.snap, c));
        if let Some(reason) = retired {
            self.retire_after_grace(cref, reason);
        }
    }

    // ---- linking and release ---------------------------------------------------

    /// Takes a server into this worker (from the pool or another worker) for `client`.
    fn adopt_server(
        &mut self,
        mut conn: Box<ServerConn>,
        pool: Arc<Pool>,
        client: Option<ConnRef>,
    ) {
        let id = conn.id;
        let registered = match conn.parked_on.take() {
            Some(w) if w == self.id => {
                self.parked.remove(&id);
                Ok(())
            }
            parked => {
                if let Some(w) = parked {
                    log::trace!("server {id} moves from worker {w} to worker {}", self.id);
                    if let Some(handle) = self.shared.workers.get().and_then(|ws| ws.get(w)) {
                        let _ = handle.registry.deregister(&mut conn.stream);
                    }
                }
                self.poll.registry().register(
                    &mut conn.stream,
                    server_token(id),
                    Interest::READABLE | Interest::WRITABLE,
                )
            }
        };
        let generation = self.next_gen();
        let entry = self.servers.vacant_entry();
        let index = entry.key();
        let mut s = Server::new(generation, conn, pool, ServerState::Linked, None);
        if let Some(tracker) = self.spare_trackers.pop() {
            s.tracker = tracker;
        }
        if let Err(e) = registered {
            log::warn!("cannot register server {}: {e}", s.conn.id);
            let pool = s.pool.clone();
            drop(s);
            if pool.server_closed() {
                self.launch_server(pool);
            }
            return;
        }
        entry.insert(s);
        let sref = ConnRef { index, generation };
        self.server_slots.insert(id, sref);
        match client {
            Some(cref) => self.link(cref, sref),
            None => self.release_server(sref),
        }
    }

    /// Links a waiting client and a server in this worker, after the pooler brings the
    /// server's settings in line with the client's.
    fn link(&mut self, cref: ConnRef, sref: ConnRef) {
        log::trace!("link client {cref:?} server {sref:?}");
        let Some(c) = client_at!(self, cref) else {
            self.release_server(sref);
            return;
        };
        let welcome = match c.state {
            ClientState::WaitingLogin => true,
            ClientState::Waiting => false,
            _ => {
                self.release_server(sref);
                return;
            }
        };
        c.state = ClientState::Linked;
        c.server = Some(sref);
        if let Some(pool) = &c.pool {
            pool.stats.wait_time.observe(c.wait_started.elapsed());
        }
        if welcome {
            let defaults = c
                .pool
                .as_ref()
                .and_then(|p| p.lock().default_params.clone())
                .unwrap_or_default();
            self.send_welcome(cref, &defaults);
        }
        // Both slabs borrowed at once (disjoint fields): no copy of the client's settings
        // on this per-transaction path.
        let (Some(c), Some(s)) = (client_at!(self, cref), server_at!(self, sref)) else {
            return;
        };
        s.client = Some(cref);
        s.state = ServerState::Linked;
        match crate::params::sync_sql(&c.params, &s.conn.params) {
            Some(sql) => {
                self.scratch.clear();
                protocol::query(&mut self.scratch, &sql);
                s.outbuf.extend(&mut self.bufs, &self.scratch);
                s.tracker.push(relay::Pending::Internal);
                s.hold_client = true;
            }
            // Equal sets: share the client's, so the next link with a client of the
            // same kind compares one pointer instead of every setting. (None also
            // means a server with reported settings the client lacks: keep those.)
            None if s.conn.params == c.params => s.conn.params = c.params.clone(),
            None => {}
        }
        self.relay_client(cref);
        self.flush_server(sref);
        self.flush_client(cref);
        // A waiting client stops reading at WAITING_INPUT_LIMIT; the rest of its input
        // may still be in the socket with no new edge to announce it.
        if client_at!(self, cref).is_some_and(|c| c.readable) {
            self.deferred_clients.push(cref);
        }
        self.maybe_release(sref);
    }

    /// A healthy, unlinked server goes to the first waiter or back to the pool.
    fn release_server(&mut self, sref: ConnRef) {
        log::trace!("release server {sref:?}");
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        debug_assert!(s.client.is_none());
        let pool = s.pool.clone();
        let now = self.now;
        if !s.inbuf.is_empty() || !s.outbuf.is_empty() || s.fwd_remaining > 0 {
            self.close_server(sref, "unexpected bytes at release");
            return;
        }
        if pool.server_is_current(&s.conn, now) {
            // Local hand-off first: no syscalls, and the server stays registered here.
            while let Some(w) = pool.pop_waiter_for(self.id, now) {
                if w.worker == self.id {
                    let alive = client_at!(self, w.client).is_some_and(|c| {
                        matches!(c.state, ClientState::Waiting | ClientState::WaitingLogin)
                    });
                    if alive {
                        if let Some(s) = server_at!(self, sref) {
                            s.conn.last_used = now;
                        }
                        self.link(w.client, sref);
                        return;
                    }
                    continue;
                }
                let Some(conn) = self.detach_server(sref) else {
                    return;
                };
                self.shared.send_to(
                    w.worker,
                    WorkerMsg::ServerAssigned {
                        client: w.client,
                        server: conn,
                        pool,
                    },
                );
                return;
            }
        }
        // A parked server is taken back without a look at its socket, so it must not
        // go to the pool with bytes unread: when the last read filled the buffer there
        // may be some (an asynchronous NOTICE or NOTIFY after ReadyForQuery).
        if server_at!(self, sref).is_some_and(|s| s.readable && !s.conn.stream.is_quiet()) {
            self.close_server(sref, "unexpected bytes at release");
            return;
        }
        let Some(conn) = self.park_server(sref) else {
            return;
        };
        match pool.release(conn, now) {
            crate::pool::Release::Pooled => {}
            crate::pool::Release::ToWaiter(w, conn) => {
                if w.worker == self.id {
                    self.adopt_server(conn, pool, Some(w.client));
                } else {
                    self.shared.send_to(
                        w.worker,
                        WorkerMsg::ServerAssigned {
                            client: w.client,
                            server: conn,
                            pool,
                        },
                    );
                }
            }
            crate::pool::Release::Close(conn, launch) => {
                log::debug!("server {} retired (lifetime or reload)", conn.id);
                self.parked.remove(&conn.id);
                (*conn).terminate();
                if launch {
                    self.launch_server(pool);
                }
            }
        }
    }

    /// Removes a server from this worker, keeping its connection.
    fn detach_server(&mut self, sref: ConnRef) -> Option<Box<ServerConn>> {
        server_at!(self, sref)?;
        let mut s = self.servers.remove(sref.index);
        self.server_slots.remove(&s.conn.id);
        let _ = self.poll.registry().deregister(&mut s.conn.stream);
        s.inbuf.release_if_empty(&mut self.bufs);
        s.outbuf.release_if_empty(&mut self.bufs);
        self.keep_tracker(std::mem::take(&mut s.tracker));
        Some(s.conn)
    }

    /// Removes a server from this worker on its way to the pool's idle list, leaving its
    /// socket registered here (see the pool module).
    fn park_server(&mut self, sref: ConnRef) -> Option<Box<ServerConn>> {
        server_at!(self, sref)?;
        let mut s = self.servers.remove(sref.index);
        self.server_slots.remove(&s.conn.id);
        s.inbuf.release_if_empty(&mut self.bufs);
        s.outbuf.release_if_empty(&mut self.bufs);
        self.keep_tracker(std::mem::take(&mut s.tracker));
        s.conn.parked_on = Some(self.id);
        self.parked.insert(s.conn.id, Arc::downgrade(&s.pool));
        Some(s.conn)
    }

    /// Keeps a departing server's tracker for the next adopted one, if it holds nothing
    /// of its server's state (a server leaves between requests, so it should not).
    fn keep_tracker(&mut self, tracker: Tracker) {
        if tracker.is_clean() && self.spare_trackers.len() < SPARE_TRACKERS {
            self.spare_trackers.push(tracker);
        }
    }

    /// A parked server became readable: PostgreSQL closed the idle session (restart,
    /// pg_terminate_backend, idle_session_timeout) or sent something nobody asked for.
    /// Either way it cannot serve a client; close it unless a worker has taken it since.
    fn parked_server_spoke(&mut self, id: u64) {
        let Some(pool) = self.parked.remove(&id).and_then(|p| p.upgrade()) else {
            return;
        };
        if let Some(conn) = pool.take_idle(id) {
            log::info!("server {id} closed while idle; discarding");
            drop(conn);
            if pool.launch_if_needed() {
                self.launch_server(pool);
            }
        }
    }

    /// Parked servers another worker took, or the janitor or KILL closed, leave an
    /// entry here that no event will ever clear.
    fn forget_stale_parked(&mut self) {
        let worker = self.id;
        self.parked
            .retain(|id, pool| pool.upgrade().is_some_and(|p| p.holds_parked(*id, worker)));
    }

    fn close_server(&mut self, sref: ConnRef, reason: &str) {
        let Some(conn) = self.detach_server_any(sref) else {
            return;
        };
        let (pool, client, state) = conn;
        if let Some(cref) = client {
            if let Some(c) = client_at!(self, cref) {
                c.server = None;
            }
        }
        log::debug!("closing server: {reason}");
        let connecting = !matches!(state, ServerState::Linked | ServerState::Resetting);
        if connecting {
            let waiters = pool.connect_failed();
            self.fail_waiters(waiters, reason, None);
        } else if pool.server_closed() {
            self.launch_server(pool);
        }
    }

    /// Removes a server entirely (any state) and closes its socket.
    fn detach_server_any(
        &mut self,
        sref: ConnRef,
    ) -> Option<(Arc<Pool>, Option<ConnRef>, ServerState)> {
        server_at!(self, sref)?;
        // Its socket closes below, which takes it out of the poll.
        let mut s = self.servers.remove(sref.index);
        self.server_slots.remove(&s.conn.id);
        s.inbuf.release_if_empty(&mut self.bufs);
        s.outbuf.release_if_empty(&mut self.bufs);
        let pool = s.pool.clone();
        let client = s.client;
        let state = s.state;
        if state != ServerState::Connecting {
            (*s.conn).terminate();
        }
        Some((pool, client, state))
    }

    /// The server connection broke. Its client, if any, gets an error and is closed: its
    /// transaction state is gone with the server.
    fn server_lost(&mut self, sref: ConnRef, reason: &str) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        let client = s.client;
        let state = s.state;
        if !matches!(state, ServerState::Linked | ServerState::Resetting) {
            self.server_login_failed(sref, reason, None);
            return;
        }
        log::info!("server connection lost: {reason}");
        if let Some(cref) = client {
            self.fail_client_keep_server(
                cref,
                Severity::Fatal,
                sqlstate::CONNECTION_FAILURE,
                "server closed the connection unexpectedly",
            );
        }
        self.close_server(sref, reason);
    }

    fn fail_waiters(&mut self, waiters: Vec<Waiter>, reason: &str, error: Option<Vec<u8>>) {
        if waiters.is_empty() {
            return;
        }
        let bytes = Arc::new(error.unwrap_or_else(|| {
            let mut v = Vec::new();
            protocol::error_response(
                &mut v,
                Severity::Fatal,
                sqlstate::CONNECTION_FAILURE,
                &format!("pooler could not connect to the server: {reason}"),
            );
            v
        }));
        for w in waiters {
            if w.worker == self.id {
                self.fail_client_raw(w.client, &bytes);
            } else {
                self.shared.send_to(
                    w.worker,
                    WorkerMsg::FailWaiter {
                        client: w.client,
                        error: bytes.clone(),
                    },
                );
            }
        }
    }

    // ---- closing clients --------------------------------------------------------

    fn fail_client(&mut self, cref: ConnRef, severity: Severity, code: &str, message: &str) {
        let counters = &self.shared.control.counters;
        counters.error(code);
        let logging_in = client_at!(self, cref).is_some_and(|c| {
            matches!(
                c.state,
                ClientState::Startup
                    | ClientState::TlsHandshake
                    | ClientState::Auth
                    | ClientState::AuthQuery
            )
        });
        if logging_in {
            let counters = &self.shared.control.counters;
            let reason = match code {
                sqlstate::TOO_MANY_CONNECTIONS => &counters.rejected_too_many,
                _ => &counters.rejected_login,
            };
            reason.fetch_add(1, Ordering::Relaxed);
        }
        self.scratch.clear();
        protocol::error_response(&mut self.scratch, severity, code, message);
        let bytes = std::mem::take(&mut self.scratch);
        self.fail_client_raw(cref, &bytes);
        self.scratch = bytes;
    }

    /// Sends a prepared ErrorResponse, then closes the client.
    fn fail_client_raw(&mut self, cref: ConnRef, error: &[u8]) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        c.outbuf.extend(&mut self.bufs, error);
        let fields = protocol::parse_error_fields(error.get(5..).unwrap_or_default());
        let reason = format!("{}: {}", fields.code, fields.message);
        self.flush_client(cref);
        self.close_client(cref, &reason);
    }

    /// Like fail_client, for a client whose server is being closed by the caller.
    fn fail_client_keep_server(
        &mut self,
        cref: ConnRef,
        severity: Severity,
        code: &str,
        msg: &str,
    ) {
        if let Some(c) = client_at!(self, cref) {
            c.server = None;
        }
        self.fail_client(cref, severity, code, msg);
    }

    fn close_client_keep_server(&mut self, cref: ConnRef) {
        if let Some(c) = client_at!(self, cref) {
            c.server = None;
        }
        self.flush_client(cref);
        self.close_client(cref, "server sent FATAL");
    }

    /// Closes a client; its server is released when clean, reset in session mode, and
    /// closed when its state is unknown (mid-transaction, mid-request).
    fn close_client(&mut self, cref: ConnRef, reason: &str) {
        if client_at!(self, cref).is_none() {
            return;
        }
        // No deregister: closing the socket (when `c` drops) takes it out of the poll,
        // one system call fewer per connection.
        let mut c = self.clients.remove(cref.index);
        if let Some(t) = c.tls.as_deref_mut() {
            // close_notify, so libpq reads a clean end instead of "SSL SYSCALL error".
            let _ = t.close(&mut c.stream);
        }
        c.inbuf.release_if_empty(&mut self.bufs);
        c.outbuf.release_if_empty(&mut self.bufs);
        if c.counted {
            self.shared.clients.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(addr) = c.addr_counted {
            self.shared.addr_limiter.release(addr);
        }
        if let Some(key) = c.cancel_key {
            self.shared.lock_cancels().remove(&key);
        }
        if !c.user.is_empty() {
            log::debug!(
                "client {} {}@{} from {} closed: {reason}",
                c.id,
                c.user,
                c.database,
                c.peer
            );
        }
        if matches!(c.state, ClientState::Waiting | ClientState::WaitingLogin) {
            if let Some(pool) = &c.pool {
                pool.remove_waiter(Waiter {
                    worker: self.id,
                    client: cref,
                });
            }
        }
        let Some(sref) = c.server else { return };
        let reset = self.snap.config.pooler.server_reset_query.clone();
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        s.client = None;
        let clean = s.state == ServerState::Linked
            && s.tracker.is_empty()
            && s.status == b'I'
            && s.fwd_remaining == 0
            && c.fwd_remaining == 0
            && !s.hold_client
            && s.cancel_sent.is_none()
            && s.guard.abort.is_none();
        if !clean {
            self.close_server(sref, "client left mid-transaction or mid-request");
            return;
        }
        if c.mode == PoolMode::Session && !reset.is_empty() {
            s.state = ServerState::Resetting;
            self.scratch.clear();
            protocol::query(&mut self.scratch, &reset);
            s.outbuf.extend(&mut self.bufs, &self.scratch);
            s.tracker.push(relay::Pending::Internal);
            self.flush_server(sref);
        } else {
            self.release_server(sref);
        }
    }

    // ---- cancel -----------------------------------------------------------------

    fn cancel_client(&mut self, cref: ConnRef) {
        let Some(c) = client_at!(self, cref) else {
            return;
        };
        match c.state {
            ClientState::Linked => {
                let Some(sref) = c.server else { return };
                let Some(s) = server_at!(self, sref) else {
                    return;
                };
                let addr = s.pool.lock().target.addr.clone();
                let (pid, key) = (s.conn.backend_pid, s.conn.backend_key);
                server::send_cancel(addr, pid, key, || {});
            }
            ClientState::Waiting => {
                // The queued request never reaches a server: drop it and answer as
                // PostgreSQL would have.
                if let Some(pool) = c.pool.clone() {
                    pool.remove_waiter(Waiter {
                        worker: self.id,
                        client: cref,
                    });
                }
                let Some(c) = client_at!(self, cref) else {
                    return;
                };
                let mut rest = 0;
                while let Ok(Some((_, len))) = protocol::parse_header(c.inbuf.pending()) {
                    let n = len.min(c.inbuf.len());
                    c.inbuf.consume(n);
                    rest = len - n;
                    if rest > 0 {
                        break;
                    }
                }
                c.discard_remaining = rest;
                c.state = ClientState::Idle;
                self.scratch.clear();
                protocol::error_response(
                    &mut self.scratch,
                    Severity::Error,
                    sqlstate::QUERY_CANCELED,
                    "canceling statement due to user request",
                );
                protocol::ready_for_query(&mut self.scratch, b'I');
                c.outbuf.extend(&mut self.bufs, &self.scratch);
                self.flush_client(cref);
            }
            _ => {}
        }
    }

    /// Cancels the server's running query for a guardrail (query_timeout, a result
    /// limit), once: the server takes no new request until the cancel is delivered.
    fn guard_cancel(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        if s.cancel_sent.is_some() {
            return;
        }
        s.cancel_sent = Some(Instant::now());
        let addr = s.pool.lock().target.addr.clone();
        let (pid, key) = (s.conn.backend_pid, s.conn.backend_key);
        let shared = self.shared.clone();
        let worker = self.id;
        server::send_cancel(addr, pid, key, move || {
            shared.send_to(worker, WorkerMsg::CancelDelivered { server: sref });
        });
    }

    fn cancel_delivered(&mut self, sref: ConnRef) {
        let Some(s) = server_at!(self, sref) else {
            return;
        };
        if s.cancel_sent.take().is_none() {
            return;
        }
        if let Some(cref) = s.client {
            self.relay_client(cref);
            self.deferred_clients.push(cref);
        }
        self.maybe_release(sref);
    }

    // ---- timers -----------------------------------------------------------------

    fn check_timers(&mut self, now: Instant) {
        let p = &self.snap.config.pooler;
        let query_wait = p.query_wait_timeout;
        let client_idle = p.client_idle_timeout;
        let idle_tx = p.idle_transaction_timeout;
        let lookup_timeout = p.server_connect_timeout;
        let login_timeout = p.client_login_timeout;
        let write_timeout = p.client_write_timeout;
        let mut stalled = Vec::new();
        let mut expired: Vec<(ConnRef, &'static str, String)> = Vec::new();
        let mut drained = Vec::new();
        let mut timed_out = Vec::new();
        for (i, c) in self.clients.iter() {
            let cref = ConnRef {
                index: i,
                generation: c.generation,
            };
            if c.drain_at.is_some_and(|t| now >= t) {
                drained.push(cref);
                continue;
            }
            if !write_timeout.is_zero()
                && c.write_stalled_since
                    .is_some_and(|t| now.duration_since(t) > write_timeout)
            {
                stalled.push(cref);
                continue;
            }
            match c.state {
                ClientState::Startup | ClientState::TlsHandshake | ClientState::Auth => {
                    if now.duration_since(c.connected_at) > login_timeout {
                        expired.push((
                            cref,
                            sqlstate::PROTOCOL_VIOLATION,
                            format!(
                                "client_login_timeout: not logged in within {}",
                                crate::config::format_duration(login_timeout)
                            ),
                        ));
                    }
                }
                ClientState::AuthQuery => {
                    // The executor answers by this deadline unless a call of
                    // its hangs; the login must not hang with it.
                    if now.duration_since(c.wait_started) >= lookup_timeout {
                        expired.push((
                            cref,
                            sqlstate::CONNECTION_FAILURE,
                            format!(
                                "auth_query: the user lookup did not answer within {} (server_connect_timeout)",
                                crate::config::format_duration(lookup_timeout)
                            ),
                        ));
                    }
                }
                ClientState::Waiting | ClientState::WaitingLogin => {
                    if !query_wait.is_zero() && now.duration_since(c.wait_started) > query_wait {
                        expired.push((
                            cref,
                            sqlstate::PROTOCOL_VIOLATION,
                            format!(
                                "query_wait_timeout: no server connection became available within {}",
                                crate::config::format_duration(query_wait)
                            ),
                        ));
                    }
                }
                ClientState::Admin | ClientState::AdminBusy => {}
                ClientState::Idle
                    if self.shutdown.is_some()
                        && now.duration_since(c.last_activity) > DRAIN_IDLE_LOGIN =>
                {
                    // Logged in during a drain and never asked for anything.
                    expired.push((
                        cref,
                        sqlstate::ADMIN_SHUTDOWN,
                        "terminating connection due to pooler shutdown".into(),
                    ));
                }
                ClientState::Idle => {
                    if !client_idle.is_zero() && now.duration_since(c.last_activity) > client_idle {
                        expired.push((
                            cref,
                            sqlstate::PROTOCOL_VIOLATION,
                            "client_idle_timeout: connection idle too long".into(),
                        ));
                    }
                }
                ClientState::Linked => {
                    let Some(sref) = c.server else { continue };
                    let Some(s) = self
                        .servers
                        .get(sref.index)
                        .filter(|s| s.generation == sref.generation)
                    else {
                        continue;
                    };
                    let timeout = c.limits.query_timeout;
                    let running = !s.tracker.is_empty()
                        && !matches!(s.tracker.front(), Some(relay::Pending::Internal));
                    if running
                        && !timeout.is_zero()
                        && s.guard.abort.is_none()
                        && s.query_started
                            .is_some_and(|t| now.duration_since(t) > timeout)
                    {
                        timed_out.push((sref, timeout));
                    }
                    let between_requests = s.tracker.is_empty() && c.inbuf.is_empty();
                    let idle_for = now.duration_since(c.last_activity);
                    if between_requests && s.status != b'I' {
                        if !idle_tx.is_zero() && idle_for > idle_tx {
                            expired.push((
                                cref,
                                sqlstate::IDLE_IN_TRANSACTION_TIMEOUT,
                                "idle_transaction_timeout: transaction idle too long".into(),
                            ));
                        }
                    } else if between_requests && !client_idle.is_zero() && idle_for > client_idle {
                        expired.push((
                            cref,
                            sqlstate::PROTOCOL_VIOLATION,
                            "client_idle_timeout: connection idle too long".into(),
                        ));
                    }
                }
            }
        }
        for cref in drained {
            match client_at!(self, cref).and_then(|c| c.retired_because) {
                Some(reason) => {
                    self.fail_client(cref, Severity::Fatal, sqlstate::ADMIN_SHUTDOWN, reason)
                }
                None => self.close_client(cref, "drained at shutdown"),
            }
        }
        for cref in stalled {
            // It reads nothing, so an ErrorResponse would go unread: just close, and
            // its server with it (mid-result, its state is unknown).
            if let Some(c) = client_at!(self, cref) {
                log::info!(
                    "client {} {}@{} from {}: read nothing for client_write_timeout ({}); closing it",
                    c.id,
                    c.user,
                    c.database,
                    c.peer,
                    crate::config::format_duration(write_timeout)
                );
            }
            self.close_client(cref, "client_write_timeout");
        }
        for (cref, code, msg) in expired {
            if let Some(c) = client_at!(self, cref) {
                log::info!("client {} {}@{}: {msg}", c.id, c.user, c.database);
            }
            self.fail_client(cref, Severity::Fatal, code, &msg);
        }
        for (sref, timeout) in timed_out {
            if let Some(s) = server_at!(self, sref) {
                if s.guard.start_timeout(timeout) {
                    self.shared
                        .control
                        .counters
                        .guardrail(crate::guard::Guardrail::QueryTimeout, 1);
                    log::info!(
                        "server {}: query ran past query_timeout ({}); cancelling it",
                        s.conn.id,
                        crate::config::format_duration(timeout)
                    );
                    self.guard_cancel(sref);
                }
            }
        }
        let undelivered: Vec<ConnRef> = self
            .servers
            .iter()
            .filter(|(_, s)| {
                s.cancel_sent
                    .is_some_and(|t| now.duration_since(t) > CANCEL_DELIVERY_LIMIT)
            })
            .map(|(i, s)| ConnRef {
                index: i,
                generation: s.generation,
            })
            .collect();
        for sref in undelivered {
            self.cancel_delivered(sref);
        }
        let late: Vec<ConnRef> = self
            .servers
            .iter()
            .filter(|(_, s)| s.deadline.is_some_and(|d| now > d))
            .map(|(i, s)| ConnRef {
                index: i,
                generation: s.generation,
            })
            .collect();
        for sref in late {
            let reason = format!(
                "server_connect_timeout: no connection within {}",
                crate::config::format_duration(self.snap.config.pooler.server_connect_timeout)
            );
            self.server_login_failed(sref, &reason, None);
        }
    }
}
#[cfg(test)]
mod size_tests {
    /// Every logged-in client holds one of these in its worker's slab: the bench's
    /// 10,000-idle-clients memory line is mostly this size (see contrib/bench/README.md).
    #[test]
    fn an_idle_client_stays_small() {
        let size = std::mem::size_of::<super::Client>();
        assert!(size <= 512, "Client grew to {size} bytes");
    }
}
