//! Streaming: server streams as NDJSON and Server-Sent Events, client streams from NDJSON
//! bodies, every streaming method over WebSocket, and cancellation reaching the upstream.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tonic::Code;

use crate::support::{Client, Harness, Reply, take_request_info};

fn numbered(n: usize) -> Vec<Value> {
    (1..=n).map(|i| json!({"int32Value": i, "stringValue": format!("message {i}")})).collect()
}

// === server streams ===

#[tokio::test]
async fn a_server_stream_is_ndjson_one_result_per_message() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(numbered(3)).header("x-stream", "s-1"));
    let mut response = h.request("GET", "/v1/streams/topic?int32Value=7").send_streaming().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(response.header("grpc-metadata-x-stream"), Some("s-1"));
    for i in 1..=3 {
        assert_eq!(
            response.next_json().await.unwrap(),
            json!({"result": {"int32Value": i, "stringValue": format!("message {i}")}})
        );
    }
    assert_eq!(response.next_line().await, None);
    let call = h.upstream.last_call();
    assert_eq!(call.path, "/protogate.testing.v1.StreamService/Watch");
    assert_eq!(call.request, json!({"stringValue": "topic", "int32Value": 7}));
}

#[tokio::test]
async fn a_server_stream_takes_its_request_from_the_body() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(numbered(1)));
    let response = h.post_json("/v1/streams:watch", json!({"stringValue": "from body"})).await;
    assert_eq!(response.status, 200);
    assert_eq!(h.upstream.last_call().request, json!({"stringValue": "from body"}));
}

#[tokio::test]
async fn messages_are_written_as_they_arrive_and_leaving_cancels_the_upstream_call() {
    let h = Harness::start().await;
    // One message, then the stream stays open: the line must arrive before the stream ends.
    h.upstream.reply(Reply::stream(numbered(1)).hold());
    let mut response = h.request("GET", "/v1/streams/live").send_streaming().await;
    assert_eq!(response.next_json().await.unwrap()["result"]["int32Value"], 1);
    assert_eq!(h.upstream.open_streams(), 1);
    drop(response);
    h.upstream.wait_until("the upstream stream to be cancelled", |u| u.cancelled() == 1 && u.open_streams() == 0).await;
}

#[tokio::test]
async fn a_failure_mid_stream_ends_the_body_with_an_error_line() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(numbered(2)).ending(Code::NotFound, "the topic went away"));
    let mut response = h.request("GET", "/v1/streams/topic").send_streaming().await;
    assert_eq!(response.status, 200, "the status was sent with the first message");
    assert!(response.next_json().await.unwrap()["result"].is_object());
    assert!(response.next_json().await.unwrap()["result"].is_object());
    let mut error = response.next_json().await.unwrap();
    let request_id = response.header("x-request-id").unwrap().to_owned();
    assert_eq!(take_request_info(&mut error["error"]), Some(request_id), "the error line carries the request id");
    assert_eq!(error, json!({"error": {"code": 5, "message": "the topic went away", "details": []}}));
    assert_eq!(response.next_line().await, None);
}

#[tokio::test]
async fn a_fast_stream_s_lines_arrive_whole_and_in_order_and_its_error_last() {
    let h = Harness::start().await;
    // Thousands of small messages sent as fast as the upstream can: the gateway writes the
    // ones that are ready together, and no line may be split, lost or reordered across the
    // writes, over either HTTP version.
    let total = 5_000;
    for client in [Client::new(h.gateway.addr), Client::http2(h.gateway.addr)] {
        h.upstream.reply(Reply::stream(numbered(total)).ending(Code::Unavailable, "the feed stopped"));
        let mut response = client.request("GET", "/v1/streams/feed").header("te", "trailers").send_streaming().await;
        for i in 1..=total {
            let line = response.next_json().await.unwrap_or_else(|| panic!("the body ended before line {i}"));
            assert_eq!(line, json!({"result": {"int32Value": i, "stringValue": format!("message {i}")}}));
        }
        let error = response.next_json().await.expect("the error line");
        assert_eq!(error["error"]["message"], "the feed stopped");
        assert_eq!(response.next_line().await, None);
        assert_eq!(response.trailers.expect("trailers")["grpc-status"], "14");
    }
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_message_answers_like_a_unary_call() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(Vec::new()).ending(Code::PermissionDenied, "not yours"));
    let response = h.get("/v1/streams/secret").await;
    let json = response.assert_error(403, 7);
    assert_eq!(json["message"], "not yours");
}

