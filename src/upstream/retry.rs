//! When a failed unary call is tried again, and after how long.
//!
//! Safe only: a call that never reached the upstream (no connection; a stream the upstream
//! refused or never processed, as HTTP/2's REFUSED_STREAM and GOAWAY say) is always tried
//! again; one that may have reached it (UNAVAILABLE, a connection broken under it) only for
//! idempotent methods. Every retry draws on a budget that calls fill (tower's `TpsBudget`: a
//! fraction of the calls made, plus a floor per second), so that when an upstream is in
//! trouble retries cannot multiply the load on it. Waits grow exponentially with full jitter,
//! so that clients failed together do not come back together.

use std::time::Duration;

use tonic::Code;
use tower::retry::budget::{Budget, TpsBudget};

use super::UpstreamError;
use crate::config::RetryConfig;

/// How long the budget remembers calls and retries.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// The longest wait before a retry, however many came before.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// An upstream's retry policy and budget.
#[derive(Debug)]
pub struct Retries {
    max: u32,
    backoff: Duration,
    budget: TpsBudget,
}

/// A failed try, and whether the upstream may have acted on it.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: UpstreamError,
    /// The request may have reached the upstream.
    pub sent: bool,
}

impl Retries {
    /// The policy of an upstream's `retries`.
    pub fn new(config: &RetryConfig) -> Retries {
        // `TpsBudget` asserts its bounds; the config's are checked, these keep an embedder's in them.
        let ratio = if config.budget_ratio.is_nan() { 0.0 } else { config.budget_ratio.clamp(0.0, 1000.0) };
        let floor = config.min_per_second.min(i32::MAX as u32 - 1);
        Retries {
            max: config.max_retries,
            backoff: config.backoff,
            budget: TpsBudget::new(BUDGET_WINDOW, floor, ratio),
        }
    }

    /// A call was made: it adds to the budget (unless retries are off).
    pub fn called(&self) {
        if self.max > 0 {
            self.budget.deposit();
        }
    }

    /// The wait before retry number `retry` (from 1) of a call that failed so, when a retry is
    /// safe, allowed and within the budget.
    pub fn allow(&self, retry: u32, failure: &Failure, idempotent: bool) -> Option<Duration> {
        if retry > self.max || !failure.retryable(idempotent) || !self.budget.withdraw() {
            return None;
        }
        Some(full_jitter(self.backoff, retry))
    }
}

impl Failure {
    /// Nothing reached the upstream.
    pub fn not_sent(error: UpstreamError) -> Failure {
        Failure { error, sent: false }
    }

    /// The request may have reached the upstream.
    pub fn sent(error: UpstreamError) -> Failure {
        Failure { error, sent: true }
    }

    /// The request was sent, but the upstream refused the stream (`refused`) — it did not act.
    pub fn refused_or_sent(error: UpstreamError, refused: bool) -> Failure {
        Failure { error, sent: !refused }
    }

    fn retryable(&self, idempotent: bool) -> bool {
        match &self.error {
            UpstreamError::Unreachable { .. } => !self.sent || idempotent,
            UpstreamError::Status(reply) => idempotent && reply.status.code() == Code::Unavailable,
            _ => false,
        }
    }
}

/// Whether an HTTP/2 stream error says the upstream never processed the stream.
pub fn refused(error: &h2::Error) -> bool {
    error.is_go_away() || error.reason() == Some(h2::Reason::REFUSED_STREAM)
}

/// A random wait between zero and `base` doubled for each retry before this one.
fn full_jitter(base: Duration, retry: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32.checked_shl(retry.saturating_sub(1).min(16)).unwrap_or(u32::MAX));
    let ceiling = ceiling.min(MAX_BACKOFF);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> UpstreamError {
        UpstreamError::Unreachable { upstream: "u".into(), reason: "refused".into() }
    }

    fn unavailable() -> UpstreamError {
        let reply = super::super::StatusReply {
            upstream: "u".into(),
            endpoint: None,
            status: tonic::Status::unavailable("down"),
            headers: http::HeaderMap::new(),
        };
        UpstreamError::Status(Box::new(reply))
    }

    fn policy(max_retries: u32, budget_ratio: f32, min_per_second: u32) -> Retries {
        Retries::new(&RetryConfig { max_retries, backoff: Duration::from_millis(10), budget_ratio, min_per_second })
    }

    #[test]
    fn only_what_is_safe_is_retried() {
        let retries = policy(5, 1.0, 100);
        assert!(retries.allow(1, &Failure::not_sent(unreachable()), false).is_some(), "never reached it");
        assert!(retries.allow(1, &Failure::sent(unreachable()), false).is_none(), "may have acted");
        assert!(retries.allow(1, &Failure::sent(unreachable()), true).is_some(), "idempotent");
        assert!(retries.allow(1, &Failure::sent(unavailable()), false).is_none());
        assert!(retries.allow(1, &Failure::sent(unavailable()), true).is_some());
        let late = UpstreamError::DeadlineExceeded { upstream: "u".into(), deadline: Duration::from_secs(1) };
        assert!(retries.allow(1, &Failure::sent(late), true).is_none(), "no time is left for one");
        assert!(retries.allow(6, &Failure::not_sent(unreachable()), true).is_none(), "max_retries");
    }

    #[test]
    fn the_budget_caps_retries_at_a_fraction_of_calls() {
        // No floor: only deposits pay for retries, one retry per ten calls.
        let retries = policy(5, 0.1, 0);
        for _ in 0..100 {
            retries.called();
        }
        let allowed = (0..100).filter(|_| retries.allow(1, &Failure::not_sent(unreachable()), true).is_some()).count();
        assert!((9..=11).contains(&allowed), "{allowed} retries for 100 calls");
    }

    #[test]
    fn waits_are_jittered_below_a_doubling_ceiling() {
        for retry in 1..=4 {
            let ceiling = Duration::from_millis(10 * (1 << (retry - 1)));
            for _ in 0..100 {
                assert!(full_jitter(Duration::from_millis(10), retry) <= ceiling);
            }
        }
        assert!(full_jitter(Duration::from_secs(10), 30) <= MAX_BACKOFF);
    }
}
