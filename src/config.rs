//! Configuration: `gateway.toml` parsed into typed data, merged with command-line overrides,
//! then validated as a whole.
//!
//! The flow is `Config::from_toml(&str)` → [`Config::merge`] → [`Config::validate`], which
//! returns every problem at once with its key path. Nothing here reads the process environment
//! or the file system: `main` does, so these functions are tested with plain strings.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The default public listener: loopback port 8080.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 8080));
/// The default request body limit: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The default cap on requests in progress per listener.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 10_000;
/// The default limit on one upstream response message: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// The whole gateway configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Public listener address.
    pub listen: SocketAddr,
    /// Admin listener address (health, metrics); none by default.
    pub admin_listen: Option<SocketAddr>,
    /// Host names the admin listener answers to, beside IP addresses and `localhost`: a
    /// request for any other name is refused, so that a web page cannot reach it by
    /// pointing a name of its own at this host (DNS rebinding).
    pub admin_hosts: Vec<String>,
    /// Where the protobuf descriptors come from.
    pub descriptors: DescriptorsConfig,
    /// Request headers sent upstream beyond the contract's.
    pub headers: HeadersConfig,
    /// The docs page.
    pub docs: DocsConfig,
    /// Methods served as Model Context Protocol tools.
    pub mcp: McpConfig,
    /// Descriptor sets fetched from upstreams' server reflection (not part of the file).
    #[serde(skip)]
    pub reflected: Vec<ReflectedSet>,
    /// The diagnostic log (stderr).
    pub log: LogConfig,
    /// Options of the proto3 JSON mapping.
    pub json: JsonConfig,
    /// Upstream gRPC services and which protobuf services they serve.
    pub upstreams: Vec<UpstreamConfig>,
    /// The largest request body accepted, in bytes; larger ones answer 413.
    pub max_body_bytes: usize,
    /// The largest upstream response message accepted, in bytes.
    pub max_response_bytes: usize,
    /// Streaming calls over HTTP.
    pub streaming: StreamingConfig,
    /// Compress responses (gzip, br, zstd) for clients that accept it, and accept compressed
    /// request bodies.
    pub compression: bool,
    /// After SIGTERM or SIGINT, how long requests and streams in flight may take to finish
    /// before their connections are closed.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub drain_timeout: Duration,
    /// After SIGTERM, how long the listener keeps accepting while `/readyz` fails, so that
    /// load balancers and endpoint lists that have not yet seen the pod go stop sending
    /// before connections are refused; then the drain begins. A second signal skips it.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub shutdown_delay: Duration,
    /// What `/readyz` requires: `gateway` (listening, routes loaded, not shutting down) or
    /// `upstreams` (also an endpoint taking calls for every upstream).
    pub readiness: Readiness,
    /// What the listener accepts from clients.
    pub limits: Limits,
    /// TLS termination on the listener; cleartext when absent.
    pub tls: Option<TlsConfig>,
    /// Cross-origin access for browsers; none when absent.
    pub cors: Option<CorsConfig>,
    /// Per-route policies: the first whose `match` fits a request applies to it.
    pub policy: Vec<PolicyConfig>,
    /// How bearer tokens are verified.
    pub jwt: Option<JwtConfig>,
    /// Where rate limit counters live, and whom to believe about client addresses.
    pub rate_limit: RateLimitSettings,
    /// Which header carries the correlation id.
    pub request_id: RequestIdConfig,
    /// The one line written per request.
    pub access_log: AccessLogConfig,
    /// Trace context and span export.
    pub tracing: TracingConfig,
    /// Where cached answers are kept.
    pub cache: CacheSettings,
    /// Composite routes: one HTTP request answered by several gRPC calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aggregate: Vec<AggregateConfig>,
    /// Route groups under a path prefix, each with its own response shape (backends for
    /// frontends).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<ProfileConfig>,
    /// Which ways of reaching a method besides its annotated routes are open.
    pub doors: DoorsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN,
            admin_listen: None,
            admin_hosts: Vec::new(),
            descriptors: DescriptorsConfig::default(),
            headers: HeadersConfig::default(),
            docs: DocsConfig::default(),
            mcp: McpConfig::default(),
            reflected: Vec::new(),
            log: LogConfig::default(),
            json: JsonConfig::default(),
            upstreams: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            streaming: StreamingConfig::default(),
            compression: true,
            drain_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::from_secs(5),
            readiness: Readiness::Gateway,
            limits: Limits::default(),
            tls: None,
            policy: Vec::new(),
            jwt: None,
            rate_limit: RateLimitSettings::default(),
            cors: None,
            request_id: RequestIdConfig::default(),
            access_log: AccessLogConfig::default(),
            tracing: TracingConfig::default(),
            cache: CacheSettings::default(),
            aggregate: Vec::new(),
            profile: Vec::new(),
            doors: DoorsConfig::default(),
        }
    }
}

/// `[doors]`: the ways a method is reached other than its annotated routes, each open unless
/// closed here. A closed door answers as if the method were not there (404, or UNIMPLEMENTED
/// to gRPC clients); the policies hold at every open one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DoorsConfig {
    /// `POST /pkg.Service/Method` with the request message as the JSON body.
    pub rest_fallback: bool,
    /// Services (`pkg.Service`, `pkg.*`) whose methods have no `POST /pkg.Service/Method`
    /// route, even with `rest_fallback` open: internal methods stay unexposed.
    pub rest_fallback_exclude: Vec<ServiceSelector>,
    /// Connect's unary calls.
    pub connect: bool,
    /// Native gRPC, passed through.
    pub grpc: bool,
    /// gRPC-Web, translated to gRPC.
    pub grpc_web: bool,
    /// WebSocket upgrades on streaming methods' routes.
    pub websocket: bool,
}

impl Default for DoorsConfig {
    fn default() -> Self {
        DoorsConfig {
            rest_fallback: true,
            rest_fallback_exclude: Vec::new(),
            connect: true,
            grpc: true,
            grpc_web: true,
            websocket: true,
        }
    }
}

impl DoorsConfig {
    /// Whether `service`'s methods answer on `POST /pkg.Service/Method`.
    pub fn rest_fallback_for(&self, service: &str) -> bool {
        self.rest_fallback && !self.rest_fallback_exclude.iter().any(|selector| selector.matches(service))
    }
}

