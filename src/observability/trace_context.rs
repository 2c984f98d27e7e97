//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` a request
//! arrives with is continued, a missing or malformed one starts a new trace, and the gateway's
//! own span becomes the parent of the upstream call.
//!
//! `traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>`; bit 0 of the flags
//! says the trace is sampled. `tracestate` (vendor entries) travels along unchanged when the
//! `traceparent` is kept, and is dropped with a malformed one (§3.3.1.1).

use http::{HeaderMap, HeaderValue};

use crate::metadata::{TRACEPARENT, TRACESTATE};

/// The longest `tracestate` passed on: the spec asks every hop to pass at least 512
/// characters, and lets it drop whole entries beyond (§3.3.1.5).
const MAX_TRACESTATE: usize = 512;

/// A 16-byte trace id, never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, never all zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanId(pub [u8; 8]);

/// The gateway's span of one request within its trace.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// The trace the request belongs to.
    pub trace_id: TraceId,
    /// The gateway's span: the parent of the upstream call.
    pub span_id: SpanId,
    /// The caller's span, when the request came with a valid `traceparent`.
    pub parent_id: Option<SpanId>,
    /// Whether the trace is recorded (and exported).
    pub sampled: bool,
    /// The vendor entries to pass on.
    pub tracestate: Option<HeaderValue>,
}

impl TraceContext {
    /// Continues the trace of `headers`' `traceparent`, or starts one; a new trace is sampled
    /// with probability `sample_ratio`.
    pub fn continue_or_start(headers: &HeaderMap, sample_ratio: f64) -> TraceContext {
        match incoming(headers) {
            Some((trace_id, parent_id, flags)) => TraceContext {
                trace_id,
                span_id: SpanId::random(),
                parent_id: Some(parent_id),
                sampled: flags & 1 == 1,
                tracestate: tracestate(headers),
            },
            None => TraceContext {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                parent_id: None,
                sampled: sample_ratio >= 1.0 || (sample_ratio > 0.0 && rand::random::<f64>() < sample_ratio),
                tracestate: None,
            },
        }
    }

    /// The `traceparent` an upstream call carries: this trace, the gateway's span as parent.
    pub fn traceparent(&self) -> HeaderValue {
        self.traceparent_of(self.span_id)
    }

    /// The `traceparent` naming `span` (an upstream call's CLIENT span) as the parent.
    pub fn traceparent_of(&self, span: SpanId) -> HeaderValue {
        let mut text = String::with_capacity(55);
        text.push_str("00-");
        push_hex(&mut text, &self.trace_id.0);
        text.push('-');
        push_hex(&mut text, &span.0);
        text.push_str(if self.sampled { "-01" } else { "-00" });
        // Hex digits and dashes only.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }

    /// Replaces `headers`' trace context with the one the upstream call carries.
    pub fn apply(&self, headers: &mut HeaderMap) {
        self.apply_as(self.span_id, headers);
    }

    /// [`TraceContext::apply`], with `span` as the upstream's parent.
    pub fn apply_as(&self, span: SpanId, headers: &mut HeaderMap) {
        let mut traceparent = self.traceparent_of(span);
        // Unique per request: kept out of HTTP/2 header compression tables.
        traceparent.set_sensitive(true);
        headers.insert(TRACEPARENT, traceparent);
        match &self.tracestate {
            Some(state) => {
                headers.insert(TRACESTATE, state.clone());
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
    }
}

/// The one valid `traceparent` of a request: (trace id, parent id, flags).
fn incoming(headers: &HeaderMap) -> Option<(TraceId, SpanId, u8)> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return None };
    parse_traceparent(value.to_str().ok()?)
}

/// Parses a `traceparent` value per §3.2: version 00 is exactly 55 characters; a later
/// version may append fields after a dash, which are ignored; version ff is invalid.
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, u8)> {
    let value = value.trim_matches([' ', '\t']);
    let version = u8::from_str_radix(lower_hex(value.get(0..2)?)?, 16).ok()?;
    let valid_length = match version {
        0xff => false,
        0 => value.len() == 55,
        _ => value.len() == 55 || value.as_bytes().get(55) == Some(&b'-'),
    };
    let dash = |i: usize| value.as_bytes().get(i) == Some(&b'-');
    if !valid_length || !dash(2) || !dash(35) || !dash(52) {
        return None;
    }
    let trace_id = TraceId(hex_bytes(lower_hex(value.get(3..35)?)?)?);
    let parent_id = SpanId(hex_bytes(lower_hex(value.get(36..52)?)?)?);
    let flags = u8::from_str_radix(lower_hex(value.get(53..55)?)?, 16).ok()?;
    let zero = trace_id.0 == [0; 16] || parent_id.0 == [0; 8];
    (!zero).then_some((trace_id, parent_id, flags))
}

