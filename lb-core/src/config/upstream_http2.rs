//! The protocol the balancer speaks to a backend (`protocol` on a backend, `upstream.protocol`
//! as a pool's default) and the bounds of its HTTP/2 connections (`upstream.http2`).
//!
//! - `http1` (the default): HTTP/1.1, one request per connection at a time, pooled.
//! - `h2c`: HTTP/2 over cleartext TCP with prior knowledge (RFC 9113 §3.3).
//! - `h2`: HTTP/2 over TLS, agreed by ALPN `h2`; it needs the backend's `tls` (its own or
//!   `upstream.tls`), and a backend that does not pick `h2` is not used in HTTP/1.1 instead.
//!
//! HTTP/2 streams to one backend share connections: a new connection is opened only when every
//! open one carries `upstream.http2.max_streams_per_connection` streams, up to
//! `upstream.http2.max_connections_per_backend` connections. HTTP/2 connections carry many
//! clients' requests, so they cannot start with a PROXY header naming one client: `proxy_protocol`
//! is refused with `h2c` and `h2`.
//!
//! A connection with streams open that has received nothing for
//! `upstream.http2.keepalive_interval` is sent a PING; without its acknowledgement within
//! `upstream.http2.keepalive_timeout` the connection is closed, so that a backend gone silent
//! (its host down, a network partition: no RST ever comes) fails its streams in seconds rather
//! than at each request's timeout, and new streams go to a new connection.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::duration::format_duration;
use super::node::Node;
use super::walk::{Got, Problem, Section, Walker, duration, int};

/// How the balancer speaks to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 over cleartext TCP, with prior knowledge.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
}

impl UpstreamProtocol {
    /// Whether this is HTTP/2 (`h2c` or `h2`).
    pub fn is_http2(self) -> bool {
        !matches!(self, UpstreamProtocol::Http1)
    }

    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
            UpstreamProtocol::H2 => "h2",
        }
    }
}

/// `upstream.http2`: the bounds of HTTP/2 connections to each backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamHttp2Config {
    /// Streams the balancer opens on one connection before it opens another. A backend that
    /// advertises a lower SETTINGS_MAX_CONCURRENT_STREAMS makes the excess wait for a stream to
    /// end (within the request's timeout): set this to the backend's own limit.
    pub max_streams_per_connection: u32,
    /// Connections to one backend at most; when each is full, a new stream goes to the least
    /// loaded one and waits there for room.
    pub max_connections_per_backend: u32,
    /// A PING is sent on a connection with streams open that received no frame for this long;
    /// zero: never.
    #[serde(serialize_with = "human")]
    pub keepalive_interval: Duration,
    /// A PING not acknowledged within this closes the connection (and fails its streams).
    #[serde(serialize_with = "human")]
    pub keepalive_timeout: Duration,
}

/// The shortest `keepalive_interval` and `keepalive_timeout`: shorter pings would be a flood.
pub const MIN_KEEPALIVE: Duration = Duration::from_millis(100);

