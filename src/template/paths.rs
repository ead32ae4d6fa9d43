//! What a template or an expression reads, found in its syntax tree (minijinja's own parser,
//! decision note 013): each path from a context name, where it is written, which missing steps
//! a guard expects (`is defined`, `| default(...)`, an `{% if ... is defined %}` block), and what
//! is done with the value (counted, looped over). A loop variable is followed to the list it
//! walks (`c.id` under `{% for c in event.body.commits %}` reads `event.body.commits[*].id`);
//! a name whose value cannot be followed (a macro argument, a `{% set %}` of a computed value)
//! hides what is read through it rather than having it guessed.
//!
//! The same walk answers two more questions: which filters, tests, functions and methods a
//! template calls (`call_sites`, checked by name at load), and what was read at the place an
//! error was reported (`at_span`, to name the missing value in an undefined-value error).

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};

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

impl Path {
    /// The path as a template writes it: `event.body.user.name`, `event.headers['x-id']`,
    /// `event.body.items[0]`, `event.body.commits[*].id` for each element of a list.
    pub fn text(&self) -> String {
        let mut text = self.root.clone();
        for step in &self.steps {
            push_step(&mut text, step);
        }
        text
    }

    /// The first `len` steps of the path.
    pub fn prefix(&self, len: usize) -> Path {
        Path {
            root: self.root.clone(),
            steps: self.steps[..len.min(self.steps.len())].to_vec(),
        }
    }
}

/// Appends one step as a template writes it; a key that is not a name goes in brackets.
pub fn push_step(text: &mut String, step: &PathStep) {
    match step {
        PathStep::Key(k) if is_identifier(k) => {
            text.push('.');
            text.push_str(k);
        }
        PathStep::Key(k) => {
            let quoted = k.replace('\\', "\\\\").replace('\'', "\\'");
            text.push_str(&format!("['{quoted}']"));
        }
        PathStep::Index(i) => text.push_str(&format!("[{i}]")),
        PathStep::Each => text.push_str("[*]"),
    }
}

fn is_identifier(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// How a template's text is written: a whole template, or an expression without braces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Template,
    Expression,
}

/// A filter, test, function or method a template calls, and where its name is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    pub name: String,
    pub callee: Callee,
    /// 1-based line and column of the name in the text, and its length in characters.
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callee {
    Filter,
    Test,
    /// `name(...)`; `local` when the name is bound in the template (a macro, `caller`, `loop`).
    Function {
        local: bool,
    },
    /// `value.name(...)`, with the value's text and the arguments' (`('a', 1)`) as written.
    Method {
        receiver: Receiver,
        written: Option<(String, String)>,
    },
}

/// What a method is called on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receiver {
    /// A literal string, number, list or map.
    Literal,
    /// A path from a name of the context, possibly through a template-local name bound to it.
    Path(Path),
    /// What a filter or a call gives.
    Computed,
    /// Anything else: a template-local object (`loop`, a macro's argument).
    Other,
}

/// What the syntax tells about an error reported at one place of the text: the paths read
/// there whose value (or, for [`Role::Chain`], a prefix's) may be the undefined one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AtSpan {
    pub reads: Vec<(Path, Role)>,
    /// Every value handed to the operation there is one of `reads` or a constant, so a read
    /// that is missing is certainly what the error is about.
    pub complete: bool,
    /// The expression written there, to quote when nothing can be named.
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The path itself is written at the place: it, or a prefix of it, is undefined.
    Chain,
    /// The path is a value handed to the operation there: at fault when missing as a whole.
    Operand,
    /// Like `Operand`, but only read when the given path is true (`and`) or false (`or`).
    OperandWhen(Path, bool),
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

/// The filters, tests, functions and methods a template or expression calls, in order; none
/// when it does not parse.
pub fn call_sites(source: &str, syntax: Syntax) -> Vec<CallSite> {
    walked(source, syntax).map(|w| w.calls).unwrap_or_default()
}

/// The byte ranges of the operands of every `~` in the text; none when it does not parse.
pub fn concat_operands(source: &str, syntax: Syntax) -> Vec<Range<usize>> {
    walked(source, syntax)
        .map(|w| w.concat_operands)
        .unwrap_or_default()
}

