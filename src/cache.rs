//! The response cache: GET answers of routes whose policy has a `cache` are kept for its
//! `ttl` and served again without calling the upstream.
//!
//! - Keyed by route, path variables, query string, the policy's `vary` headers and the host
//!   and scheme the upstream is told (`X-Forwarded-Host`/`-Proto`: an answer may be built from
//!   them), and — on a route whose policy verified a token — by the token's subject (`sub`): a
//!   private answer is never served to another user. A request carrying credentials the
//!   policy did not verify (`Authorization`, `Proxy-Authorization`, `Cookie`, or their
//!   `Grpc-Metadata-` spellings) is never answered from the cache nor stored: its answer may
//!   depend on them.
//! - Answers say what they vary on: `Vary` names the `vary` headers, and `Authorization` for a
//!   private answer, so that a browser or CDN downstream keeps them apart too.
//! - Only 200 answers are stored. `X-Cache: HIT|MISS` says which it was, `ETag` identifies the
//!   body, and `If-None-Match` with that tag is answered 304. `Cache-Control: no-cache` in the
//!   request skips the lookup (the fresh answer is stored), `no-store` skips both.
//! - Concurrent misses for one key make one upstream call; the others wait for it and share its
//!   answer (moka coalesces the inserts). Failed answers are not shared: each waiter then calls
//!   for itself.
//! - Memory is bounded by `[cache] max_bytes` (bodies and keys), least recently used first out.
//! - With `backend = "redis"` answers are also kept in Redis, under their key, for what is
//!   left of their `ttl`: a replica that misses in memory looks there before calling the
//!   upstream, so one replica's answer serves them all. Redis being slow or down never fails a
//!   request: past `redis_timeout` the lookup is a miss and the store is skipped.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, ETAG, IF_NONE_MATCH, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use moka::future::Cache;

use crate::auth::Claims;
use crate::config::CacheSettings;
use crate::metadata::Origin;
use crate::redis_connection::RedisConnection;

/// The `X-Cache` response header.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// The answers kept, shared by every request.
pub struct ResponseCache {
    entries: Cache<String, Arc<Stored>>,
    /// Where every replica's answers are kept too, with `backend = "redis"`.
    shared: Option<RedisConnection>,
}

/// The prefix of the cache's Redis keys.
const REDIS_PREFIX: &str = "protogate:cache:";

/// A policy's `cache`: how long its answers are kept, and which request headers tell them apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    /// How long an answer is served from the cache.
    pub ttl: Duration,
    /// Request headers whose values are part of the key.
    pub vary: Vec<HeaderName>,
}

/// Where an answer is kept, and whether it is one user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    text: String,
    /// Keyed by a verified subject: downstream caches are told to keep it private.
    private: bool,
}

/// One kept answer.
#[derive(Debug)]
pub struct Stored {
    private: bool,
    headers: HeaderMap,
    body: Bytes,
    etag: HeaderValue,
    stored: Instant,
    ttl: Duration,
}

/// A 200 answer whose body could not be read to be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the answer could not be read to be cached: {reason}")]
pub struct UnreadableAnswer {
    /// Why.
    pub reason: String,
}

/// How the request that filled a cache entry filled it.
enum Filled<E> {
    /// With its own call: its answer.
    Called(Result<Response<Body>, E>),
    /// From Redis.
    FromRedis,
}

/// What a request's key is made of.
#[derive(Debug, Clone)]
pub struct Lookup<'a> {
    /// The request's HTTP method.
    pub method: &'a http::Method,
    /// The route's template (with a profile's prefix), e.g. `/v1/users/{id}`.
    pub route: &'a str,
    /// The path variables' values.
    pub values: &'a [String],
    /// The query string.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The host and scheme the upstream is told.
    pub origin: Origin<'a>,
    /// The verified claims, when the policy checked a token.
    pub claims: Option<&'a Claims>,
}

/// Request headers that carry credentials, under every name that could reach an upstream.
const CREDENTIALS: [&str; 5] =
    ["authorization", "proxy-authorization", "cookie", "grpc-metadata-authorization", "grpc-metadata-cookie"];

/// How a request uses the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// Look up (and store) under this key.
    Use(Key),
    /// Skip the lookup, store the fresh answer under this key (`Cache-Control: no-cache`).
    Refresh(Key),
    /// Neither read nor store: credentials the policy did not verify, a token without a
    /// subject, or `Cache-Control: no-store`.
    Bypass,
}

