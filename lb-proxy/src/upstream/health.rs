//! The active health checker: one task per backend probing `health_check.path` on its interval
//! with its timeout. lb-core's tracker applies the thresholds; a flip updates the backend's flag
//! and gauge and writes one log line.
//!
//! [`HealthCheckers`] keeps the tasks by backend name, so that a reload starts a checker for a
//! backend that joins, stops the checker of one that leaves, and restarts them all when the
//! `health_check` section changes, each starting from its backend's current verdict.
//! A plain backend is probed with hyper's pooled client. A backend reached over TLS or sent
//! PROXY headers is probed as requests reach it, through its own pool's connect (the same TLS
//! settings, a v2 `LOCAL` header), one connection per probe: a certificate the balancer would
//! refuse for requests fails the probe too. A backend that speaks HTTP/2 (`h2c`, `h2`) is
//! probed in HTTP/2 the same way, one connection per probe: an HTTP/2-only backend answers no
//! HTTP/1.1 probe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lb_core::config::HealthCheckConfig;
use lb_core::health::{HealthStatus, HealthTracker, ProbeOutcome, probe_verdict};
use tokio::task::JoinHandle;

use crate::shutdown::Shutdown;
use crate::upstream::backend::Backend;

type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

/// The checker tasks, by backend name.
#[derive(Debug)]
pub(crate) struct HealthCheckers {
    /// The settings, when checks are enabled.
    config: Option<(HealthCheckConfig, ProbeClient)>,
    tasks: HashMap<String, JoinHandle<()>>,
    shutdown: Arc<Shutdown>,
}

impl HealthCheckers {
    /// Checkers under `config` for `backends` (none when checks are disabled). The first probes
    /// are spread over one interval so a large fleet is not probed in a burst.
    pub(crate) fn start(
        config: &HealthCheckConfig,
        backends: &[Arc<Backend>],
        shutdown: &Arc<Shutdown>,
    ) -> Self {
        let mut checkers = Self {
            config: None,
            tasks: HashMap::new(),
            shutdown: shutdown.clone(),
        };
        checkers.reconfigure(config, backends);
        checkers
    }

    /// Takes a new `health_check` section: every checker restarts under it from its backend's
    /// current verdict; with checks disabled, every backend is healthy.
    pub(crate) fn reconfigure(&mut self, config: &HealthCheckConfig, backends: &[Arc<Backend>]) {
        self.stop_all();
        if !config.enabled {
            self.config = None;
            for backend in backends {
                backend.set_health(HealthStatus::Healthy);
            }
            return;
        }
        self.config = Some((config.clone(), probe_client(config)));
        let count = backends.len().max(1) as u32;
        for (position, backend) in backends.iter().enumerate() {
            let offset = config.interval / count * position as u32;
            self.spawn(backend, offset);
        }
    }

    /// Starts checking a backend that joined; its first probe is one interval away at most.
    pub(crate) fn add(&mut self, backend: &Arc<Backend>) {
        self.spawn(backend, Duration::ZERO);
    }

    /// Stops checking the backend named `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        if let Some(task) = self.tasks.remove(name) {
            task.abort();
        }
    }

    /// Stops every checker.
    pub(crate) fn stop_all(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.abort();
        }
    }

    fn spawn(&mut self, backend: &Arc<Backend>, offset: Duration) {
        let Some((config, client)) = &self.config else {
            return;
        };
        let task = tokio::spawn(check_loop(
            backend.clone(),
            config.clone(),
            client.clone(),
            offset,
            self.shutdown.clone(),
        ));
        if let Some(old) = self.tasks.insert(backend.name().to_owned(), task) {
            old.abort();
        }
    }
}

/// The checkers of every pool, by pool name: each pool checks its backends under its own
/// `health_check`.
#[derive(Debug)]
pub(crate) struct PoolCheckers {
    pools: HashMap<String, HealthCheckers>,
    shutdown: Arc<Shutdown>,
}

impl PoolCheckers {
    /// Checkers for every pool of `pools` (name, settings, backends).
    pub(crate) fn start<'a>(
        pools: impl Iterator<Item = (&'a str, &'a HealthCheckConfig, &'a [Arc<Backend>])>,
        shutdown: &Arc<Shutdown>,
    ) -> Self {
        let mut checkers = Self {
            pools: HashMap::new(),
            shutdown: shutdown.clone(),
        };
        for (name, config, backends) in pools {
            checkers.add_pool(name, config, backends);
        }
        checkers
    }

    /// Starts checking a pool that joined.
    pub(crate) fn add_pool(
        &mut self,
        name: &str,
        config: &HealthCheckConfig,
        backends: &[Arc<Backend>],
    ) {
        let checkers = HealthCheckers::start(config, backends, &self.shutdown);
        self.pools.insert(name.to_owned(), checkers);
    }

