//! Protobuf wire format: reading keys and values from a byte slice, writing them into a buffer.
//!
//! Reading defers to prost's own primitives, so malformed input fails exactly where prost (and
//! so prost-reflect) would fail.

use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, decode_varint, encode_varint};

/// The wire is not a valid encoding of the message its plan describes.
///
/// Its text is behind a pointer: every value the renderer reads comes back in a `Result`,
/// which stays the size of two registers when the error is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
// One pointer, where a `String` is three (and a `Box<str>` two).
#[allow(clippy::box_collection)]
pub struct WireError(Box<String>);

impl WireError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> WireError {
        WireError(Box::new(message.into()))
    }

    /// What the error says.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> Self {
        WireError::new(e.to_string())
    }
}

/// Wire type numbers.
pub const VARINT: u8 = 0;
/// 8 bytes, little-endian.
pub const FIXED64: u8 = 1;
/// A varint length, then that many bytes.
pub const LEN: u8 = 2;
/// 4 bytes, little-endian.
pub const FIXED32: u8 = 5;

/// A field read off the wire: its number, wire type and value bytes (for `LEN`, without the
/// length prefix; for `VARINT`, the varint's own bytes).
#[derive(Debug, Clone, Copy)]
pub struct RawField<'a> {
    /// The field number.
    pub number: u32,
    /// The wire type.
    pub wire_type: u8,
    /// The value bytes.
    pub value: &'a [u8],
}

/// Reads the next field; unknown wire types and truncated values are errors.
#[inline]
pub fn next_field<'a>(buf: &mut &'a [u8]) -> Result<RawField<'a>, WireError> {
    let (number, wire_type) = next_key(buf)?;
    let value = next_value(buf, number, wire_type)?;
    Ok(RawField { number, wire_type, value })
}

/// Bit `n` set for each wire type `n` read without prost's help: varint, 64-bit,
/// length-delimited and 32-bit (not the groups, 3 and 4, nor the unassigned 6 and 7).
const KNOWN_WIRE_TYPES: u8 = 1 << VARINT | 1 << FIXED64 | 1 << LEN | 1 << FIXED32;

/// Reads a field key: the field number and wire type.
#[inline(always)]
pub fn next_key(buf: &mut &[u8]) -> Result<(u32, u8), WireError> {
    // Fields 1 to 15 have one-byte keys: most keys, by design of the encoding.
    if let Some(&byte) = buf.first()
        && (8..0x80).contains(&byte)
        && KNOWN_WIRE_TYPES >> (byte & 7) & 1 == 1
    {
        *buf = &buf[1..];
        return Ok((u32::from(byte >> 3), byte & 7));
    }
    let (number, wire_type) = prost::encoding::decode_key(buf)?;
    Ok((number, wire_type as u8))
}

/// Reads the value that follows a key of this wire type.
#[inline(always)]
pub fn next_value<'a>(buf: &mut &'a [u8], number: u32, wire_type: u8) -> Result<&'a [u8], WireError> {
    let before: &'a [u8] = buf;
    Ok(match wire_type {
        VARINT => {
            if buf.first().is_some_and(|&b| b < 0x80) {
                let (value, rest) = buf.split_at(1);
                *buf = rest;
                return Ok(value);
            }
            decode_varint(buf)?;
            &before[..before.len() - buf.len()]
        }
        FIXED64 => take(buf, 8)?,
        FIXED32 => take(buf, 4)?,
        LEN => next_len_delimited(buf)?,
        _ => {
            // Groups never belong to a supported plan; skip them as unknown data.
            let wire_type = WireType::try_from(u64::from(wire_type))?;
            prost::encoding::skip_field(wire_type, number, buf, DecodeContext::default())?;
            &before[..before.len() - buf.len()]
        }
    })
}

/// Reads a varint length and that many bytes.
#[inline(always)]
pub fn next_len_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    if let Some(&len) = buf.first()
        && len < 0x80
    {
        *buf = &buf[1..];
        return take(buf, usize::from(len));
    }
    let len = match short_varint(buf) {
        Some((len, rest)) => {
            *buf = rest;
            len
        }
        None => decode_varint(buf)?,
    };
    let len = usize::try_from(len).map_err(|_| WireError::new("buffer underflow"))?;
    take(buf, len)
}

#[inline(always)]
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError::new("buffer underflow"));
    }
    let (value, rest) = buf.split_at(n);
    *buf = rest;
    Ok(value)
}

/// The varint in `bytes` (as captured by [`next_field`]).
#[inline(always)]
pub fn varint(mut bytes: &[u8]) -> Result<u64, WireError> {
    if let [byte] = bytes
        && *byte < 0x80
    {
        return Ok(u64::from(*byte));
    }
    if let Some((value, [])) = short_varint(bytes) {
        return Ok(value);
    }
    Ok(decode_varint(&mut bytes)?)
}

