//! An OpenTelemetry collector's trace receivers, OTLP/gRPC and OTLP/HTTP (protobuf), keeping
//! every span they receive: the tests read what the gateway exported as a collector would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A received span with its resource's attributes.
pub type Received = (Vec<KeyValue>, Span);

/// The spans received so far, by either transport.
#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    fn keep(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| (resource.clone(), span)));
            }
        }
    }

    /// Serves OTLP/gRPC on a loopback port; its endpoint URL.
    pub async fn start_grpc(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        format!("http://{addr}")
    }

    /// Serves OTLP/HTTP (`POST /v1/traces`, `application/x-protobuf`) on a loopback port; its
    /// base URL (the signal-agnostic endpoint, without `/v1/traces`).
    pub async fn start_http(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = self.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| async move {
                let protobuf = headers.get("content-type").is_some_and(|v| v == "application/x-protobuf");
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) if protobuf => {
                        collector.keep(request);
                        let answer = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
                        (http::StatusCode::OK, [("content-type", "application/x-protobuf")], answer)
                    }
                    _ => (http::StatusCode::BAD_REQUEST, [("content-type", "text/plain")], b"not OTLP".to_vec()),
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// Waits (polling, at most 10 s) for `n` spans of `trace_id`; they are returned.
    pub async fn spans_of(&self, trace_id: &[u8], n: usize) -> Vec<Received> {
        let mut found = Vec::new();
        for _ in 0..1000 {
            found = self.spans.lock().unwrap().iter().filter(|(_, s)| s.trace_id == trace_id).cloned().collect();
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} spans of trace {trace_id:02x?} arrived within 10 s, waited for {n}", found.len());
    }

    /// Every span received.
    pub fn all(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

/// The value of attribute `key`.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
}

/// A string attribute value.
pub fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue::StringValue(s.to_owned()))
}

/// An integer attribute value.
pub fn int(i: i64) -> Option<AnyValue> {
    Some(AnyValue::IntValue(i))
}

/// Bytes as lowercase hex, as `traceparent` writes ids.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex as bytes.
pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap()).collect()
}
