//! HTTP/2 to a backend (`protocol: h2c`, cleartext with prior knowledge, or `h2`, over TLS
//! agreed by ALPN), with hyper's HTTP/2 client.
//!
//! Streams to one backend share its connections: a stream takes the first open connection
//! carrying fewer streams than its room — `upstream.http2.max_streams_per_connection`, or the
//! backend's own SETTINGS_MAX_CONCURRENT_STREAMS on that connection when lower (hyper obeys it
//! but does not tell it, so [`super::h2_limit`] reads it off the connection's bytes) — and a
//! connection is opened only when none has room, up to
//! `upstream.http2.max_connections_per_backend`; past that the least loaded one takes the
//! stream, which waits in hyper for the backend's room. Opening is serialised per backend, so a
//! burst of streams shares the first new connection rather than opening one each.
//!
//! The backend's in-flight count (least connections, `max_connections`, the breaker, the queue)
//! counts streams exactly as it counts HTTP/1 requests: the slot rides on the response body.
//!
//! A connection hyper reports closed, or that refused a stream (GOAWAY, REFUSED_STREAM), takes
//! no new stream. Such a refusal means the backend never processed the request (RFC 9113 §8.7),
//! so a request whose body can be sent again is sent once more on another connection, and
//! otherwise the failure is classed as a refused connect: lb-core may retry it even for POST,
//! as gRPC's rules allow for a call that never reached the server. When the backend leaves,
//! its connections are dropped from the pool, and hyper closes each once its streams end.
//!
//! A WebSocket upgrade is an extended `CONNECT` here (RFC 8441), sent only on a connection whose
//! backend advertised SETTINGS_ENABLE_CONNECT_PROTOCOL ([`StreamSlot::extended_connect`]); the
//! backend's `2xx` hands the stream over as the tunnel's ([`super::tunnel`]), which keeps its
//! place on the connection until it closes. Tunnels may stay open for hours: the connections
//! their streams fill (at the smallest room a connection has) are added to
//! `max_connections_per_backend`, so that requests never wait behind them (the backend's
//! `max_connections`, which tunnels count against, bounds them).
//!
//! A connection with streams open that received nothing for
//! `upstream.http2.keepalive_interval` is sent a PING (hyper's keep-alive, only while streams
//! are open); one not acknowledged within `upstream.http2.keepalive_timeout` closes it: its
//! streams fail, it takes no new stream, and the next stream opens a new connection. Each such
//! close is logged and counted (`lb_upstream_http2_ping_timeouts_total{backend}`).

use std::error::Error as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::uri::Scheme;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use lb_core::config::UpstreamConfig;
use lb_core::retry::FailureKind;
use prometheus_client::metrics::counter::Counter;

use super::body::{BodyReadError, ResponseBody};
use super::connection::ExchangeError;
use super::h2_limit::{LimitTap, PeerLimit};
use super::stream::UpstreamStream;
use super::tunnel::H2Tunnel;
use super::{BoxError, Pool, SendFailure, UploadBody};
use crate::clock;
use crate::proto::h1::framing::Framing;
use crate::proto::h1::response::ResponseHead;

/// The request body type of every HTTP/2 connection.
pub type H2Body = UnsyncBoxBody<Bytes, BoxError>;

/// The HTTP/2 connections to one backend.
#[derive(Debug)]
pub struct H2Pool {
    /// Open connections, oldest first.
    connections: Mutex<Vec<Arc<H2Connection>>>,
    /// Held while a connection opens, so that streams arriving meanwhile wait for it.
    opening: tokio::sync::Mutex<()>,
    /// When the last connect failed, and how: streams that waited for that connect fail with
    /// it rather than each trying (and waiting for `connect_timeout`) in turn.
    failed: Mutex<Option<(Instant, FailureKind)>>,
    /// `upstream.http2.max_streams_per_connection`.
    max_streams: AtomicUsize,
    /// `upstream.http2.max_connections_per_backend`.
    max_connections: AtomicUsize,
    /// `upstream.http2.keepalive_interval` in nanoseconds, zero when off; new connections
    /// take it.
    keepalive_interval_ns: AtomicU64,
    /// `upstream.http2.keepalive_timeout` in nanoseconds.
    keepalive_timeout_ns: AtomicU64,
    /// `lb_upstream_http2_ping_timeouts_total` of this backend.
    ping_timeouts: Counter,
    /// Streams carrying tunnels now (WebSocket): they may stay open for hours, so the room they
    /// take is added to `max_connections`, and requests never queue behind them.
    tunnels: Arc<AtomicUsize>,
    /// `https` over TLS (`h2`), `http` for `h2c`: the `:scheme` of requests.
    scheme: Scheme,
}

