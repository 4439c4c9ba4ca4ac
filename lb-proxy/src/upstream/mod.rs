//! The client side: a pool of HTTP/1.1 connections per backend, and the exchange on them.
//!
//! Every exchange is our own HTTP/1.1 code over the codec ([`h1`]), run by the request's own
//! task: the head is serialised once per request, so a retry resends the same bytes, and the
//! response is read with no second task and no channel per connection (docs/performance.md,
//! item 14). A body known before the first attempt (none, or buffered for a retry) is written
//! with the head; a body that streams (large or chunked uploads) is written as it arrives while
//! the response head is read ([`upload`]).
//!
//! Each backend owns its pool: a checkout is a `Vec::pop` under that backend's own mutex, and a
//! connection goes back when its response body was read to the end (see
//! [`crate::proxy::body::Completion`]). An idle connection the backend closed is noticed at checkout
//! from the socket's readiness, without a system call while it is healthy. The close can still
//! race the checkout; then a request that a reused connection could not even be written to is
//! written again on another connection (the backend never saw a whole request), and so is an
//! idempotent request that a reused connection closed without a single byte of answer (the
//! backend closed it while idle, as Go's client also assumes). Neither counts as a retry. A
//! connection whose response was not read to the end is never reused. Once a second
//! (the daemon's sweep), idle connections the backend closed or that outlived
//! `upstream.pool_idle_timeout` are closed, so none lingers in `CLOSE_WAIT` while traffic is
//! quiet.
//!
//! A backend with `tls` is reached over TLS ([`stream`]): the handshake is part of the connect
//! and bounded by `upstream.connect_timeout`, and a failed one (an untrusted or misnamed
//! certificate) fails the connect, logged with its reason; nothing is ever sent in plain text
//! instead. TLS connections are pooled like plain ones. A backend with `proxy_protocol: v2`
//! gets a v2 header on each new connection, naming the client; such a connection then carries
//! that client's requests only.
//!
//! A backend with `protocol: h2c` or `h2` is reached over HTTP/2 instead ([`h2`]): its streams
//! share a few connections, opened through the same connect (TCP, TLS with ALPN `h2`). A
//! WebSocket upgrade becomes an extended `CONNECT` on such a backend; the tunnel then runs over
//! its stream ([`tunnel`]).

pub(crate) mod backend;
pub(crate) mod body;
pub(crate) mod connection;
pub(crate) mod h1;
pub(crate) mod h2;
mod h2_limit;
pub(crate) mod health;
pub(crate) mod queue;
pub(crate) mod slow_start;
pub(crate) mod stream;
pub(crate) mod tunnel;
mod upload;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lb_core::config::{BackendConfig, UpstreamConfig};
use lb_core::retry::FailureKind;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::metrics::Metrics;
use crate::metrics::tls::UpstreamTlsLabels;
use crate::proto::h1::framing::Framing;
use crate::proto::h1::response::ResponseHead;
use crate::tls::client::{UpstreamTls, failure_reason, upstream_tls};
pub use body::ResponseBody;
pub use connection::{Connection, ExchangeError};
use h2::H2Pool;
use stream::UpstreamStream;
pub use tunnel::TunnelBackend;
pub use upload::UploadBody;

/// A body error of any kind: what a streamed upload's body may fail with, and what hyper's
/// server takes from a response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an exchange with a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    /// No connection could be made: nothing was sent.
    #[error("connect failed: {}", .0.label())]
    Connect(FailureKind),
    /// The request may have been sent; the exchange then failed.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// A gRPC call was answered with a status `retry_on` lists and nothing else (a
    /// trailers-only response): a failure worth retrying, and the answer if none follows.
    #[error("the backend answered gRPC status {}", .0.code)]
    Grpc(Box<GrpcAnswer>),
    /// A WebSocket upgrade for an HTTP/2 backend that did not turn extended `CONNECT` on
    /// (SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441): nothing was sent, and the backend is not
    /// at fault (it serves everything else).
    #[error(
        "the backend does not take WebSocket over HTTP/2 (it did not send SETTINGS_ENABLE_CONNECT_PROTOCOL)"
    )]
    NoWebSocket,
}

/// A backend's trailers-only answer to a gRPC call, kept while a retry is decided.
#[derive(Debug)]
pub struct GrpcAnswer {
    /// Its `grpc-status`.
    pub code: u8,
    /// Its `grpc-retry-pushback-ms`, when it sent one.
    pub pushback: Option<crate::proto::grpc::Pushback>,
    /// The response head (the status among its fields).
    pub head: ResponseHead,
    /// The (ended) body, holding the stream's place until it is dropped.
    pub body: ResponseBody,
}

