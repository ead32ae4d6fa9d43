//! The workflow language's front end, below every step kind and the workflow model: YAML
//! parsed into nodes that keep their spans, and the compiler's helpers that turn nodes into
//! typed values (templates, conditions, durations, retry policies) or diagnostics, and the
//! readings they leave for checks against sample payloads.

pub mod compile;
pub mod paths;
pub mod schema;
pub mod units;
pub mod yaml;
