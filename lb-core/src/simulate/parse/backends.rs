//! The `defaults` and `backends` sections: behaviours, latency distributions, timed events.

use std::time::Duration;

use super::readers::{instant, list, number, positive, required};
use crate::config::format_duration;
use crate::config::node::{Node, Pos, Spanned};
use crate::config::walk::{Problem, Section, Walker, boolean, duration, int};
use crate::simulate::scenario::{Action, BackendScenario, Behaviour, Event, Latency};

const BACKEND: [&str; 5] = [
    "latency",
    "error_rate",
    "error_status",
    "concurrency",
    "events",
];
const EVENT: [&str; 7] = ["at", "down", "up", "slow", "error_rate", "health", "flap"];

/// The behaviour fields of a section, each defaulting to `base`'s.
pub(super) fn behaviour(w: &mut Walker<'_>, s: &Section<'_>, base: &Behaviour) -> Behaviour {
    let latency = match s.get("latency") {
        Some(node) => latency(w, node, &s.field("latency")).unwrap_or_else(|| base.latency.clone()),
        None => base.latency.clone(),
    };
    Behaviour {
        latency,
        error_rate: w
            .get(s, "error_rate", base.error_rate, number(0.0, 1.0))
            .value,
        error_status: w
            .get(s, "error_status", base.error_status, |node| {
                let status = int::<u16>(500)(node)?;
                if status > 599 {
                    return Err(Problem::new(format!("must be 500-599, found {status}")));
                }
                Ok(status)
            })
            .value,
        concurrency: w
            .get(s, "concurrency", base.concurrency, |node| {
                int::<u32>(1)(node).map(Some)
            })
            .value,
    }
}

/// `latency`: a duration (fixed), or a mapping naming one distribution.
fn latency(w: &mut Walker<'_>, spanned: &Spanned, path: &str) -> Option<Latency> {
    const KINDS: [&str; 4] = ["fixed", "normal", "lognormal", "percentiles"];
    if let Node::Str(_) | Node::Int(_) = spanned.node {
        return match duration(false)(&spanned.node) {
            Ok(value) => Some(Latency::Fixed(value)),
            Err(problem) => {
                w.report(spanned.pos, path, problem);
                None
            }
        };
    }
    if let Node::Null = spanned.node {
        w.report(
            spanned.pos,
            path,
            Problem::new("expected a duration or a distribution, found nothing")
                .hint("like 20ms or {lognormal: {median: 20ms, p99: 200ms}}"),
        );
        return None;
    }
    let s = w.section(Some(spanned), path, &KINDS);
    let given: Vec<&str> = KINDS.into_iter().filter(|k| s.get(k).is_some()).collect();
    let [kind] = given[..] else {
        if matches!(spanned.node, Node::Map(_)) {
            let message = if given.is_empty() {
                "names no distribution".to_owned()
            } else {
                format!("names {} distributions; give one", given.len())
            };
            w.report(
                spanned.pos,
                path,
                Problem::new(message).hint("fixed, normal, lognormal or percentiles"),
            );
        }
        return None;
    };
    let field = s.field(kind);
    let node = s.get(kind)?;
    match kind {
        "fixed" => {
            let fixed = w.get(&s, "fixed", Duration::ZERO, duration(false));
            fixed.ok.then_some(Latency::Fixed(fixed.value))
        }
        "normal" => {
            let d = w.section(Some(node), &field, &["mean", "stddev"]);
            let mean = required(w, &d, "mean", Duration::ZERO, duration(false));
            let stddev = required(w, &d, "stddev", Duration::ZERO, duration(false));
            (mean.ok && stddev.ok).then_some(Latency::Normal {
                mean: mean.value,
                stddev: stddev.value,
            })
        }
        "lognormal" => {
            let d = w.section(Some(node), &field, &["median", "p99"]);
            let median = required(w, &d, "median", Duration::ZERO, duration(true));
            let p99 = required(w, &d, "p99", Duration::ZERO, duration(true));
            if median.ok && p99.ok && p99.value < median.value {
                w.report(
                    p99.pos,
                    &d.field("p99"),
                    Problem::new(format!(
                        "must be at least the median ({})",
                        format_duration(median.value)
                    )),
                );
                return None;
            }
            (median.ok && p99.ok).then_some(Latency::LogNormal {
                median: median.value,
                p99: p99.value,
            })
        }
        _ => percentiles(w, node, &field),
    }
}

