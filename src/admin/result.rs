//! Result sets and their wire form: RowDescription, DataRow, CommandComplete.
//!
//! Every column is sent in text format with one of two type OIDs, `text` (25)
//! or `int8` (20), as PgBouncer's console does for all but a few numeric
//! columns. Clients parse the text either way; two types keep the writer and
//! the tests small. Timestamps are `text` holding `YYYY-MM-DD HH:MM:SS UTC`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::protocol::{self, backend, Severity};

use super::AdminError;

/// `pg_type.oid` of `text`.
pub const TEXT_OID: i32 = 25;
/// `pg_type.oid` of `int8`.
pub const INT8_OID: i32 = 20;

/// The type a column is announced with in RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Int8,
    /// Sent as `text` (OID 25), formatted by [`format_timestamp`].
    Timestamp,
}

impl ColumnKind {
    pub fn type_oid(self) -> i32 {
        match self {
            ColumnKind::Text | ColumnKind::Timestamp => TEXT_OID,
            ColumnKind::Int8 => INT8_OID,
        }
    }

    /// `pg_type.typlen`: -1 for variable length.
    pub fn type_len(self) -> i16 {
        match self {
            ColumnKind::Text | ColumnKind::Timestamp => -1,
            ColumnKind::Int8 => 8,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
}

impl Column {
    pub const fn text(name: &'static str) -> Column {
        Column {
            name,
            kind: ColumnKind::Text,
        }
    }

    pub const fn int8(name: &'static str) -> Column {
        Column {
            name,
            kind: ColumnKind::Int8,
        }
    }

    pub const fn timestamp(name: &'static str) -> Column {
        Column {
            name,
            kind: ColumnKind::Timestamp,
        }
    }
}

/// One field of a row. Booleans are `Int` 0/1, as PgBouncer's `paused` and
/// `disabled`; timestamps are `Text` (see [`Value::time`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL: sent as length -1.
    Null,
    Text(String),
    /// Sent as its decimal text.
    Int(i64),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    /// Saturates at `i64::MAX`: a counter that large is wrong anyway, and the
    /// console must not fail because of it.
    pub fn uint(n: u64) -> Value {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }

    pub fn bool(b: bool) -> Value {
        Value::Int(i64::from(b))
    }

    /// A timestamp as [`format_timestamp`] writes it.
    pub fn time(t: SystemTime) -> Value {
        Value::Text(format_timestamp(t))
    }

    /// NULL for `None`.
    pub fn opt_time(t: Option<SystemTime>) -> Value {
        t.map_or(Value::Null, Value::time)
    }

    /// NULL for `None`.
    pub fn opt_text(s: Option<&str>) -> Value {
        s.map_or(Value::Null, Value::text)
    }

    /// Whole seconds, rounded down.
    pub fn secs(d: Duration) -> Value {
        Value::uint(d.as_secs())
    }

    /// Whole microseconds, saturating.
    pub fn micros(d: Duration) -> Value {
        Value::uint(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

/// Columns and rows of one SHOW answer. A row shorter than `columns` is sent
/// padded with NULLs and a longer one cut, so the wire form always matches the
/// RowDescription (the row structs in `show` never produce either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

impl ResultSet {
    pub fn new(columns: &[Column]) -> ResultSet {
        ResultSet {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }

    /// The value in `row` under the column named `name`, for tests and logs.
    pub fn get(&self, row: usize, name: &str) -> Option<&Value> {
        let index = self.columns.iter().position(|c| c.name == name)?;
        self.rows.get(row)?.get(index)
    }
}

/// Appends RowDescription, one DataRow per row and CommandComplete with `tag`
/// (`"SHOW"` for SHOW commands). The caller appends ReadyForQuery.
pub fn write_result(buf: &mut Vec<u8>, rs: &ResultSet, command_tag: &str) {
    write_row_description(buf, &rs.columns);
    for row in &rs.rows {
        write_data_row(buf, rs.columns.len(), row);
    }
    write_command_ok(buf, command_tag);
}

/// CommandComplete alone, for control commands (`"RELOAD"`, `"PAUSE"`, ...).
pub fn write_command_ok(buf: &mut Vec<u8>, tag: &str) {
    protocol::begin(buf, backend::COMMAND_COMPLETE)
        .cstr(tag)
        .finish();
}

/// EmptyQueryResponse, the answer to a query of only whitespace and comments
/// ([`super::parse`] returned no commands).
pub fn write_empty_query(buf: &mut Vec<u8>) {
    protocol::begin(buf, backend::EMPTY_QUERY_RESPONSE).finish();
}

/// ErrorResponse (severity ERROR) for a failed command; the session goes on.
pub fn write_error(buf: &mut Vec<u8>, error: &AdminError) {
    // A NUL would end the message field early; parse errors already escape
    // user text, this covers messages built elsewhere.
    let message = error.message.replace('\0', "\\0");
    protocol::error_response(buf, Severity::Error, error.code, &message);
}

fn write_row_description(buf: &mut Vec<u8>, columns: &[Column]) {
    let count = i16::try_from(columns.len()).unwrap_or(i16::MAX);
    let mut m = protocol::begin(buf, backend::ROW_DESCRIPTION).i16(count);
    for column in columns.iter().take(count as usize) {
        m = m
            .cstr(column.name)
            .i32(0) // table OID
            .i16(0) // attribute number
            .i32(column.kind.type_oid())
            .i16(column.kind.type_len())
            .i32(-1) // type modifier
            .i16(0); // text format
    }
    m.finish();
}

fn write_data_row(buf: &mut Vec<u8>, width: usize, row: &[Value]) {
    let width = width.min(i16::MAX as usize);
    let mut m = protocol::begin(buf, backend::DATA_ROW).i16(width as i16);
    for index in 0..width {
        m = match row.get(index).unwrap_or(&Value::Null) {
            Value::Null => m.i32(-1),
            Value::Text(s) => m.i32(field_len(s.len())).bytes(s.as_bytes()),
            Value::Int(n) => {
                let digits = n.to_string();
                m.i32(field_len(digits.len())).bytes(digits.as_bytes())
            }
        };
    }
    m.finish();
}

/// Field lengths are i32 on the wire; nothing the console sends comes close.
fn field_len(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// `YYYY-MM-DD HH:MM:SS UTC`, whole seconds rounded down (also before 1970).
pub fn format_timestamp(t: SystemTime) -> String {
    let secs: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            // Floor: 0.5 s before the epoch is 1969-12-31 23:59:59.
            -whole - i64::from(before.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Proleptic Gregorian (year, month, day) of `days` since 1970-01-01, after
/// Howard Hinnant's `civil_from_days`: shift to eras of 400 years starting on
/// March 1st, so the leap day is the last day of its year.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let mp = (5 * day_of_year + 2) / 153; // month from March: [0, 11]
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn timestamps_of_known_epochs() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_timestamp(at(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            format_timestamp(at(1_234_567_890)),
            "2009-02-13 23:31:30 UTC"
        );
        assert_eq!(
            format_timestamp(at(1_709_251_199)),
            "2024-02-29 23:59:59 UTC"
        );
        assert_eq!(
            format_timestamp(at(4_102_444_800)),
            "2100-01-01 00:00:00 UTC"
        );
        assert_eq!(
            format_timestamp(at(2_147_483_648)),
            "2038-01-19 03:14:08 UTC"
        );
        // Sub-second parts are dropped.
        assert_eq!(
            format_timestamp(at(86_399) + Duration::from_millis(999)),
            "1970-01-01 23:59:59 UTC"
        );
    }

    #[test]
    fn timestamps_before_the_epoch_round_down() {
        let before = |d: Duration| UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH);
        assert_eq!(
            format_timestamp(before(Duration::from_secs(1))),
            "1969-12-31 23:59:59 UTC"
        );
        assert_eq!(
            format_timestamp(before(Duration::from_millis(500))),
            "1969-12-31 23:59:59 UTC"
        );
        assert_eq!(
            format_timestamp(before(Duration::from_secs(86_400 * 365))),
            "1969-01-01 00:00:00 UTC"
        );
    }

    #[test]
    fn civil_dates_agree_with_a_day_by_day_walk() {
        // Walk from 1970-01-01 for 200 years using month lengths directly.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..(200 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }

    /// RowDescription, two DataRows (one with NULL) and CommandComplete, built
    /// by hand from the protocol documentation.
    #[test]
    fn wire_bytes_match_a_hand_built_result() {
        let mut rs = ResultSet::new(&[Column::text("name"), Column::int8("n")]);
        rs.push(vec![Value::text("ab"), Value::Int(-7)]);
        rs.push(vec![Value::Null, Value::Int(42)]);
        let mut buf = Vec::new();
        write_result(&mut buf, &rs, "SHOW");

        let mut expected: Vec<u8> = Vec::new();
        // RowDescription: 'T', length, field count 2.
        expected.push(b'T');
        let fields: Vec<u8> = [
            &b"name\0"[..],
            &0i32.to_be_bytes(),
            &0i16.to_be_bytes(),
            &25i32.to_be_bytes(),
            &(-1i16).to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &0i16.to_be_bytes(),
            b"n\0",
            &0i32.to_be_bytes(),
            &0i16.to_be_bytes(),
            &20i32.to_be_bytes(),
            &8i16.to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &0i16.to_be_bytes(),
        ]
        .concat();
        expected.extend_from_slice(&((4 + 2 + fields.len()) as i32).to_be_bytes());
        expected.extend_from_slice(&2i16.to_be_bytes());
        expected.extend_from_slice(&fields);
        // DataRow 1: "ab", "-7".
        expected.extend_from_slice(b"D\0\0\0\x12\0\x02\0\0\0\x02ab\0\0\0\x02-7");
        // DataRow 2: NULL (length -1), "42".
        expected.extend_from_slice(b"D\0\0\0\x10\0\x02\xff\xff\xff\xff\0\0\0\x0242");
        // CommandComplete "SHOW".
        expected.extend_from_slice(b"C\0\0\0\x09SHOW\0");

        assert_eq!(buf, expected);
    }

    #[test]
    fn exact_row_description_bytes() {
        let rs = ResultSet::new(&[Column::timestamp("t")]);
        let mut buf = Vec::new();
        write_result(&mut buf, &rs, "SHOW");
        let expected: &[u8] = b"T\0\0\0\x1a\0\x01t\0\
            \0\0\0\0\
            \0\0\
            \0\0\0\x19\
            \xff\xff\
            \xff\xff\xff\xff\
            \0\0\
            C\0\0\0\x09SHOW\0";
        assert_eq!(buf, expected);
    }

    #[test]
    fn short_rows_are_padded_and_long_rows_cut() {
        let mut rs = ResultSet::new(&[Column::text("a"), Column::text("b")]);
        rs.push(vec![Value::text("x")]);
        rs.push(vec![Value::text("x"), Value::text("y"), Value::text("z")]);
        let mut buf = Vec::new();
        write_result(&mut buf, &rs, "SHOW");
        let rows: Vec<&[u8]> = frames(&buf).into_iter().filter(|f| f[0] == b'D').collect();
        assert_eq!(rows[0], b"D\0\0\0\x0f\0\x02\0\0\0\x01x\xff\xff\xff\xff");
        assert_eq!(rows[1], b"D\0\0\0\x10\0\x02\0\0\0\x01x\0\0\0\x01y");
    }

    #[test]
    fn command_ok_empty_query_and_error() {
        let mut buf = Vec::new();
        write_command_ok(&mut buf, "RELOAD");
        assert_eq!(buf, b"C\0\0\0\x0bRELOAD\0");
        buf.clear();
        write_empty_query(&mut buf);
        assert_eq!(buf, b"I\0\0\0\x04");
        buf.clear();
        write_error(
            &mut buf,
            &AdminError {
                code: "42601",
                message: "bad".into(),
            },
        );
        let fields = protocol::parse_error_fields(&buf[5..]);
        assert_eq!(
            (fields.severity.as_str(), fields.code.as_str()),
            ("ERROR", "42601")
        );
        assert_eq!(fields.message, "bad");
    }

    #[test]
    fn value_helpers() {
        assert_eq!(Value::uint(u64::MAX), Value::Int(i64::MAX));
        assert_eq!(Value::bool(true), Value::Int(1));
        assert_eq!(Value::bool(false), Value::Int(0));
        assert_eq!(Value::opt_time(None), Value::Null);
        assert_eq!(
            Value::opt_time(Some(UNIX_EPOCH)),
            Value::text("1970-01-01 00:00:00 UTC")
        );
        assert_eq!(Value::secs(Duration::from_millis(2_999)), Value::Int(2));
        assert_eq!(Value::micros(Duration::from_millis(3)), Value::Int(3_000));
        assert_eq!(Value::opt_text(None), Value::Null);
    }

    /// Splits a buffer of backend messages into whole frames.
    pub(crate) fn frames(buf: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = buf;
        while let Ok(Some((_, len))) = protocol::parse_header(rest) {
            out.push(&rest[..len]);
            rest = &rest[len..];
        }
        assert!(rest.is_empty(), "trailing bytes: {rest:?}");
        out
    }
}
