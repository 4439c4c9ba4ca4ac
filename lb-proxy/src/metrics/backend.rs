//! Per-backend series: handles resolved once when a backend joins, so the request path never
//! formats a label or hashes a backend name, and removed once the last backend of that name is
//! gone, so `/metrics` lists exactly the backends that are live (or still finishing requests).
//!
//! Series are per name. A backend whose address changes is a new backend of the same name; while
//! the old one finishes its requests both share the name's handles (one `lb_active_connections`
//! counts both, and its `max_connections` bounds both), and the series go only when neither is
//! left. The registry's lock is taken when a backend joins or leaves, never per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use lb_core::breaker::BreakerState;
use lb_core::retry::FailureKind;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{
    BackendLabels, BreakerTransitionLabels, HealthCheckLabels, HistogramFamily, RetryLabels,
    WeightLabels,
};

/// Status codes whose `lb_requests_total` counters a backend keeps pre-resolved; any other code
/// takes one family lookup per request.
pub(super) const COMMON_STATUSES: [u16; 18] = [
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504,
];
pub(super) const STATUS_SLOTS: usize = COMMON_STATUSES.len();
const BREAKER_STATES: [BreakerState; 3] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
];

/// The families that carry a `backend` label: what a backend's handles are resolved from and
/// what its series are removed from.
#[derive(Debug, Clone)]
pub(crate) struct BackendFamilies {
    pub(super) request_size: HistogramFamily<BackendLabels>,
    pub(super) response_size: HistogramFamily<BackendLabels>,
    pub(super) health: Family<BackendLabels, Gauge>,
    pub(super) breaker_state: Family<BackendLabels, Gauge>,
    pub(super) active: Family<BackendLabels, Gauge>,
    pub(super) retries: Family<RetryLabels, Counter>,
    pub(super) health_checks: Family<HealthCheckLabels, Counter>,
    pub(super) breaker_transitions: Family<BreakerTransitionLabels, Counter>,
    pub(super) weight: Family<WeightLabels, Gauge>,
    pub(super) drained: Family<BackendLabels, Gauge>,
    pub(super) upstream_idle: Family<BackendLabels, Gauge>,
    pub(super) upgraded: Family<BackendLabels, Gauge>,
    pub(super) ping_timeouts: Family<BackendLabels, Counter>,
    pub(super) body_failures: Family<BackendLabels, Counter>,
    pub(super) upstream_tls_errors: Family<super::tls::UpstreamTlsLabels, Counter>,
}

/// The live backends' handles, by name.
#[derive(Debug, Default)]
pub(crate) struct BackendRegistry {
    live: Mutex<HashMap<String, Weak<BackendMetrics>>>,
}

impl BackendRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<BackendMetrics>>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The handles of backend `name` of `pool`: those of a live backend of that name in that
    /// pool, else new series (event counters created at zero, so dashboards and `increase()`
    /// see them before the first event). A backend that moved to another pool gets its own
    /// handles (the same series but its weight's, which names the pool).
    pub(crate) fn acquire(
        self: &Arc<Self>,
        families: &BackendFamilies,
        name: &str,
        pool: &Arc<String>,
    ) -> Arc<BackendMetrics> {
        let mut live = self.lock();
        let existing = live.get(name).and_then(Weak::upgrade);
        if let Some(metrics) = existing.filter(|metrics| metrics.pool == *pool) {
            return metrics;
        }
        let metrics = Arc::new(BackendMetrics::create(families, name, pool, self.clone()));
        live.insert(name.to_owned(), Arc::downgrade(&metrics));
        metrics
    }
}

/// Metric handles of one backend name.
#[derive(Debug)]
pub struct BackendMetrics {
    /// The backend's name as a label value.
    pub name: Arc<String>,
    /// The pool it belongs to.
    pub pool: Arc<String>,
    /// `lb_request_size_bytes{backend}`.
    pub request_size: Histogram,
    /// `lb_response_size_bytes{backend}`.
    pub response_size: Histogram,
    /// `lb_backend_health_status{backend}`.
    pub health: Gauge,
    /// `lb_circuit_breaker_state{backend}`.
    pub breaker_state: Gauge,
    /// `lb_active_connections{backend}`; its atomic is also the backend's in-flight count.
    pub active: Gauge,
    /// `lb_upstream_idle_connections{backend}`.
    pub upstream_idle: Gauge,
    /// `lb_upgraded_connections{backend}`: tunnels open to the backend.
    pub upgraded: Gauge,
    /// `lb_upstream_http2_ping_timeouts_total{backend}`: HTTP/2 connections closed for a PING
    /// left unanswered.
    pub ping_timeouts: Counter,
    /// `lb_backend_body_failures_total{backend}`: responses whose body the backend failed to
    /// deliver whole after their head had gone to the client.
    pub body_failures: Counter,
    /// `lb_backend_weight{backend,pool}`: the weight the balancer uses.
    pub weight: Gauge,
    /// `lb_backend_drained{backend}`.
    pub drained: Gauge,
    /// `lb_health_checks_total{backend,result}`: success, failure.
    pub health_checks: [Counter; 2],
    /// `lb_retries_total{backend,reason}`, in the order of [`FailureKind::LABELS`].
    retries: [Counter; FailureKind::LABELS.len()],
    /// `lb_circuit_breaker_transitions_total{backend,to}`, in the order of `BREAKER_STATES`.
    transitions: [Counter; 3],
    families: BackendFamilies,
    registry: Arc<BackendRegistry>,
}

