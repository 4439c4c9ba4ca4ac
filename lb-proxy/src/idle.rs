//! Idle client connections: the idle timeout, and the moment an idle HTTP/1 connection may give
//! back its buffers.
//!
//! [`IdleTimeoutIo`] fails a connection on which no byte has moved, in either direction, for
//! `server.idle_timeout`. Activity only sets a flag; the timer is armed when an operation would
//! block and re-armed lazily when it fires, so a busy connection pays no timer work per read.
//!
//! For HTTP/1 connections the same timer enforces `server.header_read_timeout`: from the first
//! byte of a request head (or from the accept, for the first request) to the moment the request
//! is dispatched. hyper's own header timer would allocate, register and cancel a timer for every
//! request.
//!
//! When the timer finds the connection quiet for `server.idle_release_after` with nothing
//! in flight ([`Activity`]), it asks the connection's driver to release it: the driver stops
//! hyper's connection (freeing its 8 KiB read and write buffers) and waits for the socket to
//! become readable with [`IdleTimeoutIo::poll_parked`]. Bytes hyper had read but not parsed come
//! back as a prefix that is served before the socket's own.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::forward::ClientInfo;

/// What is in flight on one client connection, shared by its IO, its requests and its driver.
#[derive(Debug, Default)]
pub struct Activity {
    /// Responses not yet fully sent plus request bodies not yet fully received.
    busy: AtomicUsize,
    /// Set by the idle timer: the connection has been quiet long enough to be released.
    release_wanted: AtomicBool,
    /// A request has completed since the connection was opened or resumed. Until then hyper
    /// is not between requests, and asking it to stop would cost the client its keep-alive.
    served: AtomicBool,
    /// Request heads dispatched so far (wrapping): a change ends the head being timed.
    heads: AtomicU32,
}

impl Activity {
    /// Whether nothing is in flight.
    fn is_quiet(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
    }

    /// Takes the idle timer's request to release the connection.
    pub fn take_release_wanted(&self) -> bool {
        self.release_wanted.swap(false, Ordering::Relaxed)
    }

    /// Notes that the connection is served by a new hyper connection, which has not yet
    /// completed a request.
    pub fn resumed(&self) {
        self.served.store(false, Ordering::Relaxed);
        self.release_wanted.store(false, Ordering::Relaxed);
    }

    /// Whether the connection is between requests as far as its requests can tell: nothing in
    /// flight, and a request completed on the current hyper connection.
    pub fn may_release(&self) -> bool {
        self.is_quiet() && self.served.load(Ordering::Relaxed)
    }
}

/// Marks work in flight on a connection (a response being sent, a request body being received)
/// until dropped. It holds the connection's [`ClientInfo`], so that a request needs one
/// reference count for both.
#[derive(Debug)]
pub struct BusyGuard(Arc<ClientInfo>);

impl BusyGuard {
    /// Notes a request head dispatched on `client`'s connection, and counts its response as
    /// work in flight.
    pub fn for_request(client: Arc<ClientInfo>) -> Self {
        client.activity.heads.fetch_add(1, Ordering::Relaxed);
        client.activity.busy.fetch_add(1, Ordering::Relaxed);
        Self(client)
    }

    /// Counts one more piece of work in flight on `client`'s connection.
    pub fn new(client: &Arc<ClientInfo>) -> Self {
        client.activity.busy.fetch_add(1, Ordering::Relaxed);
        Self(client.clone())
    }

    /// The connection's client.
    pub fn client(&self) -> &Arc<ClientInfo> {
        &self.0
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let activity = &self.0.activity;
        if activity.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            activity.served.store(true, Ordering::Relaxed);
        }
    }
}

/// The HTTP/1 timers of a client connection, and where to learn what is in flight.
#[derive(Debug)]
pub struct Http1Timers {
    /// Time allowed from a head's first byte to its dispatch.
    pub header_read_timeout: Duration,
    /// Quiet time after which the connection may be released.
    pub release_after: Duration,
    /// The connection's client, with its work in flight.
    pub client: Arc<ClientInfo>,
}

