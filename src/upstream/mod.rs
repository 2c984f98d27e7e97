//! Step 4 of the pipeline: the call to the upstream gRPC service.
//!
//! Each `[[upstreams]]` entry has one HTTP/2 connection per endpoint ([`connection`]), opened
//! on first use and shared by every request; several endpoints take turns. A service is
//! served by the most specific selector that covers it: `pkg.Service`, then the longest
//! `pkg.*`, then `*`.
//!
//! Failures keep who failed visible: an upstream that cannot be reached (refused, reset, DNS)
//! is [`UpstreamError::Unreachable`], a deadline that passes is
//! [`UpstreamError::DeadlineExceeded`], and a status the upstream *sent* is
//! [`UpstreamError::Status`].

pub mod connection;
pub mod grpc;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use tonic::Status;

use crate::config::{ServiceSelector, UpstreamConfig};
use connection::EndpointConnection;
pub use connection::{Connector, tcp_connector, tls_connector};
use stream::CallContext;
pub use stream::{PendingResponse, RawBody, RequestSink, ResponseStream};

/// How long to wait for a connection when an upstream sets no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// All upstreams and the rules that pick one per service.
pub struct Upstreams {
    upstreams: Vec<Upstream>,
    /// Selectors, most specific first.
    selectors: Vec<(ServiceSelector, UpstreamId)>,
    /// How connections are opened, kept for [`Upstreams::rebuilt`].
    connector: Connector,
}

/// One upstream: a name, its endpoints and the connections to them.
#[derive(Debug)]
pub struct Upstream {
    /// The configured name.
    pub name: String,
    /// The endpoint URLs, for logs and `routes`.
    pub endpoints: Vec<String>,
    /// The configured call deadline.
    pub timeout: Option<Duration>,
    connections: Vec<EndpointConnection>,
    next: AtomicUsize,
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
    /// Trailers, with the gRPC status among them.
    pub trailers: HeaderMap,
    /// The endpoint that answered.
    pub endpoint: Arc<str>,
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
    #[error("upstream {} answered {}: {}", .0.upstream, crate::status::code_name(.0.status.code()), .0.status.message())]
    Status(Box<StatusReply>),
}

/// A non-OK status an upstream answered with.
#[derive(Debug)]
pub struct StatusReply {
    /// The upstream's name.
    pub upstream: String,
    /// The endpoint that answered, when known.
    pub endpoint: Option<Arc<str>>,
    /// The status, with its trailers as metadata.
    pub status: Status,
    /// Response headers sent before the status, if any.
    pub headers: HeaderMap,
}

impl UpstreamError {
    /// Notes which endpoint answered with a status.
    fn answered_by(mut self, endpoint: &Arc<str>) -> UpstreamError {
        if let UpstreamError::Status(reply) = &mut self {
            reply.endpoint = Some(endpoint.clone());
        }
        self
    }

    /// The endpoint that answered with a status, when known.
    pub fn endpoint(&self) -> Option<&Arc<str>> {
        match self {
            UpstreamError::Status(reply) => reply.endpoint.as_ref(),
            _ => None,
        }
    }
}

// === impl Upstreams ===

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams").field("upstreams", &self.upstreams).finish_non_exhaustive()
    }
}

impl Upstreams {
    /// The upstreams of the configuration, reached over TCP.
    pub fn build(configs: &[UpstreamConfig], max_response_bytes: usize) -> Upstreams {
        Upstreams::build_with(configs, max_response_bytes, &tcp_connector())
    }

