//! Steps 3 and 6 of the pipeline: HTTP headers ↔ gRPC metadata.
//!
//! Going up: `Grpc-Metadata-Foo: v` becomes `foo: v`; `Authorization` (one, never two),
//! `X-Request-Id` (or the configured id header), `traceparent` and `tracestate` pass through;
//! `X-Forwarded-For`/`-Host`/`-Proto` are set; `Grpc-Timeout` becomes the deadline.
//! Coming back: response headers become `Grpc-Metadata-Foo`, trailers `Grpc-Trailer-Foo`, and
//! `x-http-code` is consumed to pick the HTTP status.
//!
//! Hop-by-hop headers, the headers a `Connection` header names, and keys that gRPC or HTTP/2
//! reserve are never forwarded in either direction. Names the gateway owns upstream (the
//! credentials, the forwarding headers, the correlation and trace ids) are never taken from a
//! client under another spelling (`Grpc-Metadata-Authorization`, a pass-through door's plain
//! `x-forwarded-for`). `-bin` values are base64 on the HTTP side.

pub mod forwarded;
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
    /// A header a request may carry once, sent more than once (two `Authorization` headers:
    /// which one the gateway verified and which one the upstream reads must not differ).
    #[error("header {header} is sent more than once; send it once")]
    Repeated {
        /// The header name.
        header: &'static str,
    },
    /// A `Grpc-Timeout` that is not `<1-8 digits><H|M|S|m|u|n>`.
    #[error("header grpc-timeout: {value:?} is not a gRPC timeout such as \"250m\" or \"10S\"")]
    InvalidTimeout {
        /// The value sent.
        value: String,
    },
}

/// Where the request came from: built once per request by [`forwarded::Forwarding::peer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// The socket's peer address.
    pub ip: Option<IpAddr>,
    /// The client: the socket's peer, or the client a trusted proxy names.
    pub client: Option<IpAddr>,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// Whether the socket's peer is a trusted proxy, whose forwarding headers are believed.
    pub trusted: bool,
}

/// Which request headers go upstream beside the contract's.
#[derive(Debug, Clone)]
pub struct HeaderRules {
    /// The correlation id header (`[request_id] header`).
    pub request_id: HeaderName,
    /// Request headers sent upstream as metadata of their own name (`[headers] forward`):
    /// `accept-language`, or `cookie` for an upstream that reads sessions. Never one the
    /// gateway owns ([`is_forwardable`] says which may be listed).
    pub forward: Vec<HeaderName>,
    /// grpc-gateway's convention (`[json] preset = "grpc-gateway"`): the standard request
    /// headers (`Accept`, `User-Agent`, …) also go up as `grpcgateway-<name>` metadata, which
    /// services written behind grpc-gateway read. The prefix is then the gateway's: a client's
    /// own `grpcgateway-*` metadata is dropped.
    pub grpc_gateway_names: bool,
}

impl HeaderRules {
    /// The contract's headers only.
    pub fn new(request_id: HeaderName) -> HeaderRules {
        HeaderRules { request_id, forward: Vec::new(), grpc_gateway_names: false }
    }

    /// Whether metadata `key` is the gateway's to set: never taken from a client.
    fn owns(&self, key: &str) -> bool {
        is_gateway_owned(key, &self.request_id) || (self.grpc_gateway_names && key.starts_with(GRPC_GATEWAY_PREFIX))
    }
}

/// The prefix grpc-gateway gives the standard headers it forwards.
const GRPC_GATEWAY_PREFIX: &str = "grpcgateway-";

/// The metadata name grpc-gateway forwards header `name` under: the permanent request headers
/// of IANA's registry, as its `DefaultHeaderMatcher` lists them. `Authorization` and `Cookie`
/// are not copied: credentials follow the gateway's own rules (the verified `authorization`,
/// and `cookie` only where `[headers] forward` lists it).
fn grpc_gateway_name(name: &str) -> Option<HeaderName> {
    Some(HeaderName::from_static(match name {
        "accept" => "grpcgateway-accept",
        "accept-charset" => "grpcgateway-accept-charset",
        "accept-language" => "grpcgateway-accept-language",
        "accept-ranges" => "grpcgateway-accept-ranges",
        "cache-control" => "grpcgateway-cache-control",
        "content-type" => "grpcgateway-content-type",
        "date" => "grpcgateway-date",
        "expect" => "grpcgateway-expect",
        "from" => "grpcgateway-from",
        "host" => "grpcgateway-host",
        "if-match" => "grpcgateway-if-match",
        "if-modified-since" => "grpcgateway-if-modified-since",
        "if-none-match" => "grpcgateway-if-none-match",
        "if-schedule-tag-match" => "grpcgateway-if-schedule-tag-match",
        "if-unmodified-since" => "grpcgateway-if-unmodified-since",
        "max-forwards" => "grpcgateway-max-forwards",
        "origin" => "grpcgateway-origin",
        "pragma" => "grpcgateway-pragma",
        "referer" => "grpcgateway-referer",
        "user-agent" => "grpcgateway-user-agent",
        "via" => "grpcgateway-via",
        "warning" => "grpcgateway-warning",
        _ => return None,
    }))
}

