//! Balancing algorithms: given the live view of a backend set, pick one backend for a request.
//!
//! Every algorithm sits behind one [`Balancer`] trait and is reached through the [`Selector`]
//! enum, built once per backend set by [`Selector::new`]. Selection works on an immutable
//! snapshot of the backend set (names and weights): every table an algorithm needs is
//! precomputed in `new`, so [`Balancer::pick`] never allocates, and a reload builds a new
//! `Selector` and swaps it in rather than mutating this one (the pingora
//! `pingora-load-balancing` selection design). The only state that moves during picks is a
//! rotation cursor, kept in atomics (`Relaxed`: it orders nothing but itself), never a lock.
//!
//! Which backends may be picked is the caller's decision, not ours: the caller's
//! [`BackendView`] says whether a backend is eligible (healthy, its breaker admits, under its
//! connection limit) and how many requests it has in flight. A backend is a *candidate* iff it
//! is eligible and not in [`PickContext::exclude`] (the backends already tried for this
//! request). `pick` returns `None` iff there is no candidate.
//!
//! Weights: a weight of 0 is treated as 1 (configuration validation is where 0 is refused; the
//! selector clamps rather than panics or starves everyone).
//!
//! # Layout
//! - [`round_robin`]: strict rotation over candidates.
//! - [`weighted_round_robin`]: nginx's smooth weighted round robin, as a precomputed schedule.
//! - [`least_connections`]: fewest in-flight requests per unit of weight.
//! - [`random`]: uniform and weight-proportional random choice.
//! - [`p2c`]: power of two random choices by load (Mitzenmacher).
//! - [`ip_hash`]: consistent hashing of the client address on a ring with virtual nodes.
//! - [`hash`]: the fixed, documented hash functions `ip_hash` relies on.

mod cursor;
pub mod hash;
pub mod ip_hash;
pub mod least_connections;
pub mod p2c;
pub mod random;
pub mod round_robin;
#[cfg(test)]
mod test_support;
pub mod weighted_round_robin;

use std::net::IpAddr;

pub use ip_hash::IpHash;
pub use least_connections::LeastConnections;
pub use p2c::P2c;
pub use random::{Random, WeightedRandom};
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

use serde::{Deserialize, Serialize};

/// The balancing algorithm named by `load_balancer.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Strict rotation over eligible backends.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin (interleaved, as nginx does it).
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// Uniform random choice.
    Random,
    /// Weight-proportional random choice.
    WeightedRandom,
    /// Consistent hashing on the client address (session affinity).
    IpHash,
    /// Power of two random choices by load.
    P2c,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::Random,
        Algorithm::WeightedRandom,
        Algorithm::IpHash,
        Algorithm::P2c,
    ];

    /// The name used in configuration files and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::Random => "random",
            Algorithm::WeightedRandom => "weighted_random",
            Algorithm::IpHash => "ip_hash",
            Algorithm::P2c => "p2c",
        }
    }
}

/// Whether `algorithm` reads [`BackendView::in_flight`]; a caller may skip keeping exact
/// in-flight counts visible to the selector when it does not.
pub fn algorithm_needs_load(algorithm: Algorithm) -> bool {
    matches!(algorithm, Algorithm::LeastConnections | Algorithm::P2c)
}

