//! Human durations: what parses, what does not, and format → parse round trips.

use std::time::Duration;

use lb_core::config::{format_duration, parse_duration};
use proptest::prelude::*;

#[test]
fn accepted_spellings() {
    let cases = [
        ("0", 0),
        ("0s", 0),
        ("0ms", 0),
        ("1ms", 1),
        ("250ms", 250),
        ("10s", 10_000),
        ("5m", 300_000),
        ("2h", 7_200_000),
        ("1m30s", 90_000),
        ("1h0m5s", 3_605_000),
        ("1s500ms", 1_500),
        (" 3s ", 3_000),
        ("5124095576030h25m", 18_446_744_073_709_500_000),
    ];
    for (text, millis) in cases {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(millis)),
            "{text:?}"
        );
    }
}

#[test]
fn rejected_spellings() {
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("-5s", "negative"),
        ("10", "missing unit"),
        ("1.5s", "fractions"),
        ("5 s", "missing unit"),
        ("10sec", "unknown unit \"sec\""),
        ("5d", "unknown unit"),
        ("s", "expected a number"),
        ("30s1m", "largest to smallest"),
        ("1s1s", "largest to smallest"),
        ("99999999999999999999s", "too large"),
        ("18446744073709551615h", "too large"),
        ("18446744073709551615ms1ms", "largest to smallest"),
        // The largest whole hour that fits in u64 milliseconds, then one step past it.
        ("5124095576031h", "too large"),
        ("5124095576030h26m", "too large"),
    ];
    for (text, fragment) in cases {
        match parse_duration(text) {
            Ok(d) => panic!("{text:?} parsed as {d:?}"),
            Err(message) => assert!(message.contains(fragment), "{text:?}: {message}"),
        }
    }
}

proptest! {
    #[test]
    fn format_then_parse_round_trips(millis in 0u64..=u64::MAX / 2) {
        let duration = Duration::from_millis(millis);
        let text = format_duration(duration);
        prop_assert_eq!(parse_duration(&text), Ok(duration), "{}", text);
    }

    #[test]
    fn parse_never_panics(text in "\\PC{0,24}") {
        let _ = parse_duration(&text);
    }
}
