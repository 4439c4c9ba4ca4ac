//! The data plane of `lb`: a tokio/hyper HTTP load balancer that puts every decision of
//! `lb-core` to work on live traffic.
//!
//! This crate does the IO — sockets, timers, the pooled client, the metrics listener — and
//! nothing else; which backend, whether to retry, when a breaker opens and when a backend is
//! healthy are all `lb-core`'s calls.
//!
//! # Layout
//! - [`server`]: the [`Daemon`]: listeners, connection limit, graceful shutdown, and each client
//!   connection's HTTP/1 loop over the codec (hyper's server for h2c).
//! - [`proto`]: the pure HTTP/1.1 codec: head parsing and validation, framing, chunked coding,
//!   head writers.
//! - [`forward`]: the request path (pick, guard, forward, record, retry or answer).
//! - [`reply`], [`body`]: what the request path answers, and the bodies by direction.
//! - [`backend`]: per-backend live state: in-flight slots, health flag, breaker, metric handles.
//! - [`runtime`]: the atomic snapshot of config, backends, selector and retry policy.
//! - [`upstream`]: the per-backend pool of keep-alive connections and the exchange on them.
//! - [`health`]: the active health checker.
//! - [`metrics`]: the Prometheus families and their endpoint.
//! - [`client`], [`timed_io`], [`clock`]: what a connection knows of its client, its timers,
//!   and the data plane's clock.
//! - [`demo`]: the `--demo` fleet.
#![forbid(unsafe_code)]

pub mod backend;
pub mod body;
pub mod client;
pub mod clock;
pub mod demo;
pub mod forward;
pub mod health;
pub mod metrics;
pub mod proto;
pub mod reply;
pub mod runtime;
pub mod server;
pub mod timed_io;
pub mod upstream;

pub use server::{Daemon, StartError};
