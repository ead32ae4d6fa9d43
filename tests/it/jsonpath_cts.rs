//! Owns the RFC 9535 JSONPath Compliance Test Suite run against `hookflow::jsonpath::JsonPath`.
//!
//! Every case in `tests/fixtures/jsonpath/cts.json` is run; the set of failing cases must equal
//! `KNOWN_FAILURES` exactly, so both a regression and an upstream fix are reported.

use std::collections::BTreeSet;

use hookflow::jsonpath::JsonPath;
use serde::Deserialize;
use serde_json::Value;

const CTS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jsonpath/cts.json"
);

const EXPECTED_CASES: usize = 703;

/// Cases that `jsonpath-rust` 1.0 (behind `hookflow::jsonpath`) gets wrong, by CTS test name.
const KNOWN_FAILURES: &[&str] = &[
    // `$..['a','d']`: the descendant segment yields all `a` matches, then all `d` matches,
    // instead of both selectors per visited node (RFC 9535 section 2.5.2.2 order).
    "basic, descendant segment, multiple selectors",
    "basic, descendant segment, object traversal, multiple selectors",
    // `$[?@[?@>1]]`: a filter query inside a filter's existence test selects nothing.
    "filter, nested",
    // `count()` returns a ValueType, which cannot be a bare test expression; accepted anyway.
    "functions, count, result must be compared",
    // `length()` returns a ValueType, which cannot be a bare test expression; accepted anyway.
    "functions, length, result must be compared",
    // `length()` takes a ValueType, so a non-singular query argument must be rejected.
    "functions, length, non-singular query arg",
    "functions, length, non-singular query arg, multiple index selectors",
    "functions, length, non-singular query arg, multiple name selectors",
    // `value()` returns a ValueType, which cannot be a bare test expression; accepted anyway.
    "functions, value, result must be compared",
];

#[derive(Deserialize)]
struct Suite {
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    selector: String,
    #[serde(default)]
    document: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    results: Option<Vec<Value>>,
    #[serde(default)]
    invalid_selector: bool,
}

/// Why the case failed, or `None` when it passed.
fn run_case(case: &Case) -> Option<String> {
    let compiled = JsonPath::compile(&case.selector);
    if case.invalid_selector {
        return compiled
            .ok()
            .map(|_| "invalid selector was accepted".to_owned());
    }
    let path = match compiled {
        Ok(path) => path,
        Err(err) => return Some(format!("valid selector was rejected: {err}")),
    };
    let Some(document) = case.document.as_ref() else {
        return Some("valid selector case has no `document`".to_owned());
    };
    let got = Value::Array(path.select_all(document).into_iter().cloned().collect());
    let acceptable: Vec<&Value> = match (&case.result, &case.results) {
        (Some(result), _) => vec![result],
        (None, Some(results)) => results.iter().collect(),
        (None, None) => return Some("case has neither `result` nor `results`".to_owned()),
    };
    if acceptable.contains(&&got) {
        None
    } else {
        let expected: Vec<String> = acceptable.iter().map(ToString::to_string).collect();
        Some(format!("got {got}, expected {}", expected.join(" or ")))
    }
}

#[test]
fn rfc9535_compliance_suite() {
    let text = std::fs::read_to_string(CTS_PATH).expect("the CTS fixture is checked in");
    let suite: Suite = serde_json::from_str(&text).expect("cts.json is in the CTS JSON format");
    assert_eq!(
        suite.tests.len(),
        EXPECTED_CASES,
        "cts.json should hold the whole compliance suite"
    );

    let mut failures = BTreeSet::new();
    for case in &suite.tests {
        if let Some(reason) = run_case(case) {
            println!("FAIL `{}` ({}): {reason}", case.name, case.selector);
            failures.insert(case.name.as_str());
        }
    }
    println!(
        "jsonpath compliance: {}/{} passed",
        suite.tests.len() - failures.len(),
        suite.tests.len()
    );

    let known: BTreeSet<&str> = KNOWN_FAILURES.iter().copied().collect();
    assert_eq!(
        known.len(),
        KNOWN_FAILURES.len(),
        "KNOWN_FAILURES has duplicates"
    );
    let unknown_names: Vec<&str> = known
        .iter()
        .copied()
        .filter(|name| !suite.tests.iter().any(|case| case.name == *name))
        .collect();
    assert!(
        unknown_names.is_empty(),
        "KNOWN_FAILURES names cases that are not in cts.json: {unknown_names:?}"
    );
    let new_failures: Vec<&str> = failures.difference(&known).copied().collect();
    let now_passing: Vec<&str> = known.difference(&failures).copied().collect();
    assert!(
        new_failures.is_empty() && now_passing.is_empty(),
        "JSONPath compliance changed.\n  new failures (regressions): {new_failures:#?}\n  \
         known failures that now pass (remove from KNOWN_FAILURES): {now_passing:#?}"
    );
}
