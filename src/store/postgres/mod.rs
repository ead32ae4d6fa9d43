//! PostgreSQL backend: one database shared by several hookflow processes. Runs are claimed with
//! row locks (`FOR UPDATE SKIP LOCKED`) and leases; `LISTEN/NOTIFY` wakes idle processes. The
//! schema is in `schema`, claims and leases in `claims`, wake-ups in `notify`, outgoing rate buckets in `rate`, the other writes
//! in `transitions` and the reads in `reads`.

mod batch;
mod claims;
mod connection;
mod notify;
mod partitions;
mod pauses;
mod rate;
mod reads;
mod schema;
mod transitions;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::{
    Accepted, ActivityWindow, CancelRequest, Cancelled, Definition, Lease, MinuteCount,
    PauseRequest, PausedWorkflow, ReplayOptions, Replayed, RunDetail, RunDurations, RunFilter,
    RunSummary, Settling, StoreBackend, StoreError, StoreOptions, Wakeup,
};
use crate::future::BoxFuture;
use crate::run::{Event, NewRun, RateLimit, RunStatus, StepRecord, SyncResponse};
use reads::{read_error, write_error};

/// A finished run's duration in milliseconds, from the RFC 3339 text read as `timestamptz`.
const POSTGRES_DURATION_MS: &str = "CAST(EXTRACT(EPOCH FROM (CAST(finished_at AS TIMESTAMPTZ) \
    - CAST(started_at AS TIMESTAMPTZ))) * 1000 AS DOUBLE PRECISION)";

/// Cheap to clone; every clone shares the pool and the listener.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    wakeups: broadcast::Sender<Wakeup>,
    /// When this process last notified about accepted runs (ms since the epoch).
    last_notify: Arc<AtomicI64>,
    /// Runs `running` at once in the whole database, at most (`max_running`).
    max_running: Option<u32>,
    /// Accepts of plain runs, step records and run ends, committed in shared transactions.
    batcher: batch::Batcher,
    /// Where runs are claimed from the queue: see `claims::queue_options`.
    queue: Arc<tokio::sync::Mutex<connection::OwnConnection>>,
}

impl PostgresStore {
    /// Connect, apply the migrations this database lacks, and listen for wake-ups.
    pub async fn open(
        url: &str,
        options: &StoreOptions,
        listen_for_wakeups: bool,
    ) -> Result<Self, StoreError> {
        let open_error = |e: sqlx::Error| StoreError::Open {
            path: redact_url(url),
            source: e.into(),
        };
        let mut connect = PgConnectOptions::from_str(url).map_err(open_error)?;
        if let Some(timeout) = options.statement_timeout {
            connect = connect.options([("statement_timeout", format!("{}", timeout.as_millis()))]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            // A request during an outage is answered 503 soon instead of waiting for a
            // connection; the sender retries.
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(open_error)?;
        schema::migrate(&pool).await.map_err(open_error)?;
        let (wakeups, _) = broadcast::channel(64);
        if listen_for_wakeups {
            tokio::spawn(notify::listen(connect.clone(), wakeups.clone()));
        }
        let last_notify = Arc::new(AtomicI64::new(0));
        let notifier: batch::Notifier = {
            let last_notify = Arc::clone(&last_notify);
            Arc::new(move || notify::notify_due(&last_notify))
        };
        let queue = connection::OwnConnection::new(claims::queue_options(connect.clone()));
        Ok(Self {
            batcher: batch::Batcher::start(connect.clone(), notifier),
            queue: Arc::new(tokio::sync::Mutex::new(queue)),
            pool,
            wakeups,
            last_notify,
            max_running: options.max_running,
        })
    }

    pub(super) async fn transaction(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(write_error)
    }
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl StoreBackend for PostgresStore {
    fn accept<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
        Box::pin(PostgresStore::accept(self, event, runs))
    }

    /// Plain runs (no dedupe key, no concurrency rule) are claimed in the accept's commit,
    /// unless a store-wide cap must count them first.
    fn accept_claimed<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
        lease: Lease,
    ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
        Box::pin(PostgresStore::accept_claimed(self, event, runs, lease))
    }

    fn step_noted<'a>(
        &'a self,
        run_id: &'a str,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<Settling, StoreError>> {
        Box::pin(PostgresStore::step_noted(self, run_id, record))
    }

