//! Control flow steps on a real server: `foreach` over real push payloads, `parallel` branches,
//! a durable `delay` across a restart, `call`, and a `kill -9` in the middle of a loop.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hookflow::run::StepStatus;
use hookflow::store::{OpenMode, Store};
use serde_json::Value as Json;

use crate::support::{Receiver, ServeProcess, TestServer, client, fixture, fixture_json, step};

fn foreach_workflow(receiver: &Receiver) -> String {
    format!(
        r#"
on: {{ webhook: {{ path: /hooks/push }} }}
steps:
  - name: each
    foreach:
      items: "{{{{ event.body.commits }}}}"
      as: commit
      parallel: 3
      steps:
        - name: post
          http:
            url: "{url}"
            json: {{ id: "{{{{ commit.id }}}}", n: "{{{{ loop.index }}}}", of: "{{{{ loop.length }}}}" }}
        - name: seen
          set: {{ last_status: "{{{{ steps.post.status }}}}" }}
  - name: summary
    log: "{{{{ steps.each.output | length }}}} commits, first {{{{ steps.each.output[0].post.status }}}}"
"#,
        url = receiver.url("/commit")
    )
}

/// One call per commit of a real push payload, each with its own idempotency key.
async fn one_call_per_commit(fixture_name: &str) {
    let receiver = Receiver::start().await;
    let yaml = foreach_workflow(&receiver);
    let server = TestServer::start(&[("push.yaml", &yaml)]).await;
    let payload = fixture_json(fixture_name);
    let commits: Vec<String> = payload["commits"]
        .as_array()
        .expect("commits")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert!(!commits.is_empty(), "{fixture_name} has commits");
    let runs = server
        .accepted("/hooks/push", "application/json", fixture(fixture_name))
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.received();
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| r.json()["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    let mut expected = commits.clone();
    expected.sort();
    assert_eq!(ids, expected, "one call per commit");
    let keys: HashSet<String> = got
        .iter()
        .map(|r| r.header("idempotency-key").expect("key").to_owned())
        .collect();
    let expected_keys: HashSet<String> = (0..commits.len())
        .map(|i| format!("{}.each[{i}].post", runs[0]))
        .collect();
    assert_eq!(keys, expected_keys);
    // Every nested step is recorded under its path; the loop's output lists the iterations.
    for i in 0..commits.len() {
        assert_eq!(
            step(&run, &format!("each[{i}].post"))["status"],
            "succeeded"
        );
        assert_eq!(
            step(&run, &format!("each[{i}].seen"))["status"],
            "succeeded"
        );
    }
    let output = &step(&run, "each")["output"];
    assert_eq!(output.as_array().expect("list").len(), commits.len());
    assert_eq!(output[0]["post"]["status"], 200);
    assert_eq!(output[0]["seen"]["last_status"], 200);
    assert_eq!(
        step(&run, "summary")["output"]["message"],
        format!("{} commits, first 200", commits.len())
    );
    server.stop().await;
}

#[tokio::test]
async fn foreach_over_the_commits_of_a_github_push_makes_one_call_per_commit() {
    one_call_per_commit("github/push.json").await;
}

#[tokio::test]
async fn foreach_over_the_commits_of_a_gitlab_push_makes_one_call_per_commit() {
    one_call_per_commit("gitlab/push.json").await;
}

#[tokio::test]
async fn foreach_runs_at_most_parallel_iterations_at_once_and_a_failure_fails_the_step() {
    let receiver = Receiver::start().await;
    // Item 4 fails at once; the others take a while, so the failure is known long before a
    // slot frees up for item 7.
    receiver.slow("/item", Duration::from_secs(1));
    receiver.reply("/fail", 500, "text/plain", "no");
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/items }} }}
steps:
  - name: each
    foreach:
      items: {{ jsonpath: "$.items[*]" }}
      parallel: 3
      steps:
        - name: post
          retry: {{ attempts: 1 }}
          http: {{ url: "{url}/{{{{ 'fail' if item == 4 else 'item' }}}}/{{{{ item }}}}" }}
  - name: never
    log: "not reached"
