//! `lb-cli check` on the TLS files a configuration names: missing files, a key that does not
//! match, a chain out of order, an expired or expiring certificate, names the certificate does
//! not cover, a bad ticket key file and CA file; each at its field's line, through the real
//! binary too.

use std::path::{Path, PathBuf};

use lb_cli::check::{Finding, Severity, check_path};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};

/// A directory of its own under the system's temporary directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("lb-cli-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca() -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test ca");
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// (certificate PEM, key PEM) for `names`, valid for `days` from now (negative: expired).
fn leaf(ca: &Ca, names: &[&str], days: i64) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |days: i64| time::OffsetDateTime::from_unix_timestamp(now + days * 86_400).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.not_before = at(-30);
    params.not_after = at(days);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn config(dir: &Dir, body: &str) -> PathBuf {
    dir.write(
        "lb.yaml",
        format!("{body}backends:\n  - address: 127.0.0.1:8001\n"),
    )
}

/// The TLS findings, as (severity, line, field, message start).
fn found(path: &Path) -> Vec<(Severity, Option<u32>, String, String)> {
    let report = check_path(path);
    let all: Vec<&Finding> = report.errors.iter().chain(&report.warnings).collect();
    all.into_iter()
        .filter(|f| f.field.contains("tls"))
        .map(|f| (f.severity, f.line, f.field.clone(), f.message.clone()))
        .collect()
}

const SERVER: &str =
    "server:\n  tls:\n    certificates:\n      - cert: site.pem\n        key: site-key.pem\n";

#[test]
fn a_good_certificate_has_nothing_to_say() {
    let (dir, ca) = (Dir::new("good"), ca());
    let (cert, key) = leaf(&ca, &["site.test"], 365);
    dir.write("site.pem", cert);
    dir.write("site-key.pem", key);
    let path = config(&dir, SERVER);
    assert_eq!(found(&path), []);
    assert!(check_path(&path).valid());
}

#[test]
fn missing_files_mismatched_keys_and_disordered_chains_are_errors() {
    let (dir, ca) = (Dir::new("errors"), ca());
    let path = config(&dir, SERVER);
    let report = found(&path);
    assert_eq!(report.len(), 2, "{report:?}");
    assert_eq!(report[0].0, Severity::Error);
    assert_eq!(
        (report[0].1, report[0].2.as_str()),
        (Some(4), "server.tls.certificates[0].cert")
    );
    assert!(
        report[0].3.ends_with("site.pem: no such file"),
        "{report:?}"
    );
    assert!(!check_path(&path).valid());

    let (cert, _) = leaf(&ca, &["site.test"], 365);
    let (_, other_key) = leaf(&ca, &["site.test"], 365);
    dir.write("site.pem", &cert);
    dir.write("site-key.pem", other_key);
    let report = found(&path);
    assert_eq!(
        report,
        [(
            Severity::Error,
            Some(5),
            "server.tls.certificates[0].key".to_owned(),
            "the private key does not match the certificate".to_owned()
        )]
    );

    let (cert, key) = leaf(&ca, &["site.test"], 365);
    dir.write("site.pem", format!("{}{cert}", ca.pem));
    dir.write("site-key.pem", key);
    let report = found(&path);
    assert_eq!(report.len(), 1);
    assert!(
        report[0].3.starts_with("the chain is out of order"),
        "{report:?}"
    );
}

#[test]
fn expiry_and_names_are_warned_about() {
    let (dir, ca) = (Dir::new("warn"), ca());
    let (cert, key) = leaf(&ca, &["site.test"], 10);
    dir.write("site.pem", cert);
    dir.write("site-key.pem", key);
    let body = format!("{SERVER}        names: [site.test, other.test]\n");
    let path = config(&dir, &body);
    let report = found(&path);
    assert_eq!(report.len(), 2, "{report:?}");
    assert_eq!(report[0].0, Severity::Warning);
    assert!(
        report[0].3.starts_with("the certificate expires in 9 days")
            || report[0]
                .3
                .starts_with("the certificate expires in 10 days"),
        "{report:?}"
    );
    assert_eq!(report[1].2, "server.tls.certificates[0].names");
    assert_eq!(report[1].1, Some(6));
    assert!(
        report[1]
            .3
            .contains("not all of the configured names: other.test"),
        "{report:?}"
    );
    assert!(check_path(&path).valid(), "warnings only");

    let (cert, key) = leaf(&ca, &["site.test"], -1);
    dir.write("site.pem", cert);
    dir.write("site-key.pem", key);
    let path = config(&dir, SERVER);
    let report = found(&path);
    assert_eq!(report[0].0, Severity::Error);
    assert!(
        report[0].3.starts_with("the certificate expired on"),
        "{report:?}"
    );
}

