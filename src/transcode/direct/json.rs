//! JSON text output, byte-compatible with serde_json (which prost-reflect's mapping writes
//! through): the same string escapes, the same integer and float formatting crates.

use base64::Engine;

/// Per byte: 0 when it needs no escape, else the escape letter (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Writes `value` as a JSON string, quotes included.
#[inline]
pub fn write_str(out: &mut Vec<u8>, value: &str) {
    out.reserve(value.len() + 2);
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPE[byte as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        match escape {
            b'u' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(byte >> 4) as usize],
                    HEX[(byte & 0xf) as usize],
                ]);
            }
            letter => out.extend_from_slice(&[b'\\', letter]),
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes `bytes` as a JSON string after checking they are UTF-8 (a protobuf `string` field's
/// bytes are not checked on the wire). One pass: eight bytes at a time while they are plain
/// ASCII, which is the common case.
#[inline]
pub fn write_utf8(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), std::str::Utf8Error> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    let mut checked = false;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            // A byte below 0x20, a quote, a backslash, or (until checked) non-ASCII: look closer
            // at the first one. (The lowest flagged byte is exact; later flags may not be.)
            let has_zero = |v: u64| v.wrapping_sub(LOW) & !v & HIGH;
            let control = x.wrapping_sub(LOW * 0x20) & !x & HIGH;
            let special = has_zero(x ^ (LOW * u64::from(b'"'))) | has_zero(x ^ (LOW * u64::from(b'\\')));
            let high = if checked { 0 } else { x & HIGH };
            let mask = control | special | high;
            if mask == 0 {
                i += 8;
                continue;
            }
            i += (mask.trailing_zeros() / 8) as usize;
        }
        let byte = bytes[i];
        if byte >= 0x80 {
            if !checked {
                // Everything before was ASCII; check the rest once.
                std::str::from_utf8(&bytes[i..])?;
                checked = true;
            }
            i += 1;
            continue;
        }
        let escape = ESCAPE[byte as usize];
        if escape != 0 {
            out.extend_from_slice(&bytes[start..i]);
            push_escape(out, byte, escape);
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
    Ok(())
}

#[inline]
fn push_escape(out: &mut Vec<u8>, byte: u8, escape: u8) {
    match escape {
        b'u' => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(byte >> 4) as usize], HEX[(byte & 0xf) as usize]]);
        }
        letter => out.extend_from_slice(&[b'\\', letter]),
    }
}

/// Writes an integer as a JSON number.
#[inline]
pub fn write_int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Writes an integer as a JSON string (the mapping of 64-bit integers).
#[inline]
pub fn write_int_quoted(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.push(b'"');
    write_int(out, value);
    out.push(b'"');
}

/// A double field: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
#[inline]
pub fn write_f64_field(out: &mut Vec<u8>, value: f64) {
    if !value.is_finite() {
        out.extend_from_slice(non_finite(value.is_nan(), value > 0.0));
    } else if !write_short_decimal(out, value) {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    }
}

