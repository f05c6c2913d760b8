//! `make install` and `make uninstall`, run with this test binary's `pooler`
//! (BIN=..., so no release build): the installed files and their modes, the
//! man pages as `man` renders them, the installed config (valid, and the
//! installed binary runs with it), a second install that keeps an edited
//! config, the unit's rewritten paths (checked by `systemd-analyze verify`
//! where it exists), and an uninstall that leaves only the config. No
//! PostgreSQL: only the pooler itself has to answer.

use crate::harness::*;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A temp dir of its own, outside the harness's test root: the cluster's
/// start-up wipes that root, and these tests neither need nor wait for it.
fn own_dir(prefix: &str) -> TempDir {
    let p = std::env::temp_dir().join(format!(
        "pooler-install-test-{}-{}",
        std::process::id(),
        unique(prefix)
    ));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).expect("create temp dir");
    TempDir(p)
}

/// `make TARGET BIN=<this test's pooler> VARS...` in the repository.
fn make(target: &str, vars: &[(&str, &Path)]) -> Output {
    let mut c = Command::new("make");
    c.arg("--no-print-directory")
        .arg("-C")
        .arg(repo())
        .arg(target)
        .arg(format!("BIN={}", pooler_bin()));
    for (name, value) in vars {
        c.arg(format!("{name}={}", value.display()));
    }
    // A parent make's flags (make test) and layout variables set in the
    // environment would change what is installed where.
    for v in [
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
        "BINDIR",
        "MANDIR",
        "DOCDIR",
        "UNITDIR",
        "SYSCONFDIR",
        "CONFDIR",
        "INSTALL",
    ] {
        c.env_remove(v);
    }
    let out = c.stdin(Stdio::null()).output().expect("run make");
    assert!(out.status.success(), "make {target}: {}", show(&out));
    out
}

#[track_caller]
fn assert_mode(path: &Path, mode: u32) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.is_file(), "{} is not a file", path.display());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        mode,
        "mode of {}: {:o}",
        path.display(),
        meta.permissions().mode() & 0o7777
    );
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The installed config is the sample with the unix socket in the unit's
/// RuntimeDirectory, and nothing else changed.
fn assert_installed_config(conf: &Path) {
    let body = read(conf);
    let sample = read(&repo().join("pooler.conf.sample"));
    assert!(
        body.contains("\nunix_socket_dir = \"/run/pooler\"\n"),
        "{}:\n{body}",
        conf.display()
    );
    assert_eq!(
        body.replace(
            "\nunix_socket_dir = \"/run/pooler\"\n",
            "\nunix_socket_dir = \"/tmp\"\n"
        ),
        sample,
        "{} differs from the sample beyond unix_socket_dir",
        conf.display()
    );
}

/// `man -l FILE` as plain text, or None when there is no `man`.
fn man(page: &Path) -> Option<Output> {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("MANWIDTH", "80")
        .env_remove("MAN_KEEP_FORMATTING")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(out)
}

/// Kills the child on drop, so a failing assertion leaves no pooler behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `bin -c conf` and waits for 127.0.0.1:port to accept; the child's
/// log as the error if it exits or does not listen within 10 s.
fn start(bin: &Path, conf: &Path, log: &Path, port: u16) -> Result<Reaped, String> {
    let logf = fs::File::create(log).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(conf)
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let mut child = Reaped(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let up = poll(Duration::from_secs(10), || {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Some(Err(format!("exited with {status}")));
        }
        TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .ok()
            .map(|_| Ok(()))
    });
    match up {
        Some(Ok(())) => Ok(child),
        Some(Err(e)) => Err(format!("{e}\n{}", read(log))),
        None => Err(format!("not listening on {addr} after 10 s\n{}", read(log))),
    }
}

