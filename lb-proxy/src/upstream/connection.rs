//! One connection to a backend: the socket and the bytes read from it but not yet consumed,
//! and the IO on it. What is exchanged over it is [`super::h1`]'s.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::BoxError;
use super::stream::UpstreamStream;
use crate::proto::h1::response::ResponseError;

/// Read buffer room asked for before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Why an exchange on a connection failed; the connection is then closed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Writing the request failed.
    #[error("writing the request failed: {0}")]
    Write(io::Error),
    /// Reading the response failed.
    #[error("reading the response failed: {0}")]
    Read(io::Error),
    /// The backend closed or reset the connection without a single byte of a response.
    #[error("the backend closed the connection without answering")]
    ClosedWithoutAnswer,
    /// The backend closed the connection in the middle of a response head.
    #[error("the backend closed the connection before a complete response head")]
    ClosedBeforeHead,
    /// The response head is unusable.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// The client's request body failed while it was being sent (the client's fault).
    #[error("the request body failed: {0}")]
    Upload(#[source] BoxError),
    /// An HTTP/2 exchange failed after the request may have reached the backend.
    #[error("HTTP/2 exchange failed: {0}")]
    Http2(#[source] hyper::Error),
    /// The request head could not be put in HTTP/2's form (it names no host).
    #[error("the request cannot be sent over HTTP/2: it names no host")]
    Http2Head,
}

/// One connection to a backend and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct Connection {
    pub(super) stream: UpstreamStream,
    pub(super) buffer: BytesMut,
    /// The client a PROXY header on this connection named: it carries that client's requests
    /// only. Boxed: rare, and a plain connection stays small.
    pub(super) proxied_for: Option<Box<SocketAddr>>,
}

impl Connection {
    /// A fresh connection.
    pub fn new(stream: UpstreamStream) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
            proxied_for: None,
        }
    }

    /// The stream and the bytes read beyond the last response: a switched connection's, for
    /// the tunnel that carries it on.
    pub fn into_parts(self) -> (UpstreamStream, BytesMut) {
        (self.stream, self.buffer)
    }

    /// Whether an idle connection can carry a request: no event since it went idle, or an
    /// event that was not the backend closing it or sending unasked bytes.
    pub fn still_open(&mut self) -> bool {
        self.buffer.is_empty() && self.stream.still_open()
    }

    /// Writes a whole request known up front: `head`, then `body`.
    /// The bytes may wait in a TLS stream until [`Connection::flush_if_buffered`].
    pub async fn write_request(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        if body.is_empty() {
            return self.stream.write_all(head).await;
        }
        let (mut head, mut body) = (head, body);
        while !head.is_empty() {
            let written = self
                .stream
                .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
                .await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_head = written.min(head.len());
            head = &head[from_head..];
            body = &body[written - from_head..];
        }
        self.stream.write_all(body).await
    }

    /// Sends what a TLS stream still holds (a plain one holds nothing).
    pub async fn flush_if_buffered(&mut self) -> io::Result<()> {
        match self.stream.buffers_writes() {
            true => self.stream.flush().await,
            false => Ok(()),
        }
    }

    /// Reads one byte batch into the buffer; `Ok(0)` at the end of the stream.
    ///
    /// Through `AsyncRead`, so that a short read clears the socket's readiness
    /// (docs/performance.md, item 14).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buffer.capacity() - self.buffer.len() < 1024 {
            self.buffer.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buffer)
    }
}
