//! The filters, tests and functions templates can call, and the check of every name a template
//! calls at load: an unknown one is an error with a "did you mean", and a Python method
//! (`.split()`, `.strip()`, ...) an error naming the filter or test to use instead.
//!
//! The environment is the one source of truth: a name is known when the environment has it
//! (`is filter`, `is test`, its globals). The lists below only feed suggestions; a unit test
//! holds them equal to what the environment registers.

use std::collections::BTreeSet;

use minijinja::Value;

use super::EXPRESSION_ENV;
use super::paths::{self, CallSite, Callee, Receiver, Syntax};
use crate::diag::closest;

/// minijinja's built-in filters with this project's features, and the project's own
/// (`filters::register`).
pub const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "b64decode",
    "b64encode",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "date",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "fromjson",
    "groupby",
    "hmac_sha256",
    "indent",
    "int",
    "items",
    "join",
    "json",
    "jsonpath",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "sha256",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "yaml",
    "zip",
];

/// minijinja's built-in tests, without the operator spellings (`==`, `<`, ...) that only
/// `select('==', x)` and the like use.
pub const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// Names of the template language itself, bound by the construct they belong to.
const LANGUAGE_NAMES: &[&str] = &["loop", "self", "super", "caller", "varargs", "kwargs"];

/// What a Python method is written as here.
#[derive(Debug, Clone, Copy)]
pub enum Instead {
    /// The filter of that name, with the same arguments: `x.split(',')` is `x | split(',')`.
    Filter(&'static str),
    /// The test of that name, with the same arguments: `x is startingwith('a')`.
    Test(&'static str),
    /// Filters applied to the value, the method's arguments dropped.
    Then(&'static str),
    /// `sep.join(list)` is `list | join(sep)`.
    JoinFlipped,
    /// `m.get('k', d)` is `m['k'] | default(d)`.
    Get,
    /// Advice only.
    Say(&'static str),
}

/// Python methods templates are written with, and what to write here instead.
pub const METHODS: &[(&str, Instead)] = &[
    ("split", Instead::Filter("split")),
    ("strip", Instead::Filter("trim")),
    ("lstrip", Instead::Filter("trim")),
    ("rstrip", Instead::Filter("trim")),
    ("lower", Instead::Filter("lower")),
    ("upper", Instead::Filter("upper")),
    ("title", Instead::Filter("title")),
    ("capitalize", Instead::Filter("capitalize")),
    ("replace", Instead::Filter("replace")),
    ("startswith", Instead::Test("startingwith")),
    ("endswith", Instead::Test("endingwith")),
    ("items", Instead::Filter("items")),
    ("keys", Instead::Then("list")),
    ("values", Instead::Then("items | map(attribute=1) | list")),
    ("join", Instead::JoinFlipped),
    ("get", Instead::Get),
    (
        "format",
        Instead::Say(
            "the `format` filter takes `%s` placeholders: `'%s-%s' | format(a, b)`; or join text with `~`",
        ),
    ),
    (
        "find",
        Instead::Say("test for a part with `in`: `'x' in value`"),
    ),
    (
        "index",
        Instead::Say("test for a part with `in`: `'x' in value`"),
    ),
    (
        "count",
        Instead::Say("count a list with the `length` filter: `list | length`"),
    ),
    (
        "append",
        Instead::Say("a list cannot be changed; build a new one: `list + [item]`"),
    ),
];

/// Python functions templates are written with, and what to write here instead; a function
/// named like a filter (`int(x)`, `list(x)`) is pointed to that filter.
pub const FUNCTION_HINTS: &[(&str, &str)] = &[
    ("len", "use the `length` filter: `value | length`"),
    ("str", "use the `string` filter: `value | string`"),
    ("sorted", "use the `sort` filter: `list | sort`"),
    (
        "enumerate",
        "in a `{% for %}` loop, `loop.index` counts from 1 and `loop.index0` from 0",
    ),
];

/// A name a template calls that cannot be called, placed in the template's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameProblem {
    pub message: String,
    pub hint: String,
    /// 1-based line and column of the name in the text, and its length in characters.
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

/// What a template calls, checked.
#[derive(Debug, Default)]
pub struct Calls {
    pub problems: Vec<NameProblem>,
    /// Names called as functions that the template does not bind itself (known or not): the
    /// variables check leaves them to this one.
    pub functions: BTreeSet<String>,
}

/// Checks every filter, test, function and method a template or expression calls.
pub fn check(source: &str, syntax: Syntax) -> Calls {
    let mut calls = Calls::default();
    for site in paths::call_sites(source, syntax) {
        if let Callee::Function { local: false } = site.callee {
            calls.functions.insert(site.name.clone());
        }
        if let Some((message, hint)) = problem(&site) {
            calls.problems.push(NameProblem {
                message,
                hint,
                line: site.line,
                col: site.col,
                len: site.len,
            });
        }
    }
    calls
}

/// The functions templates can call: the environment's globals.
pub fn functions() -> Vec<&'static str> {
    EXPRESSION_ENV.globals().map(|(name, _)| name).collect()
}

pub fn is_filter(name: &str) -> bool {
    ask("filter", name)
}

pub fn is_test(name: &str) -> bool {
    ask("test", name)
}

pub fn is_function(name: &str) -> bool {
    EXPRESSION_ENV.globals().any(|(global, _)| global == name)
}

/// Asks the environment with its own `is filter` / `is test`.
fn ask(kind: &str, name: &str) -> bool {
    EXPRESSION_ENV
        .empty_state()
        .perform_test(kind, &[Value::from(name)])
        .unwrap_or(false)
}

fn problem(site: &CallSite) -> Option<(String, String)> {
    // The engine ignores whitespace inside a dotted name (`a . b`).
    let name: String = site
        .name
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    match &site.callee {
        Callee::Filter if !is_filter(&name) => Some((
            format!("unknown filter `{name}`"),
            suggestion(&name, FILTERS, "filters"),
        )),
        Callee::Test if !is_test(&name) => Some((
            format!("unknown test `{name}`"),
            suggestion(&name, TESTS, "tests"),
        )),
        Callee::Function { local: false } if !is_function(&name) && name != "super" => {
            Some((format!("unknown function `{name}`"), function_hint(&name)))
        }
        Callee::Method { receiver, written } if holds_data(receiver, &name) => Some((
            format!("unknown method `{name}`: values in templates have no methods"),
            method_hint(
                &name,
                written.as_ref().map(|(o, a)| (o.as_str(), a.as_str())),
            ),
        )),
        _ => None,
    }
}

/// Whether a method is called on plain data (from the payload, steps, vars or a literal),
/// which has no methods: only template objects (`loop`) do. What a filter or a call gives is
/// data too, unless a template put a function inside it, so there only Python's methods count.
fn holds_data(receiver: &Receiver, method: &str) -> bool {
    match receiver {
        Receiver::Literal => true,
        Receiver::Path(path) => {
            !LANGUAGE_NAMES.contains(&path.root.as_str()) && !is_function(&path.root)
        }
        Receiver::Computed => METHODS.iter().any(|(python, _)| *python == method),
        Receiver::Other => false,
    }
}

fn suggestion(name: &str, known: &[&str], what: &str) -> String {
    match closest(name, known.iter().copied()) {
        Some(near) => format!("did you mean `{near}`?"),
        None if what == "functions" => format!("the functions are: {}", known.join(", ")),
        None => format!("see the {what} in docs/language.md, \"Filters and functions\""),
    }
}

fn function_hint(name: &str) -> String {
    if let Some((_, hint)) = FUNCTION_HINTS
        .iter()
        .find(|(function, _)| *function == name)
    {
        return (*hint).to_owned();
    }
    if closest(name, functions()).is_none() && is_filter(name) {
        return format!("use the `{name}` filter: `value | {name}`");
    }
    suggestion(name, &functions(), "functions")
}

/// What to write instead of `object.name(args)`: the same thing with a filter or test when
/// there is one (with the text as written, when known), else advice.
pub fn method_hint(name: &str, written: Option<(&str, &str)>) -> String {
    let (object, args) = written.unwrap_or(("value", "(...)"));
    // A line break the YAML scalar made of `\n` is written back as the escape.
    let (object, args) = (visible(object), visible(args));
    let (object, args) = (object.as_str(), args.as_str());
    // `()` adds nothing to a filter written without arguments.
    let args = if args.trim_start_matches('(').trim_start().starts_with(')') {
        ""
    } else {
        args
    };
    let rewrite = match METHODS.iter().find(|(method, _)| *method == name) {
        Some((_, Instead::Filter(filter))) => format!("{object} | {filter}{args}"),
        Some((_, Instead::Test(test))) => format!("{object} is {test}{args}"),
        Some((_, Instead::Then(filters))) => format!("{object} | {filters}"),
        Some((_, Instead::JoinFlipped)) => format!("{} | join({object})", inner(args)),
        Some((_, Instead::Get)) => match split_first_argument(inner(args)) {
            (key, Some(fallback)) => format!("{object}[{key}] | default({fallback})"),
            (key, None) => format!("{object}[{key}] | default(none)"),
        },
        Some((_, Instead::Say(advice))) => return (*advice).to_owned(),
        None if is_filter(name) => format!("{object} | {name}{args}"),
        None if is_test(name) => format!("{object} is {name}{args}"),
        None => return "use a filter (see docs/language.md, \"Filters and functions\")".to_owned(),
    };
    let mut hint = format!("write `{rewrite}`");
    match name {
        "split" => hint.push_str("; `| lines` splits at line breaks"),
        "lstrip" | "rstrip" => hint.push_str(" (`trim` trims both ends)"),
        _ => {}
    }
    hint
}

fn visible(text: &str) -> String {
    text.replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
}

/// The text inside the outer parentheses of an argument list.
fn inner(args: &str) -> &str {
    let args = args.trim();
    args.strip_prefix('(')
        .and_then(|a| a.strip_suffix(')'))
        .unwrap_or(args)
        .trim()
}

/// The first argument of a list and the rest: the first comma outside quotes and brackets.
fn split_first_argument(args: &str) -> (&str, Option<&str>) {
    let mut depth = 0i32;
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in args.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                return (args[..i].trim(), Some(args[i + 1..].trim()));
            }
            _ => {}
        }
    }
    (args.trim(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str, syntax: Syntax) -> Vec<(String, String, usize, usize, usize)> {
        check(source, syntax)
            .problems
            .into_iter()
            .map(|p| (p.message, p.hint, p.line, p.col, p.len))
            .collect()
    }

    /// The names between `[` and `]` after `label: ` in the environment's debug form.
    fn registered(debug: &str, label: &str) -> BTreeSet<String> {
        let start = debug.find(&format!("{label}: [")).expect(label) + label.len() + 3;
        let end = start + debug[start..].find(']').expect("closing bracket");
        debug[start..end]
            .split(", ")
            .map(|name| name.trim_matches('"').to_owned())
            .filter(|name| !name.is_empty())
            .collect()
    }

    #[test]
    fn the_lists_are_what_the_environment_registers() {
        let debug = format!("{:?}", *EXPRESSION_ENV);
        let filters = registered(&debug, "filters");
        let listed: BTreeSet<String> = FILTERS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(listed, filters, "FILTERS differs from the environment");
        let operators = ["==", "!=", "<", "<=", ">", ">="];
        let tests: BTreeSet<String> = registered(&debug, "tests")
            .into_iter()
            .filter(|t| !operators.contains(&t.as_str()))
            .collect();
        let listed: BTreeSet<String> = TESTS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(listed, tests, "TESTS differs from the environment");
        assert!(FILTERS.iter().all(|f| is_filter(f)));
        assert!(TESTS.iter().all(|t| is_test(t)));
        let mut functions = functions();
        functions.sort_unstable();
        assert_eq!(
            functions,
            ["debug", "dict", "jsonpath", "namespace", "now", "range"]
        );
    }

    #[test]
    fn unknown_names_are_placed_with_a_did_you_mean() {
        assert_eq!(
            problems("a {{ x | defualt('y') }}", Syntax::Template),
            [(
                "unknown filter `defualt`".to_owned(),
                "did you mean `default`?".to_owned(),
                1,
                10,
                7
            )]
        );
        assert_eq!(
            problems("x is defnied", Syntax::Expression),
            [(
                "unknown test `defnied`".to_owned(),
                "did you mean `defined`?".to_owned(),
                1,
                6,
                7
            )]
        );
        assert_eq!(
            problems(
                "{% for i in rang(3) %}\n{{ i }}{% endfor %}",
                Syntax::Template
            ),
            [(
                "unknown function `rang`".to_owned(),
                "did you mean `range`?".to_owned(),
                1,
                13,
                4
            )]
        );
        let far = problems("{{ x | zzzzzz }}", Syntax::Template);
        assert!(far[0].1.contains("docs/language.md"), "{far:?}");
    }

    #[test]
    fn known_and_template_local_names_pass() {
        let source = "{% macro m(a) %}{{ caller() }}{{ a | upper }}{% endmacro %}\
            {% call m(1) %}x{% endcall %}{{ m(2) }}\
            {% for i in range(3) %}{{ loop.cycle('a', 'b') }}{{ i is even }}{% endfor %}\
            {% filter upper %}x{% endfilter %}\
            {{ now() | date('%Y') }}{{ jsonpath(event.body, '$.a') }}\
            {{ namespace(a=1).a }}{{ dict(a=1) | json }}{{ x | d('y') | e | b64encode }}";
        assert_eq!(problems(source, Syntax::Template), []);
        let calls = check(
            "{{ rang(3) }}{{ range(1) }}{% macro m() %}{% endmacro %}{{ m() }}",
            Syntax::Template,
        );
        assert_eq!(
            calls.functions,
            ["rang", "range"].map(str::to_owned).into_iter().collect()
        );
    }

    #[test]
    fn python_methods_name_what_to_use_instead() {
        let found = problems(
            "{{ event.body.text.split('\\n') | first }} {{ vars.s.strip() }}",
            Syntax::Template,
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0].0,
            "unknown method `split`: values in templates have no methods"
        );
        assert_eq!(
            found[0].1,
            "write `event.body.text | split('\\n')`; `| lines` splits at line breaks"
        );
        assert_eq!((found[0].2, found[0].3, found[0].4), (1, 20, 5));
        assert_eq!(found[1].1, "write `vars.s | trim`");
        // After a filter or another method, Python's methods are still data's.
        let chained = problems(
            "{{ (vars.s | trim).lower() }}{{ vars.s.strip().upper() }}{{ (vars.s | trim).other() }}",
            Syntax::Template,
        );
        let hints: Vec<&str> = chained.iter().map(|p| p.1.as_str()).collect();
        assert_eq!(
            hints,
            [
                "write `vars.s | trim | lower`",
                "write `vars.s.strip() | upper`",
                "write `vars.s | trim`",
            ]
        );
        // Through a loop variable and on a literal too; not on the template's own objects.
        let looped = problems(
            "{% for c in event.body.commits %}{{ c.message.lower() }}{% endfor %}{{ ', '.join(event.body.l) }}",
            Syntax::Template,
        );
        assert_eq!(looped.len(), 2, "{looped:?}");
        assert_eq!(looped[0].1, "write `c.message | lower`");
        assert_eq!(looped[1].1, "write `event.body.l | join(', ')`");
        let hints: Vec<String> = [
            "event.body.name.startswith('x')",
            "event.body.m.get('k', 0)",
            "event.body.m.get('k')",
            "event.body.m.values()",
            "event.body.m.items()",
            "event.body.name.length()",
        ]
        .iter()
        .map(|source| problems(source, Syntax::Expression)[0].1.clone())
        .collect();
        assert_eq!(
            hints,
            [
                "write `event.body.name is startingwith('x')`",
                "write `event.body.m['k'] | default(0)`",
                "write `event.body.m['k'] | default(none)`",
                "write `event.body.m | items | map(attribute=1) | list`",
                "write `event.body.m | items`",
                "write `event.body.name | length`",
            ]
        );
    }

