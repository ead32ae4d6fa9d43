//! Workflows: a YAML file compiled into an immutable [`Workflow`], and the set of them a server
//! serves ([`Registry`], with its route table). Nothing here runs a step.

mod body_schema;
mod calls;
mod load;
mod registry;
mod replay;
pub mod routes;
pub mod runs;
pub mod schedule;
pub mod schema;
mod webhook;

use body_schema::compile_body_schema;
pub use body_schema::{BodySchema, MAX_VIOLATIONS, Violation};
use calls::*;
pub use load::*;
pub use replay::kept_by_replay;
pub use webhook::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, Diagnostics, SourceFile, Span, closest};
pub use crate::lang::compile::CompileOptions;
use crate::lang::compile::{self, Compiler, Fields, valid_name};
use crate::lang::paths::Reading;
use crate::lang::yaml::{self, Node};
use crate::run::ConcurrencyMode;
use crate::steps::{self, Step};
use crate::template::{TemplateSet, ValueTemplate};
use crate::verify;
pub use registry::{Registry, ReloadStatus, SharedRegistry, SharedReloadStatus};
use routes::RoutePattern;

pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "on",
    "secrets",
    "vars",
    "retry",
    "steps",
    "on_error",
    "concurrency",
    "timeout",
];
pub const TRIGGER_KEYS: &[&str] = &["webhook", "schedule"];
/// The keys of a `concurrency:` mapping.
pub const CONCURRENCY_KEYS: &[&str] = &["key", "limit", "mode"];
/// What `concurrency.mode` may be.
pub const CONCURRENCY_MODES: &[&str] = &["queue", "cancel_previous", "skip"];
/// A workflow compiled from one file: templates and JSONPath parsed once, never changed after.
#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    /// Where the name is written (or the file start when it defaults to the file stem).
    pub name_span: Span,
    pub description: Option<String>,
    pub source: Arc<SourceFile>,
    /// A digest of the source text: runs remember which definition they started with.
    pub version: String,
    pub webhook: Option<WebhookTrigger>,
    /// `on.schedule`: when the scheduler starts a run on its own (none: never).
    pub schedules: Vec<schedule::Schedule>,
    pub secrets: Vec<String>,
    pub vars: Vec<(String, ValueTemplate)>,
    pub steps: Vec<Step>,
    /// Steps run when the run fails for good, with `run.error` and `run.failed_step` set.
    pub on_error: Vec<Step>,
    pub templates: TemplateSet,
    /// `concurrency:`: how many runs with the same key run at once.
    pub concurrency: Option<Concurrency>,
    /// `timeout:`: a run still going this long after it started fails.
    pub timeout: Option<std::time::Duration>,
}

/// `concurrency:`: at most `limit` runs with the same rendered `key` run at once.
#[derive(Debug, Clone)]
pub struct Concurrency {
    /// Rendered from the event when it is accepted (like a dedupe key).
    pub key: ValueTemplate,
    pub limit: u32,
    pub mode: ConcurrencyMode,
}