/// A varint of at most nine bytes at the start of `bytes`, and what follows it; `None` for
/// anything else (a longer or unterminated one), which prost's reader then judges.
///
/// Nine bytes hold 63 bits, so no value overflows and every varint read here is read as
/// prost reads it. The varints of timestamps, prices and lengths are two to five bytes,
/// which prost reads through its `Buf` (a call, a chunk and an advance each); here, when
/// eight bytes are there to read, they are read as one word and their 7-bit groups joined
/// without a loop.
#[inline(always)]
pub fn short_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    if let Some(word) = bytes.first_chunk::<8>() {
        let word = u64::from_le_bytes(*word);
        // A byte without its high bit ends the varint.
        let ends = !word & 0x8080_8080_8080_8080;
        if ends != 0 {
            let len = (ends.trailing_zeros() / 8 + 1) as usize;
            let groups = word & (u64::MAX >> (64 - 8 * len)) & 0x7f7f_7f7f_7f7f_7f7f;
            // Join the 7-bit groups: pairs of bytes, then pairs of pairs, then the halves.
            let groups = (groups & 0x007f_007f_007f_007f) | (groups & 0x7f00_7f00_7f00_7f00) >> 1;
            let groups = (groups & 0x0000_3fff_0000_3fff) | (groups & 0x3fff_0000_3fff_0000) >> 2;
            let value = (groups & 0x0000_0000_0fff_ffff) | (groups & 0x0fff_ffff_0000_0000) >> 4;
            return Some((value, &bytes[len..]));
        }
    }
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(9).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// Reads the next varint of a packed list.
#[inline]
pub fn next_varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    Ok(decode_varint(buf)?)
}

/// Reads the next 4 bytes of a packed list.
#[inline]
pub fn next_fixed32(buf: &mut &[u8]) -> Result<u32, WireError> {
    if buf.remaining() < 4 {
        return Err(WireError::new("buffer underflow"));
    }
    Ok(buf.get_u32_le())
}

/// Reads the next 8 bytes of a packed list.
#[inline]
pub fn next_fixed64(buf: &mut &[u8]) -> Result<u64, WireError> {
    if buf.remaining() < 8 {
        return Err(WireError::new("buffer underflow"));
    }
    Ok(buf.get_u64_le())
}

/// Zigzag-decodes a 32-bit value.
#[inline]
pub fn zigzag32(n: u64) -> i32 {
    // The varint holds a u32; truncation is prost's behaviour too.
    #[allow(clippy::cast_possible_truncation)]
    let n = n as u32;
    ((n >> 1) as i32) ^ -((n & 1) as i32)
}

/// Zigzag-decodes a 64-bit value.
#[inline]
pub fn zigzag64(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Zigzag-encodes a 32-bit value.
#[inline]
pub fn zigzag_encode32(n: i32) -> u64 {
    u64::from(((n << 1) ^ (n >> 31)) as u32)
}

/// Zigzag-encodes a 64-bit value.
#[inline]
pub fn zigzag_encode64(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

// === writing ===

/// Appends a varint. Most are one byte (lengths of short strings, small numbers, booleans),
/// pushed here without a call.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, value: u64) {
    match u8::try_from(value) {
        Ok(byte) if byte < 0x80 => out.push(byte),
        _ => encode_varint(value, out),
    }
}

/// Appends an encoded field key. Fields 1 to 15 have one-byte keys, pushed rather than copied
/// (a copy of a slice's length is a call into `memcpy`).
#[inline(always)]
pub fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    match key {
        [byte] => out.push(*byte),
        _ => out.extend_from_slice(key),
    }
}

/// Starts a length-delimited value whose length is not known yet; returns the position to
/// hand to [`end_len`]. One byte is reserved: most nested messages are shorter than 128 bytes.
#[inline]
pub fn begin_len(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len()
}

