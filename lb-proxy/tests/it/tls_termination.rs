//! HTTPS on the client listener, with real TLS clients (tokio-rustls): the certificate chosen
//! by SNI name, the default for an unknown or missing name, TLS 1.1 refused, 421 for a `Host`
//! of another site, `X-Forwarded-Proto: https`, resumption (also across two balancers sharing a
//! ticket key file), certificates reloaded when their files change while open connections go
//! on, a bad new bundle refused, and the redirect listener.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::tls::*;
use crate::support::*;

/// A balancer over one backend serving `certs` from `dir`, with `extra` server settings.
async fn https_balancer(
    fleet: &[test_backend::RunningBackend],
    dir: &TempDir,
    certs: &[(&str, &str)],
    extra: &str,
) -> lb_proxy::Daemon {
    let server = format!("server:\n{}", tls_section(&dir.0, certs, extra));
    balancer(fleet, &server).await
}

fn two_sites(dir: &TempDir, ca: &TestCa) {
    let a = ca.leaf(&["a.test", "www.a.test"]);
    let b = ca.leaf(&["*.b.test"]);
    dir.write("a.pem", &a.cert);
    dir.write("a-key.pem", &a.key);
    dir.write("b.pem", &b.cert);
    dir.write("b-key.pem", &b.key);
}

const SITES: [(&str, &str); 2] = [("a.pem", "a-key.pem"), ("b.pem", "b-key.pem")];

#[tokio::test]
async fn sni_chooses_the_certificate_and_an_unknown_name_gets_the_default() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("sni"), TestCa::new("ca"));
    two_sites(&dir, &ca);
    let daemon = https_balancer(&fleet, &dir, &SITES, "").await;
    let verifying = client_config(&ca.pem);
    // The default certificate does not cover an unknown name, so a verifying client would
    // refuse it: that one looks with a client that accepts any certificate.
    let any = any_certificate_config();
    for (sni, want, config) in [
        ("a.test", "a.test", &verifying),
        ("www.a.test", "a.test", &verifying),
        ("x.b.test", "*.b.test", &verifying),
        ("unknown.test", "a.test", &any),
        ("127.0.0.1", "a.test", &any),
    ] {
        let mut stream = connect(daemon.listen_addr, sni, config)
            .await
            .unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(served_names(&stream)[0], want, "{sni}");
        let answer = tls_get(&mut stream, sni, "/echo")
            .await
            .to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert!(answer.contains("x-forwarded-proto: https"), "{answer}");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    daemon.shutdown().await;
}
