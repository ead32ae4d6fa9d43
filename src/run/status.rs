//! The states of a run and of a step, and the transitions a run may make between them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    Skipped,
    /// Failed, and will be tried again: not finished.
    Retrying,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Retrying => "retrying",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "succeeded" => Some(StepStatus::Succeeded),
            "failed" => Some(StepStatus::Failed),
            "skipped" => Some(StepStatus::Skipped),
            "retrying" => Some(StepStatus::Retrying),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    /// Waiting for a step's next attempt, due at a stored time.
    Retrying,
    Succeeded,
    Failed,
    Filtered,
    /// Never ran, or stopped: superseded by a newer run (`cancel_previous`), skipped because
    /// its concurrency key was busy (`skip`), or cancelled by hand (`cancelled_by` says who).
    /// The reason is the run's error.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Retrying => "retrying",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Filtered => "filtered",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "queued" => Some(RunStatus::Queued),
            "running" => Some(RunStatus::Running),
            "retrying" => Some(RunStatus::Retrying),
            "succeeded" => Some(RunStatus::Succeeded),
            "failed" => Some(RunStatus::Failed),
            "filtered" => Some(RunStatus::Filtered),
            "cancelled" => Some(RunStatus::Cancelled),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Filtered | RunStatus::Cancelled
        )
    }
}

/// Every transition a run may make, `None` standing for a run not yet created: the state
/// machine of docs/language.md ("The run state machine"), which a test holds this table to.
pub const TRANSITIONS: &[(Option<RunStatus>, RunStatus)] = {
    use RunStatus::*;
    &[
        (None, Queued),
        (None, Cancelled),
        (Some(Queued), Running),
        (Some(Queued), Queued),
        (Some(Queued), Cancelled),
        (Some(Running), Succeeded),
        (Some(Running), Failed),
        (Some(Running), Filtered),
        (Some(Running), Retrying),
        (Some(Running), Running),
        (Some(Running), Cancelled),
        (Some(Retrying), Queued),
        (Some(Retrying), Cancelled),
        (Some(Failed), Queued),
        (Some(Succeeded), Queued),
        (Some(Filtered), Queued),
        (Some(Cancelled), Queued),
    ]
};

impl RunStatus {
    /// Every status, in the order a run usually meets them.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Retrying,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Filtered,
        RunStatus::Cancelled,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The `from | to` pairs of the state machine table in docs/language.md.
    fn documented() -> BTreeSet<(Option<&'static str>, &'static str)> {
        let doc = include_str!("../../docs/language.md");
        let start = doc
            .find("The run state machine, every transition:")
            .expect("docs/language.md has the run state machine");
        let rows = doc[start..]
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2);
        let mut pairs = BTreeSet::new();
        for row in rows {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            for from in states(cells[1]) {
                for to in states(cells[2]) {
                    pairs.insert((from, to.expect("a transition ends in a state")));
                }
            }
        }
        pairs
    }

    /// "`a` / `b`" as its states; "(new)" as `None`.
    fn states(cell: &'static str) -> Vec<Option<&'static str>> {
        cell.split('/')
            .map(|state| match state.trim() {
                "(new)" => None,
                quoted => Some(quoted.trim_matches('`')),
            })
            .collect()
    }

    #[test]
    fn the_transition_table_is_the_documented_state_machine() {
        let table: BTreeSet<_> = TRANSITIONS
            .iter()
            .map(|(from, to)| (from.map(RunStatus::as_str), to.as_str()))
            .collect();
        assert_eq!(table, documented());
    }

    #[test]
    fn all_lists_every_status_once() {
        for status in RunStatus::ALL {
            // A new status fails to compile here (no wildcard) until `ALL` has it too.
            let position = match status {
                RunStatus::Queued => 0,
                RunStatus::Running => 1,
                RunStatus::Retrying => 2,
                RunStatus::Succeeded => 3,
                RunStatus::Failed => 4,
                RunStatus::Filtered => 5,
                RunStatus::Cancelled => 6,
            };
            assert_eq!(RunStatus::ALL[position], status);
        }
    }

    #[test]
    fn every_status_parses_from_its_name() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::parse("done"), None);
    }

    #[test]
    fn a_finished_run_only_moves_again_when_replayed() {
        for status in RunStatus::ALL.into_iter().filter(|s| s.is_final()) {
            let next: Vec<_> = RunStatus::ALL
                .into_iter()
                .filter(|to| TRANSITIONS.contains(&(Some(status), *to)))
                .collect();
            assert_eq!(next, [RunStatus::Queued], "{status:?}");
        }
    }
}
