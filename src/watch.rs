//! Hot reload: the workflows directory is watched, and a burst of changes (an editor's
//! write-and-rename, a `git checkout` of many files) becomes one reload once it goes quiet.

use std::path::Path;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::server::Reloader;

/// Changes closer together than this are one change.
const QUIET: Duration = Duration::from_millis(250);

/// Watch `dir` until `stopped`; reload through `reloader` after each quiet burst of changes.
/// The task ends once `stopped` turns true.
pub fn watch_workflows(
    dir: &Path,
    reloader: Reloader,
    mut stopped: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
    let (changed, mut changes) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Access events (a file was read) change nothing; everything else might.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let _ = changed.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    info!(path = %dir.display(), "watching the workflows for changes");
    Ok(tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                change = changes.recv() => if change.is_none() { return },
            }
            // Let the burst finish before reading the files.
            loop {
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    more = changes.recv() => if more.is_none() { return },
                    _ = tokio::time::sleep(QUIET) => break,
                }
            }
            if let Err(err) = reloader.reload().await {
                warn!(error = %err, "the changed workflows were not loaded");
            }
        }
    }))
}
