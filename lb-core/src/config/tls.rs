//! The TLS and PROXY-protocol settings: `server.tls` (HTTPS termination), `server.proxy_protocol`
//! (the real client address from a layer-4 balancer), `server.http_redirect` (a plain listener
//! that sends clients to HTTPS), and `tls` / `proxy_protocol` on `upstream` (the default) and on
//! each backend (TLS and PROXY v2 towards backends).
//!
//! Only the settings are checked here: that the files named are readable and hold matching
//! certificates and keys is checked by `lb-cli check` and by the daemon when it loads them
//! (lb-core opens no file). A relative path is taken from the configuration file's directory,
//! as nginx does, so `cert: certs/site.pem` works whatever directory the daemon starts in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use super::node::{Node, Spanned};
use super::walk::{Problem, Section, Walker, address, boolean, int, text, url_path};

/// `server.tls`: HTTPS on the client listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerTlsConfig {
    /// The certificates, chosen by the client's SNI name; the first is the default for a client
    /// that sends no name or one no certificate covers.
    pub certificates: Vec<CertificateConfig>,
    /// The oldest TLS version accepted: 1.2 or 1.3 (older ones are never offered).
    pub min_version: TlsVersion,
    /// Whether clients may resume sessions with tickets (and TLS 1.2 session IDs).
    pub session_tickets: bool,
    /// Ticket keys shared by a fleet, so that a client resumes on any instance: one or more keys
    /// of 48 bytes each (`openssl rand 48`), the first encrypting, all decrypting. Without it,
    /// each instance makes and rotates its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_ticket_key_file: Option<PathBuf>,
    /// Reload certificates, keys and ticket keys when their files change.
    pub watch: bool,
    /// The application protocols offered by ALPN, in the order the balancer prefers them:
    /// `h2` (HTTP/2, served by hyper) and `http/1.1` (our own loop). A client that offers no
    /// ALPN speaks HTTP/1.1.
    pub alpn: Vec<Alpn>,
}

/// A protocol of `server.tls.alpn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 over TLS (RFC 9113 §3.2).
    H2,
    /// HTTP/1.1.
    Http11,
}

impl Alpn {
    /// The protocol's ALPN identifier, as written in the file and sent in the handshake.
    pub fn as_str(self) -> &'static str {
        match self {
            Alpn::H2 => "h2",
            Alpn::Http11 => "http/1.1",
        }
    }
}

impl Serialize for Alpn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The default of `server.tls.alpn`: HTTP/2 preferred, HTTP/1.1 for clients without it, as
/// browsers, HAProxy (2.8 on) and Caddy expect of an HTTPS edge.
pub const DEFAULT_ALPN: [Alpn; 2] = [Alpn::H2, Alpn::Http11];

/// One certificate of `server.tls.certificates`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertificateConfig {
    /// PEM file: the certificate, then its intermediates in order.
    pub cert: PathBuf,
    /// PEM file: its private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// SNI names it is chosen for (`*.example.com` for one level of subdomains); empty: the DNS
    /// names the certificate itself lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246), with forward-secret AEAD suites only.
    #[default]
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    /// `"1.2"` or `"1.3"`, as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

impl Serialize for TlsVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `server.proxy_protocol`: whether the listener reads a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    /// No header is read; a client that sends one gets an HTTP error (or a TLS failure).
    #[default]
    Off,
    /// A peer in `server.trusted_proxies` may open its connection with a v1 or v2 header, whose
    /// source address then stands for the client; any other peer that sends one is cut off.
    Accept,
}

impl Serialize for ProxyProtocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::Accept => "accept",
        })
    }
}

/// `server.http_redirect`: a plain-HTTP listener that answers `308` to the HTTPS listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedirectConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The port written in the `Location` (left out when it is 443); defaults to the port of
    /// `server.listen`.
    pub https_port: u16,
    /// Path prefixes proxied to the backends instead of redirected: ACME HTTP-01 challenges
    /// must be answered over plain HTTP.
    pub exempt_paths: Vec<String>,
}

/// The default of [`RedirectConfig::exempt_paths`]: ACME's HTTP-01 challenges (RFC 8555 §8.3).
pub const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// `tls` of a backend (or `upstream.tls`, the default): HTTPS towards it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct UpstreamTlsConfig {
    /// The name sent as SNI and verified in the backend's certificate; defaults to the
    /// backend's IP, verified against the certificate's IP addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// PEM file of the CAs that sign the backends' certificates; the system's roots without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate presented to the backend (mTLS), with `client_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

