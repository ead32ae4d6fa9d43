//! Bulk replay: every finished run of a workflow that matches a status, a time range and an
//! error text, replayed one after another at a rate, so a receiver that just recovered is not
//! flooded. A preview counts them and replays nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::admin::{ReplayAsk, replay};
use crate::run::RunStatus;
use crate::store::{RunCursor, RunFilter, RunSummary, StoreError};

/// The most runs one bulk replay takes.
pub const MAX_RUNS: usize = 10_000;
/// The fastest pace, in runs per second.
pub const MAX_RATE: f64 = 100.0;

/// What a bulk replay asks for (the API's JSON body, the UI's form).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkAsk {
    /// Runs with this status [default: failed].
    #[serde(default = "failed")]
    pub status: String,
    /// Runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Runs created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Runs whose error contains this text.
    pub error: Option<String>,
    /// Runs replayed per second [default: 1].
    #[serde(default = "one_per_second")]
    pub rate: f64,
    #[serde(default)]
    pub latest: bool,
    #[serde(default)]
    pub from_start: bool,
    /// Count the runs, replay nothing.
    #[serde(default)]
    pub preview: bool,
}

fn failed() -> String {
    "failed".to_owned()
}

fn one_per_second() -> f64 {
    1.0
}

/// The answer: how many runs match, and for a preview their ids (oldest first).
#[derive(Debug, Serialize)]
pub struct BulkAnswer {
    pub workflow: String,
    pub matched: usize,
    pub preview: bool,
    pub rate: f64,
    /// How long the replays take at the rate.
    pub seconds: f64,
    pub run_ids: Vec<String>,
}

/// Why a bulk replay was refused.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error(
        "unknown status '{0}'; expected failed, cancelled, succeeded or filtered (a finished run)"
    )]
    Status(String),
    #[error("rate must be above 0 and at most {MAX_RATE} runs a second")]
    Rate,
    #[error("the runs could not be read: {0}")]
    Read(#[from] StoreError),
}

/// Checks the ask, finds the matching runs and, unless it is a preview, replays them in the
/// background at the rate asked.
pub async fn start(
    state: &AppState,
    workflow: &str,
    ask: BulkAsk,
) -> Result<BulkAnswer, BulkError> {
    let status = finished_status(&ask.status)?;
    if !(ask.rate > 0.0 && ask.rate <= MAX_RATE) {
        return Err(BulkError::Rate);
    }
    let runs = matching(state, workflow, status, &ask).await?;
    let run_ids: Vec<String> = runs.into_iter().map(|r| r.id).collect();
    let answer = BulkAnswer {
        workflow: workflow.to_owned(),
        matched: run_ids.len(),
        preview: ask.preview,
        rate: ask.rate,
        seconds: run_ids.len() as f64 / ask.rate,
        run_ids: run_ids.clone(),
    };
    if !ask.preview {
        let replay_ask = ReplayAsk {
            from_start: ask.from_start,
            latest: ask.latest,
        };
        tokio::spawn(replay_each(state.clone(), run_ids, replay_ask, ask.rate));
    }
    Ok(answer)
}

fn finished_status(text: &str) -> Result<RunStatus, BulkError> {
    match RunStatus::parse(text) {
        Some(
            status @ (RunStatus::Failed
            | RunStatus::Cancelled
            | RunStatus::Succeeded
            | RunStatus::Filtered),
        ) => Ok(status),
        _ => Err(BulkError::Status(text.to_owned())),
    }
}

/// The workflow's runs with the status, in the time range and with the error text, oldest
/// first, read a page at a time.
async fn matching(
    state: &AppState,
    workflow: &str,
    status: RunStatus,
    ask: &BulkAsk,
) -> Result<Vec<RunSummary>, StoreError> {
    let mut filter = RunFilter {
        workflow: Some(workflow.to_owned()),
        status: Some(status),
        limit: 1000,
        since: ask.since,
        until: ask.until,
        before: None,
    };
    let mut runs = Vec::new();
    loop {
        let page = state.store.list_runs(&filter).await?;
        let last = page.len() < filter.limit as usize;
        filter.before = page.last().map(RunCursor::after);
        runs.extend(page.into_iter().filter(|run| {
            ask.error
                .as_deref()
                .is_none_or(|text| run.error.as_deref().is_some_and(|e| e.contains(text)))
        }));
        if last || runs.len() >= MAX_RUNS {
            break;
        }
    }
    runs.truncate(MAX_RUNS);
    // Listed newest first; replayed in the order they first happened.
    runs.reverse();
    Ok(runs)
}

/// Replays the runs one after another, `rate` a second; a run that cannot be replayed any more
/// (replayed meanwhile, say) is logged and skipped.
async fn replay_each(state: AppState, run_ids: Vec<String>, ask: ReplayAsk, rate: f64) {
    let pause = Duration::from_secs_f64(1.0 / rate);
    let total = run_ids.len();
    for (n, run_id) in run_ids.iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(pause).await;
        }
        if let Err(err) = replay(&state, run_id, ask).await {
            tracing::warn!(run_id = %run_id, error = %err, "bulk replay skipped a run");
        }
    }
    tracing::info!(runs = total, "bulk replay done");
}
