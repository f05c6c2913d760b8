//! Session parameters: what each client asked for and what each server currently has, so
//! that a client landing on any server sees its own settings (PgBouncer's varcache, widened
//! to every startup parameter a driver sends).

use std::sync::Arc;

/// Parameters PostgreSQL reports with ParameterStatus whenever they change, so the pooler
/// always knows a server's value. Others are known only through the pooler's own SETs.
pub const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "default_transaction_read_only",
    "intervalstyle",
    "standard_conforming_strings",
    "timezone",
];

/// Startup keys that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

pub fn is_reported(lower_name: &str) -> bool {
    REPORTED.contains(&lower_name)
}

/// A small set of (lower-case name, value), kept sorted by name: lists are short (under
/// 20 entries), so a Vec with binary search beats a map, and two sets with the same
/// contents are equal as slices, which is the common case when a server changes hands.
///
/// The entries are shared and copied on write: thousands of idle clients of one
/// application hold the same handful of settings, so a pool hands them one copy
/// ([`ParamSet::share`]) instead of a dozen small allocations each.
#[derive(Debug, Clone, Default)]
pub struct ParamSet {
    entries: Option<Arc<Vec<(String, String)>>>,
}

impl PartialEq for ParamSet {
    fn eq(&self, other: &ParamSet) -> bool {
        match (&self.entries, &other.entries) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.slice() == other.slice(),
        }
    }
}

impl Eq for ParamSet {}

impl ParamSet {
    fn slice(&self) -> &[(String, String)] {
        self.entries.as_deref().map_or(&[], Vec::as_slice)
    }

    fn entries_mut(&mut self) -> &mut Vec<(String, String)> {
        Arc::make_mut(self.entries.get_or_insert_with(Default::default))
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.slice().binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| self.slice()[i].1.as_str())
    }

    /// Sets a value; returns whether it changed.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        match self.position(name) {
            Ok(i) if self.slice()[i].1 == value => false,
            Ok(i) => {
                value.clone_into(&mut self.entries_mut()[i].1);
                true
            }
            Err(i) => {
                self.entries_mut()
                    .insert(i, (name.to_owned(), value.to_owned()));
                true
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.position(name) {
            self.entries_mut().remove(i);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.slice().iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.slice().is_empty()
    }

    /// This set, or an equal one from `known` so that both share their entries; an
    /// unseen set joins `known` (at most `keep` of them, newest first).
    pub fn share(self, known: &mut Vec<ParamSet>, keep: usize) -> ParamSet {
        if let Some(i) = known.iter().position(|k| *k == self) {
            let found = known.remove(i);
            known.insert(0, found.clone());
            return found;
        }
        known.insert(0, self.clone());
        known.truncate(keep);
        self
    }
}

/// The SQL that makes a server's session settings equal to what a client expects, or None
/// when they already match. Settings the server has from an earlier client's startup but
/// this client never asked for are RESET, so nothing leaks between clients.
pub fn sync_sql(wanted: &ParamSet, server: &ParamSet) -> Option<String> {
    // On every link in transaction mode: the usual answer, nothing to do, costs one
    // slice comparison.
    if wanted == server {
        return None;
    }
    let mut sql = String::new();
    for (name, value) in wanted.iter() {
        if server.get(name) != Some(value) {
            sql.push_str("SET ");
            crate::protocol::quote_ident(&mut sql, name);
            sql.push_str(" = ");
            crate::protocol::quote_literal(&mut sql, value);
            sql.push(';');
        }
    }
    for (name, _) in server.iter() {
        if !is_reported(name) && wanted.get(name).is_none() {
            sql.push_str("RESET ");
            crate::protocol::quote_ident(&mut sql, name);
            sql.push(';');
        }
    }
    (!sql.is_empty()).then_some(sql)
}

/// Records the effect of a successful [`sync_sql`] on the server's side.
pub fn apply_sync(wanted: &ParamSet, server: &mut ParamSet) {
    for (name, value) in wanted.iter() {
        server.set(name, value);
    }
    let stale: Vec<String> = server
        .iter()
        .filter(|(n, _)| !is_reported(n) && wanted.get(n).is_none())
        .map(|(n, _)| n.to_owned())
        .collect();
    for n in stale {
        server.remove(&n);
    }
}

