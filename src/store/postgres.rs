//! PostgreSQL backend: one database shared by several hookflow processes. Runs are claimed with
//! row locks (`FOR UPDATE SKIP LOCKED`) and leases; `LISTEN/NOTIFY` wakes idle processes.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::broadcast;
use tracing::{info, warn};

use super::rows::{Columns, event_from_row, run_from_row, step_from_row};
use super::{
    Accepted, Definition, Replayed, RunDetail, RunFilter, RunSummary, StoreError, StoreOptions,
    Wakeup, parse_timestamp, timestamp,
};
use crate::future::BoxFuture;
use crate::run::ConcurrencyMode;
use crate::run::SyncResponse;
use crate::run::{Event, RunStatus, StepRecord, Trigger};
use crate::run::{NewRun, RunConcurrency};

/// How long readiness waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// The notification channel every hookflow process on the database listens to.
const CHANNEL: &str = "hookflow_wakeup";
/// Held while migrations run, so processes starting together apply each one once.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_666c_6f77; // "hookflow"
/// Held by the process pruning old runs, with the schema's hash: stores in other schemas of the
/// same database prune on their own.
const PRUNE_LOCK: i32 = 0x686f_6f6b; // "hook"
/// Held, with the schema's hash, by a process claiming runs under `max_running`: counting the
/// runs `running` and taking one more is one step across every process.
const RUNNING_CAP_LOCK: i32 = 0x666c_6f77; // "flow"
/// Accepts notify at most this often per process: a wake-up per burst is enough, and every
/// NOTIFY serializes commits for a moment.
const NOTIFY_EVERY_MS: i64 = 100;

/// The schema, one step per version; a step is never edited once released, only appended.
/// Timestamps are RFC 3339 text in UTC with fixed precision (as on SQLite): they sort as text
/// and the two backends share their encoding code.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    params TEXT NOT NULL,
    query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    raw BYTEA NOT NULL
);
CREATE TABLE runs (
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
    lease_until TEXT
);
CREATE INDEX runs_due ON runs(status, due_at);
CREATE INDEX runs_by_status ON runs(status, created_at);
CREATE INDEX runs_by_workflow ON runs(workflow, created_at);
CREATE INDEX runs_by_time ON runs(created_at);
CREATE INDEX runs_leases ON runs(status, lease_until);
CREATE INDEX runs_by_event ON runs(event_id);
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    filtered BOOLEAN NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE dedupe (
    workflow TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (workflow, key)
);
CREATE INDEX dedupe_expiry ON dedupe(expires_at);
CREATE TABLE definitions (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"#,
    ),
    (
        2,
        r#"
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE runs ADD COLUMN concurrency_limit INTEGER;
CREATE INDEX runs_by_concurrency ON runs(workflow, concurrency_key, status);
"#,
    ),
    (
        3,
        r#"
ALTER TABLE events ADD COLUMN triggered_by TEXT;
CREATE TABLE ticks (
    workflow TEXT NOT NULL,
    tick_at TEXT NOT NULL,
    event_id TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (workflow, tick_at)
);
"#,
    ),
    (
        4,
        r#"
DROP INDEX IF EXISTS runs_by_status;
DROP INDEX IF EXISTS runs_by_workflow;
DROP INDEX IF EXISTS runs_by_time;
CREATE INDEX runs_list ON runs(created_at, id);
CREATE INDEX runs_list_by_status ON runs(status, created_at, id);
CREATE INDEX runs_list_by_workflow ON runs(workflow, created_at, id);
CREATE INDEX runs_list_by_workflow_status ON runs(workflow, status, created_at, id);
DROP INDEX IF EXISTS runs_by_concurrency;
CREATE INDEX runs_by_concurrency ON runs(workflow, concurrency_key, status, created_at);
"#,
    ),
];

/// Take one run with no concurrency key: queued, or running with a lease that ended.
const CLAIM_UNKEYED: &str = "UPDATE runs SET status = 'running',
     started_at = COALESCE(started_at, $2), lease_owner = $3, lease_until = $4
     WHERE id = $1 AND (status = 'queued' OR (status = 'running'
       AND (lease_until IS NULL OR lease_until < $2)))
     AND concurrency_key IS NULL
     RETURNING id";
/// Take one run with a concurrency key, while the key has a free slot (under the key's lock).
const CLAIM_KEYED: &str = "UPDATE runs SET status = 'running',
     started_at = COALESCE(started_at, $2), lease_owner = $3, lease_until = $4
     WHERE id = $1 AND (status = 'queued' OR (status = 'running'
       AND (lease_until IS NULL OR lease_until < $2)))
     AND (status = 'running' OR (
       SELECT count(*) FROM runs AS other
       WHERE other.workflow = runs.workflow
         AND other.concurrency_key = runs.concurrency_key
         AND other.id <> runs.id
         AND (other.status IN ('running', 'retrying')
           OR (other.status = 'queued' AND (other.created_at < runs.created_at
             OR (other.created_at = runs.created_at AND other.id < runs.id))))
     ) < concurrency_limit)
     RETURNING id";

