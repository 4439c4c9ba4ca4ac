//! The properties the fuzz targets check. Each module is also compiled into the corpus-replay
//! tests of lb-core, lb-proxy and lb-observe (by `#[path]`), so a finding saved to `corpus/` becomes a
//! regression test that runs on stable in CI.

pub mod admin_check;
pub mod chunked_check;
pub mod config_check;
pub mod discovery_check;
pub mod grpc_check;
pub mod h2_resets_check;
pub mod h2_settings_check;
pub mod header_check;
pub mod request_check;
pub mod proxy_check;
pub mod response_check;
pub mod route_check;
pub mod traceparent_check;
