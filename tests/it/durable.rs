//! Durable runs: retries with a stored due time, an outage that ends, a restart during a wait.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{Receiver, TestServer, step};

fn workflow(receiver: &Receiver, retry: &str) -> String {
    format!(
        r#"
on: {{ webhook: {{ path: /hooks/flaky }} }}
steps:
  - name: first
    log: "before the call"
  - name: call
    retry: {retry}
    http: {{ url: "{url}", json: {{ n: 1 }} }}
  - name: after
    log: "{{{{ steps.call.status }}}}"
"#,
        url = receiver.url("/flaky")
    )
}

#[tokio::test]
async fn an_outage_that_ends_is_retried_until_the_run_succeeds() {
    let receiver = Receiver::start().await;
    receiver.reply_times("/flaky", 3, 503, &[], "down");
    let yaml = workflow(&receiver, "{ attempts: 5, initial: 100ms, max: 400ms }");
    let server = TestServer::start(&[("flaky.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/flaky", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.received();
    assert_eq!(got.len(), 4, "three 503s, then success");
    let key = got[0].header("idempotency-key").expect("key").to_owned();
    assert_eq!(key, format!("{}.call", runs[0]));
    for request in &got {
        assert_eq!(request.header("idempotency-key"), Some(key.as_str()));
    }
    // Full jitter under a ceiling of 100ms, 200ms, 400ms (plus scheduling slack).
    for (i, pair) in got.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let ceiling = Duration::from_millis(100 << i) + Duration::from_millis(400);
        assert!(gap <= ceiling, "gap {i} was {gap:?}");
    }
    let call = step(&run, "call");
    assert_eq!(call["status"], "succeeded");
    assert_eq!(call["attempts"], 4);
    assert_eq!(step(&run, "after")["output"]["message"], "200");
    // The step before the retried one ran once.
    assert_eq!(step(&run, "first")["attempts"], 1);
    server.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_exhausted_attempts_fail_the_run() {
    let receiver = Receiver::start().await;
    receiver.reply_times("/flaky", 1, 429, &[("retry-after", "1")], "slow down");
    receiver.reply("/flaky/never", 503, "text/plain", "still down");
    let yaml = workflow(&receiver, "{ attempts: 3, initial: 10ms, max: 20ms }");
    let never = yaml
        .replace("/hooks/flaky", "/hooks/never")
        .replace("/flaky\"", "/flaky/never\"");
    let server = TestServer::start(&[("flaky.yaml", &yaml), ("never.yaml", &never)]).await;
    let runs = server
        .accepted("/hooks/flaky", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );

    let runs = server
        .accepted("/hooks/never", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let call = step(&run, "call");
    assert_eq!(call["status"], "failed");
    assert_eq!(call["attempts"], 3);
    assert!(
        run["run"]["error"].as_str().expect("error").contains("503"),
        "{run}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_permanent_error_is_not_retried() {
    let receiver = Receiver::start().await;
    receiver.reply("/flaky", 422, "application/json", r#"{"message":"bad"}"#);
    let yaml = workflow(&receiver, "{ attempts: 5, initial: 10ms }");
    let server = TestServer::start(&[("flaky.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/flaky", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed");
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(step(&run, "call")["attempts"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_restart_during_a_retry_wait_keeps_the_due_time() {
    let receiver = Receiver::start().await;
    receiver.reply_times("/flaky", 1, 503, &[], "down");
    let yaml = workflow(&receiver, "{ attempts: 3, backoff: fixed, initial: 3s }");
    let server = TestServer::start(&[("flaky.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/flaky", "application/json", b"{}".to_vec())
        .await;
    receiver.wait_for(1).await;
    let first_attempt = receiver.received()[0].at;
    // Wait until the retry is recorded, then stop the server in the middle of the wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let detail: Json = server
            .client
            .get(format!("{}/api/runs/{}", server.admin, runs[0]))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        if detail["run"]["status"] == "retrying" {
            break;
        }
        assert!(Instant::now() < deadline, "never retrying: {detail}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = server.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing is sent while stopped"
    );
    let server = TestServer::start_in(dir).await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let waited = got[1].at - first_attempt;
    assert!(
        waited >= Duration::from_millis(2900),
        "the restart shortened the wait to {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(8),
        "the wait grew to {waited:?}"
    );
    assert_eq!(step(&run, "call")["attempts"], 2);
    server.stop().await;
}

#[tokio::test]
async fn the_same_delivery_sent_20_times_at_once_starts_one_run() {
    let receiver = Receiver::start().await;
    let yaml = format!(
        r#"
on:
  webhook:
    path: /hooks/github
    dedupe: "{{{{ headers['x-github-delivery'] }}}}"
steps:
  - http: {{ url: "{url}", json: {{ sha: "{{{{ event.body.after }}}}" }} }}
"#,
        url = receiver.url("/build")
    );
    let windowed = r#"
on:
  webhook:
    path: /hooks/short
    dedupe: { key: "{{ body.id }}", window: 1s }
steps:
  - log: "{{ event.body.id }}"
"#;
    let server = TestServer::start(&[("gh.yaml", &yaml), ("short.yaml", windowed)]).await;
    let payload = crate::support::fixture("github/push.json");
    let mut sends = Vec::new();
    for _ in 0..20 {
        let client = server.client.clone();
        let url = format!("{}/hooks/github", server.base);
        let body = payload.clone();
        sends.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
                .body(body)
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let answer: Json = response.json().await.expect("json");
            (status, answer)
        }));
    }
    let mut created = Vec::new();
    let mut duplicates = Vec::new();
    for send in sends {
        let (status, answer) = send.await.expect("join");
        match status {
            202 => created.push(answer["run_ids"][0].as_str().expect("id").to_owned()),
            200 => duplicates.push(answer["duplicate_of"][0].as_str().expect("id").to_owned()),
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one delivery starts a run");
    assert_eq!(duplicates.len(), 19);
    assert!(duplicates.iter().all(|d| *d == created[0]));
    let run = server.finished_run(&created[0]).await;
    assert_eq!(run["run"]["status"], "succeeded");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), 1, "one build, not twenty");
    // Another delivery id is another run.
    let response = server
        .post_with(
            "/hooks/github",
            "application/json",
            payload,
            &[("x-github-delivery", "another")],
        )
        .await;
    assert_eq!(response.status(), 202);

    // After the window the key is forgotten.
    let first = server
        .post_json("/hooks/short", &serde_json::json!({"id": 7}))
        .await;
    assert_eq!(first.status(), 202);
    let again = server
        .post_json("/hooks/short", &serde_json::json!({"id": 7}))
        .await;
    assert_eq!(again.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = server
        .post_json("/hooks/short", &serde_json::json!({"id": 7}))
        .await;
    assert_eq!(later.status(), 202);
    server.stop().await;
}

#[tokio::test]
async fn a_failed_run_is_replayed_from_its_failed_step_or_from_the_start() {
    let receiver = Receiver::start().await;
    receiver.reply_times("/b", 1, 500, &[], "broken");
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/replay }} }}
steps:
  - name: a
    http: {{ url: "{url}/a" }}
  - name: b
    http: {{ url: "{url}/b" }}
  - name: attempt
    set: {{ n: "{{{{ run.attempt }}}}" }}
"#,
        url = receiver.url("")
    );
    let server = TestServer::start(&[("replay.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/replay", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");

    // The CLI asks the running server; the prefix of an id is enough.
    let admin = server.admin.clone();
    let prefix = runs[0][..20].to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(["runs", "replay", &prefix, "--admin", &admin])
            .output()
            .expect("replay")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("attempt 2"));
    let run = wait_for_attempt(&server, &runs[0], 2).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "attempt")["output"]["n"], 2);
    let paths: Vec<String> = receiver.received().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(
        paths,
        vec!["/a", "/b", "/b"],
        "a finished step is not redone"
    );

    // A finished run again, from the start this time.
    let response = server
        .client
        .post(format!(
            "{}/api/runs/{}/replay?from_start=true",
            server.admin, runs[0]
        ))
        .send()
        .await
        .expect("replay");
    assert_eq!(response.status(), 202);
    let run = wait_for_attempt(&server, &runs[0], 3).await;
    assert_eq!(run["run"]["status"], "succeeded");
    let paths: Vec<String> = receiver.received().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(paths, vec!["/a", "/b", "/b", "/a", "/b"]);

    let missing = server
        .client
        .post(format!("{}/api/runs/nope/replay", server.admin))
        .send()
        .await
        .expect("replay");
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

async fn wait_for_attempt(server: &TestServer, run_id: &str, attempt: u64) -> Json {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let run = server.finished_run(run_id).await;
        if run["run"]["attempt"] == attempt {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "attempt {attempt} never finished: {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn on_error_steps_run_when_a_run_fails_for_good() {
    let receiver = Receiver::start().await;
    receiver.reply(
        "/deploy",
        503,
        "application/json",
        r#"{"message":"maintenance"}"#,
    );
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/deploy }} }}
steps:
  - name: deploy
    retry: {{ attempts: 2, initial: 10ms, max: 20ms }}
    http: {{ url: "{url}/deploy", json: {{ sha: "{{{{ event.body.sha }}}}" }} }}
  - name: never
    log: "not reached"
on_error:
  - name: alert
    http:
      url: "{url}/alert"
      json:
        failed_step: "{{{{ run.failed_step }}}}"
        error: "{{{{ run.error }}}}"
        status: "{{{{ steps.deploy.status }}}}"
        sha: "{{{{ event.body.sha }}}}"
"#,
        url = receiver.url("")
    );
    let healthy = yaml
        .replace("/hooks/deploy", "/hooks/fine")
        .replace("/deploy\"", "/ok\"");
    let server = TestServer::start(&[("deploy.yaml", &yaml), ("fine.yaml", &healthy)]).await;
    let runs = server
        .accepted(
            "/hooks/deploy",
            "application/json",
            br#"{"sha": "abc123"}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let alert = receiver
        .received()
        .into_iter()
        .find(|r| r.uri == "/alert")
        .expect("the on_error step called out");
    let body = alert.json();
    assert_eq!(body["failed_step"], "deploy");
    assert_eq!(body["status"], 503);
    assert_eq!(body["sha"], "abc123");
    let error = body["error"].as_str().expect("error");
    assert!(
        error.starts_with("step 'deploy' failed:") && error.contains("maintenance"),
        "{error}"
    );
    assert_eq!(step(&run, "deploy")["attempts"], 2);
    assert_eq!(step(&run, "alert")["status"], "succeeded");
    assert!(
        run["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["name"] != "never")
    );

    // A run that succeeds never runs its handlers.
    let runs = server
        .accepted(
            "/hooks/fine",
            "application/json",
            br#"{"sha": "def456"}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|r| r.uri == "/alert")
            .count(),
        1
    );
    server.stop().await;
}

/// A real SQLite store whose writes of new events can be made to fail, as on a full disk.
struct FailingStore {
    inner: hookflow::store::Store,
    failing: std::sync::atomic::AtomicBool,
}

mod failing_store {
    use chrono::{DateTime, Utc};
    use hookflow::future::BoxFuture;
    use hookflow::run::NewRun;
    use hookflow::run::SyncResponse;
    use hookflow::run::{Event, RunStatus, StepRecord};
    use hookflow::store::{
        Accepted, ActivityWindow, CancelRequest, Cancelled, Definition, MinuteCount, PauseRequest,
        PausedWorkflow, ReplayOptions, Replayed, RunDetail, RunDurations, RunFilter, RunSummary,
        StoreBackend, StoreError,
    };
    use std::sync::atomic::Ordering;

    impl StoreBackend for super::FailingStore {
        fn accept<'a>(
            &'a self,
            event: std::sync::Arc<Event>,
            runs: &'a [NewRun],
        ) -> BoxFuture<'a, Result<Accepted, StoreError>> {
            if self.failing.load(Ordering::SeqCst) {
                return Box::pin(async { Err(StoreError::Write("disk I/O error".into())) });
            }
            self.inner.accept(event, runs)
        }
        fn claim<'a>(
            &'a self,
            run_id: &'a str,
            owner: &'a str,
            until: DateTime<Utc>,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.inner.claim(run_id, owner, until)
        }
        fn renew_leases<'a>(
            &'a self,
            owner: &'a str,
            run_ids: &'a [String],
            until: DateTime<Utc>,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.renew_leases(owner, run_ids, until)
        }
        fn take_over_orphans(&self) -> BoxFuture<'_, Result<(), StoreError>> {
            self.inner.take_over_orphans()
        }
        fn expired_leases(
            &self,
            now: DateTime<Utc>,
        ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
            self.inner.expired_leases(now)
        }
        fn step_finished<'a>(
            &'a self,
            run_id: &'a str,
            record: &'a StepRecord,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.step_finished(run_id, record)
        }
        fn run_finished<'a>(
            &'a self,
            run_id: &'a str,
            status: RunStatus,
            error: Option<String>,
            response: Option<SyncResponse>,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.run_finished(run_id, status, error, response)
        }
        fn run_retrying<'a>(
            &'a self,
            run_id: &'a str,
            error: Option<String>,
            due_at: DateTime<Utc>,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.run_retrying(run_id, error, due_at)
        }
        fn claim_due_retries(
            &self,
            now: DateTime<Utc>,
        ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
            self.inner.claim_due_retries(now)
        }
        fn take_rate_slot<'a>(
            &'a self,
            key: &'a str,
            limit: hookflow::run::RateLimit,
            now: DateTime<Utc>,
        ) -> BoxFuture<'a, Result<DateTime<Utc>, StoreError>> {
            self.inner.take_rate_slot(key, limit, now)
        }
        fn hold_rate_bucket<'a>(
            &'a self,
            key: &'a str,
            limit: hookflow::run::RateLimit,
            until: DateTime<Utc>,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.hold_rate_bucket(key, limit, until)
        }
        fn next_retry_due(&self) -> BoxFuture<'_, Result<Option<DateTime<Utc>>, StoreError>> {
            self.inner.next_retry_due()
        }
        fn replay<'a>(
            &'a self,
            run_id: &'a str,
            replay: &'a ReplayOptions,
        ) -> BoxFuture<'a, Result<Replayed, StoreError>> {
            self.inner.replay(run_id, replay)
        }
        fn prune(&self, before: DateTime<Utc>) -> BoxFuture<'_, Result<usize, StoreError>> {
            self.inner.prune(before)
        }
        fn save_definition<'a>(
            &'a self,
            version: &'a str,
            definition: Definition,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            self.inner.save_definition(version, definition)
        }
        fn definition<'a>(
            &'a self,
            version: &'a str,
        ) -> BoxFuture<'a, Result<Option<Definition>, StoreError>> {
            self.inner.definition(version)
        }
        fn unfinished_runs(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
            self.inner.unfinished_runs()
        }
        fn count_queued(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
            self.inner.count_queued()
        }
        fn list_runs<'a>(
            &'a self,
            filter: &'a RunFilter,
        ) -> BoxFuture<'a, Result<Vec<RunSummary>, StoreError>> {
            self.inner.list_runs(filter)
        }
        fn run<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDetail>, StoreError>> {
            self.inner.run(id)
        }
        fn runs_per_minute<'a>(
            &'a self,
            window: &'a ActivityWindow,
        ) -> BoxFuture<'a, Result<Vec<MinuteCount>, StoreError>> {
            self.inner.runs_per_minute(window)
        }
        fn run_durations<'a>(
            &'a self,
            window: &'a ActivityWindow,
        ) -> BoxFuture<'a, Result<RunDurations, StoreError>> {
            self.inner.run_durations(window)
        }
        fn queued_behind<'a>(
            &'a self,
            run_id: &'a str,
        ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
            self.inner.queued_behind(run_id)
        }
        fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
            self.inner.ping()
        }
        fn accept_tick<'a>(
            &'a self,
            workflow: &'a str,
            tick: DateTime<Utc>,
            event: std::sync::Arc<Event>,
            runs: &'a [NewRun],
        ) -> BoxFuture<'a, Result<Option<Accepted>, StoreError>> {
            self.inner.accept_tick(workflow, tick, event, runs)
        }
        fn claim_tick<'a>(
            &'a self,
            workflow: &'a str,
            tick: DateTime<Utc>,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.inner.claim_tick(workflow, tick)
        }
        fn last_tick<'a>(
            &'a self,
            workflow: &'a str,
        ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>, StoreError>> {
            self.inner.last_tick(workflow)
        }
        fn cancel_run<'a>(
            &'a self,
            run_id: &'a str,
            cancel: &'a CancelRequest,
        ) -> BoxFuture<'a, Result<Cancelled, StoreError>> {
            self.inner.cancel_run(run_id, cancel)
        }
        fn cancel_requests<'a>(
            &'a self,
            run_ids: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
            self.inner.cancel_requests(run_ids)
        }
        fn pause_workflow<'a>(
            &'a self,
            workflow: &'a str,
            pause: &'a PauseRequest,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.inner.pause_workflow(workflow, pause)
        }
        fn resume_workflow<'a>(
            &'a self,
            workflow: &'a str,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            self.inner.resume_workflow(workflow)
        }
        fn paused_workflows(&self) -> BoxFuture<'_, Result<Vec<PausedWorkflow>, StoreError>> {
            self.inner.paused_workflows()
        }
    }
}

