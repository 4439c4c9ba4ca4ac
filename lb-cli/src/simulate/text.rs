//! The readable report: what the clients saw, each backend's share, the timeline as small
//! charts, and what happened when; for two runs, the same side by side with differences.

use std::fmt::Write as _;

use lb_core::config::format_duration;
use lb_core::simulate::Scenario;
use lb_core::simulate::report::{EventKind, EventReport, Report};

use super::chart;
use super::compare::{self, Row, Unit};

/// Events listed in the text report per run; JSON has them all.
const MAX_EVENTS: usize = 40;

/// One run as the renderer needs it.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The configuration file, as named on the command line.
    pub config: &'a str,
    /// Its report.
    pub report: &'a Report,
}

impl Run<'_> {
    fn title(&self) -> String {
        format!("{} ({})", self.config, self.report.algorithm)
    }
}

/// What the scenario was, for the headline.
#[derive(Debug, Clone, Copy)]
pub struct Setting<'a> {
    /// The scenario file, as named on the command line.
    pub path: &'a str,
    /// The scenario.
    pub scenario: &'a Scenario,
    /// The seed used.
    pub seed: u64,
}

/// Milliseconds as a short duration: `0.4ms`, `21ms`, `2.13s`, `30.0s`, `1m05s`.
pub fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 10_000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        format_duration(std::time::Duration::from_millis(ms.round() as u64))
    }
}

/// A time since the start as `m:ss.s`.
pub fn clock(ms: f64) -> String {
    let tenths = (ms / 100.0).round() as u64;
    format!("{}:{:02}.{}", tenths / 600, tenths / 10 % 60, tenths % 10)
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".to_owned()
    } else {
        format!("{:.2}%", 100.0 * part as f64 / whole as f64)
    }
}

/// A value of a compared row.
fn value(unit: Unit, v: Option<f64>) -> String {
    match (unit, v) {
        (_, None) => "-".to_owned(),
        (Unit::Count, Some(v)) => format!("{v:.0}"),
        (Unit::Millis, Some(v)) => millis(v),
        (Unit::Percent, Some(v)) => format!("{v:.1}%"),
    }
}

/// A difference of a compared row, signed.
fn delta(unit: Unit, d: Option<f64>) -> String {
    let Some(d) = d else { return String::new() };
    let sign = if d > 0.0 {
        "+"
    } else if d < 0.0 {
        "-"
    } else {
        ""
    };
    match unit {
        Unit::Count => format!("{sign}{:.0}", d.abs()),
        Unit::Millis if d == 0.0 => "0".to_owned(),
        Unit::Millis => format!("{sign}{}", millis(d.abs())),
        Unit::Percent => format!("{sign}{:.1} pts", d.abs()),
    }
}

fn headline(out: &mut String, setting: &Setting<'_>, report: &Report) {
    let s = setting.scenario;
    let _ = writeln!(
        out,
        "{} of traffic: {} requests from {} clients; timeline columns of {}",
        format_duration(s.duration),
        report.clients.requests,
        s.clients.count,
        format_duration(std::time::Duration::from_millis(
            report.bucket_ms * column_buckets(report) as u64
        )),
    );
    let _ = writeln!(out, "{}", mix(s));
}

/// The request mix in one line: `mix: 90% GET, 10% POST with 2KiB bodies; 90% may be retried
/// after reaching a backend`.
fn mix(scenario: &Scenario) -> String {
    use lb_core::retry::is_idempotent;
    use lb_core::simulate::scenario::REPLAY_BUFFER_BYTES;
    let total: f64 = scenario.requests.iter().map(|k| k.share).sum();
    let share = |k: &lb_core::simulate::scenario::RequestKind| {
        100.0 * k.share / total.max(f64::MIN_POSITIVE)
    };
    let kinds: Vec<String> = scenario
        .requests
        .iter()
        .map(|k| match k.body_bytes {
            0 => format!("{:.0}% {}", share(k), k.method),
            bytes => format!("{:.0}% {} with {bytes}-byte bodies", share(k), k.method),
        })
        .collect();
    let retryable: f64 = scenario
        .requests
        .iter()
        .filter(|k| is_idempotent(&k.method) && k.body_bytes <= REPLAY_BUFFER_BYTES)
        .map(share)
        .sum();
    format!(
        "mix: {}; {retryable:.0}% may be retried after reaching a backend",
        kinds.join(", ")
    )
}

/// Buckets per chart column (the first column's; columns differ by at most one bucket).
fn column_buckets(report: &Report) -> usize {
    chart::columns(report.timeline.len())
        .first()
        .map_or(1, |r| r.len())
}

