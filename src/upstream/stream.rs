//! Streaming calls: request messages go up as the caller produces them and response messages
//! come back as the upstream sends them. HTTP/2 flow control is the backpressure both ways: a
//! message is sent only when the upstream has granted the window for it, and the response
//! window is given back only as messages are taken, so a slow side slows the other down
//! instead of making the gateway buffer.
//!
//! Dropping a call's halves before the stream has ended resets it with `CANCEL`: the upstream
//! sees the cancellation at once.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, Response, StatusCode};
use tokio::time::Instant;
use tonic::Status;

use super::{StatusReply, UnaryResponse, UpstreamError, grpc};

/// What every part of one call needs to report errors and keep its deadline.
#[derive(Debug, Clone)]
pub(super) struct CallContext {
    pub(super) upstream: String,
    pub(super) endpoint: std::sync::Arc<str>,
    pub(super) deadline: Option<Duration>,
    pub(super) expires: Option<Instant>,
    pub(super) max_message_bytes: usize,
    /// Held while either side of the call lives: it counts against the endpoint's calls in
    /// progress and the upstream's cap.
    pub(super) _held: std::sync::Arc<super::CallHold>,
}

/// The request side of a streaming call.
#[derive(Debug)]
pub struct RequestSink {
    stream: SendStream<Bytes>,
    context: CallContext,
}

/// A call whose response headers have not arrived yet.
#[derive(Debug)]
pub struct PendingResponse {
    response: ResponseFuture,
    context: CallContext,
}

/// The response side of a streaming call, after its headers.
#[derive(Debug)]
pub struct ResponseStream {
    headers: HeaderMap,
    body: RecvStream,
    reader: grpc::MessageReader,
    trailers: Option<HeaderMap>,
    context: CallContext,
}

impl CallContext {
    /// Runs `future` within the call's deadline.
    async fn within<T>(&self, future: impl Future<Output = Result<T, UpstreamError>>) -> Result<T, UpstreamError> {
        let (Some(expires), Some(deadline)) = (self.expires, self.deadline) else { return future.await };
        match tokio::time::timeout_at(expires, future).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::DeadlineExceeded { upstream: self.upstream.clone(), deadline }),
        }
    }

    fn status(&self, status: Status, headers: HeaderMap) -> UpstreamError {
        let endpoint = Some(self.endpoint.clone());
        UpstreamError::Status(Box::new(StatusReply { upstream: self.upstream.clone(), endpoint, status, headers }))
    }

    /// An error on a stream the upstream had accepted: a reset carries a status of its own;
    /// anything else is the connection failing under it.
    fn stream_error(&self, error: &h2::Error, headers: &HeaderMap) -> UpstreamError {
        match error.reason() {
            Some(reason) if error.is_remote() && !error.is_go_away() => {
                self.status(grpc::status_for_reset(reason), headers.clone())
            }
            _ => UpstreamError::Unreachable { upstream: self.upstream.clone(), reason: super::error_chain(error) },
        }
    }
}

impl RequestSink {
    pub(super) fn new(stream: SendStream<Bytes>, context: CallContext) -> RequestSink {
        RequestSink { stream, context }
    }

    /// Sends one message, waiting until the upstream's flow-control window has room for it.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), UpstreamError> {
        self.send_frames(grpc::frame(message)).await
    }

    /// Sends bytes that are already gRPC frames (a gRPC client's, passed through), waiting
    /// for window as [`RequestSink::send`] does.
    pub async fn send_frames(&mut self, mut frames: Bytes) -> Result<(), UpstreamError> {
        while !frames.is_empty() {
            self.stream.reserve_capacity(frames.len());
            let granted = match self.stream.capacity() {
                0 => self.wait_for_capacity().await?,
                granted => granted,
            };
            if granted > 0 {
                let chunk = frames.split_to(granted.min(frames.len()));
                self.stream.send_data(chunk, false).map_err(|e| self.context.stream_error(&e, &HeaderMap::new()))?;
            }
        }
        Ok(())
    }

    /// Ends the request stream: the upstream has every message.
    pub fn finish(&mut self) -> Result<(), UpstreamError> {
        self.stream.send_data(Bytes::new(), true).map_err(|e| self.context.stream_error(&e, &HeaderMap::new()))
    }

    /// Cancels the call.
    pub fn cancel(&mut self) {
        self.stream.send_reset(h2::Reason::CANCEL);
    }

    async fn wait_for_capacity(&mut self) -> Result<usize, UpstreamError> {
        let context = self.context.clone();
        let stream = &mut self.stream;
        context
            .within(async {
                match poll_fn(|cx| stream.poll_capacity(cx)).await {
                    Some(Ok(granted)) => Ok(granted),
                    Some(Err(e)) => Err(context.stream_error(&e, &HeaderMap::new())),
                    None => {
                        Err(context
                            .status(Status::unavailable("the upstream closed the request stream"), HeaderMap::new()))
                    }
                }
            })
            .await
    }
}

impl PendingResponse {
    pub(super) fn new(response: ResponseFuture, context: CallContext) -> PendingResponse {
        PendingResponse { response, context }
    }

