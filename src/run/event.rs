//! The event a run runs on: a received webhook, a schedule's tick or a manual start, and how
//! templates see it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// What a run runs on, as templates see it under `event`: a received webhook, a schedule's
/// tick, or a payload given by hand (see [`Trigger`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub query: Map<String, Json>,
    /// Lower-case names; a repeated header's values joined with ", ".
    pub headers: Map<String, Json>,
    pub body: Json,
    #[serde(with = "raw_bytes")]
    pub raw: Vec<u8>,
    pub received_at: DateTime<Utc>,
    /// What started the run: events stored before triggers existed were all webhooks.
    #[serde(default)]
    pub trigger: Trigger,
    /// The span of the request that brought it, when traces are exported: the run's span is
    /// its child, however much later the run executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<super::TraceParent>,
}

/// What created an event: a webhook request, a schedule's tick, or someone by hand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    #[default]
    Webhook,
    Schedule {
        /// The tick, before any jitter.
        scheduled_at: DateTime<Utc>,
    },
    Manual {
        /// Who asked: `api`, `ui`, `cli:<user>`.
        started_by: String,
    },
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Webhook => "webhook",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Manual { .. } => "manual",
        }
    }
}

mod raw_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

impl Event {
    /// An event no request brought (a schedule's tick, a manual start): no method, path,
    /// parameters or headers, `body` as its payload, received now.
    pub fn without_request(trigger: Trigger, body: Json, raw: Vec<u8>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            method: String::new(),
            path: String::new(),
            params: BTreeMap::new(),
            query: Map::new(),
            headers: Map::new(),
            body,
            raw,
            received_at: Utc::now(),
            trigger,
            trace: None,
        }
    }

    /// The `event` object templates read, as JSON.
    pub fn template_json(&self) -> Json {
        serde_json::to_value(EventView::of(self)).unwrap_or_default()
    }

    /// The `event` object templates read, converted once for a run: the body is not copied
    /// into JSON first.
    pub fn template_value(&self) -> minijinja::Value {
        crate::template::to_template_value_of(&EventView::of(self))
    }
}

/// The fields of `event` in templates, borrowed from the event.
#[derive(Serialize)]
struct EventView<'a> {
    id: &'a str,
    method: &'a str,
    path: &'a str,
    params: &'a BTreeMap<String, String>,
    query: &'a Map<String, Json>,
    headers: &'a Map<String, Json>,
    body: &'a Json,
    raw: std::borrow::Cow<'a, str>,
    /// The file parts of a `multipart/form-data` body; empty otherwise.
    files: Vec<Json>,
    received_at: String,
    trigger: &'static str,
    scheduled_at: Option<String>,
    started_by: Option<&'a str>,
}

impl<'a> EventView<'a> {
    fn of(event: &'a Event) -> Self {
        // Valid UTF-8 (nearly every body) is checked by the fast path and borrowed.
        let raw = match std::str::from_utf8(&event.raw) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&event.raw),
        };
        Self {
            id: &event.id,
            method: &event.method,
            path: &event.path,
            params: &event.params,
            query: &event.query,
            headers: &event.headers,
            body: &event.body,
            raw,
            files: files_of(event),
            received_at: event
                .received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            trigger: event.trigger.kind(),
            scheduled_at: match &event.trigger {
                Trigger::Schedule { scheduled_at } => {
                    Some(scheduled_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                }
                _ => None,
            },
            started_by: match &event.trigger {
                Trigger::Manual { started_by } => Some(started_by),
                _ => None,
            },
        }
    }
}

/// The file parts of a `multipart/form-data` event, read from its raw bytes.
fn files_of(event: &Event) -> Vec<Json> {
    let Some(content_type) = event.headers.get("content-type").and_then(Json::as_str) else {
        return Vec::new();
    };
    if !super::multipart::is_multipart(content_type) {
        return Vec::new();
    }
    super::multipart::parts(content_type, &event.raw)
        .map(|parts| super::multipart::files(&parts))
        .unwrap_or_default()
}
