//! The report of one run: plain data, serializable, for the text renderer and for scripts.
//!
//! Times are milliseconds since the start of the scenario. A request's outcome, latency and
//! retries count in the time bucket it arrived in; an attempt counts in the bucket it was
//! sent in (attempts after the end, while the last requests finish, in the last bucket).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::breaker::BreakerState;
use crate::health::HealthStatus;

use super::stats::{BackendCounts, Cause, Counts, Happening, Recorder, SLOTS, quantile};

/// Everything one run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The configuration's balancing algorithm.
    pub algorithm: &'static str,
    /// The scenario's duration.
    pub duration_ms: u64,
    /// The width of one timeline bucket.
    pub bucket_ms: u64,
    /// What the clients saw.
    pub clients: ClientReport,
    /// Per backend, in configuration order.
    pub backends: Vec<BackendReport>,
    /// Scenario events, breaker transitions and health flips, in time order.
    pub events: Vec<EventReport>,
    /// Per time bucket.
    pub timeline: Vec<BucketReport>,
}

/// The clients' view of the whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientReport {
    /// Requests sent.
    pub requests: u64,
    /// Requests answered with a status below 500 by a backend.
    pub successes: u64,
    /// Requests that were not; `successes + errors = requests`.
    pub errors: u64,
    /// Latency of every request, errors included (what clients waited).
    pub latency: Quantiles,
    /// Errors by cause; they sum to `errors`.
    pub causes: Causes,
    /// Requests by the status the client saw.
    pub statuses: BTreeMap<u16, u64>,
    /// Retries lb-core granted (the daemon's `lb_retries_total`).
    pub retries: u64,
    /// Retries refused for want of budget (the daemon's `lb_retry_budget_exhausted_total`).
    pub budget_exhausted: u64,
    /// Every reason lb-core gave for not retrying a failed attempt that may have been retried.
    pub gave_up: GaveUp,
}

/// Latency quantiles, in milliseconds (histogram slots are 1/64 wide, so within 1.6 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    /// The median.
    pub p50_ms: f64,
    /// The 90th percentile.
    pub p90_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The longest.
    pub max_ms: f64,
}

/// Errors by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Causes {
    /// The backend answered 5xx: passed on, or 502 when no backend was left to retry on.
    pub backend_error: u64,
    /// The backend refused the connection (it was down): 502.
    pub connect_error: u64,
    /// The backend went down while working on the request: 502.
    pub reset: u64,
    /// `server.request_timeout` passed, waiting for a backend or a backoff: 504.
    pub timeout: u64,
    /// No backend was eligible: 503.
    pub no_backend: u64,
    /// The body is over `server.max_request_body_bytes`: 413.
    pub too_large: u64,
}

/// Why failed attempts were not retried, by lb-core's [`crate::retry::GiveUpReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GaveUp {
    /// `max_attempts` reached.
    pub attempts_exhausted: u64,
    /// The failure is not in `retry_on`.
    pub not_retryable: u64,
    /// The body streams and cannot be sent again.
    pub body_not_replayable: u64,
    /// Not idempotent, and the request may have reached the backend.
    pub not_idempotent: u64,
    /// The retry budget was empty.
    pub budget_exhausted: u64,
}

/// One backend over the whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendReport {
    /// Its name in the configuration.
    pub name: String,
    /// Requests whose answer came from it.
    pub requests: u64,
    /// Its share of the requests answered by a backend (shares sum to 1).
    pub request_share: f64,
    /// Attempts sent to it, retries included.
    pub attempts: u64,
    /// Its share of all attempts (shares sum to 1).
    pub attempt_share: f64,
    /// The most attempts it held at once (never above its `max_connections`).
    pub in_flight_peak: u64,
    /// Its failed attempts.
    pub failed_attempts: AttemptFailures,
    /// Times its breaker opened.
    pub breaker_trips: u64,
    /// Times its health flipped.
    pub health_flips: u64,
}

/// Failed attempts by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AttemptFailures {
    /// Answered 5xx.
    pub status: u64,
    /// Connection refused.
    pub connect_error: u64,
    /// Cut by the backend going down.
    pub reset: u64,
    /// Still unanswered at the request's deadline.
    pub timeout: u64,
}

