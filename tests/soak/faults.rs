//! PostgreSQL going away under the pooler: a restart under load, a backend
//! terminated in the middle of a transaction, and a server that is down.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::util::*;
use crate::wire::{Conn, Fail};

/// What one client thread of `postgres_restart_under_load` saw.
#[derive(Default)]
struct LoopStats {
    ok: u64,
    /// (seconds since the start, error) of every failed query or login.
    errors: Vec<(f64, String)>,
    /// Longest query or login, and when it started.
    max_latency: Duration,
    max_latency_at: f64,
    /// Last successful query, in seconds since the start.
    last_ok: f64,
}

fn pg_error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A client that loops `SELECT 1` through the pooler until `stop`,
/// reconnecting after any error.
fn select_loop(port: u16, t0: Instant, stop: Arc<AtomicBool>) -> LoopStats {
    let mut st = LoopStats::default();
    let mut client: Option<Client> = None;
    let note = |st: &mut LoopStats, started: Instant| {
        let d = started.elapsed();
        if d > st.max_latency {
            st.max_latency = d;
            st.max_latency_at = (started - t0).as_secs_f64();
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            let started = Instant::now();
            let r = connect(port, USER, Some(PW), "postgres");
            note(&mut st, started);
            match r {
                Ok(c) => client = Some(c),
                Err(e) => {
                    st.errors
                        .push((t0.elapsed().as_secs_f64(), pg_error_text(&e)));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let c = client.as_mut().unwrap();
        let started = Instant::now();
        let r = c.simple_query("SELECT 1");
        note(&mut st, started);
        match r {
            Ok(_) => {
                st.ok += 1;
                st.last_ok = t0.elapsed().as_secs_f64();
            }
            Err(e) => {
                st.errors
                    .push((t0.elapsed().as_secs_f64(), pg_error_text(&e)));
                client = None;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    st
}

/// 32 clients loop `SELECT 1` through a transaction-mode pool of 10 while
/// PostgreSQL restarts (`pg_ctl restart -m fast`) under them: the clients
/// whose query was on a server get an error, none hangs, the same pooler
/// process serves new queries once PostgreSQL is back, and its memory does
/// not grow.
#[test]
fn postgres_restart_under_load() {
    let s = soak("postgres_restart_under_load");
    const CLIENTS: usize = 32;
    const RUN: Duration = Duration::from_secs(15);
    const RESTART_AT: Duration = Duration::from_secs(3);
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    // A query may wait for PostgreSQL's restart and one server login.
    const HANG: Duration = Duration::from_secs(10);

    let cfg = Cfg::transaction()
        .pool_size(10)
        .set("server_connect_timeout", "3s")
        .set("log_level", "info");
    let mut p = Pooler::start(&cfg);
    p.set_watchdog(Duration::from_secs(180));
    let pid = p.pid();
    let rss_start = rss_kb(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let results: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let stop = stop.clone();
            let port = p.port;
            spawn(move || select_loop(port, t0, stop))
        })
        .collect();

    std::thread::sleep(RESTART_AT.saturating_sub(t0.elapsed()));
    let rss_before_restart = rss_kb(pid);
    let restart_at = t0.elapsed();
    pg_restart_fast();
    let restart_done = t0.elapsed();

    // A brand-new client through the same pooler, as soon as PostgreSQL is back.
    let probe_start = Instant::now();
    let recovered = poll(CONNECT_TIMEOUT + Duration::from_secs(5), || {
        let mut c = p.try_connect(USER, Some(PW), "postgres").ok()?;
        try_one(&mut c, "SELECT 1").ok().filter(|v| v == "1")
    });
    let recovery = probe_start.elapsed();

    std::thread::sleep(RUN.saturating_sub(t0.elapsed()));
    stop.store(true, Ordering::Relaxed);
    let mut stats = Vec::new();
    let deadline = Instant::now() + HANG + Duration::from_secs(5);
    for rx in results {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(st) => stats.push(st),
            Err(_) => panic!(
                "a client is stuck in a query {:?} after the end of the run{}",
                HANG,
                p.ctx()
            ),
        }
    }
    // The clients are gone: let the pooler notice before measuring.
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = rss_kb(pid);

    let ok: u64 = stats.iter().map(|st| st.ok).sum();
    let errors: Vec<&(f64, String)> = stats.iter().flat_map(|st| &st.errors).collect();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, e) in &errors {
        *kinds.entry(e.as_str()).or_default() += 1;
    }
    let (max_latency, max_at) = stats
        .iter()
        .map(|st| (st.max_latency, st.max_latency_at))
        .max_by(|a, b| a.0.cmp(&b.0))
        .unwrap();
    let first_error = errors.iter().map(|e| e.0).fold(f64::INFINITY, f64::min);
    let last_error = errors.iter().map(|e| e.0).fold(0.0, f64::max);
    s.report(&format!(
        "restart at {}, PostgreSQL back at {} (pg_ctl restart took {}); \
         new client through the pooler ok after {}",
        secs(restart_at),
        secs(restart_done),
        secs(restart_done - restart_at),
        secs(recovery)
    ));
    s.report(&format!(
        "{ok} queries ok, {} errors between {first_error:.3} s and {last_error:.3} s; \
         longest query/login {} (started at {max_at:.3} s)",
        errors.len(),
        secs(max_latency)
    ));
    for (k, n) in &kinds {
        s.report(&format!("  {n} x {k}"));
    }
    s.report(&format!(
        "pooler RSS: {rss_start} kB at start, {rss_before_restart} kB under load before \
         the restart, {rss_after} kB after the run ({:+} kB); peak {} kB",
        rss_after as i64 - rss_before_restart as i64,
        hwm_kb(pid)
    ));

    let ctx = p.ctx();
    assert!(p.is_running() && p.pid() == pid, "the pooler died{ctx}");
    assert!(panics_in(&p.log()).is_empty(), "the pooler panicked{ctx}");
    assert!(
        recovered.is_some(),
        "no new query through the pooler succeeded within {:?} of PostgreSQL's \
         restart{ctx}",
        CONNECT_TIMEOUT + Duration::from_secs(5)
    );
    assert!(
        !errors.is_empty(),
        "no client saw an error although PostgreSQL restarted under them{ctx}"
    );
    let early: Vec<_> = errors
        .iter()
        .filter(|e| e.0 < restart_at.as_secs_f64())
        .collect();
    assert!(
        early.is_empty(),
        "errors before the restart: {early:?}{ctx}"
    );
    assert!(
        max_latency < HANG,
        "a query or login took {max_latency:?} (started at {max_at:.3} s){ctx}"
    );
    let stale: Vec<_> = stats
        .iter()
        .enumerate()
        .filter(|(_, st)| st.last_ok < restart_done.as_secs_f64())
        .map(|(i, st)| (i, st.last_ok))
        .collect();
    assert!(
        stale.is_empty(),
        "clients (index, last success) never succeeded after the restart: {stale:?}{ctx}"
    );
    assert!(
        rss_after <= rss_before_restart + 16 * 1024,
        "the pooler's RSS grew from {rss_before_restart} kB to {rss_after} kB{ctx}"
    );
}

/// `SHOW SERVERS` on the console as the stats user: remote_pid of each row.
fn server_pids(p: &Pooler) -> Vec<i32> {
    let mut admin = p.connect(USER, Some(PW), "pooler");
    admin
        .simple_query("SHOW SERVERS")
        .unwrap_or_else(|e| panic!("SHOW SERVERS: {e:?}{}", p.ctx()))
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get("remote_pid")?.parse().ok(),
            _ => None,
        })
        .collect()
}

/// A client's backend is terminated (pg_terminate_backend) while the client
/// is in a transaction: its next statement fails, the pooler drops that
/// server, the pool's other clients carry on, and the pool's next
/// transactions run on healthy servers with nothing of the lost one.
#[test]
fn terminate_backend_mid_transaction() {
    let s = soak("terminate_backend_mid_transaction");
    let c = cluster();
    let role = c.new_role("term");
    let t = c.new_table("term", "id int PRIMARY KEY");
    let cfg = Cfg::transaction()
        .pool_size(3)
        .user(&role, &role)
        .set_raw("stats_users", &format!("[{USER:?}]"));
    let p = Pooler::start(&cfg);
    let ctx = || p.ctx();

    let mut a = p.connect(&role, Some(&role), "postgres");
    let mut b = p.connect(&role, Some(&role), "postgres");
    let mut idle = p.connect(&role, Some(&role), "postgres");
    a.batch_execute("BEGIN").unwrap();
    let a_pid = p.backend(&mut a);
    a.batch_execute(&format!("INSERT INTO {t} VALUES (1)"))
        .unwrap();
    b.batch_execute("BEGIN").unwrap();
    let b_pid = p.backend(&mut b);
    b.batch_execute(&format!("INSERT INTO {t} VALUES (10)"))
        .unwrap();
    assert_ne!(
        a_pid,
        b_pid,
        "two open transactions share a server{}",
        ctx()
    );
    assert_eq!(p.one(&mut idle, "SELECT 1"), "1");

    // The victim, found the way an operator would.
    let victim: i32 = c
        .sql(
            "postgres",
            &format!(
                "SELECT pid FROM pg_stat_activity WHERE usename = '{role}' \
                 AND state = 'idle in transaction' \
                 AND query = 'INSERT INTO {t} VALUES (1)'"
            ),
        )
        .parse()
        .unwrap_or_else(|e| panic!("a's backend in pg_stat_activity: {e}{}", ctx()));
    assert_eq!(victim, a_pid);
    assert!(server_pids(&p).contains(&a_pid), "{}", ctx());
    assert_eq!(
        c.sql(
            "postgres",
            &format!("SELECT pg_terminate_backend({victim})")
        ),
        "t"
    );

    // The pooler may notice at once (the server's FATAL and EOF arrive
    // while it idles in the transaction) or only on a's next statement.
    let dropped_early = poll(Duration::from_secs(3), || {
        (!server_pids(&p).contains(&a_pid)).then_some(())
    })
    .is_some();

    let started = Instant::now();
    let r = a.simple_query(&format!("INSERT INTO {t} VALUES (2)"));
    let took = started.elapsed();
    let err = match r {
        Ok(_) => panic!(
            "a's statement succeeded after its backend was terminated{}",
            ctx()
        ),
        Err(e) => e,
    };
    let then = a.simple_query("SELECT 1");
    s.report(&format!(
        "server dropped by the pooler before the client's next statement: {dropped_early}"
    ));
    s.report(&format!(
        "client's next statement failed after {}: SQLSTATE {:?}, {} (debug: {err:?})",
        secs(took),
        sqlstate(&err),
        pg_error_text(&err)
    ));
    s.report(&format!(
        "client connection afterwards: closed = {}, SELECT 1 -> {}",
        a.is_closed(),
        match &then {
            Ok(_) => "ok".to_string(),
            Err(e) => pg_error_text(e),
        }
    ));
    assert!(
        took < Duration::from_secs(5),
        "the error took {took:?}{}",
        ctx()
    );
    let gone = poll(Duration::from_secs(5), || {
        (!server_pids(&p).contains(&a_pid)).then_some(())
    });
    assert!(
        gone.is_some(),
        "SHOW SERVERS still lists the terminated backend {a_pid}: {:?}{}",
        server_pids(&p),
        ctx()
    );

    // The others never noticed.
    b.batch_execute(&format!("INSERT INTO {t} VALUES (11)"))
        .unwrap_or_else(|e| panic!("b in its transaction: {e:?}{}", ctx()));
    assert_eq!(p.backend(&mut b), b_pid);
    b.batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("b's COMMIT: {e:?}{}", ctx()));
    assert_eq!(p.one(&mut idle, "SELECT 1"), "1");

    // New transactions, on every server the pool has or opens: none is
    // the dead one, none is inside a's transaction.
    let mut fresh = p.connect(&role, Some(&role), "postgres");
    for i in 0..6 {
        let msgs = fresh
            .simple_query(&format!(
                "BEGIN; INSERT INTO {t} VALUES ({}); \
                 SELECT pg_backend_pid()::text || ',' || count(*) FILTER (WHERE id IN (1, 2)) \
                 FROM {t}; COMMIT",
                100 + i
            ))
            .unwrap_or_else(|e| panic!("transaction {i} after the kill: {e:?}{}", ctx()));
        let row = msgs
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => r.get(0).map(String::from),
                _ => None,
            })
            .unwrap();
        let (pid, half) = row.split_once(',').unwrap();
        assert_ne!(pid.parse::<i32>().unwrap(), a_pid, "{}", ctx());
        assert_eq!(half, "0", "a's rows are visible{}", ctx());
    }
    assert_eq!(
        c.sql(
            "postgres",
            &format!("SELECT string_agg(id::text, ',' ORDER BY id) FROM {t}")
        ),
        "10,11,100,101,102,103,104,105"
    );
    drop((a, b, idle, fresh));
    let stuck = wait_until_no_backend_idle_in_transaction(&role);
    assert!(
        stuck.is_some(),
        "a server of the pool stays in a transaction{}",
        ctx()
    );
    assert!(
        panics_in(&p.log()).is_empty(),
        "the pooler panicked{}",
        ctx()
    );
}

