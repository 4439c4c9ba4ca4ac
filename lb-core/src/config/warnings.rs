//! Settings that are valid but likely wrong, found in a validated [`Config`].
//!
//! Validation refuses what cannot work; these checks flag what works badly: a probe timeout
//! eating most of the interval, weights the algorithm ignores, a metrics endpoint open to the
//! network. They are pure functions of the [`Config`], so the daemon could log them at start
//! and `lb-cli check` prints them (failing only with `--strict`), in the spirit of a
//! compiler's warnings next to its errors.
//!
//! A validated `Config` has no positions any more; [`locate`] finds a field's line and
//! column by reading the source again into the positioned tree of stage one.

use std::fmt;

use super::node::{self, Node, Pos};
use super::{Config, Format, PoolConfig, format_duration};
use crate::balance::Algorithm;

/// One setting that is valid but probably not what was meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The field path to point at, like `health_check.timeout` or `backends[1].weight`.
    pub field: String,
    /// Other fields involved, in the order worth pointing at when `field` is not in the file
    /// (it may hold its default).
    pub related: Vec<String>,
    /// What is likely wrong, in one plain sentence.
    pub message: String,
    /// How to fix it, when we can guess.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// A single backend carrying more than this share of the total weight starves the others.
const DOMINANT_WEIGHT_SHARE: f64 = 0.9;

/// Every warning for `config`, in the order of the sections in the reference file.
///
/// # Example
///
/// ```
/// use lb_core::config::{parse, warnings, Format};
///
/// let text = "backends:\n  - address: 127.0.0.1:8001\nmetrics:\n  listen: 0.0.0.0:9090\n";
/// let config = parse(text, Format::Yaml, "lb.yaml").unwrap();
/// let found: Vec<String> = warnings(&config).iter().map(|w| w.field.clone()).collect();
/// assert_eq!(found, ["retry.max_attempts", "metrics.listen"]);
/// ```
pub fn warnings(config: &Config) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    server(config, &mut out);
    for pool in config.pool_list() {
        // The flat form's pool is the top level; a written pool is under `pools.NAME.`.
        let prefix = match config.pools.iter().any(|p| p.name == pool.name) {
            true => format!("pools.{}.", pool.name),
            false => String::new(),
        };
        weights(&prefix, &pool, &mut out);
        failure_detection(&prefix, &pool, &mut out);
        retry(&prefix, &pool, &mut out);
        etcd_password(&prefix, &pool, &mut out);
    }
    metrics(config, &mut out);
    admin(config, &mut out);
    super::route_warnings::routes(config, &mut out);
    super::trace::warnings(&config.tracing, &config.server, &mut out);
    out
}

pub(crate) fn warning(field: &str, related: &[&str], message: String, hint: &str) -> ConfigWarning {
    ConfigWarning {
        field: field.to_owned(),
        related: related.iter().map(|r| (*r).to_owned()).collect(),
        message,
        hint: Some(hint.to_owned()),
    }
}

fn server(config: &Config, out: &mut Vec<ConfigWarning>) {
    let s = &config.server;
    if s.idle_timeout < s.request_timeout {
        out.push(warning(
            "server.idle_timeout",
            &["server.request_timeout"],
            format!(
                "is shorter than request_timeout ({} < {}): keep-alive connections are closed \
                 sooner than a request is allowed to take",
                format_duration(s.idle_timeout),
                format_duration(s.request_timeout)
            ),
            "make idle_timeout at least as long as request_timeout",
        ));
    }
    if let Some(tls) = &s.tls
        && !tls.alpn.contains(&super::Alpn::Http11)
    {
        out.push(warning(
            "server.tls.alpn",
            &[],
            "offers no http/1.1: clients that offer only HTTP/1.1 by ALPN (curl --http1.1, \
             many libraries, health checkers) fail their handshake"
                .to_owned(),
            "list http/1.1 after h2: [h2, http/1.1]",
        ));
    }
    http2(s, out);
}

/// Streams per HTTP/2 connection past which a client's one connection holds more backend
/// requests than any edge guidance allows for: ten times Envoy's 100 (nginx has 128).
const MANY_STREAMS: u32 = 1_000;

