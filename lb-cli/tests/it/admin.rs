//! The admin verbs end to end: the real `lb-cli` binary against a fake admin API on 127.0.0.1
//! (canned answers), checking what it sends, what it prints and how it exits.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::fake_http::{Answer, Server, json, status};

const B1: &str = r#"{"name": "b1", "address": "127.0.0.1:8001", "weight": 5,
    "configured_weight": 1, "max_connections": 1000, "health": "healthy", "breaker": "closed",
    "in_flight": 3, "drained": false, "drain_done": false, "overrides": ["weight"]}"#;

const B2: &str = r#"{"name": "b2", "address": "127.0.0.1:8002", "weight": 1,
    "configured_weight": 1, "max_connections": 1000, "health": "unhealthy", "breaker": "open",
    "in_flight": 0, "drained": true, "drain_done": true, "overrides": ["drain"],
    "zone": "a field this client does not know"}"#;

/// What one run did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `lb-cli ARGS` with `env` set and no other `LB_ADMIN_*` variable from the test's own
/// environment.
fn lb_cli_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lb-cli"));
    command
        .args(args)
        .env_remove("LB_ADMIN_URL")
        .env_remove("LB_ADMIN_TOKEN");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("lb-cli runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

/// Runs `lb-cli VERB ... --admin BASE`.
fn lb_cli(server: &Server, args: &[&str]) -> Run {
    let base = server.base();
    let mut all = args.to_vec();
    all.extend(["--admin", base.as_str()]);
    lb_cli_with(&all, &[])
}

/// A token file, unique to this test process and `name`.
fn token_file(name: &str, token: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("lb-cli-token-{}-{name}", std::process::id()));
    std::fs::write(&path, format!("{token}\n")).expect("write the token file");
    path
}

/// The run failed with `code`, printed nothing on stdout, and exactly one line on stderr that
/// contains each of `words`.
fn fails(run: &Run, code: i32, words: &[&str]) {
    assert_eq!(run.code, Some(code), "stderr: {}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    for word in words {
        assert!(run.stderr.contains(word), "{word:?} not in {}", run.stderr);
    }
}

