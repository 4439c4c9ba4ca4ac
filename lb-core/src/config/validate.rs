//! Stage two: walk the positioned tree, apply defaults, check every rule, collect every problem.

use std::net::SocketAddr;

use super::duration::format_duration;
use super::error::{ConfigErrors, closest};
use super::model::{
    BackendConfig, CircuitBreakerConfig, Config, DEFAULT_MAX_CONNECTIONS, HealthCheckConfig,
    LoadBalancerConfig, MAX_REPLAY_BUFFER_BYTES, MIN_MAX_HEADER_BYTES, MetricsConfig, RetryConfig,
    ServerConfig, UpstreamConfig,
};
use super::node::{Node, Pos, Spanned};
use super::tls;
use super::upstream_http2;
use super::walk::{
    Got, Problem, Section, Walker, address, boolean, cidr, duration, int, ratio, retry_condition,
    status_range, text, url_path,
};
use crate::balance::Algorithm;
use crate::breaker::BreakerPolicy;
use crate::health::HealthPolicy;
use crate::net::Cidr;
use crate::retry::{BudgetPolicy, RetryPolicy};

const SECTIONS: [&str; 21] = [
    "server",
    "upstream",
    "load_balancer",
    "backends",
    "discovery",
    "health_check",
    "circuit_breaker",
    "retry",
    "metrics",
    "admin",
    "reload",
    // Routes and pools (routing.rs and the files it names).
    "path_normalization",
    "queue",
    "pools",
    "routes",
    "rate_limits",
    "redis",
    "auth",
    // What is told about each request (observe.rs).
    "access_log",
    "request_id",
    // Distributed tracing (trace.rs).
    "tracing",
];

/// The fields of `load_balancer`.
const LOAD_BALANCER_FIELDS: [&str; 3] = ["algorithm", "hash_balance_factor", "slow_start"];

/// Builds the validated configuration from the tree, or every problem found in it.
pub(crate) fn build(root: &Spanned, file: &str) -> Result<Config, ConfigErrors> {
    let mut w = Walker::new(file);
    if matches!(root.node, Node::Null) {
        w.report(
            None,
            "",
            Problem::new("the configuration is empty").hint("it needs at least a `backends` list"),
        );
        return Err(ConfigErrors(w.errors));
    }
    if !matches!(root.node, Node::Map(_)) {
        let problem = Problem::new(format!(
            "expected a mapping of sections, found {}",
            root.node.kind()
        ))
        .hint("start with `backends:`");
        w.report(root.pos, "", problem);
        return Err(ConfigErrors(w.errors));
    }
    let top = w.section(Some(root), "", &SECTIONS);
    let (server, server_listen, redirect_pos) = server(&mut w, &top);
    let upstream = upstream(&mut w, top.get("upstream"), "upstream", Default::default());
    let load_balancer = load_balancer(
        &mut w,
        top.get("load_balancer"),
        "load_balancer",
        Default::default(),
    );
    let flat = top.get("pools").is_none() && top.get("discovery").is_none();
    let backends = backends(
        &mut w,
        top.get("backends"),
        "backends",
        top.pos,
        flat,
        &upstream,
    );
    let discovery = super::discovery::read(&mut w, top.get("discovery"), "discovery");
    super::discovery::exclusive(&mut w, &top, "backends", "discovery");
    let health_check = health_check(
        &mut w,
        top.get("health_check"),
        "health_check",
        Default::default(),
    );
    let circuit_breaker = circuit_breaker(
        &mut w,
        top.get("circuit_breaker"),
        "circuit_breaker",
        Default::default(),
    );
    let retry = retry(&mut w, top.get("retry"), "retry", Default::default());
    let metrics = metrics(&mut w, &top, &server_listen);
    let metrics_listen = Got {
        value: metrics.listen,
        pos: None,
        ok: metrics.enabled,
    };
    let redirect_listen = Got {
        value: (server.http_redirect.as_ref()).map_or(server.listen, |redirect| redirect.listen),
        pos: None,
        ok: server.http_redirect.is_some(),
    };
    let listeners = [
        ("server.listen", &server_listen),
        ("metrics.listen", &metrics_listen),
        ("server.http_redirect.listen", &redirect_listen),
    ];
    let admin = super::operate::admin(&mut w, &top, &listeners);
    let reload = super::operate::reload(&mut w, &top);
    let access_log = super::observe::access_log(&mut w, &top);
    let request_id = super::observe::request_id(&mut w, &top);
    let tracing = super::trace::tracing(&mut w, &top);
    tls::check_listeners(&mut w, &server, redirect_pos, &server_listen, &metrics);
    let mut config = Config {
        server,
        upstream,
        load_balancer,
        backends,
        discovery,
        health_check,
        circuit_breaker,
        retry,
        metrics,
        admin,
        reload,
        access_log,
        request_id,
        tracing,
        ..Config::with_backends(Vec::new())
    };
    super::routing::read(&mut w, &top, &mut config);
    if w.errors.is_empty() {
        return Ok(config);
    }
    let mut errors = ConfigErrors(w.errors);
    errors.sort();
    Err(errors)
}

