//! Checking a workflow's node tree and compiling it: every problem is collected, none stops the pass.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::paths::{Binding, Form, Reading};
use super::units::{parse_duration, parse_size};
use super::yaml::{Key, Node, NodeValue};
use crate::diag::{Diagnostic, Diagnostics, SourceFile, Span, closest};
use crate::jsonpath::JsonPath;
use crate::run::{Backoff, RetryPolicy, StatusPattern};
use crate::template::names::{self, Calls};
use crate::template::paths::Syntax;
use crate::template::{Condition, TemplateSet, TemplateSyntaxError, ValueTemplate};

/// The names a template may read at the point it is compiled.
#[derive(Debug, Default, Clone)]
pub struct Scope {
    /// Steps that ran before the one being compiled.
    pub earlier_steps: BTreeSet<String>,
    /// Every step of the workflow, to tell "runs later" from "does not exist".
    pub all_steps: BTreeSet<String>,
    pub vars: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    /// Names bound by an enclosing construct, readable as top-level variables.
    pub locals: BTreeSet<String>,
    /// What some of those names stand for, for checks against sample payloads.
    pub bindings: BTreeMap<String, Binding>,
    /// Expressions known to hold here: the step's `if`, the `filter` steps above it in its
    /// block. For checks against sample payloads (`is defined` in them guards a path).
    pub assumptions: Vec<Reading>,
}

pub const CONTEXT_ROOTS: &[&str] = &["event", "vars", "steps", "secrets", "run"];
const EVENT_FIELDS: &[&str] = &[
    "id",
    "method",
    "path",
    "params",
    "query",
    "headers",
    "body",
    "raw",
    "files",
    "received_at",
    "trigger",
    "scheduled_at",
    "started_by",
];
const RUN_FIELDS: &[&str] = &[
    "id",
    "workflow",
    "attempt",
    "error",
    "failed_step",
    "caller",
];
/// Names of the template language, bound by the construct they belong to, which minijinja
/// reports as variables; the environment's functions (`template::names::functions`) too.
const TEMPLATE_NAMES: &[&str] = &["loop", "self", "super", "varargs", "kwargs", "caller"];

/// What the server allows, which decides whether some workflows are valid.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// `exec` steps run local commands; a server must enable them explicitly.
    pub exec_enabled: bool,
    /// The retry policy of steps whose workflow and step say nothing.
    pub default_retry: RetryPolicy,
    /// Whether the server has a sender for `email` steps without `from` (`email.from`):
    /// `Some(false)` makes such a step an error at load; `None` when the settings are not known.
    pub default_sender: Option<bool>,
}

/// The keys of a `retry:` mapping.
pub const RETRY_KEYS: &[&str] = &["attempts", "backoff", "initial", "max", "on"];

/// Shared state while compiling one workflow file.
pub struct Compiler {
    pub file: Arc<SourceFile>,
    pub options: CompileOptions,
    pub diagnostics: Diagnostics,
    pub templates: TemplateSet,
    pub scope: Scope,
    /// The retry policy a step gets when it says nothing: the workflow's or the server's.
    pub retry_default: RetryPolicy,
    /// Every template, expression and JSONPath query compiled, for `validate --payload`.
    pub readings: Vec<Reading>,
}

/// The entries of a mapping after its keys were checked against what the schema allows.
pub struct Fields<'n> {
    entries: Vec<(&'n Key, &'n Node)>,
    pub span: Span,
}

