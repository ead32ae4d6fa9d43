//! The store: the only module with SQL. Events and runs are committed before a webhook is
//! answered; each finished step is recorded so an interrupted run resumes where it stopped.

mod activity;
/// The condition a claim of a queued run adds, as a literal for `concat!`: the run's workflow
/// is not paused (`$runs` names the claimed row's table or alias). A run already `running`
/// (taken over) goes on whatever the pause.
macro_rules! not_paused {
    ($runs:literal) => {
        concat!(
            "NOT EXISTS (SELECT 1 FROM paused_workflows AS paused WHERE paused.workflow = ",
            $runs,
            ".workflow)"
        )
    };
}

mod error;
mod files;
mod health;
mod pause;
mod postgres;
mod reads;
mod rows;
mod sqlite;
mod writes;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use crate::run::NewRun;
use crate::run::RateLimit;
use crate::run::SyncResponse;
use crate::run::{Event, RunStatus, StepRecord};
pub use activity::{ActivityWindow, MAX_ACTIVITY_WINDOW, MinuteCount, RunDurations};
pub use error::{Cause, StoreError};
pub use health::HealthState;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use std::sync::Arc;

use crate::future::BoxFuture;

/// What the rest of hookflow needs from a store. Every backend implements it and passes the
/// conformance suite in `tests/it/store.rs`. The shape is a job queue's (River, Oban): accepting
/// commits an event with its queued runs; a worker *claims* a run with a lease it renews
/// (`FOR UPDATE SKIP LOCKED` on PostgreSQL), records each step, and ends it; a run whose owner
/// stopped renewing can be claimed by another.
pub trait StoreBackend: Send + Sync {
    /// Commit the event and its queued runs (shared, not copied: events can be large).
    fn accept<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Accepted, StoreError>>;
    /// As `accept`, and, where the backend can, claim the new runs for `lease` in the same commit
    /// (`Accepted::claimed`): a process alone on its store saves a commit per run. Runs with a
    /// dedupe key or a concurrency rule are only queued.
    fn accept_claimed<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
        lease: Lease,
    ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
        let _ = lease;
        self.accept(event, runs)
    }
    /// Take a run to execute until `until`; false when another owner holds a live lease or
    /// the run is not waiting to run.
    fn claim<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Extend the leases `owner` holds on `run_ids` (runs it no longer holds are left alone).
    fn renew_leases<'a>(
        &'a self,
        owner: &'a str,
        run_ids: &'a [String],
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// At start: make claimable the runs of processes that are gone.
    fn take_over_orphans(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    fn expired_leases(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    fn step_finished<'a>(
        &'a self,
        run_id: &'a str,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Record a step without waiting for its commit: done once the write is on its way, in
    /// order with the run's later writes. The answer is a [`Settling`] that ends with the
    /// write's commit (or its failure); whoever needs the record durable waits for it then.
    /// A backend that cannot do better commits first and answers a settled write.
    fn step_noted<'a>(
        &'a self,
        run_id: &'a str,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<Settling, StoreError>> {
        Box::pin(async move {
            self.step_finished(run_id, record).await?;
            let settled: Settling = Box::pin(std::future::ready(Ok(())));
            Ok(settled)
        })
    }
    fn run_finished<'a>(
        &'a self,
        run_id: &'a str,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn run_retrying<'a>(
        &'a self,
        run_id: &'a str,
        error: Option<String>,
        due_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn claim_due_retries(
        &self,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    fn next_retry_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>>;
    /// Queue a finished run again with its next attempt number, from its first failed step
    /// (the records before it are kept) or from the start, on its own definition or on the
    /// one `replay.version` names.
    fn replay<'a>(
        &'a self,
        run_id: &'a str,
        replay: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Replayed, StoreError>>;
    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<usize, StoreError>>;
    fn save_definition<'a>(
        &'a self,
        version: &'a str,
        definition: Definition,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn definition<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>>;
    fn unfinished_runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunSummary>, StoreError>>;
    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDetail>, StoreError>>;
    /// The runs with these exact ids, with their events and steps, in no particular order; ids
    /// not found are left out. For the worker, which loads the runs it claimed from the queue
    /// together rather than one after another in their slots.
    fn runs<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<RunDetail>, StoreError>> {
        Box::pin(async move {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(detail) = self.run(id).await? {
                    found.push(detail);
                }
            }
            Ok(found)
        })
    }
    /// Runs created in the window (cut to [`MAX_ACTIVITY_WINDOW`]) counted per minute of
    /// creation and current status, oldest minute first; minutes without runs are absent.
    fn runs_per_minute<'a>(
        &'a self,
        window: &'a ActivityWindow,
    ) -> BoxFuture<'a, Result<Vec<MinuteCount>, StoreError>>;
    /// The p50 and p95 durations of the runs created in the window that have finished.
    fn run_durations<'a>(
        &'a self,
        window: &'a ActivityWindow,
    ) -> BoxFuture<'a, Result<RunDurations, StoreError>>;
    /// The oldest queued runs that share `run_id`'s concurrency key (same workflow), as many as
    /// the key has slots free besides its other running and waiting runs: asked when `run_id`
    /// ends, since they may start now.
    fn queued_behind<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// How many runs are `queued` (waiting for a worker), for backpressure.
    fn count_queued(&self) -> BoxFuture<'_, Result<usize, StoreError>>;
    /// A schedule's tick: in one transaction, record `(workflow, tick)` and accept the event
    /// with its runs, or write nothing and answer `None` when that tick is recorded already.
    /// So a tick starts its runs exactly once, across restarts and across processes.
    fn accept_tick<'a>(
        &'a self,
        workflow: &'a str,
        tick: DateTime<Utc>,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Option<Accepted>, StoreError>>;
    /// Record a tick that starts no run (skipped by `catch_up: none`, or the starting point
    /// of a schedule seen for the first time); true exactly once per `(workflow, tick)`.
    fn claim_tick<'a>(
        &'a self,
        workflow: &'a str,
        tick: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// The latest tick recorded for `workflow`, by either method above. `prune` removes ticks
    /// older than a day (or than its cut, when later), but never a workflow's latest.
    fn last_tick<'a>(
        &'a self,
        workflow: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, StoreError>>;
    /// Claim up to `limit` runs waiting in the queue since before `queued_before`, oldest
    /// first, for `owner` until `until`; the ids claimed. Concurrent callers never get the same
    /// run. This is how a process takes work accepted by another one that is busy or gone.
    fn claim_queued<'a>(
        &'a self,
        owner: &'a str,
        until: DateTime<Utc>,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        // A store used by one process: every queued run is in that process's own queue.
        let _ = (owner, until, queued_before, limit);
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Put back in the queue the runs `owner` claimed but did not start (a process stopping
    /// gracefully with runs waiting for a slot), so another process takes them at once rather
    /// than when their leases end; the number put back. A run another process took over
    /// meanwhile is left alone.
    fn release<'a>(
        &'a self,
        owner: &'a str,
        run_ids: &'a [String],
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        // A store used by one process: its next start queues its unfinished runs again.
        let _ = (owner, run_ids);
        Box::pin(async { Ok(0) })
    }
    /// Take the next slot of the outgoing rate bucket `key` under `limit` at `now`: when its
    /// taker may act. The slot is reserved whatever its time (`run::rate`, GCRA), so takers
    /// queue in the order they asked; on a shared store, across every process.
    fn take_rate_slot<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<DateTime<Utc>, StoreError>>;
    /// Free no slot of `key` before `until` (a receiver answered `429` with `Retry-After`); a
    /// bucket booked further ahead keeps its queue.
    fn hold_rate_bucket<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Cancel a run: one waiting (queued, retrying, delayed, or running under a lease that
    /// ended) ends `cancelled` at once; one running under a live lease is marked, and its owner
    /// stops it at its next step boundary. A finished run is left alone.
    fn cancel_run<'a>(
        &'a self,
        run_id: &'a str,
        cancel: &'a CancelRequest,
    ) -> BoxFuture<'a, Result<Cancelled, StoreError>>;
    /// Of `run_ids` (the runs a worker executes), those whose cancellation was asked, each
    /// with the error it ends with.
    fn cancel_requests<'a>(
        &'a self,
        run_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;
    /// Pause a workflow: its queued runs are not claimed until it is resumed. False when it
    /// was paused already (the first pause's record stays).
    fn pause_workflow<'a>(
        &'a self,
        workflow: &'a str,
        pause: &'a PauseRequest,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Resume a paused workflow; false when it was not paused.
    fn resume_workflow<'a>(&'a self, workflow: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Every paused workflow, by name.
    fn paused_workflows(&self) -> BoxFuture<'_, Result<Vec<PausedWorkflow>, StoreError>>;
    /// Whether other processes may use this store at the same time (PostgreSQL): the worker
    /// then looks for their queued and abandoned runs too.
    fn shared(&self) -> bool {
        false
    }
    /// Wake-ups from any process using the store: runs were queued, a retry was scheduled.
    /// A store used by one process has none to give (the receiver never yields).
    fn wakeups(&self) -> tokio::sync::broadcast::Receiver<Wakeup> {
        tokio::sync::broadcast::channel(1).1
    }
}

