//! The echo exchange every WebSocket test makes through the balancer, whatever carries it.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

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
