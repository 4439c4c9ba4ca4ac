//! Makes a test CA and a server certificate signed by it with rcgen, as the test suite does:
//! `cargo run -p lb-tls --example make_cert -- DIR [NAME...]` writes `DIR/ca.pem`, `DIR/cert.pem`
//! and `DIR/key.pem` (ECDSA P-256) for the names given (default `localhost` and `127.0.0.1`).
//! For trying `lb` (docs/tls.md), never for production: the CA's key is not kept.

use std::path::PathBuf;
use std::process::ExitCode;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: make_cert DIR [NAME...]");
        return ExitCode::from(2);
    };
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    }
    match make(&dir, &names) {
        Ok(()) => {
            println!(
                "wrote {0}/ca.pem, {0}/cert.pem and {0}/key.pem for {1}",
                dir.display(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("make_cert: {error}");
            ExitCode::FAILURE
        }
    }
}

fn make(dir: &std::path::Path, names: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "lb test CA (not for production)");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(DnType::CommonName, &names[0]);
    let cert = leaf.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    std::fs::write(dir.join("cert.pem"), cert.pem())?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem())?;
    Ok(())
}
