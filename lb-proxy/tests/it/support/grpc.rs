//! A tonic gRPC client for the tests: tonic's client codec over one hyper HTTP/2 connection
//! (prior knowledge), calling test-backend's `lb.test.Echo`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::Ordering::Relaxed;

use test_backend::grpc::{EchoReply, EchoRequest};
use test_backend::{BackendOptions, RunningBackend};
use tokio::net::TcpStream;
use tonic::codec::Streaming;
use tonic_prost::ProstCodec;

/// One HTTP/2 connection, as tonic's client takes a transport.
#[derive(Clone)]
pub struct Channel(http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// The echo service's client.
pub type Client = tonic::client::Grpc<Channel>;

/// A client of the echo service on a new HTTP/2 connection to `addr`.
pub async fn connect(addr: SocketAddr) -> Client {
    let stream = TcpStream::connect(addr).await.expect("connects");
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(1 << 20)
        .handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let origin = format!("http://{addr}").parse().expect("origin");
    tonic::client::Grpc::with_origin(Channel(sender), origin)
}

fn path(method: &str) -> PathAndQuery {
    PathAndQuery::try_from(format!("{}{method}", test_backend::grpc::SERVICE)).expect("path")
}

fn codec() -> ProstCodec<EchoRequest, EchoReply> {
    ProstCodec::default()
}

/// A request saying `message`.
pub fn says(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        ..EchoRequest::default()
    }
}

/// A unary call of `method`.
pub async fn unary(
    client: &mut Client,
    method: &str,
    request: tonic::Request<EchoRequest>,
) -> Result<tonic::Response<EchoReply>, tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    client.unary(request, path(method), codec()).await
}

/// A server-streaming call of `method`.
pub async fn server_streaming(
    client: &mut Client,
    method: &str,
    request: EchoRequest,
) -> Result<tonic::Response<Streaming<EchoReply>>, tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let request = tonic::Request::new(request);
    client
        .server_streaming(request, path(method), codec())
        .await
}

/// A bidirectional call of `Bidi`, whose requests are what `requests` yields.
pub async fn bidi(
    client: &mut Client,
    requests: impl futures_util::Stream<Item = EchoRequest> + Send + 'static,
) -> Result<tonic::Response<Streaming<EchoReply>>, tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let request = tonic::Request::new(requests);
    client.streaming(request, path("Bidi"), codec()).await
}

/// A client-streaming call of `method`, whose requests are what `requests` yields.
pub async fn client_streaming(
    client: &mut Client,
    method: &str,
    requests: impl futures_util::Stream<Item = EchoRequest> + Send + 'static,
) -> Result<tonic::Response<EchoReply>, tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unknown(e.to_string()))?;
    let request = tonic::Request::new(requests);
    client
        .client_streaming(request, path(method), codec())
        .await
}

/// A test-backend that speaks HTTP/2 only (h2c), allowing `streams` per connection.
pub async fn h2c_backend(name: &str, streams: Option<u32>) -> RunningBackend {
    crate::support::backend_with(BackendOptions {
        name: name.to_owned(),
        http2_only: true,
        h2_max_streams: streams,
        ..BackendOptions::default()
    })
    .await
}

/// A balancer taking h2c from clients and speaking `protocol` to `backends`.
pub async fn h2c_balancer(backends: &[RunningBackend], extra: &str) -> lb_proxy::Daemon {
    let mut extra = extra.to_owned();
    for (section, line) in [
        ("server:\n", "  h2c: true\n"),
        ("upstream:\n", "  protocol: h2c\n"),
    ] {
        extra = match extra.contains(section) {
            true => extra.replacen(section, &format!("{section}{line}"), 1),
            false => format!("{extra}{section}{line}"),
        };
    }
    crate::support::balancer(backends, &extra).await
}

/// Connections `backend` accepted so far.
pub fn connections(backend: &RunningBackend) -> u64 {
    backend.stats().connections.load(Relaxed)
}

/// A `Wait` call of `ms`.
pub fn waits(ms: u64) -> EchoRequest {
    EchoRequest {
        wait_ms: ms,
        ..says("wait")
    }
}

/// Starts `count` `Wait` calls of `ms` at once on one client connection, and waits for all.
pub async fn concurrent_waits(addr: SocketAddr, count: usize, ms: u64) {
    let client = connect(addr).await;
    let calls = (0..count).map(|_| {
        let mut client = client.clone();
        async move { unary(&mut client, "Wait", tonic::Request::new(waits(ms))).await }
    });
    for result in futures_util::future::join_all(calls).await {
        result.expect("the call succeeds");
    }
}
