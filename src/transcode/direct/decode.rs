//! JSON text → protobuf wire bytes in one pass, driven by plans: no `serde_json::Value`, no
//! `DynamicMessage`.
//!
//! It accepts exactly what serde_json and prost-reflect's mapping accept together — the same
//! JSON grammar and nesting limit, the same number and string forms per field type, the same
//! treatment of `null`, unknown fields, unknown enum names and oneofs — and its output decodes
//! to the message prost-reflect would build. A message that repeats a key is declined
//! ([`DecodeError::Declined`]): prost-reflect replaces the earlier value where an appended
//! encoding would merge, so the caller hands that (unusual) body to prost-reflect.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::plan::{FieldPlan, Kind, Label, MessagePlan, PlanId, Plans, Wkt};
use super::wire::{begin_len, end_len, put_key, put_len_field, put_varint, zigzag_encode32, zigzag_encode64};

/// serde_json's default nesting limit.
const DEPTH_LIMIT: u32 = 128;

/// Options of the JSON mapping that affect decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Unknown fields and enum names are errors (rather than skipped).
    pub deny_unknown_fields: bool,
}

/// Why a body was not transcoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The body is not valid for the message: `field` is the dotted path where, if known.
    Invalid {
        /// Where, as `a.b[2].c`.
        field: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Valid, but outside what the direct decoder reproduces; decode with prost-reflect.
    Declined,
}

/// Decodes `json` as message `id`, appending its encoding to `out`.
pub fn decode_message(
    plans: &Plans,
    id: PlanId,
    json: &[u8],
    options: DecodeOptions,
    out: &mut Vec<u8>,
) -> std::result::Result<(), DecodeError> {
    let mut decoder = Decoder::new(plans, json, options);
    decoder.skip_ws();
    let decoded = decoder.message_value(plans.message(id), out).and_then(|()| decoder.end());
    decoded.map_err(Failure::into_error)
}

/// Decodes `json` as the value of field `field` of message `id` (a body bound to one field),
/// appending that field's encoding to `out`. Error paths start with the field's proto name.
pub fn decode_field(
    plans: &Plans,
    id: PlanId,
    field: usize,
    json: &[u8],
    options: DecodeOptions,
    out: &mut Vec<u8>,
) -> std::result::Result<(), DecodeError> {
    let plan = plans.message(id);
    let field = plan.fields.get(field).ok_or(DecodeError::Declined)?;
    let mut decoder = Decoder::new(plans, json, options);
    decoder.path.push(Seg::Key(Cow::Borrowed(&field.proto_name)));
    decoder.skip_ws();
    let decoded = decoder.field(field, out).and_then(|()| {
        decoder.path.pop();
        decoder.end()
    });
    decoded.map_err(Failure::into_error)
}

#[derive(Debug)]
enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

struct Decoder<'a, 'p> {
    input: &'a [u8],
    /// The whole input as text, when it is UTF-8 (checked once, up front): strings and numbers
    /// are then sliced from it without a check of their own. A body that is not can still
    /// decode (serde_json does not check the strings of a value it skips), and must fail where
    /// serde_json fails when it does not: then each string read is checked where it ends.
    text: Option<&'a str>,
    pos: usize,
    plans: &'p Plans,
    options: DecodeOptions,
    path: Vec<Seg<'a>>,
    depth: u32,
}

/// A JSON number as serde_json classifies it.
#[derive(Debug, Clone, Copy)]
enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

/// What a JSON value is, for "invalid type" messages.
enum Found<'a> {
    Str(Cow<'a, str>),
    Num(Number),
    Bool(bool),
    Null,
    Seq,
    Map,
}

/// The decoder's own error: a [`DecodeError`] behind a pointer, so that a `Result` passed up
/// through the decoder's calls is no wider than its value (errors are rare; every value read
/// is returned as a `Result`).
struct Failure(Box<DecodeError>);

impl Failure {
    fn declined() -> Failure {
        Failure(Box::new(DecodeError::Declined))
    }

    fn into_error(self) -> DecodeError {
        *self.0
    }
}

type Result<T> = std::result::Result<T, Failure>;

impl<'a, 'p> Decoder<'a, 'p> {
    fn new(plans: &'p Plans, input: &'a [u8], options: DecodeOptions) -> Self {
        let text = std::str::from_utf8(input).ok();
        Decoder { input, text, pos: 0, plans, options, path: Vec::new(), depth: DEPTH_LIMIT }
    }

