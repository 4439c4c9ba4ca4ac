//! `lb-observe`: reading a running `lb` daemon from outside, through its Prometheus metrics,
//! and steering it through its admin API.
//!
//! It fetches `/metrics` over HTTP as Prometheus would, parses the text format, and turns
//! consecutive scrapes into what an operator reads: requests per second, error shares, latency
//! quantiles from histogram bucket deltas, backend health and breaker states, with counter
//! resets (a restarted daemon) handled as Prometheus does. `lb-tui` draws it live and
//! `lb-cli status` prints it once; both get the same figures because both use this crate.
//!
//! It is not a Prometheus client library (it exports nothing), not a time-series store (the
//! model keeps only the previous scrape and short histories), and it knows nothing of the
//! daemon's insides: only what the metrics endpoint and the admin API say. It has no async
//! runtime and no terminal code, so a command-line tool can use it without pulling in either.
//!
//! The [`admin`] client is the other direction: typed calls to the daemon's admin API (list
//! backends, drain, enable, weight, breaker reset, reload), shared by `lb-cli`'s admin verbs and
//! `lb-tui`'s drain and enable keys, over the same blocking HTTP client as the scrape.
//!
//! # Layout
//! - [`admin`]: a client of the admin API: typed answers and errors that keep the daemon's
//!   message and status.
//! - [`scrape`]: one blocking `GET` of the metrics text (`ureq`: timeouts, TLS, a bearer token).
//! - [`parse`]: the Prometheus text format 0.0.4 into samples.
//! - [`model`]: two scrapes into rates, error shares, quantiles and histories (pure: no IO, no
//!   clock; the caller says when each scrape arrived).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod model;
pub mod parse;
pub mod scrape;
mod transport;
