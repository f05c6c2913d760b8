//! Line numbers of keys, for error messages.
//!
//! `toml::Table` keeps no spans, so the text is scanned once more after toml
//! accepted it: table headers set the current path, `key =` lines (dotted and
//! quoted keys included) and keys inside inline tables are recorded with their
//! line. A lookup falls back to the longest recorded prefix, so anything that
//! escapes the scan still points at its table or at the line that holds it.
//! The scanner only reads bytes through bounds-checked accessors and always
//! moves forward, so no input can make it panic or loop.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct KeyLines {
    first_line: HashMap<Vec<String>, usize>,
}

impl KeyLines {
    pub fn scan(text: &str) -> KeyLines {
        let mut scanner = Scanner {
            bytes: text.as_bytes(),
            pos: 0,
            line: 1,
            table: Vec::new(),
            found: KeyLines::default(),
        };
        scanner.run();
        scanner.found
    }

    /// The 1-based line where `path` (e.g. `["databases", "app", "port"]`) is
    /// set, or else where its nearest recorded parent is.
    pub fn line_of<S: AsRef<str>>(&self, path: &[S]) -> Option<usize> {
        (1..=path.len()).rev().find_map(|len| {
            let prefix: Vec<String> = path[..len].iter().map(|k| k.as_ref().to_string()).collect();
            self.first_line.get(&prefix).copied()
        })
    }

    fn record(&mut self, path: &[String], from_len: usize, line: usize) {
        for len in from_len.max(1)..=path.len() {
            self.first_line.entry(path[..len].to_vec()).or_insert(line);
        }
    }
}

