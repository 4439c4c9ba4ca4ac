//! hyper's HTTP/1 server, the reference our HTTP/1.1 loop is compared against
//! (`tests/it/differential.rs`): on an h2c listener of a daemon started with
//! `StartOptions::http1_reference`, a connection whose first bytes are not HTTP/2's preface is
//! served here, and each request hyper parsed goes through the codec's rules
//! ([`crate::proxy::handle_hyper`]) before the request path. Without that option no connection
//! reaches it.
//!
//! An HTTP/1.1 upgrade request (WebSocket) that a backend answers with `101` is tunnelled as on
//! our own loop: hyper hands the connection over once the `101` is written, and the connection's
//! task carries the tunnel ([`super::tunnel`]) with the bytes hyper had read beyond the request.
//! Any other answer to an upgrade request closes the connection after it, so that bytes meant
//! for the tunnel are never read as a next request.

use std::convert::Infallible;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::header::{CONNECTION, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use lb_core::config::{MIN_MAX_HEADER_BYTES, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

use super::OpenConnection;
use super::h2::retimed::{ConnShared, Retimed};
use super::stream::ClientStream;
use super::timed_io::TimedIo;
use crate::proxy::body::{ToClient, Upgraded};
use crate::proxy::{ClientInfo, ParsedUpgrade, handle_hyper};
use crate::runtime::Shared;

/// hyper's HTTP/1 server, configured once per listener.
pub(crate) struct HyperHttp1 {
    builder: http1::Builder,
}

impl HyperHttp1 {
    /// hyper's HTTP/1 server with `server`'s head limits and timeout.
    pub(crate) fn new(server: &ServerConfig) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(server.header_read_timeout)
            .max_buf_size(server.max_header_bytes.max(MIN_MAX_HEADER_BYTES))
            .keep_alive(true);
        Self { builder }
    }

    /// Serves HTTP/1 on a client connection until it closes, or shutdown lets its request in
    /// flight finish. `read`: the connection's first bytes, already read. Holds `permit` until
    /// then.
    pub(crate) async fn connection<S: ClientStream>(
        &self,
        io: TimedIo<S>,
        read: BytesMut,
        client: Arc<ClientInfo>,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
    ) {
        let _open = OpenConnection::new(&shared.metrics, permit);
        let peer = client.peer;
        let (io, conn) = Retimed::with_prefix(io, read);
        let service = ProxyService(Arc::new(ServiceState {
            shared: shared.clone(),
            client,
            tunnel: Mutex::default(),
            conn,
        }));
        let tunnel = service.0.clone();
        let io = TokioIo::new(io);
        let mut connection = pin!(self.builder.serve_connection(io, service).with_upgrades());
        let mut stop = pin!(shared.shutdown.started());
        let mut stopping = false;
        let ended = std::future::poll_fn(|cx| {
            if !stopping && stop.as_mut().poll(cx).is_ready() {
                // The request in flight finishes; the connection then closes.
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            connection.as_mut().poll(cx)
        })
        .await;
        if let Err(error) = ended {
            tracing::debug!(%peer, %error, "client connection ended with an error");
        }
        let pending = (tunnel.tunnel.lock())
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(pending) = pending {
            Box::pin(pending.run(&shared)).await;
        }
    }
}

/// The request path as a hyper service: one per client connection, cloned for each request
/// (one reference count).
#[derive(Clone)]
struct ProxyService(Arc<ServiceState>);

/// What the requests of one connection share.
struct ServiceState {
    shared: Arc<Shared>,
    client: Arc<ClientInfo>,
    /// The tunnel a `101` opened, for the connection's task to carry once hyper lets go.
    tunnel: Mutex<Option<PendingTunnel>>,
    /// What the connection's socket shares with its requests.
    conn: Arc<ConnShared>,
}

type ProxyFuture = Pin<Box<dyn Future<Output = Result<Response<ToClient>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for ProxyService {
    type Response = Response<ToClient>;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn call(&self, mut request: Request<Incoming>) -> ProxyFuture {
        let service = self.0.clone();
        Box::pin(async move {
            let head_request = request.method() == Method::HEAD;
            // hyper offers a hand-over only for an HTTP/1.1 request that asks for an upgrade.
            let on_upgrade = request.extensions_mut().remove::<OnUpgrade>();
            let upgrade = match on_upgrade {
                Some(_) => ParsedUpgrade::Http1,
                None => ParsedUpgrade::No,
            };
            let (shared, client) = (&*service.shared, &service.client);
            let mut reply = handle_hyper(shared, client, request, upgrade).await;
            let switched = match (&on_upgrade, reply.status) {
                (Some(_), http::StatusCode::SWITCHING_PROTOCOLS) => reply.body.take_upgraded(),
                _ => None,
            };
            // Bytes the client sent for a tunnel that did not open are never a request.
            let close = reply.close || (on_upgrade.is_some() && switched.is_none());
            let mut response = reply.into_h2_response(head_request);
            let headers = response.headers_mut();
            if let (Some(on_upgrade), Some(backend)) = (on_upgrade, switched) {
                let pending = PendingTunnel {
                    client: on_upgrade,
                    backend,
                    conn: service.conn.clone(),
                };
                *service.tunnel.lock().unwrap_or_else(|p| p.into_inner()) = Some(pending);
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            } else if close {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

/// A backend's `101` to an HTTP/1.1 upgrade request: its connection, and the client's side to
/// come.
struct PendingTunnel {
    client: OnUpgrade,
    backend: Upgraded,
    conn: Arc<ConnShared>,
}

impl PendingTunnel {
    /// Waits for hyper to hand the client connection over, then carries the tunnel.
    async fn run(self, shared: &Shared) {
        let upgraded = match self.client.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "the client connection was not handed over");
                return;
            }
        };
        // hyper keeps what it read beyond the request inside the connection it hands over.
        let mut io = HandedOver {
            io: TokioIo::new(upgraded),
            conn: self.conn,
        };
        let mut held = BytesMut::new();
        super::tunnel::run(&mut io, &mut held, self.backend, shared).await;
    }
}

/// The client's end of a tunnel on this path: the connection hyper handed over, whose timers
/// (a [`TimedIo`] inside hyper's own wrapper) are switched through [`ConnShared`].
struct HandedOver {
    io: TokioIo<hyper::upgrade::Upgraded>,
    conn: Arc<ConnShared>,
}

impl super::tunnel::TunnelClient for HandedOver {
    fn time_as_tunnel(&mut self, idle_timeout: Duration) {
        self.conn.time_as_tunnel(idle_timeout);
    }

    /// The timer inside fails the next read once the connection is idle too long, and the
    /// tunnel always reads the client while it is open.
    fn poll_idle(&mut self, _cx: &mut Context<'_>) -> Poll<io::Error> {
        Poll::Pending
    }
}

impl AsyncRead for HandedOver {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for HandedOver {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
