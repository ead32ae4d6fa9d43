//! The web UI: driven in a real browser (Debian's chromium through playwright-core, see
//! tests/browser/), and its access rules (admin token, session cookie, CSRF) over plain HTTP.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Receiver, TestServer};

fn orders_workflow(receiver: &Receiver) -> String {
    format!(
        r#"
name: orders
on: {{ webhook: {{ path: "/hooks/orders/{{tenant}}" }} }}
steps:
  - name: check
    filter: event.body.order > 0
  - name: summary
    template: "order {{{{ event.body.order }}}} for {{{{ event.params.tenant | default('nobody') }}}}"
  - name: deliver
    http:
      url: "{}"
      json: {{ text: "{{{{ steps.summary.output }}}}" }}
"#,
        receiver.url("/orders")
    )
}

/// What the browser test needs, or why it cannot run here.
pub(crate) fn browser_setup(root: &Path) -> Result<PathBuf, String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} is missing (apt-get install -y chromium)"
        ));
    }
    let modules = root.join("tests/browser/node_modules/playwright-core");
    if !modules.exists() {
        return Err("tests/browser/node_modules is missing (cd tests/browser && npm ci)".into());
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(root.join("tests/browser/ui.mjs")),
        _ => Err("node is missing".into()),
    }
}

#[tokio::test]
async fn the_ui_in_a_real_browser_goes_from_the_list_to_a_run_its_event_and_a_replay() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = match browser_setup(&root) {
        Ok(script) => script,
        Err(why) => {
            crate::support::skip(
                "the browser test of the UI",
                &format!("{why} (.ci/run installs it)"),
            );
            return;
        }
    };
    let receiver = Receiver::start().await;
    // The first delivery fails; the replay's succeeds.
    receiver.reply_times("/orders", 1, 500, &[], "the receiver is down");
    let workflow = orders_workflow(&receiver);
    let server = TestServer::start(&[("orders.yaml", workflow.as_str())]).await;
    let failed = server
        .post_with(
            "/hooks/orders/acme",
            "application/json",
            br#"{"order": 42, "items": ["tea", "cups"]}"#.to_vec(),
            &[("x-shop-domain", "acme.example")],
        )
        .await;
    assert_eq!(failed.status(), 202);
    let failed: serde_json::Value = failed.json().await.expect("json");
    let failed = failed["run_ids"][0].as_str().expect("run id").to_owned();
    assert_eq!(
        server.finished_run(&failed).await["run"]["status"],
        "failed"
    );
    let ok = server
        .accepted(
            "/hooks/orders/acme",
            "application/json",
            br#"{"order": 7}"#.to_vec(),
        )
        .await
        .remove(0);
    assert_eq!(server.finished_run(&ok).await["run"]["status"], "succeeded");

    // A request no workflow takes, for the rejected requests page.
    let refused = server
        .post("/hooks/nowhere", "application/json", b"{}".to_vec())
        .await;
    assert_eq!(refused.status(), 404);

    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    std::fs::create_dir_all(&target).expect("target dir");
    let screenshot = target.join("ui-screenshot.png");
    let _ = std::fs::remove_file(&screenshot);
    let admin = server.admin.clone();
    let webhook = server.base.clone();
    let run = failed.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .args([admin.as_str(), run.as_str(), "acme.example"])
            .arg(&screenshot)
            .arg(&webhook)
            .current_dir(script.parent().expect("tests/browser"))
            .output()
            .expect("node runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("browser test passed"), "{stdout}");
    println!("{stdout}");
    // What the browser did happened: the run was replayed and succeeded on its second attempt.
    let detail = server.finished_run(&failed).await;
    assert_eq!(detail["run"]["status"], "succeeded");
    assert_eq!(detail["run"]["attempt"], 2);
    // Two deliveries, the replay, the run the browser saw arrive, and the one it started.
    receiver.wait_for(5).await;
    assert_eq!(receiver.received().len(), 5);
    let started: serde_json::Value = server
        .client
        .get(format!("{}/api/runs?limit=1", server.admin))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let started = started["runs"][0]["id"].as_str().expect("run").to_owned();
    let detail = server.finished_run(&started).await;
    assert_eq!(detail["event"]["trigger"]["kind"], "manual");
    assert_eq!(detail["event"]["trigger"]["started_by"], "ui");
    assert_eq!(detail["event"]["body"], serde_json::json!({"order": 5}));
    let png = std::fs::read(target.join("ui-screenshot.png")).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    server.stop().await;
}

