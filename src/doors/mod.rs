//! The doors: each way a request reaches an upstream method, as a thin adapter that turns its
//! wire format into the [`crate::pipeline`]'s steps and their results back.
//!
//! | door | module | reaches a method by |
//! |---|---|---|
//! | REST (annotated routes and `POST /pkg.Service/Method`) | [`rest`] | the route table |
//! | server and client streams over HTTP (NDJSON, SSE) | [`streaming`] | the route table |
//! | WebSocket | [`websocket`] | the route table, with `Upgrade: websocket` |
//! | composite routes | [`composite`] | its calls' method names |
//! | Connect | [`connect`] | `/pkg.Service/Method` |
//! | gRPC, gRPC-Web | [`grpc`] | `/pkg.Service/Method` |
//! | MCP tools (`[mcp]`) | [`mcp`] | a tool's name |
//!
//! [`handle`] picks the door. Whatever the door, the request passes
//! [`crate::pipeline::authorize`] before anything reaches the upstream. Doors never import
//! each other; they import the pipeline and what lies below it.

pub mod composite;
pub mod connect;
pub mod grpc;
pub mod mcp;
pub mod rest;
pub mod streaming;
pub mod websocket;

use std::sync::Arc;

use axum::body::Body;
use http::request::Parts;
use http::{Method, Request, Response};

use crate::aggregate::Aggregate;
use crate::auth;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata::Peer;
use crate::observability::Exchange;
use crate::pipeline::{self, Arrival};
use crate::profile::{Profile, View};
use crate::route::{Lookup, Route, RouteMatch};

/// Answers one HTTP request. Never fails: errors become `google.rpc.Status` JSON (or the
/// error shape of the request's protocol).
///
/// Every door but the unary REST call is boxed where it is entered: a request's future is as
/// large as the largest door in it, and a future is copied whole each time it is moved (into
/// its box, into its caller's state), so the common call keeps its future small and the other
/// doors pay one allocation each.
pub async fn handle(gateway: &Arc<Gateway>, request: Request<Body>, peer: Peer) -> Response<Body> {
    if mcp::is_mcp(gateway, &request) {
        return Box::pin(mcp::handle(gateway.clone(), request, peer)).await;
    }
    match grpc::Protocol::of(request.headers()) {
        Some(protocol) => return Box::pin(grpc::handle(gateway.clone(), protocol, request, peer)).await,
        None if request.method() == Method::POST && connect::is_connect(request.headers()) => {
            return match gateway.doors().connect {
                true => Box::pin(connect::unary(gateway.clone(), request, peer)).await,
                false => connect::closed(&request),
            };
        }
        None => {}
    }
    let request_id = gateway.request_id(request.headers()).cloned();
    match respond(gateway, request, peer).await {
        Ok(response) => response,
        Err(error) => gateway.error_response(error, request_id.as_ref()).map(Body::from),
    }
}

/// Step 1, the route, then the door for it: a composite route, a WebSocket session, a stream
/// or a unary call, each after [`pipeline::authorize`].
async fn respond(gateway: &Arc<Gateway>, request: Request<Body>, peer: Peer) -> Result<Response<Body>, GatewayError> {
    let (mut parts, body) = request.into_parts();
    if gateway.policies().reads_query_tokens()
        && let Some(token) = auth::take_query_token(&mut parts.uri)
    {
        parts.extensions.insert(token);
    }
    let place = Place::of(gateway, &parts);
    let also_allowed = match gateway.aggregates().lookup(&parts.method, place.path) {
        Lookup::Matched(matched) => {
            let view = place.composite_view(gateway, &matched, &parts)?;
            return Box::pin(composite::respond(gateway, matched, &parts, place.path, body, peer, view)).await;
        }
        Lookup::MethodNotAllowed { allow } => allow,
        Lookup::NotFound | Lookup::InvalidPath { .. } => Vec::new(),
    };
    let upgrade = place.websocket_upgrade(gateway, &parts)?;
    let matched =
        route(gateway, &parts, place.path, upgrade).map_err(|error| allow_also(error, &parts, also_allowed))?;
    let view = place.route_view(gateway, matched.index, &parts)?;
    Exchange::of(&parts.extensions).matched(view.labels);
    let arrival = place.arrival(matched.route, parts.uri.path());
    let access = pipeline::authorize(gateway, matched.index, arrival, &parts, peer).await?;
    let method = &matched.route.method;
    let (index, values) = (matched.index, matched.values);
    match (method.is_client_streaming(), method.is_server_streaming()) {
        (true, _) | (_, true) if upgrade => {
            Box::pin(websocket::upgrade(gateway.clone(), index, values, parts, peer, &access)).await
        }
        (false, false) => rest::unary(gateway, index, &values, parts, body, peer, &access, view).await,
        (false, true) => {
            Box::pin(streaming::server_stream(gateway.clone(), index, &values, parts, body, peer, &access)).await
        }
        (true, false) => Box::pin(streaming::client_stream(gateway, index, &values, parts, body, peer, &access)).await,
        (true, true) => Err(GatewayError::WebSocketRequired { method: method.full_name().to_owned() }),
    }
}

