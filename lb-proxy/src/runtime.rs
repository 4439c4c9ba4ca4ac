//! The live snapshot every request reads once: the validated configuration, the backend table,
//! the selector, the retry policy and budget. It sits behind one `ArcSwap` so a reload can build
//! a new snapshot and swap it in without a lock on the request path.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use lb_core::balance::{BackendSpec, Selector};
use lb_core::breaker::CircuitBreaker;
use lb_core::config::Config;
use lb_core::retry::{RetryBudget, RetryPolicy};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::upstream::backend::Backend;

/// One immutable snapshot of what the request path needs.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The backend table, indexed as the selector indexes it.
    pub backends: Vec<Arc<Backend>>,
    /// The balancing algorithm over `backends`.
    pub selector: Selector,
    /// When and how to retry.
    pub retry: RetryPolicy,
    /// How many retries the fleet can afford.
    pub budget: RetryBudget,
}

impl Runtime {
    /// Builds a snapshot from a validated configuration, which carries its policies built:
    /// backends with fresh breakers and metric handles.
    pub fn build(config: Arc<Config>, metrics: &Metrics, now: Instant) -> Self {
        let breaker = &config.circuit_breaker;
        let breaker = breaker.enabled.then_some(breaker.policy);
        let backends: Vec<Arc<Backend>> = (config.backends.iter().enumerate())
            .map(|(index, backend)| {
                let breaker = breaker.map(CircuitBreaker::new);
                let upstream = &config.upstream;
                Arc::new(Backend::new(index, backend, breaker, upstream, metrics))
            })
            .collect();
        let specs: Vec<BackendSpec<'_>> = (config.backends.iter())
            .map(|backend| BackendSpec {
                id: &backend.name,
                weight: backend.weight,
            })
            .collect();
        let selector = Selector::new(config.load_balancer.algorithm, &specs);
        let retry = config.retry.policy.clone();
        let budget = RetryBudget::new(config.retry.budget, now);
        Self {
            config,
            backends,
            selector,
            retry,
            budget,
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The live snapshot.
    pub runtime: ArcSwap<Runtime>,
    /// The metric families.
    pub metrics: Arc<Metrics>,
    /// The daemon's shutdown signal.
    pub shutdown: Arc<Shutdown>,
}

impl Shared {
    /// Builds the shared state for `config`.
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        shutdown: Arc<Shutdown>,
        now: Instant,
    ) -> Self {
        let runtime = Runtime::build(config, &metrics, now);
        Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            shutdown,
        }
    }
}
