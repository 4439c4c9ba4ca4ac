//! What a configuration does to traffic, before it meets traffic: a discrete-event simulation
//! that runs lb-core's real decision code in virtual time.
//!
//! # Why
//! An operator changing the algorithm, the breaker thresholds or the retry budget otherwise
//! learns what the change does in production. Because every decision in lb-core takes its
//! time (`now: Instant`) and its randomness (`R: Rng`) as arguments, the very code the daemon
//! runs — the configuration's [`Selector`](crate::balance::Selector), its
//! [`CircuitBreaker`](crate::breaker::CircuitBreaker)s, [`RetryPolicy`](crate::retry::RetryPolicy)
//! and [`RetryBudget`], [`HealthTracker`](crate::health::HealthTracker)s
//! and the `max_connections` limit — can be driven by a scenario instead of by sockets: a
//! million requests take about a quarter of a second, with no sleeping, and the same seed
//! gives the same report. Nothing is re-implemented here but the world around those
//! decisions: when requests arrive, how long a backend takes, when it fails.
//!
//! # How
//! A [`Scenario`] (parsed and validated like a configuration, every error at `file:line:col`)
//! gives the traffic (rate over time, clients, request mix) and each backend's behaviour
//! (latency distribution, error rate, workers, timed events). [`run`] replays the daemon's
//! request path (`lb-proxy/src/forward.rs`) for every arrival in a discrete-event loop:
//! deposit in the budget, pick among eligible backends skipping those tried, admit through the
//! breaker, wait for the backend (queueing behind its workers), record the outcome in the
//! breaker, and on failure let lb-core decide whether to wait a backoff and retry, all within
//! `server.request_timeout`. Health probes run every `health_check.interval`, staggered as the
//! daemon staggers them. The [`Report`] gives per-backend shares, peaks, breaker trips and
//! health flips, the clients' latency quantiles and errors by cause, and a timeline.
//!
//! Three independent random streams are forked from the caller's generator: the traffic, the
//! backends' draws, and the balancer's own draws. Two configurations run on one seed thus see
//! exactly the same requests arrive, and differ only by what they decide.
//!
//! # Simplifications (also in `docs/simulate.md`)
//! - A probe sees the backend's state at the instant it is sent and takes no time; a down
//!   backend fails its probe, an up one passes unless its health endpoint is set to fail.
//! - A down backend refuses connections at once (no connect timeouts); going down cuts the
//!   attempts it holds (`reset`).
//! - The network and the balancer itself add no latency; a response's body takes no time, so
//!   an in-flight slot is held from the attempt's start to the backend's answer.
//! - A backend's latency does not depend on the request's body size or method.
//! - Requests never come from a trusted proxy: the client address is the peer's.
//!
//! # Layout
//! - [`scenario`] and `parse`: the scenario model and its validation.
//! - `traffic`: arrivals by inverting the integrated rate.
//! - `latency`: the latency distributions.
//! - `fleet`: a simulated backend, the balancer's state beside the backend's.
//! - `engine`: the event loop, probes and scenario events.
//! - `path`: one request's path through pick, breaker, backend, retry.
//! - `stats` and [`report`]: counting, and the report built from the counts.

mod engine;
mod fleet;
mod latency;
mod parse;
mod path;
pub mod report;
pub mod scenario;
mod stats;
mod traffic;

use std::time::Instant;

use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::config::{Config, ConfigErrors};
use crate::retry::RetryBudget;

pub use parse::{
    MAX_BUCKETS, MAX_CLIENTS, MAX_DURATION, MAX_REQUESTS, MAX_RPS, parse_scenario,
    parse_scenario_bytes,
};
pub use report::Report;
pub use scenario::Scenario;
pub use traffic::{Arrival, ArrivalStream};

/// Why a simulation could not run.
#[derive(Debug, Error)]
pub enum SimulateError {
    /// The scenario names backends the configuration does not have.
    #[error("{0}")]
    Scenario(ConfigErrors),
}

/// The three generators of a run, forked from the caller's in a fixed order.
fn streams<R: Rng + SeedableRng>(rng: &mut R) -> [R; 3] {
    [R::from_rng(rng), R::from_rng(rng), R::from_rng(rng)]
}

/// The arrivals [`run`] would see for `scenario` with a generator in the same state as `rng`:
/// for replaying a scenario's traffic against a real daemon.
pub fn arrivals<R: Rng + SeedableRng>(scenario: &Scenario, rng: &mut R) -> ArrivalStream<R> {
    let [traffic, _, _] = streams(rng);
    ArrivalStream::new(scenario, traffic)
}

/// Runs `config` through `scenario`. `base` is time zero (any instant: only differences from
/// it matter); `rng` is forked into the run's random streams, so the same generator state
/// gives the same report.
///
/// # Errors
///
/// [`SimulateError::Scenario`] when the scenario names a backend the configuration does not
/// have (see [`Scenario::check_against`]); the policy errors when the configuration was built
/// by hand with settings validation would have refused.
///
/// # Example
///
/// ```
/// use std::time::Instant;
/// use lb_core::config::{parse, Format};
/// use lb_core::simulate::{parse_scenario, run};
/// use rand::SeedableRng;
///
/// let config = parse(
///     "backends:\n  - {name: a, address: 127.0.0.1:8001}\n  - {name: b, address: 127.0.0.1:8002}\n",
///     Format::Yaml,
///     "lb.yaml",
/// )
/// .unwrap();
/// let scenario = parse_scenario(
///     "duration: 10s\ntraffic: {rate: 100, arrivals: even}\n\
///      backends:\n  b:\n    events: [{at: 5s, down: true}]\n",
///     Format::Yaml,
///     "s.yaml",
/// )
/// .unwrap();
/// # #[allow(clippy::disallowed_methods)]
/// let base = Instant::now(); // the caller's clock, read once; lb-core never reads one
/// let mut rng = rand::rngs::StdRng::seed_from_u64(scenario.seed);
/// let report = run(&config, &scenario, base, &mut rng).unwrap();
/// assert_eq!(report.clients.requests, 1000);
/// // b refuses connections from 5 s on: GETs are retried on a, nobody sees an error.
/// assert_eq!(report.clients.errors, 0);
/// assert!(report.backends[1].failed_attempts.connect_error > 0);
/// ```
pub fn run<R: Rng + SeedableRng>(
    config: &Config,
    scenario: &Scenario,
    base: Instant,
    rng: &mut R,
) -> Result<Report, SimulateError> {
    scenario
        .check_against(config.backends.iter().map(|b| b.name.as_str()))
        .map_err(SimulateError::Scenario)?;
    let policies = fleet::Policies::from_config(config);
    let budget = RetryBudget::new(config.retry.budget, base);
    let mut engine = engine::Engine::new(config, scenario, &policies, budget, base, streams(rng));
    engine.run();
    let names: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
    Ok(report::build(
        &engine.recorder,
        &names,
        config.load_balancer.algorithm.as_str(),
        u64::try_from(scenario.duration.as_millis()).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests;
