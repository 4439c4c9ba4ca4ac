//! `routes` and `path_normalization`: which pool and policies a request gets.
//!
//! Routes are tried in file order and the first that matches wins. A route sends to a pool,
//! or answers itself (`redirect`, `respond`); it may require an authentication scheme, count
//! against a rate limit, and change headers, the path and `Host`. Without `routes`, one route
//! named `default` takes every request to the first pool.

use serde::Serialize;

use super::auth::AuthConfig;
use super::error::closest;
use super::limits::RateLimitConfig;
use super::node::{Node, Spanned};
use super::pools::{DEFAULT_POOL, PoolConfig, check_name};
use super::transform::{self, HeaderRules, RedirectConfig, RespondConfig, RewriteConfig};
use super::walk::{Problem, Section, Walker, boolean, text};
use crate::route::{
    EncodedSlashes, HeaderCondition, HeaderMatch, HostPattern, PathPattern, PathRules, RouteMatch,
    normalize_path,
};

/// What path is sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardPath {
    /// The normalised path, the one routes matched: the backend sees what was judged.
    #[default]
    Normalized,
    /// The path as the client sent it.
    Original,
}

/// `path_normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PathNormalizationConfig {
    /// `//` becomes `/`.
    pub merge_slashes: bool,
    /// `%2F`, `%5C` and `\`: `reject` (400), `decode` or `keep`.
    #[serde(serialize_with = "serialize_slashes")]
    pub encoded_slashes: EncodedSlashes,
    /// What is sent upstream.
    pub forward: ForwardPath,
}

impl Default for PathNormalizationConfig {
    fn default() -> Self {
        let rules = PathRules::default();
        Self {
            merge_slashes: rules.merge_slashes,
            encoded_slashes: rules.encoded_slashes,
            forward: ForwardPath::default(),
        }
    }
}

impl PathNormalizationConfig {
    /// The rules for [`normalize_path`].
    pub fn rules(&self) -> PathRules {
        PathRules {
            merge_slashes: self.merge_slashes,
            encoded_slashes: self.encoded_slashes,
        }
    }

    /// Whether every field holds its default, for serialization.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn serialize_slashes<S: serde::Serializer>(e: &EncodedSlashes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(e.as_str())
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfig {
    /// Its name: the `route` label of the metrics.
    pub name: String,
    /// What it matches; empty for every request.
    #[serde(rename = "match", skip_serializing_if = "RouteMatch::is_catch_all")]
    pub matcher: RouteMatch,
    /// The pool it sends to; `None` when it answers itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The rate limit it counts against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// The authentication scheme it requires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Changes to the request's headers.
    #[serde(skip_serializing_if = "HeaderRules::is_empty")]
    pub request_headers: HeaderRules,
    /// Changes to the response's headers.
    #[serde(skip_serializing_if = "HeaderRules::is_empty")]
    pub response_headers: HeaderRules,
    /// Path and host sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteConfig>,
    /// Answer with a redirect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectConfig>,
    /// Answer with a fixed response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub respond: Option<RespondConfig>,
}

impl RouteConfig {
    /// The flat form's one route: every request to `pool`, no policy.
    pub fn catch_all(name: &str, pool: &str) -> Self {
        Self {
            name: name.to_owned(),
            matcher: RouteMatch::default(),
            pool: Some(pool.to_owned()),
            rate_limit: None,
            auth: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            rewrite: None,
            redirect: None,
            respond: None,
        }
    }
}

/// `path_normalization`.
pub(crate) fn path_normalization(w: &mut Walker<'_>, top: &Section<'_>) -> PathNormalizationConfig {
    let d = PathNormalizationConfig::default();
    let s = w.section(
        top.get("path_normalization"),
        "path_normalization",
        &["merge_slashes", "encoded_slashes", "forward"],
    );
    let encoded_slashes = w.get(&s, "encoded_slashes", d.encoded_slashes, |n| {
        let name = text(n)?;
        EncodedSlashes::ALL
            .into_iter()
            .find(|e| e.as_str() == name)
            .ok_or_else(|| {
                Problem::new(format!("unknown action \"{name}\""))
                    .hint("use reject, decode or keep")
            })
    });
    let forward =
        w.get(&s, "forward", d.forward, |n| match text(n)?.as_str() {
            "normalized" => Ok(ForwardPath::Normalized),
            "original" => Ok(ForwardPath::Original),
            other => Err(Problem::new(format!("unknown choice \"{other}\""))
                .hint("use normalized or original")),
        });
    PathNormalizationConfig {
        merge_slashes: w.get(&s, "merge_slashes", d.merge_slashes, boolean).value,
        encoded_slashes: encoded_slashes.value,
        forward: forward.value,
    }
}

const FIELDS: [&str; 10] = [
    "name",
    "match",
    "pool",
    "rate_limit",
    "auth",
    "request_headers",
    "response_headers",
    "rewrite",
    "redirect",
    "respond",
];

/// What routes may name.
pub(crate) struct Names<'a> {
    pub(crate) pools: &'a [PoolConfig],
    pub(crate) flat: bool,
    pub(crate) limits: &'a [RateLimitConfig],
    pub(crate) auth: &'a [AuthConfig],
}

