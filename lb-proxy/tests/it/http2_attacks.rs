//! HTTP/2 attacks from raw frames, each cut by a limit and counted in
//! `lb_http2_connections_closed_total{reason}` while other clients keep being served:
//! rapid reset (HEADERS and RST_STREAM back to back, CVE-2023-44487), a CONTINUATION flood
//! (frames without END_HEADERS, CVE-2024-27316 and kin) and one huge header block, a flood of
//! empty DATA frames, and a client that never opens its flow-control window for a response;
//! and malformed requests, none of which may reach the backend.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One HTTP/2 frame's bytes (RFC 9113 §4.1).
pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix under `first` (RFC 7541 §5.1).
fn hpack_int(first: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block for `GET path` on `authority` (static table names, literal values).
pub(crate) fn request_block(authority: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    for (index, value) in [(4, path), (1, authority)] {
        hpack_int(0x00, 4, index, &mut block); // literal without indexing, indexed name
        hpack_int(0x00, 7, value.len(), &mut block);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Opens a raw HTTP/2 connection: the preface and `settings` (id, value pairs).
pub(crate) async fn raw_h2(addr: SocketAddr, settings: &[(u16, u32)]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut payload = Vec::new();
    for (id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &payload));
    stream.write_all(&out).await.unwrap();
    stream
}

/// Reads frames until the connection closes (or `limit` passes): the `GOAWAY` error code the
/// balancer sent, if any.
async fn goaway_code(stream: &mut TcpStream, limit: Duration) -> Option<u32> {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 16384];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => bytes.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await;
    goaway_in(&bytes)
}

pub(crate) async fn closed(daemon: &lb_proxy::Daemon, reason: &str) -> f64 {
    let label = format!("reason=\"{reason}\"");
    metric_sum(
        &scrape(daemon).await,
        "lb_http2_connections_closed_total",
        &[label.as_str()],
    )
}

/// An ordinary HTTP/2 client, answered 20 times while an attack runs.
pub(crate) async fn served_meanwhile(addr: SocketAddr) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    for _ in 0..20 {
        sender.ready().await.unwrap();
        let request = http::Request::get(format!("http://{addr}/"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    }
}

/// Sends `attack` after the preface on a connection of its own while an ordinary client is
/// served ([`served_meanwhile`]): the `GOAWAY` code the attack got.
async fn attack_while_served(addr: SocketAddr, attack: Vec<u8>) -> Option<u32> {
    let attacker = tokio::spawn(async move {
        let mut stream = raw_h2(addr, &[]).await;
        let _ = stream.write_all(&attack).await;
        goaway_code(&mut stream, Duration::from_secs(10)).await
    });
    served_meanwhile(addr).await;
    attacker.await.unwrap()
}

#[tokio::test]
async fn rapid_reset_gets_goaway_and_is_counted() {
    let fleet = backends(1).await;
    let config = "server:\n  h2c: true\n  http2:\n    max_concurrent_streams: 5\n";
    let daemon = balancer(&fleet, config).await;
    let addr = daemon.listen_addr;
    // HEADERS then RST_STREAM for 500 streams, in one write: every stream is reset before the
    // balancer can take it.
    let block = request_block("t", "/delay/2000");
    let mut burst = Vec::new();
    for n in 0..500u32 {
        let id = 2 * n + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let answer = attack_while_served(addr, burst).await;
    assert_eq!(answer, Some(ENHANCE_YOUR_CALM));
    assert_eq!(closed(&daemon, "rapid_reset").await, 1.0);
    let peak = fleet[0].stats().max_in_flight.load(Relaxed);
    assert!(peak <= 5 + 1, "{peak} requests at once upstream");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_continuation_flood_is_cut_by_the_frame_cap_and_counted() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let addr = daemon.listen_addr;
    // A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames,
    // none with it, as many as the balancer will read.
    let mut flood = frame(HEADERS, END_STREAM, 1, &request_block("t", "/"));
    for _ in 0..10_000 {
        flood.extend(frame(CONTINUATION, 0, 1, &[]));
    }
    let answer = attack_while_served(addr, flood).await;
    assert_eq!(answer, Some(ENHANCE_YOUR_CALM));
    assert_eq!(closed(&daemon, "continuation_flood").await, 1.0);

    // One huge header block (a 1 MiB value) in 16 KiB frames: cut long before its end.
    let mut block = request_block("t", "/");
    block.push(0x00); // literal, new name
    hpack_int(0x00, 7, 6, &mut block);
    block.extend_from_slice(b"x-huge");
    hpack_int(0x00, 7, 1 << 20, &mut block);
    block.extend(std::iter::repeat_n(b'a', 1 << 20));
    let mut chunks = block.chunks(16_384);
    let mut huge = frame(HEADERS, END_STREAM, 1, chunks.next().unwrap());
    let count = chunks.len();
    for (index, chunk) in chunks.enumerate() {
        let flags = if index + 1 == count { END_HEADERS } else { 0 };
        huge.extend(frame(CONTINUATION, flags, 1, chunk));
    }
    let answer = attack_while_served(addr, huge).await;
    assert_eq!(answer, Some(ENHANCE_YOUR_CALM));
    assert_eq!(closed(&daemon, "continuation_flood").await, 2.0);
    assert_eq!(
        fleet[0].stats().requests.load(Relaxed),
        40,
        "only the ordinary requests"
    );
    daemon.shutdown().await;
}

/// Empty `DATA` frames cost the balancer a frame each and carry nothing (CVE-2019-9518): an
/// upload made of them is cut by h2's cap (100 a connection), and a body that ends in an empty
/// frame, as many clients write it, is not.
#[tokio::test]
async fn a_flood_of_empty_data_frames_is_cut_and_counted() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let addr = daemon.listen_addr;
    let mut post = request_block("t", "/echo");
    post[0] = 0x83; // :method POST
    let mut flood = frame(HEADERS, END_HEADERS, 1, &post);
    for _ in 0..1_000 {
        flood.extend(frame(DATA, 0, 1, &[]));
    }
    let answer = attack_while_served(addr, flood).await;
    assert_eq!(answer, Some(ENHANCE_YOUR_CALM));
    assert_eq!(closed(&daemon, "data_flood").await, 1.0);

    // A body of one byte, then an empty frame that ends it: answered, nothing counted.
    let mut stream = raw_h2(addr, &[]).await;
    let mut out = frame(HEADERS, END_HEADERS, 1, &post);
    out.extend(frame(DATA, 0, 1, b"a"));
    out.extend(frame(DATA, END_STREAM, 1, &[]));
    stream.write_all(&out).await.unwrap();
    assert_eq!(first_answer(&mut stream).await, Some((HEADERS, 0x88))); // :status 200
    assert_eq!(closed(&daemon, "data_flood").await, 1.0);
    daemon.shutdown().await;
}

/// A `PING` acknowledgement the balancer never asked for is a warning in h2's log: a client
/// sending them would write the balancer's log at will, a line per 17 bytes. The daemon's log
/// (at `info`) holds none of them.
#[tokio::test]
async fn unsolicited_ping_acks_do_not_write_the_log() {
    use crate::support::process::{Lb, temp_dir};
    let dir = temp_dir("h2-ping-acks");
    let config = dir.join("lb.yaml");
    let yaml = "server:\n  listen: 127.0.0.1:0\n  h2c: true\nbackends:\n  - address: 127.0.0.1:9\n";
    std::fs::write(&config, yaml).unwrap();
    let lb = Lb::start_logged(&config, &dir.join("lb.log")).await;
    let mut stream = raw_h2(lb.lb.listen, &[]).await;
    let mut out = frame(SETTINGS, 0x1, 0, &[]);
    for _ in 0..1_000 {
        out.extend(frame(PING, 0x1, 0, b"unasked!"));
    }
    // A PING of the client's own last: its answer shows the flood was read.
    out.extend(frame(PING, 0, 0, b"lastping"));
    stream.write_all(&out).await.unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    while !frames_in(&bytes).contains(&(PING, 0, b"lastping".as_slice())) {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(read @ 1..)) => bytes.extend_from_slice(&chunk[..read]),
            other => panic!("no answer to the last PING: {other:?}"),
        }
    }
    let log = lb.log();
    assert!(log.contains("lb started"), "{log}");
    assert!(!log.contains("PING"), "{log}");
    assert!(log.lines().count() < 5, "{log}");
}

