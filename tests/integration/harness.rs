//! Shared fixtures for the integration tests: one throwaway PostgreSQL 15
//! cluster per test process, a `pooler` child process per test, and small
//! clients (psql, pgbench, the `postgres` crate, and a raw protocol client
//! for what the drivers hide: auth requests, SSLRequest, CancelRequest,
//! named statements with chosen names).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use postgres::{Client, NoTls};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const ROOT_PREFIX: &str = "pooler-it-";

/// The standard roles and their passwords, created at cluster start.
pub const SCRAM_USER: &str = "scram_user";
pub const SCRAM_PW: &str = "scram_pw";
pub const MD5_USER: &str = "md5_user";
pub const MD5_PW: &str = "md5_pw";
pub const PLAIN_USER: &str = "plain_user";
pub const PLAIN_PW: &str = "plain_pw";
pub const TRUST_USER: &str = "trust_user";
/// Logs in to PostgreSQL over TLS only (hostssl md5, host reject).
pub const TLS_ONLY_USER: &str = "tls_only";
pub const TLS_ONLY_PW: &str = "tls_only";
/// Logs in to PostgreSQL over TLS with a client certificate only (hostssl cert).
pub const TLS_CERT_USER: &str = "tls_cert";

/// The workhorse login of tests that are not about authentication: a plain
/// password in the pooler's config, SCRAM on both sides of the pooler.
pub const USER: &str = PLAIN_USER;
pub const PW: &str = PLAIN_PW;

pub fn password_of(user: &str) -> Option<&'static str> {
    match user {
        SCRAM_USER => Some(SCRAM_PW),
        MD5_USER => Some(MD5_PW),
        PLAIN_USER => Some(PLAIN_PW),
        TRUST_USER => None,
        TLS_ONLY_USER => Some(TLS_ONLY_PW),
        _ => None,
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique within this test process, usable as an SQL identifier.
pub fn unique(prefix: &str) -> String {
    format!("{}_{}", prefix, COUNTER.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port on 127.0.0.1 never handed out before in this process, so
/// that parallel tests do not race each other for the same port.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        // The IPv6 tests bind the same port on ::1 too (where there is one).
        let v6_free = !ipv6_available() || TcpListener::bind(("::1", port)).is_ok();
        if v6_free && set.insert(port) {
            return port;
        }
    }
}

// ---------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------

pub struct PgCluster {
    pub port: u16,
    pub root: PathBuf,
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    /// `rolpassword` of scram_user as PostgreSQL stored it.
    pub scram_verifier: String,
    /// `rolpassword` of md5_user ("md5" + hex).
    pub md5_hash: String,
    /// The cluster's default TimeZone, what a client that set none sees.
    pub timezone: String,
}

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static CLUSTER_ROOT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();

/// The one PostgreSQL cluster of this test process, started on first use.
pub fn cluster() -> &'static PgCluster {
    match CLUSTER.get_or_init(start_cluster) {
        Ok(c) => c,
        Err(e) => panic!("the test cluster did not start: {e}"),
    }
}

fn pg_bin(name: &str) -> String {
    format!("{PG_BIN}/{name}")
}

fn is_root() -> bool {
    // SAFETY: no arguments, no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// initdb and pg_ctl refuse root: as root, run them as `postgres`; as
/// anyone else, run them as ourselves.
fn as_postgres(args: &[&str]) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).args(args);
        c
    } else {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    };
    c.stdin(Stdio::null());
    c
}

fn run_as_postgres(args: &[&str], cwd: &Path) -> Result<Output, String> {
    let out = as_postgres(args)
        .current_dir(cwd)
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}\nstdout: {}\nstderr: {}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("id: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("id {flag} postgres: {e}"))
    };
    Ok((id("-u")?, id("-g")?))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(format!(
            "chown {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A killed earlier run (Ctrl-C, SIGKILL) leaves its cluster running and its
/// directory behind: stop and remove those whose test process is gone.
fn remove_stale_roots() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(ROOT_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 || pid_alive(pid) {
            continue;
        }
        let data = e.path().join("pg").join("data");
        if data.join("postmaster.pid").exists() {
            let _ = run_as_postgres(
                &[
                    &pg_bin("pg_ctl"),
                    "stop",
                    "-m",
                    "immediate",
                    "-D",
                    data.to_str().unwrap(),
                ],
                Path::new("/"),
            );
        }
        let _ = fs::remove_dir_all(e.path());
    }
}

extern "C" fn stop_cluster_at_exit() {
    if let Some((root, data)) = CLUSTER_ROOT.get() {
        let _ = as_postgres(&[
            &pg_bin("pg_ctl"),
            "stop",
            "-m",
            "immediate",
            "-D",
            data.to_str().unwrap(),
        ])
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
        let _ = fs::remove_dir_all(root);
    }
}

/// Root of everything this process creates on disk.
pub fn test_root() -> &'static Path {
    &CLUSTER_ROOT
        .get_or_init(|| {
            let root = std::env::temp_dir().join(format!("{ROOT_PREFIX}{}", std::process::id()));
            let data = root.join("pg").join("data");
            (root, data)
        })
        .0
}

