//! Policies: which requests need what. A policy protects *methods*: whichever door a request
//! uses to reach a gRPC method, it is held to the policies of that method's routes.
//!
//! - A request on one of a method's annotated routes is held to the first `[[policy]]` whose
//!   `match` fits it: the route's HTTP method, the request path percent-decoded and compared
//!   segment by segment (as routing reads it), the gRPC method.
//! - A request that reaches a method any other way (`POST /pkg.Service/Method`, Connect, gRPC,
//!   gRPC-Web, a composite route's call, a profile) is held to every policy that could be the
//!   first to fit a request on *any* of the method's routes, its `POST /pkg.Service/Method`
//!   route included ([`Policies::method_guards`]); a profile's or composite route's own path
//!   adds the first policy that fits it. Each of them must admit the request.
//!
//! A policy's `auth`, `scopes` and `claims` decide whether the request may go on, its rate
//! limits count it, its `timeout` bounds the upstream call and its `cache` keeps GET answers.
//! When several hold a request, the first in config order gives the timeout and the cache. A
//! request no policy fits needs nothing.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, Method};
use smallvec::SmallVec;

use crate::auth::{AuthError, Claims, QueryToken, TokenPlaces, Verifier};
use crate::cache::CacheRule;
use crate::config::{AuthRequirement, PolicyConfig, RateLimitConfig, RateLimitSettings, ServiceSelector};
use crate::error::{GatewayError, RefusalKind, Refused};
use crate::rate_limit::{Limiter, Refusal, Standing, Subject, whole_seconds};
use crate::route::template::Segment;
use crate::route::{PathTemplate, Route};

/// The policies, in configuration order, and the verifier they need.
#[derive(Debug)]
pub struct Policies {
    policies: Vec<Policy>,
    verifier: Option<Verifier>,
    limiter: Limiter,
}

/// One policy, ready to match.
#[derive(Debug)]
pub struct Policy {
    /// Its name.
    pub name: String,
    path_prefix: Option<Prefix>,
    methods: Vec<Method>,
    grpc: Vec<GrpcSelector>,
    auth: AuthRequirement,
    scopes: Vec<String>,
    claims: Vec<(String, String)>,
    /// Where besides `Authorization` its token may be.
    token_places: TokenPlaces,
    /// The upstream deadline for these requests.
    pub timeout: Option<Duration>,
    /// How their GET answers are cached, if they are.
    pub cache: Option<CacheRule>,
}

#[derive(Debug)]
enum GrpcSelector {
    Service(ServiceSelector),
    Method(String),
}

/// A `path_prefix`, split into percent-decoded segments: `/v1/users/%61dmin` and
/// `/v1/users/admin` are the same prefix, as they are the same route to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix(Vec<String>);

/// How many of the paths a template matches lie under a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    None,
    Some,
    All,
}

/// The policies a request is held to, as indexes in configuration order.
pub type Guard = SmallVec<[usize; 4]>;

/// What a request may do: the policy that applied and the claims of its verified token.
#[derive(Debug, Default)]
pub struct Access<'p> {
    /// The first (in config order) of the policies that held the request, if any did.
    pub policy: Option<&'p Policy>,
    /// The verified token's claims, when a policy required one.
    pub claims: Option<Claims>,
    /// Where the request stands with each rate limit it passed.
    pub quotas: Vec<Standing>,
}

/// What the policies ask of the requests on a route, for its documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthNeed {
    /// The scopes required (of every policy that may hold a request there).
    pub scopes: Vec<String>,
    /// Whether every request there needs a token (else only those some policies hold).
    pub always: bool,
    /// Where besides `Authorization` a token may be carried.
    pub places: TokenPlaces,
}

