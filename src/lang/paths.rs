//! Readings, and their check against sample payloads. A reading is a template, an expression
//! or a JSONPath query of a workflow, kept with the string it is written in and the `foreach`
//! items around it; `check` finds the `event.body` paths each one reads and reports, as located
//! warnings, those that no sample has (with the keys that are there as a hint) and those that
//! the samples' types make certain to fail (`| length` on a number, `.x` into text, looping
//! over a number). A path the workflow guards (`is defined`, `| default(...)`, an `exists`
//! rule) or that goes through a value that cannot be followed is not reported.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use super::yaml::Node;
use crate::diag::{Diagnostic, Diagnostics, Span, closest};
use crate::jsonpath::{JsonPath, PathStep};
use crate::template::paths::{self as template_paths, Path, PathRead, Usage};

/// How a reading's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A string value: literal text around `{{ }}` and `{% %}`, or one `{{ expr }}`.
    Template,
    /// `filter:` or `if:`, an expression without braces.
    Expression,
    /// A `{jsonpath: ...}` value or a filter rule's `jsonpath`, over `event.body`.
    JsonPath,
}

/// What a template-local name stands for where a reading is written.
#[derive(Debug, Clone)]
pub enum Binding {
    /// `body` in a dedupe or concurrency key: the event's body.
    Body,
    /// A `foreach` item: each element of what the `items` reading gives.
    ItemOf(Box<Reading>),
}

/// A template, expression or JSONPath query as the compiler met it.
#[derive(Debug, Clone)]
pub struct Reading {
    pub form: Form,
    pub source: String,
    /// The string scalar it is written in, to place a position of the text in the file.
    pub node: Node,
    pub bindings: BTreeMap<String, Binding>,
    /// Expressions that hold where it is evaluated (the step's `if`, earlier `filter` steps).
    pub assumptions: Vec<Reading>,
    /// Its value must be a list (a `foreach`'s `items`).
    pub expects_list: bool,
    /// It tests whether a value is there (a filter rule's `exists`): missing is expected.
    pub presence_test: bool,
}

/// A request body to check readings against, named as the user gave or keeps it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub body: Json,
}

/// The warnings for every reading checked against the samples (none without samples).
pub fn check(readings: &[Reading], samples: &[Sample]) -> Diagnostics {
    let mut diagnostics = Diagnostics::default();
    if samples.is_empty() {
        return diagnostics;
    }
    for reading in readings {
        for read in body_reads(reading) {
            if let Some(d) = judge(&read, samples) {
                diagnostics.push(d);
            }
        }
    }
    diagnostics
}

/// A read of the event body, placed in the workflow file.
#[derive(Debug)]
struct BodyRead {
    steps: Vec<PathStep>,
    span: Span,
    /// Indexes into `steps` where a missing value is expected.
    tolerated: Vec<std::ops::RangeInclusive<usize>>,
    usage: Check,
}

/// What the value found must be, besides being there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Anything,
    /// Counted with `length`: not a number or a boolean.
    Countable,
    /// Looped over by `{% for %}`: not a number or a boolean.
    Iterable,
    /// A `foreach`'s `items`: a list (or null, an empty one).
    List,
}

impl BodyRead {
    fn tolerates(&self, step: usize) -> bool {
        self.tolerated.iter().any(|range| range.contains(&step))
    }
}

/// The body paths a reading reads, with what the conditions around it prove defined.
fn body_reads(reading: &Reading) -> Vec<BodyRead> {
    let mut reads = own_body_reads(reading);
    for known in assumed_defined(reading) {
        for read in &mut reads {
            if !known.is_empty() && read.steps.starts_with(&known) {
                read.tolerated.push(0..=known.len() - 1);
            }
        }
    }
    reads
}

/// The body paths that the expressions holding where a reading is evaluated prove defined.
fn assumed_defined(reading: &Reading) -> Vec<Vec<PathStep>> {
    let mut known = Vec::new();
    for assumption in &reading.assumptions {
        for path in template_paths::defined_when_true(&assumption.source) {
            if let Some((mut steps, from)) = body_prefix(assumption, &path) {
                steps.extend_from_slice(&path.steps[from..]);
                known.push(steps);
            }
        }
    }
    known
}