/// `[descriptors]`: descriptor files and directories.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DescriptorsConfig {
    /// Files (`.binpb .pb .desc .protoset .proto`) or directories of them.
    pub paths: Vec<PathBuf>,
    /// Watch the paths (and the config file) and swap in a rebuilt gateway when they change.
    pub watch: bool,
    /// Fetch every upstream's descriptors from its gRPC server reflection service (as an
    /// upstream's own `descriptors = "reflection"` does for it).
    pub reflection: bool,
    /// How often reflected descriptors are fetched again; a change reloads the gateway.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub reflection_interval: Duration,
}

impl Default for DescriptorsConfig {
    fn default() -> Self {
        DescriptorsConfig {
            paths: vec![PathBuf::from("descriptors")],
            watch: false,
            reflection: false,
            reflection_interval: Duration::from_secs(30),
        }
    }
}

/// A descriptor set fetched from an upstream's server reflection: built into the gateway as a
/// descriptor file would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectedSet {
    /// The upstream it came from.
    pub upstream: String,
    /// The encoded `FileDescriptorSet`.
    pub set: std::sync::Arc<Vec<u8>>,
}

/// `[tls]`: TLS termination on the listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate this CA (PEM) signed: mTLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[serde(default = "default_reload_interval", deserialize_with = "duration", serialize_with = "show_duration")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}

/// `[limits]`: what the listener accepts from clients.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Requests in progress beyond which the listener answers 503 at once.
    pub max_concurrent_requests: usize,
    /// Headers per request beyond which it is refused with 431.
    pub max_headers: usize,
    /// Bytes of headers per request beyond which it is refused with 431.
    pub max_header_bytes: usize,
    /// How long a client may take to send a request's headers; also how long an idle
    /// keep-alive connection stays open. Slower clients are disconnected.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub header_read_timeout: Duration,
    /// How often an idle HTTP/2 connection is pinged; one that does not answer within
    /// `header_read_timeout` is closed.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub http2_keep_alive_interval: Duration,
    /// Streaming calls one client (by address) may have open at once — server and client
    /// streams, WebSocket sessions, gRPC calls; more are refused with 429. Behind a load
    /// balancer, list it in `[rate_limit] trusted_proxies`, or every client is one address.
    pub max_streams_per_client: usize,
    /// How long a request body may send nothing while the gateway waits for it (a client
    /// stream between lines included) before the request fails with 408 and its call is
    /// cancelled.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub body_read_timeout: Duration,
    /// How long a client may take no bytes while the gateway has some to send it (it stopped
    /// reading a stream) before it is disconnected and its calls cancelled.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            http2_keep_alive_interval: Duration::from_secs(60),
            max_streams_per_client: 1000,
            body_read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// `[streaming]`: streaming calls over HTTP.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// How often an idle Server-Sent Events stream gets a keep-alive comment. Also the longest
    /// a server stream waits for its first message before sending its response headers
    /// (until then, a failure still answers with its own HTTP status).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub keep_alive: Duration,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig { keep_alive: Duration::from_secs(15) }
    }
}

/// `[cors]`: which browser origins may call the gateway, and with what.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed: exact (`https://app.example`), any subdomain
    /// (`https://*.example.org`), or `*` (any origin; not with credentials).
    pub allow_origins: Vec<String>,
    /// Methods allowed in preflight answers.
    pub allow_methods: Vec<String>,
    /// Request headers allowed; empty allows whatever a preflight asks for.
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read, beyond the gateway's own (`Grpc-Status`,
    /// `Grpc-Message`, `X-Request-Id` and every `Grpc-Metadata-*`/`Grpc-Trailer-*` sent).
    pub expose_headers: Vec<String>,
    /// Allow cookies and `Authorization` on cross-origin requests.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(deserialize_with = "duration_opt", serialize_with = "show_duration_opt")]
    pub max_age: Option<Duration>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allow_origins: Vec::new(),
            allow_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"].map(String::from).to_vec(),
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age: None,
        }
    }
}

/// `[[policy]]`: what applies to the requests its `match` fits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A name for logs and errors.
    pub name: String,
    /// Which requests it applies to; every request when absent.
    #[serde(default, rename = "match")]
    pub matches: PolicyMatch,
    /// Whether a verified bearer token is needed.
    #[serde(default)]
    pub auth: AuthRequirement,
    /// Scopes the token must all hold (from its `scope` or `scp` claim).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims the token must hold, with these exact values.
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
    /// Also take the token from this cookie when no `Authorization` header is sent (a browser's
    /// `EventSource` and `WebSocket` send cookies but cannot set headers).
    #[serde(default)]
    pub token_cookie: Option<String>,
    /// Also take the token from the `access_token` query parameter (RFC 6750 §2.3). The
    /// parameter is then the gateway's: it is removed from every request's query before
    /// routing, so it reaches no message field, log or upstream.
    #[serde(default)]
    pub token_query: bool,
    /// The upstream call's deadline for these requests, unless the client asks for less.
    #[serde(default, deserialize_with = "duration_opt", serialize_with = "show_duration_opt")]
    pub timeout: Option<Duration>,
    /// Limits every request it fits must pass.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitConfig>,
    /// Keep the GET answers of these requests for a while (see `[cache]`).
    #[serde(default)]
    pub cache: Option<PolicyCache>,
}

/// A policy's `cache`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyCache {
    /// How long an answer is served from the cache.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub ttl: Duration,
    /// Request headers whose values tell answers apart (e.g. `Accept-Language`).
    #[serde(default)]
    pub vary: Vec<String>,
}

/// `[cache]`: where cached answers are kept.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// `memory` (each replica its own) or `redis` (shared by every replica, with each
    /// replica's memory in front).
    pub backend: String,
    /// The most memory cached answers (bodies, headers and keys) may take, in bytes.
    pub max_bytes: u64,
    /// The Redis server for `backend = "redis"`; `[rate_limit] redis_url` when absent.
    pub redis_url: Option<String>,
    /// A file holding `redis_url` (a mounted secret: the URL carries the password).
    pub redis_url_file: Option<PathBuf>,
    /// How long a lookup or store may wait for Redis; past it, the request goes on without.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub redis_timeout: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            backend: "memory".into(),
            max_bytes: 64 * 1024 * 1024,
            redis_url: None,
            redis_url_file: None,
            redis_timeout: Duration::from_millis(250),
        }
    }
}

/// One of a policy's `rate_limits`: a rate (one of `per_second`, `per_minute`, `per_hour`)
/// and how many requests may come at once (`burst`, the rate's count by default).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// What to count by: `ip`, `header:NAME`, `claim:NAME` or `route`.
    pub key: String,
    /// Requests per second.
    pub per_second: Option<u32>,
    /// Requests per minute.
    pub per_minute: Option<u32>,
    /// Requests per hour.
    pub per_hour: Option<u32>,
    /// Requests allowed at once.
    pub burst: Option<u32>,
}

