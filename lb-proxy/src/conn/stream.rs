//! What the HTTP/1 loop needs of a client connection's stream, beyond reading and writing:
//! the TCP socket under it (for `TCP_NODELAY` and for waiting, buffer-free, on a parked
//! connection) and whether writes may stay buffered until flushed (TLS records). The loop is
//! generic over it, so a plain connection runs the same code as before TLS existed: each
//! stream type gets its own copy, and [`ClientStream::BUFFERS_WRITES`] is a constant the
//! plain copy's flushes compile away on.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::tls::ServerStream;

/// A client connection's stream.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether written bytes may wait inside the stream until it is flushed.
    const BUFFERS_WRITES: bool;

    /// The TCP socket under the stream.
    fn tcp(&self) -> &TcpStream;

    /// Whether bytes already read from the socket wait inside the stream (a parked connection
    /// must then resume at once: the socket may never signal them again).
    fn has_buffered_input(&self) -> bool;
}

impl ClientStream for TcpStream {
    const BUFFERS_WRITES: bool = false;

    fn tcp(&self) -> &TcpStream {
        self
    }

    fn has_buffered_input(&self) -> bool {
        false
    }
}

impl ClientStream for ServerStream {
    const BUFFERS_WRITES: bool = true;

    fn tcp(&self) -> &TcpStream {
        self.get_ref().0.inner()
    }

    fn has_buffered_input(&self) -> bool {
        // rustls reads whole records and hands out their plaintext as asked: what the loop did
        // not take yet waits here, and so may the rest of a PROXY read.
        self.get_ref().0.has_prefix() || !self.get_ref().1.wants_read()
    }
}