/// Each connection closed for its client's doing is counted, but only
/// `logged_closes_per_second` are logged in any one second: a client opening connections only
/// to break them cannot fill the log.
#[tokio::test]
async fn closes_are_all_counted_and_a_few_a_second_logged() {
    use crate::support::process::{Lb, temp_dir};
    let dir = temp_dir("h2-close-log");
    let config = dir.join("lb.yaml");
    let yaml = "server:\n  listen: 127.0.0.1:0\n  h2c: true\n  http2:\n    logged_closes_per_second: 2\n\
                metrics:\n  listen: 127.0.0.1:0\nbackends:\n  - address: 127.0.0.1:9\n";
    std::fs::write(&config, yaml).unwrap();
    let lb = Lb::start_logged(&config, &dir.join("lb.log")).await;
    let started = tokio::time::Instant::now();
    for _ in 0..30 {
        let mut stream = raw_h2(lb.lb.listen, &[]).await;
        // A PING on a stream: a connection error (RFC 9113 §6.7).
        stream
            .write_all(&frame(PING, 0, 1, b"12345678"))
            .await
            .unwrap();
        assert_eq!(
            goaway_code(&mut stream, Duration::from_secs(10)).await,
            Some(0x1)
        );
    }
    let seconds = started.elapsed().as_secs() + 1;
    let metrics = lb.lb.metrics.unwrap();
    let counted = || async move {
        let text = scrape_at(metrics).await;
        let labels = ["reason=\"protocol_error\""];
        metric_sum(&text, "lb_http2_connections_closed_total", &labels)
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            counted().await == 30.0
        })
        .await
    );
    let log = lb.log();
    let lines = log.matches("HTTP/2 client connection closed").count() as u64;
    assert!(
        (1..=2 * seconds).contains(&lines),
        "{lines} lines in about {seconds} s: {log}"
    );
    assert!(log.contains("reason=\"protocol_error\""), "{log}");
}

