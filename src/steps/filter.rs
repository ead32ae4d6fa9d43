//! `filter`: end the run as `filtered` unless an expression or a rule tree holds.

use regex::Regex;
use serde_json::Value as Json;

use crate::jsonpath::JsonPath;
use crate::lang::compile::Compiler;
use crate::lang::yaml::{Node, NodeValue};
use crate::steps::StepError;
use crate::template::{Condition, Scope, ValueTemplate};

#[derive(Debug)]
pub enum FilterStep {
    Expression(Condition),
    Rules(Rule),
}

/// A filter for people who prefer no expressions: `all`, `any`, `not`, and tests on a subject.
#[derive(Debug)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Test {
        subject: Subject,
        test: Test,
        /// The rule as written, to say which one did not hold.
        text: String,
    },
}

/// What a test looks at: nodes selected from the body, or a rendered value.
#[derive(Debug)]
pub enum Subject {
    JsonPath(JsonPath),
    Value(ValueTemplate),
}

#[derive(Debug)]
pub enum Test {
    Equals(ValueTemplate),
    NotEquals(ValueTemplate),
    In(ValueTemplate),
    Matches(Regex),
    Contains(ValueTemplate),
    Exists(bool),
    Gt(ValueTemplate),
    Gte(ValueTemplate),
    Lt(ValueTemplate),
    Lte(ValueTemplate),
}

/// The rules that combine others; a mapping whose first key is one of them has only that key.
pub const COMBINATORS: &[&str] = &["all", "any", "not"];
/// What a test looks at: exactly one of these.
pub const SUBJECTS: &[&str] = &["jsonpath", "value"];
/// A test's operators: exactly one of these.
pub const OPERATORS: &[&str] = &[
    "equals",
    "not_equals",
    "in",
    "matches",
    "contains",
    "exists",
    "gt",
    "gte",
    "lt",
    "lte",
];

impl FilterStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        match &node.value {
            NodeValue::Map(_) => compile_rule(c, node).map(FilterStep::Rules),
            _ => c.condition(node, "`filter`").map(FilterStep::Expression),
        }
    }

    /// Whether the run goes on, and when it does not, which rule stopped it.
    pub fn render(&self, scope: &Scope<'_>) -> Result<(bool, Option<String>), StepError> {
        match self {
            FilterStep::Expression(condition) => {
                let passed = condition.evaluate(scope.context)?;
                let reason = (!passed).then(|| format!("`{}` is false", condition.source()));
                Ok((passed, reason))
            }
            FilterStep::Rules(rule) => {
                let failure = rule.failure(scope)?;
                Ok((failure.is_none(), failure))
            }
        }
    }
}

fn compile_rule(c: &mut Compiler, node: &Node) -> Option<Rule> {
    let entries = node.as_map()?;
    let first = entries.first().map(|(k, _)| k.name.as_str());
    match first {
        Some(combinator @ ("all" | "any")) => {
            let fields = c.fields(node, &format!("an `{combinator}` rule"), &[combinator], &[])?;
            let list = fields.get(combinator)?;
            let Some(items) = list.as_seq() else {
                c.error(
                    list.span.clone(),
                    format!(
                        "`{combinator}` takes a list of rules, found {}",
                        list.kind_name()
                    ),
                );
                return None;
            };
            let rules: Option<Vec<Rule>> = items
                .iter()
                .map(|item| compile_rule_node(c, item))
                .collect::<Vec<_>>()
                .into_iter()
                .collect();
            let rules = rules?;
            Some(if combinator == "all" {
                Rule::All(rules)
            } else {
                Rule::Any(rules)
            })
        }
        Some("not") => {
            let fields = c.fields(node, "a `not` rule", &["not"], &[])?;
            compile_rule_node(c, fields.get("not")?).map(|r| Rule::Not(Box::new(r)))
        }
        _ => compile_test(c, node),
    }
}

fn compile_rule_node(c: &mut Compiler, node: &Node) -> Option<Rule> {
    if node.as_map().is_none() {
        c.error(
            node.span.clone(),
            format!(
                "a rule must be a mapping (all, any, not, or a test), found {}",
                node.kind_name()
            ),
        );
        return None;
    }
    compile_rule(c, node)
}

