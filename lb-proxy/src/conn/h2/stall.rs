//! A client that never takes a response: `server.http2.stalled_response_timeout`.
//!
//! A stream pulls its response body only when it has room to send (flow-control window, and
//! h2's send buffer drained to the socket: [`super::send`]). A client that keeps its window shut, or does not
//! read its socket, so leaves the body unpolled, with the backend's request, its in-flight slot
//! and the buffers held for as long as it likes; pings or other streams keep the connection's
//! idle timer from ever firing. Each HTTP/2 response body is therefore [`Watched`]: when it
//! hands the stream a data frame it counts itself as waiting in the connection's current tick
//! (a quarter of the timeout), and when the stream asks for the next it uncounts itself. The
//! connection's [`StallWatch`] advances the tick, and a body still waiting from a tick at least
//! a whole timeout old closes the connection (counted as `flow_control_stall`).
//!
//! A WebSocket tunnel over HTTP/2 counts the same way while a write waits for the client's
//! window ([`super::stream_io`]).
//!
//! Counting by tick costs a response two relaxed atomic additions on memory the connection
//! already holds: no allocation, no lock and no clock read (docs/performance.md, item 32).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::proxy::body::ToClient;

/// Ticks the counts are kept for. A body counted in tick `k` is a stall at tick `k + 5` (it
/// has waited at least four whole ticks, a timeout); the connection closes then, so the slot of
/// a tick is clean again when it comes round eight ticks later.
const TICKS: usize = 8;
/// Ticks from a body's tick to the tick its wait is a stall at.
const STALL_AFTER_TICKS: u64 = 5;

/// The responses of one connection that wait for their client, counted by the tick in which
/// each started waiting.
#[derive(Debug, Default)]
pub(crate) struct StallWatch {
    /// Ticks elapsed since the watch began.
    tick: AtomicU64,
    /// Bodies waiting since tick `t`, at `t % TICKS`.
    waiting: [AtomicU64; TICKS],
}

impl StallWatch {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Watches `body`, a response on this connection.
    pub(crate) fn watch(self: &Arc<Self>, body: ToClient) -> Watched {
        Watched {
            body,
            watch: self.clone(),
            waiting_since: None,
        }
    }

    /// Counts a body (or a tunnel's write) as waiting from now on; the tick it is counted in.
    pub(super) fn start_waiting(&self) -> u64 {
        let tick = self.tick.load(Ordering::Relaxed);
        self.waiting[slot(tick)].fetch_add(1, Ordering::Relaxed);
        tick
    }

    /// Uncounts a body that waited since `tick`.
    pub(super) fn stop_waiting(&self, tick: u64) {
        self.waiting[slot(tick)].fetch_sub(1, Ordering::Relaxed);
    }

    /// Ready once a response has waited on its client for longer than `timeout` (at most a
    /// quarter of it longer): every quarter of `timeout` the tick advances, and the ticks old
    /// enough are looked at.
    pub(crate) async fn stalled(&self, timeout: Duration) {
        loop {
            tokio::time::sleep(timeout / 4).await;
            let now = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
            // Ticks older than the ring were looked at on earlier ticks.
            let oldest = now.saturating_sub(TICKS as u64 - 1);
            let stalled = now.checked_sub(STALL_AFTER_TICKS).is_some_and(|newest| {
                (oldest..=newest).any(|tick| self.waiting[slot(tick)].load(Ordering::Relaxed) > 0)
            });
            if stalled {
                return;
            }
        }
    }
}

fn slot(tick: u64) -> usize {
    // The remainder is below TICKS.
    (tick % TICKS as u64) as usize
}

/// A response body on an HTTP/2 connection, watched for a client that never takes it.
pub(crate) struct Watched {
    body: ToClient,
    watch: Arc<StallWatch>,
    /// The tick this body has waited since, from handing the stream a data frame until the
    /// stream asks for the next.
    waiting_since: Option<u64>,
}

impl Body for Watched {
    type Data = Bytes;
    type Error = <ToClient as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let watch = &this.watch;
        if let Some(tick) = this.waiting_since.take() {
            watch.stop_waiting(tick);
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
        {
            this.waiting_since = Some(watch.start_waiting());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(tick) = self.waiting_since {
            self.watch.stop_waiting(tick);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use http_body_util::BodyExt as _;

    fn data() -> ToClient {
        ToClient::Fixed(Some(Bytes::from_static(b"data")))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_left_unpolled_after_a_frame_is_a_stall() {
        let watch = Arc::new(StallWatch::new());
        let mut body = watch.watch(data());
        // Taken, and asked again: not waiting.
        let _ = body.frame().await;
        let _ = body.frame().await;
        let timeout = Duration::from_secs(8);
        let quiet = tokio::time::timeout(timeout * 2, watch.stalled(timeout)).await;
        assert!(quiet.is_err(), "a body that was taken is no stall");
        // A frame handed over and never followed by another poll.
        let mut stuck = watch.watch(data());
        let _ = stuck.frame().await;
        let started = clock::now();
        watch.stalled(timeout).await;
        let waited = clock::now() - started;
        assert!(
            waited >= timeout && waited <= timeout + timeout / 4,
            "{waited:?}"
        );
        drop(body);
    }

    /// However a wait falls against the ticks, and however long the connection ran before, a
    /// stall is found between one timeout and a timeout and a quarter after the wait began.
    #[tokio::test(start_paused = true)]
    async fn a_stall_is_found_within_a_quarter_of_the_timeout_wherever_it_starts() {
        let timeout = Duration::from_millis(800);
        for before_ms in [0u64, 1, 199, 200, 201, 399, 1_000, 1_799, 5_003, 12_345] {
            let watch = Arc::new(StallWatch::new());
            let checker = {
                let watch = watch.clone();
                tokio::spawn(async move { watch.stalled(timeout).await })
            };
            tokio::time::sleep(Duration::from_millis(before_ms)).await;
            assert!(!checker.is_finished(), "no body waits yet ({before_ms} ms)");
            let mut stuck = watch.watch(data());
            let _ = stuck.frame().await;
            let started = clock::now();
            checker.await.unwrap();
            let waited = clock::now() - started;
            assert!(
                waited >= timeout && waited <= timeout + timeout / 4,
                "after {before_ms} ms: found after {waited:?}"
            );
        }
    }

    /// A body dropped while it waits (its stream reset, say) is no stall, nor is one asked for
    /// its next frame in time, however many come and go.
    #[tokio::test(start_paused = true)]
    async fn bodies_that_leave_or_are_taken_in_time_are_no_stall() {
        let timeout = Duration::from_millis(400);
        let watch = Arc::new(StallWatch::new());
        let checker = {
            let watch = watch.clone();
            tokio::spawn(async move { watch.stalled(timeout).await })
        };
        for round in 0..200u64 {
            let mut dropped = watch.watch(data());
            let _ = dropped.frame().await;
            let mut taken = watch.watch(ToClient::Fixed(Some(Bytes::from_static(b"more"))));
            let _ = taken.frame().await;
            tokio::time::sleep(Duration::from_millis(7 * (round % 50))).await;
            drop(dropped);
            let _ = taken.frame().await;
            assert!(!checker.is_finished(), "round {round}");
        }
        assert!(watch.waiting.iter().all(|n| n.load(Ordering::Relaxed) == 0));
        checker.abort();
    }
}
