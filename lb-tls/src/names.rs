//! Whether a certificate's names cover a host name, as a client checks it (RFC 6125 §6.4):
//! case-insensitive, and a wildcard `*.example.com` stands for exactly one leftmost label
//! (`a.example.com`, not `example.com` nor `a.b.example.com`).

/// Whether `pattern` (a certificate or configured name, maybe `*.`-prefixed) covers `host`.
pub fn matches(pattern: &str, host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Whether any of `names` covers `host`.
pub fn covers<S: AsRef<str>>(names: &[S], host: &str) -> bool {
    names.iter().any(|name| matches(name.as_ref(), host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard() {
        let cases = [
            ("example.com", "example.com", true),
            ("example.com", "EXAMPLE.com", true),
            ("example.com", "example.com.", true),
            ("example.com", "www.example.com", false),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "WWW.Example.COM", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "www.example.org", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(matches(pattern, host), want, "{pattern} vs {host}");
        }
        assert!(covers(&["a.com", "*.b.com"], "x.b.com"));
        assert!(!covers::<&str>(&[], "x.b.com"));
    }
}
