use super::*;
use Admission::{Allowed, Probe, Rejected};
use BreakerState::{Closed, HalfOpen, Open};

#[allow(clippy::disallowed_methods)] // tests need one real Instant as a base; offsets are exact
fn t0() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// failure 3, open 1 s, max open 3 s, 2 probes at once, 2 successes to close.
fn policy() -> BreakerPolicy {
    BreakerPolicy::try_new(3, ms(1000), ms(3000), 2, 2).expect("valid test policy")
}

#[derive(Debug, Clone, Copy)]
enum Start {
    /// Fresh breaker.
    Closed,
    /// Two failures at 0 ms: one short of opening.
    ClosedTwoFailures,
    /// Opened at 0 ms for 1000 ms.
    Open,
    /// Half-open at 1000 ms with one probe in flight.
    HalfOpenOneProbe,
    /// Half-open at 1000 ms with both probe slots taken.
    HalfOpenTwoProbes,
    /// A probe failed at 1000 ms: open again, for 2000 ms (until 3000 ms).
    Reopened,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// `try_acquire`, expecting this admission.
    Acquire(Admission),
    Success(Admission),
    Failure(Admission),
    Release(Admission),
}

fn setup(start: Start, t0: Instant) -> CircuitBreaker {
    let mut breaker = CircuitBreaker::new(policy());
    let at = |n| t0 + ms(n);
    let fail_closed = |b: &mut CircuitBreaker, n: u32| {
        for _ in 0..n {
            let (admission, _) = b.try_acquire(at(0));
            b.record_failure(admission, at(0));
        }
    };
    match start {
        Start::Closed => {}
        Start::ClosedTwoFailures => fail_closed(&mut breaker, 2),
        Start::Open => fail_closed(&mut breaker, 3),
        Start::HalfOpenOneProbe | Start::HalfOpenTwoProbes | Start::Reopened => {
            fail_closed(&mut breaker, 3);
            assert_eq!(breaker.try_acquire(at(1000)).0, Probe);
            if matches!(start, Start::HalfOpenTwoProbes) {
                assert_eq!(breaker.try_acquire(at(1000)).0, Probe);
            }
            if matches!(start, Start::Reopened) {
                breaker.record_failure(Probe, at(1000));
            }
        }
    }
    breaker
}

type ExpectedTransition = (BreakerState, BreakerState, u64, Option<u64>);

struct Row {
    name: &'static str,
    start: Start,
    events: &'static [(u64, Event)],
    check_at: u64,
    state: BreakerState,
    transitions: &'static [ExpectedTransition],
}

