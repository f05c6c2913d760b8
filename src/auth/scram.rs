//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both as the
//! server (the pooler authenticating a client) and as the client (the pooler
//! logging in to PostgreSQL).
//!
//! All inputs are untrusted bytes; every parse failure is a [`ScramError`].
//!
//! SASLprep is not applied to passwords: they are used as their raw UTF-8
//! bytes. That is exactly what PostgreSQL does for ASCII passwords, and for
//! non-ASCII passwords that SASLprep leaves unchanged (the usual case: text
//! already in NFC/NFKC without non-ASCII spaces, soft hyphens or zero-width
//! characters). A password that SASLprep would rewrite yields a different
//! verifier than PostgreSQL's, so logins with it fail rather than succeed
//! wrongly.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::ct_eq;
use super::random::fill_random;

/// SASL mechanism name without channel binding.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// SASL mechanism name with channel binding.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// PostgreSQL's default `scram_iterations`.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Highest iteration count [`ScramClient`] runs PBKDF2 for. A server (or
/// anything impersonating one) picks the count, and each iteration is two
/// SHA-256 compressions, so this bounds the CPU one login can burn to a few
/// seconds. PostgreSQL's default is 4096.
pub const MAX_CLIENT_ITERATIONS: u32 = 10_000_000;
/// The only channel-binding type PostgreSQL implements.
pub const CB_TLS_SERVER_END_POINT: &str = "tls-server-end-point";

/// Same length libpq and the PostgreSQL server use.
const NONCE_RAW_LEN: usize = 18;
const SECRET_PREFIX: &str = "SCRAM-SHA-256$";

type HmacSha256 = Hmac<Sha256>;

/// A stored SCRAM-SHA-256 verifier, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramSecret {
    // The keys allow an offline dictionary attack (StoredKey) or
    // impersonating the server (ServerKey), so they stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt", &B64.encode(&self.salt))
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

impl ScramSecret {
    /// Parses `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
    ///
    /// Stricter than PostgreSQL in two places, both impossible for verifiers
    /// PostgreSQL generates: the iteration count must be a plain decimal in
    /// `1..=u32::MAX`, and the salt must not be empty.
    pub fn parse(s: &str) -> Option<ScramSecret> {
        let rest = s.strip_prefix(SECRET_PREFIX)?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let iterations = parse_decimal_u32(iterations).filter(|&i| i >= 1)?;
        let salt = B64.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(ScramSecret {
            iterations,
            salt,
            stored_key: decode_key(stored_key)?,
            server_key: decode_key(server_key)?,
        })
    }

    /// Derives a verifier from a plain password with PBKDF2-HMAC-SHA-256
    /// (no SASLprep; see the module docs). An iteration count of 0 is
    /// treated as 1 so the result always round-trips through [`parse`].
    ///
    /// [`parse`]: ScramSecret::parse
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> ScramSecret {
        let iterations = iterations.max(1);
        let salted = salted_password(password.as_bytes(), salt, iterations);
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, &[b"Server Key"]),
        }
    }

    /// Formats in PostgreSQL's `rolpassword` form.
    pub fn to_pg_string(&self) -> String {
        format!(
            "{SECRET_PREFIX}{}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug)]
pub enum ScramError {
    /// The peer's message does not follow the SCRAM grammar.
    Malformed(&'static str),
    /// The nonce in the peer's message is not the one negotiated.
    NonceMismatch,
    /// The client's proof is wrong: the password is wrong. Maps to SQLSTATE
    /// 28P01 (invalid_password).
    WrongProof,
    /// The client asked for channel binding (`p=...`), or a binding type,
    /// that this exchange was not set up for.
    ChannelBindingUnsupported,
    /// The channel-binding flag or data disagrees with what was negotiated.
    ChannelBindingMismatch(&'static str),
    /// The server's signature is wrong: it does not know our verifier.
    ServerSignatureMismatch,
    /// The server ended the exchange with `e=<reason>`.
    ServerError(String),
    /// The server asked for more PBKDF2 iterations than
    /// [`MAX_CLIENT_ITERATIONS`].
    TooManyIterations(u32),
    /// A step was called twice, out of order, or after a failure.
    OutOfOrder,
}

impl ScramError {
    /// The SQLSTATE to report to a client when this error happens in
    /// [`ScramServer`]: 28P01 for a wrong password, 08P01 (protocol
    /// violation) for everything else.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ScramError::WrongProof => "28P01",
            _ => "08P01",
        }
    }
}

impl fmt::Display for ScramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScramError::Malformed(why) => write!(f, "malformed SCRAM message: {why}"),
            ScramError::NonceMismatch => f.write_str("SCRAM nonce mismatch"),
            ScramError::WrongProof => f.write_str("SCRAM client proof is invalid (wrong password)"),
            ScramError::ChannelBindingUnsupported => {
                f.write_str("SCRAM channel binding is not supported on this connection")
            }
            ScramError::ChannelBindingMismatch(why) => {
                write!(f, "SCRAM channel binding check failed: {why}")
            }
            ScramError::ServerSignatureMismatch => {
                f.write_str("SCRAM server signature is invalid (server does not know the password)")
            }
            ScramError::ServerError(why) => write!(f, "SCRAM server error: {why}"),
            ScramError::TooManyIterations(n) => write!(
                f,
                "SCRAM iteration count {n} exceeds the limit of {MAX_CLIENT_ITERATIONS}"
            ),
            ScramError::OutOfOrder => f.write_str("SCRAM exchange step called out of order"),
        }
    }
}

