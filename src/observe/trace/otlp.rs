//! The OTLP/HTTP protobuf body of a batch of spans (`ExportTraceServiceRequest`), written by
//! hand: the wire format is varints and length-delimited fields, and the few messages it needs
//! are fixed by opentelemetry-proto (collector/trace/v1, trace/v1, common/v1, resource/v1).

use std::time::{SystemTime, UNIX_EPOCH};

use super::{AttributeValue, Span, SpanKind};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// What every exported batch says about who sent it.
pub struct Resource<'a> {
    pub service_name: &'a str,
    pub scope_version: &'a str,
}

/// `ExportTraceServiceRequest { resource_spans: [ResourceSpans { resource, scope_spans:
/// [ScopeSpans { scope, spans }] }] }`.
pub fn export_request(resource: &Resource<'_>, spans: &[Span]) -> Vec<u8> {
    let mut scope_spans = Vec::new();
    let mut scope = Vec::new();
    string_field(&mut scope, 1, "hookflow");
    string_field(&mut scope, 2, resource.scope_version);
    message_field(&mut scope_spans, 1, &scope);
    for span in spans {
        message_field(&mut scope_spans, 2, &span_message(span));
    }
    let mut resource_message = Vec::new();
    message_field(
        &mut resource_message,
        1,
        &key_value(
            "service.name",
            &AttributeValue::Text(resource.service_name.to_owned()),
        ),
    );
    let mut resource_spans = Vec::new();
    message_field(&mut resource_spans, 1, &resource_message);
    message_field(&mut resource_spans, 2, &scope_spans);
    let mut request = Vec::new();
    message_field(&mut request, 1, &resource_spans);
    request
}

/// `opentelemetry.proto.trace.v1.Span`.
fn span_message(span: &Span) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    bytes_field(&mut out, 1, &span.context.trace_id);
    bytes_field(&mut out, 2, &span.context.span_id);
    if let Some(parent) = &span.parent {
        bytes_field(&mut out, 4, parent);
    }
    string_field(&mut out, 5, &span.name);
    varint_field(&mut out, 6, span_kind(span.kind));
    fixed64_field(&mut out, 7, unix_nanos(span.start));
    fixed64_field(&mut out, 8, unix_nanos(span.end));
    for (key, value) in &span.attributes {
        message_field(&mut out, 9, &key_value(key, value));
    }
    // Status: UNSET (0) unless something failed, ERROR (2) then.
    let mut status = Vec::new();
    if span.failed {
        varint_field(&mut status, 3, 2);
    }
    message_field(&mut out, 15, &status);
    // The W3C trace flags in the low byte.
    tag(&mut out, 16, FIXED32);
    out.extend_from_slice(&u32::from(span.context.sampled).to_le_bytes());
    out
}

/// `Span.SpanKind`: INTERNAL 1, SERVER 2, CLIENT 3.
fn span_kind(kind: SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `KeyValue { key, value: AnyValue { string_value (1) | int_value (3) } }`.
fn key_value(key: &str, value: &AttributeValue) -> Vec<u8> {
    let mut any = Vec::new();
    match value {
        AttributeValue::Text(text) => string_field(&mut any, 1, text),
        AttributeValue::Integer(number) => varint_field(&mut any, 3, *number as u64),
    }
    let mut out = Vec::with_capacity(key.len() + any.len() + 4);
    string_field(&mut out, 1, key);
    message_field(&mut out, 2, &any);
    out
}

fn tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, VARINT);
    varint(out, value);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, LENGTH_DELIMITED);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn string_field(out: &mut Vec<u8>, field: u32, text: &str) {
    bytes_field(out, field, text.as_bytes());
}

fn message_field(out: &mut Vec<u8>, field: u32, message: &[u8]) {
    bytes_field(out, field, message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::TraceParent;
    use std::time::Duration;

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let mut out = Vec::new();
        varint(&mut out, 1);
        varint(&mut out, 300);
        varint(&mut out, u64::MAX);
        assert_eq!(
            out,
            [
                1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]
        );
        // A negative int64 is ten bytes, as protobuf writes it.
        let mut negative = Vec::new();
        key_value("n", &AttributeValue::Integer(-1))
            .iter()
            .for_each(|b| negative.push(*b));
        assert_eq!(negative.len(), 3 + 2 + 1 + 10);
    }

    #[test]
    fn a_span_is_written_field_by_field() {
        let start = UNIX_EPOCH + Duration::from_nanos(1_000);
        let span = Span {
            context: TraceParent {
                trace_id: [0x11; 16],
                span_id: [0x22; 8],
                sampled: true,
            },
            parent: Some([0x33; 8]),
            name: "s".into(),
            kind: SpanKind::Server,
            start,
            end: start + Duration::from_nanos(1),
            attributes: vec![("k", AttributeValue::Integer(7))],
            failed: true,
        };
        let bytes = span_message(&span);
        let mut expected = vec![0x0a, 16];
        expected.extend([0x11; 16]);
        expected.extend([0x12, 8]);
        expected.extend([0x22; 8]);
        expected.extend([0x22, 8]);
        expected.extend([0x33; 8]);
        expected.extend([0x2a, 1, b's']);
        expected.extend([0x30, 2]);
        expected.push(0x39);
        expected.extend(1_000u64.to_le_bytes());
        expected.push(0x41);
        expected.extend(1_001u64.to_le_bytes());
        // attributes: KeyValue { key "k", value { int_value 7 } }
        expected.extend([0x4a, 7, 0x0a, 1, b'k', 0x12, 2, 0x18, 7]);
        // status { code ERROR }
        expected.extend([0x7a, 2, 0x18, 2]);
        // flags, field 16 fixed32: tag (16 << 3 | 5) = 0x85 0x01
        expected.extend([0x85, 0x01, 1, 0, 0, 0]);
        assert_eq!(bytes, expected);
    }
}
