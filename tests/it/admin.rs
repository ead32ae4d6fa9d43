//! The admin API beyond single runs: the runs listing (filters, time range, pages), the
//! workflows listing with the last reload's problems, the OpenAPI description, `/metrics`, and
//! who the admin listener answers (its own Host names, same-origin state changes, JSON bodies
//! as JSON, the bearer scheme in any case, query mistakes as JSON errors).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::{Receiver, TestServer};

const QUICK: &str = r#"
name: quick
on: { webhook: { path: /hooks/quick } }
steps:
  - name: greet
    template: "hi {{ event.body.n }}"
"#;

const OTHER: &str = r#"
name: other
on: { webhook: { path: /hooks/other } }
steps:
  - name: only-big
    filter: event.body.n > 100
"#;

async fn get_json(server: &TestServer, path_and_query: &str) -> (u16, Json) {
    let response = server
        .client
        .get(format!("{}{path_and_query}", server.admin))
        .send()
        .await
        .expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

fn ids(page: &Json) -> Vec<String> {
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn runs_are_listed_newest_first_by_workflow_status_and_time_in_pages() {
    let server = TestServer::start(&[("quick.yaml", QUICK), ("other.yaml", OTHER)]).await;
    let mut quick = Vec::new();
    for n in 0..7 {
        let ids = server
            .accepted(
                "/hooks/quick",
                "application/json",
                format!("{{\"n\": {n}}}").into(),
            )
            .await;
        quick.extend(ids);
    }
    let mut other = Vec::new();
    for n in 0..3 {
        other.extend(
            server
                .accepted(
                    "/hooks/other",
                    "application/json",
                    format!("{{\"n\": {n}}}").into(),
                )
                .await,
        );
    }
    for id in quick.iter().chain(&other) {
        server.finished_run(id).await;
    }

    // Pages of 3 follow each other to the end, newest first, then `next` is null.
    let mut seen = Vec::new();
    let mut query = "/api/runs?workflow=quick&limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = get_json(&server, &query).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(cursor) => query = format!("/api/runs?workflow=quick&limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = quick.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // Status: the `other` runs were filtered out by their filter step.
    let (_, filtered) = get_json(&server, "/api/runs?status=filtered").await;
    let mut filtered_ids = ids(&filtered);
    filtered_ids.sort();
    let mut expected = other.clone();
    expected.sort();
    assert_eq!(filtered_ids, expected);
    let (_, none) = get_json(&server, "/api/runs?workflow=quick&status=filtered").await;
    assert_eq!(ids(&none), Vec::<String>::new());

    // Time range: everything is after an hour ago and before an hour from now; nothing since then.
    let hour_ago = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let encode = |t: &str| t.replace('+', "%2B");
    let (_, all) = get_json(
        &server,
        &format!(
            "/api/runs?since={}&until={}&limit=100",
            encode(&hour_ago),
            encode(&in_an_hour)
        ),
    )
    .await;
    assert_eq!(ids(&all).len(), 10);
    assert!(all["next"].is_null());
    let (_, later) = get_json(&server, &format!("/api/runs?since={}", encode(&in_an_hour))).await;
    assert_eq!(ids(&later).len(), 0);

    // Bad input is a 400 that says what is wrong.
    for (query, says) in [
        ("/api/runs?status=done", "unknown status"),
        ("/api/runs?since=yesterday", "RFC 3339"),
        ("/api/runs?cursor=nonsense", "cursor"),
    ] {
        let (status, body) = get_json(&server, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(says),
            "{body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn workflows_are_listed_with_their_routes_and_last_run() {
    let server = TestServer::start(&[("quick.yaml", QUICK), ("other.yaml", OTHER)]).await;
    let run = server
        .accepted("/hooks/quick", "application/json", b"{\"n\": 1}".to_vec())
        .await
        .remove(0);
    server.finished_run(&run).await;
    let (status, body) = get_json(&server, "/api/workflows").await;
    assert_eq!(status, 200);
    let workflows = body["workflows"].as_array().expect("workflows");
    let quick = workflows
        .iter()
        .find(|w| w["name"] == "quick")
        .expect("quick listed");
    assert!(
        quick["file"]
            .as_str()
            .expect("file")
            .ends_with("quick.yaml")
    );
    assert_eq!(
        quick["routes"],
        json!([{ "path": "/hooks/quick", "methods": ["POST"], "respond": "async" }])
    );
    assert_eq!(quick["last_run"]["id"], run.as_str());
    assert_eq!(quick["last_run"]["status"], "succeeded");
    let other = workflows
        .iter()
        .find(|w| w["name"] == "other")
        .expect("other");
    assert!(other["last_run"].is_null());
    assert_eq!(body["reload"]["refused"], false);
    server.stop().await;
}

/// Every `.route("...", get(..).post(..))` in the admin router's source files.
fn served_routes() -> Vec<(String, Vec<&'static str>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut routes = Vec::new();
    for file in ["admin.rs", "ui/mod.rs"] {
        let text = std::fs::read_to_string(root.join(file)).expect("source");
        for chunk in text.split(".route(\"").skip(1) {
            let (path, rest) = chunk.split_once('"').expect("route path");
            let call = rest.split_once("))\n").map_or(rest, |(call, _)| call);
            let methods = ["get", "post", "put", "patch", "delete"]
                .into_iter()
                .filter(|m| call.contains(&format!("{m}(")) || call.contains(&format!(".{m}(")))
                .collect();
            routes.push((path.to_owned(), methods));
        }
    }
    routes
}

#[tokio::test]
async fn the_openapi_description_covers_every_admin_route() {
    let spec: Json =
        serde_json::from_str(include_str!("../../src/http/openapi.json")).expect("spec is JSON");
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    let routes = served_routes();
    assert!(
        routes.len() >= 10,
        "the route scan found too little: {routes:?}"
    );
    for (path, methods) in &routes {
        let described = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is served but not in openapi.json"));
        assert!(!methods.is_empty(), "no method found for {path}");
        for method in methods {
            assert!(
                described.get(*method).is_some(),
                "{} {path} is served but not described",
                method.to_uppercase()
            );
        }
    }
    // And the other way: everything described is served (not a 404) by a real server.
    let server = TestServer::start(&[("quick.yaml", QUICK)]).await;
    let served = server
        .client
        .get(format!("{}/api/openapi.json", server.admin))
        .send()
        .await
        .expect("request");
    assert_eq!(served.status(), 200);
    // Without a token, nothing asks for one: the file less its bearer requirement and 401s.
    let mut open = spec.clone();
    open.as_object_mut().expect("spec").remove("security");
    for item in open["paths"].as_object_mut().expect("paths").values_mut() {
        for operation in item.as_object_mut().expect("path item").values_mut() {
            operation["responses"]
                .as_object_mut()
                .expect("responses")
                .remove("401");
        }
    }
    assert_eq!(served.json::<Json>().await.expect("json"), open);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "00000000-nope")
            .replace("{name}", "quick");
        for method in item.as_object().expect("path item").keys() {
            let status = no_redirects
                .request(
                    method.to_uppercase().parse().expect("method"),
                    format!("{}{concrete}", server.admin),
                )
                .send()
                .await
                .expect("request")
                .status();
            let known_missing_run = concrete.contains("nope") && status == 404;
            assert!(
                status != 404 && status != 405 || known_missing_run,
                "{method} {path} is described but answers {status}"
            );
        }
    }
    server.stop().await;
}

const SERVED_V1: &str = r#"name: served
on: { webhook: { path: /hooks/served, respond: sync } }
steps:
  - name: answer
    respond: { status: 200, body: "version one" }
"#;

const SERVED_BROKEN: &str = r#"name: served
on: { webhook: { path: /hooks/served, respond: sync } }
steps:
  - name: answer
    respnd: { status: 200, body: "version two" }
"#;

const SERVED_V2: &str = r#"name: served
on: { webhook: { path: /hooks/served, respond: sync } }
steps:
  - name: answer
    respond: { status: 200, body: "version two" }
"#;

async fn wait_for_reload(server: &TestServer, refused: bool) -> Json {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get_json(server, "/api/workflows").await;
        if body["reload"]["refused"] == refused && !body["reload"]["at"].is_null() {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no reload with refused={refused}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn answer(server: &TestServer) -> String {
    let response = server
        .post("/hooks/served", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

#[tokio::test]
async fn breaking_a_served_workflow_keeps_the_old_one_and_shows_where_until_it_is_fixed() {
    let server = TestServer::start(&[("served.yaml", SERVED_V1)]).await;
    assert_eq!(answer(&server).await, "version one");
    let file = server.dir.path().join("workflows/served.yaml");

    std::fs::write(&file, SERVED_BROKEN).expect("write");
    let body = wait_for_reload(&server, true).await;
    let problems = body["reload"]["problems"].as_array().expect("problems");
    assert!(!problems.is_empty(), "{body}");
    let first = &problems[0];
    assert!(
        first["file"]
            .as_str()
            .expect("file")
            .ends_with("served.yaml")
    );
    assert_eq!(first["line"], 5, "{first}");
    assert_eq!(first["col"], 5, "{first}");
    let text = first["text"].as_str().expect("text");
    assert!(text.contains("served.yaml:5:5: error:"), "{text}");
    assert!(text.contains("respnd"), "{text}");
    // The workflow's own entry carries its file's problems too.
    let served = &body["workflows"][0];
    assert_eq!(served["problems"][0]["line"], 5);
    // The old definition still answers.
    assert_eq!(answer(&server).await, "version one");
    // And the UI shows the problem.
    let page = server
        .client
        .get(format!("{}/ui/workflows", server.admin))
        .send()
        .await
        .expect("ui")
        .text()
        .await
        .expect("html");
    assert!(page.contains("was refused"), "{page}");
    assert!(page.contains("served.yaml:5:5: error:"), "{page}");

    std::fs::write(&file, SERVED_V2).expect("write");
    let body = wait_for_reload(&server, false).await;
    assert_eq!(body["reload"]["problems"], json!([]));
    assert_eq!(body["workflows"][0]["problems"], json!([]));
    assert_eq!(answer(&server).await, "version two");
    server.stop().await;
}

/// `name{labels} value` lines of a scrape, by their name and labels.
fn scrape(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l}"));
            (
                key.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            )
        })
        .collect()
}

#[tokio::test]
async fn metrics_count_requests_runs_retries_steps_and_commits() {
    let receiver = Receiver::start().await;
    receiver.reply("/down", 503, "text/plain", "down");
    let flaky = format!(
        r#"
name: metrics-flaky
on: {{ webhook: {{ path: /hooks/metrics-flaky }} }}
steps:
  - name: deliver
    http: {{ url: "{}" }}
    retry: {{ attempts: 2, backoff: fixed, initial: 1s }}
"#,
        receiver.url("/down")
    );
    let good = r#"
name: metrics-good
on: { webhook: { path: /hooks/metrics-good } }
steps:
  - name: greet
    template: "hi"
"#;
    let server = TestServer::start(&[("flaky.yaml", flaky.as_str()), ("good.yaml", good)]).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.extend(
            server
                .accepted("/hooks/metrics-good", "application/json", b"{}".to_vec())
                .await,
        );
    }
    runs.extend(
        server
            .accepted("/hooks/metrics-flaky", "application/json", b"{}".to_vec())
            .await,
    );
    let missing = server
        .post("/hooks/metrics-nowhere", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(missing.status(), 404);
    for run in &runs {
        server.finished_run(run).await;
    }
    let response = server
        .client
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.expect("text");
    let values = scrape(&text);
    let value = |key: &str| {
        *values
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in the scrape:\n{text}"))
    };
    assert_eq!(
        value(
            r#"hookflow_http_requests_total{listener="webhook",route="/hooks/metrics-good",status="202"}"#
        ),
        3.0
    );
    assert!(
        value(r#"hookflow_http_requests_total{listener="webhook",route="unmatched",status="404"}"#)
            >= 1.0
    );
    assert!(value(r#"hookflow_rejected_requests_total{reason="no_route"}"#) >= 1.0);
    assert!(
        value(
            r#"hookflow_http_requests_total{listener="admin",route="/api/runs/{id}",status="200"}"#
        ) >= 4.0
    );
    assert_eq!(
        value(r#"hookflow_runs_finished_total{workflow="metrics-good",status="succeeded"}"#),
        3.0
    );
    assert_eq!(
        value(r#"hookflow_runs_finished_total{workflow="metrics-flaky",status="failed"}"#),
        1.0
    );
    assert_eq!(
        value(r#"hookflow_step_retries_total{workflow="metrics-flaky"}"#),
        1.0
    );
    assert!(value(r#"hookflow_step_duration_seconds_count{kind="template"}"#) >= 3.0);
    assert!(value(r#"hookflow_step_duration_seconds_bucket{kind="http",le="+Inf"}"#) >= 2.0);
    assert!(value("hookflow_store_commit_seconds_count") >= 1.0);
    assert!(value(r#"hookflow_store_commit_seconds_bucket{le="+Inf"}"#) >= 1.0);
    assert!(values.contains_key("hookflow_queue_depth"));
    assert!(values.contains_key("hookflow_runs_in_flight"));
    server.stop().await;
}

/// HTTP auth schemes are case-insensitive (RFC 9110, 11.1): `bearer`, `BEARER` and `Bearer` are
/// the same scheme, for the API and the UI; another scheme or a wrong token is still refused.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let server = TestServer::start_with(&[("quick.yaml", QUICK)], |s| {
        s.admin_token = Some("case-token-7f3".into());
    })
    .await;
    let status = |path: &'static str, authorization: &'static str| {
        let request = server
            .client
            .get(format!("{}{path}", server.admin))
            .header("authorization", authorization);
        async move { request.send().await.expect("request").status().as_u16() }
    };
    for authorization in [
        "Bearer case-token-7f3",
        "bearer case-token-7f3",
        "BEARER case-token-7f3",
        "bEaReR  case-token-7f3",
    ] {
        assert_eq!(
            status("/api/runs", authorization).await,
            200,
            "{authorization}"
        );
        assert_eq!(
            status("/ui/runs", authorization).await,
            200,
            "{authorization}"
        );
    }
    for authorization in [
        "Basic case-token-7f3",
        "bearercase-token-7f3",
        "bearer case-token-7f4",
        "bearer",
    ] {
        assert_eq!(
            status("/api/runs", authorization).await,
            401,
            "{authorization}"
        );
    }
    server.stop().await;
}

const NIGHTLY: &str = r#"
name: nightly
on: { schedule: { cron: "0 3 * * *" } }
steps:
  - name: hello
    template: "hello {{ event.body.x }}"
"#;

/// A real `hookflow serve` (no admin token, loopback: the defaults) with one workflow.
fn serve_nightly(extra_args: &[&str]) -> (tempfile::TempDir, crate::support::ServeProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(dir.path().join("workflows/nightly.yaml"), NIGHTLY).expect("workflow");
    let server = crate::support::ServeProcess::start_with(dir.path(), extra_args);
    (dir, server)
}

/// Send one admin request with the given headers; the status and the JSON answer.
async fn admin_request(
    admin: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (u16, Json) {
    let mut request = crate::support::client()
        .request(method.parse().expect("method"), format!("{admin}{path}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Json::Null))
}

async fn run_count(admin: &str) -> usize {
    let (status, page) = admin_request(admin, "GET", "/api/runs?limit=500", &[], "").await;
    assert_eq!(status, 200, "{page}");
    page["runs"].as_array().expect("runs").len()
}

/// A finished run of `nightly`, started the way `hookflow start` does.
async fn finished_nightly_run(admin: &str) -> String {
    let json = [("content-type", "application/json")];
    let (status, started) = admin_request(
        admin,
        "POST",
        "/api/workflows/nightly/start",
        &json,
        r#"{"x":1}"#,
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = started["run_id"].as_str().expect("run_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, detail) = admin_request(admin, "GET", &format!("/api/runs/{id}"), &[], "").await;
        if detail["run"]["finished_at"].is_string() {
            return id;
        }
        assert!(Instant::now() < deadline, "run {id} did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 12, finding 3: with the defaults (loopback, no token) any web page could start any
/// workflow or replay any run with a cross-origin "simple" request, and a DNS-rebinding page
/// could read the API under its own name. The same requests, sent to the real binary, are now
/// refused, and nothing is started.
#[tokio::test]
async fn a_web_page_cannot_drive_the_default_admin_surface() {
    let (_dir, server) = serve_nightly(&[]);
    let admin = server.admin.clone();
    let run_id = finished_nightly_run(&admin).await;
    let before = run_count(&admin).await;

    // curl -X POST -H 'Origin: http://evil.example' -H 'Content-Type: text/plain' -d '{"x":1}'
    //   127.0.0.1:9090/api/workflows/NAME/start   (and the same for /api/runs/ID/replay)
    let evil = [
        ("origin", "http://evil.example"),
        ("content-type", "text/plain"),
    ];
    let replay_path = format!("/api/runs/{run_id}/replay");
    for path in ["/api/workflows/nightly/start", replay_path.as_str()] {
        let (status, answer) = admin_request(&admin, "POST", path, &evil, r#"{"x":1}"#).await;
        assert_eq!(status, 403, "{path}: {answer}");
        let reason = answer["error"].as_str().expect("a JSON error");
        assert!(reason.contains("cross-origin"), "{reason}");
        assert!(reason.contains("http://evil.example"), "{reason}");
    }
    // A browser that sends no Origin still says where the request comes from.
    let cross_site = [
        ("sec-fetch-site", "cross-site"),
        ("content-type", "application/json"),
    ];
    let (status, answer) = admin_request(
        &admin,
        "POST",
        "/api/workflows/nightly/start",
        &cross_site,
        "{}",
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("Sec-Fetch-Site"));
    // The UI's forms too.
    let form = [
        ("origin", "http://evil.example"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let ui_replay = format!("/ui/runs/{run_id}/replay");
    let (status, _) = admin_request(&admin, "POST", &ui_replay, &form, "csrf=x").await;
    assert_eq!(status, 403);

    // A text/plain body is what a page may send without asking: never taken as JSON.
    let plain = [("content-type", "text/plain")];
    let (status, answer) = admin_request(
        &admin,
        "POST",
        "/api/workflows/nightly/start",
        &plain,
        r#"{"x":1}"#,
    )
    .await;
    assert_eq!(status, 415, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
    let (status, _) = admin_request(
        &admin,
        "POST",
        "/api/workflows/nightly/start",
        &[],
        r#"{"x":1}"#,
    )
    .await;
    assert_eq!(status, 415, "a body without a content type");

    // A DNS-rebinding page sends its own name as the Host.
    for (method, path) in [
        ("GET", "/api/runs"),
        ("GET", "/ui/runs"),
        ("GET", "/metrics"),
        ("POST", "/api/workflows/nightly/start"),
    ] {
        let host = [("host", "evil.example:9090")];
        let (status, answer) = admin_request(&admin, method, path, &host, "").await;
        assert_eq!(status, 421, "{method} {path}: {answer}");
        let reason = answer["error"].as_str().expect("a JSON error");
        assert!(reason.contains("evil.example"), "{reason}");
        assert!(reason.contains("admin_allowed_hosts"), "{reason}");
    }
    assert_eq!(run_count(&admin).await, before, "something was started");

    // Probes answer whatever the Host: a load balancer names the server as it likes.
    for path in ["/healthz", "/readyz"] {
        let response = crate::support::client()
            .get(format!("{admin}{path}"))
            .header("host", "evil.example:9090")
            .send()
            .await
            .expect("probe");
        assert_eq!(response.status(), 200, "{path}");
    }
}

/// What keeps working: curl and `hookflow start` (no Origin), the UI's own pages (same
/// origin), loopback names with or without the port, and a configured reverse proxy's name.
#[tokio::test]
async fn the_admin_surface_still_answers_its_own_clients() {
    let (_dir, server) = serve_nightly(&["--admin-allowed-hosts", "admin.example.com"]);
    let admin = server.admin.clone();
    let port = admin.rsplit(':').next().expect("port").to_owned();
    let run_id = finished_nightly_run(&admin).await;
    let own_origin = admin.clone();
    let json = ("content-type", "application/json");
    let start = "/api/workflows/nightly/start";
    for headers in [
        vec![json],
        vec![json, ("origin", own_origin.as_str())],
        vec![
            json,
            ("origin", own_origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![
            json,
            ("host", "admin.example.com"),
            ("origin", "https://admin.example.com"),
        ],
        vec![("content-type", "application/json; charset=utf-8")],
    ] {
        let (status, answer) = admin_request(&admin, "POST", start, &headers, r#"{"x":1}"#).await;
        assert_eq!(status, 202, "{headers:?}: {answer}");
    }
    // No body needs no content type.
    let (status, answer) = admin_request(&admin, "POST", start, &[], "").await;
    assert_eq!(status, 202, "{answer}");
    // Replay takes no body.
    let replay = format!("/api/runs/{run_id}/replay");
    let (status, answer) = admin_request(&admin, "POST", &replay, &[], "").await;
    assert_eq!(status, 202, "{answer}");

    let localhost = format!("localhost:{port}");
    let v6 = format!("[::1]:{port}");
    for host in [
        "localhost",
        localhost.as_str(),
        "127.0.0.1",
        v6.as_str(),
        "admin.example.com",
        "Admin.Example.Com.",
    ] {
        let (status, answer) =
            admin_request(&admin, "GET", "/api/runs", &[("host", host)], "").await;
        assert_eq!(status, 200, "Host {host}: {answer}");
    }
    // The configured name is the only addition.
    let (status, _) = admin_request(
        &admin,
        "GET",
        "/api/runs",
        &[("host", "other.example.com")],
        "",
    )
    .await;
    assert_eq!(status, 421);
}

/// With a token, the description served is the file: a bearer requirement and its 401s.
#[tokio::test]
async fn the_openapi_description_asks_for_the_token_only_when_there_is_one() {
    let spec: Json =
        serde_json::from_str(include_str!("../../src/http/openapi.json")).expect("spec is JSON");
    assert_eq!(spec["security"], json!([{"bearer": []}]));
    let server = TestServer::start_with(&[("quick.yaml", QUICK)], |s| {
        s.admin_token = Some("spec-token-1".into());
    })
    .await;
    let served: Json = server
        .client
        .get(format!("{}/api/openapi.json", server.admin))
        .bearer_auth("spec-token-1")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(served, spec);
    assert!(served["paths"]["/api/runs"]["get"]["responses"]["401"].is_object());
    server.stop().await;
}

/// What schemathesis found against the description (scripts/schemathesis.sh): malformed,
/// empty and out-of-range query values were answered in plain text, or accepted. Each is now
/// the documented JSON error with 400.
#[tokio::test]
async fn malformed_query_values_get_the_documented_json_error() {
    let server = TestServer::start(&[("quick.yaml", QUICK)]).await;
    for (path, expected) in [
        (
            "/api/runs?limit=abc",
            "`limit` must be a whole number from 1 to 500",
        ),
        (
            "/api/runs?limit=0",
            "`limit` must be a whole number from 1 to 500",
        ),
        (
            "/api/runs?limit=501",
            "`limit` must be a whole number from 1 to 500",
        ),
        ("/api/runs?limit=", "`limit` is empty"),
        ("/api/runs?since=", "`since` is empty"),
        ("/api/runs?until=", "`until` is empty"),
        ("/api/runs?status=", "`status` is empty"),
        ("/api/runs?workflow=", "`workflow` is empty"),
        (
            "/api/runs?since=yesterday",
            "`since` must be an RFC 3339 time",
        ),
        (
            "/api/runs?cursor=__proto__",
            "the cursor is not one this server gave",
        ),
        ("/api/runs?cursor=", "`cursor` is empty"),
        (
            "/api/runs?limit=1&limit=2",
            "the query string cannot be read",
        ),
        ("/api/rejected?limit=-1", "`limit` must be a whole number"),
        ("/api/rejected?limit=abc", "`limit` must be a whole number"),
    ] {
        let response = server
            .client
            .get(format!("{}{path}", server.admin))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, "application/json", "{path}");
        let answer: Json = response.json().await.expect("json");
        let reason = answer["error"].as_str().expect("error");
        assert!(reason.contains(expected), "{path}: {reason}");
    }
    for path in [
        "/api/runs/00000000-nope/replay?from_start=null",
        "/api/runs/00000000-nope/replay?from_start=",
    ] {
        let response = server
            .client
            .post(format!("{}{path}", server.admin))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{path}");
        let answer: Json = response.json().await.expect("json");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("`from_start` must be true or false"),
            "{answer}"
        );
    }
    // What is in range is served; the UI's filter form sends empty fields, which mean any.
    for path in [
        "/api/runs?limit=1",
        "/api/runs?limit=500",
        "/api/rejected?limit=0",
        "/ui/runs?workflow=&status=&cursor=",
    ] {
        let response = server
            .client
            .get(format!("{}{path}", server.admin))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_admin_api_wants_its_token_and_refuses_the_network_without_one() {
    let workflow = "on: { webhook: { path: /hooks/a } }\nsteps:\n  - log: hi\n";
    let server = TestServer::start_with(&[("a.yaml", workflow)], |s| {
        s.admin_token = Some("admin-token-123".into());
    })
    .await;
    let api = format!("{}/api/runs", server.admin);
    let response = server.client.get(&api).send().await.expect("request");
    assert_eq!(response.status(), 401);
    let response = server
        .client
        .get(&api)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let response = server
        .client
        .get(&api)
        .bearer_auth("admin-token-123")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let health = server
        .client
        .get(format!("{}/healthz", server.admin))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200, "probes need no token");
    let dir = server.stop().await;

    // Bound beyond loopback without a token: the server does not start.
    let mut settings = crate::support::settings_for(dir.path());
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let refused = hookflow::serve::start(&settings, webhook, admin).await;
    let Err(err) = refused else {
        panic!("the admin API was served to the network without a token");
    };
    assert!(err.to_string().contains("--admin-token"), "{err}");
    // --admin-insecure is an explicit choice.
    settings.admin_insecure = true;
    let webhook = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let running = hookflow::serve::start(&settings, webhook, admin)
        .await
        .expect("starts when asked to");
    running.shutdown().await;
}
