//! The retry budget: retries limited to a fraction of requests, plus a floor per second.
//! The design and its bound are documented on [`RetryBudget`], where rustdoc shows them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use thiserror::Error;

/// Token amounts are fixed-point: a millionth of a token, so small ratios still deposit.
const MICROS_PER_TOKEN: i64 = 1_000_000;
/// The bank holds what this many original requests deposit...
const BANK_REQUESTS: f64 = 100.0;
/// ...but never less than this many tokens.
const MIN_BANK_TOKENS: f64 = 10.0;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Why a [`RetryBudget`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum InvalidRetryBudget {
    /// The ratio was outside `0..=1` or not a number.
    #[error("retry budget ratio must be between 0 and 1, got {0}")]
    RatioOutOfRange(f64),
}

/// The retry budget shared by all workers (why budgets: see [`crate::retry`]).
///
/// Two lock-free buckets, each a single atomic updated with compare-and-swap loops, so every
/// worker thread shares one budget without a lock on the request path:
///
/// - the **bank**: every original request deposits `ratio` of a token, every retry may take one.
///   It holds at most [`RetryBudget::cap`] tokens, `max(10, 100 × ratio)`: what a hundred requests
///   earn, and never less than ten retries. Without a cap a long quiet period (or a
///   long healthy one) would bank an unbounded burst of retries to unleash at the first outage.
/// - the **floor**: `min_per_sec` retries per second regardless of traffic, so a service with
///   few requests can still retry. It is a token bucket of capacity `min_per_sec` refilled
///   continuously, kept as a single "theoretical arrival time" (the generic cell rate algorithm
///   of ATM networks, ITU-T I.371), which needs one atomic instead of a count and a timestamp.
///   It starts full.
///
/// A retry takes from the floor first, since unused floor tokens are lost after a second while
/// banked tokens keep. Hence over any run from construction to a time `T` seconds later, with
/// `D` deposits, successful withdrawals never exceed
/// `ratio × D + min_per_sec × ceil(T) + min_per_sec` (the last term being the initial floor).
///
/// Every method takes `&self`: share it in an `Arc`.
#[derive(Debug)]
pub struct RetryBudget {
    /// Time zero of the floor's clock; `now` arguments are converted to nanoseconds since it.
    base: Instant,
    ratio: f64,
    min_per_sec: u32,
    /// What one original request adds to the bank, in micro-tokens (rounded down).
    deposit_micros: i64,
    /// The most the bank holds, in micro-tokens.
    cap_micros: i64,
    /// Banked micro-tokens, in `0..=cap_micros`.
    bank: AtomicI64,
    /// Nanoseconds between floor tokens (rounded up, so the rate never exceeds `min_per_sec`);
    /// zero when there is no floor.
    floor_interval: u64,
    /// The floor's capacity expressed as time: `min_per_sec × floor_interval` nanoseconds.
    floor_burst: u64,
    /// The floor's theoretical arrival time in nanoseconds since `base`: the floor is full when
    /// it is at or before `now`, and empty when it is `floor_burst` or more ahead.
    floor_tat: AtomicU64,
}

/// The validated settings of a [`RetryBudget`]: what the configuration says, before the
/// budget's state exists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetPolicy {
    ratio: f64,
    min_per_sec: u32,
}

impl BudgetPolicy {
    /// Retries may add `ratio` of the original requests, plus `min_per_sec` per second whatever
    /// the traffic.
    ///
    /// # Errors
    /// `ratio` must be a number in `0..=1`.
    pub fn try_new(ratio: f64, min_per_sec: u32) -> Result<Self, InvalidRetryBudget> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(InvalidRetryBudget::RatioOutOfRange(ratio));
        }
        Ok(Self { ratio, min_per_sec })
    }

    /// The fraction of original requests that retries may add.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Retries allowed per second whatever the traffic.
    pub fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }
}

impl Default for BudgetPolicy {
    /// The configuration defaults: 20 % of the requests, and 10 retries a second.
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10,
        }
    }
}

impl RetryBudget {
    /// A budget letting retries add `ratio` of the original requests, plus `min_per_sec` retries
    /// per second whatever the traffic. The floor starts full, the bank empty; `now` is the
    /// floor's time zero.
    ///
    /// # Errors
    /// `ratio` must be a number in `0..=1`.
    pub fn try_new(ratio: f64, min_per_sec: u32, now: Instant) -> Result<Self, InvalidRetryBudget> {
        Ok(Self::new(BudgetPolicy::try_new(ratio, min_per_sec)?, now))
    }

