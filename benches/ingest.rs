//! Ingest benchmark: the optimised binary serves a filter + template + http workflow whose http
//! step calls a receiver on loopback; `wrk` drives webhooks at it. Measured in one run: the
//! durable server (SQLite file), the same server with persistence off (`--store :memory:`), and
//! a bare axum handler. Prints accepted requests/s and latency from wrk, how long the worker took
//! to finish every accepted run, the server's RSS (idle, largest during the load and the drain,
//! after), and the ratios.
//!
//! Run with `cargo bench --bench ingest` (needs `wrk`: `apt-get install wrk`). Settings via env:
//! BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 32), BENCH_THREADS (default 2);
//! BENCH_SERVER_PRELOAD, a malloc library the hookflow server alone runs with (`LD_PRELOAD`);
//! BENCH_BINARY, another hookflow build to serve (`target/profiling/hookflow` for `perf`);
//! BENCH_SERVER_LOG, the servers' `RUST_LOG` (e.g. `warn,hookflow::store::postgres::batch=debug`
//! for each batch's timings), their log kept in `hookflow-bench-server-<pid>.log` in the
//! temporary directory.
//!
//! `BENCH_MODE=stores` compares stores with the same workflow and load instead: one process on
//! SQLite, then one, two and three processes on one PostgreSQL database (from
//! `BENCH_POSTGRES_URL` or `HOOKFLOW_TEST_POSTGRES_URL`, else the local
//! `postgres://postgres@127.0.0.1:5432/test` when it answers; a fresh schema each). With several
//! processes, one `wrk` per process shares the connections; accepted/s is their sum, p50 their
//! mean and p99 their maximum. Then `pgbench` gives the database's own rate for one durable
//! insert of the payload per transaction, with the same clients, and the targets' ratios.
//! `BENCH_STORES` picks lines, e.g. `postgres1,postgres3` (default
//! `sqlite,postgres1,postgres2,postgres3,pgbench`), for a quicker look at one of them.
//!
//! `BENCH_MODE=sync` drives the same load at a `respond: sync` workflow (filter + http to the
//! receiver + a `respond` step; `ingest-sync-workflow.yaml`) on a SQLite file, checks that every
//! answer is the `respond` step's, and compares it with a bare axum handler that parses the body,
//! makes one HTTP call to the same receiver and answers.
//!
//! `BENCH_MODE=latency` sends webhooks one at a time on one keep-alive connection (no `wrk`) to
//! the durable server and times, per webhook, the 202 and the moment the run's http call
//! reaches the receiver. BENCH_REQUESTS (default 2000) are measured after 200 to warm up.
//!
//! `BENCH_MODE=start` times a server with 100 workflows from its spawn to the 202 of its first
//! webhook, ten times on a fresh SQLite store each, and reads the idle RSS of servers with 1 and
//! 100 workflows, 2 s after start and again after one webhook has run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The bench workflow; `RECEIVER` is replaced by the receiver's URL.
const WORKFLOW: &str = include_str!("ingest-workflow.yaml");

/// The `respond: sync` workflow of `BENCH_MODE=sync`; `RECEIVER` as above.
const SYNC_WORKFLOW: &str = include_str!("ingest-sync-workflow.yaml");

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

impl Measured {
    fn from_wrk(label: &str, report: &str) -> Self {
        Self {
            label: label.to_owned(),
            requests_per_second: requests_per_second(report),
            p50: percentile(report, "50%"),
            p99: percentile(report, "99%"),
        }
    }

    fn print(&self) {
        println!(
            "  {:<52} {:>8.0} req/s  p50 {:>9}  p99 {:>9}",
            self.label, self.requests_per_second, self.p50, self.p99
        );
    }
}

struct Load {
    seconds: u64,
    connections: u64,
    threads: u64,
    script: PathBuf,
}

/// What the wrk modes share: the binary, a counting receiver on its own runtime, a directory
/// with the bench workflow calling it, the payload and the wrk script posting it.
struct Setup {
    binary: PathBuf,
    runtime: tokio::runtime::Runtime,
    received: Arc<AtomicU64>,
    /// The receiver's base URL, `http://127.0.0.1:port`.
    receiver: String,
    dir: tempfile::TempDir,
    body: String,
    script: PathBuf,
}

