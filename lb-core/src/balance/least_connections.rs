//! Least connections: the candidate with the fewest in-flight requests per unit of weight.
//!
//! Load is `in_flight / weight`, compared by cross-multiplying in `u128` (no division, no
//! overflow). Ties are broken uniformly at random: one scan finds the minimum and counts the
//! backends that share it, one random draw picks which of them, and a second scan finds it.
//! (Starting a single scan at a random or rotating offset would not be fair: a tied backend
//! right after a long run of busier ones would win far more often than its tied neighbour.)
//! If the loads move between the two scans, the first scan's minimum is returned.

use std::cmp::Ordering;

use rand::RngExt;

use super::{Algorithm, BackendSpec, BackendView, Balancer, Candidates, PickContext};
use super::{compare_load, effective_weights};

/// Fewest in-flight requests relative to weight, ties broken at random.
#[derive(Debug)]
pub struct LeastConnections {
    /// Effective weight (0 → 1) of each backend.
    weights: Vec<u32>,
}

impl LeastConnections {
    /// A least-connections selector over `backends`.
    pub fn new(backends: &[BackendSpec<'_>]) -> LeastConnections {
        LeastConnections {
            weights: effective_weights(backends),
        }
    }
}

impl Balancer for LeastConnections {
    fn algorithm(&self) -> Algorithm {
        Algorithm::LeastConnections
    }

    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        rng: &mut dyn rand::Rng,
    ) -> Option<usize> {
        let candidates = Candidates::new(view, ctx, self.weights.len());
        let weights = &self.weights[..candidates.bound()];
        // (index, in-flight, weight) of the first minimum seen, and how many share it.
        let mut best: Option<(usize, u64, u32)> = None;
        let mut ties = 0usize;
        for (i, &w) in weights.iter().enumerate() {
            if !candidates.contains(i) {
                continue;
            }
            let load = candidates.in_flight(i);
            let order = best.map(|(_, b_load, b_w)| compare_load(load, w, b_load, b_w));
            match order {
                Some(Ordering::Greater) => {}
                Some(Ordering::Equal) => ties += 1,
                Some(Ordering::Less) | None => {
                    best = Some((i, load, w));
                    ties = 1;
                }
            }
        }
        let (b, b_load, b_w) = best?;
        if ties == 1 {
            return Some(b);
        }
        let wanted = rng.random_range(0..ties);
        let tied = weights
            .iter()
            .enumerate()
            .filter(|&(i, &w)| {
                candidates.contains(i)
                    && compare_load(candidates.in_flight(i), w, b_load, b_w) == Ordering::Equal
            })
            .nth(wanted)
            .map(|(i, _)| i);
        Some(tied.unwrap_or(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{TestView, counts, rng, specs};

    #[test]
    fn picks_the_least_loaded() {
        let lc = LeastConnections::new(&specs(&[1, 1, 1]));
        let view = TestView::with_load(vec![5, 2, 9]);
        assert_eq!(lc.pick(&view, &PickContext::default(), &mut rng()), Some(1));
    }

    #[test]
    fn load_is_relative_to_weight() {
        // 6/3 = 2 < 3/1 = 3.
        let lc = LeastConnections::new(&specs(&[1, 3]));
        let view = TestView::with_load(vec![3, 6]);
        assert_eq!(lc.pick(&view, &PickContext::default(), &mut rng()), Some(1));
    }

    #[test]
    fn huge_loads_do_not_overflow() {
        let lc = LeastConnections::new(&specs(&[u32::MAX, 1]));
        let view = TestView::with_load(vec![u64::MAX, u64::MAX / 2]);
        assert_eq!(lc.pick(&view, &PickContext::default(), &mut rng()), Some(0));
    }

    #[test]
    fn ties_are_split_evenly_even_when_far_apart() {
        let lc = LeastConnections::new(&specs(&[1; 10]));
        let mut load = vec![7; 10];
        load[0] = 1;
        load[1] = 1;
        let c = counts(
            &lc,
            &TestView::with_load(load),
            &PickContext::default(),
            10_000,
        );
        assert_eq!(c[0] + c[1], 10_000);
        // Binomial(10 000, 1/2): sd = 50, so ±300 is six sd.
        assert!(c[0].abs_diff(5_000) < 300, "{c:?}");
    }

    #[test]
    fn ineligible_and_excluded_are_skipped() {
        let lc = LeastConnections::new(&specs(&[1, 1, 1]));
        let mut view = TestView::with_load(vec![0, 1, 2]);
        view.eligible[0] = false;
        let ctx = PickContext {
            client: None,
            exclude: &[1],
        };
        assert_eq!(lc.pick(&view, &ctx, &mut rng()), Some(2));
        let ctx = PickContext {
            client: None,
            exclude: &[1, 2],
        };
        assert_eq!(lc.pick(&view, &ctx, &mut rng()), None);
    }
}
