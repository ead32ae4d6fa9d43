//! Ingest benchmark: the optimised binary serves a filter + template + http workflow whose http
//! step calls a receiver on loopback; `wrk` drives webhooks at it. Measured in one run: the
//! durable server (SQLite file), the same server with persistence off (`--store :memory:`), and
//! a bare axum handler. Prints accepted requests/s and latency from wrk, how long the worker took
//! to finish every accepted run, the server's RSS (idle, largest during the load and the drain,
//! after), and the ratios.
//!
//! Run with `cargo bench --bench ingest` (needs `wrk`: `apt-get install wrk`). Settings via env:
//! BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 32), BENCH_THREADS (default 2).
//!
//! `BENCH_MODE=stores` compares stores with the same workflow and load instead: one process on
//! SQLite, then one, two and three processes on one PostgreSQL database (from
//! `BENCH_POSTGRES_URL` or `HOOKFLOW_TEST_POSTGRES_URL`; a fresh schema each). With several
//! processes, one `wrk` per process shares the connections; accepted/s is their sum, p50 their
//! mean and p99 their maximum.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The bench workflow; `RECEIVER` is replaced by the receiver's URL.
const WORKFLOW: &str = include_str!("ingest-workflow.yaml");

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One measured load: a hookflow server on `store`, or (with `store: None`) the bare axum handler.
struct Measured {
    label: String,
    requests_per_second: f64,
    p50: String,
    p99: String,
}

struct Load {
    seconds: u64,
    connections: u64,
    threads: u64,
    script: PathBuf,
}

/// What both modes share: the binary, a counting receiver on its own runtime, a directory with
/// the bench workflow calling it, the payload and the wrk script posting it.
struct Setup {
    binary: PathBuf,
    runtime: tokio::runtime::Runtime,
    received: Arc<AtomicU64>,
    dir: tempfile::TempDir,
    body: String,
    script: PathBuf,
}

fn setup() -> Setup {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Cargo builds the binary with the same (optimised) profile as this bench.
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_hookflow"));
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed (apt-get install wrk)");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let received = Arc::new(AtomicU64::new(0));
    let receiver_addr = runtime.block_on(start_receiver(Arc::clone(&received)));
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("bench.yaml"),
        WORKFLOW.replace("RECEIVER", &format!("http://{receiver_addr}")),
    )
    .expect("write workflow");
    let body =
        std::fs::read_to_string(root.join("tests/fixtures/github/push.json")).expect("payload");
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n",
            lua_string(&body)
        ),
    )
    .expect("write script");
    Setup {
        binary,
        runtime,
        received,
        dir,
        body,
        script,
    }
}

fn main() {
    if std::env::var("BENCH_MODE").is_ok_and(|m| m == "stores") {
        compare_stores();
        return;
    }
    let Setup {
        binary,
        runtime: _receiver_runtime,
        received,
        dir,
        body,
        script,
    } = setup();
    let load = Load {
        seconds: env_or("BENCH_SECONDS", 10),
        connections: env_or("BENCH_CONNECTIONS", 32),
        threads: env_or("BENCH_THREADS", 2),
        script,
    };
    println!(
        "hookflow ingest benchmark: filter + template + http workflow, {} byte GitHub push payload",
        body.len()
    );
    println!(
        "wrk -t{} -c{} -d{}s --latency against each target in turn\n",
        load.threads, load.connections, load.seconds
    );

    let store_path = dir.path().join("bench.db").display().to_string();
    let durable = measure_hookflow(
        "hookflow, durable (SQLite file, fsync before 202)",
        &binary,
        dir.path(),
        &store_path,
        &load,
        &received,
    );
    let in_memory = measure_hookflow(
        "hookflow, persistence off (--store :memory:)",
        &binary,
        dir.path(),
        ":memory:",
        &load,
        &received,
    );
    // The same load against a bare axum handler that parses the body and answers 202 without
    // storing or running anything: the ceiling of the HTTP path itself.
    let raw_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let raw_addr = raw_runtime.block_on(start_raw_ingest());
    let raw_report = run_wrk(&load, &format!("http://{raw_addr}/hooks/bench"));
    println!("== bare axum handler (parse + 202, no store, no runs)\n{raw_report}");
    let raw = Measured {
        label: "bare axum handler (parse + 202)".into(),
        requests_per_second: requests_per_second(&raw_report),
        p50: percentile(&raw_report, "50%"),
        p99: percentile(&raw_report, "99%"),
    };
    println!("summary:");
    for m in [&durable, &in_memory, &raw] {
        println!(
            "  {:<52} {:>8.0} req/s  p50 {:>9}  p99 {:>9}",
            m.label, m.requests_per_second, m.p50, m.p99
        );
    }
    println!(
        "  durable / persistence off: {:.1}%   durable / bare axum: {:.1}%",
        100.0 * durable.requests_per_second / in_memory.requests_per_second.max(1.0),
        100.0 * durable.requests_per_second / raw.requests_per_second.max(1.0)
    );
}

