//! Writer for the Prometheus text exposition format, version 0.0.4.
//!
//! Families are written one at a time, `# HELP` then `# TYPE` then their samples, so
//! each family's lines are contiguous as the format requires. A family with no samples
//! still gets its HELP and TYPE lines: Prometheus accepts that, and a scrape then shows
//! which metrics exist even before anything was counted.
//!
//! Metric names, label names and the counter `_total` suffix come from the program, not
//! from input, so mistakes there are bugs: they trip a `debug_assert!` (tests and debug
//! builds), and a release build repairs them rather than emit text Prometheus would
//! reject (invalid characters become `_`, a counter name missing `_total` gets it
//! appended, a family written twice is dropped the second time). Label values are data
//! and are escaped.

use std::fmt::Write as _;

use super::histogram::{valid_bounds, HistogramSnapshot};

/// The metric types this writer produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value: integers are written exactly, floats per [`format_float`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::U64(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::U64(u64::from(v))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::U64(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I64(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}

impl Value {
    /// What a counter may hold: not negative, not NaN.
    fn fits_counter(self) -> bool {
        match self {
            Value::U64(_) => true,
            Value::I64(v) => v >= 0,
            Value::F64(v) => v >= 0.0,
        }
    }

    fn write(self, out: &mut String) {
        match self {
            Value::U64(v) => {
                let _ = write!(out, "{v}");
            }
            Value::I64(v) => {
                let _ = write!(out, "{v}");
            }
            Value::F64(v) => format_float(v, out),
        }
    }
}

/// Appends `v` the way Prometheus parses it: `+Inf`, `-Inf`, `NaN`, otherwise Rust's
/// shortest round-trip representation (exponent notation below 1e-4 and from 1e21 up,
/// to keep it short).
pub fn format_float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e21) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(name: &str) -> bool {
    is_name(name, true)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_label_name(name: &str) -> bool {
    is_name(name, false)
}

fn is_name(name: &str, colon: bool) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || (colon && b == b':') => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || (colon && b == b':'))
}

/// Writes `name` with every character outside the name alphabet replaced by `_` (and a
/// `_` prefix when it would start with a digit or be empty).
fn push_sanitized(out: &mut String, name: &str, colon: bool) {
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':')) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':') {
            c
        } else {
            '_'
        }
    }));
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes HELP text: backslash and line feed.
pub fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Label names in one sample: valid and not repeated.
fn labels_ok(labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .enumerate()
        .all(|(i, (k, _))| is_label_name(k) && !labels[..i].iter().any(|(other, _)| other == k))
}