impl RateLimitConfig {
    /// The rate as (count, period), if exactly one is given and it is not zero.
    pub fn rate(&self) -> Option<(u32, Duration)> {
        let rates = [
            self.per_second.map(|n| (n, Duration::from_secs(1))),
            self.per_minute.map(|n| (n, Duration::from_secs(60))),
            self.per_hour.map(|n| (n, Duration::from_secs(3600))),
        ];
        match rates.iter().flatten().collect::<Vec<_>>()[..] {
            [&(count, period)] if count > 0 => Some((count, period)),
            _ => None,
        }
    }
}

/// `[rate_limit]`: where counters live and whom to believe about client addresses.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// In this process, or shared in Redis.
    pub backend: RateLimitBackend,
    /// The Redis server, for `backend = "redis"`.
    pub redis_url: Option<String>,
    /// A file holding `redis_url` (a mounted secret: the URL carries the password).
    pub redis_url_file: Option<PathBuf>,
    /// When Redis cannot be reached: `allow` (the default; logged) or `deny` (503).
    pub on_backend_error: OnBackendError,
    /// Peers whose forwarding headers are believed: addresses or CIDRs. From anyone else
    /// `X-Forwarded-*` and `Forwarded` are replaced by what the gateway saw.
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies name the client in; the other is never read.
    pub forwarded_header: ForwardedHeader,
    /// IPv6 clients are counted per network of this prefix length (`ip` keys): one host
    /// holds a whole /64, and would otherwise have 2^64 buckets.
    pub ipv6_prefix: u8,
    /// How long a decision may wait for Redis.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub redis_timeout: Duration,
}

/// What `/readyz` requires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// The gateway's own readiness: one dead backend must not take every replica, and every
    /// route with it, out of its Service (Envoy and Kong do the same).
    #[default]
    Gateway,
    /// Also every upstream has an endpoint taking calls.
    Upstreams,
}

/// The header trusted proxies name the client in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, what most proxies and load balancers write.
    #[default]
    XForwardedFor,
    /// RFC 7239's `Forwarded: for=…`.
    Forwarded,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            backend: RateLimitBackend::Memory,
            redis_url: None,
            redis_url_file: None,
            on_backend_error: OnBackendError::Allow,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
            redis_timeout: Duration::from_millis(250),
        }
    }
}

impl RateLimitSettings {
    /// Whether requests pass when the backend cannot be reached.
    pub fn on_backend_error_allows(&self) -> bool {
        self.on_backend_error == OnBackendError::Allow
    }
}

/// Where rate limit counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// In this process: each replica counts alone.
    #[default]
    Memory,
    /// In Redis: every replica shares the counters.
    Redis,
}

/// What happens to requests when Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// Let them through (and log it).
    #[default]
    Allow,
    /// Refuse them with 503.
    Deny,
}

/// A policy's `match`: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyMatch {
    /// The request path starts with this (at a segment boundary).
    pub path_prefix: Option<String>,
    /// The HTTP method is one of these.
    pub methods: Vec<String>,
    /// The gRPC method's service fits one of these (`pkg.Service`, `pkg.*`, `*`), or it is
    /// this one method (`pkg.Service/Method`).
    pub grpc: Vec<String>,
}

/// `[[aggregate]]`: one HTTP route whose answer is built from several gRPC calls.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// HTTP method and path template, e.g. `GET /bff/users/{id}/dashboard`.
    pub route: String,
    /// What a failed call does to the answer.
    #[serde(default)]
    pub on_error: OnError,
    /// The calls by name, in the order their results appear in the answer.
    pub calls: indexmap::IndexMap<String, AggregateCall>,
}

/// `[[profile]]`: routes exposed again under a prefix, shaped for one kind of client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// A name for logs and errors.
    pub name: String,
    /// The path prefix, e.g. `/mobile`.
    pub prefix: String,
    /// JSON options of its answers, instead of `[json]`.
    #[serde(default)]
    pub json: Option<JsonConfig>,
    /// The routes it exposes.
    pub routes: Vec<ProfileRoute>,
}

/// One route a profile exposes, and how its answer is shaped.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRoute {
    /// `METHOD /template` of a method route or a composite route, as `protogate routes` lists it.
    pub route: String,
    /// Only these fields (FieldMask paths) are kept.
    #[serde(default)]
    pub allow: Vec<String>,
    /// These fields are removed.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Field path → new name of its last step.
    #[serde(default)]
    pub rename: indexmap::IndexMap<String, String>,
}

/// One call of a composite route.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateCall {
    /// The unary gRPC method, `pkg.Service/Method`.
    pub method: String,
    /// The request message as JSON whose strings may hold placeholders: `{path.X}`,
    /// `{query.X}`, `{body.X}`, `{claim.X}` and `{CALL.field}` (which makes this call wait
    /// for CALL).
    #[serde(default)]
    pub request: serde_json::Map<String, serde_json::Value>,
    /// This call's deadline, unless the client or a policy asks for less.
    #[serde(default, deserialize_with = "duration_opt", serialize_with = "show_duration_opt")]
    pub timeout: Option<Duration>,
    /// When set, these top-level fields of the call's response go to the top level of the
    /// answer instead of the whole response under the call's name; `[]` leaves the call out
    /// of the answer (it only feeds other calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<Vec<String>>,
}

/// What a composite route answers when one of its calls fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The first error is the answer, with the status the contract maps it to; calls still
    /// in flight are cancelled.
    #[default]
    Fail,
    /// 200 with the results that came, and an `errors` object naming the calls that failed
    /// (or were not made because a call they need failed).
    Partial,
}

/// Whether requests need a verified token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthRequirement {
    /// Anyone: a token, if sent, is not checked.
    #[default]
    None,
    /// A valid bearer token.
    Required,
}