/// A reference to a named thing, with a hint naming the closest one.
fn reference(node: &Node, what: &str, known: &[&str], define: &str) -> Result<String, Problem> {
    let name = text(node)?;
    if known.contains(&name.as_str()) {
        return Ok(name);
    }
    let problem = Problem::new(format!("unknown {what} \"{name}\""));
    Err(match closest(&name, known) {
        Some(near) => problem.hint(format!("did you mean \"{near}\"?")),
        None if known.is_empty() => problem.hint(format!("define it under `{define}`")),
        None => problem.hint(format!("known: {}", known.join(", "))),
    })
}

/// `routes`; the catch-all to the first pool when absent.
pub(crate) fn read(
    w: &mut Walker<'_>,
    top: &Section<'_>,
    names: &Names<'_>,
    rules: PathRules,
) -> Vec<RouteConfig> {
    let mut pool_names: Vec<&str> = names.pools.iter().map(|p| p.name.as_str()).collect();
    if names.flat {
        pool_names.insert(0, DEFAULT_POOL);
    }
    let limit_names: Vec<&str> = names.limits.iter().map(|l| l.name.as_str()).collect();
    let auth_names: Vec<&str> = names.auth.iter().map(|a| a.name.as_str()).collect();
    let items = match top.get("routes") {
        None => return Vec::new(),
        Some(Spanned {
            node: Node::Seq(items),
            pos,
        }) => {
            if items.is_empty() {
                w.report(
                    *pos,
                    "routes",
                    Problem::new("must list at least one route")
                        .hint("or leave `routes` out to send everything to the first pool"),
                );
            }
            items
        }
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of routes, found {}",
                other.node.kind()
            ));
            w.report(other.pos, "routes", problem);
            return Vec::new();
        }
    };
    let mut out: Vec<RouteConfig> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("routes[{i}]");
        if !matches!(item.node, Node::Map(_)) {
            w.report(
                item.pos,
                &path,
                Problem::new(format!(
                    "expected a route mapping, found {}",
                    item.node.kind()
                )),
            );
            continue;
        }
        let s = w.section(Some(item), &path, &FIELDS);
        let name = w.get(&s, "name", path.clone(), |n| {
            let name = text(n)?;
            check_name(&name).map(|()| name)
        });
        if let Some(first) = out.iter().position(|r| r.name == name.value) {
            let problem = Problem::new(format!(
                "duplicate route name \"{}\", already used by routes[{first}]",
                name.value
            ))
            .hint("route names label the metrics: give each route its own name");
            w.report(name.pos, &s.field("name"), problem);
        }
        let matcher = route_match(w, s.get("match"), &s.field("match"), rules);
        let pool = w.get(&s, "pool", None, |n| {
            reference(n, "pool", &pool_names, "pools").map(Some)
        });
        let rate_limit = w
            .get(&s, "rate_limit", None, |n| {
                reference(n, "rate limit", &limit_names, "rate_limits").map(Some)
            })
            .value;
        let auth = w
            .get(&s, "auth", None, |n| {
                reference(n, "auth scheme", &auth_names, "auth").map(Some)
            })
            .value;
        let request_headers =
            transform::header_rules(w, s.get("request_headers"), &s.field("request_headers"));
        let response_headers =
            transform::header_rules(w, s.get("response_headers"), &s.field("response_headers"));
        let rewrite = transform::rewrite(w, s.get("rewrite"), &s.field("rewrite"));
        let redirect = transform::redirect(w, s.get("redirect"), &s.field("redirect"));
        let respond = transform::respond(w, s.get("respond"), &s.field("respond"));
        let actions = usize::from(pool.pos.is_some())
            + usize::from(redirect.is_some())
            + usize::from(respond.is_some());
        let mut pool = pool.value;
        if actions > 1 {
            let problem =
                Problem::new("a route does one thing: send to a `pool`, `redirect` or `respond`")
                    .hint("keep one of them");
            w.report(item.pos, &path, problem);
        } else if actions == 0 {
            match pool_names.as_slice() {
                [only] => pool = Some((*only).to_owned()),
                _ => {
                    let problem = Problem::new("missing `pool` (or `redirect`, `respond`)")
                        .hint(format!("send it to one of: {}", pool_names.join(", ")));
                    w.report(item.pos, &path, problem);
                }
            }
        }
        out.push(RouteConfig {
            name: name.value,
            matcher,
            pool,
            rate_limit,
            auth,
            request_headers,
            response_headers,
            rewrite,
            redirect,
            respond,
        });
    }
    out
}

