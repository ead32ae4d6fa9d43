//! Records read back from either backend's rows: one decoder per record, over the few column
//! types the schema uses, so SQLite and PostgreSQL cannot drift apart in how they read a run.

use super::{RunSummary, StoreError, parse_json, parse_timestamp};
use crate::run::{Event, RunStatus, StepRecord, StepStatus};

/// A row's columns as the store's schema types them (text, integers, reals, flags, bytes).
pub(super) trait Columns {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn integer(&self, column: &str) -> Result<i64, StoreError>;
    fn real(&self, column: &str) -> Result<f64, StoreError>;
    fn maybe_real(&self, column: &str) -> Result<Option<f64>, StoreError>;
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
        replayed_from_version: row.maybe_text("replayed_from_version")?,
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
        cancelled_by: row.maybe_text("cancelled_by")?,
        cancel_requested: row.maybe_text("cancel_requested")?.is_some(),
    })
}

/// The body as stored: nothing when the raw bytes hold it (`body_is_raw_json`), else its JSON
/// text. A webhook's JSON body is kept once, not twice.
pub(crate) fn stored_body(event: &Event) -> String {
    if body_is_raw_json(event) {
        String::new()
    } else {
        serde_json::to_string(&event.body).unwrap_or_else(|_| "null".to_owned())
    }
}

/// Whether a webhook's body is its raw bytes parsed as JSON (an `application/json` body that
/// parsed to an object or array), so storing the raw bytes is enough.
pub(super) fn body_is_raw_json(event: &Event) -> bool {
    let json_type = event
        .headers
        .get("content-type")
        .and_then(serde_json::Value::as_str)
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    event.trigger == crate::run::Trigger::Webhook
        && json_type
        && (event.body.is_object() || event.body.is_array())
}

fn parse_json_bytes(raw: &[u8]) -> Result<serde_json::Value, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("event body: {e}")))
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
    let raw = row.bytes("raw")?;
    Ok(Event {
        id: row.text("id")?,
        method: row.text("method")?,
        path: row.text("path")?,
        params,
        query: object("query")?,
        headers: object("headers")?,
        body: match row.text("body")? {
            // Stored once, as the raw bytes (`body_is_raw_json`).
            text if text.is_empty() => parse_json_bytes(&raw)?,
            text => parse_json(&text)?,
        },
        raw,
        received_at: parse_timestamp(&row.text("received_at")?)?,
        trigger: row
            .maybe_text("triggered_by")?
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("event trigger: {e}")))
            })
            .transpose()?
            .unwrap_or_default(),
        trace: row
            .maybe_text("trace_parent")?
            .map(|text| {
                crate::run::TraceParent::parse(&text)
                    .map_err(|e| StoreError::Corrupt(format!("event trace_parent: {e}")))
            })
            .transpose()?,
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
        earlier: match row.maybe_text("earlier")? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("a step's earlier attempts: {e}")))?,
            None => Vec::new(),
        },
    })
}

/// A step's earlier attempts as stored: JSON, or NULL when there were none.
pub(super) fn earlier_text(record: &StepRecord) -> Option<String> {
    (!record.earlier.is_empty()).then(|| serde_json::to_string(&record.earlier).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Trigger;

    fn webhook(content_type: &str, raw: &str) -> Event {
        let mut headers = serde_json::Map::new();
        headers.insert("content-type".into(), content_type.into());
        Event {
            id: "e".into(),
            method: "POST".into(),
            path: "/h".into(),
            params: Default::default(),
            query: Default::default(),
            headers,
            body: serde_json::from_str(raw).unwrap_or(serde_json::Value::String(raw.into())),
            raw: raw.as_bytes().to_vec(),
            received_at: chrono::Utc::now(),
            trigger: Trigger::Webhook,
            trace: None,
        }
    }

    #[test]
    fn only_a_json_webhook_body_is_left_to_its_raw_bytes() {
        assert!(body_is_raw_json(&webhook(
            "application/json; charset=utf-8",
            r#"{"a": [1, "x"]}"#
        )));
        assert!(body_is_raw_json(&webhook("Application/JSON", "[1, 2]")));
        // A scalar or another media type keeps its parsed body.
        assert!(!body_is_raw_json(&webhook("application/json", "12")));
        assert!(!body_is_raw_json(&webhook("text/plain", r#"{"a": 1}"#)));
        assert!(!body_is_raw_json(&webhook(
            "application/x-www-form-urlencoded",
            r#"{"a": 1}"#
        )));
        let mut manual = webhook("application/json", r#"{"a": 1}"#);
        manual.trigger = Trigger::Manual {
            started_by: "api".into(),
        };
        assert!(!body_is_raw_json(&manual));
        // What the reader parses again is the body that was accepted, key order included.
        let event = webhook("application/json", r#"{"z": 1, "a": {"y": [true, null]}}"#);
        assert_eq!(parse_json_bytes(&event.raw).unwrap(), event.body);
        assert_eq!(
            serde_json::to_string(&parse_json_bytes(&event.raw).unwrap()).unwrap(),
            r#"{"z":1,"a":{"y":[true,null]}}"#
        );
    }
}
