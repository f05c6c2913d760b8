//! auth_query: users whose password hashes live in PostgreSQL, not in the
//! pooler's config.
//!
//! - [`executor`] runs the lookup query on its own blocking threads (an r2d2
//!   pool of `postgres::Client`s, each of which drives a small tokio runtime):
//!   a worker only queues a lookup and is told the answer through a closure,
//!   so no worker ever waits on PostgreSQL.
//! - [`cache`] is sans-IO bookkeeping, one per database behind a `Mutex`
//!   shared by all workers: positive and negative entries, single flight
//!   (one query however many clients log in as the same uncached user), and
//!   the rate limit on refetching after a failed password check.
//! - [`secret`] parses `rolpassword` once, when it is fetched.
//!
//! How an answer reaches the client, and why some answers look alike:
//!
//! | [`FetchResult`]  | cached                  | what the client sees                         |
//! |------------------|-------------------------|----------------------------------------------|
//! | `Found`          | `cache_ttl`             | the md5 or SCRAM exchange with that secret   |
//! | `NoSuchUser`     | `cache_failure_ttl`     | 28P01, same message as a wrong password      |
//! | `Unusable`       | `cache_failure_ttl`     | 28P01, same message as a wrong password      |
//! | `Error`          | no                      | a login failure naming the lookup, not the user |
//!
//! `Unusable` (NULL password, several rows, an unrecognized hash) is a
//! definite answer about one user, so it must look exactly like a wrong
//! password or it would tell a client which names exist; the reason goes to
//! the operator's log only. `Error` (PostgreSQL unreachable, a timeout, a
//! broken query) says nothing about the user, so the client may be told that
//! the lookup failed; it is never cached, so an outage never turns into
//! "no such user" entries.

pub mod cache;
pub mod executor;
pub mod secret;

use std::sync::Arc;

pub use cache::{AuthCache, CacheSettings, CacheStats, EntryInfo, EntryKind, Lookup, Refetch};
pub use executor::{Executor, ExecutorConfig, ExecutorStats};
pub use secret::{parse_secret, Secret};

/// The outcome of one lookup, as the executor reports it and the cache
/// stores it.
#[derive(Clone, Debug)]
pub enum FetchResult {
    Found(Arc<Secret>),
    /// The query returned no row.
    NoSuchUser,
    /// PostgreSQL answered, but not with one usable secret. The text is for
    /// the operator's log, never for the client.
    Unusable(String),
    /// No answer: the lookup itself failed. The text is for the log.
    Error(String),
}

/// A login waiting for a lookup: its worker and its slot there.
pub type Waiter = (usize, crate::pool::ConnRef);

/// Everything one database's auth_query needs at run time. A reload keeps
/// the same one (cache, executor connections and all) while the database's
/// auth_query config and address stay the same.
pub struct AuthQuery {
    /// Unique per process: the passthrough pools made under this runtime
    /// carry it, and die with it when a reload replaces the runtime.
    pub id: u64,
    pub database: String,
    pub config: crate::config::AuthQueryConfig,
    pub executor: Executor,
    pub cache: std::sync::Mutex<AuthCache<Waiter>>,
}

impl AuthQuery {
    pub fn next_id() -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn cache(&self) -> std::sync::MutexGuard<'_, AuthCache<Waiter>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
