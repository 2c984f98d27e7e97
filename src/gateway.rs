//! The gateway: the state every request reads, built once from the configuration and the
//! descriptors (and again on a reload), then shared, immutable. The doors
//! ([`crate::doors`]) and the pipeline's steps ([`crate::pipeline`]) read it; it imports
//! neither.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Response};
use prost_reflect::DescriptorPool;

use crate::aggregate::Aggregates;
use crate::auth::Verifier;
use crate::cache::ResponseCache;
use crate::config::{Config, ConfigError, DoorsConfig};
use crate::descriptors::{self, DescriptorError, Descriptors, Source};
use crate::error::GatewayError;
use crate::metadata::HeaderRules;
use crate::metadata::forwarded::Forwarding;
use crate::observability::{Observer, RouteLabels, StreamCounter};
use crate::policy::{Guard, Policies};
use crate::profile::{Exposed, Profile, Profiles, View};
use crate::route::{PathTemplate, Route, RouteError, RouteOrigin, Table, TableBuilder, rule};
use crate::transcode::{JsonOptions, Transcoder};
use crate::upstream::{Upstream, UpstreamId, Upstreams};

/// Everything a request needs, immutable and shared by all requests.
#[derive(Debug)]
pub struct Gateway {
    table: Table,
    /// The upstream of each route, by route index.
    route_upstreams: Vec<Option<UpstreamId>>,
    /// Shared with the gateway this one replaces on a reload, when the upstreams are unchanged.
    upstreams: Arc<Upstreams>,
    pool: DescriptorPool,
    sources: Vec<Source>,
    transcoder: Transcoder,
    max_body_bytes: usize,
    keep_alive: Duration,
    /// What the layers in front of the gateway are configured with.
    edge: Edge,
    /// The implicit route of each method by gRPC path (`/pkg.Service/Method`), for gRPC
    /// pass-through and Connect.
    methods: std::collections::HashMap<String, usize>,
    /// Streams in progress.
    streams: StreamCounter,
    /// Who may call what. Shared with the gateway this one replaces on a reload, when the
    /// policies are unchanged, so rate-limit counters carry on.
    policies: Arc<Policies>,
    /// Records every request.
    observer: Arc<Observer>,
    /// The metric and log labels of each route, by route index.
    route_labels: Vec<Arc<RouteLabels>>,
    /// The configuration it was built from, secrets redacted, for the admin listener.
    effective_config: serde_json::Value,
    /// Set when shutdown has begun: readiness fails so load balancers stop sending.
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// Cached answers, when a policy caches; a reload starts it empty.
    cache: Option<ResponseCache>,
    /// Composite routes (`[[aggregate]]`), matched before the methods' routes.
    aggregates: Aggregates,
    /// Route groups under a prefix (`[[profile]]`).
    profiles: Profiles,
    /// By route index: the policies a request reaching the route's method by a door other
    /// than its annotated routes is held to.
    method_guards: Vec<Guard>,
    /// Which doors are open.
    doors: DoorsConfig,
    /// Upstream response metadata returned as plain headers (`[headers] expose`).
    exposed_headers: Vec<HeaderName>,
    /// Whose forwarding headers are believed.
    forwarding: Forwarding,
    /// Which request headers go upstream.
    header_rules: HeaderRules,
    /// What in the configuration selects nothing loaded, for `check` and the startup log.
    warnings: Vec<String>,
    /// `[docs] public`.
    docs_public: bool,
    /// `[mcp]`.
    mcp: crate::config::McpConfig,
}

/// What a rebuilt gateway takes over from the one it replaces: the state that outlives a
/// route table.
struct Carried {
    observer: Arc<Observer>,
    streams: StreamCounter,
    draining: Arc<std::sync::atomic::AtomicBool>,
    /// The policies, when their configuration is unchanged.
    policies: Option<Arc<Policies>>,
}

