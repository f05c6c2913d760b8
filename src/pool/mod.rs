//! Pools, one per (database, server user), shared by every worker.
//!
//! A pool's limits hold for the whole process: `total` counts every open or opening server
//! whichever worker holds it. Idle servers sit here, so any worker can take one, but each
//! stays registered ("parked") in the poll of the worker that released it: that worker
//! hears at once when PostgreSQL closes an idle session, and when it takes the server
//! back, which a checkout prefers, no system call is needed at all. Another worker takes
//! a parked server by moving its registration (two `epoll_ctl` calls).
//! A released server goes straight to the first waiter (FIFO across workers). When that
//! waiter lives on another worker, the server travels to it through the worker's inbox
//! (deregistered here, registered there); that hand-off is the price of global limits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::metrics::Histogram;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::{PoolMode, PoolSettings};
use crate::net::{ServerAddr, Stream};
use crate::params::ParamSet;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
}

/// How the pooler proves itself to PostgreSQL for this pool's user.
#[derive(Clone)]
pub enum ServerCredential {
    /// No password known: works with trust, fails clearly otherwise.
    None,
    Plain(String),
    /// An md5 hash ("md5..."): answers md5 challenges by pass-the-hash.
    Md5Hash(String),
    /// Only a SCRAM verifier is known: the pool can log in once a client has logged in with
    /// SCRAM and left its ClientKey behind.
    ScramSecret(crate::auth::scram::ScramSecret),
}

/// A client's address within a worker: slab index plus generation, so a late message for a
/// reused slot is recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub index: usize,
    pub generation: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub worker: usize,
    pub client: ConnRef,
}

/// How long the head of a pool's queue may be passed over in favour of waiters on the
/// worker that released a server; see [`Pool::pop_waiter_for`].
pub const HANDOFF_PATIENCE: Duration = Duration::from_millis(5);

/// A server connection with its session state; the part that moves between workers.
pub struct ServerConn {
    pub id: u64,
    pub stream: Stream,
    /// TLS towards PostgreSQL; travels with the connection between workers.
    pub tls: Option<Box<crate::net::tls::TlsStream<rustls::ClientConnection>>>,
    pub backend_pid: u32,
    pub backend_key: u32,
    /// Session settings as the server has them now.
    pub params: ParamSet,
    /// The reported settings right after login, which server_reset_query returns to.
    pub reset_params: ParamSet,
    /// Server-side names of statements prepared on this connection, with a use tick (LRU).
    pub prepared: HashMap<String, u64>,
    pub prepared_tick: u64,
    pub created: Instant,
    pub last_used: Instant,
    /// The pool's `generation` when this server logged in; a reload that changes how
    /// servers connect bumps the pool's, and older servers are closed at release.
    pub generation: u64,
    /// While idle: the worker whose poll still has the socket registered.
    pub parked_on: Option<usize>,
}

impl ServerConn {
    /// Best-effort Terminate, then close. The socket is non-blocking; a full send buffer
    /// just means PostgreSQL sees EOF instead, which it handles the same way.
    pub fn terminate(mut self) {
        use std::io::Write;
        let mut bye = Vec::with_capacity(5);
        crate::protocol::terminate(&mut bye);
        let _ = self.io().write(&bye);
        if let Some(t) = self.tls.as_deref_mut() {
            let _ = t.close(&mut self.stream);
        }
    }

    pub fn io(&mut self) -> crate::net::Io<'_, rustls::ClientConnection> {
        crate::net::Io {
            sock: &mut self.stream,
            tls: self.tls.as_deref_mut(),
        }
    }
}

/// Where and how a pool's servers connect; replaced whole on reload.
#[derive(Clone)]
pub struct ServerTarget {
    pub addr: ServerAddr,
    /// The configured host name, for TLS verify-full and SNI.
    pub host: String,
    pub dbname: String,
    pub user: String,
    pub credential: ServerCredential,
}

/// Cached SCRAM keys for logging in to PostgreSQL, so PBKDF2 runs once per pool, not per
/// connection: (salt, iterations, ClientKey, ServerKey). With only a verifier, salt and
/// iterations are unknown (empty, 0) and the keys fit whatever PostgreSQL sends.
#[derive(Clone)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
}

