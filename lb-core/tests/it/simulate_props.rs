//! Properties of the simulation over random configurations and scenarios: the same seed gives
//! the same report; every request ends exactly once, as a success or one classified error;
//! shares sum to 1; no backend holds more than its `max_connections`; attempts and retries
//! stay within what the retry policy and budget allow; nobody waits past the request timeout.

use std::time::Instant;

use lb_core::balance::Algorithm;
use lb_core::config::{Config, Format, parse};
use lb_core::simulate::{Report, parse_scenario, run};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[derive(Debug, Clone)]
struct BackendCase {
    weight: u32,
    max_connections: u32,
    latency: String,
    error_rate: f64,
    error_status: u16,
    concurrency: Option<u32>,
    events: Vec<(u64, String)>,
}

#[derive(Debug, Clone)]
struct Case {
    algorithm: Algorithm,
    backends: Vec<BackendCase>,
    max_attempts: u32,
    budget_ratio: f64,
    budget_min_per_sec: u32,
    breaker: Option<(u32, u64)>,
    health: Option<u64>,
    timeout_ms: u64,
    duration_ms: u64,
    rate: u32,
    even: bool,
    post_share: u32,
    big_body: bool,
    clients: u32,
    seed: u64,
}

fn latency() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..300).prop_map(|ms| format!("{ms}ms")),
        (1u64..100, 0u64..50)
            .prop_map(|(m, s)| format!("{{normal: {{mean: {m}ms, stddev: {s}ms}}}}")),
        (1u64..50, 1u64..20)
            .prop_map(|(m, f)| format!("{{lognormal: {{median: {m}ms, p99: {}ms}}}}", m * f)),
        (1u64..50, 0u64..500)
            .prop_map(|(a, b)| format!("{{percentiles: {{p50: {a}ms, max: {}ms}}}}", a + b)),
    ]
}

fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("down: true".to_owned()),
        Just("up: true".to_owned()),
        (1u32..40).prop_map(|f| format!("slow: {f}")),
        prop_oneof![Just(0.0), Just(0.3), Just(1.0)].prop_map(|r| format!("error_rate: {r}")),
        prop_oneof![Just("pass"), Just("fail")].prop_map(|h| format!("health: {h}")),
        (0u64..2000).prop_map(|p| format!("flap: {p}ms")),
    ]
}

