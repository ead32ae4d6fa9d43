//! `delay`: wait a while, durably. The engine stores the end of the wait as the run's due time,
//! so a restart resumes the remaining wait; this file compiles the step and computes that end.

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value as Json;

use crate::lang::compile::Compiler;
use crate::lang::units::parse_duration;
use crate::lang::yaml::Node;
use crate::steps::StepError;
use crate::template::{Scope, ValueTemplate};

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
                Some(d) if end_of(Utc::now(), d).is_none() => {
                    c.error(node.span.clone(), too_long(&text));
                    None
                }
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
                    match Duration::try_from_secs_f64(secs)
                        .ok()
                        .filter(|d| end_of(Utc::now(), *d).is_some())
                    {
                        Some(d) => Some(DelayStep::Fixed(d)),
                        None => {
                            c.error(node.span.clone(), too_long(&format!("{secs}s")));
                            None
                        }
                    }
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
                    Some(secs) if secs.is_finite() => Duration::try_from_secs_f64(secs.max(0.0))
                        .map_err(|_| StepError::permanent(too_long(&format!("{n}s"))))?,
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
        end_of(now, wait)
            .ok_or_else(|| StepError::permanent(too_long(&format!("{}s", wait.as_secs()))))
    }
}

/// When a wait starting at `now` ends, if that is a time the store can keep: before the year
/// 10000 (stored times are compared as text, and chrono's range ends sooner than `Duration`'s).
pub fn end_of(now: DateTime<Utc>, wait: Duration) -> Option<DateTime<Utc>> {
    let end = now.checked_add_signed(chrono::Duration::from_std(wait).ok()?)?;
    (end.year() <= 9999).then_some(end)
}

fn too_long(wait: &str) -> String {
    format!("`delay`: {wait} is too long (a wait must end before the year 10000)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplateSet;

    fn until_of(source: &str, context: serde_json::Value) -> Result<DateTime<Utc>, StepError> {
        let mut templates = TemplateSet::new();
        let template = ValueTemplate::compile_str(&mut templates, source).expect("template");
        let context = crate::template::to_template_value(&context);
        let scope = Scope {
            templates: &templates,
            context: &context,
            event_body: &serde_json::Value::Null,
        };
        DelayStep::Computed(template).until(&scope, start())
    }

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-29T00:30:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_template_gives_a_duration_a_number_of_seconds_or_a_time() {
        let wait = |value: serde_json::Value| {
            until_of("{{ wait }}", serde_json::json!({ "wait": value }))
                .map(|until| (until - start()).num_milliseconds())
        };
        assert_eq!(wait("90s".into()).expect("duration"), 90_000);
        assert_eq!(wait(2.5.into()).expect("seconds"), 2_500);
        assert_eq!(wait((-5).into()).expect("clamped"), 0);
        assert_eq!(
            wait("2026-03-29T01:00:00+01:00".into()).expect("time"),
            -30 * 60_000,
            "a time already past gives an end in the past: no wait"
        );
        let err = wait("soon".into()).expect_err("not a duration");
        assert!(
            err.message.contains("neither a duration"),
            "{}",
            err.message
        );
        let err = wait(serde_json::json!([1])).expect_err("a list");
        assert!(err.message.contains("a list"), "{}", err.message);
    }

    #[test]
    fn a_wait_past_the_clock_fails_the_step_instead_of_panicking() {
        let wait = |value: serde_json::Value| {
            until_of("{{ wait }}", serde_json::json!({ "wait": value }))
                .expect_err("too long")
                .message
        };
        for value in [
            serde_json::json!(1e300),
            serde_json::json!(1e15),
            serde_json::json!("100000000000d"),
            serde_json::json!("10000000d"),
        ] {
            let message = wait(value.clone());
            assert!(message.contains("too long"), "{value}: {message}");
        }
        let fixed = DelayStep::Fixed(Duration::from_secs(u64::MAX / 2));
        let templates = TemplateSet::new();
        let context = crate::template::to_template_value(&serde_json::json!({}));
        let scope = Scope {
            templates: &templates,
            context: &context,
            event_body: &serde_json::Value::Null,
        };
        let err = fixed.until(&scope, start()).expect_err("too long");
        assert!(err.message.contains("too long"), "{}", err.message);
        // The longest wait kept as a stored time: up to the end of year 9999.
        let ok = DelayStep::Fixed(Duration::from_secs(86_400 * 365 * 7000));
        assert!(ok.until(&scope, start()).is_ok());
    }
}
