//! Data-driven cases in tests/workflows/: each folder's `validate` output is pinned in
//! `expected.txt`, and a folder with a payload also pins its run outcome in `expected-run.json`.
//! `UPDATE_GOLDEN=1 cargo test --test it golden` rewrites the expectations after a deliberate change.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflows");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/workflows")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 9, "golden cases went missing: {dirs:?}");
    dirs
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Compare with the pinned text, or pin it when updating.
fn check(expected_path: &Path, actual: &str, failures: &mut Vec<String>) {
    if updating() {
        std::fs::write(expected_path, actual).expect("write expectation");
        return;
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{} differs\n--- expected\n{expected}\n--- actual\n{actual}",
            expected_path.display()
        ));
    }
}

#[test]
fn validate_output_is_pinned_for_every_case() {
    let mut failures = Vec::new();
    for case in cases() {
        let output = Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .arg("validate")
            .arg(".")
            // Fire times depend on the clock: shown from a fixed instant.
            .env("HOOKFLOW_SCHEDULES_FROM", "2026-03-28T00:00:00Z")
            .current_dir(&case)
            .output()
            .expect("run hookflow validate");
        let stdout = String::from_utf8(output.stdout).expect("utf-8");
        let ok = stdout.lines().last().is_some_and(|l| l.starts_with("ok:"));
        assert_eq!(
            output.status.success(),
            ok,
            "{}: exit status must match the verdict\n{stdout}",
            case.display()
        );
        check(&case.join("expected.txt"), &stdout, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn run_outcome_is_pinned_for_cases_with_a_payload() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases() {
        let Some(payload) = std::fs::read_dir(&case)
            .expect("case dir")
            .map(|e| e.expect("entry").path())
            .find(|p| p.file_stem().is_some_and(|s| s == "payload"))
        else {
            continue;
        };
        ran += 1;
        let output = Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args(["run", "workflow.yaml", "--payload"])
            .arg(payload.file_name().expect("name"))
            .current_dir(&case)
            .output()
            .expect("run hookflow run");
        let mut outcome: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!(
                    "{}: stdout is not JSON ({e}); stderr:\n{}",
                    case.display(),
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        // The run id differs every time; everything else is deterministic.
        outcome["run_id"] = serde_json::Value::Null;
        let actual = serde_json::to_string_pretty(&outcome).expect("json") + "\n";
        check(&case.join("expected-run.json"), &actual, &mut failures);
    }
    assert!(ran >= 2, "cases with payloads went missing");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
