//! One slow client never stalls the others: clients that stop reading large server streams,
//! or leave client streams half-sent, hold no resource that unary calls to the same upstream
//! need.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{Harness, Reply};

/// Unary GETs one after the other, each given `limit`; their latencies, sorted.
async fn unary_latencies(h: &Harness, n: usize, limit: Duration) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let response = tokio::time::timeout(limit, h.get("/v1/shelves/1")).await;
        let response = response.unwrap_or_else(|_| panic!("unary call {i} stalled for {limit:?}"));
        assert_eq!(response.status, 200, "unary call {i}: {}", response.text());
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99).div_ceil(100).saturating_sub(1)]
}

/// Opens a request on its own connection, sends `head` (and `body` if any), then never reads.
async fn hold(h: &Harness, head: String, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(h.gateway.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_or_never_finish_do_not_stall_unary_calls() {
    let h = Harness::start().await;
    let big = "x".repeat(64 * 1024);
    h.upstream.script(move |call| match call.path.as_str() {
        // 400 messages of 64 KiB (25 MiB), then held open: far past every flow-control window.
        "/protogate.testing.v1.StreamService/Watch" => Reply::stream(vec![json!({"stringValue": big}); 400]).hold(),
        _ => Reply::json(json!({"id": "1", "theme": "unary"})),
    });
    let idle = unary_latencies(&h, 200, Duration::from_secs(5)).await;

    let mut held = Vec::new();
    for i in 0..20 {
        let head = format!("GET /v1/streams/s{i} HTTP/1.1\r\nhost: gw\r\n\r\n");
        held.push(hold(&h, head, b"").await);
    }
    for _ in 0..20 {
        let head = "POST /v1/streams:collect HTTP/1.1\r\nhost: gw\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n";
        let line = b"{\"int32Value\": 1}\n";
        let chunk = [format!("{:x}\r\n", line.len()).as_bytes(), line, b"\r\n"].concat();
        held.push(hold(&h, head.to_owned(), &chunk).await);
    }
    // Every server stream has filled what it can before the unary calls start.
    h.upstream.wait_until("the 20 server streams are open", |u| u.open_streams() >= 20).await;
    for _ in 0..200 {
        let sent = h.upstream.sent();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if h.upstream.sent() == sent {
            break;
        }
    }

    let loaded = unary_latencies(&h, 200, Duration::from_secs(5)).await;
    println!(
        "unary p99: idle {:?}, with 20 stalled server streams and 20 half-sent client streams {:?} ({:.2}x)",
        p99(&idle),
        p99(&loaded),
        p99(&loaded).as_secs_f64() / p99(&idle).as_secs_f64()
    );
    let current = h.gateway.current();
    let upstream = current.upstreams().iter().next().unwrap();
    let lanes = upstream.endpoint_states()[0].connection().lanes();
    assert!(lanes >= 10, "40 streams, at most 4 a lane: {lanes} lanes");
    drop(held);
}

#[tokio::test]
async fn one_client_cannot_hold_more_streams_than_its_share() {
    let h = Harness::start_with("[limits]\nmax_streams_per_client = 2").await;
    h.upstream.script(|call| match call.path.as_str() {
        "/protogate.testing.v1.StreamService/Watch" => Reply::stream(vec![json!({"int32Value": 1})]).hold(),
        _ => Reply::json(json!({"id": "1"})),
    });
    let mut held = Vec::new();
    for i in 0..2 {
        held.push(hold(&h, format!("GET /v1/streams/s{i} HTTP/1.1\r\nhost: gw\r\n\r\n"), b"").await);
    }
    h.upstream.wait_until("both streams are open", |u| u.open_streams() >= 2).await;
    let refused = h.get("/v1/streams/third").await;
    let json = refused.assert_error(429, 8);
    assert!(json["message"].as_str().unwrap().contains("2 streaming calls open"), "{json}");
    assert_eq!(h.get("/v1/shelves/1").await.status, 200, "unary calls are not streams");

    // A stream that ends gives its seat back.
    drop(held.pop());
    for _ in 0..500 {
        let again =
            tokio::time::timeout(Duration::from_secs(5), h.request("GET", "/v1/streams/again").send_streaming());
        let again = again.await.expect("an answer within 5 s");
        if again.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the seat of the closed stream never came back");
}

/// What the gateway answers on `stream` within 5 s.
async fn answer_on(stream: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn a_body_that_goes_quiet_is_408_and_its_call_cancelled() {
    let h = Harness::start_with("[limits]\nbody_read_timeout = \"300ms\"").await;
    // A unary body that promises 100 bytes and sends 10.
    let head = "POST /v1/shelves HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    let mut unary = hold(&h, head.to_owned(), b"{\"theme\": ").await;
    let answer = answer_on(&mut unary).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":4"#) && answer.contains("sent nothing for 300ms"), "{answer}");

    // A client stream that sends a line, then nothing: the upstream call is cancelled.
    let head = "POST /v1/streams:collect HTTP/1.1\r\nhost: gw\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n";
    let line = b"{\"int32Value\": 1}\n";
    let chunk = [format!("{:x}\r\n", line.len()).as_bytes(), line, b"\r\n"].concat();
    let mut stream = hold(&h, head.to_owned(), &chunk).await;
    let answer = answer_on(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    h.upstream.wait_until("the upstream stream is gone", |u| u.open_streams() == 0).await;
    assert!(h.upstream.calls().iter().all(|c| !c.path.ends_with("/Collect")), "the half-sent call never completed");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_its_stream_cancelled() {
    let h = Harness::start_with("[limits]\nwrite_timeout = \"500ms\"").await;
    let big = "x".repeat(64 * 1024);
    h.upstream.script(move |_| Reply::stream(vec![json!({"stringValue": big}); 400]).hold());
    let _reader_gone_quiet = hold(&h, "GET /v1/streams/s HTTP/1.1\r\nhost: gw\r\n\r\n".to_owned(), b"").await;
    h.upstream.wait_until("the stream is open", |u| u.open_streams() == 1).await;
    // Once the socket buffers are full nothing moves; after write_timeout the gateway gives up.
    h.upstream.wait_until("the upstream stream is cancelled", |u| u.cancelled() == 1).await;
    assert_eq!(h.get("/v1/shelves/1").await.status, 200, "others are served");
}