/// The report of one run.
pub fn single(run: &Run<'_>, setting: &Setting<'_>) -> String {
    let r = run.report;
    let c = &r.clients;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} on {}, seed {}",
        run.title(),
        setting.path,
        setting.seed
    );
    headline(&mut out, setting, r);

    out.push_str("\nClients\n");
    let _ = writeln!(out, "  requests    {}", c.requests);
    let _ = writeln!(
        out,
        "  succeeded   {} ({})",
        c.successes,
        percent(c.successes, c.requests)
    );
    // The comparison's cause rows (indented labels), read for this one run.
    let causes: Vec<String> = compare::clients(r, r)
        .into_iter()
        .filter(|row| row.metric.starts_with("  ") && !row.is_nothing())
        .map(|row| format!("{} {}", value(row.unit, row.a), row.metric.trim()))
        .collect();
    let _ = write!(
        out,
        "  errors      {} ({})",
        c.errors,
        percent(c.errors, c.requests)
    );
    if !causes.is_empty() {
        let _ = write!(out, ": {}", causes.join(", "));
    }
    out.push('\n');
    let l = c.latency;
    let _ = writeln!(
        out,
        "  latency     p50 {}  p90 {}  p99 {}  max {}",
        millis(l.p50_ms),
        millis(l.p90_ms),
        millis(l.p99_ms),
        millis(l.max_ms)
    );
    let _ = writeln!(
        out,
        "  retries     {} granted, {} refused for want of budget",
        c.retries, c.budget_exhausted
    );

    let width = name_width(r, r);
    let _ = writeln!(
        out,
        "\n{:width$}  requests   share  attempts   share  peak  failed  trips  flips",
        "Backends"
    );
    for b in &r.backends {
        let f = b.failed_attempts;
        let _ = writeln!(
            out,
            "  {:w$}  {:>8}  {:>5.1}%  {:>8}  {:>5.1}%  {:>4}  {:>6}  {:>5}  {:>5}",
            b.name,
            b.requests,
            100.0 * b.request_share,
            b.attempts,
            100.0 * b.attempt_share,
            b.in_flight_peak,
            f.status + f.connect_error + f.reset + f.timeout,
            b.breaker_trips,
            b.health_flips,
            w = width - 2,
        );
    }
    let _ = writeln!(
        out,
        "  (peak: most attempts in flight at once; failed: attempts answered 5xx, refused, cut or \
         timed out;\n   trips: breaker openings; flips: health changes)"
    );

    timeline(&mut out, &[*run], width);
    events(&mut out, r, None);
    out
}

/// Two runs of one scenario, side by side.
pub fn side_by_side(a: &Run<'_>, b: &Run<'_>, setting: &Setting<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A: {}\nB: {}", a.title(), b.title());
    let _ = writeln!(out, "both on {}, seed {}", setting.path, setting.seed);
    headline(&mut out, setting, a.report);
    let width = name_width(a.report, b.report).max(22);
    for (title, rows) in [
        ("Clients", compare::clients(a.report, b.report)),
        ("Backends", compare::backends(a.report, b.report)),
    ] {
        let _ = writeln!(
            out,
            "\n{title:width$}  {:>10}  {:>10}  {:>10}",
            "A", "B", "B - A"
        );
        for row in rows.iter().filter(|row| keep(row)) {
            let _ = writeln!(
                out,
                "  {:w$}  {:>10}  {:>10}  {:>10}",
                row.metric,
                value(row.unit, row.a),
                value(row.unit, row.b),
                delta(row.unit, row.delta),
                w = width - 2,
            );
        }
    }
    timeline(&mut out, &[*a, *b], width);
    events(&mut out, a.report, Some("A"));
    events(&mut out, b.report, Some("B"));
    out
}

/// Rows worth a line: anything non-zero, and the shares and peaks always.
fn keep(row: &Row) -> bool {
    !row.is_nothing() || row.metric.ends_with("share") || row.metric.ends_with("in flight")
}

fn name_width(a: &Report, b: &Report) -> usize {
    let longest = a
        .backends
        .iter()
        .chain(&b.backends)
        .map(|x| x.name.chars().count() + 8)
        .max()
        .unwrap_or(0);
    longest.max(14)
}

