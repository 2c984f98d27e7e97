//! The door matrix: one protected method reached through every door the gateway has. Whatever
//! the door, a policy that protects the method holds: without a token each is refused in its
//! protocol's own form and the upstream receives nothing; with one each is served. Rate limits
//! count across doors, forwarded claims cannot be spoofed through any of them, and a closed
//! door answers as if the method were not there. The MCP door is one of them: a tool call
//! refused by a policy is a tool error carrying the status.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use prost::Message;
use serde_json::{Value, json};
use tonic::Code;

use crate::support::{Harness, Reply, TestResponse, hs256_bearer, hs256_jwt, start_examples};

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

use pb::protogate::testing::v1::GetShelfRequest;
use pb::protogate::testing::v1::bookstore_client::BookstoreClient;

const SECRET: &str = "door-matrix-secret-of-at-least-32-bytes";
const GET_SHELF: &str = "/protogate.testing.v1.Bookstore/GetShelf";
const WATCH_SHELVES: &str = "/protogate.testing.v1.Bookstore/WatchShelves";

/// A composite route and a profile that reach GetShelf, plus `policies`.
fn config(policies: &str) -> String {
    format!(
        r#"{jwt}
[jwt.forward_claims]
sub = "x-user-id"

{policies}

[[policy]]
name = "everything else is public"
auth = "none"

[[aggregate]]
route = "GET /bff/shelves/{{id}}"
calls.shelf = {{ method = "protogate.testing.v1.Bookstore/GetShelf", request = {{ shelf = "{{path.id}}" }} }}

[mcp]
enabled = true

[[profile]]
name = "mobile"
prefix = "/mobile"
routes = [{{ route = "GET /v1/shelves/{{shelf}}" }}]
"#,
        jwt = hs256_jwt(SECRET)
    )
}

/// GetShelf answers one shelf, WatchShelves two, GetBook a book; other methods echo.
async fn start(policies: &str) -> Harness {
    let h = Harness::start_with(&config(policies)).await;
    h.upstream.script(|call| match call.path.as_str() {
        GET_SHELF => Reply::json(json!({"id": "7", "theme": "doors"})),
        WATCH_SHELVES => Reply::stream(vec![json!({"id": "1"}), json!({"id": "2"})]),
        "/protogate.testing.v1.Bookstore/GetBook" => Reply::json(json!({"title": "t"})),
        _ => Reply::default(),
    });
    h
}

/// Every door to GetShelf (and, for the streaming doors, WatchShelves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Annotated,
    PercentEncoded,
    RestFallback,
    Connect,
    ConnectStreaming,
    Grpc,
    GrpcWeb,
    WebSocket,
    ServerStream,
    Composite,
    Profile,
    Mcp,
}

const DOORS: [Door; 12] = [
    Door::Annotated,
    Door::PercentEncoded,
    Door::RestFallback,
    Door::Connect,
    Door::ConnectStreaming,
    Door::Grpc,
    Door::GrpcWeb,
    Door::WebSocket,
    Door::ServerStream,
    Door::Composite,
    Door::Profile,
    Door::Mcp,
];

/// How a door answered, in terms every protocol has.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Served: the upstream's answer came back.
    Served,
    /// Refused with this gRPC code (HTTP doors: the code of the JSON status; gRPC: the status;
    /// Connect: its code name's; WebSocket: the handshake's HTTP status mapped back).
    Refused(Code),
    /// The door answered something else: a status code and what it said.
    Other(String),
}

