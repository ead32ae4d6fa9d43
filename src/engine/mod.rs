//! The interpreter: runs one compiled workflow over one event, step by step, reporting each
//! finished step to a [`Journal`] so a run can be recorded, traced, and resumed after a crash.

mod control;
mod rate;
pub mod redact;
pub mod retry;
mod spans;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use tracing::Instrument;

use crate::effects::Effects;
use crate::future::BoxFuture;
use crate::run::{Event, RunStatus, StepRecord, StepStatus, SyncResponse};
use crate::steps::{Outcome, Step, StepError, StepIdentity, StepKind};
use crate::template::{Scope, to_template_value};
use crate::workflow::Workflow;
pub use redact::Redactor;

/// Identity of a run as templates see it under `run`.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: String,
    pub workflow: String,
    pub attempt: u32,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub error: Option<String>,
    pub response: Option<SyncResponse>,
    pub vars: Json,
    /// For `Retrying`: when the next attempt is due.
    pub due_at: Option<DateTime<Utc>>,
}

/// How soon a noted step record must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// The record of a step a resume restores instead of running again (an effect, a control
    /// step): durable before the run's next effect, so a crash repeats at most one effect.
    GuardsEffect,
    /// The record of a step a resume evaluates again: durable with the run's end.
    Evaluated,
}

/// A run's progress could not be recorded; the source says why (for the worker, the store's
/// error, kept whole: the engine does not know the store's types).
#[derive(Debug, thiserror::Error)]
#[error("cannot record the run")]
pub struct JournalError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl JournalError {
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            source: Box::new(source),
        }
    }
}

/// Where a run reports progress: the store, a trace printer, or both.
pub trait Journal: Send + Sync {
    /// Called once the variables are evaluated, before the first step.
    fn vars_evaluated(&self, _vars: &Json) {}

    /// A step finished (or was skipped). The run does not go on until this returns.
    fn step_finished<'a>(
        &'a self,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), JournalError>>;

    /// A step finished whose record need not be durable before the run goes on; `noted` says
    /// by when it must be. A journal that cannot tell waits as for `step_finished`.
    fn step_noted<'a>(
        &'a self,
        record: &'a StepRecord,
        noted: Noted,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let _ = noted;
        self.step_finished(record)
    }

    /// Make every record noted with [`Noted::GuardsEffect`] durable: called before a step acts
    /// on the world.
    fn settle_effects(&self) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// A `respond` step produced the answer for a synchronous caller.
    fn responded(&self, _response: &SyncResponse) {}
}

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Render every step but execute none that acts on the world.
    pub dry_run: bool,
    /// When the run first started: a workflow `timeout` counts from here, across resumes.
    pub started_at: Option<DateTime<Utc>>,
    /// Asked between steps: once it holds a message, the run stops at its next step boundary
    /// and ends `cancelled` with that message (an `exec` step in flight is killed).
    pub cancel: Option<CancelSignal>,
    /// The run's span, when traces are on: each step's span is its child, and outgoing
    /// requests carry the step's span as their `traceparent`.
    pub trace: Option<crate::observe::trace::RunTrace>,
}

/// A run's cancellation as its executor sees it: the message it ends with, once asked.
pub type CancelSignal = tokio::sync::watch::Receiver<Option<String>>;

/// The workflows a `call` step may run, and the secrets each is given.
pub trait Callees: Send + Sync {
    fn workflow(&self, name: &str) -> Option<std::sync::Arc<Workflow>>;
    fn secrets(&self, workflow: &Workflow) -> BTreeMap<String, String>;
}

/// Everything one execution needs besides the workflow.
pub struct RunRequest<'a> {
    pub workflow: &'a Workflow,
    pub event: &'a Event,
    pub run: &'a RunInfo,
    pub secrets: &'a BTreeMap<String, String>,
    /// Steps recorded by an earlier, interrupted execution of this run: not executed again.
    pub finished: &'a [StepRecord],
    pub effects: &'a Effects,
    pub options: &'a ExecOptions,
    /// Where `call` steps find their workflows; without it they fail.
    pub callees: Option<&'a dyn Callees>,
}

