//! The gateway: built once from the configuration, then [`Gateway::handle`] runs the six steps
//! of the pipeline for each request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost_reflect::DescriptorPool;

use crate::aggregate::{self, Aggregate, Aggregates};
use crate::auth::Verifier;
use crate::cache::{CacheRule, CacheUse, ResponseCache};
use crate::config::{Config, ConfigError};
use crate::descriptors::{self, DescriptorError, Descriptors, Source};
use crate::error::{GatewayError, json_response};
use crate::metadata::{self, Peer};
use crate::observability::{Exchange, Observer, RouteLabels};
use crate::policy::{self, Access, Policies};
use crate::profile::{Exposed, Profile, Profiles, View};
use crate::route::{BodySelector, Lookup, Route, RouteError, RouteMatch, RouteOrigin, Table, TableBuilder, rule};
use crate::streaming::{self, websocket};
use crate::transcode::fields::{self, FieldMask};
use crate::transcode::{JsonOptions, TranscodeError, Transcoder, http_body};
use crate::upstream::{UnaryResponse, Upstream, UpstreamError, UpstreamId, Upstreams};
use crate::{connect, proxy};

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
    streams: streaming::StreamCounter,
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
}

/// What a rebuilt gateway takes over from the one it replaces: the state that outlives a
/// route table.
struct Carried {
    observer: Arc<Observer>,
    streams: streaming::StreamCounter,
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
        let mut errors: Vec<BuildError> = config.validate().into_iter().map(BuildError::from).collect();
        let descriptors = match descriptors::load(&config.descriptors.paths) {
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
        let table = builder.build();
        let upstreams = upstreams(&config.upstreams, config.max_response_bytes);
        let route_upstreams: Vec<Option<UpstreamId>> =
            table.routes().iter().map(|r| upstreams.select(r.method.parent_service().full_name())).collect();
        let route_labels: Vec<Arc<RouteLabels>> = table
            .routes()
            .iter()
            .zip(&route_upstreams)
            .map(|(route, upstream)| {
                Arc::new(RouteLabels {
                    route: route.template.to_string().into(),
                    grpc_method: route.grpc_path.path().trim_start_matches('/').into(),
                    upstream: upstream.map(|id| upstreams.get(id).name.as_str().into()),
                })
            })
            .collect();
        profiles.name_upstreams(&route_labels);
        observer.metrics().descriptors_loaded(true);
        let transcoder = Transcoder::build(table.routes(), json);
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
                tls: config.tls.clone(),
            },
            methods,
            streams,
            policies,
            observer,
            route_labels,
            effective_config: serde_json::to_value(config).unwrap_or_default(),
            draining,
            cache: config
                .policy
                .iter()
                .any(|p| p.cache.is_some())
                .then(|| ResponseCache::new(&config.cache, config.rate_limit.redis_url.as_deref())),
            aggregates,
            profiles,
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