/// The caller's live view of the backends, by index (`0..len`), read during one pick.
///
/// Indices are those of the [`BackendSpec`] slice the [`Selector`] was built from. If `len`
/// differs from that slice's length, indices beyond either are simply never candidates.
///
/// # Example
///
/// ```
/// use lb_core::balance::{Algorithm, BackendSpec, BackendView, Balancer, PickContext, Selector};
/// use rand::SeedableRng;
///
/// struct Live { up: Vec<bool>, busy: Vec<u64> }
/// impl BackendView for Live {
///     fn len(&self) -> usize { self.up.len() }
///     fn is_eligible(&self, index: usize) -> bool { self.up[index] }
///     fn in_flight(&self, index: usize) -> u64 { self.busy[index] }
/// }
///
/// let specs = [BackendSpec { id: "a", weight: 1 }, BackendSpec { id: "b", weight: 1 }];
/// let selector = Selector::new(Algorithm::LeastConnections, &specs);
/// let live = Live { up: vec![true, true], busy: vec![3, 1] };
/// let mut rng = rand::rngs::StdRng::seed_from_u64(7);
/// assert_eq!(selector.pick(&live, &PickContext::default(), &mut rng), Some(1));
/// ```
pub trait BackendView {
    /// Number of backends in the view.
    fn len(&self) -> usize;
    /// Whether the backend is usable now: healthy ∧ breaker admits ∧ under `max_connections`,
    /// decided by the caller. Called only with `index < len()`.
    fn is_eligible(&self, index: usize) -> bool;
    /// Requests in flight on the backend now (read by `least_connections` and `p2c`).
    fn in_flight(&self, index: usize) -> u64;
    /// Whether the view has no backends.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a pick knows about the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext<'a> {
    /// The client's address, the key of `ip_hash`; `None` when unknown.
    pub client: Option<IpAddr>,
    /// Indices already tried for this request; never picked again.
    pub exclude: &'a [usize],
}

/// One backend as the selector sees it when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSpec<'a> {
    /// Stable identity: the backend's name. `ip_hash` hashes it, so a client maps to the same
    /// backend after a restart and on every instance with the same backend list.
    pub id: &'a str,
    /// Relative weight (0 is treated as 1).
    pub weight: u32,
}

/// A balancing algorithm over one backend set.
///
/// # Example
///
/// ```
/// use lb_core::balance::{Algorithm, BackendSpec, BackendView, Balancer, PickContext, Selector};
/// use rand::SeedableRng;
///
/// struct AllUp(usize);
/// impl BackendView for AllUp {
///     fn len(&self) -> usize { self.0 }
///     fn is_eligible(&self, _: usize) -> bool { true }
///     fn in_flight(&self, _: usize) -> u64 { 0 }
/// }
///
/// let specs = [BackendSpec { id: "a", weight: 1 }, BackendSpec { id: "b", weight: 1 }];
/// let rr = Selector::new(Algorithm::RoundRobin, &specs);
/// let mut rng = rand::rngs::StdRng::seed_from_u64(1);
/// let tried = [0];
/// let ctx = PickContext { client: None, exclude: &tried };
/// // Backend 0 was already tried for this request, so only 1 remains.
/// assert_eq!(rr.pick(&AllUp(2), &ctx, &mut rng), Some(1));
/// assert_eq!(rr.algorithm(), Algorithm::RoundRobin);
/// ```
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Which algorithm this is.
    fn algorithm(&self) -> Algorithm;
    /// Choose a candidate (eligible and not excluded); `None` when there is none.
    /// Never allocates; safe to call from many threads at once.
    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        rng: &mut dyn rand::Rng,
    ) -> Option<usize>;
}

/// Enum dispatch over all algorithms, built once per backend set (a reload builds a new one).
#[derive(Debug)]
pub enum Selector {
    /// See [`RoundRobin`].
    RoundRobin(RoundRobin),
    /// See [`WeightedRoundRobin`].
    WeightedRoundRobin(WeightedRoundRobin),
    /// See [`LeastConnections`].
    LeastConnections(LeastConnections),
    /// See [`Random`].
    Random(Random),
    /// See [`WeightedRandom`].
    WeightedRandom(WeightedRandom),
    /// See [`IpHash`].
    IpHash(IpHash),
    /// See [`P2c`].
    P2c(P2c),
}

