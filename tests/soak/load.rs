//! Many clients: ten thousand idle ones held open, and a connection storm
//! twice as large as max_client_conn.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::util::*;
use crate::wire::{Conn, Fail};

/// Splits `items` into `n` nearly equal chunks.
fn chunks<T>(mut items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let per = items.len().div_ceil(n);
    let mut out = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(per.min(items.len()));
        out.push(std::mem::replace(&mut items, rest));
    }
    out
}

const CLIENTS: usize = 10_000;
const THREADS: usize = 8;
const BATCH: usize = 250;

/// Logs in `n` trust_user clients from THREADS threads and keeps them.
fn log_in_all(port: u16, n: usize) -> Result<Vec<Conn>, String> {
    let logins: Vec<_> = (0..THREADS)
        .map(|i| {
            let mine = (i + 1) * n / THREADS - i * n / THREADS;
            spawn(move || {
                let mut conns = Vec::with_capacity(mine);
                for _ in 0..mine {
                    let timeout = Duration::from_secs(30);
                    match Conn::login(port, TRUST_USER, "postgres", None, timeout) {
                        Ok(c) => conns.push(c),
                        Err(f) => return Err(format!("after {} logins: {f:?}", conns.len())),
                    }
                }
                Ok(conns)
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(n);
    for rx in logins {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(Ok(v)) => conns.extend(v),
            Ok(Err(e)) => return Err(format!("a login failed {e} ({} held)", conns.len())),
            Err(_) => return Err("logins hang".to_string()),
        }
    }
    Ok(conns)
}

/// Every client runs SELECT 1: each thread sends BATCH queries, then reads
/// their replies, so thousands wait for the pool's servers at once. Returns
/// the clients and the failures.
fn select_all(conns: Vec<Conn>) -> Result<(Vec<Conn>, Vec<String>), String> {
    let runs: Vec<_> = chunks(conns, THREADS)
        .into_iter()
        .map(|mut mine| {
            spawn(move || {
                let mut failures = Vec::new();
                for batch in mine.chunks_mut(BATCH) {
                    let sent: Vec<_> = batch
                        .iter_mut()
                        .map(|c| c.send(&msg::query("SELECT 1")))
                        .collect();
                    for (c, r) in batch.iter_mut().zip(sent) {
                        match r.and_then(|()| c.until_ready()) {
                            Ok(rep) if rep.value().as_deref() == Some("1") => {}
                            Ok(rep) => failures.push(format!("reply {}", show_msgs(&rep.msgs))),
                            Err(f) => failures.push(f.kind()),
                        }
                    }
                }
                (mine, failures)
            })
        })
        .collect();
    let mut conns = Vec::new();
    let mut failures = Vec::new();
    for rx in runs {
        let (mine, f) = rx
            .recv_timeout(Duration::from_secs(300))
            .map_err(|_| "SELECT 1 hangs".to_string())?;
        conns.extend(mine);
        failures.extend(f);
    }
    Ok((conns, failures))
}

/// What one round of `ten_thousand_clients` measured.
struct Round {
    failures: Vec<String>,
    fds_idle: usize,
    fds_after: usize,
    fds_back: bool,
    servers: usize,
    rss_after: u64,
    /// Peak RSS so far (VmHWM).
    hwm: u64,
}

/// CLIENTS clients log in, idle, run SELECT 1 and leave; the figures of
/// each stage are reported.
fn crowd_round(s: &Soak, p: &Pooler, round: usize, rss0: u64, fds0: usize) -> Round {
    let pid = p.pid();
    let t = Instant::now();
    let conns =
        log_in_all(p.port, CLIENTS).unwrap_or_else(|e| panic!("round {round}: {e}{}", p.ctx()));
    let login_time = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (rss_idle, fds_idle) = (rss_kb(pid), fd_count(pid));
    let per_client = (rss_idle as f64 - rss0 as f64) / CLIENTS as f64;
    s.report(&format!(
        "round {round}: {CLIENTS} clients logged in in {} ({:.0} logins/s); pooler RSS before any \
         crowd {rss0} kB, {rss_idle} kB with them idle: {per_client:.2} kB per idle \
         client; fds {fds0} before, {fds_idle} with them",
        secs(login_time),
        CLIENTS as f64 / login_time.as_secs_f64()
    ));

    let t = Instant::now();
    let (conns, failures) =
        select_all(conns).unwrap_or_else(|e| panic!("round {round}: {e}{}", p.ctx()));
    let query_time = t.elapsed();
    let (rss_busy, fds_busy) = (rss_kb(pid), fd_count(pid));
    let servers = cluster().backends_of(TRUST_USER) as usize;
    s.report(&format!(
        "round {round}: {CLIENTS} x SELECT 1 in {} ({} failed); RSS {rss_busy} kB \
         ({:.2} kB per client above the baseline), fds {fds_busy}, {servers} server \
         connections",
        secs(query_time),
        failures.len(),
        (rss_busy as f64 - rss0 as f64) / CLIENTS as f64
    ));

    // All leave (Terminate), and the pooler gives their descriptors back.
    let t = Instant::now();
    for c in conns {
        c.terminate();
    }
    let servers = cluster().backends_of(TRUST_USER) as usize;
    let fds_back = poll(Duration::from_secs(10), || {
        (fd_count(pid) <= fds0 + servers).then_some(())
    })
    .is_some();
    let back_after = t.elapsed();
    let fds_after = fd_count(pid);
    std::thread::sleep(Duration::from_secs(1));
    let (rss_after, hwm) = (rss_kb(pid), hwm_kb(pid));
    s.report(&format!(
        "round {round}: all disconnected: fds {fds_after} {} after the last close \
         (baseline {fds0} + {servers} pooled servers), RSS {rss_after} kB, peak {hwm} kB",
        secs(back_after)
    ));
    Round {
        failures,
        fds_idle,
        fds_after,
        fds_back,
        servers,
        rss_after,
        hwm,
    }
}

/// Ten thousand clients logged in at once (RLIMIT_NOFILE raised for the
/// pooler), each running `SELECT 1` through a pool of 20; the pooler's
/// memory per idle client, and its descriptors back to the baseline once
/// they leave.
#[test]
fn ten_thousand_clients() {
    let s = soak("ten_thousand_clients");
    const ROUNDS: usize = 4;

    let nofile = raise_nofile();
    let hard = nofile_of(std::process::id() as i32).1;
    s.report(&format!(
        "RLIMIT_NOFILE of the test process raised to {nofile} (hard {hard})"
    ));
    assert!(
        nofile as usize >= CLIENTS + 1000,
        "RLIMIT_NOFILE hard limit {hard} is too low for {CLIENTS} clients"
    );
    let cfg = Cfg::transaction()
        .auth("trust")
        .pool_size(20)
        .set("workers", 2)
        .set("max_client_conn", 20_000)
        .set("log_level", "info");
    let mut p = Pooler::start(&cfg);
    p.set_watchdog(Duration::from_secs(600));
    let pid = p.pid();
    let (soft, hard) = nofile_of(pid);
    s.report(&format!(
        "pooler's Max open files: soft {soft}, hard {hard}"
    ));
    assert_eq!(
        soft,
        nofile.to_string(),
        "the pooler did not inherit RLIMIT_NOFILE{}",
        p.ctx()
    );

    // One client first, so the pool's server parameters and the first
    // server connection exist before the baseline.
    {
        let mut c = Conn::login(
            p.port,
            TRUST_USER,
            "postgres",
            None,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|f| panic!("first login: {f:?}{}", p.ctx()));
        let r = c.query("SELECT 1").unwrap();
        assert_eq!(r.value().as_deref(), Some("1"));
        c.terminate();
    }
    std::thread::sleep(Duration::from_millis(500));
    let (rss0, fds0) = (rss_kb(pid), fd_count(pid));

    let mut figures = Vec::new();
    for round in 1..=ROUNDS {
        figures.push(crowd_round(&s, &p, round, rss0, fds0));
    }
    let ctx = p.ctx();
    assert!(p.is_running(), "the pooler died{ctx}");
    assert!(panics_in(&p.log()).is_empty(), "the pooler panicked{ctx}");
    for (round, f) in figures.iter().enumerate() {
        let round = round + 1;
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &f.failures {
            *kinds.entry(e.as_str()).or_default() += 1;
        }
        assert!(
            f.failures.is_empty(),
            "round {round}: SELECT 1 failures: {kinds:?}{ctx}"
        );
        assert!(
            f.fds_idle >= fds0 + CLIENTS,
            "round {round}: {CLIENTS} clients but only {} more fds{ctx}",
            f.fds_idle - fds0
        );
        assert!(
            f.fds_back,
            "round {round}: fds did not come back to {fds0} + {} servers: {}{ctx}",
            f.servers, f.fds_after
        );
    }
    // The pooler keeps what a crowd made it allocate (its buffer free lists
    // hold up to 4096 16 kB buffers per worker, and malloc keeps the rest),
    // so the first rounds raise the peak; then it must stay put. A leak of
    // even 400 bytes per connection would add 8 MB over two more rounds.
    let (second, last) = (&figures[1], &figures[ROUNDS - 1]);
    assert!(
        last.hwm <= second.hwm + 8 * 1024,
        "peak RSS after round 2: {} kB, after round {ROUNDS}: {} kB; RSS after each \
         round: {:?} kB{ctx}",
        second.hwm,
        last.hwm,
        figures.iter().map(|f| f.rss_after).collect::<Vec<_>>()
    );
    assert_a_late_login_works(&p, "the crowd", &ctx);
}

/// How one connection attempt of the storm ended.
enum Outcome {
    LoggedIn(Conn, Duration),
    TooMany(Duration),
    Other(String),
}

/// 2,000 connections attempted within about a second against
/// max_client_conn = 1000: each either logs in or gets a clean
/// ErrorResponse 53300, and the pooler serves a new client afterwards.
#[test]
fn connection_storm() {
    let s = soak("connection_storm");
    const ATTEMPTS: usize = 2000;
    const THREADS: usize = 200;
    const MAX: usize = 1000;
    raise_nofile();
    let cfg = Cfg::transaction()
        .auth("trust")
        .pool_size(4)
        .set("max_client_conn", MAX as u32)
        .set("log_level", "info");
    let mut p = Pooler::start(&cfg);
    p.set_watchdog(Duration::from_secs(300));
    let pid = p.pid();
    let fds0 = fd_count(pid);

    let start = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(Barrier::new(THREADS + 1));
    let port = p.port;
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (start, done) = (start.clone(), done.clone());
            spawn(move || {
                start.wait();
                let t0 = Instant::now();
                let mut out = Vec::new();
                for _ in 0..ATTEMPTS / THREADS {
                    let t = Instant::now();
                    let r =
                        Conn::login(port, TRUST_USER, "postgres", None, Duration::from_secs(60));
                    out.push(match r {
                        Ok(c) => Outcome::LoggedIn(c, t.elapsed()),
                        Err(Fail::Error(m)) if m.sqlstate().as_deref() == Some("53300") => {
                            Outcome::TooMany(t.elapsed())
                        }
                        Err(f) => Outcome::Other(f.kind()),
                    });
                }
                let spent = t0.elapsed();
                // Hold the logged-in clients until every thread is done.
                done.wait();
                let mut query_failures = Vec::new();
                for o in &mut out {
                    if let Outcome::LoggedIn(c, _) = o {
                        match c.query("SELECT 1") {
                            Ok(r) if r.value().as_deref() == Some("1") => {}
                            Ok(r) => query_failures.push(show_msgs(&r.msgs)),
                            Err(f) => query_failures.push(f.kind()),
                        }
                    }
                }
                (out, spent, query_failures)
            })
        })
        .collect();
    let t = Instant::now();
    start.wait();
    done.wait();
    let storm_time = t.elapsed();
    let mut outcomes = Vec::new();
    let mut longest_thread = Duration::ZERO;
    let mut query_failures = Vec::new();
    for rx in threads {
        let (out, spent, qf) = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("storm threads hang{}", p.ctx()));
        outcomes.extend(out);
        longest_thread = longest_thread.max(spent);
        query_failures.extend(qf);
    }
    let fds_during = fd_count(pid);
    let logged_in: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::LoggedIn(_, d) => Some(*d),
            _ => None,
        })
        .collect();
    let refused: Vec<Duration> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::TooMany(d) => Some(*d),
            _ => None,
        })
        .collect();
    let mut other: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        if let Outcome::Other(k) = o {
            *other.entry(k.clone()).or_default() += 1;
        }
    }
    let slowest = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    s.report(&format!(
        "{ATTEMPTS} attempts from {THREADS} threads, all made within {} (the storm \
         ended after {}): {} logged in (slowest {}), {} refused with 53300 (slowest {}), \
         {} other: {other:?}",
        secs(longest_thread),
        secs(storm_time),
        logged_in.len(),
        secs(slowest(&logged_in)),
        refused.len(),
        secs(slowest(&refused)),
        outcomes.len() - logged_in.len() - refused.len()
    ));
    s.report(&format!(
        "SELECT 1 on the {} logged-in clients: {} failed; pooler fds {fds0} before, \
         {fds_during} after the storm",
        logged_in.len(),
        query_failures.len()
    ));
    drop(outcomes);
    let back = poll(Duration::from_secs(10), || {
        (fd_count(pid) <= fds0 + 4).then_some(())
    });
    let fds_after = fd_count(pid);
    s.report(&format!("pooler fds once the clients left: {fds_after}"));

    let ctx = p.ctx();
    assert!(p.is_running() && p.pid() == pid, "the pooler died{ctx}");
    assert!(panics_in(&p.log()).is_empty(), "the pooler panicked{ctx}");
    assert!(
        other.is_empty(),
        "attempts that neither logged in nor got 53300: {other:?}{ctx}"
    );
    assert_eq!(logged_in.len() + refused.len(), ATTEMPTS);
    assert!(
        logged_in.len() <= MAX,
        "{} clients logged in at once with max_client_conn = {MAX}{ctx}",
        logged_in.len()
    );
    assert!(
        logged_in.len() >= MAX - 10,
        "only {} clients logged in of the {MAX} allowed{ctx}",
        logged_in.len()
    );
    assert!(
        query_failures.is_empty(),
        "SELECT 1 failed on logged-in clients: {query_failures:?}{ctx}"
    );
    assert!(
        back.is_some(),
        "fds did not come back to about {fds0}: {fds_after}{ctx}"
    );
    assert_a_late_login_works(&p, "the storm", &ctx);
}

/// A new client logs in and runs `SELECT 1` once the load is over.
fn assert_a_late_login_works(p: &Pooler, after: &str, ctx: &str) {
    let mut late = Conn::login(
        p.port,
        TRUST_USER,
        "postgres",
        None,
        Duration::from_secs(10),
    )
    .unwrap_or_else(|f| panic!("a login after {after}: {f:?}{ctx}"));
    let answer = late
        .query("SELECT 1")
        .unwrap_or_else(|f| panic!("SELECT 1 after {after}: {f:?}{ctx}"));
    assert_eq!(answer.value().as_deref(), Some("1"), "{ctx}");
}
