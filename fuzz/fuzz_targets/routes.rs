//! Route matching: `on.webhook.path` patterns, the route table built from workflows, and the
//! lookup of a request path, as ingress does it.
//!
//! Input: patterns one per line, an empty line, then request paths one per line. Every path is
//! matched against every valid pattern; the first few patterns also become workflows bound to
//! them, and every path is looked up in their route table.
#![no_main]

use std::collections::BTreeMap;

use hookflow::diag::SourceFile;
use hookflow::workflow::routes::RoutePattern;
use hookflow::workflow::{CompileOptions, load_sources};
use hookflow_fuzz::{split_head, split_line};
use libfuzzer_sys::fuzz_target;

const MAX_LINES: usize = 16;
/// Compiling a workflow per pattern costs far more than matching: a few show the table's order.
const MAX_TABLE: usize = 4;

fuzz_target!(|data: &[u8]| {
    let (pattern_lines, rest) = split_head(data);
    let patterns: Vec<RoutePattern> = pattern_lines
        .iter()
        .take(MAX_LINES)
        .filter_map(|line| RoutePattern::parse(&String::from_utf8_lossy(line)).ok())
        .collect();
    let paths = lines(rest);
    for pattern in &patterns {
        for path in &paths {
            let _ = pattern.matches(&String::from_utf8_lossy(path));
            params_round_trip(pattern, path);
        }
    }
    table_lookup(&patterns, &paths);
});

fn lines(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !rest.is_empty() && out.len() < MAX_LINES {
        let (line, after) = split_line(rest);
        out.push(line);
        rest = after;
    }
    out
}

/// A path made from the pattern, each parameter sent percent-encoded, gives the values back.
fn params_round_trip(pattern: &RoutePattern, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    let encoded: String = value.iter().map(|b| format!("%{b:02X}")).collect();
    let mut path = String::new();
    let mut names = Vec::new();
    for segment in pattern.as_str().trim_end_matches('/').split('/').skip(1) {
        path.push('/');
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                path.push_str(&encoded);
                names.push(name);
            }
            None => path.push_str(segment),
        }
    }
    let params = pattern
        .matches(&path)
        .unwrap_or_else(|| panic!("{path:?} does not match {:?}", pattern.as_str()));
    let expected = String::from_utf8_lossy(value);
    let want: BTreeMap<String, String> = names
        .iter()
        .map(|name| ((*name).to_owned(), expected.clone().into_owned()))
        .collect();
    assert_eq!(params, want, "{path:?} against {:?}", pattern.as_str());
}

/// The table finds a route for every path some bound pattern matches, and the one with the
/// most literal segments among those.
fn table_lookup(patterns: &[RoutePattern], paths: &[&[u8]]) {
    let sources = patterns
        .iter()
        .take(MAX_TABLE)
        .enumerate()
        .map(|(i, pattern)| {
            let path = serde_json::to_string(pattern.as_str()).expect("a string serializes");
            let text =
                format!("name: w{i}\non:\n  webhook:\n    path: {path}\nsteps:\n  - log: ok\n");
            SourceFile::new(format!("w{i}.yaml"), text)
        })
        .collect();
    let loaded = load_sources(sources, &CompileOptions::default());
    let table = &loaded.registry.routes;
    for path in paths {
        let path = String::from_utf8_lossy(path);
        let found = table.find(&path);
        let best = table
            .iter()
            .filter(|route| route.pattern.matches(&path).is_some())
            .map(|route| literals(&route.pattern))
            .max();
        match (found, best) {
            (None, None) => {}
            (Some((route, params)), Some(best)) => {
                assert_eq!(route.pattern.matches(&path), Some(params));
                assert_eq!(literals(&route.pattern), best, "{path:?}");
            }
            (found, best) => panic!(
                "{path:?}: found {:?}, a match with {best:?} literals",
                found.map(|(route, _)| route.pattern.as_str())
            ),
        }
    }
}

fn literals(pattern: &RoutePattern) -> usize {
    pattern
        .as_str()
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .filter(|segment| !(segment.starts_with('{') && segment.ends_with('}')))
        .count()
}
