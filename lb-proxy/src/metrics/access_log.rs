//! The access log's series: lines written, lines dropped because the writer's buffer was full,
//! and write errors.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// `lb_access_log_*`.
#[derive(Debug, Clone, Default)]
pub struct AccessLogMetrics {
    /// `lb_access_log_lines_total`: lines written to the sink.
    pub lines: Counter,
    /// `lb_access_log_dropped_total`: lines dropped because the buffer was full.
    pub dropped: Counter,
    /// `lb_access_log_write_errors_total`: writes (or reopens) that failed.
    pub write_errors: Counter,
}

impl AccessLogMetrics {
    /// Registers the families.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "lb_access_log_lines",
            "Access-log lines written",
            metrics.lines.clone(),
        );
        registry.register(
            "lb_access_log_dropped",
            "Access-log lines dropped because the writer's buffer was full (a slow or stalled sink)",
            metrics.dropped.clone(),
        );
        registry.register(
            "lb_access_log_write_errors",
            "Access-log writes or reopens that failed",
            metrics.write_errors.clone(),
        );
        metrics
    }
}
