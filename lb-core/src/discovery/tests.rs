use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::{Format, parse, parse_backend_file};

fn pool_config(yaml: &str) -> Config {
    parse(yaml, Format::Yaml, "lb.yaml").unwrap()
}

fn api() -> Config {
    pool_config(
        "pools:\n  web:\n    backends: [{address: 127.0.0.1:9000, name: web1}]\n  api:\n    discovery: {file: api.yaml}\n",
    )
}

fn pool(config: &Config, name: &str) -> PoolConfig {
    config
        .pool_list()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn srv(priority: u16, weight: u16, address: SocketAddr) -> SrvTarget {
    SrvTarget {
        priority,
        weight,
        address,
        host: format!("srv{}.example.internal.", address.port()),
    }
}

#[test]
fn a_backend_file_is_a_list_of_backends_with_the_pools_defaults() {
    let config = api();
    let file = b"- address: 10.0.0.1:80\n  weight: 3\n- {address: 10.0.0.2:80, name: b}\n";
    let backends = parse_backend_file(file, Path::new("api.yaml"), &pool(&config, "api")).unwrap();
    assert_eq!(backends.len(), 2);
    assert_eq!(backends[0].name, "10.0.0.1:80");
    assert_eq!(backends[0].weight, 3);
    assert_eq!(backends[1].name, "b");
    let json = br#"[{"address": "10.0.0.3:80", "max_connections": 5}]"#;
    let backends = parse_backend_file(json, Path::new("api.json"), &pool(&config, "api")).unwrap();
    assert_eq!(backends[0].max_connections, 5);
}

#[test]
fn a_bad_backend_file_says_where() {
    let config = api();
    let api = pool(&config, "api");
    let error = parse_backend_file(b"- address: nowhere\n", Path::new("d/api.yaml"), &api)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("d/api.yaml:1:12: backends[0].address"),
        "{error}"
    );
    let error = parse_backend_file(b"[]\n", Path::new("api.yaml"), &api).unwrap_err();
    assert!(
        error.to_string().contains("at least one backend"),
        "{error}"
    );
    let error = parse_backend_file(
        b"- address: 10.0.0.1:80\n  wieght: 2\n",
        Path::new("api.yaml"),
        &api,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("did you mean \"weight\""),
        "{error}"
    );
    assert!(parse_backend_file(b"  \n", Path::new("api.yaml"), &api).is_err());
    assert!(parse_backend_file(b"- address: 10.0.0.1:80\n", Path::new("api.txt"), &api).is_err());
    let dup = b"- address: 10.0.0.1:80\n- address: 10.0.0.1:80\n";
    assert!(parse_backend_file(dup, Path::new("api.yaml"), &api).is_err());
}

#[test]
fn merge_replaces_one_pools_backends() {
    let config = api();
    let set = name_all(
        "api",
        vec![BackendConfig::new(at(80)), BackendConfig::new(at(81))],
    );
    let merged = merge(&config, "api", set.clone()).unwrap();
    assert_eq!(pool(&merged, "api").backends, set);
    assert_eq!(pool(&merged, "web").backends, pool(&config, "web").backends);
    assert_eq!(set[0].name, "api@10.0.0.1:80");
    // The diff of the merge is the backends joining, nothing else.
    let changes = crate::config::diff(&config, &merged);
    assert_eq!(changes.len(), 2, "{changes:?}");
}

#[test]
fn merge_refuses_what_would_break_the_pool() {
    let config = api();
    assert_eq!(merge(&config, "api", Vec::new()), Err(MergeError::Empty));
    let web = vec![BackendConfig::new(at(80))];
    assert!(matches!(
        merge(&config, "web", web.clone()),
        Err(MergeError::NotDiscovered(_))
    ));
    let mut clash = BackendConfig::new(at(80));
    clash.name = "web1".to_owned();
    assert_eq!(
        merge(&config, "api", vec![clash]),
        Err(MergeError::DuplicateName("web1".to_owned()))
    );
    let twice = vec![BackendConfig::new(at(80)), {
        let mut b = BackendConfig::new(at(80));
        b.name = "other".to_owned();
        b
    }];
    assert_eq!(
        merge(&config, "api", twice),
        Err(MergeError::DuplicateAddress(at(80)))
    );
}

#[test]
fn the_flat_form_discovers_into_the_default_pool() {
    let config = pool_config("discovery: {file: backends.json}\n");
    assert!(config.backends.is_empty());
    assert_eq!(config.pool_list()[0].name, "default");
    let merged = merge(&config, "default", vec![BackendConfig::new(at(80))]).unwrap();
    assert_eq!(merged.backends.len(), 1);
    // A reload keeps the discovered set.
    let set = merged.backends.clone();
    let kept = keep_discovered(config, [("default", &set[..])]);
    assert_eq!(kept.backends, set);
}

