//! Following a request: its correlation id and trace context, the access log line, the
//! metrics and the exported span — all written once, when its response ends.
//!
//! The observe layer ([`crate::layers::observe`]) calls [`Observer::begin`] as a request
//! arrives and gets a [`Watch`]; the pipeline notes the route, the upstream and a stream's
//! final status in the request's [`Exchange`]; when the response body ends (or the client
//! leaves, or the handler is dropped), the watch is dropped and [`Observer`] writes
//! everything out.

pub mod access_log;
pub mod exchange;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod process;
pub mod streams;
pub mod trace_context;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::header::USER_AGENT;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use tonic::Code;

use crate::config::Config;
use crate::error::GatewayError;
use crate::error::RefusalKind;
use crate::metadata::Peer;
use crate::status::code_name;
use crate::upstream::UpstreamError;
use access_log::{AccessLog, Entry};
pub use exchange::{Exchange, Record, RouteLabels};
use metrics::{Label, Metrics, Observation, Refusal, UpstreamCall, UpstreamErrorKind};
pub use streams::{InFlight, StreamCounter};
use trace_context::TraceContext;

/// Everything that records requests, shared by all of them.
#[derive(Debug)]
pub struct Observer {
    request_id: HeaderName,
    sample_ratio: f64,
    metrics: Metrics,
    access_log: Option<AccessLog>,
    #[cfg(feature = "otlp")]
    spans: Option<otlp::SpanExport>,
}

/// One request being watched; dropping it writes the request out.
#[derive(Debug)]
pub struct Watch {
    observer: Arc<Observer>,
    started: Instant,
    start_time: SystemTime,
    request_id: HeaderValue,
    trace: TraceContext,
    method: Method,
    uri: Uri,
    version: http::Version,
    /// `Host` (HTTP/2's `:authority` becomes it), for the span's `server.address`.
    host: Option<HeaderValue>,
    tls: bool,
    client_ip: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
    exchange: Exchange,
    bytes_in: Arc<AtomicU64>,
    span: tracing::Span,
    response: Option<Answered>,
    bytes_out: u64,
    trailer_status: Option<Code>,
    ended: bool,
}

/// What the response said, as it left the handler.
#[derive(Debug)]
struct Answered {
    status: u16,
    error: Option<Arc<GatewayError>>,
    /// A `grpc-status` header (a trailers-only gRPC answer).
    grpc_status: Option<Code>,
}

impl Observer {
    /// The observer for `config`; fails if the access log cannot be opened or the span
    /// exporter cannot start (it must be called inside a tokio runtime).
    pub fn build(config: &Config) -> Result<Observer, Vec<(String, String)>> {
        let mut errors = Vec::new();
        // `Config::validate` reports a header name that does not parse.
        let request_id =
            HeaderName::from_bytes(config.request_id.header.as_bytes()).unwrap_or(crate::metadata::REQUEST_ID);
        let access_log = AccessLog::open(&config.access_log).unwrap_or_else(|e| {
            errors.push(("access_log.path".to_owned(), e));
            None
        });
        #[cfg(feature = "otlp")]
        let spans = match &config.tracing.otlp_endpoint {
            Some(endpoint) => otlp::SpanExport::start(&config.tracing, endpoint).map(Some).unwrap_or_else(|e| {
                errors.push(("tracing.otlp_endpoint".to_owned(), e));
                None
            }),
            None => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Observer {
            request_id,
            sample_ratio: config.tracing.sample_ratio(),
            metrics: Metrics::new(),
            access_log,
            #[cfg(feature = "otlp")]
            spans,
        })
    }

