//! The relay between a linked client and server: frame by header, forward byte runs, parse
//! only what drives pooling. Sans-IO: both sides' buffers in, decisions out.
//!
//! Every request the server will answer is recorded in a [`Tracker`], in order, so the
//! relay knows when the server is idle (transaction-mode release), which responses belong
//! to the pooler's own messages (swallowed), and where to insert the ParseComplete and
//! CloseComplete the pooler answers itself for prepared statements it did not send.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::buf::{Buf, BufPool};
use crate::config::ClientLimits;
use crate::guard::lexer::LexOptions;
use crate::guard::{Guardrail, StatementRules};
use crate::params::{self, ParamSet};
use crate::protocol::{self, backend, frontend, parse_header, ProtocolError, Reader};

/// Stop relaying into a destination holding this much unsent data (back-pressure).
pub const HIGH_WATER: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// `forward` false: the pooler's own Parse, its ParseComplete is swallowed. `name`: the
    /// server-side statement name registered on the server when the Parse was sent.
    Parse {
        forward: bool,
        name: Option<Arc<str>>,
    },
    /// A Parse of a statement the server already has: the pooler answers ParseComplete.
    SyntheticParse,
    Bind,
    Describe,
    Execute,
    Close {
        forward: bool,
    },
    /// A Close of a client statement: the pooler answers CloseComplete, the server keeps it.
    SyntheticClose,
    Sync,
    Query,
    FunctionCall,
    /// The pooler's own simple query (settings sync, reset): everything up to ReadyForQuery
    /// is swallowed.
    Internal,
    /// The client's CopyDone or CopyFail: no response of its own, but it marks where the
    /// server leaves copy-in mode, and Syncs before it are ignored by the server.
    CopyEnd,
    /// A stand-in for a Query (`parse` false) or Parse the statement rules refused: it
    /// fails on the server, and its ErrorResponse is replaced by `error`.
    Refused {
        error: Arc<[u8]>,
        parse: bool,
    },
}

#[derive(Debug, Default)]
pub struct Tracker {
    queue: VecDeque<Pending>,
    /// After an error in an extended-protocol batch the server discards messages until Sync.
    skipping: bool,
    syncs: usize,
    /// The server is in copy-in mode and the client has not ended it yet: PostgreSQL
    /// ignores Sync and Flush until CopyDone or CopyFail.
    copy_in: bool,
}

impl Tracker {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether this tracker is as good as a new one (its queue may have capacity).
    pub fn is_clean(&self) -> bool {
        self.queue.is_empty() && !self.skipping && self.syncs == 0 && !self.copy_in
    }

    pub fn front(&self) -> Option<&Pending> {
        self.queue.front()
    }

    /// True when the server will discard the next message without answering it.
    pub fn discarding(&self) -> bool {
        self.skipping && self.syncs == 0
    }

    pub fn push(&mut self, p: Pending) {
        match p {
            Pending::CopyEnd => {
                if self.copy_in {
                    self.copy_in = false;
                } else if !self.queue.is_empty() {
                    self.queue.push_back(p);
                }
                return;
            }
            Pending::Sync if self.copy_in => return,
            Pending::Sync => self.syncs += 1,
            _ if self.discarding() => return,
            _ => {}
        }
        self.queue.push_back(p);
    }

    /// The server entered copy-in mode for the request at the front: the Syncs the client
    /// sent after that request and before ending the copy will never be answered.
    fn on_copy_in(&mut self) {
        let end = self
            .queue
            .iter()
            .skip(1)
            .position(|p| *p == Pending::CopyEnd)
            .map(|i| i + 1);
        let limit = end.unwrap_or(self.queue.len());
        let mut index = 0;
        let mut dropped_syncs = 0;
        self.queue.retain(|p| {
            let keep = index == 0 || index >= limit || *p != Pending::Sync;
            if !keep {
                dropped_syncs += 1;
            }
            index += 1;
            keep
        });
        self.syncs -= dropped_syncs;
        match end {
            Some(_) => {
                let at = self
                    .queue
                    .iter()
                    .skip(1)
                    .position(|p| *p == Pending::CopyEnd);
                if let Some(i) = at {
                    self.queue.remove(i + 1);
                }
            }
            None => self.copy_in = true,
        }
    }

    /// Pops the front entry when it is `expected` (a response that ends that request).
    fn pop_if(&mut self, expected: &Pending) {
        if self.queue.front() == Some(expected) {
            self.pop();
        }
    }

    fn pop(&mut self) -> Option<Pending> {
        let p = self.queue.pop_front();
        if p == Some(Pending::Sync) {
            self.syncs -= 1;
        }
        while self.queue.front() == Some(&Pending::CopyEnd) {
            self.queue.pop_front();
        }
        p
    }

    /// An ErrorResponse arrived. Inside an extended batch the server skips to Sync: drop
    /// what it will never answer; returns the statement names whose Parse failed or was
    /// skipped, which the server therefore does not have.
    fn on_error(&mut self) -> Vec<Arc<str>> {
        let mut unregistered = Vec::new();
        self.copy_in = false;
        match self.queue.front() {
            None
            | Some(Pending::Query)
            | Some(Pending::Refused { parse: false, .. })
            | Some(Pending::Internal)
            | Some(Pending::FunctionCall)
            | Some(Pending::Sync) => {}
            Some(_) => {
                while let Some(front) = self.queue.front() {
                    if *front == Pending::Sync {
                        break;
                    }
                    match self.queue.pop_front() {
                        Some(Pending::Parse { name: Some(n), .. }) => unregistered.push(n),
                        Some(Pending::Sync) => self.syncs -= 1,
                        _ => {}
                    }
                }
                if self.syncs == 0 {
                    self.skipping = true;
                }
            }
        }
        unregistered
    }
}

/// A client's named prepared statement: the server-side name is derived from the statement
/// text and parameter types, so every client preparing the same SQL shares one server copy.
pub struct Statement {
    pub server_name: Arc<str>,
    /// Parse body after the name: query string, parameter count, parameter type OIDs.
    pub body: Vec<u8>,
}

