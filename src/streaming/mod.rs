//! Streaming methods over HTTP, after step 1 has matched their route.
//!
//! | method | HTTP | module |
//! |---|---|---|
//! | server streaming | NDJSON response, or Server-Sent Events with `Accept: text/event-stream` | [`response`] |
//! | client streaming | NDJSON (or a JSON array) request body | [`request`] |
//! | any streaming method | WebSocket, one JSON message per text frame each way | [`websocket`] |
//!
//! Messages are transcoded one at a time as they pass, by the route's transcoder: nothing
//! waits for the whole stream, and HTTP/2 flow control to the upstream is the backpressure.

pub mod request;
pub mod response;
pub mod websocket;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use http::request::Parts;
use http::{HeaderMap, Response};

use crate::error::GatewayError;
use crate::gateway::{self, CallKind, Gateway};
use crate::metadata::Peer;
use crate::observability::Exchange;
use crate::policy::Access;
use crate::route::{BodySelector, Route};
use crate::transcode::fields::FieldMask;
use crate::upstream::{PendingResponse, UnaryResponse, UpstreamError};
use request::RequestFormat;

/// Streams in progress, for operators and for tests that check nothing is left behind when
/// a client goes away.
#[derive(Debug, Default, Clone)]
pub struct StreamCounter(Arc<AtomicUsize>);

/// One stream in progress: counted until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl StreamCounter {
    /// Counts a stream until the returned guard is dropped.
    pub fn start(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlight(self.0.clone())
    }

    /// How many are in progress.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

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
    let body = gateway::read_body(route, &parts.headers, body, gateway.max_body_bytes()).await?;
    let message = gateway.transcoder().decode(index, route, values, parts.uri.query(), &body)?;
    let mask = gateway.partial_response(index, &parts)?;
    let call = gateway.call_target(index, &parts.headers, peer, CallKind::Stream, access)?;
    let started = std::time::Instant::now();
    let (mut sink, pending) = call.upstream.open(route.grpc_path.clone(), call.metadata, call.deadline).await?;
    sink.send(&message).await?;
    sink.finish()?;
    let format = response::StreamFormat::negotiate(&parts.headers);
    let stream = response::MessageStream::start(gateway.clone(), index, pending, &parts, started, mask).await?;
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
    let mask = gateway.partial_response(index, &parts)?;
    let call = gateway.call_target(index, &parts.headers, peer, CallKind::Stream, access)?;
    let (mut sink, pending) = call.upstream.open(route.grpc_path.clone(), call.metadata, call.deadline).await?;
    let exchange = Exchange::of(&parts.extensions);
    let answer = exchange.time_call(single_response(pending));
    tokio::pin!(answer);
    let messages = request::Messages {
        gateway,
        index,
        route: message_route(route),
        values,
        query: parts.uri.query(),
        content_type: gateway::content_type(&parts.headers),
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
    gateway.respond_with(index, &reply?, mask, gateway.view(index))
}

/// The route as a client stream's lines and WebSocket frames see it: each is a whole request
/// message, unless the HTTP rule binds the body to one field.
pub fn message_route(route: &Route) -> Cow<'_, Route> {
    if route.body == BodySelector::Empty {
        let mut whole = route.clone();
        whole.body = BodySelector::Whole;
        Cow::Owned(whole)
    } else {
        Cow::Borrowed(route)
    }
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
