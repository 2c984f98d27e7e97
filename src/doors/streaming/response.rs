//! Server streams to HTTP: one NDJSON line (`{"result": <msg>}`) or Server-Sent Event
//! (`data: <msg>`) per upstream message, written as each arrives (NDJSON writes the lines of
//! messages that arrived together in one go). A failure after the first message ends the body
//! with `{"error": <status>}` or `event: error`.
//!
//! The body pulls messages from the upstream only when the client has taken what it was
//! given, and dropping the body (the client went away) resets the upstream stream.

use std::convert::Infallible;
use std::sync::Arc;

use ::http_body::Frame;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, TRAILER};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::StreamBody;
use tonic::Code;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata;
use crate::observability::Exchange;
use crate::observability::exchange::CallSpan;
use crate::transcode::fields::FieldMask;
use crate::transcode::http_body::{self, RawTarget};
use crate::upstream::{PendingResponse, ResponseStream, UpstreamError};

/// `Content-Type` of an NDJSON stream.
pub const NDJSON: &str = "application/x-ndjson";
const EVENT_STREAM: &str = "text/event-stream";

/// At most this much of an NDJSON stream leaves in one body frame: past it, the messages
/// still ready wait for the next. Large enough that a frame's own cost (a chunk header, a
/// write) is small beside its lines, small enough that a stream holds little at a time.
const BATCH_BYTES: usize = 64 * 1024;

/// How a server stream is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// `application/x-ndjson`: the default.
    Ndjson,
    /// `text/event-stream`, when the client accepts it (a browser's `EventSource` does).
    EventStream,
}

impl StreamFormat {
    /// Server-Sent Events if `Accept` names `text/event-stream`, NDJSON otherwise.
    pub fn negotiate(headers: &HeaderMap) -> StreamFormat {
        let event_stream = headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(EVENT_STREAM));
        if event_stream { StreamFormat::EventStream } else { StreamFormat::Ndjson }
    }
}

/// What the client is told next.
enum Event {
    /// A response message, rendered (or, for HttpBody, its bytes).
    Message(Vec<u8>),
    /// The stream failed: its status, rendered.
    Error(Vec<u8>),
    /// The stream is over: its HTTP trailers (status and the upstream's trailers).
    Trailers(HeaderMap),
}

/// An upstream's response stream, rendered message by message.
pub struct MessageStream {
    gateway: Arc<Gateway>,
    index: usize,
    /// Set when the messages are `google.api.HttpBody`: their bytes are the body.
    raw: Option<RawTarget>,
    responses: ResponseStream,
    first: Option<Bytes>,
    trailers: Option<HeaderMap>,
    ended: bool,
    /// Where the stream's end is noted, and the id its error line carries.
    exchange: Exchange,
    request_id: Option<HeaderValue>,
    /// What `?fields=` keeps of each message.
    mask: Option<FieldMask>,
    _in_flight: crate::observability::InFlight,
}

impl MessageStream {
    /// Waits for the response headers and the first message. A stream that fails before its
    /// first message fails like a unary call, with its own HTTP status; one whose first message
    /// takes longer than a keep-alive interval commits to 200 and carries on.
    pub async fn start(
        gateway: Arc<Gateway>,
        index: usize,
        pending: PendingResponse,
        parts: &Parts,
        span: CallSpan,
        mask: Option<FieldMask>,
    ) -> Result<MessageStream, GatewayError> {
        let exchange = Exchange::of(&parts.extensions);
        let responses = pending.headers().await;
        let endpoint = responses.as_ref().map_or_else(UpstreamError::endpoint, |r| Some(r.endpoint()));
        exchange.upstream_answered(span.elapsed(), endpoint);
        exchange.call_answered(span, endpoint);
        let mut responses = responses?;
        // `next` is cancel-safe: a timeout loses nothing.
        let first = match tokio::time::timeout(gateway.keep_alive(), responses.next()).await {
            Ok(first) => first?,
            Err(_) => None,
        };
        let raw = gateway.transcoder().raw_response(index);
        let _in_flight = gateway.streams().start();
        let request_id = gateway.request_id(&parts.headers).cloned();
        Ok(MessageStream {
            gateway,
            index,
            raw,
            responses,
            first,
            trailers: None,
            ended: false,
            exchange,
            request_id,
            mask,
            _in_flight,
        })
    }

