//! Prometheus metrics: one registry, the metric families the daemon exports, and per-backend
//! handles resolved once when a backend is created so the request path never formats a label
//! or hashes a backend name.
//!
//! The exposition is the Prometheus text format 0.0.4 (what `promtool check metrics` reads), served
//! by [`serve`] on its own listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

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

/// Labels that name a route and a backend.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteBackendLabels {
    /// Route name.
    pub route: Arc<String>,
    /// Backend name.
    pub backend: Arc<String>,
}

/// Labels of `lb_rate_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// Route whose request was refused.
    pub route: Arc<String>,
    /// The limit's name.
    pub limit: Arc<String>,
}

/// Labels of `lb_auth_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// Route whose request was refused.
    pub route: Arc<String>,
    /// Why, from a fixed list (`missing`, `bad_credentials`, `expired`, ...).
    pub reason: &'static str,
}

/// Labels that name only a pool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// Pool name.
    pub pool: Arc<String>,
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

/// Labels of `lb_circuit_breaker_transitions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerTransitionLabels {
    /// Backend whose breaker moved.
    pub backend: Arc<String>,
    /// The state entered: `closed`, `open` or `half_open`.
    pub to: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

/// Every metric family the daemon exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `lb_requests_total{method,status,backend}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `lb_request_duration_seconds{route,backend}`: from request arrival to the end of the
    /// response.
    pub duration: HistogramFamily<RouteBackendLabels>,
    /// `lb_request_size_bytes{backend}`: request body bytes sent upstream.
    pub request_size: HistogramFamily<BackendLabels>,
    /// `lb_response_size_bytes{backend}`: response body bytes sent to the client.
    pub response_size: HistogramFamily<BackendLabels>,
    /// `lb_backend_health_status{backend}`: 1 healthy, 0 unhealthy.
    pub health: Family<BackendLabels, Gauge>,
    /// `lb_circuit_breaker_state{backend}`: 0 closed, 1 open, 2 half-open.
    pub breaker_state: Family<BackendLabels, Gauge>,
    /// `lb_active_connections{backend}`: requests in flight to the backend.
    pub active: Family<BackendLabels, Gauge>,
    /// `lb_retries_total{backend,reason}`.
    pub retries: Family<RetryLabels, Counter>,
    /// `lb_health_checks_total{backend,result}`.
    pub health_checks: Family<HealthCheckLabels, Counter>,
    /// `lb_circuit_breaker_transitions_total{backend,to}`.
    pub breaker_transitions: Family<BreakerTransitionLabels, Counter>,
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
    /// `lb_backend_weight{backend,pool}`: configured weight (for dashboards' share of traffic),
    /// and which pool the backend is in.
    pub weight: Family<WeightLabels, Gauge>,
    /// `lb_upstream_idle_connections{backend}`: idle pooled connections, sampled by the sweep.
    pub upstream_idle: Family<BackendLabels, Gauge>,
    /// `lb_rate_limited_total{route,limit}`: requests refused with 429.
    pub rate_limited: Family<LimitLabels, Counter>,
    /// `lb_auth_failures_total{route,reason}`: requests refused with 401 or 403.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// `lb_queue_depth{pool}`: requests waiting for a backend slot.
    pub queue_depth: Family<PoolLabels, Gauge>,
    /// `lb_queue_wait_seconds{pool}`: how long queued requests waited for a slot.
    pub queue_wait: HistogramFamily<PoolLabels>,
    /// `lb_queue_rejected_total{pool}`: requests answered 503 because the queue was full or
    /// their wait timed out.
    pub queue_rejected: Family<PoolLabels, Counter>,
    /// `lb_rate_limit_redis_up`: 1 while the Redis server of shared limits answers, else 0.
    pub redis_up: Gauge,
    /// `lb_rate_limit_redis_errors_total`: decisions Redis did not make in time (the limit's
    /// `on_error` applied instead).
    pub redis_errors: Counter,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration =
            HistogramFamily::new_with_constructor(duration_histogram as fn() -> Histogram);
        let request_size =
            HistogramFamily::new_with_constructor(size_histogram as fn() -> Histogram);
        let response_size =
            HistogramFamily::new_with_constructor(size_histogram as fn() -> Histogram);
        let health = Family::<BackendLabels, Gauge>::default();
        let breaker_state = Family::<BackendLabels, Gauge>::default();
        let active = Family::<BackendLabels, Gauge>::default();
        let retries = Family::<RetryLabels, Counter>::default();
        let health_checks = Family::<HealthCheckLabels, Counter>::default();
        let breaker_transitions = Family::<BreakerTransitionLabels, Counter>::default();
        let client_connections = Gauge::default();
        let client_connections_accepted = Counter::default();
        let client_connections_idle = Gauge::default();
        let retry_budget_exhausted = Counter::default();
        let no_backend = Counter::default();
        let weight = Family::<WeightLabels, Gauge>::default();
        let upstream_idle = Family::<BackendLabels, Gauge>::default();
        let rate_limited = Family::<LimitLabels, Counter>::default();
        let auth_failures = Family::<AuthLabels, Counter>::default();
        let queue_depth = Family::<PoolLabels, Gauge>::default();
        let queue_wait =
            HistogramFamily::new_with_constructor(duration_histogram as fn() -> Histogram);
        let queue_rejected = Family::<PoolLabels, Counter>::default();
        let redis_up = Gauge::default();
        let redis_errors = Counter::default();

        registry.register(
            "lb_requests",
            "Requests answered, by method, status sent, backend and route",
            requests.clone(),
        );
        registry.register(
            "lb_request_duration_seconds",
            "Time from request arrival to the end of the response, by route and backend",
            duration.clone(),
        );
        registry.register(
            "lb_request_size_bytes",
            "Request body bytes sent to the backend",
            request_size.clone(),
        );
        registry.register(
            "lb_response_size_bytes",
            "Response body bytes sent to the client",
            response_size.clone(),
        );
        registry.register(
            "lb_backend_health_status",
            "1 if the backend passes its health checks, else 0",
            health.clone(),
        );
        registry.register(
            "lb_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        registry.register(
            "lb_active_connections",
            "Requests in flight to the backend",
            active.clone(),
        );
        registry.register(
            "lb_retries",
            "Retries, by backend whose attempt failed and reason",
            retries.clone(),
        );
        registry.register(
            "lb_health_checks",
            "Active health checks, by result",
            health_checks.clone(),
        );
        registry.register(
            "lb_circuit_breaker_transitions",
            "Circuit breaker transitions, by state entered",
            breaker_transitions.clone(),
        );
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
            "lb_backend_weight",
            "Configured backend weight, by backend and its pool",
            weight.clone(),
        );
        registry.register(
            "lb_upstream_idle_connections",
            "Idle keep-alive connections to the backend in its pool, sampled once a second",
            upstream_idle.clone(),
        );
        registry.register(
            "lb_rate_limited",
            "Requests refused with 429 by a rate limit, by route and limit",
            rate_limited.clone(),
        );
        registry.register(
            "lb_auth_failures",
            "Requests refused with 401 or 403, by route and reason",
            auth_failures.clone(),
        );
        registry.register(
            "lb_queue_depth",
            "Requests waiting for a backend slot in the pool's queue",
            queue_depth.clone(),
        );
        registry.register(
            "lb_queue_wait_seconds",
            "Time queued requests waited for a backend slot",
            queue_wait.clone(),
        );
        registry.register(
            "lb_queue_rejected",
            "Requests answered 503 because the pool's queue was full or their wait timed out",
            queue_rejected.clone(),
        );
        registry.register(
            "lb_rate_limit_redis_up",
            "1 while the Redis server of shared rate limits answers in time, else 0",
            redis_up.clone(),
        );
        registry.register(
            "lb_rate_limit_redis_errors",
            "Rate-limit decisions Redis did not make in time; the limit's on_error applied",
            redis_errors.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            request_size,
            response_size,
            health,
            breaker_state,
            active,
            retries,
            health_checks,
            breaker_transitions,
            client_connections,
            client_connections_accepted,
            client_connections_idle,
            retry_budget_exhausted,
            no_backend,
            weight,
            upstream_idle,
            rate_limited,
            auth_failures,
            queue_depth,
            queue_wait,
            queue_rejected,
            redis_up,
            redis_errors,
        }
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
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

