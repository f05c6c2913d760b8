//! rustls client against rustls server over a non-blocking socket pair, both driven from
//! one thread, with certificates the openssl CLI makes in a temporary directory.

use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::ProtocolVersion;

use super::*;

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
string_mask = utf8only
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
";

/// A directory of test certificates, removed when dropped.
struct Pki {
    dir: PathBuf,
    serial: AtomicUsize,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pooler-tls-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF).expect("write openssl.cnf");
        // The "default" mask encodes ASCII names as PrintableString, not UTF8String.
        let printable = OPENSSL_CNF.replace("utf8only", "default");
        std::fs::write(dir.join("printable.cnf"), printable).expect("write printable.cnf");
        Pki {
            dir,
            serial: AtomicUsize::new(1),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("these tests need the openssl CLI to make certificates: {e}")
            });
        assert!(
            out.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed CA: NAME.crt, NAME.key.
    fn ca(&self, name: &str) {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        let subj = format!("/CN=Test CA {name}");
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "30",
            "-subj",
            &subj,
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca_ext",
        ]);
    }

    /// NAME.crt, NAME.key signed by CA with extensions section EXT of openssl.cnf.
    fn leaf(&self, name: &str, ca: &str, subj: &str, ext: &str) {
        self.leaf_with(name, ca, subj, ext, "openssl.cnf", &[]);
    }

    fn leaf_with(&self, name: &str, ca: &str, subj: &str, ext: &str, cnf: &str, req_args: &[&str]) {
        let (crt, key, csr) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        let mut args = vec![
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subj,
            "-config",
            cnf,
        ];
        args.extend_from_slice(req_args);
        self.openssl(&args);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed).to_string();
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "30",
            "-out",
            &crt,
            "-extfile",
            "openssl.cnf",
            "-extensions",
            ext,
            "-sha256",
        ]);
    }

    fn der(&self, crt: &str) -> Vec<u8> {
        let out = format!("{crt}.der");
        self.openssl(&["x509", "-in", crt, "-outform", "der", "-out", &out]);
        std::fs::read(self.path(&out)).expect("read DER")
    }

    /// `openssl dgst` of the certificate's DER, as hex.
    fn openssl_digest(&self, crt: &str, digest: &str) -> String {
        let der = format!("{crt}.der");
        self.openssl(&["x509", "-in", crt, "-outform", "der", "-out", &der]);
        let out = Command::new("openssl")
            .args(["dgst", &format!("-{digest}"), "-r", &der])
            .current_dir(&self.dir)
            .output()
            .expect("openssl dgst");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// The usual set: CA "ca" with server "server" (CN=localhost) and client "alice", and
    /// an unrelated CA "other" with its own client "mallory" (CN=alice as well).
    fn standard(tag: &str) -> Pki {
        let pki = Pki::new(tag);
        pki.ca("ca");
        pki.leaf("server", "ca", "/CN=localhost", "server_ext");
        pki.leaf("alice", "ca", "/CN=alice", "client_ext");
        pki.ca("other");
        pki.leaf("mallory", "other", "/CN=alice", "client_ext");
        pki
    }

    fn server(&self, ca: Option<&str>, require: bool) -> ServerTls {
        let ca = ca.map(|c| self.path(c));
        server_tls(
            &self.path("server.crt"),
            &self.path("server.key"),
            ca.as_deref(),
            require,
        )
        .expect("server config")
    }

    fn client(&self, verify: ServerVerify, cert: Option<&str>) -> Arc<ClientConfig> {
        let (crt, key) = match cert {
            Some(c) => (
                self.path(&format!("{c}.crt")),
                self.path(&format!("{c}.key")),
            ),
            None => (PathBuf::new(), PathBuf::new()),
        };
        let pair = cert.map(|_| (crt.as_path(), key.as_path()));
        client_config(Some(&self.path("ca.crt")), verify, pair).expect("client config")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Errors each side saw while connecting, as text.
#[derive(Debug, Default)]
struct Failure {
    client: Option<String>,
    server: Option<String>,
}

struct Pair {
    client: TlsStream<ClientConnection>,
    csock: UnixStream,
    server: TlsStream<ServerConnection>,
    ssock: UnixStream,
}

impl Pair {
    fn new(client: Arc<ClientConfig>, host: &str, server: Arc<ServerConfig>) -> Pair {
        let (csock, ssock) = UnixStream::pair().expect("socketpair");
        csock.set_nonblocking(true).expect("nonblocking");
        ssock.set_nonblocking(true).expect("nonblocking");
        Pair {
            client: TlsStream::connect(client, host).expect("client connection"),
            csock,
            server: TlsStream::accept(server).expect("server connection"),
            ssock,
        }
    }

    /// Handshakes, then one small message each way, because a TLS 1.3 client finishes
    /// before the server has judged its certificate and only learns the verdict on its
    /// next read.
    fn establish(&mut self) -> Result<(), Failure> {
        let mut fail = Failure::default();
        let (mut client_done, mut server_done) = (false, false);
        let mut rounds_after_failure = 0;
        for _ in 0..100 {
            if fail.client.is_none() && !client_done {
                match self.client.handshake_step(&mut self.csock) {
                    Ok(HandshakeProgress::Done) => client_done = true,
                    Ok(HandshakeProgress::InProgress) => {}
                    Err(e) => fail.client = Some(e.to_string()),
                }
            }
            if fail.server.is_none() && !server_done {
                match self.server.handshake_step(&mut self.ssock) {
                    Ok(HandshakeProgress::Done) => server_done = true,
                    Ok(HandshakeProgress::InProgress) => {}
                    Err(e) => fail.server = Some(e.to_string()),
                }
            }
            if client_done && server_done {
                break;
            }
            if fail.client.is_some() || fail.server.is_some() {
                // Let the other side take in the alert, also when it thinks it is done.
                let mut buf = [0u8; 16];
                if fail.client.is_none() && client_done {
                    match self.client.read(&mut self.csock, &mut buf) {
                        Err(e) if !would_block(&e) => fail.client = Some(e.to_string()),
                        _ => {}
                    }
                }
                if fail.server.is_none() && server_done {
                    match self.server.read(&mut self.ssock, &mut buf) {
                        Err(e) if !would_block(&e) => fail.server = Some(e.to_string()),
                        _ => {}
                    }
                }
                rounds_after_failure += 1;
                if rounds_after_failure > 5 {
                    return Err(fail);
                }
            }
        }
        assert!(client_done && server_done, "handshake stalled");
        let ping = server_to_client(self, b"ping").map_err(|(s, c)| Failure {
            client: c.map(|e| e.to_string()),
            server: s.map(|e| e.to_string()),
        })?;
        assert_eq!(ping, b"ping");
        let pong = client_to_server(self, b"pong").map_err(|(c, s)| Failure {
            client: c.map(|e| e.to_string()),
            server: s.map(|e| e.to_string()),
        })?;
        assert_eq!(pong, b"pong");
        Ok(())
    }
}

type SideErrors = (Option<io::Error>, Option<io::Error>);

fn client_to_server(p: &mut Pair, data: &[u8]) -> Result<Vec<u8>, SideErrors> {
    transfer(
        &mut p.client,
        &mut p.csock,
        &mut p.server,
        &mut p.ssock,
        data,
    )
}

fn server_to_client(p: &mut Pair, data: &[u8]) -> Result<Vec<u8>, SideErrors> {
    transfer(
        &mut p.server,
        &mut p.ssock,
        &mut p.client,
        &mut p.csock,
        data,
    )
}

/// Sends `data` from one side to the other, pumping both, and returns what arrived.
/// Errors are (sender's, receiver's).
fn transfer<A, DA, B, DB>(
    tx: &mut TlsStream<A>,
    tx_sock: &mut UnixStream,
    rx: &mut TlsStream<B>,
    rx_sock: &mut UnixStream,
    data: &[u8],
) -> Result<Vec<u8>, SideErrors>
where
    A: DerefMut<Target = ConnectionCommon<DA>>,
    B: DerefMut<Target = ConnectionCommon<DB>>,
{
    let mut sent = 0;
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 8192];
    let mut idle_rounds = 0;
    while got.len() < data.len() {
        let before = (sent, got.len());
        if sent < data.len() {
            match tx.write(tx_sock, &data[sent..]) {
                Ok(n) => sent += n,
                Err(e) if would_block(&e) => {}
                Err(e) => return Err((Some(e), None)),
            }
        } else if let Err(e) = tx.flush_tls(tx_sock) {
            return Err((Some(e), None));
        }
        loop {
            match rx.read(rx_sock, &mut buf) {
                Ok(0) => {
                    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "end of stream");
                    return Err((None, Some(eof)));
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => break,
                Err(e) => return Err((None, Some(e))),
            }
        }
        idle_rounds = if (sent, got.len()) == before {
            idle_rounds + 1
        } else {
            0
        };
        assert!(
            idle_rounds < 100,
            "transfer stalled at {sent} sent, {} received",
            got.len()
        );
    }
    Ok(got)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn full_verification_client_cert_and_data_both_ways() {
    let pki = Pki::standard("full");
    let server = pki.server(Some("ca.crt"), true);
    let mut p = Pair::new(
        pki.client(ServerVerify::Full, Some("alice")),
        "localhost",
        server.config.clone(),
    );
    p.establish().expect("connects");

    assert_eq!(
        p.client.conn.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    assert_eq!(p.server.conn.alpn_protocol(), Some(ALPN_POSTGRESQL));
    assert_eq!(
        peer_cert_common_name(&p.server.conn).as_deref(),
        Some("alice")
    );

    let binding = server
        .end_point_hash
        .clone()
        .expect("ECDSA-SHA256 certificate has a hash");
    assert_eq!(peer_end_point_hash(&p.client.conn), Some(binding.clone()));
    assert_eq!(hex(&binding), pki.openssl_digest("server.crt", "sha256"));

    let big = payload(1 << 20);
    assert_eq!(
        client_to_server(&mut p, &big).expect("client to server"),
        big
    );
    assert_eq!(
        server_to_client(&mut p, &big).expect("server to client"),
        big
    );
}

#[test]
fn back_pressure_bounds_buffering() {
    let pki = Pki::standard("pressure");
    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "localhost",
        pki.server(None, false).config,
    );
    p.establish().expect("connects");
    let big = payload(1 << 20);

    // Nothing reads, so the socket fills, then rustls' buffer, then write says WouldBlock.
    let mut accepted = 0;
    loop {
        match p.client.write(&mut p.csock, &big[accepted..]) {
            Ok(n) => accepted += n,
            Err(e) if would_block(&e) => break,
            Err(e) => panic!("write: {e}"),
        }
        assert!(accepted < big.len(), "1 MiB accepted with nobody reading");
    }
    assert!(p.client.wants_write(), "WouldBlock with nothing pending");
    assert!(!p.client.flush_tls(&mut p.csock).expect("flush"));

    // The receiver drains; flush_tls resumes, and everything arrives in order.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut idle_rounds = 0;
    while got.len() < big.len() {
        let before = (accepted, got.len());
        if accepted < big.len() {
            match p.client.write(&mut p.csock, &big[accepted..]) {
                Ok(n) => accepted += n,
                Err(e) if would_block(&e) => {}
                Err(e) => panic!("write: {e}"),
            }
        } else {
            p.client.flush_tls(&mut p.csock).expect("flush");
        }
        loop {
            match p.server.read(&mut p.ssock, &mut buf) {
                Ok(0) => panic!("early end of stream"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        idle_rounds = if (accepted, got.len()) == before {
            idle_rounds + 1
        } else {
            0
        };
        assert!(idle_rounds < 100, "stalled");
    }
    assert!(got == big, "payload corrupted");
    assert!(p.client.flush_tls(&mut p.csock).expect("flush"));
}

#[test]
fn tls12_client() {
    let pki = Pki::standard("tls12");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let ca = std::fs::read(pki.path("ca.crt")).expect("read CA");
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut p = Pair::new(
        Arc::new(config),
        "localhost",
        pki.server(Some("ca.crt"), false).config,
    );
    p.establish().expect("connects");
    assert_eq!(
        p.server.conn.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    assert_eq!(peer_cert_common_name(&p.server.conn), None);
    let big = payload(300_000);
    assert_eq!(
        client_to_server(&mut p, &big).expect("client to server"),
        big
    );
}

#[test]
fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let pki = Pki::standard("names");
    let server = pki.server(None, false).config;

    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "db.example.com",
        server.clone(),
    );
    let fail = p
        .establish()
        .expect_err("wrong host name under verify-full");
    let client = fail.client.expect("client error");
    assert!(client.contains("not valid for name"), "{client}");
    // The client's alert reached the server, so it knows why.
    let server_err = fail.server.expect("server error");
    assert!(server_err.contains("alert"), "{server_err}");

    let mut p = Pair::new(
        pki.client(ServerVerify::Ca, None),
        "db.example.com",
        server.clone(),
    );
    p.establish().expect("verify-ca ignores the host name");

    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "127.0.0.1",
        server.clone(),
    );
    p.establish()
        .expect("verify-full matches the IP address SAN");

    let mut p = Pair::new(
        pki.client(ServerVerify::None, None),
        "db.example.com",
        server,
    );
    p.establish().expect("no verification");
}

#[test]
fn foreign_server_certificate() {
    let pki = Pki::standard("foreign");
    pki.openssl(&[
        "req",
        "-x509",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "rogue.key",
        "-out",
        "rogue.crt",
        "-days",
        "30",
        "-subj",
        "/CN=localhost",
        "-config",
        "openssl.cnf",
        "-extensions",
        "server_ext",
    ]);
    let rogue = server_config(&pki.path("rogue.crt"), &pki.path("rogue.key"), None, false)
        .expect("self-signed server config");

    let mut p = Pair::new(
        pki.client(ServerVerify::None, None),
        "localhost",
        rogue.clone(),
    );
    p.establish()
        .expect("sslmode=require takes any certificate");
    assert_eq!(p.client.conn.alpn_protocol(), Some(ALPN_POSTGRESQL));

    for verify in [ServerVerify::Ca, ServerVerify::Full] {
        let mut p = Pair::new(pki.client(verify, None), "localhost", rogue.clone());
        let fail = p.establish().expect_err("unknown issuer");
        let client = fail.client.expect("client error");
        assert!(client.contains("UnknownIssuer"), "{verify:?}: {client}");
    }

    // A server certificate from the right CA but without serverAuth: the chain check of
    // verify-ca still insists on it, as webpki does for verify-full.
    let mut p = Pair::new(pki.client(ServerVerify::Ca, None), "localhost", {
        server_config(&pki.path("alice.crt"), &pki.path("alice.key"), None, false)
            .expect("client cert as server cert")
    });
    let client = p
        .establish()
        .expect_err("clientAuth-only certificate")
        .client;
    assert!(client
        .expect("client error")
        .contains("invalid peer certificate"));
}

#[test]
fn client_certificates() {
    let pki = Pki::standard("clientcerts");
    let required = pki.server(Some("ca.crt"), true).config;
    let optional = pki.server(Some("ca.crt"), false).config;

    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "localhost",
        required.clone(),
    );
    let fail = p.establish().expect_err("certificate required");
    assert!(fail
        .server
        .expect("server error")
        .contains("peer sent no certificates"));
    assert!(fail.client.expect("client error").contains("alert"));

    let mut p = Pair::new(
        pki.client(ServerVerify::Full, Some("mallory")),
        "localhost",
        required.clone(),
    );
    let fail = p.establish().expect_err("certificate from another CA");
    let server = fail.server.expect("server error");
    assert!(server.contains("UnknownIssuer"), "{server}");

    let mut p = Pair::new(
        pki.client(ServerVerify::Full, Some("alice")),
        "localhost",
        required,
    );
    p.establish().expect("alice");
    assert_eq!(
        peer_cert_common_name(&p.server.conn).as_deref(),
        Some("alice")
    );

    // Without require a client may come without a certificate...
    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "localhost",
        optional.clone(),
    );
    p.establish().expect("no certificate is fine");
    assert_eq!(peer_cert_common_name(&p.server.conn), None);
    // ...but not with a bad one.
    let mut p = Pair::new(
        pki.client(ServerVerify::Full, Some("mallory")),
        "localhost",
        optional.clone(),
    );
    p.establish()
        .expect_err("a presented certificate must verify");

    // No client CA at all: a certificate is not even asked for.
    let mut p = Pair::new(
        pki.client(ServerVerify::Full, Some("alice")),
        "localhost",
        pki.server(None, false).config,
    );
    p.establish().expect("unasked certificate");
    assert_eq!(peer_cert_common_name(&p.server.conn), None);
}

#[test]
fn alpn() {
    let pki = Pki::standard("alpn");
    let server = pki.server(None, false).config;

    let mut none = (*pki.client(ServerVerify::Full, None)).clone();
    none.alpn_protocols.clear();
    let mut p = Pair::new(Arc::new(none), "localhost", server.clone());
    p.establish().expect("a client without ALPN (libpq < 17)");
    assert_eq!(p.server.conn.alpn_protocol(), None);

    let mut h2 = (*pki.client(ServerVerify::Full, None)).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let mut p = Pair::new(Arc::new(h2), "localhost", server);
    let fail = p
        .establish()
        .expect_err("a client speaking another protocol");
    let server = fail.server.expect("server error");
    assert!(server.contains("protocol"), "{server}");
}

#[test]
fn end_of_stream() {
    let pki = Pki::standard("eof");
    let server = pki.server(None, false).config;
    let mut buf = [0u8; 64];

    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "localhost",
        server.clone(),
    );
    p.establish().expect("connects");
    assert!(would_block(
        &p.server
            .read(&mut p.ssock, &mut buf)
            .expect_err("nothing to read")
    ));
    assert!(p.client.close(&mut p.csock).expect("close_notify"));
    assert_eq!(
        p.server.read(&mut p.ssock, &mut buf).expect("clean close"),
        0
    );
    assert_eq!(
        p.server.read(&mut p.ssock, &mut buf).expect("stays closed"),
        0
    );

    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "localhost",
        server.clone(),
    );
    p.establish().expect("connects");
    drop(p.csock);
    assert_eq!(p.server.read(&mut p.ssock, &mut buf).expect("plain EOF"), 0);

    // Data sent just before close_notify is still delivered first.
    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "localhost",
        server.clone(),
    );
    p.establish().expect("connects");
    assert_eq!(p.client.write(&mut p.csock, b"bye").expect("write"), 3);
    p.client.close(&mut p.csock).expect("close_notify");
    assert_eq!(p.server.read(&mut p.ssock, &mut buf).expect("data"), 3);
    assert_eq!(&buf[..3], b"bye");
    assert_eq!(
        p.server.read(&mut p.ssock, &mut buf).expect("then the end"),
        0
    );

    // A peer that disappears in the middle of the handshake.
    let mut p = Pair::new(pki.client(ServerVerify::Full, None), "localhost", server);
    p.client.handshake_step(&mut p.csock).expect("ClientHello");
    drop(p.csock);
    let err = p.server.handshake_step(&mut p.ssock);
    let err = match err {
        Ok(HandshakeProgress::InProgress) => p.server.handshake_step(&mut p.ssock),
        other => other,
    }
    .expect_err("closed mid-handshake");
    assert!(
        err.kind() == io::ErrorKind::UnexpectedEof || err.kind() == io::ErrorKind::BrokenPipe,
        "{err}"
    );
}

