//! A PostgreSQL tokenizer that only tells tokens apart well enough to find keywords and
//! statement boundaries, without allocating: every token is a `&str` slice of the input.
//!
//! It follows the server's `scan.l` where it matters for hiding text: what is inside a
//! quote, a dollar quote or a comment. Everything else (operators, numbers) is lexed
//! loosely, because a keyword can never hide in it. Tokens always start and end on
//! ASCII bytes or at the end of the input, so slicing never splits a UTF-8 character.

/// What kind of token a [`Token`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword (may contain `$`, as in PostgreSQL).
    Word,
    /// A `"quoted identifier"` or `U&"identifier"`.
    QuotedIdent,
    /// A `'string'`, `E'string'`, `U&'string'`, `B'bits'` or `X'hex'`, including the
    /// segments PostgreSQL joins to it across a newline.
    String,
    /// A `$$dollar quoted$$` or `$tag$dollar quoted$tag$` string.
    DollarString,
    /// A numeric literal (loosely).
    Number,
    /// A positional parameter such as `$1`.
    Param,
    /// Any other single byte: operators, `(`, `)`, `,`, `;`, `.`...
    Punct,
}

/// One token: its kind, its text and where it starts in the lexer's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: TokenKind,
    pub text: &'a str,
    /// Byte offset of the token in the lexer's input.
    pub start: usize,
    /// False for a quote, quoted identifier or dollar quote that runs to the end of input.
    pub terminated: bool,
}

impl Token<'_> {
    /// An unquoted word equal to `kw`, ignoring ASCII case.
    pub fn is_word(&self, kw: &str) -> bool {
        self.kind == TokenKind::Word && self.text.eq_ignore_ascii_case(kw)
    }

    /// The single byte punctuation `c`.
    pub fn is_punct(&self, c: u8) -> bool {
        self.kind == TokenKind::Punct && self.text.as_bytes() == [c]
    }

    /// Byte offset just past the token.
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