    /// The correlation id header.
    pub fn request_id_header(&self) -> &HeaderName {
        &self.request_id
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether spans are exported (to an OTLP collector).
    fn exports_spans(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.spans.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }

    /// Access log lines dropped so far.
    pub fn access_log_dropped(&self) -> u64 {
        self.access_log.as_ref().map_or(0, AccessLog::dropped)
    }

    /// Sends the spans still queued; called once the listener has stopped.
    pub fn shutdown(&self) {
        #[cfg(feature = "otlp")]
        if let Some(spans) = &self.spans {
            spans.shutdown();
        }
    }

    /// Starts watching a request from `peer` (as the listener resolved it): its trace context
    /// is continued or started (and what goes upstream set in its headers), and an
    /// [`Exchange`] put in its extensions. `bytes_in` is what its body counter will add to.
    pub fn begin<B>(self: &Arc<Self>, request: &mut Request<B>, peer: Peer) -> (Watch, Arc<AtomicU64>) {
        let headers = request.headers();
        let request_id = headers.get(&self.request_id).cloned().unwrap_or(HeaderValue::from_static("-"));
        let trace = TraceContext::continue_or_start(headers, self.sample_ratio);
        let user_agent = headers.get(USER_AGENT).cloned();
        trace.apply(request.headers_mut());
        // Only a trace whose spans are exported needs a record of its calls.
        let exchange = match trace.sampled && self.exports_spans() {
            true => Exchange::traced(trace.clone()),
            false => Exchange::default(),
        };
        request.extensions_mut().insert(exchange.clone());
        // A debug-level span: under the default `info` filter a span per request (made, entered
        // at each poll, its fields formatted) cost 15% of a request's instructions, for
        // context that the access log line already gives. A failed request's warning names
        // the request itself (see `finish`).
        let span = tracing::debug_span!(
            "request",
            id = request_id.to_str().unwrap_or("-"),
            method = %request.method(),
            path = request.uri().path(),
            route = tracing::field::Empty,
            grpc_method = tracing::field::Empty,
            upstream = tracing::field::Empty,
            endpoint = tracing::field::Empty,
            status = tracing::field::Empty,
            grpc_status = tracing::field::Empty,
        );
        self.metrics.request_started();
        let bytes_in = Arc::new(AtomicU64::new(0));
        let watch = Watch {
            observer: self.clone(),
            started: Instant::now(),
            start_time: SystemTime::now(),
            request_id,
            trace,
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            host: request.headers().get(http::header::HOST).cloned(),
            tls: peer.tls,
            client_ip: peer.client,
            user_agent,
            exchange,
            bytes_in: bytes_in.clone(),
            span,
            response: None,
            bytes_out: 0,
            trailer_status: None,
            ended: false,
        };
        (watch, bytes_in)
    }

    fn finish(&self, watch: &Watch) {
        let record = watch.exchange.snapshot();
        let duration = watch.started.elapsed();
        let outcome = Outcome::of(watch, &record);
        let route = record.route.as_deref();
        let span = &watch.span;
        if !span.is_disabled() {
            record_outcome(span, route, &record, &outcome);
        }
        if let Some(error) = &outcome.error {
            if outcome.status >= 500 {
                tracing::warn!(
                    parent: span,
                    request_id = watch.request_id.to_str().unwrap_or("-"),
                    method = watch.method.as_str(),
                    path = watch.uri.path(),
                    route = route.map_or("-", |r| &*r.route),
                    status = outcome.status,
                    "{error}"
                );
            } else {
                tracing::debug!(parent: span, status = outcome.status, "{error}");
            }
        }
        let bytes_in = watch.bytes_in.load(Ordering::Relaxed);
        let upstream_call = route.and_then(|route| {
            let upstream = route.upstream.as_ref()?;
            // A call was made if the upstream answered, or failed in a way only a call can.
            (record.upstream_elapsed.is_some() || outcome.upstream_error.is_some()).then(|| UpstreamCall {
                upstream: Label::from(upstream),
                grpc_method: Label::from(&route.grpc_method),
                elapsed: record.upstream_elapsed,
                code: code_name(outcome.grpc.unwrap_or(Code::Unknown)),
                error: outcome.upstream_error,
            })
        });
        self.metrics.request_ended(&Observation {
            route: route.map(|r| Label::from(&r.route)),
            series: route.map(|r| &r.series),
            method: &watch.method,
            status: outcome.status,
            duration,
            bytes_in,
            bytes_out: watch.bytes_out,
            upstream: upstream_call,
            refusal: outcome.refusal,
        });
        if let Some(log) = &self.access_log {
            let trace_id = watch.trace.trace_id.to_hex();
            log.write(&Entry {
                time: watch.start_time,
                request_id: watch.request_id.to_str().unwrap_or("-"),
                trace_id: &trace_id,
                client_ip: watch.client_ip,
                method: watch.method.as_str(),
                path: watch.uri.path(),
                route: route.map(|r| &*r.route),
                grpc_method: route.map(|r| &*r.grpc_method),
                upstream: route.and_then(|r| r.upstream.as_deref()),
                endpoint: record.endpoint.as_deref(),
                status: outcome.status,
                grpc_status: outcome.grpc.map(code_name),
                bytes_in,
                bytes_out: watch.bytes_out,
                duration_ms: duration,
                upstream_ms: record.upstream_elapsed,
                completed: watch.ended,
                error: outcome.error.as_deref(),
                user_agent: watch.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            });
        }
        self.export_span(watch, &record, &outcome, duration);
    }

    #[cfg(feature = "otlp")]
    fn export_span(&self, watch: &Watch, record: &Record, outcome: &Outcome, duration: Duration) {
        let Some(spans) = &self.spans else { return };
        if !watch.trace.sampled {
            return;
        }
        let end = watch.start_time + duration;
        let route = record.route.as_deref();
        let name = match route {
            Some(route) => format!("{} {}", span_method(&watch.method), route.route),
            None => span_method(&watch.method).to_owned(),
        };
        let failed = outcome.status >= 500;
        spans.export(otlp::FinishedSpan {
            context: &watch.trace,
            call: None,
            name,
            start: watch.start_time,
            end,
            attributes: server_attributes(watch, route, outcome),
            error: failed.then(|| outcome.error.clone().unwrap_or_else(|| outcome.status.to_string())),
        });
        for call in &record.calls {
            let code = call.code.or(outcome.grpc).unwrap_or(Code::Unknown);
            let method = call.grpc_path.path().trim_start_matches('/');
            spans.export(otlp::FinishedSpan {
                context: &watch.trace,
                call: Some(call.span.id),
                name: method.to_owned(),
                start: call.span.start,
                end: call.end.unwrap_or(end),
                attributes: client_attributes(call, method, code, route),
                error: (code != Code::Ok).then(|| code_name(code).to_owned()),
            });
        }
    }
}

/// What the request's span learned by its end, for the events a debug log shows within it.
fn record_outcome(span: &tracing::Span, route: Option<&RouteLabels>, record: &Record, outcome: &Outcome) {
    if let Some(route) = route {
        span.record("route", &*route.route);
        span.record("grpc_method", &*route.grpc_method);
        if let Some(upstream) = &route.upstream {
            span.record("upstream", &**upstream);
        }
    }
    if let Some(endpoint) = &record.endpoint {
        span.record("endpoint", &**endpoint);
    }
    span.record("status", outcome.status);
    if let Some(code) = outcome.grpc {
        span.record("grpc_status", code_name(code));
    }
}

/// The request's SERVER span attributes, per OpenTelemetry's HTTP server conventions.
#[cfg(feature = "otlp")]
fn server_attributes(watch: &Watch, route: Option<&RouteLabels>, outcome: &Outcome) -> Vec<opentelemetry::KeyValue> {
    use opentelemetry::KeyValue;
    let mut attributes = vec![
        KeyValue::new("http.request.method", span_method(&watch.method)),
        KeyValue::new("url.path", watch.uri.path().to_owned()),
        KeyValue::new("url.scheme", if watch.tls { "https" } else { "http" }),
        KeyValue::new("http.response.status_code", i64::from(outcome.status)),
        KeyValue::new("network.protocol.name", "http"),
        KeyValue::new("network.protocol.version", protocol_version(watch.version)),
        KeyValue::new("protogate.request_id", watch.request_id.to_str().unwrap_or("-").to_owned()),
    ];
    if let Some((host, port)) = watch.host.as_ref().and_then(|h| h.to_str().ok()).and_then(host_and_port) {
        attributes.push(KeyValue::new("server.address", host));
        if let Some(port) = port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    if let Some(ip) = watch.client_ip {
        attributes.push(KeyValue::new("client.address", ip.to_string()));
    }
    if let Some(agent) = watch.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
        attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new("http.route", route.route.to_string()));
        if let Some(upstream) = &route.upstream {
            attributes.push(KeyValue::new("protogate.upstream", upstream.to_string()));
        }
    }
    if outcome.status >= 500 {
        attributes.push(KeyValue::new("error.type", outcome.status.to_string()));
    }
    attributes
}

