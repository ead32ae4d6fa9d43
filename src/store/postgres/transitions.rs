//! The PostgreSQL store's writes, each in its own transaction: accepting events (with dedupe
//! and concurrency rules), step records, run ends, retries, replays, pruning and schedule ticks.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Row};

use super::PostgresStore;
use super::batch::{Batched, settled};
use super::claims::lock_concurrency_key;
use super::notify::notify;
use super::partitions;
use super::reads::{get, ids, write_error};
use crate::run::{Event, NewRun, RunStatus, StepRecord, SyncResponse, Trigger};
use crate::store::writes::{admit, record_tick};
use crate::store::{
    Accepted, Definition, Lease, ReplayOptions, Replayed, Settling, StoreError, Wakeup, timestamp,
};

/// Held by the process pruning old runs, with the schema's hash: stores in other schemas of the
/// same database prune on their own.
const PRUNE_LOCK: i32 = 0x686f_6f6b; // "hook"

impl PostgresStore {
    pub async fn accept(&self, event: Arc<Event>, runs: &[NewRun]) -> Result<Accepted, StoreError> {
        if runs.iter().all(is_plain) {
            return self.accept_plain(event, runs, None).await;
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
        .bind(crate::store::rows::stored_body(event))
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

    /// Runs without dedupe keys or concurrency rules have nothing to decide: the event and its
    /// runs share a commit with the other writes sent meanwhile.
    async fn accept_plain(
        &self,
        event: Arc<Event>,
        runs: &[NewRun],
        lease: Option<Lease>,
    ) -> Result<Accepted, StoreError> {
        if runs.is_empty() {
            return Ok(Accepted::default());
        }
        let claimed = self
            .batcher
            .commit(Batched::Accept {
                event,
                runs: runs.to_vec(),
                lease,
            })
            .await?;
        Ok(Accepted {
            claimed,
            created: runs.iter().map(|r| r.id.clone()).collect(),
            duplicate_of: Vec::new(),
            superseded: Vec::new(),
        })
    }

    /// As `accept`, with plain runs claimed for `lease` in the same commit; runs under a
    /// store-wide cap, or with a dedupe key or concurrency rule, are only queued.
    pub async fn accept_claimed(
        &self,
        event: Arc<Event>,
        runs: &[NewRun],
        lease: Lease,
    ) -> Result<Accepted, StoreError> {
        if self.max_running.is_none() && runs.iter().all(is_plain) {
            return self.accept_plain(event, runs, Some(lease)).await;
        }
        self.accept(event, runs).await
    }

    pub async fn step_finished(&self, run_id: &str, record: &StepRecord) -> Result<(), StoreError> {
        self.batcher.commit(step(run_id, record)).await.map(|_| ())
    }

    /// The record is on its way in the next shared commit; the answer ends with that commit.
    pub async fn step_noted(
        &self,
        run_id: &str,
        record: &StepRecord,
    ) -> Result<Settling, StoreError> {
        let answer = self.batcher.send(step(run_id, record)).await?;
        Ok(Box::pin(settled(answer)))
    }

    pub async fn run_finished(
        &self,
        run_id: &str,
        status: RunStatus,
        error: Option<String>,
        response: Option<SyncResponse>,
    ) -> Result<(), StoreError> {
        self.batcher
            .commit(Batched::End {
                run_id: run_id.to_owned(),
                status,
                error,
                response,
            })
            .await
            .map(|_| ())
    }

    pub async fn run_retrying(
        &self,
        run_id: &str,
        error: Option<String>,
        due_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction().await?;
        sqlx::query(crate::store::RUN_RETRYING)
            .bind(run_id)
            .bind(error.as_deref())
            .bind(timestamp(due_at))
            .bind(timestamp(Utc::now()))
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
             lease_owner = NULL, lease_until = NULL, cancelled_by = NULL, cancel_requested = NULL,
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
        let cutoff = timestamp(before);
        let dropped = {
            let mut conn = self.pool.acquire().await.map_err(write_error)?;
            // Days that cannot be dropped now (their locks were busy) are pruned row by row.
            partitions::maintain_days(&mut conn, PRUNE_LOCK, before, &cutoff)
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "cannot drop old days of runs; pruning row by row");
                    0
                })
        };
        Ok(dropped + self.prune_rows(before, &cutoff).await?)
    }

    /// The finished runs past `cutoff` in days that could not be dropped whole (the default
    /// partitions, and days with a run still unfinished), row by row.
    async fn prune_rows(&self, before: DateTime<Utc>, cutoff: &str) -> Result<usize, StoreError> {
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
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE status IN ('succeeded', 'failed', 'filtered', 'cancelled')
             AND finished_at < $1",
        )
        .bind(cutoff)
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
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        // A bucket whose TAT has passed is as good as none (a take starts from now).
        sqlx::query("DELETE FROM rate_buckets WHERE tat_us < $1")
            .bind(crate::run::rate::to_micros(
                Utc::now() - chrono::Duration::minutes(1),
            ))
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

/// A run with no dedupe key and no concurrency rule: accepting it reads nothing first.
fn is_plain(run: &NewRun) -> bool {
    run.dedupe.is_none() && run.concurrency.is_none()
}

fn step(run_id: &str, record: &StepRecord) -> Batched {
    Batched::Step {
        run_id: run_id.to_owned(),
        record: Box::new(record.clone()),
    }
}

/// How an event came, as stored: nothing for a webhook (as for the events stored before
/// triggers were recorded), JSON for a schedule or a manual start.
pub(super) fn triggered_by(event: &Event) -> Option<String> {
    (event.trigger != Trigger::Webhook).then(|| to_text(&event.trigger))
}

pub(super) fn to_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}
