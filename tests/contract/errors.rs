//! Errors: the code → HTTP table, status details, unreachable upstreams, deadlines, limits.

use std::time::{Duration, Instant};

use prost::Message;
use protogate::pb::google::rpc;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::Code;

use crate::support::{Gateway, Harness, Reply, Upstream, config};

#[tokio::test]
async fn every_grpc_code_maps_to_its_http_status() {
    let h = Harness::start().await;
    let table = [
        (Code::Cancelled, 499),
        (Code::Unknown, 500),
        (Code::InvalidArgument, 400),
        (Code::DeadlineExceeded, 504),
        (Code::NotFound, 404),
        (Code::AlreadyExists, 409),
        (Code::PermissionDenied, 403),
        (Code::Unauthenticated, 401),
        (Code::ResourceExhausted, 429),
        (Code::FailedPrecondition, 400),
        (Code::Aborted, 409),
        (Code::OutOfRange, 400),
        (Code::Unimplemented, 501),
        (Code::Internal, 500),
        (Code::Unavailable, 503),
        (Code::DataLoss, 500),
    ];
    for (code, http) in table {
        // Every try answers so: a GET that meets UNAVAILABLE is tried again.
        h.upstream.script(move |_| Reply::status(code, &format!("failed with {code:?}")));
        let response = h.get("/v1/shelves/1").await;
        let json = response.assert_error(http, code as i32);
        assert_eq!(json["message"], format!("failed with {code:?}"));
        assert_eq!(json["details"], json!([]));
    }
}

#[tokio::test]
async fn status_details_render_as_typed_json() {
    let h = Harness::start().await;
    let bad_request = rpc::BadRequest {
        field_violations: vec![rpc::bad_request::FieldViolation {
            field: "shelf.theme".into(),
            description: "too long".into(),
            ..Default::default()
        }],
    };
    let info = rpc::ErrorInfo {
        reason: "QUOTA".into(),
        domain: "example.com".into(),
        metadata: [("limit".to_owned(), "5".to_owned())].into(),
    };
    let retry = rpc::RetryInfo { retry_delay: Some(prost_types::Duration { seconds: 1, nanos: 500_000_000 }) };
    let shelf = vec![0x08, 0x03]; // protogate.testing.v1.Shelf { id: 3 }, a type only the loaded descriptors know
    h.upstream.reply(Reply::status_with_details(
        Code::InvalidArgument,
        "bad shelf",
        vec![
            ("google.rpc.BadRequest", bad_request.encode_to_vec()),
            ("google.rpc.ErrorInfo", info.encode_to_vec()),
            ("google.rpc.RetryInfo", retry.encode_to_vec()),
            ("protogate.testing.v1.Shelf", shelf),
            ("acme.Unknown", vec![1, 2, 3]),
        ],
    ));
    let json = h.post_json("/v1/shelves", json!({})).await.assert_error(400, 3);
    assert_eq!(
        json,
        json!({
            "code": 3,
            "message": "bad shelf",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": "shelf.theme", "description": "too long"}]},
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                 "reason": "QUOTA", "domain": "example.com", "metadata": {"limit": "5"}},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.500s"},
                {"@type": "type.googleapis.com/protogate.testing.v1.Shelf", "id": "3"},
                {"@type": "type.googleapis.com/acme.Unknown", "value": "AQID"}
            ]
        })
    );
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_with_code_14() {
    let gateway = Gateway::start(&Upstream::closed_url().await, "").await;
    let response = gateway.client.request("GET", "/v1/shelves/1").send().await;
    let json = response.assert_error(502, 14);
    // The client learns which upstream; the endpoint's address and the cause are the operator's.
    assert_eq!(json["message"], "upstream test is unreachable");
    let line = &gateway.access_log(1).await[0];
    let logged = line["error"].as_str().unwrap();
    assert!(logged.starts_with("upstream test is unreachable: connecting to http://127.0.0.1:"), "{line}");
    assert!(logged.contains("onnection refused"), "{line}");
}

#[tokio::test]
async fn a_connection_reset_before_the_response_is_502() {
    // Accepts connections and drops them at once, before any HTTP/2 exchange.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let gateway = Gateway::start(&format!("http://{addr}"), "").await;
    gateway.client.request("GET", "/v1/shelves/1").send().await.assert_error(502, 14);
}

#[tokio::test]
async fn a_service_without_an_upstream_is_502() {
    let upstream = Upstream::start().await;
    let upstreams = format!(
        "[[upstreams]]\nname = \"only-everything\"\nservices = [\"protogate.testing.v1.EverythingService\"]\nendpoints = [\"{}\"]\n",
        upstream.url()
    );
    let gateway = Gateway::with_config(config("", &upstreams)).await;
    let json = gateway.client.request("GET", "/v1/shelves/1").send().await.assert_error(502, 14);
    assert_eq!(json["message"], "no upstream is configured for protogate.testing.v1.Bookstore");
    let served = gateway.client.request("GET", "/v1/everything").send().await;
    assert_eq!(served.status, 200);
}