/// `T` with an idle timeout and, for HTTP/1 connections, a header read timeout and release of
/// idle state.
#[derive(Debug)]
pub struct IdleTimeoutIo<T> {
    inner: T,
    timeout: Duration,
    http1: Option<Http1Timers>,
    timer: Pin<Box<Sleep>>,
    /// A byte moved since the timer last fired.
    active: bool,
    /// The last write would have blocked: the client is not reading what it was sent.
    write_blocked: bool,
    /// When the timer last saw the connection active.
    quiet_since: Instant,
    /// The deadline of the request head being received, and the dispatch count when it began.
    head: Option<(Instant, u32)>,
    /// Bytes read from the socket by a released HTTP connection but not consumed by it.
    prefix: Bytes,
    /// A response was written: the next write sets `TCP_NODELAY` first.
    wrote: bool,
    /// `TCP_NODELAY` is set.
    nodelay: bool,
}

impl<T> IdleTimeoutIo<T> {
    /// Wraps `inner`; it fails with `TimedOut` after `timeout` without any byte moving, and
    /// with `http1`, also when a request head takes longer than its header read timeout; it
    /// then asks for release after `http1.release_after` quiet with nothing in flight.
    pub fn new(inner: T, timeout: Duration, http1: Option<Http1Timers>) -> Self {
        let now = Instant::now();
        let mut first = tick(timeout, &http1);
        // The first head is timed from the accept: a client that connects and says nothing
        // is cut as soon as one that starts a head and stalls.
        let head = http1.as_ref().map(|http1| {
            (
                now + http1.header_read_timeout,
                http1.client.activity.heads.load(Ordering::Relaxed),
            )
        });
        if let Some(http1) = &http1 {
            first = first.min(http1.header_read_timeout);
        }
        Self {
            inner,
            timeout,
            http1,
            timer: Box::pin(tokio::time::sleep_until(now + first)),
            active: false,
            write_blocked: false,
            quiet_since: now,
            head,
            prefix: Bytes::new(),
            wrote: false,
            nodelay: false,
        }
    }

    /// Notes bytes read: with nothing in flight they begin a request head, whose deadline
    /// starts now unless that head is already timed.
    fn on_read(&mut self) {
        self.active = true;
        let Some(http1) = &self.http1 else {
            return;
        };
        let heads = http1.client.activity.heads.load(Ordering::Relaxed);
        if matches!(self.head, Some((_, mark)) if mark == heads)
            || !http1.client.activity.is_quiet()
        {
            return;
        }
        let deadline = Instant::now() + http1.header_read_timeout;
        self.head = Some((deadline, heads));
        if deadline < self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
    }

    fn tick(&self) -> Duration {
        tick(self.timeout, &self.http1)
    }

    /// Serves a copy of `bytes` before anything read from the socket. A copy, because `bytes`
    /// is usually a view into a released connection's read buffer, which would stay allocated.
    pub fn set_prefix(&mut self, bytes: &[u8]) {
        self.prefix = Bytes::copy_from_slice(bytes);
    }

    /// Whether bytes are waiting in the prefix.
    pub fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let now = Instant::now();
            if std::mem::take(&mut self.active) {
                self.quiet_since = now;
            }
            let quiet = now.saturating_duration_since(self.quiet_since);
            if quiet >= self.timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle timeout",
                ));
            }
            let mut next = self.quiet_since + self.timeout;
            if let Some(http1) = &self.http1 {
                if let Some((deadline, mark)) = self.head {
                    if http1.client.activity.heads.load(Ordering::Relaxed) != mark {
                        self.head = None;
                    } else if now >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received within header_read_timeout",
                        ));
                    } else {
                        next = next.min(deadline);
                    }
                }
                if quiet < http1.release_after {
                    next = next.min(self.quiet_since + http1.release_after);
                } else if !self.write_blocked && http1.client.activity.may_release() {
                    http1
                        .client
                        .activity
                        .release_wanted
                        .store(true, Ordering::Relaxed);
                }
                // Busy (a slow response, a long poll) or about to be released: look again later.
                next = next.min(now + MAX_TICK);
            }
            self.timer.as_mut().reset(next);
        }
    }

    /// Notes a write that moved bytes, or checks the idle timer when the write would block.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(result) => {
                self.write_blocked = false;
                if matches!(result, Ok(written) if written > 0) {
                    self.active = true;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.write_blocked = true;
                match self.check(cx) {
                    Ok(()) => Poll::Pending,
                    Err(error) => Poll::Ready(Err(error)),
                }
            }
        }
    }
}

