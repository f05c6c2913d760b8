//! Real drivers (tests/drivers/) through the pooler, in session and in
//! transaction mode. A driver that is not installed fails the test: the
//! install commands are in the failure message.

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;

fn drivers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("drivers")
}

/// One pooler with a session-mode and a transaction-mode database (pool of
/// two, so the transaction-mode run really moves between servers).
fn driver_pooler() -> Pooler {
    Pooler::start(
        &Cfg::new()
            .set("log_level", "info")
            .db("drv_session", "postgres", "pool_mode = \"session\"")
            .db(
                "drv_tx",
                "postgres",
                "pool_mode = \"transaction\"\npool_size = 2",
            ),
    )
}

#[track_caller]
fn require(program: &str, args: &[&str], what: &str, install: &str) {
    let out = Command::new(program)
        .args(args)
        .current_dir(drivers_dir())
        .output()
        .unwrap_or_else(|e| panic!("{program} is not runnable ({e}); needed for {what}"));
    assert!(
        out.status.success(),
        "{what} is not installed; install it with `{install}`\n{}",
        show(&out)
    );
}

fn run_driver(program: &str, script: &str) {
    let p = driver_pooler();
    let script = drivers_dir().join(script);
    for db in ["drv_session", "drv_tx"] {
        let out = Command::new(program)
            .arg(&script)
            .args(["127.0.0.1", &p.port.to_string(), USER, PW, db])
            .current_dir(drivers_dir())
            .env("PGSSLMODE", "disable")
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{} against {db}:\n{}{}",
            script.display(),
            show(&out),
            p.ctx()
        );
    }
}

#[test]
fn python_psycopg3() {
    require(
        "python3",
        &["-c", "import psycopg"],
        "psycopg 3",
        "pip install 'psycopg[binary]' asyncpg",
    );
    run_driver("python3", "psycopg_driver.py");
}

#[test]
fn python_asyncpg() {
    require(
        "python3",
        &["-c", "import asyncpg"],
        "asyncpg",
        "pip install 'psycopg[binary]' asyncpg",
    );
    run_driver("python3", "asyncpg_driver.py");
}

#[test]
fn node_pg() {
    require(
        "node",
        &["-e", "require('pg')"],
        "node-postgres",
        "cd tests/drivers && npm ci",
    );
    run_driver("node", "pg_driver.js");
}
