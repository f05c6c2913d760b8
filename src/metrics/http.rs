//! Just enough HTTP/1.1 to serve `GET /metrics`, sans-IO: [`parse_request`] looks at the
//! bytes received so far and says whether a complete request head is there, and the
//! response functions return the bytes to write. The caller owns the socket and the
//! buffers.
//!
//! Requests have no body (a `Content-Length` above zero or any `Transfer-Encoding` is a
//! bad request), so a request is exactly its head and pipelined requests follow each
//! other directly: drain `consumed` bytes and parse again. HTTP/1.0 requests are answered
//! and then the connection is closed; HTTP/1.1 ones keep it open unless the client sent
//! `Connection: close`. After [`Parse::Bad`] the stream cannot be resynchronised: send
//! [`bad_request`] (which says `Connection: close`) and close once it is written.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest request head accepted: request line, headers and the blank line, plus any
/// blank lines before the request line.
pub const MAX_HEAD: usize = 8 * 1024;

pub const METRICS_PATH: &str = "/metrics";

/// Content type of the Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// What the bytes received so far hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// No complete request head yet, and nothing wrong so far: read more.
    Incomplete,
    /// A complete request. `path` is the request target without its query string;
    /// `consumed` is the length of the head, where the next pipelined request starts.
    Request {
        method: &'a str,
        path: &'a str,
        keep_alive: bool,
        consumed: usize,
    },
    /// Not a request we accept: answer [`bad_request`] and close.
    Bad(&'static str),
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes allowed in a request line: visible ASCII and space.
fn is_request_line_byte(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// Bytes allowed in a header field: tab, visible ASCII, space, and obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The next line of `buf[*pos..limit]` without its LF or CRLF, advancing `pos`; None when
/// there is no LF before `limit`.
fn next_line<'a>(buf: &'a [u8], pos: &mut usize, limit: usize) -> Option<&'a [u8]> {
    let rest = buf.get(*pos..limit)?;
    let n = rest.iter().position(|&b| b == b'\n')?;
    *pos += n + 1;
    let line = &rest[..n];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// No LF yet: Incomplete, unless the head is already too long or the partial line
/// already cannot become valid (binary garbage, a TLS handshake) — no point waiting for
/// 8 KiB of it.
fn incomplete(buf: &[u8], partial: &[u8], request_line: bool) -> Parse<'static> {
    if buf.len() >= MAX_HEAD {
        return Parse::Bad("request head larger than 8 KiB");
    }
    let body = partial.strip_suffix(b"\r").unwrap_or(partial);
    let ok = if request_line {
        body.first().is_none_or(|&b| is_tchar(b)) && body.iter().all(|&b| is_request_line_byte(b))
    } else {
        body.iter().all(|&b| is_field_byte(b))
    };
    if ok {
        Parse::Incomplete
    } else if request_line {
        Parse::Bad("malformed request line")
    } else {
        Parse::Bad("invalid header field")
    }
}

/// The path of a request target: origin-form (`/p?q`), absolute-form
/// (`http://host/p?q`) or asterisk-form (`*`), without the query.
fn target_path(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') || target == "*" {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return None;
        }
        match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => &rest[i..],
            _ => "/",
        }
    };
    Some(path.split_once('?').map_or(path, |(p, _)| p))
}