    /// The HTTP response, in `format`; HTTP trailers only if the request's `TE` allows them.
    pub fn into_response(self, format: StreamFormat, request: &HeaderMap) -> Response<Body> {
        let upstream_headers = self.responses.headers().clone();
        let gateway = self.gateway.clone();
        let mut response = match (self.raw, format) {
            (Some(target), _) => self.into_raw(target, super::accepts_trailers(request)),
            (None, StreamFormat::Ndjson) => self.into_ndjson(super::accepts_trailers(request)),
            (None, StreamFormat::EventStream) => self.into_event_stream(),
        };
        metadata::from_grpc(&upstream_headers, &HeaderMap::new(), gateway.exposed_headers(), response.headers_mut());
        response
    }

    fn into_ndjson(self, trailers_allowed: bool) -> Response<Body> {
        let frames = self.lines().filter_map(move |frame| {
            let frame = (frame.is_data() || trailers_allowed).then_some(frame);
            std::future::ready(frame.map(Ok::<_, Infallible>))
        });
        let mut response = Response::new(Body::new(StreamBody::new(frames)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if trailers_allowed {
            // HTTP/1.1 sends only the trailers announced up front, and the upstream's own are
            // not known until they arrive: over HTTP/1.1 the status comes as trailers, the
            // upstream's `Grpc-Trailer-*` only over HTTP/2.
            headers.insert(TRAILER, HeaderValue::from_static("grpc-status, grpc-message"));
        }
        response
    }

    /// An HttpBody stream: each message's bytes, as they come, under the first one's content
    /// type. A failure cuts the body short (an HTTP/1.1 body without its last chunk, an
    /// HTTP/2 stream reset): raw bytes have no room for an error.
    fn into_raw(self, target: RawTarget, trailers_allowed: bool) -> Response<Body> {
        let content_type = self
            .first
            .as_ref()
            .and_then(|first| http_body::decode(target, first).ok())
            .map(|body| body.content_type)
            .unwrap_or_default();
        let frames = self.events().filter_map(move |event| {
            let frame = match event {
                Event::Message(data) => Some(Ok(Frame::data(Bytes::from(data)))),
                Event::Error(status) => Some(Err(std::io::Error::other(String::from_utf8_lossy(&status).into_owned()))),
                Event::Trailers(trailers) => trailers_allowed.then(|| Ok(Frame::trailers(trailers))),
            };
            std::future::ready(frame)
        });
        let mut response = crate::pipeline::raw_response(content_type, Bytes::new());
        *response.body_mut() = Body::new(StreamBody::new(frames));
        if trailers_allowed {
            response.headers_mut().insert(TRAILER, HeaderValue::from_static("grpc-status, grpc-message"));
        }
        response
    }

    fn into_event_stream(self) -> Response<Body> {
        let keep_alive = self.gateway.keep_alive();
        let events = self.events().filter_map(|event| {
            let event = match event {
                Event::Message(json) => Some(SseEvent::default().data(text(json))),
                Event::Error(status) => Some(SseEvent::default().event("error").data(text(status))),
                Event::Trailers(_) => None,
            };
            std::future::ready(event.map(Ok::<_, Infallible>))
        });
        Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive)).into_response()
    }

