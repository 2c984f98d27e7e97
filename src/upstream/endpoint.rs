//! What the gateway knows about one endpoint: its connection, the calls in progress on it
//! (for balancing), what the active health checks last said, and whether passive outlier
//! detection has ejected it.
//!
//! Everything is atomics: a request reads them to pick an endpoint and updates them when it
//! ends, with no lock on the way.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::OutlierConfig;

use super::connection::EndpointConnection;

/// One endpoint of an upstream.
#[derive(Debug)]
pub struct EndpointState {
    connection: EndpointConnection,
    /// Calls in progress on it.
    outstanding: AtomicUsize,
    /// What the active health checks say ([`Health`]).
    health: AtomicU8,
    /// Why the last check failed, for error messages and `/readyz`.
    health_reason: Mutex<Option<Arc<str>>>,
    /// Connect failures or UNAVAILABLE answers in a row.
    failures: AtomicU32,
    /// Ejections in a row (each lasts twice as long as the one before).
    ejections: AtomicU32,
    /// Until when it is ejected, in milliseconds since `epoch`; 0 when it is not.
    ejected_until: AtomicU64,
    epoch: Instant,
    outlier: OutlierConfig,
}

/// What the active health checks say of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Not checked (no `health_check`), or not yet: taken to be serving.
    Unknown = 0,
    /// The last checks said SERVING.
    Serving = 1,
    /// The last checks were answered with anything but SERVING: it gets no calls.
    NotServing = 2,
    /// The last checks could not reach it (no connection, no answer): it gets no calls, and a
    /// call with nowhere else to go is an unreachable upstream (502), not an unavailable one.
    Unreachable = 3,
}

impl Health {
    fn from_u8(value: u8) -> Health {
        match value {
            1 => Health::Serving,
            2 => Health::NotServing,
            3 => Health::Unreachable,
            _ => Health::Unknown,
        }
    }

    /// Whether the health checks have taken the endpoint out.
    pub fn is_out(self) -> bool {
        matches!(self, Health::NotServing | Health::Unreachable)
    }
}

/// How a call on an endpoint went, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The endpoint answered (whatever the status, except UNAVAILABLE).
    Answered,
    /// No connection, or UNAVAILABLE, or the connection failed under the call.
    Failed,
}

impl EndpointState {
    /// A new endpoint, serving until checks say otherwise.
    pub fn new(connection: EndpointConnection, outlier: OutlierConfig) -> EndpointState {
        EndpointState {
            connection,
            outstanding: AtomicUsize::new(0),
            health: AtomicU8::new(Health::Unknown as u8),
            health_reason: Mutex::new(None),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch: Instant::now(),
            outlier,
        }
    }

    /// Its connection.
    pub fn connection(&self) -> &EndpointConnection {
        &self.connection
    }

