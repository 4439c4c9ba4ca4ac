//! A client connection's socket with its timers: [`TimedIo`] fails the connection when no byte
//! has moved, in either direction, for `server.idle_timeout`; on HTTP/1 connections it also
//! bounds each request head by `server.header_read_timeout`, and says when a connection waiting
//! between requests has been quiet for `server.idle_release_after` and may give back its
//! buffers.
//!
//! One timer per connection does all three: activity only sets a flag, the timer is armed when
//! an operation would block and re-armed lazily when it fires, so a busy connection pays no
//! timer work per read. The connection's driver says when a head starts and ends
//! ([`TimedIo::start_head`], [`TimedIo::end_head`]) and when it waits between requests
//! ([`TimedIo::set_waiting`]); while it waits for something else (a backend's body), it asks the
//! timer directly ([`TimedIo::poll_idle`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::stream::ClientStream;

/// The HTTP/1 timers of a client connection.
#[derive(Debug, Clone, Copy)]
pub struct Http1Timers {
    /// Time allowed from a head's first byte (or the accept) to its end.
    pub header_read_timeout: Duration,
    /// Quiet time between requests after which the connection may be released.
    pub release_after: Duration,
}

/// Longest time an HTTP/1 connection's timer sleeps: a draining daemon reaches active
/// connections through it (see [`crate::shutdown::Shutdown`]).
const MAX_TICK: Duration = Duration::from_secs(1);

/// A first write larger than this sets `TCP_NODELAY` too: it may take more than one segment.
const NODELAY_FIRST_WRITE_ABOVE: usize = 16 * 1024;

/// `T` with an idle timeout and, for HTTP/1, a header read timeout and a release signal.
#[derive(Debug)]
pub struct TimedIo<T> {
    inner: T,
    idle_timeout: Duration,
    http1: Option<Http1Timers>,
    timer: Pin<Box<Sleep>>,
    /// A byte moved since the timer last fired.
    active: bool,
    /// The last write would have blocked: the client is not reading what it was sent.
    write_blocked: bool,
    /// When the timer last saw the connection active.
    quiet_since: Instant,
    /// The deadline of the request head being received.
    head_deadline: Option<Instant>,
    /// The driver waits for a next request with nothing buffered: it may be released.
    waiting: bool,
    /// Quiet long enough while waiting: the driver should release the connection.
    release_due: bool,
    /// A response was written: the next write sets `TCP_NODELAY` first.
    wrote: bool,
    /// `TCP_NODELAY` is set.
    nodelay: bool,
}

impl<T> TimedIo<T> {
    /// Wraps `inner`: it fails with `TimedOut` after `idle_timeout` without any byte moving;
    /// with `http1`, a head that takes longer than its header read timeout fails it too (the
    /// first head is timed from now, the accept).
    pub fn new(inner: T, idle_timeout: Duration, http1: Option<Http1Timers>) -> Self {
        // One clock read: a plain connection is timed from now, its accept.
        let now = Instant::now();
        let head_deadline = http1.map(|http1| now + http1.header_read_timeout);
        let first = tick(idle_timeout, http1)
            .min(http1.map_or(Duration::MAX, |http1| http1.header_read_timeout));
        Self::with_timer(inner, idle_timeout, http1, now, head_deadline, first)
    }

    /// As [`TimedIo::new`] for a connection accepted at `accepted` (before its TLS handshake
    /// or PROXY header): the first head's deadline counts from then, so the handshake, the
    /// header and the first request head share one `header_read_timeout`.
    pub fn accepted_at(
        inner: T,
        idle_timeout: Duration,
        http1: Option<Http1Timers>,
        accepted: Instant,
    ) -> Self {
        let now = Instant::now();
        let head_deadline = http1.map(|http1| accepted + http1.header_read_timeout);
        let first =
            tick(idle_timeout, http1).min(head_deadline.map_or(Duration::MAX, |deadline| {
                deadline.saturating_duration_since(now)
            }));
        Self::with_timer(inner, idle_timeout, http1, now, head_deadline, first)
    }

    fn with_timer(
        inner: T,
        idle_timeout: Duration,
        http1: Option<Http1Timers>,
        now: Instant,
        head_deadline: Option<Instant>,
        first: Duration,
    ) -> Self {
        Self {
            inner,
            idle_timeout,
            http1,
            timer: Box::pin(tokio::time::sleep_until(now + first)),
            active: false,
            write_blocked: false,
            quiet_since: now,
            head_deadline,
            waiting: false,
            release_due: false,
            wrote: false,
            nodelay: false,
        }
    }

