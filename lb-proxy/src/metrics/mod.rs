//! Prometheus metrics: one registry and the metric families the daemon exports. Per-backend
//! handles ([`backend`]) are resolved once when a backend joins and their series removed when it
//! leaves; the configuration's own series ([`ConfigMetrics`]) say which file is live and how
//! reloads went.
//!
//! The exposition is the Prometheus text format 0.0.4 (what `promtool check metrics` reads), served
//! by [`serve`] on its own listener.

pub mod access_log;
mod backend;
pub mod discovery;
pub mod http2;
pub mod route;
mod serve;
pub mod tls;
pub mod traces;

pub use access_log::AccessLogMetrics;
pub use backend::BackendMetrics;
pub(crate) use backend::{BackendFamilies, BackendRegistry};
pub use route::{PoolLabels, RouteHandles};
pub(crate) use route::{RouteFamilies, RouteRegistry};
pub(crate) use serve::serve;
pub use traces::TracingMetrics;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds: 0.5 ms to 30 s, dense where a healthy fleet answers.
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];
/// Size buckets in bytes: 64 B to 64 MiB, ×4 each step.
const SIZE_BUCKETS: [f64; 11] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// The request method as a bounded label: unknown methods fold into `OTHER` so a client cannot
/// create series at will.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum MethodLabel {
    /// GET
    GET,
    /// HEAD
    HEAD,
    /// POST
    POST,
    /// PUT
    PUT,
    /// DELETE
    DELETE,
    /// PATCH
    PATCH,
    /// OPTIONS
    OPTIONS,
    /// Any other method.
    OTHER,
}

impl MethodLabel {
    /// Number of variants, for tables indexed by method.
    pub const COUNT: usize = 8;
    /// Every variant, in index order.
    pub const ALL: [MethodLabel; Self::COUNT] = [
        Self::GET,
        Self::HEAD,
        Self::POST,
        Self::PUT,
        Self::DELETE,
        Self::PATCH,
        Self::OPTIONS,
        Self::OTHER,
    ];

    /// Folds a request method into its label.
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET => Self::GET,
            Method::HEAD => Self::HEAD,
            Method::POST => Self::POST,
            Method::PUT => Self::PUT,
            Method::DELETE => Self::DELETE,
            Method::PATCH => Self::PATCH,
            Method::OPTIONS => Self::OPTIONS,
            _ => Self::OTHER,
        }
    }
}

/// Labels of `lb_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Request method.
    pub method: MethodLabel,
    /// Status sent to the client.
    pub status: u16,
    /// Backend name, or `none` when no backend was reached.
    pub backend: Arc<String>,
    /// Route name (from the configuration, never the request), or `none` before routing.
    pub route: Arc<String>,
}

/// Labels that name only a backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Backend name.
    pub backend: Arc<String>,
}

/// Labels of `lb_backend_weight`: the backend and its pool (how dashboards group backends).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WeightLabels {
    /// Backend name.
    pub backend: Arc<String>,
    /// The pool it belongs to (`default` in the flat form).
    pub pool: Arc<String>,
}

/// Labels of `lb_retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Backend whose attempt failed.
    pub backend: Arc<String>,
    /// Failure kind that caused the retry.
    pub reason: &'static str,
}

/// Labels of `lb_health_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthCheckLabels {
    /// Backend probed.
    pub backend: Arc<String>,
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Labels of `lb_config_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Labels of `lb_config_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabels {
    /// A hash of the effective configuration.
    pub hash: String,
}

/// Labels of `lb_circuit_breaker_transitions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerTransitionLabels {
    /// Backend whose breaker moved.
    pub backend: Arc<String>,
    /// The state entered: `closed`, `open` or `half_open`.
    pub to: &'static str,
}

pub(crate) type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

/// The configuration's own series: which file is live and how reloads went.
#[derive(Debug, Default)]
pub struct ConfigMetrics {
    /// `lb_config_reloads_total{result}`.
    pub reloads: Family<ReloadLabels, Counter>,
    /// `lb_config_last_reload_success_timestamp_seconds`: when the live configuration was
    /// loaded (the start counts as the first load).
    pub last_success: Gauge<f64, AtomicU64>,
    /// `lb_config_info{hash}`: one series, 1, naming the live configuration.
    pub info: Family<ConfigLabels, Gauge>,
    /// `lb_config_last_reload_successful`: 0 after a refused reload until the next success.
    pub last_successful: Gauge,
}

