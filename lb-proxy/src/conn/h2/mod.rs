//! HTTP/2 from clients: h2's server codec (frames, HPACK, flow control, and its caps on
//! resets, CONTINUATION and header lists), driven by the connection's own task.
//!
//! hyper's HTTP/2 server, which this replaces, spawned a task per stream, boxed a service
//! future per request, wrapped each body twice and rewrote each response's fields. Here the
//! connection's task polls h2's connection and the futures of its streams side by side
//! ([`serve`]); a stream ([`stream`]) is the request path's future, raced against the client's
//! reset of the stream, then the response written as h2 asks ([`send`]). A reset, or the
//! connection ending, drops the stream's future, which cancels its backend request.
//!
//! On a listener with `server.h2c`, a connection is HTTP/2 when its first bytes are the
//! preface ([`sniff`]); any other goes to our HTTP/1.1 loop ([`super::h1`]).
//!
//! # Layout
//! - [`stream`]: one stream, from its request to its response.
//! - [`send`]: a response's head and body onto its stream.
//! - [`connect`]: `CONNECT` streams, and WebSocket over HTTP/2 (RFC 8441).
//! - [`stream_io`]: a stream as a byte stream, for the tunnel a WebSocket opens.
//! - [`retimed`]: the connection's socket, whose idle timeout its tunnels switch, and which
//!   notes the `GOAWAY` it carries ([`goaway`]).
//! - [`stall`]: responses that wait on a client that does not read.
//! - [`idle`]: a connection with no stream for `server.idle_timeout`, whatever frames keep its
//!   socket busy.
//! - [`close_log`]: how many of the connections closed for their client's doing are logged.
//! - [`census`]: the connection and its streams in the gauges of open ones.
//! - [`head_room`]: the request heads a connection's streams may hold at once.

mod census;
mod close_log;
mod connect;
mod goaway;
mod head_room;
mod idle;
pub(crate) mod retimed;
mod send;
mod stall;
mod stream;
mod stream_io;

use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lb_core::config::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use tokio::sync::OwnedSemaphorePermit;

use super::OpenConnection;
use super::stream::ClientStream;
use super::timed_io::TimedIo;
use crate::proxy::ClientInfo;
use crate::proxy::body::budget::BufferBudget;
use crate::runtime::Shared;
use retimed::{ConnShared, Retimed};
use stall::StallWatch;

/// HTTP/2's connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a connection's first bytes into `read` until they are HTTP/2's preface (`true`) or
/// cannot be (`false`, also at the end of the stream). The bytes stay in `read`, for whichever
/// protocol serves the connection.
pub(crate) async fn sniff<S: AsyncRead + Unpin>(
    io: &mut S,
    read: &mut BytesMut,
) -> io::Result<bool> {
    loop {
        let have = read.len().min(PREFACE.len());
        if read[..have] != PREFACE[..have] {
            return Ok(false);
        }
        if have == PREFACE.len() {
            return Ok(true);
        }
        if read.capacity() == read.len() {
            read.reserve(PREFACE.len());
        }
        if io.read_buf(read).await? == 0 {
            return Ok(false);
        }
    }
}

/// h2's server, configured once per listener from `server.http2` (Envoy's edge defaults).
pub(crate) struct H2Server {
    builder: h2::server::Builder,
    /// `server.http2.stalled_response_timeout`.
    stalled_response_timeout: Duration,
    /// `server.idle_timeout`: how long a connection may have no stream.
    idle_timeout: Duration,
    /// `server.http2.max_buffered_body_bytes`: each connection's room for bodies read in full.
    max_buffered_body_bytes: u64,
    /// `server.http2.max_buffered_head_bytes`: each connection's room for request heads.
    max_buffered_head_bytes: u64,
    /// The lines logged for connections closed for what their client did.
    close_log: close_log::CloseLog,
}

/// What the streams of one connection share.
pub(crate) struct H2Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: Arc<ClientInfo>,
    /// The socket's timers, which tunnels switch, and the `GOAWAY` it wrote.
    pub(crate) conn: Arc<ConnShared>,
    /// The connection's responses that wait on the client.
    pub(crate) stall: Arc<StallWatch>,
    /// The connection's room for small bodies read in full before a backend is picked.
    pub(crate) body_budget: Arc<BufferBudget>,
    /// The connection's room for the request heads of its streams ([`head_room`]).
    head_budget: Arc<BufferBudget>,
}

