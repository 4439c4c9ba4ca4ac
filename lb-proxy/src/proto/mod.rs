//! Protocol codecs: pure code that turns bytes into typed verdicts and back: HTTP/1.1 ([`h1`]) and
//! the PROXY protocol ([`proxy_protocol`]).

pub mod h1;
pub mod proxy_protocol;
