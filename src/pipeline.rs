//! The steps of one request, written once for every door: the doors ([`crate::doors`])
//! translate their wire format into these calls and their results back.
//!
//! | step | function | fails with |
//! |---|---|---|
//! | authorize | [`authorize`], [`authorize_composite`] | 401, 403, 429 |
//! | read the request | [`read_limited`], [`read_body`], [`read_body_json`], [`MediaType`], [`idle_body`] | 408, 413, 415 |
//! | build the call target | [`call_target`] (upstream, metadata, forwarded claims, [`deadline`], [`idempotent`], a streaming call's client seat) | 400, 429, 502 |
//! | render | [`respond_with`], [`partial_response`], [`through_cache`] | 400, 500 |
//!
//! Allowed imports: the built [`Gateway`] and everything below it (policies, cache, upstream,
//! transcoding, metadata, error); never a door, a layer or the server.

pub mod idle_body;

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::cache::{CacheRule, CacheUse, ResponseCache};
use crate::error::{GatewayError, json_response};
use crate::gateway::Gateway;
use crate::metadata::{self, Peer};
use crate::observability::Exchange;
use crate::observability::exchange::CallSpan;
use crate::observability::streams::ClientSeat;
use crate::policy::{self, Access, Guard};
use crate::profile::View;
use crate::route::{BodySelector, Route};
use crate::transcode::TranscodeError;
use crate::transcode::fields::{self, FieldMask};
use crate::transcode::http_body;
use crate::upstream::{UnaryResponse, Upstream, UpstreamError};

// === authorize ===

/// How a request reached its method: this decides which policies hold it.
#[derive(Debug, Clone, Copy)]
pub enum Arrival<'a> {
    /// On one of the method's annotated routes, at this (raw) request path: the first policy
    /// that fits it.
    Route {
        /// The request path.
        path: &'a str,
    },
    /// By a door that names the method (`POST /pkg.Service/Method`, Connect, gRPC,
    /// gRPC-Web): every policy of the method's routes.
    Method,
    /// On a route of its own that calls the method (a profile's route, a composite route),
    /// at this path: every policy of the method's routes, and the first that fits that route.
    Via {
        /// The HTTP method of the route the request matched.
        http_method: &'a Method,
        /// The request path.
        path: &'a str,
    },
}

/// Step 1b: the policies that hold a request to route `index`'s method, arrived as
/// `arrival`, and whether they let it on.
pub async fn authorize<'g>(
    gateway: &'g Gateway,
    index: usize,
    arrival: Arrival<'_>,
    parts: &Parts,
    peer: Peer,
) -> Result<Access<'g>, GatewayError> {
    let headers = &parts.headers;
    metadata::single_authorization(headers)?;
    let route = gateway.route_at(index);
    let mut guard = Guard::new();
    add_guard(gateway, index, arrival, &mut guard);
    let request = policy::Request {
        http_method: &route.http_method,
        template: &route.template,
        headers,
        query_token: parts.extensions.get(),
        client: peer.client,
    };
    let access = gateway.policies().admit(&guard, &request).await?;
    note_quotas(parts, &access);
    Ok(access)
}

/// The `RateLimit-Policy` and `RateLimit` headers of the limits a request passed, for its
/// response whatever the door (the observe layer adds them on the way out).
fn note_quotas(parts: &Parts, access: &Access<'_>) {
    if !access.quotas.is_empty() {
        Exchange::of(&parts.extensions).rate_limits(policy::quota_headers(&access.quotas));
    }
}

/// Step 1b for a composite route (`request` names its own HTTP method and template), which
/// calls the methods of `routes`: each call's method brings its policies, as if reached on its
/// own, with the first that fits the composite route at each of `paths`.
pub async fn authorize_composite<'g>(
    gateway: &'g Gateway,
    routes: impl Iterator<Item = usize>,
    request: &policy::Request<'_>,
    paths: &[&str],
    parts: &Parts,
) -> Result<Access<'g>, GatewayError> {
    metadata::single_authorization(request.headers)?;
    let mut guard = Guard::new();
    for index in routes {
        for &path in paths {
            add_guard(gateway, index, Arrival::Via { http_method: request.http_method, path }, &mut guard);
        }
    }
    let access = gateway.policies().admit(&guard, request).await?;
    note_quotas(parts, &access);
    Ok(access)
}

