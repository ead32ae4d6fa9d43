//! RFC 9535 JSONPath: compiled once at load, evaluated against JSON values at run time.
//!
//! Everything JSONPath goes through this module so the engine depends on one small API
//! instead of on `jsonpath-rust` directly.

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

/// A JSONPath query that parsed successfully.
#[derive(Debug, Clone)]
pub struct JsonPath {
    source: String,
    query: JpQuery,
}

/// One step of a path into a JSON value, as a query or a template walks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// A member of a mapping: `.name`, `['name']`.
    Key(String),
    /// An element of a list: `[0]`; a negative index counts from the end.
    Index(i64),
    /// Each child: a loop's item, or a query's `[*]`, slice or filter selector.
    Each,
}

/// Why a JSONPath query could not be compiled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid JSONPath `{source_text}`: {message}")]
pub struct JsonPathError {
    pub source_text: String,
    pub message: String,
    /// 1-based column inside the query text, when the parser knows it.
    pub column: Option<usize>,
}

impl JsonPath {
    pub fn compile(source: &str) -> Result<Self, JsonPathError> {
        match parse_json_path(source) {
            Ok(query) => Ok(Self {
                source: source.to_owned(),
                query,
            }),
            Err(err) => Err(describe_error(source, err)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every node the query selects, in document order.
    pub fn select_all<'v>(&self, value: &'v Value) -> Vec<&'v Value> {
        match js_path_process(&self.query, value) {
            Ok(found) => found.into_iter().map(|r| r.val).collect(),
            // The library reports a computed (non-node) value as an error; RFC 9535 queries
            // always produce nodes, so this only happens for extensions we do not use.
            Err(_) => Vec::new(),
        }
    }

    /// Whether the query can select at most one node (RFC 9535 §2.3.5.1: only name and index
    /// selectors, no wildcards, slices, filters or descendants).
    pub fn is_singular(&self) -> bool {
        use jsonpath_rust::parser::model::{Segment, Selector};
        let single = |s: &Selector| matches!(s, Selector::Name(_) | Selector::Index(_));
        self.query.segments.iter().all(|segment| match segment {
            Segment::Selector(s) => single(s),
            Segment::Selectors(list) => list.len() == 1 && list.iter().all(single),
            Segment::Descendant(_) => false,
        })
    }

    /// The query as path steps, as far as each segment goes one level down, and whether that is
    /// the whole query: a descendant segment (`..`) or several selectors (`['a','b']`) end it.
    pub fn steps(&self) -> (Vec<PathStep>, bool) {
        use jsonpath_rust::parser::model::{Segment, Selector};
        let step = |s: &Selector| match s {
            Selector::Name(name) => PathStep::Key(name.clone()),
            Selector::Index(i) => PathStep::Index(*i),
            Selector::Wildcard | Selector::Slice(..) | Selector::Filter(_) => PathStep::Each,
        };
        let mut steps = Vec::new();
        for segment in &self.query.segments {
            match segment {
                Segment::Selector(s) => steps.push(step(s)),
                Segment::Selectors(list) if list.len() == 1 => steps.push(step(&list[0])),
                Segment::Selectors(_) | Segment::Descendant(_) => return (steps, false),
            }
        }
        (steps, true)
    }

    /// The selection as one value. A singular query gives its node or null; any other query
    /// gives a list, even of one or no node, so the shape of the result never depends on the data.
    pub fn select(&self, value: &Value) -> Value {
        let found = self.select_all(value);
        if self.is_singular() {
            found.first().map(|v| (*v).clone()).unwrap_or(Value::Null)
        } else {
            Value::Array(found.into_iter().cloned().collect())
        }
    }
}

fn describe_error(
    source: &str,
    err: jsonpath_rust::parser::errors::JsonPathError,
) -> JsonPathError {
    use jsonpath_rust::parser::errors::JsonPathError as E;
    let (message, column) = match &err {
        E::PestError(pest_err) => {
            let column = match pest_err.line_col {
                pest::error::LineColLocation::Pos((_, col)) => col,
                pest::error::LineColLocation::Span((_, col), _) => col,
            };
            let message = match &pest_err.variant {
                pest::error::ErrorVariant::ParsingError { .. } => {
                    format!("unexpected input at column {column}")
                }
                pest::error::ErrorVariant::CustomError { message } => message.clone(),
            };
            (message, Some(column))
        }
        other => (other.to_string(), None),
    };
    let message = if source.starts_with('$') {
        message
    } else {
        format!("{message} (a JSONPath query starts with `$`)")
    };
    JsonPathError {
        source_text: source.to_owned(),
        message,
        column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn singular_queries_give_a_value_and_others_always_a_list() {
        let doc = json!({"a": [{"b": 1}, {"b": 2}], "c": "x", "d": [{"b": 3}]});
        let select = |q: &str| JsonPath::compile(q).unwrap().select(&doc);
        assert_eq!(select("$.c"), json!("x"));
        assert_eq!(select("$.a[1].b"), json!(2));
        assert_eq!(select("$['c']"), json!("x"));
        assert_eq!(select("$.missing"), Value::Null);
        assert_eq!(select("$.a[*].b"), json!([1, 2]));
        assert_eq!(select("$.d[*].b"), json!([3]));
        assert_eq!(select("$.d[?@.b > 5]"), json!([]));
        assert_eq!(select("$..c"), json!(["x"]));
        assert_eq!(select("$.a[0:1].b"), json!([1]));
    }

    #[test]
    fn steps_follow_the_query_until_it_stops_going_one_level_down() {
        let steps = |q: &str| JsonPath::compile(q).unwrap().steps();
        let key = |k: &str| PathStep::Key(k.to_owned());
        assert_eq!(steps("$"), (vec![], true));
        assert_eq!(
            steps("$.a['b c'][2]"),
            (vec![key("a"), key("b c"), PathStep::Index(2)], true)
        );
        assert_eq!(
            steps("$.a[*].b[1:][?@.x].c"),
            (
                vec![
                    key("a"),
                    PathStep::Each,
                    key("b"),
                    PathStep::Each,
                    PathStep::Each,
                    key("c")
                ],
                true
            )
        );
        assert_eq!(steps("$.a..b"), (vec![key("a")], false));
        assert_eq!(steps("$.a['b','c'].d"), (vec![key("a")], false));
    }

    #[test]
    fn syntax_errors_carry_a_column() {
        let err = JsonPath::compile("$.a[?@.b ==]").unwrap_err();
        assert!(err.column.is_some(), "{err:?}");
        let err = JsonPath::compile("a.b").unwrap_err();
        assert!(err.message.contains("starts with `$`"), "{err:?}");
    }
}