/// Where a pool's definition comes from, which decides how a reload treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolOrigin {
    /// `[users]` or a database's forced user.
    Config,
    /// A client authenticated by a database's auth_query: the shared
    /// `server_user` pool.
    SharedAuthQuery,
    /// A per-user passthrough pool, made by a login: it lives as long as the
    /// auth_query runtime (by id) it was made under, and idle ones are
    /// collected.
    Dynamic { auth_query: u64 },
}

pub struct PoolState {
    pub origin: PoolOrigin,
    pub created_at: Instant,
    /// Last checkout by a client.
    pub last_used: Instant,
    /// Since when the registry's is the only reference and no server is open:
    /// what idle dynamic pools are collected by.
    unused_since: Option<Instant>,
    pub target: ServerTarget,
    pub settings: PoolSettings,
    pub generation: u64,
    pub scram_keys: Option<ScramKeys>,
    /// ParameterStatus values of this pool's servers at login: what a new client is told.
    pub default_params: Option<Arc<Vec<(String, String)>>>,
    /// The settings sets of recent clients, to share between clients that have equal
    /// ones (see [`ParamSet::share`]).
    pub client_params: Vec<ParamSet>,
    /// Boxed because a server travels between this list and the workers as a box: kept
    /// boxed here, a transaction's release and checkout cost no allocation and no copy.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
    /// Open plus opening servers, wherever they are.
    pub total: u32,
    pub connecting: u32,
    /// In arrival order, with the time each started waiting.
    waiters: VecDeque<(Waiter, Instant)>,
    pub server_lifetime: Duration,
    pub server_idle_timeout: Duration,
}

/// Traffic counters of one pool, bumped by whichever worker relays for it
/// (relaxed atomics: a few per transaction, far below the syscalls they
/// ride on) and summed per database by the admin console and /metrics.
pub struct PoolStats {
    pub xact_count: AtomicU64,
    pub query_count: AtomicU64,
    /// Bytes from clients / to clients.
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub xact_time: Histogram,
    pub query_time: Histogram,
    /// Time clients waited for a server.
    pub wait_time: Histogram,
}

impl Default for PoolStats {
    fn default() -> Self {
        PoolStats {
            xact_count: AtomicU64::new(0),
            query_count: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            xact_time: Histogram::latency(),
            query_time: Histogram::latency(),
            wait_time: Histogram::latency(),
        }
    }
}

pub struct Pool {
    pub key: PoolKey,
    /// Gone from the config: clients finish their transaction, servers close at
    /// release. An atomic, not part of the locked state: workers read it at
    /// every transaction's end.
    removed: AtomicBool,
    pub stats: PoolStats,
    state: Mutex<PoolState>,
    /// Shared with every pool of the same database / user, for max_db_connections and
    /// max_user_connections.
    db_count: Arc<AtomicU32>,
    user_count: Arc<AtomicU32>,
}

pub enum Checkout {
    Server(Box<ServerConn>),
    /// Queued; `launch` says the caller should open one new server for the pool.
    Wait {
        launch: bool,
    },
}

pub enum Release {
    /// Hand the server to this waiter.
    ToWaiter(Waiter, Box<ServerConn>),
    Pooled,
    /// Close it; `launch` as for [`Checkout::Wait`].
    Close(Box<ServerConn>, bool),
}

