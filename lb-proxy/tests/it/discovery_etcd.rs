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
//! `LB_REQUIRE_ETCD=1` (CI sets it) makes its absence a failure.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use lb_proxy::Daemon;
use serde_json::Value;

use crate::support::admin::{self, temp_dir};
use crate::support::process::OwnedChild;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);
const PREFIX: &str = "/lb/pools/default/";

/// An etcd on two loopback ports, its data in a temporary directory; killed (by its PID) when
/// dropped.
struct Etcd {
    child: OwnedChild,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
}

fn etcd_binary() -> Option<PathBuf> {
    crate::support::process::tool("etcd", "LB_REQUIRE_ETCD", "etcd-server", "etcd discovery")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Starts etcd on the given ports (0: free ones) over `dir/data`; free ports that another
    /// test took meanwhile are replaced by others.
    async fn start(binary: &Path, dir: &Path, client_port: u16, peer_port: u16) -> Etcd {
        for _ in 0..5 {
            let client_port = if client_port == 0 {
                free_port()
            } else {
                client_port
            };
            let peer_port = if peer_port == 0 {
                free_port()
            } else {
                peer_port
            };
            if let Some(etcd) = Self::try_start(binary, dir, client_port, peer_port).await {
                return etcd;
            }
        }
        panic!("etcd did not start");
    }

    async fn try_start(
        binary: &Path,
        dir: &Path,
        client_port: u16,
        peer_port: u16,
    ) -> Option<Etcd> {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(binary)
            .args(["--name", "lbtest", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("lbtest={peer}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let mut etcd = Etcd {
            child: OwnedChild(child),
            client_port,
            peer_port,
            dir: dir.to_path_buf(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if etcd.client().put("/probe", "x").await.is_ok() {
                return Some(etcd);
            }
            if etcd.child.try_wait().ok().flatten().is_some() {
                // It could not bind a port: the caller tries others.
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    fn client(&self) -> Kv {
        Kv {
            base: format!("http://127.0.0.1:{}/v3/kv", self.client_port),
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

/// A client of etcd's JSON gateway: keys and values go base64-encoded.
struct Kv {
    base: String,
}

impl Kv {
    /// Puts `key`; the store's revision after it.
    async fn put(&self, key: impl AsRef<str>, value: impl AsRef<str>) -> Result<i64, String> {
        let body = serde_json::json!({
            "key": BASE64.encode(key.as_ref()),
            "value": BASE64.encode(value.as_ref()),
        });
        let answer = self.call("put", body).await?;
        let revision = answer["header"]["revision"].as_str().unwrap_or("0");
        revision
            .parse()
            .map_err(|_| format!("revision {revision:?}"))
    }

    async fn delete(&self, key: impl AsRef<str>) -> Result<(), String> {
        let body = serde_json::json!({"key": BASE64.encode(key.as_ref())});
        self.call("deleterange", body).await.map(drop)
    }

    /// Compacts the history up to `revision`, physically (the watch cannot resume below it).
    async fn compact(&self, revision: i64) -> Result<(), String> {
        let body = serde_json::json!({"revision": revision.to_string(), "physical": true});
        self.call("compaction", body).await.map(drop)
    }

    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        let request = Request::post(format!("{}/{method}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), client().request(request))
            .await
            .map_err(|_| "no answer".to_owned())?
            .map_err(|error| error.to_string())?;
        let status = answer.status();
        let bytes = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let bytes = bytes.to_bytes();
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|error| error.to_string())
    }
}

fn entry(name: &str, address: SocketAddr, weight: u32) -> String {
    serde_json::json!({"name": name, "address": address.to_string(), "weight": weight}).to_string()
}

fn names(backends: &[Value]) -> Vec<String> {
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

fn errors(metrics: &str) -> f64 {
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
