//! Replaying a failed run after the workflow was fixed: `runs replay` repeats the run's own
//! definition, `runs replay --latest` (`latest=true`, the UI's checkbox) runs the workflow as the
//! server has it now and records the version change on the run. Against a real server that
//! reloads the edited file and a receiver that refuses a wrong body.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::{Receiver, TestServer};

/// The orders workflow: `announce`, then `notify`, which sends the total under `field`.
fn orders(receiver: &Receiver, field: &str) -> String {
    format!(
        r#"
on: {{ webhook: {{ path: /hooks/orders }} }}
steps:
  - name: announce
    http: {{ method: POST, url: "{url}/announce", json: {{ id: "{{{{ event.body.id }}}}" }} }}
  - name: notify
    http: {{ method: POST, url: "{url}/orders", json: {{ {field}: "{{{{ event.body.total }}}}" }} }}
"#,
        url = receiver.url("")
    )
}

/// Replace a workflow file as editors do (a new file renamed into place), so a reload never
/// reads half of it.
fn save(dir: &Path, name: &str, text: &str) {
    let folder = dir.join("workflows");
    let draft = folder.join(format!(".{name}.draft"));
    std::fs::write(&draft, text).expect("write draft");
    std::fs::rename(&draft, folder.join(name)).expect("rename into place");
}

/// The loaded version of `workflow`, or none when it is not loaded.
async fn loaded_version(server: &TestServer, workflow: &str) -> Option<String> {
    let answer = server.admin_json("/api/workflows").await;
    answer["workflows"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == workflow)
        .and_then(|w| w["version"].as_str())
        .map(str::to_owned)
}