/// One HTTP/2 connection to a backend.
#[derive(Debug)]
struct H2Connection {
    /// hyper's handle; cloned per stream.
    sender: SendRequest<H2Body>,
    /// Streams open on it now.
    streams: AtomicUsize,
    /// Streams the backend allows on it (its SETTINGS_MAX_CONCURRENT_STREAMS).
    peer_limit: PeerLimit,
    /// Set when the connection ended or refused a stream: it takes no new stream.
    retired: Arc<AtomicBool>,
    /// When its last stream ended, for the idle sweep.
    idle_since: Mutex<Instant>,
    /// A WebSocket was refused on it for want of extended `CONNECT` (logged once).
    refused_websocket: AtomicBool,
}

impl H2Connection {
    fn usable(&self) -> bool {
        !self.retired.load(Ordering::Relaxed) && !self.sender.is_closed()
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// Whether it can take another stream with at most `max_streams` on it.
    fn has_room(&self, max_streams: usize) -> bool {
        let room = max_streams.min(self.peer_limit.get());
        self.streams.load(Ordering::Relaxed) < room
    }
}

/// A stream's place on its connection, given back when the response body is dropped.
#[derive(Debug)]
pub struct StreamSlot {
    connection: Arc<H2Connection>,
}

impl StreamSlot {
    fn take(connection: &Arc<H2Connection>) -> Self {
        connection.streams.fetch_add(1, Ordering::Relaxed);
        Self {
            connection: connection.clone(),
        }
    }

    /// Whether the backend takes extended `CONNECT` (WebSocket) on this slot's connection.
    pub fn extended_connect(&self) -> bool {
        self.connection.peer_limit.extended_connect()
    }

    /// True the first time a WebSocket is refused on this slot's connection: the operator is
    /// told once per connection, not once per client.
    pub fn first_websocket_refusal(&self) -> bool {
        !self
            .connection
            .refused_websocket
            .swap(true, Ordering::Relaxed)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if self.connection.streams.fetch_sub(1, Ordering::Relaxed) == 1 {
            let mut since = (self.connection.idle_since.lock()).unwrap_or_else(|p| p.into_inner());
            *since = clock::now();
        }
    }
}

/// What [`H2Pool::take_stream`] found.
enum Found {
    Slot(StreamSlot),
    /// No connection has room, and another may open.
    Open,
}

/// A request for an HTTP/2 backend: its head, and its body.
pub struct H2Request {
    /// Method, URI (scheme, authority, path), fields.
    pub parts: http::request::Parts,
    /// The body.
    pub body: H2Send,
    /// A gRPC deadline: past it, the response ends with `grpc-status: 4` and the backend's
    /// stream is cancelled.
    pub deadline: Option<tokio::time::Instant>,
}

/// The body of an [`H2Request`].
pub enum H2Send {
    /// None.
    Empty,
    /// Known up front, and so sent again if a stream is refused.
    Buffered(Bytes),
    /// Streamed through, sent once.
    Streaming(Option<UploadBody>),
}

impl H2Send {
    fn replayable(&self) -> bool {
        !matches!(self, H2Send::Streaming(_))
    }

    fn take(&mut self) -> H2Body {
        match self {
            H2Send::Empty => Empty::new().map_err(|never| match never {}).boxed_unsync(),
            H2Send::Buffered(bytes) => Full::new(bytes.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
            H2Send::Streaming(body) => match body.take() {
                Some(body) => UnsyncBoxBody::new(body),
                None => Empty::new().map_err(|never| match never {}).boxed_unsync(),
            },
        }
    }
}

impl H2Pool {
    /// No connection yet, with the bounds of `upstream`; `tls`: the backend speaks `h2`;
    /// `ping_timeouts` counts connections closed for a PING left unanswered.
    pub fn new(upstream: &UpstreamConfig, tls: bool, ping_timeouts: Counter) -> Self {
        let pool = Self {
            connections: Mutex::new(Vec::new()),
            opening: tokio::sync::Mutex::new(()),
            failed: Mutex::new(None),
            max_streams: AtomicUsize::new(1),
            max_connections: AtomicUsize::new(1),
            keepalive_interval_ns: AtomicU64::new(0),
            keepalive_timeout_ns: AtomicU64::new(0),
            ping_timeouts,
            tunnels: Arc::new(AtomicUsize::new(0)),
            scheme: if tls { Scheme::HTTPS } else { Scheme::HTTP },
        };
        pool.configure(upstream);
        pool
    }

