//! A case's expectations held against what its run did: the run's status and error, which
//! steps ran, were skipped or stopped the run, and each step's record matched as a subset
//! (what is written must be there; what is not written is not checked); or, for a body the
//! webhook's `schema` refuses, the refusal and its violations.

use serde_json::Value as Json;

use super::case::{CaseEnd, CaseRun, Refusal};
use super::file::{Expect, Expected, RefusedExpect, StepExpect};
use crate::diag::Span;
use crate::effects::stand_in::{AnsweredBy, EffectCall};
use crate::lang::yaml::{Node, NodeValue};
use crate::run::{StepRecord, StepStatus};

/// One expectation that did not hold.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Where the expectation is written.
    pub at: Span,
    /// What was checked: `status`, `steps.notify.input.body.amount`.
    pub what: String,
    pub expected: String,
    pub actual: String,
}

impl Failure {
    fn new(
        at: &Span,
        what: impl Into<String>,
        expected: impl Into<String>,
        actual: String,
    ) -> Self {
        Self {
            at: at.clone(),
            what: what.into(),
            expected: expected.into(),
            actual,
        }
    }
}

/// Every expectation of `expect` that the case's end does not meet: a run that should have
/// been refused, a refusal nobody expected, or what `check_run` finds.
pub fn check(case_span: &Span, expect: &Expect, end: &CaseEnd) -> Vec<Failure> {
    match (end, &expect.refused) {
        (CaseEnd::Refused(refusal), Some(refused)) => check_refusal(refused, refusal),
        (CaseEnd::Refused(refusal), None) => vec![Failure::new(
            case_span,
            "webhook body",
            "a body the webhook's `schema` accepts (or `expect: { refused: ... }`)",
            refusal_text(refusal),
        )],
        (CaseEnd::Ran(run), Some(refused)) => {
            let mut actual = format!(
                "the body was accepted and the run ended {}",
                run.outcome.status.as_str()
            );
            if let Some(error) = &run.outcome.error {
                actual.push_str(&format!(" ({error})"));
            }
            vec![Failure::new(
                &refused.span,
                "refused",
                "the body refused by the webhook's `schema`",
                actual,
            )]
        }
        (CaseEnd::Ran(run), None) => check_run(case_span, expect, run),
    }
}

/// The refusal as the sender would read it: the status, then one line per violation.
fn refusal_text(refusal: &Refusal) -> String {
    let mut out = format!("refused with {}:", refusal.status);
    for violation in &refusal.violations {
        let path = if violation.path.is_empty() {
            "(the body)"
        } else {
            violation.path.as_str()
        };
        out.push_str(&format!("\n{path}: {}", violation.message));
    }
    out
}

/// `refused`: the status, and each violation written a subset of one the body has.
fn check_refusal(expect: &RefusedExpect, refusal: &Refusal) -> Vec<Failure> {
    let mut failures = Vec::new();
    if let Some(status) = &expect.status
        && status.value != u64::from(refusal.status)
    {
        failures.push(Failure::new(
            &status.span,
            "refused.status",
            status.value.to_string(),
            refusal.status.to_string(),
        ));
    }
    let actual: Vec<Json> = refusal
        .violations
        .iter()
        .map(|v| serde_json::json!({ "path": v.path, "message": v.message }))
        .collect();
    for (i, wanted) in expect.violations.iter().enumerate() {
        let found = actual.iter().any(|violation| {
            let mut misses = Vec::new();
            subset(wanted, violation, "", &mut misses);
            misses.is_empty()
        });
        if !found {
            failures.push(Failure::new(
                &wanted.span,
                format!("refused.violations[{i}]"),
                pretty(&wanted.to_json()),
                refusal_text(refusal),
            ));
        }
    }
    failures
}

