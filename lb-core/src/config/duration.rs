//! Human durations: `250ms`, `10s`, `5m`, `1h`, and combinations like `1m30s`.
//!
//! Units go from largest to smallest, each at most once, so every duration has one obvious
//! spelling and [`format_duration`] output always parses back to the same value. Precision
//! is the millisecond: nothing in the balancer needs finer timers.

use std::time::Duration;

use serde::Serializer;

/// The units, largest first, with their size in milliseconds.
const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration such as `250ms`, `10s`, `5m`, `1h` or `1m30s`.
///
/// A bare `0` is accepted; any other number needs a unit.
///
/// # Errors
///
/// A plain sentence when the text is empty, negative, has a number without a unit, an
/// unknown or repeated unit, units out of order, or overflows.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text.starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen; the next one must be strictly smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("expected a number at \"{rest}\""));
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() {
            if after.starts_with('.') {
                return Err(
                    "fractions are not supported; use a smaller unit (1500ms, not 1.5s)".into(),
                );
            }
            return Err(format!("missing unit after {number}"));
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit \"{unit}\""));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err("units must go from largest to smallest, each once (like 1m30s)".into());
        }
        last_unit = Some(index);
        let overflow = || "duration is too large".to_string();
        let value: u64 = number.parse().map_err(|_| overflow())?;
        let millis = value.checked_mul(UNITS[index].1).ok_or_else(overflow)?;
        total = total.checked_add(millis).ok_or_else(overflow)?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration the way [`parse_duration`] reads it: `0s`, `250ms`, `10s`, `1m30s`, `2h`.
///
/// Sub-millisecond parts are dropped.
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (name, size) in UNITS {
        let size = u128::from(size);
        let count = millis / size;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(name);
            millis %= size;
        }
    }
    out
}

/// `serialize_with` helper writing a duration as its human string.
pub(crate) fn serialize<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_largest_units() {
        let cases = [
            (0, "0s"),
            (1, "1ms"),
            (250, "250ms"),
            (1_000, "1s"),
            (1_500, "1s500ms"),
            (60_000, "1m"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (3_661_001, "1h1m1s1ms"),
        ];
        for (millis, want) in cases {
            assert_eq!(format_duration(Duration::from_millis(millis)), want);
        }
        assert_eq!(format_duration(Duration::from_micros(1_500)), "1ms");
    }
}