#[tokio::test]
async fn the_client_deadline_ends_a_slow_call_with_504() {
    let h = Harness::start().await;
    h.upstream.script(|_| Reply::default().delay(Duration::from_secs(30)));
    let started = Instant::now();
    let response = h.request("GET", "/v1/shelves/1").header("grpc-timeout", "200m").send().await;
    let json = response.assert_error(504, 4);
    assert_eq!(json["message"], "upstream test did not answer within the 200ms deadline");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered when the deadline passed, not when the upstream did"
    );
    // The deadline was propagated: the upstream saw a grpc-timeout no longer than the client's.
    let sent = h.upstream.last_call().metadata["grpc-timeout"].to_str().unwrap().to_owned();
    let sent = protogate::metadata::parse_grpc_timeout(&sent).unwrap();
    assert!(sent <= Duration::from_millis(200) && sent > Duration::ZERO, "{sent:?}");
}

#[tokio::test]
async fn the_configured_timeout_applies_and_the_shorter_deadline_wins() {
    let upstream = Upstream::start().await;
    upstream.script(|_| Reply::default().delay(Duration::from_secs(30)));
    let upstreams = format!(
        "[[upstreams]]\nname = \"slow\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\ntimeout = \"150ms\"\n",
        upstream.url()
    );
    let gateway = Gateway::with_config(config("", &upstreams)).await;
    let json = gateway.client.request("GET", "/v1/shelves/1").send().await.assert_error(504, 4);
    assert_eq!(json["message"], "upstream slow did not answer within the 150ms deadline");
    let json =
        gateway.client.request("GET", "/v1/shelves/1").header("grpc-timeout", "10S").send().await.assert_error(504, 4);
    assert_eq!(json["message"], "upstream slow did not answer within the 150ms deadline", "config is shorter");
    let json =
        gateway.client.request("GET", "/v1/shelves/1").header("grpc-timeout", "50m").send().await.assert_error(504, 4);
    assert_eq!(json["message"], "upstream slow did not answer within the 50ms deadline", "client is shorter");
}

#[tokio::test]
async fn an_upstream_deadline_exceeded_is_504_too() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::status(Code::DeadlineExceeded, "backend timed out"));
    h.get("/v1/shelves/1").await.assert_error(504, 4);
}

#[tokio::test]
async fn x_http_code_sets_the_success_status_and_is_consumed() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({"id": "9"})).header("x-http-code", "201"));
    let created = h.post_json("/v1/shelves", json!({"theme": "t"})).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json(), json!({"id": "9"}));
    assert!(created.headers.keys().all(|k| !k.as_str().contains("http-code")), "{:?}", created.headers);
    h.upstream.reply(Reply::default().trailer("x-http-code", "204"));
    let deleted = h.request("DELETE", "/v1/shelves/9").send().await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.body.is_empty());
    h.upstream.reply(Reply::default().header("x-http-code", "banana"));
    assert_eq!(h.get("/v1/shelves/9").await.status, 200, "an invalid code is ignored");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_declared_or_chunked() {
    let h = Harness::start_with("max_body_bytes = 1024").await;
    let big = format!("{{\"theme\":\"{}\"}}", "x".repeat(2000));
    let declared =
        h.request("POST", "/v1/shelves").header("content-type", "application/json").body(big.clone()).send().await;
    let json = declared.assert_error(413, 8);
    assert_eq!(json["message"], "the request body is larger than the 1024-byte limit");
    let chunked = h
        .gateway
        .client
        .raw(
            format!(
                "POST /v1/shelves HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
                big.len()
            )
            .as_bytes(),
        )
        .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("\"code\":8"), "{chunked}");
    let small = h.post_json("/v1/shelves", json!({"theme": "ok"})).await;
    assert_eq!(small.status, 200, "the limit leaves room for normal bodies");
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415() {
    let h = Harness::start().await;
    let text = h.request("POST", "/v1/shelves").header("content-type", "text/plain").body("theme=x").send().await;
    let json = text.assert_error(415, 3);
    assert_eq!(json["message"], "unsupported content type \"text/plain\": send application/json");
    let missing = h.request("POST", "/v1/shelves").body("{}").send().await;
    missing.assert_error(415, 3);
    let form = h
        .request("POST", "/v1/shelves")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .await;
    form.assert_error(415, 3);
    for content_type in ["application/json; charset=utf-8", "application/merge-patch+json", "Application/JSON"] {
        let ok = h.request("POST", "/v1/shelves").header("content-type", content_type).body("{}").send().await;
        assert_eq!(ok.status, 200, "{content_type}");
    }
    let bodiless = h.request("POST", "/protogate.testing.v1.Bookstore/Ping").send().await;
    assert_eq!(bodiless.status, 200, "a bodiless request may omit Content-Type");
}
