//! Rate limits: GCRA, per policy, keyed by client IP, a header, a token claim or the route.
//! A policy may set several; a request must pass them all. `backend = "memory"` keeps the
//! counters in this process (governor's keyed limiters, idle keys dropped every minute so
//! that millions of clients do not grow memory without bound); `backend = "redis"` keeps them
//! in Redis, one atomic script per decision, so every replica shares one limit.
//!
//! The client IP is the one [`crate::metadata::forwarded`] finds (the socket's peer, or the
//! client a trusted proxy names); IPv6 clients count per network (`ipv6_prefix`, a /64 by
//! default), as one host holds a whole /64. A `header:` key counts a SHA-256 digest of the
//! value, so a key is short however long the header, and an API key is never stored in Redis
//! in the clear.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use sha2::Digest;

use crate::auth::Claims;
use crate::config::{RateLimitBackend, RateLimitConfig, RateLimitSettings};
use crate::redis_connection::RedisConnection;
use crate::route::PathTemplate;

type MemoryLimiter = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// How often idle keys are dropped from the in-memory limiters.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The limits of every policy, and where their counters live.
pub struct Limiter {
    /// By policy index.
    policies: Vec<Vec<Limit>>,
    /// IPv6 clients are keyed by their network of this prefix length.
    ipv6_prefix: u8,
    redis: Option<RedisBackend>,
    fail_open: bool,
    /// Decisions the backend could not make (let through or refused, per `fail_open`).
    backend_errors: std::sync::atomic::AtomicU64,
    /// When a backend failure was last logged: an outage under load is one line every
    /// [`LOG_EVERY`], not one per request.
    last_logged: std::sync::Mutex<Option<std::time::Instant>>,
    /// Failures since the last line.
    unlogged: std::sync::atomic::AtomicU64,
}

/// How often a run of backend failures is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One limit of one policy.
struct Limit {
    /// How the `RateLimit-Policy` and `RateLimit` headers name it.
    label: Arc<Label>,
    key: KeyKind,
    /// Requests allowed at once.
    burst: u32,
    /// Time for one more request to be allowed.
    interval: Duration,
    /// The Redis key prefix, unique to this policy and limit.
    id: String,
    memory: Option<Arc<MemoryLimiter>>,
}

/// What a limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// The client's IP address.
    Ip,
    /// A request header's value.
    Header(HeaderName),
    /// A verified token claim.
    Claim(String),
    /// The route: every client together.
    Route,
}

/// What a request's limit key is made of.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The client's address.
    pub client: Option<IpAddr>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The verified claims, if a token was checked.
    pub claims: Option<&'a Claims>,
    /// The route's HTTP method.
    pub http_method: &'a http::Method,
    /// The route's path template.
    pub template: &'a PathTemplate,
}

/// A refusal: the limit that was reached and when to come back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Over the limit: 429.
    #[error("rate limit of {limit} requests exceeded for {key}; retry in {}s", retry_after.as_secs_f64().ceil())]
    Limited {
        /// The limit, for the `RateLimit` headers.
        label: Arc<Label>,
        /// What it counts by, for the message.
        key: String,
        /// Requests allowed at once.
        limit: u32,
        /// When one more request will be allowed.
        retry_after: Duration,
    },
    /// The shared counters could not be reached and the policy is to refuse: 503.
    #[error("the rate limit backend is unavailable: {reason}")]
    BackendUnavailable {
        /// Why.
        reason: String,
    },
}

/// How the `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers)
/// name one limit: written once, when the limits are built, not per request.
#[derive(Debug, PartialEq, Eq)]
pub struct Label {
    /// `<policy>.<key>` as a structured-field string: `"orders.ip"`.
    pub name: String,
    /// Its `RateLimit-Policy` item: `"orders.ip";q=<burst>;w=<seconds to refill>`.
    pub policy: String,
}

impl Label {
    /// The label of a limit named `name` that allows `burst` at once and refills in `window`.
    pub fn new(name: &str, burst: u32, window: Duration) -> Label {
        let name = sf_string(name);
        let policy = format!("{name};q={burst};w={}", whole_seconds(&window));
        Label { name, policy }
    }
}

