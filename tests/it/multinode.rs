//! Several `hookflow serve` processes on one PostgreSQL database (a schema of its own per test):
//! they share the work, a killed one's runs are taken over by the others, and a database
//! restart under load loses no accepted event. Real processes, real database (the local one, or
//! `HOOKFLOW_TEST_POSTGRES_URL`); skipped loudly when none answers, a failure under `CI=true`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::support::postgres::{TestSchema, restart_postgres};
use crate::support::{Receiver, ServeProcess, client};

const CONCURRENCY: usize = 48;
/// Short, so a dead process's runs are taken over within seconds.
const LEASE: &str = "5s";

/// Two HTTP steps per run, each an effect the receiver counts by its idempotency key.
fn write_workflow(dir: &Path, receiver: &Receiver) {
    let workflows = dir.join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("shared.yaml"),
        format!(
            r#"
on: {{ webhook: {{ path: /hooks/shared }} }}
steps:
  - name: a
    http: {{ url: "{url}/a", json: {{ n: "{{{{ event.body.n }}}}" }} }}
  - name: b
    http: {{ url: "{url}/slow", json: {{ n: "{{{{ event.body.n }}}}" }} }}
"#,
            url = receiver.url("")
        ),
    )
    .expect("write workflow");
}

fn start_node(dir: &Path, schema: &TestSchema) -> ServeProcess {
    ServeProcess::start_with_env(
        dir,
        &["--store", &schema.url, "--workers", "16"],
        &[("HOOKFLOW_LEASE", LEASE)],
    )
}

/// What one webhook got: the run id of a 202, or the status of anything else.
enum Sent {
    Accepted(String),
    Refused(u16),
    Unreachable,
}

async fn send(http: &reqwest::Client, url: &str, n: usize) -> Sent {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(format!("{{\"n\": {n}}}"))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let Ok(response) = response else {
        return Sent::Unreachable;
    };
    let status = response.status().as_u16();
    if status != 202 {
        return Sent::Refused(status);
    }
    let body: serde_json::Value = response.json().await.expect("202 body");
    Sent::Accepted(body["run_ids"][0].as_str().expect("run id").to_owned())
}

