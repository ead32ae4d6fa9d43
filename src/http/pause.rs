//! Cancelling a run and pausing or resuming a workflow through the admin API, one path each
//! that the UI's forms share: who asked (`X-Hookflow-Actor`, else where it was asked), the
//! store's answer as a status code, the worker told, the metrics counted.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppState, error_response};
use crate::store::{CancelRequest, Cancelled, PauseRequest, RunSummary, StoreError};

/// Who a cancel or a pause names when the request says so (`hookflow` sends `cli:<user>`).
pub const ACTOR_HEADER: &str = "x-hookflow-actor";

/// Where a cancel or a pause was asked, the label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Api,
    Ui,
    Cli,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Ui => "ui",
            Via::Cli => "cli",
        }
    }
}

/// Who asked, and through what: the actor header (cut short) when there is one, else the
/// channel's name. The admin API has one token and the UI one session for everybody, so there
/// is no better name to give.
pub(super) fn actor(headers: &HeaderMap, default: Via) -> (String, Via) {
    let named = headers
        .get(ACTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(100).collect::<String>());
    match named {
        Some(name) => {
            let via = if name == "cli" || name.starts_with("cli:") {
                Via::Cli
            } else {
                default
            };
            (name, via)
        }
        None => (default.as_str().to_owned(), default),
    }
}

/// The optional JSON body of a cancel or a pause.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: Option<String>,
}

