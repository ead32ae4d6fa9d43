//! Templates and expressions: the sandboxed minijinja environment, and values compiled once at load.
//!
//! A workflow string is compiled into a [`ValueTemplate`]: a literal when it has no template
//! syntax, a typed expression when it is exactly one `{{ expr }}`, or a text template otherwise.
//! Text templates live in a per-workflow [`TemplateSet`] (an environment owning their compiled
//! form); expressions are compiled against one shared environment with the same configuration.

mod concat;
pub mod filters;
pub mod names;
pub mod paths;
pub mod size;
mod undefined;

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, Expression, UndefinedBehavior};
use serde_json::Value as Json;

use self::paths::Syntax;
use self::undefined::Origin;
use crate::jsonpath::JsonPath;

/// Instructions one render may execute: generous for real templates, fatal for runaway loops.
pub const FUEL_PER_RENDER: u64 = 1_000_000;
const RECURSION_LIMIT: usize = 64;

/// The one place the sandbox is configured, so expressions and templates behave alike.
fn configured_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A missing field is an error, not an empty value, so a typo or an absent field fails
    // visibly (docs/language.md, "Missing fields"). Strict rather than semi-strict, which
    // would let `{% if missing %}` pass as false.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Debug mode defaults to on in debug builds only, and changes error messages: off, they
    // read the same in tests and in a release build (`undefined` names the missing value),
    // and an error never carries the values of the context it ran on (secrets among them).
    env.set_debug(false);
    // Template names would otherwise switch HTML escaping on by extension and change output.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL_PER_RENDER));
    env.set_recursion_limit(RECURSION_LIMIT);
    // Block scalars (`|`) end with a newline that a text body should keep.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    filters::register(&mut env);
    // Printing a list or map walks all of it, recursively: check it first (see `size`).
    env.set_formatter(|out, state, value| {
        if size::is_container(value) {
            size::check(value)?;
        }
        match json_text(value) {
            Some(text) => out.write_str(&text).map_err(minijinja::Error::from),
            None => minijinja::escape_formatter(out, state, value),
        }
    });
    env
}

/// How a boolean, a null, a list or a map prints in text, as a single expression turned into
/// text does: a null as nothing, the others as JSON writes them (`true`, `["a",1]`,
/// `{"k":null}`), never in Python's words (`True`, `None`, `['a', 1]`), which is what the
/// template engine prints by default and what no receiver expects.
pub(crate) fn json_text(value: &minijinja::Value) -> Option<String> {
    use minijinja::value::ValueKind;
    match value.kind() {
        ValueKind::None => Some(String::new()),
        ValueKind::Bool | ValueKind::Seq | ValueKind::Map => serde_json::to_string(value).ok(),
        _ => None,
    }
}

static EXPRESSION_ENV: LazyLock<Environment<'static>> = LazyLock::new(configured_environment);

/// Why a template could not be compiled; positions are 1-based inside the template text.
#[derive(Debug, Clone)]
pub struct TemplateSyntaxError {
    pub message: String,
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

/// A failure while rendering: a missing value, a filter error, running out of fuel.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

impl RenderError {
    fn from_minijinja(err: &minijinja::Error, origin: &Origin<'_>) -> Self {
        let mut message = match err.kind() {
            minijinja::ErrorKind::UndefinedError => undefined::message(origin, err.range()),
            minijinja::ErrorKind::OutOfFuel => {
                "the template ran too long (out of fuel); simplify it".to_owned()
            }
            _ => {
                let mut message = match err.detail() {
                    Some(detail) => format!("{}: {detail}", err.kind()),
                    None => err.kind().to_string(),
                };
                // `undefined + 1` and the like: the operation names the type, not the value.
                if err.detail().is_some_and(|d| d.contains("undefined"))
                    && let Some(missing) = undefined::missing(origin, err.range())
                {
                    message.push_str(&format!("; {missing}"));
                }
                message
            }
        };
        if let Some(line) = err.line()
            && line > 1
        {
            message.push_str(&format!(" (template line {line})"));
        }
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        RenderError(message)
    }
}

/// The compiled text templates of one workflow.
pub struct TemplateSet {
    env: Environment<'static>,
    count: usize,
}

impl Default for TemplateSet {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TemplateSet({} templates)", self.count)
    }
}

impl TemplateSet {
    pub fn new() -> Self {
        Self {
            env: configured_environment(),
            count: 0,
        }
    }