fn own_body_reads(reading: &Reading) -> Vec<BodyRead> {
    match reading.form {
        Form::JsonPath => jsonpath_read(reading).into_iter().collect(),
        Form::Template | Form::Expression => {
            let reads = if reading.form == Form::Template {
                template_paths::template_reads(&reading.source)
            } else {
                template_paths::expression_reads(&reading.source)
            };
            let mut out: Vec<BodyRead> = reads
                .iter()
                .filter_map(|read| template_read(reading, read))
                .collect();
            if reading.expects_list
                && let Some(list) = list_read(reading)
            {
                out.push(list);
            }
            out
        }
    }
}

fn jsonpath_read(reading: &Reading) -> Option<BodyRead> {
    let (steps, _) = JsonPath::compile(&reading.source).ok()?.steps();
    let span = reading
        .node
        .span_within(1, 1, reading.source.chars().count());
    let tolerated = if reading.presence_test && !steps.is_empty() {
        vec![0..=steps.len() - 1]
    } else {
        Vec::new()
    };
    Some(BodyRead {
        steps,
        span,
        tolerated,
        usage: Check::Anything,
    })
}

fn template_read(reading: &Reading, read: &PathRead) -> Option<BodyRead> {
    let (prefix, from) = body_prefix(reading, &read.path)?;
    let mut steps = prefix.clone();
    steps.extend_from_slice(&read.path.steps[from..]);
    // Indexes of the read's own steps move by what its root stands for; a missing step in
    // what the root stands for is reported where that is read.
    let shift = |i: usize| (i >= from).then(|| i - from + prefix.len());
    let mut tolerated: Vec<_> = read
        .tolerated
        .iter()
        .filter_map(|r| {
            let end = shift(*r.end())?;
            Some(shift(*r.start()).unwrap_or(prefix.len())..=end)
        })
        .collect();
    if from == 0 && !prefix.is_empty() {
        tolerated.push(0..=prefix.len() - 1);
    }
    Some(BodyRead {
        steps,
        span: reading.node.span_within(read.line, read.col, read.len),
        tolerated,
        usage: match read.usage {
            Usage::Value => Check::Anything,
            Usage::Length => Check::Countable,
            Usage::Iterate => Check::Iterable,
        },
    })
}

/// What a path's root stands for in the body, and how many of the path's steps that covers:
/// `event.body` (1 step), or a binding (none). None for anything else.
fn body_prefix(reading: &Reading, path: &Path) -> Option<(Vec<PathStep>, usize)> {
    match reading.bindings.get(&path.root) {
        Some(Binding::Body) => Some((Vec::new(), 0)),
        Some(Binding::ItemOf(items)) => Some((item_path(items)?, 0)),
        None if path.root == "event" => match path.steps.first() {
            Some(PathStep::Key(k)) if k == "body" => Some((Vec::new(), 1)),
            _ => None,
        },
        None => None,
    }
}

/// The body path of each item of a `foreach` whose `items` is this reading.
fn item_path(items: &Reading) -> Option<Vec<PathStep>> {
    match items.form {
        Form::JsonPath => {
            let path = JsonPath::compile(&items.source).ok()?;
            let (mut steps, whole) = path.steps();
            if !whole {
                return None;
            }
            // A singular query gives the list itself; any other gives the list of nodes.
            if path.is_singular() {
                steps.push(PathStep::Each);
            }
            Some(steps)
        }
        Form::Template => {
            let mut steps = value_body_path(items)?;
            steps.push(PathStep::Each);
            Some(steps)
        }
        Form::Expression => None,
    }
}

/// The body path a template's whole value is, when it is exactly `{{ path }}`.
fn value_body_path(reading: &Reading) -> Option<Vec<PathStep>> {
    let path = template_paths::value_path(&reading.source)?;
    let (mut steps, from) = body_prefix(reading, &path)?;
    steps.extend_from_slice(&path.steps[from..]);
    Some(steps)
}

