//! gRPC and HTTP/2 towards backends, with a tonic client and test-backends that speak HTTP/2
//! only: unary, server-streaming and bidirectional calls pass through (h2c, and `h2` over TLS),
//! large trailers intact; the balancer's own failures are gRPC statuses; a client's cancel and
//! a call's deadline reach the backend; HTTP/1.1 and plain HTTP/2 requests reach an h2c
//! backend. How streams share connections is in `http2_upstream.rs`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use test_backend::grpc::EchoRequest;
use test_backend::{BackendOptions, RunningBackend};
use tokio::net::TcpStream;
use tonic::Code;

use crate::support::grpc::{
    self, bidi, concurrent_waits, connections, h2c_backend, h2c_balancer, says, server_streaming,
    unary, waits,
};
use crate::support::tls::{TempDir, TestCa};
use crate::support::*;

#[tokio::test]
async fn unary_streaming_and_bidi_calls_pass_through_to_an_h2c_backend() {
    let backend = h2c_backend("g0", None).await;
    let extra = "health_check:\n  interval: 100ms\n  timeout: 90ms\n";
    let daemon = h2c_balancer(std::slice::from_ref(&backend), extra).await;
    let mut client = grpc::connect(daemon.listen_addr).await;

    let reply = unary(&mut client, "Unary", tonic::Request::new(says("hello")))
        .await
        .expect("unary call");
    assert_eq!(reply.get_ref().message, "hello");
    assert_eq!(reply.get_ref().backend, "g0");
    assert_eq!(reply.metadata().get("x-backend").unwrap(), "g0");

    let request = EchoRequest {
        count: 300,
        ..says("many")
    };
    let mut replies = server_streaming(&mut client, "ServerStream", request)
        .await
        .expect("server-streaming call")
        .into_inner();
    let mut seen = 0;
    while let Some(reply) = replies.message().await.expect("a reply") {
        assert_eq!(reply.index, seen);
        seen += 1;
    }
    assert_eq!(seen, 300);

    // Each request's reply arrives before the next request is sent: nothing is buffered in
    // either direction.
    let (to_backend, rx) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    let requests = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|request| (request, rx))
    });
    to_backend.send(says("ping 0")).await.unwrap();
    let mut replies = bidi(&mut client, requests)
        .await
        .expect("bidi call")
        .into_inner();
    for round in 0..5u32 {
        let reply = replies
            .message()
            .await
            .expect("a reply")
            .expect("not the end");
        assert_eq!(reply.message, format!("ping {round}"));
        assert_eq!(reply.index, round);
        if round < 4 {
            to_backend
                .send(says(&format!("ping {}", round + 1)))
                .await
                .unwrap();
        }
    }
    drop(to_backend);
    assert!(replies.message().await.expect("a clean end").is_none());
    let trailers = replies.trailers().await.expect("trailers");
    assert!(trailers.is_some(), "the status came in trailers");

    // The HTTP/2-only backend is probed in HTTP/2: it answers the probes, and stays in.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let metrics = scrape(&daemon).await;
            metric_sum(&metrics, "lb_health_checks_total", &["result=\"success\""]) >= 2.0
        })
        .await
    );
    assert!(backend.stats().health_checks.load(Relaxed) >= 2);
    let reply = unary(&mut client, "Unary", tonic::Request::new(says("still")))
        .await
        .expect("still in rotation");
    assert_eq!(reply.get_ref().message, "still");
}

#[tokio::test]
async fn large_trailers_and_failure_statuses_pass_intact() {
    let backend = h2c_backend("g0", None).await;
    let daemon = h2c_balancer(std::slice::from_ref(&backend), "").await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let request = EchoRequest {
        trailer_bytes: 40_000,
        ..says("big")
    };
    let mut replies = server_streaming(&mut client, "BigTrailers", request)
        .await
        .expect("call")
        .into_inner();
    assert_eq!(replies.message().await.unwrap().unwrap().message, "big");
    assert!(replies.message().await.unwrap().is_none());
    let trailers = replies.trailers().await.unwrap().expect("trailers");
    let big = trailers.get("x-big").expect("the large trailer").as_bytes();
    assert_eq!(big.len(), 40_000);
    assert!(
        (big.iter().enumerate()).all(|(i, &b)| b == b'a' + (i % 26) as u8),
        "the trailer arrived altered"
    );

    let failing = EchoRequest {
        code: Code::NotFound as u32,
        ..says("no such thing")
    };
    let status = unary(&mut client, "Fail", tonic::Request::new(failing))
        .await
        .expect_err("fails");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such thing");
}

