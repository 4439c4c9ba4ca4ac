//! The access log: every field of a JSON line, the combined format, sampling, a stalled sink
//! that never delays a request (its lines dropped and counted), and `SIGUSR1` after logrotate's
//! rename continuing in a new file with no line lost, reloads that turn the log on, move it or
//! are refused, and the last lines written at exit (the real binary).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use crate::support::admin::{temp_dir, write_file};
use crate::support::process::{Lb, lb};
use crate::support::*;

/// The lines of `path` (none while it does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Waits (bounded) until `path` holds `count` lines, and returns them.
async fn wait_lines(path: &Path, count: usize) -> Vec<String> {
    let reached = eventually(Duration::from_secs(10), || async {
        lines(path).len() >= count
    })
    .await;
    let found = lines(path);
    assert!(
        reached,
        "{} lines of {count} in {}",
        found.len(),
        path.display()
    );
    found
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
}

/// A loopback port nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

const FIELDS: [&str; 19] = [
    "time",
    "client",
    "method",
    "target",
    "protocol",
    "status",
    "bytes_in",
    "bytes_out",
    "body_failed",
    "duration_ms",
    "route",
    "pool",
    "backend",
    "attempts",
    "retry_reasons",
    "request_id",
    "tls_version",
    "sni",
    "trace_id",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_every_field() {
    let live = backend("live").await;
    let dead = closed_port();
    let path = temp_dir("access-json").join("access.log");
    let specs = vec![
        ("dead".to_owned(), dead, 1),
        (live.name().to_owned(), live.addr(), 1),
    ];
    let extra = format!(
        "access_log:\n  target: file\n  path: {}\ncircuit_breaker:\n  enabled: false\n",
        path.display()
    );
    let daemon = lb_proxy::Daemon::start(parse(&config_yaml(&specs, &extra)))
        .await
        .unwrap();
    let client = client();
    for _ in 0..4 {
        let answer = get(&client, daemon.listen_addr, "/a/b?q=1").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let post = Request::post(format!("http://{}/echo", daemon.listen_addr))
        .body(Full::new(Bytes::from_static(b"0123456789")))
        .unwrap();
    let echoed = send(&client, post).await;
    assert_eq!(echoed.status, StatusCode::OK);

    let found = wait_lines(&path, 5).await;
    let records: Vec<Value> = found.iter().map(|line| json(line)).collect();
    for record in &records {
        for field in FIELDS {
            assert!(record.get(field).is_some(), "{field} missing: {record}");
        }
        let time = record["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-12-06T23:32:19.123Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        assert_eq!(record["client"], "127.0.0.1");
        assert_eq!(record["protocol"], "HTTP/1.1");
        assert_eq!(record["status"], 200);
        assert_eq!(record["route"], "default");
        assert_eq!(record["pool"], "default");
        assert_eq!(record["backend"], "live");
        assert!(record["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(record["bytes_out"].as_u64().unwrap() > 0);
        assert!(record["tls_version"].is_null() && record["sni"].is_null());
        let attempts = record["attempts"].as_array().unwrap();
        let last = attempts.last().unwrap();
        assert_eq!(last["backend"], "live");
        assert_eq!(last["status"], 200);
        assert!(last["failure"].is_null());
        assert_eq!(
            record["retry_reasons"].as_array().unwrap().len(),
            attempts.len() - 1
        );
    }
    let gets: Vec<&Value> = records.iter().filter(|r| r["method"] == "GET").collect();
    assert_eq!(gets.len(), 4);
    assert!(gets.iter().all(|r| r["target"] == "/a/b?q=1"));
    // Round robin sends some first attempts to the dead backend: those were retried.
    let retried: Vec<&&Value> = gets
        .iter()
        .filter(|r| r["attempts"].as_array().unwrap().len() == 2)
        .collect();
    assert!(!retried.is_empty(), "{records:?}");
    for record in retried {
        let first = &record["attempts"][0];
        assert_eq!(first["backend"], "dead");
        assert_eq!(first["failure"], "connect_refused");
        assert!(first["status"].is_null());
        assert_eq!(record["retry_reasons"][0], "connect_refused");
    }
    let post = records.iter().find(|r| r["method"] == "POST").unwrap();
    assert_eq!(post["target"], "/echo");
    assert_eq!(post["bytes_in"], 10);
    assert_eq!(
        post["bytes_out"].as_u64().unwrap(),
        echoed.body.len() as u64
    );
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_a_backend_are_logged_too() {
    let fleet = backends(1).await;
    let path = temp_dir("access-local").join("access.log");
    let extra = format!(
        "access_log:\n  target: file\n  path: {}\nroutes:\n  - name: gone\n    match: {{path_prefix: /gone}}\n    respond: {{status: 410, body: \"gone\\n\"}}\n  - name: rest\n",
        path.display()
    );
    let daemon = balancer(&fleet, &extra).await;
    let answer = get(&client(), daemon.listen_addr, "/gone").await;
    assert_eq!(answer.status, StatusCode::GONE);
    let found = wait_lines(&path, 1).await;
    let record = json(&found[0]);
    assert_eq!(record["status"], 410);
    assert_eq!(record["route"], "gone");
    assert!(record["backend"].is_null() && record["pool"].is_null());
    assert_eq!(record["attempts"].as_array().unwrap().len(), 0);
    assert_eq!(record["bytes_out"], 5);
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_format_lines() {
    let fleet = backends(1).await;
    let path = temp_dir("access-combined").join("access.log");
    let extra = format!(
        "access_log:\n  format: combined\n  target: file\n  path: {}\n",
        path.display()
    );
    let daemon = balancer(&fleet, &extra).await;
    let answer = get(&client(), daemon.listen_addr, "/status/404").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let found = wait_lines(&path, 1).await;
    let line = &found[0];
    // 127.0.0.1 - - [06/Dec/2026:23:32:19 +0000] "GET /status/404 HTTP/1.1" 404 4 "-" "-"
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    let tail = format!(
        " +0000] \"GET /status/404 HTTP/1.1\" 404 {} \"-\" \"-\"",
        answer.body.len()
    );
    assert!(line.ends_with(&tail), "{line}");
    let date = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
    assert_eq!(date.len(), "06/Dec/2026:23:32:19 +0000".len(), "{date}");
    daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_keeps_errors_only_or_one_in_n() {
    let fleet = backends(1).await;
    let dir = temp_dir("access-sample");
    let errors = dir.join("errors.log");
    let extra = format!(
        "access_log:\n  target: file\n  path: {}\n  sample: {{errors_only: true}}\n",
        errors.display()
    );
    let daemon = balancer(&fleet, &extra).await;
    let client = client();
    for path in ["/", "/status/500", "/", "/status/404", "/status/302"] {
        get(&client, daemon.listen_addr, path).await;
    }
    let metrics = daemon.metrics_addr.unwrap();
    // Every request answered (and logged or not) is counted before the check.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let text = scrape_at(metrics).await;
            metric_sum(&text, "lb_requests_total", &[]) >= 5.0
        })
        .await
    );
    let found = wait_lines(&errors, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let found_later = lines(&errors);
    assert_eq!(found_later.len(), 2, "{found:?}");
    let statuses: Vec<u64> = found_later
        .iter()
        .map(|line| json(line)["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 404]);
    daemon.shutdown().await;

    let every_third = dir.join("third.log");
    let extra = format!(
        "access_log:\n  target: file\n  path: {}\n  sample: {{one_in: 3}}\n",
        every_third.display()
    );
    let daemon = balancer(&fleet, &extra).await;
    for index in 0..9 {
        get(&client, daemon.listen_addr, &format!("/{index}")).await;
    }
    let found = wait_lines(&every_third, 3).await;
    let targets: Vec<String> = found
        .iter()
        .map(|line| json(line)["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(targets, ["/0", "/3", "/6"]);
    daemon.shutdown().await;
}

/// A syslog socket that never reads: its queue fills, sends block (up to the writer's timeout),
/// the buffer of 4 lines fills, and further lines are dropped and counted while every request
/// is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_never_delays_requests_and_drops_are_counted() {
    let fleet = backends(1).await;
    let socket_path = temp_dir("access-stalled").join("log.sock");
    let _stalled = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    let extra = format!(
        "access_log:\n  target: syslog\n  buffer: 4\n  syslog: {{socket: {}}}\n",
        socket_path.display()
    );
    let daemon = balancer(&fleet, &extra).await;
    let client = client();
    // With a blocking log each request would wait up to a second per line: 400 of them would
    // outlast the test's own limit many times over.
    let all = async {
        for _ in 0..400 {
            assert_eq!(
                get(&client, daemon.listen_addr, "/").await.status,
                StatusCode::OK
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("requests are not held by the stalled log");
    let text = scrape(&daemon).await;
    let dropped = metric_sum(&text, "lb_access_log_dropped_total", &[]);
    let written = metric_sum(&text, "lb_access_log_lines_total", &[]);
    assert!(dropped >= 300.0, "dropped {dropped}, written {written}");
    daemon.shutdown().await;
}

/// `SIGUSR1` after a rename: the lines before it are in the renamed file, the lines after in a
/// new file at the configured path; none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_after_a_rename_continues_in_a_new_file() {
    let fleet = backends(1).await;
    let dir = temp_dir("access-rotate");
    let path = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let config = dir.join("lb.yaml");
    let extra = format!("access_log:\n  target: file\n  path: {}\n", path.display());
    write_file(&config, &config_yaml(&specs(&fleet), &extra));
    let lb = Lb::start_async(&config, &[]).await;
    let client = client();
    for index in 0..20 {
        get(&client, lb.listen, &format!("/before/{index}")).await;
    }
    wait_lines(&path, 20).await;
    std::fs::rename(&path, &rotated).unwrap();
    lb.signal("USR1");
    assert!(
        eventually(Duration::from_secs(10), || async { path.exists() }).await,
        "the file is reopened at its path"
    );
    for index in 0..30 {
        get(&client, lb.listen, &format!("/after/{index}")).await;
    }
    let after = wait_lines(&path, 30).await;
    let before = lines(&rotated);
    assert_eq!(before.len(), 20);
    assert_eq!(after.len(), 30);
    assert!(before.iter().all(|line| line.contains("/before/")));
    assert!(after.iter().all(|line| line.contains("/after/")));
}

/// `lb CONFIG --access-log -`: the flag turns the log on, on stdout, one JSON line per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_writes_json_lines_to_stdout() {
    let fleet = backends(1).await;
    let config = temp_dir("access-flag").join("lb.yaml");
    write_file(&config, &config_yaml(&specs(&fleet), ""));
    let mut child = lb()
        .arg(&config)
        .args(["--access-log", "-"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let first = receiver.recv_timeout(Duration::from_secs(20)).unwrap();
    let listen: SocketAddr = first.split_whitespace().nth(2).unwrap().parse().unwrap();
    let client = client();
    for index in 0..5 {
        get(&client, listen, &format!("/flag/{index}")).await;
    }
    let mut found = Vec::new();
    while found.len() < 5 {
        let line = receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("a line per request");
        found.push(json(&line));
    }
    // A line is written when its response's body is done with, which may come just after
    // the client read the response and sent the next request: lines may swap.
    let mut targets: Vec<&str> = found
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    targets.sort_unstable();
    assert_eq!(
        targets,
        ["/flag/0", "/flag/1", "/flag/2", "/flag/3", "/flag/4"]
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn an_unopenable_file_stops_the_start_with_its_name() {
    let fleet = backends(1).await;
    let extra = "access_log:\n  target: file\n  path: /nonexistent-dir-lb/access.log\n";
    let config = parse(&config_yaml(&specs(&fleet), extra));
    let error = lb_proxy::Daemon::start(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("/nonexistent-dir-lb/access.log"), "{error}");
}

/// `logrotate`, or `None` (the test then says so and passes, unless `LB_REQUIRE_LOGROTATE=1`,
/// which CI sets, makes its absence a failure).
fn logrotate() -> Option<std::path::PathBuf> {
    crate::support::process::tool(
        "logrotate",
        "LB_REQUIRE_LOGROTATE",
        "logrotate",
        "config/logrotate/lb",
    )
}

/// The shipped `config/logrotate/lb`, run by the real logrotate against the real binary (its
/// path and its postrotate signal pointed at this test's): the old lines are in the rotated
/// file, the new ones in a new file lb made, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_logrotate_file_rotates_without_losing_a_line() {
    let Some(logrotate) = logrotate() else {
        return;
    };
    let fleet = backends(1).await;
    let dir = temp_dir("access-logrotate");
    let path = dir.join("access.log");
    let config = dir.join("lb.yaml");
    let extra = format!("access_log:\n  target: file\n  path: {}\n", path.display());
    write_file(&config, &config_yaml(&specs(&fleet), &extra));
    let lb = Lb::start_async(&config, &[]).await;
    let client = client();
    for index in 0..10 {
        get(&client, lb.listen, &format!("/before/{index}")).await;
    }
    wait_lines(&path, 10).await;

    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/logrotate/lb"),
    )
    .unwrap();
    assert!(shipped.contains("/var/log/lb/access.log {"));
    assert!(shipped.contains("systemctl kill --signal=USR1 --kill-whom=main lb.service"));
    let rules = shipped
        .replace("/var/log/lb/access.log", &path.display().to_string())
        .replace(
            "systemctl kill --signal=USR1 --kill-whom=main lb.service",
            &format!("kill -USR1 {}", lb.child.id()),
        );
    let rules_path = dir.join("logrotate.conf");
    std::fs::write(&rules_path, rules).unwrap();
    let output = std::process::Command::new(logrotate)
        .arg("--force")
        .arg("--state")
        .arg(dir.join("state"))
        .arg(&rules_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        eventually(Duration::from_secs(10), || async { path.exists() }).await,
        "lb opened a new file"
    );
    for index in 0..15 {
        get(&client, lb.listen, &format!("/after/{index}")).await;
    }
    let after = wait_lines(&path, 15).await;
    assert!(after.iter().all(|line| line.contains("/after/")));
    let rotated: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|file| {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("access.log-")
        })
        .collect();
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let before = lines(&rotated[0]);
    assert_eq!(before.len(), 10, "delaycompress keeps it plain, whole");
}

/// A head the codec refuses is logged with its status and the peer, and no request line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_head_is_logged_without_its_request_line() {
    let fleet = backends(1).await;
    let path = temp_dir("access-refused").join("access.log");
    let extra = format!("access_log:\n  target: file\n  path: {}\n", path.display());
    let daemon = balancer(&fleet, &extra).await;
    let mut stream = tokio::net::TcpStream::connect(daemon.listen_addr)
        .await
        .unwrap();
    let (answer, _) = crate::support::raw::ask(
        &mut stream,
        b"GET /secret?token=1 HTTP/1.1\r\nHost: a b\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 400);
    let found = wait_lines(&path, 1).await;
    let record = json(&found[0]);
    assert_eq!(record["status"], 400);
    assert!(record["method"].is_null() && record["target"].is_null());
    assert_eq!(record["client"], "127.0.0.1");
    assert!(!found[0].contains("secret"));
    daemon.shutdown().await;
}

/// A client that leaves before its answer is logged with 499, as nginx does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_early_is_logged_with_499() {
    let fleet = backends(1).await;
    let path = temp_dir("access-499").join("access.log");
    let extra = format!("access_log:\n  target: file\n  path: {}\n", path.display());
    let daemon = balancer(&fleet, &extra).await;
    let mut stream = tokio::net::TcpStream::connect(daemon.listen_addr)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET /delay/3000 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await
    .unwrap();
    // The request reaches the backend, then the client goes.
    assert!(
        eventually(Duration::from_secs(10), || async {
            fleet[0].stats().snapshot().in_flight == 1
        })
        .await
    );
    drop(stream);
    let found = wait_lines(&path, 1).await;
    let record = json(&found[0]);
    assert_eq!(record["status"], 499);
    assert_eq!(record["target"], "/delay/3000");
    assert_eq!(record["bytes_out"], 0);
    daemon.shutdown().await;
}

/// The reloads_total series of `result`, from the real binary's metrics endpoint.
async fn reloads(lb: &Lb, result: &str) -> f64 {
    let text = scrape_at(lb.metrics.expect("metrics on")).await;
    metric_sum(
        &text,
        "lb_config_reloads_total",
        &[&format!("result=\"{result}\"")],
    )
}

/// A reload turns the log on, moves it to another file in another format, and is refused
/// (changing nothing) for a file that cannot be opened; at exit the last lines are written.
/// The real binary, reloaded by `SIGHUP` and stopped by `SIGTERM`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_move_the_log_and_the_exit_writes_its_last_lines() {
    let fleet = backends(1).await;
    let dir = temp_dir("access-reload");
    let (first, second) = (dir.join("first.log"), dir.join("second.log"));
    let config = dir.join("lb.yaml");
    let yaml = |extra: &str| config_yaml(&specs(&fleet), extra);
    write_file(&config, &yaml(""));
    let lb = Lb::start_async(&config, &[]).await;
    let client = client();
    get(&client, lb.listen, "/off").await;

    // On, to a file, by a reload.
    let on = format!("access_log:\n  target: file\n  path: {}\n", first.display());
    write_file(&config, &yaml(&on));
    lb.signal("HUP");
    let logged = eventually(Duration::from_secs(10), || async {
        get(&client, lb.listen, "/first").await;
        !lines(&first).is_empty()
    })
    .await;
    assert!(logged, "the reload turned the log on");

    // Another file, in the combined format: lines before the reload stay in the first.
    let moved = format!(
        "access_log:\n  format: combined\n  target: file\n  path: {}\n",
        second.display()
    );
    write_file(&config, &yaml(&moved));
    lb.signal("HUP");
    let logged = eventually(Duration::from_secs(10), || async {
        get(&client, lb.listen, "/second").await;
        !lines(&second).is_empty()
    })
    .await;
    assert!(logged, "the reload moved the log");
    let before = lines(&first);
    assert!(before.iter().all(|line| json(line)["target"] == "/first"));
    assert!(
        lines(&second)
            .iter()
            .all(|line| line.contains("\"GET /second HTTP/1.1\""))
    );

    // A file that cannot be opened: the reload is refused, the log stays where it is.
    let failures = reloads(&lb, "failure").await;
    let missing = dir.join("missing").join("third.log");
    let bad = format!(
        "access_log:\n  target: file\n  path: {}\n",
        missing.display()
    );
    write_file(&config, &yaml(&bad));
    lb.signal("HUP");
    let refused = eventually(Duration::from_secs(10), || async {
        reloads(&lb, "failure").await > failures
    })
    .await;
    assert!(refused, "the reload was refused");
    let logged = lines(&second).len();
    for index in 0..200 {
        get(&client, lb.listen, &format!("/last/{index}")).await;
    }

    // Stopped at once: every line is in the file when the process has exited.
    lb.signal("TERM");
    let mut lb = lb;
    assert_eq!(
        crate::support::process::exit_code(&mut lb.child).await,
        Some(0)
    );
    let after = lines(&second);
    assert_eq!(after.len(), logged + 200, "no line lost at exit");
    assert!(after[logged..].iter().all(|line| line.contains("/last/")));
    assert_eq!(lines(&first).len(), before.len());
    assert!(!missing.exists());
}

/// A body the backend cuts off after the head went out is logged with `body_failed` and the
/// bytes that did go out; a whole one with `body_failed: false`.
#[tokio::test]
async fn a_body_the_backend_cuts_off_is_logged_as_failed() {
    use crate::support::fake_backend::{Behaviour, FakeBackend, raw_exchange};
    let fake = FakeBackend::start(vec![
        Behaviour::PartialBodyThenReset {
            declared: 10,
            sent: 4,
        },
        Behaviour::Respond("whole"),
    ])
    .await;
    let path = temp_dir("access-cut").join("access.log");
    let extra = format!(
        "access_log:\n  target: file\n  path: {}\nretry:\n  max_attempts: 1\n",
        path.display()
    );
    let yaml = config_yaml(&[fake.spec("fake")], &extra);
    let daemon = lb_proxy::Daemon::start(parse(&yaml))
        .await
        .expect("balancer starts");
    let request = b"GET /cut HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let cut = raw_exchange(daemon.listen_addr, request, Duration::from_secs(5)).await;
    let text = cut.text();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    assert!(
        cut.closed && body.len() < 10,
        "cut off before its length: {text}"
    );
    let whole = get(&client(), daemon.listen_addr, "/whole").await;
    assert_eq!(whole.status, StatusCode::OK);
    let found = wait_lines(&path, 2).await;
    let (first, second) = (json(&found[0]), json(&found[1]));
    assert_eq!(first["target"], "/cut", "{first}");
    assert_eq!(first["status"], 200);
    assert_eq!(first["body_failed"], true, "{first}");
    assert_eq!(first["bytes_out"], 4);
    assert_eq!(second["target"], "/whole", "{second}");
    assert_eq!(second["body_failed"], false, "{second}");
    daemon.shutdown().await;
}
