//! Checks of the operations files shipped beside the daemon: the Grafana dashboard, the
//! Prometheus alerts and their unit tests name only metrics a running `lb` exports, the dashboard
//! is well-formed JSON whose queries parse, `promtool` accepts the Prometheus files and the
//! alerts' unit tests pass, and the systemd unit promises nothing the daemon does not do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::tls::{TempDir, TestCa, tls_section};
use crate::support::{backends, balancer, client, get, scrape};

const DASHBOARD: &str = "docs/grafana/lb-dashboard.json";
const ALERTS: &str = "config/prometheus/alerts.yml";
const ALERTS_TEST: &str = "config/prometheus/alerts_test.yml";
const PROMETHEUS: &str = "config/prometheus/prometheus.yml";
const UNIT: &str = "config/systemd/lb.service";
const MONITORING: &str = "docs/monitoring.md";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("lb-proxy sits in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-ops-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Metric families of an exposition, by name, with their type (from the `# TYPE` lines).
fn exported_families(metrics: &str) -> BTreeMap<String, String> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let (name, kind) = rest.split_once(' ')?;
            Some((name.to_owned(), kind.trim().to_owned()))
        })
        .collect()
}

/// Whether `token` names an exported series: a family, or a histogram's `_bucket`, `_sum` or
/// `_count` series.
fn is_exported(token: &str, families: &BTreeMap<String, String>) -> bool {
    families.contains_key(token)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            token
                .strip_suffix(suffix)
                .is_some_and(|base| families.get(base).is_some_and(|kind| kind == "histogram"))
        })
}

/// Every `lb_[a-z0-9_]+` token of `text` that starts a word (a bare `lb_` prefix is no name).
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut tokens = BTreeSet::new();
    for (start, _) in text.match_indices("lb_") {
        if start > 0 && word(bytes[start - 1]) {
            continue;
        }
        let len = bytes[start..]
            .iter()
            .take_while(|&&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            .count();
        if len > "lb_".len() {
            tokens.insert(text[start..start + len].to_owned());
        }
    }
    tokens
}

#[tokio::test]
async fn ops_files_name_only_exported_metrics() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    // Families without a series are left out of the exposition: one request creates
    // `lb_requests_total`'s first.
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.status, 200);
    let metrics = scrape(&daemon).await;
    daemon.shutdown().await;
    let mut families = exported_families(&metrics);
    // The TLS families have series once a listener serves certificates.
    let (dir, ca) = (TempDir::new("ops"), TestCa::new("ops ca"));
    let leaf = ca.leaf(&["ops.test"]);
    dir.write("c.pem", &leaf.cert);
    dir.write("k.pem", &leaf.key);
    let server = format!(
        "server:\n{}",
        tls_section(&dir.0, &[("c.pem", "k.pem")], "")
    );
    let tls_daemon = balancer(&fleet, &server).await;
    families.extend(exported_families(&scrape(&tls_daemon).await));
    tls_daemon.shutdown().await;
    assert!(
        families
            .get("lb_request_duration_seconds")
            .map(String::as_str)
            == Some("histogram"),
        "unexpected exposition:\n{metrics}"
    );

    // What each file must at least show, so a file emptied by mistake fails too.
    let required: [(&str, &[&str]); 4] = [
        (
            DASHBOARD,
            &[
                "lb_requests_total",
                "lb_request_duration_seconds_bucket",
                "lb_backend_health_status",
                "lb_circuit_breaker_state",
                "lb_active_connections",
                "lb_retries_total",
                "lb_client_connections",
            ],
        ),
        (
            ALERTS,
            &[
                "lb_requests_total",
                "lb_request_duration_seconds_bucket",
                "lb_backend_health_status",
                "lb_circuit_breaker_state",
                "lb_retry_budget_exhausted_total",
                "lb_no_backend_total",
                "lb_tls_certificate_expiry_timestamp_seconds",
                "lb_tls_certificate_reloads_total",
            ],
        ),
        (ALERTS_TEST, &["lb_requests_total"]),
        (MONITORING, &["lb_requests_total"]),
    ];
    let mut unknown = Vec::new();
    for (file, needed) in required {
        let tokens = metric_tokens(&read(file));
        for name in needed {
            assert!(tokens.contains(*name), "{file} does not use {name}");
        }
        unknown.extend(
            tokens
                .iter()
                .filter(|token| !is_exported(token, &families))
                .map(|token| format!("{file}: {token}")),
        );
    }
    assert!(
        unknown.is_empty(),
        "metric names lb does not export:\n{}\nexported: {:?}",
        unknown.join("\n"),
        families.keys().collect::<Vec<_>>()
    );
}