impl ResponseCache {
    /// An empty cache as `[cache]` says; `rate_limit_redis` is the Redis server to share
    /// when `[cache]` names none.
    pub fn new(settings: &CacheSettings, rate_limit_redis: Option<&str>) -> ResponseCache {
        let shared = (settings.backend == "redis").then(|| {
            let url = settings.redis_url.as_deref().or(rate_limit_redis).unwrap_or("redis://127.0.0.1:6379");
            RedisConnection::new(url, settings.redis_timeout)
        });
        ResponseCache { entries: ResponseCache::memory(settings.max_bytes), shared }
    }

    fn memory(max_bytes: u64) -> Cache<String, Arc<Stored>> {
        Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, value: &Arc<Stored>| {
                let bytes = key.len() + value.body.len() + header_bytes(&value.headers) + 64;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build()
    }

    /// How `request` uses the cache under `rule`. The key holds the route, its path variable
    /// values, the query, the `vary` headers, the origin and the verified subject.
    pub fn lookup(rule: &CacheRule, request: &Lookup<'_>) -> CacheUse {
        let headers = request.headers;
        let directives = request_directives(headers);
        if directives.no_store {
            return CacheUse::Bypass;
        }
        let subject = match request.claims {
            Some(claims) => match claims.text("sub") {
                Some(subject) => subject,
                None => return CacheUse::Bypass,
            },
            None if CREDENTIALS.iter().any(|name| headers.contains_key(*name)) => return CacheUse::Bypass,
            None => String::new(),
        };
        // Every part is length-prefixed: path values are decoded and may hold any character,
        // so no separator could keep `/a%1Fb/c` and `/a/b%1Fc` apart.
        let mut key = String::new();
        let mut part = |text: &str| {
            key.push_str(&format!("{}:", text.len()));
            key.push_str(text);
            key.push('|');
        };
        part(request.method.as_str());
        part(request.route);
        request.values.iter().for_each(|value| part(value));
        part(request.query.unwrap_or(""));
        for name in &rule.vary {
            let values: Vec<&[u8]> = headers.get_all(name).iter().map(HeaderValue::as_bytes).collect();
            part(&String::from_utf8_lossy(&values.join(&b","[..])));
        }
        part(&String::from_utf8_lossy(request.origin.host.map_or(&b""[..], HeaderValue::as_bytes)));
        part(&String::from_utf8_lossy(request.origin.proto.as_bytes()));
        part(&subject);
        let key = Key { text: key, private: !subject.is_empty() };
        if directives.no_cache { CacheUse::Refresh(key) } else { CacheUse::Use(key) }
    }

    /// The answer for `key`: from the cache, or from `fetch` (stored when it is a 200). Of
    /// concurrent misses for one key, one runs its `fetch`; the others share its answer.
    pub async fn serve<F, Fut, E>(
        &self,
        lookup: CacheUse,
        rule: &CacheRule,
        request: &HeaderMap,
        fetch: F,
    ) -> Result<Response<Body>, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Response<Body>, E>>,
        E: From<UnreadableAnswer>,
    {
        // Every way to the upstream (or Redis) is boxed where it is taken: a hit, the common
        // case, then never carries (nor copies) the futures of a call it does not make.
        let key = match lookup {
            CacheUse::Bypass => return Box::pin(fetch()).await,
            CacheUse::Refresh(key) => return Box::pin(self.refresh(key, rule, request, fetch)).await,
            CacheUse::Use(key) => key,
        };
        if let Some(stored) = self.entries.get(&key.text).await {
            return Ok(respond(&stored, "HIT", request));
        }
        Box::pin(self.fill(key, rule, request, fetch)).await
    }

    /// A `Cache-Control: no-cache` request: a call of its own, whose answer (a 200) replaces
    /// what was kept.
    async fn refresh<F, Fut, E>(
        &self,
        key: Key,
        rule: &CacheRule,
        request: &HeaderMap,
        fetch: F,
    ) -> Result<Response<Body>, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Response<Body>, E>>,
        E: From<UnreadableAnswer>,
    {
        let response = fetch().await?;
        let (response, stored) = store(response, rule, key.private).await?;
        if let Some(stored) = stored {
            self.save_shared(&key.text, &stored).await;
            self.entries.insert(key.text, stored.clone()).await;
            return Ok(respond(&stored, "MISS", request));
        }
        Ok(response)
    }

    /// A miss here: the entry filled from Redis or by a call. Of concurrent misses for one
    /// key, one fills it; the others share its answer.
    async fn fill<F, Fut, E>(
        &self,
        key: Key,
        rule: &CacheRule,
        request: &HeaderMap,
        fetch: F,
    ) -> Result<Response<Body>, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Response<Body>, E>>,
        E: From<UnreadableAnswer>,
    {
        // The one request that fills the entry says here how it did: with its own call (its
        // answer, shared or not), or from Redis.
        let own: Mutex<Option<Filled<E>>> = Mutex::new(None);
        let shared = self
            .entries
            .optionally_get_with(key.text.clone(), async {
                if let Some(stored) = self.load_shared(&key.text).await {
                    if let Ok(mut own) = own.lock() {
                        *own = Some(Filled::FromRedis);
                    }
                    return Some(stored);
                }
                let result = match fetch().await {
                    Ok(response) => store(response, rule, key.private).await.map_err(E::from),
                    Err(error) => Err(error),
                };
                let (mine, stored) = match result {
                    Ok((response, stored)) => (Ok(response), stored),
                    Err(error) => (Err(error), None),
                };
                if let Some(stored) = &stored {
                    self.save_shared(&key.text, stored).await;
                }
                if let Ok(mut own) = own.lock() {
                    *own = Some(Filled::Called(mine));
                }
                stored
            })
            .await;
        let mine = own.lock().ok().and_then(|mut own| own.take());
        match (shared, mine) {
            // This request made the call and its answer was stored.
            (Some(stored), Some(Filled::Called(_))) => Ok(respond(&stored, "MISS", request)),
            (Some(stored), _) => Ok(respond(&stored, "HIT", request)),
            // This request made the call and its answer is not for sharing.
            (None, Some(Filled::Called(mine))) => mine,
            // The call this request waited for gave nothing to share (an error, not a 200):
            // it makes its own rather than answer with another request's failure.
            (None, _) => Box::pin(fetch()).await,
        }
    }

    /// The answer another replica (or this one) kept in Redis, aged by the time it has
    /// been there; `None` on a miss, and when Redis does not answer in time.
    async fn load_shared(&self, key: &str) -> Option<Arc<Stored>> {
        let redis = self.shared.as_ref()?;
        let mut connection = redis.get().await.map_err(|e| tracing::debug!("cache: Redis: {e}")).ok()?;
        let mut pipe = redis::pipe();
        pipe.get(format!("{REDIS_PREFIX}{key}")).pttl(format!("{REDIS_PREFIX}{key}"));
        let reply: (Option<Vec<u8>>, i64) =
            match tokio::time::timeout(redis.timeout, pipe.query_async(&mut connection)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    tracing::debug!("cache: Redis lookup failed: {e}");
                    return None;
                }
                Err(_) => {
                    tracing::debug!("cache: Redis lookup took longer than {:?}", redis.timeout);
                    return None;
                }
            };
        let (Some(bytes), left) = reply else { return None };
        let left = Duration::from_millis(u64::try_from(left).ok().filter(|&ms| ms > 0)?);
        Stored::decode(&bytes, left).map(Arc::new)
    }

