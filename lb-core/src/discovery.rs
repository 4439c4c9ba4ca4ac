//! The pure half of backend discovery: what a source's answer means for a pool. The daemon
//! (lb-proxy's `discovery` module) does the IO — watching a file, asking DNS — and calls these
//! with what it got and the time; nothing here reads a clock or a socket.
//!
//! - [`named`]: discovered backends are named `<pool>@<name>` (the entry's name, else its
//!   address), so that names stay unique across pools whatever two sources return, and an
//!   operator can tell a discovered backend from a written one.
//! - [`from_addresses`] and [`from_srv`]: A/AAAA answers and SRV answers as backends. SRV
//!   follows RFC 2782: only the lowest priority is used (the others are backups), and a weight
//!   of 0 means "almost never while others have weight" — here weight 1 against 100 per unit
//!   of the others — or equal shares when every record has 0.
//!   A backend found through a DNS name and reached over TLS presents that name (an SRV
//!   record's target, or the A/AAAA name) as SNI and verifies the certificate for it, unless
//!   `upstream.tls.sni` says otherwise: the certificate of a service found by name is issued
//!   for its name, not for the addresses it happens to have today.
//! - [`refresh_after`]: the wait until the next lookup, the answer's TTL clamped.
//! - [`Backoff`]: the wait after failures in a row: doubling from a minimum to a cap, with
//!   jitter, so that a broken source is not asked in a storm and many balancers do not retry
//!   in step.
//! - [`KeyedSet`] and [`resume`]: an etcd prefix's backends as keys are put and deleted, and what
//!   a watch that ended does next (resume after the last revision seen, or list the prefix again
//!   when the revisions it needs were compacted away).
//! - [`merge`]: the live configuration with one pool's backends replaced by a discovered set,
//!   which the daemon applies as it applies a reload.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::{BackendConfig, Config, DEFAULT_MAX_CONNECTIONS, PoolConfig, pools};

/// The weight an SRV record's weight unit becomes when some record of its priority has weight
/// 0: a weight-0 target gets 1, so it takes about 1 in `100 × Σ weights` requests.
pub const SRV_WEIGHT_SCALE: u32 = 100;

/// The name of a discovered backend of `pool` whose source calls it `name`.
pub fn named(pool: &str, name: &str) -> String {
    format!("{pool}@{name}")
}

/// `backends` as `pool`'s: each renamed by [`named`].
pub fn name_all(pool: &str, backends: Vec<BackendConfig>) -> Vec<BackendConfig> {
    (backends.into_iter())
        .map(|mut backend| {
            backend.name = named(pool, &backend.name);
            backend
        })
        .collect()
}

/// A backend of `pool` at `address` with `weight`, found through the DNS name `host`, reached
/// as the pool's `upstream` says; over TLS, `host` is its SNI unless `upstream.tls.sni` is set.
fn backend(pool: &PoolConfig, address: SocketAddr, weight: u32, host: &str) -> BackendConfig {
    let mut tls = pool.upstream.tls.clone();
    if let Some(tls) = &mut tls
        && tls.sni.is_none()
    {
        tls.sni = server_name(host);
    }
    BackendConfig {
        name: named(&pool.name, &address.to_string()),
        address,
        weight: weight.max(1),
        max_connections: DEFAULT_MAX_CONNECTIONS,
        tls,
        proxy_protocol: pool.upstream.proxy_protocol,
        protocol: pool.upstream.protocol,
    }
}

/// `host` as a TLS server name: without the root's trailing dot, lowercase; `None` for an IP
/// literal or an empty name (the address is verified then, as for a written backend).
fn server_name(host: &str) -> Option<String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.parse::<IpAddr>().is_ok() {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// The backends of an A or AAAA answer for the name `host`: one per distinct address, on
/// `port`, weight 1, in address order (so that every balancer builds the same table from the
/// same answer, whatever order the server gave).
pub fn from_addresses(
    pool: &PoolConfig,
    host: &str,
    ips: &[IpAddr],
    port: u16,
) -> Vec<BackendConfig> {
    let mut addresses: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    addresses.sort();
    addresses.dedup();
    (addresses.into_iter())
        .map(|address| backend(pool, address, 1, host))
        .collect()
}

/// One SRV record, its target resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// Lower is preferred; only the lowest present is used.
    pub priority: u16,
    /// Relative share within a priority; 0 is "almost never" (RFC 2782).
    pub weight: u16,
    /// The target's address and the record's port.
    pub address: SocketAddr,
    /// The record's target name (its TLS server name).
    pub host: String,
}

