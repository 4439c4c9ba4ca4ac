//! gRPC's few rules on HTTP/2 fields, as pure functions: whether a request is a gRPC call
//! (`content-type: application/grpc…`), its deadline (`grpc-timeout`), whether the client
//! accepts trailers (`te: trailers`), the status codes, and the trailers that end a call
//! (`grpc-status`, `grpc-message` percent-encoded); and the fields of gRPC's retries (gRFC A6):
//! a backend's `grpc-retry-pushback-ms`, the balancer's `grpc-previous-rpc-attempts`.
//!
//! See <https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md> and
//! <https://github.com/grpc/proposal/blob/master/A6-client-retries.md>.

use std::time::Duration;

use http::header::{self, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

/// `grpc-status` UNKNOWN.
pub const UNKNOWN: u8 = 2;
/// `grpc-status` DEADLINE_EXCEEDED.
pub const DEADLINE_EXCEEDED: u8 = 4;
/// `grpc-status` PERMISSION_DENIED.
pub const PERMISSION_DENIED: u8 = 7;
/// `grpc-status` RESOURCE_EXHAUSTED.
pub const RESOURCE_EXHAUSTED: u8 = 8;
/// `grpc-status` UNIMPLEMENTED.
pub const UNIMPLEMENTED: u8 = 12;
/// `grpc-status` INTERNAL.
pub const INTERNAL: u8 = 13;
/// `grpc-status` UNAVAILABLE.
pub const UNAVAILABLE: u8 = 14;
/// `grpc-status` UNAUTHENTICATED.
pub const UNAUTHENTICATED: u8 = 16;

/// `grpc-status`.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// `grpc-retry-pushback-ms`: how long a server asks the client to wait before a retry.
pub const GRPC_RETRY_PUSHBACK: &[u8] = b"grpc-retry-pushback-ms";
/// `grpc-previous-rpc-attempts`: on a retry, how many attempts of the call came before.
pub const GRPC_PREVIOUS_ATTEMPTS: HeaderName =
    HeaderName::from_static("grpc-previous-rpc-attempts");

/// What a server's `grpc-retry-pushback-ms` asks of a retry (gRFC A6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Retry no sooner than this.
    Wait(Duration),
    /// Do not retry: the value was negative or not a number.
    Stop,
}

/// A `grpc-status` value: the code, in decimal (at most 3 digits); `None` when malformed.
pub fn parse_status(value: &[u8]) -> Option<u8> {
    if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = (value.iter()).fold(0u16, |sum, digit| sum * 10 + u16::from(digit - b'0'));
    u8::try_from(code).ok()
}

/// A `grpc-retry-pushback-ms` value: a non-negative number of milliseconds to wait; anything
/// else (negative, not a number) means "do not retry", as gRFC A6 reads it.
pub fn parse_pushback(value: &[u8]) -> Pushback {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 12 || !value.iter().all(u8::is_ascii_digit) {
        return Pushback::Stop;
    }
    let millis = (value.iter()).fold(0u64, |sum, digit| sum * 10 + u64::from(digit - b'0'));
    Pushback::Wait(Duration::from_millis(millis))
}

/// The `grpc-status` among a response's `fields` (a trailers-only response carries it with its
/// head), and its `grpc-retry-pushback-ms` if it has one; `None` without a well-formed status.
pub fn status_in<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<(u8, Option<Pushback>)> {
    let (mut status, mut pushback) = (None, None);
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(GRPC_STATUS.as_str().as_bytes()) {
            status = Some(parse_status(value)?);
        } else if name.eq_ignore_ascii_case(GRPC_RETRY_PUSHBACK) {
            pushback = Some(parse_pushback(value));
        }
    }
    Some((status?, pushback))
}

/// The `grpc-previous-rpc-attempts` of an attempt after `ours` attempts of the balancer's own,
/// counting those the client declared it made before (its own retries).
pub fn previous_attempts(headers: &HeaderMap, ours: u32) -> HeaderValue {
    let theirs = (headers.get(&GRPC_PREVIOUS_ATTEMPTS))
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u32>().ok())
        .unwrap_or(0);
    HeaderValue::from(theirs.saturating_add(ours))
}

/// Whether a request is a gRPC call: its content type is `application/grpc` or a subtype
/// (`application/grpc+proto`); `application/grpc-web…` is not gRPC over HTTP/2.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let prefix = b"application/grpc";
    value.len() >= prefix.len()
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(value.get(prefix.len()), None | Some(b'+' | b';'))
}

/// Trailers that end a call with `code` and `message`.
pub fn trailers(code: u8, message: &str) -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(2);
    trailers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    trailers.insert(GRPC_MESSAGE, encode_message(message.as_bytes()));
    trailers
}

