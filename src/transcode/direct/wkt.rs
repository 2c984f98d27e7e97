//! The text forms of well-known types that the direct transcoder shares with prost-reflect:
//! field-mask paths between snake_case and lowerCamelCase, and strict RFC 3339 timestamps.

use super::json::{pair, put_digits};

/// A field-mask path that does not survive the conversion between snake_case and lowerCamelCase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotConvertible;

/// Appends a field-mask path (`a.b_c`) as lowerCamelCase (`a.bC`); fails for names that would
/// not convert back (upper-case letters, `_` before a non-letter).
pub fn snake_path_to_camel(out: &mut String, path: &str) -> Result<(), NotConvertible> {
    for (i, part) in path.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        let mut upper_next = false;
        for ch in part.chars() {
            if ch.is_ascii_uppercase() {
                return Err(NotConvertible);
            }
            if upper_next {
                let upper = ch.to_ascii_uppercase();
                if upper == ch {
                    return Err(NotConvertible);
                }
                out.push(upper);
                upper_next = false;
            } else if ch == '_' {
                upper_next = true;
            } else {
                out.push(ch);
            }
        }
    }
    Ok(())
}

/// Appends one lowerCamelCase field-mask path part as snake_case; `_` is not allowed in it.
pub fn camel_part_to_snake(out: &mut String, part: &str) -> Result<(), NotConvertible> {
    for ch in part.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else if ch == '_' {
            return Err(NotConvertible);
        } else {
            out.push(ch);
        }
    }
    Ok(())
}

/// Checks `YYYY-MM-DDTHH:MM:SS[.f+](Z|±HH:MM)` with upper-case `T` and `Z`, as the protobuf
/// conformance tests require; the message says what is wrong where.
pub fn validate_strict_rfc3339(v: &str) -> Result<(), String> {
    let b = v.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize, n: usize| -> bool {
        let ok = b.get(*i..*i + n).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
        if ok {
            *i += n;
        } else {
            // Consume the digits that are there, as a byte-at-a-time reader would.
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
        }
        ok
    };
    let byte = |i: &mut usize, c: u8| -> bool {
        let ok = b.get(*i) == Some(&c);
        if ok {
            *i += 1;
        }
        ok
    };
    let found = |i: usize| -> String {
        match b.get(i) {
            Some(&ch) => format!("'{}'", std::ascii::escape_default(ch)),
            None => "end of string".to_owned(),
        }
    };
    if !(digits(&mut i, 4) && byte(&mut i, b'-') && digits(&mut i, 2) && byte(&mut i, b'-') && digits(&mut i, 2)) {
        return Err("invalid rfc3339 timestamp: invalid date".to_owned());
    }
    if !byte(&mut i, b'T') {
        return Err(format!("invalid rfc3339 timestamp: expected 'T' but found {}", found(i)));
    }
    if !(digits(&mut i, 2) && byte(&mut i, b':') && digits(&mut i, 2) && byte(&mut i, b':') && digits(&mut i, 2)) {
        return Err("invalid rfc3339 timestamp: invalid time".to_owned());
    }
    if byte(&mut i, b'.') {
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return Err("invalid rfc3339 timestamp: empty fractional seconds".to_owned());
        }
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if byte(&mut i, b'+') || byte(&mut i, b'-') {
        if !(digits(&mut i, 2) && byte(&mut i, b':') && digits(&mut i, 2)) {
            return Err("invalid rfc3339 timestamp: invalid offset".to_owned());
        }
    } else if !byte(&mut i, b'Z') {
        return Err(format!("invalid rfc3339 timestamp: expected 'Z', '+' or '-' but found {}", found(i)));
    }
    if i < b.len() {
        return Err(format!("invalid rfc3339 timestamp: expected end of string but found {}", found(i)));
    }
    Ok(())
}

/// A strict RFC 3339 timestamp (see [`validate_strict_rfc3339`]) as the seconds and nanoseconds
/// prost-types' parser gives for it; the message says what is wrong.
pub fn parse_timestamp(v: &str) -> Result<prost_types::Timestamp, String> {
    if let Some(t) = parse_valid_timestamp(v.as_bytes()) {
        return Ok(t);
    }
    validate_strict_rfc3339(v)?;
    // Out of the calendar (a 30 February, an hour 24): prost-types says how.
    v.parse().map_err(|e: prost_types::TimestampError| e.to_string())
}