fn start_cluster() -> Result<PgCluster, String> {
    remove_stale_roots();
    let root = test_root().to_path_buf();
    // Same pid as a dead run whose dir survived the stale sweep: start clean.
    let _ = fs::remove_dir_all(&root);
    let pg = root.join("pg");
    let data = pg.join("data");
    let socket_dir = pg.join("sock");
    let ids = if is_root() {
        Some(postgres_ids()?)
    } else {
        None
    };
    for d in [&root, &pg, &socket_dir] {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = ids {
            chown(d, uid, gid)?;
        }
    }
    // SAFETY: registering a plain extern "C" fn.
    unsafe { libc::atexit(stop_cluster_at_exit) };
    // After the root was cleaned, before PostgreSQL needs its certificate.
    let certs = match CERTS.get_or_init(|| make_certs(&root.join("certs"))) {
        Ok(c) => c,
        Err(e) => return Err(format!("test certificates: {e}")),
    };

    run_as_postgres(
        &[
            &pg_bin("initdb"),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ],
        &pg,
    )?;

    let port = free_port();
    let conf = format!(
        "\n# integration tests\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\nmax_connections = 200\nfsync = off\n\
         synchronous_commit = off\nfull_page_writes = off\nshared_buffers = '64MB'\n\
         log_connections = off\nlog_min_messages = warning\n\
         ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
         ssl_ca_file = 'root.crt'\n",
        socket_dir.display()
    );
    // The server certificate of the test CA, owned by postgres, key 0600.
    for (from, to, mode) in [
        (&certs.server.crt, "server.crt", 0o644),
        (&certs.server.key, "server.key", 0o600),
        (&certs.ca, "root.crt", 0o644),
    ] {
        let dest = data.join(to);
        fs::copy(from, &dest).map_err(|e| format!("copy {}: {e}", from.display()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = ids {
            chown(&dest, uid, gid)?;
        }
    }
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .map_err(|e| e.to_string())?;
    f.write_all(conf.as_bytes()).map_err(|e| e.to_string())?;
    // tls_only and tls_cert reach PostgreSQL over TLS only: what the
    // server_tls tests need a real server to enforce. Members of pt_scram
    // must log in with SCRAM and members of pt_md5 with md5 (or SCRAM when
    // their password is stored as SCRAM, as PostgreSQL's md5 method does):
    // the passthrough tests' proof that the pooler really logged in as
    // the client's own role.
    let hba = "hostssl all tls_only 127.0.0.1/32 md5\n\
               host all tls_only 127.0.0.1/32 reject\n\
               hostssl all tls_cert 127.0.0.1/32 cert\n\
               host all tls_cert 127.0.0.1/32 reject\n\
               local all postgres trust\n\
               host all trust_user 127.0.0.1/32 trust\n\
               host all trust_user ::1/128 trust\n\
               host all +pt_scram 127.0.0.1/32 scram-sha-256\n\
               host all +pt_md5 127.0.0.1/32 md5\n\
               host all all 127.0.0.1/32 md5\n\
               host all all ::1/128 md5\n";
    fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = ids {
        chown(&data.join("pg_hba.conf"), uid, gid)?;
    }

    let log = pg.join("postgres.log");
    run_as_postgres(
        &[
            &pg_bin("pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
        ],
        &pg,
    )
    .map_err(|e| {
        format!(
            "{e}\npostgres.log:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        )
    })?;

    let c = PgCluster {
        port,
        root: root.clone(),
        data,
        socket_dir,
        scram_verifier: String::new(),
        md5_hash: String::new(),
        timezone: String::new(),
    };
    c.try_sql(
        "postgres",
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE scram_user LOGIN PASSWORD 'scram_pw';
         CREATE ROLE plain_user LOGIN PASSWORD 'plain_pw';
         CREATE ROLE tls_only LOGIN PASSWORD 'tls_only';
         CREATE ROLE tls_cert LOGIN;
         SET password_encryption = 'md5';
         CREATE ROLE md5_user LOGIN PASSWORD 'md5_pw';
         CREATE ROLE trust_user LOGIN;
         CREATE ROLE pt_scram NOLOGIN;
         CREATE ROLE pt_md5 NOLOGIN;
         GRANT ALL ON SCHEMA public TO PUBLIC;",
    )?;
    for db in ["app", "bench"] {
        c.try_sql("postgres", &format!("CREATE DATABASE {db}"))?;
        c.try_sql("postgres", &format!("GRANT ALL ON DATABASE {db} TO PUBLIC"))?;
        c.try_sql(db, "GRANT ALL ON SCHEMA public TO PUBLIC")?;
    }
    let out = Command::new("pgbench")
        .args(["-i", "-s", "1", "-q", "-h"])
        .arg(&c.socket_dir)
        .args(["-p", &port.to_string(), "-U", "postgres", "bench"])
        .env_remove("PGPASSWORD")
        .output()
        .map_err(|e| format!("pgbench -i: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    c.try_sql(
        "bench",
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC",
    )?;
    let scram_verifier = c.try_sql(
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'scram_user'",
    )?;
    let md5_hash = c.try_sql(
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'md5_user'",
    )?;
    let timezone = c.try_sql("postgres", "SHOW TimeZone")?;
    if !scram_verifier.starts_with("SCRAM-SHA-256$") || !md5_hash.starts_with("md5") {
        return Err(format!(
            "unexpected stored passwords: {scram_verifier:?} {md5_hash:?}"
        ));
    }
    Ok(PgCluster {
        scram_verifier,
        md5_hash,
        timezone,
        ..c
    })
}

// ---------------------------------------------------------------------------
// Test certificates
// ---------------------------------------------------------------------------

/// A PEM certificate and its PEM private key (mode 0600).
#[derive(Clone, Debug)]
pub struct CertPair {
    pub crt: PathBuf,
    pub key: PathBuf,
}

/// Certificates made once per test process with the `openssl` CLI (EC P-256,
/// X.509 v3 with the extensions webpki insists on).
#[derive(Debug)]
pub struct Certs {
    pub dir: PathBuf,
    /// The test CA: signs `server`, the client certificates, and serves as
    /// the cluster's ssl_ca_file.
    pub ca: PathBuf,
    /// CN=localhost, SAN DNS:localhost, IP:127.0.0.1; signed by `ca`. The
    /// cluster serves it too.
    pub server: CertPair,
    /// Client certificates signed by `ca`, CN = the role name.
    pub scram_user: CertPair,
    pub plain_user: CertPair,
    pub tls_cert: CertPair,
    /// A second, unrelated CA.
    pub ca2: PathBuf,
    /// Same names as `server`, signed by `ca2`.
    pub server2: CertPair,
    /// CN=plain_user, signed by `ca2`: the "wrong CA" client certificate.
    pub plain_user_ca2: CertPair,
}

static CERTS: OnceLock<Result<Certs, String>> = OnceLock::new();

/// The test certificates (made when the cluster starts).
pub fn certs() -> &'static Certs {
    cluster();
    match CERTS.get() {
        Some(Ok(c)) => c,
        Some(Err(e)) => panic!("test certificates: {e}"),
        None => panic!("the cluster started without certificates"),
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("openssl {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {:?} failed: {}\n{}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn make_certs(dir: &Path) -> Result<Certs, String> {
    fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let exts = [
        (
            "ca.ext",
            "basicConstraints = critical, CA:TRUE\n\
             keyUsage = critical, keyCertSign, cRLSign\n\
             subjectKeyIdentifier = hash\n",
        ),
        (
            "server.ext",
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = DNS:localhost, IP:127.0.0.1\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n",
        ),
        (
            "client.ext",
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = clientAuth\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n",
        ),
    ];
    for (name, body) in exts {
        fs::write(dir.join(name), body).map_err(|e| e.to_string())?;
    }
    let mut serial = 1000u32;
    let key = |name: &str| -> Result<PathBuf, String> {
        let file = format!("{name}.key");
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &file,
            ],
        )?;
        let path = dir.join(&file);
        // libpq refuses a key others can read.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
        Ok(path)
    };
    // Self-signed when `issuer` is None.
    let mut cert = |name: &str,
                    cn: &str,
                    ext: &str,
                    issuer: Option<(&str, &str)>|
     -> Result<CertPair, String> {
        serial += 1;
        let key_path = key(name)?;
        let (csr, crt) = (format!("{name}.csr"), format!("{name}.crt"));
        let subj = format!("/CN={cn}");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &subj,
                "-out",
                &csr,
            ],
        )?;
        let serial_s = serial.to_string();
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-days",
            "3650",
            "-sha256",
            "-set_serial",
            &serial_s,
            "-extfile",
            ext,
            "-out",
            &crt,
        ];
        let own_key = format!("{name}.key");
        match issuer {
            Some((ca_crt, ca_key)) => args.extend(["-CA", ca_crt, "-CAkey", ca_key]),
            None => args.extend(["-signkey", &own_key]),
        }
        openssl(dir, &args)?;
        Ok(CertPair {
            crt: dir.join(crt),
            key: key_path,
        })
    };
    let ca = cert("ca", "pooler test CA", "ca.ext", None)?;
    let ca2 = cert("ca2", "pooler test CA 2", "ca.ext", None)?;
    let by_ca = Some(("ca.crt", "ca.key"));
    let by_ca2 = Some(("ca2.crt", "ca2.key"));
    Ok(Certs {
        dir: dir.to_path_buf(),
        server: cert("server", "localhost", "server.ext", by_ca)?,
        scram_user: cert("scram_user", SCRAM_USER, "client.ext", by_ca)?,
        plain_user: cert("plain_user", PLAIN_USER, "client.ext", by_ca)?,
        tls_cert: cert("tls_cert", TLS_CERT_USER, "client.ext", by_ca)?,
        server2: cert("server2", "localhost", "server.ext", by_ca2)?,
        plain_user_ca2: cert("plain_user_ca2", PLAIN_USER, "client.ext", by_ca2)?,
        ca: ca.crt,
        ca2: ca2.crt,
    })
}

impl PgCluster {
    fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .env_remove("PGPASSWORD")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(sql.as_bytes())?;
                child.wait_with_output()
            })
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql as postgres on {db} failed: {sql}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs SQL as the superuser over the cluster's own unix socket (never
    /// through a pooler) and returns psql's unaligned, tuples-only output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `sql` parsed as one integer.
    pub fn count(&self, db: &str, sql: &str) -> i64 {
        let s = self.sql(db, sql);
        s.parse()
            .unwrap_or_else(|_| panic!("{sql} returned {s:?}, not an integer"))
    }

    /// Backends of `user` currently connected to PostgreSQL.
    pub fn backends_of(&self, user: &str) -> i64 {
        self.count(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}' \
                 AND backend_type = 'client backend'"
            ),
        )
    }

    /// A superuser client connected straight to the cluster.
    pub fn client(&self, db: &str) -> Client {
        postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect(NoTls)
            .expect("superuser connection to the cluster")
    }

    /// A fresh login role with a SCRAM-stored password equal to its name,
    /// for tests that count a pool's backends in pg_stat_activity.
    pub fn new_role(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.sql(
            "postgres",
            &format!(
                "SET password_encryption = 'scram-sha-256';
                 CREATE ROLE {name} LOGIN PASSWORD '{name}'"
            ),
        );
        name
    }

    /// A fresh database everyone may use, for tests that need isolation.
    pub fn new_db(&self, prefix: &str) -> String {
        let name = unique(prefix);
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        self.sql(
            "postgres",
            &format!("GRANT ALL ON DATABASE {name} TO PUBLIC"),
        );
        self.sql(&name, "GRANT ALL ON SCHEMA public TO PUBLIC");
        name
    }

    /// A fresh table in database `postgres`, writable by every role.
    pub fn new_table(&self, prefix: &str, columns: &str) -> String {
        let name = unique(prefix);
        self.sql(
            "postgres",
            &format!("CREATE TABLE {name} ({columns}); GRANT ALL ON {name} TO PUBLIC"),
        );
        name
    }
}

