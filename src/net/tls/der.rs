//! Just enough DER to read two facts out of an X.509 certificate: the subject's common
//! name (for `cert` logins and verify-full client checks) and the hash algorithm of the
//! certificate signature (for SCRAM's tls-server-end-point channel binding).
//!
//! No x509 crate is allowed, and both facts sit at fixed places in the structure, so a
//! bounds-checked TLV reader is all that is needed. Every step returns `None` on anything
//! unexpected: the bytes may come from a peer.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// `[0] EXPLICIT`: the certificate version, and the hash algorithm in RSASSA-PSS parameters.
const CONTEXT_0: u8 = 0xA0;

const UTF8_STRING: u8 = 0x0C;
const NUMERIC_STRING: u8 = 0x12;
const PRINTABLE_STRING: u8 = 0x13;
const TELETEX_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
const VISIBLE_STRING: u8 = 0x1A;
const UNIVERSAL_STRING: u8 = 0x1C;
const BMP_STRING: u8 = 0x1E;

/// 2.5.4.3, id-at-commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// 1.2.840.113549.1.1.N: PKCS #1 signature algorithms, told apart by N.
const OID_PKCS1_PREFIX: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01];
/// 1.2.840.10045.4.1, ecdsa-with-SHA1.
const OID_ECDSA_SHA1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x01];
/// 1.2.840.10045.4.3.N: ecdsa-with-SHA224 .. SHA512 for N = 1..4.
const OID_ECDSA_SHA2_PREFIX: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03];
/// 1.2.840.10040.4.3, dsa-with-sha1.
const OID_DSA_SHA1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x03];
/// 2.16.840.1.101.3.4.3.N: dsa-with-sha224 (1) and dsa-with-sha256 (2).
const OID_DSA_SHA2_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03];
/// 1.3.14.3.2.29, the old OIW sha1WithRSASignature.
const OID_OIW_SHA1_RSA: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1D];
/// 1.2.840.113549.2.5, md5 (only ever seen inside RSASSA-PSS parameters, if at all).
const OID_MD5: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x05];
/// 1.3.14.3.2.26, sha1.
const OID_SHA1: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1A];
/// 2.16.840.1.101.3.4.2.N: sha256 (1), sha384 (2), sha512 (3), sha224 (4).
const OID_SHA2_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];

#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

/// A cursor over a run of DER elements.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn next(&mut self) -> Option<Tlv<'a>> {
        let (&tag, rest) = self.rest.split_first()?;
        // Multi-byte tags never occur in the parts of a certificate read here.
        if tag & 0x1F == 0x1F {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            // 0x80 alone is BER's indefinite length; more than 4 length bytes would be a
            // certificate of 4 GiB or more.
            let count = usize::from(first & 0x7F);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Tlv { tag, value })
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let tlv = self.next()?;
        (tlv.tag == tag).then_some(tlv.value)
    }
}

/// The contents of tbsCertificate and of the outer signatureAlgorithm.
fn certificate_parts(cert_der: &[u8]) -> Option<(&[u8], &[u8])> {
    let certificate = Der::new(cert_der).expect(SEQUENCE)?;
    let mut parts = Der::new(certificate);
    let tbs = parts.expect(SEQUENCE)?;
    let signature_algorithm = parts.expect(SEQUENCE)?;
    Some((tbs, signature_algorithm))
}

/// The contents of the subject Name.
fn subject(tbs: &[u8]) -> Option<&[u8]> {
    let mut fields = Der::new(tbs);
    let mut item = fields.next()?;
    // The version is absent in v1 certificates, so the serial number may come first.
    if item.tag == CONTEXT_0 {
        item = fields.next()?;
    }
    if item.tag != INTEGER {
        return None;
    }
    fields.expect(SEQUENCE)?; // signature
    fields.expect(SEQUENCE)?; // issuer
    fields.expect(SEQUENCE)?; // validity
    fields.expect(SEQUENCE)
}

/// The subject common name of a DER certificate, or `None` when it has none or cannot be
/// read. With several CNs the first wins, as OpenSSL's `X509_NAME_get_text_by_NID` (and so
/// PostgreSQL) picks it. A CN with an embedded NUL is refused, as PostgreSQL does, so
/// "alice\0.evil" cannot pass for "alice".
pub fn cert_common_name(cert_der: &[u8]) -> Option<String> {
    let (tbs, _) = certificate_parts(cert_der)?;
    let mut rdns = Der::new(subject(tbs)?);
    while !rdns.is_empty() {
        let mut attributes = Der::new(rdns.expect(SET)?);
        while !attributes.is_empty() {
            let mut attribute = Der::new(attributes.expect(SEQUENCE)?);
            let oid = attribute.expect(OID)?;
            let value = attribute.next()?;
            if oid == OID_COMMON_NAME {
                return directory_string(value).filter(|cn| !cn.contains('\0'));
            }
        }
    }
    None
}

