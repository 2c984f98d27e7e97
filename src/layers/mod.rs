//! Cross-cutting concerns in front of every door, in one service and in order.
//!
//! [`Front`] does, for each request, outermost first:
//!
//! 1. request id: a malformed one dropped, then kept or generated, and echoed on every
//!    response, errors included ([`request_id`]);
//! 2. observe: the trace context, one span per request, and its access log line, metrics and
//!    exported span when the response ends — after the id exists, and around everything else
//!    so that shed requests and preflights are recorded too ([`observe`]);
//! 3. overload: a fast 503 beyond `max_concurrent_requests` ([`overload`]);
//! 4. CORS: preflights answered here, before any route or upstream ([`cors`]);
//! 5. compression of responses, decompression of request bodies ([`compression`]);
//! 6. the panic safety net: a panic below becomes a 500 JSON error, not a dropped connection
//!    ([`catch_panic`]).
//!
//! Steps 1 to 3 and 6 are written out in `Front::answer` and `admit` rather than stacked as
//! tower layers: a stack of eight boxed, cloned services cost every request an allocation and a
//! large future copy per layer (see PERFORMANCE.md). CORS and compression stay tower-http's
//! layers, on the requests that need them only: a request that names no encoding, to a
//! gateway without CORS, goes straight to the handler.

pub mod catch_panic;
pub mod compression;
pub mod cors;
pub mod observe;
pub mod overload;
pub mod request_id;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::{HeaderName, Request, Response};
use tower::util::MapResponseLayer;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::gateway::Gateway;
use crate::metadata::Peer;
use crate::observability::Observer;
use crate::reload::Live;
use overload::Overload;

/// What answers a request once the front has done its part: the gateway serving at the time.
pub trait Handler: Clone + Send + Sync + 'static {
    /// The answer being made.
    type Future: Future<Output = Response<Body>> + Send + 'static;

    /// Answers `request` with `gateway`, the one serving when it arrived.
    fn answer(&self, gateway: Arc<Gateway>, request: Request<Body>) -> Self::Future;
}

/// Every request's way in: the steps above, then `H`.
pub struct Front<H> {
    shared: Arc<Shared<H>>,
    /// The connection's remote address and whether it is TLS, when served from a socket; the
    /// [`Peer`] of each request on it is resolved from them.
    connection: Option<(IpAddr, bool)>,
}

impl<H> Clone for Front<H> {
    fn clone(&self) -> Self {
        Front { shared: self.shared.clone(), connection: self.connection }
    }
}

/// What every request through one listener shares. Read from the gateway once, when the
/// listener starts: a reload keeps these settings (see `reload`).
struct Shared<H> {
    live: Arc<Live>,
    handler: H,
    observer: Arc<Observer>,
    request_id: HeaderName,
    overload: Overload,
    /// CORS (when configured) around the handler.
    cors: Option<Router>,
    /// CORS (when configured) and compression around the handler, for requests that name an
    /// encoding; `None` when compression is off.
    compressing: Option<Router>,
}

impl<H: Handler> Front<H> {
    /// The front of `live`'s gateway, answering with `handler`.
    pub fn new(live: Arc<Live>, handler: H) -> Front<H> {
        let gateway = live.gateway();
        let (edge, observer) = (gateway.edge(), gateway.observer());
        let handle = {
            let handler = handler.clone();
            move |State(live): State<Arc<Live>>, request: Request<Body>| {
                let answer = handler.answer(live.gateway(), request);
                async move { caught(answer).await }
            }
        };
        let base = Router::new().fallback(handle).with_state(live.clone());
        let with_cors = |router: Router| match &edge.cors {
            Some(cors) => {
                router.layer(cors::layer(cors, observer.request_id_header())).layer(MapResponseLayer::new(cors::finish))
            }
            None => router,
        };
        let compressing = edge.compression.then(|| with_cors(compression::layer(base.clone())));
        let cors = edge.cors.is_some().then(|| with_cors(base));
        let shared = Shared {
            live: live.clone(),
            handler,
            observer: observer.clone(),
            request_id: observer.request_id_header().clone(),
            overload: Overload::new(edge.limits.max_concurrent_requests),
            cors,
            compressing,
        };
        Front { shared: Arc::new(shared), connection: None }
    }

    /// This front for the requests of one connection from `remote` (over TLS or not).
    pub fn for_connection(&self, remote: IpAddr, tls: bool) -> Front<H> {
        Front { shared: self.shared.clone(), connection: Some((remote, tls)) }
    }

    /// Steps 1 to 6, then the handler.
    async fn answer(self, mut request: Request<Body>) -> Response<Body> {
        let shared = &*self.shared;
        // Read once: the request is answered by the gateway serving when it arrived, even if
        // a reload swaps it meanwhile.
        let gateway = shared.live.gateway();
        let peer = match self.connection {
            // Who sent the request, resolved once, before anything else: the access log, the
            // policies and the upstream metadata all read this one answer.
            Some((remote, tls)) => {
                let peer = gateway.forwarding().peer(Some(remote), tls, request.headers());
                request.extensions_mut().insert(peer);
                peer
            }
            // Driven without a socket (tests, benches, the docs page's "try it"): whatever the
            // caller put there.
            None => request.extensions().get::<Peer>().copied().unwrap_or_default(),
        };
        let id = request_id::keep_or_make(request.headers_mut(), &shared.request_id);
        let (watch, request) = observe::begin(&shared.observer, request, peer);
        let span = watch.span().clone();
        let response = admit(self.shared.clone(), gateway, request).instrument(span).await;
        let mut response = observe::end(watch, response);
        if !response.headers().contains_key(&shared.request_id) {
            response.headers_mut().insert(shared.request_id.clone(), id);
        }
        response
    }
}

/// Steps 3 to 6.
async fn admit<H: Handler>(shared: Arc<Shared<H>>, gateway: Arc<Gateway>, request: Request<Body>) -> Response<Body> {
    // Held until the response's head is ready: a stream counts until then.
    let Some(_permit) = shared.overload.enter() else {
        return overload::refused(&gateway, request.headers().get(&shared.request_id));
    };
    let layered = match &shared.compressing {
        Some(router) if compression::wants_encoding(request.headers()) => Some(router.clone()),
        _ => shared.cors.clone(),
    };
    match layered {
        Some(router) => match router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        None => caught(shared.handler.answer(gateway, request)).await,
    }
}

/// Step 6: the answer, or the 500 of a panic while making it.
async fn caught(answer: impl Future<Output = Response<Body>>) -> Response<Body> {
    match AssertUnwindSafe(answer).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => catch_panic::response_for(panic),
    }
}

impl<H, B> Service<Request<B>> for Front<H>
where
    H: Handler,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Never busy: beyond the cap a request is answered 503 at once, not held back.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let front = self.clone();
        Box::pin(async move { Ok(front.answer(request.map(Body::new)).await) })
    }
}
