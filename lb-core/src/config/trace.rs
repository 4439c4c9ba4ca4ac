//! `tracing`: distributed tracing with W3C Trace Context and OpenTelemetry (OTLP over
//! HTTP/protobuf). Off unless the section is written; read and checked here, run by the data
//! plane (lb-core opens no socket).
//!
//! The limits are what keeps tracing from costing a request anything: finished requests wait
//! for export in a bounded queue (`queue_size`; a full queue drops, never waits), exports go in
//! batches (`batch_size`, at least every `batch_interval`) and each is bounded by
//! `export_timeout`, so a collector that is down or stalled costs memory up to the queue and
//! nothing else.

use std::time::Duration;

use serde::Serialize;

use super::model::ServerConfig;
use super::node::Node;
use super::walk::{Problem, Section, Walker, boolean, duration, int, ratio, text};
use super::warnings::{ConfigWarning, warning};

/// The most requests `tracing.queue_size` may hold: the queue is memory held while the
/// collector stalls.
pub const MAX_TRACE_QUEUE: usize = 1 << 20;
/// The longest `tracing.service_name`.
pub const MAX_SERVICE_NAME: usize = 255;
/// The longest `tracing.endpoint`.
const MAX_ENDPOINT: usize = 2048;

/// `tracing`: spans exported over OTLP, context propagated to backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TracingConfig {
    /// Whether requests are traced; true as soon as the section is written.
    pub enabled: bool,
    /// The collector's OTLP/HTTP traces URL (`http://` or `https://`).
    pub endpoint: String,
    /// The share of new traces sampled (0.0 to 1.0); a trusted parent's decision is kept.
    pub sampling_ratio: f64,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Finished requests (each a server span and its attempt spans) waiting for export; when
    /// full, a request's spans are dropped (and counted), never waited for.
    pub queue_size: usize,
    /// The most requests' spans in one export.
    pub batch_size: usize,
    /// The longest a finished request waits before its batch is sent.
    #[serde(serialize_with = "super::duration::serialize")]
    pub batch_interval: Duration,
    /// The longest one export may take, its retries included.
    #[serde(serialize_with = "super::duration::serialize")]
    pub export_timeout: Duration,
    /// Whose `traceparent` (trace id, parent span, sampled flag) is honoured.
    pub trust_parent: TrustParent,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: "http://127.0.0.1:4318/v1/traces".to_owned(),
            sampling_ratio: 1.0,
            service_name: "lb".to_owned(),
            queue_size: 2048,
            batch_size: 512,
            batch_interval: Duration::from_secs(5),
            export_timeout: Duration::from_secs(10),
            trust_parent: TrustParent::TrustedProxies,
        }
    }
}

impl TracingConfig {
    /// Whether this is the default (off), which the serialized form leaves out.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Which clients' trace context is taken as the parent of the request's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustParent {
    /// Clients in `server.trusted_proxies` (the trust `X-Forwarded-For` and the request id get).
    TrustedProxies,
    /// Every client: for a balancer that only other trusted services can reach.
    All,
    /// No client: every request starts a new trace.
    None,
}

impl TrustParent {
    /// Whether a client (`trusted`: in `server.trusted_proxies`) is trusted with its parent.
    pub fn trusts(self, trusted: bool) -> bool {
        match self {
            TrustParent::TrustedProxies => trusted,
            TrustParent::All => true,
            TrustParent::None => false,
        }
    }
}

/// Reads `tracing`.
pub(super) fn tracing(w: &mut Walker<'_>, top: &Section<'_>) -> TracingConfig {
    let d = TracingConfig::default();
    let present = top.get("tracing").is_some();
    let s = w.section(
        top.get("tracing"),
        "tracing",
        &[
            "enabled",
            "endpoint",
            "sampling_ratio",
            "service_name",
            "queue_size",
            "batch_size",
            "batch_interval",
            "export_timeout",
            "trust_parent",
        ],
    );
    let enabled = w.get(&s, "enabled", present, boolean).value;
    let endpoint = w.get(&s, "endpoint", d.endpoint, endpoint).value;
    let sampling_ratio = w.get(&s, "sampling_ratio", d.sampling_ratio, ratio).value;
    let service_name = w
        .get(&s, "service_name", d.service_name, service_name)
        .value;
    let queue_size = w.get(&s, "queue_size", d.queue_size, queue_size).value;
    let batch = w.get(&s, "batch_size", d.batch_size, int(1));
    if batch.ok && batch.value > queue_size {
        let problem = Problem::new(format!(
            "a batch of {} is larger than the queue of {queue_size}",
            batch.value
        ))
        .hint("make batch_size at most queue_size");
        w.report(batch.pos, "tracing.batch_size", problem);
    }
    let batch_interval = w.get(&s, "batch_interval", d.batch_interval, duration(true));
    let export_timeout = w.get(&s, "export_timeout", d.export_timeout, duration(true));
    let trust_parent = w
        .get(&s, "trust_parent", d.trust_parent, trust_parent)
        .value;
    TracingConfig {
        enabled,
        endpoint,
        sampling_ratio,
        service_name,
        queue_size,
        batch_size: batch.value,
        batch_interval: batch_interval.value,
        export_timeout: export_timeout.value,
        trust_parent,
    }
}

