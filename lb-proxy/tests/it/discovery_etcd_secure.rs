//! etcd discovery as production clusters run it, against a real `etcd`: over TLS with client
//! certificates required (`--client-cert-auth`), and with authentication on (a user whose role
//! reads the prefix, tokens that expire after one second).
//!
//! - mTLS: the pool is listed and watched; a reload to a CA that did not sign etcd's
//!   certificate, or without the client certificate, fails (counted) and the pool keeps its
//!   backends; back to good settings the watch resumes; a key file that cannot be read refuses
//!   the start and the reload with its name; a real `lb` with the wrong CA logs why.
//! - Authentication: a real `lb` with the wrong password logs etcd's refusal, retries (counted,
//!   backed off) and never writes a password; with the right password the pool is listed and
//!   watched; when the password changes (etcd forgets the user's tokens, the file gets the new
//!   one) and etcd restarts, the resumed watch is refused for its token, a new token is asked
//!   for with the file's new password, and a later change still arrives.
//!
//! Needs `etcd` (Debian's `etcd-server`), as `discovery_etcd.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use lb_proxy::Daemon;

use crate::discovery_etcd::{entry, errors, names};
use crate::support::admin::{self, temp_dir};
use crate::support::etcd::{Etcd, Options, ServerTls, etcd_binary};
use crate::support::process::{Lb, LoggedLb};
use crate::support::tls::TestCa;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);
const PREFIX: &str = "/lb/pools/default/";

/// The daemon's configuration: one pool discovered from `etcd` (the block's inside).
fn config(etcd: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n\
         health_check:\n  enabled: false\n\
         discovery:\n  etcd: {{prefix: {PREFIX}, timeout: 2s, keepalive: 500ms, {etcd}}}\n  \
         backoff_min: 200ms\n  backoff_max: 1s\n"
    )
}

async fn backends_are(admin: SocketAddr, wanted: &[&str]) -> bool {
    let mut wanted: Vec<String> = wanted.iter().map(|n| format!("default@{n}")).collect();
    wanted.sort();
    eventually(WAIT, || {
        let wanted = wanted.clone();
        async move { names(&admin::backends(admin).await) == wanted }
    })
    .await
}

async fn error_count(metrics: SocketAddr) -> f64 {
    errors(&scrape_addr(metrics).await)
}

async fn scrape_addr(metrics: SocketAddr) -> String {
    String::from_utf8_lossy(&get(&client(), metrics, "/metrics").await.body).into_owned()
}

/// A real `lb` whose log (at `info`) goes to a file, with its admin and metrics addresses.
struct Logged {
    lb: LoggedLb,
    admin: SocketAddr,
    metrics: SocketAddr,
}

impl Logged {
    async fn start(dir: &Path, name: &str, yaml: &str) -> Logged {
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let lb = Lb::start_logged(&config, &dir.join(format!("{name}.log"))).await;
        let (admin, metrics) = (lb.lb.admin, lb.lb.metrics);
        Logged {
            lb,
            admin: admin.expect("admin address"),
            metrics: metrics.expect("metrics address"),
        }
    }

    fn log(&self) -> String {
        self.lb.log()
    }

    async fn logs(&self, text: &str) -> bool {
        self.lb.logs(text).await
    }
}

#[tokio::test]
async fn etcd_over_mutual_tls() {
    let Some(binary) = etcd_binary() else {
        return;
    };
    let dir = temp_dir("etcd-tls");
    let ca = TestCa::new("etcd test CA");
    let tls = ServerTls::new(&ca, &dir);
    let lb_cert = ca.leaf(&["lb"]);
    let (cert, key) = (dir.join("lb.pem"), dir.join("lb.key"));
    std::fs::write(&cert, &lb_cert.cert).unwrap();
    std::fs::write(&key, &lb_cert.key).unwrap();
    let wrong_ca = dir.join("wrong-ca.pem");
    std::fs::write(&wrong_ca, TestCa::new("another CA").pem).unwrap();
    let options = Options {
        tls: Some(tls.clone()),
        ..Options::default()
    };
    let etcd = Etcd::start_with(&binary, &dir, 0, 0, options).await;
    let fleet = backends(3).await;
    let at = |i: usize| fleet[i].addr();
    let kv = etcd.client();
    kv.put(format!("{PREFIX}a"), entry("b0", at(0), 1))
        .await
        .unwrap();
    kv.put(format!("{PREFIX}b"), entry("b1", at(1), 1))
        .await
        .unwrap();

    let port = etcd.client_port;
    let settings = |ca: &Path, client: bool| {
        let client = match client {
            true => format!(
                ", client_cert: {}, client_key: {}",
                cert.display(),
                key.display()
            ),
            false => String::new(),
        };
        config(&format!(
            "endpoints: ['https://127.0.0.1:{port}'], tls: {{ca_file: {}{client}}}",
            ca.display()
        ))
    };
    let good = settings(&tls.ca, true);
    let daemon = Daemon::start(parse(&good)).await.expect("starts");
    let admin = daemon.admin_addr.unwrap();
    assert!(backends_are(admin, &["b0", "b1"]).await, "listed over mTLS");
    kv.put(format!("{PREFIX}c"), entry("b2", at(2), 1))
        .await
        .unwrap();
    assert!(
        backends_are(admin, &["b0", "b1", "b2"]).await,
        "watched over mTLS"
    );

    // A CA that did not sign etcd's certificate: the restarted source fails, the set stays.
    let reloader = daemon.reloader();
    let before = errors(&scrape(&daemon).await);
    reloader
        .apply(parse(&settings(&wrong_ca, true)))
        .await
        .unwrap();
    let failed = eventually(WAIT, || async { errors(&scrape(&daemon).await) > before }).await;
    assert!(failed, "a certificate from an unknown CA is refused");
    assert!(backends_are(admin, &["b0", "b1", "b2"]).await);

    // No client certificate: etcd refuses the handshake.
    let before = errors(&scrape(&daemon).await);
    reloader
        .apply(parse(&settings(&tls.ca, false)))
        .await
        .unwrap();
    let failed = eventually(WAIT, || async { errors(&scrape(&daemon).await) > before }).await;
    assert!(failed, "etcd requires a client certificate");
    assert!(backends_are(admin, &["b0", "b1", "b2"]).await);

    // Good settings again: the watch resumes.
    reloader.apply(parse(&good)).await.unwrap();
    kv.delete(format!("{PREFIX}a")).await.unwrap();
    assert!(backends_are(admin, &["b1", "b2"]).await, "resumed");

    // A key that cannot be read refuses the reload and the start, naming the file.
    let missing = good.replace("lb.key", "missing.key");
    let refused = reloader
        .apply(parse(&missing))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("missing.key") && refused.contains("discovery.etcd.tls"),
        "{refused}"
    );
    let refused = Daemon::start(parse(&missing))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("missing.key"), "{refused}");
    daemon.shutdown().await;

    // A real lb trusting the wrong CA logs why, and its pool stays empty.
    let logged = Logged::start(&dir, "wrong-ca", &settings(&wrong_ca, true)).await;
    assert!(
        logged.logs("invalid peer certificate").await,
        "{}",
        logged.log()
    );
    assert!(logged.log().contains("UnknownIssuer"), "{}", logged.log());
    assert!(admin::backends(logged.admin).await.is_empty());
}

