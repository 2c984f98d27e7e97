//! The integration-test harness: real servers on ephemeral loopback ports.
//!
//! - [`Upstream`]: a gRPC server (tonic's transport) that answers every method of the test
//!   fixtures and examples, records each call (method, request JSON, metadata) and replies as the test
//!   scripts it: a message, a status with details, extra headers and trailers, a delay.
//! - [`Gateway`]: protogate serving HTTP on `127.0.0.1:0` in front of it.
//! - [`Client`]: plain HTTP/1.1 requests, and raw bytes for what no client would send.
//!
//! - [`collector::Collector`]: an OpenTelemetry collector's trace receivers (gRPC and HTTP).
//!
//! Everything shuts down when dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

pub mod collector;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};
use protogate::codec::DynamicCodec;
use protogate::config::Config;
use protogate::pb::google::rpc;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tonic::Code;

/// The compiled test fixtures (`proto/protogate/testing`).
pub fn testing_descriptors() -> PathBuf {
    PathBuf::from(concat!(env!("OUT_DIR"), "/testing.binpb"))
}

/// The compiled example services (`proto/example`).
pub fn example_descriptors() -> PathBuf {
    PathBuf::from(concat!(env!("OUT_DIR"), "/examples.binpb"))
}

/// Every method the scripted upstream answers: the test fixtures and the examples.
fn pool() -> DescriptorPool {
    protogate::descriptors::load(&[testing_descriptors(), example_descriptors()]).unwrap().pool
}

// === upstream ===

/// One call the upstream received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `/pkg.Service/Method`.
    pub path: String,
    /// The request message as canonical JSON (proto3 mapping, defaults omitted).
    pub request: Value,
    /// The request headers (gRPC metadata).
    pub metadata: HeaderMap,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// What the upstream answers.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The response message as JSON; `None` echoes the request when the types match.
    pub message: Option<Value>,
    /// A non-OK status instead of a message: code, message, encoded google.rpc.Status details.
    pub status: Option<(Code, String, Vec<u8>)>,
    /// Response headers (initial metadata).
    pub headers: Vec<(String, String)>,
    /// Trailers added next to `grpc-status`.
    pub trailers: Vec<(String, String)>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Server streams: these messages, one every `interval`, then the status (OK unless
    /// `status` is set).
    pub stream: Vec<Value>,
    /// The pause before each streamed message.
    pub interval: Duration,
    /// After the streamed messages, keep the stream open until the client cancels it.
    pub hold: bool,
}

impl Reply {
    pub fn json(message: Value) -> Reply {
        Reply { message: Some(message), ..Reply::default() }
    }

    pub fn status(code: Code, message: &str) -> Reply {
        Reply { status: Some((code, message.to_owned(), Vec::new())), ..Reply::default() }
    }

    /// A status whose details carry the given `(type name, encoded message)` pairs.
    pub fn status_with_details(code: Code, message: &str, details: Vec<(&str, Vec<u8>)>) -> Reply {
        let status = rpc::Status {
            code: code as i32,
            message: message.to_owned(),
            details: details
                .into_iter()
                .map(|(name, value)| prost_types::Any { type_url: format!("type.googleapis.com/{name}"), value })
                .collect(),
        };
        Reply { status: Some((code, message.to_owned(), status.encode_to_vec())), ..Reply::default() }
    }