/// The digest that names a workflow definition.
pub fn version_of(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Compile one workflow file. The default name is the file stem.
pub fn compile_file(
    file: Arc<SourceFile>,
    options: &CompileOptions,
) -> (Option<Workflow>, Diagnostics) {
    let (workflow, diagnostics, _) = compile_file_with_readings(file, options);
    (workflow, diagnostics)
}

/// Compile one workflow file, keeping every template, expression and query it compiled (for
/// checks against sample payloads).
pub fn compile_file_with_readings(
    file: Arc<SourceFile>,
    options: &CompileOptions,
) -> (Option<Workflow>, Diagnostics, Vec<Reading>) {
    let mut c = Compiler::new(Arc::clone(&file), options.clone());
    let node = match yaml::parse(&file) {
        Ok(node) => node,
        Err(d) => {
            c.push(d);
            return (None, c.diagnostics, Vec::new());
        }
    };
    let workflow = compile_workflow(&mut c, &node);
    let diagnostics = std::mem::take(&mut c.diagnostics);
    let readings = std::mem::take(&mut c.readings);
    if diagnostics.has_errors() {
        (None, diagnostics, readings)
    } else {
        (workflow, diagnostics, readings)
    }
}

/// One workflow from its top-level mapping, in the order its parts depend on each other: name,
/// triggers, secrets and retry default, every step name, `vars`, then the steps themselves.
fn compile_workflow(c: &mut Compiler, node: &Node) -> Option<Workflow> {
    let fields = c.fields(node, "a workflow", TOP_LEVEL_KEYS, &["steps"])?;
    let name = workflow_name(c, &fields);
    let description = fields
        .get("description")
        .and_then(|n| c.string(n, "`description`"));
    // `verify` secrets are templates over `secrets`, so the declared names must be known before
    // the trigger compiles; the declaration itself is checked (and reported) below.
    c.scope.secrets = fields
        .get("secrets")
        .and_then(|n| n.as_seq())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let (webhook, schedules) = fields
        .get("on")
        .map(|n| compile_triggers(c, n))
        .unwrap_or_default();
    let concurrency = fields
        .get("concurrency")
        .and_then(|n| compile_concurrency(c, n));
    let timeout = fields
        .get("timeout")
        .and_then(|n| c.duration(n, "`timeout`"));

    let secrets = fields
        .get("secrets")
        .map(|n| compile_secrets(c, n))
        .unwrap_or_default();
    c.scope.secrets = secrets.iter().cloned().collect();
    if let Some(n) = fields.get("retry") {
        let base = c.retry_default.clone();
        if let Some(policy) = c.retry_policy(n, &base) {
            c.retry_default = policy;
        }
    }

    let step_nodes = main_step_nodes(c, &fields);
    let handler_nodes = handler_step_nodes(c, &fields);
    declare_step_names(c, &step_nodes, &handler_nodes);
    let vars = fields
        .get("vars")
        .map(|n| compile_vars(c, n))
        .unwrap_or_default();
    let compiled_steps = compile_steps(c, &step_nodes, 0);
    // Handlers run after any main step may have failed: each main step is readable there
    // (test `steps.x is defined` for one that may not have run), and no `filter` is known to
    // have held.
    c.scope.assumptions.clear();
    let on_error = compile_steps(c, &handler_nodes, step_nodes.len());

    steps::check_paths(c, compiled_steps.iter().chain(on_error.iter()));
    warn_unanswered_respond(c, &compiled_steps, webhook.as_ref());
    let name_span = fields
        .get("name")
        .map(|n| n.span.clone())
        .unwrap_or_else(|| Span::file_start(&c.file));
    Some(Workflow {
        name: name?,
        name_span,
        description,
        version: version_of(&c.file.text),
        source: Arc::clone(&c.file),
        webhook,
        schedules,
        secrets,
        vars,
        steps: compiled_steps,
        on_error,
        templates: std::mem::take(&mut c.templates),
        concurrency,
        timeout,
    })
}

/// `name`, or the file's stem without it; reported when it uses other characters than a name
/// may.
fn workflow_name(c: &mut Compiler, fields: &Fields<'_>) -> Option<String> {
    let name = match fields.get("name") {
        Some(n) => c.string(n, "`name`"),
        None => Some(file_stem(&c.file.path)),
    };
    if let Some(name) = &name
        && !valid_name(name)
    {
        match fields.get("name") {
            Some(n) => c.error(
                n.span.clone(),
                format!("workflow name '{name}' may only use letters, digits, '-', '_' and '.'"),
            ),
            None => c.push(
                Diagnostic::error(
                    Span::file_start(&c.file),
                    format!(
                        "the file name gives the workflow name '{name}', which may only use letters, digits, '-', '_' and '.'"
                    ),
                )
                .with_hint("rename the file, or set `name:`"),
            ),
        }
    }
    name
}

/// The `secrets` declaration: environment variable names, each once.
fn compile_secrets(c: &mut Compiler, node: &Node) -> Vec<String> {
    let mut secrets = Vec::new();
    for (secret, span) in c.string_list(node, "`secrets`").unwrap_or_default() {
        if !valid_secret_name(&secret) {
            c.error(
                span,
                format!("secret name '{secret}' must be an environment variable name: letters, digits and '_', not starting with a digit"),
            );
        } else if secrets.contains(&secret) {
            c.error(span, format!("secret '{secret}' is declared twice"));
        } else {
            secrets.push(secret);
        }
    }
    secrets
}

/// The nodes of `steps`: a list of at least one step.
fn main_step_nodes<'n>(c: &mut Compiler, fields: &Fields<'n>) -> Vec<&'n Node> {
    let Some(n) = fields.get("steps") else {
        return Vec::new();
    };
    match n.as_seq() {
        Some(items) if !items.is_empty() => items.iter().collect(),
        Some(_) => {
            c.error(
                n.span.clone(),
                "`steps` is empty; a workflow needs at least one step",
            );
            Vec::new()
        }
        None => {
            c.error(
                n.span.clone(),
                format!("`steps` must be a list, found {}", n.kind_name()),
            );
            Vec::new()
        }
    }
}

