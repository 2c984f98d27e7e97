//! The admin listener: what operators and their tooling ask the gateway about itself, on an
//! address of its own (`admin_listen`, loopback in the examples) and never on the public one.
//!
//! - `GET /healthz`: the process is alive and serving (liveness).
//! - `GET /readyz`: the gateway's own readiness — it serves routes and shutdown has not
//!   begun; 503 naming what is not. Each upstream's endpoints (connected, what the health
//!   checks say) are in the body; with `readiness = "upstreams"` an upstream with no endpoint
//!   taking calls makes it 503 too.
//! - `GET /metrics`: Prometheus text format (OpenMetrics when the scraper asks for it).
//! - `GET /routes`: the route table, as `protogate routes --json` prints it.
//! - `GET /config`: the effective configuration, secrets redacted.
//! - `GET /openapi.json`: the OpenAPI 3.1 document of the routes served now.
//! - `GET /docs`: a page describing every route, with a "try it" form whose requests go to
//!   `/docs/try/…`, which hands them to the public router as if they came to the gateway.
//! - `POST /reload`: reads the config file and the descriptors again and swaps in the rebuilt
//!   gateway (see [`crate::reload`]); 200 with what changed, or 400 listing every problem while
//!   the last good configuration keeps serving.
//!
//! A browser is the one client that must not reach it: a page on any site can send simple
//! requests to a private address. So a request whose `Host` is a name other than `localhost`
//! and the configured `admin_hosts` is refused (an attacker's name pointed at this host: DNS
//! rebinding), and so is a `POST /reload` that a browser sent as a simple request (it carries
//! `Origin` or `Sec-Fetch-Site`, and not the `X-Protogate-Reload` header, which no page can
//! add without a CORS preflight the admin listener never grants). Tools — curl, kubectl,
//! scripts — send neither and need nothing.

pub mod docs;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tonic::Code;

use crate::config::Readiness;
use crate::error::json_response;
use crate::gateway::Gateway;
use crate::observability::metrics::Sample;
use crate::reload::{Live, Trigger};
use crate::route::RouteOrigin;
use crate::status::StatusBody;
use crate::upstream::endpoint::Health;

/// How long `/readyz` waits for an endpoint's connection: under the 1 s probe timeout of
/// Kubernetes' defaults.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The admin endpoints.
pub fn router(live: Arc<Live>, public: Router) -> Router {
    Router::new()
        .route("/docs", get(|| async { docs::page("/docs/try") }))
        .route("/docs/openapi.json", get(openapi))
        .nest_service("/docs/try", public)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/routes", get(routes))
        .route("/config", get(config))
        .route("/openapi.json", get(openapi))
        .route("/reload", post(reload))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(live.clone(), refuse_foreign_hosts))
        .with_state(live)
}

/// The header that marks a `POST /reload` as not a browser's simple request.
const RELOAD_HEADER: &str = "x-protogate-reload";

/// Answers 403 to a request for a host name the admin listener does not go by, and to a
/// browser's simple `POST /reload`.
async fn refuse_foreign_hosts(
    State(live): State<Arc<Live>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host.filter(|host| !is_own_host(host, &live.gateway().edge().admin_hosts)) {
        let message = format!("the admin listener does not answer for host {host:?}; list it in admin_hosts");
        return error(StatusCode::FORBIDDEN, Code::PermissionDenied, &message);
    }
    if request.uri().path() == "/reload" && is_browser_simple_request(headers) {
        let message = format!(
            "a browser cannot trigger a reload; tools send POST /reload (with {RELOAD_HEADER}: 1 if they set Origin)"
        );
        return error(StatusCode::FORBIDDEN, Code::PermissionDenied, &message);
    }
    next.run(request).await
}

/// Whether `host` (a `Host` header: name or address, with a port or not) is this listener's:
/// an IP address (a page cannot make a browser send one for its own origin), `localhost`, or
/// one of `names`.
fn is_own_host(host: &str, names: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split(']').next().is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(n, _)| n)
        }
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || names.iter().any(|own| own.eq_ignore_ascii_case(name))
}