/// Run the workflow's steps in order. Returns an error only when progress cannot be recorded,
/// in which case the run must be resumed later rather than marked finished.
pub async fn execute(
    request: RunRequest<'_>,
    journal: &dyn Journal,
) -> Result<RunOutcome, JournalError> {
    let workflow = request.workflow;
    let top_level = workflow.steps.len() + workflow.on_error.len();
    let mut nested = std::collections::HashMap::new();
    for record in request.finished.iter().filter(|r| r.index >= top_level) {
        nested.entry(record.name.as_str()).or_insert(record);
    }
    let shared = Shared {
        run: request.run,
        finished: request.finished,
        nested,
        effects: request.effects,
        options: request.options,
        journal,
        callees: request.callees,
        next_index: AtomicUsize::new(first_nested_index(workflow, request.finished)),
    };
    let execution = Execution::new(&shared, workflow, request.event, request.secrets, &[], 0);
    let mut state = RunState {
        vars: Map::new(),
        steps: Map::new(),
        run: serde_json::json!({
            "id": request.run.id, "workflow": request.run.workflow,
            "attempt": request.run.attempt, "error": null, "failed_step": null,
            "caller": null,
        }),
        response: None,
        locals: Map::new(),
    };
    if let Err(error) = execution.evaluate_vars(&mut state) {
        return execution.fail(state, error, None).await;
    }
    journal.vars_evaluated(
        &execution
            .redactor
            .redact_json(&Json::Object(state.vars.clone())),
    );
    // A deadline past what the clock can hold is never reached: no deadline.
    let deadline = workflow.timeout.and_then(|limit| {
        let started = (request.options.started_at).unwrap_or_else(|| request.effects.clock.now());
        crate::steps::delay::end_of(started, limit).map(|at| (limit, at))
    });
    let steps = execution.run_steps(&mut state, &workflow.steps, Place::Top { offset: 0 });
    let flow = match deadline {
        None => steps.await?,
        Some((limit, at)) => {
            let left = (at - request.effects.clock.now())
                .to_std()
                .unwrap_or_default();
            // Resumed after the deadline (from a wait that ended there): no step starts.
            let run_out = left.is_zero();
            let timed = async {
                if run_out {
                    return Err(());
                }
                tokio::time::timeout(left, steps).await.map_err(|_| ())
            };
            match timed.await {
                Ok(flow) => match flow? {
                    // A wait past the deadline ends at the deadline, which then fails the run.
                    Flow::Retrying(error, due_at) => Flow::Retrying(error, due_at.min(at)),
                    other => other,
                },
                Err(_) => {
                    let message = format!("run timed out after {}", humanize(limit));
                    return execution.fail(state, message, None).await;
                }
            }
        }
    };
    match flow {
        Flow::Completed => Ok(state.finish(&execution.redactor, RunStatus::Succeeded, None)),
        Flow::Filtered => Ok(state.finish(&execution.redactor, RunStatus::Filtered, None)),
        Flow::Retrying(error, due_at) => {
            let mut outcome = state.finish(&execution.redactor, RunStatus::Retrying, Some(error));
            outcome.due_at = Some(due_at);
            Ok(outcome)
        }
        Flow::Failed { step, error } => {
            let message = format!("step '{step}' failed: {error}");
            execution.fail(state, message, Some(step)).await
        }
        // Stopped from outside: no `on_error` steps, the run simply ends.
        Flow::Cancelled(message) => {
            Ok(state.finish(&execution.redactor, RunStatus::Cancelled, Some(message)))
        }
    }
}

/// Nested steps (in loops, branches, called workflows) are numbered after every top-level
/// step and every record already kept, so their numbers never collide.
fn first_nested_index(workflow: &Workflow, finished: &[StepRecord]) -> usize {
    let top_level = workflow.steps.len() + workflow.on_error.len();
    let recorded = finished.iter().map(|r| r.index + 1).max().unwrap_or(0);
    top_level.max(recorded)
}