fn read_reason(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, Box<Response>> {
    if let Some(refused) = super::access::refuse_unless_json(headers, body) {
        return Err(Box::new(refused));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<Reason>(body)
        .map(|r| {
            r.reason
                .map(|text| text.trim().chars().take(500).collect::<String>())
                .filter(|text| !text.is_empty())
        })
        .map_err(|err| {
            Box::new(error_response(
                StatusCode::BAD_REQUEST,
                format!("invalid request: {err}"),
            ))
        })
}

/// Why a cancel did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum CancelError {
    #[error("no run {0}")]
    NotFound(String),
    #[error("run {id} has finished ({status}); only an unfinished run can be cancelled")]
    Finished { id: String, status: &'static str },
    #[error("the store failed")]
    Store(#[source] StoreError),
}

impl IntoResponse for CancelError {
    fn into_response(self) -> Response {
        let status = match &self {
            CancelError::NotFound(_) => StatusCode::NOT_FOUND,
            CancelError::Finished { .. } => StatusCode::CONFLICT,
            CancelError::Store(err) => {
                tracing::error!(error = %err, "cancelling a run failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        error_response(status, self.to_string())
    }
}

/// Cancel the run `id` (or the one its unique prefix names) for `cancel`: the API's and the
/// UI's path. Answers the run as it is now: `cancelled`, or still `running` with
/// `cancel_requested` until its owner stops it.
pub(super) async fn cancel(
    state: &AppState,
    id: &str,
    cancel: &CancelRequest,
    via: Via,
) -> Result<RunSummary, CancelError> {
    let detail = state.store.run(id).await.map_err(CancelError::Store)?;
    let Some(detail) = detail else {
        return Err(CancelError::NotFound(id.to_owned()));
    };
    let run_id = detail.run.id;
    let finished = |status: crate::run::RunStatus| CancelError::Finished {
        id: run_id.clone(),
        status: status.as_str(),
    };
    match state
        .store
        .cancel_run(&run_id, cancel)
        .await
        .map_err(CancelError::Store)?
    {
        Cancelled::Ended => state.worker.cancelled_waiting(&run_id),
        Cancelled::Requested => {
            // Executing here: it stops at once; elsewhere its owner sees the store's mark.
            state.worker.cancel_running(&run_id, &cancel.message());
        }
        Cancelled::NotFound => return Err(CancelError::NotFound(id.to_owned())),
        Cancelled::Finished(status) => return Err(finished(status)),
    }
    crate::observe::metrics::metrics().run_cancelled(via.as_str());
    tracing::info!(run_id = %run_id, by = %cancel.by, via = via.as_str(), "run cancelled");
    match state.store.run(&run_id).await.map_err(CancelError::Store)? {
        Some(now) => Ok(now.run),
        None => Err(CancelError::NotFound(id.to_owned())),
    }
}

/// `POST /api/runs/{id}/cancel` (body optional: `{"reason": "..."}`).
pub(super) async fn cancel_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let reason = match read_reason(&headers, &body) {
        Ok(reason) => reason,
        Err(refused) => return *refused,
    };
    let (by, via) = actor(&headers, Via::Api);
    match cancel(&state, &id, &CancelRequest { by, reason }, via).await {
        Ok(run) => axum::Json(run).into_response(),
        Err(err) => err.into_response(),
    }
}

/// Why a pause or a resume did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum PauseError {
    #[error("no workflow {0}")]
    NoWorkflow(String),
    #[error("the store failed")]
    Store(#[source] StoreError),
}

impl IntoResponse for PauseError {
    fn into_response(self) -> Response {
        let status = match &self {
            PauseError::NoWorkflow(_) => StatusCode::NOT_FOUND,
            PauseError::Store(err) => {
                tracing::error!(error = %err, "pausing or resuming a workflow failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        error_response(status, self.to_string())
    }
}

/// A workflow's pause as the API answers it.
#[derive(Debug, serde::Serialize)]
pub(super) struct PauseState {
    pub workflow: String,
    pub paused: bool,
    /// Whether this request changed it (false: it was paused, or running, already).
    pub changed: bool,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub by: Option<String>,
    pub reason: Option<String>,
}

fn is_loaded(state: &AppState, name: &str) -> bool {
    state
        .registry
        .read()
        .is_ok_and(|registry| registry.get(name).is_some())
}

/// Pause workflow `name`: its webhooks are still stored, its runs wait.
pub(super) async fn pause(
    state: &AppState,
    name: &str,
    request: &PauseRequest,
    via: Via,
) -> Result<PauseState, PauseError> {
    if !is_loaded(state, name) {
        return Err(PauseError::NoWorkflow(name.to_owned()));
    }
    let store = &state.store;
    let changed = store
        .pause_workflow(name, request)
        .await
        .map_err(PauseError::Store)?;
    if changed {
        crate::observe::metrics::metrics().workflow_pause("pause", via.as_str());
        tracing::info!(workflow = %name, by = %request.by, via = via.as_str(), "workflow paused");
    }
    let paused = store.paused_workflows().await.map_err(PauseError::Store)?;
    let entry = paused.into_iter().find(|p| p.workflow == name);
    Ok(PauseState {
        workflow: name.to_owned(),
        paused: true,
        changed,
        since: entry.as_ref().map(|p| p.since),
        by: entry.as_ref().map(|p| p.by.clone()),
        reason: entry.and_then(|p| p.reason),
    })
}

/// Resume workflow `name`: its queued runs start. A paused workflow no longer loaded can be
/// resumed too (its runs then fail for want of a definition only if none is stored).
pub(super) async fn resume(
    state: &AppState,
    name: &str,
    request: &PauseRequest,
    via: Via,
) -> Result<PauseState, PauseError> {
    let changed = state
        .store
        .resume_workflow(name)
        .await
        .map_err(PauseError::Store)?;
    if !changed && !is_loaded(state, name) {
        return Err(PauseError::NoWorkflow(name.to_owned()));
    }
    if changed {
        state.worker.look_at_queue();
        crate::observe::metrics::metrics().workflow_pause("resume", via.as_str());
        tracing::info!(workflow = %name, by = %request.by, reason = request.reason.as_deref().unwrap_or_default(), via = via.as_str(), "workflow resumed");
    }
    Ok(PauseState {
        workflow: name.to_owned(),
        paused: false,
        changed,
        since: None,
        by: None,
        reason: None,
    })
}

/// `POST /api/workflows/{name}/pause` (body optional: `{"reason": "..."}`).
pub(super) async fn pause_workflow(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let reason = match read_reason(&headers, &body) {
        Ok(reason) => reason,
        Err(refused) => return *refused,
    };
    let (by, via) = actor(&headers, Via::Api);
    match pause(&state, &name, &PauseRequest { by, reason }, via).await {
        Ok(paused) => axum::Json(paused).into_response(),
        Err(err) => err.into_response(),
    }
}

/// `POST /api/workflows/{name}/resume` (body optional: `{"reason": "..."}`).
pub(super) async fn resume_workflow(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let reason = match read_reason(&headers, &body) {
        Ok(reason) => reason,
        Err(refused) => return *refused,
    };
    let (by, via) = actor(&headers, Via::Api);
    match resume(&state, &name, &PauseRequest { by, reason }, via).await {
        Ok(resumed) => axum::Json(resumed).into_response(),
        Err(err) => err.into_response(),
    }
}