/// Every expectation of `expect` that `run` does not meet, and every effect no stub answered.
fn check_run(case_span: &Span, expect: &Expect, run: &CaseRun) -> Vec<Failure> {
    let mut failures = unanswered(case_span, &run.calls);
    let outcome = &run.outcome;
    if let Some(status) = &expect.status
        && status.value != outcome.status
    {
        let actual = match &outcome.error {
            Some(error) => format!("{} ({error})", outcome.status.as_str()),
            None => outcome.status.as_str().to_owned(),
        };
        failures.push(Failure::new(
            &status.span,
            "status",
            status.value.as_str(),
            actual,
        ));
    }
    if let Some(error) = &expect.error {
        let actual = outcome.error.clone().unwrap_or_default();
        if !actual.contains(&error.value) {
            failures.push(Failure::new(
                &error.span,
                "error (contains)",
                &error.value,
                actual,
            ));
        }
    }
    failures.extend(check_ran(expect, &run.records));
    for step in &expect.steps {
        failures.extend(check_step(step, run));
    }
    if let Some(node) = &expect.response {
        let actual = run.response.as_ref().map_or(Json::Null, |r| r.to_json());
        subset(node, &actual, "response", &mut failures);
    }
    if let Some(node) = &expect.vars {
        subset(node, &outcome.vars, "vars", &mut failures);
    }
    failures
}

/// An effect no stub answered fails the case, whatever the workflow did about it.
fn unanswered(case_span: &Span, calls: &[EffectCall]) -> Vec<Failure> {
    calls
        .iter()
        .filter(|call| call.answered_by == AnsweredBy::Nothing)
        .map(|call| {
            Failure::new(
                case_span,
                format!("stubs: step '{}'", call.step),
                "a stub for every effect (or `default_stubs: true` in the file)",
                format!("no stub answers {}", call.summary),
            )
        })
        .collect()
}

fn record<'a>(records: &'a [StepRecord], name: &str) -> Option<&'a StepRecord> {
    records.iter().find(|r| r.name == name)
}

fn acted(record: &StepRecord) -> bool {
    record.status != StepStatus::Skipped
}

/// The names of the steps that ran, for messages.
fn ran_names(records: &[StepRecord]) -> String {
    let names: Vec<&str> = records
        .iter()
        .filter(|r| acted(r))
        .map(|r| r.name.as_str())
        .collect();
    if names.is_empty() {
        "none ran".to_owned()
    } else {
        format!("ran: {}", names.join(", "))
    }
}

fn check_ran(expect: &Expect, records: &[StepRecord]) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut require =
        |names: &[Expected<String>], what: &str, holds: fn(Option<&StepRecord>) -> bool| {
            for name in names {
                if !holds(record(records, &name.value)) {
                    let actual = match record(records, &name.value) {
                        Some(r) => format!(
                            "'{}' {} ({})",
                            r.name,
                            r.status.as_str(),
                            ran_names(records)
                        ),
                        None => format!("'{}' has no record ({})", name.value, ran_names(records)),
                    };
                    failures.push(Failure::new(
                        &name.span,
                        what,
                        format!("'{}'", name.value),
                        actual,
                    ));
                }
            }
        };
    require(&expect.ran, "ran", |r| r.is_some_and(acted));
    require(&expect.skipped, "skipped", |r| {
        r.is_some_and(|r| r.status == StepStatus::Skipped)
    });
    require(&expect.not_ran, "not_ran", |r| !r.is_some_and(acted));
    if let Some(filter) = &expect.filtered {
        let stopped = records.iter().find(|r| r.filtered);
        if stopped.map(|r| r.name.as_str()) != Some(filter.value.as_str()) {
            let actual = match stopped {
                Some(r) => format!("the run was filtered by '{}'", r.name),
                None => "no filter stopped the run".to_owned(),
            };
            failures.push(Failure::new(
                &filter.span,
                "filtered",
                format!("'{}'", filter.value),
                actual,
            ));
        }
    }
    failures
}

