//! Edge limits and compression: a fast 503 beyond the requests-in-progress cap, compressed
//! responses for clients that accept them (never for streams), compressed request bodies.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;

use crate::support::{Harness, Reply};

#[tokio::test]
async fn beyond_the_concurrency_cap_requests_get_a_fast_503() {
    let h = Harness::start_with("[limits]\nmax_concurrent_requests = 2").await;
    h.upstream.script(|_| Reply::default().delay(Duration::from_millis(300)));
    let slow = futures_util::future::join_all((0..2).map(|_| h.get("/v1/shelves/1")));
    let shed = async {
        h.upstream.wait_for_calls(2).await;
        h.get("/v1/shelves/1").await
    };
    let (slow, shed) = tokio::join!(slow, shed);
    let json = shed.assert_error(503, 14);
    assert!(json["message"].as_str().unwrap().contains("limit of requests in progress"), "{json}");
    assert!(shed.header("x-request-id").is_some(), "shed requests still carry an id");
    assert_eq!(slow.iter().map(|r| r.status.as_u16()).collect::<Vec<_>>(), [200, 200]);
    assert_eq!(h.upstream.calls().len(), 2, "the shed request never reached the upstream");
    assert_eq!(h.get("/v1/shelves/1").await.status, 200, "capacity comes back");
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn responses_are_compressed_for_clients_that_accept_it_but_streams_never() {
    let h = Harness::start().await;
    let long = "a long enough string to be worth compressing ".repeat(20);
    h.upstream.reply(Reply::json(json!({"stringValue": long})));
    let response = h.request("GET", "/v1/everything?int32Value=1").header("accept-encoding", "gzip").send().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&gunzip(&response.body)).unwrap()["stringValue"], long);

    h.upstream.reply(Reply::json(json!({"stringValue": long})));
    let plain = h.get("/v1/everything?int32Value=1").await;
    assert_eq!(plain.header("content-encoding"), None, "not asked for");

    h.upstream.reply(Reply::stream(vec![json!({"stringValue": long}), json!({"stringValue": long})]));
    let mut stream =
        h.request("GET", "/v1/streams/x").header("accept-encoding", "gzip, br, zstd").send_streaming().await;
    assert_eq!(stream.header("content-encoding"), None, "an NDJSON stream stays message by message");
    assert!(stream.next_json().await.unwrap()["result"].is_object());
}

#[tokio::test]
async fn a_compressed_body_is_accepted_and_still_limited() {
    let h = Harness::start_with("max_body_bytes = 1000").await;
    let gzip = |text: &str| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    };
    let response = h
        .request("POST", "/v1/everything")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(r#"{"stringValue": "zipped"}"#))
        .send()
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(h.upstream.last_call().request, json!({"stringValue": "zipped"}));
    // 20 KB of JSON compresses to well under the limit; decompressed it is over.
    let bomb = format!(r#"{{"stringValue": "{}"}}"#, "z".repeat(20_000));
    let response = h
        .request("POST", "/v1/everything")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(&bomb))
        .send()
        .await;
    response.assert_error(413, 8);
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431_and_the_gateway_keeps_serving() {
    let h = Harness::start_with("[limits]\nmax_headers = 50\nmax_header_bytes = 16384").await;
    // Over the limits: the gateway's own answer, with the request id.
    let mut many = h.request("GET", "/v1/shelves/1");
    for i in 0..60 {
        many = many.header(&format!("x-h{i}"), "v");
    }
    let json = many.send().await.assert_error(431, 8);
    assert!(json["message"].as_str().unwrap().contains("at most 50 allowed"), "{json}");
    let big = h.request("GET", "/v1/shelves/1").header("x-big", &"b".repeat(20_000)).send().await;
    big.assert_error(431, 8);
    // Far over them, or not HTTP at all: hyper answers alone, still in the contract's shape.
    let many: String = (0..10_000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("GET /v1/shelves/1 HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "b".repeat(100_000));
    for (request, status, code) in [
        (format!("GET /v1/shelves/1 HTTP/1.1\r\nhost: x\r\n{many}\r\n"), "431", 8),
        (huge, "431", 8),
        ("GET /v1/shelves/1 HTTP/1.1\r\nbad header line\r\n\r\n".to_owned(), "400", 3),
    ] {
        let reply = h.gateway.client.raw(request.as_bytes()).await;
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{}", &reply[..reply.len().min(200)]);
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], code, "{body}");
    }
    assert!(h.upstream.calls().is_empty());
    assert_eq!(h.get("/v1/shelves/1").await.status, 200);
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start_with("[limits]\nheader_read_timeout = \"200ms\"").await;
    let mut slow = tokio::net::TcpStream::connect(h.gateway.addr).await.unwrap();
    slow.write_all(b"GET /v1/shelves/1 HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
    // The gateway answers 408 or just closes; either way the connection ends by itself.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was not closed within 5 s");
    assert!(h.upstream.calls().is_empty());
    assert_eq!(h.get("/v1/shelves/1").await.status, 200, "others are served");
}
