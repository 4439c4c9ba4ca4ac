//! Upgrades over HTTP/1.1 (WebSocket): a well-formed upgrade request reaches the backend with
//! its `Upgrade`, the connection becomes a tunnel only after the backend's `101`, and the
//! tunnel holds the backend's slot, shows in `lb_upgraded_connections`, closes when idle and on
//! shutdown. A refused upgrade leaves the client on HTTP/1.1, and bytes the client sent before
//! the `101` are never read as a second request.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::support::fake_backend::{Behaviour, FakeBackend, read_until_closed};
use crate::support::raw::{get_on, read_response};
use crate::support::websocket::{active, assert_cancelled, h2_tunnel, handshake, upgraded};
use crate::support::*;

/// Reads a response head (up to its empty line) off `stream`, and what came after it.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> (String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&bytes, b"\r\n\r\n") {
            let rest = bytes.split_off(end + 4);
            return (String::from_utf8(bytes).unwrap(), rest);
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a response head in time")
            .unwrap();
        assert!(read > 0, "closed before a head: {bytes:?}");
        bytes.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test]
async fn a_websocket_client_exchanges_text_binary_and_a_close_through_the_balancer() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let url = format!("ws://{}/ws", daemon.listen_addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-backend"], fleet[0].name());
    crate::support::websocket::echo_text_binary_and_large(&mut socket).await;
    // While open, the tunnel is counted and holds the backend's in-flight slot.
    assert_eq!(upgraded(&daemon).await, 1.0);
    assert_eq!(active(&daemon).await, 1.0);
    socket.close(None).await.unwrap();
    // The backend's answer to the close is a close.
    match socket.next().await {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("after the close: {other:?}"),
    }
    // The backend closed after the close handshake: the tunnel closes the client's end too.
    let mut socket = socket.into_inner();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut rest)).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            upgraded(&daemon).await == 0.0
        })
        .await,
        "the tunnel did not close"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            upgraded(&daemon).await == 0.0 && active(&daemon).await == 0.0
        })
        .await,
        "the tunnel's slot was not given back"
    );
    // The metric's backend label is the backend's name.
    let metrics = scrape(&daemon).await;
    assert!(
        metrics.contains(&format!(
            "lb_upgraded_connections{{backend=\"{}\"}} 0",
            fleet[0].name()
        )),
        "{metrics}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn bytes_sent_before_the_101_are_the_tunnels_first_bytes() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    // The handshake and a first masked text frame "hi", in one write, before any answer.
    let mut wire = handshake("/ws").into_bytes();
    wire.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    stream.write_all(&wire).await.unwrap();
    let (head, mut rest) = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(
        lower.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert!(!lower.contains("content-length") && !lower.contains("transfer-encoding"));
    // The backend echoes the held frame, unmasked.
    while rest.len() < 4 {
        let mut chunk = [0u8; 64];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0);
        rest.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(rest, [0x81, 0x02, b'h', b'i']);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_refused_upgrade_leaves_the_client_on_http_1_1() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    // `/` answers 200 whatever the request asks for.
    stream.write_all(handshake("/").as_bytes()).await.unwrap();
    let refused = read_response(&mut stream).await;
    assert_eq!(refused.status, 200);
    assert!(String::from_utf8_lossy(&refused.body).starts_with("hello from"));
    // The same connection carries the next request as HTTP/1.1.
    assert_eq!(get_on(&mut stream, "/").await.status, 200);
    // A 426 is a response like any other.
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 426);
    assert_eq!(get_on(&mut stream, "/").await.status, 200);
    assert_eq!(upgraded(&daemon).await, 0.0);
    daemon.shutdown().await;
}

/// A balancer (with `extra` config) over a backend that answers 200 to an upgrade; a client
/// sends the upgrade and, in the same write, a second request; what it read until the
/// connection closed (which it must).
async fn refused_upgrade_then_a_request(extra: &str) -> (lb_proxy::Daemon, FakeBackend, String) {
    let fake = FakeBackend::start(vec![Behaviour::Respond("no switch")]).await;
    let yaml = config_yaml(&[fake.spec("fake")], extra);
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let mut wire = handshake("/chat").into_bytes();
    wire.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(&wire).await.unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let text = answer.text();
    assert!(answer.closed, "{text}");
    (daemon, fake, text)
}