/// Longest time an HTTP/1 connection's timer sleeps: a draining daemon reaches active
/// connections through it (see [`crate::runtime::Draining`]).
const MAX_TICK: Duration = Duration::from_secs(1);

/// How long after the last activity the timer first looks at a connection.
fn tick(timeout: Duration, http1: &Option<Http1Timers>) -> Duration {
    match http1 {
        Some(http1) => http1.release_after.min(timeout).min(MAX_TICK),
        None => timeout,
    }
}

/// A first write larger than this sets `TCP_NODELAY` too: it may take more than one segment.
const NODELAY_FIRST_WRITE_ABOVE: usize = 16 * 1024;

impl IdleTimeoutIo<TcpStream> {
    /// Called before each write of `bytes`: sets `TCP_NODELAY` before any write but a
    /// connection's first small one. That one leaves at once anyway, since nothing is
    /// unacknowledged yet for Nagle's algorithm to wait on; so a connection that carries one
    /// small response never pays the system call (nginx sets it as lazily).
    pub fn before_write(&mut self, bytes: usize) {
        if self.nodelay {
            return;
        }
        if self.wrote || bytes > NODELAY_FIRST_WRITE_ABOVE {
            self.set_nodelay();
        }
        self.wrote = true;
    }

    /// Sets `TCP_NODELAY` now, for a writer that does not call [`IdleTimeoutIo::before_write`].
    pub fn set_nodelay(&mut self) {
        if !self.nodelay {
            let _ = self.inner.set_nodelay(true);
            self.nodelay = true;
        }
    }

    /// Waits, holding no buffer, until the released connection's client sends again
    /// (`Ok(true)`), or its idle timeout passes (`Ok(false)`).
    pub fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.inner.poll_read_ready(cx)?.is_ready() {
            let now = Instant::now();
            self.quiet_since = now;
            self.active = false;
            let tick = self.tick();
            self.timer.as_mut().reset(now + tick);
            return Poll::Ready(Ok(true));
        }
        let deadline = self.quiet_since + self.timeout;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(false)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeoutIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.on_read();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.on_read();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.check(cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeoutIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, data);
        this.after_write(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn nodelay_is_set_before_any_write_but_a_small_first_one() {
        let (server, _client) = pair().await;
        let mut io = IdleTimeoutIo::new(server, Duration::from_secs(60), None);
        assert!(!io.inner.nodelay().unwrap());
        io.before_write(100);
        assert!(
            !io.inner.nodelay().unwrap(),
            "a small first write needs no NODELAY"
        );
        io.before_write(100);
        assert!(
            io.inner.nodelay().unwrap(),
            "the second write must not wait on Nagle"
        );

        let (server, _client) = pair().await;
        let mut io = IdleTimeoutIo::new(server, Duration::from_secs(60), None);
        io.before_write(NODELAY_FIRST_WRITE_ABOVE + 1);
        assert!(
            io.inner.nodelay().unwrap(),
            "a large first write may span segments"
        );

        let (server, _client) = pair().await;
        let mut io = IdleTimeoutIo::new(server, Duration::from_secs(60), None);
        io.set_nodelay();
        assert!(io.inner.nodelay().unwrap());
    }
}
