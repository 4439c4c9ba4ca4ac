//! lb-proxy's integration tests, in one binary: real balancers and backends on 127.0.0.1 port
//! 0, raw sockets where the bytes matter, tokio's paused clock where the timers do.

mod support;

mod access_log;
mod admin_api;
mod auth;
mod differential;
mod discovery_dns;
mod discovery_etcd;
mod discovery_etcd_secure;
mod discovery_file;
mod discovery_fleet;
mod exhaustion;
mod forwarded_for;
mod forwarding;
mod fuzz_corpus;
mod grpc;
mod hostile_clients;
mod http2_attacks;
mod http2_edge;
mod http2_limits;
mod idle_release;
mod layers;
mod lifecycle;
mod limits;
mod ops_files;
mod proxy_protocol;
mod queue;
mod reload;
mod reload_routes;
mod request_id;
mod resilience;
mod routes;
mod routing;
mod server_loop;
mod shared_limits;
mod sick_backends;
mod sighup;
mod slow_start;
mod timers;
mod tls_termination;
mod tls_tools;
mod tls_upstream;
mod tracing;
mod upgrades;
mod upstream_framing;
