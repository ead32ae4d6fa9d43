//! `ci`: (being written) — a skeleton that compiles, so the kind can be wired in.

use serde_json::Value as Json;

use crate::effects::Effects;
use crate::steps::{StepError, StepIdentity};
use crate::template::Scope;
use crate::workflow::compile::Compiler;
use crate::workflow::yaml::Node;

#[derive(Debug)]
pub struct CiStep;

#[derive(Debug, Clone)]
pub struct RenderedCi;

impl CiStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        c.error(node.span.clone(), "the `ci` step is not available yet");
        None
    }

    pub fn render(
        &self,
        _scope: &Scope<'_>,
        _id: &StepIdentity<'_>,
    ) -> Result<RenderedCi, StepError> {
        Err(StepError::permanent("the `ci` step is not available yet"))
    }
}

impl RenderedCi {
    pub fn to_json(&self) -> Json {
        Json::Null
    }
}

pub async fn execute(_rendered: RenderedCi, _effects: &Effects) -> Result<Json, StepError> {
    Err(StepError::permanent("the `ci` step is not available yet"))
}
