//! Stage one: what the file says, as an untyped tree where every node knows its position.
//!
//! Deserializing straight into the typed model would stop at the first problem (serde's
//! `deny_unknown_fields` and type errors abort). Instead the text becomes a [`Node`] tree of
//! maps, lists and scalars, each wrapped in a [`Spanned`] with its line and column, and the
//! validator walks that tree collecting every problem. JSON is a subset of YAML 1.2, so after
//! `serde_json` has checked the strict JSON syntax, the same YAML reader builds the tree and
//! semantic errors in JSON files get exact positions too.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::options::{DuplicateKeyPolicy, Options};
use serde_saphyr::{RenderOptions, SnippetMode};

use super::Format;
use super::error::{ConfigError, ConfigErrors};

/// A 1-based line and column; `None` when the source could not tell.
pub(crate) type Pos = Option<(u32, u32)>;

/// A value from the file with the position of its first character.
#[derive(Debug)]
pub(crate) struct Spanned {
    pub(crate) node: Node,
    pub(crate) pos: Pos,
}

/// An untyped configuration value.
#[derive(Debug)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned>),
    /// Entries in file order; duplicate keys are kept so the validator can report them.
    Map(Vec<(Spanned, Spanned)>),
}

impl Node {
    /// How the value reads to a user, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing",
            Node::Bool(_) => "a boolean",
            Node::Int(_) | Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

/// serde-saphyr only fills locations into its own `Spanned<T>`; convert at the boundary.
struct RawSpanned(serde_saphyr::Spanned<Node>);

impl<'de> Deserialize<'de> for RawSpanned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_saphyr::Spanned::<Node>::deserialize(deserializer).map(RawSpanned)
    }
}

impl From<RawSpanned> for Spanned {
    fn from(raw: RawSpanned) -> Self {
        let location = raw.0.referenced;
        let pos = match (
            u32::try_from(location.line()),
            u32::try_from(location.column()),
        ) {
            (Ok(line), Ok(column)) if line > 0 => Some((line, column)),
            _ => None,
        };
        Spanned {
            node: raw.0.value,
            pos,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(i128::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<RawSpanned>()? {
            items.push(item.into());
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<RawSpanned>()? {
            let value = map.next_value::<RawSpanned>()?;
            entries.push((key.into(), value.into()));
        }
        Ok(Node::Map(entries))
    }
}

/// Reads `source` into a positioned tree, or the syntax error with its position.
pub(crate) fn load(source: &str, format: Format, origin: &str) -> Result<Spanned, ConfigErrors> {
    if format == Format::Json {
        check_json(source, origin)?;
    }
    let mut options = Options::default();
    // Duplicate keys reach our visitor so they are reported with the others, by field path.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    match serde_saphyr::from_str_with_options::<RawSpanned>(source, options) {
        Ok(root) => Ok(root.into()),
        // Strict JSON that the YAML reader still refuses: keep going without positions.
        Err(_) if format == Format::Json => json_fallback(source, origin),
        Err(error) => {
            let (line, column) = error
                .location()
                .and_then(|l| {
                    Some((
                        u32::try_from(l.line()).ok()?,
                        u32::try_from(l.column()).ok()?,
                    ))
                })
                .filter(|(line, _)| *line > 0)
                .unzip();
            let mut render = RenderOptions::default();
            render.snippets = SnippetMode::Off;
            let message = strip_position(&error.render_with_options(render));
            Err(ConfigErrors::single(ConfigError {
                file: origin.to_owned(),
                line,
                column,
                field: String::new(),
                message: format!("invalid YAML: {message}"),
                hint: None,
            }))
        }
    }
}

fn check_json(source: &str, origin: &str) -> Result<(), ConfigErrors> {
    match serde_json::from_str::<serde::de::IgnoredAny>(source) {
        Ok(_) => Ok(()),
        Err(error) => {
            let line = u32::try_from(error.line()).ok().filter(|l| *l > 0);
            let column = u32::try_from(error.column())
                .ok()
                .filter(|_| line.is_some());
            Err(ConfigErrors::single(ConfigError {
                file: origin.to_owned(),
                line,
                column,
                field: String::new(),
                message: format!("invalid JSON: {}", strip_position(&error.to_string())),
                hint: None,
            }))
        }
    }
}

fn json_fallback(source: &str, origin: &str) -> Result<Spanned, ConfigErrors> {
    fn convert(value: serde_json::Value) -> Spanned {
        use serde_json::Value;
        let node = match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Node::Int(i.into()),
                None => n
                    .as_u64()
                    .map(|u| Node::Int(u.into()))
                    .unwrap_or(Node::Float(n.as_f64().unwrap_or(f64::NAN))),
            },
            Value::String(s) => Node::Str(s),
            Value::Array(items) => Node::Seq(items.into_iter().map(convert).collect()),
            Value::Object(map) => Node::Map(
                map.into_iter()
                    .map(|(k, v)| {
                        (
                            Spanned {
                                node: Node::Str(k),
                                pos: None,
                            },
                            convert(v),
                        )
                    })
                    .collect(),
            ),
        };
        Spanned { node, pos: None }
    }
    serde_json::from_str(source).map(convert).map_err(|error| {
        ConfigErrors::single(ConfigError {
            file: origin.to_owned(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("invalid JSON: {error}"),
            hint: None,
        })
    })
}

/// Both parsers append "at line L column C" to their messages; we print the position ourselves.
fn strip_position(message: &str) -> String {
    let first_line = message.lines().next().unwrap_or(message);
    match first_line.rfind(" at line ") {
        Some(index) => first_line[..index].to_owned(),
        None => first_line.to_owned(),
    }
}
