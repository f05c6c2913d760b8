//! The main thread: load the config, bind listeners, start workers, then wait for signals
//! (SIGHUP reload, SIGINT drain, SIGTERM stop) and run the janitor between them.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::net::{self, Listener};
use crate::snapshot::{Login, Snapshot};
use crate::worker::{Shared, ShutdownMode, Worker, WorkerMsg};

const JANITOR_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub enum StartError {
    Config(String),
    Listen(String),
    Thread(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(m) | StartError::Listen(m) | StartError::Thread(m) => {
                write!(f, "{m}")
            }
        }
    }
}

/// Loads and checks a config the way the daemon would, for `--check` and reload.
pub fn load_snapshot(path: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, String> {
    Snapshot::build(load_config(path)?, previous)
}

/// Reads and validates the file, logging its warnings (unknown keys).
fn load_config(path: &Path) -> Result<Config, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    for w in &config.warnings {
        log::warn!("{w} (ignored)");
    }
    Ok(config)
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks the handled signals in this thread and every thread it starts later, so they
/// are only ever taken synchronously by `sigtimedwait` here: no async-signal-safety
/// concerns anywhere.
fn block_signals() {
    let set = signal_set();
    // SAFETY: pthread_sigmask with a valid set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_signal(timeout: Duration) -> Option<i32> {
    let set = signal_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

struct Daemon {
    path: PathBuf,
    shared: Arc<Shared>,
    next_worker: usize,
    workers: usize,
    unix_socket: Option<PathBuf>,
    notifier: crate::notify::Notifier,
    last_status: Instant,
}

pub fn run(path: &Path) -> Result<(), StartError> {
    let snap = Arc::new(load_snapshot(path, None).map_err(StartError::Config)?);
    block_signals();
    let p = &snap.config.pooler;
    let workers = p.workers.max(1);
    let mut per_worker: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
    let addrs = net::listen_addrs(&p.listen_addr, p.listen_port)
        .map_err(|e| StartError::Listen(format!("listen_addr: {e}")))?;
    // Asked before our own listeners exist, told once they do (a failed bind says more).
    let shared_addrs: Vec<_> = addrs
        .iter()
        .filter(|a| net::tcp_addr_has_listener(**a))
        .collect();
    for addr in &addrs {
        for listeners in per_worker.iter_mut() {
            let l = net::bind_tcp_reuseport(*addr)
                .map_err(|e| StartError::Listen(format!("cannot listen on {addr}: {e}")))?;
            listeners.push(Listener::Tcp(mio::net::TcpListener::from_std(l)));
        }
    }
    for addr in shared_addrs {
        log::warn!(
            "another process already listens on {addr}: the kernel shares new connections \
             between it and this pooler (SO_REUSEPORT) until it stops; right while this \
             pooler takes over from another, a mistake otherwise"
        );
    }
    let mut unix_socket = None;
    if !p.unix_socket_dir.is_empty() {
        let (l, sock_path) =
            net::bind_unix(Path::new(&p.unix_socket_dir), p.listen_port).map_err(|e| {
                StartError::Listen(format!(
                    "cannot listen on unix socket in {}: {e}",
                    p.unix_socket_dir
                ))
            })?;
        for listeners in per_worker.iter_mut() {
            let clone = l
                .try_clone()
                .map_err(|e| StartError::Listen(format!("unix socket: {e}")))?;
            listeners.push(Listener::Unix(mio::net::UnixListener::from_std(clone)));
        }
        unix_socket = Some(sock_path);
    }
    let metrics = match snap.config.metrics.listen.as_str() {
        "" => None,
        addr => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| StartError::Listen(format!("[metrics] listen {addr}: {e}")))?,
        ),
    };
    let shared = Arc::new(Shared::new(snap.clone()));
    let mut built = Vec::new();
    let mut handles = Vec::new();
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let (w, h) = Worker::new(i, shared.clone(), listeners)
            .map_err(|e| StartError::Thread(format!("worker {i}: {e}")))?;
        built.push(w);
        handles.push(h);
    }
    // Handles first: a worker may message another from its first turn.
    let _ = shared.workers.set(handles);
    shared.running.store(workers, Ordering::Release);
    let mut threads = Vec::new();
    for (i, w) in built.into_iter().enumerate() {
        let t = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || w.run())
            .map_err(|e| StartError::Thread(format!("worker {i}: {e}")))?;
        threads.push(t);
    }
    if let Some(listener) = metrics {
        let shared = shared.clone();
        // Not joined: it blocks in accept and ends with the process.
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || crate::control::serve_metrics(shared, listener))
            .map_err(|e| StartError::Thread(format!("metrics: {e}")))?;
    }
    log::info!(
        "pooler {} listening on {}{} with {workers} workers",
        env!("CARGO_PKG_VERSION"),
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        unix_socket
            .as_ref()
            .map(|p| format!(" and {}", p.display()))
            .unwrap_or_default()
    );
    let mut daemon = Daemon {
        path: path.to_owned(),
        shared: shared.clone(),
        next_worker: 0,
        workers,
        unix_socket,
        notifier: crate::notify::Notifier::from_env(),
        last_status: Instant::now(),
    };
    daemon.janitor();
    daemon.notifier.ready(&daemon.status_line());
    let mut stopping = false;
    let mut last_janitor = Instant::now();
    loop {
        match wait_signal(Duration::from_millis(200)) {
            Some(libc::SIGHUP) => {
                daemon.notifier.reloading();
                daemon.reload();
                daemon.notifier.ready(&daemon.status_line());
            }
            Some(libc::SIGINT) if !stopping => {
                log::info!("SIGINT: draining; clients finish their transactions");
                stopping = true;
                daemon.begin_shutdown(ShutdownMode::Drain);
            }
            Some(libc::SIGTERM) | Some(libc::SIGINT) => {
                log::info!("stopping now");
                stopping = true;
                daemon.begin_shutdown(ShutdownMode::Now);
            }
            _ => {}
        }
        if stopping && shared.running.load(Ordering::Acquire) == 0 {
            break;
        }
        if last_janitor.elapsed() >= JANITOR_INTERVAL {
            last_janitor = Instant::now();
            daemon.janitor();
        }
        if !stopping && daemon.last_status.elapsed() >= STATUS_INTERVAL {
            daemon.last_status = Instant::now();
            daemon.notifier.status(&daemon.status_line());
        }
    }
    for t in threads {
        let _ = t.join();
    }
    daemon.close_idle_servers();
    if let Some(p) = &daemon.unix_socket {
        let _ = std::fs::remove_file(p);
    }
    log::info!("pooler stopped");
    Ok(())
}

