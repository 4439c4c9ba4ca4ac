//! Slow start on live traffic: a backend back from a failed health check takes a small share
//! that ramps up (from a floor of 10 % of its weight, never nothing), while one never down
//! takes the rest.

use std::time::Duration;

use crate::routes::pooled;
use crate::support::{backends, client, eventually, get, metric_sum, parse, scrape};

#[tokio::test]
async fn a_backend_back_in_rotation_ramps_from_its_floor() {
    let fleet = backends(2).await;
    let rest = "load_balancer:\n  slow_start: 30s\n\
                health_check:\n  enabled: true\n  interval: 100ms\n  timeout: 50ms\n  \
                unhealthy_threshold: 1\n  healthy_threshold: 1\n";
    let yaml = pooled(&[("web", &fleet)], "").replace("health_check:\n  enabled: false\n", rest);
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.expect("starts");
    let health = |up: f64| {
        let daemon = &daemon;
        async move {
            eventually(Duration::from_secs(10), || async {
                let metrics = scrape(daemon).await;
                metric_sum(&metrics, "lb_backend_health_status", &["backend=\"b1\""]) == up
            })
            .await
        }
    };
    fleet[1].set_healthy(false);
    assert!(health(0.0).await, "b1 never went down");
    fleet[1].set_healthy(true);
    assert!(health(1.0).await, "b1 never came back");
    let client = client();
    let mut b1 = 0;
    for _ in 0..300 {
        b1 += usize::from(get(&client, daemon.listen_addr, "/").await.backend() == "b1");
    }
    // Round robin would give it half; just back, it keeps about a tenth of its picks.
    assert!(
        (1..=60).contains(&b1),
        "b1 took {b1} of 300 requests just after its return"
    );
    daemon.shutdown().await;
}
