//! Bursts: the worker holds at most `run_window` runs in memory and takes the rest from the
//! store's queue as slots free, and past `max_backlog` queued runs webhooks are answered `503`
//! with `Retry-After`. Checked on the real binary through `/metrics`, the store and the answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookflow::run::NewRun;
use hookflow::run::{Event, Trigger};
use hookflow::store::{OpenMode, Store};
use serde_json::Value as Json;

use crate::support::{Receiver, ServeProcess, client};

/// A folder with `hookflow.yaml` (`settings`) and one workflow on `/hooks/burst` whose step
/// calls `receiver` (or only logs, without one).
fn folder(settings: &str, receiver: Option<&Receiver>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(dir.path().join("hookflow.yaml"), settings).expect("settings");
    let step = match receiver {
        Some(receiver) => format!(
            "http: {{ url: \"{}\", json: {{ n: \"{{{{ event.body.n }}}}\" }} }}",
            receiver.url("/slow")
        ),
        None => "log: \"event {{ event.body.n }}\"".to_owned(),
    };
    std::fs::write(
        dir.path().join("workflows/burst.yaml"),
        format!("on:\n  webhook:\n    path: /hooks/burst\nsteps:\n  - name: deliver\n    {step}\n"),
    )
    .expect("workflow");
    dir
}

