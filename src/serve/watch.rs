//! Hot reload: the workflows path is watched, and a burst of changes (an editor's
//! write-and-rename, a `git checkout` of many files, a folder moved away or into place) becomes
//! one reload once it goes quiet. SIGHUP comes here too: it sets the watches up again and reloads.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{info, warn};

use super::{Reloader, ServerError};

/// Changes closer together than this are one change.
const QUIET: Duration = Duration::from_millis(250);

/// Where a change was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A file or folder inside the workflows folder.
    Inside,
    /// The workflows path itself: the folder was created, removed, moved away or replaced.
    Entry,
}

/// What ends a wait for something to do.
enum Wake {
    Change(Change),
    Hangup,
}

/// Watch the workflows at `path` until `stopped`; reload through `reloader` after each quiet
/// burst of changes, and at once (watches set up again first) when `hangup` is notified.
/// The task ends soon after `stopped`; a server joins it before it says it stopped, since the
/// reloader holds the store.
pub fn watch_workflows(
    path: &Path,
    reloader: Reloader,
    hangup: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (changed, mut changes) = mpsc::unbounded_channel();
    let mut watches = Watches::new(path, changed);
    watches.arm_parent();
    watches.arm_inside();
    info!(path = %path.display(), "watching the workflows for changes");
    tokio::spawn(async move {
        loop {
            let woken_by = tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                change = changes.recv() => match change {
                    Some(change) => Wake::Change(change),
                    None => return,
                },
                () = hangup.notified() => Wake::Hangup,
            };
            match woken_by {
                Wake::Change(change) => {
                    let Some(entry) = settle(change, &mut changes, &mut stopped).await else {
                        return;
                    };
                    // Before the files are read, so a change made while they are is seen.
                    if entry {
                        watches.arm_inside();
                    }
                }
                Wake::Hangup => {
                    watches.arm_parent();
                    watches.arm_inside();
                }
            }
            // A refusal is logged and recorded by the reloader itself.
            if let Err(ServerError::Store(err)) = reloader.reload().await {
                warn!(error = %err, "the reloaded workflows could not be saved: the previous set stays");
            }
        }
    })
}

/// Wait until the burst that began with `first` has been quiet for `QUIET`. Returns whether the
/// workflows path itself changed in it, or none when the server stops meanwhile.
async fn settle(
    first: Change,
    changes: &mut mpsc::UnboundedReceiver<Change>,
    stopped: &mut watch::Receiver<bool>,
) -> Option<bool> {
    let mut entry = first == Change::Entry;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return None,
            more = changes.recv() => entry |= more? == Change::Entry,
            _ = tokio::time::sleep(QUIET) => return Some(entry),
        }
    }
}

/// The two watches that follow the workflows *path* rather than the folder that happened to be
/// there at start: a watch follows an inode, so after `mv workflows old` it would see `old`,
/// and a new `workflows` would go unseen.
struct Watches {
    /// The workflows path, absolute.
    path: PathBuf,
    changed: mpsc::UnboundedSender<Change>,
    /// The folder holding the workflows folder, not recursive: sees the workflows folder itself
    /// appear, go or be replaced (and a single workflow file change).
    parent: Option<RecommendedWatcher>,
    /// The workflows folder, recursive: sees its files change. Set up again on whatever folder
    /// is at the path whenever the path itself changes.
    inside: Option<RecommendedWatcher>,
}

impl Watches {
    fn new(path: &Path, changed: mpsc::UnboundedSender<Change>) -> Self {
        Self {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
            changed,
            parent: None,
            inside: None,
        }
    }

    /// Watch the parent folder for events about the workflows path's own name.
    fn arm_parent(&mut self) {
        self.parent = None;
        let (Some(parent), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let name: OsString = name.to_owned();
        let changed = self.changed.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            let about_the_path = event.paths.iter().any(|p| p.file_name() == Some(&name));
            if event.need_rescan() || (about_the_path && !is_access(&event)) {
                let _ = changed.send(Change::Entry);
            }
        };
        match watcher_on(parent, RecursiveMode::NonRecursive, handler) {
            Ok(watcher) => self.parent = Some(watcher),
            Err(err) => warn!(
                path = %parent.display(),
                error = %err,
                "cannot watch the folder holding the workflows: a workflows folder moved into place is loaded at SIGHUP"
            ),
        }
    }

    /// Watch the folder now at the workflows path, if there is one; the watch on a folder
    /// moved away is dropped.
    fn arm_inside(&mut self) {
        self.inside = None;
        if !self.path.is_dir() {
            return;
        }
        let changed = self.changed.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && !is_access(&event)
            {
                let _ = changed.send(Change::Inside);
            }
        };
        match watcher_on(&self.path, RecursiveMode::Recursive, handler) {
            Ok(watcher) => self.inside = Some(watcher),
            // Not fatal: the parent's watch still sees the folder change, and SIGHUP reloads.
            Err(err) => warn!(
                path = %self.path.display(),
                error = %err,
                "cannot watch inside the workflows directory: edits are loaded when the folder itself changes or on SIGHUP"
            ),
        }
    }
}

fn watcher_on(
    path: &Path,
    mode: RecursiveMode,
    handler: impl notify::EventHandler,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(path, mode)?;
    Ok(watcher)
}

/// Access events (a file was opened or read, as a reload does) change nothing.
fn is_access(event: &notify::Event) -> bool {
    matches!(event.kind, notify::EventKind::Access(_))
}
