//! Retry policy: whether a failed step is tried again, and after how long (exponential backoff
//! with full jitter, capped, never sooner than the target's `Retry-After`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::run::{Backoff, RetryPolicy};
use crate::steps::StepError;

/// The longest a `Retry-After` answer may push a retry out.
pub(super) const RETRY_AFTER_CAP: Duration = Duration::from_secs(6 * 3600);

impl RetryPolicy {
    /// Whether `attempt` (1-based, the one that just failed) may be followed by another.
    pub fn should_retry(&self, error: &StepError, attempt: u32) -> bool {
        if attempt >= self.attempts {
            return false;
        }
        if error.transient {
            return true;
        }
        let status = error
            .output
            .as_ref()
            .and_then(|o| o.get("status"))
            .and_then(Json::as_u64)
            .and_then(|s| u16::try_from(s).ok());
        status.is_some_and(|s| self.on.iter().any(|m| m.matches(s)))
    }

    /// The wait before the attempt after `attempt`: full jitter over the capped exponential (or
    /// fixed) delay, `unit` being a uniform draw in [0, 1); never less than `retry_after`.
    pub fn delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let ceiling = match self.backoff {
            Backoff::Fixed => self.initial,
            Backoff::Exponential => {
                let factor = 2f64.powi(attempt.saturating_sub(1).min(62) as i32);
                let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
                Duration::from_secs_f64(secs)
            }
        }
        .min(self.max);
        let jittered = match self.backoff {
            // A fixed schedule is what the user asked for: no jitter.
            Backoff::Fixed => ceiling,
            Backoff::Exponential => ceiling.mul_f64(unit.clamp(0.0, 1.0)),
        };
        match retry_after {
            Some(wait) => jittered.max(wait.min(RETRY_AFTER_CAP)),
            None => jittered,
        }
    }
}

/// `Retry-After` from a failed HTTP step's output: delay-seconds or an HTTP date.
pub fn retry_after(output: Option<&Json>, now: DateTime<Utc>) -> Option<Duration> {
    let value = output?.get("headers")?.get("retry-after")?.as_str()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// A uniform draw in [0, 1) for jitter; std's randomly keyed hasher is random enough for
/// spreading retries and needs no extra dependency.
pub fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(uuid::Uuid::now_v7().as_u128());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::StatusPattern;
    use serde_json::json;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            backoff: Backoff::Exponential,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(10),
            on: vec![StatusPattern::Exact(409)],
        }
    }

    #[test]
    fn exponential_ceiling_doubles_and_is_capped_and_jitter_spans_it() {
        let p = policy();
        let ceilings: Vec<u64> = (1..=5)
            .map(|a| p.delay(a, 0.999_999, None).as_secs())
            .collect();
        assert_eq!(ceilings, vec![1, 3, 7, 9, 9]);
        assert_eq!(p.delay(3, 0.5, None), Duration::from_secs(4));
        assert_eq!(p.delay(3, 0.0, None), Duration::ZERO);
    }

    #[test]
    fn fixed_backoff_waits_the_same_each_time() {
        let p = RetryPolicy {
            backoff: Backoff::Fixed,
            ..policy()
        };
        assert_eq!(p.delay(1, 0.1, None), Duration::from_secs(2));
        assert_eq!(p.delay(4, 0.9, None), Duration::from_secs(2));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = policy();
        assert_eq!(
            p.delay(1, 0.0, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        let now = Utc::now();
        let out = json!({"status": 503, "headers": {"retry-after": "7"}});
        assert_eq!(retry_after(Some(&out), now), Some(Duration::from_secs(7)));
        let date = (now + chrono::Duration::seconds(20)).to_rfc2822();
        let out = json!({"status": 429, "headers": {"retry-after": date}});
        let wait = retry_after(Some(&out), now).unwrap();
        assert!((19..=20).contains(&wait.as_secs()), "{wait:?}");
        assert_eq!(retry_after(Some(&json!({"headers": {}})), now), None);
    }

    #[test]
    fn transient_errors_and_listed_statuses_are_retried_until_attempts_run_out() {
        let p = policy();
        let transient = StepError {
            message: "503".into(),
            output: Some(json!({"status": 503})),
            transient: true,
        };
        let conflict = StepError {
            message: "409".into(),
            output: Some(json!({"status": 409})),
            transient: false,
        };
        let rejected = StepError {
            message: "422".into(),
            output: Some(json!({"status": 422})),
            transient: false,
        };
        assert!(p.should_retry(&transient, 1));
        assert!(p.should_retry(&conflict, 4));
        assert!(!p.should_retry(&conflict, 5));
        assert!(!p.should_retry(&rejected, 1));
        assert!(!RetryPolicy::default().should_retry(&transient, 1));
    }

    #[test]
    fn jitter_draws_are_in_range() {
        for _ in 0..1000 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
