//! Workflows: a YAML file compiled into an immutable [`Workflow`], and the set of them a server
//! serves ([`Registry`], with its route table). Nothing here runs a step.

mod registry;
pub mod routes;
pub mod runs;
pub mod schedule;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, Diagnostics, SourceFile, Span, closest};
pub use crate::lang::compile::CompileOptions;
use crate::lang::compile::{self, Compiler, Fields, valid_name};
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
pub const WEBHOOK_KEYS: &[&str] = &[
    "path",
    "methods",
    "respond",
    "max_body",
    "dedupe",
    "verify",
    "rate_limit",
];
/// The keys of a `concurrency:` mapping.
pub const CONCURRENCY_KEYS: &[&str] = &["key", "limit", "mode"];
/// What `concurrency.mode` may be.
pub const CONCURRENCY_MODES: &[&str] = &["queue", "cancel_previous", "skip"];
/// The keys of a `rate_limit:` mapping.
pub const RATE_LIMIT_KEYS: &[&str] = &["rate", "burst", "per"];
pub use crate::verify::VERIFY_PRESETS;
const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

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

#[derive(Debug, Clone)]
pub struct WebhookTrigger {
    pub path: RoutePattern,
    pub methods: Vec<String>,
    pub respond: RespondMode,
    pub max_body: usize,
    pub dedupe: Option<Dedupe>,
    pub verify: Option<Verify>,
    pub rate_limit: Option<RateLimit>,
    pub span: Span,
}

/// `rate_limit:`: a token bucket refilled at `per_second`, holding at most `burst` requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
    pub per: RateScope,
}

/// What one bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateScope {
    /// Every request on the route.
    Route,
    /// The requests of each source address on the route.
    Source,
}

/// `verify:`: signature presets a request must all pass, on its raw bytes, before it is parsed.
#[derive(Debug, Clone)]
pub struct Verify {
    pub presets: Vec<VerifyPreset>,
    /// `ip_allow`: the client address must be in one of these blocks (checked before anything
    /// else, even the rate limit).
    pub ip_allow: Option<Vec<crate::net::Cidr>>,
    /// The `verify` node as canonical JSON: workflows sharing a path must have the same one,
    /// since one request is checked once for all of them.
    pub text: String,
}

/// One preset with its secret templates (several while a secret is rotated; any may match).
#[derive(Debug, Clone)]
pub struct VerifyPreset {
    pub preset: crate::verify::Preset,
    pub secrets: Vec<ValueTemplate>,
    /// `twilio`: the public URL the sender calls, a template over `secrets` like the secret.
    pub url: Option<ValueTemplate>,
    /// `hmac` with `content`: the signed text, a template over `body`, `timestamp` and `id`.
    pub content: Option<ValueTemplate>,
    /// `basic`: the user name, a template over `secrets` like the password.
    pub username: Option<ValueTemplate>,
}

/// `dedupe:`: a delivery whose key was seen within `window` starts no run.
#[derive(Debug, Clone)]
pub struct Dedupe {
    pub key: ValueTemplate,
    pub window: std::time::Duration,
}

