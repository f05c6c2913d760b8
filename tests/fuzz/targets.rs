//! The fuzz targets: each takes arbitrary bytes and returns `Ok(features)` (hashed facts
//! about what the input made the code do, for corpus selection) or `Err(why)` for a broken
//! invariant. Panics are crashes. Also the built-in seeds and token dictionaries.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use pooler::admin::{self, AdminCommand};
use pooler::auth::hba::HbaRules;
use pooler::auth::scram::{ScramClient, ScramCredential, ScramError, ScramSecret, ScramServer};
use pooler::config::Config;
use pooler::guard::lexer::{for_each_unit, LexOptions, Lexer, TokenKind};
use pooler::guard::StatementRules;
use pooler::params::{self, ParamSet};
use pooler::protocol::{self, StartupPacket};
use pooler::worker::fuzz::{self as relay_fuzz, bucket, Features};

pub type Outcome = Result<Features, String>;

/// Bytes as text, as a server or a file reader with a lossy decoder would see them.
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// An error message without the parts copied from the input, so that the same error
/// with other input counts as one outcome: only the text before the first quote (input
/// is quoted in most messages, and quotes inside it are not escaped); of its
/// `: `-separated parts, the first and, with `later` (for messages that quote another
/// parser's, like the config loader's TOML errors), any later one that is plain
/// lower-case words, each cut at `(`, `=`, `/` or `:`; numbers folded; and the command
/// of a usage line.
fn shape(message: &str, later: bool) -> String {
    let unquoted = message.split(['"', '\'', '`']).next().unwrap_or("");
    let mut out = String::new();
    for (i, part) in unquoted.split(": ").take(3).enumerate() {
        let head = part.split(['(', '=', '/', ':']).next().unwrap_or("");
        let wordy = head
            .chars()
            .all(|c| c.is_ascii_lowercase() || " ,;".contains(c));
        if i > 0 && (!later || head.split_whitespace().count() < 2 || !wordy) {
            continue;
        }
        out.push('|');
        for c in head.chars().take(60) {
            if c.is_ascii_digit() {
                if !out.ends_with('#') {
                    out.push('#');
                }
            } else {
                out.push(c);
            }
        }
    }
    if let Some(at) = message.rfind("; usage: ") {
        out.push_str(" usage ");
        out.extend(
            message[at + 9..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_'),
        );
    }
    out
}

/// A config key path with names of databases and users (which may hold dots), unknown
/// sections and unknown keys folded.
fn key_shape(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    let known = |k: &str| pooler::config::SETTINGS.iter().any(|s| s.name == k);
    let last = parts.last().copied().filter(|k| known(k)).unwrap_or("?");
    match parts[0] {
        "databases" | "users" if parts.len() > 2 => format!("{}.*.{last}", parts[0]),
        _ if parts.len() == 1 => last.to_string(),
        "pooler" | "tls" | "metrics" | "auth_query" if parts.len() == 2 => {
            format!("{}.{last}", parts[0])
        }
        _ => format!("?.{last}"),
    }
}

// ---- startup ----

fn server_params() -> ParamSet {
    let mut s = ParamSet::default();
    s.set("timezone", "UTC");
    s.set("search_path", "public");
    s.set("work_mem", "4MB");
    s
}

/// Target `startup`: startup-phase packets, parsed one after the other as the worker
/// does; the settings of a StartupMessage go through `startup_settings` and `sync_sql`.
pub fn startup(data: &[u8]) -> Outcome {
    let mut f = Features::default();
    let mut rest = data;
    let mut count = 0usize;
    loop {
        match protocol::parse_startup(rest) {
            Ok(None) => {
                f.add(("more", bucket(rest.len())));
                break;
            }
            Err(e) => {
                f.add(("err", format!("{e:?}").chars().take(9).collect::<String>()));
                break;
            }
            Ok(Some((packet, len))) => {
                if len == 0 || len > rest.len() {
                    return Err(format!("parse_startup consumed {len} of {}", rest.len()));
                }
                rest = &rest[len..];
                count += 1;
                match packet {
                    StartupPacket::Startup { minor, params } => {
                        f.add(("startup", minor.min(3), bucket(params.len())));
                        check_settings(&params, &mut f)?;
                    }
                    StartupPacket::SslRequest => f.add("ssl"),
                    StartupPacket::GssEncRequest => f.add("gss"),
                    StartupPacket::Cancel { .. } => f.add("cancel"),
                    StartupPacket::UnsupportedVersion(v) => f.add(("version", v >> 16 == 2)),
                }
            }
        }
    }
    f.add(("packets", bucket(count)));
    Ok(f)
}

/// The pooler turns client settings into SQL for the server: it must come out as one
/// SET or RESET per setting, with nothing of the client's text outside the quotes.
fn check_settings(startup: &[(String, String)], f: &mut Features) -> Result<(), String> {
    let wanted = params::startup_settings(startup);
    let server = server_params();
    f.add(("settings", bucket(wanted.iter().count())));
    let Some(sql) = params::sync_sql(&wanted, &server) else {
        return Ok(());
    };
    let expected = wanted
        .iter()
        .filter(|(n, v)| server.get(n) != Some(*v))
        .count()
        + server
            .iter()
            .filter(|(n, _)| !params::is_reported(n) && wanted.get(n).is_none())
            .count();
    let mut units = Vec::new();
    let _ = for_each_unit(&sql, LexOptions::default(), |u| {
        units.push(u);
        Ok::<(), ()>(())
    });
    let heads_ok = units.iter().all(|u| {
        let first = Lexer::new(&sql[u.start..u.end]).next();
        first.is_some_and(|t| t.is_word("SET") || t.is_word("RESET"))
    });
    if units.len() != expected || !heads_ok {
        return Err(format!(
            "sync_sql of client settings lexes as {} statements, expected {expected}: {sql:?}",
            units.len()
        ));
    }
    Ok(())
}

// ---- frontend / backend / session: in src/worker/fuzz.rs ----

pub fn frontend(data: &[u8]) -> Outcome {
    relay_fuzz::relay_client_bytes(data)
}

pub fn backend(data: &[u8]) -> Outcome {
    relay_fuzz::relay_server_bytes(data)
}

pub fn session(data: &[u8]) -> Outcome {
    relay_fuzz::relay_session(data)
}

// ---- scram ----

const PASSWORD: &str = "pencil";
const SALT: &[u8] = b"fuzz-salt-16byte";
/// Low, so the seeds' PBKDF2 is cheap in a debug build; the parsers do not care.
const ITERATIONS: u32 = 64;
const CLIENT_NONCE: &str = "abc";
const SERVER_NONCE: &str = "fixednonce";

fn secret() -> &'static ScramSecret {
    static SECRET: OnceLock<ScramSecret> = OnceLock::new();
    SECRET.get_or_init(|| ScramSecret::from_password(PASSWORD, SALT, ITERATIONS))
}

