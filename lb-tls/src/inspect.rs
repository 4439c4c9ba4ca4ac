//! What a certificate says, for choosing it by SNI name, for the expiry metric and for
//! `lb-cli check`: its DNS names and IP addresses, its validity period, its subject and issuer.
//! webpki does the parsing (the same parser that verifies peers), except for the validity
//! period, which it keeps private (`der`).

use rustls_pki_types::CertificateDer;

use crate::bundle::BundleError;

/// What one certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names of its subjectAltName extension, in lower case (`*.example.com` included).
    pub dns_names: Vec<String>,
    /// IP addresses of its subjectAltName extension.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// Start of validity, in seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The DER of its subject name (without the outer SEQUENCE).
    pub subject: Vec<u8>,
    /// The DER of its issuer name (without the outer SEQUENCE).
    pub issuer: Vec<u8>,
}

impl CertInfo {
    /// Whether it is self-issued (a root, or a self-signed leaf).
    pub fn self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    /// Seconds of validity left at `now` (seconds since the Unix epoch); negative once expired.
    pub fn seconds_left(&self, now: i64) -> i64 {
        self.not_after - now
    }
}

/// Reads what `certificate` says.
///
/// # Errors
///
/// [`BundleError::BadCertificate`] when it is not an X.509 v3 certificate webpki can read.
pub fn inspect(certificate: &CertificateDer<'_>) -> Result<CertInfo, BundleError> {
    let bad = |detail: String| BundleError::BadCertificate { index: 0, detail };
    let cert = webpki::EndEntityCert::try_from(certificate).map_err(|e| bad(e.to_string()))?;
    let (not_before, not_after) = crate::der::validity(certificate.as_ref())
        .ok_or_else(|| bad("its validity period cannot be read".to_owned()))?;
    let dns_names = cert
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(CertInfo {
        dns_names,
        ip_addresses: ip_addresses(certificate.as_ref()),
        not_before,
        not_after,
        subject: cert.subject().to_vec(),
        issuer: cert.issuer().to_vec(),
    })
}

/// The IP addresses a certificate is valid for, found by asking webpki for each address its
/// subjectAltName could hold: webpki lists DNS names but not addresses, and checking is what
/// counts (an address listed in a form webpki refuses is not one a client accepts).
fn ip_addresses(certificate: &[u8]) -> Vec<std::net::IpAddr> {
    // Only the addresses written in the certificate can match; find candidates in its bytes:
    // an iPAddress GeneralName is tag 0x87 with 4 or 16 bytes.
    let mut found = Vec::new();
    let der = CertificateDer::from(certificate);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else {
        return found;
    };
    let mut at = 0;
    while at + 2 <= certificate.len() {
        let (tag, length) = (certificate[at], usize::from(certificate[at + 1]));
        let start = at + 2;
        if tag == 0x87 && (length == 4 || length == 16) && start + length <= certificate.len() {
            let bytes = &certificate[start..start + length];
            let ip = match length {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()),
                _ => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()),
            };
            let name = rustls_pki_types::ServerName::IpAddress(ip.into());
            if cert.verify_is_valid_for_subject_name(&name).is_ok() && !found.contains(&ip) {
                found.push(ip);
            }
        }
        at += 1;
    }
    found
}
