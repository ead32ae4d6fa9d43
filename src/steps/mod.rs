//! Step kinds: a closed enum, one file per kind. Each kind compiles from YAML, renders its input
//! from the run context, and executes the rendered input.

pub mod call;
pub mod ci;
pub mod delay;
pub mod email;
pub mod exec;
pub mod filter;
pub mod foreach;
pub mod http;
pub mod log;
pub mod parallel;
pub mod rate;
pub mod respond;
pub mod schema;
pub mod set;
pub mod template;

use std::time::Duration;

use serde_json::Value as Json;

use crate::diag::{Diagnostic, Span, closest};
use crate::effects::mail::Delivery;
use crate::effects::process::{Captured, Exit, ProcessOutput};
use crate::effects::stand_in::SampleAnswer;
use crate::effects::{Effects, HttpResponse};
use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::run::RetryPolicy;
use crate::template::{Condition, RenderError, Scope};

/// The names of the step kinds, in the order the docs list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindName {
    Filter,
    Set,
    Template,
    Http,
    Email,
    Ci,
    Exec,
    Log,
    Respond,
    Foreach,
    Parallel,
    Delay,
    Call,
}

impl KindName {
    pub const ALL: [KindName; 13] = [
        KindName::Filter,
        KindName::Set,
        KindName::Template,
        KindName::Http,
        KindName::Email,
        KindName::Ci,
        KindName::Exec,
        KindName::Log,
        KindName::Respond,
        KindName::Foreach,
        KindName::Parallel,
        KindName::Delay,
        KindName::Call,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KindName::Filter => "filter",
            KindName::Set => "set",
            KindName::Template => "template",
            KindName::Http => "http",
            KindName::Email => "email",
            KindName::Ci => "ci",
            KindName::Exec => "exec",
            KindName::Log => "log",
            KindName::Respond => "respond",
            KindName::Foreach => "foreach",
            KindName::Parallel => "parallel",
            KindName::Delay => "delay",
            KindName::Call => "call",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|k| k.as_str()).collect()
    }
}

/// Keys every step may carry besides its kind.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "if",
    "timeout",
    "continue_on_error",
    "retry",
    "rate_limit",
];

#[derive(Debug)]
pub enum StepKind {
    Filter(filter::FilterStep),
    Set(set::SetStep),
    Template(template::TemplateStep),
    Http(Box<http::HttpStep>),
    Email(Box<email::EmailStep>),
    Ci(Box<ci::CiStep>),
    Exec(Box<exec::ExecStep>),
    Log(log::LogStep),
    Respond(respond::RespondStep),
    /// Control flow: run by the engine itself, never rendered into a [`Rendered`].
    Foreach(Box<foreach::ForeachStep>),
    Parallel(Box<parallel::ParallelStep>),
    Delay(delay::DelayStep),
    Call(Box<call::CallStep>),
}

/// One compiled step of a workflow.
#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub span: Span,
    pub condition: Option<Condition>,
    pub timeout: Option<Duration>,
    pub continue_on_error: bool,
    /// The effective policy: the step's `retry`, else the workflow's, else the server's.
    pub retry: RetryPolicy,
    /// The step's own outgoing rate limit (`http`, `ci`, `email` only).
    pub rate_limit: Option<rate::StepRateLimit>,
    pub kind: StepKind,
}

impl StepKind {
    pub fn name(&self) -> KindName {
        match self {
            StepKind::Filter(_) => KindName::Filter,
            StepKind::Set(_) => KindName::Set,
            StepKind::Template(_) => KindName::Template,
            StepKind::Http(_) => KindName::Http,
            StepKind::Email(_) => KindName::Email,
            StepKind::Ci(_) => KindName::Ci,
            StepKind::Exec(_) => KindName::Exec,
            StepKind::Log(_) => KindName::Log,
            StepKind::Respond(_) => KindName::Respond,
            StepKind::Foreach(_) => KindName::Foreach,
            StepKind::Parallel(_) => KindName::Parallel,
            StepKind::Delay(_) => KindName::Delay,
            StepKind::Call(_) => KindName::Call,
        }
    }

    /// Whether the engine runs the step itself (nested steps, a durable wait) instead of
    /// rendering and executing it.
    pub fn is_control(&self) -> bool {
        matches!(
            self,
            StepKind::Foreach(_) | StepKind::Parallel(_) | StepKind::Delay(_) | StepKind::Call(_)
        )
    }

