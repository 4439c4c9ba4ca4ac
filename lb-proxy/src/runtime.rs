//! The live snapshot every request reads once: the validated configuration, the route table,
//! the routes with their policies, and the pools, each with its backend table, selector, retry
//! policy and budget, and wait queue. It sits behind one `ArcSwap` so a reload (or an admin
//! change) builds a new snapshot and swaps it in without a lock on the request path.
//!
//! What outlives a snapshot is kept outside it and handed to the next: the backends (their
//! breakers, health, in-flight counts, pooled connections), each pool's retry budget and queue
//! ([`PoolState`]), and the route policies' state ([`Policies`]: rate-limit budgets, the Redis
//! connection). Everything else — selectors, the route table, metric handles by route — is
//! rebuilt from the configuration for each snapshot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lb_core::balance::{BackendSpec, Selector};
use lb_core::config::limits::Sharing;
use lb_core::config::routes::ForwardPath;
use lb_core::config::{Config, PoolConfig, RateLimitConfig, RedisConfig, RouteConfig};
use lb_core::retry::{RetryBudget, RetryPolicy};
use lb_core::route::{PathRules, RouteTable};

use crate::metrics::{Metrics, RouteHandles};
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
    /// Every backend of every pool (the health checkers, the pool sweep and the admin API walk
    /// it; names are unique across pools).
    pub backends: Vec<Arc<Backend>>,
    /// The pools, in the order of [`Config::pool_list`].
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
    /// The route policies' state.
    pub policies: Arc<Policies>,
    /// The request id's header, when ids are on.
    pub request_id: Option<http::HeaderName>,
}

/// What a pool keeps from one snapshot to the next.
#[derive(Debug, Clone)]
pub struct PoolState {
    /// The pool's name, the `pool` label.
    pub name: Arc<String>,
    /// Its backends, in table order (the file's).
    pub backends: Vec<Arc<Backend>>,
    /// How many retries the pool can afford; kept while `retry` stays.
    pub budget: Arc<RetryBudget>,
    /// Where its requests wait for a slot (off when its size is 0).
    pub queue: Arc<Queue>,
}

impl PoolState {
    /// A pool as it joins: new backends, a full budget, an empty queue.
    pub fn new(config: &PoolConfig, metrics: &Metrics, now: Instant) -> Self {
        let name = Arc::new(config.name.clone());
        let queue = Arc::new(Queue::new(&config.queue, &name, metrics));
        let backends = (config.backends.iter())
            .map(|backend| {
                let queue = queue.clone();
                Arc::new(Backend::new(backend, config, &name, queue, metrics, now))
            })
            .collect();
        Self {
            budget: Arc::new(RetryBudget::new(config.retry.budget, now)),
            backends,
            queue,
            name,
        }
    }

    /// A backend that joins this pool (configured as `config`).
    pub fn new_backend(
        &self,
        pool: &PoolConfig,
        config: &lb_core::config::BackendConfig,
        metrics: &Metrics,
        now: Instant,
    ) -> Arc<Backend> {
        let queue = self.queue.clone();
        Arc::new(Backend::new(config, pool, &self.name, queue, metrics, now))
    }
}

/// A pool as the request path uses it.
#[derive(Debug)]
pub struct PoolRuntime {
    /// The backend table, indexed as the selector indexes it.
    pub backends: Vec<Arc<Backend>>,
    /// The metric handles of each backend (by table index) for each route that sends here
    /// (by the route's slot).
    pub handles: Vec<Box<[Arc<RouteHandles>]>>,
    /// The balancing algorithm over `backends`, with their weights when it was built.
    pub selector: Selector,
    /// When and how to retry.
    pub retry: RetryPolicy,
    /// How many retries the pool can afford.
    pub budget: Arc<RetryBudget>,
    /// Where requests wait for a slot; `None` when the queue is off.
    pub queue: Option<Arc<Queue>>,
    /// Whether backends ramp after joining or returning (slow start).
    pub slow_start: bool,
    /// Whether a backend speaks HTTP/2 (`h2c`, `h2`): the requests then learn what an HTTP/2
    /// backend needs (`te: trailers`, a gRPC deadline) before their attempts.
    pub http2: bool,
    /// The pool's configuration.
    pub config: PoolConfig,
    /// What the next snapshot keeps.
    pub state: PoolState,
}

