//! Template mistakes as the real binary reports them: unknown filters, tests, functions and
//! Python methods at load (`validate`), the missing path named in undefined-value errors at run
//! time (the `run` trace), and text that never holds Python's `None` or `True`.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::Receiver;

fn hookflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
}

fn run(workflow: &Path, payload: &str) -> Output {
    let dir = workflow.parent().expect("dir");
    let payload_file = dir.join("payload.json");
    std::fs::write(&payload_file, payload).expect("write payload");
    hookflow()
        .arg("run")
        .arg(workflow)
        .arg("--payload")
        .arg(&payload_file)
        .output()
        .expect("run hookflow run")
}

const MISTAKES: &str = r#"name: mistakes
on:
  webhook:
    path: /hooks/mistakes
steps:
  - name: greet
    log: "hello {{ event.body.name | defualt('you') }}"
  - name: named
    if: event.body.name is defnied
    log: "named"
  - name: count
    template: "{% for i in rang(3) %}{{ i }}{% endfor %}"
  - name: first-line
    log: "{{ event.body.text.split('\n') | first }}"
"#;

#[test]
fn validate_places_unknown_names_and_says_what_to_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = dir.path().join("mistakes.yaml");
    std::fs::write(&workflow, MISTAKES).expect("write");
    let output = hookflow()
        .arg("validate")
        .arg("mistakes.yaml")
        .current_dir(dir.path())
        .output()
        .expect("validate");
    assert_eq!(output.status.code(), Some(1));
    let report = String::from_utf8_lossy(&output.stdout);
    let expected = [
        (
            "mistakes.yaml:7:38: error: unknown filter `defualt`",
            "= hint: did you mean `default`?",
        ),
        (
            "mistakes.yaml:9:28: error: unknown test `defnied`",
            "= hint: did you mean `defined`?",
        ),
        (
            "mistakes.yaml:12:28: error: unknown function `rang`",
            "= hint: did you mean `range`?",
        ),
        (
            "mistakes.yaml:14:30: error: unknown method `split`: values in templates have no methods",
            "= hint: write `event.body.text | split('\\n')`; `| lines` splits at line breaks",
        ),
    ];
    for (error, hint) in expected {
        let at = report
            .find(error)
            .unwrap_or_else(|| panic!("missing {error:?} in\n{report}"));
        let next_hint = report[at..].find("= hint:").map(|h| at + h);
        assert!(
            next_hint.is_some_and(|h| report[h..].starts_with(hint)),
            "{error}: expected {hint:?} in\n{report}"
        );
    }
    // A called name is a function, not also an unknown variable.
    assert!(!report.contains("unknown variable 'rang'"), "{report}");
    assert!(
        report.contains("failed: 4 error(s), 0 warning(s)"),
        "{report}"
    );
}

const MISSING: &str = r#"name: missing-fields
on:
  webhook:
    path: /hooks/missing
steps:
  - name: text
    continue_on_error: true
    template: |
      Order {{ event.body.id }}
      for {{ event.body.x.y }}
  - name: note
    continue_on_error: true
    log: "shipping to {{ event.body.x.y | upper }}"
  - name: only-paid
    continue_on_error: true
    filter: event.body.x.y == 'paid'
  - name: guarded
    continue_on_error: true
    if: event.body.x.y
    log: "never"
"#;

/// The error line of each step in a `run` trace, by step name.
fn step_errors(trace: &str) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let mut step = String::new();
    for line in trace.lines() {
        if let Some(rest) = line.strip_prefix('[') {
            step = rest
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
        } else if let Some(error) = line.trim_start().strip_prefix("error  ") {
            errors.push((step.clone(), error.to_owned()));
        }
    }
    errors
}

#[test]
fn run_names_the_missing_path_in_text_log_filter_and_if() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = dir.path().join("missing.yaml");
    std::fs::write(&workflow, MISSING).expect("write");

    // `event.body.x` is there, without `y`.
    let output = run(&workflow, r#"{"id": 7, "x": {}}"#);
    let trace = String::from_utf8_lossy(&output.stderr);
    let errors = step_errors(&trace);
    let names: Vec<&str> = errors.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["text", "note", "only-paid", "guarded"], "{trace}");
    let missing = "undefined value: `event.body.x.y` does not exist (test it with `is defined`, or add `| default(...)`)";
    for (step, error) in &errors {
        assert!(error.contains(missing), "{step}: {error}");
    }
    assert!(errors[0].1.ends_with("(template line 2)"), "{trace}");
    assert!(errors[3].1.starts_with("`if`: "), "{trace}");

    // `event.body.x` itself is missing: the path read and the part missing are both named.
    let output = run(&workflow, r#"{"id": 7}"#);
    let trace = String::from_utf8_lossy(&output.stderr);
    let errors = step_errors(&trace);
    assert_eq!(errors.len(), 4, "{trace}");
    let parent = "undefined value: `event.body.x.y` cannot be read: `event.body.x` does not exist (test `event.body.x is defined` first)";
    for (step, error) in &errors {
        assert!(error.contains(parent), "{step}: {error}");
    }
}

#[test]
fn a_run_that_fails_on_a_missing_path_names_it_in_its_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = dir.path().join("strict.yaml");
    std::fs::write(
        &workflow,
        "on: { webhook: { path: /hooks/strict } }\nsteps:\n  - name: say\n    log: \"{{ event.body['order-id'] }} shipped\"\n",
    )
    .expect("write");
    let output = run(&workflow, r#"{"id": 1}"#);
    assert_eq!(output.status.code(), Some(1));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        outcome["error"],
        "step 'say' failed: undefined value: `event.body['order-id']` does not exist (test it with `is defined`, or add `| default(...)`)"
    );
}

/// A null, a boolean and a list reach a log line, a URL and headers as JSON writes them.
#[tokio::test]
async fn text_never_holds_python_words() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let workflow = dir.path().join("words.yaml");
    std::fs::write(
        &workflow,
        format!(
            r#"on: {{ webhook: {{ path: /hooks/words }} }}
steps:
  - name: nothing
    log: "{{{{ event.body.none }}}}"
  - name: line
    log: "draft={{{{ event.body.draft }}}} labels={{{{ event.body.labels }}}} none={{{{ event.body.none }}}} text={{{{ event.body.draft | string }}}} joined={{{{ event.body.labels | join('/') }}}}"
  - name: post
    http:
      method: POST
      url: "{url}/flags/{{{{ event.body.draft }}}}?merged={{{{ event.body.merged }}}}"
      headers:
        X-Labels: "{{{{ event.body.labels }}}}"
        X-Draft: "{{{{ event.body.draft }}}}"
      json:
        summary: "{{{{ event.body.none }}}} {{{{ event.body.merged }}}}"
"#,
            url = receiver.url("")
        ),
    )
    .expect("write");
    let payload =
        r#"{"draft": true, "merged": false, "labels": ["bug", null, true], "none": null}"#;
    let output = tokio::task::spawn_blocking(move || run(&workflow, payload))
        .await
        .expect("join");
    let trace = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{trace}");
    assert!(trace.contains(r#""message": """#), "{trace}");
    assert!(
        trace.contains(
            r#""message": "draft=true labels=[\"bug\",null,true] none= text=true joined=bug//true""#
        ),
        "{trace}"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].uri, "/flags/true?merged=false");
    assert_eq!(received[0].header("x-labels"), Some(r#"["bug",null,true]"#));
    assert_eq!(received[0].header("x-draft"), Some("true"));
    assert_eq!(received[0].json()["summary"], " false");
    for words in ["None", "True", "False"] {
        assert!(!trace.contains(words), "{words} in {trace}");
    }
}
