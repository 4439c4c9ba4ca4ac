//! HTTP/2 streams to backends and the connections they share: streams fill a connection up to
//! `upstream.http2.max_streams_per_connection` or the backend's own SETTINGS_MAX_CONCURRENT_STREAMS,
//! whichever is lower, then open another, up to `max_connections_per_backend`; they count as the
//! backend's in-flight requests; a backend that accepts the connection but never speaks HTTP/2
//! fails the connect within `upstream.connect_timeout`, and the request goes to another; a body
//! the backend cuts off with RST_STREAM(NO_ERROR) before its end fails at the client, declared
//! length or not, while the same reset after a whole early response passes.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::support::fake_backend::{Behaviour, FakeBackend};
use crate::support::grpc::{
    self, concurrent_waits, connections, h2c_backend, h2c_balancer, says, unary,
};
use crate::support::*;

#[tokio::test]
async fn streams_share_connections_up_to_the_configured_bounds() {
    let backend = h2c_backend("g0", None).await;
    let extra = "upstream:\n  http2:\n    max_streams_per_connection: 2\n    max_connections_per_backend: 3\n";
    let daemon = h2c_balancer(std::slice::from_ref(&backend), extra).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    for round in 0..10 {
        let reply = unary(
            &mut client,
            "Unary",
            tonic::Request::new(says("one by one")),
        )
        .await
        .unwrap_or_else(|status| panic!("call {round}: {status:?}"));
        assert_eq!(reply.get_ref().message, "one by one");
    }
    assert_eq!(
        connections(&backend),
        1,
        "sequential calls share one connection"
    );

    concurrent_waits(daemon.listen_addr, 2, 200).await;
    assert_eq!(connections(&backend), 1, "two streams fit one connection");

    concurrent_waits(daemon.listen_addr, 4, 200).await;
    assert_eq!(
        connections(&backend),
        2,
        "a third stream opened a second connection"
    );

    concurrent_waits(daemon.listen_addr, 12, 200).await;
    assert_eq!(
        connections(&backend),
        3,
        "never more than max_connections_per_backend"
    );
}

/// A backend that allows fewer streams per connection than the balancer would open (100 by
/// default): its SETTINGS_MAX_CONCURRENT_STREAMS, read off the connection, bounds each
/// connection's streams, and the streams beyond it open connections rather than wait in a full
/// one (without the limit read, all eight would share the first connection).
#[tokio::test]
async fn a_backends_own_stream_limit_opens_connections_rather_than_queueing_streams() {
    let backend = h2c_backend("g0", Some(2)).await;
    let extra = "upstream:\n  http2:\n    max_connections_per_backend: 4\n";
    let daemon = h2c_balancer(std::slice::from_ref(&backend), extra).await;
    concurrent_waits(daemon.listen_addr, 2, 300).await;
    assert_eq!(
        connections(&backend),
        1,
        "two streams fit the backend's limit"
    );
    concurrent_waits(daemon.listen_addr, 8, 300).await;
    assert_eq!(
        connections(&backend),
        4,
        "eight streams at two per connection: four connections"
    );
}

#[tokio::test]
async fn least_connections_counts_open_streams_as_in_flight() {
    let (busy, idle) = (
        h2c_backend("busy", None).await,
        h2c_backend("idle", None).await,
    );
    let fleet = [busy, idle];
    let extra = "load_balancer:\n  algorithm: least_connections\n";
    let daemon = h2c_balancer(&fleet, extra).await;
    // One long call; whichever backend takes it is the busy one.
    let waiting = tokio::spawn({
        let addr = daemon.listen_addr;
        async move { concurrent_waits(addr, 1, 1_500).await }
    });
    assert!(
        eventually(Duration::from_secs(5), || async {
            fleet
                .iter()
                .any(|b| b.stats().grpc_calls.load(Relaxed) == 1)
        })
        .await
    );
    let (taken, free) = match fleet[0].stats().grpc_calls.load(Relaxed) {
        1 => (&fleet[0], &fleet[1]),
        _ => (&fleet[1], &fleet[0]),
    };
    let metrics = scrape(&daemon).await;
    let label = format!("backend=\"{}\"", taken.name());
    assert_eq!(
        metric_sum(&metrics, "lb_active_connections", &[&label]),
        1.0
    );
    let mut client = grpc::connect(daemon.listen_addr).await;
    for _ in 0..6 {
        let reply = unary(&mut client, "Unary", tonic::Request::new(says("quick")))
            .await
            .unwrap();
        assert_eq!(
            reply.get_ref().backend,
            free.name(),
            "the open stream counts"
        );
    }
    waiting.await.unwrap();
}