/// `[jwt]`: how bearer tokens are verified.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Accepted `iss` values; any when empty.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must be in the token); any when empty.
    pub audiences: Vec<String>,
    /// The algorithms accepted: an explicit list (`none` never is).
    pub algorithms: Vec<String>,
    /// Keys given here.
    pub keys: Vec<KeyConfig>,
    /// A JWKS document on disk.
    pub jwks_file: Option<PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub leeway: Duration,
    /// Verified claims sent upstream as metadata: claim → metadata key. A client's own
    /// headers or metadata of those names are dropped first.
    pub forward_claims: std::collections::BTreeMap<String, String>,
    /// The longest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// A JWKS document to fetch (http or https), refreshed every `jwks_refresh`.
    pub jwks_url: Option<String>,
    /// How often the JWKS URL is fetched again.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub jwks_refresh: Duration,
    /// The shortest time between fetches made because a token named an unknown key.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub jwks_cooldown: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            issuers: Vec::new(),
            audiences: Vec::new(),
            algorithms: Vec::new(),
            keys: Vec::new(),
            jwks_file: None,
            leeway: Duration::from_secs(30),
            forward_claims: std::collections::BTreeMap::new(),
            max_token_bytes: 8 * 1024,
            jwks_url: None,
            jwks_refresh: Duration::from_secs(300),
            jwks_cooldown: Duration::from_secs(10),
        }
    }
}

/// One key of `[jwt].keys`: a secret (HMAC) or a public key in PEM, inline or in a file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` tokens signed with it carry; any token's when absent.
    pub kid: Option<String>,
    /// The one algorithm it verifies.
    pub alg: String,
    /// An HMAC secret.
    #[serde(serialize_with = "redacted")]
    pub secret: Option<String>,
    /// A file holding the HMAC secret (a mounted Kubernetes Secret, say).
    pub secret_file: Option<PathBuf>,
    /// A public key in PEM.
    pub pem: Option<String>,
    /// A file holding a public key in PEM.
    pub pem_file: Option<PathBuf>,
}

/// `[json]`: options of the proto3 JSON mapping.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonConfig {
    /// A set of defaults: the contract's (`protogate`), or grpc-gateway's (`grpc-gateway`:
    /// unpopulated fields emitted, unknown fields ignored), so its clients see what they saw.
    /// The options below, when given, win over it.
    pub preset: JsonPreset,
    /// Emit fields that hold their default value (the preset's choice when absent).
    pub emit_unpopulated: Option<bool>,
    /// Emit proto field names instead of lowerCamelCase JSON names.
    pub use_proto_names: bool,
    /// Emit enums as numbers instead of names.
    pub enums_as_ints: bool,
    /// Skip unknown JSON fields and query parameters instead of answering 400 (the preset's
    /// choice when absent).
    pub ignore_unknown_fields: Option<bool>,
    /// Query parameters that are never bound to a field (e.g. `_` cache busters).
    pub ignored_query_parameters: Vec<String>,
}

/// `[mcp]`: unary methods served as Model Context Protocol tools, on the public listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Serve the tools (off unless asked for).
    pub enabled: bool,
    /// The MCP endpoint (Streamable HTTP transport).
    pub path: String,
    /// The methods offered: `pkg.Service/Method`, `pkg.Service/*`, or `*` for every unary
    /// method.
    pub methods: Vec<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig { enabled: false, path: "/mcp".into(), methods: vec!["*".into()] }
    }
}

impl Config {
    /// The upstreams whose descriptors come from server reflection.
    pub fn reflection_upstreams(&self) -> impl Iterator<Item = &UpstreamConfig> {
        let all = self.descriptors.reflection;
        self.upstreams.iter().filter(move |u| all || u.descriptors.as_deref() == Some("reflection"))
    }
}

impl McpConfig {
    /// Whether method `full` (`pkg.Service.Method`) is offered.
    pub fn offers(&self, service: &str, method: &str) -> bool {
        self.methods.iter().any(|selector| match selector.split_once('/') {
            _ if selector == "*" => true,
            Some((s, "*")) => s == service,
            Some((s, m)) => s == service && m == method,
            None => false,
        })
    }
}

/// `[docs]`: the docs page, always at the admin listener's `/docs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocsConfig {
    /// Also serve `/docs` and `/docs/openapi.json` on the public listener, where "try it"
    /// calls the API from its own origin. Off by default: the public listener serves the
    /// API's routes and nothing else.
    pub public: bool,
}

/// `[headers]`: request headers sent upstream beyond `Grpc-Metadata-*`, `Authorization`, the
/// request id, the trace context and the forwarding headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersConfig {
    /// Header names sent upstream as metadata of the same name, at every door
    /// (`accept-language`, `cookie`, ...). The names the gateway sets itself cannot be listed.
    pub forward: Vec<String>,
    /// Upstream response metadata returned as plain headers of the same name: on REST answers
    /// beside `Grpc-Metadata-*` (`cache-control`, `x-total-count`), and on Connect and
    /// gRPC-Web answers even when a browser acts on it (`set-cookie`, CORS and security
    /// headers, otherwise dropped there).
    pub expose: Vec<String>,
}

/// `[log]`: the diagnostic log, on stderr (the access log is `[access_log]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` (one object per line) for log pipelines. Read at start.
    pub format: LogFormat,
}

/// How diagnostic lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: time, level, target, message, fields, spans.
    Json,
}

/// The defaults `[json]` starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JsonPreset {
    /// The contract's: default values omitted, unknown fields refused.
    #[default]
    Protogate,
    /// grpc-gateway v2's marshaler: default values emitted, unknown fields discarded.
    GrpcGateway,
}

impl JsonConfig {
    /// Whether default values are written out: the option, else the preset's choice.
    pub fn emits_unpopulated(&self) -> bool {
        self.emit_unpopulated.unwrap_or(self.preset == JsonPreset::GrpcGateway)
    }

    /// Whether unknown fields and query parameters are skipped: the option, else the preset's.
    pub fn ignores_unknown_fields(&self) -> bool {
        self.ignore_unknown_fields.unwrap_or(self.preset == JsonPreset::GrpcGateway)
    }
}

/// `[request_id]`: the correlation id header.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestIdConfig {
    /// The header that carries it in requests, responses and upstream metadata.
    pub header: String,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        RequestIdConfig { header: "x-request-id".into() }
    }
}

/// `[access_log]`: one line per request.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// `json` (the default), `human`, or `off`.
    pub format: AccessLogFormat,
    /// A file to append to; standard output when absent.
    pub path: Option<PathBuf>,
}

/// How access log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// `key=value` pairs after the request line, for reading in a terminal.
    Human,
    /// No access log.
    Off,
}