/// One series line: `name[suffix]{labels[,le="…"]} value`.
fn push_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<f64>,
    value: Value,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if is_label_name(k) {
                out.push_str(k);
            } else {
                push_sanitized(out, k, false);
            }
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        if let Some(le) = le {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str("le=\"");
            format_float(le, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    value.write(out);
    out.push('\n');
}

/// A scrape's worth of text, built family by family.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    buf: String,
    /// Names of the families written so far (after repair), to catch duplicates.
    families: Vec<String>,
}

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    /// With room for `bytes` of text, to avoid regrowing on every scrape.
    pub fn with_capacity(bytes: usize) -> Self {
        Exposition {
            buf: String::with_capacity(bytes),
            families: Vec::new(),
        }
    }

    /// Starts a family: writes its HELP and TYPE lines and returns a handle to add
    /// samples to it. The handle borrows the exposition, so families cannot interleave.
    /// A counter's `name` must end in `_total`.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> Family<'_> {
        debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter name {name:?} must end in _total"
        );
        let mut full = String::with_capacity(name.len() + 6);
        if is_metric_name(name) {
            full.push_str(name);
        } else {
            push_sanitized(&mut full, name, true);
        }
        if kind == Kind::Counter && !full.ends_with("_total") {
            full.push_str("_total");
        }
        let duplicate = self.families.contains(&full);
        debug_assert!(!duplicate, "metric family {full:?} written twice");
        if duplicate {
            return Family {
                exp: self,
                kind,
                active: false,
            };
        }
        let buf = &mut self.buf;
        buf.push_str("# HELP ");
        buf.push_str(&full);
        if !help.is_empty() {
            buf.push(' ');
            escape_help(buf, help);
        }
        buf.push_str("\n# TYPE ");
        buf.push_str(&full);
        buf.push(' ');
        buf.push_str(kind.as_str());
        buf.push('\n');
        self.families.push(full);
        Family {
            exp: self,
            kind,
            active: true,
        }
    }

    /// A counter family with the given samples (labels, value). `name` must end in
    /// `_total`; values must not be negative.
    pub fn counter<V: Into<Value> + Copy>(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(&[(&str, &str)], V)],
    ) {
        let mut f = self.family(name, help, Kind::Counter);
        for &(labels, v) in samples {
            f.sample(labels, v);
        }
    }

    /// A gauge family with the given samples (labels, value).
    pub fn gauge<V: Into<Value> + Copy>(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(&[(&str, &str)], V)],
    ) {
        let mut f = self.family(name, help, Kind::Gauge);
        for &(labels, v) in samples {
            f.sample(labels, v);
        }
    }

    /// A histogram family with one series, from a snapshot.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        snapshot: &HistogramSnapshot,
    ) {
        self.family(name, help, Kind::Histogram)
            .histogram(labels, snapshot);
    }

    /// A histogram family with one series from raw data; see [`Family::histogram_buckets`].
    pub fn histogram_buckets(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        self.family(name, help, Kind::Histogram)
            .histogram_buckets(labels, bounds, counts, sum);
    }

    pub fn as_str(&self) -> &str {
        &self.buf
    }

    pub fn into_string(self) -> String {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A family being written; see [`Exposition::family`].
pub struct Family<'e> {
    exp: &'e mut Exposition,
    kind: Kind,
    /// False for a duplicate family in a release build: its samples are dropped.
    active: bool,
}

impl Family<'_> {
    fn parts(&mut self) -> Option<(&mut String, &str)> {
        if !self.active {
            return None;
        }
        let Exposition { buf, families } = &mut *self.exp;
        families.last().map(|name| (buf, name.as_str()))
    }

    /// One counter or gauge sample. Label values are escaped; label names must be valid
    /// and distinct.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) {
        let value = value.into();
        debug_assert!(
            self.kind != Kind::Histogram,
            "plain sample in a histogram family"
        );
        debug_assert!(labels_ok(labels), "invalid label names {labels:?}");
        debug_assert!(
            self.kind != Kind::Counter || value.fits_counter(),
            "negative or NaN counter value {value:?}"
        );
        if self.kind == Kind::Histogram {
            return;
        }
        if let Some((buf, name)) = self.parts() {
            push_series(buf, name, "", labels, None, value);
        }
    }

    /// One histogram series from a snapshot.
    pub fn histogram(&mut self, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
        self.histogram_buckets(
            labels,
            snapshot.bounds(),
            snapshot.buckets(),
            snapshot.sum_seconds(),
        );
    }

    /// One histogram series: `counts` are per bucket (not cumulative), one per bound
    /// plus a last one for observations above the largest bound; `bounds` are finite and
    /// strictly increasing. Writes the cumulative `_bucket` lines ending with
    /// `le="+Inf"`, then `_sum` and `_count` (the total of `counts`). Labels must not
    /// include `le`. A series breaking these rules is skipped in release builds.
    pub fn histogram_buckets(
        &mut self,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let ok = self.kind == Kind::Histogram
            && counts.len() == bounds.len() + 1
            && valid_bounds(bounds)
            && !labels.iter().any(|(k, _)| *k == "le");
        debug_assert!(
            ok,
            "invalid histogram series {labels:?} {bounds:?} {counts:?}"
        );
        debug_assert!(labels_ok(labels), "invalid label names {labels:?}");
        if !ok {
            return;
        }
        let Some((buf, name)) = self.parts() else {
            return;
        };
        let mut cumulative = 0u64;
        for (&bound, &c) in bounds.iter().zip(counts) {
            cumulative = cumulative.saturating_add(c);
            push_series(
                buf,
                name,
                "_bucket",
                labels,
                Some(bound),
                Value::U64(cumulative),
            );
        }
        if let Some(&over) = counts.last() {
            cumulative = cumulative.saturating_add(over);
        }
        push_series(
            buf,
            name,
            "_bucket",
            labels,
            Some(f64::INFINITY),
            Value::U64(cumulative),
        );
        push_series(buf, name, "_sum", labels, None, Value::F64(sum));
        push_series(buf, name, "_count", labels, None, Value::U64(cumulative));
    }
}

