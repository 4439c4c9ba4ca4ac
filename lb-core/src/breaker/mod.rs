//! The per-backend circuit breaker: a small `&mut self` state machine, closed → open →
//! half-open → closed.
//!
//! A backend that keeps failing is taken out of rotation for a while instead of being hammered
//! (Nygard, *Release It!*, "Circuit Breaker"). The breaker counts *consecutive* failures rather
//! than a failure rate: it needs no window or clock-driven buckets, is exact under test, and a
//! single success proves the backend reachable again. After the open period a few probe requests
//! are let through (half-open); enough probe successes close the breaker, any probe failure opens
//! it again for twice as long (capped), so a backend that stays down is retried ever more rarely.
//!
//! Time is an argument (`now: Instant`): the breaker never reads a clock, so every transition is
//! testable to the millisecond. The data plane wraps each breaker in its own mutex and feeds it
//! the outcome of every attempt together with the [`Admission`] that attempt was granted; that
//! admission tells the breaker which results are current and which arrive late (a request let
//! through while closed that completes after the breaker opened must not move the state).
//!
//! Every state change is returned as a [`Transition`] for the caller to log and count.

use std::time::{Duration, Instant};

use thiserror::Error;

#[cfg(test)]
mod tests;

/// Why a [`BreakerPolicy`] could not be built: each variant is one rule that was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InvalidBreakerPolicy {
    /// `failure_threshold` was zero.
    #[error("failure_threshold must be at least 1")]
    ZeroFailureThreshold,
    /// `open_duration` was zero.
    #[error("open_duration must be greater than zero")]
    ZeroOpenDuration,
    /// `max_open_duration` was shorter than `open_duration`.
    #[error("max_open_duration ({max_open:?}) must be at least open_duration ({open:?})")]
    MaxOpenBelowOpen {
        /// The configured `open_duration`.
        open: Duration,
        /// The configured `max_open_duration`.
        max_open: Duration,
    },
    /// `half_open_max_requests` was zero.
    #[error("half_open_max_requests must be at least 1")]
    ZeroHalfOpenMaxRequests,
    /// `success_threshold` was zero.
    #[error("success_threshold must be at least 1")]
    ZeroSuccessThreshold,
}

/// The validated thresholds and durations of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    failure_threshold: u32,
    open_duration: Duration,
    max_open_duration: Duration,
    half_open_max_requests: u32,
    success_threshold: u32,
}

impl BreakerPolicy {
    /// Builds a policy.
    ///
    /// - `failure_threshold`: consecutive failures that open a closed breaker.
    /// - `open_duration`: how long the first trip keeps the breaker open.
    /// - `max_open_duration`: the cap on the doubled open duration of repeated trips.
    /// - `half_open_max_requests`: probes allowed in flight at once while half-open.
    /// - `success_threshold`: probe successes that close a half-open breaker.
    ///
    /// # Errors
    /// Returns the first rule broken: thresholds and `half_open_max_requests` must be at least 1,
    /// `open_duration` must be positive and `max_open_duration` at least `open_duration`.
    pub fn try_new(
        failure_threshold: u32,
        open_duration: Duration,
        max_open_duration: Duration,
        half_open_max_requests: u32,
        success_threshold: u32,
    ) -> Result<Self, InvalidBreakerPolicy> {
        if failure_threshold == 0 {
            return Err(InvalidBreakerPolicy::ZeroFailureThreshold);
        }
        if open_duration.is_zero() {
            return Err(InvalidBreakerPolicy::ZeroOpenDuration);
        }
        if max_open_duration < open_duration {
            return Err(InvalidBreakerPolicy::MaxOpenBelowOpen {
                open: open_duration,
                max_open: max_open_duration,
            });
        }
        if half_open_max_requests == 0 {
            return Err(InvalidBreakerPolicy::ZeroHalfOpenMaxRequests);
        }
        if success_threshold == 0 {
            return Err(InvalidBreakerPolicy::ZeroSuccessThreshold);
        }
        Ok(Self {
            failure_threshold,
            open_duration,
            max_open_duration,
            half_open_max_requests,
            success_threshold,
        })
    }