    /// Keeps `stored` in Redis for what is left of its ttl; a failure is only logged.
    async fn save_shared(&self, key: &str, stored: &Stored) {
        let Some(redis) = &self.shared else { return };
        let left = stored.ttl.saturating_sub(stored.stored.elapsed());
        let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return;
        }
        let mut command = redis::cmd("SET");
        command.arg(format!("{REDIS_PREFIX}{key}")).arg(stored.encode()).arg("PX").arg(millis);
        if let Err(e) = redis.run::<()>(&command).await {
            tracing::debug!("cache: Redis store failed: {e}");
        }
    }

    /// Answers kept now (approximately: expiry is lazy).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("entries", &self.entries.entry_count()).finish()
    }
}

impl Stored {
    /// The Redis value: the length of a JSON header (headers, ETag, private, ttl) as four
    /// bytes, the header, then the body.
    fn encode(&self) -> Vec<u8> {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
        let meta = serde_json::json!({
            "headers": headers,
            "etag": self.etag.to_str().unwrap_or_default(),
            "private": self.private,
            "ttl_ms": u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX),
        });
        let meta = meta.to_string();
        let mut out = Vec::with_capacity(4 + meta.len() + self.body.len());
        out.extend_from_slice(&u32::try_from(meta.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(meta.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// A value [`Stored::encode`] wrote, with `left` of its ttl to go; `None` if it is not one.
    fn decode(bytes: &[u8], left: Duration) -> Option<Stored> {
        let length = usize::try_from(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?)).ok()?;
        let meta: serde_json::Value = serde_json::from_slice(bytes.get(4..4 + length)?).ok()?;
        let body = Bytes::copy_from_slice(bytes.get(4 + length..)?);
        let mut headers = HeaderMap::new();
        for pair in meta["headers"].as_array()? {
            let name = HeaderName::from_bytes(pair.get(0)?.as_str()?.as_bytes()).ok()?;
            headers.append(name, HeaderValue::from_str(pair.get(1)?.as_str()?).ok()?);
        }
        let ttl = Duration::from_millis(meta["ttl_ms"].as_u64()?);
        let stored = Instant::now().checked_sub(ttl.saturating_sub(left)).unwrap_or_else(Instant::now);
        Some(Stored {
            private: meta["private"].as_bool()?,
            headers,
            body,
            etag: HeaderValue::from_str(meta["etag"].as_str()?).ok()?,
            stored,
            ttl,
        })
    }
}

/// A 200 answer, read whole and kept; any other answer given back untouched.
async fn store(
    response: Response<Body>,
    rule: &CacheRule,
    private: bool,
) -> Result<(Response<Body>, Option<Arc<Stored>>), UnreadableAnswer> {
    if response.status() != StatusCode::OK {
        return Ok((response, None));
    }
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| UnreadableAnswer { reason: e.to_string() })?.to_bytes();
    let etag = etag(&body);
    let mut headers = parts.headers;
    headers.insert(ETAG, etag.clone());
    if let Some(vary) = vary(rule, private) {
        headers.insert(VARY, vary);
    }
    let stored = Arc::new(Stored { private, headers, body, etag, stored: Instant::now(), ttl: rule.ttl });
    let response = Response::from_parts(parts_from(&stored), Body::from(stored.body.clone()));
    Ok((response, Some(stored)))
}

fn parts_from(stored: &Stored) -> http::response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.headers = stored.headers.clone();
    parts
}

