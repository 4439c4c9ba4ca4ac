//! `rate_limits` and `redis`: named limits that routes name, each one budget however many
//! routes use it, kept in the balancer's memory or in a Redis server shared by a fleet.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::duration;
use super::node::{Node, Spanned};
use super::pools::named_entries;
use super::walk::{Problem, Section, Walker, duration, int, text};

/// Default of [`RateLimitConfig::max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// What a limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// The client's address, after the `server.trusted_proxies` rules.
    Client,
    /// The value of a request header (such as an API key); a request without it is counted by
    /// its client address, so leaving the header out escapes nothing.
    Header(String),
    /// Every request of every route that names the limit: one budget for all.
    Global,
}

impl Serialize for LimitKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            LimitKey::Client => serializer.serialize_str("client"),
            LimitKey::Global => serializer.serialize_str("global"),
            LimitKey::Header(name) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("header", name)?;
                map.end()
            }
        }
    }
}

/// Where a limit's counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    /// In this balancer's memory, exact across its worker threads.
    Local,
    /// In the `redis` server, so that every balancer using it enforces one limit together.
    Redis,
}

/// One named limit: `requests` per `per`, in bursts of at most `burst` (GCRA).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitConfig {
    /// The name routes use; also the `limit` label of its metrics.
    #[serde(skip)]
    pub name: String,
    /// Requests allowed per period.
    pub requests: u32,
    /// The period.
    #[serde(serialize_with = "duration::serialize")]
    pub per: Duration,
    /// Requests allowed at once after a quiet spell; defaults to `requests`.
    pub burst: u32,
    /// What requests are counted by.
    pub key: LimitKey,
    /// Where the counters live.
    pub shared: Sharing,
    /// Keys held in memory at most; the idle ones are evicted first (a key whose budget is
    /// full again holds nothing worth keeping).
    pub max_keys: usize,
}

/// What a balancer does while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    /// Each balancer enforces the limit on its own (the default).
    Local,
    /// Every request is allowed (fail open).
    Allow,
    /// Every request is refused with 429 (fail closed).
    Deny,
}

/// `redis`: the server that `shared: redis` limits use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// The most a decision waits for Redis before `on_error` applies.
    #[serde(serialize_with = "duration::serialize")]
    pub timeout: Duration,
    /// What happens while Redis is unreachable.
    pub on_error: OnRedisError,
    /// Prefix of every key the balancer writes.
    pub key_prefix: String,
}

/// Writes `rate_limits` as a mapping from name to limit.
pub(crate) fn serialize<S: Serializer>(
    limits: &[RateLimitConfig],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(limits.len()))?;
    for limit in limits {
        map.serialize_entry(&limit.name, limit)?;
    }
    map.end()
}

const FIELDS: [&str; 6] = ["requests", "per", "burst", "key", "shared", "max_keys"];

/// `rate_limits`.
pub(crate) fn read(w: &mut Walker<'_>, top: &Section<'_>) -> Vec<RateLimitConfig> {
    let mut out = Vec::new();
    for (name, pos, node) in named_entries(w, top.get("rate_limits"), "rate_limits", "rate limit") {
        let path = format!("rate_limits.{name}");
        let s = w.section(Some(node), &path, &FIELDS);
        let requests = w.get(&s, "requests", 0u32, int(1));
        if requests.pos.is_none() && requests.ok {
            let problem =
                Problem::new("missing required field").hint("like requests: 5 and per: 1s");
            w.report(node.pos.or(pos), &s.field("requests"), problem);
        }
        let per = w
            .get(&s, "per", Duration::from_secs(1), duration(true))
            .value;
        let burst = w.get(&s, "burst", requests.value, int(1)).value;
        let key = w.get(&s, "key", LimitKey::Client, limit_key).value;
        let shared = w.get(&s, "shared", Sharing::Local, |n| match n {
            Node::Str(s) if s == "local" => Ok(Sharing::Local),
            Node::Str(s) if s == "redis" => Ok(Sharing::Redis),
            other => Err(Problem::new(format!(
                "expected local or redis, found {}",
                describe(other)
            ))),
        });
        if shared.value == Sharing::Redis && top.get("redis").is_none() {
            let problem = Problem::new("a limit shared through Redis needs the `redis` section")
                .hint("add redis: {url: \"redis://127.0.0.1:6379\"}");
            w.report(shared.pos, &s.field("shared"), problem);
        }
        let max_keys = w.get(&s, "max_keys", DEFAULT_MAX_KEYS, int(1)).value;
        out.push(RateLimitConfig {
            name,
            requests: requests.value.max(1),
            per,
            burst,
            key,
            shared: shared.value,
            max_keys,
        });
    }
    out
}

fn describe(node: &Node) -> String {
    match node {
        Node::Str(s) => format!("\"{s}\""),
        other => other.kind().to_owned(),
    }
}

fn limit_key(node: &Node) -> Result<LimitKey, Problem> {
    match node {
        Node::Str(s) if s == "client" => Ok(LimitKey::Client),
        Node::Str(s) if s == "global" => Ok(LimitKey::Global),
        Node::Map(entries) if entries.len() == 1 => {
            let (key, value) = &entries[0];
            match (&key.node, &value.node) {
                (Node::Str(k), Node::Str(name)) if k == "header" && !name.is_empty() => {
                    Ok(LimitKey::Header(name.to_ascii_lowercase()))
                }
                _ => {
                    Err(Problem::new("expected {header: NAME}")
                        .hint("like key: {header: x-api-key}"))
                }
            }
        }
        other => Err(Problem::new(format!("unknown key {}", describe(other)))
            .hint("use client, global or {header: x-api-key}")),
    }
}

/// `redis`.
pub(crate) fn redis(w: &mut Walker<'_>, top: &Section<'_>) -> Option<RedisConfig> {
    let node: &Spanned = top.get("redis")?;
    let s = w.section(
        Some(node),
        "redis",
        &["url", "timeout", "on_error", "key_prefix"],
    );
    let url = w.get(&s, "url", String::new(), |n| {
        let url = text(n)?;
        match url.starts_with("redis://") || url.starts_with("rediss://") {
            true => Ok(url),
            false => Err(Problem::new(format!("\"{url}\" is not a Redis URL"))
                .hint("like redis://127.0.0.1:6379")),
        }
    });
    if url.pos.is_none() {
        let problem = Problem::new("missing required field").hint("like redis://127.0.0.1:6379");
        w.report(node.pos, "redis.url", problem);
    }
    let timeout = w
        .get(&s, "timeout", Duration::from_millis(50), duration(true))
        .value;
    let on_error = w.get(&s, "on_error", OnRedisError::Local, |n| match n {
        Node::Str(s) if s == "local" => Ok(OnRedisError::Local),
        Node::Str(s) if s == "allow" => Ok(OnRedisError::Allow),
        Node::Str(s) if s == "deny" => Ok(OnRedisError::Deny),
        other => Err(Problem::new(format!("unknown action {}", describe(other)))
            .hint("use local, allow or deny")),
    });
    let key_prefix = w.get(&s, "key_prefix", "lb:".to_owned(), text).value;
    Some(RedisConfig {
        url: url.value,
        timeout,
        on_error: on_error.value,
        key_prefix,
    })
}
