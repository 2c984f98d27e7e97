//! The whole request path in one process, without sockets: HTTP request → router and layers →
//! route lookup → transcoding → gRPC call over an in-memory HTTP/2 connection to the catalog
//! service → JSON response. The same call made directly by a tonic client over the same kind of
//! connection is the baseline; the difference is what the gateway adds. Also: query-string
//! decoding alone.
//!
//! Run with `cargo bench --bench request_path`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use protogate::gateway::Gateway;
use protogate::route::Lookup;
use support::{catalog, config};

fn request_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (router, client) = runtime.block_on(async { support::gateway_and_client() });
    let mut group = c.benchmark_group("request_path");
    for (name, method, uri, body) in support::scenarios() {
        group.bench_function(format!("gateway/{name}"), |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(support::through_gateway(&router, method, uri, &body).await) })
        });
    }
    group.bench_function("direct_grpc/get_item", |b| {
        b.to_async(&runtime).iter(|| {
            let mut client = client.clone();
            async move {
                let request = catalog::pb::GetItemRequest { id: "item-42".into() };
                black_box(client.get_item(request).await.unwrap().into_inner().id.len())
            }
        })
    });
    group.bench_function("direct_grpc/list_50", |b| {
        b.to_async(&runtime).iter(|| {
            let mut client = client.clone();
            async move {
                let request = catalog::pb::ListItemsRequest { page_size: 50, ..Default::default() };
                black_box(client.list_items(request).await.unwrap().into_inner().items.len())
            }
        })
    });
    group.finish();
}

fn query_decoding(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let gateway = runtime.block_on(async { Gateway::build(&config()).unwrap() });
    let query = "pageSize=20&pageToken=c2Vjb25kLXBhZ2U&category=BOOKS";
    c.bench_function("query_decoding/list_items", |b| {
        b.iter(|| {
            let Lookup::Matched(m) = gateway.table().lookup(&http::Method::GET, "/v1/items") else { panic!() };
            let wire = gateway.transcoder().decode(m.index, m.route, &m.values, Some(black_box(query)), &[]).unwrap();
            black_box(wire.len())
        })
    });
}

criterion_group!(benches, request_path, query_decoding);
criterion_main!(benches);
