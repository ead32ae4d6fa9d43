//! `parallel`: named branches of nested steps, all run at once by the engine; this file
//! compiles them.

use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::steps::{Step, compile_block};

/// The keys of a `parallel:` mapping.
pub const KEYS: &[&str] = &["branches"];
/// The keys of one branch.
pub const BRANCH_KEYS: &[&str] = &["steps"];

#[derive(Debug)]
pub struct ParallelStep {
    /// Each branch's name and steps, in the order written.
    pub branches: Vec<(String, Vec<Step>)>,
}

impl ParallelStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let fields = c.fields(node, "`parallel`", KEYS, &["branches"])?;
        let branches_node = fields.get("branches")?;
        let entries = c.mapping(branches_node, "`branches`")?;
        if entries.is_empty() {
            c.error(
                branches_node.span.clone(),
                "`branches` is empty; name at least one branch",
            );
            return None;
        }
        let mut branches = Vec::new();
        let mut ok = true;
        for (key, branch) in entries {
            let valid = !key.name.is_empty()
                && key
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_'));
            if !valid {
                c.error(
                    key.span.clone(),
                    format!(
                        "branch name '{}' may only use letters, digits, '-' and '_'",
                        key.name
                    ),
                );
                ok = false;
            }
            let what = format!("branch '{}'", key.name);
            let steps = c
                .fields(branch, &what, BRANCH_KEYS, &["steps"])
                .and_then(|f| f.get("steps"))
                .and_then(|n| compile_block(c, n, &format!("{what} `steps`"), &[]));
            match steps {
                Some(steps) => branches.push((key.name.clone(), steps)),
                None => ok = false,
            }
        }
        ok.then_some(Self { branches })
    }
}
