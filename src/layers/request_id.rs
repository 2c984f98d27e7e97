//! Correlation ids: keep the client's `X-Request-Id`, or generate a UUIDv7 (time-ordered, so
//! ids sort by arrival in logs).

use http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

/// Generates UUIDv7 request ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestIdV7;

impl MakeRequestId for MakeRequestIdV7 {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().to_string();
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}
