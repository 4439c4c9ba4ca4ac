//! The `lb` binary: config errors, port in use, graceful shutdown on SIGTERM, and the metrics
//! exposition checked by `promtool`.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::support::process::*;
use crate::support::*;

#[test]
fn invalid_config_exits_2_with_located_errors() {
    let dir = temp_dir("invalid");
    let path = write_config(
        &dir,
        "bad.yaml",
        "load_balancer:\n  algorithm: least_conections\nbackends:\n  - address: 127.0.0.1:1\n    weight: 0\n",
    );
    let output = lb().arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml:2:"), "{stderr}");
    assert!(
        stderr.contains("least_connections"),
        "hint expected: {stderr}"
    );
    assert!(stderr.contains("backends[0].weight"), "{stderr}");
    let output = lb().arg(dir.join("missing.yaml")).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}

#[test]
fn check_flag_validates_and_exits_0() {
    let dir = temp_dir("check");
    let path = write_config(&dir, "ok.yaml", "backends:\n  - address: 127.0.0.1:8001\n");
    let output = lb().arg(&path).arg("--check").output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok"));
    // One backend and the default 3 attempts: valid, with the warning lb-cli check gives.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ok.yaml: warning: retry.max_attempts: 3 attempts for 1 backend"),
        "{stderr}"
    );
}

#[test]
fn port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = temp_dir("inuse");
    let path = write_config(
        &dir,
        "inuse.yaml",
        &format!(
            "server:\n  listen: {addr}\nmetrics:\n  listen: 127.0.0.1:0\nbackends:\n  - address: 127.0.0.1:8001\n"
        ),
    );
    let output = lb().arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let fleet = backends(1).await;
    let dir = temp_dir("sigterm");
    let yaml = config_yaml(&specs(&fleet), "server:\n  shutdown_grace: 10s\n");
    let path = write_config(&dir, "lb.yaml", &yaml);
    let (mut child, listen, _metrics) = spawn(&path);
    let client = client();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, listen, "/delay/800").await })
    };
    // Wait until the slow request is at the backend before signalling.
    let arrived = eventually(Duration::from_secs(5), || async {
        fleet[0].stats().snapshot().in_flight == 1
    })
    .await;
    assert!(arrived, "slow request never reached the backend");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    // New connections are refused once the listener is closed.
    let refused = eventually(Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(listen).await.is_err()
    })
    .await;
    assert!(refused, "the listener still accepts after SIGTERM");
    let answer = slow.await.unwrap();
    assert_eq!(
        answer.status,
        200,
        "the in-flight request was cut: {}",
        answer.text()
    );
    assert_eq!(
        exit_code(&mut child).await,
        Some(0),
        "lb did not exit 0 after draining"
    );
}

#[tokio::test]
async fn metrics_pass_promtool_and_match_traffic() {
    let fleet = backends(2).await;
    let daemon = balancer(&fleet, "").await;
    let client = client();
    for _ in 0..10 {
        assert_eq!(get(&client, daemon.listen_addr, "/").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            get(&client, daemon.listen_addr, "/status/404").await.status,
            404
        );
    }
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(
            &metrics,
            "lb_requests_total",
            &["status=\"200\"", "method=\"GET\""]
        ),
        10.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "lb_requests_total", &["status=\"404\""]),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "lb_request_duration_seconds_count", &[]),
        13.0,
        "{metrics}"
    );
    assert_eq!(metric_sum(&metrics, "lb_backend_health_status", &[]), 2.0);
    assert_eq!(metric_sum(&metrics, "lb_circuit_breaker_state", &[]), 0.0);
    assert_eq!(metric_sum(&metrics, "lb_active_connections", &[]), 0.0);
    for name in [
        "lb_request_size_bytes_count",
        "lb_response_size_bytes_count",
        "lb_client_connections",
        "lb_client_connections_accepted_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    for name in [
        "lb_retries_total",
        "lb_health_checks_total",
        "lb_circuit_breaker_transitions_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} counter")),
            "{name} not declared:\n{metrics}"
        );
    }

    let mut promtool = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) if std::env::var_os("LB_REQUIRE_PROMTOOL").is_some() => {
            panic!("promtool is required here (Debian package `prometheus`): {error}")
        }
        Err(_) => {
            eprintln!(
                "promtool not found: skipping `promtool check metrics` (install the Debian package `prometheus`)"
            );
            daemon.shutdown().await;
            return;
        }
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    daemon.shutdown().await;
}

#[cfg(feature = "demo")]
#[tokio::test]
async fn demo_serves_three_backends_and_stops_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::process::Stdio;

    let mut child = lb()
        .args([
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words.first(),
        Some(&"listening"),
        "unexpected first line: {line}"
    );
    let listen: SocketAddr = words[2].parse().unwrap();
    let metrics: SocketAddr = words[5].parse().unwrap();
    let client = client();
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let all = eventually(Duration::from_secs(10), || async {
        let answer = get(&client, listen, "/").await;
        let mut seen = seen.lock().unwrap();
        if answer.status == 200 {
            seen.insert(answer.backend());
        }
        seen.len() == 3
    })
    .await;
    let seen = seen.into_inner().unwrap();
    assert!(
        all,
        "the demo should rotate over demo-1, demo-2 and demo-3: {seen:?}"
    );
    let text = get(&client, metrics, "/metrics").await.text();
    assert!(
        text.contains("lb_backend_health_status{backend=\"demo-3\"}"),
        "{text}"
    );
    // HTTP/2 with prior knowledge, as the banner suggests trying.
    let stream = tokio::net::TcpStream::connect(listen).await.unwrap();
    let mut h2 = crate::support::websocket::h2_over(stream).await;
    let request = http::Request::get(format!("http://{listen}/"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let answer = h2.send_request(request).await.unwrap();
    assert_eq!(
        (answer.status(), answer.version()),
        (http::StatusCode::OK, http::Version::HTTP_2)
    );
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        exit_code(&mut child).await,
        Some(0),
        "the demo did not stop cleanly on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_socket_path_that_is_not_a_socket_is_left_alone() {
    let fleet = backends(1).await;
    let dir = temp_dir("upgrade-path");
    let path = write_config(&dir, "lb.yaml", &config_yaml(&specs(&fleet), ""));
    // A wrong --upgrade-socket (the config file itself) must not be deleted or replaced.
    let config = path.clone();
    let wrong = path.to_str().unwrap().to_owned();
    let lb = tokio::task::spawn_blocking(move || Lb::start(&config, &["--upgrade-socket", &wrong]))
        .await
        .unwrap();
    assert_eq!(get(&client(), lb.listen, "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&path).expect("the file is still there");
    assert!(text.contains("backends:"), "the file is intact");
    drop(lb);
    let _ = std::fs::remove_dir_all(&dir);
}