/// ClientKey and ServerKey of the password: a client that skips PBKDF2, so an
/// iteration count from the input costs nothing.
fn client_keys() -> ScramCredential {
    static KEYS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    let (client_key, server_key) = KEYS.get_or_init(|| {
        let mut c =
            ScramClient::new_with_nonce(ScramCredential::Password(PASSWORD.into()), CLIENT_NONCE);
        let mut s = ScramServer::new_with_nonce(secret().clone(), SERVER_NONCE);
        let sf = s.server_first(&c.client_first()).expect("server-first");
        c.client_final(&sf).expect("client-final");
        let (ck, sk, _, _) = c.derived_keys().expect("keys");
        (ck.to_vec(), sk.to_vec())
    });
    ScramCredential::Keys {
        client_key: client_key.as_slice().try_into().expect("32 bytes"),
        server_key: server_key.as_slice().try_into().expect("32 bytes"),
    }
}

fn scram_error(e: &ScramError) -> &'static str {
    match e {
        ScramError::Malformed(why) => why,
        ScramError::NonceMismatch => "nonce",
        ScramError::WrongProof => "proof",
        ScramError::ChannelBindingUnsupported => "cb unsupported",
        ScramError::ChannelBindingMismatch(why) => why,
        ScramError::ServerSignatureMismatch => "signature",
        ScramError::ServerError(_) => "server error",
        ScramError::TooManyIterations(_) => "iterations",
        ScramError::OutOfOrder => "order",
    }
}

/// The two messages of an input: split at the first 0xFF byte (never in UTF-8), else
/// in the middle.
fn split_two(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => data.split_at(data.len() / 2),
    }
}

/// Target `scram`: the server side (client-first, then client-final) and the client
/// side (server-first, then server-final) on the two halves of the input.
pub fn scram(data: &[u8]) -> Outcome {
    let mut f = Features::default();
    let (first, last) = split_two(data);

    let mut server = ScramServer::new_with_nonce(secret().clone(), SERVER_NONCE);
    match server.server_first(first) {
        Ok(_) => {
            f.add("server-first ok");
            match server.server_final(last) {
                Ok(_) => f.add("server-final ok"),
                Err(e) => f.add(("server-final", scram_error(&e))),
            }
            f.add(("again", server.server_final(last).is_err()));
        }
        Err(e) => f.add(("server-first", scram_error(&e))),
    }

    let mut client = ScramClient::new_with_nonce(client_keys(), CLIENT_NONCE);
    match client.client_final(first) {
        Ok(_) => {
            f.add("client-final ok");
            match client.verify_server_final(last) {
                Ok(()) => f.add("verified"),
                Err(e) => f.add(("verify", scram_error(&e))),
            }
        }
        Err(e) => f.add(("client-final", scram_error(&e))),
    }

    if let Some(s) = ScramSecret::parse(&text(data)) {
        f.add("secret");
        if ScramSecret::parse(&s.to_pg_string()).as_ref() != Some(&s) {
            return Err(format!(
                "verifier does not round-trip: {}",
                s.to_pg_string()
            ));
        }
    }
    Ok(f)
}

