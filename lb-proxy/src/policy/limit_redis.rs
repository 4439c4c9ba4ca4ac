//! Limits a fleet shares: the GCRA state of `shared: redis` limits lives in one Redis server,
//! so N balancers enforce one limit together.
//!
//! Each decision is one round trip: a Lua script (sent once, then called by its SHA) reads the
//! key's TAT, decides with the same arithmetic as lb-core's [`lb_core::ratelimit::Gcra`], and
//! stores the new TAT with an expiry at the moment the budget is full again, so idle keys
//! vanish by themselves. Time is Redis's own (`TIME`), so balancers whose clocks drift still
//! agree.
//!
//! Redis being slow or down never stalls a request for long: a decision waits at most
//! `redis.timeout`, then `redis.on_error` decides (the local budget by default, or allow, or
//! deny). `lb_rate_limit_redis_up` shows the state, `lb_rate_limit_redis_errors_total` counts
//! the decisions Redis did not make, and each change of state is logged once. The connection
//! is made in the background and re-made by the client after a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use lb_core::config::RedisConfig;
use lb_core::ratelimit::{Decision, Gcra};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::ConnectionManager;

use crate::metrics::Metrics;

/// GCRA in Redis, in microseconds of Redis's clock: `{allowed, remaining, retry_after_us,
/// reset_after_us}`. Lua numbers are doubles, exact for integers up to 2^53 µs (285 years).
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = math.max(tat, now)
if base - now > tolerance then
  return {0, 0, base - now - tolerance, base - now}
end
local nxt = base + emission
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return {1, math.floor((now + tolerance + emission - nxt) / emission), 0, nxt - now}
";

/// How long between two attempts to make the first connection.
const CONNECT_EVERY: Duration = Duration::from_secs(1);

/// The Redis server of shared limits, and what happens without it.
#[derive(Debug)]
pub struct RedisLimits {
    config: RedisConfig,
    connection: ArcSwapOption<ConnectionManager>,
    script: redis::Script,
    /// Whether the last decision reached Redis (for logging each change once).
    up: AtomicBool,
    up_gauge: Gauge,
    errors: Counter,
}

impl RedisLimits {
    /// The client for `config`; its connection is made by a task that ends with it.
    pub fn start(config: &RedisConfig, metrics: &Metrics) -> Arc<Self> {
        let limits = Arc::new(Self {
            config: config.clone(),
            connection: ArcSwapOption::empty(),
            script: redis::Script::new(SCRIPT),
            up: AtomicBool::new(false),
            up_gauge: metrics.policy.redis_up.clone(),
            errors: metrics.policy.redis_errors.clone(),
        });
        limits.up_gauge.set(0);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(connect(Arc::downgrade(&limits)));
        }
        limits
    }

    /// What `redis.on_error` says.
    pub fn on_error(&self) -> lb_core::config::limits::OnRedisError {
        self.config.on_error
    }

    /// Decides one request of `key` under limit `name`; `None` when Redis did not answer in
    /// time (counted, and logged when it changes).
    pub async fn check(&self, name: &str, key: u128, gcra: &Gcra) -> Option<Decision> {
        let answer = match self.connection.load_full() {
            None => None,
            Some(connection) => {
                let mut connection = (*connection).clone();
                let redis_key = format!("{}{name}:{key:032x}", self.config.key_prefix);
                let emission = (gcra.emission_nanos() / 1000).max(1);
                let tolerance = gcra.tolerance_nanos() / 1000;
                let mut call = self.script.key(redis_key);
                call.arg(emission).arg(tolerance);
                let invoke = call.invoke_async::<(i64, i64, i64, i64)>(&mut connection);
                tokio::time::timeout(self.config.timeout, invoke)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some((allowed, remaining, retry_us, reset_us)) = answer else {
            self.errors.inc();
            self.state(false);
            return None;
        };
        self.state(true);
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Some(Decision {
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).unwrap_or(0),
            retry_after: micros(retry_us),
            reset_after: micros(reset_us),
        })
    }

    fn state(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            self.up_gauge.set(i64::from(up));
            match up {
                true => {
                    tracing::info!(url = %self.config.url, "Redis answers: shared rate limits are enforced together again")
                }
                false => tracing::warn!(
                    url = %self.config.url, on_error = ?self.config.on_error,
                    "Redis does not answer: shared rate limits fall back to redis.on_error"
                ),
            }
        }
    }
}

/// Makes the first connection, retrying every second until it is made or the client is gone;
/// the connection manager then re-makes it by itself after a failure.
async fn connect(limits: Weak<RedisLimits>) {
    loop {
        let Some(strong) = limits.upgrade() else {
            return;
        };
        let attempt = async {
            let client = redis::Client::open(strong.config.url.as_str())?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(strong.config.timeout.max(Duration::from_millis(100))))
                .set_response_timeout(Some(strong.config.timeout));
            ConnectionManager::new_with_config(client, config).await
        };
        match attempt.await {
            Ok(connection) => {
                strong.connection.store(Some(Arc::new(connection)));
                strong.state(true);
                return;
            }
            Err(error) => tracing::debug!(%error, "Redis connection failed; trying again"),
        }
        drop(strong);
        tokio::time::sleep(CONNECT_EVERY).await;
    }
}
