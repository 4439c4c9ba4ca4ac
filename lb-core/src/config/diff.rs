//! What a reload changes: [`diff`] lists the changes from one validated configuration to
//! another, pool by pool, and [`apply_pools`] makes the pools' changes on a list of pools (the
//! data plane applies the same list to the live state, in one exhaustive `match`).
//! [`Change::needs_restart`] says which changes cannot take effect while the daemon runs.
//!
//! The pools are compared as the data plane builds them ([`Config::pool_list`]): in the flat
//! form the top-level sections are the pool `default`; with `pools`, each pool carries the
//! sections it inherited, so a change to a top-level default is a change to every pool that
//! inherits it. A pool's identity is its name.
//!
//! A backend's identity is its pool and its name: a backend whose name stays and whose address
//! changes is a new backend (the old one leaves, a new one joins), so that nothing learned about
//! one address — breaker, health, pooled connections — is taken for another. So is one whose way
//! of being reached changes (`tls`, `proxy_protocol`, `protocol`): its pooled connections would
//! be the wrong kind; and so is one that moves to another pool. Sections are compared whole: a change
//! anywhere in a pool's `retry` is one [`Change::Retry`]. The routes and their policies
//! (`routes`, `path_normalization`, `rate_limits`, `redis`, `auth`) are one change each.

use super::discovery::DiscoveryConfig;
use super::model::{
    BackendConfig, CircuitBreakerConfig, Config, HealthCheckConfig, LoadBalancerConfig,
    MetricsConfig, PoolConfig, QueueConfig, ServerConfig, UpstreamConfig,
};
use super::observe::{AccessLogConfig, RequestIdConfig};
use super::operate::{AdminConfig, ReloadConfig};
use super::trace::TracingConfig;
use crate::config::RetryConfig;

/// One change between two configurations.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A pool joins, with its backends.
    PoolAdded(PoolConfig),
    /// The pool of this name leaves, with its backends.
    PoolRemoved(String),
    /// The pools' order changed: the names, in the new order.
    PoolOrder(Vec<String>),
    /// A backend joins a pool that stays.
    BackendAdded {
        /// The pool.
        pool: String,
        /// The new backend.
        backend: BackendConfig,
    },
    /// The backend of this name leaves a pool that stays.
    BackendRemoved {
        /// The pool.
        pool: String,
        /// The backend's name.
        name: String,
    },
    /// A backend of the same pool, name, address and transport gets a new weight or
    /// connection limit.
    BackendUpdated {
        /// The pool.
        pool: String,
        /// The backend as it is now.
        backend: BackendConfig,
    },
    /// A pool's backends' file order changed (after the additions and removals above): the
    /// selector's table follows it.
    BackendOrder {
        /// The pool.
        pool: String,
        /// The backends' names, in the new order.
        order: Vec<String>,
    },
    /// A pool's balancing algorithm (and its hash balance factor and slow start).
    LoadBalancer(String, LoadBalancerConfig),
    /// A pool's active health checks.
    HealthCheck(String, HealthCheckConfig),
    /// A pool's circuit breaker.
    CircuitBreaker(String, CircuitBreakerConfig),
    /// A pool's retries and their budget.
    Retry(String, RetryConfig),
    /// A pool's upstream connections.
    Upstream(String, UpstreamConfig),
    /// A pool's wait queue.
    Queue(String, QueueConfig),
    /// A pool's discovery source (its settings, or whether it has one).
    Discovery(String, Option<Box<DiscoveryConfig>>),
    /// The routes (matching, targets, rewrites, headers, answers).
    Routes,
    /// How paths are normalised.
    PathNormalization,
    /// The rate limits.
    RateLimits,
    /// The Redis server of shared limits.
    Redis,
    /// The authentication schemes.
    Auth,
    /// The client listener and its limits.
    Server(ServerConfig),
    /// The metrics endpoint.
    Metrics(MetricsConfig),
    /// The admin API.
    Admin(AdminConfig),
    /// How reloads happen.
    Reload(ReloadConfig),
    /// The access log.
    AccessLog(AccessLogConfig),
    /// The request id.
    RequestId(RequestIdConfig),
    /// Distributed tracing: applied on reload (a new exporter replaces the old one, which
    /// sends what it holds before it stops).
    Tracing(TracingConfig),
}