/// Parses the request head at the start of `buf`; see [`Parse`]. Accepts
/// `METHOD SP target SP HTTP/1.x` and headers within [`MAX_HEAD`] bytes, lines ended by
/// CRLF or a bare LF; HTTP/1.1 requests need exactly one `Host`.
pub fn parse_request(buf: &[u8]) -> Parse<'_> {
    let limit = buf.len().min(MAX_HEAD);
    let mut pos = 0;
    // Blank lines before a request line are to be ignored (RFC 9112, 2.2).
    let request_line = loop {
        let start = pos;
        match next_line(buf, &mut pos, limit) {
            Some([]) => continue,
            Some(line) => break line,
            None => return incomplete(buf, buf.get(start..).unwrap_or_default(), true),
        }
    };

    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::Bad("malformed request line");
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Parse::Bad("invalid method");
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Parse::Bad("invalid request target");
    }
    let minor = match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit() => d - b'0',
        [b'H', b'T', b'T', b'P', b'/', ..] => return Parse::Bad("unsupported HTTP version"),
        _ => return Parse::Bad("malformed request line"),
    };

    let mut close = false;
    let mut hosts = 0;
    loop {
        let start = pos;
        let Some(line) = next_line(buf, &mut pos, limit) else {
            return incomplete(buf, buf.get(start..).unwrap_or_default(), false);
        };
        let Some(&first) = line.first() else {
            break;
        };
        if first == b' ' || first == b'\t' {
            return Parse::Bad("obsolete header line folding");
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parse::Bad("header line without a colon");
        };
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Parse::Bad("invalid header name");
        }
        if !value.iter().all(|&b| is_field_byte(b)) {
            return Parse::Bad("invalid header value");
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Parse::Bad("invalid Content-Length");
            }
            if value.iter().any(|&b| b != b'0') {
                return Parse::Bad("request bodies are not accepted");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Parse::Bad("request bodies are not accepted");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }
    if minor >= 1 && hosts != 1 {
        return Parse::Bad("an HTTP/1.1 request needs exactly one Host header");
    }

    // Both were checked to be ASCII above.
    let (Ok(method), Ok(target)) = (std::str::from_utf8(method), std::str::from_utf8(target))
    else {
        return Parse::Bad("malformed request line");
    };
    let Some(path) = target_path(target) else {
        return Parse::Bad("invalid request target");
    };
    Parse::Request {
        method,
        path,
        keep_alive: minor >= 1 && !close,
        consumed: pos,
    }
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// GET or HEAD on `/metrics`.
    Metrics,
    /// Any other path: 404.
    NotFound,
    /// Another method on `/metrics`: 405 with `Allow: GET, HEAD`.
    MethodNotAllowed,
}

/// Routes a parsed request (`path` already without its query string). Methods are
/// case-sensitive, as HTTP says.
pub fn route(method: &str, path: &str) -> Route {
    if path != METRICS_PATH {
        Route::NotFound
    } else if method == "GET" || method == "HEAD" {
        Route::Metrics
    } else {
        Route::MethodNotAllowed
    }
}

/// The standard reason phrase of the statuses this module uses (and a few more); empty
/// for others, which HTTP allows.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// An `IMF-fixdate` for the `Date` header, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Times before 1970 are written as 1970.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = secs / 86_400;
    let in_day = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), in u64 since
    // the date is never before the epoch.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// A response to encode. `Content-Length` and, when not keep-alive,
/// `Connection: close` are added by [`encode`](Response::encode).
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    pub status: u16,
    /// Omitted when empty.
    pub content_type: &'a str,
    /// Further header fields, e.g. `("Allow", "GET, HEAD")`.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// Answering HEAD: the same head (Content-Length of `body` included), no body.
    pub head_only: bool,
    pub keep_alive: bool,
    /// The `Date` header; None leaves it out (tests, or a caller without a clock).
    pub date: Option<SystemTime>,
}

