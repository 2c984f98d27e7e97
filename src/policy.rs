//! Policies: which requests need what. Step 1's route match is followed by the first
//! `[[policy]]` whose `match` fits the request (path prefix, HTTP method, gRPC method); its
//! `auth`, `scopes` and `claims` decide whether the request may go on, its `timeout` bounds the
//! upstream call, its `cache` keeps GET answers ([`crate::cache`]). A request no policy fits needs nothing.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, Method};

use crate::auth::{AuthError, Claims, Verifier};
use crate::cache::CacheRule;
use crate::config::{AuthRequirement, PolicyConfig, RateLimitConfig, RateLimitSettings, ServiceSelector};
use crate::rate_limit::{Limiter, Refusal, Subject};
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
    path_prefix: Option<String>,
    methods: Vec<Method>,
    grpc: Vec<GrpcSelector>,
    auth: AuthRequirement,
    scopes: Vec<String>,
    claims: Vec<(String, String)>,
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

/// What a request may do: the policy that applied and the claims of its verified token.
#[derive(Debug, Default)]
pub struct Access<'p> {
    /// The policy that applied, if any did.
    pub policy: Option<&'p Policy>,
    /// The verified token's claims, when the policy required one.
    pub claims: Option<Claims>,
}

/// What a policy decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The route's HTTP method.
    pub http_method: &'a Method,
    /// The route's path template.
    pub template: &'a PathTemplate,
    /// The request path.
    pub path: &'a str,
    /// The path the route matched: below a profile's prefix, else the request path.
    pub route_path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The socket peer.
    pub peer: Option<IpAddr>,
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

impl Policies {
    /// The policies of the configuration (already validated) with their verifier and rate
    /// limits. Must run inside a tokio runtime (the in-memory limits sweep idle keys on it).
    pub fn new(configs: &[PolicyConfig], verifier: Option<Verifier>, settings: &RateLimitSettings) -> Policies {
        let limits: Vec<&[RateLimitConfig]> = configs.iter().map(|c| c.rate_limits.as_slice()).collect();
        let limiter = Limiter::new(&limits, settings);
        Policies { policies: configs.iter().map(Policy::new).collect(), verifier, limiter }
    }

    /// The rate limits.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The verifier, if `[jwt]` is configured.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// The first policy that fits a request for `grpc_method` (`pkg.Service/Method`), and its
    /// index.
    pub fn find(&self, method: &Method, path: &str, grpc_method: &str) -> Option<(usize, &Policy)> {
        self.policies.iter().enumerate().find(|(_, p)| p.fits(method, path, grpc_method))
    }

    /// Decides whether a request to `route` may go on: its token verified when its policy
    /// requires one, then its rate limits counted.
    pub async fn check(
        &self,
        route: &Route,
        path: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Access<'_>, Denied> {
        let grpc_method = route.grpc_path.path().trim_start_matches('/');
        let Some((index, policy)) = self.find(&route.http_method, path, grpc_method) else {
            return Ok(Access::default());
        };
        let request = Request {
            http_method: &route.http_method,
            template: &route.template,
            path,
            route_path: path,
            headers,
            peer,
        };
        self.apply(index, policy, &request).await
    }

    /// As [`Policies::check`] for a request that reaches its methods another way: a composite
    /// route, which calls each of `grpc_methods`, or a route under a profile's prefix. Every
    /// policy that fits one of the calls, by the request's path or the route's own path,
    /// applies: a method's protection cannot be bypassed by reaching it through a composite
    /// route or a profile. The first one (in config order) decides the deadline.
    pub async fn check_all<'m>(
        &self,
        request: &Request<'_>,
        grpc_methods: impl Iterator<Item = &'m str>,
    ) -> Result<Access<'_>, Denied> {
        let paths = [request.path, request.route_path];
        let mut fitting: Vec<usize> = grpc_methods
            .flat_map(|grpc_method| paths.map(|path| (grpc_method, path)))
            .filter_map(|(grpc_method, path)| self.find(request.http_method, path, grpc_method).map(|(i, _)| i))
            .collect();
        fitting.sort_unstable();
        fitting.dedup();
        let mut access = Access::default();
        for index in fitting {
            let next = self.apply(index, &self.policies[index], request).await?;
            access.policy = access.policy.or(next.policy);
            access.claims = access.claims.or(next.claims);
        }
        Ok(access)
    }

    async fn apply<'p>(
        &'p self,
        index: usize,
        policy: &'p Policy,
        request: &Request<'_>,
    ) -> Result<Access<'p>, Denied> {
        let Request { http_method, template, headers, peer, .. } = *request;
        let claims = match policy.auth {
            AuthRequirement::None => None,
            AuthRequirement::Required => {
                let verifier = self
                    .verifier
                    .as_ref()
                    .ok_or_else(|| AuthError::Invalid { reason: "no keys are configured to verify it".into() })?;
                let claims = verifier.verify_request(headers).await?;
                policy.authorize(&claims)?;
                Some(claims)
            }
        };
        let subject = Subject { peer, headers, claims: claims.as_ref(), http_method, template };
        self.limiter.check(index, &subject).await?;
        Ok(Access { policy: Some(policy), claims })
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
            path_prefix: config.matches.path_prefix.clone(),
            methods: config.matches.methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect(),
            grpc,
            auth: config.auth,
            scopes: config.scopes.clone(),
            claims: config.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            timeout: config.timeout,
            cache: config.cache.as_ref().map(|c| CacheRule {
                ttl: c.ttl,
                vary: c.vary.iter().filter_map(|v| http::HeaderName::from_bytes(v.as_bytes()).ok()).collect(),
            }),
        }
    }

    fn fits(&self, method: &Method, path: &str, grpc_method: &str) -> bool {
        let path_fits = self.path_prefix.as_deref().is_none_or(|prefix| under(path, prefix));
        let method_fits = self.methods.is_empty() || self.methods.contains(method);
        let service = grpc_method.split_once('/').map_or(grpc_method, |(service, _)| service);
        let grpc_fits = self.grpc.is_empty()
            || self.grpc.iter().any(|g| match g {
                GrpcSelector::Service(selector) => selector.matches(service),
                GrpcSelector::Method(full) => full == grpc_method,
            });
        path_fits && method_fits && grpc_fits
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

/// Whether `path` is `prefix` or below it: `/v1/orders` covers `/v1/orders/7` and
/// `/v1/orders:cancel`, not `/v1/ordersx`.
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || rest.starts_with(':') || prefix.is_empty(),
        None => false,
    }
}

/// Every problem in a policy that `Config::validate` does not see, as (key, message).
pub fn validate(config: &PolicyConfig) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if config.name.trim().is_empty() {
        errors.push(("name".into(), "must not be empty".into()));
    }
    if let Some(prefix) = &config.matches.path_prefix
        && !prefix.starts_with('/')
    {
        errors.push(("match.path_prefix".into(), format!("{prefix:?} must start with /")));
    }
    for (i, method) in config.matches.methods.iter().enumerate() {
        if Method::from_bytes(method.as_bytes()).is_err() {
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
    fn bad_matches_are_refused() {
        let config: PolicyConfig =
            toml::from_str("name = \"p\"\nmatch = { path_prefix = \"v1\", methods = [\"G T\"], grpc = [\"a/b/c\"] }")
                .unwrap();
        let keys: Vec<String> = validate(&config).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["match.path_prefix", "match.methods[0]", "match.grpc[0]"]);
    }
}
