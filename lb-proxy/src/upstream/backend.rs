//! One backend as the data plane sees it: its address, its in-flight count (which is also its
//! `lb_active_connections` gauge), its health flag, its circuit breaker and its metric handles.
//!
//! The healthy request path takes no lock: eligibility reads atomics, a closed breaker admits
//! through a cached flag, and a success while the breaker has seen no failure is not recorded
//! at all. The breaker's mutex is per backend and taken only when something changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lb_core::balance::BackendView;
use lb_core::breaker::{Admission, BreakerState, CircuitBreaker, Transition};
use lb_core::health::HealthStatus;

use crate::metrics::{BackendMetrics, BreakerTransitionLabels, Metrics};
use crate::upstream::Pool;
use crate::upstream::queue::Queue;
use crate::upstream::slow_start::SlowStart;

/// A backend of the live configuration.
#[derive(Debug)]
pub struct Backend {
    /// Position in the runtime's backend table (the balancer's index).
    pub index: usize,
    /// Address requests are sent to.
    pub addr: SocketAddr,
    /// `ip:port` as a URI authority, built once.
    pub authority: http::uri::Authority,
    /// Most requests in flight at once.
    pub max_connections: i64,
    /// Set by the health checker.
    healthy: AtomicBool,
    /// `None` when circuit breakers are disabled.
    breaker: Option<Mutex<CircuitBreaker>>,
    /// Mirrors `breaker` being closed, so admission needs no lock on the healthy path.
    breaker_closed: AtomicBool,
    /// Whether the closed breaker has counted a failure that a success must reset.
    breaker_dirty: AtomicBool,
    /// Metric handles, resolved once.
    pub metrics: BackendMetrics,
    /// Idle keep-alive connections to this backend.
    pub pool: Pool,
    /// The wait queue of the backend's pool, told when a slot frees.
    pub queue: Option<Arc<Queue>>,
    /// The ramp of a backend back in rotation, when the pool has slow start.
    pub slow_start: Option<SlowStart>,
    transitions: prometheus_client::metrics::family::Family<
        BreakerTransitionLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl Backend {
    /// Creates a backend of `pool` with its metric handles for the `routes` that reach it; it
    /// starts healthy with a closed breaker.
    pub fn new(
        index: usize,
        config: &lb_core::config::BackendConfig,
        pool: &lb_core::config::PoolConfig,
        metrics: &Metrics,
        routes: &[Arc<String>],
        queue: Option<Arc<Queue>>,
        now: Instant,
    ) -> Self {
        let backend_metrics =
            BackendMetrics::new(metrics, &config.name, config.weight, &pool.name, routes);
        let breaker = &pool.circuit_breaker;
        let breaker = breaker.enabled.then(|| CircuitBreaker::new(breaker.policy));
        let authority = http::uri::Authority::try_from(config.address.to_string().as_str())
            .expect("a socket address is a valid authority");
        Self {
            index,
            addr: config.address,
            authority,
            max_connections: i64::from(config.max_connections),
            healthy: AtomicBool::new(true),
            breaker: breaker.map(Mutex::new),
            breaker_closed: AtomicBool::new(true),
            breaker_dirty: AtomicBool::new(false),
            metrics: backend_metrics,
            pool: Pool::new(&pool.upstream),
            queue,
            slow_start: SlowStart::new(pool.load_balancer.slow_start, now),
            transitions: metrics.breaker_transitions.clone(),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.metrics.name
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> i64 {
        self.metrics.active.get()
    }

    /// Whether the health checker considers the backend healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Applies a health verdict: the flag and its gauge.
    pub fn set_health(&self, status: HealthStatus) {
        let healthy = status == HealthStatus::Healthy;
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if healthy
            && !was
            && let Some(ramp) = &self.slow_start
        {
            ramp.begin(crate::clock::now());
        }
        self.metrics.health.set(i64::from(healthy));
    }

    /// Healthy, admitted by the breaker at `now`, and under `max_connections`.
    #[inline]
    pub fn is_eligible(&self, now: Instant) -> bool {
        self.is_healthy() && self.in_flight() < self.max_connections && self.breaker_admits(now)
    }

    /// Healthy and admitted by the breaker, but at `max_connections`: a slot is worth waiting
    /// for.
    pub fn waits_for_slot(&self, now: Instant) -> bool {
        self.is_healthy() && self.in_flight() >= self.max_connections && self.breaker_admits(now)
    }

    #[inline]
    fn breaker_admits(&self, now: Instant) -> bool {
        if self.breaker_closed.load(Ordering::Relaxed) {
            return true;
        }
        match &self.breaker {
            Some(breaker) => lock(breaker).would_admit(now),
            None => true,
        }
    }

    /// Takes an in-flight slot if the backend is under its limit.
    pub fn try_reserve(self: &Arc<Self>) -> Option<InFlight> {
        let gauge = self.metrics.active.inner();
        let mut current = gauge.load(Ordering::Relaxed);
        loop {
            if current >= self.max_connections {
                return None;
            }
            match gauge.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(InFlight {
                        backend: self.clone(),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Asks the breaker to admit one attempt. The returned [`Admitted`] must be settled with
    /// [`Admitted::record`]; dropped unsettled (the client went away) it gives a probe permit back.
    pub fn admit(&self, now: Instant) -> Admitted<'_> {
        let admission = if self.breaker_closed.load(Ordering::Relaxed) {
            Admission::Allowed
        } else if let Some(breaker) = &self.breaker {
            let (admission, transition) = lock(breaker).try_acquire(now);
            if let Some(transition) = transition {
                self.on_transition(&transition);
            }
            admission
        } else {
            Admission::Allowed
        };
        Admitted {
            backend: self,
            admission,
            settled: false,
        }
    }

    /// Feeds the outcome of an admitted attempt to the breaker.
    fn record(&self, admission: Admission, success: bool, now: Instant) {
        let Some(breaker) = &self.breaker else { return };
        let closed = self.breaker_closed.load(Ordering::Relaxed);
        if success && closed && !self.breaker_dirty.load(Ordering::Relaxed) {
            // Nothing to reset: the common case costs no lock.
            return;
        }
        let mut breaker = lock(breaker);
        let transition = if success {
            breaker.record_success(admission, now)
        } else {
            breaker.record_failure(admission, now)
        };
        let closed_now = breaker.state(now) == BreakerState::Closed;
        self.breaker_dirty
            .store(closed_now && !success, Ordering::Relaxed);
        drop(breaker);
        if let Some(transition) = transition {
            self.on_transition(&transition);
        }
    }

    /// Gives back an admission that ended without an outcome (the client went away).
    fn release(&self, admission: Admission) {
        if let (Admission::Probe, Some(breaker)) = (admission, &self.breaker) {
            lock(breaker).release(admission);
        }
    }

    fn on_transition(&self, transition: &Transition) {
        self.breaker_closed
            .store(transition.to == BreakerState::Closed, Ordering::Relaxed);
        if transition.to == BreakerState::Closed {
            self.breaker_dirty.store(false, Ordering::Relaxed);
        }
        self.metrics.breaker_state.set(transition.to.gauge());
        self.transitions
            .get_or_create(&BreakerTransitionLabels {
                backend: self.metrics.name.clone(),
                to: transition.to.as_str(),
            })
            .inc();
        match transition.open_for {
            Some(open_for) => tracing::warn!(
                backend = %self.name(), from = transition.from.as_str(), to = transition.to.as_str(),
                open_for_ms = open_for.as_millis() as u64, "circuit breaker transition"
            ),
            None => tracing::info!(
                backend = %self.name(), from = transition.from.as_str(), to = transition.to.as_str(),
                "circuit breaker transition"
            ),
        }
    }
}

/// A lock that survives a panic elsewhere: breaker state stays usable rather than poisoning the
/// backend forever.
fn lock(breaker: &Mutex<CircuitBreaker>) -> std::sync::MutexGuard<'_, CircuitBreaker> {
    breaker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A breaker admission for one attempt. Settled by [`Admitted::record`]; dropped unsettled —
/// the request was abandoned mid-flight — it returns a half-open probe permit, so a client that
/// disconnects can never leave a breaker stuck half-open.
#[derive(Debug)]
pub struct Admitted<'a> {
    backend: &'a Backend,
    admission: Admission,
    settled: bool,
}

impl Admitted<'_> {
    /// Whether the breaker refused the attempt.
    pub fn is_rejected(&self) -> bool {
        self.admission == Admission::Rejected
    }

    /// Settles the attempt with its outcome.
    pub fn record(mut self, success: bool, now: Instant) {
        self.settled = true;
        self.backend.record(self.admission, success, now);
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.backend.release(self.admission);
        }
    }
}

/// An in-flight slot on a backend; dropping it gives the slot back, on every path.
#[derive(Debug)]
pub struct InFlight {
    backend: Arc<Backend>,
}

impl InFlight {
    /// The backend this slot belongs to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.metrics.active.dec();
        if let Some(queue) = &self.backend.queue {
            queue.notify();
        }
    }
}

/// The balancer's view of a backend table at one instant.
pub struct EligibleView<'a> {
    /// The table.
    pub backends: &'a [Arc<Backend>],
    /// The instant eligibility is judged at.
    pub now: Instant,
}

impl BackendView for EligibleView<'_> {
    fn len(&self) -> usize {
        self.backends.len()
    }

    fn is_eligible(&self, index: usize) -> bool {
        self.backends
            .get(index)
            .is_some_and(|backend| backend.is_eligible(self.now))
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.backends
            .get(index)
            .map_or(0, |backend| u64::try_from(backend.in_flight()).unwrap_or(0))
    }
}
