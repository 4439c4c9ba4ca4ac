//! WebSocket to HTTP/2 backends (`protocol: h2c`, and `h2` over TLS): the client's handshake,
//! over HTTP/1.1 or as an extended `CONNECT` over HTTP/2, reaches the backend as an extended
//! `CONNECT` (RFC 8441) on a stream of the connections its other requests share; the backend's
//! `200` becomes the HTTP/1.1 client's `101` with the `Sec-WebSocket-Accept` its key calls for
//! (tokio-tungstenite checks it). The tunnel holds the backend's slot and its stream while open.
//! A backend that did not turn extended `CONNECT` on gets nothing: the client gets a 502 that
//! says why, and the backend's breaker does not count it. Any other answer is an ordinary
//! response.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use test_backend::{BackendOptions, RunningBackend};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::grpc::{connections, h2c_backend, h2c_balancer};
use crate::support::raw::{get_on, read_response};
use crate::support::websocket::{
    active, assert_cancelled, echo_text_binary_and_large, h2_over, h2_tunnel, handshake, upgraded,
    websocket_over_h2,
};
use crate::support::*;

/// The accept value RFC 6455's sample key calls for.
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

async fn closed(daemon: &lb_proxy::Daemon) -> bool {
    eventually(Duration::from_secs(10), || async {
        upgraded(daemon).await == 0.0 && active(daemon).await == 0.0
    })
    .await
}

/// A balancer whose listener is the HTTP/1.1 codec's, to h2c `backends`.
async fn to_h2c(backends: &[RunningBackend], extra: &str) -> lb_proxy::Daemon {
    balancer(backends, &format!("upstream:\n  protocol: h2c\n{extra}")).await
}

/// An h2c-only backend that does not offer WebSocket over HTTP/2.
async fn without_extended_connect(name: &str) -> RunningBackend {
    backend_with(BackendOptions {
        name: name.to_owned(),
        http2_only: true,
        h2_websocket: false,
        ..BackendOptions::default()
    })
    .await
}

