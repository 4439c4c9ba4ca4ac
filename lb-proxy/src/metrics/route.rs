//! The series of routes and their policies: request counters and latency by route and backend
//! (handles resolved once per route and backend when a snapshot is built, and removed when no
//! snapshot uses the pair any more), rate-limit and authentication refusals, the pools' wait
//! queues and the Redis server of shared limits.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::backend::{COMMON_STATUSES, STATUS_SLOTS};
use super::{HistogramFamily, MethodLabel, RequestLabels, duration_histogram};

/// Labels that name a route and a backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteBackendLabels {
    /// Route name.
    pub route: Arc<String>,
    /// Backend name.
    pub backend: Arc<String>,
}

/// Labels of `lb_rate_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// Route whose request was refused.
    pub route: Arc<String>,
    /// The limit's name.
    pub limit: Arc<String>,
}

/// Labels of `lb_auth_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// Route whose request was refused.
    pub route: Arc<String>,
    /// Why, from a fixed list (`missing`, `bad_credentials`, `expired`, ...).
    pub reason: &'static str,
}

/// Labels that name only a pool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Pool name.
    pub pool: Arc<String>,
}

/// The families of route policies, pools' queues and Redis.
#[derive(Debug)]
pub struct PolicyMetrics {
    /// `lb_rate_limited_total{route,limit}`: requests refused with 429.
    pub rate_limited: Family<LimitLabels, Counter>,
    /// `lb_auth_failures_total{route,reason}`: requests refused with 401 or 403.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// `lb_queue_depth{pool}`: requests waiting for a backend slot.
    pub queue_depth: Family<PoolLabels, Gauge>,
    /// `lb_queue_wait_seconds{pool}`: how long queued requests waited for a slot.
    pub queue_wait: HistogramFamily<PoolLabels>,
    /// `lb_queue_rejected_total{pool}`: requests answered 503 because the queue was full or
    /// their wait timed out.
    pub queue_rejected: Family<PoolLabels, Counter>,
    /// `lb_rate_limit_redis_up`: 1 while the Redis server of shared limits answers, else 0.
    pub redis_up: Gauge,
    /// `lb_rate_limit_redis_errors_total`: decisions Redis did not make in time (the limit's
    /// `on_error` applied instead).
    pub redis_errors: Counter,
}

impl PolicyMetrics {
    /// Creates the families and registers them.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            rate_limited: Family::default(),
            auth_failures: Family::default(),
            queue_depth: Family::default(),
            queue_wait: HistogramFamily::new_with_constructor(duration_histogram),
            queue_rejected: Family::default(),
            redis_up: Gauge::default(),
            redis_errors: Counter::default(),
        };
        registry.register(
            "lb_rate_limited",
            "Requests refused with 429 by a rate limit, by route and limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "lb_auth_failures",
            "Requests refused with 401 or 403, by route and reason",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "lb_queue_depth",
            "Requests waiting for a backend slot in the pool's queue",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "lb_queue_wait_seconds",
            "Time queued requests waited for a backend slot",
            metrics.queue_wait.clone(),
        );
        registry.register(
            "lb_queue_rejected",
            "Requests answered 503 because the pool's queue was full or their wait timed out",
            metrics.queue_rejected.clone(),
        );
        registry.register(
            "lb_rate_limit_redis_up",
            "1 while the Redis server of shared rate limits answers in time, else 0",
            metrics.redis_up.clone(),
        );
        registry.register(
            "lb_rate_limit_redis_errors",
            "Rate-limit decisions Redis did not make in time; the limit's on_error applied",
            metrics.redis_errors.clone(),
        );
        metrics
    }
}

/// The families a (route, backend) pair's handles come from.
#[derive(Debug, Clone)]
pub(crate) struct RouteFamilies {
    pub(super) requests: Family<RequestLabels, Counter>,
    pub(super) duration: HistogramFamily<RouteBackendLabels>,
}

type Key = (Arc<String>, Arc<String>);

