//! The retry decision and its backoff.

use std::time::{Duration, Instant};

use rand::{Rng, RngExt};
use thiserror::Error;

use super::{FailureKind, RetryBudget, RetryCondition};

/// Why a [`RetryPolicy`] could not be built: each variant is one rule that was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InvalidRetryPolicy {
    /// `max_attempts` was zero.
    #[error("max_attempts must be at least 1 (1 means no retries)")]
    ZeroMaxAttempts,
    /// `base_delay` was longer than `max_delay`.
    #[error("base_delay ({base:?}) must not exceed max_delay ({max:?})")]
    BaseAboveMax {
        /// The configured `base_delay`.
        base: Duration,
        /// The configured `max_delay`.
        max: Duration,
    },
}

/// One failed attempt, as the data plane describes it to [`RetryPolicy::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptFailure {
    /// The 1-based number of the attempt that failed (1 is the original request).
    pub attempt: u32,
    /// How it failed.
    pub kind: FailureKind,
    /// Whether the request method is idempotent (see [`is_idempotent`]).
    pub idempotent: bool,
    /// Whether the request body can be sent again (empty, or buffered).
    pub body_replayable: bool,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again (on another backend) after waiting `backoff`; a budget token has been spent.
    Retry {
        /// How long to wait before the next attempt.
        backoff: Duration,
    },
    /// Answer the client with this failure.
    GiveUp(GiveUpReason),
}

/// Why [`RetryPolicy::decide`] gave up, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GiveUpReason {
    /// The failed attempt was the last one `max_attempts` allows.
    AttemptsExhausted,
    /// The failure kind is not listed in `retry_on`.
    NotRetryable,
    /// The body was streamed and cannot be sent again.
    BodyNotReplayable,
    /// The method is not idempotent and the request may have reached the backend (a gRPC
    /// status `retry_on` lists excepted).
    NotIdempotent,
    /// The shared retry budget has no token left.
    BudgetExhausted,
}

impl GiveUpReason {
    /// The stable metric label, e.g. `budget_exhausted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::NotRetryable => "not_retryable",
            Self::BodyNotReplayable => "body_not_replayable",
            Self::NotIdempotent => "not_idempotent",
            Self::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// When and how to retry a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    retry_on: Vec<RetryCondition>,
}

impl Default for RetryPolicy {
    /// The configuration defaults: 3 attempts, backoff from 50 ms up to 2 s, after connect
    /// errors, timeouts, resets, 502, 503 and 504.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            retry_on: vec![
                RetryCondition::ConnectError,
                RetryCondition::Timeout,
                RetryCondition::Reset,
                RetryCondition::Status(502),
                RetryCondition::Status(503),
                RetryCondition::Status(504),
            ],
        }
    }
}

impl RetryPolicy {
    /// Builds a policy: at most `max_attempts` attempts per request (the original included),
    /// waiting up to `base_delay * 2^(n-1)` (capped at `max_delay`) before retry `n`, for the
    /// failures listed in `retry_on`.
    ///
    /// # Errors
    /// `max_attempts` must be at least 1, and `base_delay` at most `max_delay` (zero for both
    /// means a retry follows at once).
    pub fn try_new(
        max_attempts: u32,
        base_delay: Duration,
        max_delay: Duration,
        retry_on: Vec<RetryCondition>,
    ) -> Result<Self, InvalidRetryPolicy> {
        if max_attempts == 0 {
            return Err(InvalidRetryPolicy::ZeroMaxAttempts);
        }
        if base_delay > max_delay {
            return Err(InvalidRetryPolicy::BaseAboveMax {
                base: base_delay,
                max: max_delay,
            });
        }
        Ok(Self {
            max_attempts,
            base_delay,
            max_delay,
            retry_on,
        })
    }

    /// Attempts per request, the original included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff bound before the first retry.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The cap on the backoff bound.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The failure kinds that may be retried.
    pub fn retry_on(&self) -> &[RetryCondition] {
        &self.retry_on
    }

