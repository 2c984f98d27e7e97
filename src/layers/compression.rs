//! Response compression (gzip, brotli, zstd, as the client's `Accept-Encoding` prefers) and
//! compressed request bodies (`Content-Encoding`), by tower-http.
//!
//! Streams are left alone: an NDJSON or event stream must reach the client message by
//! message, and a compressor would hold messages back until it has enough to compress; gRPC
//! compresses its own messages. Request bodies are limited after decompression, so a small
//! compressed body cannot expand past `max_body_bytes`.

use axum::Router;
use tower_http::compression::predicate::{NotForContentType, Predicate};
use tower_http::compression::{CompressionLayer, DefaultPredicate};
use tower_http::decompression::RequestDecompressionLayer;

/// Wraps `router` with response compression and request decompression.
pub fn apply(router: Router) -> Router {
    // The default already skips gRPC, images, event streams and bodies under 32 bytes.
    let predicate = DefaultPredicate::new()
        .and(NotForContentType::const_new("application/x-ndjson"))
        .and(NotForContentType::const_new("application/grpc-web"));
    router.layer(RequestDecompressionLayer::new()).layer(CompressionLayer::new().compress_when(predicate))
}
