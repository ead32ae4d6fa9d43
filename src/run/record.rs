//! What a run leaves behind: a record per step and the answer of a synchronous webhook.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::StepStatus;

/// What a secret's value is replaced with wherever a run's records could show it.
pub const MASK: &str = "***";

/// What one step did: its rendered input, its output or error, and its timing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub name: String,
    pub kind: String,
    pub status: StepStatus,
    pub input: Json,
    pub output: Json,
    pub error: Option<String>,
    /// The run stopped here because a filter did not pass.
    pub filtered: bool,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    /// How many times the step was tried, this time included.
    #[serde(default = "one")]
    pub attempts: u32,
    /// The attempts before this one, oldest first: what each got before the step was retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Attempt>,
}

fn one() -> u32 {
    1
}

/// One earlier attempt of a step that was retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub error: Option<String>,
    /// The HTTP status of the answer (`http`, `ci`), when there was one.
    pub answer_status: Option<u16>,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
}

impl StepRecord {
    /// This record's attempt, as one of the earlier attempts of the next.
    pub fn as_attempt(&self) -> Attempt {
        Attempt {
            attempt: self.attempts,
            error: self.error.clone(),
            answer_status: self
                .output
                .get("status")
                .and_then(Json::as_u64)
                .and_then(|s| u16::try_from(s).ok()),
            started_at: self.started_at,
            duration_ms: self.duration_ms,
        }
    }

    /// Every attempt of the step, this one last.
    pub fn all_attempts(&self) -> Vec<Attempt> {
        let mut all = self.earlier.clone();
        all.push(self.as_attempt());
        all
    }
}

/// The answer to a synchronous webhook; a text body is sent as is, any other value as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Json,
}

impl SyncResponse {
    pub fn to_json(&self) -> Json {
        let headers: serde_json::Map<String, Json> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        serde_json::json!({ "status": self.status, "headers": headers, "body": self.body })
    }
}