/// Whether `[headers] forward` may list `name`: not a header the gateway sets upstream
/// itself (credentials, forwarding headers, ids), nor one of the connection or of gRPC.
/// `cookie` may be: it is withheld by default, not owned.
pub fn is_forwardable(name: &str, request_id: &HeaderName) -> bool {
    name == "cookie" || !(is_gateway_owned(name, request_id) || is_reserved(name))
}

/// Refuses a request that sends `Authorization` more than once.
pub fn single_authorization(headers: &HeaderMap) -> Result<(), MetadataError> {
    match headers.get_all(AUTHORIZATION).iter().nth(1) {
        Some(_) => Err(MetadataError::Repeated { header: "authorization" }),
        None => Ok(()),
    }
}

/// The metadata sent upstream for an HTTP request's headers; `request_id` names the
/// correlation id header.
pub fn to_grpc(headers: &HeaderMap, peer: Peer, rules: &HeaderRules) -> Result<HeaderMap, MetadataError> {
    let request_id = &rules.request_id;
    single_authorization(headers)?;
    let mut metadata = HeaderMap::with_capacity(8);
    let hop_by_hop = connection_tokens(headers);
    for (name, value) in headers {
        if hop_by_hop.iter().any(|h| h == name.as_str()) {
            continue;
        }
        if let Some(key) = name.as_str().strip_prefix(METADATA_PREFIX) {
            if rules.owns(key) {
                continue;
            }
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
        } else if name == TRACESTATE || rules.forward.contains(name) {
            metadata.append(name.clone(), value.clone());
        }
        if rules.grpc_gateway_names
            && let Some(prefixed) = grpc_gateway_name(name.as_str())
        {
            metadata.append(prefixed, value.clone());
        }
    }
    add_forwarded(headers, peer, &mut metadata);
    Ok(metadata)
}

/// The headers sent upstream with a gRPC request passed through untranscoded: the client's
/// end-to-end headers (its `grpc-*`, content type and user agent included) but for the
/// cookies and forwarding headers REST requests do not forward either, and the
/// `X-Forwarded-*` the gateway sets.
pub fn passthrough(headers: &HeaderMap, peer: Peer, rules: &HeaderRules) -> Result<HeaderMap, MetadataError> {
    let request_id = &rules.request_id;
    single_authorization(headers)?;
    let hop_by_hop = connection_tokens(headers);
    let mut metadata = HeaderMap::with_capacity(headers.len() + 3);
    for (name, value) in headers {
        let key = name.as_str();
        if is_hop_by_hop(key)
            || matches!(key, "host" | "content-length")
            || hop_by_hop.iter().any(|h| h == key)
            || (rules.owns(key) && !is_taken_as_sent(name, request_id) && !rules.forward.contains(name))
        {
            continue;
        }
        let mut value = value.clone();
        if is_taken_as_sent(name, request_id) {
            value.set_sensitive(true);
        }
        metadata.append(name.clone(), value);
    }
    add_forwarded(headers, peer, &mut metadata);
    Ok(metadata)
}

/// Metadata that only the gateway sets upstream: a client's values under these names, spelt
/// as `Grpc-Metadata-<name>` or as plain headers at a pass-through door, never go up. The
/// credential it verified, the address it saw and the ids it keeps are what the upstream
/// reads, and nothing a client adds beside them. (The keys of forwarded claims are cleared
/// when the claims are set.)
fn is_gateway_owned(key: &str, request_id: &HeaderName) -> bool {
    matches!(
        key,
        "authorization"
            | "proxy-authorization"
            | "cookie"
            | "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-real-ip"
            | "traceparent"
            | "tracestate"
            | "x-request-id"
    ) || key == request_id.as_str()
}