/// The seconds and nanoseconds of a timestamp of the strict form, checked and read in one
/// pass; `None` for anything else, a field out of its calendar range included (the slower
/// path then says what is wrong). prost-types' parser, which accepts looser forms too, takes
/// several passes and a string parse per field: this is what a decoder meets in every
/// request that carries a time.
fn parse_valid_timestamp(b: &[u8]) -> Option<prost_types::Timestamp> {
    // `YYYY-MM-DDTHH:MM:SS`: separators in place, digits elsewhere.
    let head: &[u8; 19] = b.get(..19)?.try_into().ok()?;
    if head[4] != b'-' || head[7] != b'-' || head[10] != b'T' || head[13] != b':' || head[16] != b':' {
        return None;
    }
    let two = |pair: &[u8]| match pair {
        [tens @ b'0'..=b'9', ones @ b'0'..=b'9'] => Some(i64::from(tens - b'0') * 10 + i64::from(ones - b'0')),
        _ => None,
    };
    let year = two(&head[0..2])? * 100 + two(&head[2..4])?;
    let (month, day, hour, minute) = (two(&head[5..7])?, two(&head[8..10])?, two(&head[11..13])?, two(&head[14..16])?);
    let second = two(&head[17..19])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // A leap second is read as the second before it, as prost-types does.
    let second = second.min(59);
    let mut i = 19;
    let mut nanos = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        // Digits past the ninth are dropped.
        let mut scale = 100_000_000;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            nanos += i64::from(d - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (two(&[*h1, *h2])?, two(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' { -offset } else { offset }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(prost_types::Timestamp { seconds, nanos: i32::try_from(nanos).ok()? })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends a timestamp (already checked to be in range) as prost-types' `Display` writes it:
/// `YYYY-MM-DDTHH:MM:SS` then `Z`, `.mmmZ`, `.uuuuuuZ` or `.nnnnnnnnnZ`.
pub fn write_timestamp(out: &mut Vec<u8>, seconds: i64, nanos: i32) {
    // What encoders send is already normal: skip prost-types' carrying arithmetic then.
    let (seconds, nanos) = match u32::try_from(nanos) {
        Ok(n) if n < NANOS_PER_SECOND => (seconds, n),
        _ => {
            let mut t = prost_types::Timestamp { seconds, nanos };
            t.normalize();
            (t.seconds, t.nanos.unsigned_abs())
        }
    };
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let Ok(year @ 0..=9999) = u32::try_from(year) else {
        // Only reachable when normalising carried past the range; let prost-types write it.
        let t = prost_types::Timestamp { seconds, nanos: i32::try_from(nanos).unwrap_or_default() };
        out.extend_from_slice(format!("\"{t}\"").as_bytes());
        return;
    };
    // `"YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ"` is 32 bytes at most: built on the stack, copied once.
    let mut buf = *b"\"0000-00-00T00:00:00.000000000Z\"";
    buf[1..3].copy_from_slice(&pair(year / 100));
    buf[3..5].copy_from_slice(&pair(year % 100));
    buf[6..8].copy_from_slice(&pair(month));
    buf[9..11].copy_from_slice(&pair(day));
    buf[12..14].copy_from_slice(&pair(secs / 3600));
    buf[15..17].copy_from_slice(&pair(secs / 60 % 60));
    buf[18..20].copy_from_slice(&pair(secs % 60));
    let end = 20 + fraction(&mut buf[20..30], nanos);
    buf[end] = b'Z';
    buf[end + 1] = b'"';
    // A fixed-size copy then a shorter length: cheaper than a copy of variable length.
    let start = out.len();
    out.extend_from_slice(&buf);
    out.truncate(start + end + 2);
}

/// Appends a duration (already checked to be in range) as prost-types' `Display` writes it:
/// `[-]S` then `s`, `.mmms`, `.uuuuuus` or `.nnnnnnnnns`.
pub fn write_duration(out: &mut Vec<u8>, seconds: i64, nanos: i32) {
    let mut d = prost_types::Duration { seconds, nanos };
    d.normalize();
    out.push(b'"');
    // The sign comes from the value as sent, the digits from the normalised one.
    if seconds < 0 || nanos < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(itoa::Buffer::new().format(d.seconds.unsigned_abs()).as_bytes());
    let mut buf = [0u8; 10];
    let len = fraction(&mut buf, d.nanos.unsigned_abs());
    out.extend_from_slice(&buf[..len]);
    out.extend_from_slice(b"s\"");
}

const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// Writes into `dst` (10 bytes) nothing for whole seconds, else `.` and milli-, micro- or
/// nanoseconds, whichever is exact; returns the length written.
fn fraction(dst: &mut [u8], nanos: u32) -> usize {
    let (value, digits) = match nanos {
        0 => return 0,
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    dst[0] = b'.';
    put_digits(&mut dst[1..=digits], value);
    digits + 1
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Month and day are small by construction.
    (year, u32::try_from(month).unwrap_or(1), u32::try_from(day).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_durations_format_as_prost_types_does() {
        let mut random = crate::test_util::Gen::new(0x9e37_79b9_7f4a_7c15u64);
        let mut next = || random.next();
        let nanos = [0, 1, 999_999_999, 500_000_000, 21_000_000, 123_000, 1_000, -1, -500_000_000, 1_999_999_999];
        for i in 0..20_000 {
            let seconds = match i % 4 {
                0 => -62_135_596_800 + (next() % 315_537_897_600) as i64,
                1 => [-62_135_596_800, 253_402_300_799, 0, -1, 1, 951_782_400, 4_107_542_400][i % 7],
                _ => (next() % 4_000_000_000) as i64 - 1_000_000_000,
            };
            let n = nanos[(next() % nanos.len() as u64) as usize];
            let mut out = Vec::new();
            write_timestamp(&mut out, seconds, n);
            let expected = format!("\"{}\"", prost_types::Timestamp { seconds, nanos: n });
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{seconds} {n}");
            let d_seconds = seconds % 315_576_000_000;
            let mut out = Vec::new();
            write_duration(&mut out, d_seconds, n);
            let expected = format!("\"{}\"", prost_types::Duration { seconds: d_seconds, nanos: n });
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{d_seconds} {n}");
        }
    }

    #[test]
    fn field_mask_paths_convert_both_ways() {
        let mut out = String::new();
        snake_path_to_camel(&mut out, "user.display_name").unwrap();
        assert_eq!(out, "user.displayName");
        assert!(snake_path_to_camel(&mut String::new(), "Upper").is_err());
        assert!(snake_path_to_camel(&mut String::new(), "a__b").is_err());
        assert!(snake_path_to_camel(&mut String::new(), "a_1").is_err());
        let mut snake = String::new();
        camel_part_to_snake(&mut snake, "displayName").unwrap();
        assert_eq!(snake, "display_name");
        assert!(camel_part_to_snake(&mut String::new(), "a_b").is_err());
    }

    #[test]
    fn timestamps_parse_as_prost_types_parses_them() {
        let mut random = crate::test_util::Gen::new(0x2545_f491_4f6c_dd1du64);
        let mut next = |n: u64| random.below(n);
        let mut fast = 0;
        for i in 0..100_000 {
            // Fields run one past their range, to days and times that do not exist.
            let year =
                [0, 1, 1900, 1969, 1970, 2000, 2024, 9999][next(8) as usize] + if i % 2 == 0 { next(400) } else { 0 };
            let year = year.min(9999);
            let (month, day) = (next(14), next(33));
            let (hour, minute, second) = (next(26), next(61), next(62));
            let fraction =
                ["", ".0", ".5", ".123", ".000001", ".999999999", ".1234567891", ".000000000000"][next(8) as usize];
            let offset =
                ["Z", "+00:00", "-00:00", "+05:30", "-08:00", "+23:59", "-23:59", "+24:00", "+01:60"][next(9) as usize];
            let v = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{offset}");
            let expected = v.parse::<prost_types::Timestamp>().map_err(|e| e.to_string());
            assert_eq!(parse_timestamp(&v), expected, "{v}");
            fast += usize::from(parse_valid_timestamp(v.as_bytes()).is_some());
        }
        // Most of those dates exist: the one-pass reader, not the fallback, read them.
        assert!(fast > 30_000, "{fast}");
        // Every byte of valid timestamps replaced, dropped or doubled: the one-pass reader
        // takes exactly what the strict check and prost-types take.
        for valid in ["2024-02-29T23:59:60.123456789+05:30", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59.5-23:59"] {
            for at in 0..valid.len() {
                let (before, after) = valid.split_at(at);
                let mut variants = vec![format!("{before}{}", &after[1..]), format!("{before}{}{after}", &after[..1])];
                variants.extend(
                    ["0", "9", "a", "-", ":", ".", "T", "Z", "+", " "].map(|c| format!("{before}{c}{}", &after[1..])),
                );
                for v in variants {
                    let expected = validate_strict_rfc3339(&v)
                        .and_then(|()| v.parse::<prost_types::Timestamp>().map_err(|e| e.to_string()));
                    assert_eq!(parse_timestamp(&v), expected, "{v}");
                    if let Some(t) = parse_valid_timestamp(v.as_bytes()) {
                        assert_eq!(Ok(t), expected, "{v}");
                    }
                }
            }
        }
        assert!(parse_timestamp("2024-01-01t00:00:00Z").unwrap_err().ends_with("expected 'T' but found 't'"));
    }

    #[test]
    fn timestamps_must_be_strict() {
        for ok in ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+01:30", "0001-01-01T00:00:00.000000001-00:00"] {
            assert_eq!(validate_strict_rfc3339(ok), Ok(()), "{ok}");
        }
        for (bad, reason) in [
            ("2024-1-01T00:00:00Z", "invalid date"),
            ("2024-01-01t00:00:00Z", "expected 'T' but found 't'"),
            ("2024-01-01T00:00Z", "invalid time"),
            ("2024-01-01T00:00:00.Z", "empty fractional seconds"),
            ("2024-01-01T00:00:00+0100", "invalid offset"),
            ("2024-01-01T00:00:00z", "expected 'Z', '+' or '-' but found 'z'"),
            ("2024-01-01T00:00:00", "expected 'Z', '+' or '-' but found end of string"),
            ("2024-01-01T00:00:00Zx", "expected end of string but found 'x'"),
        ] {
            let err = validate_strict_rfc3339(bad).unwrap_err();
            assert!(err.ends_with(reason), "{bad}: {err}");
        }
    }
}
