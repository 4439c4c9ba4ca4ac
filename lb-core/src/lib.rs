//! The pure heart of the `lb` load balancer.
//!
//! Everything here is a decision, never an action: no sockets, no files opened on its own,
//! no clock reads and no global random generator. Time comes in as `now: Instant`,
//! randomness as `&mut R where R: Rng`, so every state machine is deterministic under test.
//!
//! # Layout
//! - [`config`]: the configuration model, YAML/JSON parsing and validation with locations.
//! - [`balance`]: the balancing algorithms behind one [`balance::Balancer`] trait.
//! - [`breaker`]: the per-backend circuit breaker state machine.
//! - [`retry`]: the retry decision, backoff with jitter, and the retry budget.
//! - [`health`]: per-backend health hysteresis from active checks.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod balance;
pub mod breaker;
pub mod config;
pub mod health;
pub mod retry;
