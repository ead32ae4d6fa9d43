//! The real binary: serve on the defaults and read runs back, validate, run and dry-run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{Receiver, ServeProcess, fixture, fixture_path};

fn hookflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test]
async fn serve_on_the_defaults_then_a_fixture_shows_up_in_runs_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"),
        &dir.path().join("workflows"),
    );
    let server = ServeProcess::start(dir.path());
    let response = crate::support::client()
        .post(format!("{}/hooks/github", server.webhook))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .body(fixture("github/push.json"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let answer: Json = response.json().await.expect("json");
    let run_id = answer["run_ids"][0].as_str().expect("run id").to_owned();

    // The store is the default ./hookflow.db, readable while the server runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    let shown = loop {
        let output = hookflow()
            .args(["runs", "show", &run_id])
            .current_dir(dir.path())
            .output()
            .expect("runs show");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.contains("status    succeeded") {
            break text;
        }
        assert!(Instant::now() < deadline, "run did not succeed: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(shown.contains("workflow  github-push"), "{shown}");
    assert!(shown.contains("[1] pushes-only (filter) ok"), "{shown}");
    assert!(shown.contains("[2] summary (template) ok"), "{shown}");
    assert!(
        shown.contains("Codertocat pushed 1 commit(s) to Codertocat/Hello-World@master"),
        "{shown}"
    );
    assert!(shown.contains("[3] default-branch (log) ok"), "{shown}");
    assert!(dir.path().join("hookflow.db").exists());

    let listed = hookflow()
        .args(["runs", "list", "--status", "succeeded"])
        .current_dir(dir.path())
        .output()
        .expect("runs list");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&run_id) && listed.contains("github-push"),
        "{listed}"
    );

    let (status, logs) = server.terminate();
    assert!(status.success(), "serve exited with {status}: {logs:?}");
    assert!(
        logs.iter().any(|l| l.contains("hookflow stopped")),
        "{logs:?}"
    );
}

#[test]
fn validate_finds_five_different_mistakes_in_one_pass() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflows/five-mistakes");
    let output = hookflow()
        .arg("validate")
        .arg(case.join("workflow.yaml"))
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    let located: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("workflow.yaml:") && l.contains(": error: "))
        .collect();
    assert_eq!(located.len(), 5, "{text}");
    for (line, what) in located.iter().zip([
        "unknown key 'methds'",
        "unknown step kind 'emial'",
        "template syntax error",
        "invalid JSONPath",
        "secret 'CI_TOKEN' is not declared",
    ]) {
        assert!(line.contains(what), "{line} should mention {what}");
    }
    // Every diagnostic carries its source line and a caret.
    assert!(text.matches('^').count() >= 5, "{text}");
}

#[test]
fn validate_of_a_missing_path_says_so() {
    let output = hookflow()
        .args(["validate", "no/such/dir"])
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("no/such/dir: no such file or directory"),
        "{text}"
    );
}

#[tokio::test]
async fn dry_run_sends_nothing_and_a_real_run_sends_the_request() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = dir.path().join("notify.yaml");
    std::fs::write(
        &workflow,
        format!(
            r#"
on: {{ webhook: {{ path: /hooks/notify }} }}
secrets: [CLI_TEST_TOKEN]
steps:
  - name: notify
    http:
      url: "{url}/orders/{{{{ event.body.id }}}}"
      auth: {{ bearer: "{{{{ secrets.CLI_TEST_TOKEN }}}}" }}
      json: {{ total: "{{{{ event.body.total_price }}}}", email: "{{{{ event.body.email }}}}" }}
"#,
            url = receiver.url("")
        ),
    )
    .expect("write");
    let run = move |dry: bool| {
        let mut command = hookflow();
        command
            .arg("run")
            .arg(&workflow)
            .arg("--payload")
            .arg(fixture_path("shopify/orders.create.json"))
            .env("CLI_TEST_TOKEN", "cli-secret-value");
        if dry {
            command.arg("--dry-run");
        }
        command.output().expect("run")
    };
    let run_again = run.clone();
    let dry = tokio::task::spawn_blocking(move || run(true))
        .await
        .expect("join");
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let trace = String::from_utf8_lossy(&dry.stderr);
    assert!(trace.contains("dry run: nothing is sent"), "{trace}");
    let order: Json = serde_json::from_slice(&fixture("shopify/orders.create.json")).expect("json");
    let url = format!("{}/orders/{}", receiver.url(""), order["id"]);
    assert!(trace.contains(&url), "{trace}");
    assert!(
        trace.contains("\"Authorization\": \"Bearer ***\""),
        "{trace}"
    );
    assert!(!trace.contains("cli-secret-value"), "{trace}");
    // The step's output is the sample answer a receiver would give, marked as such.
    assert!(
        trace.contains("answer a sample of the real answer (nothing was sent)"),
        "{trace}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty(), "a dry run sent a request");

    let real = tokio::task::spawn_blocking(move || run_again(false))
        .await
        .expect("join");
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let outcome: Json = serde_json::from_slice(&real.stdout).expect("outcome json");
    assert_eq!(outcome["status"], "succeeded");
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].uri, format!("/orders/{}", order["id"]));
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer cli-secret-value")
    );
    assert_eq!(
        got[0].json(),
        serde_json::json!({"total": order["total_price"], "email": order["email"]})
    );
}

