//! The PostgreSQL store's schema as numbered migrations, applied once each, one process at a
//! time.

use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};
use tracing::info;

use super::partitions;

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
    // Events, runs and steps partitioned by day: `partitions::partition_existing_tables`.
    (PARTITIONED, ""),
    (
        8,
        r#"
ALTER TABLE runs ADD COLUMN cancelled_by TEXT;
ALTER TABLE runs ADD COLUMN cancel_requested TEXT;
CREATE TABLE paused_workflows (
    workflow TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL,
    paused_by TEXT NOT NULL,
    reason TEXT
);
"#,
    ),
    (
        9,
        r#"
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tat_us BIGINT NOT NULL
);
"#,
    ),
    // The `traceparent` of the request's span; NULL when traces were off (decision 023).
    (
        10,
        r#"
ALTER TABLE events ADD COLUMN trace_parent TEXT;
"#,
    ),
    // The large columns compressed with LZ4: `compress_with_lz4`.
    (LZ4, ""),
    // The indexes of states a run passes through hold only the runs in that state: a run's row
    // is written three times (accepted, claimed, ended), each time into every index whose
    // predicate it meets, and most runs never retry or have a key. 8% less WAL per webhook in
    // the stores bench (decision 016).
    (
        12,
        r#"
DROP INDEX runs_due;
CREATE INDEX runs_due ON runs(due_at) WHERE status = 'retrying';
DROP INDEX runs_leases;
CREATE INDEX runs_leases ON runs(lease_until) WHERE status = 'running';
DROP INDEX runs_by_concurrency;
CREATE INDEX runs_by_concurrency ON runs(workflow, concurrency_key, status, created_at)
  WHERE concurrency_key IS NOT NULL;
"#,
    ),
];

/// The migration that partitions the tables, in Rust: it makes a partition for each day the
/// rows fall on before moving them.
const PARTITIONED: i32 = 7;

/// The migration that compresses the large columns with LZ4 instead of pglz, where the server
/// has it: several times less CPU per stored event (a webhook's body is compressed as it is
/// written). A server built without LZ4 keeps pglz, with a warning.
const LZ4: i32 = 11;

const LZ4_COLUMNS: &str = r#"
ALTER TABLE events ALTER COLUMN raw SET COMPRESSION lz4;
ALTER TABLE events ALTER COLUMN body SET COMPRESSION lz4;
ALTER TABLE events ALTER COLUMN headers SET COMPRESSION lz4;
ALTER TABLE steps ALTER COLUMN input SET COMPRESSION lz4;
ALTER TABLE steps ALTER COLUMN output SET COMPRESSION lz4;
"#;

/// Migration 11, in a savepoint: a server without LZ4 support refuses it, and keeps pglz.
async fn compress_with_lz4(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    let mut savepoint = tx.begin().await?;
    let compressed = async {
        sqlx::raw_sql(LZ4_COLUMNS).execute(&mut *savepoint).await?;
        partitions::compress_partitions_like(&mut savepoint, "events").await?;
        partitions::compress_partitions_like(&mut savepoint, "steps").await
    }
    .await;
    match compressed {
        Ok(_) => savepoint.commit().await,
        Err(err) => {
            savepoint.rollback().await?;
            tracing::warn!(error = %err, "the database cannot compress with LZ4; large columns stay compressed with pglz");
            Ok(())
        }
    }
}

/// Apply the migrations this database lacks, one process at a time.
pub(super) async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply_migrations(&mut conn, i32::MAX).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    unlocked.map(|_| ())
}

/// Apply the migrations up to version `through` that the database lacks.
async fn apply_migrations(conn: &mut PgConnection, through: i32) -> Result<(), sqlx::Error> {
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
        if done.contains(version) || *version > through {
            continue;
        }
        let mut tx = conn.begin().await?;
        if *version == PARTITIONED {
            partitions::partition_existing_tables(&mut tx).await?;
        } else if *version == LZ4 {
            compress_with_lz4(&mut tx).await?;
        } else {
            sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO hookflow_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        info!(version, "applied a store migration");
    }
    // The coming days have their partitions before their rows arrive (the pruner keeps it so
    // for a server that runs for weeks).
    let today = chrono::Utc::now().date_naive();
    partitions::ensure_days(
        conn,
        today - chrono::Duration::days(1),
        today + chrono::Duration::days(partitions::DAYS_AHEAD),
    )
    .await
}

#[cfg(test)]
pub(super) mod tests {
    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    use super::*;

    /// The database of the tests that need one: `HOOKFLOW_TEST_POSTGRES_URL`, else the local
    /// server every machine here runs.
    const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// The test database's URL.
    pub(in crate::store::postgres) fn test_url() -> String {
        std::env::var("HOOKFLOW_TEST_POSTGRES_URL").unwrap_or(DEFAULT_URL.to_owned())
    }