fn server(w: &mut Walker<'_>, top: &Section<'_>) -> (ServerConfig, Got<SocketAddr>, Pos) {
    const FIELDS: [&str; 18] = [
        "listen",
        "workers",
        "max_client_connections",
        "header_read_timeout",
        "request_timeout",
        "idle_timeout",
        "idle_release_after",
        "max_request_body_bytes",
        "shutdown_grace",
        "upgrade_idle_timeout",
        "http2",
        "max_header_bytes",
        "max_uri_bytes",
        "trusted_proxies",
        "h2c",
        "tls",
        "proxy_protocol",
        "http_redirect",
    ];
    let d = ServerConfig::default();
    let s = w.section(top.get("server"), "server", &FIELDS);
    let listen = w.get(&s, "listen", d.listen, address);
    let config = ServerConfig {
        listen: listen.value,
        workers: w.get(&s, "workers", d.workers, int(0)).value,
        max_client_connections: w
            .get(
                &s,
                "max_client_connections",
                d.max_client_connections,
                int(1),
            )
            .value,
        header_read_timeout: w
            .get(
                &s,
                "header_read_timeout",
                d.header_read_timeout,
                duration(true),
            )
            .value,
        request_timeout: w
            .get(&s, "request_timeout", d.request_timeout, duration(true))
            .value,
        idle_timeout: w
            .get(&s, "idle_timeout", d.idle_timeout, duration(true))
            .value,
        idle_release_after: w
            .get(
                &s,
                "idle_release_after",
                d.idle_release_after,
                duration(true),
            )
            .value,
        max_request_body_bytes: w
            .get(
                &s,
                "max_request_body_bytes",
                d.max_request_body_bytes,
                int(0),
            )
            .value,
        shutdown_grace: w
            .get(&s, "shutdown_grace", d.shutdown_grace, duration(false))
            .value,
        upgrade_idle_timeout: w
            .get(
                &s,
                "upgrade_idle_timeout",
                d.upgrade_idle_timeout,
                duration(true),
            )
            .value,
        http2: super::http2::http2(w, &s),
        max_header_bytes: w
            .get(
                &s,
                "max_header_bytes",
                d.max_header_bytes,
                int(MIN_MAX_HEADER_BYTES as i128),
            )
            .value,
        max_uri_bytes: w.get(&s, "max_uri_bytes", d.max_uri_bytes, int(1)).value,
        trusted_proxies: trusted_proxies(w, &s),
        h2c: w.get(&s, "h2c", d.h2c, boolean).value,
        tls: tls::server_tls(w, &s),
        proxy_protocol: Default::default(),
        http_redirect: None,
    };
    let proxy_protocol = tls::proxy_protocol(w, &s, &config.trusted_proxies);
    let redirect = tls::http_redirect(w, &s, listen.value);
    let (http_redirect, redirect_pos) = redirect.unzip();
    let config = ServerConfig {
        proxy_protocol,
        http_redirect,
        ..config
    };
    tls::check_h2c(w, &s, &config);
    super::http2::check_head_room(w, &s, &config);
    (config, listen, redirect_pos.flatten())
}

