//! `X-Forwarded-For` trust end to end: at the edge the client's list is replaced by the peer;
//! behind a trusted proxy it is appended to; `ip_hash` hashes the same client address.

use std::collections::HashSet;

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

async fn echo_with(daemon: &lb_proxy::Daemon, headers: &[(&str, &str)]) -> (String, String) {
    let mut request = Request::get(format!("http://{}/echo", daemon.listen_addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = send(&client(), request.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(answer.status, 200);
    (answer.backend(), answer.text().to_ascii_lowercase())
}

#[tokio::test]
async fn at_the_edge_a_spoofed_list_is_replaced_and_cannot_be_dropped() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    let (_, echo) = echo_with(
        &daemon,
        &[
            ("x-forwarded-for", "10.0.0.1"),
            ("connection", "x-forwarded-for, x-forwarded-proto"),
        ],
    )
    .await;
    let lines: Vec<&str> = echo
        .lines()
        .filter(|line| line.starts_with("x-forwarded-for:"))
        .collect();
    assert_eq!(lines, ["x-forwarded-for: 127.0.0.1"], "{echo}");
    assert!(echo.contains("x-forwarded-proto: http"), "{echo}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_list_is_appended_to() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  trusted_proxies: [127.0.0.0/8]\n").await;
    let (_, echo) = echo_with(&daemon, &[("x-forwarded-for", "203.0.113.9")]).await;
    assert!(
        echo.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{echo}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn ip_hash_uses_the_trusted_client_address() {
    let fleet = backends(3).await;
    // Trusted peer: the address in X-Forwarded-For is the client, so distinct clients spread
    // and one client always lands on the same backend.
    let trusting = balancer(
        &fleet,
        "server:\n  trusted_proxies: [127.0.0.1]\nload_balancer:\n  algorithm: ip_hash\n",
    )
    .await;
    let mut spread = HashSet::new();
    for i in 0..30 {
        let client = format!("198.51.100.{i}");
        let (first, _) = echo_with(&trusting, &[("x-forwarded-for", &client)]).await;
        let (again, _) = echo_with(&trusting, &[("x-forwarded-for", &client)]).await;
        assert_eq!(first, again, "{client} moved");
        spread.insert(first);
    }
    assert!(spread.len() >= 2, "30 clients all hashed to {spread:?}");
    trusting.shutdown().await;

    // At the edge the header is ignored: every request from 127.0.0.1 is one client.
    let edge = balancer(&fleet, "load_balancer:\n  algorithm: ip_hash\n").await;
    let mut seen = HashSet::new();
    for i in 0..10 {
        let (backend, _) =
            echo_with(&edge, &[("x-forwarded-for", &format!("198.51.100.{i}"))]).await;
        seen.insert(backend);
    }
    assert_eq!(seen.len(), 1, "a spoofed header moved the client: {seen:?}");
    edge.shutdown().await;
}