pub const DEFAULT_DEDUPE_WINDOW: std::time::Duration = std::time::Duration::from_secs(7 * 86400);
/// The keys of a `dedupe:` mapping.
pub const DEDUPE_KEYS: &[&str] = &["key", "window"];
/// What a dedupe key template reads: the event's fields, also at the top level.
pub const DEDUPE_LOCALS: &[&str] = &[
    "headers", "body", "query", "params", "method", "path", "raw",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespondMode {
    /// Answer 202 once the event is stored.
    Async,
    /// Wait for the run (bounded) and answer with its `respond` step.
    Sync,
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
    let mut c = Compiler::new(Arc::clone(&file), options.clone());
    let node = match yaml::parse(&file) {
        Ok(node) => node,
        Err(d) => {
            c.push(d);
            return (None, c.diagnostics);
        }
    };
    let workflow = compile_workflow(&mut c, &node);
    let diagnostics = std::mem::take(&mut c.diagnostics);
    if diagnostics.has_errors() {
        (None, diagnostics)
    } else {
        (workflow, diagnostics)
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
    // (test `steps.x is defined` for one that may not have run).
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
    let saved = std::mem::take(&mut c.scope.locals);
    c.scope.locals = DEDUPE_LOCALS.iter().map(|s| (*s).to_owned()).collect();
    let key = fields
        .get("key")
        .and_then(|n| c.text(n, "`concurrency` `key`"));
    c.scope.locals = saved;
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

/// Every `call` in `steps`, nested ones included: the called name and where it is written.
fn calls_in<'w>(steps: &'w [Step], out: &mut Vec<(&'w str, &'w Span)>) {
    for step in steps {
        if let steps::StepKind::Call(call) = &step.kind {
            out.push((call.workflow.as_str(), &call.workflow_span));
        }
        for nested in step.kind.nested() {
            calls_in(nested, out);
        }
    }
}

/// `call` targets must be loaded, and no workflow may end up calling itself.
fn check_calls(registry: &Registry, broken: &std::collections::BTreeSet<String>) -> Diagnostics {
    let mut diagnostics = Diagnostics::default();
    let mut graph: BTreeMap<&str, Vec<(&str, &Span)>> = BTreeMap::new();
    for workflow in registry.workflows.values() {
        let mut calls = Vec::new();
        calls_in(&workflow.steps, &mut calls);
        calls_in(&workflow.on_error, &mut calls);
        for (target, span) in &calls {
            if registry.get(target).is_none() && !broken.contains(*target) {
                let mut d = Diagnostic::error(
                    (*span).clone(),
                    format!("`call`: no workflow named '{target}' is loaded"),
                );
                if let Some(near) = closest(target, registry.workflows.keys().map(String::as_str)) {
                    d = d.with_hint(format!("did you mean '{near}'?"));
                }
                diagnostics.push(d);
            }
        }
        graph.insert(workflow.name.as_str(), calls);
    }
    // Each workflow on a cycle is told at its own call that leads back to it.
    for (start, calls) in &graph {
        for (first, span) in calls {
            if let Some(path) = path_back(&graph, first, start) {
                diagnostics.push(Diagnostic::error(
                    (*span).clone(),
                    format!(
                        "call cycle: {start} -> {} (a workflow cannot call itself, directly or not)",
                        path.join(" -> ")
                    ),
                ));
                break;
            }
        }
    }
    diagnostics
}

/// A chain of calls from `from` to `to` (both included), if there is one.
fn path_back<'g>(
    graph: &BTreeMap<&'g str, Vec<(&'g str, &'g Span)>>,
    from: &'g str,
    to: &str,
) -> Option<Vec<&'g str>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<Vec<&'g str>> = vec![vec![from]];
    while let Some(path) = stack.pop() {
        let last = *path.last()?;
        if last == to {
            return Some(path);
        }
        if !seen.insert(last) {
            continue;
        }
        for (next, _) in graph.get(last).map(Vec::as_slice).unwrap_or_default() {
            let mut longer = path.clone();
            longer.push(next);
            stack.push(longer);
        }
    }
    None
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

fn compile_webhook(c: &mut Compiler, webhook: &Node) -> Option<WebhookTrigger> {
    let w = c.fields(webhook, "`on.webhook`", WEBHOOK_KEYS, &["path"])?;
    let path_node = w.get("path")?;
    // Every key is checked even when the path is wrong, so all problems show in one pass.
    let path = c
        .string(path_node, "`path`")
        .and_then(|text| match RoutePattern::parse(&text) {
            Ok(p) => Some(p),
            Err(message) => {
                c.error(path_node.span.clone(), message);
                None
            }
        });
    let errors_before = c.diagnostics.error_count();
    let methods = match w.get("methods") {
        Some(n) => {
            let mut methods = Vec::new();
            for (m, span) in c.string_list(n, "`methods`")? {
                let upper = m.to_ascii_uppercase();
                if HTTP_METHODS.contains(&upper.as_str()) {
                    methods.push(upper);
                } else {
                    c.error(
                        span,
                        format!(
                            "unknown method '{m}'; expected one of: {}",
                            HTTP_METHODS.join(", ")
                        ),
                    );
                }
            }
            if methods.is_empty() && c.diagnostics.error_count() == errors_before {
                c.error(
                    n.span.clone(),
                    "`methods` is empty; a webhook needs at least one method",
                );
            }
            methods
        }
        None => vec!["POST".to_owned()],
    };
    let respond = match w.get("respond") {
        None => Some(RespondMode::Async),
        Some(n) => match c.string(n, "`respond`").as_deref() {
            Some("async") => Some(RespondMode::Async),
            Some("sync") => Some(RespondMode::Sync),
            Some(other) => {
                c.error(
                    n.span.clone(),
                    format!("`respond` is 'async' or 'sync', not '{other}'"),
                );
                None
            }
            None => None,
        },
    };
    let max_body = match w.get("max_body") {
        Some(n) => c.size(n, "`max_body`"),
        None => Some(DEFAULT_MAX_BODY),
    };
    let verify = match w.get("verify") {
        Some(n) => Some(compile_verify(c, n)?),
        None => None,
    };
    let dedupe = match w.get("dedupe") {
        Some(n) => Some(compile_dedupe(c, n)?),
        None => verify.as_ref().and_then(|v| default_dedupe(c, v)),
    };
    let rate_limit = match w.get("rate_limit") {
        Some(n) => Some(compile_rate_limit(c, n)?),
        None => None,
    };
    Some(WebhookTrigger {
        rate_limit,
        path: path?,
        respond: respond?,
        max_body: max_body?,
        dedupe,
        verify,
        methods,
        span: path_node.span.clone(),
    })
}

/// `50/s`, or `{rate: 50/s, burst: 100, per: route | source}`.
fn compile_rate_limit(c: &mut Compiler, node: &Node) -> Option<RateLimit> {
    let (rate_node, burst_node, per) = match node.as_map() {
        Some(_) => {
            let fields = c.fields(node, "`rate_limit`", RATE_LIMIT_KEYS, &["rate"])?;
            let per = match fields.get("per") {
                None => RateScope::Route,
                Some(n) => match c.string(n, "`per`")?.as_str() {
                    "route" => RateScope::Route,
                    "source" => RateScope::Source,
                    other => {
                        c.error(
                            n.span.clone(),
                            format!("`per` is 'route' or 'source', not '{other}'"),
                        );
                        return None;
                    }
                },
            };
            (fields.get("rate")?, fields.get("burst"), per)
        }
        None => (node, None, RateScope::Route),
    };
    let text = c.string(rate_node, "`rate`")?;
    let Some(per_second) = parse_rate(&text) else {
        c.push(
            Diagnostic::error(rate_node.span.clone(), format!("'{text}' is not a rate"))
                .with_hint("write requests per second, minute or hour: 50/s, 600/m, 1000/h"),
        );
        return None;
    };
    let burst = match burst_node {
        Some(n) => match n.value {
            yaml::NodeValue::Int(i) if i >= 1 && i <= i64::from(u32::MAX) => i as u32,
            _ => {
                c.error(
                    n.span.clone(),
                    "`burst` is a whole number of requests, at least 1",
                );
                return None;
            }
        },
        // By default a second's worth of requests may arrive at once.
        None => per_second.ceil().max(1.0) as u32,
    };
    Some(RateLimit {
        per_second,
        burst,
        per,
    })
}

/// `50/s`, `600/m`, `1000/h` as requests per second.
fn parse_rate(text: &str) -> Option<f64> {
    let (count, unit) = text.trim().split_once('/')?;
    let count: f64 = count.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return None,
    };
    (count.is_finite() && count > 0.0).then_some(count / seconds)
}

