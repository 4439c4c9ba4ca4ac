//! Backends that hang, refuse, reset or talk nonsense, played by the raw-socket fake backend.
//! Each test asserts what the client saw and what reached each backend (never a POST twice).
//! The 504 against a slow (but well-formed) backend and a client leaving mid-request are in
//! limits.rs; these extend them to backends that misbehave at the socket level.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::fake_backend::{Behaviour, FakeBackend, raw_exchange};
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use lb_proxy::Daemon;

async fn over(specs: &[(String, SocketAddr, u32)], extra: &str) -> Daemon {
    let yaml = config_yaml(specs, extra);
    Daemon::start(parse(&yaml)).await.expect("balancer starts")
}

/// A loopback port with nothing listening on it: connecting is refused.
async fn refusing_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

fn post(addr: SocketAddr, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}/submit"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn a_backend_that_never_answers_is_504_within_the_request_timeout() {
    let fake = FakeBackend::start(vec![Behaviour::Hang]).await;
    let daemon = over(
        &[fake.spec("hang")],
        "server:\n  request_timeout: 300ms\nretry:\n  max_attempts: 1\n",
    )
    .await;
    let started = tokio::time::Instant::now();
    let answer = get(&client(), daemon.listen_addr, "/").await;
    let took = started.elapsed();
    assert_eq!(answer.status, 504, "{}", answer.text());
    assert!(took >= Duration::from_millis(250), "too early: {took:?}");
    // The timeout plus a margin for a loaded CI machine.
    assert!(took < Duration::from_millis(300 + 1500), "took {took:?}");
    assert_eq!(fake.request_heads(), 1);
    let metrics = scrape(&daemon).await;
    assert_eq!(metric_sum(&metrics, "lb_active_connections", &[]), 0.0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_refusing_backend_is_skipped_for_any_method() {
    let alive = FakeBackend::start(vec![Behaviour::Respond("alive")]).await;
    let dead = refusing_addr().await;
    let daemon = over(
        &[("dead".into(), dead, 1), alive.spec("alive")],
        "retry:\n  base_delay: 1ms\n  max_delay: 2ms\n",
    )
    .await;
    let client = client();
    for _ in 0..6 {
        assert_eq!(get(&client, daemon.listen_addr, "/").await.text(), "alive");
    }
    // Nothing was sent to the refusing backend, so even a POST is safe to try elsewhere.
    for _ in 0..4 {
        let answer = send(&client, post(daemon.listen_addr, "once")).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(alive.request_heads(), 10);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_reset_before_the_head_is_retried_elsewhere_for_get_and_502_for_post() {
    let resetting = FakeBackend::start(vec![Behaviour::ResetBeforeHead]).await;
    let healthy = FakeBackend::start(vec![Behaviour::Respond("healthy")]).await;
    let daemon = over(
        &[resetting.spec("resetting"), healthy.spec("healthy")],
        "retry:\n  base_delay: 1ms\n  max_delay: 2ms\n  retry_on: [connect_error, timeout, reset, 502, 503, 504]\n\
         circuit_breaker:\n  enabled: false\n",
    )
    .await;
    let client = client();
    for _ in 0..6 {
        let answer = get(&client, daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "healthy", "the second backend served it");
    }
    assert!(resetting.request_heads() >= 1, "round robin never tried it");

    // A POST may have been processed before the reset: never sent twice, the client gets 502.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(send(&client, post(daemon.listen_addr, "pay")).await.status);
    }
    let reset_posts = resetting.received_text().matches("POST /submit").count();
    let served_posts = healthy.received_text().matches("POST /submit").count();
    assert!(reset_posts >= 1, "round robin never sent a POST to it");
    assert_eq!(
        reset_posts + served_posts,
        6,
        "every POST reached exactly one backend, once"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 502).count(), reset_posts);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_reset_before_the_head_is_502_without_reset_in_retry_on() {
    let fake = FakeBackend::start(vec![Behaviour::ResetBeforeHead]).await;
    let daemon = over(
        &[fake.spec("resetting")],
        "retry:\n  retry_on: [connect_error, timeout, 502, 503, 504]\n",
    )
    .await;
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(
        fake.request_heads(),
        1,
        "not retried: reset is not in this retry_on"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_reset_mid_body_aborts_the_client_connection_and_is_not_reused() {
    let fake = FakeBackend::start(vec![
        Behaviour::PartialBodyThenReset {
            declared: 100_000,
            sent: 1000,
        },
        Behaviour::Respond("fresh"),
    ])
    .await;
    let daemon = over(&[fake.spec("flaky")], "").await;
    let answer = raw_exchange(
        daemon.listen_addr,
        b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let text = answer.text();
    assert_eq!(answer.status(), 200, "{text}");
    assert!(answer.closed, "the client connection must end");
    assert!(text.contains("content-length: 100000"), "{text}");
    let body = text
        .split_once("\r\n\r\n")
        .map_or(0, |(_, body)| body.len());
    assert!(body < 100_000, "the client must see the truncation");

    // The broken upstream connection is gone: the next request opens a new one.
    let next = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(next.text(), "fresh");
    assert_eq!(fake.connection_count(), 2);
    let metrics = scrape(&daemon).await;
    assert_eq!(metric_sum(&metrics, "lb_active_connections", &[]), 0.0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn garbage_invalid_lengths_and_codings_are_502_and_the_connection_discarded() {
    for bad in [
        Behaviour::GARBAGE,
        Behaviour::INVALID_LENGTH,
        Behaviour::DIFFERING_LENGTHS,
        // A coding the balancer does not apply cannot be forwarded, and must not arrive as
        // plain content (nginx answers 502 too).
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        Behaviour::Raw(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello"),
        Behaviour::Raw(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 5\r\n\r\nhello"),
        Behaviour::Raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
    ] {
        let fake = FakeBackend::start(vec![bad.clone(), Behaviour::Respond("fresh")]).await;
        let daemon = over(&[fake.spec("liar")], "retry:\n  max_attempts: 1\n").await;
        let answer = get(&client(), daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 502, "{bad:?}: {}", answer.text());
        let next = get(&client(), daemon.listen_addr, "/").await;
        assert_eq!(next.text(), "fresh", "{bad:?}");
        assert_eq!(
            fake.connection_count(),
            2,
            "{bad:?}: a bad connection was reused"
        );
        daemon.shutdown().await;
    }
}

#[tokio::test]
async fn a_backends_content_length_reaches_the_client_as_one_normalised_value_on_both_paths() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 005\r\n\r\nhello",
    ] {
        let answer: &'static [u8] = Box::leak(answer.to_vec().into_boxed_slice());
        for h2c in [false, true] {
            let fake = FakeBackend::start(vec![Behaviour::Answers(answer)]).await;
            let extra = format!("server:\n  h2c: {h2c}\n");
            let daemon = over(&[fake.spec("lengths")], &extra).await;
            for request in [
                &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
                b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            ] {
                let seen = raw_exchange(daemon.listen_addr, request, Duration::from_secs(5)).await;
                let text = seen.text().to_ascii_lowercase();
                let lengths: Vec<&str> = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("content-length:"))
                    .map(str::trim)
                    .collect();
                assert_eq!(
                    lengths,
                    ["5"],
                    "h2c={h2c} {}: {text}",
                    String::from_utf8_lossy(request)
                );
            }
            daemon.shutdown().await;
        }
    }
}

#[tokio::test]
async fn a_client_leaving_mid_upload_returns_every_counter_to_zero() {
    let fake = FakeBackend::start(vec![Behaviour::Hang]).await;
    let daemon = over(&[fake.spec("hang")], "").await;
    let mut stream = tokio::net::TcpStream::connect(daemon.listen_addr)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    let streaming = eventually(Duration::from_secs(5), || async {
        fake.received_text().contains("hello")
    })
    .await;
    assert!(streaming, "the body never started flowing");
    let metrics = scrape(&daemon).await;
    assert_eq!(metric_sum(&metrics, "lb_active_connections", &[]), 1.0);
    drop(stream);
    assert!(drained(&daemon).await, "{}", scrape(&daemon).await);
    daemon.shutdown().await;
}