impl Selector {
    /// Build the selector for `algorithm` over `backends` (index `i` of the slice is index `i`
    /// of every later [`BackendView`]). Precomputes every table the picks need.
    ///
    /// # Panics
    ///
    /// Never: any backend list, including an empty one, gives a selector (an empty one always
    /// picks `None`).
    pub fn new(algorithm: Algorithm, backends: &[BackendSpec<'_>]) -> Selector {
        match algorithm {
            Algorithm::RoundRobin => Selector::RoundRobin(RoundRobin::new(backends.len())),
            Algorithm::WeightedRoundRobin => {
                Selector::WeightedRoundRobin(WeightedRoundRobin::new(backends))
            }
            Algorithm::LeastConnections => {
                Selector::LeastConnections(LeastConnections::new(backends))
            }
            Algorithm::Random => Selector::Random(Random::new(backends.len())),
            Algorithm::WeightedRandom => Selector::WeightedRandom(WeightedRandom::new(backends)),
            Algorithm::IpHash => Selector::IpHash(IpHash::new(backends)),
            Algorithm::P2c => Selector::P2c(P2c::new(backends)),
        }
    }

    /// As [`Selector::new`], with bounded loads for `ip_hash` when `balance_factor` is set
    /// ([`IpHash::with_balance_factor`]); other algorithms ignore it.
    pub fn with_balance_factor(
        algorithm: Algorithm,
        backends: &[BackendSpec<'_>],
        balance_factor: Option<f64>,
    ) -> Selector {
        match (algorithm, balance_factor) {
            (Algorithm::IpHash, Some(_)) => {
                Selector::IpHash(IpHash::new(backends).with_balance_factor(balance_factor))
            }
            _ => Selector::new(algorithm, backends),
        }
    }

    fn inner(&self) -> &dyn Balancer {
        match self {
            Selector::RoundRobin(b) => b,
            Selector::WeightedRoundRobin(b) => b,
            Selector::LeastConnections(b) => b,
            Selector::Random(b) => b,
            Selector::WeightedRandom(b) => b,
            Selector::IpHash(b) => b,
            Selector::P2c(b) => b,
        }
    }
}

impl Balancer for Selector {
    fn algorithm(&self) -> Algorithm {
        self.inner().algorithm()
    }

    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        rng: &mut dyn rand::Rng,
    ) -> Option<usize> {
        self.inner().pick(view, ctx, rng)
    }
}

/// The candidate test shared by every algorithm, with the index bound folded in.
#[derive(Clone, Copy)]
pub(crate) struct Candidates<'v, 'c> {
    view: &'v dyn BackendView,
    ctx: &'c PickContext<'c>,
    /// `min(view.len(), spec count)`: indices at or past it are never candidates.
    bound: usize,
}

impl<'v, 'c> Candidates<'v, 'c> {
    pub(crate) fn new(view: &'v dyn BackendView, ctx: &'c PickContext<'c>, specs: usize) -> Self {
        Candidates {
            view,
            ctx,
            bound: view.len().min(specs),
        }
    }

    /// The number of indices that may be candidates.
    pub(crate) fn bound(&self) -> usize {
        self.bound
    }

    pub(crate) fn contains(&self, index: usize) -> bool {
        index < self.bound && self.view.is_eligible(index) && !self.ctx.exclude.contains(&index)
    }

    pub(crate) fn in_flight(&self, index: usize) -> u64 {
        self.view.in_flight(index)
    }

    /// Whether any index is a candidate (an O(n) scan, for the rare slow paths).
    pub(crate) fn any(&self) -> bool {
        (0..self.bound).any(|i| self.contains(i))
    }

    /// The `k`-th candidate in index order, if there are more than `k`.
    pub(crate) fn nth(&self, k: usize) -> Option<usize> {
        (0..self.bound).filter(|&i| self.contains(i)).nth(k)
    }
}

/// A weight as the algorithms use it: 0 counts as 1.
pub(crate) fn effective_weight(weight: u32) -> u32 {
    weight.max(1)
}

/// The effective weight of every backend, in index order.
pub(crate) fn effective_weights(backends: &[BackendSpec<'_>]) -> Vec<u32> {
    backends
        .iter()
        .map(|b| effective_weight(b.weight))
        .collect()
}

/// Compare the loads of `a` and `b`, load being in-flight requests per unit of weight;
/// cross-multiplied in `u128` so no product can overflow and no division rounds.
pub(crate) fn compare_load(
    in_flight_a: u64,
    weight_a: u32,
    in_flight_b: u64,
    weight_b: u32,
) -> std::cmp::Ordering {
    let a = u128::from(in_flight_a) * u128::from(weight_b);
    let b = u128::from(in_flight_b) * u128::from(weight_a);
    a.cmp(&b)
}