/// Loads the config file again (with `[section] key = value` replaced first, for the
/// admin console's SET) and installs it: SIGHUP, RELOAD and SET all come here, one at a
/// time. On error the running config stays and the error says why.
pub fn reload(
    shared: &Shared,
    path: &Path,
    set: Option<(&crate::config::settings::Setting, toml::Value)>,
) -> Result<(), String> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let old = shared.snapshot();
    let config = match set {
        None => load_config(path)?,
        Some((setting, value)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mut table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
            let section = setting.section.header().trim_matches(['[', ']']);
            let entry = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert(setting.name.to_owned(), value);
            }
            let text = toml::to_string(&table).map_err(|e| e.to_string())?;
            Config::parse(&text, path).map_err(|e| e.to_string())?
        }
    };
    let snap = Arc::new(Snapshot::build(config, Some(&old))?);
    for key in old.config.restart_needed_for(&snap.config) {
        log::warn!("reload: {key} changed; it takes effect only after a restart");
    }
    crate::set_log_level(&snap.config.pooler.log_level);
    *shared.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap.clone();
    shared
        .registry
        .reconfigure(|key, current| snap.spec_under(key, current));
    let (a, b) = (&old.config.tls, &snap.config.tls);
    let server_tls_changed = a.server_tls_mode != b.server_tls_mode
        || a.server_tls_ca_file != b.server_tls_ca_file
        || a.server_tls_cert_file != b.server_tls_cert_file
        || a.server_tls_key_file != b.server_tls_key_file;
    if server_tls_changed {
        log::info!("reload: server TLS settings changed; servers reconnect as they are released");
        shared.registry.retire_all_servers();
    }
    shared.broadcast(|| WorkerMsg::Reload(snap.clone()));
    log::info!("configuration reloaded from {}", path.display());
    Ok(())
}

/// How often systemd's STATUS= line is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

impl Daemon {
    fn reload(&mut self) {
        match reload(&self.shared, &self.path, None) {
            Ok(()) => self.janitor(),
            Err(e) => log::error!("reload refused, keeping the running configuration: {e}"),
        }
    }

    fn status_line(&self) -> String {
        let clients = self.shared.clients.load(Ordering::Relaxed);
        let servers: u32 = self
            .shared
            .registry
            .all()
            .iter()
            .map(|p| p.counts().1)
            .sum();
        format!("{clients} clients, {servers} server connections")
    }

    fn begin_shutdown(&mut self, mode: ShutdownMode) {
        self.notifier.stopping();
        self.shared.draining.store(true, Ordering::Release);
        self.shared.broadcast(|| WorkerMsg::Shutdown(mode));
    }

    fn pick_worker(&mut self) -> usize {
        self.next_worker = (self.next_worker + 1) % self.workers;
        self.next_worker
    }

    /// Periodic upkeep: close idle servers past their timeouts, keep min_pool_size warm,
    /// and open servers for waiters nobody is opening one for (after a reload raised a
    /// pool size, say).
    fn janitor(&mut self) {
        if self.shared.draining.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        // Pools whose server user is fixed by the config exist before any client, so
        // min_pool_size can warm them from the start.
        let snap = self.shared.snapshot();
        for (name, db) in &snap.config.databases {
            if let Some(user) = &db.user {
                if let Some((key, spec)) = snap.pool_for(name, user, Login::Static) {
                    self.shared.registry.get_or_create(key, || spec);
                }
            }
        }
        for auth_query in snap.auth_queries.values() {
            auth_query.cache().sweep(now);
        }
        self.shared
            .addr_limiter
            .sweep(&snap.config.pooler.addr_limits, now);
        // Dynamic pools exist only where some database is in passthrough mode,
        // but removed pools that wound down are dropped everywhere.
        let passthrough = snap
            .auth_queries
            .values()
            .any(|a| a.config.server_user.is_none());
        let idle_timeout = match passthrough {
            true => snap.config.pooler.dynamic_pool_idle_timeout,
            false => Duration::ZERO,
        };
        for key in self.shared.registry.collect_unused(now, idle_timeout) {
            log::debug!("dropped idle dynamic pool {}@{}", key.user, key.database);
        }
        for pool in self.shared.registry.all() {
            for conn in pool.take_expired_idle(now) {
                log::debug!("closing idle server {}", conn.id);
                conn.terminate();
            }
            while pool.reserve_warm() {
                let w = self.pick_worker();
                self.shared.send_to(w, WorkerMsg::Launch(pool.clone()));
            }
            while pool.launch_if_needed() {
                let w = self.pick_worker();
                self.shared.send_to(w, WorkerMsg::Launch(pool.clone()));
            }
        }
    }

    fn close_idle_servers(&mut self) {
        for pool in self.shared.registry.all() {
            pool.set_removed(true);
            for conn in pool.take_expired_idle(Instant::now()) {
                conn.terminate();
            }
        }
    }
}