/// Cheap to clone; every clone shares the pool and the listener.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    wakeups: broadcast::Sender<Wakeup>,
    /// When this process last notified about accepted runs (ms since the epoch).
    last_notify: Arc<AtomicI64>,
    /// Runs `running` at once in the whole database, at most (`max_running`).
    max_running: Option<u32>,
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
        migrate(&pool).await.map_err(open_error)?;
        let (wakeups, _) = broadcast::channel(64);
        if listen_for_wakeups {
            tokio::spawn(listen(connect, wakeups.clone()));
        }
        Ok(Self {
            pool,
            wakeups,
            last_notify: Arc::new(AtomicI64::new(0)),
            max_running: options.max_running,
        })
    }

    async fn transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(write_error)
    }

    /// Whether this accept should wake the other processes.
    fn notify_due(&self) -> bool {
        let now = Utc::now().timestamp_millis();
        let last = self.last_notify.load(Ordering::Relaxed);
        now - last >= NOTIFY_EVERY_MS
            && self
                .last_notify
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub async fn accept(&self, event: Arc<Event>, runs: &[NewRun]) -> Result<Accepted, StoreError> {
        if runs
            .iter()
            .all(|r| r.dedupe.is_none() && r.concurrency.is_none())
        {
            return self.accept_at_once(&event, runs).await;
        }
        let mut tx = self.transaction().await?;
        let accepted = self.accept_in(&mut tx, &event, runs).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(accepted)
    }

    /// The event and its runs in the caller's transaction, except the runs whose dedupe key
    /// another run holds; concurrency modes applied under their keys' locks.
    async fn accept_in(
        &self,
        tx: &mut PgConnection,
        event: &Event,
        runs: &[NewRun],
    ) -> Result<Accepted, StoreError> {
        // The keys these runs count and cancel under, one process at a time, always locked in
        // the same order so two accepts cannot wait on each other.
        let mut keys: Vec<(&str, &str)> = runs
            .iter()
            .filter_map(|r| Some((r.workflow.as_str(), r.concurrency.as_ref()?.key.as_str())))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for (workflow, key) in keys {
            lock_concurrency_key(&mut *tx, workflow, key).await?;
        }
        let mut accepted = Accepted::default();
        let mut created = Vec::new();
        let received = timestamp(event.received_at);
        for run in runs {
            let Some(dedupe) = &run.dedupe else {
                created.push(run);
                continue;
            };
            // The key is ours when it is new or its window ended. A concurrent accept of the
            // same key on another process waits on the row and then sees it held.
            let taken = sqlx::query(
                "INSERT INTO dedupe (workflow, key, run_id, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workflow, key) DO UPDATE
                   SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at
                   WHERE dedupe.expires_at <= $5
                 RETURNING run_id",
            )
            .bind(&run.workflow)
            .bind(&dedupe.key)
            .bind(&run.id)
            .bind(timestamp(dedupe.expires_at))
            .bind(&received)
            .fetch_optional(&mut *tx)
            .await
            .map_err(write_error)?;
            if taken.is_some() {
                created.push(run);
                continue;
            }
            let holder = sqlx::query("SELECT run_id FROM dedupe WHERE workflow = $1 AND key = $2")
                .bind(&run.workflow)
                .bind(&dedupe.key)
                .fetch_one(&mut *tx)
                .await
                .map_err(write_error)?;
            accepted
                .duplicate_of
                .push(holder.try_get("run_id").map_err(write_error)?);
        }
        if created.is_empty() {
            // Nothing new: the event itself is not kept either.
            return Ok(accepted);
        }
        sqlx::query(
            "INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw,
             triggered_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&event.id)
        .bind(&received)
        .bind(&event.method)
        .bind(&event.path)
        .bind(to_text(&event.params))
        .bind(to_text(&event.query))
        .bind(to_text(&event.headers))
        .bind(to_text(&event.body))
        .bind(event.raw.as_slice())
        .bind(triggered_by(event))
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        let now = timestamp(Utc::now());
        for run in &created {
            let skipped = match &run.concurrency {
                Some(rule) => admit(&mut *tx, run, rule, &now, &mut accepted.superseded).await?,
                None => None,
            };
            let (status, finished_at) = match &skipped {
                Some(_) => ("cancelled", Some(now.as_str())),
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
            .bind(&received)
            .bind(finished_at)
            .bind(skipped.as_deref())
            .bind(run.concurrency.as_ref().map(|c| c.key.as_str()))
            .bind(run.concurrency.as_ref().map(|c| c.limit as i32))
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        if self.notify_due() {
            notify(&mut *tx, Wakeup::RunsQueued).await?;
        }
        accepted.created = created.iter().map(|r| r.id.clone()).collect();
        Ok(accepted)
    }

    /// A schedule's tick: recorded with its event and runs in one transaction, or nothing at
    /// all when another process (or an earlier start) recorded it first.
    pub async fn accept_tick(
        &self,
        workflow: &str,
        tick: DateTime<Utc>,
        event: Arc<Event>,
        runs: &[NewRun],
    ) -> Result<Option<Accepted>, StoreError> {
        let mut tx = self.transaction().await?;
        if !record_tick(&mut tx, workflow, tick, Some(&event.id)).await? {
            return Ok(None);
        }
        let accepted = self.accept_in(&mut tx, &event, runs).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(Some(accepted))
    }

    /// Record a tick that starts no run; true when it was not recorded before.
    pub async fn claim_tick(
        &self,
        workflow: &str,
        tick: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(write_error)?;
        record_tick(&mut conn, workflow, tick, None).await
    }

    /// The latest tick recorded for `workflow`.
    pub async fn last_tick(&self, workflow: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT max(tick_at) AS tick FROM ticks WHERE workflow = $1")
            .bind(workflow)
            .fetch_one(&self.pool)
            .await
            .map_err(read_error)?;
        get::<Option<String>>(&row, "tick")?
            .map(|t| parse_timestamp(&t))
            .transpose()
    }

    /// Without dedupe keys there is nothing to decide: the event and its runs go in one
    /// statement, one round trip and one commit (the foreign key is checked at its end).
    async fn accept_at_once(&self, event: &Event, runs: &[NewRun]) -> Result<Accepted, StoreError> {
        const INSERT: &str = "WITH event AS (
                INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw,
                triggered_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $13)
            )
            INSERT INTO runs (id, event_id, workflow, version, status, created_at)
            SELECT id, $1, workflow, version, 'queued', $2
            FROM UNNEST($10::text[], $11::text[], $12::text[]) AS r(id, workflow, version)";
        const INSERT_AND_NOTIFY: &str = "WITH event AS (
                INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw,
                triggered_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $13)
            ), queued AS (
                INSERT INTO runs (id, event_id, workflow, version, status, created_at)
                SELECT id, $1, workflow, version, 'queued', $2
                FROM UNNEST($10::text[], $11::text[], $12::text[]) AS r(id, workflow, version)
                RETURNING id
            )
            SELECT (SELECT count(*) FROM queued), pg_notify($14, $15)";
        if runs.is_empty() {
            return Ok(Accepted::default());
        }
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        let workflows: Vec<&str> = runs.iter().map(|r| r.workflow.as_str()).collect();
        let versions: Vec<&str> = runs.iter().map(|r| r.version.as_str()).collect();
        let notify = self.notify_due();
        let mut insert = sqlx::query(if notify { INSERT_AND_NOTIFY } else { INSERT })
            .bind(&event.id)
            .bind(timestamp(event.received_at))
            .bind(&event.method)
            .bind(&event.path)
            .bind(to_text(&event.params))
            .bind(to_text(&event.query))
            .bind(to_text(&event.headers))
            .bind(to_text(&event.body))
            .bind(event.raw.as_slice())
            .bind(&ids)
            .bind(&workflows)
            .bind(&versions)
            .bind(triggered_by(event));
        if notify {
            insert = insert.bind(CHANNEL).bind(Wakeup::RunsQueued.as_str());
        }
        insert.execute(&self.pool).await.map_err(write_error)?;
        Ok(Accepted {
            claimed: false,
            created: runs.iter().map(|r| r.id.clone()).collect(),
            duplicate_of: Vec::new(),
            superseded: Vec::new(),
        })
    }

    pub async fn claim(
        &self,
        run_id: &str,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // A queued run with a concurrency key starts only while its key has a free slot and no
        // older run with the key waits ahead of it; a run taken over (`running`) already holds
        // its slot. Counting and taking happen under the key's lock: two processes claiming
        // two runs of one key at once would both see the slot free.
        if let Some(cap) = self.max_running {
            return self.claim_capped(run_id, owner, until, cap).await;
        }
        let claim = |statement: &'static str| {
            sqlx::query(statement)
                .bind(run_id)
                .bind(timestamp(Utc::now()))
                .bind(owner)
                .bind(timestamp(until))
        };
        // Most runs have no key: one statement, which takes nothing from a keyed run.
        let unkeyed = claim(CLAIM_UNKEYED)
            .fetch_optional(&self.pool)
            .await
            .map_err(write_error)?;
        if unkeyed.is_some() {
            return Ok(true);
        }
        let key = sqlx::query("SELECT workflow, concurrency_key FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(write_error)?;
        let Some(key) = key else {
            return Ok(false);
        };
        let workflow: String = get(&key, "workflow")?;
        let Some(key) = get::<Option<String>>(&key, "concurrency_key")? else {
            return Ok(false);
        };
        let mut tx = self.transaction().await?;
        lock_concurrency_key(&mut tx, &workflow, &key).await?;
        let claimed = claim(CLAIM_KEYED)
            .fetch_optional(&mut *tx)
            .await
            .map_err(write_error)?;
        tx.commit().await.map_err(write_error)?;
        Ok(claimed.is_some())
    }

    /// `claim` under the store's cap: in one transaction holding the cap's lock, count the
    /// runs `running` and take this one only while fewer than `cap` are. A run taken over
    /// (`running` with a lease that ended) was counted all along: it is taken whatever the
    /// count, so processes at the cap still finish the runs of one that died.
    async fn claim_capped(
        &self,
        run_id: &str,
        owner: &str,
        until: DateTime<Utc>,
        cap: u32,
    ) -> Result<bool, StoreError> {
        let mut tx = self.transaction().await?;
        lock_running_cap(&mut tx).await?;
        let row = sqlx::query("SELECT workflow, concurrency_key, status FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(write_error)?;
        let Some(row) = row else {
            return Ok(false);
        };
        let status: String = get(&row, "status")?;
        if status != "running" && running_count(&mut tx).await? >= i64::from(cap) {
            return Ok(false);
        }
        let workflow: String = get(&row, "workflow")?;
        let key: Option<String> = get(&row, "concurrency_key")?;
        if let Some(key) = &key {
            lock_concurrency_key(&mut tx, &workflow, key).await?;
        }
        let statement = if key.is_some() {
            CLAIM_KEYED
        } else {
            CLAIM_UNKEYED
        };
        let claimed = sqlx::query(statement)
            .bind(run_id)
            .bind(timestamp(Utc::now()))
            .bind(owner)
            .bind(timestamp(until))
            .fetch_optional(&mut *tx)
            .await
            .map_err(write_error)?;
        tx.commit().await.map_err(write_error)?;
        Ok(claimed.is_some())
    }

    /// Claim up to `limit` queued runs accepted before `queued_before`, oldest first, skipping
    /// those another process is claiming at this moment.
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
        const CLAIM_UNKEYED_QUEUED: &str = "UPDATE runs SET status = 'running',
             started_at = COALESCE(started_at, $1), lease_owner = $2, lease_until = $3
             WHERE id IN (SELECT id FROM runs WHERE status = 'queued' AND created_at < $4
                          AND concurrency_key IS NULL
                          ORDER BY created_at LIMIT $5 FOR UPDATE SKIP LOCKED)
             RETURNING id";
        let claim = |limit: usize| {
            sqlx::query(CLAIM_UNKEYED_QUEUED)
                .bind(timestamp(Utc::now()))
                .bind(owner)
                .bind(timestamp(until))
                .bind(timestamp(queued_before))
                .bind(limit as i64)
        };
        let Some(cap) = self.max_running else {
            let rows = claim(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(write_error)?;
            return self
                .claim_queued_keyed(ids(&rows)?, owner, until, queued_before, limit)
                .await;
        };
        // Under the cap: the oldest queued runs, keyed or not, as many as it has room for now,
        // each claimed as `claim` does (counted and taken under the cap's lock). Unkeyed runs
        // first, as above, would keep a keyed run waiting as long as unkeyed ones arrive.
        let room = {
            let mut tx = self.transaction().await?;
            lock_running_cap(&mut tx).await?;
            let room = (i64::from(cap) - running_count(&mut tx).await?).max(0);
            tx.commit().await.map_err(write_error)?;
            limit.min(usize::try_from(room).unwrap_or(0))
        };
        if room == 0 {
            return Ok(Vec::new());
        }
        let oldest = sqlx::query(
            "SELECT id FROM (
                (SELECT id, created_at FROM runs
                 WHERE status = 'queued' AND concurrency_key IS NULL AND created_at < $1
                 ORDER BY created_at, id LIMIT $2)
                UNION ALL
                (SELECT id, created_at FROM (
                    SELECT id, created_at, concurrency_limit, row_number() OVER (
                        PARTITION BY workflow, concurrency_key ORDER BY created_at, id) AS place
                    FROM runs
                    WHERE status = 'queued' AND concurrency_key IS NOT NULL AND created_at < $1
                 ) AS ahead WHERE place <= concurrency_limit ORDER BY created_at, id LIMIT $2)
             ) AS oldest ORDER BY created_at, id LIMIT $2",
        )
        .bind(timestamp(queued_before))
        .bind(room as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(write_error)?;
        let mut taken = Vec::new();
        for id in ids(&oldest)? {
            if self.claim_capped(&id, owner, until, cap).await? {
                taken.push(id);
            }
        }
        Ok(taken)
    }

    /// After `claim_queued` took the unkeyed runs `taken`, the keyed ones up to `limit`.
    async fn claim_queued_keyed(
        &self,
        mut taken: Vec<String>,
        owner: &str,
        until: DateTime<Utc>,
        queued_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        if taken.len() >= limit {
            return Ok(taken);
        }
        // Runs with a concurrency key one by one, through the claim that keeps their limit:
        // of each key, the oldest `limit` queued runs, the only ones that may be free to start.
        let heads = sqlx::query(
            "SELECT id FROM (
                SELECT id, created_at, concurrency_limit, row_number() OVER (
                    PARTITION BY workflow, concurrency_key ORDER BY created_at, id) AS place
                FROM runs
                WHERE status = 'queued' AND concurrency_key IS NOT NULL AND created_at < $1
             ) AS ahead WHERE place <= concurrency_limit ORDER BY created_at, id LIMIT $2",
        )
        .bind(timestamp(queued_before))
        .bind((limit - taken.len()) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(write_error)?;
        for id in ids(&heads)? {
            if self.claim(&id, owner, until).await? {
                taken.push(id);
            }
        }
        Ok(taken)
    }

    pub async fn renew_leases(
        &self,
        owner: &str,
        run_ids: &[String],
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET lease_until = $3
             WHERE id = ANY($1) AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_ids)
        .bind(owner)
        .bind(timestamp(until))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(write_error)
    }

    pub async fn expired_leases(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE status = 'running' AND lease_until < $1 ORDER BY created_at",
        )
        .bind(timestamp(now))
        .fetch_all(&self.pool)
        .await
        .map_err(read_error)?;
        ids(&rows)
    }

    pub async fn step_finished(&self, run_id: &str, record: &StepRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO steps
             (run_id, idx, name, kind, status, filtered, input, output, error, started_at, duration_ms, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (run_id, idx) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
               status = EXCLUDED.status, filtered = EXCLUDED.filtered, input = EXCLUDED.input,
               output = EXCLUDED.output, error = EXCLUDED.error, started_at = EXCLUDED.started_at,
               duration_ms = EXCLUDED.duration_ms, attempts = EXCLUDED.attempts",
        )
        .bind(run_id)
        .bind(record.index as i32)
        .bind(&record.name)
        .bind(&record.kind)
        .bind(record.status.as_str())
        .bind(record.filtered)
        .bind(to_text(&record.input))
        .bind(to_text(&record.output))
        .bind(record.error.as_deref())
        .bind(timestamp(record.started_at))
        .bind(record.duration_ms)
        .bind(record.attempts as i32)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(write_error)
    }

    pub async fn run_finished(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET status = $2, error = $3, response = $4, finished_at = $5 WHERE id = $1",
        )
        .bind(run_id)
        .bind(status.as_str())
        .bind(error.as_deref())
        .bind(response.as_ref().map(to_text))
        .bind(timestamp(Utc::now()))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(write_error)
    }

    pub async fn run_retrying(
        &self,
        run_id: &str,
        error: Option<String>,
        due_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction().await?;
        sqlx::query("UPDATE runs SET status = 'retrying', error = $2, due_at = $3 WHERE id = $1")
            .bind(run_id)
            .bind(error.as_deref())
            .bind(timestamp(due_at))
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        // Every process looks at the new due time: the one that set it may be gone by then.
        notify(&mut tx, Wakeup::RetryScheduled).await?;
        tx.commit().await.map_err(write_error)
    }

    pub async fn claim_due_retries(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "UPDATE runs SET status = 'queued', due_at = NULL
             WHERE id IN (SELECT id FROM runs WHERE status = 'retrying' AND due_at <= $1
                          FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .bind(timestamp(now))
        .fetch_all(&self.pool)
        .await
        .map_err(write_error)?;
        ids(&rows)
    }

    pub async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MIN(due_at) AS due FROM runs WHERE status = 'retrying'")
            .fetch_one(&self.pool)
            .await
            .map_err(read_error)?;
        get::<Option<String>>(&row, "due")?
            .map(|t| parse_timestamp(&t))
            .transpose()
    }

    pub async fn replay(&self, run_id: &str, from_start: bool) -> Result<Replayed, StoreError> {
        let mut tx = self.transaction().await?;
        let row = sqlx::query("SELECT status, attempt FROM runs WHERE id = $1 FOR UPDATE")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(write_error)?;
        let Some(row) = row else {
            return Ok(Replayed::NotFound);
        };
        let status: String = get(&row, "status")?;
        let attempt: i32 = get(&row, "attempt")?;
        if !RunStatus::parse(&status).is_some_and(RunStatus::is_final) {
            return Ok(Replayed::NotFinished(status));
        }
        let forget_steps = if from_start {
            "DELETE FROM steps WHERE run_id = $1"
        } else {
            "DELETE FROM steps WHERE run_id = $1 AND idx >= COALESCE(
                (SELECT MIN(idx) FROM steps WHERE run_id = $1 AND status = 'failed'),
                (SELECT MAX(idx) + 1 FROM steps WHERE run_id = $1), 0)"
        };
        sqlx::query(forget_steps)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        sqlx::query(
            "UPDATE runs SET status = 'queued', attempt = $2, error = NULL, response = NULL,
             started_at = NULL, finished_at = NULL, due_at = NULL,
             lease_owner = NULL, lease_until = NULL WHERE id = $1",
        )
        .bind(run_id)
        .bind(attempt + 1)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        notify(&mut tx, Wakeup::RunsQueued).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(Replayed::Queued {
            attempt: (attempt + 1) as u32,
        })
    }

    pub async fn prune(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut tx = self.transaction().await?;
        // Every process prunes on its own schedule; one at a time is enough, and two deleting
        // the same rows could deadlock each other.
        let ours: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema()))")
                .bind(PRUNE_LOCK)
                .fetch_one(&mut *tx)
                .await
                .map_err(write_error)?;
        if !ours {
            return Ok(0);
        }
        let cutoff = timestamp(before);
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE status IN ('succeeded', 'failed', 'filtered', 'cancelled')
             AND finished_at < $1",
        )
        .bind(&cutoff)
        .fetch_all(&mut *tx)
        .await
        .map_err(write_error)?;
        let pruned = ids(&rows)?;
        for statement in [
            "DELETE FROM steps WHERE run_id = ANY($1)",
            "DELETE FROM runs WHERE id = ANY($1)",
        ] {
            sqlx::query(statement)
                .bind(&pruned)
                .execute(&mut *tx)
                .await
                .map_err(write_error)?;
        }
        sqlx::query(
            "DELETE FROM events WHERE received_at < $1
             AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.event_id = events.id)",
        )
        .bind(&cutoff)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        // Ticks are bookkeeping (a run keeps its own tick): a day of them covers any race to
        // fire one, and a workflow's latest stays, as it is where the scheduler resumes.
        sqlx::query(
            "DELETE FROM ticks WHERE tick_at < $1 AND tick_at <
             (SELECT max(t.tick_at) FROM ticks AS t WHERE t.workflow = ticks.workflow)",
        )
        .bind(timestamp(
            before.max(Utc::now() - chrono::Duration::days(1)),
        ))
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        sqlx::query("DELETE FROM dedupe WHERE expires_at < $1")
            .bind(timestamp(Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        tx.commit().await.map_err(write_error)?;
        Ok(pruned.len())
    }

    pub async fn save_definition(
        &self,
        version: &str,
        definition: Definition,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO definitions (version, name, path, source, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(&definition.name)
        .bind(&definition.path)
        .bind(&definition.source)
        .bind(timestamp(Utc::now()))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(write_error)
    }

    pub async fn definition(&self, version: &str) -> Result<Option<Definition>, StoreError> {
        let row = sqlx::query("SELECT name, path, source FROM definitions WHERE version = $1")
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(read_error)?;
        row.map(|r| {
            Ok(Definition {
                name: get(&r, "name")?,
                path: get(&r, "path")?,
                source: get(&r, "source")?,
            })
        })
        .transpose()
    }

    pub async fn unfinished_runs(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE status IN ('queued', 'running') ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(read_error)?;
        ids(&rows)
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        let limit = if filter.limit == 0 {
            50
        } else {
            filter.limit.min(1000)
        };
        // Only the conditions asked for, so the planner picks the matching listing index.
        let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT * FROM runs WHERE 1 = 1");
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
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?;
        rows.iter().map(run_from_row).collect()
    }

    pub async fn run(&self, id: &str) -> Result<Option<RunDetail>, StoreError> {
        let exact = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(read_error)?;
        let row = match exact {
            Some(row) => row,
            None => {
                // A prefix as a key range, so the index serves it (ids sort before '~').
                let rows = sqlx::query(
                    "SELECT * FROM runs WHERE id >= $1 AND id < $2 ORDER BY id LIMIT 2",
                )
                .bind(id)
                .bind(format!("{id}~"))
                .fetch_all(&self.pool)
                .await
                .map_err(read_error)?;
                match <[PgRow; 1]>::try_from(rows) {
                    Ok([one]) => one,
                    // None, or several: a prefix must name one run.
                    Err(_) => return Ok(None),
                }
            }
        };
        let run = run_from_row(&row)?;
        let event_row = sqlx::query("SELECT * FROM events WHERE id = $1")
            .bind(&run.event_id)
            .fetch_one(&self.pool)
            .await
            .map_err(read_error)?;
        let event = event_from_row(&event_row)?;
        let step_rows = sqlx::query("SELECT * FROM steps WHERE run_id = $1 ORDER BY idx")
            .bind(&run.id)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?;
        let steps = step_rows
            .iter()
            .map(step_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(RunDetail { run, event, steps }))
    }

    /// Queued runs sharing `run_id`'s workflow and concurrency key, oldest first.
    pub async fn queued_behind(&self, run_id: &str) -> Result<Vec<String>, StoreError> {
        // Only the oldest that can start, as many as the key has free slots: waking every queued
        // run on each end made a backlog of n runs cost n claims per finished run.
        let rows = sqlx::query(
            "WITH ended AS (
                SELECT workflow, concurrency_key AS key, COALESCE(concurrency_limit, 1) AS slots
                FROM runs WHERE id = $1 AND concurrency_key IS NOT NULL
             ), free AS (
                SELECT ended.*, GREATEST(ended.slots - (
                    SELECT count(*) FROM runs
                    WHERE runs.workflow = ended.workflow AND runs.concurrency_key = ended.key
                      AND runs.status IN ('running', 'retrying') AND runs.id <> $1
                ), 0) AS free
                FROM ended
             )
             SELECT behind.id FROM free
             JOIN LATERAL (
                SELECT id, created_at FROM runs
                WHERE runs.workflow = free.workflow AND runs.concurrency_key = free.key
                  AND runs.status = 'queued' AND runs.id <> $1
                ORDER BY created_at, id LIMIT free.free
             ) AS behind ON true
             ORDER BY behind.created_at, behind.id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(read_error)?;
        ids(&rows)
    }

    /// Whether the database answers, soon: a readiness probe must not wait out an outage.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(&self.pool)).await
        {
            Ok(answered) => answered.map(|_| ()).map_err(read_error),
            Err(_) => Err(StoreError::Read(
                format!(
                    "the database did not answer within {}s",
                    PING_TIMEOUT.as_secs()
                )
                .into(),
            )),
        }
    }
}

