//! The live snapshot every request reads once: the validated configuration, the backend table,
//! the selector, the retry policy and budget. It sits behind one `ArcSwap` so a reload can build
//! a new snapshot and swap it in without a lock on the request path.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use lb_core::balance::{BackendSpec, Selector};
use lb_core::config::{BackendConfig, Config};
use lb_core::retry::{RetryBudget, RetryPolicy};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::upstream::backend::Backend;

/// One immutable snapshot of what the request path needs.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The backend table, indexed as the selector indexes it. A backend that a reload keeps is
    /// the same `Arc` in the next snapshot.
    pub backends: Vec<Arc<Backend>>,
    /// The balancing algorithm over `backends`, with their weights when it was built.
    pub selector: Selector,
    /// When and how to retry.
    pub retry: RetryPolicy,
    /// How many retries the fleet can afford; kept across reloads that leave `retry` alone.
    pub budget: Arc<RetryBudget>,
}

impl Runtime {
    /// The first snapshot of a validated configuration, which carries its policies built:
    /// backends with fresh breakers and metric handles.
    pub fn build(config: Arc<Config>, metrics: &Metrics, now: Instant) -> Self {
        let backends: Vec<Arc<Backend>> = (config.backends.iter())
            .map(|backend| Arc::new(new_backend(&config, backend, metrics)))
            .collect();
        let budget = Arc::new(RetryBudget::new(config.retry.budget, now));
        Self::assemble(config, backends, budget)
    }

    /// A snapshot of `config` over `backends` (in table order, which is the file's): the
    /// selector is built from the backends' weights now, overrides included. Backends that
    /// survive keep what they learned; the selector's own rotation starts over.
    pub fn assemble(
        config: Arc<Config>,
        backends: Vec<Arc<Backend>>,
        budget: Arc<RetryBudget>,
    ) -> Self {
        let specs: Vec<BackendSpec<'_>> = (backends.iter())
            .map(|backend| BackendSpec {
                id: backend.name(),
                weight: backend.weight(),
            })
            .collect();
        let selector = Selector::new(config.load_balancer.algorithm, &specs);
        drop(specs);
        let retry = config.retry.policy.clone();
        Self {
            config,
            backends,
            selector,
            retry,
            budget,
        }
    }

    /// The live backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|backend| backend.name() == name)
    }
}

/// A backend of `config` as it joins: healthy, with a closed breaker under `config`'s policy.
pub fn new_backend(config: &Config, backend: &BackendConfig, metrics: &Metrics) -> Backend {
    let breaker = &config.circuit_breaker;
    let breaker = breaker.enabled.then_some(breaker.policy);
    Backend::new(backend, breaker, &config.upstream, metrics)
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