/// An upstream call's CLIENT span attributes, per OpenTelemetry's RPC (gRPC) conventions.
#[cfg(feature = "otlp")]
fn client_attributes(
    call: &exchange::Call,
    method: &str,
    code: Code,
    route: Option<&RouteLabels>,
) -> Vec<opentelemetry::KeyValue> {
    use opentelemetry::KeyValue;
    let mut attributes = vec![
        KeyValue::new("rpc.system.name", "grpc"),
        KeyValue::new("rpc.method", method.to_owned()),
        KeyValue::new("rpc.response.status_code", code_name(code)),
    ];
    let endpoint = call.endpoint.as_deref().and_then(|e| e.parse::<Uri>().ok());
    if let Some(authority) = endpoint.as_ref().and_then(Uri::authority) {
        attributes.push(KeyValue::new("server.address", authority.host().to_owned()));
        if let Some(port) = authority.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
    }
    if let Some(upstream) = route.and_then(|r| r.upstream.as_ref()) {
        attributes.push(KeyValue::new("protogate.upstream", upstream.to_string()));
    }
    if code != Code::Ok {
        attributes.push(KeyValue::new("error.type", code_name(code)));
    }
    attributes
}

/// The method as the HTTP conventions name it: one of the standard nine, else `_OTHER`.
#[cfg(feature = "otlp")]
fn span_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

