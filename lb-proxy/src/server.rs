//! The daemon's listeners and lifecycle: the proxy listener with its connection limit and
//! timeouts, the metrics listener, the health checker, and graceful shutdown.
//!
//! [`Daemon::start`] binds everything (port 0 allowed, the bound addresses are reported) and
//! returns at once; [`Daemon::shutdown`] stops accepting, lets in-flight requests finish within
//! `server.shutdown_grace`, then returns.
//!
//! Each HTTP/1 client connection is driven by `serve_http1`: our own loop ([`h1`]) serves every
//! request over the codec. When the connection has been quiet between requests for
//! `server.idle_release_after`, the loop's buffers are dropped and the socket waits, holding no
//! buffer, for the client's next bytes. With `server.h2c` on, connections go to hyper-util's
//! auto server instead (HTTP/1 and HTTP/2 with prior knowledge), and the codec's rules are
//! applied to the heads hyper parsed.

mod exchange;
mod feed;
mod h1;
mod respond;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use lb_core::config::{Config, MIN_MAX_HEADER_BYTES};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::body::ToClient;
use crate::client::ClientInfo;
use crate::forward::{handle_hyper, limits};
use crate::metrics::Metrics;
use crate::proto::h1::request::Limits;
use crate::runtime::{RuntimeError, Shared};
use crate::timed_io::{Http1Timers, TimedIo};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration could not be turned into a runtime.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A running balancer.
#[derive(Debug)]
pub struct Daemon {
    /// Where the proxy listens (the bound address, port 0 resolved).
    pub listen_addr: SocketAddr,
    /// Where metrics are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The shared state (snapshot, metrics, client).
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    proxy_task: JoinHandle<()>,
    side_tasks: Vec<JoinHandle<()>>,
}

impl Daemon {
    /// Binds the listeners and starts serving on the current tokio runtime.
    pub async fn start(config: Config) -> Result<Daemon, StartError> {
        let config = Arc::new(config);
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                what: "proxy",
                addr: config.server.listen,
                source,
            })?;
        let metrics_listener = if config.metrics.enabled {
            Some(
                TcpListener::bind(config.metrics.listen)
                    .await
                    .map_err(|source| StartError::Bind {
                        what: "metrics",
                        addr: config.metrics.listen,
                        source,
                    })?,
            )
        } else {
            None
        };
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(Shared::new(
            config.clone(),
            metrics.clone(),
            Instant::now(),
        )?);
        let (stop, stopped) = watch::channel(false);
        let listen_addr = listener.local_addr().map_err(|source| StartError::Bind {
            what: "proxy",
            addr: config.server.listen,
            source,
        })?;
        let mut side_tasks = Vec::new();
        let mut metrics_addr = None;
        if let Some(metrics_listener) = metrics_listener {
            metrics_addr = metrics_listener.local_addr().ok();
            side_tasks.push(tokio::spawn(crate::metrics::serve(
                metrics_listener,
                config.metrics.path.clone(),
                metrics.clone(),
                stopped.clone(),
            )));
        }
        if config.health_check.enabled {
            let runtime = shared.runtime.load_full();
            side_tasks.extend(crate::health::spawn_checkers(
                &runtime,
                &metrics,
                stopped.clone(),
            ));
        }
        side_tasks.push(tokio::spawn(crate::upstream::sweep_pools(
            shared.clone(),
            stopped.clone(),
        )));
        let proxy_task = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(Daemon {
            listen_addr,
            metrics_addr,
            shared,
            stop,
            proxy_task,
            side_tasks,
        })
    }

    /// Stops accepting, waits for in-flight requests up to `server.shutdown_grace`, and stops
    /// the health checker and metrics listener.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.proxy_task.await;
        for task in self.side_tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// A handle that asks the daemon to shut down, for signal handlers.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Waits until shutdown was asked for and the proxy has drained.
    pub async fn wait(self) {
        let mut stopped = self.stop.subscribe();
        stop_requested(&mut stopped).await;
        self.shutdown().await;
    }
}

