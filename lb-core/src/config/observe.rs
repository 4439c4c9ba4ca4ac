//! The sections that say what the daemon tells about each request: `access_log` (one line per
//! request, to stdout, stderr, a file or syslog) and `request_id` (the id every request carries
//! to its backend, back to its client and into the log).
//!
//! Both are read here and opened by the data plane: lb-core opens no file and no socket.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::node::Node;
use super::tls::{base_dir, path};
use super::walk::{Problem, Section, Walker, address, boolean, int, text};

/// The most lines `access_log.buffer` may hold: the buffer is memory held while a sink stalls.
pub const MAX_ACCESS_LOG_BUFFER: usize = 1 << 20;
/// The longest `access_log.syslog.app_name` (RFC 5424 §6.2.5).
pub const MAX_APP_NAME: usize = 48;
/// The longest request id a trusted client's may be.
pub const MAX_REQUEST_ID: usize = 64;

/// `access_log`: one line per request, off unless the section is written. Serialized as the
/// file writes it (`target: file` and `path`), so that `lb-cli show` parses back.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    /// Whether lines are written; true as soon as the section is written.
    pub enabled: bool,
    /// How a line is written.
    pub format: AccessLogFormat,
    /// Where lines go.
    pub target: AccessLogTarget,
    /// Which requests are logged.
    pub sample: SampleConfig,
    /// Lines held for the writer; when full, a line is dropped (and counted), never waited for.
    pub buffer: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            format: AccessLogFormat::Json,
            target: AccessLogTarget::Stdout,
            sample: SampleConfig::default(),
            buffer: 8192,
        }
    }
}

impl AccessLogConfig {
    /// Whether this is the default (off), which the serialized form leaves out.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Serialize for AccessLogConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("enabled", &self.enabled)?;
        map.serialize_entry("format", &self.format)?;
        match &self.target {
            AccessLogTarget::Stdout => map.serialize_entry("target", "stdout")?,
            AccessLogTarget::Stderr => map.serialize_entry("target", "stderr")?,
            AccessLogTarget::File(path) => {
                map.serialize_entry("target", "file")?;
                map.serialize_entry("path", path)?;
            }
            AccessLogTarget::Syslog(syslog) => {
                map.serialize_entry("target", "syslog")?;
                map.serialize_entry("syslog", syslog)?;
            }
        }
        map.serialize_entry("sample", &self.sample)?;
        map.serialize_entry("buffer", &self.buffer)?;
        map.end()
    }
}

impl Serialize for SyslogConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(3))?;
        match &self.destination {
            SyslogDestination::Socket(path) => map.serialize_entry("socket", path)?,
            SyslogDestination::Address(address) => map.serialize_entry("address", address)?,
        }
        map.serialize_entry("facility", facility_name(self.facility))?;
        map.serialize_entry("app_name", &self.app_name)?;
        map.end()
    }
}

/// How an access-log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line, every field.
    Json,
    /// The combined log format of Apache and nginx (fewer fields).
    Combined,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessLogTarget {
    /// The standard output.
    Stdout,
    /// The standard error.
    Stderr,
    /// A file, appended to; `SIGUSR1` reopens it.
    File(PathBuf),
    /// Syslog, RFC 5424.
    Syslog(SyslogConfig),
}

/// `access_log.syslog`: where and as what lines go to syslog.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogConfig {
    /// The Unix datagram socket or the UDP address.
    pub destination: SyslogDestination,
    /// The facility's number (0-23; `local0` is 16).
    pub facility: u8,
    /// The APP-NAME of every message.
    pub app_name: String,
}

/// Where syslog messages are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogDestination {
    /// A Unix datagram socket, like `/dev/log`.
    Socket(PathBuf),
    /// A syslog server over UDP.
    Address(SocketAddr),
}

/// `access_log.sample`: which requests are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SampleConfig {
    /// Only requests answered with a status of 400 or more (or not answered).
    pub errors_only: bool,
    /// One request in this many (1: every one); errors too when `errors_only` is set.
    pub one_in: u32,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            errors_only: false,
            one_in: 1,
        }
    }
}

/// The syslog facilities by name (RFC 5424 §6.2.1), in number order.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// The name of facility `number`.
pub fn facility_name(number: u8) -> &'static str {
    FACILITIES.get(usize::from(number)).copied().unwrap_or("?")
}

