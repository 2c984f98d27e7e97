//! The `protogate` binary: `check`, `routes` (table, JSON, `--match`) and `serve`, with their
//! output and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

#[path = "../examples/services/mod.rs"]
mod services;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use support::{Client, Reply, Traffic, Upstream};

const BIN: &str = env!("CARGO_BIN_EXE_protogate");

fn descriptors_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/descriptors").to_owned()
}

fn protogate(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("PROTOGATE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn example_args(descriptors: &str) -> Vec<&str> {
    vec!["--descriptors", descriptors, "--upstream", "http://127.0.0.1:50051"]
}

#[test]
fn check_accepts_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptors_dir();
    let out = protogate(&[&["check"][..], &example_args(&d)].concat(), dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok: 24 routes for 2 services from 2 proto files and 1 upstream\n");
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.binpb"), b"\xff\xff\xff").unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[jwt]\nissuers = [\"x\"]\n[[upstreams]]\nname = \"a\"\nservices = [\"*\"]\nendpoints = []\n",
    )
    .unwrap();
    let out = protogate(&["check", "--descriptors", "broken.binpb"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert_eq!(lines[0], "error: config: upstreams[0].endpoints: must list at least one endpoint URL");
    assert!(lines[1].starts_with("error: config: jwt.algorithms: list the algorithms"), "{stderr}");
    assert_eq!(lines[2], "error: config: jwt.keys: no keys: give keys, a jwks_file or a jwks_url");
    assert!(lines[3].starts_with("error: descriptors: broken.binpb: not a FileDescriptorSet"), "{stderr}");
}

#[test]
fn check_reports_shadowed_routes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dup.proto"),
        r#"syntax = "proto3";
package dup.v1;
import "google/api/annotations.proto";
service Things {
  rpc A(Req) returns (Req) { option (google.api.http) = { get: "/v1/things/{id}" }; }
  rpc B(Req) returns (Req) { option (google.api.http) = { get: "/v1/things/{name}" }; }
}
message Req { string id = 1; string name = 2; }
"#,
    )
    .unwrap();
    let out = protogate(&["check", "--descriptors", "dup.proto", "--upstream", "http://127.0.0.1:1"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: GET /v1/things/{name} of dup.v1.Things.B never matches: GET /v1/things/{id} of dup.v1.Things.A has the same shape and comes first\n"
    );
}

#[test]
fn check_warns_about_services_without_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptors_dir();
    let out =
        protogate(&["check", "--descriptors", &d, "--upstream", "example.users.v1.*=http://127.0.0.1:1"], dir.path());
    assert!(out.status.success());
    assert_eq!(
        text(&out.stderr),
        "warning: no upstream serves example.orders.v1.OrderService: its routes would answer 502\n"
    );
}

#[test]
fn routes_prints_an_aligned_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptors_dir();
    let out = protogate(&[&["routes"][..], &example_args(&d)].concat(), dir.path());
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 25, "{stdout}");
    assert!(lines[0].starts_with("METHOD  PATH"), "{stdout}");
    let column = lines[0].find("GRPC METHOD").unwrap();
    let get_user = lines.iter().find(|l| l.contains("UserService.GetUser") && l.starts_with("GET")).unwrap();
    assert_eq!(get_user.find("example.users.v1.UserService.GetUser"), Some(column), "aligned: {stdout}");
    assert!(get_user.contains("/v1/users/{id}"));
    assert!(stdout.contains("POST    /v1/orders/{id}:cancel"), "{stdout}");
}

#[test]
fn routes_json_is_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptors_dir();
    let out = protogate(&[&["routes", "--json"][..], &example_args(&d)].concat(), dir.path());
    let routes: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(routes.len(), 24);
    let update = routes
        .iter()
        .find(|r| r["grpc_method"] == "example.users.v1.UserService.UpdateUser" && r["default"] == false)
        .unwrap();
    assert_eq!(
        update,
        &serde_json::json!({
            "method": "PATCH", "path": "/v1/users/{user.id}", "grpc_method": "example.users.v1.UserService.UpdateUser",
            "body": "user", "response_body": null, "upstream": "default", "endpoints": ["http://127.0.0.1:50051"],
            "default": false, "streaming": null
        })
    );
}

