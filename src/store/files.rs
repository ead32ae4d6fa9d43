//! The identity of the SQLite files a server opened, to notice when they are removed or
//! replaced under it (a deploy that swaps a folder, an operator's `rm`): SQLite keeps writing to
//! the files it holds open, and what it writes there is gone at the next start.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One file, as the kernel names it: the same path can name another file later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }
}

/// The database file and its write-ahead log as the store opened them.
#[derive(Debug)]
pub struct StoreFiles {
    database_path: PathBuf,
    log_path: PathBuf,
    database: FileId,
    log: FileId,
}

/// What happened to a file the store holds open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFault {
    DatabaseRemoved,
    DatabaseReplaced,
    LogRemoved,
    LogReplaced,
}

impl FileFault {
    /// Only the log is gone: the database file the server holds is still the one on disk, so
    /// copying the log into it keeps everything committed.
    pub fn is_log_only(self) -> bool {
        matches!(self, FileFault::LogRemoved | FileFault::LogReplaced)
    }

    pub fn describe(self, files: &StoreFiles) -> String {
        let (what, path) = match self {
            FileFault::DatabaseRemoved => ("was removed", &files.database_path),
            FileFault::DatabaseReplaced => ("was replaced by another file", &files.database_path),
            FileFault::LogRemoved => ("was removed", &files.log_path),
            FileFault::LogReplaced => ("was replaced by another file", &files.log_path),
        };
        format!("{} {what} while the server was using it", path.display())
    }
}

impl StoreFiles {
    /// Read the identity of `database` and its `-wal` log, which exist once a connection in WAL
    /// mode has written.
    pub fn record(database: &Path) -> std::io::Result<Self> {
        let log_path = log_path(database);
        Ok(Self {
            database: FileId::of(database)?,
            log: FileId::of(&log_path)?,
            database_path: database.to_path_buf(),
            log_path,
        })
    }

    /// Whether the paths still name the files that were opened.
    pub fn check(&self) -> Result<(), FileFault> {
        Self::compare(
            &self.database_path,
            self.database,
            FileFault::DatabaseRemoved,
            FileFault::DatabaseReplaced,
        )?;
        Self::compare(
            &self.log_path,
            self.log,
            FileFault::LogRemoved,
            FileFault::LogReplaced,
        )
    }

    fn compare(
        path: &Path,
        opened: FileId,
        removed: FileFault,
        replaced: FileFault,
    ) -> Result<(), FileFault> {
        match FileId::of(path) {
            Ok(now) if now == opened => Ok(()),
            Ok(_) => Err(replaced),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(removed),
            // Cannot tell (a permission changed): the next write says whether it still works.
            Err(_) => Ok(()),
        }
    }

    pub fn database_path(&self) -> &Path {
        &self.database_path
    }
}

fn log_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_or_replaced_file_is_told_apart_from_the_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("h.db");
        std::fs::write(&database, b"db").unwrap();
        std::fs::write(dir.path().join("h.db-wal"), b"log").unwrap();
        let files = StoreFiles::record(&database).unwrap();
        assert_eq!(files.check(), Ok(()));

        // Moved away, not deleted: a file the server holds open keeps its inode, so a new file
        // cannot get the same number (as a deleted one's could here).
        std::fs::rename(dir.path().join("h.db-wal"), dir.path().join("old.db-wal")).unwrap();
        assert_eq!(files.check(), Err(FileFault::LogRemoved));
        std::fs::write(dir.path().join("h.db-wal"), b"new log").unwrap();
        assert_eq!(files.check(), Err(FileFault::LogReplaced));

        std::fs::rename(&database, dir.path().join("old.db")).unwrap();
        assert_eq!(files.check(), Err(FileFault::DatabaseRemoved));
        std::fs::copy(dir.path().join("old.db"), &database).unwrap();
        assert_eq!(files.check(), Err(FileFault::DatabaseReplaced));
        assert!(!FileFault::DatabaseReplaced.is_log_only());
        assert!(
            FileFault::LogRemoved
                .describe(&files)
                .ends_with("h.db-wal was removed while the server was using it")
        );
    }
}
