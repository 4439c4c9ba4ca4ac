//! Value readers the scenario needs beyond the configuration's: numbers in a range, sizes,
//! required fields, lists, and times inside the scenario.

use std::time::Duration;

use crate::config::format_duration;
use crate::config::node::{Node, Spanned};
use crate::config::walk::{Got, Problem, Section, Walker, duration, int};

/// Like [`Walker::get`], but a missing field is an error at the section.
pub(super) fn required<T>(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    name: &str,
    placeholder: T,
    read: impl FnOnce(&Node) -> Result<T, Problem>,
) -> Got<T> {
    if s.get(name).is_none() {
        w.report(
            s.pos,
            &s.field(name),
            Problem::new("missing required field"),
        );
        return Got {
            value: placeholder,
            pos: s.pos,
            ok: false,
        };
    }
    w.get(s, name, placeholder, read)
}

/// A number (whole or not) in `min..=max`.
pub(super) fn number(min: f64, max: f64) -> impl FnOnce(&Node) -> Result<f64, Problem> {
    move |node| {
        let value = match node {
            Node::Int(i) => *i as f64,
            Node::Float(f) if f.is_finite() => *f,
            Node::Float(f) => return Err(Problem::new(format!("expected a number, found {f}"))),
            other => {
                return Err(Problem::new(format!(
                    "expected a number, found {}",
                    other.kind()
                )));
            }
        };
        if value < min {
            Err(Problem::new(format!(
                "must be at least {min}, found {value}"
            )))
        } else if value > max {
            Err(Problem::new(format!(
                "must be at most {max}, found {value}"
            )))
        } else {
            Ok(value)
        }
    }
}

/// A strictly positive number up to `max`.
pub(super) fn positive(max: f64) -> impl FnOnce(&Node) -> Result<f64, Problem> {
    move |node| {
        let value = number(0.0, max)(node)?;
        if value > 0.0 {
            Ok(value)
        } else {
            Err(Problem::new("must be greater than 0"))
        }
    }
}

/// A size in bytes: a whole number, or text like `2KiB`, `1MB`, `512B`.
pub(super) fn size(node: &Node) -> Result<u64, Problem> {
    let text = match node {
        Node::Int(_) => return int::<u64>(0)(node),
        Node::Str(s) => s.trim(),
        other => {
            return Err(Problem::new(format!(
                "expected a size like \"2KiB\", found {}",
                other.kind()
            )));
        }
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => {
            return Err(Problem::new(format!("invalid size \"{text}\""))
                .hint("like 512, 512B, 2KiB, 1MiB or 1MB"));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            Problem::new(format!("invalid size \"{text}\""))
                .hint("like 512, 512B, 2KiB, 1MiB or 1MB")
        })
}

/// The items of a list field; anything else is reported and reads as an empty list.
pub(super) fn list<'n>(
    w: &mut Walker<'_>,
    s: &Section<'n>,
    name: &str,
    like: &str,
) -> &'n [Spanned] {
    match s.get(name) {
        None
        | Some(Spanned {
            node: Node::Null, ..
        }) => &[],
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => items,
        Some(other) => {
            let problem = Problem::new(format!("expected a list, found {}", other.node.kind()))
                .hint(like.to_owned());
            w.report(other.pos, &s.field(name), problem);
            &[]
        }
    }
}

/// A time inside the scenario: `0 <= at < duration` (checked when the duration is known).
pub(super) fn instant(
    w: &mut Walker<'_>,
    s: &Section<'_>,
    end: Option<Duration>,
) -> Option<Duration> {
    let at = required(w, s, "at", Duration::ZERO, duration(false));
    if !at.ok {
        return None;
    }
    if let Some(end) = end
        && at.value >= end
    {
        w.report(
            at.pos,
            &s.field("at"),
            Problem::new(format!(
                "{} is not before the end of the scenario ({})",
                format_duration(at.value),
                format_duration(end)
            )),
        );
        return None;
    }
    Some(at.value)
}
