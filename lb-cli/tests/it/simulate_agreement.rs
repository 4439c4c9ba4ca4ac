//! Trust in `lb-cli simulate`: one scenario, scaled down to six seconds, run twice — through
//! the simulation, and through the real daemon (`lb_proxy::Daemon`, in-process on
//! 127.0.0.1 port 0) with three `test-backend`s whose latency and failures follow the
//! scenario's events in real time, with the same arrivals (`lb_core::simulate::arrivals`).
//! The two must agree on the backends' shares, the failed attempts, the retries and the
//! breaker trips, within the tolerances below.
//!
//! The scenario: three backends answering in 2 ms under `least_connections`; `b1` gets twenty
//! times slower from 1.5 s to 3 s (the algorithm should steer around it), `b2` answers 500 to
//! everything from 3.5 s to 4.7 s (its breaker trips, half-opens, trips again; the 500s are
//! retried on another backend). Event times sit at least 200 ms from the breaker's own
//! timeline (trips near 3.5 s, 3.8 s and 4.4 s, the closing probe near 5.0 s), so scheduling
//! jitter on a busy machine does not move a trip across an event.
//!
//! Tolerances, and why:
//! - attempt shares within 5 percentage points per backend, over the whole run and for `b1`
//!   over its slow window: least_connections breaks ties at random, and it reads in-flight
//!   counts that in the daemon include the network, the balancer and a debug build's
//!   overheads (about a millisecond a request), which the model leaves out (seven runs
//!   differed by at most 2.5 points);
//! - failed attempts at `b2`, retries and client errors within 3: each is a handful (about
//!   five) decided by which requests are in flight when the breaker moves, and a request in
//!   flight across a transition lands on either side;
//! - breaker trips within 1: the open periods are timed from the first failures, which real
//!   scheduling can delay by a few milliseconds.

use std::time::{Duration, Instant};

use lb_core::config::{Config, Format, parse};
use lb_core::simulate::report::Report;
use lb_core::simulate::scenario::{Action, Latency, Scenario};
use lb_core::simulate::{arrivals, parse_scenario, run};
use rand::SeedableRng;
use rand::rngs::StdRng;
use test_backend::{BackendOptions, RunningBackend};

use crate::support::{backend, get};

const SCENARIO: &str = "\
duration: 6s
bucket: 100ms
seed: 7
traffic: {rate: 300, arrivals: even}
clients: {count: 1, network: 127.0.0.1/32}
defaults: {latency: 2ms}
backends:
  b1:
    events:
      - {at: 1500ms, slow: 20}
      - {at: 3s, slow: 1}
  b2:
    events:
      - {at: 3500ms, error_rate: 1}
      - {at: 4700ms, error_rate: 0}
";

const SHARE_TOLERANCE: f64 = 0.05;
const COUNT_TOLERANCE: u64 = 3;
const TRIP_TOLERANCE: u64 = 1;

