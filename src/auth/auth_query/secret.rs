//! The secret an auth_query returns, parsed once when it is fetched so a
//! cached login never re-parses it.

use std::fmt;

use crate::auth::md5::is_md5_hash;
use crate::auth::scram::ScramSecret;

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

/// A user's stored password hash, as `pg_authid.rolpassword` holds it.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// `"md5"` + 32 lower-case hex digits.
    Md5(String),
    Scram(ScramSecret),
}

impl Secret {
    /// For logs and the admin console: which method the secret allows.
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::Md5(_) => "md5",
            Secret::Scram(_) => "scram-sha-256",
        }
    }
}

impl fmt::Debug for Secret {
    // An md5 hash logs in as the user by itself (the md5 challenge needs
    // nothing else), and a SCRAM verifier allows an offline dictionary
    // attack: neither may reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Md5(_) => f.write_str("Secret::Md5(<redacted>)"),
            Secret::Scram(s) => f.debug_tuple("Secret::Scram").field(s).finish(),
        }
    }
}

/// Parses a `rolpassword` value. The error is meant for the operator's log
/// (the caller adds the user name) and never contains the value itself.
pub fn parse_secret(rolpassword: &str) -> Result<Secret, String> {
    if rolpassword.starts_with(SCRAM_PREFIX) {
        return ScramSecret::parse(rolpassword)
            .map(Secret::Scram)
            .ok_or_else(|| "malformed SCRAM-SHA-256 verifier".to_string());
    }
    if is_md5_hash(rolpassword) {
        // PostgreSQL salts the lower-case hex text, so an upper-case hash
        // (accepted by PostgreSQL's own check) must be normalised here or
        // every md5 login with it would fail.
        return Ok(Secret::Md5(rolpassword.to_ascii_lowercase()));
    }
    if rolpassword.is_empty() {
        return Err("empty password hash".to_string());
    }
    Err(
        "unrecognized password hash (neither a SCRAM-SHA-256 verifier nor an md5 hash; \
         a plain-text password stored by an old PostgreSQL?)"
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::md5::md5_password_hash;

    #[test]
    fn parses_scram_verifier() {
        let s = ScramSecret::from_password("pw", b"0123456789abcdef", 4096);
        match parse_secret(&s.to_pg_string()) {
            Ok(Secret::Scram(parsed)) => assert_eq!(parsed, s),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_md5_and_lowercases() {
        let h = md5_password_hash("alice", "pw");
        assert_eq!(parse_secret(&h), Ok(Secret::Md5(h.clone())));
        let upper = format!("md5{}", h[3..].to_ascii_uppercase());
        assert_eq!(parse_secret(&upper), Ok(Secret::Md5(h)));
    }

    #[test]
    fn rejects_other_values_without_echoing_them() {
        for bad in [
            "hunter2",
            "",
            "md5abc",
            "md5zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "SCRAM-SHA-256$4096:c2FsdA==$bad",
            "SCRAM-SHA-256$notanumber:c2FsdA==$a:b",
        ] {
            let err = parse_secret(bad).expect_err(bad);
            if !bad.is_empty() {
                assert!(!err.contains(bad), "{err:?} echoes {bad:?}");
            }
        }
        let plain = parse_secret("hunter2").expect_err("plain");
        assert!(plain.contains("unrecognized password hash"), "{plain}");
    }

    #[test]
    fn debug_redacts() {
        let h = md5_password_hash("alice", "pw");
        let shown = format!("{:?}", Secret::Md5(h.clone()));
        assert!(!shown.contains(&h[3..]), "{shown}");
        let s = ScramSecret::from_password("pw", b"salt", 4096);
        let shown = format!("{:?}", Secret::Scram(s));
        assert!(shown.contains("redacted"), "{shown}");
        assert_eq!(Secret::Md5(h).kind(), "md5");
    }
}