/// `request_id`: the id every request carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestIdConfig {
    /// Whether ids are kept or made, sent on and returned.
    pub enabled: bool,
    /// The header, in lower case.
    pub header: String,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            header: "x-request-id".to_owned(),
        }
    }
}

impl RequestIdConfig {
    /// Whether this is the default, which the serialized form leaves out.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Whether `id` is a request id a trusted client may give: 1 to [`MAX_REQUEST_ID`] characters
/// of `A-Z a-z 0-9 . _ : -`, which no log or header parser can take for anything else.
pub fn is_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Reads `access_log`.
pub(super) fn access_log(w: &mut Walker<'_>, top: &Section<'_>) -> AccessLogConfig {
    let d = AccessLogConfig::default();
    let present = top.get("access_log").is_some();
    let s = w.section(
        top.get("access_log"),
        "access_log",
        &[
            "enabled", "format", "target", "path", "syslog", "sample", "buffer",
        ],
    );
    let enabled = w.get(&s, "enabled", present, boolean).value;
    let format = w.get(&s, "format", d.format, format).value;
    let kind = w.get(&s, "target", "stdout", target_kind);
    let base = base_dir(w);
    let file = w.get(&s, "path", None, |node| path(&base)(node).map(Some));
    let syslog_present = s.get("syslog").is_some();
    let syslog = syslog(w, &s);
    let target = match kind.value {
        "file" => match file.value {
            Some(path) => AccessLogTarget::File(path),
            None => {
                if file.ok {
                    let problem = Problem::new("a file target needs a path")
                        .hint("add `path: /var/log/lb/access.log`");
                    w.report(kind.pos.or(s.pos), "access_log.path", problem);
                }
                AccessLogTarget::Stdout
            }
        },
        "syslog" => AccessLogTarget::Syslog(syslog),
        "stderr" => AccessLogTarget::Stderr,
        _ => AccessLogTarget::Stdout,
    };
    if kind.ok {
        if file.pos.is_some() && kind.value != "file" {
            let problem = Problem::new(format!(
                "a path is only read with target: file, not {}",
                kind.value
            ))
            .hint("set `target: file`, or remove `path`");
            w.report(file.pos, "access_log.path", problem);
        }
        if syslog_present && kind.value != "syslog" {
            let problem = Problem::new(format!(
                "syslog settings are only read with target: syslog, not {}",
                kind.value
            ))
            .hint("set `target: syslog`, or remove `syslog`");
            w.report(
                s.get("syslog").and_then(|n| n.pos),
                "access_log.syslog",
                problem,
            );
        }
    }
    let sample = {
        let ds = SampleConfig::default();
        let ss = w.section(
            s.get("sample"),
            "access_log.sample",
            &["errors_only", "one_in"],
        );
        SampleConfig {
            errors_only: w.get(&ss, "errors_only", ds.errors_only, boolean).value,
            one_in: w.get(&ss, "one_in", ds.one_in, int(1)).value,
        }
    };
    let buffer = w.get(&s, "buffer", d.buffer, buffer).value;
    AccessLogConfig {
        enabled,
        format,
        target,
        sample,
        buffer,
    }
}

fn format(node: &Node) -> Result<AccessLogFormat, Problem> {
    match text(node)?.as_str() {
        "json" => Ok(AccessLogFormat::Json),
        "combined" => Ok(AccessLogFormat::Combined),
        other => Err(Problem::new(format!("unknown format \"{other}\"")).hint("json or combined")),
    }
}

fn target_kind(node: &Node) -> Result<&'static str, Problem> {
    match text(node)?.as_str() {
        "stdout" => Ok("stdout"),
        "stderr" => Ok("stderr"),
        "file" => Ok("file"),
        "syslog" => Ok("syslog"),
        other => Err(Problem::new(format!("unknown target \"{other}\""))
            .hint("stdout, stderr, file (with `path`) or syslog (with `syslog`)")),
    }
}

fn buffer(node: &Node) -> Result<usize, Problem> {
    let lines: usize = int(1)(node)?;
    if lines > MAX_ACCESS_LOG_BUFFER {
        return Err(Problem::new(format!(
            "{lines} lines is over the limit of {MAX_ACCESS_LOG_BUFFER}"
        ))
        .hint("the buffer is memory held while the sink stalls; 8192 is the default"));
    }
    Ok(lines)
}

