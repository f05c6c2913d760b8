//! Runs auth_query lookups on blocking threads of their own: an r2d2 pool of
//! `postgres::Client`s plus `pool_size` threads that take lookups from a
//! channel. A worker only queues a [`Lookup`] and gets the answer through the
//! closure it passed, which sends it back through the worker's inbox and
//! waker; no reactor thread ever waits on PostgreSQL.
//!
//! Every lookup carries a deadline (server_connect_timeout from the moment
//! the login asked): a dead PostgreSQL fails it through the r2d2 checkout
//! timeout, a hung one through the connect timeout and the statement
//! timeout set on every executor connection. The worker also fails the
//! client itself at the deadline, so even a lookup stuck in a kernel call
//! never holds a login longer than that.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;

use super::{parse_secret, FetchResult};

/// Where and how the executor connects, and what it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// A host name or address, or a directory holding the unix socket.
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: String,
    pub query: String,
    pub pool_size: u32,
    /// Connect timeout and statement timeout of executor connections.
    pub timeout: Duration,
}

/// Counters for the admin console; relaxed atomics, read on demand.
#[derive(Default)]
pub struct ExecutorStats {
    pub queries: AtomicU64,
    pub errors: AtomicU64,
    /// Lookups taken by a thread and not answered yet.
    pub active: AtomicUsize,
    pub last_error: Mutex<Option<String>>,
}

type Reply = Box<dyn FnOnce(FetchResult) + Send>;

struct Lookup {
    user: String,
    deadline: Instant,
    reply: Reply,
}

pub struct Executor {
    config: ExecutorConfig,
    jobs: Sender<Lookup>,
    stats: Arc<ExecutorStats>,
}

type PgPool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

impl Executor {
    /// Starts the threads; connections open on the first lookups, so a
    /// PostgreSQL that is down at start-up delays nothing.
    pub fn start(name: &str, config: ExecutorConfig) -> std::io::Result<Executor> {
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size.max(1))
            .min_idle(Some(0))
            // A failed query or a dropped connection is noticed by
            // `has_broken`; a health check per checkout would double the
            // round trips of every lookup.
            .test_on_check_out(false)
            .connection_timeout(config.timeout)
            .idle_timeout(Some(Duration::from_secs(600)))
            .error_handler(Box::new(LogConnectError(name.to_owned())))
            .build_unchecked(PostgresConnectionManager::new(
                client_config(&config),
                NoTls,
            ));
        let (jobs, rx) = channel::<Lookup>();
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(ExecutorStats::default());
        for i in 0..config.pool_size.max(1) {
            let (rx, pool, stats, query) = (
                rx.clone(),
                pool.clone(),
                stats.clone(),
                config.query.clone(),
            );
            std::thread::Builder::new()
                .name(format!("auth_query {name} {i}"))
                .spawn(move || serve(&rx, &pool, &stats, &query))?;
        }
        Ok(Executor {
            config,
            jobs,
            stats,
        })
    }

    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    pub fn stats(&self) -> &ExecutorStats {
        &self.stats
    }

    /// Queues a lookup of `user`; `reply` runs exactly once, on an executor
    /// thread, by `deadline` give or take the connect and statement timeouts.
    pub fn lookup(
        &self,
        user: &str,
        deadline: Instant,
        reply: impl FnOnce(FetchResult) + Send + 'static,
    ) {
        let job = Lookup {
            user: user.to_owned(),
            deadline,
            reply: Box::new(reply),
        };
        if let Err(failed) = self.jobs.send(job) {
            // The threads are gone (they never exit while `jobs` lives,
            // unless spawning failed): answer rather than leave waiters.
            (failed.0.reply)(FetchResult::Error("auth_query executor stopped".into()));
        }
    }
}

fn client_config(c: &ExecutorConfig) -> postgres::Config {
    let mut pg = postgres::Config::new();
    if c.host.starts_with('/') {
        pg.host_path(&c.host);
    } else {
        pg.host(&c.host);
    }
    // search_path is fixed here and nothing of a client's reaches these
    // connections, so a client cannot make the query resolve names in a
    // schema it controls (PgBouncer's CVE-2025-12819).
    let statement_ms = c.timeout.as_millis().max(1);
    pg.port(c.port)
        .user(&c.user)
        .password(&c.password)
        .dbname(&c.dbname)
        .application_name("pooler auth_query")
        .options(&format!(
            "-c search_path=pg_catalog -c statement_timeout={statement_ms}"
        ))
        .connect_timeout(c.timeout);
    pg
}

fn serve(rx: &Mutex<Receiver<Lookup>>, pool: &PgPool, stats: &ExecutorStats, query: &str) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        stats.active.fetch_add(1, Ordering::Relaxed);
        let result = run(pool, query, &job.user, job.deadline);
        stats.active.fetch_sub(1, Ordering::Relaxed);
        stats.queries.fetch_add(1, Ordering::Relaxed);
        if let FetchResult::Error(e) = &result {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            *stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
        }
        (job.reply)(result);
    }
}

fn run(pool: &PgPool, query: &str, user: &str, deadline: Instant) -> FetchResult {
    // One retry: a connection PostgreSQL closed while it sat idle in the
    // pool (a restart, idle_session_timeout) fails only when used.
    for attempt in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return FetchResult::Error("timed out".into());
        }
        let mut client = match pool.get_timeout(left) {
            Ok(c) => c,
            Err(e) => return FetchResult::Error(format!("cannot connect: {e}")),
        };
        match client.query(query, &[&user]) {
            Ok(rows) => return answer(&rows),
            Err(e) if e.is_closed() && attempt == 0 => continue,
            Err(e) => return FetchResult::Error(query_error(&e)),
        }
    }
    FetchResult::Error("connection closed".into())
}

fn query_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn answer(rows: &[postgres::Row]) -> FetchResult {
    let row = match rows {
        [] => return FetchResult::NoSuchUser,
        [row] => row,
        more => {
            return FetchResult::Unusable(format!(
                "the query returned {} rows; it must return at most one",
                more.len()
            ))
        }
    };
    if row.len() < 2 {
        return FetchResult::Error(
            "the query must return two columns: the user name and the password hash".into(),
        );
    }
    match row.try_get::<_, Option<String>>(1) {
        Ok(Some(hash)) => match parse_secret(&hash) {
            Ok(secret) => FetchResult::Found(Arc::new(secret)),
            Err(e) => FetchResult::Unusable(e),
        },
        Ok(None) => FetchResult::Unusable(
            "NULL password hash (no password, or VALID UNTIL has passed)".into(),
        ),
        Err(e) => FetchResult::Error(format!("the password column is not text: {e}")),
    }
}

/// r2d2 retries connecting in the background until a checkout times out;
/// each failure is worth a log line naming the database, not r2d2's bare one.
#[derive(Debug)]
struct LogConnectError(String);

impl r2d2::HandleError<postgres::Error> for LogConnectError {
    fn handle_error(&self, error: postgres::Error) {
        log::warn!(
            "auth_query for database {}: cannot connect: {error}",
            self.0
        );
    }
}
