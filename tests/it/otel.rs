//! OpenTelemetry traces from the real binary to a real OTLP/HTTP receiver on loopback
//! (`tests/otel/receiver.py`, which decodes with Python's opentelemetry-proto): a sender's
//! `traceparent` is the parent of the request's span, the run's span is its child, the steps'
//! spans the run's, an `http` step's target gets the step's span as `traceparent`, a run that
//! waits across a restart joins the same trace, no secret is in any span, and without an
//! endpoint nothing is sent at all.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::support::{Receiver, ServeProcess, client};

const SECRET: &str = "otel-planted-Vb27qLx9";
const SENDER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

/// The Python receiver, killed when dropped; its spans are JSON lines in `out`.
struct OtlpReceiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl OtlpReceiver {
    /// `None` (the test skipped) when python3 lacks opentelemetry-proto, except under CI.
    fn start(dir: &Path, test: &str) -> Option<Self> {
        let found = Command::new("python3")
            .args(["-c", "import opentelemetry.proto"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            crate::support::skip(
                test,
                "needs python3 with opentelemetry-proto: pip install opentelemetry-proto (.ci/run installs it)",
            );
            return None;
        }
        let out = dir.join("spans.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otel/receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/otel/receiver.py");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("the receiver's port");
        let port = first.trim().parse().expect("a port number");
        Some(Self { child, port, out })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every line written so far.
    fn lines(&self) -> Vec<Json> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    fn spans(&self) -> Vec<Json> {
        let lines = self.lines();
        let errors: Vec<&Json> = lines.iter().filter(|l| l.get("error").is_some()).collect();
        assert!(errors.is_empty(), "bodies that do not decode: {errors:?}");
        lines
            .into_iter()
            .filter(|l| l.get("span_id").is_some())
            .collect()
    }

    /// Wait until a span named `name` arrived, and answer every span then.
    async fn wait_for_span(&self, name: &str) -> Vec<Json> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if spans.iter().any(|s| s["name"] == name) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "no span '{name}' arrived: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named<'a>(spans: &'a [Json], name: &str) -> Vec<&'a Json> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn one<'a>(spans: &'a [Json], name: &str) -> &'a Json {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one span '{name}' in {spans:#?}");
    found[0]
}

fn workflows(dir: &Path, receiver: &Receiver) {
    let folder = dir.join("workflows");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("traced.yaml"),
        format!(
            r#"name: traced
on:
  webhook:
    path: /hooks/traced
secrets: [OTEL_IT_SECRET]
steps:
  - name: shape
    set: {{ order: "{{{{ event.body.order }}}}" }}
  - name: call
    http:
      url: "{call}?token={{{{ secrets.OTEL_IT_SECRET }}}}"
      headers:
        X-Api-Key: "{{{{ secrets.OTEL_IT_SECRET }}}}"
"#,
            call = receiver.url("/called"),
        ),
    )
    .unwrap();
    std::fs::write(
        folder.join("waits.yaml"),
        format!(
            r#"name: waits
on:
  webhook:
    path: /hooks/waits
steps:
  - name: pause
    delay: 2s
  - name: after
    http:
      url: "{after}"
"#,
            after = receiver.url("/after"),
        ),
    )
    .unwrap();
}

