//! Workflow `concurrency` and `timeout` on a real server: runs with one key never overlap,
//! `cancel_previous` leaves only the newest queued run, `skip` refuses a busy key, and a run
//! past its `timeout` fails with `on_error`.

use std::time::{Duration, Instant};

use crate::support::{Receiver, TestServer, step};

fn keyed_workflow(receiver: &Receiver, mode: &str) -> String {
    format!(
        r#"
on: {{ webhook: {{ path: /hooks/deploy }} }}
concurrency: {{ key: "{{{{ body.repository }}}}", limit: 1, mode: {mode} }}
steps:
  - name: begin
    http: {{ url: "{url}/begin", json: {{ n: "{{{{ event.body.n }}}}" }} }}
  - name: work
    http: {{ url: "{url}/slow", json: {{ n: "{{{{ event.body.n }}}}" }} }}
  - name: end
    http: {{ url: "{url}/end", json: {{ n: "{{{{ event.body.n }}}}" }} }}
"#,
        url = receiver.url("")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_one_key_and_limit_1_never_overlap() {
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_millis(150));
    let yaml = keyed_workflow(&receiver, "queue");
    let server = TestServer::start(&[("deploy.yaml", &yaml)]).await;
    // Ten at once for one repository, and one for another that need not wait.
    let mut sends = Vec::new();
    for n in 0..10 {
        let (client, url) = (
            server.client.clone(),
            format!("{}/hooks/deploy", server.base),
        );
        sends.push(tokio::spawn(async move {
            let answer: serde_json::Value = client
                .post(url)
                .json(&serde_json::json!({ "repository": "acme/api", "n": n }))
                .send()
                .await
                .expect("post")
                .json()
                .await
                .expect("json");
            answer["run_ids"][0].as_str().expect("run id").to_owned()
        }));
    }
    let mut runs = Vec::new();
    for send in sends {
        runs.push(send.await.expect("join"));
    }
    for run in &runs {
        let detail = server.finished_run(run).await;
        assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    }
    // Each run's span, from its first request's arrival to its last one's.
    let got = receiver.received();
    let mut spans = Vec::new();
    for n in 0..10 {
        let at = |path: &str| {
            got.iter()
                .find(|r| r.uri == path && r.json()["n"] == n)
                .unwrap_or_else(|| panic!("run {n} made no {path} call"))
                .at
        };
        spans.push((at("/begin"), at("/end"), n));
    }
    spans.sort();
    for pair in spans.windows(2) {
        let ((_, end, a), (begin, _, b)) = (pair[0], pair[1]);
        assert!(
            begin >= end,
            "run {b} began before run {a} ended: the runs overlapped"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn cancel_previous_leaves_only_the_newest_queued_run() {
    let receiver = Receiver::start().await;
    // Long enough for the later events to arrive while the first run is still under way.
    receiver.slow("/slow", Duration::from_secs(3));
    let yaml = keyed_workflow(&receiver, "cancel_previous");
    let server = TestServer::start(&[("deploy.yaml", &yaml)]).await;
    let post = |n: u32| {
        server.accepted(
            "/hooks/deploy",
            "application/json",
            serde_json::to_vec(&serde_json::json!({ "repository": "acme/api", "n": n }))
                .expect("json"),
        )
    };
    let first = post(0).await.remove(0);
    // The first run is under way (its slow call is in flight) before the others arrive.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !receiver.received().iter().any(|r| r.uri == "/slow") {
        assert!(Instant::now() < deadline, "the first run did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut queued = Vec::new();
    for n in 1..=4 {
        queued.push(post(n).await.remove(0));
    }
    let newest = queued.pop().expect("newest");
    for older in &queued {
        let detail = server.finished_run(older).await;
        assert_eq!(detail["run"]["status"], "cancelled", "{detail}");
        let error = detail["run"]["error"].as_str().expect("reason");
        assert!(error.contains("superseded"), "{error}");
        assert!(detail["steps"].as_array().expect("steps").is_empty());
    }
    for run in [&first, &newest] {
        let detail = server.finished_run(run).await;
        assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    }
    // Only the running one and the newest did any work.
    let mut worked: Vec<i64> = receiver
        .received()
        .iter()
        .filter(|r| r.uri == "/begin")
        .map(|r| r.json()["n"].as_i64().expect("n"))
        .collect();
    worked.sort();
    assert_eq!(worked, vec![0, 4]);
    server.stop().await;
}

#[tokio::test]
async fn skip_records_a_run_for_a_busy_key_as_cancelled_with_the_reason() {
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_secs(3));
    let yaml = keyed_workflow(&receiver, "skip");
    let server = TestServer::start(&[("deploy.yaml", &yaml)]).await;
    let body = |n: u32, repository: &str| {
        serde_json::to_vec(&serde_json::json!({ "repository": repository, "n": n })).expect("json")
    };
    let first = server
        .accepted("/hooks/deploy", "application/json", body(0, "acme/api"))
        .await;
    let busy = server
        .accepted("/hooks/deploy", "application/json", body(1, "acme/api"))
        .await;
    let free = server
        .accepted("/hooks/deploy", "application/json", body(2, "acme/web"))
        .await;
    let skipped = server.finished_run(&busy[0]).await;
    assert_eq!(skipped["run"]["status"], "cancelled", "{skipped}");
    let reason = skipped["run"]["error"].as_str().expect("reason");
    assert!(reason.starts_with("skipped"), "{reason}");
    assert!(reason.contains("acme/api"), "{reason}");
    for run in [&first[0], &free[0]] {
        let detail = server.finished_run(run).await;
        assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_run_past_its_timeout_fails_and_its_on_error_steps_run() {
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_secs(5));
    let in_a_step = format!(
        r#"
on: {{ webhook: {{ path: /hooks/busy }} }}
timeout: 1s
steps:
  - name: call
    http: {{ url: "{url}/slow" }}
on_error:
  - name: report
    http: {{ url: "{url}/report", json: {{ error: "{{{{ run.error }}}}" }} }}
"#,
        url = receiver.url("")
    );
    let in_a_wait = format!(
        r#"
on: {{ webhook: {{ path: /hooks/idle }} }}
timeout: 1s
steps:
  - name: wait
    delay: 1h
  - name: never
    http: {{ url: "{url}/never" }}
on_error:
  - name: report
    log: "{{{{ run.error }}}}"
"#,
        url = receiver.url("")
    );
    let server = TestServer::start(&[("busy.yaml", &in_a_step), ("idle.yaml", &in_a_wait)]).await;
    let busy = server
        .accepted("/hooks/busy", "application/json", b"{}".to_vec())
        .await;
    let idle = server
        .accepted("/hooks/idle", "application/json", b"{}".to_vec())
        .await;
    let detail = server.finished_run(&busy[0]).await;
    assert_eq!(detail["run"]["status"], "failed", "{detail}");
    assert_eq!(detail["run"]["error"], "run timed out after 1s");
    let reports = receiver.wait_for(2).await;
    let report = reports
        .iter()
        .find(|r| r.uri == "/report")
        .expect("on_error ran");
    assert_eq!(report.json()["error"], "run timed out after 1s");

    let detail = server.finished_run(&idle[0]).await;
    assert_eq!(detail["run"]["status"], "failed", "{detail}");
    assert_eq!(detail["run"]["error"], "run timed out after 1s");
    assert_eq!(
        step(&detail, "report")["output"]["message"],
        "run timed out after 1s"
    );
    assert!(!receiver.received().iter().any(|r| r.uri == "/never"));
    server.stop().await;
}

/// A synchronous caller whose queued run is superseded by a newer one is answered at once with
/// `cancelled`, not left waiting for `sync_timeout` and then told its run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_caller_is_told_when_its_queued_run_is_superseded() {
    let receiver = Receiver::start().await;
    receiver.slow("/slow", Duration::from_secs(3));
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/deploy, respond: sync }} }}
concurrency: {{ key: "{{{{ body.repository }}}}", limit: 1, mode: cancel_previous }}
steps:
  - name: work
    http: {{ url: "{url}", json: {{ n: "{{{{ event.body.n }}}}" }} }}
"#,
        url = receiver.url("/slow")
    );
    let server = TestServer::start(&[("deploy.yaml", &yaml)]).await;
    let post = |n: u32| {
        let (client, url) = (
            server.client.clone(),
            format!("{}/hooks/deploy", server.base),
        );
        tokio::spawn(async move {
            let answer = client
                .post(url)
                .json(&serde_json::json!({ "repository": "acme/api", "n": n }))
                .send()
                .await
                .expect("post");
            let status = answer.status().as_u16();
            let body: serde_json::Value = answer.json().await.expect("json");
            (status, body, Instant::now())
        })
    };
    let first = post(0);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !receiver.received().iter().any(|r| r.uri == "/slow") {
        assert!(Instant::now() < deadline, "the first run did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = post(1);
    // The second is queued behind the first before the third supersedes it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let superseded_at = Instant::now();
    let third = post(2);
    let (status, body, answered_at) = second.await.expect("join");
    assert_eq!(body["status"], "cancelled", "{body}");
    assert_eq!(status, 200, "{body}");
    assert!(
        answered_at.duration_since(superseded_at) < Duration::from_secs(2),
        "answered {:?} after it was superseded",
        answered_at.duration_since(superseded_at)
    );
    for run in [first, third] {
        let (status, body, _) = run.await.expect("join");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "succeeded", "{body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_running_caps_the_runs_at_once_and_starts_the_refused_ones_later() {
    let receiver = Receiver::start().await;
    let pause = Duration::from_millis(300);
    receiver.slow("/slow", pause);
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/capped }} }}
steps:
  - name: work
    http: {{ url: "{url}/slow", json: {{ n: "{{{{ event.body.n }}}}" }} }}