/// A raw HTTP/2 POST of a gRPC call to `path`: the status, the fields and the trailers.
async fn raw_grpc(addr: SocketAddr, path: &str) -> (u16, http::HeaderMap, Option<http::HeaderMap>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    (
        parts.status.as_u16(),
        parts.headers,
        collected.trailers().cloned(),
    )
}

#[tokio::test]
async fn the_balancer_answers_its_own_failures_as_grpc_statuses() {
    // A backend that is gone: every connect is refused.
    let gone = h2c_backend("gone", None).await;
    let addr = gone.addr();
    gone.shutdown().await;
    let yaml = config_yaml(
        &[("gone".to_owned(), addr, 1)],
        "server:\n  h2c: true\nupstream:\n  protocol: h2c\nretry:\n  max_attempts: 1\n",
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let (status, headers, trailers) = raw_grpc(daemon.listen_addr, "/lb.test.Echo/Unary").await;
    assert_eq!(status, 200, "a gRPC client gets HTTP 200");
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(headers["grpc-status"], "14", "UNAVAILABLE");
    let message = headers["grpc-message"].to_str().unwrap();
    assert!(message.contains("could not connect"), "{message}");
    assert!(trailers.is_none(), "a trailers-only answer");
    let mut client = grpc::connect(daemon.listen_addr).await;
    let status = unary(&mut client, "Unary", tonic::Request::new(says("x")))
        .await
        .expect_err("no backend");
    assert_eq!(status.code(), Code::Unavailable);

    // No route: UNIMPLEMENTED; a plain request still gets the plain answer.
    let routed = "server:\n  h2c: true\nupstream:\n  protocol: h2c\nroutes:\n  - match: {path_prefix: /lb.test.Echo/}\n";
    let backend = h2c_backend("g0", None).await;
    let daemon = balancer(std::slice::from_ref(&backend), routed).await;
    let (status, headers, _) = raw_grpc(daemon.listen_addr, "/other.Service/Call").await;
    assert_eq!(
        (status, headers["grpc-status"].as_bytes()),
        (200, &b"12"[..])
    );
    let answer = get(&crate::support::client(), daemon.listen_addr, "/other").await;
    assert_eq!(answer.status, 404);
}

#[tokio::test]
async fn a_deadline_passed_is_deadline_exceeded_and_cancels_the_backends_call() {
    let backend = h2c_backend("g0", None).await;
    let extra = "server:\n  request_timeout: 300ms\n";
    let daemon = h2c_balancer(std::slice::from_ref(&backend), extra).await;
    let mut client = grpc::connect(daemon.listen_addr).await;

    // The call's own deadline (grpc-timeout), shorter than the balancer's.
    let mut request = tonic::Request::new(waits(10_000));
    request.set_timeout(Duration::from_millis(100));
    let status = unary(&mut client, "Wait", request)
        .await
        .expect_err("too slow");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // The balancer's own request timeout.
    let status = unary(&mut client, "Wait", tonic::Request::new(waits(10_000)))
        .await
        .expect_err("too slow");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // Both calls were cancelled at the backend (RST_STREAM), not left running.
    let cancelled = || backend.stats().grpc_cancelled.load(Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async { cancelled() == 2 }).await,
        "cancelled at the backend: {}",
        cancelled()
    );
}

#[tokio::test]
async fn a_client_that_cancels_cancels_the_backends_call() {
    let backend = h2c_backend("g0", None).await;
    let daemon = h2c_balancer(std::slice::from_ref(&backend), "").await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let calls = || backend.stats().grpc_calls.load(Relaxed);
    let call = unary(&mut client, "Wait", tonic::Request::new(waits(30_000)));
    tokio::select! {
        _ = call => panic!("the call should still be waiting"),
        _ = async {
            while calls() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } => {}
    }
    // The call's future is dropped: the client resets its stream.
    let cancelled = || backend.stats().grpc_cancelled.load(Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async { cancelled() == 1 }).await,
        "the backend's call was not cancelled"
    );
    // The stream's slot came back.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let metrics = scrape(&daemon).await;
            metric_sum(&metrics, "lb_active_connections", &["backend=\"g0\""]) == 0.0
        })
        .await
    );
}