/// Status codes whose `lb_requests_total` counters a backend keeps pre-resolved; any other code
/// takes one family lookup per request.
const COMMON_STATUSES: [u16; 18] = [
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504,
];
const STATUS_SLOTS: usize = COMMON_STATUSES.len();

/// Metric handles of one backend, resolved when the backend is created.
#[derive(Debug)]
pub struct BackendMetrics {
    /// The backend's name as a label value.
    pub name: Arc<String>,
    /// `lb_request_size_bytes{backend}`.
    pub request_size: Histogram,
    /// `lb_response_size_bytes{backend}`.
    pub response_size: Histogram,
    /// `lb_backend_health_status{backend}`.
    pub health: Gauge,
    /// `lb_circuit_breaker_state{backend}`.
    pub breaker_state: Gauge,
    /// `lb_active_connections{backend}`; its atomic is also the backend's in-flight count.
    pub active: Gauge,
    /// `lb_upstream_idle_connections{backend}`.
    pub upstream_idle: Gauge,
    /// Handles by route: one per route that sends to the backend's pool, in the order of the
    /// pool's route slots.
    routes: Box<[RouteHandles]>,
}

/// The handles of one (route, backend) pair.
#[derive(Debug)]
pub struct RouteHandles {
    /// `lb_request_duration_seconds{route,backend}`.
    pub duration: Histogram,
    /// Lazily resolved `lb_requests_total` counters, by method and status.
    requests: Box<[std::sync::OnceLock<Counter>]>,
    family: Family<RequestLabels, Counter>,
    route: Arc<String>,
    backend: Arc<String>,
}

