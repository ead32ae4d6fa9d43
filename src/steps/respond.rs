//! `respond`: the answer a `respond: sync` webhook sends back to its caller.

use serde_json::Value as Json;

use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::run::SyncResponse;
use crate::steps::StepError;
use crate::template::{Scope, ValueTemplate};

/// The keys of a `respond` step.
pub const KEYS: &[&str] = &["status", "headers", "body"];

#[derive(Debug)]
pub struct RespondStep {
    status: Option<ValueTemplate>,
    headers: Vec<(String, ValueTemplate)>,
    body: Option<ValueTemplate>,
}

impl RespondStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`respond`", KEYS, &[])?;
        Some(Self {
            status: match fields.get("status") {
                Some(n) => Some(c.value(n)?),
                None => None,
            },
            headers: match fields.get("headers") {
                Some(n) => c.text_map(n, "`headers`")?,
                None => Vec::new(),
            },
            body: match fields.get("body") {
                Some(n) => Some(c.value(n)?),
                None => None,
            },
        })
    }

    pub fn render(&self, scope: &Scope<'_>) -> Result<SyncResponse, StepError> {
        let status = match &self.status {
            None => 200,
            Some(template) => {
                let value = template.render(scope)?;
                let number = match &value {
                    Json::Number(n) => n.as_u64(),
                    Json::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match number {
                    Some(n @ 100..=599) => n as u16,
                    _ => {
                        return Err(StepError::permanent(format!(
                            "`status` must be an HTTP status between 100 and 599, got {value}"
                        )));
                    }
                }
            }
        };
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            headers.push((name.clone(), value.render_string(scope)?));
        }
        let body = match &self.body {
            Some(template) => template.render(scope)?,
            None => Json::Null,
        };
        Ok(SyncResponse {
            status,
            headers,
            body,
        })
    }
}