    pub fn header(mut self, key: &str, value: &str) -> Reply {
        self.headers.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn trailer(mut self, key: &str, value: &str) -> Reply {
        self.trailers.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// A server stream of these messages.
    pub fn stream(messages: Vec<Value>) -> Reply {
        Reply { stream: messages, ..Reply::default() }
    }

    /// Pause this long before each streamed message.
    pub fn every(mut self, interval: Duration) -> Reply {
        self.interval = interval;
        self
    }

    /// Keep the stream open after its messages, until the client cancels.
    pub fn hold(mut self) -> Reply {
        self.hold = true;
        self
    }

    /// End with this status instead of OK.
    pub fn ending(mut self, code: Code, message: &str) -> Reply {
        self.status = Some((code, message.to_owned(), Vec::new()));
        self
    }
}

type Script = Box<dyn Fn(&Call) -> Reply + Send + Sync>;

struct UpstreamState {
    pool: DescriptorPool,
    calls: Mutex<Vec<Call>>,
    called: Notify,
    script: Mutex<Option<Script>>,
    queued: Mutex<VecDeque<Reply>>,
    /// Response streams in progress.
    open_streams: AtomicUsize,
    /// Response streams dropped before they ended: the client cancelled them.
    cancelled: AtomicUsize,
    /// Stream messages sent.
    sent: AtomicUsize,
    /// Stream messages received.
    received: AtomicUsize,
    /// Request bodies that ended in an error (a reset): the client cancelled. (tonic hands
    /// a cancelled request stream to the handler as a clean end, so the handler cannot tell.)
    request_resets: AtomicUsize,
    /// Unary calls being answered, the most ever at once, and those the client cancelled.
    unary_in_progress: AtomicUsize,
    unary_peak: AtomicUsize,
    unary_cancelled: AtomicUsize,
    /// Any of the counters changed.
    changed: Notify,
}

impl UpstreamState {
    /// The reply for a call: the next queued one, else the script's, else the default.
    fn reply_for(&self, call: &Call) -> Reply {
        let queued = self.queued.lock().unwrap().pop_front();
        queued.unwrap_or_else(|| match &*self.script.lock().unwrap() {
            Some(script) => script(call),
            None => Reply::default(),
        })
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
        self.called.notify_waiters();
    }

    fn count(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// Counts a unary call while its answer is on its way, and whether the client cancelled it.
struct UnaryGuard {
    state: Arc<UpstreamState>,
    finished: bool,
}

impl UnaryGuard {
    fn new(state: Arc<UpstreamState>) -> UnaryGuard {
        let now = state.unary_in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        state.unary_peak.fetch_max(now, Ordering::SeqCst);
        UnaryGuard { state, finished: false }
    }
}

impl Drop for UnaryGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.unary_cancelled.fetch_add(1, Ordering::SeqCst);
        }
        self.state.unary_in_progress.fetch_sub(1, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }
}

/// Counts a response stream while it is open, and whether it was cancelled.
struct StreamGuard {
    state: Arc<UpstreamState>,
    finished: bool,
}

impl StreamGuard {
    fn new(state: Arc<UpstreamState>) -> StreamGuard {
        state.count(&state.open_streams);
        StreamGuard { state, finished: false }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
        self.state.open_streams.fetch_sub(1, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }
}

/// A scripted gRPC upstream on an ephemeral port.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    /// Its `grpc.health.v1.Health` service (tonic-health): SERVING until told otherwise.
    health: tonic_health::server::HealthReporter,
    _shutdown: oneshot::Sender<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Upstream::serve(listener).await
    }

    /// Serves on an already bound listener (to restart on a known port).
    pub async fn serve(listener: TcpListener) -> Upstream {
        Upstream::serve_incoming(listener, None).await
    }

    /// The same upstream over TLS (ALPN h2) with `server` as its configuration.
    pub async fn start_tls(server: Arc<rustls::ServerConfig>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Upstream::serve_incoming(listener, Some(server)).await
    }

    async fn serve_incoming(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState {
            pool: pool(),
            calls: Mutex::new(Vec::new()),
            called: Notify::new(),
            script: Mutex::new(None),
            queued: Mutex::new(VecDeque::new()),
            open_streams: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
            request_resets: AtomicUsize::new(0),
            unary_in_progress: AtomicUsize::new(0),
            unary_peak: AtomicUsize::new(0),
            unary_cancelled: AtomicUsize::new(0),
            changed: Notify::new(),
        });
        let handler_state = state.clone();
        let router = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
            let state = handler_state.clone();
            async move { Ok::<_, Infallible>(answer(state, request).await) }
        });
        let (tx, rx) = oneshot::channel();
        let (health, health_service) = tonic_health::server::health_reporter();
        let routes = tonic::service::Routes::from(router).add_service(health_service);
        let server = tonic::transport::Server::builder().add_routes(routes);
        let shutdown = async {
            let _ = rx.await;
        };
        match tls {
            None => {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                tokio::spawn(server.serve_with_incoming_shutdown(incoming, shutdown));
            }
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                // Each accepted connection's handshake; failed ones are dropped, the rest served.
                let incoming = futures_util::stream::unfold((listener, acceptor), |(listener, acceptor)| async move {
                    loop {
                        let (tcp, _) = listener.accept().await.ok()?;
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            return Some((Ok::<_, std::io::Error>(TlsIo(stream)), (listener, acceptor)));
                        }
                    }
                });
                tokio::spawn(server.serve_with_incoming_shutdown(incoming, shutdown));
            }
        }
        Upstream { addr, state, health, _shutdown: tx }
    }

    /// What its health service answers from now on (for the server as a whole).
    pub async fn set_serving(&self, serving: bool) {
        use tonic_health::ServingStatus::{NotServing, Serving};
        self.health.set_service_status("", if serving { Serving } else { NotServing }).await;
    }

    /// The URL of a port that was free a moment ago: nothing listens there.
    pub async fn closed_url() -> String {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        format!("http://{closed}")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers every later call with `script(call)`.
    pub fn script(&self, script: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        *self.state.script.lock().unwrap() = Some(Box::new(script));
    }

    /// Answers the next call with `reply` (before any script).
    pub fn reply(&self, reply: Reply) {
        self.state.queued.lock().unwrap().push_back(reply);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The most recent call; panics if there was none.
    pub fn last_call(&self) -> Call {
        self.calls().pop().expect("the upstream received no call")
    }

    /// Waits (at most 5 s) until `n` calls have arrived.
    pub async fn wait_for_calls(&self, n: usize) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let notified = self.state.called.notified();
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("waited 5 s for {n} upstream calls, got {}", self.calls().len());
            }
        }
    }

    /// Response streams in progress.
    pub fn open_streams(&self) -> usize {
        self.state.open_streams.load(Ordering::SeqCst)
    }

    /// Response streams the client cancelled.
    pub fn cancelled(&self) -> usize {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    /// Stream messages sent so far.
    pub fn sent(&self) -> usize {
        self.state.sent.load(Ordering::SeqCst)
    }

    /// Stream messages received so far.
    pub fn received(&self) -> usize {
        self.state.received.load(Ordering::SeqCst)
    }

    /// The most unary calls it was answering at one time.
    pub fn peak_unary_calls(&self) -> usize {
        self.state.unary_peak.load(Ordering::SeqCst)
    }

    /// Unary calls the client cancelled before their answer was ready.
    pub fn cancelled_unary_calls(&self) -> usize {
        self.state.unary_cancelled.load(Ordering::SeqCst)
    }

    /// Request streams the client reset.
    pub fn request_resets(&self) -> usize {
        self.state.request_resets.load(Ordering::SeqCst)
    }

    /// Waits (at most 5 s) until `condition` holds; panics naming `what` otherwise.
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&Upstream) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let changed = self.state.changed.notified();
            let called = self.state.called.notified();
            if condition(self) {
                return;
            }
            let either = async {
                tokio::select! {
                    () = changed => {},
                    () = called => {},
                }
            };
            if tokio::time::timeout_at(deadline, either).await.is_err() {
                panic!(
                    "waited 5 s for {what}: {} open streams, {} cancelled, {} sent, {} received",
                    self.open_streams(),
                    self.cancelled(),
                    self.sent(),
                    self.received()
                );
            }
        }
    }
}

