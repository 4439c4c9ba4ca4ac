//! `lb-cli simulate` end to end, through the real binary: the example scenario's report, the
//! comparison, JSON for scripts, and errors at the scenario's lines.

// Runs from the repository root, so the paths in its output are the docs' paths.
use crate::support::lb_cli;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CONFIG: &str = "config/config.yaml";
const SCENARIO: &str = "config/examples/scenario.yaml";

#[test]
fn the_example_scenario_prints_a_report() {
    let output = lb_cli(&["simulate", CONFIG, "--scenario", SCENARIO]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with(
            "config/config.yaml (round_robin) on config/examples/scenario.yaml, seed 1\n"
        ),
        "{stdout}"
    );
    for needle in [
        "\nClients\n",
        "  latency     p50 ",
        "\nBackends ",
        "\n  api-3 ",
        "\nTimeline from 0s to 5m, one column per 5s\n",
        "  p99 latency ",
        "  api-3 state ",
        "2:00.0  api-3  scenario: down",
        "api-3  breaker closed -> open for 30s",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from\n{stdout}");
    }
    // The same seed, the same report.
    let again = lb_cli(&["simulate", CONFIG, "--scenario", SCENARIO]);
    assert_eq!(text(&again.stdout), stdout);
    let other = lb_cli(&["simulate", CONFIG, "--scenario", SCENARIO, "--seed", "2"]);
    assert_ne!(text(&other.stdout), stdout);
}

#[test]
fn against_puts_two_configs_side_by_side() {
    let output = lb_cli(&[
        "simulate",
        CONFIG,
        "--scenario",
        SCENARIO,
        "--against",
        "config/examples/p2c.yaml",
    ]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with(
            "A: config/config.yaml (round_robin)\nB: config/examples/p2c.yaml (p2c)\n"
        )
    );
    for needle in [
        "B - A",
        "  latency p99 ",
        "  api-3 attempt share ",
        "Events, A",
        "Events, B",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from\n{stdout}");
    }
}

#[test]
fn json_has_both_runs_and_their_differences() {
    let output = lb_cli(&[
        "simulate",
        CONFIG,
        "--scenario",
        SCENARIO,
        "--against",
        "config/examples/least-connections.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(doc["seed"], 1);
    let runs = doc["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["report"]["algorithm"], "least_connections");
    let requests = |run: &serde_json::Value| run["report"]["clients"]["requests"].as_u64();
    assert!(requests(&runs[0]).is_some());
    assert_eq!(requests(&runs[0]), requests(&runs[1]), "the same arrivals");
    let timeline = runs[0]["report"]["timeline"].as_array().expect("timeline");
    assert_eq!(timeline.len(), 60);
    let rows = doc["differences"]["clients"].as_array().expect("rows");
    let p99 = rows
        .iter()
        .find(|row| row["metric"] == "latency p99")
        .expect("a p99 row");
    assert_eq!(p99["unit"], "millis");
    let (a, b, delta) = (
        p99["a"].as_f64().unwrap(),
        p99["b"].as_f64().unwrap(),
        p99["delta"].as_f64().unwrap(),
    );
    assert!((b - a - delta).abs() < 1e-9);
}

#[test]
fn scenario_errors_point_at_their_lines() {
    let dir = std::env::temp_dir().join(format!("lb-cli-simulate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "duration: 1m\ntraffic: {rate: 10}\nbackends:\n  api-9:\n    events: [{at: 2m, slow: 2}]\n",
    )
    .unwrap();
    let output = lb_cli(&["simulate", CONFIG, "--scenario", bad.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let file = bad.display();
    assert!(
        stderr.starts_with(&format!(
            "{file}:5:19: error: backends.api-9.events[0].at: 2m is not before the end of the \
             scenario (1m)\n 5 |     events: [{{at: 2m, slow: 2}}]\n   |                   ^\n"
        )),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!("{file}: invalid scenario, 1 error\n")),
        "{stderr}"
    );

    // Valid on its own, but api-9 is not a backend of the configuration.
    std::fs::write(
        &bad,
        "duration: 1m\ntraffic: {rate: 10}\nbackends:\n  api-9: {}\n",
    )
    .unwrap();
    let output = lb_cli(&["simulate", CONFIG, "--scenario", bad.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!(
            "{file}:4:3: error: backends.api-9: the configuration has no backend named \"api-9\"\n"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("= hint: did you mean \"api-1\"?"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!(
            "{file}: does not fit config/config.yaml, 1 error\n"
        )),
        "{stderr}"
    );

    // A file that is not there, and a configuration with an error.
    let output = lb_cli(&["simulate", CONFIG, "--scenario", "nope.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "nope.yaml: error: no such file\n   = hint: check the path\n"
    );
    let output = lb_cli(&[
        "simulate",
        "config/bad/three-mistakes.yaml",
        "--scenario",
        SCENARIO,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).ends_with("config/bad/three-mistakes.yaml: invalid, 3 errors\n"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_scenario_option_is_a_usage_error() {
    let output = lb_cli(&["simulate", CONFIG]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--scenario <FILE>"));
}
