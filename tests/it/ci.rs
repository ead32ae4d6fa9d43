//! `ci` steps against loopback servers standing in for each provider: every request is checked
//! against the provider's documented shape (method, path, query, auth header, body field by
//! field), the outputs against the documented answers, and a refusal fails the step with the
//! provider's own message.

use base64::Engine as _;
use serde_json::{Value as Json, json};

use crate::support::{Received, Receiver, TestServer, fixture, fixture_json, set_env, step};

fn run_id(run: &Json) -> String {
    run["run"]["id"].as_str().expect("run id").to_owned()
}

/// Start a server with one workflow, post a fixture to `path`, and wait for the run.
async fn run_fixture(workflow: &str, path: &str, payload: &str) -> (TestServer, Json) {
    let server = TestServer::start(&[("ci.yaml", workflow)]).await;
    let runs = server
        .accepted(path, "application/json", fixture(payload))
        .await;
    assert_eq!(runs.len(), 1);
    let run = server.finished_run(&runs[0]).await;
    (server, run)
}

/// The one request the receiver got.
async fn only_request(receiver: &Receiver) -> Received {
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    got[0].clone()
}

fn body_text(request: &Received) -> String {
    String::from_utf8(request.body.to_vec()).expect("UTF-8 body")
}

/// No credential value appears anywhere in what was recorded.
fn assert_not_recorded(run: &Json, secrets: &[&str]) {
    let recorded = run.to_string();
    for secret in secrets {
        assert!(!recorded.contains(secret), "{secret} was recorded: {run}");
    }
}

// --- github_actions ---

const GITHUB_ACTIONS: &str = r#"
name: gh-build
on: { webhook: { path: /hooks/github } }
secrets: [CI_IT_GHA_TOKEN]
steps:
  - name: build
    ci:
      github_actions:
        base_url: BASE/api/v3
        repo: "{{ event.body.repository.full_name }}"
        workflow: build.yml
        ref: "{{ event.body.ref | replace('refs/heads/', '') }}"
        inputs:
          sha: "{{ event.body.after }}"
          pusher: "{{ event.body.pusher.name }}"
        token: "{{ secrets.CI_IT_GHA_TOKEN }}"
"#;

#[tokio::test]
async fn github_actions_sends_a_documented_workflow_dispatch() {
    set_env("CI_IT_GHA_TOKEN", "ghp_dispatch_token_1234");
    let receiver = Receiver::start().await;
    // GitHub accepts a dispatch with 204 No Content.
    receiver.reply("/api/v3/repos/", 204, "application/json", "");
    let workflow = GITHUB_ACTIONS.replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let push = fixture_json("github/push.json");

    let request = only_request(&receiver).await;
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.uri,
        "/api/v3/repos/Codertocat/Hello-World/actions/workflows/build.yml/dispatches"
    );
    assert_eq!(
        request.header("authorization"),
        Some("Bearer ghp_dispatch_token_1234")
    );
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("user-agent"), Some("hookflow/0.1.0"));
    assert_eq!(
        request.header("idempotency-key"),
        Some(format!("{}.build", run_id(&run)).as_str())
    );
    // Exactly `{ref, inputs}`: no `return_run_details` unless asked (older servers refuse it).
    assert_eq!(
        request.json(),
        json!({
            "ref": "master",
            "inputs": { "sha": push["after"], "pusher": "Codertocat" }
        })
    );

    let build = step(&run, "build");
    assert_eq!(build["status"], "succeeded");
    let output = &build["output"];
    assert_eq!(output["status"], 204);
    assert_eq!(output["url"], Json::Null);
    assert_eq!(output["run_id"], Json::Null);
    assert_eq!(output["html_url"], Json::Null);
    assert_eq!(output["response"], Json::Null);
    let input = &build["input"];
    assert_eq!(input["provider"], "github_actions");
    assert_eq!(input["headers"]["Authorization"], "Bearer ***");
    assert_eq!(
        input["url"],
        receiver.url("/api/v3/repos/Codertocat/Hello-World/actions/workflows/build.yml/dispatches")
    );
    assert_not_recorded(&run, &["ghp_dispatch_token_1234"]);
    server.stop().await;
}

