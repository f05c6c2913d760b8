//! Integration tests: one throwaway PostgreSQL 15 cluster for the whole
//! binary, the real `pooler` binary per test, real clients.

mod harness;

mod admin;
mod auth;
mod auth_query;
mod cli;
mod drivers;
mod extended;
mod guardrails;
mod hostile;
mod install;
mod limits;
mod passthrough;
mod relay;
mod signals;
mod tls;

use harness::*;

/// The fixtures themselves, without any pooler: the cluster is up, the
/// roles log in with the passwords the pooler's config will use, and the
/// pgbench tables exist.
#[test]
fn harness_sanity() {
    let c = cluster();
    for (user, pw) in [
        (SCRAM_USER, Some(SCRAM_PW)),
        (MD5_USER, Some(MD5_PW)),
        (PLAIN_USER, Some(PLAIN_PW)),
        (TRUST_USER, None),
    ] {
        let mut client = connect(c.port, user, pw, "postgres")
            .unwrap_or_else(|e| panic!("direct login as {user}: {e:?}"));
        assert_eq!(one(&mut client, "SELECT current_user"), user);
        let out = psql(c.port, user, "app", pw, "SELECT current_database()");
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(text(&out.stdout).trim(), "app");
    }
    let wrong = connect(c.port, PLAIN_USER, Some("nope"), "postgres");
    assert_sqlstate(&wrong, "28P01", "");
    assert!(c.scram_verifier.starts_with("SCRAM-SHA-256$4096:"));
    assert_eq!(c.md5_hash.len(), 35);
    assert_eq!(
        c.count("bench", "SELECT count(*) FROM pgbench_accounts"),
        100_000
    );
    let mut b = connect(c.port, PLAIN_USER, Some(PLAIN_PW), "bench").unwrap();
    assert_eq!(one(&mut b, "SELECT count(*) FROM pgbench_branches"), "1");
    let t = c.new_table("sanity", "id int");
    let mut p = connect(c.port, MD5_USER, Some(MD5_PW), "postgres").unwrap();
    p.batch_execute(&format!("INSERT INTO {t} VALUES (1)"))
        .unwrap();
    assert_eq!(c.count("postgres", &format!("SELECT count(*) FROM {t}")), 1);
    let role = c.new_role("sanity");
    let _r = connect(c.port, &role, Some(&role), "postgres").unwrap();
    assert_eq!(c.backends_of(&role), 1);
    // The fixtures the timeout tests rely on behave as they claim.
    assert!(
        BlackHole::start().hangs(),
        "a full accept queue should hang connect()"
    );
    let cfg = Cfg::session().pool_size(1).set("query_wait_timeout", "1s");
    let body = cfg.render(6432, std::path::Path::new("/tmp/x"));
    assert!(body.contains("pool_mode = \"session\""), "{body}");
    assert!(body.contains("query_wait_timeout = \"1s\""), "{body}");
    assert!(body.contains("default_pool_size = 1"), "{body}");
}
