//! The server's log as JSON lines (`--log-format json`): one line per request and per finished
//! run, step lines inside the run's span, and secrets masked.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{Receiver, client};

const SECRET: &str = "s3cr3t-logs-value-9f2";

// Multi-threaded: this test blocks a thread reading the log while the receiver answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_a_line_per_request_and_run_with_the_run_id_on_every_step_line() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(
        dir.path().join("workflows/logged.yaml"),
        format!(
            r#"
name: logged
secrets: [LOGS_TEST_TOKEN]
on: {{ webhook: {{ path: /hooks/logged }} }}
steps:
  - name: say
    log: "calling with {{{{ secrets.LOGS_TEST_TOKEN }}}} for {{{{ event.body.who }}}}"
  - name: call
    http:
      url: "{}"
      auth: {{ bearer: "{{{{ secrets.LOGS_TEST_TOKEN }}}}" }}
"#,
            receiver.url("/logged")
        ),
    )
    .expect("workflow");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("LOGS_TEST_TOKEN", SECRET)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<Json> = Vec::new();
    let next_line = |seen: &mut Vec<Json>, deadline: Instant| -> Json {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the log stopped; so far: {seen:#?}"));
        assert!(!line.contains(SECRET), "a secret in the log: {line}");
        let parsed: Json =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        seen.push(parsed.clone());
        parsed
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let webhook = loop {
        let line = next_line(&mut seen, deadline);
        if line["message"] == "hookflow is serving" {
            break format!("http://{}", line["webhook_addr"].as_str().expect("address"));
        }
    };
    let answer: Json = client()
        .post(format!("{webhook}/hooks/logged"))
        .header("content-type", "application/json")
        .body(r#"{"who": "ops"}"#)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let run_id = answer["run_ids"][0].as_str().expect("run id").to_owned();
    let finished = loop {
        let line = next_line(&mut seen, deadline);
        if line["message"] == "run finished" {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();

    let request = seen
        .iter()
        .find(|l| l["message"] == "request")
        .expect("a request line");
    assert_eq!(request["route"], "/hooks/logged");
    assert_eq!(request["path"], "/hooks/logged");
    assert_eq!(request["method"], "POST");
    assert_eq!(request["status"], 202);
    assert_eq!(request["run_ids"], run_id.as_str());
    assert!(request["latency_ms"].is_number(), "{request}");

    assert_eq!(finished["status"], "succeeded");
    assert!(finished["duration_ms"].is_number(), "{finished}");
    assert_eq!(finished["span"]["run_id"], run_id.as_str());
    assert_eq!(finished["span"]["workflow"], "logged");

    let steps: Vec<&Json> = seen
        .iter()
        .filter(|l| l["message"] == "step finished")
        .collect();
    assert_eq!(steps.len(), 2, "{seen:#?}");
    for (line, name) in steps.iter().zip(["say", "call"]) {
        assert_eq!(line["step"], name);
        assert_eq!(line["span"]["name"], "step");
        assert_eq!(line["span"]["step"], name);
        assert_eq!(line["spans"][0]["name"], "run");
        assert_eq!(line["spans"][0]["run_id"], run_id.as_str());
    }
    // The `log` step's line: in the run's span, the secret masked.
    let said = seen
        .iter()
        .find(|l| l["target"] == "hookflow::log")
        .expect("the log step's line");
    assert_eq!(said["message"], "calling with *** for ops");
    assert_eq!(said["spans"][0]["run_id"], run_id.as_str());
    // The secret did reach the receiver: it was masked in the log, not missing.
    let received = receiver.wait_for(1).await;
    assert_eq!(
        received[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
}