#[test]
fn a_failed_run_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = dir.path().join("fails.yaml");
    std::fs::write(
        &workflow,
        "steps:\n  - name: needs-name\n    template: \"{{ event.body.customer.name }}\"\n",
    )
    .expect("write");
    let payload = dir.path().join("p.json");
    std::fs::write(&payload, "{\"customer\": {}}").expect("write");
    let output = hookflow()
        .arg("run")
        .arg(&workflow)
        .arg("--payload")
        .arg(&payload)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let trace = String::from_utf8_lossy(&output.stderr);
    assert!(
        trace.contains("[1/1] needs-name (template) FAILED"),
        "{trace}"
    );
    assert!(trace.contains("run failed"), "{trace}");
    let outcome: Json = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(outcome["status"], "failed");
    assert!(
        outcome["error"]
            .as_str()
            .expect("error")
            .contains("step 'needs-name' failed: undefined"),
        "{outcome}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_workflows_of_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflows = dir.path().join("workflows");
    std::fs::create_dir_all(&workflows).expect("mkdir");
    let file = workflows.join("w.yaml");
    std::fs::write(
        &file,
        "on: { webhook: { path: /hooks/old } }\nsteps:\n  - log: old\n",
    )
    .expect("write");
    let server = ServeProcess::start(dir.path());
    let http = crate::support::client();
    let post = |path: &'static str| {
        let (http, base) = (http.clone(), server.webhook.clone());
        async move {
            http.post(format!("{base}{path}"))
                .body("{}")
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("/hooks/old").await, 202);
    std::fs::write(
        &file,
        "on: { webhook: { path: /hooks/new } }\nsteps:\n  - log: new\n",
    )
    .expect("write");
    let hup = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while post("/hooks/new").await != 202 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the workflows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(post("/hooks/old").await, 404);
    let (status, _) = server.terminate();
    assert!(status.success());
}

/// `hookflow --version` names the version and the commit the binary was built from.
#[test]
fn version_names_the_commit() {
    let output = hookflow().arg("--version").output().expect("--version");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let expected_start = format!("hookflow {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = text
        .strip_prefix(&expected_start)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    // Built from a Git checkout: the commit is the checkout's (cargo rebuilds on a new commit).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Ok(head) = head
        && head.status.success()
        && std::env::var("HOOKFLOW_COMMIT").is_err()
    {
        assert_eq!(
            commit,
            String::from_utf8_lossy(&head.stdout).trim(),
            "{text}"
        );
    }
}

/// The systemd unit in examples/ passes `systemd-analyze verify` (where systemd is installed)
/// and keeps its hardening.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hookflow.service"),
    )
    .expect("examples/hookflow.service");
    for line in [
        "User=hookflow",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/hookflow",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hookflow.service");
    // verify checks that ExecStart's program exists: point it at this build.
    let here = unit.replace("/usr/local/bin/hookflow", env!("CARGO_BIN_EXE_hookflow"));
    std::fs::write(&path, here).expect("write");
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(output) => assert!(
            output.status.success() && output.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "*** systemd-analyze is not installed: the unit's syntax was not verified ***"
            );
        }
    }
}