/// The charts: one row per run for each figure, on a scale shared by the runs.
fn timeline(out: &mut String, runs: &[Run<'_>], width: usize) {
    let Some(first) = runs.first() else { return };
    let _ = writeln!(
        out,
        "\nTimeline from 0s to {}, one column per {}",
        format_duration(std::time::Duration::from_millis(first.report.duration_ms)),
        format_duration(std::time::Duration::from_millis(
            first.report.bucket_ms * column_buckets(first.report) as u64
        ))
    );
    let tag = |i: usize| match runs.len() {
        1 => String::new(),
        _ => format!("{} ", ["A", "B"][i.min(1)]),
    };
    let mut block = |label: &str, rows: Vec<String>, note: String| {
        for (i, row) in rows.iter().enumerate() {
            let name = if i == 0 { label } else { "" };
            let note = if i + 1 == rows.len() {
                note.as_str()
            } else {
                ""
            };
            let _ = writeln!(out, "  {name:w$}{}{row}  {note}", tag(i), w = width - 2);
        }
    };
    let series: Vec<Vec<f64>> = runs.iter().map(|r| chart::rate(r.report)).collect();
    let max = series.iter().flatten().copied().fold(0.0, f64::max);
    block(
        "requests/s",
        series.iter().map(|s| chart::bars(s, max)).collect(),
        format!("max {max:.0}/s"),
    );
    let series: Vec<Vec<f64>> = runs.iter().map(|r| chart::p99(r.report)).collect();
    let max = series.iter().flatten().copied().fold(0.0, f64::max);
    let min = series
        .iter()
        .flatten()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    block(
        "p99 latency",
        series
            .iter()
            .map(|s| chart::log_bars(s, min, max))
            .collect(),
        if min.is_finite() && max > min {
            format!("{} to {}, log scale", millis(min), millis(max))
        } else {
            format!("max {}", millis(max))
        },
    );
    let series: Vec<Vec<f64>> = runs
        .iter()
        .map(|r| chart::error_percent(r.report))
        .collect();
    let max = series.iter().flatten().copied().fold(0.0, f64::max);
    block(
        "errors",
        series.iter().map(|s| chart::bars(s, max)).collect(),
        format!("max {max:.1}%"),
    );
    for (index, backend) in first.report.backends.iter().enumerate() {
        let present: Vec<&Run<'_>> = runs
            .iter()
            .filter(|r| {
                r.report
                    .backends
                    .get(index)
                    .is_some_and(|b| b.name == backend.name)
            })
            .collect();
        if present.len() != runs.len() {
            continue;
        }
        let series: Vec<Vec<f64>> = runs
            .iter()
            .map(|r| chart::attempt_share(r.report, index))
            .collect();
        let max = series.iter().flatten().copied().fold(0.0, f64::max);
        block(
            &format!("{} share", backend.name),
            series.iter().map(|s| chart::bars(s, max)).collect(),
            format!("max {max:.0}% of attempts"),
        );
        block(
            &format!("{} state", backend.name),
            runs.iter()
                .map(|r| chart::states(r.report, index))
                .collect(),
            String::new(),
        );
    }
    let _ = writeln!(out, "  {:w$}{}", "", chart::STATES_LEGEND, w = width - 2);
}

fn event_text(event: &EventReport) -> String {
    match &event.what {
        EventKind::Scenario { action } => format!("scenario: {action}"),
        EventKind::Breaker {
            from,
            to,
            open_for_ms,
        } => {
            let mut text = format!("breaker {from} -> {to}");
            if let Some(ms) = open_for_ms {
                let _ = write!(
                    text,
                    " for {}",
                    format_duration(std::time::Duration::from_millis(*ms))
                );
            }
            text
        }
        EventKind::Health { to } => format!("health checks: {to}"),
    }
}

fn events(out: &mut String, report: &Report, tag: Option<&str>) {
    let total = report.events.len();
    let title = match tag {
        Some(tag) => format!("Events, {tag}"),
        None => "Events".to_owned(),
    };
    if total == 0 {
        let _ = writeln!(out, "\n{title}: none");
        return;
    }
    if total > MAX_EVENTS {
        let _ = writeln!(
            out,
            "\n{title} (the first {MAX_EVENTS} of {total}; --format json has all)"
        );
    } else {
        let _ = writeln!(out, "\n{title}");
    }
    for event in report.events.iter().take(MAX_EVENTS) {
        let _ = writeln!(
            out,
            "  {:>7}  {}  {}",
            clock(event.at_ms),
            event.backend,
            event_text(event)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short() {
        let table = [
            (0.42, "0.4ms"),
            (21.4, "21ms"),
            (2130.0, "2.13s"),
            (30_000.0, "30.0s"),
            (65_000.0, "1m5s"),
        ];
        for (ms, text) in table {
            assert_eq!(millis(ms), text);
        }
        assert_eq!(clock(62_345.0), "1:02.3");
        assert_eq!(clock(0.0), "0:00.0");
    }

    #[test]
    fn deltas_carry_their_sign_and_unit() {
        assert_eq!(delta(Unit::Count, Some(-1819.0)), "-1819");
        assert_eq!(delta(Unit::Millis, Some(2070.0)), "+2.07s");
        assert_eq!(delta(Unit::Percent, Some(6.8)), "+6.8 pts");
        assert_eq!(delta(Unit::Count, Some(0.0)), "0");
        assert_eq!(delta(Unit::Count, None), "");
        assert_eq!(value(Unit::Percent, None), "-");
    }
}
