//! The live state of a running daemon and the one door every change goes through: a reload (a
//! signal, the admin API, the file watcher) and the admin API's runtime changes (drain, weight,
//! breaker reset) all take the same lock, so changes apply one at a time, in order.
//!
//! What a reload does is in [`super::endpoints`] (listeners) and [`super::reload`]: the diff of
//! the live configuration and the new one (`lb_core::config::diff`) applied in one exhaustive
//! `match`, then one new snapshot swapped in.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use lb_core::config::{AdminConfig, BackendConfig, Config, TokenSource};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::discovered::Sources;
use super::endpoints::{self, Endpoint, Prebound};
use super::reload::Origin;
use super::source::{ConfigSource, LoadError};
use super::watch::Watcher;
use super::{Addresses, StartError, StartOptions};
use crate::access_log::AccessLog;
use crate::clock;
use crate::listener::{AcceptLoop, ConnectionLimit};
use crate::metrics::Metrics;
use crate::runtime::Shared;
use crate::shutdown::Shutdown;
use crate::tls::{ServerTls, TlsError};
use crate::trace::{Tracer, TracingError};
use crate::upstream::backend::Backend;
use crate::upstream::health::PoolCheckers;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Each change applied, named (`backend b3 added`, `retry`, ...); empty when the file
    /// changed nothing.
    pub changes: Vec<String>,
    /// Changes that take effect only on a restart, with why; everything else applied.
    pub needs_restart: Vec<String>,
    /// Anything else an operator should know (runtime overrides the file cleared).
    pub notes: Vec<String>,
    /// Where the listeners are now.
    pub addresses: Addresses,
    /// The hash of the configuration now live (`lb_config_info{hash}`).
    pub hash: String,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The daemon was started from a configuration in memory, not a file.
    #[error("this daemon has no configuration file to reload")]
    NoSource,
    /// The file is unreadable or invalid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A new listener address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The admin API's token could not be read.
    #[error("admin token: {0}")]
    Token(String),
    /// A certificate, key or CA file of the new configuration cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// An authentication scheme's key file could not be read or parsed.
    #[error("{0}")]
    Auth(String),
    /// A discovery source's files (etcd's TLS files or password file) cannot be used.
    #[error("discovery: {0}")]
    Discovery(String),
    /// The new access log's target could not be opened.
    #[error("access log {target}: {source}")]
    AccessLog {
        /// The target, as the configuration names it.
        target: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The new `tracing` section's exporter cannot start.
    #[error(transparent)]
    Tracing(#[from] TracingError),
}

/// The running daemon's tasks, changed only under [`Control`]'s lock.
#[derive(Debug)]
pub(crate) struct Live {
    /// The proxy's accept loop.
    pub(crate) proxy: AcceptLoop,
    /// The redirect to HTTPS's accept loop, when `server.http_redirect` is set.
    pub(crate) redirect: Option<AcceptLoop>,
    /// Accept loops of addresses a reload moved away from: their connections live on.
    pub(crate) retired: Vec<JoinHandle<()>>,
    /// The metrics endpoint.
    pub(crate) metrics: Option<Endpoint>,
    /// The admin API.
    pub(crate) admin: Option<Endpoint>,
    /// One checker per backend, by pool.
    pub(crate) health: PoolCheckers,
    /// The configuration file's watcher, when `reload.watch` is on.
    pub(crate) watcher: Option<Watcher>,
    /// The certificates' watcher, when `server.tls.watch` is on.
    pub(crate) tls_watch: Option<JoinHandle<()>>,
    /// The discovery sources of the pools that have one, and the sets they gave.
    pub(crate) sources: Sources,
}

/// The daemon's control: the shared state, and the live tasks behind one lock.
#[derive(Debug)]
pub(crate) struct Control {
    /// What every connection shares.
    pub(crate) shared: Arc<Shared>,
    /// Where reloads read the configuration.
    pub(crate) source: Option<ConfigSource>,
    /// The admin API's bearer token, when one is configured.
    pub(crate) token: ArcSwapOption<String>,
    /// The TLS terminator of the proxy listener, when `server.tls` is set.
    pub(crate) tls: Option<Arc<ServerTls>>,
    pub(crate) limit: Arc<ConnectionLimit>,
    pub(crate) tracker: TaskTracker,
    live: Mutex<Option<Live>>,
    prebound: std::sync::Mutex<Option<Prebound>>,
    /// [`StartOptions::http1_reference`].
    pub(crate) http1_reference: bool,
}

impl Control {
    /// Binds (or takes over) the listeners and builds the first snapshot; nothing runs yet.
    pub(crate) async fn start(
        config: Config,
        options: StartOptions,
        shutdown: Arc<Shutdown>,
    ) -> Result<Control, StartError> {
        let token = read_token(&config.admin).map_err(StartError::Token)?;
        let pools = config.pool_list();
        check_upstream_tls(pools.iter().flat_map(|pool| pool.backends.iter()))?;
        for pool in &pools {
            crate::discovery::check(pool).map_err(StartError::Discovery)?;
        }
        // Key files are read now, so that a missing one stops the start with its name.
        crate::policy::auth::load_all(&config.auth).map_err(|e| StartError::Auth(e.to_string()))?;
        let prebound = endpoints::bind_at_start(&config, options.inherited).await?;
        let metrics = Arc::new(Metrics::new());
        let tls = match &config.server.tls {
            Some(settings) => Some(Arc::new(ServerTls::new(settings, metrics.clone())?)),
            None => None,
        };
        let config = Arc::new(config);
        metrics.config.loaded(config_hash(&config), unix_now());
        let limit = Arc::new(ConnectionLimit::new(config.server.max_client_connections));
        let access_log = open_access_log(&config.access_log, &metrics)
            .map_err(|(target, source)| StartError::AccessLog { target, source })?;
        let tracer = match config.tracing.enabled {
            false => None,
            true => Some(Tracer::start(&config.tracing, metrics.tracing.clone())?),
        };
        let shared = Arc::new(Shared::new(config, metrics, shutdown, clock::now()));
        shared.access_log.replace(access_log);
        shared.tracing.set(tracer);
        Ok(Control {
            shared,
            source: options.source,
            token: ArcSwapOption::new(token.map(Arc::new)),
            tls,
            limit,
            tracker: TaskTracker::new(),
            live: Mutex::new(None),
            prebound: std::sync::Mutex::new(Some(prebound)),
            http1_reference: options.http1_reference,
        })
    }

    /// Starts the tasks: accept loop, endpoints, health checkers, watcher.
    pub(crate) async fn install(self: &Arc<Self>) -> Addresses {
        let prebound = self
            .prebound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let prebound = prebound.expect("installed once, after start");
        let runtime = self.shared.runtime.load_full();
        let config = &runtime.config;
        let proxy = endpoints::proxy(prebound.proxy, self);
        let redirect = prebound.redirect.zip(config.server.http_redirect.as_ref());
        let redirect = redirect.map(|(bound, settings)| {
            endpoints::redirect_on((Arc::new(bound.listener), bound.addr), settings, self)
        });
        let metrics = prebound
            .metrics
            .map(|bound| endpoints::metrics(bound, config, self));
        let admin = prebound.admin.map(|bound| endpoints::admin(bound, self));
        let pools = (runtime.pools.iter()).map(|pool| {
            (
                pool.config.name.as_str(),
                &pool.config.health_check,
                &pool.backends[..],
            )
        });
        let health = PoolCheckers::start(pools, &self.shared.shutdown);
        let watcher = self.watcher(config);
        let live = Live {
            proxy,
            redirect,
            retired: Vec::new(),
            metrics,
            admin,
            health,
            watcher,
            tls_watch: self.tls_watch(),
            sources: Sources::default(),
        };
        let addresses = live.addresses();
        let pools = config.pool_list();
        let mut guard = self.live.lock().await;
        let live = guard.insert(live);
        live.sources.sync(self, &pools);
        addresses
    }

    /// Watches the certificates' files when `server.tls.watch` is on.
    pub(super) fn tls_watch(&self) -> Option<JoinHandle<()>> {
        let tls = self.tls.as_ref().filter(|tls| tls.settings().watch)?;
        crate::tls::watch::spawn(tls.clone(), self.shared.shutdown.clone())
    }

    pub(super) fn watcher(self: &Arc<Self>, config: &Config) -> Option<Watcher> {
        let source = self.source.as_ref().filter(|_| config.reload.watch)?;
        Watcher::start(&source.path, config.reload.debounce, Arc::downgrade(self))
    }

    /// Reads the source again and applies it.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<ReloadReport, ReloadError> {
        let Some(source) = &self.source else {
            return Err(ReloadError::NoSource);
        };
        let loaded = source.load();
        let config = match loaded {
            Ok(config) => config,
            Err(error) => {
                self.shared.metrics.config.count_reload(false);
                tracing::error!("reload refused, the running configuration stays: {error}");
                return Err(error.into());
            }
        };
        Box::pin(self.apply(config)).await
    }

    /// Applies `config`: all of it, or nothing when a listener cannot be bound.
    pub(crate) async fn apply(
        self: &Arc<Self>,
        config: Config,
    ) -> Result<ReloadReport, ReloadError> {
        let mut live = self.live.lock().await;
        let Some(live) = live.as_mut() else {
            return Err(ReloadError::NoSource);
        };
        // A pool whose backends come from a source keeps the set it has: the file lists none.
        let config = live.sources.keep_discovered(config);
        // Boxed: a configuration is large, and reloads are rare.
        let result = Box::pin(super::reload::apply(self, live, config, Origin::File)).await;
        let metrics = &self.shared.metrics.config;
        metrics.count_reload(result.is_ok());
        match &result {
            Ok(report) => {
                metrics.loaded(report.hash.clone(), unix_now());
                tracing::info!(
                    changes = ?report.changes, needs_restart = ?report.needs_restart,
                    notes = ?report.notes, hash = %report.hash, "configuration reloaded"
                );
                super::log_warnings(lb_core::config::warnings(
                    &self.shared.runtime.load().config,
                ));
            }
            Err(error) => {
                tracing::error!("reload refused, the running configuration stays: {error}");
            }
        }
        result
    }

    /// Applies a discovery source's answer: `set` becomes `pool`'s backends, through the same
    /// diff as a reload (see `super::discovered`). A set that cannot be applied (a name taken by
    /// another pool's backend, a backend's TLS files) is refused, counted and logged, and the
    /// pool keeps its backends.
    pub(crate) async fn apply_discovered(
        self: &Arc<Self>,
        pool: &str,
        kind: &'static str,
        set: Vec<BackendConfig>,
    ) {
        let mut live = self.live.lock().await;
        let Some(live) = live.as_mut() else {
            return;
        };
        let metrics = &self.shared.metrics.discovery;
        let current = self.shared.runtime.load_full();
        let merged = match lb_core::discovery::merge(&current.config, pool, set.clone()) {
            Ok(merged) => merged,
            Err(error) => {
                metrics.count(kind, "refused");
                tracing::warn!(pool, %error, "discovered backends refused: the pool keeps its backends");
                return;
            }
        };
        if lb_core::config::diff(&current.config, &merged).is_empty() {
            metrics.count(kind, "unchanged");
            live.sources.record(self, pool, set);
            return;
        }
        let applied = Box::pin(super::reload::apply(self, live, merged, Origin::Discovery)).await;
        match applied {
            Ok(report) => {
                metrics.count(kind, "applied");
                self.shared.metrics.config.named(report.hash.clone());
                live.sources.record(self, pool, set);
                tracing::info!(pool, changes = ?report.changes, "discovered backends applied");
            }
            Err(error) => {
                metrics.count(kind, "refused");
                tracing::warn!(pool, %error, "discovered backends refused: the pool keeps its backends");
            }
        }
    }

    /// Runs `change` on the live backends under the lock, then builds a new snapshot of the
    /// same configuration (a weight changed the selector).
    pub(crate) async fn with_backend<T>(
        &self,
        name: &str,
        resnapshot: bool,
        change: impl FnOnce(&Arc<Backend>) -> T,
    ) -> Option<T> {
        let _live = self.live.lock().await;
        let runtime = self.shared.runtime.load_full();
        let backend = runtime.backend(name)?;
        let result = change(backend);
        if resnapshot {
            let snapshot = runtime.rebuilt(&self.shared.metrics);
            self.shared.runtime.store(Arc::new(snapshot));
        }
        Some(result)
    }

    /// Copies of the listening sockets, by role, for a process that takes over.
    pub(crate) async fn listening_sockets(&self) -> Vec<(&'static str, OwnedFd)> {
        let live = self.live.lock().await;
        let Some(live) = live.as_ref() else {
            return Vec::new();
        };
        let endpoint = |endpoint: &Option<Endpoint>| endpoint.as_ref().map(|e| e.listener.clone());
        let listeners = [
            ("proxy", Some(live.proxy.listener.clone())),
            (
                "redirect",
                live.redirect.as_ref().map(|r| r.listener.clone()),
            ),
            ("metrics", endpoint(&live.metrics)),
            ("admin", endpoint(&live.admin)),
        ];
        let mut sockets = Vec::new();
        for (role, listener) in listeners {
            let Some(listener) = listener else { continue };
            match listener.as_fd().try_clone_to_owned() {
                Ok(fd) => sockets.push((role, fd)),
                Err(error) => {
                    tracing::warn!(listener = role, %error, "cannot hand the socket over")
                }
            }
        }
        sockets
    }

    /// Stops everything: accepting stops, connections get `server.shutdown_grace` to finish.
    pub(crate) async fn drain(&self) {
        let Some(live) = self.live.lock().await.take() else {
            return;
        };
        let grace = self.shared.runtime.load().config.server.shutdown_grace;
        tracing::info!(
            open_connections = self.shared.metrics.client_connections.get(),
            grace_ms = grace.as_millis() as u64,
            "draining"
        );
        let Live {
            proxy,
            redirect,
            retired,
            metrics,
            admin,
            mut health,
            watcher,
            tls_watch,
            mut sources,
        } = live;
        drop(watcher);
        sources.stop_all();
        if let Some(tls_watch) = tls_watch {
            tls_watch.abort();
        }
        health.stop_all();
        let endpoints: Vec<_> = [metrics, admin]
            .into_iter()
            .flatten()
            .map(Endpoint::stop)
            .collect();
        let loops: Vec<_> = (retired.into_iter())
            .chain([proxy.retire()])
            .chain(redirect.map(AcceptLoop::retire))
            .collect();
        let drained = async {
            for task in loops {
                let _ = task.await;
            }
            self.tracker.close();
            self.tracker.wait().await;
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!("shutdown grace expired with connections still open");
        }
        for task in endpoints {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Builds the TLS settings of each backend reached over TLS, so that a CA or client
/// certificate that cannot be used refuses the start or the reload rather than every request.
pub(super) fn check_upstream_tls<'a>(
    backends: impl Iterator<Item = &'a BackendConfig>,
) -> Result<(), TlsError> {
    for backend in backends {
        if let Some(tls) = &backend.tls {
            crate::tls::client::upstream_tls(tls, backend.address, backend.protocol.is_http2())?;
        }
    }
    Ok(())
}

/// Reads the admin API's token from its file or environment variable.
pub(super) fn read_token(admin: &AdminConfig) -> Result<Option<String>, String> {
    let token = match (&admin.token, admin.enabled) {
        (_, false) | (None, _) => return Ok(None),
        (Some(TokenSource::File(path)), true) => std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read token_file {path}: {error}"))?,
        (Some(TokenSource::Env(name)), true) => std::env::var(name)
            .map_err(|_| format!("environment variable {name} (token_env) is not set"))?,
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("the token is empty".to_owned());
    }
    Ok(Some(token.to_owned()))
}

/// A short hash naming a configuration: of its effective settings, so two files that differ
/// only in layout or comments share it.
pub(crate) fn config_hash(config: &Config) -> String {
    let json = serde_json::to_vec(config).unwrap_or_default();
    format!("{:016x}", lb_core::balance::hash::fnv1a64(&json))
}

pub(super) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Opens `config`'s access log and starts its writer; `None` when the log is off.
///
/// # Errors
/// The target, described for a message, and why it cannot be opened.
pub(super) fn open_access_log(
    config: &lb_core::config::AccessLogConfig,
    metrics: &Metrics,
) -> Result<Option<Arc<AccessLog>>, (String, std::io::Error)> {
    if !config.enabled {
        return Ok(None);
    }
    let log = AccessLog::start(config, metrics.access_log.clone())
        .map_err(|source| (describe_target(&config.target), source))?;
    Ok(Some(Arc::new(log)))
}

/// The access log's target as a line of text, for errors.
fn describe_target(target: &lb_core::config::AccessLogTarget) -> String {
    use lb_core::config::{AccessLogTarget, SyslogDestination};
    match target {
        AccessLogTarget::Stdout => "stdout".to_owned(),
        AccessLogTarget::Stderr => "stderr".to_owned(),
        AccessLogTarget::File(path) => path.display().to_string(),
        AccessLogTarget::Syslog(syslog) => match &syslog.destination {
            SyslogDestination::Socket(path) => format!("syslog {}", path.display()),
            SyslogDestination::Address(address) => format!("syslog udp {address}"),
        },
    }
}
