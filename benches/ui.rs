//! Runs-list benchmark: a SQLite store filled with 100,000 finished runs through the store API
//! (the real schema and indexes), then a real server on loopback; times the UI's runs page and
//! the admin API's listing: the first page, a filtered page, and a page deep in the history.
//!
//! Run with `cargo bench --bench ui` (optimised), or `cargo bench --profile dev --bench ui` to
//! skip the optimised build. Settings via env: BENCH_RUNS (default 100000), BENCH_REQUESTS (per
//! URL, default 40).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hookflow::run::NewRun;
use hookflow::run::{Event, RunStatus};
use hookflow::store::{OpenMode, RunCursor, Store};

const WORKFLOWS: usize = 5;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Mostly successes, some failures, a few filtered: what a busy server holds.
fn status_of(n: usize) -> RunStatus {
    match n % 50 {
        0..=3 => RunStatus::Failed,
        4 => RunStatus::Filtered,
        _ => RunStatus::Succeeded,
    }
}

fn main() {
    let runs = env_or("BENCH_RUNS", 100_000) as usize;
    let requests = env_or("BENCH_REQUESTS", 40) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store_path = dir.path().join("hookflow.db");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    for w in 0..WORKFLOWS {
        std::fs::write(
            workflows.join(format!("wf-{w}.yaml")),
            format!("name: wf-{w}\non: {{ webhook: {{ path: /hooks/wf-{w} }} }}\nsteps:\n  - name: t\n    template: \"x\"\n"),
        )
        .expect("workflow");
    }
    let cursors = runtime.block_on(fill(&store_path.display().to_string(), runs));
    runtime.block_on(measure(dir.path(), &cursors, requests));
}

/// Accept `count` runs (each with its event) and finish them, many writes in flight at once so
/// the store's group commit batches them. Returns a cursor 90% of the way into the history.
async fn fill(path: &str, count: usize) -> Option<RunCursor> {
    let store = Store::open(path, OpenMode::Serve).await.expect("store");
    let started = Instant::now();
    let base = Utc::now() - chrono::Duration::seconds(count as i64);
    let mut deep = None;
    let chunk = 512;
    let mut n = 0;
    while n < count {
        let mut tasks = tokio::task::JoinSet::new();
        for i in n..(n + chunk).min(count) {
            let store = store.clone();
            let received_at = base + chrono::Duration::seconds(i as i64);
            let event = Event {
                id: uuid::Uuid::now_v7().to_string(),
                method: "POST".into(),
                path: format!("/hooks/wf-{}", i % WORKFLOWS),
                params: BTreeMap::new(),
                query: serde_json::Map::new(),
                headers: serde_json::Map::from_iter([(
                    "content-type".to_owned(),
                    serde_json::json!("application/json"),
                )]),
                body: serde_json::json!({ "n": i }),
                raw: format!("{{\"n\": {i}}}").into_bytes(),
                received_at,
                trigger: Default::default(),
                trace: None,
            };
            let run = NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                workflow: format!("wf-{}", i % WORKFLOWS),
                version: "v1".into(),
                dedupe: None,
                concurrency: None,
            };
            if i == count / 10 {
                deep = Some(RunCursor {
                    created_at: received_at,
                    id: run.id.clone(),
                });
            }
            tasks.spawn(async move {
                store
                    .accept(Arc::new(event), std::slice::from_ref(&run))
                    .await
                    .expect("accept");
                let status = status_of(i);
                let error =
                    (status == RunStatus::Failed).then(|| "step 't' failed: boom".to_owned());
                store
                    .run_finished(&run.id, status, error, None)
                    .await
                    .expect("finish");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task");
        }
        n += chunk;
    }
    println!(
        "filled {count} runs in {:.1}s (through the store API: accept + run_finished)",
        started.elapsed().as_secs_f64()
    );
    deep
}

async fn measure(dir: &std::path::Path, deep: &Option<RunCursor>, requests: usize) {
    let settings = hookflow::settings::ServeSettings::resolve(&hookflow::settings::Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        workflows: Some(dir.join("workflows")),
        store: Some(dir.join("hookflow.db").display().to_string()),
        ..Default::default()
    })
    .expect("settings");
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = hookflow::serve::start(&settings, webhook, admin)
        .await
        .expect("server");
    let base = format!("http://{}", server.admin_addr);
    hookflow::effects::http::install_crypto_provider();
    let client = reqwest::Client::new();
    let deep = deep.as_ref().map(|c| c.encode()).expect("a deep cursor");
    let urls = [
        ("UI runs, first page", "/ui/runs".to_owned()),
        (
            "UI runs, workflow + status filter",
            "/ui/runs?workflow=wf-3&status=failed".to_owned(),
        ),
        (
            "UI runs, 90% deep (cursor)",
            format!("/ui/runs?cursor={deep}"),
        ),
        ("API runs, first page (50)", "/api/runs".to_owned()),
        (
            "API runs, workflow + status filter",
            "/api/runs?workflow=wf-3&status=failed".to_owned(),
        ),
        (
            "API runs, 90% deep (cursor)",
            format!("/api/runs?cursor={deep}"),
        ),
        (
            "API runs, time range (1 hour)",
            format!(
                "/api/runs?since={}",
                (Utc::now() - chrono::Duration::hours(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
    ];
    println!(
        "{:<38} {:>9} {:>9} {:>9}  rows",
        "GET", "median", "p95", "max"
    );
    for (label, path) in urls {
        let mut times = Vec::with_capacity(requests);
        let mut rows = 0;
        for _ in 0..requests {
            let started = Instant::now();
            let response = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("request");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let text = response.text().await.expect("body");
            times.push(started.elapsed());
            rows = text.matches("\"event_id\"").count() + text.matches("class=\"run-row\"").count();
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1000.0);
        println!(
            "{label:<38} {:>9} {:>9} {:>9}  {rows}",
            ms(at(0.5)),
            ms(at(0.95)),
            ms(at(1.0))
        );
    }
    server.shutdown().await;
}
