//! A tunnel: the client connection after a backend answered its upgrade request with `101`
//! (WebSocket, or any protocol the two agree on), joined byte for byte to that backend
//! connection until either side closes.
//!
//! The bytes the client sent after its upgrade request, while the backend had not answered,
//! were held in the connection's buffer, never read as a request: they are the tunnel's first
//! bytes towards the backend; those the backend sent right behind its `101` go to the client
//! first. When one side ends its stream (EOF), what it sent is passed on with the end (a write
//! shutdown), and the tunnel closes, as nginx's does: WebSocket and the protocols run over
//! upgrades do not half-close, and a tunnel left half open would hold its backend slot until
//! the idle timeout. The tunnel also closes when either socket fails, when no byte moved
//! either way for `server.upgrade_idle_timeout` (the client connection's timer, which sees
//! every byte of both directions), and at the end of `server.shutdown_grace` once shutdown has
//! begun. A side that aborts (a TCP reset, an HTTP/2 stream reset, a write to a side that is
//! gone) is passed on as an abort, not an end: the other side's TCP connection is closed with a
//! reset and its HTTP/2 stream reset with `CANCEL` (RFC 8441 §5), so that it cannot take a
//! broken tunnel for one closed in order. Other failures close the other side as an end does: a
//! TLS stream cut without `close_notify` above all, which browsers and servers often leave out
//! after their WebSocket closing handshake, and which a reset would turn into lost bytes (a
//! reset discards what the other side has not yet read). While open it holds the backend's
//! in-flight slot and counts in `lb_upgraded_connections{backend}`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::stream::ClientStream;
use crate::conn::timed_io::TimedIo;
use crate::proxy::body::Upgraded;
use crate::runtime::Shared;

/// Room of each direction's buffer.
const TUNNEL_BUFFER: usize = 16 * 1024;

/// The client's end of a tunnel.
pub(crate) trait TunnelClient: AsyncRead + AsyncWrite + Unpin {
    /// Switches the connection's timers to the tunnel's: `server.upgrade_idle_timeout` only.
    fn time_as_tunnel(&mut self, idle_timeout: std::time::Duration);
    /// Ready with an error once the connection has been idle too long.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error>;
    /// The backend's side failed: the client's is to be aborted rather than ended, when it is
    /// dropped.
    fn reset_on_close(&mut self) {}
}

impl<S: ClientStream> TunnelClient for TimedIo<S> {
    fn time_as_tunnel(&mut self, idle_timeout: std::time::Duration) {
        TimedIo::time_as_tunnel(self, idle_timeout);
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        TimedIo::poll_idle(self, cx)
    }

    fn reset_on_close(&mut self) {
        TimedIo::reset_on_close(self);
    }
}

/// Why a tunnel closed.
enum Closed {
    /// A side ended its stream, and the end was passed on.
    Ended,
    /// The client's side failed: its read or a write to it.
    ClientFailed(io::Error),
    /// The backend's side failed.
    BackendFailed(io::Error),
    /// No byte moved for the idle timeout, or the shutdown grace ran out.
    TimedOut(io::Error),
}