impl std::error::Error for ScramError {}

/// What the server knows about channel binding for one exchange. This is the
/// seam for `SCRAM-SHA-256-PLUS` over TLS: the caller decides which
/// mechanisms it advertised and which one the client picked, and passes the
/// `tls-server-end-point` data (the hash of the server certificate, RFC 5929)
/// when the client picked the PLUS variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Only `SCRAM-SHA-256` was advertised (no TLS, or binding not wired up).
    /// The client may send `n` or `y`.
    NotOffered,
    /// `SCRAM-SHA-256-PLUS` was advertised but the client chose plain
    /// `SCRAM-SHA-256`. A `y` flag then means someone stripped the PLUS
    /// mechanism from our list, so it is rejected as a downgrade.
    OfferedNotSelected,
    /// The client chose `SCRAM-SHA-256-PLUS`; it must send
    /// `p=tls-server-end-point` and echo this data in `c=`.
    TlsServerEndPoint(Vec<u8>),
}

impl ChannelBinding {
    /// The mechanism list for AuthenticationSASL, strongest first.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        match self {
            ChannelBinding::NotOffered => &[MECHANISM],
            _ => &[MECHANISM_PLUS, MECHANISM],
        }
    }
}

enum ServerState {
    Initial,
    FirstSent {
        client_first_bare: String,
        server_first: String,
        nonce: String,
        /// gs2 header plus channel-binding data: what `c=` must decode to.
        cbind_input: Vec<u8>,
    },
    Done,
}

/// Server side of SCRAM-SHA-256: the pooler authenticating a client.
pub struct ScramServer {
    secret: ScramSecret,
    server_nonce: String,
    channel_binding: ChannelBinding,
    state: ServerState,
}

impl ScramServer {
    /// A server without channel binding and with a fresh random nonce.
    pub fn new(secret: ScramSecret) -> ScramServer {
        Self::new_with_channel_binding(secret, ChannelBinding::NotOffered)
    }

    /// Fixed server nonce, for tests. It must be printable ASCII without
    /// commas, or the server-first-message will be unparseable.
    pub fn new_with_nonce(secret: ScramSecret, server_nonce: &str) -> ScramServer {
        ScramServer {
            secret,
            server_nonce: server_nonce.to_owned(),
            channel_binding: ChannelBinding::NotOffered,
            state: ServerState::Initial,
        }
    }

    /// A server with a fresh random nonce and the given channel-binding
    /// situation (see [`ChannelBinding`]).
    pub fn new_with_channel_binding(secret: ScramSecret, cb: ChannelBinding) -> ScramServer {
        ScramServer {
            secret,
            server_nonce: random_nonce(),
            channel_binding: cb,
            state: ServerState::Initial,
        }
    }

    /// Takes the SASLInitialResponse data (client-first-message) and returns
    /// the server-first-message for AuthenticationSASLContinue.
    ///
    /// The user name in `n=` is ignored, as PostgreSQL does: the startup
    /// packet's user is authoritative.
    pub fn server_first(&mut self, client_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ServerState::Initial) {
            return Err(ScramError::OutOfOrder);
        }
        // Any failure ends the exchange; only success moves it forward.
        self.state = ServerState::Done;