/// Why an idle worker should look at the store again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// Runs were accepted or replayed somewhere.
    RunsQueued,
    /// A run waits for a retry: its due time may be the earliest now.
    RetryScheduled,
    /// A running run's cancellation was asked: its owner stops it.
    CancelRequested,
}

impl Wakeup {
    pub fn as_str(self) -> &'static str {
        match self {
            Wakeup::RunsQueued => "runs",
            Wakeup::RetryScheduled => "retry",
            Wakeup::CancelRequested => "cancel",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "runs" => Some(Wakeup::RunsQueued),
            "retry" => Some(Wakeup::RetryScheduled),
            "cancel" => Some(Wakeup::CancelRequested),
            _ => None,
        }
    }
}

/// How a store connects, for the backends with a server (PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections per process.
    pub pool_size: u32,
    /// Longest a statement may run before the database cancels it; none when `None`.
    pub statement_timeout: Option<std::time::Duration>,
    /// Longest a request waits for a free connection (an outage answers 503 after this).
    pub acquire_timeout: std::time::Duration,
    /// Runs `running` at once in the whole store, across every process using it: a queued run
    /// is claimed only while fewer are. No cap when `None` (each process still runs at most its
    /// `workers`).
    pub max_running: Option<u32>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            statement_timeout: Some(std::time::Duration::from_secs(30)),
            acquire_timeout: std::time::Duration::from_secs(2),
            max_running: None,
        }
    }
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// For a server: the store is its own (a SQLite file is locked to this process).
    Serve,
    /// For reading alongside a running server (`hookflow runs`).
    Read,
}

