//! The socket under a connection another codec than ours drives (h2's, or hyper's HTTP/1 as
//! the differential test's reference), and what the connection's requests share about it: the
//! idle timeout a tunnel switches it to, and why it was closed for its client's doing (the
//! reason of the `GOAWAY` it wrote, or a client that read nothing for the idle timeout).
//!
//! The codec owns the [`TimedIo`], so a tunnel reaches its timer through [`ConnShared`]: an
//! HTTP/1.1 connection handed over for a tunnel takes `server.upgrade_idle_timeout` for good;
//! an HTTP/2 connection takes the longer of its two timeouts while any of its streams carries
//! a WebSocket (each of which has its own idle timer), and its own again after.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::goaway::GoawayTap;
use crate::conn::stream::ClientStream;
use crate::conn::timed_io::TimedIo;
use crate::tls::prefixed::Prefixed;

/// What a connection's socket shares with its requests.
#[derive(Debug)]
pub(crate) struct ConnShared {
    /// The idle timeout the socket's timer should run with, in milliseconds; 0: its own.
    retime: AtomicU64,
    /// HTTP/2 streams carrying a tunnel now.
    tunnels: Mutex<usize>,
    idle_timeout: Duration,
    /// Why the balancer closed the connection for its client's doing, if it did: the reason
    /// of a `GOAWAY` it sent with an error code, or `flow_control_stall` when the client read
    /// nothing for the idle timeout while the balancer had bytes for it (a client flooding
    /// `PING`s or `SETTINGS` without reading their answers is held back by its unread socket
    /// until then).
    pub(crate) closed_for: OnceLock<&'static str>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl ConnShared {
    pub(crate) fn new(idle_timeout: Duration) -> Self {
        Self {
            retime: AtomicU64::new(0),
            tunnels: Mutex::new(0),
            idle_timeout,
            closed_for: OnceLock::new(),
        }
    }

    /// The connection carries a tunnel from now on (HTTP/1.1 hand-over).
    pub(crate) fn time_as_tunnel(&self, idle_timeout: Duration) {
        self.retime.store(millis(idle_timeout), Ordering::Release);
    }

    /// An HTTP/2 stream of the connection carries a tunnel with `idle_timeout` until the
    /// guard is dropped.
    pub(crate) fn tunnel_opened(self: &Arc<Self>, idle_timeout: Duration) -> StreamTunnel {
        let mut open = self.tunnels.lock().unwrap_or_else(|p| p.into_inner());
        *open += 1;
        if *open == 1 && idle_timeout > self.idle_timeout {
            self.retime.store(millis(idle_timeout), Ordering::Release);
        }
        StreamTunnel(self.clone())
    }
}

/// An HTTP/2 stream's tunnel, open on its connection.
pub(crate) struct StreamTunnel(Arc<ConnShared>);

impl Drop for StreamTunnel {
    fn drop(&mut self) {
        let mut open = self.0.tunnels.lock().unwrap_or_else(|p| p.into_inner());
        *open -= 1;
        if *open == 0 && self.0.retime.load(Ordering::Acquire) != 0 {
            self.0
                .retime
                .store(millis(self.0.idle_timeout), Ordering::Release);
        }
    }
}

/// A connection's socket and timers, whose idle timeout its tunnels can switch, and whose
/// writes the [`GoawayTap`] follows (on HTTP/1 it turns itself off at the first write). One
/// atomic load per read and write.
pub(crate) struct Retimed<S> {
    io: TimedIo<S>,
    conn: Arc<ConnShared>,
    /// The value of `conn.retime` in force.
    applied: u64,
    tap: GoawayTap,
}

impl<S> Retimed<S> {
    /// The socket of a connection another codec serves, after `read` (its first bytes,
    /// already read), and what its requests share about it.
    pub(crate) fn with_prefix(io: TimedIo<S>, read: BytesMut) -> (Prefixed<Self>, Arc<ConnShared>) {
        let conn = Arc::new(ConnShared::new(io.idle_timeout()));
        let io = Prefixed::new(read, Retimed::new(io, conn.clone()));
        (io, conn)
    }

    pub(crate) fn new(io: TimedIo<S>, conn: Arc<ConnShared>) -> Self {
        Self {
            io,
            conn,
            applied: 0,
            tap: GoawayTap::default(),
        }
    }

    fn check(&mut self) {
        let millis = self.conn.retime.load(Ordering::Acquire);
        if millis != self.applied {
            self.applied = millis;
            self.io.time_as_tunnel(Duration::from_millis(millis));
        }
    }
}

impl<S> Retimed<S> {
    /// Shows the tap the first `written` bytes of `bufs`.
    fn follow(&mut self, bufs: &[io::IoSlice<'_>], mut written: usize) {
        for buf in bufs {
            if written == 0 {
                break;
            }
            let take = buf.len().min(written);
            self.tap.wrote(&buf[..take]);
            written -= take;
        }
        if let Some(reason) = self.tap.closed {
            let _ = self.conn.closed_for.set(reason);
        }
    }

    /// Notes why `polled` failed the connection when the idle timeout cut a client that was
    /// not reading: that is the attack of a peer that never reads, not a quiet client.
    fn note<T>(&self, polled: &Poll<io::Result<T>>) {
        if let Poll::Ready(Err(error)) = polled
            && error.kind() == io::ErrorKind::TimedOut
            && self.io.write_blocked()
        {
            let _ = self.conn.closed_for.set("flow_control_stall");
        }
    }
}

impl<S: ClientStream> AsyncRead for Retimed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        self.note(&polled);
        polled
    }
}

impl<S: ClientStream> AsyncWrite for Retimed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        this.note(&polled);
        if this.tap.is_on()
            && let Poll::Ready(Ok(written)) = polled
        {
            this.follow(&[io::IoSlice::new(data)], written);
        }
        polled
    }

    /// Vectored, as the stream under it: h2 then writes a large data frame's payload with its
    /// header in one call instead of two.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.note(&polled);
        if this.tap.is_on()
            && let Poll::Ready(Ok(written)) = polled
        {
            this.follow(bufs, written);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.note(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