async fn answer(state: Arc<UpstreamState>, request: Request<axum::body::Body>) -> Response<axum::body::Body> {
    let path = request.uri().path().to_owned();
    let method = path
        .trim_start_matches('/')
        .split_once('/')
        .and_then(|(service, method)| state.pool.get_service_by_name(service)?.methods().find(|m| m.name() == method));
    let Some(method) = method else {
        return tonic::Status::unimplemented(format!("no method {path}")).into_http();
    };
    let watcher = state.clone();
    let request = request.map(|body| {
        axum::body::Body::new(body.map_err(move |e| {
            watcher.count(&watcher.request_resets);
            e
        }))
    });
    match (method.is_client_streaming(), method.is_server_streaming()) {
        (false, false) => answer_unary(state, method, path, request).await,
        (false, true) => answer_server_stream(state, method, path, request).await,
        (true, false) => answer_client_stream(state, method, path, request).await,
        (true, true) => answer_bidi(state, method, path, request).await,
    }
}

async fn answer_unary(
    state: Arc<UpstreamState>,
    method: prost_reflect::MethodDescriptor,
    path: String,
    request: Request<axum::body::Body>,
) -> Response<axum::body::Body> {
    let output = method.output();
    let handler_state = state.clone();
    let reply_trailers = Arc::new(Mutex::new(Vec::new()));
    let trailers_out = reply_trailers.clone();
    let service = tower::service_fn(move |request: tonic::Request<DynamicMessage>| {
        let state = handler_state.clone();
        let output = output.clone();
        let path = path.clone();
        let trailers_out = trailers_out.clone();
        async move {
            let metadata = request.metadata().clone().into_headers();
            let message = request.into_inner();
            let request_json = serde_json::to_value(&message).unwrap();
            let call = Call { path, request: request_json, metadata, at: std::time::Instant::now() };
            let reply = state.reply_for(&call);
            state.record(call);
            let mut answering = UnaryGuard::new(state.clone());
            tokio::time::sleep(reply.delay).await;
            answering.finished = true;
            *trailers_out.lock().unwrap() = reply.trailers.clone();
            if let Some((code, text, details)) = reply.status {
                let mut status = tonic::Status::with_details(code, text, details.into());
                // An error answer is trailers-only: its headers and trailers arrive together.
                for (k, v) in reply.headers.iter().chain(&reply.trailers) {
                    insert_metadata(status.metadata_mut(), k, v);
                }
                return Err(status);
            }
            let response = match reply.message {
                Some(json) => DynamicMessage::deserialize(output.clone(), json).unwrap(),
                None if message.descriptor() == output => message,
                None => DynamicMessage::new(output.clone()),
            };
            let mut response = tonic::Response::new(response);
            for (k, v) in &reply.headers {
                insert_metadata(response.metadata_mut(), k, v);
            }
            Ok::<_, tonic::Status>(response)
        }
    });
    let mut grpc = tonic::server::Grpc::new(DynamicCodec::new(method.input()));
    let response = grpc.unary(service, request).await;
    with_trailers(response, reply_trailers)
}

