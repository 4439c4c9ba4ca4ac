//! Our own HTTP/1.1 server loop: every request of an HTTP/1 connection is read and answered
//! here, as an IO driver over the codec ([`crate::proto::h1`]). One read buffer per connection;
//! each head is parsed and validated by the codec, which also frames the request body (read as
//! the request path asks for it, [`exchange`], [`feed`]) and the response ([`respond`]).
//!
//! A head the codec refuses is answered with its status (400, 414, 417, 431, 501, 505) and the
//! connection closes: what follows a request the balancer could not frame must never be read
//! as a next request. Why a loop of our own rather than hyper's: docs/performance.md, items 16
//! and 24.

mod exchange;
mod feed;
mod respond;

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Method, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::access_log::{AccessLog, Record};
use crate::conn::stream::ClientStream;
use crate::conn::timed_io::TimedIo;
use crate::proto::h1::request::{self, Limits, RequestError};
use crate::proxy::ClientInfo;
use crate::proxy::respond::refuse_request;
use crate::runtime::Shared;
use exchange::{Exchanged, exchange};
use feed::ClientSide;

/// The first allocation of a connection's read buffer; it grows up to the head limit.
pub(crate) const INITIAL_READ_BUFFER: usize = 4096;
/// After a refusal, how long the client's further bytes are read and dropped before the close,
/// so that closing with unread bytes (a reset) cannot destroy the answer on its way.
const LINGER: Duration = Duration::from_secs(1);
/// At most this many bytes are read and dropped while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// How serving a connection stopped.
#[derive(Debug)]
pub(crate) enum Served {
    /// The connection is done: the client closed it, asked for close, misbehaved, or the
    /// daemon is draining.
    Closed,
    /// Quiet between requests for `server.idle_release_after`, with nothing buffered: the
    /// caller parks it.
    Release,
}

/// Serves requests on `io` until the connection closes or may be released. `resumed`: the
/// connection was released before and has served a request. `read`: bytes of the client's
/// already read (after a PROXY header), usually none.
pub(crate) async fn serve<S: ClientStream>(
    io: &mut TimedIo<S>,
    shared: &Shared,
    client: &Arc<ClientInfo>,
    limits: &Limits,
    resumed: bool,
    read: BytesMut,
) -> Served {
    let mut buffer = read;
    let mut out = Vec::new();
    // Whether a request was answered on this connection (since it was last resumed).
    let mut served = resumed;
    loop {
        let head = loop {
            if !buffer.is_empty() {
                io.start_head();
                match request::parse(&buffer, limits) {
                    Ok(Some(head)) => break Ok(head),
                    Ok(None) => {}
                    Err(error) => break Err(error),
                }
            }
            // A connection is released only between requests: its first head is timed from
            // the accept by the header read timeout, which a release would trade for the idle
            // timeout.
            io.set_waiting(buffer.is_empty() && served);
            match read_more(io, &mut buffer, shared, limits.max_head_bytes).await {
                Waited::Read => {}
                Waited::Closed => return Served::Closed,
                Waited::Release => return Served::Release,
            }
        };
        io.set_waiting(false);
        io.end_head();
        let head = match head {
            Ok(head) => head,
            Err(error) => {
                tracing::debug!(peer = %client.peer, %error, "request head refused");
                // Boxed: the rare path should not size every connection's task.
                Box::pin(refuse(io, &mut out, &mut buffer, shared, client, error)).await;
                return Served::Closed;
            }
        };
        buffer.advance(head.length);
        // Boxed: an idle connection's task then holds no room for a request in flight, and
        // the task stays small enough that moving it costs little. Written into its
        // allocation: `Box::pin(exchange(..))` built the future on the stack and then copied
        // it (docs/performance.md, item 22).
        let exchanged = Box::into_pin(Box::write(
            Box::new_uninit(),
            exchange(
                io,
                &mut buffer,
                &mut out,
                shared,
                client,
                head,
                limits.max_head_bytes,
            ),
        ))
        .await;
        match exchanged {
            Exchanged::KeepOpen => served = true,
            Exchanged::Close { unread } => {
                if unread || !buffer.is_empty() {
                    Box::pin(linger(io)).await;
                }
                return Served::Closed;
            }
            Exchanged::Failed => return Served::Closed,
            Exchanged::Upgraded(upgraded) => {
                Box::pin(crate::conn::tunnel::run(io, &mut buffer, *upgraded, shared)).await;
                return Served::Closed;
            }
        }
    }
}