impl<'n> Fields<'n> {
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| *v)
    }

    pub fn key(&self, name: &str) -> Option<&'n Key> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(k, _)| *k)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl Compiler {
    pub fn new(file: Arc<SourceFile>, options: CompileOptions) -> Self {
        Self {
            retry_default: options.default_retry.clone(),
            file,
            options,
            diagnostics: Diagnostics::default(),
            templates: TemplateSet::new(),
            scope: Scope::default(),
            readings: Vec::new(),
        }
    }

    fn record(&mut self, form: Form, node: &Node, source: &str) {
        self.readings.push(Reading {
            form,
            source: source.to_owned(),
            node: node.clone(),
            bindings: self.scope.bindings.clone(),
            assumptions: self.scope.assumptions.clone(),
            expects_list: false,
            presence_test: false,
        });
    }

    /// Binds a `foreach` item name to the elements of its `items` value, compiled from `items`
    /// since `mark` (the length of `readings` before), when that value is one template or
    /// query; else the name stands for nothing followable, hiding an outer one. Returns the
    /// bindings to restore after the loop's steps.
    pub fn bind_item(
        &mut self,
        name: &str,
        items: &Node,
        mark: usize,
    ) -> BTreeMap<String, Binding> {
        let saved = self.scope.bindings.clone();
        let whole_value = items.as_str().is_some()
            || items
                .as_map()
                .is_some_and(|entries| entries.len() == 1 && entries[0].0.name == "jsonpath");
        let single = self.readings.len() == mark + 1;
        match self.readings.get_mut(mark) {
            Some(reading) if whole_value && single => {
                reading.expects_list = true;
                let binding = Binding::ItemOf(Box::new(reading.clone()));
                self.scope.bindings.insert(name.to_owned(), binding);
            }
            _ => {
                self.scope.bindings.remove(name);
            }
        }
        saved
    }

    /// Takes the expressions compiled since `mark` (the length of `readings` before) as holding
    /// for what is compiled from now on in this scope.
    pub fn assume_since(&mut self, mark: usize) {
        let held: Vec<Reading> = self
            .readings
            .iter()
            .skip(mark)
            .filter(|r| r.form == Form::Expression)
            .cloned()
            .collect();
        self.scope.assumptions.extend(held);
    }

    /// Marks the JSONPath queries compiled since `mark` as tests of presence (`exists`).
    pub fn presence_tests_since(&mut self, mark: usize) {
        for reading in self.readings.iter_mut().skip(mark) {
            if reading.form == Form::JsonPath {
                reading.presence_test = true;
            }
        }
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.error(span, message);
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Warn (not refuse) when a URL template lets the payload pick the scheme or host: a sender
    /// could then aim the server's requests anywhere it can reach.
    pub fn warn_if_host_from_payload(&mut self, node: &Node, what: &str) {
        if let NodeValue::Str(text) = &node.value
            && host_from_payload(text)
        {
            self.push(
                Diagnostic::warning(
                    node.span.clone(),
                    format!(
                        "the host of {what} comes from the payload (`event`): a sender can aim this request anywhere the server can reach"
                    ),
                )
                .with_hint(
                    "name the host in the workflow, or close egress in hookflow.yaml (README: Closing egress)",
                ),
            );
        }
    }

    /// The entries of a mapping, or a located error naming what should have been one.
    pub fn mapping<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Key, Node)]> {
        let entries = node.as_map();
        if entries.is_none() {
            self.error(
                node.span.clone(),
                format!("{what} must be a mapping, found {}", node.kind_name()),
            );
        }
        entries
    }

    /// A mapping whose keys must come from `allowed`; `required` keys must be present.
    /// Unknown keys are reported with the closest allowed key as a hint.
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
        required: &[&str],
    ) -> Option<Fields<'n>> {
        let entries = self.mapping(node, what)?;
        let mut kept = Vec::new();
        for (key, value) in entries {
            if allowed.contains(&key.name.as_str()) {
                kept.push((key, value));
            } else {
                let mut d = Diagnostic::error(
                    key.span.clone(),
                    format!("unknown key '{}' in {what}", key.name),
                );
                d = match closest(&key.name, allowed.iter().copied()) {
                    Some(near) => d.with_hint(format!("did you mean '{near}'?")),
                    None => d.with_hint(format!("expected one of: {}", allowed.join(", "))),
                };
                self.push(d);
            }
        }
        for name in required {
            if !entries.iter().any(|(k, _)| k.name == *name) {
                self.error(
                    node.span.clone(),
                    format!("{what} is missing the required key '{name}'"),
                );
            }
        }
        Some(Fields {
            entries: kept,
            span: node.span.clone(),
        })
    }

    pub fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            NodeValue::Str(s) => Some(s.clone()),
            NodeValue::Int(i) => Some(i.to_string()),
            NodeValue::Float(f) => Some(f.to_string()),
            NodeValue::Bool(b) => Some(b.to_string()),
            _ => {
                self.error(
                    node.span.clone(),
                    format!("{what} must be a string, found {}", node.kind_name()),
                );
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            NodeValue::Bool(b) => Some(*b),
            _ => {
                self.error(
                    node.span.clone(),
                    format!("{what} must be true or false, found {}", node.kind_name()),
                );
                None
            }
        }
    }

    pub fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Span)>> {
        match &node.value {
            NodeValue::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(s) = self.string(item, what) {
                        out.push((s, item.span.clone()));
                    }
                }
                Some(out)
            }
            NodeValue::Str(s) => Some(vec![(s.clone(), node.span.clone())]),
            _ => {
                self.error(
                    node.span.clone(),
                    format!(
                        "{what} must be a list of strings, found {}",
                        node.kind_name()
                    ),
                );
                None
            }
        }
    }

    pub fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = self.string(node, what)?;
        match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                self.push(
                    Diagnostic::error(
                        node.span.clone(),
                        format!("{what}: '{text}' is not a duration"),
                    )
                    .with_hint("write a number and a unit: 500ms, 30s, 5m, 1h"),
                );
                None
            }
        }
    }

    /// A rate (`50/s`, `600/m`, `1000/h`) as events per second.
    pub fn rate(&mut self, node: &Node, what: &str) -> Option<f64> {
        let text = self.string(node, what)?;
        let rate = crate::lang::units::parse_rate(&text);
        if rate.is_none() {
            self.push(
                Diagnostic::error(node.span.clone(), format!("'{text}' is not a rate")).with_hint(
                    "write a count above 0 per second, minute or hour: 50/s, 600/m, 1000/h",
                ),
            );
        }
        rate
    }

    /// A bucket's `burst`: a whole number, at least 1.
    pub fn burst(&mut self, node: &Node) -> Option<u32> {
        match node.value {
            NodeValue::Int(i) if i >= 1 && i <= i64::from(u32::MAX) => Some(i as u32),
            _ => {
                self.error(node.span.clone(), "`burst` is a whole number, at least 1");
                None
            }
        }
    }

    pub fn size(&mut self, node: &Node, what: &str) -> Option<usize> {
        if let NodeValue::Int(i) = node.value
            && i > 0
        {
            return Some(i as usize);
        }
        let text = self.string(node, what)?;
        match parse_size(&text) {
            Some(s) => Some(s),
            None => {
                self.push(
                    Diagnostic::error(node.span.clone(), format!("{what}: '{text}' is not a size"))
                        .with_hint("write bytes or a number and a unit: 512KiB, 1MiB, 10MB"),
                );
                None
            }
        }
    }

    /// A value that may hold templates anywhere inside it; `{jsonpath: ...}` selects from the body.
    pub fn value(&mut self, node: &Node) -> Option<ValueTemplate> {
        match &node.value {
            NodeValue::Str(s) => self.template_str(node, s),
            NodeValue::Seq(items) => {
                let compiled: Vec<Option<ValueTemplate>> =
                    items.iter().map(|i| self.value(i)).collect();
                let compiled: Option<Vec<ValueTemplate>> = compiled.into_iter().collect();
                let compiled = compiled?;
                if compiled.iter().all(ValueTemplate::is_literal) {
                    Some(ValueTemplate::Literal(node.to_json()))
                } else {
                    Some(ValueTemplate::List(compiled))
                }
            }
            NodeValue::Map(entries) => {
                if entries.len() == 1 && entries[0].0.name == "jsonpath" {
                    return self.jsonpath(&entries[0].1).map(ValueTemplate::JsonPath);
                }
                let mut out = Vec::new();
                let mut ok = true;
                for (key, value) in entries {
                    match self.value(value) {
                        Some(v) => out.push((key.name.clone(), v)),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                if out.iter().all(|(_, v)| v.is_literal()) {
                    Some(ValueTemplate::Literal(node.to_json()))
                } else {
                    Some(ValueTemplate::Map(out))
                }
            }
            _ => Some(ValueTemplate::Literal(node.to_json())),
        }
    }

    /// A value that must be text (a URL, a header, a subject): numbers and booleans are taken as text.
    pub fn text(&mut self, node: &Node, what: &str) -> Option<ValueTemplate> {
        match &node.value {
            NodeValue::Str(s) => self.template_str(node, s),
            NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => {
                let s = self.string(node, what)?;
                Some(ValueTemplate::Literal(serde_json::Value::String(s)))
            }
            _ => {
                self.error(
                    node.span.clone(),
                    format!("{what} must be a string, found {}", node.kind_name()),
                );
                None
            }
        }
    }

    /// A mapping of names to text templates (headers, query parameters).
    pub fn text_map(&mut self, node: &Node, what: &str) -> Option<Vec<(String, ValueTemplate)>> {
        let entries = self.mapping(node, what)?;
        let mut out = Vec::new();
        for (key, value) in entries {
            if let Some(v) = self.value(value) {
                out.push((key.name.clone(), v));
            }
        }
        Some(out)
    }

    fn template_str(&mut self, node: &Node, source: &str) -> Option<ValueTemplate> {
        match ValueTemplate::compile_str(&mut self.templates, source) {
            Ok(template) => {
                if !template.is_literal() {
                    self.record(Form::Template, node, source);
                }
                let calls = self.check_calls(node, source, Syntax::Template);
                let variables = template.variables(&self.templates);
                self.check_references(node, source, &variables, false, &calls);
                Some(template)
            }
            Err(err) => {
                self.template_error(node, &err, "template");
                None
            }
        }
    }

    /// A minijinja expression without braces (`filter:`, `if:`).
    pub fn condition(&mut self, node: &Node, what: &str) -> Option<Condition> {
        let source = match &node.value {
            NodeValue::Str(s) => s.clone(),
            NodeValue::Bool(b) => b.to_string(),
            _ => {
                self.error(
                    node.span.clone(),
                    format!("{what} must be an expression, found {}", node.kind_name()),
                );
                return None;
            }
        };
        if source.trim_start().starts_with("{{") {
            self.push(
                Diagnostic::error(
                    node.span.clone(),
                    format!("{what} is an expression and takes no {{{{ }}}}"),
                )
                .with_hint(format!(
                    "write `{}` without the braces",
                    source
                        .trim()
                        .trim_start_matches("{{")
                        .trim_end_matches("}}")
                        .trim()
                )),
            );
            return None;
        }
        match Condition::compile(&source) {
            Ok(condition) => {
                if node.as_str().is_some() {
                    self.record(Form::Expression, node, &source);
                }
                let calls = self.check_calls(node, &source, Syntax::Expression);
                let variables = condition.variables();
                self.check_references(node, &source, &variables, true, &calls);
                Some(condition)
            }
            Err(err) => {
                self.template_error(node, &err, "expression");
                None
            }
        }
    }

    /// A `retry:` mapping; keys it leaves out keep the values of `base`.
    pub fn retry_policy(&mut self, node: &Node, base: &RetryPolicy) -> Option<RetryPolicy> {
        let fields = self.fields(node, "`retry`", RETRY_KEYS, &[])?;
        let mut policy = base.clone();
        if let Some(n) = fields.get("attempts") {
            match n.value {
                NodeValue::Int(i) if (1..=100).contains(&i) => policy.attempts = i as u32,
                _ => {
                    self.error(
                        n.span.clone(),
                        "`attempts` is the number of tries in all, from 1 to 100",
                    );
                    return None;
                }
            }
        }
        if let Some(n) = fields.get("backoff") {
            policy.backoff = match self.string(n, "`backoff`")?.as_str() {
                "exponential" => Backoff::Exponential,
                "fixed" => Backoff::Fixed,
                other => {
                    self.error(
                        n.span.clone(),
                        format!("unknown backoff '{other}'; expected exponential or fixed"),
                    );
                    return None;
                }
            };
        }
        if let Some(n) = fields.get("initial") {
            policy.initial = self.duration(n, "`initial`")?;
        }
        if let Some(n) = fields.get("max") {
            policy.max = self.duration(n, "`max`")?;
        }
        if let Some(n) = fields.get("on") {
            let items: Vec<&Node> = match &n.value {
                NodeValue::Seq(items) => items.iter().collect(),
                _ => vec![n],
            };
            policy.on.clear();
            for item in items {
                let text = self.string(item, "`on`")?;
                match StatusPattern::parse(&text) {
                    Some(m) => policy.on.push(m),
                    None => {
                        self.error(
                            item.span.clone(),
                            format!("'{text}' is not an HTTP status; write a code such as 409 or a class such as 4xx"),
                        );
                        return None;
                    }
                }
            }
        }
        if policy.max < policy.initial {
            self.error(
                fields.span.clone(),
                "`retry`: `max` is shorter than `initial`",
            );
            return None;
        }
        Some(policy)
    }

    pub fn jsonpath(&mut self, node: &Node) -> Option<JsonPath> {
        let source = self.string(node, "jsonpath")?;
        match JsonPath::compile(&source) {
            Ok(path) => {
                self.record(Form::JsonPath, node, &source);
                Some(path)
            }
            Err(err) => {
                let col = err.column.unwrap_or(1);
                let span = node.span_within(1, col, 1);
                self.error(span, err.to_string());
                None
            }
        }
    }

    fn template_error(&mut self, node: &Node, err: &TemplateSyntaxError, what: &str) {
        let span = node.span_within(err.line, err.col, err.len);
        self.error(span, format!("{what} syntax error: {}", err.message));
    }

    /// Every filter, test, function and method a template calls must exist.
    fn check_calls(&mut self, node: &Node, source: &str, syntax: Syntax) -> Calls {
        let calls = names::check(source, syntax);
        for problem in &calls.problems {
            let span = node.span_within(problem.line, problem.col, problem.len);
            self.push(
                Diagnostic::error(span, problem.message.clone()).with_hint(problem.hint.clone()),
            );
        }
        calls
    }

    /// Every variable a template reads must exist at that point of the workflow.
    fn check_references(
        &mut self,
        node: &Node,
        source: &str,
        variables: &BTreeSet<String>,
        whole_is_expression: bool,
        calls: &Calls,
    ) {
        let mut references: Vec<(String, Option<String>, String)> = Vec::new();
        for path in variables {
            let mut parts = path.split('.');
            let Some(root) = parts.next() else { continue };
            let field = parts.next().map(str::to_owned);
            let needle = match &field {
                Some(f) => format!("{root}.{f}"),
                None => root.to_owned(),
            };
            references.push((root.to_owned(), field, needle));
        }
        // minijinja reports `steps['a-b'].ok` and `vars.x[:7]` only by their root; read those
        // references from the expression text so they are checked too.
        for (root, field, needle) in scan_references(source, whole_is_expression) {
            if !references
                .iter()
                .any(|(r, f, _)| *r == root && f.as_deref() == Some(field.as_str()))
            {
                references.push((root, Some(field), needle));
            }
        }
        for (root, field, needle) in &references {
            let root = root.as_str();
            let field = field.as_deref();
            // A called name is a function, checked by `check_calls`.
            if self.scope.locals.contains(root)
                || TEMPLATE_NAMES.contains(&root)
                || names::is_function(root)
                || calls.functions.contains(root)
            {
                continue;
            }
            let problem = match (root, field) {
                ("event", Some(f)) if !EVENT_FIELDS.contains(&f) => Some((
                    format!("`event` has no field '{f}'"),
                    hint_for(f, EVENT_FIELDS, "event fields"),
                    format!("event.{f}"),
                )),
                ("run", Some(f)) if !RUN_FIELDS.contains(&f) => Some((
                    format!("`run` has no field '{f}'"),
                    hint_for(f, RUN_FIELDS, "run fields"),
                    format!("run.{f}"),
                )),
                ("steps", Some(name)) if !self.scope.earlier_steps.contains(name) => {
                    if self.scope.all_steps.contains(name) {
                        Some((
                            format!(
                                "step '{name}' runs after this point; its output is not available here"
                            ),
                            "a template can only read steps that ran before it".to_owned(),
                            format!("steps.{name}"),
                        ))
                    } else {
                        let names: Vec<&str> =
                            self.scope.all_steps.iter().map(String::as_str).collect();
                        Some((
                            format!("no step named '{name}'"),
                            hint_for(name, &names, "steps"),
                            format!("steps.{name}"),
                        ))
                    }
                }
                ("vars", Some(name)) if !self.scope.vars.contains(name) => {
                    let names: Vec<&str> = self.scope.vars.iter().map(String::as_str).collect();
                    Some((
                        format!("no variable named '{name}' is set before this point"),
                        hint_for(name, &names, "vars"),
                        format!("vars.{name}"),
                    ))
                }
                ("secrets", Some(name)) if !self.scope.secrets.contains(name) => Some((
                    format!("secret '{name}' is not declared"),
                    "add it to the workflow's `secrets:` list".to_owned(),
                    format!("secrets.{name}"),
                )),
                (root, _) if !CONTEXT_ROOTS.contains(&root) => {
                    let mut known: Vec<&str> = CONTEXT_ROOTS.to_vec();
                    known.extend(self.scope.locals.iter().map(String::as_str));
                    Some((
                        format!("unknown variable '{root}'"),
                        hint_for(root, &known, "variables"),
                        root.to_owned(),
                    ))
                }
                _ => None,
            };
            if let Some((message, hint, _)) = problem {
                let span = locate_in_scalar(node, source, needle);
                self.push(Diagnostic::error(span, message).with_hint(hint));
            }
        }
    }
}

/// References written `root.name` or `root['name']` inside the expression parts of a template
/// (or anywhere in an expression): (root, name, the text as written).
fn scan_references(source: &str, whole_is_expression: bool) -> Vec<(String, String, String)> {
    static PATTERN: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?:^|[^A-Za-z0-9_.\]'"])((steps|vars|secrets|event|run)(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:'([^']*)'|"([^"]*)")\s*\]))"#,
        )
        .ok()
    });
    let Some(pattern) = PATTERN.as_ref() else {
        return Vec::new();
    };
    let regions: Vec<&str> = if whole_is_expression {
        vec![source]
    } else {
        expression_regions(source)
    };
    let mut found = Vec::new();
    for region in regions {
        for caps in pattern.captures_iter(region) {
            let (Some(text), Some(root)) = (caps.get(1), caps.get(2)) else {
                continue;
            };
            let Some(field) = caps.get(3).or(caps.get(4)).or(caps.get(5)) else {
                continue;
            };
            found.push((
                root.as_str().to_owned(),
                field.as_str().to_owned(),
                text.as_str().to_owned(),
            ));
        }
    }
    found
}