// ---- config / hba ----

/// Target `config`: the whole config loader (TOML, settings table, checks across keys).
pub fn config(data: &[u8]) -> Outcome {
    let mut f = Features::default();
    match Config::parse(&text(data), Path::new("fuzz.conf")) {
        Ok(c) => {
            f.add(("ok", bucket(c.databases.len()), bucket(c.users.len())));
            f.add(("warnings", bucket(c.warnings.len())));
            let rows = c.show_rows();
            f.add(("rows", bucket(rows.len())));
            for (db, _) in c.databases.iter().take(4) {
                for (user, _) in c.users.iter().take(4) {
                    f.add((
                        "pool",
                        c.pool_settings(db, user).is_some(),
                        c.client_limits(db, user).is_some(),
                    ));
                }
            }
            f.add(("restart", c.restart_needed_for(&c).len()));
        }
        Err(e) => f.add((
            "err",
            e.key.as_deref().map(key_shape),
            e.line.is_some(),
            shape(&e.message, true),
        )),
    }
    Ok(f)
}

fn addrs() -> [Option<IpAddr>; 5] {
    [
        None,
        Some("127.0.0.1".parse().expect("ip")),
        Some("10.1.2.3".parse().expect("ip")),
        Some("::1".parse().expect("ip")),
        Some("::ffff:192.168.0.7".parse().expect("ip")),
    ]
}

/// Target `hba`: pg_hba.conf text, then lookups with a few connections.
pub fn hba(data: &[u8]) -> Outcome {
    let mut f = Features::default();
    match HbaRules::parse(&text(data), Path::new("fuzz_hba.conf")) {
        Ok(rules) => {
            f.add(("ok", bucket(rules.rules.len())));
            for r in &rules.rules {
                f.add((
                    "rule",
                    r.conn_type.as_str(),
                    r.method.as_str(),
                    format!("{:?}", r.address)
                        .chars()
                        .take(4)
                        .collect::<String>(),
                    r.clientcert.is_some(),
                ));
            }
            let local: [IpAddr; 2] = ["127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")];
            for addr in addrs() {
                for tls in [false, true] {
                    let hit = rules.find(addr, tls, "app", "alice", &local);
                    f.add(("find", addr.is_some(), tls, hit.map(|r| r.line.min(8))));
                }
            }
        }
        Err(e) => f.add(("err", shape(&e.message, false))),
    }
    Ok(f)
}

// ---- admin ----

/// Target `admin`: the console's command parser; what parses must print back to the
/// same command (the Display impl promises that, for log lines), and SET values go
/// through the settings table.
pub fn admin(data: &[u8]) -> Outcome {
    let mut f = Features::default();
    let sql = text(data);
    match admin::parse(&sql) {
        Ok(cmds) => {
            f.add(("ok", bucket(cmds.len())));
            for cmd in &cmds {
                f.add(("cmd", cmd.tag(), cmd.database().is_some()));
                let printed = cmd.to_string();
                match admin::parse(&printed) {
                    Ok(back) if back.len() == 1 && back[0] == *cmd => {}
                    other => {
                        return Err(format!(
                            "{cmd:?} prints as {printed:?}, which parses as {other:?}"
                        ))
                    }
                }
                if let AdminCommand::Set { key, value } = cmd {
                    match admin::resolve_set(key, value) {
                        Ok((setting, _)) => f.add(("set ok", setting.name)),
                        Err(e) => f.add(("set err", e.code, shape(&e.message, false))),
                    }
                }
            }
        }
        Err(e) => f.add(("err", e.code, shape(&e.message, false))),
    }
    Ok(f)
}

// ---- statements ----

fn rule_sets() -> &'static [StatementRules] {
    static RULES: OnceLock<Vec<StatementRules>> = OnceLock::new();
    RULES.get_or_init(|| {
        let none: &[&str] = &[];
        vec![
            StatementRules::new(
                &[
                    "ALTER SYSTEM",
                    "COPY ... PROGRAM",
                    "LOAD",
                    "DROP DATABASE",
                    "CREATE ... FUNCTION",
                    "SET ... ROLE",
                ],
                none,
            )
            .expect("deny rules"),
            StatementRules::new(none, &["SELECT", "INSERT ... RETURNING", "VALUES", "SHOW"])
                .expect("allow rules"),
            StatementRules::new(
                &["DELETE", "UPDATE ... FROM"],
                &["SELECT", "DELETE", "WITH"],
            )
            .expect("both"),
        ]
    })
}

