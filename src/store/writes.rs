//! The writes both backends make alike, inside the caller's transaction: the same SQL text on
//! SQLite and PostgreSQL, through a function generic over the driver.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::timestamp;
use crate::run::{ConcurrencyMode, NewRun, RunConcurrency};

/// Record `(workflow, tick)`; false when it was recorded already (by any process).
pub(super) async fn record_tick<DB>(
    conn: &mut DB::Connection,
    workflow: &str,
    tick: DateTime<Utc>,
    event_id: Option<&str>,
    now: &str,
) -> Result<bool, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
{
    let inserted = sqlx::query::<DB>(
        "INSERT INTO ticks (workflow, tick_at, event_id, recorded_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (workflow, tick_at) DO NOTHING RETURNING workflow",
    )
    .bind(workflow)
    .bind(timestamp(tick))
    .bind(event_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inserted.is_some())
}

/// Apply a new run's concurrency mode before it is inserted (PostgreSQL holds the key's lock):
/// `cancel_previous` cancels the key's runs still queued that never started; `skip` answers the
/// reason the new run is not run when `limit` runs with the key are unfinished.
pub(super) async fn admit<DB>(
    conn: &mut DB::Connection,
    run: &NewRun,
    rule: &RunConcurrency,
    now: &str,
    superseded: &mut Vec<String>,
) -> Result<Option<String>, sqlx::Error>
where
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'n> &'n str: ColumnIndex<DB::Row>,
{
    match rule.mode {
        ConcurrencyMode::Queue => Ok(None),
        ConcurrencyMode::CancelPrevious => {
            let cancelled = sqlx::query::<DB>(
                "UPDATE runs SET status = 'cancelled', finished_at = $4, error = $5
                 WHERE workflow = $1 AND concurrency_key = $2 AND status = 'queued'
                 AND started_at IS NULL AND id <> $3 RETURNING id",
            )
            .bind(run.workflow.as_str())
            .bind(rule.key.as_str())
            .bind(run.id.as_str())
            .bind(now)
            .bind(format!(
                "cancelled: superseded by run {} with concurrency key '{}'",
                run.id, rule.key
            ))
            .fetch_all(&mut *conn)
            .await?;
            for row in cancelled {
                superseded.push(row.try_get("id")?);
            }
            Ok(None)
        }
        ConcurrencyMode::Skip => {
            let busy: i64 = sqlx::query::<DB>(
                "SELECT COUNT(*) AS busy FROM runs WHERE workflow = $1 AND concurrency_key = $2
                 AND status IN ('queued', 'running', 'retrying')",
            )
            .bind(run.workflow.as_str())
            .bind(rule.key.as_str())
            .fetch_one(&mut *conn)
            .await?
            .try_get("busy")?;
            Ok((busy >= i64::from(rule.limit)).then(|| {
                format!(
                    "skipped: {busy} run(s) with concurrency key '{}' already in progress (limit {})",
                    rule.key, rule.limit
                )
            }))
        }
    }
}
