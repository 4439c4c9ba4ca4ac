//! Rate limiting: the decision (GCRA, [`Gcra`]) and a store of one budget per key bounded in
//! memory ([`KeyedLimiter`]).
//!
//! # Why GCRA
//! The generic cell rate algorithm (ATM's policer; Brandur Leach's write-up made it the usual
//! choice for HTTP) keeps one number per key, the *theoretical arrival time* (TAT): when the
//! budget would be full again if no request came. A request at `now` is allowed iff
//! `TAT - tolerance <= now`, and then moves TAT one emission interval `T = period / requests`
//! later (from `now` if TAT is already past). That is a token bucket of `burst` tokens filled
//! at `requests / period`, exact at every instant, without a timer or a refill step, in one
//! compare and one add; and a key whose TAT lies in the past holds nothing worth keeping, so
//! idle keys can be evicted at no cost to accuracy. The same arithmetic runs inside Redis for
//! limits a fleet shares (the data plane's script).
//!
//! Time is an argument: every decision takes `now`.
//!
//! # Layout
//! - [`gcra`]: the policy and the pure decision.
//! - [`keyed`]: the per-key store, sharded, bounded, evicting idle keys first.

pub mod gcra;
pub mod keyed;

pub use gcra::{Decision, Gcra, InvalidLimit};
pub use keyed::{KeyedLimiter, key_of_ip};