/// How a list of steps ended.
enum Flow {
    Completed,
    Filtered,
    /// A step waits for another attempt: the error so far and when it is due.
    Retrying(String, DateTime<Utc>),
    Failed {
        step: String,
        error: String,
    },
    /// The run was cancelled from outside: the message it ends with.
    Cancelled(String),
}

/// Where a list of steps sits in the run, which decides its records' names and numbers.
#[derive(Clone)]
enum Place {
    /// The workflow's own steps (or its `on_error` steps, numbered from `offset`): a record is
    /// the step's name at its position.
    Top { offset: usize },
    /// Inside a loop iteration, a branch or a called workflow: a record's name is the step's
    /// path (`deploy[2].notify`, `fanout.a.call`), its number taken from the run's counter.
    Nested { prefix: String },
}

/// What every (nested) execution of one run shares.
struct Shared<'a> {
    run: &'a RunInfo,
    finished: &'a [StepRecord],
    /// The nested steps' records by path: a loop of n iterations looks each up at once.
    nested: std::collections::HashMap<&'a str, &'a StepRecord>,
    effects: &'a Effects,
    options: &'a ExecOptions,
    journal: &'a dyn Journal,
    callees: Option<&'a dyn Callees>,
    next_index: AtomicUsize,
}

impl Shared<'_> {
    /// The run's cancellation message, once it was asked.
    fn cancel_requested(&self) -> Option<String> {
        self.options
            .cancel
            .as_ref()
            .and_then(|signal| signal.borrow().clone())
    }

    /// Wait until the run is cancelled (for ever, when nothing can cancel it).
    async fn until_cancelled(&self) -> String {
        let Some(mut signal) = self.options.cancel.clone() else {
            return std::future::pending().await;
        };
        let message = signal
            .wait_for(Option::is_some)
            .await
            .map(|message| message.clone());
        match message {
            Ok(message) => message.unwrap_or_default(),
            // The executor is gone: nothing will cancel this run any more.
            Err(_) => std::future::pending().await,
        }
    }
}

/// One execution of a workflow's steps (the run's own, or a called workflow's): what every
/// step needs besides the changing state.
struct Execution<'a> {
    shared: &'a Shared<'a>,
    workflow: &'a Workflow,
    event: &'a Event,
    /// The secret values masked in records: this workflow's and its callers'.
    secret_values: Vec<String>,
    redactor: Redactor,
    event_value: minijinja::Value,
    secrets_value: minijinja::Value,
    /// How many `call`s deep this execution is.
    depth: usize,
}

impl<'a> Execution<'a> {
    fn new(
        shared: &'a Shared<'a>,
        workflow: &'a Workflow,
        event: &'a Event,
        secrets: &BTreeMap<String, String>,
        inherited_secrets: &[String],
        depth: usize,
    ) -> Self {
        let mut secret_values: Vec<String> = inherited_secrets.to_vec();
        secret_values.extend(secrets.values().cloned());
        Self {
            shared,
            workflow,
            event,
            redactor: Redactor::new(secret_values.iter()),
            secret_values,
            event_value: event.template_value(),
            secrets_value: to_template_value(&serde_json::to_value(secrets).unwrap_or_default()),
            depth,
        }
    }

    /// The workflow's `vars`, each seeing the ones above it; an error names the variable.
    fn evaluate_vars(&self, state: &mut RunState) -> Result<(), String> {
        for (name, template) in &self.workflow.vars {
            let ctx = self.context(state);
            let scope = self.scope(&ctx);
            match template.render(&scope) {
                Ok(value) => {
                    state.vars.insert(name.clone(), value);
                }
                Err(err) => return Err(format!("vars.{name}: {err}")),
            }
        }
        Ok(())
    }

