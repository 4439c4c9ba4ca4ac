//! Tools for stage two: walking the positioned tree, reading scalars, collecting problems.
//!
//! Every reader returns a value no matter what (the default when the file's value is bad) and
//! records the problem, so validation continues and reports everything in one pass.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::duration::parse_duration;
use super::error::{ConfigError, closest};
use super::node::{Node, Pos, Spanned};
use crate::health::StatusRange;
use crate::net::{Cidr, CidrError};
use crate::retry::RetryCondition;

/// What is wrong with one value, before it is tied to a file and field.
pub(crate) struct Problem {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Problem {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub(crate) fn expected(what: &str, node: &Node) -> Self {
        Self::new(format!("expected {what}, found {}", node.kind()))
    }
}

/// A value read from a section: `pos` is `None` when the field was absent and defaulted,
/// `ok` is false when the file's value was bad (cross-field checks then stay quiet).
pub(crate) struct Got<T> {
    pub(crate) value: T,
    pub(crate) pos: Pos,
    pub(crate) ok: bool,
}

/// The fields of one mapping, checked against the names it may hold.
pub(crate) struct Section<'n> {
    pub(crate) path: String,
    pub(crate) pos: Pos,
    fields: Vec<(String, &'n Spanned)>,
}

impl<'n> Section<'n> {
    pub(crate) fn get(&self, name: &str) -> Option<&'n Spanned> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
    pub(crate) fn field(&self, name: &str) -> String {
        join(&self.path, name)
    }
}

pub(crate) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Collects problems while the validator walks the tree.
pub(crate) struct Walker<'a> {
    file: &'a str,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(file: &'a str) -> Self {
        Self {
            file,
            errors: Vec::new(),
        }
    }

    /// The file's name as given (`origin`), which relative paths are taken from.
    pub(crate) fn file(&self) -> &str {
        self.file
    }

    pub(crate) fn report(&mut self, pos: Pos, field: &str, problem: Problem) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: pos.map(|(line, _)| line),
            column: pos.map(|(_, column)| column),
            field: field.to_owned(),
            message: problem.message,
            hint: problem.hint,
        });
    }

    /// Opens `node` as a mapping with the given field names, reporting unknown, duplicate and
    /// non-text keys. A missing or empty (`null`) section reads as an empty one.
    pub(crate) fn section<'n>(
        &mut self,
        node: Option<&'n Spanned>,
        path: &str,
        known: &[&str],
    ) -> Section<'n> {
        let mut section = Section {
            path: path.to_owned(),
            pos: node.and_then(|n| n.pos),
            fields: Vec::new(),
        };
        let entries = match node.map(|n| &n.node) {
            None | Some(Node::Null) => return section,
            Some(Node::Map(entries)) => entries,
            Some(other) => {
                self.report(
                    section.pos,
                    path,
                    Problem::expected("a mapping of fields", other),
                );
                return section;
            }
        };
        for (key, value) in entries {
            let name = match &key.node {
                Node::Str(s) => s.clone(),
                Node::Int(i) => i.to_string(),
                Node::Bool(b) => b.to_string(),
                other => {
                    self.report(key.pos, path, Problem::expected("a field name", other));
                    continue;
                }
            };
            let field = join(path, &name);
            if !known.contains(&name.as_str()) {
                let hint = match closest(&name, known) {
                    Some(near) => format!("did you mean \"{near}\"?"),
                    None => format!("expected one of: {}", known.join(", ")),
                };
                self.report(
                    key.pos,
                    &field,
                    Problem::new(format!("unknown field \"{name}\"")).hint(hint),
                );
            } else if let Some((_, first)) = section.fields.iter().find(|(k, _)| *k == name) {
                let message = match first.pos {
                    Some((line, _)) => format!("duplicate field, first set on line {line}"),
                    None => "duplicate field".to_owned(),
                };
                self.report(
                    key.pos,
                    &field,
                    Problem::new(message).hint("remove one of the two"),
                );
            } else {
                section.fields.push((name, value));
            }
        }
        section
    }

    /// Reads field `name` of `section` with `read`, falling back to `default` when absent or bad.
    pub(crate) fn get<T>(
        &mut self,
        section: &Section<'_>,
        name: &str,
        default: T,
        read: impl FnOnce(&Node) -> Result<T, Problem>,
    ) -> Got<T> {
        let Some(spanned) = section.get(name) else {
            return Got {
                value: default,
                pos: None,
                ok: true,
            };
        };
        match read(&spanned.node) {
            Ok(value) => Got {
                value,
                pos: spanned.pos,
                ok: true,
            },
            Err(problem) => {
                self.report(spanned.pos, &section.field(name), problem);
                Got {
                    value: default,
                    pos: spanned.pos,
                    ok: false,
                }
            }
        }
    }
}

