//! The tracing exporter's series, counted in spans: exported, dropped because the export queue
//! was full, and failed (the collector refused them, or could not be reached within
//! `tracing.export_timeout`). A request's spans are one server span and one per attempt.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// `lb_tracing_spans_*`.
#[derive(Debug, Clone, Default)]
pub struct TracingMetrics {
    /// `lb_tracing_spans_exported_total`: spans the collector accepted.
    pub exported: Counter,
    /// `lb_tracing_spans_dropped_total`: spans dropped because the export queue was full.
    pub dropped: Counter,
    /// `lb_tracing_spans_failed_total`: spans whose export failed.
    pub failed: Counter,
}

impl TracingMetrics {
    /// Registers the families.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "lb_tracing_spans_exported",
            "Spans the OTLP collector accepted",
            metrics.exported.clone(),
        );
        registry.register(
            "lb_tracing_spans_dropped",
            "Spans dropped because the export queue was full (a slow, stalled or unreachable collector)",
            metrics.dropped.clone(),
        );
        registry.register(
            "lb_tracing_spans_failed",
            "Spans whose export failed: refused by the collector, or not delivered within tracing.export_timeout",
            metrics.failed.clone(),
        );
        metrics
    }
}