fn add_guard(gateway: &Gateway, index: usize, arrival: Arrival<'_>, guard: &mut Guard) {
    let route = gateway.route_at(index);
    let grpc_method = route.grpc_path.path().trim_start_matches('/');
    let policies = gateway.policies();
    match arrival {
        Arrival::Route { path } => guard.extend(policies.first_fit(&route.http_method, path, grpc_method)),
        Arrival::Method => guard.extend_from_slice(gateway.method_guard(index)),
        Arrival::Via { http_method, path } => {
            guard.extend_from_slice(gateway.method_guard(index));
            guard.extend(policies.first_fit(http_method, path, grpc_method));
        }
    }
    guard.sort_unstable();
    guard.dedup();
}

/// How a request on route `index` (matched by the route table) arrived: on an annotated
/// route, or on the method's `POST /pkg.Service/Method`.
pub fn arrival_on<'a>(route: &Route, path: &'a str) -> Arrival<'a> {
    match route.origin {
        crate::route::RouteOrigin::Annotation => Arrival::Route { path },
        crate::route::RouteOrigin::Default => Arrival::Method,
    }
}

// === read the request ===

/// A `Content-Type`'s essence (type/subtype), parameters (charset) aside: the one parser every
/// door reads content types with. Compared without regard to case, with no allocation (every
/// request with a body passes here).
#[derive(Debug, Clone, Copy)]
pub struct MediaType<'h>(&'h str);

impl<'h> MediaType<'h> {
    /// The request's media type, if it sent a readable `Content-Type`.
    pub fn of(headers: &'h HeaderMap) -> Option<MediaType<'h>> {
        let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        Some(MediaType(value.split(';').next().unwrap_or("").trim()))
    }

    /// Whether it is `essence` (`type/subtype`), whatever the case.
    pub fn is(self, essence: &str) -> bool {
        self.0.eq_ignore_ascii_case(essence)
    }

    /// Its type and subtype (`application`, `grpc-web+proto`).
    pub fn parts(self) -> Option<(&'h str, &'h str)> {
        self.0.split_once('/')
    }

    /// `application/json` or any `application/…+json`.
    pub fn is_json(self) -> bool {
        self.parts().is_some_and(|(kind, subtype)| {
            let suffix = subtype.len().checked_sub(5).and_then(|at| subtype.get(at..));
            kind.eq_ignore_ascii_case("application")
                && (subtype.eq_ignore_ascii_case("json") || suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json")))
        })
    }
}

/// `application/json` or any `+json` type, parameters (charset) aside.
pub fn is_json(headers: &HeaderMap) -> bool {
    MediaType::of(headers).is_some_and(MediaType::is_json)
}

/// The request's `Content-Type` as sent, or empty (for error messages and raw bodies).
pub fn content_type(headers: &HeaderMap) -> &str {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The whole body, at most `limit` bytes whether the length is declared or it is chunked.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    let declared: Option<u64> = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    collect_limited(body, limit).await
}

/// The whole body, refused as soon as it passes `limit` bytes (the one bounded reader: every
/// door that reads a whole body reads it here).
pub async fn collect_limited(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(GatewayError::BodyTooLarge { limit }),
        Err(e) => Err(body_error(&*e)),
    }
}

/// Why a request body could not be read: the client went quiet (408), or the body broke off.
pub fn body_error(error: &(dyn std::error::Error + 'static)) -> GatewayError {
    match idle_body::is_idle(error) {
        Some(after) => GatewayError::BodyTimeout { after },
        None => GatewayError::BodyRead { reason: error.to_string() },
    }
}

/// Reads the body of a route that takes one: JSON only, at most `limit` bytes whether the
/// length is declared or the body is chunked.
pub async fn read_body(route: &Route, headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    if route.body == BodySelector::Empty {
        return Ok(Bytes::new());
    }
    let bytes = read_limited(headers, body, limit).await?;
    if !bytes.trim_ascii().is_empty() && !is_json(headers) {
        return Err(GatewayError::UnsupportedMediaType { content_type: content_type(headers).to_owned() });
    }
    Ok(bytes)
}

/// A composite route's JSON body (`null` when empty), at most `limit` bytes.
pub async fn read_body_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<serde_json::Value, GatewayError> {
    let bytes = read_limited(headers, body, limit).await?;
    if bytes.trim_ascii().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    if !is_json(headers) {
        return Err(GatewayError::UnsupportedMediaType { content_type: content_type(headers).to_owned() });
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::Transcode(TranscodeError::InvalidJson { field: None, reason: e.to_string() }))
}

/// The route as a client stream's lines and WebSocket frames see it: each is a whole request
/// message, unless the HTTP rule binds the body to one field.
pub fn message_route(route: &Route) -> std::borrow::Cow<'_, Route> {
    if route.body == BodySelector::Empty {
        let mut whole = route.clone();
        whole.body = BodySelector::Whole;
        std::borrow::Cow::Owned(whole)
    } else {
        std::borrow::Cow::Borrowed(route)
    }
}

// === build the call target ===

/// Whether a call is unary or streams, for its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// One response message.
    Unary,
    /// A stream, bounded only by the client's deadline.
    Stream,
}