/// The text inside `{{ }}` and `{% %}` of a template.
fn expression_regions(source: &str) -> Vec<&str> {
    let mut regions = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start..];
        let close = if after.starts_with("{{") {
            "}}"
        } else if after.starts_with("{%") {
            "%}"
        } else {
            rest = &rest[start + 1..];
            continue;
        };
        match after[2..].find(close) {
            Some(end) => {
                regions.push(&after[2..2 + end]);
                rest = &after[2 + end + 2..];
            }
            None => break,
        }
    }
    regions
}

fn hint_for(word: &str, candidates: &[&str], what: &str) -> String {
    match closest(word, candidates.iter().copied()) {
        Some(near) => format!("did you mean '{near}'?"),
        None if candidates.is_empty() => format!("there are no {what} here"),
        None => format!("known {what}: {}", candidates.join(", ")),
    }
}

/// The span of `needle` inside a string scalar, or the scalar itself when it cannot be found.
fn locate_in_scalar(node: &Node, source: &str, needle: &str) -> Span {
    match source.find(needle) {
        Some(offset) => {
            let before = &source[..offset];
            let line = before.matches('\n').count() + 1;
            let col = before
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count() + 1)
                .unwrap_or(1);
            node.span_within(line, col, needle.chars().count())
        }
        None => node.span.clone(),
    }
}

