//! Every way a request can fail, translated to the wire once: a gRPC code, an HTTP status and
//! the `google.rpc.Status` JSON body.

use std::sync::Arc;

use http::header::{ALLOW, CONTENT_TYPE, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use prost_reflect::DescriptorPool;
use tonic::Code;

use crate::metadata::{self, MetadataError};
use crate::status::{self, StatusBody};
use crate::transcode::{JsonOptions, TranscodeError};
use crate::upstream::UpstreamError;

/// Why a request got no upstream response.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A composite route's call was not made: a call whose response it reads failed.
    #[error("not called: it reads the response of {needs}, which failed")]
    NotCalled {
        /// The failed call.
        needs: String,
    },
    /// No route matches the path.
    #[error("no route matches {method} {path}")]
    NotFound {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
    },
    /// Routes match the path, under other methods.
    #[error("{method} is not allowed on {path}; allowed: {}", join_methods(allow))]
    MethodNotAllowed {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
        /// Methods that would match.
        allow: Vec<Method>,
    },
    /// The path cannot be routed.
    #[error("invalid path: {reason}")]
    InvalidPath {
        /// Why.
        reason: String,
    },
    /// The body is over the configured limit.
    #[error("the request body is larger than the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client sent no body data for `[limits] body_read_timeout`.
    #[error("the request body sent nothing for {after:?}")]
    BodyTimeout {
        /// The timeout.
        after: std::time::Duration,
    },
    /// The client has `[limits] max_streams_per_client` streaming calls open already.
    #[error("this client has {limit} streaming calls open, the most allowed; close one first")]
    TooManyStreams {
        /// The limit.
        limit: usize,
    },
    /// The request's headers are over `[limits]`: too many, or too many bytes.
    #[error("the request headers are over the limit: {what}")]
    HeadersTooLarge {
        /// Which limit, and the numbers.
        what: String,
    },
    /// The body is not JSON.
    #[error("unsupported content type {content_type:?}: send application/json")]
    UnsupportedMediaType {
        /// The Content-Type sent (empty when none was).
        content_type: String,
    },
    /// The body could not be read.
    #[error("the request body could not be read: {reason}")]
    BodyRead {
        /// Why.
        reason: String,
    },
    /// The request does not transcode to the request message, or the response to JSON.
    #[error(transparent)]
    Transcode(#[from] TranscodeError),
    /// A header does not become metadata.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The upstream call failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A bidirectional streaming method called without a WebSocket handshake.
    #[error("{method} is a bidirectional streaming method: call it over WebSocket (GET with Upgrade: websocket)")]
    WebSocketRequired {
        /// The full method name.
        method: String,
    },
    /// A policy refuses the request: no valid token (401), not enough of one (403), over a
    /// rate limit (429). The policy module describes it ([`Refused`]).
    #[error(transparent)]
    Refused(Box<Refused>),
    /// A gRPC request for a method that no descriptor declares.
    #[error("no method {path} is known to the gateway")]
    UnknownMethod {
        /// The request path, `/pkg.Service/Method`.
        path: String,
    },
    /// A Connect streaming call, which is not served.
    #[error("{method} is a streaming method: Connect streaming is not served; use NDJSON, SSE, WebSocket or gRPC-Web")]
    ConnectStreaming {
        /// The full method name.
        method: String,
    },
    /// A `Connect-Timeout-Ms` that is not a number of milliseconds.
    #[error("header connect-timeout-ms: {value:?} is not a number of milliseconds (at most 10 digits)")]
    ConnectTimeout {
        /// The value sent.
        value: String,
    },
    /// A WebSocket handshake that cannot be accepted.
    #[error("WebSocket handshake: {reason}")]
    WebSocketHandshake {
        /// Why.
        reason: String,
    },
    /// A WebSocket handshake from a browser origin that may not call.
    #[error("origin {origin:?} may not open a WebSocket here")]
    OriginRefused {
        /// The `Origin` sent.
        origin: String,
    },
    /// A WebSocket frame that is not a message.
    #[error("WebSocket: {reason}")]
    WebSocketFrame {
        /// Why.
        reason: String,
    },
    /// One line (message) of a client stream does not transcode.
    #[error("line {line}: {error}")]
    InvalidLine {
        /// The line number, from 1.
        line: usize,
        /// Why.
        error: TranscodeError,
    },
    /// The listener is at `max_concurrent_requests`.
    #[error("the gateway is at its limit of requests in progress; retry shortly")]
    Overloaded,
    /// One line (message) of a client stream is over the body limit.
    #[error("line {line} is longer than the {limit}-byte limit")]
    LineTooLong {
        /// The line number, from 1.
        line: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

impl GatewayError {
    /// The error as the log and the access log line tell it: the client's message, and what
    /// only the operator may see (an unreachable endpoint's address and why).
    pub fn log_message(&self) -> String {
        match self {
            GatewayError::Upstream(error) => error.log_message(),
            other => other.to_string(),
        }
    }

    /// The gRPC code and HTTP status this error answers with.
    pub fn code(&self) -> (Code, StatusCode) {
        let code = match self {
            GatewayError::NotFound { .. } => Code::NotFound,
            GatewayError::UnknownMethod { .. } | GatewayError::ConnectStreaming { .. } => Code::Unimplemented,
            GatewayError::ConnectTimeout { .. } => Code::InvalidArgument,
            GatewayError::OriginRefused { .. } => Code::PermissionDenied,
            GatewayError::NotCalled { .. } => Code::FailedPrecondition,
            GatewayError::Refused(refused) => refused.kind.code(),
            GatewayError::MethodNotAllowed { .. } => {
                return (Code::Unimplemented, StatusCode::METHOD_NOT_ALLOWED);
            }
            GatewayError::InvalidPath { .. } | GatewayError::Metadata(_) | GatewayError::BodyRead { .. } => {
                Code::InvalidArgument
            }
            GatewayError::BodyTooLarge { .. } | GatewayError::LineTooLong { .. } => {
                return (Code::ResourceExhausted, StatusCode::PAYLOAD_TOO_LARGE);
            }
            GatewayError::BodyTimeout { .. } => return (Code::DeadlineExceeded, StatusCode::REQUEST_TIMEOUT),
            GatewayError::TooManyStreams { .. } => {
                return (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS);
            }
            GatewayError::HeadersTooLarge { .. } => {
                return (Code::ResourceExhausted, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            GatewayError::UnsupportedMediaType { .. } => {
                return (Code::InvalidArgument, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            GatewayError::Transcode(TranscodeError::Render { .. }) => Code::Internal,
            GatewayError::Transcode(_)
            | GatewayError::InvalidLine { .. }
            | GatewayError::WebSocketHandshake { .. }
            | GatewayError::WebSocketFrame { .. } => Code::InvalidArgument,
            GatewayError::Upstream(UpstreamError::NotConfigured { .. } | UpstreamError::Unreachable { .. }) => {
                // The upstream never answered: a bad gateway, not a service that said UNAVAILABLE.
                return (Code::Unavailable, StatusCode::BAD_GATEWAY);
            }
            GatewayError::Upstream(UpstreamError::DeadlineExceeded { .. }) => Code::DeadlineExceeded,
            // Not tried at all: the gateway knows the upstream cannot take the call now.
            GatewayError::Upstream(UpstreamError::NoHealthyEndpoint { .. } | UpstreamError::Overloaded { .. }) => {
                Code::Unavailable
            }
            GatewayError::Overloaded => Code::Unavailable,
            GatewayError::Upstream(UpstreamError::Status(reply)) => reply.status.code(),
            GatewayError::WebSocketRequired { .. } => {
                return (Code::FailedPrecondition, StatusCode::UPGRADE_REQUIRED);
            }
        };
        (code, status::http_status(code))
    }

    /// The HTTP response: status, `google.rpc.Status` JSON body and the headers that go with
    /// it (`Allow` on 405; the upstream's metadata when it answered with an error). With a
    /// `request_id`, the details end with a `google.rpc.RequestInfo` carrying it.
    pub fn into_response(
        self,
        pool: &DescriptorPool,
        options: &JsonOptions,
        request_id: Option<&str>,
    ) -> Response<Vec<u8>> {
        let (code, http_status) = self.code();
        let mut headers = HeaderMap::new();
        let (message, mut details) = match &self {
            GatewayError::Upstream(UpstreamError::Status(reply)) => {
                let status = &reply.status;
                metadata::from_grpc(&reply.headers, status.metadata().as_ref(), &[], &mut headers);
                (status.message().to_owned(), status::render_details(status.details(), pool, options))
            }
            GatewayError::Transcode(e) | GatewayError::InvalidLine { error: e, .. }
                if e.field().is_some() && code == Code::InvalidArgument =>
            {
                let message = self.to_string();
                let field = e.field().unwrap_or_default();
                let encoded = status::bad_request(code, &message, field, &e.to_string());
                (message, status::render_details(&encoded, pool, options))
            }
            other => (other.to_string(), Vec::new()),
        };
        if let GatewayError::MethodNotAllowed { allow, .. } = &self
            && let Ok(value) = HeaderValue::from_str(&join_methods(allow))
        {
            headers.insert(ALLOW, value);
        }
        if let GatewayError::WebSocketRequired { .. } = &self {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        }
        if let GatewayError::Refused(refused) = &self {
            headers.extend(refused.headers.clone());
        }
        if let Some(id) = request_id {
            details.push(status::request_info(id, pool, options));
        }
        let body = StatusBody { code: code as i32, message: &message, details }.to_json();
        let mut response = json_response(http_status, body);
        response.headers_mut().extend(headers);
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

/// Why a request was refused before any upstream saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// No bearer token: 401.
    MissingToken,
    /// A token that does not verify: 401.
    InvalidToken,
    /// A valid token without the scopes or claims needed: 403.
    Forbidden,
    /// Over a rate limit: 429.
    RateLimited,
    /// The rate-limit backend could not decide, and the policy fails closed: 503.
    RateLimitUnavailable,
}

impl RefusalKind {
    /// The gRPC code of the refusal (its HTTP status follows from it).
    pub fn code(self) -> Code {
        match self {
            RefusalKind::MissingToken | RefusalKind::InvalidToken => Code::Unauthenticated,
            RefusalKind::Forbidden => Code::PermissionDenied,
            RefusalKind::RateLimited => Code::ResourceExhausted,
            RefusalKind::RateLimitUnavailable => Code::Unavailable,
        }
    }
}

/// A refusal as the module that refused describes it: what kind, the message, and the headers
/// that tell the client what to do (`WWW-Authenticate`, `Retry-After`, `RateLimit-*`). The
/// error module needs to know no feature: each converts its own errors into this.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// What the client is told.
    pub message: String,
    /// Headers the response carries.
    pub headers: HeaderMap,
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn join_methods(methods: &[Method]) -> String {
    methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}