    fn context(&self, state: &RunState) -> minijinja::Value {
        let base = minijinja::context! {
            event => self.event_value.clone(),
            vars => to_template_value(&Json::Object(state.vars.clone())),
            steps => to_template_value(&Json::Object(state.steps.clone())),
            run => to_template_value(&state.run),
            secrets => self.secrets_value.clone(),
        };
        if state.locals.is_empty() {
            return base;
        }
        // A loop's item and `loop`; their names never hide a root (checked when compiling).
        minijinja::context! { ..base, ..to_template_value(&Json::Object(state.locals.clone())) }
    }

    fn scope<'s>(&'s self, context: &'s minijinja::Value) -> Scope<'s> {
        Scope {
            templates: &self.workflow.templates,
            context,
            event_body: &self.event.body,
        }
    }

    /// The run failed for good: its `on_error` steps run (with `run.error` and
    /// `run.failed_step` set), then it ends `failed` whatever they do.
    async fn fail(
        &self,
        mut state: RunState,
        error: String,
        failed_step: Option<String>,
    ) -> Result<RunOutcome, JournalError> {
        if let Json::Object(run) = &mut state.run {
            run.insert("error".into(), Json::String(error.clone()));
            run.insert(
                "failed_step".into(),
                failed_step.map(Json::String).unwrap_or(Json::Null),
            );
        }
        if !self.workflow.on_error.is_empty() {
            let offset = self.workflow.steps.len();
            match self
                .run_steps(&mut state, &self.workflow.on_error, Place::Top { offset })
                .await?
            {
                // A handler waiting for a retry keeps the run open until it is done.
                Flow::Retrying(retry_error, due_at) => {
                    let mut outcome =
                        state.finish(&self.redactor, RunStatus::Retrying, Some(retry_error));
                    outcome.due_at = Some(due_at);
                    return Ok(outcome);
                }
                Flow::Cancelled(message) => {
                    return Ok(state.finish(&self.redactor, RunStatus::Cancelled, Some(message)));
                }
                Flow::Completed | Flow::Filtered | Flow::Failed { .. } => {}
            }
        }
        Ok(state.finish(&self.redactor, RunStatus::Failed, Some(error)))
    }