fn kind_index(k: TokenKind) -> u8 {
    match k {
        TokenKind::Word => 0,
        TokenKind::QuotedIdent => 1,
        TokenKind::String => 2,
        TokenKind::DollarString => 3,
        TokenKind::Number => 4,
        TokenKind::Param => 5,
        TokenKind::Punct => 6,
    }
}

/// Target `statements`: the statement tokenizer and the deny/allow rules, with both
/// `standard_conforming_strings` settings.
pub fn statements(data: &[u8]) -> Outcome {
    let mut f = Features::default();
    let sql = text(data);
    for scs in [true, false] {
        let opts = LexOptions {
            standard_conforming_strings: scs,
        };
        // Tokens must be non-empty slices of the input, in order.
        let mut prev_end = 0;
        let mut prev_kind = 7u8;
        for (i, t) in Lexer::with_options(&sql, opts).enumerate() {
            if t.text.is_empty() || t.start < prev_end || sql.get(t.start..t.end()) != Some(t.text)
            {
                return Err(format!(
                    "token {i} {:?} at {} (previous ended at {prev_end}) is not a slice of the input",
                    t.text, t.start
                ));
            }
            if i > sql.len() {
                return Err("more tokens than bytes".into());
            }
            let k = kind_index(t.kind);
            f.add(("bigram", scs, prev_kind, k, t.terminated));
            prev_kind = k;
            prev_end = t.end();
        }
        let mut units = 0usize;
        let r = for_each_unit(&sql, opts, |u| {
            units += 1;
            if u.start > u.end || sql.get(u.start..u.end).is_none() {
                return Err(format!(
                    "unit {}..{} is not a slice of the input",
                    u.start, u.end
                ));
            }
            Ok(())
        });
        r?;
        f.add(("units", scs, bucket(units)));
        for (i, rules) in rule_sets().iter().enumerate() {
            match rules.check_with(&sql, opts) {
                Ok(()) => f.add(("pass", i, scs)),
                Err(r) => f.add(("refused", i, scs, format!("{:?}", r.reason).len().min(12))),
            }
        }
    }
    Ok(f)
}

// ---- seeds ----

/// The fixed random seed of a target.
pub fn name_seed(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn msg(tag: u8, build: impl FnOnce(protocol::Msg) -> protocol::Msg) -> Vec<u8> {
    let mut v = Vec::new();
    build(protocol::begin(&mut v, tag)).finish();
    v
}

fn parse_msg(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', |m| m.cstr(name).cstr(sql).i16(1).i32(23))
}

fn bind_msg(stmt: &str) -> Vec<u8> {
    msg(b'B', |m| {
        m.cstr("")
            .cstr(stmt)
            .i16(1)
            .i16(0)
            .i16(1)
            .i32(1)
            .bytes(b"7")
            .i16(1)
            .i16(0)
    })
}

fn exec_msg() -> Vec<u8> {
    msg(b'E', |m| m.cstr("").i32(0))
}

fn sync_msg() -> Vec<u8> {
    msg(b'S', |m| m)
}

fn query_msg(sql: &str) -> Vec<u8> {
    let mut v = Vec::new();
    protocol::query(&mut v, sql);
    v
}

pub fn startup_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut v = Vec::new();
    protocol::startup_message(
        &mut v,
        &[
            ("user", "alice"),
            ("database", "app"),
            ("application_name", "psql"),
            ("client_encoding", "UTF8"),
        ],
    );
    out.push(v);
    let mut v = Vec::new();
    protocol::startup_message(
        &mut v,
        &[
            ("user", "bob"),
            (
                "options",
                r"-c search_path=a,b --statement-timeout=5 -cwork_mem=4MB -c x=a\ b",
            ),
            ("DateStyle", "ISO, MDY"),
            ("_pq_.foo", "1"),
        ],
    );
    out.push(v);
    // SSLRequest followed by a StartupMessage, as after a refused SSL.
    let mut v = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    protocol::startup_message(&mut v, &[("user", "u")]);
    out.push(v);
    out.push(vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    let mut v = Vec::new();
    protocol::cancel_request(&mut v, 1234, 0xdead_beef);
    out.push(v);
    out.push(vec![0, 0, 0, 8, 0, 2, 0, 0]);
    // Protocol 3.2 with a _pq_ option.
    let mut v = vec![0, 0, 0, 0, 0, 3, 0, 2];
    v.extend_from_slice(b"user\0u\0_pq_.x\0y\0\0");
    let len = (v.len() as u32).to_be_bytes();
    v[..4].copy_from_slice(&len);
    out.push(v);
    out
}

pub fn frontend_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let batch = [
        parse_msg("s1", "SELECT $1::int"),
        bind_msg("s1"),
        msg(b'D', |m| m.u8(b'P').cstr("")),
        exec_msg(),
        sync_msg(),
    ]
    .concat();
    for ctl in [0u8, 3, 56] {
        let mut v = vec![ctl];
        v.extend_from_slice(&batch);
        out.push(v);
    }
    let mut v = vec![0x80];
    v.extend(query_msg(r"SELECT 'a\'; ALTER SYSTEM SET x = 1; --'"));
    v.extend(query_msg(
        "/* x */ alter system set work_mem = 1; COPY t FROM PROGRAM 'id'",
    ));
    out.push(v);
    let mut v = vec![0];
    v.extend(parse_msg("a", "SELECT 1"));
    v.extend(parse_msg("b", "SELECT 1"));
    v.extend(msg(b'D', |m| m.u8(b'S').cstr("b")));
    v.extend(msg(b'C', |m| m.u8(b'S').cstr("a")));
    v.extend(msg(b'C', |m| m.u8(b'P').cstr("")));
    for i in 0..6 {
        v.extend(parse_msg(&format!("e{i}"), &format!("SELECT {i}")));
    }
    v.extend(bind_msg("e0"));
    v.extend(sync_msg());
    v.extend(msg(b'X', |m| m));
    out.push(v);
    let mut v = vec![5];
    v.extend(query_msg("COPY t FROM STDIN"));
    v.extend(msg(b'd', |m| m.bytes(b"1\t2\n")));
    v.extend(msg(b'c', |m| m));
    v.extend(msg(b'f', |m| m.cstr("oops")));
    v.extend(msg(b'H', |m| m));
    v.extend(msg(b'F', |m| m.i32(1).i16(0).i16(1).i32(-1).i16(0)));
    out.push(v);
    out
}