#[cfg(test)]
mod tests {
    use super::super::histogram::Histogram;
    use super::super::validate::validate;
    use super::*;
    use std::time::Duration;

    fn float(v: f64) -> String {
        let mut s = String::new();
        format_float(v, &mut s);
        s
    }

    #[test]
    fn counter_exact() {
        let mut e = Exposition::new();
        e.counter(
            "pooler_client_logins_total",
            "Client logins, by outcome.",
            &[(&[("outcome", "ok")], 12u64), (&[("outcome", "failed")], 0)],
        );
        assert_eq!(
            e.as_str(),
            "# HELP pooler_client_logins_total Client logins, by outcome.\n\
             # TYPE pooler_client_logins_total counter\n\
             pooler_client_logins_total{outcome=\"ok\"} 12\n\
             pooler_client_logins_total{outcome=\"failed\"} 0\n"
        );
        validate(e.as_str()).expect("valid");
    }

    #[test]
    fn gauge_exact() {
        let mut e = Exposition::new();
        e.gauge(
            "pooler_pool_clients",
            "Clients by pool and state.",
            &[
                (
                    &[("database", "app"), ("user", "bob"), ("state", "active")],
                    3i64,
                ),
                (
                    &[("database", "app"), ("user", "bob"), ("state", "waiting")],
                    -1,
                ),
            ],
        );
        e.gauge("pooler_up", "", &[(&[], 1u64)]);
        e.gauge("pooler_load", "Load.", &[(&[], 0.25f64)]);
        assert_eq!(
            e.as_str(),
            "# HELP pooler_pool_clients Clients by pool and state.\n\
             # TYPE pooler_pool_clients gauge\n\
             pooler_pool_clients{database=\"app\",user=\"bob\",state=\"active\"} 3\n\
             pooler_pool_clients{database=\"app\",user=\"bob\",state=\"waiting\"} -1\n\
             # HELP pooler_up\n\
             # TYPE pooler_up gauge\n\
             pooler_up 1\n\
             # HELP pooler_load Load.\n\
             # TYPE pooler_load gauge\n\
             pooler_load 0.25\n"
        );
        validate(e.as_str()).expect("valid");
    }