    /// Run `steps` in order, recording each where `place` says.
    fn run_steps<'s>(
        &'s self,
        state: &'s mut RunState,
        steps: &'s [Step],
        place: Place,
    ) -> BoxFuture<'s, Result<Flow, JournalError>> {
        Box::pin(async move {
            for (position, step) in steps.iter().enumerate() {
                // The step boundary: a cancelled run starts no further step.
                if let Some(message) = self.shared.cancel_requested() {
                    return Ok(Flow::Cancelled(message));
                }
                if let Some(flow) = self.run_one(state, step, position, &place).await? {
                    return Ok(flow);
                }
            }
            Ok(Flow::Completed)
        })
    }

    /// Run one step; `Some` when the list must stop here.
    async fn run_one(
        &self,
        state: &mut RunState,
        step: &Step,
        position: usize,
        place: &Place,
    ) -> Result<Option<Flow>, JournalError> {
        let (name, previous) = self.identify(step, position, place);
        // A resumed run does not act on the world twice: a step with effects (or a control
        // step) whose record says it finished is not executed again, its (masked) output
        // restored instead. Steps without effects are simply evaluated again, which also
        // gives them back the secret values their record had masked.
        if let Some(record) =
            previous.filter(|r| step.kind.restored_on_resume() && r.status != StepStatus::Retrying)
        {
            state.apply(step, record);
            return Ok(failure_of(step, &name, record));
        }
        let mut record = self.new_record(step, &name, position, place, previous);
        // Inside the run's span: a step's log lines carry the run id and the step's name.
        let attempt = record.attempts;
        let span = tracing::info_span!("step", step = %name, kind = %record.kind, attempt);
        let trace = self.shared.options.trace.as_ref();
        let step_span = trace.map(|trace| spans::start(trace, &name, &record.kind));
        let traceparent = step_span.as_ref().map(|span| span.context.to_string());
        let clock = Instant::now();
        let result = self
            .perform(
                step,
                state,
                &name,
                previous,
                &mut record,
                traceparent.as_deref(),
            )
            .instrument(span.clone())
            .await?;
        record.duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
        let judged = match self.judge(result, step, state, &mut record) {
            Judged::Wait(flow) => return Ok(Some(flow)),
            Judged::Recorded(judged) => judged,
        };
        self.note(step, &record).instrument(span).await?;
        if let (Some(trace), Some(step_span)) = (trace, step_span) {
            let ids = (self.workflow.name.as_str(), self.shared.run.id.as_str());
            spans::finish(trace, step_span, ids, &record, &self.redactor);
        }
        if let Some(message) = judged.cancelled {
            return Ok(Some(Flow::Cancelled(message)));
        }
        if let Some(due_at) = judged.retry_at {
            // The wait is stored, not slept here: a restart neither loses nor shortens it.
            return Ok(Some(Flow::Retrying(
                waiting_message(step, &name, &record, due_at),
                due_at,
            )));
        }
        state.apply(step, &record);
        if let Some(response) = judged.response {
            // A called workflow's `respond` answers nobody: the caller is the calling run.
            if self.depth == 0 {
                self.shared.journal.responded(&response);
            }
            state.response = Some(response);
        }
        if record.filtered {
            return Ok(Some(Flow::Filtered));
        }
        Ok(failure_of(step, &name, &record))
    }

    /// The step's record name in the run and its record from an earlier execution, if any.
    fn identify(
        &self,
        step: &Step,
        position: usize,
        place: &Place,
    ) -> (String, Option<&'a StepRecord>) {
        match place {
            Place::Top { offset } => {
                let index = offset + position;
                let previous = self
                    .shared
                    .finished
                    .iter()
                    .find(|r| r.index == index && r.name == step.name);
                (step.name.clone(), previous)
            }
            Place::Nested { prefix } => {
                let name = format!("{prefix}{}", step.name);
                let previous = self.shared.nested.get(name.as_str()).copied();
                (name, previous)
            }
        }
    }

    /// A fresh record of this attempt of the step: numbered, started now, not yet judged.
    fn new_record(
        &self,
        step: &Step,
        name: &str,
        position: usize,
        place: &Place,
        previous: Option<&StepRecord>,
    ) -> StepRecord {
        let index = match (place, previous) {
            (Place::Top { offset }, _) => offset + position,
            (Place::Nested { .. }, Some(record)) => record.index,
            (Place::Nested { .. }, None) => self.shared.next_index.fetch_add(1, Ordering::SeqCst),
        };
        let retried = previous.filter(|r| r.status == StepStatus::Retrying);
        let waited = retried.filter(|r| rate::waiting(r).is_some());
        // A retried step keeps what each earlier attempt got; a `delay`'s wait is no attempt,
        // and neither is a wait for a turn in a rate limit.
        let (attempts, earlier) = match (waited, retried) {
            (Some(record), _) => (record.attempts, record.earlier.clone()),
            (None, Some(record)) if !step.kind.is_control() => {
                (record.attempts + 1, record.all_attempts())
            }
            (None, Some(record)) => (record.attempts + 1, Vec::new()),
            (None, None) => (1, Vec::new()),
        };
        StepRecord {
            index,
            name: name.to_owned(),
            kind: step.kind.name().as_str().to_owned(),
            status: StepStatus::Succeeded,
            input: Json::Null,
            output: Json::Null,
            error: None,
            filtered: false,
            started_at: self.shared.effects.clock.now(),
            duration_ms: 0.0,
            attempts,
            earlier,
        }
    }

    /// Execute the step: a control step runs its nested steps, any other acts once its
    /// earlier effects' records are durable. `traceparent` is the step's span, for the
    /// requests it sends.
    async fn perform(
        &self,
        step: &Step,
        state: &mut RunState,
        name: &str,
        previous: Option<&StepRecord>,
        record: &mut StepRecord,
        traceparent: Option<&str>,
    ) -> Result<StepResult, JournalError> {
        let ctx = self.context(state);
        let scope = self.scope(&ctx);
        if step.kind.is_control() {
            return self
                .run_control(step, &scope, state, name, previous, record)
                .await;
        }
        if step.kind.has_effects() {
            // An earlier effect's record is durable before this one acts.
            self.shared.journal.settle_effects().await?;
        }
        let identity = StepIdentity {
            run_id: &self.shared.run.id,
            step_name: name,
            traceparent,
        };
        let rendered = match prepare_step(step, &scope, &identity, &self.redactor, record) {
            Ok(rendered) => rendered,
            Err(result) => return Ok(*result),
        };
        let buckets = match self.buckets(step, &rendered, &scope) {
            Ok(buckets) => buckets,
            Err(err) => return Ok(StepResult::Failed(err)),
        };
        if let Some(wait) = self.take_turn(&buckets, previous, record).await? {
            return Ok(wait);
        }
        let shared = self.shared;
        let result = act(step, rendered, &identity, shared.effects, shared.options);
        let result = if matches!(step.kind, StepKind::Exec(_)) {
            // A command may run for long: a cancellation kills it (dropping its execution
            // kills its process group) rather than waiting for it to end.
            tokio::select! {
                result = result => result,
                message = shared.until_cancelled() => return Ok(StepResult::Cancelled(message)),
            }
        } else {
            result.await
        };
        match result {
            StepResult::Failed(err) => Ok(self
                .throttle(&buckets, &err, previous, record)
                .await?
                .unwrap_or(StepResult::Failed(err))),
            result => Ok(result),
        }
    }

    /// What the step's result makes of its record: its status, output or error, and whether
    /// the run answers a caller or waits for a due time.
    fn judge(
        &self,
        result: StepResult,
        step: &Step,
        state: &RunState,
        record: &mut StepRecord,
    ) -> Judged {
        let mut judged = Verdict::default();
        match result {
            StepResult::Skipped => record.status = StepStatus::Skipped,
            StepResult::Pending => {}
            StepResult::Wait { until, message } => {
                // Nested steps recorded their own progress; the step itself is not finished.
                return Judged::Wait(Flow::Retrying(message, until));
            }
            StepResult::Done(Outcome::Respond(_, _)) if state.response.is_some() => {
                record.status = StepStatus::Failed;
                record.error = Some(
                    "the caller was already answered by an earlier `respond` step; a run answers once"
                        .to_owned(),
                );
            }
            StepResult::Done(outcome) => {
                record.output = outcome.output().clone();
                match outcome {
                    Outcome::Filtered(_) => record.filtered = true,
                    Outcome::Respond(r, _) => judged.response = Some(r),
                    Outcome::Continue(_) => {}
                }
            }
            StepResult::Failed(err) => judged.retry_at = self.judge_failure(step, err, record),
            StepResult::Cancelled(message) => {
                record.status = StepStatus::Failed;
                record.error = Some(format!("stopped: {message}"));
                judged.cancelled = Some(message);
            }
        }
        if let Some(wait) = rate::waiting(record) {
            // A turn in a rate limit not come yet: kept in the record like a `delay`'s end.
            judged.retry_at = Some(wait.until);
        } else if record.status == StepStatus::Retrying && step.kind.is_control() {
            // A `delay` that has not ended: its end is in the record, so a resume keeps it.
            judged.retry_at = record
                .output
                .get("until")
                .and_then(Json::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
        }
        Judged::Recorded(judged)
    }

    /// A failed attempt's record, and when the next attempt is due if the step's retry policy
    /// allows one.
    fn judge_failure(
        &self,
        step: &Step,
        err: StepError,
        record: &mut StepRecord,
    ) -> Option<DateTime<Utc>> {
        let attempt = record.attempts;
        // A control step's nested steps retry on their own; the step itself does not.
        // A wait too long for a stored time is no retry at all.
        let due = (!step.kind.is_control() && step.retry.should_retry(&err, attempt))
            .then(|| {
                let now = self.shared.effects.clock.now();
                let retry_after = retry::retry_after(err.output.as_ref(), now);
                let wait = step.retry.delay(attempt, retry::jitter_unit(), retry_after);
                crate::steps::delay::end_of(now, wait)
            })
            .flatten();
        record.status = match due {
            Some(_) => StepStatus::Retrying,
            None => StepStatus::Failed,
        };
        record.error = Some(err.message);
        record.output = err.output.unwrap_or(Json::Null);
        due
    }

    /// Hand the (masked) record to the journal. The run itself goes on with the real values.
    /// No record is waited for here but a wait's: the run stops on it. One a resume restores
    /// is made durable before the next effect (`settle_effects`), the others with the run's end.
    async fn note(&self, step: &Step, record: &StepRecord) -> Result<(), JournalError> {
        let masked = self.redactor.redact_record(record.clone());
        let journal = &self.shared.journal;
        if record.status == StepStatus::Retrying {
            journal.step_finished(&masked).await
        } else if step.kind.restored_on_resume() {
            journal.step_noted(&masked, Noted::GuardsEffect).await
        } else {
            journal.step_noted(&masked, Noted::Evaluated).await
        }
    }
}

