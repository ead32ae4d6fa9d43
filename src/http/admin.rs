//! The admin API (separate listener, loopback by default): health, readiness, runs.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{AppState, error_response};
use crate::engine::RunStatus;
use crate::store::{Replayed, RunFilter};

pub fn router(state: AppState, token: Option<String>) -> Router {
    let api = Router::new()
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(show_run))
        .route("/api/runs/{id}/replay", post(replay_run))
        .route("/api/rejected", get(list_rejected))
        .route("/api/workflows/{name}/start", post(start_workflow))
        .layer(axum::middleware::from_fn(move |request, next| {
            require_token(token.clone(), request, next)
        }));
    // Probes stay open: a load balancer checking health holds no token.
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(api)
        .with_state(state)
}

async fn require_token(
    token: Option<String>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(expected) = token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
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

/// Compare digests, not the strings: equal time whatever the input and its length.
fn same_secret(given: &str, expected: &str) -> bool {
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

#[derive(Debug, Deserialize)]
struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

async fn list_runs(State(state): State<AppState>, Query(query): Query<ListQuery>) -> Response {
    let status = match query.status.as_deref().map(RunStatus::parse) {
        Some(None) => {
            return error_response(StatusCode::BAD_REQUEST, "unknown status");
        }
        Some(Some(s)) => Some(s),
        None => None,
    };
    let filter = RunFilter {
        workflow: query.workflow,
        status,
        limit: query.limit.unwrap_or(50),
    };
    match state.store.list_runs(&filter).await {
        Ok(runs) => axum::Json(serde_json::json!({ "runs": runs })).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "listing runs failed");
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

#[derive(Debug, Deserialize)]
struct RejectedQuery {
    limit: Option<usize>,
}

/// Refused webhook requests, newest first: `{"rejected": [...]}`.
async fn list_rejected(
    State(state): State<AppState>,
    Query(query): Query<RejectedQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(super::rejected::DEFAULT_CAPACITY);
    axum::Json(serde_json::json!({ "rejected": state.rejected.recent(limit) })).into_response()
}

#[derive(Debug, Deserialize)]
struct ReplayQuery {
    /// Run every step again instead of resuming at the failed one.
    #[serde(default)]
    from_start: bool,
}

async fn replay_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ReplayQuery>,
) -> Response {
    // Accept a unique prefix like `runs show` does.
    let run_id = match state.store.run(&id).await {
        Ok(Some(detail)) => detail.run.id,
        Ok(None) => return error_response(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(err) => {
            tracing::error!(error = %err, "reading a run failed");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    match state.store.replay(&run_id, query.from_start).await {
        Ok(Replayed::Queued { attempt }) => {
            state.worker.enqueue(run_id.clone());
            tracing::info!(run_id = %run_id, attempt, from_start = query.from_start, "run replayed");
            let body = serde_json::json!({ "run_id": run_id, "attempt": attempt });
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        }
        Ok(Replayed::NotFound) => error_response(StatusCode::NOT_FOUND, format!("no run {id}")),
        Ok(Replayed::NotFinished(status)) => error_response(
            StatusCode::CONFLICT,
            format!("run {run_id} is {status}; only a finished run can be replayed"),
        ),
        Err(err) => {
            tracing::error!(error = %err, "replay failed");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the replay could not be stored",
            )
        }
    }
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
    let workflow = state
        .registry
        .read()
        .ok()
        .and_then(|registry| registry.get(&name).cloned());
    let Some(workflow) = workflow else {
        return error_response(StatusCode::NOT_FOUND, format!("no workflow {name}"));
    };
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(payload) => payload,
            Err(err) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    format!("the payload must be JSON: {err}"),
                );
            }
        }
    };
    let started_by = headers
        .get(STARTED_BY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(200).collect::<String>())
        .unwrap_or_else(|| "api".to_owned());
    let event = std::sync::Arc::new(crate::engine::Event {
        id: uuid::Uuid::now_v7().to_string(),
        method: String::new(),
        path: String::new(),
        params: Default::default(),
        query: Default::default(),
        // Not the request's: they hold the admin token.
        headers: Default::default(),
        body: payload,
        raw: body.to_vec(),
        received_at: chrono::Utc::now(),
        trigger: crate::engine::Trigger::Manual {
            started_by: started_by.clone(),
        },
    });
    let run = crate::store::NewRun {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: workflow.name.clone(),
        version: workflow.version.clone(),
        dedupe: None,
        concurrency: crate::http::ingress::run_concurrency(&workflow, &event),
    };
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
            let body = serde_json::json!({ "run_id": run.id, "event_id": event.id });
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "storing a manual start failed");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the run could not be stored",
            )
        }
    }
}