on_error:
  - name: report
    log: "{{{{ run.failed_step }}}}: {{{{ run.error }}}}"
"#,
        url = receiver.url("")
    );
    let server = TestServer::start(&[("items.yaml", &yaml)]).await;
    let runs = server
        .accepted(
            "/hooks/items",
            "application/json",
            br#"{"items": [1, 2, 3, 4, 5, 6, 7, 8, 9]}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let report = step(&run, "report")["output"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(
        report.starts_with(
            "each: step 'each' failed: iteration 3 failed: step 'each[3].post' failed"
        ),
        "{report}"
    );
    // Iterations start in order, three at a time; once item 4 failed none started after the
    // ones already running, so 7, 8 and 9 never ran.
    let got = receiver.received();
    let paths: HashSet<String> = got.iter().map(|r| r.uri.clone()).collect();
    assert!(paths.contains("/fail/4"), "{paths:?}");
    for n in [1, 2, 3, 5, 6] {
        assert!(paths.contains(&format!("/item/{n}")), "{paths:?}");
    }
    for n in 7..=9 {
        assert!(!paths.contains(&format!("/item/{n}")), "{paths:?}");
    }
    let output = &step(&run, "each")["output"];
    assert_eq!(output[6], Json::Null, "never started: {output}");
    assert_eq!(output[3]["post"]["failed"], true);
    server.stop().await;
}

#[tokio::test]
async fn continue_on_error_keeps_the_loop_going_and_records_the_failed_iteration() {
    let receiver = Receiver::start().await;
    receiver.reply("/item/b", 500, "text/plain", "no");
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/items }} }}
steps:
  - name: each
    continue_on_error: true
    foreach:
      items: ["a", "b", "c"]
      as: letter
      steps:
        - name: post
          retry: {{ attempts: 1 }}
          http: {{ url: "{url}/{{{{ letter }}}}" }}
  - name: after
    log: "{{{{ 'failed' if steps.each.output[1].post.failed }}}} {{{{ steps.each.output[2].post.status }}}}"
"#,
        url = receiver.url("/item")
    );
    let server = TestServer::start(&[("items.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/items", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(step(&run, "after")["output"]["message"], "failed 200");
    assert!(
        step(&run, "each")["output"][1]["post"]["error"]
            .as_str()
            .expect("error")
            .contains("500")
    );
    server.stop().await;
}

#[tokio::test]
async fn parallel_branches_run_at_once_and_output_a_map() {
    let receiver = Receiver::start().await;
    receiver.slow("/branch", Duration::from_secs(2));
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/fan }} }}
steps:
  - name: fanout
    parallel:
      branches:
        slack:
          steps:
            - name: call
              http: {{ url: "{url}/branch/slack", json: {{ text: "{{{{ event.body.msg }}}}" }} }}
        pager:
          steps:
            - name: call
              http: {{ url: "{url}/branch/pager", json: {{ text: "{{{{ event.body.msg }}}}" }} }}
            - name: note
              set: {{ paged: "{{{{ steps.call.status }}}}" }}
  - name: after
    log: "{{{{ steps.fanout.slack.call.status }}}} {{{{ steps.fanout.pager.note.paged }}}}"
"#,
        url = receiver.url("")
    );
    let server = TestServer::start(&[("fan.yaml", &yaml)]).await;
    let runs = server
        .accepted(
            "/hooks/fan",
            "application/json",
            br#"{"msg":"hi"}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    // Both calls arrived before either slow answer came back: the branches ran at once.
    let gap = if got[0].at > got[1].at {
        got[0].at - got[1].at
    } else {
        got[1].at - got[0].at
    };
    assert!(
        gap < Duration::from_secs(2),
        "branches ran one after the other: {gap:?}"
    );
    let keys: HashSet<&str> = got
        .iter()
        .map(|r| r.header("idempotency-key").expect("key"))
        .collect();
    let expected: HashSet<String> = ["slack", "pager"]
        .iter()
        .map(|b| format!("{}.fanout.{b}.call", runs[0]))
        .collect();
    assert_eq!(keys, expected.iter().map(String::as_str).collect());
    assert_eq!(step(&run, "after")["output"]["message"], "200 200");
    let output = &step(&run, "fanout")["output"];
    assert_eq!(output["slack"]["call"]["status"], 200);
    assert_eq!(output["pager"]["note"]["paged"], 200);
    server.stop().await;
}