    fn end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos < self.input.len() {
            return Err(self.syntax("trailing characters"));
        }
        Ok(())
    }

    // === errors ===

    fn path_string(&self) -> Option<String> {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// An error about the value just read, with serde_json's position suffix.
    #[cold]
    fn invalid(&self, reason: impl std::fmt::Display) -> Failure {
        Failure(Box::new(DecodeError::Invalid {
            field: self.path_string(),
            reason: format!("{reason}{}", self.position()),
        }))
    }

    /// A JSON syntax error, named (as serde_path_to_error names it) by the value being read.
    fn syntax(&self, reason: &str) -> Failure {
        self.invalid(reason)
    }

    /// A syntax error that names no field.
    #[cold]
    fn unnamed(&self, reason: &str) -> Failure {
        Failure(Box::new(DecodeError::Invalid { field: None, reason: format!("{reason}{}", self.position()) }))
    }

    fn unnamed_from(&self, mut error: Failure) -> Failure {
        if let DecodeError::Invalid { field, .. } = &mut *error.0 {
            *field = None;
        }
        error
    }

    fn position(&self) -> String {
        let before = &self.input[..self.pos.min(self.input.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        format!(" at line {line} column {column}")
    }

    #[cold]
    fn wrong_type(&self, found: &Found<'_>, expected: &str) -> Failure {
        let found = match found {
            Found::Str(s) => format!("string {s:?}"),
            Found::Num(Number::Unsigned(n)) => format!("integer `{n}`"),
            Found::Num(Number::Signed(n)) => format!("integer `{n}`"),
            Found::Num(Number::Float(f)) => format!("floating point `{}`", FloatDisplay(*f)),
            Found::Bool(b) => format!("boolean `{b}`"),
            Found::Null => "null".to_owned(),
            Found::Seq => "sequence".to_owned(),
            Found::Map => "map".to_owned(),
        };
        self.invalid(format!("invalid type: {found}, expected {expected}"))
    }

    // === scanning ===

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&b) = self.input.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                break;
            }
            self.pos += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Consumes `byte` (after whitespace) or fails with a syntax error.
    fn expect(&mut self, byte: u8, what: &str) -> Result<()> {
        self.skip_ws();
        match self.peek() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.syntax(&format!("expected {what}"))),
            None => Err(self.syntax("EOF while parsing a value")),
        }
    }

    fn enter(&mut self) -> Result<()> {
        if self.depth == 0 {
            return Err(self.syntax("recursion limit exceeded"));
        }
        self.depth -= 1;
        Ok(())
    }

    fn leave(&mut self) {
        self.depth += 1;
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.input.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.syntax("expected ident"))
        }
    }

    /// Reads a string (the opening quote is next) without its quotes, unescaped, checking it is
    /// UTF-8 as serde_json does (only strings can hold non-ASCII bytes in valid JSON).
    fn string(&mut self) -> Result<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        self.scan_string();
        match self.peek() {
            None => Err(self.syntax("EOF while parsing a string")),
            Some(b'"') => {
                let end = self.pos;
                self.pos += 1;
                self.slice(start, end).map(Cow::Borrowed)
            }
            Some(b'\\') => self.escaped_string(start),
            Some(_) => Err(self.syntax("control character (\\u0000-\\u001F) found while parsing a string")),
        }
    }

    /// Moves to the next quote, backslash or control character of a string, or to the end of
    /// the input; eight bytes at a time.
    #[inline]
    fn scan_string(&mut self) {
        let input = self.input;
        while let Some(chunk) = input.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let mask = attention(u64::from_le_bytes(word));
            if mask != 0 {
                self.pos += (mask.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while input.get(self.pos).is_some_and(|&b| b != b'"' && b != b'\\' && b >= 0x20) {
            self.pos += 1;
        }
    }

    /// The input from `start` to `end` as text: sliced from the checked text, or checked now.
    /// Both ends are at ASCII bytes, which UTF-8 never splits.
    #[inline]
    fn slice(&self, start: usize, end: usize) -> Result<&'a str> {
        let text = match self.text {
            Some(text) => text.get(start..end),
            None => self.input.get(start..end).and_then(|bytes| std::str::from_utf8(bytes).ok()),
        };
        text.ok_or_else(|| self.invalid("invalid unicode code point"))
    }

    fn escaped_string(&mut self, start: usize) -> Result<Cow<'a, str>> {
        let mut out: Vec<u8> = self.input[start..self.pos].to_vec();
        loop {
            match self.peek() {
                None => return Err(self.syntax("EOF while parsing a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out)
                        .map(Cow::Owned)
                        .map_err(|_| self.invalid("invalid unicode code point"));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = self.peek().ok_or_else(|| self.syntax("EOF while parsing a string"))?;
                    self.pos += 1;
                    let decoded = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.syntax("invalid escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(decoded.encode_utf8(&mut buf).as_bytes());
                }
                Some(b) if b < 0x20 => {
                    return Err(self.syntax("control character (\\u0000-\\u001F) found while parsing a string"));
                }
                Some(_) => {
                    let run_start = self.pos;
                    while self.peek().is_some_and(|b| b != b'"' && b != b'\\' && b >= 0x20) {
                        self.pos += 1;
                    }
                    out.extend_from_slice(&self.input[run_start..self.pos]);
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u16> {
        let digits = self.input.get(self.pos..self.pos + 4).ok_or_else(|| self.syntax("EOF while parsing a string"))?;
        let mut n = 0u16;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or_else(|| self.syntax("invalid escape"))?;
            n = n << 4 | u16::try_from(v).unwrap_or(0);
        }
        self.pos += 4;
        Ok(n)
    }

    fn unicode_escape(&mut self) -> Result<char> {
        let first = self.hex4()?;
        let code = match first {
            0xDC00..=0xDFFF => return Err(self.syntax("lone leading surrogate in hex escape")),
            0xD800..=0xDBFF => {
                if self.input.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.syntax("unexpected end of hex escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.syntax("lone leading surrogate in hex escape"));
                }
                0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
            }
            n => u32::from(n),
        };
        char::from_u32(code).ok_or_else(|| self.syntax("invalid unicode code point"))
    }

    /// Reads a number as serde_json does: integers as `u64`/`i64` when they fit, else `f64`.
    fn number(&mut self) -> Result<Number> {
        let (text, negative, float) = self.number_text()?;
        if !float && let Some(n) = short_integer(text.as_bytes(), negative) {
            return Ok(n);
        }
        if float && let Some(f) = short_float(text.as_bytes()) {
            return Ok(Number::Float(f));
        }
        if !float {
            if negative {
                if let Ok(n) = text.parse::<i64>() {
                    return Ok(Number::Signed(n));
                }
            } else if let Ok(n) = text.parse::<u64>() {
                return Ok(Number::Unsigned(n));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Number::Float(f)),
            _ => Err(self.syntax("number out of range")),
        }
    }

    /// Reads a number's text, checking its syntax only; whether it is negative, and whether it
    /// has a fraction or an exponent. A skipped value stops here: its range does not matter
    /// (serde_json, the reference, ignores `1e999` in an unknown field too).
    fn number_text(&mut self) -> Result<(&'a str, bool, bool)> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(self.syntax("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
            _ => return Err(self.syntax("invalid number")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            float = true;
            self.pos += 1;
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.syntax("invalid number"));
            }
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            float = true;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err(self.syntax("invalid number"));
            }
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        Ok((self.slice(start, self.pos)?, negative, float))
    }

    /// Reads a scalar value, or identifies an array or object without reading it.
    fn found(&mut self) -> Result<Found<'a>> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => Ok(Found::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => Ok(Found::Num(self.number()?)),
            Some(b't') => self.literal(b"true").map(|()| Found::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Found::Bool(false)),
            Some(b'n') => self.literal(b"null").map(|()| Found::Null),
            // Only ever the wrong type where it is found: reported before its contents are read,
            // as serde_json does.
            Some(b'[') => Ok(Found::Seq),
            Some(b'{') => Ok(Found::Map),
            Some(_) => Err(self.syntax("expected value")),
            None => Err(self.syntax("EOF while parsing a value")),
        }
    }

    /// Skips a value, checking that it is valid JSON as serde_json's `ignore_value` checks it:
    /// its strings are not checked for UTF-8 or for lone surrogates, and its nesting has no
    /// limit, so the containers open are a stack on the heap rather than recursion.
    fn skip_value(&mut self) -> Result<()> {
        // The closing byte of each container open.
        let mut open: Vec<u8> = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() != Some(b']') {
                        open.push(b']');
                        continue;
                    }
                    self.pos += 1;
                }
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() != Some(b'}') {
                        open.push(b'}');
                        self.skip_key()?;
                        continue;
                    }
                    self.pos += 1;
                }
                Some(b'"') => self.skip_string()?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number_text()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.syntax("expected value")),
                None => return Err(self.syntax("EOF while parsing a value")),
            }
            // After a value: close what it ends, up to the next element or the end.
            loop {
                let Some(&close) = open.last() else { return Ok(()) };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        break;
                    }
                    Some(b) if b == close => {
                        self.pos += 1;
                        open.pop();
                    }
                    Some(_) if close == b']' => return Err(self.syntax("expected `,` or `]`")),
                    Some(_) => return Err(self.syntax("expected `,` or `}`")),
                    None if close == b']' => return Err(self.syntax("EOF while parsing a list")),
                    None => return Err(self.syntax("EOF while parsing an object")),
                }
            }
        }
    }

    /// Skips a key and its colon in an object being skipped.
    fn skip_key(&mut self) -> Result<()> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.skip_string()?,
            Some(_) => return Err(self.syntax("key must be a string")),
            None => return Err(self.syntax("EOF while parsing an object")),
        }
        self.skip_ws();
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.syntax("expected `:`")),
            None => Err(self.syntax("EOF while parsing an object")),
        }
    }

    /// Skips a string (the opening quote is next): its escapes must be well formed, but what
    /// they and its bytes encode is not checked.
    fn skip_string(&mut self) -> Result<()> {
        self.pos += 1;
        loop {
            self.scan_string();
            match self.peek() {
                None => return Err(self.syntax("EOF while parsing a string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                        Some(b'u') => {
                            self.pos += 1;
                            self.hex4()?;
                        }
                        Some(_) => return Err(self.syntax("invalid escape")),
                        None => return Err(self.syntax("EOF while parsing a string")),
                    }
                }
                Some(_) => {
                    return Err(self.syntax("control character (\\u0000-\\u001F) found while parsing a string"));
                }
            }
        }
    }

    /// Iterates an object's keys: calls `entry` with each key, which must call [`Self::colon`]
    /// before reading the value (prost-reflect judges a key before the `:` is read).
    ///
    /// A malformed separator or key names no field: serde_path_to_error cannot tell which key
    /// it belongs to either.
    fn object(&mut self, mut entry: impl FnMut(&mut Self, Cow<'a, str>) -> Result<()>) -> Result<()> {
        self.object_with(|d| {
            let key = d.key()?;
            entry(d, key)
        })
    }

    /// As [`Self::object`], but `entry` is called at each key's opening quote and reads the
    /// key itself ([`Self::key`], or the faster [`Self::expected_key`]).
    fn object_with(&mut self, mut entry: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.enter()?;
        self.pos += 1;
        let mut first = true;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                None => return Err(self.unnamed("EOF while parsing an object")),
                Some(b',') if !first => {
                    self.pos += 1;
                    self.skip_ws();
                    match self.peek() {
                        Some(b'}') => return Err(self.unnamed("trailing comma")),
                        None => return Err(self.unnamed("EOF while parsing a value")),
                        _ => {}
                    }
                }
                Some(_) if !first => return Err(self.unnamed("expected `,` or `}`")),
                Some(_) => {}
            }
            first = false;
            if self.peek() != Some(b'"') {
                return Err(self.unnamed("key must be a string"));
            }
            entry(self)?;
        }
        self.leave();
        Ok(())
    }

    /// Reads an object's key (its opening quote is next).
    fn key(&mut self) -> Result<Cow<'a, str>> {
        self.string().map_err(|e| self.unnamed_from(e))
    }

    /// Reads the key and colon `quoted` (`"name":`) and the whitespace after them, if they
    /// are next as written: one comparison in place of reading a key and looking it up.
    /// Returns the key.
    #[inline]
    fn expected_key(&mut self, quoted: &[u8]) -> Option<Cow<'a, str>> {
        let end = self.pos + quoted.len();
        if self.input.get(self.pos..end) != Some(quoted) {
            return None;
        }
        let key = self.slice(self.pos + 1, end - 2).ok()?;
        self.pos = end;
        self.skip_ws();
        Some(Cow::Borrowed(key))
    }

    /// Consumes the `:` after a key and the whitespace before the value.
    #[inline]
    fn colon(&mut self) -> Result<()> {
        if self.peek() == Some(b':') {
            self.pos += 1;
        } else {
            self.expect(b':', "`:`")?;
        }
        self.skip_ws();
        Ok(())
    }

    /// Iterates an array: calls `element` positioned at each element.
    fn array(&mut self, mut element: impl FnMut(&mut Self, usize) -> Result<()>) -> Result<()> {
        self.enter()?;
        self.pos += 1;
        let mut index = 0;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                None => return Err(self.syntax("EOF while parsing a list")),
                Some(b',') if index > 0 => {
                    self.pos += 1;
                    self.skip_ws();
                    match self.peek() {
                        Some(b']') => return Err(self.syntax("trailing comma")),
                        None => return Err(self.syntax("EOF while parsing a value")),
                        _ => {}
                    }
                }
                Some(_) if index > 0 => return Err(self.syntax("expected `,` or `]`")),
                Some(_) => {}
            }
            element(self, index)?;
            index += 1;
        }
        self.leave();
        Ok(())
    }

    // === messages ===

    /// A message value at the current position (an object, or a well-known type's form).
    fn message_value(&mut self, plan: &'p MessagePlan, out: &mut Vec<u8>) -> Result<()> {
        if let Some(wkt) = plan.wkt {
            return self.well_known(wkt, out);
        }
        if self.peek() != Some(b'{') {
            let found = self.found()?;
            return Err(self.wrong_type(&found, "a map"));
        }
        let mut seen = Marks::new(plan.fields.len());
        let mut oneofs = Marks::new(plan.oneofs.len());
        let mut guess = 0;
        self.object_with(|d| {
            // Objects mostly list fields in the message's order: the one after the last found
            // is tried first, its key and colon in one comparison.
            let (index, key) = match plan.expected_key(guess).and_then(|quoted| d.expected_key(quoted)) {
                Some(_) if seen.mark(guess) => return Err(Failure::declined()),
                Some(key) => (guess, key),
                None => {
                    let key = d.key()?;
                    let Some(index) = plan.field_by_name(key.as_bytes()) else { return d.unknown_field(key) };
                    if seen.mark(index) {
                        return Err(Failure::declined());
                    }
                    d.colon()?;
                    (index, key)
                }
            };
            guess = index + 1;
            let field = &plan.fields[index];
            d.path.push(Seg::Key(key));
            let before = out.len();
            d.field(field, out)?;
            d.path.pop();
            // A oneof member counts once it holds a value (`null` and skipped enum names do not).
            if let Some(oneof) = field.oneof
                && out.len() > before
                && oneofs.mark(usize::from(oneof))
            {
                let name = plan.oneofs.get(oneof as usize).map_or("", |n| &**n);
                return Err(d.invalid(format!("multiple fields provided for oneof '{name}'")));
            }
            Ok(())
        })
    }

    /// A key that names no field (its colon is next): an error when unknown fields are
    /// refused; otherwise its value is skipped, and a malformed one still names the key.
    fn unknown_field(&mut self, key: Cow<'a, str>) -> Result<()> {
        if self.options.deny_unknown_fields {
            self.path.push(Seg::Key(key));
            let unknown = DecodeError::Invalid { field: self.path_string(), reason: "unknown field".into() };
            return Err(Failure(Box::new(unknown)));
        }
        self.colon()?;
        self.path.push(Seg::Key(key));
        self.skip_value()?;
        self.path.pop();
        Ok(())
    }

    /// A field's value at the current position, written with its tag (or nothing, for `null`
    /// and for defaults of fields without presence).
    fn field(&mut self, field: &'p FieldPlan, out: &mut Vec<u8>) -> Result<()> {
        if self.peek() == Some(b'n') {
            return self.null_field(field, out);
        }
        match field.label {
            Label::Singular => self.singular(field, out),
            Label::Repeated { packed, .. } => self.list(field, packed, out),
            Label::Map { key, value } => self.map(field, key, value, out),
        }
    }

    /// `null` leaves a field unset, except for `google.protobuf.Value` (a null value) and
    /// `google.protobuf.NullValue`.
    fn null_field(&mut self, field: &'p FieldPlan, out: &mut Vec<u8>) -> Result<()> {
        self.literal(b"null")?;
        if field.label != Label::Singular {
            return Ok(());
        }
        match field.kind {
            Kind::Message(id) if self.plans.message(id).wkt == Some(Wkt::Value) => {
                put_key(out, &field.len_tag);
                out.extend_from_slice(&[2, 0x08, 0x00]); // Value { null_value: NULL_VALUE }
            }
            Kind::Enum(id) if self.plans.enumeration(id).is_null_value => {
                put_key(out, &field.tag);
                out.push(0);
            }
            _ => {}
        }
        Ok(())
    }

    fn singular(&mut self, field: &'p FieldPlan, out: &mut Vec<u8>) -> Result<()> {
        if let Kind::Message(id) = field.kind {
            put_key(out, &field.len_tag);
            let start = begin_len(out);
            self.nested_message(id, out)?;
            end_len(out, start);
            return Ok(());
        }
        if field.kind == Kind::String && self.peek() == Some(b'"') {
            // The commonest field, written without passing through `Found` and `Scalar`.
            let text = self.string()?;
            if field.presence || !text.is_empty() {
                put_key(out, &field.tag);
                put_varint(out, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
            return Ok(());
        }
        let Some(value) = self.scalar(field.kind)? else { return Ok(()) };
        if field.presence || !value.is_default(field.kind, field.default_enum) {
            put_key(out, &field.tag);
            value.write(out);
        }
        Ok(())
    }

    fn nested_message(&mut self, id: PlanId, out: &mut Vec<u8>) -> Result<()> {
        self.message_value(self.plans.message(id), out)
    }

    fn list(&mut self, field: &'p FieldPlan, packed: bool, out: &mut Vec<u8>) -> Result<()> {
        if self.peek() != Some(b'[') {
            let found = self.found()?;
            return Err(self.wrong_type(&found, "a list"));
        }
        let tag_start = out.len();
        let packed_start = packed.then(|| {
            put_key(out, &field.len_tag);
            begin_len(out)
        });
        self.array(|d, i| {
            d.path.push(Seg::Index(i));
            match field.kind {
                Kind::Message(id) => {
                    put_key(out, &field.len_tag);
                    let start = begin_len(out);
                    d.element_message(id, out)?;
                    end_len(out, start);
                }
                kind => {
                    if let Some(value) = d.element_scalar(kind)? {
                        if !packed {
                            put_key(out, &field.tag);
                        }
                        value.write(out);
                    }
                }
            }
            d.path.pop();
            Ok(())
        })?;
        if let Some(start) = packed_start {
            if out.len() == start {
                out.truncate(tag_start);
            } else {
                end_len(out, start);
            }
        }
        Ok(())
    }

    /// A list element or map value that is a message: `null` is only a `Value`.
    fn element_message(&mut self, id: PlanId, out: &mut Vec<u8>) -> Result<()> {
        self.nested_message(id, out)
    }

    /// A list element that is a scalar or enum: `null` is only a `NullValue`.
    fn element_scalar(&mut self, kind: Kind) -> Result<Option<Scalar<'a>>> {
        if self.peek() == Some(b'n')
            && let Kind::Enum(id) = kind
            && self.plans.enumeration(id).is_null_value
        {
            self.literal(b"null")?;
            return Ok(Some(Scalar::Varint(0)));
        }
        self.scalar(kind)
    }

    fn map(&mut self, field: &'p FieldPlan, key_kind: Kind, value_kind: Kind, out: &mut Vec<u8>) -> Result<()> {
        if self.peek() != Some(b'{') {
            let found = self.found()?;
            return Err(self.wrong_type(&found, "a map"));
        }
        self.object(|d, key| {
            let entry_start = out.len();
            put_key(out, &field.len_tag);
            let start = begin_len(out);
            let key_value = d.map_key(key_kind, &key)?;
            d.colon()?;
            out.push(super::plan::natural_wire_type(key_kind) | 1 << 3);
            key_value.write(out);
            d.path.push(Seg::Key(key));
            let kept = match value_kind {
                Kind::Message(id) => {
                    out.push(2 << 3 | 2);
                    let value_start = begin_len(out);
                    d.element_message(id, out)?;
                    end_len(out, value_start);
                    true
                }
                kind => match d.element_scalar(kind)? {
                    Some(value) => {
                        out.push(super::plan::natural_wire_type(kind) | 2 << 3);
                        value.write(out);
                        true
                    }
                    // An unknown enum name, skipped: so is the entry.
                    None => false,
                },
            };
            d.path.pop();
            if kept {
                end_len(out, start);
            } else {
                out.truncate(entry_start);
            }
            Ok(())
        })
    }

    fn map_key(&self, kind: Kind, key: &str) -> Result<Scalar<'static>> {
        if kind == Kind::String {
            return Ok(Scalar::Bytes(Cow::Owned(key.as_bytes().to_vec())));
        }
        let parsed = match kind {
            Kind::Bool => key.parse::<bool>().map(|b| Scalar::Varint(u64::from(b))).map_err(|e| e.to_string()),
            Kind::Int32 => key.parse::<i32>().map(|n| Scalar::Varint(n as i64 as u64)).map_err(|e| e.to_string()),
            Kind::Sint32 => key.parse::<i32>().map(|n| Scalar::Varint(zigzag_encode32(n))).map_err(|e| e.to_string()),
            Kind::Sfixed32 => key.parse::<i32>().map(|n| Scalar::Fixed32(n as u32)).map_err(|e| e.to_string()),
            Kind::Int64 => key.parse::<i64>().map(|n| Scalar::Varint(n as u64)).map_err(|e| e.to_string()),
            Kind::Sint64 => key.parse::<i64>().map(|n| Scalar::Varint(zigzag_encode64(n))).map_err(|e| e.to_string()),
            Kind::Sfixed64 => key.parse::<i64>().map(|n| Scalar::Fixed64(n as u64)).map_err(|e| e.to_string()),
            Kind::Uint32 => key.parse::<u32>().map(|n| Scalar::Varint(u64::from(n))).map_err(|e| e.to_string()),
            Kind::Fixed32 => key.parse::<u32>().map(Scalar::Fixed32).map_err(|e| e.to_string()),
            Kind::Uint64 => key.parse::<u64>().map(Scalar::Varint).map_err(|e| e.to_string()),
            Kind::Fixed64 => key.parse::<u64>().map(Scalar::Fixed64).map_err(|e| e.to_string()),
            _ => Err("invalid type for map key".to_owned()),
        };
        parsed.map_err(|e| self.invalid(e))
    }

    // === scalars ===

    /// A scalar or enum value; `None` for an unknown enum name when unknown names are skipped.
    fn scalar(&mut self, kind: Kind) -> Result<Option<Scalar<'a>>> {
        let found = self.found()?;
        let value = match kind {
            Kind::Double => Scalar::Fixed64(self.double(&found)?.to_bits()),
            Kind::Float => Scalar::Fixed32(self.float(&found)?.to_bits()),
            Kind::Int32 => Scalar::Varint(self.int32(&found)? as i64 as u64),
            Kind::Sint32 => Scalar::Varint(zigzag_encode32(self.int32(&found)?)),
            Kind::Sfixed32 => Scalar::Fixed32(self.int32(&found)? as u32),
            Kind::Int64 => Scalar::Varint(self.int64(&found)? as u64),
            Kind::Sint64 => Scalar::Varint(zigzag_encode64(self.int64(&found)?)),
            Kind::Sfixed64 => Scalar::Fixed64(self.int64(&found)? as u64),
            Kind::Uint32 => Scalar::Varint(u64::from(self.uint32(&found)?)),
            Kind::Fixed32 => Scalar::Fixed32(self.uint32(&found)?),
            Kind::Uint64 => Scalar::Varint(self.uint64(&found)?),
            Kind::Fixed64 => Scalar::Fixed64(self.uint64(&found)?),
            Kind::Bool => match found {
                Found::Bool(b) => Scalar::Varint(u64::from(b)),
                other => return Err(self.wrong_type(&other, "a boolean")),
            },
            Kind::String => match found {
                Found::Str(s) => Scalar::Bytes(bytes_of(s)),
                other => return Err(self.wrong_type(&other, "a string")),
            },
            Kind::Bytes => Scalar::Bytes(Cow::Owned(self.bytes(found)?)),
            Kind::Enum(id) => return self.enumeration(id, found),
            Kind::Message(_) => return Err(Failure::declined()),
        };
        Ok(Some(value))
    }

    fn double(&self, found: &Found<'_>) -> Result<f64> {
        match found {
            Found::Num(Number::Float(f)) => Ok(*f),
            Found::Num(Number::Unsigned(n)) => Ok(*n as f64),
            Found::Num(Number::Signed(n)) => Ok(*n as f64),
            Found::Str(s) => match s.parse::<f64>() {
                Ok(v) => Ok(v),
                Err(_) if &**s == "Infinity" => Ok(f64::INFINITY),
                Err(_) if &**s == "-Infinity" => Ok(f64::NEG_INFINITY),
                Err(_) if &**s == "NaN" => Ok(f64::NAN),
                Err(e) => Err(self.invalid(e)),
            },
            other => Err(self.wrong_type(other, "a 64-bit floating point value")),
        }
    }

    fn float(&self, found: &Found<'_>) -> Result<f32> {
        match found {
            Found::Num(Number::Float(v)) => {
                if *v < f64::from(f32::MIN) || *v > f64::from(f32::MAX) {
                    Err(self.invalid("float value out of range"))
                } else {
                    Ok(*v as f32)
                }
            }
            Found::Num(Number::Unsigned(n)) => Ok(*n as f32),
            Found::Num(Number::Signed(n)) => Ok(*n as f32),
            Found::Str(s) => match s.parse::<f32>() {
                Ok(v) => Ok(v),
                Err(_) if &**s == "Infinity" => Ok(f32::INFINITY),
                Err(_) if &**s == "-Infinity" => Ok(f32::NEG_INFINITY),
                Err(_) if &**s == "NaN" => Ok(f32::NAN),
                Err(e) => Err(self.invalid(e)),
            },
            other => Err(self.wrong_type(other, "a 32-bit floating point value")),
        }
    }

    fn int32(&self, found: &Found<'_>) -> Result<i32> {
        match found {
            Found::Str(s) => s.parse().map_err(|e| self.invalid(e)),
            Found::Num(Number::Unsigned(n)) => i32::try_from(*n).map_err(|e| self.invalid(e)),
            Found::Num(Number::Signed(n)) => i32::try_from(*n).map_err(|e| self.invalid(e)),
            Found::Num(Number::Float(v)) => {
                if v.fract() != 0.0 {
                    Err(self.invalid("expected integer value"))
                } else if *v < f64::from(i32::MIN) || *v > f64::from(i32::MAX) {
                    Err(self.invalid("float value out of range"))
                } else {
                    Ok(*v as i32)
                }
            }
            other => Err(self.wrong_type(other, "a 32-bit signed integer")),
        }
    }

    fn uint32(&self, found: &Found<'_>) -> Result<u32> {
        match found {
            Found::Str(s) => s.parse().map_err(|e| self.invalid(e)),
            Found::Num(Number::Unsigned(n)) => u32::try_from(*n).map_err(|e| self.invalid(e)),
            Found::Num(Number::Signed(n)) => u32::try_from(*n).map_err(|e| self.invalid(e)),
            Found::Num(Number::Float(v)) => {
                if v.fract() != 0.0 {
                    Err(self.invalid("expected integer value"))
                } else if *v < f64::from(u32::MIN) || *v > f64::from(u32::MAX) {
                    Err(self.invalid("float value out of range"))
                } else {
                    Ok(*v as u32)
                }
            }
            other => Err(self.wrong_type(other, "a 32-bit unsigned integer or decimal string")),
        }
    }

    fn int64(&self, found: &Found<'_>) -> Result<i64> {
        match found {
            Found::Str(s) => s.parse().map_err(|e| self.invalid(e)),
            Found::Num(Number::Unsigned(n)) => i64::try_from(*n).map_err(|e| self.invalid(e)),
            Found::Num(Number::Signed(n)) => Ok(*n),
            Found::Num(Number::Float(v)) => {
                // The same bounds as prost-reflect, saturating conversion included.
                if v.fract() != 0.0 {
                    Err(self.invalid("expected integer value"))
                } else if *v < (i64::MIN as f64) || *v > (i64::MAX as f64) {
                    Err(self.invalid("float value out of range"))
                } else {
                    Ok(*v as i64)
                }
            }
            other => Err(self.wrong_type(other, "a 64-bit signed integer or decimal string")),
        }
    }

    fn uint64(&self, found: &Found<'_>) -> Result<u64> {
        match found {
            Found::Str(s) => s.parse().map_err(|e| self.invalid(e)),
            Found::Num(Number::Unsigned(n)) => Ok(*n),
            Found::Num(Number::Signed(n)) => u64::try_from(*n).map_err(|e| self.invalid(e)),
            Found::Num(Number::Float(v)) => {
                if v.fract() != 0.0 {
                    Err(self.invalid("expected integer value"))
                } else if *v < (u64::MIN as f64) || *v > (u64::MAX as f64) {
                    Err(self.invalid("float value out of range"))
                } else {
                    Ok(*v as u64)
                }
            }
            other => Err(self.wrong_type(other, "a 64-bit unsigned integer or decimal string")),
        }
    }

    fn bytes(&self, found: Found<'_>) -> Result<Vec<u8>> {
        let Found::Str(text) = found else { return Err(self.wrong_type(&found, "a base64-encoded string")) };
        const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent);
        const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
        const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
        let mut buf = Vec::new();
        match STANDARD.decode_vec(&*text, &mut buf) {
            Ok(()) => Ok(buf),
            Err(base64::DecodeError::InvalidByte(_, b'-' | b'_')) => {
                buf.clear();
                URL_SAFE
                    .decode_vec(&*text, &mut buf)
                    .map(|()| buf)
                    .map_err(|e| self.invalid(format!("invalid base64: {e}")))
            }
            Err(e) => Err(self.invalid(format!("invalid base64: {e}"))),
        }
    }

    fn enumeration(&self, id: super::plan::EnumId, found: Found<'_>) -> Result<Option<Scalar<'static>>> {
        let plan = self.plans.enumeration(id);
        if plan.is_null_value {
            return match found {
                Found::Null => Ok(Some(Scalar::Varint(0))),
                Found::Str(s) if s == "NULL_VALUE" => Ok(Some(Scalar::Varint(0))),
                Found::Str(_) if self.options.deny_unknown_fields => Err(self.invalid("expected null")),
                Found::Str(_) => Ok(None),
                other => Err(self.wrong_type(&other, "null")),
            };
        }
        match found {
            Found::Str(name) => match plan.number(name.as_bytes()) {
                Some(n) => Ok(Some(Scalar::Varint(n as i64 as u64))),
                None if self.options.deny_unknown_fields => {
                    Err(self.invalid(format!("unrecognized enum value '{name}'")))
                }
                None => Ok(None),
            },
            Found::Num(Number::Unsigned(n)) => {
                i32::try_from(n).map(|n| Some(Scalar::Varint(n as i64 as u64))).map_err(|e| self.invalid(e))
            }
            Found::Num(Number::Signed(n)) => {
                i32::try_from(n).map(|n| Some(Scalar::Varint(n as i64 as u64))).map_err(|e| self.invalid(e))
            }
            other => Err(self.wrong_type(&other, "a string or integer")),
        }
    }

    // === well-known types ===

    /// A well-known type's JSON form at the current position; appends the message's fields.
    fn well_known(&mut self, wkt: Wkt, out: &mut Vec<u8>) -> Result<()> {
        match wkt {
            Wkt::Timestamp => {
                let value = self.wkt_string("a rfc3339 timestamp string")?;
                let t = super::wkt::parse_timestamp(&value).map_err(|e| self.invalid(e))?;
                if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&t.seconds) {
                    return Err(self.invalid("timestamp out of range"));
                }
                put_seconds_and_nanos(out, t.seconds, t.nanos);
            }
            Wkt::Duration => {
                let value = self.wkt_string("a duration string")?;
                let d: prost_types::Duration = value.parse().map_err(|e| self.invalid(e))?;
                if d.seconds.unsigned_abs() > MAX_DURATION_SECONDS || d.nanos.unsigned_abs() > MAX_DURATION_NANOS {
                    return Err(self.invalid("duration out of range"));
                }
                put_seconds_and_nanos(out, d.seconds, d.nanos);
            }
            Wkt::FieldMask => {
                let value = self.wkt_string("a field mask string")?;
                for path in value.split(',').filter(|p| !p.is_empty()) {
                    let mut snake = String::with_capacity(path.len() + 4);
                    for (i, part) in path.split('.').enumerate() {
                        if i > 0 {
                            snake.push('.');
                        }
                        super::wkt::camel_part_to_snake(&mut snake, part)
                            .map_err(|_| self.invalid("invalid field mask"))?;
                    }
                    prost::encoding::string::encode(1, &snake, out);
                }
            }
            Wkt::Struct => self.struct_fields(out)?,
            Wkt::ListValue => self.list_values(out)?,
            Wkt::Value => self.value(out)?,
            Wkt::Empty => {
                if self.peek() != Some(b'{') {
                    let found = self.found()?;
                    return Err(self.wrong_type(&found, "an empty map"));
                }
                let mut any = false;
                self.object(|d, key| {
                    any = true;
                    d.colon()?;
                    d.path.push(Seg::Key(key));
                    d.skip_value()?;
                    d.path.pop();
                    Ok(())
                })?;
                if any {
                    return Err(self.invalid("unexpected value in map"));
                }
            }
            Wkt::DoubleValue => {
                let v = self.wrapped(|d, f| d.double(f))?;
                if v != 0.0 {
                    prost::encoding::double::encode(1, &v, out);
                }
            }
            Wkt::FloatValue => {
                let v = self.wrapped(|d, f| d.float(f))?;
                if v != 0.0 {
                    prost::encoding::float::encode(1, &v, out);
                }
            }
            Wkt::Int64Value => {
                let v = self.wrapped(|d, f| d.int64(f))?;
                if v != 0 {
                    prost::encoding::int64::encode(1, &v, out);
                }
            }
            Wkt::UInt64Value => {
                let v = self.wrapped(|d, f| d.uint64(f))?;
                if v != 0 {
                    prost::encoding::uint64::encode(1, &v, out);
                }
            }
            Wkt::Int32Value => {
                let v = self.wrapped(|d, f| d.int32(f))?;
                if v != 0 {
                    prost::encoding::int32::encode(1, &v, out);
                }
            }
            Wkt::UInt32Value => {
                let v = self.wrapped(|d, f| d.uint32(f))?;
                if v != 0 {
                    prost::encoding::uint32::encode(1, &v, out);
                }
            }
            Wkt::BoolValue => {
                let v = self.wrapped(|d, f| match f {
                    Found::Bool(b) => Ok(*b),
                    other => Err(d.wrong_type(other, "a boolean")),
                })?;
                if v {
                    prost::encoding::bool::encode(1, &v, out);
                }
            }
            Wkt::StringValue => {
                let found = self.found()?;
                let Found::Str(s) = found else { return Err(self.wrong_type(&found, "a string")) };
                if !s.is_empty() {
                    put_len_field(out, 1, s.as_bytes());
                }
            }
            Wkt::BytesValue => {
                let found = self.found()?;
                let v = self.bytes(found)?;
                if !v.is_empty() {
                    prost::encoding::bytes::encode(1, &v, out);
                }
            }
        }
        Ok(())
    }

    fn wkt_string(&mut self, expected: &str) -> Result<Cow<'a, str>> {
        match self.found()? {
            Found::Str(s) => Ok(s),
            other => Err(self.wrong_type(&other, expected)),
        }
    }

    fn wrapped<T>(&mut self, parse: impl FnOnce(&Self, &Found<'a>) -> Result<T>) -> Result<T> {
        let found = self.found()?;
        parse(self, &found)
    }

    /// `google.protobuf.Struct`: `map<string, Value> fields = 1`.
    fn struct_fields(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.peek() != Some(b'{') {
            let found = self.found()?;
            return Err(self.wrong_type(&found, "a map"));
        }
        self.object(|d, key| {
            d.colon()?;
            out.push(1 << 3 | 2);
            let entry = begin_len(out);
            put_len_field(out, 1, key.as_bytes());
            out.push(2 << 3 | 2);
            let value = begin_len(out);
            d.path.push(Seg::Key(key));
            d.value(out)?;
            d.path.pop();
            end_len(out, value);
            end_len(out, entry);
            Ok(())
        })
    }

    /// `google.protobuf.ListValue`: `repeated Value values = 1`.
    fn list_values(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.peek() != Some(b'[') {
            let found = self.found()?;
            return Err(self.wrong_type(&found, "a list"));
        }
        self.array(|d, i| {
            out.push(1 << 3 | 2);
            let start = begin_len(out);
            d.path.push(Seg::Index(i));
            d.value(out)?;
            d.path.pop();
            end_len(out, start);
            Ok(())
        })
    }

    /// `google.protobuf.Value`: one of null (1), number (2), string (3), bool (4), struct (5),
    /// list (6).
    fn value(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => {
                out.push(5 << 3 | 2);
                let start = begin_len(out);
                self.struct_fields(out)?;
                end_len(out, start);
            }
            Some(b'[') => {
                out.push(6 << 3 | 2);
                let start = begin_len(out);
                self.list_values(out)?;
                end_len(out, start);
            }
            _ => match self.found()? {
                Found::Null => out.extend_from_slice(&[1 << 3, 0]),
                Found::Bool(b) => out.extend_from_slice(&[4 << 3, u8::from(b)]),
                Found::Num(n) => {
                    let v = match n {
                        Number::Float(f) => f,
                        Number::Unsigned(u) => u as f64,
                        Number::Signed(s) => s as f64,
                    };
                    prost::encoding::double::encode(2, &v, out);
                }
                Found::Str(s) => put_len_field(out, 3, s.as_bytes()),
                Found::Seq | Found::Map => return Err(self.syntax("expected value")),
            },
        }
        Ok(())
    }
}