/// Wait until the server reloaded `workflow` to another version than `before` (or unloaded
/// it, for `None`); the version now loaded.
async fn reloaded(server: &TestServer, workflow: &str, before: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = loaded_version(server, workflow).await;
        if now.as_deref() != Some(before) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "workflow {workflow} was never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The run once its attempt `attempt` finished.
async fn finished_attempt(server: &TestServer, run_id: &str, attempt: u64) -> Json {
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

/// `hookflow ARGS` against the test server; its stdout, after checking it succeeded.
async fn hookflow(args: Vec<String>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(&args)
            .output()
            .expect("run hookflow")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn replay_args(server: &TestServer, run_id: &str, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["runs", "replay", run_id, "--admin", server.admin.as_str()]
        .map(str::to_owned)
        .to_vec();
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// The bodies the receiver got under `path`, in order.
fn bodies(receiver: &Receiver, path: &str) -> Vec<Json> {
    receiver
        .received()
        .iter()
        .filter(|r| r.uri == path)
        .map(|r| r.json())
        .collect()
}

#[tokio::test]
async fn a_replay_with_latest_runs_the_fixed_workflow_and_the_run_shows_the_new_version() {
    let receiver = Receiver::start().await;
    receiver.require_field("/orders", "total");
    let server = TestServer::start(&[("orders.yaml", &orders(&receiver, "totl"))]).await;
    let v1 = loaded_version(&server, "orders").await.expect("loaded");
    let run_id = server
        .accepted(
            "/hooks/orders",
            "application/json",
            br#"{"id": 7, "total": 42}"#.to_vec(),
        )
        .await
        .remove(0);
    let run = server.finished_run(&run_id).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(run["run"]["version"], v1.as_str());
    assert_eq!(run["run"]["replayed_from_version"], Json::Null);

    // The fix: the field the receiver wants.
    save(
        server.dir.path(),
        "orders.yaml",
        &orders(&receiver, "total"),
    );
    let v2 = reloaded(&server, "orders", &v1)
        .await
        .expect("still loaded");

    // A plain replay is an exact repeat: the run's own definition, the same failure.
    let out = hookflow(replay_args(&server, &run_id, &[])).await;
    assert!(
        out.contains(&format!("(attempt 2) on version {v1}")),
        "{out}"
    );
    let run = finished_attempt(&server, &run_id, 2).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(run["run"]["version"], v1.as_str());

    // With --latest: the fixed definition, from the failed step.
    let out = hookflow(replay_args(&server, &run_id, &["--latest"])).await;
    assert!(
        out.contains(&format!("(attempt 3) on version {v2} (was {v1})")),
        "{out}"
    );
    let run = finished_attempt(&server, &run_id, 3).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(run["run"]["version"], v2.as_str());
    assert_eq!(run["run"]["replayed_from_version"], v1.as_str());
    assert_eq!(
        bodies(&receiver, "/orders"),
        [
            json!({"totl": 42}),
            json!({"totl": 42}),
            json!({"total": 42})
        ],
        "the fixed body reached the receiver only on the replay with --latest"
    );
    assert_eq!(
        bodies(&receiver, "/announce"),
        [json!({"id": 7})],
        "the step before the failed one kept its record and was not sent again"
    );

    // `runs show`, the UI's run page and the listing say which version ran, and which before.
    let store = server.store_path().display().to_string();
    let show = hookflow(
        ["runs", "show", run_id.as_str(), "--store", store.as_str()]
            .map(str::to_owned)
            .to_vec(),
    )
    .await;
    assert!(
        show.contains(&format!(
            "workflow  orders (version {v2}, replayed from version {v1})"
        )),
        "{show}"
    );
    let page = server
        .client
        .get(format!("{}/ui/runs/{run_id}", server.admin))
        .send()
        .await
        .expect("run page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains(&format!("id=\"run-version\">{v2}<")),
        "{page}"
    );
    assert!(page.contains("replayed from"), "{page}");
    let listed = server.admin_json("/api/runs?workflow=orders").await;
    assert_eq!(listed["runs"][0]["replayed_from_version"], v1.as_str());
    server.stop().await;
}

/// The run page's CSRF cookie and form token, for posting its replay form.
async fn replay_form(server: &TestServer, run_id: &str) -> (String, String) {
    let page = server
        .client
        .get(format!("{}/ui/runs/{run_id}", server.admin))
        .send()
        .await
        .expect("run page");
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("hookflow_csrf="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .expect("csrf cookie");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("name=\"latest\""),
        "the form has the checkbox"
    );
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    (cookie, token)
}

/// Post the run page's replay form with `fields` ticked; the status and the redirect or page.
async fn post_replay_form(server: &TestServer, run_id: &str, fields: &[&str]) -> (u16, String) {
    let (cookie, token) = replay_form(server, run_id).await;
    let mut form = vec![("csrf", token)];
    form.extend(fields.iter().map(|f| (*f, "true".to_owned())));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let answer = client
        .post(format!("{}/ui/runs/{run_id}/replay", server.admin))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .expect("post the form");
    let status = answer.status().as_u16();
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = answer.text().await.expect("body");
    (status, location.unwrap_or(text))
}

async fn replay_api(server: &TestServer, run_id: &str, query: &str) -> (u16, Json) {
    let answer = server
        .client
        .post(format!("{}/api/runs/{run_id}/replay?{query}", server.admin))
        .send()
        .await
        .expect("replay");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("json answer"))
}

#[tokio::test]
async fn a_replay_with_latest_resumes_only_where_the_finished_steps_kept_their_place() {
    let receiver = Receiver::start().await;
    receiver.require_field("/orders", "total");
    let server = TestServer::start(&[
        ("orders.yaml", &orders(&receiver, "totl")),
        (
            "other.yaml",
            "on: { webhook: { path: /hooks/other } }\nsteps:\n  - log: hi\n",
        ),
    ])
    .await;
    let v1 = loaded_version(&server, "orders").await.expect("loaded");
    let run_id = server
        .accepted(
            "/hooks/orders",
            "application/json",
            br#"{"id": 8, "total": 5}"#.to_vec(),
        )
        .await
        .remove(0);
    assert_eq!(
        server.finished_run(&run_id).await["run"]["status"],
        "failed"
    );

    // The failed step fixed and renamed: the finished one keeps its place, so the replay
    // resumes there, with the renamed step. Through the UI's form this time.
    let fixed = orders(&receiver, "total").replace("name: notify", "name: notify-total");
    save(server.dir.path(), "orders.yaml", &fixed);
    let v2 = reloaded(&server, "orders", &v1).await.expect("loaded");
    let (status, location) = post_replay_form(&server, &run_id, &["latest"]).await;
    assert_eq!(status, 303, "{location}");
    assert_eq!(location, format!("/ui/runs/{run_id}?replayed=2"));
    let run = finished_attempt(&server, &run_id, 2).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(run["run"]["version"], v2.as_str());
    let names: Vec<&str> = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["announce", "notify-total"]);
    assert_eq!(bodies(&receiver, "/announce").len(), 1);

    // A step inserted before the finished ones moves them: resumed there, `announce` would be
    // sent again, so the replay is refused, and `from_start` is the way.
    let moved = fixed.replace(
        "steps:\n",
        &format!(
            "steps:\n  - name: prepare\n    http: {{ url: \"{}\" }}\n",
            receiver.url("/prepare")
        ),
    );
    save(server.dir.path(), "orders.yaml", &moved);
    let v3 = reloaded(&server, "orders", &v2).await.expect("loaded");
    let (status, answer) = replay_api(&server, &run_id, "latest=true").await;
    assert_eq!(status, 409, "{answer}");
    let error = answer["error"].as_str().expect("error");
    assert!(
        error.contains("step 'announce'") && error.contains("from the start"),
        "{error}"
    );
    let (status, page) = post_replay_form(&server, &run_id, &["latest"]).await;
    assert_eq!(status, 409);
    assert!(page.contains("replay from the start instead"), "{page}");
    let (status, answer) = replay_api(&server, &run_id, "latest=true&from_start=true").await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["attempt"], 3);
    assert_eq!(answer["version"], v3.as_str());
    assert_eq!(answer["replayed_from_version"], v2.as_str());
    let run = finished_attempt(&server, &run_id, 3).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(bodies(&receiver, "/announce").len(), 2, "from the start");

    // The latest definition equal to the run's: simply a replay.
    let (status, answer) = replay_api(&server, &run_id, "latest=true").await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["version"], v3.as_str());
    assert_eq!(answer["replayed_from_version"], Json::Null);
    let run = finished_attempt(&server, &run_id, 4).await;
    assert_eq!(run["run"]["replayed_from_version"], v2.as_str());

    // Renamed away (a workflow is named after its file): no latest definition to run.
    std::fs::rename(
        server.dir.path().join("workflows/orders.yaml"),
        server.dir.path().join("workflows/invoices.yaml"),
    )
    .expect("rename");
    assert_eq!(reloaded(&server, "orders", &v3).await, None);
    let (status, answer) = replay_api(&server, &run_id, "latest=true").await;
    assert_eq!(status, 409, "{answer}");
    let error = answer["error"].as_str().expect("error");
    assert!(
        error.contains("workflow 'orders'") && error.contains("not loaded any more"),
        "{error}"
    );
    // Without `latest` the run's own, stored definition still runs.
    let (status, answer) = replay_api(&server, &run_id, "").await;
    assert_eq!(status, 202, "{answer}");
    let run = finished_attempt(&server, &run_id, 5).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(run["run"]["version"], v3.as_str());
    let (status, answer) = replay_api(&server, &run_id, "latest=maybe").await;
    assert_eq!(status, 400, "{answer}");
    server.stop().await;
}

