//! Events, runs and steps in one partition per day, so retention drops whole days instead of
//! deleting rows one by one. The partition key is the row's id (a step's run id): ids are
//! UUIDv7, whose text starts with the creation time in milliseconds, so an id range is a time
//! range and a row's place is known before it is written. Ids of any other shape (and rows of
//! a day with no partition yet) go to each table's default partition, which is pruned row by
//! row as before.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::{Connection, PgConnection};
use tracing::{info, warn};

/// Days ahead of today that have their partitions before their first row arrives.
pub(super) const DAYS_AHEAD: i64 = 7;

/// The oldest day the migration gives a partition of its own; older rows go to the default
/// partitions (pruned row by row).
const DAYS_BEHIND_AT_MIGRATION: i64 = 400;

/// The partitioned tables, children before parents: a day is dropped in this order.
pub(super) const TABLES: [&str; 3] = ["steps", "runs", "events"];

/// The first id of `day` (UTC) as text: a v7 id's first 48 bits are its Unix milliseconds,
/// written as 8 hex digits, a hyphen and 4 more. Every id created on the day sorts at or
/// after it, and before the next day's.
pub(super) fn first_id_of(day: NaiveDate) -> String {
    let millis = day
        .and_hms_opt(0, 0, 0)
        .map_or(0, |start| start.and_utc().timestamp_millis())
        .max(0) as u64;
    format!("{:08x}-{:04x}", millis >> 16, millis & 0xffff)
}

/// The day of the partition named `<table>_pYYYYMMDD`.
pub(super) fn day_of(partition: &str) -> Option<NaiveDate> {
    let (_, day) = partition.rsplit_once("_p")?;
    NaiveDate::parse_from_str(day, "%Y%m%d").ok()
}

fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

/// Give every day from `from` to `to` (inclusive) its partition in each table, where it has
/// none. A day the default partition already holds rows of is left there (with a warning):
/// those rows are pruned row by row. The caller holds a lock that keeps other processes from
/// doing the same at once.
pub(super) async fn ensure_days(
    conn: &mut PgConnection,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(), sqlx::Error> {
    let existing = existing_partitions(conn).await?;
    let mut day = from;
    while day <= to {
        let next = day + Duration::days(1);
        for table in TABLES {
            let name = partition_name(table, day);
            if existing.contains(&name) {
                continue;
            }
            let statement = format!(
                "CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{}') TO ('{}')",
                first_id_of(day),
                first_id_of(next)
            );
            // In a savepoint, so a day that cannot be made leaves the others to be made.
            let mut savepoint = conn.begin().await?;
            let made = async {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *savepoint)
                    .await?;
                same_compression(&mut savepoint, table, &name).await
            }
            .await;
            match made {
                Ok(_) => savepoint.commit().await?,
                Err(err) => {
                    savepoint.rollback().await?;
                    warn!(partition = %name, error = %err, "cannot add a day's partition; its rows stay in the default partition");
                }
            }
        }
        day = next;
    }
    Ok(())
}

/// Give `partition` the compression its table's columns have (a new partition does not take
/// it from its table).
pub(super) async fn same_compression(
    conn: &mut PgConnection,
    table: &str,
    partition: &str,
) -> Result<(), sqlx::Error> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, CASE attcompression WHEN 'l' THEN 'lz4' ELSE 'pglz' END
         FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0
           AND NOT attisdropped AND attcompression <> ''",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    for (column, method) in columns {
        let statement =
            format!("ALTER TABLE {partition} ALTER COLUMN {column} SET COMPRESSION {method}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Give every partition of `table` its table's compression (`ALTER TABLE … SET COMPRESSION`
/// on a partitioned table leaves some of them as they were).
pub(super) async fn compress_partitions_like(
    conn: &mut PgConnection,
    table: &str,
) -> Result<(), sqlx::Error> {
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = to_regclass($1)",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    for partition in partitions {
        same_compression(conn, table, &partition).await?;
    }
    Ok(())
}

/// The names of the day partitions of the partitioned tables.
pub(super) async fn existing_partitions(
    conn: &mut PgConnection,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT child.relname::text FROM pg_inherits
         JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid
         JOIN pg_class AS parent ON parent.oid = pg_inherits.inhparent
         JOIN pg_namespace ON pg_namespace.oid = parent.relnamespace
         WHERE pg_namespace.nspname = current_schema()
           AND parent.relname IN ('events', 'runs', 'steps')
           AND child.relname ~ '_p[0-9]{8}$'",
    )
    .fetch_all(&mut *conn)
    .await
}

