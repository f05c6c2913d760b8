//! Signals: SIGHUP reloads (pool sizes, users, databases, refused configs),
//! SIGINT drains, SIGTERM stops.

use crate::harness::*;
use postgres::Client;
use std::time::Duration;

/// Opens `n` clients that each hold a server in an open transaction, one
/// after the other; fails as soon as one cannot get a server.
fn hold_servers(p: &Pooler, n: usize) -> Result<Vec<(Client, i32)>, String> {
    let mut held = Vec::new();
    for i in 0..n {
        let mut c = p
            .try_connect(USER, Some(PW), "postgres")
            .map_err(|e| format!("client {i}: {e:?}"))?;
        c.batch_execute("BEGIN")
            .map_err(|e| format!("client {i}: {e:?}"))?;
        let pid =
            try_one(&mut c, "SELECT pg_backend_pid()").map_err(|e| format!("client {i}: {e:?}"))?;
        held.push((c, pid.parse().unwrap()));
    }
    Ok(held)
}

#[test]
fn sighup_applies_a_new_pool_size() {
    let base = Cfg::transaction()
        .pool_size(1)
        .set("query_wait_timeout", "1s");
    let p = Pooler::start(&base);
    let mut before = p.client();
    assert_eq!(p.one(&mut before, "SELECT 1"), "1");
    // The second holder waits out query_wait_timeout.
    assert!(
        hold_servers(&p, 2).is_err(),
        "pool_size 1 served two transactions{}",
        p.ctx()
    );

    p.rewrite(&base.clone().pool_size(3));
    p.reload();
    let held = poll(Duration::from_secs(10), || hold_servers(&p, 3).ok()).unwrap_or_else(|| {
        panic!(
            "three concurrent transactions never fit after reload{}",
            p.ctx()
        )
    });
    let mut pids: Vec<i32> = held.iter().map(|(_, pid)| *pid).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "{}", p.ctx());
    for (mut c, _) in held {
        c.batch_execute("COMMIT").unwrap();
    }
    assert_eq!(
        try_one(&mut before, "SELECT 'kept'").unwrap_or_else(|e| panic!("{e:?}{}", p.ctx())),
        "kept"
    );
}

#[test]
fn sighup_adds_a_user_without_dropping_clients() {
    let role = cluster().new_role("late");
    let base = Cfg::session();
    let p = Pooler::start(&base);
    let mut before = p.client();
    let pid = p.backend(&mut before);
    assert_sqlstate(
        &p.try_connect(&role, Some(&role), "postgres"),
        "28P01",
        &p.ctx(),
    );

    p.rewrite(&base.clone().user(&role, &role));
    p.reload();
    let mut c = poll(Duration::from_secs(5), || {
        p.try_connect(&role, Some(&role), "postgres").ok()
    })
    .unwrap_or_else(|| panic!("new user cannot log in after reload{}", p.ctx()));
    assert_eq!(p.one(&mut c, "SELECT current_user"), role);
    assert_eq!(
        try_one(&mut before, "SELECT pg_backend_pid()")
            .unwrap_or_else(|e| panic!("client dropped by reload: {e:?}{}", p.ctx())),
        pid.to_string(),
        "the session's server changed across the reload{}",
        p.ctx()
    );
}

/// A database removed by reload: new clients get 3D000, a client inside a
/// transaction finishes it, then it is closed.
#[test]
fn sighup_removes_a_database_after_its_transactions() {
    let base = Cfg::transaction();
    let p = Pooler::start(&base.clone().db("doomed", "postgres", ""));
    let t = cluster().new_table("doomed", "id int");
    let mut c = p.connect(USER, Some(PW), "doomed");
    c.batch_execute(&format!("BEGIN; INSERT INTO {t} VALUES (1)"))
        .unwrap();
    let mut keep = p.client();

    p.rewrite(&base);
    p.reload();
    let refused = poll(Duration::from_secs(5), || {
        match p.try_connect(USER, Some(PW), "doomed") {
            Err(e) if sqlstate(&e).as_deref() == Some("3D000") => Some(()),
            _ => None,
        }
    });
    assert!(
        refused.is_some(),
        "removed database still accepts clients{}",
        p.ctx()
    );
    c.batch_execute(&format!("INSERT INTO {t} VALUES (2)"))
        .unwrap_or_else(|e| panic!("transaction cut short by reload: {e:?}{}", p.ctx()));
    c.batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("COMMIT after reload: {e:?}{}", p.ctx()));
    assert_eq!(
        cluster().count("postgres", &format!("SELECT count(*) FROM {t}")),
        2
    );
    let closed = poll(Duration::from_secs(3), || {
        try_one(&mut c, "SELECT 1").is_err().then_some(())
    });
    assert!(
        closed.is_some(),
        "client of a removed database kept working{}",
        p.ctx()
    );
    assert_eq!(p.one(&mut keep, "SELECT 'unaffected'"), "unaffected");
}