fn compile_test(c: &mut Compiler, node: &Node) -> Option<Rule> {
    let mut allowed = SUBJECTS.to_vec();
    allowed.extend_from_slice(OPERATORS);
    let fields = c.fields(node, "a filter rule", &allowed, &[])?;
    let mark = c.readings.len();
    let subject = match (fields.get("jsonpath"), fields.get("value")) {
        (Some(path), None) => Subject::JsonPath(c.jsonpath(path)?),
        (None, Some(value)) => Subject::Value(c.value(value)?),
        (Some(_), Some(value)) => {
            c.error(
                value.span.clone(),
                "a rule tests either `jsonpath` or `value`, not both",
            );
            return None;
        }
        (None, None) => {
            c.error(
                node.span.clone(),
                "a filter rule needs a subject: `jsonpath: $...` or `value: ...`, or is `all`, `any` or `not`",
            );
            return None;
        }
    };
    let present: Vec<&str> = OPERATORS
        .iter()
        .copied()
        .filter(|op| fields.has(op))
        .collect();
    let op = match present.as_slice() {
        [one] => *one,
        [] => {
            c.error(
                node.span.clone(),
                format!("a filter rule needs one operator: {}", OPERATORS.join(", ")),
            );
            return None;
        }
        [_, second, ..] => {
            let span = fields
                .key(second)
                .map(|k| k.span.clone())
                .unwrap_or(node.span.clone());
            c.error(
                span,
                "a filter rule has exactly one operator; use `all` to combine tests",
            );
            return None;
        }
    };
    if op == "exists" {
        c.presence_tests_since(mark);
    }
    let operand = fields.get(op)?;
    let subject_text = match (fields.get("jsonpath"), fields.get("value")) {
        (Some(n), _) | (None, Some(n)) => compact_json(&n.to_json()),
        (None, None) => String::new(),
    };
    let text = format!("{subject_text} {op} {}", compact_json(&operand.to_json()));
    let test = match op {
        "matches" => {
            let pattern = c.string(operand, "`matches`")?;
            match Regex::new(&pattern) {
                Ok(regex) => Test::Matches(regex),
                Err(err) => {
                    c.error(
                        operand.span.clone(),
                        format!("invalid regular expression: {err}"),
                    );
                    return None;
                }
            }
        }
        "exists" => Test::Exists(c.bool(operand, "`exists`")?),
        "in" => {
            if !matches!(operand.value, NodeValue::Seq(_) | NodeValue::Str(_)) {
                c.error(
                    operand.span.clone(),
                    format!("`in` takes a list, found {}", operand.kind_name()),
                );
                return None;
            }
            Test::In(c.value(operand)?)
        }
        _ => {
            let value = c.value(operand)?;
            match op {
                "equals" => Test::Equals(value),
                "not_equals" => Test::NotEquals(value),
                "contains" => Test::Contains(value),
                "gt" => Test::Gt(value),
                "gte" => Test::Gte(value),
                "lt" => Test::Lt(value),
                _ => Test::Lte(value),
            }
        }
    };
    Some(Rule::Test {
        subject,
        test,
        text,
    })
}

fn compact_json(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Rule {
    /// `None` when the rule holds, else the reason it does not.
    pub fn failure(&self, scope: &Scope<'_>) -> Result<Option<String>, StepError> {
        match self {
            Rule::All(rules) => {
                for rule in rules {
                    if let Some(reason) = rule.failure(scope)? {
                        return Ok(Some(reason));
                    }
                }
                Ok(None)
            }
            Rule::Any(rules) => {
                let mut reasons = Vec::new();
                for rule in rules {
                    match rule.failure(scope)? {
                        None => return Ok(None),
                        Some(reason) => reasons.push(reason),
                    }
                }
                Ok(Some(format!("none of `any` held: {}", reasons.join("; "))))
            }
            Rule::Not(rule) => Ok(match rule.failure(scope)? {
                Some(_) => None,
                None => Some(format!("`not` failed because {} held", rule.describe())),
            }),
            Rule::Test {
                subject,
                test,
                text,
            } => {
                let nodes: Vec<Json> = match subject {
                    Subject::JsonPath(path) => path
                        .select_all(scope.event_body)
                        .into_iter()
                        .cloned()
                        .collect(),
                    Subject::Value(value) => vec![value.render(scope)?],
                };
                Ok((!test.holds(&nodes, scope)?).then(|| format!("`{text}` did not hold")))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Rule::All(rules) => format!("all of {} rules", rules.len()),
            Rule::Any(rules) => format!("any of {} rules", rules.len()),
            Rule::Not(rule) => format!("not ({})", rule.describe()),
            Rule::Test { text, .. } => format!("`{text}`"),
        }
    }
}

impl Test {
    /// A test over several selected nodes holds when any node passes; `not_equals` holds when none
    /// is equal and `exists: false` when nothing was selected.
    fn holds(&self, nodes: &[Json], scope: &Scope<'_>) -> Result<bool, StepError> {
        Ok(match self {
            Test::Exists(expected) => nodes.iter().any(|n| !n.is_null()) == *expected,
            Test::Matches(regex) => nodes
                .iter()
                .any(|n| n.as_str().is_some_and(|s| regex.is_match(s))),
            Test::Equals(v) => {
                let v = v.render(scope)?;
                nodes.iter().any(|n| json_equal(n, &v))
            }
            Test::NotEquals(v) => {
                let v = v.render(scope)?;
                !nodes.iter().any(|n| json_equal(n, &v))
            }
            Test::In(list) => {
                let list = match list.render(scope)? {
                    Json::Array(items) => items,
                    other => vec![other],
                };
                nodes
                    .iter()
                    .any(|n| list.iter().any(|item| json_equal(n, item)))
            }
            Test::Contains(v) => {
                let v = v.render(scope)?;
                nodes.iter().any(|n| match (n, &v) {
                    (Json::String(s), Json::String(part)) => s.contains(part.as_str()),
                    (Json::Array(items), needle) => items.iter().any(|i| json_equal(i, needle)),
                    (Json::Object(map), Json::String(key)) => map.contains_key(key),
                    _ => false,
                })
            }
            Test::Gt(v) | Test::Gte(v) | Test::Lt(v) | Test::Lte(v) => {
                let v = v.render(scope)?;
                nodes.iter().any(|n| {
                    compare(n, &v).is_some_and(|ord| match self {
                        Test::Gt(_) => ord.is_gt(),
                        Test::Gte(_) => ord.is_ge(),
                        Test::Lt(_) => ord.is_lt(),
                        _ => ord.is_le(),
                    })
                })
            }
        })
    }
}

/// JSON equality where 1 and 1.0 are the same number.
fn json_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Numbers compare as numbers and strings as strings (ISO dates order correctly); nothing else.
fn compare(a: &Json, b: &Json) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}
