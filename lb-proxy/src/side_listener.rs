//! The small HTTP endpoints beside the proxy — metrics and the admin API — each on a listener of
//! its own, served by hyper until a stop signal.
//!
//! The listener is shared (`Arc`) so that the daemon can restart an endpoint with new settings
//! on the same socket, and bind a new address before the old one closes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// A response of a side endpoint: small, whole.
pub(crate) type SideResponse = Response<Full<Bytes>>;

/// How long a client of a side endpoint may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once per endpoint: a scraper and a few operators need a handful, and a
/// flood of connections (before any token is checked) must not take every descriptor. Beyond
/// it, connections wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// Serves `handle` on every connection `listener` accepts until `stop` starts. Connections
/// already open finish on their own tasks.
pub(crate) async fn serve<H, F>(
    listener: Arc<TcpListener>,
    stop: Arc<Shutdown>,
    what: &'static str,
    handle: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = SideResponse> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.started() => return,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.started() => return,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = handle(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
