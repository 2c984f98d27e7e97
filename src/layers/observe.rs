//! The observe layer: each request is watched from its arrival to the end of its response
//! body — one tracing span around its handling, its body bytes counted both ways — and written
//! out (access log line, metrics, exported span) by [`Observer`] when it ends.
//!
//! It sits inside the request-id layer, so the id it records is the one the client gets back,
//! and outside everything else, so shed requests, preflights and compressed bytes are all
//! counted as the client saw them.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::metadata::Peer;
use crate::observability::{Observer, Watch};

/// Wraps services in [`Observe`].
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    observer: Arc<Observer>,
}

impl ObserveLayer {
    /// The layer, recording with `observer`.
    pub fn new(observer: Arc<Observer>) -> ObserveLayer {
        ObserveLayer { observer }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, observer: self.observer.clone() }
    }
}

/// Watches each request through `S`.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    observer: Arc<Observer>,
}

impl<S> Service<Request<Body>> for Observe<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // Resolved by the listener (see `server::serve`); absent without a socket.
        let peer = request.extensions().get::<Peer>().copied().unwrap_or_default();
        let (mut watch, bytes_in) = self.observer.begin(&mut request, peer);
        // A bodiless request (most GETs) has nothing to count.
        let request = if http_body::Body::is_end_stream(request.body()) {
            request
        } else {
            request.map(|body| Body::new(CountedBody { inner: body, count: bytes_in }))
        };
        // The clone that was driven to readiness serves this request (tower's clone-and-swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let span = watch.span().clone();
        Box::pin(async move {
            let response = inner.call(request).instrument(span).await?;
            let (mut parts, body) = response.into_parts();
            // Every response of a rate-limited route says where the client stands; a refusal
            // says it already, for the limit that refused.
            if let Some(limits) = watch.exchange().take_rate_limits() {
                for (name, value) in &limits {
                    if !parts.headers.contains_key(name) {
                        parts.headers.insert(name.clone(), value.clone());
                    }
                }
            }
            watch.responded(&parts);
            Ok(Response::from_parts(parts, Body::new(WatchedBody { inner: body, watch })))
        })
    }
}

/// A request body whose bytes are counted as the handler reads them.
struct CountedBody {
    inner: Body,
    count: Arc<AtomicU64>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells its watch what was sent; dropping it (at its end, or when the
/// client leaves) drops the watch, which writes the request out.
struct WatchedBody {
    inner: Body,
    watch: Watch,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.watch.sent(data.len());
                } else if let Some(trailers) = frame.trailers_ref() {
                    self.watch.trailers(trailers);
                }
            }
            Poll::Ready(None) => self.watch.ended(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        if http_body::Body::is_end_stream(&self.inner) {
            self.watch.ended();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        // An empty body (a 204, a HEAD answer) may never be polled.
        if http_body::Body::is_end_stream(&self.inner) {
            self.watch.ended();
        }
    }
}
