//! What the pages show, shaped for the templates: runs, steps and triggers as JSON, times and
//! durations as text, and an event as the `curl` command that sends it again.

use super::*;

/// A run as a list row shows it.
pub(super) fn run_view(run: &RunSummary) -> Json {
    json!({
        "id": run.id,
        "short_id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "status": run.status.as_str(),
        "attempt": run.attempt,
        "created": time_text(run.created_at),
        "duration": run.duration_ms().map(|ms| duration_text(ms as f64)),
        "error": run.error.as_deref().map(|e| shorten(e, 140)),
    })
}

/// The steps as a timeline: each bar placed by its start and sized by its duration, relative to
/// the whole run.
pub(super) fn step_views(detail: &RunDetail) -> Vec<Json> {
    let steps = &detail.steps;
    let start = steps.iter().map(|s| s.started_at).min();
    let end_ms = |s: &crate::run::StepRecord| -> f64 {
        start.map_or(0.0, |t0| {
            (s.started_at - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0 + s.duration_ms
        })
    };
    let total = steps.iter().map(end_ms).fold(0.0_f64, f64::max).max(0.001);
    steps
        .iter()
        .map(|s| {
            let offset = start.map_or(0.0, |t0| {
                (s.started_at - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0
            });
            let offset_pct = (offset / total * 100.0).clamp(0.0, 99.5);
            let width_pct = (s.duration_ms / total * 100.0).clamp(0.5, 100.0 - offset_pct);
            json!({
                "name": s.name,
                "kind": s.kind,
                "status": s.status.as_str(),
                "attempts": s.attempts,
                "earlier": s.earlier.iter().map(|a| json!({
                    "attempt": a.attempt,
                    "started": time_text(a.started_at),
                    "duration": duration_text(a.duration_ms),
                    "answer_status": a.answer_status,
                    "error": a.error,
                })).collect::<Vec<_>>(),
                "filtered": s.filtered,
                "duration": duration_text(s.duration_ms),
                "started": time_text(s.started_at),
                "offset_pct": format!("{offset_pct:.2}"),
                "width_pct": format!("{width_pct:.2}"),
                "error": s.error,
                "input": serde_json::to_string_pretty(&s.input).unwrap_or_default(),
                "output": serde_json::to_string_pretty(&s.output).unwrap_or_default(),
            })
        })
        .collect()
}

/// What started the run, in words for the event page.
pub(super) fn trigger_view(trigger: &crate::run::Trigger) -> Json {
    use crate::run::Trigger;
    match trigger {
        Trigger::Webhook => json!({ "kind": "webhook", "text": "a webhook request" }),
        Trigger::Schedule { scheduled_at } => json!({
            "kind": "schedule",
            "text": format!("the schedule's tick of {}", time_text(*scheduled_at)),
        }),
        Trigger::Manual { started_by } => json!({
            "kind": "manual",
            "text": format!("started by hand ({started_by})"),
        }),
    }
}

/// The names of the event page's downloads: the payload files of `hookflow run`, `test` and
/// `send`.
pub(super) fn downloads_view(detail: &RunDetail) -> Json {
    let payload = crate::run::SavedPayload::of_event(&detail.event);
    let name = crate::run::payload::saved_name(&detail.run.workflow, &detail.run.id);
    json!({
        "payload": format!("{name}.{}", payload.extension()),
        "headers": format!("{name}{}", crate::run::payload::HEADERS_SUFFIX),
    })
}

/// Headers the webhook listener sets or recomputes itself: not repeated by "copy as curl".
pub(super) const NOT_REPEATED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "accept-encoding",
];

/// A curl command that sends the same request to the webhook listener: method, path and query,
/// headers, and the exact body bytes.
pub(super) fn curl_command(base: &str, event: &Event) -> String {
    let query = query_text(event);
    let url = if query.is_empty() {
        format!("{base}{}", event.path)
    } else {
        format!("{base}{}?{query}", event.path)
    };
    let mut lines = vec![format!("curl -X {} {}", event.method, shell_quote(&url))];
    for (name, value) in &event.headers {
        if NOT_REPEATED.contains(&name.as_str()) {
            continue;
        }
        lines.push(format!(
            "  -H {}",
            shell_quote(&format!("{name}: {}", json_text(value)))
        ));
    }
    let mut command = match std::str::from_utf8(&event.raw) {
        Ok("") => lines.join(" \\\n"),
        Ok(text) => {
            lines.push(format!("  --data-binary {}", shell_quote(text)));
            lines.join(" \\\n")
        }
        Err(_) => {
            // Bytes a shell string cannot hold go through base64.
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(&event.raw);
            lines.push("  --data-binary @-".to_owned());
            format!(
                "printf %s '{encoded}' | base64 -d | {}",
                lines.join(" \\\n")
            )
        }
    };
    command.push('\n');
    command
}

/// The query string as received (values in order, repeated names repeated).
pub(super) fn query_text(event: &Event) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, value) in &event.query {
        match value {
            Json::Array(values) => {
                for v in values {
                    pairs.push((name.clone(), json_text(v)));
                }
            }
            other => pairs.push((name.clone(), json_text(other))),
        }
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

pub(super) fn json_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Single quotes for a POSIX shell; a quote inside becomes `'\''`.
pub(super) fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

pub(super) fn time_text(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) fn duration_text(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        let seconds = (ms / 1000.0).round() as u64;
        format!("{}m {}s", seconds / 60, seconds % 60)
    }
}

pub(super) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
