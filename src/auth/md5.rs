//! PostgreSQL's `md5` password authentication.
//!
//! Only ever compares against `"md5" + 32 hex` strings: plain-text stored
//! passwords are not supported (PostgreSQL itself dropped them in 10).

use ::md5::{Digest, Md5};

use super::ct_eq;

const PREFIX: &str = "md5";

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(PREFIX.len() + 32);
    out.push_str(PREFIX);
    for b in digest.iter() {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out
}

fn hex_digit(n: u8) -> char {
    // PostgreSQL emits lowercase and compares the client's answer with
    // strcmp, so the case here is part of the protocol.
    char::from(b"0123456789abcdef"[usize::from(n & 0x0f)])
}

/// `"md5" + hex(md5(password + user))`, the form PostgreSQL stores in
/// `pg_authid.rolpassword`.
pub fn md5_password_hash(user: &str, password: &str) -> String {
    md5_hex(&[password.as_bytes(), user.as_bytes()])
}

/// The PasswordMessage payload a client sends in answer to
/// AuthenticationMD5Password: `"md5" + hex(md5(hex_part + salt))`.
///
/// `stored_hash` is the 35-character `"md5..."` string. The hex part is
/// hashed exactly as stored (PostgreSQL does the same), so a stored hash
/// with uppercase digits yields a different answer than its lowercase twin.
pub fn md5_salted_response(stored_hash: &str, salt: [u8; 4]) -> String {
    let hex_part = stored_hash.strip_prefix(PREFIX).unwrap_or(stored_hash);
    md5_hex(&[hex_part.as_bytes(), &salt])
}

/// Checks a client's PasswordMessage payload (without the trailing NUL)
/// against a stored md5 hash. The content comparison is constant-time; the
/// length is not secret.
pub fn md5_verify(stored_hash: &str, salt: [u8; 4], client_response: &[u8]) -> bool {
    if !is_md5_hash(stored_hash) {
        return false;
    }
    let expected = md5_salted_response(stored_hash, salt);
    ct_eq(expected.as_bytes(), client_response)
}

/// `"md5"` followed by exactly 32 hex digits (either case, as PostgreSQL's
/// own check accepts).
pub fn is_md5_hash(s: &str) -> bool {
    match s.strip_prefix(PREFIX) {
        Some(hex) => hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Produced by PostgreSQL 15: SET password_encryption='md5';
    // CREATE ROLE alice LOGIN PASSWORD 's3cret pw'; then read pg_authid.
    const PG_ALICE: &str = "md53b1ac2653b499f0abbc1b63dc42c150e";

    #[test]
    fn matches_postgres_stored_hash() {
        assert_eq!(md5_password_hash("alice", "s3cret pw"), PG_ALICE);
        assert!(is_md5_hash(PG_ALICE));
    }

    #[test]
    fn salted_round_trip() {
        let salt = [0x01, 0x02, 0xfe, 0xff];
        let resp = md5_salted_response(PG_ALICE, salt);
        assert_eq!(resp.len(), 35);
        assert!(resp.starts_with("md5"));
        assert!(md5_verify(PG_ALICE, salt, resp.as_bytes()));
        assert!(!md5_verify(PG_ALICE, [0, 2, 0xfe, 0xff], resp.as_bytes()));
        let wrong = md5_salted_response(&md5_password_hash("alice", "nope"), salt);
        assert!(!md5_verify(PG_ALICE, salt, wrong.as_bytes()));
    }

    #[test]
    fn known_salted_value() {
        // md5("3b1ac2653b499f0abbc1b63dc42c150e" || "\x01\x02\x03\x04"),
        // computed independently with Python's hashlib.
        let resp = md5_salted_response(PG_ALICE, [1, 2, 3, 4]);
        assert_eq!(resp, KNOWN_SALTED);
    }
    const KNOWN_SALTED: &str = "md5e51dbe01a4378c5622479a1e930ef825";

    #[test]
    fn verify_rejects_garbage() {
        let salt = [9, 9, 9, 9];
        let good = md5_salted_response(PG_ALICE, salt);
        assert!(!md5_verify(PG_ALICE, salt, b""));
        assert!(!md5_verify(PG_ALICE, salt, &good.as_bytes()[..34]));
        let mut long = good.clone().into_bytes();
        long.push(0);
        assert!(!md5_verify(PG_ALICE, salt, &long));
        assert!(!md5_verify(PG_ALICE, salt, &[0xff, 0xfe, 0x00]));
        // Plain-text "stored" passwords are never accepted.
        assert!(!md5_verify("s3cret pw", salt, b"s3cret pw"));
    }

    #[test]
    fn md5_hash_shape() {
        assert!(is_md5_hash("md5AABBCCDDEEFF00112233445566778899"));
        assert!(!is_md5_hash("md5"));
        assert!(!is_md5_hash("md53b1ac2653b499f0abbc1b63dc42c150"));
        assert!(!is_md5_hash("md53b1ac2653b499f0abbc1b63dc42c150eX"));
        assert!(!is_md5_hash("md53b1ac2653b499f0abbc1b63dc42c150g"));
        assert!(!is_md5_hash("MD53b1ac2653b499f0abbc1b63dc42c150e"));
        assert!(!is_md5_hash("SCRAM-SHA-256$4096:abc"));
        assert!(!is_md5_hash("md5ääääääääääääääää"));
    }
}
