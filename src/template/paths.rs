//! What a template or an expression reads, found in its syntax tree (minijinja's own parser,
//! decision note 013): each path from a context name, where it is written, which missing steps
//! a guard expects (`is defined`, `| default(...)`, an `{% if ... is defined %}` block), and what
//! is done with the value (counted, looped over). A loop variable is followed to the list it
//! walks (`c.id` under `{% for c in event.body.commits %}` reads `event.body.commits[*].id`);
//! a name whose value cannot be followed (a macro argument, a `{% set %}` of a computed value)
//! hides what is read through it rather than having it guessed.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use minijinja::machinery::{self, ast};

use crate::jsonpath::PathStep;

/// What is done with a value besides reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Value,
    /// Counted with `length` (or `count`).
    Length,
    /// Looped over by `{% for %}`.
    Iterate,
}

/// A path from a name of the context: `event` then `body`, `repository`, `full_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub root: String,
    pub steps: Vec<PathStep>,
}

/// One path a template reads, and where its text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRead {
    pub path: Path,
    /// 1-based line and column of the text in the template, and its length in characters.
    pub line: usize,
    pub col: usize,
    pub len: usize,
    /// Indexes into `path.steps` where a missing value is expected: a guard tests for it, or
    /// the read of a loop's list already reports it.
    pub tolerated: Vec<RangeInclusive<usize>>,
    pub usage: Usage,
}

impl PathRead {
    pub fn tolerates(&self, step: usize) -> bool {
        self.tolerated.iter().any(|range| range.contains(&step))
    }
}

/// The reads of a template (text, or one `{{ expr }}`); none when it does not parse (the
/// compiler has reported that already).
pub fn template_reads(source: &str) -> Vec<PathRead> {
    let Ok(tree) = machinery::parse(source, "<template>", Default::default()) else {
        return Vec::new();
    };
    let mut walker = Walker::new(source);
    walker.stmt(&tree);
    walker.reads
}

/// The reads of an expression written without braces (`filter:`, `if:`).
pub fn expression_reads(source: &str) -> Vec<PathRead> {
    let Ok(expr) = machinery::parse_expr(source) else {
        return Vec::new();
    };
    let mut walker = Walker::new(source);
    walker.value(&expr);
    walker.reads
}

/// The paths an expression proves defined when it is true: `x is defined`, `x is not
/// undefined`, and conjunctions of them.
pub fn defined_when_true(source: &str) -> Vec<Path> {
    let Ok(expr) = machinery::parse_expr(source) else {
        return Vec::new();
    };
    Walker::new(source).facts(&expr, true)
}

/// The path a template's whole value is when it is exactly `{{ path }}`, possibly through
/// filters that keep the elements (`selectattr`, `sort`, ...): what a `foreach` walks.
pub fn value_path(source: &str) -> Option<Path> {
    let tree = machinery::parse(source, "<template>", Default::default()).ok()?;
    let ast::Stmt::Template(template) = &tree else {
        return None;
    };
    let [ast::Stmt::EmitExpr(emit)] = template.children.as_slice() else {
        return None;
    };
    Walker::new(source).list_path(&emit.expr)
}

/// Filters whose result holds elements of their input, unchanged.
const ELEMENT_KEEPING_FILTERS: &[&str] = &[
    "list",
    "reverse",
    "sort",
    "unique",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
];

/// What a name stands for inside a template.
#[derive(Debug, Clone)]
enum Bound {
    Path(Path),
    /// A value that cannot be followed.
    Opaque,
}

/// A path an expression denotes, with where its text starts and how much of it is a binding.
struct Resolved {
    path: Path,
    /// Steps that come from the binding of a template-local name.
    bound: usize,
    start: usize,
}

struct Walker<'s> {
    source: &'s str,
    /// Template-local names, innermost scope last.
    scopes: Vec<BTreeMap<String, Bound>>,
    /// Paths that the conditions around this point prove defined.
    defined: Vec<Path>,
    reads: Vec<PathRead>,
}

impl<'s> Walker<'s> {
    fn new(source: &'s str) -> Self {
        Self {
            source,
            scopes: vec![BTreeMap::new()],
            defined: Vec::new(),
            reads: Vec::new(),
        }
    }

