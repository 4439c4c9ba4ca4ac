//! An HTTP/2 connection with no stream open for `server.idle_timeout` is closed (`GOAWAY`,
//! `NO_ERROR`), as an HTTP/1.1 connection quiet between requests is. The socket's own idle
//! timer cannot tell: a client that sends a `PING`, `SETTINGS` or `WINDOW_UPDATE` now and then
//! keeps bytes moving, and so would hold its connection (and its place under
//! `server.max_client_connections`) for ever without asking for anything.
//!
//! The connection's driver notes each stream it accepts ([`NoStreams::busy`]), which is a
//! store, and asks [`NoStreams::poll_expired`] only while it has no stream: a timer ticks every
//! quarter of the timeout and counts the ticks with no stream in between, so a busy connection
//! pays nothing per request and an idle one is closed between the timeout and a quarter more
//! after its last stream ended.

use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Ticks per timeout.
const TICKS: u32 = 4;

/// The time a connection has had no stream.
#[derive(Debug)]
pub(crate) struct NoStreams {
    sleep: Pin<Box<Sleep>>,
    tick: Duration,
    /// A stream was accepted since the last tick.
    busy: bool,
    /// Ticks in a row with no stream.
    quiet: u32,
}

impl NoStreams {
    /// Times a connection opened now, closed after `timeout` without a stream.
    pub(crate) fn new(timeout: Duration) -> Self {
        let tick = (timeout / TICKS).max(Duration::from_millis(1));
        Self {
            sleep: Box::pin(tokio::time::sleep(tick)),
            tick,
            busy: false,
            quiet: 0,
        }
    }

    /// A stream was accepted.
    pub(crate) fn busy(&mut self) {
        self.busy = true;
    }

    /// Whether the connection has had no stream for the timeout; asked only while it has none
    /// (a tick that passed meanwhile is counted when asked).
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.sleep.as_mut().poll(cx).is_ready() {
            match std::mem::take(&mut self.busy) {
                true => self.quiet = 0,
                false => self.quiet += 1,
            }
            if self.quiet >= TICKS {
                return true;
            }
            let next = Instant::now() + self.tick;
            self.sleep.as_mut().reset(next);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    /// Drives `timer` as the driver does while it has no stream, until `until` or until it
    /// expires: when it expired, if it did.
    async fn drive(timer: &mut NoStreams, until: Instant) -> Option<Instant> {
        let expired = std::future::poll_fn(|cx| match timer.poll_expired(cx) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        });
        tokio::time::timeout_at(until, expired)
            .await
            .ok()
            .map(|()| Instant::now())
    }

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_streams_expires_at_the_timeout() {
        let start = Instant::now();
        let mut timer = NoStreams::new(Duration::from_secs(8));
        let expired = drive(&mut timer, at(start, 60_000)).await;
        assert_eq!(expired, Some(at(start, 8_000)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_restarts_the_count_within_a_quarter() {
        let start = Instant::now();
        let mut timer = NoStreams::new(Duration::from_secs(8));
        assert_eq!(drive(&mut timer, at(start, 5_500)).await, None);
        // A stream accepted at 5.5 s that ended before the next tick (6 s), which sees it:
        // the count starts again there.
        timer.busy();
        let expired = drive(&mut timer, at(start, 60_000)).await;
        assert_eq!(expired, Some(at(start, 14_000)));
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_while_streams_are_open_do_not_count() {
        let start = Instant::now();
        let mut timer = NoStreams::new(Duration::from_secs(8));
        assert_eq!(drive(&mut timer, at(start, 7_000)).await, None);
        // A stream open from 7 s to 30 s: the driver does not ask meanwhile.
        timer.busy();
        tokio::time::sleep_until(at(start, 30_000)).await;
        // The tick due at 8 s is seen at 30 s, with the stream: the next ones are 32 s on.
        let expired = drive(&mut timer, at(start, 60_000)).await;
        assert_eq!(expired, Some(at(start, 38_000)));
    }
}
