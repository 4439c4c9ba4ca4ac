//! The pooled HTTP/1.1 client to one backend: idle keep-alive connections in a per-backend list.
//!
//! hyper-util's legacy client was the first version of this. Its per-request work — a pool
//! keyed by a hashed `(scheme, authority)` behind one mutex, a checkout future raced against a
//! connect future, and a task per request to return the connection — was a fifth of the
//! balancer's instructions per request under callgrind. Here each backend owns its pool, a
//! checkout is a `Vec::pop` under that backend's own mutex, and a connection goes back to the
//! pool when the response body has been read to its end (see [`crate::body::Completion`]).
//!
//! A request that a stale pooled connection could not even begin to send (the backend had closed
//! it while idle) is sent again on another connection: the backend never saw it, so this is not
//! a retry. A connection whose response was not read to the end is never reused.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use lb_core::config::UpstreamConfig;
use lb_core::retry::FailureKind;
use tokio::net::TcpStream;

use crate::body::UpstreamBody;

/// The sending half of one upstream connection.
pub type Sender = SendRequest<UpstreamBody>;

/// Why an exchange with a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    /// No connection could be made: nothing was sent.
    #[error("connect failed: {}", .0.label())]
    Connect(FailureKind),
    /// The request may have been sent; the exchange then failed.
    #[error(transparent)]
    Exchange(hyper::Error),
}

/// Idle connections to one backend.
#[derive(Debug)]
pub struct Pool {
    /// Most recently used last: connections are reused warmest first.
    idle: Mutex<Vec<IdleConnection>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

#[derive(Debug)]
struct IdleConnection {
    sender: Sender,
    since: Instant,
}

impl Pool {
    /// An empty pool with the limits of `upstream`.
    pub fn new(upstream: &UpstreamConfig) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle: upstream.pool_max_idle_per_backend,
            idle_timeout: upstream.pool_idle_timeout,
            connect_timeout: upstream.connect_timeout,
        }
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleConnection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the most recently used live connection; dead or expired ones are dropped (closed).
    fn take_idle(&self, now: Instant) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some(connection) = idle.pop() {
            let expired = now.saturating_duration_since(connection.since) > self.idle_timeout;
            if !expired && !connection.sender.is_closed() {
                return Some(connection.sender);
            }
        }
        None
    }

    /// Gives a connection back after its response was read to the end.
    pub fn put(&self, sender: Sender, now: Instant) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(IdleConnection { sender, since: now });
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Sender, FailureKind> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Err(_elapsed) => return Err(FailureKind::ConnectTimeout),
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(FailureKind::ConnectTimeout);
                }
                Ok(Err(_)) => return Err(FailureKind::ConnectRefused),
                Ok(Ok(stream)) => stream,
            };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| FailureKind::ConnectRefused)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%addr, %error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `request` to `addr` on an idle connection when one is alive, else on a new one.
    /// Returns the response head and the connection, which goes back to the pool once the
    /// response body has been read to its end.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut request: Request<UpstreamBody>,
        now: Instant,
    ) -> Result<(Response<Incoming>, Sender), SendFailure> {
        loop {
            let (mut sender, reused) = match self.take_idle(now) {
                Some(sender) => (sender, true),
                None => (
                    self.connect(addr).await.map_err(SendFailure::Connect)?,
                    false,
                ),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(SendFailure::Connect(FailureKind::ConnectRefused));
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendFailure::Exchange(error.into_error())),
                },
            }
        }
    }
}
