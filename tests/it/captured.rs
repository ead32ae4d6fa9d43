//! Payload files, the loop from a real delivery back to a test: `hookflow run` reads a payload's
//! headers file; `hookflow runs event --save` and the UI's event page write a stored event as
//! payload files (the exact body bytes, headers without signatures or credentials) that `run`
//! reproduces and `send` delivers again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;

use crate::send::{GH_SECRET, GITLAB_TOKEN, finished, send, serve};
use crate::support::{fixture, fixture_path};

fn hookflow(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookflow"));
    command.current_dir(dir).env_remove("RUST_LOG");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `hookflow run`'s summary (stdout) after a run that could start.
fn summary(output: &Output) -> Json {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no summary: {}", text(&output.stderr)))
}

#[test]
fn run_reads_the_headers_file_beside_its_payload_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = dir.path().join("pushes.yaml");
    std::fs::write(
        &workflow,
        "name: pushes\non: { webhook: { path: /hooks/github } }\nsteps:\n  - name: pushes-only\n    filter: event.headers['x-github-event'] | default('') == 'push'\n  - name: note\n    log: \"{{ event.headers['x-github-delivery'] | default('none') }}\"\n",
    )
    .expect("write workflow");
    let payload = dir.path().join("push.json");
    std::fs::copy(fixture_path("github/push.json"), &payload).expect("copy");
    let headers = dir.path().join("push.headers.json");
    let run = |extra: &[&str]| {
        hookflow(dir.path())
            .arg("run")
            .arg(&workflow)
            .arg("--payload")
            .arg(&payload)
            .args(extra)
            .output()
            .expect("hookflow run")
    };
    // Without a headers file, the event type is missing: filtered.
    assert_eq!(summary(&run(&[]))["status"], "filtered");
    std::fs::write(
        &headers,
        r#"{"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}"#,
    )
    .expect("write headers");
    let output = run(&[]);
    assert_eq!(
        summary(&output)["status"],
        "succeeded",
        "{}",
        text(&output.stderr)
    );
    assert!(
        text(&output.stderr).contains("\"d-1\""),
        "{}",
        text(&output.stderr)
    );
    std::fs::write(&headers, r#"{"X-GitHub-Event": "ping"}"#).expect("write headers");
    assert_eq!(summary(&run(&[]))["status"], "filtered");
    let flagged = run(&["-H", "X-GitHub-Event: push"]);
    assert_eq!(summary(&flagged)["status"], "succeeded");
    // A headers file that is not one is an error naming it.
    std::fs::write(&headers, r#"["X-GitHub-Event"]"#).expect("write headers");
    let broken = run(&[]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        text(&broken.stderr).contains("push.headers.json is not a headers file"),
        "{}",
        text(&broken.stderr)
    );
}

/// A server of the send tests' workflows with three runs: a GitHub push (succeeded), a GitHub
/// ping (filtered: the event type is a header), a GitLab push (its token masked by the store).
struct Captured {
    dir: tempfile::TempDir,
    server: crate::support::ServeProcess,
    push: String,
    ping: String,
    gitlab: String,
}

async fn captured() -> Captured {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve(dir.path());
    let push_json = fixture_path("github/push.json").display().to_string();
    let gitlab_json = fixture_path("gitlab/push.json").display().to_string();
    let gh = [("SEND_GH_SECRET", GH_SECRET)];
    let sent = |args: &[&str], env: &[(&str, &str)]| {
        let output = send(dir.path(), &server.webhook, args, env);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let answer: Json = serde_json::from_slice(&output.stdout).expect("answer");
        answer["run_ids"][0].as_str().expect("run id").to_owned()
    };
    let push = sent(&["gh", &push_json], &gh);
    let ping = sent(&["gh", &push_json, "-H", "X-GitHub-Event: ping"], &gh);
    let gitlab = sent(
        &["gitlab", &gitlab_json],
        &[("SEND_GITLAB_TOKEN", GITLAB_TOKEN)],
    );
    for (id, status) in [
        (&push, "succeeded"),
        (&ping, "filtered"),
        (&gitlab, "succeeded"),
    ] {
        assert_eq!(finished(&server.admin, id).await["run"]["status"], status);
    }
    Captured {
        dir,
        server,
        push,
        ping,
        gitlab,
    }
}

/// `runs event ID --save DIR [--name NAME]`: the two paths written, from stdout.
fn save(dir: &Path, id: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let output = hookflow(dir)
        .args(["runs", "event", id, "--save", "saved"])
        .args(extra)
        .output()
        .expect("runs event --save");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let mut lines = stdout.lines().map(|l| dir.join(l));
    let body = lines.next().expect("the body's path");
    let headers = lines.next().expect("the headers file's path");
    (body, headers)
}

fn headers_file(path: &Path) -> serde_json::Map<String, Json> {
    let text = std::fs::read_to_string(path).expect("headers file");
    serde_json::from_str(&text).expect("one JSON object")
}

#[tokio::test]
async fn runs_event_saves_payload_files_that_run_reproduces_and_send_delivers_again() {
    let captured = captured().await;
    let dir = captured.dir.path();

    // Printed: the request as it arrived.
    let shown = hookflow(dir)
        .args(["runs", "event", &captured.push[..13]])
        .output()
        .expect("runs event");
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    assert!(shown.starts_with("POST /hooks/gh\n"), "{shown}");
    assert!(shown.contains("\nx-github-event: push\n"), "{shown}");
    assert!(
        shown.ends_with(&text(&fixture("github/push.json"))),
        "{shown}"
    );

    for (id, status) in [(&captured.push, "succeeded"), (&captured.ping, "filtered")] {
        let (body, headers) = save(dir, id, &[]);
        let name = format!("gh-{}", &id[..13]);
        assert_eq!(body, dir.join("saved").join(format!("{name}.json")));
        assert_eq!(
            headers,
            dir.join("saved").join(format!("{name}.headers.json"))
        );
        assert_eq!(
            std::fs::read(&body).expect("body"),
            fixture("github/push.json")
        );
        let saved = headers_file(&headers);
        assert!(saved.contains_key("x-github-delivery"), "{saved:?}");
        assert!(
            !saved
                .keys()
                .any(|k| k.contains("signature") || k == "host" || k == "content-length"),
            "{saved:?}"
        );
        // `run` on the saved files ends as the server's run did.
        let rerun = hookflow(dir)
            .args(["run", "gh", "--payload"])
            .arg(&body)
            .output()
            .expect("hookflow run");
        assert_eq!(summary(&rerun)["status"], status, "{}", text(&rerun.stderr));
        // And `send` delivers them again, as a new delivery.
        let body = body.display().to_string();
        let again = send(
            dir,
            &captured.server.webhook,
            &["gh", &body],
            &[("SEND_GH_SECRET", GH_SECRET)],
        );
        assert!(
            text(&again.stderr).contains("202 Accepted"),
            "{}",
            text(&again.stderr)
        );
        let answer: Json = serde_json::from_slice(&again.stdout).expect("answer");
        let run = finished(
            &captured.server.admin,
            answer["run_ids"][0].as_str().expect("id"),
        )
        .await;
        assert_eq!(run["run"]["status"], status, "{run}");
    }

    // A credential the store masked is not saved, masked or not.
    let (body, headers) = save(dir, &captured.gitlab, &["--name", "gitlab-push"]);
    assert_eq!(body, dir.join("saved/gitlab-push.json"));
    assert_eq!(
        std::fs::read(&body).expect("body"),
        fixture("gitlab/push.json")
    );
    let saved = headers_file(&headers);
    assert_eq!(saved["x-gitlab-event"], "Push Hook");
    assert!(!saved.contains_key("x-gitlab-token"), "{saved:?}");
    let raw = std::fs::read_to_string(&headers).expect("headers");
    assert!(!raw.contains(GITLAB_TOKEN), "{raw}");
    let rerun = hookflow(dir)
        .args(["run", "gitlab", "--payload"])
        .arg(&body)
        .output()
        .expect("hookflow run");
    // The workflow checks the token was masked, which only the server does: filtered here.
    assert_eq!(
        summary(&rerun)["status"],
        "filtered",
        "{}",
        text(&rerun.stderr)
    );

    let missing = hookflow(dir)
        .args(["runs", "event", "ffffffff"])
        .output()
        .expect("runs event");
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no run with id ffffffff"));
}

#[tokio::test]
async fn the_event_page_offers_the_payload_files_for_download() {
    let captured = captured().await;
    let client = crate::support::client();
    let admin = &captured.server.admin;
    let id = &captured.gitlab;
    let name = format!("gitlab-{}", &id[..13]);
    let page = client
        .get(format!("{admin}/ui/runs/{id}/event"))
        .send()
        .await
        .expect("event page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains(&format!("href=\"/ui/runs/{id}/event/payload\""))
            && page.contains(&format!("href=\"/ui/runs/{id}/event/headers\""))
            && page.contains(&format!("{name}.headers.json")),
        "{page}"
    );

    let payload = client
        .get(format!("{admin}/ui/runs/{id}/event/payload"))
        .send()
        .await
        .expect("payload");
    assert_eq!(payload.status(), 200);
    let header = |response: &reqwest::Response, name: &str| {
        response.headers()[name].to_str().expect("ascii").to_owned()
    };
    assert_eq!(
        header(&payload, "content-disposition"),
        format!("attachment; filename=\"{name}.json\"")
    );
    assert_eq!(header(&payload, "content-type"), "application/octet-stream");
    assert_eq!(header(&payload, "x-content-type-options"), "nosniff");
    assert_eq!(
        payload.bytes().await.expect("bytes").to_vec(),
        fixture("gitlab/push.json")
    );

    let headers = client
        .get(format!("{admin}/ui/runs/{id}/event/headers"))
        .send()
        .await
        .expect("headers");
    assert_eq!(headers.status(), 200);
    assert_eq!(
        header(&headers, "content-disposition"),
        format!("attachment; filename=\"{name}.headers.json\"")
    );
    let text = headers.text().await.expect("text");
    let saved: serde_json::Map<String, Json> = serde_json::from_str(&text).expect("JSON object");
    assert_eq!(saved["x-gitlab-event"], "Push Hook");
    assert_eq!(saved["content-type"], "application/json");
    assert!(
        !text.contains(GITLAB_TOKEN) && !saved.contains_key("x-gitlab-token"),
        "{text}"
    );

    let github = client
        .get(format!("{admin}/ui/runs/{}/event/headers", captured.push))
        .send()
        .await
        .expect("headers")
        .text()
        .await
        .expect("text");
    assert!(
        !github.contains("x-hub-signature") && !github.contains(GH_SECRET),
        "{github}"
    );
    let unknown = client
        .get(format!("{admin}/ui/runs/ffffffff/event/payload"))
        .send()
        .await
        .expect("unknown");
    assert_eq!(unknown.status(), 404);
}
