//! TLS for the data plane, with rustls and ring: the client-facing terminator ([`ServerTls`]:
//! certificates chosen by SNI name, reloaded without a restart, session tickets), the
//! configuration of TLS towards backends ([`client`]), and the stream wrapper that hands a
//! handshake the bytes read before it ([`prefixed`]).
//!
//! A leaf under `upstream`: the listener and connection layers accept with it, the request path
//! asks it which site a `Host` belongs to, the upstream pools connect with it.
//!
//! # Reloads
//! Certificates, keys and the ticket key file are read again when their files change
//! ([`watch`], debounced) and when the daemon is told to ([`ServerTls::reload_files`],
//! [`ServerTls::apply`]). Each certificate is swapped on its own; a new bundle that cannot be
//! served (unreadable, malformed, a key that does not match) is refused, logged and counted in
//! `lb_tls_certificate_reloads_total{result="failure"}`, and the old one keeps serving.
//! Handshakes in progress keep what they took; connections already open are not touched.
//!
//! # Layout
//! - [`store`]: the slots, one per certificate, and the SNI resolver.
//! - [`tickets`]: session tickets sealed with a fleet's shared keys.
//! - [`watch`]: the file watcher.
//! - [`client`]: rustls client configurations for backends.
//! - [`prefixed`]: a stream that yields some bytes already read before its socket's.

pub(crate) mod client;
pub(crate) mod prefixed;
pub(crate) mod store;
pub(crate) mod tickets;
pub(crate) mod watch;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use lb_core::config::{ServerTlsConfig, TlsVersion};
use rustls::ServerConfig;
use rustls::server::{NoServerSessionStorage, ProducesTickets};
use tokio::net::TcpStream;

use crate::metrics::Metrics;
use crate::metrics::tls::{CertificateLabels, ReloadLabels};
use prefixed::Prefixed;
use store::{CertStore, Resolver};
use tickets::SharedTicketer;

/// The stream of a TLS client connection.
pub(crate) type ServerStream = tokio_rustls::server::TlsStream<Prefixed<TcpStream>>;

/// Why TLS could not be set up, or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A certificate and its key cannot be served.
    #[error("{} with {}: {source}", cert.display(), key.display())]
    Bundle {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong with them.
        #[source]
        source: lb_tls::BundleError,
    },
    /// The session ticket key file cannot be used.
    #[error("{}: {source}", path.display())]
    TicketKeys {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: lb_tls::TicketKeyError,
    },
    /// A CA file for backends holds nothing usable.
    #[error("{}: {detail}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The system's trusted roots could not be read.
    #[error(
        "no trusted root certificates found on this system ({0}); install ca-certificates or set tls.ca_file"
    )]
    NoSystemRoots(String),
    /// rustls refused the settings.
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client-facing TLS terminator of one listener.
#[derive(Debug)]
pub(crate) struct ServerTls {
    /// The rustls configuration new handshakes use; swapped whole when settings change.
    config: ArcSwap<ServerConfig>,
    /// The certificates, chosen per handshake.
    resolver: Arc<Resolver>,
    /// The fleet's ticket keys, when a key file is set.
    tickets: Mutex<Option<Arc<SharedTicketer>>>,
    /// The settings in force.
    settings: Mutex<ServerTlsConfig>,
    metrics: Arc<Metrics>,
}

/// `"TLSv1.2"` or `"TLSv1.3"`, as metrics and logs name them.
pub(crate) fn version_label(version: Option<rustls::ProtocolVersion>) -> &'static str {
    match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "none",
    }
}