/// `[tracing]`: W3C trace context and OpenTelemetry span export. What is not set here comes
/// from the OpenTelemetry environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
/// `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, …; see [`Config::apply_otel_env`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The OTLP collector spans are exported to: `http://host:4317` over gRPC, the full URL
    /// (`http://host:4318/v1/traces`) over HTTP. No export when absent.
    pub otlp_endpoint: Option<String>,
    /// How spans are sent: `grpc` (the default) or `http/protobuf`.
    pub otlp_protocol: Option<OtlpProtocol>,
    /// The `service.name` of the exported spans; `protogate` by default.
    pub service_name: Option<String>,
    /// The share of new traces (requests without a `traceparent`) that are sampled, 0 to 1;
    /// all by default. A `traceparent`'s own sampled flag is always followed.
    pub sample_ratio: Option<f64>,
    /// How long finished spans wait to be exported together.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub batch_delay: Duration,
}

/// The OTLP transports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC, port 4317 by convention.
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, port 4318 by convention.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl TracingConfig {
    /// The `service.name` spans carry.
    pub fn service_name(&self) -> &str {
        self.service_name.as_deref().unwrap_or("protogate")
    }

    /// The share of new traces sampled.
    pub fn sample_ratio(&self) -> f64 {
        self.sample_ratio.unwrap_or(1.0)
    }
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            otlp_protocol: None,
            service_name: None,
            sample_ratio: None,
            batch_delay: Duration::from_secs(5),
        }
    }
}

/// `[[upstreams]]`: one upstream gRPC service.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// A name for logs and error messages.
    pub name: String,
    /// Which protobuf services it serves.
    pub services: Vec<ServiceSelector>,
    /// Where it listens; requests are balanced over all of them.
    pub endpoints: Vec<Endpoint>,
    /// Deadline of each call, unless the client asks for a shorter one.
    #[serde(default, deserialize_with = "duration_opt", serialize_with = "show_duration_opt")]
    pub timeout: Option<Duration>,
    /// How long to wait for a connection to be established.
    #[serde(default, deserialize_with = "duration_opt", serialize_with = "show_duration_opt")]
    pub connect_timeout: Option<Duration>,
    /// TLS to its `https://` endpoints: whom to trust, and a client certificate.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// Active checks of each endpoint with the gRPC health protocol; none when absent.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// Passive checks: endpoints that keep failing are ejected for a while.
    #[serde(default)]
    pub outlier_detection: OutlierConfig,
    /// Calls in progress to this upstream beyond which new ones answer 503 at once; no cap
    /// when absent.
    #[serde(default)]
    pub max_concurrent_requests: Option<usize>,
    /// When a failed call is tried again.
    #[serde(default)]
    pub retries: RetryConfig,
    /// How often endpoint host names are resolved again; every address a name resolves to
    /// becomes an endpoint (as a Kubernetes headless service gives one per pod).
    #[serde(default = "default_resolve_interval", deserialize_with = "duration", serialize_with = "show_duration")]
    pub resolve_interval: Duration,
    /// Methods (`pkg.Service.Method`) that are safe to call twice, so an UNAVAILABLE answer is
    /// retried; calls that came in as HTTP GET are retried without being listed.
    #[serde(default)]
    pub idempotent_methods: Vec<String>,
    /// `"reflection"`: its services' descriptors come from its gRPC server reflection service,
    /// fetched at start and every `[descriptors] reflection_interval`.
    #[serde(default)]
    pub descriptors: Option<String>,
}

fn default_resolve_interval() -> Duration {
    Duration::from_secs(30)
}

/// An upstream's `health_check`: the `grpc.health.v1.Health/Check` call made to each endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Time between two checks of an endpoint.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub interval: Duration,
    /// How long a check may take; no answer by then is a failed check.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub timeout: Duration,
    /// Failed checks in a row that take an endpoint out.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that put it back.
    pub healthy_threshold: u32,
    /// The service name asked about; empty asks about the server as a whole.
    pub service: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
            service: String::new(),
        }
    }
}

/// An upstream's `outlier_detection`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// Connect failures or UNAVAILABLE answers in a row that eject an endpoint; 0 turns
    /// ejection off.
    pub consecutive_failures: u32,
    /// How long the first ejection lasts; each further one in a row lasts twice as long.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub base_ejection_time: Duration,
    /// The longest an ejection lasts.
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub max_ejection_time: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(300),
        }
    }
}

/// An upstream's `retries`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Further tries after the first; 0 turns retries off.
    pub max_retries: u32,
    /// The back-off before the first retry; it doubles each time, and each wait is a random
    /// time up to it (full jitter).
    #[serde(deserialize_with = "duration", serialize_with = "show_duration")]
    pub backoff: Duration,
    /// Retries may add at most this fraction of the calls made (the retry budget), beyond
    /// `min_per_second`, so that retries never multiply the load on an upstream in trouble.
    pub budget_ratio: f32,
    /// Retries always allowed per second, whatever the ratio.
    pub min_per_second: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_retries: 2, backoff: Duration::from_millis(25), budget_ratio: 0.2, min_per_second: 10 }
    }
}

/// An upstream's `tls`: how its `https://` endpoints are verified and what it shows them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// CA certificates (PEM) to trust instead of the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM), for upstreams that require one.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The name to verify the upstream's certificate against, instead of the endpoint's host.
    pub server_name: Option<String>,
}

/// Which services an upstream serves: `pkg.Service`, `pkg.*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceSelector {
    /// One fully-qualified service, e.g. `example.users.v1.UserService`.
    Exact(String),
    /// Every service in a package or its sub-packages: the prefix before `.*`.
    Package(String),
    /// Every service: the default upstream.
    Any,
}

/// An upstream endpoint URL, `http://host:port`, and — for one found by resolving its host
/// name — the address it was resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    uri: http::Uri,
    address: Option<SocketAddr>,
}

/// Values from the command line that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--admin-listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `--descriptors`, replacing `descriptors.paths` when given.
    pub descriptors: Vec<PathBuf>,
    /// `--upstream [SELECTOR=]URL`.
    pub upstreams: Vec<UpstreamFlag>,
}

/// One `--upstream [SELECTOR=]URL` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFlag {
    /// The services it serves; `*` when the flag names none.
    pub selector: ServiceSelector,
    /// Where it listens.
    pub endpoint: Endpoint,
}

/// One problem in the configuration, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// Dotted key path, e.g. `upstreams[0].endpoints`; empty for the whole file.
    pub key: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

// === impl Config ===