/// Whether a browser sent this without a preflight: it says which page it comes from
/// (`Origin`, or `Sec-Fetch-Site` other than `none`, which is a URL the user typed) and lacks
/// the reload header.
fn is_browser_simple_request(headers: &HeaderMap) -> bool {
    let from_a_page =
        headers.contains_key(http::header::ORIGIN) || headers.get("sec-fetch-site").is_some_and(|site| site != "none");
    from_a_page && !headers.contains_key(RELOAD_HEADER)
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
/// Serves the admin endpoints on `listener` until `shutdown`; `public` is the public router
/// the docs page's "try it" requests go to.
pub async fn serve(
    listener: TcpListener,
    live: Arc<Live>,
    public: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(live, public)).with_graceful_shutdown(shutdown).await
}

async fn healthz() -> Response {
    json(StatusCode::OK, &json!({ "status": "ok" }))
}

async fn readyz(State(live): State<Arc<Live>>) -> Response {
    let gateway = live.gateway();
    let mut reasons = Vec::new();
    if gateway.is_draining() {
        reasons.push("shutting down: finishing the requests in flight".to_owned());
    }
    let routes = gateway.table().routes().len();
    if routes == 0 {
        reasons.push("no routes: the descriptor paths hold no services".to_owned());
    }
    // Every endpoint of every upstream at once: a slow one must not hold the answer past a
    // prober's timeout (Kubernetes waits 1 s by default).
    let probes = futures_util::future::join_all(gateway.upstreams().iter().map(|u| u.probe(PROBE_TIMEOUT))).await;
    let mut upstreams = Vec::new();
    for (upstream, probes) in gateway.upstreams().iter().zip(probes) {
        let mut why = Vec::new();
        let endpoints: Vec<serde_json::Value> = probes
            .iter()
            .map(|(state, probe)| {
                let url = state.connection().label();
                let health = match state.health() {
                    Health::Unknown => "unknown",
                    Health::Serving => "serving",
                    Health::NotServing => "not serving",
                    Health::Unreachable => "unreachable",
                };
                let error = match (probe, state.health()) {
                    (Err(error), _) => Some(error.clone()),
                    (Ok(()), health) if health.is_out() => {
                        Some(state.health_reason().as_deref().unwrap_or("health check failed").to_owned())
                    }
                    (Ok(()), _) => None,
                };
                let mut entry = json!({ "url": &**url, "ready": error.is_none(), "health": health });
                if let Some(left) = state.ejected_for() {
                    entry["ejected_for_ms"] = json!(left.as_millis());
                }
                if let Some(error) = error {
                    why.push(format!("{url}: {error}"));
                    entry["error"] = json!(error);
                }
                entry
            })
            .collect();
        let ready = endpoints.iter().any(|e| e["ready"] == true);
        if !ready && gateway.edge().readiness == Readiness::Upstreams {
            reasons.push(format!("upstream {} has no endpoint taking calls: {}", upstream.name, why.join("; ")));
        }
        upstreams.push(json!({ "name": upstream.name, "ready": ready, "endpoints": endpoints }));
    }
    let ready = reasons.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "reasons": reasons,
        "routes": routes,
        "upstreams": upstreams,
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &body)
}

async fn metrics(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let gateway = live.gateway();
    let observer = gateway.observer();
    observer.metrics().sample(Sample {
        routes: gateway.table().routes().len(),
        streams: gateway.streams().get(),
        rate_limit_backend_errors: gateway.policies().limiter().backend_errors(),
        access_log_dropped: observer.access_log_dropped(),
        upstreams: gateway.upstreams().iter().map(crate::upstream::Upstream::sample).collect(),
    });
    let openmetrics = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (text, content_type) = if openmetrics {
        (observer.metrics().encode_openmetrics(), OPENMETRICS)
    } else {
        (observer.metrics().encode(), PROMETHEUS_TEXT)
    };
    ([(CONTENT_TYPE, HeaderValue::from_static(content_type))], text).into_response()
}

async fn routes(State(live): State<Arc<Live>>) -> Response {
    json(StatusCode::OK, &route_table(&live.gateway()))
}

async fn config(State(live): State<Arc<Live>>) -> Response {
    json(StatusCode::OK, live.gateway().effective_config())
}

