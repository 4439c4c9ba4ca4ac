//! Checking configuration files into reports: errors, warnings and a one-line summary.
//!
//! A report keeps the file's text so the renderer can quote the offending line. Reading the
//! file is the only IO; [`check_bytes`] does the rest and is what the tests drive.

use std::io;
use std::path::Path;

use lb_core::config::{self, Config, ConfigError, ConfigWarning, Format};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file is invalid; the daemon would refuse it.
    Error,
    /// Valid, but likely not what was meant; fails the check only with `--strict`.
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One error or warning, with its position when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// Field path like `backends[1].weight`; empty for the file as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is a likely fix.
    pub hint: Option<String>,
}

impl From<&ConfigError> for Finding {
    fn from(error: &ConfigError) -> Self {
        Finding {
            severity: Severity::Error,
            line: error.line,
            column: error.column,
            field: error.field.clone(),
            message: error.message.clone(),
            hint: error.hint.clone(),
        }
    }
}

/// The outcome of checking one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    /// The file name as given on the command line.
    pub file: String,
    /// The file's text when it could be read as UTF-8, for quoting lines.
    pub source: Option<String>,
    /// Errors in file order; empty when the file is valid.
    pub errors: Vec<Finding>,
    /// Warnings; only computed for a valid file.
    pub warnings: Vec<Finding>,
    /// The validated configuration, when valid.
    pub config: Option<Config>,
}

impl FileReport {
    /// Whether the configuration is valid (it may still have warnings).
    pub fn valid(&self) -> bool {
        self.errors.is_empty() && self.config.is_some()
    }

    /// Whether the check passes: valid, and without warnings when `strict`.
    pub fn passes(&self, strict: bool) -> bool {
        self.valid() && (!strict || self.warnings.is_empty())
    }

    /// The one-line summary of a valid configuration.
    pub fn summary(&self) -> Option<String> {
        self.config.as_ref().map(summary)
    }

    fn failed(file: &str, source: Option<String>, errors: Vec<Finding>) -> Self {
        FileReport {
            file: file.to_owned(),
            source,
            errors,
            warnings: Vec::new(),
            config: None,
        }
    }
}

/// Reads and checks the file at `path`. A file that cannot be read (missing, a directory,
/// no permission) gives a report with one error saying so.
pub fn check_path(path: &Path) -> FileReport {
    match read(path) {
        Ok(bytes) => check_bytes(&bytes, path),
        Err(error) => FileReport::failed(&path.display().to_string(), None, vec![error]),
    }
}

/// Reads a file for checking, turning every failure into one plain error.
pub fn read(path: &Path) -> Result<Vec<u8>, Finding> {
    let file_error = |message: String, hint: Option<&str>| Finding {
        severity: Severity::Error,
        line: None,
        column: None,
        field: String::new(),
        message,
        hint: hint.map(str::to_owned),
    };
    if path.is_dir() {
        return Err(file_error(
            "is a directory, not a configuration file".to_owned(),
            Some("name a .yaml, .yml or .json file"),
        ));
    }
    std::fs::read(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => file_error("no such file".to_owned(), Some("check the path")),
        io::ErrorKind::PermissionDenied => file_error(
            "permission denied".to_owned(),
            Some("check the file's permissions"),
        ),
        _ => file_error(format!("cannot read the file: {error}"), None),
    })
}

/// Checks the contents of a file named `path` (the name picks YAML or JSON).
pub fn check_bytes(bytes: &[u8], path: &Path) -> FileReport {
    let file = path.display().to_string();
    let source = std::str::from_utf8(bytes).ok().map(str::to_owned);
    match config::parse_bytes(bytes, path) {
        Err(errors) => {
            FileReport::failed(&file, source, errors.iter().map(Finding::from).collect())
        }
        Ok(config) => {
            let format = Format::from_path(path);
            let mut warnings: Vec<Finding> = config::warnings(&config)
                .iter()
                .map(|w| warning_finding(w, source.as_deref(), format))
                .collect();
            // The files the configuration names, as the daemon will load them.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
                });
            let mut errors = Vec::new();
            for mut found in crate::check_tls::tls_findings(&config, now) {
                (found.line, found.column) = position(&found.field, source.as_deref(), format);
                match found.severity {
                    Severity::Error => errors.push(found),
                    Severity::Warning => warnings.push(found),
                }
            }
            FileReport {
                file,
                source,
                errors,
                warnings,
                config: Some(config),
            }
        }
    }
}

/// A warning placed on its field if the file writes it, else on a related field, else on
/// the nearest enclosing section that is written.
fn warning_finding(
    warning: &ConfigWarning,
    source: Option<&str>,
    format: Option<Format>,
) -> Finding {
    let position = source.zip(format).and_then(|(source, format)| {
        let exact = std::iter::once(&warning.field).chain(&warning.related);
        exact
            .map(String::as_str)
            .chain(parents(&warning.field))
            .find_map(|field| config::locate(source, format, field))
    });
    Finding {
        severity: Severity::Warning,
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        field: warning.field.clone(),
        message: warning.message.clone(),
        hint: warning.hint.clone(),
    }
}