    fn lookup(&self, name: &str) -> Option<&Bound> {
        self.scopes.iter().rev().find_map(|scope| scope.get(name))
    }

    fn bind(&mut self, name: &str, bound: Bound) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.to_owned(), bound);
        }
    }

    /// The path an expression denotes, when it is a name followed by constant lookups.
    fn resolve(&self, expr: &ast::Expr<'_>) -> Option<Resolved> {
        match expr {
            ast::Expr::Var(var) => {
                let start = var.span().start_offset as usize;
                match self.lookup(var.id) {
                    Some(Bound::Path(path)) => Some(Resolved {
                        bound: path.steps.len(),
                        path: path.clone(),
                        start,
                    }),
                    Some(Bound::Opaque) => None,
                    None => Some(Resolved {
                        path: Path {
                            root: var.id.to_owned(),
                            steps: Vec::new(),
                        },
                        bound: 0,
                        start,
                    }),
                }
            }
            ast::Expr::GetAttr(attr) => {
                let mut resolved = self.resolve(&attr.expr)?;
                resolved
                    .path
                    .steps
                    .push(PathStep::Key(attr.name.to_owned()));
                Some(resolved)
            }
            ast::Expr::GetItem(item) => {
                let step = constant_step(&item.subscript_expr)?;
                let mut resolved = self.resolve(&item.expr)?;
                resolved.path.steps.push(step);
                Some(resolved)
            }
            _ => None,
        }
    }

    /// The path whose elements a value holds: a path, or a path through filters that keep them.
    fn list_path(&self, expr: &ast::Expr<'_>) -> Option<Path> {
        match expr {
            ast::Expr::Filter(filter) if ELEMENT_KEEPING_FILTERS.contains(&filter.name) => {
                self.list_path(filter.expr.as_ref()?)
            }
            _ => self.resolve(expr).map(|r| r.path),
        }
    }

    /// Records the read when `expr` is a path; says whether it was one.
    fn read(&mut self, expr: &ast::Expr<'_>, usage: Usage, guarded: bool) -> bool {
        let Some(resolved) = self.resolve(expr) else {
            return false;
        };
        let end = expr.span().end_offset as usize;
        let steps = resolved.path.steps.len();
        let mut tolerated = Vec::new();
        if resolved.bound > 0 {
            tolerated.push(0..=resolved.bound - 1);
        }
        if guarded && steps > 0 {
            tolerated.push(steps - 1..=steps - 1);
        }
        for known in &self.defined {
            if known.root == resolved.path.root
                && !known.steps.is_empty()
                && resolved.path.steps.starts_with(&known.steps)
            {
                tolerated.push(0..=known.steps.len() - 1);
            }
        }
        let (line, col) = line_col(self.source, resolved.start);
        let len = self
            .source
            .get(resolved.start..end)
            .map_or(1, |text| text.chars().count());
        self.reads.push(PathRead {
            path: resolved.path,
            line,
            col,
            len,
            tolerated,
            usage,
        });
        true
    }

    fn value(&mut self, expr: &ast::Expr<'_>) {
        self.expr(expr, Usage::Value, false);
    }

    fn expr(&mut self, expr: &ast::Expr<'_>, usage: Usage, guarded: bool) {
        if self.read(expr, usage, guarded) {
            return;
        }
        match expr {
            ast::Expr::Var(_) | ast::Expr::Const(_) => {}
            ast::Expr::GetAttr(attr) => self.value(&attr.expr),
            ast::Expr::GetItem(item) => {
                self.value(&item.expr);
                self.value(&item.subscript_expr);
            }
            ast::Expr::Slice(slice) => {
                self.value(&slice.expr);
                for bound in [&slice.start, &slice.stop, &slice.step]
                    .into_iter()
                    .flatten()
                {
                    self.value(bound);
                }
            }
            ast::Expr::UnaryOp(op) => self.value(&op.expr),
            ast::Expr::BinOp(op) => self.bin_op(op),
            ast::Expr::Compare(compare) => {
                self.value(&compare.expr);
                for op in &compare.ops {
                    self.value(&op.expr);
                }
            }
            ast::Expr::IfExpr(if_expr) => {
                self.value(&if_expr.test_expr);
                let when_true = self.facts(&if_expr.test_expr, true);
                self.under(when_true, |w| w.value(&if_expr.true_expr));
                if let Some(otherwise) = &if_expr.false_expr {
                    let when_false = self.facts(&if_expr.test_expr, false);
                    self.under(when_false, |w| w.value(otherwise));
                }
            }
            ast::Expr::Filter(filter) => self.filter(filter),
            ast::Expr::Test(test) => {
                let guard = matches!(test.name, "defined" | "undefined");
                self.expr(&test.expr, Usage::Value, guard);
                self.args(&test.args);
            }
            ast::Expr::Call(call) => self.call(call),
            ast::Expr::List(list) => list.items.iter().for_each(|i| self.value(i)),
            ast::Expr::Tuple(tuple) => tuple.items.iter().for_each(|i| self.value(i)),
            ast::Expr::Map(map) => {
                map.keys.iter().for_each(|k| self.value(k));
                map.values.iter().for_each(|v| self.value(v));
            }
        }
    }

    /// `a and b` reads `b` only where `a` held, `a or b` only where it did not.
    fn bin_op(&mut self, op: &ast::BinOp<'_>) {
        self.value(&op.left);
        let facts = match op.op {
            ast::BinOpKind::ScAnd => self.facts(&op.left, true),
            ast::BinOpKind::ScOr => self.facts(&op.left, false),
            _ => Vec::new(),
        };
        self.under(facts, |w| w.value(&op.right));
    }

    fn filter(&mut self, filter: &ast::Filter<'_>) {
        if let Some(input) = &filter.expr {
            match filter.name {
                "length" | "count" => self.expr(input, Usage::Length, false),
                "default" | "d" => self.expr(input, Usage::Value, true),
                _ => self.value(input),
            }
        }
        self.args(&filter.args);
    }

    fn call(&mut self, call: &ast::Call<'_>) {
        match call.identify_call() {
            ast::CallType::Method(object, _) | ast::CallType::Object(object) => self.value(object),
            ast::CallType::Function(_) | ast::CallType::Block(_) => {}
        }
        self.args(&call.args);
    }

    fn args(&mut self, args: &[ast::CallArg<'_>]) {
        for arg in args {
            match arg {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => self.value(e),
            }
        }
    }

    /// The paths a condition proves defined when it is `truth`: `x is defined`, `x is not
    /// undefined`, and conjunctions (or, when false, disjunctions) of them.
    fn facts(&self, expr: &ast::Expr<'_>, truth: bool) -> Vec<Path> {
        match expr {
            ast::Expr::Test(test)
                if (test.name == "defined" && truth) || (test.name == "undefined" && !truth) =>
            {
                self.resolve(&test.expr)
                    .map(|r| r.path)
                    .into_iter()
                    .collect()
            }
            ast::Expr::UnaryOp(op) if matches!(op.op, ast::UnaryOpKind::Not) => {
                self.facts(&op.expr, !truth)
            }
            ast::Expr::BinOp(op)
                if (matches!(op.op, ast::BinOpKind::ScAnd) && truth)
                    || (matches!(op.op, ast::BinOpKind::ScOr) && !truth) =>
            {
                let mut facts = self.facts(&op.left, truth);
                facts.extend(self.facts(&op.right, truth));
                facts
            }
            _ => Vec::new(),
        }
    }

    /// Walks with `facts` known to hold.
    fn under(&mut self, facts: Vec<Path>, walk: impl FnOnce(&mut Self)) {
        let depth = self.defined.len();
        self.defined.extend(facts);
        walk(self);
        self.defined.truncate(depth);
    }

    /// Walks statements in a scope of their own; returns the names they bound there.
    fn scoped(&mut self, bindings: Vec<(String, Bound)>, body: &[ast::Stmt<'_>]) -> Vec<String> {
        self.scopes.push(bindings.into_iter().collect());
        for stmt in body {
            self.stmt(stmt);
        }
        self.scopes
            .pop()
            .map(|scope| scope.into_keys().collect())
            .unwrap_or_default()
    }

    fn stmt(&mut self, stmt: &ast::Stmt<'_>) {
        match stmt {
            ast::Stmt::Template(t) => t.children.iter().for_each(|s| self.stmt(s)),
            ast::Stmt::EmitExpr(emit) => self.value(&emit.expr),
            ast::Stmt::EmitRaw(_) | ast::Stmt::Continue(_) | ast::Stmt::Break(_) => {}
            ast::Stmt::ForLoop(for_loop) => self.for_loop(for_loop),
            ast::Stmt::IfCond(if_cond) => self.if_cond(if_cond),
            ast::Stmt::WithBlock(with) => {
                let mut bindings = Vec::new();
                for (target, value) in &with.assignments {
                    self.value(value);
                    bindings.extend(self.targets(target, value));
                }
                self.scoped(bindings, &with.body);
            }
            ast::Stmt::Set(set) => {
                self.value(&set.expr);
                for (name, bound) in self.targets(&set.target, &set.expr) {
                    self.bind(&name, bound);
                }
            }
            ast::Stmt::SetBlock(set) => {
                if let Some(filter) = &set.filter {
                    self.value(filter);
                }
                set.body.iter().for_each(|s| self.stmt(s));
                self.hide(&set.target);
            }
            ast::Stmt::AutoEscape(block) => {
                self.value(&block.enabled);
                block.body.iter().for_each(|s| self.stmt(s));
            }
            ast::Stmt::FilterBlock(block) => {
                self.value(&block.filter);
                block.body.iter().for_each(|s| self.stmt(s));
            }
            ast::Stmt::Block(block) => block.body.iter().for_each(|s| self.stmt(s)),
            ast::Stmt::Import(import) => {
                self.value(&import.expr);
                self.hide(&import.name);
            }
            ast::Stmt::FromImport(import) => {
                self.value(&import.expr);
                for (name, alias) in &import.names {
                    self.hide(alias.as_ref().unwrap_or(name));
                }
            }
            ast::Stmt::Extends(extends) => self.value(&extends.name),
            ast::Stmt::Include(include) => self.value(&include.name),
            ast::Stmt::Macro(decl) => {
                self.bind(decl.name, Bound::Opaque);
                self.macro_body(decl);
            }
            ast::Stmt::CallBlock(block) => {
                self.call(&block.call);
                self.macro_body(&block.macro_decl);
            }
            ast::Stmt::Do(call) => self.call(&call.call),
        }
    }

    /// A loop's variable walks the elements of its list when that list is a path.
    fn for_loop(&mut self, for_loop: &ast::ForLoop<'_>) {
        self.expr(&for_loop.iter, Usage::Iterate, false);
        let mut bindings = vec![("loop".to_owned(), Bound::Opaque)];
        match (&for_loop.target, self.list_path(&for_loop.iter)) {
            (ast::Expr::Var(var), Some(mut list)) => {
                list.steps.push(PathStep::Each);
                bindings.push((var.id.to_owned(), Bound::Path(list)));
            }
            (target, _) => bindings.extend(names(target).map(|n| (n, Bound::Opaque))),
        }
        self.scopes.push(bindings.into_iter().collect());
        if let Some(filter) = &for_loop.filter_expr {
            self.value(filter);
        }
        for_loop.body.iter().for_each(|s| self.stmt(s));
        self.scopes.pop();
        for_loop.else_body.iter().for_each(|s| self.stmt(s));
    }

    /// A name set in either branch may hold either value afterwards, so it is hidden.
    fn if_cond(&mut self, if_cond: &ast::IfCond<'_>) {
        self.value(&if_cond.expr);
        let when_true = self.facts(&if_cond.expr, true);
        let when_false = self.facts(&if_cond.expr, false);
        let mut set = Vec::new();
        self.under(when_true, |w| {
            set.extend(w.scoped(Vec::new(), &if_cond.true_body))
        });
        self.under(when_false, |w| {
            set.extend(w.scoped(Vec::new(), &if_cond.false_body));
        });
        for name in set {
            self.bind(&name, Bound::Opaque);
        }
    }

    fn macro_body(&mut self, decl: &ast::Macro<'_>) {
        decl.defaults.iter().for_each(|d| self.value(d));
        let mut bindings: Vec<(String, Bound)> = ["caller", "varargs", "kwargs"]
            .iter()
            .map(|n| ((*n).to_owned(), Bound::Opaque))
            .collect();
        for arg in &decl.args {
            bindings.extend(names(arg).map(|n| (n, Bound::Opaque)));
        }
        self.scoped(bindings, &decl.body);
    }

    /// What an assignment binds: a name to the path of its value, or else to nothing followable.
    fn targets(&self, target: &ast::Expr<'_>, value: &ast::Expr<'_>) -> Vec<(String, Bound)> {
        match target {
            ast::Expr::Var(var) => {
                let bound = match self.resolve(value) {
                    Some(resolved) => Bound::Path(resolved.path),
                    None => Bound::Opaque,
                };
                vec![(var.id.to_owned(), bound)]
            }
            other => names(other).map(|n| (n, Bound::Opaque)).collect(),
        }
    }

    fn hide(&mut self, target: &ast::Expr<'_>) {
        for name in names(target).collect::<Vec<_>>() {
            self.bind(&name, Bound::Opaque);
        }
    }
}

/// The names an assignment target binds (`x`, `(k, v)`); `ns.x` binds none.
fn names<'a>(target: &'a ast::Expr<'a>) -> Box<dyn Iterator<Item = String> + 'a> {
    match target {
        ast::Expr::Var(var) => Box::new(std::iter::once(var.id.to_owned())),
        ast::Expr::Tuple(tuple) => Box::new(tuple.items.iter().flat_map(names)),
        ast::Expr::List(list) => Box::new(list.items.iter().flat_map(names)),
        _ => Box::new(std::iter::empty()),
    }
}

/// A constant subscript as a path step: `['name']` or `[0]`.
fn constant_step(subscript: &ast::Expr<'_>) -> Option<PathStep> {
    let ast::Expr::Const(constant) = subscript else {
        return None;
    };
    let value = &constant.value;
    if let Some(text) = value.as_str() {
        return Some(PathStep::Key(text.to_owned()));
    }
    match value.kind() {
        minijinja::value::ValueKind::Number if value.is_integer() => {
            value.as_i64().map(PathStep::Index)
        }
        _ => None,
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map_or(1, |l| l.chars().count() + 1);
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PathStep {
        PathStep::Key(k.to_owned())
    }

    /// `root.a.b` as (root, steps).
    fn dotted(path: &Path) -> String {
        let mut text = path.root.clone();
        for step in &path.steps {
            match step {
                PathStep::Key(k) => text.push_str(&format!(".{k}")),
                PathStep::Index(i) => text.push_str(&format!("[{i}]")),
                PathStep::Each => text.push_str("[*]"),
            }
        }
        text
    }

    fn paths(reads: &[PathRead]) -> Vec<String> {
        reads.iter().map(|r| dotted(&r.path)).collect()
    }

    #[test]
    fn paths_are_found_with_their_position_in_the_text() {
        let reads =
            template_reads("Hi {{ event.body.user['name'] }}!\n{{ event.body.items[0].id }}");
        assert_eq!(
            paths(&reads),
            ["event.body.user.name", "event.body.items[0].id"]
        );
        assert_eq!((reads[0].line, reads[0].col, reads[0].len), (1, 7, 23));
        assert_eq!((reads[1].line, reads[1].col, reads[1].len), (2, 4, 22));
        assert!(reads.iter().all(|r| r.tolerated.is_empty()));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let reads = template_reads("é {{ event.body.x }}");
        assert_eq!((reads[0].line, reads[0].col), (1, 6));
    }

    #[test]
    fn loop_variables_read_the_elements_of_their_list() {
        let reads = template_reads(
            "{% for c in event.body.commits %}{{ c.id }}{% for a in c.added %}{{ a }}{% endfor %}{% endfor %}",
        );
        assert_eq!(
            paths(&reads),
            [
                "event.body.commits",
                "event.body.commits[*].id",
                "event.body.commits[*].added",
                "event.body.commits[*].added[*]",
            ]
        );
        assert_eq!(reads[0].usage, Usage::Iterate);
        assert_eq!(reads[2].usage, Usage::Iterate);
        // A missing list is reported where the loop reads it, not again through its items.
        assert!(reads[1].tolerates(1) && !reads[1].tolerates(3));
        assert_eq!(reads[1].path.steps[2..], [PathStep::Each, key("id")]);
    }

    #[test]
    fn names_that_cannot_be_followed_hide_what_is_read_through_them() {
        let reads = template_reads(
            "{% for k, v in event.body.meta | items %}{{ v.x }}{% endfor %}\
             {% macro m(event) %}{{ event.body.y }}{% endmacro %}\
             {% set s = event.body.a | first %}{{ s.z }}\
             {% for event in [1] %}{{ event.body.w }}{% endfor %}",
        );
        assert_eq!(paths(&reads), ["event.body.meta", "event.body.a"]);
    }

    #[test]
    fn set_and_element_keeping_filters_are_followed() {
        let reads = template_reads(
            "{% set repo = event.body.repository %}{{ repo.name }}\
             {% for c in event.body.commits | selectattr('distinct') %}{{ c.id }}{% endfor %}",
        );
        assert_eq!(
            paths(&reads),
            [
                "event.body.repository",
                "event.body.repository.name",
                "event.body.commits",
                "event.body.commits[*].id",
            ]
        );
    }

    #[test]
    fn default_and_is_defined_tolerate_only_the_last_step() {
        let reads = expression_reads(
            "event.body.a.b | default('x') ~ (event.body.c is defined) ~ event.body.d",
        );
        assert_eq!(
            paths(&reads),
            ["event.body.a.b", "event.body.c", "event.body.d"]
        );
        assert!(reads[0].tolerates(2) && !reads[0].tolerates(1));
        assert!(reads[1].tolerates(1) && !reads[1].tolerates(0));
        assert!(reads[2].tolerated.is_empty());
    }

    #[test]
    fn a_condition_that_proves_a_path_defined_guards_what_it_covers() {
        let reads = template_reads(
            "{% if event.body.pr is defined %}{{ event.body.pr.title }}{% else %}{{ event.body.x }}{% endif %}\
             {% if event.body.q is not defined %}{{ event.body.y }}{% else %}{{ event.body.q.z }}{% endif %}",
        );
        let by_path: BTreeMap<String, &PathRead> =
            reads.iter().map(|r| (dotted(&r.path), r)).collect();
        let title = by_path["event.body.pr.title"];
        assert!(title.tolerates(1) && !title.tolerates(2));
        assert!(by_path["event.body.x"].tolerated.is_empty());
        assert!(by_path["event.body.y"].tolerated.is_empty());
        assert!(by_path["event.body.q.z"].tolerates(1));
        let guarded =
            expression_reads("event.body.a is defined and event.body.a.b == 1 or event.body.c");
        assert_eq!(
            paths(&guarded),
            ["event.body.a", "event.body.a.b", "event.body.c"]
        );
        assert!(guarded[1].tolerates(1));
        assert!(guarded[2].tolerated.is_empty());
        let ternary = expression_reads("event.body.a.b if event.body.a is defined else 0");
        assert!(ternary[0].tolerates(1));
    }

    #[test]
    fn what_an_expression_proves_defined() {
        let facts = defined_when_true(
            "event.body.a is defined and not (event.body.b is undefined) and event.body.c",
        );
        let facts: Vec<String> = facts.iter().map(dotted).collect();
        assert_eq!(facts, ["event.body.a", "event.body.b"]);
        assert!(defined_when_true("event.body.a is defined or event.body.b is defined").is_empty());
    }

    #[test]
    fn length_and_dynamic_subscripts() {
        let reads =
            expression_reads("(event.body.items | length) + event.body.map[vars.key].x | int");
        assert_eq!(
            paths(&reads),
            ["event.body.items", "event.body.map", "vars.key"]
        );
        assert_eq!(reads[0].usage, Usage::Length);
        assert_eq!(reads[1].usage, Usage::Value);
    }

    #[test]
    fn the_value_path_of_a_single_expression() {
        let path = value_path("{{ event.body.commits | selectattr('distinct') }}").unwrap();
        assert_eq!(path.root, "event");
        assert_eq!(path.steps, [key("body"), key("commits")]);
        assert!(value_path("{{ event.body.commits | length }}").is_none());
        assert!(value_path("x {{ event.body.commits }}").is_none());
        assert!(value_path("{{ [event.body.commits] }}").is_none());
    }

    #[test]
    fn templates_that_do_not_parse_read_nothing() {
        assert!(template_reads("{{ event.body.").is_empty());
        assert!(expression_reads("a +").is_empty());
    }
}
