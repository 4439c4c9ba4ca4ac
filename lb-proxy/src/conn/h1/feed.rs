//! The client's side of a request in flight on our own HTTP/1 loop ([`ClientSide`]): the
//! request body is read from the socket only when the request path (or the upload it drives
//! while the response streams back) asks for more, decoded by the codec, with `100 Continue`
//! first when the client waits for it; once no body is left to read, the socket is watched — a
//! client that goes away ends the request, and a pipelined request waits in the buffer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;

use crate::conn::stream::ClientStream;
use crate::conn::timed_io::TimedIo;
use crate::proto::h1::chunked::{ChunkedDecoder, Decoded};
use crate::proto::h1::framing::Framing;
use crate::proxy::body::{Pipe, PipeError};

/// Read buffer room asked for before each read of a body.
const BODY_READ_CHUNK: usize = 16 * 1024;
/// Small chunks decoded together are joined up to this size before they are handed over.
const GATHER_BYTES: usize = 64 * 1024;
/// The interim answer to a client that waits before sending its body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The client's side of one request: its body still to read, and the connection's buffer.
pub(super) struct ClientSide<'a> {
    /// The request body, while some of it is left to read.
    pub feeder: Option<Feeder>,
    /// The connection's read buffer.
    pub buffer: &'a mut BytesMut,
    /// At most this many bytes of a next request are buffered.
    pub max_head_bytes: usize,
}

impl ClientSide<'_> {
    /// Whether part of the request body was never read.
    pub fn unread(&self) -> bool {
        self.feeder.as_ref().is_some_and(|feeder| !feeder.complete)
    }

    /// While the request path or the response waits: feeds the request body when it is asked
    /// for, or else reads what the client sends next. Ready with `Ok` when something changed
    /// (the waiting side should be polled again), with an error when the client went away or
    /// the connection was idle too long; pending otherwise.
    pub fn poll<S: ClientStream>(
        &mut self,
        io: &mut TimedIo<S>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(feeder) = &mut self.feeder
            && !feeder.ended
        {
            return feeder.poll_feed(io, self.buffer, cx).map(Ok);
        }
        while self.buffer.len() < self.max_head_bytes {
            super::reserve(self.buffer, self.max_head_bytes);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut *self.buffer) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Nothing more is read: only the timers are left to watch.
        io.poll_idle(cx).map(Err)
    }
}

/// How the rest of the request body is delimited.
enum Remaining {
    /// This many bytes.
    Length(u64),
    /// Chunked, at the decoder's place.
    Chunked(ChunkedDecoder),
}

/// Feeds the request body from the connection into the request path's pipe.
pub(super) struct Feeder {
    pipe: Arc<Pipe>,
    remaining: Remaining,
    /// Bytes of `100 Continue` still to write; empty when none is due.
    continue_left: &'static [u8],
    /// The body was read in full, or failed: nothing more to feed.
    ended: bool,
    /// The body was read in full.
    complete: bool,
}

impl Feeder {
    pub(super) fn new(pipe: Arc<Pipe>, framing: Framing, continue_due: bool) -> Self {
        let remaining = match framing {
            Framing::Chunked => Remaining::Chunked(ChunkedDecoder::new()),
            Framing::Length(length) => Remaining::Length(length),
            Framing::UntilClose => unreachable!("a request body is never delimited by the close"),
        };
        Self {
            pipe,
            remaining,
            continue_left: if continue_due { CONTINUE } else { b"" },
            ended: false,
            complete: false,
        }
    }

    fn end(&mut self, end: Result<(), PipeError>) -> Poll<()> {
        self.complete = end.is_ok();
        self.ended = true;
        self.pipe.end(end);
        Poll::Ready(())
    }

    /// Hands over `first` and the chunks decoded right behind it in `buffer`, joined up to
    /// [`GATHER_BYTES`]: many small chunks then cost one hand-over and one upstream write, not
    /// one each.
    fn push_chunks(&mut self, first: Bytes, buffer: &mut BytesMut) -> Poll<()> {
        let Remaining::Chunked(decoder) = &mut self.remaining else {
            unreachable!("only chunked bodies have chunks");
        };
        let mut gathered: Option<BytesMut> = None;
        let end = loop {
            let size = gathered.as_ref().map_or(first.len(), BytesMut::len);
            if size >= GATHER_BYTES {
                break None;
            }
            match decoder.decode(buffer) {
                Ok(Decoded::Data(more)) => gathered
                    .get_or_insert_with(|| BytesMut::from(&first[..]))
                    .extend_from_slice(&more),
                Ok(Decoded::NeedMore) => break None,
                Ok(Decoded::End) => break Some(Ok(())),
                Err(error) => break Some(Err(PipeError::Malformed(error))),
            }
        };
        self.pipe.push(gathered.map_or(first, BytesMut::freeze));
        match end {
            Some(end) => self.end(end),
            None => Poll::Ready(()),
        }
    }

    /// When the request path wants more of the body: hands it the next piece (from `buffer`,
    /// reading the socket when it is empty). Ready once something was handed over or the body
    /// ended; pending while nothing is wanted or nothing has arrived.
    fn poll_feed<S: ClientStream>(
        &mut self,
        io: &mut TimedIo<S>,
        buffer: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if !self.pipe.poll_wanted(cx) {
            return Poll::Pending;
        }
        while !self.continue_left.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, self.continue_left) {
                Poll::Ready(Ok(written @ 1..)) => {
                    self.continue_left = &self.continue_left[written..];
                }
                Poll::Ready(_) => return self.end(Err(PipeError::Io)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // A TLS stream may hold the `100 Continue` it took until flushed.
        if S::BUFFERS_WRITES {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return self.end(Err(PipeError::Io)),
                Poll::Pending => return Poll::Pending,
            }
        }
        loop {
            match &mut self.remaining {
                Remaining::Length(0) => return self.end(Ok(())),
                Remaining::Length(left) if !buffer.is_empty() => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(buffer.len());
                    *left -= take as u64;
                    self.pipe.push(buffer.split_to(take).freeze());
                    if *left == 0 {
                        return self.end(Ok(()));
                    }
                    return Poll::Ready(());
                }
                Remaining::Length(_) => {}
                Remaining::Chunked(decoder) => match decoder.decode(buffer) {
                    Ok(Decoded::Data(data)) => return self.push_chunks(data, buffer),
                    Ok(Decoded::End) => return self.end(Ok(())),
                    Ok(Decoded::NeedMore) => {}
                    Err(error) => return self.end(Err(PipeError::Malformed(error))),
                },
            }
            if buffer.capacity() - buffer.len() < 1024 {
                buffer.reserve(BODY_READ_CHUNK);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut *buffer) {
                Poll::Ready(Ok(0)) => return self.end(Err(PipeError::Closed)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(_)) => return self.end(Err(PipeError::Io)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
