//! `lb-cli status` end to end: a real balancer (in-process, port 0) over real test backends,
//! traffic through it, and the real `lb-cli` binary reading its metrics.

use std::process::Command;
use std::time::Duration;

use lb_core::config::Format;
use test_backend::{BackendOptions, RunningBackend};

use crate::support::get;

async fn backend(name: &str) -> RunningBackend {
    crate::support::backend(BackendOptions {
        name: name.to_owned(),
        ..BackendOptions::default()
    })
    .await
}

/// Runs `lb-cli status --metrics URL` off the async workers; returns (exit code, stdout).
async fn status(url: String) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_lb-cli"))
            .args(["status", "--metrics", &url])
            .output()
            .expect("lb-cli runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The table row of `name`, split into cells.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cells| cells.first().is_some_and(|c| c == name))
        .unwrap_or_else(|| panic!("no row for {name} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_backends_traffic_and_health() {
    let fleet = [
        backend("b0").await,
        backend("b1").await,
        backend("b2").await,
    ];
    let mut yaml = String::from(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\n\
         health_check:\n  interval: 100ms\n  timeout: 50ms\n  unhealthy_threshold: 2\n  healthy_threshold: 2\n\
         backends:\n",
    );
    for (i, b) in fleet.iter().enumerate() {
        let weight = i + 1;
        yaml.push_str(&format!(
            "  - name: {}\n    address: {}\n    weight: {weight}\n",
            b.name(),
            b.addr()
        ));
    }
    let config = lb_core::config::parse(&yaml, Format::Yaml, "test.yaml")
        .unwrap_or_else(|errors| panic!("{errors}"));
    let daemon = lb_proxy::Daemon::start(config)
        .await
        .expect("balancer starts");
    let url = format!(
        "http://{}/metrics",
        daemon.metrics_addr.expect("metrics on")
    );

    // Traffic: 30 plain requests and 3 that the backends answer 500.
    let proxy = daemon.listen_addr;
    for path in std::iter::repeat_n("/", 30).chain(std::iter::repeat_n("/status/500", 3)) {
        let status = get(proxy, path).await;
        assert!(status == 200 || status == 500, "{path}: {status}");
    }

    let (code, table) = status(url.clone()).await;
    assert_eq!(code, Some(0), "{table}");
    assert!(
        table.starts_with("3 backends, 3 healthy; 33 requests, 9.1% errors"),
        "{table}"
    );
    let mut requests = 0.0;
    for (i, name) in ["b0", "b1", "b2"].into_iter().enumerate() {
        let cells = row(&table, name);
        // BACKEND HEALTH BREAKER IN-FLIGHT REQUESTS ERRORS WEIGHT
        assert_eq!(cells[1..3], ["up", "closed"], "{table}");
        requests += cells[4].parse::<f64>().unwrap();
        assert_eq!(cells[6], (i + 1).to_string(), "{table}");
    }
    assert_eq!(requests, 33.0, "{table}");

    // b1 fails its health checks: status shows it down within a bounded wait.
    fleet[1].set_healthy(false);
    let mut last = String::new();
    let mut down = false;
    for _ in 0..100 {
        let (code, table) = status(url.clone()).await;
        assert_eq!(code, Some(0), "{table}");
        down = row(&table, "b1")[1] == "DOWN";
        last = table;
        if down {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(down, "b1 never shown down:\n{last}");
    assert_eq!(row(&last, "b0")[1], "up");
    assert!(last.starts_with("3 backends, 2 healthy"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_stopped_daemon_fails_with_exit_1() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, stdout) = status(format!("http://{addr}/metrics")).await;
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty());
}