#[tokio::test]
async fn an_empty_stream_is_an_empty_body() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(Vec::new()));
    let response = h.get("/v1/streams/quiet").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/x-ndjson"));
    assert!(response.body.is_empty(), "{:?}", response.body);
}

#[tokio::test]
async fn the_status_and_upstream_trailers_come_back_as_http_trailers_when_the_client_accepts_them() {
    let h = Harness::start().await;
    // HTTP/2: every trailer.
    h.upstream.reply(Reply::stream(numbered(1)).trailer("x-cursor", "c-9"));
    let h2 = Client::http2(h.gateway.addr);
    let mut response = h2.request("GET", "/v1/streams/t").header("te", "trailers").send_streaming().await;
    assert_eq!(response.rest().await.lines().count(), 1);
    let trailers = response.trailers.expect("HTTP/2 trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-trailer-x-cursor"], "c-9");
    // HTTP/1.1: the trailers announced before the stream began, which are the status's.
    h.upstream.reply(Reply::stream(numbered(1)).ending(Code::DataLoss, "lost 100% of it"));
    let mut response = h.request("GET", "/v1/streams/t").header("te", "trailers").send_streaming().await;
    assert_eq!(response.header("trailer"), Some("grpc-status, grpc-message"));
    assert_eq!(response.rest().await.lines().count(), 2);
    let trailers = response.trailers.expect("HTTP/1.1 trailers");
    assert_eq!(trailers["grpc-status"], "15");
    assert_eq!(trailers["grpc-message"], "lost 100%25 of it");
    // Without TE: trailers, none.
    h.upstream.reply(Reply::stream(numbered(1)));
    let mut response = h.request("GET", "/v1/streams/t").send_streaming().await;
    response.rest().await;
    assert!(response.trailers.is_none() && response.header("trailer").is_none());
}

#[tokio::test]
async fn event_streams_carry_the_bare_messages_and_an_error_event() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(numbered(2)).ending(Code::Aborted, "conflict"));
    let mut response = h.request("GET", "/v1/streams/sse").header("accept", "text/event-stream").send_streaming().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    let body = response.rest().await;
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{body}");
    assert_eq!(events[0], r#"data: {"int32Value":1,"stringValue":"message 1"}"#);
    assert_eq!(events[1], r#"data: {"int32Value":2,"stringValue":"message 2"}"#);
    let error = events[2].strip_prefix("event: error\ndata: ").unwrap();
    let mut error: serde_json::Value = serde_json::from_str(error).unwrap();
    assert!(take_request_info(&mut error).is_some(), "{error}");
    assert_eq!(error, json!({"code": 10, "message": "conflict", "details": []}));
}

#[tokio::test]
async fn an_idle_event_stream_gets_keep_alive_comments() {
    let h = Harness::start_with("[streaming]\nkeep_alive = \"20ms\"").await;
    h.upstream.reply(Reply::stream(numbered(1)).hold());
    let mut response =
        h.request("GET", "/v1/streams/idle").header("accept", "text/event-stream").send_streaming().await;
    // The one message, then (nothing more coming from the upstream) comments that show the
    // stream is alive. Bounded: each line arrives within 5 s or the read panics.
    let mut data_seen = false;
    for _ in 0..100 {
        let line = response.next_line().await.unwrap();
        data_seen |= line.starts_with("data: ");
        if data_seen && line.starts_with(':') {
            return;
        }
    }
    panic!("no keep-alive comment after the message");
}

#[tokio::test]
async fn a_slow_reader_holds_the_upstream_back_instead_of_filling_the_gateway() {
    let h = Harness::start().await;
    let big = "x".repeat(64 * 1024);
    let total = 2_000; // 128 MiB if nothing held it back
    h.upstream.reply(Reply::stream((0..total).map(|i| json!({"int32Value": i, "stringValue": big})).collect()));
    let mut response = h.request("GET", "/v1/streams/firehose").send_streaming().await;
    assert!(response.next_json().await.is_some());
    // The client reads nothing more. Wait for the upstream to stop (its sends stay the same
    // for 20 polls in a row), bounded by 5 s.
    let mut last = (h.upstream.sent(), 0);
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let sent = h.upstream.sent();
        last = if sent == last.0 { (sent, last.1 + 1) } else { (sent, 0) };
        if last.1 == 20 {
            break;
        }
    }
    assert!(last.1 == 20, "the upstream never stopped sending: {} sent", last.0);
    assert!(last.0 < total / 4, "the upstream got {} of {total} messages ahead of the client", last.0);
    // Reading on lets it go on.
    let mut read = 1;
    while response.next_line().await.is_some() {
        read += 1;
    }
    assert_eq!(read, total);
}

