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
//!
//! [`handle`] picks the door. Whatever the door, the request passes
//! [`crate::pipeline::authorize`] before anything reaches the upstream. Doors never import
//! each other; they import the pipeline and what lies below it.

pub mod composite;
pub mod connect;
pub mod grpc;
pub mod rest;
pub mod streaming;
pub mod websocket;

use std::sync::Arc;

use axum::body::Body;
use http::request::Parts;
use http::{Method, Request, Response};

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata::Peer;
use crate::observability::Exchange;
use crate::pipeline::{self, Arrival};
use crate::profile::View;
use crate::route::{Lookup, RouteMatch};

/// Answers one HTTP request. Never fails: errors become `google.rpc.Status` JSON (or the
/// error shape of the request's protocol).
pub async fn handle(gateway: &Arc<Gateway>, request: Request<Body>, peer: Peer) -> Response<Body> {
    let doors = &gateway.doors();
    match grpc::Protocol::of(request.headers()) {
        Some(protocol) => return grpc::handle(gateway.clone(), protocol, request, peer).await,
        None if request.method() == Method::POST && connect::is_connect(request.headers()) => {
            return match doors.connect {
                true => connect::unary(gateway.clone(), request, peer).await,
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
/// or a unary call.
async fn respond(gateway: &Arc<Gateway>, request: Request<Body>, peer: Peer) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = request.into_parts();
    let profile = gateway.profiles().find(parts.uri.path());
    let path = profile.map_or(parts.uri.path(), |(_, below)| below);
    let not_exposed = || GatewayError::NotFound { method: parts.method.clone(), path: parts.uri.path().to_owned() };
    let also_allowed = match gateway.aggregates().lookup(&parts.method, path) {
        Lookup::Matched(matched) => {
            let view = match profile {
                Some((profile, _)) => {
                    gateway.profile_view(profile, profile.aggregate(matched.index).ok_or_else(not_exposed)?)
                }
                None => View { transcoder: gateway.transcoder(), shape: None, labels: &matched.route.labels },
            };
            return composite::respond(gateway, matched, &parts, path, body, peer, view).await;
        }
        Lookup::MethodNotAllowed { allow } => allow,
        Lookup::NotFound | Lookup::InvalidPath { .. } => Vec::new(),
    };
    let upgrade = websocket::is_upgrade(&parts) && profile.is_none();
    if upgrade && !gateway.doors().websocket {
        return Err(not_exposed());
    }
    let matched = route(gateway, &parts, path, upgrade).map_err(|error| allow_also(error, &parts, also_allowed))?;
    let route = matched.route;
    let (index, values) = (matched.index, matched.values);
    let view = match profile {
        Some((profile, _)) => gateway.profile_view(profile, profile.route(index).ok_or_else(not_exposed)?),
        None => gateway.view(index),
    };
    Exchange::of(&parts.extensions).matched(view.labels);
    // Under a profile, the method is reached by a route of the profile's: its own routes'
    // policies and the first that fits the whole path hold it.
    let arrival = match profile {
        Some(_) => Arrival::Via { http_method: &route.http_method, path: parts.uri.path() },
        None => pipeline::arrival_on(route, parts.uri.path()),
    };
    let access = pipeline::authorize(gateway, index, arrival, &parts.headers, peer).await?;
    let (client_streams, server_streams) = (route.method.is_client_streaming(), route.method.is_server_streaming());
    if upgrade && (client_streams || server_streams) {
        return websocket::upgrade(gateway.clone(), index, values, parts, peer, &access).await;
    }
    match (client_streams, server_streams) {
        (false, false) => rest::unary(gateway, index, &values, parts, body, peer, &access, view).await,
        (false, true) => streaming::server_stream(gateway.clone(), index, &values, parts, body, peer, &access).await,
        (true, false) => streaming::client_stream(gateway, index, &values, parts, body, peer, &access).await,
        (true, true) => Err(GatewayError::WebSocketRequired { method: route.method.full_name().to_owned() }),
    }
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