#[test]
fn routes_match_explains_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptors_dir();
    let out =
        protogate(&[&["routes", "--match", "GET /v1/users/7?view=FULL"][..], &example_args(&d)].concat(), dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "GET /v1/users/7?view=FULL\n  route    GET /v1/users/{id}\n  calls    example.users.v1.UserService.GetUser on upstream default (http://127.0.0.1:50051)\n  binds    id = \"7\"\n  request  {\"id\":\"7\",\"view\":\"FULL\"}\n"
    );
    let with_body = protogate(
        &[&["routes", "--match", "PATCH /v1/users/2", "--body", r#"{"displayName":"A"}"#][..], &example_args(&d)]
            .concat(),
        dir.path(),
    );
    assert!(
        text(&with_body.stdout)
            .contains(r#"request  {"user":{"id":"2","displayName":"A"},"updateMask":"displayName"}"#)
    );
}

#[test]
fn routes_match_explains_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptors_dir();
    let out = protogate(&[&["routes", "--match", "GET /v1/user/7"][..], &example_args(&d)].concat(), dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("error    404: no route matches"), "{stdout}");
    assert!(stdout.contains("nearest  GET /v1/users/{id}  (example.users.v1.UserService.GetUser)\n"), "{stdout}");
    let first = stdout.lines().find(|l| l.contains("nearest")).unwrap();
    assert!(first.contains("/v1/users/{id}"), "the closest comes first: {stdout}");
    let wrong = protogate(&[&["routes", "--match", "PUT /v1/users/7"][..], &example_args(&d)].concat(), dir.path());
    assert!(text(&wrong.stdout).contains("405: the path matches, but only for GET, PATCH, DELETE"));
    let bad =
        protogate(&[&["routes", "--match", "GET /v1/users/7?view=HUGE"][..], &example_args(&d)].concat(), dir.path());
    assert!(text(&bad.stdout).contains("400: invalid value for field \"view\""), "{}", text(&bad.stdout));
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = protogate(&["serve", "--upstream", "ftp://x"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("must be an http:// or https:// URL"), "{}", text(&out.stderr));
    let missing = protogate(&["check", "--config", "nope.toml"], dir.path());
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).starts_with("error: nope.toml: "), "{}", text(&missing.stderr));
}

/// Starts `protogate serve` and waits for its "listening on" line; returns the child (its
/// stdout, the access log, piped) and the address.
async fn serve(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let served = serve_with_admin(args, dir, env).await;
    (served.child, served.addr)
}

