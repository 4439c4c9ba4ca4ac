//! The active health checker: one task per backend probing `health_check.path` on its interval
//! with its timeout. lb-core's tracker applies the thresholds; a flip updates the backend's flag
//! and gauge and writes one log line.
//!
//! A plain backend is probed with hyper's pooled client. A backend reached over TLS or sent
//! PROXY headers is probed as requests reach it, through its own pool's connect (the same TLS
//! settings, a v2 `LOCAL` header), one connection per probe: a certificate the balancer would
//! refuse for requests fails the probe too.

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

use crate::metrics::{HealthCheckLabels, Metrics};
use crate::shutdown::Shutdown;
use crate::upstream::backend::Backend;

type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

/// Starts one checker task per backend of `runtime`; they stop when `stopped` turns true.
pub(crate) fn spawn_checkers(
    backends: &[Arc<Backend>],
    config: &HealthCheckConfig,
    metrics: &Arc<Metrics>,
    shutdown: &Arc<Shutdown>,
) -> Vec<JoinHandle<()>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.timeout));
    let client: ProbeClient = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(1)
        .build(connector);
    let count = backends.len().max(1) as u32;
    backends
        .iter()
        .enumerate()
        .map(|(position, backend)| {
            // Spread the first probes over one interval so a large fleet is not probed in a burst.
            let offset = config.interval / count * position as u32;
            tokio::spawn(check_loop(
                backend.clone(),
                config.clone(),
                client.clone(),
                metrics.clone(),
                offset,
                shutdown.clone(),
            ))
        })
        .collect()
}

async fn check_loop(
    backend: Arc<Backend>,
    config: HealthCheckConfig,
    client: ProbeClient,
    metrics: Arc<Metrics>,
    offset: Duration,
    shutdown: Arc<Shutdown>,
) {
    let policy = config.policy;
    let mut tracker = HealthTracker::new(policy, HealthStatus::Healthy);
    let uri: http::Uri = match format!("http://{}{}", backend.authority, config.path).parse() {
        Ok(uri) => uri,
        Err(error) => {
            tracing::error!(backend = %backend.name(), %error, "health check path is not a valid URI");
            return;
        }
    };
    let labels_ok = HealthCheckLabels {
        backend: backend.metrics.name.clone(),
        result: "success",
    };
    let labels_fail = HealthCheckLabels {
        backend: backend.metrics.name.clone(),
        result: "failure",
    };
    let success = metrics.health_checks.get_or_create_owned(&labels_ok);
    let failure = metrics.health_checks.get_or_create_owned(&labels_fail);

    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + offset, config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.started() => return,
        }
        let outcome = match backend.pool.has_edge() {
            false => probe(&client, &uri, &backend, config.timeout).await,
            true => Box::pin(probe_own(&backend, &config.path, config.timeout)).await,
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
        match connection.read_response(true, 64 * 1024).await {
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
