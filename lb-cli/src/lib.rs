//! `lb-cli`: the operator's tool for `lb` configuration files.
//!
//! It checks files as precisely as a compiler (every error with line, column, field, the
//! source line and a caret; warnings for settings that are valid but likely wrong), prints
//! the effective configuration with every default filled in, and writes a commented starter
//! file; `status` prints a running daemon's backends from its metrics endpoint; the admin verbs
//! (`backends`, `drain`, `enable`, `weight`, `breaker-reset`, `reload`) read and change a running
//! daemon through its admin API; `simulate` runs a configuration on a scenario in virtual time
//! and reports what traffic would see.
//!
//! The checking itself is `lb_core::config`'s pipeline; this crate reads files, turns the
//! results into reports and renders them, so everything but the file reads is unit-tested
//! on strings.
//!
//! # Layout
//! - [`admin`]: the admin verbs over `lb-observe`'s admin client, and their text output.
//! - [`cli`]: the clap command line and [`run`], which maps a command to an exit code.
//! - [`check`]: a [`check::FileReport`] per file: errors, warnings, a one-line summary.
//! - [`check_tls`]: the TLS files a configuration names, checked as the daemon loads them.
//! - [`render`]: reports as compiler-style text or as one JSON document.
//! - [`show`]: the effective configuration as YAML or JSON.
//! - [`init`]: the commented starter configuration.
//! - [`status`]: a one-shot table of a running daemon's backends (via `lb-observe`).
//! - [`simulate`]: what a configuration does to traffic, from `lb_core::simulate`.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod check;
pub mod check_tls;
pub mod cli;
pub mod init;
pub mod render;
pub mod show;
pub mod simulate;
pub mod status;

pub use cli::{Cli, run};
