//! The request target (RFC 9112 §3.2) and the `Host` field's syntax (RFC 9110 §7.2, RFC 3986
//! §3.2.2).
//!
//! A balancer forwards in origin form, so it must know which form it received: the path of an
//! origin-form target; the path and the authority of an absolute-form target, whose authority
//! replaces `Host` (RFC 9112 §3.2.2); `*` for a server-wide `OPTIONS`. Authority form belongs to
//! `CONNECT` only.

use std::ops::Range;

/// The form of a request target, with the byte ranges of its parts within the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query`: the authority's range, and the path-and-query's (empty
    /// when the target has no path).
    Absolute {
        /// The authority (host and optional port).
        authority: Range<usize>,
        /// The path and query; empty means `/`.
        path: Range<usize>,
    },
    /// `host:port`, as `CONNECT` uses.
    Authority,
    /// `*`.
    Asterisk,
}

/// Why a request target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Not one of the four forms, or bytes a target may not hold.
    Invalid,
    /// An absolute form whose scheme is not `http` or `https`.
    Scheme,
    /// An absolute form whose authority is missing, holds user information, or is no valid host.
    Authority,
}

/// Classifies a request target. Bytes outside visible ASCII and `#` (a fragment is never sent)
/// are refused in every form.
pub fn classify(target: &[u8]) -> Result<TargetForm, TargetError> {
    if target.is_empty()
        || !target
            .iter()
            .all(|&byte| (0x21..=0x7e).contains(&byte) && byte != b'#')
    {
        return Err(TargetError::Invalid);
    }
    if target[0] == b'/' {
        return Ok(TargetForm::Origin);
    }
    if target == b"*" {
        return Ok(TargetForm::Asterisk);
    }
    if let Some(colon) = target.iter().position(|&byte| byte == b':')
        && target[colon..].starts_with(b"://")
    {
        let scheme = &target[..colon];
        if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
            return Err(TargetError::Scheme);
        }
        let start = colon + 3;
        let end = target[start..]
            .iter()
            .position(|&byte| byte == b'/' || byte == b'?')
            .map_or(target.len(), |at| start + at);
        if !is_valid_host(&target[start..end]) {
            return Err(TargetError::Authority);
        }
        if target.get(end) == Some(&b'?') {
            // `http://a?q`: the path is empty, and origin form needs one.
            return Err(TargetError::Invalid);
        }
        return Ok(TargetForm::Absolute {
            authority: start..end,
            path: end..target.len(),
        });
    }
    if is_valid_host(target) && target.contains(&b':') {
        return Ok(TargetForm::Authority);
    }
    Err(TargetError::Invalid)
}

/// Whether `value` is a valid `Host` field value or URI authority without user information:
/// `uri-host [ ":" port ]`, the host not empty, the port at most five digits up to 65535.
pub fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&byte| byte == b']') else {
            return false;
        };
        let literal = &value[1..close];
        let valid_literal = std::str::from_utf8(literal)
            .ok()
            .is_some_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok());
        if !valid_literal {
            return false;
        }
        match &value[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&value[..=close], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&byte| byte == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    if host.is_empty() {
        return false;
    }
    if host[0] != b'[' && !is_reg_name(host) {
        return false;
    }
    match port {
        None => true,
        // RFC 3986 allows an empty port ("host:"), meaning the scheme's default.
        Some([]) => true,
        Some(port) => {
            port.len() <= 5
                && port.iter().all(u8::is_ascii_digit)
                && port
                    .iter()
                    .fold(0u32, |total, digit| total * 10 + u32::from(digit - b'0'))
                    <= u32::from(u16::MAX)
        }
    }
}

/// `reg-name` (also covers IPv4 addresses): unreserved, sub-delims and percent-encodings.
fn is_reg_name(host: &[u8]) -> bool {
    let mut at = 0;
    while at < host.len() {
        let byte = host[at];
        if byte == b'%' {
            let valid = host
                .get(at + 1..at + 3)
                .is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit));
            if !valid {
                return false;
            }
            at += 3;
            continue;
        }
        if !REG_NAME[usize::from(byte)] {
            return false;
        }
        at += 1;
    }
    true
}

/// The bytes a `reg-name` holds as themselves: unreserved and sub-delims (RFC 3986 §3.2.2).
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let allowed = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=";
    let mut index = 0;
    while index < allowed.len() {
        table[allowed[index] as usize] = true;
        index += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_follow_the_uri_grammar() {
        for valid in [
            "a.test",
            "a.test:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "xn--bcher-kva.example",
            "a_b.test",
            "host:",
            "caf%C3%A9.test",
        ] {
            assert!(is_valid_host(valid.as_bytes()), "{valid}");
        }
        for invalid in [
            "",
            ":80",
            "a b",
            "a b/c@d",
            "user@a.test",
            "a.test/x",
            "a.test:http",
            "a.test:65536",
            "a.test:123456",
            "[::1",
            "[nothex]",
            "[::1]x",
            "a\x01b",
            "a%zz",
            "a%4",
            "a.test:80:80",
            "é.test",
        ] {
            assert!(!is_valid_host(invalid.as_bytes()), "{invalid:?}");
        }
    }

    #[test]
    fn targets_are_classified_by_form() {
        assert_eq!(classify(b"/a?b=c"), Ok(TargetForm::Origin));
        assert_eq!(classify(b"*"), Ok(TargetForm::Asterisk));
        assert_eq!(classify(b"example.com:443"), Ok(TargetForm::Authority));
        assert_eq!(
            classify(b"http://a.test:8080/x?y"),
            Ok(TargetForm::Absolute {
                authority: 7..18,
                path: 18..22
            })
        );
        assert_eq!(
            classify(b"HTTPS://a.test"),
            Ok(TargetForm::Absolute {
                authority: 8..14,
                path: 14..14
            })
        );
        let refused: &[(&[u8], TargetError)] = &[
            (b"", TargetError::Invalid),
            (b"a/b", TargetError::Invalid),
            (b"/a#frag", TargetError::Invalid),
            (b"/caf\xc3\xa9", TargetError::Invalid),
            (b"example.com", TargetError::Invalid),
            (b"ftp://a.test/", TargetError::Scheme),
            (b"http:///x", TargetError::Authority),
            (b"http://user@a.test/", TargetError::Authority),
            (b"http://a b/", TargetError::Invalid),
            (b"http://a.test?q", TargetError::Invalid),
        ];
        for (target, error) in refused {
            assert_eq!(
                classify(target),
                Err(*error),
                "{}",
                String::from_utf8_lossy(target)
            );
        }
    }
}