/// The nodes of `on_error`: a list of steps, possibly empty.
fn handler_step_nodes<'n>(c: &mut Compiler, fields: &Fields<'n>) -> Vec<&'n Node> {
    let Some(n) = fields.get("on_error") else {
        return Vec::new();
    };
    match n.as_seq() {
        Some(items) => items.iter().collect(),
        None => {
            c.error(
                n.span.clone(),
                format!(
                    "`on_error` must be a list of steps, found {}",
                    n.kind_name()
                ),
            );
            Vec::new()
        }
    }
}

/// Every step name first, so a reference to a later step is told apart from a typo. `on_error`
/// steps are numbered after the main ones, so default names stay unique.
fn declare_step_names(c: &mut Compiler, step_nodes: &[&Node], handler_nodes: &[&Node]) {
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    for (i, step) in step_nodes.iter().chain(handler_nodes.iter()).enumerate() {
        if let Some((name, span)) = steps::declared_name(step, i + 1) {
            if !valid_name(&name) {
                c.push(Diagnostic::error(
                    span.clone(),
                    format!("step name '{name}' may only use letters, digits, '-', '_' and '.'"),
                ));
            }
            if let Some(first) = seen.get(&name) {
                c.push(
                    Diagnostic::error(span, format!("duplicate step name '{name}'")).with_hint(
                        format!("the first step with this name is on line {}", first.line),
                    ),
                );
            } else {
                seen.insert(name.clone(), span);
            }
            c.scope.all_steps.insert(name);
        }
    }
}

/// The `vars` mapping, in order: each variable sees the ones above it.
fn compile_vars(c: &mut Compiler, node: &Node) -> Vec<(String, ValueTemplate)> {
    let mut vars = Vec::new();
    match node.as_map() {
        Some(entries) => {
            for (key, value) in entries {
                if let Some(v) = c.value(value) {
                    vars.push((key.name.clone(), v));
                }
                // Each variable sees the ones above it.
                c.scope.vars.insert(key.name.clone());
            }
        }
        None => c.error(
            node.span.clone(),
            format!("`vars` must be a mapping, found {}", node.kind_name()),
        ),
    }
    vars
}

/// A list of steps, numbered from `before + 1`; each step sees the variables and steps above it.
fn compile_steps(c: &mut Compiler, nodes: &[&Node], before: usize) -> Vec<Step> {
    let mut compiled = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let position = before + i + 1;
        if let Some(step) = steps::compile(c, node, position) {
            c.scope.vars.extend(step.kind.assigned_vars());
            c.scope.earlier_steps.insert(step.name.clone());
            compiled.push(step);
        } else if let Some((name, _)) = steps::declared_name(node, position) {
            // A broken step still counts as earlier, so its readers are not blamed twice.
            c.scope.earlier_steps.insert(name);
        }
    }
    compiled
}

/// A `respond` step on a route that answers 202 before the run starts answers nobody.
fn warn_unanswered_respond(c: &mut Compiler, main: &[Step], webhook: Option<&WebhookTrigger>) {
    let answers_synchronously = webhook.is_some_and(|w| w.respond == RespondMode::Sync);
    for step in main {
        if matches!(step.kind, steps::StepKind::Respond(_)) && !answers_synchronously {
            c.push(
                Diagnostic::warning(
                    step.span.clone(),
                    "this `respond` step answers nobody: the webhook is answered 202 before the run starts",
                )
                .with_hint("set `respond: sync` under `on.webhook` to answer with it"),
            );
        }
    }
}

