//! The `lb` process across restarts and many reloads: a takeover by a second process under a
//! stream of new connections, and a thousand reloads that leave nothing behind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;

use crate::support::admin::{self, call, temp_dir, write_file};
use crate::support::process::{Lb, exit_code};
use crate::support::*;

const SIDE: &str = "admin:\n  listen: 127.0.0.1:0\n";

/// Opens a new connection per request until `stop`; returns (answered, failures).
async fn new_connections(addr: SocketAddr, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let mut answered = 0;
    let mut failures = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match get_on_new_connection(addr, b"").await {
            Ok(()) => answered += 1,
            Err(failure) => failures.push(failure),
        }
    }
    (answered, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_takes_over_without_refusing_or_resetting_a_connection() {
    let _alone = crate::alone().await;
    let fleet = backends(2).await;
    let dir = temp_dir("takeover");
    let path = dir.join("lb.yaml");
    let extra = format!("{SIDE}server:\n  shutdown_grace: 3s\n");
    write_file(&path, &config_yaml(&specs(&fleet), &extra));
    let socket = dir.join("upgrade.sock");
    let socket_arg = socket.to_str().unwrap();
    let mut old = Lb::start_async(&path, &["--upgrade-socket", socket_arg]).await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let exists = socket.exists();
            async move { exists }
        })
        .await
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| tokio::spawn(new_connections(old.listen, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let new = Lb::start_async(&path, &["--upgrade-socket", socket_arg]).await;
    assert_eq!(new.listen, old.listen, "the same socket, taken over");
    assert_eq!(new.admin, old.admin);
    assert_eq!(new.metrics, old.metrics);
    let code = exit_code(&mut old.child).await;
    assert_eq!(code, Some(0), "the old process drained and exited");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    let mut failures = Vec::new();
    for task in load {
        let (ok, failed) = task.await.unwrap();
        answered += ok;
        failures.extend(failed);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(answered > 50, "{answered} answered");
    // The new process serves everything, and can be taken over in turn.
    assert_eq!(get(&client(), new.listen, "/").await.status, StatusCode::OK);
    assert_eq!(admin::backends(new.admin.unwrap()).await.len(), 2);
    assert!(socket.exists());
}

/// Resident memory (kB), open descriptors and live tasks of process `pid`.
async fn footprint(pid: u32, metrics: SocketAddr) -> (u64, usize, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let tasks = metric_sum(&scrape_at(metrics).await, "lb_runtime_tasks", &[]);
    (rss, fds, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reloads_leak_no_memory_descriptors_or_tasks() {
    let _alone = crate::alone().await;
    let fleet = backends(3).await;
    let specs = specs(&fleet);
    let path = temp_dir("thousand").join("lb.yaml");
    let extra = format!("{SIDE}health_check:\n  interval: 200ms\n  timeout: 100ms\n");
    let small = config_yaml(&specs[..2], &extra);
    let mut large_specs = specs.clone();
    large_specs[0].2 = 3;
    let large = config_yaml(&large_specs, &extra);
    write_file(&path, &small);
    let lb = Lb::start_async(&path, &[]).await;
    let (metrics, admin) = (lb.metrics.unwrap(), lb.admin.unwrap());
    let pid = lb.child.id();
    let listen = lb.listen;
    let requests = Arc::new(AtomicU64::new(0));
    let cycle = |rounds: usize| {
        let (path, small, large, requests) =
            (path.clone(), small.clone(), large.clone(), requests.clone());
        async move {
            let client = client();
            for round in 0..rounds {
                write_file(&path, if round % 2 == 0 { &large } else { &small });
                let answer = call(admin, "POST", "/reload", None, None).await;
                assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
                if round % 10 == 0 {
                    assert_eq!(get(&client, listen, "/").await.status, StatusCode::OK);
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    // Warm up (allocator pools, metric families), then measure.
    cycle(50).await;
    let settled = || async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        footprint(pid, metrics).await
    };
    let before = settled().await;
    cycle(1000).await;
    // Drains finish: removed backends' requests and checkers end.
    let mut after = settled().await;
    for _ in 0..20 {
        if after.1 <= before.1 + 3 && after.2 <= before.2 + 3.0 {
            break;
        }
        after = settled().await;
    }
    println!("before {before:?}, after 1,000 reloads {after:?} (rss kB, fds, tasks)");
    // A connection or a health probe in progress at either reading moves these by one or two;
    // a leak would move them by hundreds.
    assert!(
        after.1 <= before.1 + 3,
        "descriptors: {} -> {}",
        before.1,
        after.1
    );
    assert!(
        after.2 <= before.2 + 3.0,
        "tasks: {} -> {}",
        before.2,
        after.2
    );
    assert!(
        (after.0 as f64) <= before.0 as f64 * 1.10,
        "resident memory grew past 10 %: {} kB -> {} kB",
        before.0,
        after.0
    );
    let text = scrape_at(metrics).await;
    assert_eq!(
        metric_sum(&text, "lb_config_reloads_total", &["result=\"success\""]),
        1050.0
    );
    assert!(requests.load(Ordering::Relaxed) > 0);
}