/// A problem that keeps the gateway from being built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// In the configuration.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    /// In a descriptor file.
    #[error("descriptors: {0}")]
    Descriptor(#[from] DescriptorError),
    /// In a method's HTTP rule.
    #[error("route: {0}")]
    Route(#[from] RouteError),
}

impl Gateway {
    /// Loads descriptors, builds the route table and the upstream channels. Every problem is
    /// reported. Must run inside a tokio runtime (channels connect lazily from it).
    pub fn build(config: &Config) -> Result<Gateway, Vec<BuildError>> {
        Gateway::build_with(config, Upstreams::build)
    }

    /// As [`Gateway::build`], with the upstreams made by `upstreams` (given the configured
    /// upstreams and the response size limit): see [`Upstreams::build_with`].
    pub fn build_with(
        config: &Config,
        upstreams: impl FnOnce(&[crate::config::UpstreamConfig], usize) -> Upstreams,
    ) -> Result<Gateway, Vec<BuildError>> {
        Gateway::assemble(config, None, |configs, max| Arc::new(upstreams(configs, max)))
    }

    /// A gateway for `config` (the descriptors read again) that takes over this one's
    /// observer, stream count and drain state, and — where `previous`, the configuration this
    /// one was built from, has the same sections — its upstream connections and its policies
    /// with their rate-limit counters.
    pub fn rebuild(&self, config: &Config, previous: &Config) -> Result<Gateway, Vec<BuildError>> {
        let same_policies =
            previous.policy == config.policy && previous.jwt == config.jwt && previous.rate_limit == config.rate_limit;
        let same_upstreams =
            previous.upstreams == config.upstreams && previous.max_response_bytes == config.max_response_bytes;
        let carried = Carried {
            observer: self.observer.clone(),
            streams: self.streams.clone(),
            draining: self.draining.clone(),
            policies: same_policies.then(|| self.policies.clone()),
        };
        Gateway::assemble(config, Some(carried), |configs, max| {
            if same_upstreams { self.upstreams.clone() } else { Arc::new(self.upstreams.rebuilt(configs, max)) }
        })
    }

    fn assemble(
        config: &Config,
        carried: Option<Carried>,
        upstreams: impl FnOnce(&[crate::config::UpstreamConfig], usize) -> Arc<Upstreams>,
    ) -> Result<Gateway, Vec<BuildError>> {
        let mut errors: Vec<BuildError> = validate(config).into_iter().map(BuildError::from).collect();
        let descriptors = match descriptors::load_with(&config.descriptors.paths, &config.reflected) {
            Ok(descriptors) => Some(descriptors),
            Err(e) => {
                errors.extend(e.into_iter().map(BuildError::from));
                None
            }
        };
        let Some(Descriptors { pool, http_rules, sources }) = descriptors else { return Err(errors) };
        let (routes, route_errors) = rule::build_routes(&pool, &http_rules);
        errors.extend(route_errors.into_iter().map(BuildError::from));
        let json = JsonOptions::from_config(&config.json);
        // The table keeps the routes' order, so a route's index here is its index there.
        let aggregates = Aggregates::build(&config.aggregate, &routes, &json).map_err(|problems| {
            errors.extend(problems.into_iter().map(|(key, message)| BuildError::Config(ConfigError { key, message })));
        });
        for (i, upstream) in config.upstreams.iter().enumerate() {
            if let Err(message) = crate::upstream::client_tls(upstream) {
                errors.push(BuildError::Config(ConfigError { key: format!("upstreams[{i}].tls"), message }));
            }
        }
        if let Some(Err(message)) = config.tls.as_ref().map(crate::tls::check) {
            errors.push(BuildError::Config(ConfigError { key: "tls".into(), message }));
        }
        let carried_policies = carried.as_ref().and_then(|c| c.policies.clone());
        let policies =
            match carried_policies {
                Some(policies) => Some(policies),
                None => match config.jwt.as_ref().map(Verifier::build).transpose() {
                    Ok(verifier) => Some(Arc::new(Policies::new(&config.policy, verifier, &config.rate_limit))),
                    Err(problems) => {
                        errors.extend(problems.into_iter().map(|(key, message)| {
                            BuildError::Config(ConfigError { key: format!("jwt.{key}"), message })
                        }));
                        None
                    }
                },
            };
        let (observer, streams, draining) = match carried {
            Some(carried) => (Some(carried.observer), carried.streams, carried.draining),
            // Opens the access log and starts the span exporter: only for a gateway that
            // replaces none.
            None => {
                let observer = Observer::build(config).map(Arc::new).map_err(|problems| {
                    problems.into_iter().map(|(key, message)| BuildError::Config(ConfigError { key, message }))
                });
                (observer.map_err(|e| errors.extend(e)).ok(), Default::default(), Default::default())
            }
        };
        let profiles = aggregates.as_ref().ok().map(|aggregates| {
            Profiles::build(&config.profile, &routes, aggregates).map_err(|problems| {
                errors.extend(
                    problems.into_iter().map(|(key, message)| BuildError::Config(ConfigError { key, message })),
                );
            })
        });
        let (Some(observer), Some(policies), Ok(aggregates), Some(Ok(mut profiles))) =
            (observer, policies, aggregates, profiles)
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut builder = TableBuilder::new();
        builder.extend(routes);
        // A method's `POST /pkg.Service/Method` stays in the table for the doors that name the
        // method (Connect, gRPC), but answers no REST request when that door is closed.
        let doors = config.doors.clone();
        let table = builder.build_where(|route| {
            route.origin == RouteOrigin::Annotation
                || doors.rest_fallback_for(route.method.parent_service().full_name())
        });
        let method_guards = policies.method_guards(table.routes());
        let warnings = unmatched(&policies, &table, &aggregates, &profiles);
        let upstreams = upstreams(&config.upstreams, config.max_response_bytes);
        let route_upstreams: Vec<Option<UpstreamId>> =
            table.routes().iter().map(|r| upstreams.select(r.method.parent_service().full_name())).collect();
        let route_labels: Vec<Arc<RouteLabels>> = table
            .routes()
            .iter()
            .zip(&route_upstreams)
            .map(|(route, upstream)| {
                Arc::new(RouteLabels::new(
                    route.template.to_string().into(),
                    route.grpc_path.path().trim_start_matches('/').into(),
                    upstream.map(|id| upstreams.get(id).name.as_str().into()),
                ))
            })
            .collect();
        profiles.name_upstreams(&route_labels);
        observer.metrics().descriptors_loaded(true);
        let transcoder = Transcoder::build(table.routes(), json);
        let request_id_header = observer.request_id_header().clone();
        // The implicit `POST /pkg.Service/Method` route of each method: the whole message in
        // the body, nothing from the path.
        let methods = table
            .routes()
            .iter()
            .enumerate()
            .filter(|(_, route)| route.origin == RouteOrigin::Default)
            .map(|(index, route)| (route.grpc_path.path().to_owned(), index))
            .collect();
        Ok(Gateway {
            table,
            route_upstreams,
            upstreams,
            pool,
            sources,
            transcoder,
            max_body_bytes: config.max_body_bytes,
            keep_alive: config.streaming.keep_alive,
            edge: Edge {
                cors: config.cors.clone(),
                compression: config.compression,
                limits: config.limits.clone(),
                drain_timeout: config.drain_timeout,
                readiness: config.readiness,
                tls: config.tls.clone(),
                admin_hosts: config.admin_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            },
            methods,
            streams,
            policies,
            observer,
            route_labels,
            effective_config: config.effective(),
            draining,
            cache: config
                .policy
                .iter()
                .any(|p| p.cache.is_some())
                .then(|| ResponseCache::new(&config.cache, config.rate_limit.redis_url.as_deref())),
            aggregates,
            profiles,
            method_guards,
            doors,
            exposed_headers: config
                .headers
                .expose
                .iter()
                .filter_map(|name| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok())
                .collect(),
            forwarding: Forwarding::from_config(&config.rate_limit),
            header_rules: HeaderRules {
                request_id: request_id_header,
                forward: config
                    .headers
                    .forward
                    .iter()
                    .filter_map(|name| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok())
                    .collect(),
                grpc_gateway_names: config.json.preset == crate::config::JsonPreset::GrpcGateway,
            },
            warnings,
            docs_public: config.docs.public,
            mcp: config.mcp.clone(),
        })
    }

    /// The route table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The descriptor pool.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The transcoder of every route.
    pub fn transcoder(&self) -> &Transcoder {
        &self.transcoder
    }

    /// The upstreams.
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// What each descriptor path contributed.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The upstream serving route `index`, if one is configured.
    pub fn upstream_of(&self, index: usize) -> Option<&Upstream> {
        let id = (*self.route_upstreams.get(index)?)?;
        Some(self.upstreams.get(id))
    }

    /// Services that no upstream serves (their routes answer 502).
    pub fn unserved_services(&self) -> Vec<String> {
        self.services_where(|upstream| upstream.is_none())
    }

    /// Services the upstream named `name` serves.
    pub fn services_of(&self, name: &str) -> Vec<String> {
        self.services_where(|upstream| upstream.is_some_and(|id| self.upstreams.get(id).name == name))
    }

    fn services_where(&self, keep: impl Fn(Option<UpstreamId>) -> bool) -> Vec<String> {
        let mut services: Vec<String> = self
            .table
            .routes()
            .iter()
            .zip(&self.route_upstreams)
            .filter(|(_, upstream)| keep(**upstream))
            .map(|(route, _)| route.method.parent_service().full_name().to_owned())
            .collect();
        services.sort();
        services.dedup();
        services
    }

    /// The `google.rpc.Status` JSON response for an error, with the request id among its
    /// details.
    pub fn error_response(&self, error: GatewayError, request_id: Option<&http::HeaderValue>) -> Response<Vec<u8>> {
        let request_id = request_id.and_then(|id| id.to_str().ok());
        error.into_response(&self.pool, self.transcoder.json_options(), request_id)
    }

    /// The request's correlation id.
    pub fn request_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h http::HeaderValue> {
        headers.get(self.observer.request_id_header())
    }

    /// The configuration the gateway was built from, secrets redacted.
    pub fn effective_config(&self) -> &serde_json::Value {
        &self.effective_config
    }

    /// Marks the gateway as shutting down: `/readyz` answers 503 from now on, while requests
    /// in flight finish.
    pub fn start_draining(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What records requests: access log, metrics, spans.
    pub fn observer(&self) -> &Arc<Observer> {
        &self.observer
    }

    /// How route `index` is answered outside profiles: `[json]`, no reshaping.
    pub(crate) fn view(&self, index: usize) -> View<'_> {
        View { transcoder: &self.transcoder, shape: None, labels: &self.route_labels[index] }
    }

    pub(crate) fn profile_view<'g>(&'g self, profile: &'g Profile, exposed: &'g Exposed) -> View<'g> {
        View { transcoder: profile.transcoder(&self.transcoder), shape: Some(&exposed.shape), labels: &exposed.labels }
    }

    /// The composite routes.
    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// The profiles.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Streams in progress: server-stream bodies, client-stream calls, WebSocket sessions and
    /// gRPC pass-through calls.
    pub fn streams(&self) -> &StreamCounter {
        &self.streams
    }

    /// The policies, with their verifier and rate limits.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The `[cors]` settings, if browsers from other origins may call.
    pub fn cors(&self) -> Option<&crate::config::CorsConfig> {
        self.edge.cors.as_ref()
    }

    /// What the layers in front of the gateway are configured with.
    pub fn edge(&self) -> &Edge {
        &self.edge
    }

    /// Which doors are open.
    pub fn doors(&self) -> &DoorsConfig {
        &self.doors
    }

    /// Upstream response metadata returned as plain headers (`[headers] expose`).
    pub fn exposed_headers(&self) -> &[HeaderName] {
        &self.exposed_headers
    }

    /// Which request headers go upstream as metadata.
    pub fn header_rules(&self) -> &HeaderRules {
        &self.header_rules
    }

    /// Whose forwarding headers are believed: the gateway's view of who sent a request.
    pub fn forwarding(&self) -> &Forwarding {
        &self.forwarding
    }

    /// The response cache, when a policy caches.
    pub(crate) fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_ref()
    }

    /// The policies a request that reaches route `index`'s method by a door other than its
    /// annotated routes is held to.
    pub(crate) fn method_guard(&self, index: usize) -> &[usize] {
        self.method_guards.get(index).map_or(&[], |guard| guard.as_slice())
    }

    /// `[mcp]`: the methods served as MCP tools, and where.
    pub fn mcp(&self) -> &crate::config::McpConfig {
        &self.mcp
    }

    /// Whether `/docs` is served on the public listener too.
    pub fn docs_public(&self) -> bool {
        self.docs_public
    }

    /// What in the configuration selects nothing that is loaded: `check` prints these and
    /// `serve` logs them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The implicit route of the gRPC method at `path` (`/pkg.Service/Method`).
    pub(crate) fn method_route(&self, path: &str) -> Option<usize> {
        self.methods.get(path).copied()
    }

    /// Route `index` of the table.
    pub(crate) fn route_at(&self, index: usize) -> &Route {
        &self.table.routes()[index]
    }

    /// The largest request body (or, for client streams, request line) accepted.
    pub(crate) fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How often an idle event stream gets a keep-alive, and how long a server stream waits
    /// for its first message before committing to a 200.
    pub(crate) fn keep_alive(&self) -> Duration {
        self.keep_alive
    }
}

