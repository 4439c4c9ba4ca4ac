//! The HTTP/1.1 codec: pure and synchronous — bytes in, typed verdicts out; no tokio, no
//! sockets. The client connection loop and the upstream client are IO drivers over it.
//!
//! Every rule the balancer enforces on HTTP/1.1 lives here once: what makes a request or
//! response head valid, how each body is framed in both directions, which fields are hop-by-hop,
//! and how heads are written. Framing is always written from the body actually sent; no field a
//! peer sent can remove or change it (`docs/security.md` lists each rule with its test).
//!
//! # Layout
//! - [`request`]: request heads: parse, validate ([`request::RequestError`]), and the same rules
//!   for heads hyper parsed ([`request::check_parts`]).
//! - [`response`]: response heads from a backend: parse, validate, frame the body.
//! - [`framing`]: the one `Content-Length` parser, transfer codings, [`framing::Framing`].
//! - [`chunked`]: the chunked decoder (explicit states) and encoder.
//! - [`target`]: request-target forms and `Host` syntax.
//! - [`fields`]: the hop-by-hop table and `Connection` tokens.
//! - [`mod@write`]: the head writers and number formatting.
//! - [`date`]: the `Date` cache.

pub mod chunked;
pub mod date;
pub mod fields;
pub mod framing;
pub mod request;
pub mod response;
pub mod target;
pub mod write;