/// Writes a double that is a decimal of at most three places (prices, measures, ratings:
/// what APIs mostly carry) exactly as the shortest round-trip formatting writes it, at a
/// fraction of its cost; returns false, writing nothing, for any other value.
///
/// Let `m` be the integer nearest `|value| × 1000`. If `m / 1000` reads back as `value`, then
/// `m` without its trailing zeros is the shortest decimal that does (a shorter one would be
/// `m` with more of them), and the only one of its length below 2⁵⁰ / 1000: the digits zmij
/// and ryu choose. Within 10⁻³..2⁵⁰ / 1000 they write them as plain decimal digits with at
/// least one place (`25.0`). Below 2⁵⁰ the product and the quotient are exact to well
/// within half a unit.
#[inline]
fn write_short_decimal(out: &mut Vec<u8>, value: f64) -> bool {
    const LIMIT: f64 = (1u64 << 50) as f64 / 1000.0;
    let magnitude = value.abs();
    if !(1e-3..LIMIT).contains(&magnitude) {
        return false;
    }
    // Positive and below 2⁵⁰: the conversion rounds half up, exactly (through i64, which
    // x86 converts in one instruction, where u64 takes several).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let m = (magnitude * 1000.0 + 0.5) as i64 as u64;
    if m as i64 as f64 / 1000.0 != magnitude {
        return false;
    }
    if value < 0.0 {
        out.push(b'-');
    }
    let (whole, thousandths) = (m / 1000, m % 1000);
    // The whole part (below 2⁵⁰ / 1000: at most 13 digits), the point and three places are
    // made in a block of fixed size, copied whole and then cut: a copy of varying length is a
    // call into `memcpy`.
    let mut block = [0u8; 20];
    let digits = match whole {
        // Most measures, ratings and prices: without a logarithm's loop.
        0..10 => 1,
        10..100 => 2,
        _ => whole.ilog10() as usize + 1,
    };
    put_digits(&mut block[..digits], whole);
    block[digits] = b'.';
    put_digits(&mut block[digits + 1..digits + 4], thousandths);
    // Trailing zeros dropped, but one place always written: `25.0`, `22.5`, `1.25`.
    let places = match thousandths {
        t if t % 100 == 0 => 1,
        t if t % 10 == 0 => 2,
        _ => 3,
    };
    let start = out.len();
    out.extend_from_slice(&block);
    out.truncate(start + digits + 1 + places);
    true
}

/// Writes `value` zero-padded into all of `dst`, two digits at a time.
#[inline]
pub(super) fn put_digits(dst: &mut [u8], value: impl Into<u64>) {
    let mut value: u64 = value.into();
    let mut end = dst.len();
    while end >= 2 {
        dst[end - 2..end].copy_from_slice(&pair(value % 100));
        value /= 100;
        end -= 2;
    }
    if end == 1 {
        // A digit: below 10.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (value % 10) as u8;
        dst[0] = b'0' + digit;
    }
}

/// Two decimal digits of `n % 100`.
#[inline]
pub(super) fn pair(n: impl Into<u64>) -> [u8; 2] {
    const PAIRS: [[u8; 2]; 100] = {
        let mut table = [[0u8; 2]; 100];
        let mut i = 0;
        while i < 100 {
            table[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
            i += 1;
        }
        table
    };
    // Below 100, so an index.
    #[allow(clippy::cast_possible_truncation)]
    let index = (n.into() % 100) as usize;
    PAIRS[index]
}

/// A float field: as [`write_f64_field`], formatted at 32-bit precision.
#[inline]
pub fn write_f32_field(out: &mut Vec<u8>, value: f32) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(non_finite(value.is_nan(), value > 0.0));
    }
}

fn non_finite(nan: bool, positive: bool) -> &'static [u8] {
    match (nan, positive) {
        (true, _) => b"\"NaN\"",
        (false, true) => b"\"Infinity\"",
        (false, false) => b"\"-Infinity\"",
    }
}

