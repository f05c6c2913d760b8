//! TLS for both sides of the pooler with rustls and its ring provider: configs built from
//! PEM files, the certificate checks PostgreSQL's sslmodes mean, the facts auth needs from
//! certificates (client CN, SCRAM channel binding data), and a non-blocking stream.
//!
//! `TlsStream` does no I/O of its own and owns no socket: every call takes the worker's
//! socket, so the worker keeps its one `Stream` type and its registration in the reactor.
//! Its methods drain until the socket says WouldBlock and always try to flush what rustls
//! queued, so output is only left pending while the socket is full; with sockets
//! registered edge-triggered for both directions, a writable event then follows, and the
//! worker answers it with `flush_tls`.
//!
//! PostgreSQL's handshake order: the client sends SSLRequest in plaintext, the server
//! answers 'S' in plaintext, then TLS starts. The worker does the first two steps on the
//! plain socket and creates the `TlsStream` afterwards. Bytes read past the SSLRequest
//! (or past the 'S') are a protocol violation PostgreSQL refuses (CVE-2021-23222);
//! `feed_tls` exists for a caller that wants to hand them over anyway.
//!
//! The configs are immutable and shared: a reload builds new ones from the files and new
//! connections pick them up, while connected clients keep the `Arc` they started with.

mod der;

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::DerefMut;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, DigitallySignedStruct, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme,
};

pub use der::{cert_common_name, server_end_point_hash};

/// The ALPN protocol name PostgreSQL 17 registered; libpq 17 offers it.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Cap on plaintext rustls buffers before the handshake ends and on encrypted output
/// after it, so a slow peer pushes back on the relay instead of growing memory.
pub const SEND_BUFFER_LIMIT: usize = 64 * 1024;

static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Built each time rather than installed as the process default: nothing here may depend
/// on what another part of the process (or a library) installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which file a loading error is about, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Certificate,
    PrivateKey,
    Ca,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Certificate => "certificate file",
            FileKind::PrivateKey => "private key file",
            FileKind::Ca => "CA file",
        })
    }
}

#[derive(Debug)]
pub enum TlsError {
    /// The file could not be read at all.
    Read {
        kind: FileKind,
        path: PathBuf,
        error: io::Error,
    },
    /// The file is not valid PEM.
    Pem {
        kind: FileKind,
        path: PathBuf,
        detail: String,
    },
    /// Valid PEM, but without the section this file is for.
    Empty {
        kind: FileKind,
        path: PathBuf,
    },
    /// A certificate in the CA file cannot be a trust anchor.
    BadCa {
        path: PathBuf,
        error: rustls::Error,
    },
    /// The key does not belong to the certificate, or rustls refuses the pair.
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
    /// A certificate check was asked for without a CA to check against.
    NeedsCa(&'static str),
    Verifier(rustls::server::VerifierBuilderError),
    /// The host cannot be used as a TLS server name.
    InvalidServerName(String),
    Rustls(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { kind, path, error } => {
                write!(f, "cannot read {kind} {}: {error}", path.display())
            }
            TlsError::Pem { kind, path, detail } => {
                write!(f, "cannot read {kind} {}: {detail}", path.display())
            }
            TlsError::Empty {
                kind: FileKind::PrivateKey,
                path,
            } => write!(
                f,
                "no private key found in {} (PEM PKCS#8, PKCS#1 or SEC1; encrypted keys are not supported)",
                path.display()
            ),
            TlsError::Empty { kind, path } => {
                write!(f, "no certificate found in {kind} {}", path.display())
            }
            TlsError::BadCa { path, error } => {
                write!(f, "unusable certificate in CA file {}: {error}", path.display())
            }
            TlsError::KeyPair { cert, key, error } => write!(
                f,
                "certificate file {} and private key file {} cannot be used together: {error}",
                cert.display(),
                key.display()
            ),
            TlsError::NeedsCa(what) => write!(f, "{what} needs a CA file"),
            TlsError::Verifier(e) => write!(f, "cannot build the certificate verifier: {e}"),
            TlsError::InvalidServerName(host) => {
                write!(f, "\"{host}\" is not a valid TLS server name")
            }
            TlsError::Rustls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { error, .. } => Some(error),
            TlsError::BadCa { error, .. }
            | TlsError::KeyPair { error, .. }
            | TlsError::Rustls(error) => Some(error),
            TlsError::Verifier(e) => Some(e),
            _ => None,
        }
    }
}

fn read_file(kind: FileKind, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        kind,
        path: path.to_owned(),
        error,
    })
}

fn pem_error(kind: FileKind, path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            kind,
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            kind,
            path: path.to_owned(),
            detail: e.to_string(),
        },
    }
}