/// A walker that went through the whole text, or `None` when the text does not parse.
fn walked(source: &str, syntax: Syntax) -> Option<Walker<'_>> {
    let mut walker = Walker::new(source);
    match syntax {
        Syntax::Template => {
            let tree = machinery::parse(source, "<template>", Default::default()).ok()?;
            walker.stmt(&tree);
        }
        Syntax::Expression => {
            let expr = machinery::parse_expr(source).ok()?;
            walker.value(&expr);
        }
    }
    Some(walker)
}

/// What was read at `range` of the text, where the template engine reported an error. Without
/// a range, an expression's error comes from its outermost operation (the engine gives no
/// place to those), which is taken when the expression is one line.
pub fn at_span(source: &str, syntax: Syntax, range: Option<Range<usize>>) -> AtSpan {
    let quoted = |range: &Range<usize>| source.get(range.clone()).map(|t| t.trim().to_owned());
    let found = match (syntax, &range) {
        (Syntax::Template, Some(range)) => {
            let Ok(tree) = machinery::parse(source, "<template>", Default::default()) else {
                return AtSpan::default();
            };
            let mut walker = Walker::hunting(source, range.clone());
            walker.stmt(&tree);
            walker.found
        }
        (Syntax::Expression, _) => {
            let Ok(expr) = machinery::parse_expr(source) else {
                return AtSpan::default();
            };
            match &range {
                Some(range) => {
                    let mut walker = Walker::hunting(source, range.clone());
                    walker.value(&expr);
                    walker.found
                }
                None if !source.contains('\n') => {
                    let walker = Walker::new(source);
                    vec![walker.operation(&expr)]
                }
                None => Vec::new(),
            }
        }
        (Syntax::Template, None) => Vec::new(),
    };
    let mut merged = AtSpan {
        complete: !found.is_empty(),
        ..AtSpan::default()
    };
    for part in found {
        merged.complete &= part.complete;
        merged.text = merged.text.or(part.text);
        for read in part.reads {
            if !merged.reads.contains(&read) {
                merged.reads.push(read);
            }
        }
    }
    if merged.text.is_none() {
        merged.text = range.as_ref().and_then(quoted).filter(|t| !t.is_empty());
    }
    merged
}

/// What an expression's whole value reads, for an expression whose result is undefined.
pub fn whole_value(source: &str) -> AtSpan {
    let Ok(expr) = machinery::parse_expr(source) else {
        return AtSpan::default();
    };
    let walker = Walker::new(source);
    let mut reads = Vec::new();
    let complete = walker.operand(&expr, &mut reads);
    AtSpan {
        reads,
        complete,
        text: Some(source.trim().to_owned()),
    }
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
    calls: Vec<CallSite>,
    /// The byte range an error was reported at, when looking for what was read there.
    target: Option<Range<usize>>,
    found: Vec<AtSpan>,
    /// The byte ranges of the operands of every `~`.
    concat_operands: Vec<Range<usize>>,
}

impl<'s> Walker<'s> {
    fn new(source: &'s str) -> Self {
        Self {
            source,
            scopes: vec![BTreeMap::new()],
            defined: Vec::new(),
            reads: Vec::new(),
            calls: Vec::new(),
            target: None,
            found: Vec::new(),
            concat_operands: Vec::new(),
        }
    }

