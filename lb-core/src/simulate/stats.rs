//! What the event loop counts while it runs: totals, per time bucket, per backend.
//!
//! Latencies go into log-linear histograms (64 sub-buckets per power of two, so a quantile is
//! exact to 1/64 ≈ 1.6 %): memory stays fixed whatever the number of requests, and merging
//! buckets for the totals is an addition. The recorder only counts; [`super::report`] turns
//! the counts into the report.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::breaker::BreakerState;
use crate::health::HealthStatus;
use crate::retry::{FailureKind, GiveUpReason};

use super::parse::MAX_BUCKETS;
use super::scenario::Action;

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Histogram slots: values up to 2⁴⁰ µs (12 days) fit; larger ones land in the last slot.
pub(crate) const SLOTS: usize = ((40 - SUB_BITS + 1) as usize) << SUB_BITS;

/// The histogram slot of `micros`.
pub(crate) fn slot(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    let shift = exponent - SUB_BITS;
    let index = (u64::from(exponent - SUB_BITS + 1) << SUB_BITS) | ((micros >> shift) - SUB);
    (index as usize).min(SLOTS - 1)
}

/// The largest value that lands in `slot`.
pub(crate) fn slot_ceiling(slot: usize) -> u64 {
    let slot = slot as u64;
    if slot < SUB {
        return slot;
    }
    let shift = (slot >> SUB_BITS) - 1;
    let low = (SUB + (slot & (SUB - 1))) << shift;
    low + (1 << shift) - 1
}

/// The value at quantile `q` (0..=1) of a histogram, in microseconds: the ceiling of the slot
/// holding the `⌈q·n⌉`-th value, but never more than `max`.
pub(crate) fn quantile(counts: &[u32], total: u64, max: u64, q: f64) -> u64 {
    if total == 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (slot, &count) in counts.iter().enumerate() {
        seen += u64::from(count);
        if seen >= rank {
            return slot_ceiling(slot).min(max);
        }
    }
    max
}

/// How a request ended, classified once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A backend's answer reached the client; 5xx counts as an error.
    Answered { backend: usize, status: u16 },
    /// The balancer answered for a failed exchange (502 or 504), as the daemon's
    /// `failure_response` does.
    Failed(FailureKind),
    /// No backend was eligible for the first attempt: 503.
    NoBackend,
    /// The body is over `server.max_request_body_bytes`: 413 before any backend.
    TooLarge,
}

/// Why a request failed, the report's error causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    BackendError,
    ConnectError,
    Reset,
    Timeout,
    NoBackend,
    TooLarge,
}

pub(crate) const CAUSES: usize = 6;

impl Outcome {
    /// The status the client sees and, for a failure, its cause.
    pub(crate) fn classify(self) -> (u16, Option<Cause>) {
        match self {
            Outcome::Answered { status, .. } if status < 500 => (status, None),
            Outcome::Answered { status, .. } => (status, Some(Cause::BackendError)),
            Outcome::Failed(FailureKind::ConnectRefused | FailureKind::ConnectTimeout) => {
                (502, Some(Cause::ConnectError))
            }
            Outcome::Failed(FailureKind::ResetBeforeResponse) => (502, Some(Cause::Reset)),
            Outcome::Failed(FailureKind::ResponseTimeout) => (504, Some(Cause::Timeout)),
            // The simulator models HTTP only; a gRPC status is a backend error like a 5xx.
            Outcome::Failed(FailureKind::Status(_) | FailureKind::GrpcStatus(_)) => {
                (502, Some(Cause::BackendError))
            }
            Outcome::NoBackend => (503, Some(Cause::NoBackend)),
            Outcome::TooLarge => (413, Some(Cause::TooLarge)),
        }
    }
}

/// Counts of one time bucket (or of the whole run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) requests: u64,
    pub(crate) successes: u64,
    pub(crate) causes: [u64; CAUSES],
    pub(crate) retries: u64,
    pub(crate) budget_exhausted: u64,
    /// Longest latency, microseconds.
    pub(crate) max_micros: u64,
}

