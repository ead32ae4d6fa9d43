//! A connection of a task's own, outside the pool: for writers that must never wait for the
//! pool (the batcher) or that need settings of their own (the queue's claims).

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// Opened when first needed, and again after a failure (whose connection is not trusted
/// again).
pub(super) struct OwnConnection {
    options: PgConnectOptions,
    connection: Option<PgConnection>,
}

impl OwnConnection {
    pub(super) fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            connection: None,
        }
    }

    pub(super) async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.connection.is_none() {
            self.connection = Some(PgConnection::connect_with(&self.options).await?);
        }
        self.connection.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// Open a new connection next time: this one failed.
    pub(super) fn forget(&mut self) {
        self.connection = None;
    }
}
