//! The shared rotation cursor of round robin and weighted round robin.
//!
//! Both algorithms walk a cyclic list of slots (one slot per backend for round robin, the
//! smooth schedule for weighted round robin) and take the first candidate at or after the
//! cursor. The naive version (advance by one, then skip forward) biases the rotation: with
//! `A, B, C` and `B` down, the tickets that land on `B` also go to `C`, so `C` gets two shares
//! for `A`'s one. Here a pick that had to skip `d` slots also moves the shared cursor past the
//! slot it took, so the slots it skipped are not handed out again: in a sequential run, the
//! picks visit the candidate slots in cyclic order, each exactly once per cycle. Under
//! concurrency the catch-up is a single `compare_exchange` that gives up if another pick moved
//! the cursor meanwhile, so rotation stays lock-free and near-exact.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Candidates;

/// Slots walked before checking, once, whether any candidate exists at all, so a pick with no
/// candidate costs O(backends) rather than O(schedule length).
const CHECK_ANY_AFTER: usize = 64;

/// A rotation cursor over a cyclic list of slots.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// The ticket of the next pick; its slot is `ticket % len`. Wraps after `usize::MAX`
    /// picks, where one rotation step may be uneven.
    next: AtomicUsize,
}

impl Cursor {
    /// Take the first slot at or after the cursor whose backend (`owner(slot)`) is a candidate,
    /// and advance the cursor just past it.
    pub(crate) fn walk(
        &self,
        len: usize,
        owner: impl Fn(usize) -> usize,
        candidates: &Candidates<'_, '_>,
    ) -> Option<usize> {
        if len == 0 || candidates.bound() == 0 {
            return None;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let mut slot = ticket % len;
        for skipped in 0..len {
            if skipped == CHECK_ANY_AFTER && !candidates.any() {
                return None;
            }
            let index = owner(slot);
            if candidates.contains(index) {
                if skipped > 0 {
                    // Consume the skipped slots too, so they are not handed out again. If
                    // another pick moved the cursor meanwhile, its position wins.
                    let after = ticket.wrapping_add(1);
                    let _ = self.next.compare_exchange(
                        after,
                        after.wrapping_add(skipped),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
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