/// An OTLP/HTTP URL: `http://` or `https://`, a host, an optional port, an optional path and
/// query; printable ASCII of the URI grammar, no spaces, no fragment (a URL is never guessed
/// at).
fn endpoint(node: &Node) -> Result<String, Problem> {
    let url = text(node)?;
    let hint = "like http://127.0.0.1:4318/v1/traces";
    let uri_char = |b: u8| b.is_ascii_graphic() && !b"\"#<>\\^`{|}".contains(&b);
    if url.len() > MAX_ENDPOINT || !url.bytes().all(uri_char) {
        return Err(Problem::new(format!(
            "\"{url}\" is not a URL: at most {MAX_ENDPOINT} characters of the URI grammar, no \
             spaces, no fragment"
        ))
        .hint(hint));
    }
    let Some(rest) = (url.strip_prefix("http://")).or_else(|| url.strip_prefix("https://")) else {
        return Err(
            Problem::new(format!("\"{url}\" is not an http:// or https:// URL")).hint(hint),
        );
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(Problem::new(format!("\"{url}\" carries credentials"))
            .hint("credentials do not belong in a URL the logs may show; use a local collector"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: [addr] or [addr]:port.
        Some(inner) => match inner.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => ("", None),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(Problem::new(format!("\"{url}\" names no host")).hint(hint));
    }
    let ipv6 = authority.starts_with('[');
    let host_ok = match ipv6 {
        true => host.parse::<std::net::Ipv6Addr>().is_ok(),
        false => {
            (host.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b))
        }
    };
    if !host_ok {
        return Err(Problem::new(format!(
            "\"{url}\": \"{host}\" is not a host name or address"
        ))
        .hint(hint));
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|port| port > 0)
    {
        return Err(Problem::new(format!("\"{url}\": \"{port}\" is not a port")).hint(hint));
    }
    Ok(url)
}

fn service_name(node: &Node) -> Result<String, Problem> {
    let name = text(node)?;
    if name.len() > MAX_SERVICE_NAME || !name.bytes().all(|b| (32..=126).contains(&b)) {
        return Err(Problem::new(format!(
            "\"{name}\" is not a service name: 1 to {MAX_SERVICE_NAME} printable ASCII characters"
        )));
    }
    Ok(name)
}

fn queue_size(node: &Node) -> Result<usize, Problem> {
    let requests: usize = int(1)(node)?;
    if requests > MAX_TRACE_QUEUE {
        return Err(Problem::new(format!(
            "{requests} requests is over the limit of {MAX_TRACE_QUEUE}"
        ))
        .hint("the queue is memory held while the collector stalls; 2048 is the default"));
    }
    Ok(requests)
}

fn trust_parent(node: &Node) -> Result<TrustParent, Problem> {
    match text(node)?.as_str() {
        "trusted_proxies" => Ok(TrustParent::TrustedProxies),
        "all" => Ok(TrustParent::All),
        "none" => Ok(TrustParent::None),
        other => Err(Problem::new(format!("unknown trust_parent \"{other}\""))
            .hint("trusted_proxies (server.trusted_proxies), all or none")),
    }
}

/// `lb-cli check`'s warnings about `tracing`: a section that can never export a span, and one
/// that lets any client choose trace ids and force sampling.
pub(super) fn warnings(
    config: &TracingConfig,
    server: &ServerConfig,
    out: &mut Vec<ConfigWarning>,
) {
    if !config.enabled {
        return;
    }
    let trusts_someone = match config.trust_parent {
        TrustParent::TrustedProxies => !server.trusted_proxies.is_empty(),
        TrustParent::All => true,
        TrustParent::None => false,
    };
    if config.sampling_ratio == 0.0 && !trusts_someone {
        out.push(warning(
            "tracing.sampling_ratio",
            &["tracing.trust_parent", "server.trusted_proxies"],
            "is 0 and no client is trusted with its parent: no span will ever be exported"
                .to_owned(),
            "raise sampling_ratio, or trust the callers whose traces should be kept",
        ));
    }
    if config.trust_parent == TrustParent::All {
        out.push(warning(
            "tracing.trust_parent",
            &[],
            "is all: any client chooses its trace id and forces sampling (its spans reach your \
             collector at the client's will)"
                .to_owned(),
            "use trusted_proxies unless only trusted services can reach the balancer",
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Format, TrustParent, parse};

    fn load(tracing: &str) -> Result<Config, String> {
        let yaml = format!("backends:\n  - address: 127.0.0.1:9001\ntracing:\n{tracing}");
        parse(&yaml, Format::Yaml, "lb.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_on_once_written() {
        let text = "backends:\n  - address: 127.0.0.1:9001\n";
        let config = parse(text, Format::Yaml, "lb.yaml").unwrap();
        assert!(!config.tracing.enabled);
        let config = load("  sampling_ratio: 0.5\n").unwrap();
        assert!(config.tracing.enabled);
        assert_eq!(config.tracing.sampling_ratio, 0.5);
        assert_eq!(config.tracing.trust_parent, TrustParent::TrustedProxies);
        assert!(!load("  enabled: false\n").unwrap().tracing.enabled);
    }

    #[test]
    fn every_field_reads() {
        let config = load(
            "  endpoint: https://collector.internal:4318/v1/traces\n  service_name: edge\n  \
             queue_size: 100\n  batch_size: 10\n  batch_interval: 200ms\n  export_timeout: 2s\n  \
             trust_parent: none\n",
        )
        .unwrap()
        .tracing;
        assert_eq!(config.endpoint, "https://collector.internal:4318/v1/traces");
        assert_eq!(config.service_name, "edge");
        assert_eq!((config.queue_size, config.batch_size), (100, 10));
        assert_eq!(config.batch_interval.as_millis(), 200);
        assert_eq!(config.export_timeout.as_secs(), 2);
        assert_eq!(config.trust_parent, TrustParent::None);
    }

    #[test]
    fn bad_values_are_located() {
        let cases = [
            (
                "  endpoint: ftp://x/\n",
                "lb.yaml:4:13",
                "not an http:// or https:// URL",
            ),
            (
                "  endpoint: http://:4318/\n",
                "lb.yaml:4:13",
                "names no host",
            ),
            (
                "  endpoint: http://h:99999/\n",
                "lb.yaml:4:13",
                "is not a port",
            ),
            ("  endpoint: http://u:p@h/\n", "lb.yaml:4:13", "credentials"),
            (
                "  endpoint: \"http://h/v1#x\"\n",
                "lb.yaml:4:13",
                "no fragment",
            ),
            (
                "  endpoint: \"http://h/{x}\"\n",
                "lb.yaml:4:13",
                "is not a URL",
            ),
            (
                "  sampling_ratio: 1.5\n",
                "lb.yaml:4:19",
                "between 0.0 and 1.0",
            ),
            ("  queue_size: 0\n", "lb.yaml:4:15", "at least 1"),
            ("  queue_size: 9999999\n", "lb.yaml:4:15", "over the limit"),
            (
                "  queue_size: 10\n  batch_size: 20\n",
                "lb.yaml:5:15",
                "larger than the queue",
            ),
            ("  batch_interval: 0s\n", "lb.yaml:4:19", "greater than 0"),
            ("  export_timeout: 5\n", "lb.yaml:4:19", "needs a unit"),
            (
                "  trust_parent: everyone\n",
                "lb.yaml:4:17",
                "unknown trust_parent",
            ),
            (
                "  service_name: \"a\\nb\"\n",
                "lb.yaml:4:17",
                "not a service name",
            ),
            (
                "  sample_ratio: 0.5\n",
                "lb.yaml:4:3",
                "did you mean \"sampling_ratio\"",
            ),
        ];
        for (tracing, at, says) in cases {
            let error = load(tracing).expect_err(tracing);
            assert!(error.contains(at), "{tracing}: {error}");
            assert!(error.contains(says), "{tracing}: {error}");
        }
    }

    #[test]
    fn check_warns_of_a_section_that_exports_nothing_or_trusts_everyone() {
        let fields = |tracing: &str| -> Vec<String> {
            let config = load(tracing).unwrap();
            (crate::config::warnings(&config).into_iter())
                .map(|w| w.field)
                .filter(|field| field.starts_with("tracing."))
                .collect()
        };
        assert_eq!(
            fields("  sampling_ratio: 0.0\n"),
            ["tracing.sampling_ratio"]
        );
        assert!(fields("  sampling_ratio: 0.5\n").is_empty());
        assert_eq!(fields("  trust_parent: all\n"), ["tracing.trust_parent"]);
        assert!(fields("  enabled: false\n  trust_parent: all\n").is_empty());
    }

    #[test]
    fn ipv6_endpoints_read() {
        let config = load("  endpoint: \"http://[::1]:4318/v1/traces\"\n").unwrap();
        assert_eq!(config.tracing.endpoint, "http://[::1]:4318/v1/traces");
    }
}