impl ServerTls {
    /// Loads every certificate and key file of `settings` and builds the terminator.
    ///
    /// # Errors
    ///
    /// The first file that cannot be read or served, or settings rustls refuses.
    pub(crate) fn new(settings: &ServerTlsConfig, metrics: Arc<Metrics>) -> Result<Self, TlsError> {
        let store = CertStore::load(&settings.certificates)?;
        let resolver = Arc::new(Resolver {
            store: ArcSwap::from_pointee(store),
        });
        let tickets = shared_ticketer(settings)?;
        let config = server_config(settings, resolver.clone(), tickets.clone())?;
        let tls = Self {
            config: ArcSwap::from_pointee(config),
            resolver,
            tickets: Mutex::new(tickets),
            settings: Mutex::new(settings.clone()),
            metrics,
        };
        tls.publish_expiry();
        Ok(tls)
    }

    /// The rustls configuration for a new handshake.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// The certificate store in force.
    pub(crate) fn store(&self) -> Arc<CertStore> {
        self.resolver.store.load_full()
    }

    /// The settings in force.
    pub(crate) fn settings(&self) -> ServerTlsConfig {
        lock(&self.settings).clone()
    }

    /// Every file the terminator reads, for the watcher.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let settings = lock(&self.settings);
        let certificates = settings.certificates.iter();
        certificates
            .flat_map(|c| [c.cert.clone(), c.key.clone()])
            .chain(settings.session_ticket_key_file.clone())
            .collect()
    }

    /// Reads every certificate, key and ticket key file again, and swaps in each one that
    /// changed and can be served; one that cannot is logged and counted and the old one stays.
    /// Returns how many reloads failed.
    pub(crate) fn reload_files(&self) -> usize {
        let store = self.store();
        let mut failures = 0;
        for slot in &store.slots {
            match store::read(&slot.config) {
                Ok(served) if served.same_source(&slot.current.load()) => {}
                Ok(served) => {
                    tracing::info!(
                        certificate = %slot.label, names = ?served.names, kind = served.kind.as_str(),
                        "certificate reloaded"
                    );
                    slot.current.store(Arc::new(served));
                    self.count_reload(&slot.label, "success");
                }
                Err(error) => {
                    failures += 1;
                    tracing::error!(
                        certificate = %slot.label, %error,
                        "certificate reload refused: the old certificate keeps serving"
                    );
                    self.count_reload(&slot.label, "failure");
                }
            }
        }
        failures += self.reload_ticket_keys();
        self.publish_expiry();
        failures
    }

    fn reload_ticket_keys(&self) -> usize {
        let settings = self.settings();
        let (Some(path), Some(ticketer)) =
            (&settings.session_ticket_key_file, &*lock(&self.tickets))
        else {
            return 0;
        };
        match read_ticket_keys(path) {
            Ok(keys) => {
                ticketer.replace(&keys);
                0
            }
            Err(error) => {
                tracing::error!(%error, "ticket key reload refused: the old keys stay");
                self.count_reload("session_ticket_keys", "failure");
                1
            }
        }
    }

    /// Takes new settings (a configuration reload): the same certificate list reloads each
    /// certificate as [`ServerTls::reload_files`] does; a different one, or other settings,
    /// builds everything anew and swaps it in only if all of it loads.
    ///
    /// # Errors
    ///
    /// The new settings cannot be served; the old ones stay in force.
    pub fn apply(&self, settings: &ServerTlsConfig) -> Result<(), TlsError> {
        let current = self.settings();
        if current == *settings {
            self.reload_files();
            return Ok(());
        }
        let built = (|| {
            let store = match current.certificates == settings.certificates {
                true => None,
                false => Some(CertStore::load(&settings.certificates)?),
            };
            let tickets = shared_ticketer(settings)?;
            Ok::<_, TlsError>((store, tickets))
        })();
        let (store, tickets) = match built {
            Ok(built) => built,
            Err(error) => {
                tracing::error!(%error, "new TLS settings refused: the old ones stay");
                self.count_reload("settings", "failure");
                return Err(error);
            }
        };
        if let Some(store) = store {
            self.resolver.store.store(Arc::new(store));
        } else {
            self.reload_files();
        }
        let config = server_config(settings, self.resolver.clone(), tickets.clone())?;
        self.config.store(Arc::new(config));
        *lock(&self.tickets) = tickets;
        *lock(&self.settings) = settings.clone();
        self.publish_expiry();
        Ok(())
    }

    fn count_reload(&self, name: &str, result: &'static str) {
        let labels = ReloadLabels {
            name: name.into(),
            result,
        };
        self.metrics.tls.reloads.get_or_create(&labels).inc();
    }

    /// Sets `lb_tls_certificate_expiry_timestamp_seconds` for each certificate served.
    fn publish_expiry(&self) {
        let store = self.store();
        for slot in &store.slots {
            let labels = CertificateLabels {
                name: slot.label.clone(),
            };
            let not_after = slot.current.load().not_after;
            self.metrics
                .tls
                .expiry
                .get_or_create(&labels)
                .set(not_after);
            // Both outcomes exist from the start, so `increase()` sees the first failure.
            for result in ["success", "failure"] {
                let labels = ReloadLabels {
                    name: slot.label.clone(),
                    result,
                };
                let _ = self.metrics.tls.reloads.get_or_create(&labels);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_ticket_keys(path: &PathBuf) -> Result<Vec<[u8; lb_tls::TICKET_KEY_BYTES]>, TlsError> {
    let bytes = store::read_file(path)?;
    lb_tls::parse_ticket_keys(&bytes).map_err(|source| TlsError::TicketKeys {
        path: path.clone(),
        source,
    })
}

fn shared_ticketer(settings: &ServerTlsConfig) -> Result<Option<Arc<SharedTicketer>>, TlsError> {
    match (&settings.session_ticket_key_file, settings.session_tickets) {
        (Some(path), true) => Ok(Some(SharedTicketer::new(&read_ticket_keys(path)?))),
        _ => Ok(None),
    }
}

/// The rustls configuration of `settings`: TLS 1.3 and, unless refused, 1.2 with ring's default
/// suites (AEAD with forward secrecy only: AES-GCM and ChaCha20-Poly1305 over ECDHE); ALPN as
/// `alpn` lists it (`h2` and `http/1.1` by default, in that order of preference); resumption by
/// tickets (and TLS 1.2 session IDs) unless turned off.
fn server_config(
    settings: &ServerTlsConfig,
    resolver: Arc<Resolver>,
    shared: Option<Arc<SharedTicketer>>,
) -> Result<ServerConfig, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(lb_tls::provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = (settings.alpn.iter())
        .map(|protocol| protocol.as_str().as_bytes().to_vec())
        .collect();
    if settings.session_tickets {
        config.ticketer = match shared {
            Some(shared) => shared as Arc<dyn ProducesTickets>,
            None => rustls::crypto::ring::Ticketer::new()?,
        };
    } else {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

/// Why a client handshake failed, as a bounded metric label.
pub(crate) fn handshake_reason(error: &io::Error) -> &'static str {
    use rustls::{AlertDescription, Error};
    if error.kind() == io::ErrorKind::TimedOut {
        return "timeout";
    }
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => "client_closed",
            _ => "io",
        };
    };
    match tls {
        // A client older than TLS 1.2 offers no TLS 1.2 version, nor the signature algorithms
        // extension TLS 1.2 brought.
        Error::PeerIncompatible(
            rustls::PeerIncompatible::SupportedVersionsExtensionRequired
            | rustls::PeerIncompatible::Tls12NotOffered
            | rustls::PeerIncompatible::Tls12NotOfferedOrEnabled
            | rustls::PeerIncompatible::SignatureAlgorithmsExtensionRequired,
        )
        | Error::AlertReceived(AlertDescription::ProtocolVersion) => "protocol_version",
        Error::PeerIncompatible(_) => "incompatible",
        Error::NoApplicationProtocol => "no_application_protocol",
        Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::UnsupportedCertificate,
        ) => "certificate_refused_by_client",
        Error::AlertReceived(_) => "alert_received",
        Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => "not_tls",
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::PeerMisbehaved(_) => "protocol_error",
        Error::General(_) => "no_certificate",
        _ => "other",
    }
}
