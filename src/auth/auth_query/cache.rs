//! Per-database cache of auth_query answers, sans-IO: the caller passes the
//! time in and does the fetching, so every rule here is testable with a fake
//! clock.
//!
//! One `Mutex<AuthCache<W>>` per database is shared by all workers; every
//! method is a few map operations, so the lock is held only briefly. `W` is
//! whatever identifies a waiting login to its worker (e.g. worker id plus a
//! client id with its generation); the cache only queues and returns it.
//!
//! The protocol, for a login as `user`:
//!
//! 1. [`lookup`]: `Hit` and `Unknown` answer at once. `Fetch` means "start
//!    the query": the caller was queued as the first waiter. `Wait` means a
//!    query is already in flight and the caller was queued.
//! 2. When the query's answer arrives, [`complete`] stores it and hands back
//!    every queued waiter, *including the one that got `Fetch`*, so the
//!    integrator delivers one result to one list and never special-cases the
//!    fetcher. Every `Fetch` (from `lookup` or `password_failed`) must be
//!    followed by exactly one `complete` for that user, or later logins as
//!    that user wait forever; the executor calls its reply exactly once,
//!    within its deadline, which makes that easy to keep.
//! 3. After a password check against a cached secret fails,
//!    [`password_failed`] decides whether to refetch (the password may have
//!    changed in PostgreSQL).
//!
//! Freshness is computed from `fetched_at` and the current settings, so a
//! reload that changes `cache_ttl` applies to entries already cached.
//!
//! [`lookup`]: AuthCache::lookup
//! [`complete`]: AuthCache::complete
//! [`password_failed`]: AuthCache::password_failed

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{FetchResult, Secret};
use crate::config::AuthQueryConfig;

/// The reloadable knobs, from `[databases.NAME.auth_query]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a found secret is used without asking PostgreSQL again.
    /// Zero: every login queries (single flight still applies).
    pub ttl: Duration,
    /// How long "no such user" (or an unusable row) is remembered.
    /// Zero: not remembered.
    pub failure_ttl: Duration,
    /// Least time between two fetches of one user that a failed password
    /// check may cause. Zero: no limit.
    pub min_interval: Duration,
    /// A fetch in flight longer than this is presumed lost (an executor
    /// stuck past its deadline): the next login starts another instead of
    /// queueing behind it forever. Zero: never.
    pub fetch_timeout: Duration,
}

impl CacheSettings {
    pub fn from_config(c: &AuthQueryConfig, fetch_timeout: Duration) -> CacheSettings {
        CacheSettings {
            ttl: c.cache_ttl,
            failure_ttl: c.cache_failure_ttl,
            min_interval: c.min_interval,
            fetch_timeout,
        }
    }
}

/// What a login should do next; see the module docs.
#[derive(Clone, Debug)]
pub enum Lookup {
    Hit(Arc<Secret>),
    /// A fresh negative entry: fail the login exactly like a wrong password.
    Unknown,
    /// A fetch is in flight; the waiter was queued and comes back from
    /// [`AuthCache::complete`].
    Wait,
    /// Start the fetch; the waiter was queued as well.
    Fetch,
}

/// The answer to [`AuthCache::password_failed`].
#[derive(Clone, Debug)]
pub enum Refetch {
    /// Start the fetch; the waiter was queued and comes back from
    /// [`AuthCache::complete`]. The secret stays cached meanwhile (lookups
    /// wait for the new one), and is kept if the fetch ends in
    /// `FetchResult::Error`, so one wrong password during a PostgreSQL outage
    /// cannot evict a user who would otherwise still log in.
    Fetch,
    /// A fetch is already in flight; the waiter was queued.
    Wait,
    /// The cache already holds a different secret than the one checked
    /// (another login's refetch replaced it): check against this one. The
    /// waiter was not queued.
    Newer(Arc<Secret>),
    /// Rate-limited (or the user is now known not to exist): the login
    /// fails. The waiter was not queued.
    Deny,
}

/// What an entry holds, for the admin console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Md5,
    Scram,
    /// A negative entry.
    Unknown,
    /// Nothing usable yet, a fetch in flight.
    Pending,
}

