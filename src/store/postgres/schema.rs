//! The PostgreSQL store's schema as numbered migrations, applied once each, one process at a
//! time.

use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};
use tracing::info;

/// Held while migrations run, so processes starting together apply each one once.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_666c_6f77; // "hookflow"

/// The schema, one step per version; a step is never edited once released, only appended.
/// Timestamps are RFC 3339 text in UTC with fixed precision (as on SQLite): they sort as text
/// and the two backends share their encoding code.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    params TEXT NOT NULL,
    query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    raw BYTEA NOT NULL
);
CREATE TABLE runs (
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
    lease_until TEXT
);
CREATE INDEX runs_due ON runs(status, due_at);
CREATE INDEX runs_by_status ON runs(status, created_at);
CREATE INDEX runs_by_workflow ON runs(workflow, created_at);
CREATE INDEX runs_by_time ON runs(created_at);
CREATE INDEX runs_leases ON runs(status, lease_until);
CREATE INDEX runs_by_event ON runs(event_id);
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
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
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE dedupe (
    workflow TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (workflow, key)
);
CREATE INDEX dedupe_expiry ON dedupe(expires_at);
CREATE TABLE definitions (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"#,
    ),
    (
        2,
        r#"
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
ALTER TABLE runs ADD COLUMN concurrency_limit INTEGER;
CREATE INDEX runs_by_concurrency ON runs(workflow, concurrency_key, status);
"#,
    ),
    (
        3,
        r#"
ALTER TABLE events ADD COLUMN triggered_by TEXT;
CREATE TABLE ticks (
    workflow TEXT NOT NULL,
    tick_at TEXT NOT NULL,
    event_id TEXT,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (workflow, tick_at)
);
"#,
    ),
    (
        4,
        r#"
DROP INDEX IF EXISTS runs_by_status;
DROP INDEX IF EXISTS runs_by_workflow;
DROP INDEX IF EXISTS runs_by_time;
CREATE INDEX runs_list ON runs(created_at, id);
CREATE INDEX runs_list_by_status ON runs(status, created_at, id);
CREATE INDEX runs_list_by_workflow ON runs(workflow, created_at, id);
CREATE INDEX runs_list_by_workflow_status ON runs(workflow, status, created_at, id);
DROP INDEX IF EXISTS runs_by_concurrency;
CREATE INDEX runs_by_concurrency ON runs(workflow, concurrency_key, status, created_at);
"#,
    ),
    (
        5,
        r#"
ALTER TABLE steps ADD COLUMN earlier TEXT;
"#,
    ),
    (
        6,
        r#"
ALTER TABLE runs ADD COLUMN replayed_from_version TEXT;
"#,
    ),
    // The `traceparent` of the request's span; NULL when traces were off (decision 023).
    (
        10,
        r#"
ALTER TABLE events ADD COLUMN trace_parent TEXT;
"#,
    ),
];

/// Apply the migrations this database lacks, one process at a time.
pub(super) async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply_migrations(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    unlocked.map(|_| ())
}

async fn apply_migrations(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS hookflow_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *conn)
    .await?;
    let done: Vec<i32> = sqlx::query_scalar("SELECT version FROM hookflow_migrations")
        .fetch_all(&mut *conn)
        .await?;
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO hookflow_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        info!(version, "applied a store migration");
    }
    Ok(())
}
