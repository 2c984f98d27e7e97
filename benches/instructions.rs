//! Instructions per transcoding, counted by valgrind's callgrind: a figure that does not move
//! with the load of a shared machine, as times do. Each case is run under callgrind twice,
//! once with one warm-up transcoding and once with the warm-up and `n` more; the difference
//! divided by `n` is what one transcoding costs, setup excluded.
//!
//! Beside the decoders, two columns count tokenizing alone, without building anything: with
//! simd-json (SIMD, into a tape of tokens; it parses in place, so the body is copied first)
//! and with serde_json (every value skipped). Either is a floor for a decoder built on it.
//!
//! A second table counts whole requests the same way, in one process without sockets (the
//! request-path bench's setup: router and layers, metrics on, an in-memory HTTP/2 connection
//! to the catalog service, which is counted too): through the gateway with its access log on
//! (to `/dev/null`) and off, and made directly with a tonic client. Each run installs the
//! binary's subscriber (to a sink; `RUST_LOG`, else `info`), so a request's span costs what it
//! does in a default deployment.
//!
//! Run with `cargo bench --bench instructions [-- CASE]` (valgrind must be installed). It
//! prints the tables; it asserts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::process::Command;

use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage};
use protogate::transcode::direct::{DecodeOptions, Plans, RenderOptions, decode_message, render};
use support::cases::{Case, cases, reference_options};

/// What one run transcodes.
#[derive(Clone, Copy)]
enum Op {
    RenderDirect,
    RenderReference,
    DecodeDirect,
    DecodeReference,
    TokenizeSimdJson,
    TokenizeSerdeJson,
}

const OPS: [(Op, &str); 6] = [
    (Op::RenderDirect, "render-direct"),
    (Op::RenderReference, "render-prost-reflect"),
    (Op::DecodeDirect, "decode-direct"),
    (Op::DecodeReference, "decode-prost-reflect"),
    (Op::TokenizeSimdJson, "tokenize-simd-json"),
    (Op::TokenizeSerdeJson, "tokenize-serde-json"),
];

/// About this many JSON bytes are transcoded per counted run (at least one transcoding).
const BYTES_PER_RUN: usize = 200_000;

/// Requests per counted run.
const REQUESTS_PER_RUN: usize = 200;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, op, case, n] = args.as_slice()
        && flag == "--run"
    {
        match op.as_str() {
            "request-gateway" | "request-gateway-log-off" | "request-direct" => requests(op, case, n.parse().unwrap()),
            _ => run(op, case, n.parse().unwrap()),
        }
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is not installed: apt-get install valgrind");
        return;
    }
    // `cargo bench --bench instructions -- page_50` counts the cases whose name holds that.
    let filter: Vec<&String> = args.iter().skip(1).filter(|a| !a.starts_with("--")).collect();
    println!("instructions per transcoding (callgrind), and per JSON byte\n");
    println!("| case | JSON bytes | {} |", OPS.map(|(_, name)| name).join(" | "));
    println!("|---|---:|{}", "---:|".repeat(OPS.len()));
    for case in cases() {
        if !filter.is_empty() && !filter.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        let n = (BYTES_PER_RUN / case.json.len()).max(1);
        let cells = OPS.map(|(_, name)| {
            let per_op = count(name, case.name, n).saturating_sub(count(name, case.name, 0)) as f64 / n as f64;
            format!("{per_op:.0} ({:.1}/B)", per_op / case.json.len() as f64)
        });
        println!("| {} | {} | {} |", case.name, case.json.len(), cells.join(" | "));
    }
    println!("\ninstructions per request, in one process (gateway and service, or client and service)\n");
    println!("| request | gateway | access log off | direct gRPC |");
    println!("|---|---:|---:|---:|");
    for (name, ..) in support::scenarios() {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let per_request = |op: &str| {
            let n = REQUESTS_PER_RUN;
            count(op, name, n).saturating_sub(count(op, name, 0)) as f64 / n as f64
        };
        let direct =
            if name == "create_item" { "-".to_owned() } else { format!("{:.0}", per_request("request-direct")) };
        let (gateway, log_off) = (per_request("request-gateway"), per_request("request-gateway-log-off"));
        println!("| {name} | {gateway:.0} | {log_off:.0} | {direct} |");
    }
}