/// `server.trusted_proxies`: a list of CIDR ranges, each problem reported at its item.
fn trusted_proxies(w: &mut Walker<'_>, s: &Section<'_>) -> Vec<Cidr> {
    let field = s.field("trusted_proxies");
    match s.get("trusted_proxies") {
        None
        | Some(Spanned {
            node: Node::Null, ..
        }) => Vec::new(),
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => {
            let mut ranges = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match cidr(&item.node) {
                    Ok(range) if !ranges.contains(&range) => ranges.push(range),
                    Ok(_) => {}
                    Err(problem) => w.report(item.pos, &format!("{field}[{i}]"), problem),
                }
            }
            ranges
        }
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of CIDR ranges, found {}",
                other.node.kind()
            ))
            .hint("like [10.0.0.0/8, \"::1\"]");
            w.report(other.pos, &field, problem);
            Vec::new()
        }
    }
}

pub(crate) fn upstream(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    d: UpstreamConfig,
) -> UpstreamConfig {
    const FIELDS: [&str; 8] = [
        "connect_timeout",
        "pool_idle_timeout",
        "pool_max_idle_per_backend",
        "max_response_header_bytes",
        "tls",
        "proxy_protocol",
        "protocol",
        "http2",
    ];
    let s = w.section(node, path, &FIELDS);
    let tls = tls::upstream_tls(w, &s, d.tls.clone());
    let proxy_protocol = tls::send_proxy_protocol(w, &s, d.proxy_protocol);
    let protocol = upstream_http2::protocol(w, &s, d.protocol);
    // Checked here only when written here: an inherited default is checked where it lands.
    if protocol.pos.is_some() || s.get("tls").is_some() || s.get("proxy_protocol").is_some() {
        let proxied = !proxy_protocol.is_off();
        upstream_http2::check_transport(w, &s, &protocol, tls.is_some(), proxied);
    }
    UpstreamConfig {
        connect_timeout: w
            .get(&s, "connect_timeout", d.connect_timeout, duration(true))
            .value,
        pool_idle_timeout: w
            .get(
                &s,
                "pool_idle_timeout",
                d.pool_idle_timeout,
                duration(false),
            )
            .value,
        pool_max_idle_per_backend: w
            .get(
                &s,
                "pool_max_idle_per_backend",
                d.pool_max_idle_per_backend,
                int(0),
            )
            .value,
        max_response_header_bytes: w
            .get(
                &s,
                "max_response_header_bytes",
                d.max_response_header_bytes,
                int(1024),
            )
            .value,
        tls,
        proxy_protocol,
        protocol: protocol.value,
        http2: upstream_http2::upstream_http2(w, &s, d.http2),
    }
}

pub(crate) fn load_balancer(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    d: LoadBalancerConfig,
) -> LoadBalancerConfig {
    let s = w.section(node, path, &LOAD_BALANCER_FIELDS);
    let algorithm = w.get(&s, "algorithm", d.algorithm, |node| {
        let Node::Str(name) = node else {
            return Err(Problem::new(format!(
                "expected an algorithm name, found {}",
                node.kind()
            )));
        };
        let names = Algorithm::ALL.map(Algorithm::as_str);
        if let Some(found) = Algorithm::ALL.into_iter().find(|a| a.as_str() == name) {
            return Ok(found);
        }
        let problem = Problem::new(format!("unknown algorithm \"{name}\""));
        Err(match closest(name, &names) {
            Some(near) => problem.hint(format!("did you mean \"{near}\"?")),
            None => problem.hint(format!("expected one of: {}", names.join(", "))),
        })
    });
    let (hash_balance_factor, slow_start) = super::pools::balance_extras(w, &s, &d);
    LoadBalancerConfig {
        algorithm: algorithm.value,
        hash_balance_factor,
        slow_start,
    }
}

