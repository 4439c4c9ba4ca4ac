//! hyper's server, for the connections our own HTTP/1 loop does not serve: a listener with
//! `server.h2c` on (HTTP/1 and HTTP/2 with prior knowledge on the same port; hyper-util's auto
//! builder sniffs the protocol), and TLS connections that chose `h2` by ALPN. Each request it
//! parsed goes through the codec's rules ([`crate::proxy::handle_hyper`]) before the request
//! path.
//!
//! An HTTP/1.1 upgrade request (WebSocket) that a backend answers with `101` is tunnelled as on
//! our own loop: hyper hands the connection over once the `101` is written, and the connection's
//! task carries the tunnel ([`super::tunnel`]) with the bytes hyper had read beyond the request.
//! Any other answer to an upgrade request closes the connection after it, so that bytes meant
//! for the tunnel are never read as a next request. On HTTP/2, WebSocket comes as an extended
//! `CONNECT` ([`connect`]).
//!
//! # Layout
//! - [`connect`]: `CONNECT` streams, and WebSocket over HTTP/2 (RFC 8441).
//! - [`retimed`]: the socket under hyper, whose timers tunnels switch.
//! - [`goaway`]: why the balancer closed an HTTP/2 connection, for
//!   `lb_http2_connections_closed_total`.
//! - [`stall`]: a client that never takes its responses.

mod connect;
mod goaway;
mod retimed;
mod stall;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use lb_core::config::{MIN_MAX_HEADER_BYTES, ServerConfig};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::either::Either;
use tokio_util::task::TaskTracker;

use super::OpenConnection;
use super::stream::ClientStream;
use super::timed_io::TimedIo;
use crate::proxy::body::ToClient;
use crate::proxy::{ClientInfo, HyperUpgrade, handle_hyper};
use crate::runtime::Shared;
use retimed::{ConnShared, PendingTunnel, Retimed};
use stall::{StallWatch, Watched};

/// hyper's server, configured once, and the connections it serves.
pub(crate) struct HyperDriver {
    serve: Arc<HyperServe>,
    graceful: GracefulShutdown,
}

/// What a connection needs of the driver, shared with connection tasks that decide to use
/// hyper after their TLS handshake.
pub(crate) struct HyperServe {
    /// HTTP/1 and HTTP/2 with prior knowledge (h2c).
    auto: auto::Builder<TokioExecutor>,
    /// HTTP/2 only: TLS connections that chose `h2` by ALPN.
    h2: auto::Builder<TokioExecutor>,
    /// Where WebSocket streams' tunnels run, so that shutdown waits for them.
    tracker: TaskTracker,
    /// `server.http2.stalled_response_timeout`.
    stalled_response_timeout: Duration,
}

impl HyperDriver {
    /// hyper's server with `server`'s limits and timeouts; tunnels of HTTP/2 streams run on
    /// `tracker`.
    pub(crate) fn new(server: &ServerConfig, tracker: &TaskTracker) -> Self {
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
        // Extended CONNECT (RFC 8441) is advertised: browsers open WebSockets over HTTP/2
        // only where the server says it may.
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
            .enable_connect_protocol()
            .keep_alive_interval(None);
        let serve = HyperServe {
            h2: builder.clone().http2_only(),
            auto: builder,
            tracker: tracker.clone(),
            stalled_response_timeout: http2.stalled_response_timeout,
        };
        Self {
            serve: Arc::new(serve),
            graceful: GracefulShutdown::new(),
        }
    }

    /// The future that serves a plain connection (h2c, or HTTP/1), for a task of its own.
    pub(crate) fn serve(
        &self,
        stream: tokio::net::TcpStream,
        idle_timeout: Duration,
        client: Arc<ClientInfo>,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let _ = stream.set_nodelay(true);
        let io = TimedIo::new(stream, idle_timeout, None);
        let watcher = self.graceful.watcher();
        (self.serve.clone()).connection(io, false, watcher, client, shared, permit)
    }

    /// What a TLS connection task needs to serve HTTP/2 once its handshake chose `h2`: taken
    /// at the accept, so that a shutdown signalled during the handshake reaches it.
    pub(crate) fn for_tls(&self) -> (Arc<HyperServe>, Watcher) {
        (self.serve.clone(), self.graceful.watcher())
    }

    /// Asks every connection to finish its requests in flight and close.
    pub(crate) async fn shutdown(self) {
        self.graceful.shutdown().await;
    }
}

