//! How the etcd source reaches its cluster: the TLS settings (`discovery.etcd.tls`, built with
//! the same code as backends' `upstream.tls`: `ca_file` or the system's roots, the optional
//! client certificate, verification always on) and the user's password, read from
//! `password_file`.
//!
//! [`Access::load`] reads every file. The daemon calls it when it loads or reloads a
//! configuration ([`check`]), so that a certificate, key or password file that cannot be used
//! refuses the start or the reload with its name; the source calls it again at the start of
//! every session, so that rotated files (a renewed client certificate, a new password) are taken
//! on the next connection without a reload.
//!
//! The password is held in a [`Password`], whose `Debug` prints nothing of it; no error here
//! quotes a file's content.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use lb_core::config::{EtcdAuth, EtcdDiscovery};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tls::TlsError;

/// Why the settings of an etcd source cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    /// The CA file, client certificate or key cannot be used.
    #[error("discovery.etcd.tls: {0}")]
    Tls(#[from] TlsError),
    /// The password file cannot be used; `detail` never quotes it.
    #[error("discovery.etcd.password_file {}: {detail}", path.display())]
    Password {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

/// A password; `Debug` does not show it.
#[derive(Clone)]
pub(super) struct Password(String);

impl Password {
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The user the source authenticates as.
#[derive(Debug, Clone)]
pub(super) struct Credentials {
    pub username: String,
    pub password: Password,
}

/// Everything read from files that a session needs to reach etcd.
#[derive(Debug, Clone, Default)]
pub(super) struct Access {
    /// The TLS client settings (ALPN `h2`), when the cluster is reached over TLS.
    pub tls: Option<Arc<ClientConfig>>,
    /// The name verified in every endpoint's certificate (`tls.sni`); else each endpoint's host.
    pub sni: Option<String>,
    /// Who to authenticate as, when `username` is set.
    pub credentials: Option<Credentials>,
}

impl Access {
    /// Reads the TLS files and the password file of `etcd`.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, or does not hold what it should.
    pub(super) fn load(etcd: &EtcdDiscovery) -> Result<Access, AccessError> {
        let tls = match &etcd.tls {
            // etcd serves gRPC over HTTP/2, which it requires to be negotiated by ALPN.
            Some(tls) => Some(Arc::new(crate::tls::client::client_config(tls, b"h2")?)),
            None => None,
        };
        let credentials = match &etcd.auth {
            Some(auth) => Some(read_credentials(auth)?),
            None => None,
        };
        Ok(Access {
            tls,
            sni: etcd.tls.as_ref().and_then(|tls| tls.sni.clone()),
            credentials,
        })
    }
}

/// Reads the settings' files as a session would, so that one that cannot be used refuses the
/// start or the reload of the configuration naming it.
///
/// # Errors
///
/// As [`Access::load`].
pub(crate) fn check(etcd: &EtcdDiscovery) -> Result<(), AccessError> {
    Access::load(etcd)?;
    if let Some(auth) = &etcd.auth {
        warn_if_shared(&auth.password_file);
    }
    Ok(())
}

fn read_credentials(auth: &EtcdAuth) -> Result<Credentials, AccessError> {
    let path = &auth.password_file;
    let bad = |detail: String| AccessError::Password {
        path: path.clone(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|error| bad(format!("cannot be read: {error}")))?;
    let password = password_of(bytes).map_err(|detail| bad(detail.to_owned()))?;
    Ok(Credentials {
        username: auth.username.clone(),
        password: Password(password),
    })
}

/// The password a file holds: its text without one final line end. Errors never quote it.
fn password_of(bytes: Vec<u8>) -> Result<String, &'static str> {
    let mut text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text")?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    match (text.is_empty(), text.contains(['\n', '\r'])) {
        (true, _) => Err("is empty"),
        (_, true) => Err("holds more than one line; the password is its only line"),
        _ => Ok(text),
    }
}

/// Logs a file other users may read (once per start or reload, not per session): the password
/// is as safe as the file is.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        let mode = format!("{:o}", meta.permissions().mode() & 0o777);
        tracing::warn!(file = %path.display(), mode,
            "the etcd password file can be read by other users: make it 0600 (or 0400), owned by lb's user");
    }
}

/// The name verified in `endpoint`'s certificate: `sni`, else its host (an IP address is
/// verified against the certificate's IP addresses).
pub(super) fn server_name(
    sni: Option<&str>,
    endpoint: &str,
) -> Result<ServerName<'static>, TlsError> {
    let host = match sni {
        Some(name) => name,
        None => endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    crate::tls::client::server_name(host.to_owned())
}

/// tonic's connector for an etcd endpoint over TLS: TCP to the URI's authority, then the
/// handshake with our rustls settings (so etcd's certificate is verified exactly as a
/// backend's is).
#[derive(Clone)]
pub(super) struct TlsConnect {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl tower_service::Service<http::Uri> for TlsConnect {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let name = self.name.clone();
        Box::pin(async move {
            let authority = uri.authority().map(|a| a.as_str().to_owned());
            let authority = authority.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host:port")
            })?;
            let tcp = TcpStream::connect(authority).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_the_files_one_line() {
        assert_eq!(password_of(b"s3cret\n".to_vec()), Ok("s3cret".to_owned()));
        assert_eq!(password_of(b"s3cret\r\n".to_vec()), Ok("s3cret".to_owned()));
        assert_eq!(
            password_of(b" spaced \n".to_vec()),
            Ok(" spaced ".to_owned())
        );
        assert_eq!(password_of(b"\n".to_vec()), Err("is empty"));
        assert!(password_of(b"a\nb\n".to_vec()).is_err());
        assert!(password_of(vec![0xff, 0xfe]).is_err());
    }

    #[test]
    fn a_password_is_not_debug_printed() {
        let credentials = Credentials {
            username: "lb".to_owned(),
            password: Password("hunter2".to_owned()),
        };
        let shown = format!("{credentials:?}");
        assert!(
            shown.contains("lb") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn the_verified_name_is_sni_or_the_endpoints_host() {
        let name = |sni, endpoint| server_name(sni, endpoint).unwrap().to_str().into_owned();
        assert_eq!(name(None, "etcd-1.internal:2379"), "etcd-1.internal");
        assert_eq!(name(None, "127.0.0.1:2379"), "127.0.0.1");
        assert_eq!(name(None, "[::1]:2379"), "::1");
        assert_eq!(
            name(Some("etcd.internal"), "10.0.0.1:2379"),
            "etcd.internal"
        );
    }
}
