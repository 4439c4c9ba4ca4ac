//! The HTTP/2 client family: connections and streams open now, and connections the balancer
//! closed because their client misbehaved, by what it did. Every reason exists from the start
//! at zero, so `increase()` sees the first.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::tls::ReasonLabels;

/// Every `reason` of `lb_http2_connections_closed_total`.
pub const CLOSE_REASONS: [&str; 6] = [
    "rapid_reset",
    "continuation_flood",
    "header_list_too_large",
    "data_flood",
    "flow_control_stall",
    "protocol_error",
];

/// `lb_http2_client_connections`, `lb_http2_client_streams` and
/// `lb_http2_connections_closed_total{reason}`.
#[derive(Debug, Default)]
pub struct Http2Metrics {
    /// HTTP/2 client connections open now (each also in `lb_client_connections`).
    pub(crate) connections: Gauge,
    /// Streams open now over HTTP/2 client connections: requests in flight, WebSockets.
    pub(crate) streams: Gauge,
    closed: Family<ReasonLabels, Counter>,
    /// Streams refused because their connection's room for request heads was taken.
    refused: Counter,
}

impl Http2Metrics {
    /// Registers the family, every reason at zero.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        for reason in CLOSE_REASONS {
            let _ = metrics.closed.get_or_create(&ReasonLabels { reason });
        }
        registry.register(
            "lb_http2_client_connections",
            "HTTP/2 client connections open (also counted in lb_client_connections)",
            metrics.connections.clone(),
        );
        registry.register(
            "lb_http2_client_streams",
            "Streams open on HTTP/2 client connections: requests in flight and WebSockets",
            metrics.streams.clone(),
        );
        registry.register(
            "lb_http2_connections_closed",
            "HTTP/2 client connections the balancer closed for what their client did \
             (rapid reset, CONTINUATION flood, a header list far over the limit, a flood of \
             DATA frames, a response it never took, another protocol error)",
            metrics.closed.clone(),
        );
        registry.register(
            "lb_http2_streams_refused",
            "HTTP/2 streams refused (REFUSED_STREAM, which a client may retry) because the \
             request heads their connection's other streams hold left no room for theirs \
             (server.http2.max_buffered_head_bytes)",
            metrics.refused.clone(),
        );
        metrics
    }

    /// Counts a stream refused for its connection's room for request heads.
    pub(crate) fn refused_stream(&self) {
        self.refused.inc();
    }

    /// Counts a connection closed for `reason`, one of [`CLOSE_REASONS`].
    pub(crate) fn closed(&self, reason: &'static str) {
        debug_assert!(CLOSE_REASONS.contains(&reason));
        self.closed.get_or_create(&ReasonLabels { reason }).inc();
    }
}