// ---------------------------------------------------------------------------
// Pooler configuration
// ---------------------------------------------------------------------------

/// A TOML value for `Cfg::set`: strings are quoted, numbers and booleans are
/// not. Arrays and tables go through `Cfg::set_raw`.
pub trait TomlValue {
    fn toml(&self) -> String;
}
impl TomlValue for &str {
    fn toml(&self) -> String {
        format!("{:?}", self)
    }
}
impl TomlValue for String {
    fn toml(&self) -> String {
        format!("{:?}", self)
    }
}
impl TomlValue for i64 {
    fn toml(&self) -> String {
        self.to_string()
    }
}
impl TomlValue for i32 {
    fn toml(&self) -> String {
        self.to_string()
    }
}
impl TomlValue for u32 {
    fn toml(&self) -> String {
        self.to_string()
    }
}
impl TomlValue for bool {
    fn toml(&self) -> String {
        self.to_string()
    }
}

/// A pooler.conf under construction. The defaults: listen on 127.0.0.1 and
/// a unix socket in the pooler's own dir, 2 workers, scram-sha-256 client
/// auth, transaction mode, pool size 4, debug logging, databases `postgres`,
/// `app`, `bench` and the standard users. Port and socket dir are filled in
/// by `Pooler::start`.
///
/// The pooler refuses a config whose stored password cannot serve its
/// auth_type, so `render` leaves out the standard users that would be
/// refused: md5_user (an md5 hash) under scram-sha-256, and trust_user (no
/// password) under anything but trust and hba.
#[derive(Clone)]
pub struct Cfg {
    pooler: Vec<(String, String)>,
    databases: Vec<(String, String)>,
    users: Vec<(String, String)>,
    extra: String,
    probe: IpAddr,
    env: Vec<(String, String)>,
}

impl Default for Cfg {
    fn default() -> Self {
        Self::new()
    }
}

