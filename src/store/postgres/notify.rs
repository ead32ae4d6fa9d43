//! Wake-ups between the processes sharing a PostgreSQL store: `NOTIFY` when runs are queued or
//! a retry is scheduled, and one listener per process that hands them to its worker.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::Utc;
use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::broadcast;
use tracing::warn;

use super::PostgresStore;
use super::reads::write_error;
use crate::store::{StoreError, Wakeup};

/// The notification channel every hookflow process on the database listens to.
pub(super) const CHANNEL: &str = "hookflow_wakeup";

/// Accepts notify at most this often per process: a wake-up per burst is enough, and every
/// NOTIFY serializes commits for a moment.
const NOTIFY_EVERY_MS: i64 = 100;

impl PostgresStore {
    /// Whether this accept should wake the other processes.
    pub(super) fn notify_due(&self) -> bool {
        notify_due(&self.last_notify)
    }
}

/// Whether an accept should wake the other processes, `last_notify` being when this process
/// last did (ms since the epoch); true at most once per `NOTIFY_EVERY_MS`.
pub(super) fn notify_due(last_notify: &AtomicI64) -> bool {
    let now = Utc::now().timestamp_millis();
    let last = last_notify.load(Ordering::Relaxed);
    now - last >= NOTIFY_EVERY_MS
        && last_notify
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Listen for wake-ups from every process (this one included) and hand them to the worker.
/// The connection comes back by itself after an outage; wake-ups sent meanwhile are lost, and
/// the worker's periodic look at the store covers them.
pub(super) async fn listen(options: PgConnectOptions, wakeups: broadcast::Sender<Wakeup>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let listening = async {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(options.clone());
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listening {
            Ok(listener) => listener,
            Err(err) => {
                warn!(error = %err, "cannot listen for store wake-ups; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    if let Some(wakeup) = Wakeup::parse(notification.payload()) {
                        // No receiver yet (or any more) is fine: nobody is idle then.
                        let _ = wakeups.send(wakeup);
                    }
                }
                Err(err) => {
                    warn!(error = %err, "store wake-ups interrupted; listening again");
                    // Whatever was queued meanwhile is worth a look.
                    let _ = wakeups.send(Wakeup::RunsQueued);
                    tokio::time::sleep(backoff).await;
                    break;
                }
            }
        }
    }
}

pub(super) async fn notify(tx: &mut PgConnection, wakeup: Wakeup) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(wakeup.as_str())
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(write_error)
}