    /// Answers one HTTP request. Never fails: errors become `google.rpc.Status` JSON.
    pub async fn handle(self: &Arc<Self>, request: Request<Body>, peer: Peer) -> Response<Body> {
        match proxy::Protocol::of(request.headers()) {
            Some(proxy::Protocol::Grpc) => return proxy::grpc(self.clone(), request, peer).await,
            Some(proxy::Protocol::GrpcWeb) => return proxy::grpc_web(self.clone(), request, peer).await,
            None if request.method() == http::Method::POST && connect::is_connect(request.headers()) => {
                return connect::unary(self.clone(), request, peer).await;
            }
            None => {}
        }
        let request_id = self.request_id(request.headers()).cloned();
        match self.respond(request, peer).await {
            Ok(response) => response,
            Err(error) => self.error_response(error, request_id.as_ref()).map(Body::from),
        }
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

    /// Notes in the request's record that it matched route `index`.
    pub(crate) fn note_route(&self, parts: &Parts, index: usize) -> Exchange {
        let exchange = Exchange::of(&parts.extensions);
        if let Some(labels) = self.route_labels.get(index) {
            exchange.matched(labels);
        }
        exchange
    }

    /// The pipeline, steps 1 to 6; streaming methods go on in [`streaming`], composite routes
    /// in [`aggregate::run`].
    async fn respond(self: &Arc<Self>, request: Request<Body>, peer: Peer) -> Result<Response<Body>, GatewayError> {
        let (parts, body) = request.into_parts();
        let profile = self.profiles.find(parts.uri.path());
        let path = profile.map_or(parts.uri.path(), |(_, below)| below);
        let not_exposed = || GatewayError::NotFound { method: parts.method.clone(), path: parts.uri.path().to_owned() };
        let also_allowed = match self.aggregates.lookup(&parts.method, path) {
            Lookup::Matched(matched) => {
                let aggregate = matched.route;
                let view = match profile {
                    Some((profile, _)) => {
                        self.profile_view(profile, profile.aggregate(matched.index).ok_or_else(not_exposed)?)
                    }
                    None => View { transcoder: &self.transcoder, shape: None, labels: &aggregate.labels },
                };
                return self.aggregate(matched, &parts, path, body, peer, view).await;
            }
            Lookup::MethodNotAllowed { allow } => allow,
            Lookup::NotFound | Lookup::InvalidPath { .. } => Vec::new(),
        };
        let upgrade = websocket::is_upgrade(&parts) && profile.is_none();
        let matched = self.route(&parts, path, upgrade).map_err(|error| allow_also(error, &parts, also_allowed))?;
        let route = matched.route;
        let (client_streams, server_streams) = (route.method.is_client_streaming(), route.method.is_server_streaming());
        let (index, values) = (matched.index, matched.values);
        let view = match profile {
            Some((profile, _)) => self.profile_view(profile, profile.route(index).ok_or_else(not_exposed)?),
            None => self.view(index),
        };
        Exchange::of(&parts.extensions).matched(view.labels);
        let access = match profile {
            Some(_) => self.authorize_in_profile(index, &parts, path, peer).await?,
            None => self.authorize(index, &parts, peer).await?,
        };
        if upgrade && (client_streams || server_streams) {
            return websocket::upgrade(self.clone(), index, values, parts, peer, &access).await;
        }
        match (client_streams, server_streams) {
            (false, false) => self.unary(index, &values, parts, body, peer, &access, view).await,
            (false, true) => streaming::server_stream(self.clone(), index, &values, parts, body, peer, &access).await,
            (true, false) => streaming::client_stream(self, index, &values, parts, body, peer, &access).await,
            (true, true) => Err(GatewayError::WebSocketRequired { method: route.method.full_name().to_owned() }),
        }
    }

    /// How route `index` is answered outside profiles: `[json]`, no reshaping.
    pub(crate) fn view(&self, index: usize) -> View<'_> {
        View { transcoder: &self.transcoder, shape: None, labels: &self.route_labels[index] }
    }

