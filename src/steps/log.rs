//! `log`: one line into the run's log (and the server log).

use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::steps::StepError;
use crate::template::{Scope, ValueTemplate};

#[derive(Debug)]
pub struct LogStep {
    message: ValueTemplate,
}

impl LogStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        Some(Self {
            message: c.text(node, "`log`")?,
        })
    }

    pub fn render(&self, scope: &Scope<'_>) -> Result<String, StepError> {
        Ok(self.message.render_string(scope)?)
    }
}
