//! `discovery`: where a pool's backends come from when they are not written in the file — a
//! file of backends that is watched, a DNS name re-resolved at its TTL, or a key prefix of an
//! etcd v3 cluster, watched.
//!
//! A pool with `discovery` has no `backends` of its own: its backends are what the source last
//! gave (none until the first answer). Discovered backends enter the running balancer through
//! the same diff as a reload; what the daemon does with a source is in lb-proxy's `discovery`
//! module, and the pure parts (parsing a backend file, SRV weights, TTL clamping, names,
//! backoff) in [`crate::discovery`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::duration;
use super::node::Spanned;
use super::tls::{UpstreamTlsConfig, base_dir, path, upstream_tls};
use super::walk::{Problem, Walker, address, duration as duration_of, int, text};

/// A pool's `discovery` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscoveryConfig {
    /// Where the backends come from.
    #[serde(flatten)]
    pub source: DiscoverySource,
    /// Changes closer together than this are applied as one.
    #[serde(serialize_with = "duration::serialize")]
    pub debounce: Duration,
    /// The first wait after a failed lookup; it doubles on each failure in a row.
    #[serde(serialize_with = "duration::serialize")]
    pub backoff_min: Duration,
    /// The longest wait between failed lookups.
    #[serde(serialize_with = "duration::serialize")]
    pub backoff_max: Duration,
}

/// A discovery source.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoverySource {
    /// A YAML or JSON list of backends, watched (its directory, as `reload.watch` does).
    File(PathBuf),
    /// A DNS name.
    Dns(DnsDiscovery),
    /// A key prefix of an etcd v3 cluster.
    Etcd(EtcdDiscovery),
}

impl DiscoverySource {
    /// The `source` label of the metrics: `file`, `dns` or `etcd`.
    pub fn kind(&self) -> &'static str {
        match self {
            DiscoverySource::File(_) => "file",
            DiscoverySource::Dns(_) => "dns",
            DiscoverySource::Etcd(_) => "etcd",
        }
    }
}

/// `discovery.dns`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsDiscovery {
    /// The name looked up.
    pub name: String,
    /// Which records.
    #[serde(rename = "type")]
    pub record: RecordType,
    /// The backends' port for A and AAAA records (SRV records carry their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The server asked; `None` is the system's (`/etc/resolv.conf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<SocketAddr>,
    /// The shortest wait between lookups, whatever the record's TTL.
    #[serde(serialize_with = "duration::serialize")]
    pub min_ttl: Duration,
    /// The longest wait between lookups, whatever the record's TTL.
    #[serde(serialize_with = "duration::serialize")]
    pub max_ttl: Duration,
    /// How long one lookup may take before it counts as failed.
    #[serde(serialize_with = "duration::serialize")]
    pub timeout: Duration,
}

/// `discovery.etcd`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EtcdDiscovery {
    /// The cluster's client endpoints, `host:port` (the scheme a file may write is in `tls`).
    pub endpoints: Vec<String>,
    /// Every key under this prefix is one backend; its value is a JSON object like a `backends`
    /// entry.
    pub prefix: String,
    /// How long connecting, and each request, may take.
    #[serde(serialize_with = "duration::serialize")]
    pub timeout: Duration,
    /// How often the watch is asked to prove it is alive (a progress request); a watch that
    /// stays silent for two of these is taken as dead and resumed.
    #[serde(serialize_with = "duration::serialize")]
    pub keepalive: Duration,
    /// TLS to every endpoint (`tls`, or endpoints written `https://`); `None`: plain HTTP/2.
    /// The server's certificate is always verified, for `sni` or else the endpoint's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsConfig>,
    /// etcd's user authentication (`username`, `password_file`); `None`: no token is asked for
    /// (an etcd with `--client-cert-auth` then takes the user from the client certificate).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EtcdAuth>,
}

/// `discovery.etcd.username` and `password_file`: the user the source authenticates as.
///
/// The password itself is never part of the configuration: the daemon reads the file when it
/// loads or reloads the configuration and again each time it asks etcd for a token, so a
/// rotated password is taken without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdAuth {
    /// The etcd user.
    pub username: String,
    /// The file holding the user's password (one line; a final newline is not part of it).
    pub password_file: PathBuf,
}