#[tokio::test]
async fn bytes_after_a_refused_upgrade_never_reach_the_backend_as_a_request() {
    let (daemon, fake, text) = refused_upgrade_then_a_request("").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let received = fake.received_text();
    assert!(!received.contains("smuggled"), "{received}");
    assert_eq!(fake.request_heads(), 1, "{received}");
    // The upgrade request itself was forwarded with its Upgrade.
    let lower = received.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nconnection: upgrade\r\nupgrade: websocket\r\n"),
        "{received}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_malformed_upgrade_request_is_an_ordinary_request_without_upgrade() {
    let fake = FakeBackend::start(vec![Behaviour::Respond("plain")]).await;
    let yaml = config_yaml(&[fake.spec("fake")], "");
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    // A body with the upgrade: not a well-formed upgrade, so its Upgrade is dropped.
    stream
        .write_all(
            b"POST /u HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
              Content-Length: 3\r\n\r\nabc",
        )
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    let received = fake.received_text().to_ascii_lowercase();
    assert!(!received.contains("upgrade"), "{received}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_101_to_a_request_that_asked_for_no_upgrade_is_a_bad_gateway() {
    let fake = FakeBackend::start(vec![Behaviour::Raw(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nGET /x",
    )])
    .await;
    let yaml = config_yaml(&[fake.spec("fake")], "retry:\n  max_attempts: 1\n");
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    assert_eq!(get_on(&mut stream, "/").await.status, 502);
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_open_tunnel_holds_the_backends_slot_against_max_connections() {
    let fleet = backends(1).await;
    let backend = &fleet[0];
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\n\
         health_check:\n  enabled: false\nbackends:\n  - name: {}\n    address: {}\n    max_connections: 1\n",
        backend.name(),
        backend.addr()
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let url = format!("ws://{}/ws", daemon.listen_addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    assert_eq!(get_on(&mut stream, "/").await.status, 503);
    socket.close(None).await.unwrap();
    while let Some(Ok(_)) = socket.next().await {}
    assert!(
        eventually(Duration::from_secs(5), || async {
            upgraded(&daemon).await == 0.0
        })
        .await
    );
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    assert_eq!(get_on(&mut stream, "/").await.status, 200);
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_tunnel_is_closed_at_the_upgrade_idle_timeout_on_both_paths() {
    for h2c in [false, true] {
        let fleet = backends(1).await;
        // The client connection's own idle timeout is shorter: the tunnel's replaces it.
        let extra =
            format!("server:\n  h2c: {h2c}\n  idle_timeout: 5s\n  upgrade_idle_timeout: 40s\n");
        let daemon = balancer(&fleet, &extra).await;
        let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
        stream.write_all(handshake("/ws").as_bytes()).await.unwrap();
        let (head, _) = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 101"), "h2c={h2c}: {head}");
        let started = Instant::now();
        let answer = read_until_closed(&mut stream, Duration::from_secs(120)).await;
        let took = started.elapsed();
        assert!(
            answer.closed && answer.bytes.is_empty(),
            "h2c={h2c}: {:?}",
            answer.text()
        );
        // Looked at every eighth of the timeout.
        assert!(
            took >= Duration::from_secs(40) && took <= Duration::from_secs(46),
            "h2c={h2c}: {took:?}"
        );
        daemon.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_tunnel_ends_with_the_shutdown_grace() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  shutdown_grace: 3s\n").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream.write_all(handshake("/ws").as_bytes()).await.unwrap();
    let (head, _) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let started = Instant::now();
    daemon.shutdown().await;
    assert!(
        started.elapsed() <= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.closed, "{:?}", answer.text());
}

/// On a listener with `server.h2c`, hyper serves HTTP/1: the same tunnel, the same refusals.
#[tokio::test]
async fn a_listener_with_h2c_tunnels_websocket_and_refuses_smuggling_too() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let url = format!("ws://{}/ws", daemon.listen_addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("over hyper")).await.unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::text("over hyper")
    );
    socket
        .send(Message::binary(vec![7u8; 70_000]))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::binary(vec![7u8; 70_000])
    );
    assert_eq!(upgraded(&daemon).await, 1.0);
    socket.close(None).await.unwrap();
    while let Some(Ok(_)) = socket.next().await {}
    drop(socket);
    assert!(
        eventually(Duration::from_secs(5), || async {
            upgraded(&daemon).await == 0.0 && active(&daemon).await == 0.0
        })
        .await
    );
    // Held bytes after the handshake are the tunnel's first bytes on this path too.
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let mut wire = handshake("/ws").into_bytes();
    wire.extend_from_slice(&[0x82, 0x81, 9, 9, 9, 9, 0x41 ^ 9]);
    stream.write_all(&wire).await.unwrap();
    let (head, mut rest) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\nconnection: upgrade\r\n"),
        "{head}"
    );
    while rest.len() < 3 {
        let mut chunk = [0u8; 64];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0);
        rest.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(rest, [0x82, 0x01, 0x41]);
    daemon.shutdown().await;

    let (daemon, fake, text) = refused_upgrade_then_a_request("server:\n  h2c: true\n").await;
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    let received = fake.received_text();
    assert!(!received.contains("smuggled"), "{received}");
    assert_eq!(fake.request_heads(), 1, "{received}");
    daemon.shutdown().await;
}

/// A backend that switches every request to a tunnel, then answers `ping` with `pong`, resets
/// its connection when the tunnel brings it `abort`, closes it in order on `bye`, sends 1 MB on
/// `flood`, and otherwise reports how the balancer ended the tunnel: `eof` (in order) or
/// `reset`.
async fn tunnel_backend() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<&'static str>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, ended) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 4096];
                while find(&seen, b"\r\n\r\n").is_none() {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => seen.extend_from_slice(&chunk[..read]),
                    }
                }
                let switch = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                              Connection: Upgrade\r\n\
                              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
                if socket.write_all(switch.as_bytes()).await.is_err() {
                    return;
                }
                let said = loop {
                    match socket.read(&mut chunk).await {
                        Ok(0) => break "eof",
                        Ok(read) if &chunk[..read] == b"ping" => {
                            if socket.write_all(b"pong").await.is_err() {
                                break "failed";
                            }
                        }
                        Ok(read) if &chunk[..read] == b"abort" => {
                            socket.set_zero_linger().unwrap();
                            return;
                        }
                        Ok(read) if &chunk[..read] == b"flood" => {
                            // Written as the tunnel takes it; reads resume once all is taken.
                            let _ = socket.write_all(&vec![b'x'; 1 << 20]).await;
                        }
                        Ok(read) if &chunk[..read] == b"bye" => {
                            let _ = socket.shutdown().await;
                            let _ = socket.read(&mut chunk).await;
                            return;
                        }
                        Ok(_) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                            break "reset";
                        }
                        Err(_) => break "failed",
                    }
                };
                let _ = report.send(said);
            });
        }
    });
    (addr, ended)
}