#[test]
fn srv_uses_the_lowest_priority_and_scales_weights() {
    let config = api();
    let api = pool(&config, "api");
    let records = [srv(10, 60, at(1)), srv(10, 0, at(2)), srv(20, 100, at(3))];
    let backends = from_srv(&api, &records);
    let weights: Vec<(SocketAddr, u32)> = backends.iter().map(|b| (b.address, b.weight)).collect();
    assert_eq!(weights, vec![(at(1), 60 * SRV_WEIGHT_SCALE), (at(2), 1)]);
    // Every weight 0: equal shares.
    let records = [srv(0, 0, at(1)), srv(0, 0, at(2))];
    assert!(from_srv(&api, &records).iter().all(|b| b.weight == 1));
    assert!(from_srv(&api, &[]).is_empty());
}

#[test]
fn addresses_are_sorted_and_distinct() {
    let config = api();
    let api = pool(&config, "api");
    let ips = [
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
    ];
    let backends = from_addresses(&api, "api.example.internal", &ips, 8080);
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["api@10.0.0.1:8080", "api@10.0.0.2:8080"]);
}

#[test]
fn discovery_settings_are_validated_with_their_place() {
    let bad = |yaml: &str| {
        parse(yaml, Format::Yaml, "lb.yaml")
            .unwrap_err()
            .to_string()
    };
    assert!(bad("discovery: {}\n").contains("needs a source"));
    assert!(bad("discovery: {dns: {name: api.internal}}\n").contains("carry no port"));
    assert!(
        bad("discovery: {dns: {name: _x._tcp.api, type: srv, port: 80}}\n").contains("own port")
    );
    assert!(bad("discovery: {dns: {name: 'bad name', port: 80}}\n").contains("not a DNS name"));
    assert!(
        bad("discovery: {dns: {name: a.b, port: 80, type: mx}}\n").contains("unknown record type")
    );
    assert!(bad("discovery: {file: a.yaml, dns: {name: a.b, port: 80}}\n").contains("one source"));
    let both = bad("backends: [{address: 127.0.0.1:1}]\ndiscovery: {file: a.yaml}\n");
    assert!(both.contains("both give the pool's backends"), "{both}");
    let cap = bad("discovery: {file: a.yaml, backoff_min: 10s, backoff_max: 1s}\n");
    assert!(cap.contains("backoff_max"), "{cap}");
    let ok = parse(
        "discovery: {dns: {name: api.internal., port: 8080, resolver: 127.0.0.1:5353, min_ttl: 1s, max_ttl: 1m}}\n",
        Format::Yaml,
        "etc/lb.yaml",
    )
    .unwrap();
    let found = ok.discovery.unwrap();
    assert_eq!(found.debounce, crate::config::DEFAULT_DEBOUNCE);
    let crate::config::DiscoverySource::Dns(dns) = found.source else {
        panic!("a dns source")
    };
    assert_eq!(dns.port, Some(8080));
    assert_eq!(dns.max_ttl, Duration::from_secs(60));
    let file = parse("discovery: {file: a.yaml}\n", Format::Yaml, "etc/lb.yaml").unwrap();
    assert_eq!(
        file.discovery.unwrap().source,
        crate::config::DiscoverySource::File("etc/a.yaml".into())
    );
}

#[test]
fn the_effective_configuration_parses_back() {
    let config = pool_config(
        "pools:\n  api:\n    discovery: {dns: {name: _api._tcp.internal, type: srv}, debounce: 2s}\n",
    );
    let text = serde_json::to_string(&config).unwrap();
    let again = parse(&text, Format::Json, "lb.json").unwrap();
    assert_eq!(again, config);
}