impl PoolRuntime {
    /// The handles of route `slot` on the backend at `index`.
    pub fn handles(&self, index: usize, slot: usize) -> &RouteHandles {
        &self.handles[index][slot]
    }
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

/// The state of the route policies: kept across snapshots while their settings stay, so a
/// reload neither refills a rate limit's budgets nor reconnects to Redis.
#[derive(Debug)]
pub struct Policies {
    /// The Redis server of shared limits, and the settings it was started with.
    redis: Option<(RedisConfig, Arc<RedisLimits>)>,
    /// The rate limits, with the settings each was built from.
    limiters: Vec<(RateLimitConfig, Arc<Limiter>)>,
    /// The authentication schemes by name; `None` for one that could not be built.
    schemes: Vec<(String, Option<Arc<Auth>>)>,
}

impl Policies {
    /// The policies of `config`. What `previous` has under the same settings is kept; the
    /// schemes are `schemes` when given (a reload reads their key files first, to refuse a bad
    /// one), else built here, a scheme that cannot be built leaving its routes refusing every
    /// request.
    pub fn build(
        config: &Config,
        previous: Option<&Policies>,
        schemes: Option<Vec<Arc<Auth>>>,
        metrics: &Metrics,
        now: Instant,
    ) -> Self {
        let wanted = (config.redis.as_ref())
            .filter(|_| (config.rate_limits.iter()).any(|limit| limit.shared == Sharing::Redis));
        let kept_redis = previous.and_then(|p| p.redis.as_ref());
        let redis = wanted.map(|settings| match kept_redis {
            Some((was, redis)) if was == settings => (was.clone(), redis.clone()),
            _ => (settings.clone(), RedisLimits::start(settings, metrics)),
        });
        let redis_kept = match (&redis, kept_redis) {
            (Some((_, now)), Some((_, was))) => Arc::ptr_eq(now, was),
            _ => false,
        };
        let limiters = (config.rate_limits.iter())
            .map(|limit| {
                let kept = previous
                    .filter(|_| limit.shared != Sharing::Redis || redis_kept)
                    .and_then(|p| p.limiters.iter().find(|(was, _)| was == limit));
                let limiter = match kept {
                    Some((_, limiter)) => limiter.clone(),
                    None => {
                        let redis = redis.as_ref().map(|(_, redis)| redis);
                        Arc::new(Limiter::new(limit, now, redis))
                    }
                };
                (limit.clone(), limiter)
            })
            .collect();
        let schemes = match schemes {
            Some(built) => (config.auth.iter().zip(built))
                .map(|(scheme, auth)| (scheme.name.clone(), Some(auth)))
                .collect(),
            None => (config.auth.iter())
                .map(|scheme| match Auth::new(scheme) {
                    Ok(auth) => (scheme.name.clone(), Some(Arc::new(auth))),
                    Err(error) => {
                        tracing::error!(%error, "authentication scheme unavailable: its routes refuse every request");
                        (scheme.name.clone(), None)
                    }
                })
                .collect(),
        };
        Self {
            redis,
            limiters,
            schemes,
        }
    }

    fn limiter(&self, name: &str) -> Option<Arc<Limiter>> {
        (self.limiters.iter())
            .find(|(_, limiter)| *limiter.name == name)
            .map(|(_, limiter)| limiter.clone())
    }

    fn scheme(&self, name: &str) -> Option<Arc<Auth>> {
        (self.schemes.iter())
            .find(|(scheme, _)| scheme == name)
            .and_then(|(_, auth)| auth.clone())
    }
}

impl Runtime {
    /// The first snapshot of a validated configuration: every pool, backend and policy new.
    pub fn build(config: Arc<Config>, metrics: &Metrics, now: Instant) -> Self {
        let pools = (config.pool_list().iter())
            .map(|pool| PoolState::new(pool, metrics, now))
            .collect();
        let policies = Arc::new(Policies::build(&config, None, None, metrics, now));
        Self::assemble(config, pools, policies, metrics)
    }

    /// A snapshot of `config` over `pools` (one per pool of `config.pool_list()`, in its
    /// order): selectors from the backends' weights now, overrides included, the routes and
    /// their metric handles. Backends that survive keep what they learned; a selector's own
    /// rotation starts over.
    pub fn assemble(
        config: Arc<Config>,
        pools: Vec<PoolState>,
        policies: Arc<Policies>,
        metrics: &Metrics,
    ) -> Self {
        let pool_configs = config.pool_list();
        let route_configs: Vec<RouteConfig> = match config.routes.is_empty() {
            true => vec![RouteConfig::catch_all(
                lb_core::config::pools::DEFAULT_POOL,
                &pool_configs[0].name,
            )],
            false => config.routes.clone(),
        };
        // Each route's pool and its slot among that pool's routes.
        let mut slots: Vec<Vec<Arc<String>>> = vec![Vec::new(); pool_configs.len()];
        let routes: Vec<RouteRuntime> = (route_configs.into_iter())
            .map(|route| {
                let pool = (route.pool.as_ref())
                    .and_then(|wanted| pool_configs.iter().position(|p| &p.name == wanted));
                route_runtime(route, pool, &mut slots, &policies)
            })
            .collect();
        let mut backends = Vec::new();
        let pools: Vec<PoolRuntime> = (pool_configs.into_iter().zip(pools).zip(slots))
            .map(|((config, state), mut route_names)| {
                if route_names.is_empty() {
                    // No route reaches the pool; its backends still get one set of handles.
                    route_names.push(Arc::new("none".to_owned()));
                }
                backends.extend(state.backends.iter().cloned());
                PoolRuntime::assemble(config, state, &route_names, metrics)
            })
            .collect();
        let matchers: Vec<_> = routes.iter().map(|r| r.config.matcher.clone()).collect();
        Self {
            table: RouteTable::new(&matchers),
            path_rules: config.path_normalization.rules(),
            forward_normalized: config.path_normalization.forward == ForwardPath::Normalized,
            as_before: config.routes.is_empty() && config.path_normalization.is_default(),
            // Validation took a header name; a name http refuses would switch ids off.
            request_id: (config.request_id.enabled)
                .then(|| http::HeaderName::from_bytes(config.request_id.header.as_bytes()).ok())
                .flatten(),
            config,
            backends,
            pools,
            routes,
            policies,
        }
    }

