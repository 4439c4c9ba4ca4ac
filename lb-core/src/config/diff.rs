//! What a reload changes: [`diff`] lists the changes from one validated configuration to
//! another, [`apply`] makes them (the data plane applies the same list to the live state, in one
//! exhaustive `match`), and [`Change::needs_restart`] says which cannot take effect while the
//! daemon runs.
//!
//! A backend's identity is its name: a backend whose name stays and whose address changes is a
//! new backend (the old one leaves, a new one joins), so that nothing learned about one address
//! — breaker, health, pooled connections — is taken for another. So is one whose way of being
//! reached changes (`tls`, `proxy_protocol`): its pooled connections would be the wrong kind. Sections are compared whole: a
//! change anywhere in `retry` is one [`Change::Retry`].

use super::model::{
    BackendConfig, CircuitBreakerConfig, Config, HealthCheckConfig, LoadBalancerConfig,
    MetricsConfig, ServerConfig, UpstreamConfig,
};
use super::operate::{AdminConfig, ReloadConfig};
use crate::config::RetryConfig;

/// One change between two configurations.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A backend joins.
    BackendAdded(BackendConfig),
    /// The backend of this name leaves.
    BackendRemoved(String),
    /// A backend of the same name, address and transport gets a new weight or connection limit.
    BackendUpdated(BackendConfig),
    /// The backends' file order changed (after the additions and removals above): the
    /// selector's table follows it. The names, in the new order.
    BackendOrder(Vec<String>),
    /// The balancing algorithm.
    LoadBalancer(LoadBalancerConfig),
    /// Active health checks.
    HealthCheck(HealthCheckConfig),
    /// The circuit breaker.
    CircuitBreaker(CircuitBreakerConfig),
    /// Retries and their budget.
    Retry(RetryConfig),
    /// The upstream connection pools.
    Upstream(UpstreamConfig),
    /// The client listener and its limits.
    Server(ServerConfig),
    /// The metrics endpoint.
    Metrics(MetricsConfig),
    /// The admin API.
    Admin(AdminConfig),
    /// How reloads happen.
    Reload(ReloadConfig),
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

    /// A short name for logs and metrics: the section or the backend.
    pub fn subject(&self) -> String {
        match self {
            Change::BackendAdded(backend) => format!("backend {} added", backend.name),
            Change::BackendRemoved(name) => format!("backend {name} removed"),
            Change::BackendUpdated(backend) => format!("backend {} updated", backend.name),
            Change::BackendOrder(_) => "backends reordered".to_owned(),
            Change::LoadBalancer(_) => "load_balancer".to_owned(),
            Change::HealthCheck(_) => "health_check".to_owned(),
            Change::CircuitBreaker(_) => "circuit_breaker".to_owned(),
            Change::Retry(_) => "retry".to_owned(),
            Change::Upstream(_) => "upstream".to_owned(),
            Change::Server(_) => "server".to_owned(),
            Change::Metrics(_) => "metrics".to_owned(),
            Change::Admin(_) => "admin".to_owned(),
            Change::Reload(_) => "reload".to_owned(),
        }
    }
}

/// The changes that turn `old` into `new`: removals first, then additions and updates, then
/// the order, then the sections.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut changes = Vec::new();
    let find = |backends: &[BackendConfig], name: &str| -> Option<usize> {
        backends.iter().position(|backend| backend.name == name)
    };
    for backend in &old.backends {
        let replaced = find(&new.backends, &backend.name)
            .is_some_and(|at| !same_backend(&new.backends[at], backend));
        if find(&new.backends, &backend.name).is_none() || replaced {
            changes.push(Change::BackendRemoved(backend.name.clone()));
        }
    }
    for backend in &new.backends {
        match find(&old.backends, &backend.name).map(|at| &old.backends[at]) {
            Some(was) if same_backend(was, backend) => {
                if was != backend {
                    changes.push(Change::BackendUpdated(backend.clone()));
                }
            }
            _ => changes.push(Change::BackendAdded(backend.clone())),
        }
    }
    let order: Vec<String> = new.backends.iter().map(|b| b.name.clone()).collect();
    let mut after = old.clone();
    apply_backends(&mut after, &changes);
    let order_now: Vec<&str> = after.backends.iter().map(|b| b.name.as_str()).collect();
    if order_now != order.iter().map(String::as_str).collect::<Vec<_>>() {
        changes.push(Change::BackendOrder(order));
    }
    macro_rules! section {
        ($field:ident, $variant:ident) => {
            if old.$field != new.$field {
                changes.push(Change::$variant(new.$field.clone()));
            }
        };
    }
    section!(load_balancer, LoadBalancer);
    section!(health_check, HealthCheck);
    section!(circuit_breaker, CircuitBreaker);
    section!(retry, Retry);
    section!(upstream, Upstream);
    section!(server, Server);
    section!(metrics, Metrics);
    section!(admin, Admin);
    section!(reload, Reload);
    changes
}

/// Whether two entries of the same name are the same backend: the same address, reached the
/// same way.
fn same_backend(a: &BackendConfig, b: &BackendConfig) -> bool {
    a.address == b.address && a.tls == b.tls && a.proxy_protocol == b.proxy_protocol
}

/// `config` with `changes` made, in order.
pub fn apply(config: &Config, changes: &[Change]) -> Config {
    let mut config = config.clone();
    apply_backends(&mut config, changes);
    for change in changes {
        match change {
            Change::BackendAdded(_)
            | Change::BackendRemoved(_)
            | Change::BackendUpdated(_)
            | Change::BackendOrder(_) => {}
            Change::LoadBalancer(section) => config.load_balancer = section.clone(),
            Change::HealthCheck(section) => config.health_check = section.clone(),
            Change::CircuitBreaker(section) => config.circuit_breaker = section.clone(),
            Change::Retry(section) => config.retry = section.clone(),
            Change::Upstream(section) => config.upstream = section.clone(),
            Change::Server(section) => config.server = section.clone(),
            Change::Metrics(section) => config.metrics = section.clone(),
            Change::Admin(section) => config.admin = section.clone(),
            Change::Reload(section) => config.reload = section.clone(),
        }
    }
    config
}

/// Makes the backend changes: removals, then additions (at the end) and updates, then the order.
fn apply_backends(config: &mut Config, changes: &[Change]) {
    for change in changes {
        match change {
            Change::BackendRemoved(name) => config.backends.retain(|b| &b.name != name),
            Change::BackendAdded(backend) => config.backends.push(backend.clone()),
            Change::BackendUpdated(backend) => {
                if let Some(slot) = config.backends.iter_mut().find(|b| b.name == backend.name) {
                    *slot = backend.clone();
                }
            }
            Change::BackendOrder(order) => {
                config.backends.sort_by_key(|backend| {
                    order
                        .iter()
                        .position(|name| *name == backend.name)
                        .unwrap_or(usize::MAX)
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
