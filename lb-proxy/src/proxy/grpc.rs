//! gRPC as the balancer meets it: a call is an HTTP/2 POST with `content-type:
//! application/grpc…`, its status in `grpc-status` / `grpc-message` trailers.
//!
//! The balancer passes calls through untouched; what it adds is for the calls it fails itself.
//! A gRPC client reads an HTTP 503 as a transport error with no useful status, so an answer of
//! the balancer's own (no backend, connect failure, timeout, breaker open, rate limit, queue full,
//! auth) to a gRPC request becomes what a gRPC server would say: HTTP 200, `content-type:
//! application/grpc`, and the status in a trailers-only response ([`from_local`], mapped as
//! gRPC's own HTTP-to-gRPC table does, with the balancer's timeouts as DEADLINE_EXCEEDED and its
//! limits as RESOURCE_EXHAUSTED). The call's `grpc-timeout` bounds the attempt ([`timeout`]).
//!
//! See <https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md> and
//! <https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md>.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use http::{StatusCode, header};

use super::body::ToClient;
use super::reply::{Reply, ReplyHead};

/// `grpc-status` UNKNOWN.
pub(crate) const UNKNOWN: u8 = 2;
/// `grpc-status` DEADLINE_EXCEEDED.
pub(crate) const DEADLINE_EXCEEDED: u8 = 4;
/// `grpc-status` PERMISSION_DENIED.
pub(crate) const PERMISSION_DENIED: u8 = 7;
/// `grpc-status` RESOURCE_EXHAUSTED.
pub(crate) const RESOURCE_EXHAUSTED: u8 = 8;
/// `grpc-status` UNIMPLEMENTED.
pub(crate) const UNIMPLEMENTED: u8 = 12;
/// `grpc-status` INTERNAL.
pub(crate) const INTERNAL: u8 = 13;
/// `grpc-status` UNAVAILABLE.
pub(crate) const UNAVAILABLE: u8 = 14;
/// `grpc-status` UNAUTHENTICATED.
pub(crate) const UNAUTHENTICATED: u8 = 16;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Whether a request is a gRPC call: its content type is `application/grpc` or a subtype
/// (`application/grpc+proto`, `application/grpc-web…` is not gRPC over HTTP/2 and is left
/// alone).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let prefix = b"application/grpc";
    value.len() >= prefix.len()
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(value.get(prefix.len()), None | Some(b'+' | b';'))
}

/// The gRPC status for an answer of the balancer's own with `status`; `limited`: the answer
/// tells the client to come back later (`Retry-After`: a full queue).
pub(crate) fn code_for(status: StatusCode, limited: bool) -> u8 {
    match status.as_u16() {
        400 | 500 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        408 | 504 => DEADLINE_EXCEEDED,
        413 | 429 => RESOURCE_EXHAUSTED,
        503 if limited => RESOURCE_EXHAUSTED,
        502 | 503 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// The balancer's own failure `reply` to a gRPC call, as gRPC answers: HTTP 200, `content-type:
/// application/grpc`, `grpc-status` and `grpc-message` (the reply's text) in a trailers-only
/// response. The reply's other added fields (`Retry-After`, `WWW-Authenticate`) and the request
/// id are kept.
pub(crate) fn from_local(mut reply: Reply) -> Reply {
    let extra = reply.extra();
    let limited = (extra.add.iter()).any(|(name, _)| *name == RETRY_AFTER);
    let code = code_for(reply.status, limited);
    let text = match &reply.body {
        ToClient::Fixed(Some(text)) => text.clone(),
        _ => Bytes::new(),
    };
    let extra = reply.extra();
    extra.set(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    extra.set(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    extra.set(GRPC_MESSAGE, message(&text));
    reply.status = StatusCode::OK;
    reply.head = ReplyHead::Local;
    reply.body = ToClient::Fixed(None);
    reply
}

/// Trailers that end a call with `code` and `message`.
pub(crate) fn trailers(code: u8, message_text: &str) -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(2);
    trailers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    trailers.insert(GRPC_MESSAGE, message(message_text.as_bytes()));
    trailers
}

/// `grpc-message`: the text, trimmed, percent-encoded as gRPC asks (every byte outside
/// printable ASCII, and `%`).
fn message(text: &[u8]) -> HeaderValue {
    let text = text.trim_ascii();
    let mut out = Vec::with_capacity(text.len());
    for &byte in text {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte);
        } else {
            out.push(b'%');
            out.extend_from_slice(format!("{byte:02X}").as_bytes());
        }
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The call's `grpc-timeout` (`1H`, `30S`, `250m`, `100u`, `5n`: at most 8 digits and a unit),
/// `None` when absent or malformed (a malformed one is the backend's to refuse).
pub(crate) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
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

/// Whether the client accepts trailers (`te: trailers`), which gRPC servers require.
pub(crate) fn accepts_trailers(headers: &HeaderMap) -> bool {
    (headers.get_all(header::TE).iter()).any(|value| {
        (value.as_bytes().split(|b| *b == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"trailers"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(is_grpc(&headers(&[("content-type", "application/grpc+proto")])));
        assert!(is_grpc(&headers(&[("content-type", "Application/GRPC")])));
        assert!(!is_grpc(&headers(&[("content-type", "application/grpc-web")])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        assert!(!is_grpc(&headers(&[])));
    }

    #[test]
    fn timeouts_parse_as_grpc_writes_them() {
        let of = |value| timeout(&headers(&[("grpc-timeout", value)]));
        assert_eq!(of("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(of("2M"), Some(Duration::from_secs(120)));
        assert_eq!(of("30S"), Some(Duration::from_secs(30)));
        assert_eq!(of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(of("100u"), Some(Duration::from_micros(100)));
        assert_eq!(of("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "123456789S", "1s", "-1S", "1.5S", "1 S"] {
            assert_eq!(of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn statuses_map_as_grpc_maps_them() {
        let table = [
            (400, false, INTERNAL),
            (401, false, UNAUTHENTICATED),
            (403, false, PERMISSION_DENIED),
            (404, false, UNIMPLEMENTED),
            (408, false, DEADLINE_EXCEEDED),
            (413, false, RESOURCE_EXHAUSTED),
            (429, false, RESOURCE_EXHAUSTED),
            (502, false, UNAVAILABLE),
            (503, false, UNAVAILABLE),
            (503, true, RESOURCE_EXHAUSTED),
            (504, false, DEADLINE_EXCEEDED),
            (418, false, UNKNOWN),
        ];
        for (status, limited, code) in table {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(code_for(status, limited), code, "{status}");
        }
    }

    #[test]
    fn a_local_failure_becomes_a_trailers_only_answer() {
        let local = Reply::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 service unavailable: no backend available\n",
        );
        let reply = from_local(local);
        assert_eq!(reply.status, StatusCode::OK);
        let response = reply.into_response(false);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers.get_all("content-type").iter().count(), 1);
        assert_eq!(headers["grpc-status"], "14");
        assert_eq!(
            headers["grpc-message"],
            "503 service unavailable: no backend available"
        );
        assert!(http_body::Body::is_end_stream(response.body()));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(message("a%b\u{e9}\n".as_bytes()), "a%25b%C3%A9");
    }

    #[test]
    fn te_trailers_is_found_among_tokens() {
        assert!(accepts_trailers(&headers(&[("te", "trailers")])));
        assert!(accepts_trailers(&headers(&[("te", "gzip, Trailers")])));
        assert!(!accepts_trailers(&headers(&[("te", "gzip")])));
        assert!(!accepts_trailers(&headers(&[])));
    }
}
