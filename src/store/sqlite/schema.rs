//! The SQLite store's tables, and the changes made to a file created by an earlier version.

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    params TEXT NOT NULL,
    query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events(id),
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
    cancelled_by TEXT,
    cancel_requested TEXT
);
CREATE INDEX IF NOT EXISTS runs_due ON runs(status, due_at);
-- The runs listing (newest first, by workflow and/or status, paged by (created_at, id)) walks
-- one of these in order and stops after a page, however many runs the store holds.
DROP INDEX IF EXISTS runs_by_status;
DROP INDEX IF EXISTS runs_by_workflow;
DROP INDEX IF EXISTS runs_by_time;
CREATE INDEX IF NOT EXISTS runs_list ON runs(created_at, id);
CREATE INDEX IF NOT EXISTS runs_list_by_status ON runs(status, created_at, id);
CREATE INDEX IF NOT EXISTS runs_list_by_workflow ON runs(workflow, created_at, id);
CREATE INDEX IF NOT EXISTS runs_list_by_workflow_status ON runs(workflow, status, created_at, id);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    filtered INTEGER NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    earlier TEXT,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS dedupe (
    workflow TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (workflow, key)
);
CREATE TABLE IF NOT EXISTS ticks (
    workflow TEXT NOT NULL,
    tick_at TEXT NOT NULL,
    event_id TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (workflow, tick_at)
);
-- One row the readiness probe rewrites while the store is failing, to learn when it can write.
CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    written_at TEXT NOT NULL
);
-- Workflows whose queued runs are not claimed until resumed.
CREATE TABLE IF NOT EXISTS paused_workflows (
    workflow TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL,
    paused_by TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS definitions (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"#;

/// Columns added after a store file may have been created: added when missing.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    (
        "concurrency_key",
        "ALTER TABLE runs ADD COLUMN concurrency_key TEXT",
    ),
    (
        "concurrency_limit",
        "ALTER TABLE runs ADD COLUMN concurrency_limit INTEGER",
    ),
    // The version a run had before a replay with the latest definition changed it.
    (
        "replayed_from_version",
        "ALTER TABLE runs ADD COLUMN replayed_from_version TEXT",
    ),
    // Who cancelled a run (or asked to), and the error a running run ends with once its
    // owner sees the request.
    (
        "cancelled_by",
        "ALTER TABLE runs ADD COLUMN cancelled_by TEXT",
    ),
    (
        "cancel_requested",
        "ALTER TABLE runs ADD COLUMN cancel_requested TEXT",
    ),
];

async fn migrate(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('runs')")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect::<Result<_, _>>()?;
    for (name, statement) in ADDED_COLUMNS {
        if !columns.iter().any(|c| c == name) {
            sqlx::raw_sql(*statement).execute(&mut *conn).await?;
        }
    }
    // With `created_at` last, a claim counts the older queued runs of its key as a range and
    // the runs behind a finished one come in order. A file made before has the index without
    // it, under the same name: it is made again.
    let indexed: Vec<String> =
        sqlx::query("SELECT name FROM pragma_index_info('runs_by_concurrency')")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?;
    if !indexed.iter().any(|c| c == "created_at") {
        sqlx::raw_sql(
            "DROP INDEX IF EXISTS runs_by_concurrency;
             CREATE INDEX runs_by_concurrency
             ON runs(workflow, concurrency_key, status, created_at)",
        )
        .execute(&mut *conn)
        .await?;
    }
    // The event's trigger as JSON; NULL for the events stored before triggers: webhooks.
    let has_trigger = sqlx::query(
        "SELECT COUNT(*) AS n FROM pragma_table_info('events') WHERE name = 'triggered_by'",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get::<i64, _>("n")?
        > 0;
    if !has_trigger {
        sqlx::query("ALTER TABLE events ADD COLUMN triggered_by TEXT")
            .execute(&mut *conn)
            .await?;
    }
    // The `traceparent` of the request's span (docs/decisions/023); NULL when traces were off.
    let has_trace = sqlx::query(
        "SELECT COUNT(*) AS n FROM pragma_table_info('events') WHERE name = 'trace_parent'",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get::<i64, _>("n")?
        > 0;
    if !has_trace {
        sqlx::query("ALTER TABLE events ADD COLUMN trace_parent TEXT")
            .execute(&mut *conn)
            .await?;
    }
    // Each earlier attempt of a retried step, as JSON; NULL for steps tried once (and for
    // the records written before attempts were kept).
    let has_earlier =
        sqlx::query("SELECT COUNT(*) AS n FROM pragma_table_info('steps') WHERE name = 'earlier'")
            .fetch_one(&mut *conn)
            .await?
            .try_get::<i64, _>("n")?
            > 0;
    if !has_earlier {
        sqlx::query("ALTER TABLE steps ADD COLUMN earlier TEXT")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Create the tables a new file lacks and bring an older file's up to date.
pub(super) async fn create(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(SCHEMA).execute(&mut *conn).await?;
    migrate(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[tokio::test]
    async fn a_file_with_the_old_concurrency_index_gets_the_new_one() {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .expect("schema");
        sqlx::raw_sql(
            "CREATE INDEX runs_by_concurrency ON runs(workflow, concurrency_key, status)",
        )
        .execute(&mut conn)
        .await
        .expect("old index");
        migrate(&mut conn).await.expect("migrate");
        migrate(&mut conn).await.expect("migrate again");
        let columns: Vec<String> =
            sqlx::query("SELECT name FROM pragma_index_info('runs_by_concurrency') ORDER BY seqno")
                .fetch_all(&mut conn)
                .await
                .expect("index")
                .iter()
                .map(|r| r.try_get::<String, _>("name").expect("name"))
                .collect();
        assert_eq!(
            columns,
            ["workflow", "concurrency_key", "status", "created_at"]
        );
    }
}
