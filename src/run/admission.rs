//! What a new run is given when its event is accepted: its id, its workflow's version, and the
//! dedupe and concurrency keys rendered from the event, which the store enforces.

use chrono::{DateTime, Utc};

/// A run to create together with its event.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub workflow: String,
    pub version: String,
    /// Not created when another run holds this key.
    pub dedupe: Option<DedupeKey>,
    /// How many runs with this key may run at once, and what to do when none more may.
    pub concurrency: Option<RunConcurrency>,
}

/// A run's concurrency key (rendered from its event) and its workflow's rule for it.
///
/// The store enforces it: `claim` takes a queued run only while fewer than `limit` runs of the
/// workflow with the key are `running` or `retrying` (a run waiting for a retry or a `delay`
/// keeps its slot) and no older run with the key is still queued ahead of it. `accept` applies
/// `mode`: `cancel_previous` cancels the key's queued runs that never started; `skip` creates
/// the run already `cancelled` when `limit` runs with the key are unfinished.
#[derive(Debug, Clone)]
pub struct RunConcurrency {
    pub key: String,
    pub limit: u32,
    pub mode: ConcurrencyMode,
}

/// A delivery's identity for one workflow, and how long it is remembered.
#[derive(Debug, Clone)]
pub struct DedupeKey {
    pub key: String,
    pub expires_at: DateTime<Utc>,
}

/// What happens to a new run whose key has no free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrencyMode {
    /// It waits, queued, for a slot (oldest first).
    Queue,
    /// Like `Queue`, and the older runs with the key still queued (never started) are cancelled.
    CancelPrevious,
    /// It is not run: recorded as `cancelled` with the reason.
    Skip,
}

impl ConcurrencyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyMode::Queue => "queue",
            ConcurrencyMode::CancelPrevious => "cancel_previous",
            ConcurrencyMode::Skip => "skip",
        }
    }
}
