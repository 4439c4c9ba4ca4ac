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

/// A TLS 1.1 ClientHello (no supported_versions extension), as an old client sends it.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    // ECDHE-ECDSA-AES128-GCM-SHA256, which the balancer has: only the version is wrong.
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2b]);
    body.extend_from_slice(&[0x01, 0x00]); // no compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn tls_1_1_and_plain_http_are_refused_and_counted() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("old"), TestCa::new("ca"));
    two_sites(&dir, &ca);
    let daemon = https_balancer(&fleet, &dir, &SITES, "").await;
    let mut old = TcpStream::connect(daemon.listen_addr).await.unwrap();
    old.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), old.read_to_end(&mut answer)).await;
    // A fatal alert (record type 21, level 2), then the close: rustls finds no signature
    // algorithms extension, which TLS 1.2 brought, before it looks at the version.
    assert_eq!(
        (answer.first(), answer.get(5)),
        (Some(&21), Some(&2)),
        "{answer:?}"
    );
    let mut plain = TcpStream::connect(daemon.listen_addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            let metrics = scrape(&daemon).await;
            let errors = |reason: &str| {
                let label = format!("reason=\"{reason}\"");
                metric_sum(&metrics, "lb_tls_handshake_errors_total", &[&label])
            };
            errors("protocol_version") == 1.0
                && errors("not_tls") == 1.0
                && metric_sum(&metrics, "lb_tls_handshakes_total", &["result=\"failure\""]) == 2.0
        })
        .await,
        "{}",
        scrape(&daemon).await
    );
    // Both versions still work, and are counted by version.
    let config = client_config(&ca.pem);
    let mut stream = connect(daemon.listen_addr, "a.test", &config)
        .await
        .unwrap();
    assert!(
        tls_get(&mut stream, "a.test", "/")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let metrics = scrape(&daemon).await;
    let ok13 = ["result=\"success\"", "version=\"TLSv1.3\""];
    assert_eq!(
        metric_sum(&metrics, "lb_tls_handshakes_total", &ok13),
        1.0,
        "{metrics}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_host_of_another_site_is_misdirected() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("421"), TestCa::new("ca"));
    two_sites(&dir, &ca);
    let daemon = https_balancer(&fleet, &dir, &SITES, "").await;
    let config = client_config(&ca.pem);
    let mut stream = connect(daemon.listen_addr, "a.test", &config)
        .await
        .unwrap();
    for (host, status) in [
        ("a.test", "200"),
        ("www.a.test:443", "200"),
        ("A.TEST", "200"),
        ("x.b.test", "421"),
        ("a.test", "200"),
    ] {
        let answer = tls_get(&mut stream, host, "/").await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{host}: {answer}"
        );
    }
    daemon.shutdown().await;
}

#[tokio::test]
async fn sessions_resume_and_across_balancers_sharing_a_ticket_key_file() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("resume"), TestCa::new("ca"));
    two_sites(&dir, &ca);
    let keys: Vec<u8> = (0..48u8).map(|b| b.wrapping_mul(37)).collect();
    let key_file = dir.write("tickets.key", &keys);
    let shared = format!("    session_ticket_key_file: {}\n", key_file.display());
    let one = https_balancer(&fleet, &dir, &SITES, &shared).await;
    let two = https_balancer(&fleet, &dir, &SITES, &shared).await;
    let alone = https_balancer(&fleet, &dir, &SITES, "").await;
    for (version, versions) in [
        ("1.3", &[&rustls::version::TLS13][..]),
        ("1.2", &[&rustls::version::TLS12][..]),
    ] {
        let config = client_config_versions(&ca.pem, versions);
        let handshake = |addr| {
            let config = config.clone();
            async move {
                let mut stream = connect(addr, "a.test", &config).await.unwrap();
                // TLS 1.3 tickets arrive after the handshake: one exchange reads them.
                assert!(
                    tls_get(&mut stream, "a.test", "/")
                        .await
                        .starts_with("HTTP/1.1 200")
                );
                resumed(&stream)
            }
        };
        assert!(!handshake(one.listen_addr).await, "{version}: first");
        assert!(handshake(one.listen_addr).await, "{version}: same balancer");
        assert!(
            handshake(two.listen_addr).await,
            "{version}: the other balancer of the fleet"
        );
        assert!(
            !handshake(alone.listen_addr).await,
            "{version}: a balancer with its own keys"
        );
    }
    for daemon in [one, two, alone] {
        daemon.shutdown().await;
    }
}

