//! TLS on both sides of the pooler, client certificates, SCRAM channel
//! binding, and auth_type = "hba". Certificates come from the harness
//! (`certs()`, made with the openssl CLI when the cluster starts); the
//! cluster itself serves TLS and lets `tls_only` in over hostssl only.

use crate::harness::*;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Appends a `[tls]` section with these keys (string values).
fn with_tls(cfg: Cfg, kv: &[(&str, &str)]) -> Cfg {
    let mut s = String::from("[tls]\n");
    for (k, v) in kv {
        s.push_str(&format!("{k} = {v:?}\n"));
    }
    cfg.extra(&s)
}

/// client_tls_mode with the test server certificate (and the test CA as
/// client_tls_ca_file when `ca` is set).
fn client_tls(cfg: Cfg, mode: &str, ca: bool) -> Cfg {
    let c = certs();
    let mut kv = vec![
        ("client_tls_mode", mode),
        ("client_tls_cert_file", path_str(&c.server.crt)),
        ("client_tls_key_file", path_str(&c.server.key)),
    ];
    if ca {
        kv.push(("client_tls_ca_file", path_str(&c.ca)));
    }
    with_tls(cfg, &kv)
}

/// The pooler's config plus the role that reaches PostgreSQL over TLS only.
fn with_tls_only_user(cfg: Cfg) -> Cfg {
    cfg.user(TLS_ONLY_USER, TLS_ONLY_PW)
}

// ---------------------------------------------------------------------------
// psql and pgbench with TLS settings
// ---------------------------------------------------------------------------

/// A psql run with explicit libpq TLS settings: nothing is read from the
/// environment or ~/.postgresql, so an unset certificate means none.
struct Psql {
    host: String,
    port: u16,
    user: String,
    db: String,
    password: Option<String>,
    env: Vec<(String, String)>,
}

impl Psql {
    fn new(port: u16, user: &str) -> Psql {
        Psql {
            host: "127.0.0.1".into(),
            port,
            user: user.into(),
            db: "postgres".into(),
            password: password_of(user).map(String::from),
            env: Vec::new(),
        }
    }

    fn host(mut self, host: &str) -> Psql {
        self.host = host.into();
        self
    }

    fn db(mut self, db: &str) -> Psql {
        self.db = db.into();
        self
    }

    fn password(mut self, pw: Option<&str>) -> Psql {
        self.password = pw.map(String::from);
        self
    }

    fn env(mut self, k: &str, v: &str) -> Psql {
        self.env.push((k.into(), v.into()));
        self
    }

    fn ssl(self, mode: &str) -> Psql {
        self.env("PGSSLMODE", mode)
    }

    fn root(self, ca: &Path) -> Psql {
        self.env("PGSSLROOTCERT", path_str(ca))
    }

    fn cert(self, pair: &CertPair) -> Psql {
        self.env("PGSSLCERT", path_str(&pair.crt))
            .env("PGSSLKEY", path_str(&pair.key))
    }