fn compile_concurrency(c: &mut Compiler, node: &Node) -> Option<Concurrency> {
    let fields = c.fields(node, "`concurrency`", CONCURRENCY_KEYS, &["key"])?;
    // The key is computed when the event is accepted: only the event is there to read.
    let key = fields
        .get("key")
        .and_then(|n| event_key(c, |c| c.text(n, "`concurrency` `key`")));
    let limit = match fields.get("limit") {
        Some(n) => {
            steps::positive_int(c, n, "`concurrency` `limit`").and_then(|l| u32::try_from(l).ok())
        }
        None => Some(1),
    };
    let mode = match fields.get("mode") {
        None => Some(ConcurrencyMode::Queue),
        Some(n) => match c.string(n, "`concurrency` `mode`").as_deref() {
            Some("queue") => Some(ConcurrencyMode::Queue),
            Some("cancel_previous") => Some(ConcurrencyMode::CancelPrevious),
            Some("skip") => Some(ConcurrencyMode::Skip),
            Some(other) => {
                c.push(
                    Diagnostic::error(
                        n.span.clone(),
                        format!("unknown `concurrency` `mode` '{other}'"),
                    )
                    .with_hint(format!("one of: {}", CONCURRENCY_MODES.join(", "))),
                );
                None
            }
            None => None,
        },
    };
    Some(Concurrency {
        key: key?,
        limit: limit?,
        mode: mode?,
    })
}

/// `on:`: the webhook trigger and the schedules, each optional.
fn compile_triggers(
    c: &mut Compiler,
    node: &Node,
) -> (Option<WebhookTrigger>, Vec<schedule::Schedule>) {
    let Some(fields) = c.fields(node, "`on`", TRIGGER_KEYS, &[]) else {
        return (None, Vec::new());
    };
    let schedules = fields
        .get("schedule")
        .map(|n| schedule::compile(c, n))
        .unwrap_or_default();
    let webhook = fields.get("webhook").and_then(|n| compile_webhook(c, n));
    (webhook, schedules)
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_delay_too_long_for_the_clock_is_refused_when_loading() {
        for delay in ["1e300", "100000000000d", "1e15"] {
            let source = format!(
                "on: {{ webhook: {{ path: /hooks/a }} }}\nsteps:\n  - name: wait\n    delay: {delay}\n"
            );
            let file = crate::diag::SourceFile::new("a.yaml", source);
            let (workflow, diagnostics) = compile_file(file, &Default::default());
            assert!(workflow.is_none(), "delay: {delay} was accepted");
            let messages: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
            assert!(
                messages.iter().any(|m| m.contains("too long")),
                "delay: {delay}: {messages:?}"
            );
        }
    }

    fn diagnostics_of(steps: &str) -> (Option<Workflow>, Vec<String>) {
        let source = format!("on: {{ webhook: {{ path: /hooks/a }} }}\nsteps:\n{steps}");
        let file = crate::diag::SourceFile::new("a.yaml", source);
        let (workflow, diagnostics) = compile_file(file, &Default::default());
        let messages = diagnostics
            .iter()
            .map(|d| format!("{}:{}: {}", d.span.line, d.span.col, d.message))
            .collect();
        (workflow, messages)
    }

    #[test]
    fn a_step_rate_limit_compiles_once_with_located_errors() {
        let (workflow, messages) = diagnostics_of(
            "  - name: a\n    rate_limit: 10/s\n    http: { url: https://x.test }\n  - name: b\n    rate_limit: { rate: 600/min, burst: 20, key: \"{{ event.body.id }}\" }\n    http: { url: https://x.test }\n",
        );
        let workflow = workflow.unwrap_or_else(|| panic!("{messages:?}"));
        let a = workflow.steps[0].rate_limit.as_ref().expect("a's limit");
        assert_eq!((a.limit.per_second, a.limit.burst), (10.0, 1));
        let b = workflow.steps[1].rate_limit.as_ref().expect("b's limit");
        assert_eq!((b.limit.per_second, b.limit.burst), (10.0, 20));
        assert!(b.key.is_some());
        for (limit, expected) in [
            ("10/x", "4:17: '10/x' is not a rate"),
            ("0/s", "4:17: '0/s' is not a rate"),
            (
                "{ rate: 5/s, burst: 0 }",
                "4:37: `burst` is a whole number, at least 1",
            ),
            ("{ rate: 5/s, bucket: x }", "4:30: unknown key"),
        ] {
            let (workflow, messages) = diagnostics_of(&format!(
                "  - name: a\n    rate_limit: {limit}\n    http: {{ url: https://x.test }}\n"
            ));
            assert!(workflow.is_none(), "{limit} was accepted");
            assert!(
                messages.iter().any(|m| m.starts_with(expected)),
                "{limit}: {messages:?}"
            );
        }
        let (workflow, messages) = diagnostics_of("  - rate_limit: 1/s\n    log: hi\n");
        assert!(workflow.is_none());
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("3:17: `rate_limit` paces calls")),
            "{messages:?}"
        );
    }
}
