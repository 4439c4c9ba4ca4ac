//! The speed bench's scenario (`benches/simulate-1m.yaml`) stays what the bench claims, a
//! million requests over the reference configuration, and runs (here cut to two seconds, so
//! the test takes milliseconds).

use std::time::{Duration, Instant};

use lb_core::config::{Format, parse};
use lb_core::simulate::{parse_scenario, run};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CONFIG: &str = include_str!("../../../config/config.yaml");
const SCENARIO: &str = include_str!("../../benches/simulate-1m.yaml");

#[test]
fn the_bench_scenario_asks_for_a_million_requests_and_runs() {
    let config = parse(CONFIG, Format::Yaml, "config.yaml").expect("valid");
    let mut scenario = parse_scenario(SCENARIO, Format::Yaml, "simulate-1m.yaml").expect("valid");
    assert_eq!(scenario.expected_requests(), 1_000_000.0);
    scenario
        .check_against(config.backends.iter().map(|b| b.name.as_str()))
        .expect("it names the reference configuration's backends");

    scenario.duration = Duration::from_secs(2);
    #[allow(clippy::disallowed_methods)] // time zero of the virtual clock
    let base = Instant::now();
    let report = run(&config, &scenario, base, &mut StdRng::seed_from_u64(1)).expect("runs");
    let requests = report.clients.requests as f64;
    // Poisson: 20 000 expected, standard deviation 141.
    assert!((requests - 20_000.0).abs() < 1_000.0, "{requests}");
    assert_eq!(
        report.clients.successes + report.clients.errors,
        report.clients.requests
    );
    assert_eq!(report.timeline.len(), 2);
}
