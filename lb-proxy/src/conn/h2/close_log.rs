//! How many of the connections closed for what their client did are logged: at most
//! `server.http2.logged_closes_per_second` in any one second (the rest are counted in the
//! metric only). Each close would otherwise cost a client one TCP connection and the balancer a
//! log line, and a journal that rate-limits the service would then drop the balancer's other
//! lines too. The first line logged after some were held back says how many.
//!
//! Closes are rare next to requests: the gate takes a lock, off the request path.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The gate of one listener's HTTP/2 close lines.
#[derive(Debug)]
pub(crate) struct CloseLog {
    per_second: u32,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// When the current second began; `None` before the first close.
    start: Option<Instant>,
    /// Lines logged in it.
    logged: u32,
    /// Closes not logged since the last line that was.
    held_back: u64,
}

impl CloseLog {
    /// A gate letting `per_second` lines through in any one second (0: none).
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Mutex::new(Window::default()),
        }
    }

    /// Whether the close noted at `now` is logged: `Some(n)` with the number of closes held back
    /// since the last line logged, `None` when this one is held back.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let new_second = window
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if new_second {
            window.start = Some(now);
            window.logged = 0;
        }
        if window.logged >= self.per_second {
            window.held_back += 1;
            return None;
        }
        window.logged += 1;
        Some(std::mem::take(&mut window.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_a_second_then_the_count_of_those_held_back() {
        let log = CloseLog::new(3);
        let t0 = crate::clock::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // (time, expected): three in the first second, the rest held back until 1 s after the
        // second began, then the first line of the next carries their count.
        let steps = [
            (0, Some(0)),
            (1, Some(0)),
            (2, Some(0)),
            (3, None),
            (500, None),
            (999, None),
            (1_000, Some(3)),
            (1_001, Some(0)),
            (1_002, Some(0)),
            (1_003, None),
            // A quiet stretch: a new second starts with the next close, not on a fixed grid.
            (5_500, Some(1)),
            (6_499, Some(0)),
            (6_499, Some(0)),
            (6_499, None),
            (6_500, Some(1)),
        ];
        for (index, (ms, expected)) in steps.into_iter().enumerate() {
            assert_eq!(log.admit(at(ms)), expected, "step {index} at {ms} ms");
        }
    }

    #[test]
    fn zero_logs_none_and_an_instant_out_of_order_is_no_new_second() {
        let none = CloseLog::new(0);
        let t0 = crate::clock::now() + Duration::from_secs(10);
        for ms in [0, 1, 2_000] {
            assert_eq!(none.admit(t0 + Duration::from_millis(ms)), None);
        }
        let one = CloseLog::new(1);
        assert_eq!(one.admit(t0), Some(0));
        // Another thread's clock read a little earlier: the same second.
        assert_eq!(one.admit(t0 - Duration::from_millis(5)), None);
        assert_eq!(one.admit(t0 + Duration::from_secs(1)), Some(1));
    }
}