/// `proxy_protocol` of a backend (or `upstream.proxy_protocol`): whether each new connection to
/// it starts with a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendProxyProtocol {
    /// No header.
    #[default]
    Off,
    /// A v2 header naming the client; connections then carry one client's requests only.
    V2,
}

impl SendProxyProtocol {
    /// Whether the backend is sent a header.
    pub fn is_off(&self) -> bool {
        *self == SendProxyProtocol::Off
    }
}

impl Serialize for SendProxyProtocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            SendProxyProtocol::Off => "off",
            SendProxyProtocol::V2 => "v2",
        })
    }
}

/// The directory relative paths are taken from: the configuration file's.
pub(crate) fn base_dir(w: &Walker<'_>) -> PathBuf {
    Path::new(w.file())
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A file path; a relative one is joined to `base`.
pub(crate) fn path(base: &Path) -> impl Fn(&Node) -> Result<PathBuf, Problem> + '_ {
    move |node| {
        let written = text(node)?;
        if written.contains('\0') {
            return Err(Problem::new("a path may not hold a NUL byte"));
        }
        let written = PathBuf::from(written);
        Ok(if written.is_absolute() {
            written
        } else {
            base.join(written)
        })
    }
}

/// Whether `name` is a DNS name a certificate can be chosen for: letters, digits and hyphens in
/// labels of 1-63, at most 253 in all, and at most one `*` standing for the whole leftmost
/// label. Compared in lower case.
pub fn is_sni_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && name.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// `server.tls`, when written.
pub(crate) fn server_tls(w: &mut Walker<'_>, s: &Section<'_>) -> Option<ServerTlsConfig> {
    const FIELDS: [&str; 6] = [
        "certificates",
        "min_version",
        "session_tickets",
        "session_ticket_key_file",
        "watch",
        "alpn",
    ];
    let node = s.get("tls")?;
    if matches!(node.node, Node::Null) {
        return None;
    }
    let base = base_dir(w);
    let t = w.section(Some(node), &s.field("tls"), &FIELDS);
    let certificates = certificates(w, &t, &base);
    Some(ServerTlsConfig {
        certificates,
        min_version: w
            .get(&t, "min_version", TlsVersion::default(), tls_version)
            .value,
        session_tickets: w.get(&t, "session_tickets", true, boolean).value,
        session_ticket_key_file: w
            .get(&t, "session_ticket_key_file", None, |n| {
                path(&base)(n).map(Some)
            })
            .value,
        watch: w.get(&t, "watch", true, boolean).value,
        alpn: alpn(w, &t),
    })
}

/// `server.tls.alpn`: a non-empty list of `h2` and `http/1.1`, each at most once.
fn alpn(w: &mut Walker<'_>, t: &Section<'_>) -> Vec<Alpn> {
    let field = t.field("alpn");
    let hint = "a list of h2 and http/1.1 in the order preferred, like [h2, http/1.1]";
    let items = match t.get("alpn") {
        None => return DEFAULT_ALPN.to_vec(),
        Some(Spanned {
            node: Node::Seq(items),
            pos,
        }) => {
            if items.is_empty() {
                let problem = Problem::new("must offer at least one protocol").hint(hint);
                w.report(*pos, &field, problem);
                return DEFAULT_ALPN.to_vec();
            }
            items
        }
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of protocols, found {}",
                other.node.kind()
            ))
            .hint(hint);
            w.report(other.pos, &field, problem);
            return DEFAULT_ALPN.to_vec();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let protocol = match text(&item.node) {
            Ok(name) if name == "h2" => Alpn::H2,
            Ok(name) if name == "http/1.1" => Alpn::Http11,
            Ok(name) => {
                let problem = Problem::new(format!("unknown protocol \"{name}\""))
                    .hint("h2 (HTTP/2) or http/1.1; h2c is cleartext, see server.h2c");
                w.report(item.pos, &item_field, problem);
                continue;
            }
            Err(problem) => {
                w.report(item.pos, &item_field, problem);
                continue;
            }
        };
        if out.contains(&protocol) {
            let problem = Problem::new(format!("{} is listed twice", protocol.as_str()))
                .hint("remove one of the two");
            w.report(item.pos, &item_field, problem);
            continue;
        }
        out.push(protocol);
    }
    if out.is_empty() {
        return DEFAULT_ALPN.to_vec();
    }
    out
}

