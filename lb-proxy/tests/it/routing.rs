//! Each algorithm spreads requests across real backends as it promises.

use std::collections::HashMap;

use crate::support::*;

async fn spread(algorithm: &str, weights: &[u32], requests: usize) -> HashMap<String, usize> {
    let backends = backends(weights.len()).await;
    let mut specs = specs(&backends);
    for (spec, weight) in specs.iter_mut().zip(weights) {
        spec.2 = *weight;
    }
    let yaml = config_yaml(
        &specs,
        &format!("load_balancer:\n  algorithm: {algorithm}\n"),
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml))
        .await
        .expect("balancer starts");
    let client = client();
    let mut answers = Vec::with_capacity(requests);
    for _ in 0..requests {
        let answer = get(&client, daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        answers.push(answer);
    }
    daemon.shutdown().await;
    tally(&answers)
}

#[tokio::test]
async fn round_robin_splits_exactly() {
    let counts = spread("round_robin", &[1, 1, 1], 300).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&count| count == 100), "{counts:?}");
}

#[tokio::test]
async fn weighted_round_robin_honours_weights_exactly_per_cycle() {
    let counts = spread("weighted_round_robin", &[5, 1, 2], 400).await;
    assert_eq!(counts["b0"], 250, "{counts:?}");
    assert_eq!(counts["b1"], 50, "{counts:?}");
    assert_eq!(counts["b2"], 100, "{counts:?}");
}

#[tokio::test]
async fn least_connections_spreads_sequential_requests_over_all() {
    // Sequential requests leave every backend at zero in flight: ties must be broken fairly.
    let counts = spread("least_connections", &[1, 1, 1], 300).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&count| count >= 50), "{counts:?}");
}

#[tokio::test]
async fn random_reaches_every_backend() {
    let counts = spread("random", &[1, 1, 1], 600).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    // Binomial(600, 1/3): mean 200, sd 11.5; 120 is seven sd away.
    assert!(counts.values().all(|&count| count >= 120), "{counts:?}");
}

#[tokio::test]
async fn weighted_random_follows_weights() {
    let counts = spread("weighted_random", &[3, 1], 800).await;
    // Binomial(800, 3/4): mean 600, sd 12.2.
    assert!((520..=680).contains(&counts["b0"]), "{counts:?}");
}

#[tokio::test]
async fn p2c_reaches_every_backend() {
    let counts = spread("p2c", &[1, 1, 1], 300).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
}

#[tokio::test]
async fn ip_hash_keeps_one_client_on_one_backend() {
    let counts = spread("ip_hash", &[1, 1, 1], 60).await;
    assert_eq!(
        counts.len(),
        1,
        "one client address, one backend: {counts:?}"
    );
}