/// Record `(workflow, tick)`; false when it was recorded already (by any process).
async fn record_tick(
    conn: &mut PgConnection,
    workflow: &str,
    tick: DateTime<Utc>,
    event_id: Option<&str>,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO ticks (workflow, tick_at, event_id, recorded_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (workflow, tick_at) DO NOTHING",
    )
    .bind(workflow)
    .bind(timestamp(tick))
    .bind(event_id)
    .bind(timestamp(Utc::now()))
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    Ok(inserted.rows_affected() > 0)
}

/// How an event came, as stored: nothing for a webhook (as for the events stored before
/// triggers were recorded), JSON for a schedule or a manual start.
fn triggered_by(event: &Event) -> Option<String> {
    (event.trigger != Trigger::Webhook).then(|| to_text(&event.trigger))
}

/// Hold the lock of the cap on runs `running` (this schema's) until the transaction ends.
async fn lock_running_cap(tx: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(RUNNING_CAP_LOCK)
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(write_error)
}

/// The runs `running` now, whether their leases are live or ended: a run whose owner died
/// keeps its place until another process takes it over and ends it.
async fn running_count(tx: &mut PgConnection) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT count(*) FROM runs WHERE status = 'running'")
        .fetch_one(&mut *tx)
        .await
        .map_err(write_error)
}

