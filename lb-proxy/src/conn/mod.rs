//! One client connection: what comes before HTTP on listeners with TLS or the PROXY protocol
//! ([`preamble`]), its timers ([`timed_io`]), and its driver — our own HTTP/1.1 loop over the
//! codec ([`h1`]), or our driver of h2's server codec ([`h2`]) when a TLS client chose `h2` by
//! ALPN (`server.tls.alpn`) or, with `server.h2c`, a cleartext client opened with HTTP/2's
//! preface. Which one serves a TLS connection is decided once, from the protocol its handshake
//! agreed: an HTTP/1.1 connection pays one comparison for it. On an h2c listener the first
//! bytes decide ([`h2::sniff`]), read into the buffer the HTTP/1 loop then goes on with.
//! hyper's HTTP/1 server ([`hyper`]) serves there only as the reference of the differential
//! test (`StartOptions::http1_reference`).
//!
//! An HTTP/1 connection is served by its own task ([`serve_http1`]), generic over its stream
//! ([`stream`]: plain TCP or TLS), so a plain connection runs its own copy of the loop. When it
//! has been quiet between requests for `server.idle_release_after`, the loop's buffers are
//! dropped and the socket waits, holding no buffer, for the client's next bytes.

pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod hyper;
pub(crate) mod preamble;
pub(crate) mod stream;
pub(crate) mod timed_io;
pub(crate) mod tunnel;

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use lb_core::config::{Alpn, Config, ProxyProtocol};
use lb_core::net::Cidr;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::proto::h1::request::Limits;
use crate::proxy::edge::Redirect;
use crate::proxy::{ClientInfo, limits};
use crate::runtime::Shared;
use crate::tls::ServerTls;
use preamble::{Opened, Preamble};
use stream::ClientStream;
use timed_io::{Http1Timers, TimedIo};

/// What kind of listener the drivers serve.
#[derive(Debug, Default, Clone)]
pub(crate) struct ListenerKind {
    /// HTTPS: the TLS terminator.
    pub tls: Option<Arc<ServerTls>>,
    /// The plain listener that redirects to HTTPS.
    pub redirect: Option<Arc<Redirect>>,
    /// HTTP/1 on an h2c listener is hyper's ([`crate::StartOptions::http1_reference`]).
    pub hyper_http1: bool,
}

/// The connection drivers of one listener, set up from its configuration (again when a reload
/// changes it).
pub(crate) struct Drivers {
    /// Every connection task, so that shutdown can wait for them.
    tracker: TaskTracker,
    idle_timeout: Duration,
    timers: Http1Timers,
    limits: Limits,
    /// `server.trusted_proxies`, to describe each client.
    trusted_proxies: Vec<Cidr>,
    /// HTTP/2's server, when `server.h2c` is on or the TLS listener offers `h2`.
    h2: Option<Arc<h2::H2Server>>,
    /// A plain listener with `server.h2c`: each connection's first bytes choose its protocol.
    h2c: bool,
    /// hyper's HTTP/1 server, for the HTTP/1 connections of an h2c listener, when it is the
    /// reference ([`ListenerKind::hyper_http1`]).
    h2c_hyper: Option<Arc<hyper::HyperHttp1>>,
    /// TLS, the PROXY protocol, the redirect: `None` on a plain listener, whose connections go
    /// straight to HTTP.
    preamble: Option<Arc<Preamble>>,
}

impl Drivers {
    /// Whether `config` would give other drivers than `old`: what the drivers read of it.
    pub(crate) fn differ(config: &Config, old: &Config) -> bool {
        let want_local =
            |config: &Config| (config.backends.iter()).any(|b| !b.proxy_protocol.is_off());
        config.server != old.server || want_local(config) != want_local(old)
    }

