use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::balance::Algorithm;

fn backend(name: &str, port: u16, weight: u32) -> BackendConfig {
    BackendConfig {
        name: name.to_owned(),
        weight,
        max_connections: 100,
        ..BackendConfig::new(SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

fn config(backends: Vec<BackendConfig>) -> Config {
    Config::with_backends(backends)
}

fn removed(name: &str) -> Change {
    Change::BackendRemoved {
        pool: "default".into(),
        name: name.into(),
    }
}

fn added(backend: BackendConfig) -> Change {
    Change::BackendAdded {
        pool: "default".into(),
        backend,
    }
}

fn pool(name: &str, backends: Vec<BackendConfig>) -> PoolConfig {
    let flat = config(backends);
    PoolConfig {
        name: name.to_owned(),
        ..flat.pool_list().remove(0)
    }
}

#[test]
fn a_backend_that_moves_to_another_pool_leaves_one_and_joins_the_other() {
    let mut old = config(Vec::new());
    old.pools = vec![
        pool("p", vec![backend("a", 1, 1)]),
        pool("q", vec![backend("b", 2, 1)]),
    ];
    let mut new = old.clone();
    new.pools = vec![
        pool("p", Vec::new()),
        pool("q", vec![backend("b", 2, 1), backend("a", 1, 1)]),
    ];
    let changes = diff(&old, &new);
    assert_eq!(
        changes,
        [
            Change::BackendRemoved {
                pool: "p".into(),
                name: "a".into()
            },
            Change::BackendAdded {
                pool: "q".into(),
                backend: backend("a", 1, 1)
            },
        ]
    );
    assert_eq!(apply_pools(&old.pool_list(), &changes), new.pool_list());
}

#[test]
fn a_pool_section_and_the_routes_are_changes_of_their_own() {
    let mut old = config(Vec::new());
    old.pools = vec![
        pool("p", vec![backend("a", 1, 1)]),
        pool("q", vec![backend("b", 2, 1)]),
    ];
    let mut new = old.clone();
    new.pools[1].queue.size = 10;
    new.pools.reverse();
    new.routes = vec![crate::config::RouteConfig::catch_all("all", "q")];
    let changes = diff(&old, &new);
    assert_eq!(
        changes,
        [
            Change::PoolOrder(vec!["q".into(), "p".into()]),
            Change::Queue("q".into(), new.pools[0].queue),
            Change::Routes,
        ]
    );
    assert_eq!(changes[1].subject(), "pools.q.queue");
}

#[test]
fn a_backend_reached_another_way_is_a_new_backend() {
    let old = config(vec![backend("a", 1, 1)]);
    let mut proxied = backend("a", 1, 1);
    proxied.proxy_protocol = crate::config::SendProxyProtocol::V2;
    let new = config(vec![proxied.clone()]);
    assert_eq!(diff(&old, &new), vec![removed("a"), added(proxied)]);
}

#[test]
fn a_backend_that_changes_protocol_is_a_new_backend() {
    let old = config(vec![backend("a", 1, 1)]);
    let mut h2c = backend("a", 1, 1);
    h2c.protocol = crate::config::UpstreamProtocol::H2c;
    let new = config(vec![h2c.clone()]);
    assert_eq!(diff(&old, &new), vec![removed("a"), added(h2c)]);
}

#[test]
fn turning_tls_on_or_off_needs_a_restart() {
    let old = config(vec![backend("a", 1, 1)]);
    let mut new = old.clone();
    new.server.tls = Some(crate::config::ServerTlsConfig {
        certificates: Vec::new(),
        min_version: Default::default(),
        session_tickets: true,
        session_ticket_key_file: None,
        watch: false,
        alpn: crate::config::DEFAULT_ALPN.to_vec(),
    });
    let changes = diff(&old, &new);
    assert_eq!(changes.len(), 1);
    assert!(
        changes[0]
            .needs_restart(&old)
            .is_some_and(|why| why.contains("server.tls"))
    );
}

#[test]
fn a_changed_address_is_a_new_backend_and_a_weight_an_update() {
    let old = config(vec![
        backend("a", 1, 1),
        backend("b", 2, 1),
        backend("c", 3, 1),
    ]);
    let new = config(vec![
        backend("a", 1, 5),
        backend("b", 9, 1),
        backend("d", 4, 1),
    ]);
    let changes = diff(&old, &new);
    assert_eq!(
        changes,
        [
            removed("b"),
            removed("c"),
            Change::BackendUpdated {
                pool: "default".into(),
                backend: backend("a", 1, 5)
            },
            added(backend("b", 9, 1)),
            added(backend("d", 4, 1)),
        ]
    );
    assert_eq!(apply_pools(&old.pool_list(), &changes), new.pool_list());
}

#[test]
fn a_new_order_is_one_change() {
    let old = config(vec![backend("a", 1, 1), backend("b", 2, 1)]);
    let new = config(vec![backend("b", 2, 1), backend("a", 1, 1)]);
    assert_eq!(
        diff(&old, &new),
        [Change::BackendOrder {
            pool: "default".into(),
            order: vec!["b".into(), "a".into()]
        }]
    );
}

#[test]
fn tracing_is_one_change_applied_on_reload() {
    let old = config(vec![backend("a", 9001, 1)]);
    let mut new = old.clone();
    new.tracing.enabled = true;
    new.tracing.sampling_ratio = 0.25;
    let changes = diff(&old, &new);
    assert_eq!(changes, vec![Change::Tracing(new.tracing.clone())]);
    assert_eq!(changes[0].needs_restart(&old), None);
    assert_eq!(changes[0].subject(), "tracing");
}

#[test]
fn only_the_worker_count_needs_a_restart() {
    let old = config(vec![backend("a", 1, 1)]);
    let mut new = old.clone();
    new.server.workers = 4;
    new.server.idle_timeout = Duration::from_secs(5);
    new.load_balancer.algorithm = Algorithm::P2c;
    let changes = diff(&old, &new);
    let restarts: Vec<_> = changes
        .iter()
        .filter_map(|c| c.needs_restart(&old))
        .collect();
    assert_eq!(
        restarts,
        ["server.workers: the runtime's threads are started once"]
    );
    assert_eq!(changes.len(), 2);
}

/// A configuration drawn from a small world of backends and section variations, so that two
/// draws share names, addresses and settings often.
fn arbitrary_config() -> impl Strategy<Value = Config> {
    let backends = prop::sample::subsequence(
        vec![("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5)],
        1..=5,
    )
    .prop_flat_map(|chosen| {
        let n = chosen.len();
        (
            Just(chosen),
            prop::collection::vec((1u32..4, any::<bool>(), any::<bool>(), any::<bool>()), n),
        )
    })
    .prop_map(|(chosen, tweaks)| {
        chosen
            .into_iter()
            .zip(tweaks)
            .map(
                |((name, port), (weight, moved, limited, proxied))| BackendConfig {
                    max_connections: if limited { 7 } else { 100 },
                    proxy_protocol: match proxied {
                        true => crate::config::SendProxyProtocol::V2,
                        false => crate::config::SendProxyProtocol::Off,
                    },
                    ..backend(name, if moved { port + 100 } else { port }, weight)
                },
            )
            .collect::<Vec<_>>()
    })
    .prop_shuffle();
    let algorithm = prop::sample::select(vec![Algorithm::RoundRobin, Algorithm::P2c]);
    (backends, algorithm, any::<bool>(), any::<bool>(), 1usize..3).prop_map(
        |(backends, algorithm, checks, breaker, workers)| {
            let mut config = config(backends);
            config.load_balancer.algorithm = algorithm;
            config.health_check.enabled = checks;
            config.circuit_breaker.enabled = breaker;
            config.server.workers = workers;
            config
        },
    )
}

/// Pools drawn from a small world: two or three named pools over the same backends, some
/// moving between them, with or without the flat form's `default` pool beside them.
fn arbitrary_pools() -> impl Strategy<Value = Config> {
    let names = prop::sample::subsequence(vec!["p", "q", "r"], 1..=3).prop_shuffle();
    (names, arbitrary_config(), any::<bool>(), 0usize..3).prop_map(|(names, base, flat, queue)| {
        let mut config = base.clone();
        let mut backends = base.backends.clone();
        if !flat {
            config.backends.clear();
        } else {
            backends.truncate(1);
            config.backends = std::mem::take(&mut backends);
            backends = base.backends[1..].to_vec();
        }
        let per = backends.len().div_ceil(names.len()).max(1);
        config.pools = (names.iter().enumerate())
            .map(|(i, name)| {
                let mut pool = pool(
                    name,
                    backends.iter().skip(i * per).take(per).cloned().collect(),
                );
                pool.queue.size = queue * i;
                pool
            })
            .collect();
        config
    })
}

proptest! {
    #[test]
    fn the_diff_of_a_config_with_itself_is_empty(config in arbitrary_config()) {
        prop_assert!(diff(&config, &config).is_empty());
    }

    #[test]
    fn applying_the_diff_of_a_to_b_gives_b(a in arbitrary_config(), b in arbitrary_config()) {
        let changes = diff(&a, &b);
        prop_assert_eq!(apply_pools(&a.pool_list(), &changes), b.pool_list());
    }

    #[test]
    fn applying_the_diff_of_pools_gives_the_new_pools(
        a in arbitrary_pools(),
        b in arbitrary_pools(),
    ) {
        let changes = diff(&a, &b);
        prop_assert_eq!(apply_pools(&a.pool_list(), &changes), b.pool_list());
    }

    #[test]
    fn a_backend_that_stays_at_its_address_the_same_way_is_never_removed(
        a in arbitrary_config(),
        b in arbitrary_config(),
    ) {
        for change in diff(&a, &b) {
            if let Change::BackendRemoved { name, .. } = change {
                let kept = b.backends.iter().any(|new| {
                    new.name == name
                        && (a.backends.iter()).any(|old| {
                            old.name == name
                                && old.address == new.address
                                && old.proxy_protocol == new.proxy_protocol
                        })
                });
                prop_assert!(!kept, "{name} stayed as it was but was removed");
            }
        }
    }
}
