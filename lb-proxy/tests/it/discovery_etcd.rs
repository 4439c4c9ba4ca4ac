//! Backends discovered from etcd v3, against a real `etcd` on loopback ports with a temporary
//! data directory: the pool follows keys put, changed and deleted under the prefix; a value that
//! is not a backend is counted and changes nothing; a watch whose server stopped answering
//! (SIGSTOP) is detected and resumed, never a silent freeze; a server restarted while the
//! revisions the watch needs were compacted is listed again, so a key deleted meanwhile leaves.
//!
//! The test writes keys through etcd's JSON gateway (`/v3/kv/...` on the client port), not the
//! gRPC calls `lb` makes, so the two sides do not share a mistake.
//!
//! Needs `etcd` (Debian's `etcd-server`); without it the tests say so and pass, unless
//! `LB_REQUIRE_ETCD=1` (CI sets it) makes its absence a failure. TLS and authentication are
//! tested in `discovery_etcd_secure.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use lb_proxy::Daemon;
use serde_json::Value;

use crate::support::admin::{self, temp_dir};
use crate::support::etcd::{Etcd, etcd_binary};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);
const PREFIX: &str = "/lb/pools/default/";

pub(crate) fn entry(name: &str, address: SocketAddr, weight: u32) -> String {
    serde_json::json!({"name": name, "address": address.to_string(), "weight": weight}).to_string()
}

pub(crate) fn names(backends: &[Value]) -> Vec<String> {
    let name = |b: &Value| b["name"].as_str().unwrap_or_default().to_owned();
    let mut names: Vec<String> = backends.iter().map(name).collect();
    names.sort();
    names
}

async fn has_backends(daemon: &Daemon, wanted: &[&str]) -> bool {
    let admin = daemon.admin_addr.expect("admin on");
    let mut wanted: Vec<String> = wanted.iter().map(|n| format!("default@{n}")).collect();
    wanted.sort();
    eventually(WAIT, || {
        let wanted = wanted.clone();
        async move { names(&admin::backends(admin).await) == wanted }
    })
    .await
}

pub(crate) fn errors(metrics: &str) -> f64 {
    metric_sum(
        metrics,
        "lb_discovery_updates_total",
        &["source=\"etcd\"", "result=\"error\""],
    )
}

#[tokio::test]
async fn the_pool_follows_an_etcd_prefix_through_failures() {
    let Some(binary) = etcd_binary() else {
        return;
    };
    let dir = temp_dir("etcd");
    let etcd = Etcd::start(&binary, &dir, 0, 0).await;
    let fleet = backends(3).await;
    let at = |i: usize| fleet[i].addr();
    let kv = etcd.client();
    kv.put(format!("{PREFIX}a"), entry("b0", at(0), 1))
        .await
        .unwrap();
    kv.put(format!("{PREFIX}b"), entry("b1", at(1), 1))
        .await
        .unwrap();
    // Not ours: another prefix.
    kv.put("/lb/pools/other/x", entry("b2", at(2), 1))
        .await
        .unwrap();

    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n\
         health_check:\n  enabled: false\nload_balancer:\n  algorithm: weighted_round_robin\n\
         discovery:\n  etcd: {{endpoints: ['127.0.0.1:{}'], prefix: {PREFIX}, timeout: 1s, keepalive: 300ms}}\n  \
         backoff_min: 1s\n  backoff_max: 2s\n",
        etcd.client_port
    );
    let daemon = Daemon::start(parse(&yaml)).await.expect("starts");
    assert!(has_backends(&daemon, &["b0", "b1"]).await, "the listing");
    let admin = daemon.admin_addr.unwrap();

    // Change a weight, delete one, add one.
    kv.put(format!("{PREFIX}b"), entry("b1", at(1), 3))
        .await
        .unwrap();
    let reweighted = eventually(WAIT, || async {
        admin::backend(admin, "default@b1").await["configured_weight"] == 3
    })
    .await;
    assert!(reweighted);
    kv.delete(format!("{PREFIX}a")).await.unwrap();
    kv.put(format!("{PREFIX}c"), entry("b2", at(2), 1))
        .await
        .unwrap();
    assert!(has_backends(&daemon, &["b1", "b2"]).await, "the watch");
    let client = client();
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(get(&client, daemon.listen_addr, "/").await);
    }
    let counts = tally(&answers);
    assert_eq!(counts.get("b1"), Some(&6), "{counts:?}");
    assert_eq!(counts.get("b2"), Some(&2), "{counts:?}");

    // A value that is no backend: counted, nothing changes.
    let before = errors(&scrape(&daemon).await);
    kv.put(format!("{PREFIX}c"), "{\"address\": 7}")
        .await
        .unwrap();
    let counted = eventually(WAIT, || async { errors(&scrape(&daemon).await) > before }).await;
    assert!(counted);
    assert!(has_backends(&daemon, &["b1", "b2"]).await);

    // etcd frozen (SIGSTOP): the silent watch is detected, counted, and the set stays.
    let before = errors(&scrape(&daemon).await);
    etcd.signal("-STOP");
    let detected = eventually(WAIT, || async { errors(&scrape(&daemon).await) > before }).await;
    etcd.signal("-CONT");
    assert!(detected, "a frozen watch is detected");
    assert!(has_backends(&daemon, &["b1", "b2"]).await);
    let kv = etcd.client();
    kv.put(format!("{PREFIX}a"), entry("b0", at(0), 1))
        .await
        .unwrap();
    assert!(
        has_backends(&daemon, &["b0", "b1", "b2"]).await,
        "resumed after SIGCONT"
    );
    let age = metric_sum(
        &scrape(&daemon).await,
        "lb_discovery_last_update_timestamp_seconds",
        &[],
    );
    assert!(age > 1.0e9);

    // etcd restarted; meanwhile b0's key is deleted and the history compacted, so the watch
    // cannot resume from its revision: the prefix is listed again and b0 leaves.
    let (client_port, peer_port) = (etcd.client_port, etcd.peer_port);
    drop(etcd);
    let etcd = Etcd::start(&binary, &dir, client_port, peer_port).await;
    let kv = etcd.client();
    kv.delete(format!("{PREFIX}a")).await.unwrap();
    let revision = kv.put("/lb/pools/other/y", "x").await.unwrap();
    kv.compact(revision).await.unwrap();
    assert!(has_backends(&daemon, &["b1", "b2"]).await, "listed again");
    kv.put(format!("{PREFIX}a"), entry("b0", at(0), 2))
        .await
        .unwrap();
    assert!(
        has_backends(&daemon, &["b0", "b1", "b2"]).await,
        "watched again"
    );
    let _ = &etcd.dir;
    daemon.shutdown().await;
}
