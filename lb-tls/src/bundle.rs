//! A certificate chain and its private key, as the operator's PEM files give them: parsed,
//! the key matched to the leaf certificate, the chain checked to run from the leaf up (each
//! certificate issued by the next), and made into the [`CertifiedKey`] rustls serves.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::inspect::{CertInfo, inspect};

/// Why a certificate bundle cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// A PEM block could not be decoded.
    #[error("the PEM text is malformed: {0}")]
    Pem(String),
    /// The key file holds no private key block.
    #[error(
        "no PEM private key found (expected -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NoKey,
    /// The key file holds more than one private key.
    #[error("the key file holds {0} private keys; it must hold one")]
    SeveralKeys(usize),
    /// The key is of a type or curve rustls cannot sign with.
    #[error("the private key is not a supported type (RSA 2048+, ECDSA P-256/P-384, Ed25519): {0}")]
    UnsupportedKey(String),
    /// The key is not the one the certificate was issued for.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// A certificate of the chain cannot be read.
    #[error("certificate {index} of the chain cannot be read: {detail}")]
    BadCertificate {
        /// Its position in the file, 0 for the leaf.
        index: usize,
        /// What webpki said.
        detail: String,
    },
    /// A certificate is not issued by the one after it.
    #[error(
        "the chain is out of order: certificate {index} is not issued by certificate {}",
        index + 1
    )]
    ChainOutOfOrder {
        /// The certificate whose issuer does not follow it.
        index: usize,
    },
}

/// The kind of a private key: which clients can use the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RSA.
    Rsa,
    /// ECDSA (P-256 or P-384).
    Ecdsa,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    /// `"rsa"`, `"ecdsa"` or `"ed25519"`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Rsa => "rsa",
            KeyKind::Ecdsa => "ecdsa",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

/// A certificate chain and its key, ready to serve.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// What the leaf certificate says.
    pub leaf: CertInfo,
    /// What each certificate of the chain says, the leaf first.
    pub chain: Vec<CertInfo>,
    /// The private key's kind.
    pub kind: KeyKind,
}

/// The certificates of a PEM file, in file order; other blocks (a key in the same file) are
/// skipped.
///
/// # Errors
///
/// [`BundleError::Pem`] for a malformed block, [`BundleError::NoCertificate`] when there is none.
pub fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, BundleError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| BundleError::Pem(error.to_string()))?;
    if chain.is_empty() {
        return Err(BundleError::NoCertificate);
    }
    Ok(chain)
}

/// The one private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC); certificates in the same
/// file are skipped.
///
/// # Errors
///
/// [`BundleError::Pem`], [`BundleError::NoKey`] or [`BundleError::SeveralKeys`].
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, BundleError> {
    let mut keys = PrivateKeyDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| BundleError::Pem(error.to_string()))?;
    match keys.len() {
        0 => Err(BundleError::NoKey),
        1 => Ok(keys.remove(0)),
        many => Err(BundleError::SeveralKeys(many)),
    }
}

/// Parses, matches and checks a certificate chain and its key.
///
/// # Errors
///
/// Any [`BundleError`]: each file is parsed, the key must be one rustls signs with and must
/// match the leaf, and each certificate must be issued by the next.
pub fn load_bundle(cert_pem: &[u8], key_pem: &[u8]) -> Result<Bundle, BundleError> {
    let chain = parse_chain(cert_pem)?;
    let key = parse_key(key_pem)?;
    let infos = chain
        .iter()
        .enumerate()
        .map(|(index, cert)| {
            inspect(cert).map_err(|error| match error {
                BundleError::BadCertificate { detail, .. } => {
                    BundleError::BadCertificate { index, detail }
                }
                other => other,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(index) = infos
        .windows(2)
        .position(|pair| pair[0].issuer != pair[1].subject)
    {
        return Err(BundleError::ChainOutOfOrder { index });
    }
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|error| BundleError::UnsupportedKey(error.to_string()))?;
    let kind = match signer.algorithm() {
        rustls::SignatureAlgorithm::RSA => KeyKind::Rsa,
        rustls::SignatureAlgorithm::ED25519 => KeyKind::Ed25519,
        _ => KeyKind::Ecdsa,
    };
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        // A key whose public half cannot be derived is not compared: rustls then trusts it.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(BundleError::KeyMismatch),
    }
    let leaf = infos[0].clone();
    Ok(Bundle {
        key: Arc::new(certified),
        leaf,
        chain: infos,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};

    struct Ca {
        cert: rcgen::Certificate,
        issuer: Issuer<'static, KeyPair>,
    }

    impl Ca {
        fn pem(&self) -> String {
            self.cert.pem()
        }
    }

    fn ca() -> (Ca, ()) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let cert = params.self_signed(&key).unwrap();
        let issuer = Issuer::new(params, key);
        (Ca { cert, issuer }, ())
    }

    fn leaf(names: &[&str], ca: &Ca, _: &()) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_chain_in_order_loads() {
        let (ca, ca_key) = ca();
        let (cert, key) = leaf(&["example.com", "*.example.com"], &ca, &ca_key);
        let bundle =
            load_bundle(format!("{cert}{}", ca.pem()).as_bytes(), key.as_bytes()).expect("loads");
        assert_eq!(bundle.kind, KeyKind::Ecdsa);
        assert_eq!(bundle.leaf.dns_names, ["example.com", "*.example.com"]);
        assert_eq!(bundle.chain.len(), 2);
        assert!(bundle.chain[1].self_issued());
        assert!(bundle.leaf.not_after > bundle.leaf.not_before);
    }

    #[test]
    fn refusals_say_why() {
        let (ca, ca_key) = ca();
        let (cert, key) = leaf(&["example.com"], &ca, &ca_key);
        let (_, other_key) = leaf(&["example.com"], &ca, &ca_key);
        let out_of_order = format!("{}{cert}", ca.pem());
        let cases: [(&str, &str, BundleError); 5] = [
            ("", &key, BundleError::NoCertificate),
            (&cert, "", BundleError::NoKey),
            (&cert, &other_key, BundleError::KeyMismatch),
            (
                &out_of_order,
                &key,
                BundleError::ChainOutOfOrder { index: 0 },
            ),
            (
                &cert,
                &format!("{key}{other_key}"),
                BundleError::SeveralKeys(2),
            ),
        ];
        for (cert, key, want) in cases {
            assert_eq!(
                load_bundle(cert.as_bytes(), key.as_bytes()).unwrap_err(),
                want
            );
        }
        let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            load_bundle(garbage.as_bytes(), key.as_bytes()).unwrap_err(),
            BundleError::BadCertificate { index: 0, .. }
        ));
    }

    #[test]
    fn rsa_keys_load() {
        let pem = include_str!("../testdata/rsa-2048.key.pem");
        let key = KeyPair::from_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = CertificateParams::new(vec!["rsa.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let bundle = load_bundle(cert.pem().as_bytes(), pem.as_bytes()).unwrap();
        assert_eq!(bundle.kind, KeyKind::Rsa);
        assert_eq!(bundle.leaf.dns_names, ["rsa.example"]);
    }
}
