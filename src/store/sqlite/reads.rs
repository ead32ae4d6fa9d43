//! The SQLite store's reads, from its pool of read-only connections: they never wait for the
//! writer.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use crate::store::rows::Columns;
use crate::store::{StoreError, timestamp};

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

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};
    use sqlx::{Connection, SqliteConnection};

    use crate::store::activity::{ActivityWindow, durations_query, per_minute_query};
    use crate::store::timestamp;

    /// The plan of a chart's read, bound as `window` binds it.
    async fn plan(sql: &str, window: &ActivityWindow) -> Vec<String> {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        super::super::schema::create(&mut conn)
            .await
            .expect("schema");
        // Test-only: the statement is the chart's own, built from constants.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        if let Some(workflow) = &window.workflow {
            query = query.bind(workflow.clone());
        }
        query
            .bind(timestamp(window.since))
            .bind(timestamp(window.until))
            .fetch_all(&mut conn)
            .await
            .expect("plan")
            .iter()
            .map(|r| sqlx::Row::try_get::<String, _>(r, "detail").expect("detail"))
            .collect()
    }

    #[tokio::test]
    async fn the_charts_reads_are_index_ranges_of_the_runs_listing() {
        let until = Utc::now();
        for workflow in [None, Some("orders".to_owned())] {
            let window = ActivityWindow {
                workflow: workflow.clone(),
                since: until - TimeDelta::hours(1),
                until,
            };
            let sqlite_ms = super::super::SQLITE_DURATION_MS;
            for sql in [
                per_minute_query::<sqlx::Sqlite>(&window)
                    .sql()
                    .as_str()
                    .to_owned(),
                durations_query::<sqlx::Sqlite>(&window, sqlite_ms)
                    .sql()
                    .as_str()
                    .to_owned(),
            ] {
                let plan = plan(&sql, &window).await;
                let reads: Vec<&String> = plan.iter().filter(|l| l.contains(" runs ")).collect();
                assert_eq!(reads.len(), 1, "{plan:#?}");
                assert!(
                    reads[0].starts_with("SEARCH runs USING")
                        && reads[0].contains("INDEX runs_list")
                        && reads[0].contains("created_at>? AND created_at<?"),
                    "a chart reads a range of a listing index, not every run: {plan:#?}"
                );
                if workflow.is_some() {
                    assert!(reads[0].contains("workflow=?"), "{plan:#?}");
                }
            }
        }
    }
}