proptest! {
    #[test]
    fn refresh_stays_within_its_bounds(ttl in any::<u32>(), min in 1u64..1000, extra in 0u64..100_000) {
        let (min, max) = (Duration::from_secs(min), Duration::from_secs(min + extra));
        let wait = refresh_after(ttl, min, max);
        prop_assert!(wait >= min && wait <= max);
        if (min.as_secs()..=max.as_secs()).contains(&u64::from(ttl)) {
            prop_assert_eq!(wait, Duration::from_secs(u64::from(ttl)));
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_never_below_its_floor(
        min_ms in 1u64..10_000, factor in 1u64..1000, failures in 1u32..200, jitter in -1.0f64..2.0,
    ) {
        let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(min_ms * factor));
        let backoff = Backoff::try_new(min, max).unwrap();
        let wait = backoff.delay(failures, jitter);
        prop_assert!(wait >= min && wait <= max, "{wait:?}");
        // The whole step (jitter 1) never shrinks as failures add up.
        prop_assert!(backoff.delay(failures + 1, 1.0) >= backoff.delay(failures, 1.0));
    }

    #[test]
    fn srv_weights_follow_rfc_2782(records in proptest::collection::vec((0u16..3, any::<u16>(), 1u16..6), 0..12)) {
        let config = api();
        let api = pool(&config, "api");
        let records: Vec<SrvTarget> =
            records.iter().map(|(p, w, port)| srv(*p, *w, at(*port))).collect();
        let backends = from_srv(&api, &records);
        let lowest = records.iter().map(|r| r.priority).min();
        // Only the lowest priority, each address once, every weight at least 1.
        for b in &backends {
            prop_assert!(records.iter().any(|r| Some(r.priority) == lowest && r.address == b.address));
            prop_assert!(b.weight >= 1);
            prop_assert!(b.name.starts_with("api@"));
        }
        let mut addresses: Vec<_> = backends.iter().map(|b| b.address).collect();
        addresses.dedup();
        prop_assert_eq!(addresses.len(), backends.len());
        // A weight-0 target takes less than any weighted one.
        for zero in records.iter().filter(|r| Some(r.priority) == lowest && r.weight == 0) {
            let only_zero = !records.iter().any(|r| r.address == zero.address && r.weight > 0 && Some(r.priority) == lowest);
            let weighted = records.iter().any(|r| Some(r.priority) == lowest && r.weight > 0);
            if only_zero && weighted {
                let b = backends.iter().find(|b| b.address == zero.address).unwrap();
                prop_assert!(backends.iter().filter(|o| o.weight > b.weight).count() > 0);
            }
        }
    }

    #[test]
    fn merged_names_stay_unique(ports in proptest::collection::btree_set(1u16..500, 1..20)) {
        let config = api();
        let set = from_addresses(&pool(&config, "api"), "api.example.internal", &[], 1);
        prop_assert!(set.is_empty());
        let set: Vec<BackendConfig> = ports.iter().map(|p| {
            let mut b = BackendConfig::new(at(*p));
            b.name = named("api", &b.name);
            b
        }).collect();
        let merged = merge(&config, "api", set).unwrap();
        let mut names: Vec<String> = merged.pool_list().iter().flat_map(|p| p.backends.iter().map(|b| b.name.clone())).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        prop_assert_eq!(names.len(), count);
    }
}

#[test]
fn an_etcd_prefix_is_one_backend_per_key_and_a_bad_value_keeps_the_key() {
    let config = api();
    let api = pool(&config, "api");
    let mut set = KeyedSet::default();
    set.put(
        &api,
        b"/lb/api/b",
        br#"{"address": "10.0.0.2:80", "weight": 3}"#,
    )
    .unwrap();
    set.put(
        &api,
        b"/lb/api/a",
        br#"{"address": "10.0.0.1:80", "name": "one"}"#,
    )
    .unwrap();
    let names: Vec<String> = set.backends().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["api@one", "api@10.0.0.2:80"]);
    let error = set
        .put(&api, b"/lb/api/a", b"{\"address\": 5}")
        .unwrap_err();
    assert!(
        error.to_string().starts_with("etcd key /lb/api/a:1:"),
        "{error}"
    );
    assert!(set.put(&api, b"/lb/api/a", b"[1]").is_err());
    assert!(set.put(&api, b"/lb/api/a", b"").is_err());
    assert!(
        set.put(
            &api,
            b"/lb/api/a",
            b"{\"address\": \"10.0.0.1:80\", \"port\": 1}"
        )
        .is_err()
    );
    assert_eq!(
        set.backends()[0].name,
        "api@one",
        "the key kept its backend"
    );
    set.put(&api, b"/lb/api/b", br#"{"address": "10.0.0.2:80"}"#)
        .unwrap();
    set.delete(b"/lb/api/b");
    assert_eq!(set.backends().len(), 1);
    // A listing again: what it does not name leaves; a bad value keeps its key's backend.
    set.put(&api, b"/lb/api/c", br#"{"address": "10.0.0.3:80"}"#)
        .unwrap();
    assert!(set.put(&api, b"/lb/api/a", b"{}").is_err());
    set.retain_listed([&b"/lb/api/a"[..]]);
    let names: Vec<String> = set.backends().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["api@one"]);
}

#[test]
fn a_watch_resumes_after_its_revision_or_lists_again() {
    assert_eq!(resume(WatchEnd::Closed, 41), Resume::WatchFrom(42));
    assert_eq!(resume(WatchEnd::Closed, 0), Resume::Relist);
    assert_eq!(resume(WatchEnd::Compacted, 41), Resume::Relist);
}

#[test]
fn etcd_settings_are_validated() {
    let bad = |yaml: &str| {
        parse(yaml, Format::Yaml, "lb.yaml")
            .unwrap_err()
            .to_string()
    };
    assert!(bad("discovery: {etcd: {prefix: /a/}}\n").contains("endpoints"));
    assert!(bad("discovery: {etcd: {endpoints: [], prefix: /a/}}\n").contains("at least one"));
    assert!(bad("discovery: {etcd: {endpoints: [nohost], prefix: /a/}}\n").contains("host:port"));
    assert!(bad("discovery: {etcd: {endpoints: ['e:2379']}}\n").contains("prefix"));
    assert!(
        bad("discovery: {file: a.yaml, etcd: {endpoints: ['e:2379'], prefix: /a/}}\n")
            .contains("one source")
    );
    let ok = parse(
        "discovery: {etcd: {endpoints: ['http://127.0.0.1:2379', 'etcd-2:2379'], prefix: /lb/api/}}\n",
        Format::Yaml,
        "lb.yaml",
    )
    .unwrap();
    let crate::config::DiscoverySource::Etcd(etcd) = ok.discovery.unwrap().source else {
        panic!("an etcd source")
    };
    assert_eq!(etcd.endpoints, ["127.0.0.1:2379", "etcd-2:2379"]);
}

#[test]
fn a_name_found_in_dns_is_the_sni_of_its_tls_backends() {
    let tls_pool = |sni: &str| {
        pool_config(&format!(
            "pools:\n  api:\n    discovery: {{dns: {{name: api.example.internal, port: 443}}}}\n    upstream:\n      tls: {{{sni}}}\n"
        ))
    };
    let ips = [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))];
    let cases: [(&str, &str, Option<&str>); 5] = [
        // (upstream.tls, the looked-up name, the SNI presented)
        ("", "API.example.internal.", Some("api.example.internal")),
        ("", "api.example.internal", Some("api.example.internal")),
        (
            "sni: edge.example.com",
            "api.example.internal.",
            Some("edge.example.com"),
        ),
        ("", "10.0.0.9", None),
        ("", ".", None),
    ];
    for (tls, host, sni) in cases {
        let config = tls_pool(tls);
        let set = from_addresses(&pool(&config, "api"), host, &ips, 443);
        let presented = set[0].tls.as_ref().expect("tls").sni.as_deref();
        assert_eq!(presented, sni, "{tls:?} {host:?}");
        let records = [SrvTarget {
            host: host.to_owned(),
            ..srv(0, 1, at(443))
        }];
        let set = from_srv(&pool(&config, "api"), &records);
        assert_eq!(set[0].tls.as_ref().expect("tls").sni.as_deref(), sni);
    }
    // Without TLS there is nothing to name.
    let plain = api();
    let set = from_addresses(&pool(&plain, "api"), "api.example.internal", &ips, 80);
    assert!(set[0].tls.is_none());
}

