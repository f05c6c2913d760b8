//! Access rules in pg_hba.conf syntax (`hba_file`, used when
//! `auth_type = "hba"`).
//!
//! Sans-IO except for [`HbaRules::load`], which reads the file and is meant
//! to run off the reactor (start-up or a reload thread). The result is an
//! immutable rule list the worker asks with [`HbaRules::find`].
//!
//! The tokenizer follows PostgreSQL 15's `hba.c` so a file that PostgreSQL
//! accepts reads the same way here: blanks are space, tab and CR; a field is
//! a comma-separated list (blanks after a comma continue the list); double
//! quotes protect commas, blanks and `#`, and `""` inside quotes is a literal
//! quote; a name that *starts* with a quote is never a keyword (`"all"` is a
//! database called all); keywords are case-sensitive. Backslash line
//! continuation is PostgreSQL 16 and is not supported, as in 15.
//!
//! Where this differs from PostgreSQL, and why:
//! - `+role` users and the `samerole`/`samegroup` database keywords are
//!   accepted but never match: the pooler does not know role membership (it
//!   would take a catalog query per login). A warning is logged at load so
//!   the operator is not surprised by a rule that is silently dead.
//! - The `replication` database keyword never matches: the pooler does not
//!   carry replication connections. It is accepted without a warning because
//!   PostgreSQL's stock pg_hba.conf contains such lines.
//! - Host names, `.domain` suffixes, `samenet`, `@file` inclusion, the
//!   `hostgssenc`/`hostnogssenc` types, methods other than the six below and
//!   options other than `clientcert` are errors at load, never skipped:
//!   skipping an access rule would change who gets in.
//! - An IPv4-mapped IPv6 client (`::ffff:a.b.c.d`) also matches IPv4 rules,
//!   because a dual-stack listener sees IPv4 clients that way (PostgreSQL
//!   binds IPv4 and IPv6 separately and never sees them).
//! - A netmask column must be contiguous (`255.255.0.0`, not `255.0.255.0`)
//!   because rules store a prefix length.
//! - Addresses are parsed by Rust's strict parser, so the legacy forms
//!   glibc's `getaddrinfo` also takes (`127.1`, `0x7f.0.0.1`) are errors.

use crate::net::cidr::{canonical, mask_u128, mask_u32, Cidr};
use std::fmt;
use std::iter::Peekable;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::Chars;

/// The first column of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnType {
    /// Unix-domain socket clients only.
    Local,
    /// TCP clients, with or without TLS.
    Host,
    /// TCP clients on TLS only.
    HostSsl,
    /// TCP clients without TLS only.
    HostNoSsl,
}

impl ConnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnType::Local => "local",
            ConnType::Host => "host",
            ConnType::HostSsl => "hostssl",
            ConnType::HostNoSsl => "hostnossl",
        }
    }

    fn matches(self, client_addr: Option<IpAddr>, tls: bool) -> bool {
        match self {
            ConnType::Local => client_addr.is_none(),
            ConnType::Host => client_addr.is_some(),
            ConnType::HostSsl => client_addr.is_some() && tls,
            ConnType::HostNoSsl => client_addr.is_some() && !tls,
        }
    }
}

impl fmt::Display for ConnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authentication method of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HbaMethod {
    Trust,
    Reject,
    /// As in PostgreSQL, a user whose stored secret is a SCRAM verifier is
    /// asked for SCRAM on an `md5` line; only md5-hashed secrets use md5.
    Md5,
    ScramSha256,
    /// Clear-text password (only sensible on TLS).
    Password,
    /// Client certificate whose CN equals the user name; implies
    /// `clientcert=verify-full`. Only valid on `hostssl` lines.
    Cert,
}

impl HbaMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HbaMethod::Trust => "trust",
            HbaMethod::Reject => "reject",
            HbaMethod::Md5 => "md5",
            HbaMethod::ScramSha256 => "scram-sha-256",
            HbaMethod::Password => "password",
            HbaMethod::Cert => "cert",
        }
    }
}

impl fmt::Display for HbaMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the DATABASE or USER column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameMatch {
    /// Unquoted `all`.
    All,
    /// A literal name, compared case-sensitively.
    Exact(String),
    /// Unquoted `sameuser` in the database column: database name = user name.
    SameUser,
    /// Unquoted `samerole`/`samegroup` in the database column. Never matches:
    /// role membership is not known to the pooler.
    SameRole,
    /// Unquoted `+role` in the user column (the name without `+`). Never
    /// matches: role membership is not known to the pooler.
    Group(String),
    /// Unquoted `replication` in the database column. Never matches: the
    /// pooler does not carry replication connections.
    Replication,
}

impl NameMatch {
    fn matches(&self, name: &str, user: &str) -> bool {
        match self {
            NameMatch::All => true,
            NameMatch::Exact(n) => n == name,
            NameMatch::SameUser => name == user,
            NameMatch::SameRole | NameMatch::Group(_) | NameMatch::Replication => false,
        }
    }
}

/// The ADDRESS column (and netmask column, folded into a prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMatch {
    /// `local` lines have no address column.
    Any,
    /// `all`.
    All,
    /// `samehost`: the client's address is one of the pooler's own.
    SameHost,
    /// `addr/prefix` or `addr mask`. Host bits in `addr` are ignored, as in
    /// PostgreSQL.
    Cidr { addr: IpAddr, prefix: u8 },
}