/// A client connection switched to a tunnel through the balancer at `addr`.
pub(crate) async fn tunnel_through(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(handshake("/ws").as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(rest.is_empty(), "{rest:?}");
    stream
}

/// A tunnel's side that fails is passed on as an abort: the other side's connection is reset
/// (`SO_LINGER` 0), so that it cannot take a broken tunnel for one closed in order; an orderly
/// close stays orderly.
#[tokio::test]
async fn a_tunnel_side_that_resets_is_reset_on_the_other() {
    let (backend, mut ended) = tunnel_backend().await;
    let daemon = balancer_to("raw", backend, "").await;
    let addr = daemon.listen_addr;
    let mut chunk = [0u8; 64];
    let mut end_of = async |stream: &mut TcpStream| {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk));
        read.await.expect("the tunnel ended within 10 s")
    };
    let reported = async |ended: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>| {
        let next = tokio::time::timeout(Duration::from_secs(10), ended.recv()).await;
        next.expect("the backend's side ended within 10 s").unwrap()
    };

    // The backend resets: so is the client.
    let mut stream = tunnel_through(addr).await;
    stream.write_all(b"abort").await.unwrap();
    match end_of(&mut stream).await {
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(read) => panic!("the backend's reset reached the client as a read of {read}"),
    }
    // The backend closes in order: so is the client.
    let mut stream = tunnel_through(addr).await;
    stream.write_all(b"bye").await.unwrap();
    assert_eq!(end_of(&mut stream).await.unwrap(), 0);
    // The client resets: so is the backend.
    let stream = tunnel_through(addr).await;
    stream.set_zero_linger().unwrap();
    drop(stream);
    assert_eq!(reported(&mut ended).await, "reset");
    // The client closes in order: so is the backend.
    let mut stream = tunnel_through(addr).await;
    stream.shutdown().await.unwrap();
    assert_eq!(reported(&mut ended).await, "eof");
    assert_eq!(end_of(&mut stream).await.unwrap(), 0);
    assert!(
        eventually(Duration::from_secs(10), || async {
            upgraded(&daemon).await == 0.0
        })
        .await,
        "a tunnel is still open"
    );
    daemon.shutdown().await;
}

