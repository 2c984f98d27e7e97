//! What the gateway learns about one request while it handles it — the route, the upstream,
//! how long the upstream took, a stream's final status — for the access log line, the
//! metrics and the span written when the response ends.
//!
//! The observe layer puts an [`Exchange`] into the request's extensions; the pipeline steps
//! note what they find in it. A stream's body outlives the handler, so the record is shared.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use http::uri::PathAndQuery;
use http::{Extensions, HeaderMap};
use tonic::Code;

use super::metrics::RouteSeries;
use super::trace_context::{SpanId, TraceContext};
use crate::upstream::{UnaryResponse, UpstreamError};

/// The labels of one route, made once when the gateway is built: metrics and logs name
/// routes by template, never by the path a client sent.
#[derive(Debug)]
pub struct RouteLabels {
    /// The path template, e.g. `/v1/users/{id}`.
    pub route: Arc<str>,
    /// `pkg.Service/Method`.
    pub grpc_method: Arc<str>,
    /// The upstream's name, when one serves the route.
    pub upstream: Option<Arc<str>>,
    /// The route's series in the metrics, kept once found.
    pub series: RouteSeries,
}

impl RouteLabels {
    /// The labels of a route: its template, its gRPC method(s) and its upstream.
    pub fn new(route: Arc<str>, grpc_method: Arc<str>, upstream: Option<Arc<str>>) -> RouteLabels {
        RouteLabels { route, grpc_method, upstream, series: RouteSeries::default() }
    }
}

/// One request's record, shared between the observe layer and the pipeline.
#[derive(Debug, Clone, Default)]
pub struct Exchange(Arc<Mutex<Record>>);

/// What is known so far.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// The matched route.
    pub route: Option<Arc<RouteLabels>>,
    /// The upstream endpoint the call went to.
    pub endpoint: Option<Arc<str>>,
    /// How long the upstream took to answer (unary calls) or to send its response headers
    /// (streams).
    pub upstream_elapsed: Option<Duration>,
    /// A stream's final gRPC status, once it ended.
    pub grpc_status: Option<Code>,
    /// Why a stream ended with an error.
    pub stream_error: Option<String>,
    /// The `RateLimit-Policy` and `RateLimit` headers of the limits the request passed.
    pub rate_limits: Option<http::HeaderMap>,
    /// The request's trace, when its spans are exported (sampled, and an exporter set).
    pub trace: Option<TraceContext>,
    /// The upstream calls made, for their CLIENT spans (kept only when spans are exported).
    pub calls: Vec<Call>,
}

/// One upstream call's span: its id, the `traceparent` parent the upstream sees.
#[derive(Debug, Clone, Copy)]
pub struct CallSpan {
    /// The span's id (all zeros when the span is not exported).
    pub id: SpanId,
    /// When the call started.
    pub start: SystemTime,
    started: Instant,
}

impl CallSpan {
    /// A call starting now; its id is drawn only if its span is exported (all zeros, the
    /// spec's invalid id, names no span).
    fn now() -> CallSpan {
        CallSpan { id: SpanId([0; 8]), start: SystemTime::now(), started: Instant::now() }
    }

    /// How long since the call started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// An upstream call made, as its CLIENT span tells it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Its span.
    pub span: CallSpan,
    /// `/pkg.Service/Method`.
    pub grpc_path: PathAndQuery,
    /// The endpoint that took it, once known.
    pub endpoint: Option<Arc<str>>,
    /// When it ended; a stream's call ends with the request.
    pub end: Option<SystemTime>,
    /// How it ended.
    pub code: Option<Code>,
}

/// The gRPC code an upstream failure stands for.
pub fn failure_code(error: &UpstreamError) -> Code {
    match error {
        UpstreamError::Status(reply) => reply.status.code(),
        UpstreamError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        UpstreamError::NotConfigured { .. } => Code::Unimplemented,
        UpstreamError::Unreachable { .. }
        | UpstreamError::NoHealthyEndpoint { .. }
        | UpstreamError::Overloaded { .. } => Code::Unavailable,
    }
}

impl Exchange {
    /// The record of a request whose spans are exported in `trace`: its calls are kept, each
    /// a span of its own.
    pub fn traced(trace: TraceContext) -> Exchange {
        Exchange(Arc::new(Mutex::new(Record { trace: Some(trace), ..Record::default() })))
    }

