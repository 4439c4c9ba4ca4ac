//! A pool's wait queue: when every eligible backend is at `max_connections`, a request waits
//! here for a slot instead of getting 503 at once (HAProxy's `maxconn` with `timeout queue`).
//!
//! Waiters are served in arrival order: a freed slot ([`Queue::notify`], called when an
//! in-flight slot drops) wakes the oldest waiter, and a request that finds others waiting
//! queues behind them rather than taking the slot they wait for. The queue is bounded in size
//! and in time; a waiter whose client goes away (its future dropped) leaves at once, so it
//! never holds a place or a wake-up. With nobody waiting, `notify` costs one atomic load.
//!
//! A pool keeps its queue across reloads; a reload that changes `queue` changes its size and
//! timeout in place, and a size of 0 turns it off (waiters there are woken to try again).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use lb_core::config::QueueConfig;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use crate::clock;
use crate::metrics::{Metrics, PoolLabels};

/// Why a request left the queue without a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRejected {
    /// The queue held `size` waiters already.
    Full,
    /// The wait passed `queue.timeout` (or the request's deadline).
    Timeout,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

/// One pool's queue.
#[derive(Debug)]
pub struct Queue {
    /// Most waiters at once; 0 when the queue is off.
    size: AtomicUsize,
    /// The longest wait, in milliseconds.
    timeout_ms: AtomicU64,
    waiters: Mutex<VecDeque<Waiter>>,
    /// Mirrors `waiters.len()`, so that `notify` and `is_waiting` take no lock.
    len: AtomicUsize,
    next_id: AtomicU64,
    /// `lb_queue_depth{pool}`.
    depth: Gauge,
    /// `lb_queue_wait_seconds{pool}`.
    wait: Histogram,
    /// `lb_queue_rejected_total{pool}`.
    rejected: Counter,
}

impl Queue {
    /// The queue of `pool` under `config` (off when its size is 0).
    pub fn new(config: &QueueConfig, pool: &std::sync::Arc<String>, metrics: &Metrics) -> Self {
        let labels = PoolLabels { pool: pool.clone() };
        let policy = &metrics.policy;
        let depth = policy.queue_depth.get_or_create_owned(&labels);
        depth.set(0);
        let queue = Self {
            size: AtomicUsize::new(0),
            timeout_ms: AtomicU64::new(0),
            waiters: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            depth,
            wait: policy.queue_wait.get_or_create_owned(&labels),
            rejected: policy.queue_rejected.get_or_create_owned(&labels),
        };
        queue.configure(config);
        queue
    }

    /// Takes new settings. Turned off, every waiter is woken to try again, once, without it.
    pub fn configure(&self, config: &QueueConfig) {
        let millis = u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX);
        self.timeout_ms.store(millis, Ordering::Relaxed);
        self.size.store(config.size, Ordering::Relaxed);
        if config.size == 0 {
            let mut waiters = self.lock();
            while let Some(waiter) = waiters.pop_front() {
                self.len.fetch_sub(1, Ordering::AcqRel);
                self.depth.dec();
                let _ = waiter.wake.send(());
            }
        }
    }

    /// Whether requests may wait here (the size is not 0).
    pub fn is_on(&self) -> bool {
        self.size.load(Ordering::Relaxed) > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiter>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether requests are waiting: a newcomer then queues behind them.
    pub fn is_waiting(&self) -> bool {
        self.len.load(Ordering::Acquire) > 0
    }

    /// The longest a request waits.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// A slot freed: wakes the oldest waiter still there.
    #[inline]
    pub fn notify(&self) {
        if self.len.load(Ordering::Acquire) != 0 {
            self.wake_oldest();
        }
    }

    #[cold]
    fn wake_oldest(&self) {
        let mut waiters = self.lock();
        while let Some(waiter) = waiters.pop_front() {
            self.len.fetch_sub(1, Ordering::AcqRel);
            self.depth.dec();
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
    }

    /// Waits for a slot until `until`. `has_room` is asked once the request is in line: a
    /// slot freed between the caller's failed pick and its arrival here is not missed.
    ///
    /// # Errors
    /// [`QueueRejected`] when the queue is full or the wait times out; counted.
    pub async fn wait(
        &self,
        until: tokio::time::Instant,
        has_room: impl Fn() -> bool,
    ) -> Result<(), QueueRejected> {
        let started = clock::now();
        let (wake, woken) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut waiters = self.lock();
            if waiters.len() >= self.size.load(Ordering::Relaxed) {
                self.rejected.inc();
                return Err(QueueRejected::Full);
            }
            waiters.push_back(Waiter { id, wake });
            self.len.fetch_add(1, Ordering::AcqRel);
            self.depth.inc();
        }
        let place = Place { queue: self, id };
        if has_room() {
            drop(place);
            return Ok(());
        }
        let outcome = tokio::time::timeout_at(until, woken).await;
        drop(place);
        let waited = clock::now().saturating_duration_since(started);
        self.wait.observe(waited.as_secs_f64());
        match outcome {
            Ok(Ok(())) => Ok(()),
            _ => {
                self.rejected.inc();
                Err(QueueRejected::Timeout)
            }
        }
    }
}

