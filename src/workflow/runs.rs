//! The runs workflows start for an event: a fresh id each, and the dedupe and concurrency keys
//! rendered from the event. Webhooks, schedule ticks and manual starts all build them here.

use serde_json::{Map, Value as Json};
use tracing::warn;

use super::Workflow;
use crate::run::{DedupeKey, Event, NewRun, RunConcurrency, Trigger};
use crate::template::Scope;

/// The run each of `workflows` starts for `event`, in order.
pub fn new_runs<'w>(
    workflows: impl Iterator<Item = &'w Workflow> + Clone,
    event: &Event,
) -> Vec<NewRun> {
    // The keys' context is a full copy of the event: only built when a workflow needs it.
    let wants_keys = workflows.clone().any(|w| wants_keys(w, event));
    let context = wants_keys.then(|| event_context(event));
    workflows
        .map(|w| new_run(w, event, context.as_ref()))
        .collect()
}

impl Workflow {
    /// The run this workflow starts for `event` (a schedule's tick, a manual start, a webhook).
    pub fn new_run(&self, event: &Event) -> NewRun {
        let context = wants_keys(self, event).then(|| event_context(event));
        new_run(self, event, context.as_ref())
    }
}

fn new_run(workflow: &Workflow, event: &Event, context: Option<&minijinja::Value>) -> NewRun {
    NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: workflow.name.clone(),
        version: workflow.version.clone(),
        dedupe: context.and_then(|context| dedupe_key(workflow, event, context)),
        concurrency: context.and_then(|context| concurrency_key(workflow, event, context)),
    }
}

/// Whether a key is rendered for `workflow`'s run of `event`: deliveries are deduplicated by
/// webhook only (a manual start or a tick is never a redelivery).
fn wants_keys(workflow: &Workflow, event: &Event) -> bool {
    let dedupes = event.trigger == Trigger::Webhook
        && workflow
            .webhook
            .as_ref()
            .is_some_and(|t| t.dedupe.is_some());
    dedupes || workflow.concurrency.is_some()
}

/// What a dedupe key template reads: `event`, and the event's fields at the top level.
fn event_context(event: &Event) -> minijinja::Value {
    let mut context = match event.template_json() {
        Json::Object(map) => map,
        _ => Map::new(),
    };
    let whole = Json::Object(context.clone());
    context.insert("event".into(), whole);
    crate::template::to_template_value(&Json::Object(context))
}

/// The run's dedupe key, or none when the workflow has no `dedupe` or the key is empty.
fn dedupe_key(workflow: &Workflow, event: &Event, context: &minijinja::Value) -> Option<DedupeKey> {
    if event.trigger != Trigger::Webhook {
        return None;
    }
    let dedupe = workflow.webhook.as_ref()?.dedupe.as_ref()?;
    let scope = Scope {
        templates: &workflow.templates,
        context,
        event_body: &event.body,
    };
    match dedupe.key.render_string(&scope) {
        Ok(key) if !key.trim().is_empty() => Some(DedupeKey {
            key,
            expires_at: event.received_at
                + chrono::Duration::from_std(dedupe.window).unwrap_or(chrono::Duration::days(7)),
        }),
        Ok(_) => None,
        Err(err) => {
            // A delivery without the key is still accepted, just not deduplicated.
            warn!(workflow = %workflow.name, error = %err, "dedupe key could not be computed");
            None
        }
    }
}

/// The run's concurrency key, or none when the workflow has no `concurrency` or the key
/// renders empty (such a run is not limited).
fn concurrency_key(
    workflow: &Workflow,
    event: &Event,
    context: &minijinja::Value,
) -> Option<RunConcurrency> {
    let rule = workflow.concurrency.as_ref()?;
    let scope = Scope {
        templates: &workflow.templates,
        context,
        event_body: &event.body,
    };
    match rule.key.render_string(&scope) {
        Ok(key) if !key.trim().is_empty() => Some(RunConcurrency {
            key,
            limit: rule.limit,
            mode: rule.mode,
        }),
        Ok(_) => None,
        Err(err) => {
            warn!(workflow = %workflow.name, error = %err, "concurrency key could not be computed; the run is not limited");
            None
        }
    }
}
