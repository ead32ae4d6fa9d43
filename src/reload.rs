//! Reloading the workflows while serving: the workflows are loaded again through the start-up
//! path and the registry is swapped whole, or the running set is kept; the outcome of the last
//! attempt is kept for the admin API and the UI.

use std::sync::{Arc, RwLock};

use tracing::{info, warn};

use crate::diag::Diagnostics;
use crate::server::{ServerError, load_registry, log_routes, save_definitions};
use crate::settings::ServeSettings;
use crate::store::Store;
use crate::worker::SharedRegistry;

/// What a reload needs: the settings that found the workflows, the registry to swap, the store
/// that keeps each version a run may need.
#[derive(Clone)]
pub struct Reloader {
    settings: ServeSettings,
    registry: SharedRegistry,
    store: Store,
    /// The webhook listener's certificate, read again on each reload.
    tls: Option<Arc<crate::http::tls::TlsConfig>>,
    /// Told after each swap, so the scheduler recomputes the schedules.
    reloaded: Arc<tokio::sync::Notify>,
    status: SharedReloadStatus,
}

/// What the last reload attempt found, for the admin API and the UI: the problems that kept the
/// previous workflows in place, or none when it succeeded.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// When the last reload was attempted; none since start.
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last attempt was refused: the workflows served are the previous set.
    pub refused: bool,
    pub problems: Vec<crate::diag::Problem>,
}

pub type SharedReloadStatus = Arc<RwLock<ReloadStatus>>;

impl Reloader {
    /// Load every workflow again through the start-up path. When any of them is invalid, the
    /// running set stays and every problem is logged; runs in flight keep their version either
    /// way. Returns the number of workflows now served.
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
        let registry = match load_registry(&self.settings) {
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
            Err(other) => {
                let problem = crate::diag::Problem {
                    file: self.settings.workflows.display().to_string(),
                    line: 1,
                    col: 1,
                    severity: "error".into(),
                    message: other.to_string(),
                    hint: None,
                    text: other.to_string(),
                };
                self.record(vec![problem]);
                return Err(other);
            }
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
            settings,
            registry,
            store,
            tls,
            reloaded: Arc::new(tokio::sync::Notify::new()),
            status: SharedReloadStatus::default(),
        }
    }

    /// Told after each swap (the scheduler recomputes the schedules).
    pub(crate) fn reloaded(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.reloaded)
    }

    /// The status the admin API and the UI show.
    pub(crate) fn shared_status(&self) -> SharedReloadStatus {
        Arc::clone(&self.status)
    }
}
