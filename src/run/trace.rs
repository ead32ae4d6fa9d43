//! A W3C trace context (`traceparent`): which trace a request, a run or a step belongs to and
//! which span is its parent, as read from a header, stored with an event and sent on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `00-<trace id>-<parent span id>-<flags>`: the one version this reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The `sampled` flag: whether the trace's spans are recorded.
    pub sampled: bool,
}

/// Why a `traceparent` value is not one this reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, ids not all zero)")]
pub struct BadTraceParent;

impl TraceParent {
    /// Parse a header value. Only version `00` is read: a later version may change the format,
    /// and the all-zero ids (invalid by the specification) are refused.
    pub fn parse(text: &str) -> Result<Self, BadTraceParent> {
        let text = text.trim();
        let mut parts = text.split('-');
        let (Some(version), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(BadTraceParent);
        };
        if version != "00" {
            return Err(BadTraceParent);
        }
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let span_id: [u8; 8] = hex_bytes(span)?;
        let [flags]: [u8; 1] = hex_bytes(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(BadTraceParent);
        }
        Ok(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The same trace and sampling with `span_id` as the parent of what comes next.
    pub fn with_span(self, span_id: [u8; 8]) -> Self {
        Self { span_id, ..self }
    }
}

/// Exactly `2 * N` lower-case hex digits.
fn hex_bytes<const N: usize>(text: &str) -> Result<[u8; N], BadTraceParent> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(BadTraceParent);
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let high = hex_digit(pair[0]).ok_or(BadTraceParent)?;
        let low = hex_digit(pair[1]).ok_or(BadTraceParent)?;
        *byte = high << 4 | low;
    }
    Ok(bytes)
}

/// Lower case only: the specification's `HEXDIGLC`.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Lower-case hex, as ids are written in headers and logs.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }
}

impl From<TraceParent> for String {
    fn from(parent: TraceParent) -> String {
        parent.to_string()
    }
}

impl TryFrom<String> for TraceParent {
    type Error = BadTraceParent;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_reads_and_writes_back() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = TraceParent::parse(text).unwrap();
        assert_eq!(hex(&parent.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&parent.span_id), "00f067aa0ba902b7");
        assert!(parent.sampled);
        assert_eq!(parent.to_string(), text);
        let unsampled = TraceParent::parse(&text.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn malformed_versions_and_zero_ids_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), Err(BadTraceParent), "{bad}");
        }
    }

    #[test]
    fn it_is_stored_as_its_header_text() {
        let parent = TraceParent {
            trace_id: [1; 16],
            span_id: [2; 8],
            sampled: true,
        };
        let json = serde_json::to_string(&parent).unwrap();
        assert_eq!(
            json,
            "\"00-01010101010101010101010101010101-0202020202020202-01\""
        );
        assert_eq!(serde_json::from_str::<TraceParent>(&json).unwrap(), parent);
        assert!(serde_json::from_str::<TraceParent>("\"00-zz\"").is_err());
    }
}