    fn run(&self, cmds: &[&str]) -> Output {
        let mut c = Command::new("psql");
        c.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(["-U", &self.user, "-d", &self.db]);
        for cmd in cmds {
            c.arg("-c").arg(cmd);
        }
        for var in [
            "PGPASSWORD",
            "PGOPTIONS",
            "PGAPPNAME",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGSERVICE",
            "PGSSLMODE",
            "PGCHANNELBINDING",
            "PGSSLMINPROTOCOLVERSION",
            "PGSSLMAXPROTOCOLVERSION",
        ] {
            c.env_remove(var);
        }
        c.env("PGGSSENCMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGPASSFILE", "/nonexistent")
            .env("PGSSLROOTCERT", "/nonexistent/root.crt")
            .env("PGSSLCERT", "/nonexistent/postgresql.crt")
            .env("PGSSLKEY", "/nonexistent/postgresql.key")
            .env("PGSSLCRL", "/nonexistent/root.crl");
        match &self.password {
            Some(pw) => {
                c.env("PGPASSWORD", pw);
            }
            None => {
                c.arg("-w");
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.stdin(Stdio::null()).output().expect("run psql")
    }

    /// `SELECT current_user` and `\conninfo`.
    fn whoami(&self) -> Output {
        self.run(&["SELECT current_user", "\\conninfo"])
    }
}

/// psql succeeded; its stdout lines.
#[track_caller]
fn ok_lines(p: &Pooler, out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{}{}", show(out), p.ctx());
    text(&out.stdout).lines().map(String::from).collect()
}

/// `Psql::whoami` logged in as `user` over TLS (TLSv1.2 or 1.3).
#[track_caller]
fn assert_tls_login(p: &Pooler, out: &Output, user: &str) {
    let lines = ok_lines(p, out);
    assert_eq!(
        lines.first().map(String::as_str),
        Some(user),
        "{}{}",
        show(out),
        p.ctx()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("SSL connection (protocol: TLSv1.")),
        "not a TLS connection: {}{}",
        show(out),
        p.ctx()
    );
}

/// `Psql::whoami` logged in as `user` without TLS.
#[track_caller]
fn assert_plain_login(p: &Pooler, out: &Output, user: &str) {
    let lines = ok_lines(p, out);
    assert_eq!(
        lines.first().map(String::as_str),
        Some(user),
        "{}{}",
        show(out),
        p.ctx()
    );
    assert!(
        !text(&out.stdout).contains("SSL connection"),
        "unexpectedly TLS: {}{}",
        show(out),
        p.ctx()
    );
}

#[track_caller]
fn assert_psql_fails(p: &Pooler, out: &Output, needle: &str) {
    assert!(
        !out.status.success(),
        "expected a failure mentioning {needle:?}: {}{}",
        show(out),
        p.ctx()
    );
    assert!(
        text(&out.stderr).contains(needle),
        "expected stderr to mention {needle:?}: {}{}",
        show(out),
        p.ctx()
    );
}

fn pgbench_ssl(port: u16, sslmode: &str, args: &[&str]) -> Output {
    Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", PLAIN_USER])
        .args(args)
        .env_remove("PGOPTIONS")
        .env_remove("PGCHANNELBINDING")
        .env("PGSSLMODE", sslmode)
        .env("PGGSSENCMODE", "disable")
        .env("PGPASSFILE", "/nonexistent")
        .env("PGPASSWORD", PLAIN_PW)
        .env("PGSSLROOTCERT", "/nonexistent/root.crt")
        .env("PGSSLCERT", "/nonexistent/postgresql.crt")
        .env("PGSSLKEY", "/nonexistent/postgresql.key")
        .stdin(Stdio::null())
        .output()
        .expect("run pgbench")
}

fn tps_of(out: &Output) -> Option<f64> {
    text(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

// ---------------------------------------------------------------------------
// A raw protocol client over rustls
// ---------------------------------------------------------------------------

fn read_msg_from(r: &mut impl Read) -> io::Result<Msg> {
    let mut hdr = [0u8; 5];
    r.read_exact(&mut hdr)?;
    let len = i32::from_be_bytes(hdr[1..5].try_into().unwrap());
    if !(4..=64 * 1024 * 1024).contains(&len) {
        return Err(io::Error::other(format!(
            "bad message length {len} for tag {:?}",
            hdr[0] as char
        )));
    }
    let mut body = vec![0u8; len as usize - 4];
    r.read_exact(&mut body)?;
    Ok(Msg { tag: hdr[0], body })
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("PEM in {}: {e:?}", path.display()))
}

/// A rustls client config trusting `ca`, presenting `cert` if given.
fn rustls_client(ca: &Path, cert: Option<&CertPair>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in pem_certs(ca) {
        roots.add(c).expect("add the CA");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
    let config = match cert {
        Some(pair) => {
            let key =
                PrivateKeyDer::from_pem_slice(&fs::read(&pair.key).unwrap()).expect("client key");
            builder
                .with_client_auth_cert(pem_certs(&pair.crt), key)
                .expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Why a TLS login did not get to ReadyForQuery.
#[derive(Debug)]
enum Refused {
    /// The pooler answered with this ErrorResponse.
    Error(Msg),
    /// No ErrorResponse: the TLS layer (or the socket) failed.
    Io(String),
}

/// The raw client of the harness, over TLS (SSLRequest, 'S', handshake),
/// answering trust and cleartext password requests only.
struct TlsRaw {
    s: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsRaw {
    fn connect(port: u16, config: Arc<ClientConfig>) -> Result<TlsRaw, String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.write_all(&msg::ssl_request())
            .map_err(|e| e.to_string())?;
        let mut answer = [0u8];
        tcp.read_exact(&mut answer)
            .map_err(|e| format!("answer to SSLRequest: {e}"))?;
        if answer[0] != b'S' {
            return Err(format!("answer {:?} to SSLRequest", answer[0] as char));
        }
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn
                .complete_io(&mut s.sock)
                .map_err(|e| format!("TLS handshake: {e}"))?;
        }
        Ok(TlsRaw { s })
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)?;
        self.s.flush()
    }

    fn read_msg(&mut self) -> io::Result<Msg> {
        read_msg_from(&mut self.s)
    }

    fn login(
        port: u16,
        config: Arc<ClientConfig>,
        user: &str,
        db: &str,
        password: Option<&str>,
    ) -> Result<TlsRaw, Refused> {
        let mut r = TlsRaw::connect(port, config).map_err(Refused::Io)?;
        r.send(&msg::startup(&[("user", user), ("database", db)]))
            .map_err(|e| Refused::Io(format!("send startup: {e}")))?;
        loop {
            let m = r
                .read_msg()
                .map_err(|e| Refused::Io(format!("read during login: {e}")))?;
            match m.tag {
                b'R' => match m.int(0) {
                    0 => {}
                    3 => {
                        let pw = password.expect("pooler asked for a password");
                        r.send(&msg::password(pw))
                            .map_err(|e| Refused::Io(format!("send password: {e}")))?;
                    }
                    code => panic!("TLS raw client cannot do auth request {code}"),
                },
                b'E' => return Err(Refused::Error(m)),
                b'Z' => return Ok(r),
                b'K' | b'S' | b'N' => {}
                other => panic!("unexpected message {:?} during login", other as char),
            }
        }
    }

    fn query(&mut self, sql: &str) -> io::Result<Vec<Msg>> {
        self.send(&msg::query(sql))?;
        let mut v = Vec::new();
        loop {
            let m = self.read_msg()?;
            let done = m.tag == b'Z';
            v.push(m);
            if done {
                return Ok(v);
            }
        }
    }
}

/// A TLS login that must be refused with an ErrorResponse of `code`;
/// returns its message.
#[track_caller]
fn tls_refusal(p: &Pooler, r: Result<TlsRaw, Refused>, code: &str) -> String {
    match r {
        Ok(_) => panic!("expected SQLSTATE {code}, the login succeeded{}", p.ctx()),
        Err(Refused::Io(e)) => panic!("expected SQLSTATE {code}, got {e}{}", p.ctx()),
        Err(Refused::Error(m)) => {
            assert_eq!(
                m.sqlstate().as_deref(),
                Some(code),
                "expected SQLSTATE {code}, got {m}{}",
                p.ctx()
            );
            m.fields().get(&b'M').cloned().unwrap_or_default()
        }
    }
}

/// A TLS login that must fail below the protocol (a TLS alert or a closed
/// connection, no ErrorResponse); returns the error text.
#[track_caller]
fn tls_level_refusal(p: &Pooler, r: Result<TlsRaw, Refused>) -> String {
    match r {
        Ok(_) => panic!(
            "expected a TLS-level refusal, the login succeeded{}",
            p.ctx()
        ),
        Err(Refused::Error(m)) => panic!("expected a TLS-level refusal, got {m}{}", p.ctx()),
        Err(Refused::Io(e)) => e,
    }
}

/// The first message the pooler sends after a plaintext startup packet.
fn first_reply(port: u16, user: &str, db: &str) -> Msg {
    let mut r = Raw::connect(port);
    r.send(&msg::startup(&[("user", user), ("database", db)]));
    r.read_msg().expect("a reply to the startup packet")
}

#[track_caller]
fn assert_auth_request(p: &Pooler, m: &Msg, code: i32, what: &str) {
    assert!(
        m.tag == b'R' && m.int(0) == code,
        "expected {what} (R {code}), got {m}{}",
        p.ctx()
    );
}

#[track_caller]
fn assert_error(p: &Pooler, m: &Msg, code: &str, message: &str) {
    assert_eq!(m.sqlstate().as_deref(), Some(code), "{m}{}", p.ctx());
    assert_eq!(
        m.fields().get(&b'M').map(String::as_str),
        Some(message),
        "{m}{}",
        p.ctx()
    );
}

/// Plaintext login with a cleartext password (auth_type plain or trust),
/// then `sql`: the first ErrorResponse of either, and how long it took.
fn error_of_login_or_query(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
    sql: &str,
) -> (Result<Msg, String>, Duration) {
    let t0 = Instant::now();
    let mut r = match Raw::login(port, user, db, password, &[]) {
        Err(e) => return (Ok(e), t0.elapsed()),
        Ok(r) => r,
    };
    r.send(&msg::query(sql));
    let res = match r.until_ready_or_eof() {
        Err(e) => Err(format!("no reply within the read timeout: {e}")),
        Ok(msgs) => msgs
            .into_iter()
            .find(|m| m.tag == b'E')
            .ok_or_else(|| "the query succeeded".to_string()),
    };
    (res, t0.elapsed())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes `body` to `path` through a rename, so a reload never reads half.
fn replace_file(path: &Path, body: &[u8]) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, body).unwrap();
    fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------
// 1. client_tls_mode = require
// ---------------------------------------------------------------------------

/// psql connects with sslmode require, verify-ca and verify-full against the
/// test CA, with TLS 1.2 and 1.3; plaintext is refused with 28000 "TLS
/// required" before any password is asked; unix sockets are exempt.
#[test]
fn client_tls_require_accepts_tls_and_refuses_plaintext() {
    let c = certs();
    let p = Pooler::start(&client_tls(Cfg::new(), "require", false));

    let out = Psql::new(p.port, PLAIN_USER).ssl("require").whoami();
    assert_tls_login(&p, &out, PLAIN_USER);
    let out = Psql::new(p.port, SCRAM_USER)
        .ssl("verify-ca")
        .root(&c.ca)
        .whoami();
    assert_tls_login(&p, &out, SCRAM_USER);
    let out = Psql::new(p.port, PLAIN_USER)
        .host("localhost")
        .ssl("verify-full")
        .root(&c.ca)
        .whoami();
    assert_tls_login(&p, &out, PLAIN_USER);

    for version in ["TLSv1.2", "TLSv1.3"] {
        let out = Psql::new(p.port, PLAIN_USER)
            .ssl("require")
            .env("PGSSLMINPROTOCOLVERSION", version)
            .env("PGSSLMAXPROTOCOLVERSION", version)
            .whoami();
        let lines = ok_lines(&p, &out);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("SSL connection (protocol: {version},"))),
            "expected {version}: {}{}",
            show(&out),
            p.ctx()
        );
    }

    // The pooler presents the configured certificate: another CA rejects it.
    let out = Psql::new(p.port, PLAIN_USER)
        .ssl("verify-ca")
        .root(&c.ca2)
        .whoami();
    assert_psql_fails(&p, &out, "certificate verify failed");

    // Plaintext: refused before any password is asked.
    let out = Psql::new(p.port, PLAIN_USER).ssl("disable").whoami();
    assert_psql_fails(&p, &out, "TLS required");
    let m = first_reply(p.port, PLAIN_USER, "postgres");
    assert_eq!(
        m.tag,
        b'E',
        "plaintext startup under require: expected an ErrorResponse first, got {m}{}",
        p.ctx()
    );
    assert_eq!(m.sqlstate().as_deref(), Some("28000"), "{m}{}", p.ctx());
    let message = m.fields().get(&b'M').cloned().unwrap_or_default();
    assert!(message.contains("TLS required"), "{m}{}", p.ctx());

    // The unix socket is local: no TLS needed there.
    let out = psql_unix(
        &p.socket_dir,
        p.port,
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
        "SELECT current_user",
    );
    assert_eq!(ok_lines(&p, &out), vec![PLAIN_USER.to_string()]);
}

// ---------------------------------------------------------------------------
// 2. SCRAM channel binding
// ---------------------------------------------------------------------------

/// channel_binding=require (SCRAM-SHA-256-PLUS, tls-server-end-point) works
/// over TLS for a verifier-stored and a plain-password user; plain SCRAM on
/// TLS keeps working; without TLS libpq itself refuses to go on.
#[test]
fn scram_channel_binding_over_tls() {
    let p = Pooler::start(&client_tls(Cfg::new(), "prefer", false));
    for user in [SCRAM_USER, PLAIN_USER] {
        let out = Psql::new(p.port, user)
            .ssl("require")
            .env("PGCHANNELBINDING", "require")
            .whoami();
        assert_tls_login(&p, &out, user);
        let out = Psql::new(p.port, user)
            .ssl("require")
            .env("PGCHANNELBINDING", "disable")
            .whoami();
        assert_tls_login(&p, &out, user);
    }
    // A wrong password with binding is still a wrong password.
    let out = Psql::new(p.port, SCRAM_USER)
        .password(Some("wrong"))
        .ssl("require")
        .env("PGCHANNELBINDING", "require")
        .whoami();
    assert_psql_fails(
        &p,
        &out,
        "password authentication failed for user \"scram_user\"",
    );
    // No TLS, no binding: libpq refuses on its own.
    let out = Psql::new(p.port, SCRAM_USER)
        .ssl("disable")
        .env("PGCHANNELBINDING", "require")
        .whoami();
    assert_psql_fails(&p, &out, "channel binding required");
    // Plaintext SCRAM under prefer: the plain mechanism only.
    let m = first_reply(p.port, SCRAM_USER, "postgres");
    assert_auth_request(&p, &m, 10, "AuthenticationSASL");
    assert!(
        contains(&m.body, b"SCRAM-SHA-256\0") && !contains(&m.body, b"SCRAM-SHA-256-PLUS"),
        "plaintext offers: {m}{}",
        p.ctx()
    );
    let out = Psql::new(p.port, SCRAM_USER).ssl("disable").whoami();
    assert_plain_login(&p, &out, SCRAM_USER);
}

// ---------------------------------------------------------------------------
// 3. Client certificates
// ---------------------------------------------------------------------------

/// verify-full: a certificate of the test CA whose CN is the user logs in;
/// another CN gets 28000; no certificate and a certificate of another CA
/// fail in the TLS handshake.
#[test]
fn client_tls_verify_full_checks_client_certificates() {
    let c = certs();
    let p = Pooler::start(&client_tls(Cfg::new().auth("plain"), "verify-full", true));

    // psql, the real client.
    let out = Psql::new(p.port, PLAIN_USER)
        .ssl("verify-full")
        .host("localhost")
        .root(&c.ca)
        .cert(&c.plain_user)
        .whoami();
    assert_tls_login(&p, &out, PLAIN_USER);
    let out = Psql::new(p.port, PLAIN_USER)
        .ssl("require")
        .cert(&c.scram_user)
        .whoami();
    assert_psql_fails(
        &p,
        &out,
        "certificate validation (clientcert=verify-full) failed for user \"plain_user\"",
    );
    // No certificate, or one of another CA: refused by a TLS alert.
    let out = Psql::new(p.port, PLAIN_USER).ssl("require").whoami();
    assert_psql_fails(&p, &out, "alert certificate required");
    let out = Psql::new(p.port, PLAIN_USER)
        .ssl("require")
        .cert(&c.plain_user_ca2)
        .whoami();
    assert_psql_fails(&p, &out, "alert unknown ca");
    let out = Psql::new(p.port, PLAIN_USER).ssl("disable").whoami();
    assert_psql_fails(&p, &out, "TLS required");

    // The same with the raw client, for SQLSTATEs and TLS alerts.
    let mut ok = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, Some(&c.plain_user)),
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
    )
    .unwrap_or_else(|e| panic!("login with the right certificate: {e:?}{}", p.ctx()));
    let msgs = ok.query("SELECT current_user").unwrap();
    assert_eq!(Raw::values(&msgs), vec![PLAIN_USER], "{}", show_msgs(&msgs));

    let other_cn = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, Some(&c.scram_user)),
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
    );
    let message = tls_refusal(&p, other_cn, "28000");
    assert!(
        message.starts_with(
            "certificate validation (clientcert=verify-full) failed for user \"plain_user\""
        ),
        "{message}{}",
        p.ctx()
    );

    let no_cert = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, None),
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
    );
    let e = tls_level_refusal(&p, no_cert);
    assert!(
        e.contains("received fatal alert: CertificateRequired"),
        "no certificate: {e}{}",
        p.ctx()
    );

    let wrong_ca = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, Some(&c.plain_user_ca2)),
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
    );
    let e = tls_level_refusal(&p, wrong_ca);
    assert!(
        e.contains("received fatal alert: UnknownCA"),
        "wrong-CA certificate: {e}{}",
        p.ctx()
    );
}

