//! Upstreams with several endpoints: active health checks (grpc.health.v1, served by each
//! upstream with tonic-health), balancing, outlier ejection, the cap on calls in progress and
//! retries.

use std::time::Duration;

use protogate::upstream::endpoint::Health;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::Code;

use crate::support::{Gateway, Reply, Traffic, Upstream, config, take_request_info};

/// A gateway whose one upstream, `shelves`, has these endpoints and `extra` keys.
async fn gateway(endpoints: &[String], extra: &str) -> Gateway {
    let upstream = format!(
        "[[upstreams]]\nname = \"shelves\"\nservices = [\"*\"]\nendpoints = {}\n{extra}\n",
        serde_json::to_string(endpoints).unwrap()
    );
    Gateway::with_config(config("", &upstream)).await
}

const FAST_CHECKS: &str =
    "health_check = { interval = \"50ms\", timeout = \"300ms\", unhealthy_threshold = 1, healthy_threshold = 1 }";

/// Polls (at most 10 s) until `condition` holds.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 10 s: {what}");
}

/// What the gateway's health checks say of the endpoint at `url`.
fn health_of(gateway: &Gateway, url: &str) -> Health {
    let current = gateway.current();
    let upstream = current.upstreams().iter().next().unwrap();
    let endpoints = upstream.endpoint_states();
    endpoints.iter().find(|e| &**e.connection().label() == url).unwrap().health()
}

async fn scrape(gateway: &Gateway) -> String {
    let admin = gateway.admin().await;
    String::from_utf8(admin.request("GET", "/metrics").send().await.body.to_vec()).unwrap()
}

fn is_ejected(gateway: &Gateway, url: &str) -> bool {
    let current = gateway.current();
    let upstream = current.upstreams().iter().next().unwrap();
    let endpoints = upstream.endpoint_states();
    endpoints.iter().find(|e| &**e.connection().label() == url).unwrap().is_ejected()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_stopped_and_one_not_serving_fail_no_request_and_get_traffic_back() {
    let (a, b, c) = (Upstream::start().await, Upstream::start().await, Upstream::start().await);
    let (b_addr, b_url, c_url) = (b.addr, b.url(), c.url());
    let gateway = gateway(&[a.url(), b.url(), c.url()], FAST_CHECKS).await;
    let traffic = Traffic::start(&gateway.client, "/v1/shelves", 2);
    wait_until("every endpoint gets calls", || !a.calls().is_empty() && !b.calls().is_empty() && !c.calls().is_empty())
        .await;

    drop(b);
    c.set_serving(false).await;
    wait_until("both taken out", || {
        health_of(&gateway, &b_url) == Health::Unreachable && health_of(&gateway, &c_url) == Health::NotServing
    })
    .await;
    let (failed_at_detection, c_calls) = (traffic.failed(), c.calls().len());
    traffic.run_for(300).await;
    assert_eq!(traffic.failed(), failed_at_detection, "no request fails after detection");
    // At most the two calls that were in flight when the check said NOT_SERVING.
    assert!(c.calls().len() <= c_calls + 2, "{} calls to the NOT_SERVING endpoint", c.calls().len() - c_calls);

    // Both recover: the stopped one restarts on its port, the other serves again.
    let b = Upstream::serve(TcpListener::bind(b_addr).await.unwrap()).await;
    c.set_serving(true).await;
    let c_calls = c.calls().len();
    wait_until("traffic returns to both", || !b.calls().is_empty() && c.calls().len() > c_calls).await;
    traffic.run_for(100).await;
    let (sent, failures) = traffic.finish().await;
    assert!(sent >= 400, "{sent}");
    assert!(failures.is_empty(), "{} of {sent} requests failed: {failures:?}", failures.len());
}

#[tokio::test]
async fn an_upstream_whose_health_checks_reach_no_endpoint_is_502_not_503() {
    let closed = Upstream::closed_url().await;
    let gateway = gateway(std::slice::from_ref(&closed), FAST_CHECKS).await;
    wait_until("taken out", || health_of(&gateway, &closed) == Health::Unreachable).await;
    let response = gateway.client.request("GET", "/v1/shelves").send().await;
    assert_eq!(response.status, 502, "cannot be reached: the contract's 502");
    let mut body = response.json();
    take_request_info(&mut body);
    assert_eq!(body, json!({"code": 14, "message": "upstream shelves is unreachable", "details": []}));
    let ready: Value = gateway.admin().await.request("GET", "/readyz").send().await.json();
    assert_eq!(ready["upstreams"][0]["endpoints"][0]["health"], "unreachable");
}

#[tokio::test]
async fn an_upstream_with_no_healthy_endpoint_answers_503_at_once() {
    let upstream = Upstream::start().await;
    upstream.set_serving(false).await;
    let gateway = gateway(&[upstream.url()], FAST_CHECKS).await;
    wait_until("taken out", || health_of(&gateway, &upstream.url()) == Health::NotServing).await;
    let response = gateway.client.request("GET", "/v1/shelves").send().await;
    assert_eq!(response.status, 503);
    let mut body = response.json();
    assert!(take_request_info(&mut body).is_some());
    assert_eq!(body["code"], Code::Unavailable as i32);
    assert_eq!(body["message"], "upstream shelves has no healthy endpoint");
    let logged = &gateway.access_log(1).await[0]["error"];
    assert!(logged.as_str().unwrap().contains("NOT_SERVING"), "the log says why: {logged}");
    assert!(upstream.calls().is_empty(), "the call was not tried");
    let admin = gateway.admin().await;
    let ready = admin.request("GET", "/readyz").send().await;
    assert_eq!(ready.status, 200, "the gateway itself is ready");
    let ready: Value = ready.json();
    assert_eq!(ready["upstreams"][0]["ready"], false);
    assert_eq!(ready["upstreams"][0]["endpoints"][0]["health"], "not serving");

    upstream.set_serving(true).await;
    wait_until("back in", || health_of(&gateway, &upstream.url()) == Health::Serving).await;
    assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200);
}