/// `percentiles: {min: 5ms, p50: 20ms, p99: 200ms, max: 1s}`.
fn percentiles(w: &mut Walker<'_>, spanned: &Spanned, path: &str) -> Option<Latency> {
    let Node::Map(entries) = &spanned.node else {
        w.report(
            spanned.pos,
            path,
            Problem::new(format!(
                "expected a mapping of percentiles, found {}",
                spanned.node.kind()
            ))
            .hint("like {p50: 20ms, p99: 200ms, max: 1s}"),
        );
        return None;
    };
    let mut points: Vec<(f64, Duration, Pos)> = Vec::new();
    let mut ok = true;
    for (key, value) in entries {
        let name = match &key.node {
            Node::Str(name) => name.as_str(),
            other => {
                w.report(
                    key.pos,
                    path,
                    Problem::new(format!(
                        "expected a percentile name, found {}",
                        other.kind()
                    )),
                );
                ok = false;
                continue;
            }
        };
        let field = format!("{path}.{name}");
        let percentile = match name {
            "min" => Some(0.0),
            "max" => Some(100.0),
            _ => name
                .strip_prefix('p')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|p| p.is_finite() && *p > 0.0 && *p < 100.0),
        };
        let Some(percentile) = percentile else {
            w.report(
                key.pos,
                &field,
                Problem::new(format!("\"{name}\" is not a percentile"))
                    .hint("min, max, or p followed by a number between 0 and 100, like p99.9"),
            );
            ok = false;
            continue;
        };
        if points.iter().any(|(p, _, _)| *p == percentile) {
            w.report(
                key.pos,
                &field,
                Problem::new("duplicate percentile").hint("remove one of the two"),
            );
            ok = false;
            continue;
        }
        match duration(false)(&value.node) {
            Ok(latency) => points.push((percentile, latency, value.pos)),
            Err(problem) => {
                w.report(value.pos, &field, problem);
                ok = false;
            }
        }
    }
    if points.is_empty() && ok {
        w.report(
            spanned.pos,
            path,
            Problem::new("must give at least one percentile"),
        );
        return None;
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in points.windows(2) {
        let ((p_low, low, _), (p_high, high, pos)) = (pair[0], pair[1]);
        if high < low {
            w.report(
                pos,
                path,
                Problem::new(format!(
                    "p{p_high} ({}) is below p{p_low} ({})",
                    format_duration(high),
                    format_duration(low)
                ))
                .hint("a higher percentile cannot be faster"),
            );
            ok = false;
        }
    }
    ok.then(|| Latency::Percentiles(points.into_iter().map(|(p, d, _)| (p, d)).collect()))
}

