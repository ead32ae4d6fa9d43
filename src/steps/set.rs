//! `set`: assign values to `vars`, visible to every later step.

use serde_json::Value as Json;

use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::steps::StepError;
use crate::template::{Scope, ValueTemplate};

#[derive(Debug)]
pub struct SetStep {
    values: Vec<(String, ValueTemplate)>,
}

impl SetStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let Some(entries) = node.as_map() else {
            c.error(
                node.span.clone(),
                format!(
                    "`set` takes a mapping of names to values, found {}",
                    node.kind_name()
                ),
            );
            return None;
        };
        let mut values = Vec::new();
        for (key, value) in entries {
            if let Some(v) = c.value(value) {
                values.push((key.name.clone(), v));
            }
        }
        Some(Self { values })
    }

    pub fn keys(&self) -> Vec<String> {
        self.values.iter().map(|(k, _)| k.clone()).collect()
    }

    pub fn render(&self, scope: &Scope<'_>) -> Result<serde_json::Map<String, Json>, StepError> {
        let mut out = serde_json::Map::new();
        for (key, value) in &self.values {
            out.insert(key.clone(), value.render(scope)?);
        }
        Ok(out)
    }
}