/// The DNS records a pool is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordType {
    /// IPv4 addresses, with `port`.
    A,
    /// IPv6 addresses, with `port`.
    Aaaa,
    /// Targets with their own port, priority and weight (RFC 2782).
    Srv,
}

/// Default of [`DiscoveryConfig::debounce`].
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(1);

const FIELDS: [&str; 6] = [
    "file",
    "dns",
    "etcd",
    "debounce",
    "backoff_min",
    "backoff_max",
];
const ETCD_FIELDS: [&str; 8] = [
    "endpoints",
    "prefix",
    "timeout",
    "keepalive",
    "tls",
    "username",
    "password_file",
    // Known only to be refused with a hint: a password is never written in the file.
    "password",
];
const DNS_FIELDS: [&str; 7] = [
    "name", "type", "port", "resolver", "min_ttl", "max_ttl", "timeout",
];

/// Reads a `discovery` block at `path` (`pools.NAME.discovery`, or `discovery` in the flat
/// form); `None` when absent or invalid (the problems are reported).
pub(crate) fn read(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path_name: &str,
) -> Option<Box<DiscoveryConfig>> {
    let node = node?;
    let s = w.section(Some(node), path_name, &FIELDS);
    let debounce = w
        .get(&s, "debounce", DEFAULT_DEBOUNCE, duration_of(false))
        .value;
    let backoff_min = w.get(&s, "backoff_min", Duration::from_secs(1), duration_of(true));
    let backoff_max = w.get(
        &s,
        "backoff_max",
        Duration::from_secs(60),
        duration_of(true),
    );
    if backoff_min.ok && backoff_max.ok && backoff_max.value < backoff_min.value {
        let problem = Problem::new("backoff_max is shorter than backoff_min")
            .hint("backoff_max is the cap of the doubling waits");
        w.report(backoff_max.pos.or(s.pos), &s.field("backoff_max"), problem);
    }
    let base = base_dir(w);
    let given: Vec<&str> = (["file", "dns", "etcd"].into_iter())
        .filter(|name| s.get(name).is_some())
        .collect();
    let source = match given[..] {
        ["file"] => {
            let file = w.get(&s, "file", PathBuf::new(), path(&base));
            file.ok.then_some(DiscoverySource::File(file.value))
        }
        ["dns"] => dns(w, s.get("dns")?, &s.field("dns")).map(DiscoverySource::Dns),
        [_] => etcd(w, s.get("etcd")?, &s.field("etcd")).map(DiscoverySource::Etcd),
        [] => {
            let problem = Problem::new("a discovery block needs a source")
                .hint("like `discovery: {file: backends.yaml}` or `discovery: {dns: {name: api.internal, port: 8080}}`");
            w.report(s.pos, path_name, problem);
            None
        }
        [_, second, ..] => {
            let problem = Problem::new("a pool takes its backends from one source")
                .hint("keep one of `file`, `dns` and `etcd`");
            w.report(s.get(second).and_then(|n| n.pos), &s.field(second), problem);
            None
        }
    };
    Some(Box::new(DiscoveryConfig {
        source: source?,
        debounce,
        backoff_min: backoff_min.value,
        backoff_max: backoff_max.value.max(backoff_min.value),
    }))
}

