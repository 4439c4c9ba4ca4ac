//! One simulated backend: what the balancer knows of it (in flight, breaker, health) beside
//! what it really is (up or down, its latency, errors, workers and queue, health endpoint).
//!
//! The balancer's side uses lb-core's own state machines with the configuration's policies;
//! the backend's side is the scenario's model. The engine moves both; nothing here decides
//! a request's fate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::breaker::{Admission, BreakerPolicy, CircuitBreaker, Transition};
use crate::config::Config;
use crate::health::{HealthPolicy, HealthStatus, HealthTracker};
use crate::retry::RetryPolicy;

use super::latency::Sampler;
use super::scenario::Behaviour;

/// The configuration's policies, as the validated configuration carries them.
#[derive(Debug, Clone)]
pub(crate) struct Policies {
    breaker: Option<BreakerPolicy>,
    health: Option<HealthPolicy>,
    pub(crate) retry: RetryPolicy,
}

impl Policies {
    /// The policies the validated configuration carries.
    pub(crate) fn from_config(config: &Config) -> Policies {
        let (breaker, health) = (&config.circuit_breaker, &config.health_check);
        Policies {
            breaker: breaker.enabled.then_some(breaker.policy),
            health: health.enabled.then_some(health.policy),
            retry: config.retry.policy.clone(),
        }
    }
}

/// What the health endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Pass,
    Fail,
    /// Failing during `[since, since + period)`, passing the next period, and so on.
    Flap {
        since: u64,
        period: u64,
    },
}

/// A backend in the simulation.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    // The balancer's view.
    max_connections: u64,
    /// Attempts holding an in-flight slot (served or queued at the backend).
    pub(crate) in_flight: u64,
    breaker: Option<CircuitBreaker>,
    /// `None` when health checks are disabled (the backend then always counts as healthy).
    pub(crate) health: Option<HealthTracker>,
    pub(crate) healthy: bool,
    // The backend itself.
    pub(crate) up: bool,
    pub(crate) slow: f64,
    pub(crate) error_rate: f64,
    pub(crate) error_status: u16,
    sampler: Sampler,
    /// Requests it works on at once (`u64::MAX`: no limit).
    concurrency: u64,
    /// Requests it is working on.
    pub(crate) busy: u64,
    /// Requests waiting for a worker, as `(slot, token)`; entries whose token no longer
    /// matches their request were given up by the balancer and are skipped.
    pub(crate) queue: VecDeque<(usize, u64)>,
    endpoint: Endpoint,
}

impl Node {
    pub(crate) fn new(max_connections: u32, behaviour: &Behaviour, policies: &Policies) -> Node {
        Node {
            max_connections: u64::from(max_connections),
            in_flight: 0,
            breaker: policies.breaker.map(CircuitBreaker::new),
            health: policies
                .health
                .map(|policy| HealthTracker::new(policy, HealthStatus::Healthy)),
            healthy: true,
            up: true,
            slow: 1.0,
            error_rate: behaviour.error_rate,
            error_status: behaviour.error_status,
            sampler: Sampler::new(&behaviour.latency),
            concurrency: behaviour.concurrency.map_or(u64::MAX, u64::from),
            busy: 0,
            queue: VecDeque::new(),
            endpoint: Endpoint::Pass,
        }
    }

    /// Healthy ∧ breaker admits at `now` ∧ in flight under `max_connections`: the daemon's
    /// `Backend::is_eligible`.
    pub(crate) fn is_eligible(&self, now: Instant) -> bool {
        self.healthy && self.has_room() && self.breaker.as_ref().is_none_or(|b| b.would_admit(now))
    }

    /// In flight under `max_connections`.
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight < self.max_connections
    }

    /// A worker is free.
    pub(crate) fn has_server(&self) -> bool {
        self.busy < self.concurrency
    }

    pub(crate) fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        match &mut self.breaker {
            Some(breaker) => breaker.try_acquire(now),
            None => (Admission::Allowed, None),
        }
    }

    pub(crate) fn release(&mut self, admission: Admission) {
        if let Some(breaker) = &mut self.breaker {
            breaker.release(admission);
        }
    }

    pub(crate) fn record(
        &mut self,
        admission: Admission,
        success: bool,
        now: Instant,
    ) -> Option<Transition> {
        let breaker = self.breaker.as_mut()?;
        if success {
            breaker.record_success(admission, now)
        } else {
            breaker.record_failure(admission, now)
        }
    }

    /// One service time in nanoseconds, the slow factor applied.
    pub(crate) fn latency<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        // `as` saturates, and a NaN (impossible from validated input) becomes 0.
        (self.sampler.sample(rng) * self.slow) as u64
    }

    /// Whether the health endpoint answers 200 at `now` (nanoseconds).
    pub(crate) fn health_passes(&self, now: u64) -> bool {
        match self.endpoint {
            Endpoint::Pass => true,
            Endpoint::Fail => false,
            Endpoint::Flap { since, period } => (now.saturating_sub(since) / period) % 2 == 1,
        }
    }

    pub(crate) fn set_health_endpoint(&mut self, passes: bool, _now: u64) {
        self.endpoint = if passes {
            Endpoint::Pass
        } else {
            Endpoint::Fail
        };
    }

    pub(crate) fn flap(&mut self, period: Duration, now: u64) {
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        self.endpoint = if period == 0 {
            Endpoint::Pass
        } else {
            Endpoint::Flap { since: now, period }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::scenario::Latency;
    use rand::SeedableRng;

    fn node() -> Node {
        let config = Config::with_backends(vec![]);
        let policies = Policies::from_config(&config);
        Node::new(2, &Behaviour::default(), &policies)
    }

    #[test]
    fn flapping_fails_first_then_alternates() {
        let mut n = node();
        assert!(n.health_passes(0));
        n.flap(Duration::from_nanos(10), 100);
        let table = [
            (100, false),
            (109, false),
            (110, true),
            (119, true),
            (120, false),
        ];
        for (t, passes) in table {
            assert_eq!(n.health_passes(t), passes, "t = {t}");
        }
        n.flap(Duration::ZERO, 200);
        assert!(n.health_passes(205));
        n.set_health_endpoint(false, 300);
        assert!(!n.health_passes(301));
    }

    #[test]
    fn eligibility_needs_health_room_and_breaker() {
        #[allow(clippy::disallowed_methods)] // one real Instant as a base
        let now = Instant::now();
        let mut n = node();
        assert!(n.is_eligible(now));
        n.in_flight = 2;
        assert!(!n.is_eligible(now), "at max_connections");
        n.in_flight = 0;
        n.healthy = false;
        assert!(!n.is_eligible(now));
        n.healthy = true;
        for _ in 0..5 {
            let (admission, _) = n.admit(now);
            n.record(admission, false, now);
        }
        assert!(
            !n.is_eligible(now),
            "the default breaker opens after 5 failures"
        );
        assert!(
            n.is_eligible(now + Duration::from_secs(30)),
            "and half-opens 30 s later"
        );
    }

    #[test]
    fn slow_scales_the_latency() {
        let mut n = node();
        n.sampler = Sampler::new(&Latency::Fixed(Duration::from_millis(3)));
        n.slow = 10.0;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(n.latency(&mut rng), 30_000_000);
    }
}