impl Config {
    /// Parses a TOML document, its `${VAR}` / `${VAR:-default}` taken from the environment.
    /// Unknown keys are errors.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with(text, &|name| std::env::var(name).ok())
    }

    /// [`Config::from_toml`] with the variables `var` gives.
    pub fn from_toml_with(text: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let parse_error =
            |e: toml::de::Error| ConfigError { key: String::new(), message: e.to_string().trim_end().to_owned() };
        // Without a `$` there is nothing to substitute, and serde's errors keep their line.
        if !text.contains('$') {
            return toml::from_str(text).map_err(parse_error);
        }
        let mut value: toml::Value = toml::from_str(text).map_err(parse_error)?;
        let mut errors = Vec::new();
        env::interpolate(&mut value, "", var, &mut errors);
        if let Some(first) = errors.into_iter().next() {
            return Err(first);
        }
        serde_path_to_error::deserialize(value)
            .map_err(|e| ConfigError { key: e.path().to_string(), message: e.inner().to_string() })
    }

    /// Reads the `*_file` variants of secrets (`[jwt] keys[].secret_file`, `redis_url_file`)
    /// into their values; giving both a value and its file is an error. Run after
    /// [`Config::resolve_paths`].
    pub fn read_secret_files(&mut self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut read = |key: String, file: &Option<PathBuf>, value: &mut Option<String>| {
            let Some(file) = file else { return };
            if value.is_some() {
                let name = key.rsplit('.').next().unwrap_or(&key).trim_end_matches("_file").to_owned();
                errors.push(ConfigError { key, message: format!("give {name} or its file, not both") });
                return;
            }
            match std::fs::read_to_string(file) {
                // A trailing newline is the editor's, not the secret's.
                Ok(text) => *value = Some(text.trim_end_matches(['\n', '\r']).to_owned()),
                Err(e) => errors.push(ConfigError { key, message: format!("cannot read {}: {e}", file.display()) }),
            }
        };
        read("rate_limit.redis_url_file".into(), &self.rate_limit.redis_url_file, &mut self.rate_limit.redis_url);
        read("cache.redis_url_file".into(), &self.cache.redis_url_file, &mut self.cache.redis_url);
        if let Some(jwt) = &mut self.jwt {
            for (i, key) in jwt.keys.iter_mut().enumerate() {
                read(format!("jwt.keys[{i}].secret_file"), &key.secret_file, &mut key.secret);
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Makes relative descriptor paths relative to `dir` (the directory of the config file).
    pub fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        };
        self.descriptors.paths.iter_mut().for_each(resolve);
        for upstream in &mut self.upstreams {
            if let Some(tls) = &mut upstream.tls {
                tls.ca_file.iter_mut().chain(tls.cert_file.iter_mut()).chain(tls.key_file.iter_mut()).for_each(resolve);
            }
        }
        if let Some(tls) = &mut self.tls {
            resolve(&mut tls.cert_file);
            resolve(&mut tls.key_file);
            tls.client_ca_file.iter_mut().for_each(resolve);
        }
        if let Some(jwt) = &mut self.jwt {
            jwt.jwks_file.iter_mut().for_each(resolve);
            jwt.keys.iter_mut().filter_map(|k| k.pem_file.as_mut()).for_each(resolve);
            jwt.keys.iter_mut().filter_map(|k| k.secret_file.as_mut()).for_each(resolve);
        }
        self.rate_limit.redis_url_file.iter_mut().for_each(resolve);
        self.cache.redis_url_file.iter_mut().for_each(resolve);
    }

    /// Applies command-line overrides: flags win over the file.
    ///
    /// An `--upstream` flag takes its selector away from any configured upstream, so
    /// `--upstream 'pkg.*=URL'` redirects one package without editing the file.
    pub fn merge(&mut self, overrides: Overrides) {
        if let Some(listen) = overrides.listen {
            self.listen = listen;
        }
        if overrides.admin_listen.is_some() {
            self.admin_listen = overrides.admin_listen;
        }
        if !overrides.descriptors.is_empty() {
            self.descriptors.paths = overrides.descriptors;
        }
        for flag in overrides.upstreams {
            for upstream in &mut self.upstreams {
                upstream.services.retain(|s| *s != flag.selector);
            }
            self.upstreams.retain(|u| !u.services.is_empty());
            let name = match &flag.selector {
                ServiceSelector::Any => "default".to_owned(),
                selector => selector.to_string(),
            };
            self.upstreams.push(UpstreamConfig {
                name,
                services: vec![flag.selector],
                endpoints: vec![flag.endpoint],
                timeout: None,
                connect_timeout: None,
                tls: None,
                health_check: None,
                outlier_detection: OutlierConfig::default(),
                max_concurrent_requests: None,
                retries: RetryConfig::default(),
                resolve_interval: default_resolve_interval(),
                idempotent_methods: Vec::new(),
                descriptors: None,
            });
        }
    }

    /// Every problem in the configuration that the configuration alone shows, each with its key
    /// path. What a feature's own rules refuse (a policy's match, a rate-limit key, `[jwt]`,
    /// `[cors]`, a composite route) is checked where the gateway is built, by the module that
    /// knows the rule: see `gateway::validate`.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |key: String, message: String| errors.push(ConfigError { key, message });
        // Port 0 picks a free port for each listener: those never collide.
        if self.admin_listen.is_some_and(|admin| admin == self.listen && admin.port() != 0) {
            err("admin_listen".into(), "must differ from listen: the admin endpoints are never public".into());
        }
        if let Err(e) = http::HeaderName::from_bytes(self.request_id.header.as_bytes()) {
            err("request_id.header".into(), format!("{:?} is not a header name: {e}", self.request_id.header));
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio()) {
            err("tracing.sample_ratio".into(), "must be between 0 and 1".into());
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint {
            if !cfg!(feature = "otlp") {
                err("tracing.otlp_endpoint".into(), "this build has no OTLP export (cargo feature \"otlp\")".into());
            } else if let Err(message) = otlp_endpoint(endpoint, self.tracing.otlp_protocol.unwrap_or_default()) {
                err("tracing.otlp_endpoint".into(), message);
            }
        }
        if self.descriptors.paths.is_empty() && self.reflection_upstreams().next().is_none() {
            err(
                "descriptors.paths".into(),
                "no descriptor paths: give at least one file or directory, or an upstream with descriptors = \"reflection\"".into(),
            );
        }
        if self.max_body_bytes == 0 {
            err("max_body_bytes".into(), "must be greater than 0".into());
        }
        if self.max_response_bytes == 0 {
            err("max_response_bytes".into(), "must be greater than 0".into());
        }
        match self.cache.backend.as_str() {
            "memory" | "redis" => {}
            other => {
                err("cache.backend".into(), format!("{other:?} is not a cache backend: use \"memory\" or \"redis\""))
            }
        }
        if let Some(url) = &self.cache.redis_url
            && let Err(e) = redis::Client::open(url.as_str())
        {
            err("cache.redis_url".into(), format!("{url:?}: {e}"));
        }
        if self.cache.max_bytes == 0 {
            err("cache.max_bytes".into(), "must be greater than 0".into());
        }
        for (i, policy) in self.policy.iter().enumerate() {
            if let Some(cache) = &policy.cache {
                if cache.ttl.is_zero() {
                    err(format!("policy[{i}].cache.ttl"), "must be longer than 0".into());
                }
                for (j, name) in cache.vary.iter().enumerate() {
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        err(format!("policy[{i}].cache.vary[{j}]"), format!("{name:?} is not a header name"));
                    }
                }
            }
            for (j, limit) in policy.rate_limits.iter().enumerate() {
                let key = |k: &str| format!("policy[{i}].rate_limits[{j}].{k}");
                if limit.rate().is_none() {
                    err(key("per_second"), "give exactly one of per_second, per_minute, per_hour, above 0".into());
                }
                if limit.burst == Some(0) {
                    err(key("burst"), "must be greater than 0".into());
                }
            }
            if policy.auth == AuthRequirement::None && (!policy.scopes.is_empty() || !policy.claims.is_empty()) {
                err(format!("policy[{i}].auth"), "scopes and claims need auth = \"required\"".into());
            }
            if policy.auth == AuthRequirement::None && (policy.token_cookie.is_some() || policy.token_query) {
                err(format!("policy[{i}].auth"), "token_cookie and token_query need auth = \"required\"".into());
            }
            if let Some(name) = &policy.token_cookie
                && !is_cookie_name(name)
            {
                err(format!("policy[{i}].token_cookie"), format!("{name:?} is not a cookie name"));
            }
        }
        for (i, upstream) in self.upstreams.iter().enumerate() {
            if let Some(other) = upstream.descriptors.as_deref().filter(|d| *d != "reflection") {
                err(format!("upstreams[{i}].descriptors"), format!("{other:?}: the one source is \"reflection\""));
            }
        }
        if self.descriptors.reflection_interval < Duration::from_secs(1) {
            err("descriptors.reflection_interval".into(), "must be at least 1s".into());
        }
        if !self.mcp.path.starts_with('/') || self.mcp.path.len() < 2 {
            err("mcp.path".into(), format!("{:?} must be a path below /, e.g. \"/mcp\"", self.mcp.path));
        }
        for (i, selector) in self.mcp.methods.iter().enumerate() {
            let valid =
                selector == "*" || selector.split_once('/').is_some_and(|(s, m)| !s.is_empty() && !m.is_empty());
            if !valid {
                err(format!("mcp.methods[{i}]"), format!("{selector:?} is not pkg.Service/Method, pkg.Service/* or *"));
            }
        }
        let needs_jwt = self.policy.iter().any(|p| p.auth == AuthRequirement::Required);
        if self.jwt.is_none() && needs_jwt {
            err("jwt".into(), "a policy requires auth but no [jwt] section says how to verify tokens".into())
        }
        if let Some(url) = &self.rate_limit.redis_url
            && let Err(e) = redis::Client::open(url.as_str())
        {
            err("rate_limit.redis_url".into(), format!("{url:?}: {e}"));
        }
        for (key, zero) in [
            ("max_concurrent_requests", self.limits.max_concurrent_requests == 0),
            ("max_headers", self.limits.max_headers == 0),
            ("max_streams_per_client", self.limits.max_streams_per_client == 0),
            ("max_header_bytes", self.limits.max_header_bytes < 1024),
            ("header_read_timeout", self.limits.header_read_timeout.is_zero()),
            ("body_read_timeout", self.limits.body_read_timeout.is_zero()),
            ("write_timeout", self.limits.write_timeout.is_zero()),
            ("http2_keep_alive_interval", self.limits.http2_keep_alive_interval.is_zero()),
        ] {
            if zero {
                let what = if key == "max_header_bytes" { "at least 1024" } else { "greater than 0" };
                err(format!("limits.{key}"), format!("must be {what}"));
            }
        }
        if self.tls.as_ref().is_some_and(|t| t.reload_interval.is_zero()) {
            err("tls.reload_interval".into(), "must be longer than 0".into());
        }
        if self.drain_timeout.is_zero() {
            err("drain_timeout".into(), "must be longer than 0".into());
        }
        if self.streaming.keep_alive.is_zero() {
            err("streaming.keep_alive".into(), "must be longer than 0".into());
        }
        let mut names = HashSet::new();
        let mut selectors = HashSet::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let key = |k: &str| format!("upstreams[{i}].{k}");
            if upstream.name.trim().is_empty() {
                err(key("name"), "must not be empty".into());
            } else if !names.insert(upstream.name.as_str()) {
                err(key("name"), format!("upstream name {:?} is used twice", upstream.name));
            }
            if upstream.services.is_empty() {
                err(key("services"), "must name at least one service, package glob or \"*\"".into());
            }
            for selector in &upstream.services {
                if !selectors.insert(selector) {
                    err(key("services"), format!("{selector} is already served by another upstream"));
                }
            }
            if upstream.endpoints.is_empty() {
                err(key("endpoints"), "must list at least one endpoint URL".into());
            }
            if upstream.timeout == Some(Duration::ZERO) {
                err(key("timeout"), "must be greater than 0".into());
            }
            if let Some(check) = &upstream.health_check {
                for (name, zero) in [
                    ("interval", check.interval.is_zero()),
                    ("timeout", check.timeout.is_zero()),
                    ("unhealthy_threshold", check.unhealthy_threshold == 0),
                    ("healthy_threshold", check.healthy_threshold == 0),
                ] {
                    if zero {
                        err(key(&format!("health_check.{name}")), "must be greater than 0".into());
                    }
                }
            }
            let outlier = &upstream.outlier_detection;
            if outlier.consecutive_failures > 0 && outlier.base_ejection_time.is_zero() {
                err(key("outlier_detection.base_ejection_time"), "must be greater than 0".into());
            }
            if outlier.max_ejection_time < outlier.base_ejection_time {
                err(key("outlier_detection.max_ejection_time"), "must be at least base_ejection_time".into());
            }
            if upstream.resolve_interval.is_zero() {
                err(key("resolve_interval"), "must be greater than 0".into());
            }
            if upstream.max_concurrent_requests == Some(0) {
                err(key("max_concurrent_requests"), "must be greater than 0".into());
            }
            if !(0.0..=1000.0).contains(&upstream.retries.budget_ratio) {
                err(key("retries.budget_ratio"), "must be between 0 and 1000".into());
            }
            for (j, method) in upstream.idempotent_methods.iter().enumerate() {
                if method.split('.').count() < 2 || method.contains('/') {
                    err(key(&format!("idempotent_methods[{j}]")), format!("{method:?} is not pkg.Service.Method"));
                }
            }
        }
        errors
    }
}