fn dns(w: &mut Walker<'_>, node: &Spanned, path_name: &str) -> Option<DnsDiscovery> {
    let s = w.section(Some(node), path_name, &DNS_FIELDS);
    let name = w.get(&s, "name", String::new(), dns_name);
    if s.get("name").is_none() {
        let problem = Problem::new("missing required field").hint("the name to look up");
        w.report(s.pos, &s.field("name"), problem);
    }
    let record = w.get(&s, "type", RecordType::A, record_type);
    let port = w.get(&s, "port", None, |node| int::<u16>(1)(node).map(Some));
    let resolver = w.get(&s, "resolver", None, |node| address(node).map(Some));
    let min_ttl = w.get(&s, "min_ttl", Duration::from_secs(5), duration_of(true));
    let max_ttl = w.get(&s, "max_ttl", Duration::from_secs(300), duration_of(true));
    let timeout = w.get(&s, "timeout", Duration::from_secs(5), duration_of(true));
    match (record.value, port.value) {
        (RecordType::A | RecordType::Aaaa, None) if record.ok && port.ok => {
            let problem = Problem::new("A and AAAA records carry no port")
                .hint("set `port`, the port the backends listen on");
            w.report(s.pos, &s.field("port"), problem);
        }
        (RecordType::Srv, Some(_)) => {
            let problem = Problem::new("SRV records carry their own port").hint("remove `port`");
            w.report(port.pos, &s.field("port"), problem);
        }
        _ => {}
    }
    if min_ttl.ok && max_ttl.ok && max_ttl.value < min_ttl.value {
        let problem = Problem::new("max_ttl is shorter than min_ttl");
        w.report(max_ttl.pos, &s.field("max_ttl"), problem);
    }
    if !(name.ok && record.ok && port.ok && resolver.ok) || name.value.is_empty() {
        return None;
    }
    Some(DnsDiscovery {
        name: name.value,
        record: record.value,
        port: port.value,
        resolver: resolver.value,
        min_ttl: min_ttl.value,
        max_ttl: max_ttl.value.max(min_ttl.value),
        timeout: timeout.value,
    })
}

fn etcd(w: &mut Walker<'_>, node: &Spanned, path_name: &str) -> Option<EtcdDiscovery> {
    let s = w.section(Some(node), path_name, &ETCD_FIELDS);
    let endpoints = w.get(&s, "endpoints", Vec::new(), |node| {
        let super::node::Node::Seq(items) = node else {
            return Err(Problem::expected("a list of host:port endpoints", node));
        };
        let endpoints = (items.iter())
            .map(|item| endpoint(&item.node).map(|(scheme, bare)| (scheme, bare, item.pos)))
            .collect::<Result<Vec<_>, Problem>>()?;
        match endpoints.is_empty() {
            true => Err(Problem::new("must list at least one endpoint")),
            false => Ok(endpoints),
        }
    });
    if s.get("endpoints").is_none() {
        let problem = Problem::new("missing required field").hint("like [127.0.0.1:2379]");
        w.report(s.pos, &s.field("endpoints"), problem);
    }
    let prefix = w.get(&s, "prefix", String::new(), text);
    if s.get("prefix").is_none() {
        let problem = Problem::new("missing required field").hint("like /lb/pools/api/");
        w.report(s.pos, &s.field("prefix"), problem);
    }
    let timeout = w.get(&s, "timeout", Duration::from_secs(5), duration_of(true));
    let keepalive = w.get(&s, "keepalive", Duration::from_secs(30), duration_of(true));
    let errors = w.errors.len();
    let tls = etcd_tls(w, &s, &endpoints.value);
    let auth = etcd_auth(w, &s);
    if !(endpoints.ok && prefix.ok) || endpoints.value.is_empty() || prefix.value.is_empty() {
        return None;
    }
    if w.errors.len() > errors {
        return None;
    }
    Some(EtcdDiscovery {
        endpoints: (endpoints.value.into_iter())
            .map(|(_, bare, _)| bare)
            .collect(),
        prefix: prefix.value,
        timeout: timeout.value,
        keepalive: keepalive.value,
        tls,
        auth,
    })
}

/// How an endpoint was written: `http://`, `https://` or bare `host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
    Bare,
}

