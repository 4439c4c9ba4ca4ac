//! Hot reload in-process: what a reload keeps (breakers, health, overrides, counters, ip_hash
//! placement, connections and streams in flight), what it changes (backends, weights,
//! listeners), and what it refuses (an invalid file, an address that cannot be bound).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use lb_proxy::{ConfigSource, Daemon, ReloadError, StartOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::admin::{self, temp_dir, write_file};
use crate::support::*;

const ADMIN: &str = "admin:\n  listen: 127.0.0.1:0\n";

/// A daemon reading `yaml` from a file in a fresh directory, with the admin API on.
pub async fn from_file(tag: &str, yaml: &str) -> (Daemon, PathBuf) {
    let path = temp_dir(tag).join("lb.yaml");
    write_file(&path, yaml);
    let config = ConfigSource::file(&path).load().expect("valid test config");
    let options = StartOptions {
        source: Some(ConfigSource::file(&path)),
        ..StartOptions::default()
    };
    let daemon = Daemon::start_with(config, options).await.expect("starts");
    (daemon, path)
}

fn names(backends: &[Value]) -> Vec<String> {
    let name = |b: &Value| b["name"].as_str().unwrap_or_default().to_owned();
    backends.iter().map(name).collect()
}

async fn gets(daemon: &Daemon, count: usize) -> Vec<Answer> {
    let client = client();
    let mut answers = Vec::new();
    for _ in 0..count {
        answers.push(get(&client, daemon.listen_addr, "/").await);
    }
    answers
}