fn reserve(counter: &AtomicU32, limit: u32) -> bool {
    if limit == 0 {
        counter.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

impl Pool {
    pub fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A worker that panicked while holding a pool lock is a bug already logged by the
        // panic hook; carrying on with the data beats taking every other worker down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mode(&self) -> PoolMode {
        self.lock().settings.pool_mode
    }

    /// Takes an idle server or queues the waiter.
    /// New server logins of this pool use `credential` (a dynamic pool's
    /// user got a new secret from a refetch); cached SCRAM keys of the old
    /// one are dropped.
    pub fn adopt_credential(&self, credential: ServerCredential) {
        let mut st = self.lock();
        if !same_credential(&st.target.credential, &credential) {
            st.target.credential = credential;
            st.scram_keys = None;
        }
    }

    pub fn checkout(&self, waiter: Waiter, now: Instant) -> Checkout {
        let mut st = self.lock();
        st.last_used = now;
        // Most recently used first, and one parked on the asking worker before any other.
        let here = st
            .idle
            .iter()
            .rposition(|s| s.parked_on == Some(waiter.worker));
        if let Some(i) = here.or(st.idle.len().checked_sub(1)) {
            return Checkout::Server(st.idle.remove(i));
        }
        st.waiters.push_back((waiter, now));
        let launch = self.reserve_launch(&mut st);
        Checkout::Wait { launch }
    }

    /// Reserves capacity for one more server if waiters outnumber servers being opened.
    fn reserve_launch(&self, st: &mut PoolState) -> bool {
        if st.waiters.len() <= st.connecting as usize || st.total >= st.settings.pool_size {
            return false;
        }
        self.reserve_capacity(st)
    }

    /// Counts one more opening server against the pool, database and user limits.
    fn reserve_capacity(&self, st: &mut PoolState) -> bool {
        if !reserve(&self.db_count, st.settings.max_db_connections) {
            return false;
        }
        if !reserve(&self.user_count, st.settings.max_user_connections) {
            self.db_count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        st.total += 1;
        st.connecting += 1;
        true
    }

    /// Reserves a server to keep min_pool_size warm.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub fn set_removed(&self, removed: bool) {
        self.removed.store(removed, Ordering::Release);
    }

    pub fn reserve_warm(&self) -> bool {
        let mut st = self.lock();
        if self.is_removed() || st.total >= st.settings.min_pool_size.min(st.settings.pool_size) {
            return false;
        }
        if matches!(
            (&st.target.credential, &st.scram_keys),
            (ServerCredential::ScramSecret(_), None)
        ) {
            return false;
        }
        self.reserve_capacity(&mut st)
    }

    /// Whether another server should be opened now (after a reload raised pool_size, or a
    /// server closed while clients wait).
    pub fn launch_if_needed(&self) -> bool {
        let mut st = self.lock();
        self.reserve_launch(&mut st)
    }

    fn forget_server(&self, st: &mut PoolState) {
        st.total = st.total.saturating_sub(1);
        self.db_count.fetch_sub(1, Ordering::Relaxed);
        self.user_count.fetch_sub(1, Ordering::Relaxed);
    }

    /// A server finished logging in (it is then released like any other).
    pub fn connect_done(&self, params: &[(String, String)]) {
        let mut st = self.lock();
        st.connecting = st.connecting.saturating_sub(1);
        if st.default_params.is_none() {
            st.default_params = Some(Arc::new(params.to_vec()));
        }
    }

    /// A server failed to connect or log in. When the pool has no other server that could
    /// serve them, every waiter is returned so it can be told why instead of hanging.
    pub fn connect_failed(&self) -> Vec<Waiter> {
        let mut st = self.lock();
        st.connecting = st.connecting.saturating_sub(1);
        self.forget_server(&mut st);
        if st.total == 0 {
            st.waiters.drain(..).map(|(w, _)| w).collect()
        } else {
            Vec::new()
        }
    }

    /// A linked server is closed (broken, dirty or expired).
    pub fn server_closed(&self) -> bool {
        let mut st = self.lock();
        self.forget_server(&mut st);
        self.reserve_launch(&mut st)
    }

    /// Returns a healthy server: to the first waiter, to the idle list, or to be closed
    /// when its settings are stale or it outlived server_lifetime.
    pub fn release(&self, mut server: Box<ServerConn>, now: Instant) -> Release {
        let mut st = self.lock();
        if !self.is_current(&st, &server, now) {
            self.forget_server(&mut st);
            let launch = self.reserve_launch(&mut st);
            return Release::Close(server, launch);
        }
        server.last_used = now;
        if let Some(w) = st.waiters.pop_front().map(|(w, _)| w) {
            return Release::ToWaiter(w, server);
        }
        st.idle.push(server);
        Release::Pooled
    }

    /// Takes the waiter a server released on `worker` should go to: the first one on
    /// that worker, so the server stays where it is registered (a hand-off to another
    /// worker costs two epoll_ctl calls, a channel message and a wake-up of that
    /// thread), unless the queue's head has waited longer than [`HANDOFF_PATIENCE`]:
    /// then the head, so no worker's clients starve.
    pub fn pop_waiter_for(&self, worker: usize, now: Instant) -> Option<Waiter> {
        let mut st = self.lock();
        let (head, since) = *st.waiters.front()?;
        let at = if head.worker == worker || now.saturating_duration_since(since) > HANDOFF_PATIENCE
        {
            0
        } else {
            st.waiters
                .iter()
                .position(|(w, _)| w.worker == worker)
                .unwrap_or(0)
        };
        st.waiters.remove(at).map(|(w, _)| w)
    }

    /// Whether this server may go on serving (reload or lifetime may retire it).
    pub fn server_is_current(&self, server: &ServerConn, now: Instant) -> bool {
        self.is_current(&self.lock(), server, now)
    }

    /// A read_only pool's server whose client turned default_transaction_read_only off
    /// (and server_reset_query did not turn it back on) is not current either.
    fn is_current(&self, st: &PoolState, server: &ServerConn, now: Instant) -> bool {
        let expired = !st.server_lifetime.is_zero()
            && now.duration_since(server.created) >= st.server_lifetime;
        let writable = st.settings.read_only
            && server.params.get("default_transaction_read_only") != Some("on");
        !(self.is_removed() || server.generation != st.generation || expired || writable)
    }

    /// Drops a waiter (client gone or cancelled). Returns whether it was queued.
    pub fn remove_waiter(&self, waiter: Waiter) -> bool {
        let mut st = self.lock();
        let before = st.waiters.len();
        st.waiters.retain(|(w, _)| *w != waiter);
        st.waiters.len() != before
    }

    /// Idle servers past server_idle_timeout or server_lifetime, removed from the pool for
    /// the caller to close.
    pub fn take_expired_idle(&self, now: Instant) -> Vec<ServerConn> {
        let mut st = self.lock();
        let idle_timeout = st.server_idle_timeout;
        let lifetime = st.server_lifetime;
        let generation = st.generation;
        let removed = self.is_removed();
        let mut expired = Vec::new();
        let mut keep = Vec::with_capacity(st.idle.len());
        for s in st.idle.drain(..) {
            let too_idle =
                !idle_timeout.is_zero() && now.duration_since(s.last_used) >= idle_timeout;
            let too_old = !lifetime.is_zero() && now.duration_since(s.created) >= lifetime;
            // PostgreSQL may have ended the session (restart, pg_terminate_backend):
            // finding out here keeps min_pool_size honest and checkouts fast.
            let dead = !s.stream.is_quiet();
            if removed || too_idle || too_old || dead || s.generation != generation {
                expired.push(*s);
            } else {
                keep.push(s);
            }
        }
        st.idle = keep;
        for _ in 0..expired.len() {
            self.forget_server(&mut st);
        }
        expired
    }

    /// The idle server `id`, removed from the pool for the caller to close (PostgreSQL
    /// closed it, or sent something unasked, while it was parked).
    pub fn take_idle(&self, id: u64) -> Option<ServerConn> {
        let mut st = self.lock();
        let i = st.idle.iter().position(|s| s.id == id)?;
        let conn = st.idle.remove(i);
        self.forget_server(&mut st);
        Some(*conn)
    }

    /// Whether idle server `id` is still here, parked on `worker`.
    pub fn holds_parked(&self, id: u64, worker: usize) -> bool {
        self.lock()
            .idle
            .iter()
            .any(|s| s.id == id && s.parked_on == Some(worker))
    }

    /// Every idle server, removed from the pool for the caller to close (the
    /// admin console's KILL).
    pub fn take_all_idle(&self) -> Vec<ServerConn> {
        let mut st = self.lock();
        let all: Vec<ServerConn> = st.idle.drain(..).map(|s| *s).collect();
        for _ in 0..all.len() {
            self.forget_server(&mut st);
        }
        all
    }

    /// Servers open now close at their next release, idle ones at the next
    /// janitor pass (RECONNECT). The credential is unchanged, so the SCRAM
    /// keys stay: a verifier-only user has no other way to log in again.
    pub fn retire_servers(&self) {
        self.lock().generation += 1;
    }

    /// Reads the idle servers without taking them (the admin console).
    pub fn with_idle<R>(&self, f: impl FnOnce(&PoolState, &[Box<ServerConn>]) -> R) -> R {
        let st = self.lock();
        f(&st, &st.idle)
    }

    pub fn counts(&self) -> (usize, u32, usize) {
        let st = self.lock();
        (st.idle.len(), st.total, st.waiters.len())
    }
}

/// Every pool of the process, by key.
#[derive(Default)]
pub struct Registry {
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    db_counts: Mutex<HashMap<String, Arc<AtomicU32>>>,
    user_counts: Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// Dynamic pools made and dropped (idle, or retired by a reload), for /metrics.
    /// Per database: (created, destroyed).
    dynamic_counts: Mutex<HashMap<String, (u64, u64)>>,
}

/// What a pool is made from: everything a snapshot of the config decides for it.
pub struct PoolSpec {
    pub origin: PoolOrigin,
    pub target: ServerTarget,
    pub settings: PoolSettings,
    pub server_lifetime: Duration,
    pub server_idle_timeout: Duration,
}

/// The registered pool of `key` unless it was removed: a removed pool only
/// winds down for the clients it still has, and a new login under a
/// definition that came back gets a pool of its own.
fn live(pools: &HashMap<PoolKey, Arc<Pool>>, key: &PoolKey) -> Option<Arc<Pool>> {
    pools.get(key).filter(|p| !p.is_removed()).cloned()
}

fn counter(map: &Mutex<HashMap<String, Arc<AtomicU32>>>, name: &str) -> Arc<AtomicU32> {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    m.entry(name.to_owned()).or_default().clone()
}

impl Registry {
    pub fn get(&self, key: &PoolKey) -> Option<Arc<Pool>> {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    pub fn get_or_create(&self, key: PoolKey, spec: impl FnOnce() -> PoolSpec) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = live(&pools, &key) {
            return p;
        }
        self.insert(&mut pools, key, spec())
    }

    /// As [`Registry::get_or_create`] for a dynamic pool: a new one is made
    /// only while its database has fewer than `max_dynamic`; None when it has
    /// that many already.
    pub fn get_or_create_dynamic(
        &self,
        key: PoolKey,
        spec: impl FnOnce() -> PoolSpec,
        max_dynamic: u32,
    ) -> Option<Arc<Pool>> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = live(&pools, &key) {
            return Some(p);
        }
        let dynamic = pools
            .values()
            .filter(|p| p.key.database == key.database)
            .filter(|p| !p.is_removed() && matches!(p.lock().origin, PoolOrigin::Dynamic { .. }))
            .count();
        (dynamic < max_dynamic as usize).then(|| self.insert(&mut pools, key, spec()))
    }

    fn insert(
        &self,
        pools: &mut HashMap<PoolKey, Arc<Pool>>,
        key: PoolKey,
        spec: PoolSpec,
    ) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            db_count: counter(&self.db_counts, &key.database),
            user_count: counter(&self.user_counts, &spec.target.user),
            key: key.clone(),
            removed: AtomicBool::new(false),
            stats: PoolStats::default(),
            state: Mutex::new(PoolState {
                origin: spec.origin,
                created_at: Instant::now(),
                last_used: Instant::now(),
                unused_since: None,
                target: spec.target,
                settings: spec.settings,
                generation: 0,
                scram_keys: None,
                default_params: None,
                client_params: Vec::new(),
                idle: Vec::new(),
                total: 0,
                connecting: 0,
                waiters: VecDeque::new(),
                server_lifetime: spec.server_lifetime,
                server_idle_timeout: spec.server_idle_timeout,
            }),
        });
        if matches!(pool.lock().origin, PoolOrigin::Dynamic { .. }) {
            self.count_dynamic(&key.database, true);
        }
        pools.insert(key, pool.clone());
        pool
    }

    /// Drops dynamic pools unused for `idle_timeout` (zero: never) and
    /// removed pools that wound down; returns the keys of dropped dynamic
    /// pools. "Unused": no client, waiter or server holds the pool and it has
    /// no server open, so nothing can reach it but a new login, which makes
    /// it again.
    pub fn collect_unused(&self, now: Instant, idle_timeout: Duration) -> Vec<PoolKey> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut collected = Vec::new();
        pools.retain(|key, pool| {
            let held = Arc::strong_count(pool) > 1;
            let mut st = pool.lock();
            if held || st.total > 0 || !st.waiters.is_empty() {
                st.unused_since = None;
                return true;
            }
            if pool.is_removed() {
                return false;
            }
            let since = *st.unused_since.get_or_insert(now);
            let dynamic = matches!(st.origin, PoolOrigin::Dynamic { .. });
            let expired =
                !idle_timeout.is_zero() && now.saturating_duration_since(since) >= idle_timeout;
            if dynamic && expired {
                collected.push(key.clone());
                self.count_dynamic(&key.database, false);
                return false;
            }
            true
        });
        collected
    }

    fn count_dynamic(&self, database: &str, created: bool) {
        let mut m = self
            .dynamic_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let e = m.entry(database.to_owned()).or_default();
        if created {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// Dynamic pools created and destroyed so far, per database.
    pub fn dynamic_counts(&self) -> HashMap<String, (u64, u64)> {
        self.dynamic_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Applies a new config to existing pools: `spec_for` returns None for pools whose
    /// database or user is gone. Servers connect differently → generation bump, so they
    /// close at their next release rather than mid-transaction.
    pub fn reconfigure(&self, spec_for: impl Fn(&PoolKey, &PoolState) -> Option<PoolSpec>) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = HashSet::new();
        for (key, pool) in pools.iter() {
            let mut st = pool.lock();
            match spec_for(key, &st) {
                Some(spec) => {
                    let same_target = st.target.addr == spec.target.addr
                        && st.target.dbname == spec.target.dbname
                        && st.target.user == spec.target.user
                        && same_credential(&st.target.credential, &spec.target.credential)
                        && st.settings.read_only == spec.settings.read_only;
                    if !same_target {
                        st.generation += 1;
                        st.scram_keys = None;
                        st.default_params = None;
                        st.target = spec.target;
                    }
                    pool.set_removed(false);
                    st.origin = spec.origin;
                    st.settings = spec.settings;
                    st.server_lifetime = spec.server_lifetime;
                    st.server_idle_timeout = spec.server_idle_timeout;
                }
                None => {
                    if !pool.is_removed() && matches!(st.origin, PoolOrigin::Dynamic { .. }) {
                        self.count_dynamic(&key.database, false);
                    }
                    pool.set_removed(true);
                    if st.total == 0 && st.waiters.is_empty() {
                        gone.insert(key.clone());
                    }
                }
            }
        }
        pools.retain(|k, _| !gone.contains(k));
    }
}

impl Registry {
    /// Every server connects anew from now on: open ones close at their next release
    /// (a reload changed how servers connect for all pools, e.g. server TLS settings).
    pub fn retire_all_servers(&self) {
        for pool in self.all() {
            let mut st = pool.lock();
            st.generation += 1;
            st.scram_keys = None;
        }
    }
}

fn same_credential(a: &ServerCredential, b: &ServerCredential) -> bool {
    match (a, b) {
        (ServerCredential::None, ServerCredential::None) => true,
        (ServerCredential::Plain(x), ServerCredential::Plain(y)) => x == y,
        (ServerCredential::Md5Hash(x), ServerCredential::Md5Hash(y)) => x == y,
        (ServerCredential::ScramSecret(x), ServerCredential::ScramSecret(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PoolMode, PoolSettings};

    fn pool() -> Arc<Pool> {
        Registry::default().get_or_create(
            PoolKey {
                database: "db".into(),
                user: "u".into(),
            },
            || PoolSpec {
                origin: PoolOrigin::Config,
                target: ServerTarget {
                    addr: ServerAddr::Tcp(Vec::new()),
                    host: "localhost".into(),
                    dbname: "db".into(),
                    user: "u".into(),
                    credential: ServerCredential::Plain(String::new()),
                },
                settings: PoolSettings {
                    pool_mode: PoolMode::Transaction,
                    pool_size: 1,
                    min_pool_size: 0,
                    max_db_connections: 0,
                    max_user_connections: 0,
                    read_only: false,
                },
                server_lifetime: Duration::ZERO,
                server_idle_timeout: Duration::ZERO,
            },
        )
    }

    fn waiter(worker: usize, index: usize) -> Waiter {
        Waiter {
            worker,
            client: ConnRef {
                index,
                generation: 1,
            },
        }
    }

    #[test]
    fn a_released_server_prefers_a_waiter_on_its_worker_within_patience() {
        let p = pool();
        for (worker, index) in [(1, 0), (0, 1), (1, 2)] {
            assert!(matches!(
                p.checkout(waiter(worker, index), Instant::now()),
                Checkout::Wait { .. }
            ));
        }
        let now = Instant::now();
        assert_eq!(p.pop_waiter_for(0, now), Some(waiter(0, 1)), "local first");
        assert_eq!(
            p.pop_waiter_for(0, now),
            Some(waiter(1, 0)),
            "none local: head"
        );
        let later = now + HANDOFF_PATIENCE * 2;
        assert!(matches!(
            p.checkout(waiter(0, 3), Instant::now()),
            Checkout::Wait { .. }
        ));
        assert_eq!(
            p.pop_waiter_for(0, later),
            Some(waiter(1, 2)),
            "a head waiting past the patience goes first"
        );
        assert_eq!(p.pop_waiter_for(0, later), Some(waiter(0, 3)));
        assert_eq!(p.pop_waiter_for(0, later), None);
    }
}