const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
const MAX_DURATION_NANOS: u32 = 999_999_999;

/// The fields of a `Timestamp` or a `Duration` (`int64 seconds = 1; int32 nanos = 2;`), as
/// prost encodes them: zeros left out.
fn put_seconds_and_nanos(out: &mut Vec<u8>, seconds: i64, nanos: i32) {
    if seconds != 0 {
        out.push(0x08);
        put_varint(out, seconds as u64);
    }
    if nanos != 0 {
        out.push(0x10);
        put_varint(out, i64::from(nanos) as u64);
    }
}

/// A scalar value, ready to be written after its tag.
enum Scalar<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Bytes(Cow<'a, [u8]>),
}

impl Scalar<'_> {
    #[inline]
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Scalar::Varint(n) => put_varint(out, *n),
            Scalar::Fixed32(n) => out.extend_from_slice(&n.to_le_bytes()),
            Scalar::Fixed64(n) => out.extend_from_slice(&n.to_le_bytes()),
            Scalar::Bytes(b) => {
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
        }
    }

    /// Whether this is the default value, which a field without presence does not encode.
    #[inline]
    fn is_default(&self, kind: Kind, default_enum: i32) -> bool {
        match (self, kind) {
            // Floats compare by value: -0.0 is a default too, NaN is not.
            (Scalar::Fixed32(n), Kind::Float) => f32::from_bits(*n) == 0.0,
            (Scalar::Fixed64(n), Kind::Double) => f64::from_bits(*n) == 0.0,
            (Scalar::Varint(n), Kind::Enum(_)) => *n == default_enum as i64 as u64,
            (Scalar::Varint(n), _) => *n == 0,
            (Scalar::Fixed32(n), _) => *n == 0,
            (Scalar::Fixed64(n), _) => *n == 0,
            (Scalar::Bytes(b), _) => b.is_empty(),
        }
    }
}