/// verify-ca: the certificate must come from the CA, its CN may be anyone.
#[test]
fn client_tls_verify_ca_accepts_any_cn_of_the_ca() {
    let c = certs();
    let p = Pooler::start(&client_tls(Cfg::new().auth("plain"), "verify-ca", true));
    let mut r = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, Some(&c.scram_user)),
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
    )
    .unwrap_or_else(|e| panic!("verify-ca, CN=scram_user as plain_user: {e:?}{}", p.ctx()));
    let msgs = r.query("SELECT current_user").unwrap();
    assert_eq!(Raw::values(&msgs), vec![PLAIN_USER], "{}", show_msgs(&msgs));
    let e = tls_level_refusal(
        &p,
        TlsRaw::login(
            p.port,
            rustls_client(&c.ca, Some(&c.plain_user_ca2)),
            PLAIN_USER,
            "postgres",
            Some(PLAIN_PW),
        ),
    );
    assert!(
        e.contains("received fatal alert: UnknownCA"),
        "wrong-CA certificate: {e}{}",
        p.ctx()
    );
}

// ---------------------------------------------------------------------------
// 4. auth_type = "hba"
// ---------------------------------------------------------------------------

struct HbaSetup {
    p: Pooler,
    hba_path: PathBuf,
    _dir: TempDir,
}