/// `server.http2`, where the listener offers HTTP/2 (`h2c`, or `h2` by ALPN).
fn http2(s: &super::ServerConfig, out: &mut Vec<ConfigWarning>) {
    let offered = s.h2c || (s.tls.as_ref()).is_some_and(|tls| tls.alpn.contains(&super::Alpn::H2));
    if !offered {
        return;
    }
    let h = &s.http2;
    if h.initial_stream_window_bytes > h.initial_connection_window_bytes {
        out.push(warning(
            "server.http2.initial_stream_window_bytes",
            &["server.http2.initial_connection_window_bytes"],
            format!(
                "is larger than initial_connection_window_bytes ({} > {}): a stream can never \
                 have more than its connection's window, so an upload is slowed to that",
                h.initial_stream_window_bytes, h.initial_connection_window_bytes
            ),
            "keep the connection's window at least the stream's (the defaults are 64 KiB and 1 MiB)",
        ));
    }
    if h.max_concurrent_streams > MANY_STREAMS {
        out.push(warning(
            "server.http2.max_concurrent_streams",
            &[],
            format!(
                "lets one client connection have {} requests at the backends at once, \
                 more than {MANY_STREAMS}: a few clients can hold every backend's \
                 max_connections",
                h.max_concurrent_streams
            ),
            "keep it near 100 (Envoy's edge default; nginx uses 128) unless every client is your own",
        ));
    }
}

/// Whether the algorithm reads `weight`: `Some(true)` for the weighted ones, `Some(false)`
/// for those documented as ignoring it, `None` where the weight's role is the
/// implementation's business (consistent hashing, power of two choices).
fn uses_weights(algorithm: Algorithm) -> Option<bool> {
    match algorithm {
        Algorithm::WeightedRoundRobin | Algorithm::WeightedRandom | Algorithm::LeastConnections => {
            Some(true)
        }
        Algorithm::RoundRobin | Algorithm::Random => Some(false),
        Algorithm::IpHash | Algorithm::P2c => None,
    }
}

/// The algorithm that does what `algorithm` does with equal weights, when it has another name.
fn unweighted_twin(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::WeightedRoundRobin => Some("round_robin"),
        Algorithm::WeightedRandom => Some("random"),
        _ => None,
    }
}

fn weights(prefix: &str, pool: &PoolConfig, out: &mut Vec<ConfigWarning>) {
    let backends = &pool.backends;
    if backends.len() < 2 {
        return;
    }
    let algorithm = pool.load_balancer.algorithm;
    let first = backends[0].weight;
    let unequal = backends.iter().position(|b| b.weight != first);
    match (uses_weights(algorithm), unequal) {
        // least_connections with equal weights is plain least connections, which has no
        // other name: only the weighted twins of round_robin and random are worth a word.
        (Some(true), None) if unweighted_twin(algorithm).is_some() => out.push(warning(
            &format!("{prefix}load_balancer.algorithm"),
            &[],
            format!(
                "{} is weighted but every backend has weight {first}, so the weights have no effect",
                algorithm.as_str()
            ),
            &format!(
                "give backends different weights, or use {}",
                unweighted_twin(algorithm).unwrap_or_default()
            ),
        )),
        (Some(true), Some(_)) => {
            let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
            let heaviest = backends
                .iter()
                .enumerate()
                .max_by_key(|(_, b)| b.weight)
                .map(|(i, b)| (i, b.weight));
            if let Some((index, weight)) = heaviest {
                let share = f64::from(weight) / total as f64;
                if share > DOMINANT_WEIGHT_SHARE {
                    out.push(warning(
                        &format!("{prefix}backends[{index}].weight"),
                        &[&format!("{prefix}load_balancer.algorithm")],
                        format!(
                            "backend \"{}\" carries {:.0}% of the total weight ({weight} of \
                             {total}); the others get almost no traffic",
                            backends[index].name,
                            share * 100.0
                        ),
                        "balance the weights, or remove the backends meant to stay idle",
                    ));
                }
            }
        }
        (Some(false), Some(differs)) => {
            // Point at a weight someone wrote: the first that is not the default of 1.
            let index = backends.iter().position(|b| b.weight != 1).unwrap_or(differs);
            out.push(warning(
            &format!("{prefix}backends[{index}].weight"),
            &[&format!("{prefix}load_balancer.algorithm")],
            format!(
                "backends have different weights but {} ignores them",
                algorithm.as_str()
            ),
            "use weighted_round_robin or weighted_random, or drop the weights",
        ));
        }
        _ => {}
    }
}

