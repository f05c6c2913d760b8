//! The console's command language: a small lexer and a parser per command.
//!
//! PgBouncer matches each query against three regular expressions. A lexer
//! instead gives comments, several statements per query and error messages
//! that say which token was wrong, at no cost in dependencies.

use std::fmt;

use super::{sqlstate, AdminError};

/// What SHOW can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShowTarget {
    Help,
    Version,
    Config,
    Databases,
    Pools,
    Clients,
    Servers,
    Stats,
    Users,
    Lists,
    AuthQueryCache,
    AuthQueryExecutors,
}

impl ShowTarget {
    /// Every target, in the order SHOW HELP lists them.
    pub const ALL: &'static [ShowTarget] = &[
        ShowTarget::Help,
        ShowTarget::Version,
        ShowTarget::Config,
        ShowTarget::Databases,
        ShowTarget::Pools,
        ShowTarget::Clients,
        ShowTarget::Servers,
        ShowTarget::Stats,
        ShowTarget::Users,
        ShowTarget::Lists,
        ShowTarget::AuthQueryCache,
        ShowTarget::AuthQueryExecutors,
    ];

    /// The name after SHOW, upper case.
    pub fn name(self) -> &'static str {
        match self {
            ShowTarget::Help => "HELP",
            ShowTarget::Version => "VERSION",
            ShowTarget::Config => "CONFIG",
            ShowTarget::Databases => "DATABASES",
            ShowTarget::Pools => "POOLS",
            ShowTarget::Clients => "CLIENTS",
            ShowTarget::Servers => "SERVERS",
            ShowTarget::Stats => "STATS",
            ShowTarget::Users => "USERS",
            ShowTarget::Lists => "LISTS",
            ShowTarget::AuthQueryCache => "AUTH_QUERY_CACHE",
            ShowTarget::AuthQueryExecutors => "AUTH_QUERY_EXECUTORS",
        }
    }

    /// Case-insensitive.
    pub fn from_name(name: &str) -> Option<ShowTarget> {
        ShowTarget::ALL
            .iter()
            .copied()
            .find(|target| target.name().eq_ignore_ascii_case(name))
    }
}

/// One console command. Database names are as typed (bare names are not
/// folded to lower case, as in PgBouncer, because `[databases.NAME]` keys are
/// case-sensitive); quoted names have their quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    Show(ShowTarget),
    Reload,
    /// `None`: every database.
    Pause(Option<String>),
    /// `None`: every database.
    Resume(Option<String>),
    Disable(String),
    Enable(String),
    /// A database is required, unlike current PgBouncer where a bare KILL drops
    /// every connection: a command that short should not be able to do that.
    Kill(String),
    /// `None`: every database.
    Reconnect(Option<String>),
    /// `None`: every database.
    WaitClose(Option<String>),
    Shutdown,
    /// `SET key = value` or `SET key TO value`. A bare key is folded to lower
    /// case (setting names are); the value is the text as written, quotes
    /// removed. [`super::resolve_set`] checks both against the settings table.
    Set {
        key: String,
        value: String,
    },
}

impl AdminCommand {
    /// The CommandComplete tag: `SHOW` for SHOW commands, else the command's
    /// name, as PgBouncer sends them.
    pub fn tag(&self) -> &'static str {
        match self {
            AdminCommand::Show(_) => "SHOW",
            AdminCommand::Reload => "RELOAD",
            AdminCommand::Pause(_) => "PAUSE",
            AdminCommand::Resume(_) => "RESUME",
            AdminCommand::Disable(_) => "DISABLE",
            AdminCommand::Enable(_) => "ENABLE",
            AdminCommand::Kill(_) => "KILL",
            AdminCommand::Reconnect(_) => "RECONNECT",
            AdminCommand::WaitClose(_) => "WAIT_CLOSE",
            AdminCommand::Shutdown => "SHUTDOWN",
            AdminCommand::Set { .. } => "SET",
        }
    }

    /// The database the command is limited to, if any.
    pub fn database(&self) -> Option<&str> {
        match self {
            AdminCommand::Pause(db)
            | AdminCommand::Resume(db)
            | AdminCommand::Reconnect(db)
            | AdminCommand::WaitClose(db) => db.as_deref(),
            AdminCommand::Disable(db) | AdminCommand::Enable(db) | AdminCommand::Kill(db) => {
                Some(db)
            }
            AdminCommand::Show(_)
            | AdminCommand::Reload
            | AdminCommand::Shutdown
            | AdminCommand::Set { .. } => None,
        }
    }
}