fn compile_dedupe(c: &mut Compiler, node: &Node) -> Option<Dedupe> {
    let (key_node, window) = match node.as_map() {
        Some(_) => {
            let fields = c.fields(node, "`dedupe`", DEDUPE_KEYS, &["key"])?;
            let window = match fields.get("window") {
                Some(n) => c.duration(n, "`window`")?,
                None => DEFAULT_DEDUPE_WINDOW,
            };
            (fields.get("key")?, window)
        }
        None => (node, DEFAULT_DEDUPE_WINDOW),
    };
    // The key is computed before any step runs: only the event is there to read.
    let saved = std::mem::take(&mut c.scope.locals);
    c.scope.locals = DEDUPE_LOCALS.iter().map(|s| (*s).to_owned()).collect();
    let key = c.text(key_node, "`dedupe` key");
    c.scope.locals = saved;
    Some(Dedupe { key: key?, window })
}

/// The `verify` entry that checks the client address rather than a signature.
pub const VERIFY_IP_ALLOW: &str = "ip_allow";

fn compile_verify(c: &mut Compiler, node: &Node) -> Option<Verify> {
    let entries: Vec<&str> = VERIFY_PRESETS
        .iter()
        .copied()
        .chain([VERIFY_IP_ALLOW])
        .collect();
    let fields = c.fields(node, "`verify`", &entries, &[])?;
    if node.as_map()?.is_empty() {
        c.push(
            Diagnostic::error(
                node.span.clone(),
                "`verify` is empty; name at least one preset",
            )
            .with_hint(format!("one of: {}", entries.join(", "))),
        );
        return None;
    }
    let mut presets = Vec::new();
    let mut ok = true;
    let ip_allow = match fields.get(VERIFY_IP_ALLOW) {
        Some(n) => match compile_ip_allow(c, n) {
            Some(blocks) => Some(blocks),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };
    for scheme in verify::Scheme::ALL {
        let Some(preset_node) = fields.get(scheme.as_str()) else {
            continue;
        };
        match compile_verify_preset(c, preset_node, scheme) {
            Some(p) => presets.push(p),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    Some(Verify {
        presets,
        ip_allow,
        text: serde_json::to_string(&node.to_json()).unwrap_or_default(),
    })
}

/// `ip_allow`: a list of CIDR blocks or addresses, at least one.
fn compile_ip_allow(c: &mut Compiler, node: &Node) -> Option<Vec<crate::net::Cidr>> {
    let entries = c.string_list(node, "`verify.ip_allow`")?;
    if entries.is_empty() {
        c.error(
            node.span.clone(),
            "`verify.ip_allow` is an empty list; it would refuse every request",
        );
        return None;
    }
    let mut blocks = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (text, span) in entries {
        match text.parse::<crate::net::Cidr>() {
            Ok(block) => blocks.push(block),
            Err(err) => {
                c.error(span, format!("`verify.ip_allow`: {err}"));
                ok = false;
            }
        }
    }
    ok.then_some(blocks)
}

fn compile_verify_preset(
    c: &mut Compiler,
    node: &Node,
    scheme: verify::Scheme,
) -> Option<VerifyPreset> {
    let what = format!("`verify.{}`", scheme.as_str());
    let keys = scheme.keys();
    let secret_key = keys[0];
    let fields = c.fields(node, &what, keys, scheme.required_keys())?;
    let mut preset = verify::Preset::new(scheme);
    let mut ok = true;
    if let Some(n) = fields.get("tolerance") {
        match c.duration(n, "`tolerance`") {
            Some(d) => preset.tolerance_secs = d.as_secs(),
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("legacy_sha1") {
        match c.bool(n, "`legacy_sha1`") {
            Some(b) => preset.legacy_sha1 = b,
            None => ok = false,
        }
    }
    if scheme == verify::Scheme::Token {
        match compile_token_source(c, &fields, &what) {
            Some(source) => preset.token = Some(source),
            None => ok = false,
        }
    }
    let mut content = None;
    if scheme == verify::Scheme::Hmac {
        match compile_hmac(c, &fields, &what) {
            Some((spec, template)) => {
                preset.hmac = Some(spec);
                content = template;
            }
            None => ok = false,
        }
    }
    let secret_node = fields.get(secret_key)?;
    let what = format!("{what} `{secret_key}`");
    // Rendered with `secrets` only: nothing of the request exists when it is checked.
    let saved = std::mem::take(&mut c.scope.locals);
    let secrets: Vec<Option<ValueTemplate>> = match secret_node.as_seq() {
        Some([]) => {
            c.error(
                secret_node.span.clone(),
                format!("{what} is an empty list; give at least one"),
            );
            vec![None]
        }
        Some(items) => items.iter().map(|i| c.text(i, &what)).collect(),
        None => vec![c.text(secret_node, &what)],
    };
    let url = fields
        .get("url")
        .map(|n| c.text(n, &format!("`verify.{}` `url`", scheme.as_str())));
    let username = fields
        .get("username")
        .map(|n| c.text(n, &format!("`verify.{}` `username`", scheme.as_str())));
    c.scope.locals = saved;
    let url = match url {
        Some(Some(t)) => Some(t),
        Some(None) => return None,
        None => None,
    };
    let username = match username {
        Some(Some(t)) => Some(t),
        Some(None) => return None,
        None => None,
    };
    let secrets: Option<Vec<ValueTemplate>> = secrets.into_iter().collect();
    let secrets = secrets?;
    ok.then_some(VerifyPreset {
        preset,
        secrets,
        url,
        content,
        username,
    })
}

/// `token`'s `header` or `query`: exactly one says where the token is sent.
fn compile_token_source(
    c: &mut Compiler,
    fields: &compile::Fields<'_>,
    what: &str,
) -> Option<verify::TokenSource> {
    match (fields.get("header"), fields.get("query")) {
        (Some(n), None) => {
            let name = c
                .string(n, &format!("{what} `header`"))?
                .to_ascii_lowercase();
            if ::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                c.error(
                    n.span.clone(),
                    format!("{what} `header` is not a valid header name: {name:?}"),
                );
                return None;
            }
            Some(verify::TokenSource::Header(name))
        }
        (None, Some(n)) => {
            let name = c.string(n, &format!("{what} `query`"))?;
            if name.is_empty() {
                c.error(n.span.clone(), format!("{what} `query` is empty"));
                return None;
            }
            Some(verify::TokenSource::Query(name))
        }
        (Some(n), Some(_)) => {
            c.error(
                n.span.clone(),
                format!("{what} takes `header` or `query`, not both"),
            );
            None
        }
        (None, None) => {
            c.error(
                fields.span.clone(),
                format!("{what} needs `header` or `query`: where the token is sent"),
            );
            None
        }
    }
}

/// What a generic `hmac` preset's `content` template reads.
pub const HMAC_CONTENT_LOCALS: &[&str] = &["body", "timestamp", "id"];

/// The settings of a generic `hmac` preset, and its `content` template when one is given.
fn compile_hmac(
    c: &mut Compiler,
    fields: &compile::Fields<'_>,
    what: &str,
) -> Option<(verify::HmacSpec, Option<ValueTemplate>)> {
    let mut ok = true;
    // Header names are checked here so a typo fails `validate`, not every request.
    let header_name = |c: &mut Compiler, key: &str| -> Option<Option<String>> {
        let Some(node) = fields.get(key) else {
            return Some(None);
        };
        let name = c
            .string(node, &format!("{what} `{key}`"))?
            .to_ascii_lowercase();
        if ::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.error(
                node.span.clone(),
                format!("{what} `{key}` is not a valid header name: {name:?}"),
            );
            return None;
        }
        Some(Some(name))
    };
    let header = header_name(c, "header");
    let timestamp_header = header_name(c, "timestamp_header");
    let id_header = header_name(c, "id_header");
    let (Some(Some(header)), Some(timestamp_header), Some(id_header)) =
        (header, timestamp_header, id_header)
    else {
        return None;
    };
    let mut spec = verify::HmacSpec::new(header);
    spec.timestamp_header = timestamp_header;
    spec.id_header = id_header;
    if let (Some(n), None) = (fields.get("tolerance"), &spec.timestamp_header) {
        c.error(
            n.span.clone(),
            format!("{what} `tolerance` needs `timestamp_header`: nothing else is dated"),
        );
        ok = false;
    }
    if let Some(n) = fields.get("algorithm") {
        match c
            .string(n, "`algorithm`")
            .map(|name| (verify::Algorithm::from_name(&name), name))
        {
            Some((Some(a), _)) => spec.algorithm = a,
            Some((None, name)) => {
                c.push(
                    Diagnostic::error(n.span.clone(), format!("unknown `algorithm` {name:?}"))
                        .with_hint(format!("one of: {}", verify::Algorithm::NAMES.join(", "))),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("encoding") {
        match c
            .string(n, "`encoding`")
            .map(|name| (verify::Encoding::from_name(&name), name))
        {
            Some((Some(e), _)) => spec.encoding = e,
            Some((None, name)) => {
                c.push(
                    Diagnostic::error(n.span.clone(), format!("unknown `encoding` {name:?}"))
                        .with_hint(format!("one of: {}", verify::Encoding::NAMES.join(", "))),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("prefix") {
        match c.string(n, "`prefix`") {
            Some(p) => spec.prefix = p,
            None => ok = false,
        }
    }
    let content = match fields.get("content") {
        Some(n) => {
            // Only the request's body, timestamp and id exist when the signature is checked.
            let saved = std::mem::replace(
                &mut c.scope.locals,
                HMAC_CONTENT_LOCALS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            );
            let template = c.text(n, &format!("{what} `content`"));
            c.scope.locals = saved;
            spec.custom_content = true;
            Some(template?)
        }
        None => None,
    };
    ok.then_some((spec, content))
}

/// With one provider named, its delivery id is the natural dedupe key: a sender's retry of the
/// same delivery then starts no second run.
fn default_dedupe(c: &mut Compiler, verify: &Verify) -> Option<Dedupe> {
    let [only] = verify.presets.as_slice() else {
        return None;
    };
    let source = match only.preset.scheme {
        verify::Scheme::StandardWebhooks => {
            "{{ headers['webhook-id'] | default(headers['svix-id'] | default('')) }}".to_owned()
        }
        verify::Scheme::Stripe => "{{ body.id | default('') }}".to_owned(),
        scheme => format!(
            "{{{{ headers['{}'] | default('') }}}}",
            scheme.delivery_header()?
        ),
    };
    let key = ValueTemplate::compile_str(&mut c.templates, &source).ok()?;
    Some(Dedupe {
        key,
        window: DEFAULT_DEDUPE_WINDOW,
    })
}

fn file_stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The result of loading a set of files: what compiled, and every problem found.
pub struct Loaded {
    pub registry: Registry,
    pub diagnostics: Diagnostics,
    pub files: usize,
}

/// The workflow files under the given paths: files as given, directories searched for
/// `*.yaml`/`*.yml` (test files `*.test.yaml` excluded), sorted for stable output.
pub fn workflow_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            collect_dir(path, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_dir(&path, out)?;
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        let is_test = name.ends_with(".test.yaml") || name.ends_with(".test.yml");
        // A server config kept beside its workflows is not a workflow.
        let is_config = name == "hookflow.yaml" || name == "hookflow.yml";
        if is_yaml && !is_test && !is_config && !name.starts_with('.') {
            out.push(path);
        }
    }
    Ok(())
}

/// Load and compile every workflow under `paths`, then check what files can only get wrong
/// together: duplicate names and routes that disagree.
pub fn load(paths: &[PathBuf], options: &CompileOptions) -> std::io::Result<Loaded> {
    let files = workflow_files(paths)?;
    let mut sources = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?;
        sources.push(SourceFile::new(path.display().to_string(), text));
    }
    Ok(load_sources(sources, options))
}

pub fn load_sources(sources: Vec<Arc<SourceFile>>, options: &CompileOptions) -> Loaded {
    let mut diagnostics = Diagnostics::default();
    let mut registry = Registry::default();
    let files = sources.len();
    let mut names: BTreeMap<String, Span> = BTreeMap::new();
    // Files that did not compile, by the name they would most likely have had: a call of one
    // is not reported again as a call of an unknown workflow.
    let mut broken: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for file in sources {
        let stem = file_stem(&file.path);
        let (workflow, problems) = compile_file(file, options);
        diagnostics.extend(problems);
        let Some(workflow) = workflow else {
            broken.insert(stem);
            continue;
        };
        let name_span = workflow.name_span.clone();
        if let Some(first) = names.get(&workflow.name) {
            diagnostics.push(
                Diagnostic::error(
                    name_span,
                    format!("duplicate workflow name '{}'", workflow.name),
                )
                .with_hint(format!(
                    "{}:{} already uses it",
                    first.file.path, first.line
                )),
            );
            continue;
        }
        names.insert(workflow.name.clone(), name_span);
        registry
            .workflows
            .insert(workflow.name.clone(), Arc::new(workflow));
    }
    let route_problems = registry.routes.build(registry.workflows.values());
    diagnostics.extend(route_problems);
    diagnostics.extend(check_calls(&registry, &broken));
    Loaded {
        registry,
        diagnostics,
        files,
    }
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
}
