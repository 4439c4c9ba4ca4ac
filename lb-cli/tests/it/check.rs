//! The real `lb-cli` binary against the fixtures in `config/bad/` and the shipped configs.
//!
//! Runs from the workspace root with relative paths, so file names in the output are exact.

use std::path::Path;

use serde_json::Value;

use crate::support::root;

/// Exit code, stdout, stderr.
fn lb_cli(args: &[&str]) -> (i32, String, String) {
    let output = crate::support::lb_cli(args);
    (
        output.status.code().expect("exited normally"),
        String::from_utf8(output.stdout).expect("utf-8 stdout"),
        String::from_utf8(output.stderr).expect("utf-8 stderr"),
    )
}

fn check_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["check", "--format", "json"];
    all.extend_from_slice(args);
    let (code, stdout, _) = lb_cli(&all);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (code, value)
}

/// One expected error: position, field, the start of the message, the quoted line and the
/// caret line exactly as printed, and the hint.
struct Expected {
    line: u64,
    column: u64,
    field: &'static str,
    message: &'static str,
    quote: &'static str,
    caret: &'static str,
    hint: Option<&'static str>,
}

const fn e(
    line: u64,
    column: u64,
    field: &'static str,
    message: &'static str,
    quote: &'static str,
    caret: &'static str,
    hint: Option<&'static str>,
) -> Expected {
    Expected {
        line,
        column,
        field,
        message,
        quote,
        caret,
        hint,
    }
}

#[test]
fn every_error_with_line_column_field_caret_and_hint() {
    let cases: Vec<(&str, Vec<Expected>)> = vec![
        (
            "config/bad/typo.yaml",
            vec![e(
                3,
                3,
                "server.lisen",
                "unknown field \"lisen\"",
                " 3 |   lisen: 0.0.0.0:8080",
                "   |   ^",
                Some("did you mean \"listen\"?"),
            )],
        ),
        (
            "config/bad/bad-algorithm.yaml",
            vec![e(
                3,
                14,
                "load_balancer.algorithm",
                "unknown algorithm \"least_connection\"",
                " 3 |   algorithm: least_connection",
                "   |              ^",
                Some("did you mean \"least_connections\"?"),
            )],
        ),
        (
            "config/bad/three-mistakes.yaml",
            vec![
                e(
                    3,
                    11,
                    "server.listen",
                    "\"0.0.0.0:80800\" is not an ip:port address",
                    " 3 |   listen: 0.0.0.0:80800",
                    "   |           ^",
                    Some("like 127.0.0.1:8080 or [::1]:8080"),
                ),
                e(
                    6,
                    13,
                    "backends[0].weight",
                    "must be at least 1, found 0",
                    " 6 |     weight: 0",
                    "   |             ^",
                    None,
                ),
                e(
                    8,
                    13,
                    "health_check.interval",
                    "invalid duration \"soon\"",
                    " 8 |   interval: soon",
                    "   |             ^",
                    Some("durations look like 250ms, 10s, 5m, 1h or 1m30s"),
                ),
            ],
        ),
        (
            "config/bad/duplicate-backend.yaml",
            vec![e(
                6,
                14,
                "backends[1].address",
                "duplicate address 127.0.0.1:8001, already used by backends[0] on line 4",
                " 6 |     address: 127.0.0.1:8001",
                "   |              ^",
                None,
            )],
        ),
        (
            "config/bad/timeout-interval.yaml",
            vec![e(
                6,
                12,
                "health_check.timeout",
                "must be shorter than interval (2s), found 2s",
                " 6 |   timeout: 2s",
                "   |            ^",
                None,
            )],
        ),
        (
            "config/bad/bad-syntax.json",
            vec![e(
                4,
                3,
                "",
                "invalid JSON: expected value",
                " 4 |   ]",
                "   |   ^",
                None,
            )],
        ),
    ];
    for (file, expected) in cases {
        let (code, stdout, _) = lb_cli(&["check", file]);
        assert_eq!(code, 1, "{file}:\n{stdout}");
        let lines: Vec<&str> = stdout.lines().collect();
        for want in &expected {
            let field = if want.field.is_empty() {
                String::new()
            } else {
                format!("{}: ", want.field)
            };
            let head = format!(
                "{file}:{}:{}: error: {field}{}",
                want.line, want.column, want.message
            );
            let at = lines
                .iter()
                .position(|l| l.starts_with(&head))
                .unwrap_or_else(|| panic!("no line starting {head:?} in\n{stdout}"));
            assert_eq!(lines[at + 1], want.quote, "{file}");
            assert_eq!(lines[at + 2], want.caret, "{file}");
            let hint_line = want.hint.map(|h| format!("   = hint: {h}"));
            assert_eq!(
                lines
                    .get(at + 3)
                    .filter(|l| l.contains("= hint"))
                    .map(|l| l.to_string()),
                hint_line,
                "{file}"
            );
        }
        let tally = if expected.len() == 1 {
            "1 error".to_owned()
        } else {
            format!("{} errors", expected.len())
        };
        assert_eq!(
            lines.last().copied(),
            Some(format!("{file}: invalid, {tally}").as_str())
        );

        let (code, json) = check_json(&[file]);
        assert_eq!(code, 1);
        let report = &json["files"][0];
        assert_eq!(report["file"], file);
        assert_eq!(report["valid"], false);
        let errors = report["errors"].as_array().expect("errors list");
        assert_eq!(errors.len(), expected.len(), "{file}: {errors:?}");
        for (got, want) in errors.iter().zip(&expected) {
            assert_eq!(got["severity"], "error");
            assert_eq!(got["line"], want.line, "{file}");
            assert_eq!(got["column"], want.column, "{file}");
            assert_eq!(got["field"], want.field, "{file}");
            assert!(
                got["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(want.message)),
                "{got}"
            );
            assert_eq!(got["hint"].as_str(), want.hint, "{file}");
        }
    }
}

#[test]
fn unreadable_or_unparsable_files_get_one_clear_error() {
    let cases = [
        ("config/bad/empty.yaml", "the file is empty"),
        (
            "config/bad/binary.yaml",
            "the file is not UTF-8 text (bad byte at offset 0); is it a binary file?",
        ),
        ("config/bad", "is a directory, not a configuration file"),
        ("config/bad/no-such-file.yaml", "no such file"),
        ("config/config.yaml.bak", "no such file"),
    ];
    for (file, message) in cases {
        let (code, stdout, stderr) = lb_cli(&["check", file]);
        assert_eq!(code, 1, "{file}");
        assert!(stderr.is_empty(), "{stderr}");
        let first = stdout.lines().next().unwrap_or_default();
        assert_eq!(first, format!("{file}: error: {message}"));
        assert_eq!(stdout.matches(": error: ").count(), 1, "{stdout}");

        let (code, json) = check_json(&[file]);
        assert_eq!(code, 1);
        let errors = json["files"][0]["errors"].as_array().expect("errors list");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0]["message"], message);
        assert_eq!(errors[0]["line"], Value::Null);
    }
}

