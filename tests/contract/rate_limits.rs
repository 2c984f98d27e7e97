//! Rate limits: in memory per replica, in Redis across replicas, keyed by IP (trusting only
//! configured proxies), header, claim or route; every answer of a limited route with
//! `RateLimit-Policy` and `RateLimit` (the IETF draft), a 429 with `Retry-After` too.

use std::time::Instant;

use crate::support::{Gateway, Harness, Redis, Upstream, config};

fn limits(extra: &str, limits: &str) -> String {
    format!("{extra}\n[[policy]]\nname = \"limited\"\nrate_limits = [{limits}]\n")
}

#[tokio::test]
async fn a_burst_then_429_with_retry_after_and_ratelimit_headers() {
    let h = Harness::start_with(&limits("", r#"{ key = "ip", per_minute = 60, burst = 3 }"#)).await;
    for left in [2, 1, 0] {
        let admitted = h.get("/v1/shelves/1").await;
        assert_eq!(admitted.status, 200);
        assert_eq!(admitted.header("ratelimit-policy"), Some(r#""limited.ip";q=3;w=3"#));
        let state = admitted.header("ratelimit").unwrap();
        assert!(state.starts_with(&format!(r#""limited.ip";r={left};t="#)), "{state}");
    }
    let refused = h.get("/v1/shelves/1").await;
    let json = refused.assert_error(429, 8);
    assert!(json["message"].as_str().unwrap().starts_with("rate limit of 3 requests exceeded for ip"), "{json}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-policy"), Some(r#""limited.ip";q=3;w=3"#));
    assert_eq!(refused.header("ratelimit"), Some(r#""limited.ip";r=0;t=1"#));
    assert_eq!(h.upstream.calls().len(), 3, "the refused request never reached the upstream");
    // A route no limit holds says nothing of limits.
    let other = Harness::start().await;
    assert_eq!(other.get("/v1/shelves/1").await.header("ratelimit"), None);
}

#[tokio::test]
async fn each_header_value_has_its_own_counter_and_a_missing_one_shares_one() {
    let h = Harness::start_with(&limits("", r#"{ key = "header:x-api-key", per_hour = 10, burst = 1 }"#)).await;
    for key in ["a", "b", "c"] {
        assert_eq!(h.request("GET", "/v1/shelves/1").header("x-api-key", key).send().await.status, 200, "{key}");
    }
    assert_eq!(h.request("GET", "/v1/shelves/1").header("x-api-key", "a").send().await.status, 429);
    assert_eq!(h.get("/v1/shelves/1").await.status, 200);
    assert_eq!(h.get("/v1/shelves/1").await.status, 429, "no header: one shared counter, not a way around");
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let limit = r#"{ key = "ip", per_hour = 10, burst = 1 }"#;
    let trusted = Harness::start_with(&limits("[rate_limit]\ntrusted_proxies = [\"127.0.0.1/32\"]", limit)).await;
    for client in ["203.0.113.7", "203.0.113.8"] {
        let response = trusted.request("GET", "/v1/shelves/1").header("x-forwarded-for", client).send().await;
        assert_eq!(response.status, 200, "{client} has its own counter");
    }
    let again = trusted.request("GET", "/v1/shelves/1").header("x-forwarded-for", "203.0.113.7").send().await;
    assert_eq!(again.status, 429);

    let untrusted = Harness::start_with(&limits("", limit)).await;
    let first = untrusted.request("GET", "/v1/shelves/1").header("x-forwarded-for", "203.0.113.7").send().await;
    assert_eq!(first.status, 200);
    let spoofed = untrusted.request("GET", "/v1/shelves/1").header("x-forwarded-for", "203.0.113.8").send().await;
    assert_eq!(spoofed.status, 429, "a client cannot pick its own address");
}

#[tokio::test]
async fn three_replicas_share_one_limit_in_redis() {
    let redis = Redis::start().await;
    let upstream = Upstream::start().await;
    let upstreams =
        format!("[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\n", upstream.url());
    let settings = format!("[rate_limit]\nbackend = \"redis\"\nredis_url = \"{}\"", redis.url());
    // 20 at once, then one a second.
    let toml = limits(&settings, r#"{ key = "route", per_minute = 60, burst = 20 }"#);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Gateway::with_config(config(&toml, &upstreams)).await);
    }
    let started = Instant::now();
    let mut admitted = 0;
    let mut refused = 0;
    for i in 0..90 {
        let response = replicas[i % 3].client.request("GET", "/v1/shelves/1").send().await;
        if i == 0 {
            let state = response.header("ratelimit").unwrap();
            assert!(state.starts_with(r#""limited.route";r=19;t="#), "one of 20 taken, by Redis's count: {state}");
        }
        let status = response.status;
        match status.as_u16() {
            200 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let refills = started.elapsed().as_secs() + 1;
    assert!((20..=20 + refills).contains(&admitted), "admitted {admitted} of 90 (limit 20, {refills} refills)");
    assert_eq!(admitted + refused, 90);
    assert_eq!(upstream.calls().len() as u64, admitted, "refused requests never reached the upstream");
    eprintln!("three replicas, one Redis limit of 20 (+1/s): {admitted} admitted, {refused} refused");
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_or_closed_as_configured() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let limit = r#"{ key = "ip", per_second = 1 }"#;
    let open = Harness::start_with(&limits(
        &format!("[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://{closed}\"\nredis_timeout = \"200ms\""),
        limit,
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(open.get("/v1/shelves/1").await.status, 200, "fail-open: requests pass");
    }
    assert_eq!(open.gateway.current().policies().limiter().backend_errors(), 3, "and are counted");
    let shut = Harness::start_with(&limits(
        &format!(
            "[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://{closed}\"\non_backend_error = \"deny\"\nredis_timeout = \"200ms\""
        ),
        limit,
    ))
    .await;
    let json = shut.get("/v1/shelves/1").await.assert_error(503, 14);
    assert!(json["message"].as_str().unwrap().starts_with("the rate limit backend is unavailable"), "{json}");
    assert!(shut.upstream.calls().is_empty());
}