    /// The drivers of a listener of `kind` under `config`; connection tasks are spawned on
    /// `tracker`.
    pub(crate) fn new(config: &Config, kind: ListenerKind, tracker: &TaskTracker) -> Self {
        let server = &config.server;
        let proxy_protocol = server.proxy_protocol == ProxyProtocol::Accept;
        let want_local = (config.backends.iter()).any(|backend| !backend.proxy_protocol.is_off());
        let edge = kind.tls.is_some() || kind.redirect.is_some() || proxy_protocol || want_local;
        let preamble = edge.then(|| {
            Arc::new(Preamble {
                tls: kind.tls,
                proxy_protocol,
                trusted_proxies: server.trusted_proxies.clone(),
                redirect: kind.redirect.clone(),
                want_local,
                header_read_timeout: server.header_read_timeout,
            })
        });
        // h2c is cleartext HTTP/2 with prior knowledge: validation keeps it off listeners with
        // TLS or the PROXY protocol; the redirect listener answers HTTP/1 only.
        let h2c = server.h2c && preamble.is_none();
        let alpn_h2 = (server.tls.as_ref()).is_some_and(|tls| tls.alpn.contains(&Alpn::H2));
        Self {
            tracker: tracker.clone(),
            idle_timeout: server.idle_timeout,
            timers: Http1Timers {
                header_read_timeout: server.header_read_timeout,
                release_after: server.idle_release_after,
            },
            limits: limits(server),
            trusted_proxies: server.trusted_proxies.clone(),
            h2: (h2c || alpn_h2).then(|| Arc::new(h2::H2Server::new(server))),
            h2c,
            h2c_hyper: (h2c && kind.hyper_http1).then(|| Arc::new(hyper::HyperHttp1::new(server))),
            preamble,
        }
    }

    /// Serves a connection accepted from `peer` on a task of its own, which holds `permit`
    /// until the connection closes.
    pub(crate) fn spawn(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
    ) {
        if let Some(preamble) = &self.preamble {
            // On a TLS listener that offers `h2`: HTTP/2, should the handshake choose it.
            let h2 = self.h2.clone();
            let edge = serve_edge(
                preamble.clone(),
                stream,
                peer,
                shared,
                (self.idle_timeout, self.timers, self.limits),
                permit,
                h2,
            );
            self.tracker.spawn(edge);
            return;
        }
        let client = Arc::new(ClientInfo::new(peer, &self.trusted_proxies));
        let io = TimedIo::new(stream, self.idle_timeout, Some(self.timers));
        match &self.h2 {
            Some(h2) if self.h2c => {
                let http1 = (self.limits, self.h2c_hyper.clone());
                let task = serve_h2c(h2.clone(), http1, io, client, shared, permit);
                self.tracker.spawn(task);
            }
            _ => {
                let read = BytesMut::new();
                let task = serve_http1(io, client, shared, self.limits, permit, read);
                self.tracker.spawn(task);
            }
        }
    }
}

/// A connection on a listener with TLS, the PROXY protocol or a redirect: its preamble, then
/// HTTP/1 on the stream it gives, or HTTP/2 when its TLS handshake chose it.
async fn serve_edge(
    preamble: Arc<Preamble>,
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    (idle_timeout, timers, limits): (Duration, Http1Timers, Limits),
    permit: OwnedSemaphorePermit,
    h2: Option<Arc<h2::H2Server>>,
) {
    let accepted = tokio::time::Instant::now();
    let opened = preamble.open(stream, peer, accepted, &shared.metrics).await;
    let Some((opened, client)) = opened else {
        drop(OpenConnection::new(&shared.metrics, permit));
        return;
    };
    let client = Arc::new(client);
    match opened {
        Opened::Plain(stream, read) => {
            let io = TimedIo::accepted_at(stream, idle_timeout, Some(timers), accepted);
            Box::pin(serve_http1(io, client, shared, limits, permit, read)).await;
        }
        Opened::Tls(stream) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
            let Some(h2) = h2 else {
                // Only after a reload that stopped offering h2, for a handshake under the
                // old settings: HTTP/1 must not be spoken on it.
                tracing::debug!(%peer, "h2 chosen by ALPN on a listener that no longer serves it");
                drop(OpenConnection::new(&shared.metrics, permit));
                return;
            };
            let io = TimedIo::accepted_at(*stream, idle_timeout, None, accepted);
            let connection = h2.connection(io, BytesMut::new(), client, shared, permit);
            Box::pin(connection).await;
        }
        Opened::Tls(stream) => {
            let io = TimedIo::accepted_at(*stream, idle_timeout, Some(timers), accepted);
            let read = BytesMut::new();
            Box::pin(serve_http1(io, client, shared, limits, permit, read)).await;
        }
    }
}