impl Cfg {
    pub fn new() -> Cfg {
        let c = cluster();
        let mut cfg = Cfg {
            pooler: Vec::new(),
            databases: Vec::new(),
            users: Vec::new(),
            extra: String::new(),
            probe: IpAddr::V4(Ipv4Addr::LOCALHOST),
            env: Vec::new(),
        };
        cfg = cfg
            .set("listen_addr", "127.0.0.1")
            .set("workers", 2)
            .set("auth_type", "scram-sha-256")
            .set("pool_mode", "transaction")
            .set("default_pool_size", 4)
            .set("log_level", "debug");
        for db in ["postgres", "app", "bench"] {
            cfg = cfg.db(db, db, "");
        }
        cfg.user(SCRAM_USER, &c.scram_verifier)
            .user(MD5_USER, &c.md5_hash)
            .user(PLAIN_USER, PLAIN_PW)
            .user(TRUST_USER, "")
    }

    pub fn session() -> Cfg {
        Cfg::new().mode("session")
    }

    pub fn transaction() -> Cfg {
        Cfg::new().mode("transaction")
    }

    /// Sets (or replaces) a key of `[pooler]`.
    pub fn set(self, key: &str, value: impl TomlValue) -> Cfg {
        self.set_raw(key, &value.toml())
    }

    pub fn set_raw(mut self, key: &str, raw_value: &str) -> Cfg {
        self.pooler.retain(|(k, _)| k != key);
        self.pooler.push((key.to_string(), raw_value.to_string()));
        self
    }

    pub fn mode(self, mode: &str) -> Cfg {
        self.set("pool_mode", mode)
    }

    pub fn pool_size(self, n: u32) -> Cfg {
        self.set("default_pool_size", n)
    }

    pub fn auth(self, auth_type: &str) -> Cfg {
        self.set("auth_type", auth_type)
    }

    /// Adds (or replaces) `[databases.NAME]` pointing at the cluster's
    /// `dbname`; `extra` is more `key = value` lines for that section.
    pub fn db(self, name: &str, dbname: &str, extra: &str) -> Cfg {
        let port = cluster().port;
        self.db_at(name, "127.0.0.1", port, dbname, extra)
    }

    /// Like `db` but pointing anywhere (a silent or closed port).
    pub fn db_at(mut self, name: &str, host: &str, port: u16, dbname: &str, extra: &str) -> Cfg {
        self.databases.retain(|(n, _)| n != name);
        self.databases.push((
            name.to_string(),
            format!("host = {host:?}\nport = {port}\ndbname = {dbname:?}\n{extra}\n"),
        ));
        self
    }

    pub fn without_db(mut self, name: &str) -> Cfg {
        self.databases.retain(|(n, _)| n != name);
        self
    }

    /// Adds (or replaces) `[users.NAME]` with that password (plain, md5
    /// hash or SCRAM verifier).
    pub fn user(self, name: &str, password: &str) -> Cfg {
        self.user_with(name, password, "")
    }

    pub fn user_with(mut self, name: &str, password: &str, extra: &str) -> Cfg {
        self.users.retain(|(n, _)| n != name);
        self.users.push((
            name.to_string(),
            format!("password = {password:?}\n{extra}\n"),
        ));
        self
    }

    pub fn without_user(mut self, name: &str) -> Cfg {
        self.users.retain(|(n, _)| n != name);
        self
    }

    /// Raw TOML appended at the end of the file.
    pub fn extra(mut self, toml: &str) -> Cfg {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// An environment variable for the pooler process.
    pub fn env(mut self, key: &str, value: &str) -> Cfg {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The address `Pooler::start` polls to know the pooler is up; change it
    /// when the config does not listen on 127.0.0.1.
    pub fn probe(mut self, ip: IpAddr) -> Cfg {
        self.probe = ip;
        self
    }

    pub fn render(&self, port: u16, socket_dir: &Path) -> String {
        let mut s = String::from("[pooler]\n");
        s.push_str(&format!("listen_port = {port}\n"));
        s.push_str(&format!(
            "unix_socket_dir = {:?}\n",
            socket_dir.to_str().unwrap()
        ));
        for (k, v) in &self.pooler {
            s.push_str(&format!("{k} = {v}\n"));
        }
        for (name, body) in &self.databases {
            s.push_str(&format!("\n[databases.{name}]\n{body}"));
        }
        let auth = self
            .pooler
            .iter()
            .find(|(k, _)| k == "auth_type")
            .map(|(_, v)| v.trim_matches('"').to_string())
            .unwrap_or_default();
        for (name, body) in &self.users {
            let md5_std = name == MD5_USER && body.contains(&cluster().md5_hash);
            let trust_std = name == TRUST_USER && body.starts_with("password = \"\"\n");
            if (md5_std && auth == "scram-sha-256")
                || (trust_std && auth != "trust" && auth != "hba")
            {
                continue;
            }
            s.push_str(&format!("\n[users.{name}]\n{body}"));
        }
        if !self.extra.is_empty() {
            s.push('\n');
            s.push_str(&self.extra);
        }
        s
    }
}

// ---------------------------------------------------------------------------
// The pooler process
// ---------------------------------------------------------------------------

pub fn pooler_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pooler")
}

/// A temp dir of this process that is removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        // The cluster's start-up empties the test root: let it happen first.
        cluster();
        let p = test_root().join(unique(prefix));
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub struct Pooler {
    pub port: u16,
    /// Holds `pooler.conf`, `pooler.log` and the unix socket.
    pub socket_dir: PathBuf,
    pub conf_path: PathBuf,
    pub log_path: PathBuf,
    child: Child,
    exit: Option<ExitStatus>,
    watchdog: Option<std::sync::mpsc::Sender<()>>,
    _dir: TempDir,
}

/// A test stuck on a hung pooler would hang the whole binary: past this,
/// the pooler is killed so its clients fail and the test reports its log.
const WATCHDOG: Duration = Duration::from_secs(45);

fn start_watchdog(pid: i32, log_path: PathBuf) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(WATCHDOG) {
            if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&log_path) {
                let _ = writeln!(
                    f,
                    "[test harness] watchdog: pooler killed after {WATCHDOG:?}"
                );
            }
            // SAFETY: the owner has not reaped the child (it would have
            // dropped the sender first), so the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    tx
}

impl Pooler {
    /// Writes `cfg` and starts `pooler -c FILE`, returning once the probe
    /// address accepts TCP connections.
    pub fn start(cfg: &Cfg) -> Pooler {
        let mut last_log = String::new();
        // A port picked from the ephemeral range may be grabbed by someone
        // else before the pooler binds it: retry on "address in use" only.
        for _ in 0..3 {
            match Pooler::try_start(cfg, free_port()) {
                Ok(p) => return p,
                Err((log, in_use)) => {
                    if !in_use {
                        panic!("pooler did not start:\n{log}");
                    }
                    last_log = log;
                }
            }
        }
        panic!("pooler did not start (address in use three times):\n{last_log}");
    }