enum Frame {
    /// `path` is None for inline tables that have no name of their own (in a list).
    InlineTable {
        path: Option<Vec<String>>,
        current_key: Option<Vec<String>>,
    },
    Array,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    table: Vec<String>,
    found: KeyLines,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos.saturating_add(offset)).copied()
    }

    fn starts_with(&self, pattern: &[u8]) -> bool {
        self.bytes
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(pattern))
    }

    /// Moves over one byte, counting lines.
    fn advance(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.advance();
        }
    }

    fn skip_to_line_end(&mut self) {
        while !matches!(self.peek(), None | Some(b'\n')) {
            self.advance();
        }
    }

    fn run(&mut self) {
        if self.starts_with("\u{feff}".as_bytes()) {
            self.pos += 3;
        }
        loop {
            let before = self.pos;
            match self.peek() {
                None => break,
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.advance(),
                Some(b'#') => self.skip_to_line_end(),
                Some(b'[') => self.header(),
                Some(_) => self.assignment(),
            }
            if self.pos == before {
                self.skip_to_line_end();
                if self.pos == before {
                    self.advance();
                }
            }
        }
    }

    fn header(&mut self) {
        let line = self.line;
        self.advance();
        let array_of_tables = self.eat(b'[');
        let path = self.key_path();
        self.skip_spaces();
        let closed = self.eat(b']') && (!array_of_tables || self.eat(b']'));
        self.skip_to_line_end();
        match path {
            Some(path) if closed => {
                self.found.record(&path, 1, line);
                self.table = path;
            }
            _ => self.table.clear(),
        }
    }

    fn assignment(&mut self) {
        let line = self.line;
        let Some(keys) = self.key_path() else {
            self.skip_to_line_end();
            return;
        };
        self.skip_spaces();
        if !self.eat(b'=') {
            self.skip_to_line_end();
            return;
        }
        let mut path = self.table.clone();
        path.extend(keys);
        self.found.record(&path, self.table.len() + 1, line);
        self.skip_value(path);
    }

    /// `a`, `a.b`, `"quoted key".'literal'`, with spaces around the dots.
    fn key_path(&mut self) -> Option<Vec<String>> {
        let mut keys = Vec::new();
        loop {
            self.skip_spaces();
            let key = match self.peek()? {
                b'"' => self.basic_string_key()?,
                b'\'' => self.literal_string_key()?,
                byte if is_bare_key_byte(byte) => self.bare_key(),
                _ => return None,
            };
            keys.push(key);
            self.skip_spaces();
            if !self.eat(b'.') {
                return Some(keys);
            }
        }
    }

    fn bare_key(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_bare_key_byte) {
            self.advance();
        }
        String::from_utf8_lossy(self.bytes.get(start..self.pos).unwrap_or_default()).into_owned()
    }

    fn literal_string_key(&mut self) -> Option<String> {
        self.advance();
        let start = self.pos;
        loop {
            match self.peek()? {
                b'\'' => break,
                b'\n' => return None,
                _ => self.advance(),
            }
        }
        let key = String::from_utf8_lossy(self.bytes.get(start..self.pos)?).into_owned();
        self.advance();
        Some(key)
    }

    fn basic_string_key(&mut self) -> Option<String> {
        self.advance();
        let mut key = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.advance();
                    return Some(String::from_utf8_lossy(&key).into_owned());
                }
                b'\n' => return None,
                b'\\' => {
                    self.advance();
                    let escape = self.peek()?;
                    self.advance();
                    match escape {
                        b'b' => key.push(0x08),
                        b't' => key.push(b'\t'),
                        b'n' => key.push(b'\n'),
                        b'f' => key.push(0x0c),
                        b'r' => key.push(b'\r'),
                        b'e' => key.push(0x1b),
                        b'u' => self.unicode_escape(4, &mut key)?,
                        b'U' => self.unicode_escape(8, &mut key)?,
                        other => key.push(other),
                    }
                }
                byte => {
                    key.push(byte);
                    self.advance();
                }
            }
        }
    }

    fn unicode_escape(&mut self, digits: usize, out: &mut Vec<u8>) -> Option<()> {
        let hex = self.bytes.get(self.pos..self.pos.checked_add(digits)?)?;
        let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        let decoded = char::from_u32(code)?;
        self.pos += digits;
        let mut buffer = [0; 4];
        out.extend_from_slice(decoded.encode_utf8(&mut buffer).as_bytes());
        Some(())
    }

    /// Moves past the value of `path`, which may span lines (lists,
    /// multi-line strings), recording the keys of inline tables on the way.
    fn skip_value(&mut self, path: Vec<String>) {
        let mut stack: Vec<Frame> = Vec::new();
        let mut expect_key = false;
        loop {
            if expect_key {
                expect_key = false;
                // TOML 1.0 forbids newlines here but 1.1 allows them.
                while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                    self.advance();
                }
                self.inline_table_key(&mut stack);
                continue;
            }
            match self.peek() {
                None => return,
                Some(b'\n') if stack.is_empty() => return,
                Some(b'#') => self.skip_to_line_end(),
                Some(b'"' | b'\'') => self.skip_string(),
                Some(b'{') => {
                    self.advance();
                    let child = match stack.last() {
                        None => Some(path.clone()),
                        Some(Frame::InlineTable {
                            path: Some(parent),
                            current_key: Some(key),
                        }) => Some([parent.as_slice(), key.as_slice()].concat()),
                        Some(_) => None,
                    };
                    stack.push(Frame::InlineTable {
                        path: child,
                        current_key: None,
                    });
                    expect_key = true;
                }
                Some(b'[') => {
                    self.advance();
                    stack.push(Frame::Array);
                }
                Some(b'}' | b']') => {
                    self.advance();
                    stack.pop();
                }
                Some(b',') => {
                    self.advance();
                    expect_key = matches!(stack.last(), Some(Frame::InlineTable { .. }));
                }
                Some(_) => self.advance(),
            }
        }
    }

    fn inline_table_key(&mut self, stack: &mut [Frame]) {
        let Some(Frame::InlineTable {
            path: Some(table_path),
            current_key,
        }) = stack.last_mut()
        else {
            return;
        };
        if matches!(self.peek(), None | Some(b'}')) {
            return;
        }
        let line = self.line;
        if let Some(keys) = self.key_path() {
            let full = [table_path.as_slice(), keys.as_slice()].concat();
            self.found.record(&full, table_path.len() + 1, line);
            *current_key = Some(keys);
        }
    }

    fn skip_string(&mut self) {
        let Some(quote) = self.peek() else { return };
        let escapes = quote == b'"';
        let multi_line = self.starts_with(&[quote, quote, quote]);
        let quote_len = if multi_line { 3 } else { 1 };
        self.pos += quote_len;
        loop {
            match self.peek() {
                None => return,
                Some(b'\n') if !multi_line => return,
                Some(b'\\') if escapes => {
                    self.advance();
                    if self.peek().is_some() {
                        self.advance();
                    }
                }
                Some(byte) if byte == quote => {
                    if !multi_line {
                        self.advance();
                        return;
                    }
                    if self.starts_with(&[quote, quote, quote]) {
                        self.pos += 3;
                        // Up to two more quotes belong to the content: """a""""
                        for _ in 0..2 {
                            if self.peek_at(0) == Some(quote) {
                                self.advance();
                            }
                        }
                        return;
                    }
                    self.advance();
                }
                Some(_) => self.advance(),
            }
        }
    }
}