#[test]
fn ticket_keys_ca_files_and_client_certificates() {
    let (dir, ca) = (Dir::new("other"), ca());
    let (cert, key) = leaf(&ca, &["site.test"], 365);
    dir.write("site.pem", &cert);
    dir.write("site-key.pem", &key);
    dir.write("tickets.key", [7u8; 50]);
    dir.write("ca.pem", "not a certificate\n");
    let body = format!(
        "{SERVER}    session_ticket_key_file: tickets.key\nupstream:\n  tls: {{ca_file: ca.pem, client_cert: site.pem, client_key: missing.pem}}\n"
    );
    let path = config(&dir, &body);
    let fields: Vec<(Severity, String)> = found(&path).into_iter().map(|f| (f.0, f.2)).collect();
    assert_eq!(
        fields,
        [
            (
                Severity::Error,
                "server.tls.session_ticket_key_file".to_owned()
            ),
            (Severity::Error, "upstream.tls.ca_file".to_owned()),
            (Severity::Error, "upstream.tls.client_key".to_owned()),
        ]
    );
}

#[test]
fn the_binary_fails_on_a_tls_error_and_points_at_the_line() {
    let dir = Dir::new("binary");
    let path = config(&dir, SERVER);
    let output = crate::support::lb_cli(&["check", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("server.tls.certificates[0].cert"), "{text}");
    assert!(text.contains("no such file"), "{text}");
}

#[test]
fn a_pools_tls_files_are_checked_under_the_pools_name() {
    let dir = Dir::new("pools");
    dir.write("ca.pem", "not a certificate\n");
    let body = "pools:\n  api:\n    upstream:\n      tls: {ca_file: ca.pem}\n    backends:\n      - address: 127.0.0.1:8002\n        name: api-1\n  web:\n    backends:\n      - address: 127.0.0.1:8003\n        name: web-1\n        tls: {ca_file: missing.pem}\n";
    let path = config(&dir, body);
    let fields: Vec<String> = found(&path).into_iter().map(|f| f.2).collect();
    assert_eq!(
        fields,
        [
            "pools.api.upstream.tls.ca_file",
            "pools.web.backends[0].tls.ca_file"
        ]
    );
}

#[test]
fn etcd_discovery_files_are_checked_at_their_lines_without_showing_a_password() {
    let (dir, ca) = (Dir::new("etcd"), ca());
    let (cert, key) = leaf(&ca, &["lb"], 365);
    dir.write("lb.pem", cert);
    dir.write("lb-key.pem", key);
    dir.write("ca.pem", &ca.pem);
    dir.write("etcd-password", "s3cret-pw\n");
    let body = "pools:\n  api:\n    discovery:\n      etcd:\n        endpoints: ['https://etcd:2379']\n        \
                prefix: /lb/\n        username: lb\n        password_file: etcd-password\n        \
                tls:\n          ca_file: ca.pem\n          client_cert: lb.pem\n          client_key: lb-key.pem\n\
                routes:\n  - match: {path_prefix: /}\n    pool: api\n";
    let path = dir.write("lb.yaml", body);
    let report = check_path(&path);
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    std::fs::remove_file(dir.0.join("lb-key.pem")).unwrap();
    dir.write("etcd-password", "\n");
    let report = check_path(&path);
    let errors: Vec<(Option<u32>, Option<u32>, &str)> = (report.errors.iter())
        .map(|f| (f.line, f.column, f.field.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (
                Some(12),
                Some(23),
                "pools.api.discovery.etcd.tls.client_key"
            ),
            (Some(8), Some(24), "pools.api.discovery.etcd.password_file"),
        ],
        "{:?}",
        report.errors
    );
    assert!(!check_path(&path).valid());

    // The binary prints file:line:col and never the password.
    dir.write("etcd-password", "s3cret-pw\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lb-cli"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("lb.yaml:12:23"), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
}