fn setup() -> Setup {
    let binary = hookflow_binary();
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed (apt-get install wrk)");
        std::process::exit(2);
    }
    let runtime = loopback_runtime(1);
    let received = Arc::new(AtomicU64::new(0));
    let receiver_addr = runtime.block_on(start_receiver(Arc::clone(&received)));
    let receiver = format!("http://{receiver_addr}");
    let dir = bench_dir([("bench.yaml".to_owned(), bench_workflow(&receiver))]);
    let body = push_payload();
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
        receiver,
        dir,
        body,
        script,
    }
}

/// Cargo builds the binary with the same (optimised) profile as this bench.
/// The server under test: the bench profile's build, or `BENCH_BINARY` (the profiling build,
/// to take a `perf` profile with symbols during a run).
fn hookflow_binary() -> PathBuf {
    std::env::var_os("BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hookflow")))
}

/// The 8.8 KB GitHub push every mode posts.
fn push_payload() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("tests/fixtures/github/push.json")).expect("payload")
}

/// A runtime of its own for the loopback receiver or a baseline handler, so they do not share
/// threads with the bench's clients.
fn loopback_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The bench workflow calling `receiver`.
fn bench_workflow(receiver: &str) -> String {
    WORKFLOW.replace("RECEIVER", receiver)
}

/// A temporary directory whose `workflows/` folder holds `files` (file name, YAML); servers run
/// in it and keep their stores there.
fn bench_dir(files: impl IntoIterator<Item = (String, String)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    for (name, yaml) in files {
        std::fs::write(workflows.join(name), yaml).expect("write workflow");
    }
    dir
}

fn load_from_env(script: PathBuf) -> Load {
    Load {
        seconds: env_or("BENCH_SECONDS", 10),
        connections: env_or("BENCH_CONNECTIONS", 32),
        threads: env_or("BENCH_THREADS", 2),
        script,
    }
}

fn main() {
    match std::env::var("BENCH_MODE").as_deref() {
        Err(_) | Ok("") => compare_ingest(),
        Ok("stores") => compare_stores(),
        Ok("sync") => compare_sync(),
        Ok("latency") => measure_latency(),
        Ok("start") => measure_start(),
        Ok(other) => {
            eprintln!("unknown BENCH_MODE `{other}`; expected stores, sync, latency or start");
            std::process::exit(2);
        }
    }
}

/// The default mode: durable, persistence off and the bare handler under the same load.
fn compare_ingest() {
    let Setup {
        binary,
        runtime: _receiver_runtime,
        received,
        dir,
        body,
        script,
        ..
    } = setup();
    let load = load_from_env(script);
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
    let raw_runtime = loopback_runtime(2);
    let raw_addr = raw_runtime.block_on(start_raw_ingest());
    let raw_report = run_wrk(&load, &format!("http://{raw_addr}/hooks/bench"));
    println!("== bare axum handler (parse + 202, no store, no runs)\n{raw_report}");
    let raw = Measured::from_wrk("bare axum handler (parse + 202)", &raw_report);
    println!("summary:");
    for m in [&durable, &in_memory, &raw] {
        m.print();
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
    let (server, webhook, admin) = start_server(binary, dir, store);
    let idle_rss = rss_kib(server.id());
    let sampler = RssSampler::start(server.id());
    let received_before = received.load(Ordering::Relaxed);
    let started = Instant::now();
    let report = run_wrk(load, &format!("{webhook}/hooks/bench"));
    println!("== {label}\n{report}");
    let (sent, non_2xx) = wrk_counts(&report);
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
    stop_server(server);
    assert!(
        done() >= accepted,
        "lost runs: {accepted} accepted, {} completed",
        done()
    );
    Measured::from_wrk(label, &report)
}

/// The resident set of process `pid` now, in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A KiB figure of `/proc/<pid>/status` (`VmRSS:`, `RssAnon:`, `RssFile:`); 0 once it is gone.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A server's resident memory at one moment: all of it, and the part that is its own heap and
/// stacks (anonymous) rather than the binary's code and data mapped from the page cache, which
/// is shared and which the kernel can drop and read again.
#[derive(Clone, Copy)]
struct Resident {
    total_kib: u64,
    anonymous_kib: u64,
}

impl Resident {
    fn of(pid: u32) -> Self {
        Self {
            total_kib: status_kib(pid, "VmRSS:"),
            anonymous_kib: status_kib(pid, "RssAnon:"),
        }
    }
}

impl std::fmt::Display for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MiB (anonymous {:.1} MiB)",
            self.total_kib as f64 / 1024.0,
            self.anonymous_kib as f64 / 1024.0
        )
    }
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

