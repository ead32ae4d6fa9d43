//! One run executed: loaded (or taken fresh with its event), claimed, its workflow version
//! found, its steps run by the engine, its retry or end recorded durably, a panic turned into
//! a failed run.

use super::*;
use crate::observe::trace::{self, RunTrace};

pub(super) async fn load(store: &Store, job: Job) -> Option<Loaded> {
    if let Some(loaded) = job.loaded {
        return Some(loaded);
    }
    let run_id = job.run_id.as_str();
    match store.run(run_id).await {
        Ok(Some(detail)) => Loaded::stored(detail),
        Ok(None) => {
            error!(run_id, "queued run not found in the store");
            None
        }
        Err(err) => {
            error!(run_id, error = %err, "cannot load run; it stays queued");
            None
        }
    }
}

/// Execute a job; whether the run ran here (it was `running` for this process until now).
/// Execute one run in the worker slot `slot`, which is given back as soon as the run's steps are
/// done: recording its end does not keep the next run waiting.
pub(super) async fn execute_run(
    worker: &Worker,
    job: Job,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> bool {
    let mut slot = Some(slot);
    let store = &worker.inner.store;
    let run_id = job.run_id.clone();
    let run_id = run_id.as_str();
    let claimed = job.claimed;
    // Another job for the same run (a duplicate queue entry) must not end this one's renewal.
    let mut held = claimed.then_some(Held { worker, run_id });
    let Some(detail) = load(store, job).await else {
        return held.is_some();
    };
    let span = info_span!("run", run_id = %run_id, workflow = %detail.workflow);
    // When the run first started: this execution, unless an earlier one did.
    let first_started = detail.started_at.unwrap_or_else(chrono::Utc::now);
    async {
        let Some(workflow) = definition_or_fail(worker, run_id, &detail).await else {
            return;
        };
        if !claim_here(worker, run_id, claimed).await {
            return;
        }
        worker.hold(run_id);
        // A run claimed before it was queued already has its guard. Replacing it, or building
        // a second one, would drop a guard, which takes the run out of the renewed set it was
        // just put in: its lease would end while it runs, and it would be taken over.
        held.get_or_insert_with(|| Held { worker, run_id });
        let started = Instant::now();
        let journal = StoreJournal::new(worker, run_id);
        let cancel = CancelWatch::register(worker, run_id);
        if detail.cancel_requested {
            // Asked before this execution: it stops before its first step.
            cancel.look_now().await;
        }
        let signal = cancel.signal.clone();
        let Some(result) = run_steps(worker, run_id, &workflow, &detail, &journal, signal).await
        else {
            return;
        };
        match result {
            Ok(outcome) if outcome.status == RunStatus::Retrying => {
                record_retry(worker, run_id, &workflow, outcome, &journal).await;
            }
            Ok(outcome) => {
                trace_run(worker, run_id, &workflow, &detail, &outcome, first_started);
                let done = StepsDone {
                    outcome,
                    started,
                    slot: slot.take(),
                };
                record_end(worker, run_id, &workflow, done, &journal).await;
            }
            Err(err) => {
                // Progress could not be recorded: stop here and leave the run to be resumed, so
                // no finished step is ever executed twice on account of a lost record.
                let cause = std::error::Error::source(&err).map(ToString::to_string);
                error!(error = %err, cause, "run interrupted; it resumes at the next start");
            }
        }
    }
    .instrument(span)
    .await;
    let ran = held.is_some();
    drop(held);
    ran
}

/// The definition the run started with; when there is none, the run fails and `None` is
/// answered.
pub(super) async fn definition_or_fail(
    worker: &Worker,
    run_id: &str,
    detail: &Loaded,
) -> Option<Arc<Workflow>> {
    match workflow_for(worker, &detail.workflow, &detail.version).await {
        Ok(w) => Some(w),
        Err(message) => {
            crate::observe::metrics::metrics()
                .run_finished(&detail.workflow, RunStatus::Failed.as_str());
            // Its definition is unknown, so it may hold a concurrency slot.
            let ended = Ended::MayHoldSlot;
            let error = Some(message.clone());
            if finish(worker, run_id, ended, RunStatus::Failed, error, None).await {
                error!(status = "failed", error = %message, "run finished");
            }
            None
        }
    }
}

/// Whether the run is this process's to execute: claimed already, or claimed now.
pub(super) async fn claim_here(worker: &Worker, run_id: &str, claimed: bool) -> bool {
    let store = &worker.inner.store;
    let claim = if claimed {
        Ok(true)
    } else {
        store
            .claim(run_id, &worker.inner.owner, worker.inner.lease_end())
            .await
    };
    match claim {
        Ok(true) => true,
        // Another worker holds it (a duplicate queue entry, or another node), its
        // concurrency key has no free slot (it stays queued until a run with the key
        // ends), or it was cancelled meanwhile.
        Ok(false) => {
            if let Ok(Some(now)) = store.run(run_id).await
                && now.run.status.is_final()
            {
                worker.answer(
                    run_id,
                    SyncAnswer::Finished {
                        status: now.run.status,
                    },
                );
            }
            false
        }
        Err(err) => {
            error!(error = %err, "cannot claim the run; it stays queued");
            false
        }
    }
}

/// The run's steps, executed by the engine with this worker's effects and secrets. A panic
/// fails the run here and answers `None`.
pub(super) async fn run_steps(
    worker: &Worker,
    run_id: &str,
    workflow: &Arc<Workflow>,
    detail: &Loaded,
    journal: &StoreJournal<'_>,
    cancel: engine::CancelSignal,
) -> Option<Result<engine::RunOutcome, JournalError>> {
    let secrets = worker.inner.secrets.resolve(&workflow.secrets);
    let info = RunInfo {
        id: run_id.to_owned(),
        workflow: workflow.name.clone(),
        attempt: detail.attempt,
    };
    let options = ExecOptions {
        started_at: Some(detail.started_at.unwrap_or_else(chrono::Utc::now)),
        cancel: Some(cancel),
        trace: worker.inner.tracer.as_ref().map(|tracer| RunTrace {
            tracer: tracer.clone(),
            run: trace::run_context(run_id, detail.event.trace),
        }),
        ..ExecOptions::default()
    };
    let callees = RegistryCallees { worker };
    let request = RunRequest {
        workflow,
        event: &detail.event,
        run: &info,
        secrets: &secrets,
        finished: &detail.finished,
        effects: &worker.inner.effects,
        options: &options,
        callees: Some(&callees),
    };
    match CatchPanic(Box::pin(engine::execute(request, journal))).await {
        Ok(result) => Some(result),
        Err(panic) => {
            // A bug, reachable from some workflow or payload: this run fails rather than
            // staying `running` (its lease renewed, its concurrency slot held) for ever.
            error!(panic = %panic, "the run's execution panicked");
            let message = format!("internal error: the execution panicked: {panic}");
            let ended = Ended::of(workflow);
            let _ = finish(
                worker,
                run_id,
                ended,
                RunStatus::Failed,
                Some(message),
                None,
            )
            .await;
            journal.settle_all().await;
            None
        }
    }
}

/// The run's span, once it ended: from its first start to now, the child of the request that
/// brought its event (when traces were on then), with the ids every execution of the run gave
/// its steps as their parent.
fn trace_run(
    worker: &Worker,
    run_id: &str,
    workflow: &Workflow,
    detail: &Loaded,
    outcome: &engine::RunOutcome,
    first_started: chrono::DateTime<chrono::Utc>,
) {
    let Some(tracer) = &worker.inner.tracer else {
        return;
    };
    let context = trace::run_context(run_id, detail.event.trace);
    let parent = detail.event.trace.map(|request| request.span_id);
    let name = format!("run {}", workflow.name);
    let mut span = trace::Span::with_context(context, parent, name, trace::SpanKind::Internal);
    span.start = std::time::SystemTime::from(first_started);
    span.text("hookflow.workflow", workflow.name.as_str());
    span.text("hookflow.run_id", run_id);
    span.integer("hookflow.attempt", i64::from(detail.attempt));
    span.text("hookflow.status", outcome.status.as_str());
    span.failed = outcome.status == RunStatus::Failed;
    tracer.record(span.finish());
}

/// A step failed and will be tried again: the steps before the wait are recorded, then the
/// wait, and the retry scheduler is woken for the new due time.
pub(super) async fn record_retry(
    worker: &Worker,
    run_id: &str,
    workflow: &Workflow,
    outcome: engine::RunOutcome,
    journal: &StoreJournal<'_>,
) {
    let store = &worker.inner.store;
    let due_at = outcome.due_at.unwrap_or_else(chrono::Utc::now);
    warn!(
        error = outcome.error.as_deref().unwrap_or_default(),
        due_at = %due_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "step failed; the run will try again"
    );
    crate::observe::metrics::metrics().step_retry(&workflow.name);
    // The steps before the wait are on record before it is: a resume must find them.
    journal.settle_all().await;
    let error = outcome.error;
    match durably(|| store.run_retrying(run_id, error.clone(), due_at)).await {
        Ok(()) => worker.inner.retries.notify_one(),
        Err(err) => {
            error!(error = %err, "cannot record the retry; the run resumes at the next start")
        }
    }
}

/// A run whose steps are done, with the worker slot it still holds.
pub(super) struct StepsDone {
    pub(super) outcome: engine::RunOutcome,
    pub(super) started: Instant,
    pub(super) slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The run ended: the worker slot is given back, its end is recorded, then its steps, and the
/// end is logged once on record.
pub(super) async fn record_end(
    worker: &Worker,
    run_id: &str,
    workflow: &Workflow,
    done: StepsDone,
    journal: &StoreJournal<'_>,
) {
    let StepsDone {
        outcome,
        started,
        slot,
    } = done;
    let duration_ms = started.elapsed().as_millis() as u64;
    let ended = Ended::of(workflow);
    crate::observe::metrics::metrics().run_finished(&workflow.name, outcome.status.as_str());
    // On a store shared with other processes, a run is in flight (a process taking it over
    // repeats its last step) until its end is on record, and keeps its slot until then: a
    // killed process never leaves more than its `workers` runs to repeat a step. Alone on its
    // store, the slot goes to the next run at once.
    let slot = if worker.inner.store.shared() {
        slot
    } else {
        drop(slot);
        None
    };
    let (status, error) = (outcome.status, outcome.error.clone());
    let recorded = finish(
        worker,
        run_id,
        ended,
        outcome.status,
        outcome.error,
        outcome.response,
    )
    .await;
    drop(slot);
    journal.settle_all().await;
    // Said once the end is on record, so the log never reports a run as finished
    // that a restart would run again.
    match (recorded, error) {
        (false, _) => {}
        (true, Some(error)) => {
            warn!(status = status.as_str(), duration_ms, %error, "run finished")
        }
        (true, None) => info!(status = status.as_str(), duration_ms, "run finished"),
    }
}

/// How long a run's record waits for a store that cannot write (a full disk, a lock held by
/// another process) before the run is left to be resumed: well inside a lease.
pub(super) const OUTAGE_PATIENCE: Duration = Duration::from_secs(10);

pub(super) const OUTAGE_RETRY: Duration = Duration::from_millis(250);

/// Make `write` until the store takes it: a short outage must not cost a finished step its
/// record or a finished run its end (which would run it again after a restart).
pub(super) async fn durably<F, Fut>(mut write: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut waited = Duration::ZERO;
    loop {
        match write().await {
            Err(StoreError::Unavailable(_)) if waited < OUTAGE_PATIENCE => {
                tokio::time::sleep(OUTAGE_RETRY).await;
                waited += OUTAGE_RETRY;
            }
            written => return written,
        }
    }
}

/// Whether a finished run can have held a concurrency slot that others wait for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    MayHoldSlot,
    /// Its workflow limits nothing: no store lookup for waiting runs.
    HeldNoSlot,
}

impl Ended {
    /// How a run of `workflow` ends: only a workflow with `concurrency` hands on a slot.
    pub(super) fn of(workflow: &Workflow) -> Self {
        if workflow.concurrency.is_some() {
            Ended::MayHoldSlot
        } else {
            Ended::HeldNoSlot
        }
    }
}

/// Record the run's end, answer a synchronous caller and start who waited for its slot;
/// answers whether the end is on record.
pub(super) async fn finish(
    worker: &Worker,
    run_id: &str,
    ended: Ended,
    status: RunStatus,
    error: Option<String>,
    response: Option<SyncResponse>,
) -> bool {
    let store = &worker.inner.store;
    if let Err(err) =
        durably(|| store.run_finished(run_id, status, error.clone(), response.clone())).await
    {
        error!(run_id, error = %err, "cannot record the end of the run");
        worker.answer(run_id, SyncAnswer::Finished { status });
        return false;
    }
    worker.answer(run_id, SyncAnswer::Finished { status });
    if ended == Ended::HeldNoSlot {
        return true;
    }
    // Its concurrency slot is free: the oldest run waiting for it can start.
    match worker.inner.store.queued_behind(run_id).await {
        Ok(waiting) => {
            for id in waiting {
                worker.enqueue(id);
            }
        }
        Err(err) => warn!(run_id, error = %err, "cannot look for runs waiting on this one"),
    }
    true
}

/// The definition the run started with: the loaded one if unchanged, else the stored copy.
pub(super) async fn workflow_for(
    worker: &Worker,
    name: &str,
    version: &str,
) -> Result<Arc<Workflow>, String> {
    let loaded = worker
        .inner
        .registry
        .read()
        .ok()
        .and_then(|registry| registry.get(name).cloned());
    if let Some(workflow) = loaded.filter(|w| w.version == version) {
        return Ok(workflow);
    }
    let definition = worker
        .inner
        .store
        .definition(version)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("workflow '{name}' version {version} is not available"))?;
    let (compiled, diagnostics) = workflow::compile_file(
        SourceFile::new(definition.path, definition.source),
        &worker.inner.compile_options,
    );
    compiled.map(Arc::new).ok_or_else(|| {
        format!(
            "the stored definition of workflow '{name}' no longer compiles: {}",
            diagnostics
                .iter()
                .next()
                .map(|d| d.message.clone())
                .unwrap_or_default()
        )
    })
}

/// A future whose panic is its output, as a message.
pub(super) struct CatchPanic<F>(pub(super) std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned()))),
        }
    }
}

/// `call` steps run the workflows loaded now, with the secrets each declares.
pub(super) struct RegistryCallees<'a> {
    pub(super) worker: &'a Worker,
}

impl engine::Callees for RegistryCallees<'_> {
    fn workflow(&self, name: &str) -> Option<Arc<Workflow>> {
        self.worker
            .inner
            .registry
            .read()
            .ok()
            .and_then(|registry| registry.get(name).cloned())
    }

    fn secrets(&self, workflow: &Workflow) -> std::collections::BTreeMap<String, String> {
        self.worker.inner.secrets.resolve(&workflow.secrets)
    }
}

/// A finished step in the log and the metrics.
pub(super) fn log_step(record: &StepRecord) {
    info!(
        step = %record.name,
        kind = %record.kind,
        status = record.status.as_str(),
        duration_ms = (record.duration_ms * 10.0).round() / 10.0,
        "step finished"
    );
    crate::observe::metrics::metrics().step_duration(
        &record.kind,
        Duration::from_secs_f64(record.duration_ms.max(0.0) / 1000.0),
    );
}
