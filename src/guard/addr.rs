//! Per client address limits: connections at once (`max_client_conn_per_addr`) and a token
//! bucket of new connections (`connect_rate_per_addr`, `connect_burst_per_addr`).
//!
//! Shared by all workers behind one mutex, taken once per login and once per close of a
//! counted client: a login costs far more than that lock. Sans-IO: callers pass `now`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::AddrLimits;
use crate::net::cidr::canonical;

/// Why a new connection from an address is refused (SQLSTATE 53300).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrRefusal {
    TooMany { addr: IpAddr, limit: u32 },
    TooFast { addr: IpAddr, rate: u32, burst: u32 },
}

impl fmt::Display for AddrRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrRefusal::TooMany { addr, limit } => write!(
                f,
                "too many connections from {addr} (max_client_conn_per_addr = {limit})"
            ),
            AddrRefusal::TooFast { addr, rate, burst } => write!(
                f,
                "connection rate from {addr} is above connect_rate_per_addr = {rate}/s (burst {burst})"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    connections: u32,
    tokens: f64,
    refilled_at: Instant,
}

#[derive(Default)]
pub struct AddrLimiter {
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl AddrLimiter {
    /// Admits a new client from `addr` and counts it, or says which limit it is over.
    /// Returns `Ok(true)` when the client was counted (and [`release`](Self::release)
    /// must be called when it goes), `Ok(false)` when no limit applies to it.
    pub fn admit(
        &self,
        addr: IpAddr,
        limits: &AddrLimits,
        now: Instant,
    ) -> Result<bool, AddrRefusal> {
        let addr = canonical(addr);
        if limits.is_off() || limits.trusted_addrs.iter().any(|net| net.contains(addr)) {
            return Ok(false);
        }
        let burst = f64::from(limits.connect_burst_per_addr.max(1));
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(addr).or_insert(Entry {
            connections: 0,
            tokens: burst,
            refilled_at: now,
        });
        let max = limits.max_client_conn_per_addr;
        if max > 0 && entry.connections >= max {
            return Err(AddrRefusal::TooMany { addr, limit: max });
        }
        let rate = limits.connect_rate_per_addr;
        if rate > 0 {
            refill(entry, rate, burst, now);
            if entry.tokens < 1.0 {
                return Err(AddrRefusal::TooFast {
                    addr,
                    rate,
                    burst: limits.connect_burst_per_addr,
                });
            }
            entry.tokens -= 1.0;
        }
        entry.connections += 1;
        Ok(true)
    }

    /// A client counted by [`admit`](Self::admit) is gone.
    pub fn release(&self, addr: IpAddr) {
        let addr = canonical(addr);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(&addr) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }

    /// Forgets addresses with no connection and a full bucket: they behave exactly like
    /// addresses never seen, so the map stays as large as the set of active clients.
    pub fn sweep(&self, limits: &AddrLimits, now: Instant) {
        let burst = f64::from(limits.connect_burst_per_addr.max(1));
        let rate = limits.connect_rate_per_addr;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, entry| {
            if rate > 0 {
                refill(entry, rate, burst, now);
            }
            entry.connections > 0 || (rate > 0 && entry.tokens < burst)
        });
    }

    pub fn tracked(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn refill(entry: &mut Entry, rate: u32, burst: f64, now: Instant) {
    let elapsed = now
        .saturating_duration_since(entry.refilled_at)
        .as_secs_f64();
    entry.tokens = (entry.tokens + elapsed * f64::from(rate)).min(burst);
    entry.refilled_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::cidr::Cidr;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(max: u32, rate: u32, burst: u32) -> AddrLimits {
        AddrLimits {
            max_client_conn_per_addr: max,
            connect_rate_per_addr: rate,
            connect_burst_per_addr: burst,
            trusted_addrs: vec![Cidr::parse("10.9.0.0/16").unwrap()],
        }
    }

    #[test]
    fn connections_at_once_are_capped_per_address() {
        let l = AddrLimiter::default();
        let lim = limits(2, 0, 10);
        let now = Instant::now();
        assert_eq!(l.admit(ip("10.0.0.1"), &lim, now), Ok(true));
        assert_eq!(l.admit(ip("10.0.0.1"), &lim, now), Ok(true));
        let refused = l.admit(ip("10.0.0.1"), &lim, now).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "too many connections from 10.0.0.1 (max_client_conn_per_addr = 2)"
        );
        assert_eq!(
            l.admit(ip("10.0.0.2"), &lim, now),
            Ok(true),
            "other address"
        );
        l.release(ip("10.0.0.1"));
        assert_eq!(
            l.admit(ip("::ffff:10.0.0.1"), &lim, now),
            Ok(true),
            "mapped form"
        );
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let l = AddrLimiter::default();
        let lim = limits(0, 2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.admit(ip("10.0.0.1"), &lim, t0), Ok(true));
        }
        let refused = l.admit(ip("10.0.0.1"), &lim, t0).unwrap_err();
        assert!(refused
            .to_string()
            .contains("connect_rate_per_addr = 2/s (burst 3)"));
        // Half a second at 2/s buys one connection, not two.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.admit(ip("10.0.0.1"), &lim, t1), Ok(true));
        assert!(l.admit(ip("10.0.0.1"), &lim, t1).is_err());
        // A long pause refills to the burst, no further.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.admit(ip("10.0.0.1"), &lim, t2), Ok(true));
        }
        assert!(l.admit(ip("10.0.0.1"), &lim, t2).is_err());
    }

    #[test]
    fn trusted_and_unlimited_are_not_counted() {
        let l = AddrLimiter::default();
        let now = Instant::now();
        let lim = limits(1, 1, 1);
        for _ in 0..5 {
            assert_eq!(l.admit(ip("10.9.3.4"), &lim, now), Ok(false));
        }
        assert_eq!(l.admit(ip("10.0.0.1"), &limits(0, 0, 10), now), Ok(false));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn sweep_forgets_idle_addresses_with_full_buckets() {
        let l = AddrLimiter::default();
        let lim = limits(5, 1, 2);
        let t0 = Instant::now();
        l.admit(ip("10.0.0.1"), &lim, t0).unwrap();
        l.admit(ip("10.0.0.2"), &lim, t0).unwrap();
        l.release(ip("10.0.0.2"));
        l.sweep(&lim, t0);
        assert_eq!(l.tracked(), 2, "10.0.0.2's bucket is not full yet");
        l.sweep(&lim, t0 + Duration::from_secs(5));
        assert_eq!(l.tracked(), 1, "only the connected address stays");
    }
}
