//! Several instances, one behaviour: two balancers with the same configuration and the same
//! discovered set map every client address to the same backend under `ip_hash`, with no state
//! shared between them, and agree again after a backend leaves and after it returns (and, the
//! ring being a function of the set alone, return to the first mapping).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use lb_proxy::Daemon;
use tokio::net::TcpSocket;

use crate::support::admin::{self, temp_dir, write_file};
use crate::support::raw::get_on;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

/// The backend that `daemon` sends client `client` (a loopback address) to.
async fn backend_for(daemon: SocketAddr, client: [u8; 4]) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((client, 0))).unwrap();
    let mut stream = socket.connect(daemon).await.unwrap();
    let response = get_on(&mut stream, "/").await;
    assert_eq!(response.status, 200);
    header(&response.head, "x-backend")
        .unwrap_or_default()
        .to_owned()
}

/// Every client's backend on `daemon`.
async fn mapping(daemon: &Daemon) -> BTreeMap<u8, String> {
    let mut map = BTreeMap::new();
    for host in 10..70u8 {
        let backend = backend_for(daemon.listen_addr, [127, 0, 0, host]).await;
        map.insert(host, backend);
    }
    map
}

async fn count_is(daemon: &Daemon, count: usize) -> bool {
    let admin = daemon.admin_addr.unwrap();
    eventually(WAIT, || async {
        admin::backends(admin).await.len() == count
    })
    .await
}

#[tokio::test]
async fn two_balancers_map_every_client_alike_through_changes() {
    let fleet = backends(4).await;
    let entries: Vec<(String, SocketAddr, u32)> = (fleet.iter())
        .map(|b| (b.name().to_owned(), b.addr(), 1))
        .collect();
    let entries: Vec<(&str, SocketAddr, u32)> = (entries.iter())
        .map(|(n, a, w)| (n.as_str(), *a, *w))
        .collect();
    let dir = temp_dir("disc-fleet");
    let list = dir.join("backends.json");
    let json = |entries: &[(&str, SocketAddr, u32)]| {
        let items: Vec<serde_json::Value> = (entries.iter())
            .map(|(name, address, weight)| {
                serde_json::json!({"name": name, "address": address.to_string(), "weight": weight})
            })
            .collect();
        serde_json::Value::Array(items).to_string()
    };
    // JSON here, YAML in the other tests: both are read.
    write_file(&list, &json(&entries));
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n\
         health_check:\n  enabled: false\nload_balancer:\n  algorithm: ip_hash\n\
         discovery:\n  file: {}\n  debounce: 20ms\n",
        list.display()
    );
    let a = Daemon::start(parse(&yaml)).await.expect("a starts");
    let b = Daemon::start(parse(&yaml)).await.expect("b starts");
    for daemon in [&a, &b] {
        assert!(count_is(daemon, 4).await);
    }
    let first = mapping(&a).await;
    assert_eq!(first, mapping(&b).await, "the same set, the same mapping");
    let used: std::collections::HashSet<&String> = first.values().collect();
    assert!(used.len() >= 3, "clients spread: {first:?}");

    // b2 leaves: both agree, and only b2's clients moved.
    let without: Vec<_> = entries.iter().filter(|e| e.0 != "b2").cloned().collect();
    write_file(&list, &json(&without));
    for daemon in [&a, &b] {
        assert!(count_is(daemon, 3).await);
    }
    let after = mapping(&a).await;
    assert_eq!(after, mapping(&b).await, "agree after a backend left");
    for (client, backend) in &first {
        if backend != "b2" {
            assert_eq!(&after[client], backend, "client {client} stayed");
        }
        assert_ne!(after[client], "b2");
    }

    // b2 returns: both agree, and every client is back where it was.
    write_file(&list, &json(&entries));
    for daemon in [&a, &b] {
        assert!(count_is(daemon, 4).await);
    }
    let back = mapping(&a).await;
    assert_eq!(back, mapping(&b).await, "agree after it returned");
    assert_eq!(back, first, "the first mapping again");
    a.shutdown().await;
    b.shutdown().await;
}
