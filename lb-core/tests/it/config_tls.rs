//! The TLS and PROXY-protocol settings: what a valid file gives (paths taken from the file's
//! directory, upstream defaults inherited by backends), and each rule with its position.

use std::path::PathBuf;

use lb_core::config::{
    ACME_CHALLENGE_PATH, Alpn, Format, ProxyProtocol, SendProxyProtocol, TlsVersion, parse,
};

const BACKENDS: &str = "backends:\n  - address: 127.0.0.1:8001\n";

fn ok(source: &str) -> lb_core::config::Config {
    parse(source, Format::Yaml, "/etc/lb/lb.yaml").unwrap_or_else(|errors| panic!("{errors}"))
}

/// The first error as `line:column: field: message (hint: ...)`.
fn first_error(source: &str) -> String {
    let errors = parse(source, Format::Yaml, "lb.yaml").expect_err("invalid");
    let error = &errors.0[0];
    format!(
        "{}:{}: {}: {}{}",
        error.line.unwrap_or(0),
        error.column.unwrap_or(0),
        error.field,
        error.message,
        error
            .hint
            .as_ref()
            .map(|h| format!(" (hint: {h})"))
            .unwrap_or_default()
    )
}

#[test]
fn a_full_tls_section_reads_with_paths_from_the_file_directory() {
    let config = ok(&format!(
        "server:
  listen: 0.0.0.0:443
  trusted_proxies: [10.0.0.0/8]
  proxy_protocol: accept
  tls:
    certificates:
      - {{cert: certs/a.pem, key: certs/a-key.pem}}
      - cert: /abs/b.pem
        key: /abs/b-key.pem
        names: [B.example.com, \"*.b.example.com\"]
    min_version: 1.3
    session_tickets: false
    session_ticket_key_file: tickets.key
    watch: false
  http_redirect:
    listen: 0.0.0.0:80
{BACKENDS}"
    ));
    let tls = config.server.tls.expect("tls");
    assert_eq!(
        tls.certificates[0].cert,
        PathBuf::from("/etc/lb/certs/a.pem")
    );
    assert_eq!(
        tls.certificates[0].key,
        PathBuf::from("/etc/lb/certs/a-key.pem")
    );
    assert!(tls.certificates[0].names.is_empty());
    assert_eq!(tls.certificates[1].cert, PathBuf::from("/abs/b.pem"));
    assert_eq!(
        tls.certificates[1].names,
        ["b.example.com", "*.b.example.com"]
    );
    assert_eq!(tls.min_version, TlsVersion::Tls13);
    assert!(!tls.session_tickets && !tls.watch);
    assert_eq!(
        tls.session_ticket_key_file,
        Some(PathBuf::from("/etc/lb/tickets.key"))
    );
    assert_eq!(config.server.proxy_protocol, ProxyProtocol::Accept);
    let redirect = config.server.http_redirect.expect("redirect");
    assert_eq!(redirect.https_port, 443);
    assert_eq!(redirect.exempt_paths, [ACME_CHALLENGE_PATH]);
}

#[test]
fn defaults_are_safe() {
    let config = ok(&format!(
        "server:\n  tls:\n    certificates: [{{cert: a.pem, key: k.pem}}]\n{BACKENDS}"
    ));
    let tls = config.server.tls.expect("tls");
    assert_eq!(tls.min_version, TlsVersion::Tls12);
    assert!(tls.session_tickets && tls.watch);
    assert_eq!(tls.session_ticket_key_file, None);
    // HTTP/2 preferred, HTTP/1.1 for clients without it.
    assert_eq!(tls.alpn, [Alpn::H2, Alpn::Http11]);
    assert_eq!(config.server.proxy_protocol, ProxyProtocol::Off);
    assert!(config.server.http_redirect.is_none());
    assert!(ok(BACKENDS).server.tls.is_none());
}

#[test]
fn backends_inherit_upstream_tls_and_may_override_it() {
    let config = ok("upstream:
  tls: {sni: api.internal, ca_file: ca.pem}
  proxy_protocol: v2
backends:
  - address: 10.0.0.1:443
  - address: 10.0.0.2:80
    tls: false
    proxy_protocol: off
  - address: 10.0.0.3:443
    tls: {client_cert: c.pem, client_key: k.pem}
");
    let b = &config.backends;
    let inherited = b[0].tls.as_ref().expect("inherited");
    assert_eq!(inherited.sni.as_deref(), Some("api.internal"));
    assert_eq!(inherited.ca_file, Some(PathBuf::from("/etc/lb/ca.pem")));
    assert_eq!(b[0].proxy_protocol, SendProxyProtocol::V2);
    assert!(b[1].tls.is_none());
    assert_eq!(b[1].proxy_protocol, SendProxyProtocol::Off);
    let own = b[2].tls.as_ref().expect("own");
    assert_eq!(own.sni, None);
    assert_eq!(own.client_cert, Some(PathBuf::from("/etc/lb/c.pem")));
    assert!(
        ok("backends:\n  - {address: 10.0.0.1:443, tls: true}\n").backends[0]
            .tls
            .is_some()
    );
}

#[test]
fn each_rule_with_its_position() {
    let tls = |body: &str| format!("server:\n  tls:\n{body}{BACKENDS}");
    let cases: Vec<(String, &str)> = vec![
        (
            tls("    min_version: 1.1\n    certificates: [{cert: a, key: b}]\n"),
            "3:18: server.tls.min_version: TLS 1.1 is not supported: it is deprecated (RFC 8996) (hint: \"1.2\" or \"1.3\")",
        ),
        (
            tls("    watch: true\n"),
            "3:5: server.tls.certificates: missing required field (hint: list the certificates: [{cert: site.pem, key: site-key.pem}])",
        ),
        (
            tls("    certificates: []\n"),
            "3:19: server.tls.certificates: must list at least one certificate (hint: like [{cert: site.pem, key: site-key.pem}])",
        ),
        (
            tls("    certificates:\n      - cert: a.pem\n"),
            "4:9: server.tls.certificates[0].key: missing required field (hint: the PEM file of the key)",
        ),
        (
            tls("    certificates:\n      - {cert: a.pem, key: b.pem, names: [10.0.0.1]}\n"),
            "4:43: server.tls.certificates[0].names[0]: \"10.0.0.1\" is not a DNS name (hint: like example.com or \"*.example.com\"; SNI carries no IP addresses)",
        ),
        (
            tls("    certificates: [{cert: a, key: b, chain: c}]\n"),
            "3:38: server.tls.certificates[0].chain: unknown field \"chain\" (hint: expected one of: cert, key, names)",
        ),
        (
            format!("server:\n  proxy_protocol: accept\n{BACKENDS}"),
            "2:19: server.proxy_protocol: accept needs server.trusted_proxies: only peers in it may send a PROXY header (hint: list the layer-4 balancers' addresses, like [10.0.0.0/8])",
        ),
        (
            format!("server:\n  proxy_protocol: yes\n{BACKENDS}"),
            "2:19: server.proxy_protocol: expected \"accept\" or \"off\", found a boolean (hint: accept: trusted peers (server.trusted_proxies) may send a v1 or v2 header)",
        ),
        (
            format!("server:\n  http_redirect:\n    listen: 0.0.0.0:80\n{BACKENDS}"),
            "3:13: server.http_redirect: redirects to HTTPS, but server.tls is not set (hint: add server.tls with a certificate, or remove http_redirect)",
        ),
        (
            format!(
                "server:\n  listen: 0.0.0.0:443\n  tls:\n    certificates: [{{cert: a, key: b}}]\n  http_redirect:\n    listen: 127.0.0.1:443\n{BACKENDS}"
            ),
            "6:13: server.http_redirect.listen: 127.0.0.1:443 clashes with server.listen on line 2 (hint: the redirect listener needs its own port, like 80 beside 443)",
        ),
        (
            "backends:\n  - address: 10.0.0.1:443\n    tls: {client_cert: c.pem}\n".to_owned(),
            "3:24: backends[0].tls.client_key: client_cert is set but client_key is not (hint: a client certificate needs its key, and the other way round)",
        ),
        (
            "backends:\n  - address: 10.0.0.1:443\n    tls: {sni: \"*.x.com\"}\n".to_owned(),
            "3:16: backends[0].tls.sni: \"*.x.com\" is not a DNS name or IP address (hint: the name the backend's certificate is issued for, like api.internal)",
        ),
        (
            "backends:\n  - address: 10.0.0.1:443\n    tls: 3\n".to_owned(),
            "3:10: backends[0].tls: expected true, false or a mapping of TLS settings, found a number (hint: like `tls: true` or `tls: {sni: api.internal, ca_file: ca.pem}`)",
        ),
        (
            format!(
                "server:\n  h2c: true\n  tls:\n    certificates: [{{cert: a, key: b}}]\n{BACKENDS}"
            ),
            "2:8: server.h2c: h2c cannot be combined with server.tls: h2c is HTTP/2 over cleartext (hint: turn h2c off; TLS listeners offer HTTP/2 by ALPN instead (server.tls.alpn))",
        ),
        (
            tls("    certificates: [{cert: a, key: b}]\n    alpn: [h2, h2c]\n"),
            "4:16: server.tls.alpn[1]: unknown protocol \"h2c\" (hint: h2 (HTTP/2) or http/1.1; h2c is cleartext, see server.h2c)",
        ),
        (
            tls("    certificates: [{cert: a, key: b}]\n    alpn: [http/1.1, http/1.1]\n"),
            "4:22: server.tls.alpn[1]: http/1.1 is listed twice (hint: remove one of the two)",
        ),
        (
            tls("    certificates: [{cert: a, key: b}]\n    alpn: []\n"),
            "4:11: server.tls.alpn: must offer at least one protocol (hint: a list of h2 and http/1.1 in the order preferred, like [h2, http/1.1])",
        ),
        (
            tls("    certificates: [{cert: a, key: b}]\n    alpn: h2\n"),
            "4:11: server.tls.alpn: expected a list of protocols, found a string (hint: a list of h2 and http/1.1 in the order preferred, like [h2, http/1.1])",
        ),
        (
            "upstream:\n  proxy_protocol: v1\nbackends:\n  - address: 10.0.0.1:80\n".to_owned(),
            "2:19: upstream.proxy_protocol: only v2 is sent: it is binary, cheaper to parse and carries IPv6 the same way (hint: write \"v2\")",
        ),
    ];
    for (source, want) in cases {
        assert_eq!(first_error(&source), want, "\n{source}");
    }
}

#[test]
fn show_output_parses_back_to_the_same_config() {
    let source = "server:
  listen: 0.0.0.0:443
  tls:
    certificates: [{cert: /c/a.pem, key: /c/a-key.pem, names: [a.com]}]
    session_ticket_key_file: /c/t.key
  http_redirect: {listen: 0.0.0.0:80, exempt_paths: []}
upstream:
  tls: {sni: api.internal}
backends:
  - address: 10.0.0.1:443
    proxy_protocol: v2
";
    let config = ok(source);
    let shown = serde_json::to_string(&config).unwrap();
    let again = parse(&shown, Format::Json, "/etc/lb/lb.json").unwrap();
    assert_eq!(again, config);
}