fn hba_pooler(body: &str, cfg: Cfg) -> HbaSetup {
    let dir = TempDir::new("hba");
    let hba_path = dir.path().join("pg_hba.conf");
    fs::write(&hba_path, body).unwrap();
    let cfg = cfg.auth("hba").set("hba_file", path_str(&hba_path));
    let p = Pooler::start(&cfg);
    HbaSetup {
        p,
        hba_path,
        _dir: dir,
    }
}

/// Every method, first match wins, database and user lists, address
/// mismatch, reject, hostssl/hostnossl against plaintext and TLS, local.
#[test]
fn hba_methods_and_connection_types() {
    let c = certs();
    let cl = cluster();
    let pw_user = cl.new_role("hba_pw");
    let nossl_user = cl.new_role("hba_nossl");
    let body = format!(
        "# pooler hba for the integration tests\n\
         local     all             trust_user                     trust\n\
         hostssl   all             plain_user      127.0.0.1/32   cert\n\
         host      all             trust_user      127.0.0.1/32   trust\n\
         host      all             md5_user        127.0.0.1/32   md5\n\
         host      app             scram_user      127.0.0.1/32   md5\n\
         host      all             scram_user      127.0.0.1/32   scram-sha-256\n\
         host      \"postgres\",app \"{pw_user}\"   127.0.0.1/32   password\n\
         hostnossl all             {nossl_user}    127.0.0.1/32   password\n\
         host      all             rej_user        127.0.0.1/32   reject\n\
         host      all             far_user        10.0.0.0/8     trust\n"
    );
    let cfg = client_tls(Cfg::new(), "prefer", true)
        .user(&pw_user, &pw_user)
        .user(&nossl_user, &nossl_user)
        .user("rej_user", "rej_pw")
        .user("far_user", "far_pw");
    let h = hba_pooler(&body, cfg);
    let p = &h.p;

    // The auth request each line asks for.
    let m = first_reply(p.port, TRUST_USER, "postgres");
    assert_auth_request(p, &m, 0, "AuthenticationOk (trust)");
    let m = first_reply(p.port, MD5_USER, "postgres");
    assert_auth_request(p, &m, 5, "AuthenticationMD5Password");
    let m = first_reply(p.port, SCRAM_USER, "postgres");
    assert_auth_request(p, &m, 10, "AuthenticationSASL (scram-sha-256 line)");
    // md5 on the line, a SCRAM verifier stored: SCRAM, as PostgreSQL does.
    let m = first_reply(p.port, SCRAM_USER, "app");
    assert_auth_request(p, &m, 10, "AuthenticationSASL (md5 line, SCRAM user)");
    let m = first_reply(p.port, &pw_user, "app");
    assert_auth_request(p, &m, 3, "AuthenticationCleartextPassword");
    let m = first_reply(p.port, &nossl_user, "postgres");
    assert_auth_request(p, &m, 3, "AuthenticationCleartextPassword (hostnossl)");

    // Refusals.
    let m = first_reply(p.port, "rej_user", "postgres");
    assert_error(
        p,
        &m,
        "28000",
        "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"rej_user\", \
         database \"postgres\", no encryption",
    );
    let m = first_reply(p.port, "far_user", "postgres");
    assert_error(
        p,
        &m,
        "28000",
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"far_user\", \
         database \"postgres\", no encryption",
    );
    // The database list: pw_user has no line for bench.
    let m = first_reply(p.port, &pw_user, "bench");
    assert_error(
        p,
        &m,
        "28000",
        &format!(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"{pw_user}\", \
             database \"bench\", no encryption"
        ),
    );
    // hostssl only: plaintext finds no line.
    let m = first_reply(p.port, PLAIN_USER, "postgres");
    assert_error(
        p,
        &m,
        "28000",
        "no pg_hba.conf entry for host \"127.0.0.1\", user \"plain_user\", \
         database \"postgres\", no encryption",
    );
    // hostnossl only: TLS finds no line.
    let r = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, None),
        &nossl_user,
        "postgres",
        Some(&nossl_user),
    );
    let message = tls_refusal(p, r, "28000");
    assert_eq!(
        message,
        format!(
            "no pg_hba.conf entry for host \"127.0.0.1\", user \"{nossl_user}\", \
             database \"postgres\", SSL encryption"
        ),
        "{}",
        p.ctx()
    );

    // Real logins through libpq.
    let out = Psql::new(p.port, TRUST_USER).ssl("disable").whoami();
    assert_plain_login(p, &out, TRUST_USER);
    let out = Psql::new(p.port, MD5_USER).ssl("disable").whoami();
    assert_plain_login(p, &out, MD5_USER);
    let out = Psql::new(p.port, SCRAM_USER).ssl("disable").whoami();
    assert_plain_login(p, &out, SCRAM_USER);
    let out = Psql::new(p.port, SCRAM_USER)
        .db("app")
        .ssl("disable")
        .whoami();
    assert_plain_login(p, &out, SCRAM_USER);
    let out = Psql::new(p.port, SCRAM_USER)
        .db("app")
        .ssl("require")
        .env("PGCHANNELBINDING", "require")
        .whoami();
    assert_tls_login(p, &out, SCRAM_USER);
    let out = Psql::new(p.port, &pw_user)
        .password(Some(&pw_user))
        .db("app")
        .ssl("disable")
        .whoami();
    assert_plain_login(p, &out, &pw_user);
    let out = Psql::new(p.port, &pw_user)
        .password(Some("wrong"))
        .ssl("disable")
        .whoami();
    assert_psql_fails(
        p,
        &out,
        &format!("password authentication failed for user \"{pw_user}\""),
    );
    let out = Psql::new(p.port, &nossl_user)
        .password(Some(&nossl_user))
        .ssl("disable")
        .whoami();
    assert_plain_login(p, &out, &nossl_user);
    let out = Psql::new(p.port, "rej_user")
        .password(Some("rej_pw"))
        .ssl("disable")
        .whoami();
    assert_psql_fails(p, &out, "pg_hba.conf rejects connection");

    // cert: the certificate's CN is the user, no password at all.
    let out = Psql::new(p.port, PLAIN_USER)
        .password(None)
        .ssl("verify-full")
        .host("localhost")
        .root(&c.ca)
        .cert(&c.plain_user)
        .whoami();
    assert_tls_login(p, &out, PLAIN_USER);
    let r = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, Some(&c.scram_user)),
        PLAIN_USER,
        "postgres",
        None,
    );
    let message = tls_refusal(p, r, "28000");
    assert_eq!(
        message,
        "certificate authentication failed for user \"plain_user\"",
        "{}",
        p.ctx()
    );
    let r = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, None),
        PLAIN_USER,
        "postgres",
        None,
    );
    tls_refusal(p, r, "28000");

    // local: the unix socket matches local lines only.
    let out = psql_unix(
        &p.socket_dir,
        p.port,
        TRUST_USER,
        "postgres",
        None,
        "SELECT current_user",
    );
    assert_eq!(ok_lines(p, &out), vec![TRUST_USER.to_string()]);
    let out = psql_unix(
        &p.socket_dir,
        p.port,
        MD5_USER,
        "postgres",
        Some(MD5_PW),
        "SELECT current_user",
    );
    assert_psql_fails(
        p,
        &out,
        "no pg_hba.conf entry for host \"[local]\", user \"md5_user\", database \"postgres\"",
    );
}

