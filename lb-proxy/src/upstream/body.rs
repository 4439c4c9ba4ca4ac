//! A backend's response body, read from its connection by the task that polls it, framed by
//! the codec: a length, the chunked coding, or the connection's end. Once read to its end, the
//! connection can go back to the pool ([`ResponseBody::take_finished_connection`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::connection::{Connection, ExchangeError};
use super::h2::H2Stream;
use super::tunnel::{H2Tunnel, TunnelBackend};
use super::upload::Upload;
use crate::proto::h1::chunked::{ChunkedDecoder, ChunkedError, Decoded};
use crate::proto::h1::framing::Framing;

/// Why reading a response body failed; the client's response is then cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    /// The socket failed.
    #[error("reading the response body failed: {0}")]
    Io(#[from] io::Error),
    /// The backend closed the connection before the body's declared end.
    #[error("the backend closed the connection before the end of the response body")]
    Incomplete,
    /// The chunked coding is malformed.
    #[error("malformed chunked response body: {0}")]
    Chunk(#[from] ChunkedError),
    /// The client's request body, still being sent, failed.
    #[error(transparent)]
    Upload(ExchangeError),
    /// The backend's HTTP/2 stream failed (reset, connection lost).
    #[error("the backend's HTTP/2 stream failed: {0}")]
    Http2(#[source] hyper::Error),
    /// The backend's HTTP/2 stream ended before the body's declared length.
    #[error("the backend's HTTP/2 stream ended before the end of the response body")]
    Http2Short,
}

/// Where the body is.
#[derive(Debug)]
enum State {
    /// This many bytes left.
    Length(u64),
    /// Chunked, at the decoder's place.
    Chunked(ChunkedDecoder),
    /// Until the backend closes.
    UntilClose,
    /// Read to its end (or failed).
    Done,
    /// An HTTP/2 stream's body (no connection of ours: the stream holds its place). Boxed:
    /// the HTTP/1 body stays small.
    Http2(Box<H2Stream>),
    /// An HTTP/2 stream the backend accepted as a tunnel (extended `CONNECT`): no body, the
    /// stream is the tunnel's ([`ResponseBody::take_upgraded`]).
    Tunnel(Box<H2Tunnel>),
}

/// A backend's response body.
#[derive(Debug)]
pub struct ResponseBody {
    connection: Option<Connection>,
    state: State,
    /// Whether the connection may carry another exchange once the body is read.
    reusable: bool,
    /// The request body still being sent, when the backend answered before its end.
    upload: Option<Box<Upload>>,
}

impl ResponseBody {
    /// The body framed by `framing` on `connection`.
    pub(super) fn new(connection: Connection, framing: Framing, reusable: bool) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => State::UntilClose,
        };
        Self {
            connection: Some(connection),
            state,
            reusable,
            upload: None,
        }
    }

    /// The body of an HTTP/2 stream.
    pub(super) fn http2(stream: Box<H2Stream>) -> Self {
        Self {
            connection: None,
            state: State::Http2(stream),
            reusable: false,
            upload: None,
        }
    }

    /// An HTTP/2 stream the backend accepted as a tunnel.
    pub(super) fn tunnel(tunnel: Box<H2Tunnel>) -> Self {
        Self {
            connection: None,
            state: State::Tunnel(tunnel),
            reusable: false,
            upload: None,
        }
    }

    /// Whether this is an HTTP/2 stream accepted as a tunnel.
    pub fn is_tunnel(&self) -> bool {
        matches!(self.state, State::Tunnel(_))
    }

    /// Whether an HTTP/2 backend ended the stream with the response head: nothing of the body
    /// or trailers will follow (gRPC's trailers-only response). False for HTTP/1 bodies.
    pub fn ended_with_head(&self) -> bool {
        match &self.state {
            State::Http2(stream) => stream.ended_with_head(),
            _ => false,
        }
    }

    /// Goes on sending `upload` while the body is read: whenever the body is polled.
    pub(super) fn continue_upload(&mut self, upload: Box<Upload>) {
        self.upload = Some(upload);
    }

    /// Sends more of the request body, if some is left; a finished upload is dropped, and one
    /// the backend stopped reading makes the connection unusable.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Result<(), BodyReadError> {
        let (Some(upload), Some(connection)) = (&mut self.upload, &mut self.connection) else {
            return Ok(());
        };
        match upload.poll_send(&mut connection.stream, cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(Ok(())) => {
                self.upload = None;
                Ok(())
            }
            Poll::Ready(Err(ExchangeError::Write(_))) => {
                self.upload = None;
                self.reusable = false;
                Ok(())
            }
            Poll::Ready(Err(error)) => Err(BodyReadError::Upload(error)),
        }
    }

    /// The connection, once the body was read to its end and the connection may carry another
    /// exchange: reusable, and nothing read beyond this response.
    pub fn take_finished_connection(&mut self) -> Option<Connection> {
        let finished = matches!(self.state, State::Done)
            && self.reusable
            && self.upload.is_none()
            && self
                .connection
                .as_ref()
                .is_some_and(|connection| connection.buffer.is_empty());
        if finished {
            self.connection.take()
        } else {
            None
        }
    }

    /// The connection of a `101` answer, or the HTTP/2 stream of an accepted extended
    /// `CONNECT`, for the tunnel: its body is empty and the connection never goes back to the
    /// pool.
    pub fn take_upgraded(&mut self) -> Option<TunnelBackend> {
        debug_assert!(!self.reusable && self.upload.is_none());
        if let State::Tunnel(_) = self.state {
            let State::Tunnel(tunnel) = std::mem::replace(&mut self.state, State::Done) else {
                unreachable!("matched above");
            };
            return Some(TunnelBackend::Http2(tunnel));
        }
        self.connection.take().map(TunnelBackend::Http1)
    }

    fn fail(&mut self, error: BodyReadError) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        self.state = State::Done;
        self.connection = None;
        Poll::Ready(Some(Err(error)))
    }

    /// Reads more into the connection's buffer; a clean end of stream is `Ok(0)`.
    fn fill(connection: &mut Connection, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        connection.poll_fill(cx)
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyReadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        let this = self.get_mut();
        if let State::Http2(stream) = &mut this.state {
            return stream.poll_frame(cx);
        }
        if let Err(error) = this.poll_upload(cx) {
            return this.fail(error);
        }
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.state {
                State::Done | State::Http2(_) | State::Tunnel(_) => return Poll::Ready(None),
                State::Length(left) => {
                    if connection.buffer.is_empty() {
                        match ready!(Self::fill(connection, cx)) {
                            Ok(0) => return this.fail(BodyReadError::Incomplete),
                            Ok(_) => {}
                            Err(error) => return this.fail(error.into()),
                        }
                    }
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(connection.buffer.len());
                    let data = connection.buffer.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        this.state = State::Done;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::UntilClose => {
                    if connection.buffer.is_empty() {
                        match ready!(Self::fill(connection, cx)) {
                            Ok(0) => {
                                this.state = State::Done;
                                this.reusable = false;
                                return Poll::Ready(None);
                            }
                            Ok(_) => {}
                            Err(error) => return this.fail(error.into()),
                        }
                    }
                    let data = connection.buffer.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(decoder) => match decoder.decode(&mut connection.buffer) {
                    Err(error) => return this.fail(error.into()),
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::End) => {
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => match ready!(Self::fill(connection, cx)) {
                        Ok(0) => return this.fail(BodyReadError::Incomplete),
                        Ok(_) => {}
                        Err(error) => return this.fail(error.into()),
                    },
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Done | State::Tunnel(_) => true,
            State::Http2(stream) => stream.is_end_stream(),
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Done | State::Tunnel(_) => SizeHint::with_exact(0),
            State::Length(left) => SizeHint::with_exact(*left),
            State::Http2(stream) => stream.size_hint(),
            _ => SizeHint::default(),
        }
    }
}
