//! The Connect protocol's unary calls (connectrpc.com/docs/protocol), so connect-web and
//! connect-go clients work unchanged: `POST /pkg.Service/Method` with
//! `Connect-Protocol-Version: 1`, the message as JSON (`application/json`) or binary
//! (`application/proto`), plain headers as metadata, `Connect-Timeout-Ms` as the deadline,
//! and errors in Connect's JSON shape: `{"code": "not_found", "message", "details"}`.
//!
//! Streaming calls over Connect (its enveloped `application/connect+*` bodies) are not served;
//! they answer `unimplemented`. Browsers stream through NDJSON, SSE, WebSocket or gRPC-Web.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use prost::Message;
use serde::Serialize;
use tonic::Code;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::metadata::{self, Peer};
use crate::pb::google::rpc;
use crate::pipeline::{self, Arrival, CallKind, MediaType};
use crate::upstream::{UnaryResponse, UpstreamError};

const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("connect-protocol-version");
const TIMEOUT: HeaderName = HeaderName::from_static("connect-timeout-ms");

/// How a Connect call's messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

impl Codec {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Codec::Json => "application/json",
            Codec::Proto => "application/proto",
        })
    }
}

/// Whether a request is a Connect call: it says so in `Connect-Protocol-Version`, or sends a
/// binary message, which no REST route takes.
pub fn is_connect(headers: &HeaderMap) -> bool {
    headers.contains_key(PROTOCOL_VERSION) || MediaType::of(headers).is_some_and(|media| media.is("application/proto"))
}

/// Answers a Connect unary call.
pub async fn unary(gateway: Arc<Gateway>, request: Request<Body>, peer: Peer) -> Response<Body> {
    match call(&gateway, request, peer).await {
        Ok(response) => response,
        Err(error) => error_response(error, gateway.exposed_headers()),
    }
}

/// Answers a Connect call that came to a closed door: as if the method were not there.
pub fn closed<B>(request: &Request<B>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    error_response(GatewayError::NotFound { method: request.method().clone(), path }, &[])
}

async fn call(gateway: &Gateway, request: Request<Body>, peer: Peer) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let index = gateway.method_route(path).ok_or_else(|| GatewayError::UnknownMethod { path: path.to_owned() })?;
    let route = gateway.route_at(index);
    let exchange = pipeline::note_route(gateway, &parts, index);
    let access = pipeline::authorize(gateway, index, Arrival::Method, &parts, peer).await?;
    if route.method.is_client_streaming() || route.method.is_server_streaming() {
        return Err(GatewayError::ConnectStreaming { method: route.method.full_name().to_owned() });
    }
    let codec = match MediaType::of(&parts.headers) {
        Some(media) if media.is("application/json") => Codec::Json,
        Some(media) if media.is("application/proto") => Codec::Proto,
        _ => {
            let content_type = pipeline::content_type(&parts.headers).to_owned();
            return Err(GatewayError::UnsupportedMediaType { content_type });
        }
    };
    let body = pipeline::read_limited(&parts.headers, body, gateway.max_body_bytes()).await?;
    let message = match codec {
        // The message is already the wire form the upstream takes.
        Codec::Proto => body,
        Codec::Json => gateway.transcoder().decode(index, route, &[], None, &body)?,
    };
    let metadata = request_metadata(&parts.headers, peer, gateway.header_rules())?;
    let caller = pipeline::Caller { peer, exchange: &exchange };
    let call =
        pipeline::call_target(gateway, index, metadata, timeout(&parts.headers)?, CallKind::Unary, &access, caller)?;
    let idempotent = pipeline::idempotent(None, call.upstream, route.grpc_path.path());
    let reply = call.upstream.unary(route.grpc_path.clone(), message, call.metadata, call.deadline, idempotent);
    let reply = exchange.time_call(call.span, reply).await?;
    let body = match codec {
        Codec::Proto => reply.message.clone(),
        Codec::Json => Bytes::from(gateway.transcoder().render(index, route, &reply.message)?),
    };
    Ok(success(codec, body, &reply, gateway.exposed_headers()))
}

