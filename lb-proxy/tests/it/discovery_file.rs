//! Backends discovered from a file: the pool follows the file through the reload path (added,
//! removed, re-weighted), a bad file keeps the last good set, admin overrides survive the
//! source's changes and a file reload keeps the discovered set, and a backend that leaves under
//! load drains without a single error answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lb_proxy::{ConfigSource, Daemon, StartOptions};
use serde_json::Value;
use test_backend::RunningBackend;

use crate::support::admin::{self, temp_dir, write_file};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

/// The discovery file's text: one entry per (name, address, weight).
fn backend_list(entries: &[(&str, SocketAddr, u32)]) -> String {
    let mut text = String::new();
    for (name, address, weight) in entries {
        text.push_str(&format!(
            "- name: {name}\n  address: {address}\n  weight: {weight}\n"
        ));
    }
    text
}

/// A configuration whose one pool comes from the file at `list`.
fn config(list: &Path, algorithm: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n\
         health_check:\n  enabled: false\nload_balancer:\n  algorithm: {algorithm}\n\
         discovery:\n  file: {}\n  debounce: 20ms\n",
        list.display()
    )
}

/// A daemon over the file `backends.yaml` holding `entries`, started from a configuration file
/// (so that it can reload); waits for the first set.
async fn discovered(
    tag: &str,
    entries: &[(&str, SocketAddr, u32)],
    algorithm: &str,
) -> (Daemon, PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    let list = dir.join("backends.yaml");
    write_file(&list, &backend_list(entries));
    let path = dir.join("lb.yaml");
    write_file(&path, &config(&list, algorithm));
    let loaded = ConfigSource::file(&path).load().expect("valid test config");
    let options = StartOptions {
        source: Some(ConfigSource::file(&path)),
        ..StartOptions::default()
    };
    let daemon = Daemon::start_with(loaded, options).await.expect("starts");
    let names: Vec<String> = entries.iter().map(|e| format!("default@{}", e.0)).collect();
    assert!(has_backends(&daemon, &names).await, "the first set arrives");
    (daemon, list, path)
}

fn names(backends: &[Value]) -> Vec<String> {
    let name = |b: &Value| b["name"].as_str().unwrap_or_default().to_owned();
    backends.iter().map(name).collect()
}

/// Whether the daemon's backends become `wanted` (in any order) within the wait.
async fn has_backends(daemon: &Daemon, wanted: &[String]) -> bool {
    let admin = daemon.admin_addr.expect("admin on");
    let mut wanted = wanted.to_vec();
    wanted.sort();
    eventually(WAIT, || {
        let wanted = wanted.clone();
        async move {
            let mut now = names(&admin::backends(admin).await);
            now.sort();
            now == wanted
        }
    })
    .await
}

async fn gets(daemon: &Daemon, count: usize) -> Vec<Answer> {
    let client = client();
    let mut answers = Vec::new();
    for _ in 0..count {
        answers.push(get(&client, daemon.listen_addr, "/").await);
    }
    answers
}

fn at(fleet: &[RunningBackend], index: usize) -> SocketAddr {
    fleet[index].addr()
}

