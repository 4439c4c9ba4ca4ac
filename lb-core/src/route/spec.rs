//! What a route matches: hosts, a path pattern, methods and header conditions, each a plain
//! value with its own match rule, and [`RouteMatch::covers`], which tells when one route can
//! never be reached because an earlier one takes every request it would.

use std::fmt;

use serde::{Serialize, Serializer};

/// A host pattern: an exact name, or `*.suffix` for any name under a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One host name, lower-case, without a port or a trailing dot.
    Exact(String),
    /// `*.example.com`, held as `.example.com`: any name ending with it and at least one label
    /// before it (`a.example.com`, `a.b.example.com`), never `example.com` itself.
    Suffix(String),
}

impl HostPattern {
    /// Reads `api.example.com` or `*.example.com` (case-insensitive; a trailing dot is
    /// dropped). `None` for an empty name, a `*` anywhere else, or a port.
    pub fn parse(text: &str) -> Option<HostPattern> {
        let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|label| !label.is_empty())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        match lower.strip_prefix("*.") {
            Some(rest) if valid(rest) => Some(HostPattern::Suffix(format!(".{rest}"))),
            Some(_) => None,
            None if valid(&lower) => Some(HostPattern::Exact(lower)),
            None => None,
        }
    }

    /// Whether `host` (already a [`super::HostKey`]'s text) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(&**suffix),
        }
    }

    /// Whether every host this pattern matches is also matched by `self`.
    fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(_), HostPattern::Suffix(_)) => false,
            (HostPattern::Suffix(_), HostPattern::Exact(b)) => self.matches(b),
            (HostPattern::Suffix(a), HostPattern::Suffix(b)) => b.ends_with(&**a),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A path pattern, matched against the normalised path ([`super::normalize_path`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathPattern {
    /// `path: /login`: exactly this path.
    Exact(String),
    /// `path_prefix: /static/`: any path starting with these bytes (`/static` would also take
    /// `/staticfoo`).
    Prefix(String),
    /// `path_segment_prefix: /api`: this path and everything below it (`/api`, `/api/x`), but
    /// not `/apix`. Held without a trailing slash; `/` takes every path.
    SegmentPrefix(String),
}

impl PathPattern {
    /// The configuration key of this kind of pattern.
    pub fn key(&self) -> &'static str {
        match self {
            PathPattern::Exact(_) => "path",
            PathPattern::Prefix(_) => "path_prefix",
            PathPattern::SegmentPrefix(_) => "path_segment_prefix",
        }
    }

    /// The pattern's text.
    pub fn text(&self) -> &str {
        match self {
            PathPattern::Exact(p) | PathPattern::Prefix(p) | PathPattern::SegmentPrefix(p) => p,
        }
    }

    /// Whether a normalised `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => path == p,
            PathPattern::Prefix(p) => path.starts_with(&**p),
            PathPattern::SegmentPrefix(p) => segment_match(p, path),
        }
    }

    /// Whether every path `other` matches is also matched by `self`.
    fn covers(&self, other: &PathPattern) -> bool {
        use PathPattern::*;
        match (self, other) {
            (Exact(a), Exact(b)) => a == b,
            (Exact(_), _) => false,
            (Prefix(a), Exact(b) | Prefix(b) | SegmentPrefix(b)) => b.starts_with(&**a),
            (SegmentPrefix(a), Exact(b) | SegmentPrefix(b)) => segment_match(a, b),
            // `/a/b` as a byte prefix takes `/a/bc`; `/a` takes it only if `/a/` is a prefix.
            (SegmentPrefix(a), Prefix(b)) => {
                a == "/"
                    || b.strip_prefix(&**a)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// `path` is `prefix` or lies below it.
pub(crate) fn segment_match(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What a header must hold for a route to match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderMatch {
    /// Some value of the header equals this, byte for byte.
    Equals(String),
    /// The header is present (`true` in the file).
    Present,
    /// The header is absent (`false` in the file).
    Absent,
}

impl Serialize for HeaderMatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            HeaderMatch::Equals(value) => serializer.serialize_str(value),
            HeaderMatch::Present => serializer.serialize_bool(true),
            HeaderMatch::Absent => serializer.serialize_bool(false),
        }
    }
}

/// One header condition of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderCondition {
    /// The field name, lower-case.
    pub name: String,
    /// What it must hold.
    pub value: HeaderMatch,
}

