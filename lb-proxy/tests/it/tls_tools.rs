//! `config/examples/tls.yaml` as shipped, checked with the tools docs/tls.md shows: `curl
//! --cacert` over HTTPS (HTTP/2 by ALPN, and `--http1.1`) and through the redirect, `openssl s_client` verifying the chain and
//! refused at TLS 1.1. Ports are moved to 0 and the backends to test backends; everything else is
//! the file's. `curl` and `openssl` are Debian packages `.ci/run` installs; elsewhere a test
//! without them says so and passes, unless `LB_REQUIRE_TLS_TOOLS=1` (set by CI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lb_core::config::Config;

use crate::support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `tool` with `args`; `None` (after saying so) when it is not installed and not required.
fn run(tool: &str, args: &[&str]) -> Option<Output> {
    match Command::new(tool).args(args).current_dir(root()).output() {
        Ok(output) => Some(output),
        Err(error) if std::env::var_os("LB_REQUIRE_TLS_TOOLS").is_some() => {
            panic!("{tool} is required here (LB_REQUIRE_TLS_TOOLS; Debian package {tool}): {error}")
        }
        Err(_) => {
            eprintln!("{tool} not found: skipping `{tool} {}`", args.join(" "));
            None
        }
    }
}

/// The shipped example, its listeners on port 0, its backends `fleet`.
fn example(fleet: &[test_backend::RunningBackend]) -> Config {
    let path = root().join("config/examples/tls.yaml");
    let bytes = std::fs::read(&path).unwrap();
    let mut config = lb_core::config::parse_bytes(&bytes, &path).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.server.listen = any;
    config.metrics.listen = any;
    config.health_check.enabled = false;
    config.server.http_redirect.as_mut().unwrap().listen = any;
    for (backend, running) in config.backends.iter_mut().zip(fleet) {
        backend.address = running.addr();
    }
    config
}

#[tokio::test]
async fn the_example_answers_curl_and_openssl_as_the_docs_say() {
    let fleet = backends(3).await;
    let daemon = lb_proxy::Daemon::start(example(&fleet)).await.unwrap();
    let port = daemon.listen_addr.port();
    let redirect = daemon.redirect_addr.unwrap();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/");
    let redirect_url = format!("http://{redirect}/shop?x=1");
    let ca = "config/examples/certs/demo-ca.pem";
    let outputs = tokio::task::spawn_blocking(move || {
        let https = run(
            "curl",
            &[
                "-sS",
                "--cacert",
                ca,
                "--resolve",
                &resolve,
                "-D",
                "-",
                &url,
            ],
        );
        // As the example's comment says: HTTP/2 by default (ALPN), HTTP/1.1 when asked for.
        let http1 = run(
            "curl",
            &[
                "-sS",
                "--http1.1",
                "--cacert",
                ca,
                "--resolve",
                &resolve,
                "-D",
                "-",
                &url,
            ],
        );
        let moved = run(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "-D",
                "-",
                "-H",
                "Host: localhost",
                &redirect_url,
            ],
        );
        let connect = format!("127.0.0.1:{port}");
        let verify = run(
            "openssl",
            &[
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "localhost",
                "-CAfile",
                ca,
                "-verify_return_error",
                "-brief",
                "-tls1_3",
            ],
        );
        let old = run(
            "openssl",
            &[
                "s_client",
                "-connect",
                &connect,
                "-servername",
                "localhost",
                "-tls1_1",
            ],
        );
        (https, moved, verify, old, http1)
    })
    .await
    .unwrap();
    let text = |output: &Output| {
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    if let Some(https) = outputs.0 {
        let text = text(&https).to_ascii_lowercase();
        assert!(https.status.success(), "{text}");
        assert!(text.starts_with("http/2 200"), "{text}");
        assert!(text.contains("hello from b"), "{text}");
    }
    if let Some(http1) = outputs.4 {
        let text = text(&http1).to_ascii_lowercase();
        assert!(http1.status.success(), "{text}");
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("hello from b"), "{text}");
    }
    if let Some(moved) = outputs.1 {
        let text = text(&moved).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 308"), "{text}");
        assert!(
            text.contains("location: https://localhost:8443/shop?x=1"),
            "{text}"
        );
    }
    if let Some(verify) = outputs.2 {
        let text = text(&verify);
        assert!(verify.status.success(), "{text}");
        assert!(text.contains("Verification: OK"), "{text}");
        assert!(text.contains("TLSv1.3"), "{text}");
    }
    if let Some(old) = outputs.3 {
        assert!(
            !old.status.success(),
            "TLS 1.1 was accepted: {}",
            text(&old)
        );
    }
    daemon.shutdown().await;
}

#[test]
fn the_demo_certificate_is_valid_for_localhost_for_years() {
    let dir = root().join("config/examples/certs");
    let cert = std::fs::read(dir.join("localhost.pem")).unwrap();
    let key = std::fs::read(dir.join("localhost-key.pem")).unwrap();
    let bundle = lb_tls::load_bundle(&cert, &key).unwrap();
    assert_eq!(bundle.leaf.dns_names, ["localhost"]);
    assert!(
        bundle
            .leaf
            .ip_addresses
            .contains(&"127.0.0.1".parse().unwrap())
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(bundle.leaf.seconds_left(now) > 5 * 365 * 86_400);
    let ca = lb_tls::parse_chain(&std::fs::read(dir.join("demo-ca.pem")).unwrap()).unwrap();
    assert_eq!(lb_tls::inspect(&ca[0]).unwrap().subject, bundle.leaf.issuer);
}

/// rustls logs a warning when a client asks to renegotiate (or sends a malformed hello): a line
/// per connection that the client chooses. The daemon's log at `info` holds none; the
/// balancer counts failed handshakes itself.
#[tokio::test]
async fn a_clients_renegotiation_does_not_write_the_log() {
    use crate::support::process::{Lb, temp_dir};
    let certs = root().join("config/examples/certs");
    let dir = temp_dir("tls-renegotiation");
    let config = dir.join("lb.yaml");
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:0\n  header_read_timeout: 1s\n  tls:\n    certificates:\n      - cert: {}\n        key: {}\n\
         metrics:\n  enabled: false\nhealth_check:\n  enabled: false\nretry:\n  max_attempts: 1\n\
         backends:\n  - address: 127.0.0.1:9\n",
        certs.join("localhost.pem").display(),
        certs.join("localhost-key.pem").display()
    );
    std::fs::write(&config, yaml).unwrap();
    let lb = Lb::start_logged(&config, &dir.join("lb.log")).await;
    let connect = lb.lb.listen.to_string();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = match Command::new("openssl")
            .args(["s_client", "-tls1_2", "-connect", &connect])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => {
                assert!(
                    std::env::var_os("LB_REQUIRE_TLS_TOOLS").is_none(),
                    "openssl is required here: {error}"
                );
                eprintln!("openssl not found: skipping the renegotiation");
                return None;
            }
        };
        // `R`: renegotiate once the handshake is done. openssl then waits for an answer to its
        // hello, which never comes: the balancer closes the connection at its header timeout.
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"R\n").unwrap();
        Some(child.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let Some(output) = output else { return };
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("RENEGOTIATING"), "{said}");
    let log = lb.log();
    assert!(log.contains("lb started"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}