/// Writes the length of the value started at `start`, moving it if the length needs more
/// than the reserved byte.
#[inline]
pub fn end_len(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    if len < 0x80 {
        // Fits the reserved byte.
        #[allow(clippy::cast_possible_truncation)]
        let byte = len as u8;
        out[start - 1] = byte;
        return;
    }
    let mut prefix = [0u8; 10];
    let mut prefix_len = 0;
    let mut n = len as u64;
    while n >= 0x80 {
        // The low seven bits, with the continuation bit set.
        #[allow(clippy::cast_possible_truncation)]
        let byte = (n as u8 & 0x7f) | 0x80;
        prefix[prefix_len] = byte;
        prefix_len += 1;
        n >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    let last = n as u8;
    prefix[prefix_len] = last;
    prefix_len += 1;
    let extra = prefix_len - 1;
    out.resize(out.len() + extra, 0);
    out.copy_within(start..start + len, start + extra);
    out[start - 1..start - 1 + prefix_len].copy_from_slice(&prefix[..prefix_len]);
}

/// Appends field `field` holding `value` (one element, for a list), tag included, whether or
/// not the value is the default: a path variable must override what the body set.
pub fn put_reflect_field(out: &mut Vec<u8>, field: &prost_reflect::FieldDescriptor, value: &prost_reflect::Value) {
    use prost_reflect::{Kind, Value};
    let key = |out: &mut Vec<u8>, wire_type: u8| put_varint(out, u64::from(field.number()) << 3 | u64::from(wire_type));
    match (value, field.kind()) {
        (Value::Bool(b), _) => {
            key(out, VARINT);
            put_varint(out, u64::from(*b));
        }
        (Value::I32(n), Kind::Sint32) => {
            key(out, VARINT);
            put_varint(out, zigzag_encode32(*n));
        }
        (Value::I32(n), Kind::Sfixed32) => {
            key(out, FIXED32);
            out.extend_from_slice(&n.to_le_bytes());
        }
        (Value::I32(n) | Value::EnumNumber(n), _) => {
            key(out, VARINT);
            put_varint(out, i64::from(*n) as u64);
        }
        (Value::I64(n), Kind::Sint64) => {
            key(out, VARINT);
            put_varint(out, zigzag_encode64(*n));
        }
        (Value::I64(n), Kind::Sfixed64) => {
            key(out, FIXED64);
            out.extend_from_slice(&n.to_le_bytes());
        }
        (Value::I64(n), _) => {
            key(out, VARINT);
            put_varint(out, *n as u64);
        }
        (Value::U32(n), Kind::Fixed32) => {
            key(out, FIXED32);
            out.extend_from_slice(&n.to_le_bytes());
        }
        (Value::U32(n), _) => {
            key(out, VARINT);
            put_varint(out, u64::from(*n));
        }
        (Value::U64(n), Kind::Fixed64) => {
            key(out, FIXED64);
            out.extend_from_slice(&n.to_le_bytes());
        }
        (Value::U64(n), _) => {
            key(out, VARINT);
            put_varint(out, *n);
        }
        (Value::F32(f), _) => {
            key(out, FIXED32);
            out.extend_from_slice(&f.to_le_bytes());
        }
        (Value::F64(f), _) => {
            key(out, FIXED64);
            out.extend_from_slice(&f.to_le_bytes());
        }
        (Value::String(s), _) => put_len_field(out, field.number(), s.as_bytes()),
        (Value::Bytes(b), _) => put_len_field(out, field.number(), b),
        (Value::Message(m), _) => put_len_field(out, field.number(), &prost::Message::encode_to_vec(m)),
        // Lists and maps are never the target of a single text value.
        (Value::List(_) | Value::Map(_), _) => {}
    }
}

/// Appends a length-delimited field.
pub fn put_len_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, u64::from(number) << 3 | u64::from(LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_every_size_are_patched_in() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 2_097_152] {
            let mut out = vec![9u8];
            let start = begin_len(&mut out);
            out.extend(std::iter::repeat_n(7u8, len));
            end_len(&mut out, start);
            let mut rest = &out[1..];
            assert_eq!(decode_varint(&mut rest).unwrap(), len as u64);
            assert_eq!(rest.len(), len);
            assert!(rest.iter().all(|&b| b == 7));
            assert_eq!(out[0], 9);
        }
    }

    #[test]
    fn short_varints_are_read_as_prost_reads_them() {
        let mut g = crate::test_util::Gen::new(0x5a17);
        for _ in 0..200_000 {
            // Mostly continuation bytes, so varints of every length (and unterminated ones) come up.
            let bytes: Vec<u8> =
                (0..g.below(13)).map(|_| g.next() as u8 | if g.chance(80) { 0x80 } else { 0 }).collect();
            let mut rest = bytes.as_slice();
            let prost = decode_varint(&mut rest);
            match short_varint(&bytes) {
                Some((value, after)) => {
                    assert_eq!(prost.as_ref().ok(), Some(&value), "{bytes:02x?}");
                    assert_eq!(after, rest, "{bytes:02x?}");
                }
                // Declined only where prost has more to judge: ten bytes or more, or no end.
                None => assert!(bytes.iter().take(9).all(|&b| b >= 0x80), "{bytes:02x?}"),
            }
        }
    }

    #[test]
    fn zigzag_round_trips() {
        for n in [0i32, 1, -1, i32::MAX, i32::MIN] {
            assert_eq!(zigzag32(zigzag_encode32(n)), n);
        }
        for n in [0i64, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(zigzag64(zigzag_encode64(n)), n);
        }
    }
}
