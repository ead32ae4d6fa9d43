//! Naming the value an undefined-value error is about: what the syntax tree reads at the place
//! the engine reported (`paths::at_span`), checked against the context the template ran on.
//!
//! A path is named only when that is certain: the path written at the place, or a value handed
//! to the operation there, is missing from the context as the template saw it. Otherwise the
//! message quotes the expression written at the place.

use minijinja::Value;
use minijinja::value::ValueKind;

use super::paths::{self, AtSpan, Path, Role, Syntax};
use crate::jsonpath::PathStep;

const HINT: &str = "test it with `is defined`, or add `| default(...)`";

/// The text a template or expression was compiled from, and the context it ran on.
pub(super) struct Origin<'a> {
    pub source: &'a str,
    pub syntax: Syntax,
    pub context: &'a Value,
}

/// The message for an undefined-value error the engine reported at `range` of the text.
pub(super) fn message(origin: &Origin<'_>, range: Option<std::ops::Range<usize>>) -> String {
    let at = paths::at_span(origin.source, origin.syntax, range);
    match named(origin.context, &at) {
        Some(named) => format!("undefined value: {named}"),
        None => fallback(at.text.as_deref()),
    }
}

/// What is missing, when the paths read at the place certainly are: `None` otherwise.
/// For an error that is not about an undefined value as such (`undefined + 1`).
pub(super) fn missing(
    origin: &Origin<'_>,
    range: Option<std::ops::Range<usize>>,
) -> Option<String> {
    let at = paths::at_span(origin.source, origin.syntax, range);
    named(origin.context, &at)
}

/// The message for an expression whose whole value is undefined.
pub(super) fn whole_value_message(source: &str, context: &Value) -> String {
    let at = paths::whole_value(source);
    match named(context, &at) {
        Some(named) => format!("undefined value: {named}"),
        None => fallback(at.text.as_deref()),
    }
}

fn fallback(text: Option<&str>) -> String {
    match text {
        Some(text) => format!(
            "undefined value in `{text}`: a name or attribute there does not exist ({HINT})"
        ),
        None => format!("undefined value: a name or attribute does not exist ({HINT})"),
    }
}

/// One missing path: the path read, and how much of it exists.
struct Missing {
    read: Path,
    /// Steps of `read` that exist; the step after them does not (the root when 0 and
    /// the root itself is missing, see `root_missing`).
    found: usize,
    root_missing: bool,
    /// What the last existing step holds, when it is not a mapping (so it has no keys).
    holder: Option<String>,
}

impl Missing {
    /// The part of the path that does not exist.
    fn absent(&self) -> Path {
        let len = if self.root_missing { 0 } else { self.found + 1 };
        self.read.prefix(len)
    }

    fn whole(&self) -> bool {
        self.absent().steps.len() == self.read.steps.len()
    }

    fn clause(&self) -> String {
        let absent = self.absent().text();
        let mut clause = if self.whole() {
            format!("`{absent}` does not exist")
        } else {
            format!(
                "`{}` cannot be read: `{absent}` does not exist",
                self.read.text()
            )
        };
        if let Some(holder) = &self.holder {
            clause.push_str(&format!(
                ", `{}` is {holder}",
                self.read.prefix(self.found).text()
            ));
        }
        clause
    }
}

/// The paths at fault, worded, when they are certain.
fn named(context: &Value, at: &AtSpan) -> Option<String> {
    let mut chain = Vec::new();
    let mut operands = Vec::new();
    for (path, role) in &at.reads {
        let Some(missing) = walk(context, path) else {
            continue;
        };
        match role {
            Role::Chain => chain.push(missing),
            Role::Operand if missing.whole() => operands.push(missing),
            // Read only when the left side let it be; a missing left side failed first.
            Role::OperandWhen(condition, when) if missing.whole() => {
                let truth = lookup(context, condition).map(|v| v.is_true());
                if truth == Some(*when) {
                    operands.push(missing);
                }
            }
            _ => {}
        }
    }
    // A path written at the place is certain by itself; values handed to an operation only
    // when every value it was handed is known.
    let found = if !chain.is_empty() {
        chain
    } else if at.complete && !operands.is_empty() {
        operands
    } else {
        return None;
    };
    let clauses: Vec<String> = found.iter().map(Missing::clause).collect();
    let hint = match found.iter().find(|m| !m.whole()) {
        Some(m) => format!("test `{} is defined` first", m.absent().text()),
        None => HINT.to_owned(),
    };
    Some(format!("{} ({hint})", clauses.join("; ")))
}

