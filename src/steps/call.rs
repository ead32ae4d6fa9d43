//! `call`: run another loaded workflow by name with a payload as its event body, and wait for
//! it. The engine runs the called steps; this file compiles the step. Calls are checked across
//! the whole set of workflows when it loads (unknown names, cycles).

use serde_json::Value as Json;

use crate::diag::Span;
use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::steps::StepError;
use crate::template::{Scope, ValueTemplate};

/// The keys of a `call:` mapping.
pub const KEYS: &[&str] = &["workflow", "payload"];

#[derive(Debug)]
pub struct CallStep {
    /// The called workflow's name: written out, so calls can be checked when loading.
    pub workflow: String,
    pub workflow_span: Span,
    pub payload: Option<ValueTemplate>,
}

impl CallStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`call`", KEYS, &["workflow"])?;
        let workflow_node = fields.get("workflow")?;
        let workflow = c.string(workflow_node, "`call` `workflow`")?;
        if workflow.contains("{{") || workflow.contains("{%") {
            c.error(
                workflow_node.span.clone(),
                "`call` `workflow` is a workflow's name, not a template: calls are checked when loading",
            );
            return None;
        }
        let payload = match fields.get("payload") {
            Some(n) => Some(c.value(n)?),
            None => None,
        };
        Some(Self {
            workflow,
            workflow_span: workflow_node.span.clone(),
            payload,
        })
    }

    /// The called workflow's event body; an empty object when no payload is given.
    pub fn render_payload(&self, scope: &Scope<'_>) -> Result<Json, StepError> {
        match &self.payload {
            Some(p) => Ok(p.render(scope)?),
            None => Ok(Json::Object(serde_json::Map::new())),
        }
    }
}