#[tokio::test]
async fn an_http11_websocket_reaches_an_h2c_backend_as_an_extended_connect() {
    let backend = h2c_backend("w0", None).await;
    let daemon = h2c_balancer(std::slice::from_ref(&backend), "").await;
    // A plain request first: the tunnel's stream joins the connection it opened.
    let client = client();
    assert_eq!(get(&client, daemon.listen_addr, "/").await.status, 200);
    let url = format!("ws://{}/ws", daemon.listen_addr);
    // tokio-tungstenite refuses a 101 whose Sec-WebSocket-Accept does not answer its key.
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["x-backend"], "w0");
    echo_text_binary_and_large(&mut socket).await;
    assert_eq!(upgraded(&daemon).await, 1.0);
    assert_eq!(
        active(&daemon).await,
        1.0,
        "the tunnel holds the backend's slot"
    );
    // Other requests share the backend's connection meanwhile.
    assert_eq!(get(&client, daemon.listen_addr, "/").await.status, 200);
    assert_eq!(
        connections(&backend),
        1,
        "one HTTP/2 connection carries both"
    );
    socket.close(None).await.unwrap();
    match socket.next().await {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("after the close: {other:?}"),
    }
    assert!(closed(&daemon).await, "the tunnel still holds its backend");
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_101_answers_the_clients_key_and_the_connection_is_the_tunnels() {
    let backend = h2c_backend("w0", None).await;
    let daemon = to_h2c(std::slice::from_ref(&backend), "").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream.write_all(handshake("/ws").as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert_eq!(answer.status, 101, "{}", answer.head);
    assert!(
        answer.head.contains("connection: upgrade"),
        "{}",
        answer.head
    );
    assert!(
        answer.head.contains("upgrade: websocket"),
        "{}",
        answer.head
    );
    let accept = format!(
        "sec-websocket-accept: {}",
        SAMPLE_ACCEPT.to_ascii_lowercase()
    );
    assert!(answer.head.contains(&accept), "{}", answer.head);
    assert_eq!(answer.head.matches("sec-websocket-accept").count(), 1);
    assert!(!answer.head.contains("content-length"), "{}", answer.head);
    // The connection now carries WebSocket frames both ways.
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    socket.send(Message::text("raw")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("raw"));
    socket.close(None).await.unwrap();
    assert!(closed(&daemon).await, "the tunnel still holds its backend");
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_http2_websocket_reaches_an_h2c_backend_as_an_extended_connect() {
    let backend = h2c_backend("w0", None).await;
    let daemon = h2c_balancer(std::slice::from_ref(&backend), "").await;
    let addr = daemon.listen_addr;
    let mut sender = h2_over(TcpStream::connect(addr).await.unwrap()).await;
    let mut socket = websocket_over_h2(&mut sender, &format!("http://{addr}/ws"))
        .await
        .expect("the WebSocket opens");
    echo_text_binary_and_large(&mut socket).await;
    assert_eq!(upgraded(&daemon).await, 1.0);
    socket.close(None).await.unwrap();
    while let Some(Ok(_)) = socket.next().await {}
    assert!(closed(&daemon).await, "the tunnel still holds its backend");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_backend_without_extended_connect_gets_nothing_and_keeps_serving() {
    let backend = without_extended_connect("w0").await;
    // A breaker that would open at the second failure.
    let extra = "circuit_breaker:\n  failure_threshold: 2\n";
    let daemon = to_h2c(std::slice::from_ref(&backend), extra).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    for _ in 0..5 {
        stream.write_all(handshake("/ws").as_bytes()).await.unwrap();
        let answer = read_response(&mut stream).await;
        assert_eq!(answer.status, 502, "{}", answer.head);
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            text.contains("does not take WebSocket over HTTP/2"),
            "{text}"
        );
        assert!(!answer.head.contains("upgrade"), "{}", answer.head);
    }
    // The client stayed on HTTP/1.1, and the backend serves everything else: its breaker did
    // not count the refusals.
    assert_eq!(get_on(&mut stream, "/").await.status, 200);
    let served = backend.stats().requests.load(Relaxed);
    assert_eq!(served, 1, "no upgrade reached the backend");
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_circuit_breaker_transitions_total", &[]),
        0.0
    );
    assert_eq!(upgraded(&daemon).await, 0.0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_refused_extended_connect_is_an_ordinary_answer() {
    let backend = h2c_backend("w0", None).await;
    let daemon = to_h2c(std::slice::from_ref(&backend), "").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(handshake("/status/404").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 404);
    // An extended CONNECT the backend refuses as a bad request.
    stream
        .write_all(handshake("/status/400").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 400);
    // Neither switched: the client is still on HTTP/1.1.
    assert_eq!(get_on(&mut stream, "/").await.status, 200);
    assert_eq!(upgraded(&daemon).await, 0.0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_quiet_tunnel_over_an_h2c_backend_closes_after_the_upgrade_idle_timeout() {
    let backend = h2c_backend("w0", None).await;
    let extra = "server:\n  upgrade_idle_timeout: 1s\n";
    let daemon = to_h2c(std::slice::from_ref(&backend), extra).await;
    let url = format!("ws://{}/ws", daemon.listen_addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(Message::text("once")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("once"));
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the quiet tunnel stayed open");
    assert!(closed(&daemon).await, "the tunnel still holds its backend");
    // The backend's connection outlives the tunnel's stream and serves the next request.
    assert_eq!(get(&client(), daemon.listen_addr, "/").await.status, 200);
    assert_eq!(connections(&backend), 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_websocket_reaches_an_h2_backend_over_tls() {
    use crate::support::tls::{TempDir, TestCa};
    let (dir, ca) = (TempDir::new("wsh2"), TestCa::new("ws ca"));
    let ca_file = dir.write("ca.pem", &ca.pem);
    let leaf = ca.leaf(&["ws.internal"]);
    let tls = test_backend::tls_config(leaf.cert.as_bytes(), leaf.key.as_bytes(), None).unwrap();
    let backend = backend_with(BackendOptions {
        name: "secure".to_owned(),
        tls: Some(tls),
        http2_only: true,
        ..BackendOptions::default()
    })
    .await;
    let extra = format!(
        "upstream:\n  protocol: h2\n  tls: {{sni: ws.internal, ca_file: {}}}\n",
        ca_file.display()
    );
    let daemon = balancer(std::slice::from_ref(&backend), &extra).await;
    let url = format!("ws://{}/ws", daemon.listen_addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.headers()["x-backend"], "secure");
    echo_text_binary_and_large(&mut socket).await;
    assert_eq!(upgraded(&daemon).await, 1.0);
    socket.close(None).await.unwrap();
    while let Some(Ok(_)) = socket.next().await {}
    assert!(closed(&daemon).await, "the tunnel still holds its backend");
    assert_eq!(connections(&backend), 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn requests_never_wait_behind_tunnels_that_fill_the_connections() {
    // A backend that takes two streams per connection (below the balancer's 100), and a
    // balancer that opens one connection at most, were it not for the tunnels.
    let backend = h2c_backend("w0", Some(2)).await;
    let extra = "server:\n  request_timeout: 5s\nupstream:\n  protocol: h2c\n  http2:\n    max_connections_per_backend: 1\n";
    let daemon = balancer(std::slice::from_ref(&backend), extra).await;
    let url = format!("ws://{}/ws", daemon.listen_addr);
    let client = client();
    let mut sockets = Vec::new();
    for opened in 1..=4u64 {
        let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        socket.send(Message::text("open")).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("open"));
        sockets.push(socket);
        // Each pair of tunnels fills a connection: a request opens another rather than waiting
        // there for a stream that may not end for hours (it would get 504 at the request
        // timeout).
        let answer = get(&client, daemon.listen_addr, "/").await;
        assert_eq!(
            answer.status,
            200,
            "after {opened} tunnels: {}",
            answer.text()
        );
    }
    assert_eq!(upgraded(&daemon).await, 4.0);
    assert_eq!(
        connections(&backend),
        3,
        "two full of tunnels, one for requests"
    );
    drop(sockets);
    assert!(
        closed(&daemon).await,
        "the tunnels still hold their backend"
    );
    daemon.shutdown().await;
}

/// The operator is told which backend refuses WebSocket over HTTP/2, once per connection, not
/// once per client.
#[tokio::test]
async fn a_backend_without_extended_connect_is_named_in_one_warning() {
    use crate::support::process::{Lb, temp_dir};
    let backend = without_extended_connect("w0").await;
    let dir = temp_dir("ws-h2-warn");
    let config = dir.join("lb.yaml");
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\nupstream:\n  protocol: h2c\nbackends:\n  - name: quiet-h2\n    address: {}\n",
        backend.addr()
    );
    std::fs::write(&config, yaml).unwrap();
    let lb = Lb::start_logged(&config, &dir.join("lb.log")).await;
    let mut stream = TcpStream::connect(lb.lb.listen).await.unwrap();
    for _ in 0..3 {
        stream.write_all(handshake("/ws").as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut stream).await.status, 502);
    }
    let warning = "the backend does not take WebSocket over HTTP/2";
    assert!(lb.logs(warning).await, "{}", lb.log());
    let log = lb.log();
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    let line = log.lines().find(|line| line.contains(warning)).unwrap();
    assert!(line.contains("WARN") && line.contains("quiet-h2"), "{line}");
}

/// How a tunnel's stream ended at the backend of [`tunnel_backend`].
type Ended = tokio::sync::mpsc::UnboundedReceiver<String>;

/// An h2c backend that takes any extended `CONNECT`: it answers `200`, answers the tunnel's
/// `ping` with `pong`, resets the stream with `CANCEL` when told `abort`, and otherwise reports
/// how the balancer ended the stream: `end` (END_STREAM) or the reset's reason.
async fn tunnel_backend() -> (std::net::SocketAddr, Ended) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, ended) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                let mut builder = h2::server::Builder::new();
                builder.enable_connect_protocol();
                let Ok(mut connection) = builder.handshake::<_, bytes::Bytes>(socket).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let report = report.clone();
                    tokio::spawn(async move {
                        let head = http::Response::builder().body(()).unwrap();
                        let mut down = respond.send_response(head, false).unwrap();
                        let mut up = request.into_body();
                        loop {
                            let said = match up.data().await {
                                None => "end".to_owned(),
                                Some(Err(error)) => format!("{:?}", error.reason()),
                                Some(Ok(data)) => {
                                    let _ = up.flow_control().release_capacity(data.len());
                                    match &data[..] {
                                        b"ping" => {
                                            down.send_data("pong".into(), false).unwrap();
                                            continue;
                                        }
                                        b"abort" => {
                                            down.send_reset(h2::Reason::CANCEL);
                                            return;
                                        }
                                        _ => continue,
                                    }
                                }
                            };
                            let _ = report.send(said);
                            return;
                        }
                    });
                }
            });
        }
    });
    (addr, ended)
}

