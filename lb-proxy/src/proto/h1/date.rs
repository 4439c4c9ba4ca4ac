//! The `Date` field value of the current second, cached per thread: formatting it per response
//! would cost more than the rest of the head.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    /// The second the cached text is for, and the text (an IMF-fixdate is 29 bytes).
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    /// The second the cached field value is for, and the value.
    static DATE_VALUE: RefCell<(u64, HeaderValue)> =
        const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
}

/// The current date as a field value (an HTTP/2 response's, whose fields are a map), cached
/// for the second: a clone shares its bytes.
pub fn date_value() -> HeaderValue {
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    DATE_VALUE.with_borrow_mut(|(cached_second, value)| {
        if *cached_second != second {
            let mut text = Vec::with_capacity(29);
            push_date(&mut text);
            if let Ok(fresh) = HeaderValue::from_maybe_shared(bytes::Bytes::from(text)) {
                *value = fresh;
                *cached_second = second;
            }
        }
        value.clone()
    })
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

    #[test]
    fn the_cached_field_value_is_an_imf_fixdate() {
        let (first, second) = (date_value(), date_value());
        let text = first.to_str().unwrap();
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
        assert!(second == first || httpdate::parse_http_date(second.to_str().unwrap()).is_ok());
    }
}
