//! `access_log` and `request_id`: what a valid file gives (defaults, paths from the file's
//! directory), and each rule with its line, column and field.

use std::path::PathBuf;

use lb_core::config::{AccessLogFormat, AccessLogTarget, Format, SyslogDestination, diff, parse};

const BACKENDS: &str = "backends:\n  - address: 127.0.0.1:8001\n";

fn ok(source: &str) -> lb_core::config::Config {
    parse(
        &format!("{source}{BACKENDS}"),
        Format::Yaml,
        "/etc/lb/lb.yaml",
    )
    .unwrap_or_else(|errors| panic!("{errors}"))
}

/// Every error as `line:column: field: message (hint: ...)`.
fn errors(source: &str) -> Vec<String> {
    let errors =
        parse(&format!("{source}{BACKENDS}"), Format::Yaml, "lb.yaml").expect_err("invalid");
    errors
        .0
        .iter()
        .map(|error| {
            format!(
                "{}:{}: {}: {}{}",
                error.line.unwrap_or(0),
                error.column.unwrap_or(0),
                error.field,
                error.message,
                error
                    .hint
                    .as_ref()
                    .map(|h| format!(" (hint: {h})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn the_access_log_is_off_and_request_ids_on_by_default() {
    let config = ok("");
    assert!(!config.access_log.enabled);
    assert_eq!(config.access_log.buffer, 8192);
    assert!(config.request_id.enabled);
    assert_eq!(config.request_id.header, "x-request-id");
}

#[test]
fn a_written_section_turns_the_log_on() {
    let config = ok("access_log:\n  format: combined\n");
    assert!(config.access_log.enabled);
    assert_eq!(config.access_log.format, AccessLogFormat::Combined);
    assert_eq!(config.access_log.target, AccessLogTarget::Stdout);
    let config = ok("access_log:\n  enabled: false\n  target: stderr\n");
    assert!(!config.access_log.enabled);
}

#[test]
fn file_and_syslog_targets_read_in_full() {
    let config = ok(
        "access_log:\n  target: file\n  path: logs/access.log\n  buffer: 100\n  sample: {errors_only: true, one_in: 10}\n",
    );
    assert_eq!(
        config.access_log.target,
        AccessLogTarget::File(PathBuf::from("/etc/lb/logs/access.log"))
    );
    assert_eq!(config.access_log.buffer, 100);
    assert!(config.access_log.sample.errors_only);
    assert_eq!(config.access_log.sample.one_in, 10);

    let config = ok("access_log:\n  target: syslog\n");
    let AccessLogTarget::Syslog(syslog) = config.access_log.target else {
        panic!("syslog");
    };
    assert_eq!(
        syslog.destination,
        SyslogDestination::Socket(PathBuf::from("/dev/log"))
    );
    assert_eq!((syslog.facility, syslog.app_name.as_str()), (16, "lb"));

    let config = ok(
        "access_log:\n  target: syslog\n  syslog: {address: 10.0.0.5:514, facility: daemon, app_name: edge-lb}\n",
    );
    let AccessLogTarget::Syslog(syslog) = config.access_log.target else {
        panic!("syslog");
    };
    assert_eq!(
        syslog.destination,
        SyslogDestination::Address("10.0.0.5:514".parse().unwrap())
    );
    assert_eq!((syslog.facility, syslog.app_name.as_str()), (3, "edge-lb"));
}

#[test]
fn every_access_log_rule_is_located() {
    let cases: &[(&str, &str)] = &[
        (
            "access_log:\n  format: xml\n",
            "2:11: access_log.format: unknown format \"xml\" (hint: json or combined)",
        ),
        (
            "access_log:\n  target: kafka\n",
            "2:11: access_log.target: unknown target \"kafka\"",
        ),
        (
            "access_log:\n  target: file\n",
            "2:11: access_log.path: a file target needs a path",
        ),
        (
            "access_log:\n  path: /var/log/a.log\n",
            "2:9: access_log.path: a path is only read with target: file, not stdout",
        ),
        (
            "access_log:\n  syslog: {facility: local1}\n",
            "2:11: access_log.syslog: syslog settings are only read with target: syslog",
        ),
        (
            "access_log:\n  buffer: 0\n",
            "2:11: access_log.buffer: must be at least 1",
        ),
        (
            "access_log:\n  buffer: 2000000\n",
            "2:11: access_log.buffer: 2000000 lines is over the limit of 1048576",
        ),
        (
            "access_log:\n  sample: {one_in: 0}\n",
            "2:20: access_log.sample.one_in: must be at least 1",
        ),
        (
            "access_log:\n  sample: {every: 2}\n",
            "2:12: access_log.sample.every: unknown field \"every\"",
        ),
        (
            "access_log:\n  target: syslog\n  syslog: {facility: locl0}\n",
            "3:22: access_log.syslog.facility: unknown facility \"locl0\" (hint: did you mean \"local0\"?)",
        ),
        (
            "access_log:\n  target: syslog\n  syslog: {app_name: \"my app\"}\n",
            "3:22: access_log.syslog.app_name: \"my app\" is not a syslog APP-NAME",
        ),
        (
            "access_log:\n  target: syslog\n  syslog: {socket: /dev/log, address: 127.0.0.1:514}\n",
            "3:39: access_log.syslog.address: give syslog one destination",
        ),
        (
            "access_log:\n  target: syslog\n  syslog: {address: localhost}\n",
            "3:21: access_log.syslog.address: \"localhost\" is not an ip:port address",
        ),
        (
            "request_id:\n  header: \"X Request\"\n",
            "2:11: request_id.header: \"x request\" is not a header name",
        ),
        (
            "request_id:\n  header: X-Forwarded-For\n",
            "2:11: request_id.header: x-forwarded-for is a header the balancer writes",
        ),
        (
            "request_id:\n  enabled: yes please\n",
            "2:12: request_id.enabled: expected true or false",
        ),
    ];
    let mut failures = Vec::new();
    for (source, expected) in cases {
        let found = errors(source);
        if found.len() != 1 || !found[0].starts_with(expected) {
            failures.push(format!("{source:?}: expected {expected:?}, got {found:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn access_log_and_request_id_changes_apply_without_a_restart() {
    let old = ok("");
    let new = ok("access_log:\n  target: stderr\nrequest_id:\n  header: X-Trace\n");
    let changes = diff(&old, &new);
    let subjects: Vec<String> = changes.iter().map(|c| c.subject()).collect();
    assert_eq!(subjects, ["access_log", "request_id"]);
    assert!(
        changes
            .iter()
            .all(|change| change.needs_restart(&old).is_none())
    );
}

#[test]
fn shown_sections_parse_back_equal() {
    for section in [
        "access_log:\n  format: combined\n  target: file\n  path: /var/log/lb/a.log\n  sample: {errors_only: true, one_in: 3}\n  buffer: 10\n",
        "access_log:\n  target: syslog\n  syslog: {address: 10.0.0.5:514, facility: daemon, app_name: edge}\n",
        "access_log:\n  enabled: false\n  target: syslog\n",
        "access_log:\n  target: stderr\nrequest_id:\n  enabled: false\n  header: X-Trace-Id\n",
    ] {
        let config = ok(section);
        let yaml = serde_saphyr::to_string(&config).expect("yaml");
        let back = parse(&yaml, Format::Yaml, "/etc/lb/lb.yaml")
            .unwrap_or_else(|errors| panic!("{errors}\n{yaml}"));
        assert_eq!(back, config, "{yaml}");
        let json = serde_json::to_string(&config).expect("json");
        let back = parse(&json, Format::Json, "/etc/lb/lb.json")
            .unwrap_or_else(|errors| panic!("{errors}\n{json}"));
        assert_eq!(back, config, "{json}");
    }
}