        let msg = as_message(client_first)?;
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("missing gs2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("missing gs2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "authorization identity (a=) is not supported",
            ));
        }
        let gs2_header = &msg[..msg.len() - bare.len()];
        let cbind_input = self.cbind_input(flag, gs2_header)?;

        let mut attrs = bare.split(',');
        let first = attrs.next().unwrap_or("");
        if first.starts_with("m=") {
            return Err(ScramError::Malformed(
                "mandatory extensions (m=) are not supported",
            ));
        }
        attr_value(Some(first), 'n', "missing user name (n=)")?;
        let client_nonce = attr_value(attrs.next(), 'r', "missing nonce (r=)")?;
        if client_nonce.is_empty() || !is_printable(client_nonce) {
            return Err(ScramError::Malformed("invalid client nonce"));
        }
        for ext in attrs {
            check_extension(ext)?;
        }

        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.secret.salt),
            self.secret.iterations
        );
        let out = server_first.clone().into_bytes();
        self.state = ServerState::FirstSent {
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
            cbind_input,
        };
        Ok(out)
    }

    /// What `c=` must decode to, given the client's gs2 flag.
    fn cbind_input(&self, flag: &str, gs2_header: &str) -> Result<Vec<u8>, ScramError> {
        let mut input = gs2_header.as_bytes().to_vec();
        match (flag, &self.channel_binding) {
            ("n", ChannelBinding::TlsServerEndPoint(_))
            | ("y", ChannelBinding::TlsServerEndPoint(_)) => {
                Err(ScramError::ChannelBindingMismatch(
                    "client selected SCRAM-SHA-256-PLUS but sent no channel binding",
                ))
            }
            ("y", ChannelBinding::OfferedNotSelected) => Err(ScramError::ChannelBindingMismatch(
                "client supports channel binding but thinks the server does not (downgrade?)",
            )),
            ("n", _) | ("y", _) => Ok(input),
            (f, cb) => {
                let name = f
                    .strip_prefix("p=")
                    .ok_or(ScramError::Malformed("invalid gs2 channel-binding flag"))?;
                match cb {
                    ChannelBinding::TlsServerEndPoint(data) if name == CB_TLS_SERVER_END_POINT => {
                        input.extend_from_slice(data);
                        Ok(input)
                    }
                    ChannelBinding::OfferedNotSelected => Err(ScramError::ChannelBindingMismatch(
                        "client selected SCRAM-SHA-256 but sent channel binding",
                    )),
                    _ => Err(ScramError::ChannelBindingUnsupported),
                }
            }
        }
    }

    /// Takes the client-final-message and returns the server-final-message
    /// (`v=...`, for AuthenticationSASLFinal) together with the client's
    /// ClientKey. The ClientKey plus the verifier's ServerKey are enough to
    /// log in to PostgreSQL as this user with [`ScramCredential::Keys`].
    pub fn server_final(&mut self, client_final: &[u8]) -> Result<(Vec<u8>, [u8; 32]), ScramError> {
        let ServerState::FirstSent {
            client_first_bare,
            server_first,
            nonce,
            cbind_input,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };

        let msg = as_message(client_final)?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("missing proof (p=)"))?;
        if proof.contains(',') {
            return Err(ScramError::Malformed(
                "proof (p=) must be the last attribute",
            ));
        }
        let mut attrs = without_proof.split(',');
        let cbind = attr_value(attrs.next(), 'c', "missing channel binding (c=)")?;
        let cbind = B64
            .decode(cbind)
            .map_err(|_| ScramError::Malformed("invalid base64 in channel binding (c=)"))?;
        if cbind != cbind_input {
            return Err(ScramError::ChannelBindingMismatch(
                "channel-binding data (c=) does not match",
            ));
        }
        let their_nonce = attr_value(attrs.next(), 'r', "missing nonce (r=)")?;
        if !ct_eq(their_nonce.as_bytes(), nonce.as_bytes()) {
            return Err(ScramError::NonceMismatch);
        }
        for ext in attrs {
            check_extension(ext)?;
        }
        let proof = decode_key(proof).ok_or(ScramError::Malformed("invalid proof (p=)"))?;

        let auth_message = [
            client_first_bare.as_bytes(),
            b",",
            server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac_sha256(&self.secret.stored_key, &auth_message);
        let client_key = xor32(&proof, &client_signature);
        if !ct_eq(&sha256(&client_key), &self.secret.stored_key) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac_sha256(&self.secret.server_key, &auth_message);
        let out = format!("v={}", B64.encode(server_signature)).into_bytes();
        Ok((out, client_key))
    }
}

/// `(ClientKey, ServerKey, salt, iterations)`, see [`ScramClient::derived_keys`].
pub type DerivedKeys = ([u8; 32], [u8; 32], Vec<u8>, u32);

/// What the pooler logs in to PostgreSQL with.
#[derive(Clone)]
pub enum ScramCredential {
    /// A plain password; costs one PBKDF2 per login.
    Password(String),
    /// Keys recovered from a client's login ([`ScramServer::server_final`]
    /// plus the verifier's ServerKey) or cached from
    /// [`ScramClient::derived_keys`]. Valid as long as the role's verifier
    /// in PostgreSQL is unchanged.
    Keys {
        client_key: [u8; 32],
        server_key: [u8; 32],
    },
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScramCredential::Password(_) => f.write_str("Password(<redacted>)"),
            ScramCredential::Keys { .. } => f.write_str("Keys(<redacted>)"),
        }
    }
}

enum ClientState {
    Initial,
    FinalSent {
        client_key: [u8; 32],
        server_key: [u8; 32],
        salt: Vec<u8>,
        iterations: u32,
        server_signature: [u8; 32],
    },
    Failed,
}

/// Client side of SCRAM-SHA-256: the pooler logging in to PostgreSQL.
pub struct ScramClient {
    cred: ScramCredential,
    /// Already saslname-escaped. Empty for PostgreSQL, like libpq.
    user: String,
    client_nonce: String,
    /// No channel binding yet; these two make adding it a constructor change.
    gs2_header: String,
    cbind_data: Vec<u8>,
    state: ClientState,
}

impl ScramClient {
    /// A client with a fresh random nonce.
    pub fn new(cred: ScramCredential) -> ScramClient {
        Self::new_with_nonce(cred, &random_nonce())
    }

    /// Fixed client nonce, for tests. It must be printable ASCII without
    /// commas.
    pub fn new_with_nonce(cred: ScramCredential, client_nonce: &str) -> ScramClient {
        ScramClient {
            cred,
            user: String::new(),
            client_nonce: client_nonce.to_owned(),
            gs2_header: "n,,".to_owned(),
            cbind_data: Vec::new(),
            state: ClientState::Initial,
        }
    }

