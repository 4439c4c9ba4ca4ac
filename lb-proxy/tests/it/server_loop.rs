//! The balancer's own HTTP/1.1 server loop, as a client on a raw socket sees it: requests with
//! and without bodies are served on the same connection and in order; the response is framed
//! for the client's version and method; `100 Continue` is sent when the body is first wanted;
//! a client that goes away or a backend body that ends early closes the connection instead of
//! leaving it in a wrong state.

use std::time::Duration;

use crate::support::fake_backend::{Behaviour, FakeBackend, RawAnswer, raw_exchange};
use crate::support::raw::{RawResponse, ask, read_responses, take_response};
use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(5);
/// One attempt per request: a framing bug must show as a failure, not be retried away.
const ONE_ATTEMPT: &str = "retry:\n  max_attempts: 1\n";

async fn over(fake: &FakeBackend) -> lb_proxy::Daemon {
    let yaml = config_yaml(&[fake.spec("fake")], ONE_ATTEMPT);
    lb_proxy::Daemon::start(parse(&yaml))
        .await
        .expect("balancer starts")
}

#[tokio::test]
async fn pipelined_requests_with_and_without_bodies_are_answered_in_order() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    // A bodyless request, one with a body (served by hyper), and a bodyless one again, sent
    // at once: the last must come back to our loop with the bytes hyper had read ahead.
    stream
        .write_all(
            b"GET /echo?first HTTP/1.1\r\nhost: a\r\n\r\n\
              POST /echo?second HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello\
              DELETE /echo?third HTTP/1.1\r\nhost: a\r\n\r\n",
        )
        .await
        .unwrap();
    let mut bytes = read_responses(&mut stream, 3).await;
    for (index, expected) in ["GET /echo?first", "POST /echo?second", "DELETE /echo?third"]
        .into_iter()
        .enumerate()
    {
        let RawResponse { head, body, .. } = take_response(&mut bytes, false);
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{index}: {head}");
        let body = String::from_utf8_lossy(&body);
        assert!(body.starts_with(expected), "{index}: {body}");
        if index == 1 {
            assert!(body.ends_with("hello"), "{body}");
        }
    }
    assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    // The connection is still open and served.
    let (RawResponse { body, .. }, rest) =
        ask(&mut stream, b"GET /echo?fourth HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&body).starts_with("GET /echo?fourth"));
    assert!(rest.is_empty());
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_chunked_backend_body_is_chunked_for_http11_and_runs_to_the_close_for_http10() {
    let fake = FakeBackend::start(vec![Behaviour::Answers(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-kind: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )])
    .await;
    let daemon = over(&fake).await;

    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    for _ in 0..2 {
        let (RawResponse { head, body, .. }, bytes) =
            ask(&mut stream, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert_eq!(
            header(&head, "transfer-encoding"),
            Some("chunked"),
            "{head}"
        );
        assert_eq!(header(&head, "x-kind"), Some("chunked"), "{head}");
        assert_eq!(header(&head, "content-length"), None, "{head}");
        assert_eq!(body, b"hello world");
        assert!(bytes.is_empty());
    }

    let answer = raw_exchange(daemon.listen_addr, b"GET / HTTP/1.0\r\n\r\n", LIMIT).await;
    assert!(
        answer.closed,
        "an HTTP/1.0 body without length must end with the connection"
    );
    let mut bytes = answer.bytes;
    let RawResponse { head, body, .. } = take_response(&mut bytes, false);
    assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
    assert_eq!(header(&head, "transfer-encoding"), None, "{head}");
    assert_eq!(body, b"hello world");
    daemon.shutdown().await;
}

#[tokio::test]
async fn http10_clients_get_http10_and_keep_alive_only_when_they_ask() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;

    let answer = raw_exchange(daemon.listen_addr, b"GET / HTTP/1.0\r\n\r\n", LIMIT).await;
    assert!(answer.closed);
    assert!(
        answer.text().starts_with("HTTP/1.0 200 OK\r\n"),
        "{}",
        answer.text()
    );

    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    for _ in 0..2 {
        let (RawResponse { head, .. }, rest) = ask(
            &mut stream,
            b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
        assert!(rest.is_empty());
        assert_eq!(header(&head, "connection"), Some("keep-alive"), "{head}");
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn connection_close_is_answered_with_close_and_the_socket_closes() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let answer = raw_exchange(
        daemon.listen_addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(answer.closed && !answer.aborted, "{answer:?}");
    let mut bytes = answer.bytes;
    let RawResponse { head, body, .. } = take_response(&mut bytes, false);
    assert_eq!(header(&head, "connection"), Some("close"), "{head}");
    assert!(String::from_utf8_lossy(&body).starts_with("hello from b0"));
    assert!(bytes.is_empty());

    // Pipelined bytes after the closing request are not served, and the response still
    // arrives whole.
    let answer = raw_exchange(
        daemon.listen_addr,
        b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\nGET /echo HTTP/1.1\r\nhost: a\r\n\r\n",
        LIMIT,
    )
    .await;
    assert!(answer.closed, "{answer:?}");
    let mut bytes = answer.bytes;
    let RawResponse { body, .. } = take_response(&mut bytes, false);
    assert!(String::from_utf8_lossy(&body).starts_with("hello from b0"));
    assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    daemon.shutdown().await;
}

#[tokio::test]
async fn head_keeps_the_declared_length_and_sends_no_body() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nhost: a\r\n\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = read_responses(&mut stream, 1).await;
    // Both answers may not be in yet: read until the GET's body is complete.
    while find(&bytes, b"hello from b0").is_none() {
        let more = read_responses(&mut stream, 1).await;
        assert!(!more.is_empty(), "the GET after a HEAD was not answered");
        bytes.extend_from_slice(&more);
    }
    let RawResponse { head, body, .. } = take_response(&mut bytes, true);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    let declared: usize = header(&head, "content-length").unwrap().parse().unwrap();
    assert!(body.is_empty());
    let RawResponse { head, body, .. } = take_response(&mut bytes, false);
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert_eq!(body.len(), declared);
    assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    daemon.shutdown().await;
}

#[tokio::test]
async fn no_content_has_no_body_and_no_length() {
    let fake = FakeBackend::start(vec![Behaviour::Answers(
        b"HTTP/1.1 204 No Content\r\nx-kind: empty\r\n\r\n",
    )])
    .await;
    let daemon = over(&fake).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    for _ in 0..2 {
        let (RawResponse { head, .. }, bytes) =
            ask(&mut stream, b"DELETE /x HTTP/1.1\r\nhost: a\r\n\r\n").await;
        assert!(head.starts_with("http/1.1 204 no content\r\n"), "{head}");
        assert_eq!(header(&head, "content-length"), None, "{head}");
        assert_eq!(header(&head, "transfer-encoding"), None, "{head}");
        assert!(header(&head, "date").is_some(), "{head}");
        assert!(bytes.is_empty());
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_backend_body_shorter_than_declared_closes_the_client_connection() {
    let fake = FakeBackend::start(vec![Behaviour::PartialBodyThenReset {
        declared: 10,
        sent: 4,
    }])
    .await;
    let daemon = over(&fake).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let answer: RawAnswer =
        crate::support::fake_backend::read_until_closed(&mut stream, LIMIT).await;
    assert!(
        answer.closed,
        "the client was left waiting for bytes that never come"
    );
    let text = answer.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("content-length: 10\r\n"),
        "{text}"
    );
    let body_start = find(&answer.bytes, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(answer.bytes.len() - body_start, 4, "{text}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_balancers_own_answers_carry_a_date_and_a_length() {
    // Nothing listens on the backend's port: the balancer answers 502 itself.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let yaml = config_yaml(&[("gone".to_owned(), addr, 1)], ONE_ATTEMPT);
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let (RawResponse { head, body, .. }, _) =
        ask(&mut stream, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 502 bad gateway\r\n"), "{head}");
    let date = header(&head, "date").expect("a date header");
    assert!(date.ends_with(" gmt"), "{head}");
    assert_eq!(
        header(&head, "content-length").unwrap(),
        body.len().to_string()
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_client_that_expects_100_continue_gets_it_before_it_sends_its_body() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  max_request_body_bytes: 100\n").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(
            b"PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await
        .unwrap();
    let mut interim = Vec::new();
    while find(&interim, b"\r\n\r\n").is_none() {
        let mut chunk = [0u8; 256];
        let read = tokio::time::timeout(LIMIT, stream.read(&mut chunk))
            .await
            .expect("an interim answer")
            .unwrap();
        assert!(read > 0, "closed before 100 Continue");
        interim.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let (RawResponse { head, body, .. }, _) = ask(&mut stream, b"hello").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let echo = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(
        echo.ends_with("\r\n\r\nhello") || echo.ends_with("\n\nhello"),
        "{echo}"
    );
    assert!(
        !echo.contains("expect:"),
        "the expectation was answered here: {echo}"
    );

    // A declared body over the limit is refused at once: no 100 Continue, and the connection
    // closes, so the body the client may still send is never read as a request.
    let answer = raw_exchange(
        daemon.listen_addr,
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 500\r\n\r\n",
        LIMIT,
    )
    .await;
    assert_eq!(answer.status(), 413, "{}", answer.text());
    assert!(answer.closed);
    assert!(!answer.text().contains("100 Continue"), "{}", answer.text());
    daemon.shutdown().await;
}
