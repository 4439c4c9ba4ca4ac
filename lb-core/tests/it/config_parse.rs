//! Parsing valid configurations, format handling, syntax errors and the serialize round trip.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use lb_core::balance::Algorithm;
use lb_core::config::{
    BackendConfig, Config, ConfigErrors, Format, HealthCheckConfig, MetricsConfig, RetryConfig,
    ServerConfig, UpstreamConfig, parse, parse_bytes,
};
use lb_core::health::{HealthPolicy, StatusRange};
use lb_core::retry::{BudgetPolicy, RetryCondition, RetryPolicy};

const REFERENCE: &str = include_str!("../../../config/config.yaml");
const MINIMAL: &str = include_str!("../../../config/examples/minimal.yaml");
const WEIGHTED: &str = include_str!("../../../config/examples/weighted.json");

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn ok(source: &str, format: Format) -> Config {
    parse(source, format, "test").unwrap_or_else(|errors| panic!("{errors}\nsource:\n{source}"))
}

fn only_error(result: Result<Config, ConfigErrors>) -> lb_core::config::ConfigError {
    let errors = result.expect_err("should fail").0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().expect("one error")
}

#[test]
fn minimal_config_gets_every_default() {
    let config = ok(MINIMAL, Format::Yaml);
    let want = Config::with_backends(vec![
        BackendConfig::new(addr("127.0.0.1:8001")),
        BackendConfig::new(addr("127.0.0.1:8002")),
    ]);
    assert_eq!(config, want);
    assert_eq!(config.backends[0].name, "127.0.0.1:8001");
    assert_eq!(config.backends[0].weight, 1);
    assert_eq!(config.backends[0].max_connections, 1000);
    assert_eq!(config.server.listen, addr("0.0.0.0:8080"));
    assert_eq!(
        config.health_check.expected_status,
        StatusRange { min: 200, max: 399 }
    );
    assert_eq!(
        config.circuit_breaker.policy.max_open_duration(),
        Duration::from_secs(300)
    );
    assert_eq!(config.retry.policy.retry_on().len(), 6);
}

#[test]
fn reference_config_states_exactly_the_defaults() {
    let config = ok(REFERENCE, Format::Yaml);
    let mut want = Config::with_backends(vec![
        BackendConfig {
            name: "api-1".into(),
            ..BackendConfig::new(addr("127.0.0.1:8001"))
        },
        BackendConfig {
            name: "api-2".into(),
            ..BackendConfig::new(addr("127.0.0.1:8002"))
        },
        BackendConfig {
            name: "api-3".into(),
            ..BackendConfig::new(addr("127.0.0.1:8003"))
        },
    ]);
    want.load_balancer.algorithm = Algorithm::RoundRobin;
    assert_eq!(config, want);
}

