//! Path normalisation: the one form of a request path that routes are matched against.
//!
//! A route's policy (authentication, a rate limit, a pool of its own) protects a set of paths.
//! If the balancer matched the raw target while the backend normalised it, `/public/../admin`
//! would match a `/public/` route and reach the backend's `/admin`. So the path is first put in
//! its one normal form, and that form is what is matched and, by default, what is forwarded
//! (`path_normalization.forward`), so the balancer and the backend agree on what was asked.
//!
//! The rules, in order (RFC 3986 §6.2.2 and §5.2.4, with the choices Envoy's `normalize_path`,
//! `merge_slashes` and `path_with_escaped_slashes_action` make):
//! 1. Percent-escapes are checked: `%` must be followed by two hex digits, else the path is
//!    refused ([`PathError::BadEscape`]). An escaped NUL (`%00`) is always refused.
//! 2. Escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded (`%41` → `A`,
//!    `%2e` → `.`), and every other escape is written with upper-case hex (`%c3` → `%C3`), so
//!    each path has one spelling. Other characters are never decoded: `%20` stays `%20`.
//! 3. Encoded slashes (`%2F`) and backslashes (`%5C`, and a raw `\`, which some servers read as
//!    `/`) follow [`EncodedSlashes`]: refused (the default), decoded to `/` before the next
//!    steps, or kept as they are (then they are ordinary characters, never separators).
//! 4. With `merge_slashes`, runs of `/` become one.
//! 5. Dot segments are removed: `.` disappears, `..` removes the segment before it, and never
//!    climbs above the root (`/../a` is `/a`). Because step 2 ran first, `%2e%2e` is a dot
//!    segment too.
//! 6. A segment that is a dot segment followed by `;` parameters (`..;x`, `.;`) is refused
//!    ([`PathError::DotSegmentParameter`]): servlet containers strip the parameters and then
//!    climb, so `/public/..;/admin` would reach `/admin` behind a `/public/` route.
//!
//! A trailing slash is kept (`/a/b/` stays `/a/b/`; `/a/.` becomes `/a/`). The query is not
//! part of the path and is never touched. A path already in normal form is returned borrowed,
//! so the common request pays one scan and no allocation.

use std::borrow::Cow;
use std::fmt;

/// What to do with `%2F`, `%5C` and `\` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodedSlashes {
    /// Refuse the request with 400: the safe choice when the backends might decode them.
    #[default]
    Reject,
    /// Decode them to `/` before normalising, as a server that decodes them would.
    Decode,
    /// Keep them as they are: they are then ordinary characters inside a segment.
    Keep,
}

impl EncodedSlashes {
    /// Every action, in documentation order.
    pub const ALL: [EncodedSlashes; 3] = [Self::Reject, Self::Decode, Self::Keep];

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Decode => "decode",
            Self::Keep => "keep",
        }
    }
}

impl fmt::Display for EncodedSlashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configurable parts of normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Whether `//` becomes `/`.
    pub merge_slashes: bool,
    /// What `%2F`, `%5C` and `\` do.
    pub encoded_slashes: EncodedSlashes,
}

impl Default for PathRules {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            encoded_slashes: EncodedSlashes::Reject,
        }
    }
}