    /// Consecutive failures that open a closed breaker.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// How long the first trip keeps the breaker open.
    pub fn open_duration(&self) -> Duration {
        self.open_duration
    }

    /// The cap on the open duration, which doubles on each failed half-open round.
    pub fn max_open_duration(&self) -> Duration {
        self.max_open_duration
    }

    /// Probes allowed in flight at once while half-open.
    pub fn half_open_max_requests(&self) -> u32 {
        self.half_open_max_requests
    }

    /// Probe successes that close a half-open breaker.
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }

    /// The open duration after a failed half-open round that followed an open period of `last`.
    fn next_open_duration(&self, last: Duration) -> Duration {
        last.checked_mul(2)
            .map_or(self.max_open_duration, |doubled| {
                doubled.min(self.max_open_duration)
            })
    }
}

impl Default for BreakerPolicy {
    /// The configuration defaults: 5 failures, open 30 s (at most 5 min), 1 probe, 2 successes.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_duration: Duration::from_secs(30),
            max_open_duration: Duration::from_secs(300),
            half_open_max_requests: 1,
            success_threshold: 2,
        }
    }
}

/// The state a breaker reports, for eligibility, metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Traffic flows; failures are being counted.
    Closed,
    /// Traffic is refused until the open period ends.
    Open,
    /// A limited number of probe requests are let through to test the backend.
    HalfOpen,
}

impl BreakerState {
    /// The stable label used in metrics and logs: `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The value of the breaker-state gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change, returned by the method that caused it so the caller can log and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before the change.
    pub from: BreakerState,
    /// The state after the change.
    pub to: BreakerState,
    /// The `now` of the call that made the change.
    pub at: Instant,
    /// When the change opens the breaker, how long it stays open; `None` otherwise.
    pub open_for: Option<Duration>,
}

/// What [`CircuitBreaker::try_acquire`] granted; hand it back with the attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Admission {
    /// An ordinary request, let through because the breaker was closed.
    Allowed,
    /// A half-open trial request; it holds one of the `half_open_max_requests` probe slots until
    /// its outcome is recorded or it is released.
    Probe,
    /// Refused: the breaker is open, or half-open with every probe slot taken.
    Rejected,
}

/// Where the machine is; unlike [`BreakerState`] it carries the counters of each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed {
        /// Failures since the last success or since closing.
        failures: u32,
    },
    Open {
        since: Instant,
        open_for: Duration,
    },
    HalfOpen {
        /// Probe successes in this half-open round.
        successes: u32,
        /// How long the preceding open period lasted; a failed round doubles it.
        last_open: Duration,
    },
}