#[tokio::test]
async fn a_store_that_cannot_write_answers_503_and_the_sender_can_retry() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("w.yaml"),
        workflow(&receiver, "{ attempts: 1 }"),
    )
    .expect("write");
    let sqlite = hookflow::store::Store::open(
        &dir.path().join("hookflow.db").display().to_string(),
        hookflow::store::OpenMode::Serve,
    )
    .await
    .expect("open");
    let failing = std::sync::Arc::new(FailingStore {
        inner: sqlite,
        failing: std::sync::atomic::AtomicBool::new(true),
    });
    let store = hookflow::store::Store::from_backend(failing.clone());
    let mut settings = crate::support::settings_for(dir.path());
    settings.workers = 2;
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let running = hookflow::serve::start_with_store(&settings, store, webhook, admin)
        .await
        .expect("start");
    let url = format!("http://{}/hooks/flaky", running.webhook_addr);
    let http = crate::support::client();
    let response = http.post(&url).body("{}").send().await.expect("send");
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        receiver.received().is_empty(),
        "nothing runs for an event not stored"
    );

    failing
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let response = http.post(&url).body("{}").send().await.expect("send");
    assert_eq!(response.status(), 202, "the retried delivery is accepted");
    receiver.wait_for(1).await;
    running.shutdown().await;
}

