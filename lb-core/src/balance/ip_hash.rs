//! Client affinity by consistent hashing on a ring with virtual nodes (Karger et al., 1997).
//!
//! Why a ring: of the three usual schemes it is the one that keeps every promise we need at a
//! low pick cost. Rendezvous hashing (HRW) has the same movement guarantees but costs O(n)
//! hashes per pick — tens of microseconds at 1000 backends. Maglev picks in O(1) but its
//! table fill is not minimally disruptive: removing a backend also moves a few clients between
//! two surviving backends, and the "next choice" of a client whose backend is down is not
//! defined by the table. On the ring, a pick is a binary search plus a short walk.
//!
//! Construction: backend `id` with weight `w` owns `100·w` virtual nodes at positions
//! [`vnode_point`]`(id, 0..100·w)`; a client sits at [`client_point`]`(address)`, and its
//! ordered list of choices is the owners met walking clockwise from there. It is served by the
//! first candidate on that list. Positions come from the backend's name (never its index or a
//! random seed), so the mapping is the same after a restart and on every instance with the
//! same backends, whatever their order. Hence, exactly:
//! - removing a backend moves only the clients it served (to their next choice), about `w/Σw`
//!   of them; adding one moves only clients onto it;
//! - a backend that is not a candidate sends each of its clients to that client's next choice,
//!   and they return when it is a candidate again (not being a candidate and being removed
//!   give the same mapping);
//! - raising a backend's weight only adds its virtual nodes, so the only clients that move are
//!   ones that move onto it; lowering it only removes nodes, so only clients it served move
//!   away. No client moves between two other backends.
//!
//! These promises hold while `100·Σw ≤ MAX_RING`, i.e. `Σw ≤ 10 485`. Beyond that, every
//! backend gets `max(1, ⌊w · MAX_RING / Σw⌋)` nodes, so weights stay honoured (to rounding)
//! but a weight change or removal can rescale every backend and move clients between others.
//!
//! Two backends with the same `id` share their positions; the lower index wins each one, so
//! names should be unique (configuration validation enforces it). With no client address
//! ([`PickContext::client`] is `None`, e.g. a Unix socket peer) there is no key to be sticky
//! on; rather than send all such requests to one backend, the pick falls back to round robin.
//!
//! A pick is O(log V) for the search plus the walk past non-candidates (V = number of virtual
//! nodes); with no candidate at all it gives up after one O(n) check.

use super::cursor::Cursor;
use super::effective_weight;
use super::hash::{client_point, vnode_point};
use super::{Algorithm, BackendSpec, BackendView, Balancer, Candidates, PickContext};

/// Virtual nodes per unit of weight: with 100, a backend's share of the ring has a relative
/// standard deviation of about 1/√100 = 10 %.
pub const VNODES_PER_WEIGHT: u64 = 100;
/// The most virtual nodes a ring holds before weights are scaled down (12 MiB of table).
pub const MAX_RING: u64 = 1 << 20;

/// Walked nodes before checking, once, whether any candidate exists at all.
const CHECK_ANY_AFTER: usize = 64;

/// Consistent hashing of the client address onto a ring of virtual nodes.
#[derive(Debug)]
pub struct IpHash {
    /// Number of backends in the set.
    len: usize,
    /// Ring positions, sorted ascending.
    points: Vec<u64>,
    /// `owners[k]` is the backend index of the node at `points[k]`.
    owners: Vec<u32>,
    /// `buckets[t]` is the first node whose position's top `64 - shift` bits are `>= t`, so
    /// the binary search runs over a handful of nodes instead of the whole ring (one or two
    /// cache misses rather than ~20 at 1000 backends).
    buckets: Vec<u32>,
    /// `64 −` the number of bits indexing `buckets`.
    shift: u32,
    /// Rotation for requests without a client address.
    fallback: Cursor,
    /// Bounded loads: no backend takes more than this factor times its share of the load.
    balance_factor: Option<f64>,
    /// Effective weights, by index, for the bounded-load caps.
    weights: Vec<u64>,
}

