//! Steps through a real server: filters, `if` and `continue_on_error`, `respond` answers for
//! synchronous webhooks, step timeouts, and secrets passed between steps.

use serde_json::{Value as Json, json};

use crate::support::{Receiver, TestServer, fixture, list_runs, set_env, step};

#[tokio::test]
async fn a_filter_that_fails_ends_the_run_as_filtered_and_sends_nothing() {
    let receiver = Receiver::start().await;
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/github }} }}
steps:
  - name: branches-only
    filter:
      all:
        - {{ jsonpath: "$.ref", matches: "^refs/heads/" }}
        - {{ jsonpath: "$.deleted", equals: false }}
  - http: {{ url: "{url}", json: {{ x: 1 }} }}
"#,
        url = receiver.url("/never")
    );
    let server = TestServer::start(&[("filter.yaml", &workflow)]).await;
    let runs = server
        .accepted(
            "/hooks/github",
            "application/json",
            fixture("github/push.tag-deleted.json"),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "filtered", "{run}");
    assert_eq!(step(&run, "branches-only")["output"]["passed"], false);
    assert_eq!(run["steps"].as_array().expect("steps").len(), 1);
    // A branch push passes the same rule tree.
    let runs = server
        .accepted(
            "/hooks/github",
            "application/json",
            fixture("github/push.json"),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "only the branch push calls out");
    server.stop().await;
}

#[tokio::test]
async fn if_skips_continue_on_error_goes_on_and_a_failure_fails_the_run() {
    let receiver = Receiver::start().await;
    receiver.reply(
        "/broken",
        503,
        "application/json",
        r#"{"message":"down for maintenance"}"#,
    );
    receiver.reply(
        "/rejects",
        422,
        "application/json",
        r#"{"message":"Validation Failed"}"#,
    );
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/flow }} }}
steps:
  - name: never
    if: event.body.flag == "never"
    log: "not logged"
  - name: flaky
    continue_on_error: true
    http: {{ method: POST, url: "{base}/broken", json: {{ n: 1 }} }}
  - name: report
    if: steps.flaky.failed and steps.never.skipped
    http:
      url: "{base}/report"
      json:
        status: "{{{{ steps.flaky.status }}}}"
        why: "{{{{ steps.flaky.body.message }}}}"
  - name: strict
    http: {{ url: "{base}/rejects", json: {{ n: 2 }} }}
  - name: after
    log: "never reached"
"#,
        base = receiver.url("")
    );
    let server = TestServer::start(&[("flow.yaml", &workflow)]).await;
    let runs = server
        .accepted(
            "/hooks/flow",
            "application/json",
            br#"{"flag": "x"}"#.to_vec(),
        )
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let error = run["run"]["error"].as_str().expect("error");
    assert!(error.starts_with("step 'strict' failed:"), "{error}");
    assert!(
        error.contains("422") && error.contains("Validation Failed"),
        "{error}"
    );
    assert_eq!(step(&run, "never")["status"], "skipped");
    assert_eq!(step(&run, "flaky")["status"], "failed");
    assert_eq!(step(&run, "report")["status"], "succeeded");
    assert_eq!(step(&run, "strict")["output"]["status"], 422);
    assert!(
        run["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["name"] != "after"),
        "nothing runs after a failure"
    );
    let got = receiver.wait_for(3).await;
    let report = got.iter().find(|r| r.uri == "/report").expect("report");
    assert_eq!(
        report.json(),
        json!({"status": 503, "why": "down for maintenance"})
    );
    server.stop().await;
}

