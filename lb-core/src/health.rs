//! Per-backend health from active checks: a pure probe verdict and a hysteresis counter.
//!
//! One failed probe should not pull a backend out of rotation, nor one lucky probe put a broken
//! one back: the [`HealthTracker`] flips only after `unhealthy_threshold` consecutive failures or
//! `healthy_threshold` consecutive successes, and any opposite result resets the streak. This is
//! the scheme of HAProxy's `rise`/`fall` and pingora's `health_check.rs`. Deciding whether one
//! probe passed is a separate pure function, [`probe_verdict`], so the checker task in the data
//! plane only does IO.
//!
//! The initial status is a parameter. The data plane starts backends [`HealthStatus::Healthy`]
//! so traffic flows at once after start or reload: a backend that is in fact down is caught by
//! connect-error retries and its circuit breaker until the checks confirm it unhealthy, whereas
//! starting unhealthy would refuse all traffic for `healthy_threshold` check intervals.

use thiserror::Error;

/// An inclusive range of HTTP status codes that a health probe accepts, `200-399` in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// Lowest accepted status, inclusive.
    pub min: u16,
    /// Highest accepted status, inclusive.
    pub max: u16,
}

impl StatusRange {
    /// Whether `status` lies within the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

impl Default for StatusRange {
    fn default() -> Self {
        Self { min: 200, max: 399 }
    }
}

impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// Why a [`HealthPolicy`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InvalidHealthPolicy {
    /// `healthy_threshold` was zero.
    #[error("healthy_threshold must be at least 1")]
    ZeroHealthyThreshold,
    /// `unhealthy_threshold` was zero.
    #[error("unhealthy_threshold must be at least 1")]
    ZeroUnhealthyThreshold,
}

/// How many consecutive probe results flip a backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive successes that bring an unhealthy backend back. A zero here (possible only
    /// by building the struct directly) acts as 1.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy backend out. A zero acts as 1.
    pub unhealthy_threshold: u32,
}

impl HealthPolicy {
    /// Builds a policy.
    ///
    /// # Errors
    /// Both thresholds must be at least 1.
    pub fn try_new(
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Result<Self, InvalidHealthPolicy> {
        if healthy_threshold == 0 {
            return Err(InvalidHealthPolicy::ZeroHealthyThreshold);
        }
        if unhealthy_threshold == 0 {
            return Err(InvalidHealthPolicy::ZeroUnhealthyThreshold);
        }
        Ok(Self {
            healthy_threshold,
            unhealthy_threshold,
        })
    }
}

impl Default for HealthPolicy {
    /// The configuration defaults: 2 successes bring a backend back, 3 failures take it out.
    fn default() -> Self {
        Self {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

/// A backend's health as the active checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// Eligible for traffic.
    Healthy,
    /// Taken out of rotation until enough probes succeed.
    Unhealthy,
}

impl HealthStatus {
    /// The stable label used in metrics and logs: `healthy` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }

    /// The value of the health gauge: 1 healthy, 0 unhealthy.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Healthy => 1,
            Self::Unhealthy => 0,
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A flip of a backend's health, returned by [`HealthTracker::record`] for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthTransition {
    /// The status before the flip.
    pub from: HealthStatus,
    /// The status after the flip.
    pub to: HealthStatus,
}

/// The hysteresis counter of one backend.
///
/// ```
/// use lb_core::health::{HealthPolicy, HealthStatus, HealthTracker};
///
/// let policy = HealthPolicy::try_new(2, 3)?;
/// let mut tracker = HealthTracker::new(policy, HealthStatus::Healthy);
/// assert_eq!(tracker.record(false), None);
/// assert_eq!(tracker.record(false), None);
/// let flip = tracker.record(false).expect("third failure flips");
/// assert_eq!(flip.to, HealthStatus::Unhealthy);
/// # Ok::<(), lb_core::health::InvalidHealthPolicy>(())
/// ```
#[derive(Debug, Clone)]
pub struct HealthTracker {
    policy: HealthPolicy,
    status: HealthStatus,
    /// Successes since the last failure.
    successes: u32,
    /// Failures since the last success.
    failures: u32,
}

impl HealthTracker {
    /// A tracker starting at `initial` with empty streaks. The data plane passes
    /// [`HealthStatus::Healthy`] so traffic flows before the first check (see the module docs).
    pub fn new(policy: HealthPolicy, initial: HealthStatus) -> Self {
        Self {
            policy,
            status: initial,
            successes: 0,
            failures: 0,
        }
    }

    /// The current status.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Records one probe verdict; returns the flip it caused, if any.
    pub fn record(&mut self, success: bool) -> Option<HealthTransition> {
        let (streak, threshold, target) = if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            (
                self.successes,
                self.policy.healthy_threshold,
                HealthStatus::Healthy,
            )
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            (
                self.failures,
                self.policy.unhealthy_threshold,
                HealthStatus::Unhealthy,
            )
        };
        if self.status == target || streak < threshold.max(1) {
            return None;
        }
        let from = self.status;
        self.status = target;
        Some(HealthTransition { from, to: target })
    }

    /// Consecutive successful probes up to now (zero after a failure).
    pub fn consecutive_successes(&self) -> u32 {
        self.successes
    }

    /// Consecutive failed probes up to now (zero after a success).
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }
}

/// What one health probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    /// The backend answered with this status code.
    Status(u16),
    /// No answer within the probe timeout.
    Timeout,
    /// The connection could not be established.
    ConnectError,
    /// Any other failure (reset, malformed response).
    Other,
}