#[tokio::test]
async fn http1_and_plain_http2_requests_reach_an_h2c_backend() {
    let backend = h2c_backend("g0", None).await;
    let daemon = h2c_balancer(std::slice::from_ref(&backend), "").await;
    // HTTP/1.1 from the client; HTTP/2 to the backend.
    let answer = get(&client(), daemon.listen_addr, "/echo").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().starts_with("GET /echo HTTP/2.0"),
        "{}",
        answer.text()
    );
    assert!(answer.text().contains("x-forwarded-for: 127.0.0.1"));
    // A body both ways, large enough to stream.
    let body = Bytes::from(vec![b'x'; 300_000]);
    let request = http::Request::post(format!("http://{}/count", daemon.listen_addr))
        .body(http_body_util::Full::new(body.clone()))
        .unwrap();
    let answer = send(&client(), request).await;
    let expected = format!("bytes=300000 fnv1a64={:016x}", test_backend::fnv1a64(&body));
    assert_eq!(answer.text().trim(), expected);

    // hyper's HTTP/2 client, plain requests.
    let stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    for path in ["/", "/bytes/100000"] {
        let request = http::Request::get(format!("http://{}{path}", daemon.listen_addr))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-backend"], "g0");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if path == "/bytes/100000" {
            assert_eq!(body.len(), 100_000);
        }
    }
    assert_eq!(
        connections(&backend),
        1,
        "every request shared one connection"
    );
}

/// A test-backend speaking HTTP/2 over TLS (ALPN `h2` alone), or HTTP/1.1 alone when
/// `http1_only`.
async fn tls_backend(ca: &TestCa, http1_only: bool) -> RunningBackend {
    let leaf = ca.leaf(&["grpc.internal"]);
    let tls = test_backend::tls_config(leaf.cert.as_bytes(), leaf.key.as_bytes(), None).unwrap();
    let mut tls = std::sync::Arc::unwrap_or_clone(tls);
    if http1_only {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    let options = BackendOptions {
        name: "secure".to_owned(),
        tls: Some(std::sync::Arc::new(tls)),
        http2_only: !http1_only,
        ..BackendOptions::default()
    };
    test_backend::bind_and_spawn(([127, 0, 0, 1], 0).into(), options)
        .await
        .unwrap()
}

#[tokio::test]
async fn grpc_calls_reach_an_h2_backend_over_tls_and_no_h2_fails_clearly() {
    let (dir, ca) = (TempDir::new("h2up"), TestCa::new("grpc ca"));
    let ca_file = dir.write("ca.pem", &ca.pem);
    let backend = tls_backend(&ca, false).await;
    let extra = format!(
        "server:\n  h2c: true\nupstream:\n  protocol: h2\n  tls: {{sni: grpc.internal, ca_file: {}}}\n",
        ca_file.display()
    );
    let daemon = balancer(std::slice::from_ref(&backend), &extra).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let reply = unary(&mut client, "Unary", tonic::Request::new(says("over tls")))
        .await
        .expect("unary over h2");
    assert_eq!(reply.get_ref().message, "over tls");
    let request = EchoRequest {
        count: 20,
        ..says("s")
    };
    let replies = server_streaming(&mut client, "ServerStream", request)
        .await
        .expect("streaming over h2")
        .into_inner();
    assert_eq!(replies.count().await, 20);
    let (to_backend, rx) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    let requests = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|request| (request, rx))
    });
    to_backend.send(says("tls ping")).await.unwrap();
    let mut replies = bidi(&mut client, requests).await.unwrap().into_inner();
    assert_eq!(
        replies.message().await.unwrap().unwrap().message,
        "tls ping"
    );
    drop(to_backend);
    assert!(replies.message().await.unwrap().is_none());
    assert_eq!(
        connections(&backend),
        1,
        "the calls shared one TLS connection"
    );

    // A backend that will not speak h2 by ALPN: the call fails, nothing goes in HTTP/1.1.
    let old = tls_backend(&ca, true).await;
    let daemon = balancer(std::slice::from_ref(&old), &extra).await;
    let mut client = grpc::connect(daemon.listen_addr).await;
    let status = unary(&mut client, "Unary", tonic::Request::new(says("x")))
        .await
        .expect_err("no h2");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(old.stats().grpc_calls.load(Relaxed), 0);
    let metrics = scrape(&daemon).await;
    assert!(
        metric_sum(
            &metrics,
            "lb_upstream_tls_errors_total",
            &["backend=\"secure\""]
        ) >= 1.0
    );
}