    /// The client-first-message for SASLInitialResponse:
    /// `n,,n=,r=<nonce>`. The user name is left empty as libpq does, since
    /// PostgreSQL takes it from the startup packet.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare()).into_bytes()
    }

    fn client_first_bare(&self) -> String {
        format!("n={},r={}", self.user, self.client_nonce)
    }

    /// Takes the AuthenticationSASLContinue data (server-first-message) and
    /// returns the client-final-message for SASLResponse.
    ///
    /// With [`ScramCredential::Password`] this runs PBKDF2 with the server's
    /// iteration count (up to [`MAX_CLIENT_ITERATIONS`]), which can take
    /// milliseconds to seconds; with [`ScramCredential::Keys`] it is cheap
    /// and the salt and iteration count are only validated.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, ClientState::Initial) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = ClientState::Failed;

        let msg = as_message(server_first)?;
        let mut attrs = msg.split(',');
        let first = attrs.next().unwrap_or("");
        if first.starts_with("m=") {
            return Err(ScramError::Malformed(
                "mandatory extensions (m=) are not supported",
            ));
        }
        let nonce = attr_value(Some(first), 'r', "missing nonce (r=)")?;
        if !is_printable(nonce) {
            return Err(ScramError::Malformed("invalid server nonce"));
        }
        // The server must extend our nonce, not merely echo it.
        if nonce.len() <= self.client_nonce.len()
            || !ct_eq(
                &nonce.as_bytes()[..self.client_nonce.len()],
                self.client_nonce.as_bytes(),
            )
        {
            return Err(ScramError::NonceMismatch);
        }
        let salt = attr_value(attrs.next(), 's', "missing salt (s=)")?;
        let salt = B64
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(ScramError::Malformed("invalid salt (s=)"))?;
        let iterations = attr_value(attrs.next(), 'i', "missing iteration count (i=)")?;
        let iterations = parse_decimal_u32(iterations)
            .filter(|&i| i >= 1)
            .ok_or(ScramError::Malformed("invalid iteration count (i=)"))?;
        for ext in attrs {
            check_extension(ext)?;
        }

        let (client_key, server_key) = match &self.cred {
            ScramCredential::Password(password) => {
                if iterations > MAX_CLIENT_ITERATIONS {
                    return Err(ScramError::TooManyIterations(iterations));
                }
                let salted = salted_password(password.as_bytes(), &salt, iterations);
                (
                    hmac_sha256(&salted, &[b"Client Key"]),
                    hmac_sha256(&salted, &[b"Server Key"]),
                )
            }
            ScramCredential::Keys {
                client_key,
                server_key,
            } => (*client_key, *server_key),
        };
        let stored_key = sha256(&client_key);

        let mut cbind_input = self.gs2_header.as_bytes().to_vec();
        cbind_input.extend_from_slice(&self.cbind_data);
        let without_proof = format!("c={},r={nonce}", B64.encode(&cbind_input));
        let client_first_bare = self.client_first_bare();
        let auth_message = [
            client_first_bare.as_bytes(),
            b",",
            msg.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac_sha256(&stored_key, &auth_message);
        let proof = xor32(&client_key, &client_signature);
        let server_signature = hmac_sha256(&server_key, &auth_message);

        self.state = ClientState::FinalSent {
            client_key,
            server_key,
            salt,
            iterations,
            server_signature,
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the AuthenticationSASLFinal data. `Ok` means the server proved
    /// it holds our verifier; only then is the login trustworthy.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let ClientState::FinalSent {
            server_signature, ..
        } = &self.state
        else {
            return Err(ScramError::OutOfOrder);
        };
        let msg = as_message(server_final)?;
        let mut attrs = msg.split(',');
        let first = attrs.next().unwrap_or("");
        if let Some(reason) = first.strip_prefix("e=") {
            return Err(ScramError::ServerError(reason.to_owned()));
        }
        let verifier = attr_value(Some(first), 'v', "missing verifier (v=)")?;
        let verifier =
            decode_key(verifier).ok_or(ScramError::Malformed("invalid verifier (v=)"))?;
        for ext in attrs {
            check_extension(ext)?;
        }
        if !ct_eq(&verifier, server_signature) {
            return Err(ScramError::ServerSignatureMismatch);
        }
        Ok(())
    }

    /// `(ClientKey, ServerKey, salt, iterations)` used for this login, so the
    /// caller can cache them as [`ScramCredential::Keys`] and skip PBKDF2
    /// next time. `None` until [`client_final`] succeeded. Cache them only
    /// after [`verify_server_final`] succeeded: before that the salt and
    /// iteration count came from an unauthenticated peer.
    ///
    /// [`client_final`]: ScramClient::client_final
    /// [`verify_server_final`]: ScramClient::verify_server_final
    pub fn derived_keys(&self) -> Option<DerivedKeys> {
        match &self.state {
            ClientState::FinalSent {
                client_key,
                server_key,
                salt,
                iterations,
                ..
            } => Some((*client_key, *server_key, salt.clone(), *iterations)),
            _ => None,
        }
    }
}

fn random_nonce() -> String {
    let mut raw = [0u8; NONCE_RAW_LEN];
    fill_random(&mut raw);
    B64.encode(raw)
}

/// SCRAM messages are UTF-8 text; an embedded NUL would be cut off by
/// PostgreSQL's C-string parsing, so it is refused rather than guessed at.
fn as_message(bytes: &[u8]) -> Result<&str, ScramError> {
    let s = std::str::from_utf8(bytes).map_err(|_| ScramError::Malformed("not valid UTF-8"))?;
    if s.contains('\0') {
        return Err(ScramError::Malformed("contains a NUL byte"));
    }
    Ok(s)
}

/// The value of `<name>=<value>`, or `Malformed(missing)`.
fn attr_value<'a>(
    part: Option<&'a str>,
    name: char,
    missing: &'static str,
) -> Result<&'a str, ScramError> {
    part.and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix('='))
        .ok_or(ScramError::Malformed(missing))
}