/// TLS to the cluster: `tls` as `upstream.tls` reads it (`true`, `false` or a mapping of
/// `sni`, `ca_file`, `client_cert`, `client_key`), or `https://` endpoints, which alone mean
/// `tls: true`. One cluster is reached one way: an `http://` endpoint beside TLS, or an
/// `https://` one beside `tls: false`, is refused where it is written.
fn etcd_tls(
    w: &mut Walker<'_>,
    s: &super::walk::Section<'_>,
    endpoints: &[(Scheme, String, super::node::Pos)],
) -> Option<UpstreamTlsConfig> {
    let written = s.get("tls").is_some();
    let tls = upstream_tls(w, s, None);
    let https = (endpoints.iter()).find(|(scheme, _, _)| *scheme == Scheme::Https);
    let tls = match (tls, https) {
        (Some(tls), _) => Some(tls),
        (None, Some(_)) if !written => Some(UpstreamTlsConfig::default()),
        (None, Some((_, _, pos))) => {
            let problem = Problem::new("an https:// endpoint, but `tls` is false")
                .hint("write the endpoint host:port, or remove `tls: false`");
            w.report(*pos, &s.field("endpoints"), problem);
            return None;
        }
        (None, None) => None,
    };
    if tls.is_some() {
        let why = match written {
            true => "`tls` is set",
            false => "another endpoint is https://",
        };
        for (_, bare, pos) in (endpoints.iter()).filter(|(scheme, _, _)| *scheme == Scheme::Http) {
            let problem = Problem::new(format!(
                "http://{bare} is plain HTTP, but {why}: every endpoint of a cluster is reached the same way"
            ))
            .hint("write it https://, or host:port");
            w.report(*pos, &s.field("endpoints"), problem);
        }
    }
    tls
}

/// `username` and `password_file`, both or neither; `password` is refused, value unread.
fn etcd_auth(w: &mut Walker<'_>, s: &super::walk::Section<'_>) -> Option<EtcdAuth> {
    if let Some(node) = s.get("password") {
        // The value is not echoed: this error may be logged or shown.
        let problem = Problem::new("a password is never written in the configuration")
            .hint("put it in a file only lb can read (mode 0600) and set `password_file`");
        w.report(node.pos, &s.field("password"), problem);
    }
    let username = w.get(s, "username", None, |node| {
        let name = text(node)?;
        match name.chars().any(char::is_control) {
            true => Err(Problem::new("an etcd user name has no control characters")),
            false => Ok(Some(name)),
        }
    });
    let base = base_dir(w);
    let password_file = w.get(s, "password_file", None, |n| path(&base)(n).map(Some));
    match (username.value, password_file.value) {
        (Some(username), Some(password_file)) => Some(EtcdAuth {
            username,
            password_file,
        }),
        (Some(_), None) if password_file.ok => {
            let problem = Problem::new("username is set but password_file is not")
                .hint("the file holding the user's password; or remove username and authenticate by client certificate");
            w.report(username.pos, &s.field("password_file"), problem);
            None
        }
        (None, Some(_)) if username.ok => {
            let problem = Problem::new("password_file is set but username is not")
                .hint("the etcd user the password belongs to");
            w.report(password_file.pos, &s.field("username"), problem);
            None
        }
        _ => None,
    }
}

/// An etcd endpoint: `host:port`, optionally written `http://host:port` or `https://host:port`.
fn endpoint(node: &super::node::Node) -> Result<(Scheme, String), Problem> {
    let written = text(node)?;
    let (scheme, bare) = match (
        written.strip_prefix("http://"),
        written.strip_prefix("https://"),
    ) {
        (Some(bare), _) => (Scheme::Http, bare),
        (_, Some(bare)) => (Scheme::Https, bare),
        _ => (Scheme::Bare, written.as_str()),
    };
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    let valid = bare.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok_and(|port| port > 0)
            && !host.contains(['/', ' ', '@', '?', '#'])
            && host_is_valid(host)
    });
    match valid {
        true => Ok((scheme, bare.to_owned())),
        false => Err(
            Problem::new(format!("\"{written}\" is not a host:port endpoint"))
                .hint("like 127.0.0.1:2379, etcd-1.internal:2379 or https://etcd-1.internal:2379"),
        ),
    }
}

/// A host: a DNS name, an IPv4 address or a bracketed IPv6 one.
fn host_is_valid(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.contains(['[', ']', ':']),
    }
}