fn certificates(w: &mut Walker<'_>, t: &Section<'_>, base: &Path) -> Vec<CertificateConfig> {
    let field = t.field("certificates");
    let items = match t.get("certificates") {
        Some(Spanned {
            node: Node::Seq(items),
            pos,
        }) => {
            if items.is_empty() {
                let problem = Problem::new("must list at least one certificate")
                    .hint("like [{cert: site.pem, key: site-key.pem}]");
                w.report(*pos, &field, problem);
            }
            items
        }
        None => {
            let problem = Problem::new("missing required field")
                .hint("list the certificates: [{cert: site.pem, key: site-key.pem}]");
            w.report(t.pos, &field, problem);
            return Vec::new();
        }
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of certificates, found {}",
                other.node.kind()
            ))
            .hint("like [{cert: site.pem, key: site-key.pem}]");
            w.report(other.pos, &field, problem);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let c = w.section(Some(item), &item_field, &["cert", "key", "names"]);
        let required = |name: &str, w: &mut Walker<'_>| {
            if c.get(name).is_none() {
                let problem = Problem::new("missing required field")
                    .hint(format!("the PEM file of the {name}"));
                w.report(item.pos, &c.field(name), problem);
            }
            w.get(&c, name, PathBuf::new(), path(base)).value
        };
        let cert = required("cert", w);
        let key = required("key", w);
        let names = names(w, &c);
        out.push(CertificateConfig { cert, key, names });
    }
    out
}

fn names(w: &mut Walker<'_>, c: &Section<'_>) -> Vec<String> {
    let field = c.field("names");
    let items = match c.get("names") {
        None
        | Some(Spanned {
            node: Node::Null, ..
        }) => return Vec::new(),
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => items,
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of names, found {}",
                other.node.kind()
            ))
            .hint("like [example.com, \"*.example.com\"]");
            w.report(other.pos, &field, problem);
            return Vec::new();
        }
    };
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match text(&item.node) {
            Ok(name) if is_sni_name(&name) => {
                let name = name.to_ascii_lowercase();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            Ok(name) => w.report(
                item.pos,
                &format!("{field}[{i}]"),
                Problem::new(format!("\"{name}\" is not a DNS name"))
                    .hint("like example.com or \"*.example.com\"; SNI carries no IP addresses"),
            ),
            Err(problem) => w.report(item.pos, &format!("{field}[{i}]"), problem),
        }
    }
    out
}

fn tls_version(node: &Node) -> Result<TlsVersion, Problem> {
    let written = match node {
        Node::Float(f) => f.to_string(),
        Node::Str(s) => s.trim().to_owned(),
        other => {
            return Err(
                Problem::new(format!("expected a TLS version, found {}", other.kind()))
                    .hint("\"1.2\" or \"1.3\""),
            );
        }
    };
    let bare = written
        .strip_prefix("TLSv")
        .or_else(|| written.strip_prefix("tlsv"))
        .unwrap_or(&written);
    match bare {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        "1.0" | "1.1" | "1" => Err(Problem::new(format!(
            "TLS {bare} is not supported: it is deprecated (RFC 8996)"
        ))
        .hint("\"1.2\" or \"1.3\"")),
        _ => {
            Err(Problem::new(format!("unknown TLS version \"{written}\""))
                .hint("\"1.2\" or \"1.3\""))
        }
    }
}

/// `server.proxy_protocol`; accepting it needs peers trusted to send it.
pub(crate) fn proxy_protocol(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    trusted_proxies: &[crate::net::Cidr],
) -> ProxyProtocol {
    let mode = proxy_protocol_mode(w, s);
    if mode.value == ProxyProtocol::Accept && trusted_proxies.is_empty() {
        let problem = Problem::new(
            "accept needs server.trusted_proxies: only peers in it may send a PROXY header",
        )
        .hint("list the layer-4 balancers' addresses, like [10.0.0.0/8]");
        w.report(mode.pos, &s.field("proxy_protocol"), problem);
    }
    mode.value
}

