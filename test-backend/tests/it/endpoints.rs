//! Every endpoint over real sockets on 127.0.0.1, with hyper's own client.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use test_backend::{BackendOptions, bind_and_spawn, fnv1a64, pattern_byte};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test]
async fn identity_names_backend_and_port() {
    let b = named("alpha").await;
    let r = get(b.addr(), "/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-backend"], "alpha");
    assert_eq!(
        text(&r),
        format!("hello from alpha (port {})\n", b.addr().port())
    );
    assert_eq!(b.name(), "alpha");
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let b = named("ka").await;
    let mut sender = connect(b.addr()).await;
    for _ in 0..3 {
        assert_eq!(
            send(&mut sender, Method::GET, "/", Bytes::new())
                .await
                .status,
            StatusCode::OK
        );
    }
    let s = b.stats().snapshot();
    assert_eq!((s.connections, s.requests, s.in_flight), (1, 3, 0));
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let b = named("h2").await;
    let stream = TcpStream::connect(b.addr()).await.expect("connect");
    let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{}/", b.addr()))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["x-backend"], "h2");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(body.starts_with(b"hello from h2"));
}

#[tokio::test]
async fn health_follows_set_healthy_and_is_counted_apart() {
    let b = named("h").await;
    let r = get(b.addr(), "/health").await;
    assert_eq!((r.status, text(&r)), (StatusCode::OK, "ok\n"));
    assert_eq!(r.headers["x-backend"], "h");
    b.set_healthy(false);
    assert!(!b.is_healthy());
    let r = get(b.addr(), "/health").await;
    assert_eq!(
        (r.status, text(&r)),
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
    );
    assert_eq!(r.headers["x-backend"], "h");
    b.set_healthy(true);
    assert_eq!(get(b.addr(), "/health").await.status, StatusCode::OK);
    let s = b.stats().snapshot();
    assert_eq!((s.health_checks, s.requests, s.max_in_flight), (3, 0, 0));
}

#[tokio::test]
async fn toggle_health_flips_periodically() {
    let b = start(BackendOptions {
        toggle_health: Some(Duration::from_millis(50)),
        ..BackendOptions::default()
    })
    .await;
    let addr = b.addr();
    for want in [
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::OK,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        eventually(&format!("/health {want}"), async || {
            get(addr, "/health").await.status == want
        })
        .await;
    }
}

