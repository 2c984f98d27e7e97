//! `[limits] body_read_timeout`: a request body that sends nothing for that long, while the
//! gateway waits to read it, fails with [`BodyIdle`] — the pipeline answers 408, a stream is
//! cancelled — so a client that opens a body and goes quiet holds no call, seat or buffer
//! for longer than that.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// A request body that went quiet for longer than `body_read_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client sent no body data for {0:?}")]
pub struct BodyIdle(pub Duration);

/// `inner`, failing once it has been waited on for `timeout` without a frame.
pub struct IdleBody {
    inner: Body,
    timeout: Duration,
    /// Armed while the reader waits; reset by every frame.
    timer: Option<Pin<Box<Sleep>>>,
}

impl IdleBody {
    /// Wraps a request body.
    pub fn new(inner: Body, timeout: Duration) -> IdleBody {
        IdleBody { inner, timeout, timer: None }
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.timer = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let timer =
                    self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyIdle(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body read failed because the client went quiet: [`BodyIdle`] somewhere in the
/// error's chain.
pub fn is_idle(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(idle) = error.downcast_ref::<BodyIdle>() {
            return Some(idle.0);
        }
        current = error.source();
    }
    None
}
