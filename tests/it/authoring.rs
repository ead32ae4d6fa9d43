//! The authoring kit through the real binary: `hookflow test` (stubs, the virtual clock,
//! expectations, reports, JUnit XML, mistakes in test files) and dry runs whose effects answer
//! like the real services, or as a `--stub` file says.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

fn hookflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
}

/// Runs `hookflow <args>` in `dir`: exit code and stdout + stderr.
fn run_in(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = hookflow()
        .args(args)
        .current_dir(dir)
        .env_remove("HOOKFLOW_CONFIG")
        .output()
        .expect("hookflow");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

const NOTIFY: &str = r#"
name: notify
on: { webhook: { path: /hooks/notify } }
steps:
  - name: notify
    retry: { attempts: 5, initial: 10m, max: 1h }
    http:
      method: POST
      url: https://chat.example.test/messages
      json: { text: "order {{ event.body.id }}" }
  - name: cool-down
    delay: 2h
  - name: done
    log: "sent with status {{ steps.notify.status }}"
"#;

#[test]
fn an_effect_without_a_stub_fails_its_case_naming_the_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "notify.yaml", NOTIFY);
    write(
        dir.path(),
        "notify.test.yaml",
        "workflow: notify\ncases:\n  - name: no stub\n    webhook: { body: { id: 7 } }\n    expect: { status: succeeded }\n",
    );
    let (code, output) = run_in(dir.path(), &["test", "."]);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("test no stub ... FAILED"), "{output}");
    assert!(
        output.contains("no stub answers step 'notify' (POST https://chat.example.test/messages)"),
        "{output}"
    );
    assert!(
        output.contains("test result: FAILED. 0 passed, 1 failed"),
        "{output}"
    );

    // A file that allows default stubs answers like a dry run: 200 {}.
    write(
        dir.path(),
        "notify.test.yaml",
        "workflow: notify\ndefault_stubs: true\ncases:\n  - name: default stub\n    webhook: { body: { id: 7 } }\n    expect:\n      status: succeeded\n      steps: { done: { output: { message: sent with status 200 } } }\n",
    );
    let (code, output) = run_in(dir.path(), &["test"]);
    assert_eq!(code, Some(2), "no ./workflows here: {output}");
    assert!(output.contains("./workflows does not exist"), "{output}");
    let (code, output) = run_in(dir.path(), &["test", "notify.test.yaml"]);
    assert_eq!(code, Some(0), "{output}");
}

#[test]
fn retries_and_delays_pass_on_a_virtual_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "notify.yaml", NOTIFY);
    // Four 503s ten minutes to an hour apart, then a two-hour delay: hours of waiting that a
    // virtual clock passes at once.
    write(
        dir.path(),
        "notify.test.yaml",
        r#"workflow: notify
cases:
  - name: the fifth attempt gets through
    at: 2026-03-01T12:00:00Z
    webhook: { body: { id: 7 } }
    stubs:
      - url: "https://chat.example.test/*"
        method: POST
        http: [{ status: 503 }, { status: 503 }, { status: 503 }, { status: 503 }, { status: 201, body: { ok: true } }]
    expect:
      status: succeeded
      ran: [notify, cool-down, done]
      steps:
        notify:
          status: succeeded
          attempts: 5
          calls: 5
          input: { method: POST, body: { text: order 7 } }
          output: { status: 201, body: { ok: true } }
        done: { output: { message: sent with status 201 } }
  - name: five 503s fail the run
    webhook: { body: { id: 8 } }
    stubs:
      - step: notify
        http: { status: 503 }
    expect:
      status: failed
      not_ran: [cool-down, done]
      steps:
        notify: { status: failed, attempts: 5, calls: 5, error: "503" }
"#,
    );
    let (code, output) = run_in(dir.path(), &["test", "."]);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("test the fifth attempt gets through ... ok"),
        "{output}"
    );
    assert!(
        output.contains("test five 503s fail the run ... ok"),
        "{output}"
    );
    assert!(
        output.contains("test result: ok. 2 passed, 0 failed"),
        "{output}"
    );
}

#[test]
fn a_sync_answer_a_schedule_and_a_manual_start_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "check.yaml",
        r#"name: check
on: { webhook: { path: "/hooks/{tenant}/check", respond: sync } }
steps:
  - name: answer
    respond:
      status: "{{ 200 if event.body.ok else 422 }}"
      body: { tenant: "{{ event.params.tenant }}", ok: "{{ event.body.ok }}" }
