//! The TLS files a valid configuration names, checked as the daemon will load them
//! ([`lb_tls`], the same code): each file exists and parses, each key matches its certificate,
//! each chain is in order, ticket key files are whole keys, CA files hold certificates. Errors
//! for what would stop the daemon (or a backend), warnings for a certificate that expires
//! within [`EXPIRY_WARNING_DAYS`], is not valid yet, or covers none of the SNI names it is
//! configured for. etcd discovery's TLS files are checked as `upstream.tls`'s are, and its
//! `password_file` is read (never shown) to see that it holds a password.

use std::path::Path;

use lb_core::config::{Config, DiscoverySource, EtcdDiscovery, UpstreamTlsConfig};

use crate::check::{Finding, Severity};

/// A certificate expiring within this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// A finding on `field`, positioned later by the caller.
fn finding(severity: Severity, field: String, message: String, hint: Option<&str>) -> Finding {
    Finding {
        severity,
        line: None,
        column: None,
        field,
        message,
        hint: hint.map(str::to_owned),
    }
}

fn read(path: &Path, field: &str, out: &mut Vec<Finding>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            let message = match error.kind() {
                std::io::ErrorKind::NotFound => format!("{}: no such file", path.display()),
                _ => format!("{}: cannot be read: {error}", path.display()),
            };
            let hint = "a relative path is taken from the configuration file's directory";
            out.push(finding(
                Severity::Error,
                field.to_owned(),
                message,
                Some(hint),
            ));
            None
        }
    }
}