fn proxy_protocol_mode(w: &mut Walker<'_>, s: &Section<'_>) -> super::walk::Got<ProxyProtocol> {
    w.get(s, "proxy_protocol", ProxyProtocol::Off, |node| match node {
        Node::Bool(false) => Ok(ProxyProtocol::Off),
        Node::Str(mode) if mode == "off" => Ok(ProxyProtocol::Off),
        Node::Str(mode) if mode == "accept" => Ok(ProxyProtocol::Accept),
        other => Err(Problem::new(format!(
            "expected \"accept\" or \"off\", found {}",
            describe(other)
        ))
        .hint("accept: trusted peers (server.trusted_proxies) may send a v1 or v2 header")),
    })
}

/// `server.http_redirect`, when written; `https_listen` is `server.listen`.
pub(crate) fn http_redirect(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    https_listen: SocketAddr,
) -> Option<(RedirectConfig, super::node::Pos)> {
    let node = s.get("http_redirect")?;
    if matches!(node.node, Node::Null) {
        return None;
    }
    let r = w.section(
        Some(node),
        &s.field("http_redirect"),
        &["listen", "https_port", "exempt_paths"],
    );
    if r.get("listen").is_none() {
        let problem = Problem::new("missing required field").hint("like 0.0.0.0:80");
        w.report(node.pos, &r.field("listen"), problem);
    }
    let listen = w.get(&r, "listen", SocketAddr::from(([0, 0, 0, 0], 80)), address);
    let https_port = w.get(&r, "https_port", https_listen.port(), int(1)).value;
    let exempt_paths = match r.get("exempt_paths") {
        None => vec![ACME_CHALLENGE_PATH.to_owned()],
        Some(Spanned {
            node: Node::Null, ..
        }) => Vec::new(),
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => {
            let mut paths = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match url_path(&item.node) {
                    Ok(path) => paths.push(path),
                    Err(problem) => w.report(
                        item.pos,
                        &format!("{}[{i}]", r.field("exempt_paths")),
                        problem,
                    ),
                }
            }
            paths
        }
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of path prefixes, found {}",
                other.node.kind()
            ))
            .hint(format!("like [\"{ACME_CHALLENGE_PATH}\"]"));
            w.report(other.pos, &r.field("exempt_paths"), problem);
            Vec::new()
        }
    };
    let config = RedirectConfig {
        listen: listen.value,
        https_port,
        exempt_paths,
    };
    Some((config, listen.pos.or(node.pos)))
}

/// `tls` of a backend or of `upstream`: `true`, `false` or a mapping of settings. `inherited`
/// is the value when the field is absent.
pub(crate) fn upstream_tls(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    inherited: Option<UpstreamTlsConfig>,
) -> Option<UpstreamTlsConfig> {
    const FIELDS: [&str; 4] = ["sni", "ca_file", "client_cert", "client_key"];
    let Some(node) = s.get("tls") else {
        return inherited;
    };
    let field = s.field("tls");
    let base = base_dir(w);
    match &node.node {
        Node::Bool(false) | Node::Null => None,
        Node::Bool(true) => Some(UpstreamTlsConfig::default()),
        Node::Map(_) => {
            let t = w.section(Some(node), &field, &FIELDS);
            let sni = w.get(&t, "sni", None, |node| {
                let name = text(node)?;
                let ip = name.parse::<std::net::IpAddr>().is_ok();
                if ip || is_sni_name(&name) && !name.starts_with("*.") {
                    Ok(Some(name.to_ascii_lowercase()))
                } else {
                    Err(
                        Problem::new(format!("\"{name}\" is not a DNS name or IP address")).hint(
                            "the name the backend's certificate is issued for, like api.internal",
                        ),
                    )
                }
            });
            let file = |w: &mut Walker<'_>, name: &str| {
                w.get(&t, name, None, |n| path(&base)(n).map(Some)).value
            };
            let ca_file = file(w, "ca_file");
            let client_cert = file(w, "client_cert");
            let client_key = file(w, "client_key");
            if client_cert.is_some() != client_key.is_some() {
                let (missing, present) = match client_cert {
                    Some(_) => ("client_key", "client_cert"),
                    None => ("client_cert", "client_key"),
                };
                let pos = t.get(present).and_then(|n| n.pos);
                w.report(
                    pos,
                    &t.field(missing),
                    Problem::new(format!("{present} is set but {missing} is not"))
                        .hint("a client certificate needs its key, and the other way round"),
                );
            }
            Some(UpstreamTlsConfig {
                sni: sni.value,
                ca_file,
                client_cert,
                client_key,
            })
        }
        other => {
            let problem = Problem::new(format!(
                "expected true, false or a mapping of TLS settings, found {}",
                other.kind()
            ))
            .hint("like `tls: true` or `tls: {sni: api.internal, ca_file: ca.pem}`");
            w.report(node.pos, &field, problem);
            inherited
        }
    }
}

