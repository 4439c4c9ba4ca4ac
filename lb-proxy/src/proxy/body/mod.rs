//! Body types of the request path, named by the way their bytes flow.
//!
//! - [`FromClient`]: the client's request body as received: from our own HTTP/1 loop through a
//!   [`pipe`], from an HTTP/2 stream ([`from_h2`]), or from hyper (HTTP/1 on an h2c listener).
//! - [`ToBackend`]: what is sent to a backend — nothing, a buffered body that can be replayed
//!   on a retry, the client's body streamed through a byte limit ([`LimitedBody`]), or streamed
//!   with a copy kept for a retry ([`replay`]: gRPC calls of pools that retry gRPC statuses).
//! - [`ToClient`]: what is sent back to the client — a short text of the balancer's own, or the
//!   backend's body streamed through, carrying the request's in-flight slot and metrics until the
//!   last byte (or the client going away) so that counters can never leak.

pub mod budget;
pub mod from_h2;
pub mod pipe;
pub mod replay;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::metrics::RouteHandles;
use crate::upstream::backend::InFlight;
use crate::upstream::body::BodyReadError;
use crate::upstream::{Connection, ResponseBody, TunnelBackend};
pub use from_h2::H2Body;
pub use pipe::{Pipe, PipeBody, PipeError};

pub use crate::upstream::BoxError;

/// The client's request body as received.
#[derive(Debug)]
pub enum FromClient {
    /// Read by our own HTTP/1 loop.
    Pipe(PipeBody),
    /// Read from an HTTP/2 stream by our own driver of h2.
    H2(H2Body),
    /// Read by hyper's HTTP/1 server (the differential test's reference).
    Hyper(Incoming),
}

impl FromClient {
    /// The room its connection has for small bodies read in full: on HTTP/2 only, where one
    /// connection carries many requests.
    pub(crate) fn buffer_budget(&self) -> Option<&Arc<budget::BufferBudget>> {
        match self {
            FromClient::H2(body) => Some(body.budget()),
            FromClient::Pipe(_) | FromClient::Hyper(_) => None,
        }
    }
}

impl Body for FromClient {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            FromClient::Pipe(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            FromClient::H2(body) => Pin::new(body).poll_frame(cx),
            FromClient::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            FromClient::Pipe(body) => body.is_end_stream(),
            FromClient::H2(body) => body.is_end_stream(),
            FromClient::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            FromClient::Pipe(body) => body.size_hint(),
            FromClient::H2(body) => body.size_hint(),
            FromClient::Hyper(body) => body.size_hint(),
        }
    }
}

/// Errors a request body can yield while streaming.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent more than `server.max_request_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The client's stream failed (closed, malformed chunk, ...).
    #[error(transparent)]
    Client(BoxError),
}

/// The request body sent to a backend.
#[derive(Debug)]
pub enum ToBackend {
    /// No body.
    Empty,
    /// A body read in full, and so replayable.
    Buffered(Bytes),
    /// The client's body streamed through a limit.
    Streaming(LimitedBody),
    /// The client's body streamed through a limit, a copy kept so that it can be sent again.
    Replayed(Arc<replay::Replay<LimitedBody>>),
}

impl ToBackend {
    /// The streamed body, taken out (it is sent once); `None` for a body known up front and
    /// for one already [`Replayed`](ToBackend::Replayed).
    pub fn take_streaming(&mut self) -> Option<LimitedBody> {
        match std::mem::replace(self, ToBackend::Empty) {
            ToBackend::Streaming(body) => Some(body),
            other => {
                *self = other;
                None
            }
        }
    }

    /// The body an attempt streams: the client's, taken out (it is sent once), or the next
    /// attempt's of a replayed one; `None` for a body known up front.
    pub fn take_upload(&mut self) -> Option<crate::upstream::UploadBody> {
        match self {
            ToBackend::Empty | ToBackend::Buffered(_) => None,
            ToBackend::Streaming(_) => {
                (self.take_streaming()).map(|body| -> crate::upstream::UploadBody {
                    Box::pin(http_body_util::BodyExt::map_err(body, Into::into))
                })
            }
            ToBackend::Replayed(replay) => Some(Box::pin(replay.body())),
        }
    }

    /// Whether a streamed body can be sent on another attempt: a replayed one whose copy is
    /// still kept, or the client's own that no attempt took yet (an HTTP/2 backend's connect
    /// runs before the body is taken, so a failed connect leaves it for the next backend).
    pub fn may_replay(&self) -> bool {
        match self {
            ToBackend::Replayed(replay) => replay.kept(),
            ToBackend::Streaming(_) => true,
            _ => false,
        }
    }

    /// Readies a replayed body for another attempt (cutting the last attempt's off); false
    /// when it can no longer be sent again. Other bodies need nothing.
    pub fn rewind(&self) -> bool {
        match self {
            ToBackend::Replayed(replay) => replay.rewind(),
            _ => true,
        }
    }

    /// The call is committed to the attempt in flight: a replayed body keeps no more copy.
    pub fn commit(&self) {
        if let ToBackend::Replayed(replay) = self {
            replay.commit();
        }
    }

    /// The bytes of a body known up front (empty for none).
    pub fn buffered(&self) -> &[u8] {
        match self {
            ToBackend::Buffered(bytes) => bytes,
            _ => &[],
        }
    }
}

/// What went wrong with the client's side of a body, so that the request path answers 413 or
/// 400 (and does not blame the backend) when forwarding fails because of the client; and how
/// many of its bytes arrived, for the access log.
#[derive(Debug, Default)]
pub struct BodyFault(AtomicU8, AtomicU64);

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

    /// Request body bytes received so far.
    pub fn received(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }

    fn raise(&self, fault: u8) {
        self.0.store(fault, Ordering::Relaxed);
    }
}