/// Every problem in the configuration: what it shows alone ([`Config::validate`]), then what
/// each feature's own rules refuse, each with its key path.
pub fn validate(config: &Config) -> Vec<ConfigError> {
    let mut errors = config.validate();
    let mut add = |prefix: String, problems: Vec<(String, String)>| {
        errors
            .extend(problems.into_iter().map(|(key, message)| ConfigError { key: format!("{prefix}{key}"), message }));
    };
    for aggregate in &config.aggregate {
        add(format!("{}.", crate::aggregate::key(aggregate)), crate::aggregate::validate(aggregate));
    }
    for (i, policy) in config.policy.iter().enumerate() {
        add(format!("policy[{i}]."), crate::policy::validate(policy));
        for (j, limit) in policy.rate_limits.iter().enumerate() {
            if let Err(message) = limit.key.parse::<crate::rate_limit::KeyKind>() {
                add(format!("policy[{i}].rate_limits[{j}]."), vec![("key".into(), message)]);
            }
        }
    }
    if let Some(jwt) = &config.jwt {
        add("jwt.".into(), crate::auth::validate(jwt));
    }
    for (i, proxy) in config.rate_limit.trusted_proxies.iter().enumerate() {
        if let Err(message) = crate::metadata::forwarded::parse_net(proxy) {
            add(String::new(), vec![(format!("rate_limit.trusted_proxies[{i}]"), message)]);
        }
    }
    for (i, name) in config.headers.forward.iter().enumerate() {
        let key = format!("headers.forward[{i}]");
        let request_id = HeaderName::from_bytes(config.request_id.header.to_ascii_lowercase().as_bytes())
            .unwrap_or(crate::metadata::REQUEST_ID);
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Err(_) => add(String::new(), vec![(key, format!("{name:?} is not a header name"))]),
            Ok(header) if !crate::metadata::is_forwardable(header.as_str(), &request_id) => {
                let message = format!("{name:?} is set by the gateway itself and cannot be forwarded from clients");
                add(String::new(), vec![(key, message)]);
            }
            Ok(_) => {}
        }
    }
    if config.rate_limit.ipv6_prefix > 128 {
        add(String::new(), vec![("rate_limit.ipv6_prefix".into(), "must be at most 128".into())]);
    }
    for (i, name) in config.headers.expose.iter().enumerate() {
        if HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).is_err() {
            let key = format!("headers.expose[{i}]");
            add(String::new(), vec![(key, format!("{name:?} is not a header name"))]);
        }
    }
    if let Some(cors) = &config.cors {
        add("cors.".into(), crate::metadata::origin::validate(cors));
    }
    errors
}

