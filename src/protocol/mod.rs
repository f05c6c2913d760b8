//! PostgreSQL wire protocol, version 3.0: message framing, the few parsers the pooler
//! needs to make pooling decisions, and writers for the messages the pooler itself sends.
//!
//! Writers append to a caller-owned `Vec<u8>` so the relay never allocates per message;
//! readers borrow from the caller's buffer.

pub mod sqlstate;

/// Largest message the pooler accepts from either side: PostgreSQL's own limit for its
/// large messages (PQ_LARGE_MESSAGE_LIMIT, MaxAllocSize - 1, just under 1 GiB); a larger
/// length field means garbage or an attack.
pub const MAX_MESSAGE_LEN: usize = 0x3fff_fffe;
/// A startup-phase packet (StartupMessage, SSLRequest, CancelRequest) is small; PostgreSQL
/// caps it at 10000 bytes (MAX_STARTUP_PACKET_LENGTH).
pub const MAX_STARTUP_LEN: usize = 10_000;

pub const PROTOCOL_3_0: u32 = 196_608;
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// Backend message tags that drive pooling.
pub mod backend {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    pub const NO_DATA: u8 = b'n';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// Frontend message tags.
pub mod frontend {
    pub const BIND: u8 = b'B';
    pub const CLOSE: u8 = b'C';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse and SASLResponse share this tag.
    pub const PASSWORD: u8 = b'p';
    pub const QUERY: u8 = b'Q';
    pub const SYNC: u8 = b'S';
    pub const TERMINATE: u8 = b'X';
}

/// Authentication request codes inside an 'R' message.
pub mod auth_code {
    pub const OK: i32 = 0;
    pub const CLEARTEXT: i32 = 3;
    pub const MD5: i32 = 5;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// Length field below 4 or above the limit.
    BadLength(usize),
    /// A message body ended before a field it must contain.
    Truncated,
    /// A string field is not valid UTF-8 where the pooler needs text.
    NotUtf8,
    Unexpected(String),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::BadLength(n) => write!(f, "invalid message length {n}"),
            ProtocolError::Truncated => write!(f, "message ends before its last field"),
            ProtocolError::NotUtf8 => write!(f, "invalid UTF-8 in message"),
            ProtocolError::Unexpected(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The 5-byte header of a regular message: tag and total length including the tag byte.
/// `Ok(None)` means fewer than 5 bytes are buffered.
pub fn parse_header(buf: &[u8]) -> Result<Option<(u8, usize)>, ProtocolError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if !(4..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(ProtocolError::BadLength(len));
    }
    Ok(Some((buf[0], len + 1)))
}

/// What a client sends before it is a PostgreSQL session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Startup {
        /// Minor protocol version (3.x); the pooler speaks 3.0.
        minor: u16,
        params: Vec<(String, String)>,
    },
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: u32,
        key: u32,
    },
    UnsupportedVersion(u32),
}

/// Parses one startup-phase packet. `Ok(None)` means more bytes are needed; the second
/// value is the packet's length so the caller can consume it.
pub fn parse_startup(buf: &[u8]) -> Result<Option<(StartupPacket, usize)>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(ProtocolError::BadLength(len));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let packet = match code {
        SSL_REQUEST_CODE if len == 8 => StartupPacket::SslRequest,
        GSSENC_REQUEST_CODE if len == 8 => StartupPacket::GssEncRequest,
        CANCEL_REQUEST_CODE if len == 16 => StartupPacket::Cancel {
            pid: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            key: u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]),
        },
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            return Err(ProtocolError::BadLength(len))
        }
        c if c >> 16 == 3 => {
            let mut r = Reader::new(&buf[8..len]);
            let mut params = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((name.to_owned(), value.to_owned()));
            }
            StartupPacket::Startup {
                minor: (c & 0xffff) as u16,
                params,
            }
        }
        other => StartupPacket::UnsupportedVersion(other),
    };
    Ok(Some((packet, len)))
}