fn date(unix: i64) -> String {
    // Days since the epoch to a civil date (Howard Hinnant's civil_from_days).
    let days = unix.div_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Validity warnings (or the error of an expired certificate) for `leaf` at `now`.
fn validity(leaf: &lb_tls::CertInfo, field: &str, now: i64, out: &mut Vec<Finding>) {
    let left = leaf.seconds_left(now);
    if left <= 0 {
        out.push(finding(
            Severity::Error,
            field.to_owned(),
            format!("the certificate expired on {}", date(leaf.not_after)),
            Some("renew it: clients refuse an expired certificate"),
        ));
    } else if left < EXPIRY_WARNING_DAYS * DAY {
        out.push(finding(
            Severity::Warning,
            field.to_owned(),
            format!(
                "the certificate expires in {} days, on {}",
                left / DAY,
                date(leaf.not_after)
            ),
            Some("renew it; the daemon reloads a renewed file without a restart"),
        ));
    }
    if leaf.not_before > now {
        out.push(finding(
            Severity::Warning,
            field.to_owned(),
            format!(
                "the certificate is not valid before {}",
                date(leaf.not_before)
            ),
            Some("check the clock, or the certificate"),
        ));
    }
}

/// Every TLS finding for `config` at `now` (seconds since the Unix epoch).
pub fn tls_findings(config: &Config, now: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(tls) = &config.server.tls {
        for (i, certificate) in tls.certificates.iter().enumerate() {
            let field = format!("server.tls.certificates[{i}]");
            let cert = read(&certificate.cert, &format!("{field}.cert"), &mut out);
            let key = read(&certificate.key, &format!("{field}.key"), &mut out);
            let (Some(cert), Some(key)) = (cert, key) else {
                continue;
            };
            let bundle = match lb_tls::load_bundle(&cert, &key) {
                Ok(bundle) => bundle,
                Err(error) => {
                    let on = match error {
                        lb_tls::BundleError::NoKey
                        | lb_tls::BundleError::SeveralKeys(_)
                        | lb_tls::BundleError::KeyMismatch
                        | lb_tls::BundleError::UnsupportedKey(_) => "key",
                        _ => "cert",
                    };
                    out.push(finding(
                        Severity::Error,
                        format!("{field}.{on}"),
                        error.to_string(),
                        None,
                    ));
                    continue;
                }
            };
            validity(&bundle.leaf, &format!("{field}.cert"), now, &mut out);
            let uncovered: Vec<&String> = (certificate.names.iter())
                .filter(|name| !lb_tls::covers(&bundle.leaf.dns_names, name))
                .collect();
            if !uncovered.is_empty() {
                let none = uncovered.len() == certificate.names.len();
                let message = format!(
                    "the certificate ({}) covers {} of the configured names: {}",
                    bundle.leaf.dns_names.join(", "),
                    if none { "none" } else { "not all" },
                    uncovered
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let hint = "clients for those names will refuse it; list the names it holds";
                out.push(finding(
                    Severity::Warning,
                    format!("{field}.names"),
                    message,
                    Some(hint),
                ));
            }
            if certificate.names.is_empty() && bundle.leaf.dns_names.is_empty() {
                let message =
                    "the certificate lists no DNS name: no SNI name selects it".to_owned();
                let hint = "it still serves clients that send no name, if it is the first";
                out.push(finding(
                    Severity::Warning,
                    format!("{field}.cert"),
                    message,
                    Some(hint),
                ));
            }
        }
        if let Some(path) = &tls.session_ticket_key_file {
            let field = "server.tls.session_ticket_key_file";
            if let Some(bytes) = read(path, field, &mut out)
                && let Err(error) = lb_tls::parse_ticket_keys(&bytes)
            {
                out.push(finding(
                    Severity::Error,
                    field.to_owned(),
                    error.to_string(),
                    None,
                ));
            }
        }
    }
    if let Some(tls) = &config.upstream.tls {
        upstream(tls, "upstream.tls", now, &mut out);
    }
    backends(
        &config.backends,
        config.upstream.tls.as_ref(),
        "",
        now,
        &mut out,
    );
    for pool in &config.pools {
        let at = format!("pools.{}.", pool.name);
        let inherited = pool.upstream.tls.as_ref();
        // A pool that inherits upstream.tls was checked there.
        if let Some(tls) = inherited.filter(|tls| Some(*tls) != config.upstream.tls.as_ref()) {
            upstream(tls, &format!("{at}upstream.tls"), now, &mut out);
        }
        backends(&pool.backends, inherited, &at, now, &mut out);
    }
    for pool in config.pool_list() {
        // The flat form's pool is the top level; a written pool is under `pools.NAME.`.
        let at = match config.pools.iter().any(|p| p.name == pool.name) {
            true => format!("pools.{}.", pool.name),
            false => String::new(),
        };
        if let Some(DiscoverySource::Etcd(etcd)) = pool.discovery.as_deref().map(|d| &d.source) {
            etcd_files(etcd, &format!("{at}discovery.etcd"), now, &mut out);
        }
    }
    out
}

/// etcd discovery's TLS files and password file.
fn etcd_files(etcd: &EtcdDiscovery, field: &str, now: i64, out: &mut Vec<Finding>) {
    if let Some(tls) = &etcd.tls {
        upstream(tls, &format!("{field}.tls"), now, out);
    }
    if let Some(auth) = &etcd.auth {
        let field = format!("{field}.password_file");
        // What the file holds is never part of a finding.
        let empty = read(&auth.password_file, &field, out)
            .is_some_and(|bytes| bytes.iter().all(|b| matches!(b, b'\n' | b'\r')));
        if empty {
            let message = format!("{}: holds no password", auth.password_file.display());
            out.push(finding(Severity::Error, field, message, None));
        }
    }
}

/// The TLS files of `list`'s backends that do not inherit `inherited` (checked with it).
fn backends(
    list: &[lb_core::config::BackendConfig],
    inherited: Option<&UpstreamTlsConfig>,
    at: &str,
    now: i64,
    out: &mut Vec<Finding>,
) {
    for (i, backend) in list.iter().enumerate() {
        match &backend.tls {
            Some(tls) if Some(tls) != inherited => {
                upstream(tls, &format!("{at}backends[{i}].tls"), now, out)
            }
            _ => {}
        }
    }
}

fn upstream(tls: &UpstreamTlsConfig, field: &str, now: i64, out: &mut Vec<Finding>) {
    if let Some(path) = &tls.ca_file {
        let ca_field = format!("{field}.ca_file");
        if let Some(bytes) = read(path, &ca_field, out)
            && let Err(error) = lb_tls::parse_chain(&bytes)
        {
            out.push(finding(Severity::Error, ca_field, error.to_string(), None));
        }
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let cert = read(cert, &format!("{field}.client_cert"), out);
        let key = read(key, &format!("{field}.client_key"), out);
        if let (Some(cert), Some(key)) = (cert, key) {
            match lb_tls::load_bundle(&cert, &key) {
                Ok(bundle) => validity(&bundle.leaf, &format!("{field}.client_cert"), now, out),
                Err(error) => out.push(finding(
                    Severity::Error,
                    format!("{field}.client_cert"),
                    error.to_string(),
                    None,
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::date;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_825_600), "2000-02-29");
        assert_eq!(date(4_070_908_800), "2099-01-01");
    }
}