#[tokio::test]
async fn github_actions_returns_the_run_when_github_gives_its_details() {
    set_env("CI_IT_GHA_DETAILS_TOKEN", "ghp_details_token_5678");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/repos/",
        200,
        "application/json; charset=utf-8",
        r#"{"workflow_run_id": 22452671, "run_url": "https://api.github.com/repos/Codertocat/Hello-World/actions/runs/22452671", "html_url": "https://github.com/Codertocat/Hello-World/actions/runs/22452671"}"#,
    );
    let workflow = r#"
name: gh-details
on: { webhook: { path: /hooks/github } }
secrets: [CI_IT_GHA_DETAILS_TOKEN]
steps:
  - name: build
    ci:
      github_actions:
        base_url: BASE
        repo: Codertocat/Hello-World
        workflow: 1296269
        ref: "{{ event.body.ref }}"
        return_run_details: true
        api_version: "2026-03-10"
        token: "{{ secrets.CI_IT_GHA_DETAILS_TOKEN }}"
  - name: note
    log: "run {{ steps.build.run_id }} at {{ steps.build.url }}"
"#
    .replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let request = only_request(&receiver).await;
    // A numeric workflow id is a path segment like a file name.
    assert_eq!(
        request.uri,
        "/repos/Codertocat/Hello-World/actions/workflows/1296269/dispatches"
    );
    assert_eq!(request.header("x-github-api-version"), Some("2026-03-10"));
    assert_eq!(
        request.json(),
        json!({ "ref": "refs/heads/master", "return_run_details": true })
    );
    let output = &step(&run, "build")["output"];
    assert_eq!(output["status"], 200);
    assert_eq!(output["run_id"], 22452671);
    assert_eq!(
        output["run_url"],
        "https://api.github.com/repos/Codertocat/Hello-World/actions/runs/22452671"
    );
    assert_eq!(
        output["html_url"],
        "https://github.com/Codertocat/Hello-World/actions/runs/22452671"
    );
    assert_eq!(output["url"], output["html_url"]);
    assert_eq!(
        step(&run, "note")["output"]["message"],
        "run 22452671 at https://github.com/Codertocat/Hello-World/actions/runs/22452671"
    );
    server.stop().await;
}

#[tokio::test]
async fn github_actions_422_fails_the_step_with_githubs_message() {
    set_env("CI_IT_GHA_422_TOKEN", "ghp_rejected_token_9012");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/api/v3/repos/",
        422,
        "application/json; charset=utf-8",
        r#"{"message":"Unexpected inputs provided: [\"pusher\"]","documentation_url":"https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event","status":"422"}"#,
    );
    let workflow = GITHUB_ACTIONS
        .replace("BASE", &receiver.url(""))
        .replace("CI_IT_GHA_TOKEN", "CI_IT_GHA_422_TOKEN");
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let build = step(&run, "build");
    assert_eq!(build["status"], "failed");
    let expected =
        r#"github_actions: 422 Unprocessable Entity: Unexpected inputs provided: ["pusher"]"#;
    assert_eq!(build["error"], expected);
    assert_eq!(
        run["run"]["error"],
        format!("step 'build' failed: {expected}")
    );
    // The answer is kept, for a later step or a person to read.
    assert_eq!(build["output"]["status"], 422);
    assert_eq!(
        build["output"]["response"]["documentation_url"],
        "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event"
    );
    assert_eq!(build["attempts"], 1, "a 422 is not worth another attempt");
    assert_not_recorded(&run, &["ghp_rejected_token_9012"]);
    server.stop().await;
}

// --- github_dispatch ---

const GITHUB_DISPATCH: &str = r#"
name: gh-dispatch
on: { webhook: { path: /hooks/github } }
secrets: [TOKEN_VAR]
steps:
  - name: notify
    continue_on_error: true
    ci:
      github_dispatch:
        base_url: BASE
        repo: octo-org/deployments
        event_type: "push-{{ event.body.repository.name }}"
        client_payload:
          repository: "{{ event.body.repository.full_name }}"
          sha: "{{ event.body.after }}"
          commits: "{{ event.body.commits | length }}"
          created: "{{ event.body.created }}"
        token: "{{ secrets.TOKEN_VAR }}"
  - name: report
    if: steps.notify.failed
    log: "could not dispatch: {{ steps.notify.error }}"
"#;

