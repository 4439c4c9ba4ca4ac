//! A plain in-memory [`BackendView`] and helpers for the unit tests.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{BackendSpec, BackendView, Balancer, PickContext};

/// Eligibility and in-flight counts in two vectors.
pub(crate) struct TestView {
    pub(crate) eligible: Vec<bool>,
    pub(crate) in_flight: Vec<u64>,
}

impl TestView {
    pub(crate) fn all_up(n: usize) -> TestView {
        TestView {
            eligible: vec![true; n],
            in_flight: vec![0; n],
        }
    }

    pub(crate) fn with_eligible(eligible: Vec<bool>) -> TestView {
        let n = eligible.len();
        TestView {
            eligible,
            in_flight: vec![0; n],
        }
    }

    pub(crate) fn with_load(in_flight: Vec<u64>) -> TestView {
        TestView {
            eligible: vec![true; in_flight.len()],
            in_flight,
        }
    }
}

impl BackendView for TestView {
    fn len(&self) -> usize {
        self.eligible.len()
    }
    fn is_eligible(&self, index: usize) -> bool {
        self.eligible[index]
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.in_flight[index]
    }
}

pub(crate) fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5eed)
}

/// Names `b0, b1, ...` with the given weights (the names are leaked: tests only).
pub(crate) fn specs(weights: &[u32]) -> Vec<BackendSpec<'static>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| BackendSpec {
            id: Box::leak(format!("b{i}").into_boxed_str()),
            weight,
        })
        .collect()
}

/// How many of `picks` picks went to each index of `view`; panics on a `None` pick.
pub(crate) fn counts(
    balancer: &dyn Balancer,
    view: &TestView,
    ctx: &PickContext<'_>,
    picks: usize,
) -> Vec<usize> {
    let mut rng = rng();
    let mut counts = vec![0; view.len()];
    for _ in 0..picks {
        let i = balancer
            .pick(view, ctx, &mut rng)
            .expect("a candidate exists");
        counts[i] += 1;
    }
    counts
}
