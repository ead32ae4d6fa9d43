//! Test support: a hookflow server in-process on an ephemeral port, a recording HTTP receiver,
//! and the fixtures.

#![allow(dead_code)]

pub mod postgres;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hookflow::serve::{self, RunningServer};
use hookflow::settings::ServeSettings;
use serde_json::Value as Json;
use tokio::net::TcpListener;

/// One step of a run as the admin API shows it.
pub fn step<'a>(run: &'a Json, name: &str) -> &'a Json {
    run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {run}"))
}

/// A test that cannot run on this machine says so where a person reads it, and fails under
/// `CI=true`. The line is written to the terminal's stderr directly: the test harness captures
/// `eprintln!` of a passing test, which would hide the skip behind an `ok`.
pub fn skip(test: &str, why: &str) {
    let message = format!("SKIPPED {test}: {why}");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{message} (CI=true: a missing service is a failure)"
    );
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n*** {message} ***");
}

/// Secrets come from the environment; each test uses its own variable names.
pub fn set_env(name: &str, value: &str) {
    // SAFETY: every test uses distinct variable names, so no two threads touch the same one.
    unsafe { std::env::set_var(name, value) };
}

/// An HTTP client for tests (the process-wide TLS provider must be chosen first).
pub fn client() -> reqwest::Client {
    hookflow::effects::http::install_crypto_provider();
    reqwest::Client::new()
}

/// Settings for a test server in `dir`: ephemeral ports, its own store and outbox.
pub fn settings_for(dir: &Path) -> ServeSettings {
    ServeSettings {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        admin_token: None,
        admin_insecure: false,
        admin_allowed_hosts: Vec::new(),
        secrets: Default::default(),
        workflows: dir.join("workflows"),
        store: dir.join("hookflow.db").display().to_string(),
        workers: 8,
        run_window: hookflow::settings::DEFAULT_RUN_WINDOW,
        max_backlog: hookflow::settings::DEFAULT_MAX_BACKLOG,
        sync_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_secs(5),
        email: hookflow::settings::EmailSettings {
            smtp: None,
            from: None,
            outbox: dir.join("outbox"),
            timeout: Duration::from_secs(10),
        },
        exec_enabled: false,
        default_retry: Default::default(),
        retention: Duration::from_secs(30 * 86400),
        trusted_proxies: Vec::new(),
        egress: Default::default(),
        header_timeout: hookflow::settings::DEFAULT_HEADER_TIMEOUT,
        body_timeout: hookflow::settings::DEFAULT_BODY_TIMEOUT,
        max_header_size: hookflow::settings::DEFAULT_MAX_HEADER_SIZE,
        tls: None,
        store_options: Default::default(),
        lease: Duration::from_secs(30),
        rate_limits: Default::default(),
        traces: None,
    }
}

/// Where test payloads live (copies of the shared fixtures).
pub fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