#[tokio::test]
async fn a_delay_survives_a_restart_with_its_remaining_time() {
    let receiver = Receiver::start().await;
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/later }} }}
steps:
  - name: wait
    delay: 4s
  - name: call
    http: {{ url: "{url}" }}
"#,
        url = receiver.url("/later")
    );
    let server = TestServer::start(&[("later.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/later", "application/json", b"{}".to_vec())
        .await;
    let run_id = runs[0].clone();
    // The wait is recorded with its end before the server goes away.
    let store = Store::open(&server.store_path().display().to_string(), OpenMode::Read)
        .await
        .expect("store");
    let deadline = Instant::now() + Duration::from_secs(15);
    let until = loop {
        let detail = store.run(&run_id).await.expect("read").expect("run");
        let wait = detail.steps.iter().find(|s| s.name == "wait");
        if let Some(wait) = wait.filter(|_| detail.run.status.as_str() == "retrying") {
            assert_eq!(wait.status, StepStatus::Retrying);
            break wait.output["until"].as_str().expect("until").to_owned();
        }
        assert!(Instant::now() < deadline, "the delay was never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let until = chrono::DateTime::parse_from_rfc3339(&until).expect("time");
    let dir = server.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = TestServer::start_in(dir).await;
    let run = server.finished_run(&run_id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    // The wait kept its end: the call came after it, and the record still holds the same end
    // (a fresh wait after the restart would have ended about 1.5 s later).
    let wait = step(&run, "wait");
    assert_eq!(wait["status"], "succeeded");
    let kept =
        chrono::DateTime::parse_from_rfc3339(wait["output"]["until"].as_str().expect("until"))
            .expect("time");
    assert_eq!(kept, until);
    let finished = chrono::DateTime::parse_from_rfc3339(
        step(&run, "call")["started_at"].as_str().expect("started"),
    )
    .expect("time");
    assert!(
        finished >= until,
        "called at {finished}, before the wait ended at {until}"
    );
    server.stop().await;
}

/// Waits too long for the clock, from a sender's payload or from the workflow, end the step or
/// are no deadline, instead of panicking the run's task (which left the run `running`, its
/// lease renewed and its concurrency slot held for ever).
#[tokio::test]
async fn waits_too_long_for_the_clock_fail_cleanly() {
    let receiver = Receiver::start().await;
    receiver.reply("/busy", 503, "text/plain", "busy");
    let delay = r#"
on: { webhook: { path: /hooks/wait } }
steps:
  - name: wait
    delay: "{{ event.body.wait }}"
"#;
    let timeout = r#"
on: { webhook: { path: /hooks/timeout } }
timeout: 100000000000d
steps:
  - name: note
    log: "no deadline within reach"
"#;
    let retry = format!(
        r#"
on: {{ webhook: {{ path: /hooks/retry }} }}
steps:
  - name: call
    http: {{ url: "{url}" }}
    retry: {{ attempts: 3, backoff: fixed, initial: 100000000000d, max: 100000000000d }}
"#,
        url = receiver.url("/busy")
    );
    let server = TestServer::start(&[
        ("wait.yaml", delay),
        ("timeout.yaml", timeout),
        ("retry.yaml", &retry),
    ])
    .await;
    for wait in [serde_json::json!(1e300), serde_json::json!("100000000000d")] {
        let body = serde_json::to_vec(&serde_json::json!({ "wait": wait })).expect("json");
        let runs = server
            .accepted("/hooks/wait", "application/json", body)
            .await;
        let run = server.finished_run(&runs[0]).await;
        assert_eq!(run["run"]["status"], "failed", "{run}");
        let error = step(&run, "wait")["error"].as_str().unwrap_or_default();
        assert!(error.contains("too long"), "{run}");
    }
    let runs = server
        .accepted("/hooks/timeout", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let runs = server
        .accepted("/hooks/retry", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(step(&run, "call")["status"], "failed", "{run}");
    server.stop().await;
}

#[tokio::test]
async fn call_runs_another_workflow_with_a_payload_and_outputs_its_vars_and_steps() {
    let receiver = Receiver::start().await;
    let caller = format!(
        r#"
on: {{ webhook: {{ path: /hooks/deploy }} }}
steps:
  - name: notify
    call:
      workflow: notifier
      payload: {{ service: "{{{{ event.body.service }}}}", version: 3 }}
  - name: after
    http:
      url: "{url}/after"
      json: {{ said: "{{{{ steps.notify.vars.line }}}}", status: "{{{{ steps.notify.steps.post.status }}}}" }}
"#,
        url = receiver.url("")
    );
    let notifier = format!(
        r#"
vars:
  line: "{{{{ event.body.service }}}} v{{{{ event.body.version }}}}"
steps:
  - name: post
    http: {{ url: "{url}/notify", json: {{ text: "{{{{ vars.line }}}}" }} }}
"#,
        url = receiver.url("")
    );
    let server = TestServer::start(&[("deploy.yaml", &caller), ("notifier.yaml", &notifier)]).await;
    let runs = server
        .accepted(
            "/hooks/deploy",
            "application/json",
            br#"{"service":"api"}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].uri, "/notify");
    assert_eq!(got[0].json()["text"], "api v3");
    assert_eq!(
        got[0].header("idempotency-key"),
        Some(format!("{}.notify.post", runs[0]).as_str())
    );
    assert_eq!(
        got[1].json(),
        serde_json::json!({ "said": "api v3", "status": 200 })
    );
    assert_eq!(step(&run, "notify.post")["status"], "succeeded");
    assert_eq!(step(&run, "notify")["output"]["workflow"], "notifier");
    server.stop().await;
}

/// `parallel:` above what a semaphore can count runs every iteration at once instead of
/// panicking the run's task (which left the run `running` for ever).
#[tokio::test]
async fn a_huge_parallel_runs_the_loop() {
    let yaml = r#"
on: { webhook: { path: /hooks/wide } }
steps:
  - name: each
    foreach:
      items: [1, 2, 3]
      parallel: 3000000000000000000
      steps:
        - log: "{{ item }}"
"#;
    let server = TestServer::start(&[("wide.yaml", yaml)]).await;
    let runs = server
        .accepted("/hooks/wide", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(
        step(&run, "each")["output"].as_array().map(Vec::len),
        Some(3)
    );
    server.stop().await;
}

/// A called workflow's secrets stay masked in what its caller records: the call step's error
/// and the run's, which carry the failed nested step's error (here its URL, with the secret).
#[tokio::test]
async fn a_called_workflows_secret_in_its_error_is_masked_for_the_caller() {
    let secret = "callee-secret-7c41d9";
    crate::support::set_env("CALL_IT_CALLEE_TOKEN", secret);
    let receiver = Receiver::start().await;
    receiver.reply("/refuse", 400, "text/plain", "no");
    receiver.reply("/busy", 503, "text/plain", "later");
    let caller = |which: &str| {
        format!(
            r#"
on: {{ webhook: {{ path: /hooks/{which} }} }}
steps:
  - name: notify
    call: {{ workflow: notifier-{which} }}
"#
        )
    };
    let callee = |path: &str, retry: &str| {
        format!(
            r#"
secrets: [CALL_IT_CALLEE_TOKEN]
steps:
  - name: post
    http: {{ url: "{url}?key={{{{ secrets.CALL_IT_CALLEE_TOKEN }}}}" }}
    {retry}
"#,
            url = receiver.url(path)
        )
    };
    let refuse = callee("/refuse", "");
    let busy = callee(
        "/busy",
        "retry: { attempts: 2, backoff: fixed, initial: 1s }",
    );
    let server = TestServer::start(&[
        ("caller-refuse.yaml", &caller("refuse")),
        ("caller-busy.yaml", &caller("busy")),
        ("notifier-refuse.yaml", &refuse),
        ("notifier-busy.yaml", &busy),
    ])
    .await;
    for which in ["refuse", "busy"] {
        let runs = server
            .accepted(
                &format!("/hooks/{which}"),
                "application/json",
                b"{}".to_vec(),
            )
            .await;
        if which == "busy" {
            // Waiting for its retry, the run's error says why.
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let detail: Json = server
                    .client
                    .get(format!("{}/api/runs/{}", server.admin, runs[0]))
                    .send()
                    .await
                    .expect("admin")
                    .json()
                    .await
                    .expect("json");
                if detail["run"]["status"] == "retrying" {
                    assert!(detail["run"]["error"].is_string(), "{detail}");
                    assert!(!detail.to_string().contains(secret), "{detail}");
                    break;
                }
                assert!(Instant::now() < deadline, "never retrying: {detail}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let run = server.finished_run(&runs[0]).await;
        assert_eq!(run["run"]["status"], "failed", "{run}");
        assert!(
            step(&run, "notify")["error"]
                .as_str()
                .is_some_and(|e| e.contains("***")),
            "{run}"
        );
        assert!(!run.to_string().contains(secret), "{which}: {run}");
    }
    assert!(
        receiver.received().iter().any(|r| r.uri.contains(secret)),
        "the callee used its secret"
    );
    server.stop().await;
}

/// `kill -9` while a loop is half done: after the restart, the iterations recorded as done are
/// not done again, and every item gets its call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_loop_repeats_no_finished_iteration() {
    let items: usize = 24;
    let receiver = Receiver::start().await;
    receiver.slow("/item", Duration::from_millis(150));
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("loop.yaml"),
        format!(
            r#"
on: {{ webhook: {{ path: /hooks/loop }} }}
steps:
  - name: each
    foreach:
      items: "{{{{ event.body.items }}}}"
      parallel: 3
      steps:
        - name: call
          http: {{ url: "{url}/item", json: {{ n: "{{{{ item }}}}" }} }}
"#,
            url = receiver.url("")
        ),
    )
    .expect("write workflow");
    let server = ServeProcess::start(dir.path());
    let body = serde_json::json!({ "items": (0..items).collect::<Vec<_>>() });
    let answer: Json = client()
        .post(format!("{}/hooks/loop", server.webhook))
        .json(&body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let run_id = answer["run_ids"][0].as_str().expect("run id").to_owned();
    // Kill once some iterations are done, well before all are.
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.received().len() < items / 3 {
        assert!(Instant::now() < deadline, "the loop did not progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill_hard();
    let store_path = dir.path().join("hookflow.db").display().to_string();
    let done_before: HashSet<String> = {
        let store = Store::open(&store_path, OpenMode::Read)
            .await
            .expect("store");
        let detail = store.run(&run_id).await.expect("read").expect("run");
        detail
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Succeeded && s.name.starts_with("each["))
            .map(|s| s.name.clone())
            .collect()
    };
    assert!(
        !done_before.is_empty(),
        "no iteration was recorded before the kill"
    );
    assert!(
        done_before.len() < items,
        "the loop finished before the kill"
    );

    let server = ServeProcess::start(dir.path());
    let store = Store::open(&store_path, OpenMode::Read)
        .await
        .expect("store");
    let deadline = Instant::now() + Duration::from_secs(120);
    let detail = loop {
        let detail = store.run(&run_id).await.expect("read").expect("run");
        if detail.run.status.is_final() {
            break detail;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, _) = server.terminate();
    assert!(status.success());
    assert_eq!(
        detail.run.status.as_str(),
        "succeeded",
        "{:?}",
        detail.run.error
    );
    let mut calls: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        let key = request.header("idempotency-key").expect("key");
        *calls.entry(key.to_owned()).or_default() += 1;
    }
    for i in 0..items {
        let name = format!("each[{i}].call");
        let count = calls.get(&format!("{run_id}.{name}")).copied().unwrap_or(0);
        assert!(count >= 1, "item {i} was never called");
        if done_before.contains(&name) {
            assert_eq!(
                count, 1,
                "{name} was recorded before the kill and called again"
            );
        }
    }
    // Only the iterations in flight at the kill (at most `parallel`) may have been repeated.
    let repeated: usize = calls.values().map(|c| c - 1).sum();
    assert!(repeated <= 3, "{repeated} repeated calls");
    println!(
        "loop crash test: {items} items, {} recorded before the kill, {repeated} repeated",
        done_before.len()
    );
}

/// `hookflow run` by name loads the directory, so a loop calling another workflow runs
/// in-process, each nested step traced under its path.
#[test]
fn hookflow_run_traces_a_loop_of_calls_to_another_workflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    std::fs::write(
        workflows.join("caller.yaml"),
        r#"
steps:
  - name: each
    foreach:
      items: "{{ event.body.xs }}"
      steps:
        - name: twice
          call: { workflow: doubler, payload: { x: "{{ item }}" } }
  - name: sum
    set: { total: "{{ steps.each.output | map(attribute='twice') | map(attribute='vars') | sum(attribute='double') }}" }
"#,
    )
    .expect("write");
    std::fs::write(
        workflows.join("doubler.yaml"),
        r#"
vars:
  double: "{{ event.body.x * 2 }}"
steps:
  - log: "{{ run.caller }} -> {{ run.workflow }}: {{ vars.double }}"
"#,
    )
    .expect("write");
    let payload = dir.path().join("payload.json");
    std::fs::write(&payload, r#"{"xs": [1, 2, 3]}"#).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args(["run", "caller", "--workflows"])
        .arg(&workflows)
        .arg("--payload")
        .arg(&payload)
        .output()
        .expect("run hookflow");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let summary: Json = serde_json::from_slice(&output.stdout).expect("summary");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["vars"]["total"], 12);
    for i in 0..3 {
        assert!(
            stderr.contains(&format!("  - each[{i}].twice.log-1 (log) ok")),
            "{stderr}"
        );
    }
    assert!(stderr.contains("[1/2] each (foreach) ok"), "{stderr}");
}

/// A nested step waiting for a retry makes the run wait; when it resumes, the iterations that
/// finished are restored, not called again.
#[tokio::test]
async fn a_retry_inside_a_loop_resumes_without_repeating_finished_iterations() {
    let receiver = Receiver::start().await;
    receiver.reply_times("/item/b", 2, 503, &[], "busy");
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/items }} }}
steps:
  - name: each
    foreach:
      items: ["a", "b", "c", "d"]
      parallel: 2
      steps:
        - name: post
          retry: {{ attempts: 4, initial: 100ms, max: 200ms }}
          http: {{ url: "{url}/{{{{ item }}}}" }}
"#,
        url = receiver.url("/item")
    );
    let server = TestServer::start(&[("items.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/items", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let mut calls: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        *calls.entry(request.uri.clone()).or_default() += 1;
    }
    assert_eq!(
        calls.get("/item/b"),
        Some(&3),
        "two 503s, then success: {calls:?}"
    );
    for item in ["a", "c", "d"] {
        assert_eq!(calls.get(&format!("/item/{item}")), Some(&1), "{calls:?}");
    }
    assert_eq!(step(&run, "each[1].post")["attempts"], 3);
    assert_eq!(step(&run, "each[0].post")["attempts"], 1);
    assert_eq!(step(&run, "each")["output"][3]["post"]["status"], 200);
    server.stop().await;
}

/// A `delay` inside a loop makes the run wait (as `retrying`) and resumes each iteration after
/// its own wait.
#[tokio::test]
async fn a_delay_inside_a_loop_waits_durably_per_iteration() {
    let receiver = Receiver::start().await;
    let yaml = format!(
        r#"
on: {{ webhook: {{ path: /hooks/later }} }}
steps:
  - name: each
    foreach:
      items: [1, 2]
      parallel: 2
      steps:
        - name: wait
          delay: "{{{{ item }}}}s"
        - name: call
          http: {{ url: "{url}", json: {{ n: "{{{{ item }}}}" }} }}
"#,
        url = receiver.url("/later")
    );
    let server = TestServer::start(&[("later.yaml", &yaml)]).await;
    let runs = server
        .accepted("/hooks/later", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(receiver.received().len(), 2);
    for i in 0..2 {
        let until = chrono::DateTime::parse_from_rfc3339(
            step(&run, &format!("each[{i}].wait"))["output"]["until"]
                .as_str()
                .expect("until"),
        )
        .expect("time");
        let called = chrono::DateTime::parse_from_rfc3339(
            step(&run, &format!("each[{i}].call"))["started_at"]
                .as_str()
                .expect("started"),
        )
        .expect("time");
        assert!(
            called >= until,
            "iteration {i} called at {called}, before {until}"
        );
    }
    server.stop().await;
}

/// A journal that keeps nothing, for executing the engine directly.
struct Discard;

impl hookflow::engine::Journal for Discard {
    fn step_finished<'a>(
        &'a self,
        _record: &'a hookflow::run::StepRecord,
    ) -> hookflow::future::BoxFuture<'a, Result<(), hookflow::engine::JournalError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A journal that keeps nothing but makes the run wait for it, as a store does.
struct Yielding;

impl hookflow::engine::Journal for Yielding {
    fn step_finished<'a>(
        &'a self,
        _record: &'a hookflow::run::StepRecord,
    ) -> hookflow::future::BoxFuture<'a, Result<(), hookflow::engine::JournalError>> {
        Box::pin(async {
            tokio::task::yield_now().await;
            Ok(())
        })
    }
}

fn many_items_event(items: usize) -> hookflow::run::Event {
    hookflow::run::Event {
        id: "event".into(),
        method: "POST".into(),
        path: "/hooks/many".into(),
        params: Default::default(),
        query: Default::default(),
        headers: Default::default(),
        body: serde_json::json!({ "items": (0..items).collect::<Vec<_>>() }),
        raw: Vec::new(),
        received_at: chrono::Utc::now(),
        trigger: Default::default(),
        trace: None,
    }
}

/// A big loop polls only the iterations under way: polling every iteration of the list each
/// time one of them moved made a loop of n iterations cost n² polls (and each iteration's copy
/// of the run's state was made up front, n of them at once).
#[tokio::test]
async fn a_loop_of_many_iterations_polls_only_those_under_way() {
    use hookflow::run::RunStatus;
    let items: usize = 40_000;
    let yaml = r#"
on: { webhook: { path: /hooks/many } }
steps:
  - name: each
    foreach:
      items: "{{ event.body.items }}"
      parallel: 4
      steps:
        - name: note
          set: { last: "{{ item }}" }
"#;
    let event = many_items_event(items);
    let (outcome, took) = crate::support::execute_in_process(yaml, &event, &[], &Yielding).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert!(
        took < Duration::from_secs(8),
        "a loop of {items} iterations took {took:?}"
    );
}

/// Resuming a big loop finds each iteration's record by its path in a map: a walk over every
/// record per nested step made a resume of n iterations cost n² comparisons.
#[tokio::test]
async fn resuming_a_loop_of_many_iterations_finds_their_records_at_once() {
    use hookflow::run::{RunStatus, StepRecord};
    let items: usize = 40_000;
    let yaml = r#"
on: { webhook: { path: /hooks/many } }
steps:
  - name: each
    foreach:
      items: "{{ event.body.items }}"
      steps:
        - name: post
          http: { url: "http://127.0.0.1:9/never-called" }
"#;
    let event = many_items_event(items);
    // Every iteration finished before the interruption: all are restored, none is sent.
    let finished: Vec<StepRecord> = (0..items)
        .map(|i| StepRecord {
            index: 1 + i,
            name: format!("each[{i}].post"),
            kind: "http".into(),
            status: StepStatus::Succeeded,
            input: Json::Null,
            output: serde_json::json!({ "status": 200 }),
            error: None,
            filtered: false,
            started_at: chrono::Utc::now(),
            duration_ms: 1.0,
            attempts: 1,
            earlier: Vec::new(),
        })
        .collect();
    let (outcome, took) =
        crate::support::execute_in_process(yaml, &event, &finished, &Discard).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert!(
        took < Duration::from_secs(8),
        "resuming {items} restored iterations took {took:?}"
    );
}