/// The gateway-owned headers that go up as the client's plain headers carry them: the one
/// `Authorization` the policies saw, the correlation id the gateway kept or made, and the
/// trace context it continued.
fn is_taken_as_sent(name: &HeaderName, request_id: &HeaderName) -> bool {
    name == AUTHORIZATION || name == request_id || name == TRACEPARENT || name == TRACESTATE
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

/// Sets `X-Forwarded-For`/`-Host`/`-Proto`. A trusted proxy's values are extended (its chain
/// gets the proxy's own address) and its `Forwarded` passes on; anyone else's are replaced by
/// what the gateway saw: the socket's address, the `Host` and the connection's scheme.
fn add_forwarded(headers: &HeaderMap, peer: Peer, metadata: &mut HeaderMap) {
    let chain = headers.get(&X_FORWARDED_FOR).filter(|_| peer.trusted).and_then(|v| v.to_str().ok());
    let forwarded_for = match (chain, peer.ip) {
        (Some(chain), Some(ip)) => Some(format!("{chain}, {ip}")),
        (Some(chain), None) => Some(chain.to_owned()),
        (None, Some(ip)) => Some(ip.to_string()),
        (None, None) => None,
    };
    if let Some(value) = forwarded_for.and_then(|v| HeaderValue::from_str(&v).ok()) {
        metadata.insert(X_FORWARDED_FOR, value);
    }
    let origin = Origin::of(headers, peer);
    if let Some(host) = origin.host {
        metadata.insert(X_FORWARDED_HOST, host.clone());
    }
    metadata.insert(X_FORWARDED_PROTO, origin.proto);
    if peer.trusted {
        for value in headers.get_all(http::header::FORWARDED) {
            metadata.append(http::header::FORWARDED, value.clone());
        }
    }
}

/// The host and scheme a request was sent to, as the upstream hears them in
/// `X-Forwarded-Host`/`-Proto`: an answer may be built from them (absolute links), so a
/// cached answer is keyed by them too.
#[derive(Debug, Clone)]
pub struct Origin<'h> {
    /// A trusted proxy's `X-Forwarded-Host`, else the `Host`.
    pub host: Option<&'h HeaderValue>,
    /// A trusted proxy's `X-Forwarded-Proto`, else the connection's scheme.
    pub proto: HeaderValue,
}

impl<'h> Origin<'h> {
    /// The origin of a request with `headers` from `peer`.
    pub fn of(headers: &'h HeaderMap, peer: Peer) -> Origin<'h> {
        let believed = |name: &HeaderName| headers.get(name).filter(|_| peer.trusted);
        Origin {
            host: believed(&X_FORWARDED_HOST).or_else(|| headers.get(HOST)),
            proto: believed(&X_FORWARDED_PROTO)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static(if peer.tls { "https" } else { "http" })),
        }
    }
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
/// `Grpc-Metadata-*`, `trailers` as `Grpc-Trailer-*`, and the names `exposed` lists (from
/// either) also as plain headers, those the gateway reserves aside.
pub fn from_grpc(headers: &HeaderMap, trailers: &HeaderMap, exposed: &[HeaderName], out: &mut HeaderMap) {
    copy_prefixed(headers, METADATA_PREFIX, out);
    copy_prefixed(trailers, TRAILER_PREFIX, out);
    for name in exposed.iter().filter(|name| !is_reserved(name.as_str()) && name.as_str() != HTTP_CODE) {
        for value in headers.get_all(name).iter().chain(trailers.get_all(name)) {
            out.append(name.clone(), value.clone());
        }
    }
}

fn copy_prefixed(metadata: &HeaderMap, prefix: &str, out: &mut HeaderMap) {
    copy_unreserved(metadata, prefix, out, |name| name != HTTP_CODE);
}

/// Copies the metadata no one reserves (see [`is_reserved`], and the names its `Connection`
/// lists) that `keep` keeps, each name prefixed with `prefix`.
fn copy_unreserved(metadata: &HeaderMap, prefix: &str, out: &mut HeaderMap, keep: impl Fn(&HeaderName) -> bool) {
    let hop_by_hop = connection_tokens(metadata);
    for (name, value) in metadata {
        let key = name.as_str();
        if is_reserved(key) || hop_by_hop.iter().any(|h| h == key) || !keep(name) {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{key}").as_bytes()) {
            out.append(name, value.clone());
        }
    }
}

/// Adds an upstream's response metadata to the plain headers of an answer that carries it so
/// (Connect: `headers` as they are and `trailers` as `Trailer-*`), through the same reserved
/// names as [`from_grpc`] and without the headers a browser acts on (see
/// [`is_browser_directive`]) unless `exposed` lists them.
pub fn to_plain_headers(metadata: &HeaderMap, prefix: &str, exposed: &[HeaderName], out: &mut HeaderMap) {
    copy_unreserved(metadata, prefix, out, |name| !is_browser_directive(name.as_str()) || exposed.contains(name));
}

/// Removes from a passed-through answer (gRPC, gRPC-Web) the headers a browser acts on,
/// unless `exposed` lists them.
pub fn strip_browser_directives(headers: &mut HeaderMap, exposed: &[HeaderName]) {
    let directives: Vec<HeaderName> =
        headers.keys().filter(|name| is_browser_directive(name.as_str()) && !exposed.contains(name)).cloned().collect();
    for name in directives {
        headers.remove(name);
    }
}

/// Response headers a browser obeys rather than shows: cookies, CORS grants and security
/// policies. They are the gateway's to set for its origin; an upstream's would set a cookie
/// on, or relax the policies of, every service behind the gateway.
fn is_browser_directive(key: &str) -> bool {
    key.starts_with("access-control-")
        || key.starts_with("cross-origin-")
        || key.starts_with("content-security-policy")
        || matches!(
            key,
            "set-cookie"
                | "set-cookie2"
                | "strict-transport-security"
                | "x-frame-options"
                | "x-content-type-options"
                | "x-xss-protection"
                | "referrer-policy"
                | "permissions-policy"
                | "clear-site-data"
                | "refresh"
                | "location"
                | "content-disposition"
                | "alt-svc"
        )
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
