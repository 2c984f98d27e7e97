//! The whole request path in one process, without sockets: HTTP request → router and layers →
//! route lookup → transcoding → gRPC call over an in-memory HTTP/2 connection to the catalog
//! service → JSON response. The same call made directly by a tonic client over the same kind of
//! connection is the baseline; the difference is what the gateway adds. Also: query-string
//! decoding alone.
//!
//! Run with `cargo bench --bench request_path`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../examples/services/catalog.rs"]
mod catalog;

use std::sync::Arc;

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt;
use protogate::config::Config;
use protogate::gateway::Gateway;
use protogate::reload::Live;
use protogate::route::Lookup;
use protogate::upstream::{Connector, Upstreams};
use std::hint::black_box;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint, Server};
use tower::ServiceExt;

/// Starts a catalog server fed by the returned sender's pipes.
fn in_memory_server() -> mpsc::UnboundedSender<tokio::io::DuplexStream> {
    let (tx, rx) = mpsc::unbounded_channel::<tokio::io::DuplexStream>();
    let incoming = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    tokio::spawn(
        Server::builder()
            .add_service(catalog::CatalogService::server())
            .serve_with_incoming(tokio_stream::StreamExt::map(incoming, Ok::<_, std::io::Error>)),
    );
    tx
}

/// A connector whose every connection is an in-memory pipe to a catalog server.
fn in_memory_connector() -> Connector {
    let tx = in_memory_server();
    Arc::new(move |_| {
        let tx = tx.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(1 << 16);
            tx.send(server).map_err(|_| std::io::Error::other("server gone"))?;
            Ok(Box::new(client) as Box<dyn protogate::upstream::connection::Io>)
        })
    })
}

/// A tonic channel over the same kind of pipe, for the direct baseline.
fn in_memory_channel() -> Channel {
    let tx = in_memory_server();
    Endpoint::from_static("http://in-memory").connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
        let tx = tx.clone();
        async move {
            let (client, server) = tokio::io::duplex(1 << 16);
            tx.send(server).map_err(|_| std::io::Error::other("server gone"))?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
        }
    }))
}

fn config() -> Config {
    Config::from_toml(&format!(
        "[access_log]\npath = \"/dev/null\"\n[descriptors]\npaths = [{:?}]\n[[upstreams]]\nname = \"catalog\"\nservices = [\"*\"]\nendpoints = [\"http://in-memory:1\"]\n",
        concat!(env!("OUT_DIR"), "/testing.binpb")
    ))
    .unwrap()
}

fn request_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (router, mut client) = runtime.block_on(async {
        let connector = in_memory_connector();
        let config = config();
        let gateway =
            Gateway::build_with(&config, |configs, max| Upstreams::build_with(configs, max, &connector)).unwrap();
        let client = catalog::pb::catalog_client::CatalogClient::new(in_memory_channel());
        (protogate::server::router(Live::new(gateway, config)), client)
    });
    let create_body = serde_json::to_vec(&serde_json::json!({
        "name": "Stainless steel kettle, model 7",
        "description": "1.7 litre, rapid boil, limescale filter, cordless base with 360° swivel",
        "priceMicros": "34990000", "currency": "EUR", "stock": 12, "category": "KITCHEN",
        "tags": ["kitchen", "electric"], "dimensions": {"widthCm": 22.5, "heightCm": 25, "depthCm": 16.5, "weightKg": 1.2},
        "rating": 4.6, "available": true, "sellerId": "seller-3"
    }))
    .unwrap();

    let mut group = c.benchmark_group("request_path");
    for (name, method, uri, body) in [
        ("get_item", "GET", "/v1/items/item-42", Vec::new()),
        ("list_50", "GET", "/v1/items?pageSize=50", Vec::new()),
        ("create_item", "POST", "/v1/items", create_body),
    ] {
        group.bench_function(format!("gateway/{name}"), |b| {
            b.to_async(&runtime).iter(|| {
                let request = Request::builder()
                    .method(method)
                    .uri(uri)
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap();
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    black_box(response.into_body().collect().await.unwrap().to_bytes().len())
                }
            })
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
    let _ = &mut client;
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
