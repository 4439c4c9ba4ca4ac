//! `test-backend`'s integration tests, in one test binary (`it`): every endpoint over real
//! sockets on 127.0.0.1.
//!
//! # Layout
//! - `endpoints`: each endpoint, fault injection, counters and shutdown.
//! - `support`: starting a backend, one request with hyper's client, bounded polling.

mod endpoints;
mod support;
