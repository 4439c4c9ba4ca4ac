//! The client connection's timers, end to end, on tokio's paused clock: the header read
//! timeout (from the accept, and from the start of a pipelined head), the idle timeout between
//! requests and under a backend whose body stalls, and the request timeout. Time only moves
//! when every task waits, so each deadline is checked exactly, without waiting for it; the
//! connection's timer notes activity lazily, once a tick (1 s), which bounds the precision of
//! the idle deadline.

use std::time::Duration;

use crate::support::fake_backend::{Behaviour, FakeBackend, read_until_closed};
use crate::support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

const TIMEOUTS: &str = "server:\n  header_read_timeout: 5s\n  idle_timeout: 40s\n  \
                        request_timeout: 30s\nretry:\n  max_attempts: 1\n";

/// How long after `started` the connection was closed, reading everything until then.
async fn closed_after(stream: &mut TcpStream, started: Instant) -> (Duration, String) {
    let answer = read_until_closed(stream, Duration::from_secs(600)).await;
    assert!(answer.closed, "still open: {}", answer.text());
    (started.elapsed(), answer.text())
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_read_timeout() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, TIMEOUTS).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let (took, text) = closed_after(&mut stream, started).await;
    assert_eq!(took, Duration::from_secs(5), "{text}");
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn on_an_h2c_listener_the_first_head_is_timed_from_the_accept_across_the_sniff() {
    // Nothing; part of an HTTP/1 head (the sniff has decided: HTTP/1); part of HTTP/2's
    // preface (the sniff still waits). Each is closed 5 s after the accept.
    for sent in [&b""[..], b"GET / HT", b"PRI * HTTP/2.0\r\n"] {
        let fleet = backends(1).await;
        let extra = TIMEOUTS.replace("server:\n", "server:\n  h2c: true\n");
        let daemon = balancer(&fleet, &extra).await;
        let started = Instant::now();
        let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stream.write_all(sent).await.unwrap();
        let (took, text) = closed_after(&mut stream, started).await;
        assert_eq!(took, Duration::from_secs(5), "{sent:?}: {text}");
        daemon.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_head_is_timed_from_the_end_of_the_response_before_it() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, TIMEOUTS).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let started = Instant::now();
    // The first request takes 20 s; the second head's first bytes come with it and the rest
    // never does.
    stream
        .write_all(b"GET /delay/20000 HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let (took, text) = closed_after(&mut stream, started).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    assert_eq!(took, Duration::from_secs(20 + 5), "{text}");
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, TIMEOUTS).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (took, text) = closed_after(&mut stream, started).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    // Released after 1 s quiet, the parked connection keeps its idle deadline.
    assert!(
        took >= Duration::from_secs(40) && took <= Duration::from_secs(41),
        "{took:?}"
    );
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_backend_body_that_stalls_is_cut_at_the_idle_timeout_with_or_without_h2c() {
    for h2c in [false, true] {
        let fake = FakeBackend::start(vec![Behaviour::PartialBodyThenStall {
            declared: 100,
            sent: 10,
        }])
        .await;
        let extra = TIMEOUTS.replace("server:\n", &format!("server:\n  h2c: {h2c}\n"));
        let yaml = config_yaml(&[fake.spec("stall")], &extra);
        let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
        let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let (took, text) = closed_after(&mut stream, started).await;
        assert!(text.contains("content-length: 100"), "h2c={h2c}: {text}");
        assert!(text.ends_with("ssssssssss"), "h2c={h2c}: {text}");
        assert!(
            took >= Duration::from_secs(40) && took <= Duration::from_secs(41),
            "h2c={h2c}: {took:?}"
        );
        assert!(
            drained(&daemon).await,
            "h2c={h2c}: {}",
            scrape(&daemon).await
        );
        daemon.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_a_stalled_body_frees_its_backend_slot_at_once() {
    let fake = FakeBackend::start(vec![Behaviour::PartialBodyThenStall {
        declared: 100,
        sent: 10,
    }])
    .await;
    let yaml = config_yaml(&[fake.spec("stall")], TIMEOUTS);
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(1)).await;
    assert!(answer.text().ends_with("ssssssssss"), "{}", answer.text());
    let left = Instant::now();
    drop(stream);
    assert!(drained(&daemon).await, "{}", scrape(&daemon).await);
    assert!(
        left.elapsed() < Duration::from_secs(1),
        "{:?}",
        left.elapsed()
    );
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_never_answers_gets_504_at_the_request_timeout() {
    let fake = FakeBackend::start(vec![Behaviour::Hang]).await;
    let yaml = config_yaml(&[fake.spec("hang")], TIMEOUTS);
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (took, text) = closed_after(&mut stream, started).await;
    assert!(text.starts_with("HTTP/1.1 504 "), "{text}");
    assert_eq!(took, Duration::from_secs(30), "{text}");
    daemon.shutdown().await;
}
