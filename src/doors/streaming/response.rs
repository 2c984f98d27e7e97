//! Server streams to HTTP: one NDJSON line (`{"result": <msg>}`) or Server-Sent Event
//! (`data: <msg>`) per upstream message, written and flushed as each arrives. A failure after
//! the first message ends the body with `{"error": <status>}` or `event: error`.
//!
//! The body pulls the next message from the upstream only when the client has taken the
//! previous one, and dropping the body (the client went away) resets the upstream stream.

use std::convert::Infallible;
use std::sync::Arc;

use ::http_body::Frame;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use bytes::Bytes;
use futures_util::StreamExt;
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
        let frames = self.events().filter_map(move |event| {
            let frame = match event {
                Event::Message(json) => Some(Frame::data(line(b"{\"result\":", &json))),
                Event::Error(status) => Some(Frame::data(line(b"{\"error\":", &status))),
                Event::Trailers(trailers) => trailers_allowed.then(|| Frame::trailers(trailers)),
            };
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

    async fn next_event(&mut self) -> Option<Event> {
        if self.ended {
            return self.trailers.take().map(Event::Trailers);
        }
        let next = match self.first.take() {
            Some(first) => Ok(Some(first)),
            None => self.responses.next().await,
        };
        let error = match next {
            Ok(Some(wire)) => {
                let route = self.gateway.route_at(self.index);
                let rendered = match self.raw {
                    Some(target) => http_body::decode(target, &wire).map(|body| body.data),
                    None => {
                        self.gateway.transcoder().render(self.index, route, &wire).and_then(|json| match &self.mask {
                            Some(mask) => mask.apply(&json),
                            None => Ok(json),
                        })
                    }
                };
                match rendered {
                    Ok(bytes) => return Some(Event::Message(bytes)),
                    Err(e) => GatewayError::from(e),
                }
            }
            Ok(None) => {
                self.ended = true;
                self.exchange.stream_ended(Code::Ok, None);
                let upstream = self.responses.trailers().cloned().unwrap_or_default();
                return Some(Event::Trailers(http_trailers(Code::Ok, "", &upstream)));
            }
            Err(e) => GatewayError::from(e),
        };
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
        Some(Event::Error(status_json))
    }
}

/// `prefix` + `json` + `}\n`.
fn line(prefix: &[u8], json: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(prefix.len() + json.len() + 2);
    line.extend_from_slice(prefix);
    line.extend_from_slice(json);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
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

    #[test]
    fn lines_wrap_the_json() {
        assert_eq!(&line(b"{\"result\":", b"{\"a\":1}")[..], b"{\"result\":{\"a\":1}}\n");
    }
}
