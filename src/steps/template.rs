//! `template`: render a text, or data when `format` is `json` or `yaml`.

use serde_json::Value as Json;

use crate::lang::compile::Compiler;
use crate::lang::yaml::{Node, NodeValue};
use crate::steps::StepError;
use crate::template::{Scope, ValueTemplate};

/// The keys of a `template` step written as a mapping.
pub const KEYS: &[&str] = &["text", "format"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Yaml,
}

#[derive(Debug)]
pub struct TemplateStep {
    text: ValueTemplate,
    format: Format,
}

impl TemplateStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        if let NodeValue::Str(_) = node.value {
            return Some(Self {
                text: c.text(node, "`template`")?,
                format: Format::Text,
            });
        }
        let fields = c.fields(node, "`template`", KEYS, &["text"])?;
        let format = match fields.get("format") {
            None => Format::Text,
            Some(f) => match c.string(f, "`format`")?.as_str() {
                "text" => Format::Text,
                "json" => Format::Json,
                "yaml" => Format::Yaml,
                other => {
                    c.error(
                        f.span.clone(),
                        format!("unknown format '{other}'; expected one of: text, json, yaml"),
                    );
                    return None;
                }
            },
        };
        Some(Self {
            text: c.text(fields.get("text")?, "`text`")?,
            format,
        })
    }

    pub fn render(&self, scope: &Scope<'_>) -> Result<Json, StepError> {
        let text = self.text.render_string(scope)?;
        match self.format {
            Format::Text => Ok(Json::String(text)),
            Format::Json => serde_json::from_str(&text).map_err(|e| {
                StepError::permanent(format!("the rendered text is not valid JSON: {e}"))
            }),
            Format::Yaml => serde_saphyr::from_str::<Json>(&text).map_err(|e| {
                StepError::permanent(format!("the rendered text is not valid YAML: {e}"))
            }),
        }
    }
}
