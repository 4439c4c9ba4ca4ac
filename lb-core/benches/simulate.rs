//! One million simulated requests: `lb_core::simulate::run` on `benches/simulate-1m.yaml`
//! (10 000 requests a second for 100 s; one backend of three slows down, fails, goes down and
//! comes back) with the reference configuration, once per algorithm of interest.
//!
//! The target is under 2 s per million requests on the project's 2-core machine;
//! `docs/simulate.md` records the measured figure.
//!
//! Run: `cargo bench -p lb-core --bench simulate`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use lb_core::balance::Algorithm;
use lb_core::config::{Format, parse};
use lb_core::simulate::{parse_scenario, run};
use rand::SeedableRng;
use rand::rngs::StdRng;

const CONFIG: &str = include_str!("../../config/config.yaml");
const SCENARIO: &str = include_str!("simulate-1m.yaml");

fn million(c: &mut Criterion) {
    let scenario = parse_scenario(SCENARIO, Format::Yaml, "simulate-1m.yaml").expect("valid");
    let mut group = c.benchmark_group("simulate_1m_requests");
    // A run takes a good fraction of a second: flat sampling, ten samples of a few runs each.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::LeastConnections,
        Algorithm::P2c,
    ] {
        let mut config = parse(CONFIG, Format::Yaml, "config.yaml").expect("valid");
        config.load_balancer.algorithm = algorithm;
        #[allow(clippy::disallowed_methods)] // time zero of the virtual clock, read once
        let base = Instant::now();
        group.bench_function(algorithm.as_str(), |b| {
            b.iter(|| {
                let mut rng = StdRng::seed_from_u64(scenario.seed);
                black_box(run(&config, &scenario, base, &mut rng).expect("runs"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, million);
criterion_main!(benches);
