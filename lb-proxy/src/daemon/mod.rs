//! The daemon: [`Daemon::start`] binds the listeners (port 0 allowed; the bound addresses are
//! reported) or takes them over from a previous process, builds the live snapshot and starts
//! the tasks — the accept loop, the health checkers, the pool sweep, the metrics endpoint, the
//! admin API, the file watcher — and returns at once. [`Reloader`] applies a new configuration
//! to the running daemon ([`control`]). [`Daemon::shutdown`] starts the one [`Shutdown`]: the
//! listeners stop accepting, requests in flight finish within `server.shutdown_grace`, then the
//! side tasks stop.
//!
//! # Layout
//! - [`source`]: where the configuration is read from, again on every reload.
//! - [`control`]: the live state and the one path every change takes (reload, admin).
//! - [`endpoints`]: the listeners a reload may move — proxy, metrics, admin.
//! - [`admin`]: the admin API.
//! - [`watch`]: reloading when the file changes.
//! - [`takeover`]: handing the listening sockets to a new process.

mod admin;
mod control;
mod discovered;
mod endpoints;
mod reload;
mod source;
mod takeover;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lb_core::config::Config;
use tokio::task::JoinHandle;

use crate::clock;
use crate::shutdown::Shutdown;
use crate::tls::TlsError;
use control::{Control, Live};
pub use control::{ReloadError, ReloadReport};
pub use source::{ConfigSource, LoadError};
pub use takeover::{Handoff, Inherited, Takeover, TakeoverError, UpgradeSocket};

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
    /// The admin API's token could not be read.
    #[error("admin token: {0}")]
    Token(String),
    /// A certificate, key or CA file cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// An authentication scheme's key file could not be read or parsed.
    #[error("{0}")]
    Auth(String),
    /// A discovery source's files (etcd's TLS files or password file) cannot be used.
    #[error("discovery: {0}")]
    Discovery(String),
    /// Tracing's exporter cannot start.
    #[error(transparent)]
    Tracing(#[from] crate::trace::TracingError),
    /// The access log's target could not be opened.
    #[error("access log {target}: {source}")]
    AccessLog {
        /// The target, as the configuration names it.
        target: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// How the daemon starts, besides its configuration.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// Where the configuration was read from: reloads read it again there. Without one, only
    /// [`Reloader::apply`] changes the configuration.
    pub source: Option<ConfigSource>,
    /// Listening sockets taken over from a previous process.
    pub inherited: Inherited,
    /// Serves HTTP/1 on `server.h2c` listeners with hyper's HTTP/1 server instead of the
    /// balancer's own loop: the reference that loop is compared against
    /// (`tests/it/differential.rs`). Not for production: hyper's path costs more per request
    /// and gives back no buffers while a connection is idle.
    #[doc(hidden)]
    pub http1_reference: bool,
}

/// A running balancer.
#[derive(Debug)]
pub struct Daemon {
    /// Where the proxy listens (the bound address, port 0 resolved) as the daemon started.
    pub listen_addr: SocketAddr,
    /// Where metrics are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the admin API is served, when enabled.
    pub admin_addr: Option<SocketAddr>,
    /// Where the redirect to HTTPS listens, when `server.http_redirect` is set.
    pub redirect_addr: Option<SocketAddr>,
    control: Arc<Control>,
    shutdown: Arc<Shutdown>,
    sweep: JoinHandle<()>,
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

/// Applies configuration changes to a running daemon, from a signal handler or a test.
#[derive(Debug, Clone)]
pub struct Reloader(Arc<Control>);

impl Reloader {
    /// Reads the configuration source again and applies what changed. An invalid file, or a
    /// listener that cannot be bound, changes nothing.
    ///
    /// # Errors
    /// The daemon has no source, the file is unreadable or invalid, or a new listener could
    /// not be bound.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.0.reload().await
    }

    /// Applies `config` as if it had been read from the source.
    ///
    /// # Errors
    /// A new listener could not be bound, or the admin token could not be read.
    pub async fn apply(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        // Boxed: it holds a whole configuration, and a reload is rare.
        Box::pin(self.0.apply(config)).await
    }

    /// Reopens the access log's file (after logrotate renamed it): the next line goes to a
    /// new file at the configured path. Nothing happens for other targets.
    pub fn reopen_logs(&self) {
        if let Some(log) = self.0.shared.access_log.current() {
            log.reopen();
        }
    }
}

/// How long a shutdown waits for the access log's last lines to be written (a stalled syslog
/// socket or a full disk must not hold the exit).
const ACCESS_LOG_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Logs what `lb-cli check` warns of in a configuration (settings valid but likely wrong), as
/// HAProxy and nginx warn at start: an operator who starts the daemon without checking still
/// hears. Logged once it serves, so that a start that fails says only why.
pub(crate) fn log_warnings(warnings: Vec<lb_core::config::ConfigWarning>) {
    for warning in warnings {
        tracing::warn!("configuration: {warning} (lb-cli check shows where)");
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
        Box::pin(Self::start_with(config, StartOptions::default())).await
    }

    /// Starts serving with `options`: a source to reload from, sockets taken over.
    ///
    /// # Errors
    /// A listener could not be bound, or the admin token could not be read.
    pub async fn start_with(config: Config, options: StartOptions) -> Result<Daemon, StartError> {
        let shutdown = Arc::new(Shutdown::default());
        // The warnings are about the operator's file: the demo's and a test's have none.
        let warnings = match options.source {
            Some(_) => lb_core::config::warnings(&config),
            None => Vec::new(),
        };
        // Boxed: the start runs once, and its future is large.
        let control = Arc::new(Box::pin(Control::start(config, options, shutdown.clone())).await?);
        let addresses = control.install().await;
        log_warnings(warnings);
        let sweep = tokio::spawn(sweep_pools(control.clone()));
        Ok(Daemon {
            listen_addr: addresses.listen,
            metrics_addr: addresses.metrics,
            admin_addr: addresses.admin,
            redirect_addr: addresses.redirect,
            control,
            shutdown,
            sweep,
        })
    }

    /// Stops accepting, waits for requests in flight up to `server.shutdown_grace`, stops
    /// the health checkers, the pool sweep and the side listeners, and waits (up to
    /// 5 s) until the access log has written its last lines.
    pub async fn shutdown(self) {
        self.shutdown.start();
        self.control.drain().await;
        // The spans of the last requests are sent, within the exporter's timeout.
        let shared = &self.control.shared;
        let bound = shared.runtime.load().config.tracing.export_timeout;
        shared.tracing.stop(bound).await;
        self.sweep.abort();
        let _ = self.sweep.await;
        if let Some(log) = self.control.shared.access_log.current()
            && !log.flush(ACCESS_LOG_FLUSH_LIMIT).await
        {
            tracing::warn!(
                "the access log's target took longer than {ACCESS_LOG_FLUSH_LIMIT:?}: \
                 lines still buffered are lost"
            );
        }
    }

    /// Reads the TLS certificates, keys and ticket keys again, swapping in each one that changed
    /// and can be served (see docs/tls.md); returns how many were refused (the old ones keep
    /// serving). Nothing happens without `server.tls`. A reload does this too.
    pub fn reload_certificates(&self) -> usize {
        (self.control.tls.as_ref()).map_or(0, |tls| tls.reload_files())
    }

    /// A handle that asks the daemon to shut down, for signal handlers.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shutdown.clone())
    }

    /// A handle that reloads the daemon's configuration.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.control.clone())
    }

    /// Offers this daemon's listening sockets on `socket` to a process that takes over; once
    /// that process serves, this daemon shuts down (a [`Stopper`] would).
    pub fn offer_takeover(&self, socket: UpgradeSocket) -> JoinHandle<()> {
        let control = self.control.clone();
        tokio::spawn(takeover::offer(socket, control, self.shutdown.clone()))
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
async fn sweep_pools(control: Arc<Control>) {
    let shared = &control.shared;
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

/// The addresses the daemon's listeners are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The proxy.
    pub listen: SocketAddr,
    /// The metrics endpoint, when enabled.
    pub metrics: Option<SocketAddr>,
    /// The admin API, when enabled.
    pub admin: Option<SocketAddr>,
    /// The redirect to HTTPS, when set.
    pub redirect: Option<SocketAddr>,
}

impl Live {
    fn addresses(&self) -> Addresses {
        Addresses {
            listen: self.proxy.addr,
            metrics: self.metrics.as_ref().map(|endpoint| endpoint.addr),
            admin: self.admin.as_ref().map(|endpoint| endpoint.addr),
            redirect: self.redirect.as_ref().map(|accept| accept.addr),
        }
    }
}