/// What a policy decision looks at besides which policies apply.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The HTTP method of the route the request arrived on.
    pub http_method: &'a Method,
    /// That route's path template (the `route` rate-limit key).
    pub template: &'a PathTemplate,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The `access_token` the request's query held, if a policy reads it there.
    pub query_token: Option<&'a QueryToken>,
    /// The client's address (see [`crate::metadata::forwarded`]).
    pub client: Option<IpAddr>,
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No valid token where one is required: 401.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// A valid token without what the policy asks for: 403.
    #[error("the token lacks {}", missing.join(", "))]
    Forbidden {
        /// The policy.
        policy: String,
        /// The scopes and claims missing (`scope orders.read`, `claim tenant=acme`).
        missing: Vec<String>,
        /// The scopes the policy requires, for `WWW-Authenticate`.
        scopes: Vec<String>,
    },
    /// Over a rate limit (429), or its counters unreachable and the policy to refuse (503).
    #[error(transparent)]
    RateLimited(#[from] Refusal),
}

/// The rate limit headers (draft-ietf-httpapi-ratelimit-headers): the policies, and where the
/// client stands with each.
pub const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// See [`RATELIMIT_POLICY`].
pub const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// `RateLimit-Policy: "orders.ip";q=100;w=60` and `RateLimit: "orders.ip";r=42;t=35` for the
/// limits a request passed.
pub fn quota_headers(standings: &[Standing]) -> HeaderMap {
    let policies: Vec<&str> = standings.iter().map(|s| s.label.policy.as_str()).collect();
    let states: Vec<String> =
        standings.iter().map(|s| format!("{};r={};t={}", s.label.name, s.remaining, whole_seconds(&s.reset))).collect();
    rate_limit_headers(&policies.join(", "), &states.join(", "))
}

fn rate_limit_headers(policy: &str, state: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let (Ok(policy), Ok(state)) = (http::HeaderValue::from_str(policy), http::HeaderValue::from_str(state)) {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
    headers
}

impl From<Denied> for GatewayError {
    fn from(denied: Denied) -> GatewayError {
        let kind = match &denied {
            Denied::Unauthenticated(AuthError::Missing) => RefusalKind::MissingToken,
            Denied::Unauthenticated(_) => RefusalKind::InvalidToken,
            Denied::Forbidden { .. } => RefusalKind::Forbidden,
            Denied::RateLimited(Refusal::Limited { .. }) => RefusalKind::RateLimited,
            Denied::RateLimited(Refusal::BackendUnavailable { .. }) => RefusalKind::RateLimitUnavailable,
        };
        GatewayError::Refused(Box::new(Refused { kind, message: denied.to_string(), headers: denied.headers() }))
    }
}

impl Denied {
    /// What the client is told to do next: authenticate (`WWW-Authenticate`), or wait
    /// (`Retry-After`, `RateLimit-*`).
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        match self {
            Denied::RateLimited(Refusal::Limited { label, retry_after, .. }) => {
                let wait = whole_seconds(retry_after).max(1);
                headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(wait));
                let state = format!("{};r=0;t={wait}", label.name);
                headers.extend(rate_limit_headers(&label.policy, &state));
            }
            Denied::RateLimited(Refusal::BackendUnavailable { .. }) => {}
            Denied::Unauthenticated(_) | Denied::Forbidden { .. } => {
                if let Ok(value) = http::HeaderValue::from_str(&self.www_authenticate()) {
                    headers.insert(http::header::WWW_AUTHENTICATE, value);
                }
            }
        }
        headers
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3): no error code when no token was sent,
    /// `invalid_token` for a bad one, `insufficient_scope` with the scopes needed.
    fn www_authenticate(&self) -> String {
        // Quoted-string values: keep them free of quotes and backslashes.
        let quoted = |text: &str| text.replace(['"', '\\'], "'");
        match self {
            Denied::Unauthenticated(AuthError::Missing) => "Bearer realm=\"protogate\"".into(),
            Denied::Unauthenticated(error) => format!(
                "Bearer realm=\"protogate\", error=\"invalid_token\", error_description=\"{}\"",
                quoted(&error.to_string())
            ),
            Denied::Forbidden { scopes, .. } => {
                format!(
                    "Bearer realm=\"protogate\", error=\"insufficient_scope\", scope=\"{}\"",
                    quoted(&scopes.join(" "))
                )
            }
            Denied::RateLimited(_) => String::new(),
        }
    }
}

