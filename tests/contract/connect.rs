//! Connect protocol unary calls: JSON and binary messages, Connect's error shape, headers.

use base64::Engine;
use bytes::Bytes;
use prost::Message;
use serde_json::json;
use tonic::Code;

use crate::support::{Harness, Reply};

const ECHO: &str = "/protogate.testing.v1.EverythingService/Echo";

#[tokio::test]
async fn a_connect_json_call_with_headers_as_metadata() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({"stringValue": "pong"})).header("x-served-by", "t").trailer("x-cost", "2"));
    let response = h
        .request("POST", ECHO)
        .header("connect-protocol-version", "1")
        .header("connect-timeout-ms", "5000")
        .header("x-tenant", "acme")
        .json(&json!({"stringValue": "ping"}))
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json(), json!({"stringValue": "pong"}));
    assert_eq!(response.header("x-served-by"), Some("t"));
    assert_eq!(response.header("trailer-x-cost"), Some("2"));
    let call = h.upstream.last_call();
    assert_eq!(call.request, json!({"stringValue": "ping"}));
    assert_eq!(call.metadata["x-tenant"], "acme");
    assert_eq!(call.metadata["content-type"], "application/grpc", "the gateway speaks gRPC upstream");
    assert!(call.metadata.get("connect-protocol-version").is_none());
    let timeout = call.metadata["grpc-timeout"].to_str().unwrap();
    assert!(protogate::metadata::parse_grpc_timeout(timeout).unwrap().as_millis() <= 5000, "{timeout}");
}

#[tokio::test]
async fn a_connect_binary_call_passes_the_message_as_is() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({"int64Value": "42"})));
    // Everything's field 3 (int32_value) = 7, encoded by hand.
    let body = vec![0x18, 0x07];
    let response = h
        .request("POST", ECHO)
        .header("connect-protocol-version", "1")
        .header("content-type", "application/proto")
        .body(Bytes::from(body))
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/proto"));
    assert_eq!(&response.body[..], [0x20, 42], "field 4 (int64_value) = 42");
    assert_eq!(h.upstream.last_call().request, json!({"int32Value": 7}));
}

#[tokio::test]
async fn connect_errors_have_connects_shape() {
    let h = Harness::start().await;
    let info =
        protogate::pb::google::rpc::ErrorInfo { reason: "GONE".into(), domain: "test".into(), ..Default::default() };
    h.upstream.reply(Reply::status_with_details(
        Code::NotFound,
        "no such thing",
        vec![("google.rpc.ErrorInfo", info.encode_to_vec())],
    ));
    let response = h.request("POST", ECHO).header("connect-protocol-version", "1").json(&json!({})).send().await;
    assert_eq!(response.status, 404);
    let body = response.json();
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["message"], "no such thing");
    assert_eq!(body["details"][0]["type"], "google.rpc.ErrorInfo");
    let value = base64::engine::general_purpose::STANDARD_NO_PAD.decode(body["details"][0]["value"].as_str().unwrap());
    assert_eq!(protogate::pb::google::rpc::ErrorInfo::decode(&value.unwrap()[..]).unwrap().reason, "GONE");

    let unknown = h
        .request("POST", "/protogate.testing.v1.EverythingService/Nope")
        .header("connect-protocol-version", "1")
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(unknown.json()["code"], "unimplemented");
    let bad =
        h.request("POST", ECHO).header("connect-protocol-version", "1").json(&json!({"int32Value": "x"})).send().await;
    assert_eq!((bad.status.as_u16(), bad.json()["code"].as_str()), (400, Some("invalid_argument")));
    let streaming = h
        .request("POST", "/protogate.testing.v1.StreamService/Watch")
        .header("connect-protocol-version", "1")
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(streaming.json()["code"], "unimplemented");
    assert_eq!(h.upstream.calls().len(), 1, "only the first call reached the upstream");
}
