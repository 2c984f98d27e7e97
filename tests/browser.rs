//! A real browser against the gateway: headless Chromium (Debian's `chromium`), driven over
//! the DevTools protocol, opens a page served from another origin and calls the gateway the
//! way a web app would — `fetch` (with a CORS preflight), `EventSource` and `WebSocket` — then
//! the test checks what the upstream produced arrived, and that a gateway which does not
//! allow the page's origin is refused.
//!
//! `scripts/test` (run by `.ci/run`) installs Chromium and sets `PROTOGATE_REQUIRE_BROWSER=1`,
//! which makes a missing browser a failure; elsewhere the test says it was skipped.
//! `PROTOGATE_CHROMIUM` picks another binary.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use support::{Client, Gateway, Reply, Upstream, config};

#[path = "../examples/services/mod.rs"]
mod services;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PROTOGATE_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    path.exists().then_some(path)
}

/// Headless Chromium with one page, and a DevTools connection to that page.
struct Browser {
    _process: tokio::process::Child,
    _profile: tempfile::TempDir,
    devtools: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Chromium started on `url`. On a loaded machine a Chromium that starts beside others now
    /// and then exits or stalls before it listens: a few bounded attempts, each with a fresh
    /// profile, and what it printed when none succeeds.
    async fn open(binary: &PathBuf, url: &str) -> Browser {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Browser::launch(binary, url).await {
                Ok(browser) => return browser,
                Err(why) => failures.push(why),
            }
        }
        panic!("chromium did not start in three attempts: {failures:#?}");
    }

    async fn launch(binary: &PathBuf, url: &str) -> Result<Browser, String> {
        let profile = tempfile::tempdir().unwrap();
        let log = profile.path().join("stderr.log");
        let mut process = tokio::process::Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let printed = || std::fs::read_to_string(&log).unwrap_or_default();
        // Chromium writes its DevTools port to the profile once it listens.
        let port_file = profile.path().join("DevToolsActivePort");
        for _ in 0..400 {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(port) = text.lines().next().and_then(|l| l.parse().ok())
            {
                let devtools = page_socket(port).await;
                return Ok(Browser { _process: process, _profile: profile, devtools, next_id: 0 });
            }
            if let Ok(Some(status)) = process.try_wait() {
                return Err(format!("exited ({status}) before listening:\n{}", printed()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("no DevTools port within 20 s:\n{}", printed()))
    }

    /// Evaluates `expression` in the page, awaiting it if it is a promise; its value as JSON.
    async fn evaluate(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let result = self.command("Runtime.evaluate", params).await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("the page threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Sends one DevTools command to the page; its result.
    async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({ "id": id, "method": method, "params": params });
        self.devtools.send(Message::text(command.to_string())).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.devtools.next())
                .await
                .expect("the page answers within 30 s")
                .expect("DevTools stays connected")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] != id {
                continue; // an event
            }
            assert!(reply.get("error").is_none(), "{method}: {reply}");
            return reply["result"].clone();
        }
    }
}

