//! Statement guardrails: refuse statements by their leading keywords before they reach
//! PostgreSQL (issue "Guardrails", item 3). Sans-IO: [`StatementRules::check`] takes the
//! SQL text of a simple Query or of a Parse message and says whether to forward it; the
//! caller answers a refusal with an ErrorResponse, SQLSTATE [`Refusal::SQLSTATE`]
//! (42501, insufficient_privilege).
//!
//! # Rules
//!
//! A rule entry such as `"ALTER SYSTEM"`, `"COPY ... PROGRAM"`, `"DROP DATABASE"` or
//! `"LOAD"` is a sequence of keywords, where `...` stands for any tokens in between (in
//! the same statement). An entry matches a statement when its first keyword is the
//! statement's first keyword and each following keyword comes next (immediately, or
//! later when separated by `...`), comparing unquoted words case-insensitively. With a
//! deny list, a matching statement is refused; with a non-empty allow list, a statement
//! that matches no allow entry is refused. Every statement of a multi-statement query is
//! checked; empty statements are fine.
//!
//! # Design
//!
//! * A real tokenizer ([`lexer`]) rather than a regex or prefix match: keywords inside
//!   strings, `E''` strings, quoted identifiers, dollar quotes and (nested) comments do
//!   not count, so `SELECT 'ALTER SYSTEM'` passes and `/* x */ ALTER/**/SYSTEM` does not.
//!   It mirrors the server's `scan.l` wherever text can hide (string continuation across
//!   newlines, `$` inside identifiers, `B''` strings without `''` escapes...), because a
//!   disagreement there could let a statement through unseen.
//! * No allocation while checking an accepted query: tokens are `&str` slices of the
//!   input, matching compares them with `eq_ignore_ascii_case`, and the lexer is a
//!   cheap `Clone` used for look-ahead. Only a refusal allocates (for its message).
//! * Text the server would reject as a syntax error never needs a precise answer: the
//!   simple protocol parses the whole query string before executing any of it, and the
//!   extended protocol allows one statement per Parse. So where the grammar is guessed
//!   (statement boundaries, CTE lists), only valid SQL has to be judged right, and a
//!   guess errs toward checking more text as statements.
//! * Rules are validated when built ([`StatementRules::new`]) and errors name the list
//!   and the index of the entry, for the config loader to turn into file:line.
//!
//! # What is looked through
//!
//! * Leading parentheses: `((SELECT 1))` starts with `SELECT`.
//! * `WITH`: the statement is checked against the deny list as starting with `WITH`,
//!   and, when the CTE list parses, each CTE body (`WITH x AS (DELETE ...)`) and the
//!   main statement after the list are checked as statements of their own (deny and
//!   allow). In allow mode a `WITH` statement is judged only by those parts, so allowing
//!   `SELECT` allows `WITH a AS (SELECT 1) SELECT * FROM a` but not a data-modifying
//!   CTE. If the CTE list does not parse, the statement is judged by its `WITH` alone.
//! * `EXPLAIN [ANALYZE] [VERBOSE] stmt` and `EXPLAIN (options) stmt`: both the EXPLAIN
//!   statement and `stmt` are checked (`EXPLAIN ANALYZE` executes `stmt`). In allow
//!   mode both must be allowed.
//! * `BEGIN ATOMIC ... END` bodies of SQL functions and procedures (PostgreSQL 14+): a
//!   `;` inside does not end the `CREATE` statement, and each statement of the body is
//!   checked too (so in allow mode the body's statements must be allowed).
//!
//! # Limitations
//!
//! This is a guardrail against mistakes, not a security boundary; use PostgreSQL
//! privileges for that.
//!
//! * Statements run indirectly are not seen: `PREPARE p AS ...` + `EXECUTE p`,
//!   `DECLARE c CURSOR FOR ...`, `CREATE RULE`, `DO` blocks and functions (`EXECUTE
//!   'COPY ... PROGRAM ...'` in PL/pgSQL), `CREATE TABLE ... AS`, `COPY (query) TO`.
//! * Matching is on words, not grammar: `COPY ... PROGRAM` also refuses
//!   `COPY program FROM STDIN` (a table named `program`); write `COPY ... FROM PROGRAM`
//!   and `COPY ... TO PROGRAM` to be precise. Quoted identifiers never match keywords.
//! * [`StatementRules::check`] assumes `standard_conforming_strings = on` (the default
//!   since 9.1). If a server runs with it off, pass the setting (reported by the server
//!   in ParameterStatus) to [`StatementRules::check_with`]: otherwise a `\'` in a plain
//!   string is read differently and a statement could hide inside what looks like a
//!   string.
//! * The client encoding must be ASCII-safe (UTF8, LATIN*, EUC_*, ...). SJIS, BIG5,
//!   GBK, GB18030 and UHC have multibyte characters whose second byte is `\` or `'`;
//!   PostgreSQL converts them before lexing, this lexer does not.
//! * Statements nested deeper than [`MAX_DEPTH`] levels of `WITH`/`EXPLAIN` are refused.

