//! The configuration model, YAML/JSON parsing and validation with file positions.
//!
//! The pipeline has three stages, in the manner of sozu's `command/src/config.rs`:
//!
//! 1. **What the file says**: the text becomes an untyped tree whose every node carries its
//!    line and column (`node`). Only syntax errors stop here.
//! 2. **Validation** walks that tree, applies defaults and checks every rule, collecting
//!    *all* problems rather than stopping at the first, each with file, line, column, field
//!    path and, where a likely fix exists, a hint (`did you mean "listen"?`).
//! 3. **The validated [`Config`]**, plain typed values with every default filled in.
//!
//! `lb-cli check` runs exactly [`parse_bytes`]; the daemon reads the file and does the same.
//! Nothing here touches the file system: callers pass the text in.
//!
//! # Layout
//! - `model`: the typed [`Config`] and its sections, with defaults and serialization.
//! - `node`: stage one, the positioned tree and the YAML/JSON readers.
//! - `walk`, `validate`: stage two, value readers and the per-section rules.
//! - `duration`: human durations, [`parse_duration`] and [`format_duration`].
//! - `tls`: `server.tls`, `server.proxy_protocol`, `server.http_redirect`, and TLS and the
//!   PROXY protocol towards backends.
//! - `observe`: `access_log` and `request_id`.
//! - `trace`: `tracing` (W3C Trace Context, OTLP export).
//! - `discovery`: a pool's `discovery` block (backends from a file or DNS).
//! - `operate`: `admin` and `reload`; `diff`: what changed between two configurations, and
//!   what a running balancer must do about it.
//! - [`pools`], [`routes`], [`limits`], [`auth`], [`transform`]: pools, routes and the
//!   policies routes apply; `routing` reads them in order.
//! - `error`: [`ConfigError`] and [`ConfigErrors`].

pub mod auth;
mod diff;
mod discovery;
mod duration;
mod error;
mod http2;
pub mod limits;
mod model;
pub(crate) mod node;
mod observe;
mod operate;
mod policies;
pub mod pools;
mod route_warnings;
pub mod routes;
mod routing;
mod tls;
mod trace;
pub mod transform;
mod upstream_http2;
mod validate;
pub(crate) mod walk;
mod warnings;

use std::path::Path;

pub use diff::{Change, apply_pools, diff};
pub use discovery::{
    DEFAULT_DEBOUNCE, DiscoveryConfig, DiscoverySource, DnsDiscovery, EtcdAuth, EtcdDiscovery,
    RecordType, parse_backend_entry, parse_backend_file,
};
pub use duration::{format_duration, parse_duration};
pub(crate) use error::closest;
pub use error::{ConfigError, ConfigErrors};
pub use http2::Http2Config;
pub use model::{
    AuthConfig, PathNormalizationConfig, PoolConfig, QueueConfig, RateLimitConfig, RedisConfig,
    RouteConfig,
};
pub use model::{
    BackendConfig, CircuitBreakerConfig, Config, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REPLAY_BUFFER_BYTES, HealthCheckConfig, LoadBalancerConfig, MAX_REPLAY_BUFFER_BYTES,
    MIN_MAX_HEADER_BYTES, MetricsConfig, RetryConfig, ServerConfig, UpstreamConfig,
};
pub use observe::{
    AccessLogConfig, AccessLogFormat, AccessLogTarget, MAX_ACCESS_LOG_BUFFER, MAX_REQUEST_ID,
    RequestIdConfig, SampleConfig, SyslogConfig, SyslogDestination, facility_name, is_request_id,
};
pub use operate::{AdminConfig, ReloadConfig, TokenSource};
pub use tls::{
    ACME_CHALLENGE_PATH, Alpn, CertificateConfig, DEFAULT_ALPN, ProxyProtocol, RedirectConfig,
    SendProxyProtocol, ServerTlsConfig, TlsVersion, UpstreamTlsConfig, is_sni_name,
};
pub use trace::{MAX_SERVICE_NAME, MAX_TRACE_QUEUE, TracingConfig, TrustParent};
pub use upstream_http2::{UpstreamHttp2Config, UpstreamProtocol};
pub use warnings::{ConfigWarning, locate, warnings};

/// The syntax of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// YAML 1.2 (`.yaml`, `.yml`).
    Yaml,
    /// Strict JSON (`.json`).
    Json,
}

impl Format {
    /// The format named by the file's extension, case-insensitively; `None` for any other.
    pub fn from_path(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Parses and validates configuration text.
///
/// `origin` names the file in error messages. A leading byte-order mark is ignored.
///
/// # Errors
///
/// Every problem found, ordered by position: one syntax error, or all validation errors.
///
/// # Example
///
/// ```
/// use lb_core::config::{parse, Format};
///
/// let config = parse("backends:\n  - address: 127.0.0.1:8001\n", Format::Yaml, "lb.yaml").unwrap();
/// assert_eq!(config.backends[0].weight, 1);
///
/// let errors = parse("backends:\n  - address: 127.0.0.1:8001\n    wieght: 2\n", Format::Yaml, "lb.yaml")
///     .unwrap_err();
/// assert_eq!(
///     errors.to_string(),
///     "lb.yaml:3:5: backends[0].wieght: unknown field \"wieght\" (hint: did you mean \"weight\"?)"
/// );
/// ```
pub fn parse(source: &str, format: Format, origin: &str) -> Result<Config, ConfigErrors> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    if source.trim().is_empty() {
        return Err(document_error(
            origin,
            "the file is empty",
            Some("it needs at least a `backends` list"),
        ));
    }
    let root = node::load(source, format, origin)?;
    validate::build(&root, origin)
}

/// Parses and validates the raw contents of the file at `path`, choosing the format by its
/// extension. The file is not read here; `path` names it and picks the format.
///
/// # Errors
///
/// One error for an unknown extension, an empty file or bytes that are not UTF-8 text;
/// otherwise as [`parse`].
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Config, ConfigErrors> {
    let (text, format, origin) = decode(bytes, path, "it needs at least a `backends` list")?;
    parse(text, format, &origin)
}

/// The file-level checks every input file goes through before its syntax is read: the format
/// from the extension, not empty (`empty_hint` says what the file needs), UTF-8 text without
/// NUL bytes. Returns the text, its format and the origin to name in messages.
pub(crate) fn decode<'b>(
    bytes: &'b [u8],
    path: &Path,
    empty_hint: &str,
) -> Result<(&'b str, Format, String), ConfigErrors> {
    let origin = path.display().to_string();
    let Some(format) = Format::from_path(path) else {
        let found = path
            .extension()
            .map(|e| format!("unknown file extension \".{}\"", e.to_string_lossy()))
            .unwrap_or_else(|| "the file has no extension".to_owned());
        return Err(document_error(
            &origin,
            &found,
            Some("name the file .yaml, .yml or .json"),
        ));
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(document_error(
            &origin,
            "the file is empty",
            Some(empty_hint),
        ));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Ok((text, format, origin)),
        Ok(_) => Err(document_error(
            &origin,
            "the file contains NUL bytes; is it a binary file?",
            None,
        )),
        Err(error) => {
            let message = format!(
                "the file is not UTF-8 text (bad byte at offset {}); is it a binary file?",
                error.valid_up_to()
            );
            Err(document_error(&origin, &message, None))
        }
    }
}

pub(crate) fn document_error(origin: &str, message: &str, hint: Option<&str>) -> ConfigErrors {
    ConfigErrors::single(ConfigError {
        file: origin.to_owned(),
        line: None,
        column: None,
        field: String::new(),
        message: message.to_owned(),
        hint: hint.map(str::to_owned),
    })
}