/// Idle connections to one backend.
#[derive(Debug)]
pub struct Pool {
    /// Most recently used last: connections are reused warmest first.
    idle: Mutex<Vec<IdleConnection>>,
    /// The limits, which a reload may change while connections come and go.
    settings: PoolSettings,
    /// Set when the backend left the configuration: no connection is kept any more.
    closed: AtomicBool,
    /// How to reach the backend beyond TCP: TLS, the PROXY header. `None` for a plain backend.
    edge: Option<Box<UpstreamEdge>>,
    /// The HTTP/2 connections of a backend with `protocol: h2c` or `h2`; `None` for HTTP/1.1.
    http2: Option<Box<H2Pool>>,
}

/// A pool's limits, as atomics so that a reload changes them in place.
#[derive(Debug)]
struct PoolSettings {
    max_idle: AtomicUsize,
    idle_timeout_ns: AtomicU64,
    connect_timeout_ns: AtomicU64,
    max_head_bytes: AtomicUsize,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl PoolSettings {
    fn new(upstream: &UpstreamConfig) -> Self {
        Self {
            max_idle: AtomicUsize::new(upstream.pool_max_idle_per_backend),
            idle_timeout_ns: AtomicU64::new(nanos(upstream.pool_idle_timeout)),
            connect_timeout_ns: AtomicU64::new(nanos(upstream.connect_timeout)),
            max_head_bytes: AtomicUsize::new(upstream.max_response_header_bytes),
        }
    }

    fn set(&self, upstream: &UpstreamConfig) {
        self.max_idle
            .store(upstream.pool_max_idle_per_backend, Ordering::Relaxed);
        (self.idle_timeout_ns).store(nanos(upstream.pool_idle_timeout), Ordering::Relaxed);
        (self.connect_timeout_ns).store(nanos(upstream.connect_timeout), Ordering::Relaxed);
        (self.max_head_bytes).store(upstream.max_response_header_bytes, Ordering::Relaxed);
    }

    fn max_idle(&self) -> usize {
        self.max_idle.load(Ordering::Relaxed)
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_nanos(self.idle_timeout_ns.load(Ordering::Relaxed))
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_nanos(self.connect_timeout_ns.load(Ordering::Relaxed))
    }

    fn max_head_bytes(&self) -> usize {
        self.max_head_bytes.load(Ordering::Relaxed)
    }
}

/// TLS and the PROXY protocol towards one backend.
#[derive(Debug)]
struct UpstreamEdge {
    /// The TLS settings, or why they could not be built (every connect then fails: a backend
    /// meant for TLS is never reached in plain text).
    tls: Option<Result<UpstreamTls, Arc<str>>>,
    /// Whether new connections start with a PROXY v2 header.
    proxy_protocol: bool,
    /// The backend's name, for logs.
    name: Arc<String>,
    /// `lb_upstream_tls_errors_total` for this backend.
    errors: Family<UpstreamTlsLabels, Counter>,
}

#[derive(Debug)]
struct IdleConnection {
    connection: Connection,
    since: Instant,
}

impl Pool {
    /// An empty pool for `backend` with the limits of `upstream`; `ping_timeouts` counts its
    /// HTTP/2 connections closed for a PING left unanswered.
    pub fn new(
        upstream: &UpstreamConfig,
        backend: &BackendConfig,
        metrics: &Metrics,
        ping_timeouts: Counter,
    ) -> Self {
        let proxy_protocol = !backend.proxy_protocol.is_off();
        let edge = (backend.tls.is_some() || proxy_protocol).then(|| {
            let tls = backend.tls.as_ref().map(|tls| {
                upstream_tls(tls, backend.address, backend.protocol.is_http2()).map_err(|error| {
                    tracing::error!(backend = %backend.name, %error, "TLS to the backend cannot be set up: its requests fail");
                    Arc::from(error.to_string())
                })
            });
            Box::new(UpstreamEdge {
                tls,
                proxy_protocol,
                name: Arc::new(backend.name.clone()),
                errors: metrics.tls.upstream_errors.clone(),
            })
        });
        Self {
            idle: Mutex::new(Vec::new()),
            settings: PoolSettings::new(upstream),
            closed: AtomicBool::new(false),
            edge,
            http2: (backend.protocol.is_http2())
                .then(|| Box::new(H2Pool::new(upstream, backend.tls.is_some(), ping_timeouts))),
        }
    }

    /// The HTTP/2 connections, when the backend speaks HTTP/2.
    #[inline]
    pub(crate) fn http2(&self) -> Option<&H2Pool> {
        self.http2.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleConnection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the limits of `upstream` from now on; idle connections over the new count close.
    pub fn configure(&self, upstream: &UpstreamConfig) {
        self.settings.set(upstream);
        if let Some(http2) = &self.http2 {
            http2.configure(upstream);
        }
        let mut idle = self.lock();
        let excess = idle.len().saturating_sub(self.settings.max_idle());
        // The coldest go first.
        idle.drain(..excess);
    }

    /// Closes every idle connection and keeps none from now on: the backend left.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.clear();
    }

