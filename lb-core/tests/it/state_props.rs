//! Properties of the state machines and policies: breaker, retry (decision, backoff, budget)
//! and health. Time is simulated from one base instant; nothing depends on the wall clock.

use std::time::{Duration, Instant};

use lb_core::breaker::{Admission, BreakerPolicy, BreakerState, CircuitBreaker, Transition};
use lb_core::health::{HealthPolicy, HealthStatus, HealthTracker};
use lb_core::retry::{
    AttemptFailure, FailureKind, GiveUpReason, RetryBudget, RetryCondition, RetryDecision,
    RetryPolicy,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[allow(clippy::disallowed_methods)] // one real Instant as a base; every offset is exact
fn t0() -> Instant {
    Instant::now()
}

fn failure_kind() -> impl Strategy<Value = FailureKind> {
    prop_oneof![
        Just(FailureKind::ConnectRefused),
        Just(FailureKind::ConnectTimeout),
        Just(FailureKind::ResetBeforeResponse),
        Just(FailureKind::ResponseTimeout),
        (100u16..600).prop_map(FailureKind::Status),
    ]
}

/// A policy that lists every kind of failure in `retry_on`, so only the rule under test refuses.
fn retry_everything(max_attempts: u32) -> RetryPolicy {
    let mut retry_on = vec![
        RetryCondition::ConnectError,
        RetryCondition::Timeout,
        RetryCondition::Reset,
    ];
    retry_on.extend((100..600).map(RetryCondition::Status));
    RetryPolicy::try_new(
        max_attempts,
        Duration::from_millis(1),
        Duration::from_secs(1),
        retry_on,
    )
    .expect("valid policy")
}

/// A budget that never runs out within a test: the floor refills faster than any test draws.
fn bottomless(now: Instant) -> RetryBudget {
    RetryBudget::try_new(1.0, u32::MAX, now).expect("valid budget")
}

proptest! {
    #[test]
    fn backoff_stays_within_its_bound(
        base_nanos in 1u64..=10_000_000_000_000,
        extra_nanos in 0u64..=10_000_000_000_000,
        attempt in prop_oneof![0u32..80, any::<u32>()],
        seed in any::<u64>(),
    ) {
        let (base, max) = (base_nanos, base_nanos + extra_nanos);
        let policy = RetryPolicy::try_new(
            2,
            Duration::from_nanos(base),
            Duration::from_nanos(max),
            vec![],
        ).expect("valid policy");
        // The bound computed independently, in u128 so no step can overflow.
        let exponent = attempt.saturating_sub(1);
        let bound = if exponent >= 64 {
            u128::from(max)
        } else {
            (u128::from(base) << exponent).min(u128::from(max))
        };
        prop_assert_eq!(policy.backoff_bound(attempt).as_nanos(), bound);
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..8 {
            prop_assert!(policy.backoff(attempt, &mut rng).as_nanos() <= bound);
        }
    }

    #[test]
    fn never_retries_a_non_idempotent_request_that_may_have_reached_the_backend(
        kind in failure_kind(),
        attempt in 0u32..10,
        body_replayable in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let now = t0();
        let failure = AttemptFailure { attempt, kind, idempotent: false, body_replayable };
        let decision = retry_everything(10).decide(
            &failure, &bottomless(now), now, &mut StdRng::seed_from_u64(seed),
        );
        if kind.may_have_reached_backend() {
            prop_assert!(matches!(decision, RetryDecision::GiveUp(_)), "{:?}", decision);
        }
    }

    #[test]
    fn never_retries_past_max_attempts(
        max_attempts in 1u32..8,
        kinds in proptest::collection::vec(failure_kind(), 1..12),
        idempotent in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let now = t0();
        let (policy, budget) = (retry_everything(max_attempts), bottomless(now));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut attempt = 1;
        // One request's life: every attempt fails with the next kind until the policy gives up.
        for kind in kinds.iter().cycle() {
            let failure = AttemptFailure { attempt, kind: *kind, idempotent, body_replayable: true };
            match policy.decide(&failure, &budget, now, &mut rng) {
                RetryDecision::Retry { .. } => attempt += 1,
                RetryDecision::GiveUp(reason) => {
                    if attempt >= max_attempts {
                        prop_assert_eq!(reason, GiveUpReason::AttemptsExhausted);
                    }
                    break;
                }
            }
            prop_assert!(attempt <= max_attempts);
        }
    }

    #[test]
    fn connect_failures_are_retried_even_for_post(
        connect_timeout in any::<bool>(),
        max_attempts in 2u32..10,
        attempt_offset in 0u32..10,
        seed in any::<u64>(),
    ) {
        let now = t0();
        let kind = if connect_timeout { FailureKind::ConnectTimeout } else { FailureKind::ConnectRefused };
        let attempt = 1 + attempt_offset % (max_attempts - 1);
        let failure = AttemptFailure { attempt, kind, idempotent: false, body_replayable: true };
        let decision = retry_everything(max_attempts).decide(
            &failure, &bottomless(now), now, &mut StdRng::seed_from_u64(seed),
        );
        prop_assert!(matches!(decision, RetryDecision::Retry { .. }), "{:?}", decision);
    }

    #[test]
    fn budget_never_exceeds_its_allowance(
        ratio in 0.0f64..=1.0,
        min_per_sec in 0u32..50,
        // (milliseconds to advance, true = deposit / false = withdraw)
        ops in proptest::collection::vec((0u64..700, any::<bool>()), 0..400),
    ) {
        let t0 = t0();
        let budget = RetryBudget::try_new(ratio, min_per_sec, t0).expect("valid budget");
        let (mut elapsed_ms, mut deposits, mut withdrawals) = (0u64, 0u64, 0u64);
        for (step_ms, deposit) in ops {
            elapsed_ms += step_ms;
            let now = t0 + Duration::from_millis(elapsed_ms);
            if deposit {
                budget.deposit(now);
                deposits += 1;
            } else if budget.try_withdraw(now) {
                withdrawals += 1;
            }
            let available = budget.available(now);
            prop_assert!(available >= 0.0);
            prop_assert!(available <= budget.cap() + f64::from(min_per_sec) + 1e-9);
            let seconds = elapsed_ms.div_ceil(1000) as f64;
            let allowance = ratio * deposits as f64 + f64::from(min_per_sec) * (seconds + 1.0);
            prop_assert!(
                withdrawals as f64 <= allowance + 1e-9,
                "{} withdrawals > allowance {}", withdrawals, allowance
            );
        }
    }

    #[test]
    fn breaker_keeps_probe_limit_and_legal_transitions(
        failure_threshold in 1u32..5,
        open_ms in 1u64..500,
        max_factor in 1u64..6,
        half_open_max in 1u32..4,
        success_threshold in 1u32..4,
        // (operation selector, operand): see the match below
        ops in proptest::collection::vec((0u8..5, any::<u16>()), 0..300),
    ) {
        let policy = BreakerPolicy::try_new(
            failure_threshold,
            Duration::from_millis(open_ms),
            Duration::from_millis(open_ms * max_factor),
            half_open_max,
            success_threshold,
        ).expect("valid policy");
        let t0 = t0();
        let mut breaker = CircuitBreaker::new(policy);
        let mut now = t0;
        let mut outstanding: Vec<Admission> = Vec::new();
        let mut current = BreakerState::Closed;
        for (op, operand) in ops {
            let before = breaker.state(now);
            let transition = match op {
                0 => {
                    let (admission, transition) = breaker.try_acquire(now);
                    // An ordinary admission only while closed; a probe only while half-open.
                    match admission {
                        Admission::Allowed => prop_assert_eq!(before, BreakerState::Closed),
                        Admission::Probe => prop_assert_eq!(before, BreakerState::HalfOpen),
                        Admission::Rejected => prop_assert_ne!(before, BreakerState::Closed),
                    }
                    if admission != Admission::Rejected {
                        outstanding.push(admission);
                    }
                    transition
                }
                1..=3 if !outstanding.is_empty() => {
                    let admission = outstanding.swap_remove(usize::from(operand) % outstanding.len());
                    match op {
                        1 => breaker.record_success(admission, now),
                        2 => breaker.record_failure(admission, now),
                        _ => {
                            breaker.release(admission);
                            None
                        }
                    }
                }
                1..=3 => None,
                _ => {
                    now += Duration::from_millis(u64::from(operand) % (2 * open_ms * max_factor));
                    None
                }
            };
            if let Some(Transition { from, to, at, open_for }) = transition {
                prop_assert_eq!(from, current, "transitions chain");
                prop_assert_eq!(at, now);
                let legal = matches!(
                    (from, to),
                    (BreakerState::Closed, BreakerState::Open)
                        | (BreakerState::Open, BreakerState::HalfOpen)
                        | (BreakerState::HalfOpen, BreakerState::Open)
                        | (BreakerState::HalfOpen, BreakerState::Closed)
                );
                prop_assert!(legal, "{:?} -> {:?}", from, to);
                match open_for {
                    Some(d) => {
                        prop_assert_eq!(to, BreakerState::Open);
                        prop_assert!(d >= policy.open_duration() && d <= policy.max_open_duration());
                    }
                    None => prop_assert_ne!(to, BreakerState::Open),
                }
                prop_assert_eq!(breaker.state(now), to);
                current = to;
            }
            let probes = outstanding.iter().filter(|a| **a == Admission::Probe).count();
            prop_assert!(probes <= half_open_max as usize, "{} probes in flight", probes);
            prop_assert_eq!(breaker.probes_in_flight() as usize, probes);
        }
    }

    #[test]
    fn health_flips_exactly_at_the_thresholds(
        healthy_threshold in 1u32..6,
        unhealthy_threshold in 1u32..6,
        start_healthy in any::<bool>(),
        results in proptest::collection::vec(any::<bool>(), 0..200),
    ) {
        let policy = HealthPolicy::try_new(healthy_threshold, unhealthy_threshold).expect("valid");
        let initial = if start_healthy { HealthStatus::Healthy } else { HealthStatus::Unhealthy };
        let mut tracker = HealthTracker::new(policy, initial);
        let mut run = 0u32;
        let mut last = None;
        for success in results {
            run = if last == Some(success) { run + 1 } else { 1 };
            last = Some(success);
            let (target, threshold) = if success {
                (HealthStatus::Healthy, healthy_threshold)
            } else {
                (HealthStatus::Unhealthy, unhealthy_threshold)
            };
            let before = tracker.status();
            let flip = tracker.record(success);
            let should_flip = before != target && run == threshold;
            prop_assert_eq!(flip.is_some(), should_flip, "run {} threshold {}", run, threshold);
            if let Some(flip) = flip {
                prop_assert_eq!((flip.from, flip.to), (before, target));
            }
            if run >= threshold {
                prop_assert_eq!(tracker.status(), target);
            } else {
                prop_assert_eq!(tracker.status(), before);
            }
        }
    }
}
