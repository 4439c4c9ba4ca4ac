//! Two reports of one scenario side by side: the figures an operator compares, with their
//! differences, as rows the text and JSON renderers share.

use lb_core::simulate::Report;
use serde::Serialize;

/// How a figure is measured, for formatting and for the sign of "better".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A number of things.
    Count,
    /// Milliseconds.
    Millis,
    /// A percentage (0-100); its difference is in percentage points.
    Percent,
}

/// One figure of both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// What is compared, like `errors` or `api-3 attempt share`.
    pub metric: String,
    /// Its unit.
    pub unit: Unit,
    /// The first run's value; `None` when that run has no such backend.
    pub a: Option<f64>,
    /// The second run's value.
    pub b: Option<f64>,
    /// `b - a`, when both exist.
    pub delta: Option<f64>,
}

impl Row {
    fn new(metric: impl Into<String>, unit: Unit, a: Option<f64>, b: Option<f64>) -> Row {
        Row {
            metric: metric.into(),
            unit,
            a,
            b,
            delta: a.zip(b).map(|(a, b)| b - a),
        }
    }

    /// Both runs have it at zero: nothing to show in a short report.
    pub fn is_nothing(&self) -> bool {
        self.a.unwrap_or(0.0) == 0.0 && self.b.unwrap_or(0.0) == 0.0
    }
}

/// The clients' figures of both runs.
pub fn clients(a: &Report, b: &Report) -> Vec<Row> {
    let count = |metric: &str, f: &dyn Fn(&Report) -> u64| {
        Row::new(metric, Unit::Count, Some(f(a) as f64), Some(f(b) as f64))
    };
    let millis = |metric: &str, f: &dyn Fn(&Report) -> f64| {
        Row::new(metric, Unit::Millis, Some(f(a)), Some(f(b)))
    };
    let error_percent = |r: &Report| {
        if r.clients.requests == 0 {
            0.0
        } else {
            100.0 * r.clients.errors as f64 / r.clients.requests as f64
        }
    };
    vec![
        count("requests", &|r| r.clients.requests),
        count("errors", &|r| r.clients.errors),
        Row::new(
            "error rate",
            Unit::Percent,
            Some(error_percent(a)),
            Some(error_percent(b)),
        ),
        count("  backend 5xx", &|r| r.clients.causes.backend_error),
        count("  connect error", &|r| r.clients.causes.connect_error),
        count("  reset", &|r| r.clients.causes.reset),
        count("  timeout (504)", &|r| r.clients.causes.timeout),
        count("  no backend (503)", &|r| r.clients.causes.no_backend),
        count("  too large (413)", &|r| r.clients.causes.too_large),
        millis("latency p50", &|r| r.clients.latency.p50_ms),
        millis("latency p90", &|r| r.clients.latency.p90_ms),
        millis("latency p99", &|r| r.clients.latency.p99_ms),
        millis("latency max", &|r| r.clients.latency.max_ms),
        count("retries", &|r| r.clients.retries),
        count("budget exhausted", &|r| r.clients.budget_exhausted),
    ]
}

/// Per backend (matched by name; the first run's order, then the second's others).
pub fn backends(a: &Report, b: &Report) -> Vec<Row> {
    let mut names: Vec<&str> = a.backends.iter().map(|x| x.name.as_str()).collect();
    for backend in &b.backends {
        if !names.contains(&backend.name.as_str()) {
            names.push(&backend.name);
        }
    }
    let mut rows = Vec::new();
    for name in names {
        let find = |r: &'_ Report| r.backends.iter().find(|x| x.name == name).cloned();
        let (x, y) = (find(a), find(b));
        let figure = |f: fn(&lb_core::simulate::report::BackendReport) -> f64| {
            (x.as_ref().map(f), y.as_ref().map(f))
        };
        let (sa, sb) = figure(|r| 100.0 * r.attempt_share);
        rows.push(Row::new(
            format!("{name} attempt share"),
            Unit::Percent,
            sa,
            sb,
        ));
        let (ra, rb) = figure(|r| 100.0 * r.request_share);
        rows.push(Row::new(
            format!("{name} request share"),
            Unit::Percent,
            ra,
            rb,
        ));
        let (pa, pb) = figure(|r| r.in_flight_peak as f64);
        rows.push(Row::new(
            format!("{name} peak in flight"),
            Unit::Count,
            pa,
            pb,
        ));
        let (fa, fb) = figure(|r| {
            let f = r.failed_attempts;
            (f.status + f.connect_error + f.reset + f.timeout) as f64
        });
        rows.push(Row::new(
            format!("{name} failed attempts"),
            Unit::Count,
            fa,
            fb,
        ));
        let (ta, tb) = figure(|r| r.breaker_trips as f64);
        rows.push(Row::new(
            format!("{name} breaker trips"),
            Unit::Count,
            ta,
            tb,
        ));
        let (ha, hb) = figure(|r| r.health_flips as f64);
        rows.push(Row::new(
            format!("{name} health flips"),
            Unit::Count,
            ha,
            hb,
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_second_minus_first_and_missing_backends_have_none() {
        let row = Row::new("x", Unit::Count, Some(5.0), Some(3.0));
        assert_eq!(row.delta, Some(-2.0));
        let row = Row::new("x", Unit::Count, None, Some(3.0));
        assert_eq!(row.delta, None);
        assert!(Row::new("x", Unit::Count, Some(0.0), None).is_nothing());
        assert!(!Row::new("x", Unit::Count, Some(0.0), Some(1.0)).is_nothing());
    }
}
