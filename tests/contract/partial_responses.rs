//! `?fields=`: partial responses for unary calls, server streams and client streams.

use serde_json::json;

use crate::support::{Harness, Reply};

#[tokio::test]
async fn fields_trims_a_unary_response_and_never_reaches_the_upstream() {
    let h = Harness::start().await;
    h.upstream.reply(Reply::json(json!({
        "shelves": [{"id": "1", "theme": "poetry", "bookCount": 3}, {"id": "2", "theme": "maps"}],
        "nextPageToken": "p2"
    })));
    let response = h.get("/v1/shelves?pageSize=2&fields=shelves.id,shelves.theme").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"shelves": [{"id": "1", "theme": "poetry"}, {"id": "2", "theme": "maps"}]}));
    assert_eq!(h.upstream.last_call().request, json!({"pageSize": 2}), "fields is the gateway's, not a field");

    h.upstream.reply(Reply::json(json!({"shelves": [{"id": "1"}], "nextPageToken": "p2"})));
    let response = h.get("/v1/shelves?%24fields=next_page_token").await;
    assert_eq!(response.json(), json!({"nextPageToken": "p2"}), "$fields, proto names");
}

#[tokio::test]
async fn an_unknown_path_is_a_400_naming_it_before_any_call() {
    let h = Harness::start().await;
    let response = h.get("/v1/shelves?fields=shelves.colour").await;
    let error = response.assert_error(400, 3);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("fields") && message.contains("\"colour\""), "{message}");
    assert!(h.upstream.calls().is_empty());
}

#[tokio::test]
async fn fields_trims_each_message_of_a_server_stream_and_a_client_stream_answer() {
    let h = Harness::start().await;
    let messages: Vec<_> = (1..=2).map(|i| json!({"int32Value": i, "stringValue": format!("m{i}")})).collect();
    h.upstream.reply(Reply::stream(messages));
    let mut response = h.request("GET", "/v1/streams/topic?fields=int32Value").send_streaming().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.next_json().await.unwrap(), json!({"result": {"int32Value": 1}}));
    assert_eq!(response.next_json().await.unwrap(), json!({"result": {"int32Value": 2}}));
    assert_eq!(response.next_line().await, None);
    assert_eq!(h.upstream.last_call().request, json!({"stringValue": "topic"}));

    h.upstream.reply(Reply::json(json!({"int32Value": 9, "stringValue": "total"})));
    let response = h
        .request("POST", "/v1/streams:collect?fields=stringValue")
        .header("content-type", "application/x-ndjson")
        .body("{\"int32Value\": 1}\n{\"int32Value\": 2}\n")
        .send()
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.json(), json!({"stringValue": "total"}));
}
