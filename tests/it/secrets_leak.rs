//! A planted secret never shows: two secret values (one from the environment, one from a
//! `--secrets-dir` file) are used in an http step's headers and body, a template, a `log` step,
//! vars, and an error (the receiver answers 500 echoing them). The receiver gets the real values;
//! every surface an operator reads is then searched for them: the server's stdout and stderr,
//! the admin API, `hookflow runs show` (text and JSON), the raw bytes of the SQLite files, and
//! the trace and outcome of `hookflow run` (real and dry).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{Receiver, ServeProcess, client, set_env};

const ENV_SECRET: &str = "env-planted-Zq81xKv3";
const FILE_SECRET: &str = "file-planted-Pw62mRt9";

fn workflow(receiver: &Receiver) -> String {
    format!(
        r#"name: leak
on:
  webhook:
    path: /hooks/leak
secrets: [LEAK_IT_ENV_SECRET, LEAK_IT_FILE_SECRET]
vars:
  combined: "{{{{ secrets.LEAK_IT_ENV_SECRET }}}}:{{{{ secrets.LEAK_IT_FILE_SECRET }}}}"
steps:
  - name: render
    template:
      text: "token={{{{ secrets.LEAK_IT_ENV_SECRET }}}} other={{{{ secrets.LEAK_IT_FILE_SECRET }}}}"
  - name: ok-call
    http:
      url: {ok}
      headers:
        X-Api-Key: "{{{{ secrets.LEAK_IT_ENV_SECRET }}}}"
        X-Other: "{{{{ secrets.LEAK_IT_FILE_SECRET }}}}"
      json: {{ key: "{{{{ secrets.LEAK_IT_ENV_SECRET }}}}", both: "{{{{ vars.combined }}}}", order: "{{{{ event.body.order }}}}" }}
  - name: note
    log: "calling with {{{{ secrets.LEAK_IT_FILE_SECRET }}}} after {{{{ steps.render.output }}}}"
  - name: fail-call
    http:
      method: POST
      url: {fail}
      auth: {{ bearer: "{{{{ secrets.LEAK_IT_FILE_SECRET }}}}" }}
      body: "secret={{{{ secrets.LEAK_IT_ENV_SECRET }}}}"
on_error:
  - name: report
    log: "failed at {{{{ run.failed_step }}}}: {{{{ run.error }}}}"
"#,
        ok = receiver.url("/ok"),
        fail = receiver.url("/fail"),
    )
}