/// The value at a path, or `None` when some step of it is missing.
fn lookup(context: &Value, path: &Path) -> Option<Value> {
    let mut value = root(context, &path.root)?;
    for step in &path.steps {
        value = child(&value, step).filter(|v| !v.is_undefined())?;
    }
    Some(value)
}

/// Where a path stops existing in the context, if it does.
fn walk(context: &Value, path: &Path) -> Option<Missing> {
    let Some(mut value) = root(context, &path.root) else {
        return Some(Missing {
            read: path.clone(),
            found: 0,
            root_missing: true,
            holder: None,
        });
    };
    for (found, step) in path.steps.iter().enumerate() {
        // A step the engine cannot take as a lookup (`[*]`) is not what was read.
        let next = child(&value, step)?;
        if next.is_undefined() {
            return Some(Missing {
                read: path.clone(),
                found,
                root_missing: false,
                holder: holder(&value, step),
            });
        }
        value = next;
    }
    None
}

fn root(context: &Value, name: &str) -> Option<Value> {
    let value = context.get_attr(name).ok()?;
    if !value.is_undefined() {
        return Some(value);
    }
    // Functions and globals of the environment are found after the context.
    super::EXPRESSION_ENV
        .globals()
        .find(|(global, _)| *global == name)
        .map(|(_, value)| value)
}

fn child(value: &Value, step: &PathStep) -> Option<Value> {
    match step {
        PathStep::Key(key) => value.get_attr(key).ok(),
        PathStep::Index(index) => value.get_item(&Value::from(*index)).ok(),
        PathStep::Each => None,
    }
}