impl AddressMatch {
    fn matches(&self, client_addr: Option<IpAddr>, local_addrs: &[IpAddr]) -> bool {
        let raw = match (self, client_addr) {
            (AddressMatch::Any, _) => return true,
            (_, None) => return false,
            (_, Some(a)) => a,
        };
        let canon = canonical(raw);
        match *self {
            AddressMatch::Any | AddressMatch::All => true,
            AddressMatch::SameHost => local_addrs.iter().any(|l| canonical(*l) == canon),
            // The raw form lets IPv6 rules such as ::ffff:0:0/96 see mapped
            // clients; the canonical form lets IPv4 rules see them.
            AddressMatch::Cidr { addr, prefix } => Cidr { addr, prefix }.contains(raw),
        }
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRule {
    /// 1-based line number in the file, for logs and error messages.
    pub line: usize,
    pub conn_type: ConnType,
    pub databases: Vec<NameMatch>,
    pub users: Vec<NameMatch>,
    pub address: AddressMatch,
    pub method: HbaMethod,
    /// `clientcert=verify-ca|verify-full` as written (hostssl lines only).
    /// `cert` lines behave as verify-full whether or not it is written.
    pub clientcert: Option<String>,
}

impl HbaRule {
    /// Whether this line applies to the connection; see [`HbaRules::find`].
    pub fn matches(
        &self,
        client_addr: Option<IpAddr>,
        tls: bool,
        database: &str,
        user: &str,
        local_addrs: &[IpAddr],
    ) -> bool {
        self.conn_type.matches(client_addr, tls)
            && self.address.matches(client_addr, local_addrs)
            && self.databases.iter().any(|d| d.matches(database, user))
            && self.users.iter().any(|u| u.matches(user, user))
    }
}

/// A whole hba file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRules {
    pub rules: Vec<HbaRule>,
    pub file: PathBuf,
}

/// A load or parse failure. `line` is 1-based; 0 means the file as a whole
/// (unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for HbaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for HbaError {}

impl HbaRules {
    /// Reads and parses `path`. Blocking file I/O: call it off the reactor.
    pub fn load(path: &Path) -> Result<HbaRules, HbaError> {
        let bytes = std::fs::read(path).map_err(|e| HbaError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("could not read file: {e}"),
        })?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Self::parse(text, path),
            Err(e) => {
                let valid = bytes.get(..e.valid_up_to()).unwrap_or(&[]);
                Err(HbaError {
                    file: path.to_path_buf(),
                    line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
                    message: "invalid UTF-8".to_string(),
                })
            }
        }
    }

    /// Parses file text; `path` is only used in errors and logs. Stops at
    /// the first bad line, since a partly applied rule set is worse than the
    /// previous one.
    pub fn parse(text: &str, path: &Path) -> Result<HbaRules, HbaError> {
        let mut rules = Vec::new();
        for (idx, raw) in text.split('\n').enumerate() {
            let line = idx + 1;
            let fields = tokenize_line(raw);
            if fields.is_empty() {
                continue;
            }
            let rule = parse_line(&fields, line).map_err(|message| HbaError {
                file: path.to_path_buf(),
                line,
                message,
            })?;
            warn_dead_entries(&rule, path);
            rules.push(rule);
        }
        Ok(HbaRules {
            rules,
            file: path.to_path_buf(),
        })
    }

    /// First matching rule wins. `client_addr` None = unix socket. `tls` =
    /// the client connection is TLS. `local_addrs`: the pooler's own
    /// addresses, for `samehost`. A `reject` rule is returned like any other;
    /// None means no rule matched (see [`no_entry_message`]).
    pub fn find(
        &self,
        client_addr: Option<IpAddr>,
        tls: bool,
        database: &str,
        user: &str,
        local_addrs: &[IpAddr],
    ) -> Option<&HbaRule> {
        self.rules
            .iter()
            .find(|r| r.matches(client_addr, tls, database, user, local_addrs))
    }
}

/// PostgreSQL 15's message (SQLSTATE 28000) when no line matched.
pub fn no_entry_message(
    client_addr: Option<IpAddr>,
    tls: bool,
    database: &str,
    user: &str,
) -> String {
    format!(
        "no pg_hba.conf entry for host \"{}\", user \"{user}\", database \"{database}\", {}",
        host_info(client_addr),
        encryption_state(tls)
    )
}

/// PostgreSQL 15's message (SQLSTATE 28000) when a `reject` line matched.
pub fn reject_message(
    client_addr: Option<IpAddr>,
    tls: bool,
    database: &str,
    user: &str,
) -> String {
    format!(
        "pg_hba.conf rejects connection for host \"{}\", user \"{user}\", database \"{database}\", {}",
        host_info(client_addr),
        encryption_state(tls)
    )
}

fn host_info(client_addr: Option<IpAddr>) -> String {
    match client_addr {
        // What PostgreSQL's getnameinfo wrapper prints for AF_UNIX.
        None => "[local]".to_string(),
        Some(a) => canonical(a).to_string(),
    }
}

fn encryption_state(tls: bool) -> &'static str {
    if tls {
        "SSL encryption"
    } else {
        "no encryption"
    }
}

fn warn_dead_entries(rule: &HbaRule, path: &Path) {
    for n in rule.databases.iter().chain(&rule.users) {
        let what = match n {
            NameMatch::Group(g) => format!("\"+{g}\""),
            NameMatch::SameRole => "samerole/samegroup".to_string(),
            _ => continue,
        };
        log::warn!(
            "{}:{}: {what} never matches: role membership is not known to the pooler",
            path.display(),
            rule.line
        );
    }
}