/// Serve the bench workflow on `store`, drive the load, wait until every accepted run has called
/// the receiver, and stop the server.
fn measure_hookflow(
    label: &str,
    binary: &Path,
    dir: &Path,
    store: &str,
    load: &Load,
    received: &AtomicU64,
) -> Measured {
    let (mut server, webhook, admin) = start_server(binary, dir, store);
    let idle_rss = rss_kib(server.id());
    let sampler = RssSampler::start(server.id());
    let received_before = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let report = run_wrk(load, &format!("{webhook}/hooks/bench"));
    println!("== {label}\n{report}");
    let sent = report
        .lines()
        .find_map(|l| {
            l.trim()
                .split(" requests in ")
                .next()
                .filter(|_| l.contains(" requests in "))
        })
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let non_2xx = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let accepted = sent.saturating_sub(non_2xx);

    // Every accepted run calls the receiver once; wait for the worker to catch up.
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = || received.load(Ordering::Relaxed) - received_before;
    while done() < accepted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained = started.elapsed();
    println!("accepted (2xx): {accepted}, refused: {non_2xx}");
    println!(
        "runs completed: {} in {:.1}s from the start of the load ({:.0} runs/s end to end)",
        done(),
        drained.as_secs_f64(),
        done() as f64 / drained.as_secs_f64()
    );
    let failed = Command::new("curl")
        .args(["-s", &format!("{admin}/api/runs?status=failed&limit=1")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    println!("failed runs (first): {failed}");
    let peak_rss = sampler.stop();
    println!(
        "RSS: idle {:.1} MiB, largest during the load and the drain {:.1} MiB, after {:.1} MiB\n",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        rss_kib(server.id()) as f64 / 1024.0
    );
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    assert!(
        done() >= accepted,
        "lost runs: {accepted} accepted, {} completed",
        done()
    );
    Measured {
        label: label.to_owned(),
        requests_per_second: requests_per_second(&report),
        p50: percentile(&report, "50%"),
        p99: percentile(&report, "99%"),
    }
}

/// The resident set of process `pid` now, in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples a process's RSS every 50 ms and keeps the largest.
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut largest = 0;
            while !stopped.load(Ordering::Relaxed) {
                largest = largest.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            largest
        });
        Self { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// wrk's report of one load against `url`.
fn run_wrk(load: &Load, url: &str) -> String {
    let output = Command::new("wrk")
        .args([
            format!("-t{}", load.threads),
            format!("-c{}", load.connections),
            format!("-d{}s", load.seconds),
            "--latency".into(),
            "-s".into(),
            load.script.display().to_string(),
            url.to_owned(),
        ])
        .output()
        .expect("run wrk");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn requests_per_second(report: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

fn percentile(report: &str, which: &str) -> String {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(which))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

async fn start_raw_ingest() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
        match parsed {
            Ok(_) => (
                axum::http::StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "run_ids": [uuid::Uuid::now_v7().to_string()] })),
            ),
            Err(e) => (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({ "error": e.to_string() })),
            ),
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A Lua long string holding the body exactly.
fn lua_string(text: &str) -> String {
    let mut level = String::new();
    while text.contains(&format!("]{level}]")) {
        level.push('=');
    }
    format!("[{level}[{text}]{level}]")
}

fn start_server(binary: &Path, dir: &Path, store: &str) -> (std::process::Child, String, String) {
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--store",
            store,
        ])
        .current_dir(dir)
        .env("RUST_LOG", "warn,hookflow::server=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn hookflow");
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no stderr pipe");
    };
    let mut lines = BufReader::new(stderr).lines();
    let addresses = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("hookflow is serving") => {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .map(|a| format!("http://{a}"))
                };
                break field("webhook_addr=").zip(field("admin_addr="));
            }
            Some(Ok(_)) => continue,
            _ => break None,
        }
    };
    let Some((webhook, admin)) = addresses else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("hookflow exited before reporting its addresses");
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, webhook, admin)
}

