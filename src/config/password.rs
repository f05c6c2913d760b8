//! What a configured password is: a SCRAM secret, an md5 hash, plain text, or
//! nothing. Only the shape is checked here; the auth module does the crypto.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKind {
    /// `""`: only usable when the client need not prove anything.
    Empty,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as in pg_authid.
    ScramSha256,
    /// `md5` followed by 32 hex digits: md5(password || user), as in pg_authid.
    Md5,
    Plain,
}

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
const SHA256_LEN: usize = 32;

impl PasswordKind {
    /// Classifies a stored password. A value that starts like a SCRAM secret but
    /// is malformed is an error rather than a plain password: that is a
    /// copy-paste accident, and accepting it would make the secret itself the
    /// password.
    pub fn of(password: &str) -> Result<PasswordKind, String> {
        if password.is_empty() {
            Ok(PasswordKind::Empty)
        } else if let Some(secret) = password.strip_prefix(SCRAM_PREFIX) {
            check_scram_secret(secret).map(|()| PasswordKind::ScramSha256)
        } else if is_md5_hash(password) {
            Ok(PasswordKind::Md5)
        } else {
            Ok(PasswordKind::Plain)
        }
    }
}

fn is_md5_hash(password: &str) -> bool {
    password
        .strip_prefix("md5")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_scram_secret(secret: &str) -> Result<(), String> {
    let malformed = |detail: &str| {
        format!("malformed SCRAM secret ({detail}); expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>")
    };
    let (iterations_and_salt, keys) = secret
        .split_once('$')
        .ok_or_else(|| malformed("no '$' before the keys"))?;
    let (iterations, salt) = iterations_and_salt
        .split_once(':')
        .ok_or_else(|| malformed("no ':' between iterations and salt"))?;
    match iterations.parse::<u32>() {
        Ok(count) if count > 0 && iterations.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return Err(malformed("iterations is not a positive integer")),
    }
    let salt = STANDARD
        .decode(salt)
        .map_err(|_| malformed("salt is not base64"))?;
    if salt.is_empty() {
        return Err(malformed("salt is empty"));
    }
    let (stored_key, server_key) = keys
        .split_once(':')
        .ok_or_else(|| malformed("no ':' between StoredKey and ServerKey"))?;
    for (name, key) in [("StoredKey", stored_key), ("ServerKey", server_key)] {
        match STANDARD.decode(key) {
            Ok(bytes) if bytes.len() == SHA256_LEN => {}
            _ => return Err(malformed(&format!("{name} is not 32 bytes of base64"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret PostgreSQL derives for the password "secret" with this salt.
    const SCRAM_SECRET: &str = "SCRAM-SHA-256$4096:5Ksb4xvYr4OwrXdkWmk6Sg==$b9FETFy8NwaqbR/iIwqwk2u1VBH16yn5qozO1OFTQtU=:iY/S2q1WjvKMvcqk2+332skiuLfURvRNdSnlOBu+x1Q=";

    #[test]
    fn classifies_passwords() {
        assert_eq!(PasswordKind::of(""), Ok(PasswordKind::Empty));
        assert_eq!(
            PasswordKind::of(SCRAM_SECRET),
            Ok(PasswordKind::ScramSha256)
        );
        assert_eq!(
            PasswordKind::of("md54a0a68b43b6cd5cf266fa02f196e2371"),
            Ok(PasswordKind::Md5)
        );
        assert_eq!(PasswordKind::of("md5hello"), Ok(PasswordKind::Plain));
        assert_eq!(
            PasswordKind::of("md54a0a68b43b6cd5cf266fa02f196e2371x"),
            Ok(PasswordKind::Plain)
        );
        assert_eq!(PasswordKind::of("hunter2"), Ok(PasswordKind::Plain));
    }

    #[test]
    fn rejects_malformed_scram_secrets() {
        let salt_and_keys = SCRAM_SECRET.trim_start_matches("SCRAM-SHA-256$4096:");
        for bad in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:...",
            "SCRAM-SHA-256$4096:abc$def",
            &format!("SCRAM-SHA-256$0:{salt_and_keys}"),
            &format!("SCRAM-SHA-256$-1:{salt_and_keys}"),
            &format!("SCRAM-SHA-256$+5:{salt_and_keys}"),
            &format!("SCRAM-SHA-256$x:{salt_and_keys}"),
            &SCRAM_SECRET.replace("5Ksb4xvYr4OwrXdkWmk6Sg==", "!!!"),
            &SCRAM_SECRET.replace("5Ksb4xvYr4OwrXdkWmk6Sg==", ""),
            &SCRAM_SECRET.replace(":iY/S", ":iY"),
            &SCRAM_SECRET.replace("=:", "="),
        ] {
            assert!(PasswordKind::of(bad).is_err(), "{bad} was accepted");
        }
    }
}