    /// A second pooler on the port of a running one (SO_REUSEPORT), as for a
    /// zero-downtime restart.
    pub fn start_beside(cfg: &Cfg, other: &Pooler) -> Pooler {
        Pooler::try_start(cfg, other.port)
            .unwrap_or_else(|(log, _)| panic!("second pooler did not start:\n{log}"))
    }

    fn try_start(cfg: &Cfg, port: u16) -> Result<Pooler, (String, bool)> {
        cluster();
        let dir = TempDir::new("pooler");
        let conf_path = dir.path().join("pooler.conf");
        let log_path = dir.path().join("pooler.log");
        let rendered = cfg.render(port, dir.path());
        // At the default debug level, the pooler's own trace lines (links, releases) make
        // a failure's log readable; mio's are noise. Load tests ask for less.
        let filter = if rendered.contains("log_level = \"debug\"") {
            "pooler=trace,mio=info"
        } else {
            "info"
        };
        fs::write(&conf_path, rendered).unwrap();
        let log = fs::File::create(&log_path).unwrap();
        let child = Command::new(pooler_bin())
            .arg("-c")
            .arg(&conf_path)
            .env("RUST_LOG", filter)
            .envs(cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn the pooler binary");
        let mut p = Pooler {
            port,
            socket_dir: dir.path().to_path_buf(),
            conf_path,
            watchdog: Some(start_watchdog(child.id() as i32, log_path.clone())),
            log_path,
            child,
            exit: None,
            _dir: dir,
        };
        let addr = SocketAddr::new(cfg.probe, port);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                p.watchdog = None;
                p.exit = Some(status);
                let log = p.log();
                let in_use = log.contains("in use");
                return Err((
                    format!("exited with {status} before listening on {addr}\n{log}"),
                    in_use,
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(p);
            }
            if Instant::now() >= deadline {
                return Err((
                    format!("not listening on {addr} after 10 s\n{}", p.log()),
                    false,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The pooler's resident memory (VmRSS), in kB.
    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.pid())
    }

    /// How many file descriptors the pooler has open.
    pub fn open_fds(&self) -> usize {
        fd_count(self.pid())
    }

    pub fn log(&self) -> String {
        let s = fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        // Keep failure messages readable: the tail is what matters.
        const MAX: usize = 20_000;
        if s.len() > MAX {
            let mut cut = s.len() - MAX;
            while !s.is_char_boundary(cut) {
                cut += 1;
            }
            format!("[... {} bytes cut ...]\n{}", cut, &s[cut..])
        } else {
            s
        }
    }

    /// Length of the log so far, to read only what comes after.
    pub fn log_len(&self) -> usize {
        fs::metadata(&self.log_path)
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    pub fn log_since(&self, offset: usize) -> String {
        let b = fs::read(&self.log_path).unwrap_or_default();
        text(&b[offset.min(b.len())..])
    }

    /// Appended to assertion messages: the pooler's log.
    pub fn ctx(&self) -> String {
        format!(
            "\n----- pooler log ({}) -----\n{}\n----- end of pooler log -----",
            self.log_path.display(),
            self.log()
        )
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    pub fn reload(&self) {
        self.signal(libc::SIGHUP);
    }

    /// Replaces pooler.conf (port and socket dir unchanged); does not reload.
    pub fn rewrite(&self, cfg: &Cfg) {
        self.rewrite_config(&cfg.render(self.port, &self.socket_dir));
    }

    pub fn rewrite_config(&self, body: &str) {
        // Write then rename, so a reload never reads a half-written file.
        let tmp = self.socket_dir.join("pooler.conf.new");
        fs::write(&tmp, body).unwrap();
        fs::rename(&tmp, &self.conf_path).unwrap();
    }

    /// Polls for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        let child = &mut self.child;
        let status = poll(timeout, || child.try_wait().ok().flatten());
        if status.is_some() {
            self.watchdog = None;
        }
        self.exit = status;
        status
    }

    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.watchdog = None;
                self.exit = Some(status);
                false
            }
            Err(_) => false,
        }
    }

    pub fn unix_socket(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// A `postgres::Config` for this pooler over TCP.
    pub fn config(&self, user: &str, password: Option<&str>, db: &str) -> postgres::Config {
        pg_config(self.port, user, password, db)
    }

    pub fn connect(&self, user: &str, password: Option<&str>, db: &str) -> Client {
        self.try_connect(user, password, db)
            .unwrap_or_else(|e| panic!("connect as {user} to {db}: {e:?}{}", self.ctx()))
    }

    pub fn try_connect(
        &self,
        user: &str,
        password: Option<&str>,
        db: &str,
    ) -> Result<Client, postgres::Error> {
        connect(self.port, user, password, db)
    }

    /// `one` that fails with this pooler's log.
    #[track_caller]
    pub fn one(&self, c: &mut Client, sql: &str) -> String {
        match try_one(c, sql) {
            Ok(v) => v,
            Err(e) => panic!("{sql}: {e:?}{}", self.ctx()),
        }
    }

    /// The PostgreSQL backend pid a query of `c` runs on now.
    #[track_caller]
    pub fn backend(&self, c: &mut Client) -> i32 {
        self.one(c, "SELECT pg_backend_pid()").parse().unwrap()
    }

    /// The workhorse client: `USER` on database `postgres`.
    pub fn client(&self) -> Client {
        self.connect(USER, Some(PW), "postgres")
    }

    pub fn psql(&self, user: &str, db: &str, sql: &str) -> Output {
        psql(self.port, user, db, password_of(user), sql)
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.port)
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        self.watchdog = None;
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Every test's log, whatever it tested, is checked for the standard secrets.
        if !std::thread::panicking() {
            let log = fs::read(&self.log_path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if let Some(label) = leaked_secret(&log) {
                panic!("{label} appears in the pooler's log{}", self.ctx());
            }
        }
    }
}

/// VmRSS of `pid` in kB (0 once the process is gone).
pub fn rss_kb(pid: i32) -> u64 {
    proc_status_kb(pid, "VmRSS:")
}

/// A kB figure from /proc/PID/status (VmRSS:, VmHWM:, ...), 0 when unreadable.
pub fn proc_status_kb(pid: i32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Which standard secret, if any, `text` contains: the roles' passwords, the md5 hash
/// and the SCRAM verifier's keys (a logged proof or key would show one of those or be
/// derived afresh per login; the static ones are what a careless log line would print).
pub fn leaked_secret(text: &str) -> Option<&'static str> {
    let c = cluster();
    let scram_keys: Vec<&str> = c
        .scram_verifier
        .rsplit('$')
        .next()
        .map(|keys| keys.split(':').collect())
        .unwrap_or_default();
    let secrets = [
        ("SCRAM_PW", SCRAM_PW),
        ("MD5_PW", MD5_PW),
        ("PLAIN_PW", PLAIN_PW),
        ("the md5 hash", c.md5_hash.as_str()),
        (
            "the SCRAM StoredKey",
            scram_keys.first().copied().unwrap_or(""),
        ),
        (
            "the SCRAM ServerKey",
            scram_keys.get(1).copied().unwrap_or(""),
        ),
    ];
    secrets
        .into_iter()
        .find(|(_, secret)| secret.len() >= 6 && text.contains(secret))
        .map(|(label, _)| label)
}

/// Runs the pooler binary with these arguments to completion.
pub fn pooler_cmd(args: &[&str]) -> Output {
    Command::new(pooler_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run the pooler binary")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// psql's stdout, stderr and status in one string for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

fn psql_cmd(host: &str, port: u16, user: &str, db: &str, password: Option<&str>) -> Command {
    let mut c = Command::new("psql");
    c.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", host])
        .args(["-p", &port.to_string(), "-U", user, "-d", db]);
    for var in [
        "PGPASSWORD",
        "PGOPTIONS",
        "PGAPPNAME",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGSERVICE",
    ] {
        c.env_remove(var);
    }
    // SSLRequest and GSSENCRequest have tests of their own; keep the rest
    // of the suite on the plain startup path.
    c.env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGPASSFILE", "/nonexistent");
    match password {
        Some(pw) => {
            c.env("PGPASSWORD", pw);
        }
        None => {
            c.arg("-w");
        }
    }
    c
}

/// `psql -c SQL` through TCP on 127.0.0.1.
pub fn psql(port: u16, user: &str, db: &str, password: Option<&str>, sql: &str) -> Output {
    psql_with(port, user, db, password, sql, &[])
}

/// `psql -c SQL` with extra environment (PGOPTIONS, PGAPPNAME, PGSSLMODE...).
pub fn psql_with(
    port: u16,
    user: &str,
    db: &str,
    password: Option<&str>,
    sql: &str,
    env: &[(&str, &str)],
) -> Output {
    let mut c = psql_cmd("127.0.0.1", port, user, db, password);
    c.envs(env.iter().copied()).arg("-c").arg(sql);
    c.stdin(Stdio::null()).output().expect("run psql")
}

/// `psql -h HOST ...` for a host other than 127.0.0.1 (`::1`, a socket dir).
pub fn psql_host(
    host: &str,
    port: u16,
    user: &str,
    db: &str,
    password: Option<&str>,
    sql: &str,
) -> Output {
    let mut c = psql_cmd(host, port, user, db, password);
    c.arg("-c").arg(sql);
    c.stdin(Stdio::null()).output().expect("run psql")
}

/// psql through the pooler's unix socket directory.
pub fn psql_unix(
    socket_dir: &Path,
    port: u16,
    user: &str,
    db: &str,
    password: Option<&str>,
    sql: &str,
) -> Output {
    psql_host(socket_dir.to_str().unwrap(), port, user, db, password, sql)
}

/// `psql -c SQL` with `stdin` fed to it (COPY FROM STDIN).
pub fn psql_stdin(
    port: u16,
    user: &str,
    db: &str,
    password: Option<&str>,
    sql: &str,
    stdin: &[u8],
) -> Output {
    let mut c = psql_cmd("127.0.0.1", port, user, db, password);
    c.arg("-c").arg(sql);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for psql");
    let _ = writer.join();
    out
}

pub fn pg_config(port: u16, user: &str, password: Option<&str>, db: &str) -> postgres::Config {
    let mut c = postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10));
    if let Some(pw) = password {
        c.password(pw);
    }
    c
}

pub fn connect(
    port: u16,
    user: &str,
    password: Option<&str>,
    db: &str,
) -> Result<Client, postgres::Error> {
    pg_config(port, user, password, db).connect(NoTls)
}

/// pgbench against 127.0.0.1:port as `user` (standard password looked up).
pub fn pgbench(port: u16, user: &str, args: &[&str]) -> Output {
    pgbench_as(port, user, password_of(user), args)
}

pub fn pgbench_as(port: u16, user: &str, password: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new("pgbench");
    c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(args)
        .env_remove("PGOPTIONS")
        .env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable")
        .env("PGPASSFILE", "/nonexistent");
    match password {
        Some(pw) => c.env("PGPASSWORD", pw),
        None => c.env_remove("PGPASSWORD"),
    };
    c.stdin(Stdio::null()).output().expect("run pgbench")
}

/// The SQLSTATE of a postgres::Error, if the server (pooler) sent one.
pub fn sqlstate(e: &postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// Asserts that `r` failed with an ErrorResponse carrying `code`.
#[track_caller]
pub fn assert_sqlstate<T>(r: &Result<T, postgres::Error>, code: &str, ctx: &str) {
    match r {
        Ok(_) => panic!("expected SQLSTATE {code}, got success{ctx}"),
        Err(e) => assert_eq!(
            sqlstate(e).as_deref(),
            Some(code),
            "expected SQLSTATE {code}, got {e:?}{ctx}"
        ),
    }
}

/// The message of the ErrorResponse behind `e`, if any.
pub fn db_message(e: &postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.message().to_string())
}

/// Runs a query expected to return one row of one column, as text.
#[track_caller]
pub fn one(c: &mut Client, sql: &str) -> String {
    let msgs = c
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    for m in msgs {
        if let postgres::SimpleQueryMessage::Row(r) = m {
            return r.get(0).unwrap_or("").to_string();
        }
    }
    panic!("{sql} returned no row")
}

/// Like `one` but returns the error instead of panicking.
pub fn try_one(c: &mut Client, sql: &str) -> Result<String, postgres::Error> {
    for m in c.simple_query(sql)? {
        if let postgres::SimpleQueryMessage::Row(r) = m {
            return Ok(r.get(0).unwrap_or("").to_string());
        }
    }
    Ok(String::new())
}

pub fn backend_pid(c: &mut Client) -> i32 {
    one(c, "SELECT pg_backend_pid()").parse().unwrap()
}

/// Runs `f` on a thread and hands back a receiver for its result, so a test
/// can check that a blocked client has *not* finished yet.
pub fn spawn<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::sync::mpsc::Receiver<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// A listener on 127.0.0.1 that accepts TCP connections and never says a
/// word: a PostgreSQL that hangs during startup.
pub struct SilentServer {
    pub port: u16,
    held: std::sync::Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let held = std::sync::Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                h.lock().unwrap().push(s);
            }
        });
        SilentServer { port, held }
    }
}