impl Policies {
    /// The policies of the configuration (already validated) with their verifier and rate
    /// limits. Must run inside a tokio runtime (the in-memory limits sweep idle keys on it).
    pub fn new(configs: &[PolicyConfig], verifier: Option<Verifier>, settings: &RateLimitSettings) -> Policies {
        let limits: Vec<(&str, &[RateLimitConfig])> =
            configs.iter().map(|c| (c.name.as_str(), c.rate_limits.as_slice())).collect();
        let limiter = Limiter::new(&limits, settings);
        Policies { policies: configs.iter().map(Policy::new).collect(), verifier, limiter }
    }

    /// Whether a policy takes tokens from the `access_token` query parameter: then the
    /// parameter is the gateway's, taken out of every request's query before routing
    /// ([`crate::auth::take_query_token`]).
    pub fn reads_query_tokens(&self) -> bool {
        self.policies.iter().any(|p| p.token_places.query)
    }

    /// The rate limits.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The verifier, if `[jwt]` is configured.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// The first policy that fits a request on a route of `http_method` for `grpc_method`
    /// (`pkg.Service/Method`) at `path` (the raw request path: it is percent-decoded here).
    pub fn first_fit(&self, http_method: &Method, path: &str, grpc_method: &str) -> Option<usize> {
        self.policies.iter().position(|p| p.fits(http_method, path, grpc_method))
    }

    /// The policies that could be the first to fit some request on `route`: those whose
    /// `match` fits some path the route's template matches, up to the first one that fits
    /// every such path.
    fn reaching<'a>(&'a self, route: &'a Route) -> impl Iterator<Item = usize> + 'a {
        let grpc_method = route.grpc_path.path().trim_start_matches('/');
        let mut shadowed = false;
        self.policies.iter().enumerate().filter_map(move |(index, policy)| {
            if shadowed {
                return None;
            }
            let reach = policy.reach(&route.http_method, &route.template, grpc_method);
            shadowed = reach == Reach::All;
            (reach != Reach::None).then_some(index)
        })
    }

    /// What requests on `route` (one of `routes`) must authenticate with, `None` when no
    /// policy that may hold them requires a token. An annotated route is held by the first
    /// policy that fits each path; `POST /pkg.Service/Method` by every policy of the method.
    pub fn auth_need(&self, routes: &[Route], route: &Route) -> Option<AuthNeed> {
        let holding: Vec<usize> = match route.origin {
            crate::route::RouteOrigin::Annotation => self.reaching(route).collect(),
            crate::route::RouteOrigin::Default => {
                let method = route.grpc_path.path();
                let same: Vec<&Route> = routes.iter().filter(|r| r.grpc_path.path() == method).collect();
                let mut all: Vec<usize> = same.into_iter().flat_map(|r| self.reaching(r)).collect();
                all.sort_unstable();
                all.dedup();
                all
            }
        };
        let requiring: Vec<&Policy> = holding
            .iter()
            .filter_map(|&i| self.policies.get(i))
            .filter(|p| p.auth == AuthRequirement::Required)
            .collect();
        let first = requiring.first()?;
        let mut scopes: Vec<String> = requiring.iter().flat_map(|p| p.scopes.iter().cloned()).collect();
        scopes.sort();
        scopes.dedup();
        let places = requiring.iter().skip(1).fold(first.token_places.clone(), |all, p| all.narrowed(&p.token_places));
        let always = match route.origin {
            crate::route::RouteOrigin::Default => true,
            crate::route::RouteOrigin::Annotation => requiring.len() == holding.len(),
        };
        Some(AuthNeed { scopes, always, places })
    }