/// Whether a probe passed: an answer whose status lies in `expected`. Every other outcome fails.
pub fn probe_verdict(outcome: &ProbeOutcome, expected: &StatusRange) -> bool {
    match outcome {
        ProbeOutcome::Status(code) => expected.contains(*code),
        ProbeOutcome::Timeout | ProbeOutcome::ConnectError | ProbeOutcome::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::{Healthy, Unhealthy};

    #[test]
    fn hysteresis_table() {
        // (initial, healthy_threshold, unhealthy_threshold, probe results, status after each)
        #[rustfmt::skip]
        let rows: &[(HealthStatus, u32, u32, &str, &str)] = &[
            (Healthy,   2, 3, "FFF",    "HHU"),
            (Healthy,   2, 3, "FFSFF",  "HHHHH"),
            (Healthy,   2, 3, "FFSFFF", "HHHHHU"),
            (Unhealthy, 2, 3, "S",      "U"),
            (Unhealthy, 2, 3, "SS",     "UH"),
            (Unhealthy, 2, 3, "SFSS",   "UUUH"),
            (Healthy,   1, 1, "FSFS",   "UHUH"),
            (Healthy,   2, 3, "FFFSSF", "HHUUHH"),
            (Healthy,   2, 3, "SSSSS",  "HHHHH"),
            (Unhealthy, 2, 3, "FFFFF",  "UUUUU"),
        ];
        for &(initial, healthy, unhealthy, results, statuses) in rows {
            let policy = HealthPolicy::try_new(healthy, unhealthy).expect("valid");
            let mut tracker = HealthTracker::new(policy, initial);
            let mut before = initial;
            for (i, (result, status)) in results.chars().zip(statuses.chars()).enumerate() {
                let expected = if status == 'H' { Healthy } else { Unhealthy };
                let flip = tracker.record(result == 'S');
                let case = format!("{initial:?} {healthy}/{unhealthy} {results} step {i}");
                assert_eq!(tracker.status(), expected, "{case}");
                let expected_flip = (before != expected).then_some(HealthTransition {
                    from: before,
                    to: expected,
                });
                assert_eq!(flip, expected_flip, "{case}");
                before = expected;
            }
        }
    }

    #[test]
    fn streak_counters_reset_on_opposite_result() {
        let policy = HealthPolicy::try_new(5, 5).expect("valid");
        let mut tracker = HealthTracker::new(policy, Healthy);
        tracker.record(true);
        tracker.record(true);
        assert_eq!(
            (
                tracker.consecutive_successes(),
                tracker.consecutive_failures()
            ),
            (2, 0)
        );
        tracker.record(false);
        assert_eq!(
            (
                tracker.consecutive_successes(),
                tracker.consecutive_failures()
            ),
            (0, 1)
        );
    }

    #[test]
    fn zero_thresholds_are_rejected_and_tolerated() {
        assert_eq!(
            HealthPolicy::try_new(0, 1),
            Err(InvalidHealthPolicy::ZeroHealthyThreshold)
        );
        assert_eq!(
            HealthPolicy::try_new(1, 0),
            Err(InvalidHealthPolicy::ZeroUnhealthyThreshold)
        );
        // Built directly with a zero: behaves as a threshold of 1 instead of flipping on nothing.
        let policy = HealthPolicy {
            healthy_threshold: 0,
            unhealthy_threshold: 0,
        };
        let mut tracker = HealthTracker::new(policy, Healthy);
        assert_eq!(tracker.record(true), None);
        assert_eq!(tracker.record(false).map(|t| t.to), Some(Unhealthy));
    }

    #[test]
    fn probe_verdicts() {
        let range = StatusRange::default();
        let cases = [
            (ProbeOutcome::Status(200), true),
            (ProbeOutcome::Status(399), true),
            (ProbeOutcome::Status(199), false),
            (ProbeOutcome::Status(400), false),
            (ProbeOutcome::Status(503), false),
            (ProbeOutcome::Timeout, false),
            (ProbeOutcome::ConnectError, false),
            (ProbeOutcome::Other, false),
        ];
        for (outcome, expected) in cases {
            assert_eq!(probe_verdict(&outcome, &range), expected, "{outcome:?}");
        }
        let exact = StatusRange { min: 204, max: 204 };
        assert!(probe_verdict(&ProbeOutcome::Status(204), &exact));
        assert!(!probe_verdict(&ProbeOutcome::Status(200), &exact));
    }

    #[test]
    fn labels_and_gauges_are_stable() {
        assert_eq!((Healthy.as_str(), Healthy.gauge()), ("healthy", 1));
        assert_eq!((Unhealthy.as_str(), Unhealthy.gauge()), ("unhealthy", 0));
        assert_eq!(Unhealthy.to_string(), "unhealthy");
    }
}
