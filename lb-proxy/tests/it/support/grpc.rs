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
use test_backend::grpc::{EchoReply, EchoRequest};
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