impl Change {
    /// Whether the change can only take effect on a restart, with why; every other change
    /// applies to the running daemon. `old` is the configuration being changed.
    pub fn needs_restart(&self, old: &Config) -> Option<&'static str> {
        match self {
            Change::Server(server) if server.workers != old.server.workers => {
                Some("server.workers: the runtime's threads are started once")
            }
            Change::Server(server) if server.tls.is_some() != old.server.tls.is_some() => {
                Some("server.tls on or off: the listener's kind is set when it starts")
            }
            _ => None,
        }
    }

    /// A short name for logs and metrics: the section, the pool or the backend.
    pub fn subject(&self) -> String {
        match self {
            Change::PoolAdded(pool) => format!("pool {} added", pool.name),
            Change::PoolRemoved(name) => format!("pool {name} removed"),
            Change::PoolOrder(_) => "pools reordered".to_owned(),
            Change::BackendAdded { backend, .. } => format!("backend {} added", backend.name),
            Change::BackendRemoved { name, .. } => format!("backend {name} removed"),
            Change::BackendUpdated { backend, .. } => format!("backend {} updated", backend.name),
            Change::BackendOrder { pool, .. } => in_pool(pool, "backends reordered"),
            Change::LoadBalancer(pool, _) => in_pool(pool, "load_balancer"),
            Change::HealthCheck(pool, _) => in_pool(pool, "health_check"),
            Change::CircuitBreaker(pool, _) => in_pool(pool, "circuit_breaker"),
            Change::Retry(pool, _) => in_pool(pool, "retry"),
            Change::Upstream(pool, _) => in_pool(pool, "upstream"),
            Change::Queue(pool, _) => in_pool(pool, "queue"),
            Change::Discovery(pool, _) => in_pool(pool, "discovery"),
            Change::Routes => "routes".to_owned(),
            Change::PathNormalization => "path_normalization".to_owned(),
            Change::RateLimits => "rate_limits".to_owned(),
            Change::Redis => "redis".to_owned(),
            Change::Auth => "auth".to_owned(),
            Change::Server(_) => "server".to_owned(),
            Change::Metrics(_) => "metrics".to_owned(),
            Change::Admin(_) => "admin".to_owned(),
            Change::Reload(_) => "reload".to_owned(),
            Change::AccessLog(_) => "access_log".to_owned(),
            Change::RequestId(_) => "request_id".to_owned(),
            Change::Tracing(_) => "tracing".to_owned(),
        }
    }
}

/// `section`, or `pools.<pool>.section` outside the flat form's one pool.
fn in_pool(pool: &str, section: &str) -> String {
    match pool == super::pools::DEFAULT_POOL {
        true => section.to_owned(),
        false => format!("pools.{pool}.{section}"),
    }
}

/// The changes that turn `old` into `new`: pools and backends that leave first (in every
/// pool), then pools and backends that join, updates, the orders, the pools' sections, and the
/// rest.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let (old_pools, new_pools) = (old.pool_list(), new.pool_list());
    let find = |pools: &'_ [PoolConfig], name: &str| -> Option<usize> {
        pools.iter().position(|pool| pool.name == name)
    };
    let mut changes = Vec::new();
    for pool in &old_pools {
        let Some(at) = find(&new_pools, &pool.name) else {
            changes.push(Change::PoolRemoved(pool.name.clone()));
            continue;
        };
        backends_leaving(pool, &new_pools[at], &mut changes);
    }
    for pool in &new_pools {
        match find(&old_pools, &pool.name) {
            None => changes.push(Change::PoolAdded(pool.clone())),
            Some(at) => backends_joining(&old_pools[at], pool, &mut changes),
        }
    }
    let after = apply_pools(&old_pools, &changes);
    for pool in &new_pools {
        let Some(was) = find(&after, &pool.name).map(|at| &after[at]) else {
            continue;
        };
        let order_now = was.backends.iter().map(|b| b.name.as_str());
        if !order_now.eq(pool.backends.iter().map(|b| b.name.as_str())) {
            changes.push(Change::BackendOrder {
                pool: pool.name.clone(),
                order: pool.backends.iter().map(|b| b.name.clone()).collect(),
            });
        }
    }
    if !(after.iter().map(|p| &p.name)).eq(new_pools.iter().map(|p| &p.name)) {
        changes.push(Change::PoolOrder(
            new_pools.iter().map(|p| p.name.clone()).collect(),
        ));
    }
    for pool in &new_pools {
        if let Some(at) = find(&old_pools, &pool.name) {
            pool_sections(&old_pools[at], pool, &mut changes);
        }
    }
    macro_rules! marker {
        ($field:ident, $variant:ident) => {
            if old.$field != new.$field {
                changes.push(Change::$variant);
            }
        };
    }
    marker!(routes, Routes);
    marker!(path_normalization, PathNormalization);
    marker!(rate_limits, RateLimits);
    marker!(redis, Redis);
    marker!(auth, Auth);
    macro_rules! section {
        ($field:ident, $variant:ident) => {
            if old.$field != new.$field {
                changes.push(Change::$variant(new.$field.clone()));
            }
        };
    }
    section!(server, Server);
    section!(metrics, Metrics);
    section!(admin, Admin);
    section!(reload, Reload);
    section!(access_log, AccessLog);
    section!(request_id, RequestId);
    section!(tracing, Tracing);
    changes
}

