//! Pools: named sets of backends with their own balancing, health checking, breaker, retry,
//! upstream settings and wait queue.
//!
//! A pool is what the flat form's top level describes. In the flat form (`backends` at the
//! top) those sections are a pool named `default`; pools written under `pools:` inherit every
//! top-level section field by field, so a file states once what its pools share and each pool
//! only what differs (as HAProxy's `defaults` section does).

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::discovery::DiscoveryConfig;
use super::duration;
use super::model::{
    BackendConfig, CircuitBreakerConfig, Config, HealthCheckConfig, LoadBalancerConfig,
    RetryConfig, UpstreamConfig,
};
use super::node::{Node, Pos, Spanned};
use super::validate;
use super::walk::{Problem, Section, Walker, duration, int};

/// The name of the flat form's pool, and of its route.
pub const DEFAULT_POOL: &str = "default";

/// One pool of backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolConfig {
    /// The name routes send to; also the `pool` label of its metrics.
    #[serde(skip)]
    pub name: String,
    /// How a backend is picked.
    pub load_balancer: LoadBalancerConfig,
    /// The connections to its backends.
    pub upstream: UpstreamConfig,
    /// Active health checking of its backends.
    pub health_check: HealthCheckConfig,
    /// The per-backend circuit breaker.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Retries within the pool.
    pub retry: RetryConfig,
    /// Where requests wait when every backend is at `max_connections`.
    pub queue: QueueConfig,
    /// The backends, in file order; never empty after validation unless `discovery` is set,
    /// in which case the daemon fills them with what the source last gave.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendConfig>,
    /// Where the backends come from when the file does not list them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Box<DiscoveryConfig>>,
}

/// `queue`: requests that find every eligible backend of a pool at `max_connections` wait
/// here, served in arrival order as slots free (HAProxy's `maxconn` with `timeout queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueConfig {
    /// Requests that may wait at once; 0 turns the queue off (such a request gets 503 at once).
    pub size: usize,
    /// The longest a request waits before it is answered 503.
    #[serde(serialize_with = "duration::serialize")]
    pub timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            size: 0,
            timeout: Duration::from_secs(5),
        }
    }
}

impl QueueConfig {
    /// Whether this is the default (off), for serialization.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Config {
    /// Every pool, as the data plane builds them: the flat form's `default` pool first (when
    /// `backends` is written at the top), then `pools` in file order.
    pub fn pool_list(&self) -> Vec<PoolConfig> {
        let mut pools = Vec::with_capacity(self.pools.len() + 1);
        if !self.backends.is_empty() || self.discovery.is_some() || self.pools.is_empty() {
            pools.push(PoolConfig {
                name: DEFAULT_POOL.to_owned(),
                load_balancer: self.load_balancer.clone(),
                upstream: self.upstream.clone(),
                health_check: self.health_check.clone(),
                circuit_breaker: self.circuit_breaker.clone(),
                retry: self.retry.clone(),
                queue: self.queue,
                backends: self.backends.clone(),
                discovery: self.discovery.clone(),
            });
        }
        pools.extend(self.pools.iter().cloned());
        pools
    }
}

/// Writes `pools` as a mapping from name to pool.
pub(crate) fn serialize<S: Serializer>(
    pools: &[PoolConfig],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(pools.len()))?;
    for pool in pools {
        map.serialize_entry(&pool.name, pool)?;
    }
    map.end()
}

const POOL_FIELDS: [&str; 8] = [
    "load_balancer",
    "upstream",
    "health_check",
    "circuit_breaker",
    "retry",
    "queue",
    "backends",
    "discovery",
];

/// A name for a pool, limit or scheme: letters, digits, `-`, `_` and `.`, as a metrics label
/// can show it plainly.
pub(crate) fn check_name(name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(Problem::new("a name must not be empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(Problem::new(format!("the name \"{name}\" holds {bad:?}"))
            .hint("use letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// The entries of a mapping keyed by names (pools, rate limits, auth schemes): each key
/// checked, duplicates reported; `what` names an entry in messages.
pub(crate) fn named_entries<'n>(
    w: &mut Walker<'_>,
    node: Option<&'n Spanned>,
    path: &str,
    what: &str,
) -> Vec<(String, Pos, &'n Spanned)> {
    let mut out: Vec<(String, Pos, &'n Spanned)> = Vec::new();
    let entries = match node.map(|n| &n.node) {
        None | Some(Node::Null) => return out,
        Some(Node::Map(entries)) => entries,
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a mapping of {what} names, found {}",
                other.kind()
            ));
            w.report(node.and_then(|n| n.pos), path, problem);
            return out;
        }
    };
    for (key, value) in entries {
        let Node::Str(name) = &key.node else {
            let problem =
                Problem::new(format!("expected a {what} name, found {}", key.node.kind()));
            w.report(key.pos, path, problem);
            continue;
        };
        let field = format!("{path}.{name}");
        if let Err(problem) = check_name(name) {
            w.report(key.pos, &field, problem);
            continue;
        }
        if let Some((_, first, _)) = out.iter().find(|(n, ..)| n == name) {
            let on = first.map(|(line, _)| format!(", first defined on line {line}"));
            let problem = Problem::new(format!(
                "duplicate {what} \"{name}\"{}",
                on.unwrap_or_default()
            ));
            w.report(key.pos, &field, problem.hint("give each its own name"));
            continue;
        }
        out.push((name.clone(), key.pos, value));
    }
    out
}

