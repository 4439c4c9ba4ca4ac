//! The live snapshot every request reads once: the validated configuration, the route table,
//! the routes with their policies, and the pools, each with its backend table, selector, retry
//! policy and budget, and wait queue. It sits behind one `ArcSwap` so a reload can build a new
//! snapshot and swap it in without a lock on the request path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lb_core::balance::{BackendSpec, Selector};
use lb_core::config::limits::Sharing;
use lb_core::config::routes::ForwardPath;
use lb_core::config::{Config, PoolConfig, RouteConfig};
use lb_core::retry::{RetryBudget, RetryPolicy};
use lb_core::route::{PathRules, RouteTable};

use crate::metrics::Metrics;
use crate::policy::auth::Auth;
use crate::policy::limit::Limiter;
use crate::policy::limit_redis::RedisLimits;
use crate::shutdown::Shutdown;
use crate::upstream::backend::Backend;
use crate::upstream::queue::Queue;

/// One immutable snapshot of what the request path needs.
#[derive(Debug)]
pub struct Runtime {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Every backend of every pool (the health checker and the pool sweep walk it).
    pub backends: Vec<Arc<Backend>>,
    /// The pools, the flat form's `default` first.
    pub pools: Vec<PoolRuntime>,
    /// The routes, in file order (the flat form: one, `default`).
    pub routes: Vec<RouteRuntime>,
    /// The compiled lookup over `routes`.
    pub table: RouteTable,
    /// How paths are normalised before the lookup.
    pub path_rules: PathRules,
    /// Whether the normalised path is what is sent upstream.
    pub forward_normalized: bool,
    /// The flat form as it always was: one route, no `routes` and no `path_normalization`
    /// written. Every request takes route 0 and its path is forwarded as received, unread.
    pub as_before: bool,
}

/// A pool as the request path uses it.
#[derive(Debug)]
pub struct PoolRuntime {
    /// The backend table, indexed as the selector indexes it.
    pub backends: Vec<Arc<Backend>>,
    /// The balancing algorithm over `backends`.
    pub selector: Selector,
    /// When and how to retry.
    pub retry: RetryPolicy,
    /// How many retries the pool can afford.
    pub budget: RetryBudget,
    /// Where requests wait for a slot; `None` when the queue is off.
    pub queue: Option<Arc<Queue>>,
    /// Whether any backend ramps after returning (slow start).
    pub slow_start: bool,
    /// The pool's configuration.
    pub config: PoolConfig,
}

/// A route as the request path uses it.
#[derive(Debug)]
pub struct RouteRuntime {
    /// Its name, the `route` label.
    pub name: Arc<String>,
    /// The pool it sends to; `None` when it answers itself.
    pub pool: Option<usize>,
    /// Its place among the routes of its pool: the index of its metric handles on each
    /// backend of the pool.
    pub slot: usize,
    /// Its rate limit.
    pub limit: Option<Arc<Limiter>>,
    /// The authentication it requires: `Some(None)` when the scheme's keys could not be
    /// loaded, and then every request is refused (fail closed).
    pub auth: Option<Option<Arc<Auth>>>,
    /// Whether anything beyond picking a backend happens (a limit, auth, a rewrite, headers,
    /// an answer of its own): a route without is served with no further look.
    pub has_policy: bool,
    /// The route's one policy is a limit kept in memory: decided in place, with no future.
    pub local_limit_only: bool,
    /// Its configuration.
    pub config: RouteConfig,
}

