//! `protocol` (a backend's, or `upstream.protocol` as a pool's default) and `upstream.http2`:
//! what a valid file gives, and each rule with its line, column and field.

use lb_core::config::{Format, UpstreamHttp2Config, UpstreamProtocol, parse};

fn ok(source: &str) -> lb_core::config::Config {
    parse(source, Format::Yaml, "lb.yaml").unwrap_or_else(|errors| panic!("{errors}"))
}

/// Every error as `line:column: field: message`.
fn errors(source: &str) -> Vec<String> {
    let errors = parse(source, Format::Yaml, "lb.yaml").expect_err("invalid");
    (errors.0.iter())
        .map(|error| {
            format!(
                "{}:{}: {}: {}",
                error.line.unwrap_or(0),
                error.column.unwrap_or(0),
                error.field,
                error.message
            )
        })
        .collect()
}

#[test]
fn http1_is_the_default_and_each_backend_may_choose() {
    let config = ok("upstream:\n  http2:\n    max_streams_per_connection: 50\n\
         backends:\n  - address: 127.0.0.1:8001\n  - address: 127.0.0.1:8002\n    protocol: h2c\n");
    assert_eq!(config.backends[0].protocol, UpstreamProtocol::Http1);
    assert_eq!(config.backends[1].protocol, UpstreamProtocol::H2c);
    assert_eq!(config.upstream.http2.max_streams_per_connection, 50);
    assert_eq!(
        config.upstream.http2.max_connections_per_backend,
        UpstreamHttp2Config::default().max_connections_per_backend
    );
}

#[test]
fn a_pool_gives_its_protocol_to_its_backends() {
    let config = ok(
        "pools:\n  grpc:\n    upstream:\n      protocol: h2c\n    backends:\n      - address: 127.0.0.1:8001\n\
         routes:\n  - match: {path_prefix: /}\n    pool: grpc\n",
    );
    let pools = config.pool_list();
    let pool = pools.iter().find(|pool| pool.name == "grpc").unwrap();
    assert_eq!(pool.backends[0].protocol, UpstreamProtocol::H2c);
}

#[test]
fn h2_with_tls_is_accepted() {
    let config = ok("backends:\n  - address: 127.0.0.1:8001\n    protocol: h2\n    tls: true\n");
    assert_eq!(config.backends[0].protocol, UpstreamProtocol::H2);
}

#[test]
fn h2_needs_tls() {
    assert_eq!(
        errors("backends:\n  - address: 127.0.0.1:8001\n    protocol: h2\n"),
        ["3:15: backends[0].protocol: h2 is HTTP/2 over TLS, and this backend has no tls"]
    );
    assert_eq!(
        errors("upstream:\n  protocol: h2\nbackends:\n  - address: 127.0.0.1:8001\n"),
        ["2:13: upstream.protocol: h2 is HTTP/2 over TLS, and this backend has no tls"]
    );
}

#[test]
fn h2c_is_cleartext() {
    assert_eq!(
        errors(
            "upstream:\n  tls: true\nbackends:\n  - address: 127.0.0.1:8001\n    protocol: h2c\n"
        ),
        ["5:15: backends[0].protocol: h2c is cleartext HTTP/2, and this backend has tls"]
    );
}

#[test]
fn http2_sends_no_proxy_header() {
    let found = errors(
        "backends:\n  - address: 127.0.0.1:8001\n    protocol: h2c\n    proxy_protocol: v2\n",
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("3:15: backends[0].protocol: proxy_protocol cannot be combined"),
        "{found:?}"
    );
}

#[test]
fn unknown_protocols_and_bounds_are_refused() {
    assert_eq!(
        errors("backends:\n  - address: 127.0.0.1:8001\n    protocol: http3\n"),
        ["3:15: backends[0].protocol: expected \"http1\", \"h2c\" or \"h2\", found \"http3\""]
    );
    assert_eq!(
        errors("backends:\n  - address: 127.0.0.1:8001\n    protocol: http2\n"),
        ["3:15: backends[0].protocol: \"http2\" is ambiguous"]
    );
    assert_eq!(
        errors(
            "upstream:\n  http2:\n    max_streams_per_connection: 0\nbackends:\n  - address: 127.0.0.1:8001\n"
        ),
        ["3:33: upstream.http2.max_streams_per_connection: must be at least 1, found 0"]
    );
    assert_eq!(
        errors(
            "upstream:\n  http2:\n    max_connections_per_backend: 5000\nbackends:\n  - address: 127.0.0.1:8001\n"
        ),
        ["3:34: upstream.http2.max_connections_per_backend: must be at most 1000, found 5000"]
    );
}