/// Answers a head the codec refused, then closes.
async fn refuse<S: ClientStream>(
    io: &mut TimedIo<S>,
    out: &mut Vec<u8>,
    buffer: &mut BytesMut,
    shared: &Shared,
    client: &ClientInfo,
    error: RequestError,
) {
    let reply = refuse_request(shared, &Method::GET, error);
    if let Some(log) = shared.access_log.current() {
        log_refusal(&log, client, &reply);
    }
    let mut client_side = ClientSide {
        feeder: None,
        buffer,
        max_head_bytes: 0,
    };
    let written = respond::write(
        io,
        out,
        reply,
        &Method::GET,
        Version::HTTP_11,
        true,
        &mut client_side,
    );
    let _ = written.await;
    linger(io).await;
}

/// Logs a refused head: the peer (a head that failed is not read for `X-Forwarded-For`), the
/// status, no request line.
#[cold]
fn log_refusal(log: &AccessLog, client: &ClientInfo, reply: &crate::proxy::reply::Reply) {
    let now = crate::clock::now();
    let mut record = Record::new(
        std::time::SystemTime::now(),
        now,
        client.peer.ip(),
        Version::HTTP_11,
    );
    record.status = reply.status.as_u16();
    if let crate::proxy::body::ToClient::Fixed(Some(text)) = &reply.body {
        record.bytes_out = text.len() as u64;
    }
    if let Some(tls) = client.edge.as_ref().and_then(|edge| edge.tls.as_ref()) {
        record.tls_version = Some(tls.version);
        record.sni = tls.sni.clone();
    }
    log.emit(&record);
}

/// What waiting for more request bytes gave.
enum Waited {
    /// Bytes arrived.
    Read,
    /// The client closed, the socket failed or timed out, or the daemon is draining.
    Closed,
    /// Quiet long enough with nothing read: the connection may be released.
    Release,
}

/// Reads more of a request head into `buffer`. Between requests (an empty buffer) this is where
/// a draining daemon closes the connection and the timer's release signal is taken.
async fn read_more<S: ClientStream>(
    io: &mut TimedIo<S>,
    buffer: &mut BytesMut,
    shared: &Shared,
    max_head_bytes: usize,
) -> Waited {
    std::future::poll_fn(|cx| {
        reserve(buffer, max_head_bytes);
        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buffer) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Waited::Closed),
            Poll::Ready(Ok(_)) => return Poll::Ready(Waited::Read),
            Poll::Pending => {}
        }
        // The timer raises its signal while the read above waits, so it is read after it.
        if buffer.is_empty() {
            if shared.shutdown.is_started() {
                return Poll::Ready(Waited::Closed);
            }
            if io.take_release_due() {
                return Poll::Ready(Waited::Release);
            }
        }
        Poll::Pending
    })
    .await
}

/// Makes room to read into: the first 4 KiB, then doubling up to just past the head limit
/// (a head one byte over the limit must be seen to be refused).
pub(super) fn reserve(buffer: &mut BytesMut, max_head_bytes: usize) {
    if buffer.capacity() > buffer.len() {
        return;
    }
    let more = buffer
        .len()
        .clamp(INITIAL_READ_BUFFER, max_head_bytes.max(INITIAL_READ_BUFFER));
    buffer.reserve(more);
}

/// Closes the writing side, then reads and drops what the client still sends, for at most
/// [`LINGER`] and [`LINGER_BYTES`]: closing a socket with unread bytes sends a reset, which can
/// destroy the answer before the client has read it.
async fn linger<S: ClientStream>(io: &mut TimedIo<S>) {
    if io.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut dropped = 0;
    let mut sink = [0u8; 1024];
    while dropped < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, io.read(&mut sink)).await {
            Ok(Ok(read @ 1..)) => dropped += read,
            _ => return,
        }
    }
}