pub fn backend_seeds() -> Vec<Vec<u8>> {
    let mut err = Vec::new();
    protocol::error_response(&mut err, protocol::Severity::Error, "42601", "syntax");
    let mut cancelled = Vec::new();
    protocol::error_response(&mut cancelled, protocol::Severity::Error, "57014", "cancel");
    let mut fatal = Vec::new();
    protocol::error_response(&mut fatal, protocol::Severity::Fatal, "57P01", "bye");
    let row = msg(b'D', |m| m.i16(1).i32(1).bytes(b"1"));
    let rfq = msg(b'Z', |m| m.u8(b'I'));
    let rfq_t = msg(b'Z', |m| m.u8(b'T'));
    let rowdesc = int4_row_description();
    let cc = |t: &str| msg(b'C', |m| m.cstr(t));
    let ps = msg(b'S', |m| m.cstr("TimeZone").cstr("Europe/Paris"));
    let notice = msg(b'N', |m| {
        m.u8(b'S').cstr("NOTICE").u8(b'M').cstr("hi").u8(0)
    });
    let mut out = Vec::new();
    let replies: Vec<(u8, Vec<u8>)> = vec![
        (
            0x80,
            [
                msg(b'1', |m| m),
                msg(b'2', |m| m),
                row.clone(),
                cc("SELECT 1"),
                rfq.clone(),
                rowdesc.clone(),
                row.clone(),
                row.clone(),
                row.clone(),
                row.clone(),
                cancelled.clone(),
                rfq.clone(),
            ]
            .concat(),
        ),
        (
            1,
            [
                msg(b'G', |m| m.u8(0).i16(0)),
                cc("COPY 1"),
                rfq.clone(),
                msg(b'2', |m| m),
                msg(b'H', |m| m.u8(0).i16(0)),
                msg(b'd', |m| m.bytes(&[b'x'; 60])),
                msg(b'd', |m| m.bytes(&[b'x'; 60])),
                msg(b'c', |m| m),
                cc("COPY 2"),
                rfq_t.clone(),
            ]
            .concat(),
        ),
        (
            0x42,
            [
                ps.clone(),
                cc("SET"),
                rfq.clone(),
                ps.clone(),
                notice.clone(),
                row.clone(),
                cc("SELECT 1"),
                rfq.clone(),
                msg(b'2', |m| m),
                err.clone(),
                rfq.clone(),
            ]
            .concat(),
        ),
        (
            3,
            [
                err.clone(),
                rfq.clone(),
                err.clone(),
                rfq.clone(),
                row.clone(),
                cc("SELECT 1"),
                rfq.clone(),
            ]
            .concat(),
        ),
        (
            4,
            [
                msg(b't', |m| m.i16(0)),
                rowdesc.clone(),
                msg(b'2', |m| m),
                row.clone(),
                cc("SELECT 1"),
                rfq.clone(),
            ]
            .concat(),
        ),
        (
            5,
            [
                cancelled.clone(),
                rfq.clone(),
                msg(b'2', |m| m),
                msg(b'I', |m| m),
                rfq.clone(),
            ]
            .concat(),
        ),
        (
            0x86,
            [
                rowdesc.clone(),
                row.clone(),
                row.clone(),
                row.clone(),
                row.clone(),
                cc("SELECT 4"),
                rfq_t.clone(),
                msg(b'2', |m| m),
                msg(b's', |m| m),
                msg(b'V', |m| m.i32(1).bytes(b"x")),
                fatal.clone(),
            ]
            .concat(),
        ),
        (
            7,
            [
                msg(b'1', |m| m),
                msg(b'2', |m| m),
                msg(b'3', |m| m),
                msg(b'1', |m| m),
                msg(b'2', |m| m),
                cc("DISCARD ALL"),
                msg(b'A', |m| m.i32(1).cstr("ch").cstr("payload")),
                rfq.clone(),
            ]
            .concat(),
        ),
    ];
    for (scenario, body) in replies {
        for ctl in [0u8, 7, 52] {
            let mut v = vec![scenario, ctl];
            v.extend_from_slice(&body);
            out.push(v);
        }
    }
    out
}

