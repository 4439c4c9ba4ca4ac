//! `init`: writes the commented reference configuration as a starting point.
//!
//! The starter is `config/config.yaml` itself, compiled in, so it cannot drift from the
//! reference the docs describe and `check` accepts.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The commented starter configuration (the repository's `config/config.yaml`).
pub const STARTER: &str = include_str!("../../config/config.yaml");

/// Why `init` wrote nothing.
#[derive(Debug)]
pub enum InitError {
    /// The file exists and `--force` was not given.
    Exists(PathBuf),
    /// Creating or writing the file failed.
    Write(PathBuf, io::Error),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Exists(path) => write!(
                f,
                "{} already exists; not overwriting it (use --force to replace it)",
                path.display()
            ),
            InitError::Write(path, error) => write!(f, "{}: cannot write: {error}", path.display()),
        }
    }
}

impl std::error::Error for InitError {}

/// Writes [`STARTER`] to `path`; an existing file is replaced only when `force`.
///
/// # Errors
///
/// [`InitError::Exists`] without `force` when `path` exists (checked atomically by
/// creating the file exclusively), [`InitError::Write`] for any IO failure.
pub fn init(path: &Path, force: bool) -> Result<(), InitError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == io::ErrorKind::AlreadyExists {
            InitError::Exists(path.to_owned())
        } else {
            InitError::Write(path.to_owned(), error)
        }
    })?;
    file.write_all(STARTER.as_bytes())
        .map_err(|error| InitError::Write(path.to_owned(), error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_is_a_valid_commented_config() {
        let config = lb_core::config::parse(STARTER, lb_core::config::Format::Yaml, "lb.yaml");
        assert!(config.is_ok(), "{config:?}");
        assert!(STARTER.starts_with('#'));
    }
}