/// `match` of a route.
fn route_match(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    rules: PathRules,
) -> RouteMatch {
    const FIELDS: [&str; 6] = [
        "host",
        "path",
        "path_prefix",
        "path_segment_prefix",
        "methods",
        "headers",
    ];
    let s = w.section(node, path, &FIELDS);
    let mut m = RouteMatch::default();
    if let Some(hosts) = s.get("host") {
        let items: Vec<&Spanned> = match &hosts.node {
            Node::Seq(items) => items.iter().collect(),
            _ => vec![hosts],
        };
        for (i, item) in items.iter().enumerate() {
            let field = match &hosts.node {
                Node::Seq(_) => format!("{}[{i}]", s.field("host")),
                _ => s.field("host"),
            };
            match &item.node {
                Node::Str(text) => match HostPattern::parse(text) {
                    Some(host) if !m.hosts.contains(&host) => m.hosts.push(host),
                    Some(_) => {}
                    None => {
                        let problem = Problem::new(format!(
                            "\"{text}\" is not a host name or *.suffix pattern"
                        ))
                        .hint("like api.example.com or \"*.example.com\" (no port)");
                        w.report(item.pos, &field, problem);
                    }
                },
                other => w.report(
                    item.pos,
                    &field,
                    Problem::new(format!("expected a host name, found {}", other.kind())),
                ),
            }
        }
    }
    let kinds = ["path", "path_prefix", "path_segment_prefix"];
    let written: Vec<&str> = kinds.into_iter().filter(|k| s.get(k).is_some()).collect();
    if written.len() > 1 {
        let problem = Problem::new(format!(
            "{} and {} cannot both be set",
            written[0], written[1]
        ))
        .hint("a route matches one path pattern; list several routes for several");
        w.report(
            s.get(written[1]).and_then(|n| n.pos),
            &s.field(written[1]),
            problem,
        );
    }
    if let Some(kind) = written.first() {
        let got = w.get(&s, kind, String::new(), |n| {
            let p = text(n)?;
            if !p.starts_with('/') {
                return Err(Problem::new(format!("\"{p}\" must start with '/'"))
                    .hint(format!("write \"/{p}\"")));
            }
            if let Some(bad) = p
                .chars()
                .find(|&c| !c.is_ascii_graphic() || c == '?' || c == '#')
            {
                return Err(
                    Problem::new(format!("\"{p}\" holds {bad:?}, which a path may not"))
                        .hint("percent-encode it"),
                );
            }
            // Patterns are compared with normalised paths, so they are normalised the same way.
            let normal = normalize_path(&p, &rules)
                .map_err(|e| Problem::new(format!("\"{p}\": {e}")))?
                .into_owned();
            Ok(normal)
        });
        if got.ok {
            let text = got.value;
            m.path = Some(match *kind {
                "path" => PathPattern::Exact(text),
                "path_prefix" => PathPattern::Prefix(text),
                _ => {
                    let trimmed = text.trim_end_matches('/');
                    PathPattern::SegmentPrefix(if trimmed.is_empty() {
                        "/".to_owned()
                    } else {
                        trimmed.to_owned()
                    })
                }
            });
        }
    }
    match s.get("methods") {
        None => {}
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => {
            for (i, item) in items.iter().enumerate() {
                match &item.node {
                    Node::Str(method)
                        if !method.is_empty()
                            && method.bytes().all(|b| b.is_ascii_alphabetic()) =>
                    {
                        let method = method.to_ascii_uppercase();
                        if !m.methods.contains(&method) {
                            m.methods.push(method);
                        }
                    }
                    other => w.report(
                        item.pos,
                        &format!("{}[{i}]", s.field("methods")),
                        Problem::new(format!(
                            "expected a method like GET, found {}",
                            other.kind()
                        )),
                    ),
                }
            }
        }
        Some(other) => w.report(
            other.pos,
            &s.field("methods"),
            Problem::new("expected a list of methods").hint("like [GET, HEAD]"),
        ),
    }
    match s.get("headers") {
        None => {}
        Some(Spanned {
            node: Node::Map(entries),
            ..
        }) => {
            for (key, value) in entries {
                let Node::Str(name) = &key.node else { continue };
                let field = format!("{}.{name}", s.field("headers"));
                let want = match &value.node {
                    Node::Str(v) => HeaderMatch::Equals(v.clone()),
                    Node::Int(i) => HeaderMatch::Equals(i.to_string()),
                    Node::Bool(true) => HeaderMatch::Present,
                    Node::Bool(false) => HeaderMatch::Absent,
                    other => {
                        let problem = Problem::new(format!(
                            "expected a value, true or false, found {}",
                            other.kind()
                        ));
                        w.report(value.pos, &field, problem);
                        continue;
                    }
                };
                m.headers.push(HeaderCondition {
                    name: name.to_ascii_lowercase(),
                    value: want,
                });
            }
        }
        Some(other) => w.report(
            other.pos,
            &s.field("headers"),
            Problem::new("expected a mapping of header names to values")
                .hint("like {x-canary: \"1\"}"),
        ),
    }
    m
}