/// The response from a kept answer: 304 when the client holds it already.
fn respond(stored: &Stored, outcome: &'static str, request: &HeaderMap) -> Response<Body> {
    let not_modified = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == stored.etag.as_bytes());
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().insert(ETAG, stored.etag.clone());
        if let Some(vary) = stored.headers.get(VARY) {
            response.headers_mut().insert(VARY, vary.clone());
        }
        response
    } else {
        let mut response = Response::new(Body::from(stored.body.clone()));
        *response.headers_mut() = stored.headers.clone();
        response
    };
    let headers = response.headers_mut();
    headers.insert(X_CACHE, HeaderValue::from_static(outcome));
    let age = stored.stored.elapsed().as_secs();
    headers.insert(http::header::AGE, HeaderValue::from(age));
    // Whole seconds left, rounded up: a fresh answer says its whole ttl.
    let left = stored.ttl.saturating_sub(stored.stored.elapsed()).as_millis().div_ceil(1000);
    let scope = if stored.private { "private, " } else { "" };
    if let Ok(value) = HeaderValue::from_str(&format!("{scope}max-age={left}")) {
        headers.insert(CACHE_CONTROL, value);
    }
    response
}

/// What an answer kept under `rule` varies on, for caches downstream: the `vary` headers, and
/// the credentials of a private answer.
fn vary(rule: &CacheRule, private: bool) -> Option<HeaderValue> {
    let names = rule.vary.iter().map(HeaderName::as_str).chain(private.then_some(AUTHORIZATION.as_str()));
    let list = names.collect::<Vec<_>>().join(", ");
    HeaderValue::from_str(&list).ok().filter(|v| !v.is_empty())
}

/// A strong validator for the body: its 64-bit hash.
fn etag(body: &[u8]) -> HeaderValue {
    let mut hasher = std::hash::DefaultHasher::new();
    body.hash(&mut hasher);
    HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish())).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum()
}

#[derive(Debug, Default)]
struct Directives {
    no_cache: bool,
    no_store: bool,
}

/// `no-cache` and `no-store` in the request's `Cache-Control` (or `Pragma: no-cache`).
fn request_directives(headers: &HeaderMap) -> Directives {
    let mut directives = Directives::default();
    let values = headers.get_all(CACHE_CONTROL).iter().chain(headers.get_all(http::header::PRAGMA).iter());
    for directive in values.filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')) {
        match directive.trim().to_ascii_lowercase().as_str() {
            "no-cache" | "max-age=0" => directives.no_cache = true,
            "no-store" => directives.no_store = true,
            _ => {}
        }
    }
    directives
}