/// Where a request path lies: under a profile's prefix (and the path below it), or not.
struct Place<'g, 'p> {
    profile: Option<&'g Profile>,
    /// The path the route table and composite routes see.
    path: &'p str,
}

impl<'g, 'p> Place<'g, 'p> {
    fn of(gateway: &'g Gateway, parts: &'p Parts) -> Self {
        match gateway.profiles().find(parts.uri.path()) {
            Some((profile, below)) => Place { profile: Some(profile), path: below },
            None => Place { profile: None, path: parts.uri.path() },
        }
    }

    /// How composite route `matched` is answered here: with the profile's shape when it
    /// exposes the route (404 when it does not), else as configured.
    fn composite_view(
        &self,
        gateway: &'g Gateway,
        matched: &RouteMatch<'g, Aggregate>,
        parts: &Parts,
    ) -> Result<View<'g>, GatewayError> {
        match self.profile {
            Some(profile) => {
                let exposed = profile.aggregate(matched.index).ok_or_else(|| not_exposed(parts))?;
                Ok(gateway.profile_view(profile, exposed))
            }
            None => Ok(View { transcoder: gateway.transcoder(), shape: None, labels: &matched.route.labels }),
        }
    }

    /// How route `index` is answered here, as [`Place::composite_view`].
    fn route_view(&self, gateway: &'g Gateway, index: usize, parts: &Parts) -> Result<View<'g>, GatewayError> {
        match self.profile {
            Some(profile) => {
                let exposed = profile.route(index).ok_or_else(|| not_exposed(parts))?;
                Ok(gateway.profile_view(profile, exposed))
            }
            None => Ok(gateway.view(index)),
        }
    }

    /// Whether the request opens a WebSocket (never under a profile); 404 when that door is
    /// closed.
    fn websocket_upgrade(&self, gateway: &Gateway, parts: &Parts) -> Result<bool, GatewayError> {
        let upgrade = websocket::is_upgrade(parts) && self.profile.is_none();
        match upgrade && !gateway.doors().websocket {
            true => Err(not_exposed(parts)),
            false => Ok(upgrade),
        }
    }

    /// How the request reached `route`'s method. Under a profile, by a route of the
    /// profile's: the method's own routes' policies and the first that fits the whole path
    /// hold it.
    fn arrival<'a>(&self, route: &'a Route, path: &'a str) -> Arrival<'a> {
        match self.profile {
            Some(_) => Arrival::Via { http_method: &route.http_method, path },
            None => pipeline::arrival_on(route, path),
        }
    }
}

/// The 404 of a path that exists, but not here (under a profile that does not expose it, or
/// through a closed door).
fn not_exposed(parts: &Parts) -> GatewayError {
    GatewayError::NotFound { method: parts.method.clone(), path: parts.uri.path().to_owned() }
}

/// Step 1: the route for this request. A WebSocket handshake is a GET whatever the method's
/// HTTP rule says, so it also matches a POST route of a streaming method.
fn route<'t>(gateway: &'t Gateway, parts: &Parts, path: &str, upgrade: bool) -> Result<RouteMatch<'t>, GatewayError> {
    let table = gateway.table();
    let mut lookup = table.lookup(&parts.method, path);
    if upgrade
        && matches!(lookup, Lookup::MethodNotAllowed { .. })
        && let Lookup::Matched(matched) = table.lookup(&Method::POST, path)
        && matched.route.method.is_client_streaming()
    {
        lookup = Lookup::Matched(matched);
    }
    match lookup {
        Lookup::Matched(matched) => Ok(matched),
        Lookup::NotFound => {
            Err(GatewayError::NotFound { method: parts.method.clone(), path: parts.uri.path().to_owned() })
        }
        Lookup::MethodNotAllowed { allow } => Err(GatewayError::MethodNotAllowed {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            allow,
        }),
        Lookup::InvalidPath { reason } => Err(GatewayError::InvalidPath { reason }),
    }
}

/// A 404 or 405 for a path that composite routes also match under other methods.
fn allow_also(error: GatewayError, parts: &Parts, also: Vec<Method>) -> GatewayError {
    if also.is_empty() {
        return error;
    }
    let path = parts.uri.path().to_owned();
    match error {
        GatewayError::NotFound { .. } => {
            GatewayError::MethodNotAllowed { method: parts.method.clone(), path, allow: also }
        }
        GatewayError::MethodNotAllowed { mut allow, .. } => {
            allow.extend(also.into_iter().filter(|m| !allow.contains(m)).collect::<Vec<_>>());
            GatewayError::MethodNotAllowed { method: parts.method.clone(), path, allow }
        }
        other => other,
    }
}
