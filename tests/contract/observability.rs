//! Following requests: correlation ids, W3C trace context, the access log, Prometheus metrics,
//! the admin listener and OTLP span export.

use std::time::Duration;

use serde_json::{Value, json};
use tonic::Code;

use crate::support::{Gateway, Harness, Reply, Upstream, take_request_info};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The Prometheus sample of `series` (name and labels exactly as exposed), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(admin: &crate::support::Client) -> String {
    let response = admin.request("GET", "/metrics").send().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    String::from_utf8(response.body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_request_id_sent_in_reaches_the_upstream_the_log_and_the_error_body() {
    let h = Harness::start_with(
        "[request_id]\nheader = \"X-Correlation-Id\"\n[json]\nignored_query_parameters = [\"access_token\"]\n",
    )
    .await;
    h.upstream.reply(Reply::status(Code::NotFound, "no shelf 7"));
    let response = h
        .request("GET", "/v1/shelves/7?access_token=t0ken-in-query")
        .header("X-Correlation-Id", "corr-42")
        .header("Authorization", "Bearer s3cr3t-token")
        .header("Cookie", "session=c00kie")
        .header("User-Agent", "observability-test/1")
        .send()
        .await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("x-correlation-id"), Some("corr-42"), "echoed under the configured name");
    let mut body = response.json();
    assert_eq!(take_request_info(&mut body).as_deref(), Some("corr-42"), "{body}");
    assert_eq!(h.upstream.last_call().metadata["x-correlation-id"], "corr-42");

    let lines = h.gateway.access_log(1).await;
    let line = &lines[0];
    assert_eq!(line["request_id"], "corr-42");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/v1/shelves/7", "no query string: it may carry tokens");
    assert_eq!(line["route"], "/v1/shelves/{shelf}");
    assert_eq!(line["grpc_method"], "protogate.testing.v1.Bookstore/GetShelf");
    assert_eq!(line["upstream"], "test");
    assert_eq!(line["endpoint"], h.upstream.url());
    assert_eq!(line["status"], 404);
    assert_eq!(line["grpc_status"], "NOT_FOUND");
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert_eq!(line["user_agent"], "observability-test/1");
    assert_eq!(line["bytes_out"], response.body.len());
    assert_eq!(line["completed"], true);
    assert!(line["error"].as_str().unwrap().contains("no shelf 7"), "{line}");
    assert!(line["duration_ms"].as_f64().unwrap() >= line["upstream_ms"].as_f64().unwrap());
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    let text = lines.iter().map(Value::to_string).collect::<String>();
    for secret in ["s3cr3t", "c00kie", "t0ken-in-query"] {
        assert!(!text.contains(secret), "no credentials in the log: {text}");
    }
}

#[tokio::test]
async fn a_malformed_request_id_never_reaches_the_log() {
    let h = Harness::start().await;
    let response = h.request("GET", "/v1/shelves/1").header("X-Request-Id", "evil\tid with spaces").send().await;
    let id = response.header("x-request-id").unwrap().to_owned();
    assert_ne!(id, "evil\tid with spaces");
    let lines = h.gateway.access_log(1).await;
    assert_eq!(lines[0]["request_id"], id.as_str());
    assert_eq!(h.upstream.last_call().metadata["x-request-id"], id.as_str());
}

#[tokio::test]
async fn the_trace_context_is_continued_upstream_with_the_gateway_as_parent() {
    let h = Harness::start().await;
    h.request("GET", "/v1/shelves/1")
        .header("traceparent", TRACEPARENT)
        .header("tracestate", "vendor=abc")
        .send()
        .await;
    let md = h.upstream.last_call().metadata;
    let up = md["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = up.split('-').collect();
    assert_eq!(parts.len(), 4, "{up}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE_ID, "01"), "same trace, still sampled: {up}");
    assert_ne!(parts[2], "00f067aa0ba902b7", "the upstream's parent is the gateway's span");
    assert_eq!(md["tracestate"], "vendor=abc");
    assert_eq!(h.gateway.access_log(1).await[0]["trace_id"], TRACE_ID);

    // No traceparent, or a malformed one: a new trace starts, and the upstream sees it.
    for sent in [None, Some("00-XYZ-00f067aa0ba902b7-01")] {
        let mut request = h.request("GET", "/v1/shelves/1");
        if let Some(value) = sent {
            request = request.header("traceparent", value).header("tracestate", "dropped=1");
        }
        request.send().await;
        let md = h.upstream.last_call().metadata;
        let up = md["traceparent"].to_str().unwrap();
        assert!(up.len() == 55 && up.starts_with("00-") && !up.contains(TRACE_ID), "{up}");
        assert!(md.get("tracestate").is_none(), "tracestate goes with a malformed traceparent");
    }
}

#[tokio::test]
async fn streams_are_logged_when_they_end() {
    let h = Harness::start().await;
    let messages: Vec<Value> = (1..=3).map(|i| json!({"int32Value": i})).collect();
    h.upstream.reply(Reply::stream(messages).ending(Code::NotFound, "gone"));
    let mut response = h.request("GET", "/v1/streams/topic").send_streaming().await;
    let body = response.rest().await;
    let line = &h.gateway.access_log(1).await[0];
    assert_eq!(line["status"], 200);
    assert_eq!(line["grpc_status"], "NOT_FOUND", "the stream's own end, not its 200");
    assert_eq!(line["bytes_out"], body.len());
    assert_eq!(line["route"], "/v1/streams/{string_value}");
    assert!(line["error"].as_str().unwrap().contains("gone"), "{line}");
}

#[tokio::test]
async fn the_human_format_reads_as_one_line_per_request() {
    let h = Harness::start_with("[access_log]\nformat = \"human\"\n").await;
    h.request("GET", "/v1/shelves/1").header("X-Request-Id", "human-1").send().await;
    let lines = h.gateway.access_log(1).await;
    let line = lines[0].as_str().unwrap();
    assert!(line.contains(" 127.0.0.1 \"GET /v1/shelves/1\" 200 OK "), "{line}");
    assert!(
        line.contains(" id=human-1 route=/v1/shelves/{shelf} grpc=protogate.testing.v1.Bookstore/GetShelf"),
        "{line}"
    );
}

#[tokio::test]
async fn refusals_are_logged_and_counted_with_their_reason() {
    let h = Harness::start_with(
        r#"
[jwt]
algorithms = ["HS256"]
keys = [{ alg = "HS256", secret = "0123456789abcdef0123456789abcdef" }]

[[policy]]
name = "private"
match = { path_prefix = "/v1/everything" }
auth = "required"

[[policy]]
name = "metered"
rate_limits = [{ key = "route", per_minute = 1 }]
"#,
    )
    .await;
    let admin = h.gateway.admin().await;
    h.get("/v1/everything").await.assert_error(401, 16);
    h.get("/v1/shelves/1").await;
    h.get("/v1/shelves/1").await.assert_error(429, 8);
    let lines = h.gateway.access_log(3).await;
    assert!(lines[0]["error"].as_str().unwrap().contains("token"), "{}", lines[0]);
    assert_eq!(lines[2]["status"], 429);
    assert!(lines[2]["error"].as_str().unwrap().contains("rate limit"), "{}", lines[2]);
    let metrics = scrape(&admin).await;
    assert_eq!(sample(&metrics, r#"protogate_auth_failures_total{reason="missing"}"#), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, r#"protogate_rate_limited_total{reason="limited"}"#), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_not_by_path() {
    let h = Harness::start().await;
    let admin = h.gateway.admin().await;
    // 10,000 distinct ids over one route, and 1,000 distinct paths that match none.
    let workers: Vec<_> = (0..20)
        .map(|worker| {
            let client = h.gateway.client.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    let id = worker * 500 + i;
                    assert_eq!(client.request("GET", &format!("/v1/shelves/{id}")).send().await.status, 200);
                    if i % 10 == 0 {
                        assert_eq!(client.request("GET", &format!("/nowhere/{id}")).send().await.status, 404);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let metrics = scrape(&admin).await;
    let route = r#"route="/v1/shelves/{shelf}",method="GET""#;
    assert_eq!(sample(&metrics, &format!("protogate_http_requests_total{{{route},status=\"200\"}}")), Some(10_000.0));
    assert_eq!(
        sample(&metrics, r#"protogate_http_requests_total{route="unmatched",method="GET",status="404"}"#),
        Some(1_000.0)
    );
    assert_eq!(
        sample(&metrics, &format!("protogate_http_request_duration_seconds_count{{{route},status_class=\"2xx\"}}")),
        Some(10_000.0)
    );
    let upstream = r#"upstream="test",grpc_method="protogate.testing.v1.Bookstore/GetShelf""#;
    assert_eq!(
        sample(&metrics, &format!("protogate_upstream_duration_seconds_count{{{upstream},code=\"OK\"}}")),
        Some(10_000.0)
    );
    assert_eq!(
        sample(&metrics, &format!("protogate_upstream_requests_total{{{upstream},code=\"OK\"}}")),
        Some(10_000.0)
    );
    assert_eq!(sample(&metrics, "protogate_http_requests_in_flight"), Some(0.0));
    assert!(!metrics.contains("/v1/shelves/1\"") && !metrics.contains("/nowhere/"), "no raw path is a label");
    let series = metrics.lines().filter(|l| !l.starts_with('#') && !l.starts_with("process_")).count();
    assert!(series < 200, "the 11,000 requests made {series} series:\n{metrics}");
}

#[tokio::test]
async fn upstream_errors_are_counted_by_kind() {
    let h = Harness::start().await;
    let admin = h.gateway.admin().await;
    // Every try answers so: a GET that meets UNAVAILABLE is tried again.
    h.upstream.script(|_| Reply::status(Code::Unavailable, "busy"));
    h.get("/v1/shelves/1").await.assert_error(503, 14);
    h.upstream.script(|_| Reply::json(json!({})).delay(Duration::from_secs(2)));
    h.request("GET", "/v1/shelves/1").header("Grpc-Timeout", "50m").send().await.assert_error(504, 4);
    let down = Gateway::start(&Upstream::closed_url().await, "").await;
    let down_admin = down.admin().await;
    down.client.request("GET", "/v1/shelves/1").send().await.assert_error(502, 14);

    let metrics = scrape(&admin).await;
    assert_eq!(sample(&metrics, r#"protogate_upstream_errors_total{upstream="test",kind="status"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"protogate_upstream_errors_total{upstream="test",kind="timeout"}"#), Some(1.0));
    let upstream = r#"upstream="test",grpc_method="protogate.testing.v1.Bookstore/GetShelf""#;
    assert_eq!(
        sample(&metrics, &format!("protogate_upstream_requests_total{{{upstream},code=\"UNAVAILABLE\"}}")),
        Some(1.0)
    );
    let metrics = scrape(&down_admin).await;
    assert_eq!(sample(&metrics, r#"protogate_upstream_errors_total{upstream="test",kind="connect"}"#), Some(1.0));
    assert_eq!(
        sample(&metrics, r#"protogate_http_requests_total{route="/v1/shelves/{shelf}",method="GET",status="502"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_admin_endpoints_answer_on_their_own_listener_only() {
    let h = Harness::start_with(
        r#"
[jwt]
algorithms = ["HS256"]
keys = [{ alg = "HS256", secret = "admin-test-secret-0123456789abcdef" }]
"#,
    )
    .await;
    let admin = h.gateway.admin().await;
    let health = admin.request("GET", "/healthz").send().await;
    assert_eq!((health.status.as_u16(), health.json()), (200, json!({"status": "ok"})));

    let ready = admin.request("GET", "/readyz").send().await;
    let report = ready.json();
    assert_eq!(ready.status, 200, "{report}");
    assert_eq!(report["status"], "ready");
    assert_eq!(
        report["upstreams"][0]["endpoints"][0],
        json!({"url": h.upstream.url(), "ready": true, "health": "unknown"}),
        "no health_check: the health checks say nothing"
    );

    let routes = admin.request("GET", "/routes").send().await.json();
    let get_shelf = routes.as_array().unwrap().iter().find(|r| r["path"] == "/v1/shelves/{shelf}").unwrap();
    assert_eq!(get_shelf["grpc_method"], "protogate.testing.v1.Bookstore.GetShelf");
    assert_eq!(get_shelf["upstream"], "test");

    let config = admin.request("GET", "/config").send().await;
    let text = String::from_utf8(config.body.to_vec()).unwrap();
    assert_eq!(config.status, 200);
    assert!(!text.contains("admin-test-secret"), "secrets are redacted: {text}");
    assert_eq!(config.json()["jwt"]["keys"][0]["secret"], "[redacted]");
    assert_eq!(config.json()["upstreams"][0]["endpoints"][0], h.upstream.url());

    let metrics = scrape(&admin).await;
    assert!(sample(&metrics, "protogate_routes").is_some_and(|n| n > 10.0), "{metrics}");
    assert_eq!(sample(&metrics, r#"protogate_descriptor_loads_total{result="ok"}"#), Some(1.0));
    let open = admin.request("GET", "/metrics").header("Accept", "application/openmetrics-text").send().await;
    assert!(open.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    assert!(open.body.ends_with(b"# EOF\n"));

    assert_eq!(admin.request("GET", "/openapi.json").send().await.json()["openapi"], "3.1.0");
    for (method, path, status, code) in [("GET", "/secrets", 404, 5), ("POST", "/healthz", 405, 12)] {
        let response = admin.request(method, path).send().await;
        assert_eq!((response.status.as_u16(), &response.json()["code"]), (status, &json!(code)), "{method} {path}");
    }

    for path in ["/healthz", "/readyz", "/metrics", "/routes", "/config", "/openapi.json", "/docs"] {
        h.get(path).await.assert_error(404, 5);
    }
    assert!(h.upstream.calls().is_empty(), "no admin path reached the upstream");
}

#[tokio::test]
async fn readiness_is_the_gateways_own_and_names_an_upstream_that_cannot_be_reached() {
    let url = Upstream::closed_url().await;
    // One dead backend does not take the replica (and every other route) out of its Service.
    let gateway = Gateway::start(&url, "").await;
    let admin = gateway.admin().await;
    let ready = admin.request("GET", "/readyz").send().await;
    let report = ready.json();
    assert_eq!(ready.status, 200, "{report}");
    assert_eq!(report["status"], "ready");
    assert_eq!(report["upstreams"][0]["ready"], false, "the upstream's state is in the body");
    assert_eq!(report["upstreams"][0]["endpoints"][0]["ready"], false);

    // The strict mode asks for every upstream.
    let strict = Gateway::start(&url, "readiness = \"upstreams\"").await;
    let admin = strict.admin().await;
    let ready = admin.request("GET", "/readyz").send().await;
    let report = ready.json();
    assert_eq!(ready.status, 503, "{report}");
    assert_eq!(report["status"], "not ready");
    let reason = report["reasons"][0].as_str().unwrap();
    assert!(reason.contains("upstream test") && reason.contains(&url[7..]), "{reason}");
    assert_eq!(admin.request("GET", "/healthz").send().await.status, 200, "alive, though not ready");
}

#[cfg(feature = "otlp")]
mod otlp {
    use crate::support::collector::{Collector, attribute, hex, int, string, unhex};

    use super::*;

    #[tokio::test]
    async fn a_request_is_a_server_span_and_its_upstream_call_a_client_span_below_it() {
        let collector = Collector::default();
        let endpoint = collector.start_grpc().await;
        let upstream = Upstream::start().await;
        let config = format!(
            "[tracing]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"edge-gateway\"\nbatch_delay = \"50ms\"\n"
        );
        let gateway = Gateway::start(&upstream.url(), &config).await;
        let unsampled = "00-11111111111111111111111111111111-00f067aa0ba902b7-00";
        gateway.client.request("GET", "/v1/shelves/1").header("traceparent", unsampled).send().await;
        upstream.reply(Reply::status(Code::Internal, "boom"));
        let response = gateway
            .client
            .request("GET", "/v1/shelves/2")
            .header("traceparent", TRACEPARENT)
            .header("user-agent", "span-test/1")
            .send()
            .await;
        assert_eq!(response.status, 500);
        let sent_up = upstream.last_call().metadata["traceparent"].to_str().unwrap().to_owned();

        let spans = collector.spans_of(&unhex(TRACE_ID), 2).await;
        let (resource, server) = spans.iter().find(|(_, s)| s.kind == 2).expect("a SERVER span").clone();
        let (_, client) = spans.iter().find(|(_, s)| s.kind == 3).expect("a CLIENT span").clone();

        // The request: a SERVER span whose parent is the caller's span.
        assert_eq!(hex(&server.parent_span_id), "00f067aa0ba902b7", "the caller's span is its parent");
        assert_eq!(server.name, "GET /v1/shelves/{shelf}");
        assert!(server.end_time_unix_nano > server.start_time_unix_nano);
        assert_eq!(server.status.as_ref().map(|s| s.code), Some(2), "a 500 is an error span");
        let at = |key: &str| attribute(&server.attributes, key).cloned();
        assert_eq!(at("http.request.method"), string("GET"));
        assert_eq!(at("http.route"), string("/v1/shelves/{shelf}"));
        assert_eq!(at("url.path"), string("/v1/shelves/2"));
        assert_eq!(at("url.scheme"), string("http"));
        assert_eq!(at("http.response.status_code"), int(500));
        assert_eq!(at("error.type"), string("500"));
        assert_eq!(at("network.protocol.version"), string("1.1"));
        assert_eq!(at("server.address"), string("127.0.0.1"));
        assert_eq!(at("server.port"), int(i64::from(gateway.addr.port())));
        assert_eq!(at("client.address"), string("127.0.0.1"));
        assert_eq!(at("user_agent.original"), string("span-test/1"));
        assert_eq!(at("protogate.request_id"), string(response.header("x-request-id").unwrap()));
        assert_eq!(at("rpc.system"), None, "the pre-1.38 names are gone");
        assert_eq!(attribute(&resource, "service.name").cloned(), string("edge-gateway"));

        // The call: a CLIENT span below it, the parent the upstream was told of.
        assert_eq!(hex(&client.span_id), sent_up.split('-').nth(2).unwrap(), "the upstream's parent is the call");
        assert_eq!(client.parent_span_id, server.span_id, "the call is the request's child");
        assert_eq!(client.name, "protogate.testing.v1.Bookstore/GetShelf");
        assert!(client.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(client.end_time_unix_nano <= server.end_time_unix_nano);
        assert_eq!(client.status.as_ref().map(|s| s.code), Some(2), "INTERNAL is an error");
        let at = |key: &str| attribute(&client.attributes, key).cloned();
        assert_eq!(at("rpc.system.name"), string("grpc"));
        assert_eq!(at("rpc.method"), string("protogate.testing.v1.Bookstore/GetShelf"));
        assert_eq!(at("rpc.response.status_code"), string("INTERNAL"));
        assert_eq!(at("error.type"), string("INTERNAL"));
        let upstream_addr: std::net::SocketAddr = upstream.url().trim_start_matches("http://").parse().unwrap();
        assert_eq!(at("server.address"), string("127.0.0.1"), "the host, not the URL");
        assert_eq!(at("server.port"), int(i64::from(upstream_addr.port())));

        let unsampled_id = [0x11u8; 16];
        assert!(
            !collector.all().iter().any(|(_, s)| s.trace_id == unsampled_id),
            "a trace its caller did not sample is not exported"
        );
    }

    /// A composite route's calls are spans of their own, each the parent its upstream saw.
    #[tokio::test]
    async fn each_call_of_a_composite_route_is_a_client_span() {
        let collector = Collector::default();
        let endpoint = collector.start_grpc().await;
        let config = format!(
            "[tracing]\notlp_endpoint = \"{endpoint}\"\nbatch_delay = \"50ms\"\n\n\
             [[aggregate]]\nroute = \"GET /bff/users/{{id}}/dashboard\"\n\
             calls.user = {{ method = \"example.users.v1.UserService/GetUser\", request = {{ id = \"{{path.id}}\" }} }}\n\
             calls.orders = {{ method = \"example.orders.v1.OrderService/ListOrders\", request = {{ user_id = \"{{path.id}}\" }} }}\n"
        );
        let (upstream, gateway) = crate::support::start_examples(&config).await;
        let response =
            gateway.client.request("GET", "/bff/users/42/dashboard").header("traceparent", TRACEPARENT).send().await;
        assert_eq!(response.status, 200, "{}", response.text());

        let spans = collector.spans_of(&unhex(TRACE_ID), 3).await;
        let server = spans.iter().find(|(_, s)| s.kind == 2).map(|(_, s)| s.clone()).expect("a SERVER span");
        assert_eq!(server.name, "GET /bff/users/{id}/dashboard");
        let mut calls: Vec<_> = spans.iter().filter(|(_, s)| s.kind == 3).map(|(_, s)| s.clone()).collect();
        calls.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = calls.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["example.orders.v1.OrderService/ListOrders", "example.users.v1.UserService/GetUser"]);
        for call in &calls {
            assert_eq!(call.parent_span_id, server.span_id);
            let seen = upstream.calls().into_iter().find(|c| c.path.trim_start_matches('/') == call.name).unwrap();
            let parent = seen.metadata["traceparent"].to_str().unwrap().split('-').nth(2).unwrap().to_owned();
            assert_eq!(hex(&call.span_id), parent, "{} saw its own span as parent", call.name);
        }
        assert_ne!(calls[0].span_id, calls[1].span_id);
    }
}

#[tokio::test]
async fn metrics_name_the_build_and_the_process_as_every_exporter_does() {
    let h = Harness::start().await;
    let metrics = scrape(&h.gateway.admin().await).await;
    let build = format!("protogate_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&metrics, &build), Some(1.0), "{metrics}");
    let cpu = sample(&metrics, "process_cpu_seconds_total").expect("CPU time");
    assert!(cpu > 0.0, "{cpu}");
    let rss = sample(&metrics, "process_resident_memory_bytes").expect("RSS");
    assert!(rss > 1_000_000.0, "{rss}");
    let open = sample(&metrics, "process_open_fds").expect("open fds");
    let max = sample(&metrics, "process_max_fds").expect("fd limit");
    assert!(open >= 3.0 && open < max, "{open} of {max}");
    let started = sample(&metrics, "process_start_time_seconds").expect("start time");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started > now - 3600.0 && started <= now + 1.0, "started at {started}, now {now}");
    assert!(metrics.contains("# TYPE process_cpu_seconds_total counter"), "{metrics}");
}