/// A whole number of type `T`, at least `min`.
pub(crate) fn int<T: TryFrom<i128>>(min: i128) -> impl FnOnce(&Node) -> Result<T, Problem> {
    move |node| match node {
        Node::Int(i) if *i < min => Err(Problem::new(format!("must be at least {min}, found {i}"))),
        Node::Int(i) => T::try_from(*i).map_err(|_| Problem::new(format!("{i} is too large"))),
        Node::Float(f) => Err(Problem::new(format!("expected a whole number, found {f}"))),
        other => Err(Problem::expected("a whole number", other)),
    }
}

pub(crate) fn boolean(node: &Node) -> Result<bool, Problem> {
    match node {
        Node::Bool(b) => Ok(*b),
        other => Err(Problem::expected("true or false", other)),
    }
}

pub(crate) fn text(node: &Node) -> Result<String, Problem> {
    match node {
        Node::Str(s) if s.is_empty() => Err(Problem::new("must not be empty")),
        Node::Str(s) => Ok(s.clone()),
        other => Err(Problem::expected("a string", other)),
    }
}

/// A duration string; `nonzero` for the ones where zero would make no sense.
pub(crate) fn duration(nonzero: bool) -> impl FnOnce(&Node) -> Result<Duration, Problem> {
    move |node| {
        let value = match node {
            Node::Int(0) => Duration::ZERO,
            Node::Int(n) => {
                return Err(Problem::new(format!("a duration needs a unit, found {n}"))
                    .hint(format!("write \"{n}s\" or \"{n}ms\"")));
            }
            Node::Str(s) => parse_duration(s).map_err(|message| {
                let problem = Problem::new(format!("invalid duration \"{s}\": {message}"));
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    problem.hint(format!("write \"{s}s\" or \"{s}ms\""))
                } else {
                    problem.hint("durations look like 250ms, 10s, 5m, 1h or 1m30s")
                }
            })?,
            other => return Err(Problem::expected("a duration like \"10s\"", other)),
        };
        if nonzero && value.is_zero() {
            return Err(Problem::new("must be greater than 0"));
        }
        Ok(value)
    }
}

pub(crate) fn address(node: &Node) -> Result<SocketAddr, Problem> {
    let text = match node {
        Node::Str(s) => s.trim(),
        Node::Int(n) => {
            return Err(Problem::expected("an ip:port address", node)
                .hint(format!("write \"0.0.0.0:{n}\"")));
        }
        other => return Err(Problem::expected("an ip:port address", other)),
    };
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let problem = Problem::new(format!("\"{text}\" is not an ip:port address"));
    Err(if text.parse::<IpAddr>().is_ok() {
        problem.hint(format!("add a port, like {text}:8080"))
    } else if text.parse::<u16>().is_ok() {
        problem.hint(format!("add an IP, like 0.0.0.0:{text}"))
    } else if text
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
    {
        problem.hint("host names are not resolved; use an IP address, like 127.0.0.1:8080")
    } else {
        problem.hint("like 127.0.0.1:8080 or [::1]:8080")
    })
}

/// A CIDR range like `10.0.0.0/8`, or a single address.
pub(crate) fn cidr(node: &Node) -> Result<Cidr, Problem> {
    let text = match node {
        Node::Str(s) => s,
        other => return Err(Problem::expected("a CIDR range like \"10.0.0.0/8\"", other)),
    };
    text.parse::<Cidr>().map_err(|error| {
        let problem = Problem::new(format!("invalid range \"{text}\": {error}"));
        match error {
            CidrError::HostBits { network, .. } => problem.hint(format!("write \"{network}\"")),
            _ => problem.hint("like 10.0.0.0/8, 192.168.1.7 or \"::1/128\""),
        }
    })
}

