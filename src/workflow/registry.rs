//! The set of workflows a server serves and the handles every layer reads it through: the
//! [`Registry`], the [`SharedRegistry`] a reload swaps whole, and the [`ReloadStatus`] of the
//! last reload attempt. They live here, below `http`, `worker` and `serve`, so that none of
//! those imports another to name them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::Workflow;
use super::routes::RouteTable;

/// The workflows a server runs, by name, and the routes they bind.
#[derive(Debug, Default)]
pub struct Registry {
    pub workflows: BTreeMap<String, Arc<Workflow>>,
    pub routes: RouteTable,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&Arc<Workflow>> {
        self.workflows.get(name)
    }
}

/// The registry in use; a reload swaps the whole of it.
pub type SharedRegistry = Arc<RwLock<Arc<Registry>>>;

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