fn check_step(expect: &StepExpect, run: &CaseRun) -> Vec<Failure> {
    let name = &expect.name.value;
    let what = |field: &str| format!("steps.{name}.{field}");
    let Some(record) = record(&run.records, name) else {
        return vec![Failure::new(
            &expect.name.span,
            format!("steps.{name}"),
            "a record of the step",
            format!("no record ({})", ran_names(&run.records)),
        )];
    };
    let mut failures = Vec::new();
    if let Some(status) = &expect.status
        && status.value != record.status
    {
        let mut actual = record.status.as_str().to_owned();
        if let Some(error) = &record.error {
            actual.push_str(&format!(" ({error})"));
        }
        failures.push(Failure::new(
            &status.span,
            what("status"),
            status.value.as_str(),
            actual,
        ));
    }
    if let Some(attempts) = &expect.attempts
        && attempts.value != u64::from(record.attempts)
    {
        let expected = attempts.value.to_string();
        failures.push(Failure::new(
            &attempts.span,
            what("attempts"),
            expected,
            record.attempts.to_string(),
        ));
    }
    if let Some(calls) = &expect.calls {
        let made = run.calls.iter().filter(|c| c.step == *name).count() as u64;
        if calls.value != made {
            failures.push(Failure::new(
                &calls.span,
                what("calls"),
                calls.value.to_string(),
                made.to_string(),
            ));
        }
    }
    if let Some(error) = &expect.error {
        let actual = record.error.clone().unwrap_or_default();
        if !actual.contains(&error.value) {
            failures.push(Failure::new(
                &error.span,
                what("error (contains)"),
                &error.value,
                actual,
            ));
        }
    }
    if let Some(node) = &expect.input {
        subset(node, &record.input, &what("input"), &mut failures);
    }
    if let Some(node) = &expect.output {
        subset(node, &record.output, &what("output"), &mut failures);
    }
    failures
}

/// Holds `expected` against `actual`: a mapping's keys must be there (others may be too), a
/// list must have the same length, scalars must be equal (numbers by value), and
/// `{$contains: text}` holds for a string containing the text.
pub fn subset(expected: &Node, actual: &Json, path: &str, failures: &mut Vec<Failure>) {
    let mismatch = |failures: &mut Vec<Failure>| {
        failures.push(Failure::new(
            &expected.span,
            path,
            pretty(&expected.to_json()),
            pretty(actual),
        ));
    };
    match (&expected.value, actual) {
        (NodeValue::Map(entries), Json::String(text))
            if entries.len() == 1 && entries[0].0.name == "$contains" =>
        {
            let needle = entries[0].1.to_json();
            let needle = needle
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| needle.to_string());
            if !text.contains(&needle) {
                let text = text.clone();
                failures.push(Failure::new(
                    &expected.span,
                    format!("{path} (contains)"),
                    needle,
                    text,
                ));
            }
        }
        (NodeValue::Map(entries), Json::Object(map)) => {
            for (key, value) in entries {
                let inner = format!("{path}.{}", key.name);
                match map.get(&key.name) {
                    Some(found) => subset(value, found, &inner, failures),
                    None => failures.push(Failure::new(
                        &key.span,
                        inner,
                        pretty(&value.to_json()),
                        format!("no such key (keys: {})", keys_of(map)),
                    )),
                }
            }
        }
        (NodeValue::Seq(items), Json::Array(list)) if items.len() == list.len() => {
            for (i, (item, found)) in items.iter().zip(list).enumerate() {
                subset(item, found, &format!("{path}[{i}]"), failures);
            }
        }
        (NodeValue::Map(_) | NodeValue::Seq(_), _) => mismatch(failures),
        _ if scalars_equal(&expected.to_json(), actual) => {}
        _ => mismatch(failures),
    }
}

fn scalars_equal(expected: &Json, actual: &Json) -> bool {
    match (expected, actual) {
        (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
        _ => expected == actual,
    }
}

fn keys_of(map: &serde_json::Map<String, Json>) -> String {
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    if keys.is_empty() {
        "none".to_owned()
    } else {
        keys.join(", ")
    }
}

fn pretty(value: &Json) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