async fn reload(State(live): State<Arc<Live>>) -> Response {
    match live.reload(Trigger::Config).await {
        Ok(reloaded) => json(
            StatusCode::OK,
            &json!({
                "status": "reloaded",
                "routes": reloaded.routes,
                "services_added": reloaded.added,
                "services_removed": reloaded.removed,
            }),
        ),
        Err(e) => {
            let message = format!("nothing was changed, the last good configuration keeps serving: {e}");
            error(StatusCode::BAD_REQUEST, Code::FailedPrecondition, &message)
        }
    }
}

async fn openapi(State(live): State<Arc<Live>>) -> Response {
    json(StatusCode::OK, &protogate_openapi(&live))
}

/// The document of the gateway serving now: a reload changes it on the next request.
fn protogate_openapi(live: &Live) -> serde_json::Value {
    crate::openapi::document(&live.gateway())
}

async fn not_found() -> Response {
    let message = "no such admin endpoint: try /healthz, /readyz, /metrics, /routes, /config, /openapi.json or /docs";
    error(StatusCode::NOT_FOUND, Code::NotFound, message)
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, Code::Unimplemented, "use GET, or POST for /reload")
}

fn error(status: StatusCode, code: Code, message: &str) -> Response {
    json_response(status, StatusBody { code: code as i32, message, details: Vec::new() }.to_json()).map(Body::from)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    json_response(status, serde_json::to_vec_pretty(value).unwrap_or_default()).map(Body::from)
}

/// The route table as JSON: one object per route with its HTTP method, path template, gRPC
/// method, body and response body selectors, upstream, and whether it is the implicit
/// `POST /pkg.Service/Method` route.
pub fn route_table(gateway: &Gateway) -> serde_json::Value {
    let routes = gateway.table().routes().iter().enumerate().map(|(i, route)| {
        json!({
            "method": route.http_method.to_string(),
            "path": route.template.to_string(),
            "grpc_method": route.method.full_name(),
            "body": route.body.to_string(),
            "response_body": route.response_body.as_ref().map(|f| f.name()),
            "upstream": gateway.upstream_of(i).map_or("-", |u| u.name.as_str()),
            "endpoints": gateway.upstream_of(i).map(endpoint_urls).unwrap_or_default(),
            "default": route.origin == RouteOrigin::Default,
            "streaming": streaming_kind(route),
        })
    });
    let aggregates = gateway.aggregates().routes().iter().map(|aggregate| {
        json!({
            "method": aggregate.http_method.to_string(),
            "path": aggregate.template.to_string(),
            "aggregate": aggregate.calls.iter().map(|call| json!({
                "name": call.name,
                "grpc_method": call.grpc_method,
                "needs": call.needs.iter().map(|&i| aggregate.calls[i].name.as_str()).collect::<Vec<_>>(),
                "upstream": gateway.upstream_of(call.route).map_or("-", |u| u.name.as_str()),
                "endpoints": gateway.upstream_of(call.route).map(endpoint_urls).unwrap_or_default(),
            })).collect::<Vec<_>>(),
            "on_error": aggregate.on_error,
        })
    });
    let profiles = gateway.profiles().iter().flat_map(|profile| {
        profile.exposed(gateway.table().routes(), gateway.aggregates()).into_iter().map(move |route| {
            let (method, path) = route.split_once(' ').unwrap_or(("", route.as_str()));
            json!({"method": method, "path": path, "profile": profile.name})
        })
    });
    // Composite routes first: they are matched first.
    serde_json::Value::Array(aggregates.chain(routes).chain(profiles).collect())
}

/// The URLs an upstream's calls go to now (discovery may change them).
fn endpoint_urls(upstream: &crate::upstream::Upstream) -> Vec<String> {
    upstream.endpoint_states().iter().map(|e| e.connection().label().to_string()).collect()
}

/// `server`, `client`, `bidi`, or null for a unary method.
fn streaming_kind(route: &crate::route::Route) -> Option<&'static str> {
    match (route.method.is_client_streaming(), route.method.is_server_streaming()) {
        (false, false) => None,
        (false, true) => Some("server"),
        (true, false) => Some("client"),
        (true, true) => Some("bidi"),
    }
}
