//! The request id: kept from a trusted client when it is a short safe token, replaced from an
//! untrusted one or when malformed or too long, unique across many requests, the same at the
//! backend, in the response and in the access log; off, nothing is added.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use crate::support::admin::temp_dir;
use crate::support::*;

const TRUSTED: &str = "server:\n  trusted_proxies: [127.0.0.1/32]\n";

/// `GET /echo` with `X-Request-Id: sent` (when given); the id in the response, and the ids
/// the backend saw (its echo lists the headers it got).
async fn exchange(addr: std::net::SocketAddr, sent: Option<&str>) -> (String, Vec<String>) {
    let mut request = Request::get(format!("http://{addr}/echo"));
    if let Some(sent) = sent {
        request = request.header("x-request-id", sent);
    }
    let answer = send(&client(), request.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let returned: Vec<_> = answer.headers.get_all("x-request-id").iter().collect();
    assert_eq!(
        returned.len(),
        1,
        "one id in the response: {:?}",
        answer.headers
    );
    let returned = returned[0].to_str().unwrap().to_owned();
    let upstream = answer
        .text()
        .lines()
        .filter_map(|line| line.strip_prefix("x-request-id: "))
        .map(str::to_owned)
        .collect();
    (returned, upstream)
}

fn generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_trusted_clients_id_is_kept() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, TRUSTED).await;
    let (returned, upstream) = exchange(daemon.listen_addr, Some("req-42.a_b:c")).await;
    assert_eq!(returned, "req-42.a_b:c");
    assert_eq!(upstream, ["req-42.a_b:c"]);
    daemon.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_clients_id_is_replaced() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let (returned, upstream) = exchange(daemon.listen_addr, Some("forged-by-client")).await;
    assert!(generated(&returned), "{returned}");
    assert_eq!(upstream, [returned]);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_malformed_or_long_id_is_replaced_even_from_a_trusted_client() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, TRUSTED).await;
    let long = "a".repeat(65);
    for sent in [
        "has space",
        "quote\"d",
        "semi;colon",
        "slash/ed",
        long.as_str(),
    ] {
        let (returned, upstream) = exchange(daemon.listen_addr, Some(sent)).await;
        assert!(generated(&returned), "{sent:?} gave {returned}");
        assert_eq!(upstream, [returned], "{sent:?}");
    }
    let edge = "a".repeat(64);
    let (returned, _) = exchange(daemon.listen_addr, Some(&edge)).await;
    assert_eq!(returned, edge);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_ids_are_unique_and_the_same_at_the_backend() {
    let fleet = backends(2).await;
    let daemon = balancer(&fleet, "").await;
    let mut seen = HashSet::new();
    for _ in 0..500 {
        let (returned, upstream) = exchange(daemon.listen_addr, None).await;
        assert!(generated(&returned), "{returned}");
        assert_eq!(upstream, std::slice::from_ref(&returned));
        assert!(seen.insert(returned), "a repeated id");
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn answers_without_a_backend_carry_the_id_too() {
    let fleet = backends(1).await;
    let extra = "routes:\n  - name: teapot\n    match: {path_prefix: /tea}\n    respond: {status: 418, body: tea}\n  - name: rest\n";
    let daemon = balancer(&fleet, extra).await;
    let answer = get(&client(), daemon.listen_addr, "/tea").await;
    assert_eq!(answer.status.as_u16(), 418);
    let id = answer
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(generated(id), "{id}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn ids_off_add_nothing_and_a_custom_header_is_used() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "request_id:\n  enabled: false\n").await;
    let answer = get(&client(), daemon.listen_addr, "/echo").await;
    assert!(answer.headers.get("x-request-id").is_none());
    assert!(!answer.text().contains("x-request-id"));
    daemon.shutdown().await;

    let daemon = balancer(&fleet, "request_id:\n  header: X-Correlation-Id\n").await;
    let answer = get(&client(), daemon.listen_addr, "/echo").await;
    let id = answer
        .headers
        .get("x-correlation-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(generated(id));
    assert!(answer.text().contains(&format!("x-correlation-id: {id}")));
    assert!(answer.headers.get("x-request-id").is_none());
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_the_id_the_client_got() {
    let fleet = backends(1).await;
    let path = temp_dir("request-id-log").join("access.log");
    let extra = format!("access_log:\n  target: file\n  path: {}\n", path.display());
    let daemon = balancer(&fleet, &extra).await;
    let (returned, _) = exchange(daemon.listen_addr, None).await;
    let found = eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(&path).is_ok_and(|text| !text.is_empty())
    })
    .await;
    assert!(found);
    let line = std::fs::read_to_string(&path).unwrap();
    let record: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(record["request_id"], returned.as_str());
    daemon.shutdown().await;
}

#[tokio::test]
async fn h2c_responses_carry_the_id() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n").await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = Request::get(format!("http://{}/", daemon.listen_addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let id = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(generated(id), "{id}");
    daemon.shutdown().await;
}

/// An HTTP/1.0 request without `Host` has its head written per attempt: the id is there too,
/// once, in place of the client's.
#[tokio::test]
async fn a_request_without_host_carries_one_id_upstream() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let mut stream = tokio::net::TcpStream::connect(daemon.listen_addr)
        .await
        .unwrap();
    let (answer, _) = crate::support::raw::ask(
        &mut stream,
        b"GET /echo HTTP/1.0\r\nX-Request-Id: forged\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 200);
    let returned = header(&answer.head, "x-request-id").unwrap().to_owned();
    assert!(generated(&returned), "{returned}");
    let body = String::from_utf8_lossy(&answer.body).into_owned();
    let upstream: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("x-request-id: "))
        .collect();
    assert_eq!(upstream, [returned.as_str()], "{body}");
    daemon.shutdown().await;
}
