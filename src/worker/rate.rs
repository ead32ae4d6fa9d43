//! The outgoing rate buckets a server's steps take turns from: the store's, so a PostgreSQL
//! store shares them across processes (the engine reaches them as `effects::rate::RateBuckets`).

use chrono::{DateTime, Utc};

use crate::effects::rate::{RateBuckets, RateError};
use crate::future::BoxFuture;
use crate::run::RateLimit;
use crate::store::Store;

pub(super) struct StoreBuckets(pub Store);

impl RateBuckets for StoreBuckets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<DateTime<Utc>, RateError>> {
        Box::pin(async move {
            self.0
                .take_rate_slot(key, limit, now)
                .await
                .map_err(RateError::new)
        })
    }

    fn hold<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<(), RateError>> {
        Box::pin(async move {
            self.0
                .hold_rate_bucket(key, limit, until)
                .await
                .map_err(RateError::new)
        })
    }
}
