//! Cross-cutting concerns as tower layers, declared in one place and in order.
//!
//! Top to bottom is outermost to innermost: the first layer sees the request first and the
//! response last.

pub mod catch_panic;
pub mod compression;
pub mod cors;
pub mod overload;
pub mod request_id;

use axum::Router;
use tower::ServiceBuilder;
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::CorsConfig;
use crate::metadata::REQUEST_ID;

/// What the layers are configured with.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// Cross-origin access, if any.
    pub cors: Option<&'a CorsConfig>,
    /// Compress responses and accept compressed bodies.
    pub compression: bool,
    /// Requests in progress beyond which the listener answers 503.
    pub max_concurrent_requests: usize,
}

/// Wraps the gateway's router in the layer stack. Listed here outermost first; applied
/// innermost first, as each `layer` call wraps what is already there.
///
/// 1. request id: a malformed one dropped, then set (kept or generated) and echoed on every
///    response, errors included;
/// 2. overload: a fast 503 beyond `max_concurrent_requests`;
/// 3. tracing: one span per request, opened after the id exists;
/// 4. CORS: preflights answered here, before any route or upstream;
/// 5. compression of responses, decompression of request bodies;
/// 6. the panic safety net: a panic below becomes a 500 JSON error, not a dropped connection.
pub fn apply(router: Router, settings: Settings<'_>) -> Router {
    let mut router = router.layer(catch_panic::layer());
    if settings.compression {
        router = compression::apply(router);
    }
    if let Some(cors) = settings.cors {
        router = router.layer(cors::layer(cors)).layer(MapResponseLayer::new(cors::expose_grpc_headers));
    }
    router = router.layer(TraceLayer::new_for_http());
    router = overload::apply(router, settings.max_concurrent_requests);
    router.layer(
        ServiceBuilder::new()
            .layer(MapRequestLayer::new(request_id::drop_malformed::<axum::body::Body>))
            .layer(SetRequestIdLayer::new(REQUEST_ID, request_id::MakeRequestIdV7))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
    )
}
