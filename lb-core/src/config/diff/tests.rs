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

#[test]
fn a_backend_reached_another_way_is_a_new_backend() {
    let old = config(vec![backend("a", 1, 1)]);
    let mut proxied = backend("a", 1, 1);
    proxied.proxy_protocol = crate::config::SendProxyProtocol::V2;
    let new = config(vec![proxied.clone()]);
    assert_eq!(
        diff(&old, &new),
        vec![
            Change::BackendRemoved("a".into()),
            Change::BackendAdded(proxied)
        ]
    );
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
            Change::BackendRemoved("b".into()),
            Change::BackendRemoved("c".into()),
            Change::BackendUpdated(backend("a", 1, 5)),
            Change::BackendAdded(backend("b", 9, 1)),
            Change::BackendAdded(backend("d", 4, 1)),
        ]
    );
    assert_eq!(apply(&old, &changes), new);
}

#[test]
fn a_new_order_is_one_change() {
    let old = config(vec![backend("a", 1, 1), backend("b", 2, 1)]);
    let new = config(vec![backend("b", 2, 1), backend("a", 1, 1)]);
    assert_eq!(
        diff(&old, &new),
        [Change::BackendOrder(vec!["b".into(), "a".into()])]
    );
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

proptest! {
    #[test]
    fn the_diff_of_a_config_with_itself_is_empty(config in arbitrary_config()) {
        prop_assert!(diff(&config, &config).is_empty());
    }

    #[test]
    fn applying_the_diff_of_a_to_b_gives_b(a in arbitrary_config(), b in arbitrary_config()) {
        let changes = diff(&a, &b);
        prop_assert_eq!(apply(&a, &changes), b);
    }

    #[test]
    fn a_backend_that_stays_at_its_address_the_same_way_is_never_removed(
        a in arbitrary_config(),
        b in arbitrary_config(),
    ) {
        for change in diff(&a, &b) {
            if let Change::BackendRemoved(name) = change {
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
