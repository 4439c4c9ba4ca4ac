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

#[tokio::test]
async fn an_upload_the_client_cancels_never_reaches_the_backend_as_a_whole_request() {
    use crate::support::fake_backend::{Behaviour, FakeBackend};
    let fake = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let yaml = config_yaml(
        &[fake.spec("fake")],
        "server:\n  h2c: true\nretry:\n  max_attempts: 1\n",
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let addr = daemon.listen_addr;
    let (mut client, connection) = h2::client::handshake(TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    tokio::spawn(connection);
    for reason in [h2::Reason::CANCEL, h2::Reason::NO_ERROR] {
        // No length: the upload goes to the backend chunked, where a quiet end of the body
        // would be its last chunk.
        let request = http::Request::post(format!("http://{addr}/upload"))
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (_response, mut upload) = client.send_request(request, false).unwrap();
        upload
            .send_data(bytes::Bytes::from_static(b"part of it"), false)
            .unwrap();
        assert!(
            eventually(Duration::from_secs(5), || async {
                fake.received_text().contains("part of it")
            })
            .await,
            "the first chunk never reached the backend"
        );
        upload.send_reset(reason);
        assert!(
            eventually(Duration::from_secs(5), || async {
                metric_sum(&scrape(&daemon).await, "lb_active_connections", &[]) == 0.0
            })
            .await,
            "the backend request never ended"
        );
        // Whatever the balancer sent is on its way to the fake, which parses it.
        let whole = eventually(Duration::from_millis(300), || async {
            !fake.requests().is_empty()
        })
        .await;
        assert!(
            !whole,
            "a {reason:?} upload reached the backend as a whole request: {:?}",
            fake.requests()
        );
    }
    daemon.shutdown().await;
}

/// A body that ends short of its `content-length` after part of it went upstream: h2 finds the
/// mismatch only at the end, when the backend already has the head and some bytes. The backend
/// connection must be dropped, not pooled: the next request on it would be read as the rest
/// of the body (a desync). The length is over what the balancer reads in full before it
/// sends (64 KiB), so that the body streams.
#[tokio::test]
async fn an_upload_that_ends_short_of_its_length_never_desyncs_the_backend() {
    use crate::support::fake_backend::{Behaviour, FakeBackend};
    let fake = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let yaml = config_yaml(
        &[fake.spec("fake")],
        "server:\n  h2c: true\nretry:\n  max_attempts: 1\n",
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let addr = daemon.listen_addr;
    let (mut client, connection) = h2::client::handshake(TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{addr}/upload"))
        .header("content-length", "100000")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, mut upload) = client.send_request(request, false).unwrap();
    upload
        .send_data(bytes::Bytes::from_static(b"first part"), false)
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            fake.received_text().contains("first part")
        })
        .await,
        "the first bytes never reached the backend: {:?}",
        fake.received_text()
    );
    upload.send_data(bytes::Bytes::new(), true).unwrap();
    let answer = response.await.map(|response| response.status());
    assert!(
        !matches!(answer, Ok(status) if status.is_success()),
        "a short upload was answered {answer:?}"
    );
    // The next request reaches the backend as itself, on a connection of its own.
    client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{addr}/next"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].0.starts_with("GET /next "), "{requests:?}");
    assert_eq!(fake.connection_count(), 2);
    daemon.shutdown().await;
}

/// `server.max_request_body_bytes` holds for HTTP/2 uploads as for HTTP/1.1 ones: a declared
/// length over it is refused with 413 before anything is sent; an upload without a length that
/// crosses it is cut, and never reaches the backend as a whole request.
#[tokio::test]
async fn an_http2_upload_over_the_body_limit_never_reaches_the_backend_whole() {
    use crate::support::fake_backend::{Behaviour, FakeBackend};
    let fake = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let yaml = config_yaml(
        &[fake.spec("fake")],
        "server:\n  h2c: true\n  max_request_body_bytes: 100000\nretry:\n  max_attempts: 1\n",
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let addr = daemon.listen_addr;
    let (mut client, connection) = h2::client::handshake(TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    tokio::spawn(connection);

    let declared = http::Request::post(format!("http://{addr}/declared"))
        .header("content-length", "100001")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, _upload) = client.send_request(declared, false).unwrap();
    assert_eq!(response.await.unwrap().status(), 413);

    let streamed = http::Request::post(format!("http://{addr}/streamed"))
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, mut upload) = client.send_request(streamed, false).unwrap();
    let chunk = bytes::Bytes::from(vec![b'a'; 10_000]);
    let mut sent = 0;
    let writer = async {
        // 15 chunks of 10,000 bytes, as the window lets them go; the 11th crosses the limit.
        while sent < 150_000 {
            upload.reserve_capacity(chunk.len());
            let capacity = std::future::poll_fn(|cx| upload.poll_capacity(cx)).await;
            match capacity {
                Some(Ok(room)) if room >= chunk.len() => {}
                Some(Ok(_)) => continue,
                _ => return,
            }
            if upload.send_data(chunk.clone(), false).is_err() {
                return;
            }
            sent += chunk.len();
        }
        // The end, should the balancer still take it: without the limit, a whole request.
        let _ = upload.send_data(bytes::Bytes::new(), true);
    };
    let (answer, ()) = tokio::join!(response, writer);
    let answer = answer.map(|response| response.status());
    assert!(
        !matches!(answer, Ok(status) if status.is_success()),
        "an upload over the limit was answered {answer:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric_sum(&scrape(&daemon).await, "lb_active_connections", &[]) == 0.0
        })
        .await,
        "the backend request never ended"
    );
    let whole = eventually(Duration::from_millis(300), || async {
        !fake.requests().is_empty()
    })
    .await;
    assert!(
        !whole,
        "{:?}",
        fake.requests().iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    assert!(!fake.received_text().contains("/declared"));
    daemon.shutdown().await;
}