fn record(op: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in bytes.chunks(255) {
        out.push(op);
        out.push(piece.len() as u8);
        out.extend_from_slice(piece);
    }
    if bytes.is_empty() {
        out.extend_from_slice(&[op, 0]);
    }
    out
}

/// RowDescription of one int4 column with a long name (so it can arrive in pieces).
fn int4_row_description() -> Vec<u8> {
    msg(b'T', |m| {
        m.i16(1)
            .cstr("a_rather_long_column_name")
            .i32(0)
            .i16(0)
            .i32(23)
            .i16(4)
            .i32(-1)
            .i16(0)
    })
}

pub fn session_seeds() -> Vec<Vec<u8>> {
    let rfq = msg(b'Z', |m| m.u8(b'I'));
    let rowdesc = int4_row_description();
    let row = msg(b'D', |m| m.i16(1).i32(1).bytes(b"1"));
    let mut out = Vec::new();
    // Prepare, then reuse the statement in a pipeline after a Describe; the server's
    // answers arrive in small pieces.
    let mut v = Vec::new();
    v.extend(record(
        0,
        &[parse_msg("s1", "SELECT 1"), sync_msg()].concat(),
    ));
    v.extend(record(3, &[msg(b'1', |m| m), rfq.clone()].concat()));
    v.extend(record(
        1,
        &[
            msg(b'D', |m| m.u8(b'S').cstr("s1")),
            parse_msg("s2", "SELECT 1"),
            bind_msg("s2"),
            exec_msg(),
            sync_msg(),
        ]
        .concat(),
    ));
    let reply = [
        msg(b't', |m| m.i16(1).i32(23)),
        rowdesc.clone(),
        msg(b'2', |m| m),
        row.clone(),
        msg(b'C', |m| m.cstr("SELECT 1")),
        rfq.clone(),
    ]
    .concat();
    for piece in reply.chunks(9) {
        v.extend(record(4, piece));
    }
    out.push(v);
    // Simple queries, a refused one, a copy, a timeout, a server switch.
    let mut v = Vec::new();
    v.extend(record(0, &query_msg("SELECT 1; LOAD 'x'")));
    let mut err = Vec::new();
    protocol::error_response(&mut err, protocol::Severity::Error, "22P02", "bad int");
    v.extend(record(3, &[err, rfq.clone()].concat()));
    v.extend(record(6, &[]));
    v.extend(record(7, &query_msg("COPY t FROM STDIN")));
    v.extend(record(5, &msg(b'G', |m| m.u8(0).i16(0))));
    v.extend(record(
        2,
        &[msg(b'd', |m| m.bytes(b"1\n")), msg(b'c', |m| m), sync_msg()].concat(),
    ));
    v.extend(record(
        3,
        &[msg(b'C', |m| m.cstr("COPY 1")), rfq.clone()].concat(),
    ));
    v.push(6);
    v.push(2);
    v.extend(record(
        0,
        &[bind_msg("s1"), exec_msg(), sync_msg()].concat(),
    ));
    v.extend(record(
        3,
        &[msg(b'1', |m| m), msg(b'2', |m| m), row, rfq.clone()].concat(),
    ));
    out.push(v);
    // The pooler's own query first, then the client's.
    let mut v = vec![6, 1];
    v.extend(record(0, &query_msg("SELECT 2")));
    v.extend(record(
        3,
        &[msg(b'C', |m| m.cstr("SET")), rfq.clone()].concat(),
    ));
    v.extend(record(
        4,
        &[msg(b'C', |m| m.cstr("SELECT 2")), rfq].concat(),
    ));
    out.push(v);
    out
}

pub fn scram_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // A full, valid exchange: client-first 0xFF client-final.
    let mut c =
        ScramClient::new_with_nonce(ScramCredential::Password(PASSWORD.into()), CLIENT_NONCE);
    let cf = c.client_first();
    let mut s = ScramServer::new_with_nonce(secret().clone(), SERVER_NONCE);
    let sf = s.server_first(&cf).expect("server-first");
    let cfin = c.client_final(&sf).expect("client-final");
    let (sfin, _) = s.server_final(&cfin).expect("server-final");
    out.push([cf.clone(), vec![0xff], cfin].concat());
    // Server-first 0xFF server-final: what the client side parses.
    out.push([sf, vec![0xff], sfin].concat());
    out.push(b"n,,n=,r=abc".to_vec());
    out.push(b"y,,n=user,r=abc,x=ext\xffc=eSws,r=abcfixednonce,p=AAAA".to_vec());
    out.push(b"p=tls-server-end-point,,n=,r=abc".to_vec());
    out.push(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096\xffe=invalid-proof".to_vec());
    out.push(secret().to_pg_string().into_bytes());
    out
}

