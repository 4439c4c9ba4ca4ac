//! Rate limits shared by a fleet through a real Redis server on loopback: two balancers
//! enforce one budget together; with Redis stopped, each falls back to its own local budget
//! and says so in its metrics.
//!
//! Needs `redis-server` (Debian's `redis-server`); without it the tests say so and pass,
//! unless `LB_REQUIRE_REDIS=1` (CI sets it) makes its absence a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::routes::pooled;
use crate::support::process::OwnedChild;
use crate::support::{backends, client, eventually, get, metric_sum, parse, scrape};

/// A redis-server on a free loopback port, killed when dropped.
struct Redis {
    /// Held for its drop, which stops the server.
    _child: OwnedChild,
    port: u16,
}

fn redis_binary() -> Option<PathBuf> {
    crate::support::process::tool(
        "redis-server",
        "LB_REQUIRE_REDIS",
        "redis-server",
        "sharing rate limits",
    )
}

async fn start_redis(binary: &PathBuf) -> Redis {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let up = eventually(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "redis-server did not listen on {port}");
    Redis {
        _child: OwnedChild(child),
        port,
    }
}

/// Waits until `daemon` has connected to Redis (it connects in the background).
async fn connected(daemon: &lb_proxy::Daemon) {
    let up = eventually(Duration::from_secs(10), || async {
        metric_sum(&scrape(daemon).await, "lb_rate_limit_redis_up", &[]) == 1.0
    })
    .await;
    assert!(up, "a balancer never reached Redis");
}

fn config(fleet: &[test_backend::RunningBackend], port: u16, requests: u32) -> String {
    let rest = format!(
        "redis:\n  url: redis://127.0.0.1:{port}\n  timeout: 200ms\n  key_prefix: \"lb-test-{port}:\"\n\
         rate_limits:\n  fleet:\n    requests: {requests}\n    per: 1m\n    key: client\n    shared: redis\n\
         routes:\n  - name: limited\n    pool: web\n    rate_limit: fleet\n"
    );
    pooled(&[("web", fleet)], &rest)
}

#[tokio::test]
async fn two_balancers_share_one_budget_and_fall_back_to_their_own_without_redis() {
    let Some(binary) = redis_binary() else { return };
    let redis = start_redis(&binary).await;
    let fleet = backends(1).await;
    let yaml = config(&fleet, redis.port, 10);
    let a = lb_proxy::Daemon::start(parse(&yaml))
        .await
        .expect("a starts");
    let b = lb_proxy::Daemon::start(parse(&yaml))
        .await
        .expect("b starts");
    let client = client();
    for daemon in [&a, &b] {
        connected(daemon).await;
    }
    // Alternate until the shared budget is spent: both balancers refuse from then on.
    let mut allowed = 0;
    for i in 0..30 {
        let daemon = if i % 2 == 0 { &a } else { &b };
        let status = get(&client, daemon.listen_addr, "/").await.status.as_u16();
        assert!(status == 200 || status == 429, "{status}");
        allowed += usize::from(status == 200);
    }
    assert_eq!(allowed, 10, "one budget of 10 for both");
    assert_eq!(get(&client, a.listen_addr, "/").await.status, 429);
    assert_eq!(get(&client, b.listen_addr, "/").await.status, 429);

    // Redis stops: each balancer falls back to its own budget of 10, and says so.
    drop(redis);
    for daemon in [&a, &b] {
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(get(&client, daemon.listen_addr, "/").await.status.as_u16());
        }
        let ok = statuses.iter().filter(|&&s| s == 200).count();
        assert_eq!(ok, 10, "the local budget: {statuses:?}");
        let metrics = scrape(daemon).await;
        assert_eq!(metric_sum(&metrics, "lb_rate_limit_redis_up", &[]), 0.0);
        assert!(metric_sum(&metrics, "lb_rate_limit_redis_errors_total", &[]) >= 12.0);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_shared_limit_holds_within_ten_percent_across_balancers() {
    let Some(binary) = redis_binary() else { return };
    let redis = start_redis(&binary).await;
    let fleet = backends(1).await;
    // Redis is given time: on a loaded machine a 200 ms call can time out, and a balancer that
    // falls back to its own budget (`on_error: local`) would allow its 100 as well.
    let yaml = config(&fleet, redis.port, 100).replace("  timeout: 200ms\n", "  timeout: 5s\n");
    let daemons = [
        lb_proxy::Daemon::start(parse(&yaml)).await.expect("starts"),
        lb_proxy::Daemon::start(parse(&yaml)).await.expect("starts"),
        lb_proxy::Daemon::start(parse(&yaml)).await.expect("starts"),
    ];
    for daemon in &daemons {
        connected(daemon).await;
    }
    // 300 concurrent requests spread over three balancers against a budget of 100 a minute.
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let addr = daemons[i % 3].listen_addr;
            tokio::spawn(async move { get(&client(), addr, "/").await.status.as_u16() })
        })
        .collect();
    let mut allowed = 0usize;
    for task in tasks {
        allowed += usize::from(task.await.unwrap() == 200);
    }
    // One budget: exactly what it allows in the time taken (well under a 10 % refill).
    assert!(
        (100..=110).contains(&allowed),
        "allowed {allowed} of a shared budget of 100"
    );
    for daemon in daemons {
        daemon.shutdown().await;
    }
    drop(redis);
}

#[tokio::test]
async fn without_redis_on_error_decides_allow_or_deny() {
    // A port nothing listens on: every decision fails over to on_error at once.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fleet = backends(1).await;
    for (on_error, want) in [("allow", 200), ("deny", 429), ("local", 200)] {
        let yaml = config(&fleet, closed, 1).replace(
            "  timeout: 200ms\n",
            &format!("  timeout: 200ms\n  on_error: {on_error}\n"),
        );
        let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.expect("starts");
        let status = get(&client(), daemon.listen_addr, "/")
            .await
            .status
            .as_u16();
        assert_eq!(status, want, "on_error: {on_error}");
        let metrics = scrape(&daemon).await;
        assert_eq!(metric_sum(&metrics, "lb_rate_limit_redis_up", &[]), 0.0);
        assert_eq!(
            metric_sum(&metrics, "lb_rate_limit_redis_errors_total", &[]),
            1.0
        );
        daemon.shutdown().await;
    }
}
