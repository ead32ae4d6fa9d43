//! A PostgreSQL schema of its own for one test, so tests share the machine's database and
//! still run in parallel. The database is `HOOKFLOW_TEST_POSTGRES_URL`, else the documented
//! local one, [`DEFAULT_URL`], when it answers.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use sqlx::Connection;

/// Tests that restart the database hold this exclusively; every other PostgreSQL test holds it
/// shared, so a restart never breaks a neighbour running in parallel.
static DATABASE: RwLock<()> = RwLock::new(());

enum Hold {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// The same rule across processes (two `cargo test` runs on one machine share its database):
/// a lock file, held shared or exclusive like `DATABASE`, released when the file is closed.
async fn lock_across_processes(exclusive: bool) -> std::fs::File {
    tokio::task::spawn_blocking(move || {
        let path = std::env::temp_dir().join("hookflow-test-postgres.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open the PostgreSQL test lock file");
        if exclusive {
            file.lock().expect("lock");
        } else {
            file.lock_shared().expect("lock shared");
        }
        file
    })
    .await
    .expect("join")
}

/// The PostgreSQL every machine here runs, tried when `HOOKFLOW_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `HOOKFLOW_TEST_POSTGRES_URL` (which must answer: it was asked for), else [`DEFAULT_URL`]
/// when a connection to it succeeds, else `None`.
pub async fn database_url() -> Option<String> {
    if let Ok(url) = std::env::var("HOOKFLOW_TEST_POSTGRES_URL") {
        return Some(url);
    }
    static DEFAULT_ANSWERS: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    let answers = DEFAULT_ANSWERS
        .get_or_init(|| async {
            let attempt = sqlx::PgConnection::connect(DEFAULT_URL);
            matches!(
                tokio::time::timeout(std::time::Duration::from_secs(5), attempt).await,
                Ok(Ok(_))
            )
        })
        .await;
    answers.then(|| DEFAULT_URL.to_owned())
}

/// A freshly created schema; dropped with everything in it when this goes away.
pub struct TestSchema {
    _hold: Hold,
    _across_processes: std::fs::File,
    base: String,
    pub name: String,
    /// The database URL with `search_path` set to the schema: what `--store` takes.
    pub url: String,
}

impl TestSchema {
    /// A new schema, or `None` (after a loud line) when no test database is configured.
    pub async fn create(test: &str) -> Option<Self> {
        Self::create_holding(test, false).await
    }

    /// A new schema for a test that restarts the database: no other PostgreSQL test runs
    /// meanwhile.
    pub async fn create_exclusive(test: &str) -> Option<Self> {
        Self::create_holding(test, true).await
    }

    async fn create_holding(test: &str, exclusive: bool) -> Option<Self> {
        let Some(base) = database_url().await else {
            super::skip(
                test,
                &format!(
                    "no PostgreSQL at {DEFAULT_URL}; start one or set HOOKFLOW_TEST_POSTGRES_URL"
                ),
            );
            return None;
        };
        let hold = if exclusive {
            Hold::Exclusive(DATABASE.write().unwrap_or_else(|e| e.into_inner()))
        } else {
            Hold::Shared(DATABASE.read().unwrap_or_else(|e| e.into_inner()))
        };
        let across_processes = lock_across_processes(exclusive).await;
        let name = format!("hf_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
        let _ = conn.close().await;
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
        Some(Self {
            _hold: hold,
            _across_processes: across_processes,
            base,
            name,
            url,
        })
    }

    /// Rows in a table of the schema (tests look at the shared store directly).
    pub async fn count(&self, sql: &'static str) -> i64 {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect");
        let count: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("count");
        let _ = conn.close().await;
        count
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Dropped inside a runtime, where blocking on another one is not allowed: a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&mut conn)
                .await
                .ok()?;
                conn.close().await.ok()
            })
        });
        let _ = dropped.join();
    }
}

/// Stop the PostgreSQL cluster serving the test database for `pause`, then start it again
/// (Debian's `pg_ctlcluster`, the cluster found with `pg_lsclusters` by the port of the URL).
/// `None` when the machine has no such tool.
pub fn restart_postgres(url: &str, pause: std::time::Duration) -> Option<bool> {
    let port = url::Url::parse(url)
        .ok()?
        .port()
        .unwrap_or(5432)
        .to_string();
    let clusters = std::process::Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .ok()?;
    let listing = String::from_utf8_lossy(&clusters.stdout);
    let (version, name) = listing.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&port.as_str()))
            .then(|| (fields[0].to_owned(), fields[1].to_owned()))
    })?;
    let control = |action: &str| {
        std::process::Command::new("pg_ctlcluster")
            .args([version.as_str(), name.as_str(), action])
            .status()
            .is_ok_and(|s| s.success())
    };
    let stopped = control("stop");
    std::thread::sleep(pause);
    // Started again whatever happened: the database is shared by the other tests.
    let started = control("start");
    Some(stopped && started)
}
