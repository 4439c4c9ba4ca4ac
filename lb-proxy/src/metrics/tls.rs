//! The TLS and PROXY-protocol metric families: handshakes by result and version, handshake
//! errors by reason, each certificate's expiry and reloads, PROXY headers by outcome, and TLS
//! failures towards backends. Every label takes values from a fixed set, or from the
//! configuration (certificate and backend names), never from a client.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `lb_tls_handshakes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// `success` or `failure`.
    pub result: &'static str,
    /// `TLSv1.2`, `TLSv1.3`, or `none` when no version was agreed.
    pub version: &'static str,
}

/// Labels that name a reason only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why, from a fixed set.
    pub reason: &'static str,
}

/// Labels that name a configured certificate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// The certificate's name (its first DNS name, see docs/tls.md).
    pub name: Arc<str>,
}

/// Labels of `lb_tls_certificate_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The certificate's name.
    pub name: Arc<str>,
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Labels of `lb_proxy_protocol_headers_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProxyHeaderLabels {
    /// What became of the connection's start, from a fixed set.
    pub result: &'static str,
}

/// Labels of `lb_upstream_tls_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamTlsLabels {
    /// The backend.
    pub backend: Arc<String>,
    /// Why, from a fixed set.
    pub reason: &'static str,
}

/// Every `reason` of `lb_upstream_tls_errors_total` (what `tls::client::failure_reason`, a
/// connect timeout and settings that could not be built give), so a backend's series can be
/// removed when it leaves.
pub const UPSTREAM_TLS_REASONS: [&str; 9] = [
    "setup",
    "timeout",
    "unknown_issuer",
    "name_mismatch",
    "expired",
    "bad_certificate",
    "alert_received",
    "protocol_error",
    "io",
];

/// Every TLS and PROXY-protocol family.
#[derive(Debug, Default)]
pub struct TlsMetrics {
    /// `lb_tls_handshakes_total{result,version}`.
    pub handshakes: Family<HandshakeLabels, Counter>,
    /// `lb_tls_handshake_errors_total{reason}`.
    pub handshake_errors: Family<ReasonLabels, Counter>,
    /// `lb_tls_certificate_expiry_timestamp_seconds{name}`.
    pub expiry: Family<CertificateLabels, Gauge>,
    /// `lb_tls_certificate_reloads_total{name,result}`.
    pub reloads: Family<ReloadLabels, Counter>,
    /// `lb_proxy_protocol_headers_total{result}`.
    pub proxy_headers: Family<ProxyHeaderLabels, Counter>,
    /// `lb_upstream_tls_errors_total{backend,reason}`.
    pub upstream_errors: Family<UpstreamTlsLabels, Counter>,
}

impl TlsMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "lb_tls_handshakes",
            "TLS handshakes with clients, by result and protocol version",
            metrics.handshakes.clone(),
        );
        registry.register(
            "lb_tls_handshake_errors",
            "Failed TLS handshakes with clients, by reason",
            metrics.handshake_errors.clone(),
        );
        registry.register(
            "lb_tls_certificate_expiry_timestamp_seconds",
            "When each served certificate expires, in seconds since the Unix epoch",
            metrics.expiry.clone(),
        );
        registry.register(
            "lb_tls_certificate_reloads",
            "Certificate reloads, by certificate and result (a failed one keeps the old certificate)",
            metrics.reloads.clone(),
        );
        registry.register(
            "lb_proxy_protocol_headers",
            "Connection starts on a listener that accepts the PROXY protocol, by result",
            metrics.proxy_headers.clone(),
        );
        registry.register(
            "lb_upstream_tls_errors",
            "TLS handshakes with backends that failed, by backend and reason",
            metrics.upstream_errors.clone(),
        );
        metrics
    }

    /// Counts a handshake with a client.
    pub fn handshake(&self, result: Result<&'static str, &'static str>) {
        let (result, version) = match result {
            Ok(version) => ("success", version),
            Err(reason) => {
                self.handshake_errors
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
                ("failure", "none")
            }
        };
        self.handshakes
            .get_or_create(&HandshakeLabels { result, version })
            .inc();
    }

    /// Counts the start of a connection on a PROXY-protocol listener.
    pub fn proxy_header(&self, result: &'static str) {
        self.proxy_headers
            .get_or_create(&ProxyHeaderLabels { result })
            .inc();
    }
}