/// One row of [`AuthCache::entries`].
#[derive(Clone, Debug)]
pub struct EntryInfo {
    pub user: String,
    pub kind: EntryKind,
    pub fetched_at: Option<Instant>,
    /// `None` when there is nothing cached, or the expiry is past what an
    /// `Instant` can hold.
    pub expires_at: Option<Instant>,
    /// A fetch is in flight (a first fetch or a refetch).
    pub fetching: bool,
    pub waiters: usize,
    /// Start of the latest fetch, first or refetch.
    pub last_fetch: Instant,
}

/// Counters since the cache was created; reload keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub negative_hits: u64,
    /// Fetches started by `lookup` (misses and expired entries).
    pub fetches: u64,
    /// Fetches started by `password_failed`.
    pub refetches: u64,
    /// Logins queued behind a fetch in flight.
    pub waits: u64,
    /// `password_failed` answered `Deny`.
    pub denied: u64,
    /// Fetches that ended in `FetchResult::Error`.
    pub errors: u64,
}

enum Known {
    Nothing,
    Secret {
        secret: Arc<Secret>,
        fetched_at: Instant,
    },
    Unknown {
        fetched_at: Instant,
    },
}

struct Inflight<W> {
    waiters: Vec<W>,
}

struct Entry<W> {
    known: Known,
    inflight: Option<Inflight<W>>,
    /// Start of the latest fetch of any kind: a secret fetched a moment ago
    /// is not worth refetching after a wrong password.
    last_fetch: Instant,
}

pub struct AuthCache<W> {
    settings: CacheSettings,
    entries: HashMap<String, Entry<W>>,
    stats: CacheStats,
}

fn fresh(fetched_at: Instant, ttl: Duration, now: Instant) -> bool {
    // Subtraction rather than `fetched_at + ttl`: a huge ttl must not
    // overflow, and a `now` earlier than `fetched_at` must not panic.
    now.saturating_duration_since(fetched_at) < ttl
}

/// A fetch started at `started` that should long have answered. Its waiters
/// stay queued: whichever answer comes first serves them all.
fn stale(started: Instant, s: CacheSettings, now: Instant) -> bool {
    !s.fetch_timeout.is_zero() && now.saturating_duration_since(started) > s.fetch_timeout
}

impl<W> AuthCache<W> {
    pub fn new(settings: CacheSettings) -> AuthCache<W> {
        AuthCache {
            settings,
            entries: HashMap::new(),
            stats: CacheStats::default(),
        }
    }

    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// Applies to entries already cached, from the next call on.
    pub fn set_settings(&mut self, settings: CacheSettings) {
        self.settings = settings;
    }

    /// Queues `waiter` on `user`'s fetch in flight, or on a new one when the
    /// user has no entry (or the one in flight is presumed lost): `Ok(true)`
    /// means the caller starts the fetch. `Err(waiter)`: an entry with no fetch
    /// in flight, for the caller to judge.
    fn queue(&mut self, user: &str, waiter: W, now: Instant) -> Result<bool, W> {
        let s = self.settings;
        let Some(e) = self.entries.get_mut(user) else {
            self.entries.insert(
                user.to_owned(),
                Entry {
                    known: Known::Nothing,
                    inflight: Some(Inflight {
                        waiters: vec![waiter],
                    }),
                    last_fetch: now,
                },
            );
            return Ok(true);
        };
        let Some(f) = &mut e.inflight else {
            return Err(waiter);
        };
        f.waiters.push(waiter);
        if stale(e.last_fetch, s, now) {
            e.last_fetch = now;
            return Ok(true);
        }
        self.stats.waits += 1;
        Ok(false)
    }

    pub fn lookup(&mut self, user: &str, waiter: W, now: Instant) -> Lookup {
        let s = self.settings;
        let waiter = match self.queue(user, waiter, now) {
            Ok(true) => {
                self.stats.fetches += 1;
                return Lookup::Fetch;
            }
            Ok(false) => return Lookup::Wait,
            Err(waiter) => waiter,
        };
        let Some(e) = self.entries.get_mut(user) else {
            return Lookup::Wait; // unreachable: `queue` found the entry
        };
        match &e.known {
            Known::Secret { secret, fetched_at } if fresh(*fetched_at, s.ttl, now) => {
                self.stats.hits += 1;
                return Lookup::Hit(secret.clone());
            }
            Known::Unknown { fetched_at } if fresh(*fetched_at, s.failure_ttl, now) => {
                self.stats.negative_hits += 1;
                return Lookup::Unknown;
            }
            _ => {}
        }
        e.known = Known::Nothing;
        e.inflight = Some(Inflight {
            waiters: vec![waiter],
        });
        e.last_fetch = now;
        self.stats.fetches += 1;
        Lookup::Fetch
    }

