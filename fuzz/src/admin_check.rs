//! The admin client's reading of any answer body: decoding as each answer the API gives
//! (backend list, one backend, reload outcome, error body) never panics, a decoded backend says
//! what the JSON says, and any text made printable for a terminal is one line of bounded length
//! with no control character, unchanged when it already was.

use lb_observe::admin::{printable, types};
use serde_json::Value;

/// The most characters `printable` keeps, plus its `…`.
const MAX_PRINTABLE: usize = 301;

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    if let Some(message) = types::error_message(data) {
        one_safe_line(&message);
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        if let Ok(backend) = types::backend(value.clone()) {
            assert_eq!(value["name"].as_str(), Some(backend.name.as_str()));
            assert_eq!(value["in_flight"].as_u64(), Some(backend.in_flight));
            assert_eq!(value["drained"].as_bool(), Some(backend.drained));
            one_safe_line(&backend.name);
            one_safe_line(backend.breaker.label());
        }
        if let Ok(list) = types::backends(value.clone()) {
            let sent = value["backends"].as_array().map_or(0, Vec::len);
            assert_eq!(list.len(), sent);
        }
        if let Ok(outcome) = types::reload(value) {
            outcome.changes.iter().for_each(|c| one_safe_line(c));
        }
    }
    let text = String::from_utf8_lossy(data);
    one_safe_line(&text);
    let plain =
        text.chars().count() < MAX_PRINTABLE && !text.chars().any(|c| c.is_control() || is_bidi(c));
    if plain {
        assert_eq!(printable(&text), text, "plain text is left alone");
    }
}

fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `printable(text)` is one line a terminal shows as text.
fn one_safe_line(text: &str) {
    let shown = printable(text);
    assert!(
        shown.chars().count() <= MAX_PRINTABLE,
        "{shown:?} is too long"
    );
    assert!(
        !shown.chars().any(|c| c.is_control() || is_bidi(c)),
        "{shown:?} has a control character"
    );
}