fn is_bare_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, path: &[&str]) -> Option<usize> {
        KeyLines::scan(text).line_of(path)
    }

    #[test]
    fn finds_keys_under_their_headers() {
        let text = "# comment\n[pooler]\nlisten_port = 1\n\n[databases.app]\nport = 2\n[databases.app.auth_query]\n  query = 'x'\n[users.\"weird name\"]\npassword = \"p\"\n";
        assert_eq!(line(text, &["pooler"]), Some(2));
        assert_eq!(line(text, &["pooler", "listen_port"]), Some(3));
        assert_eq!(line(text, &["databases", "app", "port"]), Some(6));
        assert_eq!(
            line(text, &["databases", "app", "auth_query", "query"]),
            Some(8)
        );
        assert_eq!(line(text, &["users", "weird name", "password"]), Some(10));
        assert_eq!(line(text, &["users", "weird name"]), Some(9));
    }

    #[test]
    fn falls_back_to_the_nearest_parent() {
        let text = "[pooler]\nx = 1\n[databases]\napp = { host = \"h\", port = 1 }\n";
        assert_eq!(line(text, &["pooler", "missing"]), Some(1));
        assert_eq!(line(text, &["databases", "app", "nope"]), Some(4));
        assert_eq!(line(text, &["nowhere"]), None);
        assert_eq!(line(text, &[] as &[&str]), None);
    }

    #[test]
    fn finds_dotted_quoted_and_inline_keys() {
        let text = "[databases]\n\"my db\" . port = 5\napp = { host = \"h\",\n  auth_query = { query = \"q\" } }\n[users]\nbob = {password = 'a=b'}\n'x y'.pool_size = 3\n";
        assert_eq!(line(text, &["databases", "my db", "port"]), Some(2));
        assert_eq!(line(text, &["databases", "app", "host"]), Some(3));
        assert_eq!(
            line(text, &["databases", "app", "auth_query", "query"]),
            Some(4)
        );
        assert_eq!(line(text, &["users", "bob", "password"]), Some(6));
        assert_eq!(line(text, &["users", "x y", "pool_size"]), Some(7));
    }

    #[test]
    fn multi_line_values_do_not_look_like_keys() {
        let text = concat!(
            "[pooler]\n",
            "server_reset_query = \"\"\"\n",
            "[users.fake]\n",
            "log_level = 1\"\"\"\n",
            "listen_addr = [\n",
            "  \"a\", # [tls]\n",
            "  'b',\n",
            "]\n",
            "hba_file = '''\n",
            "x = 1'''''\n",
            "log_level = \"info\" # trailing = comment\n",
            "[users]\n",
            "\"esc\\\"aped\\u0041\" = {}\n",
        );
        assert_eq!(line(text, &["pooler", "log_level"]), Some(11));
        assert_eq!(line(text, &["users", "fake"]), Some(12));
        assert_eq!(line(text, &["pooler", "x"]), Some(1));
        assert_eq!(line(text, &["users", "esc\"apedA"]), Some(13));
    }

    #[test]
    fn never_panics_on_broken_text() {
        for text in [
            "[",
            "[a",
            "[[a]",
            "a",
            "a =",
            "a = \"",
            "a = '''",
            "\"",
            "\\",
            "a = {",
            "a = [",
            "\"\\u12",
            "\"\\U0011FFFF\" = 1",
            "[\"\\",
            "a = { b = { c",
            "\u{feff}",
            "\u{feff}[x]\ny=1",
            "é = 1",
            "[é]",
            "a = \"\"\"\\",
        ] {
            let _ = KeyLines::scan(text).line_of(&["a", "b"]);
        }
        assert_eq!(line("\u{feff}[x]\ny=1", &["x", "y"]), Some(2));
    }
}
