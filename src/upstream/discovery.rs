//! An upstream's endpoints, kept up to date: an endpoint whose host is a name is resolved
//! every `resolve_interval`, and each address the name resolves to becomes an endpoint of its
//! own — what a Kubernetes headless service (one DNS record per pod) or a DNS round robin
//! gives. Connections go to the address; TLS and `:authority` keep the name.
//!
//! Endpoints still there after a new resolution keep their connection, their calls in
//! progress and their health; new ones get a connection (and a health checker) on first use;
//! removed ones are dropped once the calls on them end. A failed or empty resolution keeps
//! what the name resolved to before, so a DNS outage never empties an upstream.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::connection::{Connector, EndpointConnection};
use super::endpoint::EndpointState;
use super::health;
use crate::config::{Endpoint, HealthCheckConfig, OutlierConfig};

/// Resolves a host name and port to addresses.
pub type Resolver = Arc<dyn Fn(String, u16) -> ResolveFuture + Send + Sync>;

/// A resolution in progress.
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// The system's resolver (getaddrinfo, on a blocking thread).
pub fn system_resolver() -> Resolver {
    Arc::new(|host: String, port: u16| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    })
}

/// The endpoints of one upstream now, and what it takes to add one.
pub struct Membership {
    upstream: String,
    /// The endpoints as configured.
    configured: Vec<Endpoint>,
    members: ArcSwap<Vec<Arc<EndpointState>>>,
    connector: Connector,
    connect_timeout: Duration,
    outlier: OutlierConfig,
    health_check: Option<HealthCheckConfig>,
}

impl Membership {
    /// The configured endpoints, names unresolved (connections resolve them) until the first
    /// resolution.
    pub fn new(
        upstream: &str,
        configured: Vec<Endpoint>,
        connector: Connector,
        connect_timeout: Duration,
        outlier: OutlierConfig,
        health_check: Option<HealthCheckConfig>,
    ) -> Arc<Membership> {
        let membership = Membership {
            upstream: upstream.to_owned(),
            configured,
            members: ArcSwap::from_pointee(Vec::new()),
            connector,
            connect_timeout,
            outlier,
            health_check,
        };
        let members = membership.configured.iter().map(|e| membership.member(e.clone())).collect();
        membership.members.store(Arc::new(members));
        Arc::new(membership)
    }

    /// The endpoints now.
    pub fn current(&self) -> Arc<Vec<Arc<EndpointState>>> {
        self.members.load_full()
    }

    /// Whether any configured host is a name to resolve.
    pub fn has_names(&self) -> bool {
        self.configured.iter().any(Endpoint::is_name)
    }

    /// Makes these the endpoints, keeping the state of those already there; returns the
    /// endpoints added and removed.
    pub fn update(&self, endpoints: Vec<Endpoint>) -> (Vec<Endpoint>, Vec<Endpoint>) {
        let current = self.current();
        let mut added = Vec::new();
        let next: Vec<Arc<EndpointState>> = endpoints
            .into_iter()
            .map(|endpoint| match current.iter().find(|m| *m.connection().endpoint() == endpoint) {
                Some(kept) => kept.clone(),
                None => {
                    added.push(endpoint.clone());
                    self.member(endpoint)
                }
            })
            .collect();
        let removed = current
            .iter()
            .filter(|m| !next.iter().any(|n| Arc::ptr_eq(m, n)))
            .map(|m| m.connection().endpoint().clone())
            .collect();
        self.members.store(Arc::new(next));
        (added, removed)
    }

    /// Resolves every named endpoint once; the endpoints that results in.
    pub async fn resolve(&self, resolver: &Resolver) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        for configured in &self.configured {
            if !configured.is_name() {
                endpoints.push(configured.clone());
                continue;
            }
            match resolver(configured.host().to_owned(), configured.port()).await {
                Ok(mut addresses) if !addresses.is_empty() => {
                    addresses.sort();
                    addresses.dedup();
                    endpoints.extend(addresses.into_iter().map(|a| configured.at(a)));
                }
                outcome => {
                    let why = outcome.err().map_or_else(|| "no addresses".to_owned(), |e| e.to_string());
                    tracing::warn!(upstream = %self.upstream, "resolving {configured} failed ({why}): keeping its endpoints");
                    let before = self.current();
                    let kept =
                        before.iter().map(|m| m.connection().endpoint()).filter(|e| e.configured() == *configured);
                    endpoints.extend(kept.cloned());
                }
            }
        }
        endpoints
    }

    fn member(&self, endpoint: Endpoint) -> Arc<EndpointState> {
        let connection = EndpointConnection::new(endpoint, self.connector.clone(), self.connect_timeout);
        let member = Arc::new(EndpointState::new(connection, self.outlier.clone()));
        if let Some(check) = &self.health_check {
            health::spawn(&self.upstream, &member, check, &self.connector);
        }
        member
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("members", &self.current()).finish_non_exhaustive()
    }
}