#[test]
fn backends_prints_a_table_with_the_token_from_a_file() {
    let server = Server::start(vec![json(200, &format!(r#"{{"backends": [{B1}, {B2}]}}"#))]);
    let file = token_file("table", "s3cret");
    let run = lb_cli(
        &server,
        &["backends", "--token-file", file.to_str().unwrap()],
    );
    let _ = std::fs::remove_file(&file);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let head = server.head();
    assert!(head.starts_with("get /backends http/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nauthorization: bearer s3cret\r\n"),
        "{head}"
    );
    let expected = "\
2 backends: 1 healthy, 1 drained, 3 in flight
BACKEND  POOL  ADDRESS         WEIGHT  HEALTH  BREAKER  IN-FLIGHT  DRAIN
b1       -     127.0.0.1:8001  5*      up      closed   3          -
b2       -     127.0.0.1:8002  1       DOWN    open     0          drained
* set at runtime; the file says b1 1; `lb-cli weight NAME --reset` restores it
";
    assert_eq!(run.stdout, expected);
}

#[test]
fn backends_json_is_the_daemons_json() {
    let body = format!(r#"{{"backends": [{B2}]}}"#);
    let server = Server::start(vec![json(200, &body), json(200, B1)]);
    let run = lb_cli(&server, &["backends", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let printed: Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(printed, sent, "fields this client does not know are kept");
    // One backend by name.
    let run = lb_cli(&server, &["backends", "b1"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("1 backend: 1 healthy"),
        "{}",
        run.stdout
    );
    server.head();
    assert!(server.head().starts_with("get /backends/b1 "));
}

#[test]
fn the_url_and_token_come_from_the_environment() {
    let server = Server::start(vec![json(200, B1)]);
    let run = lb_cli_with(
        &["enable", "b1"],
        &[
            ("LB_ADMIN_URL", &server.base()),
            ("LB_ADMIN_TOKEN", "from-env"),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout, "b1: enabled: takes new requests\n");
    let head = server.head();
    assert!(head.starts_with("post /backends/b1/enable "), "{head}");
    assert!(
        head.contains("\r\nauthorization: bearer from-env\r\n"),
        "{head}"
    );
}

#[test]
fn drain_weight_and_breaker_reset_send_and_say_what_they_did() {
    let draining = B1.replace(r#""drained": false"#, r#""drained": true"#);
    let reset = B1
        .replace(r#""weight": 5"#, r#""weight": 1"#)
        .replace(r#""overrides": ["weight"]"#, r#""overrides": []"#);
    let server = Server::start(vec![
        json(200, &draining),
        json(200, B1),
        json(200, &reset),
        json(200, B1),
    ]);
    let runs = [
        (
            &["drain", "b1"][..],
            "POST /backends/b1/drain ",
            "",
            "b1: draining: no new requests; 3 in flight will finish (`lb-cli backends` shows when it is done)\n",
        ),
        (
            &["weight", "b1", "5"],
            "PUT /backends/b1/weight ",
            r#"{"weight":5}"#,
            "b1: weight 5 (set at runtime; the file says 1)\n",
        ),
        (
            &["weight", "b1", "--reset"],
            "PUT /backends/b1/weight ",
            r#"{"weight":null}"#,
            "b1: weight 1 (the file's)\n",
        ),
        (
            &["breaker-reset", "b1"],
            "POST /backends/b1/breaker/reset ",
            "",
            "b1: breaker reset: closed\n",
        ),
    ];
    for (args, line, body, stdout) in runs {
        let run = lb_cli(&server, args);
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, stdout, "{args:?}");
        let request = server.request();
        assert!(request.head.starts_with(line), "{args:?}: {}", request.head);
        assert_eq!(request.body, body, "{args:?}");
    }
}

#[test]
fn reload_prints_changes_and_what_needs_a_restart() {
    let server = Server::start(vec![json(
        200,
        r#"{"result": "success", "changes": ["backend b3 added", "retry"],
            "needs_restart": ["server.workers: 4 -> 8"]}"#,
    )]);
    let run = lb_cli(&server, &["reload"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "reloaded: 2 changes\n  backend b3 added\n  retry\n\
         needs a restart (not applied):\n  server.workers: 4 -> 8\n"
    );
    assert!(server.head().starts_with("post /reload "));
}

#[test]
fn errors_are_one_line_with_distinct_exit_codes() {
    let invalid = "lb.yaml:7:13: backends[1].weight: must be at least 1, found 0";
    let server = Server::start(vec![
        json(404, r#"{"error": "no backend named \"b9\""}"#),
        json(401, r#"{"error": "missing or wrong bearer token"}"#),
        json(422, &format!(r#"{{"error": "{invalid}"}}"#)),
        json(200, "<html>not json</html>"),
        status(404, "Not Found"),
    ]);
    let base = server.base();
    fails(
        &lb_cli(&server, &["drain", "b9"]),
        3,
        &[
            "error: drain b9: no backend named \"b9\"",
            &format!("(HTTP 404 from POST {base}/backends/b9/drain)"),
            "`lb-cli backends` lists them",
        ],
    );
    fails(
        &lb_cli(&server, &["backends"]),
        4,
        &[
            "missing or wrong bearer token",
            "--token-file",
            "LB_ADMIN_TOKEN",
        ],
    );
    fails(
        &lb_cli(&server, &["reload"]),
        1,
        &[invalid, "the running configuration is unchanged"],
    );
    fails(
        &lb_cli(&server, &["backends"]),
        1,
        &["not the admin API's JSON"],
    );
    // The metrics port by mistake: a 404 that is not the admin API's.
    fails(
        &lb_cli(&server, &["enable", "b1"]),
        1,
        &[
            "HTTP status 404 without the admin API's JSON error",
            "admin.listen",
        ],
    );
}

#[test]
fn bad_input_is_refused_before_any_request() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let run = lb_cli_with(&["backends", "--admin", &closed], &[]);
    fails(&run, 1, &["connection refused", &closed]);
    let run = lb_cli_with(&["drain", "b1", "--admin", "127.0.0.1:9091"], &[]);
    fails(&run, 2, &["bad admin URL"]);
    let run = lb_cli_with(&["drain", "b1", "--token-file", "/nonexistent/token"], &[]);
    fails(&run, 2, &["cannot read the token file /nonexistent/token"]);
    let run = lb_cli_with(&["reload"], &[("LB_ADMIN_TOKEN", "two words")]);
    fails(&run, 2, &["$LB_ADMIN_TOKEN is not a token"]);
    assert!(!run.stderr.contains("words"), "the token is not shown");
    let run = lb_cli_with(&["drain", ""], &[]);
    fails(&run, 2, &["a backend name cannot be empty"]);
    // Usage errors are clap's: exit 2.
    assert_eq!(lb_cli_with(&["weight", "b1"], &[]).code, Some(2));
    assert_eq!(lb_cli_with(&["weight", "b1", "0"], &[]).code, Some(2));
    assert_eq!(lb_cli_with(&["drain"], &[]).code, Some(2));
}

#[test]
fn a_silent_daemon_is_an_error_within_the_timeout() {
    let server = Server::start(vec![Answer::Stall(Vec::new())]);
    let run = lb_cli(&server, &["reload", "--timeout", "300ms"]);
    fails(&run, 1, &["no answer within 300ms"]);
}