    /// What the next snapshot keeps of each pool, in this snapshot's order.
    pub fn pool_states(&self) -> Vec<PoolState> {
        self.pools.iter().map(|pool| pool.state.clone()).collect()
    }

    /// The same configuration over the same state, rebuilt (a weight override changed a
    /// selector).
    pub fn rebuilt(&self, metrics: &Metrics) -> Self {
        let (config, policies) = (self.config.clone(), self.policies.clone());
        Self::assemble(config, self.pool_states(), policies, metrics)
    }

    /// The live backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|backend| backend.name() == name)
    }
}

/// A route of the snapshot: its pool and slot, its policies found by name.
fn route_runtime(
    route: RouteConfig,
    pool: Option<usize>,
    slots: &mut [Vec<Arc<String>>],
    policies: &Policies,
) -> RouteRuntime {
    let name = Arc::new(route.name.clone());
    let slot = match pool {
        Some(pool) => {
            slots[pool].push(name.clone());
            slots[pool].len() - 1
        }
        None => 0,
    };
    let limit = (route.rate_limit.as_ref()).and_then(|wanted| policies.limiter(wanted));
    let auth = (route.auth.as_ref()).map(|wanted| policies.scheme(wanted));
    let answers_or_rewrites = route.auth.is_some()
        || route.rewrite.is_some()
        || route.redirect.is_some()
        || route.respond.is_some()
        || !route.request_headers.is_empty()
        || !route.response_headers.is_empty();
    let local_limit_only = limit.as_ref().is_some_and(|l| l.is_local()) && !answers_or_rewrites;
    RouteRuntime {
        has_policy: limit.is_some() || answers_or_rewrites,
        local_limit_only,
        name,
        pool,
        slot,
        limit,
        auth,
        config: route,
    }
}

impl PoolRuntime {
    fn assemble(
        config: PoolConfig,
        state: PoolState,
        routes: &[Arc<String>],
        metrics: &Metrics,
    ) -> Self {
        let specs: Vec<BackendSpec<'_>> = (state.backends.iter())
            .map(|backend| BackendSpec {
                id: backend.name(),
                weight: backend.weight(),
            })
            .collect();
        let selector = Selector::with_balance_factor(
            config.load_balancer.algorithm,
            &specs,
            config.load_balancer.hash_balance_factor,
        );
        drop(specs);
        let handles = (state.backends.iter())
            .map(|backend| {
                let name = &backend.metrics.name;
                (routes.iter())
                    .map(|route| metrics.route(route, name))
                    .collect()
            })
            .collect();
        Self {
            backends: state.backends.clone(),
            handles,
            selector,
            retry: config.retry.policy.clone(),
            budget: state.budget.clone(),
            queue: state.queue.is_on().then(|| state.queue.clone()),
            slow_start: config.load_balancer.slow_start > Duration::ZERO,
            http2: (state.backends.iter()).any(|backend| backend.pool.http2().is_some()),
            config,
            state,
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
    /// The access log, when `access_log` is on; a reload that changes it swaps in a new one.
    pub access_log: AccessLogSlot,
    /// The tracer, when `tracing` is on; a reload replaces it.
    pub tracing: crate::trace::Switch,
}

/// The access log behind its own swap, and whether there is one: the request path reads the
/// flag (one relaxed load), and only with the log on takes the log itself.
#[derive(Debug, Default)]
pub struct AccessLogSlot {
    on: std::sync::atomic::AtomicBool,
    log: arc_swap::ArcSwapOption<crate::access_log::AccessLog>,
}

impl AccessLogSlot {
    /// The log, when it is on.
    pub(crate) fn current(&self) -> Option<Arc<crate::access_log::AccessLog>> {
        match self.on.load(std::sync::atomic::Ordering::Relaxed) {
            true => self.log.load_full(),
            false => None,
        }
    }

    /// Whether the log is on.
    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Swaps in `log` (`None`: the log goes off); the log it replaces.
    pub(crate) fn replace(
        &self,
        log: Option<Arc<crate::access_log::AccessLog>>,
    ) -> Option<Arc<crate::access_log::AccessLog>> {
        let on = log.is_some();
        let old = self.log.swap(log);
        self.on.store(on, std::sync::atomic::Ordering::Relaxed);
        old
    }
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
            access_log: AccessLogSlot::default(),
            tracing: crate::trace::Switch::default(),
        }
    }
}