/// Carries the tunnel until it closes. `held`: the client's bytes read after its upgrade
/// request.
pub(crate) async fn run<C: TunnelClient>(
    io: &mut C,
    held: &mut BytesMut,
    upgraded: Upgraded,
    shared: &Shared,
) {
    let Upgraded {
        connection,
        mut guard,
    } = upgraded;
    let server = &shared.runtime.load().config.server;
    let (idle_timeout, grace) = (server.upgrade_idle_timeout, server.shutdown_grace);
    let (mut backend, from_backend) = connection.into_parts();
    io.time_as_tunnel(idle_timeout);
    let mut up = Half::with(std::mem::take(held));
    let mut down = Half::with(from_backend);
    let mut shutdown = std::pin::pin!(shared.shutdown.started());
    let mut grace_over: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let closed = std::future::poll_fn(|cx| {
        match up.poll_copy(cx, Pin::new(&mut *io), Pin::new(&mut backend)) {
            Poll::Ready(Ok(())) => return Poll::Ready(Closed::Ended),
            Poll::Ready(Err(Broke::Reader(error))) => {
                return Poll::Ready(Closed::ClientFailed(error));
            }
            Poll::Ready(Err(Broke::Writer(error))) => {
                return Poll::Ready(Closed::BackendFailed(error));
            }
            Poll::Pending => {}
        }
        match down.poll_copy(cx, Pin::new(&mut backend), Pin::new(&mut *io)) {
            Poll::Ready(Ok(())) => return Poll::Ready(Closed::Ended),
            Poll::Ready(Err(Broke::Reader(error))) => {
                return Poll::Ready(Closed::BackendFailed(error));
            }
            Poll::Ready(Err(Broke::Writer(error))) => {
                return Poll::Ready(Closed::ClientFailed(error));
            }
            Poll::Pending => {}
        }
        if grace_over.is_none() && shutdown.as_mut().poll(cx).is_ready() {
            grace_over = Some(Box::pin(tokio::time::sleep(grace)));
        }
        if let Some(sleep) = &mut grace_over
            && sleep.as_mut().poll(cx).is_ready()
        {
            let error = io::Error::other("shutdown grace over");
            return Poll::Ready(Closed::TimedOut(error));
        }
        // A write that waits does not read the client: its timer is watched here too.
        io.poll_idle(cx).map(Closed::TimedOut)
    })
    .await;
    guard.sent(down.moved);
    match closed {
        Closed::Ended => {}
        Closed::ClientFailed(error) => {
            tracing::debug!(%error, "tunnel closed: the client's side failed");
            if is_abort(&error) {
                backend.reset_on_close();
            }
        }
        Closed::BackendFailed(error) => {
            tracing::debug!(%error, "tunnel closed: the backend's side failed");
            if is_abort(&error) {
                io.reset_on_close();
            }
        }
        Closed::TimedOut(error) => tracing::debug!(%error, "tunnel closed"),
    }
}

/// Whether a side's failure is an abort, to pass on as one: a TCP reset, an HTTP/2 stream's
/// reset (each side's stream reports it as `ConnectionReset`), a write to a side that is gone.
fn is_abort(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A direction's failure: of the side it reads, or of the side it writes.
#[derive(Debug)]
enum Broke {
    Reader(io::Error),
    Writer(io::Error),
}

/// One direction of the tunnel: what was read and not yet written.
struct Half {
    buffer: BytesMut,
    /// The reader ended its stream; once the buffer is written the writer is shut down.
    eof: bool,
    /// Bytes were written since the last flush (a TLS stream may hold them).
    unflushed: bool,
    /// Ended: everything written and the writer shut down.
    done: bool,
    /// Bytes written.
    moved: u64,
}

impl Half {
    /// A direction whose first bytes to write are `first`.
    fn with(first: BytesMut) -> Self {
        let mut buffer = first;
        buffer.reserve(TUNNEL_BUFFER.saturating_sub(buffer.len()));
        Self {
            buffer,
            eof: false,
            unflushed: false,
            done: false,
            moved: 0,
        }
    }

    /// Moves bytes from `reader` to `writer` until either would block; ready once the reader
    /// ended and all of it was passed on.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<Result<(), Broke>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            while !self.buffer.is_empty() {
                let written =
                    ready!(writer.as_mut().poll_write(cx, &self.buffer)).map_err(Broke::Writer)?;
                if written == 0 {
                    return Poll::Ready(Err(Broke::Writer(io::ErrorKind::WriteZero.into())));
                }
                let _ = self.buffer.split_to(written);
                self.moved += written as u64;
                self.unflushed = true;
            }
            if self.unflushed {
                ready!(writer.as_mut().poll_flush(cx)).map_err(Broke::Writer)?;
                self.unflushed = false;
            }
            if self.eof {
                ready!(writer.as_mut().poll_shutdown(cx)).map_err(Broke::Writer)?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            // The buffer is empty here: reading into it again reuses its allocation.
            self.buffer.reserve(TUNNEL_BUFFER);
            let read = ready!(tokio_util::io::poll_read_buf(
                reader.as_mut(),
                cx,
                &mut self.buffer
            ))
            .map_err(Broke::Reader)?;
            if read == 0 {
                self.eof = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