pub fn fixture(relative: &str) -> Vec<u8> {
    let path = fixture_path(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn fixture_json(relative: &str) -> Json {
    serde_json::from_slice(&fixture(relative)).expect("fixture is JSON")
}

/// A hookflow server with its own workflows directory and SQLite file.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub running: Option<RunningServer>,
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
}

impl TestServer {
    /// Start with the given workflow files (name, YAML text).
    pub async fn start(workflows: &[(&str, &str)]) -> Self {
        Self::start_with(workflows, |_| {}).await
    }

    /// Start with the given workflow files and settings changed by `configure`
    /// (SMTP server, exec enabled, ...).
    pub async fn start_with(
        workflows: &[(&str, &str)],
        configure: impl FnOnce(&mut ServeSettings),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let wf_dir = dir.path().join("workflows");
        std::fs::create_dir_all(&wf_dir).expect("workflows dir");
        for (name, text) in workflows {
            std::fs::write(wf_dir.join(name), text).expect("write workflow");
        }
        Self::start_in_with(dir, configure).await
    }

    /// Start (again) on an existing directory: same workflows, same store.
    pub async fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_in_with(dir, |_| {}).await
    }

    pub async fn start_in_with(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut ServeSettings),
    ) -> Self {
        let mut settings = settings_for(dir.path());
        configure(&mut settings);
        let webhook = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let running = serve::start(&settings, webhook, admin)
            .await
            .unwrap_or_else(|e| panic!("server did not start: {e}"));
        let base = format!("http://{}", running.webhook_addr);
        let admin = format!("http://{}", running.admin_addr);
        Self {
            dir,
            running: Some(running),
            base,
            admin,
            client: client(),
        }
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        self.dir
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("hookflow.db")
    }

    pub async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.post_with(path, content_type, body, &[]).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Json) -> reqwest::Response {
        self.post(
            path,
            "application/json",
            serde_json::to_vec(body).expect("json"),
        )
        .await
    }

    /// POST and return the run ids of the 202 answer.
    pub async fn accepted(&self, path: &str, content_type: &str, body: Vec<u8>) -> Vec<String> {
        let response = self.post(path, content_type, body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 202, "expected 202, got {status}: {text}");
        let answer: Json = serde_json::from_str(&text).expect("json answer");
        answer["run_ids"]
            .as_array()
            .expect("run_ids")
            .iter()
            .map(|v| v.as_str().expect("id").to_owned())
            .collect()
    }

    /// What the admin API answers at `path` (`/api/workflows`), as JSON.
    pub async fn admin_json(&self, path: &str) -> Json {
        self.client
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .expect("admin request")
            .json()
            .await
            .expect("admin json")
    }

    /// The run as the admin API shows it, once it reached a final status.
    pub async fn finished_run(&self, run_id: &str) -> Json {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let detail = self.admin_json(&format!("/api/runs/{run_id}")).await;
            let status = detail["run"]["status"].as_str().unwrap_or_default();
            if matches!(status, "succeeded" | "failed" | "filtered" | "cancelled") {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "run {run_id} did not finish: {detail}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// What the receiver answers on a path.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// More answer headers (a `Location`, a `Retry-After`).
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    replies: Mutex<Vec<(String, Reply)>>,
    /// Replies used once each, in order, before the standing ones (an outage that ends).
    queued: Mutex<Vec<(String, Reply)>>,
    /// Paths answered only after a pause (a slow target).
    delays: Mutex<Vec<(String, Duration)>>,
    /// Paths whose JSON body must have a field, or the answer is 400 (a validating target).
    required: Mutex<Vec<(String, String)>>,
}

/// A real HTTP server on loopback that records every request and answers as told
/// (default: 200 with `{"ok": true}`).
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer requests whose path starts with `prefix` with this reply.
    pub fn reply(&self, prefix: &str, status: u16, content_type: &'static str, body: &str) {
        self.reply_with_headers(prefix, status, content_type, body, &[]);
    }

    /// Like `reply`, with more answer headers.
    pub fn reply_with_headers(
        &self,
        prefix: &str,
        status: u16,
        content_type: &'static str,
        body: &str,
        headers: &[(&str, &str)],
    ) {
        self.state.replies.lock().expect("lock").push((
            prefix.to_owned(),
            Reply {
                status,
                content_type,
                body: body.to_owned(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        ));
    }

    /// Answer the next `times` requests under `prefix` with this reply, then as before.
    pub fn reply_times(
        &self,
        prefix: &str,
        times: usize,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) {
        let mut queued = self.state.queued.lock().expect("lock");
        for _ in 0..times {
            queued.push((
                prefix.to_owned(),
                Reply {
                    status,
                    content_type: "text/plain",
                    body: body.to_owned(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                },
            ));
        }
    }

    /// Answer 400 to requests under `prefix` whose body is not a JSON object with `field`.
    pub fn require_field(&self, prefix: &str, field: &str) {
        self.state
            .required
            .lock()
            .expect("lock")
            .push((prefix.to_owned(), field.to_owned()));
    }

    /// Answer requests under `prefix` only after `pause`.
    pub fn slow(&self, prefix: &str, pause: Duration) {
        self.state
            .delays
            .lock()
            .expect("lock")
            .push((prefix.to_owned(), pause));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// Wait until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n} requests: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn record(State(state): State<Arc<ReceiverState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let uri = parts.uri.to_string();
    let path = parts.uri.path().to_owned();
    let missing = missing_field(&state, &path, &body);
    state.received.lock().expect("lock").push(Received {
        at: Instant::now(),
        method: parts.method.to_string(),
        uri,
        headers: parts.headers,
        body,
    });
    let pause = state
        .delays
        .lock()
        .expect("lock")
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|(_, d)| *d);
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    if let Some(missing) = missing {
        let reason = format!(r#"{{"error":"{missing} is required"}}"#);
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            reason,
        )
            .into_response();
    }
    let once = {
        let mut queued = state.queued.lock().expect("lock");
        queued
            .iter()
            .position(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|i| queued.remove(i).1)
    };
    let reply = once.or_else(|| {
        state
            .replies
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, r)| r.clone())
    });
    match reply {
        Some(r) => {
            let mut response = (
                StatusCode::from_u16(r.status).expect("status"),
                [("content-type", r.content_type)],
                r.body,
            )
                .into_response();
            for (name, value) in &r.headers {
                response.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    axum::http::HeaderValue::from_str(value).expect("header value"),
                );
            }
            response
        }
        None => (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"ok":true}"#.to_owned(),
        )
            .into_response(),
    }
}