#[test]
fn garbage_instead_of_tls() {
    let pki = Pki::standard("garbage");
    let mut server = TlsStream::accept(pki.server(None, false).config).expect("server");
    let (mut csock, mut ssock) = UnixStream::pair().expect("socketpair");
    ssock.set_nonblocking(true).expect("nonblocking");
    // What a confused client might send: a StartupMessage instead of a ClientHello.
    csock
        .write_all(b"\x00\x00\x00\x08\x00\x03\x00\x00")
        .expect("write");
    let err = server.handshake_step(&mut ssock).expect_err("not TLS");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some());
    // The alert went out: the client side sees a TLS alert record (content type 21).
    let mut reply = [0u8; 16];
    let n = csock.read(&mut reply).expect("alert");
    assert!(n >= 7 && reply[0] == 21, "{:?}", &reply[..n]);
}

#[test]
fn feed_tls_takes_bytes_read_before() {
    let pki = Pki::standard("feed");
    let mut p = Pair::new(
        pki.client(ServerVerify::Full, None),
        "localhost",
        pki.server(None, false).config,
    );
    p.client.handshake_step(&mut p.csock).expect("ClientHello");
    // The worker read the ClientHello while looking at the SSLRequest.
    let mut early = vec![0u8; 65536];
    let n = p.ssock.read(&mut early).expect("ClientHello bytes");
    p.server.feed_tls(&early[..n]).expect("feed");
    p.establish()
        .expect("handshake continues from the fed bytes");
}

