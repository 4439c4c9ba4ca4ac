//! Slow start: a backend that returns to rotation takes a share of traffic that ramps from
//! 10 % to its full weight over `load_balancer.slow_start`, as Envoy's slow start does, so a
//! cold backend (empty caches, JIT not warm, pools not filled) is not handed a full share at
//! once, and never starved either: the floor of 10 % keeps it learning.
//!
//! The ramp works with every algorithm: when the selector picks a backend that is ramping, the
//! pick is kept with probability equal to the ramp's factor and otherwise made again without
//! it (falling back to it when no other backend is a candidate). The factor is lock-free: the
//! start of the ramp is an atomic of nanoseconds since the backend's creation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The smallest share of its weight a ramping backend gets.
pub const FLOOR: f64 = 0.1;

/// One backend's ramp.
#[derive(Debug)]
pub struct SlowStart {
    /// The ramp's length in nanoseconds; 0 when the pool has no slow start.
    duration: AtomicU64,
    epoch: Instant,
    /// Nanoseconds since `epoch` plus one when the ramp began; 0 when not ramping.
    since: AtomicU64,
}

impl SlowStart {
    /// A ramp of `duration` (none when zero); `epoch` is the backend's creation.
    pub fn new(duration: Duration, epoch: Instant) -> Self {
        let ramp = Self {
            duration: AtomicU64::new(0),
            epoch,
            since: AtomicU64::new(0),
        };
        ramp.set_duration(duration);
        ramp
    }

    /// Takes a new length (a reload); 0 ends any ramp under way.
    pub fn set_duration(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.duration.store(nanos, Ordering::Relaxed);
    }

    /// The backend joins or returns to rotation at `now`: its ramp begins (when the pool has
    /// slow start).
    pub fn begin(&self, now: Instant) {
        if self.duration.load(Ordering::Relaxed) == 0 {
            return;
        }
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.since.store(nanos, Ordering::Relaxed);
    }

    /// The share of its weight the backend takes at `now`: 1 when not ramping.
    pub fn factor(&self, now: Instant) -> f64 {
        let since = self.since.load(Ordering::Relaxed);
        if since == 0 {
            return 1.0;
        }
        let duration = self.duration.load(Ordering::Relaxed);
        let began = self.epoch + Duration::from_nanos(since - 1);
        let ramped = match duration {
            0 => 1.0,
            _ => now.saturating_duration_since(began).as_secs_f64() / (duration as f64 / 1e9),
        };
        if ramped >= 1.0 {
            // Done: later calls skip the arithmetic.
            let _ = self
                .since
                .compare_exchange(since, 0, Ordering::Relaxed, Ordering::Relaxed);
            return 1.0;
        }
        ramped.max(FLOOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // any instant will do as the epoch
    fn the_ramp_goes_from_the_floor_to_full() {
        let t0 = Instant::now();
        let ramp = SlowStart::new(Duration::from_secs(10), t0);
        assert_eq!(ramp.factor(t0), 1.0);
        ramp.begin(t0 + Duration::from_secs(1));
        assert_eq!(ramp.factor(t0 + Duration::from_secs(1)), FLOOR);
        let half = ramp.factor(t0 + Duration::from_secs(6));
        assert!((half - 0.5).abs() < 1e-9, "{half}");
        assert_eq!(ramp.factor(t0 + Duration::from_secs(11)), 1.0);
        assert_eq!(
            ramp.factor(t0 + Duration::from_secs(2)),
            1.0,
            "a finished ramp stays done"
        );
        let off = SlowStart::new(Duration::ZERO, t0);
        off.begin(t0);
        assert_eq!(off.factor(t0), 1.0, "no ramp without slow start");
        ramp.begin(t0 + Duration::from_secs(20));
        ramp.set_duration(Duration::ZERO);
        assert_eq!(
            ramp.factor(t0 + Duration::from_secs(20)),
            1.0,
            "turned off mid-ramp"
        );
    }
}