"#,
        url = receiver.url("")
    );
    // Eight workers, but two runs at once in the store: the other six are refused a place,
    // stay queued, and start as places free.
    let server = TestServer::start_with(&[("capped.yaml", &yaml)], |settings| {
        settings.workers = 8;
        settings.store_options.max_running = Some(2);
    })
    .await;
    let mut sends = Vec::new();
    for n in 0..8 {
        let (client, url) = (
            server.client.clone(),
            format!("{}/hooks/capped", server.base),
        );
        sends.push(tokio::spawn(async move {
            let answer: serde_json::Value = client
                .post(url)
                .json(&serde_json::json!({ "n": n }))
                .send()
                .await
                .expect("post")
                .json()
                .await
                .expect("json");
            answer["run_ids"][0].as_str().expect("run id").to_owned()
        }));
    }
    let mut runs = Vec::new();
    for send in sends {
        runs.push(send.await.expect("join"));
    }
    for run in &runs {
        let detail = server.finished_run(run).await;
        assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    }
    let starts: Vec<Instant> = receiver.received().iter().map(|r| r.at).collect();
    assert_eq!(starts.len(), 8);
    // A call is in progress for at least the pause from its arrival.
    let most = starts
        .iter()
        .map(|start| {
            starts
                .iter()
                .filter(|other| **other <= *start && *start < **other + pause)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= 2, "{most} runs at once under max_running: 2");
    server.stop().await;
}