/// wrk's count of requests answered and of those answered with a status of 400 or more.
fn wrk_counts(report: &str) -> (u64, u64) {
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
    (sent, non_2xx)
}

/// SIGTERM, then wait for the server to exit.
fn stop_server(mut server: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}

/// Serve `app` on a fresh loopback port of the current runtime.
async fn serve_on_loopback(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn start_raw_ingest() -> SocketAddr {
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
    serve_on_loopback(app).await
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
    let mut command = Command::new(binary);
    // Another malloc for the server alone (not wrk, the receiver or the baselines): an
    // allocator measured without a rebuild.
    if let Ok(preload) = std::env::var("BENCH_SERVER_PRELOAD") {
        command.env("LD_PRELOAD", preload);
    }
    let mut child = command
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
        .env("RUST_LOG", server_log_filter())
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
    let kept = std::env::var_os("BENCH_SERVER_LOG").map(|_| {
        let path = std::env::temp_dir().join(format!("hookflow-bench-server-{}.log", child.id()));
        eprintln!("server log: {}", path.display());
        std::fs::File::create(path).expect("create the server log")
    });
    std::thread::spawn(move || match kept {
        Some(mut file) => {
            for line in lines.map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
            }
        }
        None => for _ in lines {},
    });
    (child, webhook, admin)
}

/// The servers' `RUST_LOG`: `BENCH_SERVER_LOG` when set; else warnings and the line giving
/// the addresses.
fn server_log_filter() -> String {
    let serving = "hookflow::serve=info";
    match std::env::var("BENCH_SERVER_LOG") {
        Ok(filter) => format!("{filter},{serving}"),
        Err(_) => format!("warn,{serving}"),
    }
}