    /// The OpenAPI security schemes the policies use: the bearer JWT, and the query and
    /// cookie places some policy reads it from.
    pub fn security_schemes(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut schemes = serde_json::Map::new();
        if self.policies.iter().any(|p| p.auth == AuthRequirement::Required) {
            schemes.insert(
                "bearer".into(),
                serde_json::json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }),
            );
        }
        if self.reads_query_tokens() {
            let scheme =
                serde_json::json!({ "type": "apiKey", "in": "query", "name": crate::auth::token::QUERY_PARAMETER });
            schemes.insert("access_token_query".into(), scheme);
        }
        if let Some(cookie) = self.policies.iter().find_map(|p| p.token_places.cookie.as_ref()) {
            schemes.insert(
                "access_token_cookie".into(),
                serde_json::json!({ "type": "apiKey", "in": "cookie", "name": cookie }),
            );
        }
        schemes
    }

    /// For each route (by index), the policies a request that reaches its method through
    /// another door is held to: every policy that could be first on any route of the method.
    pub fn method_guards(&self, routes: &[Route]) -> Vec<Guard> {
        let mut by_method: rustc_hash::FxHashMap<&str, Guard> = Default::default();
        for route in routes {
            let guard = by_method.entry(route.grpc_path.path()).or_default();
            guard.extend(self.reaching(route));
            guard.sort_unstable();
            guard.dedup();
        }
        routes.iter().map(|route| by_method.get(route.grpc_path.path()).cloned().unwrap_or_default()).collect()
    }

    /// Decides whether a request held to `guard` may go on: its token verified once if any of
    /// the policies requires one, each policy's scopes and claims checked, then each one's
    /// rate limits counted (only once every policy has let it through).
    pub async fn admit(&self, guard: &[usize], request: &Request<'_>) -> Result<Access<'_>, Denied> {
        let policies = guard.iter().filter_map(|&i| self.policies.get(i).map(|p| (i, p)));
        let mut required = policies.clone().filter(|(_, p)| p.auth == AuthRequirement::Required);
        // Borrowed for one policy (the common case), narrowed into a copy for several.
        let places = required.next().map(|(_, first)| {
            required.fold(std::borrow::Cow::Borrowed(&first.token_places), |places, (_, p)| {
                std::borrow::Cow::Owned(places.narrowed(&p.token_places))
            })
        });
        let claims = match &places {
            Some(places) => {
                let verifier = self
                    .verifier
                    .as_ref()
                    .ok_or_else(|| AuthError::Invalid { reason: "no keys are configured to verify it".into() })?;
                Some(verifier.verify_request(request.headers, request.query_token, places).await?)
            }
            None => None,
        };
        for (_, policy) in policies.clone().filter(|(_, p)| p.auth == AuthRequirement::Required) {
            if let Some(claims) = &claims {
                policy.authorize(claims)?;
            }
        }
        let Request { http_method, template, headers, client, .. } = *request;
        let subject = Subject { client, headers, claims: claims.as_ref(), http_method, template };
        let mut quotas = Vec::new();
        for (index, _) in policies.clone() {
            quotas.extend(self.limiter.check(index, &subject).await?);
        }
        Ok(Access { policy: policies.map(|(_, p)| p).next(), claims, quotas })
    }

    /// What in the policies selects nothing that is loaded: a `grpc` selector no method fits,
    /// a `path_prefix` no route can reach (`routes`: the methods' routes; `others`: composite
    /// and profile routes, as HTTP method and full template).
    pub fn unmatched(&self, routes: &[Route], others: &[(Method, PathTemplate)]) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, policy) in self.policies.iter().enumerate() {
            for (j, selector) in policy.grpc.iter().enumerate() {
                let selects = |route: &Route| selector.fits(route.grpc_path.path().trim_start_matches('/'));
                if !routes.iter().any(selects) {
                    warnings.push(format!(
                        "policy[{i}].match.grpc[{j}] ({:?}): {selector} selects no loaded method",
                        policy.name
                    ));
                }
            }
            if let Some(prefix) = &policy.path_prefix {
                let reaches = |template: &PathTemplate| prefix.reach(template) != Reach::None;
                if !routes.iter().any(|r| reaches(&r.template)) && !others.iter().any(|(_, t)| reaches(t)) {
                    warnings.push(format!(
                        "policy[{i}].match.path_prefix ({:?}): no route is at or below {prefix}",
                        policy.name
                    ));
                }
            }
        }
        warnings
    }
}