#[tokio::test]
async fn github_dispatch_sends_event_type_and_a_typed_client_payload() {
    set_env("CI_IT_GHD_TOKEN", "ghp_repository_dispatch_3456");
    let receiver = Receiver::start().await;
    receiver.reply("/repos/", 204, "application/json", "");
    let workflow = GITHUB_DISPATCH
        .replace("BASE", &receiver.url(""))
        .replace("TOKEN_VAR", "CI_IT_GHD_TOKEN");
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let push = fixture_json("github/push.json");
    let request = only_request(&receiver).await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.uri, "/repos/octo-org/deployments/dispatches");
    assert_eq!(
        request.header("authorization"),
        Some("Bearer ghp_repository_dispatch_3456")
    );
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        json!({
            "event_type": "push-Hello-World",
            "client_payload": {
                "repository": "Codertocat/Hello-World",
                "sha": push["after"],
                "commits": 1,
                "created": true
            }
        })
    );
    assert_eq!(step(&run, "notify")["output"]["status"], 204);
    assert_eq!(step(&run, "report")["status"], "skipped");
    server.stop().await;
}

#[tokio::test]
async fn github_dispatch_401_fails_with_bad_credentials_and_the_run_goes_on() {
    set_env("CI_IT_GHD_401_TOKEN", "ghp_revoked_token_7890");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/repos/",
        401,
        "application/json; charset=utf-8",
        r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}"#,
    );
    let workflow = GITHUB_DISPATCH
        .replace("BASE", &receiver.url(""))
        .replace("TOKEN_VAR", "CI_IT_GHD_401_TOKEN");
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    // continue_on_error: the run succeeds and the next step reads the provider's message.
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let notify = step(&run, "notify");
    assert_eq!(notify["status"], "failed");
    assert_eq!(
        notify["error"],
        "github_dispatch: 401 Unauthorized: Bad credentials"
    );
    assert_eq!(
        step(&run, "report")["output"]["message"],
        "could not dispatch: github_dispatch: 401 Unauthorized: Bad credentials"
    );
    assert_not_recorded(&run, &["ghp_revoked_token_7890"]);
    server.stop().await;
}

// --- gitlab ---

const GITLAB: &str = r#"
name: gl-trigger
on: { webhook: { path: /hooks/gitlab } }
secrets: [TOKEN_VAR]
steps:
  - name: by-id
    ci:
      gitlab:
        base_url: BASE/
        project: "{{ event.body.project.id }}"
        ref: "{{ event.body.ref | replace('refs/heads/', '') }}"
        token: "{{ secrets.TOKEN_VAR }}"
        variables:
          SHA: "{{ event.body.checkout_sha }}"
          PUSHED_BY: "{{ event.body.user_username }}"
          COMMITS: "{{ event.body.total_commits_count }}"
          SKIPPED: "{{ event.body.project.avatar_url }}"
  - name: by-path
    ci:
      gitlab:
        base_url: BASE
        project: "{{ event.body.project.path_with_namespace }}"
        ref: master
        token: "{{ secrets.TOKEN_VAR }}"
"#;