/// The list of backends at `node` (`path` names it); `required` when its absence is an error
/// (the flat form without pools); `at` is where to report a missing list; `upstream` gives
/// the TLS and PROXY settings a backend inherits.
pub(crate) fn backends(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    at: Pos,
    required: bool,
    upstream: &UpstreamConfig,
) -> Vec<BackendConfig> {
    const FIELDS: [&str; 7] = [
        "name",
        "address",
        "weight",
        "max_connections",
        "tls",
        "proxy_protocol",
        "protocol",
    ];
    let items = match node {
        None if !required => return Vec::new(),
        None => {
            let problem = Problem::new("missing required field")
                .hint("list at least one backend with its address");
            w.report(at, path, problem);
            return Vec::new();
        }
        Some(Spanned {
            node: Node::Seq(items),
            pos,
        }) => {
            if items.is_empty() {
                w.report(*pos, path, Problem::new("must list at least one backend"));
            }
            items
        }
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of backends, found {}",
                other.node.kind()
            ));
            w.report(other.pos, path, problem);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    // Where each accepted backend's name and address were written, for duplicate messages.
    let mut seen: Vec<(String, Pos, SocketAddr, Pos, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{path}[{i}]");
        if !matches!(item.node, Node::Map(_)) {
            w.report(
                item.pos,
                &path,
                Problem::new(format!(
                    "expected a backend mapping, found {}",
                    item.node.kind()
                )),
            );
            continue;
        }
        let s = w.section(Some(item), &path, &FIELDS);
        let Some(_) = s.get("address") else {
            w.report(
                item.pos,
                &s.field("address"),
                Problem::new("missing required field").hint("like 127.0.0.1:8001"),
            );
            continue;
        };
        let address = w.get(&s, "address", SocketAddr::from(([0, 0, 0, 0], 0)), address);
        let name = w.get(&s, "name", address.value.to_string(), text);
        let weight = w.get(&s, "weight", 1, int(1)).value;
        let max_connections = w
            .get(&s, "max_connections", DEFAULT_MAX_CONNECTIONS, int(1))
            .value;
        let tls = tls::upstream_tls(w, &s, upstream.tls.clone());
        let proxy_protocol = tls::send_proxy_protocol(w, &s, upstream.proxy_protocol);
        let protocol = upstream_http2::protocol(w, &s, upstream.protocol);
        let own = ["protocol", "tls", "proxy_protocol"];
        if own.iter().any(|field| s.get(field).is_some()) {
            let proxied = !proxy_protocol.is_off();
            upstream_http2::check_transport(w, &s, &protocol, tls.is_some(), proxied);
        }
        if !address.ok || !name.ok {
            continue;
        }
        let address_dup = seen.iter().find(|(_, _, a, _, _)| *a == address.value);
        if let Some((_, _, _, first_pos, first_path)) = address_dup {
            let message = format!(
                "duplicate address {}, already used by {first_path}{}",
                address.value,
                on_line(*first_pos)
            );
            w.report(address.pos, &s.field("address"), Problem::new(message));
        } else if let Some((_, first_pos, _, _, first_path)) =
            seen.iter().find(|(n, ..)| *n == name.value)
        {
            let message = format!(
                "duplicate name \"{}\", already used by {first_path}{}",
                name.value,
                on_line(*first_pos)
            );
            let (field, pos) = if name.pos.is_some() {
                ("name", name.pos)
            } else {
                ("address", address.pos)
            };
            w.report(
                pos,
                &s.field(field),
                Problem::new(message).hint("give each backend its own name"),
            );
        }
        let name_pos = name.pos.or(address.pos);
        seen.push((
            name.value.clone(),
            name_pos,
            address.value,
            address.pos,
            path,
        ));
        out.push(BackendConfig {
            name: name.value,
            address: address.value,
            weight,
            max_connections,
            tls,
            proxy_protocol,
            protocol: protocol.value,
        });
    }
    out
}

fn on_line(pos: Pos) -> String {
    pos.map(|(line, _)| format!(" on line {line}"))
        .unwrap_or_default()
}

