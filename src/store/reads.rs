//! The reads both backends make the same way: the same SQL text on SQLite and PostgreSQL, run
//! through a function generic over the driver, so the two cannot drift apart in what a listing
//! or a run's detail holds.

use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use super::rows::{Columns, event_from_row, run_from_row, step_from_row};
use super::{Definition, RunDetail, RunFilter, RunSummary, StoreError, parse_timestamp, timestamp};

fn read_error(error: sqlx::Error) -> StoreError {
    StoreError::Read(error.into())
}

/// Runs newest first, filtered and paged as `filter` asks.
pub(super) async fn list_runs<DB>(
    pool: &Pool<DB>,
    filter: &RunFilter,
) -> Result<Vec<RunSummary>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let limit = if filter.limit == 0 {
        50
    } else {
        filter.limit.min(1000)
    };
    // Only the conditions asked for: `($1 IS NULL OR workflow = $1)` would hide the indexes
    // from the planner and scan every run.
    let mut query = sqlx::QueryBuilder::<DB>::new("SELECT * FROM runs WHERE 1 = 1");
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
    let rows = query.build().fetch_all(pool).await.map_err(read_error)?;
    rows.iter().map(run_from_row).collect()
}

/// A run by id, or by a unique prefix of its id (ids are long to type), with its event and
/// steps.
pub(super) async fn run<DB>(pool: &Pool<DB>, id: &str) -> Result<Option<RunDetail>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    // The exact id is a primary-key lookup: the worker loads runs this way on every resume.
    let exact = sqlx::query::<DB>("SELECT * FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(read_error)?;
    let row = match exact {
        Some(row) => row,
        None => {
            // A prefix as a key range, so the index serves it too. Ids are lower-case hex and
            // dashes, all sorting before '~'.
            let mut rows = sqlx::query::<DB>(
                "SELECT * FROM runs WHERE id >= $1 AND id < $2 ORDER BY id LIMIT 2",
            )
            .bind(id)
            .bind(format!("{id}~"))
            .fetch_all(pool)
            .await
            .map_err(read_error)?;
            // None, or several: a prefix must name one run.
            match (rows.pop(), rows.is_empty()) {
                (Some(one), true) => one,
                _ => return Ok(None),
            }
        }
    };
    let run = run_from_row(&row)?;
    let event_row = sqlx::query::<DB>("SELECT * FROM events WHERE id = $1")
        .bind(run.event_id.as_str())
        .fetch_one(pool)
        .await
        .map_err(read_error)?;
    let event = event_from_row(&event_row)?;
    let step_rows = sqlx::query::<DB>("SELECT * FROM steps WHERE run_id = $1 ORDER BY idx")
        .bind(run.id.as_str())
        .fetch_all(pool)
        .await
        .map_err(read_error)?;
    let steps = step_rows
        .iter()
        .map(step_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(RunDetail { run, event, steps }))
}

/// When the earliest waiting retry is due.
pub(super) async fn next_retry_due<DB>(pool: &Pool<DB>) -> Result<Option<DateTime<Utc>>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let row = sqlx::query::<DB>("SELECT MIN(due_at) AS due FROM runs WHERE status = 'retrying'")
        .fetch_one(pool)
        .await
        .map_err(read_error)?;
    row.maybe_text("due")?
        .map(|t| parse_timestamp(&t))
        .transpose()
}

/// The latest tick recorded for `workflow`.
pub(super) async fn last_tick<DB>(
    pool: &Pool<DB>,
    workflow: &str,
) -> Result<Option<DateTime<Utc>>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>("SELECT MAX(tick_at) AS tick FROM ticks WHERE workflow = $1")
        .bind(workflow)
        .fetch_one(pool)
        .await
        .map_err(read_error)?;
    row.maybe_text("tick")?
        .map(|t| parse_timestamp(&t))
        .transpose()
}

/// The definition a run was started with.
pub(super) async fn definition<DB>(
    pool: &Pool<DB>,
    version: &str,
) -> Result<Option<Definition>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let row = sqlx::query::<DB>("SELECT name, path, source FROM definitions WHERE version = $1")
        .bind(version)
        .fetch_optional(pool)
        .await
        .map_err(read_error)?;
    row.map(|r| {
        Ok(Definition {
            name: r.text("name")?,
            path: r.text("path")?,
            source: r.text("source")?,
        })
    })
    .transpose()
}

/// Runs that were accepted but not finished: queued, or interrupted while running.
pub(super) async fn unfinished_runs<DB>(pool: &Pool<DB>) -> Result<Vec<String>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let rows = sqlx::query::<DB>(
        "SELECT id FROM runs WHERE status IN ('queued', 'running') ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
    .map_err(read_error)?;
    rows.iter().map(|row| row.text("id")).collect()
}
