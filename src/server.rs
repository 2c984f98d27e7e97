//! The HTTP server: the router (everything goes to the gateway), its layers, the listener.
//!
//! Each connection speaks HTTP/1.1 or HTTP/2 (cleartext, prior knowledge) on the same port,
//! with the header limits and read timeout of `[limits]`: too many or too large headers are
//! 431, and a client that takes longer than `header_read_timeout` to send a request's headers
//! — a slowloris, or an idle keep-alive connection — is disconnected.
//!
//! A client that stops taking bytes is disconnected after `write_timeout`
//! ([`write_stall`]). The header limits are the gateway's, checked before any door with a JSON answer; hyper's
//! and h2's own caps sit well above them as a backstop, and what hyper still answers by
//! itself (a request it cannot parse) is given a JSON body by [`bare_answers`].

pub mod bare_answers;
pub mod write_stall;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::config::Limits;
use crate::gateway::Gateway;
use crate::layers::{self, Front};
use crate::metadata::Peer;
use crate::pipeline::idle_body::IdleBody;
use crate::reload::Live;
use write_stall::WriteStall;

/// The router: every method and path goes to the gateway serving at the time, behind the
/// front ([`layers`]). For callers without a socket (tests, the docs page's "try it"); the
/// listener serves the front itself.
pub fn router(live: Arc<Live>) -> Router {
    Router::new().fallback_service(front(live))
}

/// The front of the gateway serving at the time, answering with [`answer`].
fn front(live: Arc<Live>) -> Front<Answer> {
    Front::new(live, Answer)
}

/// The gateway's handler behind the front.
#[derive(Debug, Clone, Copy)]
struct Answer;

impl layers::Handler for Answer {
    // Boxed: the doors' futures together are large, and a box moved along is one pointer.
    type Future = std::pin::Pin<Box<dyn Future<Output = Response> + Send>>;

    fn answer(&self, gateway: Arc<Gateway>, request: Request) -> Self::Future {
        Box::pin(answer(gateway, request))
    }
}

async fn answer(gateway: Arc<Gateway>, mut request: Request) -> Response {
    host_from_authority(&mut request);
    if let Err(error) = within_header_limits(request.headers(), &gateway.edge().limits) {
        let request_id = gateway.request_id(request.headers()).cloned();
        return gateway.error_response(error, request_id.as_ref()).map(axum::body::Body::from);
    }
    if gateway.docs_public()
        && request.method() == http::Method::GET
        && let Some(page) = public_docs(&gateway, request.uri().path())
    {
        return page;
    }
    // Set when served by `serve`; absent when the router is driven without a socket.
    let peer = request.extensions().get::<Peer>().copied().unwrap_or_default();
    // A bodiless request (most GETs) needs no timer.
    if !http_body::Body::is_end_stream(request.body()) {
        let timeout = gateway.edge().limits.body_read_timeout;
        request = request.map(|body| axum::body::Body::new(IdleBody::new(body, timeout)));
    }
    crate::doors::handle(&gateway, request, peer).await
}

/// With `[docs] public = true`, the docs page and its document on the public listener, where
/// "try it" calls the API from the page's own origin.
fn public_docs(gateway: &Gateway, path: &str) -> Option<Response> {
    match path {
        "/docs" => Some(crate::admin::docs::page("")),
        "/docs/openapi.json" => {
            let body = serde_json::to_vec(&crate::openapi::document(gateway)).unwrap_or_default();
            Some(crate::error::json_response(http::StatusCode::OK, body).map(axum::body::Body::from))
        }
        _ => None,
    }
}

/// `[limits] max_headers` and `max_header_bytes` (names and values, as HTTP/2 counts them).
fn within_header_limits(headers: &http::HeaderMap, limits: &Limits) -> Result<(), crate::error::GatewayError> {
    let count = headers.len();
    if count > limits.max_headers {
        let what = format!("{count} headers, at most {} allowed", limits.max_headers);
        return Err(crate::error::GatewayError::HeadersTooLarge { what });
    }
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if bytes > limits.max_header_bytes {
        let what = format!("{bytes} bytes of headers, at most {} allowed", limits.max_header_bytes);
        return Err(crate::error::GatewayError::HeadersTooLarge { what });
    }
    Ok(())
}

/// An HTTP/2 request names its host in `:authority`, not `Host`: the gateway reads (and
/// forwards) one `Host` whatever the version.
fn host_from_authority(request: &mut Request) {
    if request.headers().contains_key(http::header::HOST) {
        return;
    }
    let authority = request.uri().authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = authority {
        request.headers_mut().insert(http::header::HOST, host);
    }
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` — over TLS when `[tls]` is configured — until
/// `shutdown` completes, then stops accepting and lets the connections in flight finish, for
/// at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Copied, not held: a gateway a reload replaced must be free to go (and its upstreams'
    // health checkers with it).
    let edge = live.gateway().edge().clone();
    let (limits, drain_timeout) = (edge.limits, edge.drain_timeout);
    let tls = match &edge.tls {
        Some(config) => Some(crate::tls::acceptor(config).map_err(std::io::Error::other)?),
        None => None,
    };
    let front = front(live.clone());
    let builder = connection_builder(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, say: the listener itself is fine; keep accepting.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written whole; Nagle's algorithm would only hold their last segment back.
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(front.for_connection(peer.ip(), tls.is_some()));
        match &tls {
            None => {
                let io = bare_answers::JsonAnswers::new(WriteStall::new(TokioIo::new(tcp), limits.write_timeout));
                let connection = builder.serve_connection_with_upgrades(io, service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!("connection from {peer} ended: {e}");
                    }
                });
            }
            Some(acceptor) => {
                let handshake = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let write_timeout = limits.write_timeout;
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let stream = match handshake.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => return tracing::debug!("TLS handshake with {peer} timed out"),
                    };
                    let io = bare_answers::JsonAnswers::new(WriteStall::new(TokioIo::new(stream), write_timeout));
                    let connection = builder.serve_connection_with_upgrades(io, service);
                    if let Err(e) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!("connection from {peer} ended: {e}");
                    }
                });
            }
        }
    }
    // New connections are refused from here on; those open finish what they started.
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after the {drain_timeout:?} drain timeout: closing their connections");
    }
    Ok(())
}

/// How far above the configured header limits hyper's and h2's own caps sit: requests between
/// the two get the gateway's JSON 431, and memory per connection stays bounded.
const HARD_CAP_FACTOR: usize = 4;

/// HTTP/1.1 and HTTP/2 with caps above the configured limits (see [`within_header_limits`]).
fn connection_builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    let header_bytes = limits.max_header_bytes.saturating_mul(HARD_CAP_FACTOR);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers.saturating_mul(HARD_CAP_FACTOR))
        .max_buf_size(header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.http2_keep_alive_interval))
        .keep_alive_timeout(limits.header_read_timeout);
    builder
}
