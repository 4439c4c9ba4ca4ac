//! Backends discovered through DNS, against a real `dnsmasq` on a loopback port serving a
//! hosts file and SRV records the test writes: the pool follows A records (the hosts file
//! changed and dnsmasq told by SIGHUP) and SRV records (dnsmasq restarted on the same port with
//! new ones); SRV weight 0 and backup priorities are as RFC 2782 says; NXDOMAIN and a server
//! that stopped answering keep the last good set, and failures back off.
//!
//! Needs `dnsmasq` (Debian's `dnsmasq-base`); without it the tests say so and pass, unless
//! `LB_REQUIRE_DNSMASQ=1` (CI sets it) makes its absence a failure.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lb_proxy::Daemon;
use serde_json::Value;
use test_backend::{BackendOptions, RunningBackend};

use crate::support::admin::{self, temp_dir, write_file};
use crate::support::process::OwnedChild;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

/// A dnsmasq on a loopback port, serving `dir`'s files; killed (by its PID) when dropped.
struct Dnsmasq {
    child: OwnedChild,
    port: u16,
    dir: PathBuf,
}

fn dnsmasq_binary() -> Option<PathBuf> {
    crate::support::process::tool(
        "dnsmasq",
        "LB_REQUIRE_DNSMASQ",
        "dnsmasq-base",
        "DNS discovery",
    )
}

impl Dnsmasq {
    /// Starts dnsmasq on `port` (0: a free one) with `srv` lines (`srv-host=` values) and the
    /// hosts file `dir/hosts`; answers carry a TTL of 1 s. A free port is one free for both UDP
    /// and TCP when chosen; if dnsmasq still cannot bind it (another test's connection took it
    /// meanwhile), another is tried.
    async fn start(binary: &Path, dir: &Path, port: u16, srv: &[String]) -> Dnsmasq {
        for _ in 0..10 {
            let chosen = match port {
                0 => match free_port() {
                    Some(port) => port,
                    None => continue,
                },
                port => port,
            };
            if let Some(dnsmasq) = Self::try_start(binary, dir, chosen, srv).await {
                return dnsmasq;
            }
        }
        panic!("dnsmasq did not start on a free port");
    }