/// Server settings that change how SQL text is tokenized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LexOptions {
    /// The server's `standard_conforming_strings` (on by default since PostgreSQL 9.1).
    /// When off, backslash escapes apply in plain `'...'` strings too.
    pub standard_conforming_strings: bool,
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions {
            standard_conforming_strings: true,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StrMode {
    /// `''` is a quote, backslash is an ordinary character.
    Standard,
    /// `''` and `\'` are quotes (`E'...'`, or any string without standard_conforming_strings).
    Escape,
    /// `B'...'` / `X'...'`: no escapes at all; `''` ends the string and starts another.
    Bits,
}

/// An iterator over the tokens of SQL text, skipping whitespace and comments.
#[derive(Clone, Debug)]
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    opts: LexOptions,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn is_dolq_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

impl<'a> Lexer<'a> {
    /// A lexer with default options (standard_conforming_strings on).
    pub fn new(src: &'a str) -> Self {
        Self::with_options(src, LexOptions::default())
    }

    pub fn with_options(src: &'a str, opts: LexOptions) -> Self {
        Lexer { src, pos: 0, opts }
    }

    /// Byte offset just past the last token returned (or the start).
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The next token, without consuming it.
    pub fn peek(&self) -> Option<Token<'a>> {
        self.clone().next()
    }

    /// Consumes the next token if it is the word `kw`.
    pub fn eat_word(&mut self, kw: &str) -> bool {
        self.eat_if(|t| t.is_word(kw))
    }

    /// Consumes the next token if it is the punctuation `c`.
    pub fn eat_punct(&mut self, c: u8) -> bool {
        self.eat_if(|t| t.is_punct(c))
    }

    fn eat_if(&mut self, pred: impl Fn(&Token<'a>) -> bool) -> bool {
        let mut ahead = self.clone();
        match ahead.next() {
            Some(t) if pred(&t) => {
                *self = ahead;
                true
            }
            _ => false,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.src.as_bytes().get(i).copied().unwrap_or(0)
    }

    fn len(&self) -> usize {
        self.src.len()
    }

    fn make(&mut self, kind: TokenKind, start: usize, end: usize, terminated: bool) -> Token<'a> {
        let end = end.min(self.len());
        self.pos = end;
        Token {
            kind,
            text: self.src.get(start..end).unwrap_or(""),
            start,
            terminated,
        }
    }

    /// Skips whitespace, `--` comments and nested `/* */` comments.
    fn skip_trivia(&mut self) {
        let len = self.len();
        loop {
            match self.at(self.pos) {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c if self.pos < len => self.pos += 1,
                b'-' if self.at(self.pos + 1) == b'-' => {
                    self.pos += 2;
                    while self.pos < len && !matches!(self.at(self.pos), b'\n' | b'\r') {
                        self.pos += 1;
                    }
                }
                b'/' if self.at(self.pos + 1) == b'*' => {
                    // Nested, as in PostgreSQL (not as in the SQL standard's C-like rule).
                    let mut depth = 0usize;
                    while self.pos < len {
                        if self.at(self.pos) == b'/' && self.at(self.pos + 1) == b'*' {
                            depth += 1;
                            self.pos += 2;
                        } else if self.at(self.pos) == b'*' && self.at(self.pos + 1) == b'/' {
                            depth -= 1;
                            self.pos += 2;
                            if depth == 0 {
                                break;
                            }
                        } else {
                            self.pos += 1;
                        }
                    }
                    self.pos = self.pos.min(len);
                }
                _ => return,
            }
        }
    }

    /// A string whose opening quote is at `quote`; the token starts at `start` (prefix).
    fn string(&mut self, start: usize, quote: usize, mode: StrMode) -> Token<'a> {
        let len = self.len();
        let mut i = quote + 1;
        while i < len {
            match self.at(i) {
                b'\\' if mode == StrMode::Escape => i += 2,
                b'\'' => {
                    if mode != StrMode::Bits && self.at(i + 1) == b'\'' {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    match self.continuation(i) {
                        // The next segment continues in the same mode (an E'' string's
                        // continuation keeps its backslash escapes).
                        Some(q) => i = q + 1,
                        None => return self.make(TokenKind::String, start, i, true),
                    }
                }
                _ => i += 1,
            }
        }
        self.make(TokenKind::String, start, len, false)
    }

    /// PostgreSQL's `quotecontinue`: after a closing quote, whitespace containing a
    /// newline (with `--` comments allowed) followed by a quote continues the string.
    /// Returns the offset of that quote.
    fn continuation(&self, mut j: usize) -> Option<usize> {
        let mut newline = false;
        loop {
            match self.at(j) {
                b' ' | b'\t' | 0x0b | 0x0c if j < self.len() => j += 1,
                b'\n' | b'\r' => {
                    newline = true;
                    j += 1;
                }
                b'-' if self.at(j + 1) == b'-' => {
                    while j < self.len() && !matches!(self.at(j), b'\n' | b'\r') {
                        j += 1;
                    }
                    if j >= self.len() {
                        return None;
                    }
                }
                b'\'' if newline => return Some(j),
                _ => return None,
            }
        }
    }

    /// A quoted identifier whose opening `"` is at `quote`.
    fn quoted_ident(&mut self, start: usize, quote: usize) -> Token<'a> {
        let len = self.len();
        let mut i = quote + 1;
        while i < len {
            if self.at(i) == b'"' {
                if self.at(i + 1) == b'"' {
                    i += 2;
                    continue;
                }
                return self.make(TokenKind::QuotedIdent, start, i + 1, true);
            }
            i += 1;
        }
        self.make(TokenKind::QuotedIdent, start, len, false)
    }

    /// `$1`, `$tag$...$tag$`, or a lone `$`.
    fn dollar(&mut self, start: usize) -> Token<'a> {
        let mut i = start + 1;
        if self.at(i).is_ascii_digit() {
            while self.at(i).is_ascii_digit() {
                i += 1;
            }
            return self.make(TokenKind::Param, start, i, true);
        }
        // Tag: identifier characters, not starting with a digit, and no `$`.
        if is_ident_start(self.at(i)) {
            while is_dolq_cont(self.at(i)) {
                i += 1;
            }
        }
        if self.at(i) != b'$' {
            // PostgreSQL returns the `$` alone and lexes the rest again.
            return self.make(TokenKind::Punct, start, start + 1, true);
        }
        let body = i + 1;
        let delim = self.src.get(start..body).unwrap_or("$$");
        match self.src.get(body..).and_then(|rest| rest.find(delim)) {
            Some(off) => self.make(
                TokenKind::DollarString,
                start,
                body + off + delim.len(),
                true,
            ),
            None => self.make(TokenKind::DollarString, start, self.len(), false),
        }
    }

    /// A number, loosely: digits, `_` between digits, one `.`, an exponent. Letters
    /// after it start a new word (which swallows `$`, as the server's lexer does).
    fn number(&mut self, start: usize) -> Token<'a> {
        let mut i = start;
        let digits = |lx: &Self, mut i: usize| {
            while lx.at(i).is_ascii_digit() || (lx.at(i) == b'_' && lx.at(i + 1).is_ascii_digit()) {
                i += 1;
            }
            i
        };
        i = digits(self, i);
        if self.at(i) == b'.' && self.at(i + 1) != b'.' {
            i = digits(self, i + 1);
        }
        if matches!(self.at(i), b'e' | b'E') {
            let mut j = i + 1;
            if matches!(self.at(j), b'+' | b'-') {
                j += 1;
            }
            if self.at(j).is_ascii_digit() {
                i = digits(self, j);
            }
        }
        self.make(TokenKind::Number, start, i.max(start + 1), true)
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        self.skip_trivia();
        let start = self.pos;
        if start >= self.len() {
            return None;
        }
        let c = self.at(start);
        let n1 = self.at(start + 1);
        let tok = match c {
            b'\'' => {
                let mode = if self.opts.standard_conforming_strings {
                    StrMode::Standard
                } else {
                    StrMode::Escape
                };
                self.string(start, start, mode)
            }
            b'"' => self.quoted_ident(start, start),
            b'$' => self.dollar(start),
            b'0'..=b'9' => self.number(start),
            b'.' if n1.is_ascii_digit() => self.number(start),
            // One-letter prefixes win over the one-letter identifier (longest match).
            b'e' | b'E' if n1 == b'\'' => self.string(start, start + 1, StrMode::Escape),
            b'b' | b'B' | b'x' | b'X' if n1 == b'\'' => {
                self.string(start, start + 1, StrMode::Bits)
            }
            b'u' | b'U' if n1 == b'&' && self.at(start + 2) == b'\'' => {
                // U&'' is lexed like a standard string whatever the setting (the server
                // rejects it when standard_conforming_strings is off).
                self.string(start, start + 2, StrMode::Standard)
            }
            b'u' | b'U' if n1 == b'&' && self.at(start + 2) == b'"' => {
                self.quoted_ident(start, start + 2)
            }
            c if is_ident_start(c) => {
                let mut i = start + 1;
                while is_ident_cont(self.at(i)) {
                    i += 1;
                }
                self.make(TokenKind::Word, start, i, true)
            }
            _ => self.make(TokenKind::Punct, start, start + 1, true),
        };
        Some(tok)
    }
}