/// A circuit breaker for one backend.
///
/// Every [`Admission::Probe`] handed out must come back exactly once, through
/// [`record_success`](Self::record_success), [`record_failure`](Self::record_failure) or
/// [`release`](Self::release); the data plane does this with a drop guard.
///
/// ```
/// use std::time::{Duration, Instant};
/// use lb_core::breaker::{Admission, BreakerPolicy, BreakerState, CircuitBreaker};
///
/// let policy = BreakerPolicy::try_new(
///     2,                          // failures to open
///     Duration::from_secs(10),    // open for
///     Duration::from_secs(60),    // at most, after repeated trips
///     1,                          // probes at once
///     1,                          // probe successes to close
/// )?;
/// let mut breaker = CircuitBreaker::new(policy);
/// # #[allow(clippy::disallowed_methods)]
/// let t0 = Instant::now(); // the data plane reads the clock; the breaker never does
///
/// // Two consecutive failures open the breaker.
/// for _ in 0..2 {
///     let (admission, _) = breaker.try_acquire(t0);
///     assert_eq!(admission, Admission::Allowed);
///     if let Some(t) = breaker.record_failure(admission, t0) {
///         assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
///     }
/// }
/// assert_eq!(breaker.try_acquire(t0).0, Admission::Rejected);
///
/// // Ten seconds later a probe goes through, and its success closes the breaker.
/// let later = t0 + Duration::from_secs(10);
/// let (admission, transition) = breaker.try_acquire(later);
/// assert_eq!(admission, Admission::Probe);
/// assert_eq!(transition.map(|t| t.to), Some(BreakerState::HalfOpen));
/// let closed = breaker.record_success(admission, later);
/// assert_eq!(closed.map(|t| t.to), Some(BreakerState::Closed));
/// assert_eq!(breaker.state(later), BreakerState::Closed);
/// # Ok::<(), lb_core::breaker::InvalidBreakerPolicy>(())
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    phase: Phase,
    /// Probes handed out and not yet returned, counted across half-open rounds: a probe from a
    /// round that already failed still occupies its slot, so the backend never sees more than
    /// `half_open_max_requests` probes at once.
    probes_in_flight: u32,
}