"#,
    );
    write(
        dir.path(),
        "nightly.yaml",
        "name: nightly\non: { schedule: { cron: \"0 3 * * *\" } }\nsteps:\n  - name: when\n    log: \"tick {{ event.scheduled_at }} by {{ event.trigger }}\"\n",
    );
    write(
        dir.path(),
        "checks.test.yaml",
        r#"workflow: check
cases:
  - name: a good request is answered 200
    webhook: { body: { ok: true }, path: /hooks/acme/check }
    expect:
      status: succeeded
      response: { status: 200, body: { tenant: acme, ok: true } }
  - name: a bad request is answered 422
    webhook: { body: { ok: false }, path: /hooks/acme/check }
    expect:
      response: { status: 200 }
"#,
    );
    write(
        dir.path(),
        "nightly.test.yaml",
        r#"workflow: nightly
cases:
  - name: a tick
    at: 2026-03-01T03:00:00Z
    schedule:
    expect:
      steps: { when: { output: { message: { $contains: "by schedule" } } } }
  - name: by hand
    manual: { body: { reason: test } }
    expect:
      steps: { when: { output: { message: { $contains: "by manual" } } } }
"#,
    );
    let (code, output) = run_in(dir.path(), &["test", "."]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("test a good request is answered 200 ... ok"),
        "{output}"
    );
    assert!(output.contains("test a tick ... ok"), "{output}");
    assert!(output.contains("test by hand ... ok"), "{output}");
    // The wrong expectation is shown where it is written, expected against actual.
    assert!(
        output.contains("checks.test.yaml:11:27: response.status\n  - 200\n  + 422"),
        "{output}"
    );
    assert!(
        output.contains("test result: FAILED. 3 passed, 1 failed"),
        "{output}"
    );

    // --filter runs only the matching cases.
    let (code, output) = run_in(dir.path(), &["test", ".", "--filter", "good"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("test result: ok. 1 passed, 0 failed"),
        "{output}"
    );
}

#[test]
fn mistakes_in_a_test_file_are_reported_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "notify.yaml", NOTIFY);
    write(
        dir.path(),
        "notify.test.yaml",
        "workflow: notfiy\ncases:\n  - name: typo\n    webhook: { body: {} }\n    expcet: { status: succeeded }\n    stubs:\n      - step: notify\n        http: { status: 2000 }\n",
    );
    let (code, output) = run_in(dir.path(), &["test", "."]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("notify.test.yaml:5:5: error: unknown key `expcet` in a case"),
        "{output}"
    );
    assert!(output.contains("did you mean `expect`?"), "{output}");
    assert!(
        output.contains("notify.test.yaml:8:25: error: `status` is an HTTP status, 100 to 599"),
        "{output}"
    );

    // The file reads; the workflow's name is misspelled.
    write(
        dir.path(),
        "notify.test.yaml",
        "workflow: notfiy\ncases:\n  - name: typo\n    webhook: { body: {} }\n",
    );
    let (code, output) = run_in(dir.path(), &["test", "."]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains("notify.test.yaml:1:11: error: no workflow 'notfiy'"),
        "{output}"
    );
    assert!(output.contains("did you mean 'notify'?"), "{output}");
}

#[test]
fn junit_xml_holds_every_case_and_each_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "notify.yaml", NOTIFY);
    write(
        dir.path(),
        "notify.test.yaml",
        r#"workflow: notify
cases:
  - name: passes <ok>
    webhook: { body: { id: 1 } }
    stubs: [{ step: notify, http: { status: 200 } }]
    expect: { status: succeeded }
  - name: fails & says why
    webhook: { body: { id: 1 } }
    stubs: [{ step: notify, http: { status: 200 } }]
    expect: { steps: { notify: { input: { body: { text: order 2 } } } } }
"#,
    );
    let (code, output) = run_in(dir.path(), &["test", ".", "--junit", "report.xml"]);
    assert_eq!(code, Some(1), "{output}");
    let xml = std::fs::read_to_string(dir.path().join("report.xml")).expect("report.xml");
    // A real XML parser reads it: the escaping holds.
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); \
             print([(c.getAttribute('name'), len(c.getElementsByTagName('failure'))) for c in d.getElementsByTagName('testcase')])",
            "report.xml",
        ])
        .current_dir(dir.path())
        .output()
        .expect("python3");
    let cases = String::from_utf8_lossy(&parsed.stdout);
    assert!(
        parsed.status.success(),
        "{xml}\n{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert_eq!(
        cases.trim(),
        "[('passes <ok>', 0), ('fails & says why', 1)]",
        "{xml}"
    );
    assert!(
        xml.contains("<testsuites name=\"hookflow\" tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    assert!(xml.contains("steps.notify.input.body.text"), "{xml}");
    assert!(
        xml.contains("  - &quot;order 2&quot;\n  + &quot;order 1&quot;"),
        "{xml}"
    );
}

const BUILD: &str = r#"
name: build
on: { webhook: { path: /hooks/build } }
secrets: [GITLAB_TOKEN]
steps:
  - name: build
    retry: { attempts: 3, initial: 1h, max: 1h }
    ci:
      gitlab:
        base_url: https://gitlab.example.test
        project: acme/app
        ref: main
        token: "{{ secrets.GITLAB_TOKEN }}"
  - name: announce
    log: "pipeline {{ steps.build.id }} at {{ steps.build.web_url }}"
"#;

/// `hookflow run --dry-run` of `BUILD` with `extra` arguments: exit code, outcome, trace.
fn dry_run_build(extra: &[&str]) -> (Option<i32>, Json, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "build.yaml", BUILD);
    write(
        dir.path(),
        "stub.yaml",
        "http:\n  - { status: 500 }\n  - { status: 201, body: { id: 4711, web_url: \"https://gitlab.example.test/acme/app/-/pipelines/4711\" } }\n",
    );
    let output = hookflow()
        .args(["run", "build.yaml", "--dry-run"])
        .args(extra)
        .current_dir(dir.path())
        .env("GITLAB_TOKEN", "glptt-secret-value")
        .env_remove("HOOKFLOW_CONFIG")
        .output()
        .expect("hookflow run");
    let outcome = serde_json::from_slice(&output.stdout).unwrap_or(Json::Null);
    let trace = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), outcome, trace)
}

