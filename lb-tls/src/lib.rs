//! Certificate bundles for the `lb` load balancer, shared by the daemon (which serves them) and
//! `lb-cli check` (which vets them before a deploy).
//!
//! Everything here is a pure function of bytes the caller read: PEM text in, a ready
//! [`rustls::sign::CertifiedKey`] or a typed [`BundleError`] out. It opens no file, reads no clock
//! (validity is compared with a `now` the caller passes) and holds no socket, so the same code
//! decides what the daemon loads and what the checker reports.
//!
//! # Layout
//! - [`bundle`]: a certificate chain and its key, parsed, matched and checked for order
//!   ([`load_bundle`]).
//! - [`mod@inspect`]: what a certificate says: DNS names, IP addresses, validity, subject and issuer.
//! - [`names`]: which certificate names cover an SNI name (wildcards of one label).
//! - [`tickets`]: the session-ticket key file shared by a fleet.
//! - `der`: the few DER readings webpki does not expose (the validity period).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bundle;
mod der;
pub mod inspect;
pub mod names;
pub mod tickets;

pub use bundle::{Bundle, BundleError, KeyKind, load_bundle, parse_chain, parse_key};
pub use inspect::{CertInfo, inspect};
pub use names::covers;
pub use tickets::{TICKET_KEY_BYTES, TicketKeyError, parse_ticket_keys};

/// The crypto provider every part of `lb` uses: ring (docs/dependencies.md says why).
///
/// rustls 0.23.48 marks ring's provider deprecated because ring has no post-quantum key
/// exchange (X25519MLKEM768); aws-lc-rs has it, but its build needs cmake for sanitizer builds
/// (our fuzz targets) and would add a second C crypto library (docs/dependencies.md). Clients
/// and backends agree on X25519 or a NIST curve instead.
#[allow(deprecated)]
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
