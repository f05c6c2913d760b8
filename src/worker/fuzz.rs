//! Entry points for the fuzz targets in tests/fuzz: the relay's decoders driven with
//! arbitrary bytes, without sockets.
//!
//! Each entry point takes the fuzzer's input and returns `Ok(features)`, a set of
//! hashed facts about what the input made the relay do (the fuzzer keeps inputs that
//! show a new one, a cheap stand-in for coverage feedback), or `Err(why)` when an
//! invariant the relay must keep was broken: the byte streams it writes must stay
//! sequences of whole messages, each one the peer's or one the pooler writes itself.
//! A panic is a crash. Input layouts:
//!
//! * [`relay_client_bytes`]: `ctl` byte, then client bytes.
//! * [`relay_server_bytes`]: `scenario` byte, `ctl` byte, then server bytes.
//! * [`relay_session`]: records `[op] [len] [len bytes]`; see [`relay_session`].
//!
//! `ctl` chooses how the bytes arrive: bits 0-5 = 0 all at once, 1..=47 in chunks of
//! that many bytes, 48..=63 in two pieces split at (n-48)/16 of the length. Bit 7 set:
//! the client runs with `standard_conforming_strings = off`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use super::relay::{
    client_to_server, server_to_client, BufferedLink, ClientFlow, Pending, ResultGuard,
    ServerEvents, Tracker,
};
use crate::config::ClientLimits;
use crate::guard::StatementRules;
use crate::params::ParamSet;
use crate::protocol::{self, parse_header, ProtocolError, Reader};

/// Deny list the relay targets run with.
pub const DENY: &[&str] = &["ALTER SYSTEM", "COPY ... PROGRAM", "LOAD"];
/// `max_prepared_statements` of the relay targets.
pub const MAX_PREPARED: usize = 4;

/// Words of [`Features`].
pub const FEATURE_WORDS: usize = 64;

/// A set of outcome features (hashed into 4096 bits), what the fuzzer compares.
#[derive(Clone)]
pub struct Features {
    bits: [u64; FEATURE_WORDS],
}

impl Default for Features {
    fn default() -> Self {
        Features {
            bits: [0; FEATURE_WORDS],
        }
    }
}

impl Features {
    pub fn add(&mut self, feature: impl Hash) {
        let mut h = DefaultHasher::new();
        feature.hash(&mut h);
        let bit = (h.finish() % (FEATURE_WORDS as u64 * 64)) as usize;
        self.bits[bit / 64] |= 1 << (bit % 64);
    }

    pub fn bits(&self) -> &[u64; FEATURE_WORDS] {
        &self.bits
    }
}

/// A message tag as a feature: the protocol's tags as they are, anything else as `?`,
/// so that random bytes do not each count as something new.
pub fn tag_class(tag: u8) -> u8 {
    if b"QPBDECSHXFdcfp123AGHIKNRSTVWZnstv".contains(&tag) {
        tag
    } else {
        b'?'
    }
}

/// Small numbers exactly, larger ones by magnitude.
pub fn bucket(n: usize) -> usize {
    if n < 8 {
        n
    } else {
        8 + n.ilog2() as usize
    }
}

fn error_kind(e: &ProtocolError) -> String {
    match e {
        ProtocolError::BadLength(_) => "badlength".into(),
        ProtocolError::Truncated => "truncated".into(),
        ProtocolError::NotUtf8 => "utf8".into(),
        ProtocolError::Unexpected(m) => m.chars().take(24).collect(),
    }
}

fn pending_kind(p: Option<&Pending>) -> u8 {
    match p {
        None => 0,
        Some(Pending::Parse { forward, .. }) => 1 + u8::from(*forward),
        Some(Pending::SyntheticParse) => 3,
        Some(Pending::Bind) => 4,
        Some(Pending::Describe) => 5,
        Some(Pending::Execute) => 6,
        Some(Pending::Close { forward }) => 7 + u8::from(*forward),
        Some(Pending::SyntheticClose) => 9,
        Some(Pending::Sync) => 10,
        Some(Pending::Query) => 11,
        Some(Pending::FunctionCall) => 12,
        Some(Pending::Internal) => 13,
        Some(Pending::CopyEnd) => 14,
        Some(Pending::Refused { parse, .. }) => 15 + u8::from(*parse),
    }
}

