//! CORS: preflights answered at the edge, allowed and refused origins, exposed headers.

use serde_json::json;

use crate::support::{Harness, Reply};

const CORS: &str = r#"
[cors]
allow_origins = ["https://app.example", "https://*.example.org"]
allow_credentials = true
max_age = "10m"
"#;

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_at_the_edge() {
    let h = Harness::start_with(CORS).await;
    let response = h
        .request("OPTIONS", "/v1/shelves/1")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .header("access-control-request-headers", "content-type, grpc-metadata-tenant")
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(response.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(response.header("access-control-allow-methods"), Some("GET,POST,PUT,PATCH,DELETE"));
    assert_eq!(response.header("access-control-allow-headers"), Some("content-type, grpc-metadata-tenant"));
    assert_eq!(response.header("access-control-max-age"), Some("600"));
    assert!(h.upstream.calls().is_empty(), "a preflight never reaches an upstream");
}

#[tokio::test]
async fn a_refused_origin_gets_no_cors_headers() {
    let h = Harness::start_with(CORS).await;
    for origin in ["https://evil.example", "https://example.org", "http://app.example"] {
        let preflight = h
            .request("OPTIONS", "/v1/shelves/1")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await;
        let get = h.request("GET", "/v1/shelves/1").header("origin", origin).send().await;
        for response in [&preflight, &get] {
            let granted: Vec<&str> =
                response.headers.keys().map(|k| k.as_str()).filter(|k| k.starts_with("access-control-")).collect();
            assert!(granted.is_empty(), "{origin}: {granted:?}");
        }
    }
}

#[tokio::test]
async fn an_allowed_origin_may_read_the_grpc_headers() {
    let h = Harness::start_with(CORS).await;
    h.upstream.reply(Reply::json(json!({"id": "1"})).header("x-tenant", "t").trailer("x-cost", "2"));
    let response = h.request("GET", "/v1/shelves/1").header("origin", "https://deep.sub.example.org").send().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), Some("https://deep.sub.example.org"));
    let exposed: Vec<&str> =
        response.header("access-control-expose-headers").unwrap().split(',').map(str::trim).collect();
    for name in ["grpc-status", "grpc-message", "x-request-id", "grpc-metadata-x-tenant", "grpc-trailer-x-cost"] {
        assert!(exposed.contains(&name), "{name} in {exposed:?}");
    }
    assert!(response.headers.get_all("vary").iter().any(|v| v.to_str().unwrap().contains("origin")));
}

#[tokio::test]
async fn without_cors_configured_no_origin_is_allowed() {
    let h = Harness::start().await;
    let response = h.request("GET", "/v1/shelves/1").header("origin", "https://app.example").send().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), None);
    let preflight = h
        .request("OPTIONS", "/v1/shelves/1")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await;
    assert_eq!(preflight.header("access-control-allow-origin"), None);
}
