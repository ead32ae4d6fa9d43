//! The YAML layer: a workflow file parsed into a tree of nodes that remember where they came from.
//!
//! serde-saphyr stops at the first error of a typed deserialization, so workflows are first read
//! into this position-carrying tree and then checked by hand; that is what lets `validate` report
//! every problem of a file in one pass. This is the only module that talks to the YAML parser.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned, UserMessageFormatter};

use crate::diag::{Diagnostic, SourceFile, Span};

/// A YAML value with the span of its text.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: NodeValue,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key, always a string in workflow files.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

impl Node {
    /// What kind of value this is, in the words a diagnostic uses.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value as plain JSON, for constants and payloads (positions are dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Where the text of a string scalar starts, relative to the node's span: 1 for a quoted
    /// scalar, and for block scalars (`|`, `>`) the line below the indicator.
    pub fn scalar_text_origin(&self) -> ScalarOrigin {
        let file = &self.span.file;
        let Some(line) = file.line(self.span.line) else {
            return ScalarOrigin::Inline { offset: 0 };
        };
        let rest: String = line.chars().skip(self.span.col - 1).collect();
        // The parser may place a block scalar at its first content line rather than at `|`.
        let after_indicator = self.span.line > 1
            && file
                .line(self.span.line - 1)
                .is_some_and(ends_with_block_indicator);
        if after_indicator && rest.starts_with(|c: char| c != '|' && c != '>') {
            return ScalarOrigin::Block {
                first_line: self.span.line,
                indent: self.span.col - 1,
            };
        }
        match rest.chars().next() {
            Some('"') | Some('\'') => ScalarOrigin::Inline { offset: 1 },
            Some('|') | Some('>') => {
                let indent = file
                    .line(self.span.line + 1)
                    .map(|next| next.chars().take_while(|c| *c == ' ').count())
                    .unwrap_or(0);
                ScalarOrigin::Block {
                    first_line: self.span.line + 1,
                    indent,
                }
            }
            _ => ScalarOrigin::Inline { offset: 0 },
        }
    }

    /// The span of a position inside a string scalar's text (1-based line and column of the
    /// text itself), so errors inside templates point at the right character.
    pub fn span_within(&self, line: usize, col: usize, len: usize) -> Span {
        match self.scalar_text_origin() {
            ScalarOrigin::Inline { offset } if line <= 1 => {
                self.span.shifted(offset + col.saturating_sub(1), len)
            }
            // A multi-line plain or quoted scalar folds lines; the start is the honest answer.
            ScalarOrigin::Inline { .. } => self.span.shifted(0, len),
            ScalarOrigin::Block { first_line, indent } => {
                self.span
                    .moved_to(first_line + line.saturating_sub(1), indent + col, len)
            }
        }
    }
}

fn ends_with_block_indicator(line: &str) -> bool {
    let trimmed = line.trim_end();
    let without_modifiers =
        trimmed.trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
    without_modifiers.ends_with('|') || without_modifiers.ends_with('>')
}

pub enum ScalarOrigin {
    Inline { offset: usize },
    Block { first_line: usize, indent: usize },
}

/// Parse one YAML document into a node tree, or the syntax error as a located diagnostic.
pub fn parse(file: &Arc<SourceFile>) -> Result<Node, Diagnostic> {
    if file.text.trim().is_empty() {
        return Err(Diagnostic::error(
            Span::file_start(file),
            "the file is empty; a workflow needs at least `steps`",
        ));
    }
    let mut options = serde_saphyr::Options::default();
    // YAML 1.2 core booleans only: `yes`, `no`, `on`, `off` stay text, as the user wrote them.
    options.strict_booleans = true;
    match serde_saphyr::from_str_with_options::<Spanned<RawNode>>(&file.text, options) {
        Ok(raw) => Ok(raw.value.into_node(raw.referenced, file)),
        Err(err) => {
            let message = UserMessageFormatter.format_message(&err).into_owned();
            let span = match err.location() {
                Some(loc) => location_span(file, loc, 1),
                None => Span::file_start(file),
            };
            Err(Diagnostic::error(span, format!("invalid YAML: {message}")))
        }
    }
}

