//! `foreach`: nested steps run once per item of a list, up to `parallel` items at once. The
//! engine runs the iterations; this file compiles the step and renders its list.

use serde_json::Value as Json;

use crate::lang::compile::{CONTEXT_ROOTS, Compiler};
use crate::lang::yaml::Node;
use crate::steps::{Step, StepError, compile_block, positive_int};
use crate::template::{Scope, ValueTemplate};

/// The keys of a `foreach:` mapping.
pub const KEYS: &[&str] = &["items", "as", "parallel", "steps"];
/// The name an item is bound to when `as` says nothing.
pub const DEFAULT_BINDING: &str = "item";

#[derive(Debug)]
pub struct ForeachStep {
    pub items: ValueTemplate,
    /// The name each iteration reads its item under.
    pub binding: String,
    /// Iterations run at once.
    pub parallel: usize,
    pub steps: Vec<Step>,
}

impl ForeachStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`foreach`", KEYS, &["items", "steps"])?;
        let mark = c.readings.len();
        let items_node = fields.get("items");
        let items = items_node.and_then(|n| c.value(n));
        let binding = match fields.get("as") {
            Some(n) => c.string(n, "`as`").and_then(|name| {
                let valid = name.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
                if !valid {
                    c.error(
                        n.span.clone(),
                        format!("`as` must be a plain name (letters, digits, '_'), not '{name}'"),
                    );
                    None
                } else if CONTEXT_ROOTS.contains(&name.as_str()) || name == "loop" {
                    c.error(
                        n.span.clone(),
                        format!("`as: {name}` would hide `{name}`; choose another name"),
                    );
                    None
                } else {
                    Some(name)
                }
            }),
            None => Some(DEFAULT_BINDING.to_owned()),
        };
        let parallel = match fields.get("parallel") {
            Some(n) => positive_int(c, n, "`parallel`"),
            None => Some(1),
        };
        let locals = [binding.as_deref().unwrap_or(DEFAULT_BINDING), "loop"];
        let outer = items_node.map(|n| c.bind_item(locals[0], n, mark));
        let steps = fields
            .get("steps")
            .and_then(|n| compile_block(c, n, "`foreach` `steps`", &locals));
        if let Some(outer) = outer {
            c.scope.bindings = outer;
        }
        Some(Self {
            items: items?,
            binding: binding?,
            parallel: parallel?,
            steps: steps?,
        })
    }

    /// The list to iterate over; nothing (null) is an empty list.
    pub fn render_items(&self, scope: &Scope<'_>) -> Result<Vec<Json>, StepError> {
        match self.items.render(scope)? {
            Json::Array(items) => Ok(items),
            Json::Null => Ok(Vec::new()),
            other => Err(StepError::permanent(format!(
                "`items` must give a list, got {}",
                crate::template::json_kind(&other)
            ))),
        }
    }
}

/// What an iteration reads under `loop`: its position, counted from 1 (`index`) and from 0
/// (`index0`), as in a template `for` loop.
pub fn loop_value(index0: usize, length: usize) -> Json {
    serde_json::json!({
        "index": index0 + 1,
        "index0": index0,
        "first": index0 == 0,
        "last": index0 + 1 == length,
        "length": length,
    })
}
