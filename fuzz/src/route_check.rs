//! The properties `fuzz_targets/route.rs` checks, replayed over `corpus/route` by lb-core's
//! tests: a request's path and host as they come off the network, through the normaliser and
//! the route table.
//!
//! Input: one byte picking the rules, then `host\npath`. The normaliser never panics; what it
//! accepts is in normal form (starts with `/`, no dot segment, no `//` when merging, no encoded
//! slash unless kept) and normalising it again changes nothing; the table's answer for it is
//! the first route, in order, whose every condition holds.

use lb_core::route::{
    EncodedSlashes, HeaderMatch, HeaderSource, HostKey, HostPattern, PathPattern, PathRules,
    RouteMatch, RouteRequest, RouteTable, normalize_path,
};

struct NoHeaders;

impl HeaderSource for NoHeaders {
    fn satisfies(&self, _: &str, want: &HeaderMatch) -> bool {
        *want == HeaderMatch::Absent
    }
}

fn routes() -> Vec<RouteMatch> {
    let host = |h: &str| HostPattern::parse(h).expect("a valid pattern");
    let route = |hosts: Vec<HostPattern>, path: Option<PathPattern>| RouteMatch {
        hosts,
        path,
        methods: Vec::new(),
        headers: Vec::new(),
    };
    vec![
        route(vec![host("admin.example.com")], None),
        route(
            Vec::new(),
            Some(PathPattern::SegmentPrefix("/admin".into())),
        ),
        route(
            vec![host("*.example.com")],
            Some(PathPattern::Prefix("/api/".into())),
        ),
        route(Vec::new(), Some(PathPattern::Exact("/login".into()))),
        route(Vec::new(), Some(PathPattern::Prefix("/p".into()))),
        RouteMatch::default(),
    ]
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let rules = PathRules {
        merge_slashes: selector & 1 == 1,
        encoded_slashes: EncodedSlashes::ALL[usize::from(selector >> 1) % 3],
    };
    let (host, path) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&b""[..], rest),
    };
    let key = HostKey::new(host);
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Ok(normal) = normalize_path(path, &rules) else {
        return;
    };
    if path.starts_with('/') {
        assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
        for segment in normal.split('/') {
            assert!(segment != "." && segment != "..", "{path:?} -> {normal:?}");
        }
        if rules.merge_slashes {
            assert!(!normal.contains("//"), "{path:?} -> {normal:?}");
        }
        if rules.encoded_slashes != EncodedSlashes::Keep {
            let upper = normal.to_ascii_uppercase();
            assert!(!upper.contains("%2F") && !upper.contains("%5C") && !normal.contains('\\'));
        }
        let again = normalize_path(&normal, &rules).expect("a normal path is accepted");
        assert_eq!(again, normal, "normalising {path:?} twice");
    }
    let routes = routes();
    let table = RouteTable::new(&routes);
    let host = key.as_ref().map(HostKey::as_str);
    let request = RouteRequest {
        host,
        path: &normal,
        method: "GET",
        headers: &NoHeaders,
    };
    let plainly = routes.iter().position(|route| {
        let hosts = route.hosts.is_empty()
            || host.is_some_and(|h| route.hosts.iter().any(|p| p.matches(h)));
        hosts && route.path.as_ref().is_none_or(|p| p.matches(&normal))
    });
    assert_eq!(table.lookup(&request), plainly, "{host:?} {normal:?}");
}
