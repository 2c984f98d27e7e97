//! Observing: each request is watched from its arrival to the end of its response
//! body — one tracing span around its handling, its body bytes counted both ways — and written
//! out (access log line, metrics, exported span) by [`Observer`] when it ends.
//!
//! It comes after the request id, so the id it records is the one the client gets back, and
//! before everything else, so shed requests, preflights and compressed bytes are all counted
//! as the client saw them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};

use crate::metadata::Peer;
use crate::observability::{Observer, Watch};

/// Starts watching `request` from `peer`: its trace context, span and record begin, and its
/// body (if any) is counted as the handler reads it.
pub fn begin(observer: &Arc<Observer>, mut request: Request<Body>, peer: Peer) -> (Watch, Request<Body>) {
    let (watch, bytes_in) = observer.begin(&mut request, peer);
    // A bodiless request (most GETs) has nothing to count.
    let request = if http_body::Body::is_end_stream(request.body()) {
        request
    } else {
        request.map(|body| Body::new(CountedBody { inner: body, count: bytes_in }))
    };
    (watch, request)
}

/// The response as it leaves: the rate-limit headers of its route added, and its body watched
/// to its end, when `watch` writes the request out.
pub fn end(mut watch: Watch, response: Response<Body>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    // Every response of a rate-limited route says where the client stands; a refusal says it
    // already, for the limit that refused.
    if let Some(limits) = watch.exchange().take_rate_limits() {
        for (name, value) in &limits {
            if !parts.headers.contains_key(name) {
                parts.headers.insert(name.clone(), value.clone());
            }
        }
    }
    watch.responded(&parts);
    Response::from_parts(parts, Body::new(WatchedBody { inner: body, watch }))
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
