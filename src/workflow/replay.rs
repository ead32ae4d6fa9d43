//! A run's step records held against a workflow's current definition, for a replay on the
//! latest version: which records a replay from the failed step keeps, and whether the
//! definition still has each of their steps in place, so no finished step's effects run twice.

use super::Workflow;
use crate::run::{StepRecord, StepStatus};

/// The records a replay from the failed step keeps: those numbered before the first failed
/// one, or all of them when none failed. The store's replay forgets the others by the same
/// rule (in SQL).
pub fn kept_by_replay(steps: &[StepRecord]) -> impl Iterator<Item = &StepRecord> {
    let first_failed = steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .map(|s| s.index)
        .min();
    steps
        .iter()
        .filter(move |s| first_failed.is_none_or(|failed| s.index < failed))
}

impl Workflow {
    /// The first of `kept` whose step this definition does not have at the same place, with
    /// the same name and kind. A resumed run finds a step's record by its place and name, so
    /// such a step (renamed, moved, removed, or nested in a loop or branch) would run again.
    pub fn misplaced<'r>(
        &self,
        kept: impl IntoIterator<Item = &'r StepRecord>,
    ) -> Option<&'r StepRecord> {
        kept.into_iter().find(|record| !self.holds_in_place(record))
    }

    /// Whether the top-level step at the record's place (the `on_error` steps numbered after
    /// `steps`, as the engine numbers them) is the record's.
    fn holds_in_place(&self, record: &StepRecord) -> bool {
        let step = self.steps.iter().chain(&self.on_error).nth(record.index);
        step.is_some_and(|s| s.name == record.name && s.kind.name().as_str() == record.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::lang::compile::CompileOptions;

    fn workflow(steps: &str) -> Workflow {
        let text = format!("on: {{ webhook: {{ path: /hooks/x }} }}\nsteps:\n{steps}");
        let (compiled, diagnostics) =
            super::super::compile_file(SourceFile::new("x.yaml", text), &CompileOptions::default());
        compiled.unwrap_or_else(|| panic!("compiles: {diagnostics:?}"))
    }

    fn record(index: usize, name: &str, kind: &str, status: StepStatus) -> StepRecord {
        StepRecord {
            index,
            name: name.into(),
            kind: kind.into(),
            status,
            input: serde_json::Value::Null,
            output: serde_json::Value::Null,
            error: None,
            filtered: false,
            started_at: chrono::Utc::now(),
            duration_ms: 1.0,
            attempts: 1,
            earlier: Vec::new(),
        }
    }

    const HTTP: &str = "http: { url: \"http://127.0.0.1:9/\" }";

    #[test]
    fn a_replay_keeps_the_records_before_the_first_failed_one() {
        let steps = [
            record(0, "a", "http", StepStatus::Succeeded),
            record(1, "b", "http", StepStatus::Failed),
            record(2, "c", "log", StepStatus::Succeeded),
        ];
        let kept: Vec<&str> = kept_by_replay(&steps).map(|r| r.name.as_str()).collect();
        assert_eq!(kept, ["a"]);
        let all: Vec<&str> = kept_by_replay(&steps[..1])
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(all, ["a"], "none failed: all are kept");
    }

    #[test]
    fn a_kept_step_must_keep_its_place_name_and_kind() {
        let kept = [record(0, "a", "http", StepStatus::Succeeded)];
        let same = workflow(&format!(
            "  - name: a\n    {HTTP}\n  - name: b2\n    {HTTP}\n"
        ));
        assert!(
            same.misplaced(&kept).is_none(),
            "the failed step may be renamed"
        );
        for (steps, why) in [
            (
                format!("  - name: new\n    {HTTP}\n  - name: a\n    {HTTP}\n"),
                "moved",
            ),
            (format!("  - name: a2\n    {HTTP}\n"), "renamed"),
            ("  - name: a\n    log: hi\n".to_owned(), "another kind"),
            ("  - name: z\n    log: hi\n".to_owned(), "removed"),
        ] {
            let misplaced = workflow(&steps).misplaced(&kept).map(|r| r.name.as_str());
            assert_eq!(misplaced, Some("a"), "{why}");
        }
        // A loop's nested record is never at a top-level place.
        let nested = [record(2, "each[0].post", "http", StepStatus::Succeeded)];
        assert!(same.misplaced(&nested).is_some());
    }
}
