//! Body types of the request path.
//!
//! - [`UpstreamBody`]: what is sent to a backend — nothing, a buffered body that can be replayed
//!   on a retry, or the client's body streamed through a byte limit.
//! - [`ClientBody`]: what is sent back to the client — a short error text, or the backend's body
//!   streamed through, carrying the request's in-flight slot and metrics until the last byte (or
//!   the client going away) so that counters can never leak.
//! - [`BackendBody`]: the backend's body as read by our own HTTP/1.1 client, or by hyper's for
//!   a streamed upload.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::backend::InFlight;
use crate::idle::BusyGuard;
use crate::upstream::h1::RawHead;
use crate::upstream::{Connection, ResponseBody};

/// A body error of any kind, as hyper's server takes it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors a body can yield while streaming.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent more than `server.max_request_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The peer's stream failed (reset, malformed chunk, ...).
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// The request body sent to a backend.
#[derive(Debug)]
pub enum UpstreamBody {
    /// No body.
    Empty,
    /// A body read in full (and so replayable); `None` once sent.
    Buffered(Option<Bytes>),
    /// The client's body streamed through a limit.
    Streaming(LimitedBody),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Buffered(bytes) => {
                Poll::Ready(bytes.take().map(|data| Ok(Frame::data(data))))
            }
            UpstreamBody::Streaming(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Buffered(bytes) => bytes.is_none(),
            UpstreamBody::Streaming(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |data| data.len() as u64))
            }
            UpstreamBody::Streaming(body) => body.size_hint(),
        }
    }
}

/// What went wrong with the client's side of a body, so that the request path answers 413 or
/// 400 (and does not blame the backend) when forwarding fails because of the client.
#[derive(Debug, Default)]
pub struct BodyFault(AtomicU8);

const TOO_LARGE: u8 = 1;
const MALFORMED: u8 = 2;

impl BodyFault {
    /// The body crossed `server.max_request_body_bytes`.
    pub fn too_large(&self) -> bool {
        self.0.load(Ordering::Relaxed) == TOO_LARGE
    }

    /// The client's framing was bad (invalid chunk, missing CRLF) or the client went away.
    pub fn malformed(&self) -> bool {
        self.0.load(Ordering::Relaxed) == MALFORMED
    }

    fn raise(&self, fault: u8) {
        self.0.store(fault, Ordering::Relaxed);
    }
}

/// The client's request body, counted and cut off past `limit` bytes.
#[derive(Debug)]
pub struct LimitedBody {
    inner: Incoming,
    seen: u64,
    limit: u64,
    /// Raised when the limit was crossed or the client's framing failed.
    fault: Arc<BodyFault>,
    /// Keeps the client connection from being released while its body is still arriving.
    _busy: Option<BusyGuard>,
}

impl LimitedBody {
    /// Wraps `inner`; `fault` is raised if more than `limit` bytes arrive or the stream fails.
    pub fn new(inner: Incoming, limit: u64, fault: Arc<BodyFault>) -> Self {
        Self {
            inner,
            seen: 0,
            limit,
            fault,
            _busy: None,
        }
    }