/// tonic has no API for trailers on success: adds the reply's to its final trailers frame.
fn with_trailers<B>(response: Response<B>, extra: Arc<Mutex<Vec<(String, String)>>>) -> Response<axum::body::Body>
where
    B: http_body::Body<Data = Bytes, Error = tonic::Status> + Send + 'static,
{
    response.map(move |body| {
        axum::body::Body::new(body.map_frame(move |frame| match frame.into_trailers() {
            Ok(mut trailers) => {
                for (k, v) in extra.lock().unwrap().iter() {
                    trailers.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
                }
                Frame::trailers(trailers)
            }
            Err(frame) => frame,
        }))
    })
}

type MessageStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<DynamicMessage, tonic::Status>> + Send>>;

/// Streams the reply's messages, then its status; the call is recorded as it starts.
async fn answer_server_stream(
    state: Arc<UpstreamState>,
    method: prost_reflect::MethodDescriptor,
    path: String,
    request: Request<axum::body::Body>,
) -> Response<axum::body::Body> {
    let output = method.output();
    let reply_trailers = Arc::new(Mutex::new(Vec::new()));
    let trailers_out = reply_trailers.clone();
    let service = tower::service_fn(move |request: tonic::Request<DynamicMessage>| {
        let (state, output, path, trailers_out) = (state.clone(), output.clone(), path.clone(), trailers_out.clone());
        async move {
            let metadata = request.metadata().clone().into_headers();
            let call = Call {
                path,
                request: serde_json::to_value(request.into_inner()).unwrap(),
                metadata,
                at: std::time::Instant::now(),
            };
            let reply = state.reply_for(&call);
            state.record(call);
            *trailers_out.lock().unwrap() = reply.trailers.clone();
            tokio::time::sleep(reply.delay).await;
            let status =
                reply.status.map(|(code, text, details)| tonic::Status::with_details(code, text, details.into()));
            let mut response = tonic::Response::new(scripted_stream(
                state,
                output,
                reply.stream.into(),
                reply.interval,
                reply.hold,
                status,
            ));
            for (k, v) in &reply.headers {
                insert_metadata(response.metadata_mut(), k, v);
            }
            Ok::<_, tonic::Status>(response)
        }
    });
    let mut grpc = tonic::server::Grpc::new(DynamicCodec::new(method.input()));
    with_trailers(grpc.server_streaming(service, request).await, reply_trailers)
}

fn scripted_stream(
    state: Arc<UpstreamState>,
    output: prost_reflect::MessageDescriptor,
    messages: VecDeque<Value>,
    interval: Duration,
    hold: bool,
    status: Option<tonic::Status>,
) -> MessageStream {
    let guard = StreamGuard::new(state);
    let start = (guard, messages, status);
    Box::pin(futures_util::stream::unfold(Some(start), move |current| {
        let output = output.clone();
        async move {
            let (mut guard, mut messages, status) = current?;
            if let Some(json) = messages.pop_front() {
                tokio::time::sleep(interval).await;
                let message = DynamicMessage::deserialize(output, json).unwrap();
                guard.state.count(&guard.state.sent);
                return Some((Ok(message), Some((guard, messages, status))));
            }
            if hold {
                std::future::pending::<()>().await;
            }
            guard.finished = true;
            status.map(|status| (Err(status), None))
        }
    }))
}

/// Reads every message, records the call with them as a JSON array, then answers.
async fn answer_client_stream(
    state: Arc<UpstreamState>,
    method: prost_reflect::MethodDescriptor,
    path: String,
    request: Request<axum::body::Body>,
) -> Response<axum::body::Body> {
    let output = method.output();
    let service = tower::service_fn(move |request: tonic::Request<tonic::Streaming<DynamicMessage>>| {
        let (state, output, path) = (state.clone(), output.clone(), path.clone());
        async move {
            let metadata = request.metadata().clone().into_headers();
            let mut inbound = request.into_inner();
            let mut messages = Vec::new();
            while let Some(message) = inbound.message().await? {
                state.count(&state.received);
                messages.push(serde_json::to_value(message).unwrap());
            }
            let call = Call { path, request: Value::Array(messages), metadata, at: std::time::Instant::now() };
            let reply = state.reply_for(&call);
            state.record(call);
            tokio::time::sleep(reply.delay).await;
            if let Some((code, text, details)) = reply.status {
                return Err(tonic::Status::with_details(code, text, details.into()));
            }
            let message = match reply.message {
                Some(json) => DynamicMessage::deserialize(output, json).unwrap(),
                None => DynamicMessage::new(output),
            };
            Ok(tonic::Response::new(message))
        }
    });
    let mut grpc = tonic::server::Grpc::new(DynamicCodec::new(method.input()));
    grpc.client_streaming(service, request).await.map(axum::body::Body::new)
}