impl<'a> Response<'a> {
    /// Status, content type and body; no extra headers, a full response, keep-alive,
    /// dated now.
    pub fn new(status: u16, content_type: &'a str, body: &'a [u8]) -> Self {
        Response {
            status,
            content_type,
            headers: &[],
            body,
            head_only: false,
            keep_alive: true,
            date: Some(SystemTime::now()),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the response to `out`. Header names or values containing CR or LF are a
    /// bug (they would split the head): debug builds panic, release builds drop them.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // 1xx and 204 have neither body nor Content-Length; 304 has no body.
        let no_length = self.status < 200 || self.status == 204;
        let no_body = no_length || self.status == 304 || self.head_only;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n",
            self.status,
            reason_phrase(self.status)
        );
        let clean = |s: &str| !s.contains(['\r', '\n']);
        let mut line = |name: &str, value: &str| {
            debug_assert!(clean(name) && clean(value), "CR or LF in header {name:?}");
            if clean(name) && clean(value) {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        };
        if let Some(date) = self.date {
            line("Date", &http_date(date));
        }
        if !self.content_type.is_empty() {
            line("Content-Type", self.content_type);
        }
        for &(name, value) in self.headers {
            line(name, value);
        }
        if !no_length {
            line("Content-Length", &self.body.len().to_string());
        }
        if !self.keep_alive {
            line("Connection", "close");
        }
        out.extend_from_slice(b"\r\n");
        if !no_body {
            out.extend_from_slice(self.body);
        }
    }
}

/// A dated response with `Content-Length`, and `Connection: close` when not
/// `keep_alive`.
pub fn response(status: u16, content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    Response {
        keep_alive,
        ..Response::new(status, content_type, body)
    }
    .encode()
}

/// The 400 answer to [`Parse::Bad`], always with `Connection: close`.
pub fn bad_request(reason: &str) -> Vec<u8> {
    let body = format!("bad request: {reason}\n");
    response(400, TEXT_CONTENT_TYPE, body.as_bytes(), false)
}

/// The whole answer to a parsed request: routes it, calls `render` for the metrics text
/// only when the route is [`Route::Metrics`] (HEAD too, for its Content-Length), and
/// leaves the body out for HEAD.
pub fn respond<B: AsRef<[u8]>>(
    method: &str,
    path: &str,
    keep_alive: bool,
    render: impl FnOnce() -> B,
) -> Vec<u8> {
    let rendered;
    let (status, content_type, headers, body): (u16, &str, &[(&str, &str)], &[u8]) =
        match route(method, path) {
            Route::Metrics => {
                rendered = render();
                (200, METRICS_CONTENT_TYPE, &[], rendered.as_ref())
            }
            Route::NotFound => (404, TEXT_CONTENT_TYPE, &[], b"not found\n"),
            Route::MethodNotAllowed => (
                405,
                TEXT_CONTENT_TYPE,
                &[("Allow", "GET, HEAD")],
                b"method not allowed\n",
            ),
        };
    Response {
        status,
        content_type,
        headers,
        body,
        head_only: method == "HEAD",
        keep_alive,
        date: Some(SystemTime::now()),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: localhost:9127\r\n\
        User-Agent: Prometheus/2.45.0\r\nAccept: text/plain;version=0.0.4;q=1\r\n\r\n";

    fn request(buf: &[u8]) -> (&str, &str, bool, usize) {
        match parse_request(buf) {
            Parse::Request {
                method,
                path,
                keep_alive,
                consumed,
            } => (method, path, keep_alive, consumed),
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn bad(buf: &[u8], why: &str) {
        match parse_request(buf) {
            Parse::Bad(reason) => assert!(reason.contains(why), "{reason:?} lacks {why:?}"),
            other => panic!(
                "{other:?} for {:?}, expected Bad({why:?})",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    /// The response without its Date line, which is checked for shape.
    fn undated(resp: &[u8]) -> String {
        let text = String::from_utf8(resp.to_vec()).expect("responses are UTF-8 here");
        let start = text.find("\r\nDate: ").expect("a Date header") + 2;
        let end = start + text[start..].find("\r\n").expect("end of Date") + 2;
        let date = &text[start + 6..end - 2];
        assert_eq!(date.len(), 29, "{date:?}");
        assert!(date.ends_with(" GMT"), "{date:?}");
        format!("{}{}", &text[..start], &text[end..])
    }

    #[test]
    fn complete_request() {
        assert_eq!(request(GET), ("GET", "/metrics", true, GET.len()));
        let head = b"HEAD /metrics?name[]=x&y HTTP/1.1\r\nhost: a\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(request(head), ("HEAD", "/metrics", true, head.len()));
    }

    #[test]
    fn keep_alive_rules() {
        let r = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(request(r), ("GET", "/", false, r.len()));
        let r = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        assert!(!request(r).2, "HTTP/1.0 always closes");
        let r = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n";
        assert!(!request(r).2);
        let r = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n";
        assert!(request(r).2);
        let r = b"GET / HTTP/1.9\r\nHost: a\r\n\r\n";
        assert!(request(r).2, "a later 1.x is treated as 1.1");
    }

    #[test]
    fn targets() {
        let path = |t: &str| {
            let r = format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\n");
            match parse_request(r.as_bytes()) {
                Parse::Request { path, .. } => Ok(path.to_string()),
                Parse::Bad(reason) => Err(reason),
                Parse::Incomplete => Err("incomplete"),
            }
        };
        assert_eq!(path("/metrics?"), Ok("/metrics".into()));
        assert_eq!(path("/a/b?c=d?e"), Ok("/a/b".into()));
        assert_eq!(path("http://h:9127/metrics?x=1"), Ok("/metrics".into()));
        assert_eq!(path("https://h"), Ok("/".into()));
        assert_eq!(path("http://h?x"), Ok("/".into()));
        assert_eq!(path("*"), Ok("*".into()));
        assert_eq!(path("metrics"), Err("invalid request target"));
        assert_eq!(path("1http://h/"), Err("invalid request target"));
        assert_eq!(path("/m\u{e9}"), Err("invalid request target"));
    }

    #[test]
    fn partial_requests_are_incomplete() {
        for n in 0..GET.len() {
            assert_eq!(parse_request(&GET[..n]), Parse::Incomplete, "prefix {n}");
        }
        let lf = b"GET /metrics HTTP/1.0\n\n";
        for n in 0..lf.len() {
            assert_eq!(parse_request(&lf[..n]), Parse::Incomplete, "prefix {n}");
        }
        assert_eq!(request(lf), ("GET", "/metrics", false, lf.len()));
    }

    #[test]
    fn pipelined_requests() {
        let mut buf = GET.to_vec();
        buf.extend_from_slice(b"\r\nHEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
        buf.extend_from_slice(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET");
        let (_, _, _, first) = request(&buf);
        assert_eq!(first, GET.len());
        // The blank line between requests is skipped and counted.
        let rest = &buf[first..];
        let (method, path, keep_alive, second) = request(rest);
        assert_eq!((method, path, keep_alive), ("HEAD", "/x", true));
        assert_eq!(second, 2 + "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n".len());
        let rest = &rest[second..];
        let (method, path, keep_alive, third) = request(rest);
        assert_eq!((method, path, keep_alive), ("GET", "/metrics", false));
        assert_eq!(parse_request(&rest[third..]), Parse::Incomplete);
    }

    #[test]
    fn bad_request_lines() {
        bad(b"GET /metrics HTTP/2.0\r\n\r\n", "version");
        bad(b"GET /metrics HTTP/1.10\r\n\r\n", "version");
        bad(b"GET /metrics HTTP/1\r\n\r\n", "version");
        bad(b"GET /metrics http/1.1\r\n\r\n", "malformed");
        bad(b"GET /metrics\r\n\r\n", "malformed");
        bad(b"GET  /metrics HTTP/1.1\r\n\r\n", "malformed");
        bad(b"GET /metrics HTTP/1.1 x\r\n\r\n", "malformed");
        bad(b"G(T /metrics HTTP/1.1\r\n\r\n", "invalid method");
        bad(b"GET /a\x01b HTTP/1.1\r\n", "invalid request target");
        bad(b"GET /a\x01b", "malformed");
        bad(
            b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",
            "invalid request target",
        );
        bad(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "version");
    }

    #[test]
    fn garbage_is_refused_without_waiting() {
        // A TLS ClientHello, binary junk, a line starting with a space.
        bad(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "malformed");
        bad(b"\x00\x00\x00\x08\x04\xd2\x16\x2f", "malformed");
        bad(b" GET", "malformed");
        bad(
            b"GET /metrics HTTP/1.1\r\nHost: a\x00",
            "invalid header field",
        );
    }

    #[test]
    fn bad_headers() {
        let with =
            |h: &str| format!("GET /metrics HTTP/1.1\r\nHost: a\r\n{h}\r\n\r\n").into_bytes();
        bad(&with("Content-Length: 5"), "bodies");
        bad(&with("Content-Length: 00010"), "bodies");
        bad(&with("Content-Length: -1"), "Content-Length");
        bad(&with("Content-Length:"), "Content-Length");
        bad(&with("Transfer-Encoding: chunked"), "bodies");
        bad(&with("X-A: 1\r\n folded"), "folding");
        bad(&with("NoColon"), "colon");
        bad(&with("Bad Name: x"), "header name");
        bad(&with("Host : x"), "header name");
        bad(&with(": x"), "header name");
        bad(&with("X: a\x7fb"), "header value");
        bad(&with("Host: b"), "Host");
        bad(b"GET /metrics HTTP/1.1\r\n\r\n", "Host");
        assert!(request(&with("Content-Length: 000")).2);
        assert!(request(&with("X-Empty:")).2);
        assert!(request(&with("X-Utf8: caf\u{e9}\t ")).2);
    }

    #[test]
    fn head_size_limit() {
        let head = |total: usize| {
            let fixed = "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n".len();
            format!(
                "GET /metrics HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
                "p".repeat(total - fixed)
            )
            .into_bytes()
        };
        let exact = head(MAX_HEAD);
        assert_eq!(exact.len(), MAX_HEAD);
        assert_eq!(request(&exact).3, MAX_HEAD);
        bad(&head(MAX_HEAD + 1), "larger than 8 KiB");
        let unfinished = head(MAX_HEAD + 100);
        assert_eq!(
            parse_request(&unfinished[..MAX_HEAD - 1]),
            Parse::Incomplete
        );
        bad(&unfinished[..MAX_HEAD], "larger than 8 KiB");
        bad(&vec![b'\n'; MAX_HEAD], "larger than 8 KiB");
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/metrics"), Route::Metrics);
        assert_eq!(route("HEAD", "/metrics"), Route::Metrics);
        assert_eq!(route("POST", "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route("get", "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route("GET", "/"), Route::NotFound);
        assert_eq!(route("GET", "/metrics/"), Route::NotFound);
        assert_eq!(route("DELETE", "/other"), Route::NotFound);
    }

    #[test]
    fn encoded_responses() {
        let ok = Response {
            date: None,
            ..Response::new(200, METRICS_CONTENT_TYPE, b"a 1\n")
        };
        assert_eq!(
            ok.encode(),
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
              Content-Length: 4\r\n\r\na 1\n"
        );
        let closing = Response {
            keep_alive: false,
            head_only: true,
            headers: &[("Allow", "GET, HEAD")],
            date: None,
            ..Response::new(405, "", b"xyz")
        };
        assert_eq!(
            closing.encode(),
            b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n\
              Content-Length: 3\r\nConnection: close\r\n\r\n"
        );
        let none = Response {
            date: None,
            ..Response::new(204, "", b"ignored")
        };
        assert_eq!(none.encode(), b"HTTP/1.1 204 No Content\r\n\r\n");
        let odd = Response {
            date: None,
            ..Response::new(299, "", b"")
        };
        assert_eq!(odd.encode(), b"HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn convenience_responses() {
        assert_eq!(
            undated(&response(200, "text/plain", b"hi", true)),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert_eq!(
            undated(&bad_request("malformed request line")),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 36\r\nConnection: close\r\n\r\n\
             bad request: malformed request line\n"
        );
    }

    #[test]
    fn respond_routes_and_renders_only_for_metrics() {
        let get = respond("GET", "/metrics", true, || "m 1\n");
        assert_eq!(
            undated(&get),
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {METRICS_CONTENT_TYPE}\r\n\
                 Content-Length: 4\r\n\r\nm 1\n"
            )
        );
        let head = respond("HEAD", "/metrics", false, || String::from("m 1\n"));
        assert_eq!(
            undated(&head),
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {METRICS_CONTENT_TYPE}\r\n\
                 Content-Length: 4\r\nConnection: close\r\n\r\n"
            )
        );
        let never = || -> Vec<u8> { panic!("rendered for a non-metrics route") };
        assert_eq!(
            undated(&respond("GET", "/", true, never)),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 10\r\n\r\nnot found\n"
        );
        assert_eq!(
            undated(&respond("HEAD", "/x", true, never)),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 10\r\n\r\n"
        );
        assert_eq!(
            undated(&respond("POST", "/metrics", false, never)),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Allow: GET, HEAD\r\nContent-Length: 19\r\nConnection: close\r\n\r\n\
             method not allowed\n"
        );
    }

    #[test]
    fn dates() {
        let at = |s: u64| http_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(at(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(5)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
