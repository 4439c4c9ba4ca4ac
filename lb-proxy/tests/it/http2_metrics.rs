//! What the metrics show of HTTP/2 clients: `lb_http2_client_connections` and
//! `lb_http2_client_streams`, open now, beside `lb_client_connections`.

use std::time::Duration;

use http_body_util::Empty;
use tokio::net::TcpStream;

use crate::support::websocket::h2_over;
use crate::support::*;

async fn gauges(daemon: &lb_proxy::Daemon) -> (f64, f64, f64) {
    let metrics = scrape(daemon).await;
    (
        metric_sum(&metrics, "lb_client_connections", &[]),
        metric_sum(&metrics, "lb_http2_client_connections", &[]),
        metric_sum(&metrics, "lb_http2_client_streams", &[]),
    )
}

/// Waits until the three gauges read `expected`: (client connections, HTTP/2 connections,
/// HTTP/2 streams).
async fn gauges_become(daemon: &lb_proxy::Daemon, expected: (f64, f64, f64)) {
    let reached = eventually(Duration::from_secs(5), || async {
        gauges(daemon).await == expected
    })
    .await;
    assert!(reached, "{:?}, not {expected:?}", gauges(daemon).await);
}

#[tokio::test]
async fn http2_connections_and_their_streams_in_flight_are_gauged() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let addr = daemon.listen_addr;
    // An HTTP/1.1 connection counts as a client connection, not an HTTP/2 one.
    let http1 = TcpStream::connect(addr).await.unwrap();
    let mut sender = h2_over(TcpStream::connect(addr).await.unwrap()).await;
    let mut slow = Vec::new();
    for _ in 0..3 {
        sender.ready().await.unwrap();
        let request = http::Request::get(format!("http://{addr}/delay/3000"))
            .body(Empty::new())
            .unwrap();
        slow.push(tokio::spawn(sender.send_request(request)));
    }
    gauges_become(&daemon, (2.0, 1.0, 3.0)).await;
    for response in slow {
        assert_eq!(response.await.unwrap().unwrap().status(), 200);
    }
    // The streams ended; the connection is still open.
    gauges_become(&daemon, (2.0, 1.0, 0.0)).await;
    drop((sender, http1));
    gauges_become(&daemon, (0.0, 0.0, 0.0)).await;
    daemon.shutdown().await;
}