/// Something that happened at a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventReport {
    /// When, in milliseconds since the start.
    pub at_ms: f64,
    /// To which backend.
    pub backend: String,
    /// What.
    #[serde(flatten)]
    pub what: EventKind,
}

/// The kinds of [`EventReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A scenario event was applied.
    Scenario {
        /// What it did, in words.
        action: String,
    },
    /// The breaker changed state.
    Breaker {
        /// Before.
        from: &'static str,
        /// After.
        to: &'static str,
        /// For a change to open: for how long.
        open_for_ms: Option<u64>,
    },
    /// The health checks flipped the backend's health.
    Health {
        /// `healthy` or `unhealthy`.
        to: &'static str,
    },
}

/// One time bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketReport {
    /// Its start, milliseconds since the start of the scenario.
    pub start_ms: u64,
    /// Requests that arrived in it.
    pub requests: u64,
    /// Of those, answered with a status below 500.
    pub successes: u64,
    /// Of those, the others.
    pub errors: u64,
    /// Their errors by cause.
    pub causes: Causes,
    /// Their latency.
    pub latency: Quantiles,
    /// Retries granted for them.
    pub retries: u64,
    /// Retries refused to them for want of budget.
    pub budget_exhausted: u64,
    /// Per backend, in configuration order.
    pub backends: Vec<BucketBackend>,
}

/// One backend during one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketBackend {
    /// Attempts sent to it.
    pub attempts: u64,
    /// The worst breaker state it was in during the bucket: `open`, else `half_open`, else
    /// `closed`.
    pub breaker: &'static str,
    /// Healthy throughout the bucket.
    pub healthy: bool,
}