#[test]
fn shipped_configs_are_ok() {
    let files = [
        "config/config.yaml",
        "config/examples/minimal.yaml",
        "config/examples/weighted.json",
        "config/examples/p2c.yaml",
        "config/examples/least-connections.yaml",
        "config/examples/h2.yaml",
        "config/examples/discovery.yaml",
    ];
    let mut args = vec!["check"];
    args.extend(files);
    let (code, stdout, _) = lb_cli(&args);
    assert_eq!(code, 0, "{stdout}");
    for file in files {
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("{file}: ok") || l.starts_with(&format!("{file}: ok, "))),
            "{file} not ok in\n{stdout}"
        );
    }
    assert!(stdout.contains(
        "  listen 0.0.0.0:8080, weighted_round_robin, 3 backends, health check every 2s on /ready \
         (timeout 500ms), metrics on 127.0.0.1:9100/metrics"
    ));
    let (code, json) = check_json(&files);
    assert_eq!(code, 0);
    assert_eq!(json["files"].as_array().map(Vec::len), Some(files.len()));
    assert!(
        json["files"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|f| f["valid"] == true && f["ok"] == true)
    );
}

#[test]
fn one_bad_file_among_good_ones_fails_the_run() {
    let (code, stdout, _) = lb_cli(&[
        "check",
        "config/examples/weighted.json",
        "config/bad/typo.yaml",
    ]);
    assert_eq!(code, 1);
    assert!(stdout.contains("config/examples/weighted.json: ok"));
    assert!(stdout.contains("config/bad/typo.yaml: invalid, 1 error"));
}

#[test]
fn warnings_fail_only_with_strict() {
    let file = "config/bad/warnings.yaml";
    let (code, stdout, _) = lb_cli(&["check", file]);
    assert_eq!(code, 0, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "config/bad/warnings.yaml:7:12: warning: health_check.timeout: is more than half of \
             interval (1s500ms of 2s): a slow backend is probed almost continuously",
            " 7 |   timeout: 1500ms",
            "   |            ^",
            "   = hint: keep timeout at most half of interval",
        ]
    );
    assert!(lines[4].starts_with(
        "config/bad/warnings.yaml:11:11: warning: metrics.listen: 0.0.0.0:9090 is open"
    ));
    assert!(lines.contains(&"config/bad/warnings.yaml: ok, 2 warnings"));

    let (code, stdout, _) = lb_cli(&["check", "--strict", file]);
    assert_eq!(code, 1);
    assert!(stdout.contains("config/bad/warnings.yaml: failed, 2 warnings with --strict"));

    let (code, json) = check_json(&["--strict", file]);
    assert_eq!(code, 1);
    let report = &json["files"][0];
    assert_eq!(
        (report["valid"].clone(), report["ok"].clone()),
        (Value::Bool(true), Value::Bool(false))
    );
    let warnings = report["warnings"].as_array().expect("warnings list");
    let fields: Vec<&str> = warnings
        .iter()
        .filter_map(|w| w["field"].as_str())
        .collect();
    assert_eq!(fields, ["health_check.timeout", "metrics.listen"]);
    assert_eq!(warnings[0]["severity"], "warning");
    assert_eq!(
        (warnings[0]["line"].clone(), warnings[0]["column"].clone()),
        (Value::from(7), Value::from(12))
    );
}

