//! The interpreter run in process over a fake world: effects answered by scripts, a clock that
//! moves only when told, records kept in a map the way the store keeps them. Retries and waits
//! are driven by resuming the run at its due time, as the worker does.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::*;
use crate::effects::clock::Clock;
use crate::effects::fake::{FakeWorld, HttpMatch, http_response};
use crate::run::Trigger;

/// Records by step number, replaced on each update as the store replaces them.
#[derive(Default)]
struct MapJournal {
    records: Mutex<BTreeMap<usize, StepRecord>>,
    responses: Mutex<Vec<SyncResponse>>,
}

impl MapJournal {
    fn records(&self) -> Vec<StepRecord> {
        self.records
            .lock()
            .expect("records")
            .values()
            .cloned()
            .collect()
    }

    fn record(&self, name: &str) -> StepRecord {
        let records = self.records();
        let found = records.iter().find(|r| r.name == name);
        found
            .cloned()
            .unwrap_or_else(|| panic!("no record of {name}: {records:#?}"))
    }
}

impl Journal for MapJournal {
    fn step_finished<'a>(
        &'a self,
        record: &'a StepRecord,
    ) -> BoxFuture<'a, Result<(), JournalError>> {
        let mut records = self.records.lock().expect("records");
        records.insert(record.index, record.clone());
        Box::pin(std::future::ready(Ok(())))
    }

    fn responded(&self, response: &SyncResponse) {
        self.responses
            .lock()
            .expect("responses")
            .push(response.clone());
    }
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
        .expect("date")
        .with_timezone(&Utc)
}

fn workflow(steps: &str) -> Workflow {
    let source = format!("on: {{ webhook: {{ path: /hooks/t }} }}\n{steps}");
    let file = crate::diag::SourceFile::new("t.yaml", source);
    let options = crate::workflow::CompileOptions {
        exec_enabled: true,
        ..Default::default()
    };
    let (workflow, diagnostics) = crate::workflow::compile_file(file, &options);
    workflow.unwrap_or_else(|| panic!("{diagnostics:?}"))
}

fn event(body: Json) -> Event {
    let raw = body.to_string().into_bytes();
    let mut event = Event::without_request(Trigger::Webhook, body, raw);
    event.method = "POST".into();
    event.path = "/hooks/t".into();
    event
}

/// A world, a journal and one run, resumed as the worker would resume it.
struct Harness {
    world: FakeWorld,
    journal: MapJournal,
    workflow: Workflow,
    event: Event,
    attempt: u32,
    cancel: Option<super::CancelSignal>,
}

impl Harness {
    fn new(steps: &str, body: Json) -> Self {
        Self {
            world: FakeWorld::at(start()),
            journal: MapJournal::default(),
            workflow: workflow(steps),
            event: event(body),
            attempt: 1,
            cancel: None,
        }
    }

    /// One execution over the records kept so far.
    async fn execute(&self) -> RunOutcome {
        let effects = self.world.effects();
        let finished = self.journal.records();
        let run = RunInfo {
            id: "run-1".into(),
            workflow: self.workflow.name.clone(),
            attempt: self.attempt,
        };
        let options = ExecOptions {
            dry_run: false,
            started_at: Some(start()),
            cancel: self.cancel.clone(),
            trace: None,
        };
        let request = RunRequest {
            workflow: &self.workflow,
            event: &self.event,
            run: &run,
            secrets: &BTreeMap::new(),
            finished: &finished,
            effects: &effects,
            options: &options,
            callees: None,
        };
        execute(request, &self.journal).await.expect("journal")
    }

    /// Executions until the run ends, the clock moved to each due time between them.
    async fn run_to_end(&self) -> (RunOutcome, usize) {
        for executions in 1..=20 {
            let outcome = self.execute().await;
            match (outcome.status, outcome.due_at) {
                (RunStatus::Retrying, Some(due)) => self.world.clock.set(due),
                _ => return (outcome, executions),
            }
        }
        panic!("the run did not end in 20 executions");
    }
}

const POST: &str = "http: { method: POST, url: \"https://crm.example.test/orders\", json: { id: \"{{ event.body.id }}\" } }";