    fn hunting(source: &'s str, target: Range<usize>) -> Self {
        Self {
            target: Some(target),
            ..Self::new(source)
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
        self.hunt(expr);
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
                self.called(test.name, Callee::Test, test.span());
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
        if matches!(op.op, ast::BinOpKind::Concat) {
            for operand in [&op.left, &op.right] {
                self.concat_operands.push(extent(operand));
            }
        }
        self.value(&op.left);
        let facts = match op.op {
            ast::BinOpKind::ScAnd => self.facts(&op.left, true),
            ast::BinOpKind::ScOr => self.facts(&op.left, false),
            _ => Vec::new(),
        };
        self.under(facts, |w| w.value(&op.right));
    }

    fn filter(&mut self, filter: &ast::Spanned<ast::Filter<'_>>) {
        self.called(filter.name, Callee::Filter, filter.span());
        if let Some(input) = &filter.expr {
            match filter.name {
                "length" | "count" => self.expr(input, Usage::Length, false),
                "default" | "d" => self.expr(input, Usage::Value, true),
                _ => self.value(input),
            }
        }
        self.args(&filter.args);
    }

    fn call(&mut self, call: &ast::Spanned<ast::Call<'_>>) {
        match call.identify_call() {
            ast::CallType::Function(name) => {
                let local = self.lookup(name).is_some();
                self.called(name, Callee::Function { local }, call.span());
            }
            ast::CallType::Method(object, name) => {
                let receiver = self.receiver(object);
                let written = self.method_written(object, name, call.span());
                self.called(name, Callee::Method { receiver, written }, call.span());
            }
            _ => {}
        }
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
            ast::Stmt::EmitExpr(emit) => {
                if self.is_target(emit.span()) {
                    // Printing: the value printed is what was undefined.
                    let mut reads = Vec::new();
                    let complete = self.operand(&emit.expr, &mut reads);
                    let text = self.node_text(&emit.expr);
                    self.found.push(AtSpan {
                        reads,
                        complete,
                        text,
                    });
                }
                self.value(&emit.expr);
            }
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

/// Call sites and the search for what was read at an error's place.
impl Walker<'_> {
    fn called(&mut self, name: &str, callee: Callee, span: machinery::Span) {
        let (start, end) = (span.start_offset as usize, span.end_offset as usize);
        // The span of a method call starts at the dot before its name.
        let offset = self
            .source
            .get(start..end.max(start))
            .and_then(|text| text.find(name))
            .map_or(start, |i| start + i);
        let (line, col) = line_col(self.source, offset);
        self.calls.push(CallSite {
            name: name.to_owned(),
            callee,
            line,
            col,
            len: name.chars().count(),
        });
    }

    /// The text of the value a method is called on, and of its arguments.
    fn method_written(
        &self,
        object: &ast::Expr<'_>,
        name: &str,
        span: machinery::Span,
    ) -> Option<(String, String)> {
        let call = self
            .source
            .get(span.start_offset as usize..span.end_offset as usize)?;
        let after_name = &call[call.find(name)? + name.len()..];
        let args = after_name.trim_start();
        if !args.starts_with('(') {
            return None;
        }
        Some((self.node_text(object)?, args.to_owned()))
    }

    fn receiver(&self, object: &ast::Expr<'_>) -> Receiver {
        match object {
            ast::Expr::Const(_) | ast::Expr::List(_) | ast::Expr::Map(_) => Receiver::Literal,
            ast::Expr::Filter(_) | ast::Expr::Call(_) => Receiver::Computed,
            _ => match self.resolve(object) {
                Some(resolved) => Receiver::Path(resolved.path),
                None => Receiver::Other,
            },
        }
    }

    fn is_target(&self, span: machinery::Span) -> bool {
        self.target.as_ref().is_some_and(|target| {
            target.start == span.start_offset as usize && target.end == span.end_offset as usize
        })
    }

    /// Notes what `expr` reads when it is written at the target; the inner steps of a path
    /// are looked at too, since the walk does not descend into a path it has read.
    fn hunt(&mut self, expr: &ast::Expr<'_>) {
        if self.target.is_none() {
            return;
        }
        if self.is_target(expr.span()) {
            let found = self.operation(expr);
            self.found.push(found);
        }
        if self.resolve(expr).is_some() {
            let mut inner = expr;
            while let ast::Expr::GetAttr(_) | ast::Expr::GetItem(_) = inner {
                inner = match inner {
                    ast::Expr::GetAttr(attr) => &attr.expr,
                    ast::Expr::GetItem(item) => &item.expr,
                    _ => break,
                };
                if self.is_target(inner.span()) {
                    let found = self.operation(inner);
                    self.found.push(found);
                }
            }
        }
    }

    /// A path from a name of the context that no template-local name hides.
    fn context_path(&self, expr: &ast::Expr<'_>) -> Option<Path> {
        let mut base = expr;
        loop {
            base = match base {
                ast::Expr::GetAttr(attr) => &attr.expr,
                ast::Expr::GetItem(item) => &item.expr,
                ast::Expr::Var(var) if self.lookup(var.id).is_none() => break,
                _ => return None,
            };
        }
        self.resolve(expr).map(|resolved| resolved.path)
    }

    /// What the operation at `expr` was handed, or the path it is.
    fn operation(&self, expr: &ast::Expr<'_>) -> AtSpan {
        let text = self.node_text(expr);
        if let Some(path) = self.context_path(expr) {
            return AtSpan {
                reads: vec![(path, Role::Chain)],
                complete: true,
                text,
            };
        }
        let mut reads = Vec::new();
        let complete = match expr {
            ast::Expr::GetAttr(attr) => self.operand(&attr.expr, &mut reads),
            // An undefined subscript gives an undefined value without an error here.
            ast::Expr::GetItem(item) => self.operand(&item.expr, &mut reads),
            ast::Expr::Slice(slice) => [
                Some(&slice.expr),
                slice.start.as_ref(),
                slice.stop.as_ref(),
                slice.step.as_ref(),
            ]
            .into_iter()
            .flatten()
            .all(|e| self.operand(e, &mut reads)),
            ast::Expr::BinOp(op) => self.bin_op_operands(op, &mut reads),
            ast::Expr::Compare(compare) => {
                let first = self.operand(&compare.expr, &mut reads);
                let second = compare
                    .ops
                    .first()
                    .is_some_and(|op| self.operand(&op.expr, &mut reads));
                first && second && compare.ops.len() == 1
            }
            ast::Expr::Filter(filter) => {
                let input = filter
                    .expr
                    .as_ref()
                    .is_none_or(|input| self.operand(input, &mut reads));
                self.args_operands(&filter.args, &mut reads) && input
            }
            ast::Expr::Test(test) => {
                let input = self.operand(&test.expr, &mut reads);
                self.args_operands(&test.args, &mut reads) && input
            }
            ast::Expr::Call(call) => {
                let callee = match call.identify_call() {
                    ast::CallType::Function(_) | ast::CallType::Block(_) => true,
                    ast::CallType::Method(object, _) | ast::CallType::Object(object) => {
                        self.operand(object, &mut reads)
                    }
                };
                self.args_operands(&call.args, &mut reads) && callee
            }
            ast::Expr::IfExpr(_) | ast::Expr::Var(_) => false,
            other => self.operand(other, &mut reads),
        };
        AtSpan {
            reads,
            complete,
            text,
        }
    }

    /// `a and b` reads `b` only when `a` is true, `a or b` only when it is false.
    fn bin_op_operands(&self, op: &ast::BinOp<'_>, reads: &mut Vec<(Path, Role)>) -> bool {
        let left = self.operand(&op.left, reads);
        let when = match op.op {
            ast::BinOpKind::ScAnd => true,
            ast::BinOpKind::ScOr => false,
            _ => return self.operand(&op.right, reads) && left,
        };
        let Some(condition) = self.context_path(&op.left) else {
            return false;
        };
        let mut right = Vec::new();
        let complete = self.operand(&op.right, &mut right);
        reads.extend(
            right
                .into_iter()
                .map(|(path, _)| (path, Role::OperandWhen(condition.clone(), when))),
        );
        complete && left
    }

    fn args_operands(&self, args: &[ast::CallArg<'_>], reads: &mut Vec<(Path, Role)>) -> bool {
        args.iter().fold(true, |all, arg| {
            let (ast::CallArg::Pos(e)
            | ast::CallArg::Kwarg(_, e)
            | ast::CallArg::PosSplat(e)
            | ast::CallArg::KwargSplat(e)) = arg;
            self.operand(e, reads) && all
        })
    }

    /// Adds the paths a value handed to an operation is made of; false when it is something
    /// whose value may be undefined without a path being missing (a call, a filter, a local).
    /// `not`, `and`, `or` and literal lists are looked into: their instructions carry no place
    /// of their own, or their value is one of their operands.
    fn operand(&self, expr: &ast::Expr<'_>, reads: &mut Vec<(Path, Role)>) -> bool {
        if let Some(path) = self.context_path(expr) {
            reads.push((path, Role::Operand));
            return true;
        }
        match expr {
            ast::Expr::Const(_) => true,
            // Operations that give a defined value or fail at their own place.
            ast::Expr::BinOp(op)
                if !matches!(op.op, ast::BinOpKind::ScAnd | ast::BinOpKind::ScOr) =>
            {
                true
            }
            ast::Expr::Compare(_) | ast::Expr::Test(_) | ast::Expr::Slice(_) => true,
            ast::Expr::BinOp(op) => self.bin_op_operands(op, reads),
            ast::Expr::UnaryOp(op) => self.operand(&op.expr, reads),
            ast::Expr::List(list) => list.items.iter().all(|e| self.operand(e, reads)),
            ast::Expr::Tuple(tuple) => tuple.items.iter().all(|e| self.operand(e, reads)),
            ast::Expr::Map(map) => map
                .keys
                .iter()
                .chain(&map.values)
                .all(|e| self.operand(e, reads)),
            _ => false,
        }
    }

    /// The text of an expression as written: from its leftmost part to the end of its span
    /// (the engine's spans of some nodes start at their operator), or the span's own text
    /// when that would not be balanced.
    fn node_text(&self, expr: &ast::Expr<'_>) -> Option<String> {
        let span = expr.span();
        let end = span.end_offset as usize;
        let own = self.source.get(span.start_offset as usize..end)?;
        let text = self.source.get(start_of(expr)..end).unwrap_or(own).trim();
        let balanced =
            |t: &str| t.matches(['(', '[', '{']).count() == t.matches([')', ']', '}']).count();
        let text = if balanced(text) { text } else { own.trim() };
        (!text.is_empty()).then(|| text.to_owned())
    }
}

/// Where the leftmost part of an expression starts: its first operand's start for an
/// operation (whose span may start at its operator, or at the token before it).
fn start_of(expr: &ast::Expr<'_>) -> usize {
    match expr {
        ast::Expr::GetAttr(attr) => start_of(&attr.expr),
        ast::Expr::GetItem(item) => start_of(&item.expr),
        ast::Expr::Slice(slice) => start_of(&slice.expr),
        ast::Expr::Filter(filter) => filter
            .expr
            .as_ref()
            .map_or(filter.span().start_offset as usize, start_of),
        ast::Expr::Test(test) => start_of(&test.expr),
        ast::Expr::Call(call) => start_of(&call.expr),
        ast::Expr::BinOp(op) => start_of(&op.left),
        ast::Expr::Compare(compare) => start_of(&compare.expr),
        ast::Expr::IfExpr(if_expr) => start_of(&if_expr.true_expr),
        other => other.span().start_offset as usize,
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

/// The bytes an expression is written in: its own span joined with its parts' (the engine's
/// span of an operation or a filter covers only its operator or name).
fn extent(expr: &ast::Expr<'_>) -> Range<usize> {
    let own = expr.span();
    let mut range = own.start_offset as usize..own.end_offset as usize;
    let mut join = |part: &ast::Expr<'_>| {
        let inner = extent(part);
        range.start = range.start.min(inner.start);
        range.end = range.end.max(inner.end);
    };
    match expr {
        ast::Expr::Var(_) | ast::Expr::Const(_) => {}
        ast::Expr::GetAttr(attr) => join(&attr.expr),
        ast::Expr::GetItem(item) => {
            join(&item.expr);
            join(&item.subscript_expr);
        }
        ast::Expr::Slice(slice) => {
            join(&slice.expr);
            [&slice.start, &slice.stop, &slice.step]
                .into_iter()
                .flatten()
                .for_each(join);
        }
        ast::Expr::UnaryOp(op) => join(&op.expr),
        ast::Expr::BinOp(op) => {
            join(&op.left);
            join(&op.right);
        }
        ast::Expr::Compare(compare) => {
            join(&compare.expr);
            compare.ops.iter().for_each(|op| join(&op.expr));
        }
        ast::Expr::IfExpr(if_expr) => {
            join(&if_expr.test_expr);
            join(&if_expr.true_expr);
            if let Some(otherwise) = &if_expr.false_expr {
                join(otherwise);
            }
        }
        ast::Expr::Filter(filter) => {
            if let Some(input) = &filter.expr {
                join(input);
            }
            filter.args.iter().for_each(|arg| join(call_arg(arg)));
        }
        ast::Expr::Test(test) => {
            join(&test.expr);
            test.args.iter().for_each(|arg| join(call_arg(arg)));
        }
        ast::Expr::Call(call) => {
            join(&call.expr);
            call.args.iter().for_each(|arg| join(call_arg(arg)));
        }
        ast::Expr::List(list) => list.items.iter().for_each(join),
        ast::Expr::Tuple(tuple) => tuple.items.iter().for_each(join),
        ast::Expr::Map(map) => {
            map.keys.iter().for_each(&mut join);
            map.values.iter().for_each(join);
        }
    }
    range
}

fn call_arg<'e, 'a>(arg: &'e ast::CallArg<'a>) -> &'e ast::Expr<'a> {
    match arg {
        ast::CallArg::Pos(expr)
        | ast::CallArg::Kwarg(_, expr)
        | ast::CallArg::PosSplat(expr)
        | ast::CallArg::KwargSplat(expr) => expr,
    }
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