/// Resolves once shutdown was asked for (or the daemon is gone).
pub async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await of the caller.
    let _ = stopped.wait_for(|stop| *stop).await.map(|_| ());
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let config = shared.runtime.load().config.clone();
    let server = &config.server;
    let limit = Arc::new(Semaphore::new(server.max_client_connections));
    let graceful = GracefulShutdown::new();
    // h2c needs the auto builder's protocol sniff; HTTP/1 alone is served by our own loop.
    let auto = server.h2c.then(|| {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(server.header_read_timeout)
            .max_buf_size(server.max_header_bytes.max(MIN_MAX_HEADER_BYTES))
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(None);
        builder
    });
    let idle_timeout = server.idle_timeout;
    let timers = Http1Timers {
        header_read_timeout: server.header_read_timeout,
        release_after: server.idle_release_after,
    };
    let limits = limits(server);

    // The stop future is polled once to register this task, and afterwards only when the
    // channel's version says it changed: polling it takes a lock, once per accept otherwise.
    let watcher = stopped.clone();
    let mut stop = std::pin::pin!(stop_requested(&mut stopped));
    let mut stop_now = |cx: &mut std::task::Context<'_>, first: bool| {
        (first || watcher.has_changed().unwrap_or(true)) && stop.as_mut().poll(cx).is_ready()
    };
    if std::future::poll_fn(|cx| Poll::Ready(stop_now(cx, true))).await {
        return drain(listener, &shared, &limit, graceful, &config).await;
    }

    loop {
        // Waiting for a permit before accepting leaves excess connections in the kernel's
        // backlog instead of admitting more than the limit.
        let permit = match limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => break,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let mut acquire = std::pin::pin!(limit.clone().acquire_owned());
                let acquired = std::future::poll_fn(|cx| {
                    if stop_now(cx, false) {
                        return Poll::Ready(None);
                    }
                    acquire.as_mut().poll(cx).map(Some)
                })
                .await;
                match acquired {
                    Some(Ok(permit)) => permit,
                    Some(Err(_)) | None => break,
                }
            }
        };
        let accepted = std::future::poll_fn(|cx| {
            if stop_now(cx, false) {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let (stream, peer) = match accepted {
            None => break,
            Some(Ok(pair)) => pair,
            Some(Err(error)) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        shared.metrics.client_connections.inc();
        shared.metrics.client_connections_accepted.inc();
        let client = Arc::new(ClientInfo::new(peer, &server.trusted_proxies));
        let shared = shared.clone();
        match &auto {
            None => {
                let io = TimedIo::new(stream, idle_timeout, Some(timers));
                tokio::spawn(serve_http1(io, client, shared, limits, permit));
            }
            Some(auto) => {
                let _ = stream.set_nodelay(true);
                let service = ProxyService {
                    shared: shared.clone(),
                    client,
                };
                let io = TokioIo::new(TimedIo::new(stream, idle_timeout, None));
                let connection = graceful.watch(auto.serve_connection(io, service).into_owned());
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, error = %error, "client connection ended with an error");
                    }
                    shared.metrics.client_connections.dec();
                    drop(permit);
                });
            }
        }
    }
    drain(listener, &shared, &limit, graceful, &config).await;
}

/// Stops accepting and lets open connections finish within `server.shutdown_grace`.
async fn drain(
    listener: TcpListener,
    shared: &Shared,
    limit: &Semaphore,
    graceful: GracefulShutdown,
    config: &Config,
) {
    drop(listener);
    shared.draining.start();
    let grace = config.server.shutdown_grace;
    let total = config.server.max_client_connections;
    tracing::info!(
        in_flight_connections = total - limit.available_permits(),
        grace_ms = grace.as_millis() as u64,
        "draining"
    );
    let drained = async {
        graceful.shutdown().await;
        // Every connection holds a permit until it is closed.
        let _ = limit
            .acquire_many(u32::try_from(total).unwrap_or(u32::MAX))
            .await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("shutdown grace expired with connections still open");
    }
}

/// The proxy as a hyper service (h2c): one per client connection.
#[derive(Clone)]
struct ProxyService {
    shared: Arc<Shared>,
    client: Arc<ClientInfo>,
}

type ProxyFuture = Pin<Box<dyn Future<Output = Result<Response<ToClient>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for ProxyService {
    type Response = Response<ToClient>;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn call(&self, request: Request<Incoming>) -> ProxyFuture {
        let shared = self.shared.clone();
        let client = self.client.clone();
        Box::pin(async move {
            let head_request = request.method() == Method::HEAD;
            let reply = handle_hyper(&shared, &client, request).await;
            Ok(reply.into_response(head_request))
        })
    }
}

/// Serves HTTP/1 on one client connection until it closes. When it has been quiet between
/// requests for the release delay, its buffers are freed and the socket waits, holding no
/// buffer, for the client's next bytes.
///
/// This is the connection's task: everything it needs is moved in, and it returns an `async
/// move` block rather than being an `async fn`, so that the task holds each part once
/// (docs/performance.md, item 23).
#[allow(clippy::manual_async_fn)] // see above
fn serve_http1(
    mut io: TimedIo<TcpStream>,
    client: Arc<ClientInfo>,
    shared: Arc<Shared>,
    limits: Limits,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let _open = OpenConnection {
            metrics: &shared.metrics,
            _permit: permit,
        };
        let shared = &*shared;
        let mut resumed = false;
        loop {
            match h1::serve(&mut io, shared, &client, &limits, resumed).await {
                h1::Served::Closed => return,
                h1::Served::Release => resumed = true,
            }
            let idle_gauge = &shared.metrics.client_connections_idle;
            idle_gauge.inc();
            let mut stop = std::pin::pin!(shared.draining.started());
            let resume = std::future::poll_fn(|cx| {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(false));
                }
                io.poll_parked(cx)
            })
            .await;
            idle_gauge.dec();
            match resume {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }
}

/// A client connection's place: counted in `lb_client_connections` and holding its permit
/// under `server.max_client_connections` until dropped, however its task ends.
struct OpenConnection<'a> {
    metrics: &'a Metrics,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.metrics.client_connections.dec();
    }
}
