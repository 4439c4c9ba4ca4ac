//! `server.http2`: the limits of HTTP/2 client connections (h2c with prior knowledge). A client
//! never has more requests in flight upstream than `max_concurrent_streams`, however many
//! streams it asks for, and a client that opens and cancels streams as fast as it can (rapid
//! reset) neither exceeds that limit upstream nor keeps other clients from being served; the
//! requests it cancelled free their backend slots. The request heads a connection's streams hold
//! at once are bounded (`max_buffered_head_bytes`).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::support::*;

const LIMITS: &str = "server:\n  h2c: true\n  http2:\n    max_concurrent_streams: 5\n";

/// An HTTP/2 connection (prior knowledge) to `addr`.
async fn h2_connection(addr: std::net::SocketAddr) -> http2::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

fn request(addr: std::net::SocketAddr, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn one_connection_never_has_more_streams_upstream_than_the_limit() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, LIMITS).await;
    let mut sender = h2_connection(daemon.listen_addr).await;
    // One exchange first: the client then knows the balancer's SETTINGS (before them it may
    // open more streams, which the balancer refuses with REFUSED_STREAM).
    let first = sender
        .send_request(request(daemon.listen_addr, "/"))
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    fleet[0].stats().reset();
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let mut sender = sender.clone();
            let addr = daemon.listen_addr;
            tokio::spawn(async move {
                sender.ready().await.unwrap();
                sender
                    .send_request(request(addr, "/delay/100"))
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let stats = fleet[0].stats();
    assert_eq!(stats.requests.load(Relaxed), 30);
    let peak = stats.max_in_flight.load(Relaxed);
    assert!((1..=5).contains(&peak), "{peak} requests at once upstream");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_rapid_reset_client_stays_within_the_limit_and_others_are_served() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, LIMITS).await;
    let addr = daemon.listen_addr;
    let attacker = tokio::spawn(async move {
        // Connections the balancer closes for resetting too much are opened again.
        for _ in 0..20 {
            let mut sender = h2_connection(addr).await;
            for _ in 0..100 {
                if sender.ready().await.is_err() {
                    break;
                }
                // Sent, then dropped at once: the stream is reset (CANCEL).
                let call = sender.send_request(request(addr, "/delay/2000"));
                drop(call);
            }
        }
    });
    // Meanwhile an ordinary client is answered.
    let mut sender = h2_connection(addr).await;
    for _ in 0..20 {
        sender.ready().await.unwrap();
        let response = sender.send_request(request(addr, "/")).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    attacker.await.unwrap();
    let peak = fleet[0].stats().max_in_flight.load(Relaxed);
    // Each of the attacker's connections at most at the limit, the ordinary client one more.
    assert!(peak <= 5 + 1, "{peak} requests at once upstream");
    // Every cancelled request gave its backend slot back.
    assert!(
        eventually(Duration::from_secs(10), || async {
            metric_sum(&scrape(&daemon).await, "lb_active_connections", &[]) == 0.0
        })
        .await,
        "cancelled streams still hold backend slots"
    );
    daemon.shutdown().await;
}

/// `h2load` (Debian's `nghttp2-client`), when installed: without it the test says so and
/// passes, unless `LB_REQUIRE_H2LOAD=1` (CI sets it) makes its absence a failure.
fn h2load() -> Option<std::path::PathBuf> {
    crate::support::process::tool(
        "h2load",
        "LB_REQUIRE_H2LOAD",
        "nghttp2-client",
        "the HTTP/2 smoke test",
    )
}

#[tokio::test]
async fn h2load_gets_every_request_answered_over_h2c() {
    let Some(h2load) = h2load() else { return };
    let fleet = backends(2).await;
    // The default limits. (h2load opens its streams before it reads the balancer's SETTINGS:
    // above a lower limit, the extra streams are refused, as they should be.)
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let url = format!("http://{}/", daemon.listen_addr);
    // Many streams over few connections: 10 at once on each of 4.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(h2load)
            .args(["-n", "2000", "-c", "4", "-m", "10", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed"),
        "{text}"
    );
    assert!(text.contains("status codes: 2000 2xx"), "{text}");
    daemon.shutdown().await;
}

/// An HTTP/2 request may carry no more field lines than an HTTP/1.1 one (100, R15): 431, and
/// nothing reaches the backend. A browser's cookie crumbs, one field upstream, count once.
#[tokio::test]
async fn an_http2_request_with_more_than_100_fields_is_431() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let mut sender = h2_connection(daemon.listen_addr).await;
    let with = |fields: usize, crumbs: usize| {
        let mut request = request(daemon.listen_addr, "/");
        let headers = request.headers_mut();
        for i in 0..fields {
            let name = http::HeaderName::try_from(format!("x-{i}")).unwrap();
            headers.insert(name, http::HeaderValue::from_static("1"));
        }
        for i in 0..crumbs {
            let crumb = http::HeaderValue::try_from(format!("c{i}=1")).unwrap();
            headers.append(http::header::COOKIE, crumb);
        }
        request
    };
    sender.ready().await.unwrap();
    let refused = sender.send_request(with(101, 0)).await.unwrap();
    assert_eq!(refused.status(), 431);
    assert_eq!(fleet[0].stats().requests.load(Relaxed), 0);
    sender.ready().await.unwrap();
    let crumbs = sender.send_request(with(90, 200)).await.unwrap();
    assert_eq!(crumbs.status(), 200);
    assert_eq!(fleet[0].stats().requests.load(Relaxed), 1);
    daemon.shutdown().await;
}

/// The request heads one connection's streams hold at once are bounded
/// (`server.http2.max_buffered_head_bytes`, security.md H17): a stream whose head does not fit
/// what the others left is refused with `REFUSED_STREAM` (a client may send it again), and
/// counted; a smaller head still fits, and the room comes back as the others are answered.
#[tokio::test]
async fn a_head_past_the_connections_room_for_heads_is_refused_until_room_comes_back() {
    let fleet = backends(1).await;
    // Room for three heads of about 12.1 KB each, not four.
    let room = "server:\n  h2c: true\n  max_header_bytes: 16384\n  http2:\n    \
                max_buffered_head_bytes: 40000\n";
    let daemon = balancer(&fleet, room).await;
    let addr = daemon.listen_addr;
    let mut sender = h2_connection(addr).await;
    // One exchange first, so that the client knows the balancer's SETTINGS.
    let small = async |sender: &mut http2::SendRequest<Empty<Bytes>>| {
        sender.ready().await.unwrap();
        let response = sender.send_request(request(addr, "/")).await.unwrap();
        assert_eq!(response.status(), 200);
    };
    small(&mut sender).await;
    let large = |path: &str| {
        let mut request = request(addr, path);
        let pad = http::HeaderValue::try_from("p".repeat(12_000)).unwrap();
        request.headers_mut().insert("x-pad", pad);
        request
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        sender.ready().await.unwrap();
        held.push(tokio::spawn(sender.send_request(large("/delay/1500"))));
    }
    // Sent after the three on the same connection: the balancer takes them in order.
    sender.ready().await.unwrap();
    let refused = sender.send_request(large("/")).await;
    let reason = (refused.as_ref().err())
        .and_then(|error| std::error::Error::source(error))
        .and_then(|source| source.downcast_ref::<h2::Error>())
        .and_then(h2::Error::reason);
    assert_eq!(
        reason,
        Some(h2::Reason::REFUSED_STREAM),
        "{:?}",
        refused.map(|response| response.status())
    );
    // A small head fits what is left.
    small(&mut sender).await;
    for answer in held {
        assert_eq!(answer.await.unwrap().unwrap().status(), 200);
    }
    // Their room came back: a large head is taken again.
    sender.ready().await.unwrap();
    assert_eq!(sender.send_request(large("/")).await.unwrap().status(), 200);
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_http2_streams_refused_total", &[]),
        1.0
    );
    assert_eq!(fleet[0].stats().requests.load(Relaxed), 6);
    daemon.shutdown().await;
}