/// Every place the raw values appear in `text`, as `surface: ...context...` lines.
fn leaks(surface: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for secret in [ENV_SECRET, FILE_SECRET] {
        for (at, _) in text.match_indices(secret) {
            let from = text[..at]
                .char_indices()
                .rev()
                .nth(60)
                .map_or(0, |(i, _)| i);
            let to = (at + secret.len() + 60).min(text.len());
            let to = (to..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            found.push(format!("{surface}: ...{}...", &text[from..to]));
        }
    }
    found
}

fn hookflow(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookflow"));
    command.current_dir(dir).env_remove("RUST_LOG");
    command
}

#[tokio::test]
async fn planted_secrets_appear_on_no_surface() {
    set_env("LEAK_IT_ENV_SECRET", ENV_SECRET);
    let receiver = Receiver::start().await;
    // A receiver that answers with what it was sent: the values come back in outputs and errors.
    receiver.reply(
        "/ok",
        200,
        "application/json",
        &format!(r#"{{"echo": "{ENV_SECRET}", "also": "Bearer {FILE_SECRET}"}}"#),
    );
    receiver.reply(
        "/fail",
        500,
        "text/plain",
        &format!("refused token {FILE_SECRET} and secret={ENV_SECRET}"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("LEAK_IT_FILE_SECRET"),
        format!("{FILE_SECRET}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(dir.path().join("workflows/leak.yaml"), workflow(&receiver)).unwrap();
    std::fs::write(dir.path().join("payload.json"), br#"{"order": 42}"#).unwrap();

    let server = ServeProcess::start_with(dir.path(), &["--secrets-dir", "secrets"]);
    let http = client();
    let answer: Json = http
        .post(format!("{}/hooks/leak", server.webhook))
        .header("content-type", "application/json")
        .body(r#"{"order": 42}"#)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("answer");
    let run_id = answer["run_ids"][0].as_str().expect("run id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let detail = loop {
        let detail: Json = http
            .get(format!("{}/api/runs/{run_id}", server.admin))
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("admin json");
        if detail["run"]["status"] == "failed" {
            break detail;
        }
        assert!(Instant::now() < deadline, "the run did not fail: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        detail["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["name"] == "fail-call")),
        "{detail}"
    );
    // The values were really used: the receiver got them.
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].header("x-api-key"), Some(ENV_SECRET));
    assert_eq!(got[0].header("x-other"), Some(FILE_SECRET));
    assert_eq!(got[0].json()["both"], format!("{ENV_SECRET}:{FILE_SECRET}"));
    assert_eq!(
        got[1].header("authorization"),
        Some(format!("Bearer {FILE_SECRET}").as_str())
    );
    assert_eq!(got[1].body, format!("secret={ENV_SECRET}").as_bytes());
    // And the records still say what happened, masked.
    let steps = detail["steps"].as_array().expect("steps");
    let fail = steps
        .iter()
        .find(|s| s["name"] == "fail-call")
        .expect("fail-call");
    assert_eq!(
        fail["error"].as_str().unwrap(),
        format!(
            "POST {} answered 500: refused token *** and secret=***",
            receiver.url("/fail")
        ),
        "{detail}"
    );

    let mut found = Vec::new();
    found.extend(leaks("admin /api/runs/{id}", &detail.to_string()));
    let list = http
        .get(format!("{}/api/runs", server.admin))
        .send()
        .await
        .expect("admin list")
        .text()
        .await
        .unwrap();
    found.extend(leaks("admin /api/runs", &list));
    let store = dir.path().join("hookflow.db");
    for args in [
        vec!["show", &run_id, "--json"],
        vec!["show", &run_id],
        vec!["list"],
    ] {
        let output = hookflow(dir.path())
            .arg("runs")
            .args(&args)
            .arg("--store")
            .arg(&store)
            .output()
            .expect("runs");
        assert!(output.status.success(), "{output:?}");
        let surface = format!("hookflow runs {}", args.join(" "));
        found.extend(leaks(&surface, &String::from_utf8_lossy(&output.stdout)));
        found.extend(leaks(&surface, &String::from_utf8_lossy(&output.stderr)));
    }

    let mut log = server.startup.clone();
    let (_, rest) = server.terminate();
    log.extend(rest);
    assert!(
        log.iter()
            .any(|l| l.contains("calling with *** after token=***")),
        "the log step's line is not in the server log: {log:#?}"
    );
    found.extend(leaks("server log", &log.join("\n")));
    // The raw database files, write-ahead log included.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("hookflow.db") {
            let bytes = std::fs::read(&path).unwrap();
            found.extend(leaks(&name, &String::from_utf8_lossy(&bytes)));
        }
    }

    for dry in [false, true] {
        let mut command = hookflow(dir.path());
        command
            .args(["run", "workflows/leak.yaml", "--payload", "payload.json"])
            .args(["--secrets-dir", "secrets"]);
        if dry {
            command.arg("--dry-run");
        }
        let output = tokio::task::spawn_blocking(move || command.output().expect("run"))
            .await
            .unwrap();
        let surface = if dry { "run --dry-run" } else { "run" };
        let trace = String::from_utf8_lossy(&output.stderr);
        assert!(trace.contains("***"), "{surface}: nothing masked?\n{trace}");
        found.extend(leaks(&format!("{surface} trace"), &trace));
        found.extend(leaks(
            &format!("{surface} outcome"),
            &String::from_utf8_lossy(&output.stdout),
        ));
    }
    assert!(
        found.is_empty(),
        "secret values leaked:\n{}",
        found.join("\n")
    );
}
