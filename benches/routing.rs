//! Route lookup in a table of 10,000 routes — literal, variable, `**` and verb templates over
//! shared prefixes — for paths that hit each kind, and for a miss.
//!
//! Run with `cargo bench --bench routing`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use protogate::route::{PathTemplate, Route, TableBuilder, rule};
use std::hint::black_box;

fn table() -> protogate::route::Table {
    let pool = protogate::descriptors::load(&[concat!(env!("OUT_DIR"), "/testing.binpb").into()]).unwrap().pool;
    let method = pool.get_service_by_name("protogate.bench.v1.Catalog").unwrap().methods().next().unwrap();
    let base: Route = rule::default_route(&method);
    let mut builder = TableBuilder::new();
    for i in 0..2_500 {
        for template in [
            format!("/api/v{}/collection{i}/items", i % 7),
            format!("/api/v{}/collection{i}/items/*", i % 7),
            format!("/api/v{}/collection{i}/files/**", i % 7),
            format!("/api/v{}/collection{i}/items/*:archive", i % 7),
        ] {
            let mut route = base.clone();
            route.http_method = Method::GET;
            route.template = PathTemplate::parse(&template).unwrap();
            builder.push(route);
        }
    }
    builder.build()
}

fn lookup(c: &mut Criterion) {
    let table = table();
    assert_eq!(table.routes().len(), 10_000);
    let mut group = c.benchmark_group("route_lookup_10k");
    for (name, path) in [
        ("literal", "/api/v2/collection1234/items"),
        ("variable", "/api/v2/collection1234/items/item-42"),
        ("deep_wildcard", "/api/v2/collection1234/files/a/b/c.txt"),
        ("verb", "/api/v2/collection1234/items/item-42:archive"),
        ("miss", "/api/v2/collection1234/nothing/here"),
    ] {
        group.bench_function(name, |b| b.iter(|| black_box(table.lookup(&Method::GET, black_box(path)))));
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