/// A `protogate serve` process.
struct Served {
    child: tokio::process::Child,
    addr: String,
    /// The admin listener's address, when it has one.
    admin: Option<String>,
    /// Its diagnostic log (stderr) after the "listening on" line.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// As `serve`, with the admin listener's address and the diagnostic log.
async fn serve_with_admin(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Served {
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("PROTOGATE_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (addr, admin) = support::announced_addresses(&mut lines).await;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    Served { child, addr, admin, log }
}

#[tokio::test]
async fn serve_answers_and_stops_on_sigterm() {
    let upstream = Upstream::start().await;
    upstream.reply(Reply::json(serde_json::json!({"id": "7", "displayName": "Seven"})));
    let dir = tempfile::tempdir().unwrap();
    let d = descriptors_dir();
    let url = upstream.url();
    let args =
        ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--descriptors", &d, "--upstream", &url];
    let Served { mut child, addr, admin, log } = serve_with_admin(&args, dir.path(), &[]).await;
    let client = Client::new(addr.parse().unwrap());
    let response = client.request("GET", "/v1/users/7").header("X-Request-Id", "cli-req-1").send().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["displayName"], "Seven");
    assert_eq!(upstream.last_call().path, "/example.users.v1.UserService/GetUser");
    let admin = Client::new(admin.expect("the admin listener's address is logged").parse().unwrap());
    let metrics = admin.request("GET", "/metrics").send().await;
    let metrics = text(&metrics.body);
    assert!(
        metrics.contains(r#"protogate_http_requests_total{route="/v1/users/{id}",method="GET",status="200"} 1"#),
        "{metrics}"
    );
    assert_eq!(admin.request("GET", "/healthz").send().await.status, 200);
    // A failure's log line names the request: its id, route and status (at the default level,
    // without the request's span).
    upstream.reply(Reply::json(serde_json::json!({})).delay(Duration::from_secs(1)));
    let late = client.request("GET", "/v1/users/7").header("X-Request-Id", "cli-req-2").header("Grpc-Timeout", "20m");
    assert_eq!(late.send().await.status, 504);
    for _ in 0..500 {
        if log.lock().unwrap().iter().any(|l| l.contains("cli-req-2")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lines = log.lock().unwrap().clone();
    let line = lines.iter().find(|l| l.contains("cli-req-2")).unwrap_or_else(|| panic!("no log line: {lines:?}"));
    assert!(line.contains("WARN") && line.contains("deadline"), "{line}");
    for field in [r#"request_id="cli-req-2""#, r#"route="/v1/users/{id}""#, "status=504", r#"path="/v1/users/7""#] {
        assert!(line.contains(field), "{field} in {line}");
    }

    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    // The access log is on stdout, one JSON object per request, flushed before exit.
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(line["request_id"], "cli-req-1");
    assert_eq!(line["route"], "/v1/users/{id}");
    assert_eq!(line["status"], 200);
}

#[tokio::test]
async fn serve_reads_the_config_file_with_paths_relative_to_it() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("protos")).unwrap();
    std::fs::copy(format!("{}/examples.binpb", descriptors_dir()), conf.join("protos/examples.binpb")).unwrap();
    std::fs::write(
        conf.join("gw.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\n[descriptors]\npaths = [\"protos\"]\n[[upstreams]]\nname = \"all\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\n",
            upstream.url()
        ),
    )
    .unwrap();
    let config = conf.join("gw.toml");
    let (_child, addr) = serve(&["serve"], dir.path(), &[("PROTOGATE_CONFIG", config.to_str().unwrap())]).await;
    let response = Client::new(addr.parse().unwrap()).request("GET", "/v1/users/1/orders").send().await;
    assert_eq!(response.status, 200);
    assert_eq!(upstream.last_call().path, "/example.orders.v1.OrderService/ListOrders");
}

#[tokio::test]
async fn sighup_reads_the_config_file_again() {
    let (first, second) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(format!("{}/examples.binpb", descriptors_dir()), dir.path().join("examples.binpb")).unwrap();
    let write = |upstream: &Upstream| {
        let toml = format!(
            "listen = \"127.0.0.1:0\"\n[descriptors]\npaths = [\"examples.binpb\"]\n[[upstreams]]\nname = \"all\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\n",
            upstream.url()
        );
        std::fs::write(dir.path().join("gateway.toml"), toml).unwrap();
    };
    write(&first);
    let Served { child, addr, log, .. } = serve_with_admin(&["serve"], dir.path(), &[]).await;
    let client = Client::new(addr.parse().unwrap());
    assert_eq!(client.request("GET", "/v1/users/1").send().await.status, 200);
    assert_eq!(first.calls().len(), 1);

    write(&second);
    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    for _ in 0..1000 {
        assert_eq!(client.request("GET", "/v1/users/1").send().await.status, 200);
        if !second.calls().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!second.calls().is_empty(), "after SIGHUP requests go to the new upstream: {:?}", log.lock().unwrap());
    assert!(log.lock().unwrap().iter().any(|l| l.contains("SIGHUP")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_file_copied_into_the_watched_directory_is_served_without_a_failed_request() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("descriptors")).unwrap();
    std::fs::copy(support::testing_descriptors(), dir.path().join("descriptors/bookstore.binpb")).unwrap();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n[descriptors]\npaths = [\"descriptors\"]\nwatch = true\n[[upstreams]]\nname = \"all\"\nservices = [\"*\"]\nendpoints = [\"{}\"]\n",
        upstream.url()
    );
    std::fs::write(dir.path().join("gateway.toml"), toml).unwrap();
    let Served { child: _child, addr, log, .. } = serve_with_admin(&["serve"], dir.path(), &[]).await;
    let client = Client::new(addr.parse().unwrap());
    assert_eq!(client.request("GET", "/v1/users/7").send().await.status, 404);

    // Load on the routes already there, from four clients.
    let traffic = Traffic::start(&client, "/v1/shelves", 4);
    let poll = |path: &'static str, status: u16| {
        let client = client.clone();
        async move {
            let start = std::time::Instant::now();
            for _ in 0..1000 {
                if client.request("GET", path).send().await.status == status {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("GET {path} never answered {status}");
        }
    };
    traffic.run_for(200).await;

    std::fs::copy(format!("{}/examples.binpb", descriptors_dir()), dir.path().join("descriptors/examples.binpb"))
        .unwrap();
    let took = poll("/v1/users/7", 200).await;
    assert!(took < Duration::from_secs(2), "the new service answered after {took:?}");

    std::fs::write(dir.path().join("descriptors/corrupt.binpb"), b"\x0a\xff\xff\xff not a descriptor set").unwrap();
    for _ in 0..1000 {
        if log.lock().unwrap().iter().any(|l| l.contains("corrupt.binpb")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let line = log.lock().unwrap().iter().find(|l| l.contains("corrupt.binpb")).cloned();
    assert!(line.as_deref().is_some_and(|l| l.contains("ignored")), "the corrupt file is logged: {line:?}");
    assert_eq!(client.request("GET", "/v1/users/7").send().await.status, 200, "and changes nothing");
    std::fs::remove_file(dir.path().join("descriptors/corrupt.binpb")).unwrap();

    std::fs::remove_file(dir.path().join("descriptors/examples.binpb")).unwrap();
    poll("/v1/users/7", 404).await;

    traffic.run_for(1000usize.saturating_sub(traffic.sent())).await;
    let (sent, failures) = traffic.finish().await;
    assert!(sent >= 1000);
    assert!(failures.is_empty(), "{} of {sent} requests failed: {failures:?}", failures.len());
}

#[test]
fn serve_refuses_to_start_on_bad_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.proto"), "syntax = \"proto3\"; message {").unwrap();
    let out = protogate(&["serve", "--descriptors", "bad.proto", "--listen", "127.0.0.1:0"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bad.proto"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_and_refuses_new_connections() {
    let upstream = Upstream::start().await;
    upstream.reply(Reply::json(serde_json::json!({"id": "7"})).delay(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.toml"), "shutdown_delay = \"1s\"\n").unwrap();
    let (d, url) = (descriptors_dir(), upstream.url());
    let mut args = vec!["serve", "--config", "gw.toml", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    args.extend(["--descriptors", &d, "--upstream", &url]);
    let Served { mut child, addr, admin, .. } = serve_with_admin(&args, dir.path(), &[]).await;
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let admin = Client::new(admin.unwrap().parse().unwrap());
    assert_eq!(admin.request("GET", "/readyz").send().await.status, 200);
    let requests: Vec<_> = (0..50)
        .map(|_| {
            // A connection each, as 50 separate clients would.
            let client = Client::new(addr);
            tokio::spawn(async move { client.request("GET", "/v1/users/7").send().await.status })
        })
        .collect();
    upstream.wait_for_calls(50).await;
    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    // During shutdown_delay: readiness fails at once, and a late connection is still served.
    let mut ready = admin.request("GET", "/readyz").send().await;
    for _ in 0..100 {
        if ready.status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        ready = admin.request("GET", "/readyz").send().await;
    }
    assert_eq!(ready.status, 503, "draining: load balancers are told to stop sending");
    assert!(ready.json()["reasons"][0].as_str().unwrap().starts_with("shutting down"));
    let late = tokio::spawn({
        let client = Client::new(addr);
        async move { client.request("GET", "/v1/users/7").send().await.status }
    });
    let refused = async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), refused).await.expect("new connections are refused after the delay");
    assert_eq!(late.await.unwrap(), 200, "a connection made during shutdown_delay is served");
    for request in requests {
        assert_eq!(request.await.unwrap(), 200, "a request in flight at SIGTERM completes");
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_stream_open_at_sigterm_is_closed_after_the_drain_timeout() {
    let upstream = Upstream::start().await;
    upstream.reply(Reply::stream(vec![serde_json::json!({"id": "1"})]).hold());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.toml"), "drain_timeout = \"300ms\"\n").unwrap();
    let (d, url) = (descriptors_dir(), upstream.url());
    let args = ["serve", "--config", "gw.toml", "--listen", "127.0.0.1:0", "--descriptors", &d, "--upstream", &url];
    let (mut child, addr) = serve(&args, dir.path(), &[]).await;
    let client = Client::new(addr.parse().unwrap());
    let mut stream = client.request("GET", "/v1/users/1/orders:watch").send_streaming().await;
    assert_eq!(stream.status, 200);
    assert!(stream.next_line().await.is_some(), "the first message arrived");
    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exits 0 once the drain timeout has passed: {status:?}");
}

#[tokio::test]
async fn environment_variables_and_secret_files_configure_the_binary() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwt.secret"), "a mounted HMAC secret of 32+ bytes\n").unwrap();
    let config = r#"[descriptors]
paths = ["${DESCRIPTORS}"]
[[upstreams]]
name = "examples"
services = ["*"]
endpoints = ["${UPSTREAM_URL}"]
timeout = "${UPSTREAM_TIMEOUT:-5s}"
[jwt]
algorithms = ["HS256"]
keys = [{ kid = "k", alg = "HS256", secret_file = "jwt.secret" }]
"#;
    std::fs::write(dir.path().join("gw.toml"), config).unwrap();
    let descriptors = descriptors_dir();
    let url = upstream.url();
    let env = [("DESCRIPTORS", descriptors.as_str()), ("UPSTREAM_URL", url.as_str())];
    let args = ["serve", "--config", "gw.toml", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    let Served { mut child, admin, .. } = serve_with_admin(&args, dir.path(), &env).await;
    let admin = Client::new(admin.unwrap().parse().unwrap());
    let shown: serde_json::Value = admin.request("GET", "/config").send().await.json();
    assert_eq!(shown["upstreams"][0]["endpoints"][0], url.as_str(), "the variable's value");
    assert_eq!(shown["upstreams"][0]["timeout"], "5s", "the default");
    assert_eq!(shown["jwt"]["keys"][0]["secret"], "[redacted]", "never the secret");
    assert!(shown["jwt"]["keys"][0]["secret_file"].as_str().unwrap().ends_with("jwt.secret"), "where it came from");
    let _ = child.start_kill();

    // An unset variable with no default is an error naming it and its key.
    let out = Command::new(BIN)
        .args(["check", "--config", "gw.toml"])
        .current_dir(dir.path())
        .env_remove("PROTOGATE_CONFIG")
        .env_remove("UPSTREAM_URL")
        .env("DESCRIPTORS", &descriptors)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("upstreams[0].endpoints[0]") && stderr.contains("UPSTREAM_URL is not set"), "{stderr}");
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_diagnostic_line() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.toml"), "[log]\nformat = \"json\"\n").unwrap();
    let (d, url) = (descriptors_dir(), upstream.url());
    let args = ["serve", "--config", "gw.toml", "--listen", "127.0.0.1:0", "--descriptors", &d, "--upstream", &url];
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .current_dir(dir.path())
        .env_remove("PROTOGATE_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    let line: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["fields"]["message"].as_str().unwrap().starts_with("loaded "), "{line}");
    assert!(line["timestamp"].is_string() && line["target"].is_string(), "{line}");
    let _ = child.start_kill();
}

/// The OpenTelemetry environment variables configure export where the config file is silent:
/// here OTLP over HTTP to a collector's receiver, under the service name the environment gives.
#[tokio::test]
async fn spans_go_where_the_otel_environment_says_over_otlp_http() {
    use support::collector::{Collector, attribute, string, unhex};

    let collector = Collector::default();
    let base = collector.start_http().await;
    let upstream = Upstream::start().await;
    upstream.reply(Reply::json(serde_json::json!({"id": "7"})));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), "[tracing]\nbatch_delay = \"50ms\"\n").unwrap();
    let d = descriptors_dir();
    let url = upstream.url();
    let args =
        ["serve", "--config", "gateway.toml", "--listen", "127.0.0.1:0", "--descriptors", &d, "--upstream", &url];
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "gateway-from-env"),
        ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
    ];
    let (_child, addr) = serve(&args, dir.path(), &env).await;
    let client = Client::new(addr.parse().unwrap());
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = client.request("GET", "/v1/users/7").header("traceparent", traceparent).send().await;
    assert_eq!(response.status, 200);

    let spans = collector.spans_of(&unhex("0af7651916cd43dd8448eb211c80319c"), 2).await;
    let kinds: Vec<i32> = spans.iter().map(|(_, s)| s.kind).collect();
    assert!(kinds.contains(&2) && kinds.contains(&3), "a SERVER and a CLIENT span: {kinds:?}");
    for (resource, _) in &spans {
        assert_eq!(attribute(resource, "service.name").cloned(), string("gateway-from-env"));
    }
}

#[test]
fn an_otel_variable_the_gateway_cannot_follow_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptors_dir();
    let out = Command::new(BIN)
        .args(["check", "--descriptors", &d])
        .current_dir(dir.path())
        .env_remove("PROTOGATE_CONFIG")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("$OTEL_EXPORTER_OTLP_PROTOCOL: \"http/json\""), "{stderr}");
}

/// The example services, served on `listener` until the returned sender is dropped or sent to.
fn run_examples(listener: tokio::net::TcpListener, orders: bool) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let orders = orders.then(services::Orders::seeded);
    tokio::spawn(services::serve(listener, Some(services::Users::seeded()), orders, async {
        let _ = stopped.await;
    }));
    stop
}