pub fn server_statement_name(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut name = String::with_capacity(7 + 24);
    name.push_str("pooler_");
    for b in &digest[..12] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// What the relay needs from the worker besides the two connections.
pub struct Ctx<'a> {
    pub bufs: &'a mut BufPool,
    /// Scratch for building rewritten messages; reused, so no allocation per message.
    pub scratch: &'a mut Vec<u8>,
    pub message: &'a mut Vec<u8>,
    /// Transaction mode with prepared statement tracking on.
    pub track_statements: bool,
    pub max_prepared: usize,
    /// Statements the rules refused during this call, for the counters.
    pub refused: u32,
}

/// The client side of a link, as the relay sees it.
pub struct ClientSide<'a> {
    pub inbuf: &'a mut Buf,
    pub outbuf: &'a mut Buf,
    pub fwd_remaining: &'a mut usize,
    pub statements: &'a mut HashMap<String, Arc<Statement>>,
    pub params: &'a mut ParamSet,
    /// Statement rules of the client's database; `None` when it has none.
    pub rules: Option<&'a StatementRules>,
    pub limits: ClientLimits,
}

/// The server side of a link.
pub struct ServerSide<'a> {
    pub inbuf: &'a mut Buf,
    pub outbuf: &'a mut Buf,
    pub fwd_remaining: &'a mut usize,
    pub fwd_to_client: &'a mut bool,
    pub tracker: &'a mut Tracker,
    pub status: &'a mut u8,
    pub params: &'a mut ParamSet,
    pub prepared: &'a mut HashMap<String, u64>,
    pub prepared_tick: &'a mut u64,
    pub guard: &'a mut ResultGuard,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ClientFlow {
    /// Everything complete was relayed (or the server side is full / on hold).
    Idle,
    Terminate,
}

fn track_tag(tag: u8) -> Option<Pending> {
    match tag {
        frontend::QUERY => Some(Pending::Query),
        frontend::SYNC => Some(Pending::Sync),
        frontend::EXECUTE => Some(Pending::Execute),
        frontend::DESCRIBE => Some(Pending::Describe),
        frontend::PARSE => Some(Pending::Parse {
            forward: true,
            name: None,
        }),
        frontend::BIND => Some(Pending::Bind),
        frontend::CLOSE => Some(Pending::Close { forward: true }),
        frontend::FUNCTION_CALL => Some(Pending::FunctionCall),
        frontend::COPY_DONE | frontend::COPY_FAIL => Some(Pending::CopyEnd),
        _ => None,
    }
}

/// Emits the pooler's own answers that are now at the head of the response order.
pub fn emit_synthetic(tracker: &mut Tracker, out: &mut Buf, ctx: &mut Ctx) {
    loop {
        match tracker.front() {
            Some(Pending::SyntheticParse) => {
                ctx.scratch.clear();
                protocol::parse_complete(ctx.scratch);
            }
            Some(Pending::SyntheticClose) => {
                ctx.scratch.clear();
                protocol::close_complete(ctx.scratch);
            }
            _ => return,
        }
        tracker.pop();
        out.extend(ctx.bufs, ctx.scratch);
    }
}

/// Relays complete client messages to the server. `hold` stops before the first message
/// (the pooler's own query must finish first).
pub fn client_to_server(
    c: &mut ClientSide,
    s: &mut ServerSide,
    ctx: &mut Ctx,
    hold: bool,
) -> Result<ClientFlow, ProtocolError> {
    loop {
        if hold && *c.fwd_remaining == 0 {
            return Ok(ClientFlow::Idle);
        }
        if s.outbuf.len() > HIGH_WATER {
            return Ok(ClientFlow::Idle);
        }
        if *c.fwd_remaining > 0 {
            let pending = c.inbuf.pending();
            if pending.is_empty() {
                return Ok(ClientFlow::Idle);
            }
            let n = pending.len().min(*c.fwd_remaining);
            s.outbuf.extend(ctx.bufs, &pending[..n]);
            c.inbuf.consume(n);
            *c.fwd_remaining -= n;
            continue;
        }
        let Some((tag, len)) = parse_header(c.inbuf.pending())? else {
            return Ok(ClientFlow::Idle);
        };
        if let (Some(rules), frontend::QUERY | frontend::PARSE) = (c.rules, tag) {
            if c.inbuf.len() < len {
                c.inbuf.reserve_message(ctx.bufs, len);
                return Ok(ClientFlow::Idle);
            }
            let standard_conforming_strings =
                c.params.get("standard_conforming_strings") != Some("off");
            let lex = LexOptions {
                standard_conforming_strings,
            };
            if let Some(refusal) = check_statement(rules, tag, &c.inbuf.pending()[5..len], lex)? {
                send_stand_in(tag, &c.inbuf.pending()[5..len], &refusal, s, ctx)?;
                c.inbuf.consume(len);
                ctx.refused += 1;
                continue;
            }
        }
        match tag {
            frontend::TERMINATE => {
                c.inbuf.consume(len.min(c.inbuf.len()));
                return Ok(ClientFlow::Terminate);
            }
            frontend::PARSE | frontend::BIND | frontend::DESCRIBE | frontend::CLOSE
                if ctx.track_statements =>
            {
                if c.inbuf.len() < len {
                    c.inbuf.reserve_message(ctx.bufs, len);
                    return Ok(ClientFlow::Idle);
                }
                ctx.message.clear();
                ctx.message.extend_from_slice(&c.inbuf.pending()[..len]);
                c.inbuf.consume(len);
                let msg = std::mem::take(ctx.message);
                let result = statement_message(tag, &msg, c, s, ctx);
                *ctx.message = msg;
                result?;
                // Mid-way through a server message to the client, the answer waits for
                // its end: server_to_client emits it at the next message boundary.
                if !(*s.fwd_remaining > 0 && *s.fwd_to_client) {
                    emit_synthetic(s.tracker, c.outbuf, ctx);
                }
            }
            _ => {
                if let Some(p) = track_tag(tag) {
                    s.tracker.push(p);
                }
                let pending = c.inbuf.pending();
                let n = pending.len().min(len);
                s.outbuf.extend(ctx.bufs, &pending[..n]);
                c.inbuf.consume(n);
                *c.fwd_remaining = len - n;
            }
        }
    }
}