fn location_span(file: &Arc<SourceFile>, loc: Location, len: usize) -> Span {
    Span::new(file, loc.line() as usize, loc.column() as usize, len)
}

/// The tree as serde hands it over: locations without the file, which is attached afterwards.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<String>, Spanned<RawNode>)>),
}

impl RawNode {
    fn into_node(self, loc: Location, file: &Arc<SourceFile>) -> Node {
        let (value, len) = match self {
            RawNode::Null => (NodeValue::Null, 1),
            RawNode::Bool(b) => (NodeValue::Bool(b), if b { 4 } else { 5 }),
            RawNode::Int(i) => (NodeValue::Int(i), i.to_string().len()),
            RawNode::Float(f) => (NodeValue::Float(f), f.to_string().len()),
            RawNode::Str(s) => {
                let len = s.lines().next().map(|l| l.chars().count()).unwrap_or(1);
                (NodeValue::Str(s), len)
            }
            RawNode::Seq(items) => (
                NodeValue::Seq(
                    items
                        .into_iter()
                        .map(|item| item.value.into_node(item.referenced, file))
                        .collect(),
                ),
                1,
            ),
            RawNode::Map(entries) => (
                NodeValue::Map(
                    entries
                        .into_iter()
                        .map(|(key, value)| {
                            let key_len = key.value.chars().count();
                            (
                                Key {
                                    span: location_span(file, key.referenced, key_len),
                                    name: key.value,
                                },
                                value.value.into_node(value.referenced, file),
                            )
                        })
                        .collect(),
                ),
                1,
            ),
        };
        Node {
            value,
            span: location_span(file, loc, len),
        }
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawNodeVisitor)
    }
}

struct RawNodeVisitor;

impl<'de> Visitor<'de> for RawNodeVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(RawNode::Int(i)),
            Err(_) => Ok(RawNode::Float(v as f64)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((key, value));
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Node, Diagnostic> {
        parse(&SourceFile::new("t.yaml", text))
    }

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let node =
            parse_str("name: demo\non:\n  webhook:\n    path: /hooks/x\nsteps:\n  - log: hi\n")
                .unwrap();
        let map = node.as_map().unwrap();
        assert_eq!(map[0].0.name, "name");
        assert_eq!((map[0].1.span.line, map[0].1.span.col), (1, 7));
        // `on` is a plain string key, not the YAML 1.1 boolean.
        assert_eq!(map[1].0.name, "on");
        let steps = map[2].1.as_seq().unwrap();
        let (key, value) = &steps[0].as_map().unwrap()[0];
        assert_eq!(
            (key.name.as_str(), key.span.line, key.span.col),
            ("log", 6, 5)
        );
        assert_eq!(value.as_str(), Some("hi"));
    }

    #[test]
    fn scalars_keep_their_types() {
        let node = parse_str("a: 1\nb: true\nc: \"1\"\nd: 1.5\ne: ~\nf: yes\n").unwrap();
        let json = node.to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": 1, "b": true, "c": "1", "d": 1.5, "e": null, "f": "yes"})
        );
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse_str("steps:\n  - log: [unclosed\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
        assert!(err.span.line >= 2, "{:?}", err.span);
        let err = parse_str("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{}", err.message);
    }

    #[test]
    fn positions_inside_quoted_and_block_scalars() {
        let node = parse_str("a: \"{{ x }}\"\nb: |\n  line one\n  {{ y }}\n").unwrap();
        let map = node.as_map().unwrap();
        let inner = map[0].1.span_within(1, 4, 1);
        assert_eq!((inner.line, inner.col), (1, 8));
        let inner = map[1].1.span_within(2, 4, 1);
        assert_eq!((inner.line, inner.col), (4, 6));
    }
}