impl Default for UpstreamHttp2Config {
    fn default() -> Self {
        Self {
            // What most servers advertise (Go, nginx, Envoy's default is higher).
            max_streams_per_connection: 100,
            max_connections_per_backend: 8,
            // Below `server.request_timeout` (30 s), so that a request on a connection gone
            // silent fails before its deadline and new ones go to a new connection; pings go
            // only while streams are open, and a stream outlives few at the default timeout,
            // which keeps gRPC servers' ping policing (a GOAWAY after 3 pings closer than 5
            // minutes with nothing sent in between) out of reach (docs/configuration.md).
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

fn human<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_duration(*duration))
}

/// A keepalive duration: `0` or `off` for the interval (`may_be_off`), else at least
/// [`MIN_KEEPALIVE`].
fn keepalive(may_be_off: bool) -> impl Fn(&Node) -> Result<Duration, Problem> {
    move |node| {
        // YAML 1.1 reads a bare `off` as false.
        let off =
            matches!(node, Node::Str(text) if text == "off") || matches!(node, Node::Bool(false));
        if may_be_off && off {
            return Ok(Duration::ZERO);
        }
        let value = duration(false)(node)?;
        if value.is_zero() && may_be_off {
            return Ok(value);
        }
        match value >= MIN_KEEPALIVE {
            true => Ok(value),
            false => Err(Problem::new(format!(
                "must be at least {}{}, found {}",
                format_duration(MIN_KEEPALIVE),
                if may_be_off { " (or 0 / off)" } else { "" },
                format_duration(value)
            ))),
        }
    }
}

/// Reads `upstream.http2`.
pub(crate) fn upstream_http2(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    d: UpstreamHttp2Config,
) -> UpstreamHttp2Config {
    const FIELDS: [&str; 4] = [
        "max_streams_per_connection",
        "max_connections_per_backend",
        "keepalive_interval",
        "keepalive_timeout",
    ];
    let h = w.section(s.get("http2"), &s.field("http2"), &FIELDS);
    let bounded = |max: i128| {
        move |node: &Node| -> Result<u32, Problem> {
            let value: u32 = int(1)(node)?;
            match i128::from(value) <= max {
                true => Ok(value),
                false => Err(Problem::new(format!(
                    "must be at most {max}, found {value}"
                ))),
            }
        }
    };
    UpstreamHttp2Config {
        max_streams_per_connection: w
            .get(
                &h,
                "max_streams_per_connection",
                d.max_streams_per_connection,
                bounded(10_000),
            )
            .value,
        max_connections_per_backend: w
            .get(
                &h,
                "max_connections_per_backend",
                d.max_connections_per_backend,
                bounded(1_000),
            )
            .value,
        keepalive_interval: w
            .get(
                &h,
                "keepalive_interval",
                d.keepalive_interval,
                keepalive(true),
            )
            .value,
        keepalive_timeout: w
            .get(
                &h,
                "keepalive_timeout",
                d.keepalive_timeout,
                keepalive(false),
            )
            .value,
    }
}

/// Reads `protocol` of a backend or of `upstream`; `inherited` when absent.
pub(crate) fn protocol(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    inherited: UpstreamProtocol,
) -> Got<UpstreamProtocol> {
    w.get(s, "protocol", inherited, |node| match node {
        Node::Str(name) if name == "http1" => Ok(UpstreamProtocol::Http1),
        Node::Str(name) if name == "h2c" => Ok(UpstreamProtocol::H2c),
        Node::Str(name) if name == "h2" => Ok(UpstreamProtocol::H2),
        Node::Str(name) if name == "http2" || name == "http/2" => {
            Err(Problem::new(format!("\"{name}\" is ambiguous"))
                .hint("write \"h2c\" for cleartext HTTP/2 or \"h2\" for HTTP/2 over TLS"))
        }
        other => Err(Problem::new(format!(
            "expected \"http1\", \"h2c\" or \"h2\", found {}",
            match other {
                Node::Str(name) => format!("\"{name}\""),
                other => other.kind().to_owned(),
            }
        ))),
    })
}

/// The rules between a protocol and the transport: `h2` needs TLS, `h2c` is cleartext, and
/// neither sends PROXY headers. Reported at the `protocol` field when it was written, else at
/// the field that conflicts with the inherited protocol.
pub(crate) fn check_transport(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    protocol: &Got<UpstreamProtocol>,
    tls: bool,
    proxy_protocol: bool,
) {
    if !protocol.ok {
        return;
    }
    let at = |w: &mut Walker<'_>, other: &str, problem: Problem| {
        let (field, pos) = match protocol.pos {
            Some(_) => ("protocol", protocol.pos),
            None => (other, s.get(other).and_then(|node| node.pos)),
        };
        w.report(pos, &s.field(field), problem);
    };
    match protocol.value {
        UpstreamProtocol::H2 if !tls => at(
            w,
            "protocol",
            Problem::new("h2 is HTTP/2 over TLS, and this backend has no tls").hint(
                "set `tls: true` (or a mapping of TLS settings) here or in upstream, or use h2c for cleartext HTTP/2",
            ),
        ),
        UpstreamProtocol::H2c if tls => at(
            w,
            "tls",
            Problem::new("h2c is cleartext HTTP/2, and this backend has tls")
                .hint("use `protocol: h2` for HTTP/2 over TLS"),
        ),
        _ => {}
    }
    if protocol.value.is_http2() && proxy_protocol {
        at(
            w,
            "proxy_protocol",
            Problem::new(format!(
                "proxy_protocol cannot be combined with protocol {}: an HTTP/2 connection carries many clients' requests, and a PROXY header names one",
                protocol.value.as_str()
            ))
            .hint("turn proxy_protocol off for this backend, or use protocol http1"),
        );
    }
}
