//! The client side: a pool of HTTP/1.1 connections per backend, and the exchange on them.
//!
//! Every exchange is our own HTTP/1.1 code over the codec ([`h1`]), run by the request's own
//! task: the head is serialised once per request, so a retry resends the same bytes, and the
//! response is read with no second task and no channel per connection (docs/performance.md,
//! item 14). A body known before the first attempt (none, or buffered for a retry) is written
//! with the head; a body that streams (large or chunked uploads) is written as it arrives while
//! the response head is read ([`upload`]).
//!
//! Each backend owns its pool: a checkout is a `Vec::pop` under that backend's own mutex, and a
//! connection goes back when its response body was read to the end (see
//! [`crate::proxy::body::Completion`]). An idle connection the backend closed is noticed at checkout
//! from the socket's readiness, without a system call while it is healthy. The close can still
//! race the checkout; then a request that a reused connection could not even be written to is
//! written again on another connection (the backend never saw a whole request), and so is an
//! idempotent request that a reused connection closed without a single byte of answer (the
//! backend closed it while idle, as Go's client also assumes). Neither counts as a retry. A
//! connection whose response was not read to the end is never reused. Once a second
//! (the daemon's sweep), idle connections the backend closed or that outlived
//! `upstream.pool_idle_timeout` are closed, so none lingers in `CLOSE_WAIT` while traffic is
//! quiet.

pub(crate) mod backend;
pub(crate) mod body;
pub(crate) mod connection;
pub(crate) mod h1;
pub(crate) mod health;
pub(crate) mod queue;
pub(crate) mod slow_start;
mod upload;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lb_core::config::UpstreamConfig;
use lb_core::retry::FailureKind;
use tokio::net::TcpStream;

use crate::proto::h1::framing::Framing;
use crate::proto::h1::response::ResponseHead;
pub use body::ResponseBody;
pub use connection::{Connection, ExchangeError};
pub use upload::UploadBody;

/// A body error of any kind: what a streamed upload's body may fail with, and what hyper's
/// server takes from a response body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an exchange with a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    /// No connection could be made: nothing was sent.
    #[error("connect failed: {}", .0.label())]
    Connect(FailureKind),
    /// The request may have been sent; the exchange then failed.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

/// Idle connections to one backend.
#[derive(Debug)]
pub struct Pool {
    /// Most recently used last: connections are reused warmest first.
    idle: Mutex<Vec<IdleConnection>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    max_head_bytes: usize,
}

#[derive(Debug)]
struct IdleConnection {
    connection: Connection,
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
            max_head_bytes: upstream.max_response_header_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleConnection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the most recently used live connection; dead or expired ones are dropped (closed).
    fn take_idle(&self, now: Instant) -> Option<Connection> {
        let mut idle = self.lock();
        while let Some(idle_connection) = idle.pop() {
            let expired = now.saturating_duration_since(idle_connection.since) > self.idle_timeout;
            if !expired && idle_connection.connection.still_open() {
                return Some(idle_connection.connection);
            }
        }
        None
    }

    /// Closes the idle connections that expired or that the backend closed; returns how many
    /// are left.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut idle = self.lock();
        idle.retain(|idle_connection| {
            now.saturating_duration_since(idle_connection.since) <= self.idle_timeout
                && idle_connection.connection.still_open()
        });
        idle.len()
    }

    /// Gives a connection back after its response was read to the end.
    pub fn put(&self, connection: Connection, now: Instant) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(IdleConnection {
                connection,
                since: now,
            });
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<TcpStream, FailureKind> {
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
        Ok(stream)
    }

    /// Sends a serialised request (`head`, then `body`) on an idle connection when one is alive,
    /// else on a new one, and reads the response head. The response body owns the connection
    /// and hands it back for the pool once read to its end. `expect_body` is false for HEAD;
    /// `idempotent` allows sending again after a reused connection closed without answering.
    pub async fn send(
        &self,
        addr: SocketAddr,
        request: Outgoing<'_>,
        now: Instant,
    ) -> Result<(ResponseHead, ResponseBody), SendFailure> {
        let Outgoing {
            head,
            body,
            expect_body,
            idempotent,
        } = request;
        loop {
            let (mut connection, reused) = match self.take_idle(now) {
                Some(connection) => (connection, true),
                // Boxed: connecting is rare with a warm pool, and inline its future would
                // make every request's future larger by its size.
                None => (
                    Connection::new(
                        Box::pin(self.connect(addr))
                            .await
                            .map_err(SendFailure::Connect)?,
                    ),
                    false,
                ),
            };
            match connection.write_request(head, body).await {
                Ok(()) => {}
                Err(_) if reused => continue,
                Err(error) => return Err(ExchangeError::Write(error).into()),
            }
            match connection
                .read_response(expect_body, self.max_head_bytes)
                .await
            {
                Err(ExchangeError::ClosedWithoutAnswer) if reused && idempotent => continue,
                result => return Ok(result?),
            }
        }
    }

    /// Sends a request whose body streams, on an idle connection when one is alive, else on a
    /// new one; the body is not replayable, so nothing is sent twice.
    pub async fn send_streaming(
        &self,
        addr: SocketAddr,
        head: &[u8],
        body: UploadBody,
        framing: Framing,
        expect_body: bool,
        now: Instant,
    ) -> Result<(ResponseHead, ResponseBody), SendFailure> {
        let connection = match self.take_idle(now) {
            Some(connection) => connection,
            None => Connection::new(self.connect(addr).await.map_err(SendFailure::Connect)?),
        };
        Ok(connection
            .exchange_streaming(head, body, framing, expect_body, self.max_head_bytes)
            .await?)
    }
}

/// A request serialised for [`Pool::send`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Request line, headers and the blank line.
    pub head: &'a [u8],
    /// The body, empty when there is none.
    pub body: &'a [u8],
    /// False for HEAD, whose response has no body whatever its headers say.
    pub expect_body: bool,
    /// Whether the method is idempotent.
    pub idempotent: bool,
}