#[tokio::test]
async fn gitlab_triggers_a_pipeline_with_the_token_and_variables_as_form_fields() {
    set_env("CI_IT_GL_TOKEN", "glptt-0123456789abcdef");
    let receiver = Receiver::start().await;
    let pipeline = r#"{"id": 287, "iid": 144, "project_id": 15, "sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "ref": "master", "status": "created", "source": "trigger", "web_url": "https://gitlab.example.com/mike/diaspora/-/pipelines/287"}"#;
    receiver.reply("/api/v4/projects/", 201, "application/json", pipeline);
    let workflow = GITLAB
        .replace("BASE", &receiver.url(""))
        .replace("TOKEN_VAR", "CI_IT_GL_TOKEN");
    let (server, run) = run_fixture(&workflow, "/hooks/gitlab", "gitlab/push.json").await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let push = fixture_json("gitlab/push.json");
    assert_eq!(push["project"]["id"], 15);
    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2);

    let by_id = &got[0];
    assert_eq!(by_id.method, "POST");
    assert_eq!(by_id.uri, "/api/v4/projects/15/trigger/pipeline");
    assert_eq!(
        by_id.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // The trigger token authenticates in the form; no header carries it.
    assert_eq!(by_id.header("authorization"), None);
    assert_eq!(by_id.header("private-token"), None);
    assert_eq!(
        body_text(by_id),
        format!(
            "token=glptt-0123456789abcdef&ref=master&variables%5BSHA%5D={}&variables%5BPUSHED_BY%5D=jsmith&variables%5BCOMMITS%5D=4",
            push["checkout_sha"].as_str().unwrap()
        )
    );
    let fields: Vec<(String, String)> =
        serde_urlencoded::from_bytes(&by_id.body).expect("a form body");
    assert_eq!(
        fields,
        vec![
            ("token".to_owned(), "glptt-0123456789abcdef".to_owned()),
            ("ref".to_owned(), "master".to_owned()),
            (
                "variables[SHA]".to_owned(),
                "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".to_owned()
            ),
            ("variables[PUSHED_BY]".to_owned(), "jsmith".to_owned()),
            ("variables[COMMITS]".to_owned(), "4".to_owned()),
        ]
    );

    // A project path is one URL-encoded segment.
    let by_path = &got[1];
    assert_eq!(
        by_path.uri,
        "/api/v4/projects/mike%2Fdiaspora/trigger/pipeline"
    );
    assert_eq!(
        body_text(by_path),
        "token=glptt-0123456789abcdef&ref=master"
    );

    let output = &step(&run, "by-id")["output"];
    assert_eq!(output["status"], 201);
    assert_eq!(output["id"], 287);
    assert_eq!(
        output["web_url"],
        "https://gitlab.example.com/mike/diaspora/-/pipelines/287"
    );
    assert_eq!(output["url"], output["web_url"]);
    assert_eq!(output["response"]["status"], "created");
    let input = &step(&run, "by-id")["input"];
    assert_eq!(input["body"]["token"], "***");
    assert_eq!(
        input["body"]["variables[SHA]"],
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    );
    assert_not_recorded(&run, &["glptt-0123456789abcdef"]);
    server.stop().await;
}

#[tokio::test]
async fn gitlab_refusals_fail_with_gitlabs_message() {
    set_env("CI_IT_GL_400_TOKEN", "glptt-refused-000000");
    let receiver = Receiver::start().await;
    // GitLab names the field a validation problem is about.
    receiver.reply(
        "/api/v4/projects/15/",
        400,
        "application/json",
        r#"{"message":{"base":["Reference not found"]}}"#,
    );
    receiver.reply(
        "/api/v4/projects/mike%2Fdiaspora/",
        404,
        "application/json",
        r#"{"message":"404 Not Found"}"#,
    );
    let workflow = GITLAB
        .replace("BASE", &receiver.url(""))
        .replace("TOKEN_VAR", "CI_IT_GL_400_TOKEN")
        .replace(
            "  - name: by-id\n",
            "  - name: by-id\n    continue_on_error: true\n",
        );
    let (server, run) = run_fixture(&workflow, "/hooks/gitlab", "gitlab/push.json").await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "by-id")["error"],
        "gitlab: 400 Bad Request: base: Reference not found"
    );
    assert_eq!(
        step(&run, "by-path")["error"],
        "gitlab: 404 Not Found: 404 Not Found"
    );
    assert_not_recorded(&run, &["glptt-refused-000000"]);
    server.stop().await;
}

// --- jenkins ---

const JENKINS: &str = r#"
name: jenkins-build
on: { webhook: { path: /hooks/gitlab } }
secrets: [CI_IT_JENKINS_API_TOKEN, CI_IT_JENKINS_BUILD_TOKEN]
steps:
  - name: with-parameters
    ci:
      jenkins:
        base_url: BASE/jenkins
        job: "platform/{{ event.body.project.name | lower }}"
        user: ci-bot
        api_token: "{{ secrets.CI_IT_JENKINS_API_TOKEN }}"
        token: "{{ secrets.CI_IT_JENKINS_BUILD_TOKEN }}"
        parameters:
          GIT_COMMIT: "{{ event.body.checkout_sha }}"
          BRANCH: "{{ event.body.ref | replace('refs/heads/', '') }}"
          TARGETS: [linux, macos]
          SKIP: null
  - name: without-parameters
    ci:
      jenkins:
        base_url: BASE/jenkins
        job: nightly build
        user: ci-bot
        api_token: "{{ secrets.CI_IT_JENKINS_API_TOKEN }}"
"#;

