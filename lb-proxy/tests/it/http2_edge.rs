//! HTTP/2 at the edge with real clients: `h2` chosen by ALPN on a TLS listener (hyper's HTTP/2
//! client over tokio-rustls), with the same request path as HTTP/1.1 over TLS
//! (`X-Forwarded-Proto: https`, 421 for an `:authority` of another site's certificate, RFC 9110
//! §7.4 and RFC 9113 §9.1.1); ALPN turned down to `http/1.1`; and WebSocket over HTTP/2
//! (RFC 8441 extended CONNECT) through tokio-tungstenite, over h2c and over TLS, to
//! test-backend's `/ws`, which speaks HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::tls::*;
use crate::support::websocket::{Sender, h2_over, websocket_over_h2};
use crate::support::*;

/// A client offering `h2` then `http/1.1`, trusting `ca`.
fn h2_client_config(ca: &TestCa) -> Arc<ClientConfig> {
    let mut config = (*client_config(&ca.pem)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn get(sender: &mut Sender, uri: &str) -> (http::StatusCode, String) {
    sender.ready().await.unwrap();
    let request = http::Request::get(uri).body(Empty::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn one_site(dir: &TempDir, ca: &TestCa) {
    let a = ca.leaf(&["a.test", "www.a.test"]);
    let b = ca.leaf(&["*.b.test"]);
    dir.write("a.pem", &a.cert);
    dir.write("a-key.pem", &a.key);
    dir.write("b.pem", &b.cert);
    dir.write("b-key.pem", &b.key);
}

const SITES: [(&str, &str); 2] = [("a.pem", "a-key.pem"), ("b.pem", "b-key.pem")];

async fn https(
    fleet: &[test_backend::RunningBackend],
    dir: &TempDir,
    extra: &str,
) -> lb_proxy::Daemon {
    let server = format!("server:\n{}", tls_section(&dir.0, &SITES, extra));
    balancer(fleet, &server).await
}

#[tokio::test]
async fn h2_is_chosen_by_alpn_and_served_as_https() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("h2alpn"), TestCa::new("ca"));
    one_site(&dir, &ca);
    let daemon = https(&fleet, &dir, "").await;
    let stream = connect(daemon.listen_addr, "a.test", &h2_client_config(&ca))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = h2_over(stream).await;
    let (status, echo) = get(&mut sender, "https://a.test/echo").await;
    assert_eq!(status, 200, "{echo}");
    // The backend hears HTTP/1.1 with the forwarding fields of an HTTPS request.
    assert!(echo.starts_with("GET /echo HTTP/1.1"), "{echo}");
    assert!(echo.contains("x-forwarded-proto: https"), "{echo}");
    assert!(echo.contains("host: a.test"), "{echo}");
    // Names of the certificate the SNI chose are served; another site's is misdirected, as on
    // HTTP/1.1: a client must not reuse this connection for it.
    for (authority, want) in [("www.a.test", 200), ("x.b.test", 421), ("a.test:443", 200)] {
        let (status, body) = get(&mut sender, &format!("https://{authority}/")).await;
        assert_eq!(status, want, "{authority}: {body}");
    }
    // Many streams at once on the one connection.
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut sender = sender.clone();
            tokio::spawn(async move { get(&mut sender, "https://a.test/delay/50").await.0 })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let metrics = scrape(&daemon).await;
    assert!(
        metric_sum(&metrics, "lb_requests_total", &["status=\"421\""]) >= 1.0,
        "{metrics}"
    );
    // A client that offers only HTTP/1.1 is still served it.
    let mut http1 = connect(daemon.listen_addr, "a.test", &client_config(&ca.pem))
        .await
        .unwrap();
    assert_eq!(http1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(
        tls_get(&mut http1, "a.test", "/")
            .await
            .starts_with("HTTP/1.1 200")
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn alpn_http11_only_never_offers_h2() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("h1alpn"), TestCa::new("ca"));
    one_site(&dir, &ca);
    let daemon = https(&fleet, &dir, "    alpn: [http/1.1]\n").await;
    let mut stream = connect(daemon.listen_addr, "a.test", &h2_client_config(&ca))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(
        tls_get(&mut stream, "a.test", "/")
            .await
            .starts_with("HTTP/1.1 200")
    );
    daemon.shutdown().await;
}

/// Text, binary, a large message and a close, through the tunnel; while it is open it counts
/// in `lb_upgraded_connections` and holds the backend's slot, and the connection serves other
/// streams beside it.
async fn exchange(daemon: &lb_proxy::Daemon, sender: &mut Sender, base: &str) {
    let mut socket = websocket_over_h2(sender, &format!("{base}/ws"))
        .await
        .expect("the WebSocket opens");
    crate::support::websocket::echo_text_binary_and_large(&mut socket).await;
    let metrics = scrape(daemon).await;
    assert_eq!(metric_sum(&metrics, "lb_upgraded_connections", &[]), 1.0);
    assert_eq!(metric_sum(&metrics, "lb_active_connections", &[]), 1.0);
    // Another stream on the same connection meanwhile.
    assert_eq!(get(sender, &format!("{base}/")).await.0, 200);
    socket.close(None).await.unwrap();
    match socket.next().await {
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("after the close: {other:?}"),
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            let metrics = scrape(daemon).await;
            metric_sum(&metrics, "lb_upgraded_connections", &[]) == 0.0
                && metric_sum(&metrics, "lb_active_connections", &[]) == 0.0
        })
        .await,
        "the tunnel still holds its backend"
    );
    // Refusals are relayed as answers: a path the backend does not switch on gets 502 (a
    // 2xx would open a tunnel to nothing), an error status as it is.
    assert_eq!(
        websocket_over_h2(sender, &format!("{base}/")).await.err(),
        Some(http::StatusCode::BAD_GATEWAY)
    );
    assert_eq!(
        websocket_over_h2(sender, &format!("{base}/status/404"))
            .await
            .err(),
        Some(http::StatusCode::NOT_FOUND)
    );
}

#[tokio::test]
async fn a_websocket_runs_over_h2c() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let addr: SocketAddr = daemon.listen_addr;
    let mut sender = h2_over(TcpStream::connect(addr).await.unwrap()).await;
    // One exchange first: extended CONNECT may be sent once the server's SETTINGS allow it.
    assert_eq!(get(&mut sender, &format!("http://{addr}/")).await.0, 200);
    exchange(&daemon, &mut sender, &format!("http://{addr}")).await;
    // Another protocol than websocket is not tunnelled.
    sender.ready().await.unwrap();
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}/ws"))
        .extension(hyper::ext::Protocol::from_static("connect-udp"))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 501);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_websocket_runs_over_h2_chosen_by_alpn() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("h2ws"), TestCa::new("ca"));
    one_site(&dir, &ca);
    let daemon = https(&fleet, &dir, "").await;
    let stream = connect(daemon.listen_addr, "a.test", &h2_client_config(&ca))
        .await
        .unwrap();
    let mut sender = h2_over(stream).await;
    assert_eq!(get(&mut sender, "https://a.test/").await.0, 200);
    exchange(&daemon, &mut sender, "https://a.test").await;
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_open_websocket_over_h2_closes_within_the_shutdown_grace() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n  shutdown_grace: 1s\n").await;
    let addr = daemon.listen_addr;
    let mut sender = h2_over(TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(get(&mut sender, &format!("http://{addr}/")).await.0, 200);
    let mut socket = websocket_over_h2(&mut sender, &format!("http://{addr}/ws"))
        .await
        .unwrap();
    socket.send(Message::text("hi")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("hi"));
    // The tunnel never goes quiet on its own; shutdown ends it after the grace.
    let stopped = tokio::time::timeout(Duration::from_secs(20), daemon.shutdown()).await;
    assert!(
        stopped.is_ok(),
        "shutdown waited past the grace for the tunnel"
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the tunnel stayed open after shutdown");
}

#[tokio::test]
async fn shutdown_lets_an_http2_stream_in_flight_finish_then_closes_the_connection() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n  shutdown_grace: 10s\n").await;
    let addr = daemon.listen_addr;
    let mut sender = h2_over(TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(get(&mut sender, &format!("http://{addr}/")).await.0, 200);
    // A slow request is in flight when shutdown begins.
    let mut slow = sender.clone();
    let uri = format!("http://{addr}/delay/700");
    let in_flight = tokio::spawn(async move { get(&mut slow, &uri).await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            fleet[0].stats().snapshot().in_flight == 1
        })
        .await,
        "the slow request never reached the backend"
    );
    let stopping = tokio::spawn(daemon.shutdown());
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the stream in flight finished")
        .unwrap();
    assert_eq!(status, 200, "the stream in flight was answered");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown ended once the stream finished")
        .unwrap();
    // The connection was told to go away: no new stream is served on it.
    let after = tokio::time::timeout(Duration::from_secs(5), async {
        match sender.ready().await {
            Err(_) => true,
            Ok(()) => {
                let request = http::Request::get(format!("http://{addr}/"))
                    .body(Empty::new())
                    .unwrap();
                sender.send_request(request).await.is_err()
            }
        }
    })
    .await;
    assert_eq!(after, Ok(true), "a new stream was served after shutdown");
}