/// What the statement rules say about a Query or Parse body.
fn check_statement(
    rules: &StatementRules,
    tag: u8,
    body: &[u8],
    lex: LexOptions,
) -> Result<Option<crate::guard::Refusal>, ProtocolError> {
    let mut r = Reader::new(body);
    if tag == frontend::PARSE {
        r.cstr_bytes()?;
    }
    // Not UTF-8 (a LATIN1 client, say): the bytes that are not are never quotes or
    // backslashes in the ASCII-safe encodings the lexer supports, so a replacement
    // character in their place tokenizes the same.
    let sql = String::from_utf8_lossy(r.cstr_bytes()?);
    Ok(rules.check_with(&sql, lex).err())
}

/// The text a refused statement is replaced with: it fails in parse analysis (the cast
/// of an unknown literal runs then), so PostgreSQL applies its own error rules, failing
/// a transaction block or skipping an extended batch to Sync, and its log shows why.
const STAND_IN_SQL: &str = "SELECT 'statement refused by the pooler'::pg_catalog.int4";

/// Sends the stand-in for a refused Query or Parse; its error will be replaced by the
/// refusal. A Parse keeps the client's statement name, so exactly what PostgreSQL
/// would drop on a failed Parse (the unnamed statement) is dropped.
fn send_stand_in(
    tag: u8,
    body: &[u8],
    refusal: &crate::guard::Refusal,
    s: &mut ServerSide,
    ctx: &mut Ctx,
) -> Result<(), ProtocolError> {
    let mut error = Vec::new();
    protocol::error_response(
        &mut error,
        protocol::Severity::Error,
        crate::guard::Refusal::SQLSTATE,
        &refusal.to_string(),
    );
    ctx.scratch.clear();
    if tag == frontend::PARSE {
        let name = Reader::new(body).cstr_bytes()?;
        protocol::begin(ctx.scratch, frontend::PARSE)
            .cstr_bytes(name)
            .cstr(STAND_IN_SQL)
            .i16(0)
            .finish();
    } else {
        protocol::query(ctx.scratch, STAND_IN_SQL);
    }
    s.outbuf.extend(ctx.bufs, ctx.scratch);
    s.tracker.push(Pending::Refused {
        error: Arc::from(error),
        parse: tag == frontend::PARSE,
    });
    Ok(())
}

/// Makes sure the server has `st` prepared, injecting a Parse (and an LRU eviction Close)
/// ahead of the message that needs it.
fn ensure_prepared(st: &Statement, s: &mut ServerSide, ctx: &mut Ctx) {
    *s.prepared_tick += 1;
    if let Some(tick) = s.prepared.get_mut(&*st.server_name) {
        *tick = *s.prepared_tick;
        return;
    }
    if s.tracker.discarding() {
        return;
    }
    evict_if_full(s, ctx);
    ctx.scratch.clear();
    protocol::parse_with_body(ctx.scratch, &st.server_name, &st.body);
    s.outbuf.extend(ctx.bufs, ctx.scratch);
    s.prepared
        .insert(st.server_name.to_string(), *s.prepared_tick);
    s.tracker.push(Pending::Parse {
        forward: false,
        name: Some(st.server_name.clone()),
    });
}

fn evict_if_full(s: &mut ServerSide, ctx: &mut Ctx) {
    if ctx.max_prepared == 0 || s.prepared.len() < ctx.max_prepared {
        return;
    }
    let Some(victim) = s
        .prepared
        .iter()
        .min_by_key(|(_, tick)| **tick)
        .map(|(name, _)| name.clone())
    else {
        return;
    };
    s.prepared.remove(&victim);
    ctx.scratch.clear();
    protocol::close_statement(ctx.scratch, &victim);
    s.outbuf.extend(ctx.bufs, ctx.scratch);
    s.tracker.push(Pending::Close { forward: false });
}

fn forward_whole(msg: &[u8], tag: u8, s: &mut ServerSide, ctx: &mut Ctx) {
    if let Some(p) = track_tag(tag) {
        s.tracker.push(p);
    }
    s.outbuf.extend(ctx.bufs, msg);
}

/// Parse / Bind / Describe / Close in transaction mode: rename client statements to their
/// shared server-side names.
fn statement_message(
    tag: u8,
    msg: &[u8],
    c: &mut ClientSide,
    s: &mut ServerSide,
    ctx: &mut Ctx,
) -> Result<(), ProtocolError> {
    let body = &msg[5..];
    let mut r = Reader::new(body);
    match tag {
        frontend::PARSE => {
            let name = r.cstr()?;
            if name.is_empty() {
                forward_whole(msg, tag, s, ctx);
                return Ok(());
            }
            let rest = r.remaining();
            let server_name: Arc<str> = Arc::from(server_statement_name(rest));
            let st = Arc::new(Statement {
                server_name: server_name.clone(),
                body: rest.to_vec(),
            });
            c.statements.insert(name.to_owned(), st.clone());
            *s.prepared_tick += 1;
            if let Some(tick) = s.prepared.get_mut(&*server_name) {
                *tick = *s.prepared_tick;
                s.tracker.push(Pending::SyntheticParse);
                return Ok(());
            }
            if !s.tracker.discarding() {
                evict_if_full(s, ctx);
                s.prepared.insert(server_name.to_string(), *s.prepared_tick);
            }
            ctx.scratch.clear();
            protocol::parse_with_body(ctx.scratch, &server_name, rest);
            s.outbuf.extend(ctx.bufs, ctx.scratch);
            s.tracker.push(Pending::Parse {
                forward: true,
                name: Some(server_name),
            });
        }
        frontend::BIND => {
            let portal = r.cstr_bytes()?;
            let stmt = r.cstr()?;
            let rest = r.remaining();
            let Some(st) = (!stmt.is_empty())
                .then(|| c.statements.get(stmt).cloned())
                .flatten()
            else {
                forward_whole(msg, tag, s, ctx);
                return Ok(());
            };
            ensure_prepared(&st, s, ctx);
            ctx.scratch.clear();
            protocol::begin(ctx.scratch, frontend::BIND)
                .cstr_bytes(portal)
                .cstr(&st.server_name)
                .bytes(rest)
                .finish();
            s.outbuf.extend(ctx.bufs, ctx.scratch);
            s.tracker.push(Pending::Bind);
        }
        frontend::DESCRIBE => {
            let kind = r.u8()?;
            let name = r.cstr()?;
            let st = (kind == b'S' && !name.is_empty())
                .then(|| c.statements.get(name).cloned())
                .flatten();
            let Some(st) = st else {
                forward_whole(msg, tag, s, ctx);
                return Ok(());
            };
            ensure_prepared(&st, s, ctx);
            ctx.scratch.clear();
            protocol::begin(ctx.scratch, frontend::DESCRIBE)
                .u8(b'S')
                .cstr(&st.server_name)
                .finish();
            s.outbuf.extend(ctx.bufs, ctx.scratch);
            s.tracker.push(Pending::Describe);
        }
        frontend::CLOSE => {
            let kind = r.u8()?;
            let name = r.cstr()?;
            if kind == b'S' && !name.is_empty() {
                // The server copy may serve other clients; only the client's name goes.
                c.statements.remove(name);
                s.tracker.push(Pending::SyntheticClose);
            } else {
                forward_whole(msg, tag, s, ctx);
            }
        }
        _ => forward_whole(msg, tag, s, ctx),
    }
    Ok(())
}