#[tokio::test]
async fn a_client_that_never_opens_its_window_is_closed_and_counted() {
    let fleet = backends(1).await;
    let config = "server:\n  h2c: true\n  http2:\n    stalled_response_timeout: 1s\n";
    let daemon = balancer(&fleet, config).await;
    let addr = daemon.listen_addr;
    // SETTINGS_INITIAL_WINDOW_SIZE 0: no response byte may be sent until a WINDOW_UPDATE,
    // which never comes; the client keeps reading, so the socket itself never blocks.
    let mut stream = raw_h2(addr, &[(0x4, 0)]).await;
    let mut out = frame(SETTINGS, 0x1, 0, &[]); // ACK the balancer's
    out.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("t", "/bytes/1000000"),
    ));
    stream.write_all(&out).await.unwrap();
    served_meanwhile(addr).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            closed(&daemon, "flow_control_stall").await == 1.0
        })
        .await,
        "the stalled connection was not closed"
    );
    // The connection is gone, and so is its backend request.
    let _ = goaway_code(&mut stream, Duration::from_secs(5)).await;
    let mut byte = [0u8; 1];
    assert!(matches!(stream.read(&mut byte).await, Ok(0) | Err(_)));
    assert!(
        eventually(Duration::from_secs(10), || async {
            metric_sum(&scrape(&daemon).await, "lb_active_connections", &[]) == 0.0
        })
        .await,
        "the stalled response still holds its backend"
    );
    daemon.shutdown().await;
}

/// A header block of literal fields with literal names, written as a client that breaks the
/// rules would write them (HPACK itself carries any bytes).
fn literal_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00); // literal without indexing, new name
        hpack_int(0x00, 7, name.len(), &mut block);
        block.extend_from_slice(name.as_bytes());
        hpack_int(0x00, 7, value.len(), &mut block);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// The first answer to stream 1: its reset, the connection's `GOAWAY`, or the first byte of
/// its response head's block (`0x8c` is `:status 400` from HPACK's static table).
async fn first_answer(stream: &mut TcpStream) -> Option<(u8, u8)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        for (kind, id, payload) in frames_in(&bytes) {
            match kind {
                HEADERS if id == 1 => return Some((HEADERS, payload[0])),
                RST_STREAM if id == 1 => return Some((RST_STREAM, 0)),
                GOAWAY => return Some((GOAWAY, 0)),
                _ => {}
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(read @ 1..)) => bytes.extend_from_slice(&chunk[..read]),
            _ => return None,
        }
    }
}

