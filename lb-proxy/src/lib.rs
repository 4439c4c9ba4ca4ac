//! The data plane of `lb`: a tokio/hyper HTTP load balancer that puts every decision of
//! `lb-core` to work on live traffic.
//!
//! This crate does the IO — sockets, timers, the pooled client, the metrics listener — and
//! nothing else; which backend, whether to retry, when a breaker opens and when a backend is
//! healthy are all `lb-core`'s calls.
//!
//! # Layout
//! Layers import downward only ([docs/data-plane.md](../docs/data-plane.md) draws them):
//! - `daemon`: start, wiring, reload, the admin API, stop ([`Daemon`]); `listener`: the accept
//!   loops and connection permits.
//! - `discovery`: sources of pools' backends (a watched file, DNS, etcd), applied by the daemon
//!   through the reload's diff.
//! - `conn`: one client connection — its timers, our HTTP/1.1 loop over the codec, hyper's
//!   server for h2c.
//! - `tls`: the TLS terminator (certificates by SNI name, reloads, tickets) and the TLS
//!   settings towards backends; under `upstream`, above the leaves.
//! - `proxy`: the request path — route, policy, prepare, attempt, settle, respond.
//! - `runtime`: the live snapshot: the route table and routes, the pools with their backends,
//!   selectors, retry policies and budgets.
//! - `upstream`: backends, their pools and connections, the health checker, the wait queue and
//!   slow start; `policy`: the state of route policies (rate limiters, auth schemes).
//! - `access_log`: the access log's records, formats and writer thread (under `upstream`);
//!   `trace`: W3C Trace Context and the OTLP span exporter's thread, just above it (spans are
//!   built from the access log's record).
//! - Leaves any layer may use: [`proto`] (the pure HTTP/1.1 codec), `metrics`, `shutdown`,
//!   `clock`, and `side_listener` (the small HTTP endpoints: metrics, admin).
#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![warn(clippy::large_futures)]

mod access_log;
mod clock;
mod conn;
mod daemon;
mod discovery;
mod listener;
mod metrics;
mod policy;
pub mod proto;
mod proxy;
mod runtime;
mod shutdown;
mod side_listener;
mod tls;
mod trace;
mod upstream;

pub use daemon::{
    Addresses, ConfigSource, Daemon, Handoff, Inherited, LoadError, ReloadError, ReloadReport,
    Reloader, StartError, StartOptions, Stopper, Takeover, TakeoverError, UpgradeSocket,
};
pub use tls::TlsError;
pub use trace::TracingError;