/// Bulk replay: a workflow's failed runs that match, counted by a preview, then replayed one
/// after another at the rate asked (through the CLI), so the recovered receiver is not flooded;
/// the UI's form previews the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replay_previews_then_replays_the_matching_runs_at_a_rate() {
    let receiver = crate::support::Receiver::start().await;
    receiver.reply_times("/crm", 4, 503, &[], "down for maintenance");
    receiver.reply("/crm", 200, "application/json", "{}");
    let workflow = format!(
        "name: crm\non: {{ webhook: {{ path: /hooks/crm }} }}\nsteps:\n  - name: update\n    http: {{ method: POST, url: \"{}\", json: {{ n: \"{{{{ event.body.n }}}}\" }} }}\n",
        receiver.url("/crm")
    );
    let server = crate::support::TestServer::start(&[("crm.yaml", &workflow)]).await;
    let mut failed = Vec::new();
    for n in 0..4 {
        let ids = server
            .accepted(
                "/hooks/crm",
                "application/json",
                format!("{{\"n\": {n}}}").into_bytes(),
            )
            .await;
        assert_eq!(
            server.finished_run(&ids[0]).await["run"]["status"],
            "failed"
        );
        failed.push(ids[0].clone());
    }
    let client = crate::support::client();
    let bulk = |body: serde_json::Value| {
        client
            .post(format!("{}/api/workflows/crm/replay", server.admin))
            .json(&body)
            .send()
    };
    let preview = bulk(serde_json::json!({"preview": true, "error": "503"}))
        .await
        .expect("post");
    assert_eq!(preview.status(), 200);
    let preview: serde_json::Value = preview.json().await.expect("json");
    assert_eq!(preview["matched"], 4, "{preview}");
    assert_eq!(
        preview["run_ids"],
        serde_json::json!(failed),
        "oldest first: {preview}"
    );
    let none = bulk(serde_json::json!({"preview": true, "error": "no such error"}))
        .await
        .expect("post");
    assert_eq!(
        none.json::<serde_json::Value>().await.expect("json")["matched"],
        0
    );
    let bad = bulk(serde_json::json!({"status": "queued"}))
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
    let bad_rate = bulk(serde_json::json!({"rate": 0})).await.expect("post");
    assert_eq!(bad_rate.status(), 400);
    assert_eq!(receiver.received().len(), 4, "a preview replays nothing");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "runs",
            "replay-all",
            "--workflow",
            "crm",
            "--rate",
            "5",
            "--admin",
            &server.admin,
        ])
        .output()
        .expect("replay-all");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("replaying 4 run(s) of crm, 5 a second"),
        "{said}"
    );
    let got = receiver.wait_for(8).await;
    for id in &failed {
        assert_eq!(server.finished_run(id).await["run"]["status"], "succeeded");
    }
    // Five a second: the replayed requests come at least ~200 ms apart.
    for pair in got[4..].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= std::time::Duration::from_millis(150),
            "replays came {gap:?} apart"
        );
    }
    let bodies: Vec<serde_json::Value> = got[4..].iter().map(|r| r.json()["n"].clone()).collect();
    assert_eq!(
        bodies,
        [0, 1, 2, 3].map(serde_json::Value::from),
        "in the order they first ran"
    );

    // The UI's form previews with the same rules: nothing failed is left.
    let page = client
        .get(format!("{}/ui/workflows", server.admin))
        .send()
        .await
        .expect("page");
    let csrf_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("hookflow_csrf="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .expect("csrf cookie");
    let html = page.text().await.expect("html");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    let form = client
        .post(format!("{}/ui/workflows/crm/replay", server.admin))
        .header("cookie", csrf_cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("status", "succeeded"),
            ("action", "preview"),
        ])
        .send()
        .await
        .expect("form");
    assert_eq!(form.status(), 200);
    let html = form.text().await.expect("html");
    assert!(
        html.contains("<strong>4</strong> succeeded run(s) match; nothing was replayed"),
        "{html}"
    );
    server.stop().await;
}
