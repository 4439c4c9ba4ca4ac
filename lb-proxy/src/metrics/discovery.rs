//! The discovery sources' series: how their answers went, how many backends each discovered
//! pool has, and when its source last answered (a source that stops answering shows as an age
//! that grows, not as a frozen pool that looks healthy).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::PoolLabels;

/// Labels of `lb_discovery_updates_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpdateLabels {
    /// `file` or `dns`.
    pub source: &'static str,
    /// `applied` (the pool changed), `unchanged` (the same set again), `error` (the source
    /// failed: a bad file, a failed lookup, an empty answer) or `refused` (the set could not be
    /// applied: a name clash, a backend's TLS files).
    pub result: &'static str,
}

/// The discovery families.
#[derive(Debug, Default)]
pub struct DiscoveryMetrics {
    /// `lb_discovery_updates_total{source,result}`.
    pub updates: Family<UpdateLabels, Counter>,
    /// `lb_discovery_backends{pool}`: backends the pool has from its source now.
    pub backends: Family<PoolLabels, Gauge>,
    /// `lb_discovery_last_update_timestamp_seconds{pool}`: when the source last gave a good
    /// answer, in seconds since the Unix epoch.
    pub last_update: Family<PoolLabels, Gauge<f64, AtomicU64>>,
}

impl DiscoveryMetrics {
    /// Creates the families and registers them.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "lb_discovery_updates",
            "Answers of discovery sources, by source kind and result",
            metrics.updates.clone(),
        );
        registry.register(
            "lb_discovery_backends",
            "Backends a discovered pool has from its source",
            metrics.backends.clone(),
        );
        registry.register(
            "lb_discovery_last_update_timestamp_seconds",
            "When the pool's discovery source last gave a good answer, in seconds since the Unix epoch",
            metrics.last_update.clone(),
        );
        metrics
    }

    /// Counts one answer of a `source` with `result`.
    pub fn count(&self, source: &'static str, result: &'static str) {
        self.updates
            .get_or_create(&UpdateLabels { source, result })
            .inc();
    }

    /// The series of `pool`'s source exist from its start, at zero.
    pub fn started(&self, pool: &Arc<String>, source: &'static str) {
        for result in ["applied", "unchanged", "error", "refused"] {
            let _ = self.updates.get_or_create(&UpdateLabels { source, result });
        }
        let labels = PoolLabels { pool: pool.clone() };
        let _ = self.backends.get_or_create(&labels);
    }

    /// The pool no longer discovers its backends: its series go.
    pub fn stopped(&self, pool: &Arc<String>) {
        let labels = PoolLabels { pool: pool.clone() };
        self.backends.remove(&labels);
        self.last_update.remove(&labels);
    }

    /// `pool` has `count` backends from its source now.
    pub fn record(&self, pool: &Arc<String>, count: usize) {
        let labels = PoolLabels { pool: pool.clone() };
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.backends.get_or_create(&labels).set(count);
    }

    /// The source of `pool` answered well at `unix_seconds`.
    pub fn answered(&self, pool: &Arc<String>, unix_seconds: f64) {
        let labels = PoolLabels { pool: pool.clone() };
        self.last_update.get_or_create(&labels).set(unix_seconds);
    }
}
