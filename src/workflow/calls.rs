//! `call` steps checked across the loaded set: every called workflow exists, and no workflow
//! calls itself, however indirectly.

use super::*;

/// Every `call` in `steps`, nested ones included: the called name and where it is written.
pub(super) fn calls_in<'w>(steps: &'w [Step], out: &mut Vec<(&'w str, &'w Span)>) {
    for step in steps {
        if let steps::StepKind::Call(call) = &step.kind {
            out.push((call.workflow.as_str(), &call.workflow_span));
        }
        for nested in step.kind.nested() {
            calls_in(nested, out);
        }
    }
}

/// `call` targets must be loaded, and no workflow may end up calling itself.
pub(super) fn check_calls(
    registry: &Registry,
    broken: &std::collections::BTreeSet<String>,
) -> Diagnostics {
    let mut diagnostics = Diagnostics::default();
    let mut graph: BTreeMap<&str, Vec<(&str, &Span)>> = BTreeMap::new();
    for workflow in registry.workflows.values() {
        let mut calls = Vec::new();
        calls_in(&workflow.steps, &mut calls);
        calls_in(&workflow.on_error, &mut calls);
        for (target, span) in &calls {
            if registry.get(target).is_none() && !broken.contains(*target) {
                let mut d = Diagnostic::error(
                    (*span).clone(),
                    format!("`call`: no workflow named '{target}' is loaded"),
                );
                if let Some(near) = closest(target, registry.workflows.keys().map(String::as_str)) {
                    d = d.with_hint(format!("did you mean '{near}'?"));
                }
                diagnostics.push(d);
            }
        }
        graph.insert(workflow.name.as_str(), calls);
    }
    // Each workflow on a cycle is told at its own call that leads back to it.
    for (start, calls) in &graph {
        for (first, span) in calls {
            if let Some(path) = path_back(&graph, first, start) {
                diagnostics.push(Diagnostic::error(
                    (*span).clone(),
                    format!(
                        "call cycle: {start} -> {} (a workflow cannot call itself, directly or not)",
                        path.join(" -> ")
                    ),
                ));
                break;
            }
        }
    }
    diagnostics
}

/// A chain of calls from `from` to `to` (both included), if there is one.
pub(super) fn path_back<'g>(
    graph: &BTreeMap<&'g str, Vec<(&'g str, &'g Span)>>,
    from: &'g str,
    to: &str,
) -> Option<Vec<&'g str>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<Vec<&'g str>> = vec![vec![from]];
    while let Some(path) = stack.pop() {
        let last = *path.last()?;
        if last == to {
            return Some(path);
        }
        if !seen.insert(last) {
            continue;
        }
        for (next, _) in graph.get(last).map(Vec::as_slice).unwrap_or_default() {
            let mut longer = path.clone();
            longer.push(next);
            stack.push(longer);
        }
    }
    None
}