/// The request's `tracestate`, its several headers joined, whole entries beyond 512
/// characters dropped.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut kept = String::new();
    for value in headers.get_all(TRACESTATE) {
        for entry in value.to_str().ok()?.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if kept.len() + 1 + entry.len() > MAX_TRACESTATE {
                break;
            }
            if !kept.is_empty() {
                kept.push(',');
            }
            kept.push_str(entry);
        }
    }
    if kept.is_empty() { None } else { HeaderValue::from_str(&kept).ok() }
}

/// `text` when it is lowercase hex only (the spec forbids uppercase).
fn lower_hex(text: &str) -> Option<&str> {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)).then_some(text)
}

fn hex_bytes<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if hex.len() != N * 2 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

// === impl TraceId, SpanId ===

impl TraceId {
    fn random() -> TraceId {
        TraceId(nonzero_random())
    }
}

impl SpanId {
    /// A new span id.
    pub fn random() -> SpanId {
        SpanId(nonzero_random())
    }
}

/// Random bytes, not all zero (the spec's invalid id).
fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

impl TraceId {
    /// Lowercase hex, made without the formatting machinery (one per access log line).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl std::fmt::Display for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 * bytes.len());
    push_hex(&mut text, bytes);
    text
}

/// Lowercase hex, two digits a byte: ids are written on every request, and the formatting
/// machinery's per-byte `{:02x}` costs more than the rest of the trace context.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let context = TraceContext::continue_or_start(&headers(&[("traceparent", VALID), ("tracestate", "a=1")]), 0.0);
        assert_eq!(context.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_id.unwrap().to_string(), "00f067aa0ba902b7");
        assert_ne!(context.span_id.to_string(), "00f067aa0ba902b7");
        assert!(context.sampled);
        let up = context.traceparent();
        let up = up.to_str().unwrap();
        assert!(up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && up.ends_with("-01"), "{up}");
        assert_eq!(parse_traceparent(up).unwrap().1, context.span_id);
        assert_eq!(context.tracestate.unwrap(), "a=1");
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
            let context =
                TraceContext::continue_or_start(&headers(&[("traceparent", bad), ("tracestate", "a=1")]), 1.0);
            assert!(context.parent_id.is_none(), "{bad:?}");
            assert!(context.tracestate.is_none(), "tracestate goes with a bad traceparent");
        }
        let twice = headers(&[("traceparent", VALID), ("traceparent", VALID)]);
        assert!(TraceContext::continue_or_start(&twice, 1.0).parent_id.is_none());
    }

    #[test]
    fn later_versions_may_carry_more_fields() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(parse_traceparent(future).is_some());
    }

    #[test]
    fn new_traces_follow_the_sample_ratio() {
        let none = HeaderMap::new();
        assert!(TraceContext::continue_or_start(&none, 1.0).sampled);
        assert!(!TraceContext::continue_or_start(&none, 0.0).sampled);
        let unsampled = headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")]);
        assert!(!TraceContext::continue_or_start(&unsampled, 1.0).sampled, "the caller's decision holds");
    }

    #[test]
    fn tracestate_is_joined_and_bounded() {
        let long = format!("big={}", "x".repeat(600));
        let map = headers(&[("traceparent", VALID), ("tracestate", "a=1, b=2"), ("tracestate", &long)]);
        let context = TraceContext::continue_or_start(&map, 1.0);
        assert_eq!(context.tracestate.unwrap(), "a=1,b=2");
    }
}