#[test]
fn end_point_hash_matches_openssl() {
    let pki = Pki::new("hashes");
    pki.openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa.key",
    ]);
    let self_signed = |name: &str, key: &[&str], sig: &[&str]| {
        let crt = format!("{name}.crt");
        let subj = format!("/CN={name}");
        let mut args = vec!["req", "-x509", "-out", &crt, "-subj", &subj, "-days", "3"];
        args.extend_from_slice(&["-config", "openssl.cnf", "-extensions", "server_ext"]);
        args.extend_from_slice(key);
        args.extend_from_slice(sig);
        pki.openssl(&args);
        crt
    };
    let rsa = ["-key", "rsa.key"];
    // (name, key arguments, signing arguments, openssl digest expected)
    type Case<'a> = (&'a str, Vec<&'a str>, &'a [&'a str], Option<&'a str>);
    let cases: [Case<'_>; 8] = [
        ("rsa256", rsa.to_vec(), &["-sha256"], Some("sha256")),
        ("rsa384", rsa.to_vec(), &["-sha384"], Some("sha384")),
        ("rsa512", rsa.to_vec(), &["-sha512"], Some("sha512")),
        // RFC 5929: SHA-1 is replaced by SHA-256.
        ("rsa1", rsa.to_vec(), &["-sha1"], Some("sha256")),
        (
            "pss384",
            rsa.to_vec(),
            &[
                "-sha384",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:-1",
            ],
            Some("sha384"),
        ),
        (
            "ec384",
            vec![
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:secp384r1",
                "-nodes",
                "-keyout",
                "ec384.key",
            ],
            &["-sha384"],
            Some("sha384"),
        ),
        (
            "ec256",
            vec![
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ec256.key",
            ],
            &["-sha256"],
            Some("sha256"),
        ),
        (
            "ed25519",
            vec!["-newkey", "ed25519", "-nodes", "-keyout", "ed25519.key"],
            &[],
            None,
        ),
    ];
    for (name, key, sig, digest) in cases {
        let crt = self_signed(name, &key, sig);
        let der = pki.der(&crt);
        let ours = server_end_point_hash(&der).map(|h| hex(&h));
        let theirs = digest.map(|d| pki.openssl_digest(&crt, d));
        assert_eq!(ours, theirs, "{name}");
    }

    // server_tls computes it from the certificate it serves.
    let tls =
        server_tls(&pki.path("rsa256.crt"), &pki.path("rsa.key"), None, false).expect("config");
    assert_eq!(
        tls.end_point_hash.map(|h| hex(&h)),
        Some(pki.openssl_digest("rsa256.crt", "sha256"))
    );
    let tls = server_tls(
        &pki.path("ed25519.crt"),
        &pki.path("ed25519.key"),
        None,
        false,
    )
    .expect("config");
    assert_eq!(tls.end_point_hash, None);
}