#[tokio::test]
async fn a_reload_swaps_the_workflows_and_a_broken_one_keeps_the_old_set() {
    let first = "on: { webhook: { path: /hooks/before } }\nsteps:\n  - log: before\n";
    let server = TestServer::start(&[("w.yaml", first)]).await;
    assert_eq!(
        server
            .post_json("/hooks/before", &serde_json::json!({}))
            .await
            .status(),
        202
    );
    let file = server.dir.path().join("workflows/w.yaml");
    let reloader = server.running.as_ref().expect("running").reloader();

    std::fs::write(&file, first.replace("/hooks/before", "/hooks/after")).expect("write");
    assert_eq!(reloader.reload().await.expect("reload"), 1);
    assert_eq!(
        server
            .post_json("/hooks/after", &serde_json::json!({}))
            .await
            .status(),
        202
    );
    assert_eq!(
        server
            .post_json("/hooks/before", &serde_json::json!({}))
            .await
            .status(),
        404
    );

    // A broken file: the reload is refused and the working set stays.
    std::fs::write(
        &file,
        "on: { webhook: { path: /hooks/broken } }\nsteps:\n  - emial: {}\n",
    )
    .expect("write");
    assert!(reloader.reload().await.is_err());
    assert_eq!(
        server
            .post_json("/hooks/after", &serde_json::json!({}))
            .await
            .status(),
        202
    );
    assert_eq!(
        server
            .post_json("/hooks/broken", &serde_json::json!({}))
            .await
            .status(),
        404
    );
    server.stop().await;
}

