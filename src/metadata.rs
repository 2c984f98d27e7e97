//! Steps 3 and 6 of the pipeline: HTTP headers ↔ gRPC metadata.
//!
//! Going up: `Grpc-Metadata-Foo: v` becomes `foo: v`; `Authorization`, `X-Request-Id` (or the
//! configured id header), `traceparent` and `tracestate` pass through; `X-Forwarded-For`/`-Host`/`-Proto` are added; `Grpc-Timeout` becomes the deadline.
//! Coming back: response headers become `Grpc-Metadata-Foo`, trailers `Grpc-Trailer-Foo`, and
//! `x-http-code` is consumed to pick the HTTP status.
//!
//! Hop-by-hop headers, the headers a `Connection` header names, and keys that gRPC or HTTP/2
//! reserve are never forwarded in either direction. `-bin` values are base64 on the HTTP side.

pub mod origin;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use http::header::{AUTHORIZATION, CONNECTION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Request header carrying gRPC metadata: `Grpc-Metadata-<key>`.
pub const METADATA_PREFIX: &str = "grpc-metadata-";
/// Response header carrying a gRPC trailer: `Grpc-Trailer-<key>`.
pub const TRAILER_PREFIX: &str = "grpc-trailer-";
/// The correlation id header, unless `[request_id] header` names another.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// W3C trace context: the caller's span.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C trace context: vendor entries.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// Response metadata an upstream sets to choose the HTTP status of a success.
pub const HTTP_CODE: &str = "x-http-code";
/// The deadline header, in gRPC's timeout syntax.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// A header that cannot become metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A `-bin` header whose value is not base64.
    #[error("header {header}: a -bin value must be base64")]
    InvalidBinary {
        /// The header name.
        header: String,
    },
    /// A `Grpc-Timeout` that is not `<1-8 digits><H|M|S|m|u|n>`.
    #[error("header grpc-timeout: {value:?} is not a gRPC timeout such as \"250m\" or \"10S\"")]
    InvalidTimeout {
        /// The value sent.
        value: String,
    },
}

/// Where the request came from, for the `X-Forwarded-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client's address as the socket sees it.
    pub ip: Option<IpAddr>,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

/// The metadata sent upstream for an HTTP request's headers; `request_id` names the
/// correlation id header.
pub fn to_grpc(headers: &HeaderMap, peer: Peer, request_id: &HeaderName) -> Result<HeaderMap, MetadataError> {
    let mut metadata = HeaderMap::with_capacity(8);
    let hop_by_hop = connection_tokens(headers);
    for (name, value) in headers {
        if hop_by_hop.iter().any(|h| h == name.as_str()) {
            continue;
        }
        if let Some(key) = name.as_str().strip_prefix(METADATA_PREFIX) {
            if let Some((key, value)) = metadata_entry(key, value)? {
                metadata.append(key, value);
            }
        } else if name == AUTHORIZATION || name == request_id || name == TRACEPARENT {
            // Marked sensitive, HTTP/2 header compression never puts these values in its table:
            // credentials must not be (RFC 7541 §7.1.3), and ids, unique per request, would
            // only push out entries that repeat.
            let mut value = value.clone();
            value.set_sensitive(true);
            metadata.append(name.clone(), value);
        } else if name == TRACESTATE {
            metadata.append(name.clone(), value.clone());
        }
    }
    add_forwarded(headers, peer, &mut metadata);
    Ok(metadata)
}