fn failure_detection(prefix: &str, pool: &PoolConfig, out: &mut Vec<ConfigWarning>) {
    let health = &pool.health_check;
    if health.enabled && health.timeout * 2 > health.interval {
        out.push(warning(
            &format!("{prefix}health_check.timeout"),
            &[&format!("{prefix}health_check.interval")],
            format!(
                "is more than half of interval ({} of {}): a slow backend is probed almost \
                 continuously",
                format_duration(health.timeout),
                format_duration(health.interval)
            ),
            "keep timeout at most half of interval",
        ));
    }
    if !health.enabled && !pool.circuit_breaker.enabled {
        out.push(warning(
            &format!("{prefix}health_check.enabled"),
            &[&format!("{prefix}circuit_breaker.enabled")],
            "health checks and the circuit breaker are both disabled: a failing backend keeps \
             receiving traffic"
                .to_owned(),
            "enable at least one of them",
        ));
    }
}

fn retry(prefix: &str, pool: &PoolConfig, out: &mut Vec<ConfigWarning>) {
    let http2 = pool.upstream.protocol.is_http2()
        || (pool.backends.iter()).any(|backend| backend.protocol.is_http2());
    if pool.retry.grpc_statuses() != 0 && !http2 {
        out.push(warning(
            &format!("{prefix}retry.retry_on"),
            &[&format!("{prefix}upstream.protocol")],
            "retry_on lists gRPC statuses, but no backend of the pool speaks HTTP/2: gRPC \
             calls need it end to end, and these statuses never apply"
                .to_owned(),
            "set `protocol: h2c` (or h2 with tls) for the pool's gRPC backends",
        ));
    }
    if pool.discovery.is_some() {
        // How many backends a discovered pool will have is not known here.
        return;
    }
    let attempts = pool.retry.policy.max_attempts();
    let backends = pool.backends.len();
    if attempts > 1 && usize::try_from(attempts).is_ok_and(|a| a > backends) {
        out.push(warning(
            &format!("{prefix}retry.max_attempts"),
            &[],
            format!(
                "{attempts} attempts for {backends} backend{}: retries go to a backend not yet \
                 tried, so the last attempts repeat one that already failed",
                if backends == 1 { "" } else { "s" }
            ),
            "keep max_attempts at most the number of backends",
        ));
    }
}

/// etcd's `Authenticate` carries the password itself: over plain HTTP/2 anyone on the path
/// reads it.
fn etcd_password(prefix: &str, pool: &PoolConfig, out: &mut Vec<ConfigWarning>) {
    let Some(discovery) = &pool.discovery else {
        return;
    };
    if let super::DiscoverySource::Etcd(etcd) = &discovery.source
        && etcd.auth.is_some()
        && etcd.tls.is_none()
    {
        out.push(warning(
            &format!("{prefix}discovery.etcd.username"),
            &[&format!("{prefix}discovery.etcd")],
            "the etcd password is sent over plain HTTP/2: anyone on the path can read it"
                .to_owned(),
            "reach etcd over TLS (discovery.etcd.tls), or authenticate by client certificate",
        ));
    }
}

fn metrics(config: &Config, out: &mut Vec<ConfigWarning>) {
    let metrics = &config.metrics;
    if metrics.enabled && metrics.listen.ip().is_unspecified() {
        out.push(warning(
            "metrics.listen",
            &[],
            format!(
                "{} is open to the network: anyone who can reach the host can read the metrics",
                metrics.listen
            ),
            "listen on 127.0.0.1 or a private address",
        ));
    }
}

