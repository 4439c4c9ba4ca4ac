//! Release of idle HTTP/1 client connections (`server.idle_release_after`): a keep-alive
//! connection quiet between requests gives back its buffers, and must then serve
//! its next request exactly as before — on the same socket, with a head split across the
//! release, after a response slower than the release delay, after an upload that paused, and
//! through shutdown.

use std::time::Duration;

use crate::support::fake_backend::read_until_closed;
use crate::support::raw::{get_on, read_response};
use crate::support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const RELEASE: &str = "server:\n  idle_release_after: 50ms\n  header_read_timeout: 30s\n";

/// A balancer over one backend with `extra` config, and a connection that has served a request.
async fn one_request_served(
    extra: &str,
) -> (
    Vec<test_backend::RunningBackend>,
    lb_proxy::Daemon,
    TcpStream,
) {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, extra).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    assert_eq!(get_on(&mut stream, "/").await.status, 200);
    (fleet, daemon, stream)
}

async fn idle_connections(daemon: &lb_proxy::Daemon) -> f64 {
    metric_sum(&scrape(daemon).await, "lb_client_connections_idle", &[])
}

async fn released(daemon: &lb_proxy::Daemon, count: f64) -> bool {
    eventually(Duration::from_secs(5), || async {
        idle_connections(daemon).await == count
    })
    .await
}

#[tokio::test]
async fn a_released_connection_serves_its_next_requests_on_the_same_socket() {
    // On an h2c listener too: HTTP/1 there is the same loop, behind the protocol sniff.
    for h2c in [false, true] {
        let fleet = backends(2).await;
        let extra = RELEASE.replace("server:\n", &format!("server:\n  h2c: {h2c}\n"));
        let daemon = balancer(&fleet, &extra).await;
        let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
        for round in 0..3 {
            let response = get_on(&mut stream, "/").await;
            assert_eq!(response.status, 200, "h2c={h2c}, round {round}");
            assert!(String::from_utf8_lossy(&response.body).starts_with("hello from"));
            assert!(
                released(&daemon, 1.0).await,
                "h2c={h2c}, round {round}: never released"
            );
        }
        let metrics = scrape(&daemon).await;
        assert_eq!(
            metric_sum(&metrics, "lb_client_connections_accepted_total", &[]),
            1.0,
            "h2c={h2c}: the requests did not share one connection"
        );
        drop(stream);
        assert!(released(&daemon, 0.0).await);
        assert!(drained(&daemon).await);
        daemon.shutdown().await;
    }
}

#[tokio::test]
async fn a_head_split_across_the_release_is_served_whole() {
    let (_fleet, daemon, mut stream) = one_request_served(RELEASE).await;
    assert!(released(&daemon, 1.0).await);

    // The first bytes wake the connection; the rest of the head arrives after several release
    // delays: a connection holding half a head is not released, and the half is not lost.
    stream.write_all(b"GET /echo HTTP/1.1\r\nHo").await.unwrap();
    assert!(released(&daemon, 0.0).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish_split_head(&mut stream).await;

    // Pipelined: a whole request and half of the next in one write. After the first is served
    // the buffer holds half a head and nothing is in flight: the half must wait for the rest.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /echo HTTP/1.1\r\nHo")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish_split_head(&mut stream).await;
    daemon.shutdown().await;
}

/// Sends the rest of the head begun with `GET /echo HTTP/1.1\r\nHo` and checks that the
/// backend saw the whole head.
async fn finish_split_head(stream: &mut TcpStream) {
    stream
        .write_all(b"st: split\r\nX-Part: two\r\n\r\n")
        .await
        .unwrap();
    let response = read_response(stream).await;
    assert_eq!(response.status, 200);
    let echoed = String::from_utf8_lossy(&response.body).to_ascii_lowercase();
    assert!(echoed.starts_with("get /echo http/1.1"), "{echoed}");
    assert!(echoed.contains("x-part: two"), "{echoed}");
    assert!(echoed.contains("host: split"), "{echoed}");
}

#[tokio::test]
async fn a_response_slower_than_the_release_delay_keeps_its_connection_alive() {
    let (_fleet, daemon, mut stream) = one_request_served(RELEASE).await;
    // Nothing moves for 400 ms while the backend thinks: the connection is busy, not idle.
    let slow = get_on(&mut stream, "/delay/400").await;
    assert_eq!(slow.status, 200);
    assert_eq!(header(&slow.head, "connection"), None, "{}", slow.head);
    assert_eq!(get_on(&mut stream, "/").await.status, 200);
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_upload_that_pauses_longer_than_the_release_delay_arrives_whole() {
    let (_fleet, daemon, mut stream) = one_request_served(RELEASE).await;
    stream
        .write_all(b"POST /echo/body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"firstsecond");
    assert_eq!(get_on(&mut stream, "/").await.status, 200);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_never_completed_a_request_is_not_released() {
    // A fresh connection's first head is timed from the accept by the header read timeout,
    // which a release would trade for the idle timeout: it is not released before a request.
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, RELEASE).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(idle_connections(&daemon).await, 0.0);
    let response = get_on(&mut stream, "/").await;
    assert_eq!(response.status, 200);
    assert_eq!(header(&response.head, "connection"), None);
    // An HTTP/1.0 request without keep-alive still ends with the connection closed.
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.closed, "an HTTP/1.0 connection was kept open");
    assert!(answer.text().contains(" 200 "), "{}", answer.text());
    daemon.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_released_connections_at_once() {
    // A released connection has nothing to drain.
    shutdown_closes_an_idle_connection("50ms", 1.0).await;
}

#[tokio::test]
async fn shutdown_reaches_an_idle_connection_that_was_not_released() {
    // Its idle timer wakes it within a second to see the drain.
    shutdown_closes_an_idle_connection("1h", 0.0).await;
}

/// Serves one request on a connection, waits until `released` connections are released, then
/// shuts down: well inside the 30 s grace, the connection is closed without a byte.
async fn shutdown_closes_an_idle_connection(release_after: &str, released_count: f64) {
    let extra = format!("server:\n  idle_release_after: {release_after}\n  shutdown_grace: 30s\n");
    let (_fleet, daemon, mut stream) = one_request_served(&extra).await;
    assert!(released(&daemon, released_count).await);
    tokio::time::timeout(Duration::from_secs(10), daemon.shutdown())
        .await
        .expect("shutdown waited the grace out on an idle connection");
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.closed);
    assert!(answer.bytes.is_empty());
}