#[tokio::test]
async fn jenkins_builds_with_parameters_and_reports_the_queue_item() {
    set_env(
        "CI_IT_JENKINS_API_TOKEN",
        "11e2c1d3f4a5b6c7d8e9f0a1b2c3d4e5f6",
    );
    set_env("CI_IT_JENKINS_BUILD_TOKEN", "remote-build-token-42");
    let receiver = Receiver::start().await;
    receiver.reply_with_headers(
        "/jenkins/job/",
        201,
        "text/html;charset=utf-8",
        "",
        &[("location", "http://jenkins.example.test/queue/item/42/")],
    );
    let workflow = JENKINS.replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/gitlab", "gitlab/push.json").await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode("ci-bot:11e2c1d3f4a5b6c7d8e9f0a1b2c3d4e5f6")
    );

    let with = &got[0];
    assert_eq!(with.method, "POST");
    // A job in a folder is /job/<folder>/job/<name>; the build token goes in the query.
    assert_eq!(
        with.uri,
        "/jenkins/job/platform/job/diaspora/buildWithParameters?token=remote-build-token-42"
    );
    assert_eq!(with.header("authorization"), Some(basic.as_str()));
    assert_eq!(
        with.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // A list repeats the parameter (multi-select); null leaves it out.
    assert_eq!(
        body_text(with),
        "GIT_COMMIT=da1560886d4f094c3e6c9ef40349f7d38b5d27d7&BRANCH=master&TARGETS=linux&TARGETS=macos"
    );

    let without = &got[1];
    assert_eq!(without.uri, "/jenkins/job/nightly%20build/build");
    assert_eq!(without.header("authorization"), Some(basic.as_str()));
    assert_eq!(without.header("content-type"), None);
    assert!(without.body.is_empty(), "{without:?}");

    let output = &step(&run, "with-parameters")["output"];
    assert_eq!(output["status"], 201);
    assert_eq!(
        output["queue_url"],
        "http://jenkins.example.test/queue/item/42/"
    );
    assert_eq!(output["url"], output["queue_url"]);
    let input = &step(&run, "with-parameters")["input"];
    assert_eq!(
        input["url"],
        receiver.url("/jenkins/job/platform/job/diaspora/buildWithParameters?token=***")
    );
    assert_eq!(input["headers"]["Authorization"], "Basic ***");
    assert_eq!(input["body"]["TARGETS"], json!(["linux", "macos"]));
    assert_not_recorded(
        &run,
        &[
            "11e2c1d3f4a5b6c7d8e9f0a1b2c3d4e5f6",
            "remote-build-token-42",
            basic.trim_start_matches("Basic "),
        ],
    );
    server.stop().await;
}

#[tokio::test]
async fn jenkins_401_fails_with_the_reason_its_page_gives() {
    set_env("CI_IT_JENKINS_401_API", "wrong-api-token-000");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/job/",
        401,
        "text/html;charset=iso-8859-1",
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=ISO-8859-1\"/>\n<title>Error 401 Invalid password/token for user: ci-bot</title>\n</head>\n<body><h2>HTTP ERROR 401 Invalid password/token for user: ci-bot</h2>\n</body>\n</html>\n",
    );
    let workflow = r#"
name: jenkins-401
on: { webhook: { path: /hooks/gitlab } }
secrets: [CI_IT_JENKINS_401_API]
steps:
  - name: build
    ci:
      jenkins:
        base_url: BASE
        job: diaspora
        user: ci-bot
        api_token: "{{ secrets.CI_IT_JENKINS_401_API }}"
        parameters: { SHA: "{{ event.body.checkout_sha }}" }
"#
    .replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/gitlab", "gitlab/push.json").await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "build")["error"],
        "jenkins: 401 Unauthorized: Error 401 Invalid password/token for user: ci-bot"
    );
    assert_eq!(step(&run, "build")["output"]["queue_url"], Json::Null);
    server.stop().await;
}

// --- buildkite ---

#[tokio::test]
async fn buildkite_creates_a_build_with_commit_branch_message_and_env() {
    set_env("CI_IT_BK_TOKEN", "bkua_0123456789abcdef0123");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/v2/organizations/",
        201,
        "application/json; charset=utf-8",
        r#"{"id": "f62a1b4d-10f9-4790-bc1c-e2c3a0c80983", "number": 42, "state": "scheduled", "url": "https://api.buildkite.com/v2/organizations/acme-inc/pipelines/hello-world/builds/42", "web_url": "https://buildkite.com/acme-inc/hello-world/builds/42", "branch": "master", "commit": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "source": "api"}"#,
    );
    let workflow = r#"