#[tokio::test]
async fn the_pool_follows_the_file() {
    let fleet = backends(3).await;
    let entries = [("b0", at(&fleet, 0), 1), ("b1", at(&fleet, 1), 1)];
    let (daemon, list, _) = discovered("disc-follow", &entries, "weighted_round_robin").await;
    let counts = tally(&gets(&daemon, 10).await);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.keys().all(|b| b == "b0" || b == "b1"), "{counts:?}");
    let info = |metrics: &str| -> Vec<String> {
        (metrics.lines())
            .filter(|line| line.starts_with("lb_config_info{"))
            .map(str::to_owned)
            .collect()
    };
    let hash_before = info(&scrape(&daemon).await);
    assert_eq!(hash_before.len(), 1);

    // b0 leaves, b2 joins, b1 weighs 3.
    write_file(
        &list,
        &backend_list(&[("b1", at(&fleet, 1), 3), ("b2", at(&fleet, 2), 1)]),
    );
    let wanted = ["default@b1".to_owned(), "default@b2".to_owned()];
    assert!(has_backends(&daemon, &wanted).await);
    let admin = daemon.admin_addr.unwrap();
    assert!(
        eventually(WAIT, || async {
            admin::backend(admin, "default@b1").await["weight"] == 3
        })
        .await
    );
    let counts = tally(&gets(&daemon, 40).await);
    assert_eq!(counts.get("b1"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("b2"), Some(&10), "{counts:?}");

    let metrics = scrape(&daemon).await;
    let applied = metric_sum(
        &metrics,
        "lb_discovery_updates_total",
        &["source=\"file\"", "result=\"applied\""],
    );
    assert!(applied >= 2.0, "{metrics}");
    assert_eq!(
        metric_sum(&metrics, "lb_discovery_backends", &["pool=\"default\""]),
        2.0
    );
    assert!(metric_sum(&metrics, "lb_discovery_last_update_timestamp_seconds", &[]) > 1.0e9);
    let hash_after = info(&metrics);
    assert_eq!(hash_after.len(), 1);
    assert_ne!(
        hash_after, hash_before,
        "the live configuration's hash covers the set"
    );
    // A reload counts reloads of the file only.
    assert_eq!(metric_sum(&metrics, "lb_config_reloads_total", &[]), 0.0);
    assert!(
        !metrics.contains("backend=\"default@b0\""),
        "b0's series left with it"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_bad_file_keeps_the_last_good_set() {
    let fleet = backends(2).await;
    let entries = [("b0", at(&fleet, 0), 1), ("b1", at(&fleet, 1), 1)];
    let (daemon, list, _) = discovered("disc-bad", &entries, "round_robin").await;
    let wanted = ["default@b0".to_owned(), "default@b1".to_owned()];
    let errors = |metrics: &str| {
        metric_sum(
            metrics,
            "lb_discovery_updates_total",
            &["source=\"file\"", "result=\"error\""],
        )
    };
    let bad_files = [
        "- address: [not, an, address\n",
        "- address: 127.0.0.1:notaport\n",
        "[]\n",
        "- address: 127.0.0.1:1\n  wieght: 2\n",
    ];
    for (index, bad) in bad_files.iter().enumerate() {
        write_file(&list, bad);
        let counted = eventually(WAIT, || async {
            errors(&scrape(&daemon).await) >= (index + 1) as f64
        })
        .await;
        assert!(counted, "the bad file {bad:?} is counted");
        assert!(has_backends(&daemon, &wanted).await, "{bad:?} kept the set");
        let answers = gets(&daemon, 4).await;
        assert!(answers.iter().all(|a| a.status == 200), "{bad:?}");
    }
    // The file gone: still the last set.
    std::fs::remove_file(&list).unwrap();
    let counted = eventually(WAIT, || async {
        errors(&scrape(&daemon).await) >= (bad_files.len() + 1) as f64
    })
    .await;
    assert!(counted, "a missing file is counted");
    assert!(has_backends(&daemon, &wanted).await);
    // Fixed: taken again.
    write_file(&list, &backend_list(&entries[..1]));
    assert!(has_backends(&daemon, &wanted[..1]).await);
    daemon.shutdown().await;
}

#[tokio::test]
async fn overrides_survive_the_source_and_a_reload_keeps_the_set() {
    let fleet = backends(2).await;
    let entries = [("b0", at(&fleet, 0), 1), ("b1", at(&fleet, 1), 1)];
    let (daemon, list, path) = discovered("disc-overrides", &entries, "weighted_round_robin").await;
    let admin = daemon.admin_addr.unwrap();
    admin::act(admin, "default@b0", "drain").await;
    admin::set_weight(admin, "default@b1", Some(7)).await;

    // The source changes both: b0's weight, b1's connection limit.
    write_file(
        &list,
        &format!(
            "- {{name: b0, address: {}, weight: 4}}\n- {{name: b1, address: {}, max_connections: 50}}\n",
            at(&fleet, 0),
            at(&fleet, 1)
        ),
    );
    let updated = eventually(WAIT, || async {
        admin::backend(admin, "default@b0").await["configured_weight"] == 4
    })
    .await;
    assert!(updated, "{}", admin::backend(admin, "default@b0").await);
    let b0 = admin::backend(admin, "default@b0").await;
    let b1 = admin::backend(admin, "default@b1").await;
    assert_eq!(b0["drained"], true, "{b0}");
    assert_eq!(b1["weight"], 7, "{b1}");
    let counts = tally(&gets(&daemon, 6).await);
    assert_eq!(counts.get("b1"), Some(&6), "b0 stays drained: {counts:?}");

    // A reload of the file (which lists no backends) keeps the discovered ones and their
    // overrides.
    write_file(
        &path,
        &config(&list, "weighted_round_robin").replace("debounce: 20ms", "debounce: 30ms"),
    );
    let report = daemon.reloader().reload().await.expect("reload applies");
    assert!(
        report.changes.iter().all(|c| !c.contains("removed")),
        "{:?}",
        report.changes
    );
    let wanted = ["default@b0".to_owned(), "default@b1".to_owned()];
    assert!(has_backends(&daemon, &wanted).await);
    assert_eq!(admin::backend(admin, "default@b0").await["drained"], true);
    assert_eq!(admin::backend(admin, "default@b1").await["weight"], 7);
    // The restarted source still follows the file.
    write_file(&list, &backend_list(&entries[1..]));
    assert!(has_backends(&daemon, &wanted[1..]).await);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_backend_that_leaves_under_load_causes_no_error() {
    let fleet = backends(3).await;
    let entries = [
        ("b0", at(&fleet, 0), 1),
        ("b1", at(&fleet, 1), 1),
        ("b2", at(&fleet, 2), 1),
    ];
    let (daemon, list, _) = discovered("disc-load", &entries, "round_robin").await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, sent, addr) = (stop.clone(), sent.clone(), daemon.listen_addr);
        workers.push(tokio::spawn(async move {
            let client = client();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // Some requests are in flight to b1 when it leaves.
                statuses.push(get(&client, addr, "/delay/20").await.status);
                sent.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        }));
    }
    let warmed = eventually(WAIT, || async { sent.load(Ordering::Relaxed) >= 20 }).await;
    assert!(warmed);
    write_file(
        &list,
        &backend_list(&[("b0", at(&fleet, 0), 1), ("b2", at(&fleet, 2), 1)]),
    );
    let wanted = ["default@b0".to_owned(), "default@b2".to_owned()];
    assert!(has_backends(&daemon, &wanted).await);
    let before = sent.load(Ordering::Relaxed);
    let more = eventually(WAIT, || async {
        sent.load(Ordering::Relaxed) >= before + 20
    })
    .await;
    assert!(more);
    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for worker in workers {
        statuses.extend(worker.await.unwrap());
    }
    let bad: Vec<_> = statuses.iter().filter(|s| s.as_u16() != 200).collect();
    assert!(
        bad.is_empty(),
        "{} of {} failed: {bad:?}",
        bad.len(),
        statuses.len()
    );
    assert!(statuses.len() >= 40);
    assert!(drained(&daemon).await);
    daemon.shutdown().await;
}