/// One warm-up request and `n` more, through the gateway or made directly.
fn requests(op: &str, name: &str, n: usize) {
    // What `protogate` installs, `RUST_LOG` read as it reads it (`info` when not set).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::sink).init();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (method, uri, body) = support::scenarios()
        .into_iter()
        .find(|(s, ..)| *s == name)
        .map(|(_, method, uri, body)| (method, uri, body))
        .unwrap();
    runtime.block_on(async {
        let config = match op {
            "request-gateway-log-off" => support::config_without_access_log(),
            _ => support::config(),
        };
        let (router, client) = support::gateway_and_client_with(config);
        for _ in 0..=n {
            let bytes = match op {
                "request-direct" => direct(client.clone(), name).await,
                _ => support::through_gateway(&router, method, uri, &body).await,
            };
            black_box(bytes);
        }
    });
}

/// The scenario's call made with a tonic client; the length of something in its answer.
async fn direct(
    mut client: support::catalog::pb::catalog_client::CatalogClient<tonic::transport::Channel>,
    name: &str,
) -> usize {
    use support::catalog::pb::{GetItemRequest, ListItemsRequest};
    match name {
        "get_item" => client.get_item(GetItemRequest { id: "item-42".into() }).await.unwrap().into_inner().id.len(),
        "list_50" => {
            let request = ListItemsRequest { page_size: 50, ..Default::default() };
            client.list_items(request).await.unwrap().into_inner().items.len()
        }
        other => panic!("no direct call for {other}"),
    }
}

/// Instructions callgrind counts for this program transcoding `n` times after one warm-up.
fn count(op: &str, case: &str, n: usize) -> u64 {
    let me = std::env::current_exe().unwrap();
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(me)
        .args(["--run", op, case, &n.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let collected = stderr.lines().find_map(|line| line.split("Collected : ").nth(1));
    match collected.and_then(|c| c.trim().parse().ok()) {
        Some(count) => count,
        None => panic!("no count from callgrind for {op} {case}:\n{stderr}"),
    }
}

fn run(op: &str, name: &str, n: usize) {
    let case = cases().into_iter().find(|c| c.name == name).unwrap();
    let op = OPS.iter().find(|(_, o)| *o == op).unwrap().0;
    let plans = Plans::build([case.descriptor.clone()]);
    let id = plans.id(case.descriptor.full_name()).unwrap();
    let mut out = Vec::with_capacity(case.json.len().max(case.wire.len()));
    for _ in 0..=n {
        out.clear();
        once(op, &case, &plans, id, &mut out);
        black_box(&out);
    }
}

/// Not inlined, so a profile can collect this function alone:
/// `valgrind --tool=callgrind --toggle-collect='instructions::once' <bench> --run render-direct page_50 20`.
#[inline(never)]
fn once(op: Op, case: &Case, plans: &Plans, id: protogate::transcode::direct::PlanId, out: &mut Vec<u8>) {
    match op {
        Op::RenderDirect => render(plans, id, black_box(&case.wire), RenderOptions::default(), out).unwrap(),
        Op::RenderReference => {
            let message = DynamicMessage::decode(case.descriptor.clone(), black_box(case.wire.as_slice())).unwrap();
            message.serialize_with_options(&mut serde_json::Serializer::new(out), &reference_options()).unwrap();
        }
        Op::DecodeDirect => {
            let options = DecodeOptions { deny_unknown_fields: true };
            decode_message(plans, id, black_box(&case.json), options, out).unwrap();
        }
        Op::DecodeReference => {
            let mut de = serde_json::Deserializer::from_slice(black_box(&case.json));
            let message =
                DynamicMessage::deserialize_with_options(case.descriptor.clone(), &mut de, &DeserializeOptions::new())
                    .unwrap();
            message.encode(out).unwrap();
        }
        Op::TokenizeSimdJson => {
            out.extend_from_slice(black_box(&case.json));
            SIMD_BUFFERS.with_borrow_mut(|buffers| {
                black_box(simd_json::to_tape_with_buffers(out, buffers).unwrap().0.len());
            });
        }
        Op::TokenizeSerdeJson => {
            serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&case.json)).unwrap();
        }
    }
}

thread_local! {
    /// simd-json's working buffers, kept from one tokenizing to the next as a decoder would.
    static SIMD_BUFFERS: std::cell::RefCell<simd_json::Buffers> = std::cell::RefCell::new(simd_json::Buffers::default());
}
