//! One GCRA budget per key, for millions of keys in bounded memory.
//!
//! A key is a `u128`: an IP address as its IPv6 form ([`key_of_ip`]), or any other value (an
//! API key) hashed by the caller with a keyed hash, so that a client cannot choose keys that
//! collide. The store is split into shards, each a mutex over a map from key to TAT; a
//! decision locks one shard for a map lookup and two integer operations, so the worker threads
//! of one balancer share each budget exactly.
//!
//! Memory is bounded by `max_keys`. When a shard is full, keys whose TAT has passed are dropped
//! first: their budget is full again, so forgetting them changes no decision. If a shard is
//! still full (more keys active at once than the bound), the half of it closest to being idle
//! is dropped, judged by the median TAT of a sample; those clients get a fresh budget early,
//! which is the price of the bound, and the only way this store can err.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::gcra::{Decision, Gcra};

/// Shards of a store: enough that two to a few dozen worker threads seldom wait on one.
const SHARDS: usize = 64;
/// TATs sampled to find the median when a shard must drop active keys.
const SAMPLE: usize = 32;

/// The key of an IP address: IPv4 as its IPv4-mapped IPv6 form.
pub fn key_of_ip(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// A GCRA limit with one budget per key.
#[derive(Debug)]
pub struct KeyedLimiter {
    gcra: Gcra,
    /// Times are kept as nanoseconds since this instant.
    epoch: Instant,
    shards: Box<[Mutex<HashMap<u128, u64>>]>,
    max_per_shard: usize,
}

impl KeyedLimiter {
    /// A store for `gcra` holding at most about `max_keys` keys; `epoch` is any instant not
    /// after the first decision's `now`.
    pub fn new(gcra: Gcra, max_keys: usize, epoch: Instant) -> Self {
        let shards = if max_keys < SHARDS * 4 { 1 } else { SHARDS };
        Self {
            gcra,
            epoch,
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            max_per_shard: max_keys.div_ceil(shards).max(1),
        }
    }

    /// The limit.
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// Decides one request of `key` at `now`, and records it if allowed.
    pub fn check(&self, key: u128, now: Instant) -> Decision {
        // +1 so that a key never seen (TAT 0) is always in the past.
        let now = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let shard = &self.shards[self.shard_of(key)];
        let mut map = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= self.max_per_shard && !map.contains_key(&key) {
            evict(&mut map, now, self.max_per_shard);
        }
        // One hash of the key on the common path: the entry is read and written in place.
        match map.entry(key) {
            Entry::Occupied(mut held) => {
                let (decision, next) = self.gcra.decide(*held.get(), now);
                if decision.allowed {
                    held.insert(next);
                }
                decision
            }
            Entry::Vacant(free) => {
                let (decision, next) = self.gcra.decide(0, now);
                if decision.allowed {
                    free.insert(next);
                }
                decision
            }
        }
    }

    /// Keys held now, for tests and gauges.
    pub fn len(&self) -> usize {
        (self.shards.iter())
            .map(|s| s.lock().map_or(0, |map| map.len()))
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of(&self, key: u128) -> usize {
        // Keys are addresses or keyed hashes: fold and mix the bits, then pick a shard.
        let folded = (key as u64) ^ ((key >> 64) as u64);
        let mixed = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 32) as usize % self.shards.len()
    }
}

/// Makes room in a full shard: idle keys go first, then the half nearest to idle.
fn evict(map: &mut HashMap<u128, u64>, now: u64, max: usize) {
    map.retain(|_, tat| *tat > now);
    if map.len() < max {
        return;
    }
    let mut sample: Vec<u64> = map.values().take(SAMPLE).copied().collect();
    sample.sort_unstable();
    let median = sample[sample.len() / 2];
    map.retain(|_, tat| *tat > median);
    if map.len() >= max {
        // Every sampled TAT was equal: drop arbitrary keys down to three quarters.
        let excess: Vec<u128> = map.keys().take(map.len() - max * 3 / 4).copied().collect();
        for key in excess {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // any instant will do as the epoch
    fn memory_stays_bounded_and_idle_keys_go_first() {
        let t0 = Instant::now();
        let gcra = Gcra::try_new(1, Duration::from_secs(1), 1).unwrap();
        let limiter = KeyedLimiter::new(gcra, 1000, t0);
        // A hundred thousand clients in one second: never more than the bound is held.
        for key in 0..100_000u128 {
            let now = t0 + Duration::from_micros(key as u64 * 10);
            assert!(limiter.check(key, now).allowed);
            assert!(limiter.len() <= 1000 + 64);
        }
        // Idle keys are dropped before active ones.
        let limiter = KeyedLimiter::new(gcra, 100, t0);
        for key in 0..100u128 {
            limiter.check(key, t0);
        }
        let later = t0 + Duration::from_secs(5);
        // Key 0 was spent at t0; by now every key is idle, so new keys evict without loss.
        for key in 100..150u128 {
            limiter.check(key, later);
        }
        assert!(limiter.check(150, later).allowed);
        assert!(!limiter.check(150, later).allowed, "an active key is kept");
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // any instant will do as the epoch
    fn one_budget_shared_by_threads_is_exact() {
        // 8 threads, one key, a request every 100 µs of virtual time each for 10 s: the
        // admitted count is the rate times the time plus the burst, within 5 %.
        let t0 = Instant::now();
        let gcra = Gcra::try_new(200, Duration::from_secs(1), 10).unwrap();
        let limiter = Arc::new(KeyedLimiter::new(gcra, 10, t0));
        let threads: Vec<_> = (0..8u64)
            .map(|thread| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    let mut allowed = 0u64;
                    for step in 0..100_000u64 {
                        let now = t0 + Duration::from_micros(step * 100 + thread);
                        allowed += u64::from(limiter.check(7, now).allowed);
                    }
                    allowed
                })
            })
            .collect();
        let allowed: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let want = 200.0 * 10.0 + 10.0;
        let error = (allowed as f64 - want).abs() / want;
        assert!(error <= 0.05, "admitted {allowed}, want {want} ± 5 %");
    }

    #[test]
    fn ip_keys() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(key_of_ip(v4), key_of_ip(mapped));
        assert_ne!(key_of_ip(v4), key_of_ip("10.0.0.2".parse().unwrap()));
    }
}
