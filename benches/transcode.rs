//! JSON ↔ protobuf on the catalog messages: the direct transcoder against prost-reflect's
//! serde mapping (the reference), for one item (~470 B of JSON), a page of 50 (~24 KB) and a
//! page of 3,000 (~1.4 MB). Throughput is JSON bytes per second.
//!
//! Run with `cargo bench --bench transcode`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../examples/services/catalog.rs"]
mod catalog;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use protogate::transcode::direct::{DecodeOptions, Plans, RenderOptions, decode_message, render};
use std::hint::black_box;

struct Case {
    name: &'static str,
    descriptor: MessageDescriptor,
    wire: Vec<u8>,
    json: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let pool = protogate::descriptors::load(&[concat!(env!("OUT_DIR"), "/testing.binpb").into()]).unwrap().pool;
    let item = pool.get_message_by_name("protogate.bench.v1.Item").unwrap();
    let list = pool.get_message_by_name("protogate.bench.v1.ListItemsResponse").unwrap();
    [
        ("item", item, catalog::item(7).encode_to_vec()),
        ("page_50", list.clone(), catalog::page(50).encode_to_vec()),
        ("page_3000", list, catalog::page(3_000).encode_to_vec()),
    ]
    .into_iter()
    .map(|(name, descriptor, wire)| {
        let message = DynamicMessage::decode(descriptor.clone(), wire.as_slice()).unwrap();
        let mut json = Vec::new();
        message.serialize_with_options(&mut serde_json::Serializer::new(&mut json), &reference_options()).unwrap();
        Case { name, descriptor, wire, json }
    })
    .collect()
}

fn reference_options() -> SerializeOptions {
    SerializeOptions::new().stringify_64_bit_integers(true)
}

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