/// `grpc-message`: the text, trimmed, percent-encoded as gRPC asks (every byte outside
/// printable ASCII, and `%`).
pub fn encode_message(text: &[u8]) -> HeaderValue {
    let text = text.trim_ascii();
    let mut out = Vec::with_capacity(text.len());
    for &byte in text {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte);
        } else {
            out.push(b'%');
            out.push(b"0123456789ABCDEF"[usize::from(byte >> 4)]);
            out.push(b"0123456789ABCDEF"[usize::from(byte & 15)]);
        }
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A `grpc-timeout` value (`1H`, `30S`, `250m`, `100u`, `5n`: 1 to 8 digits and a unit), or
/// `None` when it is malformed.
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount = digits
        .iter()
        .fold(0u64, |sum, digit| sum * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The call's `grpc-timeout`, `None` when absent or malformed (a malformed one is the
/// backend's to refuse).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    parse_timeout(headers.get(GRPC_TIMEOUT)?.as_bytes())
}

/// Whether the client accepts trailers (`te: trailers`), which gRPC servers require.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    (headers.get_all(header::TE).iter()).any(|value| {
        (value.as_bytes().split(|b| *b == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn grpc_is_known_by_its_content_type() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(is_grpc(&headers(&[("content-type", "Application/GRPC")])));
        assert!(!is_grpc(&headers(&[(
            "content-type",
            "application/grpc-web"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        assert!(!is_grpc(&headers(&[])));
    }

    #[test]
    fn timeouts_parse_as_grpc_writes_them() {
        let of = |value: &str| parse_timeout(value.as_bytes());
        assert_eq!(of("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(of("2M"), Some(Duration::from_secs(120)));
        assert_eq!(of("30S"), Some(Duration::from_secs(30)));
        assert_eq!(of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(of("100u"), Some(Duration::from_micros(100)));
        assert_eq!(
            of("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in ["", "S", "123456789S", "1s", "-1S", "1.5S", "1 S", "+1S"] {
            assert_eq!(of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("a%b\u{e9}\n".as_bytes()), "a%25b%C3%A9");
    }

    #[test]
    fn te_trailers_is_found_among_tokens() {
        assert!(accepts_trailers(&headers(&[("te", "trailers")])));
        assert!(accepts_trailers(&headers(&[("te", "gzip, Trailers")])));
        assert!(!accepts_trailers(&headers(&[("te", "gzip")])));
        assert!(!accepts_trailers(&headers(&[])));
    }

    #[test]
    fn statuses_and_pushbacks_parse_as_grpc_writes_them() {
        assert_eq!(parse_status(b"14"), Some(14));
        assert_eq!(parse_status(b"0"), Some(0));
        for bad in [&b""[..], b"x", b"-1", b"1 4", b"1000", b"256"] {
            assert_eq!(parse_status(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_pushback(b"250"),
            Pushback::Wait(Duration::from_millis(250))
        );
        assert_eq!(parse_pushback(b"0"), Pushback::Wait(Duration::ZERO));
        for stop in [&b"-1"[..], b"", b"soon", b"1.5", b"9999999999999"] {
            assert_eq!(parse_pushback(stop), Pushback::Stop, "{stop:?}");
        }
        let fields: [(&[u8], &[u8]); 3] = [
            (b"content-type", b"application/grpc"),
            (b"grpc-status", b"14"),
            (b"grpc-retry-pushback-ms", b"-1"),
        ];
        assert_eq!(status_in(fields), Some((14, Some(Pushback::Stop))));
        assert_eq!(status_in(fields.into_iter().take(2)), Some((14, None)));
        assert_eq!(status_in(fields.into_iter().take(1)), None);
        assert_eq!(status_in([(&b"grpc-status"[..], &b"oops"[..])]), None);
    }

    #[test]
    fn previous_attempts_add_to_the_clients_own() {
        assert_eq!(previous_attempts(&headers(&[]), 1), "1");
        let declared = headers(&[("grpc-previous-rpc-attempts", "2")]);
        assert_eq!(previous_attempts(&declared, 1), "3");
        let bad = headers(&[("grpc-previous-rpc-attempts", "many")]);
        assert_eq!(previous_attempts(&bad, 2), "2");
    }

    proptest! {
        #[test]
        fn any_status_or_pushback_bytes_parse_without_panic(value in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = parse_status(&value);
            let _ = parse_pushback(&value);
        }

        #[test]
        fn any_timeout_bytes_parse_without_panic(value in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = parse_timeout(&value);
        }

        #[test]
        fn written_timeouts_read_back(amount in 0u64..100_000_000, unit in 0usize..6) {
            let units = [b'H', b'M', b'S', b'm', b'u', b'n'];
            let text = format!("{amount}{}", units[unit] as char);
            let parsed = parse_timeout(text.as_bytes()).expect("valid");
            let nanos = [3_600_000_000_000u128, 60_000_000_000, 1_000_000_000, 1_000_000, 1_000, 1];
            prop_assert_eq!(parsed.as_nanos(), u128::from(amount) * nanos[unit]);
        }

        #[test]
        fn any_message_encodes_to_a_valid_field(text in proptest::collection::vec(any::<u8>(), 0..64)) {
            let value = encode_message(&text);
            prop_assert!(value.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b)));
        }
    }
}
