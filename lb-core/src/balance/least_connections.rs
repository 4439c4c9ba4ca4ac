//! Least connections: the candidate with the fewest in-flight requests per unit of weight.
//!
//! Load is `in_flight / weight`, compared by cross-multiplying in `u128` (no division, no
//! overflow). Ties are broken uniformly at random: one scan finds the minimum and counts the
//! backends that share it, one random draw picks which of them, and a second scan finds it.
//! (Starting a single scan at a random or rotating offset would not be fair: a tied backend
//! right after a long run of busier ones would win far more often than its tied neighbour.)
//! If the loads move between the two scans, the first scan's minimum is returned.

use rand::RngExt;

use super::{Algorithm, BackendSpec, BackendView, Balancer, Candidates, PickContext};
use super::{effective_weight, less_loaded};

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
            weights: backends
                .iter()
                .map(|b| effective_weight(b.weight))
                .collect(),
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
        let mut best: Option<(usize, u64)> = None;
        let mut ties = 0usize;
        for i in 0..candidates.bound() {
            if !candidates.contains(i) {
                continue;
            }
            let load = candidates.in_flight(i);
            match best {
                Some((b, b_load))
                    if !less_loaded(load, self.weights[i], b_load, self.weights[b]) =>
                {
                    if !less_loaded(b_load, self.weights[b], load, self.weights[i]) {
                        ties += 1;
                    }
                }
                _ => {
                    best = Some((i, load));
                    ties = 1;
                }
            }
        }
        let (b, b_load) = best?;
        if ties == 1 {
            return Some(b);
        }
        let wanted = rng.random_range(0..ties);
        let tied = (0..candidates.bound())
            .filter(|&i| {
                candidates.contains(i) && {
                    let load = candidates.in_flight(i);
                    !less_loaded(load, self.weights[i], b_load, self.weights[b])
                        && !less_loaded(b_load, self.weights[b], load, self.weights[i])
                }
            })
            .nth(wanted);
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