async fn start_receiver(count: Arc<AtomicU64>) -> SocketAddr {
    let app = axum::Router::new().fallback(move || {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    serve_on_loopback(app).await
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
    /// The largest RSS of any of the processes, during the load and the drain.
    peak_rss_kib: u64,
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
        ..
    } = setup();
    let postgres = std::env::var("BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("HOOKFLOW_TEST_POSTGRES_URL"))
        .ok()
        .or_else(|| {
            // The PostgreSQL every machine here runs, when it answers.
            let local = "postgres://postgres@127.0.0.1:5432/test";
            TcpStream::connect_timeout(&"127.0.0.1:5432".parse().ok()?, Duration::from_secs(1))
                .ok()
                .map(|_| local.to_owned())
        });
    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 32);
    println!(
        "hookflow store comparison: filter + template + http workflow, {} byte payload, {connections} connections, {seconds}s per line\n",
        body.len()
    );
    let lines = std::env::var("BENCH_STORES")
        .unwrap_or_else(|_| "sqlite,postgres1,postgres2,postgres3,pgbench".to_owned());
    let wanted = |line: &str| lines.split(',').any(|l| l.trim() == line);
    let mut results = Vec::new();
    let sqlite = dir.path().join("bench.db").display().to_string();
    if wanted("sqlite") {
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
    }
    match &postgres {
        None => println!(
            "PostgreSQL lines skipped: nothing answers on 127.0.0.1:5432; set BENCH_POSTGRES_URL"
        ),
        Some(base) => {
            for processes in (1..=3).filter(|n| wanted(&format!("postgres{n}"))) {
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
    let pgbench = postgres
        .as_deref()
        .filter(|_| wanted("pgbench"))
        .and_then(|base| pgbench_single_inserts(base, body.as_bytes(), seconds, connections));
    println!(
        "\n| store | processes | accepted/s | p50 | p99 | refused | all runs done after | largest RSS of a process |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &results {
        println!(
            "| {} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {:.1} s | {:.1} MiB |",
            r.store,
            r.processes,
            r.accepted_per_second,
            r.p50_ms,
            r.p99_ms,
            r.refused,
            r.drained.as_secs_f64(),
            r.peak_rss_kib as f64 / 1024.0
        );
    }
    let one = results
        .iter()
        .find(|r| r.store == "postgres" && r.processes == 1);
    let three = results
        .iter()
        .find(|r| r.store == "postgres" && r.processes == 3);
    if let Some(tps) = pgbench {
        println!(
            "\npgbench, one INSERT of a {} byte row per transaction, {connections} clients, {seconds}s: {tps:.0} tps",
            body.len()
        );
        if let Some(one) = one {
            println!(
                "one process on PostgreSQL: {:.2}x the pgbench single-insert rate (target 0.30x, >= 3,000 accepted/s)",
                one.accepted_per_second / tps
            );
        }
    }
    if let (Some(one), Some(three)) = (one, three) {
        println!(
            "three processes: {:.2}x one process (target 1.3x)",
            three.accepted_per_second / one.accepted_per_second
        );
    }
}

/// The database's own rate for the same durable write: `pgbench` with one `INSERT` of a row
/// the size of the payload per transaction (`synchronous_commit` as the server has it), on a
/// table of a scratch schema. `None` when pgbench is not installed.
fn pgbench_single_inserts(base: &str, body: &[u8], seconds: u64, clients: u64) -> Option<f64> {
    let runtime = loopback_runtime(1);
    let schema = format!("hf_pgbench_{}", uuid::Uuid::now_v7().simple());
    // The payload sits in a table and each transaction inserts a copy: the row is the
    // webhook's own bytes (compressed as hookflow's stored body is), and pgbench's script needs
    // no quoting of it.
    let payload = String::from_utf8_lossy(body);
    runtime.block_on(schema_ddl(
        base,
        &format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.events (id bigserial PRIMARY KEY, body text NOT NULL);
             CREATE TABLE {schema}.payload (body text NOT NULL);
             INSERT INTO {schema}.payload VALUES ($hf${payload}$hf$)"
        ),
    ));
    let script = std::env::temp_dir().join(format!("{schema}.sql"));
    std::fs::write(
        &script,
        format!("INSERT INTO {schema}.events (body) SELECT body FROM {schema}.payload;\n"),
    )
    .expect("write the pgbench script");
    let output = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            base,
        ])
        .output();
    let _ = std::fs::remove_file(&script);
    runtime.block_on(schema_ddl(base, &format!("DROP SCHEMA {schema} CASCADE")));
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            println!(
                "pgbench failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return None;
        }
        Err(err) => {
            println!("pgbench not run: {err}");
            return None;
        }
    };
    let report = String::from_utf8_lossy(&output.stdout);
    report
        .lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line.trim_start_matches("tps = ").split(' ').next())
        .and_then(|tps| tps.parse().ok())
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
    let samplers: Vec<RssSampler> = servers
        .iter()
        .map(|(server, _, _)| RssSampler::start(server.id()))
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
        let (sent, non_2xx) = wrk_counts(report);
        accepted += sent.saturating_sub(non_2xx);
        refused += non_2xx;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) - before < accepted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained = started.elapsed();
    let done = received.load(Ordering::Relaxed) - before;
    let peak_rss_kib = samplers
        .into_iter()
        .map(RssSampler::stop)
        .max()
        .unwrap_or(0);
    for (server, _, _) in servers {
        stop_server(server);
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
        peak_rss_kib,
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

/// `BENCH_MODE=sync`: the `respond: sync` workflow under the default load, on a SQLite file,
/// against a bare axum handler doing the same round trip.
fn compare_sync() {
    let Setup {
        binary,
        runtime: _receiver_runtime,
        received,
        receiver,
        dir,
        body,
        script,
    } = setup();
    std::fs::write(
        dir.path().join("workflows/sync.yaml"),
        SYNC_WORKFLOW.replace("RECEIVER", &receiver),
    )
    .expect("write sync workflow");
    let load = load_from_env(script);
    println!(
        "hookflow respond: sync benchmark: filter + http + respond workflow, {} byte GitHub push payload",
        body.len()
    );
    println!(
        "wrk -t{} -c{} -d{}s --latency against each target in turn\n",
        load.threads, load.connections, load.seconds
    );
    let store = dir.path().join("bench.db").display().to_string();
    let (server, webhook, _) = start_server(&binary, dir.path(), &store);
    let hookflow = measure_round_trips(
        "hookflow, respond: sync (SQLite file)",
        &format!("{webhook}/hooks/sync"),
        &load,
        &received,
    );
    check_sync_answer(&webhook, &body);
    stop_server(server);

    let handler_runtime = loopback_runtime(2);
    let handler = handler_runtime.block_on(start_forwarding_handler(receiver));
    let bare = measure_round_trips(
        "axum in → HTTP out → answer",
        &format!("http://{handler}/hooks/sync"),
        &load,
        &received,
    );
    println!("summary:");
    hookflow.print();
    bare.print();
    println!(
        "  hookflow / bare axum: {:.1}%   target: hookflow ≥ 5,000 req/s",
        100.0 * hookflow.requests_per_second / bare.requests_per_second.max(1.0)
    );
}

/// Drive `url` with wrk; every answer must be a 2xx and every answer must have called the
/// receiver first.
fn measure_round_trips(label: &str, url: &str, load: &Load, received: &AtomicU64) -> Measured {
    let before = received.load(Ordering::Relaxed);
    let report = run_wrk(load, url);
    println!("== {label}\n{report}");
    let (sent, non_2xx) = wrk_counts(&report);
    let called = received.load(Ordering::Relaxed) - before;
    assert_eq!(non_2xx, 0, "{label}: {non_2xx} answers were not 2xx");
    assert!(
        called >= sent,
        "{label}: {sent} answers but only {called} calls reached the receiver"
    );
    Measured::from_wrk(label, &report)
}

/// One more webhook after the load: its answer must be the `respond` step's.
fn check_sync_answer(webhook: &str, body: &str) {
    let (status, answer) = Connection::open(webhook).post("/hooks/sync", body);
    let answer: Value = serde_json::from_slice(&answer).expect("the sync answer is JSON");
    let sha = push_sha(body);
    assert_eq!(status, 200, "sync answer: {answer}");
    assert_eq!(answer, json!({ "notified": 200, "sha": sha }));
    println!("one more webhook after the load: {status} {answer}\n");
}

/// The baseline of `BENCH_MODE=sync`: parse the body, POST its sha to the receiver with a client
/// built once, answer 200 with a small JSON.
async fn start_forwarding_handler(receiver: String) -> SocketAddr {
    // reqwest is built without a crypto provider; hookflow installs the same one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().build().expect("HTTP client");
    let url = format!("{receiver}/notify");
    let app = axum::Router::new()
        .fallback(move |body: axum::body::Bytes| forward(client.clone(), url.clone(), body));
    serve_on_loopback(app).await
}

async fn forward(
    client: reqwest::Client,
    url: String,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    use axum::http::StatusCode;
    let event: Value = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": e.to_string() })),
            );
        }
    };
    let sha = event.get("after").cloned().unwrap_or(Value::Null);
    let sent = client.post(url).json(&json!({ "sha": sha })).send().await;
    // Reading the answer's body to its end hands the connection back to the pool.
    match sent {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let _ = answer.bytes().await;
            let answer = json!({ "notified": status, "sha": sha });
            (StatusCode::OK, axum::Json(answer))
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            axum::Json(json!({ "error": e.to_string() })),
        ),
    }
}

