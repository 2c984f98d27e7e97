//! Fuzzing on stable Rust: every parser of client or file input gets mutated inputs from a
//! seed corpus, for a time budget, and must neither panic nor answer outside the contract.
//!
//! - `PROTOGATE_FUZZ_SECONDS` (default 2) is each target's budget: CI runs the short pass with
//!   `cargo test`; a long run is `PROTOGATE_FUZZ_SECONDS=3600 cargo test --release --test fuzz
//!   -- --nocapture` (it prints the cases run per target).
//! - `PROTOGATE_FUZZ_SEED` replays one run; each run prints its seed.
//! - Seeds live in `tests/fuzz/corpus/<target>/`, next to the built-in ones. An input that
//!   fails is written to `tests/fuzz/found/<target>/` and the test fails naming it; once
//!   fixed, move it to `tests/fuzz/regressions/<target>/`, where every run replays it first.
//!
//! The targets: path templates; requests through the whole gateway (paths, percent-encoding,
//! query strings, headers, JSON bodies against real descriptors, field masks, NDJSON client
//! streams, Connect, gRPC-Web and gRPC-Web-text framing, JWTs) checked against the contract
//! (never a 500, every error the `google.rpc.Status` shape); bearer tokens through the verifier;
//! config files through the whole build's validation; descriptor files through the loader. The
//! direct JSON transcoder is checked against prost-reflect, value by value, by the property
//! tests beside it (`PROPTEST_CASES` runs them longer).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tower::ServiceExt;

/// Tokens mutations insert: what the grammars under test care about.
const DICTIONARY: &[&[u8]] = &[
    b"/",
    b"//",
    b"%",
    b"%2F",
    b"%00",
    b"%ZZ",
    b"%25",
    b"?",
    b"&",
    b"=",
    b"#",
    b":",
    b"*",
    b"**",
    b"{",
    b"}",
    b"{a=*}",
    b"[",
    b"]",
    b",",
    b".",
    b"..",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"NaN",
    b"\"Infinity\"",
    b"[[[[[[[[",
    b"{\"a\":",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xc3\x28",
    b"$fields=",
    b"fields=",
    b"updateMask",
    b"@type",
    b"type.googleapis.com/",
    b"Bearer ",
    b"eyJ",
    b"=\"",
    b"[[policy]]",
    b"[jwt]",
    b"${",
    b"}",
    b"\x0a\x05",
    b"\x12\x00",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
];

fn budget() -> Duration {
    let seconds = std::env::var("PROTOGATE_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(seconds)
}

fn rng(target: &str) -> SmallRng {
    let seed = std::env::var("PROTOGATE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("{target}: seed {seed}");
    SmallRng::seed_from_u64(seed)
}

/// One target's inputs: its built-in seeds, its corpus directory and its regressions.
fn corpus(target: &str, seeds: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let read = |dir: PathBuf| -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut inputs: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
    inputs.extend(read(root.join("corpus").join(target)));
    (inputs, read(root.join("regressions").join(target)))
}

/// A mutation of `input`: a few edits, possibly spliced with another input.
fn mutate(rng: &mut SmallRng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if out.is_empty() { 0 } else { rng.random_range(0..=out.len()) };
        match rng.random_range(0..8) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] = *[0u8, 0x7f, 0x80, 0xff, b'"', b'{', b'%', b'/', b'\\', b'\n']
                    .get(rng.random_range(0..10))
                    .unwrap();
            }
            2 if at < out.len() => {
                let end = rng.random_range(at..=out.len().min(at + 16));
                out.drain(at..end);
            }
            3 | 4 => {
                let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
                out.splice(at..at, token.iter().copied());
            }
            5 if at < out.len() => {
                let end = rng.random_range(at..=out.len().min(at + 32));
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                let from = rng.random_range(0..=other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// Runs `check` on the regressions, the corpus, then mutations until the budget is spent. A
/// panic or a failed check is written to `tests/fuzz/found/<target>/`; any fails the test.
async fn fuzz<F, Fut>(target: &str, seeds: &[&[u8]], check: F)
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let (corpus, regressions) = corpus(target, seeds);
    let mut rng = rng(target);
    let mut found = Vec::new();
    let mut cases = 0u64;
    let started = Instant::now();
    let mut inputs = regressions.into_iter().chain(corpus.clone());
    loop {
        let input = match inputs.next() {
            Some(input) => input,
            None if started.elapsed() < budget() => {
                let base = &corpus[rng.random_range(0..corpus.len())];
                mutate(&mut rng, base, &corpus)
            }
            None => break,
        };
        cases += 1;
        let outcome = futures_util::FutureExt::catch_unwind(AssertUnwindSafe(check(input.clone()))).await;
        let failure = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(failure)) => failure,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()));
                format!("panicked: {}", text.unwrap_or_default())
            }
        };
        found.push((save(target, &input), failure));
        if found.len() >= 5 {
            break;
        }
    }
    println!("{target}: {cases} cases in {:.1}s", started.elapsed().as_secs_f64());
    assert!(found.is_empty(), "{target}: {} failing inputs: {found:#?}", found.len());
}