pub mod addr;
pub mod lexer;

/// A guardrail that acted, for the counters /metrics shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guardrail {
    QueryTimeout,
    MaxResultRows,
    MaxResultBytes,
    StatementRefused,
    MaxClientConnPerAddr,
    ConnectRatePerAddr,
}

impl Guardrail {
    pub const ALL: [Guardrail; 6] = [
        Guardrail::QueryTimeout,
        Guardrail::MaxResultRows,
        Guardrail::MaxResultBytes,
        Guardrail::StatementRefused,
        Guardrail::MaxClientConnPerAddr,
        Guardrail::ConnectRatePerAddr,
    ];

    /// The config key behind it (`statement_refused` stands for both lists).
    pub fn as_str(self) -> &'static str {
        match self {
            Guardrail::QueryTimeout => "query_timeout",
            Guardrail::MaxResultRows => "max_result_rows",
            Guardrail::MaxResultBytes => "max_result_bytes",
            Guardrail::StatementRefused => "statement_refused",
            Guardrail::MaxClientConnPerAddr => "max_client_conn_per_addr",
            Guardrail::ConnectRatePerAddr => "connect_rate_per_addr",
        }
    }
}

use lexer::{for_each_unit, LexOptions, Lexer, Token, TokenKind};
use std::fmt;

/// How deep `WITH` bodies and `EXPLAIN` are followed before giving up (and refusing).
pub const MAX_DEPTH: u32 = 32;

/// Which list an entry or a refusal belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Deny,
    Allow,
}

impl ListKind {
    /// The config key the list comes from.
    pub fn config_name(self) -> &'static str {
        match self {
            ListKind::Deny => "deny_statements",
            ListKind::Allow => "allow_statements",
        }
    }
}

/// An invalid rule entry: which list, its index there, the entry and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub list: ListKind,
    pub index: usize,
    pub entry: String,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}] {:?}: {}",
            self.list.config_name(),
            self.index,
            self.entry,
            self.reason
        )
    }
}

impl std::error::Error for RuleError {}

/// Why a statement was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// It matched this deny entry (normalized: upper case, single spaces).
    Denied { entry: String },
    /// The allow list is not empty and no entry matched.
    NotAllowed,
    /// `WITH`/`EXPLAIN` nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// A refused statement: the reason and the statement's first words (upper case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub statement: String,
}

