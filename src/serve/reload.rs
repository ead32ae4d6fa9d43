//! Reloading the workflows while serving: the workflows are loaded again through the start-up
//! path and the registry is swapped whole, or the running set is kept; the outcome of the last
//! attempt is kept for the admin API and the UI.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use super::{ServerError, compile_registry, log_routes, save_definitions};
use crate::diag::Diagnostics;
use crate::settings::ServeSettings;
use crate::store::Store;
use crate::workflow::{self, ReloadStatus, SharedRegistry, SharedReloadStatus};

/// What a reload needs: the settings that found the workflows, the registry to swap, the store
/// that keeps each version a run may need.
#[derive(Clone)]
pub struct Reloader {
    settings: ServeSettings,
    registry: SharedRegistry,
    store: Store,
    /// The webhook listener's certificate, read again on each reload.
    tls: Option<Arc<crate::http::tls::TlsConfig>>,
    /// Told after each swap, so the ticker recomputes the schedules.
    reloaded: Arc<tokio::sync::Notify>,
    status: SharedReloadStatus,
    /// The server started on one workflow file rather than a folder.
    single_file: bool,
}

/// Why a reload kept the workflows it had although no workflow file is invalid: what was found
/// at the workflows path instead of a folder of workflows.
#[derive(Debug, thiserror::Error)]
pub enum FolderProblem {
    #[error("the workflows folder {path} is missing")]
    Missing { path: String },
    #[error("{path} is not a folder")]
    NotAFolder { path: String },
    #[error("the workflows folder {path} cannot be read: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("the workflows folder {path} holds no workflow files")]
    Emptied { path: String },
}

impl FolderProblem {
    /// What was found, as the log's `found` field says it.
    pub fn found(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "missing",
            Self::NotAFolder { .. } => "not a folder",
            Self::Unreadable { .. } => "unreadable",
            Self::Emptied { .. } => "no workflow files",
        }
    }

    /// What brings the folder back into service, for the admin API and the UI.
    fn hint(&self) -> &'static str {
        match self {
            Self::Missing { .. } | Self::NotAFolder { .. } => {
                "the folder is loaded again as soon as it is back at this path"
            }
            Self::Unreadable { .. } => "the folder is loaded again at the next change or SIGHUP",
            Self::Emptied { .. } => {
                "to serve no workflows on purpose, restart hookflow on the empty folder"
            }
        }
    }
}

impl Reloader {
    /// Load every workflow again through the start-up path. When any of them is invalid, or the
    /// folder is missing, unreadable or emptied, the running set stays and the reason is logged
    /// and recorded; runs in flight keep their version either way. Returns the number of
    /// workflows now served.
    pub async fn reload(&self) -> Result<usize, ServerError> {
        // The certificate first and apart: invalid workflows do not keep a renewed one out.
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => info!("TLS certificate reloaded"),
                Err(err) => {
                    warn!(error = %err, "TLS reload refused: the current certificate stays")
                }
            }
        }
        let files = match self.workflow_files() {
            Ok(files) => files,
            Err(problem) => return Err(self.keep(problem)),
        };
        if files.is_empty() && self.served() > 0 {
            let path = self.path();
            return Err(self.keep(FolderProblem::Emptied { path }));
        }
        let registry = match compile_registry(&self.settings, &files) {
            Ok(registry) => registry,
            Err(ServerError::Invalid { count, diagnostics }) => {
                let sorted = diagnostics.sorted();
                for d in &sorted {
                    warn!("{d}");
                }
                self.record(sorted.iter().map(crate::diag::Problem::from).collect());
                warn!(
                    problems = count,
                    "reload refused: the workflows keep their previous version"
                );
                return Err(ServerError::Invalid {
                    count,
                    diagnostics: Diagnostics::default(),
                });
            }
            // A file listed a moment ago that cannot be read now.
            Err(ServerError::Workflows { path, source }) => {
                return Err(self.keep(FolderProblem::Unreadable { path, source }));
            }
            Err(other) => return Err(other),
        };
        save_definitions(&self.store, &registry).await?;
        self.record(Vec::new());
        log_routes(&registry);
        let count = registry.workflows.len();
        if let Ok(mut current) = self.registry.write() {
            *current = Arc::new(registry);
        }
        self.reloaded.notify_one();
        info!(workflows = count, "workflows reloaded");
        Ok(count)
    }

    /// The workflow files at the workflows path now, or why there is no folder to read. A path
    /// that was a single file at start stays one.
    fn workflow_files(&self) -> Result<Vec<PathBuf>, FolderProblem> {
        let workflows = &self.settings.workflows;
        let path = self.path();
        match std::fs::metadata(workflows) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(FolderProblem::Missing { path })
            }
            Err(source) => Err(FolderProblem::Unreadable { path, source }),
            Ok(found) if !found.is_dir() && !self.single_file => {
                Err(FolderProblem::NotAFolder { path })
            }
            Ok(_) => workflow::workflow_files(std::slice::from_ref(workflows))
                .map_err(|source| FolderProblem::Unreadable { path, source }),
        }
    }

    /// Keep the workflows served, and say why in the log and the status.
    fn keep(&self, problem: FolderProblem) -> ServerError {
        let kept = self.served();
        let message = format!("{problem}: the {kept} workflow(s) loaded before keep serving");
        warn!(
            path = %self.path(),
            found = problem.found(),
            kept,
            "reload refused: {message}"
        );
        let hint = problem.hint();
        self.record(vec![crate::diag::Problem {
            file: self.path(),
            line: 1,
            col: 1,
            severity: "error".into(),
            text: format!("{}: error: {message}\n  = hint: {hint}\n", self.path()),
            message,
            hint: Some(hint.into()),
        }]);
        ServerError::Kept { problem, kept }
    }

    /// How many workflows are served now.
    fn served(&self) -> usize {
        self.registry
            .read()
            .map(|registry| registry.workflows.len())
            .unwrap_or_default()
    }

    fn path(&self) -> String {
        self.settings.workflows.display().to_string()
    }
}

impl Reloader {
    /// Keep the attempt's outcome; an accepted set clears the problems of a refused one.
    fn record(&self, problems: Vec<crate::diag::Problem>) {
        if let Ok(mut status) = self.status.write() {
            *status = ReloadStatus {
                at: Some(chrono::Utc::now()),
                refused: !problems.is_empty(),
                problems,
            };
        }
    }

    /// The outcome of the last reload attempt.
    pub fn status(&self) -> ReloadStatus {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Reloader {
    pub(crate) fn new(
        settings: ServeSettings,
        registry: SharedRegistry,
        store: Store,
        tls: Option<Arc<crate::http::tls::TlsConfig>>,
    ) -> Self {
        Self {
            single_file: settings.workflows.is_file(),
            settings,
            registry,
            store,
            tls,
            reloaded: Arc::new(tokio::sync::Notify::new()),
            status: SharedReloadStatus::default(),
        }
    }

    /// Told after each swap (the ticker recomputes the schedules).
    pub(crate) fn reloaded(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.reloaded)
    }

    /// The status the admin API and the UI show.
    pub(crate) fn shared_status(&self) -> SharedReloadStatus {
        Arc::clone(&self.status)
    }
}