    /// Whether a finished record of the step is restored on resume instead of running it again:
    /// steps that acted on the world, and control steps, whose nested steps may have.
    pub fn restored_on_resume(&self) -> bool {
        self.has_effects() || self.is_control()
    }

    /// The step lists nested in a control step (a loop's body, each branch).
    pub fn nested(&self) -> Vec<&[Step]> {
        match self {
            StepKind::Foreach(f) => vec![f.steps.as_slice()],
            StepKind::Parallel(p) => p.branches.iter().map(|(_, s)| s.as_slice()).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether executing the step acts on the outside world (skipped by `--dry-run`).
    pub fn has_effects(&self) -> bool {
        matches!(
            self,
            StepKind::Http(_) | StepKind::Email(_) | StepKind::Ci(_) | StepKind::Exec(_)
        )
    }

    /// Keys the set step assigns to `vars`, known at load time.
    pub fn assigned_vars(&self) -> Vec<String> {
        match self {
            StepKind::Set(set) => set.keys(),
            _ => Vec::new(),
        }
    }

    pub fn render(&self, scope: &Scope<'_>, id: &StepIdentity<'_>) -> Result<Rendered, StepError> {
        match self {
            StepKind::Filter(s) => s
                .render(scope)
                .map(|(passed, reason)| Rendered::Filter { passed, reason }),
            StepKind::Set(s) => s.render(scope).map(Rendered::Set),
            StepKind::Template(s) => s.render(scope).map(Rendered::Template),
            StepKind::Http(s) => s.render(scope, id).map(Rendered::Http),
            StepKind::Email(s) => s.render(scope, id).map(Rendered::Email),
            StepKind::Ci(s) => s.render(scope, id).map(Rendered::Ci),
            StepKind::Exec(s) => s.render(scope, id).map(Rendered::Exec),
            StepKind::Log(s) => s.render(scope).map(Rendered::Log),
            StepKind::Respond(s) => s.render(scope).map(Rendered::Respond),
            StepKind::Foreach(_)
            | StepKind::Parallel(_)
            | StepKind::Delay(_)
            | StepKind::Call(_) => Err(StepError::permanent(
                "a control step is run by the engine, not rendered",
            )),
        }
    }
}

/// Who is executing: the idempotency key of an outgoing call is derived from it.
pub struct StepIdentity<'a> {
    pub run_id: &'a str,
    pub step_name: &'a str,
    /// The step's span when traces are on: sent as `traceparent` by `http` and `ci` steps.
    pub traceparent: Option<&'a str>,
}

/// A step's input after rendering: what it will do, recorded before it does it.
#[derive(Debug, Clone)]
pub enum Rendered {
    Filter {
        passed: bool,
        reason: Option<String>,
    },
    Set(serde_json::Map<String, Json>),
    Template(Json),
    Http(http::RenderedHttp),
    Email(email::RenderedEmail),
    Ci(ci::RenderedCi),
    Exec(exec::RenderedExec),
    Log(String),
    Respond(crate::run::SyncResponse),
}

/// How a finished step affects the rest of the run.
#[derive(Debug, Clone)]
pub enum Outcome {
    Continue(Json),
    /// A filter said no: the run ends as `filtered`.
    Filtered(Json),
    /// A `respond` step produced the answer for a synchronous webhook.
    Respond(crate::run::SyncResponse, Json),
}

impl Outcome {
    pub fn output(&self) -> &Json {
        match self {
            Outcome::Continue(o) | Outcome::Filtered(o) | Outcome::Respond(_, o) => o,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// What the step produced before failing (an HTTP response with an unexpected status).
    pub output: Option<Json>,
    /// A later attempt may succeed (connection errors, timeouts, 5xx, 429).
    pub transient: bool,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            output: None,
            transient: false,
        }
    }
}

impl From<RenderError> for StepError {
    fn from(err: RenderError) -> Self {
        StepError::permanent(err.0)
    }
}

impl Rendered {
    /// The rendered input as recorded in the run history and shown in traces.
    pub fn to_json(&self) -> Json {
        match self {
            Rendered::Filter { passed, reason } => filter_output(*passed, reason),
            Rendered::Set(values) => Json::Object(values.clone()),
            Rendered::Template(output) => serde_json::json!({ "output": output }),
            Rendered::Http(request) => request.to_json(),
            Rendered::Email(email) => email.to_json(),
            Rendered::Ci(call) => call.to_json(),
            Rendered::Exec(command) => command.to_json(),
            Rendered::Log(message) => serde_json::json!({ "message": message }),
            Rendered::Respond(response) => response.to_json(),
        }
    }