/// Optional extensions are ignored but must at least look like attributes.
fn check_extension(part: &str) -> Result<(), ScramError> {
    let b = part.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'=' {
        Ok(())
    } else {
        Err(ScramError::Malformed("invalid attribute"))
    }
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E.
fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Plain decimal digits only: `str::parse` would also take a leading `+`.
fn parse_decimal_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn decode_key(s: &str) -> Option<[u8; 32]> {
    let v = B64.decode(s).ok()?;
    v.as_slice().try_into().ok()
}

fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
    out
}

/// HMAC-SHA-256 keyed with a 32-byte key. Zero-padding the key to the
/// 64-byte block is what HMAC does with short keys anyway, and it makes the
/// construction infallible (no `Result` from `new_from_slice` to unwrap).
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn xor32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(&ScramError) -> bool;

    // RFC 7677 section 3.
    const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    // Produced by PostgreSQL 15: SET password_encryption='scram-sha-256';
    // CREATE ROLE x LOGIN PASSWORD '<PG_PASSWORD>'; then read pg_authid.
    const PG_PASSWORD: &str = "correct horse battery staple";
    const PG_SECRET: &str = "SCRAM-SHA-256$4096:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=";
    // Same, with a non-ASCII password that SASLprep leaves unchanged
    // (UTF-8 database and client encoding).
    const PG_PASSWORD_UTF8: &str = "pässwörd";
    const PG_SECRET_UTF8: &str = "SCRAM-SHA-256$4096:WPkuBK0my4Le5S+Eu9my2Q==$6+ZyWolDkgBejfdbqDQsu+5fYRxgWzQhuqVRCx6K+DI=:XGQI3zQtlqiQONN9eJW8QQ5v++/z/OOtCyNl2I7+GHA=";

    fn rfc_secret() -> ScramSecret {
        // PBKDF2 is slow in debug builds and many tests need this secret.
        static SECRET: std::sync::OnceLock<ScramSecret> = std::sync::OnceLock::new();
        SECRET
            .get_or_init(|| {
                ScramSecret::from_password("pencil", &B64.decode(RFC_SALT).unwrap(), 4096)
            })
            .clone()
    }

    fn rfc_client() -> ScramClient {
        let mut c = ScramClient::new_with_nonce(
            ScramCredential::Password("pencil".into()),
            RFC_CLIENT_NONCE,
        );
        c.user = "user".into();
        c
    }

    /// Runs a full exchange; returns the ClientKey the server recovered.
    fn login(client: &mut ScramClient, server: &mut ScramServer) -> Result<[u8; 32], ScramError> {
        let first = server.server_first(&client.client_first())?;
        let fin = client.client_final(&first)?;
        let (server_final, client_key) = server.server_final(&fin)?;
        client.verify_server_final(&server_final)?;
        Ok(client_key)
    }

    #[test]
    fn rfc7677_client() {
        let mut c = rfc_client();
        assert_eq!(c.client_first(), RFC_CLIENT_FIRST.as_bytes());
        let fin = c.client_final(RFC_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(fin).unwrap(), RFC_CLIENT_FINAL);
        c.verify_server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
        let (ck, sk, salt, iters) = c.derived_keys().unwrap();
        assert_eq!(salt, B64.decode(RFC_SALT).unwrap());
        assert_eq!(iters, 4096);
        let secret = rfc_secret();
        assert_eq!(sha256(&ck), secret.stored_key);
        assert_eq!(sk, secret.server_key);
    }

    #[test]
    fn rfc7677_server() {
        let mut s = ScramServer::new_with_nonce(rfc_secret(), RFC_SERVER_NONCE);
        let first = s.server_first(RFC_CLIENT_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(first).unwrap(), RFC_SERVER_FIRST);
        let (fin, client_key) = s.server_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(fin).unwrap(), RFC_SERVER_FINAL);
        assert_eq!(sha256(&client_key), rfc_secret().stored_key);
    }

    #[test]
    fn default_client_first_is_libpq_style() {
        let c = ScramClient::new_with_nonce(ScramCredential::Password("x".into()), "abc");
        assert_eq!(c.client_first(), b"n,,n=,r=abc");
        assert!(c.derived_keys().is_none());
        let random = ScramClient::new(ScramCredential::Password("x".into()));
        let first = String::from_utf8(random.client_first()).unwrap();
        let nonce = first.strip_prefix("n,,n=,r=").unwrap();
        assert_eq!(nonce.len(), 24);
        assert!(is_printable(nonce));
    }

    #[test]
    fn round_trip_and_passthrough() {
        let secret = ScramSecret::from_password("hunter2", b"0123456789abcdef", 1000);
        let mut client = ScramClient::new(ScramCredential::Password("hunter2".into()));
        let mut server = ScramServer::new(secret.clone());
        let client_key = login(&mut client, &mut server).unwrap();
        let (ck, sk, salt, iters) = client.derived_keys().unwrap();
        assert_eq!(ck, client_key);
        assert_eq!(sk, secret.server_key);
        assert_eq!((salt.as_slice(), iters), (&b"0123456789abcdef"[..], 1000));

        // Passthrough: the key recovered from the client's login, plus the
        // verifier's ServerKey, logs in without the password.
        let mut relay = ScramClient::new(ScramCredential::Keys {
            client_key,
            server_key: secret.server_key,
        });
        let mut backend = ScramServer::new(secret.clone());
        assert_eq!(login(&mut relay, &mut backend).unwrap(), client_key);
        assert_eq!(relay.derived_keys().unwrap().0, client_key);
    }

    #[test]
    fn wrong_password() {
        let secret = ScramSecret::from_password("hunter2", b"salt", 64);
        let mut client = ScramClient::new(ScramCredential::Password("hunter3".into()));
        let mut server = ScramServer::new(secret);
        let err = login(&mut client, &mut server).unwrap_err();
        assert!(matches!(err, ScramError::WrongProof), "{err}");
        assert_eq!(err.sqlstate(), "28P01");
        // The exchange is over; no retry on the same server.
        assert!(matches!(
            server.server_final(b"c=biws,r=x,p=AAAA"),
            Err(ScramError::OutOfOrder)
        ));
    }

    #[test]
    fn wrong_keys_and_wrong_server() {
        let secret = ScramSecret::from_password("a", b"salt", 16);
        let other = ScramSecret::from_password("b", b"salt", 16);
        let mut client = ScramClient::new(ScramCredential::Keys {
            client_key: [7; 32],
            server_key: secret.server_key,
        });
        let mut server = ScramServer::new(secret.clone());
        assert!(matches!(
            login(&mut client, &mut server),
            Err(ScramError::WrongProof)
        ));

        // A server holding someone else's ServerKey is caught by the client.
        let mut client = ScramClient::new(ScramCredential::Password("a".into()));
        let mut server = ScramServer::new(ScramSecret {
            server_key: other.server_key,
            ..secret
        });
        let err = login(&mut client, &mut server).unwrap_err();
        assert!(matches!(err, ScramError::ServerSignatureMismatch), "{err}");
    }

    #[test]
    fn postgres_made_verifier() {
        for (secret_str, password) in [(PG_SECRET, PG_PASSWORD), (PG_SECRET_UTF8, PG_PASSWORD_UTF8)]
        {
            let secret = ScramSecret::parse(secret_str).unwrap();
            assert_eq!(secret.iterations, 4096);
            assert_eq!(secret.to_pg_string(), secret_str);
            assert_eq!(
                ScramSecret::from_password(password, &secret.salt, secret.iterations),
                secret
            );
            let mut client = ScramClient::new(ScramCredential::Password(password.into()));
            let mut server = ScramServer::new(secret);
            login(&mut client, &mut server).unwrap();
        }
    }

    #[test]
    fn secret_debug_redacts_keys() {
        let s = format!("{:?}", ScramSecret::parse(PG_SECRET).unwrap());
        assert!(!s.contains("t12Hz9r0"), "{s}");
        assert!(s.contains("4096"));
        let c = format!("{:?}", ScramCredential::Password(PG_PASSWORD.into()));
        assert!(!c.contains("horse"));
    }

    #[test]
    fn from_password_clamps_zero_iterations() {
        let s = ScramSecret::from_password("pw", b"salt", 0);
        assert_eq!(s.iterations, 1);
        assert_eq!(ScramSecret::parse(&s.to_pg_string()), Some(s));
    }

    #[test]
    fn secret_parse_rejects_malformed() {
        let good = PG_SECRET;
        assert!(ScramSecret::parse(good).is_some());
        let bad = [
            "",
            "md5abc",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-1$4096:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=",
            "SCRAM-SHA-256$4096:582wqk0hSgiftLXsUwpBZA==",
            "SCRAM-SHA-256$4096:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=",
            "SCRAM-SHA-256$0:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=",
            "SCRAM-SHA-256$-1:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=",
            "SCRAM-SHA-256$+4096:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=",
            "SCRAM-SHA-256$99999999999:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=",
            "SCRAM-SHA-256$4096:$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=",
            "SCRAM-SHA-256$4096:!!!$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=",
            // 31-byte StoredKey.
            "SCRAM-SHA-256$4096:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAls=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=",
            "SCRAM-SHA-256$4096:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s=$x",
            "SCRAM-SHA-256$4096:582wqk0hSgiftLXsUwpBZA==$t12Hz9r0LqzWkHXn5AfAulQUb2cFdPh0xmVKgBCAlsY=:cv69njr2urTq/XoPuD3a7pOhSEryBMeSQWV2kw8ht9s= ",
        ];
        for b in bad {
            assert_eq!(ScramSecret::parse(b), None, "{b}");
        }
    }

    fn server_after_first(client_first: &str) -> ScramServer {
        let mut s = ScramServer::new_with_nonce(rfc_secret(), RFC_SERVER_NONCE);
        s.server_first(client_first.as_bytes()).unwrap();
        s
    }

    #[test]
    fn server_first_rejects_malformed() {
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"x,,n=,r=abc",
            b"n,a=admin,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=",
            b"n,,n=,",
            b"n,,n=,r=",
            b"n,,n=,x=abc",
            b"n,,n=,r=ab c",
            b"n,,n=,r=abc,garbage",
            b"n,,n=,r=abc,=x",
            b"n,,n=,r=ab\xffc",
            b"n,,n=\xc3,r=abc",
            b"n,,n=,r=abc\0",
            b"\xff\xfe\xfd",
        ];
        for &c in cases {
            let mut s = ScramServer::new(rfc_secret());
            let err = s.server_first(c).unwrap_err();
            assert!(matches!(err, ScramError::Malformed(_)), "{c:?}: {err}");
            assert_eq!(err.sqlstate(), "08P01");
            // A failed step ends the exchange.
            assert!(matches!(
                s.server_first(RFC_CLIENT_FIRST.as_bytes()),
                Err(ScramError::OutOfOrder)
            ));
        }
        // Extensions after the nonce are tolerated; `y` is fine without PLUS.
        server_after_first("n,,n=,r=abc,x=1,y=2");
        server_after_first("y,,n=someone,r=abc");
    }

    #[test]
    fn server_final_rejects_malformed() {
        let nonce = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
        let proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let cases: Vec<(String, Check)> = vec![
            (String::new(), |e| matches!(e, ScramError::Malformed(_))),
            ("c=biws".into(), |e| matches!(e, ScramError::Malformed(_))),
            (format!("c=biws,r={nonce}"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={nonce},p={proof}"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("c=biws,p={proof}"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("c=!!,r={nonce},p={proof}"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("c=biws,r={nonce},p=!!!"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("c=biws,r={nonce},p=AAAA"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("c=biws,r={nonce},p={proof},x=1"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("c=biws,r={nonce},junk,p={proof}"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("c=biws,r={nonce}\u{0},p={proof}"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("c=eSws,r={nonce},p={proof}"), |e| {
                matches!(e, ScramError::ChannelBindingMismatch(_))
            }),
            (format!("c=biws,r={RFC_CLIENT_NONCE},p={proof}"), |e| {
                matches!(e, ScramError::NonceMismatch)
            }),
            (format!("c=biws,r={nonce}x,p={proof}"), |e| {
                matches!(e, ScramError::NonceMismatch)
            }),
            (
                format!("c=biws,r={nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                |e| matches!(e, ScramError::WrongProof),
            ),
        ];
        for (msg, expect) in cases {
            let mut s = server_after_first(RFC_CLIENT_FIRST);
            let err = s.server_final(msg.as_bytes()).unwrap_err();
            assert!(expect(&err), "{msg:?}: {err}");
        }
        let mut s = server_after_first(RFC_CLIENT_FIRST);
        assert!(matches!(
            s.server_final(b"c=biws,r=\xff,p=x"),
            Err(ScramError::Malformed(_))
        ));
        let mut s = ScramServer::new(rfc_secret());
        assert!(matches!(
            s.server_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(ScramError::OutOfOrder)
        ));
    }

    #[test]
    fn channel_binding() {
        // Not offered: p= is unsupported, y is accepted.
        let mut s = ScramServer::new(rfc_secret());
        assert!(matches!(
            s.server_first(b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::ChannelBindingUnsupported)
        ));

        let offered = || {
            ScramServer::new_with_channel_binding(rfc_secret(), ChannelBinding::OfferedNotSelected)
        };
        assert!(matches!(
            offered().server_first(b"y,,n=,r=abc"),
            Err(ScramError::ChannelBindingMismatch(_))
        ));
        assert!(matches!(
            offered().server_first(b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::ChannelBindingMismatch(_))
        ));
        assert!(offered().server_first(b"n,,n=,r=abc").is_ok());

        let cb = ChannelBinding::TlsServerEndPoint(vec![0xab; 32]);
        assert_eq!(cb.mechanisms(), &[MECHANISM_PLUS, MECHANISM]);
        assert_eq!(ChannelBinding::NotOffered.mechanisms(), &[MECHANISM]);
        let plus = || ScramServer::new_with_channel_binding(rfc_secret(), cb.clone());
        for first in [&b"n,,n=,r=abc"[..], b"y,,n=,r=abc"] {
            assert!(matches!(
                plus().server_first(first),
                Err(ScramError::ChannelBindingMismatch(_))
            ));
        }
        assert!(matches!(
            plus().server_first(b"p=tls-unique,,n=,r=abc"),
            Err(ScramError::ChannelBindingUnsupported)
        ));

        // A client that binds to the same data gets in; a different
        // certificate hash (a MITM terminating TLS) does not.
        let bound_client = |data: Vec<u8>| {
            let mut c = rfc_client();
            c.gs2_header = "p=tls-server-end-point,,".into();
            c.cbind_data = data;
            c
        };
        let mut server = plus();
        login(&mut bound_client(vec![0xab; 32]), &mut server).unwrap();
        let mut server = plus();
        let err = login(&mut bound_client(vec![0xcd; 32]), &mut server).unwrap_err();
        assert!(
            matches!(err, ScramError::ChannelBindingMismatch(_)),
            "{err}"
        );
    }

    #[test]
    fn client_final_rejects_malformed() {
        let n = RFC_CLIENT_NONCE;
        let cases: Vec<(String, Check)> = vec![
            (String::new(), |e| matches!(e, ScramError::Malformed(_))),
            (format!("r={n}xyz"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n}xyz,s={RFC_SALT}"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("m=1,r={n}xyz,s={RFC_SALT},i=4096"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("s={RFC_SALT},r={n}xyz,i=4096"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n}xyz,s=!!!,i=4096"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n}xyz,s=,i=4096"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n}xyz,s={RFC_SALT},i="), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n}xyz,s={RFC_SALT},i=0"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n}xyz,s={RFC_SALT},i=-5"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n}xyz,s={RFC_SALT},i=4096x"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (
                format!("r={n}xyz,s={RFC_SALT},i=99999999999999999999"),
                |e| matches!(e, ScramError::Malformed(_)),
            ),
            (format!("r={n}xyz,s={RFC_SALT},i=4000000000"), |e| {
                matches!(e, ScramError::TooManyIterations(4_000_000_000))
            }),
            (format!("r={n}xyz,s={RFC_SALT},i=4096,junk"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n}x y,s={RFC_SALT},i=4096"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (format!("r={n},s={RFC_SALT},i=4096"), |e| {
                matches!(e, ScramError::NonceMismatch)
            }),
            (format!("r=X{n},s={RFC_SALT},i=4096"), |e| {
                matches!(e, ScramError::NonceMismatch)
            }),
            ("r=rOpr,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(), |e| {
                matches!(e, ScramError::NonceMismatch)
            }),
            (format!("r={n}xyz,s={RFC_SALT},i=4096\0"), |e| {
                matches!(e, ScramError::Malformed(_))
            }),
        ];
        for (msg, expect) in cases {
            let mut c = rfc_client();
            let err = c.client_final(msg.as_bytes()).unwrap_err();
            assert!(expect(&err), "{msg:?}: {err}");
            assert!(c.derived_keys().is_none());
            assert!(matches!(
                c.client_final(RFC_SERVER_FIRST.as_bytes()),
                Err(ScramError::OutOfOrder)
            ));
        }
        let mut c = rfc_client();
        assert!(matches!(
            c.client_final(b"r=\xc3\x28,s=,i=1"),
            Err(ScramError::Malformed(_))
        ));

        // Keys need no PBKDF2, so a huge count costs nothing and is allowed.
        let mut c = ScramClient::new_with_nonce(
            ScramCredential::Keys {
                client_key: [1; 32],
                server_key: [2; 32],
            },
            n,
        );
        c.client_final(format!("r={n}xyz,s={RFC_SALT},i=4000000000").as_bytes())
            .unwrap();
        assert_eq!(c.derived_keys().unwrap().3, 4_000_000_000);
    }

    #[test]
    fn verify_server_final_rejects_malformed() {
        let c = rfc_client();
        assert!(matches!(
            c.verify_server_final(RFC_SERVER_FINAL.as_bytes()),
            Err(ScramError::OutOfOrder)
        ));

        let mut c = rfc_client();
        c.client_final(RFC_SERVER_FIRST.as_bytes()).unwrap();
        let cases: Vec<(&[u8], Check)> = vec![
            (b"", |e| matches!(e, ScramError::Malformed(_))),
            (b"v=", |e| matches!(e, ScramError::Malformed(_))),
            (b"v=!!!", |e| matches!(e, ScramError::Malformed(_))),
            (b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (b"x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", |e| {
                matches!(e, ScramError::Malformed(_))
            }),
            (
                b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,junk",
                |e| matches!(e, ScramError::Malformed(_)),
            ),
            (b"v=\xff", |e| matches!(e, ScramError::Malformed(_))),
            (b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", |e| {
                matches!(e, ScramError::ServerSignatureMismatch)
            }),
            (
                b"e=invalid-proof",
                |e| matches!(e, ScramError::ServerError(m) if m == "invalid-proof"),
            ),
        ];
        for (msg, expect) in cases {
            let err = c.verify_server_final(msg).unwrap_err();
            assert!(expect(&err), "{msg:?}: {err}");
        }
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=ext")
            .unwrap();
    }

    /// Every prefix and every single-byte corruption of valid messages must
    /// come back as `Ok` or `Err`, never a panic.
    #[test]
    fn truncated_and_corrupted_inputs_do_not_panic() {
        let keys = || ScramCredential::Keys {
            client_key: [1; 32],
            server_key: [2; 32],
        };
        let variants = |msg: &str| {
            let bytes = msg.as_bytes().to_vec();
            let mut out: Vec<Vec<u8>> = (0..=bytes.len()).map(|i| bytes[..i].to_vec()).collect();
            for i in 0..bytes.len() {
                for b in [0u8, b',', b'=', 0x80, 0xff] {
                    let mut m = bytes.clone();
                    m[i] = b;
                    out.push(m);
                }
            }
            out
        };
        for m in variants(RFC_CLIENT_FIRST) {
            let _ = ScramServer::new(rfc_secret()).server_first(&m);
        }
        for m in variants(RFC_CLIENT_FINAL) {
            let _ = server_after_first(RFC_CLIENT_FIRST).server_final(&m);
        }
        for m in variants(RFC_SERVER_FIRST) {
            let _ = ScramClient::new_with_nonce(keys(), RFC_CLIENT_NONCE).client_final(&m);
        }
        let mut c = ScramClient::new_with_nonce(keys(), RFC_CLIENT_NONCE);
        c.client_final(RFC_SERVER_FIRST.as_bytes()).unwrap();
        for m in variants(RFC_SERVER_FINAL) {
            let _ = c.verify_server_final(&m);
        }
        for m in variants(PG_SECRET) {
            if let Ok(s) = std::str::from_utf8(&m) {
                let _ = ScramSecret::parse(s);
            }
        }
    }

    #[test]
    fn errors_display() {
        for e in [
            ScramError::Malformed("x"),
            ScramError::NonceMismatch,
            ScramError::WrongProof,
            ScramError::ChannelBindingUnsupported,
            ScramError::ChannelBindingMismatch("y"),
            ScramError::ServerSignatureMismatch,
            ScramError::ServerError("z".into()),
            ScramError::TooManyIterations(5),
            ScramError::OutOfOrder,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }
}