    /// Calls in progress on it.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a call until the guard is dropped.
    pub fn begin_call(self: &Arc<Self>) -> CallGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        CallGuard(self.clone())
    }

    /// What the active health checks say.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Records the health checks' verdict, and why when it is not serving; returns the
    /// previous one.
    pub fn set_health(&self, health: Health, reason: Option<&str>) -> Health {
        if let Ok(mut slot) = self.health_reason.lock() {
            *slot = reason.map(Arc::from);
        }
        Health::from_u8(self.health.swap(health as u8, Ordering::Relaxed))
    }

    /// Why the last failed health check failed.
    pub fn health_reason(&self) -> Option<Arc<str>> {
        self.health_reason.lock().ok()?.clone()
    }

    /// Whether outlier detection has it ejected now.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.millis() < until
    }

    /// Whether it may get calls: health checks do not say otherwise and it is not ejected.
    pub fn is_available(&self) -> bool {
        !self.health().is_out() && !self.is_ejected()
    }

    /// Records how a call went; a run of failures ejects the endpoint.
    pub fn record(&self, result: CallResult) {
        match result {
            CallResult::Answered => {
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                if self.ejections.load(Ordering::Relaxed) != 0 && !self.is_ejected() {
                    self.ejections.store(0, Ordering::Relaxed);
                }
            }
            CallResult::Failed => {
                let threshold = self.outlier.consecutive_failures;
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if threshold > 0 && failures >= threshold && !self.is_ejected() {
                    self.eject();
                }
            }
        }
    }

    fn eject(&self) {
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed);
        let time = self
            .outlier
            .base_ejection_time
            .saturating_mul(1u32.checked_shl(ejections.min(20)).unwrap_or(u32::MAX))
            .min(self.outlier.max_ejection_time);
        self.failures.store(0, Ordering::Relaxed);
        let until = self.millis().saturating_add(u64::try_from(time.as_millis()).unwrap_or(u64::MAX)).max(1);
        self.ejected_until.store(until, Ordering::Relaxed);
        tracing::warn!(
            endpoint = %self.connection.endpoint(),
            "endpoint ejected for {time:?} after {} failed calls in a row",
            self.outlier.consecutive_failures
        );
    }

    /// Ends an ejection early: the health checks saw the endpoint down and then back, so
    /// the failures that ejected it are history.
    pub fn restore(&self) {
        self.ejected_until.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
    }

    /// How long it stays ejected, if it is.
    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let now = self.millis();
        (until != 0 && now < until).then(|| Duration::from_millis(until - now))
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A call in progress on an endpoint.
#[derive(Debug)]
pub struct CallGuard(Arc<EndpointState>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::tcp_connector;

    fn endpoint(outlier: OutlierConfig) -> Arc<EndpointState> {
        let url: crate::config::Endpoint = "http://127.0.0.1:1".parse().unwrap();
        Arc::new(EndpointState::new(EndpointConnection::new(url, tcp_connector(), Duration::from_secs(1)), outlier))
    }

    #[test]
    fn a_run_of_failures_ejects_and_an_answer_resets_the_run() {
        let outlier = OutlierConfig {
            consecutive_failures: 3,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(15),
        };
        let state = endpoint(outlier);
        state.record(CallResult::Failed);
        state.record(CallResult::Failed);
        state.record(CallResult::Answered);
        state.record(CallResult::Failed);
        state.record(CallResult::Failed);
        assert!(state.is_available(), "two failures in a row are not three");
        state.record(CallResult::Failed);
        assert!(!state.is_available());
        let time = state.ejected_for().unwrap();
        assert!(time > Duration::from_secs(9) && time <= Duration::from_secs(10), "{time:?}");
    }

    #[test]
    fn ejections_in_a_row_last_longer_up_to_the_maximum() {
        let outlier = OutlierConfig {
            consecutive_failures: 1,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(15),
        };
        let state = endpoint(outlier);
        state.record(CallResult::Failed);
        assert!(state.ejected_for().unwrap() <= Duration::from_secs(10));
        // Back early (as if the time had passed), it fails again: 20 s, capped at 15 s.
        state.ejected_until.store(0, Ordering::Relaxed);
        state.record(CallResult::Failed);
        let time = state.ejected_for().unwrap();
        assert!(time > Duration::from_secs(14) && time <= Duration::from_secs(15), "{time:?}");
    }

    #[test]
    fn zero_failures_turns_ejection_off_and_health_decides_too() {
        let state = endpoint(OutlierConfig { consecutive_failures: 0, ..OutlierConfig::default() });
        for _ in 0..100 {
            state.record(CallResult::Failed);
        }
        assert!(state.is_available());
        assert_eq!(state.set_health(Health::NotServing, Some("NOT_SERVING")), Health::Unknown);
        assert!(!state.is_available());
        assert_eq!(state.health_reason().as_deref(), Some("NOT_SERVING"));
        let guard = state.begin_call();
        assert_eq!(state.outstanding(), 1);
        drop(guard);
        assert_eq!(state.outstanding(), 0);
    }
}