/// The `after` sha of a push body.
fn push_sha(body: &str) -> String {
    let push: Value = serde_json::from_str(body).expect("the payload is JSON");
    push["after"]
        .as_str()
        .expect("the push has a sha")
        .to_owned()
}

/// What one webhook sent alone took.
struct Timing {
    /// From just before sending to its 202 read in full.
    answered: Duration,
    /// From just before sending to the run's http call reaching the receiver.
    called: Duration,
}

/// `BENCH_MODE=latency`: webhooks one at a time to the durable server.
fn measure_latency() {
    let binary = hookflow_binary();
    let requests = env_or("BENCH_REQUESTS", 2000) as usize;
    let receiver_runtime = loopback_runtime(1);
    let (arrived, arrivals) = mpsc::channel();
    let receiver = receiver_runtime.block_on(start_timed_receiver(arrived));
    let receiver = format!("http://{receiver}");
    let dir = bench_dir([("bench.yaml".to_owned(), bench_workflow(&receiver))]);
    let body = push_payload();
    let store = dir.path().join("bench.db").display().to_string();
    println!(
        "hookflow latency benchmark: filter + template + http workflow, durable SQLite store, one {} byte webhook at a time on one keep-alive connection, {requests} measured after 200\n",
        body.len()
    );
    let (server, webhook, _) = start_server(&binary, dir.path(), &store);
    let mut connection = Connection::open(&webhook);
    let original_sha = push_sha(&body);
    let mut send = |n: usize| {
        // A sha of its own per webhook, so the receiver's arrival is matched to its webhook.
        let sha = format!("{n:040x}");
        let webhook = body.replace(&original_sha, &sha);
        time_one_webhook(&mut connection, &webhook, &sha, &arrivals)
    };
    (0..200).for_each(|n| {
        send(n);
    });
    let timings: Vec<Timing> = (200..200 + requests).map(&mut send).collect();
    stop_server(server);
    let (mut answered, mut called): (Vec<_>, Vec<_>) =
        timings.iter().map(|t| (t.answered, t.called)).unzip();
    print_spread("webhook in → outgoing call arrives", &mut called);
    print_spread("answer alone (time to the 202)", &mut answered);
    println!("targets: in → out p50 ≤ 1 ms, p99 ≤ 3 ms");
}