#[tokio::test]
async fn two_hundred_concurrent_streams_all_complete() {
    let h = Harness::start().await;
    h.upstream.script(|call| {
        let topic = call.request["stringValue"].as_str().unwrap().to_owned();
        Reply::stream((1..=20).map(|i| json!({"int32Value": i, "stringValue": topic})).collect())
    });
    let streams = (0..200).map(|n| {
        let request = h.request("GET", &format!("/v1/streams/topic-{n}"));
        async move {
            let mut response = request.send_streaming().await;
            let mut seen = Vec::new();
            while let Some(line) = response.next_json().await {
                assert_eq!(line["result"]["stringValue"], format!("topic-{n}"));
                seen.push(line["result"]["int32Value"].as_i64().unwrap());
            }
            assert_eq!(seen, (1..=20).collect::<Vec<_>>(), "stream {n}");
        }
    });
    futures_util::future::join_all(streams).await;
    assert_eq!(h.upstream.calls().len(), 200);
}

// === client streams ===

#[tokio::test]
async fn a_client_stream_sends_one_message_per_ndjson_line() {
    let h = Harness::start().await;
    h.upstream.script(|call| Reply::json(json!({"int32Value": call.request.as_array().unwrap().len()})));
    let body = "{\"int32Value\": 1}\n\n{\"stringValue\": \"two\"}\r\n{\"bool_value\": true}";
    let response =
        h.request("POST", "/v1/streams:collect").header("content-type", "application/x-ndjson").body(body).send().await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.json(), json!({"int32Value": 3}));
    assert_eq!(h.upstream.last_call().request, json!([{"int32Value": 1}, {"stringValue": "two"}, {"boolValue": true}]));
}

#[tokio::test]
async fn a_json_array_body_is_a_stream_of_its_elements() {
    let h = Harness::start().await;
    let response = h.post_json("/v1/streams:collect", json!([{"int32Value": 1}, {"int32Value": 2}])).await;
    assert_eq!(response.status, 200);
    assert_eq!(h.upstream.last_call().request, json!([{"int32Value": 1}, {"int32Value": 2}]));
}

#[tokio::test]
async fn lines_go_upstream_as_they_arrive() {
    let h = Harness::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let request = h.request("POST", "/v1/streams:collect").header("content-type", "application/x-ndjson");
    let response = tokio::spawn(request.send_chunks(rx));
    tx.send(Bytes::from_static(b"{\"int32Value\": 1}\n{\"int32")).await.unwrap();
    h.upstream.wait_until("the first line upstream", |u| u.received() == 1).await;
    tx.send(Bytes::from_static(b"Value\": 2}\n")).await.unwrap();
    h.upstream.wait_until("the second line upstream", |u| u.received() == 2).await;
    drop(tx);
    let response = response.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(h.upstream.last_call().request, json!([{"int32Value": 1}, {"int32Value": 2}]));
}

#[tokio::test]
async fn a_bad_line_is_400_naming_its_number_and_cancels_the_call() {
    let h = Harness::start().await;
    let body = "{\"int32Value\": 1}\n{\"int32Value\": \"many\"}\n{\"int32Value\": 3}\n";
    let response =
        h.request("POST", "/v1/streams:collect").header("content-type", "application/x-ndjson").body(body).send().await;
    let json = response.assert_error(400, 3);
    let message = json["message"].as_str().unwrap();
    assert!(message.starts_with("line 2: "), "{message}");
    assert!(message.contains("int32Value"), "{message}");
    assert_eq!(json["details"][0]["fieldViolations"][0]["field"], "int32Value");
    // The call was cancelled with the bad line: the upstream never got the third.
    h.upstream.wait_until("the request stream to be reset", |u| u.request_resets() == 1).await;
    assert!(h.upstream.calls().iter().all(|c| c.request.as_array().unwrap().len() < 2), "{:?}", h.upstream.calls());
    let next = h.post_json("/v1/streams:collect", json!({"int32Value": 1})).await;
    assert_eq!(next.status, 200, "the gateway serves the next request");
}

