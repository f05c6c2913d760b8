//! A strict checker for Prometheus text format 0.0.4, for tests (unit tests here, and
//! integration tests scraping `/metrics`).
//!
//! Stricter than Prometheus itself where our writer is: every sample needs a `# TYPE`
//! before it, no whitespace inside label braces, only the escapes the format defines,
//! counters named `*_total` and never negative or NaN.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::exposition::{is_label_name, is_metric_name};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

#[derive(Default)]
struct Fam {
    ty: Option<Type>,
    help: bool,
    samples: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Bucket,
    Sum,
    Count,
}

type LabelSet = Vec<(String, String)>;

#[derive(Default)]
struct HistGroup {
    /// (le, cumulative count, line) in order of appearance.
    buckets: Vec<(f64, f64, usize)>,
    sum: Option<f64>,
    count: Option<f64>,
}

#[derive(Default)]
struct Validator {
    families: HashMap<String, Fam>,
    /// The family whose lines are being read; families before it are closed.
    current: Option<String>,
    closed: HashSet<String>,
    series: HashSet<(String, LabelSet)>,
    histograms: BTreeMap<(String, LabelSet), HistGroup>,
}

/// Checks `text` as a complete scrape: each line is a HELP, TYPE or other comment, a
/// blank line or a sample; each sample belongs to a family whose TYPE came before it;
/// a family's lines are contiguous and its HELP and TYPE appear once; metric and label
/// names are valid, label values use only the defined escapes, values parse as floats
/// (timestamps as integers); counters end in `_total` and are neither negative nor NaN;
/// no series (name plus label set) repeats; each histogram series has `_bucket` lines
/// with increasing `le` ending in `+Inf`, cumulative counts, and `_sum` and `_count`
/// with `_count` equal to the `+Inf` bucket. The error names the line.
pub fn validate(text: &str) -> Result<(), String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text does not end with a line feed".into());
    }
    let mut v = Validator::default();
    for (i, line) in text.split_terminator('\n').enumerate() {
        v.line(i + 1, line)
            .map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?;
    }
    v.finish()
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits off a leading token ended by a blank or the end of `s`.
fn token(s: &str) -> (&str, &str) {
    match s.find(is_blank) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn parse_float(s: &str) -> Option<f64> {
    // Rust also accepts "inf"/"infinity"/"nan" in any case, as Go's ParseFloat does.
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

fn fmt_labels(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

impl Validator {
    fn enter(&mut self, family: &str) -> Result<(), String> {
        if self.current.as_deref() == Some(family) {
            return Ok(());
        }
        if self.closed.contains(family) {
            return Err(format!("lines of family {family} are not contiguous"));
        }
        if let Some(prev) = self.current.take() {
            self.closed.insert(prev);
        }
        self.current = Some(family.to_string());
        Ok(())
    }

    fn line(&mut self, no: usize, line: &str) -> Result<(), String> {
        if line.contains('\r') {
            return Err("carriage return".into());
        }
        let t = line.trim_start_matches(is_blank);
        if t.is_empty() {
            return Ok(());
        }
        match t.strip_prefix('#') {
            Some(rest) => self.comment(rest),
            None => self.sample(no, t),
        }
    }

    fn comment(&mut self, rest: &str) -> Result<(), String> {
        if !rest.starts_with(is_blank) {
            return Ok(());
        }
        let (keyword, rest) = token(rest.trim_start_matches(is_blank));
        let help = match keyword {
            "HELP" => true,
            "TYPE" => false,
            _ => return Ok(()),
        };
        let (name, rest) = token(rest.trim_start_matches(is_blank));
        if !is_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        self.enter(name)?;
        let fam = self.families.entry(name.to_string()).or_default();
        if help {
            if fam.help {
                return Err(format!("second HELP for {name}"));
            }
            fam.help = true;
            let text = rest.strip_prefix(is_blank).unwrap_or(rest);
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                    return Err("invalid escape in HELP".into());
                }
            }
            return Ok(());
        }
        let (ty, extra) = token(rest.trim_start_matches(is_blank));
        if !extra.trim_start_matches(is_blank).is_empty() {
            return Err("extra text after the TYPE".into());
        }
        let ty = match ty {
            "counter" => Type::Counter,
            "gauge" => Type::Gauge,
            "histogram" => Type::Histogram,
            "summary" => Type::Summary,
            "untyped" => Type::Untyped,
            other => return Err(format!("unknown type {other:?}")),
        };
        if fam.ty.is_some() {
            return Err(format!("second TYPE for {name}"));
        }
        if fam.samples {
            return Err(format!("TYPE for {name} after its samples"));
        }
        if ty == Type::Counter && !name.ends_with("_total") {
            return Err(format!("counter {name} does not end in _total"));
        }
        fam.ty = Some(ty);
        Ok(())
    }

    /// The family a sample name belongs to, its type and the sample's role in it.
    fn resolve(&self, name: &str) -> Result<(String, Type, Role), String> {
        if let Some(ty) = self.families.get(name).and_then(|f| f.ty) {
            return match ty {
                Type::Histogram => Err(format!(
                    "histogram {name} has samples only as _bucket, _sum and _count"
                )),
                ty => Ok((name.to_string(), ty, Role::Plain)),
            };
        }
        for (suffix, role) in [
            ("_bucket", Role::Bucket),
            ("_sum", Role::Sum),
            ("_count", Role::Count),
        ] {
            let Some(base) = name.strip_suffix(suffix) else {
                continue;
            };
            match self.families.get(base).and_then(|f| f.ty) {
                Some(Type::Histogram) => return Ok((base.to_string(), Type::Histogram, role)),
                Some(Type::Summary) if role != Role::Bucket => {
                    return Ok((base.to_string(), Type::Summary, role))
                }
                _ => {}
            }
        }
        Err(format!("sample {name} without a TYPE before it"))
    }

    fn sample(&mut self, no: usize, line: &str) -> Result<(), String> {
        let end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        let (name, mut rest) = line.split_at(end);
        if !is_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        let mut labels: LabelSet = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = parse_labels(r, &mut labels)?;
        }
        if !rest.starts_with(is_blank) {
            return Err("no blank before the value".into());
        }
        let (value, rest) = token(rest.trim_start_matches(is_blank));
        let value = parse_float(value).ok_or_else(|| format!("invalid value {value:?}"))?;
        let (ts, rest) = token(rest.trim_start_matches(is_blank));
        if !ts.is_empty() && ts.parse::<i64>().is_err() {
            return Err(format!("invalid timestamp {ts:?}"));
        }
        if !rest.trim_start_matches(is_blank).is_empty() {
            return Err("extra text after the timestamp".into());
        }

        let (family, ty, role) = self.resolve(name)?;
        self.enter(&family)?;
        if let Some(f) = self.families.get_mut(&family) {
            f.samples = true;
        }
        labels.sort();
        if !self.series.insert((name.to_string(), labels.clone())) {
            return Err(format!("duplicate series {name}{}", fmt_labels(&labels)));
        }
        let has_quantile = labels.iter().any(|(n, _)| n == "quantile");
        let non_negative = value >= 0.0; // false for NaN too
        match ty {
            Type::Counter if !non_negative => {
                return Err("counter value negative or NaN".into());
            }
            Type::Histogram => {
                let le = labels
                    .iter()
                    .position(|(n, _)| n == "le")
                    .map(|i| labels.remove(i).1);
                if (role == Role::Bucket) != le.is_some() {
                    return Err("le belongs on _bucket samples, and only there".into());
                }
                if matches!(role, Role::Bucket | Role::Count) && !non_negative {
                    return Err("histogram count negative or NaN".into());
                }
                let group = self.histograms.entry((family, labels)).or_default();
                match role {
                    Role::Bucket => {
                        let le = le.unwrap_or_default();
                        let bound = parse_float(&le)
                            .filter(|b| !b.is_nan())
                            .ok_or_else(|| format!("invalid le {le:?}"))?;
                        group.buckets.push((bound, value, no));
                    }
                    Role::Sum => group.sum = Some(value),
                    Role::Count => group.count = Some(value),
                    Role::Plain => {}
                }
            }
            Type::Summary if role == Role::Plain && !has_quantile => {
                return Err("summary sample without quantile".into());
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<(), String> {
        for ((name, labels), g) in &self.histograms {
            let series = format!("histogram {name}{}", fmt_labels(labels));
            let Some(&(last_le, last, _)) = g.buckets.last() else {
                return Err(format!("{series}: no _bucket samples"));
            };
            for w in g.buckets.windows(2) {
                let ((le0, c0, _), (le1, c1, line)) = (w[0], w[1]);
                if le1 <= le0 {
                    return Err(format!("line {line}: {series}: le not increasing"));
                }
                if c1 < c0 {
                    return Err(format!("line {line}: {series}: buckets not cumulative"));
                }
            }
            if last_le != f64::INFINITY {
                return Err(format!("{series}: the last bucket is not le=\"+Inf\""));
            }
            match g.count {
                None => return Err(format!("{series}: no _count")),
                Some(c) if c != last => {
                    return Err(format!(
                        "{series}: _count {c} differs from +Inf bucket {last}"
                    ))
                }
                Some(_) => {}
            }
            if g.sum.is_none() {
                return Err(format!("{series}: no _sum"));
            }
        }
        Ok(())
    }
}

/// Parses `name="value",…}` (the `{` already taken) into `labels`; returns what follows
/// the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut LabelSet) -> Result<&'a str, String> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without =")?;
        let name = &s[..eq];
        if !is_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} repeated"));
        }
        let body = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("invalid escape in label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        s = &body[close + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(text: &str, why: &str) {
        match validate(text) {
            Ok(()) => panic!("accepted {text:?}, expected an error about {why:?}"),
            Err(e) => assert!(e.contains(why), "error {e:?} for {text:?} lacks {why:?}"),
        }
    }

    const HIST: &str = "# HELP h_seconds H.\n\
                        # TYPE h_seconds histogram\n\
                        h_seconds_bucket{a=\"1\",le=\"0.1\"} 1\n\
                        h_seconds_bucket{a=\"1\",le=\"1\"} 2\n\
                        h_seconds_bucket{a=\"1\",le=\"+Inf\"} 3\n\
                        h_seconds_sum{a=\"1\"} 4.5\n\
                        h_seconds_count{a=\"1\"} 3\n";

    #[test]
    fn accepts_good_text() {
        validate(HIST).expect("histogram");
        validate(
            "# a comment\n\
             \n\
             # HELP c_total C with \\\\ and \\n.\n\
             # TYPE c_total counter\n\
             c_total{x=\"a\\\"b\\\\c\\nd\",} 1.5e3 1700000000000\n\
             c_total 0\n\
             # TYPE g gauge\n\
             g -Inf\n\
             g{y=\"\"} NaN\n\
             # TYPE s summary\n\
             s{quantile=\"0.5\"} 1\n\
             s_sum 1\n\
             s_count 1\n\
             # TYPE u untyped\n\
             u{} +Inf\n",
        )
        .expect("mixed");
    }

    #[test]
    fn rejects_structure_errors() {
        bad("g 1", "line feed");
        bad("g 1\n", "without a TYPE");
        bad("# TYPE g gauge\n# TYPE g gauge\n", "second TYPE");
        bad("# HELP g a\n# HELP g b\n", "second HELP");
        bad(
            "# TYPE g gauge\ng 1\n# HELP g late\n# TYPE g gauge\n",
            "second TYPE",
        );
        bad("# TYPE c counter\n", "_total");
        bad("# TYPE g gaug\n", "unknown type");
        bad("# TYPE g gauge extra\n", "extra text");
        bad(
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
            "not contiguous",
        );
        bad("# TYPE g gauge\ng 1\ng 2\n", "duplicate series");
        bad(
            "# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1\ng{b=\"2\",a=\"1\"} 2\n",
            "duplicate series",
        );
        bad("# TYPE g gauge\ng 1\r\n", "carriage return");
        bad("# HELP g bad \\t escape\n", "invalid escape");
    }

    #[test]
    fn rejects_sample_errors() {
        bad("# TYPE g gauge\ng one\n", "invalid value");
        bad("# TYPE g gauge\ng 1_000\n", "invalid value");
        bad("# TYPE g gauge\ng\n", "no blank");
        bad("# TYPE g gauge\ng 1 2.5\n", "invalid timestamp");
        bad("# TYPE g gauge\ng 1 2 3\n", "extra text");
        bad("# TYPE g-h gauge\n", "invalid metric name");
        bad("# TYPE g gauge\ng{9a=\"x\"} 1\n", "invalid label name");
        bad("# TYPE g gauge\ng{a=\"x\",a=\"y\"} 1\n", "repeated");
        bad("# TYPE g gauge\ng{a=x} 1\n", "not quoted");
        bad("# TYPE g gauge\ng{a=\"x} 1\n", "unterminated");
        bad("# TYPE g gauge\ng{a=\"\\t\"} 1\n", "invalid escape");
        bad("# TYPE g gauge\ng{a=\"x\" b=\"y\"} 1\n", "expected ,");
        bad("# TYPE g gauge\ng{a} 1\n", "without =");
        bad("# TYPE c_total counter\nc_total -1\n", "negative");
        bad("# TYPE c_total counter\nc_total NaN\n", "negative or NaN");
        bad("# TYPE s summary\ns 1\n", "quantile");
    }

    #[test]
    fn rejects_histogram_errors() {
        let swap = |from: &str, to: &str| HIST.replacen(from, to, 1);
        bad(&swap("le=\"+Inf\"} 3", "le=\"5\"} 3"), "+Inf");
        bad(&swap("le=\"1\"} 2", "le=\"1\"} 0"), "not cumulative");
        bad(&swap("le=\"1\"} 2", "le=\"0.05\"} 2"), "not increasing");
        bad(
            &swap("h_seconds_count{a=\"1\"} 3", "h_seconds_count{a=\"1\"} 4"),
            "differs",
        );
        bad(&swap("h_seconds_count{a=\"1\"} 3\n", ""), "no _count");
        bad(&swap("h_seconds_sum{a=\"1\"} 4.5\n", ""), "no _sum");
        bad(&swap("le=\"0.1\"", "le=\"x\""), "invalid le");
        bad(
            &swap("h_seconds_sum{a=\"1\"}", "h_seconds_sum{a=\"1\",le=\"1\"}"),
            "le belongs",
        );
        bad(&swap(",le=\"1\"", ""), "le belongs");
        bad(
            &swap("h_seconds_sum{a=\"1\"}", "h_seconds{a=\"1\"}"),
            "only as _bucket",
        );
        bad(
            &swap(
                "h_seconds_bucket{a=\"1\",le=\"0.1\"} 1",
                "h_seconds_bucket{a=\"1\",le=\"0.1\"} -1",
            ),
            "negative",
        );
        bad("# TYPE h histogram\nh_sum 1\nh_count 0\n", "no _bucket");
        bad(&swap("le=\"1\"} 2", "le=\"0.1\"} 2"), "duplicate series");
    }
}