/// Whether a URL template reads `event` in a tag before its path starts: in the scheme or host,
/// or in a leading tag that may produce the whole URL.
pub fn host_from_payload(url: &str) -> bool {
    let reads_event = |tag: &str| {
        tag.match_indices("event").any(|(i, _)| {
            let before = tag[..i].chars().next_back();
            let after = tag[i + "event".len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !word(before) && !word(after)
        })
    };
    let mut outside = String::new();
    let mut rest = url;
    loop {
        let next_tag = [rest.find("{{"), rest.find("{%")]
            .into_iter()
            .flatten()
            .min();
        outside.push_str(&rest[..next_tag.unwrap_or(rest.len())]);
        // The host part is over at the first `/`, `?` or `#` after `://` (or before any).
        let host_part = outside
            .split_once("://")
            .map_or(outside.as_str(), |(_, r)| r);
        if host_part.contains(['/', '?', '#']) {
            return false;
        }
        let Some(start) = next_tag else {
            return false;
        };
        let close = if rest[start..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let end = rest[start..]
            .find(close)
            .map_or(rest.len(), |e| start + e + 2);
        if reads_event(&rest[start..end]) {
            return true;
        }
        // The tag's output stands in the host part.
        outside.push('x');
        rest = &rest[end..];
    }
}

/// A workflow's or a step's name: letters, digits, `-`, `_` and `.`, not empty.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_host_from_the_payload_is_noticed_and_a_path_from_it_is_not() {
        for url in [
            "{{ event.body.callback_url }}",
            "https://{{ event.body.tenant }}.example.com/hook",
            "https://api.example.com:{{ event.query.port }}/x",
            "{% if event.body.a %}https://a.test{% else %}https://b.test{% endif %}/x",
            "{{event['headers']['x-target']}}/path",
        ] {
            assert!(host_from_payload(url), "{url}");
        }
        for url in [
            "https://api.example.com/orders/{{ event.body.id }}",
            "https://api.example.com?id={{ event.body.id }}",
            "https://{{ vars.host }}/x/{{ event.body.id }}",
            "https://{{ secrets.HOST }}/",
            "https://example.com/{{ prevent }}",
            "https://{{ events_host }}/",
        ] {
            assert!(!host_from_payload(url), "{url}");
        }
    }
}