#[tokio::test]
async fn sync_webhooks_answer_with_the_respond_step() {
    let workflow = r#"
on:
  webhook:
    path: /hooks/slack/{team}
    respond: sync
steps:
  - name: answer
    respond:
      status: 201
      headers: { X-Handled-By: hookflow }
      body:
        team: "{{ event.params.team }}"
        echo: "{{ event.body.text | upper }}"
        count: "{{ event.body.n + 1 }}"
"#;
    let text_workflow = r#"
on: { webhook: { path: /hooks/text, respond: sync } }
steps:
  - respond: { body: "plain {{ event.query.q }}" }
"#;
    let failing = r#"
on: { webhook: { path: /hooks/fails, respond: sync } }
steps:
  - template: "{{ event.body.missing.field }}"
"#;
    let server = TestServer::start(&[
        ("sync.yaml", workflow),
        ("text.yaml", text_workflow),
        ("fails.yaml", failing),
    ])
    .await;
    let response = server
        .post_json("/hooks/slack/T123", &json!({"text": "hi", "n": 41}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response
            .headers()
            .get("x-handled-by")
            .and_then(|v| v.to_str().ok()),
        Some("hookflow")
    );
    assert_eq!(
        response.json::<Json>().await.expect("json"),
        json!({"team": "T123", "echo": "HI", "count": 42})
    );
    let response = server
        .client
        .post(format!("{}/hooks/text?q=yes", server.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.text().await.expect("text"), "plain yes");
    let response = server.post_json("/hooks/fails", &json!({})).await;
    assert_eq!(response.status(), 500);
    let answer: Json = response.json().await.expect("json");
    assert_eq!(answer["status"], "failed");
    let run = server
        .finished_run(answer["run_id"].as_str().expect("id"))
        .await;
    let error = run["run"]["error"].as_str().expect("error");
    assert!(error.contains("undefined"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn a_step_timeout_fails_the_step() {
    let workflow = r#"
on: { webhook: { path: /hooks/t } }
steps:
  - name: stuck
    timeout: 200ms
    http: { url: "http://127.0.0.1:9/never", timeout: 10s }
"#;
    // Port 9 (discard) is closed on loopback: the connection is refused at once, so use a
    // listener that accepts and never answers instead.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let workflow = workflow.replace("127.0.0.1:9", &addr.to_string());
    let server = TestServer::start(&[("t.yaml", &workflow)]).await;
    let runs = server
        .accepted("/hooks/t", "application/json", b"{}".to_vec())
        .await;
    let run = server.finished_run(&runs[0]).await;
    assert_eq!(run["run"]["status"], "failed");
    assert_eq!(step(&run, "stuck")["error"], "timed out after 200ms");
    server.stop().await;
}

#[tokio::test]
async fn a_secret_passed_through_set_reaches_the_target_and_no_record() {
    let receiver = Receiver::start().await;
    set_env("E2E_SET_SECRET", "set-secret-9876");
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/secret, respond: sync }} }}
secrets: [E2E_SET_SECRET]
vars:
  header: "Token {{{{ secrets.E2E_SET_SECRET }}}}"
steps:
  - name: keep
    set: {{ token: "{{{{ secrets.E2E_SET_SECRET }}}}" }}
  - name: call
    http:
      url: "{url}"
      auth: {{ bearer: "{{{{ vars.token }}}}" }}
      headers: {{ X-Api: "{{{{ vars.header }}}}" }}
  - respond: {{ body: {{ echoed: "{{{{ vars.token }}}}" }} }}
"#,
        url = receiver.url("/api")
    );
    let server = TestServer::start(&[("secret.yaml", &workflow)]).await;
    let response = server.post_json("/hooks/secret", &json!({})).await;
    assert_eq!(response.status(), 200);
    // The workflow chose to answer with the secret: the caller gets it, the record does not.
    let answer: Json = response.json().await.expect("json");
    assert_eq!(answer, json!({"echoed": "set-secret-9876"}));
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer set-secret-9876")
    );
    assert_eq!(got[0].header("x-api"), Some("Token set-secret-9876"));
    let runs = list_runs(&server).await;
    let run = server
        .finished_run(runs[0]["id"].as_str().expect("id"))
        .await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let recorded = run.to_string();
    assert!(!recorded.contains("set-secret-9876"), "{recorded}");
    assert_eq!(step(&run, "keep")["output"]["token"], "***");
    assert_eq!(run["run"]["response"]["body"]["echoed"], "***");
    server.stop().await;
}

#[tokio::test]
async fn a_run_answers_once_and_a_second_respond_step_fails() {
    let workflow = r#"
on: { webhook: { path: /hooks/twice, respond: sync } }
steps:
  - respond: { status: 201, body: first }
  - name: again
    continue_on_error: true
    respond: { status: 202, body: second }
"#;
    let server = TestServer::start(&[("twice.yaml", workflow)]).await;
    let response = server.post_json("/hooks/twice", &json!({})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.expect("text"), "first");
    let runs = list_runs(&server).await;
    let run = server
        .finished_run(runs[0]["id"].as_str().expect("id"))
        .await;
    assert_eq!(run["run"]["response"]["status"], 201, "{run}");
    let again = step(&run, "again");
    assert_eq!(again["status"], "failed");
    assert!(
        again["error"]
            .as_str()
            .expect("error")
            .contains("already answered"),
        "{again}"
    );
    server.stop().await;
}

/// A `respond` step in `on_error` answers a sync caller whose run failed, with what the
/// workflow chooses to say.
#[tokio::test]
async fn a_sync_caller_of_a_failed_run_gets_the_on_error_answer() {
    let receiver = crate::support::Receiver::start().await;
    receiver.reply("/items", 503, "text/plain", "inventory down");
    let workflow = format!(
        r#"
on: {{ webhook: {{ path: /hooks/check, respond: sync }} }}
steps:
  - name: lookup
    http: {{ url: "{}", expect: [200] }}
  - respond: {{ body: {{ ok: true }} }}
on_error:
  - respond:
      status: 502
      body: {{ error: the inventory could not be checked, failed_step: "{{{{ run.failed_step }}}}" }}
"#,
        receiver.url("/items")
    );
    let server = crate::support::TestServer::start(&[("check.yaml", &workflow)]).await;
    let response = server
        .post_json("/hooks/check", &serde_json::json!({"sku": "A-1"}))
        .await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"error": "the inventory could not be checked", "failed_step": "lookup"})
    );
    server.stop().await;
}
