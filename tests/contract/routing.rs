//! Routing: every google.api.http form, the implicit POST route, 404 and 405.

use serde_json::json;

use crate::support::{Harness, Reply};

const BOOKSTORE: &str = "/protogate.testing.v1.Bookstore";

/// Sends `method path`, asserts 200, and returns the upstream's (gRPC path, request JSON).
async fn routed(h: &Harness, method: &str, path: &str, body: Option<serde_json::Value>) -> (String, serde_json::Value) {
    let request = h.request(method, path);
    let request = match &body {
        Some(body) => request.json(body),
        None => request,
    };
    let response = request.send().await;
    assert_eq!(response.status, 200, "{method} {path}: {}", String::from_utf8_lossy(&response.body));
    let call = h.upstream.last_call();
    (call.path.trim_start_matches(BOOKSTORE).to_owned(), call.request)
}

#[tokio::test]
async fn every_template_form_reaches_its_method() {
    let h = Harness::start().await;
    let cases = [
        ("GET", "/v1/shelves", None, "/ListShelves", json!({})),
        ("GET", "/v1/shelves/42", None, "/GetShelf", json!({"shelf": "42"})),
        ("DELETE", "/v1/shelves/42", None, "/DeleteShelf", json!({"shelf": "42"})),
        (
            "PUT",
            "/v1/shelves/7",
            Some(json!({"theme": "poetry"})),
            "/UpdateShelf",
            json!({"shelf": {"id": "7", "theme": "poetry"}}),
        ),
        ("GET", "/v1/shelves/1/books", None, "/ListBooks", json!({"shelf": "1"})),
        ("GET", "/v1/shelves/1/books/2", None, "/GetBook", json!({"name": "shelves/1/books/2"})),
        ("GET", "/v2/shelves/1/books/2", None, "/GetBook", json!({"name": "shelves/1/books/2"})),
        ("GET", "/v1/books/a/b/c", None, "/GetBook", json!({"name": "a/b/c"})),
        ("GET", "/v1/files/docs/readme.md", None, "/GetFile", json!({"path": "docs/readme.md"})),
        (
            "POST",
            "/v1/shelves/1/books/2:archive",
            Some(json!({"reason": "old"})),
            "/ArchiveBook",
            json!({"name": "shelves/1/books/2", "reason": "old"}),
        ),
        ("POST", "/v1/buckets/b/objects/x/y.txt:touch", None, "/Touch", json!({"object": "x/y.txt"})),
        ("SEARCH", "/v1/books", Some(json!({"query": "rust"})), "/SearchBooks", json!({"query": "rust"})),
        ("POST", &format!("{BOOKSTORE}/Ping"), Some(json!({"text": "hi"})), "/Ping", json!({"text": "hi"})),
        ("POST", &format!("{BOOKSTORE}/GetShelf"), Some(json!({"shelf": "5"})), "/GetShelf", json!({"shelf": "5"})),
    ];
    for (method, path, body, grpc, request) in cases {
        let (got_grpc, got_request) = routed(&h, method, path, body).await;
        assert_eq!(got_grpc, grpc, "{method} {path}");
        assert_eq!(got_request, request, "{method} {path}");
    }
}

#[tokio::test]
async fn percent_decoding_follows_http_proto() {
    let h = Harness::start().await;
    let (_, request) = routed(&h, "GET", "/v1/files/dir/a%2Fb%20c", None).await;
    assert_eq!(request, json!({"path": "dir/a%2Fb c"}), "multi-segment: %2F stays encoded");
    let (_, request) = routed(&h, "GET", "/v1/everything/a%2Fb%20c/1/RED/true/x", None).await;
    assert_eq!(request["stringValue"], "a/b c", "single segment: fully decoded");
}

#[tokio::test]
async fn response_body_returns_one_field() {
    let h = Harness::start().await;
    h.upstream.script(|_| Reply::json(json!({"name": "n", "title": "Dune", "authors": ["Frank Herbert"]})));
    let title = h.get("/v1/shelves/1/books/2/title").await;
    assert_eq!(title.status, 200);
    assert_eq!(title.json(), json!("Dune"));
    let authors = h.get("/v1/shelves/1/books/2/authors").await;
    assert_eq!(authors.json(), json!(["Frank Herbert"]));
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let h = Harness::start().await;
    let missing = h.get("/v1/nowhere").await;
    let json = missing.assert_error(404, 5);
    assert_eq!(json["message"], "no route matches GET /v1/nowhere");
    let wrong = h.request("PATCH", "/v1/shelves/1").send().await;
    wrong.assert_error(405, 12);
    assert_eq!(wrong.header("allow"), Some("GET, DELETE, PUT"));
    let get_on_post = h.get(&format!("{BOOKSTORE}/Ping")).await;
    get_on_post.assert_error(405, 12);
    assert_eq!(get_on_post.header("allow"), Some("POST"));
    assert!(h.upstream.calls().is_empty(), "nothing reached the upstream");
}
