//! What a route changes or answers: request and response headers, the path and `Host` sent
//! upstream, a redirect, or a fixed answer.
//!
//! Header values and redirect locations are templates: plain text with `${client_ip}` (the
//! client's address after the trust rules), `${host}` (the host the request named),
//! `${request_id}` (the request's `X-Request-Id`, or a fresh one), `${path}` (the normalised
//! path) and `${query}` (`?` and the query, or nothing). A template is checked when the file
//! is read: an unknown variable is an error, and no template can yield a byte a header value
//! may not hold.

use serde::{Serialize, Serializer};

use super::node::{Node, Spanned};
use super::walk::{Problem, Section, Walker, int, text};

/// A value filled in per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variable {
    /// `${client_ip}`.
    ClientIp,
    /// `${host}`.
    Host,
    /// `${request_id}`.
    RequestId,
    /// `${path}`.
    Path,
    /// `${query}`.
    Query,
}

impl Variable {
    const ALL: [Variable; 5] = [
        Self::ClientIp,
        Self::Host,
        Self::RequestId,
        Self::Path,
        Self::Query,
    ];

    /// The name between `${` and `}`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientIp => "client_ip",
            Self::Host => "host",
            Self::RequestId => "request_id",
            Self::Path => "path",
            Self::Query => "query",
        }
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text written as it is.
    Text(String),
    /// A value of the request.
    Var(Variable),
}

/// A header value or location with variables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// The pieces, in order.
    pub parts: Vec<Part>,
}