    /// Closes every idle connection (a drained backend gets no new requests to use them); an
    /// HTTP/2 connection closes once its streams have ended.
    pub fn clear(&self) {
        let idle = std::mem::take(&mut *self.lock());
        drop(idle);
        if let Some(http2) = &self.http2 {
            http2.close();
        }
    }

    /// Takes the most recently used live connection; dead or expired ones are dropped (closed).
    /// `client`: the client a PROXY header would name, when the backend is sent one.
    fn take_idle(&self, now: Instant, client: Option<SocketAddr>) -> Option<Connection> {
        if self.edge.as_ref().is_some_and(|edge| edge.proxy_protocol) {
            return self.take_idle_for(now, client);
        }
        let mut idle = self.lock();
        while let Some(mut idle_connection) = idle.pop() {
            let expired =
                now.saturating_duration_since(idle_connection.since) > self.settings.idle_timeout();
            if !expired && idle_connection.connection.still_open() {
                return Some(idle_connection.connection);
            }
        }
        None
    }

    /// Takes the warmest live connection whose PROXY header named `client`.
    fn take_idle_for(&self, now: Instant, client: Option<SocketAddr>) -> Option<Connection> {
        let mut idle = self.lock();
        let found = idle
            .iter()
            .rposition(|idle| idle.connection.proxied_for.as_deref() == client.as_ref())?;
        let mut idle_connection = idle.remove(found);
        let expired =
            now.saturating_duration_since(idle_connection.since) > self.settings.idle_timeout();
        (!expired && idle_connection.connection.still_open()).then_some(idle_connection.connection)
    }

    /// Closes the idle connections that expired or that the backend closed; returns how many
    /// are left.
    pub fn sweep(&self, now: Instant) -> usize {
        if let Some(http2) = &self.http2 {
            return http2.sweep(now, self.settings.idle_timeout());
        }
        let mut idle = self.lock();
        idle.retain_mut(|idle_connection| {
            now.saturating_duration_since(idle_connection.since) <= self.settings.idle_timeout()
                && idle_connection.connection.still_open()
        });
        idle.len()
    }

    /// Gives a connection back after its response was read to the end.
    pub fn put(&self, connection: Connection, now: Instant) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let max_idle = self.settings.max_idle();
        let mut idle = self.lock();
        if idle.len() < max_idle {
            idle.push(IdleConnection {
                connection,
                since: now,
            });
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        client: Option<&(SocketAddr, SocketAddr)>,
    ) -> Result<Connection, FailureKind> {
        let connected = async {
            let stream = match TcpStream::connect(addr).await {
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(FailureKind::ConnectTimeout);
                }
                Err(_) => return Err(FailureKind::ConnectRefused),
                Ok(stream) => stream,
            };
            let _ = stream.set_nodelay(true);
            match &self.edge {
                None => Ok(Connection::new(UpstreamStream::Plain(stream))),
                Some(edge) => edge.connect(stream, client).await,
            }
        };
        match tokio::time::timeout(self.settings.connect_timeout(), connected).await {
            Err(_elapsed) => {
                if let Some(edge) = self.edge.as_ref().filter(|edge| edge.tls.is_some()) {
                    edge.count("timeout");
                }
                Err(FailureKind::ConnectTimeout)
            }
            Ok(result) => result,
        }
    }

    /// Whether the backend is reached over TLS or sent PROXY headers.
    pub(crate) fn has_edge(&self) -> bool {
        self.edge.is_some()
    }

    /// The name the backend's certificate is verified for, when one is configured.
    pub(crate) fn host_name(&self) -> Option<&str> {
        match self.edge.as_ref()?.tls.as_ref()? {
            Ok(tls) => match &tls.server_name {
                rustls_pki_types::ServerName::DnsName(name) => Some(name.as_ref()),
                _ => None,
            },
            Err(_) => None,
        }
    }

    /// A new connection for a health check: TLS as for requests; a PROXY header says `LOCAL`.
    pub(crate) async fn connect_probe(&self, addr: SocketAddr) -> Result<Connection, FailureKind> {
        self.connect(addr, None).await
    }