    /// Takes the bounds of `upstream` from now on.
    pub fn configure(&self, upstream: &UpstreamConfig) {
        let http2 = &upstream.http2;
        let streams = usize::try_from(http2.max_streams_per_connection).unwrap_or(usize::MAX);
        let connections = usize::try_from(http2.max_connections_per_backend).unwrap_or(1);
        self.max_streams.store(streams.max(1), Ordering::Relaxed);
        self.max_connections
            .store(connections.max(1), Ordering::Relaxed);
        let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        (self.keepalive_interval_ns).store(nanos(http2.keepalive_interval), Ordering::Relaxed);
        (self.keepalive_timeout_ns).store(nanos(http2.keepalive_timeout), Ordering::Relaxed);
    }

    /// The PING interval and timeout of new connections; `None` when pings are off.
    fn keepalive(&self) -> Option<(Duration, Duration)> {
        let interval = self.keepalive_interval_ns.load(Ordering::Relaxed);
        let timeout = self.keepalive_timeout_ns.load(Ordering::Relaxed);
        (interval > 0).then(|| {
            (
                Duration::from_nanos(interval),
                Duration::from_nanos(timeout),
            )
        })
    }

    /// The `:scheme` of requests to this backend.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<H2Connection>>> {
        (self.connections.lock()).unwrap_or_else(|p| p.into_inner())
    }

    /// Lets every connection go: hyper closes each once its streams have ended.
    pub fn close(&self) {
        drop(std::mem::take(&mut *self.lock()));
    }

    /// Drops connections that ended, and those without a stream for longer than
    /// `idle_timeout`; returns how many are left.
    pub fn sweep(&self, now: Instant, idle_timeout: Duration) -> usize {
        let mut connections = self.lock();
        connections.retain(|connection| {
            let idle = connection.streams.load(Ordering::Relaxed) == 0 && {
                let since = *(connection.idle_since.lock()).unwrap_or_else(|p| p.into_inner());
                now.saturating_duration_since(since) > idle_timeout
            };
            connection.usable() && !idle
        });
        connections.len()
    }

    /// A stream on a connection with room; or, when every connection is full and no more may
    /// open, on the least loaded one.
    fn take_stream(&self) -> Found {
        let mut connections = self.lock();
        connections.retain(|connection| connection.usable());
        let max_streams = self.max_streams.load(Ordering::Relaxed);
        let with_room = (connections.iter()).find(|connection| connection.has_room(max_streams));
        if let Some(connection) = with_room {
            return Found::Slot(StreamSlot::take(connection));
        }
        // Tunnels take whole connections' worth of room, at the smallest room a connection
        // has (the backend's own limit may be below ours).
        let room = (connections.iter())
            .map(|connection| max_streams.min(connection.peer_limit.get()))
            .min()
            .unwrap_or(max_streams)
            .max(1);
        let tunnelling = self.tunnels.load(Ordering::Relaxed).div_ceil(room);
        if connections.len() < self.max_connections.load(Ordering::Relaxed) + tunnelling {
            return Found::Open;
        }
        match (connections.iter())
            .min_by_key(|connection| connection.streams.load(Ordering::Relaxed))
        {
            Some(connection) => Found::Slot(StreamSlot::take(connection)),
            None => Found::Open,
        }
    }

