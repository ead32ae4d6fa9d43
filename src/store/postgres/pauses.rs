//! Cancels and pauses on PostgreSQL: written in a transaction that also wakes every process,
//! so the owner of a run asked to stop, and the processes holding a resumed workflow's runs,
//! act at once rather than at their next look.

use chrono::Utc;
use sqlx::Postgres;

use super::PostgresStore;
use super::notify::notify;
use super::reads::write_error;
use crate::store::{CancelRequest, Cancelled, PauseRequest, StoreError, Wakeup, pause, timestamp};

impl PostgresStore {
    pub async fn cancel_run(
        &self,
        run_id: &str,
        cancel: &CancelRequest,
    ) -> Result<Cancelled, StoreError> {
        let mut tx = self.transaction().await?;
        let now = timestamp(Utc::now());
        let cancelled = pause::cancel_run::<Postgres>(&mut tx, run_id, cancel, &now)
            .await
            .map_err(write_error)?;
        if cancelled == Cancelled::Requested {
            // Whichever process runs it stops it at its next step boundary.
            notify(&mut tx, Wakeup::CancelRequested).await?;
        }
        tx.commit().await.map_err(write_error)?;
        Ok(cancelled)
    }

    pub async fn pause_workflow(
        &self,
        workflow: &str,
        request: &PauseRequest,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(write_error)?;
        let now = timestamp(Utc::now());
        pause::pause::<Postgres>(&mut conn, workflow, request, &now)
            .await
            .map_err(write_error)
    }

    pub async fn resume_workflow(&self, workflow: &str) -> Result<bool, StoreError> {
        let mut tx = self.transaction().await?;
        let resumed = pause::resume::<Postgres>(&mut tx, workflow)
            .await
            .map_err(write_error)?;
        if resumed {
            // Its queued runs may start now, in any process.
            notify(&mut tx, Wakeup::RunsQueued).await?;
        }
        tx.commit().await.map_err(write_error)?;
        Ok(resumed)
    }
}
