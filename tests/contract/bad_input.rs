//! Malformed requests get the contract's 4xx JSON error, and the gateway keeps serving.

use crate::support::Harness;

/// After each bad request, a good one must still be answered.
async fn still_serving(h: &Harness) {
    let response = h.get("/v1/shelves/1").await;
    assert_eq!(response.status, 200, "the gateway kept serving");
}

#[tokio::test]
async fn malformed_bodies() {
    let h = Harness::start().await;
    let post =
        |body: Vec<u8>| h.request("POST", "/v1/everything").header("content-type", "application/json").body(body);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{".to_vec(), "invalid JSON body: EOF while parsing an object"),
        (b"{\"stringValue\" 1}".to_vec(), "invalid JSON body: expected `:`"),
        (b"[]".to_vec(), "invalid JSON body: invalid type: sequence"),
        (b"\"text\"".to_vec(), "invalid JSON body: invalid type: string"),
        (b"{\"stringValue\":\"\xff\xfe\"}".to_vec(), "invalid unicode code point"),
        (b"{} {}".to_vec(), "trailing characters"),
        (format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(), "invalid type: sequence"),
        (
            format!("{{\"value\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            "recursion limit exceeded",
        ),
        (
            format!("{{\"structValue\":{}{}}}", "{\"a\":".repeat(10_000), "}".repeat(10_001)).into_bytes(),
            "recursion limit exceeded",
        ),
    ];
    for (body, needle) in cases {
        let response = post(body).send().await;
        let json = response.assert_error(400, 3);
        let message = json["message"].as_str().unwrap();
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
        still_serving(&h).await;
    }
}

#[tokio::test]
async fn malformed_paths_and_queries() {
    let h = Harness::start().await;
    // `..%2F` in a single-segment variable is data for the upstream, never path structure.
    h.get("/v1/everything/..%2F..%2Fetc/1/RED/true/x").await;
    assert_eq!(h.upstream.last_call().request["stringValue"], "../../etc");
    let dots = h.get("/v1/files/../../etc/passwd").await;
    dots.assert_error(400, 3);
    let utf8 = h.get("/v1/everything/%C3%28/1/RED/true/x").await;
    utf8.assert_error(400, 3);
    let query = h.get("/v1/shelves?page_token=%C3%28").await;
    query.assert_error(400, 3);
    // Long but legal: served.
    let long = h.get(&format!("/v1/shelves?page_token={}", "x".repeat(60_000))).await;
    assert_eq!(long.status, 200);
    // Longer than any URI may be: refused before routing.
    let huge =
        format!("GET /v1/shelves?page_token={} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", "x".repeat(200_000));
    let answer = h.gateway.client.raw(huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{}", &answer[..answer.len().min(200)]);
    let many = (0..3_000).map(|i| format!("filter.ids={i}")).collect::<Vec<_>>().join("&");
    let response = h.get(&format!("/v1/shelves?{many}")).await;
    assert_eq!(response.status, 200);
    assert_eq!(h.upstream.last_call().request["filter"]["ids"].as_array().unwrap().len(), 3_000);
    still_serving(&h).await;
}

#[tokio::test]
async fn raw_protocol_abuse() {
    let h = Harness::start().await;
    let client = &h.gateway.client;
    // A request line no HTTP client would send: raw non-UTF-8 bytes in the path.
    let raw_bytes =
        client.raw(b"GET /v1/everything/\xff\xfe/1/RED/true/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert!(raw_bytes.starts_with("HTTP/1.1 4"), "{raw_bytes}");
    // A method that exists nowhere.
    let brew = client.raw(b"BREW /v1/shelves HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert!(brew.starts_with("HTTP/1.1 405"), "{brew}");
    assert!(brew.contains("\"code\":12"), "{brew}");
    // A body shorter than its Content-Length, then the connection closes.
    let short = client
        .raw(b"POST /v1/shelves HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"theme\"")
        .await;
    assert!(short.is_empty() || short.starts_with("HTTP/1.1 4"), "{short}");
    // Garbage instead of HTTP.
    let garbage = client.raw(b"\x00\x01\x02 not http at all\r\n\r\n").await;
    assert!(garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    still_serving(&h).await;
}

#[tokio::test]
async fn concurrent_good_and_bad_requests() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = h.gateway.client.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                client.request("GET", &format!("/v1/shelves/{i}")).send().await.status.as_u16()
            } else {
                client
                    .request("POST", "/v1/everything")
                    .header("content-type", "application/json")
                    .body("{")
                    .send()
                    .await
                    .status
                    .as_u16()
            }
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), if i % 2 == 0 { 200 } else { 400 });
    }
    assert_eq!(h.upstream.calls().len(), 32);
}