/// A listener whose accept queue is full: new SYNs are dropped, so a
/// connect() to it neither succeeds nor fails until the client gives up.
pub struct BlackHole {
    pub port: u16,
    _listener: TcpListener,
    _fill: Vec<TcpStream>,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        use std::os::unix::io::AsRawFd;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // SAFETY: shrinking the backlog of a socket we own.
        unsafe { libc::listen(l.as_raw_fd(), 0) };
        let mut fill = Vec::new();
        for _ in 0..2 {
            if let Ok(s) = TcpStream::connect_timeout(
                &SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                Duration::from_millis(300),
            ) {
                fill.push(s);
            }
        }
        BlackHole {
            port,
            _listener: l,
            _fill: fill,
        }
    }

    /// True if a connect() to it really does hang here.
    pub fn hangs(&self) -> bool {
        TcpStream::connect_timeout(
            &SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port),
            Duration::from_millis(300),
        )
        .is_err()
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    free_port()
}

pub fn ipv6_available() -> bool {
    static V6: OnceLock<bool> = OnceLock::new();
    *V6.get_or_init(|| TcpListener::bind("[::1]:0").is_ok())
}

pub fn ipv6_loopback() -> IpAddr {
    IpAddr::V6(Ipv6Addr::LOCALHOST)
}

