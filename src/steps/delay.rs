//! `delay`: wait a while, durably. The engine stores the end of the wait as the run's due time,
//! so a restart resumes the remaining wait; this file compiles the step and computes that end.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::steps::StepError;
use crate::template::{Scope, ValueTemplate};
use crate::workflow::compile::{Compiler, parse_duration};
use crate::workflow::yaml::Node;

#[derive(Debug)]
pub enum DelayStep {
    /// `delay: 10s`.
    Fixed(Duration),
    /// A template giving a duration (`"90s"`, a number of seconds) or an RFC 3339 time.
    Computed(ValueTemplate),
}

impl DelayStep {
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        match c.value(node)? {
            ValueTemplate::Literal(Json::String(text)) => match parse_duration(&text) {
                Some(d) => Some(DelayStep::Fixed(d)),
                None => {
                    c.push(
                        crate::diag::Diagnostic::error(
                            node.span.clone(),
                            format!("`delay`: '{text}' is not a duration"),
                        )
                        .with_hint("write a number and a unit (30s, 5m, 1h), or a template"),
                    );
                    None
                }
            },
            ValueTemplate::Literal(Json::Number(n)) => match n.as_f64() {
                Some(secs) if secs >= 0.0 && secs.is_finite() => {
                    Some(DelayStep::Fixed(Duration::from_secs_f64(secs)))
                }
                _ => {
                    c.error(node.span.clone(), "`delay` must not be negative");
                    None
                }
            },
            ValueTemplate::Literal(other) => {
                c.error(
                    node.span.clone(),
                    format!(
                        "`delay` must be a duration or a template, found {}",
                        crate::template::json_kind(&other)
                    ),
                );
                None
            }
            template => Some(DelayStep::Computed(template)),
        }
    }

    /// When the wait ends, for a wait starting at `now`.
    pub fn until(&self, scope: &Scope<'_>, now: DateTime<Utc>) -> Result<DateTime<Utc>, StepError> {
        let wait = match self {
            DelayStep::Fixed(d) => *d,
            DelayStep::Computed(template) => match template.render(scope)? {
                Json::Number(n) => match n.as_f64() {
                    Some(secs) if secs.is_finite() => Duration::from_secs_f64(secs.max(0.0)),
                    _ => return Err(StepError::permanent(format!("`delay`: bad number {n}"))),
                },
                Json::String(text) => {
                    if let Some(d) = parse_duration(text.trim()) {
                        d
                    } else if let Ok(at) = DateTime::parse_from_rfc3339(text.trim()) {
                        return Ok(at.with_timezone(&Utc));
                    } else {
                        return Err(StepError::permanent(format!(
                            "`delay`: '{text}' is neither a duration nor an RFC 3339 time"
                        )));
                    }
                }
                other => {
                    return Err(StepError::permanent(format!(
                        "`delay` must give a duration or a time, got {}",
                        crate::template::json_kind(&other)
                    )));
                }
            },
        };
        Ok(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX))
    }
}
