//! Transactions under chaos: clients cut off, backends terminated, and in
//! the end no committed row lost and none that should not be there.

use std::collections::{BTreeMap, HashSet};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::util::*;
use crate::wire::{Conn, Fail};

const CLIENTS: usize = 8;
const CHAOS: Duration = Duration::from_secs(15);
/// No reply within this is a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client thread did with its keys.
#[derive(Default)]
struct Keys {
    /// COMMIT answered `COMMIT` and ReadyForQuery idle.
    committed: Vec<i64>,
    /// The COMMIT was sent but not confirmed: either outcome is allowed.
    unknown: Vec<i64>,
    /// The INSERT was sent but failed (error, cut connection), so the
    /// client never sent COMMIT: these must not be in the table.
    insert_failed: Vec<i64>,
    /// The client itself reset its connection after the INSERT, never
    /// sending COMMIT: these must not be in the table.
    abandoned: Vec<i64>,
    /// BEGIN failed, so the INSERT was never sent.
    not_sent: Vec<i64>,
    /// Failures by step and kind.
    errors: BTreeMap<String, usize>,
    /// Replies that did not come within REPLY_TIMEOUT.
    hangs: usize,
    /// NoticeResponse messages seen (a dirty server would say "there is
    /// already a transaction in progress").
    notices: Vec<String>,
    logins: usize,
}

impl Keys {
    fn error(&mut self, step: &str, what: String) {
        *self.errors.entry(format!("{step}: {what}")).or_default() += 1;
    }

    fn fail(&mut self, step: &str, f: &Fail) {
        if f.is_timeout() {
            self.hangs += 1;
        }
        self.error(step, f.kind());
    }
}

type Registry = Arc<Mutex<Vec<Option<TcpStream>>>>;

/// Outcome of one statement: the reply if it was what `ok` wants.
fn step(
    k: &mut Keys,
    c: &mut Conn,
    name: &str,
    sql: &str,
    ok: impl Fn(&crate::wire::Reply) -> bool,
) -> bool {
    match c.query(sql) {
        Ok(r) => {
            k.notices.extend(r.notices());
            if ok(&r) {
                return true;
            }
            let what = match r.error() {
                Some(e) => Fail::Error(e.clone()).kind(),
                None => format!("tags {:?}, status {:?}", r.tags(), r.status() as char),
            };
            k.error(name, what);
            false
        }
        Err(f) => {
            k.fail(name, &f);
            false
        }
    }
}