/// A strict JSON syntax check (RFC 8259): enough to catch a hand edit that breaks the file.
struct JsonCheck<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl JsonCheck<'_> {
    fn check(text: &str) -> Result<(), String> {
        let mut parser = JsonCheck {
            bytes: text.as_bytes(),
            pos: 0,
        };
        parser.value()?;
        parser.space();
        if parser.pos != parser.bytes.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok(())
    }

    fn error(&self, what: &str) -> String {
        let line = 1 + self.bytes[..self.pos.min(self.bytes.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        format!("line {line}: {what}")
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        self.pos += 1;
        byte
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn value(&mut self) -> Result<(), String> {
        self.space();
        match self.peek() {
            Some(open @ (b'{' | b'[')) => self.container(open),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => ["true", "false", "null"]
                .iter()
                .find(|word| self.bytes[self.pos..].starts_with(word.as_bytes()))
                .map(|word| self.pos += word.len())
                .ok_or_else(|| self.error("expected a value")),
        }
    }

    fn container(&mut self, open: u8) -> Result<(), String> {
        let close = if open == b'{' { b'}' } else { b']' };
        self.pos += 1;
        self.space();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if open == b'{' {
                self.space();
                self.string()?;
                self.space();
                if self.next() != Some(b':') {
                    return Err(self.error("expected ':'"));
                }
            }
            self.value()?;
            self.space();
            match self.next() {
                Some(b',') => continue,
                Some(b) if b == close => return Ok(()),
                _ => return Err(self.error("expected ',' or a closing bracket")),
            }
        }
    }

    fn string(&mut self) -> Result<(), String> {
        if self.next() != Some(b'"') {
            return Err(self.error("expected a string"));
        }
        loop {
            match self.next() {
                Some(b'"') => return Ok(()),
                Some(b'\\') => match self.next() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        for _ in 0..4 {
                            if !self.next().is_some_and(|b| b.is_ascii_hexdigit()) {
                                return Err(self.error("bad \\u escape"));
                            }
                        }
                    }
                    _ => return Err(self.error("bad escape")),
                },
                Some(b) if b < 0x20 => return Err(self.error("control character in string")),
                Some(_) => {}
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn number(&mut self) -> Result<(), String> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else if self.digits() == 0 {
            return Err(self.error("bad number"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("bad fraction"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("bad exponent"));
            }
        }
        Ok(())
    }
}

#[test]
fn json_check_accepts_json_and_rejects_breakage() {
    assert_eq!(
        JsonCheck::check(r#" {"a": [1, -2.5e3, true, null, "x\"\u00e9"], "b": {}} "#),
        Ok(())
    );
    for broken in [
        r#"{"a": 1,}"#,
        r#"{"a" 1}"#,
        "[1, 2",
        r#"{"a": 01}"#,
        "[tru]",
        "{} {}",
    ] {
        assert!(JsonCheck::check(broken).is_err(), "accepted {broken}");
    }
}

/// The `"expr"` strings of the dashboard, JSON escapes undone.
fn dashboard_exprs(json: &str) -> Vec<String> {
    json.split("\"expr\": \"")
        .skip(1)
        .map(|rest| {
            let mut expr = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => expr.push(chars.next().unwrap_or('\\')),
                    c => expr.push(c),
                }
            }
            expr
        })
        .collect()
}

#[test]
fn dashboard_is_valid_json() {
    let json = read(DASHBOARD);
    if let Err(error) = JsonCheck::check(&json) {
        panic!("{DASHBOARD} is not valid JSON: {error}");
    }
    assert!(json.contains("\"schemaVersion\": 39"));
    assert!(dashboard_exprs(&json).len() >= 10);
}

/// Runs `promtool` with `args` from the workspace root; `None` when it is not installed and
/// `LB_REQUIRE_PROMTOOL` is unset.
fn promtool(args: &[&str]) -> Option<Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(output) => Some(output),
        Err(error) if std::env::var_os("LB_REQUIRE_PROMTOOL").is_some() => {
            panic!("promtool is required here (Debian package `prometheus`): {error}")
        }
        Err(_) => {
            eprintln!(
                "promtool not found: skipping `promtool {}` (install the Debian package `prometheus`)",
                args.join(" ")
            );
            None
        }
    }
}

fn assert_success(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_config_rules_and_alert_tests() {
    for args in [
        ["check", "config", PROMETHEUS],
        ["check", "rules", ALERTS],
        ["test", "rules", ALERTS_TEST],
    ] {
        let Some(output) = promtool(&args) else {
            return;
        };
        assert_success(&args, &output);
    }
}

#[test]
fn dashboard_queries_parse() {
    // Each query becomes a recording rule, so `promtool check rules` parses it; Grafana's
    // variables get plausible values first.
    let exprs = dashboard_exprs(&read(DASHBOARD));
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*")
            .replace("$backend", ".*");
        let quoted = expr.replace('\'', "''");
        rules.push_str(&format!(
            "      - record: dashboard:query{index}\n        expr: '{quoted}'\n"
        ));
    }
    let dir = temp_dir("dashboard");
    let file = dir.join("dashboard_rules.yml");
    std::fs::write(&file, rules).unwrap();
    let file = file.to_string_lossy().into_owned();
    let args = ["check", "rules", file.as_str()];
    let result = promtool(&args);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(output) = result {
        assert_success(&args, &output);
    }
}

#[test]
fn systemd_unit_matches_the_daemon() {
    let unit = read(UNIT);
    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();
    let has = |directive: &str| directives.iter().any(|line| line.starts_with(directive));
    for directive in [
        "ExecReload=/usr/local/bin/lb --check /etc/lb/config.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStartPre=/usr/local/bin/lb --check ",
        "ExecStart=/usr/local/bin/lb ",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=40s",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "LimitNOFILE=65536",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
    ] {
        assert!(has(directive), "{UNIT} lacks {directive}");
    }

    // `systemd-analyze verify` wants the binary to exist: point the unit at the one just built.
    let dir = temp_dir("systemd");
    let file = dir.join("lb.service");
    std::fs::write(
        &file,
        unit.replace("/usr/local/bin/lb", env!("CARGO_BIN_EXE_lb")),
    )
    .unwrap();
    let result = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(output) => assert!(
            output.status.success() && output.stderr.is_empty(),
            "systemd-analyze verify {UNIT}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => eprintln!("systemd-analyze not found: skipping `systemd-analyze verify {UNIT}`"),
    }
}
