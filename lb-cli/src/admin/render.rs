//! The admin verbs' text output, from the client's typed answers (no IO).
//!
//! Names, addresses and messages come from the daemon; they pass through
//! [`printable`] so a strange name cannot break the table or the terminal.

use std::fmt::Write as _;

use lb_observe::admin::{BackendStatus, BreakerState, Health, ReloadOutcome, printable};

/// How a backend's health reads, as in `lb-cli status`.
fn health(backend: &BackendStatus) -> String {
    match &backend.health {
        Health::Healthy => "up".to_owned(),
        Health::Unhealthy => "DOWN".to_owned(),
        Health::Other(word) => printable(word),
    }
}

/// `-`, `draining` (drained, requests still in flight) or `drained` (nothing in flight).
fn drain(backend: &BackendStatus) -> &'static str {
    match (backend.drained, backend.drain_done) {
        (false, _) => "-",
        (true, false) => "draining",
        (true, true) => "drained",
    }
}

/// The weight in use, `*` when it is a runtime override.
fn weight(backend: &BackendStatus) -> String {
    let mark = if backend.weight_overridden() { "*" } else { "" };
    format!("{}{mark}", backend.weight)
}

/// A summary line, an aligned table with one row per backend, and a note under it when a
/// weight is overridden.
pub fn table(backends: &[BackendStatus]) -> String {
    let count = |n: usize, noun: &str| format!("{n} {noun}{}", if n == 1 { "" } else { "s" });
    let healthy = backends
        .iter()
        .filter(|b| b.health == Health::Healthy)
        .count();
    let drained = backends.iter().filter(|b| b.drained).count();
    let overridden: Vec<&BackendStatus> =
        backends.iter().filter(|b| b.weight_overridden()).collect();
    let mut out = format!(
        "{}: {healthy} healthy, {drained} drained, {} in flight\n",
        count(backends.len(), "backend"),
        backends.iter().map(|b| b.in_flight).sum::<u64>()
    );
    let header = [
        "BACKEND",
        "POOL",
        "ADDRESS",
        "WEIGHT",
        "HEALTH",
        "BREAKER",
        "IN-FLIGHT",
        "DRAIN",
    ];
    let rows: Vec<[String; 8]> = backends
        .iter()
        .map(|b| {
            [
                printable(&b.name),
                printable(b.pool.as_deref().unwrap_or("-")),
                printable(&b.address),
                weight(b),
                health(b),
                printable(b.breaker.label()),
                b.in_flight.to_string(),
                drain(b).to_owned(),
            ]
        })
        .collect();
    out.push_str(&crate::render::columns(&header, &rows));
    if !overridden.is_empty() {
        let files: Vec<String> = overridden
            .iter()
            .map(|b| format!("{} {}", printable(&b.name), b.configured_weight))
            .collect();
        let _ = writeln!(
            out,
            "* set at runtime; the file says {}; `lb-cli weight NAME --reset` restores it",
            files.join(", ")
        );
    }
    out
}

/// After `drain`: drained, and whether requests are still finishing.
pub fn drained(backend: &BackendStatus) -> String {
    let name = printable(&backend.name);
    if backend.drain_done {
        format!("{name}: drained: no new requests, none in flight (safe to stop)\n")
    } else {
        format!(
            "{name}: draining: no new requests; {} in flight will finish \
             (`lb-cli backends` shows when it is done)\n",
            backend.in_flight
        )
    }
}

/// After `enable`: taking requests again, unless something else keeps it out.
pub fn enabled(backend: &BackendStatus) -> String {
    let name = printable(&backend.name);
    if backend.drained {
        // The daemon would not answer so; said plainly rather than hidden.
        return format!("{name}: still drained (the daemon kept the drain)\n");
    }
    let mut out = format!("{name}: enabled: takes new requests");
    if backend.health != Health::Healthy {
        let _ = write!(out, " once healthy (health: {})", health(backend));
    } else if backend.breaker == BreakerState::Open {
        out.push_str(" once its breaker lets them through (breaker: open)");
    }
    out.push('\n');
    out
}

/// After `weight`: the weight in use and where it comes from.
pub fn weight_set(backend: &BackendStatus) -> String {
    let name = printable(&backend.name);
    if backend.weight_overridden() {
        format!(
            "{name}: weight {} (set at runtime; the file says {})\n",
            backend.weight, backend.configured_weight
        )
    } else {
        format!("{name}: weight {} (the file's)\n", backend.weight)
    }
}

/// After `breaker-reset`.
pub fn breaker_reset(backend: &BackendStatus) -> String {
    format!(
        "{}: breaker reset: {}\n",
        printable(&backend.name),
        printable(backend.breaker.label())
    )
}

