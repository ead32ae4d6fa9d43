//! The spans of a traced run's steps: one per executed step attempt, the child of the run's
//! span, with what the step was and how it ended. Only what hookflow names goes in: the step,
//! its kind and attempt, and for an outgoing request its method, host and answer's status:
//! never its URL's path or query, its headers or its body, where secrets travel.

use serde_json::Value as Json;

use super::Redactor;
use crate::observe::trace::{RunTrace, Span, SpanKind};
use crate::run::StepRecord;

/// The step kinds whose work is one outgoing HTTP request.
fn calls_out(kind: &str) -> bool {
    matches!(kind, "http" | "ci")
}

/// A step's span, started as it is about to execute.
pub(super) fn start(trace: &RunTrace, step_name: &str, kind: &str) -> Span {
    let span_kind = if calls_out(kind) {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };
    Span::start(Some(trace.run), step_name.to_owned(), span_kind)
}

/// The step's span once its record is judged, handed to the exporter.
pub(super) fn finish(
    trace: &RunTrace,
    mut span: Span,
    (workflow, run_id): (&str, &str),
    record: &StepRecord,
    redactor: &Redactor,
) {
    span.text("hookflow.workflow", workflow);
    span.text("hookflow.run_id", run_id);
    span.text("hookflow.step", record.name.as_str());
    span.text("hookflow.step.kind", record.kind.as_str());
    span.integer("hookflow.attempt", i64::from(record.attempts));
    span.text("hookflow.status", record.status.as_str());
    if calls_out(&record.kind) {
        outgoing_attributes(&mut span, record, redactor);
    }
    span.failed = record.status == crate::run::StepStatus::Failed;
    trace.tracer.record(span.finish());
}

/// Method, host (masked like a record, should a secret be part of it) and answered status.
fn outgoing_attributes(span: &mut Span, record: &StepRecord, redactor: &Redactor) {
    if let Some(method) = record.input.get("method").and_then(Json::as_str) {
        span.text("http.request.method", method);
    }
    let host = record
        .input
        .get("url")
        .and_then(Json::as_str)
        .and_then(|url| url::Url::parse(url).ok())
        .and_then(|url| url.host_str().map(str::to_owned));
    if let Some(host) = host {
        span.text("server.address", redactor.redact_str(&host));
    }
    if let Some(status) = record.output.get("status").and_then(Json::as_i64) {
        span.integer("http.response.status_code", status);
    }
}