fn admin(config: &Config, out: &mut Vec<ConfigWarning>) {
    let admin = &config.admin;
    if admin.enabled && admin.token.is_none() {
        out.push(warning(
            "admin.listen",
            &["admin"],
            format!(
                "the admin API on {} takes no token: anyone on this machine can drain \
                 backends or reload the configuration",
                admin.listen
            ),
            "set admin.token_file or admin.token_env",
        ));
    }
}

/// The line and column where `field` (a path like `server.listen` or `backends[1].weight`)
/// is written in `source`: the value of a scalar entry, the key of a section or list, the
/// start of a list item.
///
/// `None` when the source does not parse, the field is not written (it holds its default),
/// or the path is malformed.
pub fn locate(source: &str, format: Format, field: &str) -> Option<(u32, u32)> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let root = node::load(source, format, "").ok()?;
    let mut current = &root;
    let mut pos: Pos = None;
    for step in steps(field)? {
        let (found_pos, found) = match (step, &current.node) {
            (Step::Key(key), Node::Map(entries)) => entries
                .iter()
                .find(|(k, _)| matches!(&k.node, Node::Str(s) if s == key))
                // A scalar is pointed at where its value is written, as validation errors
                // are; a section or list at its key.
                .map(|(k, v)| match v.node {
                    Node::Map(_) | Node::Seq(_) => (k.pos, v),
                    _ => (v.pos.or(k.pos), v),
                })?,
            (Step::Index(index), Node::Seq(items)) => {
                items.get(index).map(|item| (item.pos, item))?
            }
            _ => return None,
        };
        pos = found_pos;
        current = found;
    }
    pos
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `a.b[2].c` into its steps; `None` for an empty or malformed path.
fn steps(field: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in field.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if key.is_empty() {
            return None;
        }
        out.push(Step::Key(key));
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            out.push(Step::Index(inner[..end].parse().ok()?));
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn fields(text: &str) -> Vec<String> {
        let config = parse(text, Format::Yaml, "lb.yaml").expect("valid fixture");
        warnings(&config).into_iter().map(|w| w.field).collect()
    }

    const TWO: &str = "backends:\n  - address: 127.0.0.1:8001\n  - address: 127.0.0.1:8002\n";

    #[test]
    fn each_rule_fires_on_its_case_only() {
        let cases: [(&str, &[&str]); 18] = [
            ("retry:\n  max_attempts: 2\n", &[]),
            (
                "retry:\n  max_attempts: 2\n  retry_on: [connect_error, grpc_unavailable]\n",
                &["retry.retry_on"],
            ),
            (
                "retry:\n  max_attempts: 2\n  retry_on: [grpc_unavailable]\nupstream:\n  protocol: h2c\n",
                &[],
            ),
            ("retry:\n  max_attempts: 3\n", &["retry.max_attempts"]),
            (
                "retry:\n  max_attempts: 2\nhealth_check:\n  interval: 2s\n  timeout: 1500ms\n",
                &["health_check.timeout"],
            ),
            (
                "retry:\n  max_attempts: 2\nserver:\n  request_timeout: 90s\n",
                &["server.idle_timeout"],
            ),
            (
                "retry:\n  max_attempts: 2\nmetrics:\n  listen: \"[::]:9090\"\n",
                &["metrics.listen"],
            ),
            (
                "retry:\n  max_attempts: 2\nmetrics:\n  enabled: false\n  listen: 0.0.0.0:9090\n",
                &[],
            ),
            (
                "retry:\n  max_attempts: 2\nhealth_check:\n  enabled: false\n\
                 circuit_breaker:\n  enabled: false\n",
                &["health_check.enabled"],
            ),
            (
                "retry:\n  max_attempts: 2\nload_balancer:\n  algorithm: weighted_random\n",
                &["load_balancer.algorithm"],
            ),
            (
                "retry:\n  max_attempts: 2\nload_balancer:\n  algorithm: least_connections\n",
                &[],
            ),
            (
                "retry:\n  max_attempts: 1\nhealth_check:\n  enabled: false\n",
                &[],
            ),
            (
                "retry:\n  max_attempts: 2\nserver:\n  tls:\n    certificates: [{cert: a, key: b}]\n    \
                 alpn: [h2]\n",
                &["server.tls.alpn"],
            ),
            (
                "retry:\n  max_attempts: 2\nserver:\n  tls:\n    certificates: [{cert: a, key: b}]\n    \
                 alpn: [http/1.1, h2]\n",
                &[],
            ),
            (
                "retry:\n  max_attempts: 2\nserver:\n  h2c: true\n  http2:\n    \
                 initial_stream_window_bytes: 2000000\n    max_concurrent_streams: 1001\n",
                &[
                    "server.http2.initial_stream_window_bytes",
                    "server.http2.max_concurrent_streams",
                ],
            ),
            (
                "retry:\n  max_attempts: 2\nserver:\n  h2c: true\n  http2:\n    \
                 initial_stream_window_bytes: 1048576\n    max_concurrent_streams: 1000\n",
                &[],
            ),
            // Without HTTP/2 on the listener its limits are not judged.
            (
                "retry:\n  max_attempts: 2\nserver:\n  http2:\n    \
                 initial_stream_window_bytes: 2000000\n    max_concurrent_streams: 5000\n",
                &[],
            ),
            (
                "retry:\n  max_attempts: 2\nserver:\n  tls:\n    certificates: [{cert: a, key: b}]\n  \
                 http2:\n    max_concurrent_streams: 5000\n",
                &["server.http2.max_concurrent_streams"],
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(fields(&format!("{TWO}{extra}")), want, "for {extra}");
        }
    }

    #[test]
    fn an_etcd_password_over_plain_http_is_warned_about() {
        let plain = "discovery:\n  etcd: {endpoints: ['e:1'], prefix: /a/, username: lb, password_file: p}\n";
        assert_eq!(fields(plain), ["discovery.etcd.username"]);
        assert!(fields(&plain.replace("'e:1'", "'https://e:1'")).is_empty());
        assert!(fields(&plain.replace(", username: lb, password_file: p", "")).is_empty());
        let found = warnings(&parse(plain, Format::Yaml, "lb.yaml").unwrap());
        assert_eq!(locate(plain, Format::Yaml, &found[0].field), Some((2, 53)));
    }

    #[test]
    fn weights_against_algorithm() {
        let weighted = "load_balancer:\n  algorithm: weighted_round_robin\nretry:\n  max_attempts: 2\nbackends:\n  - address: 127.0.0.1:8001\n    weight: 20\n  - address: 127.0.0.1:8002\n";
        assert_eq!(fields(weighted), ["backends[0].weight"]);
        let balanced = weighted.replace("weight: 20", "weight: 3");
        assert!(fields(&balanced).is_empty());
        let ignored = balanced.replace("weighted_round_robin", "round_robin");
        assert_eq!(fields(&ignored), ["backends[0].weight"]);
        // Hashing and p2c are not judged either way.
        assert!(fields(&weighted.replace("weighted_round_robin", "p2c")).is_empty());
    }

    #[test]
    fn locate_finds_keys_and_items() {
        let text = "server:\n  listen: 0.0.0.0:80\nbackends:\n  - address: 127.0.0.1:8001\n  - address: 127.0.0.1:8002\n    weight: 4\n";
        assert_eq!(locate(text, Format::Yaml, "server.listen"), Some((2, 11)));
        assert_eq!(locate(text, Format::Yaml, "server"), Some((1, 1)));
        assert_eq!(locate(text, Format::Yaml, "backends[1]"), Some((5, 5)));
        assert_eq!(
            locate(text, Format::Yaml, "backends[1].weight"),
            Some((6, 13))
        );
        assert_eq!(locate(text, Format::Yaml, "backends[0].weight"), None);
        assert_eq!(locate(text, Format::Yaml, "backends[9]"), None);
        assert_eq!(locate(text, Format::Yaml, "server..listen"), None);
        assert_eq!(locate(text, Format::Yaml, "backends[x]"), None);
        assert_eq!(locate("{", Format::Json, "server"), None);
        let json = "{\n  \"metrics\": {\"listen\": \"0.0.0.0:9\"}\n}\n";
        assert_eq!(locate(json, Format::Json, "metrics.listen"), Some((2, 25)));
    }
}