#[tokio::test]
async fn editing_a_served_workflow_changes_behaviour_within_a_second() {
    let first = "on: { webhook: { path: /hooks/edited } }\nsteps:\n  - log: before\n";
    let server = TestServer::start(&[("w.yaml", first)]).await;
    assert_eq!(
        server
            .post_json("/hooks/edited", &serde_json::json!({}))
            .await
            .status(),
        202
    );
    // An editor's save: write a temporary file, then rename it over the workflow.
    let workflows = server.dir.path().join("workflows");
    let temporary = workflows.join(".w.yaml.swp");
    std::fs::write(&temporary, first.replace("/hooks/edited", "/hooks/renamed")).expect("write");
    std::fs::rename(&temporary, workflows.join("w.yaml")).expect("rename");
    let saved = Instant::now();
    loop {
        let moved = server
            .post_json("/hooks/renamed", &serde_json::json!({}))
            .await
            .status();
        if moved == 202 {
            break;
        }
        assert!(
            saved.elapsed() < Duration::from_secs(10),
            "the edit was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The time is reported, not asserted tightly: a loaded CI machine must not fail the test.
    println!("an edited workflow was served after {:?}", saved.elapsed());
    assert_eq!(
        server
            .post_json("/hooks/edited", &serde_json::json!({}))
            .await
            .status(),
        404
    );

    // Breaking the file keeps the old behaviour.
    std::fs::write(workflows.join("w.yaml"), "steps: [ { emial: {} } ]\n").expect("write");
    let broken = Instant::now();
    loop {
        let workflows = server.admin_json("/api/workflows").await;
        if workflows["reload"]["refused"] == true {
            break;
        }
        assert!(
            broken.elapsed() < Duration::from_secs(10),
            "the broken file was never refused: {workflows}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        server
            .post_json("/hooks/renamed", &serde_json::json!({}))
            .await
            .status(),
        202
    );
    server.stop().await;
}

/// What a journal was asked, in order: records noted (with how soon they must be durable),
/// records waited for, settles before effects, and a sync answer.
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<String>>);

impl Recording {
    fn push(&self, entry: String) {
        self.0.lock().expect("journal").push(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().expect("journal").clone()
    }
}

impl hookflow::engine::Journal for Recording {
    fn step_finished<'a>(
        &'a self,
        record: &'a hookflow::run::StepRecord,
    ) -> hookflow::future::BoxFuture<'a, Result<(), hookflow::engine::JournalError>> {
        self.push(format!("waited {}", record.name));
        Box::pin(async { Ok(()) })
    }

    fn step_noted<'a>(
        &'a self,
        record: &'a hookflow::run::StepRecord,
        noted: hookflow::engine::Noted,
    ) -> hookflow::future::BoxFuture<'a, Result<(), hookflow::engine::JournalError>> {
        self.push(format!("noted {} {noted:?}", record.name));
        Box::pin(async { Ok(()) })
    }

    fn settle_effects(
        &self,
    ) -> hookflow::future::BoxFuture<'_, Result<(), hookflow::engine::JournalError>> {
        self.push("settle".to_owned());
        Box::pin(async { Ok(()) })
    }

    fn responded(&self, _response: &hookflow::run::SyncResponse) {
        self.push("responded".to_owned());
    }
}

