//! Control flow steps, run by the interpreter itself: `foreach` and `parallel` run nested step
//! lists (each recorded under its path, so a resume restores finished iterations and branches),
//! `delay` waits durably through the run's due time, and `call` runs another workflow's steps
//! as a nested execution of the same run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use super::{
    Execution, Flow, JournalError, Place, RunState, StepResult, condition_holds, humanize,
};
use crate::run::{Event, StepRecord, StepStatus};
use crate::steps::call::CallStep;
use crate::steps::delay::DelayStep;
use crate::steps::foreach::{ForeachStep, loop_value};
use crate::steps::parallel::ParallelStep;
use crate::steps::{Outcome, Step, StepError, StepKind};
use crate::template::Scope;

/// Calls nested deeper than this fail: loading refuses cycles, so only a set changed by a
/// reload while a run is under way could get here.
const MAX_CALL_DEPTH: usize = 16;

/// How one nested step list (an iteration, a branch) ended, with its steps as `steps.<name>`
/// showed them inside it.
struct Block {
    flow: Flow,
    steps: Map<String, Json>,
}

impl Execution<'_> {
    /// Run a control step. Its input is recorded in `record`; a `delay` not over yet prepares
    /// its pending record.
    pub(super) async fn run_control(
        &self,
        step: &Step,
        scope: &Scope<'_>,
        state: &RunState,
        name: &str,
        previous: Option<&StepRecord>,
        record: &mut StepRecord,
    ) -> Result<StepResult, JournalError> {
        match condition_holds(step, scope) {
            Ok(true) => {}
            Ok(false) => return Ok(StepResult::Skipped),
            Err(err) => return Ok(StepResult::Failed(err)),
        }
        let run = async {
            match &step.kind {
                StepKind::Delay(delay) => Ok(self.run_delay(delay, scope, previous, record)),
                StepKind::Foreach(foreach) => {
                    self.run_foreach(step, foreach, scope, state, name, record)
                        .await
                }
                StepKind::Parallel(parallel) => {
                    self.run_parallel(step, parallel, state, name, record).await
                }
                StepKind::Call(call) => self.run_call(call, scope, state, name, record).await,
                _ => Ok(StepResult::Failed(StepError::permanent(
                    "not a control step",
                ))),
            }
        };
        match step.timeout {
            // A delay's wait is not work in progress: a timeout does not bound it.
            Some(limit) if !matches!(step.kind, StepKind::Delay(_)) => {
                match tokio::time::timeout(limit, run).await {
                    Ok(result) => result,
                    Err(_) => Ok(StepResult::Failed(StepError::permanent(format!(
                        "timed out after {}",
                        humanize(limit)
                    )))),
                }
            }
            _ => run.await,
        }
    }

    /// The end of the wait is computed once and kept in the record, so a resume waits only
    /// for what is left of it.
    fn run_delay(
        &self,
        delay: &DelayStep,
        scope: &Scope<'_>,
        previous: Option<&StepRecord>,
        record: &mut StepRecord,
    ) -> StepResult {
        let kept = previous
            .and_then(|r| r.output.get("until"))
            .and_then(Json::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let until = match kept {
            Some(until) => until,
            None => match delay.until(scope, self.shared.effects.clock.now()) {
                Ok(until) => until,
                Err(err) => return StepResult::Failed(err),
            },
        };
        let until_text = until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        record.input = serde_json::json!({ "until": until_text });
        record.attempts = 1;
        if self.shared.options.dry_run {
            return StepResult::Done(Outcome::Continue(
                serde_json::json!({ "until": until_text, "dry_run": true }),
            ));
        }
        if self.shared.effects.clock.now() >= until {
            return StepResult::Done(Outcome::Continue(
                serde_json::json!({ "until": until_text }),
            ));
        }
        record.status = StepStatus::Retrying;
        record.output = serde_json::json!({ "until": until_text });
        StepResult::Pending
    }

    async fn run_foreach(
        &self,
        step: &Step,
        foreach: &ForeachStep,
        scope: &Scope<'_>,
        state: &RunState,
        name: &str,
        record: &mut StepRecord,
    ) -> Result<StepResult, JournalError> {
        let items = match foreach.render_items(scope) {
            Ok(items) => items,
            Err(err) => return Ok(StepResult::Failed(err)),
        };
        record.input = serde_json::json!({
            "items": items, "as": foreach.binding, "parallel": foreach.parallel,
        });
        // `parallel` lanes, each taking the next item in list order: only the iterations under
        // way are polled, and only they hold a copy of the state.
        let stop = AtomicBool::new(false);
        let next = AtomicUsize::new(0);
        let length = items.len();
        let ended: Vec<Mutex<Option<Result<Block, JournalError>>>> =
            items.iter().map(|_| Mutex::new(None)).collect();
        let lanes = (0..foreach.parallel.min(length)).map(|_| {
            let (stop, next, ended, items) = (&stop, &next, &ended, &items);
            async move {
                // After a failure (or a wait) no new iteration starts; the resume starts them.
                while !stop.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let mut iteration = state.clone();
                    iteration
                        .locals
                        .insert(foreach.binding.clone(), item.clone());
                    iteration
                        .locals
                        .insert("loop".to_owned(), loop_value(i, length));
                    let place = Place::Nested {
                        prefix: format!("{name}[{i}]."),
                    };
                    let block = self.run_block(&mut iteration, &foreach.steps, place).await;
                    if block
                        .as_ref()
                        .map_or(true, |b| stops_siblings(&b.flow, step.continue_on_error))
                    {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if let Some(slot) = ended.get(i)
                        && let Ok(mut slot) = slot.lock()
                    {
                        *slot = Some(block);
                    }
                }
            }
        });
        join_all(lanes.collect()).await;
        let mut blocks = Vec::with_capacity(length);
        for slot in ended {
            blocks.push(match slot.into_inner().ok().flatten() {
                Some(block) => Some(block?),
                None => None,
            });
        }
        let labelled = blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("iteration {i}"), b));
        Ok(conclude(step, labelled, |outputs| {
            Json::Array(outputs.into_iter().map(|(_, o)| o).collect())
        }))
    }

    async fn run_parallel(
        &self,
        step: &Step,
        parallel: &ParallelStep,
        state: &RunState,
        name: &str,
        record: &mut StepRecord,
    ) -> Result<StepResult, JournalError> {
        record.input = serde_json::json!({
            "branches": parallel.branches.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(),
        });
        let branches = parallel.branches.iter().map(|(branch, steps)| {
            let mut local = state.clone();
            let place = Place::Nested {
                prefix: format!("{name}.{branch}."),
            };
            async move { self.run_block(&mut local, steps, place).await }
        });
        let results = join_all(branches.collect()).await;
        let mut labelled = Vec::with_capacity(results.len());
        for ((branch, _), result) in parallel.branches.iter().zip(results) {
            labelled.push((format!("branch '{branch}'"), Some(result?)));
        }
        let names: Vec<String> = parallel.branches.iter().map(|(b, _)| b.clone()).collect();
        Ok(conclude(step, labelled.into_iter(), |outputs| {
            let mut map = Map::new();
            for (name, (_, output)) in names.iter().zip(outputs) {
                map.insert(name.clone(), output);
            }
            Json::Object(map)
        }))
    }

    /// The called workflow runs as a nested execution of this run: its steps are recorded under
    /// the call's name, so a resume restores what it already did.
    async fn run_call(
        &self,
        call: &CallStep,
        scope: &Scope<'_>,
        state: &RunState,
        name: &str,
        record: &mut StepRecord,
    ) -> Result<StepResult, JournalError> {
        let payload = match call.render_payload(scope) {
            Ok(p) => p,
            Err(err) => return Ok(StepResult::Failed(err)),
        };
        record.input = serde_json::json!({ "workflow": call.workflow, "payload": payload });
        let Some(callees) = self.shared.callees else {
            return Ok(StepResult::Failed(StepError::permanent(
                "`call` is not available here: no other workflows are loaded",
            )));
        };
        let Some(callee) = callees.workflow(&call.workflow) else {
            return Ok(StepResult::Failed(StepError::permanent(format!(
                "workflow '{}' is not loaded",
                call.workflow
            ))));
        };
        if self.depth >= MAX_CALL_DEPTH {
            return Ok(StepResult::Failed(StepError::permanent(format!(
                "calls nested more than {MAX_CALL_DEPTH} deep"
            ))));
        }
        let event = Event {
            id: format!("{}.{name}", self.event.id),
            method: "CALL".to_owned(),
            path: callee
                .webhook
                .as_ref()
                .map(|w| w.path.as_str().to_owned())
                .unwrap_or_default(),
            params: Default::default(),
            query: Map::new(),
            headers: Map::new(),
            raw: serde_json::to_vec(&payload).unwrap_or_default(),
            body: payload,
            received_at: self.event.received_at,
            // A called workflow runs within its caller's run, started by the same trigger.
            trigger: self.event.trigger.clone(),
            trace: self.event.trace,
        };
        let secrets = callees.secrets(&callee);
        let child = Execution::new(
            self.shared,
            &callee,
            &event,
            &secrets,
            &self.secret_values,
            self.depth + 1,
        );
        let mut run = state.run.clone();
        if let Json::Object(fields) = &mut run {
            fields.insert("workflow".into(), Json::String(callee.name.clone()));
            fields.insert("caller".into(), Json::String(self.workflow.name.clone()));
        }
        let mut child_state = RunState {
            vars: Map::new(),
            steps: Map::new(),
            run,
            response: None,
            locals: Map::new(),
        };
        if let Err(error) = child.evaluate_vars(&mut child_state) {
            return Ok(StepResult::Failed(StepError::permanent(format!(
                "workflow '{}': {error}",
                callee.name
            ))));
        }
        let place = Place::Nested {
            prefix: format!("{name}."),
        };
        let flow = child
            .run_steps(&mut child_state, &callee.steps, place)
            .await?;
        // What the called workflow kept secret stays masked for its caller too.
        let output = child.redactor.redact_json(&serde_json::json!({
            "workflow": callee.name,
            "filtered": matches!(flow, Flow::Filtered),
            "vars": child_state.vars,
            "steps": child_state.steps,
        }));
        // Its errors too: the caller's own redactor does not know the called workflow's secrets.
        Ok(match flow {
            Flow::Completed | Flow::Filtered => StepResult::Done(Outcome::Continue(output)),
            Flow::Retrying(message, until) => StepResult::Wait {
                until,
                message: child.redactor.redact_str(&message),
            },
            Flow::Cancelled(message) => StepResult::Cancelled(message),
            Flow::Failed { step, error } => StepResult::Failed(StepError {
                message: child.redactor.redact_str(&format!(
                    "workflow '{}' failed: step '{step}' failed: {error}",
                    callee.name
                )),
                output: Some(output),
                transient: false,
            }),
        })
    }

    /// Run a nested list on its own copy of the state; the block's own steps are what it shows.
    async fn run_block(
        &self,
        state: &mut RunState,
        steps: &[Step],
        place: Place,
    ) -> Result<Block, JournalError> {
        let flow = self.run_steps(state, steps, place).await?;
        let own = steps
            .iter()
            .filter_map(|s| {
                state
                    .steps
                    .get(&s.name)
                    .map(|v| (s.name.clone(), v.clone()))
            })
            .collect();
        Ok(Block { flow, steps: own })
    }
}