    /// Stops checking a pool that left.
    pub(crate) fn remove_pool(&mut self, name: &str) {
        self.pools.remove(name);
    }

    /// A pool's checkers, when it has any.
    pub(crate) fn pool(&mut self, name: &str) -> Option<&mut HealthCheckers> {
        self.pools.get_mut(name)
    }

    /// Stops every checker.
    pub(crate) fn stop_all(&mut self) {
        for checkers in self.pools.values_mut() {
            checkers.stop_all();
        }
    }
}

impl Drop for HealthCheckers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn probe_client(config: &HealthCheckConfig) -> ProbeClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.timeout));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(1)
        .build(connector)
}

async fn check_loop(
    backend: Arc<Backend>,
    config: HealthCheckConfig,
    client: ProbeClient,
    offset: Duration,
    shutdown: Arc<Shutdown>,
) {
    // A restarted checker goes on from the verdict it found.
    let mut tracker = HealthTracker::new(config.policy, backend.health());
    let uri: http::Uri = match format!("http://{}{}", backend.authority, config.path).parse() {
        Ok(uri) => uri,
        Err(error) => {
            tracing::error!(backend = %backend.name(), %error, "health check path is not a valid URI");
            return;
        }
    };
    let [success, failure] = &backend.metrics.health_checks;
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + offset, config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.started() => return,
        }
        let outcome = match (backend.pool.http2(), backend.pool.has_edge()) {
            (Some(_), _) => Box::pin(probe_http2(&backend, &config.path, config.timeout)).await,
            (None, false) => probe(&client, &uri, &backend, config.timeout).await,
            (None, true) => Box::pin(probe_own(&backend, &config.path, config.timeout)).await,
        };
        let healthy = probe_verdict(&outcome, &config.expected_status);
        if healthy {
            success.inc()
        } else {
            failure.inc()
        };
        if let Some(transition) = tracker.record(healthy) {
            backend.set_health(transition.to);
            match transition.to {
                HealthStatus::Unhealthy => tracing::warn!(
                    backend = %backend.name(), address = %backend.addr, last_probe = ?outcome,
                    "backend is DOWN: taken out of rotation"
                ),
                HealthStatus::Healthy => tracing::info!(
                    backend = %backend.name(), address = %backend.addr, "backend is UP: back in rotation"
                ),
            }
        }
    }
}

async fn probe(
    client: &ProbeClient,
    uri: &http::Uri,
    backend: &Backend,
    timeout: Duration,
) -> ProbeOutcome {
    let request = Request::get(uri.clone())
        .header(header::HOST, backend.authority.as_str())
        .header(header::USER_AGENT, "lb-health-check")
        .body(Empty::new());
    let Ok(request) = request else {
        return ProbeOutcome::Other;
    };
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        // Read the (small) body so the pooled connection can be reused.
        let _ = response.into_body().collect().await;
        Ok::<u16, hyper_util::client::legacy::Error>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => ProbeOutcome::Status(status),
        Ok(Err(error)) if error.is_connect() => ProbeOutcome::ConnectError,
        Ok(Err(_)) => ProbeOutcome::Other,
        Err(_) => ProbeOutcome::Timeout,
    }
}

/// A probe of a backend that speaks HTTP/2, over a connection of its own.
async fn probe_http2(backend: &Backend, path: &str, timeout: Duration) -> ProbeOutcome {
    let Some(http2) = backend.pool.http2() else {
        return ProbeOutcome::Other;
    };
    let authority = (backend.pool.host_name()).unwrap_or(backend.authority.as_str());
    let exchange = http2.probe(&backend.pool, backend.addr, authority, path);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => ProbeOutcome::Status(status),
        Ok(Err(crate::upstream::h2::ProbeFailure::Connect)) => ProbeOutcome::ConnectError,
        Ok(Err(crate::upstream::h2::ProbeFailure::Other)) => ProbeOutcome::Other,
        Err(_) => ProbeOutcome::Timeout,
    }
}

/// A probe over the backend's own connect (TLS, PROXY header), with our HTTP/1.1 client.
async fn probe_own(backend: &Backend, path: &str, timeout: Duration) -> ProbeOutcome {
    let host = backend
        .pool
        .host_name()
        .unwrap_or(backend.authority.as_str());
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-health-check\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        let Ok(mut connection) = backend.pool.connect_probe(backend.addr).await else {
            return ProbeOutcome::ConnectError;
        };
        let written = connection.write_request(head.as_bytes(), b"").await;
        if written.is_err() || connection.flush_if_buffered().await.is_err() {
            return ProbeOutcome::Other;
        }
        match connection.read_response(true, 64 * 1024, false).await {
            Ok((head, body)) => {
                // Read the (small) body, as a probe of hyper's client does.
                let _ = body.collect().await;
                ProbeOutcome::Status(head.status.as_u16())
            }
            Err(_) => ProbeOutcome::Other,
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(ProbeOutcome::Timeout)
}