    fn add(&mut self, source: &str) -> Result<TemplateId, TemplateSyntaxError> {
        let name = format!("t{}", self.count);
        let rewritten = concat::rewrite(source, Syntax::Template).into_owned();
        self.env
            .add_template_owned(name.clone(), rewritten)
            .map_err(|err| syntax_error(source, &err))?;
        self.count += 1;
        Ok(TemplateId(Arc::from(name)))
    }

    fn variables_of(&self, id: &TemplateId) -> BTreeSet<String> {
        self.env
            .get_template(&id.0)
            .map(|t| t.undeclared_variables(true).into_iter().collect())
            .unwrap_or_default()
    }

    fn render(&self, id: &TemplateId, ctx: &minijinja::Value) -> Result<String, RenderError> {
        let template = self.env.get_template(&id.0).map_err(|e| {
            let origin = Origin {
                source: "",
                syntax: Syntax::Template,
                context: ctx,
            };
            RenderError::from_minijinja(&e, &origin)
        })?;
        template.render(ctx).map_err(|e| {
            let origin = Origin {
                source: template.source(),
                syntax: Syntax::Template,
                context: ctx,
            };
            RenderError::from_minijinja(&e, &origin)
        })
    }
}

/// Opaque handle on a text template inside the workflow's [`TemplateSet`].
#[derive(Debug, Clone)]
pub struct TemplateId(Arc<str>);

/// A compiled boolean expression (`filter:`, `if:`).
#[derive(Clone)]
pub struct Condition {
    source: String,
    expr: Arc<Expression<'static, 'static>>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl Condition {
    pub fn compile(source: &str) -> Result<Self, TemplateSyntaxError> {
        let source = concat::rewrite(source, Syntax::Expression).into_owned();
        let expr = EXPRESSION_ENV
            .compile_expression_owned(source.clone())
            .map_err(|err| syntax_error(&source, &err))?;
        Ok(Self {
            source,
            expr: Arc::new(expr),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn variables(&self) -> BTreeSet<String> {
        self.expr.undeclared_variables(true).into_iter().collect()
    }

    pub fn evaluate(&self, ctx: &minijinja::Value) -> Result<bool, RenderError> {
        self.eval_defined(ctx).map(|v| v.is_true())
    }

    /// Strict undefined behaviour only errors when an undefined value is printed or iterated;
    /// an expression whose whole result is undefined is a typo or a missing field just the same.
    fn eval_defined(&self, ctx: &minijinja::Value) -> Result<minijinja::Value, RenderError> {
        let value = self.expr.eval(ctx).map_err(|e| {
            let origin = Origin {
                source: &self.source,
                syntax: Syntax::Expression,
                context: ctx,
            };
            RenderError::from_minijinja(&e, &origin)
        })?;
        if value.is_undefined() {
            return Err(RenderError(undefined::whole_value_message(
                &self.source,
                ctx,
            )));
        }
        Ok(value)
    }

    fn value(&self, ctx: &minijinja::Value) -> Result<Json, RenderError> {
        let value = self.eval_defined(ctx)?;
        size::check(&value).map_err(|e| RenderError(e.to_string()))?;
        serde_json::to_value(&value)
            .map_err(|e| RenderError(format!("not representable as JSON: {e}")))
    }
}

/// Any value in a workflow that may contain templates, compiled.
#[derive(Debug, Clone)]
pub enum ValueTemplate {
    /// No template syntax anywhere: used as is.
    Literal(Json),
    /// Exactly one `{{ expr }}`: keeps the expression's type.
    Expr(Condition),
    /// Text with template syntax: always renders to a string.
    Text(TemplateId),
    /// `{ jsonpath: "$..." }`: selects from `event.body`.
    JsonPath(JsonPath),
    List(Vec<ValueTemplate>),
    Map(Vec<(String, ValueTemplate)>),
}

/// What a render needs: the minijinja context and the event body for JSONPath selections.
pub struct Scope<'a> {
    pub templates: &'a TemplateSet,
    pub context: &'a minijinja::Value,
    pub event_body: &'a Json,
}

impl ValueTemplate {
    /// Compile a string: literal, typed expression, or text template.
    pub fn compile_str(set: &mut TemplateSet, source: &str) -> Result<Self, TemplateSyntaxError> {
        if !has_template_syntax(source) {
            return Ok(ValueTemplate::Literal(Json::String(source.to_owned())));
        }
        if let Some(inner) = single_expression(source) {
            let offset = source.find(inner).unwrap_or(0);
            return Condition::compile(inner)
                .map(ValueTemplate::Expr)
                .map_err(|mut e| {
                    if e.line == 1 {
                        e.col += offset;
                    }
                    e
                });
        }
        set.add(source).map(ValueTemplate::Text)
    }

    /// Whether rendering can only produce the same value every time.
    pub fn is_literal(&self) -> bool {
        matches!(self, ValueTemplate::Literal(_))
    }

    /// Every context variable the value reads, as dotted paths (`steps.build.ok`).
    pub fn variables(&self, set: &TemplateSet) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect_variables(set, &mut out);
        out
    }

    fn collect_variables(&self, set: &TemplateSet, out: &mut BTreeSet<String>) {
        match self {
            ValueTemplate::Literal(_) | ValueTemplate::JsonPath(_) => {}
            ValueTemplate::Expr(expr) => out.extend(expr.variables()),
            ValueTemplate::Text(id) => out.extend(set.variables_of(id)),
            ValueTemplate::List(items) => items.iter().for_each(|i| i.collect_variables(set, out)),
            ValueTemplate::Map(entries) => entries
                .iter()
                .for_each(|(_, v)| v.collect_variables(set, out)),
        }
    }

    pub fn render(&self, scope: &Scope<'_>) -> Result<Json, RenderError> {
        match self {
            ValueTemplate::Literal(value) => Ok(value.clone()),
            ValueTemplate::Expr(expr) => expr.value(scope.context),
            ValueTemplate::Text(id) => scope.templates.render(id, scope.context).map(Json::String),
            ValueTemplate::JsonPath(path) => Ok(path.select(scope.event_body)),
            ValueTemplate::List(items) => items
                .iter()
                .map(|item| item.render(scope))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array),
            ValueTemplate::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (key, value) in entries {
                    map.insert(key.clone(), value.render(scope)?);
                }
                Ok(Json::Object(map))
            }
        }
    }