fn backend(duration_ms: u64) -> impl Strategy<Value = BackendCase> {
    (
        1u32..4,
        1u32..40,
        latency(),
        prop_oneof![Just(0.0), Just(0.05), Just(0.5), Just(1.0)],
        prop_oneof![Just(500u16), Just(502), Just(503)],
        proptest::option::of(1u32..20),
        proptest::collection::vec((0..duration_ms, action()), 0..4),
    )
        .prop_map(
            |(weight, max_connections, latency, error_rate, error_status, concurrency, events)| {
                BackendCase {
                    weight,
                    max_connections,
                    latency,
                    error_rate,
                    error_status,
                    concurrency,
                    events,
                }
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (500u64..4000).prop_flat_map(|duration_ms| {
        (
            (
                proptest::sample::select(Algorithm::ALL.to_vec()),
                proptest::collection::vec(backend(duration_ms), 1..5),
                1u32..5,
                prop_oneof![Just(0.0), Just(0.2), Just(1.0)],
                0u32..20,
                proptest::option::of((1u32..6, 50u64..2000)),
                proptest::option::of(50u64..1000),
            ),
            (
                100u64..3000,
                Just(duration_ms),
                1u32..400,
                any::<bool>(),
                0u32..4,
                any::<bool>(),
                1u32..50,
                any::<u64>(),
            ),
        )
            .prop_map(
                |(
                    (
                        algorithm,
                        backends,
                        max_attempts,
                        budget_ratio,
                        budget_min_per_sec,
                        breaker,
                        health,
                    ),
                    (timeout_ms, duration_ms, rate, even, post_share, big_body, clients, seed),
                )| Case {
                    algorithm,
                    backends,
                    max_attempts,
                    budget_ratio,
                    budget_min_per_sec,
                    breaker,
                    health,
                    timeout_ms,
                    duration_ms,
                    rate,
                    even,
                    post_share,
                    big_body,
                    clients,
                    seed,
                },
            )
    })
}

fn config(case: &Case) -> Config {
    let mut text = format!(
        "server: {{request_timeout: {}ms}}\nload_balancer: {{algorithm: {}}}\n\
         retry: {{max_attempts: {}, base_delay: 10ms, max_delay: 100ms, budget_ratio: {}, \
         budget_min_per_sec: {}, retry_on: [connect_error, timeout, reset, 502, 503]}}\n",
        case.timeout_ms,
        case.algorithm.as_str(),
        case.max_attempts,
        case.budget_ratio,
        case.budget_min_per_sec,
    );
    match case.breaker {
        Some((threshold, open)) => text.push_str(&format!(
            "circuit_breaker: {{failure_threshold: {threshold}, open_duration: {open}ms, \
             max_open_duration: {}ms, success_threshold: 1}}\n",
            open * 4
        )),
        None => text.push_str("circuit_breaker: {enabled: false}\n"),
    }
    match case.health {
        Some(interval) => text.push_str(&format!(
            "health_check: {{interval: {interval}ms, timeout: {}ms, unhealthy_threshold: 2, \
             healthy_threshold: 2}}\n",
            interval / 2
        )),
        None => text.push_str("health_check: {enabled: false}\n"),
    }
    text.push_str("backends:\n");
    for (i, b) in case.backends.iter().enumerate() {
        text.push_str(&format!(
            "  - {{name: b{i}, address: 127.0.0.1:{}, weight: {}, max_connections: {}}}\n",
            8000 + i,
            b.weight,
            b.max_connections
        ));
    }
    parse(&text, Format::Yaml, "lb.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn scenario_text(case: &Case) -> String {
    let mut text = format!(
        "duration: {}ms\nbucket: {}ms\ntraffic: {{rate: {}, arrivals: {}}}\n\
         clients: {{count: {}, skew: 1}}\nrequests:\n  - {{method: GET, share: 3}}\n",
        case.duration_ms,
        case.duration_ms.div_ceil(10),
        case.rate,
        if case.even { "even" } else { "poisson" },
        case.clients,
    );
    if case.post_share > 0 {
        let body = if case.big_body { "100KiB" } else { "1KiB" };
        text.push_str(&format!(
            "  - {{method: POST, share: {}, body: {body}}}\n",
            case.post_share
        ));
    }
    text.push_str("backends:\n");
    for (i, b) in case.backends.iter().enumerate() {
        text.push_str(&format!(
            "  b{i}:\n    latency: {}\n    error_rate: {}\n    error_status: {}\n",
            b.latency, b.error_rate, b.error_status
        ));
        if let Some(c) = b.concurrency {
            text.push_str(&format!("    concurrency: {c}\n"));
        }
        if !b.events.is_empty() {
            text.push_str("    events:\n");
            for (at, action) in &b.events {
                text.push_str(&format!("      - {{at: {at}ms, {action}}}\n"));
            }
        }
    }
    text
}

fn simulate(case: &Case) -> (Config, Report) {
    let config = config(case);
    let text = scenario_text(case);
    let scenario =
        parse_scenario(&text, Format::Yaml, "s.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    #[allow(clippy::disallowed_methods)] // one real Instant as time zero
    let base = Instant::now();
    let report = run(
        &config,
        &scenario,
        base,
        &mut StdRng::seed_from_u64(case.seed),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (config, report)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_same_seed_gives_the_same_report(case in case()) {
        let (_, first) = simulate(&case);
        let (_, second) = simulate(&case);
        prop_assert_eq!(first, second);
    }

    #[test]
    fn every_request_ends_exactly_once(case in case()) {
        let (_, report) = simulate(&case);
        let c = &report.clients;
        let causes = c.causes.backend_error + c.causes.connect_error + c.causes.reset
            + c.causes.timeout + c.causes.no_backend + c.causes.too_large;
        prop_assert_eq!(c.successes + causes, c.requests);
        prop_assert_eq!(c.errors, causes);
        prop_assert_eq!(c.statuses.values().sum::<u64>(), c.requests);
        let ok: u64 = c.statuses.iter().filter(|(s, _)| **s < 500).map(|(_, n)| n).sum();
        prop_assert_eq!(ok, c.successes);
        for bucket in &report.timeline {
            let k = &bucket.causes;
            let causes = k.backend_error + k.connect_error + k.reset + k.timeout + k.no_backend
                + k.too_large;
            prop_assert_eq!(bucket.successes + causes, bucket.requests);
        }
        prop_assert_eq!(report.timeline.iter().map(|b| b.requests).sum::<u64>(), c.requests);
        // A backend's answer is a success or a passed-on 5xx (a backend error).
        let answered: u64 = report.backends.iter().map(|b| b.requests).sum();
        prop_assert!(answered >= c.successes);
        prop_assert!(answered <= c.successes + c.causes.backend_error);
    }

    #[test]
    fn shares_sum_to_one(case in case()) {
        let (_, report) = simulate(&case);
        for share in [
            report.backends.iter().map(|b| b.request_share).collect::<Vec<_>>(),
            report.backends.iter().map(|b| b.attempt_share).collect::<Vec<_>>(),
        ] {
            prop_assert!(share.iter().all(|s| (0.0..=1.0).contains(s)));
            let sum: f64 = share.iter().sum();
            prop_assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-9, "{}", sum);
        }
        for (i, backend) in report.backends.iter().enumerate() {
            let per_bucket: u64 = report.timeline.iter().map(|b| b.backends[i].attempts).sum();
            prop_assert_eq!(per_bucket, backend.attempts);
        }
    }

    #[test]
    fn limits_hold(case in case()) {
        let (config, report) = simulate(&case);
        for (backend, spec) in report.backends.iter().zip(&config.backends) {
            prop_assert!(backend.in_flight_peak <= u64::from(spec.max_connections));
        }
        let c = &report.clients;
        let sent = c.requests - c.causes.too_large;
        let attempts: u64 = report.backends.iter().map(|b| b.attempts).sum();
        prop_assert!(attempts <= sent * u64::from(config.retry.policy.max_attempts()));
        prop_assert!(attempts <= sent + c.retries);
        prop_assert!(attempts + c.causes.no_backend >= sent);
        // The budget's own bound over the run (arrivals, then at most one timeout to drain).
        let seconds = (case.duration_ms + case.timeout_ms).div_ceil(1000);
        let bound = config.retry.budget.ratio() * sent as f64
            + f64::from(config.retry.budget.min_per_sec()) * (seconds + 1) as f64;
        prop_assert!(c.retries as f64 <= bound + 1e-9, "{} > {}", c.retries, bound);
        prop_assert!(c.latency.max_ms <= case.timeout_ms as f64);
    }
}