fn etcd_of(yaml: &str) -> crate::config::EtcdDiscovery {
    let config = parse(yaml, Format::Yaml, "/etc/lb/lb.yaml").unwrap();
    let crate::config::DiscoverySource::Etcd(etcd) = config.discovery.unwrap().source else {
        panic!("an etcd source")
    };
    etcd
}

#[test]
fn etcd_tls_is_the_tls_block_or_https_endpoints() {
    let etcd = etcd_of(
        "discovery: {etcd: {endpoints: ['https://e1:2379/', 'https://[::1]:2379'], prefix: /a/}}\n",
    );
    assert_eq!(etcd.endpoints, ["e1:2379", "[::1]:2379"]);
    assert_eq!(etcd.tls, Some(crate::config::UpstreamTlsConfig::default()));
    let etcd = etcd_of(
        "discovery:\n  etcd:\n    endpoints: ['e1:2379', 'https://e2:2379']\n    prefix: /a/\n    \
         tls: {sni: etcd.internal, ca_file: ca.pem, client_cert: /k/c.pem, client_key: /k/k.pem}\n",
    );
    let tls = etcd.tls.expect("tls");
    assert_eq!(tls.sni.as_deref(), Some("etcd.internal"));
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/lb/ca.pem"))
    );
    assert_eq!(
        tls.client_key.as_deref(),
        Some(std::path::Path::new("/k/k.pem"))
    );
    assert_eq!(
        etcd_of("discovery: {etcd: {endpoints: ['e:1'], prefix: /a/}}\n").tls,
        None
    );
    let etcd = etcd_of("discovery: {etcd: {endpoints: ['e:1'], prefix: /a/, tls: true}}\n");
    assert_eq!(etcd.tls, Some(crate::config::UpstreamTlsConfig::default()));
}