/// Why a path cannot be normalised; the request is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    #[error("malformed percent-escape in the path")]
    BadEscape,
    /// `%00`.
    #[error("the path holds an encoded NUL byte")]
    NullByte,
    /// `%2F`, `%5C` or `\` under [`EncodedSlashes::Reject`].
    #[error("the path holds an encoded slash or a backslash")]
    EncodedSlash,
    /// A dot segment with `;` parameters, such as `..;x`.
    #[error("the path holds a dot segment with parameters")]
    DotSegmentParameter,
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` may already be in normal form: no escape, no backslash, no empty segment
/// (when merging) and no segment starting with a dot. One pass, no allocation.
#[inline]
fn looks_normal(path: &[u8], rules: &PathRules) -> bool {
    let mut previous = 0u8;
    for &byte in path {
        match byte {
            b'%' | b'\\' => return false,
            b'/' if previous == b'/' && rules.merge_slashes => return false,
            b'.' if previous == b'/' => return false,
            _ => {}
        }
        previous = byte;
    }
    true
}

/// The normal form of `path` under `rules` (see the module docs), borrowed when it already is.
/// A path that does not start with `/` (`*` of `OPTIONS *`) is returned as it is.
///
/// # Errors
///
/// [`PathError`] for a path the rules refuse; the request should be answered 400.
///
/// # Example
///
/// ```
/// use lb_core::route::{normalize_path, PathRules, PathError};
///
/// let rules = PathRules::default();
/// assert_eq!(normalize_path("/public/../admin", &rules).unwrap(), "/admin");
/// assert_eq!(normalize_path("/a//b/%2e%2E/c", &rules).unwrap(), "/a/c");
/// assert_eq!(normalize_path("/a%2Fb", &rules), Err(PathError::EncodedSlash));
/// ```
#[inline]
pub fn normalize_path<'a>(path: &'a str, rules: &PathRules) -> Result<Cow<'a, str>, PathError> {
    let bytes = path.as_bytes();
    if !bytes.starts_with(b"/") || looks_normal(bytes, rules) {
        return Ok(Cow::Borrowed(path));
    }
    rewrite(path, rules)
}

/// The slow path of [`normalize_path`]: a path that may change.
#[inline(never)]
fn rewrite<'a>(path: &'a str, rules: &PathRules) -> Result<Cow<'a, str>, PathError> {
    let bytes = path.as_bytes();
    let decoded = decode(bytes, rules)?;
    let normal = remove_dot_segments(&decoded, rules)?;
    // Only ASCII went in (escapes stay escaped, decoded bytes are unreserved ASCII), and
    // non-ASCII bytes of `path` were copied whole.
    let normal = String::from_utf8(normal).map_err(|_| PathError::BadEscape)?;
    Ok(if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    })
}

/// Steps 1 to 3: escapes checked, unreserved ones decoded, slashes handled. In the output, a
/// kept `%2F` stays three bytes, so the later steps never see it as a separator.
fn decode(bytes: &[u8], rules: &PathRules) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'\\' {
            match rules.encoded_slashes {
                EncodedSlashes::Reject => return Err(PathError::EncodedSlash),
                EncodedSlashes::Decode => out.push(b'/'),
                EncodedSlashes::Keep => out.push(b'\\'),
            }
            index += 1;
            continue;
        }
        if byte != b'%' {
            out.push(byte);
            index += 1;
            continue;
        }
        let high = bytes.get(index + 1).copied().and_then(hex);
        let low = bytes.get(index + 2).copied().and_then(hex);
        let (Some(high), Some(low)) = (high, low) else {
            return Err(PathError::BadEscape);
        };
        let value = high << 4 | low;
        match value {
            0 => return Err(PathError::NullByte),
            b'/' | b'\\' => match rules.encoded_slashes {
                EncodedSlashes::Reject => return Err(PathError::EncodedSlash),
                EncodedSlashes::Decode => out.push(b'/'),
                EncodedSlashes::Keep => push_escape(&mut out, value),
            },
            _ if is_unreserved(value) => out.push(value),
            _ => push_escape(&mut out, value),
        }
        index += 3;
    }
    Ok(out)
}

fn push_escape(out: &mut Vec<u8>, value: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[
        b'%',
        HEX[usize::from(value >> 4)],
        HEX[usize::from(value & 15)],
    ]);
}