/// Per server: the size of the result being relayed, and an abort in progress.
#[derive(Debug, Default)]
pub struct ResultGuard {
    rows: u64,
    bytes: u64,
    pub abort: Option<Abort>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// query_timeout: the server's 57014 for the pooler's cancel is replaced by the
    /// abort's error; everything else passes.
    Timeout,
    /// A result limit: nothing but the abort's error and ReadyForQuery reaches the
    /// client until the request ends.
    ResultLimit,
}

#[derive(Debug)]
pub struct Abort {
    pub kind: AbortKind,
    /// The ErrorResponse the client gets.
    pub error: Vec<u8>,
}

impl ResultGuard {
    /// Starts a query_timeout abort unless one is on; returns whether it started.
    pub fn start_timeout(&mut self, limit: std::time::Duration) -> bool {
        if self.abort.is_some() {
            return false;
        }
        let mut error = Vec::new();
        protocol::error_response(
            &mut error,
            protocol::Severity::Error,
            crate::protocol::sqlstate::QUERY_CANCELED,
            &format!(
                "canceling statement due to the pooler's query_timeout ({})",
                crate::config::format_duration(limit)
            ),
        );
        self.abort = Some(Abort {
            kind: AbortKind::Timeout,
            error,
        });
        true
    }

    fn end_result(&mut self) {
        self.rows = 0;
        self.bytes = 0;
    }

    /// Counts one DataRow or CopyData message of `len` bytes; the error to end the
    /// request with when that passes a limit.
    fn count(
        &mut self,
        limits: &ClientLimits,
        row: bool,
        len: usize,
    ) -> Option<(Guardrail, Vec<u8>)> {
        self.rows += u64::from(row);
        self.bytes += len as u64;
        let (which, limit, unit) =
            if limits.max_result_rows > 0 && self.rows > limits.max_result_rows {
                (Guardrail::MaxResultRows, limits.max_result_rows, "rows")
            } else if limits.max_result_bytes > 0 && self.bytes > limits.max_result_bytes {
                (Guardrail::MaxResultBytes, limits.max_result_bytes, "bytes")
            } else {
                return None;
            };
        let key = which.as_str();
        let mut error = Vec::new();
        protocol::error_response(
            &mut error,
            protocol::Severity::Error,
            crate::protocol::sqlstate::PROGRAM_LIMIT_EXCEEDED,
            &format!("query result exceeded the pooler's {key} ({limit} {unit})"),
        );
        Some((which, error))
    }
}

/// What the worker must act on after relaying server output.
#[derive(Debug, Default)]
pub struct ServerEvents {
    /// The pooler's own query reached ReadyForQuery.
    pub internal_done: bool,
    /// ...and failed with this error (message body fields).
    pub internal_error: Option<protocol::ErrorFields>,
    /// A FATAL error was relayed: the server will close.
    pub fatal: bool,
    /// ReadyForQuery answers to the client's requests relayed, and how many of
    /// them ended a transaction (status back to idle).
    pub queries: u32,
    pub xacts: u32,
    /// A result passed this limit: the worker cancels the query on the server.
    pub limit_hit: Option<Guardrail>,
    /// A result-limit abort ended in a transaction block that the cancel did not fail:
    /// ReadyForQuery was withheld, the worker fails the transaction itself.
    pub fail_transaction: bool,
}

fn needs_whole(tag: u8) -> bool {
    matches!(
        tag,
        backend::READY_FOR_QUERY
            | backend::PARAMETER_STATUS
            | backend::ERROR_RESPONSE
            | backend::COMMAND_COMPLETE
    )
}