impl Policy {
    fn new(config: &PolicyConfig) -> Policy {
        let grpc = config
            .matches
            .grpc
            .iter()
            .filter_map(|s| match s.split_once('/') {
                Some(_) => Some(GrpcSelector::Method(s.clone())),
                None => s.parse().ok().map(GrpcSelector::Service),
            })
            .collect();
        Policy {
            name: config.name.clone(),
            path_prefix: config.matches.path_prefix.as_deref().map(Prefix::parse),
            methods: config.matches.methods.iter().filter_map(|m| parse_method(m).ok()).collect(),
            grpc,
            auth: config.auth,
            scopes: config.scopes.clone(),
            claims: config.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            token_places: TokenPlaces { cookie: config.token_cookie.clone(), query: config.token_query },
            timeout: config.timeout,
            cache: config.cache.as_ref().map(|c| CacheRule {
                ttl: c.ttl,
                vary: c.vary.iter().filter_map(|v| http::HeaderName::from_bytes(v.as_bytes()).ok()).collect(),
            }),
        }
    }

    /// Whether the conditions other than the path hold.
    fn fits_method(&self, http_method: &Method, grpc_method: &str) -> bool {
        let method_fits = self.methods.is_empty() || self.methods.contains(http_method);
        method_fits && (self.grpc.is_empty() || self.grpc.iter().any(|g| g.fits(grpc_method)))
    }

    fn fits(&self, http_method: &Method, path: &str, grpc_method: &str) -> bool {
        self.fits_method(http_method, grpc_method) && self.path_prefix.as_ref().is_none_or(|p| p.covers(path))
    }

    /// How many requests on a route of `template` this policy fits.
    fn reach(&self, http_method: &Method, template: &PathTemplate, grpc_method: &str) -> Reach {
        if !self.fits_method(http_method, grpc_method) {
            return Reach::None;
        }
        self.path_prefix.as_ref().map_or(Reach::All, |prefix| prefix.reach(template))
    }

    fn authorize(&self, claims: &Claims) -> Result<(), Denied> {
        let granted = claims.scopes();
        let mut missing: Vec<String> =
            self.scopes.iter().filter(|s| !granted.contains(s.as_str())).map(|s| format!("scope {s}")).collect();
        missing.extend(self.claims.iter().filter(|(k, v)| !claims.has(k, v)).map(|(k, v)| format!("claim {k}={v}")));
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Denied::Forbidden { policy: self.name.clone(), missing, scopes: self.scopes.clone() })
        }
    }
}

// === impl GrpcSelector ===

impl GrpcSelector {
    fn fits(&self, grpc_method: &str) -> bool {
        match self {
            GrpcSelector::Service(selector) => {
                selector.matches(grpc_method.split_once('/').map_or(grpc_method, |(service, _)| service))
            }
            GrpcSelector::Method(full) => full == grpc_method,
        }
    }
}

impl std::fmt::Display for GrpcSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrpcSelector::Service(selector) => write!(f, "\"{selector}\""),
            GrpcSelector::Method(full) => write!(f, "{full:?}"),
        }
    }
}

// === impl Prefix ===

impl Prefix {
    fn parse(prefix: &str) -> Prefix {
        let segments = prefix.trim_matches('/').split('/').filter(|s| !s.is_empty());
        Prefix(segments.map(|s| decode(s).into_owned()).collect())
    }