pub(super) fn backends(
    w: &mut Walker<'_>,
    top: &Section<'_>,
    defaults: &Behaviour,
    end: Option<Duration>,
) -> Vec<BackendScenario> {
    let entries = match top.get("backends").map(|b| &b.node) {
        None | Some(Node::Null) => return Vec::new(),
        Some(Node::Map(entries)) => entries,
        Some(other) => {
            let pos = top.get("backends").and_then(|b| b.pos);
            w.report(
                pos,
                "backends",
                Problem::new(format!(
                    "expected a mapping of backend names, found {}",
                    other.kind()
                ))
                .hint("like `backends: {api-3: {events: [{at: 1m, down: true}]}}`"),
            );
            return Vec::new();
        }
    };
    let mut out: Vec<BackendScenario> = Vec::new();
    for (key, value) in entries {
        let name = match &key.node {
            Node::Str(name) if !name.is_empty() => name.clone(),
            Node::Int(i) => i.to_string(),
            other => {
                w.report(
                    key.pos,
                    "backends",
                    Problem::new(format!("expected a backend name, found {}", other.kind())),
                );
                continue;
            }
        };
        let path = format!("backends.{name}");
        if let Some(first) = out.iter().find(|b| b.name == name) {
            let message = match first.position {
                Some((line, _)) => format!("duplicate backend, first given on line {line}"),
                None => "duplicate backend".to_owned(),
            };
            w.report(
                key.pos,
                &path,
                Problem::new(message).hint("merge the two entries"),
            );
            continue;
        }
        let s = w.section(Some(value), &path, &BACKEND);
        let behaviour = behaviour(w, &s, defaults);
        let mut events = Vec::new();
        for (i, item) in list(
            w,
            &s,
            "events",
            "like [{at: 1m, slow: 10}, {at: 2m, down: true}]",
        )
        .iter()
        .enumerate()
        {
            if let Some(event) = event(w, item, &format!("{path}.events[{i}]"), end) {
                events.push(event);
            }
        }
        // Stable: events at the same time keep their file order.
        events.sort_by_key(|e: &Event| e.at);
        out.push(BackendScenario {
            name,
            position: key.pos,
            behaviour,
            events,
        });
    }
    out
}

fn event(w: &mut Walker<'_>, item: &Spanned, path: &str, end: Option<Duration>) -> Option<Event> {
    if !matches!(item.node, Node::Map(_)) {
        w.report(
            item.pos,
            path,
            Problem::new(format!(
                "expected an event mapping, found {}",
                item.node.kind()
            ))
            .hint("like {at: 1m, slow: 10}"),
        );
        return None;
    }
    let s = w.section(Some(item), path, &EVENT);
    let at = instant(w, &s, end);
    let mut actions = Vec::new();
    let down = w.get(&s, "down", None, |n| boolean(n).map(Some));
    let up = w.get(&s, "up", None, |n| boolean(n).map(Some));
    let contradiction = matches!((down.value, up.value), (Some(d), Some(u)) if d == u);
    match (down.value, up.value) {
        (Some(is_down), Some(is_up)) if is_down == is_up => w.report(
            up.pos,
            &s.field("up"),
            Problem::new("contradicts `down` in the same event").hint("give one of the two"),
        ),
        (Some(is_down), _) => actions.push(if is_down { Action::Down } else { Action::Up }),
        (None, Some(is_up)) => actions.push(if is_up { Action::Up } else { Action::Down }),
        (None, None) => {}
    }
    let slow = w.get(&s, "slow", None, |n| positive(1e6)(n).map(Some));
    actions.extend(slow.value.map(Action::Slow));
    let error_rate = w.get(&s, "error_rate", None, |n| number(0.0, 1.0)(n).map(Some));
    actions.extend(error_rate.value.map(Action::ErrorRate));
    let health = w.get(&s, "health", None, |node| match node {
        Node::Str(word) if word == "pass" => Ok(Some(true)),
        Node::Str(word) if word == "fail" => Ok(Some(false)),
        other => Err(Problem::new(match other {
            Node::Str(word) => format!("unknown health \"{word}\""),
            _ => format!("expected pass or fail, found {}", other.kind()),
        })
        .hint("pass or fail")),
    });
    actions.extend(health.value.map(Action::Health));
    let flap = w.get(&s, "flap", None, |n| duration(false)(n).map(Some));
    actions.extend(flap.value.map(Action::Flap));
    let understood = [
        !contradiction,
        down.ok,
        up.ok,
        slow.ok,
        error_rate.ok,
        health.ok,
        flap.ok,
    ];
    if actions.is_empty() && understood.iter().all(|ok| *ok) {
        w.report(
            item.pos,
            path,
            Problem::new("says when, but not what happens")
                .hint("add one of: down, up, slow, error_rate, health, flap"),
        );
    }
    Some(Event { at: at?, actions }).filter(|e| !e.actions.is_empty())
}