#[test]
fn common_names_from_openssl() {
    let pki = Pki::new("names");
    pki.ca("ca");
    // (name, subject, config file, extra req arguments, CN expected)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], Option<&'a str>);
    let cases: [Case<'_>; 6] = [
        ("ascii", "/CN=alice", "openssl.cnf", &[], Some("alice")),
        (
            "utf8",
            "/O=Test/CN=Zoë Ελένη",
            "openssl.cnf",
            &["-utf8"],
            Some("Zoë Ελένη"),
        ),
        (
            "printable",
            "/CN=bob smith",
            "printable.cnf",
            &[],
            Some("bob smith"),
        ),
        ("nocn", "/O=No Common Name/OU=x", "openssl.cnf", &[], None),
        (
            "multi",
            "/O=Org+CN=carol",
            "openssl.cnf",
            &["-multivalue-rdn"],
            Some("carol"),
        ),
        (
            "first",
            "/CN=first/CN=second",
            "openssl.cnf",
            &[],
            Some("first"),
        ),
    ];
    for (name, subj, cnf, args, want) in cases {
        pki.leaf_with(name, "ca", subj, "client_ext", cnf, args);
        let der = pki.der(&format!("{name}.crt"));
        assert_eq!(cert_common_name(&der).as_deref(), want, "{name}");
    }
    // The printable case really is a PrintableString (tag 0x13 before the value).
    let der = pki.der("printable.crt");
    assert!(der.windows(11).any(|w| w == b"\x13\x09bob smith"));

    let der = pki.der("ascii.crt");
    for len in 0..der.len() {
        let _ = cert_common_name(&der[..len]);
        let _ = server_end_point_hash(&der[..len]);
    }
    assert_eq!(cert_common_name(b"\x30\x03\x02\x01"), None);
    assert_eq!(cert_common_name(&der[1..]), None);
}