#[cfg(feature = "otlp")]
fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `Host`'s host and port (`[::1]:8080` → `::1`, 8080).
#[cfg(feature = "otlp")]
fn host_and_port(host: &str) -> Option<(String, Option<u16>)> {
    let authority: http::uri::Authority = host.parse().ok()?;
    let name = authority.host().trim_start_matches('[').trim_end_matches(']');
    Some((name.to_owned(), authority.port_u16()))
}

// === impl Watch ===

impl Watch {
    /// The request's record.
    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// The tracing span the request is handled in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The response left the handler with these parts.
    pub fn responded(&mut self, parts: &http::response::Parts) {
        self.response = Some(Answered {
            status: parts.status.as_u16(),
            error: parts.extensions.get::<Arc<GatewayError>>().cloned(),
            grpc_status: grpc_status(&parts.headers),
        });
    }

    /// `n` more response body bytes were sent.
    pub fn sent(&mut self, n: usize) {
        self.bytes_out += n as u64;
    }

    /// The response's trailers (a gRPC status among them, for streams and gRPC calls).
    pub fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(code) = grpc_status(trailers) {
            self.trailer_status = Some(code);
        }
    }

    /// The response body ended: the client got all of it.
    pub fn ended(&mut self) {
        self.ended = true;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let observer = self.observer.clone();
        observer.finish(self);
    }
}

/// How a request ended, from what the watch and the exchange saw.
#[derive(Debug)]
struct Outcome {
    status: u16,
    grpc: Option<Code>,
    error: Option<String>,
    refusal: Option<Refusal>,
    upstream_error: Option<UpstreamErrorKind>,
}

impl Outcome {
    fn of(watch: &Watch, record: &Record) -> Outcome {
        let Some(response) = &watch.response else {
            // The handler was dropped before it answered: the client went away.
            return Outcome {
                status: 499,
                grpc: Some(Code::Cancelled),
                error: Some("the client closed the request before the answer".into()),
                refusal: None,
                upstream_error: None,
            };
        };
        let error = response.error.as_deref();
        let grpc = record
            .grpc_status
            .or(watch.trailer_status)
            .or(error.map(|e| e.code().0))
            .or(response.grpc_status)
            .or_else(|| (record.upstream_elapsed.is_some() && response.status < 400).then_some(Code::Ok));
        let upstream_error = match error {
            Some(GatewayError::Upstream(UpstreamError::Unreachable { .. })) => Some(UpstreamErrorKind::Connect),
            Some(GatewayError::Upstream(UpstreamError::DeadlineExceeded { .. })) => Some(UpstreamErrorKind::Timeout),
            Some(GatewayError::Upstream(UpstreamError::Status(_))) => Some(UpstreamErrorKind::Status),
            Some(GatewayError::Upstream(
                UpstreamError::NoHealthyEndpoint { .. } | UpstreamError::Overloaded { .. },
            )) => Some(UpstreamErrorKind::Unavailable),
            _ if record.stream_error.is_some()
                || (grpc.is_some_and(|c| c != Code::Ok) && record.upstream_elapsed.is_some()) =>
            {
                Some(UpstreamErrorKind::Status)
            }
            _ => None,
        };
        let refusal = match error {
            Some(GatewayError::Refused(refused)) => Some(match refused.kind {
                RefusalKind::MissingToken => Refusal::MissingToken,
                RefusalKind::InvalidToken => Refusal::InvalidToken,
                RefusalKind::Forbidden => Refusal::Forbidden,
                RefusalKind::RateLimited => Refusal::RateLimited,
                RefusalKind::RateLimitUnavailable => Refusal::RateLimitUnavailable,
            }),
            _ => None,
        };
        let error = error.map(GatewayError::log_message).or_else(|| record.stream_error.clone());
        Outcome { status: response.status, grpc, error, refusal, upstream_error }
    }
}

/// A `grpc-status` header's code.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

#[cfg(not(feature = "otlp"))]
impl Observer {
    // Without the exporter, spans live only as tracing spans.
    #[allow(clippy::unused_self)]
    fn export_span(&self, _: &Watch, _: &Record, _: &Outcome, _: Duration) {}
}
