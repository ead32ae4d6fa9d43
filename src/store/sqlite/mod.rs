//! SQLite backend: WAL with `synchronous=FULL`, one writer task that commits concurrent writes
//! together (group commit), and a small pool of readers. The tables are in `schema`, the lock
//! that keeps a file to one server in `lock`, the writer task in `writer`, the writes it applies
//! in `transitions` and the reads in `reads`.

mod lock;
mod reads;
mod schema;
mod transitions;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::mpsc;

use super::files::StoreFiles;
use super::health::{HealthState, StoreHealth};
use super::{
    Accepted, ActivityWindow, CancelRequest, Cancelled, Definition, Lease, MinuteCount,
    PauseRequest, PausedWorkflow, ReplayOptions, Replayed, RunDetail, RunDurations, RunFilter,
    RunSummary, Settling, StoreBackend, StoreError,
};
use crate::future::BoxFuture;
use crate::run::rate::MemoryBuckets;
use crate::run::{Event, NewRun, RateLimit, RunStatus, StepRecord, SyncResponse};
use reads::read_error;
use writer::{Reply, Write};

/// A finished run's duration in milliseconds, to the microsecond: the whole seconds of the
/// text's fixed layout (`YYYY-MM-DDTHH:MM:SS`) through `unixepoch`, and its microseconds
/// (`.ffffff`) as a number, since SQLite's date functions round to milliseconds.
const SQLITE_DURATION_MS: &str = "(unixepoch(SUBSTR(finished_at, 1, 19)) \
    - unixepoch(SUBSTR(started_at, 1, 19))) * 1000.0 \
    + (CAST(SUBSTR(finished_at, 21, 6) AS INTEGER) - CAST(SUBSTR(started_at, 21, 6) AS INTEGER)) \
    / 1000.0";

/// 32 MiB of log between checkpoints (4 KiB pages).
const WAL_CHECKPOINT_PAGES: u32 = 8192;
/// How long a write waits for a lock another process holds before it fails (and its webhooks
/// are answered 503): below the 10 s after which GitHub and others give up on an answer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Cheap to clone; every clone talks to the same writer task and reader pool.
#[derive(Clone)]
pub struct SqliteStore {
    writes: mpsc::Sender<Write>,
    readers: SqlitePool,
    /// Held while a server uses the file: one server process per SQLite store.
    _lock: Option<Arc<std::fs::File>>,
    /// Runs `running` at once, at most (`max_running`).
    max_running: Option<u32>,
    health: Arc<StoreHealth>,
    /// Outgoing rate buckets: one process holds the file, so its memory is the whole truth
    /// (a step waiting its turn keeps its own slot in its record across a restart).
    rate_buckets: Arc<MemoryBuckets>,
}

