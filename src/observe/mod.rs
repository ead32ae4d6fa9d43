//! Watching the running process: `metrics` (counters, gauges and histograms served at
//! `/metrics`), `telemetry` (the logging setup) and `trace` (OpenTelemetry spans exported over
//! OTLP). The first two are reachable as `crate::metrics` and `crate::telemetry` too,
//! re-exported at the crate root.

pub mod metrics;
pub mod telemetry;
pub mod trace;
