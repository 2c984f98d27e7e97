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
    let addr: std::net::SocketAddr = addr.parse().expect("an address such as 127.0.0.1:50061");
    eprintln!("catalog listening on {addr}");
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(services::catalog::CatalogService::server())
        .serve(addr)
        .await
        .expect("the server runs");
}