/// Why a value has nothing at `step`, when it is not simply a mapping without that key.
fn holder(value: &Value, step: &PathStep) -> Option<String> {
    let what = match value.kind() {
        ValueKind::Map => return None,
        ValueKind::Seq => match (step, value.len()) {
            (PathStep::Index(_), Some(len)) => {
                let items = if len == 1 { "item" } else { "items" };
                return Some(format!("a list of {len} {items}"));
            }
            _ => "a list",
        },
        ValueKind::None => "null",
        ValueKind::Bool => "a boolean",
        ValueKind::Number => "a number",
        ValueKind::String => "text",
        _ => return None,
    };
    Some(what.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::super::{Condition, Scope, TemplateSet, ValueTemplate, to_template_value};

    fn context() -> Json {
        json!({
            "event": {"body": {
                "a": {"b": 1}, "s": "text", "l": [1, 2], "n": null, "t": true, "f": false,
                "x-y": {"z": 1}
            }},
            "vars": {"k": "a"}
        })
    }

    /// The error of rendering `source` as a workflow string on `context()`.
    fn error(source: &str) -> String {
        let mut set = TemplateSet::new();
        let template = ValueTemplate::compile_str(&mut set, source).expect(source);
        let ctx = context();
        let value = to_template_value(&ctx);
        let scope = Scope {
            templates: &set,
            context: &value,
            event_body: &ctx,
        };
        template.render(&scope).expect_err(source).0
    }

    fn condition_error(source: &str) -> String {
        let value = to_template_value(&context());
        Condition::compile(source)
            .expect(source)
            .evaluate(&value)
            .expect_err(source)
            .0
    }

    const HINT: &str = "(test it with `is defined`, or add `| default(...)`)";

    #[test]
    fn a_missing_path_is_named_in_every_kind_of_template() {
        let missing = format!("undefined value: `event.body.missing` does not exist {HINT}");
        for source in [
            "{{ event.body.missing }}",
            "a {{ event.body.missing }} b",
            "{% if event.body.missing %}x{% endif %}",
            "{% for i in event.body.missing %}x{% endfor %}",
            "line one\n{{ event.body.missing | upper }}",
            "{{ event.body.missing ~ 'x' }} text",
            "{{ event.body.missing == 1 }} text",
            "x {{ event.body.a.b and event.body.missing }}",
            "{% if event.body.f or event.body.missing %}x{% endif %}",
            "x {{ event.body.missing | string }}",
        ] {
            let err = error(source);
            assert!(err.starts_with(&missing), "{source}: {err}");
        }
        for source in [
            "event.body.missing",
            "event.body.missing == 1",
            "not event.body.missing",
            "event.body.missing and true",
            "event.body.t and event.body.missing",
            "event.body.missing | upper",
            "(event.body.missing | length) > 1",
        ] {
            let err = condition_error(source);
            assert_eq!(err, missing, "{source}");
        }
    }

    #[test]
    fn a_missing_parent_is_named_with_the_path_read_through_it() {
        let expected = "undefined value: `event.body.x.y` cannot be read: `event.body.x` does not exist (test `event.body.x is defined` first)";
        for source in [
            "{{ event.body.x.y }}",
            "a {{ event.body.x.y }} b",
            "{% if event.body.x.y %}a{% endif %}",
            "a {{ event.body.x.y | default('d') }}",
        ] {
            assert_eq!(error(source), expected, "{source}");
        }
        for source in [
            "event.body.x.y",
            "event.body.x.y is defined",
            "event.body.x.y == 1",
        ] {
            assert_eq!(condition_error(source), expected, "{source}");
        }
        assert_eq!(
            error("a {{ evnt.body }}"),
            "undefined value: `evnt.body` cannot be read: `evnt` does not exist (test `evnt is defined` first)"
        );
    }

    #[test]
    fn keys_that_are_not_names_are_written_in_brackets() {
        assert!(
            error("a {{ event.body['x-y'].q }}")
                .starts_with("undefined value: `event.body['x-y'].q` does not exist"),
        );
        assert!(
            error("a {{ event.body['no such'] }}")
                .starts_with("undefined value: `event.body['no such']` does not exist"),
        );
        assert!(error("a {{ event.body.l[5] }}").starts_with(
            "undefined value: `event.body.l[5]` does not exist, `event.body.l` is a list of 2 items"
        ));
    }

    #[test]
    fn what_holds_no_keys_is_said() {
        let err = error("a {{ event.body.n.x }}");
        assert!(
            err.starts_with(
                "undefined value: `event.body.n.x` does not exist, `event.body.n` is null"
            ),
            "{err}"
        );
        let err = error("a {{ event.body.s.len }}");
        assert!(err.contains("`event.body.s` is text"), "{err}");
        let err = error("a {{ event.body.l.first }}");
        assert!(err.contains("`event.body.l` is a list"), "{err}");
    }

    #[test]
    fn what_cannot_be_named_for_certain_is_quoted() {
        // `default` handed on a missing value: either side may be the one.
        let err = error("a {{ event.body.a.c | default(event.body.zz) }}");
        assert_eq!(
            err,
            format!(
                "undefined value in `event.body.a.c | default(event.body.zz)`: a name or attribute there does not exist {HINT}"
            )
        );
        // A name bound in the template is not looked up in the context.
        let err = error("{% set q = event.body.missing %}{{ q }} x");
        assert!(err.starts_with("undefined value in `q`"), "{err}");
        let err = error("{% for i in event.body.l %}{{ i.z }}{% endfor %}");
        assert!(err.starts_with("undefined value in `i.z`"), "{err}");
        let err = error("{% set q = event.body.missing %}{{ q.a.b }} x");
        assert!(err.starts_with("undefined value in `q.a`"), "{err}");
        // A call's value may be undefined without anything missing.
        let err = error("x {{ jsonpath(event.body, '$.zz') | attr('q') }}");
        assert!(err.starts_with("undefined value in `jsonpath("), "{err}");
    }

    #[test]
    fn an_operation_on_an_undefined_value_names_it() {
        let err = error("x {{ event.body.missing + 1 }}");
        assert!(
            err.contains("undefined and number; `event.body.missing` does not exist"),
            "{err}"
        );
        // The project's filters take an undefined input as printing does.
        for source in [
            "x {{ event.body.missing | date('%Y') }}",
            "x {{ event.body.missing | b64encode }}",
            "x {{ event.body.missing | fromjson }}",
            "x {{ 'k' | hmac_sha256(event.body.missing) }}",
        ] {
            let err = error(source);
            assert!(
                err.starts_with("undefined value: `event.body.missing` does not exist"),
                "{source}: {err}"
            );
        }
    }

    #[test]
    fn a_line_inside_a_block_template_is_given() {
        let err = error("first\nsecond {{ event.body.missing }}\n");
        assert!(err.ends_with("(template line 2)"), "{err}");
        assert!(err.contains("`event.body.missing` does not exist"), "{err}");
    }
}