fn load_certs(kind: FileKind, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(kind, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(kind, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            kind,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(FileKind::PrivateKey, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| pem_error(FileKind::PrivateKey, path, e))
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(FileKind::Ca, path)? {
        roots.add(cert).map_err(|error| TlsError::BadCa {
            path: path.to_owned(),
            error,
        })?;
    }
    Ok(Arc::new(roots))
}

/// What the client-facing side needs from its certificate files.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// The tls-server-end-point binding data of our own certificate, computed from the
    /// same bytes the config serves; `None` means SCRAM-SHA-256-PLUS must not be offered.
    pub end_point_hash: Option<Vec<u8>>,
}

/// The client-facing config: our certificate and key, TLS 1.2 and 1.3, and when
/// `client_ca_file` is given, client certificates verified against it. Without
/// `require_client_cert` a client may present no certificate, but one it presents must
/// still verify (as in PostgreSQL once ssl_ca_file is set).
pub fn server_tls(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
    require_client_cert: bool,
) -> Result<ServerTls, TlsError> {
    let certs = load_certs(FileKind::Certificate, cert_file)?;
    let key = load_key(key_file)?;
    let provider = provider();
    let verifier = match client_ca_file {
        Some(ca) => {
            let builder =
                WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider.clone());
            let builder = if require_client_cert {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            builder.build().map_err(TlsError::Verifier)?
        }
        None if require_client_cert => {
            return Err(TlsError::NeedsCa("requiring client certificates"))
        }
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let end_point_hash = server_end_point_hash(&certs[0]);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|error| TlsError::KeyPair {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
            error,
        })?;
    // rustls only refuses a client that offers ALPN without "postgresql"; a client that
    // offers none (libpq before 17) is unaffected.
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    // PostgreSQL clients never resume sessions (the server disables tickets and its
    // cache), so tickets would be bytes sent for nothing and a cache memory for nothing.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(ServerTls {
        config: Arc::new(config),
        end_point_hash,
    })
}

/// `server_tls` without the channel binding data.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
    require_client_cert: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_tls(cert_file, key_file, client_ca_file, require_client_cert).map(|t| t.config)
}

/// How much of the server's certificate the pooler checks when it connects to PostgreSQL,
/// after libpq's sslmode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerVerify {
    /// prefer / require: encrypted, but any certificate is accepted. The handshake
    /// signatures are still checked, so the peer holds the key of what it presented.
    None,
    /// verify-ca: the certificate chains to the CA; the host name is not checked.
    Ca,
    /// verify-full: the chain, and the host name (or IP address) in subjectAltName.
    Full,
}

