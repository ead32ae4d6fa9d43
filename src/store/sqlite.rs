//! SQLite backend: WAL with `synchronous=FULL`, one writer task that commits concurrent writes
//! together (group commit), and a small pool of readers.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::files::{FileFault, StoreFiles};
use super::health::{HealthState, StoreHealth};
use super::rows::{Columns, event_from_row, run_from_row, step_from_row};
use super::{
    Accepted, Cause, Definition, Lease, Replayed, RunDetail, RunFilter, RunSummary, StoreError,
    parse_timestamp, timestamp,
};
use crate::future::BoxFuture;
use crate::run::ConcurrencyMode;
use crate::run::SyncResponse;
use crate::run::{Event, RunStatus, StepRecord, Trigger};
use crate::run::{NewRun, RunConcurrency};

/// Writes that arrive while a commit is in flight wait for the next one, up to this many at once.
const MAX_BATCH: usize = 512;
const WRITE_QUEUE: usize = 8192;
/// Rows per multi-row INSERT: 12 columns each stays far below SQLite's 32,766 parameters.
const ROWS_PER_INSERT: usize = 256;
/// 32 MiB of log between checkpoints (4 KiB pages).
const WAL_CHECKPOINT_PAGES: u32 = 8192;
/// How often an idle writer looks whether its files are still the ones on disk.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a write waits for a lock another process holds before it fails (and its webhooks
/// are answered 503): below the 10 s after which GitHub and others give up on an answer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    params TEXT NOT NULL,
    query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events(id),
    workflow TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    response TEXT,
    due_at TEXT,
    lease_owner TEXT,
    lease_until TEXT,
    concurrency_key TEXT,
    concurrency_limit INTEGER
);
CREATE INDEX IF NOT EXISTS runs_due ON runs(status, due_at);
-- The runs listing (newest first, by workflow and/or status, paged by (created_at, id)) walks
-- one of these in order and stops after a page, however many runs the store holds.
DROP INDEX IF EXISTS runs_by_status;
DROP INDEX IF EXISTS runs_by_workflow;
DROP INDEX IF EXISTS runs_by_time;
CREATE INDEX IF NOT EXISTS runs_list ON runs(created_at, id);
CREATE INDEX IF NOT EXISTS runs_list_by_status ON runs(status, created_at, id);
CREATE INDEX IF NOT EXISTS runs_list_by_workflow ON runs(workflow, created_at, id);
CREATE INDEX IF NOT EXISTS runs_list_by_workflow_status ON runs(workflow, status, created_at, id);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    filtered INTEGER NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS dedupe (
    workflow TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (workflow, key)
);
CREATE TABLE IF NOT EXISTS ticks (
    workflow TEXT NOT NULL,
    tick_at TEXT NOT NULL,
    event_id TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (workflow, tick_at)
);
-- One row the readiness probe rewrites while the store is failing, to learn when it can write.
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    written_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS definitions (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"#;

/// A write for the writer task, with the reply its caller waits for: each kind answers its own
/// type, so a write cannot be answered with another's.
enum Write {
    Accept {
        event: Arc<Event>,
        runs: Vec<NewRun>,
        /// Claim the runs for this lease in the same commit (plain runs only).
        lease: Option<Lease>,
        reply: Reply<Accepted>,
    },
    /// Record a schedule's tick and, when it was not recorded before, accept its event and runs.
    AcceptTick {
        workflow: String,
        tick: DateTime<Utc>,
        event: Arc<Event>,
        runs: Vec<NewRun>,
        /// Nothing when the tick was recorded already.
        reply: Reply<Option<Accepted>>,
    },
    /// Record a tick that starts no run; answers whether it was new.
    ClaimTick {
        workflow: String,
        tick: DateTime<Utc>,
        reply: Reply<bool>,
    },
    /// Take a run to execute: queued, or running with a lease that ended (or is ours).
    Claim {
        run_id: String,
        owner: String,
        until: DateTime<Utc>,
        /// The store's cap on runs `running` at once, for a queued run.
        max_running: Option<u32>,
        reply: Reply<bool>,
    },
    /// Take up to `limit` queued runs accepted before `queued_before`, oldest first.
    ClaimQueued {
        owner: String,
        until: DateTime<Utc>,
        queued_before: DateTime<Utc>,
        limit: usize,
        max_running: Option<u32>,
        reply: Reply<Vec<String>>,
    },
    /// Extend the leases `owner` holds on these runs.
    RenewLeases {
        owner: String,
        run_ids: Vec<String>,
        until: DateTime<Utc>,
        reply: Reply<()>,
    },
    /// Single-node recovery: every lease belongs to a process that is gone.
    ReleaseAllLeases { reply: Reply<()> },
    StepFinished {
        run_id: String,
        record: Box<StepRecord>,
        reply: Reply<()>,
    },
    RunFinished {
        run_id: String,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
        reply: Reply<()>,
    },
    RunRetrying {
        run_id: String,
        error: Option<String>,
        due_at: DateTime<Utc>,
        reply: Reply<()>,
    },
    /// Queue a finished run again, from its failed step or from the start.
    Replay {
        run_id: String,
        from_start: bool,
        reply: Reply<Replayed>,
    },
    /// Forget finished runs (and their steps and events) finished before `before`, and dedupe
    /// keys past their window; answers how many runs went.
    Prune {
        before: DateTime<Utc>,
        reply: Reply<usize>,
    },
    /// Move retrying runs whose time has come back to `queued`; answers their ids.
    ClaimDue {
        now: DateTime<Utc>,
        reply: Reply<Vec<String>>,
    },
    Definition {
        version: String,
        definition: Definition,
        reply: Reply<()>,
    },
    /// Rewrite the probe row: whether a commit reaches the disk.
    Probe { reply: Reply<()> },
}

impl Write {
    /// Answer the caller once the write's batch committed (with what the write found) or failed.
    fn finish(self, committed: Result<(), StoreError>) {
        match self {
            Write::Accept { reply, .. } => reply.finish(committed),
            Write::AcceptTick { reply, .. } => reply.finish(committed),
            Write::ClaimTick { reply, .. } | Write::Claim { reply, .. } => reply.finish(committed),
            Write::ClaimQueued { reply, .. } | Write::ClaimDue { reply, .. } => {
                reply.finish(committed)
            }
            Write::RenewLeases { reply, .. }
            | Write::ReleaseAllLeases { reply }
            | Write::StepFinished { reply, .. }
            | Write::RunFinished { reply, .. }
            | Write::RunRetrying { reply, .. }
            | Write::Definition { reply, .. }
            | Write::Probe { reply } => reply.finish(committed),
            Write::Replay { reply, .. } => reply.finish(committed),
            Write::Prune { reply, .. } => reply.finish(committed),
        }
    }
}

/// Where a write's answer goes: what the write found is held here until its batch commits,
/// since a caller must not act on a write that may still roll back.
struct Reply<T> {
    sender: oneshot::Sender<Result<T, StoreError>>,
    found: Option<T>,
}

impl<T> Reply<T> {
    fn new() -> (Self, oneshot::Receiver<Result<T, StoreError>>) {
        let (sender, receiver) = oneshot::channel();
        (
            Self {
                sender,
                found: None,
            },
            receiver,
        )
    }

    /// Keep the write's answer for when its batch commits (a batch applied again after a
    /// failure replaces it).
    fn hold(&mut self, found: T) {
        self.found = Some(found);
    }

    fn finish(self, committed: Result<(), StoreError>) {
        // A committed batch applied every write in it, so each holds its answer.
        let answer = committed.and_then(|()| {
            self.found
                .ok_or_else(|| StoreError::Write("the write was not applied".into()))
        });
        // The caller may have stopped waiting; the write stands either way.
        let _ = self.sender.send(answer);
    }
}

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
            Some(Arc::new(lock_store(path)?))
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
        sqlx::raw_sql(SCHEMA)
            .execute(&mut connection)
            .await
            .map_err(open_error)?;
        migrate(&mut connection).await.map_err(open_error)?;
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
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let writer = Writer {
            connection: Some(connection),
            options,
            files,
            health: Arc::clone(&health),
        };
        tokio::spawn(writer.run(queue));
        Ok(Self {
            writes,
            readers,
            _lock: lock,
            max_running: None,
            health,
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

    /// The run waits for a step's next attempt until `due_at`.
    pub async fn run_retrying(
        &self,
        run_id: &str,
        error: Option<String>,
        due_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write(|reply| Write::RunRetrying {
            run_id: run_id.to_owned(),
            error,
            due_at,
            reply,
        })
        .await
    }

    /// Queue a finished run again with its next attempt number: from its first failed step
    /// (finished steps are kept and not redone), or from the start.
    pub async fn replay(&self, run_id: &str, from_start: bool) -> Result<Replayed, StoreError> {
        self.write(|reply| Write::Replay {
            run_id: run_id.to_owned(),
            from_start,
            reply,
        })
        .await
    }

    /// Remove finished runs older than `before`, their steps and events, and expired dedupe
    /// keys. Unfinished runs are never removed. Returns how many runs were removed.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write(|reply| Write::Prune { before, reply }).await
    }

    /// Retrying runs whose time has come, moved back to `queued`.
    pub async fn claim_due_retries(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        self.write(|reply| Write::ClaimDue { now, reply }).await
    }

    /// When the earliest waiting retry is due.
    pub async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MIN(due_at) AS due FROM runs WHERE status = 'retrying'")
            .fetch_one(&self.readers)
            .await
            .map_err(read_error)?;
        get::<Option<String>>(&row, "due")?
            .map(|t| parse_timestamp(&t))
            .transpose()
    }

    /// The event and its queued runs, durable when this returns.
    /// The event and its queued runs, durable when this returns. A run whose dedupe key was
    /// seen within its window is not created; the run that holds the key is answered instead.
    pub async fn accept(&self, event: Arc<Event>, runs: &[NewRun]) -> Result<Accepted, StoreError> {
        self.write(|reply| Write::Accept {
            event,
            runs: runs.to_vec(),
            lease: None,
            reply,
        })
        .await
    }

    /// As `accept`, claiming plain runs for `lease` in the same commit.
    pub async fn accept_claimed(
        &self,
        event: Arc<Event>,
        runs: &[NewRun],
        lease: Lease,
    ) -> Result<Accepted, StoreError> {
        // Under a cap on runs running, a claim must count them first: only queued then.
        let lease = self.max_running.is_none().then_some(lease);
        self.write(|reply| Write::Accept {
            event,
            runs: runs.to_vec(),
            lease,
            reply,
        })
        .await
    }

    pub async fn claim(
        &self,
        run_id: &str,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(|reply| Write::Claim {
            run_id: run_id.to_owned(),
            owner: owner.to_owned(),
            until,
            max_running: self.max_running,
            reply,
        })
        .await
    }

    pub async fn claim_queued(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.write(|reply| Write::ClaimQueued {
            owner: owner.to_owned(),
            until,
            queued_before,
            limit,
            max_running: self.max_running,
            reply,
        })
        .await
    }

    pub async fn renew_leases(
        &self,
        owner: &str,
        run_ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write(|reply| Write::RenewLeases {
            owner: owner.to_owned(),
            run_ids: run_ids.to_vec(),
            until,
            reply,
        })
        .await
    }

    /// The file is locked to one server process, so at its start every lease is orphaned.
    pub async fn take_over_orphans(&self) -> Result<(), StoreError> {
        self.write(|reply| Write::ReleaseAllLeases { reply }).await
    }

    /// Runs executing under a lease that ended: their owner stopped renewing.
    pub async fn expired_leases(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            // A NULL lease was released at start (its process is gone): ended.
            "SELECT id FROM runs WHERE status = 'running'
             AND (lease_until IS NULL OR lease_until < $1) ORDER BY created_at",
        )
        .bind(timestamp(now))
        .fetch_all(&self.readers)
        .await
        .map_err(read_error)?;
        ids(&rows).map_err(read_error)
    }

    /// Queue the step's record for the writer without waiting for its commit: the writer takes
    /// writes in order, so the run's next awaited write commits it too (or, in one batch, with
    /// it: step records go in before the other writes of a batch).
    pub async fn step_noted(
        &self,
        run_id: &str,
        record: &StepRecord,
    ) -> Result<super::Settling, StoreError> {
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
        Ok(Box::pin(async move {
            committed.await.map_err(|_| StoreError::Closed)?
        }))
    }

    pub async fn step_finished(&self, run_id: &str, record: &StepRecord) -> Result<(), StoreError> {
        self.write(|reply| Write::StepFinished {
            run_id: run_id.to_owned(),
            record: Box::new(record.clone()),
            reply,
        })
        .await
    }

    pub async fn run_finished(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
    ) -> Result<(), StoreError> {
        self.write(|reply| Write::RunFinished {
            run_id: run_id.to_owned(),
            status,
            error,
            response,
            reply,
        })
        .await
    }

    pub async fn save_definition(
        &self,
        version: &str,
        definition: Definition,
    ) -> Result<(), StoreError> {
        self.write(|reply| Write::Definition {
            version: version.to_owned(),
            definition,
            reply,
        })
        .await
    }

    pub async fn definition(&self, version: &str) -> Result<Option<Definition>, StoreError> {
        let row = sqlx::query("SELECT name, path, source FROM definitions WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.readers)
            .await
            .map_err(read_error)?;
        row.map(|r| {
            Ok(Definition {
                name: r.try_get("name").map_err(read_error)?,
                path: r.try_get("path").map_err(read_error)?,
                source: r.try_get("source").map_err(read_error)?,
            })
        })
        .transpose()
    }

    /// Runs that were accepted but not finished: queued, or interrupted while running.
    pub async fn unfinished_runs(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE status IN ('queued', 'running') ORDER BY created_at, id",
        )
        .fetch_all(&self.readers)
        .await
        .map_err(read_error)?;
        ids(&rows).map_err(read_error)
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let limit = if filter.limit == 0 {
            50
        } else {
            filter.limit.min(1000)
        };
        // Only the conditions asked for: `($1 IS NULL OR workflow = $1)` would hide the
        // indexes from the planner and scan every run.
        let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT * FROM runs WHERE 1 = 1");
        if let Some(workflow) = &filter.workflow {
            query.push(" AND workflow = ").push_bind(workflow.clone());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(since) = filter.since {
            query
                .push(" AND created_at >= ")
                .push_bind(timestamp(since));
        }
        if let Some(until) = filter.until {
            query.push(" AND created_at < ").push_bind(timestamp(until));
        }
        if let Some(cursor) = &filter.before {
            query
                .push(" AND (created_at, id) < (")
                .push_bind(timestamp(cursor.created_at))
                .push(", ")
                .push_bind(cursor.id.clone())
                .push(")");
        }
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = query
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(read_error)?;
        rows.iter().map(run_from_row).collect()
    }

    /// A run by id, or by a unique prefix of its id (ids are long to type).
    pub async fn run(&self, id: &str) -> Result<Option<RunDetail>, StoreError> {
        // The exact id is a primary-key lookup: the worker loads runs this way on every resume.
        let exact = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.readers)
            .await
            .map_err(read_error)?;
        let row = match exact {
            Some(row) => row,
            None => {
                // A prefix as a key range, so the index serves it too. Ids are lower-case hex
                // and dashes, all sorting before '~'.
                let rows = sqlx::query("SELECT * FROM runs WHERE id >= $1 AND id < $2 LIMIT 2")
                    .bind(id)
                    .bind(format!("{id}~"))
                    .fetch_all(&self.readers)
                    .await
                    .map_err(read_error)?;
                match <[SqliteRow; 1]>::try_from(rows) {
                    Ok([one]) => one,
                    // None, or several: a prefix must name one run.
                    Err(_) => return Ok(None),
                }
            }
        };
        let run = run_from_row(&row)?;
        let event_row = sqlx::query("SELECT * FROM events WHERE id = $1")
            .bind(&run.event_id)
            .fetch_one(&self.readers)
            .await
            .map_err(read_error)?;
        let event = event_from_row(&event_row)?;
        let step_rows = sqlx::query("SELECT * FROM steps WHERE run_id = $1 ORDER BY idx")
            .bind(&run.id)
            .fetch_all(&self.readers)
            .await
            .map_err(read_error)?;
        let steps = step_rows
            .iter()
            .map(step_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(RunDetail { run, event, steps }))
    }

    /// The oldest queued runs sharing `run_id`'s workflow and concurrency key, as many as its
    /// key has slots free now that `run_id` ended (the key's other running and waiting runs
    /// hold theirs).
    pub async fn queued_behind(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        // The key first, then index ranges on (workflow, key, status): a join lets the
        // planner walk every queued run instead, once per finished run, while a backlog waits.
        let ended = sqlx::query(
            "SELECT workflow, concurrency_key, concurrency_limit FROM runs
             WHERE id = $1 AND concurrency_key IS NOT NULL",
        )
        .bind(run_id)
        .fetch_optional(&self.readers)
        .await
        .map_err(read_error)?;
        let Some(ended) = ended else {
            return Ok(Vec::new());
        };
        let workflow: String = ended.try_get("workflow").map_err(read_error)?;
        let key: String = ended.try_get("concurrency_key").map_err(read_error)?;
        let limit: Option<i64> = ended.try_get("concurrency_limit").map_err(read_error)?;
        let busy: i64 = sqlx::query(
            "SELECT COUNT(*) AS busy FROM runs WHERE workflow = $1 AND concurrency_key = $2
             AND status IN ('running', 'retrying') AND id != $3",
        )
        .bind(&workflow)
        .bind(&key)
        .bind(run_id)
        .fetch_one(&self.readers)
        .await
        .map_err(read_error)?
        .try_get("busy")
        .map_err(read_error)?;
        // Only those that can start are woken: waking every queued run on each end made a
        // backlog of n runs cost n loads and claims per finished run.
        let free = limit.unwrap_or(1).max(1) - busy;
        if free <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id FROM runs
             WHERE workflow = $1 AND concurrency_key = $2 AND status = 'queued' AND id != $3
             ORDER BY created_at, id LIMIT $4",
        )
        .bind(&workflow)
        .bind(&key)
        .bind(run_id)
        .bind(free)
        .fetch_all(&self.readers)
        .await
        .map_err(read_error)?;
        ids(&rows).map_err(read_error)
    }

    /// Accept a schedule's tick: the event and runs are committed with the tick's record,
    /// or not at all when `(workflow, tick)` is recorded already (`None`).
    pub async fn accept_tick(
        &self,
        workflow: &str,
        tick: DateTime<Utc>,
        event: Arc<Event>,
        runs: &[NewRun],
    ) -> Result<Option<Accepted>, StoreError> {
        self.write(|reply| Write::AcceptTick {
            workflow: workflow.to_owned(),
            tick,
            event,
            runs: runs.to_vec(),
            reply,
        })
        .await
    }

    /// Record a tick that starts no run; true when it was not recorded before.
    pub async fn claim_tick(
        &self,
        workflow: &str,
        tick: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(|reply| Write::ClaimTick {
            workflow: workflow.to_owned(),
            tick,
            reply,
        })
        .await
    }

    /// The latest tick recorded for `workflow`.
    pub async fn last_tick(&self, workflow: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MAX(tick_at) AS tick FROM ticks WHERE workflow = $1")
            .bind(workflow)
            .fetch_one(&self.readers)
            .await
            .map_err(read_error)?;
        get::<Option<String>>(&row, "tick")?
            .map(|t| parse_timestamp(&t))
            .transpose()
    }

    /// Whether the store answers and can write (for readiness). A store whose last write
    /// failed is probed with a small write, so readiness comes back as soon as the disk does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self.health.state() {
            HealthState::Broken { reason } => Err(StoreError::Refusing(reason)),
            HealthState::Failing { .. } => self.write(|reply| Write::Probe { reply }).await,
            HealthState::Writable => sqlx::query("SELECT 1")
                .execute(&self.readers)
                .await
                .map(|_| ())
                .map_err(read_error),
        }
    }

    pub fn health(&self) -> HealthState {
        self.health.state()
    }
}