#[tokio::test]
async fn a_changed_certificate_serves_new_connections_while_open_ones_go_on() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("reload"), TestCa::new("ca"));
    let first = ca.leaf(&["site.test"]);
    dir.write("site.pem", &first.cert);
    dir.write("site-key.pem", &first.key);
    let certs = [("site.pem", "site-key.pem")];
    let daemon = https_balancer(&fleet, &dir, &certs, "").await;
    let config = client_config(&ca.pem);
    let serial = |stream: &tokio_rustls::client::TlsStream<TcpStream>| {
        stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    };
    let mut open = connect(daemon.listen_addr, "site.test", &config)
        .await
        .unwrap();
    assert!(
        tls_get(&mut open, "site.test", "/")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let old = serial(&open);
    let expiry = |metrics: &str| {
        metric_sum(
            metrics,
            "lb_tls_certificate_expiry_timestamp_seconds",
            &["name=\"site.test\""],
        )
    };
    let old_expiry = expiry(&scrape(&daemon).await);
    assert!(old_expiry > 1.7e9, "{old_expiry}");

    // A new certificate, valid a day less (so its expiry differs), written key first.
    let second = ca.leaf_with(&["site.test"], |params| {
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    });
    dir.write("site-key.pem", &second.key);
    dir.write("site.pem", &second.cert);
    let renewed = eventually(Duration::from_secs(10), || async {
        let fresh = connect(daemon.listen_addr, "site.test", &config)
            .await
            .unwrap();
        serial(&fresh) != old
    })
    .await;
    assert!(renewed, "the new certificate is never served");
    assert_eq!(expiry(&scrape(&daemon).await), 4_070_908_800.0);
    // The connection opened before goes on with what it negotiated.
    assert!(
        tls_get(&mut open, "site.test", "/")
            .await
            .starts_with("HTTP/1.1 200")
    );

    // A key that does not match is refused: the certificate served stays, the failure counts.
    let current = {
        let fresh = connect(daemon.listen_addr, "site.test", &config)
            .await
            .unwrap();
        serial(&fresh)
    };
    dir.write("site-key.pem", ca.leaf(&["site.test"]).key);
    let refused = eventually(Duration::from_secs(10), || async {
        let metrics = scrape(&daemon).await;
        metric_sum(
            &metrics,
            "lb_tls_certificate_reloads_total",
            &["result=\"failure\""],
        ) >= 1.0
    })
    .await;
    assert!(refused, "{}", scrape(&daemon).await);
    let fresh = connect(daemon.listen_addr, "site.test", &config)
        .await
        .unwrap();
    assert_eq!(serial(&fresh), current);
    // Told to reload by hand (as a configuration reload does), it refuses the same way.
    assert_eq!(daemon.reload_certificates(), 1);
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_redirect_listener_sends_clients_to_https_but_lets_acme_through() {
    let (fleet, dir, ca) = (
        backends(1).await,
        TempDir::new("redirect"),
        TestCa::new("ca"),
    );
    two_sites(&dir, &ca);
    let redirect = "  http_redirect:\n    listen: 127.0.0.1:0\n    https_port: 8443\n";
    let daemon = https_balancer(&fleet, &dir, &SITES, redirect).await;
    let addr = daemon.redirect_addr.expect("a redirect listener");
    let http = client();
    let request = |path: &str, host: &str| {
        http::Request::get(format!("http://{addr}{path}"))
            .header("host", host)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let moved = send(&http, request("/shop/cart?item=7", "a.test:80")).await;
    assert_eq!(moved.status, 308);
    assert_eq!(
        moved.headers["location"],
        "https://a.test:8443/shop/cart?item=7"
    );
    let v6 = send(&http, request("/", "[::1]:8080")).await;
    assert_eq!(v6.headers["location"], "https://[::1]:8443/");
    let acme = send(
        &http,
        request("/.well-known/acme-challenge/token123", "a.test"),
    )
    .await;
    assert_eq!(acme.status, 200, "{}", acme.text());
    assert_eq!(acme.backend(), "b0");
    // No Host (HTTP/1.0): nowhere to send the client.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_handshake_is_cut_at_the_header_read_timeout() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("stall"), TestCa::new("ca"));
    two_sites(&dir, &ca);
    let server = format!(
        "server:\n  header_read_timeout: 3s\n  max_client_connections: 4\n{}",
        tls_section(&dir.0, &SITES, "")
    );
    let daemon = balancer(&fleet, &server).await;
    let started = tokio::time::Instant::now();
    // Half a ClientHello, then nothing: the connection holds no worker while it waits.
    let mut stalled = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stalled
        .write_all(&tls11_client_hello()[..20])
        .await
        .unwrap();
    let mut silent = TcpStream::connect(daemon.listen_addr).await.unwrap();
    // Meanwhile another client is served at once.
    let config = client_config(&ca.pem);
    let mut stream = connect(daemon.listen_addr, "a.test", &config)
        .await
        .unwrap();
    assert!(
        tls_get(&mut stream, "a.test", "/")
            .await
            .starts_with("HTTP/1.1 200")
    );
    for socket in [&mut stalled, &mut silent] {
        let closed =
            crate::support::fake_backend::read_until_closed(socket, Duration::from_secs(60)).await;
        assert!(closed.closed);
    }
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(
            &metrics,
            "lb_tls_handshake_errors_total",
            &["reason=\"timeout\""]
        ),
        2.0,
        "{metrics}"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_configuration_reload_swaps_the_certificates_whole_or_not_at_all() {
    let (fleet, dir, ca) = (backends(1).await, TempDir::new("apply"), TestCa::new("ca"));
    two_sites(&dir, &ca);
    let yaml = |certs: &[(&str, &str)]| {
        let server = format!("server:\n{}", tls_section(&dir.0, certs, ""));
        parse(&config_yaml(&specs(&fleet), &server))
    };
    let config = yaml(&SITES[..1]);
    let daemon = lb_proxy::Daemon::start(config).await.unwrap();
    let reloader = daemon.reloader();
    let any = any_certificate_config();
    let names = |sni: &'static str| {
        let any = any.clone();
        let addr = daemon.listen_addr;
        async move { served_names(&connect(addr, sni, &any).await.unwrap())[0].clone() }
    };
    assert_eq!(names("x.b.test").await, "a.test");
    let both = yaml(&SITES);
    reloader.apply(both).await.unwrap();
    assert_eq!(names("x.b.test").await, "*.b.test");
    // A list with a missing file is refused whole: the current certificates stay.
    let missing = yaml(&[("a.pem", "a-key.pem"), ("gone.pem", "b-key.pem")]);
    let error = reloader.apply(missing).await.unwrap_err();
    assert!(error.to_string().contains("gone.pem"), "{error}");
    assert_eq!(names("x.b.test").await, "*.b.test");
    // Turning TLS off needs a restart: the rest applies, TLS stays on.
    let plain = parse(&config_yaml(&specs(&fleet), ""));
    let report = reloader.apply(plain).await.unwrap();
    assert!(
        report
            .needs_restart
            .iter()
            .any(|why| why.contains("server.tls")),
        "{report:?}"
    );
    assert_eq!(names("x.b.test").await, "*.b.test");
    daemon.shutdown().await;
}