/// An invalid config on SIGHUP is refused with a log line and the old one
/// keeps serving; a valid one afterwards still applies.
#[test]
fn sighup_with_an_invalid_config_keeps_the_old_one() {
    let base = Cfg::transaction();
    let p = Pooler::start(&base);
    let mut before = p.client();
    let garbage = "[pooler\nthis is = = not toml\n".to_string();
    // Valid TOML, invalid value; would also lock plain_user out if applied.
    let bad_value = base
        .clone()
        .without_user(PLAIN_USER)
        .set("query_wait_timeout", "soon")
        .render(p.port, &p.socket_dir);
    for (what, body) in [("syntax error", garbage), ("bad duration", bad_value)] {
        let offset = p.log_len();
        p.rewrite_config(&body);
        p.reload();
        let logged = poll(Duration::from_secs(5), || {
            let new = p.log_since(offset);
            new.lines()
                .any(|l| {
                    let lower = l.to_lowercase();
                    (l.contains("ERROR") || l.contains("WARN"))
                        && (lower.contains("reload") || lower.contains("pooler.conf"))
                })
                .then_some(())
        });
        assert!(
            logged.is_some(),
            "{what}: no error logged for the refused reload{}",
            p.ctx()
        );
        let mut p2 = p.connect(PLAIN_USER, Some(PLAIN_PW), "postgres");
        assert_eq!(p.one(&mut p2, "SELECT current_user"), PLAIN_USER, "{what}");
        assert_eq!(
            try_one(&mut before, "SELECT 'still served'")
                .unwrap_or_else(|e| panic!("{what}: {e:?}{}", p.ctx())),
            "still served"
        );
    }
    let role = cluster().new_role("after_bad");
    p.rewrite(&base.clone().user(&role, &role));
    p.reload();
    let ok = poll(Duration::from_secs(5), || {
        p.try_connect(&role, Some(&role), "postgres").ok()
    });
    assert!(
        ok.is_some(),
        "a valid reload after a refused one did not apply{}",
        p.ctx()
    );
}

/// SIGINT: no new clients, the open transaction finishes, idle clients are
/// closed, exit status 0.
#[test]
fn sigint_lets_open_transactions_finish_then_exits_0_session() {
    sigint_drains("session");
}

#[test]
fn sigint_lets_open_transactions_finish_then_exits_0_transaction() {
    sigint_drains("transaction");
}

fn sigint_drains(mode: &str) {
    let mut p = Pooler::start(&Cfg::new().mode(mode));
    let t = cluster().new_table("sigint", "id int");
    let mut a = p.client();
    a.batch_execute(&format!("BEGIN; INSERT INTO {t} VALUES (1)"))
        .unwrap();
    let mut idle = p.client();
    assert_eq!(p.one(&mut idle, "SELECT 1"), "1");

    p.signal(libc::SIGINT);
    let refused = poll(Duration::from_secs(5), || {
        login_refused(p.port).then_some(())
    });
    assert!(
        refused.is_some(),
        "{mode}: new clients still accepted after SIGINT{}",
        p.ctx()
    );
    assert!(
        p.is_running(),
        "{mode}: exited with a transaction open{}",
        p.ctx()
    );
    a.batch_execute(&format!("INSERT INTO {t} VALUES (2)"))
        .unwrap_or_else(|e| panic!("{mode}: transaction cut by SIGINT: {e:?}{}", p.ctx()));
    a.batch_execute("COMMIT")
        .unwrap_or_else(|e| panic!("{mode}: COMMIT after SIGINT: {e:?}{}", p.ctx()));
    let status = p.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "{mode}: still running 5 s after the last transaction{}",
            p.ctx()
        )
    });
    assert!(status.success(), "{mode}: exit status {status}{}", p.ctx());
    assert_eq!(
        cluster().count("postgres", &format!("SELECT count(*) FROM {t}")),
        2
    );
    assert!(try_one(&mut idle, "SELECT 1").is_err(), "{mode}");
}

