//! OpenTelemetry span export over OTLP, gRPC or HTTP (cargo feature `otlp`).
//!
//! Each sampled request is a SERVER span, and each upstream call it made a CLIENT span below
//! it, sent to the collector at `[tracing] otlp_endpoint` with the ids the gateway chose: the
//! `traceparent` an upstream receives names its call's CLIENT span. So spans are handed to the
//! SDK's batch processor finished, rather than created through a tracer (which would pick ids
//! of its own). The batch processor queues and sends them from its own thread; a collector
//! that is down costs dropped spans, never slower requests.

use std::borrow::Cow;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};

use super::trace_context::TraceContext;
use crate::config::{OtlpProtocol, TracingConfig};

/// How long one export over HTTP may take, and the most of a collector's answer read.
const HTTP_EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_COLLECTOR_ANSWER: usize = 64 * 1024;

/// The span exporter: a batch processor in front of an OTLP/gRPC client.
#[derive(Debug)]
pub struct SpanExport {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
}

/// A finished span: a request's (SERVER) or one of its upstream calls' (CLIENT).
#[derive(Debug)]
pub struct FinishedSpan<'a> {
    /// The request's place in the trace.
    pub context: &'a TraceContext,
    /// A CLIENT span's own id (its parent is the request's span); `None` for the request's.
    pub call: Option<crate::observability::trace_context::SpanId>,
    /// `GET /v1/users/{id}`, or `example.users.v1.UserService/GetUser` for a call.
    pub name: String,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// OpenTelemetry semantic-convention attributes.
    pub attributes: Vec<KeyValue>,
    /// An error description: the span failed.
    pub error: Option<String>,
}

impl SpanExport {
    /// Starts exporting to `endpoint`. Must run inside a tokio runtime: the gRPC client's
    /// connection is driven by it.
    pub fn start(config: &TracingConfig, endpoint: &str) -> Result<SpanExport, String> {
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let exporter = match config.otlp_protocol.unwrap_or_default() {
            OtlpProtocol::Grpc => builder.with_tonic().with_endpoint(endpoint).build(),
            OtlpProtocol::HttpProtobuf => builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(TokioHttpClient::new()?)
                .with_endpoint(endpoint)
                .build(),
        }
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
        let batch = BatchConfigBuilder::default().with_scheduled_delay(config.batch_delay).build();
        let mut processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
        processor.set_resource(&Resource::builder().with_service_name(config.service_name().to_owned()).build());
        let scope = InstrumentationScope::builder("protogate").with_version(env!("CARGO_PKG_VERSION")).build();
        Ok(SpanExport { processor, scope })
    }

    /// Queues a finished span for export.
    pub fn export(&self, span: FinishedSpan<'_>) {
        let context = span.context;
        let flags = if context.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let state = context
            .tracestate
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<TraceState>().ok())
            .unwrap_or_default();
        let trace_id = opentelemetry::TraceId::from_bytes(context.trace_id.0);
        let request_span = opentelemetry::SpanId::from_bytes(context.span_id.0);
        // A call's span sits below the request's; the request's below the client's, if any.
        let (span_id, parent, kind, remote_parent) = match span.call {
            Some(call) => (opentelemetry::SpanId::from_bytes(call.0), request_span, SpanKind::Client, false),
            None => (
                request_span,
                context.parent_id.map_or(opentelemetry::SpanId::INVALID, |p| opentelemetry::SpanId::from_bytes(p.0)),
                SpanKind::Server,
                context.parent_id.is_some(),
            ),
        };
        let status = match span.error {
            Some(description) => Status::Error { description: Cow::Owned(description) },
            None => Status::Unset,
        };
        self.processor.on_end(SpanData {
            span_context: SpanContext::new(trace_id, span_id, flags, false, state),
            parent_span_id: parent,
            parent_span_is_remote: remote_parent,
            span_kind: kind,
            name: Cow::Owned(span.name),
            start_time: span.start,
            end_time: span.end,
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Sends what is queued and stops the exporter's thread.
    pub fn shutdown(&self) {
        if let Err(e) = self.processor.shutdown() {
            tracing::warn!("OTLP exporter: {e}");
        }
    }
}

/// OTLP/HTTP's client: the gateway's hyper client (the connector JWKS fetches use too),
/// its requests run on the gateway's runtime whatever thread the exporter calls from.
#[derive(Debug, Clone)]
struct TokioHttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl TokioHttpClient {
    /// Must be called inside the tokio runtime the exports will run on.
    fn new() -> Result<TokioHttpClient, String> {
        let https = crate::tls::https_connector()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        Ok(TokioHttpClient { client: Client::builder(TokioExecutor::new()).build(https), runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for TokioHttpClient {
    async fn send_bytes(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_COLLECTOR_ANSWER).collect().await?.to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        // The timer, like the connection, needs the runtime: both are made inside the task.
        let task = self.runtime.spawn(async move { tokio::time::timeout(HTTP_EXPORT_TIMEOUT, exchange).await });
        match task.await? {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {HTTP_EXPORT_TIMEOUT:?}").into()),
        }
    }
}