#[rustfmt::skip]
const ROWS: &[Row] = &[
    Row { name: "closed admits", start: Start::Closed,
          events: &[(0, Event::Acquire(Allowed))], check_at: 0, state: Closed, transitions: &[] },
    Row { name: "closed success stays closed", start: Start::Closed,
          events: &[(0, Event::Success(Allowed))], check_at: 0, state: Closed, transitions: &[] },
    Row { name: "failures below threshold stay closed", start: Start::Closed,
          events: &[(0, Event::Failure(Allowed)), (1, Event::Failure(Allowed))],
          check_at: 1, state: Closed, transitions: &[] },
    Row { name: "threshold-th consecutive failure opens", start: Start::ClosedTwoFailures,
          events: &[(5, Event::Failure(Allowed))], check_at: 5, state: Open,
          transitions: &[(Closed, Open, 5, Some(1000))] },
    Row { name: "a success resets the consecutive count", start: Start::ClosedTwoFailures,
          events: &[(1, Event::Success(Allowed)), (2, Event::Failure(Allowed)), (3, Event::Failure(Allowed))],
          check_at: 3, state: Closed, transitions: &[] },
    Row { name: "open rejects until its time is up", start: Start::Open,
          events: &[(999, Event::Acquire(Rejected))], check_at: 999, state: Open, transitions: &[] },
    Row { name: "open whose time is up reports half_open", start: Start::Open,
          events: &[], check_at: 1000, state: HalfOpen, transitions: &[] },
    Row { name: "acquire after open time moves to half_open with a probe", start: Start::Open,
          events: &[(1000, Event::Acquire(Probe))], check_at: 1000, state: HalfOpen,
          transitions: &[(Open, HalfOpen, 1000, None)] },
    Row { name: "late success while open is ignored", start: Start::Open,
          events: &[(500, Event::Success(Allowed))], check_at: 999, state: Open, transitions: &[] },
    Row { name: "late failure while open does not extend it", start: Start::Open,
          events: &[(900, Event::Failure(Allowed)), (1000, Event::Acquire(Probe))],
          check_at: 1000, state: HalfOpen, transitions: &[(Open, HalfOpen, 1000, None)] },
    Row { name: "rejected outcomes are ignored", start: Start::Open,
          events: &[(10, Event::Failure(Rejected)), (10, Event::Success(Rejected)), (10, Event::Release(Rejected)),
                    (1000, Event::Acquire(Probe))],
          check_at: 1000, state: HalfOpen, transitions: &[(Open, HalfOpen, 1000, None)] },
    Row { name: "half-open admits at most half_open_max_requests probes", start: Start::HalfOpenOneProbe,
          events: &[(1000, Event::Acquire(Probe)), (1001, Event::Acquire(Rejected))],
          check_at: 1001, state: HalfOpen, transitions: &[] },
    Row { name: "release frees a probe slot", start: Start::HalfOpenTwoProbes,
          events: &[(1001, Event::Release(Probe)), (1002, Event::Acquire(Probe)), (1003, Event::Acquire(Rejected))],
          check_at: 1003, state: HalfOpen, transitions: &[] },
    Row { name: "one probe success is not enough", start: Start::HalfOpenOneProbe,
          events: &[(1100, Event::Success(Probe))], check_at: 1100, state: HalfOpen, transitions: &[] },
    Row { name: "success_threshold probe successes close", start: Start::HalfOpenTwoProbes,
          events: &[(1100, Event::Success(Probe)), (1200, Event::Success(Probe))],
          check_at: 1200, state: Closed, transitions: &[(HalfOpen, Closed, 1200, None)] },
    Row { name: "a late closed-time success does not count as a probe", start: Start::HalfOpenTwoProbes,
          events: &[(1001, Event::Success(Allowed)), (1002, Event::Success(Probe))],
          check_at: 1002, state: HalfOpen, transitions: &[] },
    Row { name: "a late closed-time failure does not reopen", start: Start::HalfOpenOneProbe,
          events: &[(1001, Event::Failure(Allowed))], check_at: 1001, state: HalfOpen, transitions: &[] },
    Row { name: "probe failure reopens for twice as long", start: Start::HalfOpenOneProbe,
          events: &[(1500, Event::Failure(Probe))], check_at: 3499, state: Open,
          transitions: &[(HalfOpen, Open, 1500, Some(2000))] },
    Row { name: "reopened breaker waits the doubled duration", start: Start::Reopened,
          events: &[(2999, Event::Acquire(Rejected)), (3000, Event::Acquire(Probe))],
          check_at: 3000, state: HalfOpen, transitions: &[(Open, HalfOpen, 3000, None)] },
    Row { name: "doubling is capped at max_open_duration", start: Start::Reopened,
          events: &[(3000, Event::Acquire(Probe)), (3000, Event::Failure(Probe))],
          check_at: 5999, state: Open,
          transitions: &[(Open, HalfOpen, 3000, None), (HalfOpen, Open, 3000, Some(3000))] },
    Row { name: "closing resets the open duration", start: Start::Reopened,
          events: &[(3000, Event::Acquire(Probe)), (3000, Event::Acquire(Probe)),
                    (3001, Event::Success(Probe)), (3002, Event::Success(Probe)),
                    (3003, Event::Failure(Allowed)), (3003, Event::Failure(Allowed)), (3003, Event::Failure(Allowed))],
          check_at: 3003, state: Open,
          transitions: &[(Open, HalfOpen, 3000, None), (HalfOpen, Closed, 3002, None), (Closed, Open, 3003, Some(1000))] },
    Row { name: "a probe of a failed round keeps its slot", start: Start::HalfOpenTwoProbes,
          events: &[(1100, Event::Failure(Probe)), (3100, Event::Acquire(Probe)), (3100, Event::Acquire(Rejected))],
          check_at: 3100, state: HalfOpen,
          transitions: &[(HalfOpen, Open, 1100, Some(2000)), (Open, HalfOpen, 3100, None)] },
    Row { name: "a probe success after its round failed is ignored", start: Start::HalfOpenTwoProbes,
          events: &[(1100, Event::Failure(Probe)), (1200, Event::Success(Probe))],
          check_at: 1200, state: Open, transitions: &[(HalfOpen, Open, 1100, Some(2000))] },
];