/// Where one call goes and what goes with it.
pub struct CallTarget<'g> {
    /// The upstream.
    pub upstream: &'g Upstream,
    /// The request metadata, the verified claims forwarded.
    pub metadata: HeaderMap,
    /// The call's deadline.
    pub deadline: Option<Duration>,
    /// A streaming call's place among its client's (see [`CallTarget::open`]).
    pub seat: Option<ClientSeat>,
    /// The call's span: the metadata's `traceparent` names it.
    pub span: CallSpan,
}

impl CallTarget<'_> {
    /// Opens the streaming call at `path`; the client's seat is held until the call ends.
    pub async fn open(
        self,
        path: http::uri::PathAndQuery,
    ) -> Result<(crate::upstream::RequestSink, crate::upstream::PendingResponse), UpstreamError> {
        let kept = self.seat.map(|seat| crate::upstream::Kept(Box::new(seat)));
        self.upstream.open_keeping(path, self.metadata, self.deadline, kept).await
    }
}

/// The request a call is made for: its client, and its record (where the call's span goes).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'r> {
    /// The client, as the listener resolved it.
    pub peer: Peer,
    /// The request's record.
    pub exchange: &'r Exchange,
}

/// Where route `index`'s call goes, with which metadata (`metadata`: the door's headers
/// already turned into metadata, to which the verified claims and the call's `traceparent`
/// are added), and its deadline (`requested`: the client's, in the door's own syntax). A
/// streaming call takes one of its client's `[limits] max_streams_per_client` seats, or is
/// refused with 429.
pub fn call_target<'g>(
    gateway: &'g Gateway,
    index: usize,
    mut metadata: HeaderMap,
    requested: Option<Duration>,
    kind: CallKind,
    access: &Access<'_>,
    caller: Caller<'_>,
) -> Result<CallTarget<'g>, GatewayError> {
    let Caller { peer, exchange } = caller;
    let upstream = upstream_for(gateway, index)?;
    let seat = match kind {
        CallKind::Unary => None,
        CallKind::Stream => {
            let limit = gateway.edge().limits.max_streams_per_client;
            gateway.streams().seat(peer.client, limit).map_err(|limit| GatewayError::TooManyStreams { limit })?
        }
    };
    forward_claims(gateway, access, &mut metadata);
    let deadline = deadline(requested, kind, access, upstream);
    let span = exchange.start_call(&gateway.route_at(index).grpc_path, &mut metadata);
    Ok(CallTarget { upstream, metadata, deadline, seat, span })
}