impl HyperServe {
    /// Serves a connection until it closes: HTTP/2 only when `h2_only` (ALPN said so), else
    /// whichever the client speaks.
    pub(crate) fn connection<S: ClientStream>(
        self: Arc<Self>,
        io: TimedIo<S>,
        h2_only: bool,
        watcher: Watcher,
        client: Arc<ClientInfo>,
        shared: Arc<Shared>,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let peer = client.peer;
        let conn = Arc::new(ConnShared::new(io.idle_timeout()));
        let stall = Arc::new(StallWatch::new());
        let service = ProxyService(Arc::new(ServiceState {
            shared: shared.clone(),
            client,
            tunnel: Mutex::default(),
            conn: conn.clone(),
            stall: stall.clone(),
            tracker: self.tracker.clone(),
        }));
        let tunnel = service.0.clone();
        let io = TokioIo::new(Retimed::new(io, conn.clone()));
        let connection = match h2_only {
            true => Either::Left(watcher.watch(self.h2.serve_connection(io, service).into_owned())),
            false => Either::Right(
                watcher.watch(
                    (self.auto)
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                ),
            ),
        };
        let timeout = self.stalled_response_timeout;
        async move {
            let _open = OpenConnection::new(&shared.metrics, permit);
            let stalled = stall.stalled(timeout);
            tokio::select! {
                ended = connection => {
                    if let Err(error) = ended {
                        tracing::debug!(%peer, %error, "client connection ended with an error");
                    }
                }
                () = stalled => {
                    tracing::info!(
                        %peer, ?timeout,
                        "HTTP/2 client connection closed: a response waited on the client too long"
                    );
                    shared.metrics.http2.closed("flow_control_stall");
                }
            }
            if let Some(reason) = conn.goaway.get() {
                tracing::info!(%peer, reason, "HTTP/2 client connection closed with GOAWAY");
                shared.metrics.http2.closed(reason);
            }
            let pending = (tunnel.tunnel.lock())
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(pending) = pending {
                Box::pin(pending.run(&shared)).await;
            }
        }
    }
}

/// The request path as a hyper service: one per client connection, cloned for each request
/// (one reference count).
#[derive(Clone)]
struct ProxyService(Arc<ServiceState>);

impl std::ops::Deref for ProxyService {
    type Target = ServiceState;

    fn deref(&self) -> &ServiceState {
        &self.0
    }
}

/// What the requests of one connection share.
struct ServiceState {
    shared: Arc<Shared>,
    client: Arc<ClientInfo>,
    /// The tunnel a `101` opened, for the connection's task to carry once hyper lets go.
    tunnel: Mutex<Option<PendingTunnel>>,
    /// What the connection's socket shares with its requests.
    conn: Arc<ConnShared>,
    /// The connection's responses that wait on the client.
    stall: Arc<StallWatch>,
    /// Where tunnels of HTTP/2 streams run.
    tracker: TaskTracker,
}

impl ProxyService {
    /// `response` as sent on this connection: watched for a stall on HTTP/2 (only HTTP/2
    /// responses reach here with [`Version::HTTP_2`]).
    fn respond_as(&self, response: Response<ToClient>, version: Version) -> Response<Watched> {
        match version {
            Version::HTTP_2 => response.map(|body| self.stall.watch(body)),
            _ => response.map(Watched::plain),
        }
    }

    /// An HTTP/2 response, watched.
    fn respond(&self, response: Response<ToClient>) -> Response<Watched> {
        self.respond_as(response, Version::HTTP_2)
    }
}

type ProxyFuture = Pin<Box<dyn Future<Output = Result<Response<Watched>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for ProxyService {
    type Response = Response<Watched>;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn call(&self, mut request: Request<Incoming>) -> ProxyFuture {
        let service = self.clone();
        Box::pin(async move {
            let version = request.version();
            if version == Version::HTTP_2 && request.method() == Method::CONNECT {
                // Boxed: a CONNECT stream is rare, and its future would take room in every one.
                return Ok(Box::pin(connect::serve(&service, request)).await);
            }
            let head_request = request.method() == Method::HEAD;
            // hyper offers a hand-over only for an HTTP/1.1 request that asks for an upgrade.
            let on_upgrade = request.extensions_mut().remove::<OnUpgrade>();
            let upgrade = match on_upgrade {
                Some(_) => HyperUpgrade::Http1,
                None => HyperUpgrade::No,
            };
            let (shared, client) = (&*service.shared, &service.client);
            let mut reply = handle_hyper(shared, client, request, upgrade).await;
            let Some(on_upgrade) = on_upgrade else {
                return Ok(service.respond_as(reply.into_response(head_request), version));
            };
            let switched = match reply.status {
                http::StatusCode::SWITCHING_PROTOCOLS => reply.body.take_upgraded(),
                _ => None,
            };
            let Some(backend) = switched else {
                // Bytes the client sent for a tunnel that did not open are never a request.
                let response = reply.closing().into_response(head_request);
                return Ok(response.map(Watched::plain));
            };
            let pending = PendingTunnel {
                client: on_upgrade,
                backend,
                conn: service.conn.clone(),
            };
            *service.tunnel.lock().unwrap_or_else(|p| p.into_inner()) = Some(pending);
            let mut response = reply.into_response(head_request);
            (response.headers_mut()).insert(CONNECTION, HeaderValue::from_static("upgrade"));
            Ok(response.map(Watched::plain))
        })
    }
}
