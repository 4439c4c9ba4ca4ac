//! Discovered backends: any bytes, as an etcd value (one JSON object) or as a discovery file
//! (a YAML or JSON list), give backends or located errors, never a panic; what is accepted is a
//! set the balancer can take (every weight and limit at least 1, names and addresses unique,
//! named into its pool). The same bytes read as SRV records (priority, weight, port, address)
//! give backends of the lowest priority only, each address once, every weight at least 1.

use std::net::SocketAddr;
use std::path::Path;

use lb_core::config::{Format, PoolConfig, parse, parse_backend_entry, parse_backend_file};
use lb_core::discovery::{KeyedSet, SrvTarget, from_srv, merge, name_all};

fn pool() -> (lb_core::config::Config, PoolConfig) {
    let config = parse("discovery: {file: fuzz.yaml}\n", Format::Yaml, "lb.yaml")
        .expect("the fuzz pool parses");
    let pool = config.pool_list().remove(0);
    (config, pool)
}

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    let (config, pool) = pool();
    match parse_backend_entry(data, "etcd key /fuzz", &pool) {
        Ok(backend) => assert!(backend.weight >= 1 && backend.max_connections >= 1),
        Err(errors) => assert!(!errors.is_empty() && !errors.to_string().is_empty()),
    }
    let mut set = KeyedSet::default();
    let _ = set.put(&pool, b"/fuzz", data);
    assert!(set.backends().len() <= 1);
    for origin in ["fuzz.yaml", "fuzz.json"] {
        match parse_backend_file(data, Path::new(origin), &pool) {
            Ok(backends) => {
                assert!(!backends.is_empty(), "an empty list is refused");
                let named = name_all(&pool.name, backends);
                assert!(named.iter().all(|b| b.name.starts_with("default@")));
                let merged = merge(&config, &pool.name, named.clone())
                    .unwrap_or_else(|error| panic!("an accepted file does not merge: {error}"));
                assert_eq!(merged.backends, named);
            }
            Err(errors) => assert!(!errors.is_empty()),
        }
    }
    let records: Vec<SrvTarget> = (data.chunks_exact(7))
        .map(|c| SrvTarget {
            priority: u16::from(c[0] % 4),
            weight: u16::from_be_bytes([c[1], c[2]]),
            address: SocketAddr::from(([10, 0, 0, c[5]], u16::from_be_bytes([c[3], c[4]]))),
            host: format!("t{}.example.", c[6]),
        })
        .collect();
    let backends = from_srv(&pool, &records);
    let lowest = records.iter().map(|r| r.priority).min();
    let mut addresses: Vec<SocketAddr> = backends.iter().map(|b| b.address).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), backends.len());
    for backend in &backends {
        assert!(backend.weight >= 1);
        assert!(
            (records.iter()).any(|r| Some(r.priority) == lowest && r.address == backend.address)
        );
    }
}