/// [`call_target`] for a request whose headers are HTTP's: `Grpc-Metadata-*`, `Authorization`,
/// `Grpc-Timeout` and the rest as [`metadata::to_grpc`] reads them.
pub fn http_call_target<'g>(
    gateway: &'g Gateway,
    index: usize,
    parts: &Parts,
    peer: Peer,
    kind: CallKind,
    access: &Access<'_>,
) -> Result<CallTarget<'g>, GatewayError> {
    let headers = &parts.headers;
    let metadata = metadata::to_grpc(headers, peer, gateway.header_rules())?;
    let caller = Caller { peer, exchange: &Exchange::of(&parts.extensions) };
    call_target(gateway, index, metadata, metadata::grpc_timeout(headers)?, kind, access, caller)
}

/// The upstream serving route `index`.
pub fn upstream_for(gateway: &Gateway, index: usize) -> Result<&Upstream, GatewayError> {
    gateway.upstream_of(index).ok_or_else(|| {
        let service = gateway.route_at(index).method.parent_service().full_name().to_owned();
        UpstreamError::NotConfigured { service }.into()
    })
}

/// Puts the verified claims `forward_claims` names into upstream metadata, after dropping
/// whatever the client sent under those keys.
pub fn forward_claims(gateway: &Gateway, access: &Access<'_>, metadata: &mut HeaderMap) {
    if let Some(verifier) = gateway.policies().verifier() {
        verifier.forward(access.claims.as_ref(), metadata);
    }
}

/// A call's deadline: the one the client asked for, or for unary calls the policy's (else the
/// upstream's) `timeout` when that is sooner.
pub fn deadline(
    requested: Option<Duration>,
    kind: CallKind,
    access: &Access<'_>,
    upstream: &Upstream,
) -> Option<Duration> {
    match kind {
        CallKind::Unary => earliest(requested, access.policy.and_then(|p| p.timeout).or(upstream.timeout)),
        CallKind::Stream => requested,
    }
}

/// The sooner of two deadlines, either of which may be absent.
pub fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a call may be tried again: the request was a GET (which asks for no change), or
/// the upstream lists the method as idempotent.
pub fn idempotent(http_method: Option<&Method>, upstream: &Upstream, grpc_path: &str) -> bool {
    http_method == Some(&Method::GET) || upstream.is_idempotent(grpc_path)
}

// === render ===

/// The fields `?fields=` keeps of route `index`'s response, checked before any call.
pub fn partial_response(gateway: &Gateway, index: usize, parts: &Parts) -> Result<Option<FieldMask>, GatewayError> {
    let route = gateway.route_at(index);
    let output = match (&route.response_body, gateway.transcoder().raw_response(index)) {
        (_, Some(_)) => None,
        (Some(field), None) => match field.kind() {
            prost_reflect::Kind::Message(message) if !field.is_list() && !field.is_map() => Some(message),
            _ => None,
        },
        (None, None) => Some(route.method.output()),
    };
    Ok(fields::requested(parts.uri.query(), &route.method.input(), output.as_ref())?)
}

/// Steps 5 and 6 for a call's one response message, trimmed to `mask` when given, shaped
/// as `view` says.
pub fn respond_with(
    gateway: &Gateway,
    index: usize,
    reply: &UnaryResponse,
    mask: Option<&FieldMask>,
    view: View<'_>,
) -> Result<Response<Body>, GatewayError> {
    let route = gateway.route_at(index);
    let mut response = match view.transcoder.raw_response(index) {
        Some(target) => {
            let body = http_body::decode(target, &reply.message)?;
            raw_response(body.content_type, Bytes::from(body.data))
        }
        None => {
            let json = view.finish(mask, view.transcoder.render(index, route, &reply.message)?)?;
            json_response(StatusCode::OK, json).map(Body::from)
        }
    };
    let status = metadata::http_code(&reply.headers, &reply.trailers).unwrap_or(StatusCode::OK);
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        *response.body_mut() = Body::empty();
        response.headers_mut().remove(CONTENT_TYPE);
    }
    *response.status_mut() = status;
    metadata::from_grpc(&reply.headers, &reply.trailers, gateway.exposed_headers(), response.headers_mut());
    Ok(response)
}

