//! The gRPC echo service and the HTTP/2-only mode, over raw HTTP/2 (prior knowledge) with
//! gRPC's framing written by hand: a 5-byte prefix (compressed flag, big-endian length) before
//! each prost message, the status in trailers.

use std::sync::atomic::Ordering::Relaxed;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use test_backend::BackendOptions;
use test_backend::grpc::{EchoReply, EchoRequest};
use tokio::net::TcpStream;

use crate::support::start;

fn framed(request: &EchoRequest) -> Bytes {
    let message = request.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap());
    out.put_slice(&message);
    out.freeze()
}

fn replies(mut body: Bytes) -> Vec<EchoReply> {
    let mut out = Vec::new();
    while body.has_remaining() {
        assert_eq!(body.get_u8(), 0, "uncompressed");
        let length = body.get_u32() as usize;
        out.push(EchoReply::decode(body.split_to(length)).expect("a reply"));
    }
    out
}

/// One call of `method` over a new HTTP/2 connection: the replies and the trailers.
async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    request: &EchoRequest,
) -> (Vec<EchoReply>, http::HeaderMap) {
    let stream = TcpStream::connect(addr).await.unwrap();
    // Room for `BigTrailers`' trailers (hyper's default list is 16 KiB).
    let (mut sender, connection) = http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(1 << 20)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{addr}/lb.test.Echo/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(framed(request)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    let body = collected.to_bytes();
    (replies(body), trailers.unwrap_or_default())
}

#[tokio::test]
async fn the_echo_service_answers_each_method() {
    let backend = start(BackendOptions {
        name: "g".to_owned(),
        ..BackendOptions::default()
    })
    .await;
    let hello = EchoRequest {
        message: "hello".to_owned(),
        ..EchoRequest::default()
    };
    let (replies, trailers) = call(backend.addr(), "Unary", &hello).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(
        (replies[0].message.as_str(), replies[0].backend.as_str()),
        ("hello", "g")
    );
    assert_eq!(trailers["grpc-status"], "0");

    let three = EchoRequest {
        count: 3,
        ..hello.clone()
    };
    let (replies, _) = call(backend.addr(), "ServerStream", &three).await;
    assert_eq!(
        replies.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 1, 2]
    );

    let big = EchoRequest {
        trailer_bytes: 30_000,
        ..hello.clone()
    };
    let (replies, trailers) = call(backend.addr(), "BigTrailers", &big).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-big"].len(), 30_000);

    let fail = EchoRequest {
        code: 9,
        message: "not now".to_owned(),
        ..EchoRequest::default()
    };
    let stream = TcpStream::connect(backend.addr()).await.unwrap();
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}/lb.test.Echo/Fail", backend.addr()))
        .header("content-type", "application/grpc")
        .body(Full::new(framed(&fail)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    // A failure before any reply is a trailers-only answer: the status is in the head.
    assert_eq!(response.headers()["grpc-status"], "9");
    // tonic percent-encodes the space.
    assert_eq!(response.headers()["grpc-message"], "not%20now");
    assert_eq!(backend.stats().grpc_calls.load(Relaxed), 4);
}

#[tokio::test]
async fn http2_only_serves_http2_and_refuses_http1() {
    let backend = start(BackendOptions {
        name: "h2".to_owned(),
        http2_only: true,
        h2_max_streams: Some(2),
        ..BackendOptions::default()
    })
    .await;
    let hello = EchoRequest {
        message: "hi".to_owned(),
        ..EchoRequest::default()
    };
    let (replies, _) = call(backend.addr(), "Unary", &hello).await;
    assert_eq!(replies[0].message, "hi");

    let stream = TcpStream::connect(backend.addr()).await.unwrap();
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = sender.send_request(request).await;
    assert!(answer.is_err(), "an HTTP/1.1 request gets no answer");
}