    /// Stores the answer of the fetch in flight for `user` and returns its
    /// waiters, oldest first; the caller hands each of them `result`.
    ///
    /// `Found` is cached for `ttl`; `NoSuchUser` and `Unusable` become a
    /// negative entry for `failure_ttl`; `Error` stores nothing (a secret
    /// kept through a refetch stays, see [`Refetch::Fetch`]), so a PostgreSQL
    /// outage never turns into "no such user" entries. Without a fetch in
    /// flight (a late or duplicate answer) nothing is stored and no waiter
    /// is returned.
    pub fn complete(&mut self, user: &str, result: &FetchResult, now: Instant) -> Vec<W> {
        let Some(e) = self.entries.get_mut(user) else {
            return Vec::new();
        };
        let Some(f) = e.inflight.take() else {
            return Vec::new();
        };
        match result {
            FetchResult::Found(secret) => {
                e.known = Known::Secret {
                    secret: secret.clone(),
                    fetched_at: now,
                }
            }
            FetchResult::NoSuchUser | FetchResult::Unusable(_) => {
                e.known = Known::Unknown { fetched_at: now }
            }
            FetchResult::Error(_) => {
                self.stats.errors += 1;
                if matches!(e.known, Known::Nothing) {
                    self.entries.remove(user);
                }
            }
        }
        f.waiters
    }

    /// A password check against `checked` (a secret this cache handed out)
    /// failed. See [`Refetch`] for the answers. A refetch is allowed when no
    /// fetch of this user started within `min_interval`.
    pub fn password_failed(
        &mut self,
        user: &str,
        checked: &Secret,
        waiter: W,
        now: Instant,
    ) -> Refetch {
        let s = self.settings;
        // No entry (swept since the caller's hit) is an ordinary miss with no
        // rate limit to apply: a lookup would fetch just the same.
        let waiter = match self.queue(user, waiter, now) {
            Ok(true) => {
                self.stats.refetches += 1;
                return Refetch::Fetch;
            }
            Ok(false) => return Refetch::Wait,
            Err(waiter) => waiter,
        };
        let Some(e) = self.entries.get_mut(user) else {
            return Refetch::Wait; // unreachable: `queue` found the entry
        };
        match &e.known {
            Known::Secret { secret, fetched_at }
                if fresh(*fetched_at, s.ttl, now) && **secret != *checked =>
            {
                return Refetch::Newer(secret.clone());
            }
            Known::Unknown { fetched_at } if fresh(*fetched_at, s.failure_ttl, now) => {
                self.stats.denied += 1;
                return Refetch::Deny;
            }
            _ => {}
        }
        if now.saturating_duration_since(e.last_fetch) < s.min_interval {
            self.stats.denied += 1;
            return Refetch::Deny;
        }
        e.inflight = Some(Inflight {
            waiters: vec![waiter],
        });
        e.last_fetch = now;
        self.stats.refetches += 1;
        Refetch::Fetch
    }

    /// Drops entries that hold nothing fresh and have no fetch in flight.
    /// Call it periodically (every few seconds is plenty); lookups never
    /// use an expired entry either way, this only frees the memory.
    pub fn sweep(&mut self, now: Instant) {
        let s = self.settings;
        self.entries.retain(|_, e| {
            e.inflight.is_some()
                || match &e.known {
                    Known::Nothing => false,
                    Known::Secret { fetched_at, .. } => fresh(*fetched_at, s.ttl, now),
                    Known::Unknown { fetched_at } => fresh(*fetched_at, s.failure_ttl, now),
                }
        });
    }

    /// Forgets what is cached for `user` (an admin command, or a changed
    /// query). A fetch in flight stays: its waiters are still owed an answer.
    pub fn invalidate(&mut self, user: &str) {
        if let Some(e) = self.entries.get_mut(user) {
            if e.inflight.is_some() {
                e.known = Known::Nothing;
            } else {
                self.entries.remove(user);
            }
        }
    }