fn record_type(node: &super::node::Node) -> Result<RecordType, Problem> {
    match text(node)?.to_ascii_lowercase().as_str() {
        "a" => Ok(RecordType::A),
        "aaaa" => Ok(RecordType::Aaaa),
        "srv" => Ok(RecordType::Srv),
        other => {
            Err(Problem::new(format!("unknown record type \"{other}\""))
                .hint("one of: a, aaaa, srv"))
        }
    }
}

/// A DNS name: labels of letters, digits, `-` and `_` (SRV names start `_service._proto`),
/// 1-63 each, at most 253 in all; a trailing dot is allowed.
fn dns_name(node: &super::node::Node) -> Result<String, Problem> {
    let name = text(node)?;
    let bare = name.strip_suffix('.').unwrap_or(&name);
    let valid = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(name)
    } else {
        Err(Problem::new(format!("\"{name}\" is not a DNS name"))
            .hint("like api.service.internal or _http._tcp.api.internal"))
    }
}

/// Reports `second` when `first` is also written in `s`: a pool's backends are listed or
/// discovered, not both.
pub(crate) fn exclusive(
    w: &mut Walker<'_>,
    s: &super::walk::Section<'_>,
    first: &str,
    second: &str,
) {
    if let (Some(_), Some(node)) = (s.get(first), s.get(second)) {
        let problem = Problem::new(format!(
            "`{first}` and `{second}` both give the pool's backends"
        ))
        .hint(format!(
            "keep one: with `{second}`, the backends come from the source"
        ));
        w.report(node.pos, &s.field(second), problem);
    }
}

/// Parses one backend written as a JSON object (an etcd value), like a `backends` entry, with
/// `pool`'s `upstream` as the defaults; `origin` names it in errors (the key).
///
/// # Errors
///
/// Every problem found: not JSON, not an object, a bad or missing address, an unknown field.
pub fn parse_backend_entry(
    bytes: &[u8],
    origin: &str,
    pool: &super::PoolConfig,
) -> Result<super::BackendConfig, super::ConfigErrors> {
    let empty = || super::document_error(origin, "the value is empty", Some("a JSON object"));
    let text = std::str::from_utf8(bytes).map_err(|_| {
        super::document_error(origin, "the value is not UTF-8 text", Some("a JSON object"))
    })?;
    if text.trim().is_empty() {
        return Err(empty());
    }
    let root = super::node::load(text, super::Format::Json, origin)?;
    let list = Spanned {
        pos: root.pos,
        node: super::node::Node::Seq(vec![root]),
    };
    let mut w = Walker::new(origin);
    let mut backends =
        super::validate::backends(&mut w, Some(&list), "value", list.pos, true, &pool.upstream);
    match (w.errors.is_empty(), backends.pop()) {
        (true, Some(backend)) => Ok(backend),
        (true, None) => Err(empty()),
        (false, _) => Err(super::ConfigErrors(w.errors)),
    }
}

/// Parses a discovery file: a YAML (`.yaml`, `.yml`) or JSON (`.json`) list of backends, each
/// entry as in a pool's `backends` (`address`, and optionally `name`, `weight`,
/// `max_connections`, `tls`, `proxy_protocol`), with `pool`'s `upstream` as the defaults.
/// Names are as written; [`crate::discovery::named`] makes them the pool's. An empty list is an
/// error: a pool is not emptied by a file caught half written.
///
/// # Errors
///
/// Every problem found, located in the file (`path` names it and picks the format).
pub fn parse_backend_file(
    bytes: &[u8],
    path: &std::path::Path,
    pool: &super::PoolConfig,
) -> Result<Vec<super::BackendConfig>, super::ConfigErrors> {
    let (text, format, origin) = super::decode(bytes, path, "list at least one backend")?;
    let root = super::node::load(text, format, &origin)?;
    let mut w = Walker::new(&origin);
    let backends = super::validate::backends(
        &mut w,
        Some(&root),
        "backends",
        root.pos,
        true,
        &pool.upstream,
    );
    if w.errors.is_empty() {
        return Ok(backends);
    }
    let mut errors = super::ConfigErrors(w.errors);
    errors.sort();
    Err(errors)
}
