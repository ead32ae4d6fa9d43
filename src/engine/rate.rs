//! A step's turn in its outgoing rate buckets (its own `rate_limit`, its host's): taken before
//! it acts, waited in place when near, else durably (its record `retrying`, the turn kept under
//! `rate_limit.until`, as a `delay` keeps its end), and never counted as an attempt. A
//! receiver's `429` with `Retry-After` holds the buckets, and the step waits for it the same way.

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::{Execution, JournalError, StepResult, retry};
use crate::effects::rate::Bucket;
use crate::run::{StepRecord, StepStatus};
use crate::steps::{Rendered, Step, StepError, StepKind};
use crate::template::Scope;

/// A step answered `429` with `Retry-After` this many times in a row waits no more: the next
/// such answer is a failure its retry policy judges, so a receiver that never relents cannot
/// keep a run waiting for ever.
pub(super) const MAX_THROTTLES: u64 = 5;

/// A rate-limit wait as its record keeps it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting {
    pub until: DateTime<Utc>,
    /// The turn is taken (a slot waited for); else a `429` asked for the wait and the turn is
    /// taken when it ends.
    pub reserved: bool,
    /// `429` answers in a row so far.
    pub throttled: u64,
}

/// The rate-limit wait `record` is, if it is one.
pub(super) fn waiting(record: &StepRecord) -> Option<Waiting> {
    if record.status != StepStatus::Retrying {
        return None;
    }
    let wait = record.output.get("rate_limit")?;
    let until = wait.get("until").and_then(Json::as_str)?;
    Some(Waiting {
        until: DateTime::parse_from_rfc3339(until)
            .ok()?
            .with_timezone(&Utc),
        reserved: wait.get("reserved").and_then(Json::as_bool) == Some(true),
        throttled: wait.get("throttled").and_then(Json::as_u64).unwrap_or(0),
    })
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Execution<'_> {
    /// The buckets the step takes a turn from: its own limit's and its host's. None under a
    /// dry run, which waits for nothing.
    pub(super) fn buckets(
        &self,
        step: &Step,
        rendered: &Rendered,
        scope: &Scope<'_>,
    ) -> Result<Vec<Bucket>, StepError> {
        if self.shared.options.dry_run || !step.kind.has_effects() {
            return Ok(Vec::new());
        }
        let mut buckets = Vec::new();
        if let Some(own) = &step.rate_limit {
            buckets.push(own.bucket(scope, &self.workflow.name, &step.name)?);
        }
        let gate = &self.shared.effects.rate;
        let host = match &step.kind {
            StepKind::Email(_) => gate.host_bucket(None),
            _ => rendered
                .called_host()
                .and_then(|host| gate.host_bucket(Some(&host))),
        };
        buckets.extend(host);
        Ok(buckets)
    }

    /// Waits for the step's turn: `None` once it may act, or the pending wait its record now
    /// holds. A turn kept by an earlier execution is not taken again.
    pub(super) async fn take_turn(
        &self,
        buckets: &[Bucket],
        previous: Option<&StepRecord>,
        record: &mut StepRecord,
    ) -> Result<Option<StepResult>, JournalError> {
        let effects = self.shared.effects;
        let kept = previous.and_then(waiting);
        let turn = match kept {
            Some(wait) if wait.reserved => wait.until,
            _ if buckets.is_empty() => return Ok(None),
            _ => effects
                .rate
                .take(buckets, effects.clock.now())
                .await
                .map_err(JournalError::new)?,
        };
        let now = effects.clock.now();
        if turn <= now {
            return Ok(None);
        }
        let wait = (turn - now).to_std().unwrap_or_default();
        if wait <= effects.rate.patience {
            tokio::time::sleep(wait).await;
            return Ok(None);
        }
        record.status = StepStatus::Retrying;
        record.output = json!({ "rate_limit": {
            "until": rfc3339(turn),
            "reserved": true,
            "throttled": kept.map_or(0, |w| w.throttled),
        }});
        Ok(Some(StepResult::Pending))
    }

    /// A `429` with `Retry-After` from a rate-limited step: its buckets are held until then and
    /// the step waits for it (no attempt spent). `None` when the failure is another, or the
    /// receiver has refused too often in a row.
    pub(super) async fn throttle(
        &self,
        buckets: &[Bucket],
        err: &StepError,
        previous: Option<&StepRecord>,
        record: &mut StepRecord,
    ) -> Result<Option<StepResult>, JournalError> {
        let answer = err.output.as_ref();
        let status = answer.and_then(|o| o.get("status")).and_then(Json::as_u64);
        if buckets.is_empty() || status != Some(429) {
            return Ok(None);
        }
        let throttled = previous.and_then(waiting).map_or(0, |w| w.throttled) + 1;
        let now = self.shared.effects.clock.now();
        let until = retry::retry_after(answer, now)
            .map(|wait| wait.min(retry::RETRY_AFTER_CAP))
            .and_then(|wait| crate::steps::delay::end_of(now, wait));
        let Some(until) = until.filter(|_| throttled <= MAX_THROTTLES) else {
            return Ok(None);
        };
        self.shared
            .effects
            .rate
            .hold(buckets, until)
            .await
            .map_err(JournalError::new)?;
        let mut output = match answer {
            Some(Json::Object(fields)) => fields.clone(),
            _ => serde_json::Map::new(),
        };
        output.insert(
            "rate_limit".into(),
            json!({ "until": rfc3339(until), "reserved": false, "throttled": throttled }),
        );
        record.status = StepStatus::Retrying;
        record.error = Some(err.message.clone());
        record.output = Json::Object(output);
        Ok(Some(StepResult::Pending))
    }
}
