//! hyper's server for a listener with `server.h2c` on: it serves HTTP/1 and HTTP/2 with prior
//! knowledge on the same port (hyper-util's auto builder sniffs the protocol), and each request
//! it parsed goes through the codec's rules ([`crate::proxy::handle_hyper`]) before the request
//! path.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use lb_core::config::{MIN_MAX_HEADER_BYTES, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::OpenConnection;
use super::timed_io::TimedIo;
use crate::proxy::body::ToClient;
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
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX))
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
        let service = ProxyService {
            shared: shared.clone(),
            client,
        };
        let io = TokioIo::new(TimedIo::new(stream, idle_timeout, None));
        let connection = self
            .graceful
            .watch(self.builder.serve_connection(io, service).into_owned());
        async move {
            let _open = OpenConnection::new(&shared.metrics, permit);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %error, "client connection ended with an error");
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
}

type ProxyFuture = Pin<Box<dyn Future<Output = Result<Response<ToClient>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for ProxyService {
    type Response = Response<ToClient>;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn call(&self, request: Request<Incoming>) -> ProxyFuture {
        let shared = self.shared.clone();
        let client = self.client.clone();
        Box::pin(async move {
            let head_request = request.method() == Method::HEAD;
            let reply = handle_hyper(&shared, &client, request).await;
            Ok(reply.into_response(head_request))
        })
    }
}
