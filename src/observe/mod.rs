//! Watching the running process: `metrics` (counters, gauges and histograms served at
//! `/metrics`) and `telemetry` (the logging setup). Both are reachable as `crate::metrics` and
//! `crate::telemetry` too, re-exported at the crate root.

pub mod metrics;
pub mod telemetry;