/// Everything a route matches on; an empty condition matches every request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteMatch {
    /// Any of these hosts; empty for any host.
    pub hosts: Vec<HostPattern>,
    /// The path pattern; `None` for any path.
    pub path: Option<PathPattern>,
    /// Any of these methods (upper-case, as sent); empty for any method.
    pub methods: Vec<String>,
    /// Every one of these conditions.
    pub headers: Vec<HeaderCondition>,
}

impl RouteMatch {
    /// Whether this matches every request (a default route).
    pub fn is_catch_all(&self) -> bool {
        self.hosts.is_empty()
            && self
                .path
                .as_ref()
                .is_none_or(|p| p == &PathPattern::SegmentPrefix("/".into()))
            && self.methods.is_empty()
            && self.headers.is_empty()
    }

    /// Whether every request `later` matches is also matched by `self`, so that a route with
    /// `later` listed after a route with `self` can never be reached (first match wins).
    /// Judged condition by condition; a route covered only by several earlier ones together is
    /// not found.
    pub fn covers(&self, later: &RouteMatch) -> bool {
        let hosts = self.hosts.is_empty()
            || (!later.hosts.is_empty()
                && later
                    .hosts
                    .iter()
                    .all(|h| self.hosts.iter().any(|mine| mine.covers(h))));
        let path = match (&self.path, &later.path) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine.covers(theirs),
            (Some(mine), None) => mine == &PathPattern::SegmentPrefix("/".into()),
        };
        let methods = self.methods.is_empty()
            || (!later.methods.is_empty()
                && later.methods.iter().all(|m| self.methods.contains(m)));
        let headers = self.headers.iter().all(|h| later.headers.contains(h));
        hosts && path && methods && headers
    }
}

impl Serialize for RouteMatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if !self.hosts.is_empty() {
            map.serialize_entry("host", &self.hosts)?;
        }
        if let Some(path) = &self.path {
            map.serialize_entry(path.key(), path.text())?;
        }
        if !self.methods.is_empty() {
            map.serialize_entry("methods", &self.methods)?;
        }
        if !self.headers.is_empty() {
            let headers: std::collections::BTreeMap<&str, &HeaderMatch> = self
                .headers
                .iter()
                .map(|h| (h.name.as_str(), &h.value))
                .collect();
            map.serialize_entry("headers", &headers)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let suffix = HostPattern::parse("*.Example.com.").unwrap();
        assert_eq!(suffix, HostPattern::Suffix(".example.com".into()));
        assert!(suffix.matches("a.example.com"));
        assert!(suffix.matches("a.b.example.com"));
        assert!(!suffix.matches("example.com"));
        assert!(!suffix.matches("badexample.com"));
        assert_eq!(suffix.to_string(), "*.example.com");
        for bad in ["", "*", "a.*.com", "a..b", "host:80", "*.", "a b"] {
            assert_eq!(HostPattern::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn path_patterns() {
        let seg = PathPattern::SegmentPrefix("/api".into());
        assert!(seg.matches("/api") && seg.matches("/api/") && seg.matches("/api/x"));
        assert!(!seg.matches("/apix") && !seg.matches("/ap"));
        let prefix = PathPattern::Prefix("/api".into());
        assert!(prefix.matches("/apix"));
        assert!(PathPattern::SegmentPrefix("/".into()).matches("/anything"));
    }

    fn route(hosts: &[&str], path: Option<PathPattern>, methods: &[&str]) -> RouteMatch {
        RouteMatch {
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            path,
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn coverage() {
        use PathPattern::*;
        let any = RouteMatch::default();
        let api = route(&["api.x"], None, &[]);
        let wild = route(&["*.x"], None, &[]);
        let static_ = route(&[], Some(SegmentPrefix("/static".into())), &[]);
        let deeper = route(&[], Some(Exact("/static/a.css".into())), &["GET"]);
        let prefix = route(&[], Some(Prefix("/static/img".into())), &[]);
        let sibling = route(&[], Some(Prefix("/staticfoo".into())), &[]);
        assert!(any.covers(&api) && any.covers(&deeper));
        assert!(wild.covers(&api) && !api.covers(&wild));
        assert!(static_.covers(&deeper) && static_.covers(&prefix));
        assert!(!static_.covers(&sibling));
        assert!(!deeper.covers(&static_));
        assert!(!api.covers(&any));
        let get_only = route(&[], None, &["GET"]);
        assert!(!get_only.covers(&any) && get_only.covers(&deeper));
        let mut canary = any.clone();
        canary.headers.push(HeaderCondition {
            name: "x-canary".into(),
            value: HeaderMatch::Present,
        });
        assert!(!canary.covers(&any) && any.covers(&canary));
        assert!(any.is_catch_all() && !canary.is_catch_all());
    }
}
