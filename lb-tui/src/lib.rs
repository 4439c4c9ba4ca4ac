//! `lb-tui`: a live dashboard of an `lb` daemon, read from its Prometheus metrics endpoint.
//!
//! It knows nothing of the daemon's insides: `lb-observe` scrapes `/metrics` over HTTP, like
//! Prometheus would, and turns scrapes into figures; this crate shows them (fleet totals, one
//! row per backend, sparklines) and handles the terminal and the keys. The pieces are apart so
//! each is tested alone: transport and the pure model in `lb-observe`, then rendering that does
//! no IO (drawn into ratatui's `TestBackend` in tests), then the loop.
//!
//! Given the admin API's URL (`--admin`), it also drains and enables the selected backend
//! (`d`, `e`, confirmed with `y`) through `lb-observe`'s admin client; the metrics stay the
//! only thing it reads.
//!
//! # Layout
//! - [`ui`]: drawing a frame from the model (no IO).
//! - [`app`]: the terminal, the scraper thread and the key loop.
//! - [`admin`]: the drain and enable keys' state, and the thread that makes the calls.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod ui;