/// `:memory:` (or sqlx's `sqlite::memory:`): a store that keeps nothing after the process
/// ends — for trying workflows out and for measuring what durability costs, never for real traffic.
pub fn is_in_memory(path: &str) -> bool {
    matches!(path, ":memory:" | "sqlite::memory:")
}

/// Columns added after a store file may have been created: added when missing.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    (
        "concurrency_key",
        "ALTER TABLE runs ADD COLUMN concurrency_key TEXT",
    ),
    (
        "concurrency_limit",
        "ALTER TABLE runs ADD COLUMN concurrency_limit INTEGER",
    ),
];

async fn migrate(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('runs')")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect::<Result<_, _>>()?;
    for (name, statement) in ADDED_COLUMNS {
        if !columns.iter().any(|c| c == name) {
            sqlx::raw_sql(*statement).execute(&mut *conn).await?;
        }
    }
    // With `created_at` last, a claim counts the older queued runs of its key as a range and
    // the runs behind a finished one come in order. A file made before has the index without
    // it, under the same name: it is made again.
    let indexed: Vec<String> =
        sqlx::query("SELECT name FROM pragma_index_info('runs_by_concurrency')")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?;
    if !indexed.iter().any(|c| c == "created_at") {
        sqlx::raw_sql(
            "DROP INDEX IF EXISTS runs_by_concurrency;
             CREATE INDEX runs_by_concurrency
             ON runs(workflow, concurrency_key, status, created_at)",
        )
        .execute(&mut *conn)
        .await?;
    }
    // The event's trigger as JSON; NULL for the events stored before triggers: webhooks.
    let has_trigger = sqlx::query(
        "SELECT COUNT(*) AS n FROM pragma_table_info('events') WHERE name = 'triggered_by'",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get::<i64, _>("n")?
        > 0;
    if !has_trigger {
        sqlx::query("ALTER TABLE events ADD COLUMN triggered_by TEXT")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn lock_store(path: &str) -> Result<std::fs::File, StoreError> {
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Open {
            path: lock_path.clone(),
            source: e.into(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Open {
            path: path.to_owned(),
            source: Cause::Reason(
                "another hookflow server is using this store (a SQLite store serves one process; use PostgreSQL for several)".into(),
            ),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
            path: lock_path,
            source: e.into(),
        }),
    }
}

fn read_error(e: sqlx::Error) -> StoreError {
    StoreError::Read(e.into())
}

/// The one connection that writes, and what it needs to stay trustworthy: a connection whose
/// statement or commit failed is never used again (its transaction state is unknown: a failed
/// `COMMIT` can leave SQLite's transaction open while the driver thinks it closed, and later
/// "commits" would then only release savepoints), and files swapped under it are noticed.
struct Writer {
    /// None after a failure: the next batch opens a fresh connection.
    connection: Option<SqliteConnection>,
    options: SqliteConnectOptions,
    /// None for a store in memory.
    files: Option<StoreFiles>,
    health: Arc<StoreHealth>,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Write>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = tokio::select! {
                first = queue.recv() => first,
                _ = tokio::time::sleep(FILE_CHECK_INTERVAL), if self.files.is_some() => {
                    // The outcome is kept in the store's health.
                    let _ = self.files_in_place().await;
                    continue;
                }
            };
            let Some(first) = first else { break };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch).await;
        }
        // A server stopping after its log was removed still saves what it committed.
        let _ = self.files_in_place().await;
    }

    /// Commit `batch` together and answer each write; drains it.
    async fn commit(&mut self, batch: &mut Vec<Write>) {
        if let HealthState::Broken { reason } = self.health.state() {
            return refuse(batch, StoreError::Refusing(reason));
        }
        let connection = match self.connection().await {
            Ok(connection) => connection,
            Err(err) => return self.fail(batch, err),
        };
        match apply_batch(connection, batch).await {
            Ok(()) => match self.files_in_place().await {
                Ok(()) => {
                    self.health.wrote();
                    for write in batch.drain(..) {
                        write.finish(Ok(()));
                    }
                }
                Err(reason) => refuse(batch, StoreError::Refusing(reason)),
            },
            Err(err) if is_environmental(&err) => self.fail(batch, err),
            Err(_) => self.commit_one_by_one(batch).await,
        }
    }

    /// A batch failed on a write of its own (not the disk): commit each on its own so one bad
    /// write does not fail its neighbours.
    async fn commit_one_by_one(&mut self, batch: &mut Vec<Write>) {
        self.connection = None;
        for mut write in batch.drain(..) {
            let result = match self.connection().await {
                Ok(connection) => apply_batch(connection, std::slice::from_mut(&mut write)).await,
                Err(err) => Err(err),
            };
            let result = match result {
                Ok(()) => self.files_in_place().await.map_err(StoreError::Refusing),
                Err(err) => {
                    self.connection = None;
                    if is_environmental(&err) {
                        self.health.failed(&err.to_string());
                    }
                    Err(store_error(err))
                }
            };
            write.finish(result);
        }
    }

    /// The connection, opened again after a failure.
    async fn connection(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        if self.connection.is_none() {
            self.connection = Some(SqliteConnection::connect_with(&self.options).await?);
        }
        self.connection.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// The disk or the files failed: nothing in the batch was stored.
    fn fail(&mut self, batch: &mut Vec<Write>, err: sqlx::Error) {
        self.connection = None;
        let reason = err.to_string();
        self.health.failed(&reason);
        refuse(batch, StoreError::Unavailable(err.into()));
    }

    /// Whether the files on disk are the ones this writer writes to. When they are not, what
    /// was committed is saved where a restart finds it (when the log alone went, by copying it
    /// into the database file, so the batch just committed counts as stored), and the store
    /// refuses every write from then on: answers the reason when the batch is not safe.
    async fn files_in_place(&mut self) -> Result<(), String> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        if let HealthState::Broken { reason } = self.health.state() {
            return Err(reason);
        }
        let Err(fault) = files.check() else {
            return Ok(());
        };
        let what = fault.describe(files);
        let (saved, advice) = match self.connection.as_mut() {
            Some(connection) => save_committed(connection, files, fault).await,
            None => (false, "restart hookflow".to_owned()),
        };
        let reason = format!("{what}; nothing more is accepted: {advice}");
        self.health.broke(&reason);
        if saved { Ok(()) } else { Err(reason) }
    }
}