// ---- tokenizer (PostgreSQL 15 hba.c next_token / next_field_expand) ----

struct Token {
    text: String,
    /// Began with a double quote: never a keyword, never `+role` or `@file`.
    quoted: bool,
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// The next token and whether a comma ended it (the field goes on). None at
/// end of line or at a comment.
fn next_token(it: &mut Peekable<Chars<'_>>) -> Option<(Token, bool)> {
    while it.next_if(|&c| is_blank(c) || c == ',').is_some() {}
    let mut text = String::new();
    let mut in_quote = false;
    let mut was_quote = false;
    let mut saw_quote = false;
    let mut quoted = false;
    let mut comma = false;
    while let Some(c) = it.next_if(|&c| in_quote || !is_blank(c)) {
        if c == '#' && !in_quote {
            it.for_each(drop);
            break;
        }
        if c == ',' && !in_quote {
            comma = true;
            break;
        }
        if c != '"' || was_quote {
            text.push(c);
        }
        was_quote = in_quote && c == '"' && !was_quote;
        if c == '"' {
            in_quote = !in_quote;
            saw_quote = true;
            if text.is_empty() {
                quoted = true;
            }
        }
    }
    (saw_quote || !text.is_empty()).then_some((Token { text, quoted }, comma))
}

fn tokenize_line(line: &str) -> Vec<Vec<Token>> {
    let mut it = line.chars().peekable();
    let mut fields = Vec::new();
    loop {
        let mut field = Vec::new();
        while let Some((tok, comma)) = next_token(&mut it) {
            field.push(tok);
            if !comma {
                break;
            }
        }
        if field.is_empty() {
            return fields;
        }
        fields.push(field);
    }
}

// ---- line parser (PostgreSQL 15 hba.c parse_hba_line) ----

fn single<'a>(field: &'a [Token], what: &str) -> Result<&'a Token, String> {
    match field {
        [t] => Ok(t),
        _ => Err(format!("multiple values specified for {what}")),
    }
}

fn parse_line(fields: &[Vec<Token>], line: usize) -> Result<HbaRule, String> {
    if let Some(t) = fields
        .iter()
        .flatten()
        .find(|t| !t.quoted && t.text.len() > 1 && t.text.starts_with('@'))
    {
        return Err(format!("@file inclusion is not supported (\"{}\")", t.text));
    }
    let mut fields = fields.iter();

    let conn_type = match fields.next() {
        Some(f) => parse_conn_type(single(f, "connection type")?)?,
        None => return Err("empty line".to_string()),
    };
    let databases = match fields.next() {
        Some(f) => parse_names(f, true),
        None => return Err("end-of-line before database specification".to_string()),
    };
    let users = match fields.next() {
        Some(f) => parse_names(f, false),
        None => return Err("end-of-line before role specification".to_string()),
    };
    let address = if conn_type == ConnType::Local {
        AddressMatch::Any
    } else {
        match fields.next() {
            Some(f) => parse_address(single(f, "host address")?, &mut fields)?,
            None => return Err("end-of-line before IP address specification".to_string()),
        }
    };
    let method = match fields.next() {
        Some(f) => parse_method(single(f, "authentication type")?)?,
        None => return Err("end-of-line before authentication method".to_string()),
    };
    if method == HbaMethod::Cert && conn_type != ConnType::HostSsl {
        return Err("cert authentication is only supported on hostssl connections".to_string());
    }

    let mut clientcert = None;
    for tok in fields.flatten() {
        let Some((name, value)) = tok.text.split_once('=') else {
            return Err(format!(
                "authentication option not in name=value format: {}",
                tok.text
            ));
        };
        match name {
            "clientcert" => {
                if conn_type != ConnType::HostSsl {
                    return Err("clientcert can only be configured for \"hostssl\" rows".into());
                }
                if value != "verify-ca" && value != "verify-full" {
                    return Err(format!("invalid value for clientcert: \"{value}\""));
                }
                if method == HbaMethod::Cert && value != "verify-full" {
                    return Err(
                        "clientcert only accepts \"verify-full\" when using \"cert\" authentication"
                            .into(),
                    );
                }
                clientcert = Some(value.to_string());
            }
            _ => {
                return Err(format!(
                    "authentication option \"{name}\" is not supported (only clientcert is)"
                ))
            }
        }
    }

    Ok(HbaRule {
        line,
        conn_type,
        databases,
        users,
        address,
        method,
        clientcert,
    })
}

fn parse_conn_type(tok: &Token) -> Result<ConnType, String> {
    match tok.text.as_str() {
        "local" => Ok(ConnType::Local),
        "host" => Ok(ConnType::Host),
        "hostssl" => Ok(ConnType::HostSsl),
        "hostnossl" => Ok(ConnType::HostNoSsl),
        t @ ("hostgssenc" | "hostnogssenc") => Err(format!(
            "connection type \"{t}\" is not supported (no GSSAPI encryption)"
        )),
        t => Err(format!("invalid connection type \"{t}\"")),
    }
}

