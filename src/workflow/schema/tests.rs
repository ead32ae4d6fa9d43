//! The workflow schema held to the compiler: it builds without drift, and every key list a
//! `Compiler::fields` call checks in `src/` is the list of one of its objects, with the same
//! required keys.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::lang::schema::ObjectRecord;

#[test]
fn the_schema_has_exactly_the_keys_the_compiler_accepts() {
    if let Err(drift) = workflow_schema() {
        panic!("{drift}");
    }
}

/// A `.fields(node, what, KEYS, &[...])` call in the compiler's sources.
#[derive(Debug)]
struct FieldsCall {
    file: String,
    line: usize,
    keys: String,
    required: String,
}

/// Calls whose key list is computed, and the objects the schema builds for them.
const COMPUTED_LISTS: &[(&str, &str, &[&str])] = &[
    (
        "src/steps/mod.rs",
        "&allowed",
        &["steps::COMMON_KEYS+steps::KindName::ALL"],
    ),
    (
        "src/workflow/webhook.rs",
        "&entries",
        &["workflow::VERIFY_PRESETS+workflow::VERIFY_IP_ALLOW"],
    ),
    ("src/workflow/webhook.rs", "keys", &["verify::Scheme::"]),
    (
        "src/steps/filter.rs",
        "&[combinator]",
        &[
            "steps::filter::COMBINATORS[all]",
            "steps::filter::COMBINATORS[any]",
        ],
    ),
    (
        "src/steps/filter.rs",
        "&[\"not\"]",
        &["steps::filter::COMBINATORS[not]"],
    ),
    (
        "src/steps/filter.rs",
        "&allowed",
        &["steps::filter::SUBJECTS+steps::filter::OPERATORS"],
    ),
];

#[test]
fn every_key_list_the_compiler_checks_is_an_object_of_the_schema() {
    let mut b = Builder::default();
    build(&mut b);
    let records = b.objects();
    let calls = fields_calls();
    assert!(
        calls.len() > 30,
        "too few `.fields(` calls found: {calls:?}"
    );
    let mut used: BTreeSet<String> = BTreeSet::new();
    let mut problems = Vec::new();
    for call in &calls {
        let place = format!("{}:{}", call.file, call.line);
        if let Some((_, _, names)) = COMPUTED_LISTS
            .iter()
            .find(|(file, keys, _)| *file == call.file && *keys == call.keys)
        {
            for name in *names {
                let found: Vec<&ObjectRecord> = records
                    .iter()
                    .filter(|r| r.list.starts_with(name))
                    .collect();
                if found.is_empty() {
                    problems.push(format!(
                        "{place}: no object of the schema is built from `{name}`"
                    ));
                }
                used.extend(found.iter().map(|r| r.list.clone()));
            }
            continue;
        }
        let Some(constant) = constant_name(&call.keys) else {
            problems.push(format!(
                "{place}: the key list `{}` is not a named constant: name it, build the schema's object from it, or add the call to COMPUTED_LISTS",
                call.keys
            ));
            continue;
        };
        let module = module_path(&call.file);
        let found: Vec<&ObjectRecord> = records
            .iter()
            .filter(|r| names_constant(&r.list, constant, &module))
            .collect();
        if found.is_empty() {
            problems.push(format!(
                "{place}: the schema has no object built from `{constant}` (the keys the compiler checks there)"
            ));
        }
        let required = string_list(&call.required);
        for record in &found {
            used.insert(record.list.clone());
            let mut schema_required = record.required.clone();
            schema_required.sort_unstable();
            match &required {
                Some(required) if *required == schema_required => {}
                _ => problems.push(format!(
                    "{place}: the compiler requires {} of `{constant}`, the schema {:?}",
                    call.required, record.required
                )),
            }
        }
    }
    for record in records {
        if !used.contains(&record.list) {
            problems.push(format!(
                "the schema builds an object from `{}`, which no `.fields(` call checks",
                record.list
            ));
        }
    }
    for (file, keys, _) in COMPUTED_LISTS {
        if !calls.iter().any(|c| c.file == *file && c.keys == *keys) {
            problems.push(format!(
                "COMPUTED_LISTS names `{keys}` in {file}, which no longer has such a call"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The last segment of a constant's path (`ci::PROVIDERS` -> `PROVIDERS`).
fn constant_name(expression: &str) -> Option<&str> {
    let last = expression.rsplit("::").next()?;
    let is_path = expression
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    let is_constant = !last.is_empty()
        && last
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    (is_path && is_constant).then_some(last)
}

/// Whether a record's list (`ci::github::ACTIONS_KEYS`) is the constant of that name seen from
/// a file of `module` (`[steps, ci, github]`).
fn names_constant(list: &str, constant: &str, module: &[String]) -> bool {
    let list: String = list.chars().filter(|c| !c.is_whitespace()).collect();
    let mut segments: Vec<&str> = list.split("::").collect();
    if segments.pop() != Some(constant) {
        return false;
    }
    segments
        .iter()
        .filter(|s| !matches!(**s, "crate" | "super" | "self"))
        .all(|s| module.iter().any(|m| m == s))
}

fn module_path(file: &str) -> Vec<String> {
    file.trim_start_matches("src/")
        .trim_end_matches(".rs")
        .split('/')
        .filter(|s| *s != "mod")
        .map(str::to_owned)
        .collect()
}

/// `&["a", "b"]` or `&[]` as sorted strings; `None` for anything else.
fn string_list(expression: &str) -> Option<Vec<&'static str>> {
    let inner = expression.strip_prefix("&[")?.strip_suffix(']')?;
    let mut items: Vec<&'static str> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .map(|s| &*String::leak(s.to_owned()))
        })
        .collect::<Option<_>>()?;
    items.sort_unstable();
    Some(items)
}

fn fields_calls() -> Vec<FieldsCall> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rs_files(&root.join("src"), &mut files);
    let mut calls = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        // This file quotes the pattern it looks for.
        if file == "src/workflow/schema/tests.rs" {
            continue;
        }
        let mut rest = 0;
        while let Some(found) = text[rest..].find(".fields(") {
            let start = rest + found + ".fields(".len();
            rest = start;
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            if text[line_start..start].trim_start().starts_with("//") {
                continue;
            }
            let args = arguments(&text[start..]);
            if args.len() != 4 {
                continue;
            }
            calls.push(FieldsCall {
                file: file.clone(),
                line: text[..start].matches('\n').count() + 1,
                keys: args[2].clone(),
                required: args[3].clone(),
            });
        }
    }
    calls
}