/// What a judged step asks of the run besides its record.
#[derive(Default)]
struct Verdict {
    response: Option<SyncResponse>,
    retry_at: Option<DateTime<Utc>>,
    /// The run was cancelled while this step ran (and stopped it): it ends here.
    cancelled: Option<String>,
}

enum Judged {
    /// Nested steps wait: the step is neither finished nor recorded.
    Wait(Flow),
    Recorded(Verdict),
}

/// `Some` when the step's record fails the run: it failed and may not go on.
fn failure_of(step: &Step, name: &str, record: &StepRecord) -> Option<Flow> {
    (record.status == StepStatus::Failed && !step.continue_on_error).then(|| Flow::Failed {
        step: name.to_owned(),
        error: record.error.clone().unwrap_or_default(),
    })
}

/// The run's error while it waits for `due_at`: a control step's wait, or a retry.
fn waiting_message(step: &Step, name: &str, record: &StepRecord, due_at: DateTime<Utc>) -> String {
    let due = due_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Some(wait) = rate::waiting(record) {
        match &record.error {
            Some(error) if !wait.reserved => {
                format!("step '{name}' was asked to wait, retrying at {due}: {error}")
            }
            _ => format!("step '{name}' waits its turn in its rate limit until {due}"),
        }
    } else if step.kind.is_control() {
        format!("step '{name}' waits until {due}")
    } else {
        format!(
            "step '{name}' attempt {} failed, retrying at {due}: {}",
            record.attempts,
            record.error.clone().unwrap_or_default()
        )
    }
}