    /// Whether `path` (raw, as requested) is this prefix or below it, segment by segment once
    /// percent-decoded: `/v1/orders` covers `/v1/orders/7`, `/v1/%6Frders/7` and
    /// `/v1/orders:cancel`, not `/v1/ordersx`.
    fn covers(&self, path: &str) -> bool {
        let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
        for (i, wanted) in self.0.iter().enumerate() {
            let Some(segment) = segments.next() else { return false };
            let segment = decode(segment);
            let last = i + 1 == self.0.len() && segments.clone().next().is_none();
            if segment != *wanted && !(last && is_verb_of(&segment, wanted)) {
                return false;
            }
        }
        true
    }

    /// How many of the paths `template` matches this prefix covers.
    fn reach(&self, template: &PathTemplate) -> Reach {
        let segments = template.segments();
        let mut reach = Reach::All;
        for (i, wanted) in self.0.iter().enumerate() {
            let last_of_template = i + 1 == segments.len();
            match segments.get(i) {
                None => return Reach::None,
                Some(Segment::DeepWildcard) => return Reach::Some,
                Some(Segment::Wildcard) => reach = Reach::Some,
                Some(Segment::Literal(text)) => {
                    let text = decode(text);
                    let with_verb = match template.verb() {
                        Some(verb) if last_of_template => Cow::Owned(format!("{text}:{verb}")),
                        _ => text,
                    };
                    let prefix_ends = i + 1 == self.0.len();
                    let matches =
                        with_verb == *wanted || (prefix_ends && last_of_template && is_verb_of(&with_verb, wanted));
                    if !matches {
                        return Reach::None;
                    }
                }
            }
        }
        reach
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.0.join("/"))
    }
}

/// `orders:cancel` is `orders` with a custom verb.
fn is_verb_of(segment: &str, stem: &str) -> bool {
    segment.strip_prefix(stem).is_some_and(|rest| rest.starts_with(':'))
}

/// A path segment percent-decoded; invalid UTF-8 stays as sent (it matches no prefix).
fn decode(segment: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(segment).decode_utf8().unwrap_or(Cow::Borrowed(segment))
}

/// An HTTP method named in a policy, whatever its case (`get` is `GET`).
fn parse_method(method: &str) -> Result<Method, http::method::InvalidMethod> {
    Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
}

