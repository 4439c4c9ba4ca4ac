//! The engine on small scenarios whose outcome can be worked out by hand.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::report::{EventKind, Report};
use super::{parse_scenario, run};
use crate::config::{Config, Format, parse};

/// Three backends `a`, `b`, `c` with `extra` configuration appended.
fn config(extra: &str) -> Config {
    let text = format!(
        "backends:\n  - {{name: a, address: 127.0.0.1:8001}}\n  - {{name: b, address: 127.0.0.1:8002}}\n  \
         - {{name: c, address: 127.0.0.1:8003}}\n{extra}"
    );
    parse(&text, Format::Yaml, "lb.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn simulate(config: &Config, scenario: &str) -> Report {
    let scenario =
        parse_scenario(scenario, Format::Yaml, "s.yaml").unwrap_or_else(|e| panic!("{e}"));
    #[allow(clippy::disallowed_methods)] // one real Instant as time zero
    let base = Instant::now();
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    run(config, &scenario, base, &mut rng).unwrap_or_else(|e| panic!("{e}"))
}

fn attempts(report: &Report) -> Vec<u64> {
    report.backends.iter().map(|b| b.attempts).collect()
}

/// `(backend, from, to)` of every breaker transition.
fn transitions(report: &Report) -> Vec<(String, &'static str, &'static str)> {
    report
        .events
        .iter()
        .filter_map(|e| match e.what {
            EventKind::Breaker { from, to, .. } => Some((e.backend.clone(), from, to)),
            _ => None,
        })
        .collect()
}

const STEADY: &str = "duration: 10s\ntraffic: {rate: 300, arrivals: even}\n";

#[test]
fn round_robin_shares_a_healthy_fleet_exactly() {
    let report = simulate(&config(""), STEADY);
    assert_eq!(report.clients.requests, 3000);
    assert_eq!(report.clients.errors, 0);
    assert_eq!(attempts(&report), [1000, 1000, 1000]);
    let shares: f64 = report.backends.iter().map(|b| b.request_share).sum();
    assert!((shares - 1.0).abs() < 1e-12);
    // Latency is the default fixed 10 ms; quantiles are slot ceilings, within 1/64.
    let p50 = report.clients.latency.p50_ms;
    assert!((10.0..=10.0 * 65.0 / 64.0).contains(&p50), "{p50}");
    assert_eq!(report.clients.latency.max_ms, 10.0);
    assert_eq!(report.timeline.len(), 60);
    let per_bucket: u64 = report.timeline.iter().map(|b| b.requests).sum();
    assert_eq!(per_bucket, 3000);
    assert!(report.backends.iter().all(|b| b.in_flight_peak == 1));
}

#[test]
fn a_backend_that_is_down_costs_breaker_threshold_attempts_and_no_errors() {
    let report = simulate(
        &config(""),
        &format!("{STEADY}backends:\n  b:\n    events: [{{at: 0s, down: true}}]\n"),
    );
    assert_eq!(report.clients.errors, 0, "GETs are retried elsewhere");
    let b = &report.backends[1];
    // Five refused connections open the default breaker for 30 s, past the end.
    assert_eq!(b.attempts, 5);
    assert_eq!(b.failed_attempts.connect_error, 5);
    assert_eq!(b.breaker_trips, 1);
    assert_eq!(report.clients.retries, 5);
    // b's first probe is at 5s/3, its second at 5s/3 + 5s: two of the three failures needed.
    assert_eq!(b.health_flips, 0);
    assert_eq!(attempts(&report).iter().sum::<u64>(), 3005);
}

#[test]
fn failures_by_status_and_method_table() {
    // (error status, method, body, expected client errors, retries, not idempotent give-ups)
    #[rustfmt::skip]
    let rows: &[(u16, &str, &str, u64, u64, u64)] = &[
        // 500 is not in the default retry_on: passed on until the breaker opens.
        (500, "GET",  "0",      5, 0, 0),
        // 503 is: retried on another backend.
        (503, "GET",  "0",      0, 5, 0),
        // ...but a POST that reached the backend is not retried.
        (503, "POST", "0",      5, 0, 5),
        // A body over 64 KiB is streamed and never retried (lb-core is not even asked).
        (503, "PUT",  "100KiB", 5, 0, 0),
    ];
    for &(status, method, body, errors, retries, not_idempotent) in rows {
        let scenario = format!(
            "{STEADY}requests: [{{method: {method}, body: {body}}}]\n\
             backends:\n  b: {{error_rate: 1, error_status: {status}}}\n"
        );
        let report = simulate(&config(""), &scenario);
        let case = format!("{status} {method} {body}");
        assert_eq!(report.clients.errors, errors, "{case}");
        assert_eq!(report.clients.causes.backend_error, errors, "{case}");
        assert_eq!(report.clients.retries, retries, "{case}");
        assert_eq!(
            report.clients.gave_up.not_idempotent, not_idempotent,
            "{case}"
        );
        assert_eq!(report.backends[1].failed_attempts.status, 5, "{case}");
        if errors > 0 {
            assert_eq!(
                report.clients.statuses.get(&status),
                Some(&errors),
                "{case}"
            );
        }
    }
}

#[test]
fn an_empty_budget_refuses_every_retry() {
    let report = simulate(
        &config("retry:\n  budget_ratio: 0\n  budget_min_per_sec: 0\n"),
        &format!("{STEADY}backends:\n  b:\n    events: [{{at: 0s, down: true}}]\n"),
    );
    assert_eq!(report.clients.budget_exhausted, 5);
    assert_eq!(report.clients.gave_up.budget_exhausted, 5);
    assert_eq!(report.clients.causes.connect_error, 5);
    assert_eq!(report.clients.statuses.get(&502), Some(&5));
}

#[test]
fn requests_over_the_body_limit_are_refused_before_any_backend() {
    let report = simulate(
        &config("server:\n  max_request_body_bytes: 1000\n"),
        &format!("{STEADY}requests: [{{method: POST, body: 1001}}]\n"),
    );
    assert_eq!(report.clients.causes.too_large, 3000);
    assert_eq!(attempts(&report), [0, 0, 0]);
}

#[test]
fn a_slow_backend_times_out_with_504() {
    let report = simulate(
        &config("server:\n  request_timeout: 1s\ncircuit_breaker:\n  enabled: false\n"),
        "duration: 10s\ntraffic: {rate: 30, arrivals: even}\ndefaults: {latency: 2s}\n",
    );
    assert_eq!(report.clients.causes.timeout, 300);
    assert_eq!(report.clients.statuses.get(&504), Some(&300));
    assert_eq!(report.clients.latency.max_ms, 1000.0);
    // Timeouts are retryable, so lb-core is asked (and may spend a token) even though the
    // backoff cannot fit before the deadline, as in the daemon.
    assert_eq!(
        report.clients.retries + report.clients.gave_up.budget_exhausted,
        300
    );
}

#[test]
fn max_connections_caps_what_is_in_flight() {
    let config = config("").clone();
    let mut config = config;
    for backend in &mut config.backends {
        backend.max_connections = 1;
    }
    let report = simulate(
        &config,
        "duration: 10s\ntraffic: {rate: 100, arrivals: even}\ndefaults: {latency: 100ms}\n",
    );
    assert!(report.backends.iter().all(|b| b.in_flight_peak == 1));
    // Three backends serve at most 30 requests a second; the rest find none free.
    assert!(
        report.clients.causes.no_backend > 600,
        "{:?}",
        report.clients
    );
    assert_eq!(
        report.clients.successes + report.clients.causes.no_backend,
        1000
    );
}

#[test]
fn requests_queue_behind_a_backends_workers() {
    // One worker, 10 ms each, a request every 20 ms: no queue. Every 6.7 ms: a growing one.
    let single = |rate: u32| {
        let mut config = config("");
        config.backends.truncate(1);
        let scenario = format!(
            "duration: 2s\ntraffic: {{rate: {rate}, arrivals: even}}\n\
             defaults: {{latency: 10ms, concurrency: 1}}\n"
        );
        simulate(&config, &scenario)
    };
    let calm = single(50);
    assert_eq!(calm.clients.latency.max_ms, 10.0);
    let busy = single(150);
    // After 2 s the backlog is about 100 requests of 10 ms.
    assert!(
        busy.clients.latency.max_ms > 900.0,
        "{:?}",
        busy.clients.latency
    );
    assert!(busy.backends[0].in_flight_peak > 90);
    assert_eq!(busy.clients.errors, 0);
}

#[test]
fn a_backend_going_down_cuts_what_it_holds() {
    let report = simulate(
        &config(""),
        "duration: 4s\ntraffic: {rate: 60, arrivals: even}\ndefaults: {latency: 1s}\n\
         backends:\n  b:\n    events: [{at: 2s, down: true}]\n",
    );
    let b = &report.backends[1];
    // About a second's worth of b's requests were in progress: 20, cut and retried.
    assert!(
        (15..=25).contains(&b.failed_attempts.reset),
        "{:?}",
        b.failed_attempts
    );
    assert_eq!(report.clients.causes.reset, 0, "GETs retried after a reset");
}

#[test]
fn the_breaker_half_opens_and_closes_once_the_backend_is_back() {
    let report = simulate(
        &config("circuit_breaker:\n  open_duration: 1s\n  success_threshold: 1\n"),
        &format!(
            "{STEADY}backends:\n  b:\n    events: [{{at: 2s, down: true}}, {{at: 4s, up: true}}]\n"
        ),
    );
    let b: Vec<_> = transitions(&report)
        .into_iter()
        .filter(|t| t.0 == "b")
        .map(|t| (t.1, t.2))
        .collect();
    // Down at 2 s: open 1 s, a failed probe doubles it (2 s, to ~5 s), then a good probe.
    assert_eq!(
        b,
        [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
        ]
    );
    assert_eq!(report.clients.errors, 0);
    // The timeline shows b open just after 2 s, and closed at the start and the end.
    let opened = report
        .timeline
        .iter()
        .find(|bucket| bucket.backends[1].breaker == "open")
        .expect("an open bucket");
    assert!(
        (1_800..2_200).contains(&opened.start_ms),
        "{}",
        opened.start_ms
    );
    assert_eq!(report.timeline[0].backends[1].breaker, "closed");
    assert_eq!(report.timeline[59].backends[1].breaker, "closed");
}

#[test]
fn a_flapping_health_endpoint_flips_health_on_the_probe_schedule() {
    let report = simulate(
        &config(
            "health_check:\n  interval: 200ms\n  timeout: 100ms\n  \
             unhealthy_threshold: 2\n  healthy_threshold: 2\n",
        ),
        &format!("{STEADY}backends:\n  a:\n    events: [{{at: 0s, flap: 1s}}]\n"),
    );
    // a is probed at 0, 200 ms, ...; failing [0, 1 s), passing [1 s, 2 s), and so on:
    // down at 200 ms, up at 1.2 s, down at 2.2 s, ... ten flips in ten seconds.
    let flips: Vec<f64> = report
        .events
        .iter()
        .filter(|e| matches!(e.what, EventKind::Health { .. }))
        .map(|e| e.at_ms)
        .collect();
    let expected: Vec<f64> = (0..10).map(|k| 200.0 + 1000.0 * f64::from(k)).collect();
    assert_eq!(flips, expected);
    assert_eq!(report.backends[0].health_flips, 10);
    assert!(!report.timeline[1].backends[0].healthy);
    assert_eq!(report.clients.errors, 0);
}

#[test]
fn ip_hash_keeps_one_client_on_one_backend() {
    let config = config("load_balancer: {algorithm: ip_hash}\n");
    let one = simulate(&config, &format!("{STEADY}clients: {{count: 1}}\n"));
    let mut shares: Vec<u64> = attempts(&one);
    shares.sort_unstable();
    assert_eq!(shares, [0, 0, 3000]);
    let many = simulate(&config, &format!("{STEADY}clients: {{count: 3000}}\n"));
    assert!(
        attempts(&many).iter().all(|&a| a > 600),
        "{:?}",
        attempts(&many)
    );
}

#[test]
fn the_same_seed_gives_the_same_report_and_another_differs() {
    let scenario = "duration: 5s\ntraffic: {rate: 200}\nseed: 7\n\
                    defaults: {latency: {lognormal: {median: 20ms, p99: 200ms}}, error_rate: 0.05}\n";
    let config = config("load_balancer: {algorithm: p2c}\n");
    assert_eq!(simulate(&config, scenario), simulate(&config, scenario));
    let other = scenario.replace("seed: 7", "seed: 8");
    assert_ne!(simulate(&config, scenario), simulate(&config, &other));
}

#[test]
fn unknown_backends_in_the_scenario_are_refused() {
    let scenario = parse_scenario(
        &format!("{STEADY}backends:\n  d: {{error_rate: 1}}\n"),
        Format::Yaml,
        "s.yaml",
    )
    .expect("valid on its own");
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let error = run(&config(""), &scenario, base, &mut StdRng::seed_from_u64(1))
        .expect_err("d is not configured");
    assert_eq!(
        error.to_string(),
        "s.yaml:4:3: backends.d: the configuration has no backend named \"d\" \
         (hint: did you mean \"a\"?)"
    );
}
