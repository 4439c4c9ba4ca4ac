//! TLS towards a backend: a rustls client configuration per backend, verifying the backend's
//! certificate against a configured CA file or the system's trusted roots (read once), for the
//! configured SNI name or, without one, the backend's IP address, and presenting a client
//! certificate when one is configured (mTLS). There is no switch to turn verification off: a
//! backend reached by IP gets `sni` set to a name its certificate holds.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use lb_core::config::UpstreamTlsConfig;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;

use super::TlsError;
use super::store::read_file;

/// How to speak TLS to one backend.
#[derive(Clone)]
pub(crate) struct UpstreamTls {
    /// The handshake's configuration (roots, client certificate, ALPN, resumption).
    pub connector: tokio_rustls::TlsConnector,
    /// The name sent as SNI (none for an IP address) and verified in the certificate.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpstreamTls({:?})", self.server_name)
    }
}

/// The system's trusted roots, read once.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            match added {
                0 => Err(found
                    .errors
                    .first()
                    .map_or_else(|| "the store is empty".to_owned(), ToString::to_string)),
                _ => Ok(Arc::new(roots)),
            }
        })
        .clone()
        .map_err(TlsError::NoSystemRoots)
}

fn roots(config: &UpstreamTlsConfig) -> Result<Arc<RootCertStore>, TlsError> {
    let Some(path) = &config.ca_file else {
        return system_roots();
    };
    let bad = |detail: String| TlsError::CaFile {
        path: path.clone(),
        detail,
    };
    let pem = read_file(path)?;
    let certificates = lb_tls::parse_chain(&pem).map_err(|error| bad(error.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (_, refused) = roots.add_parsable_certificates(certificates);
    if roots.is_empty() {
        return Err(bad("no usable CA certificate".to_owned()));
    }
    if refused > 0 {
        tracing::warn!(file = %path.display(), refused, "CA certificates that cannot be used were skipped");
    }
    Ok(Arc::new(roots))
}

/// The TLS settings of a backend at `address`; `http2`: ALPN offers `h2` alone (a backend with
/// `protocol: h2`), else `http/1.1` alone.
///
/// # Errors
///
/// An unreadable or unusable CA file, client certificate or key; no system roots.
pub(crate) fn upstream_tls(
    config: &UpstreamTlsConfig,
    address: SocketAddr,
    http2: bool,
) -> Result<UpstreamTls, TlsError> {
    let alpn: &[u8] = match http2 {
        true => b"h2",
        false => b"http/1.1",
    };
    let client = client_config(config, alpn)?;
    let name = config
        .sni
        .clone()
        .unwrap_or_else(|| address.ip().to_string());
    Ok(UpstreamTls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        server_name: server_name(name)?,
    })
}

/// A client configuration from `config` (`ca_file` or the system's roots, the client
/// certificate when set), offering the one application protocol `alpn`. Shared by backends and
/// etcd discovery, so both verify and present certificates the same way.
///
/// # Errors
///
/// An unreadable or unusable CA file, client certificate or key; no system roots.
pub(crate) fn client_config(
    config: &UpstreamTlsConfig,
    alpn: &[u8],
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(lb_tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots(config)?);
    let mut client = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => {
            let (cert_pem, key_pem) = (read_file(cert)?, read_file(key)?);
            // Checked as the server's certificates are: parsed, in order, key matching.
            lb_tls::load_bundle(&cert_pem, &key_pem).map_err(|source| TlsError::Bundle {
                cert: cert.clone(),
                key: key.clone(),
                source,
            })?;
            let chain = lb_tls::parse_chain(&cert_pem).unwrap_or_default();
            let key = lb_tls::parse_key(&key_pem).map_err(|source| TlsError::Bundle {
                cert: cert.clone(),
                key: key.clone(),
                source,
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    client.alpn_protocols = vec![alpn.to_vec()];
    Ok(client)
}

/// `name` (a DNS name or an IP address) as the name verified in a server's certificate.
///
/// # Errors
///
/// A name rustls cannot verify (validation lets none through).
pub(crate) fn server_name(name: String) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name)
        .map_err(|error| TlsError::Rustls(rustls::Error::General(error.to_string())))
}

/// Why a handshake with a backend failed, as a bounded metric label.
pub(crate) fn failure_reason(error: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    if error.kind() == std::io::ErrorKind::TimedOut {
        return "timeout";
    }
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    {
        Some(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => "unknown_issuer",
        Some(Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => "name_mismatch",
        Some(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "expired",
        Some(Error::InvalidCertificate(_)) => "bad_certificate",
        Some(Error::AlertReceived(_)) => "alert_received",
        Some(_) => "protocol_error",
        None => "io",
    }
}
