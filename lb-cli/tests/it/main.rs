//! `lb-cli`'s integration tests, in one test binary (`it`) so that the crate and its
//! dependencies are linked once: the real `lb-cli` binary on the repository's files, and
//! against an in-process daemon (`lb_proxy::Daemon`) over real `test-backend`s on 127.0.0.1.
//!
//! The admin verbs run against a fake admin API: `lb-observe`'s canned-answer HTTP server,
//! shared through `#[path]`; the server side is the daemon's, and its own tests are there.
//!
//! # Layout
//! - `admin`: `backends`, `drain`, `enable`, `weight`, `breaker-reset`, `reload`: requests sent,
//!   output, one-line errors and exit codes.
//! - `admin_live`: the same verbs against the real daemon: drain, enable, weight, reload.
//! - `check`: `check`, `show` and `init` on the fixtures in `config/bad/` and the shipped files.
//! - `simulate`: `simulate`'s report, comparison, JSON and scenario errors.
//! - `simulate_agreement`: the simulation against the real daemon on one scenario.
//! - `status`: `status` against a real daemon with traffic and a health flip.
//! - `support`: running the binary from the repository root, backends, one plain `GET`.
//! - `fake_http`: `lb-observe/tests/it/support.rs`, a server on port 0 that plays canned answers.

mod admin;
mod admin_live;
mod check;
mod check_tls;
#[allow(
    dead_code,
    reason = "shared with lb-observe's tests, which use all of it"
)]
#[path = "../../../lb-observe/tests/it/support.rs"]
mod fake_http;
mod simulate;
mod simulate_agreement;
mod status;
mod support;
