//! The echo exchange every WebSocket test makes through the balancer, whatever carries it, and
//! the HTTP/2 client side of WebSocket over HTTP/2 (RFC 8441).

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A WebSocket handshake for `path`, with RFC 6455's sample key (`dGhlIHNhbXBsZSBub25jZQ==`).
pub fn handshake(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// `lb_upgraded_connections`: tunnels open now.
pub async fn upgraded(daemon: &lb_proxy::Daemon) -> f64 {
    super::metric_sum(&super::scrape(daemon).await, "lb_upgraded_connections", &[])
}

/// `lb_active_connections`: backend slots held now.
pub async fn active(daemon: &lb_proxy::Daemon) -> f64 {
    super::metric_sum(&super::scrape(daemon).await, "lb_active_connections", &[])
}

/// An HTTP/2 client connection's handle.
pub type Sender = http2::SendRequest<Empty<Bytes>>;

/// An HTTP/2 client connection over `io`.
pub async fn h2_over<I>(io: I) -> Sender
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// Opens a WebSocket over an HTTP/2 stream of `sender` (RFC 8441).
pub async fn websocket_over_h2(
    sender: &mut Sender,
    uri: &str,
) -> Result<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, http::StatusCode> {
    sender.ready().await.unwrap();
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(uri)
        .header("sec-websocket-version", "13")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    if response.status() != 200 {
        return Err(response.status());
    }
    assert!(response.headers().get("sec-websocket-accept").is_none());
    let upgraded = hyper::upgrade::on(response).await.unwrap();
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

/// Sends a text, a binary and a 300 KB text message to test-backend's `/ws` echo and checks each
/// comes back; the large one crosses several reads and writes of the tunnel.
pub async fn echo_text_binary_and_large<S>(socket: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("hello")
    );
    let binary = vec![0u8, 1, 2, 254, 255];
    socket.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::binary(binary)
    );
    let large = "x".repeat(300_000);
    socket.send(Message::text(large.clone())).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text(large));
}

/// An HTTP/2 client's WebSocket tunnel through the balancer at `addr` (an extended `CONNECT`
/// with the h2 crate, whose streams tell a reset from an orderly end, where hyper's upgraded
/// stream does not), once the backend answered its `ping` with `pong`: the stream's two halves.
pub async fn h2_tunnel(
    addr: std::net::SocketAddr,
) -> (h2::SendStream<bytes::Bytes>, h2::RecvStream) {
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(socket).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // Extended CONNECT waits for the balancer's SETTINGS_ENABLE_CONNECT_PROTOCOL.
    let enabled = super::eventually(std::time::Duration::from_secs(5), || {
        let enabled = client.is_extended_connect_protocol_enabled();
        async move { enabled }
    })
    .await;
    assert!(enabled, "the balancer offers extended CONNECT");
    let mut request = http::Request::connect(format!("http://{addr}/ws"))
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (response, mut up) = client.send_request(request, false).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("the answer within 10 s")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut down = response.into_body();
    up.send_data("ping".into(), false).unwrap();
    let pong = tokio::time::timeout(std::time::Duration::from_secs(10), down.data())
        .await
        .expect("the pong within 10 s");
    assert_eq!(pong.unwrap().unwrap(), "pong");
    (up, down)
}

/// Checks that the client's stream of a tunnel ends in a reset with `CANCEL` (RFC 8441 §5: an
/// abort), not in an orderly end, within 10 s.
pub async fn assert_cancelled(down: &mut h2::RecvStream) {
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), down.data())
        .await
        .expect("the client's stream ended within 10 s");
    match end {
        Some(Err(error)) => assert_eq!(error.reason(), Some(h2::Reason::CANCEL), "{error}"),
        other => panic!("the backend's abort reached the client as {other:?}"),
    }
}
