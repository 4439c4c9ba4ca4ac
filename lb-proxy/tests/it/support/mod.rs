//! Shared helpers for lb-proxy's integration tests: real backends and a real balancer on
//! 127.0.0.1 port 0, a small HTTP client, metric scraping and bounded polling.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lb_core::config::{Config, Format};
use lb_proxy::Daemon;
use test_backend::{BackendOptions, RunningBackend};

pub mod admin;
pub mod etcd;
pub mod fake_backend;
pub mod grpc;
pub mod process;
pub mod raw;
pub mod tls;
pub mod websocket;

/// Starts `count` test backends named `b0`, `b1`, ...
pub async fn backends(count: usize) -> Vec<RunningBackend> {
    let mut started = Vec::new();
    for index in 0..count {
        started.push(backend(&format!("b{index}")).await);
    }
    started
}

/// Starts one test backend named `name` on a free loopback port.
pub async fn backend(name: &str) -> RunningBackend {
    backend_with(BackendOptions {
        name: name.to_owned(),
        ..BackendOptions::default()
    })
    .await
}

/// Starts one test backend with `options` on a free loopback port.
pub async fn backend_with(options: BackendOptions) -> RunningBackend {
    test_backend::bind_and_spawn(([127, 0, 0, 1], 0).into(), options)
        .await
        .expect("backend starts")
}

/// A YAML configuration over `backends` with `extra` sections appended; the proxy and metrics
/// listen on port 0; health checks are off unless `extra` turns them on.
pub fn config_yaml(backends: &[(String, SocketAddr, u32)], extra: &str) -> String {
    // Sections of `extra` that the harness also sets get the harness's lines merged in.
    let mut extra = extra.to_owned();
    let mut yaml = String::new();
    for section in ["server:\n", "metrics:\n"] {
        let line = "  listen: 127.0.0.1:0\n";
        if extra.starts_with(section) || extra.contains(&format!("\n{section}")) {
            extra = extra.replacen(section, &format!("{section}{line}"), 1);
        } else {
            yaml.push_str(section);
            yaml.push_str(line);
        }
    }
    if !extra.contains("health_check:") {
        yaml.push_str("health_check:\n  enabled: false\n");
    }
    yaml.push_str(&extra);
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    yaml.push_str("backends:\n");
    for (name, addr, weight) in backends {
        yaml.push_str(&format!(
            "  - name: {name}\n    address: {addr}\n    weight: {weight}\n"
        ));
    }
    yaml
}

/// Parses a test configuration, panicking with the errors if it is invalid.
pub fn parse(yaml: &str) -> Config {
    lb_core::config::parse(yaml, Format::Yaml, "test.yaml")
        .unwrap_or_else(|errors| panic!("{errors}\n---\n{yaml}"))
}

/// The (name, address, weight=1) triples of running backends.
pub fn specs(backends: &[RunningBackend]) -> Vec<(String, SocketAddr, u32)> {
    backends
        .iter()
        .map(|backend| (backend.name().to_owned(), backend.addr(), 1))
        .collect()
}

/// Starts a balancer over `backends` with `extra` configuration.
pub async fn balancer(backends: &[RunningBackend], extra: &str) -> Daemon {
    let yaml = config_yaml(&specs(backends), extra);
    Daemon::start(parse(&yaml)).await.expect("balancer starts")
}

/// `extra` for a balancer that speaks h2c on both sides (prior knowledge from clients).
pub const H2C_BOTH_WAYS: &str = "server:\n  h2c: true\nupstream:\n  protocol: h2c\n";

/// A balancer in front of the one hand-written backend at `addr`, named `name`, that sends
/// each request once (no retry), with `extra` configuration.
pub async fn balancer_to(name: &str, addr: SocketAddr, extra: &str) -> Daemon {
    let specs = [(name.to_owned(), addr, 1)];
    let extra = format!("retry:\n  max_attempts: 1\n{extra}");
    Daemon::start(parse(&config_yaml(&specs, &extra)))
        .await
        .expect("balancer starts")
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A response read in full.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// The `x-backend` header test backends set, or "" when absent.
    pub fn backend(&self) -> String {
        self.headers
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` and reads the whole answer.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Answer {
    let response: Response<_> = client.request(request).await.expect("request completes");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body completes").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET http://{addr}{path}`.
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> Answer {
    let request = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(client, request).await
}

/// Scrapes the daemon's metrics text.
pub async fn scrape(daemon: &Daemon) -> String {
    let client = client();
    let answer = get(
        &client,
        daemon.metrics_addr.expect("metrics enabled"),
        "/metrics",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.text()
}

/// Scrapes the metrics text at `addr` (`/metrics`).
pub async fn scrape_at(addr: SocketAddr) -> String {
    get(&client(), addr, "/metrics").await.text()
}

/// `GET /` on a new connection that closes after it; `Ok` for a 200 whose body ends with
/// `body_ends`, else what went wrong (connect, write, read, or the answer).
pub async fn get_on_new_connection(addr: SocketAddr, body_ends: &[u8]) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        (tokio::net::TcpStream::connect(addr).await).map_err(|e| format!("connect: {e}"))?;
    let request = b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";
    (stream.write_all(request).await).map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    (stream.read_to_end(&mut answer).await).map_err(|e| format!("read: {e}"))?;
    match answer.starts_with(b"HTTP/1.1 200 ") && answer.ends_with(body_ends) {
        true => Ok(()),
        false => Err(format!("answer: {:?}", String::from_utf8_lossy(&answer))),
    }
}

/// Parses `name{labels} value` lines into a map from the full series text to its value.
pub fn series(metrics: &str) -> HashMap<String, f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Sum of every series of metric `name` whose labels contain all of `labels` (`key="value"`).
pub fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    series(metrics)
        .iter()
        .filter(|(series, _)| {
            let base = series.split('{').next().unwrap_or("");
            base == name && labels.iter().all(|label| series.contains(label))
        })
        .map(|(_, value)| value)
        .sum()
}

/// Polls `check` every 20 ms until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether, within 5 s, no request is in flight to any backend and no client connection is open:
/// nothing leaked.
pub async fn drained(daemon: &Daemon) -> bool {
    eventually(Duration::from_secs(5), || async {
        let metrics = scrape(daemon).await;
        metric_sum(&metrics, "lb_active_connections", &[]) == 0.0
            && metric_sum(&metrics, "lb_client_connections", &[]) == 0.0
    })
    .await
}

/// Counts answers by backend name.
pub fn tally(answers: &[Answer]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for answer in answers {
        *counts.entry(answer.backend()).or_insert(0) += 1;
    }
    counts
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The value of header `name` (lower case) in a lower-cased response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}