/// A backend that accepts TCP and never sends its SETTINGS: the connection is given up at
/// `upstream.connect_timeout` as a connect timeout, and a request is retried on the other
/// backend; an HTTP/2 backend whose SETTINGS never came takes no stream.
#[tokio::test]
async fn a_backend_that_never_sends_its_settings_fails_the_connect_and_the_request_moves_on() {
    let silent = FakeBackend::start(vec![Behaviour::Hang]).await;
    let good = h2c_backend("good", None).await;
    let specs = vec![
        ("silent".to_owned(), silent.addr(), 1),
        (good.name().to_owned(), good.addr(), 1),
    ];
    let extra = "server:\n  h2c: true\nupstream:\n  protocol: h2c\n  connect_timeout: 300ms\n\
                 circuit_breaker:\n  enabled: false\n";
    let daemon = lb_proxy::Daemon::start(parse(&config_yaml(&specs, extra)))
        .await
        .expect("balancer starts");
    let mut client = grpc::connect(daemon.listen_addr).await;
    for round in 0..4 {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            unary(&mut client, "Unary", tonic::Request::new(says("hello"))),
        )
        .await
        .expect("answered within the connect timeout, not the request timeout")
        .unwrap_or_else(|status| panic!("call {round}: {status:?}"));
        assert_eq!(reply.get_ref().backend, "good");
    }
    assert!(
        silent.connection_count() >= 1,
        "the silent backend was tried"
    );
    let metrics = scrape(&daemon).await;
    assert!(metric_sum(&metrics, "lb_retries_total", &[]) >= 1.0);
}

/// An HTTP/2 backend that answers every request with `content-length: 100` (or no length),
/// sends 10 bytes of the body, then, once `cut` is notified (the client has the head), resets
/// the stream with NO_ERROR, which RFC 9113 §8.1 allows only after a complete response.
async fn cut_off_backend(
    length: Option<&'static str>,
) -> (std::net::SocketAddr, std::sync::Arc<tokio::sync::Notify>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cut = std::sync::Arc::new(tokio::sync::Notify::new());
    let cut_streams = cut.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let cut = cut_streams.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    let cut = cut.clone();
                    tokio::spawn(async move {
                        let mut head = http::Response::builder();
                        if let Some(length) = length {
                            head = head.header("content-length", length);
                        }
                        let head = head.body(()).unwrap();
                        let mut body = respond.send_response(head, false).unwrap();
                        body.send_data(bytes::Bytes::from_static(b"0123456789"), false)
                            .unwrap();
                        cut.notified().await;
                        body.send_reset(h2::Reason::NO_ERROR);
                    });
                }
            });
        }
    });
    (addr, cut)
}

