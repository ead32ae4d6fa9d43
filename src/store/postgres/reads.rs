//! The PostgreSQL store's reads, from the shared pool.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use std::collections::HashMap;

use super::PostgresStore;
use crate::run::StepRecord;
use crate::store::rows::{Columns, event_from_row, run_from_row, step_from_row};
use crate::store::{RunDetail, StoreError, timestamp};

/// How long readiness waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Runs by exact id with their events and steps: three reads whatever their number.
    pub async fn runs_by_id(&self, ids: &[String]) -> Result<Vec<RunDetail>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let runs = sqlx::query("SELECT * FROM runs WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // How many of the runs share each event (a fan-out): the last one takes it, the others
        // a copy, so an event of one run is parsed once and never copied.
        let mut uses: HashMap<String, usize> = HashMap::new();
        for run in &runs {
            *uses.entry(run.event_id.clone()).or_default() += 1;
        }
        let event_ids: Vec<&str> = uses.keys().map(String::as_str).collect();
        let mut events = HashMap::new();
        for row in sqlx::query("SELECT * FROM events WHERE id = ANY($1)")
            .bind(&event_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?
        {
            events.insert(row.text("id")?, event_from_row(&row)?);
        }
        let mut steps: HashMap<String, Vec<StepRecord>> = HashMap::new();
        for row in sqlx::query("SELECT * FROM steps WHERE run_id = ANY($1) ORDER BY run_id, idx")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(read_error)?
        {
            steps
                .entry(row.text("run_id")?)
                .or_default()
                .push(step_from_row(&row)?);
        }
        Ok(runs
            .into_iter()
            .filter_map(|run| {
                let left = uses.get_mut(&run.event_id)?;
                *left -= 1;
                let event = if *left == 0 {
                    events.remove(&run.event_id)?
                } else {
                    events.get(&run.event_id)?.clone()
                };
                let steps = steps.remove(&run.id).unwrap_or_default();
                Some(RunDetail { run, event, steps })
            })
            .collect())
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

pub(super) fn read_error(e: sqlx::Error) -> StoreError {
    StoreError::Read(e.into())
}

pub(super) fn write_error(e: sqlx::Error) -> StoreError {
    StoreError::Write(e.into())
}

pub(super) fn ids(rows: &[PgRow]) -> Result<Vec<String>, StoreError> {
    rows.iter().map(|r| get::<String>(r, "id")).collect()
}

pub(super) fn get<T>(row: &PgRow, column: &str) -> Result<T, StoreError>
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
    fn maybe_real(&self, column: &str) -> Result<Option<f64>, StoreError> {
        get(self, column)
    }
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        get(self, column)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        get(self, column)
    }
}
