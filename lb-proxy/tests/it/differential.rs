//! Our HTTP/1.1 loop against hyper's: one table of requests, each sent as raw bytes through our
//! own loop and through hyper's server (an h2c listener started with
//! `StartOptions::http1_reference`, which serves HTTP/1 with hyper, the codec's rules applied to
//! the heads hyper parsed). Both must give the same status to the client and put the same bytes
//! before the backend, or the difference must be one of [`DIFFERENCES`], each of which
//! `docs/security.md` justifies. Chunked bodies are compared by their data: where chunks end
//! carries no meaning. Our loop is run on a plain listener and on an h2c listener, where the
//! protocol sniff reads the first bytes: those two must agree exactly.

use std::time::Duration;

use crate::support::fake_backend::{Behaviour, FakeBackend, raw_exchange};
use crate::support::*;

const LIMITS: &str = "max_header_bytes: 16384\n  max_uri_bytes: 1024\n  \
                      max_request_body_bytes: 100000\n  header_read_timeout: 30s\n";

/// What one path did with one request.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// The status of the first response, 0 when there was none.
    status: u16,
    /// The requests the backend parsed: head and body.
    backend: Vec<(String, Vec<u8>)>,
}

/// Which server reads the request.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// Our loop, on a plain listener.
    Ours,
    /// Our loop, on an h2c listener (after the protocol sniff).
    OursH2c,
    /// hyper's HTTP/1 server, on an h2c listener.
    Hypers,
}

async fn outcome(request: &[u8], path: Path) -> Outcome {
    let fake = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let h2c = !matches!(path, Path::Ours);
    let extra = format!("server:\n  h2c: {h2c}\n  {LIMITS}retry:\n  max_attempts: 1\n");
    let yaml = config_yaml(&[fake.spec("fake")], &extra);
    let options = lb_proxy::StartOptions {
        http1_reference: matches!(path, Path::Hypers),
        ..Default::default()
    };
    let daemon = lb_proxy::Daemon::start_with(parse(&yaml), options)
        .await
        .unwrap();
    let answer = raw_exchange(daemon.listen_addr, request, Duration::from_secs(3)).await;
    // The backend's own address is the upstream Host of a request that names none; each run
    // has its own backend.
    let address = fake.addr().to_string();
    let backend = fake
        .requests()
        .into_iter()
        .map(|(head, body)| {
            // Chunk boundaries carry no meaning, and ours are not hyper's: chunked bodies are
            // compared decoded.
            let body = if head.contains("transfer-encoding: chunked") {
                dechunk(&body)
            } else {
                body
            };
            (request_id_masked(&head.replace(&address, "BACKEND")), body)
        })
        .collect();
    daemon.shutdown().await;
    Outcome {
        status: answer.status(),
        backend,
    }
}

/// `head` with the request id's value masked: each request gets a new one, on either path.
fn request_id_masked(head: &str) -> String {
    let mut masked = String::with_capacity(head.len());
    for line in head.split_inclusive("\r\n") {
        match line.strip_prefix("x-request-id: ") {
            Some(id) => {
                assert_eq!(id.trim_end().len(), 32, "a generated id: {line}");
                masked.push_str("x-request-id: ID\r\n");
            }
            None => masked.push_str(line),
        }
    }
    masked
}

/// The data of a chunked body (the codec's own decoder: it is tested on its own).
fn dechunk(wire: &[u8]) -> Vec<u8> {
    use lb_proxy::proto::h1::chunked::{ChunkedDecoder, Decoded};
    let mut decoder = ChunkedDecoder::new();
    let mut buffer = bytes::BytesMut::from(wire);
    let mut body = Vec::new();
    while let Ok(Decoded::Data(data)) = decoder.decode(&mut buffer) {
        body.extend_from_slice(&data);
    }
    body
}

/// Requests whose outcome differs between the two paths, and why (see docs/security.md).
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "POST with a length list",
        "a list of identical lengths is one length (RFC 9110 §8.6 allows either); it goes upstream \
         as one value, so no recipient can read it otherwise; hyper refuses it",
    ),
    (
        "HTTP/1.2",
        "httparse knows only 1.0 and 1.1; we answer 505 HTTP Version Not Supported, hyper 400",
    ),
];

fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let close = "Connection: close\r\n";
    let simple = |line: &str, fields: &str, body: &str| {
        format!("{line}\r\nHost: t\r\n{fields}{close}\r\n{body}").into_bytes()
    };
    vec![
        (
            "GET",
            simple(
                "GET /a?b=c HTTP/1.1",
                "Accept: */*\r\nX-Two: 1\r\nX-Two: 2\r\n",
                "",
            ),
        ),
        ("HEAD", simple("HEAD / HTTP/1.1", "", "")),
        (
            "DELETE with an empty body",
            simple("DELETE /x HTTP/1.1", "Content-Length: 0\r\n", ""),
        ),
        (
            "POST with a length",
            simple("POST /p HTTP/1.1", "Content-Length: 5\r\n", "hello"),
        ),
        (
            "POST with a length list",
            simple("POST /p HTTP/1.1", "Content-Length: 5, 5\r\n", "hello"),
        ),
        (
            "POST with leading zeros",
            simple("POST /p HTTP/1.1", "Content-Length: 005\r\n", "hello"),
        ),
        ("POST without a body", simple("POST /p HTTP/1.1", "", "")),
        (
            "GET with a body",
            simple("GET /g HTTP/1.1", "Content-Length: 3\r\n", "abc"),
        ),
        (
            "chunked",
            simple(
                "POST /c HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "chunked with extensions and trailers",
            simple(
                "POST /c HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "5;a=b\r\nhello\r\n1 ;c\r\n!\r\n0\r\nX-T: 1\r\n\r\n",
            ),
        ),
        (
            "chunked and a length",
            simple(
                "POST /c HTTP/1.1",
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        (
            "Expect: 100-continue with its body",
            simple(
                "PUT /u HTTP/1.1",
                "Expect: 100-continue\r\nContent-Length: 2\r\n",
                "hi",
            ),
        ),
        (
            "HTTP/1.0 without Host",
            b"GET /old HTTP/1.0\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/1.0 with Host",
            b"GET /old HTTP/1.0\r\nHost: t\r\n\r\n".to_vec(),
        ),
        (
            "absolute form",
            b"GET http://a.test/x?y HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "absolute form without a path",
            b"GET http://a.test HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("OPTIONS *", simple("OPTIONS * HTTP/1.1", "", "")),
        (
            "Connection: content-length",
            simple(
                "POST /s HTTP/1.1",
                "Connection: content-length\r\nContent-Length: 5\r\n",
                "hello",
            ),
        ),
        (
            "Connection names our fields",
            simple(
                "GET / HTTP/1.1",
                "Connection: host, x-forwarded-for, x-forwarded-host\r\nX-Forwarded-For: 6.6.6.6\r\nCookie: c\r\n",
                "",
            ),
        ),
        (
            "Connection names a field",
            simple(
                "GET / HTTP/1.1",
                "Connection: x-secret\r\nX-Secret: s\r\nX-Kept: k\r\n",
                "",
            ),
        ),
        (
            "hop-by-hop fields",
            simple(
                "GET / HTTP/1.1",
                "Keep-Alive: 5\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: h2c\r\nProxy-Authorization: p\r\n",
                "",
            ),
        ),
        (
            "LF line ends",
            b"GET /lf HTTP/1.1\nHost: t\nConnection: close\n\n".to_vec(),
        ),
        (
            "obs-text in a value",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Latin: caf\xe9\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "no Host",
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        ),
        (
            "invalid Host",
            b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n".to_vec(),
        ),
        (
            "authority form for GET",
            b"GET a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec(),
        ),
        (
            "CONNECT",
            b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n".to_vec(),
        ),
        (
            "differing lengths",
            simple(
                "POST / HTTP/1.1",
                "Content-Length: 5\r\nContent-Length: 6\r\n",
                "hello!",
            ),
        ),
        (
            "signed length",
            simple("POST / HTTP/1.1", "Content-Length: +5\r\n", "hello"),
        ),
        (
            "gzip, chunked",
            simple(
                "POST / HTTP/1.1",
                "Transfer-Encoding: gzip, chunked\r\n",
                "0\r\n\r\n",
            ),
        ),
        (
            "chunked twice",
            simple(
                "POST / HTTP/1.1",
                "Transfer-Encoding: chunked, chunked\r\n",
                "0\r\n\r\n",
            ),
        ),
        (
            "a bad chunk size",
            simple(
                "POST / HTTP/1.1",
                "Transfer-Encoding: chunked\r\n",
                "0x5\r\nhello\r\n0\r\n\r\n",
            ),
        ),
        ("obs-fold", simple("GET / HTTP/1.1", "X-A: a\r\n b\r\n", "")),
        (
            "space before a colon",
            simple("GET / HTTP/1.1", "X-A : a\r\n", ""),
        ),
        (
            "an unknown expectation",
            simple(
                "POST / HTTP/1.1",
                "Expect: teapot\r\nContent-Length: 1\r\n",
                "x",
            ),
        ),
        (
            "a target over max_uri_bytes",
            simple(&format!("GET /{} HTTP/1.1", "a".repeat(1100)), "", ""),
        ),
        (
            "a head over max_header_bytes",
            simple(
                "GET / HTTP/1.1",
                &format!("X-Big: {}\r\n", "b".repeat(17000)),
                "",
            ),
        ),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n".to_vec()),
    ]
}

#[tokio::test]
async fn our_loop_and_hypers_agree_or_differ_as_documented() {
    let mut differences = Vec::new();
    for (name, request) in requests() {
        let ours = outcome(&request, Path::Ours).await;
        let after_sniff = outcome(&request, Path::OursH2c).await;
        assert_eq!(
            ours, after_sniff,
            "{name}: our loop differs behind the h2c sniff"
        );
        let hypers = outcome(&request, Path::Hypers).await;
        if ours != hypers {
            differences.push((name, format!("ours:   {ours:?}\n  hyper's: {hypers:?}")));
        }
    }
    let unexplained: Vec<String> = differences
        .iter()
        .filter(|(name, _)| !DIFFERENCES.iter().any(|(known, _)| known == name))
        .map(|(name, detail)| format!("{name}:\n  {detail}"))
        .collect();
    let vanished: Vec<&str> = DIFFERENCES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !differences.iter().any(|(seen, _)| seen == name))
        .collect();
    assert!(
        unexplained.is_empty() && vanished.is_empty(),
        "unexplained differences:\n{}\ndocumented differences that no longer occur: {vanished:?}",
        unexplained.join("\n")
    );
}