/// A plain JSON number as serde_json writes `f64`: non-finite values become `null`.
#[inline]
pub fn write_f64_plain(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Bytes as a standard, padded base64 JSON string.
#[inline]
pub fn write_base64(out: &mut Vec<u8>, value: &[u8]) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let start = out.len();
    let encoded = base64::encoded_len(value.len(), true).unwrap_or(0);
    out.resize(start + encoded + 2, b'"');
    // The slice is exactly the encoded length, so encoding cannot run out of room.
    let written = engine.encode_slice(value, &mut out[start + 1..start + 1 + encoded]).unwrap_or(0);
    out.truncate(start + 1 + written);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let pieces =
            ["", "a", "plain ascii text", "\"", "\\", "\u{1}", "\u{1f}", "\n\t\r", "é", "日本", "🦀", "\u{7f}", "/"];
        let mut seed = 7u64;
        for _ in 0..5_000 {
            let mut text = String::new();
            for _ in 0..(seed % 9) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            seed = seed.wrapping_add(1);
            let expected = serde_json::to_string(&text).unwrap();
            let mut out = Vec::new();
            write_str(&mut out, &text);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
            let mut out = Vec::new();
            write_utf8(&mut out, text.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        assert!(write_utf8(&mut Vec::new(), b"abcdefgh\xff").is_err());
        assert!(write_utf8(&mut Vec::new(), b"\xe6\x97").is_err());
    }

    /// Valid and broken UTF-8 among ASCII, alone and in runs: accepted exactly when the
    /// standard check accepts it, and then written as serde_json writes the string.
    #[test]
    fn utf8_is_checked_as_the_standard_check_checks_it() {
        let pieces: [&[u8]; 22] = [
            b"plain ascii",
            b"a",
            b"\"",
            "\u{b0}".as_bytes(),
            "\u{e9}\u{e9}".as_bytes(),
            "\u{65e5}\u{672c}\u{8a9e}".as_bytes(),
            "\u{1f980}".as_bytes(),
            "\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}".as_bytes(),
            "\u{d7ff}\u{e000}".as_bytes(),
            b"\x80",
            b"\xbf",
            b"\xc0\x80",
            b"\xc1\xbf",
            b"\xc3",
            b"\xe0\x80\x80",
            b"\xe0\x9f\xbf",
            b"\xed\xa0\x80",
            b"\xe6\x97",
            b"\xf0\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80",
            b"\xf5\x80\x80\x80",
            b"\xff",
        ];
        let mut g = crate::test_util::Gen::new(0x0b0e);
        for _ in 0..100_000 {
            let mut bytes = Vec::new();
            for _ in 0..g.below(6) {
                bytes.extend_from_slice(g.pick(&pieces));
            }
            let mut out = Vec::new();
            let written = write_utf8(&mut out, &bytes);
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    assert!(written.is_ok(), "{bytes:02x?}");
                    assert_eq!(out, serde_json::to_vec(text).unwrap(), "{bytes:02x?}");
                }
                Err(_) => assert!(written.is_err(), "{bytes:02x?}"),
            }
        }
    }

    #[test]
    fn short_decimals_are_written_as_zmij_writes_them() {
        let check = |value: f64| {
            let mut out = Vec::new();
            write_f64_field(&mut out, value);
            let expected = zmij::Buffer::new().format_finite(value).to_owned();
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{value:e} ({:#x})", value.to_bits());
        };
        for value in [
            0.0,
            -0.0,
            25.0,
            -25.0,
            1.2,
            4.6,
            22.5,
            0.001,
            0.0015,
            1e-4,
            0.1,
            0.3,
            1e15,
            1e16,
            999.999,
            9.999,
            10.0,
            99.5,
            100.25,
            1e12 + 0.5,
            1_125_899_906_842.5,
        ] {
            check(value);
        }
        let mut random = crate::test_util::Gen::new(0x2545_f491_4f6c_dd1du64);
        let mut next = || random.next();
        for _ in 0..200_000 {
            let r = next();
            // Decimals of every length around the fast path's bounds, and arbitrary doubles.
            let places = [1.0, 10.0, 100.0, 1000.0, 10_000.0, 1e6][(r % 6) as usize];
            let integer = (next() >> (next() % 64)) as f64;
            let sign = if r & 64 == 0 { 1.0 } else { -1.0 };
            check(sign * integer / places);
            check(sign * (next() % 1_000_000) as f64 / places);
            let any = f64::from_bits(next());
            if any.is_finite() {
                check(any);
            }
            let near = f64::from_bits((sign * integer / places).to_bits().wrapping_add(r % 5).wrapping_sub(2));
            if near.is_finite() {
                check(near);
            }
        }
    }
}
