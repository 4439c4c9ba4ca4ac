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
//! - [`ratelimit`]: GCRA decisions and a per-key store bounded in memory.
//! - [`route`]: path normalisation and the route table (first match in file order).
//! - [`health`]: per-backend health hysteresis from active checks.
//! - [`net`]: CIDR ranges and the client-address rule for `X-Forwarded-For`.
//! - [`simulate`]: a discrete-event simulation of a configuration under a scenario, driving
//!   the decision code above in virtual time.
//!
//! # Using it as a library
//!
//! Parse a configuration, build a selector over its backends, and make one routing decision
//! with a view of which backends are eligible right now:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use lb_core::balance::{BackendSpec, BackendView, Balancer, PickContext, Selector};
//! use lb_core::breaker::{Admission, BreakerPolicy, CircuitBreaker};
//! use lb_core::config::{parse, Format};
//! use rand::SeedableRng;
//!
//! let yaml = "load_balancer:\n  algorithm: weighted_round_robin\n\
//!             backends:\n  - {name: a, address: 127.0.0.1:8001, weight: 3}\n\
//!             \x20 - {name: b, address: 127.0.0.1:8002}\n";
//! let config = parse(yaml, Format::Yaml, "example.yaml").expect("valid");
//!
//! // The caller owns the live state; lb-core only reads it through a view.
//! struct Fleet { healthy: Vec<bool> }
//! impl BackendView for Fleet {
//!     fn len(&self) -> usize { self.healthy.len() }
//!     fn is_eligible(&self, index: usize) -> bool { self.healthy[index] }
//!     fn in_flight(&self, _index: usize) -> u64 { 0 }
//! }
//!
//! let specs: Vec<BackendSpec<'_>> = config.backends.iter()
//!     .map(|backend| BackendSpec { id: &backend.name, weight: backend.weight })
//!     .collect();
//! let selector = Selector::new(config.load_balancer.algorithm, &specs);
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let fleet = Fleet { healthy: vec![true, true] };
//! let picks: Vec<usize> = (0..4)
//!     .filter_map(|_| selector.pick(&fleet, &PickContext::default(), &mut rng))
//!     .collect();
//! assert_eq!(picks.iter().filter(|&&index| index == 0).count(), 3); // weight 3 of 4
//!
//! // Time is an argument: a breaker opened at t0 admits a probe exactly open_duration later.
//! let policy = BreakerPolicy::try_new(1, Duration::from_secs(30), Duration::from_secs(60), 1, 1)
//!     .expect("valid policy");
//! let mut breaker = CircuitBreaker::new(policy);
//! # #[allow(clippy::disallowed_methods)]
//! let t0 = Instant::now();
//! let (admission, _) = breaker.try_acquire(t0);
//! assert!(breaker.record_failure(admission, t0).is_some()); // closed -> open
//! assert_eq!(breaker.try_acquire(t0 + Duration::from_millis(29_999)).0, Admission::Rejected);
//! assert_eq!(breaker.try_acquire(t0 + Duration::from_secs(30)).0, Admission::Probe);
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod balance;
pub mod breaker;
pub mod config;
pub mod discovery;
pub mod health;
pub mod net;
pub mod ratelimit;
pub mod retry;
pub mod route;
pub mod simulate;