#[test]
fn config_errors() {
    let pki = Pki::standard("errors");
    let missing = pki.path("missing.crt");
    let crt = pki.path("server.crt");
    let key = pki.path("server.key");

    let err = server_config(&missing, &key, None, false)
        .expect_err("missing")
        .to_string();
    assert!(err.starts_with("cannot read certificate file "), "{err}");
    assert!(err.contains("missing.crt"), "{err}");

    let err = server_config(&crt, &missing, None, false)
        .expect_err("no key")
        .to_string();
    assert!(err.starts_with("cannot read private key file "), "{err}");

    let err = server_config(&crt, &crt, None, false)
        .expect_err("cert as key")
        .to_string();
    assert!(err.starts_with("no private key found in "), "{err}");

    let err = server_config(&key, &key, None, false)
        .expect_err("key as cert")
        .to_string();
    assert!(
        err.starts_with("no certificate found in certificate file "),
        "{err}"
    );

    std::fs::write(pki.path("broken.crt"), "-----BEGIN CERTIFICATE-----\n!!!\n").expect("write");
    let err = server_config(&pki.path("broken.crt"), &key, None, false)
        .expect_err("broken PEM")
        .to_string();
    assert!(err.starts_with("cannot read certificate file "), "{err}");

    let err = server_config(&crt, &pki.path("alice.key"), None, false)
        .expect_err("someone else's key")
        .to_string();
    assert!(err.contains("cannot be used together"), "{err}");

    let err = server_config(&crt, &key, Some(&missing), true)
        .expect_err("no CA")
        .to_string();
    assert!(err.starts_with("cannot read CA file "), "{err}");
    let err = server_config(&crt, &key, None, true)
        .expect_err("require w/o CA")
        .to_string();
    assert!(err.contains("needs a CA file"), "{err}");

    for verify in [ServerVerify::Ca, ServerVerify::Full] {
        let err = client_config(None, verify, None)
            .expect_err("no CA")
            .to_string();
        assert!(err.contains("needs a CA file"), "{err}");
    }
    client_config(None, ServerVerify::None, None).expect("require needs no CA");
    let err = client_config(None, ServerVerify::None, Some((&crt, &missing)))
        .expect_err("client key missing")
        .to_string();
    assert!(err.starts_with("cannot read private key file "), "{err}");

    let err = TlsStream::connect(pki.client(ServerVerify::None, None), "bad host!")
        .err()
        .expect("invalid name")
        .to_string();
    assert!(err.contains("not a valid TLS server name"), "{err}");

    // Older key formats load too: SEC1 "EC PRIVATE KEY".
    pki.openssl(&["ec", "-in", "server.key", "-out", "server.sec1.key"]);
    let sec1 = std::fs::read_to_string(pki.path("server.sec1.key")).expect("read");
    assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    server_config(&crt, &pki.path("server.sec1.key"), None, false).expect("SEC1 key");
}
