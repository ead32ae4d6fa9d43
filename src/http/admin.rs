//! The admin API (separate listener, loopback by default): health, readiness, runs, workflows,
//! the OpenAPI description, `/metrics`; the web UI (`ui.rs`) is served beside it.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::query::{self, ListQuery};
use super::{AppState, error_response};
use crate::run::RunStatus;
use crate::store::{
    ReplayOptions, Replayed, RunCursor, RunDetail, RunFilter, RunSummary, StoreError,
};
use crate::workflow::{ReloadStatus, kept_by_replay};

/// The OpenAPI 3.1 description of every admin route as a server with a token serves it (a test
/// keeps it complete).
const OPENAPI: &str = include_str!("openapi.json");

/// The description this server serves: without a token nothing asks for one, so neither the
/// bearer requirement nor the `401` answers are described.
fn description(token: bool) -> axum::body::Bytes {
    if token {
        return axum::body::Bytes::from_static(OPENAPI.as_bytes());
    }
    let Ok(mut spec) = serde_json::from_str::<serde_json::Value>(OPENAPI) else {
        // A test parses the file: this does not happen.
        return axum::body::Bytes::from_static(OPENAPI.as_bytes());
    };
    if let Some(top) = spec.as_object_mut() {
        top.remove("security");
    }
    let operations = spec["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    for operation in operations {
        if let Some(responses) = operation["responses"].as_object_mut() {
            responses.remove("401");
        }
    }
    axum::body::Bytes::from(spec.to_string())
}

pub fn router(state: AppState, access: super::access::AdminAccess) -> Router {
    let token = access.token.clone();
    let ui = super::ui::router(token.clone());
    let description = description(token.is_some());
    let api = Router::new()
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(show_run))
        .route("/api/runs/{id}/replay", post(replay_run))
        .route("/api/rejected", get(list_rejected))
        .route("/api/workflows/{name}/start", post(start_workflow))
        .route("/api/workflows/{name}/replay", post(bulk_replay))
        .route("/api/workflows", get(list_workflows))
        .route("/api/runs/{id}/cancel", post(super::pause::cancel_run))
        .route(
            "/api/workflows/{name}/pause",
            post(super::pause::pause_workflow),
        )
        .route(
            "/api/workflows/{name}/resume",
            post(super::pause::resume_workflow),
        )
        .route(
            "/api/openapi.json",
            get(move || openapi(description.clone())),
        )
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(move |request, next| {
            require_token(token.clone(), request, next)
        }));
    // Only requests meant for this listener, and state changes from its own origin, reach the
    // API and the UI.
    let access = std::sync::Arc::new(access);
    let guarded = api
        .merge(ui)
        .layer(axum::middleware::from_fn(move |request, next| {
            super::access::guard(std::sync::Arc::clone(&access), request, next)
        }));
    // Probes stay open, whatever the Host: a load balancer checking health holds no token and
    // may name the server as it likes.
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(guarded)
        .route_layer(axum::middleware::from_fn(count_request))
        .with_state(state)
}

/// Count every answered admin request by its route pattern.
async fn count_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let response = next.run(request).await;
    crate::observe::metrics::metrics().request("admin", &route, response.status().as_u16());
    response
}

async fn openapi(description: axum::body::Bytes) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        description,
    )
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    match state.store.paused_workflows().await {
        Ok(paused) => crate::observe::metrics::metrics().set_paused_workflows(paused.len()),
        Err(err) => tracing::warn!(error = %err, "cannot count the paused workflows"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::observe::metrics::metrics().render(&state.rejected.counts_by_reason()),
    )
        .into_response()
}

async fn require_token(
    token: Option<String>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(expected) = token else {
        return next.run(request).await;
    };
    let given = bearer_token(request.headers()).unwrap_or_default();
    if same_secret(given, &expected) {
        next.run(request).await
    } else {
        let mut response = error_response(StatusCode::UNAUTHORIZED, "unauthorized");
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

/// The credentials of an `Authorization: Bearer <token>` header. The scheme's name is
/// case-insensitive (RFC 9110, 11.1: `bearer` and `BEARER` are `Bearer`), and one or more spaces
/// may follow it.
pub(super) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start_matches(' '))
}