/// The headers sent upstream with a gRPC request passed through untranscoded: all of the
/// client's end-to-end headers (its `grpc-*`, content type and user agent included), and the
/// `X-Forwarded-*` ones.
pub fn passthrough(headers: &HeaderMap, peer: Peer) -> HeaderMap {
    let hop_by_hop = connection_tokens(headers);
    let mut metadata = HeaderMap::with_capacity(headers.len() + 3);
    for (name, value) in headers {
        let key = name.as_str();
        if is_hop_by_hop(key) || key == "host" || key == "content-length" || hop_by_hop.iter().any(|h| h == key) {
            continue;
        }
        let mut value = value.clone();
        if name == AUTHORIZATION || name == REQUEST_ID || name == TRACEPARENT {
            value.set_sensitive(true);
        }
        metadata.append(name.clone(), value);
    }
    add_forwarded(headers, peer, &mut metadata);
    metadata
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
fn is_hop_by_hop(key: &str) -> bool {
    matches!(
        key,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn metadata_entry(key: &str, value: &HeaderValue) -> Result<Option<(HeaderName, HeaderValue)>, MetadataError> {
    if key.is_empty() || is_reserved(key) {
        return Ok(None);
    }
    let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else { return Ok(None) };
    if !key.ends_with("-bin") {
        return Ok(Some((name, value.clone())));
    }
    // Normalise to unpadded standard base64, the form gRPC implementations emit.
    let invalid = || MetadataError::InvalidBinary { header: format!("{METADATA_PREFIX}{key}") };
    let bytes = crate::transcode::json::parse_bytes(value.to_str().map_err(|_| invalid())?).map_err(|_| invalid())?;
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
    let value = HeaderValue::from_str(&encoded).map_err(|_| invalid())?;
    Ok(Some((name, value)))
}

fn add_forwarded(headers: &HeaderMap, peer: Peer, metadata: &mut HeaderMap) {
    let forwarded_for = match (headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()), peer.ip) {
        (Some(chain), Some(ip)) => Some(format!("{chain}, {ip}")),
        (Some(chain), None) => Some(chain.to_owned()),
        (None, Some(ip)) => Some(ip.to_string()),
        (None, None) => None,
    };
    if let Some(value) = forwarded_for.and_then(|v| HeaderValue::from_str(&v).ok()) {
        metadata.insert(X_FORWARDED_FOR, value);
    }
    if let Some(host) = headers.get(&X_FORWARDED_HOST).or_else(|| headers.get(HOST)) {
        metadata.insert(X_FORWARDED_HOST, host.clone());
    }
    let proto = headers
        .get(&X_FORWARDED_PROTO)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(if peer.tls { "https" } else { "http" }));
    metadata.insert(X_FORWARDED_PROTO, proto);
}

/// The deadline a client asked for with `Grpc-Timeout`, if any.
pub fn grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, MetadataError> {
    let Some(value) = headers.get(GRPC_TIMEOUT) else { return Ok(None) };
    let text = value.to_str().unwrap_or("");
    parse_grpc_timeout(text).map(Some).ok_or_else(|| MetadataError::InvalidTimeout { value: text.to_owned() })
}

/// Parses gRPC's timeout syntax (PROTOCOL-HTTP2.md: `TimeoutValue TimeoutUnit`, at most 8
/// digits; H M S m u n = hours, minutes, seconds, milli-, micro-, nanoseconds).
pub fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Adds an upstream's response metadata to HTTP response headers: `headers` as
/// `Grpc-Metadata-*`, `trailers` as `Grpc-Trailer-*`.
pub fn from_grpc(headers: &HeaderMap, trailers: &HeaderMap, out: &mut HeaderMap) {
    copy_prefixed(headers, METADATA_PREFIX, out);
    copy_prefixed(trailers, TRAILER_PREFIX, out);
}

fn copy_prefixed(metadata: &HeaderMap, prefix: &str, out: &mut HeaderMap) {
    let hop_by_hop = connection_tokens(metadata);
    for (name, value) in metadata {
        let key = name.as_str();
        if is_reserved(key) || key == HTTP_CODE || hop_by_hop.iter().any(|h| h == key) {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{key}").as_bytes()) {
            out.append(name, value.clone());
        }
    }
}

/// The HTTP status an upstream chose with `x-http-code` (in its headers or trailers).
pub fn http_code(headers: &HeaderMap, trailers: &HeaderMap) -> Option<StatusCode> {
    let value = headers.get(HTTP_CODE).or_else(|| trailers.get(HTTP_CODE))?;
    let code: u16 = value.to_str().ok()?.trim().parse().ok()?;
    StatusCode::from_u16(code).ok().filter(|c| c.is_success() || c.is_redirection())
}

/// Keys that are never copied between HTTP headers and gRPC metadata: hop-by-hop and
/// connection headers (RFC 9110 §7.6.1), and those gRPC or the transport own.
fn is_reserved(key: &str) -> bool {
    key.starts_with("grpc-")
        || key.starts_with(':')
        || is_hop_by_hop(key)
        || matches!(key, "host" | "content-type" | "content-length" | "content-encoding" | "user-agent" | "date")
}

/// Header names listed in `Connection`, which are hop-by-hop for this connection only.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