/// Save what a writer whose file `fault` struck has committed; answers whether the database
/// file at the store's path holds it all, and what the operator must do.
async fn save_committed(
    connection: &mut SqliteConnection,
    files: &StoreFiles,
    fault: FileFault,
) -> (bool, String) {
    if fault.is_log_only() {
        // The open log is still readable: copying it into the database file (which is still the
        // one at the path) keeps every committed event and step for the next start.
        match checkpoint_all(connection).await {
            Ok(true) => {
                return (
                    true,
                    "everything committed was copied into the database file; restart hookflow"
                        .to_owned(),
                );
            }
            Ok(false) => tracing::error!("the write-ahead log could not be copied in full"),
            Err(err) => tracing::error!(error = %err, "the write-ahead log could not be copied"),
        }
    }
    let copy = format!(
        "{}.saved-{}",
        files.database_path().display(),
        Utc::now().format("%Y%m%dT%H%M%S")
    );
    match sqlx::query("VACUUM INTO $1")
        .bind(&copy)
        .execute(&mut *connection)
        .await
    {
        Ok(_) => (
            false,
            format!(
                "a copy of everything this server committed was written to {copy}; stop hookflow, put that file in place of {path} (removing {path}-wal and {path}-shm, which belong to the file that was moved away), and start it again",
                path = files.database_path().display()
            ),
        ),
        Err(err) => (
            false,
            format!(
                "saving a copy failed ({err}); copy the database from /proc/{}/fd before stopping hookflow",
                std::process::id()
            ),
        ),
    }
}