/// Whether a block's end keeps the blocks not started yet from starting.
fn stops_siblings(flow: &Flow, continue_on_error: bool) -> bool {
    match flow {
        Flow::Completed | Flow::Filtered => false,
        Flow::Retrying(..) | Flow::Cancelled(_) => true,
        Flow::Failed { .. } => !continue_on_error,
    }
}

/// The step's result from its blocks (`None`: never started). A wait in any block makes the
/// step wait; a failure fails it unless `continue_on_error`, when the failed block's entry
/// (its steps, the failed one with its `error`) is simply part of the output.
fn conclude(
    step: &Step,
    blocks: impl Iterator<Item = (String, Option<Block>)>,
    shape: impl FnOnce(Vec<(String, Json)>) -> Json,
) -> StepResult {
    let mut outputs = Vec::new();
    let mut wait: Option<(DateTime<Utc>, String)> = None;
    let mut failure: Option<String> = None;
    let mut cancelled: Option<String> = None;
    for (label, block) in blocks {
        let Some(block) = block else {
            outputs.push((label, Json::Null));
            continue;
        };
        match block.flow {
            Flow::Completed | Flow::Filtered => {}
            Flow::Retrying(message, until) => {
                if wait.as_ref().is_none_or(|(earliest, _)| until < *earliest) {
                    wait = Some((until, message));
                }
            }
            Flow::Cancelled(message) => cancelled = Some(message),
            Flow::Failed {
                step: failed,
                error,
            } => {
                if failure.is_none() {
                    failure = Some(format!("{label} failed: step '{failed}' failed: {error}"));
                }
            }
        }
        outputs.push((label, Json::Object(block.steps)));
    }
    if let Some(message) = cancelled {
        return StepResult::Cancelled(message);
    }
    if let Some((until, message)) = wait {
        return StepResult::Wait { until, message };
    }
    let output = shape(outputs);
    match failure {
        Some(message) if !step.continue_on_error => StepResult::Failed(StepError {
            message,
            output: Some(output),
            transient: false,
        }),
        _ => StepResult::Done(Outcome::Continue(output)),
    }
}

/// Poll every future until all are done, on the current task: the nested steps borrow the
/// execution, so they cannot be spawned.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