/// SIGHUP applies a changed hba file to new logins; connected clients stay;
/// a file that does not parse is logged and the old rules stay.
#[test]
fn hba_reload_applies_new_rules_and_keeps_old_ones_on_error() {
    let h = hba_pooler(
        "host all trust_user 127.0.0.1/32 trust\nhost all md5_user 127.0.0.1/32 md5\n",
        Cfg::new(),
    );
    let p = &h.p;
    let mut held = p.connect(TRUST_USER, None, "postgres");
    assert_eq!(p.one(&mut held, "SELECT current_user"), TRUST_USER);

    replace_file(
        &h.hba_path,
        b"host all trust_user 127.0.0.1/32 reject\nhost all md5_user 127.0.0.1/32 md5\n",
    );
    p.reload();
    let rejected = poll(Duration::from_secs(5), || {
        let m = first_reply(p.port, TRUST_USER, "postgres");
        (m.tag == b'E').then_some(m)
    })
    .unwrap_or_else(|| panic!("the reject line did not apply after SIGHUP{}", p.ctx()));
    assert_eq!(rejected.sqlstate().as_deref(), Some("28000"), "{rejected}");
    assert!(
        rejected.fields()[&b'M'].starts_with("pg_hba.conf rejects connection"),
        "{rejected}{}",
        p.ctx()
    );
    assert_eq!(
        p.one(&mut held, "SELECT 'still here'"),
        "still here",
        "a connected client must survive the reload"
    );

    // Line 3 does not parse: the reject rule stays, the file is named.
    let offset = p.log_len();
    replace_file(
        &h.hba_path,
        b"host all trust_user 127.0.0.1/32 trust\n\
          host all md5_user 127.0.0.1/32 md5\n\
          host all all 127.0.0.1/32 no-such-method\n",
    );
    p.reload();
    let where_ = format!("{}:3", h.hba_path.display());
    let line = poll(Duration::from_secs(5), || {
        p.log_since(offset)
            .lines()
            .find(|l| l.contains(&where_))
            .map(String::from)
    })
    .unwrap_or_else(|| panic!("no log line naming {where_} after SIGHUP{}", p.ctx()));
    assert!(
        line.to_lowercase().contains("reload"),
        "the log line should say the reload was refused: {line}{}",
        p.ctx()
    );
    let m = first_reply(p.port, TRUST_USER, "postgres");
    assert_eq!(
        m.sqlstate().as_deref(),
        Some("28000"),
        "after a bad reload the old rules must stay: {m}{}",
        p.ctx()
    );
    let m = first_reply(p.port, MD5_USER, "postgres");
    assert_auth_request(p, &m, 5, "AuthenticationMD5Password");
    assert_eq!(p.one(&mut held, "SELECT 1"), "1");
}

