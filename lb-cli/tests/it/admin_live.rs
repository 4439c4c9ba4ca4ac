//! The admin verbs against the real daemon (in-process, port 0) over real test backends:
//! `lb-cli drain b2` takes b2 out of rotation while its request in flight finishes, and the
//! other verbs change what the daemon does.

use std::process::Command;
use std::time::Duration;

use lb_core::config::Format;
use lb_proxy::{ConfigSource, Daemon, StartOptions};
use test_backend::{BackendOptions, RunningBackend};

use crate::support::get;

async fn backend(name: &str) -> RunningBackend {
    crate::support::backend(BackendOptions {
        name: name.to_owned(),
        ..BackendOptions::default()
    })
    .await
}

/// Runs `lb-cli ARGS --admin URL` off the async workers; returns (exit code, stdout, stderr).
async fn lb_cli(admin: String, args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_lb-cli"))
            .args(&args)
            .args(["--admin", &admin])
            .env_remove("LB_ADMIN_URL")
            .env_remove("LB_ADMIN_TOKEN")
            .output()
            .expect("lb-cli runs");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    })
    .await
    .unwrap()
}

/// The backend that answered `GET /` (test backends name themselves in `x-backend`).
async fn who(proxy: std::net::SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(proxy).unwrap();
        let request = "GET / HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        (response.lines())
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("x-backend: ")
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_enable_weight_and_reload_through_lb_cli() {
    let fleet = [
        backend("b0").await,
        backend("b1").await,
        backend("b2").await,
    ];
    let dir = std::env::temp_dir().join(format!("lb-cli-admin-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lb.yaml");
    let mut yaml = String::from(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  enabled: false\nadmin:\n  listen: 127.0.0.1:0\n\
         health_check:\n  enabled: false\nload_balancer:\n  algorithm: weighted_round_robin\nbackends:\n",
    );
    for b in &fleet {
        yaml.push_str(&format!(
            "  - name: {}\n    address: {}\n",
            b.name(),
            b.addr()
        ));
    }
    std::fs::write(&path, &yaml).unwrap();
    let config = lb_core::config::parse(&yaml, Format::Yaml, "lb.yaml").unwrap();
    let options = StartOptions {
        source: Some(ConfigSource::file(&path)),
        ..StartOptions::default()
    };
    let daemon = Daemon::start_with(config, options).await.unwrap();
    let proxy = daemon.listen_addr;
    let admin = format!("http://{}", daemon.admin_addr.unwrap());

    // A slow request in flight on b2 (the third in the rotation).
    let mut placed = Vec::new();
    for _ in 0..2 {
        placed.push(who(proxy).await);
    }
    let slow = tokio::spawn(get(proxy, "/delay/800"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fleet[2].stats().snapshot().in_flight,
        1,
        "placed: {placed:?}"
    );

    let (code, out, err) = lb_cli(admin.clone(), &["drain", "b2"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    for _ in 0..9 {
        assert_ne!(
            who(proxy).await,
            "b2",
            "a drained backend takes no new request"
        );
    }
    assert_eq!(slow.await.unwrap(), 200, "its request in flight finished");
    let (code, table, _) = lb_cli(admin.clone(), &["backends"]).await;
    assert_eq!(code, Some(0));
    let row = table
        .lines()
        .find(|line| line.starts_with("b2"))
        .expect("b2 listed");
    assert!(row.contains("drained"), "{table}");

    let (code, _, _) = lb_cli(admin.clone(), &["enable", "b2"]).await;
    assert_eq!(code, Some(0));
    let (code, _, _) = lb_cli(admin.clone(), &["weight", "b0", "4"]).await;
    assert_eq!(code, Some(0));
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for _ in 0..12 {
        *counts.entry(who(proxy).await).or_default() += 1;
    }
    assert_eq!(
        (counts["b0"], counts["b1"], counts["b2"]),
        (8, 2, 2),
        "{counts:?}"
    );

    let (code, _, err) = lb_cli(admin.clone(), &["drain", "b9"]).await;
    assert_eq!(code, Some(3), "an unknown backend: {err}");
    assert!(err.contains("b9"), "{err}");

    std::fs::write(&path, yaml.replace("  - name: b2", "  - name: b3")).unwrap();
    let (code, out, err) = lb_cli(admin.clone(), &["reload"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("b2") && out.contains("b3"), "{out}");
    std::fs::write(&path, "backends: [").unwrap();
    let (code, _, err) = lb_cli(admin, &["reload"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("lb.yaml:"),
        "the location reaches the operator: {err}"
    );
    daemon.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
