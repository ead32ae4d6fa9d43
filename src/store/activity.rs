//! The reads behind the UI's charts: runs counted per minute by status, and the p50/p95 of
//! run durations, over a bounded window of creation times. Both are range scans of the runs
//! listing indexes (`runs_list` on `(created_at, id)`, `runs_list_by_workflow` on
//! `(workflow, created_at, id)`), so a chart costs the runs in its window, not the store.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, QueryBuilder, Type};

use super::rows::Columns;
use super::{StoreError, timestamp};
use crate::run::RunStatus;

/// The longest window a chart may ask for: a page view must stay cheap, whatever it asks.
pub const MAX_ACTIVITY_WINDOW: TimeDelta = TimeDelta::days(1);

/// The runs a chart counts: created in `[since, until)`, of one workflow or of all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityWindow {
    pub workflow: Option<String>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl ActivityWindow {
    /// The window's start, moved later when the window is longer than
    /// [`MAX_ACTIVITY_WINDOW`] (the end is kept: charts look at the recent past).
    pub fn bounded_since(&self) -> DateTime<Utc> {
        self.since.max(self.until - MAX_ACTIVITY_WINDOW)
    }
}

/// How many runs created in one minute have a status now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    pub status: RunStatus,
    pub runs: u64,
}

/// The durations of the window's finished runs (`finished_at - started_at`, so a run's wait
/// in the queue is not counted, and a retried run counts from its first start).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct RunDurations {
    /// How many runs have both times.
    pub finished: u64,
    /// Nearest-rank percentiles in milliseconds: the duration at rank `ceil(p * finished)`;
    /// `None` when no run finished.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

fn read_error(error: sqlx::Error) -> StoreError {
    StoreError::Read(error.into())
}

/// `AND created_at >= .. AND created_at < .. [AND workflow = ..]`: with the workflow both
/// planners take a range of `runs_list_by_workflow`; without it PostgreSQL takes one of
/// `runs_list`, and SQLite (after ANALYZE) may skip-scan `runs_list_by_status`, which covers
/// the count without reading the rows (EXPLAIN on both, 20k and 200k runs).
fn push_window<DB>(query: &mut QueryBuilder<DB>, window: &ActivityWindow)
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    if let Some(workflow) = &window.workflow {
        query.push(" AND workflow = ").push_bind(workflow.clone());
    }
    query
        .push(" AND created_at >= ")
        .push_bind(timestamp(window.bounded_since()))
        .push(" AND created_at < ")
        .push_bind(timestamp(window.until));
}

/// Runs per minute of creation and status. Timestamps are RFC 3339 text in UTC with a fixed
/// layout, so the minute is the text's first 16 characters on both backends, and the
/// grouping happens in the database: at most 1440 minutes times 7 statuses come back.
pub(super) async fn runs_per_minute<DB>(
    pool: &Pool<DB>,
    window: &ActivityWindow,
) -> Result<Vec<MinuteCount>, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let rows = per_minute_query::<DB>(window)
        .build()
        .fetch_all(pool)
        .await
        .map_err(read_error)?;
    rows.iter().map(minute_count).collect()
}

/// The statement `runs_per_minute` runs (its binds: the workflow if any, since, until).
pub(super) fn per_minute_query<DB>(window: &ActivityWindow) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    // CAST: PostgreSQL counts in BIGINT, and the rows decode the schema's INTEGER.
    let mut query = QueryBuilder::<DB>::new(
        "SELECT SUBSTR(created_at, 1, 16) AS minute, status, \
         CAST(COUNT(*) AS INTEGER) AS runs FROM runs WHERE 1 = 1",
    );
    push_window(&mut query, window);
    query.push(" GROUP BY SUBSTR(created_at, 1, 16), status ORDER BY minute, status");
    query
}

fn minute_count(row: &impl Columns) -> Result<MinuteCount, StoreError> {
    let minute = row.text("minute")?;
    let status = row.text("status")?;
    Ok(MinuteCount {
        minute: NaiveDateTime::parse_from_str(&minute, "%Y-%m-%dT%H:%M")
            .map_err(|e| StoreError::Corrupt(format!("run minute '{minute}': {e}")))?
            .and_utc(),
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("run status '{status}'")))?,
        runs: u64::try_from(row.integer("runs")?).unwrap_or(0),
    })
}

/// The p50 and p95 durations of the window's finished runs. `duration_ms` is the backend's
/// SQL for `finished_at - started_at` in milliseconds (the two differ in date arithmetic).
/// Ranked by a window function in the database: one row comes back, however many runs.
pub(super) async fn run_durations<DB>(
    pool: &Pool<DB>,
    window: &ActivityWindow,
    duration_ms: &'static str,
) -> Result<RunDurations, StoreError>
where
    DB: Database,
    DB::Row: Columns,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let row = durations_query::<DB>(window, duration_ms)
        .build()
        .fetch_one(pool)
        .await
        .map_err(read_error)?;
    let finished = u64::try_from(row.integer("finished")?).unwrap_or(0);
    Ok(RunDurations {
        finished,
        p50_ms: row.maybe_real("p50")?,
        p95_ms: row.maybe_real("p95")?,
    })
}

/// The statement `run_durations` runs (its binds: the workflow if any, since, until).
pub(super) fn durations_query<DB>(
    window: &ActivityWindow,
    duration_ms: &'static str,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new("WITH finished AS (SELECT ");
    query
        .push(duration_ms)
        .push(" AS ms FROM runs WHERE started_at IS NOT NULL AND finished_at IS NOT NULL");
    push_window(&mut query, window);
    // Nearest rank in integers (no CEIL on every SQLite): ceil(n/2) = (n+1)/2 and
    // ceil(95n/100) = (95n+99)/100.
    query.push(
        "), ranked AS (SELECT ms, ROW_NUMBER() OVER (ORDER BY ms) AS position, \
         COUNT(*) OVER () AS total FROM finished) \
         SELECT CAST(COUNT(*) AS INTEGER) AS finished, \
         MAX(CASE WHEN position = (total + 1) / 2 THEN ms END) AS p50, \
         MAX(CASE WHEN position = (95 * total + 99) / 100 THEN ms END) AS p95 FROM ranked",
    );
    query
}
