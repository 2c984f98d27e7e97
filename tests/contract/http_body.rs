//! google.api.HttpBody: raw bytes with their content type, both ways, streamed when the
//! method streams.

use base64::Engine;
use bytes::Bytes;
use serde_json::json;
use tonic::Code;

use crate::support::{Harness, Reply};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_raw_body_goes_up_in_an_http_body_field_and_a_raw_response_comes_back() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({"contentType": "image/png", "data": b64(b"\x89PNG\r\n\x1a\n\x00")})));
    let response = h
        .request("PUT", "/v1/files/logo.png?unused=1")
        .header("content-type", "image/png")
        .body(Bytes::from_static(b"\x00\xffraw"))
        .send()
        .await;
    assert_eq!(response.status, 400, "an unknown query parameter is still refused");
    h.upstream.reply(Reply::json(json!({"contentType": "image/png", "data": b64(b"\x89PNG\r\n\x1a\n\x00")})));
    let response = h
        .request("PUT", "/v1/files/logo.png")
        .header("content-type", "image/png")
        .body(&b"\x00\xffraw"[..])
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("image/png"));
    assert_eq!(&response.body[..], b"\x89PNG\r\n\x1a\n\x00");
    assert_eq!(
        h.upstream.last_call().request,
        json!({"name": "logo.png", "file": {"contentType": "image/png", "data": b64(b"\x00\xffraw")}})
    );
}

#[tokio::test]
async fn a_method_taking_an_http_body_gets_the_whole_body() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({"int32Value": 3})));
    let response =
        h.request("POST", "/v1/files:digest").header("content-type", "text/csv").body("a,b\n1,2\n").send().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"int32Value": 3}), "a JSON response as usual");
    assert_eq!(h.upstream.last_call().request, json!({"contentType": "text/csv", "data": b64(b"a,b\n1,2\n")}));
}

#[tokio::test]
async fn an_upload_streams_one_message_per_chunk() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({"stringValue": "stored"})));
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let request = h.request("POST", "/v1/files:upload").header("content-type", "application/octet-stream");
    let response = tokio::spawn(request.send_chunks(rx));
    tx.send(Bytes::from_static(b"first chunk")).await.unwrap();
    h.upstream.wait_until("the first chunk upstream", |u| u.received() == 1).await;
    tx.send(Bytes::from(vec![7u8; 100_000])).await.unwrap();
    drop(tx);
    let mut response = response.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.rest().await, r#"{"stringValue":"stored"}"#);
    let call = h.upstream.last_call();
    let chunks = call.request.as_array().unwrap();
    assert_eq!(chunks[0], json!({"contentType": "application/octet-stream", "data": b64(b"first chunk")}));
    let rest: Vec<u8> = chunks[1..]
        .iter()
        .flat_map(|c| base64::engine::general_purpose::STANDARD.decode(c["data"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(rest, vec![7u8; 100_000]);
}

#[tokio::test]
async fn a_download_streams_the_bytes_under_the_first_content_type() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(vec![
        json!({"contentType": "text/plain", "data": b64(b"hello ")}),
        json!({"data": b64(b"world")}),
    ]));
    let mut response = h.request("GET", "/v1/files/greeting:download").send_streaming().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.rest().await, "hello world");
    assert_eq!(h.upstream.last_call().request, json!({"stringValue": "greeting"}));
}

#[tokio::test]
async fn a_download_that_fails_before_its_first_chunk_is_an_error_and_later_cuts_the_body() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(Vec::new()).ending(Code::NotFound, "no such file"));
    h.get("/v1/files/missing:download").await.assert_error(404, 5);

    h.upstream.reply(Reply::stream(vec![json!({"data": b64(b"partial")})]).ending(Code::DataLoss, "disk gone"));
    let response = h.request("GET", "/v1/files/broken:download").send_body_result().await;
    assert!(response.is_err(), "the body is cut short: {response:?}");
}
