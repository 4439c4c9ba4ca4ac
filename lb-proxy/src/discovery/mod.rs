//! Discovery sources: tasks that learn a pool's backends from outside the configuration file
//! (a watched file, DNS, etcd) and publish each good answer. They decide nothing about the running
//! balancer: the daemon takes each answer, debounces it and applies it through the same diff as
//! a reload (`daemon::discovered`), so a discovered backend is treated exactly as a written one.
//!
//! A source publishes only good answers; a failure (a bad file, a failed or empty lookup) is
//! logged and counted (`lb_discovery_updates_total{result="error"}`) and publishes nothing, so
//! the pool keeps its last good set. What an answer means (names, SRV weights, TTLs, backoff) is
//! decided by the pure functions of `lb_core::discovery`.
//!
//! # Layout
//! - `file`: a YAML or JSON list of backends, its directory watched.
//! - `dns`: A, AAAA or SRV records, re-resolved at their TTL, failures backed off.
//! - `etcd`: a key prefix of an etcd v3 cluster, listed then watched, resumed when the watch
//!   ends.

mod dns;
mod etcd;
mod file;

use std::sync::Arc;

use lb_core::config::{BackendConfig, DiscoverySource, PoolConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// The latest good answer of a source; `None` until its first.
pub(crate) type Answers = watch::Receiver<Option<Vec<BackendConfig>>>;

/// A running source; dropping it stops it.
#[derive(Debug)]
pub(crate) struct Source {
    task: JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a source task needs: its pool (name, `upstream` defaults), where to publish, the
/// metrics.
struct Context {
    pool: PoolConfig,
    pool_name: Arc<String>,
    answers: watch::Sender<Option<Vec<BackendConfig>>>,
    metrics: Arc<Metrics>,
    kind: &'static str,
}

impl Context {
    /// Publishes a good answer.
    fn publish(&self, backends: Vec<BackendConfig>) {
        self.metrics.discovery.answered(&self.pool_name, unix_now());
        self.answers.send_replace(Some(backends));
    }

    /// The source is in touch and nothing changed (an etcd progress report).
    fn alive(&self) {
        self.metrics.discovery.answered(&self.pool_name, unix_now());
    }

    /// Counts a failure; the last good answer stays.
    fn failed(&self, error: &dyn std::fmt::Display) {
        tracing::warn!(pool = %self.pool.name, source = self.kind, %error,
            "discovery failed: the pool keeps its last good backends");
        self.metrics.discovery.count(self.kind, "error");
    }
}

/// Starts the source of `pool` (which must have `discovery`); its answers arrive on the
/// receiver. `None` when the pool has no discovery.
pub(crate) fn start(pool: &PoolConfig, metrics: &Arc<Metrics>) -> Option<(Source, Answers)> {
    let settings = pool.discovery.clone()?;
    let (answers, receiver) = watch::channel(None);
    let kind = settings.source.kind();
    let pool_name = Arc::new(pool.name.clone());
    metrics.discovery.started(&pool_name, kind);
    let context = Context {
        pool: pool.clone(),
        pool_name,
        answers,
        metrics: metrics.clone(),
        kind,
    };
    let task = match settings.source.clone() {
        DiscoverySource::File(path) => tokio::spawn(file::run(
            context,
            path,
            settings.backoff_max,
            settings.debounce,
        )),
        DiscoverySource::Dns(dns) => tokio::spawn(dns::run(context, dns, *settings)),
        DiscoverySource::Etcd(etcd) => tokio::spawn(etcd::run(context, etcd, *settings)),
    };
    Some((Source { task }, receiver))
}

/// Reads the files `pool`'s source will read (etcd's TLS files and password file), so that one
/// that cannot be used refuses the start or the reload naming it, with the pool and the file.
///
/// # Errors
///
/// The pool's name and what is wrong, never a file's content.
pub(crate) fn check(pool: &PoolConfig) -> Result<(), String> {
    match pool.discovery.as_deref().map(|d| &d.source) {
        Some(DiscoverySource::Etcd(settings)) => {
            etcd::check(settings).map_err(|error| format!("pool {}: {error}", pool.name))
        }
        _ => Ok(()),
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