/// The request's headers as metadata: Connect sends metadata as plain headers. Its own
/// headers and the message's encoding are not metadata.
fn request_metadata(headers: &HeaderMap, peer: Peer, rules: &metadata::HeaderRules) -> Result<HeaderMap, GatewayError> {
    let mut metadata = metadata::passthrough(headers, peer, rules)?;
    let connect_owned: Vec<HeaderName> = metadata
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("connect-")
                || name.starts_with("grpc-")
                || matches!(name, "content-type" | "content-encoding" | "accept-encoding" | "accept")
        })
        .cloned()
        .collect();
    for name in connect_owned {
        metadata.remove(name);
    }
    Ok(metadata)
}

/// `Connect-Timeout-Ms`: at most 10 digits of milliseconds.
fn timeout(headers: &HeaderMap) -> Result<Option<Duration>, GatewayError> {
    let Some(value) = headers.get(TIMEOUT) else { return Ok(None) };
    let text = value.to_str().unwrap_or("");
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GatewayError::ConnectTimeout { value: text.to_owned() });
    }
    Ok(text.parse().ok().map(Duration::from_millis))
}

/// The successful answer: the message, the upstream's headers as headers and its trailers as
/// `Trailer-*` headers, as Connect's unary responses carry them, through the reserved-name
/// filter (`exposed`: the browser directives let through).
fn success(codec: Codec, body: Bytes, reply: &UnaryResponse, exposed: &[HeaderName]) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, codec.content_type());
    metadata::to_plain_headers(&reply.headers, "", exposed, headers);
    metadata::to_plain_headers(&reply.trailers, "trailer-", exposed, headers);
    response
}

/// A Connect error: the code's HTTP status and `{"code", "message", "details"}` JSON, each
/// detail as its type name and base64 bytes.
fn error_response(error: GatewayError, exposed: &[HeaderName]) -> Response<Body> {
    #[derive(Serialize)]
    struct Detail {
        #[serde(rename = "type")]
        type_name: String,
        value: String,
    }
    #[derive(Serialize)]
    struct ConnectError<'a> {
        code: &'a str,
        message: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        details: Vec<Detail>,
    }
    let (code, http_status) = error.code();
    let mut headers = HeaderMap::new();
    let (message, details) = match &error {
        GatewayError::Upstream(UpstreamError::Status(reply)) => {
            metadata::to_plain_headers(&reply.headers, "", exposed, &mut headers);
            metadata::to_plain_headers(&reply.status.metadata().clone().into_headers(), "", exposed, &mut headers);
            let details = rpc::Status::decode(reply.status.details()).map(|s| s.details).unwrap_or_default();
            (reply.status.message().to_owned(), details)
        }
        other => (other.to_string(), Vec::new()),
    };
    let details = details
        .into_iter()
        .map(|any| Detail {
            type_name: any.type_url.rsplit('/').next().unwrap_or_default().to_owned(),
            value: base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
        })
        .collect();
    let body = ConnectError { code: code_name(code), message, details };
    let mut response = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    *response.status_mut() = http_status;
    response.headers_mut().extend(headers);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.extensions_mut().insert(std::sync::Arc::new(error));
    response
}

/// Connect's name for a code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_milliseconds_of_at_most_ten_digits() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(TIMEOUT, value.parse().unwrap());
            timeout(&headers)
        };
        assert_eq!(with("250").unwrap(), Some(Duration::from_millis(250)));
        assert!(with("-1").is_err());
        assert!(with("12345678901").is_err());
        assert!(with("1s").is_err());
        assert_eq!(timeout(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn connect_calls_are_recognised_by_their_headers() {
        let mut headers = HeaderMap::new();
        assert!(!is_connect(&headers));
        headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(!is_connect(&headers), "plain JSON is REST");
        headers.insert(PROTOCOL_VERSION, "1".parse().unwrap());
        assert!(is_connect(&headers));
        let mut proto = HeaderMap::new();
        proto.insert(CONTENT_TYPE, "application/proto".parse().unwrap());
        assert!(is_connect(&proto));
    }
}