/// The live (route, backend) pairs' handles.
#[derive(Debug, Default)]
pub(crate) struct RouteRegistry {
    live: Mutex<HashMap<Key, Weak<RouteHandles>>>,
}

impl RouteRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Weak<RouteHandles>>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The handles of `route` on `backend`: those a live snapshot holds, else new series.
    pub(crate) fn acquire(
        self: &Arc<Self>,
        families: &RouteFamilies,
        route: &Arc<String>,
        backend: &Arc<String>,
    ) -> Arc<RouteHandles> {
        let key = (route.clone(), backend.clone());
        let mut live = self.lock();
        if let Some(handles) = live.get(&key).and_then(Weak::upgrade) {
            return handles;
        }
        let labels = RouteBackendLabels {
            route: route.clone(),
            backend: backend.clone(),
        };
        let handles = Arc::new(RouteHandles {
            duration: families.duration.get_or_create_owned(&labels),
            requests: (0..MethodLabel::COUNT * STATUS_SLOTS)
                .map(|_| OnceLock::new())
                .collect(),
            uncommon: Mutex::default(),
            families: families.clone(),
            registry: self.clone(),
            route: route.clone(),
            backend: backend.clone(),
        });
        live.insert(key, Arc::downgrade(&handles));
        handles
    }
}

/// The handles of one (route, backend) pair.
#[derive(Debug)]
pub struct RouteHandles {
    /// `lb_request_duration_seconds{route,backend}`.
    pub duration: Histogram,
    /// Lazily resolved `lb_requests_total` counters, by method and common status.
    requests: Box<[OnceLock<Counter>]>,
    /// Uncommon (method, status) pairs counted, so their series can be removed.
    uncommon: Mutex<HashSet<(MethodLabel, u16)>>,
    families: RouteFamilies,
    registry: Arc<RouteRegistry>,
    route: Arc<String>,
    backend: Arc<String>,
}

impl RouteHandles {
    /// Counts one request answered with `status`: a family lookup only the first time a
    /// (method, status) pair is seen for this route and backend.
    pub fn count_request(&self, method: MethodLabel, status: u16) {
        let labels = || RequestLabels {
            method,
            status,
            backend: self.backend.clone(),
            route: self.route.clone(),
        };
        let Some(slot) = COMMON_STATUSES.iter().position(|&common| common == status) else {
            let mut uncommon = self.uncommon.lock().unwrap_or_else(|p| p.into_inner());
            uncommon.insert((method, status));
            self.families.requests.get_or_create(&labels()).inc();
            return;
        };
        let index = method as usize * STATUS_SLOTS + slot;
        self.requests[index]
            .get_or_init(|| self.families.requests.get_or_create_owned(&labels()))
            .inc();
    }

    fn remove_series(&self) {
        self.families.duration.remove(&RouteBackendLabels {
            route: self.route.clone(),
            backend: self.backend.clone(),
        });
        let common = COMMON_STATUSES.iter().copied();
        let methods = MethodLabel::ALL.iter().copied();
        let uncommon = self.uncommon.lock().unwrap_or_else(|p| p.into_inner());
        let pairs = methods
            .flat_map(|method| common.clone().map(move |status| (method, status)))
            .chain(uncommon.iter().copied());
        for (method, status) in pairs {
            self.families.requests.remove(&RequestLabels {
                method,
                status,
                backend: self.backend.clone(),
                route: self.route.clone(),
            });
        }
    }
}

impl Drop for RouteHandles {
    /// No snapshot uses the pair any more: its series go, unless a snapshot built in the
    /// meantime acquired the pair again (then it holds these very series).
    fn drop(&mut self) {
        let key = (self.route.clone(), self.backend.clone());
        let successor = {
            let mut live = self.registry.lock();
            let successor = live.get(&key).and_then(Weak::upgrade);
            if successor.is_none() {
                live.remove(&key);
                self.remove_series();
            }
            successor
        };
        drop(successor);
    }
}