    /// Decides whether to retry after `failure`.
    ///
    /// The checks run in this order, the first that fails giving the reason: attempts left,
    /// kind listed in `retry_on`, body replayable, idempotent (only when the request may have
    /// reached the backend: a failed connect is safe to retry for any method, and so is a gRPC
    /// status `retry_on` lists, as gRPC's own retry policy has it), and last a token
    /// from `budget`, so a token is spent only on a retry that will happen.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use lb_core::retry::{
    ///     AttemptFailure, FailureKind, GiveUpReason, RetryBudget, RetryCondition, RetryDecision,
    ///     RetryPolicy, is_idempotent,
    /// };
    /// use rand::SeedableRng;
    ///
    /// let policy = RetryPolicy::try_new(
    ///     3,
    ///     Duration::from_millis(25),
    ///     Duration::from_secs(1),
    ///     vec![RetryCondition::ConnectError, RetryCondition::Status(503)],
    /// )?;
    /// # #[allow(clippy::disallowed_methods)]
    /// let now = Instant::now(); // read by the data plane, never by lb-core
    /// let budget = RetryBudget::try_new(0.2, 10, now).expect("valid budget");
    /// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    ///
    /// budget.deposit(now); // the original request
    /// let failure = AttemptFailure {
    ///     attempt: 1,
    ///     kind: FailureKind::ConnectRefused,
    ///     idempotent: is_idempotent("POST"),
    ///     body_replayable: true,
    /// };
    /// // The POST never reached the backend, so it is retried, within 25 ms.
    /// match policy.decide(&failure, &budget, now, &mut rng) {
    ///     RetryDecision::Retry { backoff } => assert!(backoff <= Duration::from_millis(25)),
    ///     RetryDecision::GiveUp(reason) => panic!("unexpected {reason:?}"),
    /// }
    ///
    /// // A 503 may have had effects: the POST is not retried.
    /// let failure = AttemptFailure { attempt: 2, kind: FailureKind::Status(503), ..failure };
    /// assert_eq!(
    ///     policy.decide(&failure, &budget, now, &mut rng),
    ///     RetryDecision::GiveUp(GiveUpReason::NotIdempotent),
    /// );
    /// # Ok::<(), lb_core::retry::InvalidRetryPolicy>(())
    /// ```
    pub fn decide<R: Rng + ?Sized>(
        &self,
        failure: &AttemptFailure,
        budget: &RetryBudget,
        now: Instant,
        rng: &mut R,
    ) -> RetryDecision {
        let reason = if failure.attempt >= self.max_attempts {
            Some(GiveUpReason::AttemptsExhausted)
        } else if !self.retry_on.iter().any(|c| failure.kind.matches(c)) {
            Some(GiveUpReason::NotRetryable)
        } else if !failure.body_replayable {
            Some(GiveUpReason::BodyNotReplayable)
        } else if failure.kind.may_have_reached_backend()
            && !failure.idempotent
            && !failure.kind.listed_as_safe()
        {
            Some(GiveUpReason::NotIdempotent)
        } else if !budget.try_withdraw(now) {
            Some(GiveUpReason::BudgetExhausted)
        } else {
            None
        };
        match reason {
            Some(reason) => RetryDecision::GiveUp(reason),
            None => RetryDecision::Retry {
                backoff: self.backoff(failure.attempt, rng),
            },
        }
    }

    /// The wait after failed attempt `attempt` (1-based): uniform in
    /// `[0, min(max_delay, base_delay * 2^(attempt-1))]` ("full jitter"). Attempt 0 is treated
    /// as 1; huge attempt numbers give the `max_delay` bound without overflowing.
    pub fn backoff<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let bound = self.backoff_bound(attempt);
        // Bounds past u64 nanoseconds (584 years) are clamped rather than rejected.
        let bound_nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=bound_nanos))
    }

    /// The upper bound of [`backoff`](Self::backoff) for `attempt`.
    pub fn backoff_bound(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1);
        1u32.checked_shl(exponent)
            .and_then(|factor| self.base_delay.checked_mul(factor))
            .map_or(self.max_delay, |delay| delay.min(self.max_delay))
    }
}

