//! HTTP/1.1 on one upstream connection: the IO around the codec ([`crate::proto::h1`]). The
//! request head is serialised once by the request path; here it is written, the response head
//! read and parsed, and the body handed out as a [`ResponseBody`] that reads the connection as
//! it is polled.
//!
//! A connection whose response was not read to its exact end, that the backend asked to close,
//! or on which bytes arrived beyond the response, is never reused.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::body::ResponseBody;
use crate::proto::h1::response::{self, ResponseError, ResponseHead};

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
    Upload(#[source] crate::proxy::body::BoxError),
}

/// One connection to a backend and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct Connection {
    pub(super) stream: TcpStream,
    pub(super) buffer: BytesMut,
}

impl Connection {
    /// A fresh connection.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
        }
    }

    /// Whether an idle connection can carry a request: no event since it went idle, or an
    /// event that was not the backend closing it or sending unasked bytes.
    pub fn still_open(&self) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Writes a whole request known up front: `head`, then `body`.
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

    /// Polls for the final response head (interim 1xx responses are skipped): ready with the
    /// head once one is complete. `answered` tracks whether any response byte arrived.
    pub(super) fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        expect_body: bool,
        max_head_bytes: usize,
        answered: &mut bool,
    ) -> Poll<Result<ResponseHead, ExchangeError>> {
        loop {
            if let Some(parsed) = response::parse(&self.buffer, expect_body, max_head_bytes)? {
                let interim = parsed.status().is_informational();
                let bytes = self.buffer.split_to(parsed.length).freeze();
                *answered = true;
                if interim {
                    continue;
                }
                return Poll::Ready(Ok(parsed.into_head(bytes)));
            }
            let nothing_yet = self.buffer.is_empty() && !*answered;
            match std::task::ready!(self.poll_fill(cx)) {
                Ok(0) if nothing_yet => {
                    return Poll::Ready(Err(ExchangeError::ClosedWithoutAnswer));
                }
                Ok(0) => return Poll::Ready(Err(ExchangeError::ClosedBeforeHead)),
                Ok(_) => {}
                Err(error) if nothing_yet && error.kind() == io::ErrorKind::ConnectionReset => {
                    return Poll::Ready(Err(ExchangeError::ClosedWithoutAnswer));
                }
                Err(error) => return Poll::Ready(Err(ExchangeError::Read(error))),
            }
        }
    }

    /// Reads the response head and frames its body. `expect_body` is false for a HEAD
    /// request; a head longer than `max_head_bytes` is an error.
    pub async fn read_response(
        mut self,
        expect_body: bool,
        max_head_bytes: usize,
    ) -> Result<(ResponseHead, ResponseBody), ExchangeError> {
        let mut answered = false;
        let head = std::future::poll_fn(|cx| {
            self.poll_head(cx, expect_body, max_head_bytes, &mut answered)
        })
        .await?;
        let body = ResponseBody::new(self, head.body, head.reusable);
        Ok((head, body))
    }
}
