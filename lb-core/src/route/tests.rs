//! The table against the plain definition: the first route, in file order, whose every
//! condition matches.

use proptest::prelude::*;

use super::*;

/// Headers as (name, value) pairs.
struct Fields(Vec<(String, String)>);

impl HeaderSource for Fields {
    fn satisfies(&self, name: &str, want: &HeaderMatch) -> bool {
        let mut values = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
        match want {
            HeaderMatch::Equals(text) => values.any(|v| v == text),
            HeaderMatch::Present => values.next().is_some(),
            HeaderMatch::Absent => values.next().is_none(),
        }
    }
}

fn matches_plainly(route: &RouteMatch, request: &RouteRequest<'_, Fields>) -> bool {
    let host = route.hosts.is_empty()
        || request
            .host
            .is_some_and(|h| route.hosts.iter().any(|p| p.matches(h)));
    let path = route.path.as_ref().is_none_or(|p| p.matches(request.path));
    let method = route.methods.is_empty() || route.methods.iter().any(|m| m == request.method);
    let headers = (route.headers.iter()).all(|h| request.headers.satisfies(&h.name, &h.value));
    host && path && method && headers
}

const HOSTS: [&str; 5] = ["a.com", "b.a.com", "c.b.a.com", "x.org", "*.a.com"];
const PATHS: [&str; 8] = [
    "/",
    "/api",
    "/api/",
    "/api/v1",
    "/apix",
    "/static",
    "/s",
    "/api/v1/x",
];

fn host_pattern() -> impl Strategy<Value = HostPattern> {
    prop::sample::select(&HOSTS[..]).prop_map(|h| HostPattern::parse(h).unwrap())
}

fn path_pattern() -> impl Strategy<Value = PathPattern> {
    (0..3u8, prop::sample::select(&PATHS[..])).prop_map(|(kind, p)| match kind {
        0 => PathPattern::Exact(p.to_owned()),
        1 => PathPattern::Prefix(p.to_owned()),
        _ => {
            let p = p.trim_end_matches('/');
            PathPattern::SegmentPrefix(if p.is_empty() { "/" } else { p }.to_owned())
        }
    })
}

fn route() -> impl Strategy<Value = RouteMatch> {
    (
        prop::collection::vec(host_pattern(), 0..3),
        prop::option::of(path_pattern()),
        prop::collection::vec(prop::sample::select(&["GET", "POST"][..]), 0..2),
        prop::option::of(prop::sample::select(&["1", "2"][..])),
    )
        .prop_map(|(hosts, path, methods, header)| RouteMatch {
            hosts,
            path,
            methods: methods.into_iter().map(str::to_owned).collect(),
            headers: header
                .map(|v| HeaderCondition {
                    name: "x-canary".into(),
                    value: HeaderMatch::Equals(v.into()),
                })
                .into_iter()
                .collect(),
        })
}

proptest! {
    #[test]
    fn the_table_finds_the_first_match(
        routes in prop::collection::vec(route(), 0..12),
        host in prop::option::of(prop::sample::select(&HOSTS[..4])),
        path in prop::sample::select(&PATHS[..]),
        method in prop::sample::select(&["GET", "POST", "PUT"][..]),
        canary in prop::option::of(prop::sample::select(&["1", "2"][..])),
    ) {
        let table = RouteTable::new(&routes);
        let fields = Fields(canary.map(|v| ("x-canary".to_owned(), v.to_owned())).into_iter().collect());
        let request = RouteRequest { host, path, method, headers: &fields };
        let want = routes.iter().position(|r| matches_plainly(r, &request));
        prop_assert_eq!(table.lookup(&request), want);
    }

    #[test]
    fn a_covered_route_is_never_chosen(earlier in route(), later in route()) {
        if earlier.covers(&later) {
            let table = RouteTable::new(&[earlier, later]);
            let fields = Fields(vec![("x-canary".into(), "1".into())]);
            for host in [None, Some("a.com"), Some("b.a.com"), Some("c.b.a.com"), Some("x.org")] {
                for path in PATHS {
                    for method in ["GET", "POST"] {
                        let request = RouteRequest { host, path, method, headers: &fields };
                        prop_assert_ne!(table.lookup(&request), Some(1));
                    }
                }
            }
        }
    }

    #[test]
    fn normalised_paths_hold_no_dot_segment(path in "(/(\\.|\\.\\.|%2e|a|b%41|%2f|/)){0,8}") {
        let rules = PathRules { merge_slashes: true, encoded_slashes: EncodedSlashes::Decode };
        let normal = normalize_path(&path, &rules);
        if let Ok(normal) = normal {
            prop_assert!(normal.starts_with('/') || path.is_empty() || !path.starts_with('/'));
            for segment in normal.split('/') {
                prop_assert!(segment != "." && segment != "..", "{} -> {}", path, normal);
            }
            prop_assert!(!normal.contains("//"));
        }
    }
}

#[test]
fn host_keys() {
    let key = |raw: &str| HostKey::new(raw.as_bytes()).map(|k| k.as_str().to_owned());
    assert_eq!(
        key("API.Example.com:8080").as_deref(),
        Some("api.example.com")
    );
    assert_eq!(key("example.com.").as_deref(), Some("example.com"));
    assert_eq!(key("[::1]:8080").as_deref(), Some("[::1]"));
    assert_eq!(key("").as_deref(), None);
    assert_eq!(key(&"a".repeat(300)).as_deref(), None);
}