/// Calls GetShelf through `door`, with `authorization` if given and `headers` besides.
async fn call(h: &Harness, door: Door, authorization: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    match door {
        Door::Annotated => rest(h, "GET", "/v1/shelves/7", None, authorization, headers).await,
        Door::PercentEncoded => rest(h, "GET", "/v1/shelves/%37", None, authorization, headers).await,
        Door::RestFallback => rest(h, "POST", GET_SHELF, Some(json!({"shelf": "7"})), authorization, headers).await,
        Door::Composite => rest(h, "GET", "/bff/shelves/7", None, authorization, headers).await,
        Door::Profile => rest(h, "GET", "/mobile/v1/shelves/7", None, authorization, headers).await,
        Door::ServerStream => server_stream(h, authorization, headers).await,
        Door::Connect => connect(h, GET_SHELF, authorization, headers).await,
        Door::ConnectStreaming => connect(h, WATCH_SHELVES, authorization, headers).await,
        Door::Grpc => grpc(h, authorization, headers).await,
        Door::GrpcWeb => grpc_web(h, authorization, headers).await,
        Door::WebSocket => websocket(h, authorization, headers).await,
        Door::Mcp => mcp(h, authorization, headers).await,
    }
}

fn with_headers(
    mut request: crate::support::RequestBuilder,
    authorization: Option<&str>,
    headers: &[(&str, &str)],
) -> crate::support::RequestBuilder {
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
}

fn rest_outcome(response: &TestResponse) -> Outcome {
    if response.status == 200 {
        return Outcome::Served;
    }
    let code = serde_json::from_slice::<Value>(&response.body).ok().and_then(|v| v["code"].as_i64());
    match code {
        Some(code) => Outcome::Refused(Code::from_i32(code as i32)),
        None => Outcome::Other(format!("{} {}", response.status, String::from_utf8_lossy(&response.body))),
    }
}

async fn rest(
    h: &Harness,
    method: &str,
    path: &str,
    body: Option<Value>,
    authorization: Option<&str>,
    headers: &[(&str, &str)],
) -> Outcome {
    let mut request = with_headers(h.request(method, path), authorization, headers);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await;
    let outcome = rest_outcome(&response);
    if outcome == Outcome::Served {
        let answer = response.json();
        let shelf = answer.get("shelf").unwrap_or(&answer);
        assert_eq!(shelf["theme"], "doors", "{path}: {answer}");
    }
    outcome
}

async fn server_stream(h: &Harness, authorization: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    let response = with_headers(h.request("GET", "/v1/shelves:watch"), authorization, headers).send().await;
    if response.status != 200 {
        return rest_outcome(&response);
    }
    let lines: Vec<Value> = response
        .body
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap())
        .collect();
    assert_eq!(lines, [json!({"result": {"id": "1"}}), json!({"result": {"id": "2"}})]);
    Outcome::Served
}

/// GetShelf as an MCP tool call: a success is the message as `structuredContent`, a failure a
/// tool error whose text is the `google.rpc.Status`.
async fn mcp(h: &Harness, authorization: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "Bookstore_GetShelf", "arguments": {"shelf": "7"}},
    });
    let response = with_headers(h.request("POST", "/mcp").json(&call), authorization, headers).send().await;
    let answer = response.json();
    let result = &answer["result"];
    match result["isError"].as_bool() {
        Some(false) => {
            assert_eq!(result["structuredContent"]["theme"], "doors", "{answer}");
            Outcome::Served
        }
        Some(true) => {
            let status: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
            Outcome::Refused(Code::from_i32(status["code"].as_i64().unwrap() as i32))
        }
        None => Outcome::Other(format!("{} {answer}", response.status)),
    }
}

/// Connect's code names, as its errors carry them.
fn connect_code(name: &str) -> Code {
    match name {
        "unauthenticated" => Code::Unauthenticated,
        "permission_denied" => Code::PermissionDenied,
        "resource_exhausted" => Code::ResourceExhausted,
        "unimplemented" => Code::Unimplemented,
        "not_found" => Code::NotFound,
        "invalid_argument" => Code::InvalidArgument,
        other => panic!("unexpected Connect code {other}"),
    }
}

async fn connect(h: &Harness, path: &str, authorization: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    let request = h.request("POST", path).header("connect-protocol-version", "1").json(&json!({"shelf": "7"}));
    let response = with_headers(request, authorization, headers).send().await;
    if response.status == 200 {
        assert_eq!(response.json()["theme"], "doors");
        return Outcome::Served;
    }
    match response.json()["code"].as_str() {
        Some(name) => Outcome::Refused(connect_code(name)),
        None => Outcome::Other(format!("{} {:?}", response.status, response.body)),
    }
}

