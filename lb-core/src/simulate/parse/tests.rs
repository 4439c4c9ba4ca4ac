//! Scenario validation: what a good file becomes, and every error with its position.

use std::path::Path;
use std::time::Duration;

use super::{parse_scenario, parse_scenario_bytes};
use crate::config::Format;
use crate::simulate::scenario::{Action, Arrivals, Latency, RatePoint};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn errors(text: &str) -> Vec<String> {
    match parse_scenario(text, Format::Yaml, "s.yaml") {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_minimal_file_gets_every_default() {
    let s = parse_scenario(
        "duration: 5m\ntraffic: {rate: 100}\n",
        Format::Yaml,
        "s.yaml",
    )
    .expect("valid");
    assert_eq!(s.duration, Duration::from_secs(300));
    assert_eq!(s.bucket, Duration::from_secs(5));
    assert_eq!(s.seed, 1);
    assert_eq!(s.traffic.arrivals, Arrivals::Poisson);
    assert_eq!(
        s.traffic.rate,
        [RatePoint {
            at: Duration::ZERO,
            rps: 100.0,
            ramp: false
        }]
    );
    assert_eq!((s.clients.count, s.clients.skew), (100, 0.0));
    assert_eq!(s.requests.len(), 1);
    assert_eq!(s.requests[0].method, "GET");
    assert_eq!(s.defaults.latency, Latency::Fixed(ms(10)));
    assert!(s.backends.is_empty());
}

#[test]
fn a_full_file_reads_as_written() {
    let text = "\
duration: 2m
bucket: 2s
seed: 42
traffic:
  rate:
    - {at: 0s, rps: 10}
    - {at: 30s, rps: 100, ramp: true}
  bursts: [{at: 1m, for: 5s, rps: 500}]
  arrivals: even
clients: {count: 500, network: 192.168.0.0/16, skew: 1.1}
requests:
  - {method: GET, share: 9}
  - {method: POST, share: 1, body: 2KiB}
defaults:
  latency: {lognormal: {median: 20ms, p99: 250ms}}
  error_rate: 0.01
  concurrency: 32
backends:
  api-2:
    latency: {percentiles: {p50: 10ms, p99.9: 1s, max: 2s}}
  api-3:
    error_status: 503
    events:
      - {at: 1m30s, error_rate: 1}
      - {at: 1m, slow: 10}
      - {at: 1m40s, down: true, health: fail}
      - {at: 1m50s, up: true, flap: 0s}
";
    let s = parse_scenario(text, Format::Yaml, "s.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.bucket, s.seed), (Duration::from_secs(2), 42));
    assert_eq!(s.traffic.rate.len(), 2);
    assert!(s.traffic.rate[1].ramp);
    assert_eq!(s.traffic.bursts[0].length, Duration::from_secs(5));
    assert_eq!(s.traffic.arrivals, Arrivals::Even);
    assert_eq!(s.clients.count, 500);
    assert_eq!(s.requests[1].body_bytes, 2048);
    assert_eq!(s.defaults.concurrency, Some(32));
    let (api2, _) = s.behaviour("api-2");
    assert_eq!(
        api2.latency,
        Latency::Percentiles(vec![(50.0, ms(10)), (99.9, ms(1000)), (100.0, ms(2000))])
    );
    assert_eq!(
        api2.error_rate, 0.01,
        "the defaults fill what an entry leaves out"
    );
    let (api3, events) = s.behaviour("api-3");
    assert_eq!(api3.error_status, 503);
    assert_eq!(api3.concurrency, Some(32));
    let timeline: Vec<(u64, Vec<Action>)> = events
        .iter()
        .map(|e| (e.at.as_secs(), e.actions.clone()))
        .collect();
    assert_eq!(
        timeline,
        [
            (60, vec![Action::Slow(10.0)]),
            (90, vec![Action::ErrorRate(1.0)]),
            (100, vec![Action::Down, Action::Health(false)]),
            (110, vec![Action::Up, Action::Flap(Duration::ZERO)]),
        ]
    );
    let (other, none) = s.behaviour("api-1");
    assert_eq!(other, &s.defaults);
    assert!(none.is_empty());
}

#[test]
fn every_error_is_located() {
    const D: &str = "duration: 1m\n";
    #[rustfmt::skip]
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("traffic: {rate: 1}\n".into(),
         vec!["s.yaml:1:1: duration: missing required field"]),
        ("duration: soon\ntraffic: {rate: 1}\n".into(),
         vec!["s.yaml:1:11: duration: invalid duration \"soon\": expected a number at \"soon\" \
               (hint: durations look like 250ms, 10s, 5m, 1h or 1m30s)"]),
        ("duration: 2d\ntraffic: {rate: 1}\n".into(),
         vec!["s.yaml:1:11: duration: invalid duration \"2d\": unknown unit \"d\" \
               (hint: durations look like 250ms, 10s, 5m, 1h or 1m30s)"]),
        ("duration: 25h\ntraffic: {rate: 1}\n".into(),
         vec!["s.yaml:1:11: duration: must be at most 24h, found 25h"]),
        (format!("{D}traffik: {{rate: 1}}\n"),
         vec!["s.yaml:1:1: traffic: missing required field (hint: like `traffic: {rate: 100}`)",
              "s.yaml:2:1: traffik: unknown field \"traffik\" (hint: did you mean \"traffic\"?)"]),
        (format!("{D}traffic: {{rate: -5}}\n"),
         vec!["s.yaml:2:17: traffic.rate: must be at least 0, found -5"]),
        (format!("{D}traffic: {{rate: [{{at: 1s, rps: 5}}]}}\n"),
         vec!["s.yaml:2:23: traffic.rate[0].at: the first point must be at 0s \
               (hint: start with {at: 0s, rps: ...})"]),
        (format!("{D}traffic:\n  rate:\n    - {{at: 0s, rps: 5}}\n    - {{at: 0s, rps: 6, ramp: true}}\n"),
         vec!["s.yaml:5:12: traffic.rate[1].at: must be later than the previous point (0s)"]),
        (format!("{D}traffic: {{rate: 1, arrivals: uniform}}\n"),
         vec!["s.yaml:2:30: traffic.arrivals: unknown arrivals \"uniform\" \
               (hint: poisson (random gaps) or even (evenly spaced))"]),
        (format!("{D}bucket: 10ms\ntraffic: {{rate: 1}}\n"),
         vec!["s.yaml:2:9: bucket: makes 6000 buckets, more than 1000 (hint: use at least 60ms)"]),
        ("duration: 24h\ntraffic: {rate: 2000}\n".into(),
         vec!["s.yaml:2:17: traffic.rate: asks for about 172800000 requests, more than 100000000 \
               (hint: lower the rate or shorten the duration)"]),
        (format!("{D}traffic: {{rate: 1}}\nclients: {{count: 300, network: 10.0.0.0/24}}\n"),
         vec!["s.yaml:3:32: clients.network: 10.0.0.0/24 holds 256 addresses, fewer than the 300 \
               clients (hint: use a wider range or fewer clients)"]),
        (format!("{D}traffic: {{rate: 1}}\nrequests: [{{method: POST, body: 2 parsecs}}]\n"),
         vec!["s.yaml:3:33: requests[0].body: invalid size \"2 parsecs\" \
               (hint: like 512, 512B, 2KiB, 1MiB or 1MB)"]),
        (format!("{D}traffic: {{rate: 1}}\nrequests: []\n"),
         vec!["s.yaml:3:11: requests: must list at least one kind of request"]),
        (format!("{D}traffic: {{rate: 1}}\ndefaults: {{error_rate: 1.5, error_status: 404}}\n"),
         vec!["s.yaml:3:24: defaults.error_rate: must be at most 1, found 1.5",
              "s.yaml:3:43: defaults.error_status: must be at least 500, found 404"]),
        (format!("{D}traffic: {{rate: 1}}\ndefaults:\n  latency: {{lognormal: {{median: 20ms, p99: 10ms}}}}\n"),
         vec!["s.yaml:4:44: defaults.latency.lognormal.p99: must be at least the median (20ms)"]),
        (format!("{D}traffic: {{rate: 1}}\ndefaults:\n  latency: {{fixed: 1ms, normal: {{mean: 1ms, stddev: 1ms}}}}\n"),
         vec!["s.yaml:4:12: defaults.latency: names 2 distributions; give one \
               (hint: fixed, normal, lognormal or percentiles)"]),
        (format!("{D}traffic: {{rate: 1}}\ndefaults:\n  latency: {{percentiles: {{p50: 20ms, p90: 10ms, p100: 1s}}}}\n"),
         vec!["s.yaml:4:43: defaults.latency.percentiles: p90 (10ms) is below p50 (20ms) \
               (hint: a higher percentile cannot be faster)",
              "s.yaml:4:49: defaults.latency.percentiles.p100: \"p100\" is not a percentile \
               (hint: min, max, or p followed by a number between 0 and 100, like p99.9)"]),
        (format!("{D}traffic: {{rate: 1}}\ndefaults:\n  latency:\n"),
         vec!["s.yaml:4:10: defaults.latency: expected a duration or a distribution, found nothing \
               (hint: like 20ms or {lognormal: {median: 20ms, p99: 200ms}})"]),
        (format!("{D}traffic: {{rate: 1}}\nbackends:\n  b:\n    events: [{{at: 2m, down: true}}]\n"),
         vec!["s.yaml:5:19: backends.b.events[0].at: 2m is not before the end of the scenario (1m)"]),
        (format!("{D}traffic: {{rate: 1}}\nbackends:\n  b:\n    events: [{{at: 1s, down: true, up: true}}]\n"),
         vec!["s.yaml:5:39: backends.b.events[0].up: contradicts `down` in the same event \
               (hint: give one of the two)"]),
        (format!("{D}traffic: {{rate: 1}}\nbackends:\n  b:\n    events: [{{at: 1s}}]\n"),
         vec!["s.yaml:5:14: backends.b.events[0]: says when, but not what happens \
               (hint: add one of: down, up, slow, error_rate, health, flap)"]),
        (format!("{D}traffic: {{rate: 1}}\nbackends:\n  b:\n    events: [{{at: 1s, slow: 0}}]\n"),
         vec!["s.yaml:5:29: backends.b.events[0].slow: must be greater than 0"]),
        (format!("{D}traffic: {{rate: 1}}\nbackends:\n  b: {{error_rate: 0.5}}\n  b: {{error_rate: 1}}\n"),
         vec!["s.yaml:5:3: backends.b: duplicate backend, first given on line 4 \
               (hint: merge the two entries)"]),
    ];
    for (text, want) in cases {
        assert_eq!(errors(&text), want, "for\n{text}");
    }
}

#[test]
fn json_errors_have_positions_too() {
    let text = "{\n  \"duration\": \"1m\",\n  \"traffic\": {\"rate\": \"fast\"}\n}\n";
    let errors = parse_scenario(text, Format::Json, "s.json").expect_err("rate is text");
    assert_eq!(
        errors.to_string(),
        "s.json:3:23: traffic.rate: expected a number, found a string"
    );
}

#[test]
fn file_level_problems_are_one_error() {
    let cases = [
        (
            "s.toml",
            &b"duration = 1"[..],
            "s.toml: unknown file extension \".toml\"",
        ),
        ("s.yaml", b"  \n", "s.yaml: the file is empty"),
        ("s.yaml", b"\xff\xfe", "s.yaml: the file is not UTF-8 text"),
        ("s.yaml", b"duration: [1m\n", "s.yaml:1:11: invalid YAML"),
    ];
    for (name, bytes, start) in cases {
        let error = parse_scenario_bytes(bytes, Path::new(name)).expect_err(name);
        assert!(error.to_string().starts_with(start), "{name}: {error}");
    }
}
