//! Claims on a PostgreSQL store shared by several processes: a run is taken under row locks and
//! advisory locks (its concurrency key's, the store's running cap's), with a lease renewed while
//! it runs.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::postgres::PgConnectOptions;

use super::PostgresStore;
use super::batch::Batched;
use super::reads::{get, ids, write_error};
use crate::store::{StoreError, Wakeup, timestamp};

/// Held, with the schema's hash, by a process claiming runs under `max_running`: counting the
/// runs `running` and taking one more is one step across every process.
const RUNNING_CAP_LOCK: i32 = 0x666c_6f77; // "flow"

/// Take one run with no concurrency key: queued (its workflow not paused), or running with a
/// lease that ended.
const CLAIM_UNKEYED: &str = concat!(
    "UPDATE runs SET status = 'running',
     started_at = COALESCE(started_at, $2), lease_owner = $3, lease_until = $4
     WHERE id = $1 AND (status = 'queued' OR (status = 'running'
       AND (lease_until IS NULL OR lease_until < $2)))
     AND (status = 'running' OR ",
    not_paused!("runs"),
    ")
     AND concurrency_key IS NULL
     RETURNING id"
);

/// Take one run with a concurrency key, while the key has a free slot (under the key's lock).
const CLAIM_KEYED: &str = concat!(
    "UPDATE runs SET status = 'running',
     started_at = COALESCE(started_at, $2), lease_owner = $3, lease_until = $4
     WHERE id = $1 AND (status = 'queued' OR (status = 'running'
       AND (lease_until IS NULL OR lease_until < $2)))
     AND (status = 'running' OR ",
    not_paused!("runs"),
    ")
     AND (status = 'running' OR (
       SELECT count(*) FROM runs AS other
       WHERE other.workflow = runs.workflow
         AND other.concurrency_key = runs.concurrency_key
         AND other.id <> runs.id
         AND (other.status IN ('running', 'retrying')
           OR (other.status = 'queued' AND (other.created_at < runs.created_at
             OR (other.created_at = runs.created_at AND other.id < runs.id))))
     ) < concurrency_limit)
     RETURNING id"
);

impl PostgresStore {
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
        // Most runs have no key: taken in the next shared commit, which takes nothing from a
        // keyed run.
        let unkeyed = self
            .batcher
            .commit(Batched::Claim {
                run_id: run_id.to_owned(),
                owner: owner.to_owned(),
                until,
            })
            .await?;
        if unkeyed {
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
    pub(super) async fn claim_capped(
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
            // Ended now: an abandoned transaction would hold the cap's lock until its
            // connection is used again, stalling every other claim meanwhile.
            tx.rollback().await.map_err(write_error)?;
            return Ok(false);
        };
        let status: String = get(&row, "status")?;
        if status != "running" && running_count(&mut tx).await? >= i64::from(cap) {
            tx.rollback().await.map_err(write_error)?;
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
                          AND concurrency_key IS NULL AND NOT EXISTS (
                            SELECT 1 FROM paused_workflows AS paused
                            WHERE paused.workflow = runs.workflow)
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
            let rows = {
                let mut queue = self.queue.lock().await;
                let conn = queue.get().await.map_err(write_error)?;
                let rows = claim(limit).fetch_all(&mut *conn).await;
                if rows.is_err() {
                    queue.forget();
                }
                rows.map_err(write_error)?
            };
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
                   AND NOT EXISTS (SELECT 1 FROM paused_workflows AS paused WHERE paused.workflow = runs.workflow)
                 ORDER BY created_at, id LIMIT $2)
                UNION ALL
                (SELECT id, created_at FROM (
                    SELECT id, created_at, concurrency_limit, row_number() OVER (
                        PARTITION BY workflow, concurrency_key ORDER BY created_at, id) AS place
                    FROM runs
                    WHERE status = 'queued' AND concurrency_key IS NOT NULL AND created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM paused_workflows AS paused WHERE paused.workflow = runs.workflow)
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
    pub(super) async fn claim_queued_keyed(
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
                  AND NOT EXISTS (SELECT 1 FROM paused_workflows AS paused WHERE paused.workflow = runs.workflow)
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

    /// Queue again the runs `owner` holds among `run_ids`, and wake the other processes. A run
    /// with no step on record had not started: its start time goes too.
    pub async fn release(&self, owner: &str, run_ids: &[String]) -> Result<usize, StoreError> {
        if run_ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.transaction().await?;
        let released = sqlx::query(
            "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_until = NULL,
               started_at = CASE WHEN EXISTS (SELECT 1 FROM steps WHERE steps.run_id = runs.id)
                 THEN started_at END
             WHERE id = ANY($1) AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_ids)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?
        .rows_affected();
        if released > 0 {
            super::notify::notify(&mut tx, Wakeup::RunsQueued).await?;
        }
        tx.commit().await.map_err(write_error)?;
        Ok(usize::try_from(released).unwrap_or(usize::MAX))
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
}

/// Hold the lock of the cap on runs `running` (this schema's) until the transaction ends.
pub(super) async fn lock_running_cap(tx: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(RUNNING_CAP_LOCK)
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(write_error)
}

/// The runs `running` now, whether their leases are live or ended: a run whose owner died
/// keeps its place until another process takes it over and ends it.
pub(super) async fn running_count(tx: &mut PgConnection) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT count(*) FROM runs WHERE status = 'running'")
        .fetch_one(&mut *tx)
        .await
        .map_err(write_error)
}

/// Hold the lock of a concurrency key until the transaction ends.
pub(super) async fn lock_concurrency_key(
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

/// The connection queued runs are claimed on: the oldest queued runs, read in the order of
/// `runs_list_by_status` and cut at the claim's size, without a bitmap scan or a sort. With
/// the statistics of a day's partition taken while its queue was short (or never), the planner
/// otherwise reads every queued run (and every dead entry a claim left) and sorts them for
/// each claim: 25 ms with 7,000 queued against 0.5 ms, measured in the stores bench. The
/// settings are this connection's alone; the pool's reads keep the planner's choice. Planned
/// once, as the batches are (`batch::planned_once_by_index`).
pub(super) fn queue_options(options: PgConnectOptions) -> PgConnectOptions {
    super::batch::planned_once_by_index(options).options([("enable_sort", "off")])
}