/// A `foreach`'s `items` checked for being a list, where the whole value is a body path.
fn list_read(reading: &Reading) -> Option<BodyRead> {
    let steps = value_body_path(reading)?;
    let len = reading.source.chars().count();
    Some(BodyRead {
        tolerated: (0..steps.len()).map(|i| i..=i).collect(),
        steps,
        span: reading.node.span_within(1, 1, len),
        usage: Check::List,
    })
}

/// What walking a path through one sample found.
#[derive(Debug, Default)]
struct Walk<'v> {
    found: Vec<&'v Json>,
    /// Steps missing from a mapping: the index, and the keys the mapping has.
    missing: Vec<(usize, Vec<String>)>,
    /// Steps into a value of the wrong type: the index, and the type.
    mismatched: Vec<(usize, &'static str)>,
}

fn walk<'v>(value: &'v Json, steps: &[PathStep], index: usize, out: &mut Walk<'v>) {
    let Some(step) = steps.get(index) else {
        out.found.push(value);
        return;
    };
    let next = |child: &'v Json, out: &mut Walk<'v>| walk(child, steps, index + 1, out);
    match (step, value) {
        // Below a null nothing can be known: the field is optional, this sample lacks it.
        (_, Json::Null) => {}
        (PathStep::Key(key), Json::Object(map)) => match map.get(key) {
            Some(child) => next(child, out),
            None => out.missing.push((index, map.keys().cloned().collect())),
        },
        (PathStep::Index(i), Json::Array(items)) => {
            let at = if *i < 0 {
                items.len().checked_sub(i.unsigned_abs() as usize)
            } else {
                Some(*i as usize)
            };
            // An index past the end says how long this sample's list is, not that the path is wrong.
            if let Some(child) = at.and_then(|at| items.get(at)) {
                next(child, out);
            }
        }
        (PathStep::Each, Json::Array(items)) => items.iter().for_each(|item| next(item, out)),
        // A string's characters and a mapping's keys can be looped over, but not followed.
        (PathStep::Index(_) | PathStep::Each, Json::String(_))
        | (PathStep::Each, Json::Object(_)) => {}
        (_, other) => out.mismatched.push((index, kind(other))),
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "text",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

/// The warning for one read, if the samples show a problem and none shows it works.
fn judge(read: &BodyRead, samples: &[Sample]) -> Option<Diagnostic> {
    let walks: Vec<(&Sample, Walk<'_>)> = samples
        .iter()
        .map(|sample| {
            let mut out = Walk::default();
            walk(&sample.body, &read.steps, 0, &mut out);
            (sample, out)
        })
        .collect();
    if walks.iter().any(|(_, w)| !w.found.is_empty()) {
        return judge_type(read, &walks);
    }
    judge_absent(read, &walks)
}

/// A found value of a type its use cannot take, in every sample that has it.
fn judge_type(read: &BodyRead, walks: &[(&Sample, Walk<'_>)]) -> Option<Diagnostic> {
    let fits = |v: &Json| match read.usage {
        Check::Anything => true,
        Check::Countable | Check::Iterable => !matches!(v, Json::Number(_) | Json::Bool(_)),
        Check::List => matches!(v, Json::Array(_) | Json::Null),
    };
    let found: Vec<(&Sample, &Json)> = walks
        .iter()
        .flat_map(|(s, w)| w.found.iter().map(move |v| (*s, *v)))
        .filter(|(_, v)| !v.is_null())
        .collect();
    let (sample, value) = *found.first()?;
    if found.iter().any(|(_, v)| fits(v)) {
        return None;
    }
    let path = path_text(&read.steps);
    let (message, hint) = match read.usage {
        Check::Countable => (
            format!(
                "{path} is {} in sample {}, which has no length",
                kind(value),
                sample.name
            ),
            "`length` counts the items of a list or a mapping, or the characters of text",
        ),
        Check::Iterable => (
            format!(
                "{path} is {} in sample {}, which cannot be looped over",
                kind(value),
                sample.name
            ),
            "`{% for %}` walks a list, a mapping's keys or the characters of text",
        ),
        Check::List => (
            format!(
                "`items` gives {} in sample {}, not a list",
                kind(value),
                sample.name
            ),
            "a `foreach` runs once per item of a list",
        ),
        Check::Anything => return None,
    };
    Some(Diagnostic::warning(read.span.clone(), message).with_hint(hint))
}

/// Where a path stopped in one sample, at a step a guard does not cover.
struct Stop<'s> {
    sample: &'s Sample,
    at: usize,
    /// The type the step could not go into, or none when the key is missing.
    mismatched: Option<&'static str>,
    /// The keys of the mapping a missing key was looked up in.
    keys: &'s [String],
}

/// The stops of every sample, the deepest (closest to the end of the path) first.
fn stops<'s>(read: &BodyRead, walks: &'s [(&'s Sample, Walk<'s>)]) -> Vec<Stop<'s>> {
    let mut stops = Vec::new();
    for (sample, w) in walks {
        for (at, keys) in &w.missing {
            stops.push(Stop {
                sample,
                at: *at,
                mismatched: None,
                keys,
            });
        }
        for (at, found) in &w.mismatched {
            stops.push(Stop {
                sample,
                at: *at,
                mismatched: Some(found),
                keys: &[],
            });
        }
    }
    stops.retain(|stop| !read.tolerates(stop.at));
    stops.sort_by_key(|stop| std::cmp::Reverse(stop.at));
    stops
}

/// A path no sample has. The deepest stop explains it best: a key missing there (with the
/// keys the samples have instead), or a step into a value that cannot have it.
fn judge_absent<'s>(read: &BodyRead, walks: &'s [(&'s Sample, Walk<'s>)]) -> Option<Diagnostic> {
    let stops = stops(read, walks);
    let deepest = stops.first()?;
    if let Some(found) = deepest.mismatched {
        return Some(mismatch(read, deepest.sample, deepest.at, found));
    }
    let failing: Vec<&str> = stops.iter().map(|s| s.sample.name.as_str()).collect();
    let names = samples_in_order(walks, &failing);
    let path = path_text(&read.steps);
    let message = match names.as_slice() {
        [one] => format!("{path} is not in sample {one}"),
        many => format!("{path} is in none of the samples {}", many.join(", ")),
    };
    let at = deepest.at;
    let keys: BTreeSet<&str> = stops
        .iter()
        .filter(|s| s.at == at && s.mismatched.is_none())
        .flat_map(|s| s.keys.iter().map(String::as_str))
        .collect();
    let PathStep::Key(missing) = &read.steps[at] else {
        return Some(Diagnostic::warning(read.span.clone(), message));
    };
    let parent = path_text(&read.steps[..at]);
    let hint = match closest(missing, keys.iter().copied()) {
        Some(near) if at + 1 == read.steps.len() => format!("did you mean '{near}'?"),
        Some(near) => format!("{parent} has no '{missing}'; did you mean '{near}'?"),
        None => format!("{parent} has: {}", key_list(&keys)),
    };
    Some(Diagnostic::warning(read.span.clone(), message).with_hint(hint))
}