/// Each answer expires after its own policy's `ttl`.
struct PerEntryTtl;

impl moka::Expiry<String, Arc<Stored>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Arc<Stored>, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(values: &'a [String], query: Option<&'a str>, headers: &'a HeaderMap) -> Lookup<'a> {
        Lookup {
            method: &http::Method::GET,
            route: "/v1/a/{b}",
            values,
            query,
            headers,
            origin: Origin::of(headers, crate::metadata::Peer::default()),
            claims: None,
        }
    }

    fn key_of(values: &[&str], query: Option<&str>) -> CacheUse {
        let rule = CacheRule { ttl: Duration::from_secs(1), vary: vec![HeaderName::from_static("accept-language")] };
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        ResponseCache::lookup(&rule, &request(&values, query, &HeaderMap::new()))
    }

    #[test]
    fn a_stored_answer_survives_redis_with_its_age() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.append("grpc-metadata-x", HeaderValue::from_static("1"));
        headers.append("grpc-metadata-x", HeaderValue::from_static("2"));
        let stored = Stored {
            private: true,
            headers,
            body: Bytes::from_static(b"{\"a\":1}"),
            etag: HeaderValue::from_static("\"abc\""),
            stored: Instant::now(),
            ttl: Duration::from_secs(30),
        };
        let back = Stored::decode(&stored.encode(), Duration::from_secs(20)).unwrap();
        assert_eq!((back.private, &back.body, &back.etag, back.ttl), (true, &stored.body, &stored.etag, stored.ttl));
        assert_eq!(back.headers, stored.headers);
        assert!(back.stored.elapsed() >= Duration::from_secs(10), "aged by the time it spent in Redis");
        assert!(Stored::decode(b"\x00\x00\x00\x09{}", Duration::from_secs(1)).is_none());
        assert!(Stored::decode(b"", Duration::from_secs(1)).is_none());
    }

    #[test]
    fn crafted_path_values_never_share_a_key() {
        assert_ne!(key_of(&["a\u{1e}b", "c"], None), key_of(&["a", "b\u{1e}c"], None));
        assert_ne!(key_of(&["a|1:b"], None), key_of(&["a", "b"], None));
        assert_ne!(key_of(&["a=1"], None), key_of(&["a"], Some("=1")));
        assert_eq!(key_of(&["a"], Some("x=1")), key_of(&["a"], Some("x=1")));
    }

    #[test]
    fn credentials_the_policy_did_not_check_and_no_store_bypass() {
        let rule = CacheRule { ttl: Duration::from_secs(1), vary: Vec::new() };
        for name in CREDENTIALS {
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static("secret"));
            assert_eq!(ResponseCache::lookup(&rule, &request(&[], None, &headers)), CacheUse::Bypass, "{name}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60, no-store"));
        assert_eq!(ResponseCache::lookup(&rule, &request(&[], None, &headers)), CacheUse::Bypass);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert!(matches!(ResponseCache::lookup(&rule, &request(&[], None, &headers)), CacheUse::Refresh(_)));
    }

    #[test]
    fn the_host_the_upstream_is_told_is_part_of_the_key() {
        let rule = CacheRule { ttl: Duration::from_secs(1), vary: Vec::new() };
        let host = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::HOST, HeaderValue::from_static(value));
            headers
        };
        let (a, b) = (host("api.example.com"), host("evil.example"));
        assert_ne!(
            ResponseCache::lookup(&rule, &request(&[], None, &a)),
            ResponseCache::lookup(&rule, &request(&[], None, &b))
        );
        let mut forwarded = host("api.example.com");
        forwarded.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        assert_eq!(
            ResponseCache::lookup(&rule, &request(&[], None, &a)),
            ResponseCache::lookup(&rule, &request(&[], None, &forwarded)),
            "an untrusted client's X-Forwarded-Host is not what the upstream hears"
        );
    }

    #[test]
    fn answers_name_what_they_vary_on() {
        let rule = CacheRule { ttl: Duration::from_secs(1), vary: vec![HeaderName::from_static("accept-language")] };
        assert_eq!(vary(&rule, false).unwrap(), "accept-language");
        assert_eq!(vary(&rule, true).unwrap(), "accept-language, authorization");
        assert_eq!(vary(&CacheRule { ttl: Duration::from_secs(1), vary: Vec::new() }, false), None);
    }
}
