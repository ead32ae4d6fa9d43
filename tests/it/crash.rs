//! Crash test: `kill -9` the server in the middle of a load, start it again on the same store,
//! and check that every accepted event's run completes and that no recorded effect is repeated.
//! The webhooks are signed the way GitHub signs them and the workflow verifies them.
//! `HOOKFLOW_CRASH_EVENTS` sets the number of webhooks (default 300) and `HOOKFLOW_TEST_BINARY`
//! the binary (default: the debug build); the figure quoted in the docs is
//! `HOOKFLOW_CRASH_EVENTS=2000 HOOKFLOW_TEST_BINARY=target/release/hookflow`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookflow::run::{RunStatus, StepStatus};
use hookflow::store::{OpenMode, Store};
use tokio::sync::Semaphore;

use crate::support::{Receiver, ServeProcess, client};

const CONCURRENCY: usize = 32;
const SECRET: &str = "crash-test-webhook-secret";

/// `X-Hub-Signature-256` as GitHub computes it.
fn github_signature(body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_accepted_event_and_repeats_no_recorded_step() {
    let events: usize = std::env::var("HOOKFLOW_CRASH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("crash.yaml"),
        format!(
            r#"
on:
  webhook:
    path: /hooks/crash
    verify: {{ github: {{ secret: "{{{{ secrets.CRASH_WEBHOOK_SECRET }}}}" }} }}
secrets: [CRASH_WEBHOOK_SECRET]
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
    // The secret reaches the server through a secrets directory named in hookflow.yaml.
    std::fs::create_dir_all(dir.path().join("secrets")).expect("mkdir secrets");
    std::fs::write(dir.path().join("secrets/CRASH_WEBHOOK_SECRET"), SECRET).expect("secret");
    std::fs::write(dir.path().join("hookflow.yaml"), "secrets_dir: ./secrets\n").expect("config");

    let server = ServeProcess::start(dir.path());
    let url = format!("{}/hooks/crash", server.webhook);
    let http = client();
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let unauthorized = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut sends = Vec::new();
    for n in 0..events {
        let permit = Arc::clone(&slots).acquire_owned().await.expect("permit");
        let (http, url, answered) = (http.clone(), url.clone(), Arc::clone(&answered));
        let unauthorized = Arc::clone(&unauthorized);
        sends.push(tokio::spawn(async move {
            let body = format!("{{\"n\": {n}}}");
            let result = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-github-delivery", format!("delivery-{n}"))
                .header("x-hub-signature-256", github_signature(&body))
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            drop(permit);
            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let response = result.ok()?;
            if response.status() == 401 {
                unauthorized.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if response.status() != 202 {
                return None;
            }
            let body: serde_json::Value = response.json().await.ok()?;
            body["run_ids"][0].as_str().map(str::to_owned)
        }));
    }
    // Kill at a moment that differs from run to run, somewhere in the middle of the load.
    let fraction = 0.25 + 0.5 * hookflow::engine::retry::jitter_unit();
    let kill_after = ((events as f64) * fraction) as usize;
    let waiting = Instant::now();
    while answered.load(std::sync::atomic::Ordering::Relaxed) < kill_after {
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "the load stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_hard();
    let mut accepted = Vec::new();
    for send in sends {
        if let Some(run_id) = send.await.expect("join") {
            accepted.push(run_id);
        }
    }
    assert!(!accepted.is_empty(), "nothing was accepted before the kill");
    assert_eq!(
        unauthorized.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a correctly signed webhook was refused"
    );

    // What the store held at the moment of the kill: runs whose step `a` was recorded.
    let store_path = dir.path().join("hookflow.db").display().to_string();
    let a_recorded: HashSet<String> = {
        let store = Store::open(&store_path, OpenMode::Read)
            .await
            .expect("open the store");
        let mut recorded = HashSet::new();
        for id in &accepted {
            let detail = store
                .run(id)
                .await
                .expect("read")
                .unwrap_or_else(|| panic!("accepted run {id} is not in the store"));
            if detail
                .steps
                .iter()
                .any(|s| s.name == "a" && s.status == StepStatus::Succeeded)
            {
                recorded.insert(id.clone());
            }
        }
        recorded
    };
    let received_before_restart = receiver.received().len();

    let server = ServeProcess::start(dir.path());
    let store = Store::open(&store_path, OpenMode::Read)
        .await
        .expect("open the store");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut unfinished: Vec<String> = accepted.clone();
    while !unfinished.is_empty() {
        let mut still = Vec::new();
        for id in unfinished {
            let detail = store.run(&id).await.expect("read").expect("run");
            if !detail.run.status.is_final() {
                still.push(id);
            }
        }
        unfinished = still;
        if !unfinished.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} runs did not finish after the restart",
                unfinished.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, _) = server.terminate();
    assert!(status.success());

    let mut lost = 0;
    for id in &accepted {
        let detail = store.run(id).await.expect("read").expect("run");
        if detail.run.status != RunStatus::Succeeded {
            lost += 1;
        }
    }
    let mut calls: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        if let Some(key) = request.header("idempotency-key") {
            *calls.entry(key.to_owned()).or_default() += 1;
        }
    }
    let count = |id: &str, step: &str| calls.get(&format!("{id}.{step}")).copied().unwrap_or(0);
    let missing_effects = accepted
        .iter()
        .filter(|id| count(id, "a") == 0 || count(id, "b") == 0)
        .count();
    let repeated_recorded_a = a_recorded.iter().filter(|id| count(id, "a") > 1).count();
    let repeated: usize = calls.values().map(|c| c.saturating_sub(1)).sum();
    println!(
        "crash test: {events} sent, {} accepted (kill after {kill_after} answers, {} requests received before the restart), \
         lost {lost}, repeated effects {repeated} (of which recorded steps repeated: {repeated_recorded_a})",
        accepted.len(),
        received_before_restart
    );
    assert_eq!(lost, 0, "accepted runs did not succeed");
    assert_eq!(missing_effects, 0, "a step's effect never happened");
    assert_eq!(repeated_recorded_a, 0, "a recorded step ran again");
    // Only the step in flight at the kill may run twice: at most one per run, and only runs
    // that were executing then (at most the server's worker count).
    assert!(repeated <= 64, "{repeated} repeated effects");
}