    /// The host an `http` or `ci` step calls, for the per-host rate limits (lower case).
    pub fn called_host(&self) -> Option<String> {
        let url = match self {
            Rendered::Http(request) => request.url.as_str(),
            Rendered::Ci(call) => call.url(),
            _ => return None,
        };
        url::Url::parse(url)
            .ok()?
            .host_str()
            .map(str::to_ascii_lowercase)
    }

    /// The line this step writes to the server log, before secrets are masked.
    pub fn log_line(&self) -> Option<&str> {
        match self {
            Rendered::Log(message) => Some(message),
            _ => None,
        }
    }

    /// What the outside world would answer this step on success, for stand-ins that answer
    /// effects nobody stubbed (dry runs): `None` for steps without effects.
    pub fn sample_answer(&self) -> Option<SampleAnswer> {
        Some(match self {
            Rendered::Http(_) => SampleAnswer::Http(HttpResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: b"{}".to_vec(),
            }),
            Rendered::Ci(call) => SampleAnswer::Http(ci::sample_answer(call)),
            Rendered::Email(email) => {
                let email = &email.email;
                SampleAnswer::Mail(Delivery::Smtp {
                    reply: "250 sample answer: nothing was sent".into(),
                    recipients: email.to.len() + email.cc.len() + email.bcc.len(),
                })
            }
            Rendered::Exec(_) => SampleAnswer::Process(ProcessOutput {
                exit: Exit::Code(0),
                timed_out: false,
                stdout: Captured::default(),
                stderr: Captured::default(),
            }),
            _ => return None,
        })
    }

    pub async fn execute(self, effects: &Effects) -> Result<Outcome, StepError> {
        match self {
            Rendered::Filter { passed, reason } => {
                let output = filter_output(passed, &reason);
                Ok(if passed {
                    Outcome::Continue(output)
                } else {
                    Outcome::Filtered(output)
                })
            }
            Rendered::Set(values) => Ok(Outcome::Continue(Json::Object(values))),
            Rendered::Template(output) => {
                Ok(Outcome::Continue(serde_json::json!({ "output": output })))
            }
            Rendered::Http(request) => http::execute(request, effects).await.map(Outcome::Continue),
            Rendered::Email(email) => email::execute(email, effects).await.map(Outcome::Continue),
            Rendered::Ci(call) => ci::execute(call, effects).await.map(Outcome::Continue),
            Rendered::Exec(command) => exec::execute(command, effects).await.map(Outcome::Continue),
            // The engine writes the line to the server log, masked (`log_line`).
            Rendered::Log(message) => {
                Ok(Outcome::Continue(serde_json::json!({ "message": message })))
            }
            Rendered::Respond(response) => {
                let output = serde_json::json!({ "status": response.status });
                Ok(Outcome::Respond(response, output))
            }
        }
    }
}

fn filter_output(passed: bool, reason: &Option<String>) -> Json {
    match reason {
        Some(reason) => serde_json::json!({ "passed": passed, "reason": reason }),
        None => serde_json::json!({ "passed": passed }),
    }
}

/// The name a step will have: its `name:`, or `<kind>-<position>`.
pub fn declared_name(node: &Node, position: usize) -> Option<(String, Span)> {
    let entries = node.as_map()?;
    if let Some((_, name)) = entries.iter().find(|(k, _)| k.name == "name") {
        return name.as_str().map(|s| (s.to_owned(), name.span.clone()));
    }
    let (key, _) = entries
        .iter()
        .find(|(k, _)| KindName::parse(&k.name).is_some())?;
    Some((format!("{}-{position}", key.name), key.span.clone()))
}

