//! The `Date` field value of the current second, cached per thread: formatting it per response
//! would cost more than the rest of the head.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The second the cached text is for, and the text (an IMF-fixdate is 29 bytes).
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current date as an IMF-fixdate (RFC 9110 §5.6.7).
pub fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    DATE.with_borrow_mut(|(cached_second, text)| {
        if *cached_second != second {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() != text.len() {
                // Years past 9999 format longer; not worth a cache.
                out.extend_from_slice(formatted.as_bytes());
                return;
            }
            text.copy_from_slice(formatted.as_bytes());
            *cached_second = second;
        }
        out.extend_from_slice(text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_date_is_an_imf_fixdate() {
        let mut out = Vec::new();
        push_date(&mut out);
        push_date(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.len(), 58, "{text}");
        assert!(httpdate::parse_http_date(&text[..29]).is_ok(), "{text}");
        assert!(httpdate::parse_http_date(&text[29..]).is_ok(), "{text}");
    }
}