type Attempt = (Duration, Result<(), Fail>);

/// One login and `SELECT 1` through the pooler to `db`: how long it took and how it
/// ended.
fn login_attempt(port: u16, db: &str) -> Attempt {
    let started = Instant::now();
    let r = Conn::login(port, USER, db, Some(PW), Duration::from_secs(30))
        .and_then(|mut c| c.query("SELECT 1").map(|_| ()));
    (started.elapsed(), r)
}

/// `per_thread` login attempts on each of `threads` threads at once.
fn attempts_at_once(
    p: &Pooler,
    db: &'static str,
    threads: usize,
    per_thread: usize,
) -> Vec<Attempt> {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let port = p.port;
            spawn(move || {
                (0..per_thread)
                    .map(|_| login_attempt(port, db))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for rx in handles {
        all.extend(
            rx.recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("login attempts hang{}", p.ctx())),
        );
    }
    all
}

/// Reports how the attempts ended, by kind, and the shortest and longest.
fn report_attempts(s: &Soak, all: &[Attempt], what: &str) {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in all {
        let k = match r {
            Ok(()) => "logged in and queried (?!)".to_string(),
            Err(f) => f.kind(),
        };
        *kinds.entry(k).or_default() += 1;
    }
    let max = all.iter().map(|a| a.0).max().unwrap_or_default();
    let min = all.iter().map(|a| a.0).min().unwrap_or_default();
    s.report(&format!("{what}: each took {} to {}", secs(min), secs(max)));
    for (k, n) in &kinds {
        s.report(&format!("  {n} x {k}"));
    }
}

/// Every attempt failed with 08006 within 5 s (server_connect_timeout = 2 s), and the
/// pooler's memory and descriptors stayed flat over them.
fn assert_failed_cleanly(
    all: &[Attempt],
    against: &str,
    rss: (u64, u64),
    fds: (usize, usize),
    ctx: &str,
) {
    for (took, r) in all {
        match r {
            Err(Fail::Error(m)) => assert_eq!(
                m.sqlstate().as_deref(),
                Some("08006"),
                "a login failed with {m}{ctx}"
            ),
            Err(f) => panic!("a login failed without an ErrorResponse: {f:?}{ctx}"),
            Ok(()) => panic!("a login and query succeeded {against}{ctx}"),
        }
        assert!(
            *took < Duration::from_secs(5),
            "a login took {took:?} to fail (server_connect_timeout = 2s){ctx}"
        );
    }
    let ((rss1, rss2), (fds1, fds2)) = (rss, fds);
    assert!(
        rss2 <= rss1 + 2048,
        "RSS grew from {rss1} kB to {rss2} kB over {} failed logins{ctx}",
        all.len()
    );
    assert!(
        fds2 <= fds1,
        "descriptors grew from {fds1} to {fds2} over {} failed logins{ctx}",
        all.len()
    );
}

/// PostgreSQL is down and the pool empty: every new login through the pooler
/// fails promptly with 08006 (server_connect_timeout = 2 s bounds it), 200 of
/// them leave the pooler's memory and descriptors flat, and logins work again
/// once PostgreSQL is back.
#[test]
fn postgres_unreachable() {
    let s = soak("postgres_unreachable");
    const ATTEMPTS: usize = 200;
    const THREADS: usize = 8;
    let cfg = Cfg::transaction()
        .auth("plain")
        .set("server_connect_timeout", "2s")
        .set("server_idle_timeout", "1s");
    let mut p = Pooler::start(&cfg);
    p.set_watchdog(Duration::from_secs(300));
    let pid = p.pid();
    let (rss0, fds0) = (rss_kb(pid), fd_count(pid));

    pg_stop_fast();
    // Warm-up: one-time allocations (log buffers, pool state) come first.
    let mut all: Vec<Attempt> = (0..20).map(|_| login_attempt(p.port, "postgres")).collect();
    let (rss1, fds1) = (rss_kb(pid), fd_count(pid));
    let t = Instant::now();
    all.extend(attempts_at_once(
        &p,
        "postgres",
        THREADS,
        ATTEMPTS / THREADS,
    ));
    let loop_time = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (rss2, fds2) = (rss_kb(pid), fd_count(pid));
    report_attempts(
        &s,
        &all,
        &format!(
            "{} login attempts with PostgreSQL down ({ATTEMPTS} of them in {} on {THREADS} threads)",
            all.len(),
            secs(loop_time)
        ),
    );
    s.report(&format!(
        "pooler RSS {rss0} kB at start, {rss1} kB after 20 attempts, {rss2} kB after \
         {ATTEMPTS} more ({:+} kB); fds {fds0} / {fds1} / {fds2}",
        rss2 as i64 - rss1 as i64
    ));

    pg_start();
    let back = Instant::now();
    let ok = poll(Duration::from_secs(10), || {
        let mut c = Conn::login(p.port, USER, "postgres", Some(PW), Duration::from_secs(5)).ok()?;
        let r = c.query("SELECT 1").ok()?;
        (r.error().is_none() && r.value().as_deref() == Some("1")).then_some(())
    });
    s.report(&format!(
        "PostgreSQL started again: logins work after {}",
        secs(back.elapsed())
    ));

    let ctx = p.ctx();
    assert!(p.is_running() && p.pid() == pid, "the pooler died{ctx}");
    assert_failed_cleanly(
        &all,
        "with PostgreSQL down",
        (rss1, rss2),
        (fds1, fds2),
        &ctx,
    );
    assert!(
        ok.is_some(),
        "logins still fail 10 s after PostgreSQL came back{ctx}"
    );
    assert!(panics_in(&p.log()).is_empty(), "the pooler panicked{ctx}");
}

/// Like `postgres_unreachable`, but the server's address swallows the
/// connection attempts (a full accept queue: SYNs dropped, as across a dead
/// network link) instead of refusing them: with 20 logins waiting at once,
/// each fails with 08006 once server_connect_timeout (2 s) has passed, not
/// later, and 200 of them leave the pooler's memory and descriptors flat.
#[test]
fn server_black_holed() {
    let s = soak("server_black_holed");
    const ATTEMPTS: usize = 200;
    const THREADS: usize = 20;
    let hole = BlackHole::start();
    assert!(hole.hangs(), "the black hole answers connect()");
    let cfg = Cfg::transaction()
        .auth("plain")
        .set("server_connect_timeout", "2s")
        .db_at("hole", "127.0.0.1", hole.port, "postgres", "");
    let mut p = Pooler::start(&cfg);
    p.set_watchdog(Duration::from_secs(300));
    let pid = p.pid();
    // Warm-up round, then the measured ones.
    let mut all = attempts_at_once(&p, "hole", THREADS, 1);
    let (rss1, fds1) = (rss_kb(pid), fd_count(pid));
    let t = Instant::now();
    all.extend(attempts_at_once(&p, "hole", THREADS, ATTEMPTS / THREADS));
    let loop_time = t.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (rss2, fds2) = (rss_kb(pid), fd_count(pid));
    report_attempts(
        &s,
        &all,
        &format!(
            "{} login attempts against a black-holed server, {THREADS} at a time ({ATTEMPTS} of them in {})",
            all.len(),
            secs(loop_time)
        ),
    );
    s.report(&format!(
        "pooler RSS {rss1} kB after the first {THREADS} attempts, {rss2} kB after \
         {ATTEMPTS} more ({:+} kB); fds {fds1} / {fds2}",
        rss2 as i64 - rss1 as i64
    ));

    let ctx = p.ctx();
    assert!(p.is_running() && p.pid() == pid, "the pooler died{ctx}");
    assert_failed_cleanly(
        &all,
        "against a black hole",
        (rss1, rss2),
        (fds1, fds2),
        &ctx,
    );
    assert!(panics_in(&p.log()).is_empty(), "the pooler panicked{ctx}");
    // The black hole does not affect the pool of a working database.
    let mut c = Conn::login(p.port, USER, "postgres", Some(PW), Duration::from_secs(10))
        .unwrap_or_else(|f| panic!("a login to a working database: {f:?}{ctx}"));
    assert_eq!(c.query("SELECT 1").unwrap().value().as_deref(), Some("1"));
}