/// A client looping `BEGIN; INSERT key; COMMIT` (three round trips) until
/// `stop`, reconnecting after any failure; now and then it resets its own
/// connection between the INSERT and the COMMIT.
fn client(
    tid: usize,
    port: u16,
    role: String,
    table: String,
    stop: Arc<AtomicBool>,
    registry: Registry,
) -> Keys {
    let mut k = Keys::default();
    let mut rng = Rng::new(tid as u64 + 1);
    let mut conn: Option<Conn> = None;
    let mut counter = 0i64;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match Conn::login(port, &role, "postgres", Some(&role), REPLY_TIMEOUT) {
                Ok(c) => {
                    k.logins += 1;
                    registry.lock().unwrap()[tid] = c.s.try_clone().ok();
                    conn = Some(c);
                }
                Err(f) => {
                    k.fail("login", &f);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        let key = tid as i64 * 1_000_000 + counter;
        counter += 1;
        if !step(&mut k, c, "BEGIN", "BEGIN", |r| {
            r.error().is_none() && r.status() == b'T'
        }) {
            k.not_sent.push(key);
            conn = None;
            continue;
        }
        let insert = format!("INSERT INTO {table} VALUES ({key})");
        if !step(&mut k, c, "INSERT", &insert, |r| {
            r.error().is_none() && r.tags() == ["INSERT 0 1"] && r.status() == b'T'
        }) {
            k.insert_failed.push(key);
            conn = None;
            continue;
        }
        if rng.chance(0.01) {
            k.abandoned.push(key);
            registry.lock().unwrap()[tid] = None;
            conn.take().unwrap().reset();
            continue;
        }
        if step(&mut k, c, "COMMIT", "COMMIT", |r| {
            r.error().is_none() && r.tags() == ["COMMIT"] && r.status() == b'I'
        }) {
            k.committed.push(key);
        } else {
            k.unknown.push(key);
            conn = None;
        }
    }
    if let Some(c) = conn {
        c.terminate();
    }
    k
}

/// Eight clients commit unique keys through a transaction-mode pool while a
/// chaos thread cuts client connections and terminates the pool's backends:
/// every confirmed COMMIT is in the table, nothing is in it twice, nothing
/// the clients abandoned or never sent is in it, and no client inherits a
/// server still inside someone else's transaction.
#[test]
fn nothing_lost_or_duplicated() {
    let s = soak("nothing_lost_or_duplicated");
    let c = cluster();
    let role = c.new_role("chaos");
    let table = c.new_table("chaos", "k bigint PRIMARY KEY");
    let cfg = Cfg::transaction()
        .auth("plain")
        .pool_size(4)
        .user(&role, &role)
        .set("log_level", "info");
    let mut p = Pooler::start(&cfg);
    p.set_watchdog(Duration::from_secs(180));
    let pid = p.pid();
    let rss0 = rss_kb(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let registry: Registry = Arc::new(Mutex::new((0..CLIENTS).map(|_| None).collect()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|tid| {
            let (role, table, stop, registry) =
                (role.clone(), table.clone(), stop.clone(), registry.clone());
            let port = p.port;
            spawn(move || client(tid, port, role, table, stop, registry))
        })
        .collect();

    // Chaos: every 100 ms, half the time cut a random client's connection
    // (shutdown of its socket); every third tick terminate a random backend
    // of the pool's user.
    let mut rng = Rng::new(99);
    let mut admin = c.client("postgres");
    let (mut cuts, mut terminations, mut ticks) = (0usize, 0usize, 0usize);
    let t0 = Instant::now();
    while t0.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(100));
        ticks += 1;
        if rng.chance(0.5) {
            let i = rng.below(CLIENTS as u64) as usize;
            if let Some(sock) = registry.lock().unwrap()[i].take() {
                let how = if rng.chance(0.5) {
                    Shutdown::Both
                } else {
                    Shutdown::Write
                };
                if sock.shutdown(how).is_ok() {
                    cuts += 1;
                }
            }
        }
        if ticks % 3 == 0 {
            let rows = admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE usename = $1 AND backend_type = 'client backend' \
                     ORDER BY random() LIMIT 1",
                    &[&role],
                )
                .expect("pg_terminate_backend");
            terminations += rows.iter().filter(|r| r.get::<_, bool>(0)).count();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Keys::default();
    for rx in clients {
        let k = rx
            .recv_timeout(REPLY_TIMEOUT * 3 + Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("a client thread hangs{}", p.ctx()));
        all.committed.extend(k.committed);
        all.unknown.extend(k.unknown);
        all.insert_failed.extend(k.insert_failed);
        all.abandoned.extend(k.abandoned);
        all.not_sent.extend(k.not_sent);
        for (e, n) in k.errors {
            *all.errors.entry(e).or_default() += n;
        }
        all.hangs += k.hangs;
        all.notices.extend(k.notices);
        all.logins += k.logins;
    }

    // The truth, straight from PostgreSQL.
    let present: HashSet<i64> = c
        .sql("postgres", &format!("SELECT k FROM {table}"))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let rows = c.count("postgres", &format!("SELECT count(*) FROM {table}"));
    let distinct = c.count(
        "postgres",
        &format!("SELECT count(DISTINCT k) FROM {table}"),
    );
    let committed: HashSet<i64> = all.committed.iter().copied().collect();
    let unknown: HashSet<i64> = all.unknown.iter().copied().collect();
    let lost: Vec<i64> = all
        .committed
        .iter()
        .filter(|k| !present.contains(k))
        .copied()
        .collect();
    let unknown_present = all.unknown.iter().filter(|k| present.contains(k)).count();
    let abandoned_present: Vec<i64> = all
        .abandoned
        .iter()
        .filter(|k| present.contains(k))
        .copied()
        .collect();
    let insert_failed_present: Vec<i64> = all
        .insert_failed
        .iter()
        .filter(|k| present.contains(k))
        .copied()
        .collect();
    let not_sent_present: Vec<i64> = all
        .not_sent
        .iter()
        .filter(|k| present.contains(k))
        .copied()
        .collect();
    let phantoms: Vec<i64> = present
        .iter()
        .filter(|k| !committed.contains(k) && !unknown.contains(k))
        .copied()
        .collect();

    s.report(&format!(
        "chaos for {}: {cuts} client connections cut, {terminations} backends terminated, \
         {} logins",
        secs(CHAOS),
        all.logins
    ));
    s.report(&format!(
        "keys: {} committed ({} of them missing from the table); {} with an error at \
         COMMIT, outcome unknown ({unknown_present} present, {} absent); {} with an \
         error at INSERT, COMMIT never sent ({} present); {} abandoned by their client \
         between INSERT and COMMIT ({} present); {} never sent, BEGIN failed ({} present)",
        committed.len(),
        lost.len(),
        unknown.len(),
        unknown.len() - unknown_present,
        all.insert_failed.len(),
        insert_failed_present.len(),
        all.abandoned.len(),
        abandoned_present.len(),
        all.not_sent.len(),
        not_sent_present.len()
    ));
    s.report(&format!(
        "table: {rows} rows, {distinct} distinct keys, {} not accounted for; \
         {} replies timed out; {} notices",
        phantoms.len(),
        all.hangs,
        all.notices.len()
    ));
    for (e, n) in &all.errors {
        s.report(&format!("  {n} x {e}"));
    }

    // The pool is clean once the clients are gone: no backend left inside
    // a transaction, and a new client works.
    let clean = wait_until_no_backend_idle_in_transaction(&role);
    let late = Conn::login(p.port, &role, "postgres", Some(&role), REPLY_TIMEOUT)
        .and_then(|mut l| l.query("SELECT 1"));
    let rss1 = rss_kb(pid);
    s.report(&format!("pooler RSS {rss0} kB before, {rss1} kB after"));

    let ctx = p.ctx();
    assert!(p.is_running() && p.pid() == pid, "the pooler died{ctx}");
    assert!(panics_in(&p.log()).is_empty(), "the pooler panicked{ctx}");
    assert!(!committed.is_empty(), "nothing committed at all{ctx}");
    assert!(cuts > 0 && terminations > 0, "no chaos happened");
    assert_eq!(rows, distinct);
    assert!(lost.is_empty(), "committed keys missing: {lost:?}{ctx}");
    assert!(
        abandoned_present.is_empty(),
        "keys whose client reset its connection before COMMIT were committed: \
         {abandoned_present:?}{ctx}"
    );
    assert!(
        insert_failed_present.is_empty(),
        "keys whose INSERT failed were committed without a COMMIT: \
         {insert_failed_present:?}{ctx}"
    );
    assert!(
        not_sent_present.is_empty(),
        "keys never sent are in the table: {not_sent_present:?}{ctx}"
    );
    assert!(
        phantoms.is_empty(),
        "keys in the table no client tried to commit: {phantoms:?}{ctx}"
    );
    assert_eq!(all.hangs, 0, "replies timed out (hangs){ctx}");
    assert!(
        all.notices.is_empty(),
        "notices (a server handed over inside a transaction?): {:?}{ctx}",
        all.notices
    );
    assert!(
        clean.is_some(),
        "a backend of the pool stays idle in transaction{ctx}"
    );
    match late {
        Ok(r) => assert_eq!(r.value().as_deref(), Some("1"), "{ctx}"),
        Err(f) => panic!("a new client after the chaos: {f:?}{ctx}"),
    }
}