    /// As [`Upstreams::build`], with connections opened by `connector` — for embedders that
    /// bring their own transport (an in-memory pipe, a proxy).
    pub fn build_with(configs: &[UpstreamConfig], max_response_bytes: usize, connector: &Connector) -> Upstreams {
        let upstreams: Vec<Upstream> =
            configs.iter().map(|c| Upstream::new(c, max_response_bytes, connector)).collect();
        let mut selectors: Vec<(ServiceSelector, UpstreamId)> = configs
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.services.iter().map(move |s| (s.clone(), UpstreamId(i))))
            .collect();
        selectors.sort_by_key(|(selector, _)| std::cmp::Reverse(selector.specificity()));
        Upstreams { upstreams, selectors, connector: connector.clone() }
    }

    /// New upstreams for a changed configuration, opening connections as these do.
    pub fn rebuilt(&self, configs: &[UpstreamConfig], max_response_bytes: usize) -> Upstreams {
        Upstreams::build_with(configs, max_response_bytes, &self.connector)
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
    fn new(config: &UpstreamConfig, max_response_bytes: usize, connector: &Connector) -> Upstream {
        let connect_timeout = config.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let connector = match client_tls(config) {
            Ok(Some(client)) => {
                let server_name = config.tls.as_ref().and_then(|t| t.server_name.clone());
                tls_connector(connector.clone(), client, server_name)
            }
            Ok(None) => connector.clone(),
            // `Gateway::build` refuses such a config; an embedder that skips it gets errors per call.
            Err(reason) => {
                let reason = Arc::new(reason);
                Arc::new(move |_: &crate::config::Endpoint| {
                    let reason = reason.clone();
                    Box::pin(async move { Err(std::io::Error::other(reason.to_string())) }) as connection::ConnectFuture
                }) as Connector
            }
        };
        Upstream {
            name: config.name.clone(),
            endpoints: config.endpoints.iter().map(ToString::to_string).collect(),
            timeout: config.timeout,
            connections: config
                .endpoints
                .iter()
                .map(|e| EndpointConnection::new(e.clone(), connector.clone(), connect_timeout))
                .collect(),
            next: AtomicUsize::new(0),
            max_response_bytes,
        }
    }

    /// Calls a unary method with an encoded request. `deadline` bounds the whole call and is sent
    /// as `grpc-timeout`.
    pub async fn unary(
        &self,
        path: PathAndQuery,
        request: Bytes,
        metadata: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<UnaryResponse, UpstreamError> {
        let Some(deadline) = deadline else { return self.unary_call(path, request, metadata, None).await };
        let expires = tokio::time::Instant::now() + deadline;
        let call = self.unary_call(path, request, metadata, Some(deadline));
        match tokio::time::timeout_at(expires, call).await {
            // The timer ticks in milliseconds: an answer it let through may still be late, and
            // a late answer is discarded, as gRPC clients do.
            Ok(result) if tokio::time::Instant::now() < expires => result,
            _ => Err(UpstreamError::DeadlineExceeded { upstream: self.name.clone(), deadline }),
        }
    }

    async fn unary_call(
        &self,
        path: PathAndQuery,
        message: Bytes,
        headers: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<UnaryResponse, UpstreamError> {
        let (connection, response, body) = self.start(path, headers, deadline).await?;
        self.exchange(connection, response, body, message).await.map_err(|e| e.answered_by(connection.label()))
    }

    /// Sends a unary call's message and reads its answer.
    async fn exchange(
        &self,
        connection: &EndpointConnection,
        response: h2::client::ResponseFuture,
        mut body: h2::SendStream<Bytes>,
        message: Bytes,
    ) -> Result<UnaryResponse, UpstreamError> {
        // Queued with the HEADERS frame, so both leave in one write.
        body.send_data(grpc::frame(&message), true).map_err(|e| self.unreachable(&e))?;
        let response = match response.await {
            Ok(response) => response,
            Err(e) => {
                if e.is_io() || e.is_go_away() || e.reason().is_none() {
                    connection.reset();
                }
                return Err(self.unreachable(&e));
            }
        };
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(self.status(grpc::status_for_http(parts.status), parts.headers));
        }
        // A trailers-only response: the status came with the headers.
        if let Some(status) = grpc::status_in(&parts.headers) {
            let status = status.err().unwrap_or_else(|| Status::internal("the upstream sent no response message"));
            return Err(self.status(status, HeaderMap::new()));
        }
        let (data, trailers) = self.read_body(body).await?;
        let trailers = trailers.unwrap_or_default();
        match grpc::status_in(&trailers) {
            Some(Ok(())) => {}
            Some(Err(status)) => return Err(self.status(status, parts.headers)),
            None => {
                return Err(self.status(Status::internal("the upstream's response has no grpc-status"), parts.headers));
            }
        }
        let message =
            grpc::single_message(data, self.max_response_bytes).map_err(|s| self.status(s, parts.headers.clone()))?;
        Ok(UnaryResponse { headers: parts.headers, message, trailers, endpoint: connection.label().clone() })
    }

    /// Opens a streaming call: request messages go up through the [`RequestSink`], the
    /// response comes back through the [`PendingResponse`]. `deadline` bounds the whole call
    /// and is sent as `grpc-timeout`.
    pub async fn open(
        &self,
        path: PathAndQuery,
        metadata: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<(RequestSink, PendingResponse), UpstreamError> {
        let expires = deadline.map(|d| tokio::time::Instant::now() + d);
        let (connection, response, body) = self.start(path, metadata, deadline).await?;
        let context = CallContext {
            upstream: self.name.clone(),
            endpoint: connection.label().clone(),
            deadline,
            expires,
            max_message_bytes: self.max_response_bytes,
        };
        Ok((RequestSink::new(body, context.clone()), PendingResponse::new(response, context)))
    }

    /// Sends a call's request headers on an endpoint's connection, opening a new connection
    /// if the shared one turns out to be closed.
    async fn start(
        &self,
        path: PathAndQuery,
        mut headers: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<(&EndpointConnection, h2::client::ResponseFuture, h2::SendStream<Bytes>), UpstreamError> {
        let (connection, sender) = self.sender().await?;
        grpc::request_headers(&mut headers, deadline);
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = request_uri(connection.endpoint().uri(), path);
        *request.headers_mut() = headers;
        let mut sender = match sender.ready().await {
            Ok(sender) => sender,
            // The connection closed while idle (the upstream restarted, say): nothing was sent
            // on it, so open a new one and carry on.
            Err(_) => {
                connection.reset();
                let fresh = connection
                    .sender()
                    .await
                    .map_err(|e| UpstreamError::Unreachable { upstream: self.name.clone(), reason: e.0 })?;
                fresh.ready().await.map_err(|e| self.unreachable(&e))?
            }
        };
        let (response, body) = sender.send_request(request, false).map_err(|e| {
            if e.is_io() || e.is_go_away() {
                connection.reset();
            }
            self.unreachable(&e)
        })?;
        Ok((connection, response, body))
    }

    /// Whether each endpoint can take calls now: an open connection that is not closing, or a
    /// new one made within `timeout`. Endpoints are probed together.
    pub async fn probe(&self, timeout: Duration) -> Vec<(Arc<str>, Result<(), String>)> {
        let probes = self.connections.iter().map(|connection| async move {
            let ready = async {
                let sender = connection.sender().await.map_err(|e| e.0)?;
                if sender.ready().await.is_err() {
                    // Closed while idle: the next call (or probe) opens a new one.
                    connection.reset();
                    let sender = connection.sender().await.map_err(|e| e.0)?;
                    sender.ready().await.map_err(|e| error_chain(&e))?;
                }
                Ok(())
            };
            let result = tokio::time::timeout(timeout, ready)
                .await
                .unwrap_or_else(|_| Err(format!("no connection to {} within {timeout:?}", connection.endpoint())));
            (connection.label().clone(), result)
        });
        futures_util::future::join_all(probes).await
    }

    /// The next endpoint in turn that has (or can open) a connection.
    async fn sender(&self) -> Result<(&EndpointConnection, h2::client::SendRequest<Bytes>), UpstreamError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = String::from("no endpoints");
        for i in 0..self.connections.len() {
            let connection = &self.connections[(start + i) % self.connections.len()];
            match connection.sender().await {
                Ok(sender) => return Ok((connection, sender)),
                Err(e) => last_error = e.0,
            }
        }
        Err(UpstreamError::Unreachable { upstream: self.name.clone(), reason: last_error })
    }

    /// The response body, up to the message limit (plus its prefix), and the trailers.
    async fn read_body(&self, mut body: h2::RecvStream) -> Result<(Bytes, Option<HeaderMap>), UpstreamError> {
        let limit = self.max_response_bytes.saturating_add(5);
        let mut first: Option<Bytes> = None;
        let mut rest: Option<BytesMut> = None;
        while let Some(data) = body.data().await {
            let data = data.map_err(|e| self.unreachable(&e))?;
            // Consumed: let the upstream send more.
            let _ = body.flow_control().release_capacity(data.len());
            let len = first.as_ref().map_or(0, Bytes::len) + rest.as_ref().map_or(0, BytesMut::len) + data.len();
            if len > limit {
                let status = Status::out_of_range(format!(
                    "the upstream's response is over the {}-byte limit",
                    self.max_response_bytes
                ));
                return Err(self.status(status, HeaderMap::new()));
            }
            // Most responses arrive in one frame: keep it without copying.
            match (&mut first, &mut rest) {
                (None, _) => first = Some(data),
                (Some(f), None) => {
                    let mut joined = BytesMut::with_capacity(f.len() + data.len());
                    joined.extend_from_slice(f);
                    joined.extend_from_slice(&data);
                    rest = Some(joined);
                }
                (Some(_), Some(joined)) => joined.extend_from_slice(&data),
            }
        }
        let trailers = body.trailers().await.map_err(|e| self.unreachable(&e))?;
        let data = match rest {
            Some(joined) => joined.freeze(),
            None => first.unwrap_or_default(),
        };
        Ok((data, trailers))
    }

    fn status(&self, status: Status, headers: HeaderMap) -> UpstreamError {
        UpstreamError::Status(Box::new(StatusReply { upstream: self.name.clone(), endpoint: None, status, headers }))
    }

    fn unreachable(&self, error: &dyn std::error::Error) -> UpstreamError {
        UpstreamError::Unreachable { upstream: self.name.clone(), reason: error_chain(error) }
    }
}

/// The TLS client for an upstream with `https://` endpoints: its CA file's roots or the Mozilla
/// ones, its client certificate if it has one, ALPN `h2`. `None` when no endpoint needs TLS.
pub fn client_tls(config: &UpstreamConfig) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if !config.endpoints.iter().any(|e| e.uri().scheme_str() == Some("https")) {
        return Ok(None);
    }
    let tls = config.tls.clone().unwrap_or_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut client = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("give both cert_file and key_file, or neither".into()),
    };
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(Arc::new(client)))
}

/// `http://authority/pkg.Service/Method` for an endpoint.
fn request_uri(endpoint: &Uri, path: PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(endpoint.scheme().cloned().unwrap_or(Scheme::HTTP));
    parts.authority = endpoint.authority().cloned().or_else(|| Some(Authority::from_static("localhost")));
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).unwrap_or_default()
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
