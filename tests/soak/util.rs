//! What the soak tests share besides the integration harness: one test at a
//! time, control of the cluster (restart, stop, start), and the pooler's
//! resource figures from /proc.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::harness::{cluster, poll, proc_status_kb, NoTls};
pub use crate::harness::{fd_count, rss_kb};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

// ---------------------------------------------------------------------------
// One test at a time, PostgreSQL up at the end
// ---------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());

/// Held for the whole of a soak test: the tests restart PostgreSQL and load
/// the machine, so they never run side by side whatever `--test-threads`
/// says. On drop (pass or fail) PostgreSQL is started again if it is down.
pub struct Soak {
    pub name: &'static str,
    started: Instant,
    _serial: MutexGuard<'static, ()>,
}

pub fn soak(name: &'static str) -> Soak {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    cluster();
    // A test that failed before us may have left PostgreSQL stopped.
    ensure_pg_running();
    report(name, "start");
    Soak {
        name,
        started: Instant::now(),
        _serial: guard,
    }
}

impl Soak {
    /// Prints one figure of this test, for the report.
    pub fn report(&self, what: &str) {
        report(self.name, what);
    }
}

impl Drop for Soak {
    fn drop(&mut self) {
        ensure_pg_running();
        let end = if std::thread::panicking() {
            "FAILED"
        } else {
            "ok"
        };
        report(
            self.name,
            &format!("{end} after {:.1} s", self.started.elapsed().as_secs_f64()),
        );
    }
}

pub fn report(name: &str, what: &str) {
    println!("[soak] {name}: {what}");
}

// ---------------------------------------------------------------------------
// PostgreSQL control
// ---------------------------------------------------------------------------

fn is_root() -> bool {
    // SAFETY: no arguments, no side effects.
    unsafe { libc::geteuid() == 0 }
}

fn pg_dir() -> PathBuf {
    cluster().root.join("pg")
}

/// `pg_ctl ARGS -D DATA`, as the postgres user when we are root (as the
/// harness runs it).
pub fn pg_ctl(args: &[&str]) -> Output {
    let c = cluster();
    let pg_ctl = format!("{PG_BIN}/pg_ctl");
    let mut cmd = if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", &pg_ctl]);
        cmd
    } else {
        Command::new(&pg_ctl)
    };
    cmd.args(args)
        .arg("-D")
        .arg(&c.data)
        .current_dir(pg_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run pg_ctl")
}

fn pg_ctl_ok(args: &[&str]) {
    let out = pg_ctl(args);
    assert!(
        out.status.success(),
        "pg_ctl {args:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn log_file() -> String {
    pg_dir().join("postgres.log").to_str().unwrap().to_string()
}

/// `pg_ctl status`: true while the postmaster runs.
pub fn pg_running() -> bool {
    pg_ctl(&["status"]).status.success()
}

/// `pg_ctl restart -m fast`, waiting until PostgreSQL accepts connections.
pub fn pg_restart_fast() {
    pg_ctl_ok(&["restart", "-m", "fast", "-w", "-t", "60", "-l", &log_file()]);
}

/// `pg_ctl stop -m fast`, waiting until the postmaster is gone.
pub fn pg_stop_fast() {
    pg_ctl_ok(&["stop", "-m", "fast", "-w", "-t", "60"]);
}

/// `pg_ctl start`, waiting until PostgreSQL accepts connections.
pub fn pg_start() {
    pg_ctl_ok(&["start", "-w", "-t", "60", "-l", &log_file()]);
}

/// Starts PostgreSQL if it is down and waits until a superuser can log in.
pub fn ensure_pg_running() {
    if !pg_running() {
        let out = pg_ctl(&["start", "-w", "-t", "60", "-l", &log_file()]);
        if !out.status.success() {
            eprintln!(
                "[soak] could not start PostgreSQL again: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
    }
    let c = cluster();
    let up = poll(Duration::from_secs(30), || {
        postgres::Config::new()
            .host_path(&c.socket_dir)
            .port(c.port)
            .user("postgres")
            .dbname("postgres")
            .connect(NoTls)
            .ok()
    });
    if up.is_none() {
        eprintln!("[soak] PostgreSQL does not accept connections after a start");
    }
}

// ---------------------------------------------------------------------------
// Process figures
// ---------------------------------------------------------------------------

/// Waits up to 5 s until no backend of `role` is idle in a transaction (what a
/// server returned dirty to the pool would show); None if one stays.
pub fn wait_until_no_backend_idle_in_transaction(role: &str) -> Option<()> {
    poll(Duration::from_secs(5), || {
        let n = cluster().count(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' \
                 AND state LIKE 'idle in transaction%'"
            ),
        );
        (n == 0).then_some(())
    })
}

/// VmHWM (peak resident set) of `pid` in kB.
pub fn hwm_kb(pid: i32) -> u64 {
    proc_status_kb(pid, "VmHWM:")
}

/// (soft, hard) "Max open files" of `pid` from /proc/PID/limits.
pub fn nofile_of(pid: i32) -> (String, String) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default()
        .to_string();
    let mut f = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(String::from);
    (f.next().unwrap_or_default(), f.next().unwrap_or_default())
}

/// Raises this process's RLIMIT_NOFILE soft limit to its hard limit (the
/// pooler, our child, inherits it); returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) },
        0,
        "getrlimit"
    );
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: a valid in-pointer; raising the soft limit up to the hard one.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
        assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    }
    rl.rlim_cur
}

/// Lines of the pooler's log that say it panicked.
pub fn panics_in(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("panicked"))
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------------------
// Randomness
// ---------------------------------------------------------------------------

/// xorshift64*: enough randomness for picking victims, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// Seconds as text with millisecond precision.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}
