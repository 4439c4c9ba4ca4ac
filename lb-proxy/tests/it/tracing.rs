//! Distributed tracing against a fake OTLP collector (a small hyper server that decodes what the
//! exporter POSTs with the OTLP protobuf types): the span tree of a retried request (one server
//! span, a client child per attempt with distinct span ids, the trusted parent), exactly one
//! `traceparent` at the backend naming the attempt's span, the trace id in the access log, the
//! sampling rules (a trusted `sampled=0` parent is not exported, an untrusted `sampled=1`
//! forces nothing and does not set the trace id), a collector that is down or stalled delaying no
//! request (its spans dropped or failed, counted), a reload turning tracing on, and tracing off
//! passing the client's fields through untouched.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

use crate::support::admin::temp_dir;
use crate::support::fake_backend::{Behaviour, FakeBackend};
use crate::support::*;

/// What the fake collector does with an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Decodes it and answers 200.
    Accept,
    /// Reads it and never answers.
    Stall,
}

/// A fake OTLP/HTTP collector on a loopback port.
struct Collector {
    addr: SocketAddr,
    /// Every span received, with its resource's `service.name`.
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start(mode: Mode) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<(String, Span)>>> = Arc::default();
        let kept = spans.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let kept = kept.clone();
                    async move {
                        assert_eq!(request.uri().path(), "/v1/traces");
                        assert_eq!(request.headers()["content-type"], "application/x-protobuf");
                        let body = request.into_body().collect().await?.to_bytes();
                        if mode == Mode::Stall {
                            std::future::pending::<()>().await;
                        }
                        let export =
                            ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                        let mut kept = kept.lock().unwrap();
                        for resource in export.resource_spans {
                            let service = (resource.resource.iter())
                                .flat_map(|r| r.attributes.iter())
                                .find(|kv| kv.key == "service.name")
                                .map(text)
                                .unwrap_or_default();
                            for scope in resource.scope_spans {
                                for span in scope.spans {
                                    kept.push((service.clone(), span));
                                }
                            }
                        }
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector { addr, spans, task }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The spans of trace `trace_id` received so far.
    fn trace(&self, trace_id: &[u8]) -> Vec<Span> {
        (self.spans.lock().unwrap().iter())
            .filter(|(_, span)| span.trace_id == trace_id)
            .map(|(_, span)| span.clone())
            .collect()
    }

    /// Waits (bounded) until trace `trace_id` has `count` spans, and returns them.
    async fn wait_trace(&self, trace_id: &[u8], count: usize) -> Vec<Span> {
        let arrived = eventually(Duration::from_secs(10), || async {
            self.trace(trace_id).len() >= count
        })
        .await;
        let spans = self.trace(trace_id);
        assert!(arrived, "{} spans of {count}: {spans:?}", spans.len());
        spans
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key == key).map(text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

/// The `tracing` section, exporting to `endpoint` quickly.
fn tracing_section(endpoint: &str, more: &str) -> String {
    format!(
        "tracing:\n  endpoint: {endpoint}\n  batch_interval: 20ms\n  service_name: edge\n{more}"
    )
}

/// `GET path` from the loopback address `from` (127.0.0.x: trusted or not), with extra header
/// lines; the raw answer.
async fn get_from(from: [u8; 4], to: SocketAddr, path: &str, headers: &str) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The `traceparent` values in the heads a fake backend received.
fn traceparents(backend: &FakeBackend) -> Vec<String> {
    (backend.received_text().lines())
        .filter_map(|line| line.strip_prefix("traceparent: "))
        .map(str::to_owned)
        .collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_is_one_server_span_with_a_child_per_attempt() {
    let collector = Collector::start(Mode::Accept).await;
    // Each backend resets its first connection and answers on the next: three attempts, in
    // whichever order the balancer picks them.
    let script = vec![Behaviour::ResetBeforeHead, Behaviour::Respond("ok")];
    let (a, b) = (
        FakeBackend::start(script.clone()).await,
        FakeBackend::start(script).await,
    );
    let log = temp_dir("trace-log").join("access.log");
    let extra = format!(
        "server:\n  trusted_proxies: [127.0.0.1/32]\nretry:\n  max_attempts: 3\n  base_delay: 1ms\n  \
         max_delay: 2ms\n  retry_on: [connect_error, reset]\ncircuit_breaker:\n  enabled: false\n\
         access_log:\n  target: file\n  path: {}\n{}",
        log.display(),
        tracing_section(&collector.endpoint(), "")
    );
    let yaml = config_yaml(&[a.spec("a"), b.spec("b")], &extra);
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();

    let sent = format!("traceparent: 00-{TRACE}-{PARENT}-01\r\ntracestate: congo=t61rcWkgMzE\r\n");
    let answer = get_from([127, 0, 0, 1], daemon.listen_addr, "/items?secret=1", &sent).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let spans = collector.wait_trace(&unhex(TRACE), 4).await;
    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    let clients: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!((servers.len(), clients.len()), (1, 3), "{spans:?}");
    let server = servers[0];
    assert_eq!(
        server.parent_span_id,
        unhex(PARENT),
        "the trusted client's span is the parent"
    );
    assert_eq!(server.name, "GET");
    assert_eq!(server.trace_state, "congo=t61rcWkgMzE");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/items"),
        ("url.scheme", "http"),
        ("server.address", "shop.test"),
        ("server.port", "80"),
        ("client.address", "127.0.0.1"),
        ("network.protocol.version", "1.1"),
        ("http.response.status_code", "200"),
        ("lb.route", "default"),
        ("lb.pool", "default"),
        ("lb.attempts", "3"),
    ] {
        assert_eq!(
            attribute(server, key).as_deref(),
            Some(value),
            "{key}: {server:?}"
        );
    }
    assert!(
        attribute(server, "url.query").is_none(),
        "the query may hold secrets"
    );
    assert_ne!(
        server.status.as_ref().map(|s| s.code),
        Some(SpanStatus::Error as i32)
    );

    let mut ids: Vec<Vec<u8>> = clients.iter().map(|s| s.span_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each attempt has a span id of its own");
    let mut attempts: Vec<String> = clients
        .iter()
        .filter_map(|s| attribute(s, "lb.attempt"))
        .collect();
    attempts.sort();
    assert_eq!(attempts, ["1", "2", "3"]);
    for client in &clients {
        assert_eq!(client.parent_span_id, server.span_id);
        assert!(client.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(client.end_time_unix_nano <= server.end_time_unix_nano);
        let backend = attribute(client, "lb.backend").unwrap();
        assert!(backend == "a" || backend == "b", "{backend}");
        let port = attribute(client, "server.port").unwrap();
        assert!(
            [a.addr().port(), b.addr().port()]
                .map(|p| p.to_string())
                .contains(&port)
        );
        match attribute(client, "lb.attempt").as_deref() {
            Some("3") => {
                assert_eq!(
                    attribute(client, "http.response.status_code").as_deref(),
                    Some("200")
                );
                assert_eq!(
                    attribute(client, "http.request.resend_count").as_deref(),
                    Some("2")
                );
            }
            _ => {
                assert!(attribute(client, "error.type").is_some(), "{client:?}");
                assert!(attribute(client, "lb.retry.reason").is_some(), "{client:?}");
                assert_eq!(
                    client.status.as_ref().map(|s| s.code),
                    Some(SpanStatus::Error as i32)
                );
            }
        }
    }

    // Every attempt's head carried exactly one traceparent, naming that attempt's span, and
    // the tracestate; never the client's parent.
    let mut upstream: Vec<String> = traceparents(&a);
    upstream.extend(traceparents(&b));
    assert_eq!(upstream.len(), 3, "one per attempt: {upstream:?}");
    let mut named: Vec<Vec<u8>> = (upstream.iter())
        .map(|value| {
            assert_eq!(&value[..36], format!("00-{TRACE}-"));
            assert!(value.ends_with("-01"), "{value}");
            unhex(&value[36..52])
        })
        .collect();
    named.sort();
    assert_eq!(named, ids);
    for backend in [&a, &b] {
        let text = backend.received_text();
        assert!(
            !text.contains(PARENT),
            "the client's parent id went upstream: {text}"
        );
        assert_eq!(
            text.matches("tracestate: congo=t61rcWkgMzE\r\n").count(),
            text.matches("traceparent").count()
        );
    }

    // The access log line carries the trace id.
    let found = eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(&log)
            .is_ok_and(|text| text.contains(&format!("\"trace_id\":\"{TRACE}\"")))
    })
    .await;
    assert!(found, "{:?}", std::fs::read_to_string(&log));
    let exported = eventually(Duration::from_secs(10), || async {
        metric_sum(
            &scrape(&daemon).await,
            "lb_tracing_spans_exported_total",
            &[],
        ) >= 4.0
    })
    .await;
    assert!(exported);
    assert_eq!(collector.spans.lock().unwrap()[0].0, "edge");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_a_trusted_parent_and_no_untrusted_one() {
    let collector = Collector::start(Mode::Accept).await;
    let backend = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    // 127.0.0.2 is a trusted proxy, 127.0.0.1 is not; no new trace is sampled.
    let extra = format!(
        "server:\n  trusted_proxies: [127.0.0.2/32]\n{}",
        tracing_section(&collector.endpoint(), "  sampling_ratio: 0.0\n")
    );
    let daemon = lb_proxy::Daemon::start(parse(&config_yaml(&[backend.spec("b")], &extra)))
        .await
        .unwrap();
    let to = daemon.listen_addr;
    let untrusted_trace = "11111111111111111111111111111111";
    let sent = format!("traceparent: 00-{untrusted_trace}-{PARENT}-01\r\n");
    assert!(
        get_from([127, 0, 0, 1], to, "/untrusted", &sent)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let unsampled_trace = "22222222222222222222222222222222";
    let sent = format!("traceparent: 00-{unsampled_trace}-{PARENT}-00\r\n");
    assert!(
        get_from([127, 0, 0, 2], to, "/unsampled", &sent)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let sent = format!("traceparent: 00-{TRACE}-{PARENT}-01\r\n");
    assert!(
        get_from([127, 0, 0, 2], to, "/sampled", &sent)
            .await
            .starts_with("HTTP/1.1 200")
    );

    // The trusted sampled parent is exported; once it is, nothing else was.
    let spans = collector.wait_trace(&unhex(TRACE), 2).await;
    assert_eq!(spans.len(), 2);
    let all = collector.spans.lock().unwrap().len();
    assert_eq!(all, 2, "only the trusted, sampled request is exported");

    let upstream = traceparents(&backend);
    assert_eq!(upstream.len(), 3, "{upstream:?}");
    // The untrusted client set neither the trace id nor the sampled flag.
    assert!(!upstream[0].contains(untrusted_trace), "{}", upstream[0]);
    assert!(upstream[0].ends_with("-00"), "{}", upstream[0]);
    // The trusted unsampled parent's trace goes on, unsampled.
    assert!(
        upstream[1].starts_with(&format!("00-{unsampled_trace}-")),
        "{}",
        upstream[1]
    );
    assert!(upstream[1].ends_with("-00"), "{}", upstream[1]);
    assert!(upstream[2].starts_with(&format!("00-{TRACE}-")) && upstream[2].ends_with("-01"));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_or_duplicate_traceparents_start_a_new_trace_with_one_field_upstream() {
    let collector = Collector::start(Mode::Accept).await;
    let backend = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let extra = format!(
        "server:\n  trusted_proxies: [127.0.0.1/32]\n{}",
        tracing_section(&collector.endpoint(), "")
    );
    let daemon = lb_proxy::Daemon::start(parse(&config_yaml(&[backend.spec("b")], &extra)))
        .await
        .unwrap();
    let upper = TRACE.to_ascii_uppercase();
    let sent = [
        format!("traceparent: 00-{TRACE}-{PARENT}-01\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n"),
        format!("traceparent: ff-{TRACE}-{PARENT}-01\r\n"),
        format!("traceparent: 00-{upper}-{PARENT}-01\r\n"),
        format!("traceparent: 00-00000000000000000000000000000000-{PARENT}-01\r\n"),
        format!("traceparent: 00-{TRACE}-0000000000000000-01\r\n"),
        format!("traceparent: 00-{TRACE}-{PARENT}-1\r\n"),
        format!(
            "traceparent: 00-{TRACE}-{PARENT}-01\r\ntracestate: {}\r\n",
            "a=b,".repeat(200)
        ),
    ];
    for headers in &sent {
        let answer = get_from([127, 0, 0, 1], daemon.listen_addr, "/", headers).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let upstream = traceparents(&backend);
    assert_eq!(
        upstream.len(),
        sent.len(),
        "exactly one per request: {upstream:?}"
    );
    for (value, headers) in upstream[..6].iter().zip(&sent) {
        assert!(!value.contains(TRACE), "{headers} was honoured: {value}");
    }
    // A tracestate over 512 bytes is dropped; the valid parent beside it is kept.
    assert!(upstream[6].contains(TRACE));
    assert!(!backend.received_text().contains("tracestate"));
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_collector_delays_no_request_and_its_drops_are_counted() {
    let collector = Collector::start(Mode::Stall).await;
    let fleet = backends(1).await;
    let more = "  queue_size: 2\n  batch_size: 1\n  export_timeout: 30s\n";
    let daemon = balancer(&fleet, &tracing_section(&collector.endpoint(), more)).await;
    let client = client();
    for _ in 0..20 {
        assert_eq!(
            get(&client, daemon.listen_addr, "/").await.status,
            StatusCode::OK
        );
    }
    let dropped = eventually(Duration::from_secs(10), || async {
        metric_sum(
            &scrape(&daemon).await,
            "lb_tracing_spans_dropped_total",
            &[],
        ) > 0.0
    })
    .await;
    assert!(dropped, "{}", scrape(&daemon).await);
    // The stalled export holds the exporter's thread; requests still pass.
    assert_eq!(
        get(&client, daemon.listen_addr, "/").await.status,
        StatusCode::OK
    );
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_fails_exports_counted() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let fleet = backends(1).await;
    let endpoint = format!("http://{closed}/v1/traces");
    let more = "  batch_size: 1\n  export_timeout: 200ms\n";
    let daemon = balancer(&fleet, &tracing_section(&endpoint, more)).await;
    let client = client();
    for _ in 0..5 {
        assert_eq!(
            get(&client, daemon.listen_addr, "/").await.status,
            StatusCode::OK
        );
    }
    let failed = eventually(Duration::from_secs(10), || async {
        metric_sum(&scrape(&daemon).await, "lb_tracing_spans_failed_total", &[]) > 0.0
    })
    .await;
    assert!(failed, "{}", scrape(&daemon).await);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_tracing_on_and_off() {
    let collector = Collector::start(Mode::Accept).await;
    let backend = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let dir = temp_dir("trace-reload");
    let path = dir.join("lb.yaml");
    let trusted = "server:\n  trusted_proxies: [127.0.0.1/32]\n";
    let off = config_yaml(&[backend.spec("b")], trusted);
    std::fs::write(&path, &off).unwrap();
    let source = lb_proxy::ConfigSource::file(&path);
    let config = source.load().unwrap();
    let options = lb_proxy::StartOptions {
        source: Some(source),
        ..Default::default()
    };
    let daemon = lb_proxy::Daemon::start_with(config, options).await.unwrap();
    let sent = format!("traceparent: 00-{TRACE}-{PARENT}-01\r\n");
    get_from([127, 0, 0, 1], daemon.listen_addr, "/", &sent).await;
    // Off: the client's field passes through untouched.
    assert_eq!(traceparents(&backend), [format!("00-{TRACE}-{PARENT}-01")]);

    let on = format!("{trusted}{}", tracing_section(&collector.endpoint(), ""));
    std::fs::write(&path, config_yaml(&[backend.spec("b")], &on)).unwrap();
    let report = daemon.reloader().reload().await.unwrap();
    assert!(report.changes.contains(&"tracing".to_owned()), "{report:?}");
    assert!(report.needs_restart.is_empty(), "{report:?}");
    get_from([127, 0, 0, 1], daemon.listen_addr, "/", &sent).await;
    collector.wait_trace(&unhex(TRACE), 2).await;

    std::fs::write(&path, &off).unwrap();
    daemon.reloader().reload().await.unwrap();
    get_from([127, 0, 0, 1], daemon.listen_addr, "/", &sent).await;
    let upstream = traceparents(&backend);
    assert_eq!(upstream.len(), 3);
    assert_ne!(
        upstream[1], upstream[0],
        "on, the attempt's span is the parent"
    );
    assert_eq!(upstream[2], upstream[0], "off again, passed through");
    daemon.shutdown().await;
}

#[tokio::test]
async fn off_the_clients_fields_pass_through_untouched() {
    let backend = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let daemon = lb_proxy::Daemon::start(parse(&config_yaml(&[backend.spec("b")], "")))
        .await
        .unwrap();
    let sent = "traceparent: not-even-valid\r\ntraceparent: twice\r\ntracestate: x=1\r\n";
    get_from([127, 0, 0, 1], daemon.listen_addr, "/", sent).await;
    assert_eq!(traceparents(&backend), ["not-even-valid", "twice"]);
    assert!(backend.received_text().contains("tracestate: x=1\r\n"));
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_tracing_spans_exported_total", &[]),
        0.0
    );
    daemon.shutdown().await;
}

#[test]
fn hex_round_trips() {
    assert_eq!(hex(&unhex(TRACE)), TRACE);
}