#[tokio::test]
async fn a_reload_adds_removes_and_reweights_and_the_series_follow() {
    let fleet = backends(3).await;
    let specs = specs(&fleet);
    let extra = format!("{ADMIN}load_balancer:\n  algorithm: weighted_round_robin\n");
    let yaml = config_yaml(&specs[..2], &extra);
    let (daemon, path) = from_file("add-remove", &yaml).await;
    let admin = daemon.admin_addr.expect("admin on");
    assert_eq!(tally(&gets(&daemon, 10).await).len(), 2);
    let before = scrape(&daemon).await;
    let hash_before = metric_labels(&before, "lb_config_info");

    // b0 leaves, b2 joins, b1 weighs 3.
    let mut next = specs[1..].to_vec();
    next[0].2 = 3;
    write_file(&path, &config_yaml(&next, &extra));
    let report = daemon.reloader().reload().await.expect("reload applies");
    assert!(report.changes.contains(&"backend b0 removed".to_owned()));
    assert!(report.changes.contains(&"backend b2 added".to_owned()));
    assert!(report.changes.contains(&"backend b1 updated".to_owned()));
    assert_eq!(names(&admin::backends(admin).await), ["b1", "b2"]);
    assert_eq!(admin::backend(admin, "b1").await["weight"], 3);

    let counts = tally(&gets(&daemon, 40).await);
    assert_eq!(counts.get("b1"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("b2"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("b0"), None, "{counts:?}");

    let after = scrape(&daemon).await;
    assert!(
        !after.contains("backend=\"b0\""),
        "b0's series are gone:\n{after}"
    );
    assert!(after.contains("lb_backend_weight{backend=\"b2\",pool=\"default\"} 1"));
    assert!(after.contains("lb_backend_weight{backend=\"b1\",pool=\"default\"} 3"));
    assert_eq!(
        metric_sum(&after, "lb_config_reloads_total", &["result=\"success\""]),
        1.0
    );
    let successful = metric_sum(&after, "lb_config_last_reload_successful", &[]);
    assert_eq!(successful, 1.0);
    let hash_after = metric_labels(&after, "lb_config_info");
    assert_eq!(hash_after.len(), 1, "one lb_config_info series");
    assert_ne!(hash_after, hash_before);
    assert!(hash_after[0].contains(&report.hash));
    assert!(
        metric_sum(
            &after,
            "lb_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );
    daemon.shutdown().await;
}

/// The label sets of every series of `name`.
fn metric_labels(metrics: &str, name: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .map(|line| line.split(' ').next().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_says_where() {
    let fleet = backends(2).await;
    let yaml = config_yaml(&specs(&fleet), ADMIN);
    let (daemon, path) = from_file("invalid", &yaml).await;
    let hash = metric_labels(&scrape(&daemon).await, "lb_config_info");
    write_file(&path, &yaml.replace("weight: 1", "weight: -4"));
    let error = daemon.reloader().reload().await.expect_err("invalid file");
    let message = error.to_string();
    assert!(matches!(error, ReloadError::Load(_)), "{message}");
    assert!(message.contains("lb.yaml:"), "located: {message}");
    let answers = gets(&daemon, 4).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(tally(&answers).len(), 2, "both backends still serve");
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_config_reloads_total", &["result=\"failure\""]),
        1.0
    );
    assert_eq!(
        metric_sum(&metrics, "lb_config_reloads_total", &["result=\"success\""]),
        0.0
    );
    assert_eq!(
        metric_labels(&metrics, "lb_config_info"),
        hash,
        "the old file is live"
    );
    let successful = metric_sum(&metrics, "lb_config_last_reload_successful", &[]);
    assert_eq!(successful, 0.0, "the last reload was refused");

    // Through the admin API: 422 with the location.
    let admin = daemon.admin_addr.unwrap();
    let answer = admin::call(admin, "POST", "/reload", None, None).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer.json["error"].as_str().unwrap().contains("lb.yaml:"),
        "{:?}",
        answer.json
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_listener_that_cannot_be_bound_keeps_the_old_configuration() {
    let fleet = backends(2).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let yaml = config_yaml(&specs(&fleet), ADMIN);
    let (daemon, path) = from_file("bind-fails", &yaml).await;
    // The port is taken, and the same file also drops b1: neither happens.
    let moved = config_yaml(&specs(&fleet)[..1], ADMIN).replacen(
        "listen: 127.0.0.1:0",
        &format!("listen: {taken_addr}"),
        1,
    );
    write_file(&path, &moved);
    let error = daemon.reloader().reload().await.expect_err("port in use");
    assert!(
        matches!(error, ReloadError::Bind { what: "proxy", .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&taken_addr.to_string()));
    assert_eq!(
        names(&admin::backends(daemon.admin_addr.unwrap()).await),
        ["b0", "b1"]
    );
    assert_eq!(
        get(&client(), daemon.listen_addr, "/").await.status,
        StatusCode::OK
    );
    drop(taken);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_new_listen_address_serves_before_the_old_closes_and_old_connections_live_on() {
    let fleet = backends(1).await;
    let yaml = config_yaml(&specs(&fleet), ADMIN);
    let (daemon, path) = from_file("move", &yaml).await;
    let old = daemon.listen_addr;
    let mut kept = TcpStream::connect(old).await.unwrap();
    assert_eq!(raw::get_on(&mut kept, "/").await.status, 200);

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    write_file(
        &path,
        &yaml.replacen("listen: 127.0.0.1:0", &format!("listen: {free}"), 1),
    );
    let report = daemon.reloader().reload().await.expect("moves");
    assert_eq!(report.addresses.listen, free);
    assert_eq!(get(&client(), free, "/").await.status, StatusCode::OK);
    // The connection accepted on the old address still serves; the old address takes no more.
    assert_eq!(raw::get_on(&mut kept, "/").await.status, 200);
    assert!(
        TcpStream::connect(old).await.is_err(),
        "the old address is closed"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_removed_backend_finishes_its_requests_then_its_series_go() {
    let fleet = backends(2).await;
    let specs = specs(&fleet);
    let (daemon, path) = from_file("removed", &config_yaml(&specs[1..], ADMIN)).await;
    let addr = daemon.listen_addr;
    let slow = tokio::spawn(async move { get(&client(), addr, "/delay/600").await });
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric_sum(&scrape(&daemon).await, "lb_active_connections", &["b1"]) == 1.0
        })
        .await
    );
    write_file(&path, &config_yaml(&specs[..1], ADMIN));
    daemon.reloader().reload().await.expect("reload");
    // New requests go to b0 at once; the request in flight on b1 finishes.
    assert_eq!(get(&client(), addr, "/").await.backend(), "b0");
    let answer = slow.await.unwrap();
    assert_eq!(
        (answer.status, answer.backend()),
        (StatusCode::OK, "b1".to_owned())
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            !scrape(&daemon).await.contains("backend=\"b1\"")
        })
        .await,
        "b1's series are removed once its last request ended"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_streaming_response_is_not_cut_by_a_reload() {
    let fleet = backends(2).await;
    let specs = specs(&fleet);
    let (daemon, path) = from_file("stream", &config_yaml(&specs[..1], ADMIN)).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let size = 8 * 1024 * 1024;
    let request = format!("GET /bytes/{size} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let mut received = stream.read(&mut first).await.unwrap();
    // Reloads that touch everything but the stream's backend: a backend joins and leaves,
    // retries, the pool and the breaker change.
    for round in 0..4 {
        let mut yaml = config_yaml(&specs[..1 + round % 2], ADMIN);
        yaml.push_str(&format!("retry:\n  max_attempts: {}\n", 2 + round));
        write_file(&path, &yaml);
        daemon.reloader().reload().await.expect("reload");
    }
    let mut rest = Vec::new();
    received += tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest))
        .await
        .expect("the stream ends")
        .unwrap();
    let head = find(&first, b"\r\n\r\n").expect("a head") + 4;
    assert_eq!(received - head, size, "every byte arrived");
    daemon.shutdown().await;
}

#[tokio::test]
async fn ip_hash_clients_of_surviving_backends_stay_where_they_were() {
    let fleet = backends(4).await;
    let specs = specs(&fleet);
    let extra = format!(
        "{ADMIN}load_balancer:\n  algorithm: ip_hash\nserver:\n  trusted_proxies: [127.0.0.1/32]\n"
    );
    let (daemon, path) = from_file("ip-hash", &config_yaml(&specs[..3], &extra)).await;
    let placement = |daemon: &Daemon| {
        let addr = daemon.listen_addr;
        async move {
            let client = client();
            let mut placed = Vec::new();
            for n in 0..120u32 {
                let request = http::Request::get(format!("http://{addr}/"))
                    .header("x-forwarded-for", format!("10.{}.{}.7", n / 200, n % 200))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                placed.push(send(&client, request).await.backend());
            }
            placed
        }
    };
    let before = placement(&daemon).await;
    // b3 joins and b2 leaves: a client of b0 or b1 stays or moves to b3, never elsewhere.
    let next = vec![specs[0].clone(), specs[1].clone(), specs[3].clone()];
    write_file(&path, &config_yaml(&next, &extra));
    daemon.reloader().reload().await.expect("reload");
    let after = placement(&daemon).await;
    let mut stayed = 0;
    for (was, now) in before.iter().zip(&after) {
        if was == "b0" || was == "b1" {
            assert!(
                now == was || now == "b3",
                "a client of {was} moved to {now}"
            );
            stayed += usize::from(now == was);
        } else {
            assert_ne!(now, "b2");
        }
    }
    assert!(stayed > 0);
    daemon.shutdown().await;
}

#[tokio::test]
async fn what_needs_a_restart_is_reported_and_the_rest_applies() {
    let fleet = backends(2).await;
    let yaml = config_yaml(&specs(&fleet), ADMIN);
    let (daemon, path) = from_file("restart", &yaml).await;
    let changed = yaml.replacen("server:\n", "server:\n  workers: 3\n", 1);
    let changed = changed.replacen("weight: 1", "weight: 2", 1);
    write_file(&path, &changed);
    let report = daemon.reloader().reload().await.expect("reload");
    assert_eq!(report.needs_restart.len(), 1, "{report:?}");
    assert!(report.needs_restart[0].contains("server.workers"));
    let admin = daemon.admin_addr.unwrap();
    assert_eq!(
        admin::backend(admin, "b0").await["weight"],
        2,
        "the rest applied"
    );
    let config = admin::call(admin, "GET", "/config", None, None).await.json;
    assert_eq!(config["server"]["workers"], 0, "the running value stays");
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_file_watch_reloads_a_changed_file_and_ignores_its_neighbours() {
    let fleet = backends(2).await;
    let specs = specs(&fleet);
    let extra = format!("{ADMIN}reload:\n  watch: true\n  debounce: 50ms\n");
    let (daemon, path) = from_file("watch", &config_yaml(&specs, &extra)).await;
    let admin = daemon.admin_addr.unwrap();
    std::fs::write(path.with_file_name("neighbour.txt"), "x").unwrap();
    write_file(&path, &config_yaml(&specs[..1], &extra));
    assert!(
        eventually(Duration::from_secs(10), || async {
            names(&admin::backends(admin).await) == ["b0"]
        })
        .await,
        "the change was applied"
    );
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_config_reloads_total", &[]),
        1.0,
        "one reload"
    );
    daemon.shutdown().await;
}

/// Reads a backend's view without the fields that move with traffic.
fn steady(view: &Value) -> Value {
    let mut view = view.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("in_flight");
        map.remove("drain_done");
    }
    view
}

#[tokio::test]
async fn a_reload_that_changes_one_backend_leaves_the_others_identical() {
    let fleet = backends(3).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr: SocketAddr = dead.local_addr().unwrap();
    drop(dead);
    let mut specs = specs(&fleet);
    specs.push(("down".to_owned(), dead_addr, 1));
    let extra = format!(
        "{ADMIN}circuit_breaker:\n  failure_threshold: 1\n  open_duration: 60s\nretry:\n  max_attempts: 4\n"
    );
    let (daemon, path) = from_file("one-change", &config_yaml(&specs, &extra)).await;
    let admin = daemon.admin_addr.unwrap();
    // State worth keeping: down's breaker opens, b1 is drained, b2 weighs 7 by override.
    for answer in gets(&daemon, 8).await {
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "retried around the dead backend"
        );
    }
    assert_eq!(admin::backend(admin, "down").await["breaker"], "open");
    admin::act(admin, "b1", "drain").await;
    admin::set_weight(admin, "b2", Some(7)).await;
    let before = admin::backends(admin).await;
    let counters = scrape(&daemon).await;

    specs[0].2 = 5;
    write_file(&path, &config_yaml(&specs, &extra));
    let report = daemon.reloader().reload().await.expect("reload");
    assert_eq!(report.changes, ["backend b0 updated"]);
    let after = admin::backends(admin).await;
    for (was, now) in before.iter().zip(&after) {
        if was["name"] == "b0" {
            assert_eq!(now["weight"], 5);
        } else {
            assert_eq!(steady(was), steady(now), "unchanged by the reload");
        }
    }
    let counters_after = scrape(&daemon).await;
    for name in ["b1", "b2", "down"] {
        for metric in [
            "lb_requests_total",
            "lb_circuit_breaker_transitions_total",
            "lb_retries_total",
        ] {
            let label = format!("backend=\"{name}\"");
            assert_eq!(
                metric_sum(&counters, metric, &[&label]),
                metric_sum(&counters_after, metric, &[&label]),
                "{metric} of {name}"
            );
        }
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn runtime_overrides_survive_a_reload_unless_the_file_changes_that_backend() {
    let fleet = backends(2).await;
    let mut specs = specs(&fleet);
    let (daemon, path) = from_file("overrides", &config_yaml(&specs, ADMIN)).await;
    let admin = daemon.admin_addr.unwrap();
    admin::act(admin, "b0", "drain").await;
    admin::set_weight(admin, "b1", Some(4)).await;
    // A reload that changes another section keeps both.
    write_file(
        &path,
        &format!("{}retry:\n  max_attempts: 3\n", config_yaml(&specs, ADMIN)),
    );
    daemon.reloader().reload().await.expect("reload");
    let b0 = admin::backend(admin, "b0").await;
    let b1 = admin::backend(admin, "b1").await;
    assert_eq!(
        (b0["drained"].clone(), b0["overrides"].clone()),
        (true.into(), serde_json::json!(["drain"]))
    );
    assert_eq!(
        (b1["weight"].clone(), b1["configured_weight"].clone()),
        (4.into(), 1.into())
    );
    // The file changes b1: the file wins, and the report says so.
    specs[1].2 = 2;
    write_file(&path, &config_yaml(&specs, ADMIN));
    let report = daemon.reloader().reload().await.expect("reload");
    assert!(
        report.notes.iter().any(|note| note.contains("b1")),
        "{report:?}"
    );
    let b1 = admin::backend(admin, "b1").await;
    assert_eq!(
        (b1["weight"].clone(), b1["overrides"].clone()),
        (2.into(), serde_json::json!([]))
    );
    assert_eq!(admin::backend(admin, "b0").await["drained"], true);
    daemon.shutdown().await;
}