/// An OTLP endpoint: over gRPC a bare `scheme://host:port`, over HTTP the URL spans are
/// posted to (its path included).
fn otlp_endpoint(endpoint: &str, protocol: OtlpProtocol) -> Result<(), String> {
    match protocol {
        OtlpProtocol::Grpc => endpoint.parse::<Endpoint>().map(drop),
        OtlpProtocol::HttpProtobuf => match endpoint.parse::<http::Uri>() {
            Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => Ok(()),
            _ => Err(format!("{endpoint:?} is not an http:// or https:// URL")),
        },
    }
}

/// A cookie name is an HTTP token (RFC 6265 §4.1.1).
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    duration_opt(de).map(Option::unwrap_or_default)
}

fn duration_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!("invalid duration {text:?} ({e}); use e.g. \"250ms\", \"10s\", \"2m\""))
    })
}

fn show_duration<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*duration).to_string())
}

fn show_duration_opt<S: Serializer>(duration: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => show_duration(duration, s),
        None => s.serialize_none(),
    }
}

/// Secrets are shown as present, never by value.
fn redacted<S: Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

impl Config {
    /// The configuration as the admin listener's `/config` shows it: secrets as `[redacted]`,
    /// and in every URL, whatever its key (`jwks_url`, `otlp_endpoint`, upstream endpoints,
    /// Redis), the credentials of its user info and query.
    pub fn effective(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        redact_urls(&mut value);
        value
    }
}