/// Compile one step node: common keys, then exactly one kind key handed to its kind's file.
pub fn compile(c: &mut Compiler, node: &Node, position: usize) -> Option<Step> {
    let entries = c.mapping(node, "a step")?;
    let kinds = KindName::names();
    let mut kind_entries = Vec::new();
    // Keys already reported as unknown kinds are not reported again as unknown keys.
    let mut reported: Vec<&str> = Vec::new();
    for (key, value) in entries {
        if COMMON_KEYS.contains(&key.name.as_str()) {
            continue;
        }
        match KindName::parse(&key.name) {
            Some(kind) => kind_entries.push((kind, key, value)),
            None => {
                let mut d = Diagnostic::error(
                    key.span.clone(),
                    format!(
                        "unknown step kind '{}'; expected one of: {}",
                        key.name,
                        kinds.join(", ")
                    ),
                );
                let mut candidates = kinds.clone();
                candidates.extend_from_slice(COMMON_KEYS);
                if let Some(near) = closest(&key.name, candidates) {
                    d = d.with_hint(format!("did you mean '{near}'?"));
                }
                c.push(d);
                reported.push(key.name.as_str());
            }
        }
    }
    let (kind, kind_key, body) = match kind_entries.as_slice() {
        [one] => *one,
        [] => {
            if entries
                .iter()
                .all(|(k, _)| COMMON_KEYS.contains(&k.name.as_str()))
            {
                c.error(
                    node.span.clone(),
                    format!("this step has no kind; add one of: {}", kinds.join(", ")),
                );
            }
            return None;
        }
        [_, second, ..] => {
            c.error(
                second.1.span.clone(),
                format!(
                    "a step has exactly one kind, but this one has '{}' and '{}'",
                    kind_entries[0].0.as_str(),
                    second.0.as_str()
                ),
            );
            return None;
        }
    };
    let mut allowed = all_step_keys();
    allowed.extend(reported);
    let common = c.fields(node, "a step", &allowed, &[])?;
    let mark = c.readings.len();
    let condition = common.get("if").and_then(|n| c.condition(n, "`if`"));
    let timeout = common
        .get("timeout")
        .and_then(|n| c.duration(n, "`timeout`"));
    let retry = match common.get("retry") {
        Some(n) => c.retry_policy(n, &c.retry_default.clone()),
        None => Some(c.retry_default.clone()),
    };
    let continue_on_error = common
        .get("continue_on_error")
        .and_then(|n| c.bool(n, "`continue_on_error`"))
        .unwrap_or(false);
    let name = match common.get("name") {
        Some(n) => c.string(n, "a step name")?,
        None => format!("{}-{position}", kind.as_str()),
    };
    // The step's `if` holds inside it; a `filter` without one, for the steps after it.
    let outer = c.scope.assumptions.clone();
    c.assume_since(mark);
    let compiled = compile_kind(c, kind, &kind_key.span, body);
    c.scope.assumptions = outer;
    let compiled = compiled?;
    let rate_limit = match common.get("rate_limit") {
        Some(n) => Some(compile_rate_limit(c, n, kind)?),
        None => None,
    };
    if condition.is_none() && matches!(compiled, StepKind::Filter(_)) {
        c.assume_since(mark);
    }
    Some(Step {
        name,
        span: kind_key.span.clone(),
        condition,
        timeout,
        continue_on_error,
        retry: retry?,
        rate_limit,
        kind: compiled,
    })
}

/// A step's `rate_limit`, on the kinds that call another service.
fn compile_rate_limit(
    c: &mut Compiler,
    node: &Node,
    kind: KindName,
) -> Option<rate::StepRateLimit> {
    if !matches!(kind, KindName::Http | KindName::Ci | KindName::Email) {
        c.error(
            node.span.clone(),
            format!(
                "`rate_limit` paces calls to another service: it is for `http`, `ci` and `email` steps, not `{}`",
                kind.as_str()
            ),
        );
        return None;
    }
    rate::StepRateLimit::compile(c, node)
}

/// The step's kind, compiled by its own file; `key_span` is where the kind's key is written.
fn compile_kind(
    c: &mut Compiler,
    kind: KindName,
    key_span: &Span,
    body: &Node,
) -> Option<StepKind> {
    match kind {
        KindName::Filter => filter::FilterStep::compile(c, body).map(StepKind::Filter),
        KindName::Set => set::SetStep::compile(c, body).map(StepKind::Set),
        KindName::Template => template::TemplateStep::compile(c, body).map(StepKind::Template),
        KindName::Http => http::HttpStep::compile(c, body).map(|s| StepKind::Http(Box::new(s))),
        KindName::Email => email::EmailStep::compile(c, body).map(|s| StepKind::Email(Box::new(s))),
        KindName::Ci => ci::CiStep::compile(c, body).map(|s| StepKind::Ci(Box::new(s))),
        KindName::Exec => {
            exec::ExecStep::compile(c, body, key_span).map(|s| StepKind::Exec(Box::new(s)))
        }
        KindName::Log => log::LogStep::compile(c, body).map(StepKind::Log),
        KindName::Respond => respond::RespondStep::compile(c, body).map(StepKind::Respond),
        KindName::Foreach => {
            foreach::ForeachStep::compile(c, body).map(|s| StepKind::Foreach(Box::new(s)))
        }
        KindName::Parallel => {
            parallel::ParallelStep::compile(c, body).map(|s| StepKind::Parallel(Box::new(s)))
        }
        KindName::Delay => delay::DelayStep::compile(c, body).map(StepKind::Delay),
        KindName::Call => call::CallStep::compile(c, body).map(|s| StepKind::Call(Box::new(s))),
    }
}