/// Relays server messages to the client (or swallows them when `c` is None or they answer
/// the pooler's own requests).
pub fn server_to_client(
    s: &mut ServerSide,
    mut c: Option<&mut ClientSide>,
    ctx: &mut Ctx,
) -> Result<ServerEvents, ProtocolError> {
    let mut ev = ServerEvents::default();
    loop {
        if let Some(cl) = c.as_deref_mut() {
            // Only between messages: inside a partly forwarded one it would corrupt it.
            if !(*s.fwd_remaining > 0 && *s.fwd_to_client) {
                emit_synthetic(s.tracker, cl.outbuf, ctx);
            }
            if cl.outbuf.len() > HIGH_WATER {
                return Ok(ev);
            }
        }
        if *s.fwd_remaining > 0 {
            let pending = s.inbuf.pending();
            if pending.is_empty() {
                return Ok(ev);
            }
            let n = pending.len().min(*s.fwd_remaining);
            if *s.fwd_to_client {
                if let Some(cl) = c.as_deref_mut() {
                    cl.outbuf.extend(ctx.bufs, &pending[..n]);
                }
            }
            s.inbuf.consume(n);
            *s.fwd_remaining -= n;
            continue;
        }
        let Some((tag, len)) = parse_header(s.inbuf.pending())? else {
            return Ok(ev);
        };
        if needs_whole(tag) && s.inbuf.len() < len {
            s.inbuf.reserve_message(ctx.bufs, len);
            return Ok(ev);
        }
        let internal = matches!(s.tracker.front(), Some(Pending::Internal));
        let mut forward = !internal;
        let aborting = !internal
            && matches!(
                s.guard.abort,
                Some(Abort {
                    kind: AbortKind::ResultLimit,
                    ..
                })
            );
        match tag {
            backend::READY_FOR_QUERY => {
                let status = s.inbuf.pending().get(5).copied().unwrap_or(b'I');
                *s.status = status;
                s.tracker.skipping = false;
                s.guard.end_result();
                if s.tracker.pop() == Some(Pending::Internal) {
                    ev.internal_done = true;
                    forward = false;
                } else {
                    ev.queries += 1;
                    if status == b'I' {
                        ev.xacts += 1;
                    }
                    if aborting && status == b'T' {
                        // The statement finished before the cancel landed; PostgreSQL
                        // would leave the transaction failed after an error.
                        ev.fail_transaction = true;
                        forward = false;
                    } else if let Some(abort) = s.guard.abort.take() {
                        if abort.kind == AbortKind::ResultLimit {
                            if let Some(cl) = c.as_deref_mut() {
                                cl.outbuf.extend(ctx.bufs, &abort.error);
                            }
                        }
                    }
                }
            }
            backend::ERROR_RESPONSE => {
                let fields = protocol::parse_error_fields(&s.inbuf.pending()[5..len]);
                let fatal = fields.severity == "FATAL" || fields.severity == "PANIC";
                if fatal {
                    ev.fatal = true;
                }
                s.guard.end_result();
                let replacement = match (s.tracker.front(), &s.guard.abort) {
                    _ if internal || fatal => None,
                    (Some(Pending::Refused { error, .. }), _) => Some(error.to_vec()),
                    (
                        _,
                        Some(Abort {
                            kind: AbortKind::ResultLimit,
                            ..
                        }),
                    ) => {
                        forward = false;
                        None
                    }
                    (_, Some(abort))
                        if fields.code == crate::protocol::sqlstate::QUERY_CANCELED =>
                    {
                        Some(abort.error.clone())
                    }
                    _ => None,
                };
                if let Some(error) = replacement {
                    forward = false;
                    if let Some(cl) = c.as_deref_mut() {
                        cl.outbuf.extend(ctx.bufs, &error);
                    }
                }
                if internal {
                    ev.internal_error = Some(fields);
                }
                for name in s.tracker.on_error() {
                    s.prepared.remove(&*name);
                }
            }
            backend::DATA_ROW | backend::COPY_DATA if !internal => {
                if aborting {
                    forward = false;
                } else if let Some(limits) = c.as_deref().map(|cl| cl.limits) {
                    if limits.max_result_rows > 0 || limits.max_result_bytes > 0 {
                        let row = tag == backend::DATA_ROW;
                        if let Some((which, error)) = s.guard.count(&limits, row, len) {
                            s.guard.abort = Some(Abort {
                                kind: AbortKind::ResultLimit,
                                error,
                            });
                            ev.limit_hit = Some(which);
                            forward = false;
                        }
                    }
                }
            }
            backend::PARSE_COMPLETE => {
                if let Some(Pending::Parse { forward: fwd, .. }) = s.tracker.front() {
                    forward = *fwd;
                    s.tracker.pop();
                }
            }
            backend::CLOSE_COMPLETE => {
                if let Some(Pending::Close { forward: fwd }) = s.tracker.front() {
                    forward = *fwd;
                    s.tracker.pop();
                }
            }
            backend::BIND_COMPLETE => {
                s.tracker.pop_if(&Pending::Bind);
            }
            backend::ROW_DESCRIPTION | backend::NO_DATA => {
                s.tracker.pop_if(&Pending::Describe);
            }
            backend::COMMAND_COMPLETE => {
                let tag_text = &s.inbuf.pending()[5..len];
                // The client wiped the server's statements itself; forget ours too.
                if tag_text == b"DISCARD ALL\0" || tag_text == b"DEALLOCATE ALL\0" {
                    s.prepared.clear();
                }
                s.tracker.pop_if(&Pending::Execute);
                s.guard.end_result();
            }
            backend::COPY_IN_RESPONSE => s.tracker.on_copy_in(),
            backend::EMPTY_QUERY_RESPONSE => {
                s.tracker.pop_if(&Pending::Execute);
                s.guard.end_result();
            }
            backend::PORTAL_SUSPENDED => {
                s.tracker.pop_if(&Pending::Execute);
            }
            backend::PARAMETER_STATUS => {
                forward = false;
                let mut r = Reader::new(&s.inbuf.pending()[5..len]);
                if let (Ok(name), Ok(value)) = (r.cstr(), r.cstr()) {
                    let lower = name.to_ascii_lowercase();
                    if params::is_reported(&lower) {
                        s.params.set(&lower, value);
                    }
                    // The client hears of a change only when its own view differs, so the
                    // pooler's settings sync stays invisible.
                    if let Some(cl) = c.as_deref_mut() {
                        if cl.params.get(&lower) != Some(value) {
                            if params::is_reported(&lower) {
                                cl.params.set(&lower, value);
                            }
                            forward = true;
                        }
                    }
                }
            }
            _ => {}
        }
        if aborting
            && !matches!(
                tag,
                backend::PARAMETER_STATUS
                    | backend::NOTIFICATION_RESPONSE
                    | backend::READY_FOR_QUERY
                    | backend::ERROR_RESPONSE
            )
        {
            forward = false;
        }
        let pending = s.inbuf.pending();
        let n = pending.len().min(len);
        if forward {
            if let Some(cl) = c.as_deref_mut() {
                cl.outbuf.extend(ctx.bufs, &pending[..n]);
            }
        }
        s.inbuf.consume(n);
        *s.fwd_remaining = len - n;
        *s.fwd_to_client = forward;
    }
}

