//! The SQLite store's reads, from its pool of read-only connections: they never wait for the
//! writer.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use crate::store::rows::{Columns, event_from_row, run_from_row, step_from_row};
use crate::store::{
    Definition, RunDetail, RunFilter, RunSummary, StoreError, parse_timestamp, timestamp,
};

/// When the earliest waiting retry is due.
pub(super) async fn next_retry_due(
    readers: &SqlitePool,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = sqlx::query("SELECT MIN(due_at) AS due FROM runs WHERE status = 'retrying'")
        .fetch_one(readers)
        .await
        .map_err(read_error)?;
    get::<Option<String>>(&row, "due")?
        .map(|t| parse_timestamp(&t))
        .transpose()
}

/// Runs executing under a lease that ended: their owner stopped renewing.
pub(super) async fn expired_leases(
    readers: &SqlitePool,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        // A NULL lease was released at start (its process is gone): ended.
        "SELECT id FROM runs WHERE status = 'running'
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY created_at",
    )
    .bind(timestamp(now))
    .fetch_all(readers)
    .await
    .map_err(read_error)?;
    ids(&rows).map_err(read_error)
}

pub(super) async fn definition(
    readers: &SqlitePool,
    version: &str,
) -> Result<Option<Definition>, StoreError> {
    let row = sqlx::query("SELECT name, path, source FROM definitions WHERE version = $1")
        .bind(version)
        .fetch_optional(readers)
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
pub(super) async fn unfinished_runs(readers: &SqlitePool) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM runs WHERE status IN ('queued', 'running') ORDER BY created_at, id",
    )
    .fetch_all(readers)
    .await
    .map_err(read_error)?;
    ids(&rows).map_err(read_error)
}

pub(super) async fn list_runs(
    readers: &SqlitePool,
    filter: &RunFilter,
) -> Result<Vec<RunSummary>, StoreError> {
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
    let rows = query.build().fetch_all(readers).await.map_err(read_error)?;
    rows.iter().map(run_from_row).collect()
}

/// A run by id, or by a unique prefix of its id (ids are long to type).
pub(super) async fn run(readers: &SqlitePool, id: &str) -> Result<Option<RunDetail>, StoreError> {
    // The exact id is a primary-key lookup: the worker loads runs this way on every resume.
    let exact = sqlx::query("SELECT * FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(readers)
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
                .fetch_all(readers)
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
        .fetch_one(readers)
        .await
        .map_err(read_error)?;
    let event = event_from_row(&event_row)?;
    let step_rows = sqlx::query("SELECT * FROM steps WHERE run_id = $1 ORDER BY idx")
        .bind(&run.id)
        .fetch_all(readers)
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
pub(super) async fn queued_behind(
    readers: &SqlitePool,
    run_id: &str,
) -> Result<Vec<String>, StoreError> {
    // The key first, then index ranges on (workflow, key, status): a join lets the
    // planner walk every queued run instead, once per finished run, while a backlog waits.
    let ended = sqlx::query(
        "SELECT workflow, concurrency_key, concurrency_limit FROM runs
         WHERE id = $1 AND concurrency_key IS NOT NULL",
    )
    .bind(run_id)
    .fetch_optional(readers)
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
    .fetch_one(readers)
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
    .fetch_all(readers)
    .await
    .map_err(read_error)?;
    ids(&rows).map_err(read_error)
}

/// The latest tick recorded for `workflow`.
pub(super) async fn last_tick(
    readers: &SqlitePool,
    workflow: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = sqlx::query("SELECT MAX(tick_at) AS tick FROM ticks WHERE workflow = $1")
        .bind(workflow)
        .fetch_one(readers)
        .await
        .map_err(read_error)?;
    get::<Option<String>>(&row, "tick")?
        .map(|t| parse_timestamp(&t))
        .transpose()
}

/// How many runs wait in the queue: a range of the `(status, created_at, id)` listing index.
pub(super) async fn count_queued(readers: &SqlitePool) -> Result<usize, StoreError> {
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'queued'")
        .fetch_one(readers)
        .await
        .map_err(read_error)?;
    Ok(usize::try_from(queued).unwrap_or(0))
}

pub(super) fn read_error(e: sqlx::Error) -> StoreError {
    StoreError::Read(e.into())
}

fn get<T>(row: &SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(read_error)
}

/// The `id` column of each row.
pub(super) fn ids(rows: &[SqliteRow]) -> Result<Vec<String>, sqlx::Error> {
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