fn time_one_webhook(
    connection: &mut Connection,
    webhook: &str,
    sha: &str,
    arrivals: &mpsc::Receiver<(String, Instant)>,
) -> Timing {
    let sent = Instant::now();
    let (status, answer) = connection.post("/hooks/bench", webhook);
    let answered = sent.elapsed();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    let arrived = loop {
        let (seen, at) = arrivals
            .recv_timeout(Duration::from_secs(10))
            .expect("the run's http call reaches the receiver within 10 s");
        if seen == sha {
            break at;
        }
    };
    Timing {
        answered,
        called: arrived.duration_since(sent),
    }
}

/// A receiver that reports the moment each call arrives, with the `sha` of its JSON body.
async fn start_timed_receiver(arrived: mpsc::Sender<(String, Instant)>) -> SocketAddr {
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let at = Instant::now();
        let arrived = arrived.clone();
        async move {
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            let sha = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|call| call.get("sha")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = arrived.send((sha, at));
            "ok"
        }
    });
    serve_on_loopback(app).await
}

/// p50, p90, p99 and max of `samples`, sorted in place.
fn print_spread(label: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len().saturating_sub(1)) as f64 * q).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    println!(
        "  {label:<40} p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        as_ms(at(0.5)),
        as_ms(at(0.9)),
        as_ms(at(0.99)),
        as_ms(at(1.0))
    );
}

fn as_ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `BENCH_MODE=start`: time to the first answer with 100 workflows, and idle RSS.
fn measure_start() {
    let binary = hookflow_binary();
    let receiver_runtime = loopback_runtime(1);
    let received = Arc::new(AtomicU64::new(0));
    let receiver = receiver_runtime.block_on(start_receiver(Arc::clone(&received)));
    let receiver = format!("http://{receiver}");
    let many = bench_dir((0..100).map(|n| numbered_workflow(&receiver, n)));
    let one = bench_dir([numbered_workflow(&receiver, 99)]);
    let body = push_payload();
    println!("hookflow start benchmark: spawn → the 202 of a first webhook to /hooks/bench-99\n");
    for (workflows, dir) in [(100, &many), (1, &one)] {
        let mut starts: Vec<Duration> = (0..10)
            .map(|n| {
                let store = dir.path().join(format!("start-{n}.db"));
                time_to_first_answer(&binary, dir.path(), &store, &body)
            })
            .collect();
        starts.sort_unstable();
        println!(
            "  {workflows:>3} workflow(s), fresh SQLite store, 10 starts: min {:.1} ms  median {:.1} ms  max {:.1} ms",
            as_ms(starts[0]),
            as_ms((starts[(starts.len() - 1) / 2] + starts[starts.len() / 2]) / 2),
            as_ms(starts[starts.len() - 1])
        );
    }
    println!();
    for (workflows, dir) in [(1, &one), (100, &many)] {
        let (idle, after_one) = idle_rss(&binary, dir.path(), &body, &received);
        println!(
            "  {workflows:>3} workflow(s): RSS 2 s after start {idle}, after one webhook has run {after_one}"
        );
    }
    println!("targets: start ≤ 50 ms with 100 workflows, idle RSS ≤ 15 MiB");
    println!(
        "(the rest of the RSS besides the anonymous part is the binary's code, shared and reclaimable)"
    );
}