impl ConfigMetrics {
    /// Counts a reload's result.
    pub fn count_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
        self.last_successful.set(i64::from(success));
    }

    /// Names the configuration now live, loaded at `unix_seconds`; the reload counters exist
    /// from the start, at zero.
    pub fn loaded(&self, hash: String, unix_seconds: f64) {
        for result in ["success", "failure"] {
            let _ = self.reloads.get_or_create(&ReloadLabels { result });
        }
        self.last_successful.set(1);
        self.named(hash);
        self.last_success.set(unix_seconds);
    }

    /// Names the configuration now live without a load of the file (a discovery source
    /// changed a pool's backends, which the hash covers).
    pub fn named(&self, hash: String) {
        self.info.clear();
        self.info.get_or_create(&ConfigLabels { hash }).set(1);
    }
}

/// Every metric family the daemon exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The families labelled by backend, from which [`Metrics::backend`] resolves handles.
    families: BackendFamilies,
    backends: Arc<BackendRegistry>,
    /// The families labelled by route and backend, from which [`Metrics::route`] resolves
    /// handles.
    route_families: RouteFamilies,
    routes: Arc<RouteRegistry>,
    /// `lb_requests_total{method,status,backend,route}`; answers given without a backend count
    /// here.
    pub requests: Family<RequestLabels, Counter>,
    /// `lb_client_connections`: client connections open now.
    pub client_connections: Gauge,
    /// `lb_client_connections_accepted_total`.
    pub client_connections_accepted: Counter,
    /// `lb_client_connections_idle`: client connections released between requests.
    pub client_connections_idle: Gauge,
    /// `lb_retry_budget_exhausted_total`: retries refused by the budget.
    pub retry_budget_exhausted: Counter,
    /// `lb_no_backend_total`: requests answered 503 because no backend was eligible.
    pub no_backend: Counter,
    /// The configuration's series.
    pub config: ConfigMetrics,
    /// `lb_runtime_tasks`: tasks alive in the async runtime, sampled at each scrape.
    runtime_tasks: Gauge,
    /// The TLS and PROXY-protocol families.
    pub tls: tls::TlsMetrics,
    /// Route policies, the pools' queues, Redis.
    pub policy: route::PolicyMetrics,
    /// The access log's lines, drops and write errors.
    pub access_log: AccessLogMetrics,
    /// The discovery sources.
    pub discovery: discovery::DiscoveryMetrics,
    /// HTTP/2 client connections closed for their client's misbehaviour.
    pub http2: http2::Http2Metrics,
    /// The tracing exporter's spans: exported, dropped, failed.
    pub tracing: TracingMetrics,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let tls = tls::TlsMetrics::register(&mut registry);
        let route_families = RouteFamilies {
            requests: Family::default(),
            duration: HistogramFamily::new_with_constructor(duration_histogram),
        };
        let families = BackendFamilies {
            upstream_tls_errors: tls.upstream_errors.clone(),
            request_size: HistogramFamily::new_with_constructor(size_histogram),
            response_size: HistogramFamily::new_with_constructor(size_histogram),
            health: Family::default(),
            breaker_state: Family::default(),
            active: Family::default(),
            retries: Family::default(),
            health_checks: Family::default(),
            breaker_transitions: Family::default(),
            weight: Family::default(),
            drained: Family::default(),
            upstream_idle: Family::default(),
            upgraded: Family::default(),
            ping_timeouts: Family::default(),
            body_failures: Family::default(),
        };
        let f = &families;
        registry.register(
            "lb_requests",
            "Requests answered, by method, status sent, backend and route",
            route_families.requests.clone(),
        );
        registry.register(
            "lb_request_duration_seconds",
            "Time from request arrival to the end of the response, by route and backend",
            route_families.duration.clone(),
        );
        registry.register(
            "lb_request_size_bytes",
            "Request body bytes sent to the backend",
            f.request_size.clone(),
        );
        registry.register(
            "lb_response_size_bytes",
            "Response body bytes sent to the client",
            f.response_size.clone(),
        );
        registry.register(
            "lb_backend_health_status",
            "1 if the backend passes its health checks, else 0",
            f.health.clone(),
        );
        registry.register(
            "lb_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            f.breaker_state.clone(),
        );
        registry.register(
            "lb_active_connections",
            "Requests in flight to the backend",
            f.active.clone(),
        );
        registry.register(
            "lb_retries",
            "Retries, by backend whose attempt failed and reason",
            f.retries.clone(),
        );
        registry.register(
            "lb_health_checks",
            "Active health checks, by result",
            f.health_checks.clone(),
        );
        registry.register(
            "lb_circuit_breaker_transitions",
            "Circuit breaker transitions, by state entered",
            f.breaker_transitions.clone(),
        );
        registry.register(
            "lb_backend_weight",
            "Backend weight the balancer uses (a runtime override included), by backend and its pool",
            f.weight.clone(),
        );
        registry.register(
            "lb_backend_drained",
            "1 while the backend is drained through the admin API, else 0",
            f.drained.clone(),
        );
        registry.register(
            "lb_upstream_idle_connections",
            "Idle keep-alive connections to the backend in its pool, sampled once a second",
            f.upstream_idle.clone(),
        );
        registry.register(
            "lb_upgraded_connections",
            "Connections switched to another protocol (WebSocket...) and tunnelled to the backend, open now",
            f.upgraded.clone(),
        );
        registry.register(
            "lb_upstream_http2_ping_timeouts",
            "HTTP/2 connections to the backend closed because it did not answer a PING within upstream.http2.keepalive_timeout",
            f.ping_timeouts.clone(),
        );
        registry.register(
            "lb_backend_body_failures",
            "Responses whose body the backend failed to deliver whole after their head had gone to the client",
            f.body_failures.clone(),
        );
        let client_connections = Gauge::default();
        let client_connections_accepted = Counter::default();
        let client_connections_idle = Gauge::default();
        let retry_budget_exhausted = Counter::default();
        let no_backend = Counter::default();
        let config = ConfigMetrics::default();
        let runtime_tasks = Gauge::default();
        registry.register(
            "lb_client_connections",
            "Client connections open",
            client_connections.clone(),
        );
        registry.register(
            "lb_client_connections_accepted",
            "Client connections accepted",
            client_connections_accepted.clone(),
        );
        registry.register(
            "lb_client_connections_idle",
            "Client connections idle between requests, their buffers released",
            client_connections_idle.clone(),
        );
        registry.register(
            "lb_retry_budget_exhausted",
            "Retries refused because the retry budget was empty",
            retry_budget_exhausted.clone(),
        );
        registry.register(
            "lb_no_backend",
            "Requests answered 503 because no backend was eligible",
            no_backend.clone(),
        );
        registry.register(
            "lb_config_reloads",
            "Configuration reloads, by result",
            config.reloads.clone(),
        );
        registry.register(
            "lb_config_last_reload_success_timestamp_seconds",
            "When the live configuration was loaded, in seconds since the Unix epoch",
            config.last_success.clone(),
        );
        registry.register(
            "lb_config_info",
            "The live configuration, named by a hash of its effective settings",
            config.info.clone(),
        );
        registry.register(
            "lb_config_last_reload_successful",
            "1 if the last reload applied (or none was tried), 0 if it was refused: the file on disk is not what runs",
            config.last_successful.clone(),
        );
        registry.register(
            "lb_runtime_tasks",
            "Tasks alive in the async runtime (connections, health checkers, endpoints), sampled at each scrape",
            runtime_tasks.clone(),
        );
        let policy = route::PolicyMetrics::register(&mut registry);
        let access_log = AccessLogMetrics::register(&mut registry);
        let discovery = discovery::DiscoveryMetrics::register(&mut registry);
        let http2 = http2::Http2Metrics::register(&mut registry);
        let tracing = TracingMetrics::register(&mut registry);
        Self {
            http2,
            tracing,
            access_log,
            registry,
            requests: route_families.requests.clone(),
            families,
            backends: Arc::default(),
            route_families,
            routes: Arc::default(),
            policy,
            discovery,
            client_connections,
            client_connections_accepted,
            client_connections_idle,
            retry_budget_exhausted,
            no_backend,
            config,
            runtime_tasks,
            tls,
        }
    }

    /// The handles of backend `name` of `pool`, shared with any live backend of that name.
    pub fn backend(&self, name: &str, pool: &Arc<String>) -> Arc<BackendMetrics> {
        self.backends.acquire(&self.families, name, pool)
    }

    /// The handles of `route` on `backend`, shared with any live snapshot that has the pair.
    pub fn route(&self, route: &Arc<String>, backend: &Arc<String>) -> Arc<RouteHandles> {
        self.routes.acquire(&self.route_families, route, backend)
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = runtime.metrics().num_alive_tasks();
            self.runtime_tasks
                .set(i64::try_from(tasks).unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