#[tokio::test]
async fn a_reload_that_removes_an_h2_backend_lets_its_streams_finish() {
    let (leaving, staying) = (
        h2c_backend("leaving", None).await,
        h2c_backend("staying", None).await,
    );
    let fleet = [leaving, staying];
    let all = specs(&fleet);
    let extra = "server:\n  h2c: true\nupstream:\n  protocol: h2c\n";
    let (daemon, path) = crate::reload::from_file("h2-leave", &config_yaml(&all[..1], extra)).await;
    let waiting = tokio::spawn(concurrent_waits(daemon.listen_addr, 1, 800));
    let mut client = grpc::connect(daemon.listen_addr).await;
    // The long call is open on `leaving` when it leaves.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let metrics = scrape(&daemon).await;
            metric_sum(&metrics, "lb_active_connections", &["backend=\"leaving\""]) == 1.0
        })
        .await
    );
    crate::support::admin::write_file(&path, &config_yaml(&all[1..], extra));
    daemon.reloader().reload().await.expect("reload applies");
    let reply = unary(&mut client, "Unary", tonic::Request::new(says("after")))
        .await
        .expect("served by the backend that stays");
    assert_eq!(reply.get_ref().backend, "staying");
    // The stream open on the backend that left ran to its end, and then its connection closed.
    waiting.await.expect("the open call finished");
    let open = || fleet[0].stats().open_connections.load(Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async { open() == 0 }).await,
        "the connection to the backend that left is still open"
    );
    assert_eq!(fleet[1].stats().open_connections.load(Relaxed), 1);
}

/// An HTTP/2 backend (h2c) of the h2 crate that resets the first `refuse` streams with
/// `reason` and answers the others 200; the count of streams it saw.
async fn resetting_backend(
    refuse: usize,
    reason: h2::Reason,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    let index = counter.fetch_add(1, Relaxed);
                    if index < refuse {
                        respond.send_reset(reason);
                        continue;
                    }
                    let response = http::Response::new(());
                    let mut body = respond.send_response(response, false).unwrap();
                    body.send_data(Bytes::from_static(b"answered"), true)
                        .unwrap();
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_and_a_reset_one_is_not() {
    // REFUSED_STREAM: the backend never processed the POST, so it goes again.
    let (addr, seen) = resetting_backend(1, h2::Reason::REFUSED_STREAM).await;
    let yaml = config_yaml(
        &[("fake".to_owned(), addr, 1)],
        "upstream:\n  protocol: h2c\n",
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let request = http::Request::post(format!("http://{}/call", daemon.listen_addr))
        .body(http_body_util::Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let answer = send(&crate::support::client(), request).await;
    assert_eq!(
        (answer.status.as_u16(), answer.text().as_str()),
        (200, "answered")
    );
    assert_eq!(seen.load(Relaxed), 2);

    // INTERNAL_ERROR after the request arrived: it may have been processed; a POST is not
    // sent twice.
    let (addr, seen) = resetting_backend(1, h2::Reason::INTERNAL_ERROR).await;
    let yaml = config_yaml(
        &[("fake".to_owned(), addr, 1)],
        "upstream:\n  protocol: h2c\n",
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let request = http::Request::post(format!("http://{}/call", daemon.listen_addr))
        .body(http_body_util::Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let answer = send(&crate::support::client(), request).await;
    assert_eq!(answer.status, 502);
    assert_eq!(seen.load(Relaxed), 1, "the POST was not sent again");
}
