//! hyper's server for a listener with `server.h2c` on: it serves HTTP/1 and HTTP/2 with prior
//! knowledge on the same port (hyper-util's auto builder sniffs the protocol), and each request
//! it parsed goes through the codec's rules ([`crate::proxy::handle_hyper`]) before the request
//! path.
//!
//! An HTTP/1.1 upgrade request (WebSocket) that a backend answers with `101` is tunnelled as on
//! our own loop: hyper hands the connection over once the `101` is written, and the connection's
//! task carries the tunnel ([`super::tunnel`]) with the bytes hyper had read beyond the request.
//! Any other answer to an upgrade request closes the connection after it, so that bytes meant
//! for the tunnel are never read as a next request.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::header::{CONNECTION, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use lb_core::config::{MIN_MAX_HEADER_BYTES, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::OpenConnection;
use super::timed_io::TimedIo;
use crate::proxy::body::{ToClient, Upgraded};
use crate::proxy::{ClientInfo, handle_hyper};
use crate::runtime::Shared;

/// hyper's server, configured once, and the connections it serves.
pub(crate) struct HyperDriver {
    builder: auto::Builder<TokioExecutor>,
    graceful: GracefulShutdown,
}

impl HyperDriver {
    /// hyper's server with `server`'s limits and timeouts.
    pub(crate) fn new(server: &ServerConfig) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(server.header_read_timeout)
            .max_buf_size(server.max_header_bytes.max(MIN_MAX_HEADER_BYTES))
            .keep_alive(true);
        // `server.http2` (Envoy's edge defaults): streams, windows, and the caps that close a
        // connection which resets streams faster than it lets them run (rapid reset). The
        // header list, CONTINUATION frames included, is held to `server.max_header_bytes`.
        let http2 = &server.http2;
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(http2.max_concurrent_streams)
            .initial_stream_window_size(http2.initial_stream_window_bytes)
            .initial_connection_window_size(http2.initial_connection_window_bytes)
            .max_pending_accept_reset_streams(http2.max_pending_reset_streams)
            .max_local_error_reset_streams(http2.max_local_error_reset_streams)
            .keep_alive_interval(None);
        Self {
            builder,
            graceful: GracefulShutdown::new(),
        }
    }

    /// The future that serves a connection, for a task of its own.
    pub(crate) fn serve(
        &self,
        stream: TcpStream,
        idle_timeout: Duration,
        client: Arc<ClientInfo>,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let _ = stream.set_nodelay(true);
        let peer = client.peer;
        let retime = Arc::new(AtomicU64::new(0));
        let service = ProxyService {
            shared: shared.clone(),
            client,
            tunnel: Arc::default(),
            retime: retime.clone(),
        };
        let tunnel = service.tunnel.clone();
        let io = TokioIo::new(Retimed {
            io: TimedIo::new(stream, idle_timeout, None),
            retime,
            retimed: false,
        });
        let connection = self.graceful.watch(
            (self.builder)
                .serve_connection_with_upgrades(io, service)
                .into_owned(),
        );
        async move {
            let _open = OpenConnection::new(&shared.metrics, permit);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %error, "client connection ended with an error");
            }
            let pending = tunnel.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(pending) = pending {
                Box::pin(pending.run(&shared)).await;
            }
        }
    }

    /// Asks every connection to finish its requests in flight and close.
    pub(crate) async fn shutdown(self) {
        self.graceful.shutdown().await;
    }
}

/// The request path as a hyper service: one per client connection.
#[derive(Clone)]
struct ProxyService {
    shared: Arc<Shared>,
    client: Arc<ClientInfo>,
    /// The tunnel a `101` opened, for the connection's task to carry once hyper lets go.
    tunnel: Arc<Mutex<Option<PendingTunnel>>>,
    /// The connection's [`Retimed`] switch.
    retime: Arc<AtomicU64>,
}

/// A backend's `101` to an upgrade request: its connection, and the client's side to come.
struct PendingTunnel {
    client: OnUpgrade,
    backend: Upgraded,
    retime: Arc<AtomicU64>,
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
            retime: self.retime,
        };
        let mut held = BytesMut::new();
        super::tunnel::run(&mut io, &mut held, self.backend, shared).await;
    }
}

/// The client's end of a tunnel on this path: the connection hyper handed over, whose timers
/// (a [`TimedIo`] inside hyper's own wrapper) are switched through [`Retimed`].
struct HandedOver {
    io: TokioIo<hyper::upgrade::Upgraded>,
    retime: Arc<AtomicU64>,
}

impl super::tunnel::TunnelClient for HandedOver {
    fn time_as_tunnel(&mut self, idle_timeout: Duration) {
        let millis = u64::try_from(idle_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.retime.store(millis, Ordering::Release);
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

/// A hyper connection's socket and timers, whose idle timeout a tunnel can switch to its own
/// once hyper has handed the connection over (hyper's wrapper hides the [`TimedIo`]). One
/// atomic load per read, on connections hyper serves only.
struct Retimed {
    io: TimedIo<TcpStream>,
    /// `server.upgrade_idle_timeout` in milliseconds once a tunnel carries the connection;
    /// 0 before.
    retime: Arc<AtomicU64>,
    retimed: bool,
}

impl Retimed {
    fn check(&mut self) {
        if !self.retimed {
            let millis = self.retime.load(Ordering::Acquire);
            if millis != 0 {
                self.retimed = true;
                self.io.time_as_tunnel(Duration::from_millis(millis));
            }
        }
    }
}

impl AsyncRead for Retimed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check();
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Retimed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check();
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

type ProxyFuture = Pin<Box<dyn Future<Output = Result<Response<ToClient>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for ProxyService {
    type Response = Response<ToClient>;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn call(&self, mut request: Request<Incoming>) -> ProxyFuture {
        let shared = self.shared.clone();
        let client = self.client.clone();
        let tunnel = self.tunnel.clone();
        let retime = self.retime.clone();
        Box::pin(async move {
            let head_request = request.method() == Method::HEAD;
            // hyper offers a hand-over only for a request that asks for an upgrade.
            let on_upgrade = request.extensions_mut().remove::<OnUpgrade>();
            let mut reply = handle_hyper(&shared, &client, request, on_upgrade.is_some()).await;
            let Some(on_upgrade) = on_upgrade else {
                return Ok(reply.into_response(head_request));
            };
            let switched = match reply.status {
                http::StatusCode::SWITCHING_PROTOCOLS => reply.body.take_upgraded(),
                _ => None,
            };
            let Some(backend) = switched else {
                // Bytes the client sent for a tunnel that did not open are never a request.
                return Ok(reply.closing().into_response(head_request));
            };
            let pending = PendingTunnel {
                client: on_upgrade,
                backend,
                retime,
            };
            *tunnel.lock().unwrap_or_else(|p| p.into_inner()) = Some(pending);
            let mut response = reply.into_response(head_request);
            (response.headers_mut()).insert(CONNECTION, HeaderValue::from_static("upgrade"));
            Ok(response)
        })
    }
}