/// Copy the whole log into the database file; true when nothing is left behind.
async fn checkpoint_all(connection: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut *connection)
        .await?;
    let busy: i64 = row.try_get(0)?;
    let log: i64 = row.try_get(1)?;
    let copied: i64 = row.try_get(2)?;
    Ok(busy == 0 && log == copied)
}

/// Answer every write of `batch` with `error`: none was stored. Drains it.
fn refuse(batch: &mut Vec<Write>, error: StoreError) {
    for write in batch.drain(..) {
        write.finish(Err(error.clone()));
    }
}

/// Whether a failed write failed for the disk, the files or a lock (any write would have), not
/// for what it wrote. SQLite's primary result codes: BUSY 5, LOCKED 6, NOMEM 7, READONLY 8,
/// IOERR 10, CORRUPT 11, FULL 13, CANTOPEN 14, PROTOCOL 15, NOTADB 26.
fn is_environmental(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 15 | 26)),
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::BeginFailed => true,
        _ => false,
    }
}

fn store_error(err: sqlx::Error) -> StoreError {
    if is_environmental(&err) {
        StoreError::Unavailable(err.into())
    } else {
        StoreError::Write(err.into())
    }
}

async fn apply_batch(conn: &mut SqliteConnection, batch: &mut [Write]) -> Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    let mut tx = conn.begin().await?;
    // Accepts that create plain runs and step records only add rows nothing else in the batch
    // reads or changes (every other write names runs that were committed before it was sent),
    // so they go first, many rows per statement: each statement costs a round trip to the
    // connection's thread, and a busy batch holds hundreds of them.
    let plain_accepts: Vec<usize> = (0..batch.len())
        .filter(|&i| is_plain_accept(&batch[i]))
        .collect();
    for chunk in plain_accepts.chunks(ROWS_PER_INSERT) {
        insert_plain_accepts(&mut tx, batch, chunk).await?;
        for &i in chunk {
            if let Write::Accept {
                runs, lease, reply, ..
            } = &mut batch[i]
            {
                reply.hold(Accepted {
                    created: runs.iter().map(|run| run.id.clone()).collect(),
                    claimed: lease.is_some(),
                    duplicate_of: Vec::new(),
                    superseded: Vec::new(),
                });
            }
        }
    }
    let step_records: Vec<usize> = (0..batch.len())
        .filter(|&i| matches!(batch[i], Write::StepFinished { .. }))
        .collect();
    for chunk in step_records.chunks(ROWS_PER_INSERT) {
        insert_step_records(&mut tx, batch, chunk).await?;
        for &i in chunk {
            if let Write::StepFinished { reply, .. } = &mut batch[i] {
                reply.hold(());
            }
        }
    }
    for (i, write) in batch.iter_mut().enumerate() {
        if plain_accepts.binary_search(&i).is_err() && step_records.binary_search(&i).is_err() {
            apply(&mut tx, write).await?;
        }
    }
    tx.commit().await?;
    crate::metrics::metrics().store_commit(started.elapsed());
    Ok(())
}