/// Every problem in a policy that `Config::validate` does not see, as (key, message).
pub fn validate(config: &PolicyConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if config.name.trim().is_empty() {
        errors.push(("name".into(), "must not be empty".into()));
    }
    if let Some(prefix) = &config.matches.path_prefix {
        if !prefix.starts_with('/') {
            errors.push(("match.path_prefix".into(), format!("{prefix:?} must start with /")));
        } else if prefix.split('/').any(|s| s == "." || s == "..") {
            errors.push((
                "match.path_prefix".into(),
                format!("{prefix:?} has a '.' or '..' segment, which no request path routes through"),
            ));
        }
    }
    for (i, method) in config.matches.methods.iter().enumerate() {
        if parse_method(method).is_err() || method.trim().is_empty() {
            errors.push((format!("match.methods[{i}]"), format!("{method:?} is not an HTTP method")));
        }
    }
    for (i, selector) in config.matches.grpc.iter().enumerate() {
        let valid = match selector.split_once('/') {
            Some((service, method)) => !service.is_empty() && !method.is_empty() && !method.contains('/'),
            None => selector.parse::<ServiceSelector>().is_ok(),
        };
        if !valid {
            let message = format!("{selector:?} is not \"pkg.Service\", \"pkg.*\", \"*\" or \"pkg.Service/Method\"");
            errors.push((format!("match.grpc[{i}]"), message));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    #[test]
    fn rate_limit_headers_follow_the_draft() {
        let standing = |name: &str| Standing {
            label: std::sync::Arc::new(crate::rate_limit::Label::new(name, 100, Duration::from_secs(60))),
            remaining: 42,
            reset: Duration::from_millis(34_500),
        };
        let headers = quota_headers(&[standing("orders \"api\"\u{e9}.ip"), standing("b.ip")]);
        assert_eq!(headers[RATELIMIT_POLICY], r#""orders \"api\"?.ip";q=100;w=60, "b.ip";q=100;w=60"#);
        assert_eq!(headers[RATELIMIT], r#""orders \"api\"?.ip";r=42;t=35, "b.ip";r=42;t=35"#);
    }

    use super::*;

    fn policy(toml: &str) -> Policy {
        let config: PolicyConfig = toml::from_str(&format!("name = \"p\"\n{toml}")).unwrap();
        assert!(validate(&config).is_empty(), "{:?}", validate(&config));
        Policy::new(&config)
    }

    #[test]
    fn a_policy_fits_when_every_condition_holds() {
        let p = policy(r#"match = { path_prefix = "/v1/orders", methods = ["GET"], grpc = ["example.orders.v1.*"] }"#);
        let get = Method::GET;
        assert!(p.fits(&get, "/v1/orders/7", "example.orders.v1.OrderService/GetOrder"));
        assert!(p.fits(&get, "/v1/orders", "example.orders.v1.OrderService/ListOrders"));
        assert!(p.fits(&get, "/v1/orders:track", "example.orders.v1.OrderService/TrackOrders"));
        assert!(!p.fits(&get, "/v1/ordersx", "example.orders.v1.OrderService/GetOrder"), "not a segment boundary");
        assert!(!p.fits(&Method::POST, "/v1/orders/7", "example.orders.v1.OrderService/GetOrder"));
        assert!(!p.fits(&get, "/v1/orders/7", "example.users.v1.UserService/GetUser"));
        let one = policy(r#"match = { grpc = ["example.users.v1.UserService/DeleteUser"] }"#);
        assert!(one.fits(&Method::DELETE, "/v1/users/1", "example.users.v1.UserService/DeleteUser"));
        assert!(!one.fits(&Method::GET, "/v1/users/1", "example.users.v1.UserService/GetUser"));
        assert!(policy("").fits(&get, "/anything", "a.B/C"), "no match: every request");
    }

    #[test]
    fn prefixes_compare_percent_decoded_segments() {
        let p = policy(r#"match = { path_prefix = "/v1/users/admin" }"#);
        let get = Method::GET;
        assert!(p.fits(&get, "/v1/users/admin", "a.B/C"));
        assert!(p.fits(&get, "/v1/users/%61dmin", "a.B/C"), "the router decodes the variable to \"admin\"");
        assert!(p.fits(&get, "/v1/%75sers/admin/x", "a.B/C"));
        assert!(p.fits(&get, "/v1/users/admin:promote", "a.B/C"), "a custom verb on the last segment");
        assert!(!p.fits(&get, "/v1/users/administrators", "a.B/C"), "segment-wise");
        assert!(!p.fits(&get, "/v1/users/admin%2Fx", "a.B/C"), "one segment whose value is admin/x");
        assert!(!p.fits(&get, "/v1/users", "a.B/C"));
        let encoded = policy(r#"match = { path_prefix = "/v1/users/%61dmin/" }"#);
        assert!(encoded.fits(&get, "/v1/users/admin", "a.B/C"), "the configured prefix is decoded too");
    }

    #[test]
    fn methods_are_case_insensitive() {
        let p = policy(r#"match = { methods = ["get", "Delete"] }"#);
        assert!(p.fits(&Method::GET, "/", "a.B/C"));
        assert!(p.fits(&Method::DELETE, "/", "a.B/C"));
        assert!(!p.fits(&Method::POST, "/", "a.B/C"));
    }

    #[test]
    fn a_prefix_reaches_all_some_or_none_of_a_template() {
        let reach = |prefix: &str, template: &str| Prefix::parse(prefix).reach(&PathTemplate::parse(template).unwrap());
        assert_eq!(reach("/v1/shelves", "/v1/shelves/{shelf}"), Reach::All);
        assert_eq!(reach("/v1/shelves/7", "/v1/shelves/{shelf}"), Reach::Some);
        assert_eq!(reach("/v1/shelves/7/books", "/v1/shelves/{shelf}"), Reach::None, "longer than any path");
        assert_eq!(reach("/v1/files/secret/x", "/v1/files/{path=**}"), Reach::Some);
        assert_eq!(reach("/v2", "/v1/shelves"), Reach::None);
        assert_eq!(reach("/v1/books", "/v1/{name=shelves/*/books/*}:archive"), Reach::None);
        assert_eq!(reach("/v1/shelves", "/v1/shelves:batch"), Reach::All, "the verb rides on the last segment");
        assert_eq!(reach("/v1/shelves:batch", "/v1/shelves:batch"), Reach::All);
        assert_eq!(reach("/", "/anything/{x}"), Reach::All);
    }

    fn policies(toml: &str) -> Policies {
        let config = crate::config::Config::from_toml(toml).unwrap();
        Policies::new(&config.policy, None, &config.rate_limit)
    }

    fn names(policies: &Policies, guard: &[usize]) -> Vec<String> {
        guard.iter().map(|&i| policies.policies[i].name.clone()).collect()
    }

    #[tokio::test]
    async fn another_door_is_held_to_every_policy_of_the_methods_routes() {
        let p = policies(
            r#"
[[policy]]
name = "admin shelf"
match = { path_prefix = "/v1/shelves/admin" }
auth = "none"
[[policy]]
name = "shelves"
match = { path_prefix = "/v1/shelves", methods = ["get"] }
[[policy]]
name = "deletes"
match = { methods = ["DELETE"] }
[[policy]]
name = "unloaded"
match = { grpc = ["nothing.Here"] }
[[policy]]
name = "everything else"
"#,
        );
        let routes = crate::test_util::routes();
        let guards = p.method_guards(&routes);
        let guard_of = |grpc: &str, origin: crate::route::RouteOrigin| {
            let index = routes.iter().position(|r| r.grpc_path.path() == grpc && r.origin == origin).unwrap();
            names(&p, &guards[index])
        };
        use crate::route::RouteOrigin::{Annotation, Default};
        // GET /v1/shelves/{shelf}: "admin shelf" for one value, "shelves" for the rest (which
        // covers every path, so nothing later could be first); POST /…/GetShelf: everything else.
        let get_shelf = guard_of("/protogate.testing.v1.Bookstore/GetShelf", Annotation);
        assert_eq!(get_shelf, ["admin shelf", "shelves", "everything else"]);
        assert_eq!(guard_of("/protogate.testing.v1.Bookstore/GetShelf", Default), get_shelf, "one guard per method");
        let delete = guard_of("/protogate.testing.v1.Bookstore/DeleteShelf", Annotation);
        assert_eq!(delete, ["admin shelf", "deletes", "everything else"]);
        let warnings = p.unmatched(&routes, &[]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("policy[3].match.grpc[0]"), "{warnings:?}");
        let shelf_guard = &guards[routes.iter().position(|r| r.grpc_path.path().ends_with("/GetShelf")).unwrap()];
        let headers = HeaderMap::new();
        let template = &routes[0].template;
        let request =
            Request { http_method: &Method::GET, template, headers: &headers, query_token: None, client: None };
        let admission = p.admit(shelf_guard, &request);
        let access = admission.await.unwrap();
        assert_eq!(access.policy.map(|p| p.name.as_str()), Some("admin shelf"), "the first in config order");
    }

    #[test]
    fn bad_matches_are_refused() {
        let config: PolicyConfig =
            toml::from_str("name = \"p\"\nmatch = { path_prefix = \"v1\", methods = [\"G T\"], grpc = [\"a/b/c\"] }")
                .unwrap();
        let keys: Vec<String> = validate(&config).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["match.path_prefix", "match.methods[0]", "match.grpc[0]"]);
    }
}
