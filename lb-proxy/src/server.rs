//! The daemon's listeners and lifecycle: the proxy listener with its connection limit and
//! timeouts, the metrics listener, the health checker, and graceful shutdown.
//!
//! [`Daemon::start`] binds everything (port 0 allowed, the bound addresses are reported) and
//! returns at once; [`Daemon::shutdown`] stops accepting, lets in-flight requests finish within
//! `server.shutdown_grace`, then returns.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use lb_core::config::{Config, MIN_MAX_HEADER_BYTES};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::forward::{ClientInfo, handle};
use crate::idle::IdleTimeoutIo;
use crate::metrics::Metrics;
use crate::runtime::{RuntimeError, Shared};

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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        // A head that does not fit the read buffer is answered 431 by hyper.
        .max_buf_size(server.max_header_bytes.max(MIN_MAX_HEADER_BYTES))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(None);
    // Without h2c the auto builder serves HTTP/1 directly, skipping its protocol sniff.
    let builder = Arc::new(if server.h2c {
        builder
    } else {
        builder.http1_only()
    });
    let idle_timeout = server.idle_timeout;

    loop {
        // Waiting for a permit before accepting leaves excess connections in the kernel's
        // backlog instead of admitting more than the limit.
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = crate::server::stop_requested(&mut stopped) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = crate::server::stop_requested(&mut stopped) => break,
        };
        let _ = stream.set_nodelay(true);
        shared.metrics.client_connections.inc();
        shared.metrics.client_connections_accepted.inc();
        let client = Arc::new(ClientInfo::new(peer, &server.trusted_proxies));
        let service_shared = shared.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let shared = service_shared.clone();
            let client = client.clone();
            async move { Ok::<_, Infallible>(handle(&shared, &client, request).await) }
        });
        let io = TokioIo::new(IdleTimeoutIo::new(stream, idle_timeout));
        let connection = graceful.watch(builder.serve_connection(io, service).into_owned());
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %error, "client connection ended with an error");
            }
            shared.metrics.client_connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    let grace = config.server.shutdown_grace;
    tracing::info!(
        in_flight_connections = graceful.count(),
        grace_ms = grace.as_millis() as u64,
        "draining"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace expired with connections still open");
    }
}
