//! TLS and the PROXY protocol towards backends, against test-backends in HTTPS mode: requests
//! and health checks verified against a CA file for the configured SNI name, connections
//! pooled; a certificate that fails verification gives 502, a log line and a metric, and never
//! a request in plain text; mTLS; a PROXY v2 header naming the client on each new connection.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::tls::*;
use crate::support::*;
use lb_proxy::proto::proxy_protocol::{self as pp, Parsed, ProxyHeader};
use test_backend::{BackendOptions, RunningBackend};

/// A test-backend serving HTTPS with a certificate for `names` from `ca`, requiring client
/// certificates from `client_ca` when given.
async fn https_backend(
    name: &str,
    ca: &TestCa,
    names: &[&str],
    client_ca: Option<&TestCa>,
) -> RunningBackend {
    let leaf = ca.leaf(names);
    let tls = test_backend::tls_config(
        leaf.cert.as_bytes(),
        leaf.key.as_bytes(),
        client_ca.map(|ca| ca.pem.as_bytes()),
    )
    .unwrap();
    let options = BackendOptions {
        name: name.to_owned(),
        tls: Some(tls),
        ..BackendOptions::default()
    };
    test_backend::bind_and_spawn(([127, 0, 0, 1], 0).into(), options)
        .await
        .unwrap()
}

fn requests(backend: &RunningBackend) -> u64 {
    backend.stats().requests.load(Relaxed)
}

#[tokio::test]
async fn requests_and_health_checks_go_over_verified_tls_on_pooled_connections() {
    let (dir, ca) = (TempDir::new("up"), TestCa::new("backend ca"));
    let ca_file = dir.write("ca.pem", &ca.pem);
    let backend = https_backend("secure", &ca, &["api.internal"], None).await;
    let extra = format!(
        "upstream:\n  tls: {{sni: api.internal, ca_file: {}}}\nhealth_check:\n  interval: 100ms\n  timeout: 50ms\n",
        ca_file.display()
    );
    let daemon = balancer(std::slice::from_ref(&backend), &extra).await;
    let http = client();
    for _ in 0..5 {
        let answer = get(&http, daemon.listen_addr, "/echo").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.backend(), "secure");
        // The backend is told which host the client asked for, and that it came over http.
        assert!(
            answer
                .text()
                .to_ascii_lowercase()
                .contains("x-forwarded-proto: http")
        );
    }
    // One TLS connection carried the five requests (health checks open their own).
    let metrics = scrape(&daemon).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            let metrics = scrape(&daemon).await;
            metric_sum(&metrics, "lb_health_checks_total", &["result=\"success\""]) >= 2.0
        })
        .await,
        "{metrics}"
    );
    assert_eq!(requests(&backend), 5);
    let connections = backend.stats().connections.load(Relaxed);
    let probes = metric_sum(&scrape(&daemon).await, "lb_health_checks_total", &[]) as u64;
    assert!(
        connections <= probes + 2,
        "{connections} connections for {probes} probes"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_certificate_that_fails_verification_gives_502_never_plain_text() {
    let (dir, ca, other) = (
        TempDir::new("up-bad"),
        TestCa::new("trusted"),
        TestCa::new("other"),
    );
    let ca_file = dir.write("ca.pem", &ca.pem);
    let unknown = https_backend("unknown-ca", &other, &["api.internal"], None).await;
    let misnamed = https_backend("misnamed", &ca, &["other.internal"], None).await;
    let ip_only = https_backend("by-ip", &ca, &["127.0.0.1"], None).await;
    let tls = format!("{{sni: api.internal, ca_file: {}}}", ca_file.display());
    let yaml = format!(
        "health_check:\n  enabled: false\nretry:\n  max_attempts: 1\nserver:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\nbackends:\n  - {{name: unknown-ca, address: {}, tls: {tls}}}\n  - {{name: misnamed, address: {}, tls: {tls}}}\n  - {{name: by-ip, address: {}, tls: {{ca_file: {}}}}}\n",
        unknown.addr(),
        misnamed.addr(),
        ip_only.addr(),
        ca_file.display()
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(get(&http, daemon.listen_addr, "/").await.status.as_u16());
    }
    statuses.sort_unstable();
    // Round robin: the one with a good certificate for its IP answers, the others are 502.
    assert_eq!(statuses, [200, 502, 502]);
    assert_eq!(requests(&unknown) + requests(&misnamed), 0);
    assert_eq!(requests(&ip_only), 1);
    let metrics = scrape(&daemon).await;
    for (backend, reason) in [
        ("unknown-ca", "unknown_issuer"),
        ("misnamed", "name_mismatch"),
    ] {
        let labels = [
            format!("backend=\"{backend}\""),
            format!("reason=\"{reason}\""),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert_eq!(
            metric_sum(&metrics, "lb_upstream_tls_errors_total", &labels),
            1.0,
            "{metrics}"
        );
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let (dir, ca, clients) = (
        TempDir::new("mtls"),
        TestCa::new("server ca"),
        TestCa::new("client ca"),
    );
    let ca_file = dir.write("ca.pem", &ca.pem);
    let backend = https_backend("strict", &ca, &["api.internal"], Some(&clients)).await;
    let mine = clients.leaf(&["lb.internal"]);
    let cert = dir.write("lb.pem", &mine.cert);
    let key = dir.write("lb-key.pem", &mine.key);
    let without = format!(
        "retry:\n  max_attempts: 1\nupstream:\n  tls: {{sni: api.internal, ca_file: {}}}\n",
        ca_file.display()
    );
    let with = format!(
        "upstream:\n  tls: {{sni: api.internal, ca_file: {}, client_cert: {}, client_key: {}}}\n",
        ca_file.display(),
        cert.display(),
        key.display()
    );
    let http = client();
    let refused = balancer(std::slice::from_ref(&backend), &without).await;
    assert_eq!(get(&http, refused.listen_addr, "/").await.status, 502);
    refused.shutdown().await;
    let accepted = balancer(std::slice::from_ref(&backend), &with).await;
    assert_eq!(get(&http, accepted.listen_addr, "/").await.status, 200);
    accepted.shutdown().await;
}

#[tokio::test]
async fn a_missing_ca_file_stops_the_start() {
    let fleet = backends(1).await;
    let yaml = config_yaml(
        &specs(&fleet),
        "upstream:\n  tls: {ca_file: /nonexistent/lb-ca.pem}\n",
    );
    let error = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/lb-ca.pem"),
        "{error}"
    );
}

#[tokio::test]
async fn a_backend_sent_proxy_v2_learns_the_client_on_each_connection() {
    // A raw backend that reads the header, answers one request, and reports the header.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen_tx.clone();
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&chunk[..n]);
                    if find(&read, b"\r\n\r\n").is_some() {
                        break;
                    }
                }
                let Ok(Parsed::Complete { header, .. }) = pp::parse(&read) else {
                    let _ = seen.send(None);
                    return;
                };
                let _ = seen.send(Some(header));
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let yaml = format!(
        "health_check:\n  enabled: false\nserver:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\nbackends:\n  - {{address: {backend_addr}, proxy_protocol: v2}}\n"
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(daemon.listen_addr)
        .await
        .unwrap();
    let client_addr = stream.local_addr().unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let header = seen_rx.recv().await.unwrap().expect("a PROXY header");
    assert_eq!(
        header,
        ProxyHeader::Proxied {
            source: client_addr,
            destination: daemon.listen_addr
        }
    );
    daemon.shutdown().await;
}