/// The backends of an SRV answer (see the module's documentation): the lowest priority's
/// targets, weights mapped, one backend per distinct address (a target listed twice gets the
/// sum of its weights), in address order.
pub fn from_srv(pool: &PoolConfig, records: &[SrvTarget]) -> Vec<BackendConfig> {
    let Some(lowest) = records.iter().map(|r| r.priority).min() else {
        return Vec::new();
    };
    let chosen: Vec<&SrvTarget> = records.iter().filter(|r| r.priority == lowest).collect();
    let any_weight = chosen.iter().any(|r| r.weight > 0);
    // An address reached through two targets is one backend, named for the first target.
    let mut weights: BTreeMap<SocketAddr, (u32, &str)> = BTreeMap::new();
    for record in chosen {
        let weight = match (any_weight, record.weight) {
            (false, _) => 1,
            (true, 0) => 1,
            (true, w) => u32::from(w) * SRV_WEIGHT_SCALE,
        };
        let total = weights.entry(record.address).or_insert((0, &record.host));
        total.0 = total.0.saturating_add(weight);
    }
    (weights.into_iter())
        .map(|(address, (weight, host))| backend(pool, address, weight, host))
        .collect()
}

/// The wait until the next lookup of an answer whose smallest TTL is `ttl_seconds`: the TTL,
/// but at least `min` (a TTL of 0 would otherwise ask without pause) and at most `max` (a day
/// long TTL would otherwise hide a change for a day).
pub fn refresh_after(ttl_seconds: u32, min: Duration, max: Duration) -> Duration {
    Duration::from_secs(u64::from(ttl_seconds)).clamp(min, max.max(min))
}

/// The waits after failed lookups: `min`, doubling per failure in a row, at most `max`; each
/// wait is taken between its half and its whole by the jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

/// Why a [`Backoff`] cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidBackoff {
    /// The first wait is zero: failures would be retried in a loop.
    #[error("the first wait of a backoff must be longer than zero")]
    ZeroMin,
    /// The cap is below the first wait.
    #[error("the longest wait of a backoff is shorter than its first")]
    MaxBelowMin,
}

impl Backoff {
    /// A backoff from `min` to `max`.
    ///
    /// # Errors
    ///
    /// When `min` is zero or `max` is below `min`.
    pub fn try_new(min: Duration, max: Duration) -> Result<Self, InvalidBackoff> {
        if min.is_zero() {
            return Err(InvalidBackoff::ZeroMin);
        }
        if max < min {
            return Err(InvalidBackoff::MaxBelowMin);
        }
        Ok(Self { min, max })
    }

    /// The wait after `failures` failures in a row (1 for the first); `jitter` in `[0, 1]`
    /// (anything else is clamped) picks the wait between half the step and the whole of it,
    /// never below `min`. 0 failures waits nothing.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(32);
        let step = self
            .min
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        let jitter = if jitter.is_nan() {
            1.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        step.mul_f64(0.5 + 0.5 * jitter).max(self.min)
    }
}

/// Why a discovered set cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The pool is gone from the configuration, or no longer discovers its backends.
    #[error("pool {0} has no discovery source in the live configuration")]
    NotDiscovered(String),
    /// The source returned nothing usable; the pool keeps its last set.
    #[error("the source gave no backend; the pool keeps its last set")]
    Empty,
    /// Two backends of the set, or one of the set and a backend elsewhere, share a name.
    #[error("backend name {0} is used twice")]
    DuplicateName(String),
    /// Two backends of the set share an address.
    #[error("address {0} is listed twice")]
    DuplicateAddress(SocketAddr),
}

