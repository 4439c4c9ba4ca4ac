//! Protocol codecs: pure code that turns bytes into typed verdicts and back: HTTP/1.1 ([`h1`]),
//! the PROXY protocol ([`proxy_protocol`]), and gRPC's fields ([`grpc`]).

pub mod grpc;
pub mod h1;
pub mod proxy_protocol;