async fn post(server: &ServeProcess, path: &str, traceparent: Option<&str>) -> String {
    let mut request = client()
        .post(format!("{}{path}", server.webhook))
        .header("content-type", "application/json")
        .body(r#"{"order": 42}"#);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let answer: Json = request
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("answer");
    answer["run_ids"][0].as_str().expect("a run id").to_owned()
}

async fn finished(server: &ServeProcess, run_id: &str) -> Json {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let detail: Json = client()
            .get(format!("{}/api/runs/{run_id}", server.admin))
            .send()
            .await
            .expect("admin")
            .json()
            .await
            .expect("admin json");
        if detail["run"]["status"] == "succeeded" {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not succeed: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_link_the_senders_trace_the_run_and_its_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(otlp) = OtlpReceiver::start(dir.path(), "otel::spans_link") else {
        return;
    };
    let receiver = Receiver::start().await;
    workflows(dir.path(), &receiver);
    let endpoint = otlp.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "hookflow-it"),
        ("OTEL_IT_SECRET", SECRET),
    ];
    let server = ServeProcess::start_with_env(dir.path(), &[], &env);
    let sender = format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01");
    let run_id = post(&server, "/hooks/traced", Some(&sender)).await;
    finished(&server, &run_id).await;
    otlp.wait_for_span("run traced").await;
    // Read again: the file only grows, and the steps' spans went out before the run's.
    let spans = otlp.wait_for_span("call").await;

    // The request: the sender's span is its parent, in the sender's trace.
    let request = one(&spans, "POST /hooks/traced");
    assert_eq!(request["path"], "/v1/traces");
    assert_eq!(request["content_type"], "application/x-protobuf");
    assert_eq!(request["resource"]["service.name"], "hookflow-it");
    assert_eq!(request["scope"], "hookflow");
    assert_eq!(request["kind"], 2, "SERVER");
    assert_eq!(request["trace_id"], SENDER_TRACE);
    assert_eq!(request["parent_span_id"], SENDER_SPAN);
    assert_eq!(request["attributes"]["http.request.method"], "POST");
    assert_eq!(request["attributes"]["url.path"], "/hooks/traced");
    assert_eq!(request["attributes"]["http.route"], "/hooks/traced");
    assert_eq!(request["attributes"]["hookflow.workflow"], "traced");
    let answered = request["attributes"]["http.response.status_code"]
        .as_i64()
        .expect("a status code");
    assert!((200..300).contains(&answered), "{request}");
    assert!(request["end"].as_u64() >= request["start"].as_u64());

    // The run: the request's child.
    let run = one(&spans, "run traced");
    assert_eq!(run["trace_id"], SENDER_TRACE);
    assert_eq!(run["parent_span_id"], request["span_id"]);
    assert_eq!(run["kind"], 1, "INTERNAL");
    assert_eq!(run["attributes"]["hookflow.run_id"], run_id.as_str());
    assert_eq!(run["attributes"]["hookflow.workflow"], "traced");
    assert_eq!(run["attributes"]["hookflow.status"], "succeeded");
    assert_eq!(run["status"], 0, "UNSET");

    // The steps: the run's children, with their kind, attempt and status.
    let shape = one(&spans, "shape");
    let call = one(&spans, "call");
    for step in [shape, call] {
        assert_eq!(step["trace_id"], SENDER_TRACE);
        assert_eq!(step["parent_span_id"], run["span_id"], "{step}");
        assert_eq!(step["attributes"]["hookflow.attempt"], 1);
        assert_eq!(step["attributes"]["hookflow.status"], "succeeded");
        assert_eq!(step["attributes"]["hookflow.run_id"], run_id.as_str());
    }
    assert_eq!(shape["attributes"]["hookflow.step.kind"], "set");
    assert_eq!(shape["kind"], 1, "INTERNAL");
    assert_eq!(call["attributes"]["hookflow.step.kind"], "http");
    assert_eq!(call["kind"], 3, "CLIENT");
    assert_eq!(call["attributes"]["hookflow.step"], "call");
    assert_eq!(call["attributes"]["http.request.method"], "GET");
    assert_eq!(call["attributes"]["http.response.status_code"], 200);
    assert_eq!(call["attributes"]["server.address"], "127.0.0.1");

    // The http step's target got the step's span as its parent, in the same trace.
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].header("traceparent"),
        Some(format!("00-{SENDER_TRACE}-{}-01", call["span_id"].as_str().unwrap()).as_str())
    );
    assert_eq!(
        got[0].header("x-api-key"),
        Some(SECRET),
        "the secret was used"
    );

    // The secret was in the step's URL and a header: it is in no span, decoded or raw.
    let everything = std::fs::read_to_string(&otlp.out).expect("spans file");
    assert!(!everything.contains(SECRET), "a secret was exported");
    assert!(
        !everything.contains("token="),
        "a query string was exported"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_resumed_after_a_restart_joins_the_requests_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(otlp) = OtlpReceiver::start(dir.path(), "otel::resumed") else {
        return;
    };
    let receiver = Receiver::start().await;
    workflows(dir.path(), &receiver);
    let endpoint = otlp.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_IT_SECRET", SECRET),
    ];
    let first = ServeProcess::start_with_env(dir.path(), &[], &env);
    let sender = format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01");
    let run_id = post(&first, "/hooks/waits", Some(&sender)).await;
    // The request's span is out, and the run waits in its delay when the process stops.
    let spans = otlp.wait_for_span("POST /hooks/waits").await;
    let request = one(&spans, "POST /hooks/waits").clone();
    assert_eq!(request["resource"]["service.name"], "hookflow");
    let (status, _) = first.terminate();
    assert!(status.success());
    assert!(
        receiver.received().is_empty(),
        "the run went on before the restart"
    );

    let second = ServeProcess::start_with_env(dir.path(), &[], &env);
    finished(&second, &run_id).await;
    otlp.wait_for_span("run waits").await;
    let spans = otlp.wait_for_span("after").await;
    let run = one(&spans, "run waits");
    assert_eq!(run["trace_id"], SENDER_TRACE);
    assert_eq!(run["parent_span_id"], request["span_id"]);
    assert_eq!(run["attributes"]["hookflow.run_id"], run_id.as_str());
    // The delay's spans from both processes (waiting, then done) and the call after it.
    let pauses = named(&spans, "pause");
    assert!(pauses.len() >= 2, "{spans:#?}");
    for step in pauses.iter().copied().chain([one(&spans, "after")]) {
        assert_eq!(step["trace_id"], SENDER_TRACE);
        assert_eq!(step["parent_span_id"], run["span_id"], "{step}");
    }
    assert!(
        pauses
            .iter()
            .any(|p| p["attributes"]["hookflow.status"] == "retrying")
    );
    let after = one(&spans, "after");
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].header("traceparent"),
        Some(
            format!(
                "00-{SENDER_TRACE}-{}-01",
                after["span_id"].as_str().unwrap()
            )
            .as_str()
        )
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_nothing_is_recorded_or_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(otlp) = OtlpReceiver::start(dir.path(), "otel::off") else {
        return;
    };
    let receiver = Receiver::start().await;
    workflows(dir.path(), &receiver);
    let server = ServeProcess::start_with_env(dir.path(), &[], &[("OTEL_IT_SECRET", SECRET)]);
    let sender = format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01");
    let run_id = post(&server, "/hooks/traced", Some(&sender)).await;
    finished(&server, &run_id).await;
    let got = receiver.wait_for(1).await;
    // No span, so nothing to pass on: the target sees no traceparent.
    assert_eq!(got[0].header("traceparent"), None);
    let (status, _) = server.terminate();
    assert!(status.success());
    // Past the exporter's batching delay and the shutdown: the receiver was never called.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(otlp.lines().is_empty(), "{:?}", otlp.lines());
    // Its port was reachable all along: an exporter would have got through.
    assert!(std::net::TcpStream::connect(("127.0.0.1", otlp.port)).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsampled_senders_trace_is_passed_on_and_not_exported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(otlp) = OtlpReceiver::start(dir.path(), "otel::unsampled") else {
        return;
    };
    let receiver = Receiver::start().await;
    workflows(dir.path(), &receiver);
    let endpoint = otlp.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_IT_SECRET", SECRET),
    ];
    let server = ServeProcess::start_with_env(dir.path(), &[], &env);
    let unsampled = format!("00-{SENDER_TRACE}-{SENDER_SPAN}-00");
    let run_id = post(&server, "/hooks/traced", Some(&unsampled)).await;
    finished(&server, &run_id).await;
    let got = receiver.wait_for(1).await;
    let sent = got[0].header("traceparent").expect("a traceparent");
    assert!(
        sent.starts_with(&format!("00-{SENDER_TRACE}-")) && sent.ends_with("-00"),
        "{sent}"
    );
    // A malformed traceparent is no parent: that request's spans are a trace of their own.
    let malformed = format!("00-{}-{SENDER_SPAN}-01", "0".repeat(32));
    let run_id = post(&server, "/hooks/traced", Some(&malformed)).await;
    finished(&server, &run_id).await;
    let spans = otlp.wait_for_span("run traced").await;
    assert!(
        spans.iter().all(|s| s["trace_id"] != SENDER_TRACE),
        "the unsampled trace was exported: {spans:#?}"
    );
    let request = one(&spans, "POST /hooks/traced");
    assert_eq!(request["parent_span_id"], "", "{request}");
    assert_eq!(one(&spans, "run traced")["trace_id"], request["trace_id"]);
}
