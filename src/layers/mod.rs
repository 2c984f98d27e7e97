//! Cross-cutting concerns as tower layers, declared in one place and in order.
//!
//! Top to bottom is outermost to innermost: the first layer sees the request first and the
//! response last.

pub mod catch_panic;
pub mod cors;
pub mod request_id;

use axum::Router;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::CorsConfig;
use crate::metadata::REQUEST_ID;

/// Wraps the gateway's router in the layer stack.
pub fn apply(router: Router, cors: Option<&CorsConfig>) -> Router {
    router.layer(
        ServiceBuilder::new()
            // Outermost, so every later layer, log line and error response sees the id.
            .layer(SetRequestIdLayer::new(REQUEST_ID, request_id::MakeRequestIdV7))
            // Echo the id on every response, errors included.
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            // One span per request, opened after the id exists.
            .layer(TraceLayer::new_for_http())
            // Browsers: preflights are answered here, before any route or upstream.
            .option_layer(cors.map(|_| MapResponseLayer::new(cors::expose_grpc_headers)))
            .option_layer(cors.map(cors::layer))
            // Innermost safety net: a panic below becomes a 500 JSON error, not a dropped connection.
            .layer(catch_panic::layer()),
    )
}
