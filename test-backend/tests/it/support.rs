//! Helpers: a backend on 127.0.0.1 port 0, one request with hyper's own client, bounded polling.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use test_backend::{BackendOptions, RunningBackend, bind_and_spawn};
use tokio::net::TcpStream;

pub const LOCAL: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub async fn start(options: BackendOptions) -> RunningBackend {
    bind_and_spawn(LOCAL, options)
        .await
        .expect("bind 127.0.0.1:0")
}

pub async fn named(name: &str) -> RunningBackend {
    start(BackendOptions {
        name: name.to_owned(),
        ..BackendOptions::default()
    })
    .await
}

pub async fn connect(addr: SocketAddr) -> http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

pub async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    body: Bytes,
) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test")
        .header("x-test", "yes")
        .body(Full::new(body))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

/// One request on a fresh connection.
pub async fn call(addr: SocketAddr, method: Method, path: &str, body: Bytes) -> Reply {
    send(&mut connect(addr).await, method, path, body).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    call(addr, Method::GET, path, Bytes::new()).await
}

/// Polls `cond` every few milliseconds until it holds; fails after 10 s.
pub async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn text(reply: &Reply) -> &str {
    std::str::from_utf8(&reply.body).expect("utf-8 body")
}

pub fn payload(len: usize) -> Bytes {
    // Not the /bytes pattern, so an echo that served the wrong thing could not pass by accident.
    let mut x = 0x1234_5678u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}