/// The top-level, comma-separated arguments of a call, from just after its `(`; whitespace
/// inside an argument is squeezed out.
fn arguments(text: &str) -> Vec<String> {
    let mut args = vec![String::new()];
    let mut depth = 0;
    let mut in_string = false;
    let mut previous = ' ';
    for c in text.chars() {
        if in_string {
            in_string = !(c == '"' && previous != '\\');
        } else {
            match c {
                '"' => in_string = true,
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' if depth == 0 => break,
                ')' | ']' | '}' => depth -= 1,
                ',' if depth == 0 => {
                    args.push(String::new());
                    previous = c;
                    continue;
                }
                _ => {}
            }
        }
        if (in_string || !c.is_whitespace())
            && let Some(last) = args.last_mut()
        {
            last.push(c);
        }
        previous = c;
    }
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    args.iter().map(|a| a.replace(",]", "]")).collect()
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_argument_reader_splits_calls_as_written() {
    let args = arguments("node, &format!(\"a, {b}\"), KEYS, &[\"x\", \"y\",])?;");
    assert_eq!(
        args,
        ["node", "&format!(\"a, {b}\")", "KEYS", "&[\"x\",\"y\"]"]
    );
    assert_eq!(string_list("&[\"y\",\"x\"]"), Some(vec!["x", "y"]));
    assert_eq!(string_list("&[]"), Some(vec![]));
    assert_eq!(string_list("scheme.required_keys()"), None);
    assert_eq!(constant_name("ci::PROVIDERS"), Some("PROVIDERS"));
    assert_eq!(constant_name("&allowed"), None);
    assert!(names_constant(
        "ci :: github :: ACTIONS_KEYS",
        "ACTIONS_KEYS",
        &module_path("src/steps/ci/github.rs")
    ));
    assert!(!names_constant(
        "ci::gitlab::KEYS",
        "KEYS",
        &module_path("src/steps/email.rs")
    ));
}
