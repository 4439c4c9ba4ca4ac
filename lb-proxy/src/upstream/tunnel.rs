//! The backend's end of a tunnel: an HTTP/1.1 connection the backend switched with `101`, or an
//! HTTP/2 stream it accepted as an extended `CONNECT` (RFC 8441, WebSocket over HTTP/2). Either
//! way the tunnel sees one byte stream; an HTTP/2 one keeps its place on its connection (the
//! connection's stream count) until the tunnel closes, and ends the stream when written shut.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::connection::Connection;
use super::h2::StreamSlot;
use super::stream::UpstreamStream;

/// A backend connection or stream switched to a tunnel.
#[derive(Debug)]
pub enum TunnelBackend {
    /// An HTTP/1.1 connection after its `101`; its buffer holds what the backend sent after it.
    Http1(Connection),
    /// An HTTP/2 stream after the backend's `2xx` to an extended `CONNECT`.
    Http2(Box<H2Tunnel>),
}

impl TunnelBackend {
    /// The byte stream, and the bytes already read from it that belong to the tunnel.
    pub fn into_parts(self) -> (TunnelStream, BytesMut) {
        match self {
            TunnelBackend::Http1(connection) => {
                let (stream, buffer) = connection.into_parts();
                (TunnelStream::Http1(stream), buffer)
            }
            TunnelBackend::Http2(tunnel) => (TunnelStream::Http2(tunnel), BytesMut::new()),
        }
    }
}

/// An HTTP/2 stream carrying a tunnel, its place on its connection, and its count among the
/// backend's tunnels.
pub struct H2Tunnel {
    io: TokioIo<hyper::upgrade::Upgraded>,
    _slot: StreamSlot,
    tunnels: Arc<AtomicUsize>,
}

impl H2Tunnel {
    /// Counts itself in `tunnels` until dropped.
    pub(super) fn new(
        upgraded: hyper::upgrade::Upgraded,
        slot: StreamSlot,
        tunnels: Arc<AtomicUsize>,
    ) -> Self {
        tunnels.fetch_add(1, Ordering::Relaxed);
        Self {
            io: TokioIo::new(upgraded),
            _slot: slot,
            tunnels,
        }
    }
}

impl Drop for H2Tunnel {
    fn drop(&mut self) {
        self.tunnels.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for H2Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Tunnel").finish_non_exhaustive()
    }
}

/// The tunnel's byte stream to the backend.
#[derive(Debug)]
pub enum TunnelStream {
    /// A switched HTTP/1.1 connection.
    Http1(UpstreamStream),
    /// An HTTP/2 stream (DATA frames both ways; a write shutdown ends the stream).
    Http2(Box<H2Tunnel>),
}

impl TunnelStream {
    /// Aborts the backend's side when the client's failed: a switched HTTP/1.1 connection's
    /// close becomes a reset (`SO_LINGER` 0), an HTTP/2 stream is reset with `CANCEL` when it
    /// is dropped (RFC 8441 §5: a tunnel's TCP reset).
    pub fn reset_on_close(&mut self) {
        if let TunnelStream::Http1(stream) = self {
            let tcp = match stream {
                UpstreamStream::Plain(tcp) => tcp,
                UpstreamStream::Tls(tls) => tls.get_ref().0,
            };
            let _ = tcp.set_zero_linger();
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Http1(stream) => Pin::new(stream).poll_read(cx, buf),
            TunnelStream::Http2(tunnel) => Pin::new(&mut tunnel.io)
                .poll_read(cx, buf)
                .map_err(stream_reset),
        }
    }
}

/// hyper's upgraded stream reports the backend's reset of the stream (an error not of I/O) as
/// `Other`; it is the tunnel's abort, as a TCP reset would be.
fn stream_reset(error: io::Error) -> io::Error {
    match error.kind() {
        io::ErrorKind::Other => io::Error::new(io::ErrorKind::ConnectionReset, error),
        _ => error,
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TunnelStream::Http1(stream) => Pin::new(stream).poll_write(cx, buf),
            TunnelStream::Http2(tunnel) => Pin::new(&mut tunnel.io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Http1(stream) => Pin::new(stream).poll_flush(cx),
            TunnelStream::Http2(tunnel) => Pin::new(&mut tunnel.io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TunnelStream::Http1(stream) => Pin::new(stream).poll_shutdown(cx),
            TunnelStream::Http2(tunnel) => Pin::new(&mut tunnel.io).poll_shutdown(cx),
        }
    }
}