impl CircuitBreaker {
    /// A closed breaker enforcing `policy`.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            phase: Phase::Closed { failures: 0 },
            probes_in_flight: 0,
        }
    }

    /// The policy this breaker enforces.
    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// Enforces `policy` from now on and keeps what the breaker learned (a reload that changes
    /// the policy must not close an open breaker): an open breaker stays open for the period it
    /// was given, a half-open round keeps its successes, a closed breaker keeps its failure count
    /// (at or over a lowered threshold, the next failure opens it).
    pub fn set_policy(&mut self, policy: BreakerPolicy) {
        self.policy = policy;
    }

    /// Closes the breaker at `now` whatever its state (an operator's reset); returns the
    /// transition unless it was closed already. Probes still in flight keep their slots until
    /// they come back.
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        let from = self.state(now);
        self.phase = Phase::Closed { failures: 0 };
        (from != BreakerState::Closed).then_some(Transition {
            from,
            to: BreakerState::Closed,
            at: now,
            open_for: None,
        })
    }

    /// When an open breaker lets its first probe through; `None` unless open.
    pub fn open_until(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open { since, open_for } => since.checked_add(open_for),
            Phase::Closed { .. } | Phase::HalfOpen { .. } => None,
        }
    }

    /// The state at `now`; an open breaker whose time is up reports [`BreakerState::HalfOpen`]
    /// (the change itself happens, and is reported, on the next [`try_acquire`](Self::try_acquire)).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { since, open_for } if !open_elapsed(since, open_for, now) => {
                BreakerState::Open
            }
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether [`try_acquire`](Self::try_acquire) at `now` would let a request through, without
    /// changing anything: the eligibility filter of the balancer.
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed { .. } => true,
            Phase::Open { since, open_for } => {
                open_elapsed(since, open_for, now) && self.probe_slot_free()
            }
            Phase::HalfOpen { .. } => self.probe_slot_free(),
        }
    }

    /// Asks to send a request at `now`. Moves an open breaker whose time is up to half-open and
    /// returns that transition.
    pub fn try_acquire(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        match self.phase {
            Phase::Closed { .. } => (Admission::Allowed, None),
            Phase::Open { since, open_for } => {
                if !open_elapsed(since, open_for, now) {
                    return (Admission::Rejected, None);
                }
                self.phase = Phase::HalfOpen {
                    successes: 0,
                    last_open: open_for,
                };
                let transition = Transition {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                    at: now,
                    open_for: None,
                };
                (self.take_probe_slot(), Some(transition))
            }
            Phase::HalfOpen { .. } => (self.take_probe_slot(), None),
        }
    }

    /// Records that an attempt granted `admission` succeeded at `now`.
    ///
    /// A success of a request let through while closed resets the failure count; arriving after
    /// the breaker opened, it is ignored. Probe successes count toward closing.
    pub fn record_success(&mut self, admission: Admission, now: Instant) -> Option<Transition> {
        if admission == Admission::Rejected {
            return None;
        }
        if admission == Admission::Probe {
            self.return_probe_slot();
        }
        match &mut self.phase {
            Phase::Closed { failures } => {
                // A probe of an earlier round finishing after the breaker closed is as good as
                // any other success.
                *failures = 0;
                None
            }
            Phase::HalfOpen { successes, .. } if admission == Admission::Probe => {
                *successes = successes.saturating_add(1);
                if *successes < self.policy.success_threshold {
                    return None;
                }
                self.phase = Phase::Closed { failures: 0 };
                Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                    at: now,
                    open_for: None,
                })
            }
            // Late results: the request was let through before the breaker opened (or in a
            // probe round that has since failed); it says nothing about the backend now.
            Phase::HalfOpen { .. } | Phase::Open { .. } => None,
        }
    }

    /// Records that an attempt granted `admission` failed at `now`.
    ///
    /// While closed, the failure counts toward `failure_threshold`; a probe failure reopens a
    /// half-open breaker for twice the previous open duration (capped). A failure arriving while
    /// the breaker is already open, or a non-probe failure while half-open, is ignored: it was
    /// let through before the trip and must not extend it.
    pub fn record_failure(&mut self, admission: Admission, now: Instant) -> Option<Transition> {
        if admission == Admission::Rejected {
            return None;
        }
        if admission == Admission::Probe {
            self.return_probe_slot();
        }
        match &mut self.phase {
            Phase::Closed { failures } => {
                *failures = failures.saturating_add(1);
                if *failures < self.policy.failure_threshold {
                    return None;
                }
                Some(self.open(BreakerState::Closed, self.policy.open_duration, now))
            }
            Phase::HalfOpen { last_open, .. } if admission == Admission::Probe => {
                let open_for = self.policy.next_open_duration(*last_open);
                Some(self.open(BreakerState::HalfOpen, open_for, now))
            }
            Phase::HalfOpen { .. } | Phase::Open { .. } => None,
        }
    }

    /// Gives back an admission whose attempt ended without an outcome (the client went away):
    /// a probe frees its slot, nothing else changes.
    pub fn release(&mut self, admission: Admission) {
        if admission == Admission::Probe {
            self.return_probe_slot();
        }
    }

    /// Consecutive failures counted while closed; zero in other states.
    pub fn consecutive_failures(&self) -> u32 {
        match self.phase {
            Phase::Closed { failures } => failures,
            Phase::Open { .. } | Phase::HalfOpen { .. } => 0,
        }
    }

    /// Probes handed out and not yet returned.
    pub fn probes_in_flight(&self) -> u32 {
        self.probes_in_flight
    }

    fn open(&mut self, from: BreakerState, open_for: Duration, now: Instant) -> Transition {
        self.phase = Phase::Open {
            since: now,
            open_for,
        };
        Transition {
            from,
            to: BreakerState::Open,
            at: now,
            open_for: Some(open_for),
        }
    }

    fn probe_slot_free(&self) -> bool {
        self.probes_in_flight < self.policy.half_open_max_requests
    }

    fn take_probe_slot(&mut self) -> Admission {
        if self.probe_slot_free() {
            self.probes_in_flight += 1;
            Admission::Probe
        } else {
            Admission::Rejected
        }
    }

    fn return_probe_slot(&mut self) {
        // Saturating: a probe returned twice by a buggy caller must not wrap the count.
        self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
    }
}

/// Whether an open period that began at `since` and lasts `open_for` is over at `now`.
/// A `now` before `since` (a caller's clock reading taken earlier) counts as not elapsed.
fn open_elapsed(since: Instant, open_for: Duration, now: Instant) -> bool {
    now.saturating_duration_since(since) >= open_for
}
