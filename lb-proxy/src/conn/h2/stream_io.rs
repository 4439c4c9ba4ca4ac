//! An HTTP/2 stream as a byte stream: the client's end of a WebSocket tunnel (RFC 8441). What
//! the client sends arrives as the stream's data, released to its window as the tunnel takes
//! it; what the tunnel writes goes out as data within the window the client gives. A reset
//! from the client, or the connection ending, fails both ways: RFC 8441 §5 makes
//! `RST_STREAM(CANCEL)` the tunnel's abort (a TCP reset), so the backend's side is aborted too,
//! not ended in order as after `END_STREAM`. A tunnel with bytes for a client that keeps its
//! window shut counts as a response waiting on its client ([`StallWatch`]): past
//! `server.http2.stalled_response_timeout` the connection closes as for any such response,
//! rather than holding the backend's connection until the tunnel's idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stall::StallWatch;
use crate::conn::timed_io::TimedIo;
use crate::conn::tunnel::TunnelClient;

/// Both halves of a stream that carries a tunnel.
pub(super) struct StreamIo {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Data received and not yet read.
    held: Bytes,
    /// The stream's end was sent.
    ended: bool,
    /// The connection's watch on responses that wait for their client.
    stall: Arc<StallWatch>,
    /// The tick a write has waited for the client's window since.
    waiting_since: Option<u64>,
}

impl StreamIo {
    pub(super) fn new(send: SendStream<Bytes>, recv: RecvStream, stall: Arc<StallWatch>) -> Self {
        Self {
            send,
            recv,
            held: Bytes::new(),
            ended: false,
            stall,
            waiting_since: None,
        }
    }

    /// A write found room, or gave up: it no longer waits on the client.
    fn stop_waiting(&mut self) {
        if let Some(tick) = self.waiting_since.take() {
            self.stall.stop_waiting(tick);
        }
    }
}

impl Drop for StreamIo {
    fn drop(&mut self) {
        self.stop_waiting();
    }
}

/// A stream error as an I/O error; a reset with `NO_ERROR` (which RFC 8441 gives no meaning) is
/// taken for the client's orderly close.
fn to_io(error: h2::Error) -> Option<io::Error> {
    match error.reason() {
        Some(Reason::NO_ERROR) => None,
        Some(Reason::CANCEL) => Some(io::Error::new(io::ErrorKind::ConnectionReset, error)),
        _ => Some(io::Error::new(io::ErrorKind::BrokenPipe, error)),
    }
}

impl AsyncRead for StreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.held.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.held = data;
                }
                Some(Err(error)) => {
                    return Poll::Ready(to_io(error).map_or(Ok(()), Err));
                }
                None => return Poll::Ready(Ok(())),
            }
        }
        let take = this.held.len().min(buf.remaining());
        buf.put_slice(&this.held[..take]);
        this.held.advance(take);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.send.reserve_capacity(data.len());
        let room = loop {
            match this.send.capacity() {
                0 => {
                    let Poll::Ready(polled) = this.send.poll_capacity(cx) else {
                        if this.waiting_since.is_none() {
                            this.waiting_since = Some(this.stall.start_waiting());
                        }
                        return Poll::Pending;
                    };
                    this.stop_waiting();
                    match polled {
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            let error =
                                to_io(error).unwrap_or_else(|| io::ErrorKind::BrokenPipe.into());
                            return Poll::Ready(Err(error));
                        }
                        None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                    }
                }
                room => break room,
            }
        };
        this.stop_waiting();
        let take = room.min(data.len());
        match this
            .send
            .send_data(Bytes::copy_from_slice(&data[..take]), false)
        {
            Ok(()) => Poll::Ready(Ok(take)),
            Err(error) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, error))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what the stream queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.ended {
            this.ended = true;
            let _ = this.send.send_data(Bytes::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}

impl TunnelClient for TimedIo<StreamIo> {
    fn time_as_tunnel(&mut self, idle_timeout: Duration) {
        TimedIo::time_as_tunnel(self, idle_timeout);
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        TimedIo::poll_idle(self, cx)
    }

    // `reset_on_close` is left as it is: h2 resets a stream dropped unfinished with `CANCEL`.
}