/// An invalid hba file: `--check` exits 1 naming FILE:LINE, and so does a
/// start (which must not come up).
#[test]
fn hba_parse_error_at_startup_names_file_and_line() {
    let dir = TempDir::new("hba_check");
    let hba_path = dir.path().join("pg_hba.conf");
    fs::write(
        &hba_path,
        "# comment\nhost all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/33 trust\n",
    )
    .unwrap();
    let conf = dir.path().join("pooler.conf");
    let cfg = Cfg::new().auth("hba").set("hba_file", path_str(&hba_path));
    fs::write(&conf, cfg.render(free_port(), dir.path())).unwrap();
    let where_ = format!("{}:3", hba_path.display());

    let out = pooler_cmd(&["--check", "-c", path_str(&conf)]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&where_),
        "--check should name {where_}: {}",
        show(&out)
    );

    let mut child = Command::new(pooler_bin())
        .arg("-c")
        .arg(&conf)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the pooler");
    let status = poll(Duration::from_secs(5), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the pooler must not start with an invalid hba file: {}",
        show(&out)
    );
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(
        all.contains(&where_),
        "should name {where_}: {}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------
// 5. Server-facing TLS
// ---------------------------------------------------------------------------

/// `SELECT current_user, ssl` of the backend a query runs on.
const BACKEND_SSL: &str = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// require and prefer: the link to PostgreSQL is TLS, so the hostssl-only
/// role logs in.
#[test]
fn server_tls_require_and_prefer_reach_a_hostssl_only_role() {
    for mode in ["require", "prefer"] {
        let cfg = with_tls(with_tls_only_user(Cfg::new()), &[("server_tls_mode", mode)]);
        let p = Pooler::start(&cfg);
        let out = Psql::new(p.port, TLS_ONLY_USER)
            .ssl("disable")
            .run(&[BACKEND_SSL]);
        assert_eq!(
            ok_lines(&p, &out),
            vec![format!("{TLS_ONLY_USER}|t")],
            "server_tls_mode {mode}: {}{}",
            show(&out),
            p.ctx()
        );
        let out = Psql::new(p.port, PLAIN_USER)
            .ssl("disable")
            .run(&[BACKEND_SSL]);
        assert_eq!(
            ok_lines(&p, &out),
            vec![format!("{PLAIN_USER}|t")],
            "server_tls_mode {mode}: {}{}",
            show(&out),
            p.ctx()
        );
    }
}

/// disable: PostgreSQL's own 28000 rejection reaches the client.
#[test]
fn server_tls_disable_surfaces_the_servers_rejection() {
    let p = Pooler::start(&with_tls_only_user(Cfg::new().auth("plain")));
    let (err, took) = error_of_login_or_query(
        p.port,
        TLS_ONLY_USER,
        Some(TLS_ONLY_PW),
        "postgres",
        "SELECT 1",
    );
    let m = err.unwrap_or_else(|e| panic!("{e}{}", p.ctx()));
    assert_eq!(m.sqlstate().as_deref(), Some("28000"), "{m}{}", p.ctx());
    assert_eq!(
        m.fields().get(&b'M').map(String::as_str),
        Some(
            "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"tls_only\", \
             database \"postgres\", no encryption"
        ),
        "{m}{}",
        p.ctx()
    );
    assert!(took < Duration::from_secs(5), "took {took:?}{}", p.ctx());
    let out = Psql::new(p.port, TLS_ONLY_USER)
        .ssl("disable")
        .run(&["SELECT 1"]);
    assert_psql_fails(&p, &out, "pg_hba.conf rejects connection");
    // Without TLS, plain_user is plaintext towards PostgreSQL.
    let out = Psql::new(p.port, PLAIN_USER)
        .ssl("disable")
        .run(&[BACKEND_SSL]);
    assert_eq!(ok_lines(&p, &out), vec![format!("{PLAIN_USER}|f")]);
}

/// verify-ca and verify-full with the test CA: host 127.0.0.1 (SAN IP) and
/// localhost (SAN DNS) both verify.
#[test]
fn server_tls_verify_modes_with_the_right_ca() {
    let c = certs();
    for mode in ["verify-ca", "verify-full"] {
        let cfg = with_tls(
            with_tls_only_user(Cfg::new()).db_at(
                "by_name",
                "localhost",
                cluster().port,
                "postgres",
                "",
            ),
            &[
                ("server_tls_mode", mode),
                ("server_tls_ca_file", path_str(&c.ca)),
            ],
        );
        let p = Pooler::start(&cfg);
        for db in ["postgres", "by_name"] {
            let out = Psql::new(p.port, TLS_ONLY_USER)
                .db(db)
                .ssl("disable")
                .run(&[BACKEND_SSL]);
            assert_eq!(
                ok_lines(&p, &out),
                vec![format!("{TLS_ONLY_USER}|t")],
                "server_tls_mode {mode}, database {db}: {}{}",
                show(&out),
                p.ctx()
            );
        }
    }
}

/// verify-ca and verify-full against a CA that did not sign PostgreSQL's
/// certificate: a prompt connection failure naming the certificate.
#[test]
fn server_tls_with_a_wrong_ca_fails_clearly() {
    let c = certs();
    for mode in ["verify-ca", "verify-full"] {
        let cfg = with_tls(
            Cfg::new().auth("plain"),
            &[
                ("server_tls_mode", mode),
                ("server_tls_ca_file", path_str(&c.ca2)),
            ],
        );
        let p = Pooler::start(&cfg);
        let (err, took) =
            error_of_login_or_query(p.port, PLAIN_USER, Some(PLAIN_PW), "postgres", "SELECT 1");
        let m = err.unwrap_or_else(|e| panic!("server_tls_mode {mode}: {e}{}", p.ctx()));
        let code = m.sqlstate().unwrap_or_default();
        assert!(
            code.starts_with("08"),
            "server_tls_mode {mode}: expected a connection exception, got {m}{}",
            p.ctx()
        );
        let message = m.fields().get(&b'M').cloned().unwrap_or_default();
        assert!(
            message.to_lowercase().contains("certificate"),
            "server_tls_mode {mode}: the message should mention the certificate: {m}{}",
            p.ctx()
        );
        assert!(
            took < Duration::from_secs(8),
            "server_tls_mode {mode}: took {took:?}{}",
            p.ctx()
        );
        let out = Psql::new(p.port, PLAIN_USER)
            .ssl("disable")
            .run(&["SELECT 1"]);
        assert_psql_fails(&p, &out, "certificate");
    }
}

/// A server that answers 'N' to SSLRequest under server_tls_mode require: a
/// clear error for the waiting client, not a hang nor a plaintext login.
#[test]
fn server_tls_require_against_a_server_without_tls() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut req = [0u8; 8];
                if s.read_exact(&mut req).is_ok() && req[..] == msg::ssl_request()[..] {
                    let _ = s.write_all(b"N");
                }
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    let cfg = with_tls(
        Cfg::new()
            .auth("plain")
            .db_at("no_tls", "127.0.0.1", port, "postgres", ""),
        &[("server_tls_mode", "require")],
    );
    let p = Pooler::start(&cfg);
    let (err, took) =
        error_of_login_or_query(p.port, PLAIN_USER, Some(PLAIN_PW), "no_tls", "SELECT 1");
    let m = err.unwrap_or_else(|e| panic!("{e}{}", p.ctx()));
    let code = m.sqlstate().unwrap_or_default();
    assert!(code.starts_with("08"), "{m}{}", p.ctx());
    let message = m.fields().get(&b'M').cloned().unwrap_or_default();
    assert!(message.contains("does not support TLS"), "{m}{}", p.ctx());
    assert!(took < Duration::from_secs(8), "took {took:?}{}", p.ctx());
}