    /// Waits for the response headers. A trailers-only response (the call failed before its
    /// first message) is its status as an error.
    pub async fn headers(self) -> Result<ResponseStream, UpstreamError> {
        let (response, context) = self.arrived().await?;
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(context.status(grpc::status_for_http(parts.status), parts.headers));
        }
        let reader = grpc::MessageReader::new(context.max_message_bytes);
        match grpc::status_in(&parts.headers) {
            None => Ok(ResponseStream { headers: parts.headers, body, reader, trailers: None, context }),
            // Trailers-only and OK: a stream without messages.
            Some(Ok(())) => {
                Ok(ResponseStream { headers: HeaderMap::new(), body, reader, trailers: Some(parts.headers), context })
            }
            Some(Err(status)) => Err(context.status(status, HeaderMap::new())),
        }
    }
}

/// An upstream response body passed through untouched: DATA frames, then trailers. Window is
/// given back as the client takes each frame.
#[derive(Debug)]
pub struct RawBody {
    body: RecvStream,
    state: RawState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawState {
    Data,
    Trailers,
    Done,
}

impl PendingResponse {
    /// The endpoint the call went to.
    pub fn endpoint(&self) -> &std::sync::Arc<str> {
        &self.context.endpoint
    }

    /// The response as it comes, for a proxy that passes gRPC through.
    pub async fn raw(self) -> Result<Response<RawBody>, UpstreamError> {
        let (response, _) = self.arrived().await?;
        Ok(response.map(|body| RawBody { body, state: RawState::Data }))
    }

    /// The response once its headers have arrived, within the deadline.
    async fn arrived(self) -> Result<(Response<RecvStream>, CallContext), UpstreamError> {
        let context = self.context;
        let response = context
            .within(async {
                self.response.await.map_err(|e| UpstreamError::Unreachable {
                    upstream: context.upstream.clone(),
                    reason: super::error_chain(&e),
                })
            })
            .await?;
        Ok((response, context))
    }
}

impl http_body::Body for RawBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        if self.state == RawState::Data {
            match ready!(self.body.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                }
                Some(Err(e)) => {
                    self.state = RawState::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                None => self.state = RawState::Trailers,
            }
        }
        if self.state == RawState::Trailers {
            let trailers = ready!(self.body.poll_trailers(cx));
            self.state = RawState::Done;
            return Poll::Ready(trailers.transpose().map(|t| t.map(http_body::Frame::trailers)));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.state == RawState::Done
    }
}

impl ResponseStream {
    /// The response headers (initial metadata).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The endpoint that answered.
    pub fn endpoint(&self) -> &std::sync::Arc<str> {
        &self.context.endpoint
    }

    /// The trailers, once [`ResponseStream::next`] has returned `Ok(None)`.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// The next response message; `Ok(None)` when the stream has ended with status OK, an
    /// error when it ended with another status or failed.
    pub async fn next(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        let context = self.context.clone();
        context.within(self.next_message()).await
    }

    /// The one message of a call whose response is not a stream (a client stream's).
    pub async fn single(mut self) -> Result<UnaryResponse, UpstreamError> {
        let Some(message) = self.next().await? else {
            let status = Status::internal("the upstream sent no response message");
            return Err(self.context.status(status, self.headers.clone()));
        };
        if self.next().await?.is_some() {
            let status = Status::internal("the upstream sent more than one response message");
            return Err(self.context.status(status, self.headers.clone()));
        }
        let trailers = self.trailers.unwrap_or_default();
        Ok(UnaryResponse { headers: self.headers, message, trailers, endpoint: self.context.endpoint })
    }

    async fn next_message(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        loop {
            if let Some(message) = self.reader.take().map_err(|s| self.context.status(s, self.headers.clone()))? {
                return Ok(Some(message));
            }
            if self.trailers.is_some() {
                return Ok(None);
            }
            match self.body.data().await {
                Some(Ok(data)) => {
                    self.reader.push(&data);
                    // Taken: the upstream may send as much again. Window is only given back
                    // for what has been read, which is how a slow client slows the upstream.
                    let _ = self.body.flow_control().release_capacity(data.len());
                }
                Some(Err(e)) => return Err(self.context.stream_error(&e, &self.headers)),
                None => return self.end().await.map(|()| None),
            }
        }
    }

    /// The body has ended: the status in the trailers decides.
    async fn end(&mut self) -> Result<(), UpstreamError> {
        let trailers = match self.body.trailers().await {
            Ok(trailers) => trailers.unwrap_or_default(),
            Err(e) => return Err(self.context.stream_error(&e, &self.headers)),
        };
        self.reader.finish().map_err(|s| self.context.status(s, self.headers.clone()))?;
        match grpc::status_in(&trailers) {
            Some(Ok(())) => {
                self.trailers = Some(trailers);
                Ok(())
            }
            // The status carries the other trailers as its metadata.
            Some(Err(status)) => Err(self.context.status(status, self.headers.clone())),
            None => Err(self
                .context
                .status(Status::internal("the upstream's response has no grpc-status"), self.headers.clone())),
        }
    }
}
