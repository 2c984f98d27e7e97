//! Step 4 of the pipeline: the call to the upstream gRPC service.
//!
//! Each `[[upstreams]]` entry gets one tonic [`Channel`] (HTTP/2, connected on first use,
//! shared by every request; several endpoints are balanced). A service is served by the most
//! specific selector that covers it: `pkg.Service`, then the longest `pkg.*`, then `*`.
//!
//! Failures keep who failed visible: an upstream that cannot be reached (refused, reset, DNS)
//! is [`UpstreamError::Unreachable`], a deadline that passes is
//! [`UpstreamError::DeadlineExceeded`], and a status the upstream *sent* is
//! [`UpstreamError::Status`].

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::uri::PathAndQuery;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};

use crate::codec::BytesCodec;
use crate::config::{ServiceSelector, UpstreamConfig};

/// How long to wait for a TCP connection when an upstream sets no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// All upstreams and the rules that pick one per service.
#[derive(Debug)]
pub struct Upstreams {
    upstreams: Vec<Upstream>,
    /// Selectors, most specific first.
    selectors: Vec<(ServiceSelector, UpstreamId)>,
}

/// One upstream: a name, its endpoints and the channel to them.
#[derive(Debug)]
pub struct Upstream {
    /// The configured name.
    pub name: String,
    /// The endpoint URLs, for logs and `routes`.
    pub endpoints: Vec<String>,
    /// The configured call deadline.
    pub timeout: Option<Duration>,
    channel: Channel,
    max_response_bytes: usize,
}

/// Index of an upstream in [`Upstreams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamId(usize);

/// A unary call's answer.
#[derive(Debug)]
pub struct UnaryResponse {
    /// Response headers (initial metadata).
    pub headers: HeaderMap,
    /// The response message, encoded.
    pub message: Bytes,
    /// Trailers, less the gRPC status itself.
    pub trailers: HeaderMap,
}

/// Why a call produced no response message.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No upstream is configured for the service.
    #[error("no upstream is configured for {service}")]
    NotConfigured {
        /// The full service name.
        service: String,
    },
    /// The upstream could not be reached, or the connection failed before it answered.
    #[error("upstream {upstream} is unreachable: {reason}")]
    Unreachable {
        /// The upstream's name.
        upstream: String,
        /// The transport error.
        reason: String,
    },
    /// The deadline passed before the upstream answered.
    #[error("upstream {upstream} did not answer within the {deadline:?} deadline")]
    DeadlineExceeded {
        /// The upstream's name.
        upstream: String,
        /// The deadline that passed.
        deadline: Duration,
    },
    /// The upstream answered with a non-OK status.
    #[error("upstream {} answered {}: {}", .0.upstream, .0.status.code(), .0.status.message())]
    Status(Box<StatusReply>),
}

/// A non-OK status an upstream answered with.
#[derive(Debug)]
pub struct StatusReply {
    /// The upstream's name.
    pub upstream: String,
    /// The status, with its trailers as metadata.
    pub status: Status,
    /// Response headers sent before the status, if any.
    pub headers: HeaderMap,
}

// === impl Upstreams ===

impl Upstreams {
    /// Creates a lazily connected channel per upstream. Must run inside a tokio runtime.
    pub fn build(configs: &[UpstreamConfig], max_response_bytes: usize) -> Upstreams {
        Upstreams::build_with(configs, max_response_bytes, connect_lazy)
    }

    /// As [`Upstreams::build`], with each upstream's channel made by `channel` — for embedders
    /// that bring their own transport (in-memory, or a custom connector).
    pub fn build_with(
        configs: &[UpstreamConfig],
        max_response_bytes: usize,
        channel: impl Fn(&UpstreamConfig) -> Channel,
    ) -> Upstreams {
        let upstreams: Vec<Upstream> = configs
            .iter()
            .map(|c| Upstream {
                name: c.name.clone(),
                endpoints: c.endpoints.iter().map(ToString::to_string).collect(),
                timeout: c.timeout,
                channel: channel(c),
                max_response_bytes,
            })
            .collect();
        let mut selectors: Vec<(ServiceSelector, UpstreamId)> = configs
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.services.iter().map(move |s| (s.clone(), UpstreamId(i))))
            .collect();
        selectors.sort_by_key(|(selector, _)| std::cmp::Reverse(selector.specificity()));
        Upstreams { upstreams, selectors }
    }

    /// The upstream serving `service`, if any.
    pub fn select(&self, service: &str) -> Option<UpstreamId> {
        self.selectors.iter().find(|(selector, _)| selector.matches(service)).map(|(_, id)| *id)
    }

    /// The upstream with this id.
    pub fn get(&self, id: UpstreamId) -> &Upstream {
        &self.upstreams[id.0]
    }

    /// Every upstream, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Upstream> {
        self.upstreams.iter()
    }
}

