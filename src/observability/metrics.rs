//! The gateway's Prometheus metrics: what `/metrics` on the admin listener exposes.
//!
//! Every label has a bounded set of values: routes are named by template (`/v1/users/{id}`,
//! never `/v1/users/7`), a request that matched no route is `route="unmatched"`, methods
//! outside the standard ones are `method="OTHER"`, and error kinds and reasons are fixed words.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// A label value shared by every series that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label(Arc<str>);

impl From<&Arc<str>> for Label {
    fn from(value: &Arc<str>) -> Self {
        Label(value.clone())
    }
}

impl From<&'static str> for Label {
    fn from(value: &'static str) -> Self {
        Label(Arc::from(value))
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: Label,
    method: &'static str,
}

/// A duration's labels: where, and how it ended (`2xx` … `5xx`), so that latency objectives can
/// be read for successful requests alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DurationLabels {
    route: Label,
    method: &'static str,
    status_class: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: Label,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamCodeLabels {
    upstream: Label,
    grpc_method: Label,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: Label,
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamNameLabels {
    upstream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointStateLabels {
    upstream: String,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Why an upstream call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// No connection could be made, or it broke before the answer.
    Connect,
    /// The deadline passed.
    Timeout,
    /// The upstream answered with a non-OK status.
    Status,
    /// Not tried: no healthy endpoint, or the upstream's cap on calls in progress reached.
    Unavailable,
}

/// Why a request was refused before any upstream saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token.
    MissingToken,
    /// A token that does not verify.
    InvalidToken,
    /// A valid token without the scopes or claims needed.
    Forbidden,
    /// Over a rate limit.
    RateLimited,
    /// The rate-limit backend could not decide, and the policy fails closed.
    RateLimitUnavailable,
}

/// One finished request, as the metrics see it.
#[derive(Debug)]
pub struct Observation<'a> {
    /// The route template; `None` for a request no route matched.
    pub route: Option<Label>,
    /// The matched route's kept series, when it has them: the route's labels and those of
    /// its upstream call must be the ones they were first resolved for.
    pub series: Option<&'a RouteSeries>,
    /// The HTTP method.
    pub method: &'a Method,
    /// The HTTP status answered.
    pub status: u16,
    /// Time from the request's arrival to the end of its response body.
    pub duration: Duration,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes written.
    pub bytes_out: u64,
    /// The upstream call, if one was made: upstream, gRPC method, time, final gRPC code name.
    pub upstream: Option<UpstreamCall>,
    /// Why it was refused, if it was.
    pub refusal: Option<Refusal>,
}

/// An upstream call, as the metrics see it.
#[derive(Debug)]
pub struct UpstreamCall {
    /// The upstream's name.
    pub upstream: Label,
    /// `pkg.Service/Method`.
    pub grpc_method: Label,
    /// How long the upstream took, when it answered.
    pub elapsed: Option<Duration>,
    /// The gRPC code name of the outcome (`OK`, `NOT_FOUND`, …).
    pub code: &'static str,
    /// Why it failed, if it did.
    pub error: Option<UpstreamErrorKind>,
}

/// The statuses whose request counters a route keeps; others are looked up.
const KEPT_STATUSES: [u16; 16] = [200, 201, 204, 304, 400, 401, 403, 404, 409, 413, 429, 499, 500, 502, 503, 504];

/// A route's series in the request and upstream families, found on the route's first request
/// and kept with the route (in its labels, made once per route table), so that counting a
/// request does not hash its labels into five families' maps. It keeps the usual case: the
/// method of the route's first request, the common statuses, the upstream answering OK.
/// Anything else is looked up in the families, as the series of an unmatched request are.
#[derive(Debug, Default)]
pub struct RouteSeries(OnceLock<Box<Kept>>);

#[derive(Debug)]
struct Kept {
    /// The [`Metrics`] the series belong to (a process may run several gateways).
    owner: u64,
    method: &'static str,
    requests: [OnceLock<Counter>; KEPT_STATUSES.len()],
    /// By status class, `1xx` to `5xx`.
    duration: [OnceLock<Histogram>; 5],
    request_bytes: OnceLock<Counter>,
    response_bytes: OnceLock<Counter>,
    upstream_ok: OnceLock<Counter>,
    upstream_ok_duration: OnceLock<Histogram>,
}

