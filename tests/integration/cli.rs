//! The binary's command line: --version, --help, --check.

use crate::harness::*;
use std::fs;
use std::path::Path;

#[test]
fn version_prints_name_and_version() {
    let out = pooler_cmd(&["--version"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("pooler {}", env!("CARGO_PKG_VERSION")),
        "{}",
        show(&out)
    );
}

#[test]
fn help_exits_0_and_mentions_the_options() {
    let out = pooler_cmd(&["--help"]);
    assert!(out.status.success(), "{}", show(&out));
    let all = text(&out.stdout) + &text(&out.stderr);
    for opt in ["-c", "--check", "--version"] {
        assert!(
            all.contains(opt),
            "--help does not mention {opt}: {}",
            show(&out)
        );
    }
}

fn write_conf(dir: &TempDir, body: &str) -> String {
    let path = dir.path().join("pooler.conf");
    fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn check_accepts_the_test_config() {
    let dir = TempDir::new("check");
    let path = write_conf(&dir, &Cfg::new().render(free_port(), dir.path()));
    let out = pooler_cmd(&["--check", "-c", &path]);
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn check_accepts_the_shipped_sample() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("pooler.conf.sample");
    assert!(sample.exists(), "pooler.conf.sample is missing");
    let out = pooler_cmd(&["--check", "-c", sample.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
}

/// The error names FILE:LINE: and the key, for the line the bad value is on.
#[track_caller]
fn assert_check_error(body: &str, line: usize, key: &str) {
    let dir = TempDir::new("check");
    let path = write_conf(&dir, body);
    let out = pooler_cmd(&["--check", "-c", &path]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\nconfig:\n{body}",
        show(&out)
    );
    let err = text(&out.stderr);
    let at = format!("{path}:{line}:");
    assert!(
        err.contains(&at),
        "stderr does not name {at}: {}\nconfig:\n{body}",
        show(&out)
    );
    assert!(
        err.contains(key),
        "stderr does not name key {key}: {}",
        show(&out)
    );
}

fn line_of(body: &str, needle: &str) -> usize {
    body.lines()
        .position(|l| l.contains(needle))
        .expect("needle in config")
        + 1
}

#[test]
fn check_rejects_a_bad_duration_naming_file_line_and_key() {
    let dir = TempDir::new("render");
    let body = Cfg::new()
        .set("query_wait_timeout", "5 parsecs")
        .render(free_port(), dir.path());
    let line = line_of(&body, "query_wait_timeout");
    assert!(line > 3, "the bad key should not be on the first lines");
    assert_check_error(&body, line, "query_wait_timeout");
}

#[test]
fn check_rejects_a_bad_value_in_a_database_section() {
    let dir = TempDir::new("render");
    let body = Cfg::new()
        .db("broken", "postgres", "pool_size = \"many\"")
        .render(free_port(), dir.path());
    let line = line_of(&body, "pool_size = \"many\"");
    assert_check_error(&body, line, "pool_size");
}

#[test]
fn check_rejects_an_unknown_pool_mode() {
    let dir = TempDir::new("render");
    let body = Cfg::new()
        .set("pool_mode", "statementish")
        .render(free_port(), dir.path());
    let line = line_of(&body, "statementish");
    assert_check_error(&body, line, "pool_mode");
}

#[test]
fn check_rejects_invalid_toml_naming_the_line() {
    let dir = TempDir::new("render");
    let mut body = Cfg::new().render(free_port(), dir.path());
    let line = body.lines().count() + 2;
    body.push_str("\n[databases.oops\nhost = \"x\"\n");
    let tmp = TempDir::new("check");
    let path = write_conf(&tmp, &body);
    let out = pooler_cmd(&["--check", "-c", &path]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("{path}:{line}")),
        "stderr does not name {path}:{line}: {}\nconfig:\n{body}",
        show(&out)
    );
}

#[test]
fn check_of_a_missing_file_fails() {
    let dir = TempDir::new("check");
    let path = dir.path().join("absent.conf");
    let out = pooler_cmd(&["--check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text(&out.stderr).contains("absent.conf"), "{}", show(&out));
}

/// An unknown key is a warning naming file, line and key (a key from a newer
/// version must not stop a pooler), in --check and in the daemon's log.
#[test]
fn unknown_key_is_a_warning_with_file_and_line() {
    let dir = TempDir::new("check");
    let body =
        Cfg::new().render(free_port(), dir.path()) + "\n[tls]\nclient_tls_moed = \"disable\"\n";
    let line = body
        .lines()
        .position(|l| l.starts_with("client_tls_moed"))
        .unwrap()
        + 1;
    let path = write_conf(&dir, &body);
    let out = pooler_cmd(&["--check", "-c", &path]);
    assert!(out.status.success(), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("warning: {path}:{line}:")) && err.contains("tls.client_tls_moed"),
        "{}",
        show(&out)
    );
    assert!(
        err.contains("did you mean client_tls_mode"),
        "{}",
        show(&out)
    );

    let p = Pooler::start(&Cfg::new().extra("[tls]\nclient_tls_moed = \"disable\"\n"));
    assert!(p.log().contains("client_tls_moed"), "{}", p.ctx());
    assert_eq!(p.one(&mut p.client(), "SELECT 1"), "1");
}

/// A port another program holds without SO_REUSEPORT: a clear message naming
/// the address, exit status 1.
#[test]
fn port_in_use_fails_start_up_clearly() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = TempDir::new("inuse");
    let path = write_conf(&dir, &Cfg::new().render(port, dir.path()));
    let out = std::process::Command::new(pooler_bin())
        .args(["-c", &path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.to_lowercase().contains("in use"),
        "{}",
        show(&out)
    );
}
