//! Weighted round robin, smooth: nginx's interleaving, walked lock-free.
//!
//! nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`) keeps a running score
//! per backend: each step every score grows by its weight, the highest score wins and drops by
//! the total weight. Weights 5, 1, 1 give `a a b a c a a` rather than `a a a a a b c`, so a
//! heavy backend never receives a burst. Running that per pick needs a lock around the scores;
//! instead [`WeightedRoundRobin::new`] runs it once, records one full cycle (the *schedule*),
//! and picks walk the schedule with the shared atomic cursor, skipping slots whose backend is
//! not a candidate without giving the next slot's backend an extra share.
//!
//! Schedule length: the weights are divided by their greatest common divisor, so one cycle is
//! `Σ wᵢ/g` slots. When that exceeds [`MAX_SCHEDULE`], each weight is scaled to
//! `max(1, ⌊wᵢ · MAX_SCHEDULE / Σw⌋)`: a backend's share then differs from `wᵢ/Σw` by less than
//! about `n / MAX_SCHEDULE` (for `n` backends), and every backend keeps at least one slot.
//! Building costs O(length × backends), once per backend set.

use super::cursor::Cursor;
use super::effective_weight;
use super::{Algorithm, BackendSpec, BackendView, Balancer, Candidates, PickContext};

/// The longest schedule kept before weights are scaled down (unless there are more backends
/// than this, in which case every backend has one slot).
pub const MAX_SCHEDULE: u64 = 1 << 16;

/// Smooth weighted round robin over a precomputed schedule.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// Number of backends in the set.
    len: usize,
    /// One full cycle of nginx's smooth interleaving: the backend index of each slot.
    schedule: Vec<usize>,
    /// The shared position in `schedule`.
    cursor: Cursor,
}

impl WeightedRoundRobin {
    /// Precompute the schedule for `backends` (weight 0 counts as 1).
    pub fn new(backends: &[BackendSpec<'_>]) -> WeightedRoundRobin {
        let weights = schedule_weights(backends);
        WeightedRoundRobin {
            len: backends.len(),
            schedule: smooth_schedule(&weights),
            cursor: Cursor::default(),
        }
    }

    /// One full cycle of the interleaving, as backend indices.
    pub fn schedule(&self) -> &[usize] {
        &self.schedule
    }
}

impl Balancer for WeightedRoundRobin {
    fn algorithm(&self) -> Algorithm {
        Algorithm::WeightedRoundRobin
    }

    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        _rng: &mut dyn rand::Rng,
    ) -> Option<usize> {
        let candidates = Candidates::new(view, ctx, self.len);
        let schedule = &self.schedule;
        self.cursor
            .walk(schedule.len(), |slot| schedule[slot], &candidates)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The per-cycle slot count of each backend: weights over their gcd, scaled down to fit
/// [`MAX_SCHEDULE`] when needed.
fn schedule_weights(backends: &[BackendSpec<'_>]) -> Vec<u64> {
    let weights: Vec<u64> = backends
        .iter()
        .map(|b| u64::from(effective_weight(b.weight)))
        .collect();
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_SCHEDULE {
        for w in &mut weights {
            let scaled = u128::from(*w) * u128::from(MAX_SCHEDULE) / u128::from(total);
            // `scaled <= MAX_SCHEDULE`, so the conversion cannot fail.
            *w = u64::try_from(scaled).unwrap_or(MAX_SCHEDULE).max(1);
        }
        let g = weights.iter().copied().fold(0, gcd).max(1);
        weights.iter_mut().for_each(|w| *w /= g);
    }
    weights
}

/// One cycle of nginx's smooth weighted round robin; ties go to the lower index.
fn smooth_schedule(weights: &[u64]) -> Vec<usize> {
    let total: u64 = weights.iter().sum();
    // Scores stay within (-total, total] + max weight, far inside i128.
    let total_i = i128::from(total);
    let mut scores = vec![0i128; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (score, &w) in scores.iter_mut().zip(weights) {
            *score += i128::from(w);
        }
        for (i, &score) in scores.iter().enumerate() {
            if score > scores[best] {
                best = i;
            }
        }
        scores[best] -= total_i;
        schedule.push(best);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{TestView, counts, rng, specs};

    fn names(schedule: &[usize]) -> String {
        schedule
            .iter()
            .map(|&i| char::from(b'a' + u8::try_from(i).unwrap()))
            .collect()
    }

    #[test]
    fn interleaves_like_nginx() {
        let wrr = WeightedRoundRobin::new(&specs(&[5, 1, 1]));
        assert_eq!(names(wrr.schedule()), "aabacaa");
        let wrr = WeightedRoundRobin::new(&specs(&[4, 2, 1]));
        assert_eq!(names(wrr.schedule()), "abacaba");
    }

    #[test]
    fn picks_follow_the_schedule() {
        let wrr = WeightedRoundRobin::new(&specs(&[5, 1, 1]));
        let view = TestView::all_up(3);
        let mut rng = rng();
        let picks: Vec<_> = (0..14)
            .map(|_| wrr.pick(&view, &PickContext::default(), &mut rng).unwrap())
            .collect();
        assert_eq!(names(&picks), "aabacaaaabacaa");
    }

    #[test]
    fn weights_are_reduced_by_their_gcd_and_zero_counts_as_one() {
        assert_eq!(
            WeightedRoundRobin::new(&specs(&[10, 20])).schedule(),
            [1, 0, 1]
        );
        assert_eq!(WeightedRoundRobin::new(&specs(&[0, 1])).schedule(), [0, 1]);
    }

    #[test]
    fn huge_weights_are_scaled_to_the_cap() {
        let wrr = WeightedRoundRobin::new(&specs(&[u32::MAX, 1, u32::MAX / 2]));
        let len = wrr.schedule().len() as u64;
        assert!(len <= MAX_SCHEDULE + 3, "{len}");
        let c: Vec<usize> = (0..3)
            .map(|b| wrr.schedule().iter().filter(|&&i| i == b).count())
            .collect();
        assert_eq!(c[1], 1, "every backend keeps a slot");
        assert!(c[0].abs_diff(2 * c[2]) <= 2, "{c:?}");
    }

    #[test]
    fn a_skipped_backend_gives_no_extra_share() {
        // b is down: a and c keep their 5:1 ratio rather than a taking b's slot as well.
        let wrr = WeightedRoundRobin::new(&specs(&[5, 1, 1]));
        let view = TestView::with_eligible(vec![true, false, true]);
        assert_eq!(
            counts(&wrr, &view, &PickContext::default(), 600),
            vec![500, 0, 100]
        );
    }

    #[test]
    fn none_without_candidates() {
        let wrr = WeightedRoundRobin::new(&specs(&[300, 1]));
        let view = TestView::with_eligible(vec![false, false]);
        assert_eq!(wrr.pick(&view, &PickContext::default(), &mut rng()), None);
        let empty = WeightedRoundRobin::new(&[]);
        assert_eq!(empty.pick(&view, &PickContext::default(), &mut rng()), None);
    }
}