pub(crate) fn health_check(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    d: HealthCheckConfig,
) -> HealthCheckConfig {
    const FIELDS: [&str; 7] = [
        "enabled",
        "path",
        "interval",
        "timeout",
        "expected_status",
        "unhealthy_threshold",
        "healthy_threshold",
    ];
    let s = w.section(node, path, &FIELDS);
    let interval = w.get(&s, "interval", d.interval, duration(true));
    let timeout = w.get(&s, "timeout", d.timeout, duration(true));
    if interval.ok && timeout.ok && timeout.value >= interval.value {
        let message = format!(
            "must be shorter than interval ({}), found {}",
            format_duration(interval.value),
            format_duration(timeout.value)
        );
        let (field, pos) = if timeout.pos.is_some() {
            ("timeout", timeout.pos)
        } else {
            ("interval", interval.pos)
        };
        w.report(pos, &s.field(field), Problem::new(message));
    }
    HealthCheckConfig {
        enabled: w.get(&s, "enabled", d.enabled, boolean).value,
        path: w.get(&s, "path", d.path, url_path).value,
        interval: interval.value,
        timeout: timeout.value,
        expected_status: w
            .get(&s, "expected_status", d.expected_status, status_range)
            .value,
        policy: health_policy(w, &s, d.policy),
    }
}

pub(crate) fn circuit_breaker(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    d: CircuitBreakerConfig,
) -> CircuitBreakerConfig {
    const FIELDS: [&str; 6] = [
        "enabled",
        "failure_threshold",
        "open_duration",
        "max_open_duration",
        "half_open_max_requests",
        "success_threshold",
    ];
    let s = w.section(node, path, &FIELDS);
    let open = w.get(
        &s,
        "open_duration",
        d.policy.open_duration(),
        duration(true),
    );
    let max_open = w.get(
        &s,
        "max_open_duration",
        d.policy.max_open_duration(),
        duration(true),
    );
    if open.ok && max_open.ok && max_open.value < open.value {
        let message = format!(
            "must be at least open_duration ({}), found {}",
            format_duration(open.value),
            format_duration(max_open.value)
        );
        let (field, pos) = if max_open.pos.is_some() {
            ("max_open_duration", max_open.pos)
        } else {
            ("open_duration", open.pos)
        };
        w.report(pos, &s.field(field), Problem::new(message));
    }
    let enabled = w.get(&s, "enabled", d.enabled, boolean).value;
    let failures = (w.get(
        &s,
        "failure_threshold",
        d.policy.failure_threshold(),
        int(1),
    ))
    .value;
    let probes = w.get(
        &s,
        "half_open_max_requests",
        d.policy.half_open_max_requests(),
        int(1),
    );
    let successes = (w.get(
        &s,
        "success_threshold",
        d.policy.success_threshold(),
        int(1),
    ))
    .value;
    let policy = BreakerPolicy::try_new(
        failures,
        open.value,
        max_open.value,
        probes.value,
        successes,
    );
    let policy = built(w, &s, policy, d.policy);
    CircuitBreakerConfig { enabled, policy }
}

pub(crate) fn retry(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    d: RetryConfig,
) -> RetryConfig {
    const FIELDS: [&str; 7] = [
        "max_attempts",
        "base_delay",
        "max_delay",
        "retry_on",
        "budget_ratio",
        "budget_min_per_sec",
        "replay_buffer_bytes",
    ];
    let s = w.section(node, path, &FIELDS);
    let base = w.get(&s, "base_delay", d.policy.base_delay(), duration(false));
    let max = w.get(&s, "max_delay", d.policy.max_delay(), duration(false));
    if base.ok && max.ok && base.value > max.value {
        let message = format!(
            "must not exceed max_delay ({}), found {}",
            format_duration(max.value),
            format_duration(base.value)
        );
        let (field, pos) = if base.pos.is_some() {
            ("base_delay", base.pos)
        } else {
            ("max_delay", max.pos)
        };
        w.report(pos, &s.field(field), Problem::new(message));
    }
    let retry_on = match s.get("retry_on") {
        None => d.policy.retry_on().to_vec(),
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => {
            let mut conditions = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match retry_condition(&item.node) {
                    Ok(condition) if !conditions.contains(&condition) => conditions.push(condition),
                    Ok(_) => {}
                    Err(problem) => {
                        w.report(item.pos, &format!("{}[{i}]", s.field("retry_on")), problem)
                    }
                }
            }
            conditions
        }
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of retry conditions, found {}",
                other.node.kind()
            ))
            .hint("like [connect_error, timeout, 503]");
            w.report(other.pos, &s.field("retry_on"), problem);
            d.policy.retry_on().to_vec()
        }
    };
    let attempts = w
        .get(&s, "max_attempts", d.policy.max_attempts(), int(1))
        .value;
    let policy = RetryPolicy::try_new(attempts, base.value, max.value, retry_on);
    let policy = built(w, &s, policy, d.policy);
    let ratio = w.get(&s, "budget_ratio", d.budget.ratio(), ratio).value;
    let floor = w.get(&s, "budget_min_per_sec", d.budget.min_per_sec(), int(0));
    let budget = built(w, &s, BudgetPolicy::try_new(ratio, floor.value), d.budget);
    let replay = w.get(&s, "replay_buffer_bytes", d.replay_buffer_bytes, |node| {
        let bytes: u64 = int(0)(node)?;
        match bytes <= MAX_REPLAY_BUFFER_BYTES {
            true => Ok(bytes),
            false => Err(Problem::new(format!(
                "must be at most {MAX_REPLAY_BUFFER_BYTES} (16 MiB), found {bytes}"
            ))
            .hint("every gRPC call in flight may keep this much; a larger body is sent once")),
        }
    });
    RetryConfig {
        policy,
        budget,
        replay_buffer_bytes: replay.value,
    }
}