/// An accept with runs that need no dedupe or concurrency check: nothing to read first.
fn is_plain_accept(write: &Write) -> bool {
    matches!(write, Write::Accept { runs, .. }
        if !runs.is_empty() && runs.iter().all(|r| r.dedupe.is_none() && r.concurrency.is_none()))
}

/// The events and queued runs of the plain accepts at `indexes`, two statements in all.
async fn insert_plain_accepts(
    conn: &mut SqliteConnection,
    batch: &[Write],
    indexes: &[usize],
) -> Result<(), sqlx::Error> {
    let accepts: Vec<(&Event, &[NewRun], Option<&Lease>)> = indexes
        .iter()
        .filter_map(|&i| match &batch[i] {
            Write::Accept {
                event, runs, lease, ..
            } => Some((event.as_ref(), runs.as_slice(), lease.as_ref())),
            _ => None,
        })
        .collect();
    let mut events = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw, triggered_by) ",
    );
    events.push_values(&accepts, |mut row, (event, _, _)| {
        row.push_bind(event.id.as_str())
            .push_bind(timestamp(event.received_at))
            .push_bind(event.method.as_str())
            .push_bind(event.path.as_str())
            .push_bind(to_text(&event.params))
            .push_bind(to_text(&event.query))
            .push_bind(to_text(&event.headers))
            .push_bind(stored_body(event))
            .push_bind(event.raw.as_slice())
            .push_bind((event.trigger != Trigger::Webhook).then(|| to_text(&event.trigger)));
    });
    events.build().execute(&mut *conn).await?;
    let runs: Vec<(&Event, &NewRun, Option<&Lease>)> = accepts
        .iter()
        .flat_map(|(event, runs, lease)| runs.iter().map(move |run| (*event, run, *lease)))
        .collect();
    let now = timestamp(Utc::now());
    for chunk in runs.chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO runs (id, event_id, workflow, version, status, created_at, started_at, lease_owner, lease_until) ",
        );
        insert.push_values(chunk, |mut row, (event, run, lease)| {
            row.push_bind(run.id.as_str())
                .push_bind(event.id.as_str())
                .push_bind(run.workflow.as_str())
                .push_bind(run.version.as_str())
                .push_bind(if lease.is_some() { "running" } else { "queued" })
                .push_bind(timestamp(event.received_at))
                .push_bind(lease.map(|_| now.clone()))
                .push_bind(lease.map(|l| l.owner.as_str()))
                .push_bind(lease.map(|l| timestamp(l.until)));
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The step records at `indexes`, in one statement.
async fn insert_step_records(
    conn: &mut SqliteConnection,
    batch: &[Write],
    indexes: &[usize],
) -> Result<(), sqlx::Error> {
    let records: Vec<(&str, &StepRecord)> = indexes
        .iter()
        .filter_map(|&i| match &batch[i] {
            Write::StepFinished { run_id, record, .. } => Some((run_id.as_str(), record.as_ref())),
            _ => None,
        })
        .collect();
    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT OR REPLACE INTO steps
         (run_id, idx, name, kind, status, filtered, input, output, error, started_at, duration_ms, attempts) ",
    );
    insert.push_values(&records, |mut row, (run_id, record)| {
        row.push_bind(*run_id)
            .push_bind(record.index as i64)
            .push_bind(record.name.as_str())
            .push_bind(record.kind.as_str())
            .push_bind(record.status.as_str())
            .push_bind(record.filtered)
            .push_bind(to_text(&record.input))
            .push_bind(to_text(&record.output))
            .push_bind(record.error.as_deref())
            .push_bind(timestamp(record.started_at))
            .push_bind(record.duration_ms)
            .push_bind(i64::from(record.attempts));
    });
    insert.build().execute(&mut *conn).await?;
    Ok(())
}

/// Apply a new run's concurrency mode before it is inserted: `cancel_previous` cancels the
/// key's runs still queued that never started; `skip` answers the reason the new run is not
/// run when `limit` runs with the key are unfinished.
async fn admit(
    conn: &mut SqliteConnection,
    run: &NewRun,
    rule: &RunConcurrency,
    now: &str,
    superseded: &mut Vec<String>,
) -> Result<Option<String>, sqlx::Error> {
    match rule.mode {
        ConcurrencyMode::Queue => Ok(None),
        ConcurrencyMode::CancelPrevious => {
            let cancelled = sqlx::query(
                "UPDATE runs SET status = 'cancelled', finished_at = $4, error = $5
                 WHERE workflow = $1 AND concurrency_key = $2 AND status = 'queued'
                 AND started_at IS NULL AND id != $3 RETURNING id",
            )
            .bind(&run.workflow)
            .bind(&rule.key)
            .bind(&run.id)
            .bind(now)
            .bind(format!(
                "cancelled: superseded by run {} with concurrency key '{}'",
                run.id, rule.key
            ))
            .fetch_all(&mut *conn)
            .await?;
            for row in cancelled {
                superseded.push(row.try_get("id")?);
            }
            Ok(None)
        }
        ConcurrencyMode::Skip => {
            let busy: i64 = sqlx::query(
                "SELECT COUNT(*) AS busy FROM runs WHERE workflow = $1 AND concurrency_key = $2
                 AND status IN ('queued', 'running', 'retrying')",
            )
            .bind(&run.workflow)
            .bind(&rule.key)
            .fetch_one(&mut *conn)
            .await?
            .try_get("busy")?;
            Ok((busy >= i64::from(rule.limit)).then(|| {
                format!(
                    "skipped: {busy} run(s) with concurrency key '{}' already in progress (limit {})",
                    rule.key, rule.limit
                )
            }))
        }
    }
}

/// Take a run: queued, or running with a lease that ended (or is ours). A queued run with a
/// concurrency key starts only while its key has a free slot and no older run with the key waits
/// ahead of it; a run taken over (`running`) already holds its slot. The key's busy runs and the
/// older queued ones are counted as two ranges of `runs_by_concurrency`, so a claim never walks
/// the key's finished runs.
/// The claim of one run, with `$extra` conditions before its end.
macro_rules! claim_statement {
    ($extra:literal) => {
        concat!(
            "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $2),
     lease_owner = $3, lease_until = $4
     WHERE id = $1 AND (status = 'queued' OR (status = 'running'
       AND (lease_until IS NULL OR lease_until < $2)))
     AND (status = 'running' OR concurrency_key IS NULL OR (
       (SELECT COUNT(*) FROM runs AS other
        WHERE other.workflow = runs.workflow
          AND other.concurrency_key = runs.concurrency_key
          AND other.status IN ('running', 'retrying') AND other.id != runs.id)
       + (SELECT COUNT(*) FROM runs AS other
        WHERE other.workflow = runs.workflow
          AND other.concurrency_key = runs.concurrency_key
          AND other.status = 'queued' AND other.created_at <= runs.created_at
          AND other.id != runs.id
          AND (other.created_at < runs.created_at OR other.id < runs.id))
     ) < concurrency_limit) ",
            $extra,
            " RETURNING id"
        )
    };
}
const CLAIM: &str = claim_statement!("");
/// With a cap on the runs `running` in the store (`$5`): a queued run is taken only while fewer
/// are; a run taken over (`running` already) holds its place and always may be.
const CLAIM_CAPPED: &str = claim_statement!(
    "AND (status = 'running' OR (SELECT COUNT(*) FROM runs AS busy WHERE busy.status = 'running') < $5)"
);

/// Apply one write inside the batch's transaction, holding its answer for the commit.
async fn apply(conn: &mut SqliteConnection, write: &mut Write) -> Result<(), sqlx::Error> {
    let now = timestamp(Utc::now());
    match write {
        Write::Accept {
            event, runs, reply, ..
        } => reply.hold(accept_event(conn, event, runs, &now).await?),
        Write::AcceptTick {
            workflow,
            tick,
            event,
            runs,
            reply,
        } => {
            let accepted = if record_tick(conn, workflow, *tick, Some(&event.id), &now).await? {
                Some(accept_event(conn, event, runs, &now).await?)
            } else {
                None
            };
            reply.hold(accepted);
        }
        Write::ClaimTick {
            workflow,
            tick,
            reply,
        } => reply.hold(record_tick(conn, workflow, *tick, None, &now).await?),
        Write::Claim {
            run_id,
            owner,
            until,
            max_running,
            reply,
        } => reply.hold(claim(conn, run_id, owner, *until, *max_running, &now).await?),
        Write::ClaimQueued {
            owner,
            until,
            queued_before,
            limit,
            max_running,
            reply,
        } => {
            let queued = QueuedClaim {
                owner,
                until: *until,
                queued_before: *queued_before,
                limit: *limit,
                max_running: *max_running,
            };
            reply.hold(claim_queued(conn, &queued, &now).await?);
        }
        Write::RenewLeases {
            owner,
            run_ids,
            until,
            reply,
        } => reply.hold(renew_leases(conn, owner, run_ids, *until).await?),
        Write::ReleaseAllLeases { reply } => reply.hold(release_all_leases(conn).await?),
        Write::StepFinished {
            run_id,
            record,
            reply,
        } => reply.hold(step_finished(conn, run_id, record).await?),
        Write::RunFinished {
            run_id,
            status,
            error,
            response,
            reply,
        } => {
            let ended = RunEnd {
                status: *status,
                error: error.as_deref(),
                response: response.as_ref(),
            };
            reply.hold(run_finished(conn, run_id, &ended, &now).await?);
        }
        Write::RunRetrying {
            run_id,
            error,
            due_at,
            reply,
        } => reply.hold(run_retrying(conn, run_id, error.as_deref(), *due_at).await?),
        Write::Replay {
            run_id,
            from_start,
            reply,
        } => reply.hold(replay(conn, run_id, *from_start).await?),
        Write::Prune { before, reply } => reply.hold(prune(conn, *before, &now).await?),
        Write::ClaimDue { now, reply } => reply.hold(claim_due(conn, *now).await?),
        Write::Definition {
            version,
            definition,
            reply,
        } => reply.hold(save_definition(conn, version, definition, &now).await?),
        Write::Probe { reply } => reply.hold(probe(conn, &now).await?),
    }
    Ok(())
}

/// Queue a finished run again with its next attempt number.
async fn replay(
    conn: &mut SqliteConnection,
    run_id: &str,
    from_start: bool,
) -> Result<Replayed, sqlx::Error> {
    let row = sqlx::query("SELECT status, attempt FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(Replayed::NotFound);
    };
    let status: String = row.try_get("status")?;
    let attempt: i64 = row.try_get("attempt")?;
    if !RunStatus::parse(&status).is_some_and(RunStatus::is_final) {
        return Ok(Replayed::NotFinished(status));
    }
    if from_start {
        sqlx::query("DELETE FROM steps WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
    } else {
        sqlx::query(
            "DELETE FROM steps WHERE run_id = $1 AND idx >= COALESCE(
                (SELECT MIN(idx) FROM steps WHERE run_id = $1 AND status = 'failed'),
                (SELECT MAX(idx) + 1 FROM steps WHERE run_id = $1), 0)",
        )
        .bind(run_id)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "UPDATE runs SET status = 'queued', attempt = $2, error = NULL, response = NULL,
         started_at = NULL, finished_at = NULL, due_at = NULL WHERE id = $1",
    )
    .bind(run_id)
    .bind(attempt + 1)
    .execute(&mut *conn)
    .await?;
    Ok(Replayed::Queued {
        attempt: (attempt + 1) as u32,
    })
}

/// Forget finished runs finished before `before` with their steps and events, old ticks and
/// expired dedupe keys; answers how many runs went.
async fn prune(
    conn: &mut SqliteConnection,
    before: DateTime<Utc>,
    now: &str,
) -> Result<usize, sqlx::Error> {
    let cutoff = timestamp(before);
    let pruned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE status IN ('succeeded', 'failed', 'filtered', 'cancelled')
         AND finished_at < $1",
    )
    .bind(&cutoff)
    .fetch_one(&mut *conn)
    .await?;
    for statement in [
        "DELETE FROM steps WHERE run_id IN (SELECT id FROM runs
         WHERE status IN ('succeeded', 'failed', 'filtered', 'cancelled') AND finished_at < $1)",
        "DELETE FROM runs WHERE status IN ('succeeded', 'failed', 'filtered', 'cancelled') AND finished_at < $1",
        "DELETE FROM events WHERE received_at < $1
         AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.event_id = events.id)",
    ] {
        sqlx::query(statement)
            .bind(&cutoff)
            .execute(&mut *conn)
            .await?;
    }
    // Ticks are bookkeeping (a run keeps its own tick): a day of them covers any race
    // to fire one, and a workflow's latest stays, as it is where the scheduler resumes.
    let tick_cutoff = timestamp(before.max(Utc::now() - chrono::Duration::days(1)));
    sqlx::query(
        "DELETE FROM ticks WHERE tick_at < $1 AND tick_at <
         (SELECT MAX(t.tick_at) FROM ticks AS t WHERE t.workflow = ticks.workflow)",
    )
    .bind(&tick_cutoff)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM dedupe WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(usize::try_from(pruned).unwrap_or(0))
}