/// Per backend, over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BackendCounts {
    pub(crate) attempts: u64,
    /// Requests whose answer came from this backend.
    pub(crate) answered: u64,
    /// Failed attempts: 5xx, connect error, reset, timeout.
    pub(crate) failures: [u64; 4],
    pub(crate) in_flight_peak: u64,
}

/// A breaker transition, a health flip or a scenario event, with its time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Happening {
    Breaker {
        backend: usize,
        from: BreakerState,
        to: BreakerState,
        open_for: Option<Duration>,
    },
    Health {
        backend: usize,
        to: HealthStatus,
    },
    Scenario {
        backend: usize,
        action: Action,
    },
}

/// Everything counted during one run.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    bucket_nanos: u64,
    pub(crate) buckets: Vec<Counts>,
    /// `buckets.len() × SLOTS` latency counts.
    pub(crate) histograms: Vec<u32>,
    /// `buckets.len() × backends` attempts, by when they were sent.
    pub(crate) bucket_attempts: Vec<u64>,
    pub(crate) backends: Vec<BackendCounts>,
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) gave_up: [u64; 5],
    pub(crate) happenings: Vec<(u64, Happening)>,
}

impl Recorder {
    /// Counts for a run of `duration` in buckets of `bucket`, widened if need be so there are
    /// at most [`MAX_BUCKETS`] (validation already refuses more; a scenario built by hand is
    /// not refused, but must not exhaust memory).
    pub(crate) fn new(duration: Duration, bucket: Duration, backends: usize) -> Recorder {
        let duration_nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let bucket_nanos = u64::try_from(bucket.as_nanos())
            .unwrap_or(u64::MAX)
            .max(duration_nanos.div_ceil(MAX_BUCKETS))
            .max(1);
        let count = usize::try_from(duration_nanos.div_ceil(bucket_nanos))
            .unwrap_or(1)
            .max(1);
        Recorder {
            bucket_nanos,
            buckets: vec![Counts::default(); count],
            histograms: vec![0; count * SLOTS],
            bucket_attempts: vec![0; count * backends],
            backends: vec![BackendCounts::default(); backends],
            statuses: BTreeMap::new(),
            gave_up: [0; 5],
            happenings: Vec::new(),
        }
    }

    /// The bucket of time `nanos`; times after the end (requests finishing late) count in
    /// the last bucket.
    pub(crate) fn bucket_of(&self, nanos: u64) -> usize {
        usize::try_from(nanos / self.bucket_nanos)
            .unwrap_or(usize::MAX)
            .min(self.buckets.len() - 1)
    }

    pub(crate) fn attempt(&mut self, backend: usize, now: u64, in_flight: u64) {
        let bucket = self.bucket_of(now);
        let n = self.backends.len();
        self.bucket_attempts[bucket * n + backend] += 1;
        let counts = &mut self.backends[backend];
        counts.attempts += 1;
        counts.in_flight_peak = counts.in_flight_peak.max(in_flight);
    }

    pub(crate) fn attempt_failed(&mut self, backend: usize, kind: FailureKind) {
        let index = match kind {
            FailureKind::Status(_) | FailureKind::GrpcStatus(_) => 0,
            FailureKind::ConnectRefused | FailureKind::ConnectTimeout => 1,
            FailureKind::ResetBeforeResponse => 2,
            FailureKind::ResponseTimeout => 3,
        };
        self.backends[backend].failures[index] += 1;
    }

    pub(crate) fn retry(&mut self, bucket: usize) {
        self.buckets[bucket].retries += 1;
    }

    pub(crate) fn gave_up(&mut self, bucket: usize, reason: GiveUpReason) {
        let index = match reason {
            GiveUpReason::AttemptsExhausted => 0,
            GiveUpReason::NotRetryable => 1,
            GiveUpReason::BodyNotReplayable => 2,
            GiveUpReason::NotIdempotent => 3,
            GiveUpReason::BudgetExhausted => {
                self.buckets[bucket].budget_exhausted += 1;
                4
            }
        };
        self.gave_up[index] += 1;
    }

