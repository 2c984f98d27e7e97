//! What the gateway learns about one request while it handles it — the route, the upstream,
//! how long the upstream took, a stream's final status — for the access log line, the
//! metrics and the span written when the response ends.
//!
//! The observe layer puts an [`Exchange`] into the request's extensions; the pipeline steps
//! note what they find in it. A stream's body outlives the handler, so the record is shared.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Extensions;
use tonic::Code;

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
}

impl Exchange {
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

    /// Runs a unary-answered upstream call, noting how long it took and which endpoint
    /// answered.
    pub async fn time_call(
        &self,
        call: impl Future<Output = Result<UnaryResponse, UpstreamError>>,
    ) -> Result<UnaryResponse, UpstreamError> {
        let started = Instant::now();
        let reply = call.await;
        self.upstream_answered(
            started.elapsed(),
            reply.as_ref().map_or_else(UpstreamError::endpoint, |r| Some(&r.endpoint)),
        );
        reply
    }

    /// A stream ended with `code` (and `error`'s message when it failed).
    pub fn stream_ended(&self, code: Code, error: Option<String>) {
        self.update(|record| {
            record.grpc_status = Some(code);
            record.stream_error = error;
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