/// `pools`: each pool's sections over the top-level ones.
pub(crate) fn read(w: &mut Walker<'_>, top: &Section<'_>, config: &Config) -> Vec<PoolConfig> {
    let node = top.get("pools");
    let entries = named_entries(w, node, "pools", "pool");
    if let Some(node) = node
        && entries.is_empty()
        && w.errors.iter().all(|e| !e.field.starts_with("pools"))
    {
        let problem = Problem::new("must define at least one pool")
            .hint("like `pools: {api: {backends: [{address: 127.0.0.1:8001}]}}`");
        w.report(node.pos, "pools", problem);
    }
    let flat = !config.backends.is_empty()
        || top.get("backends").is_some()
        || top.get("discovery").is_some();
    let mut pools = Vec::new();
    for (name, pos, value) in entries {
        let path = format!("pools.{name}");
        if flat && name == DEFAULT_POOL {
            let problem =
                Problem::new("the top-level `backends` already form the pool \"default\"")
                    .hint("rename this pool, or move the top-level backends into it");
            w.report(pos, &path, problem);
            continue;
        }
        let s = w.section(Some(value), &path, &POOL_FIELDS);
        let (n, p) = sub(&s, "load_balancer");
        let load_balancer = validate::load_balancer(w, n, &p, config.load_balancer.clone());
        let (n, p) = sub(&s, "upstream");
        let upstream = validate::upstream(w, n, &p, config.upstream.clone());
        let (n, p) = sub(&s, "health_check");
        let health_check = validate::health_check(w, n, &p, config.health_check.clone());
        let (n, p) = sub(&s, "circuit_breaker");
        let circuit_breaker = validate::circuit_breaker(w, n, &p, config.circuit_breaker.clone());
        let (n, p) = sub(&s, "retry");
        let retry = validate::retry(w, n, &p, config.retry.clone());
        let (n, p) = sub(&s, "queue");
        let queue = queue(w, n, &p, config.queue);
        let (n, p) = sub(&s, "discovery");
        let discovery = super::discovery::read(w, n, &p);
        let (n, p) = sub(&s, "backends");
        let required = s.get("discovery").is_none();
        let backends = validate::backends(w, n, &p, value.pos.or(pos), required, &upstream);
        super::discovery::exclusive(w, &s, "backends", "discovery");
        pools.push(PoolConfig {
            name,
            load_balancer,
            upstream,
            health_check,
            circuit_breaker,
            retry,
            queue,
            backends,
            discovery,
        });
    }
    pools
}

/// Backend names are labels of the metrics and the in-flight gauges: one name, one backend,
/// across every pool (duplicates inside one list are reported by the list's reader).
pub(crate) fn unique_backend_names(
    w: &mut Walker<'_>,
    top: &Section<'_>,
    flat: &[BackendConfig],
    pools: &[PoolConfig],
) {
    let mut lists: Vec<(String, Option<&Spanned>, &[BackendConfig])> =
        vec![("backends".to_owned(), top.get("backends"), flat)];
    for pool in pools {
        let node = child(child(top.get("pools"), &pool.name), "backends");
        lists.push((
            format!("pools.{}.backends", pool.name),
            node,
            &pool.backends,
        ));
    }
    let mut seen: Vec<(&str, usize, String)> = Vec::new();
    for (list, (path, node, backends)) in lists.iter().enumerate() {
        for (index, backend) in backends.iter().enumerate() {
            let name = backend.name.as_str();
            match seen.iter().find(|(n, _, _)| *n == name) {
                Some((_, other, first)) if *other != list => {
                    let problem = Problem::new(format!(
                        "duplicate backend name \"{name}\", already used by {first}"
                    ))
                    .hint("backend names label the metrics: give each backend its own name");
                    let pos = match node.map(|n| &n.node) {
                        Some(Node::Seq(items)) => items.get(index).and_then(|item| item.pos),
                        _ => None,
                    };
                    w.report(pos, &format!("{path}[{index}]"), problem);
                }
                Some(_) => {}
                None => seen.push((name, list, format!("{path}[{index}]"))),
            }
        }
    }
}

fn sub<'n>(s: &Section<'n>, name: &str) -> (Option<&'n Spanned>, String) {
    (s.get(name), s.field(name))
}

fn child<'n>(node: Option<&'n Spanned>, key: &str) -> Option<&'n Spanned> {
    match &node?.node {
        Node::Map(entries) => (entries.iter())
            .find(|(k, _)| matches!(&k.node, Node::Str(s) if s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// `queue`, over `d`.
pub(crate) fn queue(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    d: QueueConfig,
) -> QueueConfig {
    let s = w.section(node, path, &["size", "timeout"]);
    QueueConfig {
        size: w.get(&s, "size", d.size, int(0)).value,
        timeout: w.get(&s, "timeout", d.timeout, duration(true)).value,
    }
}

/// `load_balancer.hash_balance_factor` and `load_balancer.slow_start`, over `d`.
pub(crate) fn balance_extras(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    d: &LoadBalancerConfig,
) -> (Option<f64>, Duration) {
    let factor = w.get(s, "hash_balance_factor", d.hash_balance_factor, |node| {
        let value = match node {
            Node::Null => return Ok(None),
            Node::Float(f) => *f,
            Node::Int(i) => *i as f64,
            other => {
                return Err(Problem::new(format!(
                    "expected a number like 1.25, found {}",
                    other.kind()
                )));
            }
        };
        if value.is_finite() && value >= 1.0 {
            Ok(Some(value))
        } else {
            Err(Problem::new(format!("must be at least 1.0, found {value}"))
                .hint("1.25 lets a backend take up to 25 % more than the mean load"))
        }
    });
    let slow_start = w.get(s, "slow_start", d.slow_start, duration(false));
    (factor.value, slow_start.value)
}