/// The server-facing config. `ca_file` is required for `Ca` and `Full` and unused for
/// `None`; `client_cert` is (certificate file, key file) for PostgreSQL's cert auth.
pub fn client_config(
    ca_file: Option<&Path>,
    verify: ServerVerify,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let supported = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match (verify, ca_file) {
        (ServerVerify::None, _) => Arc::new(AnyServerCert { supported }),
        (_, None) => return Err(TlsError::NeedsCa("server certificate verification")),
        (ServerVerify::Ca, Some(ca)) => Arc::new(ChainOnly {
            roots: load_roots(ca)?,
            supported,
        }),
        (ServerVerify::Full, Some(ca)) => {
            WebPkiServerVerifier::builder_with_provider(load_roots(ca)?, provider.clone())
                .build()
                .map_err(TlsError::Verifier)?
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Rustls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_cert {
        Some((cert_file, key_file)) => {
            let certs = load_certs(FileKind::Certificate, cert_file)?;
            let key = load_key(key_file)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|error| TlsError::KeyPair {
                    cert: cert_file.to_owned(),
                    key: key_file.to_owned(),
                    error,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    // PostgreSQL 17 accepts this, older servers ignore it.
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    // PostgreSQL turns session resumption off, so a cache would only hold dead sessions.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// sslmode=prefer/require: no certificate check, only proof of the key in the handshake.
#[derive(Debug)]
struct AnyServerCert {
    supported: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.supported)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.supported)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.supported.supported_schemes()
    }
}

/// sslmode=verify-ca: webpki's chain check (validity, key usage, path to a root) without
/// the name check, which is the one thing verify-ca leaves out.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    supported: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.supported.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.supported)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.supported)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.supported.supported_schemes()
    }
}

/// The CN of the client's certificate. rustls only exposes a certificate that passed the
/// verifier, so with no client CA configured this is always `None`.
pub fn peer_cert_common_name(conn: &ServerConnection) -> Option<String> {
    cert_common_name(conn.peer_certificates()?.first()?)
}

/// The tls-server-end-point binding data of the server we connected to, for
/// SCRAM-SHA-256-PLUS towards PostgreSQL.
pub fn peer_end_point_hash(conn: &ClientConnection) -> Option<Vec<u8>> {
    server_end_point_hash(conn.peer_certificates()?.first()?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeProgress {
    /// The handshake is over. Plaintext may already be buffered (the peer's first message
    /// can arrive with its last handshake flight), so call `read` next even without a new
    /// readable event; some output may also still wait for `flush_tls`.
    Done,
    /// Waiting for the socket (readable or writable).
    InProgress,
}

/// A rustls connection over a socket the caller owns and passes to every call.
pub struct TlsStream<C> {
    pub conn: C,
    eof: bool,
}

impl TlsStream<ServerConnection> {
    /// The client-facing side, after we sent 'S'.
    pub fn accept(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(Self::new(
            ServerConnection::new(config).map_err(TlsError::Rustls)?,
        ))
    }
}

impl TlsStream<ClientConnection> {
    /// The server-facing side, after PostgreSQL answered 'S'. `host` is the configured
    /// host name or IP address: verify-full checks it, and a DNS name is sent as SNI.
    pub fn connect(config: Arc<ClientConfig>, host: &str) -> Result<Self, TlsError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError::InvalidServerName(host.to_owned()))?;
        Ok(Self::new(
            ClientConnection::new(config, name).map_err(TlsError::Rustls)?,
        ))
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    // InvalidData and the rustls error inside, so the caller can downcast to tell a
    // failed certificate check from a broken socket.
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<C, D> TlsStream<C>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    pub fn new(mut conn: C) -> Self {
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        TlsStream { conn, eof: false }
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether TLS output waits for the socket to become writable.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Hands over TLS bytes the caller already read from the socket. Output they cause
    /// (handshake messages, an alert) goes out with the next `handshake_step` or
    /// `flush_tls`.
    pub fn feed_tls(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.conn.read_tls(&mut bytes)? == 0 {
                break;
            }
            self.conn.process_new_packets().map_err(tls_error)?;
        }
        Ok(())
    }

    /// Moves the handshake as far as the socket allows.
    pub fn handshake_step<S: Read + Write>(
        &mut self,
        sock: &mut S,
    ) -> io::Result<HandshakeProgress> {
        loop {
            self.flush_tls(sock)?;
            if !self.conn.is_handshaking() {
                return Ok(HandshakeProgress::Done);
            }
            if !self.conn.wants_read() {
                // Blocked on output, which a writable event will resume.
                return Ok(HandshakeProgress::InProgress);
            }
            match self.conn.read_tls(sock) {
                Ok(0) => {
                    self.eof = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during the TLS handshake",
                    ));
                }
                Ok(_) => self.process(sock)?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(HandshakeProgress::InProgress)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads plaintext: buffered plaintext first, then from the socket until there is some.
    /// WouldBlock when neither has any; Ok(0) at the end of the stream, whether the peer
    /// sent close_notify or just closed the socket (PostgreSQL's framing already shows a
    /// cut-off message, and libpq often skips close_notify); also Ok(0) for an empty `buf`.
    /// A TLS error (a bad record, an alert) is InvalidData wrapping the `rustls::Error`.
    pub fn read<S: Read + Write>(&mut self, sock: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.conn.read_tls(sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.flush_quietly(sock);
                    return Err(e);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.process(sock)?;
        }
    }

    /// Encrypts as much of `data` as the send buffer takes and writes what the socket
    /// takes. Returns the plaintext bytes accepted, or WouldBlock when none were because
    /// the socket is full (a writable event follows; then call `flush_tls` or `write`).
    /// Before the handshake is done, data is buffered up to `SEND_BUFFER_LIMIT` and sent
    /// when it completes; the pooler does not need that.
    pub fn write<S: Read + Write>(&mut self, sock: &mut S, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.flush_tls(sock)?;
        let n = self.conn.writer().write(data)?;
        self.flush_tls(sock)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Writes pending TLS output. True when nothing is left pending.
    pub fn flush_tls<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.explain_write_error(sock, e)),
            }
        }
        Ok(true)
    }

    /// Queues close_notify and flushes. True when it went out completely.
    pub fn close<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<bool> {
        self.conn.send_close_notify();
        self.flush_tls(sock)
    }

    fn process<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<()> {
        match self.conn.process_new_packets() {
            Ok(_) => {
                // Handshake replies and key updates are produced while reading.
                self.flush_quietly(sock);
                Ok(())
            }
            Err(e) => {
                // rustls queued an alert saying why; the peer deserves to see it.
                self.flush_quietly(sock);
                Err(tls_error(e))
            }
        }
    }

    /// A failed write is reported later by `write` or `flush_tls`; here the read side
    /// has its own result to return.
    fn flush_quietly<S: Read + Write>(&mut self, sock: &mut S) {
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }

    /// A peer that rejects us sends an alert and closes, so our write fails with EPIPE or
    /// ECONNRESET while the reason sits unread in the socket. Prefer the reason.
    fn explain_write_error<S: Read + Write>(&mut self, sock: &mut S, e: io::Error) -> io::Error {
        if matches!(self.conn.read_tls(sock), Ok(n) if n > 0) {
            if let Err(tls) = self.conn.process_new_packets() {
                return tls_error(tls);
            }
        }
        e
    }
}

#[cfg(test)]
mod tests;