/// How the backend's next tunnel stream ended.
async fn reported(ended: &mut Ended) -> String {
    let next = tokio::time::timeout(Duration::from_secs(10), ended.recv()).await;
    next.expect("the backend's stream ended within 10 s")
        .unwrap()
}

/// RFC 8441 §5 maps a tunnel's TCP reset to `RST_STREAM(CANCEL)` and its orderly close to
/// `END_STREAM`; hyper's upgraded stream takes both for a clean end. Through the balancer, a
/// backend's `CANCEL` aborts the client's stream (it must not look like the backend's orderly
/// close: the client would take what it got for all there was), and a client's `CANCEL` aborts
/// the backend's stream.
#[tokio::test]
async fn a_tunnel_reset_on_one_side_is_reset_on_the_other() {
    let (backend, mut ended) = tunnel_backend().await;
    let daemon = balancer_to("tunnel", backend, H2C_BOTH_WAYS).await;
    let addr = daemon.listen_addr;

    // The backend aborts.
    let (mut up, mut down) = h2_tunnel(addr).await;
    up.send_data("abort".into(), false).unwrap();
    assert_cancelled(&mut down).await;
    assert!(closed(&daemon).await, "the tunnel still holds its backend");

    // The client aborts.
    let (mut up, _down) = h2_tunnel(addr).await;
    up.send_reset(h2::Reason::CANCEL);
    assert_eq!(reported(&mut ended).await, "Some(CANCEL)");
    assert!(closed(&daemon).await, "the tunnel still holds its backend");

    daemon.shutdown().await;
}

/// An HTTP/1.1 client's tunnel to an HTTP/2 backend: the backend's `CANCEL` resets the client's
/// connection, where hyper's upgraded stream alone would have ended it in order.
#[tokio::test]
async fn an_http11_clients_tunnel_is_reset_when_the_h2_backend_cancels() {
    use tokio::io::AsyncReadExt;
    let (backend, _ended) = tunnel_backend().await;
    let daemon = balancer_to("tunnel", backend, "upstream:\n  protocol: h2c\n").await;
    let mut stream = crate::upgrades::tunnel_through(daemon.listen_addr).await;
    stream.write_all(b"ping").await.unwrap();
    let mut pong = [0u8; 4];
    stream.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"pong");
    stream.write_all(b"abort").await.unwrap();
    let mut chunk = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
        .await
        .expect("the tunnel ended within 10 s");
    match end {
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
        Ok(read) => panic!("the backend's CANCEL reached the client as a read of {read}"),
    }
    assert!(closed(&daemon).await, "the tunnel still holds its backend");
    daemon.shutdown().await;
}