name: bk-build
on: { webhook: { path: /hooks/github } }
secrets: [CI_IT_BK_TOKEN]
steps:
  - name: build
    ci:
      buildkite:
        base_url: BASE
        organization: acme-inc
        pipeline: "{{ event.body.repository.name | lower }}"
        token: "{{ secrets.CI_IT_BK_TOKEN }}"
        commit: "{{ event.body.after }}"
        branch: "{{ event.body.ref | replace('refs/heads/', '') }}"
        message: "{{ event.body.head_commit.message }}"
        author:
          name: "{{ event.body.pusher.name }}"
          email: "{{ event.body.pusher.email }}"
        env:
          COMMITS: "{{ event.body.commits | length }}"
          DEPLOY: false
        meta_data:
          pushed-by: "{{ event.body.sender.login }}"
        clean_checkout: true
"#
    .replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let push = fixture_json("github/push.json");
    let request = only_request(&receiver).await;
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.uri,
        "/v2/organizations/acme-inc/pipelines/hello-world/builds"
    );
    assert_eq!(
        request.header("authorization"),
        Some("Bearer bkua_0123456789abcdef0123")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        json!({
            "commit": push["after"],
            "branch": "master",
            "message": push["head_commit"]["message"],
            "author": {
                "name": "Codertocat",
                "email": push["pusher"]["email"]
            },
            // Environment variables and meta-data are text on Buildkite's side.
            "env": { "COMMITS": "1", "DEPLOY": "false" },
            "meta_data": { "pushed-by": "Codertocat" },
            "clean_checkout": true
        })
    );
    let output = &step(&run, "build")["output"];
    assert_eq!(output["status"], 201);
    assert_eq!(output["number"], 42);
    assert_eq!(
        output["web_url"],
        "https://buildkite.com/acme-inc/hello-world/builds/42"
    );
    assert_eq!(output["url"], output["web_url"]);
    assert_eq!(
        step(&run, "build")["input"]["headers"]["Authorization"],
        "Bearer ***"
    );
    assert_not_recorded(&run, &["bkua_0123456789abcdef0123"]);
    server.stop().await;
}

#[tokio::test]
async fn buildkite_422_fails_with_buildkites_message() {
    set_env("CI_IT_BK_422_TOKEN", "bkua_validation_token_1");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/v2/",
        422,
        "application/json; charset=utf-8",
        r#"{"message":"Validation failed: Branch can't be blank"}"#,
    );
    let workflow = r#"
name: bk-422
on: { webhook: { path: /hooks/github } }
secrets: [CI_IT_BK_422_TOKEN]
steps:
  - name: build
    ci:
      buildkite:
        base_url: BASE
        organization: acme-inc
        pipeline: hello-world
        token: "{{ secrets.CI_IT_BK_422_TOKEN }}"
        commit: HEAD
        branch: ""
"#
    .replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "build")["error"],
        "buildkite: 422 Unprocessable Entity: Validation failed: Branch can't be blank"
    );
    let request = only_request(&receiver).await;
    assert_eq!(request.json(), json!({ "commit": "HEAD", "branch": "" }));
    server.stop().await;
}

// --- circleci ---

#[tokio::test]
async fn circleci_triggers_a_pipeline_with_circle_token_and_typed_parameters() {
    set_env("CI_IT_CIRCLE_TOKEN", "CCIPAT_abcdef0123456789");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/api/v2/project/",
        201,
        "application/json;charset=utf-8",
        r#"{"number": 62, "state": "pending", "id": "7d1e5c00-673d-47e0-8ac6-22e49011eb3a", "created_at": "2019-10-27T04:52:09.794Z"}"#,
    );
    let workflow = r#"
name: circle
on: { webhook: { path: /hooks/github } }
secrets: [CI_IT_CIRCLE_TOKEN]
steps:
  - name: pipeline
    ci:
      circleci:
        base_url: BASE
        project: "gh/{{ event.body.repository.full_name }}"
        token: "{{ secrets.CI_IT_CIRCLE_TOKEN }}"
        branch: "{{ event.body.ref | replace('refs/heads/', '') }}"
        parameters:
          sha: "{{ event.body.after }}"
          commits: "{{ event.body.commits | length }}"
          deploy: false