/// Both sides of one link as plain buffers, without sockets or a worker: what the relay's
/// unit tests and the fuzz targets (`worker::fuzz`) drive.
#[doc(hidden)]
pub struct BufferedLink {
    pub bufs: BufPool,
    pub scratch: Vec<u8>,
    pub message: Vec<u8>,
    pub c_in: Buf,
    pub c_out: Buf,
    pub c_fwd: usize,
    pub stmts: HashMap<String, Arc<Statement>>,
    pub c_params: ParamSet,
    pub s_in: Buf,
    pub s_out: Buf,
    pub s_fwd: usize,
    pub s_to_client: bool,
    pub tracker: Tracker,
    pub status: u8,
    pub s_params: ParamSet,
    pub prepared: HashMap<String, u64>,
    pub tick: u64,
    pub rules: Option<StatementRules>,
    pub limits: ClientLimits,
    pub guard: ResultGuard,
    pub max_prepared: usize,
    /// Statements the rules refused, over all calls.
    pub refused: u32,
}

impl BufferedLink {
    /// Transaction mode with statement tracking; no rules, no limits.
    pub fn new(max_prepared: usize) -> BufferedLink {
        BufferedLink {
            bufs: BufPool::default(),
            scratch: Vec::new(),
            message: Vec::new(),
            c_in: Buf::default(),
            c_out: Buf::default(),
            c_fwd: 0,
            stmts: HashMap::new(),
            c_params: ParamSet::default(),
            s_in: Buf::default(),
            s_out: Buf::default(),
            s_fwd: 0,
            s_to_client: false,
            tracker: Tracker::default(),
            status: b'I',
            s_params: ParamSet::default(),
            prepared: HashMap::new(),
            tick: 0,
            rules: None,
            limits: ClientLimits::default(),
            guard: ResultGuard::default(),
            max_prepared,
            refused: 0,
        }
    }

    pub fn with_sides<R>(
        &mut self,
        f: impl FnOnce(&mut ClientSide, &mut ServerSide, &mut Ctx) -> R,
    ) -> R {
        let mut ctx = Ctx {
            bufs: &mut self.bufs,
            scratch: &mut self.scratch,
            message: &mut self.message,
            track_statements: true,
            max_prepared: self.max_prepared,
            refused: 0,
        };
        let mut c = ClientSide {
            inbuf: &mut self.c_in,
            outbuf: &mut self.c_out,
            fwd_remaining: &mut self.c_fwd,
            statements: &mut self.stmts,
            params: &mut self.c_params,
            rules: self.rules.as_ref(),
            limits: self.limits,
        };
        let mut s = ServerSide {
            inbuf: &mut self.s_in,
            outbuf: &mut self.s_out,
            fwd_remaining: &mut self.s_fwd,
            fwd_to_client: &mut self.s_to_client,
            tracker: &mut self.tracker,
            status: &mut self.status,
            params: &mut self.s_params,
            prepared: &mut self.prepared,
            prepared_tick: &mut self.tick,
            guard: &mut self.guard,
        };
        let r = f(&mut c, &mut s, &mut ctx);
        self.refused += ctx.refused;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl BufferedLink {
        fn client_sends(&mut self, bytes: &[u8]) -> ClientFlow {
            self.c_in.extend(&mut self.bufs, bytes);
            self.with_sides(|c, s, ctx| client_to_server(c, s, ctx, false).unwrap())
        }

        fn server_sends(&mut self, bytes: &[u8]) -> ServerEvents {
            self.s_in.extend(&mut self.bufs, bytes);
            self.with_sides(|c, s, ctx| server_to_client(s, Some(c), ctx).unwrap())
        }

        fn take_server_out(&mut self) -> Vec<u8> {
            let v = self.s_out.pending().to_vec();
            self.s_out.consume(v.len());
            v
        }

        fn take_client_out(&mut self) -> Vec<u8> {
            let v = self.c_out.pending().to_vec();
            self.c_out.consume(v.len());
            v
        }
    }

    fn msg(tag: u8, f: impl FnOnce(protocol::Msg) -> protocol::Msg) -> Vec<u8> {
        let mut v = Vec::new();
        f(protocol::begin(&mut v, tag)).finish();
        v
    }

    fn tags(mut bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Ok(Some((t, l))) = parse_header(bytes) {
            out.push(t);
            bytes = &bytes[l..];
        }
        out
    }

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        msg(b'P', |m| m.cstr(name).cstr(sql).i16(0))
    }
    fn bind(stmt: &str) -> Vec<u8> {
        msg(b'B', |m| m.cstr("").cstr(stmt).i16(0).i16(0).i16(0))
    }

    #[test]
    fn named_parse_is_renamed_and_reused_without_resending() {
        let mut h = BufferedLink::new(2);
        let mut batch = parse("s1", "SELECT 1");
        batch.extend(bind("s1"));
        batch.extend(msg(b'E', |m| m.cstr("").i32(0)));
        batch.extend(msg(b'S', |m| m));
        h.client_sends(&batch);
        let sent = h.take_server_out();
        assert_eq!(tags(&sent), b"PBES");
        assert!(!sent.windows(2).any(|w| w == b"s1"), "client name leaked");
        let reply = [
            msg(b'1', |m| m),
            msg(b'2', |m| m),
            msg(b'C', |m| m.cstr("SELECT 1")),
            msg(b'Z', |m| m.u8(b'I')),
        ]
        .concat();
        h.server_sends(&reply);
        assert_eq!(tags(&h.take_client_out()), b"12CZ");
        assert!(h.tracker.is_empty());

        // A second client-side Parse of the same SQL: answered by the pooler.
        let mut batch = parse("s2", "SELECT 1");
        batch.extend(msg(b'S', |m| m));
        h.client_sends(&batch);
        assert_eq!(tags(&h.take_server_out()), b"S");
        assert_eq!(
            tags(&h.take_client_out()),
            b"1",
            "ParseComplete must come at once"
        );
        h.server_sends(&msg(b'Z', |m| m.u8(b'I')));
        assert_eq!(tags(&h.take_client_out()), b"Z");
    }