#[test]
fn etcd_tls_mixes_are_refused_where_written() {
    let bad = |yaml: &str| {
        parse(yaml, Format::Yaml, "lb.yaml")
            .unwrap_err()
            .to_string()
    };
    let mixed = bad(
        "discovery:\n  etcd:\n    endpoints:\n      - https://e1:2379\n      - http://e2:2379\n    prefix: /a/\n",
    );
    assert!(mixed.contains("lb.yaml:5:9"), "{mixed}");
    assert!(mixed.contains("http://e2:2379 is plain HTTP"), "{mixed}");
    let with_tls = bad("discovery:\n  etcd: {endpoints: ['http://e:1'], prefix: /a/, tls: true}\n");
    assert!(with_tls.contains("`tls` is set"), "{with_tls}");
    let off = bad("discovery:\n  etcd: {endpoints: ['https://e:1'], prefix: /a/, tls: false}\n");
    assert!(off.contains("`tls` is false"), "{off}");
    let half =
        bad("discovery:\n  etcd: {endpoints: ['e:1'], prefix: /a/, tls: {client_cert: c.pem}}\n");
    assert!(
        half.contains("client_cert is set but client_key is not"),
        "{half}"
    );
    let sni = bad("discovery:\n  etcd: {endpoints: ['e:1'], prefix: /a/, tls: {sni: 'a b'}}\n");
    assert!(sni.contains("not a DNS name"), "{sni}");
    assert!(
        bad("discovery: {etcd: {endpoints: ['https://e:1?x'], prefix: /a/}}\n")
            .contains("host:port")
    );
    assert!(
        bad("discovery: {etcd: {endpoints: ['::1:2379'], prefix: /a/}}\n").contains("host:port")
    );
}

#[test]
fn etcd_auth_takes_a_password_file_never_a_password() {
    let etcd = etcd_of(
        "discovery: {etcd: {endpoints: ['e:1'], prefix: /a/, username: lb, password_file: secret/etcd}}\n",
    );
    let auth = etcd.auth.expect("auth");
    assert_eq!(auth.username, "lb");
    assert_eq!(
        auth.password_file,
        std::path::Path::new("/etc/lb/secret/etcd")
    );
    let bad = |yaml: &str| {
        parse(yaml, Format::Yaml, "lb.yaml")
            .unwrap_err()
            .to_string()
    };
    let inline = bad(
        "discovery:\n  etcd: {endpoints: ['e:1'], prefix: /a/, username: lb, password: hunter2}\n",
    );
    assert!(inline.contains("never written"), "{inline}");
    assert!(inline.contains("lb.yaml:2:"), "{inline}");
    assert!(
        !inline.contains("hunter2"),
        "the password is not echoed: {inline}"
    );
    let alone = bad("discovery:\n  etcd: {endpoints: ['e:1'], prefix: /a/, username: lb}\n");
    assert!(alone.contains("password_file is not"), "{alone}");
    let alone = bad("discovery:\n  etcd: {endpoints: ['e:1'], prefix: /a/, password_file: p}\n");
    assert!(alone.contains("username is not"), "{alone}");
    assert!(
        bad(
            "discovery: {etcd: {endpoints: ['e:1'], prefix: /a/, username: '', password_file: p}}\n"
        )
        .contains("must not be empty")
    );
}

#[test]
fn etcd_settings_are_shown_without_secrets() {
    let config = parse(
        "discovery: {etcd: {endpoints: ['https://e:1'], prefix: /a/, username: lb, password_file: /run/p}}\n",
        Format::Yaml,
        "lb.yaml",
    )
    .unwrap();
    let shown = serde_json::to_value(config.discovery.unwrap()).unwrap();
    let etcd = &shown["etcd"];
    assert_eq!(etcd["username"], "lb");
    assert_eq!(etcd["password_file"], "/run/p");
    assert_eq!(etcd["tls"], serde_json::json!({}));
}
