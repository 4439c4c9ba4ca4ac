//! Health checks, circuit breakers, retries and the retry budget against real, failing backends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use test_backend::BackendOptions;

#[tokio::test]
async fn killed_backend_leaves_rotation_without_client_errors_and_returns() {
    let mut fleet = backends(3).await;
    let extra = "health_check:\n  interval: 100ms\n  timeout: 50ms\n  unhealthy_threshold: 2\n  healthy_threshold: 2\n\
                 retry:\n  base_delay: 1ms\n  max_delay: 5ms\n";
    let daemon = balancer(&fleet, extra).await;
    let client = client();
    let victim = fleet.remove(1);
    let victim_addr = victim.addr();
    victim.shutdown().await;

    // Idempotent requests keep succeeding: connect errors are retried on another backend.
    let errors = AtomicUsize::new(0);
    let down = eventually(Duration::from_secs(5), || async {
        let answer = get(&client, daemon.listen_addr, "/").await;
        if answer.status != 200 {
            errors.fetch_add(1, Ordering::Relaxed);
        }
        let metrics = scrape(&daemon).await;
        metric_sum(&metrics, "lb_backend_health_status", &["backend=\"b1\""]) == 0.0
    })
    .await;
    assert!(down, "b1 was never marked down");
    // Taken out by its probes, after unhealthy_threshold of them failed (the timing itself is
    // lb-core's health tests', to the millisecond).
    let metrics = scrape(&daemon).await;
    let failed = metric_sum(
        &metrics,
        "lb_health_checks_total",
        &["backend=\"b1\"", "result=\"failure\""],
    );
    assert!(failed >= 2.0, "marked down after {failed} failed probes");
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "clients saw errors while b1 was going down"
    );

    // Out of rotation: every request lands on b0 or b2.
    for _ in 0..20 {
        let answer = get(&client, daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 200);
        assert_ne!(answer.backend(), "b1");
    }

    // Restarted on the same port, it comes back.
    let options = BackendOptions {
        name: "b1".into(),
        ..BackendOptions::default()
    };
    let revived = test_backend::bind_and_spawn(victim_addr, options)
        .await
        .expect("rebind the same port");
    let back = eventually(Duration::from_secs(5), || async {
        let answer = get(&client, daemon.listen_addr, "/").await;
        answer.backend() == "b1"
    })
    .await;
    assert!(back, "b1 never came back into rotation");
    daemon.shutdown().await;
    revived.shutdown().await;
}