/// The DevTools WebSocket of the browser's first page.
async fn page_socket(
    port: u16,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let client = Client::new(SocketAddr::from(([127, 0, 0, 1], port)));
    for _ in 0..100 {
        let targets = client.request("GET", "/json/list").send().await.json();
        let page = targets.as_array().unwrap().iter().find(|t| t["type"] == "page").cloned();
        if let Some(url) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str().map(str::to_owned)) {
            return tokio_tungstenite::connect_async(url).await.unwrap().0;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromium opened no page");
}

/// A page on its own origin: the web app the browser runs.
async fn serve_page() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html("<!doctype html><title>a web app</title><p>ready</p>") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The calls a web app makes, as one script: its results as JSON.
fn script(gateway: SocketAddr, refusing: SocketAddr) -> String {
    format!(
        r#"(async () => {{
  const gateway = "http://{gateway}";
  const out = {{}};

  // fetch with a JSON body and a metadata header: not a "simple" request, so a preflight first.
  const response = await fetch(gateway + "/v1/everything", {{
    method: "POST",
    headers: {{"content-type": "application/json", "grpc-metadata-x-tenant": "browser"}},
    body: JSON.stringify({{stringValue: "from the browser", int32Value: 7}}),
  }});
  out.unary = {{
    status: response.status,
    body: await response.json(),
    requestId: response.headers.get("x-request-id"),
    servedBy: response.headers.get("grpc-metadata-x-served-by"),
  }};

  // A server stream as Server-Sent Events.
  out.events = await new Promise((resolve, reject) => {{
    const source = new EventSource(gateway + "/v1/streams/news");
    const seen = [];
    source.onmessage = (event) => {{
      seen.push(JSON.parse(event.data));
      if (seen.length === 3) {{ source.close(); resolve(seen); }}
    }};
    source.onerror = () => {{ source.close(); reject(new Error("EventSource failed after " + seen.length)); }};
  }});

  // A bidirectional stream over a WebSocket; an empty frame ends the client's side.
  out.socket = await new Promise((resolve, reject) => {{
    const socket = new WebSocket("ws://{gateway}/v1/streams:chat");
    const replies = [];
    socket.onopen = () => {{
      socket.send(JSON.stringify({{int32Value: 1}}));
      socket.send(JSON.stringify({{stringValue: "two"}}));
    }};
    socket.onmessage = (event) => {{
      replies.push(JSON.parse(event.data));
      if (replies.length === 2) socket.send("");
    }};
    socket.onclose = (event) => resolve({{replies, code: event.code, status: JSON.parse(event.reason || "null")}});
    socket.onerror = () => reject(new Error("WebSocket failed"));
  }});

  // A gateway that does not list this page's origin.
  out.refusedFetch = await fetch("http://{refusing}/v1/everything", {{
    method: "POST", headers: {{"content-type": "application/json"}}, body: "{{}}",
  }}).then(() => "allowed", (error) => error.name);
  out.refusedSocket = await new Promise((resolve) => {{
    const socket = new WebSocket("ws://{refusing}/v1/streams:chat");
    socket.onopen = () => resolve("open");
    socket.onclose = (event) => resolve("closed " + event.code);
  }});
  return out;
}})()"#
    )
}

/// Chromium, unless the machine has none and the run does not require it.
fn chromium_or_skip() -> Option<PathBuf> {
    let binary = chromium();
    if binary.is_none() {
        assert!(
            std::env::var_os("PROTOGATE_REQUIRE_BROWSER").is_none(),
            "PROTOGATE_REQUIRE_BROWSER is set but there is no /usr/bin/chromium (apt-get install chromium)"
        );
        eprintln!("skipped: no Chromium at /usr/bin/chromium (install Debian's chromium, or set PROTOGATE_CHROMIUM)");
    }
    binary
}

/// A browser with the web app at `page` loaded.
async fn open_page(binary: &PathBuf, page: SocketAddr) -> Browser {
    open_url(binary, page, "/").await
}