async fn journal_of(yaml: &str) -> Vec<String> {
    use hookflow::run::RunStatus;
    let event = hookflow::run::Event {
        id: "event".into(),
        method: "POST".into(),
        path: "/hooks/journal".into(),
        params: Default::default(),
        query: Default::default(),
        headers: Default::default(),
        body: serde_json::json!({ "n": 1 }),
        raw: Vec::new(),
        received_at: chrono::Utc::now(),
        trigger: Default::default(),
        trace: None,
    };
    let journal = Recording::default();
    let (outcome, _) = crate::support::execute_in_process(yaml, &event, &[], &journal).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    journal.entries()
}

/// A sync caller is answered as soon as `respond` has run: the call before it is recorded
/// without a wait, and nothing is settled until another effect would act.
#[tokio::test]
async fn a_sync_answer_waits_for_no_record() {
    let receiver = Receiver::start().await;
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/journal, respond: sync }} }}
steps:
  - name: check
    filter: event.body.n == 1
  - name: call
    http: {{ url: "{url}", json: {{ n: 1 }} }}
  - name: answer
    respond: {{ status: 201, body: {{ called: "{{{{ steps.call.status }}}}" }} }}
"#,
        url = receiver.url("/call")
    );
    let entries = journal_of(&yaml).await;
    assert_eq!(
        entries,
        [
            "noted check Evaluated",
            "settle",
            "noted call GuardsEffect",
            "noted answer Evaluated",
            "responded",
        ],
    );
    assert_eq!(receiver.received().len(), 1);
}

