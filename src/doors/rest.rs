//! The REST door: a unary method's annotated route or its `POST /pkg.Service/Method`, JSON
//! (or a `google.api.HttpBody`'s raw bytes) in and out, its GET answers cached when a policy
//! says so.

use axum::body::Body;
use http::Response;
use http::request::Parts;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata::Peer;
use crate::observability::Exchange;
use crate::pipeline::{self, CallKind};
use crate::policy::Access;
use crate::profile::View;
use crate::route::BodySelector;

/// A unary call on route `index` (path values `values`), through the cache when its policy
/// caches it.
#[allow(clippy::too_many_arguments)]
pub async fn unary(
    gateway: &Gateway,
    index: usize,
    values: &[String],
    parts: Parts,
    body: Body,
    peer: Peer,
    access: &Access<'_>,
    view: View<'_>,
) -> Result<Response<Body>, GatewayError> {
    let reads_body = gateway.route_at(index).body != BodySelector::Empty;
    let Some(cache) = pipeline::cache_rule(gateway, access, &parts.method, reads_body) else {
        return call(gateway, index, values, &parts, body, peer, access, view).await;
    };
    drop(body);
    let fetch = || call(gateway, index, values, &parts, Body::empty(), peer, access, view);
    // Small: the cache boxes its ways to the upstream, so that a hit carries none of them.
    pipeline::through_cache(gateway, cache, &view.labels.route, values, &parts, peer, access, fetch).await
}

/// Steps 2 to 6 of a unary call.
#[allow(clippy::too_many_arguments)]
async fn call(
    gateway: &Gateway,
    index: usize,
    values: &[String],
    parts: &Parts,
    body: Body,
    peer: Peer,
    access: &Access<'_>,
    view: View<'_>,
) -> Result<Response<Body>, GatewayError> {
    let route = gateway.route_at(index);
    let query = parts.uri.query();
    let transcoder = view.transcoder;
    let limit = gateway.max_body_bytes();
    let message = match transcoder.raw_request(index) {
        Some(target) => {
            let data = pipeline::read_limited(&parts.headers, body, limit).await?;
            let content_type = pipeline::content_type(&parts.headers);
            transcoder.encode_raw(route, target, values, query, content_type, data)?
        }
        None => {
            let body = pipeline::read_body(route, &parts.headers, body, limit).await?;
            transcoder.decode(index, route, values, query, &body)?
        }
    };
    let mask = pipeline::partial_response(gateway, index, parts)?;
    let call = pipeline::http_call_target(gateway, index, parts, peer, CallKind::Unary, access)?;
    let idempotent = pipeline::idempotent(Some(&parts.method), call.upstream, route.grpc_path.path());
    let reply = call.upstream.unary(route.grpc_path.clone(), message, call.metadata, call.deadline, idempotent);
    let reply = Exchange::of(&parts.extensions).time_call(call.span, reply).await?;
    pipeline::respond_with(gateway, index, &reply, mask.as_ref(), view)
}
