//! A configurable HTTP backend for the balancer's demo, integration tests and benchmarks.
//!
//! It is *not* a general web server: each endpoint exists to make one balancer behaviour observable
//! (who answered, health flips, failures, slowness, body integrity, concurrency). It serves HTTP/1.1
//! with keep-alive and h2c (prior knowledge) on the same port, and is built to stay out of the way in
//! benchmarks: `GET /` clones a precomputed body, TCP_NODELAY is set, and nothing on the hot path
//! formats strings or takes locks.
//!
//! Endpoints (every response carries `x-backend: NAME`):
//!
//! | path | answer |
//! |---|---|
//! | `/` | 200, `hello from NAME (port PORT)` |
//! | `/health` | 200 `ok` or 503 `unhealthy` (see [`RunningBackend::set_healthy`]) |
//! | `/status/{code}` | that status, 200..=599, else 400 |
//! | `/delay/{ms}` | 200 after `ms` milliseconds, at most 60000, else 400 |
//! | `/echo` | request line, headers (`name: value` per line), blank line, body (≤ 16 MiB) |
//! | `/echo/body` | the request body streamed straight back, unbuffered |
//! | `/count` | `bytes=N fnv1a64=HEX` of the request body, streamed ([`Fnv1a64`]) |
//! | `/bytes/{n}` | `n` bytes (≤ 1 GiB), byte `i` = `i % 251` ([`pattern_byte`]) |
//! | `/ws` | a WebSocket echo: text and binary messages come back as sent; 426 without a handshake. Over HTTP/2 it answers an extended `CONNECT` (RFC 8441) unless [`BackendOptions::h2_websocket`] is off |
//! | `/lb.test.Echo/{method}` | the gRPC echo service ([`grpc`]: unary, streaming, large trailers, a chosen failure, a wait) |
//! | anything else (`/api/test`, `/health/x`) | what `/` answers: a balancer may route any path here |
//!
//! Fault injection (`fail_rate`, `latency`) applies to every path except `/health`; both can be
//! changed at run time ([`RunningBackend::set_fail_rate`], [`RunningBackend::set_latency`]).
//!
//! With [`BackendOptions::http2_only`] it serves HTTP/2 alone (an h2c-only backend, or h2 alone
//! by ALPN over TLS), and [`BackendOptions::h2_max_streams`] sets the streams it allows per
//! connection (SETTINGS_MAX_CONCURRENT_STREAMS).
//!
//! With [`BackendOptions::tls`] it serves HTTPS instead ([`tls_config`]: a certificate, and
//! optionally a CA whose client certificates it requires, for mTLS).
//!
//! Layout:
//! - [`cli`]: the command line (the binary, and `cargo run --example test_backend`);
//! - `body`: the response body type, the `/bytes` pattern and the FNV-1a checksum;
//! - `handler`: routing and endpoints;
//! - `tls`: the HTTPS mode;
//! - `websocket`: the `/ws` echo (tokio-tungstenite);
//! - [`grpc`]: the gRPC echo service (tonic's server codec, prost messages by hand);
//! - `stats`: the counters tests read.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod body;
pub mod cli;
pub mod grpc;
mod handler;
mod stats;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::HeaderName;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub use body::{Fnv1a64, PATTERN_PERIOD, fnv1a64, pattern_byte};
pub use handler::{MAX_BYTES, MAX_DELAY_MS, MAX_ECHO_BODY};
pub use stats::{BackendStats, StatsSnapshot};
pub use tls::tls_config;

/// The header naming the backend that produced a response.
pub const X_BACKEND: HeaderName = HeaderName::from_static("x-backend");