impl BackendMetrics {
    fn create(
        families: &BackendFamilies,
        name: &str,
        pool: &Arc<String>,
        registry: Arc<BackendRegistry>,
    ) -> Self {
        let name = Arc::new(name.to_owned());
        let labels = BackendLabels {
            backend: name.clone(),
        };
        let retries = FailureKind::LABELS.map(|reason| {
            families.retries.get_or_create_owned(&RetryLabels {
                backend: name.clone(),
                reason,
            })
        });
        let health_checks = ["success", "failure"].map(|result| {
            families
                .health_checks
                .get_or_create_owned(&HealthCheckLabels {
                    backend: name.clone(),
                    result,
                })
        });
        let transitions = BREAKER_STATES.map(|to| {
            (families.breaker_transitions).get_or_create_owned(&BreakerTransitionLabels {
                backend: name.clone(),
                to: to.as_str(),
            })
        });
        let health = families.health.get_or_create_owned(&labels);
        health.set(1);
        let weight = WeightLabels {
            backend: name.clone(),
            pool: pool.clone(),
        };
        Self {
            request_size: families.request_size.get_or_create_owned(&labels),
            response_size: families.response_size.get_or_create_owned(&labels),
            health,
            breaker_state: families.breaker_state.get_or_create_owned(&labels),
            active: families.active.get_or_create_owned(&labels),
            upstream_idle: families.upstream_idle.get_or_create_owned(&labels),
            upgraded: families.upgraded.get_or_create_owned(&labels),
            ping_timeouts: families.ping_timeouts.get_or_create_owned(&labels),
            body_failures: families.body_failures.get_or_create_owned(&labels),
            weight: families.weight.get_or_create_owned(&weight),
            drained: families.drained.get_or_create_owned(&labels),
            health_checks,
            retries,
            transitions,
            families: families.clone(),
            registry,
            pool: pool.clone(),
            name,
        }
    }

    /// Counts a retry after a failure of `kind`.
    pub fn count_retry(&self, kind: &FailureKind) {
        let label = kind.label();
        if let Some(at) = FailureKind::LABELS.iter().position(|l| *l == label) {
            self.retries[at].inc();
        }
    }

    /// Counts a breaker transition into `to`.
    pub fn count_transition(&self, to: BreakerState) {
        if let Some(at) = BREAKER_STATES.iter().position(|state| *state == to) {
            self.transitions[at].inc();
        }
    }

    fn remove_series(&self) {
        let families = &self.families;
        let labels = BackendLabels {
            backend: self.name.clone(),
        };
        families.weight.remove(&self.weight_labels());
        for family in [
            &families.health,
            &families.breaker_state,
            &families.active,
            &families.drained,
            &families.upstream_idle,
            &families.upgraded,
        ] {
            family.remove(&labels);
        }
        families.ping_timeouts.remove(&labels);
        families.body_failures.remove(&labels);
        families.request_size.remove(&labels);
        families.response_size.remove(&labels);
        for reason in FailureKind::LABELS {
            families.retries.remove(&RetryLabels {
                backend: self.name.clone(),
                reason,
            });
        }
        for result in ["success", "failure"] {
            families.health_checks.remove(&HealthCheckLabels {
                backend: self.name.clone(),
                result,
            });
        }
        for reason in super::tls::UPSTREAM_TLS_REASONS {
            families
                .upstream_tls_errors
                .remove(&super::tls::UpstreamTlsLabels {
                    backend: self.name.clone(),
                    reason,
                });
        }
        for to in BREAKER_STATES {
            families
                .breaker_transitions
                .remove(&BreakerTransitionLabels {
                    backend: self.name.clone(),
                    to: to.as_str(),
                });
        }
    }

    fn weight_labels(&self) -> WeightLabels {
        WeightLabels {
            backend: self.name.clone(),
            pool: self.pool.clone(),
        }
    }
}

impl Drop for BackendMetrics {
    /// The last backend of this name is gone: its series go, unless a backend of the same name
    /// joined in the meantime (then it shares these very series and keeps them).
    fn drop(&mut self) {
        let successor = {
            let mut live = self.registry.lock();
            let successor = live.get(self.name.as_str()).and_then(Weak::upgrade);
            match &successor {
                None => {
                    live.remove(self.name.as_str());
                    self.remove_series();
                }
                // The name lives on in another pool: only the weight's series names this one.
                Some(next) if next.pool != self.pool => {
                    self.families.weight.remove(&self.weight_labels());
                }
                Some(_) => {}
            }
            successor
        };
        // Released after the lock: were it the last handle, its own drop takes the lock.
        drop(successor);
    }
}
