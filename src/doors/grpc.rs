//! The gRPC and gRPC-Web doors, on the same port as REST: their requests pass through to the upstream
//! untranscoded — frames, metadata and trailers as they are — so one listener serves curl,
//! browsers, gRPC-Web clients and gRPC clients, behind the same layers.
//!
//! - Native gRPC (`application/grpc`, `application/grpc+proto`, ...), over HTTP/2: the
//!   request's frames stream up as they arrive, the response's come back the same way, every
//!   kind of method included.
//! - gRPC-Web (`application/grpc-web[-text][+proto]`), over HTTP/1.1 or HTTP/2: tonic-web
//!   translates it to gRPC (base64 for `-text`, trailers as the body's last frame) in front
//!   of the same pass-through.
//!
//! Failures before the upstream answers are gRPC statuses (trailers-only responses), as a
//! gRPC client expects: an unknown method is UNIMPLEMENTED, an unreachable upstream
//! UNAVAILABLE.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::task::JoinHandle;
use tonic::{Code, Status};
use tower::{Layer, ServiceExt};

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata::{self, Peer};
use crate::observability::InFlight;
use crate::pipeline::{self, Arrival, MediaType};
use crate::upstream::{RawBody, RequestSink};

/// A protocol whose requests pass through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC over HTTP/2.
    Grpc,
    /// gRPC-Web, from browsers.
    GrpcWeb,
}

impl Protocol {
    /// The protocol a request speaks, from its `Content-Type`; `None` for REST.
    pub fn of(headers: &HeaderMap) -> Option<Protocol> {
        let (kind, subtype) = MediaType::of(headers)?.parts()?;
        if !kind.eq_ignore_ascii_case("application") {
            return None;
        }
        let base = subtype.split_once('+').map_or(subtype, |(base, _)| base);
        if base.eq_ignore_ascii_case("grpc") {
            Some(Protocol::Grpc)
        } else if base.eq_ignore_ascii_case("grpc-web") || base.eq_ignore_ascii_case("grpc-web-text") {
            Some(Protocol::GrpcWeb)
        } else {
            None
        }
    }
}

/// Answers a request in `protocol`: passed through when that door is open, UNIMPLEMENTED
/// (as for a method the gateway does not know) when it is closed.
pub async fn handle(gateway: Arc<Gateway>, protocol: Protocol, request: Request<Body>, peer: Peer) -> Response<Body> {
    let open = match protocol {
        Protocol::Grpc => gateway.doors().grpc,
        Protocol::GrpcWeb => gateway.doors().grpc_web,
    };
    match protocol {
        Protocol::Grpc => grpc(gateway, open, request, peer).await,
        Protocol::GrpcWeb => grpc_web(gateway, open, request, peer).await,
    }
}

/// Proxies a gRPC request to the upstream serving its method.
async fn grpc(gateway: Arc<Gateway>, open: bool, request: Request<Body>, peer: Peer) -> Response<Body> {
    let forwarded = match open {
        true => forward(&gateway, request, peer).await,
        false => Err(GatewayError::UnknownMethod { path: request.uri().path().to_owned() }),
    };
    forwarded.unwrap_or_else(trailers_only)
}

/// Proxies a gRPC-Web request: translated to gRPC and back by tonic-web.
async fn grpc_web(gateway: Arc<Gateway>, open: bool, request: Request<Body>, peer: Peer) -> Response<Body> {
    let inner = tower::service_fn(move |request: Request<tonic::body::Body>| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(grpc(gateway, open, request.map(Body::new), peer).await) }
    });
    match tonic_web::GrpcWebLayer::new().layer(inner).oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

async fn forward(gateway: &Arc<Gateway>, request: Request<Body>, peer: Peer) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let Some(index) = gateway.method_route(path) else {
        return Err(GatewayError::UnknownMethod { path: path.to_owned() });
    };
    let route = gateway.route_at(index);
    let exchange = pipeline::note_route(gateway, &parts, index);
    let access = pipeline::authorize(gateway, index, Arrival::Method, &parts, peer).await?;
    let metadata = metadata::passthrough(&parts.headers, peer, gateway.header_rules())?;
    // The client's `grpc-timeout` goes up as it is; the upstream enforces it.
    let caller = pipeline::Caller { peer, exchange: &exchange };
    let call = pipeline::call_target(gateway, index, metadata, None, pipeline::CallKind::Stream, &access, caller)?;
    let span = call.span;
    let (sink, pending) = call.open(route.grpc_path.clone()).await?;
    // The request streams up while the response streams down (a bidirectional call needs
    // both at once); the task ends with the request body or the call, whichever is first.
    let pump = tokio::spawn(pump(body, sink, gateway.streams().start()));
    let endpoint = pending.endpoint().clone();
    let response = pending.raw().await;
    exchange.upstream_answered(span.elapsed(), Some(&endpoint));
    exchange.call_answered(span, Some(&endpoint));
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            pump.abort();
            return Err(e.into());
        }
    };
    let in_flight = gateway.streams().start();
    let mut response = response.map(|body| Body::new(Proxied { body, pump, _in_flight: in_flight }));
    // gRPC-Web answers reach browsers as they are.
    metadata::strip_browser_directives(response.headers_mut(), gateway.exposed_headers());
    Ok(response)
}

/// Copies the client's frames to the upstream, then ends the request stream; a client that
/// fails mid-request cancels the call.
async fn pump(mut body: Body, mut sink: RequestSink, _in_flight: InFlight) {
    while let Some(frame) = body.frame().await {
        let data = match frame.map(Frame::into_data) {
            Ok(Ok(data)) => data,
            // Request trailers have no meaning in gRPC.
            Ok(Err(_trailers)) => continue,
            Err(_) => {
                sink.cancel();
                return;
            }
        };
        if sink.send_frames(data).await.is_err() {
            // The upstream stopped taking the request: its response says why.
            return;
        }
    }
    let _ = sink.finish();
}

/// The upstream's response body; dropping it (the call is over, or the client left) stops the
/// request's pump.
struct Proxied {
    body: RawBody,
    pump: JoinHandle<()>,
    _in_flight: InFlight,
}

impl http_body::Body for Proxied {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

impl Drop for Proxied {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// A failure as gRPC reports it: a trailers-only response with the status.
fn trailers_only(error: GatewayError) -> Response<Body> {
    let code = match &error {
        GatewayError::UnknownMethod { .. } => Code::Unimplemented,
        // Never reached, on gRPC's terms: the call can be retried elsewhere.
        GatewayError::Upstream(crate::upstream::UpstreamError::Unreachable { .. }) => Code::Unavailable,
        other => other.code().0,
    };
    let mut response = Status::new(code, error.to_string()).into_http::<Body>();
    response.extensions_mut().insert(Arc::new(error));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;

    #[test]
    fn the_content_type_tells_the_protocol() {
        let of = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            Protocol::of(&headers)
        };
        assert_eq!(of("application/grpc"), Some(Protocol::Grpc));
        assert_eq!(of("application/grpc+proto"), Some(Protocol::Grpc));
        assert_eq!(of("Application/GRPC+json; charset=utf-8"), Some(Protocol::Grpc));
        assert_eq!(of("application/grpc-web"), Some(Protocol::GrpcWeb));
        assert_eq!(of("application/grpc-web-text+proto"), Some(Protocol::GrpcWeb));
        assert_eq!(of("application/json"), None);
        assert_eq!(of("application/grpcx"), None);
        assert_eq!(Protocol::of(&HeaderMap::new()), None);
    }
}