/// Settings from a startup packet: every key except the non-settings, plus the `-c name=value`
/// and `--name=value` switches inside `options`. Names are lower-cased, as GUC names are
/// case-insensitive. `_pq_.` protocol options are left for the caller to refuse.
pub fn startup_settings(params: &[(String, String)]) -> ParamSet {
    let mut set = ParamSet::default();
    for (k, v) in params {
        let lower = k.to_ascii_lowercase();
        if lower == "options" {
            for (name, value) in parse_options(v) {
                set.set(&name.to_ascii_lowercase().replace('-', "_"), &value);
            }
        } else if !NOT_SETTINGS.contains(&lower.as_str()) && !lower.starts_with("_pq_.") {
            set.set(&lower, v);
        }
    }
    set
}

/// Splits libpq's `options` string: whitespace separates words, backslash escapes the next
/// character; words are `-c name=value`, `-cname=value` or `--name=value`.
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = options.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
                in_word = true;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut iter = words.into_iter();
    while let Some(w) = iter.next() {
        let setting = if w == "-c" {
            iter.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_owned())
        } else {
            w.strip_prefix("-c").map(str::to_owned)
        };
        if let Some(s) = setting {
            if let Some((n, v)) = s.split_once('=') {
                out.push((n.to_owned(), v.to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_forms() {
        assert_eq!(
            parse_options("-c search_path=a,b --statement-timeout=5 -cwork_mem=4MB"),
            vec![
                ("search_path".into(), "a,b".into()),
                ("statement-timeout".into(), "5".into()),
                ("work_mem".into(), "4MB".into())
            ]
        );
        assert_eq!(
            parse_options(r"-c application_name=a\ b"),
            vec![("application_name".into(), "a b".into())]
        );
    }

    #[test]
    fn startup_settings_skip_identity_keys() {
        let p = vec![
            ("user".to_string(), "u".to_string()),
            ("database".to_string(), "d".to_string()),
            ("DateStyle".to_string(), "ISO".to_string()),
            ("options".to_string(), "-c statement_timeout=5".to_string()),
        ];
        let s = startup_settings(&p);
        assert_eq!(s.get("datestyle"), Some("ISO"));
        assert_eq!(s.get("statement_timeout"), Some("5"));
        assert_eq!(s.get("user"), None);
    }

    #[test]
    fn sync_sets_and_resets() {
        let mut wanted = ParamSet::default();
        wanted.set("timezone", "UTC");
        wanted.set("extra_float_digits", "3");
        let mut server = ParamSet::default();
        server.set("timezone", "Europe/Paris");
        server.set("search_path", "x");
        let sql = sync_sql(&wanted, &server).unwrap();
        assert_eq!(
            sql,
            "SET \"extra_float_digits\" = '3';SET \"timezone\" = 'UTC';RESET \"search_path\";"
        );
        apply_sync(&wanted, &mut server);
        assert_eq!(sync_sql(&wanted, &server), None);
    }

    #[test]
    fn equal_sets_share_entries_and_copy_on_write() {
        let mut known = Vec::new();
        let make = || {
            let mut p = ParamSet::default();
            p.set("timezone", "UTC");
            p.set("application_name", "app");
            p
        };
        let a = make().share(&mut known, 2);
        let b = make().share(&mut known, 2);
        let (Some(ea), Some(eb)) = (&a.entries, &b.entries) else {
            panic!("sets have entries");
        };
        assert!(Arc::ptr_eq(ea, eb));
        let mut c = b.clone();
        assert!(!c.set("timezone", "UTC"));
        c.set("timezone", "Europe/Paris");
        assert_eq!(a.get("timezone"), Some("UTC"));
        assert_eq!(c.get("timezone"), Some("Europe/Paris"));
        assert_ne!(a, c);
        // The list keeps the newest `keep` sets.
        c.clone().share(&mut known, 2);
        ParamSet::default().share(&mut known, 2);
        assert_eq!(known.len(), 2);
        assert!(!known.contains(&a));
        assert_eq!(ParamSet::default(), {
            let mut e = ParamSet::default();
            e.set("x", "1");
            e.remove("x");
            e
        });
    }
}