/// Seeds read from the repository at run time, so they follow it: the sample config.
pub fn live_seeds(target: &str) -> Vec<Vec<u8>> {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("pooler.conf.sample");
    match (target, std::fs::read(sample)) {
        ("config", Ok(text)) => vec![text],
        _ => Vec::new(),
    }
}

pub fn config_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"[pooler]
listen_port = 6432
auth_type = "md5"
pool_mode = "session"
query_timeout = "5s"
max_result_rows = 1000
deny_statements = ["ALTER SYSTEM", "COPY ... PROGRAM"]
trusted_addrs = ["10.0.0.0/8"]

[databases.app]
host = "127.0.0.1"
port = 5432
pool_size = 5
user = "app"

[users.app]
password = "secret"
pool_mode = "transaction"
"#
        .to_vec(),
        b"[pooler]\nworkers = 2\n[tls]\nclient_tls_mode = \"disable\"\n[metrics]\nlisten_addr = \"\"\n".to_vec(),
        b"[databases.\"x y\"]\ndbname = 'z'\n[auth_query]\nquery = \"SELECT 1\"\n".to_vec(),
    ]
}

pub fn hba_seeds() -> Vec<Vec<u8>> {
    vec![
        b"# TYPE  DATABASE  USER  ADDRESS  METHOD\nlocal all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 md5\n".to_vec(),
        b"hostssl app,\"my db\" alice,+admins 10.0.0.0 255.0.0.0 cert clientcert=verify-full\nhostnossl sameuser all samehost reject\n".to_vec(),
        b"host \"all\" @users 0.0.0.0/0 password\nhost replication all all trust # comment\n".to_vec(),
        b"hostssl all all ::ffff:0:0/96 scram-sha-256 clientcert=verify-ca\n".to_vec(),
    ]
}