#[tokio::test]
async fn a_failing_call_is_retried_at_its_due_times_until_it_succeeds() {
    let steps = format!(
        "steps:\n  - name: post\n    retry: {{ attempts: 5, backoff: fixed, initial: 10m, max: 10m }}\n    {POST}\n"
    );
    let run = Harness::new(&steps, json!({ "id": 7 }));
    let answers = vec![
        Ok(http_response(503, "busy")),
        Ok(http_response(503, "busy")),
        Ok(http_response(200, r#"{"ok":true}"#)),
    ];
    run.world.http.answer(
        HttpMatch {
            method: Some("POST".into()),
            url_contains: "/orders".into(),
        },
        answers,
    );

    let (outcome, executions) = run.run_to_end().await;

    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert_eq!(executions, 3);
    let record = run.journal.record("post");
    assert_eq!(record.attempts, 3);
    assert_eq!(record.output["status"], 200);
    // Two fixed waits of ten minutes, on the fake clock.
    assert_eq!(
        run.world.clock.now() - start(),
        chrono::Duration::minutes(20)
    );
    let sent = run.world.http.sent();
    assert_eq!(sent.len(), 3);
    // A single expression keeps its type: the number stays a number.
    assert_eq!(sent[0].body.as_deref(), Some(&br#"{"id":7}"#[..]));
}

#[tokio::test]
async fn a_call_that_keeps_failing_fails_the_run_after_its_last_attempt_and_on_error_runs() {
    let steps = format!(
        "steps:\n  - name: post\n    retry: {{ attempts: 2, backoff: fixed, initial: 1s }}\n    {POST}\n\
         on_error:\n  - name: alert\n    http: {{ url: \"https://chat.example.test/hook\", json: {{ text: \"{{{{ run.error }}}}\" }} }}\n"
    );
    let run = Harness::new(&steps, json!({ "id": 1 }));
    run.world.http.answer(
        HttpMatch {
            method: Some("POST".into()),
            url_contains: "/orders".into(),
        },
        vec![Ok(http_response(500, "broken"))],
    );
    run.world.http.answer(
        HttpMatch {
            method: None,
            url_contains: "chat.example.test".into(),
        },
        vec![Ok(http_response(200, "ok"))],
    );

    let (outcome, executions) = run.run_to_end().await;

    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(executions, 2);
    let error = outcome.error.unwrap_or_default();
    assert!(error.starts_with("step 'post' failed: "), "{error}");
    assert_eq!(run.journal.record("post").attempts, 2);
    let alert = run.world.http.sent().pop().expect("the alert was sent");
    let text: Json =
        serde_json::from_slice(alert.body.as_deref().unwrap_or_default()).expect("json");
    assert!(
        text["text"].as_str().is_some_and(|t| t.contains("500")),
        "{text}"
    );
}

#[tokio::test]
async fn a_filter_that_does_not_pass_ends_the_run_before_any_effect() {
    let steps = format!(
        "steps:\n  - name: big-only\n    filter: event.body.total > 100\n  - name: post\n    {POST}\n"
    );
    let run = Harness::new(&steps, json!({ "id": 1, "total": 5 }));

    let outcome = run.execute().await;

    assert_eq!(outcome.status, RunStatus::Filtered);
    assert!(run.journal.record("big-only").filtered);
    assert!(run.world.http.sent().is_empty());
    assert!(run.journal.records().iter().all(|r| r.name != "post"));
}

#[tokio::test]
async fn a_step_whose_if_is_false_is_skipped_and_the_next_one_runs() {
    let steps = format!(
        "steps:\n  - name: only-vip\n    if: event.body.vip\n    {POST}\n  - name: note\n    template: \"order {{{{ event.body.id }}}}\"\n"
    );
    let run = Harness::new(&steps, json!({ "id": 3, "vip": false }));

    let outcome = run.execute().await;

    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert_eq!(run.journal.record("only-vip").status, StepStatus::Skipped);
    assert_eq!(
        run.journal.record("note").output["output"],
        json!("order 3")
    );
    assert!(run.world.http.sent().is_empty());
}

#[tokio::test]
async fn a_failure_with_continue_on_error_is_recorded_and_the_run_goes_on() {
    let steps = format!(
        "steps:\n  - name: post\n    continue_on_error: true\n    {POST}\n  - name: after\n    template: \"{{{{ 'failed' if steps.post.failed else 'ok' }}}}\"\n"
    );
    let run = Harness::new(&steps, json!({ "id": 1 }));

    let outcome = run.execute().await;

    // No stub answers the call: it fails, naming the request, and nothing is sent anywhere.
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let post = run.journal.record("post");
    assert_eq!(post.status, StepStatus::Failed);
    assert!(
        post.error
            .as_deref()
            .is_some_and(|e| e.contains("no stub answers POST https://crm.example.test/orders")),
        "{post:?}"
    );
    assert_eq!(
        run.journal.record("after").output["output"],
        json!("failed")
    );
}

#[tokio::test]
async fn an_hour_long_delay_is_a_stored_wait_that_resumes_at_its_end() {
    let steps = format!("steps:\n  - name: wait\n    delay: 1h\n  - name: post\n    {POST}\n");
    let run = Harness::new(&steps, json!({ "id": 9 }));
    run.world.http.answer(
        HttpMatch {
            method: None,
            url_contains: "/orders".into(),
        },
        vec![Ok(http_response(201, "{}"))],
    );

    let first = run.execute().await;
    assert_eq!(first.status, RunStatus::Retrying);
    assert_eq!(first.due_at, Some(start() + chrono::Duration::hours(1)));
    assert!(
        run.world.http.sent().is_empty(),
        "nothing is sent before the wait ends"
    );

    let (outcome, _) = run.run_to_end().await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert_eq!(run.world.http.sent().len(), 1);
}

#[tokio::test]
async fn a_respond_step_answers_the_caller_once_with_its_rendered_body() {
    let steps = "steps:\n  - name: answer\n    respond:\n      status: 201\n      body: { greeting: \"Hello, {{ event.body.name }}!\" }\n";
    let run = Harness::new(steps, json!({ "name": "Ada" }));

    let outcome = run.execute().await;

    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let responses = run.journal.responses.lock().expect("responses").clone();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 201);
    assert_eq!(responses[0].body, json!({ "greeting": "Hello, Ada!" }));
}

#[tokio::test]
async fn an_email_and_a_command_reach_the_fakes_rendered() {
    let steps = "steps:\n  - name: mail\n    email:\n      from: shop@example.test\n      to: \"{{ event.body.email }}\"\n      subject: \"Order {{ event.body.id }}\"\n      text: \"Thanks!\"\n  - name: deploy\n    exec: { command: [/srv/deploy.sh, \"{{ event.body.id }}\"] }\n";
    let run = Harness::new(steps, json!({ "id": 42, "email": "ada@example.test" }));
    let exited = crate::effects::process::ProcessOutput {
        exit: crate::effects::process::Exit::Code(0),
        timed_out: false,
        stdout: crate::effects::process::Captured {
            bytes: b"deployed\n".to_vec(),
            truncated: false,
        },
        stderr: Default::default(),
    };
    run.world.process.answer("/srv/deploy.sh", vec![Ok(exited)]);

    let outcome = run.execute().await;

    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    let mails = run.world.mail.sent();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "Order 42");
    assert_eq!(mails[0].to.len(), 1);
    let ran = run.world.process.ran();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].args, ["42"]);
}

