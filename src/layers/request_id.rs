//! Correlation ids: keep the client's `X-Request-Id` (or the configured header) when it is well-formed, or generate a
//! UUIDv7 (time-ordered, so ids sort by arrival in logs).
//!
//! Well-formed means 1 to 128 characters from `A-Z a-z 0-9 - _ . : + / =` (UUIDs, ULIDs,
//! base64 and most tracing ids). Anything else — spaces, control characters, a megabyte of
//! text — is replaced, so a client cannot put arbitrary text into every log line and upstream
//! call.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The longest request id kept.
pub const MAX_LEN: usize = 128;

/// The request's id in `header`: the client's when it sent exactly one well-formed id, else a
/// new UUIDv7 put in its place (so every door, log line and upstream call sees the same one).
pub fn keep_or_make(headers: &mut HeaderMap, header: &HeaderName) -> HeaderValue {
    if let Some(id) = sent_once_and_well_formed(headers, header) {
        return id.clone();
    }
    let id = new_id();
    headers.insert(header.clone(), id.clone());
    id
}

fn sent_once_and_well_formed<'h>(headers: &'h HeaderMap, header: &HeaderName) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(header).iter();
    match (values.next(), values.next()) {
        (Some(id), None) if well_formed(id) => Some(id),
        _ => None,
    }
}

/// A UUIDv7, formatted without an intermediate `String`.
fn new_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

fn well_formed(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+' | b'/' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::REQUEST_ID;

    fn kept(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, value.parse().unwrap());
        keep_or_make(&mut headers, &REQUEST_ID) == value
    }

    #[test]
    fn only_well_formed_ids_are_kept() {
        assert!(kept("01a2222f-2804-770c-ac91-2d8463de9d56"));
        assert!(kept("req_7.trace:span+b64/x="));
        assert!(kept(&"a".repeat(MAX_LEN)));
        assert!(!kept(&"a".repeat(MAX_LEN + 1)));
        assert!(!kept("has space"));
        assert!(!kept("quote\"d"));
        assert!(!kept(""));
    }

    #[test]
    fn an_id_sent_twice_is_replaced_by_one_new_id() {
        let mut headers = HeaderMap::new();
        headers.append(REQUEST_ID, HeaderValue::from_static("a"));
        headers.append(REQUEST_ID, HeaderValue::from_static("b"));
        let id = keep_or_make(&mut headers, &REQUEST_ID);
        assert_eq!(headers.get_all(REQUEST_ID).iter().collect::<Vec<_>>(), [&id]);
        assert_eq!(uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap().get_version_num(), 7);
    }

    #[test]
    fn a_missing_id_is_made() {
        let mut headers = HeaderMap::new();
        let id = keep_or_make(&mut headers, &REQUEST_ID);
        assert_eq!(headers.get(REQUEST_ID), Some(&id));
        assert_eq!(id.len(), 36);
    }
}
