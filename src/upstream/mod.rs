//! Step 4 of the pipeline: the call to the upstream gRPC service.
//!
//! Each `[[upstreams]]` entry has one HTTP/2 connection per endpoint ([`connection`]), opened
//! on first use and shared by every request. A call goes to the better of two endpoints
//! picked at random — the one with fewer calls in progress ("power of two choices") — among
//! those the active health checks ([`health`]) have not taken out and passive outlier
//! detection ([`endpoint`]) has not ejected. A service is served by the most specific
//! selector that covers it: `pkg.Service`, then the longest `pkg.*`, then `*`.
//!
//! A unary call that fails is tried again ([`retry`]) when that is safe: always when nothing
//! reached the upstream (no connection, a refused stream), and after UNAVAILABLE or a broken
//! connection only for idempotent methods — within a retry budget, after a jittered back-off.
//!
//! Failures keep who failed visible: an upstream that cannot be reached (refused, reset, DNS)
//! is [`UpstreamError::Unreachable`], a deadline that passes is
//! [`UpstreamError::DeadlineExceeded`], a status the upstream *sent* is
//! [`UpstreamError::Status`], and a call the gateway did not even try — no healthy endpoint,
//! the cap on calls in progress reached — is [`UpstreamError::NoHealthyEndpoint`] or
//! [`UpstreamError::Overloaded`].

pub mod connection;
pub mod discovery;
pub mod endpoint;
pub mod grpc;
pub mod health;
pub mod retry;
pub mod stream;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use smallvec::SmallVec;
use tonic::{Code, Status};

use crate::config::{ServiceSelector, UpstreamConfig};
use connection::EndpointConnection;
pub use connection::{Connector, tcp_connector, tls_connector};
use discovery::Membership;
use endpoint::{CallGuard, CallResult, EndpointState, Health};
use retry::{Failure, Retries};
use stream::CallContext;
pub use stream::{PendingResponse, RawBody, RequestSink, ResponseStream};

/// The metadata key of gRPC's retry design that tells an upstream how many tries came before.
const PREVIOUS_ATTEMPTS: http::HeaderName = http::HeaderName::from_static("grpc-previous-rpc-attempts");

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
    /// The endpoints now (host names resolved).
    membership: Arc<Membership>,
    max_response_bytes: usize,
    /// Calls in progress, against `max_concurrent`.
    in_flight: Arc<AtomicUsize>,
    max_concurrent: Option<usize>,
    retries: Retries,
    /// gRPC paths (`/pkg.Service/Method`) of the methods configured idempotent.
    idempotent: HashSet<String>,
    /// Retries made, for `/metrics`.
    retried: AtomicU64,
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
    #[error("upstream {upstream} is unreachable")]
    Unreachable {
        /// The upstream's name.
        upstream: String,
        /// The transport error.
        reason: String,
    },
    /// Every endpoint is taken out by the health checks: the call was not tried.
    #[error("upstream {upstream} has no healthy endpoint")]
    NoHealthyEndpoint {
        /// The upstream's name.
        upstream: String,
        /// What the health checks said of each endpoint.
        reason: String,
    },
    /// The upstream's cap on calls in progress is reached: the call was not tried.
    #[error("upstream {upstream} already has {limit} calls in progress (its max_concurrent_requests)")]
    Overloaded {
        /// The upstream's name.
        upstream: String,
        /// The cap.
        limit: usize,
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

    /// What the operator is told: the public message, and for the failures that have one the
    /// reason, which names endpoint addresses a client is never shown.
    pub fn log_message(&self) -> String {
        match self {
            UpstreamError::Unreachable { reason, .. } | UpstreamError::NoHealthyEndpoint { reason, .. } => {
                format!("{self}: {reason}")
            }
            other => other.to_string(),
        }
    }

    /// The endpoint that answered with a status, when known.
    pub fn endpoint(&self) -> Option<&Arc<str>> {
        match self {
            UpstreamError::Status(reply) => reply.endpoint.as_ref(),
            _ => None,
        }
    }

    /// Whether the endpoint failed the call, for outlier detection: it could not be reached
    /// or said UNAVAILABLE. Other statuses are answers.
    fn is_endpoint_failure(&self) -> bool {
        match self {
            UpstreamError::Unreachable { .. } => true,
            UpstreamError::Status(reply) => reply.status.code() == Code::Unavailable,
            _ => false,
        }
    }
}