/// The field a `require_field` rule wants that this body lacks.
fn missing_field(state: &ReceiverState, path: &str, body: &[u8]) -> Option<String> {
    let json: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
    state
        .required
        .lock()
        .expect("lock")
        .iter()
        .find(|(prefix, field)| path.starts_with(prefix.as_str()) && json.get(field).is_none())
        .map(|(_, field)| field.clone())
}

/// A `hookflow serve` process and the addresses it logged.
pub struct ServeProcess {
    pub child: Child,
    pub webhook: String,
    pub admin: String,
    logs: std::sync::mpsc::Receiver<String>,
    /// The lines logged up to `hookflow is serving`.
    pub startup: Vec<String>,
}

impl ServeProcess {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// Start with more `serve` arguments; stdout and stderr both feed the log.
    pub fn start_with(dir: &Path, extra_args: &[&str]) -> Self {
        Self::start_with_env(dir, extra_args, &[])
    }

    /// Start with more `serve` arguments and environment variables.
    pub fn start_with_env(dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        // HOOKFLOW_TEST_BINARY: run the same checks against another build (the release one).
        let binary = std::env::var("HOOKFLOW_TEST_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_hookflow").to_owned());
        let mut child = std::process::Command::new(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(extra_args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let stdout = child.stdout.take().expect("stdout");
        // A start that fails below (no address logged) must not leave the server running.
        let mut child = KillOnDrop(Some(child));
        let (tx, logs) = std::sync::mpsc::channel();
        let stdout_tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if stdout_tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut startup = Vec::new();
        let (webhook, admin) = loop {
            let line = logs
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("serve did not report its address");
            startup.push(line.clone());
            if let Ok(json) = serde_json::from_str::<Json>(&line)
                && json["message"] == "hookflow is serving"
            {
                // `--log-format json`
                let field = |name: &str| {
                    json[name]
                        .as_str()
                        .map(|addr| format!("http://{addr}"))
                        .expect("address in the log line")
                };
                break (field("webhook_addr"), field("admin_addr"));
            }
            if line.contains("hookflow is serving") {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .map(|addr| format!("http://{addr}"))
                        .expect("address in the log line")
                };
                break (field("webhook_addr="), field("admin_addr="));
            }
        };
        Self {
            child: child.0.take().expect("the child"),
            webhook,
            admin,
            logs,
            startup,
        }
    }

    /// The log lines written since the last look.
    pub fn logs(&self) -> Vec<String> {
        self.logs.try_iter().collect()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status and the rest of the log.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let rest = self.logs.try_iter().collect();
        (status, rest)
    }
}

/// A child process killed when dropped, until taken.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A test that fails midway leaves no server running behind it.
impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub async fn list_runs(server: &TestServer) -> Vec<Json> {
    let answer: Json = server
        .client
        .get(format!("{}/api/runs", server.admin))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    answer["runs"].as_array().expect("runs").clone()
}

/// Compile `yaml` (a workflow file's text) and execute it once in process over `event`, with
/// the real effects of a temporary folder, resuming after the `finished` records, reporting to
/// `journal`. The timing of the execution alone is returned with its outcome.
pub async fn execute_in_process(
    yaml: &str,
    event: &hookflow::run::Event,
    finished: &[hookflow::run::StepRecord],
    journal: &dyn hookflow::engine::Journal,
) -> (hookflow::engine::RunOutcome, Duration) {
    let file = hookflow::diag::SourceFile::new("in-process.yaml", yaml.to_owned());
    let (workflow, diagnostics) = hookflow::workflow::compile_file(file, &Default::default());
    let workflow = workflow.unwrap_or_else(|| panic!("{diagnostics:?}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let effects = settings_for(dir.path()).effects().expect("effects");
    let run = hookflow::engine::RunInfo {
        id: "run".into(),
        workflow: workflow.name.clone(),
        attempt: 1,
    };
    let request = hookflow::engine::RunRequest {
        workflow: &workflow,
        event,
        run: &run,
        secrets: &Default::default(),
        finished,
        effects: &effects,
        options: &hookflow::engine::ExecOptions::default(),
        callees: None,
    };
    let started = Instant::now();
    let outcome = hookflow::engine::execute(request, journal)
        .await
        .expect("execute");
    (outcome, started.elapsed())
}