    /// A stream, on a new connection if none has room.
    async fn stream(&self, pool: &Pool, addr: SocketAddr) -> Result<StreamSlot, FailureKind> {
        if let Found::Slot(slot) = self.take_stream() {
            return Ok(slot);
        }
        let asked = clock::now();
        let _opening = self.opening.lock().await;
        // Another stream may have opened one while this one waited, or failed to.
        if let Found::Slot(slot) = self.take_stream() {
            return Ok(slot);
        }
        let failed = *self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, kind)) = failed
            && at >= asked
        {
            return Err(kind);
        }
        let connection = match self.open(pool, addr).await {
            Ok(connection) => Arc::new(connection),
            Err(kind) => {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some((clock::now(), kind));
                return Err(kind);
            }
        };
        let slot = StreamSlot::take(&connection);
        // A backend that left keeps no connection: this one closes when its stream ends.
        if !pool.closed.load(Ordering::Relaxed) {
            self.lock().push(connection);
        }
        Ok(slot)
    }

    /// Opens a connection: TCP, TLS (ALPN must pick `h2`), then HTTP/2's preface, all within
    /// `upstream.connect_timeout`. hyper drives it on a task of its own until it ends.
    async fn open(&self, pool: &Pool, addr: SocketAddr) -> Result<H2Connection, FailureKind> {
        let (stream, _) = pool.connect(addr, None).await?.into_parts();
        if self.scheme == Scheme::HTTPS && !negotiated_h2(&stream) {
            if let Some(edge) = &pool.edge {
                tracing::warn!(
                    backend = %edge.name,
                    "the backend did not choose HTTP/2 by ALPN (protocol: h2): request not sent"
                );
                edge.count("no_h2");
            }
            return Err(FailureKind::ConnectRefused);
        }
        let mut builder = Builder::new(TokioExecutor::new());
        let max_streams = self.max_streams.load(Ordering::Relaxed);
        let max_head = u32::try_from(pool.settings.max_head_bytes()).unwrap_or(u32::MAX);
        builder
            .timer(TokioTimer::new())
            .initial_max_send_streams(max_streams)
            .max_header_list_size(max_head);
        if let Some((interval, timeout)) = self.keepalive() {
            // Only while streams are open: an idle connection is the idle sweep's to close,
            // and gRPC servers police pings on connections that carry nothing.
            builder
                .keep_alive_interval(interval)
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(false);
        }
        let peer_limit = PeerLimit::new();
        let stream = LimitTap::new(stream, peer_limit.clone());
        let handshake = builder.handshake::<_, H2Body>(TokioIo::new(stream));
        let opened_by = tokio::time::Instant::now() + pool.settings.connect_timeout();
        let (sender, connection) = match tokio::time::timeout_at(opened_by, handshake).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(error)) => {
                tracing::debug!(%addr, %error, "HTTP/2 handshake with the backend failed");
                return Err(FailureKind::ConnectRefused);
            }
            Err(_) => return Err(FailureKind::ConnectTimeout),
        };
        let retired = Arc::new(AtomicBool::new(false));
        let ended = retired.clone();
        let ping_timeouts = self.ping_timeouts.clone();
        let driven = async move {
            match connection.await {
                // Only hyper's keep-alive times a client connection out.
                Err(error) if error.is_timeout() => {
                    ping_timeouts.inc();
                    tracing::warn!(
                        %addr,
                        "HTTP/2 backend did not answer a PING in time: connection closed, its streams failed"
                    );
                }
                Err(error) => {
                    tracing::debug!(%addr, %error, "HTTP/2 connection to the backend ended")
                }
                Ok(()) => {}
            }
            ended.store(true, Ordering::Relaxed);
        };
        tokio::spawn(driven);
        // The backend's SETTINGS open its side of the connection; until they arrive its stream
        // limit is unknown. Within what is left of the connect timeout.
        let settled = peer_limit.settled();
        if tokio::time::timeout_at(opened_by, settled).await.is_err() {
            tracing::debug!(%addr, "HTTP/2 backend sent no SETTINGS within the connect timeout");
            return Err(FailureKind::ConnectTimeout);
        }
        Ok(H2Connection {
            sender,
            streams: AtomicUsize::new(0),
            peer_limit,
            retired,
            idle_since: Mutex::new(clock::now()),
            refused_websocket: AtomicBool::new(false),
        })
    }

    /// A place for one stream on a connection to the backend, opened if none has room: the
    /// connect part of a send, taken before anything of the request is, so that a request
    /// whose connect failed still has its body for another backend.
    pub async fn reserve(&self, pool: &Pool, addr: SocketAddr) -> Result<StreamSlot, SendFailure> {
        self.stream(pool, addr).await.map_err(SendFailure::Connect)
    }

    /// Sends `request` on `slot`'s connection and waits for the response head; the response
    /// body holds the stream (and its connection's place) until it is dropped. A stream the
    /// backend refused is sent once more on another connection when its body can be.
    pub async fn send(
        &self,
        pool: &Pool,
        addr: SocketAddr,
        slot: StreamSlot,
        mut request: H2Request,
    ) -> Result<(ResponseHead, ResponseBody), SendFailure> {
        let mut refused_once = false;
        let mut slot = Some(slot);
        loop {
            let slot = match slot.take() {
                Some(slot) => slot,
                None => self.reserve(pool, addr).await?,
            };
            let replayable = request.body.replayable();
            let outgoing = Request::from_parts(request.parts.clone(), request.body.take());
            let mut sender = slot.connection.sender.clone();
            match sender.send_request(outgoing).await {
                Ok(response) if request.parts.method == http::Method::CONNECT => {
                    return into_tunnel(response, slot, &self.tunnels).await;
                }
                Ok(response) => return Ok(into_answer(response, slot, request.deadline)),
                Err(error) => {
                    let refused = never_processed(&error);
                    if refused {
                        slot.connection.retire();
                    }
                    if refused && replayable && !refused_once {
                        refused_once = true;
                        continue;
                    }
                    return Err(match refused {
                        true => SendFailure::Connect(FailureKind::ConnectRefused),
                        false => SendFailure::Exchange(ExchangeError::Http2(error)),
                    });
                }
            }
        }
    }

    /// A health probe: `GET path` on a connection of its own (so that the probe tests the
    /// connect path too); the status, or why there is none.
    pub async fn probe(
        &self,
        pool: &Pool,
        addr: SocketAddr,
        authority: &str,
        path: &str,
    ) -> Result<u16, ProbeFailure> {
        let connection = (self.open(pool, addr).await).map_err(|_| ProbeFailure::Connect)?;
        let uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| ProbeFailure::Other)?;
        let request = Request::get(uri)
            .header(http::header::USER_AGENT, "lb-health-check")
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .map_err(|_| ProbeFailure::Other)?;
        let mut sender = connection.sender.clone();
        let response = (sender.send_request(request).await).map_err(|_| ProbeFailure::Other)?;
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        Ok(status)
    }
}

