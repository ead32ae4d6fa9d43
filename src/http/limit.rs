//! Rate limits of webhook routes: token buckets per route, or per route and source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::workflow::{RateLimit, RateScope};

/// Buckets untouched for this long are dropped, so one-off sources do not accumulate.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Every route's buckets; shared by all requests.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<(String, Option<IpAddr>), Bucket>>,
}

impl Limiter {
    /// Take one token for a request on `route` from `source`: `Ok` to go on, or the wait until
    /// a token is back (for `Retry-After`).
    pub fn admit(
        &self,
        route: &str,
        source: Option<IpAddr>,
        limit: &RateLimit,
        now: Instant,
    ) -> Result<(), Duration> {
        let key = (
            route.to_owned(),
            match limit.per {
                RateScope::Route => None,
                RateScope::Source => source,
            },
        );
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; limiting is not worth failing requests.
            return Ok(());
        };
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.updated) < IDLE);
        }
        let capacity = f64::from(limit.burst);
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / limit.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u32, per: RateScope) -> RateLimit {
        RateLimit {
            per_second,
            burst,
            per,
        }
    }

    #[test]
    fn a_burst_is_admitted_then_tokens_come_back_at_the_rate() {
        let limiter = Limiter::default();
        let l = limit(2.0, 3, RateScope::Route);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.admit("/a", None, &l, start).is_ok());
        }
        let wait = limiter.admit("/a", None, &l, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        assert!(
            limiter
                .admit("/a", None, &l, start + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            limiter
                .admit("/a", None, &l, start + Duration::from_millis(500))
                .is_err()
        );
        // Other routes have their own buckets.
        assert!(limiter.admit("/b", None, &l, start).is_ok());
    }

    #[test]
    fn per_source_limits_keep_sources_apart() {
        let limiter = Limiter::default();
        let l = limit(1.0, 1, RateScope::Source);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limiter.admit("/a", Some(a), &l, now).is_ok());
        assert!(limiter.admit("/a", Some(a), &l, now).is_err());
        assert!(limiter.admit("/a", Some(b), &l, now).is_ok());
    }
}