/// What a call holds while it lasts: its place under the upstream's cap and among its
/// endpoint's calls in progress.
#[derive(Debug)]
pub struct CallHold {
    _slot: Option<Slot>,
    _call: CallGuard,
    /// A streaming call's seat on its stream lane.
    _seat: Option<connection::LaneSeat>,
    /// What the caller keeps for as long as the call lasts (the client's stream seat).
    _kept: Option<Kept>,
}

/// Something a caller keeps until its call ends: dropped with the call.
pub struct Kept(pub Box<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

/// Which of an endpoint's connections a call goes on (see [`connection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// The connection unary calls share.
    Unary,
    /// A stream lane.
    Stream,
}

/// A chosen endpoint, a connection to it ready for a call, and the call's lane seat.
type Sender = (Arc<EndpointState>, h2::client::SendRequest<Bytes>, Option<connection::LaneSeat>);

/// A call whose request headers left: its endpoint, the response to come, the request body
/// to send, and its lane seat.
type Started = (Arc<EndpointState>, h2::client::ResponseFuture, h2::SendStream<Bytes>, Option<connection::LaneSeat>);

/// A place under an upstream's cap on calls in progress.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
    /// bring their own transport (an in-memory pipe, a proxy). Active health checks start
    /// here when a tokio runtime is running.
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
        let membership = Membership::new(
            &config.name,
            config.endpoints.clone(),
            connector,
            connect_timeout,
            config.outlier_detection.clone(),
            config.health_check.clone(),
        );
        discovery::spawn(&membership, config.resolve_interval, discovery::system_resolver());
        let idempotent = config
            .idempotent_methods
            .iter()
            .filter_map(|m| m.rsplit_once('.').map(|(service, method)| format!("/{service}/{method}")))
            .collect();
        Upstream {
            name: config.name.clone(),
            endpoints: config.endpoints.iter().map(ToString::to_string).collect(),
            timeout: config.timeout,
            membership,
            max_response_bytes,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_concurrent: config.max_concurrent_requests,
            retries: Retries::new(&config.retries),
            idempotent,
            retried: AtomicU64::new(0),
        }
    }

    /// Whether the method at `path` (`/pkg.Service/Method`) is configured idempotent.
    pub fn is_idempotent(&self, path: &str) -> bool {
        !self.idempotent.is_empty() && self.idempotent.contains(path)
    }

    /// Calls a unary method with an encoded request. `deadline` bounds the whole call, retries
    /// included, and is sent as `grpc-timeout` (what is left of it, on a retry). `idempotent`
    /// allows a retry after the upstream may have acted.
    pub async fn unary(
        &self,
        path: PathAndQuery,
        request: Bytes,
        metadata: HeaderMap,
        deadline: Option<Duration>,
        idempotent: bool,
    ) -> Result<UnaryResponse, UpstreamError> {
        let slot = self.admit()?;
        let expires = deadline.map(|d| tokio::time::Instant::now() + d);
        let call = self.attempts(path, request, metadata, expires, idempotent);
        let result = match (deadline, expires) {
            (Some(deadline), Some(expires)) => match tokio::time::timeout_at(expires, call).await {
                // The timer ticks in milliseconds: an answer it let through may still be late,
                // and a late answer is discarded, as gRPC clients do.
                Ok(result) if tokio::time::Instant::now() < expires => result,
                _ => Err(UpstreamError::DeadlineExceeded { upstream: self.name.clone(), deadline }),
            },
            _ => call.await,
        };
        drop(slot);
        result
    }

    /// The first try and the retries that are safe and within the budget.
    async fn attempts(
        &self,
        path: PathAndQuery,
        request: Bytes,
        metadata: HeaderMap,
        expires: Option<tokio::time::Instant>,
        idempotent: bool,
    ) -> Result<UnaryResponse, UpstreamError> {
        self.retries.called();
        let mut retry = 0;
        loop {
            let remaining = expires.map(|e| e.saturating_duration_since(tokio::time::Instant::now()));
            // Each try sends copies: the message's bytes are shared, not copied.
            let mut headers = metadata.clone();
            if retry > 0 {
                // As gRPC clients do on a retry, so the upstream can tell.
                headers.insert(PREVIOUS_ATTEMPTS, http::HeaderValue::from(retry));
            }
            let failure = match self.unary_call(path.clone(), request.clone(), headers, remaining).await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            retry += 1;
            let Some(wait) = self.retries.allow(retry, &failure, idempotent) else { return Err(failure.error) };
            tracing::debug!(upstream = %self.name, "retry {retry} in {wait:?}: {}", failure.error);
            self.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    async fn unary_call(
        &self,
        path: PathAndQuery,
        message: Bytes,
        headers: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<UnaryResponse, Failure> {
        let (member, response, body, _) =
            self.start(path, headers, deadline, Lane::Unary).await.map_err(Failure::not_sent)?;
        let _call = member.begin_call();
        let result = self.exchange(member.connection(), response, body, message).await;
        let failed = result.as_ref().err().is_some_and(|f| f.error.is_endpoint_failure());
        member.record(if failed { CallResult::Failed } else { CallResult::Answered });
        let label = member.connection().label();
        result.map_err(|f| Failure { error: f.error.answered_by(label), ..f })
    }

    /// Sends a unary call's message and reads its answer.
    async fn exchange(
        &self,
        connection: &EndpointConnection,
        response: h2::client::ResponseFuture,
        mut body: h2::SendStream<Bytes>,
        message: Bytes,
    ) -> Result<UnaryResponse, Failure> {
        // Queued with the HEADERS frame, so both leave in one write.
        body.send_data(grpc::frame(&message), true).map_err(|e| Failure::sent(self.unreachable(&e)))?;
        let response = match response.await {
            Ok(response) => response,
            Err(e) => {
                if e.is_io() || e.is_go_away() || e.reason().is_none() {
                    connection.reset();
                }
                return Err(Failure::refused_or_sent(self.unreachable(&e), retry::refused(&e)));
            }
        };
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            return Err(Failure::sent(self.status(grpc::status_for_http(parts.status), parts.headers)));
        }
        // A trailers-only response: the status came with the headers.
        if let Some(status) = grpc::status_in(&parts.headers) {
            let status = status.err().unwrap_or_else(|| Status::internal("the upstream sent no response message"));
            return Err(Failure::sent(self.status(status, HeaderMap::new())));
        }
        let (data, trailers) = self.read_body(body).await.map_err(Failure::sent)?;
        let trailers = trailers.unwrap_or_default();
        match grpc::status_in(&trailers) {
            Some(Ok(())) => {}
            Some(Err(status)) => return Err(Failure::sent(self.status(status, parts.headers))),
            None => {
                let status = Status::internal("the upstream's response has no grpc-status");
                return Err(Failure::sent(self.status(status, parts.headers)));
            }
        }
        let message = grpc::single_message(data, self.max_response_bytes)
            .map_err(|s| Failure::sent(self.status(s, parts.headers.clone())))?;
        Ok(UnaryResponse { headers: parts.headers, message, trailers, endpoint: connection.label().clone() })
    }

    /// Opens a streaming call: request messages go up through the [`RequestSink`], the
    /// response comes back through the [`PendingResponse`]. `deadline` bounds the whole call
    /// and is sent as `grpc-timeout`. The call counts against the cap on calls in progress
    /// until both sides are dropped. Streams are never retried: their messages are gone.
    pub async fn open(
        &self,
        path: PathAndQuery,
        metadata: HeaderMap,
        deadline: Option<Duration>,
    ) -> Result<(RequestSink, PendingResponse), UpstreamError> {
        self.open_keeping(path, metadata, deadline, None).await
    }

    /// [`Upstream::open`], keeping `kept` until the call ends.
    pub async fn open_keeping(
        &self,
        path: PathAndQuery,
        metadata: HeaderMap,
        deadline: Option<Duration>,
        kept: Option<Kept>,
    ) -> Result<(RequestSink, PendingResponse), UpstreamError> {
        let slot = self.admit()?;
        let expires = deadline.map(|d| tokio::time::Instant::now() + d);
        let (member, response, body, seat) = self.start(path, metadata, deadline, Lane::Stream).await?;
        let context = CallContext {
            upstream: self.name.clone(),
            endpoint: member.connection().label().clone(),
            deadline,
            expires,
            max_message_bytes: self.max_response_bytes,
            _held: Arc::new(CallHold { _slot: slot, _call: member.begin_call(), _seat: seat, _kept: kept }),
        };
        Ok((RequestSink::new(body, context.clone()), PendingResponse::new(response, context)))
    }

    /// A place under the cap on calls in progress, if there is one.
    fn admit(&self) -> Result<Option<Slot>, UpstreamError> {
        let Some(limit) = self.max_concurrent else { return Ok(None) };
        let slot = Slot(self.in_flight.clone());
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= limit {
            return Err(UpstreamError::Overloaded { upstream: self.name.clone(), limit });
        }
        Ok(Some(slot))
    }

    /// Sends a call's request headers to the chosen endpoint, on its open connection or a new
    /// one; an endpoint that cannot take it gives way to the next. Nothing has reached the
    /// upstream when this fails.
    async fn start(
        &self,
        path: PathAndQuery,
        mut headers: HeaderMap,
        deadline: Option<Duration>,
        lane: Lane,
    ) -> Result<Started, UpstreamError> {
        let (member, mut sender, seat) = self.sender(lane).await?;
        grpc::request_headers(&mut headers, deadline);
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = request_uri(member.connection().endpoint().uri(), path);
        *request.headers_mut() = headers;
        let (response, body) = sender.send_request(request, false).map_err(|e| {
            // A stream lane that failed is found out by the next call's readiness check.
            if (e.is_io() || e.is_go_away()) && lane == Lane::Unary {
                member.connection().reset();
            }
            self.unreachable(&e)
        })?;
        Ok((member, response, body, seat))
    }

    /// A connection ready for a new call on `lane`: the chosen endpoint's, else the next one's.
    async fn sender(&self, lane: Lane) -> Result<Sender, UpstreamError> {
        let mut last_error = String::from("no endpoints");
        for member in self.candidates()? {
            let ready = match lane {
                Lane::Unary => ready(member.connection()).await.map(|sender| (sender, None)),
                Lane::Stream => {
                    member.connection().stream_sender().await.map(|(s, seat)| (s, Some(seat))).map_err(|e| e.0)
                }
            };
            match ready {
                Ok((sender, seat)) => return Ok((member, sender, seat)),
                Err(reason) => {
                    member.record(CallResult::Failed);
                    last_error = reason;
                }
            }
        }
        Err(UpstreamError::Unreachable { upstream: self.name.clone(), reason: last_error })
    }

    /// The endpoints to try, in order: of two available ones picked at random, the one with
    /// fewer calls in progress, then the other available ones. When outlier detection has
    /// ejected every endpoint the health checks leave in, they are all tried anyway: ejection
    /// spreads load away from a bad endpoint, it never leaves an upstream with nothing to
    /// try. When the health checks have taken every endpoint out, the call fails at once.
    fn candidates(&self) -> Result<SmallVec<[Arc<EndpointState>; 4]>, UpstreamError> {
        let members = self.membership.current();
        let mut available: SmallVec<[Arc<EndpointState>; 4]> =
            members.iter().filter(|m| m.is_available()).cloned().collect();
        if available.is_empty() {
            available = members.iter().filter(|m| !m.health().is_out()).cloned().collect();
        }
        if available.is_empty() && !members.is_empty() {
            let (upstream, reason) = (self.name.clone(), self.health_report());
            // Out because none could be reached is the contract's 502; because one answered
            // it is not serving, 503.
            return Err(match members.iter().all(|m| m.health() == Health::Unreachable) {
                true => UpstreamError::Unreachable { upstream, reason },
                false => UpstreamError::NoHealthyEndpoint { upstream, reason },
            });
        }
        if available.len() > 1 {
            let first = rand::random_range(0..available.len());
            let mut second = rand::random_range(0..available.len() - 1);
            if second >= first {
                second += 1;
            }
            let best = if available[second].outstanding() < available[first].outstanding() { second } else { first };
            available.rotate_left(best);
        }
        Ok(available)
    }

    /// What the health checks last said of each endpoint, for error messages.
    fn health_report(&self) -> String {
        let report: Vec<String> = self
            .membership
            .current()
            .iter()
            .map(|m| format!("{}: {}", m.connection().label(), m.health_reason().as_deref().unwrap_or("not serving")))
            .collect();
        report.join("; ")
    }

    /// Its retries and endpoint states, for `/metrics`.
    pub fn sample(&self) -> UpstreamSample {
        let members = self.membership.current();
        let unhealthy = members.iter().filter(|m| m.health().is_out()).count();
        let ejected = members.iter().filter(|m| !m.health().is_out() && m.is_ejected()).count();
        UpstreamSample {
            name: self.name.clone(),
            retries: self.retried.load(Ordering::Relaxed),
            available: members.len() - unhealthy - ejected,
            unhealthy,
            ejected,
        }
    }

    /// Its endpoints now, with what the gateway knows of each.
    pub fn endpoint_states(&self) -> Arc<Vec<Arc<EndpointState>>> {
        self.membership.current()
    }

    /// Whether each endpoint can take calls now: an open connection that is not closing, or a
    /// new one made within `timeout`. Endpoints are probed together.
    pub async fn probe(&self, timeout: Duration) -> Vec<(Arc<EndpointState>, Result<(), String>)> {
        let members = self.membership.current();
        let probes = members.iter().map(|member| async move {
            let connection = member.connection();
            let result = tokio::time::timeout(timeout, ready(connection))
                .await
                .map(|ready| ready.map(drop))
                .unwrap_or_else(|_| Err(format!("no connection to {} within {timeout:?}", connection.endpoint())));
            (member.clone(), result)
        });
        futures_util::future::join_all(probes).await
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

/// The endpoint's connection, ready for a new stream: the open one, or — when that one closed
/// while idle (the upstream restarted, say; nothing was sent on it) — a new one.
async fn ready(connection: &EndpointConnection) -> Result<h2::client::SendRequest<Bytes>, String> {
    let sender = connection.sender().await.map_err(|e| e.0)?;
    match sender.ready().await {
        Ok(sender) => Ok(sender),
        Err(_) => {
            connection.reset();
            let fresh = connection.sender().await.map_err(|e| e.0)?;
            fresh.ready().await.map_err(|e| error_chain(&e))
        }
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
/// One upstream, when scraped.
#[derive(Debug, Clone)]
pub struct UpstreamSample {
    /// Its name.
    pub name: String,
    /// Retries made so far.
    pub retries: u64,
    /// Endpoints taking calls.
    pub available: usize,
    /// Endpoints the health checks took out.
    pub unhealthy: usize,
    /// Endpoints ejected after failed calls (and not taken out by health checks).
    pub ejected: usize,
}