/// `proxy_protocol` of a backend or of `upstream`; `inherited` when absent.
pub(crate) fn send_proxy_protocol(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    inherited: SendProxyProtocol,
) -> SendProxyProtocol {
    w.get(s, "proxy_protocol", inherited, |node| match node {
        Node::Bool(false) => Ok(SendProxyProtocol::Off),
        Node::Str(mode) if mode == "off" => Ok(SendProxyProtocol::Off),
        Node::Str(mode) if mode == "v2" => Ok(SendProxyProtocol::V2),
        Node::Str(mode) if mode == "v1" => Err(Problem::new(
            "only v2 is sent: it is binary, cheaper to parse and carries IPv6 the same way",
        )
        .hint("write \"v2\"")),
        other => Err(Problem::new(format!(
            "expected \"v2\" or \"off\", found {}",
            describe(other)
        ))),
    })
    .value
}

/// `server.h2c` is cleartext HTTP/2: not on a TLS listener, and not behind a PROXY header (its
/// connections go to hyper, which reads no header).
pub(crate) fn check_h2c(w: &mut Walker<'_>, s: &Section<'_>, server: &super::ServerConfig) {
    if !server.h2c || server.tls.is_none() && server.proxy_protocol == ProxyProtocol::Off {
        return;
    }
    let with = match server.tls.is_some() {
        true => "server.tls: h2c is HTTP/2 over cleartext",
        false => "server.proxy_protocol",
    };
    let problem = Problem::new(format!("h2c cannot be combined with {with}"))
        .hint("turn h2c off; TLS listeners offer HTTP/2 by ALPN instead (server.tls.alpn)");
    let pos = s.get("h2c").and_then(|node| node.pos);
    w.report(pos, &s.field("h2c"), problem);
}

/// The rules across sections: a redirect listener needs an HTTPS listener to send clients to,
/// and a port of its own.
pub(crate) fn check_listeners(
    w: &mut Walker<'_>,
    server: &super::ServerConfig,
    redirect_pos: super::node::Pos,
    server_listen: &super::walk::Got<SocketAddr>,
    metrics: &super::MetricsConfig,
) {
    if let Some(redirect) = &server.http_redirect {
        let field = "server.http_redirect.listen";
        if server.tls.is_none() {
            let problem = Problem::new("redirects to HTTPS, but server.tls is not set")
                .hint("add server.tls with a certificate, or remove http_redirect");
            w.report(redirect_pos, "server.http_redirect", problem);
        } else if super::validate::clash(redirect.listen, server.listen) {
            let on_line = server_listen
                .pos
                .map(|(line, _)| format!(" on line {line}"))
                .unwrap_or_default();
            let problem = Problem::new(format!(
                "{} clashes with server.listen{on_line}",
                redirect.listen
            ))
            .hint("the redirect listener needs its own port, like 80 beside 443");
            w.report(redirect_pos, field, problem);
        } else if metrics.enabled && super::validate::clash(redirect.listen, metrics.listen) {
            let problem = Problem::new(format!("{} clashes with metrics.listen", redirect.listen))
                .hint("give metrics its own port");
            w.report(redirect_pos, field, problem);
        }
    }
}

fn describe(node: &Node) -> String {
    match node {
        Node::Str(s) => format!("\"{s}\""),
        other => other.kind().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_sni_name;

    #[test]
    fn sni_names() {
        for good in [
            "localhost",
            "example.com",
            "*.example.com",
            "a-b.c0",
            "xn--bcher-kva.ch",
        ] {
            assert!(is_sni_name(good), "{good}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "-a.com",
            "a-.com",
            "a.*.com",
            "foo*.com",
            "127.0.0.1",
            "exa mple.com",
            "under_score.com",
        ] {
            assert!(!is_sni_name(bad), "{bad}");
        }
        assert!(!is_sni_name(&format!("{}.com", "a".repeat(64))));
    }
}
