//! One client connection: its timers ([`timed_io`]), and its driver — our own HTTP/1.1 loop
//! over the codec ([`h1`]), or hyper's server when `server.h2c` is on ([`hyper`]).
//!
//! An HTTP/1 connection is served by its own task ([`serve_http1`]). When it has been quiet
//! between requests for `server.idle_release_after`, the loop's buffers are dropped and the
//! socket waits, holding no buffer, for the client's next bytes.

pub(crate) mod h1;
pub(crate) mod hyper;
pub(crate) mod timed_io;

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use lb_core::config::ServerConfig;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::proto::h1::request::Limits;
use crate::proxy::{ClientInfo, limits};
use crate::runtime::Shared;
use timed_io::{Http1Timers, TimedIo};

/// The connection drivers of one listener, set up from its configuration (again when a reload
/// changes `server`).
pub(crate) struct Drivers {
    /// Every connection task, so that shutdown can wait for them.
    tracker: TaskTracker,
    idle_timeout: Duration,
    timers: Http1Timers,
    limits: Limits,
    /// hyper's server, when `server.h2c` is on.
    hyper: Option<hyper::HyperDriver>,
}

impl Drivers {
    /// The drivers for `server`'s settings; connection tasks are spawned on `tracker`.
    pub(crate) fn new(server: &ServerConfig, tracker: &TaskTracker) -> Self {
        Self {
            tracker: tracker.clone(),
            idle_timeout: server.idle_timeout,
            timers: Http1Timers {
                header_read_timeout: server.header_read_timeout,
                release_after: server.idle_release_after,
            },
            limits: limits(server),
            hyper: server.h2c.then(|| hyper::HyperDriver::new(server)),
        }
    }

    /// Serves an accepted connection on a task of its own, which holds `permit` until the
    /// connection closes.
    pub(crate) fn spawn(
        &self,
        stream: TcpStream,
        client: Arc<ClientInfo>,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
    ) {
        match &self.hyper {
            None => {
                let io = TimedIo::new(stream, self.idle_timeout, Some(self.timers));
                let task = serve_http1(io, client, shared, self.limits, permit);
                self.tracker.spawn(task);
            }
            Some(hyper) => {
                let connection = hyper.serve(stream, self.idle_timeout, client, shared, permit);
                self.tracker.spawn(connection);
            }
        }
    }

    /// Asks hyper's connections to finish their requests in flight and close; ours read the
    /// shutdown flag themselves.
    pub(crate) async fn shutdown(self) {
        if let Some(hyper) = self.hyper {
            hyper.shutdown().await;
        }
    }
}

/// Serves HTTP/1 on one client connection until it closes. When it has been quiet between
/// requests for the release delay, its buffers are freed and the socket waits, holding no
/// buffer, for the client's next bytes.
///
/// This is the connection's task: it takes everything by value and returns an `async move`
/// block, so that the task holds each part once (docs/performance.md, item 23).
#[allow(clippy::manual_async_fn)] // see above
fn serve_http1(
    mut io: TimedIo<TcpStream>,
    client: Arc<ClientInfo>,
    shared: Arc<Shared>,
    limits: Limits,
    permit: OwnedSemaphorePermit,
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
            let mut stop = std::pin::pin!(shared.shutdown.started());
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
pub(crate) struct OpenConnection<'a> {
    metrics: &'a Metrics,
    _permit: OwnedSemaphorePermit,
}

impl<'a> OpenConnection<'a> {
    /// The place of a connection whose task holds `permit`.
    pub(crate) fn new(metrics: &'a Metrics, permit: OwnedSemaphorePermit) -> Self {
        Self {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.metrics.client_connections.dec();
    }
}