    #[test]
    fn histogram_exact() {
        static BOUNDS: &[f64] = &[0.005, 0.1, 1.0];
        let h = Histogram::new(BOUNDS);
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(3));
        let mut e = Exposition::new();
        e.histogram(
            "pooler_query_duration_seconds",
            "Query latency.",
            &[("pool", "app")],
            &h.snapshot(),
        );
        assert_eq!(
            e.as_str(),
            "# HELP pooler_query_duration_seconds Query latency.\n\
             # TYPE pooler_query_duration_seconds histogram\n\
             pooler_query_duration_seconds_bucket{pool=\"app\",le=\"0.005\"} 2\n\
             pooler_query_duration_seconds_bucket{pool=\"app\",le=\"0.1\"} 3\n\
             pooler_query_duration_seconds_bucket{pool=\"app\",le=\"1\"} 3\n\
             pooler_query_duration_seconds_bucket{pool=\"app\",le=\"+Inf\"} 4\n\
             pooler_query_duration_seconds_sum{pool=\"app\"} 3.057\n\
             pooler_query_duration_seconds_count{pool=\"app\"} 4\n"
        );
        validate(e.as_str()).expect("valid");
    }

    #[test]
    fn histogram_without_labels_and_several_series() {
        let mut e = Exposition::new();
        e.histogram_buckets("wait_seconds", "Wait.", &[], &[0.5], &[1, 2], 1.5);
        {
            let mut f = e.family("lat_seconds", "Latency.", Kind::Histogram);
            f.histogram_buckets(&[("w", "0")], &[], &[7], 0.0);
            f.histogram(&[("w", "1")], &HistogramSnapshot::empty(&[1.0, 2.0]));
        }
        assert_eq!(
            e.as_str(),
            "# HELP wait_seconds Wait.\n\
             # TYPE wait_seconds histogram\n\
             wait_seconds_bucket{le=\"0.5\"} 1\n\
             wait_seconds_bucket{le=\"+Inf\"} 3\n\
             wait_seconds_sum 1.5\n\
             wait_seconds_count 3\n\
             # HELP lat_seconds Latency.\n\
             # TYPE lat_seconds histogram\n\
             lat_seconds_bucket{w=\"0\",le=\"+Inf\"} 7\n\
             lat_seconds_sum{w=\"0\"} 0\n\
             lat_seconds_count{w=\"0\"} 7\n\
             lat_seconds_bucket{w=\"1\",le=\"1\"} 0\n\
             lat_seconds_bucket{w=\"1\",le=\"2\"} 0\n\
             lat_seconds_bucket{w=\"1\",le=\"+Inf\"} 0\n\
             lat_seconds_sum{w=\"1\"} 0\n\
             lat_seconds_count{w=\"1\"} 0\n"
        );
        validate(e.as_str()).expect("valid");
    }

    #[test]
    fn default_latency_histogram_is_valid() {
        let h = Histogram::latency();
        for ms in [
            0, 1, 3, 7, 20, 40, 90, 200, 400, 900, 2000, 4000, 9000, 20000,
        ] {
            h.observe(Duration::from_millis(ms));
        }
        let mut e = Exposition::new();
        e.histogram("x_seconds", "X.", &[], &h.snapshot());
        validate(e.as_str()).expect("valid");
        assert!(e.as_str().contains("x_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(e.as_str().contains("x_seconds_bucket{le=\"2.5\"} 11\n"));
        assert!(e.as_str().contains("x_seconds_bucket{le=\"10\"} 13\n"));
        assert!(e.as_str().contains("x_seconds_bucket{le=\"+Inf\"} 14\n"));
        assert!(e.as_str().contains("x_seconds_count 14\n"));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut e = Exposition::new();
        e.gauge(
            "g",
            "a \\ back\nslash \"quoted\"",
            &[(&[("v", "a\\b\"c\nd"), ("w", "é☃")], 1u64)],
        );
        assert_eq!(
            e.as_str(),
            "# HELP g a \\\\ back\\nslash \"quoted\"\n\
             # TYPE g gauge\n\
             g{v=\"a\\\\b\\\"c\\nd\",w=\"é☃\"} 1\n"
        );
        validate(e.as_str()).expect("valid");
    }

    #[test]
    fn empty_family_keeps_help_and_type() {
        let mut e = Exposition::new();
        e.counter::<u64>("c_total", "Nothing yet.", &[]);
        e.family("g", "Nothing.", Kind::Gauge);
        assert_eq!(
            e.as_str(),
            "# HELP c_total Nothing yet.\n# TYPE c_total counter\n\
             # HELP g Nothing.\n# TYPE g gauge\n"
        );
        validate(e.as_str()).expect("valid");
        assert!(Exposition::new().is_empty());
        validate("").expect("empty text is valid");
    }

    #[test]
    fn floats() {
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(0.0), "0");
        assert_eq!(float(1.0), "1");
        assert_eq!(float(-2.5), "-2.5");
        assert_eq!(float(0.0005), "0.0005");
        assert_eq!(float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(1.5e300), "1.5e300");
        for v in [1e-7, 1.5e300, 0.0005, 123456.789, -3.0] {
            assert_eq!(float(v).parse::<f64>().ok(), Some(v));
        }
        let mut e = Exposition::new();
        e.gauge(
            "f",
            "F.",
            &[
                (&[("k", "inf")], f64::INFINITY),
                (&[("k", "-inf")], f64::NEG_INFINITY),
                (&[("k", "nan")], f64::NAN),
            ],
        );
        assert!(e
            .as_str()
            .ends_with("f{k=\"inf\"} +Inf\nf{k=\"-inf\"} -Inf\nf{k=\"nan\"} NaN\n"));
        validate(e.as_str()).expect("valid");
    }

    #[test]
    fn name_checks() {
        assert!(is_metric_name("a:b_c9"));
        assert!(is_metric_name(":x"));
        assert!(!is_metric_name("9x"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("a-b"));
        assert!(is_label_name("_a9"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name("9"));
        assert!(!is_label_name("é"));
        let mut s = String::new();
        push_sanitized(&mut s, "9a-b:c", false);
        assert_eq!(s, "_9a_b_c");
    }

    /// Release builds repair programming mistakes instead of panicking, and the text
    /// stays valid.
    #[cfg(not(debug_assertions))]
    #[test]
    fn release_builds_repair_mistakes() {
        let mut e = Exposition::new();
        e.counter("requests", "R.", &[(&[("bad-name", "x")], 1u64)]);
        e.gauge("9g", "G.", &[(&[], 1u64)]);
        e.gauge("9g", "Again.", &[(&[], 2u64)]);
        e.histogram_buckets("h", "H.", &[("le", "1")], &[], &[1], 0.0);
        e.histogram_buckets("h2", "H.", &[], &[2.0, 1.0], &[1, 1, 1], 0.0);
        e.family("h3", "H.", Kind::Histogram).sample(&[], 1u64);
        assert_eq!(
            e.as_str(),
            "# HELP requests_total R.\n# TYPE requests_total counter\n\
             requests_total{bad_name=\"x\"} 1\n\
             # HELP _9g G.\n# TYPE _9g gauge\n_9g 1\n\
             # HELP h H.\n# TYPE h histogram\n\
             # HELP h2 H.\n# TYPE h2 histogram\n\
             # HELP h3 H.\n# TYPE h3 histogram\n"
        );
        validate(e.as_str()).expect("valid");
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "must end in _total")]
    fn counter_without_total_is_a_bug() {
        Exposition::new().counter("requests", "R.", &[(&[], 1u64)]);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "invalid label names")]
    fn invalid_label_name_is_a_bug() {
        Exposition::new().gauge("g", "G.", &[(&[("bad-name", "x")], 1u64)]);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "invalid label names")]
    fn repeated_label_name_is_a_bug() {
        Exposition::new().gauge("g", "G.", &[(&[("a", "x"), ("a", "y")], 1u64)]);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "written twice")]
    fn duplicate_family_is_a_bug() {
        let mut e = Exposition::new();
        e.gauge("g", "G.", &[(&[], 1u64)]);
        e.gauge("g", "G.", &[(&[], 2u64)]);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "invalid histogram series")]
    fn le_label_on_histogram_is_a_bug() {
        Exposition::new().histogram_buckets("h", "H.", &[("le", "1")], &[], &[1], 0.0);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "negative or NaN counter")]
    fn negative_counter_is_a_bug() {
        Exposition::new().counter("c_total", "C.", &[(&[], -1i64)]);
    }
}