    /// An upstream call to `grpc_path` begins. When its span is exported, `metadata` is given
    /// the `traceparent` naming the call's own span as the upstream's parent; otherwise the
    /// request's span stays the parent (no span of the call exists anywhere).
    pub fn start_call(&self, grpc_path: &PathAndQuery, metadata: &mut HeaderMap) -> CallSpan {
        let mut span = CallSpan::now();
        self.update(|record| {
            let Some(trace) = &record.trace else { return };
            span.id = SpanId::random();
            trace.apply_as(span.id, metadata);
            let call = Call { span, grpc_path: grpc_path.clone(), endpoint: None, end: None, code: None };
            record.calls.push(call);
        });
        span
    }

    /// Call `span` was taken by `endpoint` (a stream's call goes on).
    pub fn call_answered(&self, span: CallSpan, endpoint: Option<&Arc<str>>) {
        self.update_call(span, |call| call.endpoint = endpoint.cloned());
    }

    /// Call `span` ended with `code`, at `endpoint` when known.
    pub fn call_ended(&self, span: CallSpan, endpoint: Option<&Arc<str>>, code: Code) {
        let end = span.start + span.elapsed();
        self.update_call(span, |call| {
            call.endpoint = endpoint.cloned().or(call.endpoint.take());
            call.end = Some(end);
            call.code = Some(code);
        });
    }

    fn update_call(&self, span: CallSpan, f: impl FnOnce(&mut Call)) {
        self.update(|record| {
            if let Some(call) = record.calls.iter_mut().find(|c| c.span.id == span.id) {
                f(call);
            }
        });
    }

    /// The request's record, or a detached one when no observe layer runs (a router driven
    /// without the layers, say): notes then go nowhere.
    pub fn of(extensions: &Extensions) -> Exchange {
        extensions.get::<Exchange>().cloned().unwrap_or_default()
    }

    /// The rate limits the request passed, as response headers.
    pub fn rate_limits(&self, headers: http::HeaderMap) {
        self.update(|record| record.rate_limits = Some(headers));
    }

    /// Takes the rate limit headers noted, for the response.
    pub fn take_rate_limits(&self) -> Option<http::HeaderMap> {
        self.0.lock().ok()?.rate_limits.take()
    }

    /// The route matched.
    pub fn matched(&self, labels: &Arc<RouteLabels>) {
        self.update(|record| record.route = Some(labels.clone()));
    }

    /// The upstream answered (or failed) after `elapsed`, from `endpoint` when known.
    pub fn upstream_answered(&self, elapsed: Duration, endpoint: Option<&Arc<str>>) {
        self.update(|record| {
            record.upstream_elapsed = Some(elapsed);
            record.endpoint = endpoint.cloned();
        });
    }

    /// Runs call `span`, answered with one message, noting how long it took, which endpoint
    /// answered and how it ended.
    ///
    /// A map over the call rather than an `async fn`: an `async fn` keeps a future argument
    /// twice in its own state (as the argument, and as the value it awaits), and this one
    /// wraps every unary call.
    pub fn time_call<'a>(
        &'a self,
        span: CallSpan,
        call: impl Future<Output = Result<UnaryResponse, UpstreamError>> + 'a,
    ) -> impl Future<Output = Result<UnaryResponse, UpstreamError>> + 'a {
        call.map(move |reply| {
            let endpoint = reply.as_ref().map_or_else(UpstreamError::endpoint, |r| Some(&r.endpoint));
            self.upstream_answered(span.elapsed(), endpoint);
            self.call_ended(span, endpoint, reply.as_ref().map_or_else(failure_code, |_| Code::Ok));
            reply
        })
    }

    /// A stream ended with `code` (and `error`'s message when it failed): so did its call.
    pub fn stream_ended(&self, code: Code, error: Option<String>) {
        let end = SystemTime::now();
        self.update(|record| {
            record.grpc_status = Some(code);
            record.stream_error = error;
            for call in record.calls.iter_mut().filter(|call| call.end.is_none()) {
                call.end = Some(end);
                call.code = Some(code);
            }
        });
    }

    /// A copy of what is known.
    pub fn snapshot(&self) -> Record {
        self.0.lock().map(|record| record.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Record)) {
        if let Ok(mut record) = self.0.lock() {
            f(&mut record);
        }
    }
}