/// `config` with pool `pool`'s backends replaced by `backends`.
///
/// # Errors
///
/// When the pool does not discover its backends, `backends` is empty, or a name or address is
/// not unique (names across every pool, addresses within the set).
pub fn merge(
    config: &Config,
    pool: &str,
    backends: Vec<BackendConfig>,
) -> Result<Config, MergeError> {
    if backends.is_empty() {
        return Err(MergeError::Empty);
    }
    for (index, backend) in backends.iter().enumerate() {
        let earlier = &backends[..index];
        if earlier.iter().any(|b| b.name == backend.name) {
            return Err(MergeError::DuplicateName(backend.name.clone()));
        }
        if earlier.iter().any(|b| b.address == backend.address) {
            return Err(MergeError::DuplicateAddress(backend.address));
        }
    }
    let mut config = config.clone();
    let flat = pool == pools::DEFAULT_POOL && config.discovery.is_some();
    let others = (config.pools.iter())
        .filter(|p| flat || p.name != pool)
        .flat_map(|p| p.backends.iter())
        .chain(config.backends.iter().filter(|_| !flat));
    let taken: std::collections::HashSet<&str> = others.map(|b| b.name.as_str()).collect();
    if let Some(clash) = backends.iter().find(|b| taken.contains(b.name.as_str())) {
        return Err(MergeError::DuplicateName(clash.name.clone()));
    }
    if flat {
        config.backends = backends;
        return Ok(config);
    }
    match (config.pools.iter_mut()).find(|p| p.name == pool && p.discovery.is_some()) {
        Some(target) => target.backends = backends,
        None => return Err(MergeError::NotDiscovered(pool.to_owned())),
    }
    Ok(config)
}

/// `config` with each discovering pool's backends taken from `sets` (by pool name) where it
/// has one: what a file reload applies, so that re-reading the file does not empty a pool
/// whose backends come from elsewhere. A set that no longer fits (a name now taken by a
/// written backend) is left out, and the pool waits for its source's next answer.
pub fn keep_discovered<'s>(
    mut config: Config,
    sets: impl IntoIterator<Item = (&'s str, &'s [BackendConfig])>,
) -> Config {
    for (pool, set) in sets {
        if let Ok(merged) = merge(&config, pool, set.to_vec()) {
            config = merged;
        }
    }
    config
}

/// The backends under an etcd key prefix: one per key, in key order, each parsed from its
/// value ([`crate::config::parse_backend_entry`]). A key whose new value is invalid keeps the
/// backend it had (a source that fails keeps the last good set, key by key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyedSet {
    entries: BTreeMap<Vec<u8>, BackendConfig>,
}

impl KeyedSet {
    /// `key` now holds `value`.
    ///
    /// # Errors
    ///
    /// When the value does not describe a backend; the key keeps its previous backend, if any.
    pub fn put(
        &mut self,
        pool: &PoolConfig,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), crate::config::ConfigErrors> {
        let origin = format!("etcd key {}", String::from_utf8_lossy(key));
        let mut backend = crate::config::parse_backend_entry(value, &origin, pool)?;
        backend.name = named(&pool.name, &backend.name);
        self.entries.insert(key.to_vec(), backend);
        Ok(())
    }

    /// `key` was deleted.
    pub fn delete(&mut self, key: &[u8]) {
        self.entries.remove(key);
    }

    /// Keeps only the keys `listed` (after a new listing has been `put`): keys deleted while
    /// the watch was away leave, and a listed key whose value is invalid keeps its backend.
    pub fn retain_listed<'k>(&mut self, listed: impl IntoIterator<Item = &'k [u8]>) {
        let listed: std::collections::HashSet<&[u8]> = listed.into_iter().collect();
        self.entries.retain(|key, _| listed.contains(&key[..]));
    }

    /// The backends, in key order.
    pub fn backends(&self) -> Vec<BackendConfig> {
        self.entries.values().cloned().collect()
    }
}

/// How a watch of an etcd prefix ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// The server cancelled it because the revision it asked for was compacted.
    Compacted,
    /// The stream closed or failed (the server restarted, the connection dropped, the watch
    /// stayed silent past its keepalive).
    Closed,
}

/// What to do after a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Watch again from this revision: no change is missed.
    WatchFrom(i64),
    /// List the whole prefix again, then watch from after the listing's revision: the changes
    /// since the last revision seen are gone from the server's history.
    Relist,
}

/// What follows a watch that ended as `end`, having seen every change up to `last_revision`
/// (0 when nothing was ever listed).
pub fn resume(end: WatchEnd, last_revision: i64) -> Resume {
    match end {
        WatchEnd::Closed if last_revision > 0 => Resume::WatchFrom(last_revision + 1),
        _ => Resume::Relist,
    }
}

#[cfg(test)]
mod tests;