/// Polls `path` until it answers `status`, at most 20 s.
async fn until_status(client: &Client, path: &str, status: u16) {
    for _ in 0..400 {
        if client.request("GET", path).send().await.status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("GET {path} did not answer {status} within 20 s");
}

/// No descriptor file: the routes come from the upstream's server reflection, follow it when
/// it serves more, and stay when it cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_come_from_server_reflection_and_follow_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = run_examples(listener, false);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[descriptors]\npaths = []\nreflection_interval = \"1s\"\n\n\
         [[upstreams]]\nname = \"examples\"\nservices = [\"*\"]\nendpoints = [\"http://{addr}\"]\ndescriptors = \"reflection\"\n"
    );
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    // `routes` reads the same config: the annotated routes come through reflection too.
    let routes = protogate(&["routes"], dir.path());
    assert!(text(&routes.stdout).contains("GET     /v1/users/{id}"), "{}", text(&routes.stdout));
    let served = serve_with_admin(&["serve", "--listen", "127.0.0.1:0"], dir.path(), &[]).await;
    let client = Client::new(served.addr.parse().unwrap());
    let ada = client.request("GET", "/v1/users/1").send().await;
    assert_eq!(ada.status, 200, "routed from reflection at start: {}", ada.text());
    assert_eq!(ada.json()["displayName"], "Ada Lovelace");
    assert_eq!(client.request("GET", "/v1/orders/1").send().await.status, 404, "orders is not served yet");

    // The service restarts serving one more service: its routes come with the next fetch.
    drop(first);
    let listener = bind_again(addr).await;
    let second = run_examples(listener, true);
    until_status(&client, "/v1/orders/1", 200).await;

    // The upstream goes away: a fetch fails, and what was served stays routed (502, not 404).
    drop(second);
    for _ in 0..400 {
        if served
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("server reflection") && l.contains("keeping what was fetched"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served.log.lock().unwrap().iter().any(|l| l.contains("keeping what was fetched")),
        "a failed fetch was logged"
    );
    assert_eq!(client.request("GET", "/v1/orders/1").send().await.status, 502);
}

/// A server of the reflection protocol's first version only (`v1alpha`, as older gRPC
/// libraries serve it): the gateway falls back to it.
#[tokio::test]
async fn an_older_server_s_v1alpha_reflection_is_followed_too() {
    use services::pb::users::user_service_server::UserServiceServer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(include_bytes!("../descriptors/examples.binpb"))
        .with_service_name("example.users.v1.UserService")
        .build_v1alpha()
        .unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(reflection)
            .add_service(UserServiceServer::new(services::Users::seeded()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let set = protogate::descriptors::reflection::fetch(&format!("http://{addr}")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reflected.binpb"), set).unwrap();
    let descriptors = dir.path().display().to_string();
    let out = protogate(&["routes", "--descriptors", &descriptors, "--upstream", "http://127.0.0.1:1"], dir.path());
    let routes = text(&out.stdout);
    assert!(routes.contains("GET     /v1/users/{id}"), "the annotations came through v1alpha: {routes}");
}

/// The port a stopped server used, once it is free again.
async fn bind_again(addr: std::net::SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..200 {
        if let Ok(listener) = tokio::net::TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{addr} did not become free within 10 s");
}
