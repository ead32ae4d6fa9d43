//! `exec`: (being written) — a skeleton that compiles, so the kind can be wired in.

use serde_json::Value as Json;

use crate::effects::Effects;
use crate::steps::{StepError, StepIdentity};
use crate::template::Scope;
use crate::workflow::compile::Compiler;
use crate::workflow::yaml::Node;

#[derive(Debug)]
pub struct ExecStep;

#[derive(Debug, Clone)]
pub struct RenderedExec;

impl ExecStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        c.error(node.span.clone(), "the `exec` step is not available yet");
        None
    }

    pub fn render(
        &self,
        _scope: &Scope<'_>,
        _id: &StepIdentity<'_>,
    ) -> Result<RenderedExec, StepError> {
        Err(StepError::permanent("the `exec` step is not available yet"))
    }
}

impl RenderedExec {
    pub fn to_json(&self) -> Json {
        Json::Null
    }
}

pub async fn execute(_rendered: RenderedExec, _effects: &Effects) -> Result<Json, StepError> {
    Err(StepError::permanent("the `exec` step is not available yet"))
}