/// A backend's body cut off by RST_STREAM(NO_ERROR) fails at the client, whether it declared a
/// length or not (hyper alone takes the reset for the body's end): an HTTP/2 client's stream is
/// reset, and an HTTP/1.1 client's connection closes before the length it was told or the last
/// chunk. Neither may take the 10 bytes for the whole body.
#[tokio::test]
async fn a_body_the_backend_cuts_off_with_a_quiet_reset_fails_at_the_client() {
    for length in [Some("100"), None] {
        let (backend, cut) = cut_off_backend(length).await;
        let daemon = balancer_to("cut", backend, H2C_BOTH_WAYS).await;
        let addr = daemon.listen_addr;

        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (h2_client, connection) = h2::client::handshake(socket).await.unwrap();
        tokio::spawn(connection);
        let mut h2_client = h2_client.ready().await.unwrap();
        let request = http::Request::get(format!("http://{addr}/"))
            .body(())
            .unwrap();
        let (response, _) = h2_client.send_request(request, true).unwrap();
        let response = (tokio::time::timeout(Duration::from_secs(10), response).await)
            .expect("the head within 10 s")
            .expect("the head arrives");
        assert_eq!(response.status(), 200);
        let declared = response.headers().get("content-length");
        assert_eq!(declared.map(|value| value.to_str().unwrap()), length);
        let mut body = response.into_body();
        let first = (tokio::time::timeout(Duration::from_secs(10), body.data()).await)
            .expect("the first bytes within 10 s");
        assert_eq!(first.unwrap().unwrap(), "0123456789");
        cut.notify_one();
        let ended = (tokio::time::timeout(Duration::from_secs(10), body.data()).await)
            .expect("the end of the body within 10 s");
        let error = match ended {
            Some(Err(error)) => error,
            other => panic!("{length:?}: the cut-off body went on or ended as if whole: {other:?}"),
        };
        assert_eq!(error.reason(), Some(h2::Reason::INTERNAL_ERROR), "{error}");

        let request = http::Request::get(format!("http://{addr}/"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let response = client().request(request).await.expect("a head arrives");
        assert_eq!(response.status(), 200);
        cut.notify_one();
        let body = http_body_util::BodyExt::collect(response.into_body());
        let read = (tokio::time::timeout(Duration::from_secs(10), body).await)
            .expect("the HTTP/1.1 body within 10 s");
        assert!(
            read.is_err(),
            "{length:?}: the HTTP/1.1 client took a cut-off body: {read:?}"
        );
        let metrics = scrape(&daemon).await;
        let name = "lb_backend_body_failures_total";
        let failures = metric_sum(&metrics, name, &["backend=\"cut\""]);
        assert_eq!(failures, 2.0, "{length:?}: both cut-off bodies counted");
        daemon.shutdown().await;
    }
}

/// What RFC 9113 §8.1 allows stays allowed: a backend that answers before the request's body
/// has all arrived, ends its response (END_STREAM), then resets the stream with NO_ERROR to stop
/// the upload. The client gets the whole response, of no declared length, with its last chunk.
/// The backend writes its frames by hand, the reset in the same write as the response's end
/// (h2's own server drops a response not yet written when the stream is reset).
#[tokio::test]
async fn a_quiet_reset_after_a_whole_early_response_passes() {
    use crate::http2_attacks::frame;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // SETTINGS (none), and the ACK of the client's.
                let hello = [frame(0x4, 0, 0, &[]), frame(0x4, 0x1, 0, &[])].concat();
                socket.write_all(&hello).await?;
                let mut seen = Vec::new();
                let mut buffer = [0u8; 4096];
                // Past the preface, until a HEADERS frame on stream 1 began.
                while !seen[24.min(seen.len())..]
                    .windows(5)
                    .any(|window| window[3] == 0x1 && window[4] & 0x4 != 0)
                {
                    let read = socket.read(&mut buffer).await?;
                    if read == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    seen.extend_from_slice(&buffer[..read]);
                }
                // `:status: 400` (static index 12), the body with END_STREAM, then the reset.
                let answer = [
                    frame(0x1, 0x4, 1, &[0x8c]),
                    frame(0x0, 0x1, 1, b"refused early"),
                    frame(0x3, 0, 1, &0u32.to_be_bytes()),
                ]
                .concat();
                socket.write_all(&answer).await?;
                while socket.read(&mut buffer).await? > 0 {}
                Ok(())
            });
        }
    });
    let daemon = balancer_to("early", backend, "upstream:\n  protocol: h2c\n").await;
    let mut client = tokio::net::TcpStream::connect(daemon.listen_addr)
        .await
        .unwrap();
    // A body of 100,000 bytes, of which only the first 10 are sent.
    let head = "POST /upload HTTP/1.1\r\nHost: lb\r\nContent-Length: 100000\r\n\r\n0123456789";
    client.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        while !answer.ends_with(b"0\r\n\r\n") {
            match client.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the answer within 10 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nd\r\nrefused early\r\n0\r\n\r\n"),
        "the whole body and its last chunk: {answer}"
    );
    let metrics = scrape(&daemon).await;
    let failures = metric_sum(&metrics, "lb_backend_body_failures_total", &[]);
    assert_eq!(failures, 0.0, "a whole body is no failure");
    daemon.shutdown().await;
}
