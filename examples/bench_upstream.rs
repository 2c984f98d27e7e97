//! The benchmark upstream on its own: the catalog service of `benches/`, for load tests.
//!
//! Run with
//!
//! ```text
//! cargo run --release --example bench_upstream -- 127.0.0.1:50061
//! ```
//!
//! then, with the gateway in front of it (`protogate serve --descriptors <testing set>
//! --upstream http://127.0.0.1:50061`):
//!
//! ```text
//! curl -s localhost:8080/v1/items/7
//! curl -s 'localhost:8080/v1/items?pageSize=50'
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod services;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50061".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("the address is free");
    eprintln!("catalog listening on {}", listener.local_addr().expect("bound"));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(services::catalog::CatalogService::server())
        .serve_with_incoming(incoming)
        .await
        .expect("the server runs");
}