    fn profile_view<'g>(&'g self, profile: &'g Profile, exposed: &'g Exposed) -> View<'g> {
        View { transcoder: profile.transcoder(&self.transcoder), shape: Some(&exposed.shape), labels: &exposed.labels }
    }

    /// A composite route: every policy that fits one of its calls, then its calls.
    #[allow(clippy::too_many_arguments)]
    async fn aggregate(
        &self,
        matched: RouteMatch<'_, Aggregate>,
        parts: &Parts,
        route_path: &str,
        body: Body,
        peer: Peer,
        view: View<'_>,
    ) -> Result<Response<Body>, GatewayError> {
        let aggregate = matched.route;
        Exchange::of(&parts.extensions).matched(view.labels);
        let request = policy::Request {
            http_method: &aggregate.http_method,
            template: &aggregate.template,
            path: parts.uri.path(),
            route_path,
            headers: &parts.headers,
            peer: peer.ip,
        };
        let methods = aggregate.calls.iter().map(|c| c.grpc_method.as_str());
        let access = self.policies.check_all(&request, methods).await?;
        let values = &matched.values;
        // A GET takes nothing from a body (`check` refuses `{body}` there): the key holds
        // everything the calls read, but the claims, which a verified subject keys.
        let rule = access.policy.and_then(|p| p.cache.as_ref()).filter(|_| parts.method == http::Method::GET);
        let (Some(cache), Some(rule)) = (&self.cache, rule) else {
            return aggregate::run::respond(self, aggregate, values, parts, body, peer, &access, view).await;
        };
        drop(body);
        let fetch = || aggregate::run::respond(self, aggregate, values, parts, Body::empty(), peer, &access, view);
        self.through_cache(cache, rule, &view.labels.route, values, parts, &access, fetch).await
    }

    /// The composite routes.
    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    /// The profiles.
    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Step 1b for route `index` reached under a profile (below it at `route_path`): the
    /// policies of the whole path and those of the route's own path and method all apply.
    async fn authorize_in_profile(
        &self,
        index: usize,
        parts: &Parts,
        route_path: &str,
        peer: Peer,
    ) -> Result<Access<'_>, GatewayError> {
        let route = self.route_at(index);
        let request = policy::Request {
            http_method: &route.http_method,
            template: &route.template,
            path: parts.uri.path(),
            route_path,
            headers: &parts.headers,
            peer: peer.ip,
        };
        let grpc_method = route.grpc_path.path().trim_start_matches('/');
        Ok(self.policies.check_all(&request, std::iter::once(grpc_method)).await?)
    }

    /// Step 1b: the policy that fits the request to route `index`, and whether it may go on.
    pub(crate) async fn authorize(&self, index: usize, parts: &Parts, peer: Peer) -> Result<Access<'_>, GatewayError> {
        let route = self.route_at(index);
        Ok(self.policies.check(route, parts.uri.path(), &parts.headers, peer.ip).await?)
    }

    #[allow(clippy::too_many_arguments)]
    async fn unary(
        &self,
        index: usize,
        values: &[String],
        parts: Parts,
        body: Body,
        peer: Peer,
        access: &Access<'_>,
        view: View<'_>,
    ) -> Result<Response<Body>, GatewayError> {
        // Only GETs whose route takes nothing from a body: the key holds all the request says.
        let cacheable = parts.method == http::Method::GET && self.route_at(index).body == BodySelector::Empty;
        let rule = access.policy.and_then(|p| p.cache.as_ref()).filter(|_| cacheable);
        let (Some(cache), Some(rule)) = (&self.cache, rule) else {
            return self.call_unary(index, values, &parts, body, peer, access, view).await;
        };
        drop(body);
        let fetch = || self.call_unary(index, values, &parts, Body::empty(), peer, access, view);
        self.through_cache(cache, rule, &view.labels.route, values, &parts, access, fetch).await
    }

    /// The answer from `cache` under `rule` for the route whose template (with a profile's
    /// prefix) is `route`, or from `fetch` (kept when it is a 200); counted in the cache
    /// metric. Keyed by template, not table index: indexes move when descriptors change, and
    /// Redis outlives this gateway.
    #[allow(clippy::too_many_arguments)]
    async fn through_cache<F, Fut>(
        &self,
        cache: &ResponseCache,
        rule: &CacheRule,
        route: &str,
        values: &[String],
        parts: &Parts,
        access: &Access<'_>,
        fetch: F,
    ) -> Result<Response<Body>, GatewayError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Response<Body>, GatewayError>>,
    {
        let lookup =
            ResponseCache::lookup(rule, &parts.method, route, values, parts.uri.query(), &parts.headers, access);
        let bypass = match &lookup {
            CacheUse::Bypass => Some("bypass"),
            CacheUse::Refresh(_) => Some("refresh"),
            CacheUse::Use(_) => None,
        };
        let response = cache.serve(lookup, rule, &parts.headers, fetch).await;
        let outcome = bypass.or_else(|| {
            let header = response.as_ref().ok()?.headers().get(crate::cache::X_CACHE)?;
            Some(if header == "HIT" { "hit" } else { "miss" })
        });
        self.observer.metrics().cache_lookup(outcome.unwrap_or("miss"));
        response
    }

    /// Steps 2 to 6 of a unary call.
    #[allow(clippy::too_many_arguments)]
    async fn call_unary(
        &self,
        index: usize,
        values: &[String],
        parts: &Parts,
        body: Body,
        peer: Peer,
        access: &Access<'_>,
        view: View<'_>,
    ) -> Result<Response<Body>, GatewayError> {
        let route = self.route_at(index);
        let query = parts.uri.query();
        let transcoder = view.transcoder;
        let message = match transcoder.raw_request(index) {
            Some(target) => {
                let data = read_limited(&parts.headers, body, self.max_body_bytes).await?;
                let content_type = content_type(&parts.headers);
                transcoder.encode_raw(route, target, values, query, content_type, data)?
            }
            None => {
                let body = read_body(route, &parts.headers, body, self.max_body_bytes).await?;
                transcoder.decode(index, route, values, query, &body)?
            }
        };
        let mask = self.partial_response(index, parts)?;
        let call = self.call_target(index, &parts.headers, peer, CallKind::Unary, access)?;
        // GET asks for no change, so trying it twice is safe; other methods must be listed.
        let idempotent = parts.method == http::Method::GET || call.upstream.is_idempotent(route.grpc_path.path());
        let reply = call.upstream.unary(route.grpc_path.clone(), message, call.metadata, call.deadline, idempotent);
        let reply = Exchange::of(&parts.extensions).time_call(reply).await?;
        self.respond_with(index, &reply, mask.as_ref(), view)
    }

    /// The fields `?fields=` keeps of route `index`'s response, checked before any call.
    pub(crate) fn partial_response(&self, index: usize, parts: &Parts) -> Result<Option<FieldMask>, GatewayError> {
        let route = self.route_at(index);
        let output = match (&route.response_body, self.transcoder.raw_response(index)) {
            (_, Some(_)) => None,
            (Some(field), None) => match field.kind() {
                prost_reflect::Kind::Message(message) if !field.is_list() && !field.is_map() => Some(message),
                _ => None,
            },
            (None, None) => Some(route.method.output()),
        };
        Ok(fields::requested(parts.uri.query(), &route.method.input(), output.as_ref())?)
    }

    /// Steps 5 and 6 for a call's one response message, trimmed to `mask` when given, shaped
    /// as `view` says.
    pub(crate) fn respond_with(
        &self,
        index: usize,
        reply: &UnaryResponse,
        mask: Option<&FieldMask>,
        view: View<'_>,
    ) -> Result<Response<Body>, GatewayError> {
        let route = self.route_at(index);
        let mut response = match view.transcoder.raw_response(index) {
            Some(target) => {
                let body = http_body::decode(target, &reply.message)?;
                raw_response(body.content_type, Bytes::from(body.data))
            }
            None => {
                let json = view.finish(mask, view.transcoder.render(index, route, &reply.message)?)?;
                json_response(StatusCode::OK, json).map(Body::from)
            }
        };
        let status = metadata::http_code(&reply.headers, &reply.trailers).unwrap_or(StatusCode::OK);
        if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            *response.body_mut() = Body::empty();
            response.headers_mut().remove(CONTENT_TYPE);
        }
        *response.status_mut() = status;
        metadata::from_grpc(&reply.headers, &reply.trailers, response.headers_mut());
        Ok(response)
    }

    /// Streams in progress: server-stream bodies, client-stream calls, WebSocket sessions and
    /// gRPC pass-through calls.
    pub fn streams(&self) -> &streaming::StreamCounter {
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

    /// Steps 3 and 4's inputs: where route `index`'s call goes, with which metadata (the
    /// verified claims forwarded), and its deadline: the client's `Grpc-Timeout` or the
    /// policy's (else the upstream's) `timeout`, whichever is sooner. A stream can last as
    /// long as its client stays, so only the client's deadline bounds it.
    pub(crate) fn call_target(
        &self,
        index: usize,
        headers: &HeaderMap,
        peer: Peer,
        kind: CallKind,
        access: &Access<'_>,
    ) -> Result<CallTarget<'_>, GatewayError> {
        let upstream = self.upstream_for(index)?;
        let mut metadata = metadata::to_grpc(headers, peer, self.observer.request_id_header())?;
        self.forward_claims(access, &mut metadata);
        let deadline = deadline(metadata::grpc_timeout(headers)?, kind, access, upstream);
        Ok(CallTarget { upstream, metadata, deadline })
    }

    /// The upstream serving route `index`.
    pub(crate) fn upstream_for(&self, index: usize) -> Result<&Upstream, GatewayError> {
        self.upstream_of(index).ok_or_else(|| {
            let service = self.route_at(index).method.parent_service().full_name().to_owned();
            UpstreamError::NotConfigured { service }.into()
        })
    }

    /// Puts the verified claims `forward_claims` names into upstream metadata, after dropping
    /// whatever the client sent under those keys.
    pub(crate) fn forward_claims(&self, access: &Access<'_>, metadata: &mut HeaderMap) {
        if let Some(verifier) = self.policies.verifier() {
            verifier.forward(access.claims.as_ref(), metadata);
        }
    }

    /// Step 1: the route for this request. A WebSocket handshake is a GET whatever the
    /// method's HTTP rule says, so it also matches a POST route of a streaming method.
    fn route<'t>(&'t self, parts: &Parts, path: &str, upgrade: bool) -> Result<RouteMatch<'t>, GatewayError> {
        let mut lookup = self.table.lookup(&parts.method, path);
        if upgrade
            && matches!(lookup, Lookup::MethodNotAllowed { .. })
            && let Lookup::Matched(matched) = self.table.lookup(&http::Method::POST, path)
            && matched.route.method.is_client_streaming()
        {
            lookup = Lookup::Matched(matched);
        }
        match lookup {
            Lookup::Matched(matched) => Ok(matched),
            Lookup::NotFound => {
                Err(GatewayError::NotFound { method: parts.method.clone(), path: parts.uri.path().to_owned() })
            }
            Lookup::MethodNotAllowed { allow } => Err(GatewayError::MethodNotAllowed {
                method: parts.method.clone(),
                path: parts.uri.path().to_owned(),
                allow,
            }),
            Lookup::InvalidPath { reason } => Err(GatewayError::InvalidPath { reason }),
        }
    }
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
}