// === impl Upstream ===

impl Upstream {
    /// Calls a unary method with an encoded request. `deadline` bounds the whole call and is sent
    /// as `grpc-timeout`.
    pub async fn unary(
        &self,
        path: PathAndQuery,
        request: Bytes,
        metadata: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<UnaryResponse, UpstreamError> {
        let call = self.unary_call(path, request, metadata, deadline);
        match deadline {
            None => call.await,
            Some(deadline) => tokio::time::timeout(deadline, call)
                .await
                .unwrap_or_else(|_| Err(UpstreamError::DeadlineExceeded { upstream: self.name.clone(), deadline })),
        }
    }

    async fn unary_call(
        &self,
        path: PathAndQuery,
        message: Bytes,
        metadata: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<UnaryResponse, UpstreamError> {
        let mut grpc =
            tonic::client::Grpc::new(self.channel.clone()).max_decoding_message_size(self.max_response_bytes);
        grpc.ready().await.map_err(|e| self.unreachable(&e))?;
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = MetadataMap::from_headers(metadata);
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        // A unary call is a stream of one message on the wire. Calling it as a server stream
        // keeps response headers and trailers apart (tonic's unary call merges them), which the
        // Grpc-Metadata-* / Grpc-Trailer-* split needs.
        let no_headers = HeaderMap::new;
        let response = grpc
            .server_streaming(request, path, BytesCodec)
            .await
            .map_err(|status| self.failed(deadline, status, no_headers()))?;
        let (headers, mut stream, _) = response.into_parts();
        let headers = headers.into_headers();
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => {
                return Err(self.failed(deadline, Status::internal("the upstream sent no response message"), headers));
            }
            Err(status) => return Err(self.failed(deadline, status, headers)),
        };
        match stream.message().await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(self.failed(
                    deadline,
                    Status::internal("the upstream sent more than one response message"),
                    headers,
                ));
            }
            Err(status) => return Err(self.failed(deadline, status, headers)),
        }
        let trailers = match stream.trailers().await {
            Ok(trailers) => trailers.map(MetadataMap::into_headers).unwrap_or_default(),
            Err(status) => return Err(self.failed(deadline, status, headers)),
        };
        Ok(UnaryResponse { headers, message, trailers })
    }

    /// Classifies a failed call: a status tonic synthesised from a transport error carries that
    /// error as its source; one the upstream sent in its trailers has none.
    fn failed(&self, deadline: Option<Duration>, status: Status, headers: HeaderMap) -> UpstreamError {
        match std::error::Error::source(&status) {
            // tonic enforces the `grpc-timeout` it sends until response headers arrive.
            Some(source) if is_timeout(source) => {
                UpstreamError::DeadlineExceeded { upstream: self.name.clone(), deadline: deadline.unwrap_or_default() }
            }
            Some(source) => self.unreachable(source),
            None => UpstreamError::Status(Box::new(StatusReply { upstream: self.name.clone(), status, headers })),
        }
    }

    fn unreachable(&self, error: &dyn std::error::Error) -> UpstreamError {
        UpstreamError::Unreachable { upstream: self.name.clone(), reason: error_chain(error) }
    }
}

fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// One lazily connected HTTP/2 channel to an upstream's endpoints, balanced when there are
/// several.
fn connect_lazy(config: &UpstreamConfig) -> Channel {
    let endpoints: Vec<Endpoint> = config
        .endpoints
        .iter()
        .map(|e| {
            Endpoint::from(e.uri().clone())
                .connect_timeout(config.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
                .tcp_nodelay(true)
                // Find dead connections before requests do.
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
        })
        .collect();
    match endpoints.as_slice() {
        [one] => one.connect_lazy(),
        _ => Channel::balance_list(endpoints.into_iter()),
    }
}

/// An error and its sources, joined: transport errors say little at the top of the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
