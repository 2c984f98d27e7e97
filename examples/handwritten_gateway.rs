//! What a team writes instead of deploying a gateway: the bench catalog's three REST routes by
//! hand, on axum, a generated tonic client and pbjson's generated serde. No policies, logs,
//! metrics or limits — just the translation. The e2e bench (`benches/e2e/run.py`) measures
//! protogate against it, to show what a general gateway costs over code written for one API.
//!
//! ```text
//! cargo run --release --example handwritten_gateway -- 127.0.0.1:18082 http://127.0.0.1:50061
//! curl -s localhost:18082/v1/items/item-7
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unreachable_pub)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tonic::transport::Channel;

mod catalog {
    include!(concat!(env!("OUT_DIR"), "/peer/protogate.bench.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/peer/protogate.bench.v1.serde.rs"));
}

use catalog::catalog_client::CatalogClient;
use catalog::{CreateItemRequest, GetItemRequest, Item, ListItemsRequest};

type Client = CatalogClient<Channel>;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18082".to_owned());
    let upstream = args.next().unwrap_or_else(|| "http://127.0.0.1:50061".to_owned());
    let channel = Channel::from_shared(upstream).expect("an upstream URL").connect_lazy();
    let app = Router::new()
        .route("/v1/items/{id}", get(get_item))
        .route("/v1/items", get(list_items).post(create_item))
        .with_state(CatalogClient::new(channel));
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("the address is free");
    eprintln!("hand-written gateway listening on {listen}");
    axum::serve(listener, app).await.expect("the server runs");
}

async fn get_item(State(mut client): State<Client>, Path(id): Path<String>) -> Response {
    match client.get_item(GetItemRequest { id }).await {
        Ok(reply) => json(&reply.into_inner()),
        Err(status) => failed(&status),
    }
}

async fn list_items(State(mut client): State<Client>, RawQuery(query): RawQuery) -> Response {
    let mut request = ListItemsRequest::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "pageSize" | "page_size" => match value.parse() {
                Ok(n) => request.page_size = n,
                Err(_) => return (StatusCode::BAD_REQUEST, "pageSize: not a number").into_response(),
            },
            "pageToken" | "page_token" => request.page_token = value.into_owned(),
            _ => {}
        }
    }
    match client.list_items(request).await {
        Ok(reply) => json(&reply.into_inner()),
        Err(status) => failed(&status),
    }
}

async fn create_item(State(mut client): State<Client>, body: Bytes) -> Response {
    let item: Item = match serde_json::from_slice(&body) {
        Ok(item) => item,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match client.create_item(CreateItemRequest { item: Some(item) }).await {
        Ok(reply) => json(&reply.into_inner()),
        Err(status) => failed(&status),
    }
}

fn json<T: serde::Serialize>(message: &T) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn failed(status: &tonic::Status) -> Response {
    let http = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (http, status.message().to_owned()).into_response()
}