async fn grpc(h: &Harness, authorization: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", h.gateway.addr)).unwrap().connect().await.unwrap();
    let mut client = BookstoreClient::new(channel);
    let mut request = tonic::Request::new(GetShelfRequest { shelf: 7 });
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().unwrap());
    }
    for (name, value) in headers {
        let name = name.strip_prefix("grpc-metadata-").unwrap_or(name);
        let key = tonic::metadata::MetadataKey::from_bytes(name.as_bytes()).unwrap();
        request.metadata_mut().append(key, value.parse().unwrap());
    }
    match client.get_shelf(request).await {
        Ok(shelf) => {
            assert_eq!(shelf.get_ref().theme, "doors");
            Outcome::Served
        }
        Err(status) => Outcome::Refused(status.code()),
    }
}

async fn grpc_web(h: &Harness, authorization: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    let encoded = GetShelfRequest { shelf: 7 }.encode_to_vec();
    let mut body = BytesMut::new();
    body.put_u8(0);
    body.put_u32(encoded.len() as u32);
    body.put_slice(&encoded);
    let request = h
        .request("POST", GET_SHELF)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body.freeze());
    let response = with_headers(request, authorization, headers).send().await;
    assert_eq!(response.status, 200, "gRPC-Web answers 200 and puts the status in its trailers");
    let status = match response.header("grpc-status") {
        Some(status) => status.to_owned(),
        None => grpc_web_trailer_status(response.body.clone()),
    };
    match status.parse::<i32>().map(Code::from_i32) {
        Ok(Code::Ok) => Outcome::Served,
        Ok(code) => Outcome::Refused(code),
        Err(_) => Outcome::Other(status),
    }
}

/// The `grpc-status` in a gRPC-Web body's trailers frame.
fn grpc_web_trailer_status(mut body: Bytes) -> String {
    use bytes::Buf;
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 != 0 {
            let trailers = String::from_utf8(payload.to_vec()).unwrap();
            let status = trailers.lines().find_map(|l| l.trim().strip_prefix("grpc-status:"));
            return status.unwrap_or("").trim().to_owned();
        }
    }
    String::new()
}

