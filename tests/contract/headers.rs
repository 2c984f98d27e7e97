//! Headers ↔ metadata, both ways; request ids; forwarding headers.

use serde_json::json;
use tonic::Code;

use crate::support::{Harness, Reply};

#[tokio::test]
async fn request_headers_become_upstream_metadata() {
    let h = Harness::start().await;
    let response = h
        .request("GET", "/v1/shelves/1")
        .header("Grpc-Metadata-Tenant", "acme")
        .header("Grpc-Metadata-Trace-Bin", "AAEC")
        .header("Authorization", "Bearer abc")
        .header("X-Request-Id", "req-123")
        .header("Cookie", "session=secret")
        .header("Accept-Language", "fr")
        .send()
        .await;
    assert_eq!(response.status, 200);
    let md = h.upstream.last_call().metadata;
    assert_eq!(md["tenant"], "acme");
    assert_eq!(md["trace-bin"], "AAEC");
    assert_eq!(md["authorization"], "Bearer abc");
    assert_eq!(md["x-request-id"], "req-123");
    assert_eq!(md["x-forwarded-for"], "127.0.0.1");
    assert_eq!(md["x-forwarded-host"], h.gateway.addr.to_string());
    assert_eq!(md["x-forwarded-proto"], "http");
    assert!(md.get("cookie").is_none() && md.get("accept-language").is_none(), "only the contract's headers go up");
    assert_eq!(response.header("x-request-id"), Some("req-123"), "the id is echoed");
}

#[tokio::test]
async fn a_request_id_is_generated_when_absent() {
    let h = Harness::start().await;
    let first = h.get("/v1/shelves/1").await;
    let id = first.header("x-request-id").expect("an id on the response").to_owned();
    assert_eq!(uuid_version(&id), Some(7), "{id}");
    assert_eq!(h.upstream.last_call().metadata["x-request-id"], id.as_str(), "the same id went upstream");
    let second = h.get("/v1/shelves/1").await;
    assert_ne!(second.header("x-request-id"), Some(id.as_str()));
    // Errors the gateway answers itself carry it too.
    let missing = h.get("/nowhere").await;
    assert!(missing.header("x-request-id").is_some());
}

#[tokio::test]
async fn a_malformed_request_id_is_replaced_before_it_reaches_the_upstream() {
    let h = Harness::start().await;
    for bad in ["has spaces in it", &"x".repeat(200), "new\tline"] {
        let response = h.request("GET", "/v1/shelves/1").header("x-request-id", bad).send().await;
        let id = response.header("x-request-id").unwrap().to_owned();
        assert_eq!(uuid_version(&id), Some(7), "{bad:?} replaced by a generated id: {id}");
        assert_eq!(h.upstream.last_call().metadata["x-request-id"], id.as_str());
    }
}

fn uuid_version(id: &str) -> Option<u32> {
    let parts: Vec<&str> = id.split('-').collect();
    (parts.len() == 5 && id.len() == 36).then(|| parts[2].chars().next()?.to_digit(16))?
}

#[tokio::test]
async fn hop_by_hop_headers_never_reach_the_upstream() {
    let h = Harness::start().await;
    let response = h
        .request("GET", "/v1/shelves/1")
        .header("Connection", "keep-alive, Grpc-Metadata-Private")
        .header("Grpc-Metadata-Private", "p")
        .header("Grpc-Metadata-Connection", "close")
        .header("Grpc-Metadata-Te", "trailers")
        .header("Grpc-Metadata-Grpc-Status", "0")
        .header("Grpc-Metadata-Kept", "k")
        .send()
        .await;
    assert_eq!(response.status, 200);
    let md = h.upstream.last_call().metadata;
    assert!(md.get("private").is_none());
    assert!(md.get("connection").is_none());
    assert_eq!(md.get("te").map(|v| v.to_str().unwrap()), Some("trailers"), "tonic's own TE header only");
    assert_eq!(md["kept"], "k");
}

#[tokio::test]
async fn upstream_headers_and_trailers_come_back_prefixed() {
    let h = Harness::start().await;
    h.upstream.reply(
        Reply::json(json!({"id": "1"}))
            .header("x-served-by", "shelf-service")
            .header("session-bin", "\u{1}\u{2}")
            .trailer("x-cost", "42"),
    );
    let response = h.get("/v1/shelves/1").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("grpc-metadata-x-served-by"), Some("shelf-service"));
    assert_eq!(response.header("grpc-metadata-session-bin"), Some("AQI"), "-bin metadata is base64");
    assert_eq!(response.header("grpc-trailer-x-cost"), Some("42"));
    assert!(response.header("grpc-metadata-content-type").is_none());
    assert!(response.header("grpc-trailer-grpc-status").is_none());
}

#[tokio::test]
async fn error_metadata_comes_back_too() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::status(Code::NotFound, "no shelf").trailer("x-trace", "t-1"));
    let response = h.get("/v1/shelves/404").await;
    response.assert_error(404, 5);
    assert_eq!(response.header("grpc-trailer-x-trace"), Some("t-1"));
}

#[tokio::test]
async fn bad_header_values_are_400() {
    let h = Harness::start().await;
    let bin = h.request("GET", "/v1/shelves/1").header("Grpc-Metadata-Key-Bin", "not base64!").send().await;
    let json = bin.assert_error(400, 3);
    assert_eq!(json["message"], "header grpc-metadata-key-bin: a -bin value must be base64");
    let timeout = h.request("GET", "/v1/shelves/1").header("Grpc-Timeout", "soon").send().await;
    let json = timeout.assert_error(400, 3);
    assert!(json["message"].as_str().unwrap().contains("is not a gRPC timeout"));
    assert!(h.upstream.calls().is_empty());
}

#[tokio::test]
async fn listed_request_headers_reach_the_upstream_and_owned_ones_cannot_be_listed() {
    let h = Harness::start_with("[headers]\nforward = [\"Accept-Language\", \"cookie\"]").await;
    let rest = h.request("GET", "/v1/shelves/1").header("accept-language", "fr").header("cookie", "s=1");
    assert_eq!(rest.send().await.status, 200);
    let md = h.upstream.last_call().metadata;
    assert_eq!((md["accept-language"].to_str().unwrap(), md["cookie"].to_str().unwrap()), ("fr", "s=1"));
    let connect = h
        .request("POST", "/protogate.testing.v1.Bookstore/GetShelf")
        .header("connect-protocol-version", "1")
        .header("cookie", "s=2")
        .json(&json!({"shelf": "1"}));
    assert_eq!(connect.send().await.status, 200);
    assert_eq!(h.upstream.last_call().metadata["cookie"], "s=2", "every door");

    let config =
        protogate::config::Config::from_toml("[headers]\nforward = [\"authorization\", \"x-forwarded-for\"]").unwrap();
    let errors: Vec<String> = protogate::gateway::validate(&config).iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("headers.forward[0]") && errors[0].contains("set by the gateway"), "{errors:?}");
}

#[tokio::test]
async fn exposed_upstream_metadata_is_a_plain_header_too() {
    let h = Harness::start_with("[headers]\nexpose = [\"X-Total-Count\"]").await;
    h.upstream.reply(Reply::json(json!({"id": "1"})).header("x-total-count", "42").header("x-other", "o"));
    let response = h.get("/v1/shelves/1").await;
    assert_eq!(response.header("x-total-count"), Some("42"));
    assert_eq!(response.header("grpc-metadata-x-total-count"), Some("42"), "still metadata as well");
    assert_eq!(response.header("x-other"), None, "only what is listed");
}