#[tokio::test]
async fn a_resumed_run_does_not_repeat_a_recorded_effect() {
    let steps = format!("steps:\n  - name: post\n    {POST}\n  - name: wait\n    delay: 5m\n");
    let run = Harness::new(&steps, json!({ "id": 5 }));
    run.world.http.answer(
        HttpMatch {
            method: None,
            url_contains: "/orders".into(),
        },
        vec![Ok(http_response(200, "{}"))],
    );

    let (outcome, executions) = run.run_to_end().await;

    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert_eq!(executions, 2);
    assert_eq!(
        run.world.http.sent().len(),
        1,
        "the call's record was restored on resume"
    );
}

#[tokio::test]
async fn foreach_runs_its_steps_per_item_and_a_retry_repeats_only_the_failed_iteration() {
    let steps = "steps:\n  - name: each\n    foreach:\n      items: \"{{ event.body.ids }}\"\n      as: id\n      steps:\n        - name: post\n          retry: { attempts: 3, backoff: fixed, initial: 1m, max: 1m }\n          http: { method: POST, url: \"https://ci.example.test/items/{{ id }}\", json: { n: \"{{ loop.index }}\" } }\n";
    let run = Harness::new(steps, json!({ "ids": ["a", "b", "c"] }));
    let ok = || Ok(http_response(200, "{}"));
    let by_item = |item: &str| HttpMatch {
        method: Some("POST".into()),
        url_contains: format!("/items/{item}"),
    };
    run.world.http.answer(by_item("a"), vec![ok()]);
    run.world
        .http
        .answer(by_item("b"), vec![Ok(http_response(503, "busy")), ok()]);
    run.world.http.answer(by_item("c"), vec![ok()]);

    let (outcome, executions) = run.run_to_end().await;

    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert_eq!(executions, 2);
    let urls: Vec<String> = run.world.http.sent().into_iter().map(|r| r.url).collect();
    let tries = |item: &str| {
        urls.iter()
            .filter(|u| u.ends_with(&format!("/{item}")))
            .count()
    };
    assert_eq!((tries("a"), tries("b"), tries("c")), (1, 2, 1), "{urls:?}");
    assert_eq!(run.journal.record("each[1].post").attempts, 2);
    assert_eq!(run.journal.record("each[2].post").attempts, 1);
}

