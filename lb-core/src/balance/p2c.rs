//! Power of two random choices: sample two distinct candidates, take the less loaded.
//!
//! Mitzenmacher, *The Power of Two Choices in Randomized Load Balancing* (IEEE TPDS 12(10),
//! 2001): placing each request on the less loaded of two uniformly random servers cuts the
//! maximum load from Θ(log n / log log n) to Θ(log log n), at O(1) cost per pick — against the
//! O(n) scan of least connections, and without every balancer instance herding onto the same
//! "least loaded" backend. Load is `in_flight / weight` (cross-multiplied, as in least
//! connections); the two samples are uniform over candidates and distinct whenever two or more
//! candidates exist; a tie goes to the first sample (itself random). This is the scheme of
//! tower's `balance::p2c`.

use super::random::uniform_candidate;
use super::{Algorithm, BackendSpec, BackendView, Balancer, Candidates, PickContext};
use super::{compare_load, effective_weights};

/// Power of two random choices by in-flight requests per unit of weight.
#[derive(Debug)]
pub struct P2c {
    /// Effective weight (0 → 1) of each backend.
    weights: Vec<u32>,
}

impl P2c {
    /// A p2c selector over `backends`.
    pub fn new(backends: &[BackendSpec<'_>]) -> P2c {
        P2c {
            weights: effective_weights(backends),
        }
    }
}

impl Balancer for P2c {
    fn algorithm(&self) -> Algorithm {
        Algorithm::P2c
    }

    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        rng: &mut dyn rand::Rng,
    ) -> Option<usize> {
        let candidates = Candidates::new(view, ctx, self.weights.len());
        let a = uniform_candidate(&candidates, None, rng)?;
        let Some(b) = uniform_candidate(&candidates, Some(a), rng) else {
            return Some(a);
        };
        let (load_a, load_b) = (candidates.in_flight(a), candidates.in_flight(b));
        if compare_load(load_b, self.weights[b], load_a, self.weights[a]).is_lt() {
            Some(b)
        } else {
            Some(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{TestView, counts, rng, specs};

    #[test]
    fn two_backends_always_compare_both() {
        // With exactly two candidates the samples are both of them: the lighter always wins.
        let p2c = P2c::new(&specs(&[1, 1]));
        let c = counts(
            &p2c,
            &TestView::with_load(vec![4, 3]),
            &PickContext::default(),
            1000,
        );
        assert_eq!(c, vec![0, 1000]);
    }

    #[test]
    fn the_most_loaded_is_never_picked() {
        // The busiest backend loses every comparison, since the two samples are distinct.
        let p2c = P2c::new(&specs(&[1; 5]));
        let view = TestView::with_load(vec![1, 2, 3, 4, 50]);
        let c = counts(&p2c, &view, &PickContext::default(), 10_000);
        assert_eq!(c[4], 0);
        // The least loaded wins whenever sampled: probability 2/5.
        assert!(c[0].abs_diff(4_000) < 300, "{c:?}");
    }

    #[test]
    fn load_is_relative_to_weight() {
        let p2c = P2c::new(&specs(&[10, 1]));
        let c = counts(
            &p2c,
            &TestView::with_load(vec![9, 1]),
            &PickContext::default(),
            100,
        );
        assert_eq!(c, vec![100, 0]);
    }

    #[test]
    fn single_candidate_and_none() {
        let p2c = P2c::new(&specs(&[1, 1, 1]));
        let view = TestView::with_eligible(vec![false, true, false]);
        assert_eq!(
            p2c.pick(&view, &PickContext::default(), &mut rng()),
            Some(1)
        );
        let ctx = PickContext {
            client: None,
            exclude: &[1],
        };
        assert_eq!(p2c.pick(&view, &ctx, &mut rng()), None);
    }
}
