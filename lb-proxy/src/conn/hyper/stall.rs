//! A client that never takes a response: `server.http2.stalled_response_timeout`.
//!
//! hyper pulls a response body only when the stream has room to send (flow-control window, and
//! h2's send buffer drained to the socket). A client that keeps its window shut, or does not
//! read its socket, so leaves the body unpolled, with the backend's request, its in-flight slot
//! and the buffers held for as long as it likes; pings or other streams keep the connection's
//! idle timer from ever firing. Each HTTP/2 response body is therefore [`Watched`]: when it
//! hands hyper a data frame it notes the time, and when hyper asks for the next it clears it.
//! The connection's [`StallWatch`] looks every quarter of the timeout, and a body that waited
//! longer than the timeout closes the connection (counted as `flow_control_stall`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::time::Instant;

use crate::clock;
use crate::proxy::body::ToClient;

/// The responses of one connection that wait for their client.
#[derive(Debug)]
pub(crate) struct StallWatch {
    /// Times are kept as milliseconds since this, plus one (0: not waiting).
    started: Instant,
    slots: Mutex<Vec<Weak<AtomicU64>>>,
}

impl StallWatch {
    pub(crate) fn new() -> Self {
        Self {
            started: clock::now(),
            slots: Mutex::default(),
        }
    }

    fn stamp(&self) -> u64 {
        let millis = clock::now()
            .saturating_duration_since(self.started)
            .as_millis();
        u64::try_from(millis).unwrap_or(u64::MAX - 1) + 1
    }

    /// Watches `body`, a response on this connection.
    pub(crate) fn watch(self: &Arc<Self>, body: ToClient) -> Watched {
        let slot = Arc::new(AtomicU64::new(0));
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Bodies that ended leave dead entries: drop them as the list grows.
        if slots.len() >= 64 && slots.len().is_power_of_two() {
            slots.retain(|slot| slot.strong_count() > 0);
        }
        slots.push(Arc::downgrade(&slot));
        Watched {
            body,
            watch: Some((self.clone(), slot)),
        }
    }

    /// Ready once a response has waited on its client for longer than `timeout`.
    pub(crate) async fn stalled(&self, timeout: Duration) {
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::time::sleep(timeout / 4).await;
            let now = self.stamp();
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let mut stalled = false;
            slots.retain(|slot| match slot.upgrade() {
                None => false,
                Some(slot) => {
                    let since = slot.load(Ordering::Relaxed);
                    stalled |= since != 0 && now.saturating_sub(since) >= limit;
                    true
                }
            });
            if stalled {
                return;
            }
        }
    }
}

/// A response body on an HTTP/2 connection, watched for a client that never takes it; on
/// HTTP/1 (hyper's h2c listener serves both) it is only passed through.
pub(crate) struct Watched {
    body: ToClient,
    watch: Option<(Arc<StallWatch>, Arc<AtomicU64>)>,
}

impl Watched {
    /// `body` unwatched.
    pub(crate) fn plain(body: ToClient) -> Self {
        Self { body, watch: None }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = <ToClient as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some((_, slot)) = &this.watch {
            slot.store(0, Ordering::Relaxed);
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let (Some((watch, slot)), Poll::Ready(Some(Ok(frame)))) = (&this.watch, &polled)
            && frame.is_data()
        {
            slot.store(watch.stamp(), Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test(start_paused = true)]
    async fn a_body_left_unpolled_after_a_frame_is_a_stall() {
        let watch = Arc::new(StallWatch::new());
        let mut body = watch.watch(ToClient::Fixed(Some(Bytes::from_static(b"data"))));
        // Taken, and asked again: not waiting.
        let _ = body.frame().await;
        let _ = body.frame().await;
        let timeout = Duration::from_secs(8);
        let quiet = tokio::time::timeout(timeout * 2, watch.stalled(timeout)).await;
        assert!(quiet.is_err(), "a body that was taken is no stall");
        // A frame handed over and never followed by another poll.
        let mut stuck = watch.watch(ToClient::Fixed(Some(Bytes::from_static(b"data"))));
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
}