impl IpHash {
    /// Build the ring for `backends` (weight 0 counts as 1).
    pub fn new(backends: &[BackendSpec<'_>]) -> IpHash {
        let weights: Vec<u64> = backends
            .iter()
            .map(|b| u64::from(effective_weight(b.weight)))
            .collect();
        let total: u64 = weights.iter().sum();
        let nodes = |w: u64| -> u32 {
            let n = if total.saturating_mul(VNODES_PER_WEIGHT) <= MAX_RING {
                w * VNODES_PER_WEIGHT
            } else {
                (u128::from(w) * u128::from(MAX_RING) / u128::from(total)) as u64
            };
            // `n <= MAX_RING`, so it fits.
            u32::try_from(n.max(1)).unwrap_or(u32::MAX)
        };
        let mut ring: Vec<(u64, usize)> = Vec::new();
        for (index, (spec, &w)) in backends.iter().zip(&weights).enumerate() {
            ring.extend((0..nodes(w)).map(|replica| (vnode_point(spec.id, replica), index)));
        }
        // Ties (two nodes at one position) are broken by name, not by list order, so the
        // mapping does not depend on how the backends are listed.
        ring.sort_unstable_by(|&(pa, a), &(pb, b)| {
            pa.cmp(&pb)
                .then_with(|| backends[a].id.cmp(backends[b].id))
                .then(a.cmp(&b))
        });
        let points: Vec<u64> = ring.iter().map(|&(p, _)| p).collect();
        // About one bucket per node, at most 2^16 of them (256 KiB).
        let bits = points.len().max(2).ilog2().clamp(1, 16);
        let shift = 64 - bits;
        let mut buckets = Vec::with_capacity((1 << bits) + 1);
        let mut next = 0usize;
        for top in 0..=(1u64 << bits) {
            while next < points.len() && points[next] >> shift < top {
                next += 1;
            }
            // `next <= MAX_RING + n`, far below `u32::MAX`.
            buckets.push(u32::try_from(next).unwrap_or(u32::MAX));
        }
        IpHash {
            len: backends.len(),
            points,
            owners: ring
                .iter()
                .map(|&(_, i)| u32::try_from(i).unwrap_or(u32::MAX))
                .collect(),
            buckets,
            shift,
            fallback: Cursor::default(),
            balance_factor: None,
            weights,
        }
    }

    /// The same ring with bounded loads (Mirrokni, Thorup and Zadimoghaddam, "Consistent
    /// Hashing with Bounded Loads", 2016; HAProxy's `hash-balance-factor`): a client goes to
    /// the first backend on its walk whose in-flight count, with this request, stays within
    /// `ceil(factor × (total + 1) × weight / Σ weight)` over the candidates; affinity holds
    /// while loads are even, and a hot key spills to the next backends instead of melting
    /// one. A factor below 1 is taken as 1. Should no candidate be under its cap (uneven
    /// weights can allow it), the plain ring decides.
    pub fn with_balance_factor(mut self, factor: Option<f64>) -> IpHash {
        self.balance_factor = factor.map(|f| if f.is_finite() { f.max(1.0) } else { 1.0 });
        self
    }

    /// The index of the first node at or after `key` (`points.len()` if none).
    fn first_at_or_after(&self, key: u64) -> usize {
        let top = (key >> self.shift) as usize;
        let lo = self.buckets.get(top).map_or(0, |&b| b as usize);
        let hi = self
            .buckets
            .get(top + 1)
            .map_or(self.points.len(), |&b| b as usize);
        let within = self.points.get(lo..hi).unwrap_or_default();
        lo + within.partition_point(|&p| p < key)
    }

    /// Number of virtual nodes on the ring.
    pub fn ring_len(&self) -> usize {
        self.points.len()
    }
}

impl Balancer for IpHash {
    fn algorithm(&self) -> Algorithm {
        Algorithm::IpHash
    }

    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        _rng: &mut dyn rand::Rng,
    ) -> Option<usize> {
        let candidates = Candidates::new(view, ctx, self.len);
        let Some(client) = ctx.client else {
            return self
                .fallback
                .walk(candidates.bound(), |slot| slot, &candidates);
        };
        let len = self.points.len();
        if len == 0 || candidates.bound() == 0 {
            return None;
        }
        let key = client_point(client);
        let mut slot = self.first_at_or_after(key);
        if slot == len {
            slot = 0;
        }
        if let Some(factor) = self.balance_factor
            && let Some(index) = self.bounded(&candidates, factor, slot)
        {
            return Some(index);
        }
        for walked in 0..len {
            if walked == CHECK_ANY_AFTER && !candidates.any() {
                return None;
            }
            let index = self.owners[slot] as usize;
            if candidates.contains(index) {
                return Some(index);
            }
            slot += 1;
            if slot == len {
                slot = 0;
            }
        }
        None
    }
}

