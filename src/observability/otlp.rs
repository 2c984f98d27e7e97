//! OpenTelemetry span export over OTLP/gRPC (cargo feature `otlp`).
//!
//! The gateway's span of each sampled request goes to the collector at
//! `[tracing] otlp_endpoint` with the ids its trace context chose — the span the upstream
//! sees as its parent is the span exported — so spans are handed to the SDK's batch processor
//! finished, rather than created through a tracer (which would pick ids of its own). The batch
//! processor queues and sends them from its own thread; a collector that is down costs
//! dropped spans, never slower requests.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};

use super::trace_context::TraceContext;
use crate::config::TracingConfig;

/// The span exporter: a batch processor in front of an OTLP/gRPC client.
#[derive(Debug)]
pub struct SpanExport {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
}

/// A request's span, finished.
#[derive(Debug)]
pub struct FinishedSpan<'a> {
    /// Its place in the trace.
    pub context: &'a TraceContext,
    /// `GET /v1/users/{id}`, say.
    pub name: String,
    /// When the request arrived.
    pub start: SystemTime,
    /// When its response ended.
    pub end: SystemTime,
    /// OpenTelemetry semantic-convention attributes.
    pub attributes: Vec<KeyValue>,
    /// An error description, for 5xx answers.
    pub error: Option<String>,
}

impl SpanExport {
    /// Starts exporting to `endpoint`. Must run inside a tokio runtime: the gRPC client's
    /// connection is driven by it.
    pub fn start(config: &TracingConfig, endpoint: &str) -> Result<SpanExport, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
        let batch = BatchConfigBuilder::default().with_scheduled_delay(config.batch_delay).build();
        let mut processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
        processor.set_resource(&Resource::builder().with_service_name(config.service_name.clone()).build());
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
        let span_id = opentelemetry::SpanId::from_bytes(context.span_id.0);
        let parent =
            context.parent_id.map_or(opentelemetry::SpanId::INVALID, |p| opentelemetry::SpanId::from_bytes(p.0));
        let status = match span.error {
            Some(description) => Status::Error { description: Cow::Owned(description) },
            None => Status::Unset,
        };
        self.processor.on_end(SpanData {
            span_context: SpanContext::new(trace_id, span_id, flags, false, state),
            parent_span_id: parent,
            parent_span_is_remote: context.parent_id.is_some(),
            span_kind: SpanKind::Server,
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