/// The bench workflow as `bench-N.yaml`, named `bench-N`, on `/hooks/bench-N`.
fn numbered_workflow(receiver: &str, n: usize) -> (String, String) {
    let yaml = bench_workflow(receiver);
    let renamed = yaml
        .replacen("name: bench\n", &format!("name: bench-{n}\n"), 1)
        .replacen(
            "path: /hooks/bench }",
            &format!("path: /hooks/bench-{n} }}"),
            1,
        );
    assert!(
        renamed.contains(&format!("name: bench-{n}\n"))
            && renamed.contains(&format!("/hooks/bench-{n} ")),
        "ingest-workflow.yaml no longer has `name: bench` and `path: /hooks/bench }}`"
    );
    (format!("bench-{n}.yaml"), renamed)
}

/// From spawning a server on a fresh `store` to reading the 202 of its first webhook. The server
/// logs its address once it listens, so the webhook is sent at once and waits, if need be, in
/// the listener's backlog: no polling.
fn time_to_first_answer(binary: &Path, dir: &Path, store: &Path, body: &str) -> Duration {
    let spawned = Instant::now();
    let (server, webhook, _) = start_server(binary, dir, &store.display().to_string());
    let (status, answer) = Connection::open(&webhook).post("/hooks/bench-99", body);
    let elapsed = spawned.elapsed();
    stop_server(server);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&answer));
    elapsed
}

/// A server's resident memory 2 s after start, and after one webhook has run (its http call
/// reached the receiver, then 500 ms for the run's records).
fn idle_rss(binary: &Path, dir: &Path, body: &str, received: &AtomicU64) -> (Resident, Resident) {
    let store = dir.join("rss.db").display().to_string();
    let (server, webhook, _) = start_server(binary, dir, &store);
    std::thread::sleep(Duration::from_secs(2));
    let idle = Resident::of(server.id());
    let before = received.load(Ordering::Relaxed);
    let (status, _) = Connection::open(&webhook).post("/hooks/bench-99", body);
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        received.load(Ordering::Relaxed) > before,
        "the run never ran"
    );
    std::thread::sleep(Duration::from_millis(500));
    let after_one = Resident::of(server.id());
    stop_server(server);
    (idle, after_one)
}

/// One keep-alive HTTP/1.1 connection for the modes that time single requests. It reads answers
/// with a `Content-Length`, which is how hookflow answers webhooks.
struct Connection {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    /// Connect to `url` (`http://host:port`).
    fn open(url: &str) -> Self {
        let host = url.strip_prefix("http://").unwrap_or(url).to_owned();
        let stream = TcpStream::connect(&host).expect("connect to the server");
        // The request goes out in one write; without this, the answer to the next one could wait
        // for a delayed ACK.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self {
            reader: BufReader::new(stream),
            host,
        }
    }

    /// POST a JSON body; the answer's status and body.
    fn post(&mut self, path: &str, body: &str) -> (u16, Vec<u8>) {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body.as_bytes());
        self.reader
            .get_mut()
            .write_all(&request)
            .expect("send the request");
        self.read_answer()
    }

    fn read_answer(&mut self) -> (u16, Vec<u8>) {
        let status_line = self.read_line();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let mut length = 0;
        loop {
            let line = self.read_line();
            let Some((name, value)) = line.split_once(':') else {
                break;
            };
            assert!(
                !name.eq_ignore_ascii_case("transfer-encoding"),
                "a chunked answer; only Content-Length is read here"
            );
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a Content-Length number");
            }
        }
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .expect("the answer's body");
        (status, body)
    }

    /// One line of the answer's head, without its line end.
    fn read_line(&mut self) -> String {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).expect("read the answer");
        assert!(read > 0, "the server closed the connection");
        line.trim_end().to_owned()
    }
}