/// How a backend behaves.
#[derive(Clone, Debug)]
pub struct BackendOptions {
    /// Reported by `GET /` and in the `x-backend` header; must be a valid header value.
    pub name: String,
    /// When set, `/health` flips between healthy and unhealthy every period, starting healthy.
    pub toggle_health: Option<Duration>,
    /// Fraction (0.0..=1.0) of non-health requests answered 500.
    pub fail_rate: f64,
    /// Delay added before answering every non-health request.
    pub latency: Option<Duration>,
    /// Print `METHOD PATH X-REQUEST-ID` on stdout for every non-health request (the chaos
    /// script checks from these lines that no POST reached a backend twice).
    pub log_requests: bool,
    /// Serve HTTPS with this configuration ([`tls_config`]) instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve HTTP/2 only: prior knowledge in cleartext (h2c), `h2` alone by ALPN over TLS. An
    /// HTTP/1.1 request is not understood.
    pub http2_only: bool,
    /// Streams a client may open at once on one HTTP/2 connection; `None`: hyper's default.
    pub h2_max_streams: Option<u32>,
    /// Offer WebSocket over HTTP/2 (RFC 8441: SETTINGS_ENABLE_CONNECT_PROTOCOL, and `/ws`
    /// answers an extended `CONNECT`). On by default.
    pub h2_websocket: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            name: "backend".to_owned(),
            toggle_health: None,
            fail_rate: 0.0,
            latency: None,
            log_requests: false,
            tls: None,
            http2_only: false,
            h2_max_streams: None,
            h2_websocket: true,
        }
    }
}

/// State every connection of one backend shares.
pub(crate) struct Shared {
    /// Precomputed `GET /` body, cloned (a refcount bump) per request.
    identity: Bytes,
    /// Precomputed `x-backend` value.
    header: HeaderValue,
    /// What `/health` answers; flipped by the toggle task or [`RunningBackend::set_healthy`].
    healthy: AtomicBool,
    /// `f64` bits of the failure probability, changeable at run time.
    fail_rate: AtomicU64,
    /// Added delay in nanoseconds (0: none), changeable at run time.
    latency: AtomicU64,
    log_requests: bool,
    stats: Arc<BackendStats>,
    /// The HTTPS acceptor, in TLS mode.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// HTTP/2 only (no HTTP/1.1).
    http2_only: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS, when set.
    h2_max_streams: Option<u32>,
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL: WebSocket over HTTP/2.
    h2_websocket: bool,
}

/// A backend serving in the background. Dropping it stops it like [`RunningBackend::shutdown`]
/// (without waiting).
#[derive(Debug)]
pub struct RunningBackend {
    addr: SocketAddr,
    name: String,
    shared: Arc<Shared>,
    /// The accept loop; it owns the listener and every connection task, so aborting it closes all.
    server: Option<JoinHandle<()>>,
    /// The `toggle_health` timer, if any.
    toggler: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("healthy", &self.healthy)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl RunningBackend {
    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The backend's name, as sent in `x-backend`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backend's live counters.
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.shared.stats
    }