    fn events(self) -> impl futures_util::Stream<Item = Event> + Send + 'static {
        futures_util::stream::unfold(self, |mut stream| async move {
            let event = stream.next_event().await?;
            Some((event, stream))
        })
    }

    /// NDJSON: every message that is ready when the client takes the last frame leaves in
    /// the next one, up to [`BATCH_BYTES`]. A fast upstream's messages then cost one body
    /// frame (one chunk, one write) per batch rather than one each, and a slow one's still
    /// leave as each arrives. The stream's end comes as a trailers frame of its own.
    fn lines(self) -> impl futures_util::Stream<Item = Frame<Bytes>> + Send + 'static {
        futures_util::stream::unfold(self, |mut stream| async move {
            let frame = stream.next_lines().await?;
            Some((frame, stream))
        })
    }

    async fn next_lines(&mut self) -> Option<Frame<Bytes>> {
        if self.ended {
            return self.trailers.take().map(Frame::trailers);
        }
        let mut lines = Vec::new();
        let mut next = self.next_message().await;
        loop {
            match next {
                Ok(Some(wire)) => {
                    let start = lines.len();
                    lines.extend_from_slice(b"{\"result\":");
                    match self.render(&wire, &mut lines) {
                        Ok(()) => lines.extend_from_slice(b"}\n"),
                        Err(error) => {
                            lines.truncate(start);
                            self.write_error_line(error, &mut lines);
                            break;
                        }
                    }
                }
                Ok(None) => {
                    let trailers = self.finish();
                    if lines.is_empty() {
                        return Some(Frame::trailers(trailers));
                    }
                    self.trailers = Some(trailers);
                    break;
                }
                Err(error) => {
                    self.write_error_line(error.into(), &mut lines);
                    break;
                }
            }
            if lines.len() >= BATCH_BYTES {
                break;
            }
            // `next` is cancel-safe: a message that is not there yet is waited for next time.
            match self.responses.next().now_or_never() {
                Some(ready) => next = ready,
                None => break,
            }
        }
        Some(Frame::data(Bytes::from(lines)))
    }

    async fn next_event(&mut self) -> Option<Event> {
        if self.ended {
            return self.trailers.take().map(Event::Trailers);
        }
        let error = match self.next_message().await {
            Ok(Some(wire)) => {
                let mut rendered = Vec::new();
                match self.render(&wire, &mut rendered) {
                    Ok(()) => return Some(Event::Message(rendered)),
                    Err(error) => error,
                }
            }
            Ok(None) => return Some(Event::Trailers(self.finish())),
            Err(error) => error.into(),
        };
        Some(Event::Error(self.fail(error)))
    }

    async fn next_message(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        match self.first.take() {
            Some(first) => Ok(Some(first)),
            None => self.responses.next().await,
        }
    }

    /// Appends message `wire` to `out` as the client gets it: its JSON, with `?fields=`
    /// applied, or for HttpBody its bytes.
    fn render(&self, wire: &[u8], out: &mut Vec<u8>) -> Result<(), GatewayError> {
        let route = self.gateway.route_at(self.index);
        let transcoder = self.gateway.transcoder();
        match (self.raw, &self.mask) {
            (Some(target), _) => out.extend_from_slice(&http_body::decode(target, wire)?.data),
            (None, Some(mask)) => out.extend_from_slice(&mask.apply(&transcoder.render(self.index, route, wire)?)?),
            (None, None) => transcoder.render_into(self.index, route, wire, out)?,
        }
        Ok(())
    }

    /// The stream ended with status OK: its HTTP trailers.
    fn finish(&mut self) -> HeaderMap {
        self.ended = true;
        self.exchange.stream_ended(Code::Ok, None);
        let upstream = self.responses.trailers().cloned().unwrap_or_default();
        http_trailers(Code::Ok, "", &upstream)
    }

    fn write_error_line(&mut self, error: GatewayError, out: &mut Vec<u8>) {
        let status = self.fail(error);
        out.extend_from_slice(b"{\"error\":");
        out.extend_from_slice(&status);
        out.extend_from_slice(b"}\n");
    }

    /// The stream failed: notes it, keeps its trailers for the end, and returns its status
    /// rendered.
    fn fail(&mut self, error: GatewayError) -> Vec<u8> {
        self.ended = true;
        let (code, _) = error.code();
        let message = error.to_string();
        let upstream = match &error {
            GatewayError::Upstream(UpstreamError::Status(reply)) => reply.status.metadata().clone().into_headers(),
            _ => HeaderMap::new(),
        };
        self.exchange.stream_ended(code, Some(error.log_message()));
        let status_json = self.gateway.error_response(error, self.request_id.as_ref()).into_body();
        let message = status_message(&status_json).unwrap_or(message);
        self.trailers = Some(http_trailers(code, &message, &upstream));
        status_json
    }
}

/// A stream's HTTP trailers: its status as `Grpc-Status` and `Grpc-Message`
/// (percent-encoded, as gRPC encodes it), the upstream's trailers as `Grpc-Trailer-*`.
fn http_trailers(code: Code, message: &str, upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert("grpc-status", HeaderValue::from(code as i32));
    if !message.is_empty() {
        let encoded = percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE).to_string();
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            out.insert("grpc-message", value);
        }
    }
    metadata::from_grpc(&HeaderMap::new(), upstream, &[], &mut out);
    out
}

/// What gRPC percent-encodes in `grpc-message`: everything outside printable ASCII, and `%`.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

/// The `message` of a rendered status.
fn status_message(status_json: &[u8]) -> Option<String> {
    let status: serde_json::Value = serde_json::from_slice(status_json).ok()?;
    Some(status.get("message")?.as_str()?.to_owned())
}

/// Rendered JSON is UTF-8; a lossy conversion is only a guard.
fn text(json: Vec<u8>) -> String {
    String::from_utf8(json).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_for_clients_that_ask() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
            StreamFormat::negotiate(&headers)
        };
        assert_eq!(StreamFormat::negotiate(&HeaderMap::new()), StreamFormat::Ndjson);
        assert_eq!(accept("text/event-stream"), StreamFormat::EventStream);
        assert_eq!(accept("application/json, Text/Event-Stream;q=0.9"), StreamFormat::EventStream);
        assert_eq!(accept("application/x-ndjson"), StreamFormat::Ndjson);
        assert_eq!(accept("*/*"), StreamFormat::Ndjson);
    }
}