/// Serves a connection of an h2c listener: HTTP/2 when its first bytes are the preface, else
/// HTTP/1 over the bytes read so far, by our loop with `limits` (or hyper's, the reference).
async fn serve_h2c(
    h2: Arc<h2::H2Server>,
    (limits, hyper): (Limits, Option<Arc<hyper::HyperHttp1>>),
    mut io: TimedIo<TcpStream>,
    client: Arc<ClientInfo>,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) {
    // The HTTP/1 loop's first buffer: an HTTP/1 request is read whole by the sniff's read and
    // parsed from it, as on a listener without h2c.
    let mut read = BytesMut::with_capacity(h1::INITIAL_READ_BUFFER);
    // The sniff is timed as the first request head is: from the accept, by the header read
    // timeout, which HTTP/1 goes on with. HTTP/2 then has only its idle timer: its codec
    // times its heads itself. A draining daemon is seen as the HTTP/1 loop sees it between
    // requests: by its flag, read whenever the read waits (the timer wakes it at least once
    // a second), which takes no lock per connection as waiting on the notification would.
    let sniffed = {
        let mut sniff = pin!(h2::sniff(&mut io, &mut read));
        std::future::poll_fn(|cx| match sniff.as_mut().poll(cx) {
            Poll::Ready(sniffed) => Poll::Ready(Some(sniffed)),
            Poll::Pending if shared.shutdown.is_started() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await
    };
    match sniffed {
        Some(Ok(true)) => {
            io.time_idle_only();
            Box::pin(h2.connection(io, read, client, shared, permit)).await;
        }
        Some(Ok(false)) => match hyper {
            None => Box::pin(serve_http1(io, client, shared, limits, permit, read)).await,
            Some(hyper) => {
                io.time_idle_only();
                Box::pin(hyper.connection(io, read, client, shared, permit)).await;
            }
        },
        Some(Err(error)) => {
            tracing::debug!(peer = %client.peer, %error, "client connection ended before its first request");
            drop(OpenConnection::new(&shared.metrics, permit));
        }
        None => drop(OpenConnection::new(&shared.metrics, permit)),
    }
}

/// Serves HTTP/1 on one client connection until it closes. When it has been quiet between
/// requests for the release delay, its buffers are freed and the socket waits, holding no
/// buffer, for the client's next bytes. `read`: the client's bytes already read (after a
/// PROXY header).
///
/// This is the connection's task: it takes everything by value and returns an `async move`
/// block, so that the task holds each part once (docs/performance.md, item 23).
#[allow(clippy::manual_async_fn)] // see above
fn serve_http1<S: ClientStream>(
    mut io: TimedIo<S>,
    client: Arc<ClientInfo>,
    shared: Arc<Shared>,
    limits: Limits,
    permit: OwnedSemaphorePermit,
    read: BytesMut,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let _open = OpenConnection {
            metrics: &shared.metrics,
            _permit: permit,
        };
        let shared = &*shared;
        let mut resumed = false;
        let mut read = Some(read);
        loop {
            let first = read.take().unwrap_or_default();
            match h1::serve(&mut io, shared, &client, &limits, resumed, first).await {
                h1::Served::Closed => return,
                h1::Served::Release => resumed = true,
            }
            let idle_gauge = &shared.metrics.client_connections_idle;
            idle_gauge.inc();
            let mut stop = std::pin::pin!(shared.shutdown.started());
            let resume = std::future::poll_fn(|cx| {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(false));
                }
                io.poll_parked(cx)
            })
            .await;
            idle_gauge.dec();
            match resume {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }
}

/// A client connection's place: counted in `lb_client_connections` and holding its permit
/// under `server.max_client_connections` until dropped, however its task ends.
pub(crate) struct OpenConnection<'a> {
    metrics: &'a Metrics,
    _permit: OwnedSemaphorePermit,
}

impl<'a> OpenConnection<'a> {
    /// The place of a connection whose task holds `permit`.
    pub(crate) fn new(metrics: &'a Metrics, permit: OwnedSemaphorePermit) -> Self {
        Self {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.metrics.client_connections.dec();
    }
}