impl Template {
    /// Reads `text`, refusing unknown variables and bytes a header value may not hold.
    ///
    /// # Errors
    ///
    /// The problem, in one sentence.
    pub fn parse(text: &str) -> Result<Template, String> {
        if let Some(bad) = text
            .chars()
            .find(|&c| (c.is_control() && c != '\t') || !c.is_ascii())
        {
            return Err(format!("holds {bad:?}, which a header value may not"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err("a `${` is not closed by `}`".to_owned());
            };
            let name = &after[..end];
            let Some(var) = Variable::ALL.into_iter().find(|v| v.name() == name) else {
                let names: Vec<String> = Variable::ALL
                    .iter()
                    .map(|v| format!("${{{}}}", v.name()))
                    .collect();
                return Err(format!(
                    "unknown variable `${{{name}}}`; known: {}",
                    names.join(", ")
                ));
            };
            parts.push(Part::Var(var));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: Variable) -> bool {
        self.parts.contains(&Part::Var(var))
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Var(var) => write!(f, "${{{}}}", var.name())?,
            }
        }
        Ok(())
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `request_headers` or `response_headers`: fields set (replacing), added (beside any
/// already there) and removed. Removal happens first, then set, then add.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HeaderRules {
    /// Field names (lower-case) to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Fields to set, replacing any value there.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "pairs")]
    pub set: Vec<(String, Template)>,
    /// Fields to add beside any value there.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "pairs")]
    pub add: Vec<(String, Template)>,
}

impl HeaderRules {
    /// Whether the rules change nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Whether any value uses `var`.
    pub fn uses(&self, var: Variable) -> bool {
        self.set.iter().chain(&self.add).any(|(_, t)| t.uses(var))
    }
}

fn pairs<S: Serializer>(pairs: &[(String, Template)], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (name, value) in pairs {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

/// `rewrite`: what is changed in the request sent upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RewriteConfig {
    /// A path starting with `from` has it replaced by `to` (`strip_prefix` is `to: ""`); an
    /// empty result becomes `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace_prefix: Option<PrefixRewrite>,
    /// The `Host` sent upstream instead of the client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A path prefix replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixRewrite {
    /// The prefix looked for.
    pub from: String,
    /// What replaces it.
    pub to: String,
}

/// `redirect`: the route answers with a redirect instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedirectConfig {
    /// The `Location`, a template (`https://example.com${path}${query}`).
    pub location: Template,
    /// 301, 302, 307 or 308.
    pub status: u16,
}

/// `respond`: the route answers itself with a fixed status and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RespondConfig {
    /// The status, 200-599.
    pub status: u16,
    /// The body.
    pub body: String,
    /// Its `Content-Type`.
    pub content_type: String,
}

/// A field name as HTTP allows it (a token), lower-cased.
fn field_name(node: &Node) -> Result<String, Problem> {
    let name = text(node)?;
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
    {
        return Err(Problem::new(format!(
            "\"{name}\" is not a header name: it holds {bad:?}"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

/// Fields the balancer writes itself or that frame the message: a route may not set them.
const RESERVED: [&str; 6] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
];

/// `request_headers` / `response_headers` at `node`.
pub(crate) fn header_rules(w: &mut Walker<'_>, node: Option<&Spanned>, path: &str) -> HeaderRules {
    let s = w.section(node, path, &["remove", "set", "add"]);
    let mut rules = HeaderRules::default();
    match s.get("remove") {
        None => {}
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => {
            for (i, item) in items.iter().enumerate() {
                match field_name(&item.node) {
                    Ok(name) => rules.remove.push(name),
                    Err(problem) => {
                        w.report(item.pos, &format!("{}[{i}]", s.field("remove")), problem)
                    }
                }
            }
        }
        Some(other) => {
            let problem = Problem::new(format!(
                "expected a list of header names, found {}",
                other.node.kind()
            ));
            w.report(other.pos, &s.field("remove"), problem);
        }
    }
    rules.set = template_map(w, &s, "set");
    rules.add = template_map(w, &s, "add");
    rules
}

fn template_map(w: &mut Walker<'_>, s: &Section<'_>, key: &str) -> Vec<(String, Template)> {
    let path = s.field(key);
    let Some(node) = s.get(key) else {
        return Vec::new();
    };
    let Node::Map(entries) = &node.node else {
        let problem = Problem::new(format!(
            "expected a mapping of header names to values, found {}",
            node.node.kind()
        ))
        .hint("like {x-client: \"${client_ip}\"}");
        w.report(node.pos, &path, problem);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, value) in entries {
        let name = match field_name(&name.node) {
            Ok(name) => name,
            Err(problem) => {
                w.report(name.pos, &path, problem);
                continue;
            }
        };
        let field = format!("{path}.{name}");
        if RESERVED.contains(&name.as_str()) {
            let problem = Problem::new(format!(
                "\"{name}\" frames the message; the balancer writes it itself"
            ));
            w.report(value.pos, &field, problem);
            continue;
        }
        let value = match &value.node {
            Node::Str(s) => Template::parse(s).map_err(Problem::new),
            Node::Int(i) => Ok(Template {
                parts: vec![Part::Text(i.to_string())],
            }),
            other => Err(Problem::new(format!(
                "expected a text value, found {}",
                other.kind()
            ))),
        };
        match value {
            Ok(template) => out.push((name, template)),
            Err(problem) => w.report(
                entries
                    .iter()
                    .find(|(k, _)| matches!(&k.node, Node::Str(n) if n.eq_ignore_ascii_case(&name)))
                    .and_then(|(_, v)| v.pos),
                &field,
                problem,
            ),
        }
    }
    out
}

/// `rewrite` at `node`.
pub(crate) fn rewrite(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
) -> Option<RewriteConfig> {
    node?;
    let s = w.section(node, path, &["strip_prefix", "replace_prefix", "host"]);
    let mut rewrite = RewriteConfig::default();
    let strip = w.get(&s, "strip_prefix", None, |n| prefix(n).map(Some));
    if let Some(from) = strip.value {
        rewrite.replace_prefix = Some(PrefixRewrite {
            from,
            to: String::new(),
        });
    }
    if let Some(node) = s.get("replace_prefix") {
        let r = w.section(Some(node), &s.field("replace_prefix"), &["from", "to"]);
        let from = w.get(&r, "from", String::new(), prefix);
        let to = w.get(&r, "to", String::new(), |n| match n {
            Node::Str(t) if t.is_empty() || t.starts_with('/') => Ok(t.clone()),
            Node::Str(t) => Err(Problem::new(format!(
                "\"{t}\" must start with '/' or be empty"
            ))),
            other => Err(Problem::new(format!(
                "expected a path, found {}",
                other.kind()
            ))),
        });
        if from.pos.is_none() {
            w.report(
                node.pos,
                &r.field("from"),
                Problem::new("missing required field"),
            );
        }
        if strip.pos.is_some() {
            let problem = Problem::new("strip_prefix and replace_prefix cannot both be set")
                .hint("strip_prefix: X is replace_prefix: {from: X, to: \"\"}");
            w.report(node.pos, &s.field("replace_prefix"), problem);
        }
        rewrite.replace_prefix = Some(PrefixRewrite {
            from: from.value,
            to: to.value,
        });
    }
    rewrite.host = w
        .get(&s, "host", None, |n| {
            let host = text(n)?;
            match host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
            {
                true => Ok(Some(host)),
                false => Err(Problem::new(format!("\"{host}\" is not a host name"))
                    .hint("like api.internal or 10.0.0.5:8080")),
            }
        })
        .value;
    Some(rewrite)
}

fn prefix(node: &Node) -> Result<String, Problem> {
    let p = text(node)?;
    match p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    {
        true => Ok(p),
        false => Err(Problem::new(format!("\"{p}\" is not a path prefix")).hint("like /api")),
    }
}

/// `redirect` at `node`.
pub(crate) fn redirect(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
) -> Option<RedirectConfig> {
    node?;
    let s = w.section(node, path, &["location", "status"]);
    let location = w.get(&s, "location", Template::default(), |n| {
        Template::parse(&text(n)?).map_err(Problem::new)
    });
    if location.pos.is_none() {
        w.report(
            s.pos,
            &s.field("location"),
            Problem::new("missing required field")
                .hint("like \"https://example.com${path}${query}\""),
        );
    }
    let status = w.get(&s, "status", 302u16, |n| {
        let code: u16 = int(0)(n)?;
        match code {
            301 | 302 | 303 | 307 | 308 => Ok(code),
            _ => Err(Problem::new(format!("{code} is not a redirect status"))
                .hint("use 301, 302, 303, 307 or 308")),
        }
    });
    Some(RedirectConfig {
        location: location.value,
        status: status.value,
    })
}

/// `respond` at `node`.
pub(crate) fn respond(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
) -> Option<RespondConfig> {
    node?;
    let s = w.section(node, path, &["status", "body", "content_type"]);
    let status = w.get(&s, "status", 200u16, |n| {
        let code: u16 = int(200)(n)?;
        match code {
            200..=599 => Ok(code),
            _ => Err(Problem::new(format!("status {code} is outside 200-599"))),
        }
    });
    let body = w.get(&s, "body", String::new(), |n| match n {
        Node::Str(s) => Ok(s.clone()),
        other => Err(Problem::new(format!(
            "expected a text, found {}",
            other.kind()
        ))),
    });
    let content_type = w.get(
        &s,
        "content_type",
        "text/plain; charset=utf-8".to_owned(),
        |n| {
            let t = text(n)?;
            match Template::parse(&t) {
                Ok(template) if template.parts.iter().all(|p| matches!(p, Part::Text(_))) => Ok(t),
                _ => Err(Problem::new(format!("\"{t}\" is not a content type"))),
            }
        },
    );
    Some(RespondConfig {
        status: status.value,
        body: body.value,
        content_type: content_type.value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = Template::parse("client=${client_ip}; id=${request_id}").unwrap();
        assert_eq!(t.parts.len(), 4);
        assert!(t.uses(Variable::RequestId) && !t.uses(Variable::Host));
        assert_eq!(t.to_string(), "client=${client_ip}; id=${request_id}");
        assert!(
            Template::parse("${nope}")
                .unwrap_err()
                .contains("unknown variable")
        );
        assert!(Template::parse("${host").is_err());
        assert!(Template::parse("a\r\nb").is_err());
        assert!(Template::parse("é").is_err());
    }
}