/// Migration 7: the unpartitioned tables become partitioned ones holding the same rows, in one
/// transaction (the caller's), under the migration lock. A day partition is made for every
/// day the existing ids fall on (up to `DAYS_BEHIND_AT_MIGRATION` back) and the days ahead.
pub(super) async fn partition_existing_tables(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(SET_ASIDE).execute(&mut *tx).await?;
    sqlx::raw_sql(CREATE_PARTITIONED).execute(&mut *tx).await?;
    let today = Utc::now().date_naive();
    let oldest = oldest_day(tx).await?.map_or(today, |day| {
        day.max(today - Duration::days(DAYS_BEHIND_AT_MIGRATION))
    });
    ensure_days(tx, oldest.min(today), today + Duration::days(DAYS_AHEAD)).await?;
    let moved: i64 = sqlx::query_scalar("SELECT count(*) FROM runs_unpartitioned")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::raw_sql(MOVE_ROWS).execute(&mut *tx).await?;
    info!(runs = moved, "the store's tables are partitioned by day");
    Ok(())
}

/// The day of the oldest run id that is a v7 UUID, if any.
async fn oldest_day(tx: &mut PgConnection) -> Result<Option<NaiveDate>, sqlx::Error> {
    let oldest: Option<String> = sqlx::query_scalar(
        "SELECT min(id COLLATE \"C\") FROM runs_unpartitioned
         WHERE id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7'",
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(oldest.as_deref().and_then(day_of_id))
}

/// The day a v7 id was made on.
pub(super) fn day_of_id(id: &str) -> Option<NaiveDate> {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    let millis = i64::from_str_radix(&hex, 16).ok()?;
    DateTime::<Utc>::from_timestamp_millis(millis).map(|at| at.date_naive())
}

/// The old tables and their indexes and constraints renamed out of the way.
const SET_ASIDE: &str = r#"
ALTER TABLE steps RENAME TO steps_unpartitioned;
ALTER TABLE runs RENAME TO runs_unpartitioned;
ALTER TABLE events RENAME TO events_unpartitioned;
DROP INDEX runs_due, runs_leases, runs_by_event, runs_list, runs_list_by_status,
  runs_list_by_workflow, runs_list_by_workflow_status, runs_by_concurrency;
"#;

/// The partitioned tables: the columns of migrations 1 to 6 in their order and with their
/// types and collations (so the statements other processes have prepared stay valid), and the
/// indexes the queries use. Ids keep the database's collation: every v7 id and bound has its
/// hyphens at the same places and lowercase hex digits between them, which every collation
/// orders as bytes do. Steps and runs do not reference
/// their parents by foreign key: dropping a day would then check every other day, and the
/// store writes a step only for a run it holds and a run only with its event.
const CREATE_PARTITIONED: &str = r#"
CREATE TABLE events (
    id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    params TEXT NOT NULL,
    query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    raw BYTEA NOT NULL,
    triggered_by TEXT,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE runs (
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    response TEXT,
    due_at TEXT,
    lease_owner TEXT,
    lease_until TEXT,
    concurrency_key TEXT,
    concurrency_limit INTEGER,
    replayed_from_version TEXT,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE TABLE runs_default PARTITION OF runs DEFAULT;
CREATE INDEX runs_due ON runs(status, due_at);
CREATE INDEX runs_leases ON runs(status, lease_until);
CREATE INDEX runs_by_event ON runs(event_id);
CREATE INDEX runs_list ON runs(created_at, id);
CREATE INDEX runs_list_by_status ON runs(status, created_at, id);
CREATE INDEX runs_list_by_workflow ON runs(workflow, created_at, id);
CREATE INDEX runs_list_by_workflow_status ON runs(workflow, status, created_at, id);
CREATE INDEX runs_by_concurrency ON runs(workflow, concurrency_key, status, created_at);
CREATE TABLE steps (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    filtered BOOLEAN NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    earlier TEXT,
    PRIMARY KEY (run_id, idx)
) PARTITION BY RANGE (run_id);
CREATE TABLE steps_default PARTITION OF steps DEFAULT;
"#;

/// The rows moved into the partitioned tables, and the old tables gone.
const MOVE_ROWS: &str = r#"
INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw,
  triggered_by)
SELECT id, received_at, method, path, params, query, headers, body, raw, triggered_by
FROM events_unpartitioned;
INSERT INTO runs (id, event_id, workflow, version, status, attempt, created_at, started_at,
  finished_at, error, response, due_at, lease_owner, lease_until, concurrency_key,
  concurrency_limit, replayed_from_version)
SELECT id, event_id, workflow, version, status, attempt, created_at, started_at, finished_at,
  error, response, due_at, lease_owner, lease_until, concurrency_key, concurrency_limit,
  replayed_from_version
FROM runs_unpartitioned;
INSERT INTO steps (run_id, idx, name, kind, status, filtered, input, output, error, started_at,
  duration_ms, attempts, earlier)
SELECT run_id, idx, name, kind, status, filtered, input, output, error, started_at,
  duration_ms, attempts, earlier
FROM steps_unpartitioned;
DROP TABLE steps_unpartitioned;
DROP TABLE runs_unpartitioned;
DROP TABLE events_unpartitioned;
"#;

/// Retention by the day, from the pruner: the coming days get their partitions, and every
/// day that ended before `cutoff` whose runs all finished before it, and whose events no run
/// of another day points to, is dropped; answers how many runs went. A day that does not
/// qualify yet (a run still retrying, say) is left to the row-by-row prune. One process at a
/// time (the prune lock, `lock_key`); each day in a short transaction of its own that gives up
/// rather than wait long for its locks (dropping a partition locks its table for a moment).
pub(super) async fn maintain_days(
    conn: &mut PgConnection,
    lock_key: i32,
    cutoff: DateTime<Utc>,
    cutoff_text: &str,
) -> Result<usize, sqlx::Error> {
    let ours: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
            .bind(lock_key)
            .fetch_one(&mut *conn)
            .await?;
    if !ours {
        return Ok(0);
    }
    let maintained = maintain_locked(conn, cutoff, cutoff_text).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext(current_schema()))")
        .bind(lock_key)
        .execute(&mut *conn)
        .await;
    let pruned = maintained?;
    unlocked?;
    Ok(pruned)
}

async fn maintain_locked(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    cutoff_text: &str,
) -> Result<usize, sqlx::Error> {
    let today = Utc::now().date_naive();
    ensure_days(conn, today, today + Duration::days(DAYS_AHEAD)).await?;
    let mut days: Vec<NaiveDate> = existing_partitions(conn)
        .await?
        .iter()
        .filter(|name| name.starts_with("runs_p"))
        .filter_map(|name| day_of(name))
        .filter(|day| *day + Duration::days(1) <= cutoff.date_naive())
        .collect();
    days.sort_unstable();
    let mut pruned = 0;
    for day in days {
        let mut tx = conn.begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '2s'")
            .execute(&mut *tx)
            .await?;
        let Some(runs) = droppable_runs(&mut tx, day, cutoff_text).await? else {
            tx.rollback().await?;
            continue;
        };
        for table in TABLES {
            let statement = format!("DROP TABLE {}", partition_name(table, day));
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        info!(day = %day, runs, "dropped a day of finished runs past the retention");
        pruned += runs;
    }
    Ok(pruned)
}

/// How many runs `day` holds when the whole day can go, else `None`.
async fn droppable_runs(
    tx: &mut PgConnection,
    day: NaiveDate,
    cutoff: &str,
) -> Result<Option<usize>, sqlx::Error> {
    let runs = partition_name("runs", day);
    let (first, next) = (first_id_of(day), first_id_of(day + Duration::days(1)));
    let statement = format!(
        "SELECT
           (SELECT count(*) FROM {runs}) AS runs,
           EXISTS (SELECT 1 FROM {runs} WHERE status NOT IN
             ('succeeded', 'failed', 'filtered', 'cancelled') OR finished_at IS NULL
             OR finished_at >= $1) AS kept,
           EXISTS (SELECT 1 FROM runs WHERE event_id >= $2 AND event_id < $3
             AND (id < $2 OR id >= $3)) AS shared"
    );
    let (count, kept, shared): (i64, bool, bool) = sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(cutoff)
        .bind(&first)
        .bind(&next)
        .fetch_one(&mut *tx)
        .await?;
    Ok((!kept && !shared).then(|| usize::try_from(count).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_where_its_first_v7_id_sorts() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 7).expect("date");
        let start = day.and_hms_opt(0, 0, 0).expect("time").and_utc();
        let first = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            start.timestamp() as u64,
            0,
        ))
        .to_string();
        let last = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (start + Duration::days(1)).timestamp() as u64 - 1,
            999_999_999,
        ))
        .to_string();
        let (low, high) = (first_id_of(day), first_id_of(day + Duration::days(1)));
        assert!(low.as_str() <= first.as_str(), "{low} > {first}");
        assert!(last.as_str() < high.as_str(), "{last} >= {high}");
        assert!(first.as_str() < high.as_str());
        assert_eq!(day_of_id(&first), Some(day));
        assert_eq!(day_of_id(&last), Some(day));
        assert_eq!(day_of_id("not-an-id"), None);
    }

    #[test]
    fn a_partition_name_gives_its_day() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 31).expect("date");
        assert_eq!(partition_name("runs", day), "runs_p20260131");
        assert_eq!(day_of("steps_p20260131"), Some(day));
        assert_eq!(day_of("runs_default"), None);
    }
}