/// An effect's record is durable before the next effect acts, so a crash repeats at most one.
#[tokio::test]
async fn an_effects_record_is_settled_before_the_next_effect() {
    let receiver = Receiver::start().await;
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/journal }} }}
steps:
  - name: first
    http: {{ url: "{url}", json: {{ n: 1 }} }}
  - name: between
    log: "{{{{ steps.first.status }}}}"
  - name: second
    http: {{ url: "{url}", json: {{ n: 2 }} }}
"#,
        url = receiver.url("/call")
    );
    let entries = journal_of(&yaml).await;
    assert_eq!(
        entries,
        [
            "settle",
            "noted first GuardsEffect",
            "noted between Evaluated",
            "settle",
            "noted second GuardsEffect",
        ],
    );
    assert_eq!(receiver.received().len(), 2);
}

/// A run claimed in its webhook's accept keeps its lease renewed while it executes: one that
/// outlives its lease is neither taken over nor executed a second time.
#[tokio::test]
async fn a_run_longer_than_its_lease_is_renewed_not_taken_over() {
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_millis(3500));
    let workflow = format!(
        "on: {{ webhook: {{ path: /hooks/long }} }}\nsteps:\n  - name: call\n    http: {{ url: \"{}\", json: {{}} }}\n",
        receiver.url("/slow")
    );
    let server = TestServer::start_with(&[("long.yaml", &workflow)], |settings| {
        settings.lease = Duration::from_secs(1);
    })
    .await;
    let ids = server
        .accepted("/hooks/long", "application/json", b"{}".to_vec())
        .await;

    let run = server.finished_run(&ids[0]).await;

    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(step(&run, "call")["attempts"], 1, "{run}");
    assert_eq!(
        receiver.received().len(),
        1,
        "the run was taken over and executed again while it ran"
    );
    server.stop().await;
}