/// Why a probe of an HTTP/2 backend has no status.
#[derive(Debug, Clone, Copy)]
pub enum ProbeFailure {
    /// No connection could be made.
    Connect,
    /// The exchange failed.
    Other,
}

/// Whether TLS agreed on `h2`.
fn negotiated_h2(stream: &UpstreamStream) -> bool {
    match stream {
        UpstreamStream::Plain(_) => false,
        UpstreamStream::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
    }
}

/// Whether the backend never processed the request: it refused the stream, or its graceful
/// GOAWAY (NO_ERROR) named an earlier last stream, or hyper dropped the request before sending
/// it. A GOAWAY with an error code also ends streams the backend may have begun, so it does not
/// count: a call that may have reached the backend is not sent twice.
fn never_processed(error: &hyper::Error) -> bool {
    if error.is_canceled() {
        return true;
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return match h2.reason() {
                Some(h2::Reason::REFUSED_STREAM) => true,
                Some(h2::Reason::NO_ERROR) => h2.is_go_away() && h2.is_remote(),
                _ => false,
            };
        }
        source = cause.source();
    }
    false
}

/// The answer to an extended `CONNECT` (the only `CONNECT` sent to a backend): a `2xx` makes
/// the stream a tunnel (hyper hands it over at once), with the head as the backend sent it;
/// anything else is an ordinary answer.
async fn into_tunnel(
    mut response: Response<Incoming>,
    slot: StreamSlot,
    tunnels: &Arc<AtomicUsize>,
) -> Result<(ResponseHead, ResponseBody), SendFailure> {
    if !response.status().is_success() {
        return Ok(into_answer(response, slot, None));
    }
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .map_err(|error| SendFailure::Exchange(ExchangeError::Http2(error)))?;
    let (parts, _) = response.into_parts();
    let head = ResponseHead::from_fields(
        Version::HTTP_2,
        parts.status,
        &parts.headers,
        None,
        Framing::NONE,
    );
    let tunnel = Box::new(H2Tunnel::new(upgraded, slot, tunnels.clone()));
    Ok((head, ResponseBody::tunnel(tunnel)))
}

