//! `test-backend`'s integration tests, in one test binary (`it`): every endpoint over real
//! sockets on 127.0.0.1.
//!
//! # Layout
//! - `endpoints`: each endpoint, fault injection, counters and shutdown.
//! - `grpc`: the gRPC echo service, and the HTTP/2-only mode.
//! - `support`: starting a backend, one request with hyper's client, bounded polling.

mod endpoints;
mod grpc;
mod support;
