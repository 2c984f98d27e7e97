//! What the request-path benches share: the catalog service and the gateway in one process,
//! joined by in-memory HTTP/2 connections (no sockets), and the requests they are measured on.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

pub mod cases;
#[path = "../../examples/services/catalog.rs"]
pub mod catalog;

use std::sync::Arc;

use protogate::config::Config;
use protogate::gateway::Gateway;
use protogate::reload::Live;
use protogate::upstream::{Connector, Upstreams};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint, Server};

/// Starts a catalog server fed by the returned sender's pipes.
pub fn in_memory_server() -> mpsc::UnboundedSender<tokio::io::DuplexStream> {
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
pub fn in_memory_connector() -> Connector {
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
pub fn in_memory_channel() -> Channel {
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

/// The bench gateway: the catalog upstream, the access log on (to `/dev/null`), metrics on.
pub fn config() -> Config {
    config_with("[access_log]\npath = \"/dev/null\"\n")
}

/// The same gateway with its access log off.
pub fn config_without_access_log() -> Config {
    config_with("[access_log]\nformat = \"off\"\n")
}

fn config_with(access_log: &str) -> Config {
    Config::from_toml(&format!(
        "{access_log}[descriptors]\npaths = [{:?}]\n[[upstreams]]\nname = \"catalog\"\nservices = [\"*\"]\nendpoints = [\"http://in-memory:1\"]\n",
        concat!(env!("OUT_DIR"), "/testing.binpb")
    ))
    .unwrap()
}

/// The gateway's router over an in-memory catalog, and a tonic client of the catalog over the
/// same kind of connection (the direct baseline). Must run inside a tokio runtime.
pub fn gateway_and_client() -> (axum::Router, catalog::pb::catalog_client::CatalogClient<Channel>) {
    gateway_and_client_with(config())
}

/// [`gateway_and_client`] with the gateway configured by `config`.
pub fn gateway_and_client_with(config: Config) -> (axum::Router, catalog::pb::catalog_client::CatalogClient<Channel>) {
    let connector = in_memory_connector();
    let gateway = Gateway::build_with(&config, |configs, max| Upstreams::build_with(configs, max, &connector)).unwrap();
    let client = catalog::pb::catalog_client::CatalogClient::new(in_memory_channel());
    (protogate::server::router(Live::new(gateway, config)), client)
}

/// The requests measured: one item, a page of 50 (~16 KB of JSON), and a create.
pub fn scenarios() -> Vec<(&'static str, &'static str, &'static str, Vec<u8>)> {
    let create_body = serde_json::to_vec(&serde_json::json!({
        "name": "Stainless steel kettle, model 7",
        "description": "1.7 litre, rapid boil, limescale filter, cordless base with 360° swivel",
        "priceMicros": "34990000", "currency": "EUR", "stock": 12, "category": "KITCHEN",
        "tags": ["kitchen", "electric"], "dimensions": {"widthCm": 22.5, "heightCm": 25, "depthCm": 16.5, "weightKg": 1.2},
        "rating": 4.6, "available": true, "sellerId": "seller-3"
    }))
    .unwrap();
    vec![
        ("get_item", "GET", "/v1/items/item-42", Vec::new()),
        ("list_50", "GET", "/v1/items?pageSize=50", Vec::new()),
        ("create_item", "POST", "/v1/items", create_body),
    ]
}

/// One request through the gateway's router; the response body's length.
pub async fn through_gateway(router: &axum::Router, method: &str, uri: &str, body: &[u8]) -> usize {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes().len()
}
