//! One backend as the data plane sees it: its address, its in-flight count (which is also its
//! `lb_active_connections` gauge), whether it is in rotation (health, drain), its weight (as
//! configured, or as overridden through the admin API), its circuit breaker and its metric
//! handles.
//!
//! A backend outlives the snapshot that made it: a reload that keeps a backend (same name, same
//! address) hands the same `Backend` to the next snapshot, so its breaker, health, in-flight
//! count, pooled connections and overrides carry over; what the file changes is changed in place.
//!
//! The healthy request path takes no lock: eligibility reads atomics, a closed breaker admits
//! through a cached flag, and a success while the breaker has seen no failure is not recorded
//! at all. The breaker's mutex is per backend and taken only when something changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lb_core::balance::BackendView;
use lb_core::breaker::{Admission, BreakerPolicy, BreakerState, CircuitBreaker, Transition};
use lb_core::config::{BackendConfig, PoolConfig};
use lb_core::health::HealthStatus;

use crate::metrics::{BackendMetrics, Metrics};
use crate::upstream::Pool;
use crate::upstream::queue::Queue;
use crate::upstream::slow_start::SlowStart;

/// Why a backend is out of rotation, as bits of one atomic: eligible only when none is set.
const UNHEALTHY: u8 = 1;
const DRAINED: u8 = 2;
const RETIRED: u8 = 4;

/// A backend of the live configuration.
#[derive(Debug)]
pub struct Backend {
    /// Address requests are sent to.
    pub addr: SocketAddr,
    /// `ip:port` as a URI authority, built once.
    pub authority: http::uri::Authority,
    /// Most requests in flight at once.
    max_connections: AtomicI64,
    /// `UNHEALTHY`, `DRAINED`, `RETIRED`.
    out: AtomicU8,
    /// The weight in the file.
    configured_weight: AtomicU32,
    /// The weight set through the admin API; 0 when none is.
    weight_override: AtomicU32,
    /// `None` when circuit breakers are disabled.
    breaker: Mutex<Option<CircuitBreaker>>,
    /// Mirrors the breaker being closed (or absent), so admission needs no lock on the healthy
    /// path.
    breaker_closed: AtomicBool,
    /// Whether the closed breaker has counted a failure that a success must reset.
    breaker_dirty: AtomicBool,
    /// Metric handles, shared with any live backend of the same name.
    pub metrics: Arc<BackendMetrics>,
    /// Idle keep-alive connections to this backend.
    pub pool: Pool,
    /// The wait queue of the backend's pool, told when a slot frees.
    pub queue: Arc<Queue>,
    /// The ramp of a backend back in rotation (its duration 0 when the pool has no slow start).
    pub slow_start: SlowStart,
}

/// Whether a backend came back from a change with its runtime overrides cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverridesCleared(pub bool);

