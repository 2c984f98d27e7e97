//! Active health checks with the standard gRPC health protocol: every `interval`, each
//! endpoint of an upstream with a `health_check` is asked `grpc.health.v1.Health/Check` by
//! tonic-health's client. `unhealthy_threshold` failed checks in a row (NOT_SERVING, an error,
//! no answer within `timeout`) take the endpoint out; `healthy_threshold` SERVING answers in a
//! row put it back, and end any ejection by outlier detection: the endpoint was seen down and
//! then up again.
//!
//! Checks go over a connection of their own (a tonic channel opened with the upstream's
//! connector, TLS included), so a check never queues behind calls and calls never wait on a
//! check. A checker stops when its endpoint is dropped — when a reload replaces the upstream.

use std::sync::{Arc, Weak};

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::connection::Connector;
use super::endpoint::{EndpointState, Health};
use crate::config::HealthCheckConfig;

/// Starts the checker of an endpoint, when a tokio runtime is running (`protogate check` and
/// `routes` build upstreams without serving them).
pub fn spawn(upstream: &str, member: &Arc<EndpointState>, config: &HealthCheckConfig, connector: &Connector) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let checker = Checker {
        upstream: upstream.to_owned(),
        member: Arc::downgrade(member),
        client: HealthClient::new(channel(member, connector, config)),
        config: config.clone(),
    };
    runtime.spawn(checker.run());
}

/// A lazily connected channel to the endpoint, through the upstream's connector.
fn channel(member: &EndpointState, connector: &Connector, config: &HealthCheckConfig) -> Channel {
    let endpoint = member.connection().endpoint().clone();
    let connector = connector.clone();
    let connect = tower::service_fn(move |_: http::Uri| {
        let connecting = connector(&endpoint);
        async move { connecting.await.map(hyper_util::rt::TokioIo::new) }
    });
    // The connector makes the TLS connection itself: tonic only needs an origin for requests.
    let origin = http::Uri::from_static("http://upstream");
    tonic::transport::Endpoint::from(origin)
        .connect_timeout(config.timeout)
        .timeout(config.timeout)
        .connect_with_connector_lazy(connect)
}

/// Checks one endpoint until it is dropped.
struct Checker {
    upstream: String,
    member: Weak<EndpointState>,
    client: HealthClient<Channel>,
    config: HealthCheckConfig,
}

impl Checker {
    async fn run(mut self) {
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut passed, mut failed) = (0u32, 0u32);
        loop {
            ticks.tick().await;
            let verdict = self.check().await;
            let Some(member) = self.member.upgrade() else { return };
            let endpoint = member.connection().label().clone();
            match verdict {
                Ok(()) => {
                    (passed, failed) = (passed.saturating_add(1), 0);
                    // A first answer settles an unknown endpoint at once.
                    let settled = passed >= self.config.healthy_threshold || member.health() == Health::Unknown;
                    if member.health() != Health::Serving && settled {
                        let was = member.set_health(Health::Serving, None);
                        if was.is_out() {
                            member.restore();
                            tracing::info!(upstream = %self.upstream, %endpoint, "endpoint back in: health check passed");
                        }
                    }
                }
                Err((verdict, reason)) => {
                    (passed, failed) = (0, failed.saturating_add(1));
                    if !member.health().is_out() && failed >= self.config.unhealthy_threshold {
                        member.set_health(verdict, Some(&reason));
                        tracing::warn!(upstream = %self.upstream, %endpoint, "endpoint taken out: {reason}");
                    } else if member.health().is_out() {
                        // Keep the latest verdict and reason for error messages.
                        member.set_health(verdict, Some(&reason));
                    }
                }
            }
        }
    }

    /// One `Health/Check`: `Ok` when the answer is SERVING; else whether the endpoint could
    /// not be reached ([`Health::Unreachable`]) or answered otherwise, and why.
    async fn check(&mut self) -> Result<(), (Health, String)> {
        let mut request = tonic::Request::new(HealthCheckRequest { service: self.config.service.clone() });
        request.set_timeout(self.config.timeout);
        let timeout = self.config.timeout;
        let answer = match tokio::time::timeout(timeout, self.client.check(request)).await {
            Err(_) => return Err((Health::Unreachable, format!("no health check answer within {timeout:?}"))),
            // The channel's own failures: no connection, or it broke before an answer.
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable || status.code() == tonic::Code::Unknown => {
                return Err((Health::Unreachable, format!("health check failed: {}", status.message())));
            }
            Ok(Err(status)) => {
                let code = crate::status::code_name(status.code());
                return Err((Health::NotServing, format!("health check answered {code}: {}", status.message())));
            }
            Ok(Ok(answer)) => answer.into_inner(),
        };
        match answer.status() {
            ServingStatus::Serving => Ok(()),
            status => Err((Health::NotServing, format!("health check says {}", status.as_str_name()))),
        }
    }
}