/// Renders the command so that parsing the text gives it back; for log lines.
impl fmt::Display for AdminCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminCommand::Show(target) => write!(f, "SHOW {}", target.name()),
            AdminCommand::Set { key, value } => {
                // A bare key is folded to lower case, so others are quoted.
                let key = if *key == key.to_ascii_lowercase() {
                    ident(key)
                } else {
                    format!("\"{}\"", key.replace('"', "\"\""))
                };
                write!(f, "SET {key} = '{}'", value.replace('\'', "''"))
            }
            other => match other.database() {
                Some(db) => write!(f, "{} {}", other.tag(), ident(db)),
                None => f.write_str(other.tag()),
            },
        }
    }
}

/// `name` bare if it lexes back as the same word, else double-quoted.
fn ident(name: &str) -> String {
    let bare = !name.is_empty()
        && name.chars().all(is_word_char)
        && !name.contains("--")
        && !name.starts_with('-');
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

const SHOW_USAGE: &str = "SHOW name (SHOW HELP lists them)";

/// Every command but SHOW, with its usage line; SHOW HELP lists these.
pub const CONTROL_COMMANDS: &[(&str, &str)] = &[
    ("RELOAD", "RELOAD"),
    ("PAUSE", "PAUSE [db]"),
    ("RESUME", "RESUME [db]"),
    ("DISABLE", "DISABLE db"),
    ("ENABLE", "ENABLE db"),
    ("KILL", "KILL db"),
    ("RECONNECT", "RECONNECT [db]"),
    ("WAIT_CLOSE", "WAIT_CLOSE [db]"),
    ("SHUTDOWN", "SHUTDOWN"),
    ("SET", "SET key = value"),
];

/// Whether `cmd` is a SHOW command, the only kind `stats_users` may run.
pub fn is_show(cmd: &AdminCommand) -> bool {
    matches!(cmd, AdminCommand::Show(_))
}

/// Whether `cmd` needs a user listed in `admin_users`; the caller answers
/// others with [`AdminError::permission_denied`].
pub fn requires_admin(cmd: &AdminCommand) -> bool {
    !is_show(cmd)
}

/// Parses a simple-query string into its commands, in order. Nothing is
/// returned unless every statement parses, so a typo in the last of several
/// commands runs none of them (PostgreSQL too parses the whole string before
/// it executes any of it). Empty statements (`;;`, a query of only comments)
/// are skipped; an empty result means the caller sends EmptyQueryResponse.
pub fn parse(sql: &str) -> Result<Vec<AdminCommand>, AdminError> {
    let tokens = lex(sql)?;
    tokens
        .split(|token| token.kind == Kind::Semicolon)
        .filter(|statement| !statement.is_empty())
        .map(statement)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A bare word: keywords, names, numbers, `5s`, `127.0.0.1`.
    Word,
    /// `"..."` with `""` for a quote.
    QuotedIdent,
    /// `'...'` with `''` for a quote.
    Literal,
    Equals,
    Semicolon,
}

#[derive(Debug, Clone)]
struct Token<'a> {
    kind: Kind,
    /// Unquoted value (the text itself for words and punctuation).
    value: String,
    /// The source text, for error messages.
    raw: &'a str,
}

/// Characters of a bare word besides letters and digits. `-` is one so that
/// `-1` and host names work; `--` still starts a comment.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '$' | ':')
}

