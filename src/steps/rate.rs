//! `rate_limit:` of a step that calls out (`http`, `ci`, `email`): a rate, or `{ rate, burst,
//! key }`, compiled at load; per run, the bucket it takes its turn from (the engine waits).

use crate::effects::rate::Bucket;
use crate::lang::compile::Compiler;
use crate::lang::yaml::Node;
use crate::run::RateLimit;
use crate::steps::StepError;
use crate::template::{Scope, ValueTemplate};

/// The keys of a step's `rate_limit:` mapping.
pub const RATE_LIMIT_KEYS: &[&str] = &["rate", "burst", "key"];

/// A step's own limit.
#[derive(Debug)]
pub struct StepRateLimit {
    pub limit: RateLimit,
    /// The bucket's key, a text template; none: one bucket for the workflow's step.
    pub key: Option<ValueTemplate>,
}

impl StepRateLimit {
    /// `10/s`, or `{ rate: 600/min, burst: 20, key: "{{ event.body.account }}" }`. The burst
    /// is 1 unless given: an outgoing limit protects someone else's service, so by default
    /// calls are spaced evenly, never bunched.
    pub fn compile(c: &mut Compiler, node: &Node) -> Option<Self> {
        let Some(_) = node.as_map() else {
            let per_second = c.rate(node, "`rate_limit`")?;
            return Some(Self {
                limit: RateLimit {
                    per_second,
                    burst: 1,
                },
                key: None,
            });
        };
        let fields = c.fields(node, "`rate_limit`", RATE_LIMIT_KEYS, &["rate"])?;
        let per_second = c.rate(fields.get("rate")?, "`rate`");
        let burst = match fields.get("burst") {
            Some(n) => c.burst(n),
            None => Some(1),
        };
        let key = match fields.get("key") {
            Some(n) => Some(c.text(n, "`key`")?),
            None => None,
        };
        Some(Self {
            limit: RateLimit {
                per_second: per_second?,
                burst: burst?,
            },
            key,
        })
    }

    /// The bucket for this run: its rendered `key`, or the workflow's step.
    pub fn bucket(
        &self,
        scope: &Scope<'_>,
        workflow: &str,
        step: &str,
    ) -> Result<Bucket, StepError> {
        let label = format!("{workflow}/{step}");
        let key = match &self.key {
            Some(template) => format!(
                "key:{}",
                template
                    .render_string(scope)
                    .map_err(|e| StepError::permanent(format!("`rate_limit.key`: {e}")))?
            ),
            None => format!("step:{label}"),
        };
        Ok(Bucket {
            key,
            label,
            limit: self.limit,
        })
    }
}