/// A URL path: it starts with `/` and holds only what a request target may (visible ASCII, no
/// `#`), so that the data plane can always send it.
pub(crate) fn url_path(node: &Node) -> Result<String, Problem> {
    let path = text(node)?;
    if !path.starts_with('/') {
        return Err(Problem::new(format!("\"{path}\" must start with '/'"))
            .hint(format!("write \"/{path}\"")));
    }
    // What a request target may hold (RFC 9112 §3.2): visible ASCII, no fragment.
    if let Some(bad) = path.chars().find(|&c| !c.is_ascii_graphic() || c == '#') {
        return Err(Problem::new(format!(
            "\"{path}\" holds {bad:?}, which a request path may not"
        ))
        .hint("percent-encode it, like %20 for a space"));
    }
    Ok(path)
}

/// `200`, `"200"` or `"200-399"`, within 100-599 and in order.
pub(crate) fn status_range(node: &Node) -> Result<StatusRange, Problem> {
    let (min, max) = match node {
        Node::Int(code) => (*code, *code),
        Node::Str(s) => {
            let code = |t: &str| t.trim().parse::<i128>().ok();
            let parsed = match s.split_once('-') {
                Some((a, b)) => code(a).zip(code(b)),
                None => code(s).map(|c| (c, c)),
            };
            parsed.ok_or_else(|| {
                Problem::new(format!("\"{s}\" is not a status code or range"))
                    .hint("like 200 or \"200-399\"")
            })?
        }
        other => {
            return Err(Problem::expected(
                "a status code or range like \"200-399\"",
                other,
            ));
        }
    };
    for code in [min, max] {
        if !(100..=599).contains(&code) {
            return Err(Problem::new(format!("status {code} is outside 100-599")));
        }
    }
    if min > max {
        return Err(Problem::new(format!("range {min}-{max} is reversed"))
            .hint(format!("write \"{max}-{min}\"")));
    }
    // Both lie in 100..=599, so they fit.
    let as_u16 = |c: i128| u16::try_from(c).unwrap_or(u16::MAX);
    Ok(StatusRange {
        min: as_u16(min),
        max: as_u16(max),
    })
}

const CONDITIONS: [&str; 3] = ["connect_error", "timeout", "reset"];

pub(crate) fn retry_condition(node: &Node) -> Result<RetryCondition, Problem> {
    let spelling = match node {
        Node::Int(code) => code.to_string(),
        Node::Str(s) => s.clone(),
        other => return Err(Problem::expected("a retry condition", other)),
    };
    RetryCondition::parse(spelling.trim()).ok_or_else(|| {
        if spelling.trim().parse::<i128>().is_ok() {
            return Problem::new(format!("status {spelling} is outside 100-599"));
        }
        let problem = Problem::new(format!("unknown retry condition \"{spelling}\""));
        let grpc = crate::retry::GRPC_STATUS_NAMES.map(|(name, _)| name);
        let known: Vec<&str> = CONDITIONS.iter().chain(grpc.iter()).copied().collect();
        match closest(&spelling, &known) {
            Some(near) => problem.hint(format!("did you mean \"{near}\"?")),
            None if spelling.starts_with("grpc") => problem.hint(
                "name a gRPC status in lower case after grpc_, like grpc_unavailable, grpc_resource_exhausted or grpc_deadline_exceeded (not grpc_ok)",
            ),
            None => problem.hint(
                "use connect_error, timeout, reset, a status code 100-599, or a gRPC status like grpc_unavailable",
            ),
        }
    })
}

/// A fraction between 0.0 and 1.0 inclusive.
pub(crate) fn ratio(node: &Node) -> Result<f64, Problem> {
    let value = match node {
        Node::Float(f) => *f,
        Node::Int(i) => *i as f64,
        other => return Err(Problem::expected("a number between 0.0 and 1.0", other)),
    };
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(Problem::new(format!(
            "must be between 0.0 and 1.0, found {value}"
        )))
    }
}
