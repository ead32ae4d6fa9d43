//! Cancelling runs and pausing workflows on a real server: a queued, retrying, delayed or
//! running run cancelled through the API, `hookflow runs cancel` and the UI (a running `exec`
//! command killed), with who and why on record; a paused workflow storing its webhooks, keeping
//! its runs queued across a restart and skipping its schedule's ticks; and two processes on one
//! PostgreSQL store sharing the pause and the cancel.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::postgres::TestSchema;
use crate::support::{Receiver, ServeProcess, TestServer, client};

const BIN: &str = env!("CARGO_BIN_EXE_hookflow");

/// POST `body` (JSON) to the admin API at `admin` + `path`: the status and the JSON answer.
async fn admin_post(admin: &str, path: &str, body: Option<Json>) -> (u16, Json) {
    let mut request = client().post(format!("{admin}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Json::Null))
}

async fn admin_get(admin: &str, path: &str) -> Json {
    client()
        .get(format!("{admin}{path}"))
        .send()
        .await
        .expect("admin request")
        .json()
        .await
        .expect("admin json")
}

/// The run as the admin API shows it, once it is in `status`.
async fn wait_for_status(admin: &str, run_id: &str, status: &str) -> Json {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let detail = admin_get(admin, &format!("/api/runs/{run_id}")).await;
        if detail["run"]["status"] == status {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never became {status}: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The pid a command wrote to `file`, once it did.
async fn pid_in(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether process `pid` is gone (or a zombie nobody waits for).
async fn process_ends(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// A workflow whose first step runs `sleep 30` after writing its pid to `pid_file`.
fn sleeper(path: &str, pid_file: &Path) -> String {
    format!(
        r#"
on: {{ webhook: {{ path: {path} }} }}
steps:
  - name: slow
    exec:
      command: [/bin/sh, -c, "echo $$ > {pid}; exec sleep 30"]
  - name: after
    log: "not reached"
"#,
        pid = pid_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_stopped_by_runs_cancel_and_its_exec_child_is_killed() {
    let pids = tempfile::tempdir().expect("tempdir");
    let pid_file = pids.path().join("slow.pid");
    let workflow = sleeper("/hooks/slow", &pid_file);
    let server =
        TestServer::start_with(&[("slow.yaml", &workflow)], |s| s.exec_enabled = true).await;
    let ids = server
        .accepted("/hooks/slow", "application/json", b"{}".to_vec())
        .await;
    let pid = pid_in(&pid_file).await;
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["runs", "cancel", &ids[0], "--reason", "stuck deploy"])
        .args(["--admin", &server.admin])
        .env("USER", "ops")
        .output()
        .expect("runs cancel");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&ids[0]), "{said}");
    let detail = wait_for_status(&server.admin, &ids[0], "cancelled").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run waited for its command"
    );
    assert!(
        process_ends(pid).await,
        "the exec child {pid} is still alive"
    );
    let run = &detail["run"];
    assert_eq!(run["error"], "cancelled by cli:ops: stuck deploy");
    assert_eq!(run["cancelled_by"], "cli:ops");
    let steps = detail["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "no step after the boundary: {steps:?}");
    assert_eq!(steps[0]["status"], "failed");
    // `runs show` reads the store: who and why.
    let show = Command::new(BIN)
        .args(["runs", "show", &ids[0], "--store"])
        .arg(server.store_path())
        .output()
        .expect("runs show");
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("status    cancelled"), "{text}");
    assert!(
        text.contains("error     cancelled by cli:ops: stuck deploy"),
        "{text}"
    );
    assert!(text.contains("cancelled by cli:ops"), "{text}");
    // A finished run is not cancelled again; an unknown one is not found.
    let (status, again) =
        admin_post(&server.admin, &format!("/api/runs/{}/cancel", ids[0]), None).await;
    assert_eq!(status, 409, "{again}");
    let (status, _) = admin_post(&server.admin, "/api/runs/no-such-run/cancel", None).await;
    assert_eq!(status, 404);
    let metrics = client()
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("hookflow_runs_cancelled_total{via=\"cli\"}"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn queued_retrying_and_delayed_runs_end_cancelled_at_once() {
    let receiver = Receiver::start().await;
    receiver.reply("/down", 503, "text/plain", "down");
    let workflows = [
        (
            "held.yaml",
            "on: { webhook: { path: /hooks/held } }\nsteps:\n  - name: note\n    log: ran\n"
                .to_owned(),
        ),
        (
            "flaky.yaml",
            format!(
                "on: {{ webhook: {{ path: /hooks/flaky }} }}\nsteps:\n  - name: call\n    retry: {{ attempts: 5, initial: 1h, max: 1h }}\n    http: {{ url: \"{}\" }}\n",
                receiver.url("/down")
            ),
        ),
        (
            "later.yaml",
            "on: { webhook: { path: /hooks/later } }\nsteps:\n  - name: wait\n    delay: 1h\n  - name: note\n    log: ran\n"
                .to_owned(),
        ),
    ];
    let files: Vec<(&str, &str)> = workflows.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let server = TestServer::start(&files).await;
    let admin = server.admin.clone();
    // Queued: its workflow is paused, so it waits.
    let (status, paused) = admin_post(&admin, "/api/workflows/held/pause", None).await;
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    let held = server
        .accepted("/hooks/held", "application/json", b"{}".to_vec())
        .await;
    let flaky = server
        .accepted("/hooks/flaky", "application/json", b"{}".to_vec())
        .await;
    let later = server
        .accepted("/hooks/later", "application/json", b"{}".to_vec())
        .await;
    wait_for_status(&admin, &flaky[0], "retrying").await;
    wait_for_status(&admin, &later[0], "retrying").await;
    assert_eq!(
        admin_get(&admin, &format!("/api/runs/{}", held[0])).await["run"]["status"],
        "queued"
    );
    for (id, reason) in [
        (&held[0], "queued"),
        (&flaky[0], "retrying"),
        (&later[0], "delayed"),
    ] {
        let (status, run) = admin_post(
            &admin,
            &format!("/api/runs/{id}/cancel"),
            Some(json!({ "reason": reason })),
        )
        .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["status"], "cancelled", "{run}");
        assert_eq!(run["error"], format!("cancelled by api: {reason}"));
        assert_eq!(run["cancelled_by"], "api");
        let (status, _) = admin_post(&admin, &format!("/api/runs/{id}/cancel"), None).await;
        assert_eq!(status, 409);
    }
    // Resumed, the cancelled run stays cancelled.
    let (status, _) = admin_post(&admin, "/api/workflows/held/resume", None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run = admin_get(&admin, &format!("/api/runs/{}", held[0])).await;
    assert_eq!(run["run"]["status"], "cancelled");
    assert!(run["steps"].as_array().expect("steps").is_empty());
    assert_eq!(receiver.received().len(), 1, "the retry never happened");
    server.stop().await;
}

#[tokio::test]
async fn a_paused_workflow_keeps_its_runs_queued_across_a_restart_until_resumed() {
    let workflow =
        "on: { webhook: { path: /hooks/p } }\nsteps:\n  - name: note\n    set: { ok: true }\n";
    let server = TestServer::start(&[("p.yaml", workflow)]).await;
    let (status, paused) = admin_post(
        &server.admin,
        "/api/workflows/p/pause",
        Some(json!({ "reason": "receiver migration" })),
    )
    .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["changed"], true);
    let (status, _) = admin_post(&server.admin, "/api/workflows/nope/pause", None).await;
    assert_eq!(status, 404);
    let ids = server
        .accepted("/hooks/p", "application/json", b"{}".to_vec())
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let shown = server.admin_json(&format!("/api/runs/{}", ids[0])).await;
    assert_eq!(shown["run"]["status"], "queued", "{shown}");
    let dir = server.stop().await;

    let server = TestServer::start_in(dir).await;
    let listed = server.admin_json("/api/workflows").await;
    let entry = &listed["workflows"][0];
    assert_eq!(entry["paused"], true, "{listed}");
    assert_eq!(entry["paused_by"], "api");
    assert_eq!(entry["paused_reason"], "receiver migration");
    assert!(entry["paused_since"].is_string());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let shown = server.admin_json(&format!("/api/runs/{}", ids[0])).await;
    assert_eq!(
        shown["run"]["status"], "queued",
        "paused across the restart"
    );
    let metrics = client()
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("hookflow_paused_workflows "), "{metrics}");
    let (status, resumed) = admin_post(&server.admin, "/api/workflows/p/resume", None).await;
    assert_eq!(
        (status, &resumed["changed"]),
        (200, &json!(true)),
        "{resumed}"
    );
    let done = server.finished_run(&ids[0]).await;
    assert_eq!(done["run"]["status"], "succeeded", "{done}");
    assert_eq!(
        server.admin_json("/api/workflows").await["workflows"][0]["paused"],
        false
    );
    let metrics = client()
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "hookflow_workflow_pauses_total{action=\"pause\",via=\"api\"}",
        "hookflow_workflow_pauses_total{action=\"resume\",via=\"api\"}",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_paused_schedule_skips_its_ticks_and_fires_again_once_resumed() {
    let workflow = "name: tick\non:\n  schedule:\n    cron: \"*/1 * * * * *\"\nsteps:\n  - name: note\n    set: { ok: true }\n";
    let server = TestServer::start(&[("tick.yaml", workflow)]).await;
    let (status, _) = admin_post(&server.admin, "/api/workflows/tick/pause", None).await;
    assert_eq!(status, 200);
    // Ticks fired before the pause landed may have run; none after it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = crate::support::list_runs(&server).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = crate::support::list_runs(&server).await.len();
    assert_eq!(before, during, "a paused schedule fired");
    let (status, _) = admin_post(&server.admin, "/api/workflows/tick/resume", None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = crate::support::list_runs(&server).await.len();
    assert!(
        (after - during) <= 4 && after > during,
        "resumed: fires again, without catching up the skipped ticks ({during} -> {after})"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_run_page_cancels_with_its_csrf_token_and_the_workflows_page_pauses() {
    let workflow =
        "on: { webhook: { path: /hooks/u } }\nsteps:\n  - name: note\n    set: { ok: true }\n";
    let server = TestServer::start(&[("u.yaml", workflow)]).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = |path: String| browser.get(format!("{}{path}", server.admin)).send();
    // The workflows page: a Pause form, CSRF-protected.
    let workflows = page("/ui/workflows".into()).await.expect("page");
    let cookie = set_cookie(&workflows).expect("csrf cookie");
    let html = workflows.text().await.expect("html");
    assert!(html.contains("action=\"/ui/workflows/u/pause\""), "{html}");
    let csrf = csrf_field(&html);
    let forged = browser
        .post(format!("{}/ui/workflows/u/pause", server.admin))
        .header("cookie", &cookie)
        .form(&[("csrf", "0".repeat(64).as_str()), ("reason", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 403);
    let paused = browser
        .post(format!("{}/ui/workflows/u/pause", server.admin))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("reason", "maintenance")])
        .send()
        .await
        .expect("post");
    assert_eq!(paused.status(), 303);
    let html = page("/ui/workflows".into())
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("action=\"/ui/workflows/u/resume\""), "{html}");
    assert!(html.contains("maintenance"), "{html}");

    // A queued run's page: a Cancel form.
    let ids = server
        .accepted("/hooks/u", "application/json", b"{}".to_vec())
        .await;
    let run_page = page(format!("/ui/runs/{}", ids[0])).await.expect("page");
    let cookie = set_cookie(&run_page).unwrap_or(cookie);
    let html = run_page.text().await.expect("html");
    assert!(html.contains("id=\"cancel-form\""), "{html}");
    let csrf = csrf_field(&html);
    let cancelled = browser
        .post(format!("{}/ui/runs/{}/cancel", server.admin, ids[0]))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("reason", "duplicate")])
        .send()
        .await
        .expect("post");
    assert_eq!(cancelled.status(), 303);
    let html = page(format!("/ui/runs/{}", ids[0]))
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("cancelled by ui: duplicate"), "{html}");
    assert!(
        !html.contains("id=\"cancel-form\""),
        "a finished run has no Cancel"
    );
    let run = server.admin_json(&format!("/api/runs/{}", ids[0])).await;
    assert_eq!(run["run"]["cancelled_by"], "ui");
    server.stop().await;
}

fn set_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("hookflow_csrf="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

fn csrf_field(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_postgres_share_the_pause_and_the_cancel() {
    let Some(schema) =
        TestSchema::create("two_processes_on_postgres_share_the_pause_and_the_cancel").await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    let pid_file = dir.path().join("slow.pid");
    std::fs::write(
        workflows.join("slow.yaml"),
        sleeper("/hooks/slow", &pid_file),
    )
    .expect("write");
    std::fs::write(
        workflows.join("quick.yaml"),
        "on: { webhook: { path: /hooks/quick } }\nsteps:\n  - name: note\n    set: { ok: true }\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("hookflow.yaml"),
        "exec: { enabled: true }\n",
    )
    .expect("config");
    let start = || {
        ServeProcess::start_with_env(
            dir.path(),
            &["--store", &schema.url, "--workers", "4"],
            &[("HOOKFLOW_LEASE", "5s")],
        )
    };
    let (a, b) = (start(), start());
    // Paused through A: B stores the webhook, and no process runs it.
    let (status, _) = admin_post(&a.admin, "/api/workflows/quick/pause", None).await;
    assert_eq!(status, 200);
    let accepted: Json = client()
        .post(format!("{}/hooks/quick", b.webhook))
        .json(&json!({}))
        .send()
        .await
        .expect("webhook")
        .json()
        .await
        .expect("json");
    let quick = accepted["run_ids"][0].as_str().expect("run id").to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        admin_get(&a.admin, &format!("/api/runs/{quick}")).await["run"]["status"],
        "queued"
    );
    assert_eq!(
        admin_get(&b.admin, "/api/workflows").await["workflows"]
            .as_array()
            .expect("workflows")
            .iter()
            .find(|w| w["name"] == "quick")
            .expect("quick")["paused"],
        true,
        "B shows A's pause"
    );
    let (status, _) = admin_post(&a.admin, "/api/workflows/quick/resume", None).await;
    assert_eq!(status, 200);
    wait_for_status(&b.admin, &quick, "succeeded").await;

    // A run executing on B, cancelled through A: B stops it and kills its command.
    let accepted: Json = client()
        .post(format!("{}/hooks/slow", b.webhook))
        .json(&json!({}))
        .send()
        .await
        .expect("webhook")
        .json()
        .await
        .expect("json");
    let slow = accepted["run_ids"][0].as_str().expect("run id").to_owned();
    let pid = pid_in(&pid_file).await;
    let (status, run) = admin_post(
        &a.admin,
        &format!("/api/runs/{slow}/cancel"),
        Some(json!({ "reason": "wrong target" })),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["cancel_requested"], true, "{run}");
    let asked = Instant::now();
    let detail = wait_for_status(&a.admin, &slow, "cancelled").await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "B took too long to notice"
    );
    assert_eq!(detail["run"]["error"], "cancelled by api: wrong target");
    assert!(
        process_ends(pid).await,
        "the exec child {pid} is still alive"
    );
    for node in [a, b] {
        let (status, _) = node.terminate();
        assert!(status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_its_process_is_dead_is_not_run_again_by_the_one_taking_it_over() {
    let Some(schema) = TestSchema::create("a_run_cancelled_while_its_process_is_dead").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    let pid_file = dir.path().join("slow.pid");
    std::fs::write(
        workflows.join("slow.yaml"),
        sleeper("/hooks/slow", &pid_file),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("hookflow.yaml"),
        "exec: { enabled: true }\n",
    )
    .expect("config");
    let start = || {
        ServeProcess::start_with_env(
            dir.path(),
            &["--store", &schema.url, "--workers", "4"],
            &[("HOOKFLOW_LEASE", "3s")],
        )
    };
    let (survivor, doomed) = (start(), start());
    let accepted: Json = client()
        .post(format!("{}/hooks/slow", doomed.webhook))
        .json(&json!({}))
        .send()
        .await
        .expect("webhook")
        .json()
        .await
        .expect("json");
    let slow = accepted["run_ids"][0].as_str().expect("run id").to_owned();
    let pid = pid_in(&pid_file).await;
    std::fs::remove_file(&pid_file).expect("remove the pid file");
    doomed.kill_hard();
    // Its lease is still live: the cancel waits for whoever takes the run over.
    let (status, run) = admin_post(
        &survivor.admin,
        &format!("/api/runs/{slow}/cancel"),
        Some(json!({ "reason": "host lost" })),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let detail = wait_for_status(&survivor.admin, &slow, "cancelled").await;
    assert_eq!(detail["run"]["error"], "cancelled by api: host lost");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pid_file.exists(), "the command ran again after the cancel");
    // The orphaned command itself belonged to the killed process's group: stop it here.
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    let (status, _) = survivor.terminate();
    assert!(status.success());
}