#[tokio::test]
async fn failing_backend_trips_its_breaker_which_half_opens_and_closes() {
    let fleet = backends(2).await;
    let extra = "circuit_breaker:\n  failure_threshold: 3\n  open_duration: 200ms\n  max_open_duration: 200ms\n  success_threshold: 1\n\
                 retry:\n  max_attempts: 1\n";
    let daemon = balancer(&fleet, extra).await;
    let client = client();
    fleet[0].set_fail_rate(1.0);

    let opened = eventually(Duration::from_secs(5), || async {
        let _ = get(&client, daemon.listen_addr, "/").await;
        let metrics = scrape(&daemon).await;
        metric_sum(&metrics, "lb_circuit_breaker_state", &["backend=\"b0\""]) == 1.0
    })
    .await;
    assert!(opened, "breaker of b0 never opened");
    // While open, traffic goes to b1 only.
    for _ in 0..10 {
        let answer = get(&client, daemon.listen_addr, "/").await;
        assert_eq!(answer.backend(), "b1");
    }

    fleet[0].set_fail_rate(0.0);
    let closed = eventually(Duration::from_secs(5), || async {
        let _ = get(&client, daemon.listen_addr, "/").await;
        let metrics = scrape(&daemon).await;
        metric_sum(&metrics, "lb_circuit_breaker_state", &["backend=\"b0\""]) == 0.0
    })
    .await;
    assert!(closed, "breaker of b0 never closed again");
    let metrics = scrape(&daemon).await;
    for to in ["open", "half_open", "closed"] {
        let label = format!("to=\"{to}\"");
        assert!(
            metric_sum(
                &metrics,
                "lb_circuit_breaker_transitions_total",
                &["backend=\"b0\"", &label]
            ) >= 1.0,
            "no transition to {to}:\n{metrics}"
        );
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn post_is_not_retried_but_get_is() {
    let fleet = backends(2).await;
    let extra = "retry:\n  max_attempts: 3\n  base_delay: 1ms\n  max_delay: 2ms\n  retry_on: [503]\n  budget_ratio: 1.0\n\
                 circuit_breaker:\n  enabled: false\n";
    let daemon = balancer(&fleet, extra).await;
    let client = client();
    let before: u64 = fleet
        .iter()
        .map(|backend| backend.stats().snapshot().requests)
        .sum();
    let post = Request::post(format!("http://{}/status/503", daemon.listen_addr))
        .body(Full::new(Bytes::from_static(b"order=1")))
        .unwrap();
    let answer = send(&client, post).await;
    assert_eq!(answer.status, 503);
    let after_post: u64 = fleet
        .iter()
        .map(|backend| backend.stats().snapshot().requests)
        .sum();
    assert_eq!(
        after_post - before,
        1,
        "a POST reached backends more than once"
    );

    let answer = get(&client, daemon.listen_addr, "/status/503").await;
    assert_eq!(answer.status, 503);
    let after_get: u64 = fleet
        .iter()
        .map(|backend| backend.stats().snapshot().requests)
        .sum();
    assert_eq!(
        after_get - after_post,
        3,
        "a GET gets max_attempts attempts"
    );
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_retries_total", &[]),
        2.0,
        "{metrics}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn retry_budget_holds_under_a_failing_fleet() {
    let fleet = backends(3).await;
    let extra = "retry:\n  max_attempts: 3\n  base_delay: 1ms\n  max_delay: 1ms\n  retry_on: [503]\n  budget_ratio: 0.1\n  budget_min_per_sec: 1\n\
                 circuit_breaker:\n  enabled: false\n";
    let daemon = balancer(&fleet, extra).await;
    let client = client();
    let started = tokio::time::Instant::now();
    let requests = 400u64;
    for _ in 0..requests {
        let answer = get(&client, daemon.listen_addr, "/status/503").await;
        assert_eq!(answer.status, 503);
    }
    let seconds = started.elapsed().as_secs() + 1;
    let attempts: u64 = fleet
        .iter()
        .map(|backend| backend.stats().snapshot().requests)
        .sum();
    let retries = attempts - requests;
    // Without a budget this fleet would see 1,200 attempts. The budget allows 10% of requests,
    // a floor of one per second, and the bucket's initial allowance (at most 10 tokens).
    let allowed = requests / 10 + seconds + 10;
    assert!(
        retries <= allowed,
        "{retries} retries for {requests} requests (allowed {allowed})"
    );
    assert!(retries > 0, "the budget allowed no retry at all");
    let metrics = scrape(&daemon).await;
    assert!(metric_sum(&metrics, "lb_retry_budget_exhausted_total", &[]) > 0.0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_probe_abandoned_by_its_client_does_not_wedge_the_breaker() {
    use tokio::io::AsyncWriteExt;
    let fleet = backends(1).await;
    let extra = "circuit_breaker:\n  failure_threshold: 1\n  open_duration: 100ms\n  max_open_duration: 100ms\n  half_open_max_requests: 1\n  success_threshold: 1\n\
                 retry:\n  max_attempts: 1\n";
    let daemon = balancer(&fleet, extra).await;
    let client = client();
    fleet[0].set_fail_rate(1.0);
    assert_eq!(get(&client, daemon.listen_addr, "/").await.status, 500);
    fleet[0].set_fail_rate(0.0);

    // Once the breaker half-opens, a slow request becomes its only probe; its client leaves.
    let probe_at_backend = eventually(Duration::from_secs(5), || async {
        let mut stream = tokio::net::TcpStream::connect(daemon.listen_addr)
            .await
            .unwrap();
        stream
            .write_all(b"GET /delay/3000 HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let reached = eventually(Duration::from_millis(300), || async {
            fleet[0].stats().snapshot().in_flight == 1
        })
        .await;
        drop(stream);
        reached
    })
    .await;
    assert!(probe_at_backend, "no probe was ever admitted");

    // The abandoned probe's permit comes back: a later request is admitted and closes the breaker.
    let recovered = eventually(Duration::from_secs(5), || async {
        get(&client, daemon.listen_addr, "/").await.status == 200
    })
    .await;
    assert!(
        recovered,
        "the breaker stayed half-open with its probe permit lost"
    );
    daemon.shutdown().await;
}