impl H2Server {
    /// h2's server with `server`'s limits: streams, windows, the header list (CONTINUATION
    /// frames included) held to `server.max_header_bytes`, and the caps that close a connection
    /// which resets streams faster than it lets them run (rapid reset). Extended CONNECT (RFC
    /// 8441) is advertised: browsers open WebSockets over HTTP/2 only where the server says it
    /// may.
    pub(crate) fn new(server: &ServerConfig) -> Self {
        let http2 = &server.http2;
        let mut builder = h2::server::Builder::new();
        builder
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(http2.max_concurrent_streams)
            .initial_window_size(http2.initial_stream_window_bytes)
            .initial_connection_window_size(http2.initial_connection_window_bytes)
            .max_pending_accept_reset_streams(http2.max_pending_reset_streams)
            .max_local_error_reset_streams(Some(http2.max_local_error_reset_streams))
            .enable_connect_protocol();
        Self {
            builder,
            stalled_response_timeout: http2.stalled_response_timeout,
            idle_timeout: server.idle_timeout,
            max_buffered_body_bytes: http2.max_buffered_body_bytes,
            max_buffered_head_bytes: http2.max_buffered_head_bytes,
            close_log: close_log::CloseLog::new(http2.logged_closes_per_second),
        }
    }

    /// Serves HTTP/2 on a client connection until it closes, a response stalls on the client,
    /// or shutdown has let the streams in flight finish. `read`: the connection's first bytes,
    /// already read (the preface, on an h2c listener). Holds `permit` until then.
    pub(crate) async fn connection<S: ClientStream>(
        self: Arc<Self>,
        io: TimedIo<S>,
        read: BytesMut,
        client: Arc<ClientInfo>,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
    ) {
        let _open = OpenConnection::new(&shared.metrics, permit);
        let (io, conn) = Retimed::with_prefix(io, read);
        let streams = H2Conn {
            shared: shared.clone(),
            client,
            conn,
            stall: Arc::new(StallWatch::new()),
            body_budget: BufferBudget::new(self.max_buffered_body_bytes),
            head_budget: BufferBudget::new(self.max_buffered_head_bytes),
        };
        self.serve(io, Arc::new(streams)).await;
    }

    async fn serve<T>(&self, io: T, streams: Arc<H2Conn>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = streams.client.peer;
        let (shared, conn, stall) = (
            streams.shared.clone(),
            streams.conn.clone(),
            streams.stall.clone(),
        );
        let timeout = self.stalled_response_timeout;
        let reason = tokio::select! {
            ended = serve(&self.builder, self.idle_timeout, io, streams) => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "client connection ended with an error");
                }
                conn.closed_for.get().copied()
            }
            () = stall.stalled(timeout) => Some("flow_control_stall"),
        };
        let Some(reason) = reason else { return };
        shared.metrics.http2.closed(reason);
        match self.close_log.admit(crate::clock::now()) {
            None => {}
            Some(0) => tracing::info!(%peer, reason, "HTTP/2 client connection closed"),
            Some(not_logged) => tracing::info!(
                %peer, reason, not_logged,
                "HTTP/2 client connection closed (and {not_logged} more since the last such line, \
                 counted in lb_http2_connections_closed_total)"
            ),
        }
    }
}