#[tokio::test]
async fn malformed_requests_never_reach_the_backend() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let get = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "a.example"),
        (":path", "/x"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| [&get[..], extra].concat();
    let replaced = |at: usize, value: &'static str| {
        let mut fields = get.to_vec();
        fields[at].1 = value;
        fields
    };
    let method = |value| replaced(0, value);
    let authority = |value| replaced(2, value);
    let path = |value| replaced(3, value);
    let post_5 = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "a.example"),
        (":path", "/x"),
        ("content-length", "5"),
    ];
    type Fields = Vec<(&'static str, &'static str)>;
    let cases: Vec<(&str, Fields, &[u8])> = vec![
        (
            "CR LF in a value",
            with(&[("x-a", "1\r\nx-injected: 1")]),
            b"",
        ),
        ("LF in a value", with(&[("x-a", "1\nx-injected: 1")]), b""),
        ("NUL in a value", with(&[("x-a", "1\x002")]), b""),
        ("a space before a value", with(&[("x-a", " 1")]), b""),
        ("a tab after a value", with(&[("x-a", "1\t")]), b""),
        ("upper case in a name", with(&[("X-Upper", "1")]), b""),
        ("space in a name", with(&[("x a", "1")]), b""),
        (
            "transfer-encoding",
            with(&[("transfer-encoding", "chunked")]),
            b"",
        ),
        ("connection", with(&[("connection", "keep-alive")]), b""),
        ("te other than trailers", with(&[("te", "gzip")]), b""),
        ("a second :path", with(&[(":path", "/y")]), b""),
        ("an unknown pseudo-field", with(&[(":foo", "1")]), b""),
        (
            "a pseudo-field after a field",
            [&[("x-a", "1")], &get[..]].concat(),
            b"",
        ),
        ("GET *", [&get[..3], &[(":path", "*")]].concat(), b""),
        (
            "a Host other than :authority",
            with(&[("host", "b.example")]),
            b"",
        ),
        (
            "neither :authority nor Host",
            vec![get[0], get[1], get[3]],
            b"",
        ),
        (
            "more data than content-length",
            post_5.to_vec(),
            b"0123456789",
        ),
        ("less data than content-length", post_5.to_vec(), b"012"),
        // What would break the request line or the Host line an HTTP/1.1 backend reads.
        ("a space in :path", path("/x HTTP/1.1"), b""),
        ("CR LF in :path", path("/x\r\nx-injected: 1"), b""),
        ("an empty :path", path(""), b""),
        ("a :path without its slash", path("x"), b""),
        ("a space in :method", method("GET /y"), b""),
        ("an empty :method", method(""), b""),
        ("a space in :authority", authority("a.example b"), b""),
        (
            "CR LF in :authority",
            authority("a.example\r\nx-injected: 1"),
            b"",
        ),
        ("userinfo in :authority", authority("user@a.example"), b""),
        ("a colon in a name", with(&[("x:a", "1")]), b""),
        ("upgrade", with(&[("upgrade", "websocket")]), b""),
        ("keep-alive", with(&[("keep-alive", "5")]), b""),
        (
            "proxy-connection",
            with(&[("proxy-connection", "close")]),
            b"",
        ),
        (
            ":protocol without CONNECT",
            with(&[(":protocol", "websocket")]),
            b"",
        ),
    ];
    for (name, fields, data) in cases {
        let mut stream = raw_h2(daemon.listen_addr, &[]).await;
        let block = literal_block(&fields);
        let mut out = match data.is_empty() {
            true => frame(HEADERS, END_HEADERS | END_STREAM, 1, &block),
            false => frame(HEADERS, END_HEADERS, 1, &block),
        };
        if !data.is_empty() {
            out.extend(frame(DATA, END_STREAM, 1, data));
        }
        stream.write_all(&out).await.unwrap();
        let answer = first_answer(&mut stream).await;
        assert!(
            matches!(
                answer,
                Some((RST_STREAM | GOAWAY, _)) | Some((HEADERS, 0x8c))
            ),
            "{name}: {answer:?}"
        );
    }
    assert_eq!(fleet[0].stats().snapshot().requests, 0);
    // The listener still serves.
    served_meanwhile(daemon.listen_addr).await;
    daemon.shutdown().await;
}

/// The frames in `bytes`, as the balancer wrote them: (type, stream, payload).
pub(crate) fn frames_in(mut bytes: &[u8]) -> Vec<(u8, u32, &[u8])> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let Some(payload) = bytes.get(9..9 + len) else {
            break;
        };
        let stream = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) & 0x7fff_ffff;
        frames.push((bytes[3], stream, payload));
        bytes = &bytes[9 + len..];
    }
    frames
}

/// The error code of the first `GOAWAY` in `bytes`.
pub(crate) fn goaway_in(bytes: &[u8]) -> Option<u32> {
    frames_in(bytes)
        .into_iter()
        .find(|(kind, _, payload)| *kind == GOAWAY && payload.len() >= 8)
        .map(|(_, _, payload)| u32::from_be_bytes(payload[4..8].try_into().unwrap()))
}
