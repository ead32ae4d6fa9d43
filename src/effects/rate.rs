//! Outgoing rate limits as steps meet them: the buckets turns are taken from (in memory, or the
//! store's behind [`RateBuckets`], which the worker provides), the per-host limits of
//! `hookflow.yaml`, and how long a step waits for its turn in place before it waits durably.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::future::BoxFuture;
use crate::run::RateLimit;
use crate::run::rate::MemoryBuckets;

/// A turn waited in place at most this long; a later one makes the run wait durably, as a
/// `delay` does, instead of holding its worker.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(1);

/// The host `email` steps are limited under when no SMTP server is configured.
pub const EMAIL_HOST: &str = "email";

/// A bucket's slots could not be taken (the store failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot take a turn from the rate bucket")]
pub struct RateError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl RateError {
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            source: Box::new(source),
        }
    }
}

/// Where buckets live: in memory for one process, in the store when processes share one.
pub trait RateBuckets: Send + Sync {
    /// Reserve the next slot of `key` at `now`: when its taker may act.
    fn take<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<DateTime<Utc>, RateError>>;
    /// No slot of `key` free before `until`.
    fn hold<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), RateError>>;
}

impl RateBuckets for MemoryBuckets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<DateTime<Utc>, RateError>> {
        Box::pin(std::future::ready(Ok(MemoryBuckets::take(
            self, key, &limit, now,
        ))))
    }

    fn hold<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), RateError>> {
        MemoryBuckets::hold(self, key, &limit, until);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// One bucket a step takes a turn from: its key (where the state is kept) and its name in
/// metrics (bounded: a templated key is not a label).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub key: String,
    pub label: String,
    pub limit: RateLimit,
}

impl Bucket {
    /// The bucket of a host's limit (`rate_limits` in `hookflow.yaml`).
    pub fn of_host(host: &str, limit: RateLimit) -> Self {
        Self {
            key: format!("host:{host}"),
            label: format!("host:{host}"),
            limit,
        }
    }
}

/// What steps with effects consult before acting.
#[derive(Clone)]
pub struct RateGate {
    pub buckets: Arc<dyn RateBuckets>,
    /// Limits per host name, for every step calling that host.
    pub hosts: Arc<BTreeMap<String, RateLimit>>,
    /// The host `email` steps count against: the SMTP server's, or [`EMAIL_HOST`].
    pub email_host: String,
    /// A turn this close is waited in place; a later one is a durable wait.
    pub patience: Duration,
}

impl Default for RateGate {
    fn default() -> Self {
        Self {
            buckets: Arc::new(MemoryBuckets::default()),
            hosts: Arc::default(),
            email_host: EMAIL_HOST.to_owned(),
            patience: DEFAULT_PATIENCE,
        }
    }
}

impl RateGate {
    /// The limit `hookflow.yaml` sets for `host` (no host: an `email` step), if any.
    pub fn host_bucket(&self, host: Option<&str>) -> Option<Bucket> {
        let host = host.unwrap_or(&self.email_host).to_ascii_lowercase();
        self.hosts
            .get(&host)
            .map(|limit| Bucket::of_host(&host, *limit))
    }

    /// Reserve a turn in every bucket: when the step may act (the latest of their slots).
    pub async fn take(
        &self,
        buckets: &[Bucket],
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, RateError> {
        let mut turn = now;
        for bucket in buckets {
            let slot = self.buckets.take(&bucket.key, bucket.limit, now).await?;
            turn = turn.max(slot);
        }
        if turn > now {
            let waited = (turn - now).to_std().unwrap_or_default();
            for bucket in buckets {
                crate::observe::metrics::metrics().rate_limit_wait(&bucket.label, waited);
            }
        }
        Ok(turn)
    }

    /// A receiver asked to be left alone until `until`: every bucket the step used waits too.
    pub async fn hold(&self, buckets: &[Bucket], until: DateTime<Utc>) -> Result<(), RateError> {
        for bucket in buckets {
            self.buckets.hold(&bucket.key, bucket.limit, until).await?;
            crate::observe::metrics::metrics().rate_limit_throttled(&bucket.label);
        }
        Ok(())
    }
}

/// The host an SMTP URL names (`smtp://mail.example.com:587`), for its rate limit.
pub fn smtp_host(smtp: Option<&str>) -> String {
    smtp.and_then(|text| url::Url::parse(text.trim()).ok())
        .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_else(|| EMAIL_HOST.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_turn_is_the_latest_slot_of_every_bucket() {
        let gate = RateGate::default();
        // Buckets keep microseconds: a time with nanoseconds would read a hair early.
        let now = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let slow = Bucket::of_host(
            "a.test",
            RateLimit {
                per_second: 1.0,
                burst: 1,
            },
        );
        let fast = Bucket::of_host(
            "b.test",
            RateLimit {
                per_second: 100.0,
                burst: 1,
            },
        );
        let both = [fast.clone(), slow.clone()];
        assert_eq!(gate.take(&both, now).await.unwrap(), now);
        let second = gate.take(&both, now).await.unwrap();
        assert_eq!((second - now).num_milliseconds(), 1000);
        gate.hold(
            std::slice::from_ref(&fast),
            now + chrono::Duration::seconds(5),
        )
        .await
        .unwrap();
        let held = gate.take(std::slice::from_ref(&fast), now).await.unwrap();
        assert_eq!((held - now).num_seconds(), 5);
    }

    #[test]
    fn the_email_host_is_the_smtp_servers() {
        assert_eq!(
            smtp_host(Some("smtp://Mail.Example.com:587")),
            "mail.example.com"
        );
        assert_eq!(smtp_host(None), "email");
        let mut hosts = BTreeMap::new();
        let limit = RateLimit {
            per_second: 1.0,
            burst: 1,
        };
        hosts.insert("email".to_owned(), limit);
        let gate = RateGate {
            hosts: Arc::new(hosts),
            ..RateGate::default()
        };
        assert_eq!(
            gate.host_bucket(None),
            Some(Bucket::of_host("email", limit))
        );
        assert_eq!(gate.host_bucket(Some("other.test")), None);
    }
}