fn config(fleet: &[RunningBackend]) -> Config {
    let mut yaml = String::from(
        "server: {listen: 127.0.0.1:0, request_timeout: 5s}\nmetrics: {listen: 127.0.0.1:0}\n\
         load_balancer: {algorithm: least_connections}\n\
         health_check: {interval: 1s, timeout: 500ms}\n\
         circuit_breaker: {failure_threshold: 3, open_duration: 300ms, max_open_duration: 600ms, \
         success_threshold: 1}\n\
         retry: {max_attempts: 2, base_delay: 1ms, max_delay: 2ms, retry_on: [500, connect_error], \
         budget_ratio: 0.5, budget_min_per_sec: 20}\n\
         backends:\n",
    );
    for backend in fleet {
        yaml.push_str(&format!(
            "  - {{name: {}, address: {}}}\n",
            backend.name(),
            backend.addr()
        ));
    }
    parse(&yaml, Format::Yaml, "agreement.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// The scenario's base latency of `name` (a fixed one, which a test backend can play).
fn base_latency(scenario: &Scenario, name: &str) -> Duration {
    match scenario.behaviour(name).0.latency {
        Latency::Fixed(latency) => latency,
        ref other => panic!("a test backend plays fixed latencies, not {other:?}"),
    }
}

/// What the real run measured.
#[derive(Debug)]
struct Measured {
    attempts: Vec<u64>,
    /// Each backend's requests so far, at each event's time (before it is played).
    at_events: Vec<(Duration, Vec<u64>)>,
    failures_b2: u64,
    client_errors: u64,
    retries: u64,
    trips_b2: u64,
}

async fn real_run(scenario: &Scenario, fleet: &[RunningBackend], config: Config) -> Measured {
    let daemon = lb_proxy::Daemon::start(config)
        .await
        .expect("balancer starts");
    let proxy = daemon.listen_addr;
    let schedule: Vec<Duration> = arrivals(scenario, &mut StdRng::seed_from_u64(scenario.seed))
        .map(|a| a.at)
        .collect();
    let start = tokio::time::Instant::now() + Duration::from_millis(100);

    // The scenario's events, played on the test backends at their times.
    let mut events: Vec<(Duration, usize, Action)> = Vec::new();
    for (index, backend) in fleet.iter().enumerate() {
        for event in scenario.behaviour(backend.name()).1 {
            events.extend(event.actions.iter().map(|a| (event.at, index, *a)));
        }
    }
    events.sort_by_key(|e| e.0);
    let requests: Vec<_> = schedule
        .into_iter()
        .map(|at| {
            tokio::spawn(async move {
                tokio::time::sleep_until(start + at).await;
                get(proxy, "/").await
            })
        })
        .collect();
    let mut at_events = Vec::new();
    for (at, index, action) in events {
        tokio::time::sleep_until(start + at).await;
        at_events.push((at, attempts(fleet)));
        let backend = &fleet[index];
        match action {
            Action::Slow(factor) => {
                backend.set_latency(base_latency(scenario, backend.name()).mul_f64(factor))
            }
            Action::ErrorRate(rate) => backend.set_fail_rate(rate),
            other => panic!("the agreement scenario plays slow and error_rate, not {other:?}"),
        }
    }
    let mut client_errors = 0;
    for request in requests {
        if request.await.expect("request task") >= 500 {
            client_errors += 1;
        }
    }

    let url = format!(
        "http://{}/metrics",
        daemon.metrics_addr.expect("metrics on")
    );
    let text = tokio::task::spawn_blocking(move || {
        lb_observe::scrape::fetch(&url, &lb_observe::scrape::Options::default()).expect("metrics")
    })
    .await
    .unwrap();
    let samples = lb_observe::parse::parse(&text).expect("Prometheus text");
    let retries = samples
        .named("lb_retries_total")
        .map(|s| s.value)
        .sum::<f64>() as u64;
    let trips_b2 = samples
        .named("lb_circuit_breaker_transitions_total")
        .filter(|s| s.label("backend") == Some("b2") && s.label("to") == Some("open"))
        .map(|s| s.value)
        .sum::<f64>() as u64;
    daemon.shutdown().await;
    Measured {
        attempts: attempts(fleet),
        at_events,
        failures_b2: fleet[2].stats().snapshot().injected_failures,
        client_errors,
        retries,
        trips_b2,
    }
}

fn attempts(fleet: &[RunningBackend]) -> Vec<u64> {
    fleet
        .iter()
        .map(|b| b.stats().snapshot().requests)
        .collect()
}

/// `backend`'s share of the attempts between two counts of every backend's attempts.
fn share_between(before: &[u64], after: &[u64], backend: usize) -> f64 {
    let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    shares(&delta)[backend]
}

fn shares(attempts: &[u64]) -> Vec<f64> {
    let total: u64 = attempts.iter().sum();
    attempts
        .iter()
        .map(|&a| a as f64 / total.max(1) as f64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulation_agrees_with_the_daemon() {
    let scenario = parse_scenario(SCENARIO, Format::Yaml, "agreement.yaml").expect("valid");
    let mut fleet = Vec::new();
    for name in ["b0", "b1", "b2"] {
        let options = BackendOptions {
            name: name.to_owned(),
            latency: Some(base_latency(&scenario, name)),
            ..BackendOptions::default()
        };
        fleet.push(backend(options).await);
    }
    let config = config(&fleet);

    #[allow(clippy::disallowed_methods)] // time zero of the virtual clock
    let base = Instant::now();
    let simulated: Report = run(
        &config,
        &scenario,
        base,
        &mut StdRng::seed_from_u64(scenario.seed),
    )
    .expect("simulates");
    let measured = real_run(&scenario, &fleet, config).await;

    let sim_attempts: Vec<u64> = simulated.backends.iter().map(|b| b.attempts).collect();
    let b2 = &simulated.backends[2];
    let sim_failures_b2 = b2.failed_attempts.status;
    let report = format!(
        "simulated: attempts {sim_attempts:?}, b2 failed {sim_failures_b2}, client errors {}, \
         retries {}, b2 trips {}\nmeasured:  {measured:?}",
        simulated.clients.errors, simulated.clients.retries, b2.breaker_trips
    );

    // The slow window, 1.5 s to 3 s: least_connections steered around b1 in both runs.
    let window: Vec<u64> = (0..3)
        .map(|b| {
            simulated.timeline[15..30]
                .iter()
                .map(|x| x.backends[b].attempts)
                .sum()
        })
        .collect();
    let sim_slow_share = shares(&window)[1];
    let count_at = |t: u64| {
        measured
            .at_events
            .iter()
            .find(|(at, _)| *at == Duration::from_millis(t))
            .map(|(_, counts)| counts.clone())
            .expect("a count at each event")
    };
    let real_slow_share = share_between(&count_at(1500), &count_at(3000), 1);
    let report = format!(
        "{report}
b1's share while slow: simulated {sim_slow_share:.3}, measured {real_slow_share:.3}"
    );
    eprintln!("{report}");
    assert!(sim_slow_share < 0.2 && real_slow_share < 0.2, "{report}");
    assert!(
        (sim_slow_share - real_slow_share).abs() <= SHARE_TOLERANCE,
        "{report}"
    );
    assert!(
        b2.breaker_trips >= 2 && simulated.clients.retries >= 3,
        "{report}"
    );

    for (backend, (sim, real)) in shares(&sim_attempts)
        .iter()
        .zip(shares(&measured.attempts))
        .enumerate()
    {
        assert!(
            (sim - real).abs() <= SHARE_TOLERANCE,
            "b{backend} share: simulated {sim:.3}, measured {real:.3}\n{report}"
        );
    }
    let close = |sim: u64, real: u64, tolerance: u64| sim.abs_diff(real) <= tolerance;
    assert!(
        close(sim_failures_b2, measured.failures_b2, COUNT_TOLERANCE),
        "{report}"
    );
    assert!(
        close(simulated.clients.retries, measured.retries, COUNT_TOLERANCE),
        "{report}"
    );
    assert!(
        close(
            simulated.clients.errors,
            measured.client_errors,
            COUNT_TOLERANCE
        ),
        "{report}"
    );
    assert!(
        close(b2.breaker_trips, measured.trips_b2, TRIP_TOLERANCE),
        "{report}"
    );
    for backend in fleet {
        backend.shutdown().await;
    }
}
