//! The served certificates: one slot per configured certificate, each behind its own `ArcSwap`,
//! so a reload swaps one certificate atomically while handshakes in progress keep the one they
//! took; and the choice by SNI name that rustls asks for on each handshake ([`Resolver`]).
//!
//! A name is looked up exactly first, then as a wildcard (`a.example.com` before
//! `*.example.com`); among the certificates for a name, the first whose key the client can use is
//! served (an ECDSA certificate listed before an RSA one for the same name goes to modern
//! clients, the RSA one to the others). A client with no SNI name, or one no certificate
//! covers, gets the first certificate's site. The lookup is a scan: fine for the dozens of
//! certificates a balancer carries, not for thousands.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use lb_core::config::CertificateConfig;
use lb_tls::{Bundle, KeyKind};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;

/// What a slot serves now.
#[derive(Debug)]
pub(crate) struct Served {
    /// The chain and key rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The names it is chosen for, lower case: the configured ones, else the certificate's.
    pub names: Vec<String>,
    /// The key's kind.
    pub kind: KeyKind,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// The files' bytes it was loaded from, to skip a reload that changes nothing.
    source: (Vec<u8>, Vec<u8>),
}

/// One configured certificate.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Its files and names as configured.
    pub config: CertificateConfig,
    /// Its name in metrics and logs.
    pub label: Arc<str>,
    /// What it serves now.
    pub current: ArcSwap<Served>,
}

/// What a slot's files hold, read and checked.
pub(crate) fn read(config: &CertificateConfig) -> Result<Served, TlsError> {
    let cert = read_file(&config.cert)?;
    let key = read_file(&config.key)?;
    let Bundle {
        key: certified,
        leaf,
        kind,
        ..
    } = lb_tls::load_bundle(&cert, &key).map_err(|source| TlsError::Bundle {
        cert: config.cert.clone(),
        key: config.key.clone(),
        source,
    })?;
    let names = match config.names.is_empty() {
        true => leaf.dns_names.clone(),
        false => config.names.clone(),
    };
    Ok(Served {
        key: certified,
        names,
        kind,
        not_after: leaf.not_after,
        source: (cert, key),
    })
}

pub(crate) fn read_file(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.clone(),
        source,
    })
}

impl Served {
    /// Whether `other` was read from the same bytes.
    pub(crate) fn same_source(&self, other: &Served) -> bool {
        self.source == other.source
    }
}

/// The slots of one `server.tls.certificates` list.
#[derive(Debug)]
pub(crate) struct CertStore {
    pub slots: Vec<Slot>,
}

impl CertStore {
    /// Reads every certificate of `configs`.
    ///
    /// # Errors
    ///
    /// The first certificate that cannot be read or served.
    pub(crate) fn load(configs: &[CertificateConfig]) -> Result<Self, TlsError> {
        let mut slots: Vec<Slot> = Vec::with_capacity(configs.len());
        for config in configs {
            let served = read(config)?;
            let mut label = served
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| config.cert.display().to_string());
            // Two certificates for one name (ECDSA and RSA) get the key kind in their label.
            if slots.iter().any(|slot| *slot.label == *label) {
                label = format!("{label} ({})", served.kind.as_str());
            }
            slots.push(Slot {
                config: config.clone(),
                label: label.into(),
                current: ArcSwap::from_pointee(served),
            });
        }
        Ok(Self { slots })
    }

    /// The slots chosen for `name`: those whose names cover it exactly, else by a wildcard.
    fn matching(&self, name: &str) -> Vec<usize> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let exact: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                let served = self.slots[i].current.load();
                served
                    .names
                    .iter()
                    .any(|own| !own.starts_with("*.") && own.eq_ignore_ascii_case(name))
            })
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        (0..self.slots.len())
            .filter(|&i| lb_tls::covers(&self.slots[i].current.load().names, name))
            .collect()
    }

    /// The slots a client naming `name` (or none) may be served: the default site when no
    /// certificate covers the name.
    pub(crate) fn site(&self, name: Option<&str>) -> Vec<usize> {
        if let Some(found) = name
            .map(|name| self.matching(name))
            .filter(|m| !m.is_empty())
        {
            return found;
        }
        let first = self.slots.first().map(|slot| slot.current.load());
        match first.as_ref().and_then(|served| served.names.first()) {
            Some(name) => {
                let mut site = self.matching(name);
                if !site.contains(&0) {
                    site.insert(0, 0);
                }
                site
            }
            None => vec![0],
        }
    }
}

/// Chooses the certificate for each handshake from the current store.
#[derive(Debug)]
pub(crate) struct Resolver {
    /// The store; a configuration reload that changes the list swaps it whole.
    pub store: ArcSwap<CertStore>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = self.store.load();
        let site = store.site(hello.server_name());
        let schemes = hello.signature_schemes();
        let served: Vec<Arc<Served>> = site
            .iter()
            .filter_map(|&i| store.slots.get(i).map(|slot| slot.current.load_full()))
            .collect();
        let usable = served
            .iter()
            .find(|served| served.key.key.choose_scheme(schemes).is_some());
        usable.or(served.first()).map(|served| served.key.clone())
    }
}
