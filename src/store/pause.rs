//! Cancelling runs and pausing workflows, the same SQL on both backends: a run cancelled at
//! once or marked for its owner to stop, and the `paused_workflows` table claims read.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::rows::Columns;
use super::{CancelRequest, Cancelled, PauseRequest, PausedWorkflow, StoreError, parse_timestamp};
use crate::run::RunStatus;

/// Cancel `run_id` for `cancel` (see `StoreBackend::cancel_run`), in the caller's transaction.
pub(super) async fn cancel_run<DB>(
    conn: &mut DB::Connection,
    run_id: &str,
    cancel: &CancelRequest,
    now: &str,
) -> Result<Cancelled, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
{
    let message = cancel.message();
    // Waiting runs, and a running one whose owner stopped renewing its lease (gone), end now:
    // nobody holds them, and a claim only takes a `queued` or abandoned `running` run.
    let ended = sqlx::query::<DB>(
        "UPDATE runs SET status = 'cancelled', finished_at = $2, error = $3, cancelled_by = $4,
         due_at = NULL, lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND (status IN ('queued', 'retrying')
           OR (status = 'running' AND (lease_until IS NULL OR lease_until < $2)))
         RETURNING id",
    )
    .bind(run_id)
    .bind(now)
    .bind(message.as_str())
    .bind(cancel.by.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if ended.is_some() {
        return Ok(Cancelled::Ended);
    }
    let requested = sqlx::query::<DB>(
        "UPDATE runs SET cancel_requested = $2, cancelled_by = $3
         WHERE id = $1 AND status = 'running' RETURNING id",
    )
    .bind(run_id)
    .bind(message.as_str())
    .bind(cancel.by.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if requested.is_some() {
        return Ok(Cancelled::Requested);
    }
    let row = sqlx::query::<DB>("SELECT status FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(Cancelled::NotFound);
    };
    let status: String = row.try_get("status")?;
    Ok(Cancelled::Finished(
        RunStatus::parse(&status).unwrap_or(RunStatus::Cancelled),
    ))
}

/// Pause `workflow`; false when it was paused already.
pub(super) async fn pause<DB>(
    conn: &mut DB::Connection,
    workflow: &str,
    pause: &PauseRequest,
    now: &str,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
{
    let inserted = sqlx::query::<DB>(
        "INSERT INTO paused_workflows (workflow, paused_at, paused_by, reason)
         VALUES ($1, $2, $3, $4) ON CONFLICT (workflow) DO NOTHING RETURNING workflow",
    )
    .bind(workflow)
    .bind(now)
    .bind(pause.by.as_str())
    .bind(pause.reason.as_deref())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inserted.is_some())
}

/// Resume `workflow`; false when it was not paused.
pub(super) async fn resume<DB>(
    conn: &mut DB::Connection,
    workflow: &str,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    let deleted =
        sqlx::query::<DB>("DELETE FROM paused_workflows WHERE workflow = $1 RETURNING workflow")
            .bind(workflow)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(deleted.is_some())
}

/// Every paused workflow, by name.
pub(super) async fn paused_workflows<DB>(pool: &Pool<DB>) -> Result<Vec<PausedWorkflow>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let rows = sqlx::query::<DB>(
        "SELECT workflow, paused_at, paused_by, reason FROM paused_workflows ORDER BY workflow",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| StoreError::Read(e.into()))?;
    rows.iter()
        .map(|row| {
            Ok(PausedWorkflow {
                workflow: row.text("workflow")?,
                since: parse_timestamp(&row.text("paused_at")?)?,
                by: row.text("paused_by")?,
                reason: row.maybe_text("reason")?,
            })
        })
        .collect()
}

/// Of `run_ids`, those whose cancellation was asked, with the error each ends with.
pub(super) async fn cancel_requests<DB>(
    pool: &Pool<DB>,
    run_ids: &[String],
) -> Result<Vec<(String, String)>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = sqlx::QueryBuilder::<DB>::new(
        "SELECT id, cancel_requested FROM runs WHERE cancel_requested IS NOT NULL AND id IN (",
    );
    let mut ids = query.separated(", ");
    for id in run_ids {
        ids.push_bind(id.clone());
    }
    query.push(")");
    let rows = query
        .build()
        .fetch_all(pool)
        .await
        .map_err(|e| StoreError::Read(e.into()))?;
    rows.iter()
        .map(|row| Ok((row.text("id")?, row.text("cancel_requested")?)))
        .collect()
}