    #[test]
    fn missing_statement_is_prepared_on_a_new_server() {
        let mut h = BufferedLink::new(2);
        h.client_sends(&parse("s1", "SELECT 1"));
        h.take_server_out();
        h.server_sends(&msg(b'1', |m| m));
        h.take_client_out();
        // The client moves to a server that never saw the statement.
        h.prepared.clear();
        h.client_sends(&[bind("s1"), msg(b'S', |m| m)].concat());
        assert_eq!(tags(&h.take_server_out()), b"PBS");
        h.server_sends(
            &[
                msg(b'1', |m| m),
                msg(b'2', |m| m),
                msg(b'Z', |m| m.u8(b'I')),
            ]
            .concat(),
        );
        assert_eq!(
            tags(&h.take_client_out()),
            b"2Z",
            "injected ParseComplete swallowed"
        );
    }

    #[test]
    fn error_skips_to_sync_and_forgets_failed_statement() {
        let mut h = BufferedLink::new(2);
        let batch = [
            parse("bad", "SELEC 1"),
            bind("bad"),
            msg(b'E', |m| m.cstr("").i32(0)),
            msg(b'S', |m| m),
        ]
        .concat();
        h.client_sends(&batch);
        h.take_server_out();
        assert_eq!(h.prepared.len(), 1);
        let mut err = Vec::new();
        protocol::error_response(&mut err, protocol::Severity::Error, "42601", "syntax");
        h.server_sends(&err);
        assert!(!h.tracker.is_clean(), "still skipping to the Sync");
        h.server_sends(&msg(b'Z', |m| m.u8(b'I')));
        assert_eq!(tags(&h.take_client_out()), b"EZ");
        assert!(h.tracker.is_empty());
        assert!(h.prepared.is_empty());
        // A worker may hand this tracker to the next server it adopts.
        assert!(h.tracker.is_clean());
    }

    #[test]
    fn close_is_answered_locally_and_lru_evicts() {
        let mut h = BufferedLink::new(2);
        for (i, sql) in ["SELECT 1", "SELECT 2"].iter().enumerate() {
            h.client_sends(&parse(&format!("s{i}"), sql));
            h.server_sends(&msg(b'1', |m| m));
        }
        h.client_sends(&parse("s2", "SELECT 3"));
        let sent = h.take_server_out();
        assert_eq!(tags(&sent), b"PPCP", "third statement evicts the first");
        h.server_sends(&[msg(b'3', |m| m), msg(b'1', |m| m)].concat());
        assert_eq!(
            tags(&h.take_client_out()),
            b"111",
            "eviction CloseComplete swallowed"
        );
        h.client_sends(&msg(b'C', |m| m.u8(b'S').cstr("s2")));
        assert_eq!(tags(&h.take_server_out()), b"");
        assert_eq!(tags(&h.take_client_out()), b"3");
        assert!(!h.stmts.contains_key("s2"));
    }

    #[test]
    fn internal_query_is_swallowed_and_large_rows_stream() {
        let mut h = BufferedLink::new(2);
        h.tracker.push(Pending::Internal);
        h.server_sends(&[msg(b'C', |m| m.cstr("SET")), msg(b'Z', |m| m.u8(b'I'))].concat());
        assert!(h.take_client_out().is_empty());
        h.client_sends(&msg(b'Q', |m| m.cstr("SELECT big")));
        let row = msg(b'D', |m| m.i16(1).i32(100_000).bytes(&vec![b'x'; 100_000]));
        h.server_sends(&row[..1000]);
        h.server_sends(&row[1000..]);
        assert_eq!(h.take_client_out(), row);
        h.server_sends(&msg(b'Z', |m| m.u8(b'I')));
        assert!(h.tracker.is_empty());
    }

    #[test]
    fn sync_sent_before_copy_data_is_not_awaited() {
        // The postgres crate pipelines Bind/Execute/Sync, then CopyData/CopyDone/Sync;
        // PostgreSQL ignores the first Sync because it arrives in copy-in mode.
        let mut h = BufferedLink::new(2);
        h.client_sends(&[bind(""), msg(b'E', |m| m.cstr("").i32(0)), msg(b'S', |m| m)].concat());
        h.server_sends(&[msg(b'2', |m| m), msg(b'G', |m| m.u8(0).i16(0))].concat());
        h.client_sends(
            &[
                msg(b'd', |m| m.bytes(b"1\n")),
                msg(b'c', |m| m),
                msg(b'S', |m| m),
            ]
            .concat(),
        );
        h.server_sends(&[msg(b'C', |m| m.cstr("COPY 1")), msg(b'Z', |m| m.u8(b'I'))].concat());
        assert!(h.tracker.is_empty(), "{:?}", h.tracker);
        assert_eq!(tags(&h.take_client_out()), b"2GCZ");
    }

    #[test]
    fn copy_done_already_queued_when_copy_in_starts() {
        let mut h = BufferedLink::new(2);
        h.client_sends(
            &[
                msg(b'Q', |m| m.cstr("COPY t FROM STDIN")),
                msg(b'd', |m| m.bytes(b"1\n")),
                msg(b'c', |m| m),
            ]
            .concat(),
        );
        h.server_sends(&msg(b'G', |m| m.u8(0).i16(0)));
        h.server_sends(&[msg(b'C', |m| m.cstr("COPY 1")), msg(b'Z', |m| m.u8(b'I'))].concat());
        assert!(h.tracker.is_empty(), "{:?}", h.tracker);
    }