#[test]
fn sigterm_exits_0_promptly() {
    let mut p = Pooler::start(&Cfg::transaction());
    let mut a = p.client();
    a.batch_execute("BEGIN").unwrap();
    let mut idle = p.client();
    assert_eq!(p.one(&mut idle, "SELECT 1"), "1");
    p.signal(libc::SIGTERM);
    let status = p
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("still running 5 s after SIGTERM{}", p.ctx()));
    assert!(status.success(), "exit status {status}{}", p.ctx());
    assert!(try_one(&mut a, "SELECT 1").is_err());
    assert!(login_refused(p.port));
}

/// Reads sd_notify datagrams until one contains `want`; returns it.
fn notified(sock: &std::os::unix::net::UnixDatagram, want: &str, seen: &mut Vec<String>) -> String {
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(m.clone());
                if m.lines().any(|l| l == want) {
                    return m;
                }
            }
            Err(e) => panic!("no {want} from the pooler ({e}); got {seen:?}"),
        }
    }
}

/// Under systemd (Type=notify) the pooler says when it is ready, reloading
/// and stopping, on the datagram socket systemd names in $NOTIFY_SOCKET.
#[test]
fn sd_notify_ready_reloading_stopping() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut p = Pooler::start(&Cfg::transaction().env("NOTIFY_SOCKET", path.to_str().unwrap()));
    let mut seen = Vec::new();
    let ready = notified(&sock, "READY=1", &mut seen);
    assert!(
        ready.contains(&format!("MAINPID={}", p.pid())),
        "{ready}{}",
        p.ctx()
    );
    assert!(ready.contains("STATUS="), "{ready}");
    // READY=1 is sent after the listeners are bound: a client gets in at once.
    assert_eq!(p.one(&mut p.client(), "SELECT 'up'"), "up");

    p.reload();
    let reloading = notified(&sock, "RELOADING=1", &mut seen);
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading}"));
    assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{reloading}");
    notified(&sock, "READY=1", &mut seen);

    p.signal(libc::SIGINT);
    notified(&sock, "STOPPING=1", &mut seen);
    assert!(
        p.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        p.ctx()
    );
}

/// A zero-downtime restart: a second pooler starts on the same port
/// (SO_REUSEPORT) and the first drains (SIGINT). pgbench opening a new
/// connection for every transaction runs across the switch without a single
/// failed connection or transaction.
#[test]
fn second_pooler_takes_over_the_port_while_the_first_drains() {
    // Connections the kernel queued on the closing listener move to the
    // other one instead of being reset (Linux 5.14+); pooler.1 recommends it.
    let _ = std::fs::write("/proc/sys/net/ipv4/tcp_migrate_req", "1");
    let cfg = Cfg::transaction().pool_size(4);
    let mut first = Pooler::start(&cfg);
    let port = first.port;
    let bench = std::thread::spawn(move || {
        pgbench(
            port,
            USER,
            &["-n", "-S", "-C", "-c", "4", "-j", "2", "-T", "4", "bench"],
        )
    });
    std::thread::sleep(Duration::from_millis(1000));
    let second = Pooler::start_beside(&cfg, &first);
    std::thread::sleep(Duration::from_millis(500));
    first.signal(libc::SIGINT);
    let status = first.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "first pooler did not drain and exit 0: {status:?}{}",
        first.ctx()
    );
    let out = bench.join().expect("pgbench thread");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed across the switch: {}{}{}",
        show(&out),
        first.ctx(),
        second.ctx()
    );
    assert!(
        stdout.contains("number of failed transactions: 0 "),
        "{stdout}"
    );
    let done: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(done > 0, "{stdout}");
    println!("pgbench across the switch:\n{stdout}");
    // The successor took the new connections.
    assert_eq!(
        second.one(&mut second.client(), "SELECT 'second'"),
        "second"
    );
    // The successor says it shares the port with a running process; the first, alone
    // on it when it started, does not.
    let shared = "another process already listens on 127.0.0.1:";
    assert!(second.log_since(0).contains(shared), "{}", second.ctx());
    assert!(!first.log_since(0).contains(shared), "{}", first.ctx());
}
