//! The GCRA policy and its pure decision; see the [module docs](super) for why.

use std::time::Duration;

/// Why a limit cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLimit {
    /// `requests` or `burst` is 0.
    #[error("requests and burst must be at least 1")]
    Zero,
    /// The period is zero or too long to count in nanoseconds.
    #[error("the period must be between 1ns and 100 years")]
    Period,
}

/// `requests` per `period`, in bursts of at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    requests: u32,
    period: Duration,
    burst: u32,
    /// `T`: nanoseconds between two requests at the sustained rate.
    emission: u64,
    /// `τ = T × (burst − 1)`: how far TAT may run ahead of now.
    tolerance: u64,
}

/// What one decision concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u32,
    /// Refused: how long until a request would be allowed. Allowed: zero.
    pub retry_after: Duration,
    /// How long until the whole burst is available again.
    pub reset_after: Duration,
}

impl Gcra {
    /// A limit of `requests` per `period` with bursts of `burst`.
    ///
    /// # Errors
    ///
    /// [`InvalidLimit`] for a zero count or a period out of range.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use lb_core::ratelimit::Gcra;
    ///
    /// let limit = Gcra::try_new(5, Duration::from_secs(1), 5).unwrap();
    /// let mut tat = 0;
    /// let now = 1_000_000_000; // nanoseconds on the caller's clock
    /// for _ in 0..5 {
    ///     let (decision, next) = limit.decide(tat, now);
    ///     assert!(decision.allowed);
    ///     tat = next;
    /// }
    /// let (refused, _) = limit.decide(tat, now);
    /// assert!(!refused.allowed);
    /// assert_eq!(refused.retry_after, Duration::from_millis(200));
    /// ```
    pub fn try_new(requests: u32, period: Duration, burst: u32) -> Result<Gcra, InvalidLimit> {
        if requests == 0 || burst == 0 {
            return Err(InvalidLimit::Zero);
        }
        let nanos = u64::try_from(period.as_nanos()).map_err(|_| InvalidLimit::Period)?;
        if nanos == 0 || nanos > 100 * 365 * 86_400 * 1_000_000_000 {
            return Err(InvalidLimit::Period);
        }
        let emission = (nanos / u64::from(requests)).max(1);
        Ok(Gcra {
            requests,
            period,
            burst,
            emission,
            tolerance: emission * u64::from(burst - 1),
        })
    }

    /// Requests per period.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The burst.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The emission interval `T` in nanoseconds.
    pub fn emission_nanos(&self) -> u64 {
        self.emission
    }

    /// The tolerance `τ` in nanoseconds.
    pub fn tolerance_nanos(&self) -> u64 {
        self.tolerance
    }

    /// Decides one request at `now` (nanoseconds on any clock that only moves forward) for a
    /// key whose stored TAT is `tat` (0 for a key never seen); returns the decision and the TAT
    /// to store (unchanged when refused).
    pub fn decide(&self, tat: u64, now: u64) -> (Decision, u64) {
        let (t, tau) = (self.emission, self.tolerance);
        let base = tat.max(now);
        if base - now > tau {
            // Refused: allowed again once TAT - τ is reached.
            let wait = base - now - tau;
            let decision = Decision {
                allowed: false,
                remaining: 0,
                retry_after: Duration::from_nanos(wait),
                reset_after: Duration::from_nanos(base - now),
            };
            return (decision, tat);
        }
        let next = base.saturating_add(t);
        let room = (now + tau + t).saturating_sub(next) / t;
        let decision = Decision {
            allowed: true,
            remaining: u32::try_from(room).unwrap_or(u32::MAX),
            retry_after: Duration::ZERO,
            reset_after: Duration::from_nanos(next - now),
        };
        (decision, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limit = Gcra::try_new(10, Duration::from_secs(1), 3).unwrap();
        let mut tat = 0;
        let now = 50 * SECOND;
        let mut remaining = Vec::new();
        for _ in 0..4 {
            let (d, next) = limit.decide(tat, now);
            remaining.push((d.allowed, d.remaining));
            tat = next;
        }
        assert_eq!(remaining, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        // One emission interval later, exactly one more.
        let later = now + SECOND / 10;
        let (d, next) = limit.decide(tat, later);
        assert!(d.allowed);
        assert!(!limit.decide(next, later).0.allowed);
    }

    #[test]
    fn the_admitted_count_over_a_long_run_is_the_rate_plus_the_burst() {
        let limit = Gcra::try_new(100, Duration::from_secs(1), 20).unwrap();
        let mut tat = 0;
        let mut allowed = 0u64;
        // A request every millisecond for 10 s: 10,000 asked, 100/s allowed plus the burst.
        for ms in 0..10_000u64 {
            let (d, next) = limit.decide(tat, SECOND + ms * 1_000_000);
            if d.allowed {
                allowed += 1;
                tat = next;
            }
        }
        assert!((1000..=1020).contains(&allowed), "{allowed}");
    }

    #[test]
    fn refusals_say_when_to_come_back() {
        let limit = Gcra::try_new(1, Duration::from_secs(60), 1).unwrap();
        let (first, tat) = limit.decide(0, SECOND);
        assert!(first.allowed && first.remaining == 0);
        assert_eq!(first.reset_after, Duration::from_secs(60));
        let (second, same) = limit.decide(tat, SECOND + 15 * SECOND);
        assert!(!second.allowed);
        assert_eq!(same, tat);
        assert_eq!(second.retry_after, Duration::from_secs(45));
        assert!(limit.decide(tat, SECOND + 60 * SECOND).0.allowed);
    }

    #[test]
    fn invalid_limits() {
        assert_eq!(
            Gcra::try_new(0, Duration::from_secs(1), 1),
            Err(InvalidLimit::Zero)
        );
        assert_eq!(
            Gcra::try_new(1, Duration::ZERO, 1),
            Err(InvalidLimit::Period)
        );
    }
}