    /// A request ended, `latency` after it arrived in `bucket`.
    pub(crate) fn finish(&mut self, bucket: usize, latency: u64, outcome: Outcome) {
        let micros = latency / 1_000;
        let (status, cause) = outcome.classify();
        let counts = &mut self.buckets[bucket];
        counts.requests += 1;
        counts.max_micros = counts.max_micros.max(micros);
        match cause {
            None => counts.successes += 1,
            Some(cause) => counts.causes[cause as usize] += 1,
        }
        self.histograms[bucket * SLOTS + slot(micros)] += 1;
        *self.statuses.entry(status).or_insert(0) += 1;
        if let Outcome::Answered { backend, .. } = outcome {
            self.backends[backend].answered += 1;
        }
    }

    pub(crate) fn happened(&mut self, now: u64, what: Happening) {
        self.happenings.push((now, what));
    }

    /// The width of a bucket in nanoseconds.
    pub(crate) fn bucket_nanos(&self) -> u64 {
        self.bucket_nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_monotonic_and_tight() {
        let values: Vec<u64> = (0..5000).collect();
        assert!(
            values.windows(2).all(|w| slot(w[0]) <= slot(w[1])),
            "monotonic"
        );
        for v in values.into_iter().chain((0..40).map(|e| 1u64 << e)) {
            let s = slot(v);
            let ceiling = slot_ceiling(s);
            assert!(ceiling >= v, "{v} above its slot's ceiling {ceiling}");
            // Within 1/64 of the value.
            assert!(ceiling - v <= v / 64, "{v}: ceiling {ceiling}");
        }
        assert_eq!(slot(u64::MAX), SLOTS - 1);
        assert_eq!(slot(63), 63);
        assert_eq!(slot(64), 64);
        assert_eq!(slot(127), 127);
        assert_eq!(slot(128), 128);
        assert_eq!(slot_ceiling(128), 129);
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut counts = vec![0u32; SLOTS];
        for v in 1..=1000u64 {
            counts[slot(v)] += 1;
        }
        let table = [(0.5, 500), (0.9, 900), (0.99, 990), (1.0, 1000)];
        for (q, want) in table {
            let got = quantile(&counts, 1000, 1000, q);
            assert!(got >= want && got - want <= want / 64, "q {q}: {got}");
        }
        assert_eq!(quantile(&counts, 0, 0, 0.5), 0);
    }

    #[test]
    fn too_many_buckets_are_widened() {
        let day = Duration::from_secs(86_400);
        let recorder = Recorder::new(day, Duration::from_nanos(1), 3);
        assert_eq!(recorder.buckets.len() as u64, MAX_BUCKETS);
        assert_eq!(recorder.bucket_nanos(), 86_400_000_000);
        let fine = Recorder::new(Duration::from_secs(10), Duration::from_secs(1), 3);
        assert_eq!(
            (fine.buckets.len(), fine.bucket_nanos()),
            (10, 1_000_000_000)
        );
    }

    #[test]
    fn outcomes_classify_as_the_daemon_answers() {
        use FailureKind::*;
        let table = [
            (
                Outcome::Answered {
                    backend: 0,
                    status: 200,
                },
                200,
                None,
            ),
            (
                Outcome::Answered {
                    backend: 0,
                    status: 503,
                },
                503,
                Some(Cause::BackendError),
            ),
            (
                Outcome::Failed(ConnectRefused),
                502,
                Some(Cause::ConnectError),
            ),
            (
                Outcome::Failed(ResetBeforeResponse),
                502,
                Some(Cause::Reset),
            ),
            (Outcome::Failed(ResponseTimeout), 504, Some(Cause::Timeout)),
            (Outcome::Failed(Status(503)), 502, Some(Cause::BackendError)),
            (Outcome::NoBackend, 503, Some(Cause::NoBackend)),
            (Outcome::TooLarge, 413, Some(Cause::TooLarge)),
        ];
        for (outcome, status, cause) in table {
            assert_eq!(outcome.classify(), (status, cause), "{outcome:?}");
        }
    }
}