    async fn try_start(binary: &Path, dir: &Path, port: u16, srv: &[String]) -> Option<Dnsmasq> {
        let hosts = dir.join("hosts");
        if !hosts.exists() {
            write_file(&hosts, "");
        }
        let mut conf = format!(
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             addn-hosts={}\nlocal=/test/\nlocal-ttl=1\nauth-ttl=1\npid-file=\nuser=root\n",
            hosts.display()
        );
        for line in srv {
            conf.push_str(&format!("srv-host={line}\n"));
        }
        let conf_path = dir.join("dnsmasq.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf_path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        let mut dnsmasq = Dnsmasq {
            child: OwnedChild(child),
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(dnsmasq);
            }
            if dnsmasq.child.try_wait().ok().flatten().is_some() {
                // It could not bind the port: the caller tries another.
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Rewrites the hosts file and tells dnsmasq to read it again (SIGHUP).
    fn hosts(&self, text: &str) {
        write_file(&self.dir.join("hosts"), text);
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

/// A loopback port free for both UDP and TCP now.
fn free_port() -> Option<u16> {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    let port = tcp.local_addr().ok()?.port();
    UdpSocket::bind(("127.0.0.1", port)).ok()?;
    Some(port)
}

/// A test backend named `name` at `addr`.
async fn backend_at(name: &str, addr: SocketAddr) -> RunningBackend {
    let options = BackendOptions {
        name: name.to_owned(),
        ..BackendOptions::default()
    };
    test_backend::bind_and_spawn(addr, options)
        .await
        .expect("backend starts")
}

fn config(dns: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n\
         health_check:\n  enabled: false\n\
         discovery:\n  dns: {dns}\n  backoff_min: 100ms\n  backoff_max: 400ms\n"
    )
}

fn names(backends: &[Value]) -> Vec<String> {
    let name = |b: &Value| b["name"].as_str().unwrap_or_default().to_owned();
    let mut names: Vec<String> = backends.iter().map(name).collect();
    names.sort();
    names
}

async fn has_backends(daemon: &Daemon, wanted: &[String]) -> bool {
    let admin = daemon.admin_addr.expect("admin on");
    let mut wanted = wanted.to_vec();
    wanted.sort();
    eventually(WAIT, || {
        let wanted = wanted.clone();
        async move { names(&admin::backends(admin).await) == wanted }
    })
    .await
}

fn errors(metrics: &str) -> f64 {
    metric_sum(
        metrics,
        "lb_discovery_updates_total",
        &["source=\"dns\"", "result=\"error\""],
    )
}

async fn served_by(daemon: &Daemon, count: usize) -> std::collections::HashMap<String, usize> {
    let client = client();
    let mut answers = Vec::new();
    for _ in 0..count {
        let answer = get(&client, daemon.listen_addr, "/").await;
        assert_eq!(answer.status, 200);
        answers.push(answer);
    }
    tally(&answers)
}

#[tokio::test]
async fn a_records_are_followed_and_failures_keep_the_set() {
    let Some(binary) = dnsmasq_binary() else {
        return;
    };
    // Three backends on one port of three loopback addresses, as A records describe them.
    let first = backend_at("a2", "127.0.0.2:0".parse().unwrap()).await;
    let port = first.addr().port();
    let fleet = [
        first,
        backend_at("a3", SocketAddr::from(([127, 0, 0, 3], port))).await,
        backend_at("a4", SocketAddr::from(([127, 0, 0, 4], port))).await,
    ];
    let dir = temp_dir("dns-a");
    write_file(
        &dir.join("hosts"),
        "127.0.0.2 api.lb.test\n127.0.0.3 api.lb.test\n",
    );
    let dns = Dnsmasq::start(&binary, &dir, 0, &[]).await;
    let yaml = config(&format!(
        "{{name: api.lb.test, type: a, port: {port}, resolver: 127.0.0.1:{}, min_ttl: 100ms, max_ttl: 300ms, timeout: 300ms}}",
        dns.port
    ));
    let daemon = Daemon::start(parse(&yaml)).await.expect("starts");
    let name = |host: u8| format!("default@127.0.0.{host}:{port}");
    assert!(has_backends(&daemon, &[name(2), name(3)]).await);
    let counts = served_by(&daemon, 10).await;
    assert_eq!(counts.len(), 2, "{counts:?}");

    // .3 leaves, .4 joins.
    dns.hosts("127.0.0.2 api.lb.test\n127.0.0.4 api.lb.test\n");
    assert!(has_backends(&daemon, &[name(2), name(4)]).await);
    let counts = served_by(&daemon, 10).await;
    assert!(
        counts.contains_key("a4") && !counts.contains_key("a3"),
        "{counts:?}"
    );

    // NXDOMAIN: the set stays, the failure is counted.
    dns.hosts("");
    let counted = eventually(WAIT, || async { errors(&scrape(&daemon).await) >= 2.0 }).await;
    assert!(counted, "NXDOMAIN is counted as a failure");
    assert!(has_backends(&daemon, &[name(2), name(4)]).await);
    assert_eq!(served_by(&daemon, 4).await.len(), 2);

    // The server gone (timeouts): the set stays, and lookups back off rather than storm.
    drop(dns);
    let before = errors(&scrape(&daemon).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = errors(&scrape(&daemon).await) - before;
    // Each lookup takes its 300 ms timeout and then waits up to 400 ms: at most a handful in
    // 2.5 s, where a loop without backoff would ask hundreds of times.
    assert!((1.0..=8.0).contains(&during), "{during} failures in 2.5 s");
    assert!(has_backends(&daemon, &[name(2), name(4)]).await);
    assert_eq!(served_by(&daemon, 4).await.len(), 2);
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_discovery_backends", &["pool=\"default\""]),
        2.0
    );
    drop(fleet);
    daemon.shutdown().await;
}

#[tokio::test]
async fn srv_records_give_ports_and_weights() {
    let Some(binary) = dnsmasq_binary() else {
        return;
    };
    let fleet = backends(3).await;
    let port = |i: usize| fleet[i].addr().port();
    let dir = temp_dir("dns-srv");
    write_file(
        &dir.join("hosts"),
        "127.0.0.1 t0.lb.test\n127.0.0.1 t1.lb.test\n127.0.0.1 t2.lb.test\n",
    );
    // b0 weight 10 and b1 weight 0 at priority 1; b2 a backup at priority 2.
    let records = |entries: &[(usize, u16, u16)]| -> Vec<String> {
        (entries.iter())
            .map(|(i, priority, weight)| {
                format!(
                    "_api._tcp.lb.test,t{i}.lb.test,{},{priority},{weight}",
                    port(*i)
                )
            })
            .collect()
    };
    let dns = Dnsmasq::start(
        &binary,
        &dir,
        0,
        &records(&[(0, 1, 10), (1, 1, 0), (2, 2, 5)]),
    )
    .await;
    let yaml = config(&format!(
        "{{name: _api._tcp.lb.test, type: srv, resolver: 127.0.0.1:{}, min_ttl: 100ms, max_ttl: 300ms, timeout: 300ms}}",
        dns.port
    ));
    let daemon = Daemon::start(parse(&yaml)).await.expect("starts");
    let name = |i: usize| format!("default@127.0.0.1:{}", port(i));
    assert!(has_backends(&daemon, &[name(0), name(1)]).await);
    let admin = daemon.admin_addr.unwrap();
    assert_eq!(
        admin::backend(admin, &name(0)).await["configured_weight"],
        1000
    );
    assert_eq!(
        admin::backend(admin, &name(1)).await["configured_weight"],
        1
    );

    // New records (dnsmasq restarted on the same port): b1 leaves, b2 moves up.
    let dns_port = dns.port;
    drop(dns);
    let dns = Dnsmasq::start(&binary, &dir, dns_port, &records(&[(0, 1, 1), (2, 1, 3)])).await;
    assert!(has_backends(&daemon, &[name(0), name(2)]).await);
    let reweighted = eventually(WAIT, || async {
        admin::backend(admin, &name(2)).await["configured_weight"] == 300
    })
    .await;
    assert!(reweighted);
    let counts = served_by(&daemon, 8).await;
    assert!(!counts.contains_key("b1"), "{counts:?}");
    drop(dns);
    daemon.shutdown().await;
}

/// A backend found through an SRV record and reached over TLS is verified for the record's
/// target name (its certificate names no IP address); an `upstream.tls.sni` overrides it.
#[tokio::test]
async fn tls_backends_found_by_name_are_verified_for_that_name() {
    use crate::support::tls::{TempDir, TestCa};
    let Some(binary) = dnsmasq_binary() else {
        return;
    };
    let (files, ca) = (TempDir::new("dns-tls"), TestCa::new("dns ca"));
    let ca_file = files.write("ca.pem", &ca.pem);
    let leaf = ca.leaf(&["web.lb.test"]);
    let tls = test_backend::tls_config(leaf.cert.as_bytes(), leaf.key.as_bytes(), None).unwrap();
    let options = BackendOptions {
        name: "secure".to_owned(),
        tls: Some(tls),
        ..BackendOptions::default()
    };
    let backend = test_backend::bind_and_spawn(([127, 0, 0, 1], 0).into(), options)
        .await
        .expect("backend starts");
    let dir = temp_dir("dns-tls");
    write_file(&dir.join("hosts"), "127.0.0.1 web.lb.test\n");
    let record = format!(
        "_web._tcp.lb.test,web.lb.test,{},0,1",
        backend.addr().port()
    );
    let dns = Dnsmasq::start(&binary, &dir, 0, &[record]).await;
    let with_tls = |tls: &str| {
        format!(
            "{}upstream:\n  tls: {{ca_file: {}{tls}}}\n",
            config(&format!(
                "{{name: _web._tcp.lb.test, type: srv, resolver: 127.0.0.1:{}, timeout: 300ms}}",
                dns.port
            )),
            ca_file.display()
        )
    };
    let name = format!("default@127.0.0.1:{}", backend.addr().port());
    let client = client();

    let daemon = Daemon::start(parse(&with_tls(""))).await.expect("starts");
    assert!(has_backends(&daemon, std::slice::from_ref(&name)).await);
    let answer = get(&client, daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.backend(), "secure");
    daemon.shutdown().await;

    // A configured SNI wins: the certificate does not name it, so nothing is served.
    let daemon = Daemon::start(parse(&with_tls(", sni: other.lb.test")))
        .await
        .expect("starts");
    assert!(has_backends(&daemon, &[name]).await);
    let answer = get(&client, daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    daemon.shutdown().await;
    drop(dns);
}
