//! The one shutdown signal: a flag every task can read without a lock, and a notification for
//! those that wait on nothing else (the accept loop, released connections, the side tasks).
//!
//! Started once, by a signal or [`crate::Daemon::shutdown`]: the listener stops accepting,
//! open connections finish the request in flight and close (an active connection reads the flag
//! each time it wakes, and its timer wakes it at least once a second), and the health checker,
//! the pool sweep and the metrics listener stop.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// The daemon's shutdown signal.
#[derive(Debug, Default)]
pub struct Shutdown {
    started: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    /// Starts shutting down; later calls do nothing more.
    pub fn start(&self) {
        if !self.started.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    /// Whether shutdown has started.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Resolves once shutdown has started.
    pub async fn started(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a start in between is not missed.
        notified.as_mut().enable();
        if !self.is_started() {
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn every_waiter_sees_the_start_once_and_late_ones_at_once() {
        let shutdown = Arc::new(Shutdown::default());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let shutdown = shutdown.clone();
                tokio::spawn(async move { shutdown.started().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!shutdown.is_started());
        shutdown.start();
        shutdown.start();
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert!(shutdown.is_started());
        // A waiter that comes after the start does not wait.
        shutdown.started().await;
    }
}