/// A browser with `path` of `origin` loaded.
async fn open_url(binary: &PathBuf, origin: SocketAddr, path: &str) -> Browser {
    let mut browser = Browser::open(binary, &format!("http://{origin}{path}")).await;
    // The page target exists before the page has loaded into it: wait for the page.
    let loaded = format!("location.origin === 'http://{origin}' && document.readyState === 'complete'");
    for _ in 0..200 {
        if browser.evaluate(&loaded).await == true {
            return browser;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page did not load within 10 s");
}

#[tokio::test]
async fn a_browser_calls_unary_server_stream_and_bidi_methods_across_origins() {
    let Some(binary) = chromium_or_skip() else { return };
    let page = serve_page().await;
    let upstream = Upstream::start().await;
    upstream.script(|call| match call.path.rsplit('/').next().unwrap() {
        "Watch" => {
            Reply::stream((1..=3).map(|i| json!({"int32Value": i, "stringValue": format!("headline {i}")})).collect())
        }
        _ => Reply::default().header("x-served-by", "upstream"),
    });
    let upstreams =
        format!("[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\n", upstream.url());
    let cors = format!("[cors]\nallow_origins = [\"http://{page}\"]\n");
    let gateway = Gateway::with_config(config(&cors, &upstreams)).await;
    let refusing =
        Gateway::with_config(config("[cors]\nallow_origins = [\"https://elsewhere.example\"]", &upstreams)).await;

    let mut browser = open_page(&binary, page).await;
    let out = browser.evaluate(&script(gateway.addr, refusing.addr)).await;

    let unary = &out["unary"];
    assert_eq!(unary["status"], 200, "{out}");
    assert_eq!(unary["body"], json!({"stringValue": "from the browser", "int32Value": 7}));
    assert_eq!(unary["servedBy"], "upstream", "an exposed Grpc-Metadata header is readable");
    assert!(unary["requestId"].as_str().is_some_and(|id| !id.is_empty()), "X-Request-Id is readable: {out}");

    let events = out["events"].as_array().unwrap();
    let headlines: Vec<&str> = events.iter().map(|e| e["stringValue"].as_str().unwrap()).collect();
    assert_eq!(headlines, ["headline 1", "headline 2", "headline 3"]);

    let socket = &out["socket"];
    assert_eq!(socket["replies"], json!([{"int32Value": 1}, {"stringValue": "two"}]));
    assert_eq!(socket["code"], 1000);
    assert_eq!(socket["status"], json!({"code": 0, "message": ""}));

    assert_eq!(out["refusedFetch"], "TypeError", "the browser refuses the response: {out}");
    assert_eq!(out["refusedSocket"], "closed 1006", "the gateway refuses the handshake: {out}");

    // What reached the upstream: the unary call (its preflight did not), the stream, the chat.
    let calls = upstream.calls();
    let echo = calls.iter().find(|c| c.path.ends_with("/Echo")).expect("the fetch reached the upstream");
    assert_eq!(echo.metadata["x-tenant"], "browser");
    assert_eq!(calls.iter().filter(|c| c.path.ends_with("/Echo")).count(), 1, "one call, not two: {calls:?}");
    assert!(calls.iter().any(|c| c.path.ends_with("/Watch") && c.request == json!({"stringValue": "news"})));
    assert!(calls.iter().any(|c| c.path.ends_with("/Chat")));
}

/// The streams of the test above behind a policy that requires a token, which a browser can
/// put in the `access_token` query parameter (`EventSource`) or a cookie (`WebSocket`).
fn authenticated_script(gateway: SocketAddr, token: &str) -> String {
    format!(
        r#"(async () => {{
  const gateway = "http://{gateway}";
  const out = {{}};
  const firstEvent = (url) => new Promise((resolve) => {{
    const source = new EventSource(url);
    source.onmessage = (event) => {{ source.close(); resolve(JSON.parse(event.data)); }};
    source.onerror = () => {{ source.close(); resolve("refused"); }};
  }});
  out.withoutToken = await firstEvent(gateway + "/v1/streams/news");
  out.queryToken = await firstEvent(gateway + "/v1/streams/news?access_token={token}");

  // The page's cookie goes with the handshake to the gateway's host (cookies ignore ports).
  document.cookie = "protogate_token={token}; path=/; SameSite=Lax";
  out.cookieSocket = await new Promise((resolve, reject) => {{
    const socket = new WebSocket("ws://{gateway}/v1/streams:chat");
    const replies = [];
    socket.onopen = () => socket.send(JSON.stringify({{stringValue: "with a cookie"}}));
    socket.onmessage = (event) => {{ replies.push(JSON.parse(event.data)); socket.send(""); }};
    socket.onclose = (event) => resolve({{replies, code: event.code}});
    socket.onerror = () => reject(new Error("WebSocket failed"));
  }});
  return out;
}})()"#
    )
}

