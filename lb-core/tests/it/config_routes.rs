//! Pools and routes in the configuration: the flat form means one pool and one route, pools
//! inherit the top-level sections, routes name what the file defines, every mistake has its
//! position, and the warnings find shadowed routes and unused pools.

use lb_core::config::limits::{LimitKey, Sharing};
use lb_core::config::{Config, Format, parse, warnings};
use lb_core::route::{HostPattern, PathPattern};

const ROUTES: &str = include_str!("../../../config/examples/routes.yaml");

fn ok(text: &str) -> Config {
    parse(text, Format::Yaml, "lb.yaml").unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, Format::Yaml, "lb.yaml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_flat_form_is_one_pool_and_one_route() {
    let config = ok("backends:\n  - address: 127.0.0.1:8001\n");
    assert!(config.pools.is_empty() && config.routes.is_empty());
    let pools = config.pool_list();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].name, "default");
    assert_eq!(pools[0].backends, config.backends);
    assert_eq!(pools[0].retry, config.retry);
}

#[test]
fn the_example_reads_as_documented() {
    let config = ok(ROUTES);
    let pools = config.pool_list();
    let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
    // Inherited field by field: the top-level retry, the pool's own where written.
    assert_eq!(pools[0].retry.policy.max_attempts(), 2);
    assert_eq!(pools[1].retry.policy.max_attempts(), 1);
    assert_eq!(pools[0].health_check.interval, config.health_check.interval);
    assert_eq!(pools[0].load_balancer.algorithm.as_str(), "p2c");
    assert_eq!(config.routes.len(), 3);
    assert_eq!(
        config.routes[0].matcher.hosts,
        [HostPattern::Exact("api.localhost".into())]
    );
    assert_eq!(
        config.routes[1].matcher.path,
        Some(PathPattern::SegmentPrefix("/limited".into()))
    );
    let limit = &config.rate_limits[0];
    assert_eq!(
        (limit.requests, limit.burst, limit.per.as_secs()),
        (5, 5, 1)
    );
    assert_eq!(
        (&limit.key, limit.shared),
        (&LimitKey::Client, Sharing::Local)
    );
    assert!(warnings(&config).is_empty(), "{:?}", warnings(&config));
}

#[test]
fn the_example_serializes_back_equal() {
    let config = ok(ROUTES);
    let yaml = serde_saphyr::to_string(&config).expect("serialize");
    assert_eq!(ok(&yaml), config, "{yaml}");
}

#[test]
fn mistakes_have_positions_and_hints() {
    let base = "pools:\n  api:\n    backends:\n      - address: 127.0.0.1:8001\n";
    let cases: [(String, &str); 9] = [
        (
            format!("{base}routes:\n  - pool: apj\n"),
            "lb.yaml:6:11: routes[0].pool: unknown pool \"apj\" (hint: did you mean \"api\"?)",
        ),
        (
            format!("backends:\n  - address: 127.0.0.1:8002\n{base}").replace("api:", "default:"),
            "lb.yaml:4:3: pools.default: the top-level `backends` already form the pool \"default\"",
        ),
        (
            format!("{base}routes:\n  - match: {{path: /a, path_prefix: /b}}\n"),
            "routes[0].match.path_prefix: path and path_prefix cannot both be set",
        ),
        (
            format!("{base}routes:\n  - match: {{host: \"api:80\"}}\n"),
            "lb.yaml:6:19: routes[0].match.host: \"api:80\" is not a host name",
        ),
        (
            format!("{base}auth:\n  admins:\n    basic:\n      users: {{alice: hunter2}}\n"),
            "lb.yaml:8:22: auth.admins.basic.users.alice: is not an argon2 or bcrypt hash",
        ),
        (
            format!("{base}rate_limits:\n  l:\n    requests: 5\n    shared: redis\n"),
            "rate_limits.l.shared: a limit shared through Redis needs the `redis` section",
        ),
        (
            format!("{base}routes:\n  - rate_limit: nope\n"),
            "routes[0].rate_limit: unknown rate limit \"nope\"",
        ),
        (
            format!("{base}  web:\n    backends:\n      - address: 127.0.0.1:8001\n"),
            "pools.web.backends[0]: duplicate backend name \"127.0.0.1:8001\", already used by pools.api.backends[0]",
        ),
        (
            format!("{base}routes:\n  - match: {{path: /a%2Fb}}\n"),
            "routes[0].match.path: \"/a%2Fb\": the path holds an encoded slash",
        ),
    ];
    for (text, want) in cases {
        let found = errors(&text);
        assert!(
            found.iter().any(|e| e.contains(want)),
            "want {want:?} in {found:#?}\n---\n{text}"
        );
    }
}

#[test]
fn shadowed_routes_and_unused_pools_are_warned() {
    let text = "retry: {max_attempts: 1}\npools:\n  api:\n    backends: [{address: 127.0.0.1:8001}]\n  \
                spare:\n    backends: [{address: 127.0.0.1:8002}]\n\
                routes:\n  - name: all-api\n    match: {path_segment_prefix: /api}\n    pool: api\n  \
                - name: v1\n    match: {path_prefix: /api/v1}\n    pool: api\n";
    let config = ok(text);
    let found: Vec<(String, String)> = warnings(&config)
        .into_iter()
        .map(|w| (w.field, w.message))
        .collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].0, "routes[1]");
    assert!(
        found[0]
            .1
            .contains("can never match: routes[0] (\"all-api\")"),
        "{found:?}"
    );
    assert_eq!(found[1].0, "pools.spare");
    assert_eq!(
        lb_core::config::locate(text, Format::Yaml, "routes[1]"),
        Some((11, 5))
    );
}
