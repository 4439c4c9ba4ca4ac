//! Stage three: the validated configuration, every default applied.
//!
//! Values of these types have passed validation when they come from [`super::parse`]; built
//! by hand (tests, the demo) they are trusted as given. They serialize back to the file
//! format, durations as `"10s"` and status ranges as `"200-399"`, so `lb-cli show` can print
//! the effective configuration and the output parses again to an equal value.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Serialize, Serializer};

pub use super::auth::AuthConfig;
use super::discovery::DiscoveryConfig;
use super::duration;
pub use super::limits::{RateLimitConfig, RedisConfig};
use super::observe::{AccessLogConfig, RequestIdConfig};
use super::operate::{AdminConfig, ReloadConfig};
pub use super::pools::{PoolConfig, QueueConfig};
pub use super::routes::{PathNormalizationConfig, RouteConfig};
use super::tls::{
    ProxyProtocol, RedirectConfig, SendProxyProtocol, ServerTlsConfig, UpstreamTlsConfig,
};
use super::trace::TracingConfig;
use super::upstream_http2::{UpstreamHttp2Config, UpstreamProtocol};
use crate::balance::Algorithm;
use crate::breaker::BreakerPolicy;
use crate::health::{HealthPolicy, StatusRange};
use crate::net::Cidr;
use crate::retry::{BudgetPolicy, RetryPolicy};

/// The whole balancer configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The client-facing listener and its limits.
    pub server: ServerConfig,
    /// The pooled HTTP client used to reach backends.
    pub upstream: UpstreamConfig,
    /// How a backend is picked for each request.
    pub load_balancer: LoadBalancerConfig,
    /// The backends, in file order; never empty after validation in the flat form, empty
    /// when the file defines `pools` instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendConfig>,
    /// Where the flat form's backends come from when `backends` is not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Box<DiscoveryConfig>>,
    /// Active health checking.
    pub health_check: HealthCheckConfig,
    /// The per-backend circuit breaker.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Retries of failed requests on another backend.
    pub retry: RetryConfig,
    /// The Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// How configuration changes are picked up while running.
    pub reload: ReloadConfig,
    /// How request paths are normalised before routes see them.
    #[serde(skip_serializing_if = "PathNormalizationConfig::is_default")]
    pub path_normalization: PathNormalizationConfig,
    /// The default wait queue of a pool whose backends are all at `max_connections`.
    #[serde(skip_serializing_if = "QueueConfig::is_default")]
    pub queue: QueueConfig,
    /// Named pools, in file order. In the flat form (`backends` at the top) the top-level
    /// sections are one more pool, named `default`, listed first by [`Config::pool_list`];
    /// pools written here inherit those sections field by field.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "super::pools::serialize"
    )]
    pub pools: Vec<PoolConfig>,
    /// Routes in file order, the first match wins; empty means one route, `default`, that
    /// takes every request to the first pool.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// Named rate limits; routes that name the same limit share one budget.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "super::limits::serialize"
    )]
    pub rate_limits: Vec<RateLimitConfig>,
    /// The Redis server of limits with `shared: redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// Named authentication schemes, for routes to require.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "super::auth::serialize"
    )]
    pub auth: Vec<AuthConfig>,
    /// One line per request.
    #[serde(skip_serializing_if = "AccessLogConfig::is_default")]
    pub access_log: AccessLogConfig,
    /// The id every request carries.
    #[serde(skip_serializing_if = "RequestIdConfig::is_default")]
    pub request_id: RequestIdConfig,
    /// Distributed tracing.
    #[serde(skip_serializing_if = "TracingConfig::is_default")]
    pub tracing: TracingConfig,
}