fn save(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/found").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let name = format!(
        "{:016x}",
        input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
    );
    let path = dir.join(name);
    let _ = std::fs::write(&path, input);
    path
}

#[tokio::test]
async fn path_templates() {
    let seeds: &[&[u8]] = &[
        b"/v1/shelves/{shelf}",
        b"/v1/{name=shelves/*/books/*}:archive",
        b"/v1/{book.name=shelves/*/books/*}",
        b"/v1/files/{path=**}",
        b"/v1/buckets/*/objects/{object=**}:touch",
        b"/v1/{a}/{b.c}/x/**",
    ];
    fuzz("path_templates", seeds, |input| async move {
        let text = String::from_utf8_lossy(&input);
        if let Ok(template) = protogate::route::PathTemplate::parse(&text) {
            // What parses prints back to something that parses the same.
            let again = protogate::route::PathTemplate::parse(&template.to_string())
                .map_err(|e| format!("{template} does not parse again: {e}"))?;
            if again.to_string() != template.to_string() {
                return Err(format!("{template} reprints as {again}"));
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn config_files() {
    let seeds: &[&[u8]] = &[
        br#"listen = "127.0.0.1:8080"
[json]
emit_unpopulated = true
[[upstreams]]
name = "a"
services = ["pkg.*"]
endpoints = ["http://127.0.0.1:1"]
timeout = "1s"
health_check = { interval = "5s" }
"#,
        br#"[jwt]
algorithms = ["HS256"]
issuers = ["https://i"]
keys = [{ kid = "k", alg = "HS256", secret = "0123456789abcdef0123456789abcdef" }]
forward_claims = { sub = "x-user-id" }
[[policy]]
name = "p"
match = { path_prefix = "/v1", methods = ["GET"], grpc = ["a.*"] }
auth = "required"
rate_limits = [{ key = "header:x-k", per_second = 5, burst = 10 }]
cache = { ttl = "30s", vary = ["Accept-Language"] }
[cors]
allow_origins = ["https://*.example.org"]
[[aggregate]]
route = "GET /bff/{id}"
calls.a = { method = "protogate.testing.v1.Bookstore/GetShelf", request = { shelf = "{path.id}" } }
[[profile]]
name = "m"
prefix = "/m"
routes = [{ route = "GET /v1/shelves/{shelf}" }]
"#,
    ];
    let descriptors = support::testing_descriptors();
    fuzz("config_files", seeds, |input| {
        let descriptors = descriptors.clone();
        async move {
            let text = String::from_utf8_lossy(&input);
            let Ok(mut config) = protogate::config::Config::from_toml(&text) else { return Ok(()) };
            config.descriptors.paths = vec![descriptors];
            config.descriptors.watch = false;
            config.access_log.path = None;
            let errors = protogate::gateway::validate(&config);
            if errors.is_empty() {
                let _ = protogate::gateway::Gateway::build(&config);
            }
            Ok(())
        }
    })
    .await;
}

#[tokio::test]
async fn descriptor_files() {
    let set = std::fs::read(support::testing_descriptors()).unwrap();
    let seeds: Vec<&[u8]> = vec![&set, &set[..set.len() / 2], b""];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzzed.binpb");
    fuzz("descriptor_files", &seeds, |input| {
        let file = file.clone();
        async move {
            std::fs::write(&file, &input).unwrap();
            if let Ok(loaded) = protogate::descriptors::load(std::slice::from_ref(&file)) {
                let _ = protogate::route::rule::build_routes(&loaded.pool, &loaded.http_rules);
            }
            Ok(())
        }
    })
    .await;
}

const SECRET: &str = "a fuzzing HMAC secret of 32 bytes!";

fn token(claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

#[tokio::test]
async fn bearer_tokens() {
    let config = protogate::config::Config::from_toml(&format!(
        "[jwt]\nalgorithms = [\"HS256\", \"RS256\"]\nissuers = [\"https://i\"]\nkeys = [{{ alg = \"HS256\", secret = \"{SECRET}\" }}]\n"
    ))
    .unwrap();
    let verifier = Arc::new(protogate::auth::Verifier::build(config.jwt.as_ref().unwrap()).unwrap());
    let valid = token(serde_json::json!({"sub": "a", "iss": "https://i", "exp": 4_102_444_800u64}));
    let seeds: Vec<&[u8]> = vec![valid.as_bytes(), b"eyJhbGciOiJub25lIn0.e30.", b"a.b.c"];
    fuzz("bearer_tokens", &seeds, |input| {
        let verifier = verifier.clone();
        let valid = valid.clone();
        async move {
            let text = String::from_utf8_lossy(&input);
            if verifier.verify(&text).await.is_ok() && text != valid {
                return Err(format!("a changed token verified: {text}"));
            }
            Ok(())
        }
    })
    .await;
}

/// A request as the corpus writes it: `METHOD TARGET`, header lines, a blank line, the body.
fn request_of(input: &[u8]) -> Option<http::Request<axum::body::Body>> {
    let split = input.windows(2).position(|w| w == b"\n\n").unwrap_or(input.len());
    let head = std::str::from_utf8(&input[..split]).ok()?;
    let body = input.get(split + 2..).unwrap_or_default().to_vec();
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut request = http::Request::builder().method(method).uri(target);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        request = request.header(name.trim(), value.trim());
    }
    request.body(axum::body::Body::from(body)).ok()
}

fn grpc_web_text(message: &[u8]) -> String {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    base64::engine::general_purpose::STANDARD.encode(frame)
}

#[tokio::test]
async fn requests_through_the_gateway() {
    let closed = support::Upstream::closed_url().await;
    let config = support::config(
        &format!(
            r#"max_body_bytes = 65536
{jwt}
[[policy]]
name = "books"
match = {{ path_prefix = "/v1/books" }}
auth = "required"
[[policy]]
name = "shelves"
match = {{ path_prefix = "/v1/shelves" }}
cache = {{ ttl = "5s" }}
rate_limits = [{{ key = "header:x-k", per_second = 100000, burst = 100000 }}]
[cors]
allow_origins = ["https://app.example"]
[[aggregate]]
route = "GET /bff/{{id}}"
calls.shelf = {{ method = "protogate.testing.v1.Bookstore/GetShelf", request = {{ shelf = "{{path.id}}" }} }}
[[profile]]
name = "m"
prefix = "/m"
routes = [{{ route = "GET /v1/shelves/{{shelf}}" }}]
"#,
            jwt = support::hs256_jwt(SECRET)
        ),
        &format!(
            "[[upstreams]]\nname = \"closed\"\nservices = [\"*\"]\nendpoints = [{closed:?}]\ntimeout = \"1s\"\nretries = {{ max_retries = 0 }}\n"
        ),
    );
    let mut config = config;
    config.access_log.format = protogate::config::AccessLogFormat::Off;
    let gateway = protogate::gateway::Gateway::build(&config).unwrap();
    let live = protogate::reload::Live::new(gateway, config);
    let router = protogate::server::router(live);
    let bearer = token(serde_json::json!({"sub": "a", "exp": 4_102_444_800u64}));
    let grpc_web = grpc_web_text(b"\x08\x07");
    let seeds: Vec<String> = vec![
        "GET /v1/shelves/1?fields=id,theme&$fields=id".into(),
        "GET /v1/shelves/%31%2F?x=%ZZ&shelf=2".into(),
        "POST /v1/shelves\ncontent-type: application/json\n\n{\"shelf\": {\"id\": \"1\", \"theme\": \"x\"}}".into(),
        "PATCH /v1/shelves/1/books/2?updateMask=title\ncontent-type: application/json\n\n{\"title\": \"t\", \"tags\": [\"a\"]}".into(),
        format!("GET /v1/books/shelves/1/books/2\nauthorization: Bearer {bearer}"),
        "GET /v1/books/x\nauthorization: Bearer a.b.c\nauthorization: Bearer d".into(),
        "POST /protogate.testing.v1.EverythingService/Echo\ncontent-type: application/json\n\n{\"int64Value\": \"9223372036854775807\", \"doubleValue\": \"NaN\", \"bytesValue\": \"AQI=\", \"timestamp\": \"2024-02-29T10:00:00Z\", \"duration\": \"1.5s\", \"fieldMask\": \"a.bC\", \"value\": {\"a\": [1, null]}, \"stringMap\": {\"k\": \"v\"}, \"repeatedEnum\": [\"RED\", 2]}".into(),
        "POST /protogate.testing.v1.EverythingService/Echo\ncontent-type: application/json\nconnect-protocol-version: 1\nconnect-timeout-ms: 100\n\n{\"int32Value\": 1}".into(),
        "POST /protogate.testing.v1.EverythingService/Echo\ncontent-type: application/proto\n\n\x08\x01".into(),
        format!("POST /protogate.testing.v1.Bookstore/GetShelf\ncontent-type: application/grpc-web-text\nx-grpc-web: 1\n\n{grpc_web}"),
        "POST /protogate.testing.v1.Bookstore/GetShelf\ncontent-type: application/grpc-web+proto\n\n\x00\x00\x00\x00\x02\x08\x07".into(),
        "POST /v1/streams:collect\ncontent-type: application/x-ndjson\n\n{\"int32Value\": 1}\n{\"int32Value\": 2}\n\n{bad".into(),
        "GET /v1/streams/abc?int64Value=1&repeatedString=a&repeatedString=b\naccept: text/event-stream".into(),
        "GET /bff/7?fields=shelf.id".into(),
        "GET /m/v1/shelves/1\norigin: https://app.example\ngrpc-metadata-tenant-bin: AQI\ngrpc-timeout: 1S".into(),
        "OPTIONS /v1/shelves\norigin: https://app.example\naccess-control-request-method: POST".into(),
        "GET /v1/files/a/b/c%2Fd\nx-forwarded-for: 1.2.3.4, garbage\nforwarded: for=\"[::1]\"".into(),
        "DELETE /v1/shelves/1:archive".into(),
    ];
    let seeds: Vec<&[u8]> = seeds.iter().map(String::as_bytes).collect();
    fuzz("requests", &seeds, |input| {
        let router = router.clone();
        async move {
            let Some(request) = request_of(&input) else { return Ok(()) };
            let response = tokio::time::timeout(Duration::from_secs(10), router.oneshot(request))
                .await
                .map_err(|_| "no answer within 10 s".to_owned())?
                .unwrap_or_else(|never| match never {});
            check_answer(response).await
        }
    })
    .await;
}

/// Never a 500 (the upstream is unreachable: nothing can be an upstream's fault), and every
/// JSON error is `{"code", "message", "details"}` — or, answering a Connect call, Connect's
/// `{"code": "<name>", "message"}`.
async fn check_answer(response: http::Response<axum::body::Body>) -> Result<(), String> {
    let status = response.status();
    // A compressed body (the request accepted gzip) is checked for its status only.
    let json = response.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
        && !response.headers().contains_key("content-encoding");
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .map_err(|_| "the body never ended".to_owned())?
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_else(|_| Bytes::new());
    let text = String::from_utf8_lossy(&body);
    if status.is_server_error() && !matches!(status.as_u16(), 501..=504) {
        return Err(format!("{status}: {text}"));
    }
    if json && (status.is_client_error() || status.is_server_error()) {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{status} with a body that is not JSON ({e}): {text}"))?;
        let status_shape = value["code"].is_i64() && value["message"].is_string() && value["details"].is_array();
        let connect_shape = value["code"].is_string() && value["message"].is_string();
        if !status_shape && !connect_shape {
            return Err(format!("{status} not in the google.rpc.Status shape: {text}"));
        }
    }
    Ok(())
}
