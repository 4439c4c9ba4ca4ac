//! `lb-tui`: a live dashboard of an `lb` daemon, read from its Prometheus metrics endpoint.
//!
//! It knows nothing of the daemon's insides: it scrapes `/metrics` over HTTP, like Prometheus
//! would, and shows the fleet (totals, one row per backend, sparklines). `lb-cli status`
//! reuses the same scrape, parser and model for its one-shot table. The pieces are apart so
//! each is tested alone: transport, then a pure state fed `(scrape, received_at)`, then
//! rendering that does no IO (drawn into ratatui's `TestBackend` in tests).
//!
//! # Layout
//! - [`scrape`]: one blocking HTTP/1.1 `GET` of the metrics text.
//! - [`parse`]: the Prometheus text format 0.0.4 into samples.
//! - [`model`]: two scrapes into rates, error shares, quantiles and histories (pure).
//! - [`ui`]: drawing a frame from the model (no IO).
//! - [`app`]: the terminal, the scraper thread and the key loop.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod app;
pub mod model;
pub mod parse;
pub mod scrape;
pub mod ui;