    /// Render and require a string (URLs, header values, subjects).
    pub fn render_string(&self, scope: &Scope<'_>) -> Result<String, RenderError> {
        match self.render(scope)? {
            Json::String(s) => Ok(s),
            Json::Null => Ok(String::new()),
            Json::Bool(b) => Ok(b.to_string()),
            Json::Number(n) => Ok(n.to_string()),
            other => Err(RenderError(format!(
                "expected text, got {}",
                crate::template::json_kind(&other)
            ))),
        }
    }
}

/// Describes a JSON value's type for error messages.
pub fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// Converts JSON into a template value once, so each render only clones reference counts.
pub fn to_template_value(value: &Json) -> minijinja::Value {
    minijinja::Value::from(Serde(value))
}

/// Any serializable value as templates see it, converted in one pass (no JSON copy first).
pub fn to_template_value_of<T: serde::Serialize>(value: &T) -> minijinja::Value {
    minijinja::Value::from(Serde(value))
}

fn has_template_syntax(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// The expression inside a string that is exactly `{{ expr }}` (with optional `-` trim marks).
fn single_expression(source: &str) -> Option<&str> {
    let inner = source.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    let trimmed = inner.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

fn syntax_error(source: &str, err: &minijinja::Error) -> TemplateSyntaxError {
    let message = match err.detail() {
        Some(detail) => detail.to_owned(),
        None => err.kind().to_string(),
    };
    let (line, col, len) = match err.range() {
        Some(range) => {
            let before = &source[..range.start.min(source.len())];
            let line = before.matches('\n').count() + 1;
            let col = before
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count() + 1)
                .unwrap_or(1);
            let len = source
                .get(range.clone())
                .map(|s| s.chars().count())
                .unwrap_or(1);
            (line, col, len.max(1))
        }
        None => (err.line().unwrap_or(1), 1, 1),
    };
    TemplateSyntaxError {
        message,
        line,
        col,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(source: &str, ctx: Json) -> Result<Json, RenderError> {
        let mut set = TemplateSet::new();
        let template = ValueTemplate::compile_str(&mut set, source).expect("compiles");
        let context = to_template_value(&ctx);
        template.render(&Scope {
            templates: &set,
            context: &context,
            event_body: &ctx,
        })
    }

    #[test]
    fn text_prints_nulls_as_nothing_and_booleans_lists_and_maps_as_json() {
        let ctx = json!({
            "a": true, "b": null, "c": [true, null, "x"], "d": {"k": null, "f": false},
            "e": 1.5, "s": "plain"
        });
        let out = render("{{ a }} {{ b }} {{ c }} {{ d }} {{ e }} {{ s }}", ctx).unwrap();
        assert_eq!(
            out,
            json!(r#"true  [true,null,"x"] {"k":null,"f":false} 1.5 plain"#)
        );
    }

    /// Text made from a value never holds Python's words (`None`, `True`, `['a']`), whether
    /// the value is printed, converted with `string`, joined, or turned into text for a key
    /// that needs text (a log line, a URL, a header).
    #[test]
    fn no_python_words_in_text() {
        let ctx = json!({"n": null, "t": true, "f": false, "l": ["a", null, true], "m": {"k": null},
            "items": [{"ok": true}, {"ok": false}]});
        let cases = [
            ("{{ n | string }}", json!("")),
            ("{{ t | string }}", json!("true")),
            ("{{ l | string }}", json!(r#"["a",null,true]"#)),
            ("{{ m | string }}", json!(r#"{"k":null}"#)),
            ("{{ l | join(',') }}", json!("a,,true")),
            (
                "{{ items | join(' ', attribute='ok') }}",
                json!("true false"),
            ),
            ("{{ l | join(d='-') }}", json!("a--true")),
            ("{{ 'abc' | join('.') }}", json!("a.b.c")),
            ("x {{ t | string ~ '/' ~ n | string }}", json!("x true/")),
            // `~` joins as printing does, whatever its operands are.
            (
                "x {{ t ~ '/' ~ n ~ '/' ~ l ~ f }}",
                json!(r#"x true//["a",null,true]false"#),
            ),
            ("{{ 'n=' ~ n }}", json!("n=")),
            ("{{ 'a' ~ (1 + 2) }}", json!("a3")),
            // Text filters read a null or a boolean as printing writes it.
            (
                "[{{ n | upper }}|{{ t | upper }}|{{ n | lower }}|{{ n | trim }}]",
                json!("[|TRUE||]"),
            ),
            (
                "{{ 'abc' | upper }} {{ '  x ' | trim }} {{ 'hello world' | title }}",
                json!("ABC x Hello World"),
            ),
            (
                "{{ 'ab' | capitalize }} {{ 'xxaxx' | trim('x') }}",
                json!("Ab a"),
            ),
            (
                "[{{ n | replace('x', 'y') }}|{{ t | replace('t', 'T') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'aaa' | replace('a', 'b', count=1) }}]",
                json!("[|True|bba|baa]"),
            ),
            (
                "{{ '%s/%s/%d/%.1f' | format(n, t, 3, 2.5) }}",
                json!("/true/3/2.5"),
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(render(source, ctx.clone()).unwrap(), expected, "{source}");
        }
        let text = |source: &str| {
            let mut set = TemplateSet::new();
            let template = ValueTemplate::compile_str(&mut set, source).expect("compiles");
            let context = to_template_value(&ctx);
            template.render_string(&Scope {
                templates: &set,
                context: &context,
                event_body: &ctx,
            })
        };
        // A log line, a URL, a header value.
        assert_eq!(text("{{ n }}").unwrap(), "");
        assert_eq!(text("null is {{ n }}.").unwrap(), "null is .");
        assert_eq!(
            text("https://x.test/{{ t }}?f={{ f }}").unwrap(),
            "https://x.test/true?f=false"
        );
        assert_eq!(text("{{ t }}").unwrap(), "true");
        assert_eq!(text("tags: {{ l }}").unwrap(), r#"tags: ["a",null,true]"#);
        let err = text("{{ l }}").unwrap_err();
        assert_eq!(err.0, "expected text, got a list");
        // Error messages echo values as JSON writes them.
        for (source, words) in [
            ("{{ n | date }}", "cannot read null as a date"),
            ("{{ 1 | json(indent=t) }}", "got true"),
            ("{{ n | fromjson }}", "expected a string, got null"),
            (
                "{{ 'x' | hmac_sha256(n) }}",
                "key must be a string or bytes, got null",
            ),
        ] {
            let err = render(source, ctx.clone()).unwrap_err();
            assert!(err.0.contains(words), "{source}: {err}");
            assert!(
                !err.0.contains("None") && !err.0.contains("True"),
                "{source}: {err}"
            );
        }
    }

    #[test]
    fn a_single_expression_keeps_its_type() {
        let ctx = json!({"n": 3, "list": [1, 2], "obj": {"a": true}});
        assert_eq!(render("{{ n }}", ctx.clone()).unwrap(), json!(3));
        assert_eq!(render("{{ list }}", ctx.clone()).unwrap(), json!([1, 2]));
        assert_eq!(
            render("{{- obj -}}", ctx.clone()).unwrap(),
            json!({"a": true})
        );
        assert_eq!(render("n={{ n }}", ctx.clone()).unwrap(), json!("n=3"));
        assert_eq!(render("{{ n }}{{ n }}", ctx.clone()).unwrap(), json!("33"));
        assert_eq!(render("plain", ctx).unwrap(), json!("plain"));
    }

    #[test]
    fn undefined_values_are_errors() {
        let err = render("{{ missing.field }}", json!({})).unwrap_err();
        assert!(err.0.contains("undefined"), "{err}");
        let err = render("x {{ a.b }}", json!({"a": {}})).unwrap_err();
        assert!(err.0.contains("undefined"), "{err}");
        let err = render("{{ a.b }}", json!({"a": {}})).unwrap_err();
        assert!(err.0.contains("`a.b` does not exist"), "{err}");
        assert!(
            Condition::compile("a.b")
                .unwrap()
                .evaluate(&to_template_value(&json!({"a": {}})))
                .is_err()
        );
        assert!(
            !Condition::compile("a.b is defined")
                .unwrap()
                .evaluate(&to_template_value(&json!({"a": {}})))
                .unwrap()
        );
        assert_eq!(
            render("{{ a.b | default('d') }}", json!({"a": {}})).unwrap(),
            json!("d")
        );
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            json!({}),
        )
        .unwrap_err();
        assert!(err.0.contains("fuel"), "{err}");
    }

    /// Found with the `template` fuzz target (`fuzz/`): values a few instructions build but no
    /// render can walk. A lazily repeated list, printed, converted or serialized, ran without
    /// bound (gigabytes of memory, minutes) since fuel is only charged for what is visited.
    #[test]
    fn values_too_large_to_walk_are_refused() {
        let huge = "[[1] * 100000000] * 100000000";
        let sources = [
            format!("{{{{ {huge} }}}}"),
            format!("x {{{{ {huge} }}}}"),
            format!("{{% set x %}}{{{{ {huge} }}}}{{% endset %}}{{{{ x | length }}}}"),
            format!("{{{{ ({huge}) | json }}}}"),
            format!("{{{{ ({huge}) | tojson }}}}"),
            format!("{{{{ ({huge}) | yaml }}}}"),
            format!("{{{{ ({huge}) | string }}}}"),
            format!("{{{{ ({huge}) | pprint }}}}"),
            format!("{{{{ ({huge}) | jsonpath('$[0][0]') }}}}"),
        ];
        for source in sources {
            let err = render(&source, json!({})).unwrap_err();
            assert!(err.0.contains("more than 1000000 items"), "{source}: {err}");
        }
        // What fits is untouched.
        assert_eq!(
            render("{{ [[1] * 2] * 2 }}", json!({})).unwrap(),
            json!([[1, 1], [1, 1]])
        );
        assert_eq!(
            render("{{ ([1] * 3) | tojson }}", json!({})).unwrap(),
            json!("[1, 1, 1]")
        );
    }

    /// Found with the `template` fuzz target: a value wrapped in itself in a loop, printed or
    /// serialized, recursed once per level and overflowed the stack (from 10,000 levels on a
    /// 2 MiB worker thread), which aborts the process.
    #[test]
    fn values_nested_too_deep_are_refused() {
        let build = "{% set ns = namespace(v=1) %}{% for i in range(1000) %}{% set ns.v = [ns.v] %}{% endfor %}";
        for print in [
            "{{ ns.v }}",
            "{{ ns.v | tojson }}",
            "{{ ns.v | json }}",
            "{{ ns.v | string }}",
            "{{ ns.v | pprint }}",
        ] {
            let err = render(&format!("{build}{print}"), json!({})).unwrap_err();
            assert!(err.0.contains("nested deeper than 128"), "{print}: {err}");
        }
        let nested = |depth: usize| (0..depth).fold(json!(1), |inner, _| json!([inner]));
        let err = render("{{ v }}", json!({ "v": nested(200) })).unwrap_err();
        assert!(err.0.contains("nested deeper than 128"), "{err}");
        // A payload as deep as a body may be (64 levels) still goes through.
        assert_eq!(
            render("{{ v }}", json!({ "v": nested(64) })).unwrap(),
            nested(64)
        );
    }

    #[test]
    fn syntax_errors_point_into_the_text() {
        let mut set = TemplateSet::new();
        let err = ValueTemplate::compile_str(&mut set, "hello {{ user. }}").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.col > 6, "{err:?}");
        let err = ValueTemplate::compile_str(&mut set, "{{ a + }}").unwrap_err();
        assert!(err.col >= 4, "{err:?}");
    }

    #[test]
    fn variables_are_reported_as_dotted_paths() {
        let mut set = TemplateSet::new();
        let t = ValueTemplate::compile_str(&mut set, "{{ steps.build.ok }} {{ vars.x }}").unwrap();
        let vars = t.variables(&set);
        assert!(vars.contains("steps.build.ok"), "{vars:?}");
        assert!(vars.contains("vars.x"), "{vars:?}");
    }
}