/// Echoes each message as it arrives; when the client's stream ends, records the call (the
/// messages as a JSON array) and ends with the reply's status.
async fn answer_bidi(
    state: Arc<UpstreamState>,
    method: prost_reflect::MethodDescriptor,
    path: String,
    request: Request<axum::body::Body>,
) -> Response<axum::body::Body> {
    let service = tower::service_fn(move |request: tonic::Request<tonic::Streaming<DynamicMessage>>| {
        let (state, path) = (state.clone(), path.clone());
        async move {
            let metadata = request.metadata().clone().into_headers();
            let reply = state.reply_for(&Call {
                path: path.clone(),
                request: Value::Null,
                metadata: metadata.clone(),
                at: std::time::Instant::now(),
            });
            let status =
                reply.status.map(|(code, text, details)| tonic::Status::with_details(code, text, details.into()));
            let guard = StreamGuard::new(state);
            let start = (guard, request.into_inner(), Vec::new(), status);
            let echo = futures_util::stream::unfold(Some(start), move |current| {
                let (path, metadata) = (path.clone(), metadata.clone());
                async move {
                    let (mut guard, mut inbound, mut seen, status) = current?;
                    match inbound.message().await {
                        Ok(Some(message)) => {
                            guard.state.count(&guard.state.received);
                            seen.push(serde_json::to_value(&message).unwrap());
                            guard.state.count(&guard.state.sent);
                            Some((Ok(message), Some((guard, inbound, seen, status))))
                        }
                        Ok(None) => {
                            guard.state.record(Call {
                                path,
                                request: Value::Array(seen),
                                metadata,
                                at: std::time::Instant::now(),
                            });
                            guard.finished = true;
                            status.map(|status| (Err(status), None))
                        }
                        Err(_) => None,
                    }
                }
            });
            Ok::<_, tonic::Status>(tonic::Response::new(Box::pin(echo) as MessageStream))
        }
    });
    let mut grpc = tonic::server::Grpc::new(DynamicCodec::new(method.input()));
    grpc.streaming(service, request).await.map(axum::body::Body::new)
}

fn insert_metadata(metadata: &mut tonic::metadata::MetadataMap, key: &str, value: &str) {
    if key.ends_with("-bin") {
        let key = tonic::metadata::BinaryMetadataKey::from_bytes(key.as_bytes()).unwrap();
        metadata.append_bin(key, tonic::metadata::BinaryMetadataValue::from_bytes(value.as_bytes()));
    } else {
        let key = tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()).unwrap();
        metadata.append(key, value.parse().unwrap());
    }
}

/// Removes the trailing `google.rpc.RequestInfo` detail of an error body and returns its
/// request id.
pub fn take_request_info(status: &mut Value) -> Option<String> {
    let details = status["details"].as_array_mut()?;
    let last = details.last()?;
    if last["@type"] != "type.googleapis.com/google.rpc.RequestInfo" {
        return None;
    }
    let id = last["requestId"].as_str().map(str::to_owned);
    details.pop();
    id
}

// === gateway ===

/// protogate on an ephemeral port.
pub struct Gateway {
    pub addr: SocketAddr,
    pub client: Client,
    /// The gateway serving, and how it is reloaded.
    pub live: Arc<protogate::reload::Live>,
    /// The access log's file, unless the config names its own.
    access_log: PathBuf,
    _access_log_file: Option<tempfile::TempPath>,
    _shutdown: oneshot::Sender<()>,
}

impl Gateway {
    /// A gateway with the test fixtures, `upstream` as the default upstream, and `extra` TOML
    /// appended to the config (e.g. a `[json]` section).
    pub async fn start(upstream: &str, extra: &str) -> Gateway {
        let upstreams = format!("[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [{upstream:?}]\n");
        Gateway::with_config(config(extra, &upstreams)).await
    }

    pub async fn with_config(mut config: Config) -> Gateway {
        // The access log goes to a file of the test's (not the test runner's stdout).
        let file = config.access_log.path.is_none().then(|| tempfile::NamedTempFile::new().unwrap().into_temp_path());
        if let Some(file) = &file {
            config.access_log.path = Some(file.to_path_buf());
        }
        Gateway::serve(config, None, file).await
    }

