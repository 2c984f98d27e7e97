//! Cross-cutting concerns as tower layers, declared in one place and in order.
//!
//! Top to bottom is outermost to innermost: the first layer sees the request first and the
//! response last.

pub mod catch_panic;
pub mod compression;
pub mod cors;
pub mod observe;
pub mod overload;
pub mod request_id;

use std::sync::Arc;

use axum::Router;
use tower::ServiceBuilder;
use tower::util::{MapRequestLayer, MapResponseLayer};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::reload::Live;

/// Wraps the gateway's router in the layer stack, configured from the gateway's edge
/// settings. Listed here outermost first; applied innermost first, as each `layer` call wraps
/// what is already there.
///
/// 1. request id: a malformed one dropped, then set (kept or generated) and echoed on every
///    response, errors included;
/// 2. observe: the trace context, one span per request, and its access log line, metrics and
///    exported span when the response ends — after the id exists, and around everything else
///    so that shed requests and preflights are recorded too;
/// 3. overload: a fast 503 beyond `max_concurrent_requests`;
/// 4. CORS: preflights answered here, before any route or upstream;
/// 5. compression of responses, decompression of request bodies;
/// 6. the panic safety net: a panic below becomes a 500 JSON error, not a dropped connection.
pub fn apply(router: Router, live: &Arc<Live>) -> Router {
    // Read once: a reload keeps these settings (see `reload`).
    let gateway = live.gateway();
    let (edge, observer) = (gateway.edge(), gateway.observer());
    let mut router = router.layer(catch_panic::layer());
    if edge.compression {
        router = compression::apply(router);
    }
    if let Some(cors) = &edge.cors {
        router =
            router.layer(cors::layer(cors, observer.request_id_header())).layer(MapResponseLayer::new(cors::finish));
    }
    router = overload::apply(router, edge.limits.max_concurrent_requests, live.clone());
    router = router.layer(observe::ObserveLayer::new(observer.clone()));
    let header = observer.request_id_header().clone();
    router.layer(
        ServiceBuilder::new()
            .layer(MapRequestLayer::new(request_id::drop_malformed(header.clone())))
            .layer(SetRequestIdLayer::new(header.clone(), request_id::MakeRequestIdV7))
            .layer(PropagateRequestIdLayer::new(header)),
    )
}