/// A structured-field string (RFC 8941 §3.3.3): quoted, `"` and `\` escaped, printable ASCII.
fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// Whole seconds, rounded up: a client that waits that long is never early.
pub fn whole_seconds(duration: &Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Where a request stands with one limit it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The limit.
    pub label: Arc<Label>,
    /// Requests left now.
    pub remaining: u32,
    /// When the limit is whole again.
    pub reset: Duration,
}

impl Limiter {
    /// The limits of `policies` (each policy's name and `rate_limits`, already validated).
    pub fn new(policies: &[(&str, &[RateLimitConfig])], settings: &RateLimitSettings) -> Limiter {
        let redis = (settings.backend == RateLimitBackend::Redis).then(|| RedisBackend::new(settings));
        let policies: Vec<Vec<Limit>> = policies
            .iter()
            .enumerate()
            .map(|(p, (name, limits))| {
                let limits = limits.iter().enumerate();
                limits.filter_map(|(l, config)| Limit::new(name, config, p, l, redis.is_none())).collect()
            })
            .collect();
        let memory: Vec<std::sync::Weak<MemoryLimiter>> =
            policies.iter().flatten().filter_map(|l| l.memory.as_ref().map(Arc::downgrade)).collect();
        if !memory.is_empty() {
            tokio::spawn(sweep(memory));
        }
        Limiter {
            policies,
            ipv6_prefix: settings.ipv6_prefix,
            redis,
            fail_open: settings.on_backend_error_allows(),
            backend_errors: std::sync::atomic::AtomicU64::new(0),
            last_logged: std::sync::Mutex::new(None),
            unlogged: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Logs a backend failure, at most once per [`LOG_EVERY`] with how many went unlogged
    /// (the metric counts every one).
    fn log_backend_error(&self, reason: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let Ok(mut last) = self.last_logged.try_lock() else {
            self.unlogged.fetch_add(1, Relaxed);
            return;
        };
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            self.unlogged.fetch_add(1, Relaxed);
            return;
        }
        *last = Some(std::time::Instant::now());
        let also = self.unlogged.swap(0, Relaxed);
        let outcome = if self.fail_open { "letting requests through" } else { "refusing requests (503)" };
        tracing::warn!(reason, unlogged_since_last = also, "rate limit backend unavailable: {outcome}");
    }

    /// Whether policy `policy` lets this request through, counting it; where it stands with
    /// each limit it passed.
    pub async fn check(&self, policy: usize, subject: &Subject<'_>) -> Result<Vec<Standing>, Refusal> {
        let Some(limits) = self.policies.get(policy) else { return Ok(Vec::new()) };
        let mut quotas = Vec::with_capacity(limits.len());
        for limit in limits {
            let key = limit.key_of(subject, self.ipv6_prefix);
            let decision = match (&limit.memory, &self.redis) {
                (Some(memory), _) => limit.check_memory(memory, &key).map(Some),
                (None, Some(redis)) => match redis.check(limit, &key).await {
                    Ok(decision) => decision.map(Some),
                    Err(reason) => {
                        self.backend_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.log_backend_error(&reason);
                        // Let through, nothing is known of where the client stands.
                        if self.fail_open { Ok(None) } else { Err(Refusal::BackendUnavailable { reason }) }
                    }
                },
                (None, None) => Ok(None),
            };
            quotas.extend(decision?);
        }
        Ok(quotas)
    }
}

impl Limiter {
    /// How many decisions the shared backend could not make since the start.
    pub fn backend_errors(&self) -> u64 {
        self.backend_errors.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("limits", &self.policies.iter().map(Vec::len).sum::<usize>()).finish()
    }
}

impl Limit {
    fn new(policy_name: &str, config: &RateLimitConfig, policy: usize, index: usize, in_memory: bool) -> Option<Limit> {
        let (count, period) = config.rate()?;
        let burst = config.burst.unwrap_or(count).max(1);
        let interval = period / count.max(1);
        let key = KeyKind::from_str(&config.key).ok()?;
        let memory = in_memory.then(|| {
            let quota = Quota::with_period(interval)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
            Arc::new(RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>())
        });
        let label = Arc::new(Label::new(&format!("{policy_name}.{key}"), burst, interval * burst));
        Some(Limit { label, key, burst, interval, id: format!("protogate:rl:{policy}:{index}"), memory })
    }