/// Formats a float the way serde's "invalid type" messages do.
struct FloatDisplay(f64);

impl std::fmt::Display for FloatDisplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.fract() == 0.0 && self.0.is_finite() { write!(f, "{:.1}", self.0) } else { write!(f, "{}", self.0) }
    }
}

/// A string's UTF-8 as the bytes a `string` field is encoded with.
fn bytes_of(s: Cow<'_, str>) -> Cow<'_, [u8]> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// An integer's text (its syntax checked, `-` included when `negative`) of up to 19 digits, as
/// serde_json classifies it, without the standard parser's overflow check per digit: 19
/// digits cannot overflow a `u64`. `None` for longer ones.
#[inline]
fn short_integer(text: &[u8], negative: bool) -> Option<Number> {
    let digits = if negative { text.get(1..)? } else { text };
    if digits.len() > 19 {
        return None;
    }
    let magnitude = digits.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    if !negative {
        Some(Number::Unsigned(magnitude))
    } else if magnitude <= 1 << 63 {
        // -2^63 wraps to itself, which is `i64::MIN`.
        Some(Number::Signed((magnitude as i64).wrapping_neg()))
    } else {
        None
    }
}

/// A number's text with a fraction and no exponent (its syntax checked), of at most 15
/// digits: the nearest double, as the standard parser finds it, without its general
/// machinery. The digits are exact in a double's mantissa and their power of ten (at most
/// 10^15) is exact too, so one correctly rounded division is the nearest double (Clinger's
/// fast path, which the standard parser also takes for these). `None` for any other text.
#[inline]
fn short_float(text: &[u8]) -> Option<f64> {
    const POWERS: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.len() > 16 {
        return None;
    }
    let mut mantissa = 0u64;
    let mut fraction = None;
    for (i, &d) in digits.iter().enumerate() {
        match d {
            b'0'..=b'9' => mantissa = mantissa * 10 + u64::from(d - b'0'),
            b'.' => fraction = Some(digits.len() - i - 1),
            _ => return None,
        }
    }
    let value = mantissa as f64 / *POWERS.get(fraction?)?;
    Some(if negative { -value } else { value })
}

/// Which of a message's fields (or oneofs) an object has named: a bit each, without a heap
/// allocation per object for messages of up to 64.
enum Marks {
    Bits(u64),
    Many(Vec<bool>),
}

impl Marks {
    fn new(count: usize) -> Marks {
        if count <= 64 { Marks::Bits(0) } else { Marks::Many(vec![false; count]) }
    }

    /// Marks `index` (below the count); whether it was marked already.
    #[inline]
    fn mark(&mut self, index: usize) -> bool {
        match self {
            Marks::Bits(bits) => {
                let bit = 1u64.checked_shl(u32::try_from(index).unwrap_or(u32::MAX)).unwrap_or(0);
                let marked = *bits & bit != 0;
                *bits |= bit;
                marked
            }
            Marks::Many(marks) => marks.get_mut(index).is_some_and(|m| std::mem::replace(m, true)),
        }
    }
}

/// The high bit of each of eight (little-endian) bytes that is a quote, a backslash or below
/// 0x20. Bytes above the lowest flagged one may be flagged wrongly; the lowest is exact.
#[inline]
fn attention(x: u64) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(LOW) & !v & HIGH;
    let control = x.wrapping_sub(LOW * 0x20) & !x & HIGH;
    control | has_zero(x ^ (LOW * u64::from(b'"'))) | has_zero(x ^ (LOW * u64::from(b'\\')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_floats_are_the_doubles_the_standard_parser_finds() {
        let mut random = crate::test_util::Gen::new(0x9e37_79b9_7f4a_7c15u64);
        let mut fast = 0;
        for _ in 0..200_000 {
            let digits = random.below(12) as u32 + 1;
            let whole = random.below(10u64.pow(digits));
            let places = random.below(17) as usize + 1;
            let fraction = random.below(10u64.pow(places.min(15) as u32));
            let fraction = format!("{fraction:0places$}");
            let sign = if random.below(2) == 0 { "-" } else { "" };
            let text = format!("{sign}{whole}.{fraction}");
            if let Some(f) = short_float(text.as_bytes()) {
                fast += 1;
                let expected: f64 = text.parse().unwrap();
                assert_eq!(f.to_bits(), expected.to_bits(), "{text}");
            }
        }
        assert!(fast > 50_000, "{fast}");
        for (text, expected) in [("-0.0", Some(-0.0)), ("0.1", Some(0.1)), ("12345678901234.5", Some(12345678901234.5))]
        {
            assert_eq!(short_float(text.as_bytes()).map(f64::to_bits), expected.map(f64::to_bits), "{text}");
        }
        for longer in ["123456789012345.6", "0.1234567890123456", "1e5", "1.5e5", "15"] {
            assert_eq!(short_float(longer.as_bytes()), None, "{longer}");
        }
    }
}
