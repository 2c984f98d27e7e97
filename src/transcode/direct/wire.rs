//! Protobuf wire format: reading keys and values from a byte slice, writing them into a buffer.
//!
//! Reading defers to prost's own primitives, so malformed input fails exactly where prost (and
//! so prost-reflect) would fail.

use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, decode_varint, encode_varint};

/// The wire is not a valid encoding of the message its plan describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> Self {
        WireError(e.to_string())
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
    let (number, wire_type) = prost::encoding::decode_key(buf)?;
    let before: &'a [u8] = buf;
    let value: &'a [u8] = match wire_type {
        WireType::Varint => {
            decode_varint(buf)?;
            &before[..before.len() - buf.len()]
        }
        WireType::SixtyFourBit => take(buf, 8)?,
        WireType::ThirtyTwoBit => take(buf, 4)?,
        WireType::LengthDelimited => {
            let len = decode_varint(buf)?;
            let len = usize::try_from(len).map_err(|_| WireError("buffer underflow".into()))?;
            take(buf, len)?
        }
        WireType::StartGroup | WireType::EndGroup => {
            // Groups never belong to a supported plan; skip them as unknown data.
            prost::encoding::skip_field(wire_type, number, buf, DecodeContext::default())?;
            &before[..before.len() - buf.len()]
        }
    };
    Ok(RawField { number, wire_type: wire_type as u8, value })
}

#[inline]
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError("buffer underflow".into()));
    }
    let (value, rest) = buf.split_at(n);
    *buf = rest;
    Ok(value)
}

/// The varint in `bytes` (as captured by [`next_field`]).
#[inline]
pub fn varint(mut bytes: &[u8]) -> Result<u64, WireError> {
    Ok(decode_varint(&mut bytes)?)
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
        return Err(WireError("buffer underflow".into()));
    }
    Ok(buf.get_u32_le())
}

/// Reads the next 8 bytes of a packed list.
#[inline]
pub fn next_fixed64(buf: &mut &[u8]) -> Result<u64, WireError> {
    if buf.remaining() < 8 {
        return Err(WireError("buffer underflow".into()));
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

/// Appends a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, value: u64) {
    encode_varint(value, out);
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
    fn zigzag_round_trips() {
        for n in [0i32, 1, -1, i32::MAX, i32::MIN] {
            assert_eq!(zigzag32(zigzag_encode32(n)), n);
        }
        for n in [0i64, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(zigzag64(zigzag_encode64(n)), n);
        }
    }
}