/// Whether `method` is idempotent per RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
/// Method names are case-sensitive, so `get` is not `GET`.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[allow(clippy::disallowed_methods)] // one real Instant as a base; nothing depends on its value
    fn t0() -> Instant {
        Instant::now()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> RetryPolicy {
        let retry_on = vec![
            RetryCondition::ConnectError,
            RetryCondition::Timeout,
            RetryCondition::Status(503),
            RetryCondition::GrpcStatus(14),
        ];
        RetryPolicy::try_new(3, ms(10), ms(100), retry_on).expect("valid test policy")
    }

    /// (attempt, kind, idempotent, body replayable, budget has a token, expected give-up)
    type DecisionRow = (u32, FailureKind, bool, bool, bool, Option<GiveUpReason>);

    #[test]
    fn decision_table() {
        use FailureKind::*;
        use GiveUpReason::*;
        #[rustfmt::skip]
        let rows: &[DecisionRow] = &[
            (1, ConnectRefused,      false, true,  true,  None),
            (1, ConnectTimeout,      false, true,  true,  None),
            (2, ResponseTimeout,     true,  true,  true,  None),
            (1, Status(503),         true,  true,  true,  None),
            (1, ResponseTimeout,     false, true,  true,  Some(NotIdempotent)),
            (1, Status(503),         false, true,  true,  Some(NotIdempotent)),
            (1, ResetBeforeResponse, true,  true,  true,  Some(NotRetryable)),
            (1, Status(500),         true,  true,  true,  Some(NotRetryable)),
            (3, ConnectRefused,      true,  true,  true,  Some(AttemptsExhausted)),
            (9, ConnectRefused,      true,  true,  true,  Some(AttemptsExhausted)),
            (2, ConnectRefused,      true,  false, true,  Some(BodyNotReplayable)),
            (1, ConnectRefused,      true,  true,  false, Some(BudgetExhausted)),
            // Order of the checks: attempts, retry_on, body, idempotency, budget.
            (3, Status(500),         false, false, false, Some(AttemptsExhausted)),
            (1, Status(500),         false, false, false, Some(NotRetryable)),
            (1, Status(503),         false, false, false, Some(BodyNotReplayable)),
            (1, Status(503),         false, true,  false, Some(NotIdempotent)),
            // A listed gRPC status is retried although gRPC calls are POSTs...
            (1, GrpcStatus(14),      false, true,  true,  None),
            // ...an unlisted one is not, nor one whose body cannot be sent again.
            (1, GrpcStatus(8),       false, true,  true,  Some(NotRetryable)),
            (1, GrpcStatus(14),      false, false, true,  Some(BodyNotReplayable)),
            (1, GrpcStatus(14),      false, true,  false, Some(BudgetExhausted)),
        ];
        let now = t0();
        let mut rng = StdRng::seed_from_u64(1);
        for &(attempt, kind, idempotent, body_replayable, funded, expected) in rows {
            let min_per_sec = if funded { 1 } else { 0 };
            let budget = RetryBudget::try_new(0.0, min_per_sec, now).expect("valid budget");
            let failure = AttemptFailure {
                attempt,
                kind,
                idempotent,
                body_replayable,
            };
            let decision = policy().decide(&failure, &budget, now, &mut rng);
            match (decision, expected) {
                (RetryDecision::Retry { backoff }, None) => {
                    assert!(backoff <= policy().backoff_bound(attempt), "{failure:?}");
                    assert!(budget.available(now) < 1.0, "{failure:?}: token spent");
                }
                (RetryDecision::GiveUp(reason), Some(expected)) => {
                    assert_eq!(reason, expected, "{failure:?}");
                    if funded {
                        assert_eq!(budget.available(now), 1.0, "{failure:?}: token kept");
                    }
                }
                (decision, expected) => panic!("{failure:?}: {decision:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn backoff_bounds_double_then_cap() {
        let p = policy();
        let rows = [
            (0, 10),
            (1, 10),
            (2, 20),
            (3, 40),
            (4, 80),
            (5, 100),
            (32, 100),
            (33, 100),
        ];
        for (attempt, bound) in rows {
            assert_eq!(p.backoff_bound(attempt), ms(bound), "attempt {attempt}");
        }
        assert_eq!(p.backoff_bound(u32::MAX), ms(100));
        let huge = RetryPolicy::try_new(2, Duration::MAX, Duration::MAX, vec![]).expect("valid");
        assert_eq!(huge.backoff_bound(u32::MAX), Duration::MAX);
        let mut rng = StdRng::seed_from_u64(2);
        assert!(huge.backoff(u32::MAX, &mut rng) <= Duration::MAX);
    }

    #[test]
    fn backoff_jitter_spans_the_whole_range() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(3);
        let samples: Vec<Duration> = (0..2000).map(|_| p.backoff(3, &mut rng)).collect();
        assert!(samples.iter().all(|d| *d <= ms(40)));
        // Full jitter: both the bottom and the top tenth of [0, 40 ms] are hit.
        assert!(samples.iter().any(|d| *d < ms(4)));
        assert!(samples.iter().any(|d| *d > ms(36)));
    }

    #[test]
    fn policy_rules() {
        let cases = [
            (
                RetryPolicy::try_new(0, ms(1), ms(2), vec![]),
                Some(InvalidRetryPolicy::ZeroMaxAttempts),
            ),
            // No backoff at all: a retry follows at once.
            (RetryPolicy::try_new(1, ms(0), ms(0), vec![]), None),
            (
                RetryPolicy::try_new(1, ms(3), ms(2), vec![]),
                Some(InvalidRetryPolicy::BaseAboveMax {
                    base: ms(3),
                    max: ms(2),
                }),
            ),
            (RetryPolicy::try_new(1, ms(2), ms(2), vec![]), None),
        ];
        for (result, expected) in cases {
            assert_eq!(result.err(), expected);
        }
    }

    #[test]
    fn idempotent_methods() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(method), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "get", "Put", ""] {
            assert!(!is_idempotent(method), "{method}");
        }
    }

    #[test]
    fn give_up_labels_are_stable() {
        assert_eq!(GiveUpReason::BudgetExhausted.as_str(), "budget_exhausted");
        assert_eq!(GiveUpReason::NotIdempotent.as_str(), "not_idempotent");
    }
}