/// A handle on the store, cheap to clone.
#[derive(Clone)]
pub struct Store(Arc<dyn StoreBackend>);

impl std::ops::Deref for Store {
    type Target = dyn StoreBackend;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

impl Store {
    /// Open the store at `location`: a SQLite file path (optionally `sqlite://...`), or a
    /// PostgreSQL URL (`postgres://...`, `postgresql://...`).
    pub async fn open(location: &str, mode: OpenMode) -> Result<Self, StoreError> {
        Self::open_with(location, mode, &StoreOptions::default()).await
    }

    /// Open with connection options (used by PostgreSQL; a SQLite file needs none).
    pub async fn open_with(
        location: &str,
        mode: OpenMode,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        if is_postgres(location) {
            let postgres = PostgresStore::open(location, options, mode == OpenMode::Serve).await?;
            return Ok(Self::from_backend(Arc::new(postgres)));
        }
        let path = location.strip_prefix("sqlite://").unwrap_or(location);
        let sqlite = SqliteStore::open(path, mode == OpenMode::Serve)
            .await?
            .with_max_running(options.max_running);
        Ok(Self::from_backend(Arc::new(sqlite)))
    }

    pub fn from_backend(backend: Arc<dyn StoreBackend>) -> Self {
        Self(backend)
    }
}

/// Whether a store location names a PostgreSQL database.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// A write on its way to the store: ends once it is committed, or with why it was not.
pub type Settling =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'static>>;

/// Who executes a run, until when (renewed while it runs).
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// How a finished run is replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Every step again; otherwise the records before the first failed step are kept and
    /// those steps are not redone.
    pub from_start: bool,
    /// The definition version the replay executes (the workflow as the server has it now);
    /// `None` keeps the run's own, so the replay repeats exactly what ran.
    pub version: Option<String>,
}

impl ReplayOptions {
    /// The versions the replay leaves on a run whose version is `own` and whose earlier one
    /// (from an earlier replay) is `earlier`.
    pub(crate) fn versions(&self, own: String, earlier: Option<String>) -> ReplayVersions {
        match &self.version {
            Some(asked) if *asked != own => ReplayVersions {
                version: asked.clone(),
                replayed_from_version: Some(own.clone()),
                changed_from: Some(own),
            },
            // The same definition: a plain replay, and an earlier change stays on record.
            _ => ReplayVersions {
                version: own,
                replayed_from_version: earlier,
                changed_from: None,
            },
        }
    }
}