/// Whether a call is unary or streams, for its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Unary,
    Stream,
}

/// Where one call goes and what goes with it.
pub(crate) struct CallTarget<'g> {
    pub(crate) upstream: &'g Upstream,
    pub(crate) metadata: HeaderMap,
    pub(crate) deadline: Option<Duration>,
}

/// Reads the body of a route that takes one: JSON only, at most `limit` bytes whether the
/// length is declared or the body is chunked.
pub(crate) async fn read_body(
    route: &Route,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    if route.body == BodySelector::Empty {
        return Ok(Bytes::new());
    }
    let bytes = read_limited(headers, body, limit).await?;
    if !bytes.trim_ascii().is_empty() && !is_json(headers) {
        return Err(GatewayError::UnsupportedMediaType { content_type: content_type(headers).to_owned() });
    }
    Ok(bytes)
}

/// A composite route's JSON body (`null` when empty), at most `limit` bytes.
pub(crate) async fn read_body_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<serde_json::Value, GatewayError> {
    let bytes = read_limited(headers, body, limit).await?;
    if bytes.trim_ascii().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    if !is_json(headers) {
        return Err(GatewayError::UnsupportedMediaType { content_type: content_type(headers).to_owned() });
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::Transcode(TranscodeError::InvalidJson { field: None, reason: e.to_string() }))
}