/// Reads `access_log.syslog` (defaults when absent: `/dev/log`, `local0`, `lb`).
fn syslog(w: &mut Walker<'_>, s: &Section<'_>) -> SyslogConfig {
    let ss = w.section(
        s.get("syslog"),
        "access_log.syslog",
        &["socket", "address", "facility", "app_name"],
    );
    let base = base_dir(w);
    let socket = w.get(&ss, "socket", None, |node| path(&base)(node).map(Some));
    let udp = w.get(&ss, "address", None, |node| address(node).map(Some));
    let destination = match (socket.value, udp.value) {
        (Some(_), Some(addr)) => {
            let problem = Problem::new("give syslog one destination, a socket or an address")
                .hint("remove socket or address");
            w.report(udp.pos, "access_log.syslog.address", problem);
            SyslogDestination::Address(addr)
        }
        (None, Some(addr)) => SyslogDestination::Address(addr),
        (Some(socket), None) => SyslogDestination::Socket(socket),
        (None, None) => SyslogDestination::Socket(PathBuf::from("/dev/log")),
    };
    let facility = w.get(&ss, "facility", 16u8, facility).value;
    let app_name = w.get(&ss, "app_name", "lb".to_owned(), app_name).value;
    SyslogConfig {
        destination,
        facility,
        app_name,
    }
}

fn facility(node: &Node) -> Result<u8, Problem> {
    let name = text(node)?;
    match FACILITIES.iter().position(|known| *known == name) {
        Some(number) => Ok(number as u8),
        None => {
            let mut problem = Problem::new(format!("unknown facility \"{name}\""));
            problem = match super::closest(&name, &FACILITIES) {
                Some(close) => problem.hint(format!("did you mean \"{close}\"?")),
                None => problem.hint("like local0 ... local7, daemon or user"),
            };
            Err(problem)
        }
    }
}

/// RFC 5424's APP-NAME: 1-48 printable US-ASCII characters, no space.
fn app_name(node: &Node) -> Result<String, Problem> {
    let name = text(node)?;
    if name.len() > MAX_APP_NAME || !name.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(Problem::new(format!(
            "\"{name}\" is not a syslog APP-NAME: 1 to {MAX_APP_NAME} printable ASCII characters \
             without spaces"
        )));
    }
    Ok(name)
}

/// Reads `request_id`.
pub(super) fn request_id(w: &mut Walker<'_>, top: &Section<'_>) -> RequestIdConfig {
    let d = RequestIdConfig::default();
    let s = w.section(top.get("request_id"), "request_id", &["enabled", "header"]);
    RequestIdConfig {
        enabled: w.get(&s, "enabled", d.enabled, boolean).value,
        header: w.get(&s, "header", d.header, header_name).value,
    }
}

/// A header name (RFC 9110 token), kept in lower case; not one the balancer writes itself.
fn header_name(node: &Node) -> Result<String, Problem> {
    let name = text(node)?.to_ascii_lowercase();
    let token = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(
            Problem::new(format!("\"{name}\" is not a header name")).hint("like X-Request-Id")
        );
    }
    const OURS: [&str; 11] = [
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "traceparent",
        "tracestate",
    ];
    if OURS.contains(&name.as_str()) {
        return Err(Problem::new(format!(
            "{name} is a header the balancer writes or frames by itself"
        ))
        .hint("like X-Request-Id"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_short_safe_tokens() {
        assert!(is_request_id(b"abc-123_x.y:z"));
        assert!(is_request_id(&[b'a'; MAX_REQUEST_ID]));
        assert!(!is_request_id(&[b'a'; MAX_REQUEST_ID + 1]));
        assert!(!is_request_id(b""));
        for bad in [
            &b"a b"[..],
            b"a\"b",
            b"a\\b",
            b"a/b",
            b"a\x00",
            b"\xc3\xa9",
            b"a,b",
        ] {
            assert!(!is_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn facilities_have_their_rfc_numbers() {
        assert_eq!(facility_name(16), "local0");
        assert_eq!(facility_name(3), "daemon");
        assert_eq!(facility_name(23), "local7");
    }
}