#[tokio::test]
async fn status_returns_requested_code_or_400() {
    let b = named("s").await;
    for code in [200u16, 201, 204, 301, 404, 429, 500, 502, 503, 599] {
        let r = get(b.addr(), &format!("/status/{code}")).await;
        assert_eq!(r.status.as_u16(), code);
        assert_eq!(r.headers["x-backend"], "s");
        if code == 204 {
            assert!(r.body.is_empty());
        } else {
            assert_eq!(text(&r), format!("{code}\n"));
        }
    }
    for bad in ["/status/199", "/status/600", "/status/abc", "/status/"] {
        assert_eq!(
            get(b.addr(), bad).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn delay_waits_at_least_the_asked_time() {
    let b = named("d").await;
    let started = tokio::time::Instant::now();
    let r = get(b.addr(), "/delay/60").await;
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!((r.status, text(&r)), (StatusCode::OK, "delayed 60 ms\n"));
    assert_eq!(
        get(b.addr(), "/delay/60001").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn echo_reports_request_line_headers_and_body() {
    let b = named("e").await;
    let r = call(
        b.addr(),
        Method::POST,
        "/echo?x=1&y=2",
        Bytes::from_static(b"hello"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let t = text(&r);
    assert!(t.starts_with("POST /echo?x=1&y=2 HTTP/1.1\n"), "{t}");
    assert!(t.contains("\nx-test: yes\n"), "{t}");
    assert!(t.contains("\nhost: test\n"), "{t}");
    assert!(t.contains("\ncontent-length: 5\n"), "{t}");
    assert!(t.ends_with("\n\nhello"), "{t}");
    assert_eq!(b.stats().snapshot().posts, 1);
}

#[tokio::test]
async fn echo_body_streams_8_mib_back_unchanged() {
    let b = named("eb").await;
    let data = payload(8 << 20);
    let r = call(b.addr(), Method::PUT, "/echo/body", data.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-backend"], "eb");
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "echoed bytes differ");
}

#[tokio::test]
async fn echo_body_answers_each_chunk_before_the_request_ends() {
    use http_body_util::channel::Channel;
    let b = named("duplex").await;
    let stream = TcpStream::connect(b.addr()).await.expect("connect");
    let (mut sender, conn) =
        http1::handshake::<_, Channel<Bytes, std::convert::Infallible>>(TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let (mut tx, body) = Channel::new(1);
    let req = Request::post("/echo/body").body(body).expect("request");
    let resp = sender
        .send_request(req)
        .await
        .expect("response head before the body is sent");
    let mut resp_body = resp.into_body();
    // A buffering server would deadlock here: the request is never finished until we see the echo.
    for round in 0..4u8 {
        let chunk = Bytes::from(vec![round; 64 * 1024]);
        tx.send_data(chunk.clone()).await.expect("send chunk");
        let mut got = Vec::new();
        while got.len() < chunk.len() {
            let frame = resp_body
                .frame()
                .await
                .expect("echo frame")
                .expect("frame ok");
            got.extend_from_slice(frame.data_ref().expect("data frame"));
        }
        assert!(got[..] == chunk[..], "round {round} echoed different bytes");
    }
    drop(tx);
    assert!(
        resp_body.frame().await.is_none(),
        "echo ends with the request"
    );
}

#[tokio::test]
async fn count_reports_length_and_fnv1a() {
    let b = named("c").await;
    let data = payload((8 << 20) + 3);
    let r = call(b.addr(), Method::POST, "/count", data.clone()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        text(&r),
        format!("bytes={} fnv1a64={:016x}\n", data.len(), fnv1a64(&data))
    );
    let r = call(b.addr(), Method::POST, "/count", Bytes::new()).await;
    assert_eq!(text(&r), "bytes=0 fnv1a64=cbf29ce484222325\n");
}

#[tokio::test]
async fn bytes_sends_exact_length_of_pattern() {
    let b = named("by").await;
    for n in [0usize, 1, 251, 65_536 + 7, 3_000_000] {
        let r = get(b.addr(), &format!("/bytes/{n}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-length"], n.to_string().as_str());
        assert_eq!(r.body.len(), n);
        assert!(
            r.body
                .iter()
                .enumerate()
                .all(|(i, &x)| x == pattern_byte(i as u64)),
            "pattern mismatch for n = {n}"
        );
    }
    assert_eq!(
        get(b.addr(), "/bytes/1073741825").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn unreserved_paths_answer_what_the_root_answers() {
    let b = named("any").await;
    let root = get(b.addr(), "/").await;
    for path in [
        "/api/test",
        "/no/such/thing",
        "/health/x",
        "/status",
        "/echo/x?q=1",
    ] {
        let r = get(b.addr(), path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.headers["x-backend"], "any", "{path}");
        assert_eq!(r.body, root.body, "{path}");
    }
    let posted = call(b.addr(), Method::POST, "/api/test", payload(1000)).await;
    assert_eq!((posted.status, posted.body), (StatusCode::OK, root.body));
}

#[tokio::test]
async fn malformed_values_of_reserved_paths_are_400() {
    let b = named("bad").await;
    for path in [
        "/status/abc",
        "/status/",
        "/delay/x",
        "/delay/-1",
        "/bytes/-1",
        "/bytes/x",
    ] {
        let r = get(b.addr(), path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.headers["x-backend"], "bad", "{path}");
    }
}

#[tokio::test]
async fn fail_rate_one_fails_everything_but_health() {
    let b = start(BackendOptions {
        fail_rate: 1.0,
        ..BackendOptions::default()
    })
    .await;
    let mut sender = connect(b.addr()).await;
    for path in ["/", "/echo", "/bytes/10", "/status/200", "/nope"] {
        let r = send(&mut sender, Method::GET, path, Bytes::new()).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(r.headers["x-backend"], "backend");
    }
    assert_eq!(
        send(&mut sender, Method::GET, "/health", Bytes::new())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(b.stats().snapshot().injected_failures, 5);

    b.set_fail_rate(0.0);
    for _ in 0..50 {
        assert_eq!(
            send(&mut sender, Method::GET, "/", Bytes::new())
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(b.stats().snapshot().injected_failures, 5);
}

#[tokio::test]
async fn fail_rate_zero_never_fails() {
    let b = named("ok").await;
    let mut sender = connect(b.addr()).await;
    for _ in 0..200 {
        assert_eq!(
            send(&mut sender, Method::GET, "/", Bytes::new())
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(b.stats().snapshot().injected_failures, 0);
}

#[tokio::test]
async fn latency_delays_requests() {
    let b = start(BackendOptions {
        latency: Some(Duration::from_millis(40)),
        ..BackendOptions::default()
    })
    .await;
    let started = tokio::time::Instant::now();
    assert_eq!(get(b.addr(), "/").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn latency_changes_at_run_time() {
    let b = named("slow").await;
    assert_eq!(b.latency(), None);
    b.set_latency(Duration::from_millis(40));
    assert_eq!(b.latency(), Some(Duration::from_millis(40)));
    let started = tokio::time::Instant::now();
    assert_eq!(get(b.addr(), "/").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(40));
    // The health endpoint is never delayed: its answer does not wait for the 60 s.
    b.set_latency(Duration::from_secs(60));
    let health = tokio::time::timeout(Duration::from_secs(30), get(b.addr(), "/health"))
        .await
        .expect("/health is not delayed");
    assert_eq!(health.status, StatusCode::OK);
    b.set_latency(Duration::ZERO);
    assert_eq!(b.latency(), None);
}

#[tokio::test]
async fn in_flight_counts_concurrent_requests_and_drops_on_abort() {
    let b = named("if").await;
    // A completed request is no longer in flight by the time its response arrives.
    get(b.addr(), "/delay/1").await;
    assert_eq!(b.stats().snapshot().in_flight, 0);

    let addr = b.addr();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let mut sender = connect(addr).await;
                let req = Request::get("/delay/60000")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                // The server aborts this connection below; the result is irrelevant.
                let _ = sender.send_request(req).await;
            })
        })
        .collect();
    let stats = b.stats().clone();
    eventually("8 in flight", async || stats.snapshot().in_flight == 8).await;
    assert_eq!(stats.snapshot().max_in_flight, 8);

    b.shutdown().await;
    eventually("in_flight back to 0", async || {
        stats.snapshot().in_flight == 0
    })
    .await;
    assert_eq!(stats.snapshot().max_in_flight, 8);
    for client in clients {
        client.await.expect("client task");
    }
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let b = named("bye").await;
    let addr = b.addr();
    assert_eq!(get(addr, "/").await.status, StatusCode::OK);
    b.shutdown().await;
    let err = TcpStream::connect(addr)
        .await
        .expect_err("port should refuse connections");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn binding_a_used_port_is_an_error() {
    let b = named("first").await;
    let err = bind_and_spawn(b.addr(), BackendOptions::default())
        .await
        .expect_err("port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}
