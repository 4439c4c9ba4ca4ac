//! Protocol codecs: pure code that turns bytes into typed verdicts and back: HTTP/1.1 ([`h1`]),
//! the PROXY protocol ([`proxy_protocol`]), gRPC's fields ([`grpc`]), W3C Trace Context
//! ([`trace_context`]), the HTTP/2 settings read off backends' connections ([`h2_settings`])
//! and the quiet resets made loud there ([`h2_resets`]).

pub mod grpc;
pub mod h1;
pub mod h2_resets;
pub mod h2_settings;
pub mod proxy_protocol;
pub mod trace_context;