// ---------------------------------------------------------------------------
// Raw protocol client
// ---------------------------------------------------------------------------

/// Frontend message builders.
pub mod msg {
    fn frame(tag: Option<u8>, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(body.len() + 5);
        if let Some(t) = tag {
            v.push(t);
        }
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn cstr(v: &mut Vec<u8>, s: &str) {
        v.extend_from_slice(s.as_bytes());
        v.push(0);
    }

    pub fn startup_version(version: i32, params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        for (k, v) in params {
            cstr(&mut b, k);
            cstr(&mut b, v);
        }
        b.push(0);
        frame(None, &b)
    }

    pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        startup_version(196608, params)
    }

    pub fn ssl_request() -> Vec<u8> {
        frame(None, &80877103i32.to_be_bytes())
    }

    pub fn gssenc_request() -> Vec<u8> {
        frame(None, &80877104i32.to_be_bytes())
    }

    pub fn cancel_request(pid: i32, key: i32) -> Vec<u8> {
        let mut b = 80877102i32.to_be_bytes().to_vec();
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&key.to_be_bytes());
        frame(None, &b)
    }

    pub fn password(pw: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, pw);
        frame(Some(b'p'), &b)
    }

    pub fn query(sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, sql);
        frame(Some(b'Q'), &b)
    }

    pub fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, name);
        cstr(&mut b, sql);
        b.extend_from_slice(&0i16.to_be_bytes());
        frame(Some(b'P'), &b)
    }

    /// Bind with text parameters and text results.
    pub fn bind(portal: &str, stmt: &str, params: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        cstr(&mut b, stmt);
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for p in params {
            b.extend_from_slice(&(p.len() as i32).to_be_bytes());
            b.extend_from_slice(p.as_bytes());
        }
        b.extend_from_slice(&0i16.to_be_bytes());
        frame(Some(b'B'), &b)
    }

    pub fn describe_statement(name: &str) -> Vec<u8> {
        let mut b = vec![b'S'];
        cstr(&mut b, name);
        frame(Some(b'D'), &b)
    }

    pub fn execute(portal: &str) -> Vec<u8> {
        execute_max(portal, 0)
    }

    /// Execute returning at most `max_rows` rows (0 = all) before PortalSuspended.
    pub fn execute_max(portal: &str, max_rows: i32) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        b.extend_from_slice(&max_rows.to_be_bytes());
        frame(Some(b'E'), &b)
    }

    pub fn close_statement(name: &str) -> Vec<u8> {
        let mut b = vec![b'S'];
        cstr(&mut b, name);
        frame(Some(b'C'), &b)
    }

    pub fn copy_data(data: &[u8]) -> Vec<u8> {
        frame(Some(b'd'), data)
    }

    pub fn copy_done() -> Vec<u8> {
        frame(Some(b'c'), &[])
    }

    pub fn copy_fail(reason: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, reason);
        frame(Some(b'f'), &b)
    }

    pub fn flush() -> Vec<u8> {
        frame(Some(b'H'), &[])
    }

    pub fn sync() -> Vec<u8> {
        frame(Some(b'S'), &[])
    }

    pub fn terminate() -> Vec<u8> {
        frame(Some(b'X'), &[])
    }
}

/// One backend message: tag and body (without the length).
#[derive(Clone, Debug)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// ErrorResponse/NoticeResponse fields by their one-byte code.
    pub fn fields(&self) -> HashMap<u8, String> {
        let mut m = HashMap::new();
        let mut rest = &self.body[..];
        while let Some((&code, tail)) = rest.split_first() {
            if code == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            m.insert(code, text(&tail[..end]));
            rest = &tail[(end + 1).min(tail.len())..];
        }
        m
    }

    pub fn sqlstate(&self) -> Option<String> {
        (self.tag == b'E').then(|| self.fields().get(&b'C').cloned().unwrap_or_default())
    }

    /// DataRow columns as text (None for NULL).
    pub fn columns(&self) -> Vec<Option<String>> {
        let b = &self.body;
        let n = i16::from_be_bytes([b[0], b[1]]) as usize;
        let mut pos = 2;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let len = i32::from_be_bytes(b[pos..pos + 4].try_into().unwrap());
            pos += 4;
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(text(&b[pos..pos + len as usize])));
                pos += len as usize;
            }
        }
        out
    }

    pub fn int(&self, at: usize) -> i32 {
        i32::from_be_bytes(self.body[at..at + 4].try_into().unwrap())
    }
}

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tag {
            b'E' | b'N' => write!(f, "{}{:?}", self.tag as char, self.fields()),
            b'D' => write!(f, "D{:?}", self.columns()),
            _ => write!(f, "{}({} bytes)", self.tag as char, self.body.len()),
        }
    }
}