fn all_step_keys() -> Vec<&'static str> {
    let mut keys = COMMON_KEYS.to_vec();
    keys.extend(KindName::names());
    keys
}

/// Compile the nested `steps:` of a loop or a branch. Their names are their own: unique within
/// the block, shadowing an outer step of the same name inside it. They read the outer steps
/// that ran before the block, and the names in `locals` (a loop's item).
pub fn compile_block(
    c: &mut Compiler,
    node: &Node,
    what: &str,
    locals: &[&str],
) -> Option<Vec<Step>> {
    let items = match node.as_seq() {
        Some(items) if !items.is_empty() => items,
        Some(_) => {
            c.error(
                node.span.clone(),
                format!("{what} is empty; give at least one step"),
            );
            return None;
        }
        None => {
            c.error(
                node.span.clone(),
                format!("{what} must be a list of steps, found {}", node.kind_name()),
            );
            return None;
        }
    };
    let saved = c.scope.clone();
    let mut seen: std::collections::BTreeMap<String, Span> = std::collections::BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some((name, span)) = declared_name(item, i + 1) {
            // Names make the records' paths and the idempotency keys: the same characters
            // as at the top level, so no name can pass for another step's path.
            if !crate::lang::compile::valid_name(&name) {
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
    c.scope
        .locals
        .extend(locals.iter().map(|l| (*l).to_owned()));
    let mut steps = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match compile(c, item, i + 1) {
            Some(step) => {
                if matches!(step.kind, StepKind::Respond(_)) {
                    c.error(
                        step.span.clone(),
                        "a `respond` step cannot be nested: the caller is answered once, by a top-level step",
                    );
                    ok = false;
                }
                c.scope.vars.extend(step.kind.assigned_vars());
                c.scope.earlier_steps.insert(step.name.clone());
                steps.push(step);
            }
            None => {
                ok = false;
                if let Some((name, _)) = declared_name(item, i + 1) {
                    c.scope.earlier_steps.insert(name);
                }
            }
        }
    }
    check_paths(c, steps.iter());
    // The block's names and variables stay inside it.
    c.scope = saved;
    ok.then_some(steps)
}

/// Steps nested in a `parallel` or a `call` are recorded as `<name>.<branch>.<step>` and
/// `<name>.<step>`: a sibling whose name begins that way would share their records (a resume
/// would restore one for the other) and their idempotency keys.
pub(crate) fn check_paths<'s>(c: &mut Compiler, steps: impl Iterator<Item = &'s Step> + Clone) {
    for outer in steps.clone() {
        let prefixes: Vec<String> = match &outer.kind {
            StepKind::Parallel(parallel) => parallel
                .branches
                .iter()
                .map(|(branch, _)| format!("{}.{branch}.", outer.name))
                .collect(),
            StepKind::Call(_) => vec![format!("{}.", outer.name)],
            _ => continue,
        };
        for step in steps.clone() {
            let Some(prefix) = prefixes.iter().find(|p| step.name.starts_with(p.as_str())) else {
                continue;
            };
            c.push(
                Diagnostic::error(
                    step.span.clone(),
                    format!(
                        "step name '{}' begins with '{prefix}', like the records of the steps nested in '{}'",
                        step.name, outer.name
                    ),
                )
                .with_hint("choose a name that does not begin with another step's path"),
            );
        }
    }
}

/// Read a positive whole number (`parallel: 3`).
pub(crate) fn positive_int(c: &mut Compiler, node: &Node, what: &str) -> Option<usize> {
    match &node.value {
        crate::lang::yaml::NodeValue::Int(i) if *i > 0 => usize::try_from(*i).ok(),
        crate::lang::yaml::NodeValue::Int(i) => {
            c.error(
                node.span.clone(),
                format!("{what} must be a whole number above 0, not {i}"),
            );
            None
        }
        _ => {
            c.error(
                node.span.clone(),
                format!(
                    "{what} must be a whole number above 0, found {}",
                    node.kind_name()
                ),
            );
            None
        }
    }
}