    #[test]
    fn a_line_break_in_the_arguments_is_shown_as_its_escape() {
        let found = problems("{{ x.split('\n') }}", Syntax::Template);
        assert_eq!(
            found[0].1,
            "write `x | split('\\n')`; `| lines` splits at line breaks"
        );
    }

    #[test]
    fn python_functions_name_the_filter() {
        let hint = |source: &str| problems(source, Syntax::Expression)[0].1.clone();
        assert_eq!(
            hint("len(event.body.l)"),
            "use the `length` filter: `value | length`"
        );
        assert_eq!(
            hint("int(event.body.n)"),
            "use the `int` filter: `value | int`"
        );
        assert!(
            hint("zzz()").starts_with("the functions are: "),
            "{}",
            hint("zzz()")
        );
    }

    /// Every hint names filters and tests the environment has, and the rewrites it gives
    /// compute what the Python method would.
    #[test]
    fn method_hints_point_to_what_exists() {
        let filter = regex::Regex::new(r"\|\s*([a-z_0-9]+)").expect("regex");
        let test = regex::Regex::new(r"\bis\s+([a-z_0-9]+)").expect("regex");
        let hints = METHODS
            .iter()
            .map(|(method, _)| (*method, method_hint(method, Some(("x", "('a', 'b')")))))
            .chain(FUNCTION_HINTS.iter().map(|(f, h)| (*f, (*h).to_owned())));
        for (name, hint) in hints {
            for code in hint.split('`').skip(1).step_by(2) {
                for caps in filter.captures_iter(code) {
                    assert!(is_filter(&caps[1]), "{name}: {hint}");
                }
                for caps in test.captures_iter(code) {
                    assert!(is_test(&caps[1]), "{name}: {hint}");
                }
            }
        }
        let context = super::super::to_template_value(&serde_json::json!({
            "s": "  a,b\nc  ", "m": {"k": 1, "j": 2}, "l": ["x", "y"]
        }));
        // (Python, what it gives)
        let cases = [
            ("s.split(',')", serde_json::json!(["  a", "b\nc  "])),
            ("s.strip()", serde_json::json!("a,b\nc")),
            ("s.strip(' c')", serde_json::json!("a,b\n")),
            ("s.upper()", serde_json::json!("  A,B\nC  ")),
            ("s.startswith('  a')", serde_json::json!(true)),
            ("s.endswith('c  ')", serde_json::json!(true)),
            ("s.replace('a', 'z')", serde_json::json!("  z,b\nc  ")),
            ("', '.join(l)", serde_json::json!("x, y")),
            ("m.keys()", serde_json::json!(["k", "j"])),
            ("m.values()", serde_json::json!([1, 2])),
            ("m.items()", serde_json::json!([["k", 1], ["j", 2]])),
            ("m.get('zz', 0)", serde_json::json!(0)),
            ("m.get('k')", serde_json::json!(1)),
        ];
        for (python, expected) in cases {
            let hint = &problems(python, Syntax::Expression)[0].1;
            let rewrite = hint
                .strip_prefix("write `")
                .and_then(|h| h.split('`').next())
                .expect(hint);
            let value = super::super::Condition::compile(rewrite)
                .expect(rewrite)
                .value(&context)
                .expect(rewrite);
            assert_eq!(value, expected, "{python} -> {rewrite}");
        }
    }

    /// The method check rests on this: without `pycompat` or an unknown-method callback, no
    /// value has Python's methods.
    #[test]
    fn values_have_no_python_methods() {
        let context = Value::from(());
        for source in ["'a'.upper()", "[1].count(1)", "{'a': 1}.items()"] {
            let err = super::super::Condition::compile(source)
                .expect(source)
                .evaluate(&context)
                .expect_err(source);
            assert!(err.0.contains("unknown method"), "{source}: {err}");
        }
    }
}