/// A raw (`google.api.HttpBody`) response: its bytes, with its content type.
pub fn raw_response(content_type: String, data: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(data));
    let content_type = if content_type.is_empty() { "application/octet-stream".to_owned() } else { content_type };
    if let Ok(value) = http::HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// The cache rule of a GET whose answer depends on nothing but its URL and the headers the
/// rule names: the one place that decides whether an answer may be cached.
pub fn cache_rule<'a>(
    gateway: &'a Gateway,
    access: &Access<'a>,
    method: &Method,
    reads_body: bool,
) -> Option<(&'a ResponseCache, &'a CacheRule)> {
    let rule = access.policy.and_then(|p| p.cache.as_ref()).filter(|_| *method == Method::GET && !reads_body)?;
    Some((gateway.cache()?, rule))
}

/// The answer from `cache` under `rule` for the route whose template (with a profile's
/// prefix) is `route`, or from `fetch` (kept when it is a 200); counted in the cache
/// metric. Keyed by template, not table index: indexes move when descriptors change, and
/// Redis outlives this gateway.
#[allow(clippy::too_many_arguments)]
pub async fn through_cache<F, Fut>(
    gateway: &Gateway,
    (cache, rule): (&ResponseCache, &CacheRule),
    route: &str,
    values: &[String],
    parts: &Parts,
    peer: Peer,
    access: &Access<'_>,
    fetch: F,
) -> Result<Response<Body>, GatewayError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Response<Body>, GatewayError>>,
{
    let request = crate::cache::Lookup {
        method: &parts.method,
        route,
        values,
        query: parts.uri.query(),
        headers: &parts.headers,
        origin: metadata::Origin::of(&parts.headers, peer),
        claims: access.claims.as_ref(),
    };
    let lookup = ResponseCache::lookup(rule, &request);
    let bypass = match &lookup {
        CacheUse::Bypass => Some("bypass"),
        CacheUse::Refresh(_) => Some("refresh"),
        CacheUse::Use(_) => None,
    };
    let response = cache.serve(lookup, rule, &parts.headers, fetch).await;
    let outcome = bypass.or_else(|| {
        let header = response.as_ref().ok()?.headers().get(crate::cache::X_CACHE)?;
        Some(if header == "HIT" { "hit" } else { "miss" })
    });
    gateway.observer().metrics().cache_lookup(outcome.unwrap_or("miss"));
    response
}

impl From<crate::cache::UnreadableAnswer> for GatewayError {
    fn from(error: crate::cache::UnreadableAnswer) -> GatewayError {
        GatewayError::BodyRead { reason: error.reason }
    }
}

/// Notes in the request's record that it matched route `index`.
pub fn note_route(gateway: &Gateway, parts: &Parts, index: usize) -> Exchange {
    let exchange = Exchange::of(&parts.extensions);
    exchange.matched(gateway.view(index).labels);
    exchange
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, value.parse().unwrap());
        headers
    }

    #[test]
    fn media_types_compare_their_essence_in_any_case() {
        assert!(is_json(&media("application/json")));
        assert!(is_json(&media("Application/JSON; charset=utf-8")));
        assert!(is_json(&media("application/problem+json")));
        assert!(is_json(&media("application/merge-patch+JSON")));
        assert!(!is_json(&media("text/json")));
        assert!(!is_json(&media("application/jsonx")));
        assert!(!is_json(&media("application/x-ndjson")));
        assert!(!is_json(&HeaderMap::new()));
        let headers = media(" application/Proto ;x=y");
        let proto = MediaType::of(&headers).unwrap();
        assert!(proto.is("application/proto"));
        assert_eq!(proto.parts(), Some(("application", "Proto")));
    }
}