/// Cursor over a message body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn cstr_bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let rest = &self.buf[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtocolError::Truncated)?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    pub fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        std::str::from_utf8(self.cstr_bytes()?).map_err(|_| ProtocolError::NotUtf8)
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        let b = *self.buf.get(self.pos).ok_or(ProtocolError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() - self.pos < n {
            return Err(ProtocolError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

/// Writes one message with a back-patched length. Created by [`begin`], finished by
/// [`Msg::finish`]; dropping it unfinished leaves a broken frame, so callers finish at once.
pub struct Msg<'a> {
    buf: &'a mut Vec<u8>,
    len_at: usize,
}

/// Starts a message with `tag` (0 for the untagged startup-phase packets).
pub fn begin(buf: &mut Vec<u8>, tag: u8) -> Msg<'_> {
    if tag != 0 {
        buf.push(tag);
    }
    let len_at = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    Msg { buf, len_at }
}

impl Msg<'_> {
    pub fn u8(self, v: u8) -> Self {
        self.buf.push(v);
        self
    }
    pub fn i16(self, v: i16) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(self, v: i32) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(self, v: &[u8]) -> Self {
        self.buf.extend_from_slice(v);
        self
    }
    pub fn cstr(self, v: &str) -> Self {
        self.cstr_bytes(v.as_bytes())
    }
    pub fn cstr_bytes(self, v: &[u8]) -> Self {
        self.buf.extend_from_slice(v);
        self.buf.push(0);
        self
    }
    pub fn finish(self) {
        let len = (self.buf.len() - self.len_at) as u32;
        self.buf[self.len_at..self.len_at + 4].copy_from_slice(&len.to_be_bytes());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// ErrorResponse with severity, SQLSTATE and message, the fields libpq shows.
pub fn error_response(buf: &mut Vec<u8>, severity: Severity, code: &str, message: &str) {
    begin(buf, backend::ERROR_RESPONSE)
        .u8(b'S')
        .cstr(severity.as_str())
        .u8(b'V')
        .cstr(severity.as_str())
        .u8(b'C')
        .cstr(code)
        .u8(b'M')
        .cstr(message)
        .u8(0)
        .finish();
}

pub fn auth_request(buf: &mut Vec<u8>, code: i32, data: &[u8]) {
    begin(buf, backend::AUTHENTICATION)
        .i32(code)
        .bytes(data)
        .finish();
}

pub fn auth_sasl_mechanisms(buf: &mut Vec<u8>, mechanisms: &[&str]) {
    let mut m = begin(buf, backend::AUTHENTICATION).i32(auth_code::SASL);
    for mech in mechanisms {
        m = m.cstr(mech);
    }
    m.u8(0).finish();
}

pub fn parameter_status(buf: &mut Vec<u8>, name: &str, value: &str) {
    begin(buf, backend::PARAMETER_STATUS)
        .cstr(name)
        .cstr(value)
        .finish();
}

pub fn backend_key_data(buf: &mut Vec<u8>, pid: u32, key: u32) {
    begin(buf, backend::BACKEND_KEY_DATA)
        .i32(pid as i32)
        .i32(key as i32)
        .finish();
}

pub fn ready_for_query(buf: &mut Vec<u8>, status: u8) {
    begin(buf, backend::READY_FOR_QUERY).u8(status).finish();
}

pub fn negotiate_protocol_version(buf: &mut Vec<u8>, minor: u16, unrecognized: &[&str]) {
    let mut m = begin(buf, backend::NEGOTIATE_PROTOCOL_VERSION)
        .i32(i32::from(minor))
        .i32(unrecognized.len() as i32);
    for opt in unrecognized {
        m = m.cstr(opt);
    }
    m.finish();
}

pub fn parse_complete(buf: &mut Vec<u8>) {
    begin(buf, backend::PARSE_COMPLETE).finish();
}

pub fn close_complete(buf: &mut Vec<u8>) {
    begin(buf, backend::CLOSE_COMPLETE).finish();
}

pub fn startup_message(buf: &mut Vec<u8>, params: &[(&str, &str)]) {
    let mut m = begin(buf, 0).i32(PROTOCOL_3_0 as i32);
    for (k, v) in params {
        m = m.cstr(k).cstr(v);
    }
    m.u8(0).finish();
}

pub fn cancel_request(buf: &mut Vec<u8>, pid: u32, key: u32) {
    begin(buf, 0)
        .i32(CANCEL_REQUEST_CODE as i32)
        .i32(pid as i32)
        .i32(key as i32)
        .finish();
}

pub fn password_message(buf: &mut Vec<u8>, password: &[u8]) {
    begin(buf, frontend::PASSWORD).cstr_bytes(password).finish();
}

pub fn sasl_initial_response(buf: &mut Vec<u8>, mechanism: &str, data: &[u8]) {
    begin(buf, frontend::PASSWORD)
        .cstr(mechanism)
        .i32(data.len() as i32)
        .bytes(data)
        .finish();
}

pub fn sasl_response(buf: &mut Vec<u8>, data: &[u8]) {
    begin(buf, frontend::PASSWORD).bytes(data).finish();
}

pub fn query(buf: &mut Vec<u8>, sql: &str) {
    begin(buf, frontend::QUERY).cstr(sql).finish();
}

pub fn terminate(buf: &mut Vec<u8>) {
    begin(buf, frontend::TERMINATE).finish();
}

pub fn sync(buf: &mut Vec<u8>) {
    begin(buf, frontend::SYNC).finish();
}

/// A Parse message for statement `name` whose body after the name is `after_name`
/// (query string, parameter type count and types), copied from the client's Parse.
pub fn parse_with_body(buf: &mut Vec<u8>, name: &str, after_name: &[u8]) {
    begin(buf, frontend::PARSE)
        .cstr(name)
        .bytes(after_name)
        .finish();
}

pub fn close_statement(buf: &mut Vec<u8>, name: &str) {
    begin(buf, frontend::CLOSE).u8(b'S').cstr(name).finish();
}

/// The fields of an ErrorResponse or NoticeResponse body that the pooler logs or relays.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

pub fn parse_error_fields(body: &[u8]) -> ErrorFields {
    let mut fields = ErrorFields::default();
    let mut r = Reader::new(body);
    while let Ok(kind) = r.u8() {
        if kind == 0 {
            break;
        }
        let Ok(value) = r.cstr_bytes() else { break };
        let value = String::from_utf8_lossy(value).into_owned();
        match kind {
            b'V' => fields.severity = value,
            b'S' if fields.severity.is_empty() => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
    }
    fields
}

/// Quotes a string as an SQL literal for the SET commands the pooler issues itself. As
/// PostgreSQL's quote_literal does, a value with a backslash becomes an `E'...'` string
/// with the backslashes doubled, so it reads the same whatever the server's
/// standard_conforming_strings (a previous client may have turned it off).
pub fn quote_literal(out: &mut String, value: &str) {
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for ch in value.chars() {
        if ch == '\'' || ch == '\\' {
            out.push(ch);
        }
        out.push(ch);
    }
    out.push('\'');
}

/// Quotes an identifier (a GUC name from a client's startup packet).
pub fn quote_ident(out: &mut String, ident: &str) {
    out.push('"');
    for ch in ident.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes_and_sane_length() {
        assert_eq!(parse_header(b"Z\0\0\0").unwrap(), None);
        assert_eq!(parse_header(b"Z\0\0\0\x05I").unwrap(), Some((b'Z', 6)));
        assert!(parse_header(b"Z\0\0\0\x03").is_err());
        assert!(parse_header(b"Z\x7f\xff\xff\xff").is_err());
    }

    #[test]
    fn startup_round_trip() {
        let mut buf = Vec::new();
        startup_message(&mut buf, &[("user", "alice"), ("database", "app")]);
        let (packet, len) = parse_startup(&buf).unwrap().unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(
            packet,
            StartupPacket::Startup {
                minor: 0,
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "app".into())
                ]
            }
        );
        assert_eq!(parse_startup(&buf[..buf.len() - 1]).unwrap(), None);
    }

    #[test]
    fn startup_special_codes() {
        let mut buf = Vec::new();
        cancel_request(&mut buf, 7, 9);
        assert_eq!(
            parse_startup(&buf).unwrap().unwrap().0,
            StartupPacket::Cancel { pid: 7, key: 9 }
        );
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(
            parse_startup(&ssl).unwrap().unwrap().0,
            StartupPacket::SslRequest
        );
        let v2 = [0, 0, 0, 8, 0, 2, 0, 0];
        assert_eq!(
            parse_startup(&v2).unwrap().unwrap().0,
            StartupPacket::UnsupportedVersion(0x20000)
        );
        assert!(parse_startup(&[0, 0, 0, 3]).is_err());
        assert!(parse_startup(&[0, 0, 0x7f, 0]).is_err());
    }

    #[test]
    fn startup_without_terminator_is_an_error() {
        let pkt = [0, 0, 0, 12, 0, 3, 0, 0, b'u', 0, b'x', 0];
        assert!(parse_startup(&pkt).is_err());
    }

    #[test]
    fn error_response_fields_round_trip() {
        let mut buf = Vec::new();
        error_response(&mut buf, Severity::Fatal, "28P01", "nope");
        let (tag, len) = parse_header(&buf).unwrap().unwrap();
        assert_eq!((tag, len), (b'E', buf.len()));
        let f = parse_error_fields(&buf[5..]);
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.code, "28P01");
        assert_eq!(f.message, "nope");
    }

    #[test]
    fn error_fields_tolerate_garbage() {
        let f = parse_error_fields(b"Cabc");
        assert_eq!(f.code, "");
        let _ = parse_error_fields(&[0xff, 0xfe]);
    }

    #[test]
    fn quoting() {
        let mut s = String::new();
        quote_literal(&mut s, "it's");
        assert_eq!(s, "'it''s'");
        s.clear();
        // Read the same with standard_conforming_strings on or off.
        quote_literal(&mut s, r"a\'; DROP TABLE t; --");
        assert_eq!(s, r"E'a\\''; DROP TABLE t; --'");
        s.clear();
        quote_ident(&mut s, "a\"b");
        assert_eq!(s, "\"a\"\"b\"");
    }

    #[test]
    fn reader_reports_truncation() {
        let mut r = Reader::new(b"ab");
        assert!(r.cstr().is_err());
        let mut r = Reader::new(&[0, 1]);
        assert!(r.i32().is_err());
    }
}