async fn start_receiver(count: Arc<AtomicU64>) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move || {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// One line of the store comparison.
struct StoreRun {
    store: &'static str,
    processes: usize,
    accepted_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    refused: u64,
    drained: Duration,
}

/// `BENCH_MODE=stores`: the same workflow and load on SQLite (one process) and on PostgreSQL
/// (one, two, three processes).
fn compare_stores() {
    let Setup {
        binary,
        runtime,
        received,
        dir,
        body,
        script,
    } = setup();
    let postgres = std::env::var("BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("HOOKFLOW_TEST_POSTGRES_URL"))
        .ok();
    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 32);
    println!(
        "hookflow store comparison: filter + template + http workflow, {} byte payload, {connections} connections, {seconds}s per line\n",
        body.len()
    );
    let mut results = Vec::new();
    let sqlite = dir.path().join("bench.db").display().to_string();
    results.push(measure_store(
        &binary,
        dir.path(),
        "sqlite",
        &sqlite,
        1,
        &script,
        &received,
        seconds,
        connections,
    ));
    match &postgres {
        None => println!(
            "PostgreSQL lines skipped: set BENCH_POSTGRES_URL or HOOKFLOW_TEST_POSTGRES_URL"
        ),
        Some(base) => {
            for processes in 1..=3 {
                let schema = format!("hf_bench_{}", uuid::Uuid::now_v7().simple());
                runtime.block_on(schema_ddl(base, &format!("CREATE SCHEMA {schema}")));
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
                results.push(measure_store(
                    &binary,
                    dir.path(),
                    "postgres",
                    &url,
                    processes,
                    &script,
                    &received,
                    seconds,
                    connections,
                ));
                runtime.block_on(schema_ddl(base, &format!("DROP SCHEMA {schema} CASCADE")));
            }
        }
    }
    println!("\n| store | processes | accepted/s | p50 | p99 | refused | all runs done after |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &results {
        println!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.1} s |",
            r.store,
            r.processes,
            r.accepted_per_second,
            r.p50_ms,
            r.p99_ms,
            r.refused,
            r.drained.as_secs_f64()
        );
    }
}

async fn schema_ddl(base: &str, statement: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    let _ = conn.close().await;
}

#[allow(clippy::too_many_arguments)]
fn measure_store(
    binary: &Path,
    dir: &Path,
    store: &'static str,
    location: &str,
    processes: usize,
    script: &Path,
    received: &AtomicU64,
    seconds: u64,
    connections: u64,
) -> StoreRun {
    let servers: Vec<_> = (0..processes)
        .map(|_| start_server(binary, dir, location))
        .collect();
    let before = received.load(Ordering::Relaxed);
    let started = Instant::now();
    // One wrk per process, sharing the connections.
    let per_process = Load {
        seconds,
        connections: (connections / processes as u64).max(1),
        threads: 1,
        script: script.to_path_buf(),
    };
    let reports: Vec<String> = std::thread::scope(|scope| {
        let loads: Vec<_> = servers
            .iter()
            .map(|(_, webhook, _)| {
                let url = format!("{webhook}/hooks/bench");
                let load = &per_process;
                scope.spawn(move || run_wrk(load, &url))
            })
            .collect();
        loads
            .into_iter()
            .map(|l| l.join().expect("wrk thread"))
            .collect()
    });
    let mut accepted = 0;
    let mut refused = 0;
    for report in &reports {
        let sent = report
            .lines()
            .find_map(|l| {
                l.trim()
                    .split(" requests in ")
                    .next()
                    .filter(|_| l.contains(" requests in "))
            })
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let non_2xx = report
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        accepted += sent.saturating_sub(non_2xx);
        refused += non_2xx;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) - before < accepted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained = started.elapsed();
    let done = received.load(Ordering::Relaxed) - before;
    for (mut server, _, _) in servers {
        let _ = Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status();
        let _ = server.wait();
    }
    let latencies = |which: &str| -> Vec<f64> {
        reports
            .iter()
            .filter_map(|r| milliseconds(&percentile(r, which)))
            .collect()
    };
    let p50s = latencies("50%");
    let p99s = latencies("99%");
    let result = StoreRun {
        store,
        processes,
        accepted_per_second: accepted as f64 / seconds as f64,
        p50_ms: p50s.iter().sum::<f64>() / p50s.len().max(1) as f64,
        p99_ms: p99s.iter().copied().fold(0.0, f64::max),
        refused,
        drained,
    };
    println!(
        "{store} x{processes}: {accepted} accepted, {refused} refused, {done} runs done in {:.1}s",
        drained.as_secs_f64()
    );
    assert!(
        done >= accepted,
        "lost runs: {accepted} accepted, {done} completed"
    );
    result
}

/// wrk's `1.23ms`, `450.00us`, `1.20s` as milliseconds.
fn milliseconds(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(number / 1000.0),
        "ms" => Some(number),
        "s" => Some(number * 1000.0),
        "m" => Some(number * 60_000.0),
        _ => None,
    }
}
