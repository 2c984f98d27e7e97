//! The text forms of well-known types that the direct transcoder shares with prost-reflect:
//! field-mask paths between snake_case and lowerCamelCase, and strict RFC 3339 timestamps.

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

#[cfg(test)]
mod tests {
    use super::*;

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