/// The pieces `data` arrives in, as chosen by `ctl` (see the module docs).
pub fn chunks(data: &[u8], ctl: u8) -> Vec<&[u8]> {
    let mode = usize::from(ctl & 0x3f);
    if data.is_empty() {
        return Vec::new();
    }
    match mode {
        0 => vec![data],
        1..=47 => data.chunks(mode).collect(),
        _ => {
            let at = data.len() * (mode - 48) / 16;
            let (a, b) = data.split_at(at);
            [a, b].into_iter().filter(|p| !p.is_empty()).collect()
        }
    }
}

/// Complete frames of a byte stream, in order, and whether one failed to parse.
fn frames(mut bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    loop {
        match parse_header(bytes) {
            Ok(Some((_, len))) if len <= bytes.len() => {
                out.push(&bytes[..len]);
                bytes = &bytes[len..];
            }
            Ok(_) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

/// Both ends of one client-server link, owned, like the worker's slabs hold them.
struct Link {
    link: BufferedLink,
    /// Everything the relay wrote towards the server / the client.
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    /// The first broken invariant seen while relaying.
    violation: Option<String>,
}

/// What [`Link::check_insertion`] compares against.
struct MidForward {
    /// The next bytes of the server message being forwarded to the client.
    continuation: Vec<u8>,
    /// How much of it is still to come.
    remaining: usize,
    to_client_len: usize,
}

/// The invariant message for a pooler message written into the middle of a server
/// message the relay was forwarding (`emit_synthetic` between two pieces of it).
pub const INSERTED_MID_MESSAGE: &str =
    "pooler message inserted into a server message being forwarded to the client";

impl Link {
    fn new() -> Link {
        let mut link = BufferedLink::new(MAX_PREPARED);
        link.rules = Some(StatementRules::new(DENY, &[] as &[&str]).expect("valid rules"));
        link.limits = ClientLimits {
            max_result_rows: 3,
            max_result_bytes: 100,
            ..ClientLimits::default()
        };
        Link {
            link,
            to_server: Vec::new(),
            to_client: Vec::new(),
            violation: None,
        }
    }

    fn take_violation(&mut self) -> Result<(), String> {
        self.violation.take().map_or(Ok(()), Err)
    }

    /// Before a relay call: is a server message half forwarded to the client?
    fn mid_forward(&self, continuation_from_server: bool) -> Option<MidForward> {
        if self.link.s_fwd == 0 || !self.link.s_to_client {
            return None;
        }
        let continuation = if continuation_from_server {
            let pending = self.link.s_in.pending();
            pending[..pending.len().min(self.link.s_fwd)].to_vec()
        } else {
            Vec::new()
        };
        Some(MidForward {
            continuation,
            remaining: self.link.s_fwd,
            to_client_len: self.to_client.len(),
        })
    }

    /// After the call (and a drain): the client may only have received the rest of that
    /// message first.
    fn check_insertion(&mut self, before: Option<MidForward>, caller: &str) {
        let Some(before) = before else { return };
        let new = &self.to_client[before.to_client_len..];
        let cont = &before.continuation;
        let n = new.len().min(cont.len());
        // The rest of the message first; anything after it only once it is complete.
        let ok =
            new[..n] == cont[..n] && (cont.len() == before.remaining || new.len() <= cont.len());
        if !ok && self.violation.is_none() {
            self.violation = Some(format!(
                "{INSERTED_MID_MESSAGE} (in {caller}): {:02x?}",
                &new[..new.len().min(16)]
            ));
        }
    }

    /// Moves what the relay wrote into `to_server`/`to_client`, as a write(2) that takes
    /// everything would, and hands empty buffers back like the worker does.
    fn drain(&mut self, client_attached: bool) {
        self.to_server.extend_from_slice(self.link.s_out.pending());
        self.link.s_out.consume(self.link.s_out.len());
        if client_attached {
            self.to_client.extend_from_slice(self.link.c_out.pending());
        }
        self.link.c_out.consume(self.link.c_out.len());
        for b in [
            &mut self.link.c_in,
            &mut self.link.c_out,
            &mut self.link.s_in,
            &mut self.link.s_out,
        ] {
            b.release_if_empty(&mut self.link.bufs);
        }
    }

    /// The worker's loop on client input: relay until nothing more moves.
    fn client_step(&mut self) -> Result<ClientFlow, ProtocolError> {
        for _ in 0..1_000_000 {
            let before = (self.link.c_in.len(), self.link.c_fwd);
            // The pooler's own query goes first; the client waits behind it.
            let hold = matches!(self.link.tracker.front(), Some(Pending::Internal));
            let mid = self.mid_forward(false);
            let r = self
                .link
                .with_sides(|c, s, ctx| client_to_server(c, s, ctx, hold));
            let progressed =
                (self.link.c_in.len(), self.link.c_fwd) != before || !self.link.s_out.is_empty();
            self.drain(true);
            self.check_insertion(mid, "client_to_server");
            match r {
                Ok(ClientFlow::Idle) if progressed => continue,
                other => return other,
            }
        }
        panic!("client_to_server keeps reporting progress");
    }

    /// The worker's loop on server input, with or without a client attached.
    fn server_step(&mut self, attached: bool) -> Result<ServerEvents, ProtocolError> {
        let mut total = ServerEvents::default();
        for _ in 0..1_000_000 {
            let before = (self.link.s_in.len(), self.link.s_fwd);
            let mid = self.mid_forward(true).filter(|_| attached);
            let r = self
                .link
                .with_sides(|c, s, ctx| server_to_client(s, attached.then_some(c), ctx));
            let progressed =
                (self.link.s_in.len(), self.link.s_fwd) != before || !self.link.c_out.is_empty();
            self.drain(attached);
            self.check_insertion(mid, "server_to_client");
            let ev = r?;
            total.internal_done |= ev.internal_done;
            total.internal_error = total.internal_error.or(ev.internal_error);
            total.fatal |= ev.fatal;
            total.queries += ev.queries;
            total.xacts += ev.xacts;
            total.limit_hit = total.limit_hit.or(ev.limit_hit);
            total.fail_transaction |= ev.fail_transaction;
            if !progressed {
                return Ok(total);
            }
        }
        panic!("server_to_client keeps reporting progress");
    }

    fn client_sends(&mut self, bytes: &[u8]) -> Result<ClientFlow, ProtocolError> {
        self.link.c_in.extend(&mut self.link.bufs, bytes);
        self.client_step()
    }

    fn server_sends(
        &mut self,
        bytes: &[u8],
        attached: bool,
    ) -> Result<ServerEvents, ProtocolError> {
        self.link.s_in.extend(&mut self.link.bufs, bytes);
        self.server_step(attached)
    }

    fn note_state(&self, f: &mut Features) {
        f.add((
            "state",
            pending_kind(self.link.tracker.front()),
            self.link.tracker.discarding(),
            self.link.c_fwd > 0,
            self.link.s_fwd > 0,
            self.link.guard.abort.is_some(),
        ));
        f.add((
            "stmts",
            bucket(self.link.stmts.len()),
            self.link.prepared.len(),
        ));
        f.add(("refused", bucket(self.link.refused as usize)));
    }
}

/// Every byte stream the relay writes must stay a sequence of whole messages: a message
/// inserted into the middle of another desynchronizes the peer. `to_server` may hold only
/// the client's messages and the ones the relay writes itself.
fn check_to_server(to_server: &[u8], client_stream: &[u8], f: &mut Features) -> Result<(), String> {
    let (sent, broken) = frames(to_server);
    if broken {
        return Err(format!(
            "stream to the server is not a sequence of messages after {} of them",
            sent.len()
        ));
    }
    let (from_client, _) = frames(client_stream);
    let known: HashSet<&[u8]> = from_client.into_iter().collect();
    let mut prev = 0u8;
    for m in sent {
        f.add(("to_server", prev, tag_class(m[0])));
        prev = tag_class(m[0]);
        // Messages the relay writes itself: renamed Parse/Bind/Describe/Close,
        // stand-in Query/Parse, eviction Close.
        if !known.contains(m) && !matches!(m[0], b'P' | b'B' | b'D' | b'C' | b'Q') {
            return Err(format!(
                "message to the server that the client never sent: {:02x?}",
                &m[..m.len().min(32)]
            ));
        }
    }
    Ok(())
}

/// `to_client` may hold only the server's messages and the pooler's own answers. When
/// it does not, and taking out ParseComplete/CloseComplete messages found inside the
/// first bad message repairs it, the error is [`INSERTED_MID_MESSAGE`].
fn check_to_client(to_client: &[u8], server_stream: &[u8], f: &mut Features) -> Result<(), String> {
    let (from_server, _) = frames(server_stream);
    let known: HashSet<&[u8]> = from_server.into_iter().collect();
    let Some((at, problem)) = first_bad_frame(to_client, &known, Some(f)) else {
        return Ok(());
    };
    let mut repaired = to_client.to_vec();
    let mut bad_at = at;
    for _ in 0..64 {
        if !repair_frame(&mut repaired, bad_at, &known) {
            return Err(problem);
        }
        match first_bad_frame(&repaired, &known, None) {
            None => {
                return Err(format!(
                    "{INSERTED_MID_MESSAGE} (found in the client stream)"
                ))
            }
            Some((next, _)) => bad_at = next,
        }
    }
    Err(problem)
}

/// Whether `m` is a message the pooler writes to clients itself.
fn pooler_own(m: &[u8]) -> bool {
    match m[0] {
        b'1' | b'3' => m.len() == 5,
        b'E' => {
            let code = protocol::parse_error_fields(&m[5..]).code;
            matches!(code.as_str(), "42501" | "54000" | "57014")
        }
        _ => false,
    }
}

/// Takes out of `stream` up to three ParseComplete/CloseComplete messages found inside
/// the message at `at`, if that makes it a message of `known`; whether it did.
fn repair_frame(stream: &mut Vec<u8>, at: usize, known: &HashSet<&[u8]>) -> bool {
    let extent = match parse_header(&stream[at..]) {
        Ok(Some((_, len))) => (at + len + 15).min(stream.len()),
        _ => stream.len(),
    };
    let candidates: Vec<usize> = (at + 1..extent.saturating_sub(4))
        .filter(|&p| matches!(stream[p..p + 5], [b'1' | b'3', 0, 0, 0, 4]))
        .take(12)
        .collect();
    let n = candidates.len();
    let mut subsets: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        subsets.push(vec![candidates[i]]);
        for j in i + 1..n {
            subsets.push(vec![candidates[i], candidates[j]]);
            for k in j + 1..n {
                subsets.push(vec![candidates[i], candidates[j], candidates[k]]);
            }
        }
    }
    subsets.sort_by_key(Vec::len);
    for subset in subsets {
        if subset.windows(2).any(|w| w[1] < w[0] + 5) {
            continue;
        }
        let mut candidate = stream.clone();
        for &p in subset.iter().rev() {
            candidate.drain(p..p + 5);
        }
        let good = match parse_header(&candidate[at..]) {
            Ok(Some((_, len))) if at + len <= candidate.len() => {
                let m = &candidate[at..at + len];
                known.contains(m) || pooler_own(m)
            }
            // The start of a message whose rest never came.
            Ok(Some(_)) => true,
            _ => false,
        };
        if good {
            *stream = candidate;
            return true;
        }
    }
    false
}

/// Offset and description of the first message of `stream` that is neither one of
/// `known` nor a message the pooler writes itself.
fn first_bad_frame(
    stream: &[u8],
    known: &HashSet<&[u8]>,
    mut f: Option<&mut Features>,
) -> Option<(usize, String)> {
    let mut at = 0;
    let mut prev = 0u8;
    loop {
        let rest = &stream[at..];
        let len = match parse_header(rest) {
            Ok(Some((_, len))) if len <= rest.len() => len,
            Ok(_) => return None,
            Err(_) => {
                return Some((
                    at,
                    "stream to the client is not a sequence of messages".to_string(),
                ))
            }
        };
        let m = &rest[..len];
        if let Some(f) = f.as_deref_mut() {
            f.add(("to_client", prev, tag_class(m[0])));
        }
        prev = tag_class(m[0]);
        if !pooler_own(m) && !known.contains(m) {
            return Some((
                at,
                format!(
                    "message to the client that the server never sent: {:02x?}",
                    &m[..m.len().min(32)]
                ),
            ));
        }
        at += len;
    }
}

/// Decodes every frontend message of `data` with [`Reader`] the way a full decoder
/// would, for `parse_header` and `Reader` themselves.
pub fn decode_frontend(data: &[u8], f: &mut Features) {
    let mut rest = data;
    let mut count = 0;
    loop {
        match parse_header(rest) {
            Ok(Some((tag, len))) => {
                let body = &rest[5..len.min(rest.len())];
                let r = decode_body(tag, body);
                f.add((
                    "decode",
                    tag_class(tag),
                    r.map(bucket).map_err(|e| error_kind(&e)),
                ));
                count += 1;
                if len > rest.len() {
                    break;
                }
                rest = &rest[len..];
            }
            Ok(None) => break,
            Err(e) => {
                f.add(("header", error_kind(&e)));
                break;
            }
        }
    }
    f.add(("messages", bucket(count)));
}

fn decode_body(tag: u8, body: &[u8]) -> Result<usize, ProtocolError> {
    let mut r = Reader::new(body);
    match tag {
        b'Q' => {
            r.cstr()?;
        }
        b'P' => {
            r.cstr()?;
            r.cstr()?;
            let n = r.i16()?;
            for _ in 0..n.max(0) {
                r.i32()?;
            }
        }
        b'B' => {
            r.cstr_bytes()?;
            r.cstr()?;
            let formats = r.i16()?;
            for _ in 0..formats.max(0) {
                r.i16()?;
            }
            let params = r.i16()?;
            for _ in 0..params.max(0) {
                let len = r.i32()?;
                if len >= 0 {
                    r.bytes(len as usize)?;
                }
            }
            let results = r.i16()?;
            for _ in 0..results.max(0) {
                r.i16()?;
            }
        }
        b'D' | b'C' => {
            r.u8()?;
            r.cstr()?;
        }
        b'E' => {
            r.cstr_bytes()?;
            r.i32()?;
        }
        b'F' => {
            r.i32()?;
            let formats = r.i16()?;
            for _ in 0..formats.max(0) {
                r.i16()?;
            }
            let args = r.i16()?;
            for _ in 0..args.max(0) {
                let len = r.i32()?;
                if len >= 0 {
                    r.bytes(len as usize)?;
                }
            }
            r.i16()?;
        }
        b'p' => {
            // SASLInitialResponse shape; a PasswordMessage fails somewhere, fine.
            r.cstr()?;
            let len = r.i32()?;
            if len >= 0 {
                r.bytes(len as usize)?;
            }
        }
        b'f' => {
            r.cstr()?;
        }
        _ => {
            r.bytes(body.len())?;
        }
    }
    let _ = r.remaining();
    Ok(r.position())
}

/// Target `frontend`: client bytes after the startup phase through
/// [`client_to_server`], with statement tracking, the deny rules and result limits on.
pub fn relay_client_bytes(data: &[u8]) -> Result<Features, String> {
    let mut f = Features::default();
    let Some((&ctl, body)) = data.split_first() else {
        return Ok(Features::default());
    };
    decode_frontend(body, &mut f);
    let mut link = Link::new();
    if ctl & 0x80 != 0 {
        link.link.c_params.set("standard_conforming_strings", "off");
    }
    for chunk in chunks(body, ctl) {
        let r = link.client_sends(chunk);
        link.note_state(&mut f);
        match r {
            Ok(ClientFlow::Idle) => f.add("idle"),
            Ok(ClientFlow::Terminate) => {
                f.add("terminate");
                break;
            }
            Err(e) => {
                f.add(("err", error_kind(&e)));
                break;
            }
        }
    }
    link.take_violation()?;
    check_to_server(&link.to_server, body, &mut f)?;
    Ok(f)
}

fn msg(tag: u8, build: impl FnOnce(protocol::Msg) -> protocol::Msg) -> Vec<u8> {
    let mut v = Vec::new();
    build(protocol::begin(&mut v, tag)).finish();
    v
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', |m| m.cstr(name).cstr(sql).i16(0))
}

fn bind(stmt: &str) -> Vec<u8> {
    msg(b'B', |m| m.cstr("").cstr(stmt).i16(0).i16(0).i16(0))
}

fn execute() -> Vec<u8> {
    msg(b'E', |m| m.cstr("").i32(0))
}

fn sync() -> Vec<u8> {
    msg(b'S', |m| m)
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', |m| m.cstr(sql))
}

/// Number of client preambles [`relay_server_bytes`] chooses from.
pub const SCENARIOS: u8 = 8;

/// Puts the link in one of a few plausible states before the server speaks: what the
/// client sent (so the Tracker has entries) and what the server already answered.
fn scenario(link: &mut Link, which: u8) -> Result<(), ProtocolError> {
    match which % SCENARIOS {
        0 => {
            let batch = [parse("s1", "SELECT 1"), bind("s1"), execute(), sync()].concat();
            link.client_sends(&batch)?;
            link.client_sends(&query("SELECT 1"))?;
        }
        1 => {
            let batch = [
                query("COPY t FROM STDIN"),
                msg(b'd', |m| m.bytes(b"1\n")),
                msg(b'c', |m| m),
                bind(""),
                execute(),
                sync(),
            ]
            .concat();
            link.client_sends(&batch)?;
        }
        2 => {
            // The pooler's settings sync runs ahead of the client's query.
            link.link.tracker.push(Pending::Internal);
            link.to_server.extend_from_slice(&query("SET x = 1"));
            link.client_sends(&query("SELECT 1"))?;
            link.client_sends(&[bind(""), execute(), sync()].concat())?;
        }
        3 => {
            link.client_sends(&query("LOAD 'x'; SELECT 1"))?;
            link.client_sends(&[parse("s1", "load 'y'"), bind("s1"), execute(), sync()].concat())?;
            link.client_sends(&query("SELECT 2"))?;
        }
        4 => {
            // A statement the server already has: later Parses of it are answered by
            // the pooler, in order with the server's replies.
            link.client_sends(&parse("s1", "SELECT 1"))?;
            link.server_sends(&msg(b'1', |m| m), true)?;
            let batch = [
                msg(b'D', |m| m.u8(b'S').cstr("s1")),
                parse("s2", "SELECT 1"),
                bind("s2"),
                execute(),
                msg(b'C', |m| m.u8(b'S').cstr("s2")),
                sync(),
            ]
            .concat();
            link.client_sends(&batch)?;
        }
        5 => {
            link.client_sends(&query("SELECT pg_sleep(10)"))?;
            link.link
                .guard
                .start_timeout(std::time::Duration::from_secs(2));
            link.client_sends(&[bind(""), execute(), sync()].concat())?;
        }
        6 => {
            let batch = [
                query("SELECT generate_series(1, 10)"),
                bind(""),
                execute(),
                execute(),
                sync(),
                msg(b'F', |m| m.i32(42).i16(0).i16(0).i16(0)),
            ]
            .concat();
            link.client_sends(&batch)?;
        }
        _ => {
            // More statements than max_prepared: evictions.
            let mut batch = Vec::new();
            for i in 0..=MAX_PREPARED {
                batch.extend(parse(&format!("s{i}"), &format!("SELECT {i}")));
                batch.extend(bind(&format!("s{i}")));
            }
            batch.extend(execute());
            batch.extend(sync());
            link.client_sends(&batch)?;
        }
    }
    Ok(())
}

fn note_events(f: &mut Features, ev: &Result<ServerEvents, ProtocolError>) {
    match ev {
        Ok(ev) => f.add((
            "ev",
            ev.internal_done,
            ev.internal_error.is_some(),
            ev.fatal,
            bucket(ev.queries as usize),
            ev.limit_hit.map(|g| g.as_str()),
            ev.fail_transaction,
        )),
        Err(e) => f.add(("srv_err", error_kind(e))),
    }
}

fn prepare_server_link(scenario_byte: u8) -> Link {
    let mut link = Link::new();
    if scenario_byte & 0x80 == 0 {
        link.link.limits = ClientLimits::default();
    }
    if scenario_byte & 0x40 != 0 {
        link.link.c_params.set("timezone", "UTC");
    }
    scenario(&mut link, scenario_byte & 0x3f).expect("scenario requests are valid");
    link
}

/// Target `backend`: server bytes through [`server_to_client`] after a client request
/// chosen by the first byte (bit 7: result limits on; bit 6: the client has a TimeZone
/// setting; the rest picks the scenario).
pub fn relay_server_bytes(data: &[u8]) -> Result<Features, String> {
    let mut f = Features::default();
    let [scenario_byte, ctl, body @ ..] = data else {
        return Ok(Features::default());
    };
    let fields = protocol::parse_error_fields(body);
    f.add((
        "fields",
        fields.severity.len().min(8),
        fields.code.len().min(6),
        fields.message.is_empty(),
    ));

    let mut link = prepare_server_link(*scenario_byte);
    let preamble_to_client = link.to_client.len();
    let mut ok = true;
    for chunk in chunks(body, *ctl) {
        let ev = link.server_sends(chunk, true);
        note_events(&mut f, &ev);
        link.note_state(&mut f);
        if ev.is_err() {
            ok = false;
            break;
        }
    }
    // The client goes away: whatever is left is swallowed.
    if ok {
        let ev = link.server_step(false);
        note_events(&mut f, &ev);
    }
    link.take_violation()?;
    check_to_client(&link.to_client[preamble_to_client..], body, &mut f)?;

    // The same bytes to a server whose client is already gone.
    let mut detached = prepare_server_link(*scenario_byte);
    for chunk in chunks(body, *ctl) {
        let ev = detached.server_sends(chunk, false);
        note_events(&mut f, &ev);
        if ev.is_err() {
            break;
        }
    }
    Ok(f)
}

/// Target `session`: client and server bytes interleaved, as records `[op] [len]
/// [len bytes]` (the last record may be short). `op % 8`: 0-2 client bytes, 3-5 server
/// bytes, 6 a control action chosen by `len` (0: the pooler starts a query_timeout
/// abort; 1: the pooler queues its own query, when the link is idle; 2: the client moves
/// to a fresh server, when idle; 3: the client disconnects), 7 client bytes, then the
/// server's pending bytes. Bit 7 of the first op: `standard_conforming_strings = off`.
pub fn relay_session(data: &[u8]) -> Result<Features, String> {
    let mut f = Features::default();
    let mut link = Link::new();
    if data.first().is_some_and(|b| b & 0x80 != 0) {
        link.link.c_params.set("standard_conforming_strings", "off");
    }
    let mut client_stream = Vec::new();
    let mut server_stream = Vec::new();
    let mut attached = true;
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let op = op % 8;
        let idle = link.link.tracker.is_empty()
            && link.link.c_fwd == 0
            && link.link.s_fwd == 0
            && link.link.s_in.is_empty()
            && link.link.c_in.is_empty();
        match op {
            0..=2 | 7 if attached => {
                client_stream.extend_from_slice(bytes);
                let r = link.client_sends(bytes);
                link.note_state(&mut f);
                match r {
                    Ok(ClientFlow::Idle) => {}
                    Ok(ClientFlow::Terminate) => {
                        f.add("terminate");
                        attached = false;
                    }
                    Err(e) => {
                        f.add(("err", error_kind(&e)));
                        attached = false;
                    }
                }
                if op == 7 {
                    let ev = link.server_step(attached);
                    note_events(&mut f, &ev);
                    if ev.is_err() {
                        break;
                    }
                }
            }
            0..=2 | 7 => {}
            3..=5 => {
                server_stream.extend_from_slice(bytes);
                let ev = link.server_sends(bytes, attached);
                note_events(&mut f, &ev);
                link.note_state(&mut f);
                if ev.is_err() {
                    break;
                }
                // The worker goes on with client input the pooler's own query held back.
                if attached && !link.link.c_in.is_empty() {
                    match link.client_step() {
                        Ok(ClientFlow::Idle) => {}
                        Ok(ClientFlow::Terminate) => attached = false,
                        Err(e) => {
                            f.add(("err", error_kind(&e)));
                            attached = false;
                        }
                    }
                }
            }
            _ => match len % 4 {
                0 if attached => {
                    f.add((
                        "timeout",
                        link.link
                            .guard
                            .start_timeout(std::time::Duration::from_secs(1)),
                    ));
                }
                1 if idle => {
                    f.add("internal");
                    link.link.tracker.push(Pending::Internal);
                    link.to_server.extend_from_slice(&query("SET x = 1"));
                }
                2 if idle => {
                    f.add("new server");
                    link.link.tracker = Tracker::default();
                    link.link.prepared.clear();
                    link.link.tick = 0;
                    link.link.s_params = ParamSet::default();
                    link.link.status = b'I';
                    link.link.guard = ResultGuard::default();
                    // What went to and came from the old server is checked now.
                    link.take_violation()?;
                    check_to_server(&link.to_server, &client_stream, &mut f)?;
                    check_to_client(&link.to_client, &server_stream, &mut f)?;
                    link.to_server.clear();
                    link.to_client.clear();
                    server_stream.clear();
                }
                3 => attached = false,
                _ => {}
            },
        }
    }
    link.take_violation()?;
    check_to_server(&link.to_server, &client_stream, &mut f)?;
    check_to_client(&link.to_client, &server_stream, &mut f)?;
    Ok(f)
}
