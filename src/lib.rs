//! protogate: an HTTP/JSON to gRPC gateway driven by protobuf descriptors loaded at run time.
//!
//! # Layout
//!
//! A request flows through six steps, each in its own module:
//!
//! | step | module | does |
//! |---|---|---|
//! | 1 | [`route::table`] | method + path → route and path variable values (404, 405) |
//! | 1b | [`policy`], [`auth`] | the request's policy; its bearer token verified (401, 403) |
//! | 2 | [`transcode::engine`] | body, path values and query → request message bytes (400, 413, 415) |
//! | 3 | [`metadata`] | headers → gRPC metadata and deadline |
//! | 4 | [`upstream`] | the gRPC call over the endpoint's HTTP/2 connections — one shared by unary calls, stream lanes for streams (502, 504) |
//! | 5 | [`transcode::engine`] | response message bytes → JSON |
//! | 6 | [`metadata`] | response headers and trailers → `Grpc-Metadata-*`, `Grpc-Trailer-*` |
//!
//! Steps 2 and 5 run the direct transcoder ([`transcode::direct`]: JSON text ↔ wire bytes) and
//! fall back to prost-reflect's mapping ([`transcode::request`], [`transcode::response`]), the
//! reference it is tested against, for what it does not cover.
//!
//! [`doors::handle`] picks the door a request uses (REST, HTTP streams, WebSocket, composite
//! routes, Connect, gRPC, gRPC-Web, MCP tools); each door is a thin adapter over the steps in
//! [`pipeline`], which read the built [`gateway::Gateway`]. Modules import only lower layers
//! (`tests/layering.rs` lists them and enforces it). [`error`] turns any failure into the
//! `google.rpc.Status` JSON body with [`status`]'s code → HTTP table. Cross-cutting concerns
//! are tower layers in [`layers`]; [`server`] binds the listener. [`observability`] follows
//! each request (correlation id, trace context, access log, metrics, exported span), and
//! [`admin`] serves health, readiness, metrics, the route table, the OpenAPI document that
//! [`openapi`] generates and the docs page on a listener of its own.
//! [`reload`] swaps in a rebuilt gateway when descriptors or the configuration change.
//!
//! Streaming methods leave the unary path after step 1 for [`doors::streaming`] (NDJSON,
//! Server-Sent Events) and [`doors::websocket`], over [`upstream::stream`]'s flow-controlled
//! calls. Requests in other protocols branch off before it: [`doors::grpc`] passes gRPC and
//! gRPC-Web through untranscoded, and [`doors::connect`] answers Connect's unary calls. [`transcode::http_body`] carries
//! `google.api.HttpBody` as raw bytes.
//!
//! Before step 1, [`profile`] finds a profile's prefix (its routes are answered with its JSON
//! options and reshaped), and [`aggregate`]'s composite routes are matched first: their calls
//! run steps 2 to 5 each, concurrently where they can ([`doors::composite`]). [`cache`] answers GETs a policy caches,
//! in memory and, shared by replicas, in Redis ([`redis_connection`]).
//!
//! Everything a request looks up is decided once, when the gateway is built: [`config`] and
//! [`descriptors`] (files, `.proto` sources, and upstreams' server reflection) feed [`route::rule`], which resolves every field path and produces the
//! routes that [`route::table`] freezes into a trie.

pub mod admin;
pub mod aggregate;
pub mod auth;
pub mod cache;
pub mod codec;
pub mod config;
pub mod descriptors;
pub mod doors;
pub mod error;
pub mod explain;
pub mod gateway;
pub mod layers;
pub mod metadata;
pub mod observability;
pub mod openapi;
pub mod pipeline;
pub mod policy;
pub mod profile;
pub mod rate_limit;
pub mod redis_connection;
pub mod reload;
pub mod route;
pub mod server;
pub mod status;
pub mod tls;
pub mod transcode;
pub mod upstream;

#[cfg(test)]
mod test_util;

/// Messages generated from `proto/google`: the HTTP rule the gateway reads from method
/// options, and the google.rpc status and error details it renders.
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]
pub mod pb {
    /// `google.api`.
    pub mod google {
        /// `google.api`: HTTP rules.
        pub mod api {
            include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
        }
        /// `google.rpc`: status and error details.
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}
