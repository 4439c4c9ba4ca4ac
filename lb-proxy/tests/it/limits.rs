//! Limits from the configuration: per-backend max_connections, request body size, slow headers.

use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn max_connections_is_enforced_under_concurrent_load() {
    let fleet = backends(1).await;
    let mut specs = specs(&fleet);
    specs[0].2 = 1;
    let yaml = config_yaml(&specs, "retry:\n  max_attempts: 1\n")
        .replace("    weight: 1\n", "    weight: 1\n    max_connections: 2\n");
    let daemon = lb_proxy::Daemon::start(parse(&yaml))
        .await
        .expect("balancer starts");
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = client.clone();
        let addr = daemon.listen_addr;
        tasks.push(tokio::spawn(async move {
            get(&client, addr, "/delay/300").await.status.as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let ok = statuses.iter().filter(|&&status| status == 200).count();
    let refused = statuses.iter().filter(|&&status| status == 503).count();
    assert_eq!(ok + refused, 10, "{statuses:?}");
    assert!(ok >= 2, "{statuses:?}");
    assert!(
        refused >= 1,
        "excess requests are refused at once, not queued: {statuses:?}"
    );
    assert!(
        fleet[0].stats().snapshot().max_in_flight <= 2,
        "backend saw {} in flight",
        fleet[0].stats().snapshot().max_in_flight
    );
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_active_connections", &["backend=\"b0\""]),
        0.0,
        "slots leaked"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  max_request_body_bytes: 1000\n").await;
    let client = client();
    let declared = Request::post(format!("http://{}/echo", daemon.listen_addr))
        .body(Full::new(Bytes::from(vec![b'x'; 1001])))
        .unwrap();
    assert_eq!(send(&client, declared).await.status, 413);
    let fits = Request::post(format!("http://{}/echo", daemon.listen_addr))
        .body(Full::new(Bytes::from(vec![b'x'; 1000])))
        .unwrap();
    assert_eq!(send(&client, fits).await.status, 200);

    // A chunked body has no declared length: it is cut off when it crosses the limit.
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let mut raw = b"POST /count HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"200\r\n");
        raw.extend_from_slice(&[b'y'; 0x200]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&raw).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_by_header_read_timeout() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  header_read_timeout: 200ms\n").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: slow\r\nx-a: 1\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the connection was not closed");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "closed too early: {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&buffer);
    assert!(
        !text.contains("200 OK"),
        "a slow request must not be served: {text}"
    );

    // The balancer still serves a normal client.
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 200);
    daemon.shutdown().await;
}

#[tokio::test]
async fn refused_backend_is_502_when_no_retry_is_left() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "retry:\n  max_attempts: 1\n").await;
    fleet.into_iter().next().unwrap().shutdown().await;
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(
        answer.text().contains("could not connect"),
        "{}",
        answer.text()
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn no_eligible_backend_is_503() {
    let fleet = backends(2).await;
    let extra = "health_check:\n  interval: 50ms\n  timeout: 40ms\n  unhealthy_threshold: 1\n  healthy_threshold: 1\n";
    let daemon = balancer(&fleet, extra).await;
    for backend in &fleet {
        backend.set_healthy(false);
    }
    let all_down = eventually(Duration::from_secs(5), || async {
        let metrics = scrape(&daemon).await;
        metric_sum(&metrics, "lb_backend_health_status", &[]) == 0.0
    })
    .await;
    assert!(all_down, "health checks never took both backends out");
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 503);
    assert!(answer.text().contains("no backend"), "{}", answer.text());
    let metrics = scrape(&daemon).await;
    assert!(metric_sum(&metrics, "lb_no_backend_total", &[]) >= 1.0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn slow_backend_is_504_within_the_request_timeout() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  request_timeout: 300ms\n").await;
    let answer = get(&client(), daemon.listen_addr, "/delay/5000").await;
    assert_eq!(answer.status, 504, "{}", answer.text());
    // A 504 at all shows the configured timer ended it: the backend answers after 5 s, before
    // the default request_timeout (30 s) would.
    daemon.shutdown().await;
}

#[tokio::test]
async fn client_that_disconnects_mid_request_leaks_no_slot() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(b"GET /delay/3000 HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let at_backend = eventually(Duration::from_secs(5), || async {
        fleet[0].stats().snapshot().in_flight == 1
    })
    .await;
    assert!(at_backend);
    let metrics = scrape(&daemon).await;
    assert_eq!(metric_sum(&metrics, "lb_active_connections", &[]), 1.0);
    drop(stream);
    let released = eventually(Duration::from_secs(2), || async {
        let metrics = scrape(&daemon).await;
        metric_sum(&metrics, "lb_active_connections", &[]) == 0.0
            && metric_sum(&metrics, "lb_client_connections", &[]) <= 1.0
    })
    .await;
    assert!(
        released,
        "in-flight slot not returned after the client went away"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn header_read_timeout_times_each_head_but_not_the_wait_between_requests() {
    let fleet = backends(1).await;
    let daemon = balancer(
        &fleet,
        "server:\n  header_read_timeout: 300ms\n  idle_release_after: 10s\n",
    )
    .await;

    // Silent from the accept: cut at the header read timeout.
    let mut silent = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "a silent connection was not closed");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A keep-alive connection may wait between requests longer than the header timeout
    // (idle_timeout governs that), but its second head is timed from its first byte.
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 4096];
    let n = stream.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a stalled second head was not cut");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(started.elapsed() >= Duration::from_millis(250));
    daemon.shutdown().await;
}