    /// A pool on a fresh schema of the test database; `None` (said loudly, and a failure under
    /// `CI=true`) when there is no database to reach.
    pub(in crate::store::postgres) async fn fresh_schema(test: &str) -> Option<(PgPool, String)> {
        let url = test_url();
        let options = PgConnectOptions::from_str(&url).expect("database URL");
        let admin = match PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(err) => {
                let why = format!("{test}: no PostgreSQL at {url}: {err}");
                eprintln!("*** SKIPPED {why} ***");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                return None;
            }
        };
        let schema = format!("hf_unit_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create schema");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.options([("search_path", schema.as_str())]))
            .await
            .expect("connect to the schema");
        Some((pool, schema))
    }

    pub(in crate::store::postgres) async fn drop_schema(pool: &PgPool, schema: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(pool)
            .await
            .expect("drop schema");
    }

    // Not prepared: a statement prepared before a migration is not one to reuse after it.
    async fn scalar(pool: &PgPool, query: &'static str) -> i64 {
        sqlx::query_scalar(query)
            .persistent(false)
            .fetch_one(pool)
            .await
            .expect(query)
    }

    async fn text(pool: &PgPool, query: &'static str) -> String {
        sqlx::query_scalar(query)
            .persistent(false)
            .fetch_one(pool)
            .await
            .expect(query)
    }

    /// Everything the tables hold, as one digest.
    const CONTENT: &str = "SELECT md5(
        (SELECT string_agg(concat_ws('|', id, event_id, workflow, status, attempt, created_at,
            finished_at, error, lease_owner, concurrency_key, replayed_from_version), ',' ORDER BY id COLLATE \"C\")
         FROM runs)
        || (SELECT string_agg(concat_ws('|', run_id, idx, name, status, input, output, duration_ms,
            earlier), ',' ORDER BY run_id COLLATE \"C\", idx) FROM steps)
        || (SELECT string_agg(concat_ws('|', id, received_at, body, encode(raw, 'hex'), triggered_by),
            ',' ORDER BY id COLLATE \"C\") FROM events))";

    /// 100,000 runs over the last 30 days (v7 ids, made in SQL), one step each, and a few
    /// with ids of another shape.
    const FILL: &str = "
        INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw)
        SELECT id, created, 'POST', '/hooks/x', '{}', '{}', '{}', '{\"n\":' || n || '}', 'raw'
        FROM (SELECT n, ms, created,
          substr(lpad(to_hex(ms), 12, '0'), 1, 8) || '-' || substr(lpad(to_hex(ms), 12, '0'), 9, 4)
            || '-7000-8000-' || lpad(to_hex(n), 12, '0') AS id
          FROM (SELECT n, (extract(epoch FROM now()) * 1000)::bigint - n::bigint * 25920 AS ms,
                  to_char(now() - n * interval '25.92 seconds', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created
                FROM generate_series(1, 100000) AS n) AS t) AS e;
        INSERT INTO events (id, received_at, method, path, params, query, headers, body, raw)
        SELECT 'legacy-' || n, '2020-01-01T00:00:00.000000Z', 'POST', '/x', '{}', '{}', '{}', '{}', ''
        FROM generate_series(1, 5) AS n;
        INSERT INTO runs (id, event_id, workflow, version, status, created_at, finished_at)
        SELECT id, id, 'w' || (length(id) % 3), 'v1',
          CASE WHEN right(id, 1) = '0' THEN 'failed' ELSE 'succeeded' END, received_at, received_at
        FROM events;
        INSERT INTO steps (run_id, idx, name, kind, status, filtered, input, output, started_at,
          duration_ms)
        SELECT id, 0, 'a', 'http', 'succeeded', false, '{}', '{}', created_at, 1.5 FROM runs;
    ";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_of_100000_runs_is_partitioned_in_place_under_the_lock() {
        let test = "a_database_of_100000_runs_is_partitioned_in_place_under_the_lock";
        let Some((pool, schema)) = fresh_schema(test).await else {
            return;
        };
        let mut conn = pool.acquire().await.expect("connection");
        apply_migrations(&mut conn, PARTITIONED - 1)
            .await
            .expect("migrations 1 to 6");
        drop(conn);
        sqlx::raw_sql(FILL).execute(&pool).await.expect("fill");
        let before = text(&pool, CONTENT).await;
        // Two processes starting at once: one migrates, the other waits and finds it done.
        let (first, second) = tokio::join!(migrate(&pool), migrate(&pool));
        first.expect("first migration");
        second.expect("second migration");
        assert_eq!(text(&pool, CONTENT).await, before, "the rows are the same");
        assert_eq!(scalar(&pool, "SELECT count(*) FROM runs").await, 100_005);
        assert_eq!(
            scalar(
                &pool,
                "SELECT count(*) FROM hookflow_migrations WHERE version = 7"
            )
            .await,
            1
        );
        assert_eq!(
            text(
                &pool,
                "SELECT relkind::text FROM pg_class WHERE oid = 'runs'::regclass"
            )
            .await,
            "p",
            "runs is partitioned"
        );
        assert_eq!(
            scalar(&pool, "SELECT count(*) FROM runs_default").await,
            5,
            "only the ids that are not v7 are in the default partition"
        );
        let days = scalar(
            &pool,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'runs'::regclass",
        )
        .await;
        // 30 days back, today, 7 ahead, and the default.
        assert!((38..=40).contains(&days), "{days} partitions of runs");
        assert_eq!(scalar(&pool, "SELECT count(*) FROM steps_default").await, 5);
        assert_eq!(
            scalar(
                &pool,
                "SELECT count(*) FROM runs WHERE tableoid::regclass::text <> 'runs_default'
                 AND tableoid::regclass::text <> 'runs_p' || to_char(to_timestamp(
                   ('x' || substr(replace(id, '-', ''), 1, 12))::bit(48)::bigint / 1000.0)
                   AT TIME ZONE 'UTC', 'YYYYMMDD')"
            )
            .await,
            0,
            "every run is in the partition of the day its id was made"
        );
        // The large columns are compressed with LZ4, in the partitions there were and in one
        // made later.
        let later = chrono::Utc::now().date_naive() + chrono::Duration::days(30);
        let mut conn = pool.acquire().await.expect("connection");
        partitions::ensure_days(&mut conn, later, later)
            .await
            .expect("a later day");
        drop(conn);
        let compressions: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT attcompression::text FROM pg_attribute
             WHERE attname = 'raw' AND attrelid IN (
               SELECT inhrelid FROM pg_inherits WHERE inhparent = 'events'::regclass)",
        )
        .persistent(false)
        .fetch_all(&pool)
        .await
        .expect("compression");
        assert_eq!(compressions, vec!["l".to_owned()]);
        // Every partition, the later one too, has the indexes of passing states partial
        // (migration 12).
        let partitions = scalar(
            &pool,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'runs'::regclass",
        )
        .await;
        for predicate in [
            "WHERE (status = 'retrying'::text)",
            "WHERE (status = 'running'::text)",
            "WHERE (concurrency_key IS NOT NULL)",
        ] {
            let partial: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_index AS x JOIN pg_inherits AS h ON h.inhrelid = x.indrelid
                 WHERE h.inhparent = 'runs'::regclass
                   AND pg_get_indexdef(x.indexrelid) LIKE '%' || $1",
            )
            .bind(predicate)
            .persistent(false)
            .fetch_one(&pool)
            .await
            .expect("partial indexes");
            assert_eq!(partial, partitions, "{predicate} on every partition");
        }
        drop_schema(&pool, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_drops_whole_days_and_keeps_a_day_with_an_unfinished_run() {
        let test = "retention_drops_whole_days_and_keeps_a_day_with_an_unfinished_run";
        let Some((pool, schema)) = fresh_schema(test).await else {
            return;
        };
        migrate(&pool).await.expect("migrations");
        let today = chrono::Utc::now().date_naive();
        let mut conn = pool.acquire().await.expect("connection");
        partitions::ensure_days(&mut conn, today - chrono::Duration::days(31), today)
            .await
            .expect("partitions of the last month");
        drop(conn);
        sqlx::raw_sql(FILL).execute(&pool).await.expect("fill");
        // One run 20 days old is still retrying: its day stays; its finished runs go row by row.
        sqlx::raw_sql(
            "UPDATE runs SET status = 'retrying', finished_at = NULL WHERE id = (
               SELECT id FROM runs WHERE created_at < to_char(now() - interval '20 days',
                 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') ORDER BY id DESC LIMIT 1)",
        )
        .execute(&pool)
        .await
        .expect("one unfinished run");
        let kept_day: String = sqlx::query_scalar(
            "SELECT tableoid::regclass::text FROM runs WHERE status = 'retrying'",
        )
        .fetch_one(&pool)
        .await
        .expect("the unfinished run's partition");
        let cutoff = chrono::Utc::now() - chrono::Duration::days(10);
        let older = scalar(
            &pool,
            "SELECT count(*) FROM runs WHERE status <> 'retrying' AND created_at < to_char(now() - interval '10 days', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )
        .await;
        let mut conn = pool.acquire().await.expect("connection");
        let dropped =
            partitions::maintain_days(&mut conn, 1, cutoff, &crate::store::timestamp(cutoff))
                .await
                .expect("maintain");
        drop(conn);
        let remaining_older = scalar(
            &pool,
            "SELECT count(*) FROM runs WHERE status <> 'retrying' AND created_at < to_char(now() - interval '10 days', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )
        .await;
        assert!(dropped > 50_000, "{dropped} runs dropped by the day");
        assert_eq!(
            older - remaining_older,
            dropped as i64,
            "the count answered is the runs that went"
        );
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'runs'::regclass",
        )
        .fetch_all(&pool)
        .await
        .expect("partitions");
        assert!(partitions.contains(&kept_day), "{kept_day} was dropped");
        assert!(partitions.contains(&"runs_default".to_owned()));
        // The steps and events of the dropped days went with them.
        assert_eq!(
            scalar(&pool, "SELECT count(*) FROM steps").await,
            scalar(&pool, "SELECT count(*) FROM runs").await
        );
        assert_eq!(
            scalar(&pool, "SELECT count(*) FROM events").await,
            scalar(&pool, "SELECT count(*) FROM runs").await
        );
        drop_schema(&pool, &schema).await;
    }
}