/// Move retrying runs whose time has come back to `queued`; their ids.
async fn claim_due(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE runs SET status = 'queued', due_at = NULL
         WHERE status = 'retrying' AND due_at <= $1 RETURNING id",
    )
    .bind(timestamp(now))
    .fetch_all(&mut *conn)
    .await?;
    ids(&rows)
}

async fn run_retrying(
    conn: &mut SqliteConnection,
    run_id: &str,
    error: Option<&str>,
    due_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE runs SET status = 'retrying', error = $2, due_at = $3 WHERE id = $1")
        .bind(run_id)
        .bind(error)
        .bind(timestamp(due_at))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Take one run (`CLAIM`); whether it was taken.
async fn claim(
    conn: &mut SqliteConnection,
    run_id: &str,
    owner: &str,
    until: DateTime<Utc>,
    max_running: Option<u32>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let statement = match max_running {
        None => sqlx::query(CLAIM),
        Some(_) => sqlx::query(CLAIM_CAPPED),
    };
    let mut claim = statement
        .bind(run_id)
        .bind(now)
        .bind(owner)
        .bind(timestamp(until));
    if let Some(cap) = max_running {
        claim = claim.bind(i64::from(cap));
    }
    Ok(claim.fetch_optional(&mut *conn).await?.is_some())
}

/// What a `ClaimQueued` asks for.
struct QueuedClaim<'a> {
    owner: &'a str,
    until: DateTime<Utc>,
    queued_before: DateTime<Utc>,
    limit: usize,
    max_running: Option<u32>,
}