#[test]
fn full_config_sets_every_field() {
    let source = "
server:
  listen: 127.0.0.1:8000
  workers: 4
  max_client_connections: 500
  header_read_timeout: 3s
  request_timeout: 1m30s
  idle_timeout: 2m
  idle_release_after: 250ms
  upgrade_idle_timeout: 45s
  http2:
    max_concurrent_streams: 50
    initial_stream_window_bytes: 131072
  max_request_body_bytes: 1024
  shutdown_grace: 0
  max_header_bytes: 16384
  max_uri_bytes: 100
  trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"::1\"]
  h2c: true
upstream:
  connect_timeout: 250ms
  pool_idle_timeout: 0s
  pool_max_idle_per_backend: 0
  max_response_header_bytes: 4096
load_balancer:
  algorithm: p2c
backends:
  - name: a
    address: '[::1]:9001'
    weight: 3
    max_connections: 7
health_check:
  enabled: false
  path: /ping
  interval: 1h
  timeout: 10s
  expected_status: 204
  unhealthy_threshold: 1
  healthy_threshold: 5
circuit_breaker:
  enabled: false
  failure_threshold: 2
  open_duration: 1s
  max_open_duration: 1s
  half_open_max_requests: 3
  success_threshold: 1
retry:
  max_attempts: 1
  base_delay: 0s
  max_delay: 0s
  retry_on: [reset, '429', timeout, reset, grpc_unavailable]
  budget_ratio: 1
  budget_min_per_sec: 0
  replay_buffer_bytes: 0
metrics:
  enabled: false
  listen: 127.0.0.1:8000
  path: /m
";
    let config = ok(source, Format::Yaml);
    assert_eq!(
        config.server,
        ServerConfig {
            listen: addr("127.0.0.1:8000"),
            workers: 4,
            max_client_connections: 500,
            header_read_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(90),
            idle_timeout: Duration::from_secs(120),
            idle_release_after: Duration::from_millis(250),
            max_request_body_bytes: 1024,
            shutdown_grace: Duration::ZERO,
            upgrade_idle_timeout: Duration::from_secs(45),
            http2: lb_core::config::Http2Config {
                max_concurrent_streams: 50,
                initial_stream_window_bytes: 131_072,
                ..Default::default()
            },
            max_header_bytes: 16384,
            max_uri_bytes: 100,
            trusted_proxies: ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
                .iter()
                .map(|text| text.parse().unwrap())
                .collect(),
            h2c: true,
            ..ServerConfig::default()
        }
    );
    assert_eq!(
        config.upstream,
        UpstreamConfig {
            connect_timeout: Duration::from_millis(250),
            pool_idle_timeout: Duration::ZERO,
            pool_max_idle_per_backend: 0,
            max_response_header_bytes: 4096,
            ..UpstreamConfig::default()
        }
    );
    assert_eq!(config.load_balancer.algorithm, Algorithm::P2c);
    assert_eq!(
        config.backends,
        [BackendConfig {
            name: "a".into(),
            address: addr("[::1]:9001"),
            weight: 3,
            max_connections: 7,
            ..BackendConfig::new(addr("[::1]:9001"))
        }]
    );
    assert_eq!(
        config.health_check,
        HealthCheckConfig {
            enabled: false,
            path: "/ping".into(),
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            expected_status: StatusRange { min: 204, max: 204 },
            policy: HealthPolicy::try_new(5, 1).unwrap(),
        }
    );
    assert!(!config.circuit_breaker.enabled);
    assert_eq!(config.circuit_breaker.policy.half_open_max_requests(), 3);
    assert_eq!(
        config.retry,
        RetryConfig {
            policy: RetryPolicy::try_new(
                1,
                Duration::ZERO,
                Duration::ZERO,
                // Repeats are dropped, order kept.
                vec![
                    RetryCondition::Reset,
                    RetryCondition::Status(429),
                    RetryCondition::Timeout,
                    RetryCondition::GrpcStatus(14),
                ],
            )
            .unwrap(),
            budget: BudgetPolicy::try_new(1.0, 0).unwrap(),
            replay_buffer_bytes: 0,
        }
    );
    assert_eq!(
        config.metrics,
        MetricsConfig {
            enabled: false,
            listen: addr("127.0.0.1:8000"),
            path: "/m".into()
        }
    );
}

#[test]
fn yaml_and_json_say_the_same_thing() {
    let json = ok(WEIGHTED, Format::Json);
    let yaml = ok(
        "
server: {listen: 0.0.0.0:8080, request_timeout: 15s}
load_balancer:
  algorithm: weighted_round_robin
backends:
  - {name: big, address: 10.0.0.1:8080, weight: 5, max_connections: 2000}
  - {name: medium, address: 10.0.0.2:8080, weight: 3}
  - {name: small, address: 10.0.0.3:8080, weight: 1, max_connections: 200}
health_check:
  path: /ready
  interval: 2s
  timeout: 500ms
  expected_status: 200
retry:
  max_attempts: 2
  retry_on: [connect_error, reset, 503]
metrics:
  listen: 127.0.0.1:9100
",
        Format::Yaml,
    );
    assert_eq!(json, yaml);
    assert_eq!(
        json.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [5, 3, 1]
    );
}

