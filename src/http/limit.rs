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

/// Below this many buckets, idle ones are left for later.
const SWEEP_FROM: usize = 10_000;

/// Every route's buckets; shared by all requests.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<(String, Option<IpAddr>), Bucket>,
    /// The size at which idle buckets are next swept out: with many active sources, a sweep
    /// waits until they have doubled, so requests do not each pay for a pass over all of them.
    sweep_at: usize,
}

/// The source a per-source bucket belongs to: an IPv4 address, or an IPv6 /64 (one client
/// usually holds a whole /64, and would otherwise get a fresh bucket per address).
fn source_key(ip: IpAddr) -> IpAddr {
    match crate::net::canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
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
                RateScope::Source => source.map(source_key),
            },
        );
        let Ok(mut guard) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; limiting is not worth failing requests.
            return Ok(());
        };
        let buckets = &mut *guard;
        if buckets.map.len() > buckets.sweep_at.max(SWEEP_FROM) {
            buckets
                .map
                .retain(|_, b| now.duration_since(b.updated) < IDLE);
            buckets.sweep_at = buckets.map.len() * 2;
        }
        let capacity = f64::from(limit.burst);
        let bucket = buckets.map.entry(key).or_insert(Bucket {
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

    #[test]
    fn idle_buckets_are_swept_and_busy_ones_are_not_swept_on_every_request() {
        let limiter = Limiter::default();
        let l = limit(1.0, 1, RateScope::Source);
        let start = Instant::now();
        let source = |i: u32| Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
        for i in 0..=SWEEP_FROM as u32 {
            let _ = limiter.admit("/a", source(i), &l, start);
        }
        // All busy: one sweep, which keeps them, then none until they have doubled.
        let _ = limiter.admit("/a", source(20_000), &l, start);
        let sweep_at = limiter.buckets.lock().unwrap().sweep_at;
        assert!(sweep_at > 2 * SWEEP_FROM, "{sweep_at}");
        // Once they are idle, they go at the next sweep.
        let later = start + IDLE + Duration::from_secs(1);
        for i in 0..=sweep_at as u32 {
            let _ = limiter.admit("/b", source(30_000 + i), &l, later);
        }
        let buckets = limiter.buckets.lock().unwrap();
        assert!(!buckets.map.keys().any(|(route, _)| route == "/a"));
    }

    /// One IPv6 client holds a whole /64: changing the last 64 bits must not buy new tokens.
    #[test]
    fn ipv6_sources_are_limited_per_64_block() {
        let limiter = Limiter::default();
        let l = limit(1.0, 1, RateScope::Source);
        let now = Instant::now();
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap();
        let other_block: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.admit("/a", Some(first), &l, now).is_ok());
        assert!(limiter.admit("/a", Some(same_block), &l, now).is_err());
        assert!(limiter.admit("/a", Some(other_block), &l, now).is_ok());
        // IPv4 written as IPv6 is the IPv4 address.
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(limiter.admit("/a", Some(v4), &l, now).is_ok());
        assert!(limiter.admit("/a", Some(mapped), &l, now).is_err());
    }
}