#[tokio::test]
async fn endpoints_that_keep_failing_are_ejected_and_calls_go_to_the_others() {
    let (bad, good) = (Upstream::start().await, Upstream::start().await);
    bad.script(|_| Reply::status(Code::Unavailable, "overloaded"));
    let closed = Upstream::closed_url().await;
    let extra = "outlier_detection = { consecutive_failures = 2, base_ejection_time = \"30s\" }";
    let gateway = gateway(&[bad.url(), good.url(), closed.clone()], extra).await;
    for _ in 0..30 {
        // GET is idempotent: an UNAVAILABLE answer is tried again on another endpoint.
        assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200);
    }
    assert!(is_ejected(&gateway, &bad.url()), "UNAVAILABLE twice in a row");
    assert!(is_ejected(&gateway, &closed), "connection refused twice in a row");
    assert!(!is_ejected(&gateway, &good.url()));
    let bad_calls = bad.calls().len();
    assert!(bad_calls <= 3, "{bad_calls} calls to the failing endpoint");
    for _ in 0..20 {
        assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200);
    }
    assert_eq!(bad.calls().len(), bad_calls, "an ejected endpoint gets no calls");
    let metrics = scrape(&gateway).await;
    assert!(metrics.contains("protogate_upstream_endpoints{upstream=\"shelves\",state=\"ejected\"} 2"), "{metrics}");
    assert!(metrics.contains("protogate_upstream_endpoints{upstream=\"shelves\",state=\"available\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_lone_ejected_endpoint_is_still_tried_so_errors_stay_what_they_are() {
    let closed = Upstream::closed_url().await;
    let gateway = gateway(std::slice::from_ref(&closed), "outlier_detection = { consecutive_failures = 1 }").await;
    for _ in 0..3 {
        let response = gateway.client.request("GET", "/v1/shelves").send().await;
        assert_eq!(response.status, 502, "unreachable, as the contract says");
    }
    assert!(is_ejected(&gateway, &closed));
}

#[tokio::test]
async fn unavailable_is_retried_for_get_and_idempotent_methods_only() {
    let upstream = Upstream::start().await;
    let extra = "idempotent_methods = [\"protogate.testing.v1.Bookstore.DeleteShelf\"]\nretries = { max_retries = 2, backoff = \"1ms\" }\noutlier_detection = { consecutive_failures = 0 }";
    let gateway = gateway(&[upstream.url()], extra).await;

    upstream.reply(Reply::status(Code::Unavailable, "restarting"));
    let response = gateway.client.request("GET", "/v1/shelves").send().await;
    assert_eq!(response.status, 200, "GET is retried");
    let calls = upstream.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].metadata.get("grpc-previous-rpc-attempts").is_none());
    assert_eq!(calls[1].metadata["grpc-previous-rpc-attempts"], "1");

    upstream.reply(Reply::status(Code::Unavailable, "restarting"));
    let response = gateway.client.request("POST", "/v1/shelves").json(&json!({"theme": "x"})).send().await;
    assert_eq!(response.status, 503, "POST may have acted: not retried");
    assert_eq!(upstream.calls().len(), 3);

    upstream.reply(Reply::status(Code::Unavailable, "restarting"));
    let response = gateway.client.request("DELETE", "/v1/shelves/1").send().await;
    assert_eq!(response.status, 200, "listed as idempotent");
    assert_eq!(upstream.calls().len(), 5);

    // Three UNAVAILABLE in a row: the first try and both retries fail, the last answer stands.
    for _ in 0..3 {
        upstream.reply(Reply::status(Code::Unavailable, "down"));
    }
    let response = gateway.client.request("GET", "/v1/shelves").send().await;
    assert_eq!(response.status, 503);
    assert_eq!(upstream.calls().len(), 8);
    let metrics = scrape(&gateway).await;
    assert!(metrics.contains("protogate_upstream_retries_total{upstream=\"shelves\"} 4"), "{metrics}");
}

