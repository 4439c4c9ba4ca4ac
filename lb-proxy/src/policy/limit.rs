//! A named rate limit: one budget per key, shared by every route that names the limit.
//!
//! Local limits keep their keys in lb-core's [`KeyedLimiter`] (exact across worker threads,
//! bounded in memory). Limits with `shared: redis` ask the Redis server in one round trip
//! ([`super::limit_redis`]) and, while it does not answer within `redis.timeout`, apply
//! `redis.on_error`: the local budget (the default), allow, or deny.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lb_core::config::RateLimitConfig;
use lb_core::config::limits::{LimitKey, OnRedisError, Sharing};
use lb_core::ratelimit::{Decision, Gcra, KeyedLimiter, key_of_ip};

use super::limit_redis::RedisLimits;
use crate::clock;

/// One named limit's state.
#[derive(Debug)]
pub struct Limiter {
    /// The limit's name, the `limit` label of `lb_rate_limited_total`.
    pub name: Arc<String>,
    /// What requests are counted by.
    key: LimitKey,
    /// The in-memory budgets (the only ones of a local limit; the fallback of a shared one).
    local: KeyedLimiter,
    /// Keys header values so that a client cannot aim two values at one budget.
    hasher: RandomState,
    /// The Redis server of a `shared: redis` limit.
    shared: Option<Arc<RedisLimits>>,
}

impl Limiter {
    /// The state of `config`, with `epoch` as the origin of its clock; `redis` is the server
    /// of shared limits, used when the limit says `shared: redis`.
    pub fn new(config: &RateLimitConfig, epoch: Instant, redis: Option<&Arc<RedisLimits>>) -> Self {
        let gcra = Gcra::try_new(config.requests, config.per, config.burst).unwrap_or_else(|_| {
            Gcra::try_new(1, Duration::from_secs(1), 1).expect("a valid limit")
        });
        Self {
            name: Arc::new(config.name.clone()),
            key: config.key.clone(),
            local: KeyedLimiter::new(gcra, config.max_keys, epoch),
            hasher: RandomState::new(),
            shared: match config.shared {
                Sharing::Redis => redis.cloned(),
                Sharing::Local => None,
            },
        }
    }

    /// The limit's policy.
    pub fn gcra(&self) -> &Gcra {
        self.local.gcra()
    }

    /// The key of a request from `client` with `headers`.
    pub fn key(&self, client: IpAddr, headers: &http::HeaderMap) -> u128 {
        match &self.key {
            LimitKey::Client => key_of_ip(client),
            LimitKey::Global => 0,
            LimitKey::Header(name) => match headers.get(name.as_str()) {
                // Two independent 64-bit hashes: a 128-bit key no client can aim.
                Some(value) => {
                    let bytes = value.as_bytes();
                    let high = self.hasher.hash_one((0u8, bytes));
                    let low = self.hasher.hash_one((1u8, bytes));
                    (u128::from(high) << 64 | u128::from(low)) | 1
                }
                // Without the header, the client's address: leaving it out escapes nothing.
                // Addresses are even in this space (the low bit clear), hashes odd.
                None => key_of_ip(client) << 1,
            },
        }
    }

    /// Whether the limit lives in this balancer's memory only (its decision needs no wait).
    pub fn is_local(&self) -> bool {
        self.shared.is_none()
    }

    /// Decides one request of `key` in memory.
    pub fn check_local(&self, key: u128) -> Decision {
        self.local.check(key, clock::now())
    }

    /// Decides one request of `key`: in memory, or in Redis for a shared limit (then, while
    /// Redis does not answer, as `redis.on_error` says).
    pub async fn check(&self, key: u128) -> Decision {
        let Some(redis) = &self.shared else {
            return self.local.check(key, clock::now());
        };
        if let Some(decision) = redis.check(&self.name, key, self.gcra()).await {
            return decision;
        }
        let decision = |allowed| Decision {
            allowed,
            remaining: 0,
            retry_after: Duration::from_secs(u64::from(!allowed)),
            reset_after: Duration::ZERO,
        };
        match redis.on_error() {
            OnRedisError::Local => self.local.check(key, clock::now()),
            OnRedisError::Allow => decision(true),
            OnRedisError::Deny => decision(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // any instant will do as the epoch
    fn keys_by_client_header_or_one_for_all() {
        let config = |key| RateLimitConfig {
            name: "l".into(),
            requests: 1,
            per: Duration::from_secs(1),
            burst: 1,
            key,
            shared: Sharing::Local,
            max_keys: 10,
        };
        let epoch = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut with_key = http::HeaderMap::new();
        with_key.insert("x-api-key", http::HeaderValue::from_static("k1"));
        let mut other_key = http::HeaderMap::new();
        other_key.insert("x-api-key", http::HeaderValue::from_static("k2"));
        let none = http::HeaderMap::new();

        let by_client = Limiter::new(&config(LimitKey::Client), epoch, None);
        assert_ne!(by_client.key(a, &none), by_client.key(b, &none));
        assert_eq!(by_client.key(a, &with_key), by_client.key(a, &none));

        let global = Limiter::new(&config(LimitKey::Global), epoch, None);
        assert_eq!(global.key(a, &with_key), global.key(b, &none));

        let by_header = Limiter::new(&config(LimitKey::Header("x-api-key".into())), epoch, None);
        assert_eq!(by_header.key(a, &with_key), by_header.key(b, &with_key));
        assert_ne!(by_header.key(a, &with_key), by_header.key(a, &other_key));
        // Without the header, the address: leaving it out escapes nothing.
        assert_ne!(by_header.key(a, &none), by_header.key(b, &none));
        assert_ne!(by_header.key(a, &none), by_header.key(a, &with_key));
    }
}