    #[test]
    fn parameter_status_only_reaches_client_when_its_view_differs() {
        let mut h = BufferedLink::new(2);
        h.c_params.set("timezone", "UTC");
        h.client_sends(&msg(b'Q', |m| m.cstr("SET x")));
        h.take_server_out();
        h.server_sends(&msg(b'S', |m| m.cstr("TimeZone").cstr("UTC")));
        assert!(h.take_client_out().is_empty());
        h.server_sends(&msg(b'S', |m| m.cstr("TimeZone").cstr("Europe/Paris")));
        assert_eq!(tags(&h.take_client_out()), b"S");
        assert_eq!(h.c_params.get("timezone"), Some("Europe/Paris"));
        assert_eq!(h.s_params.get("timezone"), Some("Europe/Paris"));
    }

    fn error_code(bytes: &[u8]) -> String {
        protocol::parse_error_fields(&bytes[5..]).code
    }

    fn row() -> Vec<u8> {
        msg(b'D', |m| m.i16(1).i32(1).bytes(b"1"))
    }

    #[test]
    fn refused_query_is_replaced_by_a_failing_stand_in() {
        let mut h = BufferedLink::new(2);
        h.rules = Some(StatementRules::new(&["ALTER SYSTEM"], &[] as &[&str]).unwrap());
        h.client_sends(&msg(b'Q', |m| {
            m.cstr("/* x */ alter  SYSTEM set work_mem = 1")
        }));
        let sent = h.take_server_out();
        assert!(!sent.windows(6).any(|w| w.eq_ignore_ascii_case(b"system")));
        assert!(sent.windows(7).any(|w| w == b"refused"), "stand-in sent");
        let mut err = Vec::new();
        protocol::error_response(&mut err, protocol::Severity::Error, "22P02", "bad int");
        h.server_sends(&[err, msg(b'Z', |m| m.u8(b'I'))].concat());
        let out = h.take_client_out();
        assert_eq!(tags(&out), b"EZ");
        assert_eq!(error_code(&out), "42501");
        // Text inside quotes is not a statement.
        h.client_sends(&msg(b'Q', |m| m.cstr("SELECT 'ALTER SYSTEM'")));
        assert!(h.take_server_out().windows(6).any(|w| w == b"SYSTEM"));
    }

    #[test]
    fn refused_parse_skips_the_batch_to_sync() {
        let mut h = BufferedLink::new(2);
        h.rules = Some(StatementRules::new(&["LOAD"], &[] as &[&str]).unwrap());
        let batch = [
            parse("s1", "load 'x'"),
            bind("s1"),
            msg(b'E', |m| m.cstr("").i32(0)),
            msg(b'S', |m| m),
        ]
        .concat();
        h.client_sends(&batch);
        assert!(
            !h.stmts.contains_key("s1"),
            "refused statement not registered"
        );
        let mut err = Vec::new();
        protocol::error_response(&mut err, protocol::Severity::Error, "22P02", "bad int");
        h.server_sends(&[err, msg(b'Z', |m| m.u8(b'I'))].concat());
        let out = h.take_client_out();
        assert_eq!(tags(&out), b"EZ");
        assert_eq!(error_code(&out), "42501");
        assert!(h.tracker.is_empty(), "{:?}", h.tracker);
    }

    #[test]
    fn row_limit_stops_rows_and_ends_with_one_error() {
        let mut h = BufferedLink::new(2);
        h.limits.max_result_rows = 2;
        h.client_sends(&msg(b'Q', |m| m.cstr("SELECT big")));
        let mut reply = vec![msg(b'T', |m| m.i16(0))];
        reply.extend((0..5).map(|_| row()));
        let ev = h.server_sends(&reply.concat());
        assert_eq!(ev.limit_hit, Some(Guardrail::MaxResultRows));
        assert_eq!(tags(&h.take_client_out()), b"TDD");
        let mut cancelled = Vec::new();
        protocol::error_response(&mut cancelled, protocol::Severity::Error, "57014", "cancel");
        let ev = h.server_sends(&[row(), cancelled, msg(b'Z', |m| m.u8(b'I'))].concat());
        assert!(!ev.fail_transaction);
        let out = h.take_client_out();
        assert_eq!(tags(&out), b"EZ");
        assert_eq!(error_code(&out), "54000");
        assert!(h.guard.abort.is_none());
        // The next result counts from zero.
        h.client_sends(&msg(b'Q', |m| m.cstr("SELECT 1")));
        let ev = h.server_sends(&[row(), row(), msg(b'Z', |m| m.u8(b'I'))].concat());
        assert!(ev.limit_hit.is_none());
        assert_eq!(tags(&h.take_client_out()), b"DDZ");
    }

    #[test]
    fn limit_in_a_transaction_the_cancel_missed_asks_to_fail_it() {
        let mut h = BufferedLink::new(2);
        h.limits.max_result_bytes = 30;
        h.client_sends(&msg(b'Q', |m| m.cstr("COPY t TO STDOUT")));
        let data = msg(b'd', |m| m.bytes(&[b'x'; 16]));
        let reply = [
            msg(b'H', |m| m.u8(0).i16(0)),
            data.clone(),
            data,
            msg(b'c', |m| m),
            msg(b'C', |m| m.cstr("COPY 2")),
            msg(b'Z', |m| m.u8(b'T')),
        ]
        .concat();
        let ev = h.server_sends(&reply);
        assert!(ev.limit_hit == Some(Guardrail::MaxResultBytes) && ev.fail_transaction);
        assert_eq!(tags(&h.take_client_out()), b"Hd", "RFQ withheld");
        assert!(h.guard.abort.is_some(), "the worker sends the error later");
    }

    #[test]
    fn timeout_replaces_only_the_cancel_error() {
        let mut h = BufferedLink::new(2);
        h.client_sends(&msg(b'Q', |m| m.cstr("SELECT pg_sleep(10)")));
        assert!(h.guard.start_timeout(std::time::Duration::from_secs(2)));
        assert!(!h.guard.start_timeout(std::time::Duration::from_secs(2)));
        let mut cancelled = Vec::new();
        protocol::error_response(&mut cancelled, protocol::Severity::Error, "57014", "user");
        h.server_sends(&[cancelled, msg(b'Z', |m| m.u8(b'I'))].concat());
        let out = h.take_client_out();
        assert_eq!(error_code(&out), "57014");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("query_timeout (2s)"), "{text}");
        assert!(h.guard.abort.is_none());
    }
}