#[test]
fn transition_table() {
    let t0 = t0();
    for row in ROWS {
        let mut breaker = setup(row.start, t0);
        let mut seen = Vec::new();
        for &(at_ms, event) in row.events {
            let now = t0 + ms(at_ms);
            let transition = match event {
                Event::Acquire(expected) => {
                    let (admission, transition) = breaker.try_acquire(now);
                    assert_eq!(admission, expected, "{}: admission at {at_ms} ms", row.name);
                    transition
                }
                Event::Success(admission) => breaker.record_success(admission, now),
                Event::Failure(admission) => breaker.record_failure(admission, now),
                Event::Release(admission) => {
                    breaker.release(admission);
                    None
                }
            };
            seen.extend(transition);
        }
        let expected: Vec<Transition> = row
            .transitions
            .iter()
            .map(|&(from, to, at_ms, open_ms)| Transition {
                from,
                to,
                at: t0 + ms(at_ms),
                open_for: open_ms.map(ms),
            })
            .collect();
        assert_eq!(seen, expected, "{}: transitions", row.name);
        let check = t0 + ms(row.check_at);
        assert_eq!(breaker.state(check), row.state, "{}: state", row.name);
    }
}

#[test]
fn would_admit_matches_try_acquire_without_changing_state() {
    let t0 = t0();
    for start in [
        Start::Closed,
        Start::ClosedTwoFailures,
        Start::Open,
        Start::HalfOpenOneProbe,
        Start::HalfOpenTwoProbes,
        Start::Reopened,
    ] {
        for at_ms in [0, 999, 1000, 2999, 3000] {
            let now = t0 + ms(at_ms);
            let mut breaker = setup(start, t0);
            let predicted = breaker.would_admit(now);
            assert_eq!(breaker.would_admit(now), predicted, "{start:?}: pure");
            let (admission, _) = breaker.try_acquire(now);
            assert_eq!(admission != Rejected, predicted, "{start:?} at {at_ms} ms");
        }
    }
}

#[test]
fn a_clock_reading_older_than_the_trip_keeps_it_open() {
    let t0 = t0();
    let mut breaker = setup(Start::Closed, t0);
    let later = t0 + ms(500);
    for _ in 0..3 {
        breaker.record_failure(Allowed, later);
    }
    // Another worker read the clock before the trip: the breaker must stay open, not panic.
    assert_eq!(breaker.state(t0), Open);
    assert_eq!(breaker.try_acquire(t0), (Rejected, None));
}

