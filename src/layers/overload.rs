//! A cap on requests in progress per listener: beyond it, a fast 503 (code 14, UNAVAILABLE)
//! instead of a queue that grows until everything is slow. A stream counts until its
//! response headers are sent.

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use http::{Response, StatusCode};
use tonic::Code;
use tower::ServiceBuilder;

use crate::error::json_response;
use crate::status::StatusBody;

/// Wraps `router` so that at most `max` requests are in progress; the rest are shed.
pub fn apply(router: Router, max: usize) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async { overloaded() }))
            .load_shed()
            .concurrency_limit(max),
    )
}

fn overloaded() -> Response<Body> {
    let body = StatusBody {
        code: Code::Unavailable as i32,
        message: "the gateway is at its limit of requests in progress; retry shortly",
        details: Vec::new(),
    };
    json_response(StatusCode::SERVICE_UNAVAILABLE, body.to_json()).map(Body::from)
}