/// The backends of `old` that are not in `new` as the same backend.
fn backends_leaving(old: &PoolConfig, new: &PoolConfig, changes: &mut Vec<Change>) {
    for backend in &old.backends {
        let stays =
            (new.backends.iter()).any(|b| b.name == backend.name && same_backend(b, backend));
        if !stays {
            changes.push(Change::BackendRemoved {
                pool: old.name.clone(),
                name: backend.name.clone(),
            });
        }
    }
}

/// The backends of `new` that join, or stay with new settings.
fn backends_joining(old: &PoolConfig, new: &PoolConfig, changes: &mut Vec<Change>) {
    for backend in &new.backends {
        let pool = new.name.clone();
        match old.backends.iter().find(|b| b.name == backend.name) {
            Some(was) if same_backend(was, backend) => {
                if was != backend {
                    let backend = backend.clone();
                    changes.push(Change::BackendUpdated { pool, backend });
                }
            }
            _ => {
                let backend = backend.clone();
                changes.push(Change::BackendAdded { pool, backend });
            }
        }
    }
}

/// The sections of a pool that stays.
fn pool_sections(old: &PoolConfig, new: &PoolConfig, changes: &mut Vec<Change>) {
    macro_rules! section {
        ($field:ident, $variant:ident) => {
            if old.$field != new.$field {
                changes.push(Change::$variant(new.name.clone(), new.$field.clone()));
            }
        };
    }
    section!(load_balancer, LoadBalancer);
    section!(health_check, HealthCheck);
    section!(circuit_breaker, CircuitBreaker);
    section!(retry, Retry);
    section!(upstream, Upstream);
    section!(queue, Queue);
    section!(discovery, Discovery);
}

fn pool_named<'a>(pools: &'a mut [PoolConfig], name: &str) -> Option<&'a mut PoolConfig> {
    pools.iter_mut().find(|pool| pool.name == name)
}

/// Whether two entries of the same name are the same backend: the same address, reached the
/// same way.
fn same_backend(a: &BackendConfig, b: &BackendConfig) -> bool {
    a.address == b.address
        && a.tls == b.tls
        && a.proxy_protocol == b.proxy_protocol
        && a.protocol == b.protocol
}

/// `pools` with the pools' and backends' `changes` made, in order; the other changes do not
/// touch pools.
pub fn apply_pools(pools: &[PoolConfig], changes: &[Change]) -> Vec<PoolConfig> {
    let mut pools = pools.to_vec();
    for change in changes {
        match change {
            Change::PoolAdded(pool) => pools.push(pool.clone()),
            Change::PoolRemoved(name) => pools.retain(|pool| &pool.name != name),
            Change::PoolOrder(order) => {
                pools.sort_by_key(|pool| order.iter().position(|name| *name == pool.name));
            }
            Change::BackendRemoved { pool, name } => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.backends.retain(|b| &b.name != name);
                }
            }
            Change::BackendAdded { pool, backend } => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.backends.push(backend.clone());
                }
            }
            Change::BackendUpdated { pool, backend } => {
                let pool = pool_named(&mut pools, pool);
                let slot =
                    pool.and_then(|p| p.backends.iter_mut().find(|b| b.name == backend.name));
                if let Some(slot) = slot {
                    *slot = backend.clone();
                }
            }
            Change::BackendOrder { pool, order } => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    (pool.backends).sort_by_key(|b| order.iter().position(|name| *name == b.name));
                }
            }
            Change::LoadBalancer(pool, section) => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.load_balancer = section.clone();
                }
            }
            Change::HealthCheck(pool, section) => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.health_check = section.clone();
                }
            }
            Change::CircuitBreaker(pool, section) => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.circuit_breaker = section.clone();
                }
            }
            Change::Retry(pool, section) => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.retry = section.clone();
                }
            }
            Change::Upstream(pool, section) => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.upstream = section.clone();
                }
            }
            Change::Queue(pool, section) => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.queue = *section;
                }
            }
            Change::Discovery(pool, section) => {
                if let Some(pool) = pool_named(&mut pools, pool) {
                    pool.discovery = section.clone();
                }
            }
            Change::Routes
            | Change::PathNormalization
            | Change::RateLimits
            | Change::Redis
            | Change::Auth
            | Change::Server(_)
            | Change::Metrics(_)
            | Change::Admin(_)
            | Change::Reload(_)
            | Change::AccessLog(_)
            | Change::RequestId(_)
            | Change::Tracing(_) => {}
        }
    }
    pools
}

#[cfg(test)]
mod tests;