/// The health tracker's thresholds in `s`, each at least 1.
fn health_policy(w: &mut Walker<'_>, s: &Section<'_>, d: HealthPolicy) -> HealthPolicy {
    let unhealthy = w.get(s, "unhealthy_threshold", d.unhealthy_threshold, int(1));
    let healthy = w.get(s, "healthy_threshold", d.healthy_threshold, int(1));
    built(
        w,
        s,
        HealthPolicy::try_new(healthy.value, unhealthy.value),
        d,
    )
}

/// The policy a section's fields build. Each of its rules is checked field by field above,
/// with the field's position, so a refusal here follows one of those and says nothing new;
/// should a rule ever escape the fields, it is reported at the section, never passed over. The
/// default stands in for the policy of a configuration that is refused.
fn built<P, E: std::fmt::Display>(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    policy: Result<P, E>,
    fallback: P,
) -> P {
    policy.unwrap_or_else(|error| {
        let reported = (w.errors.iter()).any(|known| known.field.starts_with(&s.path));
        if !reported {
            w.report(s.pos, &s.path, Problem::new(error.to_string()));
        }
        fallback
    })
}

fn metrics(
    w: &mut Walker<'_>,
    top: &Section<'_>,
    server_listen: &Got<SocketAddr>,
) -> MetricsConfig {
    let d = MetricsConfig::default();
    let s = w.section(
        top.get("metrics"),
        "metrics",
        &["enabled", "listen", "path"],
    );
    let enabled = w.get(&s, "enabled", d.enabled, boolean).value;
    let listen = w.get(&s, "listen", d.listen, address);
    if enabled && listen.ok && server_listen.ok && clash(listen.value, server_listen.value) {
        let (field, pos, other, other_pos) = if listen.pos.is_some() {
            (
                "metrics.listen",
                listen.pos,
                "server.listen",
                server_listen.pos,
            )
        } else {
            (
                "server.listen",
                server_listen.pos,
                "metrics.listen",
                listen.pos,
            )
        };
        let message = format!(
            "{} clashes with {other}{}",
            listen.value,
            on_line(other_pos)
        );
        w.report(
            pos,
            field,
            Problem::new(message).hint("give metrics its own port"),
        );
    }
    MetricsConfig {
        enabled,
        listen: listen.value,
        path: w.get(&s, "path", d.path, url_path).value,
    }
}

/// Whether two listeners would fight over one socket: same port (0 picks a free one, so never)
/// and the same IP, or either bound to all interfaces.
pub(crate) fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::clash;

    #[test]
    fn listener_clashes() {
        let cases = [
            ("127.0.0.1:80", "127.0.0.1:80", true),
            ("0.0.0.0:80", "127.0.0.1:80", true),
            ("127.0.0.1:80", "[::]:80", true),
            ("127.0.0.1:80", "127.0.0.2:80", false),
            ("127.0.0.1:80", "127.0.0.1:81", false),
            ("0.0.0.0:0", "0.0.0.0:0", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                clash(a.parse().unwrap(), b.parse().unwrap()),
                want,
                "{a} vs {b}"
            );
        }
    }
}