#[test]
fn a_dry_run_answers_like_the_provider_so_later_steps_render() {
    let (code, outcome, trace) = dry_run_build(&[]);
    assert_eq!(code, Some(0), "{trace}");
    assert_eq!(outcome["status"], "succeeded", "{trace}");
    assert!(
        trace.contains(
            "\"message\": \"pipeline 1 at https://gitlab.example.test/acme/app/-/pipelines/1\""
        ),
        "{trace}"
    );
    assert!(
        trace.contains("answer a sample of the real answer (nothing was sent)"),
        "{trace}"
    );
    assert!(!trace.contains("glptt-secret-value"), "{trace}");
}

#[test]
fn a_dry_run_stub_file_answers_a_step_in_turn() {
    let (code, outcome, trace) = dry_run_build(&["--stub", "build=stub.yaml"]);
    // The first answer, a 500, is retried an hour later: a dry run does not wait for it.
    assert_eq!(code, Some(0), "{trace}");
    assert_eq!(outcome["status"], "succeeded", "{trace}");
    assert!(trace.contains("gitlab: 500"), "{trace}");
    assert!(trace.contains("(a dry run does not wait)"), "{trace}");
    assert!(
        trace.contains("\"message\": \"pipeline 4711 at https://gitlab.example.test/acme/app/-/pipelines/4711\""),
        "{trace}"
    );
    assert!(
        trace.contains("answer the stub in stub.yaml (nothing was sent)"),
        "{trace}"
    );

    let (code, _, trace) = dry_run_build(&["--stub", "build"]);
    assert_eq!(code, Some(2), "{trace}");
    assert!(
        trace.contains("--stub 'build' is not 'STEP=FILE'"),
        "{trace}"
    );
    let (code, _, trace) = dry_run_build(&["--stub", "build=missing.yaml"]);
    assert_eq!(code, Some(2), "{trace}");
    assert!(trace.contains("missing.yaml"), "{trace}");
}

/// A step over its rate limit waits its turn on the virtual clock, as a `delay` does: an hour
/// between two calls sharing a bucket, and a `429` with `Retry-After`, pass at once and cost
/// no attempt.
#[test]
fn rate_limit_waits_pass_on_a_virtual_clock() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "crm.yaml",
        r#"
name: crm
on: { webhook: { path: /hooks/crm } }
steps:
  - name: first
    rate_limit: { rate: 1/h, key: crm }
    http: { url: https://crm.example.test/a }
  - name: second
    rate_limit: { rate: 1/h, key: crm }
    http: { url: https://crm.example.test/b }
"#,
    );
    write(
        dir.path(),
        "crm.test.yaml",
        r#"workflow: crm
cases:
  - name: the second call waits an hour for its turn
    webhook: { body: {} }
    stubs:
      - step: first
        http: [{ status: 429, headers: { retry-after: "120" } }, { status: 200 }]
      - step: second
        http: { status: 200 }
    expect:
      status: succeeded
      steps:
        first: { status: succeeded, attempts: 1, calls: 2 }
        second: { status: succeeded, attempts: 1, calls: 1 }
"#,
    );
    let started = std::time::Instant::now();
    let (code, output) = run_in(dir.path(), &["test", "."]);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("test the second call waits an hour for its turn ... ok"),
        "{output}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