impl RouteHandles {
    /// Counts one request answered with `status`: a family lookup only the first time a
    /// (method, status) pair is seen for this route and backend.
    pub fn count_request(&self, method: MethodLabel, status: u16) {
        let labels = || RequestLabels {
            method,
            status,
            backend: self.backend.clone(),
            route: self.route.clone(),
        };
        let Some(slot) = COMMON_STATUSES.iter().position(|&common| common == status) else {
            self.family.get_or_create(&labels()).inc();
            return;
        };
        let index = method as usize * STATUS_SLOTS + slot;
        self.requests[index]
            .get_or_init(|| self.family.get_or_create_owned(&labels()))
            .inc();
    }
}

impl BackendMetrics {
    /// Resolves every handle of backend `name` in `metrics` for the `routes` that reach it
    /// (by slot), and creates its event counters at zero so that dashboards and `increase()`
    /// see a series before the first event.
    pub fn new(
        metrics: &Metrics,
        name: &str,
        weight: u32,
        pool: &str,
        routes: &[Arc<String>],
    ) -> Self {
        let name = Arc::new(name.to_owned());
        let labels = BackendLabels {
            backend: name.clone(),
        };
        let pool = Arc::new(pool.to_owned());
        let weight_labels = WeightLabels {
            backend: name.clone(),
            pool,
        };
        metrics
            .weight
            .get_or_create(&weight_labels)
            .set(i64::from(weight));
        for reason in lb_core::retry::FailureKind::LABELS {
            let _ = metrics.retries.get_or_create(&RetryLabels {
                backend: name.clone(),
                reason,
            });
        }
        for result in ["success", "failure"] {
            let _ = metrics.health_checks.get_or_create(&HealthCheckLabels {
                backend: name.clone(),
                result,
            });
        }
        for to in ["closed", "open", "half_open"] {
            let _ = metrics
                .breaker_transitions
                .get_or_create(&BreakerTransitionLabels {
                    backend: name.clone(),
                    to,
                });
        }
        let health = metrics.health.get_or_create_owned(&labels);
        health.set(1);
        let routes = routes
            .iter()
            .map(|route| RouteHandles {
                duration: metrics.duration.get_or_create_owned(&RouteBackendLabels {
                    route: route.clone(),
                    backend: name.clone(),
                }),
                requests: (0..MethodLabel::COUNT * STATUS_SLOTS)
                    .map(|_| std::sync::OnceLock::new())
                    .collect(),
                family: metrics.requests.clone(),
                route: route.clone(),
                backend: name.clone(),
            })
            .collect();
        Self {
            request_size: metrics.request_size.get_or_create_owned(&labels),
            response_size: metrics.response_size.get_or_create_owned(&labels),
            health,
            breaker_state: metrics.breaker_state.get_or_create_owned(&labels),
            active: metrics.active.get_or_create_owned(&labels),
            upstream_idle: metrics.upstream_idle.get_or_create_owned(&labels),
            routes,
            name,
        }
    }

    /// The handles of the route in `slot` (a slot the pool gave its route; the first slot for
    /// one out of range, which the runtime never builds).
    pub fn route(&self, slot: usize) -> &RouteHandles {
        self.routes.get(slot).unwrap_or(&self.routes[0])
    }
}

/// Serves `GET {path}` with the rendered registry until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    path: String,
    metrics: Arc<Metrics>,
    shutdown: Arc<crate::shutdown::Shutdown>,
) {
    let path: Arc<str> = path.into();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "metrics listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.started() => return,
        };
        let metrics = metrics.clone();
        let path = path.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = answer(&request, &path, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(request: &Request<Incoming>, path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != path {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are served elsewhere on this port\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    response
}