fn millis(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

fn quantiles(counts: &[u32], total: u64, max_micros: u64) -> Quantiles {
    let q = |q| quantile(counts, total, max_micros, q) as f64 / 1e3;
    Quantiles {
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        max_ms: max_micros as f64 / 1e3,
    }
}

fn causes(counts: &[u64; super::stats::CAUSES]) -> Causes {
    let c = |cause: Cause| counts[cause as usize];
    Causes {
        backend_error: c(Cause::BackendError),
        connect_error: c(Cause::ConnectError),
        reset: c(Cause::Reset),
        timeout: c(Cause::Timeout),
        no_backend: c(Cause::NoBackend),
        too_large: c(Cause::TooLarge),
    }
}

fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

fn severity(state: BreakerState) -> u8 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

/// Builds the report from a finished run's counts; `names` are the backends' names.
pub(crate) fn build(
    recorder: &Recorder,
    names: &[String],
    algorithm: &'static str,
    duration_ms: u64,
) -> Report {
    let n = names.len();
    let bucket_nanos = recorder.bucket_nanos();
    let mut total = Counts::default();
    let mut histogram = vec![0u32; SLOTS];
    for (index, counts) in recorder.buckets.iter().enumerate() {
        total.requests += counts.requests;
        total.successes += counts.successes;
        for (sum, part) in total.causes.iter_mut().zip(counts.causes) {
            *sum += part;
        }
        total.retries += counts.retries;
        total.budget_exhausted += counts.budget_exhausted;
        total.max_micros = total.max_micros.max(counts.max_micros);
        let slots = &recorder.histograms[index * SLOTS..(index + 1) * SLOTS];
        for (sum, part) in histogram.iter_mut().zip(slots) {
            *sum = sum.saturating_add(*part);
        }
    }
    let [
        attempts_exhausted,
        not_retryable,
        body_not_replayable,
        not_idempotent,
        budget_exhausted,
    ] = recorder.gave_up;
    let clients = ClientReport {
        requests: total.requests,
        successes: total.successes,
        errors: total.requests - total.successes,
        latency: quantiles(&histogram, total.requests, total.max_micros),
        causes: causes(&total.causes),
        statuses: recorder.statuses.clone(),
        retries: total.retries,
        budget_exhausted: total.budget_exhausted,
        gave_up: GaveUp {
            attempts_exhausted,
            not_retryable,
            body_not_replayable,
            not_idempotent,
            budget_exhausted,
        },
    };

    let answered: u64 = recorder.backends.iter().map(|b| b.answered).sum();
    let attempts: u64 = recorder.backends.iter().map(|b| b.attempts).sum();
    let mut backends: Vec<BackendReport> = names
        .iter()
        .zip(&recorder.backends)
        .map(|(name, b): (&String, &BackendCounts)| BackendReport {
            name: name.clone(),
            requests: b.answered,
            request_share: share(b.answered, answered),
            attempts: b.attempts,
            attempt_share: share(b.attempts, attempts),
            in_flight_peak: b.in_flight_peak,
            failed_attempts: AttemptFailures {
                status: b.failures[0],
                connect_error: b.failures[1],
                reset: b.failures[2],
                timeout: b.failures[3],
            },
            breaker_trips: 0,
            health_flips: 0,
        })
        .collect();

    // Walk the happenings in time order once: events for the list, states for the buckets.
    let buckets = recorder.buckets.len();
    let mut worst = vec![BreakerState::Closed; buckets * n];
    let mut unhealthy = vec![false; buckets * n];
    let mut breaker_now = vec![BreakerState::Closed; n];
    let mut healthy_now = vec![true; n];
    // Buckets below `filled[backend]` hold their states; a bucket's first entry is the state in
    // force at its start, and changes within it can only make it worse (or unhealthy).
    let mut filled = vec![0usize; n];
    let mut events = Vec::with_capacity(recorder.happenings.len());
    let fill = |worst: &mut [BreakerState],
                unhealthy: &mut [bool],
                filled: &mut [usize],
                backend: usize,
                upto: usize,
                breaker: BreakerState,
                healthy: bool| {
        for b in filled[backend]..upto {
            worst[b * n + backend] = breaker;
            unhealthy[b * n + backend] = !healthy;
        }
        filled[backend] = filled[backend].max(upto);
    };
    for &(at, happening) in &recorder.happenings {
        let bucket = usize::try_from(at / bucket_nanos)
            .unwrap_or(usize::MAX)
            .min(buckets - 1);
        let backend = match happening {
            Happening::Scenario { backend, .. }
            | Happening::Breaker { backend, .. }
            | Happening::Health { backend, .. } => backend,
        };
        fill(
            &mut worst,
            &mut unhealthy,
            &mut filled,
            backend,
            bucket + 1,
            breaker_now[backend],
            healthy_now[backend],
        );
        let what = match happening {
            Happening::Scenario { action, .. } => EventKind::Scenario {
                action: action.to_string(),
            },
            Happening::Breaker {
                from, to, open_for, ..
            } => {
                breaker_now[backend] = to;
                let slot = &mut worst[bucket * n + backend];
                if severity(to) > severity(*slot) {
                    *slot = to;
                }
                if to == BreakerState::Open {
                    backends[backend].breaker_trips += 1;
                }
                EventKind::Breaker {
                    from: from.as_str(),
                    to: to.as_str(),
                    open_for_ms: open_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                }
            }
            Happening::Health { to, .. } => {
                healthy_now[backend] = to == HealthStatus::Healthy;
                unhealthy[bucket * n + backend] |= !healthy_now[backend];
                backends[backend].health_flips += 1;
                EventKind::Health { to: to.as_str() }
            }
        };
        events.push(EventReport {
            at_ms: millis(at),
            backend: names[backend].clone(),
            what,
        });
    }
    for backend in 0..n {
        fill(
            &mut worst,
            &mut unhealthy,
            &mut filled,
            backend,
            buckets,
            breaker_now[backend],
            healthy_now[backend],
        );
    }

    let timeline = recorder
        .buckets
        .iter()
        .enumerate()
        .map(|(index, counts)| BucketReport {
            start_ms: u64::try_from(u128::from(bucket_nanos) * index as u128 / 1_000_000)
                .unwrap_or(u64::MAX),
            requests: counts.requests,
            successes: counts.successes,
            errors: counts.requests - counts.successes,
            causes: causes(&counts.causes),
            latency: quantiles(
                &recorder.histograms[index * SLOTS..(index + 1) * SLOTS],
                counts.requests,
                counts.max_micros,
            ),
            retries: counts.retries,
            budget_exhausted: counts.budget_exhausted,
            backends: (0..n)
                .map(|backend| BucketBackend {
                    attempts: recorder.bucket_attempts[index * n + backend],
                    breaker: worst[index * n + backend].as_str(),
                    healthy: !unhealthy[index * n + backend],
                })
                .collect(),
        })
        .collect();

    Report {
        algorithm,
        duration_ms,
        bucket_ms: bucket_nanos / 1_000_000,
        clients,
        backends,
        events,
        timeline,
    }
}