impl IpHash {
    /// The first candidate from `slot` on whose load stays under its cap; `None` when there
    /// is no candidate or none is under its cap.
    fn bounded(
        &self,
        candidates: &Candidates<'_, '_>,
        factor: f64,
        mut slot: usize,
    ) -> Option<usize> {
        let (mut total, mut weight) = (0u64, 0u64);
        for index in 0..candidates.bound() {
            if candidates.contains(index) {
                total += candidates.in_flight(index);
                weight += self.weights.get(index).copied().unwrap_or(1);
            }
        }
        if weight == 0 {
            return None;
        }
        let len = self.points.len();
        let budget = factor * (total + 1) as f64 / weight as f64;
        for _ in 0..len {
            let index = self.owners[slot] as usize;
            if candidates.contains(index) {
                let w = self.weights.get(index).copied().unwrap_or(1) as f64;
                let cap = (budget * w).ceil() as u64;
                if candidates.in_flight(index) < cap {
                    return Some(index);
                }
            }
            slot += 1;
            if slot == len {
                slot = 0;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{TestView, counts, rng, specs};
    use std::net::{IpAddr, Ipv4Addr};

    fn client(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    fn pick_for(ring: &IpHash, view: &TestView, i: u32) -> Option<usize> {
        let ctx = PickContext {
            client: Some(client(i)),
            exclude: &[],
        };
        ring.pick(view, &ctx, &mut rng())
    }

    #[test]
    fn the_bucket_index_agrees_with_a_plain_binary_search() {
        for n in [1, 2, 3, 50] {
            let ring = IpHash::new(&specs(&vec![1; n]));
            let mut keys: Vec<u64> = (0..2000).map(crate::balance::hash::mix64).collect();
            keys.extend([0, 1, u64::MAX, u64::MAX - 1]);
            keys.extend(
                ring.points
                    .iter()
                    .flat_map(|&p| [p, p.wrapping_add(1), p.wrapping_sub(1)]),
            );
            for key in keys {
                let want = ring.points.partition_point(|&p| p < key);
                assert_eq!(ring.first_at_or_after(key), want, "n = {n}, key = {key:#x}");
            }
        }
    }

    #[test]
    fn bounded_loads_cap_every_backend_and_keep_affinity_when_even() {
        let ring = IpHash::new(&specs(&[1, 1, 1, 1])).with_balance_factor(Some(1.25));
        // One hot client sends 400 requests that stay in flight: none of the four backends
        // ends with more than ceil(1.25 × (total + 1) / 4).
        let mut view = TestView::all_up(4);
        for _ in 0..400 {
            let index = pick_for(&ring, &view, 7).unwrap();
            let total: u64 = view.in_flight.iter().sum();
            let cap = (1.25 * (total + 1) as f64 / 4.0).ceil() as u64;
            assert!(view.in_flight[index] < cap, "{:?}", view.in_flight);
            view.in_flight[index] += 1;
        }
        assert!(
            view.in_flight.iter().all(|&n| n <= 126),
            "{:?}",
            view.in_flight
        );
        // With even loads, the bounded ring picks what the plain ring picks.
        let plain = IpHash::new(&specs(&[1, 1, 1, 1]));
        let even = TestView::with_load(vec![3, 3, 3, 3]);
        for i in 0..200 {
            assert_eq!(pick_for(&ring, &even, i), pick_for(&plain, &even, i));
        }
    }

    #[test]
    fn same_client_same_backend() {
        let ring = IpHash::new(&specs(&[1, 1, 1, 1]));
        let view = TestView::all_up(4);
        for i in 0..100 {
            assert_eq!(pick_for(&ring, &view, i), pick_for(&ring, &view, i));
        }
    }

    #[test]
    fn spreads_clients_by_weight() {
        let ring = IpHash::new(&specs(&[1, 1, 2]));
        assert_eq!(ring.ring_len(), 400);
        let view = TestView::all_up(3);
        let mut c = [0usize; 3];
        for i in 0..20_000 {
            c[pick_for(&ring, &view, i).unwrap()] += 1;
        }
        // Shares 1/4, 1/4, 1/2, each within the ring's ~10 % relative spread (×3).
        assert!(
            c[0].abs_diff(5_000) < 1_500 && c[2].abs_diff(10_000) < 3_000,
            "{c:?}"
        );
    }

    #[test]
    fn a_down_backend_sends_clients_to_their_next_choice_and_back() {
        let ring = IpHash::new(&specs(&[1, 1, 1]));
        let mut view = TestView::all_up(3);
        let before: Vec<_> = (0..1000).map(|i| pick_for(&ring, &view, i)).collect();
        view.eligible[1] = false;
        let during: Vec<_> = (0..1000).map(|i| pick_for(&ring, &view, i)).collect();
        for (b, d) in before.iter().zip(&during) {
            if *b == Some(1) {
                assert_ne!(*d, Some(1));
            } else {
                assert_eq!(b, d);
            }
        }
        view.eligible[1] = true;
        let after: Vec<_> = (0..1000).map(|i| pick_for(&ring, &view, i)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_retry_excluding_the_first_choice_gets_the_next_one() {
        let ring = IpHash::new(&specs(&[1, 1, 1]));
        let view = TestView::all_up(3);
        let first = pick_for(&ring, &view, 42).unwrap();
        let ctx = PickContext {
            client: Some(client(42)),
            exclude: &[first],
        };
        let second = ring.pick(&view, &ctx, &mut rng()).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn no_client_address_falls_back_to_round_robin() {
        let ring = IpHash::new(&specs(&[1, 1, 1]));
        let c = counts(&ring, &TestView::all_up(3), &PickContext::default(), 300);
        assert_eq!(c, vec![100, 100, 100]);
    }

    #[test]
    fn none_without_candidates_even_on_a_large_ring() {
        let ring = IpHash::new(&specs(&[50; 100]));
        let view = TestView::with_eligible(vec![false; 100]);
        assert_eq!(pick_for(&ring, &view, 1), None);
        assert_eq!(pick_for(&IpHash::new(&[]), &view, 1), None);
    }

    #[test]
    fn huge_weights_are_scaled_to_the_ring_cap() {
        let ring = IpHash::new(&specs(&[u32::MAX, u32::MAX, 1]));
        assert!(ring.ring_len() as u64 <= MAX_RING + 3);
        let mut view = TestView::all_up(3);
        view.eligible[0] = false;
        view.eligible[1] = false;
        assert_eq!(pick_for(&ring, &view, 9), Some(2));
    }
}
