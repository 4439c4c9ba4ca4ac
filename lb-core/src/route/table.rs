//! The compiled route table: built once per configuration, it finds the first route (in file
//! order) that matches a request without testing every route.
//!
//! Routes are filed by host: a map of exact names, a map of `*.suffix` patterns (looked up
//! once per label of the request's host) and a bucket of routes for any host. Inside a
//! bucket, path patterns sit in a radix tree over their bytes; walking the request's path down
//! it meets exactly the patterns that are prefixes of the path, each node listing the routes
//! whose pattern ends there (by kind: exact, prefix, segment prefix). Routes without a path
//! pattern are a plain list. Every list is in file order, so the walk keeps the lowest index
//! that also passes its method and header conditions and skips any route listed after it: the
//! answer is always the first match in file order, never a ranking.
//!
//! A lookup costs one hash of the host (plus one per label when suffix patterns exist), one
//! walk of the path and the conditions of the candidates met on the way.

use std::collections::HashMap;

use super::spec::{HeaderCondition, HeaderMatch, HostPattern, PathPattern, RouteMatch};

/// The request's headers, as the table asks about them.
pub trait HeaderSource {
    /// Whether the field `name` (lower-case) satisfies `want`: any of its values equals the
    /// text, it is present, or it is absent.
    fn satisfies(&self, name: &str, want: &HeaderMatch) -> bool;
}

/// A request as the table sees it.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a, H: ?Sized> {
    /// The host, normalised by [`HostKey`]; `None` when the request named none.
    pub host: Option<&'a str>,
    /// The normalised path ([`super::normalize_path`]).
    pub path: &'a str,
    /// The method, as sent.
    pub method: &'a str,
    /// The headers.
    pub headers: &'a H,
}

/// A request's host as routes compare it: lower-case, without the port and a trailing dot,
/// held on the stack (a name longer than DNS allows gives `None`: no host route matches it).
#[derive(Clone, Copy)]
pub struct HostKey {
    bytes: [u8; 253],
    len: u8,
}

impl HostKey {
    /// The key of a `Host` value such as `API.example.com:8080`.
    pub fn new(raw: &[u8]) -> Option<HostKey> {
        let name = match raw.first() {
            // An IPv6 literal keeps its brackets; no pattern holds one, so it only ever
            // reaches routes for any host.
            Some(b'[') => {
                &raw[..raw
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(raw.len(), |i| i + 1)]
            }
            _ => match raw.iter().rposition(|&b| b == b':') {
                Some(colon) => &raw[..colon],
                None => raw,
            },
        };
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.is_empty() || name.len() > 253 {
            return None;
        }
        let mut key = HostKey {
            bytes: [0; 253],
            len: name.len() as u8,
        };
        for (slot, byte) in key.bytes.iter_mut().zip(name) {
            *slot = byte.to_ascii_lowercase();
        }
        // Not UTF-8 cannot match a pattern (those are ASCII).
        std::str::from_utf8(&key.bytes[..usize::from(key.len)]).ok()?;
        Some(key)
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Method and header conditions of one route, checked after host and path.
#[derive(Debug)]
struct Conditions {
    methods: Box<[Box<str>]>,
    headers: Box<[HeaderCondition]>,
}

impl Conditions {
    fn pass<H: HeaderSource + ?Sized>(&self, request: &RouteRequest<'_, H>) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| **m == *request.method))
            && (self.headers.iter()).all(|h| request.headers.satisfies(&h.name, &h.value))
    }
}

/// One node of a bucket's radix tree.
#[derive(Debug, Default)]
struct Node {
    /// The bytes on the edge from the parent.
    label: Box<[u8]>,
    /// The first byte of each child's label, beside `children`.
    first: Vec<u8>,
    children: Vec<u32>,
    /// Routes whose pattern ends here, by kind, in file order.
    exact: Vec<u32>,
    prefix: Vec<u32>,
    segment: Vec<u32>,
}

/// The routes filed under one host key.
#[derive(Debug)]
struct Bucket {
    any_path: Vec<u32>,
    nodes: Vec<Node>,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            any_path: Vec::new(),
            nodes: vec![Node::default()],
        }
    }
}

impl Bucket {
    fn add(&mut self, route: u32, path: Option<&PathPattern>) {
        let Some(path) = path else {
            self.any_path.push(route);
            return;
        };
        let node = self.insert(path.text().as_bytes());
        let node = &mut self.nodes[node];
        match path {
            PathPattern::Exact(_) => node.exact.push(route),
            PathPattern::Prefix(_) => node.prefix.push(route),
            PathPattern::SegmentPrefix(_) => node.segment.push(route),
        }
    }

    /// The node where `key` ends, splitting an edge or adding one as needed.
    fn insert(&mut self, key: &[u8]) -> usize {
        let mut node = 0;
        let mut rest = key;
        while let Some(&byte) = rest.first() {
            let Some(slot) = self.nodes[node].first.iter().position(|&b| b == byte) else {
                let child = self.nodes.len();
                self.nodes.push(Node {
                    label: rest.into(),
                    ..Node::default()
                });
                self.nodes[node].first.push(byte);
                self.nodes[node].children.push(child as u32);
                return child;
            };
            let child = self.nodes[node].children[slot] as usize;
            let label = &self.nodes[child].label;
            let common = label.iter().zip(rest).take_while(|(a, b)| a == b).count();
            if common < label.len() {
                // Split the edge: a middle node holds the common bytes.
                let middle = self.nodes.len();
                let (head, tail) = label.split_at(common);
                let (head, tail): (Box<[u8]>, Box<[u8]>) = (head.into(), tail.into());
                let tail_first = tail[0];
                self.nodes[child].label = tail;
                self.nodes.push(Node {
                    label: head,
                    first: vec![tail_first],
                    children: vec![child as u32],
                    ..Node::default()
                });
                self.nodes[node].children[slot] = middle as u32;
                node = middle;
            } else {
                node = child;
            }
            rest = &rest[common..];
        }
        node
    }