impl Runtime {
    /// Builds a snapshot from a validated configuration, which carries its policies built:
    /// backends with fresh breakers and metric handles.
    pub fn build(config: Arc<Config>, metrics: &Metrics, now: Instant) -> Self {
        let pool_configs = config.pool_list();
        let route_configs: Vec<RouteConfig> = match config.routes.is_empty() {
            true => vec![RouteConfig::catch_all(
                lb_core::config::pools::DEFAULT_POOL,
                &pool_configs[0].name,
            )],
            false => config.routes.clone(),
        };
        let redis = (config.redis.as_ref())
            .filter(|_| {
                config
                    .rate_limits
                    .iter()
                    .any(|l| l.shared == Sharing::Redis)
            })
            .map(|redis| RedisLimits::start(redis, metrics));
        let limiters: Vec<Arc<Limiter>> = (config.rate_limits.iter())
            .map(|limit| Arc::new(Limiter::new(limit, now, redis.as_ref())))
            .collect();
        // The daemon refuses to start when a scheme cannot load; a scheme that cannot be built
        // here (a key file gone since) leaves its routes refusing every request.
        let schemes: Vec<(String, Option<Arc<Auth>>)> = (config.auth.iter())
            .map(|scheme| match Auth::new(scheme) {
                Ok(auth) => (scheme.name.clone(), Some(Arc::new(auth))),
                Err(error) => {
                    tracing::error!(%error, "authentication scheme unavailable: its routes refuse every request");
                    (scheme.name.clone(), None)
                }
            })
            .collect();
        // Each route's pool and its slot among that pool's routes.
        let mut slots: Vec<Vec<Arc<String>>> = vec![Vec::new(); pool_configs.len()];
        let mut routes = Vec::with_capacity(route_configs.len());
        for route in route_configs {
            let name = Arc::new(route.name.clone());
            let pool = (route.pool.as_ref())
                .and_then(|wanted| pool_configs.iter().position(|p| &p.name == wanted));
            let slot = match pool {
                Some(pool) => {
                    slots[pool].push(name.clone());
                    slots[pool].len() - 1
                }
                None => 0,
            };
            let limit = (route.rate_limit.as_ref())
                .and_then(|wanted| limiters.iter().find(|l| &*l.name == wanted))
                .cloned();
            let auth = (route.auth.as_ref()).map(|wanted| {
                (schemes.iter())
                    .find(|(name, _)| name == wanted)
                    .and_then(|(_, auth)| auth.clone())
            });
            let has_policy = limit.is_some()
                || route.auth.is_some()
                || route.rewrite.is_some()
                || route.redirect.is_some()
                || route.respond.is_some()
                || !route.request_headers.is_empty()
                || !route.response_headers.is_empty();
            let local_limit_only = limit.as_ref().is_some_and(|l| l.is_local())
                && route.auth.is_none()
                && route.rewrite.is_none()
                && route.redirect.is_none()
                && route.respond.is_none()
                && route.request_headers.is_empty()
                && route.response_headers.is_empty();
            routes.push(RouteRuntime {
                local_limit_only,
                name,
                pool,
                slot,
                limit,
                auth,
                has_policy,
                config: route,
            });
        }
        let mut backends = Vec::new();
        let pools: Vec<PoolRuntime> = (pool_configs.into_iter().zip(slots))
            .map(|(pool, mut route_names)| {
                if route_names.is_empty() {
                    // No route reaches the pool; its backends still get one set of handles.
                    route_names.push(Arc::new("none".to_owned()));
                }
                let built = PoolRuntime::build(pool, &route_names, metrics, now);
                backends.extend(built.backends.iter().cloned());
                built
            })
            .collect();
        let matchers: Vec<_> = routes.iter().map(|r| r.config.matcher.clone()).collect();
        Self {
            table: RouteTable::new(&matchers),
            path_rules: config.path_normalization.rules(),
            forward_normalized: config.path_normalization.forward == ForwardPath::Normalized,
            as_before: config.routes.is_empty() && config.path_normalization.is_default(),
            config,
            backends,
            pools,
            routes,
        }
    }
}

impl PoolRuntime {
    fn build(config: PoolConfig, routes: &[Arc<String>], metrics: &Metrics, now: Instant) -> Self {
        let name = Arc::new(config.name.clone());
        let queue = Queue::new(&config.queue, &name, metrics).map(Arc::new);
        let backends: Vec<Arc<Backend>> = (config.backends.iter().enumerate())
            .map(|(index, backend)| {
                let queue = queue.clone();
                Arc::new(Backend::new(
                    index, backend, &config, metrics, routes, queue, now,
                ))
            })
            .collect();
        let specs: Vec<BackendSpec<'_>> = (config.backends.iter())
            .map(|backend| BackendSpec {
                id: &backend.name,
                weight: backend.weight,
            })
            .collect();
        let selector = Selector::with_balance_factor(
            config.load_balancer.algorithm,
            &specs,
            config.load_balancer.hash_balance_factor,
        );
        Self {
            retry: config.retry.policy.clone(),
            budget: RetryBudget::new(config.retry.budget, now),
            slow_start: config.load_balancer.slow_start > Duration::ZERO,
            backends,
            selector,
            queue,
            config,
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
