//! The lock file that keeps a SQLite store to one server process: two servers on one file
//! would run the same runs.

use crate::store::{Cause, StoreError};

pub(super) fn lock_store(path: &str) -> Result<std::fs::File, StoreError> {
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Open {
            path: lock_path.clone(),
            source: e.into(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Open {
            path: path.to_owned(),
            source: Cause::Reason(
                "another hookflow server is using this store (a SQLite store serves one process; use PostgreSQL for several)".into(),
            ),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
            path: lock_path,
            source: e.into(),
        }),
    }
}
