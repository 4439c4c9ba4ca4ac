//! Random choice: uniform, or proportional to weight.
//!
//! Both sample without allocating. A draw over the whole backend set is accepted if it lands
//! on a candidate; after [`TRIES`] misses (most backends down or excluded) the selector counts
//! the candidates, or sums their weights, and draws once more over exactly those. A rejected
//! draw is independent of the accepted one, so either path gives exactly the target
//! distribution over the candidates (given a view that does not change during the pick).

use rand::RngExt;

use super::effective_weights;
use super::{Algorithm, BackendSpec, BackendView, Balancer, Candidates, PickContext};

/// Draws over the whole set before falling back to a scan over the candidates.
pub const TRIES: usize = 8;

/// Uniform random choice among the candidates.
#[derive(Debug)]
pub struct Random {
    /// Number of backends in the set.
    len: usize,
}

impl Random {
    /// A uniform random selector over `len` backends.
    pub fn new(len: usize) -> Random {
        Random { len }
    }
}

impl Balancer for Random {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Random
    }

    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        rng: &mut dyn rand::Rng,
    ) -> Option<usize> {
        uniform_candidate(&Candidates::new(view, ctx, self.len), None, rng)
    }
}

/// A uniformly random candidate other than `not` (used by p2c for its second sample).
pub(crate) fn uniform_candidate(
    candidates: &Candidates<'_, '_>,
    not: Option<usize>,
    rng: &mut dyn rand::Rng,
) -> Option<usize> {
    let n = candidates.bound();
    if n == 0 {
        return None;
    }
    for _ in 0..TRIES {
        let i = rng.random_range(0..n);
        if Some(i) != not && candidates.contains(i) {
            return Some(i);
        }
    }
    let skip = |i: usize| Some(i) == not;
    let count = (0..n)
        .filter(|&i| !skip(i) && candidates.contains(i))
        .count();
    if count == 0 {
        return None;
    }
    let k = rng.random_range(0..count);
    (0..n)
        .filter(|&i| !skip(i) && candidates.contains(i))
        .nth(k)
}

/// Weight-proportional random choice among the candidates.
#[derive(Debug)]
pub struct WeightedRandom {
    /// Effective weight (0 → 1) of each backend.
    weights: Vec<u32>,
    /// `cumulative[i]` = sum of the weights of backends `0..=i`.
    cumulative: Vec<u64>,
}

impl WeightedRandom {
    /// A weighted random selector over `backends` (weight 0 counts as 1).
    pub fn new(backends: &[BackendSpec<'_>]) -> WeightedRandom {
        let weights = effective_weights(backends);
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        WeightedRandom {
            weights,
            cumulative,
        }
    }
}

impl Balancer for WeightedRandom {
    fn algorithm(&self) -> Algorithm {
        Algorithm::WeightedRandom
    }

    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        rng: &mut dyn rand::Rng,
    ) -> Option<usize> {
        let candidates = Candidates::new(view, ctx, self.weights.len());
        let total = *self.cumulative.last()?;
        for _ in 0..TRIES {
            let r = rng.random_range(0..total);
            // The first backend whose cumulative weight exceeds `r`.
            let i = self.cumulative.partition_point(|&c| c <= r);
            if candidates.contains(i) {
                return Some(i);
            }
        }
        let weight = |i: usize| u64::from(self.weights[i]);
        let bound = candidates.bound();
        let total: u64 = (0..bound)
            .filter(|&i| candidates.contains(i))
            .map(weight)
            .sum();
        if total == 0 {
            return None;
        }
        let mut r = rng.random_range(0..total);
        for i in (0..bound).filter(|&i| candidates.contains(i)) {
            if r < weight(i) {
                return Some(i);
            }
            r -= weight(i);
        }
        // Only reached if the view changed between the two scans.
        candidates.nth(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{TestView, counts, rng, specs};

    #[test]
    fn uniform_over_candidates() {
        let random = Random::new(4);
        let view = TestView::with_eligible(vec![true, false, true, true]);
        let c = counts(&random, &view, &PickContext::default(), 30_000);
        assert_eq!(c[1], 0);
        // Binomial(30 000, 1/3): sd ≈ 82; ±500 is six sd.
        for &k in &[c[0], c[2], c[3]] {
            assert!(k.abs_diff(10_000) < 500, "{c:?}");
        }
    }

    #[test]
    fn fallback_finds_the_only_candidate() {
        // One candidate among 1000: the eight draws almost surely miss; the scan finds it.
        let random = Random::new(1000);
        let mut eligible = vec![false; 1000];
        eligible[777] = true;
        let view = TestView::with_eligible(eligible);
        assert_eq!(counts(&random, &view, &PickContext::default(), 50)[777], 50);
        let weighted = WeightedRandom::new(&specs(&[1; 1000]));
        assert_eq!(
            counts(&weighted, &view, &PickContext::default(), 50)[777],
            50
        );
    }

    #[test]
    fn weighted_follows_weights() {
        let wr = WeightedRandom::new(&specs(&[1, 2, 7]));
        let c = counts(&wr, &TestView::all_up(3), &PickContext::default(), 100_000);
        // sd ≤ 150 for each; ±900 is six sd.
        for (k, want) in c.iter().zip([10_000, 20_000, 70_000]) {
            assert!(k.abs_diff(want) < 900, "{c:?}");
        }
    }

    #[test]
    fn weighted_renormalises_over_candidates() {
        // Backend 2 (weight 7) excluded: 1 and 2 split 1:2.
        let wr = WeightedRandom::new(&specs(&[1, 2, 7]));
        let ctx = PickContext {
            client: None,
            exclude: &[2],
        };
        let c = counts(&wr, &TestView::all_up(3), &ctx, 30_000);
        assert_eq!(c[2], 0);
        assert!(c[0].abs_diff(10_000) < 500, "{c:?}");
    }

    #[test]
    fn none_without_candidates() {
        let view = TestView::with_eligible(vec![false; 3]);
        let ctx = PickContext::default();
        assert_eq!(Random::new(3).pick(&view, &ctx, &mut rng()), None);
        assert_eq!(
            WeightedRandom::new(&specs(&[1, 1, 1])).pick(&view, &ctx, &mut rng()),
            None
        );
        assert_eq!(WeightedRandom::new(&[]).pick(&view, &ctx, &mut rng()), None);
    }
}