async fn websocket(h: &Harness, authorization: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/v1/shelves:watch", h.gateway.addr).into_client_request().unwrap();
    if let Some(value) = authorization {
        request.headers_mut().insert("authorization", value.parse().unwrap());
    }
    for (name, value) in headers {
        request.headers_mut().append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    let mut socket = match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => socket,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or(b"{}")).unwrap();
            return match body["code"].as_i64() {
                Some(code) => Outcome::Refused(Code::from_i32(code as i32)),
                None => Outcome::Other(format!("handshake answered {}", response.status())),
            };
        }
        Err(e) => return Outcome::Other(e.to_string()),
    };
    let mut messages = Vec::new();
    while let Some(frame) = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next()).await.unwrap() {
        match frame.unwrap() {
            tokio_tungstenite::tungstenite::Message::Text(text) => messages.push(text.to_string()),
            tokio_tungstenite::tungstenite::Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(messages.len(), 2, "{messages:?}");
    Outcome::Served
}

/// Each door refused without a token (the upstream untouched) and served with one.
async fn assert_protected_at_every_door(policy: &str) {
    let h = start(policy).await;
    let token = hs256_bearer(SECRET, "alice");
    for door in DOORS {
        let before = h.upstream.calls().len();
        let refused = call(&h, door, None, &[]).await;
        assert_eq!(refused, Outcome::Refused(Code::Unauthenticated), "{door:?} without a token, under {policy}");
        assert_eq!(h.upstream.calls().len(), before, "{door:?}: a refused request reaches no upstream");
        let expected = match door {
            // Connect's streaming calls are not served: refused only once the token passed.
            Door::ConnectStreaming => Outcome::Refused(Code::Unimplemented),
            _ => Outcome::Served,
        };
        assert_eq!(call(&h, door, Some(&token), &[]).await, expected, "{door:?} with a token, under {policy}");
    }
}

#[tokio::test]
async fn a_policy_by_path_prefix_holds_at_every_door() {
    assert_protected_at_every_door(
        r#"[[policy]]
name = "shelves"
match = { path_prefix = "/v1/shelves" }
auth = "required""#,
    )
    .await;
}

#[tokio::test]
async fn a_policy_by_http_method_holds_at_every_door() {
    // Lower-case methods are methods all the same.
    assert_protected_at_every_door(
        r#"[[policy]]
name = "reads"
match = { methods = ["get"] }
auth = "required""#,
    )
    .await;
}

#[tokio::test]
async fn a_policy_by_grpc_method_holds_at_every_door() {
    assert_protected_at_every_door(
        r#"[[policy]]
name = "bookstore"
match = { grpc = ["protogate.testing.v1.Bookstore"] }
auth = "required""#,
    )
    .await;
}

#[tokio::test]
async fn a_percent_encoded_path_is_the_path_it_routes_to() {
    let h = start(
        r#"[[policy]]
name = "admin shelf"
match = { path_prefix = "/v1/shelves/admin" }
auth = "required""#,
    )
    .await;
    for path in ["/v1/shelves/admin/books/1", "/v1/shelves/%61dmin/books/1", "/v1/shelves/%61%64%6D%69%6E/books/1"] {
        h.get(path).await.assert_error(401, 16);
    }
    assert!(h.upstream.calls().is_empty());
    // Segment-wise: another shelf whose name merely starts with "admin" is not covered.
    assert_eq!(h.get("/v1/shelves/administrators/books/1").await.status, 200);
    let token = hs256_bearer(SECRET, "alice");
    let served = h.request("GET", "/v1/shelves/%61dmin/books/1").header("authorization", &token).send().await;
    assert_eq!(served.status, 200);
    assert_eq!(h.upstream.last_call().request, json!({"name": "shelves/admin/books/1"}));
}

#[tokio::test]
async fn a_rate_limit_counts_requests_whatever_their_door() {
    let h = start(
        r#"[[policy]]
name = "shelves"
match = { path_prefix = "/v1/shelves" }
rate_limits = [{ key = "ip", per_minute = 6, burst = 6 }]"#,
    )
    .await;
    let doors = [Door::Annotated, Door::RestFallback, Door::Connect, Door::Grpc, Door::GrpcWeb, Door::Composite];
    for door in doors {
        assert_eq!(call(&h, door, None, &[]).await, Outcome::Served, "{door:?} within the limit");
    }
    for door in [Door::Profile, Door::Annotated, Door::Grpc, Door::Connect, Door::Composite, Door::WebSocket, Door::Mcp]
    {
        let outcome = call(&h, door, None, &[]).await;
        assert_eq!(outcome, Outcome::Refused(Code::ResourceExhausted), "{door:?}: six requests were admitted");
    }
    assert_eq!(h.upstream.calls().len(), 6);
}

#[tokio::test]
async fn a_forwarded_claim_cannot_be_spoofed_through_any_door() {
    let h = start(
        r#"[[policy]]
name = "shelves"
match = { path_prefix = "/v1/shelves" }
auth = "required""#,
    )
    .await;
    let token = hs256_bearer(SECRET, "alice");
    let spoofed = [("x-user-id", "mallory"), ("grpc-metadata-x-user-id", "mallory")];
    for door in DOORS.into_iter().filter(|d| *d != Door::ConnectStreaming) {
        let before = h.upstream.calls().len();
        let headers: &[(&str, &str)] = match door {
            // Metadata is a header of its own name in Connect and gRPC.
            Door::Connect | Door::Grpc | Door::GrpcWeb => &spoofed[..1],
            _ => &spoofed,
        };
        assert_eq!(call(&h, door, Some(&token), headers).await, Outcome::Served, "{door:?}");
        for upstream_call in &h.upstream.calls()[before..] {
            let values: Vec<_> = upstream_call.metadata.get_all("x-user-id").iter().collect();
            assert_eq!(values, ["alice"], "{door:?}: only the verified subject arrives");
        }
    }
}

#[tokio::test]
async fn no_door_forwards_credentials_addresses_or_ids_a_client_made_up() {
    let h = start("").await;
    let token = "Bearer the-one-token";
    let plain = [
        ("cookie", "session=stolen"),
        ("x-real-ip", "6.6.6.6"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=6.6.6.6"),
    ];
    let prefixed = [
        ("grpc-metadata-authorization", "Bearer second"),
        ("grpc-metadata-cookie", "session=stolen"),
        ("grpc-metadata-x-forwarded-for", "6.6.6.6"),
        ("grpc-metadata-x-request-id", "spoofed"),
    ];
    for door in DOORS.into_iter().filter(|d| *d != Door::ConnectStreaming) {
        let before = h.upstream.calls().len();
        let mut headers = vec![("authorization", token)];
        headers.extend(plain);
        if !matches!(door, Door::Connect | Door::Grpc | Door::GrpcWeb) {
            headers.extend(prefixed);
        }
        assert_eq!(call(&h, door, None, &headers).await, Outcome::Served, "{door:?}");
        for upstream_call in &h.upstream.calls()[before..] {
            let md = &upstream_call.metadata;
            let authorization: Vec<_> = md.get_all("authorization").iter().collect();
            assert_eq!(authorization, [token], "{door:?}: the one Authorization sent");
            assert_eq!(md["x-forwarded-for"], "127.0.0.1", "{door:?}: the address the gateway saw");
            assert_eq!(md["x-forwarded-proto"], "http", "{door:?}");
            assert_eq!(md["x-forwarded-host"], h.gateway.addr.to_string(), "{door:?}");
            for absent in ["cookie", "x-real-ip", "forwarded"] {
                assert!(md.get(absent).is_none(), "{door:?}: {absent} reached the upstream");
            }
            assert_ne!(md.get("x-request-id").map(|v| v.to_str().unwrap()), Some("spoofed"), "{door:?}");
        }
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused_at_every_door() {
    let h = start("").await;
    let headers = [("authorization", "Bearer a"), ("authorization", "Bearer b")];
    for door in DOORS.into_iter().filter(|d| *d != Door::ConnectStreaming) {
        assert_eq!(call(&h, door, None, &headers).await, Outcome::Refused(Code::InvalidArgument), "{door:?}");
    }
    assert!(h.upstream.calls().is_empty());
}

#[tokio::test]
async fn a_browser_gets_no_cookie_or_security_header_an_upstream_set() {
    let h = start("").await;
    h.upstream.script(|_| {
        Reply::json(json!({"id": "7"}))
            .header("set-cookie", "session=upstream")
            .header("access-control-allow-origin", "*")
            .header("strict-transport-security", "max-age=0")
            .header("x-served-by", "shelves")
    });
    let connect = connect_get_shelf(&h).await;
    assert_eq!(connect.status, 200, "{}", connect.text());
    assert_eq!(connect.header("x-served-by"), Some("shelves"), "metadata is plain headers in Connect");
    for directive in ["set-cookie", "access-control-allow-origin", "strict-transport-security"] {
        assert_eq!(connect.header(directive), None, "{directive}");
    }
    let rest = h.get("/v1/shelves/7").await;
    assert_eq!(rest.header("grpc-metadata-set-cookie"), Some("session=upstream"), "REST names it as metadata");
    assert_eq!(rest.header("set-cookie"), None);

    let exposed = start("[headers]\nexpose = [\"Set-Cookie\"]").await;
    exposed.upstream.script(|_| Reply::json(json!({"id": "7"})).header("set-cookie", "session=upstream"));
    let connect = connect_get_shelf(&exposed).await;
    assert_eq!(connect.header("set-cookie"), Some("session=upstream"), "exposed by configuration");
}

/// GetShelf over Connect, its answer as it came.
async fn connect_get_shelf(h: &Harness) -> crate::support::TestResponse {
    let request = h.request("POST", GET_SHELF).header("connect-protocol-version", "1");
    request.json(&json!({"shelf": "7"})).send().await
}

#[tokio::test]
async fn a_closed_door_answers_as_if_the_method_were_not_there() {
    let h = start(
        r#"[doors]
rest_fallback = false
connect = false
grpc = false
grpc_web = false
websocket = false"#,
    )
    .await;
    assert_eq!(call(&h, Door::RestFallback, None, &[]).await, Outcome::Refused(Code::NotFound));
    assert_eq!(call(&h, Door::Connect, None, &[]).await, Outcome::Refused(Code::NotFound));
    assert_eq!(call(&h, Door::Grpc, None, &[]).await, Outcome::Refused(Code::Unimplemented));
    assert_eq!(call(&h, Door::GrpcWeb, None, &[]).await, Outcome::Refused(Code::Unimplemented));
    assert_eq!(call(&h, Door::WebSocket, None, &[]).await, Outcome::Refused(Code::NotFound));
    assert!(h.upstream.calls().is_empty());
    // The routes of the methods' own annotations stay open, and so do composite routes and
    // the MCP tools, which `[mcp]` opens and closes.
    for door in [Door::Annotated, Door::ServerStream, Door::Composite, Door::Profile, Door::Mcp] {
        assert_eq!(call(&h, door, None, &[]).await, Outcome::Served, "{door:?}");
    }
}

#[tokio::test]
async fn one_service_can_be_kept_off_the_rest_fallback() {
    let h = start("[doors]\nrest_fallback_exclude = [\"protogate.testing.v1.Bookstore\"]").await;
    assert_eq!(call(&h, Door::RestFallback, None, &[]).await, Outcome::Refused(Code::NotFound));
    let other = h.post_json("/protogate.testing.v1.EverythingService/Echo", json!({"int32Value": 1})).await;
    assert_eq!(other.status, 200, "other services keep theirs");
    assert_eq!(call(&h, Door::Connect, None, &[]).await, Outcome::Served, "Connect is its own door");
}

/// A bearer token for `subject` with `role`, signed HS256 with the matrix's secret.
fn bearer_with_role(subject: &str, role: &str) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
    let claims = json!({"sub": subject, "role": role, "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    format!("Bearer {}", jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap())
}

#[tokio::test]
async fn the_readmes_public_get_and_admin_only_delete() {
    let config = format!(
        r#"{jwt}
[[policy]]
name = "admins delete users"
match = {{ path_prefix = "/v1/users", methods = ["DELETE"] }}
auth = "required"
claims = {{ role = "admin" }}

[[policy]]
name = "reading users is public"
match = {{ path_prefix = "/v1/users", methods = ["GET"] }}
"#,
        jwt = hs256_jwt(SECRET)
    );
    let (upstream, gateway) = start_examples(&config).await;
    let client = &gateway.client;
    assert_eq!(client.request("GET", "/v1/users/7").send().await.status, 200, "reading is public");
    let delete_user = "/example.users.v1.UserService/DeleteUser";
    let member = bearer_with_role("bob", "member");
    let admin = bearer_with_role("ada", "admin");
    for (method, path, body) in [("DELETE", "/v1/users/7", None), ("POST", delete_user, Some(json!({"id": "7"})))] {
        let send = |authorization: Option<&str>| {
            let mut request = client.request(method, path);
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            request.send()
        };
        let before = upstream.calls().len();
        send(None).await.assert_error(401, 16);
        send(Some(&member)).await.assert_error(403, 7);
        assert_eq!(upstream.calls().len(), before, "{method} {path}: refused before the upstream");
        assert_eq!(send(Some(&admin)).await.status, 200, "{method} {path} as an admin");
    }
    let connect = client.request("POST", delete_user).header("connect-protocol-version", "1").json(&json!({"id": "7"}));
    assert_eq!(connect.header("authorization", &member).send().await.json()["code"], "permission_denied");
}