fn parse_names(field: &[Token], database: bool) -> Vec<NameMatch> {
    field
        .iter()
        .map(|t| {
            if t.quoted {
                return NameMatch::Exact(t.text.clone());
            }
            match t.text.as_str() {
                "all" => NameMatch::All,
                "sameuser" if database => NameMatch::SameUser,
                "samerole" | "samegroup" if database => NameMatch::SameRole,
                "replication" if database => NameMatch::Replication,
                s => match s.strip_prefix('+') {
                    Some(g) if !database => NameMatch::Group(g.to_string()),
                    _ => NameMatch::Exact(s.to_string()),
                },
            }
        })
        .collect()
}

fn parse_address<'a>(
    tok: &Token,
    rest: &mut impl Iterator<Item = &'a Vec<Token>>,
) -> Result<AddressMatch, String> {
    let text = tok.text.as_str();
    if !tok.quoted {
        match text {
            "all" => return Ok(AddressMatch::All),
            "samehost" => return Ok(AddressMatch::SameHost),
            "samenet" => {
                return Err(
                    "samenet is not supported; list the networks as CIDR addresses".to_string(),
                )
            }
            _ => {}
        }
    }
    if text.contains('/') {
        let Cidr { addr, prefix } = Cidr::parse(text)?;
        return Ok(AddressMatch::Cidr { addr, prefix });
    }
    let Ok(addr) = text.parse::<IpAddr>() else {
        return Err(format!(
            "host names are not supported (\"{text}\"); use an address in CIDR notation"
        ));
    };
    let Some(mask_field) = rest.next() else {
        return Err(
            "end-of-line before netmask specification; specify an address range in CIDR \
             notation, or provide a separate netmask"
                .to_string(),
        );
    };
    let mask_tok = single(mask_field, "netmask")?;
    let Ok(mask) = mask_tok.text.parse::<IpAddr>() else {
        return Err(format!(
            "invalid IP mask \"{}\" (after the bare address \"{text}\": write {text}/32 or \
             {text}/128, or give a netmask)",
            mask_tok.text
        ));
    };
    let prefix = match (addr, mask) {
        (IpAddr::V4(_), IpAddr::V4(m)) => {
            let p = u32::from(m).leading_ones() as u8;
            (mask_u32(p) == u32::from(m)).then_some(p)
        }
        (IpAddr::V6(_), IpAddr::V6(m)) => {
            let p = u128::from(m).leading_ones() as u8;
            (mask_u128(p) == u128::from(m)).then_some(p)
        }
        _ => return Err("IP address and mask do not match".to_string()),
    };
    match prefix {
        Some(prefix) => Ok(AddressMatch::Cidr { addr, prefix }),
        None => Err(format!(
            "invalid IP mask \"{}\": the mask bits must be contiguous",
            mask_tok.text
        )),
    }
}