/// The response head as the request path takes it, and its body holding the stream.
fn into_answer(
    response: Response<Incoming>,
    slot: StreamSlot,
    deadline: Option<tokio::time::Instant>,
) -> (ResponseHead, ResponseBody) {
    let (parts, body) = response.into_parts();
    let declared = (parts.headers.get(CONTENT_LENGTH))
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    let framing = match body.size_hint().exact() {
        Some(length) => Framing::Length(length),
        None => Framing::Chunked,
    };
    let head = ResponseHead::from_fields(
        Version::HTTP_2,
        parts.status,
        &parts.headers,
        declared,
        framing,
    );
    let stream = H2Stream {
        left: body.size_hint().exact(),
        body: Some(body),
        _slot: slot,
        deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        trailers_seen: false,
    };
    (head, ResponseBody::http2(Box::new(stream)))
}

/// A backend's HTTP/2 response body, holding its stream's place; trailers pass through.
/// Dropped early (the client went away or reset its stream), it cancels the backend's stream.
#[derive(Debug)]
pub struct H2Stream {
    body: Option<Incoming>,
    /// What the backend's `content-length` still promises. hyper ends a body quietly on
    /// RST_STREAM(NO_ERROR), which a backend may send only after a complete response (RFC 9113
    /// §8.1): before its declared end, that is a cut-off body, and it must fail, not end.
    left: Option<u64>,
    _slot: StreamSlot,
    /// The gRPC deadline, when the call set one.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Trailers went by: nothing may follow them.
    trailers_seen: bool,
}

impl H2Stream {
    /// The next frame; past a gRPC deadline, trailers saying DEADLINE_EXCEEDED end the body.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyReadError>>> {
        if let Some(deadline) = &mut self.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            self.deadline = None;
            // Dropping the body resets the backend's stream (CANCEL).
            self.body = None;
            return Poll::Ready(Some(Ok(Frame::trailers(crate::proto::grpc::trailers(
                crate::proto::grpc::DEADLINE_EXCEEDED,
                "deadline exceeded at the balancer",
            )))));
        }
        let Some(body) = &mut self.body else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(body).poll_frame(cx)) {
            None => {
                self.end();
                match self.left {
                    Some(left) if left > 0 => Poll::Ready(Some(Err(BodyReadError::Http2Short))),
                    _ => Poll::Ready(None),
                }
            }
            Some(Ok(frame)) => {
                if let (Some(left), Some(data)) = (&mut self.left, frame.data_ref()) {
                    *left = left.saturating_sub(data.len() as u64);
                }
                if frame.is_trailers() {
                    self.trailers_seen = true;
                    self.deadline = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                self.end();
                Poll::Ready(Some(Err(BodyReadError::Http2(error))))
            }
        }
    }

    fn end(&mut self) {
        self.body = None;
        self.deadline = None;
    }

    /// Whether the backend's stream ended with the response head, before any frame of the
    /// body was read (whatever the call's deadline).
    pub fn ended_with_head(&self) -> bool {
        !self.trailers_seen
            && self.left.is_none_or(|left| left == 0)
            && self.body.as_ref().is_some_and(|body| body.is_end_stream())
    }

    /// Whether nothing more will come. A stream reset before its declared length is not over:
    /// its failure is still to be read.
    pub fn is_end_stream(&self) -> bool {
        match &self.body {
            None => self.deadline.is_none(),
            Some(body) => {
                body.is_end_stream()
                    && self.left.is_none_or(|left| left == 0)
                    && (self.deadline.is_none() || self.trailers_seen)
            }
        }
    }

    /// What the backend declared.
    pub fn size_hint(&self) -> SizeHint {
        match &self.body {
            None => SizeHint::with_exact(0),
            Some(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_follow_the_configuration_and_zero_turns_them_off() {
        let mut upstream = UpstreamConfig::default();
        let pool = H2Pool::new(&upstream, false, Counter::default());
        let secs = Duration::from_secs;
        assert_eq!(pool.keepalive(), Some((secs(30), secs(10))), "the defaults");
        upstream.http2.keepalive_interval = Duration::from_millis(250);
        upstream.http2.keepalive_timeout = secs(1);
        pool.configure(&upstream);
        assert_eq!(
            pool.keepalive(),
            Some((Duration::from_millis(250), secs(1)))
        );
        upstream.http2.keepalive_interval = Duration::ZERO;
        pool.configure(&upstream);
        assert_eq!(pool.keepalive(), None);
    }
}