/// After `reload`: what changed, and what waits for a restart.
pub fn reload(outcome: &ReloadOutcome) -> String {
    let mut out = if outcome.changes.is_empty() {
        "reloaded: no changes\n".to_owned()
    } else {
        let n = outcome.changes.len();
        format!("reloaded: {n} change{}\n", if n == 1 { "" } else { "s" })
    };
    for change in &outcome.changes {
        let _ = writeln!(out, "  {}", printable(change));
    }
    if !outcome.needs_restart.is_empty() {
        out.push_str("needs a restart (not applied):\n");
        for change in &outcome.needs_restart {
            let _ = writeln!(out, "  {}", printable(change));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_observe::admin::Override;

    fn backend(name: &str) -> BackendStatus {
        BackendStatus {
            name: name.into(),
            pool: Some("default".into()),
            address: "127.0.0.1:8001".into(),
            weight: 1,
            configured_weight: 1,
            max_connections: 1000,
            health: Health::Healthy,
            breaker: BreakerState::Closed,
            in_flight: 0,
            drained: false,
            drain_done: false,
            overrides: Vec::new(),
        }
    }

    #[test]
    fn the_table() {
        let b1 = BackendStatus {
            weight: 5,
            in_flight: 3,
            overrides: vec![Override::Weight],
            ..backend("b1")
        };
        let b2 = BackendStatus {
            address: "10.0.0.2:8002".into(),
            health: Health::Unhealthy,
            breaker: BreakerState::HalfOpen,
            drained: true,
            drain_done: true,
            overrides: vec![Override::Drain],
            ..backend("b2")
        };
        // A health word this client does not know is shown as sent.
        let b3 = BackendStatus {
            health: Health::Other("x".into()),
            breaker: BreakerState::Open,
            in_flight: 2,
            drained: true,
            ..backend("backend-three")
        };
        let expected = "\
3 backends: 1 healthy, 2 drained, 5 in flight
BACKEND        POOL     ADDRESS         WEIGHT  HEALTH  BREAKER    IN-FLIGHT  DRAIN
b1             default  127.0.0.1:8001  5*      up      closed     3          -
b2             default  10.0.0.2:8002   1       DOWN    half-open  0          drained
backend-three  default  127.0.0.1:8001  1       x       open       2          draining
* set at runtime; the file says b1 1; `lb-cli weight NAME --reset` restores it
";
        assert_eq!(table(&[b1, b2, b3]), expected);
        assert_eq!(
            table(&[]),
            "0 backends: 0 healthy, 0 drained, 0 in flight\n\
             BACKEND  POOL  ADDRESS  WEIGHT  HEALTH  BREAKER  IN-FLIGHT  DRAIN\n"
        );
    }

    #[test]
    fn hostile_names_stay_on_their_row() {
        let got = table(&[backend("evil\n\u{1b}[2Jname")]);
        assert_eq!(got.lines().count(), 3, "{got}");
        assert!(got.contains("evil\\n\\u{1b}[2Jname"), "{got}");
    }

    #[test]
    fn verb_results() {
        let draining = BackendStatus {
            drained: true,
            in_flight: 3,
            ..backend("b2")
        };
        assert_eq!(
            drained(&draining),
            "b2: draining: no new requests; 3 in flight will finish (`lb-cli backends` shows when it is done)\n"
        );
        let done = BackendStatus {
            drain_done: true,
            in_flight: 0,
            ..draining
        };
        assert_eq!(
            drained(&done),
            "b2: drained: no new requests, none in flight (safe to stop)\n"
        );
        assert_eq!(enabled(&backend("b2")), "b2: enabled: takes new requests\n");
        let down = BackendStatus {
            health: Health::Unhealthy,
            ..backend("b2")
        };
        assert_eq!(
            enabled(&down),
            "b2: enabled: takes new requests once healthy (health: DOWN)\n"
        );
        let open = BackendStatus {
            breaker: BreakerState::Open,
            ..backend("b2")
        };
        assert!(enabled(&open).contains("(breaker: open)"));
        let heavy = BackendStatus {
            weight: 7,
            configured_weight: 2,
            overrides: vec![Override::Weight],
            ..backend("b1")
        };
        assert_eq!(
            weight_set(&heavy),
            "b1: weight 7 (set at runtime; the file says 2)\n"
        );
        assert_eq!(weight_set(&backend("b1")), "b1: weight 1 (the file's)\n");
        assert_eq!(breaker_reset(&backend("b1")), "b1: breaker reset: closed\n");
    }

    #[test]
    fn reload_results() {
        let outcome = |changes: &[&str], restart: &[&str]| ReloadOutcome {
            result: "success".into(),
            changes: changes.iter().map(|c| (*c).to_owned()).collect(),
            needs_restart: restart.iter().map(|c| (*c).to_owned()).collect(),
        };
        assert_eq!(reload(&outcome(&[], &[])), "reloaded: no changes\n");
        assert_eq!(
            reload(&outcome(
                &["backend b3 added", "retry"],
                &["server.workers: 4 -> 8"]
            )),
            "reloaded: 2 changes\n  backend b3 added\n  retry\n\
             needs a restart (not applied):\n  server.workers: 4 -> 8\n"
        );
        assert_eq!(
            reload(&outcome(&["retry"], &[])),
            "reloaded: 1 change\n  retry\n"
        );
    }
}
