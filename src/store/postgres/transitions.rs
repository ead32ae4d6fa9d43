//! The PostgreSQL store's writes, each in its own transaction: accepting events (with dedupe
//! and concurrency rules), step records, run ends, retries, replays, pruning and schedule ticks.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Row};

use super::PostgresStore;
use super::claims::lock_concurrency_key;
use super::notify::{CHANNEL, notify};
use super::reads::{get, ids, write_error};
use crate::run::{Event, NewRun, RunStatus, StepRecord, SyncResponse, Trigger};
use crate::store::rows::earlier_text;
use crate::store::writes::{admit, record_tick};
use crate::store::{Accepted, Definition, ReplayOptions, Replayed, StoreError, Wakeup, timestamp};

/// Held by the process pruning old runs, with the schema's hash: stores in other schemas of the
/// same database prune on their own.
const PRUNE_LOCK: i32 = 0x686f_6f6b; // "hook"

impl PostgresStore {
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
    pub(super) async fn accept_in(
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
            // The key is ours when it is new, its window ended, or the run holding it failed
            // or was cancelled (a sender's redelivery of a failed event starts it again). A
            // concurrent accept of the same key on another process waits on the row and then
            // sees it held.
            let taken = sqlx::query(
                "INSERT INTO dedupe (workflow, key, run_id, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workflow, key) DO UPDATE
                   SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at
                   WHERE dedupe.expires_at <= $5
                      OR EXISTS (SELECT 1 FROM runs WHERE runs.id = dedupe.run_id
                                 AND runs.status IN ('failed', 'cancelled'))
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
             triggered_by, trace_parent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .bind(event.trace.map(|t| t.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        let now = timestamp(Utc::now());
        for run in &created {
            let skipped = match &run.concurrency {
                Some(rule) => {
                    admit::<Postgres>(&mut *tx, run, rule, &now, &mut accepted.superseded)
                        .await
                        .map_err(write_error)?
                }
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
        let now = timestamp(Utc::now());
        if !record_tick::<Postgres>(&mut tx, workflow, tick, Some(&event.id), &now)
            .await
            .map_err(write_error)?
        {
            tx.rollback().await.map_err(write_error)?;
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
        let now = timestamp(Utc::now());
        record_tick::<Postgres>(&mut conn, workflow, tick, None, &now)
            .await
            .map_err(write_error)
    }

    /// Without dedupe keys there is nothing to decide: the event and its runs go in one
    /// statement, one round trip and one commit (the foreign key is checked at its end).
    pub(super) async fn accept_at_once(
        &self,
        event: &Event,
        runs: &[NewRun],
    ) -> Result<Accepted, StoreError> {
        const INSERT: &str = "WITH event AS (
                INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw,
                triggered_by, trace_parent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $13, $14)
            )
            INSERT INTO runs (id, event_id, workflow, version, status, created_at)
            SELECT id, $1, workflow, version, 'queued', $2
            FROM UNNEST($10::text[], $11::text[], $12::text[]) AS r(id, workflow, version)";
        const INSERT_AND_NOTIFY: &str = "WITH event AS (
                INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw,
                triggered_by, trace_parent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $13, $14)
            ), queued AS (
                INSERT INTO runs (id, event_id, workflow, version, status, created_at)
                SELECT id, $1, workflow, version, 'queued', $2
                FROM UNNEST($10::text[], $11::text[], $12::text[]) AS r(id, workflow, version)
                RETURNING id
            )
            SELECT (SELECT count(*) FROM queued), pg_notify($15, $16)";
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
            .bind(triggered_by(event))
            .bind(event.trace.map(|t| t.to_string()));
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

    pub async fn step_finished(&self, run_id: &str, record: &StepRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO steps
             (run_id, idx, name, kind, status, filtered, input, output, error, started_at, duration_ms, attempts, earlier)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (run_id, idx) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
               status = EXCLUDED.status, filtered = EXCLUDED.filtered, input = EXCLUDED.input,
               output = EXCLUDED.output, error = EXCLUDED.error, started_at = EXCLUDED.started_at,
               duration_ms = EXCLUDED.duration_ms, attempts = EXCLUDED.attempts,
               earlier = EXCLUDED.earlier",
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
        .bind(earlier_text(record))
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

    pub async fn replay(
        &self,
        run_id: &str,
        replay: &ReplayOptions,
    ) -> Result<Replayed, StoreError> {
        let mut tx = self.transaction().await?;
        let row = sqlx::query(
            "SELECT status, attempt, version, replayed_from_version FROM runs
             WHERE id = $1 FOR UPDATE",
        )
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(write_error)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(write_error)?;
            return Ok(Replayed::NotFound);
        };
        let status: String = get(&row, "status")?;
        let attempt: i32 = get(&row, "attempt")?;
        if !RunStatus::parse(&status).is_some_and(RunStatus::is_final) {
            // Ended now, not when the connection is next used: the row stays locked until then,
            // and the run's next claim would wait for it.
            tx.rollback().await.map_err(write_error)?;
            return Ok(Replayed::NotFinished(status));
        }
        let versions = replay.versions(get(&row, "version")?, get(&row, "replayed_from_version")?);
        let forget_steps = if replay.from_start {
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
             lease_owner = NULL, lease_until = NULL,
             version = $3, replayed_from_version = $4 WHERE id = $1",
        )
        .bind(run_id)
        .bind(attempt + 1)
        .bind(&versions.version)
        .bind(&versions.replayed_from_version)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        notify(&mut tx, Wakeup::RunsQueued).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(Replayed::Queued {
            attempt: (attempt + 1) as u32,
            version: versions.version,
            replayed_from_version: versions.changed_from,
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
}

/// How an event came, as stored: nothing for a webhook (as for the events stored before
/// triggers were recorded), JSON for a schedule or a manual start.
fn triggered_by(event: &Event) -> Option<String> {
    (event.trigger != Trigger::Webhook).then(|| to_text(&event.trigger))
}

fn to_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}
