//! Password authentication primitives, sans-IO: message bytes in, message
//! bytes out. The protocol framing (AuthenticationSASL, PasswordMessage, ...)
//! and the choice of method belong to the caller.

pub mod auth_query;
pub mod hba;
pub mod md5;
pub mod random;
pub mod scram;

/// Equality whose running time depends only on the lengths, so a client
/// cannot learn how many leading bytes of its guess were right.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