/// The names among `names`, once each, in the order the samples were given.
fn samples_in_order<'s>(walks: &'s [(&'s Sample, Walk<'s>)], names: &[&str]) -> Vec<&'s str> {
    walks
        .iter()
        .map(|(sample, _)| sample.name.as_str())
        .filter(|name| names.contains(name))
        .collect()
}

/// A step into a value that cannot have it: `.x` into text, `.id` into a list.
fn mismatch(read: &BodyRead, sample: &Sample, at: usize, found: &str) -> Diagnostic {
    let parent = path_text(&read.steps[..at]);
    let path = path_text(&read.steps);
    let message = format!(
        "{parent} is {found} in sample {}, so {path} is undefined",
        sample.name
    );
    let hint = match (&read.steps[at], found) {
        (PathStep::Key(_), "a list") => format!(
            "read an item ({}) or loop over the list",
            path_text(&[&read.steps[..at], &[PathStep::Index(0)], &read.steps[at..]].concat())
        ),
        (PathStep::Index(_), "a mapping") => {
            "a mapping is read by key; an XML element that appears once is a mapping, not a list"
                .to_owned()
        }
        (_, "text") => "text has no fields".to_owned(),
        _ => format!("{found} has no fields or items"),
    };
    Diagnostic::warning(read.span.clone(), message).with_hint(hint)
}