#[test]
fn shadowed_routes_and_unused_pools_are_warned_with_their_positions() {
    let file = "config/bad/routes-shadowed.yaml";
    let (code, stdout, _) = lb_cli(&["check", file]);
    assert_eq!(code, 0, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "config/bad/routes-shadowed.yaml:16:5: warning: routes[1]: route \"api-v1\" can never \
             match: routes[0] (\"all-api\") comes first and takes every request it would",
            " 16 |   - name: api-v1",
            "    |     ^",
            "    = hint: move it above the broader route, or narrow the broader route's match",
        ],
        "{stdout}"
    );
    assert_eq!(
        lines[4],
        "config/bad/routes-shadowed.yaml:8:3: warning: pools.spare: no route sends to pool \
         \"spare\": its backends get no traffic",
        "{stdout}"
    );
    assert!(
        !stdout.contains("routes[2]"),
        "the default route is not shadowed: {stdout}"
    );
    assert!(
        lines.contains(&"config/bad/routes-shadowed.yaml: ok, 2 warnings"),
        "{stdout}"
    );
}

#[test]
fn a_route_to_an_unknown_pool_is_an_error_with_a_hint() {
    let (code, stdout, _) = lb_cli(&["check", "config/bad/unknown-pool.yaml"]);
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with(
            "config/bad/unknown-pool.yaml:8:11: error: routes[0].pool: unknown pool \"apis\""
        ),
        "{stdout}"
    );
    assert!(stdout.contains("= hint: did you mean \"api\"?"), "{stdout}");
}

#[test]
fn usage_errors_exit_2_and_help_lists_exit_codes() {
    assert_eq!(lb_cli(&["check"]).0, 2);
    assert_eq!(
        lb_cli(&["check", "--format", "xml", "config/config.yaml"]).0,
        2
    );
    assert_eq!(lb_cli(&["frobnicate"]).0, 2);
    let (code, stdout, _) = lb_cli(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Exit codes:") && stdout.contains("1  a file is invalid"),
        "{stdout}"
    );
}

#[test]
fn show_round_trips_in_both_formats() {
    for file in [
        "config/config.yaml",
        "config/examples/minimal.yaml",
        "config/examples/weighted.json",
        "config/examples/routes.yaml",
        "config/examples/discovery.yaml",
    ] {
        let bytes = std::fs::read(root().join(file)).expect("fixture");
        let original = lb_core::config::parse_bytes(&bytes, Path::new(file)).expect("valid");
        for (format, name) in [("yaml", "shown.yaml"), ("json", "shown.json")] {
            let (code, stdout, stderr) = lb_cli(&["show", file, "--format", format]);
            assert_eq!(code, 0, "{stderr}");
            let again = lb_core::config::parse_bytes(stdout.as_bytes(), Path::new(name))
                .unwrap_or_else(|e| panic!("{file} as {format} does not parse: {e}\n{stdout}"));
            assert_eq!(again, original, "{file} as {format}");
        }
    }
    // An invalid file: its errors on stderr, nothing on stdout.
    let (code, stdout, stderr) = lb_cli(&["show", "config/bad/typo.yaml"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("config/bad/typo.yaml:3:3: error: server.lisen"),
        "{stderr}"
    );
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = std::env::temp_dir().join(format!("lb-cli-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("lb.yaml");
    let _ = std::fs::remove_file(&path);
    let target = path.to_str().expect("utf-8 temp path");

    let (code, stdout, _) = lb_cli(&["init", target]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with(&format!("wrote {target}")));
    let written = std::fs::read_to_string(&path).expect("written");
    assert_eq!(written, lb_cli::init::STARTER);
    assert_eq!(lb_cli(&["check", target]).0, 0);

    std::fs::write(&path, "# mine\n").expect("overwrite by hand");
    let (code, stdout, stderr) = lb_cli(&["init", target]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!("error: {target} already exists; not overwriting it (use --force to replace it)\n")
    );
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), "# mine\n");

    let (code, _, _) = lb_cli(&["init", "--force", target]);
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(&path).expect("replaced"),
        lb_cli::init::STARTER
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}