    /// Sets what `/health` answers. With `toggle_health` the timer keeps flipping it afterwards.
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Relaxed);
    }

    /// Whether `/health` currently answers 200.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Relaxed)
    }

    /// Changes the fraction of non-health requests answered 500 (clamped to 0.0..=1.0; NaN is 0).
    pub fn set_fail_rate(&self, p: f64) {
        self.shared
            .fail_rate
            .store(clamp_rate(p).to_bits(), Relaxed);
    }

    /// Changes the delay added before answering every non-health request; zero removes it.
    /// Requests already waiting keep the delay they started with.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.latency.store(latency_nanos(latency), Relaxed);
    }

    /// The delay added before answering every non-health request, if any.
    pub fn latency(&self) -> Option<Duration> {
        self.shared.latency()
    }

    /// Stops the backend: the listener is closed (new connections are refused) and open connections,
    /// including requests in progress, are aborted. Returns once the listener is closed.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(server) = self.server.take() {
            // The task was aborted; awaiting it waits until its future (listener included) is dropped.
            let _ = server.await;
        }
    }

    fn stop(&mut self) {
        if let Some(toggler) = self.toggler.take() {
            toggler.abort();
        }
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

impl Drop for RunningBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A delay as stored: nanoseconds, saturating at about 584 years.
fn latency_nanos(latency: Duration) -> u64 {
    u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    /// The added delay, if any.
    pub(crate) fn latency(&self) -> Option<Duration> {
        match self.latency.load(Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

fn clamp_rate(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// Binds `addr` (port 0 picks a free port) and serves on it.
///
/// # Errors
///
/// The bind error, e.g. when the port is in use.
///
/// # Panics
///
/// When `options.name` is not a valid HTTP header value (control characters).
pub async fn bind_and_spawn(
    addr: SocketAddr,
    options: BackendOptions,
) -> std::io::Result<RunningBackend> {
    let listener = TcpListener::bind(addr).await?;
    Ok(spawn(listener, options).await)
}

/// Serves on an already bound listener, in background tasks on the current tokio runtime.
///
/// # Panics
///
/// When `options.name` is not a valid HTTP header value (control characters), or when the listener
/// has no local address.
pub async fn spawn(listener: TcpListener, options: BackendOptions) -> RunningBackend {
    let addr = listener
        .local_addr()
        .expect("a bound TCP listener has a local address");
    let header = HeaderValue::from_str(&options.name)
        .expect("backend name must be a valid HTTP header value");
    let shared = Arc::new(Shared {
        identity: Bytes::from(format!(
            "hello from {} (port {})\n",
            options.name,
            addr.port()
        )),
        header,
        healthy: AtomicBool::new(true),
        fail_rate: AtomicU64::new(clamp_rate(options.fail_rate).to_bits()),
        latency: AtomicU64::new(latency_nanos(options.latency.unwrap_or_default())),
        log_requests: options.log_requests,
        stats: Arc::new(BackendStats::default()),
        tls: options.tls.clone().map(|config| {
            let mut config = Arc::unwrap_or_clone(config);
            if options.http2_only {
                config.alpn_protocols = vec![b"h2".to_vec()];
            }
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        }),
        http2_only: options.http2_only,
        h2_max_streams: options.h2_max_streams,
        h2_websocket: options.h2_websocket,
    });
    let toggler = options
        .toggle_health
        .filter(|d| !d.is_zero())
        .map(|period| tokio::spawn(toggle_health(shared.clone(), period)));
    let server = tokio::spawn(accept_loop(listener, shared.clone()));
    RunningBackend {
        addr,
        name: options.name,
        shared,
        server: Some(server),
        toggler,
    }
}

async fn toggle_health(shared: Arc<Shared>, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        shared.healthy.fetch_xor(true, Relaxed);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connection tasks here means aborting this task aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.stats.connections.fetch_add(1, Relaxed);
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning until a descriptor frees up.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one connection: HTTP/1.1 (with upgrades) and HTTP/2, or HTTP/2 alone. hyper-util's
/// `serve_connection_with_upgrades` does not honour `http2_only`, so that mode takes
/// `serve_connection` (an HTTP/2 connection has no upgrades to hand over anyway).
async fn serve_io<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    http2_only: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match http2_only {
        true => builder.serve_connection(io, service).await,
        false => builder.serve_connection_with_upgrades(io, service).await,
    }
}

/// Counts a connection open until dropped (its task ended or was aborted).
struct OpenConnection(Arc<BackendStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    shared.stats.open_connections.fetch_add(1, Relaxed);
    let _open = OpenConnection(shared.stats.clone());
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "set_nodelay failed");
    }
    let acceptor = shared.tls.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Some(streams) = shared.h2_max_streams {
        builder.http2().max_concurrent_streams(streams);
    }
    if shared.h2_websocket {
        builder.http2().enable_connect_protocol();
    }
    let shared_http2_only = shared.http2_only;
    if shared_http2_only {
        builder = builder.http2_only();
    }
    let service = service_fn(move |req| handler::handle(shared.clone(), req));
    let served = match acceptor {
        None => serve_io(&builder, TokioIo::new(stream), service, shared_http2_only).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => {
                serve_io(&builder, TokioIo::new(stream), service, shared_http2_only).await
            }
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
        },
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
