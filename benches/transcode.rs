//! JSON ↔ protobuf on the catalog messages: the direct transcoder against prost-reflect's
//! serde mapping (the reference), for one item (~470 B of JSON), a page of 50 (~24 KB) and a
//! page of 3,000 (~1.4 MB). Throughput is JSON bytes per second.
//!
//! Run with `cargo bench --bench transcode`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage};
use protogate::transcode::direct::{DecodeOptions, Plans, RenderOptions, decode_message, render};
use std::hint::black_box;
use support::cases::{cases, reference_options};

fn proto_to_json(c: &mut Criterion) {
    let cases = cases();
    let plans = Plans::build(cases.iter().map(|c| c.descriptor.clone()));
    let mut group = c.benchmark_group("proto_to_json");
    for case in &cases {
        let id = plans.id(case.descriptor.full_name()).unwrap();
        group.throughput(Throughput::Bytes(case.json.len() as u64));
        group.bench_function(format!("direct/{}", case.name), |b| {
            let mut out = Vec::with_capacity(case.json.len());
            b.iter(|| {
                out.clear();
                render(&plans, id, black_box(&case.wire), RenderOptions::default(), &mut out).unwrap();
                black_box(out.len())
            })
        });
        group.bench_function(format!("prost_reflect/{}", case.name), |b| {
            let mut out = Vec::with_capacity(case.json.len());
            b.iter(|| {
                out.clear();
                let message = DynamicMessage::decode(case.descriptor.clone(), black_box(case.wire.as_slice())).unwrap();
                message
                    .serialize_with_options(&mut serde_json::Serializer::new(&mut out), &reference_options())
                    .unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn json_to_proto(c: &mut Criterion) {
    let cases = cases();
    let plans = Plans::build(cases.iter().map(|c| c.descriptor.clone()));
    let mut group = c.benchmark_group("json_to_proto");
    for case in &cases {
        let id = plans.id(case.descriptor.full_name()).unwrap();
        group.throughput(Throughput::Bytes(case.json.len() as u64));
        group.bench_function(format!("direct/{}", case.name), |b| {
            let mut out = Vec::with_capacity(case.wire.len());
            b.iter(|| {
                out.clear();
                decode_message(
                    &plans,
                    id,
                    black_box(&case.json),
                    DecodeOptions { deny_unknown_fields: true },
                    &mut out,
                )
                .unwrap();
                black_box(out.len())
            })
        });
        group.bench_function(format!("prost_reflect/{}", case.name), |b| {
            let options = DeserializeOptions::new();
            b.iter(|| {
                let mut de = serde_json::Deserializer::from_slice(black_box(&case.json));
                let message =
                    DynamicMessage::deserialize_with_options(case.descriptor.clone(), &mut de, &options).unwrap();
                black_box(message.encode_to_vec().len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, proto_to_json, json_to_proto);
criterion_main!(benches);