    /// Sends a serialised request (`head`, then `body`) on an idle connection when one is alive,
    /// else on a new one, and reads the response head. The response body owns the connection
    /// and hands it back for the pool once read to its end. `expect_body` is false for HEAD;
    /// `idempotent` allows sending again after a reused connection closed without answering.
    pub async fn send(
        &self,
        addr: SocketAddr,
        request: Outgoing<'_>,
        now: Instant,
    ) -> Result<(ResponseHead, ResponseBody), SendFailure> {
        let Outgoing {
            head,
            body,
            expect_body,
            idempotent,
            client,
            upgrade,
        } = request;
        loop {
            let (mut connection, reused) = match self.take_idle(now, client.map(|(c, _)| *c)) {
                Some(connection) => (connection, true),
                // Boxed: connecting is rare with a warm pool, and inline its future would
                // make every request's future larger by its size.
                None => (
                    Box::pin(self.connect(addr, client))
                        .await
                        .map_err(SendFailure::Connect)?,
                    false,
                ),
            };
            let mut written = connection.write_request(head, body).await;
            if written.is_ok() && connection.stream.buffers_writes() {
                // Boxed: only TLS connections take it.
                written = Box::pin(connection.flush_if_buffered()).await;
            }
            match written {
                Ok(()) => {}
                Err(_) if reused => continue,
                Err(error) => return Err(ExchangeError::Write(error).into()),
            }
            match connection
                .read_response(expect_body, self.settings.max_head_bytes(), upgrade)
                .await
            {
                Err(ExchangeError::ClosedWithoutAnswer) if reused && idempotent => continue,
                result => return Ok(result?),
            }
        }
    }

    /// Sends a request whose body streams, on an idle connection when one is alive, else on a
    /// new one; the body is not replayable, so nothing is sent twice.
    #[allow(clippy::too_many_arguments)] // the request's parts, as `send` takes them
    pub async fn send_streaming(
        &self,
        addr: SocketAddr,
        head: &[u8],
        body: UploadBody,
        framing: Framing,
        expect_body: bool,
        now: Instant,
        client: Option<&(SocketAddr, SocketAddr)>,
    ) -> Result<(ResponseHead, ResponseBody), SendFailure> {
        let connection = match self.take_idle(now, client.map(|(c, _)| *c)) {
            Some(connection) => connection,
            None => (self.connect(addr, client).await).map_err(SendFailure::Connect)?,
        };
        Ok(connection
            .exchange_streaming(
                head,
                body,
                framing,
                expect_body,
                self.settings.max_head_bytes(),
            )
            .await?)
    }
}

/// A request serialised for [`Pool::send`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Request line, headers and the blank line.
    pub head: &'a [u8],
    /// The body, empty when there is none.
    pub body: &'a [u8],
    /// False for HEAD, whose response has no body whatever its headers say.
    pub expect_body: bool,
    /// Whether the method is idempotent.
    pub idempotent: bool,
    /// The client and the address it connected to, for a backend sent PROXY headers.
    pub client: Option<&'a (SocketAddr, SocketAddr)>,
    /// The request asks for an upgrade: a `101` answers it, and the connection becomes the
    /// backend end of a tunnel (never pooled again).
    pub upgrade: bool,
}

impl UpstreamEdge {
    /// The PROXY header, then the TLS handshake, on a new connection.
    async fn connect(
        &self,
        mut stream: TcpStream,
        client: Option<&(SocketAddr, SocketAddr)>,
    ) -> Result<Connection, FailureKind> {
        if self.proxy_protocol {
            let mut header = Vec::with_capacity(52);
            crate::proto::proxy_protocol::write_v2(&mut header, client.copied());
            if stream.write_all(&header).await.is_err() {
                return Err(FailureKind::ConnectRefused);
            }
        }
        let stream = match &self.tls {
            None => UpstreamStream::Plain(stream),
            Some(Err(why)) => {
                tracing::warn!(backend = %self.name, error = %why, "no TLS to the backend: request not sent");
                self.count("setup");
                return Err(FailureKind::ConnectRefused);
            }
            Some(Ok(tls)) => {
                let handshake = tls.connector.connect(tls.server_name.clone(), stream);
                match handshake.await {
                    Ok(stream) => UpstreamStream::Tls(Box::new(stream)),
                    Err(error) => {
                        let reason = failure_reason(&error);
                        tracing::warn!(
                            backend = %self.name, reason, %error,
                            "TLS handshake with the backend failed: request not sent"
                        );
                        self.count(reason);
                        return Err(FailureKind::ConnectRefused);
                    }
                }
            }
        };
        let mut connection = Connection::new(stream);
        connection.proxied_for = client
            .filter(|_| self.proxy_protocol)
            .map(|(c, _)| Box::new(*c));
        Ok(connection)
    }

    fn count(&self, reason: &'static str) {
        let labels = UpstreamTlsLabels {
            backend: self.name.clone(),
            reason,
        };
        self.errors.get_or_create(&labels).inc();
    }
}