impl Config {
    /// A configuration with the given backends and every section at its default.
    pub fn with_backends(backends: Vec<BackendConfig>) -> Self {
        Self {
            server: ServerConfig::default(),
            upstream: UpstreamConfig::default(),
            load_balancer: LoadBalancerConfig::default(),
            backends,
            discovery: None,
            health_check: HealthCheckConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            retry: RetryConfig::default(),
            metrics: MetricsConfig::default(),
            admin: AdminConfig::default(),
            reload: ReloadConfig::default(),
            path_normalization: PathNormalizationConfig::default(),
            queue: QueueConfig::default(),
            pools: Vec::new(),
            routes: Vec::new(),
            rate_limits: Vec::new(),
            redis: None,
            auth: Vec::new(),
            access_log: AccessLogConfig::default(),
            request_id: RequestIdConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

/// `server`: the listener clients connect to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// Address to accept clients on.
    pub listen: SocketAddr,
    /// Tokio worker threads; 0 means one per core.
    pub workers: usize,
    /// Client connections held at once; more wait in the accept queue.
    pub max_client_connections: usize,
    /// Time a client has to send the request head.
    #[serde(serialize_with = "duration::serialize")]
    pub header_read_timeout: Duration,
    /// Time for a whole request, retries included, before answering 504.
    #[serde(serialize_with = "duration::serialize")]
    pub request_timeout: Duration,
    /// An idle keep-alive client connection is closed after this long.
    #[serde(serialize_with = "duration::serialize")]
    pub idle_timeout: Duration,
    /// An HTTP/1 client connection with nothing in flight and no byte moved for this long gives
    /// back its buffers and parser state until its client sends again.
    #[serde(serialize_with = "duration::serialize")]
    pub idle_release_after: Duration,
    /// Larger request bodies are refused with 413.
    pub max_request_body_bytes: u64,
    /// On shutdown, in-flight requests get this long to finish.
    #[serde(serialize_with = "duration::serialize")]
    pub shutdown_grace: Duration,
    /// Limits of HTTP/2 client connections.
    pub http2: super::http2::Http2Config,
    /// A tunnel (a connection a backend switched to WebSocket or another protocol with `101`)
    /// is closed after no byte moved either way for this long.
    #[serde(serialize_with = "duration::serialize")]
    pub upgrade_idle_timeout: Duration,
    /// Largest request head (request line and headers) accepted; larger ones get 431.
    pub max_header_bytes: usize,
    /// Longest request target accepted; longer ones get 414.
    pub max_uri_bytes: usize,
    /// Peers whose `X-Forwarded-For` is believed (and appended to); empty means the balancer is
    /// the edge and replaces the header with the peer's address.
    pub trusted_proxies: Vec<Cidr>,
    /// Also accept HTTP/2 with prior knowledge (h2c) on the listener. Off, the listener speaks
    /// HTTP/1 only and skips the per-connection protocol sniff.
    pub h2c: bool,
    /// HTTPS on the listener (see [`ServerTlsConfig`]); plain HTTP without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsConfig>,
    /// Whether trusted peers may open connections with a PROXY protocol header.
    pub proxy_protocol: ProxyProtocol,
    /// A plain-HTTP listener that redirects to this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_redirect: Option<RedirectConfig>,
}

/// Smallest `server.max_header_bytes`: hyper's read buffer cannot be set below 8 KiB.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080)),
            workers: 0,
            max_client_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            idle_release_after: Duration::from_secs(1),
            max_request_body_bytes: 10 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            upgrade_idle_timeout: Duration::from_secs(300),
            http2: Default::default(),
            max_header_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
            trusted_proxies: Vec::new(),
            h2c: false,
            tls: None,
            proxy_protocol: ProxyProtocol::Off,
            http_redirect: None,
        }
    }
}

/// `upstream`: the connection pool towards backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamConfig {
    /// Time allowed to open a TCP connection to a backend.
    #[serde(serialize_with = "duration::serialize")]
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long; 0 closes them at once.
    #[serde(serialize_with = "duration::serialize")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per backend; 0 disables pooling.
    pub pool_max_idle_per_backend: usize,
    /// Largest response head (status line and headers) accepted from a backend; a larger one
    /// is answered 502.
    pub max_response_header_bytes: usize,
    /// TLS towards backends that do not set their own `tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsConfig>,
    /// The PROXY protocol towards backends that do not set their own.
    #[serde(skip_serializing_if = "SendProxyProtocol::is_off")]
    pub proxy_protocol: SendProxyProtocol,
    /// The protocol of backends that do not set their own.
    pub protocol: UpstreamProtocol,
    /// The bounds of HTTP/2 connections (backends with protocol `h2c` or `h2`).
    pub http2: UpstreamHttp2Config,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_backend: 256,
            max_response_header_bytes: 64 * 1024,
            tls: None,
            proxy_protocol: SendProxyProtocol::Off,
            protocol: UpstreamProtocol::Http1,
            http2: UpstreamHttp2Config::default(),
        }
    }
}

/// `load_balancer`: the selection algorithm.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LoadBalancerConfig {
    /// Which algorithm picks the backend.
    pub algorithm: Algorithm,
    /// `ip_hash` only: no backend takes more than this factor times the mean load (consistent
    /// hashing with bounded loads); `None` leaves affinity unbounded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_balance_factor: Option<f64>,
    /// A backend that joins or returns to rotation ramps its share of traffic from 10 % to
    /// its full weight over this long; zero turns slow start off.
    #[serde(
        serialize_with = "duration::serialize",
        skip_serializing_if = "Duration::is_zero"
    )]
    pub slow_start: Duration,
}