#[tokio::test]
async fn a_browser_authenticates_event_source_by_query_and_websocket_by_cookie() {
    let Some(binary) = chromium_or_skip() else { return };
    let page = serve_page().await;
    let upstream = Upstream::start().await;
    upstream.script(|call| match call.path.rsplit('/').next().unwrap() {
        "Watch" => Reply::stream(vec![json!({"stringValue": "headline"})]),
        _ => Reply::default(),
    });
    let secret = "an HMAC secret of thirty-two bytes!";
    let upstreams =
        format!("[[upstreams]]\nname = \"test\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\n", upstream.url());
    let top = format!(
        "[cors]\nallow_origins = [\"http://{page}\"]\n\n\
         {}forward_claims = {{ sub = \"x-user-id\" }}\n\n\
         [[policy]]\nname = \"browsers\"\nauth = \"required\"\ntoken_cookie = \"protogate_token\"\ntoken_query = true\n",
        support::hs256_jwt(secret)
    );
    let gateway = Gateway::with_config(config(&top, &upstreams)).await;
    let bearer = support::hs256_bearer(secret, "reader");
    let token = bearer.trim_start_matches("Bearer ");

    let mut browser = open_page(&binary, page).await;
    let out = browser.evaluate(&authenticated_script(gateway.addr, token)).await;

    assert_eq!(out["withoutToken"], "refused", "{out}");
    assert_eq!(out["queryToken"], json!({"stringValue": "headline"}), "{out}");
    assert_eq!(out["cookieSocket"]["replies"], json!([{"stringValue": "with a cookie"}]), "{out}");
    assert_eq!(out["cookieSocket"]["code"], 1000, "{out}");

    let calls = upstream.calls();
    assert_eq!(calls.len(), 2, "the call without a token never reached the upstream: {calls:?}");
    let watch = calls.iter().find(|c| c.path.ends_with("/Watch")).unwrap();
    assert_eq!(watch.request, json!({"stringValue": "news"}), "access_token is no message field");
    assert!(calls.iter().all(|c| c.metadata.get("x-user-id").is_some()), "both carried the verified subject");
    for call in &calls {
        for (name, value) in &call.metadata {
            assert!(!value.to_str().unwrap_or_default().contains(token), "{name} carries the token");
        }
    }
}

/// Defined in the docs page before a script runs: `until(test, what)` polls `test` for 10 s;
/// `rendered()` waits for the OpenAPI document to be on the page.
const DOCS_HELPERS: &str = r#"
window.until = async (test, what) => {
  for (let i = 0; i < 200; i++) {
    const found = test();
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("waited 10 s for " + what);
};
window.rendered = () => until(() => document.body.dataset.ready === "true", "the document to render");
true
"#;

/// The docs page on the admin listener, driven as a person would: find the route, fill in
/// its parameter, send it, read the answer on the page.
const TRY_GET_USER: &str = r#"(async () => {
  await rendered();
  const section = document.querySelector('section.operation[data-method="GET"][data-path="/v1/users/{id}"]');
  if (!section) throw new Error("no GET /v1/users/{id} on the page");
  section.querySelector(".head").click();
  section.scrollIntoView();
  section.querySelector('input[data-param="id"]').value = "1";
  section.querySelector("button.send").click();
  const answer = await until(() => {
    const text = section.querySelector("pre.response").textContent;
    return text.includes("displayName") ? text : null;
  }, "the answer");
  return {
    status: section.querySelector(".status").textContent,
    answer: JSON.parse(answer),
    description: section.querySelector(".body p")?.textContent,
    operations: document.querySelectorAll("section.operation").length,
  };
})()"#;