#[tokio::test]
async fn a_client_stream_refuses_other_content_types_and_overlong_lines() {
    let h = Harness::start_with("max_body_bytes = 64").await;
    let response =
        h.request("POST", "/v1/streams:collect").header("content-type", "text/plain").body("{}").send().await;
    response.assert_error(415, 3);
    let long = format!("{{}}\n{{\"stringValue\": \"{}\"}}\n", "x".repeat(100));
    let response =
        h.request("POST", "/v1/streams:collect").header("content-type", "application/x-ndjson").body(long).send().await;
    let json = response.assert_error(413, 8);
    assert_eq!(json["message"], "line 2 is longer than the 64-byte limit");
}

#[tokio::test]
async fn an_upstream_failure_answers_a_client_stream_with_its_status() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::status(Code::ResourceExhausted, "quota"));
    let response = h
        .request("POST", "/v1/streams:collect")
        .header("content-type", "application/x-ndjson")
        .body("{}\n{}\n")
        .send()
        .await;
    assert_eq!(response.assert_error(429, 8)["message"], "quota");
}

// === WebSocket ===

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(h: &Harness, path: &str) -> Socket {
    let url = format!("ws://{}{path}", h.gateway.addr);
    let (socket, response) = tokio_tungstenite::connect_async(url).await.expect("the handshake succeeds");
    assert_eq!(response.status(), 101);
    socket
}

async fn next_message(socket: &mut Socket) -> Message {
    tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a frame within 5 s")
        .expect("the socket is open")
        .expect("a valid frame")
}