/// Hold the lock of a concurrency key until the transaction ends.
async fn lock_concurrency_key(
    tx: &mut PgConnection,
    workflow: &str,
    key: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
        .bind(workflow)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(write_error)
}

/// Apply a new run's concurrency mode before it is inserted (under the key's lock):
/// `cancel_previous` cancels the key's runs still queued that never started; `skip` answers the
/// reason the new run is not run when `limit` runs with the key are unfinished.
async fn admit(
    tx: &mut PgConnection,
    run: &NewRun,
    rule: &RunConcurrency,
    now: &str,
    superseded: &mut Vec<String>,
) -> Result<Option<String>, StoreError> {
    match rule.mode {
        ConcurrencyMode::Queue => Ok(None),
        ConcurrencyMode::CancelPrevious => {
            let cancelled: Vec<String> = sqlx::query_scalar(
                "UPDATE runs SET status = 'cancelled', finished_at = $4, error = $5
                 WHERE workflow = $1 AND concurrency_key = $2 AND status = 'queued'
                 AND started_at IS NULL AND id <> $3
                 RETURNING id",
            )
            .bind(&run.workflow)
            .bind(&rule.key)
            .bind(&run.id)
            .bind(now)
            .bind(format!(
                "cancelled: superseded by run {} with concurrency key '{}'",
                run.id, rule.key
            ))
            .fetch_all(&mut *tx)
            .await
            .map_err(write_error)?;
            superseded.extend(cancelled);
            Ok(None)
        }
        ConcurrencyMode::Skip => {
            let busy: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM runs WHERE workflow = $1 AND concurrency_key = $2
                 AND status IN ('queued', 'running', 'retrying')",
            )
            .bind(&run.workflow)
            .bind(&rule.key)
            .fetch_one(&mut *tx)
            .await
            .map_err(write_error)?;
            Ok((busy >= i64::from(rule.limit)).then(|| {
                format!(
                    "skipped: {busy} run(s) with concurrency key '{}' already in progress (limit {})",
                    rule.key, rule.limit
                )
            }))
        }
    }
}

