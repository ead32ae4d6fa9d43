//! Why a store operation failed. The database driver's or the file system's own error stays
//! attached as the source, so a log or a caller can walk down to it; the variants tell what a
//! caller may do (retry an outage, stop writing, report a corrupt row).

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: Cause,
    },
    #[error("store write failed: {0}")]
    Write(#[source] Cause),
    /// The store cannot write now (its disk or files fail); nothing was stored. A later write
    /// may succeed.
    #[error("the store cannot write: {0}")]
    Unavailable(#[source] Cause),
    /// The store's files were removed or replaced under it: no write succeeds until restart.
    #[error("the store refuses writes until hookflow is restarted: {0}")]
    Refusing(String),
    #[error("store read failed: {0}")]
    Read(#[source] Cause),
    #[error("the store is shutting down")]
    Closed,
    #[error("corrupt record in the store: {0}")]
    Corrupt(String),
}

/// What a store error came from. Shared (`Arc`) because one failed commit answers every write
/// of its batch with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Cause {
    /// The database driver's error.
    #[error(transparent)]
    Database(Arc<sqlx::Error>),
    /// The file system's error (the database file, its lock file).
    #[error(transparent)]
    File(Arc<std::io::Error>),
    /// A reason with no error behind it: another server holds the lock, a database did not
    /// answer in time, a task stopped.
    #[error("{0}")]
    Reason(String),
}

impl From<sqlx::Error> for Cause {
    fn from(error: sqlx::Error) -> Self {
        Cause::Database(Arc::new(error))
    }
}

impl From<std::io::Error> for Cause {
    fn from(error: std::io::Error) -> Self {
        Cause::File(Arc::new(error))
    }
}

impl From<String> for Cause {
    fn from(reason: String) -> Self {
        Cause::Reason(reason)
    }
}

impl From<&str> for Cause {
    fn from(reason: &str) -> Self {
        Cause::Reason(reason.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_error_reads_as_before_and_keeps_what_it_came_from() {
        let err = StoreError::Write(sqlx::Error::RowNotFound.into());
        assert_eq!(
            err.to_string(),
            format!("store write failed: {}", sqlx::Error::RowNotFound)
        );
        let source = err.source().expect("a source");
        assert!(matches!(
            source.downcast_ref::<Cause>(),
            Some(Cause::Database(db)) if matches!(**db, sqlx::Error::RowNotFound)
        ));
        let err = StoreError::Open {
            path: "h.db".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied).into(),
        };
        assert!(
            err.to_string()
                .starts_with("cannot open the store at h.db: ")
        );
        assert!(err.source().is_some());
    }
}