/// The versions a replay writes on its run.
pub(crate) struct ReplayVersions {
    pub version: String,
    pub replayed_from_version: Option<String>,
    /// The run's version before, when this replay changed it.
    pub changed_from: Option<String>,
}

/// The answer to a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    Queued {
        attempt: u32,
        /// The definition version the replay executes.
        version: String,
        /// The version the run had, when this replay changed it.
        replayed_from_version: Option<String>,
    },
    NotFound,
    /// Only a finished run can be replayed; this one is in the given status.
    NotFinished(String),
}

/// Who asks to cancel a run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The caller as the admin API knows it: a token's or a UI session's user, else `api`,
    /// `ui` or `cli`.
    pub by: String,
    pub reason: Option<String>,
}

impl CancelRequest {
    /// The run's error once it is cancelled: `cancelled by <who>: <reason>`.
    pub fn message(&self) -> String {
        match self.reason.as_deref().map(str::trim) {
            Some(reason) if !reason.is_empty() => format!("cancelled by {}: {reason}", self.by),
            _ => format!("cancelled by {}", self.by),
        }
    }
}

/// The answer to a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// The run was waiting: it is `cancelled` now.
    Ended,
    /// The run is running: its owner stops it at its next step boundary.
    Requested,
    NotFound,
    /// The run had finished already, in this status.
    Finished(RunStatus),
}

/// Who pauses a workflow, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseRequest {
    pub by: String,
    pub reason: Option<String>,
}

/// A paused workflow: its runs wait in the queue until it is resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PausedWorkflow {
    pub workflow: String,
    pub since: DateTime<Utc>,
    pub by: String,
    pub reason: Option<String>,
}

/// What an accept created, and the runs that already held a repeated delivery.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    pub created: Vec<String>,
    /// The created runs were claimed for the lease asked for, in the accept's own commit.
    pub claimed: bool,
    pub duplicate_of: Vec<String>,
    /// Queued runs a new one cancelled (`cancel_previous`): they will never run.
    pub superseded: Vec<String>,
}

/// A run as listed: no steps, no event.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub event_id: String,
    pub workflow: String,
    /// The definition the run executes: the one it was accepted with, or the one a replay
    /// with the latest definition put in its place.
    pub version: String,
    /// The version the run had before the last replay that changed it (`None` when no replay
    /// did): the steps kept by that replay ran on it.
    pub replayed_from_version: Option<String>,
    pub status: RunStatus,
    pub attempt: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub response: Option<SyncResponse>,
    /// Who cancelled the run (or asked to, while it still runs): the reason is its error.
    pub cancelled_by: Option<String>,
    /// A running run whose cancellation was asked: it stops at its next step boundary.
    pub cancel_requested: bool,
}

impl RunSummary {
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds())
    }
}

/// A run with everything it did.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunSummary,
    pub event: Event,
    pub steps: Vec<StepRecord>,
}

/// Which runs to list, newest first (by `created_at`, then `id`, both descending).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
    /// Only runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only runs that come after this one in the listing order: the next page.
    pub before: Option<RunCursor>,
}

/// A position in the runs listing: the last run of a page. It carries the run's creation time,
/// not only its id, so a page still follows when that run was pruned meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl RunCursor {
    pub fn after(run: &RunSummary) -> Self {
        Self {
            created_at: run.created_at,
            id: run.id.clone(),
        }
    }

    /// The cursor as a URL-safe token: `<unix micros>.<run id>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        if id.is_empty() {
            return None;
        }
        Some(Self {
            created_at,
            id: id.to_owned(),
        })
    }
}

/// A workflow definition as a run started with it.
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    pub path: String,
    pub source: String,
}

/// A run starts waiting for its next attempt, unless it was cancelled meanwhile: a request
/// that came as its step failed ends it `cancelled` instead (no owner would see it later).
pub(crate) const RUN_RETRYING: &str = "UPDATE runs SET
     status = CASE WHEN cancel_requested IS NULL THEN 'retrying' ELSE 'cancelled' END,
     error = COALESCE(cancel_requested, $2),
     due_at = CASE WHEN cancel_requested IS NULL THEN $3 END,
     finished_at = CASE WHEN cancel_requested IS NULL THEN NULL ELSE $4 END
     WHERE id = $1 AND status <> 'cancelled'";

pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp '{text}': {e}")))
}

pub(crate) fn parse_json(text: &str) -> Result<Json, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("JSON column: {e}")))
}