enum StepResult {
    Skipped,
    Done(Outcome),
    Failed(StepError),
    /// A `delay` not over yet, or a turn in a rate limit not come: its record (status
    /// `retrying`, the end kept in its output) is ready.
    Pending,
    /// Nested steps wait (a retry, a delay): the step is not finished and not recorded.
    Wait {
        until: DateTime<Utc>,
        message: String,
    },
    /// The run was cancelled while the step ran, which stopped it: the run's end message.
    Cancelled(String),
}

/// The step's `if` and its rendered input (recorded, and its log line written): what it will
/// do, or how it ended without doing anything.
fn prepare_step(
    step: &Step,
    scope: &Scope<'_>,
    identity: &StepIdentity<'_>,
    redactor: &Redactor,
    record: &mut StepRecord,
) -> Result<crate::steps::Rendered, Box<StepResult>> {
    match condition_holds(step, scope) {
        Ok(true) => {}
        Ok(false) => return Err(Box::new(StepResult::Skipped)),
        Err(err) => return Err(Box::new(StepResult::Failed(err))),
    }
    let rendered = step
        .kind
        .render(scope, identity)
        .map_err(|err| Box::new(StepResult::Failed(err)))?;
    record.input = rendered.to_json();
    // Written here, masked, rather than by the step: the server log is a record too. Inside
    // the run's span, so the line carries the run id.
    if let Some(line) = rendered.log_line() {
        tracing::info!(target: "hookflow::log", "{}", redactor.redact_str(line));
    }
    Ok(rendered)
}

