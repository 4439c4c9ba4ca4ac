//! The stream of a connection to a backend: plain TCP, or TLS over it. An enum rather than a
//! type parameter: the pool, the response body and the request path hold connections of both
//! kinds side by side, and a plain connection pays one predictable branch per read or write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A backend connection's stream.
#[derive(Debug)]
pub enum UpstreamStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS. Boxed: rustls's connection state is large, and most backends are plain.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl UpstreamStream {
    /// Whether written bytes may wait in the stream until flushed (TLS records).
    #[inline]
    pub fn buffers_writes(&self) -> bool {
        matches!(self, UpstreamStream::Tls(_))
    }

    /// Whether an idle connection can carry a request: no event since it went idle, or an
    /// event that was not the backend closing it or sending unasked bytes. TLS records that
    /// carry no data (a session ticket, a key update) are read and leave it usable.
    pub fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self {
            UpstreamStream::Plain(stream) => match stream.poll_read_ready(&mut cx) {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    let mut probe = [0u8; 1];
                    matches!(stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
                }
            },
            UpstreamStream::Tls(stream) => {
                match stream.get_ref().0.poll_read_ready(&mut cx) {
                    Poll::Pending => return true,
                    Poll::Ready(Err(_)) => return false,
                    Poll::Ready(Ok(())) => {}
                }
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                // Pending: what arrived held no data. Ready: data, an end, or an error.
                Pin::new(stream.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

impl AsyncRead for UpstreamStream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_write(cx, data),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, data),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(stream) => stream.is_write_vectored(),
            UpstreamStream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(_) => Poll::Ready(Ok(())),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            UpstreamStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