    /// This request's key: what it counts by, and its value (`-` when absent: requests
    /// without the header or claim share one counter rather than escape the limit).
    fn key_of(&self, subject: &Subject<'_>, ipv6_prefix: u8) -> String {
        match &self.key {
            KeyKind::Ip => subject.client.map_or_else(|| "-".into(), |ip| ip_key(ip, ipv6_prefix)),
            KeyKind::Header(name) => subject.headers.get(name).map_or_else(|| "-".into(), |v| digest(v.as_bytes())),
            KeyKind::Claim(name) => subject.claims.and_then(|c| c.text(name)).unwrap_or_else(|| "-".into()),
            KeyKind::Route => format!("{} {}", subject.http_method, subject.template),
        }
    }

    fn check_memory(&self, limiter: &MemoryLimiter, key: &String) -> Result<Standing, Refusal> {
        match limiter.check_key(key) {
            Ok(snapshot) => Ok(self.quota(snapshot.remaining_burst_capacity())),
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(DefaultClock::default().now());
                Err(self.refusal(retry_after))
            }
        }
    }

    /// Where a request that passed stands, with `remaining` requests left.
    fn quota(&self, remaining: u32) -> Standing {
        let remaining = remaining.min(self.burst);
        Standing { label: self.label.clone(), remaining, reset: self.interval * (self.burst - remaining) }
    }

    fn refusal(&self, retry_after: Duration) -> Refusal {
        Refusal::Limited { label: self.label.clone(), key: self.key.to_string(), limit: self.burst, retry_after }
    }
}

impl FromStr for KeyKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "ip" => Ok(KeyKind::Ip),
            None if s == "route" => Ok(KeyKind::Route),
            Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
                .map(KeyKind::Header)
                .map_err(|_| format!("{name:?} is not a header name")),
            Some(("claim", name)) if !name.is_empty() => Ok(KeyKind::Claim(name.to_owned())),
            _ => Err(format!("{s:?} is not a key: use ip, header:NAME, claim:NAME or route")),
        }
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Ip => f.write_str("ip"),
            KeyKind::Header(name) => write!(f, "header:{name}"),
            KeyKind::Claim(name) => write!(f, "claim:{name}"),
            KeyKind::Route => f.write_str("route"),
        }
    }
}

/// Drops idle keys from the in-memory limiters, until they are gone.
async fn sweep(limiters: Vec<std::sync::Weak<MemoryLimiter>>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        let mut alive = false;
        for limiter in limiters.iter().filter_map(std::sync::Weak::upgrade) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            alive = true;
        }
        if !alive {
            return;
        }
    }
}

/// An address as a rate-limit key: IPv4 whole, IPv6 as its network of `ipv6_prefix` bits.
fn ip_key(ip: IpAddr, ipv6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(_) => ip.to_string(),
        IpAddr::V6(_) => {
            IpNet::new(ip, ipv6_prefix.min(128)).map_or_else(|_| ip.to_string(), |net| net.trunc().to_string())
        }
    }
}

/// A header value as a rate-limit key: 128 bits of its SHA-256, in hex.
fn digest(value: &[u8]) -> String {
    let hash = sha2::Sha256::digest(value);
    hash[..16].iter().map(|b| format!("{b:02x}")).collect()
}

// === Redis ===

/// Counters in Redis: one GCRA script call per decision.
struct RedisBackend {
    connection: RedisConnection,
    script: redis::Script,
}

/// GCRA over Redis's clock: the key holds the theoretical arrival time (ms) of the next
/// request, and expires when the limit would be whole again.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, new_tat - now))
return {1, 0, new_tat - now}
";

