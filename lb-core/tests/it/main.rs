//! lb-core's integration tests, in one binary: the configuration pipeline on real files, and
//! properties of the balancing algorithms, the state machines and the simulation.

mod balance_props;
mod config_duration;
mod config_observe;
mod config_parse;
mod config_protocol;
mod config_routes;
mod config_tls;
mod config_validation;
mod fuzz_corpus;
mod simulate_bench_scenario;
mod simulate_props;
mod state_props;
