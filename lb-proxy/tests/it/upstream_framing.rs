//! The balancer's own HTTP/1.1 client against backends that frame their responses every way
//! RFC 9112 allows, and some ways it does not. Each test checks what the client got and whether
//! the upstream connection was reused: only after a response read to its exact end.

use std::time::Duration;

use crate::support::fake_backend::{Behaviour, FakeBackend, raw_exchange};
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use lb_proxy::Daemon;

async fn over(fake: &FakeBackend, extra: &str) -> Daemon {
    let yaml = config_yaml(&[fake.spec("fake")], extra);
    Daemon::start(parse(&yaml)).await.expect("balancer starts")
}

/// One attempt per request: a framing bug must show as a failure, not be retried away.
const ONE_ATTEMPT: &str = "retry:\n  max_attempts: 1\n";

#[tokio::test]
async fn chunked_responses_with_extensions_and_trailers_arrive_whole_and_reuse_the_connection() {
    let fake = FakeBackend::start(vec![Behaviour::Answers(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
          5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
    )])
    .await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    for _ in 0..3 {
        let answer = get(&client(), daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "hello world");
    }
    assert_eq!(fake.connection_count(), 1, "the connection was not reused");
    daemon.shutdown().await;
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let fake = FakeBackend::start(vec![Behaviour::Answers(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
          HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
    )])
    .await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    for _ in 0..2 {
        let answer = get(&client(), daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 201);
        assert_eq!(answer.text(), "ok");
    }
    assert_eq!(fake.connection_count(), 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_body_without_length_runs_to_the_close_and_the_connection_is_not_kept() {
    let fake = FakeBackend::start(vec![Behaviour::Raw(
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
    )])
    .await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    for _ in 0..2 {
        let answer = get(&client(), daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "until the end");
    }
    assert_eq!(fake.connection_count(), 2);
    daemon.shutdown().await;
}

#[tokio::test]
async fn head_responses_have_no_body_whatever_their_length_says() {
    let fake = FakeBackend::start(vec![Behaviour::Answers(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
    )])
    .await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    for _ in 0..3 {
        let request = Request::head(format!("http://{}/", daemon.listen_addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = send(&client(), request).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers["content-length"], "5");
        assert!(answer.body.is_empty());
    }
    assert_eq!(
        fake.connection_count(),
        1,
        "HEAD answers were framed wrongly"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn chunked_coding_wins_over_a_length_and_the_connection_is_closed_after() {
    let fake = FakeBackend::start(vec![Behaviour::Answers(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )])
    .await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    for _ in 0..2 {
        let answer = get(&client(), daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "hello");
    }
    assert_eq!(
        fake.connection_count(),
        2,
        "an ambiguous framing was reused"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn bytes_after_a_response_never_answer_the_next_request() {
    let fake = FakeBackend::start(vec![Behaviour::Answers(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok\
          HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled",
    )])
    .await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    for _ in 0..3 {
        let answer = get(&client(), daemon.listen_addr, "/").await;
        assert_eq!(answer.text(), "ok");
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn malformed_responses_are_502() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\nhello!",
    ] {
        let fake = FakeBackend::start(vec![Behaviour::Raw(bad)]).await;
        let daemon = over(&fake, ONE_ATTEMPT).await;
        let answer = raw_exchange(
            daemon.listen_addr,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let bad_text = String::from_utf8_lossy(bad);
        // A bad chunk is found after the head went out: the client's response is then cut off,
        // and counted as the backend's failure to deliver a body.
        let after_head = bad.starts_with(b"HTTP/1.1 200 OK\r\ntransfer-encoding");
        if after_head {
            assert!(
                answer.aborted || !answer.text().contains("hello"),
                "{bad_text}: {}",
                answer.text()
            );
        } else {
            assert_eq!(answer.status(), 502, "{bad_text}: {}", answer.text());
        }
        let metrics = scrape(&daemon).await;
        let failures = metric_sum(&metrics, "lb_backend_body_failures_total", &[]);
        assert_eq!(failures, f64::from(u8::from(after_head)), "{bad_text}");
        daemon.shutdown().await;
    }
}

#[tokio::test]
async fn an_oversized_response_head_is_502() {
    let fake = FakeBackend::start(vec![Behaviour::Raw(huge_head())]).await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 502);
    daemon.shutdown().await;
    // The limit is the operator's.
    let extra = "retry:\n  max_attempts: 1\nupstream:\n  max_response_header_bytes: 200000\n";
    let daemon = over(&fake, extra).await;
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 200);
    daemon.shutdown().await;
}

fn huge_head() -> &'static [u8] {
    // One long header, so that the size and not the header count is what is over the limit.
    let mut head = b"HTTP/1.1 200 OK\r\nx-filler: ".to_vec();
    head.resize(head.len() + 80 * 1024, b'a');
    head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    Box::leak(head.into_boxed_slice())
}

#[tokio::test]
async fn a_backend_closing_each_idle_connection_costs_idempotent_requests_nothing() {
    let fake = FakeBackend::start(vec![Behaviour::RespondThenClose("fresh", Duration::ZERO)]).await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    for round in 0..20 {
        let answer = get(&client(), daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 200, "request {round}: {}", answer.text());
        assert_eq!(answer.text(), "fresh");
    }
    assert!(
        drained(&daemon).await,
        "in-flight counters did not return to zero"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_request_and_its_body_reach_the_backend_byte_for_byte() {
    let fake = FakeBackend::start(vec![Behaviour::Respond("stored")]).await;
    let daemon = over(&fake, "").await;
    let request = Request::put(format!("http://{}/items/7?x=1&y=%20", daemon.listen_addr))
        .header("x-custom", "one")
        .header("x-custom", "two")
        .body(Full::new(Bytes::from_static(b"payload bytes")))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.text(), "stored");
    let received = fake.received_text();
    assert!(
        received.starts_with("PUT /items/7?x=1&y=%20 HTTP/1.1\r\n"),
        "{received}"
    );
    assert!(
        received.contains("x-custom: one\r\nx-custom: two\r\n"),
        "{received}"
    );
    assert!(received.contains("content-length: 13\r\n"), "{received}");
    assert!(received.ends_with("\r\n\r\npayload bytes"), "{received}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn idle_connections_the_backend_closed_leave_the_pool_while_traffic_is_quiet() {
    let fake = FakeBackend::start(vec![Behaviour::RespondThenClose(
        "once",
        // Longer than the sweep's period, so that one sweep samples the connection open.
        Duration::from_millis(1500),
    )])
    .await;
    let daemon = over(&fake, ONE_ATTEMPT).await;
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.text(), "once");
    // The pool as the sweep samples it, once a second: the metric is what an operator sees.
    let sampled =
        || async { metric_sum(&scrape(&daemon).await, "lb_upstream_idle_connections", &[]) };
    assert!(
        eventually(Duration::from_secs(5), || async { sampled().await == 1.0 }).await,
        "the connection did not go back to the pool"
    );
    // No request comes to check it out: the sweep alone must find the backend's close.
    assert!(
        eventually(Duration::from_secs(5), || async { sampled().await == 0.0 }).await,
        "a closed idle connection stayed in the pool"
    );
    daemon.shutdown().await;
}
