//! A lock-free latency histogram for the hot path, and the plain snapshots that are
//! merged across workers and written out at scrape time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Default upper bounds, in seconds, for latency histograms (the `+Inf` bucket is
/// implicit).
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// True when `bounds` are finite and strictly increasing: what a histogram's bucket
/// bounds must be (an empty list is allowed: only the `+Inf` bucket then).
pub fn valid_bounds(bounds: &[f64]) -> bool {
    bounds.iter().all(|b| b.is_finite()) && bounds.windows(2).all(|w| w[0] < w[1])
}

/// A histogram of durations, written with relaxed atomics and never locked.
///
/// Meant to be owned per worker (typically inside an `Arc` the metrics endpoint can also
/// reach): `observe` is then an uncontended `fetch_add` on two cache lines at most. The
/// scrape side takes a [`snapshot`](Histogram::snapshot) of each worker's histogram and
/// [`merge`](HistogramSnapshot::merge)s them.
///
/// There is no separate count: the count is the sum of the buckets, computed at snapshot
/// time, so `_count` always equals the `+Inf` bucket even while observations race with a
/// scrape (and `observe` does one atomic add fewer). The sum may lag or lead the buckets
/// by the observations in flight, which Prometheus tolerates.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; `bounds.len() + 1` of them, the last one for
    /// observations above the largest bound.
    counts: Box<[AtomicU64]>,
    /// Sum of all observations in microseconds (a u64 of microseconds lasts 584 000
    /// years of accumulated latency).
    sum_micros: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds in seconds.
    ///
    /// # Panics
    ///
    /// When `bounds` are not finite and strictly increasing: they are constants of the
    /// program, never input.
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(
            valid_bounds(bounds),
            "histogram bounds must be finite and strictly increasing: {bounds:?}"
        );
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// A histogram with [`LATENCY_BOUNDS`].
    pub fn latency() -> Self {
        Histogram::new(LATENCY_BOUNDS)
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Records one duration. Relaxed atomics only: nothing else is published through
    /// these counters, and each one is monotonic on its own.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The current counts, read with relaxed loads.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }

    /// Adds the current counts to `snap` without allocating; fails when the bounds differ.
    pub fn add_to(&self, snap: &mut HistogramSnapshot) -> Result<(), MergeError> {
        if snap.bounds != self.bounds {
            return Err(MergeError);
        }
        for (acc, c) in snap.buckets.iter_mut().zip(self.counts.iter()) {
            *acc = acc.saturating_add(c.load(Ordering::Relaxed));
        }
        snap.sum_micros = snap
            .sum_micros
            .saturating_add(self.sum_micros.load(Ordering::Relaxed));
        Ok(())
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::latency()
    }
}

/// A point-in-time copy of a [`Histogram`], or the merge of several.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    sum_micros: u64,
}

impl HistogramSnapshot {
    /// All zeros, to merge worker snapshots into.
    ///
    /// # Panics
    ///
    /// When `bounds` are not finite and strictly increasing (see [`Histogram::new`]).
    pub fn empty(bounds: &'static [f64]) -> Self {
        assert!(
            valid_bounds(bounds),
            "histogram bounds must be finite and strictly increasing: {bounds:?}"
        );
        HistogramSnapshot {
            bounds,
            buckets: vec![0; bounds.len() + 1],
            sum_micros: 0,
        }
    }

    /// Upper bounds in seconds, without the implicit `+Inf`.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Per-bucket counts (not cumulative), `bounds().len() + 1` of them: the last one
    /// counts observations above the largest bound.
    pub fn buckets(&self) -> &[u64] {
        &self.buckets
    }

    /// Number of observations: the sum of the buckets.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// Sum of the observations in seconds, as exposed in `_sum`.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }

    /// Adds `other` into `self`; fails (changing nothing) when the bounds differ.
    pub fn merge(&mut self, other: &HistogramSnapshot) -> Result<(), MergeError> {
        if self.bounds != other.bounds {
            return Err(MergeError);
        }
        for (acc, &c) in self.buckets.iter_mut().zip(&other.buckets) {
            *acc = acc.saturating_add(c);
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        Ok(())
    }
}

/// Merging histograms whose bucket bounds differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeError;

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("histograms with different bucket bounds cannot be merged")
    }
}

impl std::error::Error for MergeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn observe_picks_the_first_bound_not_below() {
        let h = Histogram::latency();
        h.observe(Duration::from_micros(100)); // <= 0.0005
        h.observe(Duration::from_micros(500)); // == 0.0005, le is inclusive
        h.observe(Duration::from_micros(501)); // <= 0.001
        h.observe(Duration::from_millis(1)); // == 0.001
        h.observe(Duration::from_millis(10)); // == 0.01
        h.observe(Duration::from_secs(10)); // == 10
        h.observe(Duration::from_secs(11)); // overflow
        h.observe(Duration::ZERO);
        let s = h.snapshot();
        assert_eq!(s.buckets().len(), LATENCY_BOUNDS.len() + 1);
        let mut want = vec![0u64; LATENCY_BOUNDS.len() + 1];
        want[0] = 3;
        want[1] = 2;
        want[4] = 1;
        want[13] = 1;
        want[14] = 1;
        assert_eq!(s.buckets(), &want[..]);
        assert_eq!(s.count(), 8);
        assert_eq!(
            s.sum_micros(),
            100 + 500 + 501 + 1000 + 10_000 + 10_000_000 + 11_000_000
        );
        assert!((s.sum_seconds() - 21.012101).abs() < 1e-9);
    }

    #[test]
    fn huge_durations_saturate_the_sum_contribution() {
        let h = Histogram::latency();
        h.observe(Duration::MAX);
        let s = h.snapshot();
        assert_eq!(s.sum_micros(), u64::MAX);
        assert_eq!(s.buckets()[LATENCY_BOUNDS.len()], 1);
    }

    #[test]
    fn merge_adds_and_checks_bounds() {
        static OTHER: &[f64] = &[1.0, 2.0];
        let a = Histogram::latency();
        let b = Histogram::latency();
        a.observe(Duration::from_millis(3));
        b.observe(Duration::from_millis(3));
        b.observe(Duration::from_secs(1));
        let mut total = HistogramSnapshot::empty(LATENCY_BOUNDS);
        total.merge(&a.snapshot()).expect("same bounds");
        b.add_to(&mut total).expect("same bounds");
        assert_eq!(total.count(), 3);
        assert_eq!(total.buckets()[3], 2);
        assert_eq!(total.buckets()[10], 1);
        assert_eq!(total.sum_micros(), 1_006_000);

        let before = total.clone();
        let other = Histogram::new(OTHER);
        assert_eq!(total.merge(&other.snapshot()), Err(MergeError));
        assert_eq!(other.add_to(&mut total), Err(MergeError));
        assert_eq!(total, before);
    }

    #[test]
    fn concurrent_observers_lose_nothing() {
        let h = Arc::new(Histogram::latency());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = Arc::clone(&h);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe(Duration::from_micros(i * (t + 1)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("observer thread");
        }
        assert_eq!(h.snapshot().count(), 40_000);
    }

    #[test]
    #[should_panic(expected = "strictly increasing")]
    fn unsorted_bounds_are_refused() {
        static BAD: &[f64] = &[1.0, 0.5];
        let _ = Histogram::new(BAD);
    }

    #[test]
    fn bounds_validity() {
        assert!(valid_bounds(&[]));
        assert!(valid_bounds(LATENCY_BOUNDS));
        assert!(!valid_bounds(&[1.0, 1.0]));
        assert!(!valid_bounds(&[1.0, f64::INFINITY]));
        assert!(!valid_bounds(&[f64::NAN]));
    }
}
