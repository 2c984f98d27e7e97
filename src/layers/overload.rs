//! A cap on requests in progress per listener: beyond it, a fast 503 (code 14, UNAVAILABLE)
//! instead of a queue that grows until everything is slow. A stream counts until its
//! response headers are sent.

use std::sync::Arc;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::{Extension, Router};
use http::{HeaderValue, Response};
use tower::ServiceBuilder;
use tower_http::request_id::RequestId;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::reload::Live;

/// Wraps `router` so that at most `max` requests are in progress; the rest are shed.
pub fn apply(router: Router, max: usize, live: Arc<Live>) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |id: Option<Extension<RequestId>>, _: tower::BoxError| {
                let gateway = live.gateway();
                async move { overloaded(&gateway, id.as_ref().map(|id| id.header_value())) }
            }))
            .load_shed()
            .concurrency_limit(max),
    )
}

fn overloaded(gateway: &Gateway, request_id: Option<&HeaderValue>) -> Response<Body> {
    gateway.error_response(GatewayError::Overloaded, request_id).map(Body::from)
}