impl Refusal {
    /// insufficient_privilege.
    pub const SQLSTATE: &'static str = "42501";
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            RefusalReason::Denied { entry } => write!(
                f,
                "statement refused by the pooler's {}: \"{}\"",
                ListKind::Deny.config_name(),
                entry
            ),
            RefusalReason::NotAllowed => write!(
                f,
                "statement refused by the pooler's {}: \"{}\" is not allowed",
                ListKind::Allow.config_name(),
                self.statement
            ),
            RefusalReason::TooDeep => write!(
                f,
                "statement refused by the pooler: nested too deeply to check (\"{}\")",
                self.statement
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// One parsed entry: keyword runs separated by `...`.
#[derive(Clone, Debug)]
struct Entry {
    display: String,
    /// Upper-case keywords; runs must match consecutively, with any tokens between runs.
    runs: Vec<Vec<String>>,
}

fn is_keyword(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(c) if c.is_ascii_alphabetic() || *c == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

impl Entry {
    fn parse(raw: &str) -> Result<Entry, String> {
        let parts: Vec<&str> = raw.split_whitespace().collect();
        if parts.is_empty() {
            return Err("empty entry".into());
        }
        if parts.iter().all(|p| *p == "...") {
            return Err("an entry needs at least one keyword, not only `...`".into());
        }
        if parts[0] == "..." {
            return Err("an entry must start with the statement's first keyword, not `...`".into());
        }
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for part in parts {
            if part == "..." {
                if runs.last().is_some_and(|r| !r.is_empty()) {
                    runs.push(Vec::new());
                }
            } else if is_keyword(part) {
                if let Some(run) = runs.last_mut() {
                    run.push(part.to_ascii_uppercase());
                }
            } else {
                return Err(format!(
                    "`{part}` is not a keyword: write keywords separated by spaces, \
                     with `...` for any tokens in between (e.g. \"COPY ... PROGRAM\")"
                ));
            }
        }
        // A trailing `...` matches nothing more.
        if runs.last().is_some_and(|r| r.is_empty()) {
            runs.pop();
        }
        let display = runs
            .iter()
            .map(|r| r.join(" "))
            .collect::<Vec<_>>()
            .join(" ... ");
        Ok(Entry { display, runs })
    }

    /// Whether `text` (starting at the statement's first keyword) matches.
    fn matches(&self, text: &str, opts: LexOptions) -> bool {
        let mut lx = Lexer::with_options(text, opts);
        let mut runs = self.runs.iter();
        match runs.next() {
            Some(first) if match_run(&mut lx, first) => {}
            _ => return false,
        }
        for run in runs {
            loop {
                let save = lx.clone();
                if match_run(&mut lx, run) {
                    break;
                }
                lx = save;
                if lx.next().is_none() {
                    return false;
                }
            }
        }
        true
    }
}

fn match_run(lx: &mut Lexer<'_>, run: &[String]) -> bool {
    run.iter()
        .all(|kw| matches!(lx.next(), Some(t) if t.is_word(kw)))
}

/// After an opening `(`: skips to the matching `)` and returns its offset.
fn skip_balanced(lx: &mut Lexer<'_>) -> Option<usize> {
    let mut depth = 1u32;
    for t in lx.by_ref() {
        if t.is_punct(b'(') {
            depth += 1;
        } else if t.is_punct(b')') {
            depth -= 1;
            if depth == 0 {
                return Some(t.start);
            }
        }
    }
    None
}

fn eat_name(lx: &mut Lexer<'_>) -> bool {
    let mut ahead = lx.clone();
    match ahead.next() {
        Some(t) if matches!(t.kind, TokenKind::Word | TokenKind::QuotedIdent) => {
            *lx = ahead;
            true
        }
        _ => false,
    }
}

fn eat_name_list(lx: &mut Lexer<'_>) -> bool {
    loop {
        if !eat_name(lx) {
            return false;
        }
        if !lx.eat_punct(b',') {
            return true;
        }
    }
}

fn skip_past_word(lx: &mut Lexer<'_>, kw: &str) -> bool {
    lx.by_ref().any(|t: Token<'_>| t.is_word(kw))
}

/// `SEARCH {DEPTH|BREADTH} FIRST BY col [, ...] SET col`, after `SEARCH`.
fn skip_search(lx: &mut Lexer<'_>) -> bool {
    (lx.eat_word("DEPTH") || lx.eat_word("BREADTH"))
        && lx.eat_word("FIRST")
        && lx.eat_word("BY")
        && eat_name_list(lx)
        && lx.eat_word("SET")
        && eat_name(lx)
}

/// `CYCLE col [, ...] SET col [TO value DEFAULT value] USING col`, after `CYCLE`.
/// DEFAULT and USING are reserved, so they cannot appear inside the values.
fn skip_cycle(lx: &mut Lexer<'_>) -> bool {
    if !(eat_name_list(lx) && lx.eat_word("SET") && eat_name(lx)) {
        return false;
    }
    let using = if lx.eat_word("TO") {
        skip_past_word(lx, "DEFAULT") && skip_past_word(lx, "USING")
    } else {
        lx.eat_word("USING")
    };
    using && eat_name(lx)
}

/// The first words of a statement, for a refusal message.
fn first_words(text: &str, opts: LexOptions) -> String {
    let mut out = String::new();
    for (i, t) in Lexer::with_options(text, opts).enumerate() {
        if i == 4 || (i > 0 && t.kind != TokenKind::Word) {
            break;
        }
        if i > 0 {
            out.push(' ');
        }
        if t.kind == TokenKind::Word {
            out.push_str(&t.text.to_ascii_uppercase());
        } else {
            out.extend(t.text.chars().take(40));
        }
    }
    out
}

/// Deny and allow lists of leading-keyword entries, ready to check SQL text.
#[derive(Clone, Debug, Default)]
pub struct StatementRules {
    deny: Vec<Entry>,
    allow: Vec<Entry>,
}

impl StatementRules {
    /// Builds rules from config entries such as `"ALTER SYSTEM"` or `"COPY ... PROGRAM"`.
    /// An empty allow list means "allow everything not denied".
    pub fn new<D: AsRef<str>, A: AsRef<str>>(deny: &[D], allow: &[A]) -> Result<Self, RuleError> {
        fn parse_list<S: AsRef<str>>(list: ListKind, raw: &[S]) -> Result<Vec<Entry>, RuleError> {
            raw.iter()
                .enumerate()
                .map(|(index, e)| {
                    Entry::parse(e.as_ref()).map_err(|reason| RuleError {
                        list,
                        index,
                        entry: e.as_ref().to_string(),
                        reason,
                    })
                })
                .collect()
        }
        Ok(StatementRules {
            deny: parse_list(ListKind::Deny, deny)?,
            allow: parse_list(ListKind::Allow, allow)?,
        })
    }

    /// No rules at all: [`check`](Self::check) accepts everything without lexing.
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.allow.is_empty()
    }

    /// The normalized deny entries (e.g. `COPY ... PROGRAM`).
    pub fn deny_entries(&self) -> impl Iterator<Item = &str> {
        self.deny.iter().map(|e| e.display.as_str())
    }

    /// The normalized allow entries.
    pub fn allow_entries(&self) -> impl Iterator<Item = &str> {
        self.allow.iter().map(|e| e.display.as_str())
    }

    /// Checks every statement of `sql`, assuming `standard_conforming_strings = on`.
    pub fn check(&self, sql: &str) -> Result<(), Refusal> {
        self.check_with(sql, LexOptions::default())
    }

    /// Checks every statement of `sql` with the server's lexing settings.
    pub fn check_with(&self, sql: &str, opts: LexOptions) -> Result<(), Refusal> {
        if self.is_empty() {
            return Ok(());
        }
        for_each_unit(sql, opts, |unit| {
            self.check_range(sql, unit.start, unit.end, 0, opts)
        })
    }

    /// Checks the statement in `sql[start..end]`, looking through leading parentheses,
    /// `WITH` and `EXPLAIN`.
    fn check_range(
        &self,
        sql: &str,
        start: usize,
        end: usize,
        depth: u32,
        opts: LexOptions,
    ) -> Result<(), Refusal> {
        let text = sql.get(start..end).unwrap_or("");
        let mut lx = Lexer::with_options(text, opts);
        let first = loop {
            match lx.next() {
                None => return Ok(()),
                Some(t) if t.is_punct(b'(') => continue,
                Some(t) => break t,
            }
        };
        let head = start + first.start;
        if depth > MAX_DEPTH {
            return Err(Refusal {
                reason: RefusalReason::TooDeep,
                statement: first_words(sql.get(head..end).unwrap_or(""), opts),
            });
        }
        if first.is_word("WITH") {
            self.check_head(sql, head, end, false, opts)?;
            if !self.check_cte_list(sql, start, end, &mut lx, depth, opts)? {
                self.check_head(sql, head, end, true, opts)?;
            }
            return Ok(());
        }
        self.check_head(sql, head, end, true, opts)?;
        if first.is_word("EXPLAIN") {
            if lx.eat_punct(b'(') {
                if skip_balanced(&mut lx).is_none() {
                    return Ok(());
                }
            } else {
                let _ = lx.eat_word("ANALYZE") || lx.eat_word("ANALYSE");
                lx.eat_word("VERBOSE");
            }
            return self.check_range(sql, start + lx.offset(), end, depth + 1, opts);
        }
        Ok(())
    }

    /// Parses the CTE list after `WITH` (lexer offsets relative to `base`), checking each
    /// CTE body and then the main statement. Returns false if the list does not parse.
    fn check_cte_list(
        &self,
        sql: &str,
        base: usize,
        end: usize,
        lx: &mut Lexer<'_>,
        depth: u32,
        opts: LexOptions,
    ) -> Result<bool, Refusal> {
        lx.eat_word("RECURSIVE");
        loop {
            if !eat_name(lx) {
                return Ok(false);
            }
            if lx.eat_punct(b'(') && skip_balanced(lx).is_none() {
                return Ok(false);
            }
            if !lx.eat_word("AS") {
                return Ok(false);
            }
            lx.eat_word("NOT");
            lx.eat_word("MATERIALIZED");
            if !lx.eat_punct(b'(') {
                return Ok(false);
            }
            let body = lx.offset();
            let Some(close) = skip_balanced(lx) else {
                return Ok(false);
            };
            self.check_range(sql, base + body, base + close, depth + 1, opts)?;
            if lx.eat_word("SEARCH") && !skip_search(lx) {
                return Ok(false);
            }
            if lx.eat_word("CYCLE") && !skip_cycle(lx) {
                return Ok(false);
            }
            if !lx.eat_punct(b',') {
                break;
            }
        }
        self.check_range(sql, base + lx.offset(), end, depth + 1, opts)?;
        Ok(true)
    }

    /// Checks one statement head `sql[head..end]` (starting at its first keyword)
    /// against the deny list, and against the allow list if `allow_required`.
    fn check_head(
        &self,
        sql: &str,
        head: usize,
        end: usize,
        allow_required: bool,
        opts: LexOptions,
    ) -> Result<(), Refusal> {
        let text = sql.get(head..end).unwrap_or("");
        if let Some(e) = self.deny.iter().find(|e| e.matches(text, opts)) {
            return Err(Refusal {
                reason: RefusalReason::Denied {
                    entry: e.display.clone(),
                },
                statement: first_words(text, opts),
            });
        }
        if allow_required
            && !self.allow.is_empty()
            && !self.allow.iter().any(|e| e.matches(text, opts))
        {
            return Err(Refusal {
                reason: RefusalReason::NotAllowed,
                statement: first_words(text, opts),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
