//! Ingest benchmark: the optimised binary serves a filter + template + http workflow whose http
//! step calls a receiver on loopback; `wrk` drives webhooks at it. Prints accepted requests/s and
//! latency from wrk, then how long the worker took to finish every accepted run.
//!
//! Run with `cargo bench --bench ingest` (needs `wrk`: `apt-get install wrk`). Settings via env:
//! BENCH_SECONDS (default 10), BENCH_CONNECTIONS (default 32), BENCH_THREADS (default 2).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WORKFLOW: &str = r#"
name: bench
on: { webhook: { path: /hooks/bench } }
vars:
  branch: "{{ event.body.ref | replace('refs/heads/', '') }}"
steps:
  - name: main-only
    filter: vars.branch == event.body.repository.default_branch
  - name: summary
    template: "{{ event.body.pusher.name }} pushed {{ event.body.commits | length }} commit(s) to {{ vars.branch }}"
  - name: notify
    http:
      url: "RECEIVER/notify"
      json: { text: "{{ steps.summary.output }}", sha: "{{ event.body.after }}" }
"#;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
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
    let payload = root.join("tests/fixtures/github/push.json");
    let (mut server, webhook, admin) = start_server(&binary, dir.path());

    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 32);
    let threads = env_or("BENCH_THREADS", 2);
    let script = dir.path().join("post.lua");
    let body = std::fs::read_to_string(&payload).expect("payload");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n",
            lua_string(&body)
        ),
    )
    .expect("write script");
    println!(
        "hookflow ingest benchmark: filter + template + http workflow, {} byte GitHub push payload",
        body.len()
    );
    println!("wrk -t{threads} -c{connections} -d{seconds}s against {webhook}/hooks/bench\n");
    let started = Instant::now();
    let report = run_wrk(
        threads,
        connections,
        seconds,
        &script,
        &format!("{webhook}/hooks/bench"),
    );
    println!("{report}");
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
    while received.load(Ordering::Relaxed) < accepted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let drained = started.elapsed();
    let done = received.load(Ordering::Relaxed);
    println!("accepted (2xx): {accepted}, refused: {non_2xx}");
    println!(
        "runs completed: {done} in {:.1}s from the start of the load ({:.0} runs/s end to end)",
        drained.as_secs_f64(),
        done as f64 / drained.as_secs_f64()
    );
    let health = Command::new("curl")
        .args(["-s", &format!("{admin}/api/runs?status=failed&limit=1")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    println!("failed runs (first): {health}");
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();

    // The same load against a bare axum handler that parses the body and answers 202 without
    // storing anything: the ceiling the durable path is compared with.
    let raw_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let raw_addr = raw_runtime.block_on(start_raw_ingest());
    let raw_report = run_wrk(
        threads,
        connections,
        seconds,
        &script,
        &format!("http://{raw_addr}/hooks/bench"),
    );
    println!("\nraw axum ingest (parse + 202, no persistence):\n{raw_report}");
    let durable_rps = requests_per_second(&report);
    let raw_rps = requests_per_second(&raw_report);
    println!(
        "summary: durable {durable_rps:.0} req/s (p50 {}, p99 {}), raw {raw_rps:.0} req/s (p50 {}, p99 {}), ratio {:.1}%",
        percentile(&report, "50%"),
        percentile(&report, "99%"),
        percentile(&raw_report, "50%"),
        percentile(&raw_report, "99%"),
        100.0 * durable_rps / raw_rps.max(1.0)
    );
    assert!(
        done >= accepted,
        "lost runs: {accepted} accepted, {done} completed"
    );
}

/// wrk's report of one load against `url`.
fn run_wrk(threads: u64, connections: u64, seconds: u64, script: &Path, url: &str) -> String {
    let output = Command::new("wrk")
        .args([
            format!("-t{threads}"),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            "-s".into(),
            script.display().to_string(),
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

fn start_server(binary: &Path, dir: &Path) -> (std::process::Child, String, String) {
    let mut child = Command::new(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
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
