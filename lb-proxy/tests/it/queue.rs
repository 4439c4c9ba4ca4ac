//! The queue at the limit: when every backend of a pool is at `max_connections`, requests wait
//! in arrival order for a slot instead of getting 503 at once; past the queue's timeout or
//! size they get 503 with `Retry-After`, and nothing else does.

use crate::routes::pooled;
use crate::support::{backends, client, get, metric_sum, parse, scrape};

async fn burst(daemon: &lb_proxy::Daemon, count: usize) -> Vec<(u16, Option<String>)> {
    let client = client();
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (client, addr) = (client.clone(), daemon.listen_addr);
            tokio::spawn(async move {
                let answer = get(&client, addr, "/delay/100").await;
                let retry = (answer.headers.get("retry-after"))
                    .map(|v| v.to_str().unwrap_or("").to_owned());
                (answer.status.as_u16(), retry)
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("client task"));
    }
    out
}

fn config(fleet: &[test_backend::RunningBackend], queue: &str) -> String {
    pooled(&[("web", fleet)], &format!("queue:\n{queue}")).replace(
        "        address:",
        "        max_connections: 2\n        address:",
    )
}

#[tokio::test]
async fn twenty_clients_on_four_slots_all_succeed_within_the_queue_timeout() {
    let fleet = backends(2).await;
    let daemon = lb_proxy::Daemon::start(parse(&config(&fleet, "  size: 100\n  timeout: 10s\n")))
        .await
        .expect("balancer starts");
    let answers = burst(&daemon, 20).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    for backend in &fleet {
        assert!(backend.stats().snapshot().max_in_flight <= 2);
    }
    let metrics = scrape(&daemon).await;
    assert!(metric_sum(&metrics, "lb_queue_wait_seconds_count", &["pool=\"web\""]) >= 1.0);
    assert_eq!(
        metric_sum(&metrics, "lb_queue_depth", &["pool=\"web\""]),
        0.0
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn past_a_short_timeout_the_excess_gets_503_with_retry_after_and_nothing_else() {
    let fleet = backends(2).await;
    let daemon = lb_proxy::Daemon::start(parse(&config(&fleet, "  size: 100\n  timeout: 20ms\n")))
        .await
        .expect("balancer starts");
    let answers = burst(&daemon, 20).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(ok + refused.len(), 20, "{answers:?}");
    assert!(ok >= 4 && !refused.is_empty(), "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|(_, retry)| retry.as_deref() == Some("1")),
        "{answers:?}"
    );
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_queue_rejected_total", &["pool=\"web\""]),
        refused.len() as f64
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let fleet = backends(1).await;
    let daemon = lb_proxy::Daemon::start(parse(&config(&fleet, "  size: 1\n  timeout: 10s\n")))
        .await
        .expect("balancer starts");
    // Two in flight, one waiting: the rest are refused.
    let answers = burst(&daemon, 8).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!((3..8).contains(&ok), "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 200 || *s == 503),
        "{answers:?}"
    );
    daemon.shutdown().await;
}