/// One entry of `backends`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendConfig {
    /// Unique name used in logs, metrics and the CLI; defaults to the address.
    pub name: String,
    /// Where the backend listens.
    pub address: SocketAddr,
    /// Relative share of traffic for the weighted algorithms; at least 1.
    pub weight: u32,
    /// In-flight requests allowed to this backend at once; at least 1.
    pub max_connections: u32,
    /// HTTPS towards the backend (its own `tls`, else `upstream.tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsConfig>,
    /// Whether new connections start with a PROXY v2 header.
    #[serde(skip_serializing_if = "SendProxyProtocol::is_off")]
    pub proxy_protocol: SendProxyProtocol,
    /// The protocol spoken to the backend (its own `protocol`, else `upstream.protocol`).
    pub protocol: UpstreamProtocol,
}

impl BackendConfig {
    /// A backend named after its address, with weight 1 and the default connection limit.
    pub fn new(address: SocketAddr) -> Self {
        Self {
            name: address.to_string(),
            address,
            weight: 1,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
            proxy_protocol: SendProxyProtocol::Off,
            protocol: UpstreamProtocol::Http1,
        }
    }
}

/// Default of [`BackendConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1000;

/// `health_check`: active probes of each backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheckConfig {
    /// Whether probes run at all; when off every backend counts as healthy.
    pub enabled: bool,
    /// Path requested with GET; starts with `/`.
    pub path: String,
    /// Time between two probes of one backend.
    #[serde(serialize_with = "duration::serialize")]
    pub interval: Duration,
    /// A probe without an answer after this long fails; shorter than `interval`.
    #[serde(serialize_with = "duration::serialize")]
    pub timeout: Duration,
    /// Statuses that count as healthy.
    #[serde(serialize_with = "serialize_status_range")]
    pub expected_status: StatusRange,
    /// Consecutive failed probes that mark a healthy backend down, and good ones that bring an
    /// unhealthy backend back: the health tracker's policy, validated.
    #[serde(flatten)]
    pub policy: HealthPolicy,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/health".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            expected_status: StatusRange::default(),
            policy: HealthPolicy::default(),
        }
    }
}

/// `circuit_breaker`: stop sending to a backend that keeps failing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreakerConfig {
    /// Whether the breaker is used at all.
    pub enabled: bool,
    /// Failures that open the circuit, how long it stays open (doubling on each trip from
    /// half-open, up to a cap), trial requests while half-open and successes that close it
    /// again: the breaker's policy, validated.
    #[serde(flatten)]
    pub policy: BreakerPolicy,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            policy: BreakerPolicy::default(),
        }
    }
}

/// `retry`: how failed requests are retried, bounded by a budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryConfig {
    /// Attempts in all (1 disables retries), the backoff before each retry (doubling with
    /// jitter up to a cap) and the failures worth retrying: the retry policy, validated.
    #[serde(flatten)]
    pub policy: RetryPolicy,
    /// The share of the request load retries may add, and the retries a second always
    /// allowed: the budget's policy, validated.
    #[serde(flatten)]
    pub budget: BudgetPolicy,
    /// How much of a streamed gRPC call's request body is kept, while it is forwarded, so that
    /// the call can be sent again after a gRPC status `retry_on` lists; a call whose body
    /// outgrows it is no longer retried. Only calls to a pool whose `retry_on` lists a gRPC
    /// status keep anything.
    pub replay_buffer_bytes: u64,
}

/// `retry.replay_buffer_bytes` by default: what a unary call or a short stream needs, and the
/// size below which the balancer reads an HTTP/1 body in full to be able to retry it.
pub const DEFAULT_REPLAY_BUFFER_BYTES: u64 = 64 * 1024;

/// The most `retry.replay_buffer_bytes` may be: each call in flight may hold this much.
pub const MAX_REPLAY_BUFFER_BYTES: u64 = 16 * 1024 * 1024;

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            policy: RetryPolicy::default(),
            budget: BudgetPolicy::default(),
            replay_buffer_bytes: DEFAULT_REPLAY_BUFFER_BYTES,
        }
    }
}

impl RetryConfig {
    /// The gRPC status codes `retry_on` lists, as a bit set (bit `n` for code `n`): zero when
    /// no gRPC call of the pool is ever retried for its status.
    pub fn grpc_statuses(&self) -> u32 {
        (self.policy.retry_on().iter()).fold(0, |set, condition| match condition {
            crate::retry::RetryCondition::GrpcStatus(code) if *code < 32 => set | 1 << code,
            _ => set,
        })
    }
}

/// `metrics`: the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsConfig {
    /// Whether the endpoint is served.
    pub enabled: bool,
    /// Its own listener, apart from client traffic.
    pub listen: SocketAddr,
    /// Path of the text exposition; starts with `/`.
    pub path: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9090)),
            path: "/metrics".into(),
        }
    }
}

/// Writes a status range as `"200-399"`, or `"200"` for a single code.
fn serialize_status_range<S: Serializer>(
    range: &StatusRange,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(range)
}
