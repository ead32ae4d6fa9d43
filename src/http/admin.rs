//! The admin API (separate listener, loopback by default): health, readiness, runs.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{AppState, error_response};
use crate::engine::RunStatus;
use crate::store::RunFilter;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(show_run))
        .with_state(state)
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
