//! Manual starts: `hookflow start` and `POST /api/workflows/{name}/start` against a real server.

use serde_json::{Value as Json, json};

use crate::support::{TestServer, step};

const NIGHTLY: &str = r#"
name: nightly
on:
  schedule:
    cron: "0 3 * * *"
steps:
  - name: hello
    set:
      greeting: "hello {{ event.body.name }}"
      trigger: "{{ event.trigger }}"
      started_by: "{{ event.started_by }}"
"#;

/// Run the real binary with `args` (off the runtime: the server runs on it).
async fn hookflow(args: Vec<String>, stdin: Option<Vec<u8>>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(&args)
            .env("USER", "ada")
            .env_remove("HOOKFLOW_ADMIN_TOKEN")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn hookflow");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(&bytes).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("hookflow output")
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn hookflow_start_runs_a_workflow_without_a_webhook_and_records_who_started_it() {
    let server = TestServer::start(&[("nightly.yaml", NIGHTLY)]).await;
    let payload = server.dir.path().join("payload.json");
    std::fs::write(&payload, br#"{"name": "Ada"}"#).expect("payload");
    let output = hookflow(
        vec![
            "start".into(),
            "nightly".into(),
            "--payload".into(),
            payload.display().to_string(),
            "--admin".into(),
            server.admin.clone(),
        ],
        None,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let run_id = String::from_utf8(output.stdout).expect("utf-8");
    let run_id = run_id.trim();
    assert!(!run_id.is_empty() && !run_id.contains(' '), "{run_id:?}");
    let run = server.finished_run(run_id).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(run["run"]["workflow"], "nightly");
    assert_eq!(
        run["event"]["trigger"],
        json!({"kind": "manual", "started_by": "cli:ada"})
    );
    assert_eq!(
        step(&run, "hello")["output"],
        json!({"greeting": "hello Ada", "trigger": "manual", "started_by": "cli:ada"}),
        "{run}"
    );
    let shown = hookflow(
        vec![
            "runs".into(),
            "show".into(),
            run_id.to_owned(),
            "--store".into(),
            server.store_path().display().to_string(),
        ],
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("trigger   manual, started by cli:ada"),
        "{text}"
    );

    // The payload can come on standard input.
    let output = hookflow(
        vec![
            "start".into(),
            "nightly".into(),
            "--payload".into(),
            "-".into(),
            "--admin".into(),
            server.admin.clone(),
        ],
        Some(br#"{"name": "Grace"}"#.to_vec()),
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run_id = String::from_utf8(output.stdout).expect("utf-8");
    let run = server.finished_run(run_id.trim()).await;
    assert_eq!(
        step(&run, "hello")["output"]["greeting"],
        "hello Grace",
        "{run}"
    );
    server.stop().await;
}

#[tokio::test]
async fn hookflow_start_of_an_unknown_workflow_fails_clearly() {
    let server = TestServer::start(&[("nightly.yaml", NIGHTLY)]).await;
    let output = hookflow(
        vec![
            "start".into(),
            "nigthly".into(),
            "--admin".into(),
            server.admin.clone(),
        ],
        None,
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot start nigthly: no workflow nigthly"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_admin_api_starts_a_run_by_hand() {
    let server = TestServer::start(&[("nightly.yaml", NIGHTLY)]).await;
    let url = format!("{}/api/workflows/nightly/start", server.admin);
    // No body: the payload is an empty object; without a header the starter is `api`.
    let response = server.client.post(&url).send().await.expect("start");
    assert_eq!(response.status(), 202);
    let answer: Json = response.json().await.expect("json");
    let run_id = answer["run_id"].as_str().expect("run_id");
    assert!(answer["event_id"].is_string(), "{answer}");
    let run = server.finished_run(run_id).await;
    assert_eq!(run["event"]["id"], answer["event_id"]);
    assert_eq!(
        run["event"]["trigger"],
        json!({"kind": "manual", "started_by": "api"})
    );
    assert_eq!(run["event"]["body"], json!({}));
    // `event.body.name` is undefined on an empty payload: the step fails, visibly.
    assert_eq!(run["run"]["status"], "failed", "{run}");

    let response = server
        .client
        .post(&url)
        .header("x-hookflow-started-by", "ui")
        .header("content-type", "application/json")
        .body(r#"{"name": "Linus"}"#)
        .send()
        .await
        .expect("start");
    assert_eq!(response.status(), 202);
    let answer: Json = response.json().await.expect("json");
    let run = server
        .finished_run(answer["run_id"].as_str().expect("run_id"))
        .await;
    assert_eq!(run["event"]["trigger"]["started_by"], "ui");
    assert_eq!(run["run"]["status"], "succeeded", "{run}");

    let bad = server
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("start");
    assert_eq!(bad.status(), 400);
    let unknown = server
        .client
        .post(format!("{}/api/workflows/nope/start", server.admin))
        .send()
        .await
        .expect("start");
    assert_eq!(unknown.status(), 404);
    let answer: Json = unknown.json().await.expect("json");
    assert_eq!(answer["error"], "no workflow nope");
    server.stop().await;
}

#[tokio::test]
async fn hookflow_start_sends_the_admin_token() {
    let server = TestServer::start_with(&[("nightly.yaml", NIGHTLY)], |s| {
        s.admin_token = Some("start-token-1".into());
    })
    .await;
    let start = |token: Option<&str>| {
        let mut args = vec![
            "start".to_owned(),
            "nightly".to_owned(),
            "--admin".to_owned(),
            server.admin.clone(),
        ];
        if let Some(token) = token {
            args.extend(["--token".to_owned(), token.to_owned()]);
        }
        hookflow(args, None)
    };
    let refused = start(None).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("unauthorized"), "{stderr}");
    let started = start(Some("start-token-1")).await;
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let run_id = String::from_utf8(started.stdout).expect("utf-8");
    // The admin API wants the token: read the run from the store instead.
    let store = hookflow::store::Store::open(
        &server.store_path().display().to_string(),
        hookflow::store::OpenMode::Read,
    )
    .await
    .expect("store");
    let detail = store
        .run(run_id.trim())
        .await
        .expect("read")
        .expect("the started run is stored");
    assert_eq!(detail.event.trigger.kind(), "manual");
    server.stop().await;
}

/// Manual starts are held to the workflow's `concurrency` like webhooks: with `skip`, a start
/// while the key's run is under way is recorded `cancelled`.
#[tokio::test]
async fn manual_starts_obey_the_workflows_concurrency() {
    let workflow = r#"
name: one-at-a-time
concurrency:
  key: "{{ event.trigger }}"
  limit: 1
  mode: skip
steps:
  - name: wait
    delay: 30s
"#;
    let server = TestServer::start(&[("one.yaml", workflow)]).await;
    let url = format!("{}/api/workflows/one-at-a-time/start", server.admin);
    let start = || async {
        let answer: Json = server
            .client
            .post(&url)
            .send()
            .await
            .expect("start")
            .json()
            .await
            .expect("json");
        answer["run_id"].as_str().expect("run_id").to_owned()
    };
    let first = start().await;
    let second = start().await;
    let run = server.finished_run(&second).await;
    assert_eq!(run["run"]["status"], "cancelled", "{run}");
    assert!(
        run["run"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("skipped")),
        "{run}"
    );
    let run: Json = server
        .client
        .get(format!("{}/api/runs/{first}", server.admin))
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    assert_ne!(run["run"]["status"], "cancelled", "{run}");
    server.stop().await;
}
