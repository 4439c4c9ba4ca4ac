//! Requests that must be refused (RFC 9110 / RFC 9112), written as raw bytes to the balancer;
//! each case asserts the status, that the connection was closed, and what reached the fake
//! backend behind it. Most refusals are hyper's; the table pins them so a change of settings or
//! of dependency cannot silently open a hole. See docs/security.md.

mod support;

use std::time::Duration;

use lb_proxy::Daemon;
use support::fake_backend::{Behaviour, FakeBackend, raw_exchange, request_heads};
use support::*;

/// What the backend may have seen of a refused or accepted request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reached {
    /// Not a byte.
    Nothing,
    /// Exactly one request head, answered.
    Once,
    /// At most one head and never a complete chunked body: a stream cut off by the balancer.
    Cut,
}

const LIMITS: &str = "server:\n  max_header_bytes: 16384\n  max_uri_bytes: 1024\n  \
                      max_request_body_bytes: 1000\n  header_read_timeout: 30s\n";

// header_read_timeout is far above the 5 s a case waits for the close, so "closed" means the
// balancer closed on purpose, not that an idle keep-alive connection timed out.
async fn pair() -> (FakeBackend, Daemon) {
    let fake = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let yaml = config_yaml(&[fake.spec("fake")], LIMITS);
    let daemon = Daemon::start(parse(&yaml)).await.expect("balancer starts");
    (fake, daemon)
}

fn chunked_post(body: &str) -> Vec<u8> {
    format!("POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}").into_bytes()
}

fn cases() -> Vec<(&'static str, Vec<u8>, u16, Reached)> {
    let big_headers: String = (0..400)
        .map(|i| format!("x-h{i}: {}\r\n", "v".repeat(40)))
        .collect();
    let many_headers: String = (0..150).map(|i| format!("x-{i}: 1\r\n")).collect();
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(20_000));
    vec![
        ("control: a plain GET", b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 200, Reached::Once),
        ("control: HTTP/1.0 needs no Host", b"GET / HTTP/1.0\r\n\r\n".to_vec(), 200, Reached::Once),
        // Smuggling: hyper takes Transfer-Encoding, drops Content-Length and closes after the
        // answer (RFC 9112 §6.1), so the trailing GET is never parsed, let alone forwarded.
        ("CL then TE", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200, Reached::Once),
        ("TE then CL", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200, Reached::Once),
        ("differing Content-Lengths", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(), 400, Reached::Nothing),
        ("Content-Length list", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!".to_vec(), 400, Reached::Nothing),
        ("signed Content-Length", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello".to_vec(), 400, Reached::Nothing),
        ("negative Content-Length", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\nhello".to_vec(), 400, Reached::Nothing),
        ("hex Content-Length", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 0x5\r\n\r\nhello".to_vec(), 400, Reached::Nothing),
        ("Content-Length with junk", b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5a\r\n\r\nhello".to_vec(), 400, Reached::Nothing),
        ("Transfer-Encoding gzip", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nxx".to_vec(), 400, Reached::Nothing),
        ("Transfer-Encoding xchunked", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("Transfer-Encoding gzip, chunked", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(), 501, Reached::Nothing),
        ("Transfer-Encoding chunked, chunked", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("two Transfer-Encoding lines", b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("Transfer-Encoding on HTTP/1.0", b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("whitespace before colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("NUL in a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("bare CR in a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("bare LF splitting a value", b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\nb\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("no Host on HTTP/1.1", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("header section over the limit", format!("GET / HTTP/1.1\r\nHost: t\r\n{big_headers}\r\n").into_bytes(), 431, Reached::Nothing),
        ("more than 100 headers", format!("GET / HTTP/1.1\r\nHost: t\r\n{many_headers}\r\n").into_bytes(), 431, Reached::Nothing),
        ("request target over max_uri_bytes", format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(1024)).into_bytes(), 414, Reached::Nothing),
        // A target longer than the whole head buffer never parses: hyper answers 431.
        ("request target over the head limit", format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20_000)).into_bytes(), 431, Reached::Nothing),
        ("declared body over the limit", format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n{}", "b".repeat(1001)).into_bytes(), 413, Reached::Nothing),
        ("chunked body over the limit", chunked_post(&format!("3e8\r\n{}\r\n3e8\r\n{}\r\n0\r\n\r\n", "b".repeat(1000), "b".repeat(1000))), 413, Reached::Cut),
        ("chunk size 0x5", chunked_post("0x5\r\nhello\r\n0\r\n\r\n"), 400, Reached::Cut),
        ("chunk size +5", chunked_post("+5\r\nhello\r\n0\r\n\r\n"), 400, Reached::Cut),
        ("chunk size 5_0", chunked_post("5_0\r\nhello\r\n0\r\n\r\n"), 400, Reached::Cut),
        ("missing CRLF after chunk data", chunked_post("5\r\nhelloXX0\r\n\r\n"), 400, Reached::Cut),
        ("over-long chunk extension", chunked_post(&long_ext), 400, Reached::Cut),
    ]
}

#[tokio::test]
async fn malformed_requests_are_refused_and_the_connection_closed() {
    let mut failures = Vec::new();
    for (name, request, status, reached) in cases() {
        let (fake, daemon) = pair().await;
        let answer = raw_exchange(daemon.listen_addr, &request, Duration::from_secs(5)).await;
        let seen = fake.received_text();
        let heads = request_heads(&seen);
        let backend_ok = match reached {
            Reached::Nothing => fake.connection_count() == 0,
            Reached::Once => heads == 1 && !seen.contains("/admin"),
            Reached::Cut => heads <= 1 && !seen.contains("0\r\n\r\n"),
        };
        if answer.status() != status || !answer.closed || !backend_ok {
            failures.push(format!(
                "{name}: want {status} + close + {reached:?}; got {} closed={} backend saw {heads} heads: {seen:?}\n  answer: {:?}",
                answer.status(),
                answer.closed,
                answer.text().lines().next().unwrap_or("")
            ));
        }
        daemon.shutdown().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_smuggled_request_after_a_chunked_body_never_reaches_the_backend_on_keep_alive() {
    // Without Content-Length the chunked request keeps the connection open: the bytes after
    // the terminating chunk are a second request *of the client's*, forwarded as its own
    // request, never glued onto the first request's body.
    let (fake, daemon) = pair().await;
    let request = b"POST /one HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n0\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(daemon.listen_addr, request, Duration::from_secs(5)).await;
    assert!(answer.closed);
    assert_eq!(
        answer.text().matches("HTTP/1.1 200").count(),
        2,
        "{}",
        answer.text()
    );
    let seen = fake.received_text();
    assert_eq!(request_heads(&seen), 2, "{seen}");
    let one = seen.find("POST /one").expect("first request");
    let two = seen.find("GET /two").expect("second request");
    assert!(seen[one..two].contains("hello"), "{seen}");
    daemon.shutdown().await;
}