#[tokio::test]
async fn parallel_branches_each_run_and_their_outputs_are_read_by_branch() {
    let steps = "steps:\n  - name: announce\n    parallel:\n      branches:\n        chat:\n          steps:\n            - name: post\n              http: { url: \"https://chat.example.test/hook\", json: { text: \"{{ event.body.tag }}\" } }\n        mail:\n          steps:\n            - name: send\n              email: { from: ci@example.test, to: team@example.test, subject: \"Released {{ event.body.tag }}\", text: \"-\" }\n  - name: summary\n    template: \"chat answered {{ steps.announce.chat.post.status }}\"\n";
    let run = Harness::new(steps, json!({ "tag": "v2" }));
    run.world.http.answer(
        HttpMatch {
            method: None,
            url_contains: "chat.example.test".into(),
        },
        vec![Ok(http_response(202, "{}"))],
    );

    let outcome = run.execute().await;

    assert_eq!(outcome.status, RunStatus::Succeeded, "{:?}", outcome.error);
    assert_eq!(run.world.mail.sent()[0].subject, "Released v2");
    assert_eq!(run.world.http.sent().len(), 1);
    assert_eq!(
        run.journal.record("announce.chat.post").output["status"],
        202
    );
    assert_eq!(
        run.journal.record("summary").output["output"],
        json!("chat answered 202")
    );
}

#[test]
fn a_journal_error_keeps_the_error_that_caused_it() {
    let err = JournalError::new(std::io::Error::other("disk full"));
    assert_eq!(err.to_string(), "cannot record the run");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("disk full"));
}

#[tokio::test]
async fn a_cancelled_run_starts_no_further_step_and_runs_no_on_error() {
    let steps = "steps:\n  - name: first\n    set: { a: 1 }\n  - name: second\n    set: { b: 2 }\non_error:\n  - name: alarm\n    log: \"failed\"\n";
    let mut run = Harness::new(steps, json!({}));
    let (asked, signal) = tokio::sync::watch::channel(None);
    run.cancel = Some(signal);
    asked.send_replace(Some("cancelled by api: wrong payload".to_owned()));
    let outcome = run.execute().await;
    assert_eq!(outcome.status, RunStatus::Cancelled);
    assert_eq!(
        outcome.error.as_deref(),
        Some("cancelled by api: wrong payload")
    );
    assert!(
        run.journal.records().is_empty(),
        "no step ran, not even on_error"
    );
}
