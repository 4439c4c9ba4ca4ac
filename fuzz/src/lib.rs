//! The properties the fuzz targets check. Each module is also compiled into the corpus-replay
//! tests of lb-core and lb-proxy (by `#[path]`), so a finding saved to `corpus/` becomes a
//! regression test that runs on stable in CI.

pub mod chunked_check;
pub mod config_check;
pub mod header_check;
pub mod request_check;
pub mod response_check;
pub mod route_check;