fn directory_string(tlv: Tlv<'_>) -> Option<String> {
    let v = tlv.value;
    match tlv.tag {
        UTF8_STRING => String::from_utf8(v.to_vec()).ok(),
        NUMERIC_STRING | PRINTABLE_STRING | IA5_STRING | VISIBLE_STRING => v
            .is_ascii()
            .then(|| v.iter().map(|&b| char::from(b)).collect()),
        // T.61 is in practice ASCII or, from broken encoders, UTF-8 or Latin-1.
        TELETEX_STRING => Some(match std::str::from_utf8(v) {
            Ok(s) => s.to_owned(),
            Err(_) => v.iter().map(|&b| char::from(b)).collect(),
        }),
        BMP_STRING => {
            if v.len() % 2 != 0 {
                return None;
            }
            let units = v.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        UNIVERSAL_STRING => {
            if v.len() % 4 != 0 {
                return None;
            }
            v.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha224 => Sha224::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// RFC 5929 section 4.1: MD5 and SHA-1 are replaced by SHA-256.
fn hash_algorithm(oid: &[u8]) -> Option<Hash> {
    if oid == OID_MD5 || oid == OID_SHA1 {
        return Some(Hash::Sha256);
    }
    match oid.strip_prefix(OID_SHA2_PREFIX)? {
        [1] => Some(Hash::Sha256),
        [2] => Some(Hash::Sha384),
        [3] => Some(Hash::Sha512),
        [4] => Some(Hash::Sha224),
        _ => None,
    }
}

/// The hash the tls-server-end-point binding uses for a certificate signed with
/// `signature_algorithm` (the contents of the AlgorithmIdentifier).
fn end_point_hash_algorithm(signature_algorithm: &[u8]) -> Option<Hash> {
    let mut alg = Der::new(signature_algorithm);
    let oid = alg.expect(OID)?;
    if oid == OID_ECDSA_SHA1 || oid == OID_DSA_SHA1 || oid == OID_OIW_SHA1_RSA {
        return Some(Hash::Sha256);
    }
    if let Some(n) = oid.strip_prefix(OID_PKCS1_PREFIX) {
        return match n {
            // md5WithRSAEncryption, sha1WithRSAEncryption
            [4] | [5] => Some(Hash::Sha256),
            [10] => pss_hash(&mut alg),
            [11] => Some(Hash::Sha256),
            [12] => Some(Hash::Sha384),
            [13] => Some(Hash::Sha512),
            [14] => Some(Hash::Sha224),
            _ => None,
        };
    }
    if let Some(n) = oid.strip_prefix(OID_ECDSA_SHA2_PREFIX) {
        return match n {
            [1] => Some(Hash::Sha224),
            [2] => Some(Hash::Sha256),
            [3] => Some(Hash::Sha384),
            [4] => Some(Hash::Sha512),
            _ => None,
        };
    }
    if let Some(n) = oid.strip_prefix(OID_DSA_SHA2_PREFIX) {
        return match n {
            [1] => Some(Hash::Sha224),
            [2] => Some(Hash::Sha256),
            _ => None,
        };
    }
    // Ed25519 and Ed448 sign the whole message with no separate hash, so RFC 5929 names
    // no hash for them; PostgreSQL refuses channel binding for such certificates too.
    None
}

/// RSASSA-PSS carries its hash in the parameters (RFC 4055), SHA-1 when left out.
fn pss_hash(alg: &mut Der<'_>) -> Option<Hash> {
    let Some(params) = alg.next() else {
        return Some(Hash::Sha256);
    };
    if params.tag != SEQUENCE {
        return None;
    }
    let mut fields = Der::new(params.value);
    match fields.next() {
        Some(field) if field.tag == CONTEXT_0 => {
            let hash_alg = Der::new(field.value).expect(SEQUENCE)?;
            hash_algorithm(Der::new(hash_alg).expect(OID)?)
        }
        // No hashAlgorithm field: the SHA-1 default, which becomes SHA-256.
        _ => Some(Hash::Sha256),
    }
}

/// The `tls-server-end-point` channel binding data (RFC 5929) for a DER certificate: its
/// hash under the hash of its own signature algorithm, with MD5 and SHA-1 replaced by
/// SHA-256, as PostgreSQL's `be_tls_get_certificate_hash` computes it. `None` when the
/// algorithm names no usable hash (Ed25519, Ed448, unknown) or the DER cannot be read;
/// the caller then must not offer SCRAM-SHA-256-PLUS.
pub fn server_end_point_hash(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, signature_algorithm) = certificate_parts(cert_der)?;
    let hash = end_point_hash_algorithm(signature_algorithm)?;
    Some(hash.digest(cert_der))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One DER element, for building certificates by hand.
    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = value.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(value);
        out
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(SEQUENCE, &parts.concat())
    }

    /// (type OID, string tag, value) of one AttributeTypeAndValue.
    type Atv<'a> = (&'a [u8], u8, &'a [u8]);

    fn name(rdns: &[&[Atv<'_>]]) -> Vec<u8> {
        let rdns: Vec<Vec<u8>> = rdns
            .iter()
            .map(|atvs| {
                let atvs: Vec<Vec<u8>> = atvs
                    .iter()
                    .map(|(oid, tag, value)| seq(&[tlv(OID, oid), tlv(*tag, value)]))
                    .collect();
                tlv(SET, &atvs.concat())
            })
            .collect();
        seq(&rdns)
    }

    /// A structurally plausible certificate: nothing checks signatures here.
    fn cert(version: bool, subject: Vec<u8>, sig_alg: Vec<u8>) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.push(tlv(CONTEXT_0, &tlv(INTEGER, &[2])));
        }
        tbs.push(tlv(INTEGER, &[1]));
        tbs.push(sig_alg.clone());
        tbs.push(name(&[&[(OID_COMMON_NAME, UTF8_STRING, b"Issuer")]]));
        tbs.push(seq(&[]));
        tbs.push(subject);
        seq(&[seq(&tbs), sig_alg, tlv(0x03, &[0, 1, 2, 3])])
    }

    fn sha256_rsa() -> Vec<u8> {
        seq(&[
            tlv(OID, &[OID_PKCS1_PREFIX, &[11]].concat()),
            vec![0x05, 0x00],
        ])
    }

    fn cn_of(rdns: &[&[Atv<'_>]]) -> Option<String> {
        cert_common_name(&cert(true, name(rdns), sha256_rsa()))
    }

    const OID_O: &[u8] = &[0x55, 0x04, 0x0A];

    #[test]
    fn common_name_string_types() {
        let cn = OID_COMMON_NAME;
        assert_eq!(
            cn_of(&[&[(cn, IA5_STRING, b"alice")]]).as_deref(),
            Some("alice")
        );
        assert_eq!(
            cn_of(&[&[(cn, PRINTABLE_STRING, b"bob")]]).as_deref(),
            Some("bob")
        );
        assert_eq!(
            cn_of(&[&[(cn, TELETEX_STRING, b"caf\xe9")]]).as_deref(),
            Some("café")
        );
        let bmp = [0x00, 0x5A, 0x00, 0xF6];
        assert_eq!(cn_of(&[&[(cn, BMP_STRING, &bmp)]]).as_deref(), Some("Zö"));
        let universal = [0, 0, 0, 0x61, 0, 1, 0xF6, 0x00];
        assert_eq!(
            cn_of(&[&[(cn, UNIVERSAL_STRING, &universal)]]).as_deref(),
            Some("a😀")
        );
        assert_eq!(
            cn_of(&[&[(cn, UTF8_STRING, "Ελένη".as_bytes())]]).as_deref(),
            Some("Ελένη")
        );
    }

    #[test]
    fn common_name_refusals() {
        let cn = OID_COMMON_NAME;
        assert_eq!(cn_of(&[&[(cn, UTF8_STRING, b"alice\0.evil")]]), None);
        assert_eq!(cn_of(&[&[(cn, UTF8_STRING, b"\xff\xfe")]]), None);
        assert_eq!(cn_of(&[&[(cn, PRINTABLE_STRING, b"caf\xe9")]]), None);
        assert_eq!(cn_of(&[&[(cn, BMP_STRING, &[0x00])]]), None);
        // An OCTET STRING is no directory string.
        assert_eq!(cn_of(&[&[(cn, 0x04, b"alice")]]), None);
        assert_eq!(cn_of(&[&[(OID_O, UTF8_STRING, b"Org")]]), None);
        assert_eq!(cn_of(&[]), None);
    }

    #[test]
    fn common_name_position() {
        let cn = OID_COMMON_NAME;
        let multi: &[Atv<'_>] = &[(OID_O, UTF8_STRING, b"Org"), (cn, UTF8_STRING, b"x")];
        assert_eq!(cn_of(&[multi]).as_deref(), Some("x"));
        let two = cn_of(&[
            &[(cn, UTF8_STRING, b"first")],
            &[(cn, UTF8_STRING, b"second")],
        ]);
        assert_eq!(two.as_deref(), Some("first"));
        // A v1 certificate has no version field.
        let v1 = cert(false, name(&[&[(cn, UTF8_STRING, b"old")]]), sha256_rsa());
        assert_eq!(cert_common_name(&v1).as_deref(), Some("old"));
    }

    #[test]
    fn der_reader_rejects_bad_lengths() {
        assert!(Der::new(&[0x30, 0x80, 0x00, 0x00]).next().is_none());
        assert!(Der::new(&[0x30, 0x85, 1, 0, 0, 0, 0]).next().is_none());
        assert!(Der::new(&[0x30, 0x82, 0x01]).next().is_none());
        assert!(Der::new(&[0x30, 0x03, 0x01]).next().is_none());
        assert!(Der::new(&[0x1F, 0x01, 0x00]).next().is_none());
        assert!(Der::new(&[0x30]).next().is_none());
        let long = Der::new(&[0x04, 0x81, 0x01, 0xAA])
            .next()
            .map(|t| t.value.to_vec());
        assert_eq!(long, Some(vec![0xAA]));
        assert_eq!(cert_common_name(&[]), None);
        assert_eq!(server_end_point_hash(b"garbage"), None);
    }

    fn alg(oid: &[u8], params: Option<Vec<u8>>) -> Vec<u8> {
        let mut parts = vec![tlv(OID, oid)];
        parts.extend(params);
        seq(&parts)
    }

    fn hash_for(sig_alg: Vec<u8>) -> Option<Hash> {
        let der = cert(true, seq(&[]), sig_alg);
        let (_, sig) = certificate_parts(&der)?;
        end_point_hash_algorithm(sig)
    }

    #[test]
    fn end_point_hash_algorithms() {
        let pkcs1 = |n: u8| [OID_PKCS1_PREFIX, &[n]].concat();
        let ecdsa = |n: u8| [OID_ECDSA_SHA2_PREFIX, &[n]].concat();
        assert_eq!(hash_for(alg(&pkcs1(4), None)), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&pkcs1(5), None)), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&pkcs1(11), None)), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&pkcs1(12), None)), Some(Hash::Sha384));
        assert_eq!(hash_for(alg(&pkcs1(13), None)), Some(Hash::Sha512));
        assert_eq!(hash_for(alg(&pkcs1(14), None)), Some(Hash::Sha224));
        assert_eq!(hash_for(alg(&pkcs1(1), None)), None);
        assert_eq!(hash_for(alg(OID_ECDSA_SHA1, None)), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&ecdsa(2), None)), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&ecdsa(3), None)), Some(Hash::Sha384));
        assert_eq!(hash_for(alg(&ecdsa(4), None)), Some(Hash::Sha512));
        assert_eq!(hash_for(alg(OID_DSA_SHA1, None)), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&[0x2B, 0x65, 0x70], None)), None); // Ed25519
    }

    #[test]
    fn end_point_hash_pss() {
        let pss = [OID_PKCS1_PREFIX, &[10]].concat();
        let sha = |n: u8| [OID_SHA2_PREFIX, &[n]].concat();
        let with_hash = |oid: &[u8]| {
            let hash_alg = seq(&[tlv(OID, oid), vec![0x05, 0x00]]);
            Some(seq(&[tlv(CONTEXT_0, &hash_alg)]))
        };
        assert_eq!(hash_for(alg(&pss, None)), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&pss, Some(seq(&[])))), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&pss, with_hash(&sha(2)))), Some(Hash::Sha384));
        assert_eq!(hash_for(alg(&pss, with_hash(&sha(3)))), Some(Hash::Sha512));
        assert_eq!(hash_for(alg(&pss, with_hash(OID_SHA1))), Some(Hash::Sha256));
        assert_eq!(hash_for(alg(&pss, with_hash(&[0x2A, 0x03]))), None);
        assert_eq!(hash_for(alg(&pss, Some(vec![0x05, 0x00]))), None);
    }

    #[test]
    fn end_point_hash_is_over_the_whole_certificate() {
        let der = cert(
            true,
            seq(&[]),
            alg(&[OID_PKCS1_PREFIX, &[12]].concat(), None),
        );
        assert_eq!(
            server_end_point_hash(&der),
            Some(Sha384::digest(&der).to_vec())
        );
    }

    /// Every truncation and every single-byte corruption of a certificate: no panic.
    #[test]
    fn mangled_certificates_do_not_panic() {
        let good = cert(
            true,
            name(&[&[(OID_COMMON_NAME, UTF8_STRING, b"alice")]]),
            sha256_rsa(),
        );
        assert_eq!(cert_common_name(&good).as_deref(), Some("alice"));
        for len in 0..good.len() {
            let _ = cert_common_name(&good[..len]);
            let _ = server_end_point_hash(&good[..len]);
        }
        for i in 0..good.len() {
            for b in [0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = cert_common_name(&bad);
                let _ = server_end_point_hash(&bad);
            }
        }
    }
}