/// Wait until at least `expected` runs succeeded and none is left to do, failing when nothing
/// moves for a long while.
async fn wait_for_succeeded(schema: &TestSchema, expected: usize, what: &str) {
    let mut last = (0, Instant::now());
    loop {
        let done = schema
            .count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
            .await as usize;
        let left = schema
            .count("SELECT count(*) FROM runs WHERE status <> 'succeeded'")
            .await;
        if done >= expected && left == 0 {
            return;
        }
        if done != last.0 {
            last = (done, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(45),
            "{what}: stuck at {done} of {expected} runs succeeded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Effects per run and step, counted by the idempotency keys the receiver saw.
fn effects(receiver: &Receiver) -> HashMap<String, usize> {
    let mut calls: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        if let Some(key) = request.header("idempotency-key") {
            *calls.entry(key.to_owned()).or_default() += 1;
        }
    }
    calls
}

/// A schema of its own, a receiver whose `/slow` answers after `slow`, and the workflow in a
/// directory of its own; `None` when no database answers (said loudly by `TestSchema`).
async fn slow_setup(
    test: &str,
    slow: Duration,
) -> Option<(TestSchema, Receiver, tempfile::TempDir)> {
    let schema = TestSchema::create(test).await?;
    let receiver = Receiver::start().await;
    receiver.slow("/slow", slow);
    let dir = tempfile::tempdir().expect("tempdir");
    write_workflow(dir.path(), &receiver);
    Some((schema, receiver, dir))
}

/// A process on `schema` with `workers` workers and leases of `lease`.
fn start_with(dir: &Path, schema: &TestSchema, workers: &str, lease: &str) -> ServeProcess {
    ServeProcess::start_with_env(
        dir,
        &["--store", &schema.url, "--workers", workers],
        &[("HOOKFLOW_LEASE", lease)],
    )
}

/// Leave `count` runs of `shared` in the store's queue, old enough for any process to take,
/// and let `node` take them: its workflow is paused while they are accepted (so none is claimed
/// in its accept), then resumed. The run ids.
async fn queue_then_resume(node: &ServeProcess, count: usize) -> Vec<String> {
    let http = client();
    let admin = |action: &str| {
        http.post(format!("{}/api/workflows/shared/{action}", node.admin))
            .send()
    };
    assert_eq!(admin("pause").await.expect("pause").status(), 200);
    let url = format!("{}/hooks/shared", node.webhook);
    let mut accepted = Vec::new();
    for n in 0..count {
        match send(&http, &url, n).await {
            Sent::Accepted(id) => accepted.push(id),
            _ => panic!("webhook {n} was not accepted"),
        }
    }
    // Old enough to be anyone's (a process has a second to start the runs it accepted).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(admin("resume").await.expect("resume").status(), 200);
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_share_the_load_and_take_over_a_killed_ones_runs() {
    let test = "three_processes_share_the_load_and_take_over_a_killed_ones_runs";
    let Some(schema) = TestSchema::create(test).await else {
        return;
    };
    let events: usize = std::env::var("HOOKFLOW_MULTINODE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("tempdir");
    write_workflow(dir.path(), &receiver);
    let mut nodes: Vec<Option<ServeProcess>> = (0..3)
        .map(|_| Some(start_node(dir.path(), &schema)))
        .collect();
    let urls: Arc<Vec<String>> = Arc::new(
        nodes
            .iter()
            .flatten()
            .map(|n| format!("{}/hooks/shared", n.webhook))
            .collect(),
    );
    let victim = 0;

    let http = client();
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut sends = Vec::new();
    let fraction = 0.25 + 0.4 * hookflow::engine::retry::jitter_unit();
    let kill_after = ((events as f64) * fraction) as usize;
    let mut killed_at = None;
    for n in 0..events {
        let permit = Arc::clone(&slots).acquire_owned().await.expect("permit");
        if killed_at.is_none() && answered.load(Ordering::Relaxed) >= kill_after {
            nodes[victim].take().expect("victim").kill_hard();
            killed_at = Some(answered.load(Ordering::Relaxed));
        }
        let (http, urls, answered) = (http.clone(), Arc::clone(&urls), Arc::clone(&answered));
        sends.push(tokio::spawn(async move {
            // Spread over the processes; like a load balancer, a process that does not answer
            // is skipped and the next one tried.
            let mut outcome = Sent::Unreachable;
            for attempt in 0..urls.len() {
                outcome = send(&http, &urls[(n + attempt) % urls.len()], n).await;
                if !matches!(outcome, Sent::Unreachable) {
                    break;
                }
            }
            drop(permit);
            answered.fetch_add(1, Ordering::Relaxed);
            outcome
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for send in sends {
        match send.await.expect("join") {
            Sent::Accepted(id) => accepted.push(id),
            Sent::Refused(status) => refused.push(status),
            Sent::Unreachable => refused.push(0),
        }
    }
    assert!(killed_at.is_some(), "the load ended before the kill");
    assert!(refused.is_empty(), "refused or unanswered: {refused:?}");
    assert_eq!(accepted.len(), events);

    wait_for_succeeded(&schema, accepted.len(), "after the kill").await;
    let executed_by: i64 = schema
        .count("SELECT count(DISTINCT lease_owner) FROM runs")
        .await;
    for node in nodes.iter_mut() {
        if let Some(node) = node.take() {
            let (status, _) = node.terminate();
            assert!(status.success());
        }
    }
    let succeeded = schema
        .count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        .await as usize;
    let total = schema.count("SELECT count(*) FROM runs").await as usize;
    let calls = effects(&receiver);
    let count = |id: &str, step: &str| calls.get(&format!("{id}.{step}")).copied().unwrap_or(0);
    let missing = accepted
        .iter()
        .filter(|id| count(id, "a") == 0 || count(id, "b") == 0)
        .count();
    // A taken-over run repeats the one step it was in when its process died, once.
    let repeated_runs: Vec<&String> = accepted
        .iter()
        .filter(|id| count(id, "a") + count(id, "b") > 2)
        .collect();
    let over_repeated = accepted
        .iter()
        .filter(|id| count(id, "a") + count(id, "b") > 3)
        .count();
    let repeated: usize = calls.values().map(|c| c.saturating_sub(1)).sum();
    println!(
        "multinode: {events} webhooks over 3 processes at concurrency {CONCURRENCY}; process {victim} killed \
         after {} answers; {} accepted, {total} runs stored, {succeeded} succeeded; runs executed by {executed_by} processes; \
         repeated effects {repeated} in {} runs",
        killed_at.unwrap_or_default(),
        accepted.len(),
        repeated_runs.len()
    );
    // A webhook the killed process committed but could not answer was sent again elsewhere
    // (there is no dedupe key here): a second run, as the sender asked.
    assert!(
        total >= events,
        "{total} runs for {events} accepted webhooks"
    );
    assert_eq!(succeeded, total, "no run is lost");
    assert_eq!(missing, 0, "a step's effect never happened");
    assert_eq!(
        over_repeated, 0,
        "a run repeated more than its step in flight"
    );
    assert!(executed_by >= 2, "the work was not shared");
    // Only runs in flight on the killed process repeat: at most its worker count.
    assert!(repeated <= 16, "{repeated} repeated effects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_answers_503_and_loses_no_accepted_event() {
    let test = "a_database_restart_under_load_answers_503_and_loses_no_accepted_event";
    let Some(schema) = TestSchema::create_exclusive(test).await else {
        return;
    };
    let base = crate::support::postgres::database_url().await.expect("url");
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("tempdir");
    write_workflow(dir.path(), &receiver);
    let nodes: Vec<ServeProcess> = (0..2).map(|_| start_node(dir.path(), &schema)).collect();
    let urls: Arc<Vec<String>> = Arc::new(
        nodes
            .iter()
            .map(|n| format!("{}/hooks/shared", n.webhook))
            .collect(),
    );
    // Readiness is watched throughout: it must fail during the outage and come back.
    let readiness = Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
    let stop_watching = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (readiness, stop, admin, http) = (
            Arc::clone(&readiness),
            Arc::clone(&stop_watching),
            format!("{}/readyz", nodes[0].admin),
            client(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let status = match http
                    .get(&admin)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                if let Ok(mut seen) = readiness.lock()
                    && seen.last() != Some(&status)
                {
                    seen.push(status);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Webhooks keep coming until the restart is over and a little after.
    let http = client();
    let slots = Arc::new(Semaphore::new(16));
    let restart_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restarter = {
        let (restart_done, base) = (Arc::clone(&restart_done), base.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let status = tokio::task::spawn_blocking(move || {
                restart_postgres(&base, Duration::from_secs(3))
            })
            .await
            .expect("join");
            restart_done.store(true, Ordering::Relaxed);
            status
        })
    };
    let mut sends = Vec::new();
    let mut n = 0;
    let mut after_restart = None;
    loop {
        if restart_done.load(Ordering::Relaxed) && after_restart.is_none() {
            after_restart = Some(Instant::now());
        }
        if after_restart.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            break;
        }
        let permit = Arc::clone(&slots).acquire_owned().await.expect("permit");
        let (http, urls) = (http.clone(), Arc::clone(&urls));
        sends.push(tokio::spawn(async move {
            let outcome = send(&http, &urls[n % urls.len()], n).await;
            drop(permit);
            outcome
        }));
        n += 1;
    }
    let restarted = restarter.await.expect("join");
    let Some(restarted) = restarted else {
        crate::support::skip(test, "pg_lsclusters/pg_ctlcluster are not available here");
        return;
    };
    assert!(restarted, "pg_ctlcluster stop/start failed");
    let mut accepted = Vec::new();
    let mut refused: HashMap<u16, usize> = HashMap::new();
    for send in sends {
        match send.await.expect("join") {
            Sent::Accepted(id) => accepted.push(id),
            Sent::Refused(status) => *refused.entry(status).or_default() += 1,
            Sent::Unreachable => *refused.entry(0).or_default() += 1,
        }
    }
    wait_for_succeeded(&schema, accepted.len(), "after the restart").await;
    // Readiness came back once the database did.
    let ready_again = Instant::now();
    loop {
        let last = readiness.lock().expect("lock").last().copied();
        if last == Some(200) {
            break;
        }
        assert!(
            ready_again.elapsed() < Duration::from_secs(30),
            "/readyz did not recover: {:?}",
            readiness.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_watching.store(true, Ordering::Relaxed);
    watcher.await.expect("join");
    let seen = readiness.lock().expect("lock").clone();
    for node in nodes {
        let (status, _) = node.terminate();
        assert!(status.success());
    }
    let succeeded = schema
        .count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        .await as usize;
    let calls = effects(&receiver);
    let missing = accepted
        .iter()
        .filter(|id| !calls.contains_key(&format!("{id}.b")))
        .count();
    println!(
        "database restart: {n} webhooks sent, {} accepted, refused {refused:?}, {succeeded} succeeded; /readyz went {seen:?}",
        accepted.len()
    );
    assert_eq!(
        refused.keys().copied().filter(|s| *s != 503).count(),
        0,
        "requests during the outage get 503 and nothing else: {refused:?}"
    );
    assert!(
        refused.get(&503).copied().unwrap_or(0) > 0,
        "no request fell into the outage"
    );
    assert!(
        seen.contains(&503),
        "/readyz never failed during the outage: {seen:?}"
    );
    assert_eq!(succeeded, accepted.len(), "an accepted event was lost");
    assert_eq!(missing, 0, "a run finished without its last effect");
}

#[tokio::test]
async fn runs_list_reads_a_postgres_store() {
    let Some(schema) = TestSchema::create("runs_list_reads_a_postgres_store").await else {
        return;
    };
    let store = hookflow::store::Store::open(&schema.url, hookflow::store::OpenMode::Serve)
        .await
        .expect("open");
    let event = hookflow::run::Event {
        id: uuid::Uuid::now_v7().to_string(),
        method: "POST".into(),
        path: "/hooks/x".into(),
        params: Default::default(),
        query: Default::default(),
        headers: Default::default(),
        body: serde_json::json!({"n": 1}),
        raw: b"{\"n\": 1}".to_vec(),
        received_at: chrono::Utc::now(),
        trigger: Default::default(),
        trace: None,
    };
    let run = hookflow::run::NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: "listed".into(),
        version: "v1".into(),
        dedupe: None,
        concurrency: None,
    };
    store
        .accept(Arc::new(event), std::slice::from_ref(&run))
        .await
        .expect("accept");
    let url = schema.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(["runs", "list", "--json", "--store", &url])
            .output()
            .expect("run hookflow runs list")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&run.id), "{stdout}");
    assert!(stdout.contains("listed"), "{stdout}");
}

#[test]
fn store_settings_come_from_the_file_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hookflow.yaml");
    let resolve = |text: &str| {
        std::fs::write(&config, text).expect("write config");
        hookflow::settings::ServeSettings::resolve(&hookflow::settings::Overrides {
            config: Some(config.clone()),
            ..Default::default()
        })
    };
    let settings = resolve(
        "store: postgres://hookflow@db/hookflow\nstore_pool_size: 8\nstore_statement_timeout: 5s\nlease: 10s\n",
    )
    .expect("valid settings");
    assert_eq!(settings.store, "postgres://hookflow@db/hookflow");
    assert_eq!(settings.store_options.pool_size, 8);
    assert_eq!(
        settings.store_options.statement_timeout,
        Some(Duration::from_secs(5))
    );
    assert_eq!(settings.lease, Duration::from_secs(10));
    let unlimited = resolve("store_statement_timeout: 0s\n").expect("valid settings");
    assert_eq!(unlimited.store_options.statement_timeout, None);
    for bad in [
        "store_pool_size: 0\n",
        "lease: 100ms\n",
        "store_statement_timeout: soon\n",
    ] {
        let err = resolve(bad).expect_err(bad);
        assert!(err.to_string().contains("hookflow.yaml"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_process_takes_the_runs_a_busy_one_accepted() {
    let test = "an_idle_process_takes_the_runs_a_busy_one_accepted";
    let Some((schema, receiver, dir)) = slow_setup(test, Duration::from_millis(300)).await else {
        return;
    };
    // One worker: at 300 ms a run, 24 runs keep it busy for several seconds.
    let busy = start_with(dir.path(), &schema, "1", LEASE);
    let idle = start_node(dir.path(), &schema);
    let http = client();
    let url = format!("{}/hooks/shared", busy.webhook);
    let mut accepted = Vec::new();
    for n in 0..24 {
        match send(&http, &url, n).await {
            Sent::Accepted(id) => accepted.push(id),
            _ => panic!("webhook {n} was not accepted"),
        }
    }
    wait_for_succeeded(&schema, accepted.len(), "runs of a busy process").await;
    let owners = schema
        .count("SELECT count(DISTINCT lease_owner) FROM runs")
        .await;
    for node in [busy, idle] {
        let (status, _) = node.terminate();
        assert!(status.success());
    }
    assert_eq!(
        owners, 2,
        "the idle process took none of the busy one's runs"
    );
    let calls = effects(&receiver);
    assert!(
        accepted
            .iter()
            .all(|id| calls.get(&format!("{id}.b")) == Some(&1)),
        "every run's last step happened once"
    );
}

/// On a shared store a process claims queued runs ahead of its free slots, so a slot that frees
/// has its next run at hand (claimed and read already), but never more than `workers` ahead:
/// the rest stay queued for whichever process is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_claims_queued_runs_ahead_but_no_more_than_its_workers() {
    let test = "a_process_claims_queued_runs_ahead_but_no_more_than_its_workers";
    let Some((schema, _receiver, dir)) = slow_setup(test, Duration::from_millis(200)).await else {
        return;
    };
    let node = start_with(dir.path(), &schema, "2", LEASE);
    queue_then_resume(&node, 16).await;
    let mut most_claimed = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let claimed = schema
            .count("SELECT count(*) FROM runs WHERE status = 'running'")
            .await;
        most_claimed = most_claimed.max(claimed);
        let done = schema
            .count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
            .await;
        if done == 16 {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of 16 runs done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = node.terminate();
    assert!(status.success());
    // Two executing (200 ms each at least) and two waiting for them, claimed and read.
    assert_eq!(
        most_claimed, 4,
        "a process with 2 workers holds 2 runs ahead of its slots, no more"
    );
}

/// A process stopping gracefully puts the runs it claimed but had not started back in the queue:
/// another process runs them at once, not when their leases end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_process_gives_back_the_runs_it_had_not_started() {
    let test = "a_stopping_process_gives_back_the_runs_it_had_not_started";
    let Some((schema, receiver, dir)) = slow_setup(test, Duration::from_millis(300)).await else {
        return;
    };
    // Leases far longer than the test: only a release can hand the runs on in time.
    let start = || start_with(dir.path(), &schema, "1", "120s");
    let first = start();
    let accepted = queue_then_resume(&first, 6).await;
    // One run executing and one claimed ahead, waiting for the only slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    while schema
        .count("SELECT count(*) FROM runs WHERE status = 'running'")
        .await
        < 2
    {
        assert!(Instant::now() < deadline, "the process never held 2 runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = first.terminate();
    assert!(status.success());
    assert_eq!(
        schema
            .count("SELECT count(*) FROM runs WHERE status = 'running'")
            .await,
        0,
        "the run in flight finished and the one waiting went back to the queue"
    );
    let second = start();
    wait_for_succeeded(&schema, accepted.len(), "runs given back").await;
    let (status, _) = second.terminate();
    assert!(status.success());
    let calls = effects(&receiver);
    assert!(
        accepted
            .iter()
            .all(|id| calls.get(&format!("{id}.b")) == Some(&1)),
        "every run's last step happened once: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_on_three_processes_fires_once_per_tick() {
    let Some(schema) =
        TestSchema::create("a_schedule_on_three_processes_fires_once_per_tick").await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("tick.yaml"),
        "name: tick\non:\n  schedule: \"* * * * * *\"\nsteps:\n  - log: \"{{ event.scheduled_at }}\"\n",
    )
    .expect("write workflow");
    let nodes: Vec<ServeProcess> = (0..3).map(|_| start_node(dir.path(), &schema)).collect();
    let runs = || schema.count("SELECT count(*) FROM runs WHERE workflow = 'tick'");
    // Every process schedules the same ticks for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs().await < 12 {
        assert!(Instant::now() < deadline, "the schedule did not fire");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for node in nodes {
        let (status, _) = node.terminate();
        assert!(status.success());
    }
    let total = runs().await;
    let distinct_ticks = schema
        .count(
            "SELECT count(DISTINCT events.triggered_by) FROM runs
             JOIN events ON events.id = runs.event_id WHERE runs.workflow = 'tick'",
        )
        .await;
    let recorded_ticks = schema
        .count("SELECT count(*) FROM ticks WHERE workflow = 'tick' AND event_id IS NOT NULL")
        .await;
    println!("schedule on 3 processes: {total} runs for {distinct_ticks} ticks");
    assert_eq!(total, distinct_ticks, "a tick started more than one run");
    assert_eq!(total, recorded_ticks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_running_cap_holds_across_processes() {
    let test = "the_running_cap_holds_across_processes";
    let Some(schema) = TestSchema::create(test).await else {
        return;
    };
    let receiver = Receiver::start().await;
    let pause = Duration::from_millis(700);
    receiver.slow("/slow", pause);
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("capped.yaml"),
        format!(
            r#"
on: {{ webhook: {{ path: /hooks/capped }} }}
steps:
  - name: slow
    http: {{ url: "{url}/slow", json: {{ n: "{{{{ event.body.n }}}}" }} }}
"#,
            url = receiver.url("")
        ),
    )
    .expect("write workflow");
    // The cap from the flag on one process, from the environment on the other; each could run
    // eight at once on its own.
    let nodes = [
        ServeProcess::start_with_env(
            dir.path(),
            &[
                "--store",
                &schema.url,
                "--workers",
                "8",
                "--max-running",
                "2",
            ],
            &[("HOOKFLOW_LEASE", LEASE), ("HOOKFLOW_STORE_POOL_SIZE", "4")],
        ),
        ServeProcess::start_with_env(
            dir.path(),
            &["--store", &schema.url, "--workers", "8"],
            &[
                ("HOOKFLOW_LEASE", LEASE),
                ("HOOKFLOW_MAX_RUNNING", "2"),
                ("HOOKFLOW_STORE_POOL_SIZE", "4"),
            ],
        ),
    ];
    let http = client();
    let mut accepted = Vec::new();
    for n in 0..12 {
        let url = format!("{}/hooks/capped", nodes[n % nodes.len()].webhook);
        match send(&http, &url, n).await {
            Sent::Accepted(id) => accepted.push(id),
            Sent::Refused(status) => panic!("webhook {n} refused with {status}"),
            Sent::Unreachable => panic!("webhook {n} unanswered"),
        }
    }
    wait_for_succeeded(&schema, 12, "under the cap").await;
    let requests: Vec<Instant> = receiver
        .received()
        .iter()
        .filter(|r| r.uri.starts_with("/slow"))
        .map(|r| r.at)
        .collect();
    assert_eq!(requests.len(), 12, "one call per run");
    // A call is in progress from its arrival for at least the pause; the run that made it is
    // `running` longer than that. The most calls in progress at any arrival:
    let most = requests
        .iter()
        .map(|start| {
            requests
                .iter()
                .filter(|other| **other <= *start && *start < **other + pause)
                .count()
        })
        .max()
        .unwrap_or(0);
    println!("the_running_cap_holds_across_processes: at most {most} calls at once");
    assert!(most <= 2, "{most} runs at once under max_running: 2");
    let owners = schema
        .count("SELECT count(DISTINCT lease_owner) FROM runs")
        .await;
    println!("the_running_cap_holds_across_processes: runs executed by {owners} process(es)");
    for node in nodes {
        let (status, _) = node.terminate();
        assert!(status.success());
    }
}
