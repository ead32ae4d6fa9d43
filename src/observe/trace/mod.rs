//! OpenTelemetry traces: the spans hookflow records itself (a webhook request, a run, a step),
//! their ids, and the exporter that sends them over OTLP/HTTP (`export.rs`, protobuf written by
//! `otlp.rs`). Off unless an endpoint is configured: every instrumentation point holds an
//! `Option<Tracer>`, and `None` records nothing. Why no OpenTelemetry crates: decision 023.

mod export;
mod otlp;

use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::run::TraceParent;
pub use export::{CollectorClient, Tracer};

/// Where spans go and who sends them, resolved from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// The full URL spans are POSTed to (`.../v1/traces`).
    pub traces_url: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

/// Why an endpoint cannot be exported to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an http:// or https:// URL")]
pub struct BadEndpoint(pub String);

impl TraceSettings {
    /// From a base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`), to which the signal's path
    /// `/v1/traces` is appended as the OTLP specification says.
    pub fn from_base(endpoint: &str, service_name: &str) -> Result<Self, BadEndpoint> {
        let base = checked_url(endpoint)?;
        let traces_url = format!("{}/v1/traces", base.as_str().trim_end_matches('/'));
        Ok(Self {
            traces_url,
            service_name: service_name.to_owned(),
        })
    }

    /// From the traces endpoint itself (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), used as given.
    pub fn from_traces_url(url: &str, service_name: &str) -> Result<Self, BadEndpoint> {
        checked_url(url)?;
        Ok(Self {
            traces_url: url.to_owned(),
            service_name: service_name.to_owned(),
        })
    }
}

fn checked_url(text: &str) -> Result<url::Url, BadEndpoint> {
    url::Url::parse(text)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| BadEndpoint(text.to_owned()))
}

/// What a span stands for, as OTLP's `SpanKind` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// A webhook request received.
    Server,
    /// A run, or a step that calls nothing outside.
    Internal,
    /// A step whose work is an outgoing request (`http`, `ci`).
    Client,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Text(String),
    Integer(i64),
}

/// One finished (or finishing) span. Attribute keys are static: only names hookflow chose,
/// never one a payload wrote.
#[derive(Debug, Clone)]
pub struct Span {
    /// Its trace, its own id and the sampling decision.
    pub context: TraceParent,
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// Its status is ERROR: a failed run or step, a 5xx answer.
    pub failed: bool,
}

impl Span {
    /// A span starting now, as the child of `parent` (its trace, its sampling, its span id as
    /// the parent id) or the root of a trace of its own.
    pub fn start(parent: Option<TraceParent>, name: String, kind: SpanKind) -> Self {
        let id = random_span_id();
        let context = match parent {
            Some(parent) => parent.with_span(id),
            None => TraceParent {
                trace_id: random_trace_id(),
                span_id: id,
                sampled: true,
            },
        };
        Self::with_context(context, parent.map(|p| p.span_id), name, kind)
    }

    /// A span whose ids are already decided (a run's, derived from its id).
    pub fn with_context(
        context: TraceParent,
        parent: Option<[u8; 8]>,
        name: String,
        kind: SpanKind,
    ) -> Self {
        let now = SystemTime::now();
        Self {
            context,
            parent,
            name,
            kind,
            start: now,
            end: now,
            attributes: Vec::new(),
            failed: false,
        }
    }

    pub fn text(&mut self, key: &'static str, value: impl Into<String>) {
        self.attributes
            .push((key, AttributeValue::Text(value.into())));
    }

    pub fn integer(&mut self, key: &'static str, value: i64) {
        self.attributes.push((key, AttributeValue::Integer(value)));
    }

    /// Ends now.
    pub fn finish(mut self) -> Self {
        self.end = SystemTime::now();
        self
    }
}

/// A run's span context: its trace is the request's when one brought the event (else one of
/// its own), and its span id is derived from the run id, so every execution of the run (after
/// a wait, a retry, a restart, on another process) parents its steps to the same span, which
/// is exported once, when the run ends.
pub fn run_context(run_id: &str, request: Option<TraceParent>) -> TraceParent {
    let digest = Sha256::digest(run_id.as_bytes());
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&digest[..8]);
    if span_id == [0; 8] {
        span_id[7] = 1;
    }
    let mut own_trace = [0u8; 16];
    own_trace.copy_from_slice(&digest[8..24]);
    TraceParent {
        trace_id: request.map_or(own_trace, |r| r.trace_id),
        span_id,
        sampled: request.is_none_or(|r| r.sampled),
    }
}

/// The span a run's execution hands to the engine: its steps' spans are children of `run`.
#[derive(Debug, Clone)]
pub struct RunTrace {
    pub tracer: Tracer,
    pub run: TraceParent,
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // SipHash keyed from the OS's randomness once per thread, over a v7 id (time and random
    // bits): unique and unpredictable enough for span ids, with no random-number crate.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(uuid::Uuid::now_v7().as_u128());
    hasher.finish()
}

fn random_span_id() -> [u8; 8] {
    loop {
        let id = random_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

fn random_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_span_id());
    id[8..].copy_from_slice(&random_u64().to_be_bytes());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_urls_and_the_base_gets_the_traces_path() {
        let base = TraceSettings::from_base("http://127.0.0.1:4318", "svc").unwrap();
        assert_eq!(base.traces_url, "http://127.0.0.1:4318/v1/traces");
        let slash = TraceSettings::from_base("https://otel.example/prefix/", "svc").unwrap();
        assert_eq!(slash.traces_url, "https://otel.example/prefix/v1/traces");
        let full =
            TraceSettings::from_traces_url("http://collector:4318/custom/path", "svc").unwrap();
        assert_eq!(full.traces_url, "http://collector:4318/custom/path");
        for bad in [
            "collector:4318",
            "ftp://collector/",
            "grpc://x:4317",
            "http://",
            "",
        ] {
            assert!(TraceSettings::from_base(bad, "svc").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_runs_span_is_the_same_in_every_execution_and_joins_the_requests_trace() {
        let request =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let first = run_context("run-1", Some(request));
        assert_eq!(first, run_context("run-1", Some(request)));
        assert_eq!(first.trace_id, request.trace_id);
        assert_ne!(first.span_id, request.span_id);
        assert_ne!(run_context("run-2", Some(request)).span_id, first.span_id);
        // Without a request (a tick, a manual start) the run's trace is its own, and stable.
        let alone = run_context("run-1", None);
        assert_eq!(alone.span_id, first.span_id);
        assert_eq!(alone, run_context("run-1", None));
        assert!(alone.sampled);
        let unsampled = TraceParent {
            sampled: false,
            ..request
        };
        assert!(!run_context("run-1", Some(unsampled)).sampled);
    }

    #[test]
    fn a_child_span_keeps_the_trace_and_names_its_parent() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let child = Span::start(Some(parent), "s".into(), SpanKind::Internal);
        assert_eq!(child.context.trace_id, parent.trace_id);
        assert_eq!(child.parent, Some(parent.span_id));
        assert!(!child.context.sampled);
        let root = Span::start(None, "r".into(), SpanKind::Server);
        assert_eq!(root.parent, None);
        assert_ne!(root.context.trace_id, [0; 16]);
        assert_ne!(
            Span::start(None, "a".into(), SpanKind::Server)
                .context
                .span_id,
            root.context.span_id
        );
    }
}
