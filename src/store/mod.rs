//! The store: the only module with SQL. Events and runs are committed before a webhook is
//! answered; each finished step is recorded so an interrupted run resumes where it stopped.

mod sqlite;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use crate::engine::{Event, RunStatus, StepRecord};
use crate::steps::respond::SyncResponse;
pub use sqlite::Store;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {message}")]
    Open { path: String, message: String },
    #[error("store write failed: {0}")]
    Write(String),
    #[error("store read failed: {0}")]
    Read(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
}

/// A run to create together with its event.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub workflow: String,
    pub version: String,
    /// Not created when another run holds this key.
    pub dedupe: Option<DedupeKey>,
}

/// A delivery's identity for one workflow, and how long it is remembered.
#[derive(Debug, Clone)]
pub struct DedupeKey {
    pub key: String,
    pub expires_at: DateTime<Utc>,
}

/// The answer to a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    Queued {
        attempt: u32,
    },
    NotFound,
    /// Only a finished run can be replayed; this one is in the given status.
    NotFinished(String),
}

/// What an accept created, and the runs that already held a repeated delivery.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    pub created: Vec<String>,
    pub duplicate_of: Vec<String>,
}

/// A run as listed: no steps, no event.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub event_id: String,
    pub workflow: String,
    pub version: String,
    pub status: RunStatus,
    pub attempt: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub response: Option<SyncResponse>,
}

impl RunSummary {
    pub fn duration_ms(&self) -> Option<i64> {
        Some((self.finished_at? - self.started_at?).num_milliseconds())
    }
}

/// A run with everything it did.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunSummary,
    pub event: Event,
    pub steps: Vec<StepRecord>,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
}

/// A workflow definition as a run started with it.
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    pub path: String,
    pub source: String,
}

pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp '{text}': {e}")))
}

pub(crate) fn parse_json(text: &str) -> Result<Json, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("JSON column: {e}")))
}