/// Send `count` webhooks, `concurrency` at a time: (status, Retry-After present, run ids).
async fn burst(
    server: &ServeProcess,
    count: usize,
    concurrency: usize,
) -> Vec<(u16, bool, Vec<String>)> {
    let url = format!("{}/hooks/burst", server.webhook);
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut sends = Vec::new();
    for n in 0..count {
        let permit = Arc::clone(&slots).acquire_owned().await.expect("permit");
        let url = url.clone();
        sends.push(tokio::spawn(async move {
            let response = client()
                .post(url)
                .header("content-type", "application/json")
                .body(format!("{{\"n\": {n}}}"))
                .send()
                .await
                .expect("answer");
            drop(permit);
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: Json = response.json().await.unwrap_or(Json::Null);
            let ids = body["run_ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (status, retry_after, ids)
        }));
    }
    let mut answers = Vec::new();
    for send in sends {
        answers.push(send.await.expect("join"));
    }
    answers
}

/// A value of `/metrics`, by its exact series name.
async fn metric(server: &ServeProcess, series: &str) -> f64 {
    let text = client()
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// Wait until the store holds every run in `ids` finished.
async fn wait_finished(store_path: &std::path::Path, ids: &[String], deadline: Duration) {
    let store = Store::open(&store_path.display().to_string(), OpenMode::Read)
        .await
        .expect("open the store");
    let until = Instant::now() + deadline;
    let mut unfinished: Vec<String> = ids.to_vec();
    while !unfinished.is_empty() {
        let mut still = Vec::new();
        for id in unfinished {
            let done = store
                .run(&id)
                .await
                .expect("read")
                .is_some_and(|d| d.run.status.is_final());
            if !done {
                still.push(id);
            }
        }
        unfinished = still;
        assert!(
            Instant::now() < until,
            "{} runs never finished",
            unfinished.len()
        );
        if !unfinished.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_window_waits_in_the_store_and_every_run_finishes() {
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_millis(20));
    let dir = folder("workers: 2\nrun_window: 8\n", Some(&receiver));
    let server = ServeProcess::start(dir.path());
    let answers = burst(&server, 200, 16).await;
    assert!(
        answers.iter().all(|(status, ..)| *status == 202),
        "a webhook was refused"
    );
    let ids: Vec<String> = answers.into_iter().flat_map(|(.., ids)| ids).collect();
    wait_finished(
        &dir.path().join("hookflow.db"),
        &ids,
        Duration::from_secs(120),
    )
    .await;
    let peak = metric(&server, "hookflow_run_window_peak").await;
    let left = metric(&server, "hookflow_runs_left_in_store_total").await;
    println!("burst: 200 accepted, window peak {peak} (bound 8), {left} left in the store");
    assert!(peak <= 8.0, "the window held {peak} runs, more than 8");
    assert!(
        left > 0.0,
        "no run was left in the store: the burst never filled the window"
    );
    assert_eq!(receiver.received().len(), 200, "every run calls once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_queued_runs_are_taken_from_the_store_never_past_the_window() {
    const QUEUED: usize = 50_000;
    let dir = folder("workers: 8\nrun_window: 64\nmax_backlog: 100000\n", None);
    let store_path = dir.path().join("hookflow.db");
    // One run through the server gives the workflow's version, which the queued runs name.
    let server = ServeProcess::start(dir.path());
    let first = burst(&server, 1, 1).await;
    let first_id = first[0].2[0].clone();
    wait_finished(
        &store_path,
        std::slice::from_ref(&first_id),
        Duration::from_secs(30),
    )
    .await;
    let (status, _) = server.terminate();
    assert!(status.success());
    let version = {
        let store = Store::open(&store_path.display().to_string(), OpenMode::Serve)
            .await
            .expect("open");
        let version = store
            .run(&first_id)
            .await
            .expect("read")
            .expect("run")
            .run
            .version;
        fill(&store, &version, QUEUED).await;
        version
    };
    assert!(!version.is_empty());

    let server = ServeProcess::start(dir.path());
    let store = Store::open(&store_path.display().to_string(), OpenMode::Read)
        .await
        .expect("open");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let left = store.count_queued().await.expect("count");
        let peak = metric(&server, "hookflow_run_window_peak").await;
        assert!(peak <= 64.0, "the window held {peak} runs, more than 64");
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} runs still queued");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let finished = metric(
        &server,
        "hookflow_runs_finished_total{workflow=\"burst\",status=\"succeeded\"}",
    )
    .await;
    let peak = metric(&server, "hookflow_run_window_peak").await;
    let rss_kib = peak_rss_kib(server.child.id());
    println!(
        "{QUEUED} queued runs: window peak {peak} (bound 64), peak RSS {} MiB",
        rss_kib / 1024
    );
    assert!(peak <= 64.0);
    assert!(
        finished >= (QUEUED - 64) as f64,
        "only {finished} runs finished"
    );
}

/// Accept `count` events with one queued run each, many at a time (group commits).
async fn fill(store: &Store, version: &str, count: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(128));
    let mut accepts = tokio::task::JoinSet::new();
    for n in 0..count {
        let permit = Arc::clone(&slots).acquire_owned().await.expect("permit");
        let (store, version) = (store.clone(), version.to_owned());
        accepts.spawn(async move {
            let body = serde_json::json!({ "n": n });
            let event = Event {
                id: uuid::Uuid::now_v7().to_string(),
                method: "POST".into(),
                path: "/hooks/burst".into(),
                params: Default::default(),
                query: Default::default(),
                headers: Default::default(),
                raw: body.to_string().into_bytes(),
                body,
                received_at: chrono::Utc::now(),
                trigger: Trigger::Webhook,
                trace: None,
            };
            let run = NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                workflow: "burst".into(),
                version,
                dedupe: None,
                concurrency: None,
            };
            store
                .accept(Arc::new(event), std::slice::from_ref(&run))
                .await
                .expect("accept");
            drop(permit);
        });
    }
    while let Some(done) = accepts.join_next().await {
        done.expect("join");
    }
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_backlog_webhooks_are_answered_503_with_retry_after_and_recorded() {
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_millis(50));
    let dir = folder(
        "workers: 1\nrun_window: 4\nmax_backlog: 30\n",
        Some(&receiver),
    );
    let server = ServeProcess::start(dir.path());
    let mut answers = Vec::new();
    // Past the recount (250 ms) the store's queue is known to be full.
    for _ in 0..4 {
        answers.extend(burst(&server, 40, 8).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let refused: Vec<_> = answers.iter().filter(|(s, ..)| *s == 503).collect();
    let accepted: Vec<String> = answers
        .iter()
        .filter(|(s, ..)| *s == 202)
        .flat_map(|(.., ids)| ids.clone())
        .collect();
    println!(
        "backlog: {} accepted, {} refused",
        accepted.len(),
        refused.len()
    );
    assert!(!refused.is_empty(), "nothing was refused past max_backlog");
    assert!(
        refused.iter().all(|(_, retry_after, _)| *retry_after),
        "503 without Retry-After"
    );
    assert!(answers.iter().all(|(s, ..)| *s == 202 || *s == 503));
    let rejected: Json = client()
        .get(format!("{}/api/rejected", server.admin))
        .send()
        .await
        .expect("rejected")
        .json()
        .await
        .expect("json");
    assert_eq!(
        rejected["rejected"][0]["reason"], "backlog_full",
        "{rejected}"
    );
    let counted = metric(
        &server,
        "hookflow_rejected_requests_total{reason=\"backlog_full\"}",
    )
    .await;
    assert_eq!(counted as usize, refused.len());
    wait_finished(
        &dir.path().join("hookflow.db"),
        &accepted,
        Duration::from_secs(120),
    )
    .await;
}

/// The server's own heap and stacks (anonymous memory, not the binary's code mapped from the
/// page cache), in KiB.
fn anonymous_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon")
}

/// An idle server keeps little memory of its own: the allocator commits memory as it is used
/// (committing its arenas eagerly kept 21 MiB resident where 5 were in use).
#[tokio::test]
async fn an_idle_server_holds_little_memory_of_its_own() {
    let dir = folder("{}\n", None);
    let server = ServeProcess::start(dir.path());
    let answer = client()
        .post(format!("{}/hooks/burst", server.webhook))
        .json(&serde_json::json!({ "n": 1 }))
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), 202);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let anonymous = anonymous_rss_kib(server.child.id());
    assert!(
        anonymous < 12 * 1024,
        "an idle server holds {anonymous} KiB of anonymous memory"
    );
    server.terminate();
}
