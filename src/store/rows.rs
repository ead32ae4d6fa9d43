//! Records read back from either backend's rows: one decoder per record, over the few column
//! types the schema uses, so SQLite and PostgreSQL cannot drift apart in how they read a run.

use super::{RunSummary, StoreError, parse_json, parse_timestamp};
use crate::engine::{Event, RunStatus, StepRecord, StepStatus};

/// A row's columns as the store's schema types them (text, integers, reals, flags, bytes).
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn integer(&self, column: &str) -> Result<i64, StoreError>;
    fn real(&self, column: &str) -> Result<f64, StoreError>;
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
}

pub(super) fn run_from_row(row: &impl Columns) -> Result<RunSummary, StoreError> {
    let status = row.text("status")?;
    let optional_time = |column: &str| -> Result<_, StoreError> {
        row.maybe_text(column)?
            .map(|t| parse_timestamp(&t))
            .transpose()
    };
    Ok(RunSummary {
        id: row.text("id")?,
        event_id: row.text("event_id")?,
        workflow: row.text("workflow")?,
        version: row.text("version")?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("run status '{status}'")))?,
        attempt: row.integer("attempt")? as u32,
        created_at: parse_timestamp(&row.text("created_at")?)?,
        started_at: optional_time("started_at")?,
        finished_at: optional_time("finished_at")?,
        error: row.maybe_text("error")?,
        response: row
            .maybe_text("response")?
            .map(|r| {
                serde_json::from_str(&r)
                    .map_err(|e| StoreError::Corrupt(format!("run response: {e}")))
            })
            .transpose()?,
    })
}

pub(super) fn event_from_row(row: &impl Columns) -> Result<Event, StoreError> {
    let object = |column: &str| -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        match parse_json(&row.text(column)?)? {
            serde_json::Value::Object(map) => Ok(map),
            _ => Err(StoreError::Corrupt(format!(
                "event {column} is not an object"
            ))),
        }
    };
    let params = object("params")?
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
        .collect();
    Ok(Event {
        id: row.text("id")?,
        method: row.text("method")?,
        path: row.text("path")?,
        params,
        query: object("query")?,
        headers: object("headers")?,
        body: parse_json(&row.text("body")?)?,
        raw: row.bytes("raw")?,
        received_at: parse_timestamp(&row.text("received_at")?)?,
        trigger: row
            .maybe_text("triggered_by")?
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("event trigger: {e}")))
            })
            .transpose()?
            .unwrap_or_default(),
    })
}

pub(super) fn step_from_row(row: &impl Columns) -> Result<StepRecord, StoreError> {
    let status = row.text("status")?;
    Ok(StepRecord {
        index: row.integer("idx")? as usize,
        name: row.text("name")?,
        kind: row.text("kind")?,
        status: StepStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("step status '{status}'")))?,
        input: parse_json(&row.text("input")?)?,
        output: parse_json(&row.text("output")?)?,
        error: row.maybe_text("error")?,
        filtered: row.flag("filtered")?,
        started_at: parse_timestamp(&row.text("started_at")?)?,
        duration_ms: row.real("duration_ms")?,
        attempts: row.integer("attempts")? as u32,
    })
}
