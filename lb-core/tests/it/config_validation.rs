//! Every validation rule, each asserted with its exact line, column and field.

use lb_core::config::{ConfigError, Format, parse};

/// A backend list to append to cases that are about some other section.
const BACKENDS: &str = "backends:\n  - address: 127.0.0.1:8001\n";

fn errors(source: &str, format: Format) -> Vec<ConfigError> {
    match parse(source, format, "lb.yaml") {
        Ok(config) => panic!("expected errors, parsed {config:?}\nsource:\n{source}"),
        Err(errors) => errors.0,
    }
}

/// (case, source, expected errors as (line, column, field, message fragment, hint fragment)).
type Case = (
    &'static str,
    String,
    Vec<(u32, u32, &'static str, &'static str, &'static str)>,
);

fn with_backends(section: &str) -> String {
    format!("{section}{BACKENDS}")
}

fn cases() -> Vec<Case> {
    vec![
        (
            "unknown top-level field",
            with_backends("sever:\n  listen: 0.0.0.0:80\n"),
            vec![(1, 1, "sever", "unknown field \"sever\"", "did you mean \"server\"?")],
        ),
        (
            "unknown nested field",
            with_backends("server:\n  listn: 0.0.0.0:80\n"),
            vec![(2, 3, "server.listn", "unknown field \"listn\"", "did you mean \"listen\"?")],
        ),
        (
            "unknown field far from any",
            with_backends("retry:\n  banana: 1\n"),
            vec![(2, 3, "retry.banana", "unknown field", "expected one of: max_attempts")],
        ),
        (
            "unknown backend field",
            "backends:\n  - address: 127.0.0.1:8001\n    wieght: 2\n".into(),
            vec![(3, 5, "backends[0].wieght", "unknown field", "did you mean \"weight\"?")],
        ),
        (
            "duplicate key",
            with_backends("server:\n  workers: 1\n  workers: 2\n"),
            vec![(3, 3, "server.workers", "duplicate field, first set on line 2", "")],
        ),
        (
            "unknown algorithm",
            with_backends("load_balancer:\n  algorithm: least_connection\n"),
            vec![(2, 14, "load_balancer.algorithm", "unknown algorithm \"least_connection\"", "did you mean \"least_connections\"?")],
        ),
        (
            "algorithm far from any",
            with_backends("load_balancer:\n  algorithm: fastest\n"),
            vec![(2, 14, "load_balancer.algorithm", "unknown algorithm", "expected one of: round_robin")],
        ),
        (
            "wrong type: string for number",
            with_backends("server:\n  workers: many\n"),
            vec![(2, 12, "server.workers", "expected a whole number, found a string", "")],
        ),
        (
            "wrong type: fraction for integer",
            with_backends("server:\n  max_client_connections: 2.5\n"),
            vec![(2, 27, "server.max_client_connections", "expected a whole number, found 2.5", "")],
        ),
        (
            "wrong type: nothing for address",
            with_backends("server:\n  listen:\n"),
            vec![(2, 9, "server.listen", "expected an ip:port address, found nothing", "")],
        ),
        (
            "wrong type: number for bool",
            with_backends("metrics:\n  enabled: 1\n"),
            vec![(2, 12, "metrics.enabled", "expected true or false, found a number", "")],
        ),
        (
            "wrong type: section is a list",
            with_backends("server: [1]\n"),
            vec![(1, 9, "server", "expected a mapping of fields, found a list", "")],
        ),
        (
            "bad address: host name",
            with_backends("server:\n  listen: localhost:8080\n"),
            vec![(2, 11, "server.listen", "\"localhost:8080\" is not an ip:port address", "host names are not resolved")],
        ),
        (
            "bad address: port only",
            with_backends("server:\n  listen: \"8080\"\n"),
            vec![(2, 11, "server.listen", "not an ip:port address", "add an IP, like 0.0.0.0:8080")],
        ),
        (
            "bad address: no port",
            "backends:\n  - address: 10.0.0.1\n".into(),
            vec![(2, 14, "backends[0].address", "not an ip:port address", "add a port, like 10.0.0.1:8080")],
        ),
        (
            "bad address: a number",
            with_backends("metrics:\n  listen: 9090\n"),
            vec![(2, 11, "metrics.listen", "expected an ip:port address, found a number", "0.0.0.0:9090")],
        ),
        (
            "missing backend address",
            "backends:\n  - name: a\n".into(),
            vec![(2, 5, "backends[0].address", "missing required field", "")],
        ),
        (
            "duplicate backend address",
            "backends:\n  - address: 127.0.0.1:1\n  - address: 127.0.0.1:1\n".into(),
            vec![(3, 14, "backends[1].address", "duplicate address 127.0.0.1:1, already used by backends[0] on line 2", "")],
        ),
        (
            "duplicate backend name",
            "backends:\n  - name: a\n    address: 127.0.0.1:1\n  - name: a\n    address: 127.0.0.1:2\n".into(),
            vec![(4, 11, "backends[1].name", "duplicate name \"a\", already used by backends[0] on line 2", "own name")],
        ),
        (
            "weight 0",
            "backends:\n  - address: 127.0.0.1:1\n    weight: 0\n".into(),
            vec![(3, 13, "backends[0].weight", "must be at least 1, found 0", "")],
        ),
        (
            "negative weight",
            "backends:\n  - address: 127.0.0.1:1\n    weight: -2\n".into(),
            vec![(3, 13, "backends[0].weight", "must be at least 1, found -2", "")],
        ),
        (
            "weight too large",
            "backends:\n  - address: 127.0.0.1:1\n    weight: 5000000000\n".into(),
            vec![(3, 13, "backends[0].weight", "5000000000 is too large", "")],
        ),
        (
            "max_connections 0",
            "backends:\n  - address: 127.0.0.1:1\n    max_connections: 0\n".into(),
            vec![(3, 22, "backends[0].max_connections", "must be at least 1, found 0", "")],
        ),
        (
            "backend not a mapping",
            "backends:\n  - 127.0.0.1:1\n".into(),
            vec![(2, 5, "backends[0]", "expected a backend mapping, found a string", "")],
        ),
        (
            "thresholds 0",
            with_backends("health_check:\n  unhealthy_threshold: 0\n  healthy_threshold: 0\n"),
            vec![
                (2, 24, "health_check.unhealthy_threshold", "must be at least 1", ""),
                (3, 22, "health_check.healthy_threshold", "must be at least 1", ""),
            ],
        ),
        (
            "breaker thresholds 0",
            with_backends("circuit_breaker:\n  failure_threshold: 0\n  half_open_max_requests: 0\n  success_threshold: 0\n"),
            vec![
                (2, 22, "circuit_breaker.failure_threshold", "must be at least 1", ""),
                (3, 27, "circuit_breaker.half_open_max_requests", "must be at least 1", ""),
                (4, 22, "circuit_breaker.success_threshold", "must be at least 1", ""),
            ],
        ),
        (
            "timeout equal to interval",
            with_backends("health_check:\n  interval: 2s\n  timeout: 2s\n"),
            vec![(3, 12, "health_check.timeout", "must be shorter than interval (2s), found 2s", "")],
        ),
        (
            "default timeout above interval",
            with_backends("health_check:\n  interval: 500ms\n"),
            vec![(2, 13, "health_check.interval", "must be shorter than interval (500ms), found 1s", "")],
        ),
        (
            "base_delay above max_delay",
            with_backends("retry:\n  base_delay: 3s\n  max_delay: 1s\n"),
            vec![(2, 15, "retry.base_delay", "must not exceed max_delay (1s), found 3s", "")],
        ),
        (
            "max_open_duration below open_duration",
            with_backends("circuit_breaker:\n  open_duration: 1m\n  max_open_duration: 30s\n"),
            vec![(3, 22, "circuit_breaker.max_open_duration", "must be at least open_duration (1m), found 30s", "")],
        ),
        (
            "max_attempts 0",
            with_backends("retry:\n  max_attempts: 0\n"),
            vec![(2, 17, "retry.max_attempts", "must be at least 1, found 0", "")],
        ),
        (
            "budget_ratio above 1",
            with_backends("retry:\n  budget_ratio: 1.5\n"),
            vec![(2, 17, "retry.budget_ratio", "must be between 0.0 and 1.0, found 1.5", "")],
        ),
        (
            "budget_ratio negative",
            with_backends("retry:\n  budget_ratio: -0.1\n"),
            vec![(2, 17, "retry.budget_ratio", "must be between 0.0 and 1.0", "")],
        ),
        (
            "bad retry condition",
            with_backends("retry:\n  retry_on: [connect_eror, 503, 600]\n"),
            vec![
                (2, 14, "retry.retry_on[0]", "unknown retry condition \"connect_eror\"", "did you mean \"connect_error\"?"),
                (2, 33, "retry.retry_on[2]", "status 600 is outside 100-599", ""),
            ],
        ),
        (
            "bad gRPC retry conditions",
            with_backends("retry:\n  retry_on: [grpc_unavailabel, grpc_ok, grpc_unavailable]\n"),
            vec![
                (2, 14, "retry.retry_on[0]", "unknown retry condition \"grpc_unavailabel\"", "did you mean \"grpc_unavailable\"?"),
                (2, 32, "retry.retry_on[1]", "unknown retry condition \"grpc_ok\"", "grpc_unavailable"),
            ],
        ),
        (
            "replay buffer too large",
            with_backends("retry:\n  replay_buffer_bytes: 100000000\n"),
            vec![(2, 24, "retry.replay_buffer_bytes", "must be at most 16777216 (16 MiB), found 100000000", "sent once")],
        ),
        (
            "HTTP/2 pings too close",
            with_backends("upstream:\n  http2:\n    keepalive_interval: 50ms\n    keepalive_timeout: 0\n"),
            vec![
                (3, 25, "upstream.http2.keepalive_interval", "must be at least 100ms (or 0 / off), found 50ms", ""),
                (4, 24, "upstream.http2.keepalive_timeout", "must be at least 100ms, found 0s", ""),
            ],
        ),
        (
            "replay buffer negative",
            with_backends("retry:\n  replay_buffer_bytes: -1\n"),
            vec![(2, 24, "retry.replay_buffer_bytes", "must be at least 0, found -1", "")],
        ),
        ("empty backend list", "backends: []\n".into(), vec![(1, 11, "backends", "must list at least one backend", "")]),
        (
            "missing backends",
            "server:\n  workers: 2\n".into(),
            vec![(1, 1, "backends", "missing required field", "list at least one backend")],
        ),
        (
            "backends not a list",
            "backends: 127.0.0.1:1\n".into(),
            vec![(1, 11, "backends", "expected a list of backends, found a string", "")],
        ),
        (
            "an admin API beyond loopback without a token",
            with_backends("admin:\n  listen: 0.0.0.0:9091\n"),
            vec![(2, 11, "admin.listen", "listens beyond loopback (0.0.0.0:9091) without a token", "token_file")],
        ),
        (
            "an admin token in two places",
            with_backends("admin:\n  token_file: /etc/lb/token\n  token_env: LB_TOKEN\n"),
            vec![(3, 14, "admin.token_env", "a file or a variable", "remove")],
        ),
        (
            "an admin token variable that cannot be one",
            with_backends("admin:\n  token_env: 1-bad\n"),
            vec![(2, 14, "admin.token_env", "not an environment variable's name", "LB_ADMIN_TOKEN")],
        ),
        (
            "the admin API on the metrics port",
            with_backends("admin:\n  listen: 127.0.0.1:9090\n"),
            vec![(2, 11, "admin.listen", "clashes with metrics.listen", "own port")],
        ),
        (
            "metrics on the server port",
            "server:\n  listen: 0.0.0.0:8080\nmetrics:\n  listen: 127.0.0.1:8080\n".to_owned() + BACKENDS,
            vec![(4, 11, "metrics.listen", "127.0.0.1:8080 clashes with server.listen on line 2", "own port")],
        ),
        (
            "server on the default metrics port",
            with_backends("server:\n  listen: 127.0.0.1:9090\n"),
            vec![(2, 11, "server.listen", "127.0.0.1:9090 clashes with metrics.listen", "own port")],
        ),
        (
            "paths without a slash",
            with_backends("health_check:\n  path: health\nmetrics:\n  path: metrics\n"),
            vec![
                (2, 9, "health_check.path", "\"health\" must start with '/'", "write \"/health\""),
                (4, 9, "metrics.path", "must start with '/'", "\"/metrics\""),
            ],
        ),
        (
            "paths a request cannot carry",
            with_backends("health_check:\n  path: \"/a b\"\nmetrics:\n  path: \"/m#x\"\n"),
            vec![
                (2, 9, "health_check.path", "holds ' ', which a request path may not", "percent-encode"),
                (4, 9, "metrics.path", "holds '#', which a request path may not", "percent-encode"),
            ],
        ),
        (
            "status range reversed",
            with_backends("health_check:\n  expected_status: 399-200\n"),
            vec![(2, 20, "health_check.expected_status", "range 399-200 is reversed", "write \"200-399\"")],
        ),
        (
            "status outside 100-599",
            with_backends("health_check:\n  expected_status: 200-700\n"),
            vec![(2, 20, "health_check.expected_status", "status 700 is outside 100-599", "")],
        ),
        (
            "status not a range",
            with_backends("health_check:\n  expected_status: ok\n"),
            vec![(2, 20, "health_check.expected_status", "\"ok\" is not a status code or range", "")],
        ),
        (
            "bad duration strings",
            with_backends("server:\n  request_timeout: 10\n  idle_timeout: 5 minutes\n  header_read_timeout: -1s\n"),
            vec![
                (2, 20, "server.request_timeout", "a duration needs a unit, found 10", "write \"10s\" or \"10ms\""),
                (3, 17, "server.idle_timeout", "invalid duration \"5 minutes\"", "250ms, 10s"),
                (4, 24, "server.header_read_timeout", "invalid duration \"-1s\": durations cannot be negative", ""),
            ],
        ),
        (
            "bad trusted proxy ranges",
            with_backends("server:\n  trusted_proxies: [10.0.0.1/8, 10.0.0.0/33, example.com]\n"),
            vec![
                (2, 21, "server.trusted_proxies[0]", "host bits are set past /8", "write \"10.0.0.0/8\""),
                (2, 33, "server.trusted_proxies[1]", "prefix length \"33\" is not 0-32", ""),
                (2, 46, "server.trusted_proxies[2]", "\"example.com\" is not an IP address", ""),
            ],
        ),
        (
            "trusted proxies not a list",
            with_backends("server:\n  trusted_proxies: 10.0.0.0/8\n"),
            vec![(2, 20, "server.trusted_proxies", "expected a list of CIDR ranges", "")],
        ),
        (
            "header limit below hyper's minimum",
            with_backends("server:\n  max_header_bytes: 4096\n  max_uri_bytes: 0\n"),
            vec![
                (2, 21, "server.max_header_bytes", "must be at least 8192", ""),
                (3, 18, "server.max_uri_bytes", "must be at least 1", ""),
            ],
        ),
        (
            "HTTP/2 limits out of range, and the tunnel's idle timeout",
            with_backends(
                "server:\n  upgrade_idle_timeout: 0s\n  http2:\n    max_concurrent_streams: 0\n    \
                 initial_stream_window_bytes: 1024\n    initial_connection_window_bytes: 4294967295\n    \
                 max_pending_reset_streams: 0\n    max_concurrent_stream: 1\n    \
                 stalled_response_timeout: 0s\n    logged_closes_per_second: -1\n    \
                 max_buffered_body_bytes: 1MiB\n",
            ),
            vec![
                (2, 25, "server.upgrade_idle_timeout", "must be greater than 0", ""),
                (4, 29, "server.http2.max_concurrent_streams", "must be at least 1", ""),
                (5, 34, "server.http2.initial_stream_window_bytes", "must be at least 65535, found 1024", ""),
                (6, 38, "server.http2.initial_connection_window_bytes", "must be at most 2147483647 (2^31 - 1), found 4294967295", ""),
                (7, 32, "server.http2.max_pending_reset_streams", "must be at least 1", ""),
                (8, 5, "server.http2.max_concurrent_stream", "unknown field \"max_concurrent_stream\"", "did you mean \"max_concurrent_streams\"?"),
                (9, 31, "server.http2.stalled_response_timeout", "must be greater than 0", ""),
                (10, 31, "server.http2.logged_closes_per_second", "must be at least 0, found -1", ""),
                (11, 30, "server.http2.max_buffered_body_bytes", "expected a whole number, found a string", ""),
            ],
        ),
        (
            "HTTP/2's room for request heads below one head of the largest size",
            with_backends("server:\n  max_header_bytes: 65536\n  http2:\n    max_buffered_head_bytes: 65535\n"),
            vec![(4, 30, "server.http2.max_buffered_head_bytes", "must be at least server.max_header_bytes (65536), found 65535", "a connection must have room for one head of the largest size accepted")],
        ),
        (
            "zero durations",
            with_backends("health_check:\n  interval: 0s\n  timeout: 0ms\nupstream:\n  connect_timeout: 0\n"),
            vec![
                (2, 13, "health_check.interval", "must be greater than 0", ""),
                (3, 12, "health_check.timeout", "must be greater than 0", ""),
                (5, 20, "upstream.connect_timeout", "must be greater than 0", ""),
            ],
        ),
    ]
}

#[test]
fn every_rule_reports_its_position_and_field() {
    let mut failures = Vec::new();
    for (name, source, expected) in cases() {
        let got = errors(&source, Format::Yaml);
        let summary: Vec<_> = got.iter().map(|e| e.to_string()).collect();
        if got.len() != expected.len() {
            failures.push(format!(
                "{name}: expected {} errors, got {summary:#?}",
                expected.len()
            ));
            continue;
        }
        for (error, (line, column, field, message, hint)) in got.iter().zip(&expected) {
            let hint_ok =
                hint.is_empty() || error.hint.as_deref().is_some_and(|h| h.contains(hint));
            if error.line != Some(*line)
                || error.column != Some(*column)
                || error.field != *field
                || !error.message.contains(message)
                || !hint_ok
            {
                failures.push(format!(
                    "{name}: expected {line}:{column} {field}: {message} ({hint}), got {error}"
                ));
            }
            assert_eq!(error.file, "lb.yaml");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn three_mistakes_give_exactly_three_errors_in_file_order() {
    let source = "\
server:
  listn: 0.0.0.0:8080
load_balancer:
  algorithm: round_robbin
backends:
  - address: 127.0.0.1:8001
    weight: 0
";
    let got = errors(source, Format::Yaml);
    let rendered: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "lb.yaml:2:3: server.listn: unknown field \"listn\" (hint: did you mean \"listen\"?)",
            "lb.yaml:4:14: load_balancer.algorithm: unknown algorithm \"round_robbin\" (hint: did you mean \"round_robin\"?)",
            "lb.yaml:7:13: backends[0].weight: must be at least 1, found 0",
        ]
    );
}

#[test]
fn json_errors_point_into_the_json_text() {
    let source = r#"{
  "server": {"listen": "0.0.0.0:8080", "workrs": 2},
  "backends": [
    {"address": "127.0.0.1:1", "weight": 0}
  ]
}"#;
    let got = errors(source, Format::Json);
    let positions: Vec<_> = got
        .iter()
        .map(|e| (e.line, e.column, e.field.as_str()))
        .collect();
    assert_eq!(
        positions,
        [
            (Some(2), Some(40), "server.workrs"),
            (Some(4), Some(42), "backends[0].weight")
        ]
    );
    assert_eq!(got[0].hint.as_deref(), Some("did you mean \"workers\"?"));
}

#[test]
fn disabled_metrics_may_share_the_port_and_port_zero_never_clashes() {
    let cases = [
        "server:\n  listen: 127.0.0.1:9090\nmetrics:\n  enabled: false\n",
        "server:\n  listen: 0.0.0.0:0\nmetrics:\n  listen: 127.0.0.1:0\n",
    ];
    for section in cases {
        let source = with_backends(section);
        assert!(parse(&source, Format::Yaml, "lb.yaml").is_ok(), "{source}");
    }
}

#[test]
fn documented_error_example_is_what_we_print() {
    let doc = include_str!("../../../docs/configuration.md");
    let errors_section = &doc[doc.find("## Errors").expect("errors section")..];
    let block = |fence: &str| {
        let start = errors_section.find(fence).expect("fenced block") + fence.len();
        let end = errors_section[start..].find("```").expect("closing fence") + start;
        errors_section[start..end].to_owned()
    };
    let source = block("```yaml\n");
    let printed = block("```text\n");
    let errors =
        parse(&source, Format::Yaml, "lb.yaml").expect_err("the example is wrong on purpose");
    assert_eq!(errors.to_string(), printed.trim_end());
}

#[test]
fn duplicate_keys_in_json_are_reported() {
    let source = "{\"backends\": [{\"address\": \"127.0.0.1:1\"}],\n \"backends\": []}";
    let got = errors(source, Format::Json);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].line, got[0].column, got[0].field.as_str()),
        (Some(2), Some(2), "backends")
    );
    assert!(
        got[0]
            .message
            .contains("duplicate field, first set on line 1"),
        "{}",
        got[0]
    );
}
