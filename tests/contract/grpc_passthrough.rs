//! gRPC and gRPC-Web clients on the REST port: frames pass through to the upstream.

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use serde_json::json;
use tonic::Code;

use crate::support::{Gateway, Harness, Reply};

/// The generated stubs, in modules that mirror their packages (they refer to each other by
/// relative paths).
#[allow(unreachable_pub, clippy::all, clippy::pedantic)]
mod pb {
    pub mod protogate {
        pub mod testing {
            pub mod v1 {
                tonic::include_proto!("protogate.testing.v1");
            }
        }
    }
    pub mod google {
        pub mod api {
            pub use protogate::pb::google::api::*;
        }
    }
}

use pb::protogate::testing::v1::Everything;
use pb::protogate::testing::v1::everything_service_client::EverythingServiceClient;
use pb::protogate::testing::v1::stream_service_client::StreamServiceClient;

async fn channel(h: &Harness) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", h.gateway.addr)).unwrap().connect().await.unwrap()
}

#[tokio::test]
async fn a_grpc_client_calls_through_the_gateway_port() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({"stringValue": "pong"})).header("x-served-by", "test").trailer("x-cost", "3"));
    let mut client = EverythingServiceClient::new(channel(&h).await);
    let mut request = tonic::Request::new(Everything { string_value: "ping".into(), ..Default::default() });
    request.metadata_mut().insert("x-client", "grpc-test".parse().unwrap());
    let response = client.echo(request).await.unwrap();
    assert_eq!(response.metadata().get("x-served-by").unwrap(), "test");
    assert_eq!(response.get_ref().string_value, "pong");
    let call = h.upstream.last_call();
    assert_eq!(call.path, "/protogate.testing.v1.EverythingService/Echo");
    assert_eq!(call.request, json!({"stringValue": "ping"}));
    assert_eq!(call.metadata["x-client"], "grpc-test");
    assert_eq!(call.metadata["x-forwarded-for"], "127.0.0.1");
    assert!(call.metadata["user-agent"].to_str().unwrap().contains("tonic"), "the client's own user agent");
}

#[tokio::test]
async fn statuses_pass_through_to_grpc_clients() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::status(Code::NotFound, "no such thing"));
    let mut client = EverythingServiceClient::new(channel(&h).await);
    let status = client.echo(Everything::default()).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::NotFound, "no such thing"));
}

#[tokio::test]
async fn server_and_bidi_streams_pass_through() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(vec![json!({"int32Value": 1}), json!({"int32Value": 2})]));
    let mut client = StreamServiceClient::new(channel(&h).await);
    let mut stream = client.watch(Everything::default()).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        seen.push(message.int32_value);
    }
    assert_eq!(seen, [1, 2]);

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client.chat(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    for i in 1..=3 {
        tx.send(Everything { int32_value: i, ..Default::default() }).await.unwrap();
        // Each reply arrives before the next request is sent: both directions are live.
        assert_eq!(replies.message().await.unwrap().unwrap().int32_value, i);
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented_and_an_unreachable_upstream_unavailable() {
    let h = Harness::start().await;
    let channel = channel(&h).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Everything, Everything>::default();
    let path = http::uri::PathAndQuery::from_static("/protogate.testing.v1.EverythingService/Nope");
    let status = grpc.unary(tonic::Request::new(Everything::default()), path, codec).await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gateway = Gateway::start(&format!("http://{dead}"), "").await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.addr)).unwrap().connect().await.unwrap();
    let status = EverythingServiceClient::new(channel).echo(Everything::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("unreachable"), "{status:?}");
}

/// A gRPC-Web body: one message frame.
fn grpc_web_body(message: &Everything) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut body = BytesMut::new();
    body.put_u8(0);
    body.put_u32(encoded.len() as u32);
    body.put_slice(&encoded);
    body.freeze()
}

/// Splits a gRPC-Web response body into its message and its trailers frame.
fn parse_grpc_web(mut body: Bytes) -> (Vec<Everything>, String) {
    let mut messages = Vec::new();
    let mut trailers = String::new();
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 != 0 {
            trailers = String::from_utf8(payload.to_vec()).unwrap();
        } else {
            messages.push(Everything::decode(payload).unwrap());
        }
    }
    (messages, trailers)
}

#[tokio::test]
async fn grpc_web_from_a_browser_over_http1() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({"stringValue": "web pong"})));
    let request = Everything { string_value: "web ping".into(), ..Default::default() };
    let response = h
        .request("POST", "/protogate.testing.v1.EverythingService/Echo")
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(grpc_web_body(&request))
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/grpc-web+proto"));
    let (messages, trailers) = parse_grpc_web(response.body.clone());
    assert_eq!(messages[0].string_value, "web pong");
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    assert_eq!(h.upstream.last_call().request, json!({"stringValue": "web ping"}));
}

#[tokio::test]
async fn grpc_web_text_is_base64_both_ways() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::status(Code::PermissionDenied, "not for you"));
    let body = base64::engine::general_purpose::STANDARD.encode(grpc_web_body(&Everything::default()));
    let response = h
        .request("POST", "/protogate.testing.v1.EverythingService/Echo")
        .header("content-type", "application/grpc-web-text")
        .header("accept", "application/grpc-web-text")
        .body(body)
        .send()
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/grpc-web-text+proto"));
    // An error before any message: its status in the headers, gRPC-Web's trailers-only form.
    let status = response.header("grpc-status").map(str::to_owned).unwrap_or_else(|| {
        let decoded = base64::engine::general_purpose::STANDARD.decode(&response.body).unwrap();
        parse_grpc_web(decoded.into()).1
    });
    assert!(status.contains('7'), "{status}");
}

#[tokio::test]
async fn rest_and_grpc_share_the_listener() {
    let h = Harness::start().await;
    let rest = h.post_json("/v1/everything", json!({"int32Value": 5})).await;
    assert_eq!(rest.json(), json!({"int32Value": 5}));
    let mut client = EverythingServiceClient::new(channel(&h).await);
    let reply = client.echo(Everything { int32_value: 6, ..Default::default() }).await.unwrap();
    assert_eq!(reply.get_ref().int32_value, 6);
}

#[tokio::test]
async fn a_grpc_client_that_leaves_a_bidi_stream_leaves_nothing_behind() {
    let h = Harness::start().await;
    let mut client = StreamServiceClient::new(channel(&h).await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut replies = client.chat(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(Everything { int32_value: 1, ..Default::default() }).await.unwrap();
    assert_eq!(replies.message().await.unwrap().unwrap().int32_value, 1);
    assert!(h.gateway.current().streams().get() > 0);
    // The client drops the call: its HTTP/2 stream is reset, mid-conversation.
    drop((replies, tx, client));
    h.upstream.wait_until("the chat to be cancelled", |u| u.cancelled() == 1).await;
    h.gateway.wait_for_no_streams().await;
}