/// Steps 4 to 6 on a decoded path that starts with `/`.
fn remove_dot_segments(path: &[u8], rules: &PathRules) -> Result<Vec<u8>, PathError> {
    // Segments after the leading `/`; the last one empty when the path ends with `/`.
    let mut kept: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = path[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        let at_end = index == last;
        let name = segment.split(|&b| b == b';').next().unwrap_or(&[]);
        if segment.len() > name.len() && (name == b"." || name == b"..") {
            return Err(PathError::DotSegmentParameter);
        }
        match *segment {
            b"." => {
                if at_end {
                    kept.push(b"");
                }
            }
            b".." => {
                kept.pop();
                if at_end {
                    kept.push(b"");
                }
            }
            b"" if rules.merge_slashes && !at_end => {}
            b"" if rules.merge_slashes && kept.last() == Some(&&b""[..]) => {}
            other => kept.push(other),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for segment in &kept {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathError> {
        normalize_path(path, &PathRules::default()).map(Cow::into_owned)
    }

    fn with(path: &str, merge: bool, slashes: EncodedSlashes) -> Result<String, PathError> {
        let rules = PathRules {
            merge_slashes: merge,
            encoded_slashes: slashes,
        };
        normalize_path(path, &rules).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/a",
            "/a/b/",
            "/a.b/c..d",
            "/.well-known/x",
            "/caf%C3%A9",
        ] {
            let result = normalize_path(path, &PathRules::default()).unwrap();
            assert!(matches!(result, Cow::Borrowed(_)), "{path}");
        }
    }

    #[test]
    fn the_attacks_of_the_issue() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/public/../admin", Ok("/admin")),
            ("/public/./../admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2E/admin", Ok("/admin")),
            ("/public/.%2e/admin", Ok("/admin")),
            ("/public%2F..%2Fadmin", Err(PathError::EncodedSlash)),
            ("/public%2f..%2fadmin", Err(PathError::EncodedSlash)),
            ("/public%5C..%5Cadmin", Err(PathError::EncodedSlash)),
            ("/public\\..\\admin", Err(PathError::EncodedSlash)),
            ("//admin", Ok("/admin")),
            ("/public//..//admin", Ok("/admin")),
            ("/public/..;/admin", Err(PathError::DotSegmentParameter)),
            ("/public/.;x/admin", Err(PathError::DotSegmentParameter)),
            ("/../../admin", Ok("/admin")),
            ("/admin%00.html", Err(PathError::NullByte)),
            ("/a%zz", Err(PathError::BadEscape)),
            ("/a%2", Err(PathError::BadEscape)),
            ("/a%", Err(PathError::BadEscape)),
        ];
        for (path, want) in cases {
            assert_eq!(norm(path).as_deref(), want.as_deref(), "{path}");
        }
    }

    #[test]
    fn dot_segments_and_trailing_slashes() {
        let cases = [
            ("/a/b/c/./../../g", "/a/g"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/.", "/"),
            ("/a/b/", "/a/b/"),
            ("/a//", "/a/"),
            ("/a/...", "/a/..."),
            ("/a/.b/..c", "/a/.b/..c"),
            ("/%7Euser/%41b", "/~user/Ab"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/a;b=c/d", "/a;b=c/d"),
        ];
        for (path, want) in cases {
            assert_eq!(norm(path).as_deref(), Ok(want), "{path}");
        }
        assert_eq!(norm("*").as_deref(), Ok("*"));
    }

    #[test]
    fn the_configurable_rules() {
        use EncodedSlashes::*;
        assert_eq!(with("/a//b", false, Reject).as_deref(), Ok("/a//b"));
        assert_eq!(with("/a//../b", false, Reject).as_deref(), Ok("/a/b"));
        assert_eq!(with("/a%2Fb", true, Decode).as_deref(), Ok("/a/b"));
        assert_eq!(
            with("/p%2F..%2Fadmin", true, Decode).as_deref(),
            Ok("/admin")
        );
        assert_eq!(
            with("/p%2f..%2fadmin", true, Keep).as_deref(),
            Ok("/p%2F..%2Fadmin")
        );
        assert_eq!(with("/p\\..\\admin", true, Decode).as_deref(), Ok("/admin"));
        assert_eq!(with("/p\\x", true, Keep).as_deref(), Ok("/p\\x"));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for path in ["/a/./b/../c//d/", "/%7e/%2e%2e/x", "/x/%c3%a9/..", "//..//"] {
            let once = norm(path).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{path}");
        }
    }
}
