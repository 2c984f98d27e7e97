//! Correlation ids: keep the client's `X-Request-Id` (or the configured header) when it is well-formed, or generate a
//! UUIDv7 (time-ordered, so ids sort by arrival in logs).
//!
//! Well-formed means 1 to 128 characters from `A-Z a-z 0-9 - _ . : + / =` (UUIDs, ULIDs,
//! base64 and most tracing ids). Anything else — spaces, control characters, a megabyte of
//! text — is replaced, so a client cannot put arbitrary text into every log line and upstream
//! call.

use http::{HeaderName, HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// The longest request id kept.
pub const MAX_LEN: usize = 128;

/// Generates UUIDv7 request ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestIdV7;

impl MakeRequestId for MakeRequestIdV7 {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().to_string();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Drops a request id (in `header`) that is not well-formed, or sent more than once, so that
/// one is generated in its place.
pub fn drop_malformed<B>(header: HeaderName) -> impl Fn(Request<B>) -> Request<B> + Clone {
    move |mut request| {
        let ids = request.headers().get_all(&header);
        let mut values = ids.iter();
        let keep = match (values.next(), values.next()) {
            (Some(id), None) => well_formed(id),
            (None, _) => true,
            (Some(_), Some(_)) => false,
        };
        if !keep {
            request.headers_mut().remove(&header);
        }
        request
    }
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

    fn drop_malformed(request: Request<()>) -> Request<()> {
        super::drop_malformed(REQUEST_ID)(request)
    }

    fn kept(value: &str) -> bool {
        let request = Request::builder().header(REQUEST_ID, value).body(()).unwrap();
        drop_malformed(request).headers().contains_key(REQUEST_ID)
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
        let twice = Request::builder().header(REQUEST_ID, "a").header(REQUEST_ID, "b").body(()).unwrap();
        assert!(!drop_malformed(twice).headers().contains_key(REQUEST_ID));
    }
}
