//! The data plane of `lb`: a tokio/hyper HTTP load balancer that puts every decision of
//! `lb-core` to work on live traffic.
//!
//! This crate does the IO — sockets, timers, the pooled client, the metrics listener — and
//! nothing else; which backend, whether to retry, when a breaker opens and when a backend is
//! healthy are all `lb-core`'s calls.
//!
//! # Layout
//! - [`server`]: the [`Daemon`]: listeners, connection limit, graceful shutdown.
//! - [`forward`]: the request path (pick, guard, forward, record, retry or answer).
//! - [`backend`]: per-backend live state: in-flight slots, health flag, breaker, metric handles.
//! - [`runtime`]: the atomic snapshot of config, backends, selector and retry policy.
//! - [`upstream`]: the per-backend pool of keep-alive connections.
//! - [`health`]: the active health checker.
//! - [`metrics`]: the Prometheus families and their endpoint.
//! - [`validate`]: request-head checks hyper leaves to the application (Host, codings, 414).
//! - [`headers`], [`body`], [`idle`]: hop-by-hop rules, body wrappers, the idle timeout.
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
