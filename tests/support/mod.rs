//! The integration-test harness: real servers on ephemeral loopback ports.
//!
//! - [`Upstream`]: a gRPC server (tonic's transport) that answers every method of the test
//!   fixtures and examples, records each call (method, request JSON, metadata) and replies as the test
//!   scripts it: a message, a status with details, extra headers and trailers, a delay.
//! - [`Gateway`]: protogate serving HTTP on `127.0.0.1:0` in front of it.
//! - [`Client`]: plain HTTP/1.1 requests, and raw bytes for what no client would send.
//!
//! Everything shuts down when dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
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
}

type Script = Box<dyn Fn(&Call) -> Reply + Send + Sync>;

struct UpstreamState {
    pool: DescriptorPool,
    calls: Mutex<Vec<Call>>,
    called: Notify,
    script: Mutex<Option<Script>>,
    queued: Mutex<VecDeque<Reply>>,
}

/// A scripted gRPC upstream on an ephemeral port.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    _shutdown: oneshot::Sender<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Upstream::serve(listener).await
    }

    /// Serves on an already bound listener (to restart on a known port).
    pub async fn serve(listener: TcpListener) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState {
            pool: pool(),
            calls: Mutex::new(Vec::new()),
            called: Notify::new(),
            script: Mutex::new(None),
            queued: Mutex::new(VecDeque::new()),
        });
        let handler_state = state.clone();
        let router = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
            let state = handler_state.clone();
            async move { Ok::<_, Infallible>(answer(state, request).await) }
        });
        let (tx, rx) = oneshot::channel();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::from(router))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                }),
        );
        Upstream { addr, state, _shutdown: tx }
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
            let call = Call { path, request: request_json, metadata };
            let queued = state.queued.lock().unwrap().pop_front();
            let reply = queued.unwrap_or_else(|| match &*state.script.lock().unwrap() {
                Some(script) => script(&call),
                None => Reply::default(),
            });
            state.calls.lock().unwrap().push(call);
            state.called.notify_waiters();
            tokio::time::sleep(reply.delay).await;
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
    // tonic has no API for trailers on success: add them to its final trailers frame.
    response.map(move |body| {
        let extra = reply_trailers.clone();
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

fn insert_metadata(metadata: &mut tonic::metadata::MetadataMap, key: &str, value: &str) {
    if key.ends_with("-bin") {
        let key = tonic::metadata::BinaryMetadataKey::from_bytes(key.as_bytes()).unwrap();
        metadata.append_bin(key, tonic::metadata::BinaryMetadataValue::from_bytes(value.as_bytes()));
    } else {
        let key = tonic::metadata::AsciiMetadataKey::from_bytes(key.as_bytes()).unwrap();
        metadata.append(key, value.parse().unwrap());
    }
}

// === gateway ===

/// protogate on an ephemeral port.
pub struct Gateway {
    pub addr: SocketAddr,
    pub client: Client,
    _shutdown: oneshot::Sender<()>,
}

impl Gateway {
    /// A gateway with the test fixtures, `upstream` as the default upstream, and `extra` TOML
    /// appended to the config (e.g. a `[json]` section).
    pub async fn start(upstream: &str, extra: &str) -> Gateway {
        let upstreams = format!("[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [{upstream:?}]\n");
        Gateway::with_config(config(extra, &upstreams)).await
    }

    pub async fn with_config(config: Config) -> Gateway {
        let gateway = protogate::gateway::Gateway::build(&config).unwrap_or_else(|e| panic!("gateway build: {e:?}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(protogate::server::serve(listener, Arc::new(gateway), async {
            let _ = rx.await;
        }));
        Gateway { addr, client: Client::new(addr), _shutdown: tx }
    }
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

// === client ===

type HyperClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client bound to one address.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
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
        let request = self.request.body(Full::new(self.body)).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.inner.request(request))
            .await
            .expect("the gateway answers within 10 s")
            .expect("the request reaches the gateway");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        TestResponse { status: parts.status, headers: parts.headers, body }
    }
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts a `google.rpc.Status` JSON error with this HTTP status and code; returns it.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: i32) -> Value {
        let json = self.json();
        assert_eq!(self.status.as_u16(), status, "{json}");
        assert_eq!(json["code"], code, "{json}");
        assert!(json["message"].is_string(), "{json}");
        assert!(json["details"].is_array(), "{json}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        json
    }
}