#[test]
fn make_install_then_uninstall() {
    let dest = own_dir("destdir");
    let d = dest.path();
    let vars = [("DESTDIR", d), ("PREFIX", Path::new("/usr"))];
    make("install", &vars);

    let bin = d.join("usr/bin/pooler");
    let man1 = d.join("usr/share/man/man1/pooler.1");
    let man5 = d.join("usr/share/man/man5/pooler.conf.5");
    let unit = d.join("usr/lib/systemd/system/pooler.service");
    let doc = d.join("usr/share/doc/pooler");
    let sample = doc.join("pooler.conf.sample");
    let readme = doc.join("README.md");
    let conf = d.join("etc/pooler/pooler.conf");
    assert_mode(&bin, 0o755);
    assert_eq!(
        fs::metadata(&bin).unwrap().len(),
        fs::metadata(pooler_bin()).unwrap().len(),
        "the installed binary is not BIN"
    );
    for f in [&man1, &man5, &unit, &sample, &readme] {
        assert_mode(f, 0o644);
    }
    // The config may hold passwords.
    assert_mode(&conf, 0o640);
    assert_installed_config(&conf);
    assert_eq!(read(&sample), read(&repo().join("pooler.conf.sample")));
    let unit_text = read(&unit);
    for line in [
        "Type=notify",
        "ExecStartPre=/usr/bin/pooler --check -c /etc/pooler/pooler.conf",
        "ExecStart=/usr/bin/pooler -c /etc/pooler/pooler.conf",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGINT",
        "RuntimeDirectory=pooler",
        "User=pooler",
    ] {
        assert!(
            unit_text.lines().any(|l| l == line),
            "{} lacks {line}:\n{unit_text}",
            unit.display()
        );
    }

    for (page, words) in [
        (&man1, ["POOLER", "SYNOPSIS", "/etc/pooler/pooler.conf"]),
        (&man5, ["POOLER.CONF", "listen_port", "unix_socket_dir"]),
    ] {
        match man(page) {
            None => eprintln!("man is not installed: {} not rendered", page.display()),
            Some(out) => {
                assert!(
                    out.status.success(),
                    "man -l {}: {}",
                    page.display(),
                    show(&out)
                );
                let text = text(&out.stdout);
                for w in words {
                    assert!(
                        text.contains(w),
                        "man -l {} lacks {w}:\n{text}",
                        page.display()
                    );
                }
            }
        }
    }

    let check = Command::new(&bin)
        .arg("--check")
        .arg("-c")
        .arg(&conf)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "--check of the installed config: {}",
        show(&check)
    );

    // The installed binary runs with a copy of the installed config, moved to
    // a free port and a socket dir of its own, and answers a startup packet
    // itself (the sample's PostgreSQL at 127.0.0.1:5432 need not exist).
    let run = own_dir("run");
    let body = read(&conf);
    assert!(body.contains("\nlisten_port = 6432\n"), "{body}");
    let mut child = None;
    let mut port = 0;
    let mut last = String::new();
    // A free port may be taken before the pooler binds it: try three.
    for _ in 0..3 {
        port = free_port();
        let copy = run.path().join("pooler.conf");
        fs::write(
            &copy,
            body.replace(
                "\nlisten_port = 6432\n",
                &format!("\nlisten_port = {port}\n"),
            )
            .replace(
                "\nunix_socket_dir = \"/run/pooler\"\n",
                &format!("\nunix_socket_dir = \"{}\"\n", run.path().display()),
            ),
        )
        .unwrap();
        match start(&bin, &copy, &run.path().join("pooler.log"), port) {
            Ok(c) => {
                child = Some(c);
                break;
            }
            Err(log) => last = log,
        }
    }
    let mut child = child.unwrap_or_else(|| panic!("the installed pooler did not start:\n{last}"));
    let log = run.path().join("pooler.log");
    assert!(
        run.path().join(format!(".s.PGSQL.{port}")).exists(),
        "no unix socket in {}\n{}",
        run.path().display(),
        read(&log)
    );
    let mut raw = Raw::connect(port);
    raw.send(&msg::startup(&[
        ("user", "install_test"),
        ("database", "postgres"),
    ]));
    let first = raw
        .read_msg()
        .unwrap_or_else(|e| panic!("no answer to a startup packet: {e}\n{}", read(&log)));
    assert!(
        first.tag == b'R' || first.tag == b'E',
        "answer to a startup packet: {first}\n{}",
        read(&log)
    );
    drop(raw);
    // SAFETY: signalling our own child, not yet reaped.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = poll(Duration::from_secs(5), || child.0.try_wait().ok().flatten());
    assert!(
        matches!(status, Some(s) if s.success()),
        "after SIGTERM: {status:?}\n{}",
        read(&log)
    );

    // A second install keeps an edited config and says so.
    let edited = format!("{body}\n# edited by the install test\n");
    fs::write(&conf, &edited).unwrap();
    let again = make("install", &vars);
    assert_eq!(
        read(&conf),
        edited,
        "make install overwrote the edited config"
    );
    assert_mode(&conf, 0o640);
    assert!(text(&again.stdout).contains("kept"), "{}", show(&again));

    let un = make("uninstall", &vars);
    for f in [&bin, &man1, &man5, &unit, &sample, &readme] {
        assert!(!f.exists(), "make uninstall left {}", f.display());
    }
    assert!(!doc.exists(), "make uninstall left {}", doc.display());
    assert_eq!(read(&conf), edited, "make uninstall touched the config");
    assert!(text(&un.stdout).contains("left in place"), "{}", show(&un));
}

/// PREFIX and SYSCONFDIR (no DESTDIR) end up in the unit's paths; where
/// systemd-analyze exists, it verifies the installed unit without a word
/// (man pages aside: they are not on MANPATH here).
#[test]
fn make_install_rewrites_the_unit_for_its_prefix() {
    let root = own_dir("prefix");
    let prefix = root.path().join("opt");
    let etc = root.path().join("etc");
    let vars = [("PREFIX", prefix.as_path()), ("SYSCONFDIR", etc.as_path())];
    make("install", &vars);
    let bin = prefix.join("bin/pooler");
    let conf = etc.join("pooler/pooler.conf");
    let unit = prefix.join("lib/systemd/system/pooler.service");
    assert_mode(&bin, 0o755);
    assert_installed_config(&conf);
    let unit_text = read(&unit);
    let exec = format!("ExecStart={} -c {}", bin.display(), conf.display());
    assert!(
        unit_text.lines().any(|l| l == exec),
        "{} lacks {exec}:\n{unit_text}",
        unit.display()
    );
    // Every mention of the binary and the config directory is rewritten (the
    // temp dir's own path ends in .../etc/pooler/ too: take it out first).
    let rest = unit_text
        .replace(&bin.display().to_string(), "BIN")
        .replace(&etc.join("pooler/").display().to_string(), "CONFDIR/");
    assert!(
        !rest.contains("/usr/bin/pooler") && !rest.contains("/etc/pooler/"),
        "paths left unrewritten:\n{unit_text}"
    );

    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .stdin(Stdio::null())
        .output();
    match verify {
        Err(e) => eprintln!("systemd-analyze: {e}: the unit is not verified"),
        Ok(out) => assert!(
            out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
            "systemd-analyze verify {}: {}",
            unit.display(),
            show(&out)
        ),
    }

    make("uninstall", &vars);
    assert!(!bin.exists() && !unit.exists());
    assert!(conf.exists(), "make uninstall removed the config");
}