/// Apply the migrations this database lacks, one process at a time.
async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply_migrations(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    unlocked.map(|_| ())
}

async fn apply_migrations(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS hookflow_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *conn)
    .await?;
    let done: Vec<i32> = sqlx::query_scalar("SELECT version FROM hookflow_migrations")
        .fetch_all(&mut *conn)
        .await?;
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO hookflow_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        info!(version, "applied a store migration");
    }
    Ok(())
}

/// Listen for wake-ups from every process (this one included) and hand them to the worker.
/// The connection comes back by itself after an outage; wake-ups sent meanwhile are lost, and
/// the worker's periodic look at the store covers them.
async fn listen(options: PgConnectOptions, wakeups: broadcast::Sender<Wakeup>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let listening = async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(options.clone());
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listening {
            Ok(listener) => listener,
            Err(err) => {
                warn!(error = %err, "cannot listen for store wake-ups; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    if let Some(wakeup) = Wakeup::parse(notification.payload()) {
                        // No receiver yet (or any more) is fine: nobody is idle then.
                        let _ = wakeups.send(wakeup);
                    }
                }
                Err(err) => {
                    warn!(error = %err, "store wake-ups interrupted; listening again");
                    // Whatever was queued meanwhile is worth a look.
                    let _ = wakeups.send(Wakeup::RunsQueued);
                    tokio::time::sleep(backoff).await;
                    break;
                }
            }
        }
    }
}

