//! What passes through: methods, paths, headers (hop-by-hop removed, X-Forwarded-* set), and
//! large bodies both ways, intact.

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
    })
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_forwarded_headers_set() {
    let backends = backends(1).await;
    let daemon = balancer(&backends, "").await;
    let request = Request::get(format!("http://{}/echo?x=1&y=two", daemon.listen_addr))
        .header("host", "shop.example:8080")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9v")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 200);
    let echo = answer.text().to_ascii_lowercase();
    assert!(echo.contains("get /echo?x=1&y=two"), "{echo}");
    assert!(
        echo.contains("host: shop.example:8080"),
        "Host is kept: {echo}"
    );
    assert!(echo.contains("x-custom: kept"), "{echo}");
    // No trusted proxies: the balancer is the edge and replaces what the client claimed.
    assert!(echo.contains("x-forwarded-for: 127.0.0.1\n"), "{echo}");
    assert!(!echo.contains("203.0.113.9"), "{echo}");
    assert!(echo.contains("x-forwarded-proto: http"), "{echo}");
    assert!(
        echo.contains("x-forwarded-host: shop.example:8080"),
        "{echo}"
    );
    for gone in [
        "x-drop-me",
        "keep-alive:",
        "\nte:",
        "proxy-authorization",
        "trailers",
    ] {
        assert!(!echo.contains(gone), "{gone} should be stripped: {echo}");
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn large_upload_and_download_stream_intact() {
    let backends = backends(1).await;
    let daemon = balancer(&backends, "server:\n  max_request_body_bytes: 67108864\n").await;
    let client = client();

    let upload: Vec<u8> = (0..24 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let expected = fnv1a(&upload);
    let request = Request::post(format!("http://{}/echo/body", daemon.listen_addr))
        .body(Full::new(Bytes::from(upload)))
        .unwrap();
    let answer = send(&client, request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), 24 * 1024 * 1024);
    assert_eq!(fnv1a(&answer.body), expected, "upload echoed back intact");

    let direct = get(&client, backends[0].addr(), "/bytes/33554432").await;
    let proxied = get(&client, daemon.listen_addr, "/bytes/33554432").await;
    assert_eq!(proxied.status, 200);
    assert_eq!(proxied.body.len(), 33554432);
    assert_eq!(fnv1a(&proxied.body), fnv1a(&direct.body), "download intact");
    daemon.shutdown().await;
}

#[tokio::test]
async fn methods_and_statuses_pass_through() {
    let backends = backends(1).await;
    let daemon = balancer(&backends, "retry:\n  max_attempts: 1\n").await;
    let client = client();
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}/echo", daemon.listen_addr))
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let answer = send(&client, request).await;
        assert_eq!(answer.status, 200);
        assert!(answer.text().starts_with(method), "{}", answer.text());
    }
    for status in [201u16, 404, 418, 503] {
        let answer = get(&client, daemon.listen_addr, &format!("/status/{status}")).await;
        assert_eq!(answer.status.as_u16(), status);
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let backends = backends(2).await;
    let daemon = balancer(&backends, "server:\n  h2c: true\n").await;
    let h2: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        let answer = get(&h2, daemon.listen_addr, "/echo").await;
        assert_eq!(answer.status, 200);
        // The backend is reached over HTTP/1.1 with a Host taken from the h2 authority.
        let echo = answer.text().to_ascii_lowercase();
        assert!(echo.starts_with("get /echo http/1.1"), "{echo}");
        assert!(
            echo.contains(&format!("host: {}", daemon.listen_addr)),
            "{echo}"
        );
        seen.insert(answer.backend());
    }
    assert_eq!(
        seen.len(),
        2,
        "requests on one h2 connection are still balanced"
    );
    // Browsers split `Cookie` into one field per cookie over HTTP/2; HTTP/1.1 has one field.
    let crumbs = Request::get(format!("http://{}/echo", daemon.listen_addr))
        .header("cookie", "a=1")
        .header("accept", "*/*")
        .header("cookie", "b=2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let echo = send(&h2, crumbs).await.text().to_ascii_lowercase();
    let joined = echo
        .lines()
        .any(|line| line.trim_end() == "cookie: a=1; b=2");
    assert!(joined, "{echo}");
    assert_eq!(echo.matches("cookie:").count(), 1, "{echo}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn upstream_connections_are_reused_across_requests() {
    let backends = backends(1).await;
    let daemon = balancer(&backends, "").await;
    let client = client();
    for path in ["/", "/status/204", "/bytes/100000", "/", "/status/404"] {
        for _ in 0..10 {
            get(&client, daemon.listen_addr, path).await;
        }
    }
    let head = Request::head(format!("http://{}/", daemon.listen_addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&client, head).await;
    let stats = backends[0].stats().snapshot();
    assert_eq!(stats.requests, 51);
    assert_eq!(
        stats.connections, 1,
        "51 sequential requests, bodies read to the end, should share one upstream connection"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn h2c_is_refused_unless_enabled() {
    let backends = backends(1).await;
    let daemon = balancer(&backends, "").await;
    let h2: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let request = Request::get(format!("http://{}/", daemon.listen_addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let outcome = h2.request(request).await;
    assert!(
        outcome.is_err() || outcome.is_ok_and(|response| response.status() != 200),
        "an HTTP/1-only listener must not serve h2c"
    );
    assert_eq!(backends[0].stats().snapshot().requests, 0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_chunked_upload_of_many_small_chunks_arrives_whole() {
    let backends = backends(1).await;
    let daemon = balancer(&backends, "").await;
    let mut body = Vec::new();
    let mut wire = Vec::new();
    for index in 0..3000u32 {
        let chunk: Vec<u8> = (0..(index % 7 + 1))
            .map(|byte| (index + byte) as u8)
            .collect();
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(&chunk);
        wire.extend_from_slice(b"\r\n");
        body.extend_from_slice(&chunk);
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut request =
        b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    request.extend_from_slice(&wire);
    let answer = crate::support::fake_backend::raw_exchange(
        daemon.listen_addr,
        &request,
        std::time::Duration::from_secs(10),
    )
    .await;
    let text = answer.text();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let expected = format!("bytes={} fnv1a64={:016x}", body.len(), fnv1a(&body));
    assert!(
        text.trim_end().ends_with(&expected),
        "{text}\nwant {expected}"
    );
    daemon.shutdown().await;
}
