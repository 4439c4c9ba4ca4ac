//! The daemon: [`Daemon::start`] binds the listeners (port 0 allowed; the bound addresses are
//! reported), builds the live snapshot and starts the tasks — the listener, the health checker,
//! the pool sweep and the metrics endpoint — and returns at once. [`Daemon::shutdown`] starts
//! the one [`Shutdown`]: the listener stops accepting, requests in flight finish within
//! `server.shutdown_grace`, then the side tasks stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lb_core::config::Config;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock;
use crate::metrics::Metrics;
use crate::runtime::Shared;
use crate::shutdown::Shutdown;

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
    /// An authentication scheme's key file could not be read or parsed.
    #[error("{0}")]
    Auth(String),
}

/// A running balancer.
#[derive(Debug)]
pub struct Daemon {
    /// Where the proxy listens (the bound address, port 0 resolved).
    pub listen_addr: SocketAddr,
    /// Where metrics are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Arc<Shutdown>,
    listener_task: JoinHandle<()>,
    side_tasks: Vec<JoinHandle<()>>,
}

/// Asks a running daemon to shut down, from a signal handler.
#[derive(Debug, Clone)]
pub struct Stopper(Arc<Shutdown>);

impl Stopper {
    /// Starts the daemon's shutdown; [`Daemon::wait`] then returns once it has drained.
    pub fn stop(&self) {
        self.0.start();
    }
}

/// How often idle upstream connections are looked at.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Daemon {
    /// Binds the listeners and starts serving on the current tokio runtime.
    ///
    /// # Errors
    /// A listener could not be bound (the address is in use, or not this machine's).
    pub async fn start(config: Config) -> Result<Daemon, StartError> {
        // Key files are read now, so that a missing one stops the start with its name.
        crate::policy::auth::load_all(&config.auth).map_err(|e| StartError::Auth(e.to_string()))?;
        let config = Arc::new(config);
        let bind = |what, addr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })?;
            let bound =
                listener
                    .local_addr()
                    .map_err(|source| StartError::Bind { what, addr, source })?;
            Ok::<_, StartError>((listener, bound))
        };
        let (listener, listen_addr) = bind("proxy", config.server.listen).await?;
        let metrics_listener = match config.metrics.enabled {
            true => Some(bind("metrics", config.metrics.listen).await?),
            false => None,
        };
        let metrics = Arc::new(Metrics::new());
        let shutdown = Arc::new(Shutdown::default());
        let shared = Arc::new(Shared::new(
            config.clone(),
            metrics.clone(),
            shutdown.clone(),
            clock::now(),
        ));
        let mut side_tasks = Vec::new();
        let metrics_addr = metrics_listener.as_ref().map(|(_, bound)| *bound);
        if let Some((metrics_listener, _)) = metrics_listener {
            side_tasks.push(tokio::spawn(crate::metrics::serve(
                metrics_listener,
                config.metrics.path.clone(),
                metrics.clone(),
                shutdown.clone(),
            )));
        }
        let runtime = shared.runtime.load_full();
        for pool in runtime
            .pools
            .iter()
            .filter(|p| p.config.health_check.enabled)
        {
            side_tasks.extend(crate::upstream::health::spawn_checkers(
                &pool.backends,
                &pool.config.health_check,
                &metrics,
                &shutdown,
            ));
        }
        side_tasks.push(tokio::spawn(sweep_pools(shared.clone())));
        let listener_task = tokio::spawn(crate::listener::accept_loop(listener, shared));
        Ok(Daemon {
            listen_addr,
            metrics_addr,
            shutdown,
            listener_task,
            side_tasks,
        })
    }

    /// Stops accepting, waits for requests in flight up to `server.shutdown_grace`, and stops
    /// the health checker, the pool sweep and the metrics listener.
    pub async fn shutdown(self) {
        self.shutdown.start();
        let _ = self.listener_task.await;
        for task in self.side_tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// A handle that asks the daemon to shut down, for signal handlers.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shutdown.clone())
    }

    /// Waits until shutdown was asked for (through a [`Stopper`]), then drains as
    /// [`Daemon::shutdown`] does.
    pub async fn wait(self) {
        self.shutdown.started().await;
        self.shutdown().await;
    }
}

/// Sweeps every backend's pool once per [`SWEEP_INTERVAL`] until shutdown, and sets
/// `lb_upstream_idle_connections`. A healthy idle connection costs no system call here: only
/// one with a socket event is read.
async fn sweep_pools(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shared.shutdown.started() => return,
        }
        let now = clock::now();
        for backend in &shared.runtime.load().backends {
            let idle = backend.pool.sweep(now);
            backend
                .metrics
                .upstream_idle
                .set(i64::try_from(idle).unwrap_or(i64::MAX));
        }
    }
}