pub fn admin_seeds() -> Vec<Vec<u8>> {
    [
        "SHOW POOLS;",
        "show help; SHOW stats",
        "SET query_timeout = '5s'",
        "set default_pool_size to 30; RELOAD;",
        "PAUSE app; RESUME \"My DB\"; KILL x; WAIT_CLOSE; RECONNECT db-1",
        "/* c /* nested */ */ SHUTDOWN -- bye",
        "SET \"Log_Level\" = debug",
        "SET deny_statements = 'LOAD, ALTER SYSTEM'",
        "ENABLE 'x'; DISABLE a.b",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub fn statement_seeds() -> Vec<Vec<u8>> {
    [
        "SELECT 1; alter system set work_mem = '1MB'",
        "WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a",
        "EXPLAIN (ANALYZE, VERBOSE) UPDATE t SET x = 1 FROM u",
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; LOAD 'x'; END; SELECT 3",
        "SELECT $tag$ ; LOAD $tag$, E'\\' ; LOAD', U&'d\\0061t', B'01''x', \"a\"\"b\" /* /* */ */ -- x\n; COPY t TO PROGRAM 'x'",
        "((SELECT 1)); VALUES (1); INSERT INTO t VALUES (1) RETURNING id",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n SET o CYCLE n SET c USING p SELECT * FROM r",
        "SET ROLE admin; set session authorization x; 'a'\n'b'; $1 1.5e3 .5 1_000",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

// ---- dictionaries ----

pub const PROTOCOL_DICT: &[&[u8]] = &[
    b"\0",
    b"\0\0\0\x04",
    b"\0\0\0\x05",
    b"\0\0\0\x08",
    b"S\0\0\0\x04",
    b"H\0\0\0\x04",
    b"X\0\0\0\x04",
    b"c\0\0\0\x04",
    b"1\0\0\0\x04",
    b"2\0\0\0\x04",
    b"3\0\0\0\x04",
    b"n\0\0\0\x04",
    b"s\0\0\0\x04",
    b"I\0\0\0\x04",
    b"Z\0\0\0\x05I",
    b"Z\0\0\0\x05T",
    b"Z\0\0\0\x05E",
    b"G\0\0\0\x07\0\0\0",
    b"W\0\0\0\x07\0\0\0",
    b"\x04\xd2\x16\x2f",
    b"\x04\xd2\x16\x30",
    b"\x04\xd2\x16\x2e",
    b"\0\x03\0\0",
    b"user\0",
    b"database\0",
    b"options\0",
    b"_pq_.",
    b"-c ",
    b"--",
    b"\\",
    b"standard_conforming_strings\0off\0",
    b"TimeZone\0",
    b"SFATAL\0",
    b"VERROR\0",
    b"C57014\0",
    b"DISCARD ALL\0",
    b"DEALLOCATE ALL\0",
    b"ALTER SYSTEM ",
    b"COPY t TO PROGRAM ",
    b"LOAD ",
    b"s1\0",
    b"'",
    b"$$",
];

pub const SQL_DICT: &[&str] = &[
    "'",
    "''",
    "\"",
    "$$",
    "$a$",
    "$1",
    "/*",
    "*/",
    "--",
    "\n",
    "\r",
    ";",
    "(",
    ")",
    ",",
    ".",
    "E'",
    "e'\\'",
    "U&'",
    "U&\"",
    "B'",
    "X'",
    "\\",
    "\\'",
    " ",
    "\t",
    "=",
    "::",
    "1e",
    "1.5",
    "SELECT",
    "WITH",
    "RECURSIVE",
    "AS",
    "NOT",
    "MATERIALIZED",
    "EXPLAIN",
    "ANALYZE",
    "VERBOSE",
    "ALTER",
    "SYSTEM",
    "COPY",
    "PROGRAM",
    "FROM",
    "TO",
    "LOAD",
    "CREATE",
    "OR",
    "REPLACE",
    "FUNCTION",
    "PROCEDURE",
    "BEGIN",
    "ATOMIC",
    "END",
    "CASE",
    "SEARCH",
    "DEPTH",
    "BREADTH",
    "FIRST",
    "BY",
    "SET",
    "CYCLE",
    "USING",
    "DEFAULT",
    "ROLE",
    "DROP",
    "DATABASE",
    "INSERT",
    "RETURNING",
    "VALUES",
    "DELETE",
    "UPDATE",
    "SHOW",
    "RELOAD",
    "PAUSE",
    "RESUME",
    "KILL",
    "ENABLE",
    "DISABLE",
    "RECONNECT",
    "WAIT_CLOSE",
    "SHUTDOWN",
    "POOLS",
    "HELP",
    "CONFIG",
    "AUTH_QUERY_CACHE",
    "query_timeout",
    "log_level",
    "default_pool_size",
    "'5s'",
    "-1",
    "\u{e9}",
    "\u{2028}",
    "\u{0}",
];

pub const CONFIG_DICT: &[&str] = &[
    "\n[pooler]\n",
    "\n[tls]\n",
    "\n[metrics]\n",
    "\n[auth_query]\n",
    "\n[databases.app]\n",
    "\n[databases.\"a b\"]\n",
    "\n[users.alice]\n",
    "\n[[x]]\n",
    " = ",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    "#",
    "\n",
    "\\u0000",
    "\\",
    "0",
    "-1",
    "9223372036854775807",
    "18446744073709551616",
    "1e999",
    "nan",
    "inf",
    "true",
    "\"5s\"",
    "\"0ms\"",
    "\"30d\"",
    "\"721h\"",
    "\"\"",
    "[]",
    "[\"x\"]",
    "{a = 1}",
    "\"*\"",
    "\"::1\"",
    "\"10.0.0.0/8\"",
    "\"0.0.0.0/33\"",
    "\"SCRAM-SHA-256$4096:c2FsdA==$a:b\"",
    "\"md5",
    "2024-01-01T00:00:00Z",
    "\"hba\"",
    "\"transaction\"",
    "\"session\"",
    "\"require\"",
    "\"verify-full\"",
    "\u{feff}",
    "\u{0}",
];

pub const HBA_DICT: &[&str] = &[
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "all",
    "sameuser",
    "samerole",
    "samegroup",
    "replication",
    "samehost",
    "samenet",
    "+",
    "@",
    "\"",
    "\"\"",
    ",",
    " ",
    "\t",
    "\r",
    "\n",
    "#",
    "trust",
    "reject",
    "md5",
    "scram-sha-256",
    "password",
    "cert",
    "peer",
    "clientcert=verify-full",
    "clientcert=verify-ca",
    "clientcert=",
    "=",
    "/",
    "/0",
    "/32",
    "/33",
    "/128",
    "/129",
    "0.0.0.0",
    "255.255.255.255",
    "255.0.255.0",
    "::",
    "::1",
    "::ffff:1.2.3.4",
    "ffff:ffff::",
    "127.1",
    "fe80::1%eth0",
];

pub const SCRAM_DICT: &[&str] = &[
    "n,,",
    "y,,",
    "p=tls-server-end-point,,",
    "p=",
    "a=",
    "n=",
    "r=",
    "s=",
    "i=",
    "c=",
    "p=",
    "v=",
    "e=",
    "m=",
    ",",
    "=",
    "=3D",
    "=2C",
    "biws",
    "eSws",
    "abc",
    "fixednonce",
    "4096",
    "0",
    "4294967296",
    "10000001",
    "AAAA",
    "====",
    "\0",
    "\u{ff}",
];