#[tokio::test]
async fn beyond_max_concurrent_requests_calls_answer_503_at_once() {
    let upstream = Upstream::start().await;
    upstream.script(|_| Reply::json(json!({})).delay(Duration::from_millis(800)));
    let gateway = gateway(&[upstream.url()], "max_concurrent_requests = 2").await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let client = gateway.client.clone();
            tokio::spawn(async move { client.request("GET", "/v1/shelves").send().await.status })
        })
        .collect();
    upstream.wait_for_calls(2).await;
    let response = gateway.client.request("GET", "/v1/shelves").send().await;
    assert_eq!(response.status, 503);
    let mut body = response.json();
    take_request_info(&mut body);
    assert_eq!(body["code"], Code::Unavailable as i32);
    assert!(body["message"].as_str().unwrap().contains("max_concurrent_requests"), "{body}");
    for call in slow {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(upstream.calls().len(), 2);
    assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200, "room again");
}

#[tokio::test]
async fn a_host_name_becomes_one_endpoint_per_address_it_resolves_to() {
    let upstream = Upstream::start().await;
    let port = upstream.addr.port();
    let named = format!("http://localhost:{port}");
    let gateway = gateway(std::slice::from_ref(&named), "resolve_interval = \"50ms\"").await;
    let labels = || -> Vec<String> {
        let current = gateway.current();
        let endpoints = current.upstreams().iter().next().unwrap().endpoint_states();
        endpoints.iter().map(|e| e.connection().label().to_string()).collect()
    };
    let resolved = format!("{named} (127.0.0.1:{port})");
    wait_until("localhost resolved", || labels().contains(&resolved)).await;
    // Every address of the name (127.0.0.1, and ::1 where the system has it), none unresolved.
    assert!(labels().iter().all(|l| l.starts_with(&format!("{named} ("))), "{:?}", labels());
    for _ in 0..10 {
        assert_eq!(gateway.client.request("GET", "/v1/shelves").send().await.status, 200);
    }
    assert_eq!(upstream.calls().len(), 10);
    let log = gateway.access_log(10).await;
    assert!(log.iter().any(|line| line["endpoint"] == resolved.as_str()), "{log:?}");
}
