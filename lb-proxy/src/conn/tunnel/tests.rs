use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

/// Copies `from` → `to` with one [`Half`] that starts with `first`, until it ends.
async fn copy(
    first: &[u8],
    from: &mut tokio::io::DuplexStream,
    to: &mut tokio::io::DuplexStream,
) -> u64 {
    let mut half = Half::with(BytesMut::from(first));
    std::future::poll_fn(|cx| half.poll_copy(cx, Pin::new(&mut *from), Pin::new(&mut *to)))
        .await
        .unwrap();
    half.moved
}

#[tokio::test]
async fn held_bytes_go_first_then_the_stream_then_the_end() {
    let (mut client, mut from) = duplex(64);
    let (mut to, mut server) = duplex(64);
    let writer = tokio::spawn(async move {
        // More than either pipe holds: the copy must wait for the reader and go on.
        client.write_all(&[b'x'; 1000]).await.unwrap();
        client.shutdown().await.unwrap();
    });
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        got
    });
    let moved = copy(b"held:", &mut from, &mut to).await;
    writer.await.unwrap();
    drop(to);
    let got = reader.await.unwrap();
    assert_eq!(moved, 1005);
    assert_eq!(&got[..5], b"held:");
    assert!(got[5..].iter().all(|&byte| byte == b'x') && got.len() == 1005);
}

#[tokio::test]
async fn an_end_of_stream_is_passed_on_as_a_half_close() {
    let (client, mut from) = duplex(64);
    let (mut to, mut server) = duplex(64);
    drop(client);
    assert_eq!(copy(b"", &mut from, &mut to).await, 0);
    // The writer was shut down: the far side reads the end, not a hang.
    let mut rest = Vec::new();
    assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
}

/// A reader that fails as a reset connection does.
struct Reset;

impl AsyncRead for Reset {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
    }
}

/// The tunnel aborts the side that did not fail: a direction tells which of its two did.
#[tokio::test]
async fn a_direction_tells_a_failed_reader_from_a_failed_writer() {
    let (mut to, _server) = duplex(64);
    let mut half = Half::with(BytesMut::new());
    let broke =
        std::future::poll_fn(|cx| half.poll_copy(cx, Pin::new(&mut Reset), Pin::new(&mut to)))
            .await;
    assert!(
        matches!(&broke, Err(Broke::Reader(error)) if error.kind() == io::ErrorKind::ConnectionReset),
        "{broke:?}"
    );
    let (mut from_client, mut from) = duplex(64);
    let (mut to, server) = duplex(64);
    drop(server);
    from_client.write_all(b"lost").await.unwrap();
    let mut half = Half::with(BytesMut::new());
    let broke =
        std::future::poll_fn(|cx| half.poll_copy(cx, Pin::new(&mut from), Pin::new(&mut to))).await;
    assert!(matches!(broke, Err(Broke::Writer(_))), "{broke:?}");
}