/// A place in line; dropped (served, timed out, or the client gone), it leaves the line if it
/// is still there.
struct Place<'q> {
    queue: &'q Queue,
    id: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut waiters = self.queue.lock();
        if let Some(at) = waiters.iter().position(|w| w.id == self.id) {
            waiters.remove(at);
            self.queue.len.fetch_sub(1, Ordering::AcqRel);
            self.queue.depth.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn queue(size: usize) -> Arc<Queue> {
        let metrics = Metrics::new();
        let config = QueueConfig {
            size,
            timeout: Duration::from_secs(5),
        };
        Arc::new(Queue::new(&config, &Arc::new("p".to_owned()), &metrics))
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order_and_bounded() {
        let q = queue(2);
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for n in 0..2 {
            let (q, order) = (q.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                q.wait(until, || false).await.unwrap();
                order.lock().unwrap().push(n);
            }));
            tokio::task::yield_now().await;
        }
        assert!(q.is_waiting());
        assert_eq!(q.wait(until, || false).await, Err(QueueRejected::Full));
        q.notify();
        q.notify();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1]);
        assert!(!q.is_waiting());
        // Past the timeout: rejected, and the place is given back.
        let soon = tokio::time::Instant::now() + Duration::from_millis(10);
        assert_eq!(q.wait(soon, || false).await, Err(QueueRejected::Timeout));
        assert!(!q.is_waiting());
    }

    /// A request waiting in `q` (with no room) until `until`, once it is in line.
    async fn wait_in_line(
        q: &Arc<Queue>,
        until: tokio::time::Instant,
    ) -> tokio::task::JoinHandle<Result<(), QueueRejected>> {
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.wait(until, || false).await }
        });
        tokio::task::yield_now().await;
        assert!(q.is_waiting());
        waiting
    }

    #[tokio::test(start_paused = true)]
    async fn turned_off_it_wakes_its_waiters_and_takes_no_more() {
        let q = queue(2);
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let waiting = wait_in_line(&q, until).await;
        q.configure(&QueueConfig {
            size: 0,
            timeout: Duration::from_secs(1),
        });
        assert_eq!(waiting.await.unwrap(), Ok(()), "woken to try again");
        assert!(!q.is_on() && !q.is_waiting());
        assert_eq!(q.timeout(), Duration::from_secs(1));
        assert_eq!(q.wait(until, || false).await, Err(QueueRejected::Full));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_leaves_frees_its_place() {
        let q = queue(1);
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let waiting = wait_in_line(&q, until).await;
        waiting.abort();
        let _ = waiting.await;
        assert!(!q.is_waiting());
        assert_eq!(q.wait(until, || true).await, Ok(()));
    }
}
