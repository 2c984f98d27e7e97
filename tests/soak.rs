//! Soak and chaos: the `protogate` binary serves mixed traffic — unary calls on a cached route
//! and a rate-limited one, server streams, client streams, WebSocket sessions — while one of
//! its two upstream endpoints is killed and restarted, Redis is stopped and restarted, the
//! descriptors and the config file are rewritten, and SIGHUP arrives. Every second it records
//! the gateway's RSS and open file descriptors, and every request's outcome.
//!
//! It passes when every failure fell inside a chaos window (the two seconds after an event)
//! and RSS and file descriptors end no more than 10% above where they were once warm: after
//! the first full round of chaos, when every kind of event has happened once (rebuilt
//! gateways, reconnected lanes and Redis connections are all part of "warm").
//!
//! `PROTOGATE_SOAK_SECONDS` sets the length: CI runs 60 s; the release report runs
//! `PROTOGATE_SOAK_SECONDS=600 cargo test --release --test soak -- --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use support::{Client, Redis, Reply, Upstream};

/// How long the traffic runs.
fn length() -> Duration {
    let seconds = std::env::var("PROTOGATE_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(seconds)
}

/// After a chaos event, how long failures are its doing.
const CHAOS_WINDOW: Duration = Duration::from_secs(2);
/// Between chaos events.
const CHAOS_EVERY: Duration = Duration::from_secs(5);
/// Traffic before the first chaos event.
const WARM_UP: Duration = Duration::from_secs(5);
/// Kinds of chaos event: a round has one of each.
const EVENTS: usize = 5;

/// Every request's outcome, and when each chaos event happened.
#[derive(Default)]
struct Record {
    outcomes: BTreeMap<(&'static str, String), u64>,
    /// (seconds since start, kind, why).
    failures: Vec<(f64, &'static str, String)>,
    /// (seconds since start, what).
    events: Vec<(f64, String)>,
}

struct Soak {
    started: Instant,
    record: Mutex<Record>,
    stop: AtomicBool,
}

impl Soak {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn outcome(&self, kind: &'static str, result: Result<String, String>) {
        let mut record = self.record.lock().unwrap();
        match result {
            Ok(outcome) => *record.outcomes.entry((kind, outcome)).or_default() += 1,
            Err(why) => {
                *record.outcomes.entry((kind, "failed".into())).or_default() += 1;
                let at = self.now();
                record.failures.push((at, kind, why));
            }
        }
    }

    fn event(&self, what: String) {
        let at = self.now();
        println!("{at:7.1}s chaos: {what}");
        self.record.lock().unwrap().events.push((at, what));
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// The gateway's resident memory (KiB) and open file descriptors.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (rss, fds)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_config(path: &Path, ports: (u16, u16), descriptors: &Path, upstreams: &[String], redis: &str, ttl: u32) {
    let toml = format!(
        r#"listen = "127.0.0.1:{}"
admin_listen = "127.0.0.1:{}"

[descriptors]
paths = [{:?}]
watch = true

[access_log]
format = "off"

[rate_limit]
backend = "redis"
redis_url = "{redis}"
redis_timeout = "100ms"

[cache]
backend = "redis"
redis_url = "{redis}"
redis_timeout = "100ms"

[[policy]]
name = "cached"
match = {{ path_prefix = "/v1/shelves/1" }}
cache = {{ ttl = "{ttl}s" }}

[[policy]]
name = "limited"
match = {{ path_prefix = "/v1/shelves" }}
rate_limits = [{{ key = "ip", per_second = 200, burst = 50 }}]

[[upstreams]]
name = "bookstore"
services = ["*"]
endpoints = {}
timeout = "5s"
"#,
        ports.0,
        ports.1,
        descriptors.display().to_string(),
        serde_json::to_string(upstreams).unwrap(),
    );
    // Written whole and renamed in, as config management tools do: the watcher never reads
    // half a file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, toml).unwrap();
    std::fs::rename(temporary, path).unwrap();
}

fn script(upstream: &Upstream) {
    upstream.script(|call| match call.path.as_str() {
        "/protogate.testing.v1.StreamService/Watch" => Reply::stream(vec![json!({"int32Value": 1}); 20]),
        "/protogate.testing.v1.StreamService/Collect" => Reply::json(json!({"int32Value": 10})),
        "/protogate.testing.v1.Bookstore/CreateShelf" => Reply::json(json!({"id": "3", "theme": "new"})),
        "/protogate.testing.v1.Bookstore/GetShelf" => Reply::json(json!({"id": "1", "theme": "soak"})),
        _ => Reply::default(),
    });
}

async fn unary(soak: Arc<Soak>, client: Client, kind: &'static str, method: &'static str, path: &'static str) {
    while soak.running() {
        let mut request = client.request(method, path);
        if method == "POST" {
            request = request.json(&json!({"theme": "new"}));
        }
        let response = tokio::time::timeout(Duration::from_secs(10), request.try_send()).await;
        soak.outcome(
            kind,
            match response {
                Err(_) => Err("no answer within 10 s".into()),
                Ok(Err(e)) => Err(e),
                Ok(Ok(r)) if r.status == 200 || r.status == 429 => Ok(r.status.as_str().to_owned()),
                Ok(Ok(r)) => Err(format!("{} {}", r.status, r.text())),
            },
        );
    }
}

async fn server_streams(soak: Arc<Soak>, client: Client) {
    while soak.running() {
        let response =
            tokio::time::timeout(Duration::from_secs(10), client.request("GET", "/v1/streams/s").try_send()).await;
        soak.outcome(
            "server stream",
            match response {
                Err(_) => Err("no answer within 10 s".into()),
                Ok(Err(e)) => Err(e),
                Ok(Ok(r)) if r.status != 200 => Err(format!("{} {}", r.status, r.text())),
                Ok(Ok(r)) => {
                    let text = r.text();
                    let lines = text.lines().filter(|l| l.starts_with("{\"result\"")).count();
                    if lines == 20 { Ok("200".into()) } else { Err(format!("{lines} of 20 messages: {text}")) }
                }
            },
        );
    }
}

async fn client_streams(soak: Arc<Soak>, client: Client) {
    let body = "{\"int32Value\": 1}\n".repeat(10);
    while soak.running() {
        let request = client.request("POST", "/v1/streams:collect").header("content-type", "application/x-ndjson");
        let response = tokio::time::timeout(Duration::from_secs(10), request.body(body.clone()).try_send()).await;
        soak.outcome(
            "client stream",
            match response {
                Err(_) => Err("no answer within 10 s".into()),
                Ok(Err(e)) => Err(e),
                Ok(Ok(r)) if r.status == 200 => Ok("200".into()),
                Ok(Ok(r)) => Err(format!("{} {}", r.status, r.text())),
            },
        );
    }
}

async fn websockets(soak: Arc<Soak>, addr: std::net::SocketAddr) {
    while soak.running() {
        let session = async {
            let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/streams:chat"))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            for i in 0..5 {
                socket.send(Message::text(json!({"int32Value": i}).to_string())).await.map_err(|e| e.to_string())?;
                match socket.next().await {
                    Some(Ok(Message::Text(_))) => {}
                    other => return Err(format!("message {i}: {other:?}")),
                }
            }
            socket.close(None).await.map_err(|e| e.to_string())?;
            while let Some(Ok(_)) = socket.next().await {}
            Ok("closed".to_owned())
        };
        let outcome = tokio::time::timeout(Duration::from_secs(10), session).await;
        soak.outcome("websocket", outcome.unwrap_or_else(|_| Err("no answer within 10 s".into())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_traffic_through_chaos_leaves_memory_and_descriptors_where_they_started() {
    let dir = tempfile::tempdir().unwrap();
    let descriptors = dir.path().join("descriptors");
    std::fs::create_dir(&descriptors).unwrap();
    std::fs::copy(support::testing_descriptors(), descriptors.join("testing.binpb")).unwrap();
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    script(&a);
    script(&b);
    let (b_addr, b_url) = (b.addr, b.url());
    let mut b = Some(b);
    let mut redis = Some(Redis::start().await);
    let redis_port = redis.as_ref().unwrap().port;
    let redis_url = redis.as_ref().unwrap().url();
    let ports = (free_port(), free_port());
    let config = dir.path().join("gateway.toml");
    let upstreams = [a.url(), b_url.clone()];
    write_config(&config, ports, &descriptors, &upstreams, &redis_url, 1);

    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_protogate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = gateway.id().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", ports.0).parse().unwrap();
    let admin = Client::new(format!("127.0.0.1:{}", ports.1).parse().unwrap());
    for _ in 0..500 {
        let probe = tokio::time::timeout(Duration::from_millis(200), admin.request("GET", "/healthz").try_send()).await;
        if probe.is_ok_and(|r| r.is_ok_and(|r| r.status == 200)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let soak = Arc::new(Soak { started: Instant::now(), record: Mutex::default(), stop: AtomicBool::new(false) });
    let client = Client::new(addr);
    let mut traffic = vec![
        tokio::spawn(unary(soak.clone(), client.clone(), "cached GET", "GET", "/v1/shelves/1")),
        tokio::spawn(unary(soak.clone(), client.clone(), "rate-limited GET", "GET", "/v1/shelves/2/books")),
        tokio::spawn(unary(soak.clone(), client.clone(), "POST", "POST", "/v1/shelves")),
        tokio::spawn(server_streams(soak.clone(), client.clone())),
        tokio::spawn(client_streams(soak.clone(), client.clone())),
        tokio::spawn(websockets(soak.clone(), addr)),
    ];

    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    // The sample taken once the first round of chaos is over.
    let mut warm: Option<(u64, usize)> = None;
    let mut next_chaos = Instant::now() + WARM_UP;
    let mut step = 0usize;
    // At least one full round, and a while after it.
    let end = Instant::now() + length().max(WARM_UP + CHAOS_EVERY * (EVENTS as u32 + 2));
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, fds) = usage(pid);
        samples.push((soak.now(), rss, fds));
        if step == EVENTS && warm.is_none() {
            warm = Some((rss, fds));
        }
        if Instant::now() < next_chaos {
            continue;
        }
        next_chaos = Instant::now() + CHAOS_EVERY;
        step += 1;
        match step % EVENTS {
            1 => {
                soak.event(format!("endpoint {b_url} killed"));
                b.take();
                tokio::time::sleep(Duration::from_secs(1)).await;
                let restarted = Upstream::serve(TcpListener::bind(b_addr).await.unwrap()).await;
                script(&restarted);
                b = Some(restarted);
                soak.event(format!("endpoint {b_url} restarted"));
            }
            2 => {
                soak.event("Redis stopped".into());
                redis.take();
                tokio::time::sleep(Duration::from_secs(1)).await;
                redis = Some(Redis::start_on(redis_port).await);
                soak.event("Redis restarted".into());
            }
            3 => {
                let extra = descriptors.join("examples.binpb");
                if extra.exists() {
                    std::fs::remove_file(&extra).unwrap();
                    soak.event("descriptor file removed".into());
                } else {
                    std::fs::copy(support::example_descriptors(), &extra).unwrap();
                    soak.event("descriptor file added".into());
                }
            }
            4 => {
                write_config(&config, ports, &descriptors, &upstreams, &redis_url, 1 + (step as u32 % 3));
                soak.event("config rewritten".into());
            }
            _ => {
                std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
                soak.event("SIGHUP".into());
            }
        }
    }
    soak.stop.store(true, Ordering::Relaxed);
    for task in traffic.drain(..) {
        tokio::time::timeout(Duration::from_secs(15), task).await.expect("traffic stops").unwrap();
    }
    // The clients' idle keep-alive connections go; what is left is the gateway's own.
    drop(client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_end, fds_end) = usage(pid);
    assert!(gateway.try_wait().unwrap().is_none(), "the gateway is still running");

    let record = soak.record.lock().unwrap();
    let (rss_start, fds_start) = warm.expect("a full round of chaos ran");
    let rss_max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let total: u64 = record.outcomes.values().sum();
    println!("\n{:.0} s of traffic, {total} requests", soak.now());
    for ((kind, outcome), count) in &record.outcomes {
        println!("  {kind:18} {outcome:8} {count}");
    }
    println!("RSS KiB: start {rss_start}, end {rss_end}, max {rss_max}; fds: start {fds_start}, end {fds_end}");
    let in_window =
        |at: f64| record.events.iter().any(|(event, _)| at >= *event && at <= event + CHAOS_WINDOW.as_secs_f64());
    for (at, kind, why) in record.failures.iter().take(30) {
        let nearest = record.events.iter().rfind(|(e, _)| *e <= *at).map_or("-", |(_, what)| what.as_str());
        let why: String = why.chars().take(160).collect();
        println!("  failed at {at:6.1}s {kind}: {why} (after: {nearest})");
    }
    let outside: Vec<_> = record.failures.iter().filter(|(at, _, _)| !in_window(*at)).take(10).collect();
    assert!(outside.is_empty(), "failures outside any chaos window: {outside:#?}");
    assert!(total > 100, "traffic flowed: {total}");
    assert!(rss_end <= rss_start + rss_start / 10, "RSS grew from {rss_start} to {rss_end} KiB");
    assert!(fds_end <= fds_start + fds_start / 10, "fds went from {fds_start} to {fds_end}");
    let _ = gateway.start_kill();
}