/// Where `field`, or failing that its nearest written parent, is in the file.
fn position(
    field: &str,
    source: Option<&str>,
    format: Option<Format>,
) -> (Option<u32>, Option<u32>) {
    let found = source.zip(format).and_then(|(source, format)| {
        std::iter::once(field)
            .chain(parents(field))
            .find_map(|field| config::locate(source, format, field))
    });
    (found.map(|(line, _)| line), found.map(|(_, column)| column))
}

/// `a.b[1].c` → `a.b[1]`, `a.b`, `a`.
fn parents(field: &str) -> impl Iterator<Item = &str> {
    let mut rest = field;
    std::iter::from_fn(move || {
        let cut = rest.rfind(['.', '['])?;
        rest = &rest[..cut];
        Some(rest)
    })
}

/// One line describing a valid configuration: listener, algorithm, backends, health
/// checking and metrics.
pub fn summary(config: &Config) -> String {
    let pools = config.pool_list();
    let backends: usize = pools.iter().map(|pool| pool.backends.len()).sum();
    let health = &config.health_check;
    let health = if health.enabled {
        format!(
            "health check every {} on {} (timeout {})",
            config::format_duration(health.interval),
            health.path,
            config::format_duration(health.timeout)
        )
    } else {
        "health check off".to_owned()
    };
    let metrics = if config.metrics.enabled {
        format!(
            "metrics on {}{}",
            config.metrics.listen, config.metrics.path
        )
    } else {
        "metrics off".to_owned()
    };
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let routing = match (pools.len(), config.routes.len()) {
        (1, 0) => String::new(),
        (p, r) => format!("{p} pool{}, {r} route{}, ", plural(p), plural(r)),
    };
    let discovered = pools.iter().filter(|pool| pool.discovery.is_some()).count();
    let discovered = match discovered {
        0 => String::new(),
        n => format!(" (and {n} discovered pool{})", plural(n)),
    };
    format!(
        "listen {}, {}, {routing}{backends} backend{}{discovered}, {health}, {metrics}",
        config.server.listen,
        config.load_balancer.algorithm.as_str(),
        plural(backends),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "backends:\n  - address: 127.0.0.1:8001\n  - address: 127.0.0.1:8002\n";

    #[test]
    fn summary_names_the_essentials() {
        let report = check_bytes(MINIMAL.as_bytes(), Path::new("lb.yaml"));
        assert_eq!(
            report.summary().as_deref(),
            Some(
                "listen 0.0.0.0:8080, round_robin, 2 backends, health check every 5s on /health \
                 (timeout 1s), metrics on 127.0.0.1:9090/metrics"
            )
        );
        let off = format!("{MINIMAL}health_check:\n  enabled: false\nmetrics:\n  enabled: false\n");
        let report = check_bytes(off.as_bytes(), Path::new("lb.yaml"));
        let summary = report.summary().unwrap_or_default();
        assert!(
            summary.ends_with("health check off, metrics off"),
            "{summary}"
        );
    }

    #[test]
    fn warnings_get_positions_from_the_field_or_its_section() {
        // max_attempts defaults to 3 > 2 backends and is not written: no position at all.
        let report = check_bytes(MINIMAL.as_bytes(), Path::new("lb.yaml"));
        assert!(report.valid());
        let w = &report.warnings[0];
        assert_eq!(
            (w.field.as_str(), w.line, w.column),
            ("retry.max_attempts", None, None)
        );
        // Written: its own position.
        let text = format!("{MINIMAL}retry:\n  max_attempts: 5\n");
        let w = &check_bytes(text.as_bytes(), Path::new("lb.yaml")).warnings[0];
        assert_eq!((w.line, w.column), (Some(5), Some(17)));
        // The section is written but not the field: the section's key.
        let text = format!("{MINIMAL}retry:\n  base_delay: 10ms\n");
        let w = &check_bytes(text.as_bytes(), Path::new("lb.yaml")).warnings[0];
        assert_eq!((w.line, w.column), (Some(4), Some(1)));
        // A related field written when the named one is not.
        let text = format!("{MINIMAL}retry:\n  max_attempts: 2\nserver:\n  request_timeout: 2m\n");
        let w = &check_bytes(text.as_bytes(), Path::new("lb.yaml")).warnings[0];
        assert_eq!(w.field, "server.idle_timeout");
        assert_eq!((w.line, w.column), (Some(7), Some(20)));
    }

    #[test]
    fn parents_walk_up_the_path() {
        let all: Vec<&str> = parents("backends[1].weight").collect();
        assert_eq!(all, ["backends[1]", "backends"]);
        assert_eq!(parents("server").count(), 0);
    }

    #[test]
    fn strict_fails_on_warnings_only() {
        let report = check_bytes(MINIMAL.as_bytes(), Path::new("lb.yaml"));
        assert!(report.passes(false));
        assert!(!report.passes(true));
        let bad = check_bytes(b"backends: 3\n", Path::new("lb.yaml"));
        assert!(!bad.valid() && !bad.passes(false));
    }
}