    /// A budget with `policy`'s settings; `now` is the floor's time zero.
    pub fn new(policy: BudgetPolicy, now: Instant) -> Self {
        let BudgetPolicy { ratio, min_per_sec } = policy;
        let floor_interval = if min_per_sec == 0 {
            0
        } else {
            NANOS_PER_SEC.div_ceil(u64::from(min_per_sec))
        };
        // The float-to-int casts are exact enough: both values are small and non-negative.
        let deposit_micros = (ratio * MICROS_PER_TOKEN as f64) as i64;
        let cap_tokens = (ratio * BANK_REQUESTS).max(MIN_BANK_TOKENS);
        Self {
            base: now,
            ratio,
            min_per_sec,
            deposit_micros,
            cap_micros: (cap_tokens * MICROS_PER_TOKEN as f64) as i64,
            bank: AtomicI64::new(0),
            floor_interval,
            floor_burst: floor_interval.saturating_mul(u64::from(min_per_sec)),
            floor_tat: AtomicU64::new(0),
        }
    }

    /// The fraction of original requests that retries may add.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Retries allowed per second whatever the traffic.
    pub fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }

    /// The most tokens the bank holds (the floor comes on top).
    pub fn cap(&self) -> f64 {
        self.cap_micros as f64 / MICROS_PER_TOKEN as f64
    }

    /// Records an original request (not a retry): adds `ratio` of a token to the bank, up to
    /// the cap. Deposits do not depend on time today; `now` keeps the signature stable should
    /// banked tokens ever expire.
    pub fn deposit(&self, _now: Instant) {
        if self.deposit_micros == 0 {
            return;
        }
        // Relaxed: the bank is a counter that publishes no other data.
        let _ = self
            .bank
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bank| {
                Some(
                    bank.saturating_add(self.deposit_micros)
                        .min(self.cap_micros),
                )
            });
    }

    /// Takes one token for a retry at `now` if one is available, from the floor first.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        self.try_withdraw_floor(self.nanos_since_base(now)) || self.try_withdraw_bank()
    }

    /// Tokens available at `now`, floor and bank together (for metrics and tests).
    pub fn available(&self, now: Instant) -> f64 {
        let bank = self.bank.load(Ordering::Relaxed) as f64 / MICROS_PER_TOKEN as f64;
        if self.floor_interval == 0 {
            return bank;
        }
        let now = self.nanos_since_base(now);
        let tat = self.floor_tat.load(Ordering::Relaxed).max(now);
        let room = now.saturating_add(self.floor_burst).saturating_sub(tat);
        bank + room as f64 / self.floor_interval as f64
    }

    fn try_withdraw_floor(&self, now: u64) -> bool {
        if self.floor_interval == 0 {
            return false;
        }
        self.floor_tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                // GCRA: taking a token pushes the arrival time one interval further; allowed
                // while that stays within one full bucket (`floor_burst`) of now.
                let next = tat.max(now).saturating_add(self.floor_interval);
                (next <= now.saturating_add(self.floor_burst)).then_some(next)
            })
            .is_ok()
    }

    fn try_withdraw_bank(&self) -> bool {
        self.bank
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bank| {
                (bank >= MICROS_PER_TOKEN).then(|| bank - MICROS_PER_TOKEN)
            })
            .is_ok()
    }

    /// `now` as nanoseconds since `base`; earlier instants count as `base`, and the count
    /// saturates after 584 years.
    fn nanos_since_base(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)] // one real Instant as a base; offsets are exact
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn ratio_must_be_in_range() {
        let now = t0();
        for ratio in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert!(RetryBudget::try_new(ratio, 1, now).is_err(), "{ratio}");
        }
        for ratio in [0.0, 0.2, 1.0] {
            assert!(RetryBudget::try_new(ratio, 0, now).is_ok(), "{ratio}");
        }
        let message = InvalidRetryBudget::RatioOutOfRange(1.5).to_string();
        assert_eq!(
            message,
            "retry budget ratio must be between 0 and 1, got 1.5"
        );
    }

    #[test]
    fn deposits_earn_ratio_tokens() {
        let now = t0();
        let budget = RetryBudget::try_new(0.2, 0, now).expect("valid");
        for _ in 0..4 {
            budget.deposit(now);
        }
        assert!(
            !budget.try_withdraw(now),
            "0.8 tokens do not pay for a retry"
        );
        budget.deposit(now);
        assert!(budget.try_withdraw(now), "1.0 token does");
        assert!(!budget.try_withdraw(now));
    }

    #[test]
    fn bank_is_capped() {
        let now = t0();
        let budget = RetryBudget::try_new(0.5, 0, now).expect("valid");
        assert_eq!(budget.cap(), 50.0);
        for _ in 0..1000 {
            budget.deposit(now);
        }
        assert_eq!(budget.available(now), 50.0);
        let low = RetryBudget::try_new(0.01, 0, now).expect("valid");
        assert_eq!(low.cap(), 10.0, "never below ten tokens");
    }

    #[test]
    fn floor_refills_over_time_up_to_min_per_sec() {
        let t0 = t0();
        let budget = RetryBudget::try_new(0.0, 3, t0).expect("valid");
        let at = |ms| t0 + Duration::from_millis(ms);
        // Starts full: three retries, then none.
        let granted: Vec<bool> = (0..4).map(|_| budget.try_withdraw(at(0))).collect();
        assert_eq!(granted, [true, true, true, false]);
        // One token per third of a second (rounded up to the nanosecond).
        assert!(!budget.try_withdraw(at(333)));
        assert!(budget.try_withdraw(at(334)));
        assert!(!budget.try_withdraw(at(334)));
        // A long quiet period refills to three, not more.
        assert!((budget.available(at(60_000)) - 3.0).abs() < 1e-6);
        let granted = (0..5).filter(|_| budget.try_withdraw(at(60_000))).count();
        assert_eq!(granted, 3);
    }

    #[test]
    fn floor_first_then_bank() {
        let now = t0();
        let budget = RetryBudget::try_new(1.0, 1, now).expect("valid");
        budget.deposit(now);
        assert_eq!(budget.available(now), 2.0);
        assert!(budget.try_withdraw(now));
        assert_eq!(budget.available(now), 1.0);
        assert!(budget.try_withdraw(now));
        assert!(!budget.try_withdraw(now));
    }

    #[test]
    fn earlier_instants_do_not_panic() {
        let now = t0();
        let budget = RetryBudget::try_new(0.0, 1, now + Duration::from_secs(1)).expect("valid");
        assert!(budget.try_withdraw(now));
        assert!(!budget.try_withdraw(now));
    }

    #[test]
    fn threads_hammering_respect_the_invariant() {
        const THREADS: u64 = 4;
        const OPS: u64 = 100_000;
        const RATIO: f64 = 0.1;
        const MIN_PER_SEC: u32 = 5;
        let t0 = t0();
        let budget = Arc::new(RetryBudget::try_new(RATIO, MIN_PER_SEC, t0).expect("valid"));
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || {
                    let (mut deposits, mut withdrawals) = (0u64, 0u64);
                    for op in 0..OPS {
                        // Simulated time: 20 µs per op, the same schedule on every thread, so
                        // the run spans 2 s of budget time and threads race on the same instants.
                        let now = t0 + Duration::from_micros(op * 20);
                        if (op + thread) % 3 == 0 {
                            budget.deposit(now);
                            deposits += 1;
                        } else if budget.try_withdraw(now) {
                            withdrawals += 1;
                        }
                    }
                    (deposits, withdrawals)
                })
            })
            .collect();
        let (mut deposits, mut withdrawals) = (0u64, 0u64);
        for handle in handles {
            let (d, w) = handle.join().expect("worker thread");
            deposits += d;
            withdrawals += w;
        }
        let seconds = (OPS * 20).div_ceil(1_000_000); // the simulated span, rounded up
        let bound = RATIO * deposits as f64 + f64::from(MIN_PER_SEC) * (seconds + 1) as f64;
        assert!(withdrawals as f64 <= bound, "{withdrawals} > {bound}");
        // Demand far exceeds supply, so nearly the whole budget is used.
        assert!(
            withdrawals as f64 >= RATIO * deposits as f64 - budget.cap(),
            "{withdrawals}"
        );
    }
}