/// Compare digests, not the strings: equal time whatever the input and its length.
pub(super) fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(err) => error_response(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// A page of runs, newest first, and the cursor of the next page when there is one.
pub(super) struct RunsPage {
    pub runs: Vec<RunSummary>,
    pub next: Option<String>,
}

/// One page of runs: one more than the page is read to know whether a next page exists.
pub(super) async fn runs_page(
    state: &AppState,
    mut filter: RunFilter,
) -> Result<RunsPage, StoreError> {
    let limit = filter.limit as usize;
    filter.limit += 1;
    let mut runs = state.store.list_runs(&filter).await?;
    let next = if runs.len() > limit {
        runs.truncate(limit);
        runs.last().map(|last| RunCursor::after(last).encode())
    } else {
        None
    };
    Ok(RunsPage { runs, next })
}

async fn list_runs(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let filter = match query::read::<ListQuery>(query.as_deref())
        .and_then(|q| q.filter(query::Empty::Refused))
    {
        Ok(filter) => filter,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    match runs_page(&state, filter).await {
        Ok(page) => {
            axum::Json(serde_json::json!({ "runs": page.runs, "next": page.next })).into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "listing runs failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// A workflow as the admin API and the UI show it.
#[derive(Debug, Serialize)]
pub(super) struct WorkflowView {
    pub name: String,
    pub file: String,
    pub description: Option<String>,
    pub version: String,
    pub routes: Vec<RouteView>,
    pub schedules: Vec<ScheduleView>,
    pub last_run: Option<LastRun>,
    /// The newest runs (the UI shows a few; the API only the last).
    #[serde(skip)]
    pub recent_runs: Vec<LastRun>,
    /// Problems of the last reload in this workflow's file.
    pub problems: Vec<crate::diag::Problem>,
    /// Paused: its webhooks are stored, its runs wait until it is resumed.
    pub paused: bool,
    /// When it was paused, by whom and why (when paused).
    pub paused_since: Option<chrono::DateTime<chrono::Utc>>,
    pub paused_by: Option<String>,
    pub paused_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct RouteView {
    pub path: String,
    pub methods: Vec<String>,
    /// `async` (202 once stored) or `sync` (the run's `respond` answer).
    pub respond: &'static str,
}

/// An `on.schedule` entry: when the scheduler starts the workflow by itself.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ScheduleView {
    pub expression: String,
    pub timezone: String,
    /// In words, as `validate` says it.
    pub description: String,
    pub next: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct LastRun {
    pub id: String,
    pub status: RunStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every loaded workflow with its routes and newest runs, and the last reload's outcome.
pub(super) async fn workflows_overview(
    state: &AppState,
    recent: u32,
) -> Result<(Vec<WorkflowView>, ReloadStatus), StoreError> {
    let registry = state
        .registry
        .read()
        .map(|r| std::sync::Arc::clone(&r))
        .unwrap_or_default();
    let reload = state.reload.read().map(|r| r.clone()).unwrap_or_default();
    let mut views = Vec::with_capacity(registry.workflows.len());
    let paused = state.store.paused_workflows().await?;
    for workflow in registry.workflows.values() {
        let pause = paused.iter().find(|p| p.workflow == workflow.name);
        let runs = state
            .store
            .list_runs(&RunFilter {
                workflow: Some(workflow.name.clone()),
                limit: recent.max(1),
                ..RunFilter::default()
            })
            .await?;
        let recent_runs: Vec<LastRun> = runs
            .iter()
            .map(|r| LastRun {
                id: r.id.clone(),
                status: r.status,
                created_at: r.created_at,
                finished_at: r.finished_at,
            })
            .collect();
        let routes = workflow
            .webhook
            .iter()
            .map(|t| RouteView {
                path: t.path.as_str().to_owned(),
                methods: t.methods.clone(),
                respond: match t.respond {
                    crate::workflow::RespondMode::Async => "async",
                    crate::workflow::RespondMode::Sync => "sync",
                },
            })
            .collect();
        let now = chrono::Utc::now();
        let schedules = workflow
            .schedules
            .iter()
            .map(|s| ScheduleView {
                expression: s.expression.clone(),
                timezone: s.timezone.name().to_owned(),
                description: s.describe(),
                next: s.next_after(now),
            })
            .collect();
        views.push(WorkflowView {
            name: workflow.name.clone(),
            file: workflow.source.path.clone(),
            description: workflow.description.clone(),
            version: workflow.version.clone(),
            routes,
            schedules,
            last_run: recent_runs.first().cloned(),
            recent_runs,
            problems: reload
                .problems
                .iter()
                .filter(|p| p.file == workflow.source.path)
                .cloned()
                .collect(),
            paused: pause.is_some(),
            paused_since: pause.map(|p| p.since),
            paused_by: pause.map(|p| p.by.clone()),
            paused_reason: pause.and_then(|p| p.reason.clone()),
        });
    }
    Ok((views, reload))
}

async fn list_workflows(State(state): State<AppState>) -> Response {
    match workflows_overview(&state, 1).await {
        Ok((workflows, reload)) => axum::Json(serde_json::json!({
            "workflows": workflows,
            "reload": reload,
        }))
        .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "listing workflows failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

async fn show_run(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.store.run(&id).await {
        Ok(Some(detail)) => axum::Json(detail).into_response(),
        Ok(None) => error_response(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(err) => {
            tracing::error!(error = %err, "reading a run failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Refused webhook requests, newest first: `{"rejected": [...]}`.
async fn list_rejected(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let limit = match query::read::<query::RejectedQuery>(query.as_deref())
        .and_then(|q| q.limit(super::rejected::DEFAULT_CAPACITY))
    {
        Ok(limit) => limit,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    axum::Json(serde_json::json!({ "rejected": state.rejected.recent(limit) })).into_response()
}

async fn replay_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let ask = match query::read::<query::ReplayQuery>(query.as_deref()).and_then(|q| {
        Ok(ReplayAsk {
            from_start: q.from_start()?,
            latest: q.latest()?,
        })
    }) {
        Ok(ask) => ask,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    match replay(&state, &id, ask).await {
        Ok(queued) => (StatusCode::ACCEPTED, axum::Json(queued)).into_response(),
        Err(err) => err.into_response(),
    }
}

/// What a replay asks for (the API's query, the UI's form).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReplayAsk {
    /// Every step again, not from the failed one.
    pub from_start: bool,
    /// On the workflow's definition as loaded now, not the one the run has.
    pub latest: bool,
}

/// A replay queued: the API's answer.
#[derive(Debug, Serialize)]
pub(super) struct Requeued {
    pub run_id: String,
    pub attempt: u32,
    /// The definition version the replay executes.
    pub version: String,
    /// The version the run had, when this replay changed it.
    pub replayed_from_version: Option<String>,
}

/// Why a replay did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReplayError {
    #[error("no run {0}")]
    NotFound(String),
    #[error("run {0} is {1}; only a finished run can be replayed")]
    NotFinished(String, String),
    #[error(
        "workflow '{workflow}' of run {run} is not loaded any more (deleted or renamed), so \
         there is no latest definition to replay it on; a plain replay runs the one it has"
    )]
    WorkflowGone { run: String, workflow: String },
    #[error(
        "step '{step}' keeps its record on a replay from the failed step, but the current \
         definition of workflow '{workflow}' does not have it at the same place (renamed, moved \
         or removed), so it would run again; replay from the start instead"
    )]
    StepMoved { workflow: String, step: String },
    #[error("internal error")]
    Read,
    #[error("the replay could not be stored")]
    Write,
}

impl ReplayError {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            ReplayError::NotFound(_) => StatusCode::NOT_FOUND,
            ReplayError::NotFinished(..)
            | ReplayError::WorkflowGone { .. }
            | ReplayError::StepMoved { .. } => StatusCode::CONFLICT,
            ReplayError::Read => StatusCode::INTERNAL_SERVER_ERROR,
            ReplayError::Write => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ReplayError {
    fn into_response(self) -> Response {
        error_response(self.status(), self.to_string())
    }
}

/// Queue a finished run again (the API's and the UI's replay). The worker executes it on the
/// run's version, which a replay with `latest` first sets to the loaded workflow's; nothing
/// runs here.
pub(super) async fn replay(
    state: &AppState,
    id: &str,
    ask: ReplayAsk,
) -> Result<Requeued, ReplayError> {
    // Accept a unique prefix like `runs show` does.
    let detail = match state.store.run(id).await {
        Ok(Some(detail)) => detail,
        Ok(None) => return Err(ReplayError::NotFound(id.to_owned())),
        Err(err) => {
            tracing::error!(error = %err, "reading a run failed");
            return Err(ReplayError::Read);
        }
    };
    let run_id = detail.run.id.clone();
    let options = ReplayOptions {
        from_start: ask.from_start,
        version: ask
            .latest
            .then(|| latest_version(state, &detail, ask.from_start))
            .transpose()?,
    };
    match state.store.replay(&run_id, &options).await {
        Ok(Replayed::Queued {
            attempt,
            version,
            replayed_from_version,
        }) => {
            state.worker.enqueue(run_id.clone());
            tracing::info!(
                run_id = %run_id, attempt, from_start = ask.from_start, latest = ask.latest,
                version = %version, replayed_from_version, "run replayed"
            );
            Ok(Requeued {
                run_id,
                attempt,
                version,
                replayed_from_version,
            })
        }
        Ok(Replayed::NotFound) => Err(ReplayError::NotFound(id.to_owned())),
        Ok(Replayed::NotFinished(status)) => Err(ReplayError::NotFinished(run_id, status)),
        Err(err) => {
            tracing::error!(error = %err, "replay failed");
            Err(ReplayError::Write)
        }
    }
}

/// The version a replay with `latest` runs: the loaded workflow's (its definition is stored
/// before a load or reload serves it), when that definition still has every step whose record
/// a replay from the failed step keeps, in its place.
fn latest_version(
    state: &AppState,
    detail: &RunDetail,
    from_start: bool,
) -> Result<String, ReplayError> {
    let run = &detail.run;
    let loaded = state
        .registry
        .read()
        .ok()
        .and_then(|registry| registry.get(&run.workflow).cloned());
    let Some(workflow) = loaded else {
        return Err(ReplayError::WorkflowGone {
            run: run.id.clone(),
            workflow: run.workflow.clone(),
        });
    };
    // A step whose record the replay keeps is not run again: it must be the same step.
    let resumes = workflow.version != run.version && !from_start;
    if let Some(record) = resumes
        .then(|| workflow.misplaced(kept_by_replay(&detail.steps)))
        .flatten()
    {
        return Err(ReplayError::StepMoved {
            workflow: workflow.name.clone(),
            step: record.name.clone(),
        });
    }
    Ok(workflow.version.clone())
}

/// Who a manual start names when the request does not say: `X-Hookflow-Started-By`.
const STARTED_BY_HEADER: &str = "x-hookflow-started-by";

/// `POST /api/workflows/{name}/start`: a run of the workflow by hand, on the JSON body as
/// `event.body` (`{}` when empty), whatever its triggers. Answers 202 once it is committed.
async fn start_workflow(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = super::access::refuse_unless_json(&headers, &body) {
        return refused;
    }
    let started_by = headers
        .get(STARTED_BY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(200).collect::<String>())
        .unwrap_or_else(|| "api".to_owned());
    match start_by_hand(&state, &name, &body, started_by).await {
        Ok(started) => {
            let body =
                serde_json::json!({ "run_id": started.run_id, "event_id": started.event_id });
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// `POST /api/workflows/{name}/replay`: replay the workflow's finished runs that match, at a
/// rate; with `"preview": true` only count them.
async fn bulk_replay(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = super::access::refuse_unless_json(&headers, &body) {
        return refused;
    }
    let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
    let ask: super::bulk_replay::BulkAsk = match serde_json::from_slice(body) {
        Ok(ask) => ask,
        Err(err) => {
            return error_response(StatusCode::BAD_REQUEST, format!("invalid request: {err}"));
        }
    };
    match super::bulk_replay::start(&state, &name, ask).await {
        Ok(answer) if answer.preview => (StatusCode::OK, axum::Json(answer)).into_response(),
        Ok(answer) => (StatusCode::ACCEPTED, axum::Json(answer)).into_response(),
        Err(super::bulk_replay::BulkError::Read(err)) => {
            tracing::error!(error = %err, "reading runs for a bulk replay failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            )
        }
        Err(err) => error_response(StatusCode::BAD_REQUEST, err.to_string()),
    }
}

/// A run started by hand.
pub(super) struct Started {
    pub run_id: String,
    pub event_id: String,
}

/// Why a manual start did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    #[error("no workflow {0}")]
    NoWorkflow(String),
    #[error("the payload must be JSON: {0}")]
    BadPayload(String),
    #[error("the run could not be stored")]
    Store,
}

impl IntoResponse for StartError {
    fn into_response(self) -> Response {
        let status = match self {
            StartError::NoWorkflow(_) => StatusCode::NOT_FOUND,
            StartError::BadPayload(_) => StatusCode::BAD_REQUEST,
            StartError::Store => StatusCode::SERVICE_UNAVAILABLE,
        };
        error_response(status, self.to_string())
    }
}

/// Commit a run of workflow `name` on `body` (JSON; `{}` when empty) and queue it: the API's and
/// the UI's manual start. The worker executes it; nothing runs here.
pub(super) async fn start_by_hand(
    state: &AppState,
    name: &str,
    body: &[u8],
    started_by: String,
) -> Result<Started, StartError> {
    let workflow = state
        .registry
        .read()
        .ok()
        .and_then(|registry| registry.get(name).cloned());
    let Some(workflow) = workflow else {
        return Err(StartError::NoWorkflow(name.to_owned()));
    };
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(body).map_err(|err| StartError::BadPayload(err.to_string()))?
    };
    // No headers: the request's hold the admin token.
    let manual = crate::run::Trigger::Manual {
        started_by: started_by.clone(),
    };
    let event = crate::run::Event::without_request(manual, payload, body.to_vec());
    let event = std::sync::Arc::new(event);
    let run = workflow.new_run(&event);
    match state
        .store
        .accept(std::sync::Arc::clone(&event), std::slice::from_ref(&run))
        .await
    {
        Ok(accepted) => {
            state.worker.superseded(&accepted.superseded);
            state
                .worker
                .enqueue_fresh(&run, std::sync::Arc::clone(&event));
            tracing::info!(run_id = %run.id, workflow = %workflow.name, started_by = %started_by, "run started by hand");
            Ok(Started {
                run_id: run.id,
                event_id: event.id.clone(),
            })
        }
        Err(err) => {
            tracing::error!(error = %err, "storing a manual start failed");
            Err(StartError::Store)
        }
    }
}