fn parse_method(tok: &Token) -> Result<HbaMethod, String> {
    match tok.text.as_str() {
        "trust" => Ok(HbaMethod::Trust),
        "reject" => Ok(HbaMethod::Reject),
        "md5" => Ok(HbaMethod::Md5),
        "scram-sha-256" => Ok(HbaMethod::ScramSha256),
        "password" => Ok(HbaMethod::Password),
        "cert" => Ok(HbaMethod::Cert),
        m @ ("peer" | "ident" | "ldap" | "gss" | "sspi" | "radius" | "pam" | "bsd") => Err(
            format!("authentication method \"{m}\" is not supported by the pooler"),
        ),
        m => Err(format!("invalid authentication method \"{m}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> HbaRules {
        match HbaRules::parse(text, Path::new("hba.conf")) {
            Ok(r) => r,
            Err(e) => panic!("parse failed: {e}\n{text}"),
        }
    }

    fn addr(s: &str) -> Option<IpAddr> {
        if s == "local" {
            None
        } else {
            Some(s.parse().unwrap_or_else(|_| panic!("bad test address {s}")))
        }
    }

    /// (client address or "local", tls, database, user, expected line)
    type Case = (
        &'static str,
        bool,
        &'static str,
        &'static str,
        Option<usize>,
    );

    fn check(name: &str, text: &str, local_addrs: &[&str], cases: &[Case]) {
        let rules = p(text);
        let locals: Vec<IpAddr> = local_addrs.iter().filter_map(|a| addr(a)).collect();
        for &(a, tls, db, user, want) in cases {
            let got = rules.find(addr(a), tls, db, user, &locals).map(|r| r.line);
            assert_eq!(
                got, want,
                "table {name}: client {a} tls={tls} db={db:?} user={user:?}"
            );
        }
    }

    #[test]
    fn first_match_wins_and_reject() {
        let text = "\
local all postgres reject
local all all trust
host all all 10.0.0.0/8 md5
host all all 10.1.0.0/16 trust
host all mallory 0.0.0.0/0 reject
";
        check(
            "first-match",
            text,
            &[],
            &[
                ("local", false, "app", "postgres", Some(1)),
                ("local", false, "app", "alice", Some(2)),
                ("10.1.2.3", false, "app", "alice", Some(3)),
                ("10.1.2.3", false, "app", "mallory", Some(3)),
                ("11.0.0.1", false, "app", "mallory", Some(5)),
                ("11.0.0.1", false, "app", "alice", None),
            ],
        );
        let rules = p(text);
        assert_eq!(rules.rules[0].method, HbaMethod::Reject);
        assert_eq!(rules.rules[2].method, HbaMethod::Md5);
    }

    #[test]
    fn names_lists_quotes_keywords() {
        let text = r#"
host "my,db" alice 0.0.0.0/0 md5
host app,"App 2" bob,carol 0.0.0.0/0 md5
host "all" all 0.0.0.0/0 md5
host db1, db2 "x y",z 0.0.0.0/0 md5
host "a""b" "sameuser" 0.0.0.0/0 md5
host sameuser all 0.0.0.0/0 trust
host x +admins,"+lit" 0.0.0.0/0 md5
host ALL all 0.0.0.0/0 md5
host "db#1" u 0.0.0.0/0 md5 # comment, "with quotes"
host samerole,replication all 0.0.0.0/0 md5
host "replication" all 0.0.0.0/0 md5
host all "all" 0.0.0.0/0 md5
"#;
        check(
            "names",
            text,
            &[],
            &[
                ("1.1.1.1", false, "my,db", "alice", Some(2)),
                ("1.1.1.1", false, "my", "alice", None),
                ("1.1.1.1", false, "my,db", "Alice", None),
                ("1.1.1.1", false, "app", "bob", Some(3)),
                ("1.1.1.1", false, "App 2", "carol", Some(3)),
                ("1.1.1.1", false, "app 2", "carol", None),
                ("1.1.1.1", false, "app", "dave", None),
                ("1.1.1.1", false, "all", "dave", Some(4)),
                ("1.1.1.1", false, "db2", "x y", Some(5)),
                ("1.1.1.1", false, "db1", "z", Some(5)),
                ("1.1.1.1", false, "a\"b", "sameuser", Some(6)),
                ("1.1.1.1", false, "eve", "eve", Some(7)),
                ("1.1.1.1", false, "x", "admins", None),
                ("1.1.1.1", false, "x", "+admins", None),
                ("1.1.1.1", false, "x", "+lit", Some(8)),
                ("1.1.1.1", false, "ALL", "u", Some(9)),
                ("1.1.1.1", false, "db#1", "u", Some(10)),
                ("1.1.1.1", false, "samerole", "u", None),
                ("1.1.1.1", false, "replication", "u", Some(12)),
                ("1.1.1.1", false, "q", "all", Some(13)),
                ("1.1.1.1", false, "q", "u", None),
            ],
        );
        let rules = p(text);
        assert_eq!(
            rules.rules[6].users,
            vec![
                NameMatch::Group("admins".into()),
                NameMatch::Exact("+lit".into())
            ]
        );
        assert_eq!(
            rules.rules[9].databases,
            vec![NameMatch::SameRole, NameMatch::Replication]
        );
        assert_eq!(
            rules.rules[1].databases[1],
            NameMatch::Exact("App 2".into())
        );
    }

    #[test]
    fn ipv4_cidr_and_mask() {
        let text = "\
host all a 10.0.0.0/8 trust
host all b 192.168.1.0/24 trust
host all c 192.168.1.77/32 trust
host all d 0.0.0.0/0 trust
host all e 127.0.0.1 255.255.255.255 trust
host all f 172.16.0.0 255.240.0.0 trust
host all g 10.1.2.3/8 trust
host all h 0.0.0.0 0.0.0.0 trust
";
        check(
            "v4",
            text,
            &[],
            &[
                ("10.0.0.0", false, "d", "a", Some(1)),
                ("10.255.255.255", false, "d", "a", Some(1)),
                ("11.0.0.0", false, "d", "a", None),
                ("9.255.255.255", false, "d", "a", None),
                ("192.168.1.0", false, "d", "b", Some(2)),
                ("192.168.1.255", false, "d", "b", Some(2)),
                ("192.168.2.0", false, "d", "b", None),
                ("192.168.0.255", false, "d", "b", None),
                ("192.168.1.77", false, "d", "c", Some(3)),
                ("192.168.1.78", false, "d", "c", None),
                ("192.168.1.76", false, "d", "c", None),
                ("1.2.3.4", false, "d", "d", Some(4)),
                ("255.255.255.255", false, "d", "d", Some(4)),
                ("0.0.0.0", false, "d", "d", Some(4)),
                ("::1", false, "d", "d", None),
                ("local", false, "d", "d", None),
                ("127.0.0.1", false, "d", "e", Some(5)),
                ("127.0.0.2", false, "d", "e", None),
                ("172.16.0.0", false, "d", "f", Some(6)),
                ("172.31.255.255", false, "d", "f", Some(6)),
                ("172.32.0.0", false, "d", "f", None),
                ("172.15.255.255", false, "d", "f", None),
                ("10.200.0.1", false, "d", "g", Some(7)),
                ("8.8.8.8", false, "d", "h", Some(8)),
                // IPv4-mapped IPv6 clients match IPv4 rules.
                ("::ffff:10.1.1.1", false, "d", "a", Some(1)),
                ("::ffff:192.168.1.77", false, "d", "c", Some(3)),
                ("::ffff:192.168.1.78", false, "d", "c", None),
                ("::ffff:11.0.0.1", false, "d", "a", None),
                ("::ffff:1.2.3.4", false, "d", "d", Some(4)),
                ("::ffff:127.0.0.1", true, "d", "e", Some(5)),
                // IPv4-compatible (deprecated) is not mapped.
                ("::10.1.1.1", false, "d", "a", None),
            ],
        );
        let rules = p(text);
        assert_eq!(
            rules.rules[5].address,
            AddressMatch::Cidr {
                addr: "172.16.0.0".parse().unwrap(),
                prefix: 12
            }
        );
    }

    #[test]
    fn ipv6_cidr() {
        let text = "\
host all a ::1/128 trust
host all b 2001:db8::/32 trust
host all c ::/0 trust
host all d fe80::/10 trust
host all e ::ffff:0:0/96 trust
host all f 2001:db8::1 ffff:ffff:ffff:ffff:: trust
";
        check(
            "v6",
            text,
            &[],
            &[
                ("::1", false, "d", "a", Some(1)),
                ("::2", false, "d", "a", None),
                ("::", false, "d", "a", None),
                ("127.0.0.1", false, "d", "a", None),
                ("2001:db8::", false, "d", "b", Some(2)),
                (
                    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                    false,
                    "d",
                    "b",
                    Some(2),
                ),
                ("2001:db9::", false, "d", "b", None),
                ("2001:db7:ffff::", false, "d", "b", None),
                ("2001:db8::1", false, "d", "c", Some(3)),
                ("::ffff:1.2.3.4", false, "d", "c", Some(3)),
                ("1.2.3.4", false, "d", "c", None),
                ("fe80::1", false, "d", "d", Some(4)),
                ("febf:ffff::", false, "d", "d", Some(4)),
                ("fec0::", false, "d", "d", None),
                ("::ffff:1.2.3.4", false, "d", "e", Some(5)),
                ("1.2.3.4", false, "d", "e", None),
                ("2001:db8:0:0:ffff::", false, "d", "f", Some(6)),
                ("2001:db8:0:1::", false, "d", "f", None),
            ],
        );
    }

    #[test]
    fn connection_types_and_tls() {
        let text = "\
local all a trust
host all b 0.0.0.0/0 trust
hostssl all c 0.0.0.0/0 trust
hostnossl all d 0.0.0.0/0 trust
hostssl all e all cert clientcert=verify-full
hostnossl all e all reject
hostssl all f ::/0 scram-sha-256 clientcert=verify-ca
";
        check(
            "conn-types",
            text,
            &[],
            &[
                ("local", false, "x", "a", Some(1)),
                ("local", true, "x", "a", Some(1)),
                ("1.2.3.4", false, "x", "a", None),
                ("local", false, "x", "b", None),
                ("1.2.3.4", true, "x", "b", Some(2)),
                ("1.2.3.4", false, "x", "b", Some(2)),
                ("1.2.3.4", true, "x", "c", Some(3)),
                ("1.2.3.4", false, "x", "c", None),
                ("local", true, "x", "c", None),
                ("1.2.3.4", true, "x", "d", None),
                ("1.2.3.4", false, "x", "d", Some(4)),
                ("local", false, "x", "d", None),
                ("2001:db8::1", true, "x", "e", Some(5)),
                ("2001:db8::1", false, "x", "e", Some(6)),
                ("local", false, "x", "e", None),
                ("::1", true, "x", "f", Some(7)),
                ("::1", false, "x", "f", None),
            ],
        );
        let rules = p(text);
        assert_eq!(rules.rules[4].clientcert.as_deref(), Some("verify-full"));
        assert_eq!(rules.rules[6].clientcert.as_deref(), Some("verify-ca"));
        assert_eq!(rules.rules[0].clientcert, None);
        assert_eq!(rules.rules[0].address, AddressMatch::Any);
        assert_eq!(rules.rules[4].address, AddressMatch::All);
        assert_eq!(rules.rules[4].method, HbaMethod::Cert);
    }

    #[test]
    fn samehost() {
        let text = "\
host all all samehost trust
host all all all reject
";
        let locals = ["10.0.0.5", "::1", "192.168.1.10"];
        check(
            "samehost",
            text,
            &locals,
            &[
                ("10.0.0.5", false, "d", "u", Some(1)),
                ("::ffff:10.0.0.5", false, "d", "u", Some(1)),
                ("::1", true, "d", "u", Some(1)),
                ("192.168.1.10", false, "d", "u", Some(1)),
                ("10.0.0.6", false, "d", "u", Some(2)),
                ("127.0.0.1", false, "d", "u", Some(2)),
                ("local", false, "d", "u", None),
            ],
        );
        check(
            "samehost-mapped-local",
            text,
            &["::ffff:127.0.0.1"],
            &[("127.0.0.1", false, "d", "u", Some(1))],
        );
        check(
            "samehost-no-locals",
            text,
            &[],
            &[("127.0.0.1", false, "d", "u", Some(2))],
        );
    }

    #[test]
    fn comments_blanks_crlf_and_eol_comment() {
        let text = "# header\r\n\r\n   \t\r\n  # indented comment\r\nhost all all 0.0.0.0/0 md5#no space\r\nlocal all all trust # trailing\r\n";
        let rules = p(text);
        assert_eq!(rules.rules.len(), 2);
        assert_eq!(rules.rules[0].line, 5);
        assert_eq!(rules.rules[0].method, HbaMethod::Md5);
        assert_eq!(rules.rules[1].line, 6);
        assert_eq!(rules.file, PathBuf::from("hba.conf"));
        assert!(p("").rules.is_empty());
        assert!(p("\n\n# only comments\n").rules.is_empty());
    }

    #[test]
    fn stock_postgres_file_loads() {
        // PostgreSQL 15's initdb output with trust, minus nothing.
        let text = "\
# TYPE  DATABASE        USER            ADDRESS                 METHOD

# \"local\" is for Unix domain socket connections only
local   all             all                                     trust
# IPv4 local connections:
host    all             all             127.0.0.1/32            trust
# IPv6 local connections:
host    all             all             ::1/128                 trust
# Allow replication connections from localhost, by a user with the
# replication privilege.
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
";
        let rules = p(text);
        assert_eq!(rules.rules.len(), 6);
        assert_eq!(
            rules.rules.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![4, 6, 8, 11, 12, 13]
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "local all all trust\nhost all all 0.0.0.0/0 md5\n# c\nhost all all ::1/128 peer\n",
                4,
                "authentication method \"peer\" is not supported",
            ),
            (
                "\n\n\nlocal all all foo\n",
                4,
                "invalid authentication method \"foo\"",
            ),
            ("local all all ident", 1, "\"ident\" is not supported"),
            ("host all all 0.0.0.0/0 ldap ldapserver=x", 1, "\"ldap\""),
            ("host all all 10.0.0.1 md5", 1, "invalid IP mask \"md5\""),
            (
                "host all all 10.0.0.1",
                1,
                "end-of-line before netmask specification",
            ),
            (
                "host all all 10.0.0.0/33 md5",
                1,
                "invalid CIDR mask in address \"10.0.0.0/33\"",
            ),
            ("host all all ::1/129 md5", 1, "invalid CIDR mask"),
            ("host all all 10.0.0.0/ md5", 1, "invalid CIDR mask"),
            ("host all all 10.0.0.0/x md5", 1, "invalid CIDR mask"),
            ("host all all 10.0.0.0/-1 md5", 1, "invalid CIDR mask"),
            ("host all all foo/8 md5", 1, "invalid IP address \"foo\""),
            (
                "host all all db.example.com md5",
                1,
                "host names are not supported",
            ),
            (
                "host all all .example.com md5",
                1,
                "host names are not supported",
            ),
            ("host all all 10.0.0.300/32 md5", 1, "invalid IP address"),
            ("host all all samenet md5", 1, "samenet is not supported"),
            (
                "host all @admins 0.0.0.0/0 md5",
                1,
                "@file inclusion is not supported",
            ),
            (
                "local @dbs all trust",
                1,
                "@file inclusion is not supported",
            ),
            (
                "host all all 0.0.0.0/0 cert",
                1,
                "cert authentication is only supported on hostssl connections",
            ),
            (
                "hostnossl all all 0.0.0.0/0 cert",
                1,
                "only supported on hostssl",
            ),
            ("local all all cert", 1, "only supported on hostssl"),
            (
                "host all all 0.0.0.0/0 md5 clientcert=verify-ca",
                1,
                "clientcert can only be configured for \"hostssl\" rows",
            ),
            (
                "hostssl all all 0.0.0.0/0 md5 clientcert=1",
                1,
                "invalid value for clientcert: \"1\"",
            ),
            (
                "hostssl all all 0.0.0.0/0 md5 clientcert=no-verify",
                1,
                "invalid value for clientcert",
            ),
            (
                "hostssl all all 0.0.0.0/0 cert clientcert=verify-ca",
                1,
                "clientcert only accepts \"verify-full\"",
            ),
            (
                "hostssl all all 0.0.0.0/0 md5 map=foo",
                1,
                "authentication option \"map\" is not supported",
            ),
            (
                "hostssl all all 0.0.0.0/0 md5 garbage",
                1,
                "authentication option not in name=value format: garbage",
            ),
            (
                "local all all trust \\\n",
                1,
                "not in name=value format: \\",
            ),
            (
                "hosts all all 0.0.0.0/0 md5",
                1,
                "invalid connection type \"hosts\"",
            ),
            (
                "HOST all all 0.0.0.0/0 md5",
                1,
                "invalid connection type \"HOST\"",
            ),
            (
                "hostgssenc all all 0.0.0.0/0 md5",
                1,
                "\"hostgssenc\" is not supported",
            ),
            (
                "host,local all all 0.0.0.0/0 md5",
                1,
                "multiple values specified for connection type",
            ),
            (
                "host all all 10.0.0.0/8,::1/128 md5",
                1,
                "multiple values specified for host address",
            ),
            (
                "host all all 0.0.0.0/0 md5,trust",
                1,
                "multiple values specified for authentication type",
            ),
            (
                "host all all 10.0.0.0 255.0.0.0,255.0.0.0 md5",
                1,
                "multiple values specified for netmask",
            ),
            ("local", 1, "end-of-line before database specification"),
            ("local all", 1, "end-of-line before role specification"),
            (
                "host all all",
                1,
                "end-of-line before IP address specification",
            ),
            (
                "local all all",
                1,
                "end-of-line before authentication method",
            ),
            (
                "local all all # trust",
                1,
                "end-of-line before authentication method",
            ),
            (
                "host all all 0.0.0.0/0",
                1,
                "end-of-line before authentication method",
            ),
            (
                "host all all 10.0.0.0 255.0.0.0",
                1,
                "end-of-line before authentication method",
            ),
            (
                "host all all 127.0.0.1 ffff:: md5",
                1,
                "IP address and mask do not match",
            ),
            ("host all all 10.0.0.0 255.0.255.0 md5", 1, "contiguous"),
            (
                "host all all \"all\" md5",
                1,
                "host names are not supported",
            ),
            (
                "local all all MD5",
                1,
                "invalid authentication method \"MD5\"",
            ),
        ];
        for &(text, line, needle) in cases {
            match HbaRules::parse(text, Path::new("/etc/pooler/hba.conf")) {
                Ok(r) => panic!("{text:?} parsed: {r:?}"),
                Err(e) => {
                    assert_eq!(e.line, line, "{text:?}: {e}");
                    assert!(
                        e.message.contains(needle),
                        "{text:?}: got {e}, want {needle:?}"
                    );
                    assert_eq!(e.file, PathBuf::from("/etc/pooler/hba.conf"));
                }
            }
        }
    }

    #[test]
    fn error_display() {
        let e = HbaRules::parse(
            "local all all trust\nlocal all all nope\n",
            Path::new("/x/hba.conf"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/x/hba.conf:2: invalid authentication method \"nope\""
        );
        let e = HbaError {
            file: "/x/hba.conf".into(),
            line: 0,
            message: "could not read file: gone".into(),
        };
        assert_eq!(e.to_string(), "/x/hba.conf: could not read file: gone");
    }

    #[test]
    fn messages_match_postgres_15() {
        assert_eq!(
            no_entry_message(None, false, "app", "alice"),
            "no pg_hba.conf entry for host \"[local]\", user \"alice\", database \"app\", no encryption"
        );
        assert_eq!(
            no_entry_message(addr("10.0.0.1"), true, "app", "alice"),
            "no pg_hba.conf entry for host \"10.0.0.1\", user \"alice\", database \"app\", SSL encryption"
        );
        assert_eq!(
            no_entry_message(addr("::1"), false, "d", "u"),
            "no pg_hba.conf entry for host \"::1\", user \"u\", database \"d\", no encryption"
        );
        assert_eq!(
            no_entry_message(addr("::ffff:1.2.3.4"), false, "d", "u"),
            "no pg_hba.conf entry for host \"1.2.3.4\", user \"u\", database \"d\", no encryption"
        );
        assert_eq!(
            reject_message(addr("10.0.0.1"), false, "d", "u"),
            "pg_hba.conf rejects connection for host \"10.0.0.1\", user \"u\", database \"d\", no encryption"
        );
    }

    fn temp_file(tag: &str, contents: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("pooler-hba-test-{}-{tag}.conf", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        path
    }

    #[test]
    fn load_reads_file_and_reports_bad_input() {
        let path = temp_file("ok", b"local all all trust\nhost all all ::1/128 md5\n");
        let rules = HbaRules::load(&path).expect("load");
        assert_eq!(rules.rules.len(), 2);
        assert_eq!(rules.file, path);
        let _ = std::fs::remove_file(&path);

        let path = temp_file("utf8", b"local all all trust\n# ok\nlocal \xff all trust\n");
        let e = HbaRules::load(&path).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (3, "invalid UTF-8"));
        let _ = std::fs::remove_file(&path);

        let missing = std::env::temp_dir().join("pooler-hba-test-does-not-exist.conf");
        let e = HbaRules::load(&missing).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.message.starts_with("could not read file"), "{e}");
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn exercise(text: &str) {
        let lines = text.split('\n').count();
        match HbaRules::parse(text, Path::new("fuzz.conf")) {
            Ok(rules) => {
                for r in &rules.rules {
                    assert!(r.line >= 1 && r.line <= lines);
                }
                let locals = [addr("10.0.0.1").unwrap_or(IpAddr::from([0u8; 4]))];
                for a in [None, addr("10.0.0.1"), addr("::1"), addr("::ffff:10.0.0.1")] {
                    for tls in [false, true] {
                        let _ = rules.find(a, tls, "all", "all", &locals);
                        let _ = rules.find(a, tls, "x", "x", &[]);
                    }
                }
            }
            Err(e) => {
                assert!(e.line >= 1 && e.line <= lines, "{e} in {text:?}");
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let len = rng.below(160);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            exercise(&String::from_utf8_lossy(&bytes));
        }

        // Random sentences over the grammar's own words reach the deeper paths.
        let words = [
            "local",
            "host",
            "hostssl",
            "hostnossl",
            "hostgssenc",
            "all",
            "sameuser",
            "samerole",
            "replication",
            "samehost",
            "samenet",
            "+g",
            "+",
            "@f",
            "@",
            "\"",
            "\"\"",
            ",",
            "#",
            " ",
            "\t",
            "\n",
            "\r",
            "\\",
            "10.0.0.0/8",
            "::1/128",
            "::ffff:1.2.3.4/128",
            "/",
            "/0",
            "/33",
            "255.255.0.0",
            "0.0.0.0",
            "127.0.0.1",
            "ffff::",
            "md5",
            "cert",
            "trust",
            "reject",
            "password",
            "scram-sha-256",
            "peer",
            "clientcert=verify-full",
            "clientcert=verify-ca",
            "clientcert",
            "=",
            "map=x",
            "é",
            "\u{0}",
            "x",
        ];
        for _ in 0..20000 {
            let n = rng.below(24);
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(words[rng.below(words.len())]);
                if rng.below(3) != 0 {
                    s.push(' ');
                }
            }
            exercise(&s);
        }
    }

    #[test]
    fn truncated_lines_never_panic() {
        let text = "\
local all all trust
host \"my,db\",app +g,\"x y\" 10.0.0.0/8 md5
hostssl all all ::/0 cert clientcert=verify-full
hostnossl sameuser all 172.16.0.0 255.240.0.0 password
host all all samehost scram-sha-256 # done
";
        for (i, _) in text.char_indices() {
            exercise(&text[..i]);
            exercise(&text[i..]);
        }
        for line in text.lines() {
            for (i, _) in line.char_indices() {
                exercise(&line[..i]);
            }
        }
    }
}