/// The policies' selectors that select nothing loaded: methods' routes, composite routes and
/// profiles' routes under their prefixes.
fn unmatched(policies: &Policies, table: &Table, aggregates: &Aggregates, profiles: &Profiles) -> Vec<String> {
    let composite = aggregates.routes().iter().map(|a| (a.http_method.clone(), a.template.clone()));
    let profiled = profiles.iter().flat_map(|p| p.exposed(table.routes(), aggregates)).filter_map(|route| {
        let (method, template) = route.split_once(' ')?;
        Some((method.parse().ok()?, PathTemplate::parse(template).ok()?))
    });
    let others: Vec<(http::Method, PathTemplate)> = composite.chain(profiled).collect();
    policies.unmatched(table.routes(), &others)
}

/// The settings of the layers in front of the gateway (see `layers`).
#[derive(Debug, Clone)]
pub struct Edge {
    /// Cross-origin access for browsers.
    pub cors: Option<crate::config::CorsConfig>,
    /// Compress responses and accept compressed request bodies.
    pub compression: bool,
    /// What the listener accepts from clients.
    pub limits: crate::config::Limits,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// TLS termination, if configured.
    pub tls: Option<crate::config::TlsConfig>,
    /// The names the admin listener answers to, beside addresses and `localhost`.
    pub admin_hosts: Vec<String>,
    /// What `/readyz` requires.
    pub readiness: crate::config::Readiness,
}

impl fmt::Display for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let services: std::collections::BTreeSet<&str> =
            self.table.routes().iter().map(|r| r.method.parent_service().full_name()).collect();
        write!(f, "{} routes for {} services", self.table.routes().len(), services.len())?;
        match self.aggregates.routes().len() {
            0 => Ok(()),
            1 => write!(f, ", 1 composite route"),
            n => write!(f, ", {n} composite routes"),
        }
    }
}
