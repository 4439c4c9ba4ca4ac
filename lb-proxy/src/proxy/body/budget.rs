//! The bytes of small request bodies one HTTP/2 connection's streams may hold at once
//! (`server.http2.max_buffered_body_bytes`). The same kind of budget bounds the request heads
//! they hold (`server.http2.max_buffered_head_bytes`, [`crate::conn::h2`]'s `head_room`).
//!
//! A body with a known length up to 64 KiB is read in full before a backend is picked, so that
//! a retry can send it again, and held until the request's attempts are over. On HTTP/1.1 a
//! connection carries one request at a time, so it holds at most one such body. An HTTP/2
//! connection carries up to `max_concurrent_streams` requests, and reading a body releases its
//! flow-control window: without a bound, a client that starts a hundred uploads and never
//! finishes them (or sends them to a slow endpoint) makes the balancer hold a hundred bodies,
//! about 6.5 MB, per connection. With it, a body that does not fit what the connection's other
//! bodies left streams through to the backend instead, as a larger one does: not retried, and
//! held back by the backend's reading, not by the balancer's memory. Streaming rather than
//! waiting for room cannot deadlock: a body waiting for room would leave its data unread in the
//! connection's window, which the bodies holding the room may need to finish.
//!
//! The copy a gRPC call keeps for a retry (at most `retry.replay_buffer_bytes`) takes its room
//! from the same budget as it grows, and gives it all back when it is dropped; a copy that finds
//! no more room is dropped, as one that outgrows its limit is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What is left of one connection's room for buffered bodies.
#[derive(Debug)]
pub struct BufferBudget {
    left: AtomicU64,
}

/// Room taken by one body, given back when dropped (when its request's attempts are over).
#[derive(Debug)]
pub struct BudgetHold {
    budget: Arc<BufferBudget>,
    bytes: u64,
}

impl BufferBudget {
    /// A connection's room: `bytes` in all.
    pub fn new(bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            left: AtomicU64::new(bytes),
        })
    }

    /// Takes room for a body of `bytes`, if that much is left.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Option<BudgetHold> {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(bytes)
            })
            .ok()?;
        Some(BudgetHold {
            budget: self.clone(),
            bytes,
        })
    }
}

impl BudgetHold {
    /// Takes `bytes` more room for the same body, if that much is left: a copy that grows as
    /// its data arrives.
    pub fn grow(&mut self, bytes: u64) -> bool {
        let taken = self
            .budget
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(bytes)
            })
            .is_ok();
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_taken_while_held_and_given_back_when_dropped() {
        let budget = BufferBudget::new(100_000);
        let first = budget.reserve(65_536).expect("fits");
        // 34,464 left: a second body of 64 KiB does not fit, a small one does.
        assert!(budget.reserve(65_536).is_none());
        let small = budget.reserve(34_464).expect("fits exactly");
        assert!(budget.reserve(1).is_none());
        // An empty body takes no room, and always fits.
        assert!(budget.reserve(0).is_some());
        drop(first);
        let mut again = budget.reserve(65_536).expect("room given back");
        // A hold grows while room is left.
        assert!(!again.grow(1));
        drop(small);
        assert!(again.grow(34_464));
        assert!(!again.grow(1));
        drop(again);
        let small = budget.reserve(0).unwrap();
        let again = budget.reserve(100_000).expect("all of it back");
        drop((small, again));
        assert_eq!(budget.left.load(Ordering::Acquire), 100_000);
        // No room at all: nothing is buffered.
        assert!(BufferBudget::new(0).reserve(1).is_none());
    }

    proptest::proptest! {
        /// Whatever bodies come and go, the room held never exceeds the budget, and all of it
        /// comes back.
        #[test]
        fn the_room_held_never_exceeds_the_budget(
            total in 0u64..200_000,
            steps in proptest::collection::vec((0u64..70_000, proptest::prelude::any::<bool>()), 0..60),
        ) {
            let budget = BufferBudget::new(total);
            let mut held: Vec<BudgetHold> = Vec::new();
            for (bytes, release) in steps {
                if release && !held.is_empty() {
                    held.remove(0);
                }
                let before: u64 = held.iter().map(|hold| hold.bytes).sum();
                match budget.reserve(bytes) {
                    Some(hold) => held.push(hold),
                    None => proptest::prop_assert!(before + bytes > total),
                }
                let now: u64 = held.iter().map(|hold| hold.bytes).sum();
                proptest::prop_assert!(now <= total);
                proptest::prop_assert_eq!(budget.left.load(Ordering::Acquire), total - now);
            }
            held.clear();
            proptest::prop_assert_eq!(budget.left.load(Ordering::Acquire), total);
        }
    }
}