fn redact_urls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text.contains("://") => *text = hide_password(text),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_urls),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(redact_urls),
        _ => {}
    }
}

/// Query parameters whose values are credentials.
const SECRET_PARAMETERS: [&str; 9] =
    ["password", "pass", "passwd", "pwd", "secret", "token", "access_token", "api_key", "apikey"];

/// A URL with the credentials in it replaced: the password of its user info (or the user
/// info itself when it is one token), and the values of credential query parameters.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:[redacted]@{host}"),
            None => format!("[redacted]@{host}"),
        },
        None => authority.to_owned(),
    };
    let (path, query_and_fragment) = tail.split_at(tail.find('?').unwrap_or(tail.len()));
    let (query, fragment) =
        query_and_fragment.split_at(query_and_fragment.find('#').unwrap_or(query_and_fragment.len()));
    let query: Vec<String> = query
        .trim_start_matches('?')
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMETERS.iter().any(|s| name.eq_ignore_ascii_case(s)) => {
                format!("{name}=[redacted]")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
    format!("{scheme}://{authority}{path}{query}{fragment}")
}

// === impl ServiceSelector ===

impl ServiceSelector {
    /// Whether this selector covers `service` (a fully-qualified service name).
    pub fn matches(&self, service: &str) -> bool {
        match self {
            ServiceSelector::Exact(name) => name == service,
            ServiceSelector::Package(prefix) => {
                service.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.starts_with('.'))
            }
            ServiceSelector::Any => true,
        }
    }

    /// Higher is more specific: exact names beat longer packages beat shorter ones beat `*`.
    pub fn specificity(&self) -> usize {
        match self {
            ServiceSelector::Exact(_) => usize::MAX,
            ServiceSelector::Package(prefix) => 1 + prefix.len(),
            ServiceSelector::Any => 0,
        }
    }
}

impl FromStr for ServiceSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(ServiceSelector::Any);
        }
        let (name, selector): (&str, fn(String) -> ServiceSelector) = match s.strip_suffix(".*") {
            Some(prefix) => (prefix, ServiceSelector::Package),
            None => (s, ServiceSelector::Exact),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|part| {
                part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if valid {
            Ok(selector(name.to_owned()))
        } else {
            Err(format!("invalid service selector {s:?}: use \"pkg.Service\", \"pkg.*\" or \"*\""))
        }
    }
}

impl fmt::Display for ServiceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceSelector::Exact(name) => f.write_str(name),
            ServiceSelector::Package(prefix) => write!(f, "{prefix}.*"),
            ServiceSelector::Any => f.write_str("*"),
        }
    }
}

impl Serialize for ServiceSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServiceSelector {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        String::deserialize(de)?.parse().map_err(serde::de::Error::custom)
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// The URL.
    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// The host, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        self.uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']')
    }

    /// The port: the URL's, else the scheme's.
    pub fn port(&self) -> u16 {
        self.uri.port_u16().unwrap_or(if self.uri.scheme_str() == Some("https") { 443 } else { 80 })
    }

    /// The address to connect to, when the host name was resolved to it.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// Whether the host is a name (to resolve) rather than an IP address.
    pub fn is_name(&self) -> bool {
        self.host().parse::<std::net::IpAddr>().is_err()
    }

    /// The same endpoint at one address its host name resolved to: connections go to the
    /// address, while TLS and `:authority` keep the name.
    pub fn at(&self, address: SocketAddr) -> Endpoint {
        Endpoint { uri: self.uri.clone(), address: Some(address) }
    }

    /// The endpoint as configured, without a resolved address.
    pub fn configured(&self) -> Endpoint {
        Endpoint { uri: self.uri.clone(), address: None }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("invalid endpoint URL {s:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("endpoint {s:?} must be an http:// or https:// URL with host and port"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("endpoint {s:?} has no host"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(format!("endpoint {s:?} must not have a path"));
        }
        Ok(Endpoint { uri, address: None })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Uri` renders an empty path as "/"; endpoints are shown as they are written.
        let text = self.uri.to_string();
        f.write_str(text.strip_suffix('/').unwrap_or(&text))?;
        match self.address {
            Some(address) => write!(f, " ({address})"),
            None => Ok(()),
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        String::deserialize(de)?.parse().map_err(serde::de::Error::custom)
    }
}

// === impl UpstreamFlag ===

impl FromStr for UpstreamFlag {
    type Err = String;

    /// `URL` or `SELECTOR=URL`; a `=` inside the URL itself is not taken for the separator.
    fn from_str(s: &str) -> Result<Self, String> {
        let (selector, url) = match s.split_once('=') {
            Some((selector, url)) if !selector.contains("://") => (selector.parse()?, url),
            _ => (ServiceSelector::Any, s),
        };
        Ok(UpstreamFlag { selector, endpoint: url.parse()? })
    }
}

mod env;
mod otel_env;

#[cfg(test)]
mod tests;