    fn claim<'a>(
        &'a self,
        run_id: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(PostgresStore::claim(self, run_id, owner, until))
    }

    fn claim_queued<'a>(
        &'a self,
        owner: &'a str,
        until: DateTime<Utc>,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(PostgresStore::claim_queued(
            self,
            owner,
            until,
            queued_before,
            limit,
        ))
    }

    fn release<'a>(
        &'a self,
        owner: &'a str,
        run_ids: &'a [String],
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(PostgresStore::release(self, owner, run_ids))
    }

    fn renew_leases<'a>(
        &'a self,
        owner: &'a str,
        run_ids: &'a [String],
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(PostgresStore::renew_leases(self, owner, run_ids, until))
    }

    /// Other processes share the database and may be alive: their runs are taken over only
    /// when their leases end, so there is nothing to do at start.
    fn take_over_orphans(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn expired_leases(&self, now: DateTime<Utc>) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(PostgresStore::expired_leases(self, now))
    }

    fn step_finished<'a>(
        &'a self,
        run_id: &'a str,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(PostgresStore::step_finished(self, run_id, record))
    }

    fn run_finished<'a>(
        &'a self,
        run_id: &'a str,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(PostgresStore::run_finished(
            self, run_id, status, error, response,
        ))
    }

    fn run_retrying<'a>(
        &'a self,
        run_id: &'a str,
        error: Option<String>,
        due_at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(PostgresStore::run_retrying(self, run_id, error, due_at))
    }

    fn claim_due_retries(
        &self,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(PostgresStore::claim_due_retries(self, now))
    }

    fn next_retry_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(super::reads::next_retry_due(&self.pool))
    }

    fn replay<'a>(
        &'a self,
        run_id: &'a str,
        replay: &'a ReplayOptions,
    ) -> BoxFuture<'a, Result<Replayed, StoreError>> {
        Box::pin(PostgresStore::replay(self, run_id, replay))
    }

    fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(PostgresStore::prune(self, before))
    }

    fn save_definition<'a>(
        &'a self,
        version: &'a str,
        definition: Definition,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(PostgresStore::save_definition(self, version, definition))
    }

    fn definition<'a>(
        &'a self,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>> {
        Box::pin(super::reads::definition(&self.pool, version))
    }

    fn unfinished_runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(super::reads::unfinished_runs(&self.pool))
    }

    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunSummary>, StoreError>> {
        Box::pin(super::reads::list_runs(&self.pool, filter))
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDetail>, StoreError>> {
        Box::pin(super::reads::run(&self.pool, id))
    }

    fn runs<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<RunDetail>, StoreError>> {
        Box::pin(self.runs_by_id(ids))
    }

    fn runs_per_minute<'a>(
        &'a self,
        window: &'a ActivityWindow,
    ) -> BoxFuture<'a, Result<Vec<MinuteCount>, StoreError>> {
        Box::pin(super::activity::runs_per_minute(&self.pool, window))
    }

    fn run_durations<'a>(
        &'a self,
        window: &'a ActivityWindow,
    ) -> BoxFuture<'a, Result<RunDurations, StoreError>> {
        Box::pin(super::activity::run_durations(
            &self.pool,
            window,
            POSTGRES_DURATION_MS,
        ))
    }

    fn queued_behind<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(PostgresStore::queued_behind(self, run_id))
    }

    fn accept_tick<'a>(
        &'a self,
        workflow: &'a str,
        tick: DateTime<Utc>,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Option<Accepted>, StoreError>> {
        Box::pin(PostgresStore::accept_tick(
            self, workflow, tick, event, runs,
        ))
    }

    fn claim_tick<'a>(
        &'a self,
        workflow: &'a str,
        tick: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(PostgresStore::claim_tick(self, workflow, tick))
    }

    fn last_tick<'a>(
        &'a self,
        workflow: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, StoreError>> {
        Box::pin(super::reads::last_tick(&self.pool, workflow))
    }

    fn count_queued(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            // A range of the `(status, created_at, id)` listing index.
            let queued: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'queued'")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(read_error)?;
            Ok(usize::try_from(queued).unwrap_or(0))
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(PostgresStore::ping(self))
    }

    fn take_rate_slot<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<DateTime<Utc>, StoreError>> {
        Box::pin(PostgresStore::take_rate_slot(self, key, limit, now))
    }

    fn hold_rate_bucket<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(PostgresStore::hold_rate_bucket(self, key, limit, until))
    }

    fn shared(&self) -> bool {
        true
    }

    fn wakeups(&self) -> broadcast::Receiver<Wakeup> {
        self.wakeups.subscribe()
    }
    fn cancel_run<'a>(
        &'a self,
        run_id: &'a str,
        cancel: &'a CancelRequest,
    ) -> BoxFuture<'a, Result<Cancelled, StoreError>> {
        Box::pin(PostgresStore::cancel_run(self, run_id, cancel))
    }

    fn cancel_requests<'a>(
        &'a self,
        run_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(super::pause::cancel_requests(&self.pool, run_ids))
    }

    fn pause_workflow<'a>(
        &'a self,
        workflow: &'a str,
        pause: &'a PauseRequest,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(PostgresStore::pause_workflow(self, workflow, pause))
    }

    fn resume_workflow<'a>(&'a self, workflow: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(PostgresStore::resume_workflow(self, workflow))
    }

    fn paused_workflows(&self) -> BoxFuture<'_, Result<Vec<PausedWorkflow>, StoreError>> {
        Box::pin(super::pause::paused_workflows(&self.pool))
    }
}
