//! Outgoing rate buckets shared by every process on the database: one row per bucket holding
//! its theoretical arrival time (`run::rate`), moved in one statement so two processes taking
//! slots at once each get their own.

use chrono::{DateTime, Utc};

use super::PostgresStore;
use super::reads::write_error;
use crate::run::RateLimit;
use crate::run::rate::{from_micros, to_micros};
use crate::store::StoreError;

impl PostgresStore {
    pub(super) async fn take_rate_slot(
        &self,
        key: &str,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let now = to_micros(now);
        // The row's lock orders concurrent takers; each sees the TAT the one before it left.
        let tat: i64 = sqlx::query_scalar(
            "INSERT INTO rate_buckets (key, tat_us) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE SET tat_us = GREATEST(rate_buckets.tat_us, $2) + $3
             RETURNING tat_us",
        )
        .bind(key)
        .bind(now)
        .bind(limit.interval())
        .fetch_one(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(from_micros(limit.slot_of(tat, now)))
    }

    pub(super) async fn hold_rate_bucket(
        &self,
        key: &str,
        limit: RateLimit,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let held = limit.hold(None, to_micros(until));
        sqlx::query(
            "INSERT INTO rate_buckets (key, tat_us) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET tat_us = GREATEST(rate_buckets.tat_us, $2)",
        )
        .bind(key)
        .bind(held)
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }
}