fn no_redirects() -> reqwest::Client {
    hookflow::effects::http::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn the_ui_wants_the_admin_token_once_and_a_csrf_token_for_replay() {
    let receiver = Receiver::start().await;
    let workflow = orders_workflow(&receiver);
    let server = TestServer::start_with(&[("orders.yaml", workflow.as_str())], |s| {
        s.admin_token = Some("ui-token-456".into());
    })
    .await;
    let run = server
        .accepted(
            "/hooks/orders/acme",
            "application/json",
            br#"{"order": 1}"#.to_vec(),
        )
        .await
        .remove(0);
    let client = no_redirects();
    let ui = |path: &str| format!("{}{path}", server.admin);

    // Without the token: to the login form, keeping where the browser was going.
    let anonymous = client
        .get(ui("/ui/runs?status=failed"))
        .send()
        .await
        .expect("get");
    assert_eq!(anonymous.status(), 303);
    assert_eq!(
        anonymous.headers()["location"],
        "/ui/login?next=%2Fui%2Fruns%3Fstatus%3Dfailed"
    );
    let wrong = client
        .get(ui("/ui/runs?token=nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 303);
    assert!(
        wrong.headers()["location"]
            .to_str()
            .expect("loc")
            .starts_with("/ui/login")
    );
    let refused = client
        .post(ui("/ui/login"))
        .form(&[("token", "nope"), ("next", "/ui/runs")])
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 401);
    assert!(set_cookie(&refused, "hookflow_session").is_none());

    // `?token=` once: a session cookie, and the token leaves the address.
    let once = client
        .get(ui("/ui/runs?token=ui-token-456&status=failed"))
        .send()
        .await
        .expect("get");
    assert_eq!(once.status(), 303);
    assert_eq!(once.headers()["location"], "/ui/runs?status=failed");
    let session = set_cookie(&once, "hookflow_session").expect("session cookie");
    assert!(
        !session.contains("ui-token-456"),
        "the cookie is not the token"
    );
    let cookie_line = once
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    // The login form gives the same session.
    let login = client
        .post(ui("/ui/login"))
        .form(&[
            ("token", "ui-token-456"),
            ("next", "https://elsewhere.example/"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/ui/runs", "no open redirect");
    assert_eq!(
        set_cookie(&login, "hookflow_session"),
        Some(session.clone())
    );

    // With the session: the run page, which sets the CSRF cookie and puts the token in the form.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let detail: serde_json::Value = client
            .get(ui(&format!("/api/runs/{run}")))
            .bearer_auth("ui-token-456")
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if detail["run"]["status"] == "succeeded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let page = client
        .get(ui(&format!("/ui/runs/{run}")))
        .header("cookie", &session)
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
    let csrf_cookie = set_cookie(&page, "hookflow_csrf").expect("csrf cookie");
    let html = page.text().await.expect("html");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_owned();
    let cookies = format!("{session}; {csrf_cookie}");
    let replay = |cookies: String, csrf: String| {
        client
            .post(ui(&format!("/ui/runs/{run}/replay")))
            .header("cookie", cookies)
            .form(&[("csrf", csrf)])
            .send()
    };
    // A form without the right token (another site's, or a stale one) is refused.
    let forged = replay(cookies.clone(), "0".repeat(64)).await.expect("post");
    assert_eq!(forged.status(), 403);
    let other_browser = format!("{session}; hookflow_csrf={}", "a".repeat(64));
    let mismatched = replay(other_browser, csrf.clone()).await.expect("post");
    assert_eq!(mismatched.status(), 403);
    let no_session = replay(csrf_cookie.clone(), csrf.clone())
        .await
        .expect("post");
    assert_eq!(no_session.status(), 401);
    // The genuine form replays.
    let genuine = replay(cookies, csrf).await.expect("post");
    assert_eq!(genuine.status(), 303);
    assert_eq!(
        genuine.headers()["location"],
        format!("/ui/runs/{run}?replayed=2").as_str()
    );
    // The API keeps wanting the bearer token; the UI's cookie is not for it.
    let api = client
        .get(ui("/api/runs"))
        .header("cookie", &session)
        .send()
        .await
        .expect("get");
    assert_eq!(api.status(), 401);
    server.stop().await;
}