/// server_tls_cert_file/key_file: the pooler presents a client certificate
/// to PostgreSQL, whose hba asks for `cert` for tls_cert; without it the
/// server refuses.
#[test]
fn server_tls_client_certificate_for_cert_auth() {
    let c = certs();
    let user_cfg = Cfg::new().user(TLS_CERT_USER, "tls_cert_pw");
    let cfg = with_tls(
        user_cfg.clone(),
        &[
            ("server_tls_mode", "verify-full"),
            ("server_tls_ca_file", path_str(&c.ca)),
            ("server_tls_cert_file", path_str(&c.tls_cert.crt)),
            ("server_tls_key_file", path_str(&c.tls_cert.key)),
        ],
    );
    let p = Pooler::start(&cfg);
    let out = Psql::new(p.port, TLS_CERT_USER)
        .password(Some("tls_cert_pw"))
        .ssl("disable")
        .run(&[
            "SELECT current_user, ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ]);
    assert_eq!(
        ok_lines(&p, &out),
        vec![format!("{TLS_CERT_USER}|t|/CN={TLS_CERT_USER}")],
        "{}{}",
        show(&out),
        p.ctx()
    );
    drop(p);

    let cfg = with_tls(
        user_cfg.auth("plain"),
        &[
            ("server_tls_mode", "verify-full"),
            ("server_tls_ca_file", path_str(&c.ca)),
        ],
    );
    let p = Pooler::start(&cfg);
    let (err, _) = error_of_login_or_query(
        p.port,
        TLS_CERT_USER,
        Some("tls_cert_pw"),
        "postgres",
        "SELECT 1",
    );
    let m = err.unwrap_or_else(|e| panic!("{e}{}", p.ctx()));
    assert_error(
        &p,
        &m,
        "28000",
        "connection requires a valid client certificate",
    );
}

// ---------------------------------------------------------------------------
// 6. Reload of the client-facing certificate
// ---------------------------------------------------------------------------

/// SIGHUP picks up new certificate and key files: new clients see the new
/// certificate (verify-ca with the second CA passes, with the first fails),
/// and a TLS client connected before keeps working.
#[test]
fn client_tls_reload_picks_up_a_new_certificate() {
    let c = certs();
    let dir = TempDir::new("tls_reload");
    let crt = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    fs::copy(&c.server.crt, &crt).unwrap();
    fs::copy(&c.server.key, &key).unwrap();
    let cfg = with_tls(
        Cfg::new().auth("plain"),
        &[
            ("client_tls_mode", "require"),
            ("client_tls_cert_file", path_str(&crt)),
            ("client_tls_key_file", path_str(&key)),
        ],
    );
    let p = Pooler::start(&cfg);

    let mut held = TlsRaw::login(
        p.port,
        rustls_client(&c.ca, None),
        PLAIN_USER,
        "postgres",
        Some(PLAIN_PW),
    )
    .unwrap_or_else(|e| panic!("TLS login before the reload: {e:?}{}", p.ctx()));
    let msgs = held.query("SELECT 1").unwrap();
    assert_eq!(Raw::values(&msgs), vec!["1"], "{}", show_msgs(&msgs));
    let out = Psql::new(p.port, PLAIN_USER)
        .ssl("verify-ca")
        .root(&c.ca)
        .whoami();
    assert_tls_login(&p, &out, PLAIN_USER);

    replace_file(&crt, &fs::read(&c.server2.crt).unwrap());
    replace_file(&key, &fs::read(&c.server2.key).unwrap());
    p.reload();
    let new_ca = Psql::new(p.port, PLAIN_USER).ssl("verify-ca").root(&c.ca2);
    let ok = poll(Duration::from_secs(5), || {
        let out = new_ca.whoami();
        out.status.success().then_some(out)
    });
    let out =
        ok.unwrap_or_else(|| panic!("the new certificate was not served after SIGHUP{}", p.ctx()));
    assert_tls_login(&p, &out, PLAIN_USER);
    let out = Psql::new(p.port, PLAIN_USER)
        .ssl("verify-ca")
        .root(&c.ca)
        .whoami();
    assert_psql_fails(&p, &out, "certificate verify failed");

    let msgs = held
        .query("SELECT 'still connected'")
        .unwrap_or_else(|e| panic!("the TLS client connected before the reload: {e}{}", p.ctx()));
    assert_eq!(
        Raw::values(&msgs),
        vec!["still connected"],
        "{}{}",
        show_msgs(&msgs),
        p.ctx()
    );
}

// ---------------------------------------------------------------------------
// 7. Throughput sanity
// ---------------------------------------------------------------------------

/// pgbench -S over sslmode=require: exit 0, no failed transactions. The
/// same run without TLS for comparison (TPS of both are printed).
#[test]
fn pgbench_select_only_over_tls() {
    let cfg = client_tls(Cfg::new().set("log_level", "info"), "prefer", false);
    let p = Pooler::start(&cfg);
    let args = ["-n", "-S", "-T", "3", "-c", "8", "-j", "2", "bench"];
    let tls = pgbench_ssl(p.port, "require", &args);
    assert!(tls.status.success(), "{}{}", show(&tls), p.ctx());
    assert!(
        text(&tls.stdout).contains("number of failed transactions: 0 "),
        "{}{}",
        show(&tls),
        p.ctx()
    );
    let plain = pgbench_ssl(p.port, "disable", &args);
    assert!(plain.status.success(), "{}{}", show(&plain), p.ctx());
    let (tls_tps, plain_tps) = (tps_of(&tls), tps_of(&plain));
    eprintln!(
        "pgbench -S -c 8 -j 2 through the pooler: TLS {tls_tps:?} tps, plaintext {plain_tps:?} tps"
    );
    assert!(
        tls_tps.is_some_and(|t| t > 0.0),
        "no tps over TLS: {}",
        show(&tls)
    );
}
