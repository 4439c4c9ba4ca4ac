//! `lb-cli`'s integration tests, in one test binary (`it`) so that the crate and its
//! dependencies are linked once: the real `lb-cli` binary on the repository's files, and
//! against an in-process daemon (`lb_proxy::Daemon`) over real `test-backend`s on 127.0.0.1.
//!
//! # Layout
//! - `check`: `check`, `show` and `init` on the fixtures in `config/bad/` and the shipped files.
//! - `simulate`: `simulate`'s report, comparison, JSON and scenario errors.
//! - `simulate_agreement`: the simulation against the real daemon on one scenario.
//! - `status`: `status` against a real daemon with traffic and a health flip.
//! - `support`: running the binary from the repository root, backends, one plain `GET`.

mod check;
mod check_tls;
mod simulate;
mod simulate_agreement;
mod status;
mod support;
