//! Requests that must be refused (RFC 9110 / RFC 9112), written as raw bytes to the balancer;
//! each case asserts the status, that the connection was closed, and what reached the fake
//! backend behind it. Every verdict is the codec's (`lb-proxy/src/proto/h1`); the table pins
//! them end to end, so that a change of code or settings cannot silently open a hole. See
//! docs/security.md.

use std::time::Duration;

use crate::support::fake_backend::{Behaviour, FakeBackend, raw_exchange, request_heads};
use crate::support::*;
use lb_proxy::Daemon;

/// What the backend may have seen of a refused or accepted request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reached {
    /// Not a byte.
    Nothing,
    /// Exactly one request head, answered.
    Once,
    /// At most one head and never a complete chunked body: a stream cut off by the balancer.
    Cut,
    /// Exactly one request, as the backend frames it, whose body is these bytes: a request
    /// hidden in a body stays a body.
    Body(&'static [u8]),
    /// Exactly one request, whose head contains this text.
    HeadHas(&'static str),
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

/// A request hidden in a body: the backend must see it as the body it is.
const SMUGGLED: &[u8] = b"GET /admin HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";

/// A request head of exactly `size` bytes.
fn head_of(size: usize) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nx-pad: ".to_vec();
    head.resize(size - 4, b'p');
    head.extend_from_slice(b"\r\n\r\n");
    head
}

/// `POST /a` whose `Connection` lists `listed`, with a body that holds a whole request.
fn connection_smuggle(version: &str, listed: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /a {version}\r\nHost: t\r\nConnection: {listed}, close\r\nContent-Length: {}\r\n\r\n",
        SMUGGLED.len()
    )
    .into_bytes();
    request.extend_from_slice(SMUGGLED);
    request
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
        // Smuggling: Transfer-Encoding wins, Content-Length is dropped, and the connection
        // closes after the answer (RFC 9112 §6.1), so the trailing GET is never parsed.
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
        // A target longer than the whole head limit: the head is too large before it ends.
        ("request target over the head limit", format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20_000)).into_bytes(), 431, Reached::Nothing),
        ("declared body over the limit", format!("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n{}", "b".repeat(1001)).into_bytes(), 413, Reached::Nothing),
        ("chunked body over the limit", chunked_post(&format!("3e8\r\n{}\r\n3e8\r\n{}\r\n0\r\n\r\n", "b".repeat(1000), "b".repeat(1000))), 413, Reached::Cut),
        ("chunk size 0x5", chunked_post("0x5\r\nhello\r\n0\r\n\r\n"), 400, Reached::Cut),
        ("chunk size +5", chunked_post("+5\r\nhello\r\n0\r\n\r\n"), 400, Reached::Cut),
        ("chunk size 5_0", chunked_post("5_0\r\nhello\r\n0\r\n\r\n"), 400, Reached::Cut),
        ("missing CRLF after chunk data", chunked_post("5\r\nhelloXX0\r\n\r\n"), 400, Reached::Cut),
        ("over-long chunk extension", chunked_post(&long_ext), 400, Reached::Cut),
        // Framing is the balancer's: no Connection token can remove it.
        ("Connection: content-length", connection_smuggle("HTTP/1.1", "content-length"), 200, Reached::Body(SMUGGLED)),
        ("Connection: Content-Length on HTTP/1.0", connection_smuggle("HTTP/1.0", "Content-Length"), 200, Reached::Body(SMUGGLED)),
        ("Connection names framing, host and forwarding", connection_smuggle("HTTP/1.1", "transfer-encoding, host, x-forwarded-for, content-length"), 200, Reached::Body(SMUGGLED)),
        ("Connection: transfer-encoding on a chunked body", b"POST /a HTTP/1.1\r\nHost: t\r\nConnection: transfer-encoding, close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), 200, Reached::Body(b"5\r\nhello\r\n0\r\n\r\n")),
        ("a GET with a body keeps it", b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: content-length, close\r\nContent-Length: 5\r\n\r\nhello".to_vec(), 200, Reached::Body(b"hello")),
        // Host and the target.
        ("two Hosts on HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("HTTP/1.0 without Host goes upstream with one", b"GET /p HTTP/1.0\r\n\r\n".to_vec(), 200, Reached::HeadHas("GET /p HTTP/1.1\r\nhost: 127.0.0.1:")),
        ("Host with space, slash and at", b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("empty Host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("Host with a tab", b"GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: user@t\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("absolute form: its authority is the Host", b"GET http://a.test/x?y HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n".to_vec(), 200, Reached::HeadHas("GET /x?y HTTP/1.1\r\nhost: a.test\r\n")),
        ("absolute form with userinfo", b"GET http://u@a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("absolute form of another scheme", b"GET ftp://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("authority form for GET", b"GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(), 501, Reached::Nothing),
        ("asterisk form for GET", b"GET * HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec(), 200, Reached::HeadHas("OPTIONS * HTTP/1.1\r\n")),
        ("a fragment in the target", b"GET /a#b HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400, Reached::Nothing),
        ("HTTP/2.0 in a request line", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505, Reached::Nothing),
        // Limits are exact.
        ("a head of exactly max_header_bytes", head_of(16384), 200, Reached::HeadHas("x-pad: ")),
        ("a head one byte over max_header_bytes", head_of(16385), 431, Reached::Nothing),
        ("an expectation other than 100-continue", b"POST /a HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\nx".to_vec(), 417, Reached::Nothing),
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
        let requests = fake.requests();
        let backend_ok = match reached {
            Reached::Nothing => fake.connection_count() == 0,
            Reached::Once => heads == 1 && !seen.contains("/admin"),
            Reached::Cut => heads <= 1 && !seen.contains("0\r\n\r\n"),
            Reached::Body(body) => requests.len() == 1 && requests[0].1 == body,
            Reached::HeadHas(text) => requests.len() == 1 && requests[0].0.contains(text),
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

#[tokio::test]
async fn connection_content_length_cannot_smuggle_a_request_to_the_next_client() {
    // The report's reproduction: the body of a POST holds a whole request; `Connection` names
    // `Content-Length`. The backend must see one POST with that body, and the next client its
    // own answer on the pooled connection.
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let smuggled = b"GET /delay/400 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let mut attack = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    )
    .into_bytes();
    attack.extend_from_slice(smuggled);
    let mut stream = tokio::net::TcpStream::connect(daemon.listen_addr)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &attack)
        .await
        .unwrap();
    let answer =
        crate::support::fake_backend::read_until_closed(&mut stream, Duration::from_secs(2)).await;
    let echo = answer.text().to_ascii_lowercase();
    assert!(echo.starts_with("http/1.1 200"), "{echo}");
    assert!(
        echo.contains(&format!("content-length: {}\n", smuggled.len())),
        "the backend saw no framing: {echo}"
    );
    assert!(
        echo.ends_with(&String::from_utf8_lossy(smuggled).to_ascii_lowercase()),
        "{echo}"
    );

    let next = get(&client(), daemon.listen_addr, "/bytes/5").await;
    assert_eq!(next.status, 200);
    assert_eq!(&next.body[..], &[0, 1, 2, 3, 4], "{}", next.text());
    let stats = fleet[0].stats().snapshot();
    assert_eq!(
        stats.requests, 2,
        "a smuggled request reached the backend: {stats:?}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn max_header_bytes_is_exact_whatever_the_limit() {
    for limit in [10_000usize, 12_345] {
        let fake = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
        let extra = format!("server:\n  max_header_bytes: {limit}\n  header_read_timeout: 30s\n");
        let yaml = config_yaml(&[fake.spec("fake")], &extra);
        let daemon = Daemon::start(parse(&yaml)).await.expect("balancer starts");
        for (size, status) in [(limit, 200), (limit + 1, 431), (limit + 2000, 431)] {
            let answer =
                raw_exchange(daemon.listen_addr, &head_of(size), Duration::from_secs(5)).await;
            assert_eq!(
                answer.status(),
                status,
                "limit {limit}, head of {size} bytes"
            );
            assert!(answer.closed);
        }
        assert_eq!(
            fake.requests().len(),
            1,
            "only the head within the limit reached the backend"
        );
        daemon.shutdown().await;
    }
}