impl SqliteStore {
    /// Open (or create) the database file and start its writer. A server (`exclusive`) locks
    /// the file for itself: two servers on one SQLite file would run the same runs.
    pub async fn open(path: &str, exclusive: bool) -> Result<Self, StoreError> {
        let open_error = |e: sqlx::Error| StoreError::Open {
            path: path.to_owned(),
            source: e.into(),
        };
        let in_memory = is_in_memory(path);
        let lock = if exclusive && !in_memory {
            Some(Arc::new(lock::lock_store(path)?))
        } else {
            None
        };
        if in_memory && exclusive {
            tracing::warn!(
                "the store is in memory: accepted events and runs are lost when the process ends"
            );
        }
        let options = if in_memory {
            // One private database shared by this store's connections; gone when they close.
            let name = uuid::Uuid::now_v7().simple().to_string();
            SqliteConnectOptions::from_str(&format!(
                "sqlite:file:hookflow-{name}?mode=memory&cache=shared"
            ))
            .map_err(open_error)?
            .journal_mode(SqliteJournalMode::Memory)
            .synchronous(SqliteSynchronous::Off)
        } else {
            SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
                .map_err(open_error)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before an accepted webhook is answered.
                .synchronous(SqliteSynchronous::Full)
                // The writer copies the log into the database (and syncs it) every this many
                // pages; the default (1000) stalls group commits every hundred-odd events, and a
                // run's row rewritten several times in one interval is copied only once.
                .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string())
        }
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .map_err(open_error)?;
        schema::create(&mut connection).await.map_err(open_error)?;
        let files = if in_memory {
            None
        } else {
            Some(
                StoreFiles::record(std::path::Path::new(path)).map_err(|e| StoreError::Open {
                    path: path.to_owned(),
                    source: e.into(),
                })?,
            )
        };
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(!in_memory))
            .await
            .map_err(open_error)?;
        let health = Arc::new(StoreHealth::default());
        let writes = writer::start(connection, options, files, Arc::clone(&health));
        Ok(Self {
            writes,
            readers,
            _lock: lock,
            max_running: None,
            health,
            rate_buckets: Arc::default(),
        })
    }

    /// Claim a queued run only while fewer than `max_running` runs are `running`.
    pub fn with_max_running(mut self, max_running: Option<u32>) -> Self {
        self.max_running = max_running;
        self
    }

    /// Send a write to the writer and wait for its answer, which comes once it is committed.
    async fn write<T>(&self, write: impl FnOnce(Reply<T>) -> Write) -> Result<T, StoreError> {
        let (reply, answer) = Reply::new();
        self.writes
            .send(write(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// `:memory:` (or sqlx's `sqlite::memory:`): a store that keeps nothing after the process
/// ends — for trying workflows out and for measuring what durability costs, never for real traffic.
pub fn is_in_memory(path: &str) -> bool {
    matches!(path, ":memory:" | "sqlite::memory:")
}

/// Each write goes to the writer task and is answered once committed; each read asks the
/// reader pool.
impl StoreBackend for SqliteStore {
    /// The event and its queued runs, durable when this returns. A run whose dedupe key was
    /// seen within its window is not created; the run that holds the key is answered instead.
    fn accept<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
        Box::pin(self.write(move |reply| Write::Accept {
            event,
            runs: runs.to_vec(),
            lease: None,
            reply,
        }))
    }

    fn accept_claimed<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
        lease: Lease,
    ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
        // Under a cap on runs running, a claim must count them first: only queued then.
        let lease = self.max_running.is_none().then_some(lease);
        Box::pin(self.write(move |reply| Write::Accept {
            event,
            runs: runs.to_vec(),
            lease,
            reply,
        }))
    }

    fn claim<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |reply| Write::Claim {
            run_id: run_id.to_owned(),
            owner: owner.to_owned(),
            until,
            max_running: self.max_running,
            reply,
        }))
    }

    fn renew_leases<'a>(
        &'a self,
        owner: &'a str,
        run_ids: &'a [String],
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(move |reply| Write::RenewLeases {
            owner: owner.to_owned(),
            run_ids: run_ids.to_vec(),
            until,
            reply,
        }))
    }

    fn claim_queued<'a>(
        &'a self,
        owner: &'a str,
        until: DateTime<Utc>,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            self.write(move |reply| Write::ClaimQueued {
                owner: owner.to_owned(),
                until,
                queued_before,
                limit,
                max_running: self.max_running,
                reply,
            })
            .await
        })
    }

    /// The file is locked to one server process, so at its start every lease is orphaned.
    fn take_over_orphans(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.write(move |reply| Write::ReleaseAllLeases { reply }))
    }

    /// Runs executing under a lease that ended: their owner stopped renewing.
    fn expired_leases(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(reads::expired_leases(&self.readers, now))
    }

    fn step_finished<'a>(
        &'a self,
        run_id: &'a str,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(move |reply| Write::StepFinished {
            run_id: run_id.to_owned(),
            record: Box::new(record.clone()),
            reply,
        }))
    }

    /// Queue the step's record for the writer without waiting for its commit: the writer takes
    /// writes in order, so the run's next awaited write commits it too (or, in one batch, with
    /// it: step records go in before the other writes of a batch).
    fn step_noted<'a>(
        &'a self,
        run_id: &'a str,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<Settling, StoreError>> {
        Box::pin(async move {
            let (reply, committed) = Reply::new();
            let write = Write::StepFinished {
                run_id: run_id.to_owned(),
                record: Box::new(record.clone()),
                reply,
            };
            self.writes
                .send(write)
                .await
                .map_err(|_| StoreError::Closed)?;
            let settling: Settling =
                Box::pin(async move { committed.await.map_err(|_| StoreError::Closed)? });
            Ok(settling)
        })
    }

    fn run_finished<'a>(
        &'a self,
        run_id: &'a str,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(move |reply| Write::RunFinished {
            run_id: run_id.to_owned(),
            status,
            error,
            response,
            reply,
        }))
    }

    /// The run waits for a step's next attempt until `due_at`.
    fn run_retrying<'a>(
        &'a self,
        run_id: &'a str,
        error: Option<String>,
        due_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(move |reply| Write::RunRetrying {
            run_id: run_id.to_owned(),
            error,
            due_at,
            reply,
        }))
    }

    /// Retrying runs whose time has come, moved back to `queued`.
    fn claim_due_retries(
        &self,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(self.write(move |reply| Write::ClaimDue { now, reply }))
    }

    fn next_retry_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(super::reads::next_retry_due(&self.readers))
    }

    /// Queue a finished run again with its next attempt number: from its first failed step
    /// (finished steps are kept and not redone), or from the start.
    fn replay<'a>(
        &'a self,
        run_id: &'a str,
        replay: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Replayed, StoreError>> {
        Box::pin(self.write(move |reply| Write::Replay {
            run_id: run_id.to_owned(),
            options: replay.clone(),
            reply,
        }))
    }

    /// Remove finished runs older than `before`, their steps and events, and expired dedupe
    /// keys. Unfinished runs are never removed. Returns how many runs were removed.
    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(self.write(move |reply| Write::Prune { before, reply }))
    }

    fn save_definition<'a>(
        &'a self,
        version: &'a str,
        definition: Definition,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(move |reply| Write::Definition {
            version: version.to_owned(),
            definition,
            reply,
        }))
    }

    fn definition<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>> {
        Box::pin(super::reads::definition(&self.readers, version))
    }

    fn unfinished_runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(super::reads::unfinished_runs(&self.readers))
    }

    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunSummary>, StoreError>> {
        Box::pin(super::reads::list_runs(&self.readers, filter))
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDetail>, StoreError>> {
        Box::pin(super::reads::run(&self.readers, id))
    }

    fn runs_per_minute<'a>(
        &'a self,
        window: &'a ActivityWindow,
    ) -> BoxFuture<'a, Result<Vec<MinuteCount>, StoreError>> {
        Box::pin(super::activity::runs_per_minute(&self.readers, window))
    }

    fn run_durations<'a>(
        &'a self,
        window: &'a ActivityWindow,
    ) -> BoxFuture<'a, Result<RunDurations, StoreError>> {
        Box::pin(super::activity::run_durations(
            &self.readers,
            window,
            SQLITE_DURATION_MS,
        ))
    }

    fn queued_behind<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(reads::queued_behind(&self.readers, run_id))
    }

    fn count_queued(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(reads::count_queued(&self.readers))
    }

    fn take_rate_slot<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<DateTime<Utc>, StoreError>> {
        Box::pin(std::future::ready(Ok(self
            .rate_buckets
            .take(key, &limit, now))))
    }

    fn hold_rate_bucket<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.rate_buckets.hold(key, &limit, until);
        Box::pin(std::future::ready(Ok(())))
    }

    /// Whether the store answers and can write (for readiness). A store whose last write
    /// failed is probed with a small write, so readiness comes back as soon as the disk does.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            match self.health.state() {
                HealthState::Broken { reason } => Err(StoreError::Refusing(reason)),
                HealthState::Failing { .. } => {
                    self.write(move |reply| Write::Probe { reply }).await
                }
                HealthState::Writable => sqlx::query("SELECT 1")
                    .execute(&self.readers)
                    .await
                    .map(|_| ())
                    .map_err(read_error),
            }
        })
    }

    /// Accept a schedule's tick: the event and runs are committed with the tick's record,
    /// or not at all when `(workflow, tick)` is recorded already (`None`).
    fn accept_tick<'a>(
        &'a self,
        workflow: &'a str,
        tick: DateTime<Utc>,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Option<Accepted>, StoreError>> {
        Box::pin(self.write(move |reply| Write::AcceptTick {
            workflow: workflow.to_owned(),
            tick,
            event,
            runs: runs.to_vec(),
            reply,
        }))
    }

    /// Record a tick that starts no run; true when it was not recorded before.
    fn claim_tick<'a>(
        &'a self,
        workflow: &'a str,
        tick: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |reply| Write::ClaimTick {
            workflow: workflow.to_owned(),
            tick,
            reply,
        }))
    }

    fn last_tick<'a>(
        &'a self,
        workflow: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(super::reads::last_tick(&self.readers, workflow))
    }
    fn cancel_run<'a>(
        &'a self,
        run_id: &'a str,
        cancel: &'a CancelRequest,
    ) -> BoxFuture<'a, Result<Cancelled, StoreError>> {
        Box::pin(self.write(move |reply| Write::CancelRun {
            run_id: run_id.to_owned(),
            cancel: cancel.clone(),
            reply,
        }))
    }

    fn cancel_requests<'a>(
        &'a self,
        run_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(super::pause::cancel_requests(&self.readers, run_ids))
    }

    fn pause_workflow<'a>(
        &'a self,
        workflow: &'a str,
        pause: &'a PauseRequest,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |reply| Write::PauseWorkflow {
            workflow: workflow.to_owned(),
            pause: pause.clone(),
            reply,
        }))
    }

    fn resume_workflow<'a>(&'a self, workflow: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.write(move |reply| Write::ResumeWorkflow {
            workflow: workflow.to_owned(),
            reply,
        }))
    }

    fn paused_workflows(&self) -> BoxFuture<'_, Result<Vec<PausedWorkflow>, StoreError>> {
        Box::pin(super::pause::paused_workflows(&self.readers))
    }
}
