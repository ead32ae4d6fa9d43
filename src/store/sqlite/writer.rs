//! The one task that writes to a SQLite store: it takes the writes waiting in its queue,
//! commits them in one transaction (group commit) and answers each; a connection that failed is
//! never used again, and files swapped under the store are noticed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::transitions::{apply, insert_plain_accepts, insert_step_records};
use crate::run::{Event, NewRun, RunStatus, StepRecord, SyncResponse};
use crate::store::files::{FileFault, StoreFiles};
use crate::store::health::{HealthState, StoreHealth};
use crate::store::{
    Accepted, CancelRequest, Cancelled, Definition, Lease, PauseRequest, ReplayOptions, Replayed,
    StoreError,
};

/// Writes that arrive while a commit is in flight wait for the next one, up to this many at once.
const MAX_BATCH: usize = 512;

/// How often an idle writer looks whether its files are still the ones on disk.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

const WRITE_QUEUE: usize = 8192;
/// Rows per multi-row INSERT: 13 columns each stays far below SQLite's 32,766 parameters.
pub(super) const ROWS_PER_INSERT: usize = 256;

/// A write for the writer task, with the reply its caller waits for: each kind answers its own
/// type, so a write cannot be answered with another's.
pub(super) enum Write {
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
        options: ReplayOptions,
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
    CancelRun {
        run_id: String,
        cancel: CancelRequest,
        reply: Reply<Cancelled>,
    },
    PauseWorkflow {
        workflow: String,
        pause: PauseRequest,
        reply: Reply<bool>,
    },
    ResumeWorkflow {
        workflow: String,
        reply: Reply<bool>,
    },
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
            Write::CancelRun { reply, .. } => reply.finish(committed),
            Write::PauseWorkflow { reply, .. } | Write::ResumeWorkflow { reply, .. } => {
                reply.finish(committed)
            }
        }
    }
}

/// Where a write's answer goes: what the write found is held here until its batch commits,
/// since a caller must not act on a write that may still roll back.
pub(super) struct Reply<T> {
    sender: oneshot::Sender<Result<T, StoreError>>,
    found: Option<T>,
}

impl<T> Reply<T> {
    pub(super) fn new() -> (Self, oneshot::Receiver<Result<T, StoreError>>) {
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
    pub(super) fn hold(&mut self, found: T) {
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

/// Start the writer task on `connection`; writes sent on the answer reach it in order.
pub(super) fn start(
    connection: SqliteConnection,
    options: SqliteConnectOptions,
    files: Option<StoreFiles>,
    health: Arc<StoreHealth>,
) -> mpsc::Sender<Write> {
    let (writes, queue) = mpsc::channel(WRITE_QUEUE);
    let writer = Writer {
        connection: Some(connection),
        options,
        files,
        health,
    };
    tokio::spawn(writer.run(queue));
    writes
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
    unclaim_paused(&mut tx, batch, &plain_accepts).await?;
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
    crate::observe::metrics::metrics().store_commit(started.elapsed());
    Ok(())
}

/// The plain accepts at `indexes` that would claim a run of a paused workflow only queue their
/// runs: a paused workflow's runs wait. The paused set is read only when some accept claims.
async fn unclaim_paused(
    conn: &mut SqliteConnection,
    batch: &mut [Write],
    indexes: &[usize],
) -> Result<(), sqlx::Error> {
    let claims = indexes
        .iter()
        .any(|&i| matches!(&batch[i], Write::Accept { lease: Some(_), .. }));
    if !claims {
        return Ok(());
    }
    let paused: Vec<String> = sqlx::query_scalar("SELECT workflow FROM paused_workflows")
        .fetch_all(&mut *conn)
        .await?;
    if paused.is_empty() {
        return Ok(());
    }
    for &i in indexes {
        if let Write::Accept { runs, lease, .. } = &mut batch[i]
            && runs.iter().any(|run| paused.contains(&run.workflow))
        {
            *lease = None;
        }
    }
    Ok(())
}

/// An accept with runs that need no dedupe or concurrency check: nothing to read first.
fn is_plain_accept(write: &Write) -> bool {
    matches!(write, Write::Accept { runs, .. }
        if !runs.is_empty() && runs.iter().all(|r| r.dedupe.is_none() && r.concurrency.is_none()))
}
