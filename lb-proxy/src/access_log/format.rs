//! Writing a [`Record`] as one line: JSON (every field, a fixed schema: a field without a value
//! is `null`) or the combined log format of Apache and nginx. Pure: bytes in, bytes out.
//!
//! No header value is written but the request id: `Authorization`, `Cookie`, `Referer` and
//! `User-Agent` stay out (the combined format's last two fields are `-`), so a log never holds
//! a client's credentials. The target is written as received, query included
//! (docs/security.md says so).

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Version;

use super::record::{AttemptEnd, Record};

/// `HTTP/1.1` and the like.
pub(crate) fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// One JSON line (with its `\n`).
pub(crate) fn json(record: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    rfc3339(record.time, out);
    out.extend_from_slice(b"\",\"client\":\"");
    let _ = write!(out, "{}", record.client);
    out.extend_from_slice(b"\",\"method\":");
    match &record.request {
        Some((method, uri)) => {
            string(method.as_str(), out);
            out.extend_from_slice(b",\"target\":");
            string(&target(uri), out);
        }
        None => out.extend_from_slice(b"null,\"target\":null"),
    }
    let _ = write!(
        out,
        ",\"protocol\":\"{}\",\"status\":{},\"bytes_in\":{},\"bytes_out\":{}",
        protocol(record.version),
        record.status,
        record.bytes_in,
        record.bytes_out
    );
    out.extend_from_slice(match record.body_failed {
        true => b",\"body_failed\":true,\"duration_ms\":",
        false => b",\"body_failed\":false,\"duration_ms\":",
    });
    millis(record.duration, out);
    out.extend_from_slice(b",\"route\":");
    optional(record.route.as_deref().map(String::as_str), out);
    out.extend_from_slice(b",\"pool\":");
    optional(record.pool.as_deref().map(String::as_str), out);
    out.extend_from_slice(b",\"backend\":");
    optional(record.backend().map(|name| name.as_str()), out);
    out.extend_from_slice(b",\"attempts\":[");
    for (index, attempt) in record.attempts.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"backend\":");
        string(&attempt.backend, out);
        match attempt.end {
            AttemptEnd::Status(status) => {
                let _ = write!(out, ",\"status\":{status},\"failure\":null");
            }
            AttemptEnd::Failure(kind) => {
                let _ = write!(out, ",\"status\":null,\"failure\":\"{kind}\"");
            }
        }
        out.extend_from_slice(b",\"duration_ms\":");
        millis(attempt.duration, out);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"retry_reasons\":[");
    let reasons = record.attempts.iter().filter_map(|attempt| attempt.retried);
    for (index, reason) in reasons.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(reason, out);
    }
    out.extend_from_slice(b"],\"request_id\":");
    optional(
        record.request_id.as_ref().and_then(|id| id.to_str().ok()),
        out,
    );
    out.extend_from_slice(b",\"tls_version\":");
    optional(record.tls_version, out);
    out.extend_from_slice(b",\"sni\":");
    optional(record.sni.as_deref(), out);
    out.extend_from_slice(b",\"trace_id\":");
    match &record.trace_id {
        Some(id) => {
            out.push(b'"');
            hex(id, out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}\n");
}

/// One line of the combined log format (with its `\n`):
/// `client - - [06/Dec/2026:23:32:19 +0000] "GET /a HTTP/1.1" 200 123 "-" "-"`.
pub(crate) fn combined(record: &Record, out: &mut Vec<u8>) {
    let _ = write!(out, "{} - - [", record.client);
    let (date, clock) = civil(record.time);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = date;
    let (hour, minute, second, _) = clock;
    let month = MONTHS[usize::from(month - 1)];
    let _ = write!(
        out,
        "{day:02}/{month}/{year}:{hour:02}:{minute:02}:{second:02} +0000] \""
    );
    match &record.request {
        Some((method, uri)) => {
            escaped(method.as_str(), out);
            out.push(b' ');
            escaped(&target(uri), out);
            let _ = write!(out, " {}\" {} ", protocol(record.version), record.status);
        }
        // A refused head: its request line is not repeated.
        None => {
            let _ = write!(out, "-\" {} ", record.status);
        }
    }
    match record.bytes_out {
        0 => out.push(b'-'),
        bytes => {
            let _ = write!(out, "{bytes}");
        }
    }
    out.extend_from_slice(b" \"-\" \"-\"\n");
}

/// The target as received: the origin form's path and query, or the whole URI for the
/// absolute and authority forms (rare; `Uri` keeps no text of those).
fn target(uri: &http::Uri) -> std::borrow::Cow<'_, str> {
    match (uri.scheme(), uri.path_and_query()) {
        (None, Some(target)) => std::borrow::Cow::Borrowed(target.as_str()),
        _ => std::borrow::Cow::Owned(uri.to_string()),
    }
}

/// `s` as a JSON string, quoted and escaped.
pub(crate) fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &byte in s.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\u{byte:04x}");
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

fn optional(value: Option<&str>, out: &mut Vec<u8>) {
    match value {
        Some(value) => string(value, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// Text for the combined format: `"`, `\`, controls and bytes past ASCII as `\xHH`, as nginx
/// writes them.
fn escaped(s: &str, out: &mut Vec<u8>) {
    for &byte in s.as_bytes() {
        match byte {
            b'"' | b'\\' | 0..=0x1f | 0x7f.. => {
                let _ = write!(out, "\\x{byte:02X}");
            }
            _ => out.push(byte),
        }
    }
}

/// Milliseconds with three decimals (microsecond resolution).
fn millis(duration: Duration, out: &mut Vec<u8>) {
    let micros = duration.as_micros();
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 15)]);
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-12-06T23:32:19.123Z`.
pub(crate) fn rfc3339(time: SystemTime, out: &mut Vec<u8>) {
    let ((year, month, day), (hour, minute, second, millis)) = civil(time);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z"
    );
}

/// A UTC date (year, month, day) and time of day (hour, minute, second, millisecond).
type Civil = ((i64, u8, u8), (u8, u8, u8, u16));

/// The UTC calendar date and time of `time`. Days to a date by Howard Hinnant's
/// `civil_from_days`.
fn civil(time: SystemTime) -> Civil {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let clock = (
        (rest / 3600) as u8,
        (rest / 60 % 60) as u8,
        (rest % 60) as u8,
        since.subsec_millis() as u16,
    );
    ((year, month, day), clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_instants() {
        let at = |secs: u64, millis: u64| {
            let mut out = Vec::new();
            rfc3339(
                UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis),
                &mut out,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_796_600_000, 999), "2026-12-06T23:33:20.999Z");
        assert_eq!(at(4_102_444_799, 0), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn strings_are_escaped_for_json_and_combined() {
        let mut out = Vec::new();
        string("a\"b\\c\n\u{1}é", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\u000a\\u0001é\"".as_bytes());
        let parsed: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\n\u{1}é");
        let mut out = Vec::new();
        escaped("/a\"b\\\x7f", &mut out);
        assert_eq!(out, b"/a\\x22b\\x5C\\x7F");
    }

    #[test]
    fn durations_are_milliseconds_with_microseconds() {
        let mut out = Vec::new();
        millis(Duration::from_micros(1_234_567), &mut out);
        assert_eq!(out, b"1234.567");
    }
}