pub fn show_msgs(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A frontend speaking bytes: for what the drivers do not let a test
/// choose (statement names, startup packets, cancel keys, auth requests).
pub struct Raw {
    pub s: TcpStream,
    /// The BackendKeyData the pooler gave this client.
    pub key: Option<(i32, i32)>,
    pub params: HashMap<String, String>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect to the pooler");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw {
            s,
            key: None,
            params: HashMap::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write to the pooler");
    }

    pub fn read_byte(&mut self) -> std::io::Result<u8> {
        let mut b = [0u8];
        self.s.read_exact(&mut b)?;
        Ok(b[0])
    }

    pub fn read_msg(&mut self) -> std::io::Result<Msg> {
        let mut hdr = [0u8; 5];
        self.s.read_exact(&mut hdr)?;
        let len = i32::from_be_bytes(hdr[1..5].try_into().unwrap());
        if !(4..=64 * 1024 * 1024).contains(&len) {
            return Err(std::io::Error::other(format!(
                "bad message length {len} for tag {:?}",
                hdr[0] as char
            )));
        }
        let mut body = vec![0u8; len as usize - 4];
        self.s.read_exact(&mut body)?;
        Ok(Msg { tag: hdr[0], body })
    }

    /// Reads messages up to and including ReadyForQuery.
    pub fn until_ready(&mut self) -> std::io::Result<Vec<Msg>> {
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

    /// Sends a startup packet and answers trust or cleartext auth; returns
    /// the ErrorResponse if the login is refused.
    pub fn login(
        port: u16,
        user: &str,
        db: &str,
        password: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<Raw, Msg> {
        let mut r = Raw::connect(port);
        let mut params = vec![("user", user), ("database", db)];
        params.extend_from_slice(extra);
        r.send(&msg::startup(&params));
        loop {
            let m = r.read_msg().expect("read during login");
            match m.tag {
                b'R' => match m.int(0) {
                    0 => {}
                    3 => {
                        let pw = password.expect("pooler asked for a password");
                        r.send(&msg::password(pw));
                    }
                    code => panic!("raw client cannot do auth request {code}"),
                },
                b'K' => r.key = Some((m.int(0), m.int(4))),
                b'S' => {
                    let parts: Vec<&[u8]> = m.body.split(|&b| b == 0).collect();
                    r.params.insert(text(parts[0]), text(parts[1]));
                }
                b'E' => return Err(m),
                b'Z' => return Ok(r),
                b'N' => {}
                other => panic!("unexpected message {:?} during login", other as char),
            }
        }
    }

    /// A simple query; all messages up to ReadyForQuery.
    pub fn query(&mut self, sql: &str) -> Vec<Msg> {
        self.send(&msg::query(sql));
        self.until_ready()
            .unwrap_or_else(|e| panic!("reading the reply to {sql}: {e}"))
    }

    /// The first column of each DataRow in `msgs`.
    pub fn values(msgs: &[Msg]) -> Vec<String> {
        msgs.iter()
            .filter(|m| m.tag == b'D')
            .map(|m| m.columns()[0].clone().unwrap_or_default())
            .collect()
    }

    /// Reads until the peer closes; returns the messages seen before EOF, or
    /// an error on timeout.
    pub fn until_eof(&mut self, timeout: Duration) -> std::io::Result<Vec<Msg>> {
        self.s.set_read_timeout(Some(timeout)).unwrap();
        let mut v = Vec::new();
        loop {
            match self.read_msg() {
                Ok(m) => v.push(m),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(v),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(v),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Logs in with the raw client (trust or plain auth) and runs `sql`;
/// returns the first ErrorResponse of the login or of the query, whether
/// or not the pooler closes the connection after it. The postgres crate
/// cannot be used for this: when a FATAL error and EOF arrive together,
/// it reports only "connection closed".
pub fn raw_error(port: u16, user: &str, db: &str, sql: &str) -> Result<Msg, String> {
    let mut r = match Raw::login(port, user, db, None, &[]) {
        Err(e) => return Ok(e),
        Ok(r) => r,
    };
    r.send(&msg::query(sql));
    r.s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let msgs = r
        .until_ready_or_eof()
        .map_err(|e| format!("no reply: {e}"))?;
    msgs.into_iter()
        .find(|m| m.tag == b'E')
        .ok_or_else(|| "the query succeeded".to_string())
}

/// Raw version of `until_eof` that stops at the first ReadyForQuery too.
impl Raw {
    pub fn until_ready_or_eof(&mut self) -> std::io::Result<Vec<Msg>> {
        let mut v = Vec::new();
        loop {
            match self.read_msg() {
                Ok(m) => {
                    let done = m.tag == b'Z';
                    v.push(m);
                    if done {
                        return Ok(v);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(v),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(v),
                Err(e) => return Err(e),
            }
        }
    }
}

/// True if a new client cannot log in: the connection is refused, closed,
/// answered with an error, or left unanswered for 2 s.
pub fn login_refused(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        Duration::from_secs(1),
    ) else {
        return true;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if s.write_all(&msg::startup(&[("user", USER), ("database", "postgres")]))
        .is_err()
    {
        return true;
    }
    let mut tag = [0u8];
    !matches!(s.read_exact(&mut tag), Ok(()) if tag[0] == b'R')
}

/// Sends a CancelRequest to 127.0.0.1:port and waits for the pooler to
/// close that connection (the protocol's only acknowledgement).
pub fn send_cancel(port: u16, pid: i32, key: i32) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect for cancel");
    s.write_all(&msg::cancel_request(pid, key)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let _ = s.read(&mut buf);
}

/// Same over the pooler's unix socket.
pub fn send_cancel_unix(path: &Path, pid: i32, key: i32) {
    let mut s = UnixStream::connect(path).expect("connect for cancel");
    s.write_all(&msg::cancel_request(pid, key)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let _ = s.read(&mut buf);
}

// ---------------------------------------------------------------------------
// Long-lived poolers (tests/soak)
// ---------------------------------------------------------------------------

impl Pooler {
    /// Replaces the watchdog (45 s from start) with one that kills the pooler
    /// `timeout` from now, for tests whose pooler must live longer.
    pub fn set_watchdog(&mut self, timeout: Duration) {
        if self.exit.is_some() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (pid, log_path) = (self.pid(), self.log_path.clone());
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
                if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&log_path) {
                    let _ = writeln!(
                        f,
                        "[test harness] watchdog: pooler killed after {timeout:?}"
                    );
                }
                // SAFETY: as in start_watchdog.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        // Dropping the old sender ends the old watchdog without a kill.
        self.watchdog = Some(tx);
    }
}
