//! A request whose body streams (too large to buffer for a retry, or chunked): the body is
//! written as it arrives, framed by the codec from what is sent — its declared length, or the
//! chunked coding — while the response head is read at the same time, since a backend may
//! answer before it has read the whole body. The upload then goes on while the response body
//! is read (the response body drives it), so a backend that streams its answer while the body
//! arrives (an echo, a bidirectional stream) works both ways at once. A connection whose upload
//! did not finish is not reused.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body;
use tokio::io::AsyncWrite;

use super::BoxError;
use super::connection::ExchangeError;
use crate::proto::h1::chunked::{CHUNK_END, LAST_CHUNK, push_chunk_size};
use crate::proto::h1::framing::Framing;

/// What is being written of the body: up to three pieces (a chunk's size line, its data, its
/// CRLF), and how far.
#[derive(Debug, Default)]
struct Pieces {
    pieces: [Bytes; 3],
    /// The piece being written.
    index: usize,
}

impl Pieces {
    /// Writes what is left; ready once all of it is written.
    fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.index < self.pieces.len() {
            if self.pieces[self.index].is_empty() {
                self.index += 1;
                continue;
            }
            let slices = [
                IoSlice::new(&self.pieces[self.index]),
                IoSlice::new(
                    self.pieces
                        .get(self.index + 1)
                        .map_or(&[][..], |piece| piece),
                ),
                IoSlice::new(
                    self.pieces
                        .get(self.index + 2)
                        .map_or(&[][..], |piece| piece),
                ),
            ];
            let mut written =
                std::task::ready!(Pin::new(&mut *writer).poll_write_vectored(cx, &slices))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let piece = &mut self.pieces[self.index];
                let step = written.min(piece.len());
                let _ = piece.split_to(step);
                written -= step;
                if piece.is_empty() {
                    self.index += 1;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// A streamed request body, boxed: streamed uploads are rare, and the box keeps them out of
/// the type of every response body.
pub type UploadBody = Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>;

/// The body being sent, and its framing.
pub(super) struct Upload {
    body: UploadBody,
    chunked: bool,
    /// Bytes the declared length still expects.
    left: u64,
    pending: Pieces,
    /// The body ended and its end was queued.
    ended: bool,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("chunked", &self.chunked)
            .field("left", &self.left)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// `body`, to be sent framed by `framing`: its declared length, or chunked.
    pub(super) fn new(body: UploadBody, framing: Framing) -> Self {
        Self {
            body,
            chunked: framing == Framing::Chunked,
            left: match framing {
                Framing::Length(length) => length,
                _ => 0,
            },
            pending: Pieces::default(),
            ended: false,
        }
    }

    /// Writes the body as it comes; ready once it was written to its end.
    pub(super) fn poll_send<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ExchangeError>> {
        loop {
            std::task::ready!(self.pending.poll_write(writer, cx)).map_err(ExchangeError::Write)?;
            if self.ended {
                // A TLS stream may still hold the last records.
                std::task::ready!(Pin::new(&mut *writer).poll_flush(cx))
                    .map_err(ExchangeError::Write)?;
                return Poll::Ready(Ok(()));
            }
            let Poll::Ready(frame) = self.body.as_mut().poll_frame(cx) else {
                // While the client's body waits, what was written must reach the backend.
                std::task::ready!(Pin::new(&mut *writer).poll_flush(cx))
                    .map_err(ExchangeError::Write)?;
                return Poll::Pending;
            };
            let data = match frame {
                None => {
                    if !self.chunked && self.left > 0 {
                        return Poll::Ready(Err(ExchangeError::Upload(
                            "the body ended before its declared length".into(),
                        )));
                    }
                    self.ended = true;
                    if self.chunked {
                        self.pending = Pieces {
                            pieces: [Bytes::from_static(LAST_CHUNK), Bytes::new(), Bytes::new()],
                            index: 0,
                        };
                    }
                    continue;
                }
                Some(Err(error)) => return Poll::Ready(Err(ExchangeError::Upload(error))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    // Trailers are not forwarded; empty data says nothing.
                    _ => continue,
                },
            };
            self.pending = if self.chunked {
                let mut size = Vec::with_capacity(18);
                push_chunk_size(&mut size, data.len());
                Pieces {
                    pieces: [Bytes::from(size), data, Bytes::from_static(CHUNK_END)],
                    index: 0,
                }
            } else {
                if data.len() as u64 > self.left {
                    return Poll::Ready(Err(ExchangeError::Upload(
                        "the body is longer than its declared length".into(),
                    )));
                }
                self.left -= data.len() as u64;
                Pieces {
                    pieces: [data, Bytes::new(), Bytes::new()],
                    index: 0,
                }
            };
        }
    }
}