async fn next_json(socket: &mut Socket) -> Value {
    match next_message(socket).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// The close frame's code and status JSON.
async fn close_status(socket: &mut Socket) -> (CloseCode, Value) {
    match next_message(socket).await {
        Message::Close(Some(frame)) => (frame.code, serde_json::from_str(&frame.reason).unwrap()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bidi_stream_runs_over_a_websocket() {
    let h = Harness::start().await;
    let mut socket = connect(&h, "/v1/streams:chat").await;
    socket.send(Message::text(r#"{"stringValue": "hello"}"#)).await.unwrap();
    assert_eq!(next_json(&mut socket).await, json!({"stringValue": "hello"}));
    socket.send(Message::text(r#"{"int32_value": 2}"#)).await.unwrap();
    assert_eq!(next_json(&mut socket).await, json!({"int32Value": 2}));
    // An empty frame ends the client's side; the call's status closes the socket.
    socket.send(Message::text("")).await.unwrap();
    let (code, status) = close_status(&mut socket).await;
    assert_eq!(code, CloseCode::Normal);
    assert_eq!(status, json!({"code": 0, "message": ""}));
    let call = h.upstream.last_call();
    assert_eq!(call.path, "/protogate.testing.v1.StreamService/Chat");
    assert_eq!(call.request, json!([{"stringValue": "hello"}, {"int32Value": 2}]));
}

#[tokio::test]
async fn an_upstream_status_closes_the_socket_with_it() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::default().ending(Code::Aborted, "try again"));
    let mut socket = connect(&h, "/v1/streams:chat").await;
    socket.send(Message::text("")).await.unwrap();
    let (code, status) = close_status(&mut socket).await;
    assert_eq!(code, CloseCode::Error);
    assert_eq!(status, json!({"code": 10, "message": "try again"}));
}

#[tokio::test]
async fn a_bad_frame_closes_the_socket_naming_it() {
    let h = Harness::start().await;
    let mut socket = connect(&h, "/v1/streams:chat").await;
    socket.send(Message::text(r#"{"int32Value": 1}"#)).await.unwrap();
    next_json(&mut socket).await;
    socket.send(Message::text(r#"{"int32Value": [1]}"#)).await.unwrap();
    let (code, status) = close_status(&mut socket).await;
    assert_eq!(code, CloseCode::Invalid);
    assert_eq!(status["code"], 3);
    assert!(status["message"].as_str().unwrap().starts_with("line 2: "), "{status}");
    h.upstream.wait_until("the call to be cancelled", |u| u.cancelled() == 1).await;
}

#[tokio::test]
async fn a_client_that_leaves_a_websocket_cancels_the_call() {
    let h = Harness::start().await;
    let mut socket = connect(&h, "/v1/streams:chat").await;
    socket.send(Message::text("{}")).await.unwrap();
    next_json(&mut socket).await;
    assert_eq!(h.upstream.open_streams(), 1);
    drop(socket);
    h.upstream.wait_until("the call to be cancelled", |u| u.cancelled() == 1 && u.open_streams() == 0).await;
}

#[tokio::test]
async fn a_server_stream_can_be_read_over_a_websocket() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::stream(numbered(2)));
    let mut socket = connect(&h, "/v1/streams/ws?int32Value=4").await;
    assert_eq!(next_json(&mut socket).await["int32Value"], 1);
    assert_eq!(next_json(&mut socket).await["int32Value"], 2);
    assert_eq!(close_status(&mut socket).await.0, CloseCode::Normal);
    assert_eq!(h.upstream.last_call().request, json!({"stringValue": "ws", "int32Value": 4}));
}

#[tokio::test]
async fn a_client_stream_can_be_sent_over_a_websocket() {
    let h = Harness::start().await;
    h.upstream.script(|call| Reply::json(json!({"int32Value": call.request.as_array().unwrap().len()})));
    let mut socket = connect(&h, "/v1/streams:collect").await;
    for _ in 0..3 {
        socket.send(Message::text("{}")).await.unwrap();
    }
    socket.send(Message::text("")).await.unwrap();
    assert_eq!(next_json(&mut socket).await, json!({"int32Value": 3}));
    assert_eq!(close_status(&mut socket).await.0, CloseCode::Normal);
}

#[tokio::test]
async fn a_bidi_method_without_a_websocket_is_426() {
    let h = Harness::start().await;
    let response = h.get("/v1/streams:chat").await;
    response.assert_error(426, 9);
    assert_eq!(response.header("upgrade"), Some("websocket"));
    assert!(h.upstream.calls().is_empty());
}

#[tokio::test]
async fn a_websocket_from_a_foreign_browser_origin_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let handshake = |h: &Harness, origin: &str| {
        let mut request = format!("ws://{}/v1/streams:chat", h.gateway.addr).into_client_request().unwrap();
        request.headers_mut().insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let status_of = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Ok((_, response)) => Ok::<u16, ()>(tokio_tungstenite::tungstenite::http::Response::status(&response).as_u16()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Ok(response.status().as_u16()),
        Err(other) => panic!("{other}"),
    };
    // Without [cors], only the gateway's own origin.
    let h = Harness::start().await;
    assert_eq!(status_of(handshake(&h, "https://evil.example").await), Ok(403));
    assert_eq!(status_of(handshake(&h, &format!("http://{}", h.gateway.addr)).await), Ok(101));
    // With [cors], the origins it allows.
    let h = Harness::start_with("[cors]\nallow_origins = [\"https://app.example\"]").await;
    assert_eq!(status_of(handshake(&h, "https://evil.example").await), Ok(403));
    assert_eq!(status_of(handshake(&h, "https://app.example").await), Ok(101));
    assert!(h.upstream.calls().is_empty());
}

#[tokio::test]
async fn clients_that_leave_mid_stream_leave_no_stream_or_upstream_call_behind() {
    let h = Harness::start().await;

    // A server stream read as NDJSON, then as Server-Sent Events.
    for accept in ["application/x-ndjson", "text/event-stream"] {
        let before = h.upstream.cancelled();
        h.upstream.reply(Reply::stream(numbered(1)).hold());
        let mut response = h.request("GET", "/v1/streams/leave").header("accept", accept).send_streaming().await;
        assert!(response.next_line().await.is_some());
        assert_eq!(h.gateway.current().streams().get(), 1, "{accept}");
        drop(response);
        h.upstream.wait_until("the server stream to be cancelled", |u| u.cancelled() == before + 1).await;
        h.gateway.wait_for_no_streams().await;
    }

    // A client stream whose client goes away in the middle of its body.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let request = h.request("POST", "/v1/streams:collect").header("content-type", "application/x-ndjson");
    let upload = tokio::spawn(request.send_chunks(rx));
    tx.send(Bytes::from_static(b"{}\n")).await.unwrap();
    h.upstream.wait_until("the first line upstream", |u| u.received() == 1).await;
    upload.abort();
    h.upstream.wait_until("the request stream to be reset", |u| u.request_resets() == 1).await;
    h.gateway.wait_for_no_streams().await;

    // A WebSocket that vanishes.
    let before = h.upstream.cancelled();
    let mut socket = connect(&h, "/v1/streams:chat").await;
    socket.send(Message::text("{}")).await.unwrap();
    next_json(&mut socket).await;
    drop(socket);
    h.upstream.wait_until("the chat to be cancelled", |u| u.cancelled() == before + 1).await;
    h.gateway.wait_for_no_streams().await;
    drop(tx);
}