"#
    .replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    let push = fixture_json("github/push.json");
    let request = only_request(&receiver).await;
    assert_eq!(request.method, "POST");
    // The project slug keeps its three segments.
    assert_eq!(
        request.uri,
        "/api/v2/project/gh/Codertocat/Hello-World/pipeline"
    );
    assert_eq!(
        request.header("circle-token"),
        Some("CCIPAT_abcdef0123456789")
    );
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(
        request.json(),
        json!({
            "branch": "master",
            "parameters": { "sha": push["after"], "commits": 1, "deploy": false }
        })
    );
    let output = &step(&run, "pipeline")["output"];
    assert_eq!(output["status"], 201);
    assert_eq!(output["number"], 62);
    assert_eq!(output["id"], "7d1e5c00-673d-47e0-8ac6-22e49011eb3a");
    assert_eq!(
        step(&run, "pipeline")["input"]["headers"]["Circle-Token"],
        "***"
    );
    assert_not_recorded(&run, &["CCIPAT_abcdef0123456789"]);
    server.stop().await;
}

#[tokio::test]
async fn circleci_401_fails_with_circlecis_message() {
    set_env("CI_IT_CIRCLE_401_TOKEN", "CCIPAT_revoked_000000");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/api/v2/",
        401,
        "application/json;charset=utf-8",
        r#"{"message":"You must log in first."}"#,
    );
    let workflow = r#"
name: circle-401
on: { webhook: { path: /hooks/github } }
secrets: [CI_IT_CIRCLE_401_TOKEN]
steps:
  - name: pipeline
    ci:
      circleci:
        base_url: BASE
        project: gh/Codertocat/Hello-World
        token: "{{ secrets.CI_IT_CIRCLE_401_TOKEN }}"
        tag: v1.0.0
"#
    .replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    assert_eq!(
        step(&run, "pipeline")["error"],
        "circleci: 401 Unauthorized: You must log in first."
    );
    let request = only_request(&receiver).await;
    assert_eq!(request.json(), json!({ "tag": "v1.0.0" }));
    server.stop().await;
}

// --- generic ---

#[tokio::test]
async fn generic_sends_any_http_call_and_names_the_provider_in_errors() {
    set_env("CI_IT_GENERIC_TOKEN", "drone-token-abcdef");
    let receiver = Receiver::start().await;
    receiver.reply(
        "/api/repos/",
        200,
        "application/json",
        r#"{"id": 100207, "number": 42, "status": "pending"}"#,
    );
    receiver.reply(
        "/broken/",
        503,
        "text/plain",
        "upstream unavailable\nretry later",
    );
    let workflow = r#"
name: generic
on: { webhook: { path: /hooks/github } }
secrets: [CI_IT_GENERIC_TOKEN]
steps:
  - name: drone
    ci:
      generic:
        method: POST
        url: "BASE/api/repos/{{ event.body.repository.full_name }}/builds"
        query: { branch: master, commit: "{{ event.body.after }}" }
        auth: { bearer: "{{ secrets.CI_IT_GENERIC_TOKEN }}" }
  - name: broken
    ci:
      generic:
        url: BASE/broken/build
        json: { ref: master }
"#
    .replace("BASE", &receiver.url(""));
    let (server, run) = run_fixture(&workflow, "/hooks/github", "github/push.json").await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let push = fixture_json("github/push.json");
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].method, "POST");
    assert_eq!(
        got[0].uri,
        format!(
            "/api/repos/Codertocat/Hello-World/builds?branch=master&commit={}",
            push["after"].as_str().unwrap()
        )
    );
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer drone-token-abcdef")
    );
    let drone = step(&run, "drone");
    assert_eq!(drone["input"]["provider"], "generic");
    assert_eq!(drone["input"]["headers"]["Authorization"], "Bearer ***");
    assert_eq!(drone["output"]["status"], 200);
    assert_eq!(drone["output"]["response"]["number"], 42);
    assert_eq!(got[1].json(), json!({ "ref": "master" }));
    assert_eq!(
        step(&run, "broken")["error"],
        "generic: 503 Service Unavailable: upstream unavailable"
    );
    assert_not_recorded(&run, &["drone-token-abcdef"]);
    server.stop().await;
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_fails_with_the_url_and_no_credential() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    set_env("CI_IT_DOWN_TOKEN", "jenkins-down-token-1");
    let workflow = r#"