/// Execute the rendered step within its timeout.
async fn act(
    step: &Step,
    rendered: crate::steps::Rendered,
    identity: &StepIdentity<'_>,
    effects: &Effects,
    options: &ExecOptions,
) -> StepResult {
    // Stand-ins (tests, dry runs) answer for the world, step by step; a dry run without
    // them acts on nothing.
    let scoped = effects
        .stand_ins
        .as_ref()
        .map(|stand_ins| stand_ins.for_step(identity.step_name, rendered.sample_answer()));
    if options.dry_run && step.kind.has_effects() && scoped.is_none() {
        return StepResult::Done(Outcome::Continue(serde_json::json!({ "dry_run": true })));
    }
    let execution = rendered.execute(scoped.as_ref().unwrap_or(effects));
    let result = match step.timeout {
        Some(limit) => match tokio::time::timeout(limit, execution).await {
            Ok(result) => result,
            Err(_) => Err(StepError {
                message: format!("timed out after {}", humanize(limit)),
                output: None,
                transient: true,
            }),
        },
        None => execution.await,
    };
    match result {
        Ok(outcome) => StepResult::Done(outcome),
        Err(err) => StepResult::Failed(err),
    }
}

/// Whether the step's `if` lets it run.
fn condition_holds(step: &Step, scope: &Scope<'_>) -> Result<bool, StepError> {
    match &step.condition {
        Some(condition) => condition
            .evaluate(scope.context)
            .map_err(|err| StepError::permanent(format!("`if`: {err}"))),
        None => Ok(true),
    }
}

fn humanize(d: std::time::Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// The parts of the template context that change as steps finish.
#[derive(Clone)]
struct RunState {
    vars: Map<String, Json>,
    steps: Map<String, Json>,
    run: Json,
    response: Option<SyncResponse>,
    /// Names a loop binds for its iteration (the item, `loop`), readable at the top level.
    locals: Map<String, Json>,
}

impl RunState {
    fn apply(&mut self, step: &Step, record: &StepRecord) {
        let mut entry = match &record.output {
            Json::Object(map) => map.clone(),
            Json::Null => Map::new(),
            other => {
                let mut m = Map::new();
                m.insert("output".into(), other.clone());
                m
            }
        };
        entry.insert(
            "ok".into(),
            Json::Bool(record.status == StepStatus::Succeeded),
        );
        entry.insert(
            "failed".into(),
            Json::Bool(record.status == StepStatus::Failed),
        );
        entry.insert(
            "skipped".into(),
            Json::Bool(record.status == StepStatus::Skipped),
        );
        entry.insert(
            "error".into(),
            record.error.clone().map(Json::String).unwrap_or(Json::Null),
        );
        self.steps.insert(step.name.clone(), Json::Object(entry));
        if record.status == StepStatus::Succeeded
            && !step.kind.assigned_vars().is_empty()
            && let Json::Object(values) = &record.output
        {
            for (k, v) in values {
                self.vars.insert(k.clone(), v.clone());
            }
        }
        if let Some(error) = &record.error
            && let Json::Object(run) = &mut self.run
        {
            run.insert("error".into(), Json::String(error.clone()));
        }
    }

    /// The outcome is kept and shown, so it is masked like every record.
    fn finish(self, redactor: &Redactor, status: RunStatus, error: Option<String>) -> RunOutcome {
        RunOutcome {
            status,
            error: error.map(|e| redactor.redact_str(&e)),
            response: self.response.map(|mut r| {
                r.body = redactor.redact_json(&r.body);
                r.headers = r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k, redactor.redact_str(&v)))
                    .collect();
                r
            }),
            vars: redactor.redact_json(&Json::Object(self.vars)),
            due_at: None,
        }
    }
}