/// Up to a dozen of a mapping's keys, for a hint.
fn key_list(keys: &BTreeSet<&str>) -> String {
    const SHOWN: usize = 12;
    let mut list: Vec<&str> = keys.iter().take(SHOWN).copied().collect();
    if keys.len() > SHOWN {
        list.push("...");
    }
    if list.is_empty() {
        "no keys".to_owned()
    } else {
        list.join(", ")
    }
}

/// A body path as a template would write it: `event.body.commits[*].id`, `event.body['@id']`.
pub fn path_text(steps: &[PathStep]) -> String {
    let mut text = "event.body".to_owned();
    for step in steps {
        crate::template::paths::push_step(&mut text, step);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::lang::compile::{CompileOptions, Compiler};
    use crate::lang::yaml;
    use serde_json::json;

    /// Compiles each `key: value` line of a YAML mapping with `compile` and returns the readings.
    fn readings(yaml_text: &str, compile: impl Fn(&mut Compiler, &str, &Node)) -> Vec<Reading> {
        let file = SourceFile::new("wf.yaml", yaml_text);
        let root = yaml::parse(&file).expect("yaml");
        let mut c = Compiler::new(file, CompileOptions::default());
        for (key, node) in root.as_map().expect("a mapping") {
            compile(&mut c, &key.name, node);
        }
        assert!(!c.diagnostics.has_errors(), "{:?}", c.diagnostics);
        c.readings
    }

    fn values(yaml_text: &str) -> Vec<Reading> {
        readings(yaml_text, |c, key, node| {
            if key == "if" {
                c.condition(node, "`if`");
            } else {
                c.value(node);
            }
        })
    }

    fn sample(name: &str, body: Json) -> Sample {
        Sample {
            name: name.to_owned(),
            body,
        }
    }

    fn push() -> Sample {
        sample(
            "push.json",
            json!({
                "ref": "refs/heads/main",
                "size": 2,
                "repository": {"full_name": "octo/hello", "owner": {"login": "octo"}},
                "commits": [{"id": "a1", "added": ["x"]}, {"id": "b2", "added": []}],
                "pull_request": null,
            }),
        )
    }

    /// `file:line:col: warning: message` and the hint of each warning.
    fn warnings(readings: &[Reading], samples: &[Sample]) -> Vec<String> {
        check(readings, samples)
            .sorted()
            .iter()
            .map(|d| format!("{d} | {}", d.hint.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn a_misspelled_key_is_placed_and_the_key_that_is_there_suggested() {
        let found = warnings(
            &values("a: \"{{ event.body.repository.ful_name }}\"\n"),
            &[push()],
        );
        assert_eq!(
            found,
            [
                "wf.yaml:1:8: warning: event.body.repository.ful_name is not in sample push.json | did you mean 'full_name'?"
            ]
        );
        let found = warnings(
            &values("a: \"x {{ event.body.repositry.owner.login }}\"\n"),
            &[push()],
        );
        assert_eq!(
            found,
            [
                "wf.yaml:1:10: warning: event.body.repositry.owner.login is not in sample push.json | event.body has no 'repositry'; did you mean 'repository'?"
            ]
        );
        let found = warnings(&values("a: \"{{ event.body.labels }}\"\n"), &[push()]);
        assert_eq!(
            found,
            [
                "wf.yaml:1:8: warning: event.body.labels is not in sample push.json | event.body has: commits, pull_request, ref, repository, size"
            ]
        );
    }

    #[test]
    fn paths_the_sample_has_are_not_reported() {
        let yaml = "a: \"{{ event.body.repository.owner.login }} {{ event.body.commits[1].id }}\"\n\
                    b: { jsonpath: \"$.commits[*].added\" }\n\
                    if: event.body.size > 1 and event.body['ref'] is string\n\
                    c: \"{{ event.headers['x-anything'] }} {{ run.id }}\"\n";
        assert_eq!(warnings(&values(yaml), &[push()]), Vec::<String>::new());
    }

    #[test]
    fn guarded_paths_are_not_reported_unless_the_unguarded_part_is_missing() {
        let yaml = "a: \"{{ event.body.nope | default('') }} {{ event.body.repository.nope is defined }}\"\n\
                    b: \"{{ event.body.nope.deeper | default('') }}\"\n\
                    c: \"{% if event.body.issue is defined %}{{ event.body.issue.title }}{% endif %}\"\n\
                    d: \"{% if event.body.repository is defined %}{{ event.body.repository.nmae }}{% endif %}\"\n";
        let found = warnings(&values(yaml), &[push()]);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with(
            "wf.yaml:2:8: warning: event.body.nope.deeper is not in sample push.json"
        ));
        // The guard proves `repository` there; what is read inside it must still exist.
        assert_eq!(
            found[1],
            "wf.yaml:4:49: warning: event.body.repository.nmae is not in sample push.json | event.body.repository has: full_name, owner"
        );
    }

    #[test]
    fn a_step_condition_guards_what_the_step_reads() {
        let yaml = "if: event.body.issue is defined\nlog: \"{{ event.body.issue.number }}\"\n";
        let readings = readings(yaml, |c, key, node| {
            if key == "if" {
                let mark = c.readings.len();
                c.condition(node, "`if`");
                c.assume_since(mark);
            } else {
                c.value(node);
            }
        });
        assert_eq!(warnings(&readings, &[push()]), Vec::<String>::new());
    }

    #[test]
    fn an_exists_rule_expects_the_path_may_be_missing() {
        let yaml = "exists: \"$.issue.number\"\nequals: \"$.issue.number\"\n";
        let readings = readings(yaml, |c, key, node| {
            let mark = c.readings.len();
            c.jsonpath(node);
            if key == "exists" {
                c.presence_tests_since(mark);
            }
        });
        let found = warnings(&readings, &[push()]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with(
            "wf.yaml:2:10: warning: event.body.issue.number is not in sample push.json"
        ));
    }

    #[test]
    fn certain_type_mismatches_are_reported() {
        let yaml = "a: \"{{ event.body.size | length }}\"\n\
                    b: \"{{ event.body.ref.name }}\"\n\
                    c: \"{% for x in event.body.size %}{% endfor %}\"\n\
                    d: \"{{ event.body.repository[0] }}\"\n\
                    e: \"{{ event.body.commits.id }}\"\n\
                    f: \"{{ event.body.ref[0] }} {{ event.body.ref | length }} {{ event.body.commits | length }}\"\n";
        let found = warnings(&values(yaml), &[push()]);
        assert_eq!(
            found,
            [
                "wf.yaml:1:8: warning: event.body.size is a number in sample push.json, which has no length | `length` counts the items of a list or a mapping, or the characters of text",
                "wf.yaml:2:8: warning: event.body.ref is text in sample push.json, so event.body.ref.name is undefined | text has no fields",
                "wf.yaml:3:17: warning: event.body.size is a number in sample push.json, which cannot be looped over | `{% for %}` walks a list, a mapping's keys or the characters of text",
                "wf.yaml:4:8: warning: event.body.repository is a mapping in sample push.json, so event.body.repository[0] is undefined | a mapping is read by key; an XML element that appears once is a mapping, not a list",
                "wf.yaml:5:8: warning: event.body.commits is a list in sample push.json, so event.body.commits.id is undefined | read an item (event.body.commits[0].id) or loop over the list",
            ]
        );
    }

    #[test]
    fn a_path_one_sample_has_is_not_reported_and_one_none_has_names_them_all() {
        let other = sample("tag.json", json!({"ref": "v1", "deleted": true}));
        let yaml = "a: \"{{ event.body.deleted }} {{ event.body.repository.full_name }}\"\nb: \"{{ event.body.delted }}\"\n";
        let found = warnings(&values(yaml), &[push(), other]);
        assert_eq!(
            found,
            [
                "wf.yaml:2:8: warning: event.body.delted is in none of the samples push.json, tag.json | did you mean 'deleted'?"
            ]
        );
    }

    #[test]
    fn below_a_null_or_past_a_list_s_end_nothing_is_known() {
        let yaml =
            "a: \"{{ event.body.pull_request.title }} {{ event.body.commits[5].whatever }}\"\n";
        assert_eq!(warnings(&values(yaml), &[push()]), Vec::<String>::new());
    }

    #[test]
    fn foreach_items_are_followed_into_the_nested_steps() {
        let yaml = "items: \"{{ event.body.commits }}\"\nlog: \"{{ commit.idd }} {{ commit.added | length }}\"\n\
                    items2: { jsonpath: \"$.repository\" }\nlog2: \"{{ item }}\"\n";
        let readings = readings(yaml, |c, key, node| match key {
            "items" | "items2" => {
                c.scope
                    .locals
                    .extend(["commit".to_owned(), "item".to_owned()]);
                let mark = c.readings.len();
                c.value(node);
                let name = if key == "items" { "commit" } else { "item" };
                c.bind_item(name, node, mark);
            }
            _ => {
                c.value(node);
            }
        });
        let found = warnings(&readings, &[push()]);
        assert_eq!(
            found,
            [
                "wf.yaml:2:10: warning: event.body.commits[*].idd is not in sample push.json | did you mean 'id'?",
            ]
        );
        // A singular query gives the mapping itself: no list to run over.
        let mapping = readings
            .iter()
            .find(|r| r.source == "$.repository")
            .expect("the query");
        assert!(mapping.expects_list);
    }

    #[test]
    fn a_foreach_over_something_that_is_not_a_list() {
        let yaml = "items: \"{{ event.body.repository }}\"\n";
        let readings = readings(yaml, |c, _, node| {
            let mark = c.readings.len();
            c.value(node);
            c.bind_item("item", node, mark);
        });
        let found = warnings(&readings, &[push()]);
        assert_eq!(
            found,
            [
                "wf.yaml:1:9: warning: `items` gives a mapping in sample push.json, not a list | a `foreach` runs once per item of a list"
            ]
        );
    }

    #[test]
    fn body_in_a_key_is_the_event_body() {
        let file = SourceFile::new("wf.yaml", "key: \"{{ body.repository.id }}\"\n");
        let root = yaml::parse(&file).expect("yaml");
        let mut c = Compiler::new(file, CompileOptions::default());
        c.scope.locals.insert("body".to_owned());
        c.scope.bindings.insert("body".to_owned(), Binding::Body);
        c.text(&root.as_map().expect("map")[0].1, "key");
        let found = warnings(&c.readings, &[push()]);
        assert_eq!(
            found,
            [
                "wf.yaml:1:10: warning: event.body.repository.id is not in sample push.json | event.body.repository has: full_name, owner"
            ]
        );
    }

    #[test]
    fn path_text_writes_what_a_template_would() {
        let steps = [
            PathStep::Key("order".into()),
            PathStep::Key("@id".into()),
            PathStep::Index(0),
            PathStep::Each,
            PathStep::Key("it's".into()),
        ];
        assert_eq!(path_text(&steps), r"event.body.order['@id'][0][*]['it\'s']");
    }

    #[test]
    fn nothing_is_checked_without_samples() {
        let readings = values("a: \"{{ event.body.anything }}\"\n");
        assert!(check(&readings, &[]).is_empty());
    }
}