#[test]
fn serialized_config_parses_back_equal() {
    let mut config = ok(REFERENCE, Format::Yaml);
    config.health_check.expected_status = StatusRange { min: 204, max: 204 };
    let retry = &config.retry.policy;
    config.retry.policy = RetryPolicy::try_new(
        retry.max_attempts(),
        Duration::from_millis(1500),
        retry.max_delay(),
        retry.retry_on().to_vec(),
    )
    .unwrap();
    config.retry.budget = BudgetPolicy::try_new(0.35, config.retry.budget.min_per_sec()).unwrap();
    config.load_balancer.algorithm = Algorithm::IpHash;
    config.backends.push(BackendConfig::new(addr("[::1]:7000")));

    let yaml = serde_saphyr::to_string(&config).expect("serialize yaml");
    assert!(yaml.contains("base_delay: 1s500ms"), "{yaml}");
    assert_eq!(ok(&yaml, Format::Yaml), config, "{yaml}");

    let json = serde_json::to_string_pretty(&config).expect("serialize json");
    assert!(json.contains(r#""expected_status": "204""#), "{json}");
    assert_eq!(ok(&json, Format::Json), config, "{json}");
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let error = only_error(parse(
        "backends:\n  - address: [1, 2\nserver: {}\n",
        Format::Yaml,
        "bad.yaml",
    ));
    assert_eq!(error.file, "bad.yaml");
    assert!(error.line.is_some() && error.column.is_some(), "{error}");
    assert!(error.message.starts_with("invalid YAML"), "{error}");
    assert_eq!(error.field, "");

    let error = only_error(parse("a: 1\n b: 2\n", Format::Yaml, "bad.yaml"));
    assert_eq!((error.line, error.column), (Some(2), Some(3)), "{error}");
}

#[test]
fn json_syntax_errors_have_serde_json_positions() {
    let cases = [
        ("{\n  \"backends\": [,]\n}", 2, 16),
        ("{\"backends\": []\n\n", 3, 0),
        ("{\n  // comment\n}", 2, 3),
        ("{\"a\": 1,}", 1, 9),
    ];
    for (source, line, column) in cases {
        let error = only_error(parse(source, Format::Json, "bad.json"));
        assert!(error.message.starts_with("invalid JSON"), "{error}");
        assert!(!error.message.contains(" at line "), "{error}");
        assert_eq!(
            (error.line, error.column),
            (Some(line), Some(column)),
            "{source:?}: {error}"
        );
    }
}

#[test]
fn document_level_problems_are_one_clear_error() {
    let cases: [(&[u8], &str, &str); 7] = [
        (b"", "lb.yaml", "the file is empty"),
        (b"  \n\n", "lb.json", "the file is empty"),
        (
            b"# just a comment\n",
            "lb.yaml",
            "the configuration is empty",
        ),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", "lb.yaml", "not UTF-8 text"),
        (b"backends:\0\0", "lb.yaml", "NUL bytes"),
        (
            b"backends: []",
            "lb.toml",
            "unknown file extension \".toml\"",
        ),
        (b"backends: []", "lb", "no extension"),
    ];
    for (bytes, path, message) in cases {
        let error = only_error(parse_bytes(bytes, Path::new(path)));
        assert!(error.message.contains(message), "{path}: {error}");
        assert_eq!(error.file, path);
        assert_eq!(error.line, None);
    }
    let error = only_error(parse("[1, 2]", Format::Yaml, "lb.yaml"));
    assert_eq!(
        (error.line, error.column, error.message.as_str()),
        (
            Some(1),
            Some(1),
            "expected a mapping of sections, found a list"
        )
    );
}

#[test]
fn parse_bytes_picks_the_format_by_extension() {
    let path_cases = [
        ("lb.yaml", Some(Format::Yaml)),
        ("dir.d/LB.YML", Some(Format::Yaml)),
        ("lb.json", Some(Format::Json)),
        ("lb.toml", None),
        ("yaml", None),
    ];
    for (path, want) in path_cases {
        assert_eq!(Format::from_path(Path::new(path)), want, "{path}");
    }
    let from_yaml = parse_bytes(MINIMAL.as_bytes(), Path::new("config/minimal.yml")).expect("yaml");
    let from_json = parse_bytes(WEIGHTED.as_bytes(), Path::new("weighted.json")).expect("json");
    assert_eq!(from_yaml.backends.len(), 2);
    assert_eq!(from_json.backends.len(), 3);
    // YAML-only syntax in a .json file is refused by the strict JSON reader.
    let error = only_error(parse_bytes(MINIMAL.as_bytes(), Path::new("minimal.json")));
    assert!(error.message.starts_with("invalid JSON"), "{error}");
}

#[test]
fn anchors_and_a_byte_order_mark_are_accepted() {
    let source = "\u{feff}defaults: &d {weight: 2}\n";
    // `defaults` is not a field: anchors are fine, unknown sections are not.
    let errors = parse(source, Format::Yaml, "lb.yaml")
        .expect_err("two problems")
        .0;
    let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["defaults", "backends"]);
    let source = "backends:\n  - &a {address: 127.0.0.1:1, weight: 2}\n  - {address: 127.0.0.1:2, weight: 2}\n";
    assert_eq!(ok(source, Format::Yaml).backends[0].weight, 2);
}

mod never_panics {
    use lb_core::config::{Format, parse};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Arbitrary text, and mangled copies of a real config, give Ok or errors, never a panic.
        #[test]
        fn on_any_text(text in "\\PC{0,64}", cut in 0usize..2000, junk in "[ :\\-\\[\\]{}\"',a-z0-9\n]{0,8}") {
            let _ = parse(&text, Format::Yaml, "fuzz.yaml");
            let _ = parse(&text, Format::Json, "fuzz.json");
            let reference = super::REFERENCE;
            let mut at = cut.min(reference.len());
            while !reference.is_char_boundary(at) {
                at -= 1;
            }
            let mangled = format!("{}{junk}{}", &reference[..at], &reference[at..]);
            let _ = parse(&mangled, Format::Yaml, "fuzz.yaml");
        }
    }
}
