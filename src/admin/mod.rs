//! The admin console: the virtual database `pooler` (alias `pgbouncer`) where
//! `admin_users` and `stats_users` run PgBouncer-style commands (`SHOW POOLS`,
//! `PAUSE app`, `RELOAD`, ...) over the simple query protocol.
//!
//! This module is sans-IO, like `protocol`: it turns query text into
//! [`AdminCommand`]s and result sets into wire bytes, and never touches
//! sockets, pools or workers. The caller (the worker that owns the admin
//! client) checks permissions, runs each command against live state, fills
//! the row structs of [`show`] and appends ReadyForQuery.
//!
//! A Query message is answered like this:
//!
//! 1. [`parse`] the whole text. An error means an ErrorResponse
//!    ([`write_error`]) and nothing runs; an empty list means
//!    EmptyQueryResponse ([`write_empty_query`]).
//! 2. If the user is only in `stats_users` and any command
//!    [`requires_admin`], send [`AdminError::permission_denied`] for the first
//!    such command and run none (the same all-or-nothing rule as parsing).
//! 3. Run each command in order and write its answer: [`write_result`] with
//!    tag `SHOW` for SHOW commands ([`show_config`], [`show_version`],
//!    [`show_help`], or [`result_of`] over rows the caller built from live
//!    state), [`write_command_ok`] with [`AdminCommand::tag`] for the others.
//!    `SET` goes through [`resolve_set`], then is applied like a reload. A
//!    command that fails sends [`write_error`] and stops the rest, as an
//!    error does in a PostgreSQL multi-statement query.
//! 4. ReadyForQuery (`I`).
//!
//! Design choices, and why:
//!
//! - **A lexer, not PgBouncer's regexes.** psql sends `SHOW POOLS;`, scripts
//!   send several statements and comments; a lexer handles those and can say
//!   which token is wrong. Keywords are case-insensitive. Bare database names
//!   keep their case (PgBouncer does the same, and `[databases.NAME]` keys are
//!   case-sensitive); `"quoted"` names may hold anything.
//! - **All or nothing parsing.** A syntax error anywhere in the query runs no
//!   command, as in PostgreSQL, which parses the whole string first: a typo in
//!   `PAUSE a; KILL b` must not leave `a` paused with `b` untouched.
//! - **KILL needs a database.** Current PgBouncer reads a bare `KILL` as "every
//!   database"; dropping every connection should take more than one word.
//! - **PgBouncer's columns, in PgBouncer's order (1.25), ours after them**, so
//!   tools written against PgBouncer (exporters, dashboards, scripts reading
//!   by name or position) read ours. PgBouncer columns for features the pooler
//!   lacks are sent with a fixed value instead of being dropped (see [`show`]).
//! - **Two types, `text` and `int8`.** Everything is sent in text format;
//!   booleans are int8 0/1 as PgBouncer's `paused`/`disabled`; timestamps are
//!   text `YYYY-MM-DD HH:MM:SS UTC`, UTC so that output does not depend on the
//!   host's time zone (PgBouncer uses local time).
//! - **Typed row structs** ([`ShowRow`]): the column list and the order values
//!   are filled in live side by side, so they cannot drift apart, and adding
//!   a column makes every place that builds the row fail to compile.
//! - **SHOW HELP is a result set**, one `command` per row, where PgBouncer
//!   sends a NOTICE: many drivers drop notices, and a result set needs no
//!   extra message writer.
//! - **Error codes are PostgreSQL's** for the same mistakes: 42601 syntax
//!   error (also unknown commands), 42501 permission denied, and for SET
//!   42704 / 55P02 / 22023 (see [`resolve_set`]).

mod parse;
mod result;
mod set;
pub mod show;

use std::fmt;

pub use parse::{is_show, parse, requires_admin, AdminCommand, ShowTarget, CONTROL_COMMANDS};
pub use result::{
    civil_from_days, format_timestamp, write_command_ok, write_empty_query, write_error,
    write_result, Column, ColumnKind, ResultSet, Value, INT8_OID, TEXT_OID,
};
pub use set::{find_setting, resolve_set};
pub use show::{
    result_of, show_config, show_help, show_version, AuthQueryCacheRow, AuthQueryExecutorRow,
    ClientRow, DatabaseRow, Lists, PoolRow, ServerRow, ShowRow, Source, StatsCounters, StatsRow,
    UserRow,
};

/// Whether a client's `database` startup parameter asks for the console.
pub fn is_admin_database(config: &crate::config::PoolerConfig, name: &str) -> bool {
    name == crate::config::ADMIN_DATABASE || config.admin_aliases.iter().any(|a| a == name)
}

/// SQLSTATEs the console sends (PostgreSQL's errcodes.txt names).
pub mod sqlstate {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
}

/// A command that cannot run: sent as an ErrorResponse with severity ERROR
/// ([`write_error`]); the admin session continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub code: &'static str,
    pub message: String,
}

impl AdminError {
    /// SQLSTATE 42501, for a `stats_users` member running a command that
    /// needs `admin_users`.
    pub fn permission_denied(cmd: &AdminCommand) -> AdminError {
        AdminError {
            code: sqlstate::INSUFFICIENT_PRIVILEGE,
            message: format!(
                "permission denied: {} needs a user listed in admin_users",
                cmd.tag()
            ),
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl std::error::Error for AdminError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_database_names() {
        let config = crate::config::Config::parse("[pooler]\n", std::path::Path::new("x.conf"))
            .expect("defaults parse");
        let p = &config.pooler;
        assert!(is_admin_database(p, "pooler"));
        assert!(is_admin_database(p, "pgbouncer"));
        assert!(!is_admin_database(p, "Pooler"));
        assert!(!is_admin_database(p, "app"));
    }

    #[test]
    fn permission_denied_is_42501() {
        let e = AdminError::permission_denied(&AdminCommand::Reload);
        assert_eq!(e.code, "42501");
        assert!(e.message.starts_with("permission denied"), "{}", e.message);
        assert!(e.message.contains("RELOAD"));
    }

    /// What the worker sends for `SHOW VERSION; RELOAD` (minus ReadyForQuery),
    /// following the recipe in the module doc.
    #[test]
    fn a_whole_answer() {
        let mut buf = Vec::new();
        for cmd in parse("show version; reload;").unwrap_or_default() {
            match cmd {
                AdminCommand::Show(ShowTarget::Version) => {
                    write_result(&mut buf, &show_version(), cmd.tag())
                }
                other => write_command_ok(&mut buf, other.tag()),
            }
        }
        let version = show::version_string();
        let mut expected = Vec::new();
        expected.extend_from_slice(
            b"T\0\0\0\x20\0\x01version\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
        );
        expected.push(b'D');
        expected.extend_from_slice(&(4 + 2 + 4 + version.len() as u32).to_be_bytes());
        expected.extend_from_slice(&1u16.to_be_bytes());
        expected.extend_from_slice(&(version.len() as u32).to_be_bytes());
        expected.extend_from_slice(version.as_bytes());
        expected.extend_from_slice(b"C\0\0\0\x09SHOW\0");
        expected.extend_from_slice(b"C\0\0\0\x0bRELOAD\0");
        assert_eq!(buf, expected);
    }
}
