//! Round robin: strict rotation over the candidates.
//!
//! One atomic cursor is shared by all picks; a backend that is not a candidate is skipped
//! without handing its turn to its neighbour (see the cursor's catch-up rule), so with one of
//! three backends down the other two split a sequential run exactly 50/50.

use super::cursor::Cursor;
use super::{Algorithm, BackendView, Balancer, Candidates, PickContext};

/// Strict rotation over eligible, non-excluded backends.
#[derive(Debug)]
pub struct RoundRobin {
    /// Number of backends in the set this selector was built from.
    len: usize,
    /// The shared rotation position.
    cursor: Cursor,
}

impl RoundRobin {
    /// A round robin over `len` backends, starting at index 0.
    pub fn new(len: usize) -> RoundRobin {
        RoundRobin {
            len,
            cursor: Cursor::default(),
        }
    }
}

impl Balancer for RoundRobin {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RoundRobin
    }

    fn pick(
        &self,
        view: &dyn BackendView,
        ctx: &PickContext<'_>,
        _rng: &mut dyn rand::Rng,
    ) -> Option<usize> {
        let candidates = Candidates::new(view, ctx, self.len);
        // Slots past the view's length are never candidates, so walking only the bound
        // keeps the rotation exact when the view is shorter than the spec list.
        self.cursor
            .walk(candidates.bound(), |slot| slot, &candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{TestView, counts, rng};

    #[test]
    fn rotates_in_index_order() {
        let rr = RoundRobin::new(3);
        let view = TestView::all_up(3);
        let mut rng = rng();
        let picks: Vec<_> = (0..6)
            .map(|_| rr.pick(&view, &PickContext::default(), &mut rng))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2].map(Some));
    }

    #[test]
    fn concurrent_picks_stay_exact_when_all_are_up() {
        // With every backend a candidate each pick is one `fetch_add`: tickets are distinct,
        // so four threads together still rotate exactly.
        let rr = RoundRobin::new(3);
        let view = TestView::all_up(3);
        let per_thread: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| counts(&rr, &view, &PickContext::default(), 3_000)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: Vec<usize> = (0..3)
            .map(|i| per_thread.iter().map(|c| c[i]).sum())
            .collect();
        assert_eq!(total, vec![4_000; 3]);
    }

    #[test]
    fn a_dead_backend_gives_its_neighbour_no_extra_share() {
        let rr = RoundRobin::new(3);
        let view = TestView::with_eligible(vec![true, false, true]);
        let c = counts(&rr, &view, &PickContext::default(), 1000);
        assert_eq!(c, vec![500, 0, 500]);
    }

    #[test]
    fn excluded_backends_are_skipped() {
        let rr = RoundRobin::new(3);
        let view = TestView::all_up(3);
        let ctx = PickContext {
            client: None,
            exclude: &[0, 2],
        };
        let c = counts(&rr, &view, &ctx, 10);
        assert_eq!(c, vec![0, 10, 0]);
    }

    #[test]
    fn none_without_candidates() {
        let rr = RoundRobin::new(3);
        let view = TestView::with_eligible(vec![false; 3]);
        assert_eq!(rr.pick(&view, &PickContext::default(), &mut rng()), None);
        assert_eq!(
            RoundRobin::new(0).pick(&view, &PickContext::default(), &mut rng()),
            None
        );
    }

    #[test]
    fn a_view_longer_or_shorter_than_the_spec_is_bounded() {
        let rr = RoundRobin::new(2);
        let c = counts(&rr, &TestView::all_up(4), &PickContext::default(), 10);
        assert_eq!(c, vec![5, 5, 0, 0]);
        let rr = RoundRobin::new(4);
        let c = counts(&rr, &TestView::all_up(2), &PickContext::default(), 10);
        assert_eq!(c, vec![5, 5]);
    }
}