    /// [`invalidate`](Self::invalidate) for every user.
    pub fn clear(&mut self) {
        self.entries.retain(|_, e| {
            e.known = Known::Nothing;
            e.inflight.is_some()
        });
    }

    /// Entries, expired ones included until the next sweep.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// A snapshot for the admin console, in no particular order.
    pub fn entries(&self) -> Vec<EntryInfo> {
        let s = self.settings;
        self.entries
            .iter()
            .map(|(user, e)| {
                let (kind, fetched_at, expires_at) = match &e.known {
                    Known::Nothing => (EntryKind::Pending, None, None),
                    Known::Secret { secret, fetched_at } => (
                        match **secret {
                            Secret::Md5(_) => EntryKind::Md5,
                            Secret::Scram(_) => EntryKind::Scram,
                        },
                        Some(*fetched_at),
                        fetched_at.checked_add(s.ttl),
                    ),
                    Known::Unknown { fetched_at } => (
                        EntryKind::Unknown,
                        Some(*fetched_at),
                        fetched_at.checked_add(s.failure_ttl),
                    ),
                };
                EntryInfo {
                    user: user.clone(),
                    kind,
                    fetched_at,
                    expires_at,
                    fetching: e.inflight.is_some(),
                    last_fetch: e.last_fetch,
                    waiters: e.inflight.as_ref().map_or(0, |f| f.waiters.len()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::md5::md5_password_hash;

    const TTL: Duration = Duration::from_secs(3600);
    const FAIL_TTL: Duration = Duration::from_secs(30);
    const MIN_INTERVAL: Duration = Duration::from_secs(1);

    fn settings() -> CacheSettings {
        CacheSettings {
            ttl: TTL,
            failure_ttl: FAIL_TTL,
            min_interval: MIN_INTERVAL,
            fetch_timeout: Duration::from_secs(5),
        }
    }

    fn md5(pw: &str) -> Arc<Secret> {
        Arc::new(Secret::Md5(md5_password_hash("alice", pw)))
    }

    fn found(pw: &str) -> FetchResult {
        FetchResult::Found(md5(pw))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn hit(l: Lookup) -> Arc<Secret> {
        match l {
            Lookup::Hit(s) => s,
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    /// Caches `pw` for alice at `t`.
    fn cached(c: &mut AuthCache<u32>, pw: &str, t: Instant) -> Arc<Secret> {
        assert!(matches!(c.lookup("alice", 0, t), Lookup::Fetch));
        assert_eq!(c.complete("alice", &found(pw), t), vec![0]);
        hit(c.lookup("alice", 1, t))
    }

    #[test]
    fn single_flight() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        let (mut fetch, mut wait) = (0, 0);
        for w in 0..50u32 {
            match c.lookup("alice", w, t) {
                Lookup::Fetch => fetch += 1,
                Lookup::Wait => wait += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((fetch, wait), (1, 49));
        let infos = c.entries();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].kind, EntryKind::Pending);
        assert_eq!(infos[0].waiters, 50);
        // All of them, the fetcher first.
        assert_eq!(
            c.complete("alice", &found("pw"), t),
            (0..50).collect::<Vec<_>>()
        );
        assert_eq!(*hit(c.lookup("alice", 99, t + ms(1))), *md5("pw"));
        // A duplicate answer finds no fetch in flight.
        assert!(c.complete("alice", &found("other"), t).is_empty());
        assert_eq!(*hit(c.lookup("alice", 99, t)), *md5("pw"));
        let st = c.stats();
        assert_eq!((st.fetches, st.waits, st.hits), (1, 49, 2));
        // Another user is independent.
        assert!(matches!(c.lookup("bob", 1, t), Lookup::Fetch));
    }

    #[test]
    fn a_lost_fetch_is_replaced() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        assert!(matches!(c.lookup("alice", 0, t), Lookup::Fetch));
        assert!(matches!(c.lookup("alice", 1, t + ms(4000)), Lookup::Wait));
        let late = t + ms(5001);
        assert!(matches!(c.lookup("alice", 2, late), Lookup::Fetch));
        assert!(matches!(c.lookup("alice", 3, late), Lookup::Wait));
        // The first answer serves everyone; the second finds nothing to do.
        assert_eq!(c.complete("alice", &found("pw"), late), vec![0, 1, 2, 3]);
        assert!(c.complete("alice", &found("pw"), late).is_empty());
    }

    #[test]
    fn ttl_expiry() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        cached(&mut c, "pw", t);
        hit(c.lookup("alice", 1, t + TTL - ms(1)));
        assert!(matches!(c.lookup("alice", 2, t + TTL), Lookup::Fetch));
        // The expired secret is gone, not served while the fetch runs.
        assert!(matches!(c.lookup("alice", 3, t + TTL), Lookup::Wait));
        assert_eq!(c.complete("alice", &found("new"), t + TTL), vec![2, 3]);
        assert_eq!(*hit(c.lookup("alice", 4, t + TTL)), *md5("new"));
    }

    #[test]
    fn reload_applies_to_cached_entries() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        cached(&mut c, "pw", t);
        c.set_settings(CacheSettings {
            ttl: Duration::from_secs(10),
            ..settings()
        });
        assert!(matches!(
            c.lookup("alice", 1, t + Duration::from_secs(10)),
            Lookup::Fetch
        ));
    }

    #[test]
    fn negative_ttl() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        for (user, result) in [
            ("ghost", FetchResult::NoSuchUser),
            ("expired", FetchResult::Unusable("NULL password".into())),
        ] {
            assert!(matches!(c.lookup(user, 0, t), Lookup::Fetch));
            assert_eq!(c.complete(user, &result, t), vec![0]);
            assert!(matches!(
                c.lookup(user, 1, t + FAIL_TTL - ms(1)),
                Lookup::Unknown
            ));
            assert!(matches!(c.lookup(user, 2, t + FAIL_TTL), Lookup::Fetch));
        }
        assert_eq!(c.stats().negative_hits, 2);
    }

    #[test]
    fn zero_failure_ttl_remembers_nothing() {
        let mut c = AuthCache::new(CacheSettings {
            failure_ttl: Duration::ZERO,
            ..settings()
        });
        let t = Instant::now();
        assert!(matches!(c.lookup("ghost", 0, t), Lookup::Fetch));
        c.complete("ghost", &FetchResult::NoSuchUser, t);
        assert!(matches!(c.lookup("ghost", 1, t), Lookup::Fetch));
    }

    #[test]
    fn errors_are_not_cached() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        assert!(matches!(c.lookup("alice", 0, t), Lookup::Fetch));
        assert!(matches!(c.lookup("alice", 1, t), Lookup::Wait));
        let err = FetchResult::Error("connection refused".into());
        assert_eq!(c.complete("alice", &err, t), vec![0, 1]);
        assert!(c.is_empty());
        // The very next login asks again: an outage is not "no such user".
        assert!(matches!(c.lookup("alice", 2, t), Lookup::Fetch));
        c.complete("alice", &found("pw"), t);
        hit(c.lookup("alice", 3, t));
        assert_eq!(c.stats().errors, 1);
    }

    #[test]
    fn refetch_error_keeps_the_secret() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        let old = cached(&mut c, "pw", t);
        let t1 = t + Duration::from_secs(5);
        assert!(matches!(
            c.password_failed("alice", &old, 7, t1),
            Refetch::Fetch
        ));
        // During the refetch a login waits for the new answer.
        assert!(matches!(c.lookup("alice", 8, t1), Lookup::Wait));
        let err = FetchResult::Error("timeout".into());
        assert_eq!(c.complete("alice", &err, t1), vec![7, 8]);
        assert_eq!(*hit(c.lookup("alice", 9, t1)), *old);
    }

    #[test]
    fn refetch_rate_limit() {
        let mut c = AuthCache::new(settings());
        let t0 = Instant::now();
        let old = cached(&mut c, "pw", t0);
        // Fetched a moment ago: the secret is as fresh as a refetch's.
        assert!(matches!(
            c.password_failed("alice", &old, 1, t0 + ms(500)),
            Refetch::Deny
        ));
        let t1 = t0 + MIN_INTERVAL;
        assert!(matches!(
            c.password_failed("alice", &old, 2, t1),
            Refetch::Fetch
        ));
        assert!(matches!(
            c.password_failed("alice", &old, 3, t1),
            Refetch::Wait
        ));
        assert_eq!(c.complete("alice", &found("changed"), t1), vec![2, 3]);
        // A login that failed against the old secret is pointed at the new one.
        match c.password_failed("alice", &old, 4, t1 + ms(10)) {
            Refetch::Newer(s) => assert_eq!(*s, *md5("changed")),
            other => panic!("{other:?}"),
        }
        let new = md5("changed");
        assert!(matches!(
            c.password_failed("alice", &new, 5, t1 + ms(10)),
            Refetch::Deny
        ));

        // A burst of wrong passwords, one every 10 ms for 5 s, each answer
        // arriving at once: at most one refetch per interval.
        let mut c = AuthCache::new(settings());
        let secret = cached(&mut c, "pw", t0);
        let mut refetch_times = Vec::new();
        for i in 0..500u32 {
            let now = t0 + ms(10 * u64::from(i));
            match c.password_failed("alice", &secret, i, now) {
                Refetch::Fetch => {
                    refetch_times.push(now);
                    assert_eq!(c.complete("alice", &found("pw"), now), vec![i]);
                }
                Refetch::Deny => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refetch_times.len(), 4, "{refetch_times:?}");
        for w in refetch_times.windows(2) {
            assert!(w[1] - w[0] >= MIN_INTERVAL);
        }
        assert_eq!(c.stats().refetches, 4);
        assert_eq!(c.stats().denied, 496);
    }

    #[test]
    fn refetch_of_a_deleted_user() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        let old = cached(&mut c, "pw", t);
        let t1 = t + MIN_INTERVAL;
        assert!(matches!(
            c.password_failed("alice", &old, 1, t1),
            Refetch::Fetch
        ));
        c.complete("alice", &FetchResult::NoSuchUser, t1);
        assert!(matches!(c.lookup("alice", 2, t1), Lookup::Unknown));
        assert!(matches!(
            c.password_failed("alice", &old, 3, t1 + MIN_INTERVAL),
            Refetch::Deny
        ));
    }

    #[test]
    fn zero_min_interval_always_refetches() {
        let mut c = AuthCache::new(CacheSettings {
            min_interval: Duration::ZERO,
            ..settings()
        });
        let t = Instant::now();
        let s = cached(&mut c, "pw", t);
        for w in 0..3 {
            assert!(matches!(
                c.password_failed("alice", &s, w, t),
                Refetch::Fetch
            ));
            c.complete("alice", &found("pw"), t);
        }
    }

    #[test]
    fn sweep_drops_expired_only() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        cached(&mut c, "pw", t);
        assert!(matches!(c.lookup("ghost", 0, t), Lookup::Fetch));
        c.complete("ghost", &FetchResult::NoSuchUser, t);
        assert!(matches!(c.lookup("pending", 0, t), Lookup::Fetch));
        assert_eq!(c.len(), 3);

        c.sweep(t + FAIL_TTL - ms(1));
        assert_eq!(c.len(), 3);
        c.sweep(t + FAIL_TTL);
        assert_eq!(c.len(), 2);
        let mut users: Vec<_> = c.entries().into_iter().map(|e| e.user).collect();
        users.sort();
        assert_eq!(users, ["alice", "pending"]);
        c.sweep(t + TTL);
        // A fetch in flight survives any sweep: its waiters are owed an answer.
        assert_eq!(c.len(), 1);
        assert_eq!(c.complete("pending", &found("x"), t + TTL), vec![0]);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn entries_report_times() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        cached(&mut c, "pw", t);
        let e = &c.entries()[0];
        assert_eq!(e.kind, EntryKind::Md5);
        assert_eq!(e.fetched_at, Some(t));
        assert_eq!(e.expires_at, Some(t + TTL));
        assert!(!e.fetching);
    }

    #[test]
    fn invalidate_and_clear() {
        let mut c = AuthCache::new(settings());
        let t = Instant::now();
        cached(&mut c, "pw", t);
        c.invalidate("alice");
        assert!(c.is_empty());
        cached(&mut c, "pw", t);
        assert!(matches!(c.lookup("bob", 0, t), Lookup::Fetch));
        c.clear();
        assert_eq!(c.len(), 1);
        assert!(matches!(c.lookup("alice", 1, t), Lookup::Fetch));
        assert!(matches!(c.lookup("bob", 1, t), Lookup::Wait));
    }
}