#[tokio::test]
async fn etcd_with_authentication() {
    let Some(binary) = etcd_binary() else {
        return;
    };
    let dir = temp_dir("etcd-auth");
    // Simple tokens forgotten one second after their last use.
    let options = Options {
        args: ["--auth-token", "simple", "--auth-token-ttl", "1"]
            .map(str::to_owned)
            .to_vec(),
        ..Options::default()
    };
    let mut etcd = Etcd::start_with(&binary, &dir, 0, 0, options).await;
    let fleet = backends(3).await;
    let at = |i: usize| fleet[i].addr();
    etcd.client()
        .enable_auth("root-secret", "lb", "lb-secret-pw", PREFIX)
        .await
        .unwrap();
    etcd.options.root = Some(("root".to_owned(), "root-secret".to_owned()));
    let kv = etcd.client();
    kv.put(format!("{PREFIX}a"), entry("b0", at(0), 1))
        .await
        .unwrap();
    kv.put(format!("{PREFIX}b"), entry("b1", at(1), 1))
        .await
        .unwrap();

    let port = etcd.client_port;
    let with_password = |file: &str, password: &str| {
        let path = dir.join(file);
        std::fs::write(&path, format!("{password}\n")).unwrap();
        config(&format!(
            "endpoints: ['127.0.0.1:{port}'], username: lb, password_file: {}",
            path.display()
        ))
    };

    // The wrong password: etcd's refusal is logged, retried and counted; no password is written.
    let wrong = Logged::start(
        &dir,
        "wrong",
        &with_password("wrong-pw", "not-the-password"),
    )
    .await;
    assert!(
        wrong.logs("authenticating as \"lb\"").await,
        "{}",
        wrong.log()
    );
    let retried = eventually(WAIT, || async { error_count(wrong.metrics).await >= 2.0 }).await;
    assert!(retried, "{}", wrong.log());
    assert!(admin::backends(wrong.admin).await.is_empty());

    // The right password: listed and watched.
    let right = Logged::start(&dir, "right", &with_password("right-pw", "lb-secret-pw")).await;
    assert!(
        backends_are(right.admin, &["b0", "b1"]).await,
        "{}",
        right.log()
    );
    kv.put(format!("{PREFIX}c"), entry("b2", at(2), 1))
        .await
        .unwrap();
    assert!(backends_are(right.admin, &["b0", "b1", "b2"]).await);

    // The password changes (etcd forgets the user's tokens; the new one is written to the
    // file) and etcd restarts, ending the watch: the resumed watch is refused for its token, the
    // file is read again, a new token is asked for, and changes arrive.
    kv.change_password("lb", "lb-new-pw").await.unwrap();
    std::fs::write(dir.join("right-pw"), "lb-new-pw\n").unwrap();
    let etcd = etcd.restart(&binary).await;
    let kv = etcd.client();
    kv.delete(format!("{PREFIX}a")).await.unwrap();
    assert!(
        backends_are(right.admin, &["b1", "b2"]).await,
        "{}",
        right.log()
    );
    assert!(
        right.log().contains("authenticating again"),
        "{}",
        right.log()
    );
    for logged in [&wrong, &right] {
        let log = logged.log();
        assert!(
            !["lb-secret-pw", "lb-new-pw", "not-the-password"]
                .iter()
                .any(|password| log.contains(password)),
            "{log}"
        );
    }
}