    /// Keeps `busy` until this body is dropped.
    pub fn holding(mut self, busy: BusyGuard) -> Self {
        self._busy = Some(busy);
        self
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.limit {
                        self.fault.raise(TOO_LARGE);
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit: self.limit })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                self.fault.raise(MALFORMED);
                Poll::Ready(Some(Err(error.into())))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the request path records when a response has been fully sent (or abandoned).
#[derive(Debug)]
pub struct Completion {
    /// The backend's in-flight slot, given back on drop.
    pub in_flight: InFlight,
    /// When the request arrived.
    pub started: Instant,
    /// Response body bytes sent so far.
    pub sent: u64,
    /// The upstream connection, once the body was read to its end and the connection may carry
    /// another exchange: given back to the backend's pool on drop.
    pub connection: Option<Connection>,
    /// Whether the backend's body was read to its end.
    pub complete: bool,
}

impl Drop for Completion {
    fn drop(&mut self) {
        let now = Instant::now();
        let backend = self.in_flight.backend();
        backend
            .metrics
            .duration
            .observe(now.saturating_duration_since(self.started).as_secs_f64());
        backend.metrics.response_size.observe(self.sent as f64);
        if let Some(connection) = self.connection.take() {
            backend.pool.put(connection, now);
        }
    }
}

/// A backend's response body.
#[derive(Debug)]
pub enum BackendBody {
    /// Read by our own HTTP/1.1 client; holds its connection until the end.
    Own(ResponseBody),
    /// Read by hyper's client (the answer to a streamed upload).
    Hyper(Incoming),
}

impl BackendBody {
    /// The connection for the pool, once the body was read to its end and it may be reused.
    fn take_finished_connection(&mut self) -> Option<Connection> {
        match self {
            BackendBody::Own(body) => body.take_finished_connection(),
            BackendBody::Hyper(_) => None,
        }
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            BackendBody::Own(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            BackendBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            BackendBody::Own(body) => body.is_end_stream(),
            BackendBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            BackendBody::Own(body) => body.size_hint(),
            BackendBody::Hyper(body) => body.size_hint(),
        }
    }
}

/// The response body sent to the client.
// `Proxied` is the common case and `Fixed` the rare one: boxing the large variant would add an
// allocation to every proxied response to save bytes on refusals.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ClientBody {
    /// A short, fixed text (errors, refusals).
    Fixed(Option<Bytes>),
    /// A backend's body, streamed through.
    Proxied {
        /// The backend's response body.
        inner: BackendBody,
        /// Recorded when this body is dropped.
        completion: Completion,
    },
}

impl ClientBody {
    /// A fixed body.
    pub fn fixed(text: &'static str) -> Self {
        ClientBody::Fixed(Some(Bytes::from_static(text.as_bytes())))
    }
}

impl ClientBody {
    /// The backend's response head lines, when our client kept them as received: the response
    /// map is then empty, and these lines are the response's headers.
    pub fn raw_head(&self) -> Option<&RawHead> {
        match self {
            ClientBody::Proxied {
                inner: BackendBody::Own(body),
                ..
            } => body.raw_head(),
            _ => None,
        }
    }

    /// Takes the lines [`ClientBody::raw_head`] returns, to put them into a header map.
    pub fn take_raw_head(&mut self) -> Option<RawHead> {
        match self {
            ClientBody::Proxied {
                inner: BackendBody::Own(body),
                ..
            } => body.take_raw_head(),
            _ => None,
        }
    }

    /// A backend's body; `completion` is recorded when it is dropped, and gets the connection
    /// back for the pool if the body is read to its end.
    pub fn proxied(mut inner: BackendBody, mut completion: Completion) -> Self {
        completion.complete = inner.is_end_stream();
        completion.connection = inner.take_finished_connection();
        ClientBody::Proxied { inner, completion }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Fixed(bytes) => Poll::Ready(bytes.take().map(|data| Ok(Frame::data(data)))),
            ClientBody::Proxied { inner, completion } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &frame {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            completion.sent += data.len() as u64;
                        }
                        // The server may not poll again once the declared length is reached.
                        completion.complete = inner.is_end_stream();
                    }
                    None => completion.complete = true,
                    Some(Err(_)) => completion.complete = false,
                }
                if completion.complete && completion.connection.is_none() {
                    completion.connection = inner.take_finished_connection();
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Fixed(bytes) => bytes.is_none(),
            ClientBody::Proxied { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Fixed(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |data| data.len() as u64))
            }
            ClientBody::Proxied { inner, .. } => inner.size_hint(),
        }
    }
}

/// A response body that keeps its client connection from being released until it is dropped.
#[derive(Debug)]
pub struct TrackedBody {
    inner: ClientBody,
    _busy: BusyGuard,
}

impl TrackedBody {
    /// `inner`, holding `busy`.
    pub fn new(inner: ClientBody, busy: BusyGuard) -> Self {
        Self { inner, _busy: busy }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