async fn notify(tx: &mut PgConnection, wakeup: Wakeup) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(wakeup.as_str())
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(write_error)
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

fn read_error(e: sqlx::Error) -> StoreError {
    StoreError::Read(e.into())
}

fn write_error(e: sqlx::Error) -> StoreError {
    StoreError::Write(e.into())
}

fn to_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn ids(rows: &[PgRow]) -> Result<Vec<String>, StoreError> {
    rows.iter().map(|r| get::<String>(r, "id")).collect()
}

fn get<T>(row: &PgRow, column: &str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(read_error)
}

/// PostgreSQL's integers in this schema are `INTEGER` (32 bits).
impl Columns for PgRow {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        get(self, column)
    }
    fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        get(self, column)
    }
    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        get::<i32>(self, column).map(i64::from)
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

impl super::StoreBackend for PostgresStore {
    fn accept<'a>(
        &'a self,
        event: Arc<Event>,
        runs: &'a [NewRun],
    ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
        Box::pin(PostgresStore::accept(self, event, runs))
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
        Box::pin(PostgresStore::next_retry_due(self))
    }

    fn replay<'a>(
        &'a self,
        run_id: &'a str,
        from_start: bool,
    ) -> BoxFuture<'a, Result<Replayed, StoreError>> {
        Box::pin(PostgresStore::replay(self, run_id, from_start))
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
        Box::pin(PostgresStore::definition(self, version))
    }

    fn unfinished_runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(PostgresStore::unfinished_runs(self))
    }

    fn list_runs<'a>(
        &'a self,
        filter: &'a RunFilter,
    ) -> BoxFuture<'a, Result<Vec<RunSummary>, StoreError>> {
        Box::pin(PostgresStore::list_runs(self, filter))
    }

    fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDetail>, StoreError>> {
        Box::pin(PostgresStore::run(self, id))
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
        Box::pin(PostgresStore::last_tick(self, workflow))
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

    fn shared(&self) -> bool {
        true
    }

    fn wakeups(&self) -> broadcast::Receiver<Wakeup> {
        self.wakeups.subscribe()
    }
}