impl RedisBackend {
    fn new(settings: &RateLimitSettings) -> RedisBackend {
        let url = settings.redis_url.as_deref().unwrap_or("redis://127.0.0.1:6379");
        RedisBackend { connection: RedisConnection::new(url, settings.redis_timeout), script: redis::Script::new(GCRA) }
    }

    async fn check(&self, limit: &Limit, key: &str) -> Result<Result<Standing, Refusal>, String> {
        let interval_ms = limit.interval.as_millis().max(1) as u64;
        let redis_key = format!("{}:{key}", limit.id);
        let mut connection = self.connection.get().await?;
        let mut invocation = self.script.key(redis_key);
        invocation.arg(interval_ms).arg(limit.burst);
        let call = invocation.invoke_async(&mut connection);
        let timeout = self.connection.timeout;
        let reply: Vec<i64> = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {timeout:?}")),
        };
        let [allowed, retry_ms, used_ms] = reply[..] else { return Err(format!("unexpected script reply {reply:?}")) };
        if allowed == 1 {
            // `used_ms` is how far ahead of now the limit's clock runs: the requests taken.
            let used = u64::try_from(used_ms).unwrap_or(0).div_ceil(interval_ms);
            let remaining = u64::from(limit.burst).saturating_sub(used);
            return Ok(Ok(limit.quota(u32::try_from(remaining).unwrap_or(0))));
        }
        Ok(Err(limit.refusal(Duration::from_millis(retry_ms.max(0) as u64))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_outage_is_one_log_line_per_interval() {
        let limiter = Limiter::new(&[], &RateLimitSettings::default());
        for _ in 0..1000 {
            limiter.log_backend_error("Connection refused");
        }
        assert_eq!(limiter.unlogged.load(std::sync::atomic::Ordering::Relaxed), 999, "one logged, the rest counted");
    }

    #[test]
    fn ipv6_clients_count_per_network_and_header_values_as_digests() {
        assert_eq!(ip_key("2001:db8:1:2:aaaa::1".parse().unwrap(), 64), "2001:db8:1:2::/64");
        assert_eq!(ip_key("2001:db8:1:2:aaaa::1".parse().unwrap(), 128), "2001:db8:1:2:aaaa::1/128");
        assert_eq!(ip_key("203.0.113.9".parse().unwrap(), 64), "203.0.113.9");
        let long = "k".repeat(8000);
        assert_eq!(digest(long.as_bytes()).len(), 32, "a key is short however long the value");
        assert_ne!(digest(b"a"), digest(b"b"));
        assert_eq!(digest(b"a"), digest(b"a"));
    }

    #[test]
    fn keys_parse() {
        assert_eq!(KeyKind::from_str("ip").unwrap(), KeyKind::Ip);
        assert_eq!(KeyKind::from_str("route").unwrap(), KeyKind::Route);
        assert_eq!(
            KeyKind::from_str("header:X-Api-Key").unwrap(),
            KeyKind::Header(HeaderName::from_static("x-api-key"))
        );
        assert_eq!(KeyKind::from_str("claim:sub").unwrap(), KeyKind::Claim("sub".into()));
        assert!(KeyKind::from_str("cookie:x").is_err() && KeyKind::from_str("claim:").is_err());
    }

    #[test]
    fn idle_keys_are_dropped_so_memory_stays_bounded() {
        let clock = governor::clock::FakeRelativeClock::default();
        let quota = Quota::with_period(Duration::from_millis(1)).unwrap().allow_burst(NonZeroU32::MIN);
        let limiter: RateLimiter<String, DefaultKeyedStateStore<String>, _, governor::middleware::NoOpMiddleware<_>> =
            RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone());
        for i in 0..100_000 {
            let _ = limiter.check_key(&format!("client-{i}"));
        }
        assert_eq!(limiter.len(), 100_000);
        clock.advance(Duration::from_millis(5));
        limiter.retain_recent();
        assert_eq!(limiter.len(), 0, "every key is whole again, so none is kept");
    }
}