    /// The idle timeout in force.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Whether the last write would have blocked: the client is not reading what it was sent.
    /// With the idle timeout's error, it tells a client that took nothing for that long from
    /// one that was merely quiet.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked
    }

    /// A request head has begun (its first byte is buffered): it must end within the header
    /// read timeout from now, unless it is already timed.
    pub fn start_head(&mut self) {
        let Some(http1) = self.http1 else { return };
        if self.head_deadline.is_some() {
            return;
        }
        let deadline = Instant::now() + http1.header_read_timeout;
        self.head_deadline = Some(deadline);
        if deadline < self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
    }

    /// The head being timed is complete.
    pub fn end_head(&mut self) {
        self.head_deadline = None;
    }

    /// Whether the driver waits for a next request with nothing buffered.
    pub fn set_waiting(&mut self, waiting: bool) {
        self.waiting = waiting;
        if !waiting {
            self.release_due = false;
        }
    }

    /// Takes the timer's signal that the waiting connection may be released.
    pub fn take_release_due(&mut self) -> bool {
        std::mem::take(&mut self.release_due)
    }

    /// The connection now carries a tunnel: only its idle timeout is left, `idle_timeout`
    /// (`server.upgrade_idle_timeout`), counted from now; no head is timed and no release is
    /// signalled any more.
    pub fn time_as_tunnel(&mut self, idle_timeout: Duration) {
        self.idle_timeout = idle_timeout;
        self.time_idle_only();
    }

    /// Only the idle timeout times the connection from now on, counted from now: it speaks
    /// HTTP/2 (or carries a tunnel), whose heads and quiet spells HTTP/1's timers do not fit.
    pub fn time_idle_only(&mut self) {
        let now = Instant::now();
        let idle_timeout = self.idle_timeout;
        self.http1 = None;
        self.head_deadline = None;
        self.waiting = false;
        self.release_due = false;
        self.active = false;
        self.quiet_since = now;
        self.timer.as_mut().reset(now + tick(idle_timeout, None));
    }

    /// Checks the timers without reading or writing, for a driver that waits on something
    /// else: ready with the error once the connection has been idle too long.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.check(cx) {
            Ok(()) => Poll::Pending,
            Err(error) => Poll::Ready(error),
        }
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
            if quiet >= self.idle_timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle timeout",
                ));
            }
            let mut next = self.quiet_since + self.idle_timeout;
            if let Some(http1) = self.http1 {
                if let Some(deadline) = self.head_deadline {
                    if now >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received within header_read_timeout",
                        ));
                    }
                    next = next.min(deadline);
                }
                if quiet < http1.release_after {
                    next = next.min(self.quiet_since + http1.release_after);
                } else if self.waiting && !self.write_blocked {
                    self.release_due = true;
                }
                // Busy (a slow response, a long poll) or about to be released: look again later.
                next = next.min(now + MAX_TICK);
            } else {
                next = next.min(now + tick(self.idle_timeout, None));
            }
            self.timer.as_mut().reset(next);
        }
    }

    /// Notes a write that moved bytes, or checks the timers when the write would block.
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

/// How often the timer looks at a connection. Activity is noted lazily, when the timer fires,
/// so a connection is cut between the idle timeout and one tick more: at most a second for
/// HTTP/1, an eighth of the idle timeout for HTTP/2 connections and tunnels, which are not
/// woken every second.
fn tick(idle_timeout: Duration, http1: Option<Http1Timers>) -> Duration {
    match http1 {
        Some(http1) => http1.release_after.min(idle_timeout).min(MAX_TICK),
        None => idle_timeout / 8,
    }
}

impl<S: ClientStream> TimedIo<S> {
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

    /// Sets `TCP_NODELAY` now.
    pub fn set_nodelay(&mut self) {
        if !self.nodelay {
            let _ = self.inner.tcp().set_nodelay(true);
            self.nodelay = true;
        }
    }

    /// Makes the socket's close a reset (`SO_LINGER` 0): the way a tunnel passes on the other
    /// side's abort, so the client cannot take it for an orderly end.
    pub fn reset_on_close(&mut self) {
        let _ = self.inner.tcp().set_zero_linger();
    }

    /// Waits, holding no buffer, until the released connection's client sends again
    /// (`Ok(true)`), or its idle timeout passes (`Ok(false)`).
    pub fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.inner.has_buffered_input() || self.inner.tcp().poll_read_ready(cx)?.is_ready() {
            let now = Instant::now();
            self.quiet_since = now;
            self.active = false;
            let tick = tick(self.idle_timeout, self.http1);
            self.timer.as_mut().reset(now + tick);
            return Poll::Ready(Ok(true));
        }
        let deadline = self.quiet_since + self.idle_timeout;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(false)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.active = true;
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

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
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
mod tests;