fn lex(sql: &str) -> Result<Vec<Token<'_>>, AdminError> {
    let mut tokens = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        let rest = &sql[start..];
        if c.is_whitespace() {
            chars.next();
        } else if rest.starts_with("--") {
            // To the end of the line.
            while chars.next_if(|&(_, c)| c != '\n').is_some() {}
        } else if rest.starts_with("/*") {
            skip_block_comment(sql, start, &mut chars)?;
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut value = String::new();
            let end = loop {
                match chars.next() {
                    Some((i, q)) if q == c => {
                        if chars.next_if(|&(_, next)| next == c).is_some() {
                            value.push(c);
                        } else {
                            break i + 1;
                        }
                    }
                    Some((_, other)) => value.push(other),
                    None if c == '\'' => {
                        return Err(AdminError::syntax("unterminated quoted string"))
                    }
                    None => return Err(AdminError::syntax("unterminated quoted identifier")),
                }
            };
            let kind = if c == '\'' {
                Kind::Literal
            } else if value.is_empty() {
                return Err(AdminError::syntax(
                    "zero-length delimited identifier at or near \"\"\"\"",
                ));
            } else {
                Kind::QuotedIdent
            };
            tokens.push(Token {
                kind,
                value,
                raw: &sql[start..end],
            });
        } else if c == ';' || c == '=' {
            chars.next();
            tokens.push(Token {
                kind: if c == ';' {
                    Kind::Semicolon
                } else {
                    Kind::Equals
                },
                value: c.to_string(),
                raw: &sql[start..start + 1],
            });
        } else if is_word_char(c) {
            let mut end = start;
            while let Some(&(i, c)) = chars.peek() {
                if !is_word_char(c) || sql[i..].starts_with("--") {
                    break;
                }
                end = i + c.len_utf8();
                chars.next();
            }
            tokens.push(Token {
                kind: Kind::Word,
                value: sql[start..end].to_string(),
                raw: &sql[start..end],
            });
        } else {
            return Err(near(&sql[start..start + c.len_utf8()], None));
        }
    }
    Ok(tokens)
}