/// A 404 or 405 for a path that composite routes also match under other methods.
fn allow_also(error: GatewayError, parts: &Parts, also: Vec<http::Method>) -> GatewayError {
    if also.is_empty() {
        return error;
    }
    let path = parts.uri.path().to_owned();
    match error {
        GatewayError::NotFound { .. } => {
            GatewayError::MethodNotAllowed { method: parts.method.clone(), path, allow: also }
        }
        GatewayError::MethodNotAllowed { mut allow, .. } => {
            allow.extend(also.into_iter().filter(|m| !allow.contains(m)).collect::<Vec<_>>());
            GatewayError::MethodNotAllowed { method: parts.method.clone(), path, allow }
        }
        other => other,
    }
}

/// The whole body, at most `limit` bytes whether the length is declared or it is chunked.
pub(crate) async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    let declared: Option<u64> = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(GatewayError::BodyTooLarge { limit }),
        Err(e) => Err(GatewayError::BodyRead { reason: e.to_string() }),
    }
}

/// `application/json` or any `+json` type, parameters (charset) aside.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A call's deadline: the one the client asked for, or for unary calls the policy's (else the
/// upstream's) `timeout` when that is sooner.
pub(crate) fn deadline(
    requested: Option<Duration>,
    kind: CallKind,
    access: &Access<'_>,
    upstream: &Upstream,
) -> Option<Duration> {
    match kind {
        CallKind::Unary => earliest(requested, access.policy.and_then(|p| p.timeout).or(upstream.timeout)),
        CallKind::Stream => requested,
    }
}

/// The sooner of two deadlines, either of which may be absent.
pub(crate) fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A raw (`google.api.HttpBody`) response: its bytes, with its content type.
pub(crate) fn raw_response(content_type: String, data: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(data));
    let content_type = if content_type.is_empty() { "application/octet-stream".to_owned() } else { content_type };
    if let Ok(value) = http::HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// The request's `Content-Type`, or empty.
pub(crate) fn content_type(headers: &HeaderMap) -> &str {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
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
