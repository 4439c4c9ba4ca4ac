//! Counters tests read to see what the balancer sent to this backend.
//!
//! Plain relaxed atomics: each counter is independent, and a reader only needs a value that is
//! correct once the requests it waits for have completed (a response is written after the handler
//! has returned and updated the counters, so a client that has its response sees them).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters of one backend. `/health` requests are counted only in `health_checks`, so the
/// other counters see exactly the traffic a balancer forwards, undisturbed by its probes.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests received on any path except `/health`.
    pub requests: AtomicU64,
    /// Requests (except `/health`) whose handler is running now. A request is counted from its
    /// arrival until its handler returns the response head, so a streamed body (`/bytes`,
    /// `/echo/body`) still being sent is no longer counted; `/delay` and `--latency` waits are.
    pub in_flight: AtomicU64,
    /// Highest `in_flight` value seen since start (or the last [`BackendStats::reset`]).
    pub max_in_flight: AtomicU64,
    /// `POST` requests (except to `/health`).
    pub posts: AtomicU64,
    /// Requests to `/health`.
    pub health_checks: AtomicU64,
    /// Requests answered 500 by the `fail_rate` injection.
    pub injected_failures: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// TCP connections open now (accepted and not yet closed by either side).
    pub open_connections: AtomicU64,
    /// gRPC calls received (`lb.test.Echo`; not counted in `requests`).
    pub grpc_calls: AtomicU64,
    /// gRPC `Wait` calls dropped before their reply: the client cancelled, or the deadline
    /// passed.
    pub grpc_cancelled: AtomicU64,
}

/// A point-in-time copy of [`BackendStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`BackendStats::requests`].
    pub requests: u64,
    /// See [`BackendStats::in_flight`].
    pub in_flight: u64,
    /// See [`BackendStats::max_in_flight`].
    pub max_in_flight: u64,
    /// See [`BackendStats::posts`].
    pub posts: u64,
    /// See [`BackendStats::health_checks`].
    pub health_checks: u64,
    /// See [`BackendStats::injected_failures`].
    pub injected_failures: u64,
    /// See [`BackendStats::connections`].
    pub connections: u64,
    /// See [`BackendStats::open_connections`].
    pub open_connections: u64,
    /// See [`BackendStats::grpc_calls`].
    pub grpc_calls: u64,
    /// See [`BackendStats::grpc_cancelled`].
    pub grpc_cancelled: u64,
}

impl BackendStats {
    /// Copies every counter. The copy is not atomic across counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            max_in_flight: self.max_in_flight.load(Relaxed),
            posts: self.posts.load(Relaxed),
            health_checks: self.health_checks.load(Relaxed),
            injected_failures: self.injected_failures.load(Relaxed),
            connections: self.connections.load(Relaxed),
            open_connections: self.open_connections.load(Relaxed),
            grpc_calls: self.grpc_calls.load(Relaxed),
            grpc_cancelled: self.grpc_cancelled.load(Relaxed),
        }
    }

    /// Zeroes the cumulative counters between test phases. `in_flight` is live state and is kept;
    /// `max_in_flight` restarts from it.
    pub fn reset(&self) {
        self.requests.store(0, Relaxed);
        self.posts.store(0, Relaxed);
        self.health_checks.store(0, Relaxed);
        self.injected_failures.store(0, Relaxed);
        self.connections.store(0, Relaxed);
        self.grpc_calls.store(0, Relaxed);
        self.grpc_cancelled.store(0, Relaxed);
        self.max_in_flight
            .store(self.in_flight.load(Relaxed), Relaxed);
    }

    /// Counts a non-health request as arrived and in flight until the guard drops (on return or
    /// cancellation alike).
    pub(crate) fn begin(&self, is_post: bool) -> InFlightGuard<'_> {
        self.requests.fetch_add(1, Relaxed);
        if is_post {
            self.posts.fetch_add(1, Relaxed);
        }
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Relaxed);
        InFlightGuard { stats: self }
    }
}

/// Decrements `in_flight` when dropped.
pub(crate) struct InFlightGuard<'a> {
    stats: &'a BackendStats,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_track_in_flight_and_high_water_mark() {
        let stats = BackendStats::default();
        let a = stats.begin(true);
        let b = stats.begin(false);
        assert_eq!(stats.snapshot().in_flight, 2);
        drop(a);
        let c = stats.begin(false);
        drop(b);
        drop(c);
        let s = stats.snapshot();
        assert_eq!(
            (s.requests, s.posts, s.in_flight, s.max_in_flight),
            (3, 1, 0, 2)
        );
    }

    #[test]
    fn reset_keeps_live_in_flight() {
        let stats = BackendStats::default();
        let _a = stats.begin(false);
        let b = stats.begin(false);
        drop(b);
        stats.reset();
        let s = stats.snapshot();
        assert_eq!((s.requests, s.in_flight, s.max_in_flight), (0, 1, 1));
    }
}
