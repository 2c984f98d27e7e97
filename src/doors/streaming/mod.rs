//! The HTTP streaming door: streaming methods over plain HTTP, after step 1 has matched their
//! route. (Over WebSocket they are [`crate::doors::websocket`]'s.)
//!
//! | method | HTTP | module |
//! |---|---|---|
//! | server streaming | NDJSON response, or Server-Sent Events with `Accept: text/event-stream` | [`response`] |
//! | client streaming | NDJSON (or a JSON array) request body | [`request`] |
//!
//! Messages are transcoded one at a time as they pass, by the route's transcoder: nothing
//! waits for the whole stream, and HTTP/2 flow control to the upstream is the backpressure.

pub mod request;
pub mod response;

use std::sync::Arc;

use axum::body::Body;
use http::request::Parts;
use http::{HeaderMap, Response};

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata::Peer;
use crate::observability::Exchange;
use crate::pipeline::{self, CallKind};
use crate::policy::Access;
use crate::transcode::fields::FieldMask;
use crate::upstream::{PendingResponse, UnaryResponse, UpstreamError};
use request::RequestFormat;

/// A server-streaming call: the request message from the path, query and body; the response
/// streamed as NDJSON or Server-Sent Events.
pub async fn server_stream(
    gateway: Arc<Gateway>,
    index: usize,
    values: &[String],
    parts: Parts,
    body: Body,
    peer: Peer,
    access: &Access<'_>,
) -> Result<Response<Body>, GatewayError> {
    let route = gateway.route_at(index);
    let body = pipeline::read_body(route, &parts.headers, body, gateway.max_body_bytes()).await?;
    let message = gateway.transcoder().decode(index, route, values, parts.uri.query(), &body)?;
    let mask = pipeline::partial_response(&gateway, index, &parts)?;
    let call = pipeline::http_call_target(&gateway, index, &parts, peer, CallKind::Stream, access)?;
    let span = call.span;
    let (mut sink, pending) = call.open(route.grpc_path.clone()).await?;
    sink.send(&message).await?;
    sink.finish()?;
    let format = response::StreamFormat::negotiate(&parts.headers);
    let stream = response::MessageStream::start(gateway.clone(), index, pending, &parts, span, mask).await?;
    Ok(stream.into_response(format, &parts.headers))
}

/// A client-streaming call: each line of the body is a message, sent upstream as it arrives;
/// the one response message answers as a unary call's would.
pub async fn client_stream(
    gateway: &Gateway,
    index: usize,
    values: &[String],
    parts: Parts,
    body: Body,
    peer: Peer,
    access: &Access<'_>,
) -> Result<Response<Body>, GatewayError> {
    let _in_flight = gateway.streams().start();
    let route = gateway.route_at(index);
    let format = match gateway.transcoder().raw_request(index) {
        Some(target) => RequestFormat::Raw(target),
        None => RequestFormat::of(&parts.headers)?,
    };
    let mask = pipeline::partial_response(gateway, index, &parts)?;
    let call = pipeline::http_call_target(gateway, index, &parts, peer, CallKind::Stream, access)?;
    let span = call.span;
    let (mut sink, pending) = call.open(route.grpc_path.clone()).await?;
    let exchange = Exchange::of(&parts.extensions);
    let answer = exchange.time_call(span, single_response(pending));
    tokio::pin!(answer);
    let messages = request::Messages {
        gateway,
        index,
        route: pipeline::message_route(route),
        values,
        query: parts.uri.query(),
        content_type: pipeline::content_type(&parts.headers),
    };
    let pumped = tokio::select! {
        // The upstream may answer before it has read everything: its answer stands.
        reply = &mut answer => return respond_unary(gateway, index, reply, mask.as_ref()),
        pumped = messages.pump(format, body, &mut sink) => pumped,
    };
    match pumped {
        Ok(()) => respond_unary(gateway, index, answer.await, mask.as_ref()),
        // The upstream stopped taking messages; its answer says why.
        Err(GatewayError::Upstream(_)) => respond_unary(gateway, index, answer.await, mask.as_ref()),
        Err(error) => {
            sink.cancel();
            Err(error)
        }
    }
}

async fn single_response(pending: PendingResponse) -> Result<UnaryResponse, UpstreamError> {
    pending.headers().await?.single().await
}

fn respond_unary(
    gateway: &Gateway,
    index: usize,
    reply: Result<UnaryResponse, UpstreamError>,
    mask: Option<&FieldMask>,
) -> Result<Response<Body>, GatewayError> {
    pipeline::respond_with(gateway, index, &reply?, mask, gateway.view(index))
}

/// Whether the client asked for HTTP trailers (`TE: trailers`).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("trailers"))
}