impl RouteSeries {
    /// The series kept for requests with `method` counted by metrics `owner`, if they are its.
    fn kept(&self, owner: u64, method: &'static str) -> Option<&Kept> {
        let kept = self.0.get_or_init(|| {
            Box::new(Kept {
                owner,
                method,
                requests: [const { OnceLock::new() }; KEPT_STATUSES.len()],
                duration: [const { OnceLock::new() }; 5],
                request_bytes: OnceLock::new(),
                response_bytes: OnceLock::new(),
                upstream_ok: OnceLock::new(),
                upstream_ok_duration: OnceLock::new(),
            })
        });
        (kept.owner == owner && kept.method == method).then_some(&**kept)
    }
}

/// Counts into the series kept in `slot`, found with `find` the first time; without a slot,
/// into the series `find` gives.
#[inline]
fn count<M>(slot: Option<&OnceLock<M>>, find: impl FnOnce() -> M, count: impl FnOnce(&M)) {
    match slot {
        Some(slot) => count(slot.get_or_init(find)),
        None => count(&find()),
    }
}

/// Tells each [`Metrics`] apart, for the series routes keep.
static METRICS_MADE: AtomicU64 = AtomicU64::new(0);

/// Every metric, registered once per process.
#[derive(Debug)]
pub struct Metrics {
    /// Which metrics these are: see [`RouteSeries`].
    id: u64,
    registry: Registry,
    /// The route label of requests no route matched, made once.
    unmatched: Label,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<DurationLabels>,
    in_flight: Gauge,
    request_bytes: Family<RouteLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    upstream_requests: Family<UpstreamCodeLabels, Counter>,
    upstream_duration: HistogramFamily<UpstreamCodeLabels>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    rate_limited: Family<ReasonLabels, Counter>,
    descriptor_loads: Family<ResultLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    cache_lookups: Family<ResultLabels, Counter>,
    /// Sampled when scraped.
    routes: Gauge,
    streams: Gauge,
    rate_limit_backend_errors: Counter,
    access_log_dropped: Counter,
    upstream_retries: Family<UpstreamNameLabels, Counter>,
    upstream_endpoints: Family<EndpointStateLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// The metrics, all at zero.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            id: METRICS_MADE.fetch_add(1, Ordering::Relaxed),
            registry: Registry::default(),
            unmatched: Label::from(UNMATCHED),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            upstream_requests: Family::default(),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            upstream_errors: Family::default(),
            auth_failures: Family::default(),
            rate_limited: Family::default(),
            descriptor_loads: Family::default(),
            config_reloads: Family::default(),
            cache_lookups: Family::default(),
            routes: Gauge::default(),
            streams: Gauge::default(),
            rate_limit_backend_errors: Counter::default(),
            access_log_dropped: Counter::default(),
            upstream_retries: Family::default(),
            upstream_endpoints: Family::default(),
        };
        // The process metrics keep the names every exporter gives them; the gateway's own are
        // under `protogate_`.
        metrics.registry.register_collector(Box::new(super::process::ProcessCollector));
        let r = metrics.registry.sub_registry_with_prefix("protogate");
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);
        r.register("build_info", "The running build: 1, labelled with its version", build);
        r.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            metrics.requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to the end of its response, by route template, method and status class",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        r.register("http_requests_in_flight", "Requests whose response has not ended", metrics.in_flight.clone());
        r.register_with_unit(
            "http_request_body",
            "Request body bytes read, by route template and method",
            Unit::Bytes,
            metrics.request_bytes.clone(),
        );
        r.register_with_unit(
            "http_response_body",
            "Response body bytes written, by route template and method",
            Unit::Bytes,
            metrics.response_bytes.clone(),
        );
        r.register(
            "upstream_requests",
            "Upstream gRPC calls, by upstream, method and final gRPC code",
            metrics.upstream_requests.clone(),
        );
        r.register_with_unit(
            "upstream_duration",
            "Time the upstream took to answer (to its response headers for streams), by upstream, method and gRPC code",
            Unit::Seconds,
            metrics.upstream_duration.clone(),
        );
        r.register(
            "upstream_errors",
            "Failed upstream calls by kind: connect (unreachable), timeout (deadline), status (non-OK answer)",
            metrics.upstream_errors.clone(),
        );
        r.register(
            "auth_failures",
            "Requests refused by authentication: missing, invalid or forbidden",
            metrics.auth_failures.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by rate limits: limited (429) or backend_unavailable (503)",
            metrics.rate_limited.clone(),
        );
        r.register("descriptor_loads", "Descriptor set loads, by result", metrics.descriptor_loads.clone());
        r.register("config_reloads", "Configuration reloads, by result", metrics.config_reloads.clone());
        r.register(
            "cache_lookups",
            "Requests to cached routes: hit, miss, refresh (Cache-Control: no-cache) or bypass (not cacheable)",
            metrics.cache_lookups.clone(),
        );
        r.register("routes", "Routes in the route table", metrics.routes.clone());
        r.register("streams_in_progress", "Streaming calls in progress", metrics.streams.clone());
        r.register(
            "rate_limit_backend_errors",
            "Rate-limit decisions the backend (Redis) could not make",
            metrics.rate_limit_backend_errors.clone(),
        );
        r.register(
            "upstream_retries",
            "Calls tried again after a failure (safe and within the retry budget)",
            metrics.upstream_retries.clone(),
        );
        r.register(
            "upstream_endpoints",
            "Endpoints of each upstream: taking calls (available), taken out by health checks (unhealthy), ejected after failures (ejected)",
            metrics.upstream_endpoints.clone(),
        );
        r.register(
            "access_log_dropped_lines",
            "Access log lines dropped because the writer fell behind",
            metrics.access_log_dropped.clone(),
        );
        metrics
    }

    /// A request started.
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request ended.
    pub fn request_ended(&self, observation: &Observation<'_>) {
        self.in_flight.dec();
        let method = method_label(observation.method);
        let status = observation.status;
        let kept = observation.series.and_then(|series| series.kept(self.id, method));
        let route = || observation.route.clone().unwrap_or_else(|| self.unmatched.clone());
        let status_slot = KEPT_STATUSES.iter().position(|&s| s == status);
        count(
            kept.zip(status_slot).map(|(kept, i)| &kept.requests[i]),
            || self.requests.get_or_create_owned(&RequestLabels { route: route(), method, status }),
            |counter| {
                counter.inc();
            },
        );
        let (class_index, status_class) = status_class(status);
        count(
            kept.map(|kept| &kept.duration[class_index]),
            || self.request_duration.get_or_create_owned(&DurationLabels { route: route(), method, status_class }),
            |histogram| histogram.observe(observation.duration.as_secs_f64()),
        );
        if observation.bytes_in > 0 {
            count(
                kept.map(|kept| &kept.request_bytes),
                || self.request_bytes.get_or_create_owned(&RouteLabels { route: route(), method }),
                |counter| {
                    counter.inc_by(observation.bytes_in);
                },
            );
        }
        count(
            kept.map(|kept| &kept.response_bytes),
            || self.response_bytes.get_or_create_owned(&RouteLabels { route: route(), method }),
            |counter| {
                counter.inc_by(observation.bytes_out);
            },
        );
        if let Some(call) = &observation.upstream {
            self.upstream_call(call, kept);
        }
        match observation.refusal {
            Some(Refusal::MissingToken) => self.auth_failures.get_or_create(&ReasonLabels { reason: "missing" }).inc(),
            Some(Refusal::InvalidToken) => self.auth_failures.get_or_create(&ReasonLabels { reason: "invalid" }).inc(),
            Some(Refusal::Forbidden) => self.auth_failures.get_or_create(&ReasonLabels { reason: "forbidden" }).inc(),
            Some(Refusal::RateLimited) => self.rate_limited.get_or_create(&ReasonLabels { reason: "limited" }).inc(),
            Some(Refusal::RateLimitUnavailable) => {
                self.rate_limited.get_or_create(&ReasonLabels { reason: "backend_unavailable" }).inc()
            }
            None => 0,
        };
    }

    fn upstream_call(&self, call: &UpstreamCall, kept: Option<&Kept>) {
        let labels = || UpstreamCodeLabels {
            upstream: call.upstream.clone(),
            grpc_method: call.grpc_method.clone(),
            code: call.code,
        };
        // Only an answered OK call is counted into kept series: one series of each family.
        let kept = kept.filter(|_| call.code == "OK" && call.error.is_none());
        if let Some(elapsed) = call.elapsed {
            count(
                kept.map(|kept| &kept.upstream_ok_duration),
                || self.upstream_duration.get_or_create_owned(&labels()),
                |histogram| histogram.observe(elapsed.as_secs_f64()),
            );
        }
        if let Some(kind) = call.error {
            let kind = match kind {
                UpstreamErrorKind::Connect => "connect",
                UpstreamErrorKind::Timeout => "timeout",
                UpstreamErrorKind::Status => "status",
                UpstreamErrorKind::Unavailable => "unavailable",
            };
            self.upstream_errors.get_or_create(&UpstreamErrorLabels { upstream: call.upstream.clone(), kind }).inc();
        }
        count(
            kept.map(|kept| &kept.upstream_ok),
            || self.upstream_requests.get_or_create_owned(&labels()),
            |counter| {
                counter.inc();
            },
        );
    }

    /// A request to a cached route was answered so (`hit`, `miss`, `refresh`, `bypass`).
    pub fn cache_lookup(&self, result: &'static str) {
        self.cache_lookups.get_or_create(&ResultLabels { result }).inc();
    }

    /// A changed configuration was applied (`ok`) or refused.
    pub fn config_reloaded(&self, ok: bool) {
        self.config_reloads.get_or_create(&ResultLabels { result: if ok { "ok" } else { "failed" } }).inc();
    }

    /// A descriptor set was loaded (`ok`) or refused.
    pub fn descriptors_loaded(&self, ok: bool) {
        self.descriptor_loads.get_or_create(&ResultLabels { result: if ok { "ok" } else { "failed" } }).inc();
    }

    /// The values that are sampled rather than counted as they happen.
    pub fn sample(&self, sample: Sample) {
        self.routes.set(i64::try_from(sample.routes).unwrap_or(i64::MAX));
        self.streams.set(i64::try_from(sample.streams).unwrap_or(i64::MAX));
        self.rate_limit_backend_errors.inner().store(sample.rate_limit_backend_errors, Ordering::Relaxed);
        self.access_log_dropped.inner().store(sample.access_log_dropped, Ordering::Relaxed);
        // Upstreams a reload removed drop out of the exposition.
        self.upstream_retries.clear();
        self.upstream_endpoints.clear();
        for upstream in sample.upstreams {
            let name = || upstream.name.clone();
            self.upstream_retries
                .get_or_create(&UpstreamNameLabels { upstream: name() })
                .inner()
                .store(upstream.retries, Ordering::Relaxed);
            for (state, count) in
                [("available", upstream.available), ("unhealthy", upstream.unhealthy), ("ejected", upstream.ejected)]
            {
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                self.upstream_endpoints.get_or_create(&EndpointStateLabels { upstream: name(), state }).set(count);
            }
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }

    /// The OpenMetrics text format, for scrapers that ask for it.
    pub fn encode_openmetrics(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// `2xx`, `4xx`, …: a status's class, a label of few values, and its place among them.
fn status_class(status: u16) -> (usize, &'static str) {
    match status {
        100..=199 => (0, "1xx"),
        200..=299 => (1, "2xx"),
        300..=399 => (2, "3xx"),
        400..=499 => (3, "4xx"),
        _ => (4, "5xx"),
    }
}

/// Values read from the gateway when `/metrics` is scraped.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Routes in the table.
    pub routes: usize,
    /// Streams in progress.
    pub streams: usize,
    /// Rate-limit backend errors so far.
    pub rate_limit_backend_errors: u64,
    /// Access log lines dropped so far.
    pub access_log_dropped: u64,
    /// Each upstream's retries and endpoint states.
    pub upstreams: Vec<crate::upstream::UpstreamSample>,
}

/// The method as a label: the standard methods by name, anything else `OTHER`, so a client
/// cannot mint label values.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation<'a>(route: &'static str, status: u16) -> Observation<'a> {
        Observation {
            route: Some(Label::from(route)),
            series: None,
            method: &Method::GET,
            status,
            duration: Duration::from_millis(3),
            bytes_in: 0,
            bytes_out: 10,
            upstream: Some(UpstreamCall {
                upstream: Label::from("users"),
                grpc_method: Label::from("example.users.v1.UserService/GetUser"),
                elapsed: Some(Duration::from_millis(2)),
                code: "NOT_FOUND",
                error: Some(UpstreamErrorKind::Status),
            }),
            refusal: None,
        }
    }

    #[test]
    fn requests_are_counted_by_template_and_status() {
        let metrics = Metrics::new();
        metrics.request_started();
        metrics.request_ended(&observation("/v1/users/{id}", 404));
        metrics.request_started();
        metrics.request_ended(&observation("/v1/users/{id}", 404));
        let text = metrics.encode();
        assert!(
            text.contains(r#"protogate_http_requests_total{route="/v1/users/{id}",method="GET",status="404"} 2"#),
            "{text}"
        );
        assert!(text.contains("protogate_http_requests_in_flight 0"), "{text}");
        assert!(text.contains(r#"protogate_upstream_errors_total{upstream="users",kind="status"} 2"#), "{text}");
        assert!(text.contains(r#"code="NOT_FOUND""#), "{text}");
        assert!(text.contains("protogate_http_request_duration_seconds_bucket"), "{text}");
        assert!(metrics.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn a_route_s_kept_series_count_what_looking_them_up_counts() {
        // The same requests, once counted through a route's kept series and once looked up,
        // expose the same text: statuses kept and not, an OK call and a failed one, a second
        // method, a body, and a second `Metrics` the route's series do not belong to.
        let requests = [
            (200, "OK", None, 0),
            (404, "NOT_FOUND", Some(UpstreamErrorKind::Status), 0),
            (201, "OK", None, 17),
            (418, "OK", None, 0),
            (503, "UNAVAILABLE", Some(UpstreamErrorKind::Connect), 3),
        ];
        let (kept, looked_up, other) = (Metrics::new(), Metrics::new(), Metrics::new());
        let series = RouteSeries::default();
        for (status, code, error, bytes_in) in requests {
            for method in [Method::GET, Method::GET, Method::POST] {
                for (metrics, series) in [(&kept, Some(&series)), (&looked_up, None), (&other, Some(&series))] {
                    let mut o = observation("/v1/users/{id}", status);
                    o.method = &method;
                    o.series = series;
                    o.bytes_in = bytes_in;
                    o.upstream = Some(UpstreamCall {
                        upstream: Label::from("users"),
                        grpc_method: Label::from("example.users.v1.UserService/GetUser"),
                        elapsed: Some(Duration::from_millis(2)),
                        code,
                        error,
                    });
                    metrics.request_started();
                    metrics.request_ended(&o);
                }
            }
        }
        // Series within a family come out in no set order.
        let expose = |m: &Metrics| {
            let mut lines: Vec<String> =
                m.encode().lines().filter(|l| !l.starts_with("process_")).map(str::to_owned).collect();
            lines.sort();
            lines.join("\n")
        };
        let expected = expose(&looked_up);
        assert!(
            expected.contains(r#"protogate_http_requests_total{route="/v1/users/{id}",method="GET",status="200"} 2"#)
        );
        assert!(expected.contains(r#"method="POST",status="418"} 1"#), "{expected}");
        assert_eq!(expose(&kept), expected);
        assert_eq!(expose(&other), expected);
        assert_eq!(series.0.get().map(|k| (k.owner, k.method)), Some((kept.id, "GET")));
    }

    #[test]
    fn odd_methods_do_not_make_labels() {
        let method = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(method_label(&method), "OTHER");
    }
}
