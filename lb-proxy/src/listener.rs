//! The accept loop: a connection is accepted only while fewer than
//! `server.max_client_connections` are open (beyond that, connections wait in the kernel's
//! backlog), and handed to its driver ([`crate::conn`]) with its permit. On shutdown the
//! listener closes and open connections get `server.shutdown_grace` to finish.

use std::sync::Arc;
use std::task::Poll;

use lb_core::config::Config;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::conn::{Drivers, ListenerKind};
use crate::runtime::Shared;

/// Accepts connections until shutdown, then drains. `kind`: plain, HTTPS, or the redirect to
/// HTTPS; each listener has its own `server.max_client_connections`.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, kind: ListenerKind) {
    let config = shared.runtime.load().config.clone();
    let server = &config.server;
    let limit = Arc::new(Semaphore::new(server.max_client_connections));
    let drivers = Drivers::new(&config, kind);

    // The shutdown notification is polled once, to register this task; afterwards the flag is
    // read, which needs no lock (polling the notification again would take one per accept).
    let mut stop = std::pin::pin!(shared.shutdown.started());
    let stopping = std::future::poll_fn(|cx| Poll::Ready(stop.as_mut().poll(cx).is_ready())).await;
    let stop_now = || shared.shutdown.is_started();
    if !stopping {
        loop {
            // Waiting for a permit before accepting leaves excess connections in the kernel's
            // backlog instead of admitting more than the limit.
            let permit = match limit.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(tokio::sync::TryAcquireError::Closed) => break,
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    let mut acquire = std::pin::pin!(limit.clone().acquire_owned());
                    let acquired = std::future::poll_fn(|cx| {
                        if stop_now() {
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
                if stop_now() {
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
            drivers.spawn(stream, peer, shared.clone(), permit);
        }
    }
    drain(listener, &shared, &limit, drivers, &config).await;
}

/// Stops accepting and lets open connections finish within `server.shutdown_grace`.
async fn drain(
    listener: TcpListener,
    shared: &Shared,
    limit: &Semaphore,
    drivers: Drivers,
    config: &Config,
) {
    drop(listener);
    let grace = config.server.shutdown_grace;
    let total = config.server.max_client_connections;
    tracing::info!(
        in_flight_connections = total - limit.available_permits(),
        grace_ms = grace.as_millis() as u64,
        "draining"
    );
    debug_assert!(shared.shutdown.is_started());
    let drained = async {
        drivers.shutdown().await;
        // Every connection holds a permit until it is closed.
        let _ = limit
            .acquire_many(u32::try_from(total).unwrap_or(u32::MAX))
            .await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("shutdown grace expired with connections still open");
    }
}
