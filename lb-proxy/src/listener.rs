//! The accept loops: a connection is accepted only while fewer than
//! `server.max_client_connections` are open (beyond that, connections wait in the kernel's
//! backlog), and handed to its driver ([`crate::conn`]) with its permit.
//!
//! A loop stops accepting on shutdown, or alone when a reload moved `server.listen` (the new
//! address is bound and served before the old one closes); the connections it accepted live on
//! until they close or the daemon shuts down. The permits are shared by every loop and resized
//! when a reload changes the limit. Every connection task is tracked, so that shutdown can wait
//! for them within `server.shutdown_grace`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use lb_core::config::Config;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::conn::{Drivers, ListenerKind};
use crate::runtime::Shared;
use crate::shutdown::Shutdown;

/// `server.max_client_connections`, shared by every accept loop.
#[derive(Debug)]
pub(crate) struct ConnectionLimit {
    permits: Arc<Semaphore>,
    total: Mutex<usize>,
}

impl ConnectionLimit {
    /// A limit of `total` open connections.
    pub(crate) fn new(total: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total: Mutex::new(total),
        }
    }

    /// Changes the limit. Lowered below what is open, connections are not cut: new ones wait
    /// until enough have closed.
    pub(crate) fn resize(&self, total: usize) {
        let mut current = self.total.lock().unwrap_or_else(|p| p.into_inner());
        if total >= *current {
            self.permits.add_permits(total - *current);
        } else {
            let shrink = *current - total;
            let missing = shrink - self.permits.forget_permits(shrink);
            if missing > 0 {
                // Taken back as connections close.
                let permits = self.permits.clone();
                let missing = u32::try_from(missing).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(taken) = permits.acquire_many_owned(missing).await {
                        taken.forget();
                    }
                });
            }
        }
        *current = total;
    }
}

/// A running accept loop.
#[derive(Debug)]
pub(crate) struct AcceptLoop {
    /// The address it accepts on.
    pub(crate) addr: SocketAddr,
    /// The socket, shared with the loop: handed to a process that takes over.
    pub(crate) listener: Arc<TcpListener>,
    stop: Arc<Shutdown>,
    task: JoinHandle<()>,
}

impl AcceptLoop {
    /// Starts accepting on `listener`, serving connections as a listener of `kind` (plain,
    /// HTTPS, or the redirect to HTTPS).
    pub(crate) fn start(
        listener: Arc<TcpListener>,
        addr: SocketAddr,
        kind: ListenerKind,
        shared: &Arc<Shared>,
        limit: &Arc<ConnectionLimit>,
        tracker: &TaskTracker,
    ) -> Self {
        let stop = Arc::new(Shutdown::default());
        let task = tokio::spawn(accept_loop(
            listener.clone(),
            kind,
            shared.clone(),
            limit.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        Self {
            addr,
            listener,
            stop,
            task,
        }
    }

    /// Stops accepting; the loop's task ends once its connections were asked to close at
    /// shutdown. Returns the task, for shutdown to wait on.
    pub(crate) fn retire(self) -> JoinHandle<()> {
        self.stop.start();
        self.task
    }
}

/// Accepts connections until this loop or the daemon stops.
async fn accept_loop(
    listener: Arc<TcpListener>,
    kind: ListenerKind,
    shared: Arc<Shared>,
    limit: Arc<ConnectionLimit>,
    stop: Arc<Shutdown>,
    tracker: TaskTracker,
) {
    let mut config: Arc<Config> = shared.runtime.load().config.clone();
    let mut drivers = Drivers::new(&config, kind.clone(), &tracker);

    // The stop notifications are polled once, to register this task; afterwards the flags are
    // read, which needs no lock (polling a notification again would take one per accept).
    let mut stopped = std::pin::pin!(shared.shutdown.started());
    let mut retired = std::pin::pin!(stop.started());
    let stopping = std::future::poll_fn(|cx| {
        let stopped = stopped.as_mut().poll(cx).is_ready();
        Poll::Ready(retired.as_mut().poll(cx).is_ready() || stopped)
    })
    .await;
    let stop_now = || shared.shutdown.is_started() || stop.is_started();
    if !stopping {
        while let Some(permit) = permit(&limit, &stop_now).await {
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
            let live = shared.runtime.load();
            if !Arc::ptr_eq(&live.config, &config) {
                // A reload: connections from now on take the new settings; those open keep
                // theirs, and read the shutdown flag themselves.
                if Drivers::differ(&live.config, &config) {
                    drivers = Drivers::new(&live.config, kind.clone(), &tracker);
                }
                config = live.config.clone();
            }
            drop(live);
            shared.metrics.client_connections.inc();
            shared.metrics.client_connections_accepted.inc();
            drivers.spawn(stream, peer, shared.clone(), permit);
        }
    }
    drop(listener);
    // A loop retired by a reload leaves its connections open; they close at shutdown.
    shared.shutdown.started().await;
}

/// Waits for a connection permit; `None` once the loop stops. Waiting for a permit before
/// accepting leaves excess connections in the kernel's backlog instead of admitting more than
/// the limit.
async fn permit(
    limit: &ConnectionLimit,
    stop_now: &impl Fn() -> bool,
) -> Option<OwnedSemaphorePermit> {
    match limit.permits.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(tokio::sync::TryAcquireError::Closed) => None,
        Err(tokio::sync::TryAcquireError::NoPermits) => {
            let mut acquire = std::pin::pin!(limit.permits.clone().acquire_owned());
            std::future::poll_fn(|cx| {
                if stop_now() {
                    return Poll::Ready(None);
                }
                acquire.as_mut().poll(cx).map(Result::ok)
            })
            .await
        }
    }
}
