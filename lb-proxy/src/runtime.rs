//! The live snapshot every request reads once: the validated configuration, the backend table,
//! the selector, the retry policy and budget. It sits behind one `ArcSwap` so a reload can build
//! a new snapshot and swap it in without a lock on the request path.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use lb_core::balance::{BackendSpec, Selector};
use lb_core::breaker::{BreakerPolicy, CircuitBreaker};
use lb_core::config::Config;
use lb_core::retry::{RetryBudget, RetryPolicy};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::upstream::backend::Backend;

/// Errors building a runtime from a configuration that passed validation but is still unusable.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The breaker settings were rejected by lb-core.
    #[error("circuit_breaker: {0}")]
    Breaker(String),
    /// The retry settings were rejected by lb-core.
    #[error("retry: {0}")]
    Retry(String),
}

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
    /// Builds a snapshot: backends with fresh breakers and metric handles.
    pub fn build(
        config: Arc<Config>,
        metrics: &Metrics,
        now: Instant,
    ) -> Result<Self, RuntimeError> {
        let breaker_config = &config.circuit_breaker;
        let policy = if breaker_config.enabled {
            Some(
                BreakerPolicy::try_new(
                    breaker_config.failure_threshold,
                    breaker_config.open_duration,
                    breaker_config.max_open_duration,
                    breaker_config.half_open_max_requests,
                    breaker_config.success_threshold,
                )
                .map_err(|error| RuntimeError::Breaker(error.to_string()))?,
            )
        } else {
            None
        };
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .enumerate()
            .map(|(index, backend)| {
                let breaker = policy.map(CircuitBreaker::new);
                Arc::new(Backend::new(
                    index,
                    backend,
                    breaker,
                    &config.upstream,
                    metrics,
                ))
            })
            .collect();
        let specs: Vec<BackendSpec<'_>> = config
            .backends
            .iter()
            .map(|backend| BackendSpec {
                id: &backend.name,
                weight: backend.weight,
            })
            .collect();
        let selector = Selector::new(config.load_balancer.algorithm, &specs);
        let retry_config = &config.retry;
        let retry = RetryPolicy::try_new(
            retry_config.max_attempts,
            retry_config.base_delay,
            retry_config.max_delay,
            retry_config.retry_on.clone(),
        )
        .map_err(|error| RuntimeError::Retry(error.to_string()))?;
        let budget = RetryBudget::try_new(
            retry_config.budget_ratio,
            retry_config.budget_min_per_sec,
            now,
        )
        .map_err(|error| RuntimeError::Retry(error.to_string()))?;
        Ok(Self {
            config,
            backends,
            selector,
            retry,
            budget,
        })
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
    ) -> Result<Self, RuntimeError> {
        let runtime = Runtime::build(config.clone(), &metrics, now)?;
        Ok(Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            shutdown,
        })
    }
}
