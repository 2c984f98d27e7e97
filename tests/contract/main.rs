//! The external contract (CONTRACT.md), driven over real HTTP against protogate in front of a
//! real gRPC upstream, both on ephemeral loopback ports. One file per contract area.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// json_mapping.rs spells out a message with every field kind in one `json!`.
#![recursion_limit = "256"]

#[path = "../support/mod.rs"]
mod support;

mod aggregate;
mod auth;
mod bad_input;
mod bindings_query;
mod cache;
mod connect;
mod cors;
mod doors;
mod errors;
mod examples;
mod grpc_passthrough;
mod headers;
mod http_body;
mod json_mapping;
mod limits;
mod mcp;
mod observability;
mod partial_responses;
mod profiles;
mod rate_limits;
mod reload;
mod routing;
mod slow_clients;
mod streaming;
mod tls;
mod upstreams;
