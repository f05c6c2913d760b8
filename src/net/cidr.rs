//! IP address ranges (`10.0.0.0/8`, `::1/128`, or a bare address for one host), shared by
//! the hba rules and the per-address connection limits' `trusted_addrs`.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `addr/prefix`, or a bare address meaning that one host. Host bits are ignored,
    /// as in PostgreSQL's pg_hba.conf.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| {
            format!("invalid IP address \"{addr_text}\" (host names are not supported)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match bits {
            None => max,
            Some(bits) => match bits.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("invalid CIDR mask in address \"{text}\"")),
            },
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the range. An IPv4-mapped IPv6 client (`::ffff:10.1.2.3`, what a
    /// dual-stack listener reports) matches IPv4 ranges, and IPv6 ranges such as
    /// `::ffff:0:0/96` still see it in its raw form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exactly(ip) || self.contains_exactly(canonical(ip))
    }

    fn contains_exactly(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u32::from(n) ^ u32::from(a)) & mask_u32(self.prefix) == 0
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                (u128::from(n) ^ u128::from(a)) & mask_u128(self.prefix) == 0
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it stands for.
pub fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        IpAddr::V4(_) => a,
    }
}

pub fn mask_u32(prefix: u8) -> u32 {
    // checked_shl: a shift by 32 (prefix 0) is None, i.e. an all-zero mask.
    u32::MAX
        .checked_shl(32u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

pub fn mask_u128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(prefix)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_and_single_hosts() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "mapped client");
        let host = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(host.prefix, 32);
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("::ffff:0:0/96")
            .unwrap()
            .contains(ip("::ffff:1.2.3.4")));
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "",
            "example.com",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "1.2.3/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