impl Backend {
    /// Creates a backend of `pool` (named `pool_name`) with its metric handles; it starts
    /// healthy with a closed breaker, out of any slow-start ramp.
    pub fn new(
        config: &BackendConfig,
        pool: &PoolConfig,
        pool_name: &Arc<String>,
        queue: Arc<Queue>,
        metrics: &Metrics,
        now: Instant,
    ) -> Self {
        let backend_metrics = metrics.backend(&config.name, pool_name);
        backend_metrics.weight.set(i64::from(config.weight));
        backend_metrics.health.set(1);
        backend_metrics.drained.set(0);
        backend_metrics.breaker_state.set(0);
        let breaker = &pool.circuit_breaker;
        let breaker = breaker.enabled.then_some(breaker.policy);
        let authority = http::uri::Authority::try_from(config.address.to_string().as_str())
            .expect("a socket address is a valid authority");
        Self {
            addr: config.address,
            authority,
            max_connections: AtomicI64::new(i64::from(config.max_connections)),
            out: AtomicU8::new(0),
            configured_weight: AtomicU32::new(config.weight),
            weight_override: AtomicU32::new(0),
            breaker: Mutex::new(breaker.map(CircuitBreaker::new)),
            breaker_closed: AtomicBool::new(true),
            breaker_dirty: AtomicBool::new(false),
            pool: Pool::new(
                &pool.upstream,
                config,
                metrics,
                backend_metrics.ping_timeouts.clone(),
            ),
            metrics: backend_metrics,
            queue,
            slow_start: SlowStart::new(pool.load_balancer.slow_start, now),
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

    /// Most requests in flight at once.
    pub fn max_connections(&self) -> i64 {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// Whether the health checker considers the backend healthy.
    pub fn is_healthy(&self) -> bool {
        self.out.load(Ordering::Relaxed) & UNHEALTHY == 0
    }

    /// The health verdict now, as the health checker would start from it.
    pub fn health(&self) -> HealthStatus {
        match self.is_healthy() {
            true => HealthStatus::Healthy,
            false => HealthStatus::Unhealthy,
        }
    }

    /// Applies a health verdict: the flag and its gauge.
    pub fn set_health(&self, status: HealthStatus) {
        let healthy = status == HealthStatus::Healthy;
        let was = self.set_bit(UNHEALTHY, !healthy);
        if healthy && was & UNHEALTHY != 0 {
            self.slow_start.begin(crate::clock::now());
        }
        self.metrics.health.set(i64::from(healthy));
    }

    /// Whether the backend is drained through the admin API.
    pub fn is_drained(&self) -> bool {
        self.out.load(Ordering::Relaxed) & DRAINED != 0
    }

    /// Drains the backend (no new requests; those in flight finish) or puts it back.
    pub fn set_drained(&self, drained: bool) {
        let was = self.set_bit(DRAINED, drained);
        self.metrics.drained.set(i64::from(drained));
        if drained {
            // No new request will use them.
            self.pool.clear();
        } else if was & DRAINED != 0 {
            self.slow_start.begin(crate::clock::now());
        }
    }

    /// The backend left the configuration: no new request, its idle connections close and no
    /// connection is kept any more, and its breaker stops counting (a backend of the same name
    /// may be joining and shares its metric series).
    pub fn retire(&self) {
        self.set_bit(RETIRED, true);
        self.pool.close();
        *lock(&self.breaker) = None;
        self.breaker_closed.store(true, Ordering::Relaxed);
    }

    /// Whether the backend is on its way out (drained, or gone from the configuration): its
    /// clients are asked to reconnect after their answer.
    pub fn leaving(&self) -> bool {
        self.out.load(Ordering::Relaxed) & (DRAINED | RETIRED) != 0
    }

    /// Whether anything takes the backend out of rotation besides load and its breaker:
    /// unhealthy, drained or retired.
    pub fn out_of_rotation(&self) -> bool {
        self.out.load(Ordering::Relaxed) != 0
    }

    /// Sets or clears `bit`; the bits as they were.
    fn set_bit(&self, bit: u8, on: bool) -> u8 {
        match on {
            true => self.out.fetch_or(bit, Ordering::Relaxed),
            false => self.out.fetch_and(!bit, Ordering::Relaxed),
        }
    }

    /// The weight the balancer uses: the override if one is set, else the configured weight.
    pub fn weight(&self) -> u32 {
        self.weight_override()
            .unwrap_or_else(|| self.configured_weight())
    }

    /// The weight in the file.
    pub fn configured_weight(&self) -> u32 {
        self.configured_weight.load(Ordering::Relaxed)
    }

    /// The weight set through the admin API, if any.
    pub fn weight_override(&self) -> Option<u32> {
        Some(self.weight_override.load(Ordering::Relaxed)).filter(|weight| *weight != 0)
    }

    /// Sets or removes the weight override; the caller rebuilds the selector.
    pub fn set_weight_override(&self, weight: Option<u32>) {
        self.weight_override
            .store(weight.unwrap_or(0), Ordering::Relaxed);
        self.metrics.weight.set(i64::from(self.weight()));
    }

    /// Takes a changed entry (same name, same address): the connection limit and weight.
    /// With `clear_overrides` (the file changed this backend: it is the newer word on it) the
    /// runtime overrides are cleared; a discovery source's change keeps them, since an operator
    /// who drained a backend meant it to stay drained whatever its registry says.
    pub fn update(&self, config: &BackendConfig, clear_overrides: bool) -> OverridesCleared {
        let max_connections = i64::from(config.max_connections);
        self.max_connections
            .store(max_connections, Ordering::Relaxed);
        self.configured_weight
            .store(config.weight, Ordering::Relaxed);
        if !clear_overrides {
            self.metrics.weight.set(i64::from(self.weight()));
            return OverridesCleared(false);
        }
        let had = self.weight_override().is_some() || self.is_drained();
        self.set_weight_override(None);
        self.set_drained(false);
        OverridesCleared(had)
    }

    /// Healthy, not drained, admitted by the breaker at `now`, and under `max_connections`.
    pub fn is_eligible(&self, now: Instant) -> bool {
        !self.out_of_rotation()
            && self.in_flight() < self.max_connections()
            && self.breaker_admits(now)
    }

    /// Healthy and admitted by the breaker, but at `max_connections`: a slot is worth waiting
    /// for.
    pub fn waits_for_slot(&self, now: Instant) -> bool {
        !self.out_of_rotation()
            && self.in_flight() >= self.max_connections()
            && self.breaker_admits(now)
    }

    #[inline]
    fn breaker_admits(&self, now: Instant) -> bool {
        if self.breaker_closed.load(Ordering::Relaxed) {
            return true;
        }
        lock(&self.breaker)
            .as_ref()
            .is_none_or(|breaker| breaker.would_admit(now))
    }

    /// Takes an in-flight slot if the backend is under its limit.
    pub fn try_reserve(self: &Arc<Self>) -> Option<InFlight> {
        let gauge = self.metrics.active.inner();
        let limit = self.max_connections();
        let mut current = gauge.load(Ordering::Relaxed);
        loop {
            if current >= limit {
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
        } else {
            let mut breaker = lock(&self.breaker);
            match breaker.as_mut().map(|breaker| breaker.try_acquire(now)) {
                Some((admission, transition)) => {
                    drop(breaker);
                    if let Some(transition) = transition {
                        self.on_transition(&transition);
                    }
                    admission
                }
                None => Admission::Allowed,
            }
        };
        Admitted {
            backend: self,
            admission,
            settled: false,
        }
    }

    /// Feeds the outcome of an admitted attempt to the breaker.
    fn record(&self, admission: Admission, success: bool, now: Instant) {
        let closed = self.breaker_closed.load(Ordering::Relaxed);
        if success && closed && !self.breaker_dirty.load(Ordering::Relaxed) {
            // Nothing to reset: the common case costs no lock.
            return;
        }
        let mut guard = lock(&self.breaker);
        let Some(breaker) = guard.as_mut() else {
            return;
        };
        let transition = if success {
            breaker.record_success(admission, now)
        } else {
            breaker.record_failure(admission, now)
        };
        let closed_now = breaker.state(now) == BreakerState::Closed;
        self.breaker_dirty
            .store(closed_now && !success, Ordering::Relaxed);
        drop(guard);
        if let Some(transition) = transition {
            self.on_transition(&transition);
        }
    }

    /// Gives back an admission that ended without an outcome (the client went away).
    fn release(&self, admission: Admission) {
        if admission == Admission::Probe
            && let Some(breaker) = lock(&self.breaker).as_mut()
        {
            breaker.release(admission);
        }
    }

    /// The breaker's state at `now`; `None` when breakers are disabled.
    pub fn breaker_state(&self, now: Instant) -> Option<BreakerState> {
        lock(&self.breaker)
            .as_ref()
            .map(|breaker| breaker.state(now))
    }

    /// Enforces `policy` from now on, or disables the breaker (`None`). A breaker that stays
    /// keeps its state: an open breaker stays open.
    pub fn set_breaker_policy(&self, policy: Option<BreakerPolicy>) {
        let mut breaker = lock(&self.breaker);
        match (breaker.as_mut(), policy) {
            (Some(breaker), Some(policy)) => breaker.set_policy(policy),
            (None, Some(policy)) => *breaker = Some(CircuitBreaker::new(policy)),
            (_, None) => {
                *breaker = None;
                self.breaker_closed.store(true, Ordering::Relaxed);
                self.breaker_dirty.store(false, Ordering::Relaxed);
                self.metrics.breaker_state.set(BreakerState::Closed.gauge());
            }
        }
    }

    /// Closes the breaker at `now` (an operator's reset); false when breakers are disabled.
    pub fn reset_breaker(&self, now: Instant) -> bool {
        let mut breaker = lock(&self.breaker);
        let Some(breaker_now) = breaker.as_mut() else {
            return false;
        };
        let transition = breaker_now.reset(now);
        drop(breaker);
        if let Some(transition) = transition {
            self.on_transition(&transition);
        }
        true
    }

    fn on_transition(&self, transition: &Transition) {
        self.breaker_closed
            .store(transition.to == BreakerState::Closed, Ordering::Relaxed);
        if transition.to == BreakerState::Closed {
            self.breaker_dirty.store(false, Ordering::Relaxed);
        }
        self.metrics.breaker_state.set(transition.to.gauge());
        self.metrics.count_transition(transition.to);
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
fn lock(
    breaker: &Mutex<Option<CircuitBreaker>>,
) -> std::sync::MutexGuard<'_, Option<CircuitBreaker>> {
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
        self.backend.queue.notify();
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
