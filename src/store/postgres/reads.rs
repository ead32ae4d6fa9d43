//! The PostgreSQL store's reads, from the shared pool.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use crate::store::rows::{Columns, event_from_row, run_from_row, step_from_row};
use crate::store::{
    Definition, RunDetail, RunFilter, RunSummary, StoreError, parse_timestamp, timestamp,
};

/// How long readiness waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

impl PostgresStore {
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

    pub async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT MIN(due_at) AS due FROM runs WHERE status = 'retrying'")
            .fetch_one(&self.pool)
            .await
            .map_err(read_error)?;
        get::<Option<String>>(&row, "due")?
            .map(|t| parse_timestamp(&t))
            .transpose()
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
    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        get(self, column)
    }
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        get(self, column)
    }
}