/// The same with an HTTP/2 client (WebSocket over HTTP/2 to an HTTP/1.1 backend): the
/// backend's reset resets the client's stream (`CANCEL`, RFC 8441 §5) rather than ending it, and
/// the client's `CANCEL` resets the backend's connection.
#[tokio::test]
async fn an_http2_clients_tunnel_and_an_http11_backends_resets_cross() {
    let (backend, mut ended) = tunnel_backend().await;
    let daemon = balancer_to("raw", backend, "server:\n  h2c: true\n").await;
    let addr = daemon.listen_addr;
    let (mut up, mut down) = h2_tunnel(addr).await;
    up.send_data("abort".into(), false).unwrap();
    assert_cancelled(&mut down).await;
    let (mut up, _down) = h2_tunnel(addr).await;
    up.send_reset(h2::Reason::CANCEL);
    let next = tokio::time::timeout(Duration::from_secs(10), ended.recv()).await;
    let said = next.expect("the backend's side ended within 10 s");
    assert_eq!(said, Some("reset"));
    daemon.shutdown().await;
}

/// An HTTP/2 client whose tunnel has bytes to take and which keeps its window shut is a
/// response that waits on its client: its connection is closed after
/// `server.http2.stalled_response_timeout` and counted as `flow_control_stall`, not held until
/// the tunnel's idle timeout (5 minutes by default).
#[tokio::test]
async fn an_http2_tunnel_whose_client_keeps_its_window_shut_is_closed_as_a_stall() {
    let (backend, mut ended) = tunnel_backend().await;
    let config = "server:\n  h2c: true\n  http2:\n    stalled_response_timeout: 1s\n";
    let daemon = balancer_to("raw", backend, config).await;
    let addr = daemon.listen_addr;
    // The client never releases what it receives: its window shuts at 64 KiB.
    let (mut up, _down) = h2_tunnel(addr).await;
    up.send_data("flood".into(), false).unwrap();
    let closed = eventually(Duration::from_secs(10), || async {
        crate::http2_attacks::closed(&daemon, "flow_control_stall").await == 1.0
    })
    .await;
    assert!(closed, "the stalled tunnel's connection was not closed");
    // The tunnel is gone, and with it the backend's connection.
    let next = tokio::time::timeout(Duration::from_secs(10), ended.recv()).await;
    assert!(
        next.expect("the backend's side ended within 10 s")
            .is_some()
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            upgraded(&daemon).await == 0.0 && active(&daemon).await == 0.0
        })
        .await,
        "the stalled tunnel still holds its backend"
    );
    daemon.shutdown().await;
}

/// A TLS client that leaves without `close_notify` (browsers often do, after the WebSocket
/// closing handshake) ends the tunnel as an orderly close does: the backend reads an end, not a
/// reset, which would discard bytes it had not read yet.
#[tokio::test]
async fn a_tls_client_gone_without_close_notify_ends_the_tunnel_in_order() {
    use crate::support::tls::{TempDir, TestCa, client_config, connect, tls_section};
    let (backend, mut ended) = tunnel_backend().await;
    let (dir, ca) = (TempDir::new("tunnel-tls"), TestCa::new("tunnel ca"));
    let leaf = ca.leaf(&["ws.test"]);
    dir.write("cert.pem", &leaf.cert);
    dir.write("key.pem", &leaf.key);
    let server = format!(
        "server:\n{}",
        tls_section(&dir.0, &[("cert.pem", "key.pem")], "")
    );
    let daemon = balancer_to("raw", backend, &server).await;
    let config = client_config(&ca.pem);
    let mut stream = connect(daemon.listen_addr, "ws.test", &config)
        .await
        .unwrap();
    stream.write_all(handshake("/ws").as_bytes()).await.unwrap();
    let (head, _) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"pong");
    // The TCP connection closes; no close_notify was sent.
    drop(stream);
    let next = tokio::time::timeout(Duration::from_secs(10), ended.recv()).await;
    let said = next.expect("the backend's side ended within 10 s");
    assert_eq!(said, Some("eof"));
    daemon.shutdown().await;
}