/// The client's request body, counted and cut off past `limit` bytes.
#[derive(Debug)]
pub struct LimitedBody {
    inner: FromClient,
    seen: u64,
    limit: u64,
    /// Raised when the limit was crossed or the client's framing failed.
    fault: Arc<BodyFault>,
}

impl LimitedBody {
    /// The room its HTTP/2 connection has for bodies held in memory.
    pub(crate) fn buffer_budget(&self) -> Option<&Arc<budget::BufferBudget>> {
        self.inner.buffer_budget()
    }

    /// Wraps `inner`; `fault` is raised if more than `limit` bytes arrive or the stream fails.
    pub fn new(inner: FromClient, limit: u64, fault: Arc<BodyFault>) -> Self {
        Self {
            inner,
            seen: 0,
            limit,
            fault,
        }
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
                    self.fault.1.store(self.seen, Ordering::Relaxed);
                    if self.seen > self.limit {
                        self.fault.raise(TOO_LARGE);
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit: self.limit })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                self.fault.raise(MALFORMED);
                Poll::Ready(Some(Err(BodyError::Client(error))))
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
    /// The metric handles of the request's route on this backend.
    pub route: Arc<RouteHandles>,
    /// The access-log record, written when the body ends; `None` with the log off.
    pub log: Option<Box<super::logged::Logged>>,
}

impl Drop for Completion {
    fn drop(&mut self) {
        let now = crate::clock::now();
        let backend = self.in_flight.backend();
        (self.route.duration).observe(now.saturating_duration_since(self.started).as_secs_f64());
        backend.metrics.response_size.observe(self.sent as f64);
        if let Some(connection) = self.connection.take() {
            backend.pool.put(connection, now);
        }
        if let Some(logged) = self.log.take() {
            logged.finish(self.sent, now);
        }
    }
}

/// The response body sent to the client.
// `Proxied` is the common case and `Fixed` the rare one: boxing the large variant would add an
// allocation to every proxied response to save bytes on refusals.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ToClient {
    /// A short, fixed text (errors, refusals).
    Fixed(Option<Bytes>),
    /// A backend's body, streamed through.
    Proxied {
        /// The backend's response body.
        inner: ResponseBody,
        /// Recorded when this body is dropped.
        completion: Completion,
    },
}

impl ToClient {
    /// A backend's body; `completion` is recorded when it is dropped, and gets the connection
    /// back for the pool if the body is read to its end.
    pub fn proxied(mut inner: ResponseBody, mut completion: Completion) -> Self {
        completion.connection = inner.take_finished_connection();
        ToClient::Proxied { inner, completion }
    }
}

impl ToClient {
    /// The backend's end of a switched connection, when this is the (empty) body of a `101`
    /// that answered an upgrade request: the connection and the backend's in-flight slot,
    /// which the tunnel holds until it closes. The body is left empty.
    pub fn take_upgraded(&mut self) -> Option<Upgraded> {
        let ToClient::Proxied { inner, .. } = self else {
            return None;
        };
        let connection = inner.take_upgraded()?;
        let ToClient::Proxied { completion, .. } = std::mem::replace(self, ToClient::Fixed(None))
        else {
            unreachable!("matched above");
        };
        completion.in_flight.backend().metrics.upgraded.inc();
        Some(Upgraded {
            connection,
            guard: TunnelGuard { completion },
        })
    }
}

/// A connection a backend switched to another protocol with `101`, and what the tunnel over it
/// holds while open. The connection never returns to the pool.
#[derive(Debug)]
pub struct Upgraded {
    /// The backend connection (its buffer holds what the backend sent after the `101`), or
    /// the HTTP/2 stream that took an extended `CONNECT`.
    pub connection: TunnelBackend,
    /// The backend's slot, held until the tunnel closes.
    pub guard: TunnelGuard,
}

/// An open tunnel's hold on its backend: the in-flight slot (it counts against
/// `max_connections` and for least connections) and `lb_upgraded_connections{backend}`, both
/// given back on drop; the request's metrics are recorded then.
#[derive(Debug)]
pub struct TunnelGuard {
    completion: Completion,
}

impl TunnelGuard {
    /// Notes the bytes the tunnel carried to the client, for the response size metric.
    pub fn sent(&mut self, bytes: u64) {
        self.completion.sent = bytes;
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.completion.in_flight.backend().metrics.upgraded.dec();
    }
}

impl Body for ToClient {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ToClient::Fixed(bytes) => Poll::Ready(bytes.take().map(|data| Ok(Frame::data(data)))),
            ToClient::Proxied { inner, completion } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &frame {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            completion.sent += data.len() as u64;
                        }
                    }
                    // The client's upload failing is the client's doing, not the backend's.
                    Some(Err(BodyReadError::Upload(_))) | None => {}
                    Some(Err(_)) => {
                        completion.in_flight.backend().metrics.body_failures.inc();
                        if let Some(logged) = &mut completion.log {
                            logged.record.body_failed = true;
                        }
                    }
                }
                // The server may not poll again once the declared length is reached.
                if completion.connection.is_none() && (frame.is_none() || inner.is_end_stream()) {
                    completion.connection = inner.take_finished_connection();
                }
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ToClient::Fixed(bytes) => bytes.is_none(),
            ToClient::Proxied { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ToClient::Fixed(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |data| data.len() as u64))
            }
            ToClient::Proxied { inner, .. } => inner.size_hint(),
        }
    }
}
