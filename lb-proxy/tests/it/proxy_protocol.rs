//! The PROXY protocol on the client listener, end to end over raw sockets: v1 and v2 headers
//! from a trusted peer set the client address the backend sees (`X-Forwarded-For`); a header
//! from an untrusted peer, a malformed, truncated or oversized one, or one that never ends
//! closes the connection; v2 `LOCAL` keeps the socket's address; PROXY and TLS together.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::fake_backend::read_until_closed;
use crate::support::tls::*;
use crate::support::*;
use lb_proxy::proto::proxy_protocol::write_v2;

const TRUSTED: &str = "server:\n  proxy_protocol: accept\n  trusted_proxies: [127.0.0.1]\n";
const UNTRUSTED: &str = "server:\n  proxy_protocol: accept\n  trusted_proxies: [10.0.0.0/8]\n";

fn v2(source: &str, destination: &str) -> Vec<u8> {
    let mut header = Vec::new();
    let (source, destination): (SocketAddr, SocketAddr) =
        (source.parse().unwrap(), destination.parse().unwrap());
    write_v2(&mut header, Some((source, destination)));
    header
}

/// Sends `start` then a request for `/echo` in one write, and returns the whole answer (the
/// connection closes after it).
async fn echo_after(daemon: &lb_proxy::Daemon, start: &[u8]) -> String {
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let mut wire = start.to_vec();
    wire.extend_from_slice(b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(&wire).await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await;
    answer.to_ascii_lowercase()
}

fn forwarded_for(answer: &str) -> Vec<&str> {
    answer
        .lines()
        .filter_map(|line| line.strip_prefix("x-forwarded-for: "))
        .collect()
}

#[tokio::test]
async fn a_trusted_peer_names_the_client_in_v1_and_v2() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, TRUSTED).await;
    let cases: [(Vec<u8>, &str); 4] = [
        (
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n".to_vec(),
            "203.0.113.7",
        ),
        (
            b"PROXY TCP6 2001:db8::7 ::1 40000 443\r\n".to_vec(),
            "2001:db8::7",
        ),
        (v2("198.51.100.9:1234", "10.0.0.1:80"), "198.51.100.9"),
        // No header at all from a trusted peer: its own address.
        (Vec::new(), "127.0.0.1"),
    ];
    for (start, client) in cases {
        let answer = echo_after(&daemon, &start).await;
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert_eq!(forwarded_for(&answer), [client], "{answer}");
    }
    // v2 LOCAL (the layer-4 balancer's own health check) and v1 UNKNOWN: the socket's address.
    let mut local = Vec::new();
    write_v2(&mut local, None);
    for start in [local, b"PROXY UNKNOWN\r\n".to_vec()] {
        let answer = echo_after(&daemon, &start).await;
        assert_eq!(forwarded_for(&answer), ["127.0.0.1"], "{answer}");
    }
    let metrics = scrape(&daemon).await;
    for (result, count) in [
        ("proxied", 3.0),
        ("absent", 1.0),
        ("local", 1.0),
        ("unknown", 1.0),
    ] {
        let label = format!("result=\"{result}\"");
        assert_eq!(
            metric_sum(&metrics, "lb_proxy_protocol_headers_total", &[&label]),
            count,
            "{result}: {metrics}"
        );
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_header_byte_by_byte_is_read_whole_and_the_request_behind_it_kept() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, TRUSTED).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let mut wire = v2("192.0.2.1:5", "192.0.2.2:6");
    wire.extend_from_slice(b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    for byte in wire {
        stream.write_all(&[byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert_eq!(
        forwarded_for(&answer.to_ascii_lowercase()),
        ["192.0.2.1"],
        "{answer}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_peer_that_sends_a_header_is_cut_off() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, UNTRUSTED).await;
    for start in [
        b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n".to_vec(),
        v2("203.0.113.7:1", "10.0.0.1:2"),
    ] {
        let answer = echo_after(&daemon, &start).await;
        assert_eq!(answer, "", "an answer to a spoofed client");
    }
    // Without a header it is an ordinary client.
    let answer = echo_after(&daemon, b"").await;
    assert_eq!(forwarded_for(&answer), ["127.0.0.1"], "{answer}");
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(
            &metrics,
            "lb_proxy_protocol_headers_total",
            &["result=\"untrusted\""]
        ),
        2.0
    );
    assert_eq!(
        fleet[0]
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn malformed_truncated_and_oversized_headers_close_the_connection() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, TRUSTED).await;
    let mut oversized = v2("1.2.3.4:5", "6.7.8.9:10");
    oversized[14..16].copy_from_slice(&5000u16.to_be_bytes());
    for start in [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
        b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat(),
        oversized,
    ] {
        assert_eq!(echo_after(&daemon, &start).await, "", "{start:?}");
    }
    // Truncated: the peer closes in the middle of the header.
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream.write_all(b"PROXY TCP4 1.2.3.4 5.6").await.unwrap();
    stream.shutdown().await.unwrap();
    let closed = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed.closed && closed.text().is_empty());
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(
            &metrics,
            "lb_proxy_protocol_headers_total",
            &["result=\"malformed\""]
        ),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        fleet[0]
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_header_that_never_ends_is_cut_at_the_header_read_timeout() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, &format!("{TRUSTED}  header_read_timeout: 4s\n")).await;
    let started = tokio::time::Instant::now();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
    let closed = read_until_closed(&mut stream, Duration::from_secs(60)).await;
    assert!(closed.closed);
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    daemon.shutdown().await;
}

#[tokio::test]
async fn proxy_and_tls_on_one_listener() {
    let (fleet, dir, ca) = (
        backends(1).await,
        TempDir::new("proxy-tls"),
        TestCa::new("ca"),
    );
    let leaf = ca.leaf(&["site.test"]);
    dir.write("c.pem", &leaf.cert);
    dir.write("k.pem", &leaf.key);
    let server = format!(
        "{TRUSTED}{}",
        tls_section(&dir.0, &[("c.pem", "k.pem")], "")
    );
    let daemon = balancer(&fleet, &server).await;
    // The header and the ClientHello in one segment: the handshake gets the bytes after it.
    let tcp = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let mut prefixed = PrefixedWrites::new(tcp, v2("203.0.113.50:999", "10.0.0.1:443"));
    prefixed.hold = true;
    let name = rustls_pki_types::ServerName::try_from("site.test").unwrap();
    let connector = tokio_rustls::TlsConnector::from(client_config(&ca.pem));
    let mut stream = connector.connect(name, prefixed).await.unwrap();
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: site.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 16 * 1024];
    let read = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).to_ascii_lowercase();
    assert_eq!(forwarded_for(&answer), ["203.0.113.50"], "{answer}");
    assert!(answer.contains("x-forwarded-proto: https"), "{answer}");
    daemon.shutdown().await;
}

/// A stream that puts `prefix` before its first write, in the same write.
struct PrefixedWrites {
    inner: TcpStream,
    prefix: Vec<u8>,
    hold: bool,
}

impl PrefixedWrites {
    fn new(inner: TcpStream, prefix: Vec<u8>) -> Self {
        Self {
            inner,
            prefix,
            hold: false,
        }
    }
}

impl tokio::io::AsyncRead for PrefixedWrites {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PrefixedWrites {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.hold {
            // The first write goes out with the prefix, whole.
            this.hold = false;
            let mut both = std::mem::take(&mut this.prefix);
            both.extend_from_slice(data);
            let _ = this.inner.try_write(&both);
            return std::task::Poll::Ready(Ok(data.len()));
        }
        std::pin::Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