    /// Lowers `best` to the first route of this bucket (if any comes before it) that matches.
    fn search<H: HeaderSource + ?Sized>(
        &self,
        conditions: &[Conditions],
        request: &RouteRequest<'_, H>,
        best: &mut u32,
    ) {
        let first = |list: &[u32], best: &mut u32| {
            for &route in list {
                if route >= *best {
                    return;
                }
                if conditions[route as usize].pass(request) {
                    *best = route;
                    return;
                }
            }
        };
        first(&self.any_path, best);
        let path = request.path.as_bytes();
        let mut node = 0usize;
        let mut at = 0usize;
        loop {
            let here = &self.nodes[node];
            if at > 0 {
                first(&here.prefix, best);
                let boundary = at == path.len() || path[at] == b'/' || path[at - 1] == b'/';
                if boundary {
                    first(&here.segment, best);
                }
                if at == path.len() {
                    first(&here.exact, best);
                }
            }
            let Some(&byte) = path.get(at) else { return };
            let Some(slot) = here.first.iter().position(|&b| b == byte) else {
                return;
            };
            let child = here.children[slot] as usize;
            let label = &self.nodes[child].label;
            if !path[at..].starts_with(label) {
                return;
            }
            at += label.len();
            node = child;
        }
    }
}

/// The routes of one configuration, compiled for lookup.
#[derive(Debug)]
pub struct RouteTable {
    /// Route 0 matches every request: every lookup is answered without a look (the flat form).
    first_takes_all: bool,
    conditions: Vec<Conditions>,
    exact: HashMap<Box<str>, Bucket>,
    suffixes: HashMap<Box<str>, Bucket>,
    any_host: Bucket,
}

impl RouteTable {
    /// Compiles `routes`; index `i` of the slice is what [`RouteTable::lookup`] returns for it.
    ///
    /// # Example
    ///
    /// ```
    /// use lb_core::route::{HostKey, HostPattern, PathPattern, RouteMatch, RouteRequest, RouteTable, HeaderSource, HeaderMatch};
    ///
    /// struct NoHeaders;
    /// impl HeaderSource for NoHeaders {
    ///     fn satisfies(&self, _: &str, want: &HeaderMatch) -> bool { *want == HeaderMatch::Absent }
    /// }
    /// let api = RouteMatch { hosts: vec![HostPattern::parse("api.localhost").unwrap()], ..Default::default() };
    /// let limited = RouteMatch { path: Some(PathPattern::SegmentPrefix("/limited".into())), ..Default::default() };
    /// let table = RouteTable::new(&[api, limited, RouteMatch::default()]);
    /// let lookup = |host: &str, path| {
    ///     let host = HostKey::new(host.as_bytes());
    ///     let host = host.as_ref().map(HostKey::as_str);
    ///     table.lookup(&RouteRequest { host, path, method: "GET", headers: &NoHeaders })
    /// };
    /// assert_eq!(lookup("API.localhost:8080", "/limited/x"), Some(0));
    /// assert_eq!(lookup("other", "/limited/x"), Some(1));
    /// assert_eq!(lookup("other", "/limitedx"), Some(2));
    /// ```
    pub fn new(routes: &[RouteMatch]) -> RouteTable {
        let mut table = RouteTable {
            first_takes_all: routes.first().is_some_and(RouteMatch::is_catch_all),
            conditions: Vec::with_capacity(routes.len()),
            exact: HashMap::new(),
            suffixes: HashMap::new(),
            any_host: Bucket::default(),
        };
        for (index, route) in routes.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            table.conditions.push(Conditions {
                methods: route.methods.iter().map(|m| m.as_str().into()).collect(),
                headers: route.headers.clone().into_boxed_slice(),
            });
            if route.hosts.is_empty() {
                table.any_host.add(index, route.path.as_ref());
            }
            for host in &route.hosts {
                let (map, key) = match host {
                    HostPattern::Exact(name) => (&mut table.exact, name),
                    HostPattern::Suffix(suffix) => (&mut table.suffixes, suffix),
                };
                let bucket = map.entry(key.as_str().into()).or_default();
                bucket.add(index, route.path.as_ref());
            }
        }
        table
    }

    /// Whether any route names a host: when none does, the caller need not read the host.
    pub fn uses_hosts(&self) -> bool {
        !self.exact.is_empty() || !self.suffixes.is_empty()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.conditions.len()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// The index of the first route in file order that matches `request`, or `None`.
    #[inline]
    pub fn lookup<H: HeaderSource + ?Sized>(&self, request: &RouteRequest<'_, H>) -> Option<usize> {
        if self.first_takes_all {
            return Some(0);
        }
        self.search(request)
    }

    fn search<H: HeaderSource + ?Sized>(&self, request: &RouteRequest<'_, H>) -> Option<usize> {
        let mut best = u32::MAX;
        if let Some(host) = request.host {
            if !self.exact.is_empty()
                && let Some(bucket) = self.exact.get(host)
            {
                bucket.search(&self.conditions, request, &mut best);
            }
            if !self.suffixes.is_empty() {
                for (at, _) in host.match_indices('.') {
                    if at > 0
                        && let Some(bucket) = self.suffixes.get(&host[at..])
                    {
                        bucket.search(&self.conditions, request, &mut best);
                    }
                }
            }
        }
        self.any_host.search(&self.conditions, request, &mut best);
        (best != u32::MAX).then_some(best as usize)
    }
}