/// Take up to `limit` queued runs accepted before `queued_before`, oldest first.
async fn claim_queued(
    conn: &mut SqliteConnection,
    claim: &QueuedClaim<'_>,
    now: &str,
) -> Result<Vec<String>, sqlx::Error> {
    // One writer: the count and the claim below see the same runs.
    let limit = match claim.max_running {
        None => claim.limit as i64,
        Some(cap) => {
            let running: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'running'")
                    .fetch_one(&mut *conn)
                    .await?;
            (i64::from(cap) - running).clamp(0, claim.limit as i64)
        }
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One writer: nobody else can take these rows between the select and the update. A run
    // with a concurrency key is taken as `Claim` takes it: while its key has a free slot and no
    // older run with the key waits ahead (an older one taken in this same statement still
    // counts as waiting, so one statement never exceeds the limit).
    let rows = sqlx::query(
        "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, $1),
         lease_owner = $2, lease_until = $3
         WHERE id IN (SELECT id FROM runs AS queued
           WHERE status = 'queued' AND created_at < $4
           AND (concurrency_key IS NULL OR (
             SELECT COUNT(*) FROM runs AS other
             WHERE other.workflow = queued.workflow
               AND other.concurrency_key = queued.concurrency_key
               AND other.id != queued.id
               AND (other.status IN ('running', 'retrying')
                 OR (other.status = 'queued' AND (other.created_at < queued.created_at
                   OR (other.created_at = queued.created_at AND other.id < queued.id))))
           ) < concurrency_limit)
           ORDER BY created_at LIMIT $5)
         RETURNING id",
    )
    .bind(now)
    .bind(claim.owner)
    .bind(timestamp(claim.until))
    .bind(timestamp(claim.queued_before))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    ids(&rows)
}

/// Extend the leases `owner` holds on `run_ids`.
async fn renew_leases(
    conn: &mut SqliteConnection,
    owner: &str,
    run_ids: &[String],
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for run_id in run_ids {
        sqlx::query(
            "UPDATE runs SET lease_until = $3
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(owner)
        .bind(timestamp(until))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Single-node recovery: every lease belongs to a process that is gone.
async fn release_all_leases(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE status = 'running'")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One step record, written over an earlier attempt's.
async fn step_finished(
    conn: &mut SqliteConnection,
    run_id: &str,
    record: &StepRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR REPLACE INTO steps
         (run_id, idx, name, kind, status, filtered, input, output, error, started_at, duration_ms, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(run_id)
    .bind(record.index as i64)
    .bind(&record.name)
    .bind(&record.kind)
    .bind(record.status.as_str())
    .bind(record.filtered)
    .bind(to_text(&record.input))
    .bind(to_text(&record.output))
    .bind(record.error.as_deref())
    .bind(timestamp(record.started_at))
    .bind(record.duration_ms)
    .bind(i64::from(record.attempts))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How a run ended.
struct RunEnd<'a> {
    status: RunStatus,
    error: Option<&'a str>,
    response: Option<&'a SyncResponse>,
}

async fn run_finished(
    conn: &mut SqliteConnection,
    run_id: &str,
    ended: &RunEnd<'_>,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE runs SET status = $2, error = $3, response = $4, finished_at = $5 WHERE id = $1",
    )
    .bind(run_id)
    .bind(ended.status.as_str())
    .bind(ended.error)
    .bind(ended.response.map(to_text))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Keep a workflow's definition under its version (the first one saved stays).
async fn save_definition(
    conn: &mut SqliteConnection,
    version: &str,
    definition: &Definition,
    now: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR IGNORE INTO definitions (version, name, path, source, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(version)
    .bind(&definition.name)
    .bind(&definition.path)
    .bind(&definition.source)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rewrite the probe row: whether a commit reaches the disk.
async fn probe(conn: &mut SqliteConnection, now: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT OR REPLACE INTO probe (id, written_at) VALUES (1, $1)")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Record `(workflow, tick)`; false when it was recorded already.
async fn record_tick(
    conn: &mut SqliteConnection,
    workflow: &str,
    tick: DateTime<Utc>,
    event_id: Option<&str>,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO ticks (workflow, tick_at, event_id, recorded_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(workflow)
    .bind(timestamp(tick))
    .bind(event_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() > 0)
}

/// Insert the event and its runs, except the runs whose dedupe key is held by another run.
async fn accept_event(
    conn: &mut SqliteConnection,
    event: &Event,
    runs: &[NewRun],
    now: &str,
) -> Result<Accepted, sqlx::Error> {
    let mut accepted = Accepted::default();
    let mut created = Vec::new();
    for run in runs {
        let Some(dedupe) = &run.dedupe else {
            created.push(run);
            continue;
        };
        let holder = sqlx::query(
            "SELECT run_id FROM dedupe WHERE workflow = $1 AND key = $2 AND expires_at > $3",
        )
        .bind(&run.workflow)
        .bind(&dedupe.key)
        .bind(timestamp(event.received_at))
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(holder) = holder {
            accepted.duplicate_of.push(holder.try_get("run_id")?);
            continue;
        }
        sqlx::query(
            "INSERT OR REPLACE INTO dedupe (workflow, key, run_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&run.workflow)
        .bind(&dedupe.key)
        .bind(&run.id)
        .bind(timestamp(dedupe.expires_at))
        .execute(&mut *conn)
        .await?;
        created.push(run);
    }
    if created.is_empty() {
        // Nothing new: the event itself is not kept either.
        return Ok(accepted);
    }
    sqlx::query(
        "INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw, triggered_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&event.id)
    .bind(timestamp(event.received_at))
    .bind(&event.method)
    .bind(&event.path)
    .bind(to_text(&event.params))
    .bind(to_text(&event.query))
    .bind(to_text(&event.headers))
    .bind(stored_body(event))
    .bind(event.raw.as_slice())
    .bind((event.trigger != Trigger::Webhook).then(|| to_text(&event.trigger)))
    .execute(&mut *conn)
    .await?;
    for run in created {
        accepted.created.push(run.id.clone());
        let skipped = match &run.concurrency {
            Some(rule) => admit(conn, run, rule, now, &mut accepted.superseded).await?,
            None => None,
        };
        let (status, finished_at) = match &skipped {
            Some(_) => ("cancelled", Some(now)),
            None => ("queued", None),
        };
        sqlx::query(
            "INSERT INTO runs (id, event_id, workflow, version, status, created_at,
             finished_at, error, concurrency_key, concurrency_limit)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&run.id)
        .bind(&event.id)
        .bind(&run.workflow)
        .bind(&run.version)
        .bind(status)
        .bind(timestamp(event.received_at))
        .bind(finished_at)
        .bind(skipped.as_deref())
        .bind(run.concurrency.as_ref().map(|c| c.key.as_str()))
        .bind(run.concurrency.as_ref().map(|c| i64::from(c.limit)))
        .execute(&mut *conn)
        .await?;
    }
    Ok(accepted)
}

/// The `body` column: empty when the body is the raw bytes parsed as JSON, which the raw column
/// already holds (the reader parses them again), so an event's body is written once.
fn stored_body(event: &Event) -> String {
    if super::rows::body_is_raw_json(event) {
        String::new()
    } else {
        to_text(&event.body)
    }
}

fn to_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn get<T>(row: &SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(read_error)
}

/// The `id` column of each row.
fn ids(rows: &[SqliteRow]) -> Result<Vec<String>, sqlx::Error> {
    rows.iter().map(|r| r.try_get("id")).collect()
}

impl Columns for SqliteRow {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        get(self, column)
    }
    fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        get(self, column)
    }
    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        get(self, column)
    }
    fn real(&self, column: &str) -> Result<f64, StoreError> {
        get(self, column)
    }
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        get(self, column)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        get(self, column)
    }
}

impl super::StoreBackend for SqliteStore {
    fn accept<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
        Box::pin(SqliteStore::accept(self, event, runs))
    }

    fn accept_claimed<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
        lease: Lease,
    ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
        Box::pin(SqliteStore::accept_claimed(self, event, runs, lease))
    }

    fn claim<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SqliteStore::claim(self, run_id, owner, until))
    }

    fn renew_leases<'a>(
        &'a self,
        owner: &'a str,
        run_ids: &'a [String],
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::renew_leases(self, owner, run_ids, until))
    }

    fn claim_queued<'a>(
        &'a self,
        owner: &'a str,
        until: DateTime<Utc>,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(SqliteStore::claim_queued(
            self,
            owner,
            until,
            queued_before,
            limit,
        ))
    }

    fn take_over_orphans(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(SqliteStore::take_over_orphans(self))
    }

    fn expired_leases(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(SqliteStore::expired_leases(self, now))
    }

    fn step_finished<'a>(
        &'a self,
        run_id: &'a str,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::step_finished(self, run_id, record))
    }

    fn step_noted<'a>(
        &'a self,
        run_id: &'a str,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<super::Settling, StoreError>> {
        Box::pin(SqliteStore::step_noted(self, run_id, record))
    }

    fn run_finished<'a>(
        &'a self,
        run_id: &'a str,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::run_finished(
            self, run_id, status, error, response,
        ))
    }

    fn run_retrying<'a>(
        &'a self,
        run_id: &'a str,
        error: Option<String>,
        due_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::run_retrying(self, run_id, error, due_at))
    }

    fn claim_due_retries(
        &self,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(SqliteStore::claim_due_retries(self, now))
    }

    fn next_retry_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(SqliteStore::next_retry_due(self))
    }

    fn replay<'a>(
        &'a self,
        run_id: &'a str,
        from_start: bool,
    ) -> BoxFuture<'a, Result<Replayed, StoreError>> {
        Box::pin(SqliteStore::replay(self, run_id, from_start))
    }

    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(SqliteStore::prune(self, before))
    }

    fn save_definition<'a>(
        &'a self,
        version: &'a str,
        definition: Definition,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqliteStore::save_definition(self, version, definition))
    }

    fn definition<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>> {
        Box::pin(SqliteStore::definition(self, version))
    }

    fn unfinished_runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(SqliteStore::unfinished_runs(self))
    }

    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunSummary>, StoreError>> {
        Box::pin(SqliteStore::list_runs(self, filter))
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDetail>, StoreError>> {
        Box::pin(SqliteStore::run(self, id))
    }

    fn queued_behind<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(SqliteStore::queued_behind(self, run_id))
    }

    fn count_queued(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            // A range of the `(status, created_at, id)` listing index.
            let queued: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'queued'")
                    .fetch_one(&self.readers)
                    .await
                    .map_err(read_error)?;
            Ok(usize::try_from(queued).unwrap_or(0))
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(SqliteStore::ping(self))
    }

    fn accept_tick<'a>(
        &'a self,
        workflow: &'a str,
        tick: DateTime<Utc>,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Option<Accepted>, StoreError>> {
        Box::pin(SqliteStore::accept_tick(self, workflow, tick, event, runs))
    }

    fn claim_tick<'a>(
        &'a self,
        workflow: &'a str,
        tick: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(SqliteStore::claim_tick(self, workflow, tick))
    }

    fn last_tick<'a>(
        &'a self,
        workflow: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(SqliteStore::last_tick(self, workflow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn migrated() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .expect("schema");
        migrate(&mut conn).await.expect("migrate");
        conn
    }

    async fn plan(conn: &mut SqliteConnection, statement: &str) -> Vec<String> {
        // Test-only: the statement is one of this file's constants.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {statement}"
        )))
        .bind("run")
        .bind("2026-01-01T00:00:00.000Z")
        .bind("owner")
        .bind("2026-01-01T00:00:30.000Z")
        .fetch_all(&mut *conn)
        .await
        .expect("plan")
        .iter()
        .map(|r| r.try_get::<String, _>("detail").expect("detail"))
        .collect()
    }

    #[tokio::test]
    async fn a_claim_counts_the_busy_and_older_queued_runs_of_its_key_without_its_history() {
        let mut conn = migrated().await;
        let plan = plan(&mut conn, CLAIM).await;
        let counts: Vec<&String> = plan.iter().filter(|l| l.contains(" other ")).collect();
        assert_eq!(counts.len(), 2, "{plan:#?}");
        assert!(
            counts
                .iter()
                .all(|l| l.contains("runs_by_concurrency") && l.contains("status=?")),
            "a claim must not walk every run its key ever had: {plan:#?}"
        );
        assert!(
            counts.iter().any(|l| l.contains("created_at<?")),
            "the older queued runs are a range: {plan:#?}"
        );
    }

    #[tokio::test]
    async fn a_file_with_the_old_concurrency_index_gets_the_new_one() {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .expect("schema");
        sqlx::raw_sql(
            "CREATE INDEX runs_by_concurrency ON runs(workflow, concurrency_key, status)",
        )
        .execute(&mut conn)
        .await
        .expect("old index");
        migrate(&mut conn).await.expect("migrate");
        migrate(&mut conn).await.expect("migrate again");
        let columns: Vec<String> =
            sqlx::query("SELECT name FROM pragma_index_info('runs_by_concurrency') ORDER BY seqno")
                .fetch_all(&mut conn)
                .await
                .expect("index")
                .iter()
                .map(|r| r.try_get::<String, _>("name").expect("name"))
                .collect();
        assert_eq!(
            columns,
            ["workflow", "concurrency_key", "status", "created_at"]
        );
    }
}