/// Whether a unit is a whole statement or one statement of a `BEGIN ATOMIC` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitKind {
    Statement,
    BodyStatement,
}

/// A non-empty statement (or body statement) as a byte range of the input, from its
/// first token to the end of its last token (the `;` excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    pub start: usize,
    pub end: usize,
    pub kind: UnitKind,
}

/// State of the `CREATE [OR REPLACE] FUNCTION|PROCEDURE` prefix detection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Start,
    Create,
    CreateOr,
    CreateOrReplace,
    Routine,
    Other,
}

struct Atomic {
    /// BEGIN ATOMIC / CASE nesting, ended by END.
    depth: u32,
    paren: i32,
    /// The previous token was `AS` or `.`, so a keyword now is only a label.
    label: bool,
    piece: Option<(usize, usize)>,
}

/// Calls `f` for every statement of `sql`, split on `;` outside quotes and comments.
///
/// A `;` inside the `BEGIN ATOMIC ... END` body of `CREATE [OR REPLACE]
/// FUNCTION|PROCEDURE` does not end the statement (psql's heuristic, made stricter:
/// only `BEGIN ATOMIC` opens a body, `CASE`/`END` nest at parenthesis depth 0 unless
/// they follow `AS` or `.`). Each `;`-separated statement inside such a body is also
/// reported, as [`UnitKind::BodyStatement`], before the enclosing statement: so every
/// text following any `;` is checked as a statement, and a wrong guess about where the
/// body ends can never hide a statement from the caller.
pub fn for_each_unit<E>(
    sql: &str,
    opts: LexOptions,
    mut f: impl FnMut(Unit) -> Result<(), E>,
) -> Result<(), E> {
    let mut stmt: Option<(usize, usize)> = None;
    let mut prefix = Prefix::Start;
    let mut paren = 0i32;
    let mut after_begin = false;
    let mut atomic: Option<Atomic> = None;
    for tok in Lexer::with_options(sql, opts) {
        if let Some(a) = atomic.as_mut() {
            if let Some(s) = stmt.as_mut() {
                s.1 = tok.end();
            }
            if tok.is_punct(b';') {
                if let Some((start, end)) = a.piece.take() {
                    f(Unit {
                        start,
                        end,
                        kind: UnitKind::BodyStatement,
                    })?;
                }
                a.label = false;
                continue;
            }
            if tok.is_punct(b'(') {
                a.paren += 1;
            } else if tok.is_punct(b')') {
                a.paren -= 1;
            }
            let keyword = a.paren == 0 && !a.label;
            if keyword && tok.is_word("END") {
                a.depth -= 1;
                if a.depth == 0 {
                    if let Some((start, end)) = a.piece.take() {
                        f(Unit {
                            start,
                            end,
                            kind: UnitKind::BodyStatement,
                        })?;
                    }
                    atomic = None;
                    continue;
                }
            } else if keyword && tok.is_word("CASE") {
                a.depth += 1;
            }
            a.label = tok.is_word("AS") || tok.is_punct(b'.');
            let piece = a.piece.get_or_insert((tok.start, tok.end()));
            piece.1 = tok.end();
            continue;
        }
        if tok.is_punct(b';') {
            if let Some((start, end)) = stmt.take() {
                f(Unit {
                    start,
                    end,
                    kind: UnitKind::Statement,
                })?;
            }
            prefix = Prefix::Start;
            paren = 0;
            after_begin = false;
            continue;
        }
        let s = stmt.get_or_insert((tok.start, tok.end()));
        s.1 = tok.end();
        prefix = match prefix {
            Prefix::Start if tok.is_word("CREATE") => Prefix::Create,
            Prefix::Create if tok.is_word("OR") => Prefix::CreateOr,
            Prefix::CreateOr if tok.is_word("REPLACE") => Prefix::CreateOrReplace,
            Prefix::Create | Prefix::CreateOrReplace
                if tok.is_word("FUNCTION") || tok.is_word("PROCEDURE") =>
            {
                Prefix::Routine
            }
            Prefix::Routine => Prefix::Routine,
            _ => Prefix::Other,
        };
        if tok.is_punct(b'(') {
            paren += 1;
        } else if tok.is_punct(b')') {
            paren -= 1;
        }
        if prefix == Prefix::Routine && paren == 0 {
            if after_begin && tok.is_word("ATOMIC") {
                atomic = Some(Atomic {
                    depth: 1,
                    paren: 0,
                    label: false,
                    piece: None,
                });
            }
            after_begin = tok.is_word("BEGIN");
        }
    }
    if let Some(a) = atomic.as_mut() {
        if let Some((start, end)) = a.piece.take() {
            f(Unit {
                start,
                end,
                kind: UnitKind::BodyStatement,
            })?;
        }
    }
    if let Some((start, end)) = stmt {
        f(Unit {
            start,
            end,
            kind: UnitKind::Statement,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(sql: &str) -> Vec<(TokenKind, &str)> {
        Lexer::new(sql).map(|t| (t.kind, t.text)).collect()
    }

    fn units(sql: &str) -> Vec<(&str, UnitKind)> {
        let mut out = Vec::new();
        let r: Result<(), ()> = for_each_unit(sql, LexOptions::default(), |u| {
            out.push((&sql[u.start..u.end], u.kind));
            Ok(())
        });
        assert!(r.is_ok());
        out
    }

    fn stmts(sql: &str) -> Vec<&str> {
        units(sql)
            .into_iter()
            .filter(|u| u.1 == UnitKind::Statement)
            .map(|u| u.0)
            .collect()
    }

    use TokenKind::*;

    #[test]
    fn basic_tokens() {
        assert_eq!(
            toks("SELECT a.b, 1.5e3, $1 FROM \"T\"\"x\" -- c\n/* a /* b */ c */;"),
            vec![
                (Word, "SELECT"),
                (Word, "a"),
                (Punct, "."),
                (Word, "b"),
                (Punct, ","),
                (Number, "1.5e3"),
                (Punct, ","),
                (Param, "$1"),
                (Word, "FROM"),
                (QuotedIdent, "\"T\"\"x\""),
                (Punct, ";"),
            ]
        );
    }

    #[test]
    fn strings() {
        assert_eq!(toks("'a''b' x"), vec![(String, "'a''b'"), (Word, "x")]);
        assert_eq!(toks(r"E'a\'b' x"), vec![(String, r"E'a\'b'"), (Word, "x")]);
        assert_eq!(toks(r"e'a\\' x"), vec![(String, r"e'a\\'"), (Word, "x")]);
        // Backslash is ordinary in a standard string.
        assert_eq!(toks(r"'a\' x"), vec![(String, r"'a\'"), (Word, "x")]);
        // ...but not without standard_conforming_strings.
        let off = LexOptions {
            standard_conforming_strings: false,
        };
        let t: Vec<_> = Lexer::with_options(r"'a\' x'", off)
            .map(|t| t.text)
            .collect();
        assert_eq!(t, vec![r"'a\' x'"]);
        // Prefixes only on a one-letter word.
        assert_eq!(toks("somee'x'"), vec![(Word, "somee"), (String, "'x'")]);
        assert_eq!(
            toks("U&'x' U&\"y\""),
            vec![(String, "U&'x'"), (QuotedIdent, "U&\"y\"")]
        );
        // B'' has no '' escape: it ends and a new string begins.
        assert_eq!(toks("B'01''x'"), vec![(String, "B'01'"), (String, "'x'")]);
        let t = toks("'a'\n'b''c'");
        assert_eq!(t, vec![(String, "'a'\n'b''c'")]);
        // Continuation only across a newline, comments allowed.
        assert_eq!(toks("'a' 'b'"), vec![(String, "'a'"), (String, "'b'")]);
        assert_eq!(toks("'a' -- x\n 'b'"), vec![(String, "'a' -- x\n 'b'")]);
        // An E string continues with backslash escapes.
        assert_eq!(
            toks("E'a'\n'\\'' x"),
            vec![(String, "E'a'\n'\\''"), (Word, "x")]
        );
        let t: Vec<_> = Lexer::new("'abc").collect();
        assert_eq!(t.len(), 1);
        assert!(!t[0].terminated);
    }

    #[test]
    fn dollar_quotes() {
        assert_eq!(
            toks("$$a;b$$ x"),
            vec![(DollarString, "$$a;b$$"), (Word, "x")]
        );
        assert_eq!(
            toks("$f$ $$ $g$ $f$ x"),
            vec![(DollarString, "$f$ $$ $g$ $f$"), (Word, "x")]
        );
        // A tag cannot start with a digit: that is a parameter.
        assert_eq!(toks("$1$"), vec![(Param, "$1"), (Punct, "$")]);
        // `$` continues an identifier, so no dollar quote starts there.
        assert_eq!(toks("a$$ b"), vec![(Word, "a$$"), (Word, "b")]);
        assert_eq!(toks("1a$$b"), vec![(Number, "1"), (Word, "a$$b")]);
        assert_eq!(toks("$x y"), vec![(Punct, "$"), (Word, "x"), (Word, "y")]);
        // Tags are case sensitive.
        assert_eq!(toks("$A$ $a$ x"), vec![(DollarString, "$A$ $a$ x")]);
    }

    #[test]
    fn comments() {
        assert_eq!(toks("/* /* */ x */ y"), vec![(Word, "y")]);
        assert_eq!(toks("a/**/b"), vec![(Word, "a"), (Word, "b")]);
        assert_eq!(toks("+--x\n-"), vec![(Punct, "+"), (Punct, "-")]);
        assert_eq!(toks("*/* x */"), vec![(Punct, "*")]);
        assert_eq!(toks("x /* unterminated ; y"), vec![(Word, "x")]);
        assert_eq!(toks("x -- ; y"), vec![(Word, "x")]);
    }

    #[test]
    fn splitting() {
        assert_eq!(stmts("a; b ;; c"), vec!["a", "b", "c"]);
        assert_eq!(stmts(" ; -- x\n ; "), Vec::<&str>::new());
        assert_eq!(stmts("select ';'; x"), vec!["select ';'", "x"]);
        assert_eq!(stmts("select $$;$$; x"), vec!["select $$;$$", "x"]);
        // A `;` inside parentheses still splits (the server rejects that text anyway).
        assert_eq!(stmts("select (1; 2)"), vec!["select (1", "2)"]);
    }

    #[test]
    fn begin_atomic() {
        let sql = "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql \
                   BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2 AS end; END; SELECT 3";
        assert_eq!(
            units(sql),
            vec![
                ("SELECT CASE WHEN true THEN 1 END", UnitKind::BodyStatement),
                ("SELECT 2 AS end", UnitKind::BodyStatement),
                (&sql[..sql.len() - "; SELECT 3".len()], UnitKind::Statement),
                ("SELECT 3", UnitKind::Statement),
            ]
        );
        // Not a routine: BEGIN ATOMIC means nothing.
        assert_eq!(
            stmts("SELECT begin atomic; x"),
            vec!["SELECT begin atomic", "x"]
        );
        // A body that never ends: every piece is still reported.
        assert_eq!(
            units("create procedure p() begin atomic select 1; alter system set x = 1"),
            vec![
                ("select 1", UnitKind::BodyStatement),
                ("alter system set x = 1", UnitKind::BodyStatement),
                (
                    "create procedure p() begin atomic select 1; alter system set x = 1",
                    UnitKind::Statement
                ),
            ]
        );
    }
}
