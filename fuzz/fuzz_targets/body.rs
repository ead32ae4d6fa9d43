//! Request bodies: the JSON, form, XML and text parsers, picked by the content type as ingress
//! picks them.
//!
//! Input: the `Content-Type` value on the first line (an empty first line: no header), then
//! the raw body.
#![no_main]

use hookflow::http::body::{BodyKind, BodyLimits, body_kind, parse_body};
use hookflow_fuzz::split_line;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (content_type, raw) = split_line(data);
    let content_type = String::from_utf8_lossy(content_type);
    let content_type = (!content_type.is_empty()).then_some(content_type.as_ref());
    let limits = BodyLimits::default();
    let parsed = parse_body(content_type, raw, &limits);
    let value = match parsed {
        Ok(value) => value,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    if raw.is_empty() {
        assert_eq!(value, Value::Null);
        return;
    }
    match body_kind(content_type) {
        BodyKind::Json => assert!(depth(&value) <= limits.max_depth),
        BodyKind::Form => assert!(is_form(&value), "{value}"),
        BodyKind::Xml => {
            let root = value.as_object().expect("an XML body is an object");
            assert_eq!(root.len(), 1, "one root element");
        }
        BodyKind::Text => assert!(value.is_string()),
    }
});

/// Containers counted like the parser counts them: `[]` is 1 deep, `1` is 0.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A form is flat: each key is a string, or the strings of a repeated key.
fn is_form(value: &Value) -> bool {
    let Some(fields) = value.as_object() else {
        return false;
    };
    fields.values().all(|field| match field {
        Value::String(_) => true,
        Value::Array(items) => items.len() >= 2 && items.iter().all(Value::is_string),
        _ => false,
    })
}