    /// A gateway configured by the TOML file at `path`, which `POST /reload` (and, with
    /// `descriptors.watch`, any change to it) reads again.
    pub async fn with_config_file(path: &std::path::Path) -> Gateway {
        let log = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let log_path = log.to_path_buf();
        let read = move |path: &std::path::Path| {
            let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            let mut config = Config::from_toml(&text).map_err(|e| e.message)?;
            config.access_log.path = Some(log_path.clone());
            Ok::<Config, String>(config)
        };
        let config = read(path).unwrap();
        let file = path.to_owned();
        Gateway::serve(config, Some((path.to_owned(), Box::new(move || read(&file)))), Some(log)).await
    }

    async fn serve(
        config: Config,
        source: Option<(PathBuf, protogate::reload::ConfigSource)>,
        file: Option<tempfile::TempPath>,
    ) -> Gateway {
        let access_log = config.access_log.path.clone().unwrap_or_default();
        let gateway = protogate::gateway::Gateway::build(&config).unwrap_or_else(|e| panic!("gateway build: {e:?}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let watch = config.descriptors.watch;
        let (live, config_file) = match source {
            Some((path, source)) => (protogate::reload::Live::with_source(gateway, config, source), Some(path)),
            None => (protogate::reload::Live::new(gateway, config), None),
        };
        if watch {
            protogate::reload::watch(&live, config_file.as_deref()).unwrap();
        }
        tokio::spawn(protogate::server::serve(listener, live.clone(), async {
            let _ = rx.await;
        }));
        Gateway { addr, client: Client::new(addr), live, access_log, _access_log_file: file, _shutdown: tx }
    }

    /// Starts the admin listener on an ephemeral port; a client for it.
    pub async fn admin(&self) -> Client {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let public = protogate::server::router(self.live.clone());
        tokio::spawn(protogate::admin::serve(listener, self.live.clone(), public, std::future::pending()));
        Client::new(addr)
    }

    /// The access log's lines, once there are at least `n` (polling, at most 5 s: lines are
    /// written by a background thread when each response ends).
    pub async fn access_log(&self, n: usize) -> Vec<Value> {
        let mut lines = Vec::new();
        for _ in 0..500 {
            let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
            lines = text.lines().map(|line| serde_json::from_str(line).unwrap_or(Value::String(line.into()))).collect();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} access log lines after 5 s, waited for {n}: {lines:?}", lines.len());
    }

    /// The gateway serving now.
    pub fn current(&self) -> Arc<protogate::gateway::Gateway> {
        self.live.gateway()
    }

    /// Waits (polling, at most 5 s) until no stream is in progress in the gateway.
    pub async fn wait_for_no_streams(&self) {
        for _ in 0..500 {
            if self.current().streams().get() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} streams still in progress after 5 s", self.current().streams().get());
    }
}

/// Steady load: `clients` loops sending `GET path` until stopped (each bounded to 200,000
/// requests), counting the requests answered and keeping every non-200 answer.
pub struct Traffic {
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Traffic {
    pub fn start(client: &Client, path: &'static str, clients: usize) -> Traffic {
        let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (client, sent, failed, stop) = (client.clone(), sent.clone(), failed.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    for _ in 0..200_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let response = client.request("GET", path).send().await;
                        if response.status != 200 {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.push(format!("{} {}", response.status, String::from_utf8_lossy(&response.body)));
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    failures
                })
            })
            .collect();
        Traffic { sent, failed, stop, tasks }
    }

    /// Requests answered so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests answered with another status than 200 so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits (at most 30 s) until `n` more requests have been answered.
    pub async fn run_for(&self, n: usize) {
        let target = self.sent() + n;
        for _ in 0..3000 {
            if self.sent() >= target {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} requests answered in 30 s, waited for {target}", self.sent());
    }

    /// Stops the loops; the requests answered and the failures.
    pub async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.unwrap());
        }
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

/// A `[jwt]` section that verifies HS256 tokens signed with `secret`.
pub fn hs256_jwt(secret: &str) -> String {
    format!("[jwt]\nalgorithms = [\"HS256\"]\nkeys = [{{ alg = \"HS256\", secret = \"{secret}\" }}]\n")
}

/// An `Authorization` value: a bearer token for `subject`, valid for five minutes, signed
/// HS256 with `secret`.
pub fn hs256_bearer(secret: &str, subject: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
    let claims = serde_json::json!({"sub": subject, "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    format!("Bearer {}", jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap())
}

/// A scripted upstream serving the example services' methods, and a gateway over their
/// descriptors with `extra` appended to its config.
pub async fn start_examples(extra: &str) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gateway = Gateway::with_config(Config::from_toml(&examples_config(&upstream.url(), extra)).unwrap()).await;
    (upstream, gateway)
}

/// The config of [`start_examples`], its upstream at `upstream`.
pub fn examples_config(upstream: &str, extra: &str) -> String {
    format!(
        "[descriptors]\npaths = [{:?}]\n[[upstreams]]\nname = \"services\"\nservices = [\"*\"]\nendpoints = [{upstream:?}]\n{extra}",
        example_descriptors().display().to_string()
    )
}

/// A config over the test fixtures: `top` (top-level keys and sections) then `upstreams`
/// (`[[upstreams]]` tables).
pub fn config(top: &str, upstreams: &str) -> Config {
    let toml =
        format!("{top}\n[descriptors]\npaths = [{:?}]\n{upstreams}", testing_descriptors().display().to_string());
    Config::from_toml(&toml).unwrap()
}

/// An upstream and a gateway in front of it: most tests need exactly this.
pub struct Harness {
    pub upstream: Upstream,
    pub gateway: Gateway,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with("").await
    }

    pub async fn start_with(extra_config: &str) -> Harness {
        let upstream = Upstream::start().await;
        let gateway = Gateway::start(&upstream.url(), extra_config).await;
        Harness { upstream, gateway }
    }

    pub fn request(&self, method: &str, path: &str) -> RequestBuilder {
        self.gateway.client.request(method, path)
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request("GET", path).send().await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> TestResponse {
        self.request("POST", path).json(&body).send().await
    }
}

/// A TLS connection tonic can serve.
struct TlsIo(tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

// === redis ===

/// A real redis-server on a free loopback port, with nothing saved to disk; killed when dropped.
pub struct Redis {
    pub port: u16,
    _process: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Redis::start_on(port).await
    }

    /// A redis-server on `port` (one that was stopped there, say).
    pub async fn start_on(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let process = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        // Ready when it answers PING; bounded.
        for _ in 0..200 {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await {
                let _ = stream.write_all(b"PING\r\n").await;
                let mut reply = [0u8; 7];
                if stream.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n" {
                    return Redis { port, _process: process, _dir: dir };
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not answer PING on port {port} within 5 s");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

// === client ===

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;
type HyperClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>;

/// An HTTP/1.1 client bound to one address.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    inner: HyperClient,
}

pub struct RequestBuilder {
    client: Client,
    request: http::request::Builder,
    body: Bytes,
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        let inner = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        Client { addr, inner }
    }

    /// A client speaking HTTP/2 over cleartext (prior knowledge), as gRPC clients do.
    pub fn http2(addr: SocketAddr) -> Client {
        let inner = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        Client { addr, inner }
    }

    pub fn request(&self, method: &str, path: &str) -> RequestBuilder {
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(format!("http://{}{path}", self.addr));
        RequestBuilder { client: self.clone(), request, body: Bytes::new() }
    }

    /// Sends raw bytes on a new connection, closes the sending side, and returns everything
    /// read until the server closes the connection or 5 s pass.
    pub async fn raw(&self, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl RequestBuilder {
    pub fn header(mut self, name: &str, value: &str) -> RequestBuilder {
        self.request = self.request.header(name, value);
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> RequestBuilder {
        self.header("content-type", "application/json").body(serde_json::to_vec(body).unwrap())
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> RequestBuilder {
        self.body = body.into();
        self
    }

    pub async fn send(self) -> TestResponse {
        let body = Full::new(self.body.clone()).boxed();
        let response = self.send_body(body).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        TestResponse { status: parts.status, headers: parts.headers, body }
    }

    /// Sends the request and reads the whole answer: an error (not a panic) if the request
    /// cannot be sent or the answer breaks off.
    pub async fn try_send(self) -> Result<TestResponse, String> {
        let request = self.request.body(Full::new(self.body).boxed()).map_err(|e| e.to_string())?;
        let response = self.client.inner.request(request).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
        Ok(TestResponse { status: parts.status, headers: parts.headers, body })
    }

    /// Sends the request and reads the whole body: an error if the response breaks off,
    /// before its headers or within its body.
    pub async fn send_body_result(self) -> Result<Bytes, String> {
        let request = self.request.body(Full::new(self.body).boxed()).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.inner.request(request))
            .await
            .expect("the gateway answers within 10 s")
            .map_err(|e| format!("{e:?}"))?;
        response.into_body().collect().await.map(http_body_util::Collected::to_bytes).map_err(|e| format!("{e:?}"))
    }

    /// Sends the request and returns once the response headers are in; the body is read as
    /// it arrives.
    pub async fn send_streaming(self) -> StreamingResponse {
        let body = Full::new(self.body.clone()).boxed();
        StreamingResponse::new(self.send_body(body).await)
    }

    /// Sends the request with a body that is whatever `chunks` yields, as it yields it
    /// (chunked transfer encoding); returns once the response headers are in.
    pub async fn send_chunks(self, chunks: tokio::sync::mpsc::Receiver<Bytes>) -> StreamingResponse {
        let frames = tokio_stream::wrappers::ReceiverStream::new(chunks).map(|chunk| Ok(Frame::data(chunk)));
        StreamingResponse::new(self.send_body(BodyExt::boxed(http_body_util::StreamBody::new(frames))).await)
    }

    async fn send_body(self, body: TestBody) -> Response<hyper::body::Incoming> {
        let request = self.request.body(body).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.client.inner.request(request))
            .await
            .expect("the gateway answers within 10 s")
            .expect("the request reaches the gateway")
    }
}

/// A response whose body is read as it arrives.
pub struct StreamingResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    ended: bool,
}

impl StreamingResponse {
    fn new(response: Response<hyper::body::Incoming>) -> StreamingResponse {
        let (parts, body) = response.into_parts();
        StreamingResponse {
            status: parts.status,
            headers: parts.headers,
            body,
            buffer: Vec::new(),
            trailers: None,
            ended: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The next line of the body, without its newline; `None` at the end. Panics if none
    /// arrives within 5 s.
    pub async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(String::from_utf8(line[..end].to_vec()).unwrap());
            }
            if self.ended {
                return (!self.buffer.is_empty()).then(|| String::from_utf8(std::mem::take(&mut self.buffer)).unwrap());
            }
            self.read_frame().await;
        }
    }

    /// The next NDJSON line as JSON.
    pub async fn next_json(&mut self) -> Option<Value> {
        self.next_line().await.map(|line| serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")))
    }

    /// Everything left in the body, as text.
    pub async fn rest(&mut self) -> String {
        while !self.ended {
            self.read_frame().await;
        }
        String::from_utf8(std::mem::take(&mut self.buffer)).unwrap()
    }

    async fn read_frame(&mut self) {
        let frame =
            tokio::time::timeout(Duration::from_secs(5), self.body.frame()).await.expect("the body went on within 5 s");
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => self.buffer.extend_from_slice(&data),
                Err(frame) => self.trailers = frame.into_trailers().ok(),
            },
            Some(Err(e)) => panic!("the body failed: {e}"),
            None => self.ended = true,
        }
    }
}

impl TestResponse {
    /// The body as text (lossy), for messages and byte-exact checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts a `google.rpc.Status` JSON error with this HTTP status and code, whose last
    /// detail is the `google.rpc.RequestInfo` carrying the `X-Request-Id` it was answered
    /// with; returns the body without that detail.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: i32) -> Value {
        let mut json = self.json();
        assert_eq!(self.status.as_u16(), status, "{json}");
        assert_eq!(json["code"], code, "{json}");
        assert!(json["message"].is_string(), "{json}");
        assert!(json["details"].is_array(), "{json}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        let request_id = self.header("x-request-id").expect("every answer carries its request id");
        assert_eq!(take_request_info(&mut json).as_deref(), Some(request_id), "{json}");
        json
    }
}

/// The addresses a `protogate serve` process announces on its diagnostic log (`lines`, its
/// stderr): the listener's, and the admin listener's when it has one. Reads until the
/// listener's line, at most 20 s.
pub async fn announced_addresses(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
) -> (String, Option<String>) {
    let announced = async {
        let mut admin = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("admin endpoints on http://").nth(1) {
                admin = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(addr) = line.split("listening on http://").nth(1) {
                return (addr.trim().to_owned(), admin);
            }
        }
        panic!("serve exited before listening");
    };
    tokio::time::timeout(Duration::from_secs(20), announced).await.expect("serve starts within 20 s")
}

/// Runs the maintained validators (openapi-spec-validator, jsonschema) over `document`, and
/// over each `(pointer, instance)`: a real answer and the schema in the document it must fit.
pub fn validate_openapi(document: &serde_json::Value, cases: &[(String, serde_json::Value)]) {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("openapi.json");
    std::fs::write(&doc, serde_json::to_vec(document).unwrap()).unwrap();
    let cases: Vec<serde_json::Value> =
        cases.iter().map(|(pointer, instance)| serde_json::json!({"pointer": pointer, "instance": instance})).collect();
    let cases_file = dir.path().join("cases.json");
    std::fs::write(&cases_file, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/openapi/validate.py");
    let out =
        std::process::Command::new("python3").arg(script).arg(&doc).arg(&cases_file).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the validators are missing: pip install openapi-spec-validator jsonschema (scripts/test does)\n{stderr}"
    );
    assert!(out.status.success() && stdout.trim() == "ok", "{stdout}{stderr}");
}