#[tokio::test]
async fn the_docs_page_finds_a_route_and_tries_it_against_the_gateway() {
    let Some(binary) = chromium_or_skip() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users = listener.local_addr().unwrap();
    tokio::spawn(services::serve(listener, Some(services::Users::seeded()), None, std::future::pending()));
    let upstreams = format!(
        "[descriptors]\npaths = [\"{}/descriptors\"]\n[[upstreams]]\nname = \"users\"\nservices = [\"*\"]\nendpoints = [\"http://{users}\"]\n",
        env!("CARGO_MANIFEST_DIR")
    );
    let gateway = Gateway::with_config(protogate::config::Config::from_toml(&upstreams).unwrap()).await;
    let admin = gateway.admin().await;

    let mut browser = open_url(&binary, admin.addr, "/docs").await;
    browser.evaluate(DOCS_HELPERS).await;
    let out = browser.evaluate(TRY_GET_USER).await;
    assert_eq!(out["status"], "200 OK", "{out}");
    assert_eq!(out["answer"]["displayName"], "Ada Lovelace", "{out}");
    assert_eq!(
        out["description"], "Gets one user. Unknown ids answer NOT_FOUND with a google.rpc.ResourceInfo detail.",
        "the proto comment is on the page"
    );
    assert!(out["operations"].as_u64().unwrap() >= 20, "{out}");

    // The page as it looked, kept beside the build's other outputs.
    let shot = browser.command("Page.captureScreenshot", json!({"format": "png"})).await;
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docs.png"), png).unwrap();
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// The issue's whole story for a newcomer's service: `library.proto` copied into the watched
/// directory is, without a restart, in `/routes`, in a valid `/openapi.json`, on `/docs`
/// (tried from the browser), and an MCP tool.
const TRY_GET_BOOK: &str = r#"(async () => {
  await rendered();
  const section = document.querySelector('section.operation[data-method="GET"][data-path="/v1/library/books/{id}"]');
  if (!section) return { found: false };
  section.querySelector(".head").click();
  section.querySelector('input[data-param="id"]').value = "7";
  section.querySelector("button.send").click();
  const answer = await until(() => section.querySelector("pre.response").textContent || null, "the answer");
  return {
    found: true,
    description: section.querySelector(".body p")?.textContent,
    status: section.querySelector(".status").textContent,
    answer: JSON.parse(answer),
  };
})()"#;

#[tokio::test]
async fn a_proto_file_dropped_in_reaches_routes_openapi_docs_and_mcp() {
    let Some(binary) = chromium_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors/examples.binpb"),
        dir.path().join("examples.binpb"),
    )
    .unwrap();
    // The upstream serves the examples only: it answers the new service's calls UNIMPLEMENTED.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users = listener.local_addr().unwrap();
    tokio::spawn(services::serve(listener, Some(services::Users::seeded()), None, std::future::pending()));
    let config = format!(
        "[descriptors]\npaths = [{:?}]\nwatch = true\n[mcp]\nenabled = true\n\
         [[upstreams]]\nname = \"all\"\nservices = [\"*\"]\nendpoints = [\"http://{users}\"]\n",
        dir.path().display().to_string()
    );
    let gateway = Gateway::with_config(protogate::config::Config::from_toml(&config).unwrap()).await;
    let admin = gateway.admin().await;

    std::fs::write(dir.path().join("library.proto"), include_str!("fixtures/library.proto")).unwrap();
    let mut routed = false;
    for _ in 0..200 {
        let routes = admin.request("GET", "/routes").send().await.json();
        if routes.as_array().unwrap().iter().any(|r| r["path"] == "/v1/library/books/{id}") {
            routed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(routed, "the new route is in /routes within 10 s");
    let called = gateway.client.request("GET", "/v1/library/books/7").send().await;
    assert_eq!(
        (called.status.as_u16(), called.json()["code"].clone()),
        (501, json!(12)),
        "the upstream was asked for the method"
    );

    let document = admin.request("GET", "/openapi.json").send().await.json();
    assert_eq!(document["paths"]["/v1/library/books/{id}"]["get"]["description"], "Gets one book by its id.");
    support::validate_openapi(&document, &[]);

    let listed = gateway
        .client
        .request("POST", "/mcp")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .json();
    let tools = listed["result"]["tools"].as_array().unwrap();
    let tool = tools.iter().find(|t| t["name"] == "Library_GetBook").expect("the new method is a tool");
    assert_eq!(tool["description"], "Gets one book by its id.");

    let mut browser = open_url(&binary, admin.addr, "/docs").await;
    browser.evaluate(DOCS_HELPERS).await;
    let out = browser.evaluate(TRY_GET_BOOK).await;
    assert_eq!(out["found"], true, "the docs page lists the new route: {out}");
    assert_eq!(out["description"], "Gets one book by its id.");
    assert!(out["status"].as_str().unwrap().starts_with("501"), "{out}");
    assert_eq!(out["answer"]["code"], 12, "the upstream's UNIMPLEMENTED, shown on the page: {out}");
}