/// Resolves the names of `membership` now and every `interval`, while it lives and a tokio
/// runtime runs.
pub fn spawn(membership: &Arc<Membership>, interval: Duration, resolver: Resolver) {
    if !membership.has_names() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(follow(Arc::downgrade(membership), interval, resolver));
}

async fn follow(membership: Weak<Membership>, interval: Duration, resolver: Resolver) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(membership) = membership.upgrade() else { return };
        let endpoints = membership.resolve(&resolver).await;
        let (added, removed) = membership.update(endpoints);
        if !added.is_empty() || !removed.is_empty() {
            let list =
                |endpoints: &[Endpoint]| endpoints.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            tracing::info!(
                upstream = %membership.upstream,
                "endpoints resolved: added [{}], removed [{}]",
                list(&added),
                list(&removed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A resolver whose answers the test changes.
    fn scripted(answers: Arc<Mutex<io::Result<Vec<SocketAddr>>>>) -> Resolver {
        Arc::new(move |_, port| {
            let answer = match &*answers.lock().unwrap() {
                Ok(addresses) => Ok(addresses.iter().map(|a| SocketAddr::new(a.ip(), port)).collect()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            Box::pin(async move { answer })
        })
    }

    fn membership(urls: &[&str]) -> Arc<Membership> {
        let endpoints = urls.iter().map(|u| u.parse().unwrap()).collect();
        Membership::new(
            "users",
            endpoints,
            super::super::tcp_connector(),
            Duration::from_secs(1),
            OutlierConfig::default(),
            None,
        )
    }

    fn labels(membership: &Membership) -> Vec<String> {
        membership.current().iter().map(|m| m.connection().label().to_string()).collect()
    }

    #[tokio::test]
    async fn every_address_becomes_an_endpoint_and_kept_ones_keep_their_state() {
        let membership = membership(&["http://users.internal:50051", "http://10.0.0.9:50051"]);
        assert_eq!(labels(&membership), ["http://users.internal:50051", "http://10.0.0.9:50051"]);
        let answers = Arc::new(Mutex::new(Ok(vec!["10.0.0.2:0".parse().unwrap(), "10.0.0.1:0".parse().unwrap()])));
        let resolver = scripted(answers.clone());

        let endpoints = membership.resolve(&resolver).await;
        let (added, removed) = membership.update(endpoints);
        assert_eq!(added.len(), 2);
        assert_eq!(removed.len(), 1, "the unresolved name");
        assert_eq!(
            labels(&membership),
            [
                "http://users.internal:50051 (10.0.0.1:50051)",
                "http://users.internal:50051 (10.0.0.2:50051)",
                "http://10.0.0.9:50051",
            ]
        );
        let kept = membership.current()[1].clone();
        let _call = kept.begin_call();

        // One pod goes, another comes.
        *answers.lock().unwrap() = Ok(vec!["10.0.0.2:0".parse().unwrap(), "10.0.0.3:0".parse().unwrap()]);
        let endpoints = membership.resolve(&resolver).await;
        let (added, removed) = membership.update(endpoints);
        assert_eq!(
            added.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["http://users.internal:50051 (10.0.0.3:50051)"]
        );
        assert_eq!(
            removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["http://users.internal:50051 (10.0.0.1:50051)"]
        );
        let now = membership.current();
        let still = now.iter().find(|m| Arc::ptr_eq(m, &kept)).expect("the same endpoint state");
        assert_eq!(still.outstanding(), 1);
    }

    #[tokio::test]
    async fn a_failed_resolution_keeps_the_endpoints_it_had() {
        let membership = membership(&["http://users.internal:50051"]);
        let answers = Arc::new(Mutex::new(Ok(vec!["10.0.0.1:0".parse().unwrap()])));
        let resolver = scripted(answers.clone());
        let endpoints = membership.resolve(&resolver).await;
        membership.update(endpoints);
        *answers.lock().unwrap() = Err(io::Error::other("SERVFAIL"));
        let endpoints = membership.resolve(&resolver).await;
        let (added, removed) = membership.update(endpoints);
        assert!(added.is_empty() && removed.is_empty());
        *answers.lock().unwrap() = Ok(Vec::new());
        let endpoints = membership.resolve(&resolver).await;
        membership.update(endpoints);
        assert_eq!(labels(&membership), ["http://users.internal:50051 (10.0.0.1:50051)"]);
    }
}