/// The connection's loop: h2's connection and the streams it accepted, polled in turn by one
/// task. Streams go first, so that what they queued is written by the connection's poll that
/// follows. With no stream for `idle_timeout`, the connection says `GOAWAY` and closes.
async fn serve<T>(
    builder: &h2::server::Builder,
    idle_timeout: Duration,
    io: T,
    streams_share: Arc<H2Conn>,
) -> Result<(), h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = streams_share.shared.clone();
    let mut stop = pin!(shared.shutdown.started());
    let handshaken = {
        let mut handshake = pin!(builder.handshake::<T, Bytes>(io));
        std::future::poll_fn(|cx| {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            handshake.as_mut().poll(cx).map(Some)
        })
        .await
    };
    let Some(mut connection) = handshaken.transpose()? else {
        return Ok(());
    };
    let mut stopping = false;
    let mut streams = FuturesUnordered::new();
    let mut no_streams = idle::NoStreams::new(idle_timeout);
    let peer = streams_share.client.peer;
    let http2 = &shared.metrics.http2;
    let mut census = census::Census::open(&http2.connections, &http2.streams);
    std::future::poll_fn(|cx| {
        // `stop` was polled while the handshake ran, which registered this task with it: the
        // start of shutdown wakes the task, and the flag tells, without the signal's lock that
        // polling it again would take on every wake.
        if !stopping && shared.shutdown.is_started() {
            // GOAWAY: no new streams; those in flight finish, then the connection closes.
            stopping = true;
            connection.graceful_shutdown();
        }
        loop {
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
            match connection.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, mut respond)))) => {
                    no_streams.busy();
                    let bytes = head_room::head_bytes(&request);
                    let Some(head_room) = streams_share.head_budget.reserve(bytes) else {
                        head_room::refuse(&mut respond, bytes, &shared.metrics);
                        continue;
                    };
                    // Written into its allocation, not built on the stack and copied there.
                    let served = Box::write(
                        Box::new_uninit(),
                        stream::serve(streams_share.clone(), request, respond, head_room),
                    );
                    streams.push(Box::into_pin(served));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending if stopping || !streams.is_empty() => {
                    census.streams(streams.len());
                    return Poll::Pending;
                }
                Poll::Pending => {
                    census.streams(0);
                    if !no_streams.poll_expired(cx) {
                        return Poll::Pending;
                    }
                    tracing::debug!(%peer, ?idle_timeout, "HTTP/2 client connection idle: GOAWAY");
                    stopping = true;
                    // No stream to wait for, nor a client's answer (a graceful shutdown waits
                    // for its PING's): polled again, the GOAWAY is written and the connection
                    // ends. A request the client sent meanwhile is refused by the GOAWAY's
                    // last stream id, which tells the client to send it again elsewhere.
                    connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_preface_is_found_across_reads_and_kept() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let sniffing = tokio::spawn(async move {
            let mut read = BytesMut::new();
            let found = sniff(&mut server, &mut read).await.unwrap();
            (found, read)
        });
        for piece in [&PREFACE[..3], &PREFACE[3..20], &PREFACE[20..]] {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        let (found, read) = sniffing.await.unwrap();
        assert!(found);
        assert_eq!(&read[..], PREFACE);
    }

    #[tokio::test]
    async fn http1_and_an_early_end_are_not_http2_and_their_bytes_are_kept() {
        let cases: [(&[u8], bool); 4] = [
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            (b"PRI * HTTP/1.1\r\n", false),
            (b"PRI", true),
            (b"", true),
        ];
        for (sent, then_closed) in cases {
            let (mut client, mut server) = tokio::io::duplex(64);
            client.write_all(sent).await.unwrap();
            if then_closed {
                drop(client);
            } else {
                // Left open: the answer must not wait for more bytes.
                std::mem::forget(client);
            }
            let mut read = BytesMut::new();
            assert!(!sniff(&mut server, &mut read).await.unwrap(), "{sent:?}");
            // What was read stays, for HTTP/1; the rest is still on the stream.
            assert!(
                sent.starts_with(&read) && read.len() >= sent.len().min(3),
                "{read:?}"
            );
        }
    }

    /// A stream that yields `chunks` one read each, then its end.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let take = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..take]);
                if take < chunk.len() {
                    self.0.push_front(chunk.split_off(take));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_in_any_reads_are_sniffed_by_their_start_and_kept(
            start in 0..=PREFACE.len(),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            cuts in proptest::collection::vec(1usize..8, 0..12),
        ) {
            // Mostly a piece of the preface, then anything: every way to differ or to end.
            let mut sent = PREFACE[..start].to_vec();
            sent.extend(&tail);
            let mut chunks = std::collections::VecDeque::new();
            let mut rest = &sent[..];
            for cut in cuts.iter().chain(std::iter::repeat(&8)) {
                if rest.is_empty() {
                    break;
                }
                let (chunk, after) = rest.split_at((*cut).min(rest.len()));
                chunks.push_back(chunk.to_vec());
                rest = after;
            }
            let mut io = Chunks(chunks);
            let mut read = BytesMut::new();
            let found = futures_util::FutureExt::now_or_never(sniff(&mut io, &mut read))
                .expect("never waits")
                .unwrap();
            proptest::prop_assert_eq!(found, sent.starts_with(PREFACE));
            proptest::prop_assert!(sent.starts_with(&read));
            if found {
                proptest::prop_assert!(read.starts_with(PREFACE));
            } else {
                let have = read.len().min(PREFACE.len());
                proptest::prop_assert!(read[..have] != PREFACE[..have] || read.len() == sent.len());
            }
        }
    }
}
