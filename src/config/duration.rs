//! Duration values of `pooler.conf`: `"250ms"`, `"5s"`, `"10m"`, `"1h"`, or a
//! bare count of seconds (`30`, `"30"`).

use std::time::Duration;

/// Longer than any timeout or lifetime anyone means; a bigger value is a typo
/// (an extra zero, or milliseconds written as seconds).
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

const UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Parses a duration written with one unit (`ms`, `s`, `m`, `h`) or a plain
/// integer meaning seconds. Values above 30 days are rejected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(if text.starts_with('-') {
            format!("{s:?} is negative; durations are 0 or more")
        } else {
            format!("{s:?} is not a duration; write e.g. \"250ms\", \"5s\", \"10m\", \"1h\"")
        });
    }
    let millis_per_unit = if unit.is_empty() {
        1_000
    } else {
        match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, millis)) => *millis,
            None => {
                return Err(format!(
                    "{s:?} has an unknown unit {unit:?}; use ms, s, m or h (a bare number means seconds)"
                ))
            }
        }
    };
    let too_large = || format!("{s:?} is longer than 30 days");
    let count: u64 = digits.parse().map_err(|_| too_large())?;
    let millis = count.checked_mul(millis_per_unit).ok_or_else(too_large)?;
    let duration = Duration::from_millis(millis);
    if duration > MAX_DURATION {
        return Err(too_large());
    }
    Ok(duration)
}

/// Parses a TOML integer meaning seconds, with the same limits as [`parse_duration`].
pub fn duration_from_seconds(seconds: i64) -> Result<Duration, String> {
    if seconds < 0 {
        return Err(format!("{seconds} is negative; durations are 0 or more"));
    }
    let duration = Duration::from_secs(seconds.unsigned_abs());
    if duration > MAX_DURATION {
        return Err(format!("{seconds} seconds is longer than 30 days"));
    }
    Ok(duration)
}

/// Writes a duration in the largest unit that represents it exactly, so that
/// `format_duration(parse_duration(x))` reads like what people write.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0".to_string();
    }
    for (unit, unit_millis) in UNITS.iter().rev() {
        let unit_millis = u128::from(*unit_millis);
        if millis % unit_millis == 0 {
            return format!("{}{unit}", millis / unit_millis);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn thirty_days_is_the_limit() {
        assert_eq!(parse_duration("720h"), Ok(MAX_DURATION));
        assert!(parse_duration("721h").is_err());
        assert!(parse_duration("2592001").is_err());
        assert!(parse_duration("99999999999999999999999999s").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
        assert_eq!(duration_from_seconds(2_592_000), Ok(MAX_DURATION));
        assert!(duration_from_seconds(2_592_001).is_err());
        assert!(duration_from_seconds(i64::MAX).is_err());
    }

    #[test]
    fn rejects_garbage_negative_and_unknown_units() {
        for bad in [
            "", " ", "-5s", "-1", "5d", "5 s", "1.5s", "s", "ms5", "5sec", "5S", "five", "5s5",
            "+5s", "١s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(duration_from_seconds(-1).is_err());
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        for (text, expected) in [
            ("0", "0"),
            ("250ms", "250ms"),
            ("1500ms", "1500ms"),
            ("5s", "5s"),
            ("120s", "2m"),
            ("90s", "90s"),
            ("60m", "1h"),
            ("720h", "720h"),
        ] {
            let parsed = parse_duration(text).expect("test input is valid");
            assert_eq!(format_duration(parsed), expected);
            assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed));
        }
    }
}