#[test]
fn policy_rules() {
    let s = Duration::from_secs;
    let cases = [
        (
            BreakerPolicy::try_new(0, s(1), s(2), 1, 1),
            Some(InvalidBreakerPolicy::ZeroFailureThreshold),
        ),
        (
            BreakerPolicy::try_new(1, s(0), s(2), 1, 1),
            Some(InvalidBreakerPolicy::ZeroOpenDuration),
        ),
        (
            BreakerPolicy::try_new(1, s(3), s(2), 1, 1),
            Some(InvalidBreakerPolicy::MaxOpenBelowOpen {
                open: s(3),
                max_open: s(2),
            }),
        ),
        (
            BreakerPolicy::try_new(1, s(1), s(2), 0, 1),
            Some(InvalidBreakerPolicy::ZeroHalfOpenMaxRequests),
        ),
        (
            BreakerPolicy::try_new(1, s(1), s(2), 1, 0),
            Some(InvalidBreakerPolicy::ZeroSuccessThreshold),
        ),
        (BreakerPolicy::try_new(1, s(2), s(2), 1, 1), None),
    ];
    for (result, expected) in cases {
        assert_eq!(result.err(), expected);
    }
    let message = InvalidBreakerPolicy::MaxOpenBelowOpen {
        open: s(3),
        max_open: s(2),
    }
    .to_string();
    assert_eq!(
        message,
        "max_open_duration (2s) must be at least open_duration (3s)"
    );
}

#[test]
fn default_policy_matches_config_defaults() {
    let p = BreakerPolicy::default();
    let expected =
        BreakerPolicy::try_new(5, Duration::from_secs(30), Duration::from_secs(300), 1, 2);
    assert_eq!(Ok(p), expected);
}

#[test]
fn labels_and_gauges_are_stable() {
    let table = [
        (Closed, "closed", 0),
        (Open, "open", 1),
        (HalfOpen, "half_open", 2),
    ];
    for (state, label, gauge) in table {
        assert_eq!(state.as_str(), label);
        assert_eq!(state.to_string(), label);
        assert_eq!(state.gauge(), gauge);
    }
}

/// A new policy keeps the state: the open period given before stays, failure counts and probe
/// successes carry over to the new thresholds.
#[test]
fn a_new_policy_keeps_what_was_learned() {
    let t0 = t0();
    let at = |n| t0 + ms(n);
    let lenient = BreakerPolicy::try_new(10, ms(50), ms(100), 1, 1).expect("valid");

    let mut open = setup(Start::Open, t0);
    open.set_policy(lenient);
    assert_eq!(
        open.state(at(999)),
        Open,
        "still open for the 1000 ms it was given"
    );
    assert_eq!(open.open_until(), Some(at(1000)));
    assert_eq!(open.try_acquire(at(999)).0, Rejected);

    let mut two = setup(Start::ClosedTwoFailures, t0);
    let strict = BreakerPolicy::try_new(2, ms(500), ms(500), 1, 1).expect("valid");
    two.set_policy(strict);
    assert_eq!(two.consecutive_failures(), 2);
    let transition = two.record_failure(Allowed, at(5));
    assert_eq!(
        transition.map(|t| (t.to, t.open_for)),
        Some((Open, Some(ms(500))))
    );

    let mut half = setup(Start::HalfOpenOneProbe, t0);
    half.set_policy(lenient);
    let closed = half.record_success(Probe, at(1001));
    assert_eq!(
        closed.map(|t| t.to),
        Some(Closed),
        "one success closes under the new policy"
    );
}

#[test]
fn reset_closes_from_every_state() {
    let t0 = t0();
    let now = t0 + ms(1500);
    for (start, from) in [
        (Start::Closed, None),
        (Start::ClosedTwoFailures, None),
        (Start::Open, Some(HalfOpen)), // at 1500 ms the open period is over
        (Start::HalfOpenTwoProbes, Some(HalfOpen)),
        (Start::Reopened, Some(Open)),
    ] {
        let mut breaker = setup(start, t0);
        let probes = breaker.probes_in_flight();
        let transition = breaker.reset(now);
        assert_eq!(transition.map(|t| t.from), from, "{start:?}");
        assert!(transition.is_none_or(|t| t.to == Closed && t.at == now));
        assert_eq!(breaker.state(now), Closed, "{start:?}");
        assert_eq!(breaker.consecutive_failures(), 0, "{start:?}");
        assert_eq!(breaker.open_until(), None);
        assert_eq!(
            breaker.probes_in_flight(),
            probes,
            "probes keep their slots"
        );
        assert_eq!(breaker.try_acquire(now).0, Allowed);
    }
}
