//! Templates and expressions: compiled and rendered in the workflows' sandbox (strict
//! undefined, fuel, recursion limit, the project's filters), as a value, a text and a condition.
//!
//! Input: the template source, then optionally a NUL byte and a JSON `event.body`; without
//! one, the body is a real GitHub push payload.
#![no_main]

use std::sync::LazyLock;

use hookflow::template::{Condition, Scope, TemplateSet, ValueTemplate, to_template_value};
use hookflow_fuzz::split_nul;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static PUSH: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../tests/fixtures/github/push.json"))
        .expect("the fixture is JSON")
});

/// The roots a run's templates see (`engine::execute` builds the same shape).
fn context(body: &Value) -> Value {
    json!({
        "event": {
            "id": "01900000-0000-7000-8000-000000000000",
            "method": "POST",
            "path": "/hooks/github/acme",
            "params": {"tenant": "acme"},
            "query": {"debug": "1"},
            "headers": {"content-type": "application/json", "x-github-event": "push"},
            "body": body,
            "raw": body.to_string(),
            "received_at": "2024-03-11T10:00:00.000Z",
            "trigger": "webhook",
            "scheduled_at": null,
            "started_by": null,
        },
        "vars": {"branch": "main", "count": 3, "list": [1, 2, 3], "map": {"a": "b"}},
        "steps": {"build": {"status": "succeeded", "output": {"ok": true, "code": 200}}},
        "run": {"id": "01900000-0000-7000-8000-000000000001", "attempt": 1, "workflow": "fuzz"},
        "secrets": {"TOKEN": "s3cret"},
    })
}

fuzz_target!(|data: &[u8]| {
    let (source, body) = split_nul(data);
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let body = match body {
        Some(raw) => match serde_json::from_slice::<Value>(raw) {
            Ok(body) => body,
            Err(_) => return,
        },
        None => PUSH.clone(),
    };
    let context = context(&body);
    let values = to_template_value(&context);
    let mut set = TemplateSet::new();
    if let Ok(template) = ValueTemplate::compile_str(&mut set, source) {
        let _ = template.variables(&set);
        let scope = Scope {
            templates: &set,
            context: &values,
            event_body: &body,
        };
        let _ = template.render(&scope);
        let _ = template.render_string(&scope);
    }
    if let Ok(condition) = Condition::compile(source) {
        let _ = condition.variables();
        let _ = condition.evaluate(&values);
    }
});