/// Each attempt of a retried step is kept: its error, the answer's status, when and how long;
/// shown by the API, `runs show` and the UI's run page.
#[tokio::test]
async fn every_attempt_of_a_retried_step_is_kept_and_shown() {
    let receiver = Receiver::start().await;
    receiver.reply_times("/flaky", 2, 503, &[], "down");
    let yaml = workflow(&receiver, "{ attempts: 5, initial: 50ms, max: 100ms }");
    let server = TestServer::start(&[("flaky.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/flaky", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let call = step(&run, "call");
    assert_eq!(call["attempts"], 3, "{call}");
    let earlier = call["earlier"].as_array().expect("earlier attempts");
    assert_eq!(earlier.len(), 2, "{call}");
    for (n, attempt) in (1..).zip(earlier) {
        assert_eq!(attempt["attempt"], n, "{attempt}");
        assert_eq!(attempt["answer_status"], 503, "{attempt}");
        let error = attempt["error"].as_str().expect("error");
        assert!(error.contains("503"), "{error}");
    }
    assert!(
        step(&run, "first")["earlier"].is_null(),
        "a step tried once has none"
    );

    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["runs", "show", &runs[0], "--store"])
        .arg(server.store_path())
        .output()
        .expect("runs show");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("[2] call (http) ok"), "{shown}");
    assert!(shown.contains(", attempt 3"), "{shown}");
    assert!(shown.contains("attempt 1 at "), "{shown}");
    assert!(shown.contains("attempt 2 at "), "{shown}");
    assert!(shown.contains("(answer 503)"), "{shown}");
    assert!(shown.contains("[3] after (log) ok"), "{shown}");

    let page = crate::support::client()
        .get(format!("{}/ui/runs/{}", server.admin, runs[0]))
        .send()
        .await
        .expect("run page")
        .text()
        .await
        .expect("html");
    assert_eq!(
        page.matches("class=\"earlier-attempt\"").count(),
        2,
        "{page}"
    );
    server.stop().await;
}
