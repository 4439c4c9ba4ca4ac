//! Where the configuration comes from: a file, read through the same pipeline as `lb-cli check`
//! (`lb_core::config::parse_bytes`), then the command line's overrides. A reload reads it again
//! the same way, so an override given at start survives every reload.

use std::net::SocketAddr;
use std::path::PathBuf;

use lb_core::config::{AccessLogTarget, Config};

/// A configuration file and the command line's overrides of it.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file (.yaml, .yml or .json).
    pub path: PathBuf,
    /// Overrides `server.listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `metrics.listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Overrides `access_log.target`, and turns the access log on.
    pub access_log: Option<AccessLogTarget>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration: every error, each as `file:line:col: message`.
    #[error("{0}")]
    Invalid(String),
}

impl ConfigSource {
    /// The file at `path`, no overrides.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            listen: None,
            metrics_listen: None,
            access_log: None,
        }
    }

    /// Reads, validates, and applies the overrides.
    ///
    /// # Errors
    /// The file is unreadable or invalid.
    pub fn load(&self) -> Result<Config, LoadError> {
        let bytes = std::fs::read(&self.path).map_err(|source| LoadError::Read {
            path: self.path.clone(),
            source,
        })?;
        let mut config = lb_core::config::parse_bytes(&bytes, &self.path)
            .map_err(|errors| LoadError::Invalid(errors.to_string().trim_end().to_owned()))?;
        self.override_in(&mut config);
        Ok(config)
    }

    /// Applies the command line's overrides to `config`.
    pub fn override_in(&self, config: &mut Config) {
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(listen) = self.metrics_listen {
            config.metrics.listen = listen;
        }
        if let Some(target) = &self.access_log {
            config.access_log.enabled = true;
            config.access_log.target = target.clone();
        }
    }
}