/// Skips a `/* */` comment, which nests as in PostgreSQL.
fn skip_block_comment(
    sql: &str,
    start: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<(), AdminError> {
    let mut depth = 0usize;
    let mut pos = start;
    while pos < sql.len() {
        let rest = &sql[pos..];
        if rest.starts_with("/*") {
            depth += 1;
            pos += 2;
        } else if rest.starts_with("*/") {
            depth -= 1;
            pos += 2;
            if depth == 0 {
                while chars.next_if(|&(i, _)| i < pos).is_some() {}
                return Ok(());
            }
        } else {
            pos += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    Err(AdminError::syntax("unterminated /* comment"))
}

/// `syntax error at or near "<raw>"`, with a usage line when there is one.
fn near(raw: &str, usage: Option<&str>) -> AdminError {
    let mut message = format!("syntax error at or near {}", quoted(raw));
    if let Some(usage) = usage {
        message.push_str("; usage: ");
        message.push_str(usage);
    }
    AdminError::syntax(message)
}

/// User text in a message: double-quoted, cut after 64 characters so a
/// pasted megabyte does not come back in the error.
fn quoted(text: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::from("\"");
    for (count, c) in text.chars().enumerate() {
        if count == MAX {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            // A NUL would end the message field of the ErrorResponse early.
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn unknown(what: &str) -> AdminError {
    AdminError::syntax(format!(
        "unknown command: {}; SHOW HELP lists the commands",
        quoted(what)
    ))
}

/// Tokens of one statement, consumed front to back.
struct Cursor<'t, 'a> {
    tokens: &'t [Token<'a>],
    pos: usize,
    usage: &'static str,
}

impl<'t, 'a> Cursor<'t, 'a> {
    fn advance(&mut self) -> Option<&'t Token<'a>> {
        let token = self.tokens.get(self.pos)?;
        self.pos += 1;
        Some(token)
    }

    /// A database name, if the statement goes on.
    fn optional_name(&mut self) -> Result<Option<String>, AdminError> {
        match self.advance() {
            None => Ok(None),
            Some(token) if matches!(token.kind, Kind::Word | Kind::QuotedIdent) => {
                Ok(Some(token.value.clone()))
            }
            Some(token) => Err(near(token.raw, Some(self.usage))),
        }
    }

    fn required_name(&mut self, command: &str) -> Result<String, AdminError> {
        self.optional_name()?.ok_or_else(|| {
            AdminError::syntax(format!(
                "{command} needs a database name; usage: {}",
                self.usage
            ))
        })
    }

    /// The statement must end here.
    fn end(&mut self) -> Result<(), AdminError> {
        match self.advance() {
            None => Ok(()),
            Some(token) => Err(near(token.raw, Some(self.usage))),
        }
    }
}

fn statement(tokens: &[Token<'_>]) -> Result<AdminCommand, AdminError> {
    let Some(first) = tokens.first() else {
        return Err(AdminError::syntax("empty statement"));
    };
    if first.kind != Kind::Word {
        return Err(match first.kind {
            Kind::QuotedIdent | Kind::Literal => unknown(first.raw),
            _ => near(first.raw, None),
        });
    }
    let keyword = first.value.to_ascii_uppercase();
    let usage = if keyword == "SHOW" {
        SHOW_USAGE
    } else {
        match CONTROL_COMMANDS.iter().find(|(name, _)| *name == keyword) {
            Some((_, usage)) => usage,
            None => return Err(unknown(first.raw)),
        }
    };
    let mut cursor = Cursor {
        tokens,
        pos: 1,
        usage,
    };
    let command = match keyword.as_str() {
        "SHOW" => {
            let name = match cursor.advance() {
                Some(token) if token.kind == Kind::Word => token,
                Some(token) => return Err(near(token.raw, Some(usage))),
                None => {
                    return Err(AdminError::syntax(format!(
                        "SHOW needs a name; usage: {usage}"
                    )))
                }
            };
            let target = ShowTarget::from_name(&name.value)
                .ok_or_else(|| unknown(&format!("{} {}", first.raw, name.raw)))?;
            AdminCommand::Show(target)
        }
        "RELOAD" => AdminCommand::Reload,
        "SHUTDOWN" => AdminCommand::Shutdown,
        "PAUSE" => AdminCommand::Pause(cursor.optional_name()?),
        "RESUME" => AdminCommand::Resume(cursor.optional_name()?),
        "RECONNECT" => AdminCommand::Reconnect(cursor.optional_name()?),
        "WAIT_CLOSE" => AdminCommand::WaitClose(cursor.optional_name()?),
        "DISABLE" => AdminCommand::Disable(cursor.required_name("DISABLE")?),
        "ENABLE" => AdminCommand::Enable(cursor.required_name("ENABLE")?),
        "KILL" => AdminCommand::Kill(cursor.required_name("KILL")?),
        _ => set(&mut cursor)?,
    };
    cursor.end()?;
    Ok(command)
}

fn set(cursor: &mut Cursor<'_, '_>) -> Result<AdminCommand, AdminError> {
    let usage = cursor.usage;
    let missing = |what: &str| AdminError::syntax(format!("SET needs {what}; usage: {usage}"));
    let key = match cursor.advance() {
        Some(token) if token.kind == Kind::Word => token.value.to_ascii_lowercase(),
        Some(token) if token.kind == Kind::QuotedIdent => token.value.clone(),
        Some(token) => return Err(near(token.raw, Some(usage))),
        None => return Err(missing("a setting name")),
    };
    match cursor.advance() {
        Some(token) if token.kind == Kind::Equals => {}
        Some(token) if token.kind == Kind::Word && token.value.eq_ignore_ascii_case("to") => {}
        Some(token) => return Err(near(token.raw, Some(usage))),
        None => return Err(missing("= or TO after the setting name")),
    }
    let value = match cursor.advance() {
        Some(token) if matches!(token.kind, Kind::Word | Kind::Literal | Kind::QuotedIdent) => {
            token.value.clone()
        }
        Some(token) => return Err(near(token.raw, Some(usage))),
        None => return Err(missing("a value")),
    };
    Ok(AdminCommand::Set { key, value })
}

impl AdminError {
    /// SQLSTATE 42601, syntax_error.
    pub fn syntax(message: impl Into<String>) -> AdminError {
        AdminError {
            code: sqlstate::SYNTAX_ERROR,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> AdminCommand {
        match parse(sql) {
            Ok(mut commands) if commands.len() == 1 => commands.remove(0),
            other => panic!("{sql:?}: {other:?}"),
        }
    }

    fn error(sql: &str) -> AdminError {
        match parse(sql) {
            Err(error) => error,
            Ok(commands) => panic!("{sql:?} parsed as {commands:?}"),
        }
    }

    fn db(name: &str) -> Option<String> {
        Some(name.to_string())
    }

    #[test]
    fn every_show_target() {
        for &target in ShowTarget::ALL {
            assert_eq!(
                one(&format!("SHOW {}", target.name())),
                AdminCommand::Show(target)
            );
            let lower = format!("show {};", target.name().to_lowercase());
            assert_eq!(one(&lower), AdminCommand::Show(target));
        }
        assert_eq!(one("sHoW pOoLs"), AdminCommand::Show(ShowTarget::Pools));
    }

    #[test]
    fn control_commands() {
        use AdminCommand::*;
        let cases = [
            ("RELOAD", Reload),
            ("reload;", Reload),
            ("SHUTDOWN", Shutdown),
            ("PAUSE", Pause(None)),
            ("PAUSE app", Pause(db("app"))),
            ("RESUME", Resume(None)),
            ("resume app;", Resume(db("app"))),
            ("DISABLE app", Disable("app".into())),
            ("ENABLE app", Enable("app".into())),
            ("KILL app", Kill("app".into())),
            ("RECONNECT", Reconnect(None)),
            ("RECONNECT app", Reconnect(db("app"))),
            ("WAIT_CLOSE", WaitClose(None)),
            ("wait_close app", WaitClose(db("app"))),
        ];
        for (sql, expected) in cases {
            assert_eq!(one(sql), expected, "{sql}");
        }
    }

    #[test]
    fn database_names_keep_their_case_and_may_be_quoted() {
        assert_eq!(one("PAUSE MyDb"), AdminCommand::Pause(db("MyDb")));
        assert_eq!(one("PAUSE \"my db\""), AdminCommand::Pause(db("my db")));
        assert_eq!(one("KILL \"a\"\"b\""), AdminCommand::Kill("a\"b".into()));
        assert_eq!(
            one("ENABLE \"SHOW; -- not a comment\""),
            AdminCommand::Enable("SHOW; -- not a comment".into())
        );
        assert_eq!(
            one("DISABLE app-2.eu"),
            AdminCommand::Disable("app-2.eu".into())
        );
        assert_eq!(one("DISABLE café"), AdminCommand::Disable("café".into()));
    }

    #[test]
    fn set_forms() {
        let set = |key: &str, value: &str| AdminCommand::Set {
            key: key.into(),
            value: value.into(),
        };
        assert_eq!(
            one("SET default_pool_size = 30"),
            set("default_pool_size", "30")
        );
        assert_eq!(one("set LOG_LEVEL to debug;"), set("log_level", "debug"));
        assert_eq!(one("SET log_level TO 'debug'"), set("log_level", "debug"));
        assert_eq!(
            one("SET server_reset_query = 'SELECT ''x'''"),
            set("server_reset_query", "SELECT 'x'")
        );
        assert_eq!(
            one("SET server_reset_query = ''"),
            set("server_reset_query", "")
        );
        assert_eq!(one("SET x=-1"), set("x", "-1"));
        assert_eq!(one("SET server_lifetime=1h"), set("server_lifetime", "1h"));
        assert_eq!(
            one("SET tls.client_tls_mode = 'require'"),
            set("tls.client_tls_mode", "require")
        );
        assert_eq!(one("SET \"Odd\" = \"v\""), set("Odd", "v"));
        assert_eq!(
            one("SET admin_users = 'alice, bob'"),
            set("admin_users", "alice, bob")
        );
        assert_eq!(
            one("SET server_reset_query = 'a; b -- c /* d */'"),
            set("server_reset_query", "a; b -- c /* d */")
        );
    }

    #[test]
    fn whitespace_and_comments() {
        let pools = AdminCommand::Show(ShowTarget::Pools);
        for sql in [
            "  SHOW POOLS  ",
            "\n\tSHOW\n POOLS ;\n",
            "SHOW POOLS -- trailing comment",
            "-- leading comment\nSHOW POOLS",
            "/* c */ SHOW /* c */ POOLS /* c */ ;",
            "/* outer /* nested */ still comment */ SHOW POOLS",
            "SHOW/**/POOLS",
            "SHOW POOLS;--",
        ] {
            assert_eq!(one(sql), pools, "{sql:?}");
        }
        assert_eq!(one("PAUSE app--comment"), AdminCommand::Pause(db("app")));
    }

    #[test]
    fn several_statements() {
        assert_eq!(
            parse("SHOW POOLS; SHOW CLIENTS;"),
            Ok(vec![
                AdminCommand::Show(ShowTarget::Pools),
                AdminCommand::Show(ShowTarget::Clients)
            ])
        );
        assert_eq!(
            parse(";;PAUSE app;; RESUME app"),
            Ok(vec![
                AdminCommand::Pause(db("app")),
                AdminCommand::Resume(db("app"))
            ])
        );
    }

    #[test]
    fn empty_queries() {
        for sql in [
            "",
            "   ",
            ";",
            " ; ; ",
            "-- only a comment",
            "/* x */",
            "/* a */;\n-- b",
        ] {
            assert_eq!(parse(sql), Ok(vec![]), "{sql:?}");
        }
    }

    #[test]
    fn one_bad_statement_fails_the_whole_query() {
        let e = error("PAUSE app; FOO");
        assert_eq!(e.code, "42601");
        assert!(e.message.contains("\"FOO\""), "{}", e.message);
    }

    #[test]
    fn unknown_commands_are_named() {
        let e = error("FOO");
        assert_eq!(e.code, "42601");
        assert!(
            e.message.starts_with("unknown command: \"FOO\""),
            "{}",
            e.message
        );
        let e = error("select 1");
        assert!(
            e.message.starts_with("unknown command: \"select\""),
            "{}",
            e.message
        );
        let e = error("SHOW STATS_TOTALS");
        assert_eq!(e.code, "42601");
        assert!(
            e.message
                .starts_with("unknown command: \"SHOW STATS_TOTALS\""),
            "{}",
            e.message
        );
        for sql in [
            "SHOW MEM",
            "show dns_hosts",
            "SHOW STATS_AVERAGES",
            "SUSPEND",
            "KILL_CLIENT 3",
        ] {
            assert_eq!(error(sql).code, "42601", "{sql}");
        }
        let e = error("\"SHOW\" POOLS");
        assert!(
            e.message.starts_with("unknown command: \"\"SHOW\"\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn syntax_errors() {
        for (sql, fragment) in [
            ("KILL", "KILL needs a database name"),
            ("KILL;", "KILL needs a database name"),
            ("DISABLE", "DISABLE needs a database name"),
            ("ENABLE", "ENABLE needs a database name"),
            ("SHOW", "SHOW needs a name"),
            ("SHOW 'pools'", "at or near \"'pools'\""),
            ("SHOW POOLS extra", "at or near \"extra\"; usage: SHOW name"),
            ("RELOAD now", "at or near \"now\"; usage: RELOAD"),
            (
                "SHUTDOWN WAIT_FOR_CLIENTS",
                "at or near \"WAIT_FOR_CLIENTS\"",
            ),
            ("PAUSE a b", "at or near \"b\"; usage: PAUSE [db]"),
            ("PAUSE =", "at or near \"=\""),
            ("KILL 'app'", "at or near \"'app'\""),
            ("SET", "SET needs a setting name"),
            ("SET x", "SET needs = or TO"),
            ("SET x =", "SET needs a value"),
            ("SET x y z", "at or near \"y\""),
            ("SET x = 1 2", "at or near \"2\""),
            ("SET = 1", "at or near \"=\""),
            ("SHOW POOLS(", "at or near \"(\""),
            ("= SHOW", "at or near \"=\""),
            ("PAUSE 'unterminated", "unterminated quoted string"),
            ("PAUSE \"unterminated", "unterminated quoted identifier"),
            ("PAUSE \"\"", "zero-length delimited identifier"),
            ("SHOW POOLS /* open", "unterminated /* comment"),
            ("SHOW POOLS /* /* */", "unterminated /* comment"),
        ] {
            let e = error(sql);
            assert_eq!(e.code, "42601", "{sql}");
            assert!(e.message.contains(fragment), "{sql}: {}", e.message);
        }
    }

    #[test]
    fn long_input_is_cut_in_messages() {
        let junk = "x".repeat(10_000);
        let e = error(&junk);
        assert!(e.message.len() < 200, "{}", e.message);
        assert!(e.message.contains("...\""));
    }

    #[test]
    fn control_characters_are_escaped_in_messages() {
        let e = error("\u{0}");
        assert!(!e.message.contains('\0'), "{:?}", e.message);
        assert!(e.message.contains("\\0"), "{:?}", e.message);
    }

    #[test]
    fn odd_input_does_not_panic() {
        for sql in [
            "\u{0}",
            "'",
            "\"",
            "/*",
            "*/",
            "--",
            "-",
            "/",
            "é",
            "SET é = 'ü'",
            "PAUSE \u{feff}",
            "SHOW \u{1F600}",
            ";;;",
            "'';",
            "SET a = '",
            "-\u{2028}",
        ] {
            let _ = parse(sql);
        }
    }

    #[test]
    fn permissions() {
        for &target in ShowTarget::ALL {
            assert!(is_show(&AdminCommand::Show(target)));
            assert!(!requires_admin(&AdminCommand::Show(target)));
        }
        for sql in [
            "RELOAD",
            "PAUSE",
            "RESUME",
            "DISABLE a",
            "ENABLE a",
            "KILL a",
            "RECONNECT",
            "WAIT_CLOSE",
            "SHUTDOWN",
            "SET a = b",
        ] {
            let cmd = one(sql);
            assert!(!is_show(&cmd), "{sql}");
            assert!(requires_admin(&cmd), "{sql}");
        }
    }

    #[test]
    fn tags_and_display_round_trip() {
        for sql in [
            "SHOW POOLS",
            "SHOW AUTH_QUERY_CACHE",
            "RELOAD",
            "PAUSE",
            "PAUSE app",
            "RESUME \"a b\"",
            "DISABLE app",
            "ENABLE app",
            "KILL \"x\"\"y\"",
            "RECONNECT",
            "WAIT_CLOSE app",
            "SHUTDOWN",
            "SET log_level = 'debug'",
            "SET q = 'it''s'",
            "PAUSE \"-x\"",
        ] {
            let cmd = one(sql);
            assert_eq!(one(&cmd.to_string()), cmd, "{sql} -> {cmd}");
            let tag = sql.split_whitespace().next().unwrap_or_default();
            assert_eq!(cmd.tag(), tag, "{sql}");
        }
        assert_eq!(one("SET a = b").to_string(), "SET a = 'b'");
        assert_eq!(one("SET \"Odd\" = b").to_string(), "SET \"Odd\" = 'b'");
        assert_eq!(one("PAUSE \"my db\"").database(), Some("my db"));
        assert_eq!(one("PAUSE").database(), None);
    }
}