name: down
on: { webhook: { path: /hooks/gitlab } }
secrets: [CI_IT_DOWN_TOKEN]
steps:
  - name: build
    ci:
      jenkins:
        base_url: http://127.0.0.1:PORT
        job: diaspora
        token: "{{ secrets.CI_IT_DOWN_TOKEN }}"
"#
    .replace("PORT", &port.to_string());
    let (server, run) = run_fixture(&workflow, "/hooks/gitlab", "gitlab/push.json").await;
    assert_eq!(run["run"]["status"], "failed", "{run}");
    let error = step(&run, "build")["error"]
        .as_str()
        .expect("error")
        .to_owned();
    assert!(
        error.starts_with(&format!(
            "jenkins: POST http://127.0.0.1:{port}/job/diaspora/build?token=***: could not connect"
        )),
        "{error}"
    );
    assert_not_recorded(&run, &["jenkins-down-token-1"]);
    server.stop().await;
}

// --- what `validate` says ---

fn diagnostics(yaml: &str) -> Vec<String> {
    let source = hookflow::diag::SourceFile::new("ci.yaml", yaml);
    let loaded = hookflow::workflow::load_sources(vec![source], &Default::default());
    loaded
        .diagnostics
        .sorted()
        .into_iter()
        .map(|d| {
            let hint = d.hint.map(|h| format!(" (hint: {h})")).unwrap_or_default();
            format!("{}:{}: {}{hint}", d.span.line, d.span.col, d.message)
        })
        .collect()
}

#[test]
fn mistakes_in_ci_steps_are_reported_with_their_place() {
    let problems = diagnostics(
        r#"secrets: [T]
steps:
  - ci:
      github_action: { repo: a/b }
  - ci:
      gitlab: { project: 1, ref: main, token: x }
      jenkins: { base_url: "https://ci.test", job: a }
  - ci: {}
  - ci:
      github_actions: { repo: Hello-World, workflow: b.yml, ref: main, token: x }
  - ci:
      github_dispatch: { repo: a/b, token: x, client_paylod: {} }
  - ci:
      jenkins: { job: a, user: bot }
  - ci:
      jenkins: { base_url: "https://ci.test", job: job/a/job/b }
  - ci:
      circleci: { project: gh/a/b, token: x, branch: main, tag: v1 }
  - ci:
      buildkite: { organization: o, pipeline: p, token: "{{ secrets.NOPE }}", commit: HEAD, branch: main, base_url: "ci.test" }
  - ci:
      generic: { url: "https://x.test", json: {}, body: x }
"#,
    );
    let expected = [
        "4:7: unknown key 'github_action' in `ci` (hint: did you mean 'github_actions'?)",
        "7:7: `ci` takes one provider, but has both 'gitlab' and 'jenkins'",
        "8:9: `ci` needs one provider: github_actions, github_dispatch, gitlab, jenkins, buildkite, circleci, generic",
        "10:31: `repo` must be 'owner/name' (like 'octo-org/octo-repo'), not 'Hello-World'",
        "12:47: unknown key 'client_paylod' in `ci.github_dispatch` (hint: did you mean 'client_payload'?)",
        "12:24: `ci.github_dispatch` is missing the required key 'event_type'",
        "14:16: `ci.jenkins` is missing the required key 'base_url'",
        "14:16: `ci.jenkins` takes `user` and `api_token` together (HTTP basic auth)",
        "16:52: `job` is the job's path without `job/`, not 'job/a/job/b' (hint: write folder/name; hookflow adds the /job/ parts of the URL)",
        "18:60: `ci.circleci` takes `branch` or `tag`, not both (CircleCI refuses both)",
        "20:61: secret 'NOPE' is not declared (hint: add it to the workflow's `secrets:` list)",
        "20:117: `base_url` must be an http:// or https:// URL, not 'ci.test'",
        "22:51: `ci.generic` takes one body, but has both 'json' and 'body'",
    ];
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    let mut got = problems.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "\n{}", problems.join("\n"));
}
